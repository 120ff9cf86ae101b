#!/usr/bin/env python3
"""Side-by-side benchmark: a 3-node Cloudless cluster and a 3-member etcd 3.4 cluster on loopback.

Both clusters run at the same time, with the same load generator (cloudless-loadgen), and
every measurement alternates between them (ours, etcd, ours, etcd, ...) so that the noise of a
shared 2-core machine hits both; figures are medians over --reps repetitions and are compared as
ratios ours/etcd. Phases, in order:

  startup      process start -> ready (ours: /raft/health 200, etcd: /health 200)
  rss idle     VmRSS of every node once the clusters formed
  join         load --join-keys keys, then add a fresh 4th node and time until it caught up
               (ours: start with --join until its applied index == the leader's; etcd:
               `etcdctl member add` + start until its raft index == the leader's); the new
               node is removed again afterwards; --join-reps N repeats that N times per
               system, alternating, each with a fresh node, and reports the median
  throughput   for each concurrency: writes to the leader, writes to a follower (forwarding),
               linearizable reads (leader), stale/serializable reads (a follower)
  rss loaded   VmRSS after the throughput phase
  failover     SIGKILL the leader while 2 clients write through the followers; time from the
               kill to the first acknowledged write sent after it; the member is restarted
               (restart -> ready is timed too) before the next repetition
  graceful     SIGTERM the leader while writing; the longest gap between acknowledged writes

--quick runs everything tiny (concurrency 1 and 16, 1 repetition, 2,000 keys for the join): it
proves the tooling works and asserts that each phase produced numbers and the throughput,
startup and join phases had zero errors. It asserts no timings.

Standard library only. Output: JSON lines (--out DIR/results.jsonl), a markdown report
(DIR/report.md, also printed), and a human-readable log on stderr.
"""
import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def log(msg):
    sys.stderr.write("[%7.1fs] %s\n" % (time.monotonic() - T0, msg))
    sys.stderr.flush()


T0 = time.monotonic()


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny run that only proves the tooling works")
    p.add_argument("--coordinator", default=os.path.join(ROOT, "build-rel", "cloudless-coordinator"))
    p.add_argument("--loadgen", default=os.path.join(ROOT, "build-rel", "bench", "cloudless-loadgen"))
    p.add_argument("--etcd", default="etcd")
    p.add_argument("--etcdctl", default="etcdctl")
    p.add_argument("--reps", type=int, default=3, help="repetitions of the throughput matrix")
    p.add_argument("--duration", type=float, default=5.0, help="measured seconds per run")
    p.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each run")
    p.add_argument("--concurrency", default="1,16,64,256")
    p.add_argument("--ops", default="put-leader,put-follower,get,stale")
    p.add_argument("--failover-reps", type=int, default=10)
    p.add_argument("--graceful-reps", type=int, default=3)
    p.add_argument("--join-keys", type=int, default=100000)
    p.add_argument("--join-reps", type=int, default=1, help="joins per system (median shown)")
    p.add_argument("--read-keys", type=int, default=10000)
    p.add_argument("--skip", default="", help="comma-separated phases to skip "
                   "(join,throughput,failover,graceful)")
    p.add_argument("--out", default=None, help="directory for results.jsonl and report.md "
                   "(without it they are written under the temporary data directory and removed "
                   "with it; the report is printed either way)")
    p.add_argument("--keep", action="store_true", help="keep the clusters' data directory")
    a = p.parse_args()
    if a.quick:
        a.reps = 1
        a.duration = 1.0
        a.warmup = 0.2
        a.concurrency = "1,16"
        a.failover_reps = 1
        a.graceful_reps = 1
        a.join_keys = 2000
        a.read_keys = 1000
    a.concurrency = [int(c) for c in a.concurrency.split(",") if c]
    a.ops = [o for o in a.ops.split(",") if o]
    a.skip = set(s for s in a.skip.split(",") if s)
    return a


ARGS = parse_args()
os.environ["CLOUDLESS_BIN"] = os.path.abspath(ARGS.coordinator)
os.environ["CLOUDLESS_KEEP"] = "1"  # harness must not delete data dirs: main() cleans up
sys.path.insert(0, os.path.join(ROOT, "tests", "cluster"))
import harness  # noqa: E402  (reads CLOUDLESS_BIN at import)

