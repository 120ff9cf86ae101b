#!/usr/bin/env python3
"""Jepsen-style fault injection for cloudless-coordinator (Python standard library only).

Each round starts a fresh 3- or 5-node cluster (in a private network namespace when the
machine allows it; see faultlib.py), runs concurrent clients against every node while one or
more nemeses inject faults, heals everything, and then checks:

  * linearizability of every key's register history (checker.py), with indeterminate writes
    and CAS allowed to take effect at any later time, and the final linearizable reads part
    of that history, so an acknowledged write that went missing is an anomaly;
  * every acknowledged write of the bulk writers (distinct keys) present after healing;
  * equal state digests and applied indexes on every node after healing;
  * at most one leader per term (frequent /raft/status samples and "Became leader" lines);
  * no coordinator process died unless we killed it, and no sanitizer report in the logs;
  * the cluster serves writes again after healing.

Usage:
  jepsen.py                         the short profile: every nemesis at least once (~5 min)
  jepsen.py --rounds 40             the long profile: 40 rounds cycling through every scenario
                                    with longer fault windows
  jepsen.py --long --nodes 3        the campaign: 200 rounds of the 3-node scenarios (--nodes 5:
                                    of the 5-node ones; without --nodes, of all of them)
  jepsen.py --seed 1234             replay a run's schedule (the seed is printed at the start)
  jepsen.py --only partition-5      run only the named scenario(s) (comma-separated)
  jepsen.py --list                  list scenarios and nemeses

The seed fixes every random choice (which nemesis, which node, how long, client operations);
thread timing is not reproducible, but the schedule is. Histories (JSON lines, one event per
line: invoke / ok / fail / info, monotonic nanoseconds) and a summary are written under --out.
Prints "N passed, N failed" at the end, one case per round.
"""
import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import checker  # noqa: E402
from faultlib import (BIN, SCALE, Cluster, History, Monitor, Net, NetNS, SendError,  # noqa: E402
                      b64value, classify, http_call, kv_path, log, recorded_call, run_cmd,
                      scaled, wait_for)

KEYS = ["k0", "k1", "k2", "k3"]


# ---------------------------------------------------------------- workload

class Client(threading.Thread):
    """One process of the history: one request in flight, to a random node each time."""

    def __init__(self, ctx, pid, seed, mix, think):
        super().__init__(daemon=True)
        self.ctx = ctx
        self.pid = pid
        self.rng = random.Random(seed)
        self.mix = mix  # cumulative thresholds for read / write / cas / delete
        self.think = think
        self.seq = 0

    def _call(self, f, key, value, method, path, body=None, headers=None, as_f=None):
        """One operation; f is what the history records, as_f (default f) how the response
        is classified."""
        ctx = self.ctx
        nd = self.rng.choice(ctx.cluster.nodes)
        typ, r, out = recorded_call(ctx.history, self.pid, nd, f, key, value, method, path, body,
                                    headers, timeout=ctx.sock_timeout, as_f=as_f)
        ctx.count_status(as_f or f, r.status if r is not None else ("sent-error" if typ == "info" else "connect-error"))
        if typ == "fail" and r is None:
            time.sleep(0.02)  # a dead node: do not spin on it
        return typ, r, out

    def _value(self):
        self.seq += 1
        return "c%d-%d" % (self.pid, self.seq)

    def read(self, key):
        q = "?json&timeout=%dms" % self.ctx.req_timeout_ms
        typ, r, out = self._call("read", key, None, "GET", kv_path(key, q))
        if typ != "ok":
            return None
        return out, (r.json()["modify_index"] if r.status == 200 else 0)

    def write(self, key):
        v = self._value()
        headers = {}
        pool = self.ctx.scenario.idem_pool
        if pool and self.rng.random() < 0.4:
            # A key from a small shared pool: reused for other requests all the time, so
            # whether the leader refuses (409, the record is alive), or applies (it expired
            # or was pruned) depends on the idempotency limits in force - which must be the
            # same on every replica.
            headers["Idempotency-Key"] = "pool-%d-%d" % (self.ctx.rno, self.rng.randrange(pool))
        elif self.rng.random() < 0.3:
            headers["Idempotency-Key"] = "r%d-%s" % (self.ctx.rno, v)
        self._call("write", key, v, "PUT", kv_path(key, "?timeout=%dms" % self.ctx.req_timeout_ms),
                   v, headers)

    def cas(self, key):
        got = self.read(key)
        if got is None:
            return
        expected, idx = got
        v = self._value()
        q = "?cas=%d&timeout=%dms" % (idx, self.ctx.req_timeout_ms)
        self._call("cas", key, [expected, v], "PUT", kv_path(key, q), v)

    def delete(self, key):
        """A conditional delete (DELETE ?cas=<index just read>): to the checker a CAS from the
        value read to nil. Unconditional deletes would only say "some value was there",
        which leaves every indeterminate write a candidate and the search far larger."""
        got = self.read(key)
        if got is None:
            return
        expected, idx = got
        q = "?cas=%d&timeout=%dms" % (idx, self.ctx.req_timeout_ms)
        self._call("cas", key, [expected, None], "DELETE", kv_path(key, q), as_f="delete")

    def run(self):
        while not self.ctx.stop_clients.is_set():
            key = self.rng.choice(KEYS)
            x = self.rng.random()
            if x < self.mix[0]:
                self.read(key)
            elif x < self.mix[1]:
                self.write(key)
            elif x < self.mix[2]:
                self.cas(key)
            else:
                self.delete(key)
            if self.think:
                time.sleep(self.rng.uniform(0, self.think))


