"""Fault-injection harness pieces: a private network namespace, coordinator processes that can
be killed, paused, partitioned, removed and wiped, a classifying HTTP client and a status
monitor. Standard library only. Used by jepsen.py.

Isolation. When `ip netns add` works (root), the whole run moves into one fresh network
namespace (setns on the main thread before any other thread exists, so every thread and
child process lives there) and every coordinator listens on 127.0.0.1 inside it. Each node runs
under its own uid (61001, 61002, ...) so iptables' owner match can tell which node sent a
packet: a partition between A and B is "drop TCP from uid(A) to B's raft and HTTP ports, and
from uid(B) to A's" in a chain of the namespace's own OUTPUT table. Those rules live and die
with the namespace and never touch the host. The test's clients run as root and are never
filtered, so they reach every node during a partition. Without a namespace the run falls back
to plain loopback on the host and skips partitions (and says so).

Agents (Agent below) are machines: a cloudless-agent under its own uid (61101, 61102, ...),
whose replica processes inherit that uid. Cutting an agent off from coordinators is one rule
per coordinator: drop TCP from uid(agent) to that coordinator's HTTP port. SIGKILL of the
agent alone leaves its replicas running; machine death also SIGKILLs the agent's children
and every replica process of that agent (found in /proc: its command line names this run's
replica log, its environment this agent), each replica's whole process group.

Environment: CLOUDLESS_BIN (binary), CLOUDLESS_AGENT_BIN (the agent's), CLOUDLESS_TIME_SCALE (multiplies deadlines, for
sanitizer builds), CLOUDLESS_KEEP (keep data dirs).
"""
import base64
import ctypes
import http.client
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

BIN = os.path.abspath(os.environ.get("CLOUDLESS_BIN", "build/cloudless-coordinator"))
AGENT_BIN = os.path.abspath(os.environ.get("CLOUDLESS_AGENT_BIN", "build/cloudless-agent"))
AGENT_UID_BASE = 61100
SCALE = float(os.environ.get("CLOUDLESS_TIME_SCALE", "1"))
UID_BASE = 61000
CHAIN = "CLFAULT"


def scaled(seconds):
    return seconds * SCALE


def now_ns():
    return time.monotonic_ns()


def log(msg):
    print("[%8.3f] %s" % (time.monotonic() % 100000, msg), flush=True)


def wait_for(what, fn, timeout=10.0, interval=0.05):
    deadline = time.monotonic() + scaled(timeout)
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except Exception as e:  # a node may be mid-restart
            last = e
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError("timed out after %.1fs waiting for %s (last: %r)" % (scaled(timeout), what, last))


def run_cmd(args, check=True):
    r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if check and r.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(args), r.returncode, r.stderr.strip()))
    return r