# ---------------------------------------------------------------------------------------------
# small helpers


def http(url, method="GET", body=None, timeout=2.0):
    """(status, parsed JSON or bytes) or (None, None) when the connection failed."""
    data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        raw = e.read()
        status = e.code
    except (OSError, ValueError):
        return None, None
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw


def wait_until(what, fn, timeout, interval=0.005):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except RuntimeError:
            raise
        except Exception as e:  # a process may be mid-start
            last = e
        if last:
            return last
        time.sleep(interval)
    raise RuntimeError("timed out after %.0fs waiting for %s (last: %r)" % (timeout, what, last))


rss_kb = harness.rss_kb


def maxval(xs):
    xs = [x for x in xs if x is not None]
    return max(xs) if xs else None


def div(a, b):
    return a / b if a is not None and b else float("nan")


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


RESULTS = []


def record(**kw):
    RESULTS.append(kw)
    if OUT_FILE:
        OUT_FILE.write(json.dumps(kw) + "\n")
        OUT_FILE.flush()


OUT_FILE = None

# ---------------------------------------------------------------------------------------------
# Cloudless


class Ours:
    name = "cloudless"
    api = "cloudless"

    def __init__(self, base):
        self.cluster = harness.Cluster("bench")
        shutil.rmtree(self.cluster.dir, ignore_errors=True)
        self.cluster.dir = os.path.join(base, "cloudless")
        os.makedirs(self.cluster.dir)

    def url(self, node):
        return "http://" + node.http_addr

    def ready(self, node):
        st, _ = http(self.url(node) + "/raft/health", timeout=1)
        return st == 200

    def start(self):
        """Starts 3 nodes (bootstrap + 2 joins); returns seconds from each start to ready."""
        times = []
        first = self.cluster.node("coordinator-1")
        t = time.monotonic()
        first.start(bootstrap=True)
        wait_until("coordinator-1 ready", lambda: self.ready(first), 20)
        times.append(time.monotonic() - t)
        for i in (2, 3):
            nd = self.cluster.node("coordinator-%d" % i)
            t = time.monotonic()
            nd.start(join=[first])
            wait_until("%s ready" % nd.node_id, lambda: self.ready(nd), 20)
            times.append(time.monotonic() - t)
        self.cluster.wait_voters(3)
        return times

    def members(self):
        return [n for n in self.cluster.nodes.values() if n.alive()]

    def leader(self):
        return self.cluster.leader(timeout=20)

    def follower(self, leader=None):
        leader = leader or self.leader()
        return sorted((n for n in self.members() if n is not leader), key=lambda n: n.node_id)[0]

    def pid(self, node):
        return node.proc.pid

    def kill(self, node, sig):
        node.kill(sig)

    def wait_exit(self, node, timeout=20):
        node.proc.wait(timeout=timeout)

    def restart(self, node):
        node.restart()

    def healthy(self, n=3):
        """All n members ready, one ready leader, every node at the leader's applied index."""
        nodes = self.members()
        if len(nodes) != n or not all(self.ready(x) for x in nodes):
            return False
        if self.cluster.leader_of(nodes) is None:
            return False
        st = [x.status() for x in nodes]
        return all(st) and len({s["applied_index"] for s in st}) == 1

    def applied(self, node):
        s = node.status()
        return s["applied_index"] if s else None

    def debug(self, node):
        s = node.status()
        if not s:
            return None
        return {k: s.get(k) for k in ("state", "term", "leader", "commit_index", "applied_index",
                                      "fsm_index", "leader_ready")}

    def join_new(self, leader, number=4):
        """Starts a fresh node coordinator-<number> with --join; returns (node, t_start)."""
        nd = self.cluster.node("coordinator-%d" % number)
        t = time.monotonic()
        nd.start(join=[leader])
        return nd, t

    def caught_up(self, new, leader):
        a, b = self.applied(new), self.applied(leader)
        return a is not None and b is not None and a >= b

    def remove(self, node):
        ld = self.leader()
        st, body = http(self.url(ld) + "/raft/remove", "POST", {"node_id": node.node_id}, timeout=30)
        if st != 200:
            raise RuntimeError("remove %s: %s %r" % (node.node_id, st, body))
        node.kill(signal.SIGKILL)
        del self.cluster.nodes[node.node_id]

    def close(self):
        self.cluster.close()


