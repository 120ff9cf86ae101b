"""Cluster test harness: real cloudless-coordinator processes on loopback.

Each test builds a Cluster, which picks free ports, puts every node's data under one
temporary directory, starts processes with the same command line a user would type, and
kills exactly the PIDs it started when the test ends (also on failure or interrupt).
Everything waits by polling a condition with a deadline; nothing sleeps in place of a
condition. Standard library only.

Agents (cloudless-agent) are processes of the same kind (Agent below): each runs under the
cluster's temp dir with a metrics listener whose /status says which replica runs as which pid.
An agent's replicas are process groups of their own that outlive it; the harness kills exactly
those groups it can prove are the agent's replicas (pid and start time as recorded in the
agent's state file), never anything by name.

Environment:
  CLOUDLESS_BIN       path to the coordinator binary (meson passes it)
  CLOUDLESS_AGENT_BIN path to the agent binary (default: next to the coordinator)
  CLOUDLESS_KEEP      keep the temp dir (for debugging)
  CLOUDLESS_TIME_SCALE  multiply every deadline (sanitizer builds are slower)
"""
import atexit
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse

BIN = os.environ.get("CLOUDLESS_BIN", "build/cloudless-coordinator")
AGENT_BIN = os.environ.get("CLOUDLESS_AGENT_BIN",
                           os.path.join(os.path.dirname(BIN), "cloudless-agent"))
SCALE = float(os.environ.get("CLOUDLESS_TIME_SCALE", "1"))

_live_clusters = []


def scaled(seconds):
    return seconds * SCALE


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_EPHEMERAL_LOW = _ephemeral_low()
_handed_out = set()


def metric_value(text, name, labels=""):
    """The value of one sample in a /metrics text (None when absent): `name` alone, or with
    exactly `labels` ('result="success"')."""
    want = name + ("{%s}" % labels if labels else "")
    for line in text.splitlines():
        if line.startswith(want + " "):
            return float(line.split()[-1])
    return None


def free_port():
    """A port nobody listens on right now (bound then released), below the kernel's ephemeral
    range: a port from inside it (what binding port 0 gives) may be taken as the source port
    of some outgoing connection - raft and HTTP clients connect all the time - before the
    node that was given it binds it, and that node then fails to start."""
    low = 10000 if _EPHEMERAL_LOW > 11000 else 1024
    for _ in range(1000):
        port = random.randrange(low, _EPHEMERAL_LOW)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free port below %d" % _EPHEMERAL_LOW)


def free_port_block(n):
    """n consecutive ports, all free right now and below the ephemeral range (see free_port):
    for scripts that take a BASE_PORT."""
    low = 10000 if _EPHEMERAL_LOW > 11000 else 1024
    for _ in range(1000):
        base = random.randrange(low, _EPHEMERAL_LOW - n)
        ports = range(base, base + n)
        if any(p in _handed_out for p in ports):
            continue
        if all(port_is_free(p) for p in ports):
            _handed_out.update(ports)
            return base
    raise RuntimeError("no block of %d free ports below %d" % (n, _EPHEMERAL_LOW))


def port_is_free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def listening(port):
    """Whether something accepts connections on 127.0.0.1:port."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = {k.lower(): v for k, v in headers}
        self.body = body

    def json(self):
        return json.loads(self.body.decode())

    def header(self, name):
        return self.headers.get(name.lower())

    def __repr__(self):
        return "<%d %s>" % (self.status, self.body[:300])


def request(addr, method, path, body=None, headers=None, timeout=5.0, ssl_context=None):
    """One HTTP request (HTTPS with ssl_context); returns Response, or None when the
    connection failed (a failed TLS handshake included)."""
    host, port = addr.rsplit(":", 1)
    if ssl_context is not None:
        conn = http.client.HTTPSConnection(host, int(port), timeout=timeout,
                                           context=ssl_context)
    else:
        conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            headers = dict(headers or {}, **{"Content-Type": "application/json"})
        elif isinstance(body, str):
            body = body.encode()
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return Response(r.status, r.getheaders(), r.read())
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def wait_for(what, fn, timeout=10.0, interval=0.02):
    """Polls fn until it returns a truthy value; fails the test after the deadline."""
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
    raise AssertionError("timed out after %.1fs waiting for %s (last: %r)" % (scaled(timeout), what, last))


class Process:
    """One process this harness started (a coordinator or an agent): its command line, its
    log file (stdout and stderr, appended across restarts) and its lifetime."""

    def __init__(self, log_path):
        self.log_path = log_path
        self.proc = None
        self.args = []

    def start_args(self, args):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        return self

    def restart(self):
        """Starts again with exactly the same command line."""
        return self.start_args(self.args)

    def kill(self, sig=signal.SIGKILL):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            if sig in (signal.SIGKILL,):
                self.proc.wait(timeout=10)
        return self

    def stop(self, timeout=10):
        """SIGTERM and wait; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=scaled(timeout))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""