class BulkWriter(threading.Thread):
    """Writes distinct keys as fast as it can and remembers what was acknowledged, for the
    crash-consistency check (every acknowledged write present after healing)."""

    def __init__(self, ctx, wid, seed):
        super().__init__(daemon=True)
        self.ctx = ctx
        self.wid = wid
        self.rng = random.Random(seed)
        self.acked = {}
        self.failed = set()  # definitely not applied
        self.attempts = 0

    def run(self):
        seq = 0
        ctx = self.ctx
        while not ctx.stop_clients.is_set():
            seq += 1
            key = "bulk/%d/%06d" % (self.wid, seq)
            v = "b%d-%d-%s" % (self.wid, seq, "x" * self.rng.randrange(0, 200))
            nd = self.rng.choice(ctx.cluster.nodes)
            self.attempts += 1
            try:
                r = http_call(nd.http_addr, "PUT", kv_path(key, "?timeout=%dms" % ctx.req_timeout_ms),
                              v, timeout=ctx.sock_timeout)
                typ, _ = classify("write", resp=r)
            except SendError as e:
                typ, _ = classify("write", err=e)
                if typ == "fail":
                    time.sleep(0.02)
            if typ == "ok":
                self.acked[key] = v
            elif typ == "fail":
                self.failed.add(key)


# ---------------------------------------------------------------- nemeses

class Ctx:
    def __init__(self, args, rno, scenario, seed, cluster, net, outdir):
        self.args = args
        self.rno = rno
        self.scenario = scenario
        self.seed = seed
        self.cluster = cluster
        self.net = net
        self.outdir = outdir
        self.history = History()
        self.stop_clients = threading.Event()
        self.faults = {}
        self.notes = []
        self.anomalies = []
        self.status_counts = {}
        self.lock = threading.Lock()
        self.req_timeout_ms = int(scaled(3.0) * 1000)
        self.sock_timeout = scaled(3.0) + 2.0
        self.snapshot_installs = 0
        # Set by a nemesis whose faults may make a node leave on purpose (disk-full): called
        # with a dead node, returns True when the exit was the designed one (then the node is
        # restarted, as a supervisor would); anything else stays an anomaly.
        self.supervisor = None
        self.skipped = set()

    def count_status(self, f, st):
        k = "%s %s" % (f, st)
        with self.lock:
            self.status_counts[k] = self.status_counts.get(k, 0) + 1

    def fault(self, kind, detail):
        with self.lock:
            self.faults[kind] = self.faults.get(kind, 0) + 1
        self.history.add(type="info", process="nemesis", f=kind, value=detail)
        log("  nemesis %s: %s" % (kind, detail))

    def note(self, msg):
        self.notes.append(msg)
        self.history.add(type="info", process="nemesis", f="note", value=msg)
        log("  note: " + msg)

    def anomaly(self, msg):
        self.anomalies.append(msg)
        log("  ANOMALY: " + msg)


def pick_leader(ctx):
    try:
        return ctx.cluster.leader(timeout=5)
    except TimeoutError:
        return None


def locked(ctx, nd, fn):
    """Runs fn while holding nd's lock (so two nemeses never fight over one process)."""
    lk = ctx.cluster.locks[nd.node_id]
    if not lk.acquire(timeout=scaled(20)):
        ctx.note("skipped a fault on %s: busy" % nd)
        return
    try:
        fn()
    finally:
        lk.release()


def nem_kill(ctx, rng, leader=False):
    nd = pick_leader(ctx) if leader else None
    nd = nd or rng.choice(ctx.cluster.nodes)

    def go():
        nd.kill()
        ctx.fault("kill-leader" if leader else "kill-random", "SIGKILL %s" % nd)
        time.sleep(rng.uniform(0.2, 2.0))
        nd.restart()
        ctx.fault("restart", "%s" % nd)
    locked(ctx, nd, go)


def nem_pause(ctx, rng, leader=False):
    nd = pick_leader(ctx) if leader else None
    nd = nd or rng.choice(ctx.cluster.nodes)
    hold = rng.uniform(1.0, 5.0)

    def go():
        nd.pause()
        ctx.fault("pause-leader" if leader else "pause-random", "SIGSTOP %s for %.1fs" % (nd, hold))
        time.sleep(hold)
        nd.resume()
        ctx.fault("resume", "SIGCONT %s" % nd)
    locked(ctx, nd, go)


def _partition(ctx, rng, kind, pairs, desc):
    ctx.net.block(pairs)
    ctx.fault(kind, desc)
    time.sleep(rng.uniform(2.0, 5.0))
    ctx.net.heal()
    ctx.fault("heal", "partition removed")


def nem_partition_leader(ctx, rng):
    ld = pick_leader(ctx) or rng.choice(ctx.cluster.nodes)
    others = [n for n in ctx.cluster.nodes if n is not ld]
    _partition(ctx, rng, "partition-leader", [(ld, o) for o in others],
               "isolate leader %s from %s" % (ld, others))


def nem_partition_halves(ctx, rng):
    nodes = list(ctx.cluster.nodes)
    rng.shuffle(nodes)
    k = len(nodes) // 2
    a, b = nodes[:k], nodes[k:]
    _partition(ctx, rng, "partition-halves", [(x, y) for x in a for y in b],
               "%s | %s" % (sorted(map(str, a)), sorted(map(str, b))))