def free_port():
    """A port nobody listens on right now (bound then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- network namespace ----

class NetNS:
    """One private network namespace for the whole run; see the module docstring."""

    def __init__(self):
        self.name = None
        self.active = False
        self.reason = ""

    def enter(self):
        if os.environ.get("CLOUDLESS_FAULT_NO_NETNS"):
            self.reason = "CLOUDLESS_FAULT_NO_NETNS is set"
            return False
        if os.geteuid() != 0:
            self.reason = "not root"
            return False
        if threading.active_count() > 1:
            self.reason = "threads already running (setns must come first)"
            return False
        name = "cloudless-fault-%d" % os.getpid()
        r = run_cmd(["ip", "netns", "add", name], check=False)
        if r.returncode != 0:
            self.reason = "ip netns add failed: %s" % r.stderr.strip()
            return False
        self.name = name
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open("/run/netns/" + name, os.O_RDONLY)
            try:
                if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
                    raise OSError(ctypes.get_errno(), "setns")
            finally:
                os.close(fd)
            run_cmd(["ip", "link", "set", "lo", "up"])
            run_cmd(["iptables", "-N", CHAIN])
            run_cmd(["iptables", "-A", "OUTPUT", "-j", CHAIN])
            # Sanity: the owner match must exist or partitions would silently do nothing.
            run_cmd(["iptables", "-A", CHAIN, "-p", "tcp", "-m", "owner", "--uid-owner",
                     str(UID_BASE + 99), "-m", "multiport", "--dports", "1", "-j", "DROP"])
            run_cmd(["iptables", "-F", CHAIN])
        except Exception as e:
            self.reason = "cannot set up the namespace: %s" % e
            self.close()
            return False
        self.active = True
        return True

    def close(self):
        if self.name:
            run_cmd(["ip", "netns", "del", self.name], check=False)
            self.name = None


class Net:
    """Partitions between nodes, as iptables rules in the namespace (no-op without one)."""

    def __init__(self, ns):
        self.ns = ns
        self.lock = threading.Lock()
        self.blocked = set()  # frozenset({a.node_id, b.node_id})

    @property
    def enabled(self):
        return self.ns.active

    def _rule(self, op, src, dst):
        run_cmd(["iptables", op, CHAIN, "-p", "tcp", "-m", "owner", "--uid-owner", str(src.uid),
                 "-m", "multiport", "--dports", "%d,%d" % (dst.raft_port, dst.http_port),
                 "-j", "DROP"])

    def block(self, pairs):
        """Cuts every (a, b) pair both ways."""
        if not self.enabled:
            return
        with self.lock:
            for a, b in pairs:
                k = frozenset((a.node_id, b.node_id))
                if k in self.blocked or a is b:
                    continue
                self._rule("-A", a, b)
                self._rule("-A", b, a)
                self.blocked.add(k)

    def mark_agent(self, agent):
        """Marks every connection the agent opens (conntrack mark = its uid), so a partition
        can drop both directions of it: the owner match sees only the agent's own packets,
        and an answer to a request sent before the cut (a blocking assignments query) would
        still get through."""
        if self.enabled:
            run_cmd(["iptables", "-t", "mangle", "-A", "OUTPUT", "-m", "owner", "--uid-owner",
                     str(agent.uid), "-j", "CONNMARK", "--set-mark", str(agent.uid)])

    def isolate_agent(self, agent, nodes):
        """Cuts the agent off from these coordinators, both ways, established connections
        included (agents are only ever clients: they open every connection)."""
        if not self.enabled:
            return
        with self.lock:
            for nd in nodes:
                k = frozenset((agent.agent_id, nd.node_id))
                if k in self.blocked:
                    continue
                for way in ("--dport", "--sport"):
                    run_cmd(["iptables", "-A", CHAIN, "-p", "tcp", "-m", "connmark", "--mark",
                             str(agent.uid), way, str(nd.http_port), "-j", "DROP"])
                self.blocked.add(k)

    def heal(self):
        if not self.enabled:
            return
        with self.lock:
            run_cmd(["iptables", "-F", CHAIN])
            self.blocked.clear()

    def rules(self):
        if not self.enabled:
            return ""
        return run_cmd(["iptables", "-S", CHAIN], check=False).stdout


# ---- HTTP ----

class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = {k.lower(): v for k, v in headers}
        self.body = body

    def json(self):
        return json.loads(self.body.decode())

    def problem_type(self):
        try:
            t = self.json().get("type", "")
        except Exception:
            return ""
        return t.rsplit("/", 1)[-1]

    def __repr__(self):
        return "<%d %s>" % (self.status, self.body[:200])


class SendError(Exception):
    """A request failed. `sent` tells whether any byte may have reached the server."""

    def __init__(self, sent, err):
        super().__init__("%s: %s" % ("after sending" if sent else "before sending", err))
        self.sent = sent
        self.err = err


def http_call(addr, method, path, body=None, headers=None, timeout=5.0):
    """One request on a fresh connection. Returns Response or raises SendError."""
    host, port = addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        try:
            conn.connect()
        except OSError as e:
            raise SendError(False, "%s: %s" % (type(e).__name__, e))
        try:
            if isinstance(body, (dict, list)):
                body = json.dumps(body).encode()
                headers = dict(headers or {}, **{"Content-Type": "application/json"})
            elif isinstance(body, str):
                body = body.encode()
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return Response(r.status, r.getheaders(), r.read())
        except (OSError, http.client.HTTPException) as e:
            raise SendError(True, "%s: %s" % (type(e).__name__, e))
    finally:
        conn.close()


def http_or_none(addr, method, path, body=None, headers=None, timeout=5.0):
    try:
        return http_call(addr, method, path, body, headers, timeout)
    except SendError:
        return None


def kv_path(key, query=""):
    return "/v1/kv/" + urllib.parse.quote(key, safe="") + query


def b64value(doc):
    return base64.b64decode(doc["value_b64"]).decode()


# ---- processes ----

class Proc:
    """What coordinators and agents share: one child process (self.proc, None when there is
    none), how each of its runs ended (self.exits: (returncode, expected)), its log file."""

    def reap(self):
        """Records how the last process ended, once."""
        if self.proc is not None and self.proc.poll() is not None:
            self.exits.append((self.proc.returncode, self.expect_exit))
            self.proc = None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        if self.proc is not None:
            self.expect_exit = True
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGCONT)  # harmless; a stopped process dies anyway
                self.proc.kill()
                self.proc.wait(timeout=10)
            self.reap()

    def terminate(self, timeout=30):
        """SIGTERM (a graceful stop: a leader hands leadership over first) and wait."""
        if self.proc is not None:
            self.expect_exit = True
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGCONT)
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=scaled(timeout))
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=10)
            self.reap()

    def pause(self):
        if self.alive():
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        if self.alive():
            self.proc.send_signal(signal.SIGCONT)

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""


class Node(Proc):
    def __init__(self, cluster, idx, port_base):
        self.cluster = cluster
        self.idx = idx
        self.node_id = "n%d" % idx
        self.uid = UID_BASE + idx if cluster.ns.active else None
        if cluster.ns.active:  # our own namespace: fixed ports are ours
            self.raft_port = port_base + idx
            self.http_port = port_base + 100 + idx
        else:
            self.raft_port = free_port()
            self.http_port = free_port()
        self.raft_addr = "127.0.0.1:%d" % self.raft_port
        self.http_addr = "127.0.0.1:%d" % self.http_port
        self.home = os.path.join(cluster.dir, self.node_id)  # mount point for a tmpfs
        self.data_dir = os.path.join(self.home, "data")
        self.log_path = os.path.join(cluster.dir, self.node_id + ".log")
        self.proc = None
        self.args = []
        self.expect_exit = False  # set while we kill it or expect it to leave by itself
        self.exits = []  # (returncode, expected)
        self.tmpfs = False
        os.makedirs(self.home, exist_ok=True)
        self._own(self.home)

    def _own(self, path):
        if self.uid is not None:
            os.chown(path, self.uid, self.uid)

    def start(self, bootstrap=False, join=None, expect=0):
        args = [BIN, "--node-id", self.node_id, "--raft-addr", self.raft_addr,
                "--http-addr", self.http_addr, "--data-dir", self.data_dir,
                "--heartbeat-ms", str(self.cluster.heartbeat_ms),
                "--election-ms", str(self.cluster.election_ms)]
        if bootstrap:
            args.append("--bootstrap")
        if join:
            args += ["--join", ",".join(n.http_addr for n in join)]
        if expect:
            args += ["--bootstrap-expect", str(expect)]
        args += self.cluster.extra_args
        self.args = args
        return self.restart()

    def restart(self):
        self.reap()
        with open(self.log_path, "ab") as lf:
            kw = {}
            if self.uid is not None:
                kw = dict(user=self.uid, group=self.uid, extra_groups=[])
            cwd = None
            if os.environ.get("CLOUDLESS_CORE"):
                # Debugging crashes: with core_pattern "core", cores land in this directory
                # (CLOUDLESS_CORE names it; it must be writable by the node uids).
                kw["preexec_fn"] = lambda: resource.setrlimit(resource.RLIMIT_CORE, (-1, -1))
                cwd = os.environ["CLOUDLESS_CORE"]
            self.proc = subprocess.Popen(self.args, stdout=lf, stderr=lf, cwd=cwd,
                                         stdin=subprocess.DEVNULL, **kw)
        self.expect_exit = False
        return self

    def set_flag(self, name, value):
        """Changes (or adds) one flag of the command line the next restart() uses."""
        if name in self.args:
            self.args[self.args.index(name) + 1] = str(value)
        else:
            self.args += [name, str(value)]

    def wipe(self):
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def req(self, method, path, body=None, headers=None, timeout=5.0):
        return http_or_none(self.http_addr, method, path, body, headers, timeout)

    def status(self, digest=False, timeout=1.0):
        r = self.req("GET", "/raft/status" + ("?digest" if digest else ""), timeout=timeout)
        return r.json() if r is not None and r.status == 200 else None

    def __repr__(self):
        return self.node_id


class Cluster:
    def __init__(self, ns, dir, n, port_base, heartbeat_ms=50, election_ms=300, extra_args=()):
        self.ns = ns
        self.dir = dir
        os.makedirs(dir, exist_ok=True)
        os.chmod(dir, 0o755)  # node uids must reach their own dirs below
        self.heartbeat_ms = heartbeat_ms
        self.election_ms = election_ms
        self.extra_args = list(extra_args)
        self.nodes = [Node(self, i, port_base) for i in range(1, n + 1)]
        self.locks = {nd.node_id: threading.Lock() for nd in self.nodes}

    def by_id(self, node_id):
        for nd in self.nodes:
            if nd.node_id == node_id:
                return nd
        return None

    def start(self, expect=False):
        if expect:
            # Every node runs the same command shape: --join <all> --bootstrap-expect N,
            # which is what makes re-running a wiped node's own command safe.
            for nd in self.nodes:
                nd.start(join=self.nodes, expect=len(self.nodes))
            self.wait_voters(len(self.nodes))
            return self
        first = self.nodes[0].start(bootstrap=True)

        def first_leads():
            if not first.alive():
                raise RuntimeError("%s exited at start-up: %s" % (first, first.log()[-500:]))
            return self.leader_of([first])
        wait_for("bootstrap leader", first_leads, 20)
        for nd in self.nodes[1:]:
            nd.start(join=[first])
            # One at a time: promotions are serialized anyway, and this keeps start-up calm.
            self.wait_voter(nd, 30)
        self.wait_voters(len(self.nodes))
        return self

    def leader_of(self, nodes=None, timeout=1.0):
        leaders = []
        for n in nodes or self.nodes:
            s = n.status(timeout=timeout) if n.alive() else None
            if s and s["state"] == "leader" and s.get("leader_ready"):
                leaders.append(n)
        return leaders[0] if len(leaders) == 1 else None

    def leader(self, timeout=20):
        return wait_for("a single ready leader", lambda: self.leader_of(), timeout)

    def voters_seen_by(self, nd):
        s = nd.status()
        if not s:
            return None
        return sorted(x["node_id"] for x in s["servers"] if x["role"] == "voter")

    def wait_voter(self, nd, timeout=30):
        def ok():
            ld = self.leader_of()
            return ld is not None and nd.node_id in (self.voters_seen_by(ld) or [])
        wait_for("%s to be a voter" % nd, ok, timeout)

    def wait_replaced(self, nd, timeout=30):
        """A wiped node is a voter again: the leader lists it with its new incarnation."""
        def ok():
            mine = nd.status()
            ld = self.leader_of()
            theirs = ld.status() if ld is not None else None
            if not mine or not theirs:
                return False
            return any(x["node_id"] == nd.node_id and x["role"] == "voter" and
                       x.get("incarnation") == mine["incarnation"] for x in theirs["servers"])
        wait_for("%s to be a voter again (new incarnation)" % nd, ok, timeout)

    def wait_voters(self, n, timeout=30):
        want = sorted(nd.node_id for nd in self.nodes)

        def ok():
            for nd in self.nodes:
                if self.voters_seen_by(nd) != want:
                    return False
            return True
        wait_for("%d voters everywhere" % n, ok, timeout)

    def converged(self):
        st = {}
        for nd in self.nodes:
            s = nd.status(digest=True, timeout=2.0)
            if not s:
                return None
            st[nd.node_id] = s
        idx = {s["applied_index"] for s in st.values()}
        dig = {(s["state_digest"], s["fsm_index"]) for s in st.values()}
        return st if len(idx) == 1 and len(dig) == 1 else None

    def wait_converged(self, timeout=30):
        return wait_for("converged state digests", self.converged, timeout, interval=0.2)

    def close(self):
        for nd in self.nodes:
            if nd.proc is not None and nd.proc.poll() is None:
                nd.expect_exit = True
                nd.proc.send_signal(signal.SIGCONT)
                nd.proc.kill()
                try:
                    nd.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
            nd.reap()
        for nd in self.nodes:
            if nd.tmpfs:
                if os.environ.get("CLOUDLESS_KEEP"):
                    shutil.copytree(nd.home, nd.home + ".saved", symlinks=True,
                                    ignore=shutil.ignore_patterns("filler"))
                run_cmd(["umount", "-l", nd.home], check=False)
                nd.tmpfs = False


# ---- monitoring ----

class Agent(Proc):
    """One cloudless-agent, a "machine" of the domain tests (see the module docstring).
    replica_log is the shared log its replicas (replica.py) append to."""

    def __init__(self, dir, idx, coordinators, replica_log, ns_active, extra_args=()):
        self.idx = idx
        self.agent_id = "a%d" % idx
        self.uid = AGENT_UID_BASE + idx if ns_active else None
        self.data_dir = os.path.join(dir, self.agent_id)
        self.log_path = os.path.join(dir, self.agent_id + ".log")
        self.replica_log = replica_log
        self.coordinators = coordinators  # faultlib Nodes
        self.extra_args = list(extra_args)
        self.proc = None
        self.exits = []
        self.expect_exit = False
        os.makedirs(self.data_dir, exist_ok=True)
        if self.uid is not None:
            os.chown(self.data_dir, self.uid, self.uid)

    def start(self):
        args = [AGENT_BIN, "--node-id", self.agent_id, "--coordinators",
                ",".join(n.http_addr for n in self.coordinators), "--data-dir", self.data_dir,
                "--log-level", "debug"] + self.extra_args
        self.reap()
        with open(self.log_path, "ab") as lf:
            kw = {}
            if self.uid is not None:
                kw = dict(user=self.uid, group=self.uid, extra_groups=[])
            self.proc = subprocess.Popen(args, stdout=lf, stderr=lf, stdin=subprocess.DEVNULL,
                                         **kw)
        self.expect_exit = False
        return self

    def kill(self):
        """SIGKILL of the agent only: its replicas keep running."""
        Proc.kill(self)

    def _machine_pids(self, agent_pid):
        """Every process of this machine but the agent: its children (replicas between fork
        and exec included, and their log writers) and every replica process naming this
        agent and this run's replica log (re-adopted ones are no children of this agent)."""
        out = []
        me = ("CLOUDLESS_AGENT_ID=" + self.agent_id).encode()
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) == agent_pid:
                continue
            pid = int(name)
            try:
                with open("/proc/%d/stat" % pid, "rb") as f:
                    ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
                with open("/proc/%d/cmdline" % pid, "rb") as f:
                    cmd = f.read()
                with open("/proc/%d/environ" % pid, "rb") as f:
                    env = f.read().split(b"\0")
            except (OSError, ValueError, IndexError):
                continue
            if (agent_pid and ppid == agent_pid) or \
                    (self.replica_log.encode() in cmd and me in env):
                out.append(pid)
        return out

    def kill_machine(self, history=None):
        """The machine dies: the agent (frozen first, so it forks nothing more), then every
        process of the machine (_machine_pids), each replica's whole process group. Each kill
        is recorded in history as a `killed` line (the copy itself cannot write its stop)."""
        agent_pid = self.proc.pid if self.alive() else 0
        if agent_pid:
            self.proc.send_signal(signal.SIGSTOP)
        victims = self._machine_pids(agent_pid)
        self.kill()
        for pid in victims + self._machine_pids(0):
            try:
                if os.getpgid(pid) == pid:
                    os.killpg(pid, signal.SIGKILL)  # a replica leads its own group
                else:
                    os.kill(pid, signal.SIGKILL)  # forked, not yet in its own session
            except OSError:
                continue
            if history is not None:
                history.add(ev="killed", pid=pid, agent=self.agent_id)

    def __repr__(self):
        return self.agent_id