class Node(Process):
    def __init__(self, cluster, node_id):
        self.cluster = cluster
        self.node_id = node_id
        self.raft_addr = "127.0.0.1:%d" % free_port()
        self.http_addr = "127.0.0.1:%d" % free_port()
        self.data_dir = os.path.join(cluster.dir, node_id)
        Process.__init__(self, os.path.join(cluster.dir, node_id + ".log"))

    # -- process control --
    def start(self, bootstrap=False, join=None, extra=None):
        args = [BIN, "--node-id", self.node_id, "--raft-addr", self.raft_addr,
                "--http-addr", self.http_addr, "--data-dir", self.data_dir,
                "--heartbeat-ms", str(self.cluster.heartbeat_ms),
                "--election-ms", str(self.cluster.election_ms)]
        if bootstrap:
            args.append("--bootstrap")
        if join:
            args += ["--join", ",".join(n.http_addr if isinstance(n, Node) else n for n in join)]
        args += self.cluster.extra_args + (extra or [])
        self.args = args
        return self.start_args(args)

    def wipe(self):
        shutil.rmtree(self.data_dir, ignore_errors=True)

    # -- HTTP --
    def req(self, method, path, body=None, headers=None, timeout=5.0):
        if self.cluster.token and "Authorization" not in (headers or {}):
            headers = dict(headers or {}, Authorization="Bearer " + self.cluster.token)
        return request(self.http_addr, method, path, body, headers, timeout,
                       self.cluster.ssl_context)

    def status(self, digest=False):
        r = self.req("GET", "/raft/status" + ("?digest" if digest else ""), timeout=2)
        return r.json() if r is not None and r.status == 200 else None

    def metrics(self):
        r = self.req("GET", "/metrics", timeout=2)
        return r.body.decode() if r is not None and r.status == 200 else ""

    def metric(self, name, labels=""):
        return metric_value(self.metrics(), name, labels)

    def put(self, key, value, headers=None, query=""):
        return self.req("PUT", "/v1/kv/" + urllib.parse.quote(key) + query, value, headers)

    def get(self, key, query=""):
        return self.req("GET", "/v1/kv/" + urllib.parse.quote(key) + query)

    def __repr__(self):
        return "Node(%s)" % self.node_id


def _stat_fields(pid):
    """The fields of /proc/PID/stat after the command name (field 3 on), None when gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            text = f.read()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def proc_start_time(pid):
    """Field 22 of /proc/PID/stat (None when the process is gone or a zombie): with the pid it
    names one process, as the agent's state file does."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def proc_alive(pid):
    return pid > 0 and proc_start_time(pid) is not None


def proc_stat(pid):
    """(state, ppid, pgrp, session) of a process, None when it is gone."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    return fields[0], int(fields[1]), int(fields[2]), int(fields[3])


def rss_kb(pid):
    """VmRSS of a process, in KiB (0 when /proc does not say)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def proc_environ(pid):
    try:
        with open("/proc/%d/environ" % pid, "rb") as f:
            raw = f.read()
    except OSError:
        return {}
    env = {}
    for item in raw.split(b"\0"):
        if b"=" in item:
            k, v = item.split(b"=", 1)
            env[k.decode()] = v.decode(errors="replace")
    return env