def nem_partition_ring(ctx, rng):
    """Majorities ring (5 nodes): each node sees only its two neighbours, so every node has a
    majority but no two nodes share the same one. With 3 nodes it is a bridge: A - B - C."""
    nodes = list(ctx.cluster.nodes)
    rng.shuffle(nodes)
    n = len(nodes)
    if n == 3:
        pairs = [(nodes[0], nodes[2])]
        desc = "bridge %s - %s - %s" % (nodes[0], nodes[1], nodes[2])
        kind = "partition-bridge"
    else:
        near = {frozenset((nodes[i], nodes[(i + 1) % n])) for i in range(n)}
        pairs = [(nodes[i], nodes[j]) for i in range(n) for j in range(i + 1, n)
                 if frozenset((nodes[i], nodes[j])) not in near]
        desc = "ring " + " - ".join(map(str, nodes))
        kind = "partition-ring"
    _partition(ctx, rng, kind, pairs, desc)


def _reports_removed(nd):
    r = nd.req("GET", "/raft/health", timeout=1.0)
    return r is not None and r.status == 503 and r.problem_type() == "removed"


def nem_remove_rejoin(ctx, rng):
    """POST /raft/remove a member (sometimes the leader), let it notice (it stops serving and
    says so, but stays up), stop it, wipe its data and start it again with --join."""
    c = ctx.cluster
    ld = pick_leader(ctx)
    victim = ld if ld is not None and rng.random() < 0.3 else rng.choice(c.nodes)
    others = [n for n in c.nodes if n is not victim]

    def go():
        via = rng.choice(others)
        victim.expect_exit = True
        try:
            r = via.req("POST", "/raft/remove", {"node_id": victim.node_id}, timeout=scaled(30))
        except Exception:
            r = None
        if r is None or r.status != 200:
            victim.expect_exit = False
            ctx.note("remove %s via %s refused: %r" % (victim, via, r))
            return
        ctx.fault("remove", "POST /raft/remove %s via %s" % (victim, via))
        try:
            wait_for("%s to report its removal" % victim, lambda: _reports_removed(victim), 15)
            victim.proc.send_signal(signal.SIGTERM)
            rc = victim.proc.wait(timeout=scaled(15))
            if rc != 0:
                ctx.anomaly("removed node %s exited with status %s on SIGTERM" % (victim, rc))
        except TimeoutError:
            ctx.anomaly("removed node %s did not notice its removal within %.0fs" % (victim, scaled(15)))
            victim.kill()
        except subprocess.TimeoutExpired:
            ctx.anomaly("removed node %s did not stop on SIGTERM" % victim)
            victim.kill()
        victim.reap()
        victim.wipe()
        ctx.fault("wipe", "rm -rf data dir of %s" % victim)
        time.sleep(rng.uniform(0.2, 1.0))
        victim.start(join=others)
        ctx.fault("rejoin", "%s --join %s" % (victim, others))
        try:
            c.wait_voter(victim, 60)
            ctx.fault("rejoined", "%s is a voter again" % victim)
        except TimeoutError as e:
            ctx.anomaly("%s did not rejoin: %s" % (victim, e))
    locked(ctx, victim, go)


def nem_wipe(ctx, rng):
    """A lost disk: SIGKILL a member (sometimes the leader), delete its data dir, and start it
    again with exactly its original command (--join <all> --bootstrap-expect N). The cluster
    must replace the old incarnation (catch up as a non-voter first) and lose nothing."""
    c = ctx.cluster
    ld = pick_leader(ctx)
    victim = ld if ld is not None and rng.random() < 0.3 else rng.choice(c.nodes)

    def go():
        victim.kill()
        victim.wipe()
        ctx.fault("wipe", "SIGKILL %s and rm -rf its data dir" % victim)
        time.sleep(rng.uniform(0.2, 1.5))
        victim.restart()
        ctx.fault("restart", "%s with its original command" % victim)
        try:
            c.wait_replaced(victim, 60)
            ctx.fault("rejoined", "%s is a voter again" % victim)
        except TimeoutError as e:
            ctx.anomaly("wiped %s did not rejoin: %s" % (victim, e))
    locked(ctx, victim, go)


def _count(nd, text):
    return nd.log().count(text)


def nem_kill_snapshot(ctx, rng):
    """SIGKILL at a random moment on a node that snapshots constantly (small threshold)."""
    nd = rng.choice(ctx.cluster.nodes)

    def go():
        before = _count(nd, "Snapshot taken")
        # Wait for the next snapshot to start, then kill within a few milliseconds of it.
        deadline = time.monotonic() + scaled(5)
        while _count(nd, "Snapshot taken") == before and time.monotonic() < deadline:
            time.sleep(0.005)
        delay = rng.uniform(0, 0.3)
        time.sleep(delay)
        nd.kill()
        ctx.fault("kill-snapshot", "SIGKILL %s %.0f ms after its snapshot #%d completed (%d taken "
                  "by then)" % (nd, delay * 1000, before + 1, _count(nd, "Snapshot taken")))
        time.sleep(rng.uniform(0.1, 1.0))
        nd.restart()
        ctx.fault("restart", "%s" % nd)
    locked(ctx, nd, go)


