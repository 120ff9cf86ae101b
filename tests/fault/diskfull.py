"""Disk-full faults for jepsen.py: every node's home (data dir and all) is a small tmpfs mounted
by the test (root), and a filler file takes a file system down to zero free bytes.

Three phases, one nemesis:
  leader    the leader's disk fills: its writes must fail with a clear status (507, never 200)
            and a clear log line; once the filler is gone writes succeed again.
  follower  one follower's disk fills while large writes go through the leader, until its raft
            log or store hits ENOSPC: the cluster keeps acknowledging writes (a majority has
            room); the follower either rides it out or leaves with status 1 and "Raft stopped
            after an I/O error" (libraft 0.15 cannot recover in place), and after the filler is
            gone and a supervisor-style restart it catches up.
  all       every disk fills: no write may be acknowledged; then everything recovers.
Whatever happens, the round's usual checks (linearizability, acknowledged writes present,
equal digests, no crash) run afterwards, so "nothing corrupts" is checked the same way.
"""
import errno
import os
import threading
import time

from faultlib import SendError, http_call, kv_path, run_cmd, scaled, wait_for

FILLER = "filler"


def mount_tmpfs(cluster, mb):
    for nd in cluster.nodes:
        run_cmd(["mount", "-t", "tmpfs", "-o", "size=%dm,mode=0755" % mb, "tmpfs", nd.home])
        nd.tmpfs = True
        if nd.uid is not None:
            os.chown(nd.home, nd.uid, nd.uid)


def free_bytes(nd):
    st = os.statvfs(nd.home)
    return st.f_bavail * st.f_frsize


def fill(nd):
    """Writes a filler file until the file system is full; returns its size."""
    path = os.path.join(nd.home, FILLER)
    n = 0
    with open(path, "ab", buffering=0) as f:
        for chunk in (1 << 20, 1 << 12, 1):
            block = b"\0" * chunk
            while True:
                try:
                    f.write(block)
                    n += chunk
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
    return n


def unfill(nd):
    try:
        os.unlink(os.path.join(nd.home, FILLER))
    except FileNotFoundError:
        pass


def probe(ctx, nd, n=5):
    """n PUTs straight to nd, recorded in the history (process "probe"). Returns statuses."""
    out = []
    for i in range(n):
        key = "k%d" % (i % 4)
        v = "probe-%d-%d-%d" % (ctx.rno, time.monotonic_ns(), i)
        ctx.history.add(type="invoke", process="probe", f="write", key=key, value=v, node=nd.node_id)
        try:
            r = http_call(nd.http_addr, "PUT", kv_path(key, "?timeout=2s"), v, timeout=5)
            from faultlib import classify
            typ, why = classify("write", resp=r)
            st = "%d %s" % (r.status, r.problem_type())
        except SendError as e:
            from faultlib import classify
            typ, why = classify("write", err=e)
            st = "error: %s" % e
        e = ctx.history.add(type=typ, process="probe", f="write", key=key, value=v, node=nd.node_id)
        if why:
            e["error"] = why
        out.append(st)
    return out


class Pressure(threading.Thread):
    """Large writes (distinct keys) through the leader, up to a byte budget, so a follower with
    a full disk runs out of preallocated raft segments and memtable room. Acknowledged ones are
    checked after healing like the bulk writers'."""

    def __init__(self, ctx, budget, size=50_000):
        super().__init__(daemon=True)
        self.ctx = ctx
        self.budget = budget
        self.size = size
        self.acked = {}
        self.failed = set()
        self.attempts = 0
        self.stop_ev = threading.Event()

    def run(self):
        from faultlib import classify
        sent = 0
        seq = 0
        while sent < self.budget and not self.stop_ev.is_set():
            ld = self.ctx.cluster.leader_of() or self.ctx.cluster.nodes[0]
            seq += 1
            key = "pressure/%d/%05d" % (self.ctx.rno, seq)
            v = ("%s:" % key) + "p" * self.size
            self.attempts += 1
            try:
                r = http_call(ld.http_addr, "PUT", kv_path(key, "?timeout=2s"), v, timeout=5)
                typ, _ = classify("write", resp=r)
                if r.status == 507:
                    time.sleep(0.05)
            except SendError as e:
                typ, _ = classify("write", err=e)
            if typ == "ok":
                self.acked[key] = v
                sent += len(v)
            elif typ == "fail":
                self.failed.add(key)
                time.sleep(0.02)


DESIGNED_EXITS = ("Raft stopped after an I/O error", "Raft log writes are stuck",
                  "Store write failed")


def _expected_exit(ctx, nd):
    """A node that left after its disk filled must have left the designed way: status 1 and
    one of the DESIGNED_EXITS lines (libraft 0.15 cannot recover from a failed disk write in
    place; a restart does)."""
    if nd.alive():
        return False
    rc = nd.proc.returncode
    log = nd.log()
    why = [w for w in DESIGNED_EXITS if w in log[-20000:]]
    if rc == 1 and why:
        nd.expect_exit = True
        nd.reap()
        ctx.note("%s left with status 1 after its disk filled (\"%s\"); restarted as a "
                 "supervisor would" % (nd, why[-1]))
        return True
    ctx.anomaly("%s died with status %s while its disk was full; log tail:\n%s" % (
        nd, rc, log[-2000:]))
    nd.expect_exit = True  # reported once, here
    nd.reap()
    return True