class Agent(Process):
    """One cloudless-agent process with its data dir and metrics listener."""

    def __init__(self, cluster, agent_id, zone=None, labels=None):
        self.cluster = cluster
        self.agent_id = agent_id
        self.zone = zone
        self.labels = labels
        self.metrics_addr = "127.0.0.1:%d" % free_port()
        self.data_dir = os.path.join(cluster.dir, agent_id)
        Process.__init__(self, os.path.join(cluster.dir, agent_id + ".log"))
        self.groups = {}  # pgid -> start time of the replicas this agent ran

    def start(self, coordinators=None, extra=None):
        coords = coordinators or [n.http_addr for n in self.cluster.nodes.values()]
        args = [AGENT_BIN, "--node-id", self.agent_id, "--coordinators", ",".join(coords),
                "--data-dir", self.data_dir, "--metrics-addr", self.metrics_addr,
                "--log-level", "debug"]
        if self.zone:
            args += ["--zone", self.zone]
        if self.labels:
            args += ["--labels", ",".join("%s=%s" % kv for kv in self.labels.items())]
        self.args = args + (extra or [])
        return self.restart()

    def kill(self, sig=signal.SIGKILL):
        """Signals the agent process only: its replicas keep running."""
        self.remember_groups()
        return Process.kill(self, sig)

    def stop(self, timeout=10):
        self.remember_groups()
        return Process.stop(self, timeout)

    def remember_groups(self):
        """Records the replica groups the state file names (pid and start time)."""
        try:
            with open(os.path.join(self.data_dir, "state.json")) as f:
                st = json.load(f)
        except (OSError, ValueError):
            return
        for r in st.get("replicas", []):
            if r.get("pid"):
                self.groups[r["pid"]] = r["start_time"]

    def kill_replicas(self):
        """SIGKILL to every replica group this agent started that is still the same process
        group leader (same pid, same start time): a machine losing power."""
        self.remember_groups()
        for pgid, start in list(self.groups.items()):
            if proc_start_time(pgid) == start:
                try:
                    os.killpg(pgid, signal.SIGKILL)
                except OSError:
                    pass

    def kill_machine(self):
        self.kill()
        self.kill_replicas()

    def status(self):
        r = request(self.metrics_addr, "GET", "/status", timeout=2)
        return r.json() if r is not None and r.status == 200 else None

    def metrics(self):
        r = request(self.metrics_addr, "GET", "/metrics", timeout=2)
        return r.body.decode() if r is not None and r.status == 200 else ""

    def metric(self, name, labels=""):
        return metric_value(self.metrics(), name, labels)

    def running(self):
        """{replica id: (epoch, pid)} of what this agent reports running, by its /status,
        each checked alive in /proc."""
        st = self.status()
        out = {}
        for r in (st or {}).get("replicas", []):
            if r["state"] == "running" and r["pid"] and proc_alive(r["pid"]):
                out[r["id"]] = (r["epoch"], r["pid"])
                self.groups.setdefault(r["pid"], proc_start_time(r["pid"]))
        return out

    def __repr__(self):
        return "Agent(%s)" % self.agent_id