def nem_kill_install(ctx, rng):
    """Stop a follower long enough that the leader compacts past it, restart it so it must
    install a snapshot, and SIGKILL it mid-install; then let it finish."""
    c = ctx.cluster
    ld = pick_leader(ctx)
    if ld is None:
        ctx.note("kill-install: no leader")
        return
    nd = rng.choice([n for n in c.nodes if n is not ld])
    thr = ctx.scenario.snapshot[0] if ctx.scenario.snapshot else 8192

    def go():
        s = nd.status()
        start_idx = s["last_log_index"] if s else 0
        nd.kill()
        ctx.fault("kill", "SIGKILL follower %s at index %d" % (nd, start_idx))
        try:
            wait_for("log to move past %s" % nd, lambda: (lambda s: s and s["applied_index"] >
                     start_idx + 3 * thr)(ld.status()), 20)
        except TimeoutError:
            ctx.note("kill-install: the leader did not advance %d entries" % (3 * thr))
        before = _count(nd, "Snapshot restored")
        nd.restart()
        # Kill it while the snapshot is on its way or being installed.
        time.sleep(rng.uniform(0.02, 0.4))
        nd.kill()
        ctx.fault("kill-install", "SIGKILL %s during snapshot install (%s)" % (
            nd, "after restore" if _count(nd, "Snapshot restored") > before else "before restore"))
        time.sleep(rng.uniform(0.1, 0.5))
        nd.restart()
        ctx.fault("restart", "%s" % nd)
        try:
            wait_for("%s to install a snapshot" % nd,
                     lambda: _count(nd, "Snapshot restored") > before, 20)
        except TimeoutError:
            ctx.note("kill-install: %s caught up without a new snapshot install" % nd)
        ctx.snapshot_installs += _count(nd, "Snapshot restored") - before
    locked(ctx, nd, go)


def nem_kill_all(ctx, rng):
    """Every node SIGKILLed at once under heavy writes, then all restarted."""
    c = ctx.cluster
    for lk in c.locks.values():
        lk.acquire()
    try:
        for nd in c.nodes:
            nd.kill()
        ctx.fault("kill-all", "SIGKILL %s" % c.nodes)
        time.sleep(rng.uniform(0.2, 1.5))
        for nd in c.nodes:
            nd.restart()
        ctx.fault("restart", "all")
    finally:
        for lk in c.locks.values():
            lk.release()


IDEM_TTLS = (1, 2, 3, 86400)
IDEM_MAXES = (3, 20, 100000)


def nem_restart_idem_ttl(ctx, rng):
    """Restart a node (the leader half the time) with another --idempotency-ttl and
    --idempotency-max, gracefully or with SIGKILL. Expiry and pruning of idempotency records
    follow the limits of the leader that proposed each entry, which travel in the entry: nodes
    with different flags, and a node replaying its log tail under new flags, must still end
    with equal states (the digest check) and serve the same values (the stale-read check)."""
    ld = pick_leader(ctx)
    nd = ld if ld is not None and rng.random() < 0.5 else rng.choice(ctx.cluster.nodes)
    ttl, cap = rng.choice(IDEM_TTLS), rng.choice(IDEM_MAXES)
    graceful = rng.random() < 0.5

    def go():
        if graceful:
            nd.terminate()
        else:
            nd.kill()
        nd.set_flag("--idempotency-ttl", ttl)
        nd.set_flag("--idempotency-max", cap)
        ctx.fault("restart-idem-ttl", "%s %s%s, restarted with --idempotency-ttl %d "
                  "--idempotency-max %d" % ("SIGTERM" if graceful else "SIGKILL", nd,
                                            " (leader)" if nd is ld else "", ttl, cap))
        time.sleep(rng.uniform(0.1, 1.0))
        nd.restart()
        ctx.fault("restart", "%s" % nd)
    locked(ctx, nd, go)


def nem_disk_full(ctx, rng):
    from diskfull import nemesis  # noqa: E402 (only this scenario needs it)
    nemesis(ctx, rng)


NEMESES = {
    "kill-random": lambda ctx, rng: nem_kill(ctx, rng, False),
    "kill-leader": lambda ctx, rng: nem_kill(ctx, rng, True),
    "pause-random": lambda ctx, rng: nem_pause(ctx, rng, False),
    "pause-leader": lambda ctx, rng: nem_pause(ctx, rng, True),
    "partition-leader": nem_partition_leader,
    "partition-halves": nem_partition_halves,
    "partition-ring": nem_partition_ring,  # a bridge on 3 nodes
    "remove-rejoin": nem_remove_rejoin,
    "wipe": nem_wipe,
    "kill-snapshot": nem_kill_snapshot,
    "kill-install": nem_kill_install,
    "kill-all": nem_kill_all,
    "disk-full": nem_disk_full,
    "restart-idem-ttl": nem_restart_idem_ttl,
}
PARTITIONS = {"partition-leader", "partition-halves", "partition-ring"}