class Monitor:
    """Samples /raft/status of every node (one thread each, so a paused node stalls nobody)
    and records (term, node) whenever a node says it leads, plus processes that died when
    nobody killed them."""

    def __init__(self, cluster, interval=0.05):
        self.cluster = cluster
        self.interval = interval
        self.samples = []
        self.n_samples = 0
        self.lock = threading.Lock()
        self.stop_ev = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(nd,), daemon=True)
                        for nd in cluster.nodes]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def _run(self, nd):
        while not self.stop_ev.is_set():
            s = nd.status(timeout=0.5) if nd.alive() else None
            if s is not None:
                with self.lock:
                    self.n_samples += 1
                    if s["state"] == "leader":
                        self.samples.append((s["term"], nd.node_id))
            self.stop_ev.wait(self.interval)

    def stop(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join(timeout=5)


class History:
    """Thread-safe append-only event list, written as JSON lines."""

    def __init__(self):
        self.events = []
        self.lock = threading.Lock()

    def add(self, **e):
        e["time"] = now_ns()
        with self.lock:
            self.events.append(e)
        return e

    def write(self, path):
        with self.lock, open(path, "w") as f:
            for e in self.events:
                f.write(json.dumps(e, sort_keys=True) + "\n")


def recorded_call(history, process, node, f, key, value, method, path, body=None, headers=None,
                  timeout=5.0, as_f=None):
    """One client operation as history events: `invoke`, the request to `node`, then `ok`,
    `fail` or `info` (see classify). f is what the history records, as_f (default f) how the
    response is classified. Returns (type, response or None, value as recorded): a read
    records the value it read (None when absent), a delete whether the key existed."""
    e = history.add(type="invoke", process=process, f=f, key=key, value=value,
                    node=node.node_id)
    if headers and "Idempotency-Key" in headers:
        e["idempotency_key"] = headers["Idempotency-Key"]
    try:
        r = http_call(node.http_addr, method, path, body, headers, timeout=timeout)
        typ, why = classify(as_f or f, resp=r)
    except SendError as err:
        r, (typ, why) = None, classify(as_f or f, err=err)
    out = value
    if typ == "ok" and f == "read":
        out = b64value(r.json()) if r.status == 200 else None
    elif typ == "ok" and f == "delete":
        out = r.status == 200
    e = history.add(type=typ, process=process, f=f, key=key, value=out, node=node.node_id)
    if why:
        e["error"] = why
    return typ, r, out


def classify(f, resp=None, err=None):
    """Maps an outcome to ok / fail (certainly not applied) / info (unknown), with a reason.
    Reads change nothing, so for them fail and info are the same to the checker."""
    if err is not None:
        return ("info" if err.sent else "fail"), str(err)
    st = resp.status
    pt = resp.problem_type()
    if st == 200:
        return "ok", ""
    if st == 404 and f in ("read", "delete") and pt == "not-found":
        return "ok", ""
    if st == 409 and pt == "cas-mismatch":
        return "fail", "409 cas-mismatch"
    if st == 503 and pt in ("no-leader", "not-leader"):
        return "fail", "503 " + pt
    if st in (400, 405, 413):
        return "fail", "%d %s" % (st, pt)
    if st == 507 and pt == "storage":
        # Refused before anything was appended (the free-space guard, or raft refusing the
        # entry); a request re-sent after an unknown outcome is answered leadership-lost.
        return "fail", "507 storage"
    # 503 leadership-lost / shutting-down, 504 timeout, 5xx storage errors: unknown.
    return "info", "%d %s" % (st, pt)