class Cluster:
    def __init__(self, name, heartbeat_ms=50, election_ms=300, extra_args=None,
                 ssl_context=None):
        self.dir = tempfile.mkdtemp(prefix="cloudless-%s-" % name)
        self.ssl_context = ssl_context  # the harness's own requests go over HTTPS with it
        self.token = None  # NAME.SECRET the harness's own requests carry (--auth-file tests)
        self.nodes = {}
        self.agents = {}
        self.heartbeat_ms = heartbeat_ms
        self.election_ms = election_ms
        self.extra_args = list(extra_args or [])
        _live_clusters.append(self)

    def node(self, node_id):
        if node_id not in self.nodes:
            self.nodes[node_id] = Node(self, node_id)
        return self.nodes[node_id]

    def start(self, n=3, join_via_flag=True, extra_for=None):
        """n nodes: the first bootstraps, the others --join it; waits for n voters.
        extra_for(node) gives a node's own extra flags (its TLS certificate, say)."""
        more = extra_for or (lambda nd: [])
        first = self.node("coordinator-1")
        first.start(bootstrap=True, extra=more(first))
        wait_for("first node to lead", lambda: self.leader_of([first]))
        for i in range(2, n + 1):
            nd = self.node("coordinator-%d" % i)
            if join_via_flag:
                nd.start(join=[first], extra=more(nd))
            else:
                nd.start(extra=more(nd))
        if join_via_flag:
            self.wait_voters(n)
        return self

    def agent(self, agent_id, zone=None, labels=None):
        if agent_id not in self.agents:
            self.agents[agent_id] = Agent(self, agent_id, zone, labels)
        return self.agents[agent_id]

    def running(self):
        return [n for n in self.nodes.values() if n.alive()]

    def leader_of(self, nodes=None):
        """The node that reports itself leader, if exactly one does and it is ready."""
        leaders = []
        for n in nodes or self.running():
            s = n.status()
            if s and s["state"] == "leader" and s.get("leader_ready"):
                leaders.append(n)
        return leaders[0] if len(leaders) == 1 else None

    def leader(self, timeout=10):
        return wait_for("a single ready leader", lambda: self.leader_of(), timeout)

    def followers(self):
        ld = self.leader()
        return [n for n in self.running() if n is not ld]

    def wait_voters(self, n, nodes=None, timeout=20):
        def ok():
            for nd in nodes or self.running():
                s = nd.status()
                if not s:
                    return False
                voters = sorted(x["node_id"] for x in s["servers"] if x["role"] == "voter")
                if len(voters) != n or "" in voters:
                    return False
            return True
        wait_for("%d voters everywhere" % n, ok, timeout)

    def wait_converged(self, nodes=None, timeout=20):
        """Every node at the same applied index with the same state digest."""
        def same():
            st = [nd.status(digest=True) for nd in nodes or self.running()]
            if not all(st):
                return False
            digests = {(s["state_digest"], s["fsm_index"]) for s in st}
            idx = {s["applied_index"] for s in st}
            return st if len(digests) == 1 and len(idx) == 1 else False
        return wait_for("converged state digests", same, timeout)

    def close(self):
        for a in self.agents.values():
            a.kill_machine()
        for n in self.nodes.values():
            if n.proc and n.proc.poll() is None:
                n.proc.kill()
                try:
                    n.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
        if not os.environ.get("CLOUDLESS_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)
        if self in _live_clusters:
            _live_clusters.remove(self)

    def dump_logs(self):
        for n in self.nodes.values():
            sys.stderr.write("----- log of %s -----\n%s\n" % (n.node_id, n.log()[-6000:]))
        for a in self.agents.values():
            sys.stderr.write("----- log of %s -----\n%s\n" % (a.agent_id, a.log()[-6000:]))


def _cleanup():
    for c in list(_live_clusters):
        c.close()


atexit.register(_cleanup)
for _sig in (signal.SIGTERM, signal.SIGINT):
    signal.signal(_sig, lambda s, f: (_cleanup(), sys.exit(1)))


def run(tests):
    """Runs test functions (each takes a fresh Cluster factory) and exits non-zero on any
    failure, printing `N passed, N failed` for this file."""
    passed = failed = 0
    only = os.environ.get("CLOUDLESS_ONLY")
    for t in tests:
        if only and only not in t.__name__:
            continue
        clusters = []

        def make(name=t.__name__, **kw):
            c = Cluster(name, **kw)
            clusters.append(c)
            return c
        start = time.monotonic()
        try:
            t(make)
            passed += 1
            print("PASS %s (%.1fs)" % (t.__name__, time.monotonic() - start), flush=True)
        except Exception:
            failed += 1
            print("FAIL %s (%.1fs)" % (t.__name__, time.monotonic() - start), flush=True)
            traceback.print_exc()
            for c in clusters:
                c.dump_logs()
        finally:
            for c in clusters:
                c.close()
    print("%d passed, %d failed" % (passed, failed), flush=True)
    sys.exit(1 if failed else 0)


# -- raw HTTP: the exact bytes, no client library in between --

def raw_exchange(addr, data, timeout=3.0, shut_write=False):
    """Sends `data` as-is on a fresh connection and reads until the server closes it or
    `timeout` passes. Returns (bytes received, closed_by_server)."""
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=scaled(timeout))
    try:
        try:
            s.sendall(data)
            if shut_write:
                s.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may refuse and close before it has read everything
        chunks, closed = [], False
        deadline = time.monotonic() + scaled(timeout)
        while time.monotonic() < deadline:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                b = s.recv(65536)
            except socket.timeout:
                break
            except OSError:
                closed = True
                break
            if not b:
                closed = True
                break
            chunks.append(b)
        return b"".join(chunks), closed
    finally:
        s.close()


class RawResponse:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # list of (name, value) as sent
        self.body = body

    def header(self, name):
        vals = [v for k, v in self.headers if k.lower() == name.lower()]
        return vals[0] if vals else None

    def count(self, name):
        return sum(1 for k, _ in self.headers if k.lower() == name.lower())

    def json(self):
        return json.loads(self.body.decode())

    def __repr__(self):
        return "<raw %d %r %r>" % (self.status, self.headers, self.body[:200])


def parse_responses(data, head=False):
    """Splits received bytes into HTTP/1.1 responses, strictly: a status line, CRLF-terminated
    header lines, a blank line and exactly Content-Length body bytes (none for 1xx, or when
    `head`). Raises ValueError on anything else, so a doubled status line, an HTML page
    without a length or trailing garbage all fail. Returns the list of responses."""
    out, pos = [], 0
    while pos < len(data):
        end = data.find(b"\r\n\r\n", pos)
        if end < 0:
            raise ValueError("incomplete response head: %r" % data[pos:pos + 200])
        lines = data[pos:end].split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or parts[0] != b"HTTP/1.1" or not parts[1].isdigit() or len(parts[1]) != 3:
            raise ValueError("bad status line %r" % lines[0])
        status = int(parts[1])
        headers = []
        for ln in lines[1:]:
            if b":" not in ln or ln[:1] in (b" ", b"\t"):
                raise ValueError("bad header line %r" % ln)
            k, v = ln.split(b":", 1)
            if k != k.strip() or not k:
                raise ValueError("bad header name %r" % ln)
            headers.append((k.decode(), v.strip().decode()))
        pos = end + 4
        r = RawResponse(status, headers, b"")
        if 100 <= status < 200:
            out.append(r)
            continue
        if r.count("Content-Length") != 1 or r.header("Transfer-Encoding") is not None:
            raise ValueError("response without exactly one Content-Length: %r" % r)
        n = int(r.header("Content-Length"))
        if not head:
            if pos + n > len(data):
                raise ValueError("body shorter than Content-Length: %r" % r)
            r.body = data[pos:pos + n]
            pos += n
        out.append(r)
    return out


