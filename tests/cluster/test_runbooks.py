"""docs/operations.md's procedures, run exactly as written: the shell blocks are parsed from
the page and run in order, with loopback ports for the 10.0.0.N addresses and a temporary
directory per host for /var/lib/cloudless. `# on HOST` starts the commands of that host;
`cloudless-coordinator --...` lines are the daemons (started in the background, their PIDs
tracked per host); `$(pidof cloudless-coordinator)` is that host's PID; `export` lines set
the environment of the blocks after them; everything else runs in bash as it stands.

Every procedure starts from the cluster the page's "Starting a cluster" section starts, and
is checked afterwards through the API (configuration, health, writes, state digests)."""
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading

from harness import BIN, ROOT, free_port, request, run, scaled, wait_for

DOC = os.path.join(ROOT, "docs", "operations.md")
CTL = os.environ.get("CLOUDLESS_CTL", os.path.join(os.path.dirname(BIN), "cloudlessctl"))


def sections():
    """{heading: [shell block text]} for every `## ` and `### ` section of the page."""
    with open(DOC) as f:
        text = f.read()
    out, current = {}, None
    for m in re.finditer(r"^(#{2,3}) ([^\n]+)$|^```sh\n(.*?)^```$", text, re.M | re.S):
        if m.group(1):
            current = m.group(2).strip()
            out.setdefault(current, [])
        else:
            out[current].append(m.group(3))
    return out


