"""A leader that steps down with work queued behind an in-flight raft request survives.

libraft 0.15 fails a stepping-down leader's pending requests from inside its conversion to
follower, while raft.state still reads RAFT_LEADER but the leader state is already freed.
Anything that starts new raft work from those failure callbacks crashes the node (SIGSEGV):
the next queued membership change, or the next linearizable-read barrier. These tests queue
such work and make the leader step down under it (its followers are stopped, so it loses
its quorum)."""
import signal
import threading

from harness import run, wait_for

ANSWERS = (200, 503, 504)


def test_queued_membership_change_survives_step_down(make):
    c = make().start(3)
    ld = c.leader()
    a, b = c.followers()
    z = c.node("coordinator-4").start()
    res = {}

    def send(name, path, body):
        res[name] = ld.req("POST", path, body, timeout=60)

    b.kill(signal.SIGSTOP)
    try:
        # Removing `a` leaves {leader, b}: the new configuration takes effect at once but needs
        # b (stopped) to commit, so the leader loses its quorum and steps down with the
        # removal in flight and the join queued behind it.
        t1 = threading.Thread(target=send, args=("remove", "/raft/remove", {"node_id": a.node_id}))
        t1.start()
        wait_for("%s out of the leader's configuration" % a.node_id,
                 lambda: a.node_id not in [s["node_id"] for s in ld.status()["servers"]], 10)
        t2 = threading.Thread(target=send, args=("join", "/raft/join", {
            "node_id": z.node_id, "raft_addr": z.raft_addr, "http_addr": z.http_addr}))
        t2.start()
        wait_for("the leader to step down",
                 lambda: not ld.alive() or (ld.status() or {}).get("state") != "leader", 10)
    finally:
        b.kill(signal.SIGCONT)
    t1.join()
    t2.join()
    assert ld.alive(), "the old leader died (exit %r)" % ld.proc.poll()
    for name, r in res.items():
        assert r is not None and r.status in ANSWERS, (name, r)
    c.leader(timeout=20)
    for n in c.running():
        if n is a:
            continue
        assert n.status() is not None, n
    # The removal may have committed after all (a 503 says its outcome is unknown): then `a`
    # notices and leaves cleanly; otherwise it is still a working member.
    wait_for("%s to answer or to have left" % a.node_id,
             lambda: a.status() is not None or (not a.alive() and a.proc.poll() == 0), 10)


def test_queued_linearizable_reads_survive_step_down(make):
    c = make().start(3)
    ld = c.leader()
    assert ld.put("k", "v").status == 200
    followers = c.followers()
    answers = []
    lock = threading.Lock()

    def read():
        r = ld.req("GET", "/v1/kv/k?timeout=10s", timeout=30)
        with lock:
            answers.append(r)

    for f in followers:
        f.kill(signal.SIGSTOP)
    try:
        # The first read's barrier cannot commit; the others wait for the next barrier.
        # Then the leader notices it lost its quorum and steps down under all of them.
        threads = [threading.Thread(target=read) for _ in range(8)]
        for t in threads:
            t.start()
        wait_for("the leader to step down",
                 lambda: not ld.alive() or (ld.status() or {}).get("state") != "leader", 10)
    finally:
        for f in followers:
            f.kill(signal.SIGCONT)
    for t in threads:
        t.join()
    assert ld.alive(), "the old leader died (exit %r)" % ld.proc.poll()
    for r in answers:
        assert r is not None and r.status in ANSWERS, answers
        if r.status == 200:
            assert r.body == b"v", r
    c.leader(timeout=20)


if __name__ == "__main__":
    run([test_queued_membership_change_survives_step_down,
         test_queued_linearizable_reads_survive_step_down])