class Scenario:
    def __init__(self, name, nodes, groups, snapshot=None, bulk=0, clients=8, think=0.01,
                 tmpfs_mb=0, gap=(0.5, 1.5), window=14.0, mix=None, idem_pool=0,
                 expect=False):
        self.name = name
        self.expect = expect  # every node started with --join <all> --bootstrap-expect N
        self.nodes = nodes
        self.groups = groups  # each group: nemeses run one after another in one thread
        self.snapshot = snapshot  # (threshold, trailing)
        self.bulk = bulk
        self.clients = clients
        self.think = think
        self.tmpfs_mb = tmpfs_mb
        self.gap = gap
        self.window = window
        self.mix = mix  # cumulative read / write / cas thresholds (the rest: conditional deletes)
        self.idem_pool = idem_pool  # writes share this many Idempotency-Keys (0: all unique)

    def needs_net(self):
        return any(n in PARTITIONS for g in self.groups for n in g)

    def extra_args(self):
        if not self.snapshot:
            return []
        return ["--snapshot-threshold", str(self.snapshot[0]),
                "--snapshot-trailing", str(self.snapshot[1])]


SCENARIOS = [
    Scenario("kill", 3, [["kill-random", "kill-leader"]], window=20),
    Scenario("pause", 3, [["pause-random", "pause-leader"]], window=20),
    Scenario("partition-3", 3, [["partition-leader", "partition-ring", "partition-halves"]],
             window=22),
    Scenario("partition-5", 5, [["partition-halves", "partition-ring", "partition-leader"]],
             window=22),
    Scenario("membership", 3, [["remove-rejoin"]], window=14),
    # Lost disks: two members of five wiped one after the other (each back as a voter before
    # the next), with the same command they were started with.
    Scenario("wipe-5", 5, [["wipe", "wipe"]], expect=True, window=12),
    Scenario("snapshot-crash", 3, [["kill-snapshot", "kill-install"]], snapshot=(64, 16), bulk=2,
             window=20),
    Scenario("crash-consistency", 3, [["kill-random", "kill-all", "kill-leader"]],
             snapshot=(128, 32), bulk=3, clients=6, think=0, window=20),
    Scenario("disk-full", 3, [["disk-full"]], tmpfs_mb=192, window=1),
    # Compare-and-set retried after an unknown outcome: the leader dies or stalls with many
    # forwarded CAS in flight, so some are committed without an answer and get re-sent.
    Scenario("cas-retry", 3, [["kill-leader", "pause-leader"]], clients=10, think=0,
             mix=(0.05, 0.1, 0.95), gap=(0.3, 0.8), window=16),
    # Nodes restarted with other idempotency limits while clients reuse a few keys: records
    # expire and are pruned under 1-3 s TTLs and small caps on some leaders, a day on others.
    Scenario("idempotency-ttl", 3, [["restart-idem-ttl"]], idem_pool=6, gap=(0.8, 2.0),
             window=18),
    Scenario("mixed-5", 5, [["partition-halves", "partition-ring", "partition-leader"],
                            ["kill-leader", "pause-random", "kill-random", "pause-leader"]],
             snapshot=(256, 64), window=24),
]


# ---------------------------------------------------------------- a round

def nemesis_loop(ctx, rng, group, deadline):
    """Every nemesis of the group once in a shuffled order, then random ones, until the
    deadline (the one running then completes)."""
    order = list(group)
    rng.shuffle(order)
    i = 0
    while True:
        name = order[i] if i < len(order) else rng.choice(group)
        if i >= len(order) and time.monotonic() >= deadline:
            return
        i += 1
        if name in PARTITIONS and not ctx.net.enabled:
            if name not in ctx.skipped:
                ctx.skipped.add(name)
                ctx.note("%s skipped: no network namespace" % name)
        else:
            try:
                NEMESES[name](ctx, rng)
            except Exception as e:
                ctx.anomaly("nemesis %s crashed: %s" % (name, traceback.format_exc(limit=3)))
        if i >= len(order) and time.monotonic() >= deadline:
            return
        time.sleep(rng.uniform(*ctx.scenario.gap))


def heal(ctx):
    c = ctx.cluster
    ctx.net.heal()
    for nd in c.nodes:
        nd.resume()
    for nd in c.nodes:
        if not nd.alive():
            nd.restart()
            ctx.note("heal restarted %s" % nd)
    ctx.history.add(type="info", process="nemesis", f="healed", value="all nodes up, no partition")


def describe(cluster):
    """Raft-level state of every node, and the leader's view of each follower, for reports."""
    st = {nd.node_id: nd.status(digest=True) for nd in cluster.nodes}
    out = {k: v and {x: v.get(x) for x in ("state", "term", "commit_index", "applied_index",
                                           "last_log_index", "fsm_index", "state_digest")}
           for k, v in st.items()}
    for k, v in st.items():
        if v and v["state"] == "leader":
            out["leader_view"] = {x["node_id"]: (x.get("match_index"), x.get("role"))
                                  for x in v["servers"]}
    return "statuses: " + json.dumps(out, sort_keys=True)


def diff_states(cluster):
    """Which keys differ between nodes' local states (for a digest mismatch report)."""
    views = {}
    for nd in cluster.nodes:
        try:
            items = {}
            cont = None
            while True:
                q = "?consistency=stale&limit=1000" + ("&continue=" + cont if cont else "")
                r = http_call(nd.http_addr, "GET", "/v1/kv/" + q, timeout=10)
                doc = r.json()
                for it in doc["items"]:
                    items[it["key"]] = (it["modify_index"], it["version"], it["value_b64"][:24])
                cont = doc["continue"]
                if not cont:
                    break
                import urllib.parse
                cont = urllib.parse.quote(cont, safe="")
            st = nd.status(digest=True)
            views[nd.node_id] = (items, st and st.get("state_keys"))
        except Exception as e:
            views[nd.node_id] = ({}, "error %s" % e)
    names = sorted(views)
    out = ["total records (state_keys): %s" % {n: views[n][1] for n in names},
           "kv keys: %s" % {n: len(views[n][0]) for n in names}]
    keys = sorted(set().union(*(v[0].keys() for v in views.values())))
    diffs = [k for k in keys if len({str(views[n][0].get(k)) for n in names}) > 1]
    for k in diffs[:8]:
        out.append("  %s: %s" % (k, {n: views[n][0].get(k) for n in names}))
    out.append("%d kv keys differ" % len(diffs))
    return "\n".join(out)