class Hosts:
    """The page's hosts on loopback: coordinator-N is 10.0.0.N, with a raft port for :7000,
    an HTTP port for :8080 and a data dir for /var/lib/cloudless; its daemon's process."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="cloudless-runbook-")
        self.ports = {}
        self.procs = {}
        self.logs = {}
        self.env = dict(os.environ)
        bindir = os.path.dirname(os.path.abspath(BIN))
        ctldir = os.path.dirname(os.path.abspath(CTL))
        self.env["PATH"] = os.pathsep.join([bindir, ctldir, self.env.get("PATH", "")])
        self.env.pop("CLOUDLESS_ENDPOINTS", None)

    def port(self, n, which):
        return self.ports.setdefault((n, which), free_port())

    def http(self, n):
        return "127.0.0.1:%d" % self.port(n, 8080)

    def datadir(self, host):
        return os.path.join(self.dir, host)

    def substitute(self, text, host):
        def addr(m):
            return "127.0.0.1:%d" % self.port(int(m.group(1)), int(m.group(2)))
        text = re.sub(r"\b10\.0\.0\.(\d+):(7000|8080)\b", addr, text)
        if "/var/lib/cloudless" in text:
            assert host, "a data dir outside a `# on HOST` block: %r" % text
            text = text.replace("/var/lib/cloudless", self.datadir(host))
        assert "10.0.0." not in text, "an address the test cannot map: %r" % text
        return text

    def start(self, host, cmd):
        log = open(os.path.join(self.dir, host + ".log"), "ab")
        p = subprocess.Popen(["bash", "-c", "exec " + cmd], stdout=log, stderr=log,
                             stdin=subprocess.DEVNULL, env=self.env)
        log.close()
        # Reaped as soon as it exits, so that `tail --pid` in a block sees it gone.
        threading.Thread(target=p.wait, daemon=True).start()
        self.procs.setdefault(host, []).append(p)

    def pid(self, host):
        live = [p for p in self.procs.get(host, []) if p.poll() is None]
        assert len(live) == 1, "%s runs %d coordinators" % (host, len(live))
        return live[0].pid

    def alive(self, host):
        return any(p.poll() is None for p in self.procs.get(host, []))

    def kill(self, host):
        for p in self.procs.get(host, []):
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)

    def run_block(self, block):
        """Runs one shell block of the page."""
        host, lines = None, []
        for ln in re.sub(r"\\\n\s*", " ", block).splitlines():
            m = re.match(r"^# on (\S+)", ln)
            if m:
                self.flush(host, lines)
                host, lines = m.group(1), []
                continue
            lines.append(ln)
        self.flush(host, lines)

    def flush(self, host, lines):
        shell = []
        for ln in lines:
            ln = self.substitute(ln, host)
            m = re.match(r"^export (\w+)=(\S+)$", ln.strip())
            if m:
                self.run_shell(host, shell)
                shell = []
                self.env[m.group(1)] = m.group(2)
            elif ln.startswith("cloudless-coordinator --"):
                self.run_shell(host, shell)
                shell = []
                assert host, "a coordinator started outside a `# on HOST` block: " + ln
                assert not self.alive(host), "%s already runs a coordinator" % host
                self.start(host, ln)
            else:
                shell.append(ln)
        self.run_shell(host, shell)

    def run_shell(self, host, lines):
        script = "\n".join(lines).strip()
        if not script or all(ln.strip().startswith("#") for ln in lines if ln.strip()):
            return
        if "$(pidof cloudless-coordinator)" in script:
            script = script.replace("$(pidof cloudless-coordinator)", str(self.pid(host)))
        assert "pidof" not in script and "pkill" not in script, script
        p = subprocess.run(["bash", "-euo", "pipefail", "-c", script], env=self.env,
                           capture_output=True, text=True, timeout=scaled(60),
                           stdin=subprocess.DEVNULL)
        assert p.returncode == 0, "block on %s failed (%d):\n%s\n-- stdout:\n%s\n-- stderr:\n%s" % (
            host or "the operator's machine", p.returncode, script, p.stdout, p.stderr)
        self.last_output = p.stdout

    # -- checks, through the API --
    def status(self, n, digest=False):
        r = request(self.http(n), "GET", "/raft/status" + ("?digest" if digest else ""), timeout=2)
        return r.json() if r is not None and r.status == 200 else None

    def voters(self, n):
        s = self.status(n)
        return sorted(x["node_id"] for x in s["servers"] if x["role"] == "voter") if s else None

    def converged(self, nodes):
        st = [self.status(n, digest=True) for n in nodes]
        return all(st) and len({(s["state_digest"], s["fsm_index"]) for s in st}) == 1

    def put(self, n, key, value):
        r = request(self.http(n), "PUT", "/v1/kv/" + key, value, timeout=10)
        return r is not None and r.status == 200

    def get(self, n, key):
        r = request(self.http(n), "GET", "/v1/kv/" + key + "?consistency=stale", timeout=5)
        return r.body.decode() if r is not None and r.status == 200 else None

    def close(self):
        for host in self.procs:
            self.kill(host)

    def dump(self):
        for name in sorted(os.listdir(self.dir)):
            if name.endswith(".log"):
                with open(os.path.join(self.dir, name), errors="replace") as f:
                    print("----- %s -----\n%s" % (name, f.read()[-3000:]))


def procedure(heading, prepare=None, check=None):
    """Runs the page's "Starting a cluster", then `prepare(hosts)`, then the blocks under
    `heading`, then `check(hosts)`."""
    def test(make):
        docs = sections()
        assert heading in docs and docs[heading], "no shell blocks under %r in %s" % (heading, DOC)
        h = Hosts()
        try:
            for block in docs["Starting a cluster"]:
                h.run_block(block)
            assert "coordinator-1" in h.last_output and "voter" in h.last_output, h.last_output
            for n in (1, 2, 3):
                wait_for("a write before the procedure",
                         lambda: h.put(n, "before-%d" % n, "v%d" % n))
            if prepare:
                prepare(h)
            for block in docs[heading]:
                h.run_block(block)
            check(h)
        except Exception:
            h.dump()
            raise
        finally:
            h.close()
            if not os.environ.get("CLOUDLESS_KEEP"):
                shutil.rmtree(h.dir, ignore_errors=True)
    test.__name__ = "test_" + re.sub(r"\W+", "_", heading.lower()).strip("_")
    return test


def all_data_on(h, nodes):
    for n in nodes:
        wait_for("the writes made before on coordinator-%d" % n,
                 lambda: all(h.get(n, "before-%d" % i) == "v%d" % i for i in (1, 2, 3)))
    wait_for("equal state digests", lambda: h.converged(nodes))


def check_added(h):
    want = ["coordinator-%d" % i for i in (1, 2, 3, 4)]
    for n in (1, 2, 3, 4):
        assert h.voters(n) == want, (n, h.voters(n))
    assert "coordinator-4" in h.last_output
    wait_for("a write through the new node", lambda: h.put(4, "after", "1"))
    all_data_on(h, (1, 2, 3, 4))


def check_removed(h):
    for n in (1, 2):
        assert h.voters(n) == ["coordinator-1", "coordinator-2"], (n, h.voters(n))
    assert not h.alive("coordinator-3")
    assert not os.path.exists(h.datadir("coordinator-3"))
    assert "coordinator-3" not in h.last_output, h.last_output
    wait_for("a write after the removal", lambda: h.put(1, "after", "1"))
    all_data_on(h, (1, 2))


def lose_coordinator_3_disk(h):
    h.incarnation = h.status(3)["incarnation"]
    h.kill("coordinator-3")
    shutil.rmtree(h.datadir("coordinator-3"))


def check_replaced_same_name(h):
    want = ["coordinator-1", "coordinator-2", "coordinator-3"]
    for n in (1, 2, 3):
        assert h.voters(n) == want, (n, h.voters(n))
    assert h.status(3)["incarnation"] != h.incarnation
    all_data_on(h, (1, 2, 3))


def coordinator_3_dies(h):
    h.kill("coordinator-3")


def check_replaced_new_name(h):
    want = ["coordinator-1", "coordinator-2", "coordinator-4"]
    for n in (1, 2, 4):
        assert h.voters(n) == want, (n, h.voters(n))
    wait_for("a write through the new node", lambda: h.put(4, "after", "1"))
    all_data_on(h, (1, 2, 4))


def note_pids(h):
    h.before = {host: h.pid(host) for host in ("coordinator-1", "coordinator-2", "coordinator-3")}
    h.term = h.status(1)["term"]


def check_rolled(h):
    for host, pid in h.before.items():
        assert h.pid(host) != pid, "%s was not restarted" % host
    for n in (1, 2, 3):
        assert h.voters(n) == ["coordinator-1", "coordinator-2", "coordinator-3"]
    # Every restart went through SIGTERM: each node logged its own clean stop.
    for host in h.before:
        with open(os.path.join(h.dir, host + ".log"), errors="replace") as f:
            log = f.read()
        assert "reason=SIGTERM" in log, host
    wait_for("a write after the rolling restart", lambda: h.put(2, "after", "1"))
    all_data_on(h, (1, 2, 3))


TESTS = [
    procedure("Add a node", check=check_added),
    procedure("Remove a node", check=check_removed),
    procedure("Replace a node: same name, new disk or machine", prepare=lose_coordinator_3_disk,
              check=check_replaced_same_name),
    procedure("Replace a node: a new machine with a new name", prepare=coordinator_3_dies,
              check=check_replaced_new_name),
    procedure("Rolling restart (upgrades, flag changes)", prepare=note_pids, check=check_rolled),
]


def test_every_procedure_is_run(make):
    """Every ### section under Procedures is one of the tests above."""
    with open(DOC) as f:
        text = f.read()
    part = text[text.index("## Procedures"):]
    part = part[:part.index("\n## ", 1)] if "\n## " in part[1:] else part
    headings = re.findall(r"^### (.+)$", part, re.M)
    run_ = {t.__name__ for t in TESTS}
    for hd in headings:
        name = "test_" + re.sub(r"\W+", "_", hd.lower()).strip("_")
        assert name in run_, "procedure %r has no test" % hd


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    run([test_every_procedure_is_run] + TESTS)