# ---------------------------------------------------------------------------------------------
# etcd


class EtcdMember:
    def __init__(self, owner, name):
        self.owner = owner
        self.name = name
        self.node_id = name
        self.client = "127.0.0.1:%d" % harness.free_port()
        self.peer = "127.0.0.1:%d" % harness.free_port()
        self.data_dir = os.path.join(owner.dir, name)
        self.log_path = os.path.join(owner.dir, name + ".log")
        self.proc = None
        self.args = None

    def start(self, initial_cluster, state):
        self.args = [ARGS.etcd, "--name", self.name, "--data-dir", self.data_dir,
                     "--listen-client-urls", "http://" + self.client,
                     "--advertise-client-urls", "http://" + self.client,
                     "--listen-peer-urls", "http://" + self.peer,
                     "--initial-advertise-peer-urls", "http://" + self.peer,
                     "--initial-cluster", initial_cluster,
                     "--initial-cluster-state", state,
                     "--initial-cluster-token", "bench",
                     "--logger", "zap", "--log-level", "warn"]
        self.restart()

    def restart(self):
        logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args, stdout=logf, stderr=logf, stdin=subprocess.DEVNULL)
        logf.close()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None


class Etcd:
    name = "etcd"
    api = "etcd"

    def __init__(self, base):
        self.dir = os.path.join(base, "etcd")
        os.makedirs(self.dir)
        self.nodes = {}

    def url(self, m):
        return "http://" + m.client

    def ready(self, m):
        st, _ = http(self.url(m) + "/health", timeout=1)
        return st == 200

    def start(self):
        ms = [EtcdMember(self, "etcd-%d" % i) for i in (1, 2, 3)]
        for m in ms:
            self.nodes[m.name] = m
        ic = ",".join("%s=http://%s" % (m.name, m.peer) for m in ms)
        starts = {}
        for m in ms:
            starts[m.name] = time.monotonic()
            m.start(ic, "new")
        times = []
        for m in ms:
            wait_until("%s ready" % m.name, lambda: self.ready(m), 30)
            times.append(time.monotonic() - starts[m.name])
        return times

    def members(self):
        return [m for m in self.nodes.values() if m.alive()]

    def status(self, m):
        st, body = http(self.url(m) + "/v3/maintenance/status", "POST", {}, timeout=1)
        return body if st == 200 and isinstance(body, dict) else None

    def leader_of(self):
        leaders = set()
        by_id = {}
        for m in self.members():
            s = self.status(m)
            if not s or s.get("leader") in (None, "0"):
                return None
            leaders.add(s["leader"])
            by_id[s["header"]["member_id"]] = m
        if len(leaders) != 1:
            return None
        return by_id.get(leaders.pop())

    def leader(self):
        return wait_until("an etcd leader", self.leader_of, 20)

    def follower(self, leader=None):
        leader = leader or self.leader()
        return sorted((m for m in self.members() if m is not leader), key=lambda m: m.name)[0]

    def pid(self, m):
        return m.proc.pid

    def kill(self, m, sig):
        m.proc.send_signal(sig)
        if sig == signal.SIGKILL:
            m.proc.wait(timeout=10)

    def wait_exit(self, m, timeout=20):
        m.proc.wait(timeout=timeout)

    def restart(self, m):
        m.restart()

    def applied(self, m):
        s = self.status(m)
        return int(s.get("raftIndex", 0)) if s else None

    def debug(self, m):
        return self.status(m)

    def healthy(self, n=3):
        ms = self.members()
        if len(ms) != n or not all(self.ready(m) for m in ms):
            return False
        if self.leader_of() is None:
            return False
        idx = [self.applied(m) for m in ms]
        return None not in idx and len(set(idx)) == 1

    def etcdctl(self, *args):
        eps = ",".join(m.client for m in self.members())
        env = dict(os.environ, ETCDCTL_API="3")
        r = subprocess.run([ARGS.etcdctl, "--endpoints", eps] + list(args), env=env,
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError("etcdctl %s: %s" % (" ".join(args), r.stderr.strip()))
        return r.stdout

    def reconfigure(self, *args):
        """A membership etcdctl command, repeated while etcd refuses it as "unhealthy
        cluster": its strict reconfiguration check wants the leader connected to every peer
        for 5 s, both before an add and before removing a member that joined just now.
        Returns when the command was accepted: when that attempt started."""
        deadline = time.monotonic() + 30
        while True:
            t = time.monotonic()
            try:
                self.etcdctl(*args)
                return t
            except RuntimeError as e:
                if "unhealthy cluster" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def join_new(self, leader, number=4):
        """member add + start of a fresh member etcd-<number>; returns (member, t_start)."""
        m = EtcdMember(self, "etcd-%d" % number)
        # The clock starts at the add that was accepted (see reconfigure).
        t = self.reconfigure("member", "add", m.name, "--peer-urls=http://" + m.peer)
        self.nodes[m.name] = m
        ic = ",".join("%s=http://%s" % (x.name, x.peer) for x in self.nodes.values())
        m.start(ic, "existing")
        return m, t

    def caught_up(self, new, leader):
        a, b = self.applied(new), self.applied(leader)
        return a is not None and b is not None and a >= b

    def remove(self, m):
        s = wait_until("etcd-4 status", lambda: self.status(m), 10)
        mid = int(s["header"]["member_id"])
        self.reconfigure("member", "remove", "%x" % mid)
        if m.alive():
            m.proc.kill()
            m.proc.wait(timeout=10)
        del self.nodes[m.name]

    def close(self):
        for m in self.nodes.values():
            if m.alive():
                m.proc.kill()
                try:
                    m.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass


# ---------------------------------------------------------------------------------------------
# load generator


def loadgen(sysm, urls, op, concurrency, duration=None, warmup=0.0, requests=None, prefix="b",
            keys=None, extra=None, label=""):
    args = [ARGS.loadgen, "--api", sysm.api, "--op", op, "--url", ",".join(urls),
            "--concurrency", str(concurrency), "--prefix", prefix, "--label", label, "--quiet"]
    if requests:
        args += ["--requests", str(requests)]
    else:
        args += ["--duration", str(duration), "--warmup", str(warmup)]
    if keys:
        args += ["--keys", str(keys)]
    args += extra or []
    r = subprocess.run(args, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError("loadgen failed: %s" % r.stderr.strip())
    return json.loads(r.stdout.strip().splitlines()[-1])


PREFIX_SEQ = [0]


def fresh_prefix(tag):
    PREFIX_SEQ[0] += 1
    return "%s%d" % (tag, PREFIX_SEQ[0])


# ---------------------------------------------------------------------------------------------
# phases


def phase_join(systems):
    """--join-reps joins per system, alternating systems, each a fresh node that is removed
    again afterwards; the figure is the median."""
    out = {s.name: [] for s in systems}
    for s in systems:
        ld = s.leader()
        log("%s: loading %d keys before the join" % (s.name, ARGS.join_keys))
        r = loadgen(s, [s.url(ld)], "put", 64, requests=ARGS.join_keys, prefix="j")
        record(phase="join-load", system=s.name, **r)
        if r["errors"]:
            raise RuntimeError("%s: %d errors while loading" % (s.name, r["errors"]))
    for rep in range(ARGS.join_reps):
        for s in systems:
            ld = s.leader()
            new, t = s.join_new(ld, 4 + rep)

            def caught_up():
                if not new.alive():
                    raise RuntimeError("%s: the new node exited while catching up" % s.name)
                return s.caught_up(new, ld)
            wait_until("%s new node caught up" % s.name, caught_up, 120, 0.005)
            secs = time.monotonic() - t
            log("%s: new node joined and caught up %d keys in %.3f s (rep %d)"
                % (s.name, ARGS.join_keys, secs, rep))
            record(phase="join", system=s.name, rep=rep, keys=ARGS.join_keys, seconds=secs)
            out[s.name].append(secs)
            s.remove(new)
            wait_until("%s healthy after removing the new node" % s.name, lambda: s.healthy(3),
                       60, 0.05)
    return {name: median(v) for name, v in out.items()}


THROUGHPUT_OPS = {
    # name: (loadgen op, target)
    "put-leader": ("put", "leader"),
    "put-follower": ("put", "follower"),
    "get": ("get", "leader"),
    "stale": ("stale", "follower"),
}


def phase_preload_reads(systems):
    for s in systems:
        r = loadgen(s, [s.url(s.leader())], "put", 64, requests=ARGS.read_keys, prefix="r")
        record(phase="read-load", system=s.name, **r)
        if r["errors"]:
            raise RuntimeError("%s: %d errors while loading read keys" % (s.name, r["errors"]))


def phase_throughput(systems):
    runs = {}  # (op, c, system) -> [result]
    for rep in range(ARGS.reps):
        for op in ARGS.ops:
            lop, target = THROUGHPUT_OPS[op]
            for c in ARGS.concurrency:
                for s in systems:  # alternating: ours, etcd, ours, etcd, ...
                    ld = s.leader()
                    node = ld if target == "leader" else s.follower(ld)
                    kw = {}
                    if lop == "put":
                        kw["prefix"] = fresh_prefix("w")
                    else:
                        kw["prefix"] = "r"
                        kw["keys"] = ARGS.read_keys
                    r = loadgen(s, [s.url(node)], lop, c, ARGS.duration, ARGS.warmup,
                                label=op, **kw)
                    record(phase="throughput", system=s.name, rep=rep, name=op, **r)
                    log("rep %d %-12s c=%-3d %-9s %8.0f/s p50 %6.2f p99 %6.2f p99.9 %6.2f ms err %d"
                        % (rep, op, c, s.name, r["throughput"], r["p50_ms"], r["p99_ms"],
                           r["p999_ms"], r["errors"]))
                    runs.setdefault((op, c, s.name), []).append(r)
    return runs


def wait_healthy(s, when, interval=0.05):
    try:
        wait_until("%s healthy %s" % (s.name, when), lambda: s.healthy(3), 60, interval)
    except RuntimeError:
        for n in s.members():
            log("%s %s: ready=%s status=%r" % (s.name, n.node_id, s.ready(n), s.debug(n)))
        raise


def read_acks(path):
    acks = []
    try:
        with open(path) as f:
            for line in f:
                p = line.split()
                if len(p) == 3:
                    acks.append((int(p[0]) / 1e9, int(p[1]) / 1e9, int(p[2])))
    except OSError:
        pass
    return acks


def start_writer(s, nodes, path, prefix):
    args = [ARGS.loadgen, "--api", s.api, "--op", "put", "--url",
            ",".join(s.url(n) for n in nodes), "--concurrency", str(2 * len(nodes)),
            "--duration", "60", "--prefix", prefix, "--timeout-ms", "1000", "--quiet",
            "--ack-log", path]
    if s.api == "cloudless":
        args.append("--idempotent")
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_writer(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=10)


@contextlib.contextmanager
def writing_through_followers(s, base, phase, rep):
    """Writers on the leader's followers, flowing steadily, for the body of the with block;
    yields (leader, ack log path). The writers stop when the block ends."""
    ld = s.leader()
    others = [n for n in s.members() if n is not ld]
    path = os.path.join(base, "acks-%s-%s-%d" % (phase, s.name, rep))
    w = start_writer(s, others, path, fresh_prefix(phase[0]))
    try:
        wait_until("writes flowing", lambda: len([a for a in read_acks(path) if 200 <= a[2] < 300]) > 20, 10)
        time.sleep(0.3)
        yield ld, path
    finally:
        stop_writer(w)


def phase_failover(systems, base):
    res = {s.name: {"gap": [], "errors": [], "restart_ready": []} for s in systems}
    for rep in range(ARGS.failover_reps):
        for s in systems:
            with writing_through_followers(s, base, "failover", rep) as (ld, path):
                t_kill = time.monotonic()
                s.kill(ld, signal.SIGKILL)

                def acked_after():
                    ok = [a for a in read_acks(path) if 200 <= a[2] < 300 and a[0] >= t_kill]
                    return min(a[1] for a in ok) if ok else None
                first = wait_until("a write acknowledged after the kill", acked_after, 30, 0.01)
                time.sleep(0.2)
            acks = read_acks(path)
            errs = sum(1 for a in acks if not 200 <= a[2] < 300)
            gap = first - t_kill
            res[s.name]["gap"].append(gap)
            res[s.name]["errors"].append(errs)
            t = time.monotonic()
            s.restart(ld)
            wait_until("restarted member ready", lambda: s.ready(ld), 60, 0.005)
            rr = time.monotonic() - t
            res[s.name]["restart_ready"].append(rr)
            wait_healthy(s, "after restart")
            record(phase="failover", system=s.name, rep=rep, gap_s=gap, client_errors=errs,
                   restart_ready_s=rr)
            log("failover rep %d %-9s gap %.3f s (client errors %d); restart->ready %.3f s"
                % (rep, s.name, gap, errs, rr))
    return res


def phase_graceful(systems, base):
    res = {s.name: {"gap": [], "errors": []} for s in systems}
    for rep in range(ARGS.graceful_reps):
        for s in systems:
            with writing_through_followers(s, base, "graceful", rep) as (ld, path):
                t_term = time.monotonic()
                s.kill(ld, signal.SIGTERM)
                s.wait_exit(ld, 30)
                s.restart(ld)
                wait_healthy(s, "after graceful restart", 0.02)
                time.sleep(0.3)
                t_end = time.monotonic()
            acks = read_acks(path)
            window = [a for a in acks if t_term - 0.1 <= a[1] <= t_end]
            done = sorted(a[1] for a in window if 200 <= a[2] < 300)
            errs = sum(1 for a in window if not 200 <= a[2] < 300)
            gap = max((b - a for a, b in zip(done, done[1:])), default=None)
            res[s.name]["gap"].append(gap)
            res[s.name]["errors"].append(errs)
            record(phase="graceful", system=s.name, rep=rep, max_gap_s=gap, client_errors=errs,
                   acks=len(done))
            log("graceful rep %d %-9s max gap between acks %.4f s (client errors %d, %d acks)"
                % (rep, s.name, gap if gap is not None else -1, errs, len(done)))
    return res


def rss(systems, when):
    out = {}
    for s in systems:
        vals = {n.node_id: rss_kb(s.pid(n)) for n in s.members()}
        out[s.name] = vals
        record(phase="rss", when=when, system=s.name, rss_kb=vals)
        log("RSS %s %s: %s" % (when, s.name, ", ".join("%s %.1f MB" % (k, v / 1024) for k, v in vals.items())))
    return out


# ---------------------------------------------------------------------------------------------
# report


def fmt_ms(x):
    return "-" if x is None else ("%.2f ms" % x)


def fmt_s(x):
    return "-" if x is None else ("%.3f s" % x)


def ratio(a, b):
    return "-" if a is None or b is None or b == 0 else "%.2fx" % (a / b)


def report(meta, startup, rss_idle, rss_load, join, runs, failover, graceful):
    L = []
    L.append("Cloudless %s vs etcd %s; %s; %d repetition(s) of %.0f s (+%.0f s warm-up), "
             "medians shown." % (meta["commit"], meta["etcd"], meta["machine"], ARGS.reps,
                                 ARGS.duration, ARGS.warmup))
    L.append("")
    if runs:
        L.append("| operation | conc. | ours req/s | etcd req/s | ratio | ours p50 | etcd p50 | "
                 "ours p99 | etcd p99 | p99 ratio | ours p99.9 | etcd p99.9 | errors (ours/etcd) |")
        L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for op in ARGS.ops:
            for c in ARGS.concurrency:
                o = runs.get((op, c, "cloudless"), [])
                e = runs.get((op, c, "etcd"), [])
                m = {}
                for k in ("throughput", "p50_ms", "p99_ms", "p999_ms"):
                    m["o" + k] = median([r[k] for r in o])
                    m["e" + k] = median([r[k] for r in e])
                oe = sum(r["errors"] for r in o)
                ee = sum(r["errors"] for r in e)
                L.append("| %s | %d | %.0f | %.0f | %s | %s | %s | %s | %s | %s | %s | %s | %d / %d |" % (
                    op, c, m["othroughput"] or 0, m["ethroughput"] or 0,
                    ratio(m["othroughput"], m["ethroughput"]), fmt_ms(m["op50_ms"]),
                    fmt_ms(m["ep50_ms"]), fmt_ms(m["op99_ms"]), fmt_ms(m["ep99_ms"]),
                    ratio(m["op99_ms"], m["ep99_ms"]), fmt_ms(m["op999_ms"]),
                    fmt_ms(m["ep999_ms"]), oe, ee))
        L.append("")
    L.append("| operational figure | ours | etcd | ratio |")
    L.append("|---|---:|---:|---:|")

    def row(name, o, e, f=fmt_s):
        L.append("| %s | %s | %s | %s |" % (name, f(o), f(e), ratio(o, e)))
    if failover:
        o, e = failover["cloudless"], failover["etcd"]
        n = len(o["gap"])
        row("failover gap after SIGKILL of the leader, median of %d" % n, median(o["gap"]), median(e["gap"]))
        row("failover gap, max of %d" % n, maxval(o["gap"]), maxval(e["gap"]))
        L.append("| client-visible errors during failover (total) | %d | %d | |" % (sum(o["errors"]), sum(e["errors"])))
        row("restart of a killed member -> ready, median", median(o["restart_ready"]), median(e["restart_ready"]))
    if graceful:
        o, e = graceful["cloudless"], graceful["etcd"]
        n = len(o["gap"])
        row("graceful restart (SIGTERM) of the leader: max gap between acks, median of %d" % n,
            median(o["gap"]), median(e["gap"]))
        row("graceful restart: max gap, max of %d" % n, maxval(o["gap"]), maxval(e["gap"]))
        L.append("| client-visible errors during graceful restarts (total) | %d | %d | |" % (sum(o["errors"]), sum(e["errors"])))
    if join:
        row("new node joins and catches up %d keys (median of %d)" % (ARGS.join_keys, ARGS.join_reps),
            join["cloudless"], join["etcd"])
    if startup:
        row("cold start of a fresh cluster member -> ready (median of 3)", median(startup["cloudless"]), median(startup["etcd"]))

    def mb(x):
        return "-" if x is None else "%.1f MB" % (x / 1024)
    for when, r in (("idle", rss_idle), ("after load", rss_load)):
        if r:
            o = max(r["cloudless"].values())
            e = max(r["etcd"].values())
            L.append("| RSS per node %s (max of 3) | %s | %s | %s |" % (when, mb(o), mb(e), ratio(o, e)))
    L.append("")
    return "\n".join(L)


def targets(runs, failover, graceful, join, rss_load):
    """The issue's targets, each with the measured value and met/not met."""
    T = []

    def med(op, c, sysn, k):
        return median([r[k] for r in runs.get((op, c, sysn), [])])
    if runs:
        for c in (16, 64, 256):
            for op in ("put-leader", "put-follower"):
                if (op, c, "cloudless") not in runs:
                    continue
                tr = div(med(op, c, "cloudless", "throughput"), med(op, c, "etcd", "throughput"))
                pr = div(med(op, c, "cloudless", "p99_ms"), med(op, c, "etcd", "p99_ms"))
                T.append(("%s c=%d throughput >= 2x etcd, p99 <= etcd" % (op, c),
                          "%.2fx, p99 %.2fx" % (tr, pr), tr >= 2 and pr <= 1))
        if ("put-leader", 1, "cloudless") in runs:
            r = div(med("put-leader", 1, "cloudless", "p50_ms"), med("put-leader", 1, "etcd", "p50_ms"))
            T.append(("put-leader c=1 p50 <= 0.7x etcd", "%.2fx" % r, r <= 0.7))
    if failover:
        o, e = median(failover["cloudless"]["gap"]), median(failover["etcd"]["gap"])
        T.append(("failover median <= 1/3 etcd and < 600 ms", "%.0f ms vs %.0f ms (%.2fx)"
                  % (o * 1000, e * 1000, o / e), o <= e / 3 and o < 0.6))
    if graceful:
        g = maxval(graceful["cloudless"]["gap"])
        if g is not None:
            T.append(("graceful restart gap < 50 ms (worst rep)", "%.1f ms" % (g * 1000), g < 0.05))
    if rss_load:
        o, e = max(rss_load["cloudless"].values()), max(rss_load["etcd"].values())
        T.append(("RSS after load <= 1/5 etcd", "%.2fx" % (o / e), o * 5 <= e))
    if join is not None:
        T.append(("join + catch-up of %d keys < 3 s" % ARGS.join_keys, "%.2f s" % join["cloudless"],
                  join["cloudless"] < 3))
        T.append(("join + catch-up no slower than etcd's in the same run",
                  "%.2fx" % (join["cloudless"] / join["etcd"]), join["cloudless"] <= join["etcd"]))
    L = ["| target | measured | met |", "|---|---|---|"]
    for name, val, ok in T:
        L.append("| %s | %s | %s |" % (name, val, "yes" if ok else "**no**"))
    return "\n".join(L) + "\n"


def machine():
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            mem = "%.0f GiB RAM" % (int(f.readline().split()[1]) / 1024 / 1024)
    except OSError:
        pass
    return "%d cores, %s, Linux %s" % (os.cpu_count(), mem, os.uname().release)


def main():
    global OUT_FILE
    for b in (ARGS.coordinator, ARGS.loadgen):
        if not os.access(b, os.X_OK):
            sys.exit("bench: %s is not built (ninja -C build-rel)" % b)
    if shutil.which(ARGS.etcd) is None or shutil.which(ARGS.etcdctl) is None:
        sys.exit("bench: etcd/etcdctl not found (scripts/install-deps.sh --test installs them)")
    base = tempfile.mkdtemp(prefix="cloudless-bench-")
    out = ARGS.out or base
    os.makedirs(out, exist_ok=True)
    OUT_FILE = open(os.path.join(out, "results.jsonl"), "w")
    etcd_ver = subprocess.run([ARGS.etcd, "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    commit = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"],
                            capture_output=True, text=True).stdout.strip() or "?"
    meta = {"commit": commit, "etcd": etcd_ver.replace("etcd Version: ", ""), "machine": machine()}
    record(phase="meta", quick=ARGS.quick, **meta)
    log("data under %s; results in %s" % (base, out))
    ours, etcd = Ours(base), Etcd(base)
    systems = [ours, etcd]
    failures = []
    startup = rss_idle = rss_load = join = runs = failover = graceful = None
    try:
        startup = {}
        for s in systems:
            startup[s.name] = s.start()
            record(phase="startup", system=s.name, seconds=startup[s.name])
            log("%s started: start->ready %s" % (s.name, ", ".join("%.3f s" % x for x in startup[s.name])))
        for s in systems:
            wait_until("%s healthy" % s.name, lambda: s.healthy(3), 30, 0.05)
        time.sleep(1.0)
        rss_idle = rss(systems, "idle")
        if "join" not in ARGS.skip:
            join = phase_join(systems)
        if "throughput" not in ARGS.skip:
            phase_preload_reads(systems)
            runs = phase_throughput(systems)
            for key, rs in runs.items():
                for r in rs:
                    if r["errors"] or r["ok"] == 0:
                        failures.append("throughput %s c=%d %s: ok=%d errors=%d" % (
                            key[0], key[1], key[2], r["ok"], r["errors"]))
        rss_load = rss(systems, "after load")
        if "failover" not in ARGS.skip:
            failover = phase_failover(systems, base)
        if "graceful" not in ARGS.skip:
            graceful = phase_graceful(systems, base)
            for sname, g in graceful.items():
                if None in g["gap"]:
                    failures.append("graceful %s produced no gap" % sname)
    except Exception as e:
        failures.append("%s: %s" % (type(e).__name__, e))
        import traceback
        traceback.print_exc()
        for s in systems:
            for n in list(s.nodes.values()) if hasattr(s, "nodes") else list(s.cluster.nodes.values()):
                try:
                    with open(n.log_path, "rb") as f:
                        sys.stderr.write("----- %s log tail -----\n%s\n" % (n.node_id, f.read()[-3000:].decode(errors="replace")))
                except OSError:
                    pass
    finally:
        for s in systems:
            s.close()
    md = report(meta, startup, rss_idle, rss_load, join, runs or {}, failover, graceful)
    md += "\n" + targets(runs or {}, failover, graceful, join, rss_load)
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write(md)
    print(md)
    OUT_FILE.close()
    if failures:
        log("data kept for inspection under %s" % base)
    elif not ARGS.keep:
        # Data directories and ack logs go; results.jsonl and report.md stay only in an --out
        # directory (without one the report was printed above, and nothing is left in /tmp).
        shutil.rmtree(base, ignore_errors=True)
    if failures:
        for f in failures:
            print("FAILED: " + f)
        print("0 passed, 1 failed")
        return 1
    print("bench: every phase ran and produced numbers (%.0f s)" % (time.monotonic() - T0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