def final_reads(ctx):
    """One linearizable read per key after healing, recorded in the history: the checker then
    proves no acknowledged write is missing at the end."""
    c = ctx.cluster
    finals = {}
    for key in KEYS:
        def attempt():
            nd = c.leader_of() or c.nodes[0]
            ctx.history.add(type="invoke", process="final", f="read", key=key, value=None, node=nd.node_id)
            try:
                r = http_call(nd.http_addr, "GET", kv_path(key, "?json&timeout=2s"), timeout=5)
                typ, why = classify("read", resp=r)
            except SendError as e:
                r, typ, why = None, "fail", str(e)
            val = None
            if typ == "ok":
                val = b64value(r.json()) if r.status == 200 else None
            ctx.history.add(type=typ, process="final", f="read", key=key, value=val, node=nd.node_id)
            return (True, val) if typ == "ok" else None
        finals[key] = wait_for("final read of %s" % key, attempt, 30)[1]
    return finals


def check_stale_everywhere(ctx, finals):
    """After convergence each node's local state must show the final values."""
    for nd in ctx.cluster.nodes:
        for key, want in finals.items():
            r = nd.req("GET", kv_path(key, "?consistency=stale&json"), timeout=3)
            got = b64value(r.json()) if r is not None and r.status == 200 else None
            if r is None or r.status not in (200, 404) or got != want:
                ctx.anomaly("%s serves %s=%r locally after convergence; the cluster says %r (%r)"
                            % (nd, key, got, want, r))


def list_prefix(nd, prefix):
    out = {}
    cont = None
    while True:
        q = "?prefix=%s&limit=1000" % prefix + ("&continue=" + cont if cont else "")
        r = http_call(nd.http_addr, "GET", "/v1/kv/" + q, timeout=10)
        if r.status != 200:
            raise RuntimeError("list %s: %r" % (prefix, r))
        doc = r.json()
        for it in doc["items"]:
            out[it["key"]] = b64value(it)
        cont = doc["continue"]
        if not cont:
            return out
        import urllib.parse
        cont = urllib.parse.quote(cont, safe="")


def check_bulk(ctx, writers):
    """Every acknowledged write of the bulk writers (and the disk-full pressure writer) is
    present after healing, and none reported as definitely failed is."""
    if not writers:
        return 0
    ld = ctx.cluster.leader()
    present = {}
    for prefix in ("bulk/", "pressure/"):
        present.update(list_prefix(ld, prefix))
    acked = 0
    for w in writers:
        for k, v in w.acked.items():
            acked += 1
            if present.get(k) != v:
                ctx.anomaly("acknowledged write %s=%r... lost after healing (found %r)" % (
                    k, v[:20], (present.get(k) or "")[:20]))
        for k in w.failed:
            if k in present:
                ctx.anomaly("write %s reported as definitely failed is present" % k)
    return acked


def check_processes(ctx):
    for nd in ctx.cluster.nodes:
        nd.reap()
        for rc, expected in nd.exits:
            if not expected:
                ctx.anomaly("%s exited by itself with status %s; log tail:\n%s" % (
                    nd, rc, nd.log()[-1500:]))
        text = nd.log()
        for marker in ("AddressSanitizer", "runtime error:", "LeakSanitizer", "Assertion", "Aborted"):
            if marker in text:
                i = text.index(marker)
                ctx.anomaly("%s log contains %r: %s" % (nd, marker, text[max(0, i - 300):i + 1500]))


