"""scripts/cluster.sh (the README's first command) and the README's first-workload example.

The script runs as a user would run it, with its test overrides only: the test build
(CLUSTER_BUILD), a temp data dir (CLUSTER_DATA) and every port shifted by a free offset
(CLUSTER_PORT_OFFSET). It must bring up 3 coordinators and 3 agents in two zones; then the
commands of the README's "A first workload" section are run verbatim (ports and the data dir
rewritten the same way) and must show the workload running; Ctrl-C (SIGINT to the script)
must stop everything, the replicas included."""
import os
import random
import re
import signal
import socket
import ssl
import subprocess
import tempfile
import time

from harness import BIN, proc_alive, request, run, scaled, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
PORTS = [7001, 7002, 7003, 8081, 8082, 8083, 9101, 9102, 9103]


def free_offset():
    for _ in range(200):
        off = random.randrange(10000, 23000)
        try:
            for p in PORTS:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p + off))
            return off
        except OSError:
            continue
    raise AssertionError("no free port offset")


def readme_blocks():
    """The shell blocks of the README's "A first workload" section."""
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    section = text.split("## A first workload", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, re.S)


def commands(block):
    """The block's commands, a quoted argument continued over lines kept in one command."""
    out, cur = [], ""
    for line in block.splitlines():
        cur = cur + "\n" + line if cur else line
        if cur.count("'") % 2 == 0:
            out.append(cur)
            cur = ""
    return out


def start_script(**extra_env):
    """cluster.sh on a free port offset and a temp data dir; returns (process, offset, data,
    banner) once it printed its banner (or ended)."""
    off = free_offset()
    data = tempfile.mkdtemp(prefix="cloudless-cluster-sh-")
    env = dict(os.environ, CLUSTER_BUILD=os.path.dirname(os.path.abspath(BIN)),
               CLUSTER_DATA=data, CLUSTER_PORT_OFFSET=str(off), **extra_env)
    script = subprocess.Popen(["bash", os.path.join(ROOT, "scripts", "cluster.sh")], env=env,
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, start_new_session=True)
    seen = []
    deadline = time.monotonic() + scaled(120)
    while time.monotonic() < deadline:
        line = script.stdout.readline()
        if not line:
            break
        seen.append(line)
        if line.startswith("Cloudless cluster running"):
            break
    return script, off, data, "".join(seen)


def stop_script(script, data, replica_pids=()):
    """Ctrl-C, as a user stops it: the agents stop their replicas, the coordinators exit.
    Returns the script's exit status (None if it did not stop)."""
    if script.poll() is None:
        os.kill(script.pid, signal.SIGINT)
    try:
        rc = script.wait(timeout=scaled(40))
    except subprocess.TimeoutExpired:
        rc = None
    for p in replica_pids:  # only our replica groups, and only if they are still there
        if proc_alive(p):
            os.killpg(p, signal.SIGKILL)
    try:
        os.killpg(script.pid, signal.SIGKILL)  # the session the script ran in
    except OSError:
        pass
    subprocess.run(["rm", "-rf", data])
    return rc


def test_cluster_script_and_first_workload(make):
    script, off, data, banner = start_script()
    replica_pids = []
    try:
        assert "Cloudless cluster running (3 voters, 3 agents ready)" in banner, banner

        agents = request("127.0.0.1:%d" % (8081 + off), "GET", "/v1/agents").json()["items"]
        assert sorted((a["id"], a["zone"]) for a in agents) == [
            ("agent-1", "zone-a"), ("agent-2", "zone-b"), ("agent-3", "zone-a")], agents

        def rewrite(cmd):
            cmd = re.sub(r"127\.0\.0\.1:(\d+)", lambda m: "127.0.0.1:%d" % (int(m.group(1)) + off),
                         cmd)
            return re.sub(r"(?<![\w/])data/", data + "/", cmd)

        def sh(cmd):
            p = subprocess.run(["bash", "-c", "set -o pipefail; " + rewrite(cmd)], cwd=ROOT,
                               capture_output=True, text=True, timeout=scaled(20))
            assert p.returncode == 0, (cmd, p.stdout, p.stderr)
            return p.stdout

        first, second = readme_blocks()
        create, show = commands(first)
        assert '"name"' in sh(create)
        out = wait_for("the README's workload shown running",
                       lambda: (lambda o: o if '"phase":"running"' in o else None)(sh(show)), 15)
        assert out.count('"state":"running"') == 3, out

        status, cat, scale, drain, delete = commands(second)
        st = sh(status)
        assert '"state":"running"' in st and '"pid"' in st, st
        wait_for("the replicas' output", lambda: "hello from default/hello/" in sh(cat), 10)
        assert '"replicas":5' in sh(scale)
        assert '"draining":true' in sh(drain)
        assert '"deleted":true' in sh(delete)

        # Something running for Ctrl-C to stop.
        coord = "127.0.0.1:%d" % (8082 + off)
        r = request(coord, "POST", "/v1/workloads",
                    {"name": "tail", "replicas": 2, "command": ["sleep", "600"]})
        assert r is not None and r.status == 201, r

        def running_pids():
            pids = []
            for a in (9101, 9102, 9103):
                doc = request("127.0.0.1:%d" % (a + off), "GET", "/status").json()
                pids += [x["pid"] for x in doc["replicas"]
                         if x["state"] == "running" and x["workload"] == "default/tail"]
            return pids if len(pids) == 2 and all(proc_alive(p) for p in pids) else None
        replica_pids = wait_for("two replicas of default/tail running", running_pids, 15)
    finally:
        rc = stop_script(script, data, replica_pids)
    assert rc is not None, "cluster.sh did not stop on SIGINT"
    assert not any(proc_alive(p) for p in replica_pids), "replicas outlived Ctrl-C"


def test_cluster_script_tls(make):
    """CLUSTER_TLS=1: the same cluster over TLS with a CA of its own in data/tls."""
    script, off, data, banner = start_script(CLUSTER_TLS="1")
    try:
        assert "Cloudless cluster running over TLS (3 voters, 3 agents ready)" in banner, banner
        ca = os.path.join(data, "tls", "ca.pem")
        ctx = ssl.create_default_context(cafile=ca)
        r = request("127.0.0.1:%d" % (8082 + off), "GET", "/v1/agents", ssl_context=ctx)
        assert r is not None and len(r.json()["items"]) == 3, r
        assert request("127.0.0.1:%d" % (8083 + off), "GET", "/v1/agents") is None or \
            request("127.0.0.1:%d" % (8083 + off), "GET", "/v1/agents").status == 400
        # The banner's commands, as printed: the cloudlessctl one must work as it stands.
        rest = [script.stdout.readline() for _ in range(3)]
        ctl_line = [ln for ln in rest if "cloudlessctl --ca-file" in ln][0]
        p = subprocess.run(["bash", "-c", ctl_line.strip()], cwd=ROOT, capture_output=True,
                           text=True, timeout=scaled(30))
        assert p.returncode == 0 and p.stdout.count("voter") >= 3, (p.stdout, p.stderr)
    finally:
        rc = stop_script(script, data)
    assert rc is not None, "cluster.sh did not stop on SIGINT"


if __name__ == "__main__":
    run([test_cluster_script_and_first_workload, test_cluster_script_tls])