def catch_up(ctx, nd, after, timeout=45):
    """Clients keep writing, so wait for nd to apply what the leader had applied a moment
    ago rather than for equal indexes."""
    c = ctx.cluster

    def target():
        ld = c.leader_of()
        s = ld.status() if ld else None
        return s and s["applied_index"]
    def caught_up():
        if not nd.alive() and _expected_exit(ctx, nd):
            nd.restart()
            ctx.fault("restart", "%s (supervisor)" % nd)
        s = nd.status()
        return s and s["applied_index"] >= goal
    try:
        goal = wait_for("a leader's applied index", target, 20)
        wait_for("%s to catch up to %d" % (nd, goal), caught_up, timeout)
    except TimeoutError as e:
        from jepsen import describe
        ctx.anomaly("%s did not catch up after %s: %s; %s" % (nd, after, e, describe(c)))


def nemesis(ctx, rng):
    c = ctx.cluster
    ctx.supervisor = lambda nd: _expected_exit(ctx, nd)
    ld = ctx.cluster.leader()

    # -- leader --
    before = ld.log().count("Refusing writes: disk almost full")
    n = fill(ld)
    ctx.fault("disk-full-leader", "filled %s's disk (%d KiB filler, %d bytes free)" % (
        ld, n // 1024, free_bytes(ld)))
    time.sleep(rng.uniform(1.0, 2.0))
    if c.leader_of() is ld:
        got = probe(ctx, ld)
        ctx.note("writes to the full leader %s answered %s" % (ld, got))
        if any(s.startswith("200") for s in got):
            ctx.anomaly("the leader %s acknowledged a write while its disk was full: %s" % (ld, got))
        elif not all(s.startswith("507") for s in got):
            ctx.note("not every write to the full leader got 507: %s" % got)
        if ld.log().count("Refusing writes: disk almost full") <= before:
            ctx.anomaly("no 'Refusing writes: disk almost full' log line on %s" % ld)
    else:
        ctx.note("leadership moved away from %s while its disk was full" % ld)
    unfill(ld)
    ctx.fault("disk-freed", "removed the filler on %s" % ld)
    try:
        wait_for("writes to succeed after freeing %s" % ld,
                 lambda: any(s.startswith("200") for s in probe(ctx, c.leader(), 1)), 20)
    except TimeoutError as e:
        ctx.anomaly("writes did not recover after freeing the leader's disk: %s" % e)

    # -- follower --
    ld = c.leader()
    fo = rng.choice([x for x in c.nodes if x is not ld])
    n = fill(fo)
    ctx.fault("disk-full-follower", "filled follower %s's disk (%d KiB filler)" % (fo, n // 1024))
    p = Pressure(ctx, budget=24 << 20)
    p.start()
    deadline = time.monotonic() + scaled(12)
    while p.is_alive() and time.monotonic() < deadline and fo.alive():
        time.sleep(0.1)
    p.stop_ev.set()
    p.join(timeout=scaled(10))
    ctx.pressure = getattr(ctx, "pressure", []) + [p]
    ctx.note("%d large writes acknowledged while %s's disk was full; %s is %s" % (
        len(p.acked), fo, fo, "up" if fo.alive() else "down"))
    if not p.acked:
        ctx.anomaly("the cluster acknowledged no write while only follower %s's disk was full" % fo)
    unfill(fo)
    ctx.fault("disk-freed", "removed the filler on %s" % fo)
    if not fo.alive() and _expected_exit(ctx, fo):
        fo.restart()
        ctx.fault("restart", "%s (supervisor)" % fo)
    catch_up(ctx, fo, "freeing its disk")

    # -- all --
    for nd in c.nodes:
        fill(nd)
    ctx.fault("disk-full-all", "filled every disk")
    time.sleep(rng.uniform(1.0, 2.0))
    got = []
    for nd in c.nodes:
        got += probe(ctx, nd, 2)
    ctx.note("writes with every disk full answered %s" % got)
    if any(s.startswith("200") for s in got):
        ctx.anomaly("a write was acknowledged while every disk was full: %s" % got)
    for nd in c.nodes:
        unfill(nd)
    ctx.fault("disk-freed", "removed every filler")
    for nd in c.nodes:
        if not nd.alive() and _expected_exit(ctx, nd):
            nd.restart()
            ctx.fault("restart", "%s (supervisor)" % nd)
    try:
        wait_for("writes to succeed after freeing every disk",
                 lambda: any(s.startswith("200") for s in probe(ctx, c.leader(), 1)), 30)
    except TimeoutError as e:
        ctx.anomaly("writes did not recover after freeing every disk: %s" % e)
    for nd in c.nodes:
        catch_up(ctx, nd, "freeing every disk")
