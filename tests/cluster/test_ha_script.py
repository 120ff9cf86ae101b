"""compose/test-ha-cluster.sh, the users' HA check, run in its LOCAL mode on loopback with 3
coordinators and 3 agents: every phase passes (the original's unanchored leader grep included;
agents enrolled, heartbeating and running a 3-replica workload through the failover), the
report holds the measured times, the logs are collected, and what it started is gone
afterwards, replicas included; a failing phase makes it exit non-zero naming that phase, and
still clean up."""
import glob
import json
import os
import re
import subprocess
import tempfile

from harness import (AGENT_BIN, BIN, ROOT, free_port_block, listening, proc_alive, run, scaled,
                     wait_for)

SCRIPT = os.path.join(ROOT, "compose", "test-ha-cluster.sh")
PHASES = ["prereqs", "deploy", "formation", "leader", "write", "agents", "failover", "rejoin",
          "logs", "report"]
PORTS = 12


def run_script(data, **env):
    base = free_port_block(PORTS)
    e = dict(os.environ, LOCAL="1", BIN=os.path.abspath(BIN), AGENT_BIN=os.path.abspath(AGENT_BIN),
             DATA=data, BASE_PORT=str(base), TIMEOUT_S=str(int(scaled(30))))
    e.update(env)
    p = subprocess.run(["bash", SCRIPT], env=e, capture_output=True, text=True,
                       timeout=scaled(180), stdin=subprocess.DEVNULL)
    # Whatever happened, nothing it started still listens, and no replica outlived its agent.
    wait_for("the script's coordinators and agents gone",
             lambda: not any(listening(base + i) for i in range(PORTS)), timeout=10)
    for state in glob.glob(os.path.join(data, "agent-*", "state.json")):
        with open(state) as f:
            pids = [r["pid"] for r in json.load(f).get("replicas", []) if r.get("pid")]
        wait_for("the replicas of %s stopped" % state,
                 lambda: not any(proc_alive(pid) for pid in pids), timeout=10)
    return p


def explain(p, data):
    logs = ""
    for name in sorted(os.listdir(data)):
        if name.endswith(".log"):
            with open(os.path.join(data, name), errors="replace") as f:
                logs += "--- %s (last 40 lines)\n%s" % (name, "".join(f.readlines()[-40:]))
    return p.stdout + p.stderr + logs


def test_ha_script_local_mode(make):
    with tempfile.TemporaryDirectory(prefix="cloudless-ha-") as data:
        p = run_script(data)
        assert p.returncode == 0, explain(p, data)
        assert "PASS: one leader, failover and rejoin work" in p.stdout, p.stdout
        assert "PASS: agents enrolled and heartbeating through the failover, replicas running" \
            in p.stdout, p.stdout
        assert [ln[3:] for ln in p.stdout.splitlines() if ln.startswith("== ")] == PHASES, p.stdout
        with open(os.path.join(data, "ha-report.md")) as f:
            report = f.read()
        assert report.startswith("# Cloudless HA cluster test: PASSED"), report
        for phase in PHASES:
            assert re.search(r"^\| %s \| passed \| \d+ \|$" % phase, report, re.M), (phase, report)
        times = {}
        for what in ("election", "formation", "failover", "rejoin", "agents", "replicas"):
            m = re.search(r"^\| %s: .* \| (\d+) \|$" % what, report, re.M)
            assert m, (what, report)
            times[what] = int(m.group(1))
        assert times["failover"] <= 5000, times
        assert 0 < times["election"] <= times["formation"], times
        logs = os.path.join(data, "ha-logs")
        for n in ("coordinator-1", "coordinator-2", "coordinator-3"):
            with open(os.path.join(logs, n + ".log")) as f:
                log = f.read()
            # With tokens, as compose runs it (compose/make-auth.sh into DATA/auth).
            assert "Coordinator started" in log and "Auth file loaded" in log, n
        for agent in ("agent-1", "agent-2", "agent-3"):
            with open(os.path.join(logs, agent + ".log")) as f:
                log = f.read()
            assert "agent enrolled id=%s coordinator=" % agent in log, log
            assert "heartbeat ok" in log and "agent secret received and saved" in log, log
        assert re.search(r"^- Leader elections: [1-9]", report, re.M), report
        assert re.search(r"^- Agent enrollments: [3-9]", report, re.M), report
        # The old leader came back with the others' state digest, named in the report.
        assert re.search(r'State digest after the rejoin: "fsm_index":\d+ "state_digest":"[0-9a-f]+"',
                         report), report


def test_ha_script_names_the_failed_phase(make):
    with tempfile.TemporaryDirectory(prefix="cloudless-ha-") as data:
        # No new leader can be seen within a microsecond: the failover phase fails.
        p = run_script(data, FAILOVER_LIMIT_S="0.000001")
        assert p.returncode == 1, explain(p, data)
        assert re.search(r"^FAIL \[failover\] ", p.stderr, re.M), p.stderr
        with open(os.path.join(data, "ha-report.md")) as f:
            report = f.read()
        assert report.startswith("# Cloudless HA cluster test: FAILED"), report
        assert re.search(r"^\| failover \| failed: ", report, re.M), report
    with tempfile.TemporaryDirectory(prefix="cloudless-ha-") as data:
        p = run_script(data, BIN="/nonexistent/cloudless-coordinator")
        assert p.returncode == 1 and "FAIL [prereqs] no coordinator binary" in p.stderr, p.stderr


if __name__ == "__main__":
    run([test_ha_script_local_mode, test_ha_script_names_the_failed_phase])