def run_round(args, ns, rno, scenario, seed, outdir):
    rng = random.Random(seed)
    t0 = time.monotonic()
    rdir = tempfile.mkdtemp(prefix="r%02d-%s-" % (rno, scenario.name), dir=outdir)
    os.chmod(rdir, 0o755)  # the nodes run under their own uids
    port_base = 20000 + (rno % 40) * 300
    net = Net(ns)
    cluster = Cluster(ns, os.path.join(rdir, "nodes"), scenario.nodes, port_base,
                      extra_args=scenario.extra_args())
    ctx = Ctx(args, rno, scenario, seed, cluster, net, rdir)
    summary = {"round": rno, "scenario": scenario.name, "seed": seed, "nodes": scenario.nodes}
    monitor = None
    clients = []
    writers = []
    try:
        if scenario.tmpfs_mb:
            from diskfull import mount_tmpfs
            mount_tmpfs(cluster, scenario.tmpfs_mb)
        cluster.start(expect=scenario.expect)
        log("  cluster of %d up, leader %s" % (len(cluster.nodes), cluster.leader()))
        monitor = Monitor(cluster).start()
        mix = scenario.mix or ((0.4, 0.75, 0.95) if not scenario.bulk else (0.45, 0.8, 1.0))
        clients = [Client(ctx, i, rng.randrange(1 << 30), mix, scenario.think)
                   for i in range(scenario.clients)]
        writers = [BulkWriter(ctx, i, rng.randrange(1 << 30)) for i in range(scenario.bulk)]
        for t in clients + writers:
            t.start()
        time.sleep(1.0)
        window = scenario.window * (args.window_factor or 1)
        deadline = time.monotonic() + window
        threads = [threading.Thread(target=nemesis_loop, daemon=True,
                                    args=(ctx, random.Random(rng.randrange(1 << 30)), g, deadline))
                   for g in scenario.groups]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        heal(ctx)
        healed_at = time.monotonic_ns()
        cluster.leader(timeout=30)
        # The cluster must serve writes again: wait for a few acknowledged ones.
        def writes_after_heal():
            with ctx.history.lock:
                return sum(1 for e in ctx.history.events
                           if e["time"] > healed_at and e["type"] == "ok" and e.get("f") == "write") >= 3
        try:
            wait_for("writes to succeed after healing", writes_after_heal, 30)
        except TimeoutError:
            ctx.anomaly("no write succeeded within %.0fs of healing" % scaled(30))
        time.sleep(0.5)
        ctx.stop_clients.set()
        for t in clients + writers:
            t.join(timeout=scaled(15))
        def supervised_converged():
            for nd in cluster.nodes:
                if ctx.supervisor and not nd.alive() and ctx.supervisor(nd):
                    nd.restart()
                    ctx.fault("restart", "%s (supervisor)" % nd)
            return cluster.converged()
        try:
            cluster.wait_voters(len(cluster.nodes), timeout=30)
            statuses = wait_for("converged state digests", supervised_converged, 45, interval=0.2)
            for a in checker.check_digests(statuses):
                ctx.anomaly(a)
            summary["applied_index"] = next(iter(statuses.values()))["applied_index"]
            converged = True
        except TimeoutError as e:
            converged = False
            ctx.anomaly("no convergence after healing: %s; %s\n%s" % (e, describe(cluster),
                                                                      diff_states(cluster)))
        finals = final_reads(ctx)
        if converged:
            check_stale_everywhere(ctx, finals)
        summary["bulk_acked"] = check_bulk(ctx, writers + getattr(ctx, "pressure", []))
        monitor.stop()
        # Leaders per term: status samples plus every "Became leader" log line.
        samples = list(monitor.samples)
        for nd in cluster.nodes:
            samples += [(t, n) for t, n in checker.leaders_from_log(nd.log())]
        for a in checker.check_leaders(samples):
            ctx.anomaly(a)
        summary["terms"] = len({t for t, _ in samples})
        summary["status_samples"] = monitor.n_samples
        check_processes(ctx)
        # Linearizability.
        hist_path = os.path.join(outdir, "round-%02d-%s.history.jsonl" % (rno, scenario.name))
        ctx.history.write(hist_path)
        tc = time.monotonic()
        results, problems = checker.check_history(ctx.history.events)
        for p in problems:
            ctx.anomaly(p)
        for r in results:
            if r.ok is None:
                ctx.anomaly("checker inconclusive for key %s: %s" % (r.key, r.detail))
            elif not r.ok:
                ctx.anomaly("key %s is not linearizable:\n%s" % (r.key, checker.explain(r)))
        summary["check_seconds"] = round(time.monotonic() - tc, 2)
        summary["history"] = hist_path
    except Exception:
        ctx.anomaly("round aborted: %s" % traceback.format_exc())
    finally:
        ctx.stop_clients.set()
        if monitor:
            monitor.stop()
        cluster.close()
        if ctx.history.events and "history" not in summary:
            hist_path = os.path.join(outdir, "round-%02d-%s.history.jsonl" % (rno, scenario.name))
            ctx.history.write(hist_path)
            summary["history"] = hist_path
    ops = [e for e in ctx.history.events if e.get("process") not in ("nemesis",) and e["type"] != "invoke"]
    summary["ops"] = len(ops)
    summary["ok"] = sum(1 for e in ops if e["type"] == "ok")
    summary["fail"] = sum(1 for e in ops if e["type"] == "fail")
    summary["info"] = sum(1 for e in ops if e["type"] == "info")
    summary["bulk_attempts"] = sum(w.attempts for w in writers + getattr(ctx, "pressure", []))
    summary["faults"] = dict(ctx.faults)
    summary["snapshot_installs"] = ctx.snapshot_installs
    summary["notes"] = ctx.notes
    summary["anomalies"] = ctx.anomalies
    summary["status_counts"] = ctx.status_counts
    summary["seconds"] = round(time.monotonic() - t0, 1)
    if ctx.anomalies or os.environ.get("CLOUDLESS_KEEP") or args.keep:
        summary["data"] = rdir
        if ctx.anomalies:
            for nd in cluster.nodes:
                sys.stdout.write("----- log tail of %s -----\n%s\n" % (nd, nd.log()[-4000:]))
    else:
        shutil.rmtree(rdir, ignore_errors=True)
    return summary


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=0,
                    help="long profile: this many rounds cycling through the scenarios")
    ap.add_argument("--long", action="store_true", help="the campaign: 200 rounds (--rounds 200)")
    ap.add_argument("--nodes", type=int, default=0,
                    help="only the scenarios with this many nodes (3 or 5)")
    ap.add_argument("--seed", type=int, default=None, help="master seed (printed; for replay)")
    ap.add_argument("--only", default="", help="comma-separated scenario names")
    ap.add_argument("--out", default="", help="directory for histories and summary")
    ap.add_argument("--window-factor", type=float, default=0,
                    help="multiply each round's fault window (long profile default 3)")
    ap.add_argument("--keep", action="store_true", help="keep data dirs and logs")
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args()
    if args.list:
        for s in SCENARIOS:
            print("%-18s %d nodes  %s" % (s.name, s.nodes, " + ".join("/".join(g) for g in s.groups)))
        return 0
    if not os.access(BIN, os.X_OK):
        print("no coordinator binary at %s (set CLOUDLESS_BIN)" % BIN)
        print("0 passed, 1 failed")
        return 1
    if args.keep:
        os.environ["CLOUDLESS_KEEP"] = "1"
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    master = random.Random(seed)
    scen = [s for s in SCENARIOS if not args.nodes or s.nodes == args.nodes]
    if not scen:
        print("no scenario has %d nodes (see --list)" % args.nodes)
        return 2
    if args.long and not args.rounds:
        args.rounds = 200
    if args.rounds:
        plan = [scen[i % len(scen)] for i in range(args.rounds)]
        if not args.window_factor:
            args.window_factor = 3
    else:
        plan = list(scen)
    seeds = [master.randrange(1 << 31) for _ in plan]
    only = {x for x in args.only.split(",") if x}
    unknown = only - {s.name for s in SCENARIOS}
    if unknown:
        print("unknown scenario(s): %s (see --list)" % ", ".join(sorted(unknown)))
        return 2
    # SIGTERM (meson's timeout) unwinds like Ctrl-C, so the finally blocks kill the nodes,
    # unmount the tmpfs homes and delete the namespace.
    signal.signal(signal.SIGTERM, lambda sig, frame: sys.exit(1))
    ns = NetNS()
    have_ns = ns.enter()
    outdir = args.out or os.environ.get("CLOUDLESS_FAULT_OUT") or tempfile.mkdtemp(prefix="cloudless-fault-")
    os.makedirs(outdir, exist_ok=True)
    for f in os.listdir(outdir):  # a reused --out holds the last run only
        if f.startswith("round-") and f.endswith(".history.jsonl") or f == "summary.json":
            os.unlink(os.path.join(outdir, f))
    os.chmod(outdir, 0o755)
    print("cloudless fault injection: seed=%d rounds=%d binary=%s time-scale=%g out=%s" % (
        seed, len(plan), BIN, SCALE, outdir), flush=True)
    if have_ns:
        print("network: private namespace %s, nodes on 127.0.0.1 as uids %d+, partitions with "
              "iptables owner match inside it" % (ns.name, 61001), flush=True)
    else:
        print("network: NO private namespace (%s): plain loopback, partition nemeses are "
              "skipped" % ns.reason, flush=True)
    t0 = time.monotonic()
    summaries = []
    passed = failed = skipped = 0
    try:
        for rno, (s, rseed) in enumerate(zip(plan, seeds), start=1):
            if only and s.name not in only:
                continue
            if s.tmpfs_mb and os.geteuid() != 0:
                log("SKIP round %d %s: mounting a tmpfs needs root" % (rno, s.name))
                skipped += 1
                continue
            log("round %d: %s (%d nodes) seed=%d" % (rno, s.name, s.nodes, rseed))
            sm = run_round(args, ns, rno, s, rseed, outdir)
            summaries.append(sm)
            ok = not sm["anomalies"]
            passed += ok
            failed += not ok
            log("%s round %d %s: %d ops (%d ok, %d fail, %d info)%s%s, faults %s, %d anomalies, %.1fs" % (
                "PASS" if ok else "FAIL", rno, s.name, sm["ops"], sm["ok"], sm["fail"], sm["info"],
                (", %d/%d bulk writes acked" % (sm.get("bulk_acked", 0), sm["bulk_attempts"])) if sm["bulk_attempts"] else "",
                (", %d snapshot installs" % sm["snapshot_installs"]) if sm["snapshot_installs"] else "",
                json.dumps(sm["faults"], sort_keys=True), len(sm["anomalies"]), sm["seconds"]))
            for a in sm["anomalies"]:
                print("    anomaly: " + a.replace("\n", "\n      "), flush=True)
    finally:
        ns.close()
    total = {"seed": seed, "rounds": len(summaries), "seconds": round(time.monotonic() - t0, 1),
             "ops": sum(s["ops"] for s in summaries),
             "bulk_writes": sum(s["bulk_attempts"] for s in summaries),
             "faults": {}, "anomalies": sum(len(s["anomalies"]) for s in summaries),
             "namespace": have_ns, "time_scale": SCALE, "summaries": summaries}
    for s in summaries:
        for k, v in s["faults"].items():
            total["faults"][k] = total["faults"].get(k, 0) + v
    with open(os.path.join(outdir, "summary.json"), "w") as f:
        json.dump(total, f, indent=1, sort_keys=True)
    print("total: %d rounds, %d client ops + %d bulk writes, faults %s, %d anomalies, %.0fs (seed %d)" % (
        total["rounds"], total["ops"], total["bulk_writes"], json.dumps(total["faults"], sort_keys=True),
        total["anomalies"], total["seconds"], seed), flush=True)
    print("%d passed, %d failed" % (passed, failed) + (", %d skipped" % skipped if skipped else ""),
          flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