# -- the Prometheus exposition as the users' scripts read it --

# The original test-ha-cluster.sh's leader check, character for character: an unanchored grep
# that also matches a HELP line such as `# HELP cloudless_coordinator_is_leader 1 if ...`.
ORIGINAL_LEADER_GREP = 'curl -s http://localhost:%d/metrics | grep -q "cloudless_coordinator_is_leader 1"'

_HELP_VALUE = re.compile(r"(?:^|[\s(])([a-zA-Z_:][a-zA-Z0-9_:]*)\s+([-+]?(?:\d|\.\d|Inf\b|NaN\b))")


def original_grep_says_leader(port):
    """True when the original script's grep counts the node whose /metrics is on port."""
    return subprocess.run(["bash", "-c", ORIGINAL_LEADER_GREP % port],
                          stdin=subprocess.DEVNULL).returncode == 0


def help_lines_with_values(text):
    """HELP lines in which a metric name is followed by a value-like token: an unanchored
    grep for `NAME VALUE` would take them for samples. Names are those of the scrape's own
    families. Returns the offending lines."""
    families = {ln.split(" ")[2] for ln in text.splitlines() if ln.startswith("# TYPE ")}
    series = set(families)
    for f in families:
        series |= {f + s for s in ("_bucket", "_sum", "_count", "_total")}
    bad = []
    for ln in text.splitlines():
        if ln.startswith("# HELP "):
            for name, _ in _HELP_VALUE.findall(ln[len("# HELP "):]):
                if name in series:
                    bad.append(ln)
                    break
    return bad


# -- YAML: the compose, Prometheus and workflow files --

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
_YAML_JSON = os.path.join(os.path.dirname(os.path.abspath(__file__)), "yaml_json.mjs")


def load_yaml(path=None, text=None):
    """The YAML file at path (or the text) as Python values, through the `yaml` npm package of
    package.json (the cluster tests use Python's standard library only). Invalid YAML fails the
    test with the parser's message."""
    assert shutil.which("node"), "node is needed to read YAML (Debian's nodejs)"
    p = subprocess.run(["node", _YAML_JSON, path or "-"], input=text, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, "%s: %s" % (path or "YAML text", p.stderr.strip())
    return json.loads(p.stdout)


# -- a binary's --help, as the docs and the compose checks read it --

def help_options(binary, *command):
    """The options of `binary [command...] --help`, in order: [{"flag", "short", "meta", "text",
    "env", "default"}]. An option starts on a line `  [-x, ]--flag [META]`; the lines under it
    are its description, whose last sentence is `env NAME; default VALUE` (or `; required`)."""
    p = subprocess.run([binary] + list(command) + ["--help"], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 0, p.stderr
    section = p.stdout.split("\nOptions:\n", 1)[-1]
    section = re.split(r"\n\S", section, maxsplit=1)[0]  # up to the next heading
    opts = []
    for ln in section.splitlines():
        m = re.match(r"^  (?:(-\w), )?(--[a-z][a-z0-9-]*)(?: ([A-Z][A-Z:\[\],.]*))?(?:\s+(.*))?$", ln)
        if m:
            opts.append({"flag": m.group(2), "short": m.group(1), "meta": m.group(3) or "",
                         "text": m.group(4) or ""})
        elif opts and ln.strip():
            opts[-1]["text"] += " " + ln.strip()
    for o in opts:
        o["text"] = o["text"].strip()
        m = re.search(r"\s*env (CLOUDLESS_[A-Z0-9_]+)(?:; (?:default (.*)|(required)))?$", o["text"])
        o["env"] = m.group(1) if m else None
        o["default"] = (m.group(2) or ("required" if m.group(3) else "")) if m else ""
        if m:
            o["text"] = o["text"][:m.start()].strip()
    return opts
