"""Data-dir identity (issue: a member that lost its data dir sits empty forever, reports
healthy, and the leader counts it caught up).

A wiped member started again with its old command must be replaced the safe way (removed,
re-added as a spare, caught up, promoted), never look healthy while empty, and never start a
cluster of its own; --bootstrap-expect makes every node's command safe to re-run."""
import signal
import threading
import time

from harness import run, wait_for, scaled

PROBLEM = "application/problem+json"


def put_ok(node, key, value):
    r = node.put(key, value)
    return r if r is not None and r.status == 200 else None


def voters_of(node):
    s = node.status()
    if not s:
        return None
    return sorted(x["node_id"] for x in s["servers"] if x["role"] == "voter")


def health_status(node):
    r = node.req("GET", "/raft/health", timeout=1)
    return r.status if r is not None else None


class Sampler:
    """Samples /raft/status (and optionally /raft/health) of some nodes every 20 ms in the
    background: what each node said, so a test can check properties that must hold at every
    instant (one leader per term, never healthy while empty)."""

    def __init__(self, nodes, health=()):
        self.nodes = list(nodes)
        self.health = list(health)
        self.samples = []  # (t, node_id, status dict)
        self.healthy_while_behind = []  # (t, node_id, applied, required)
        self.required = {}  # node_id -> applied index it must reach before a 200 is honest
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(n,), daemon=True)
                         for n in self.nodes]

    def __enter__(self):
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)

    def _run(self, node):
        while not self._stop.is_set():
            s = node.status()
            if s:
                self.samples.append((time.monotonic(), node.node_id, s))
            if node in self.health:
                h = health_status(node)
                s2 = node.status()
                need = self.required.get(node.node_id)
                if h == 200 and need is not None and s2 and s2["applied_index"] < need:
                    self.healthy_while_behind.append((time.monotonic(), node.node_id,
                                                      s2["applied_index"], need))
            self._stop.wait(0.02)

    def leaders_by_term(self):
        out = {}
        for _, nid, s in self.samples:
            if s.get("state") == "leader":
                out.setdefault(s["term"], set()).add(nid)
        return out

    def assert_one_leader_per_term(self):
        for term, ids in self.leaders_by_term().items():
            assert len(ids) == 1, "term %d had leaders %s" % (term, sorted(ids))


def write_keys(node, prefix, n):
    for i in range(n):
        wait_for("write %s%d" % (prefix, i), lambda: put_ok(node, "%s%d" % (prefix, i), "v%d" % i))


def expect_cluster(make, name="expect", n=3, extra=None):
    """n nodes, each started with --join <all of them> --bootstrap-expect n, at once."""
    c = make(name=name)
    nodes = [c.node("coordinator-%d" % i) for i in range(1, n + 1)]
    for nd in nodes:
        nd.start(join=nodes, extra=["--bootstrap-expect", str(n)] + (extra or []))
    return c, nodes


def test_wiped_follower_rejoins_as_replacement(make):
    c = make().start(3)
    ld = c.leader()
    write_keys(ld, "k", 50)
    victim = [n for n in c.running() if n is not ld][0]
    before = c.wait_converged()[0]["applied_index"]
    old_inc = victim.status()["incarnation"]
    victim.kill(signal.SIGKILL)
    victim.wipe()
    with Sampler(c.nodes.values(), health=[victim]) as sampler:
        sampler.required[victim.node_id] = before
        t0 = time.monotonic()
        victim.restart()  # exactly its original command (--join coordinator-1)
        c.wait_voters(3, timeout=15)
        st = c.wait_converged(timeout=15)
        took = time.monotonic() - t0
    assert took < scaled(15), took
    assert not sampler.healthy_while_behind, sampler.healthy_while_behind[:5]
    sampler.assert_one_leader_per_term()
    new_inc = victim.status()["incarnation"]
    assert new_inc != old_inc, (old_inc, new_inc)
    leader = c.leader()
    assert "Replacing member node_id=%s" % victim.node_id in leader.log(), leader.log()[-3000:]
    assert "new incarnation (its data was lost)" in leader.log()
    entry = [x for x in leader.status()["servers"] if x["node_id"] == victim.node_id]
    assert entry and entry[0]["incarnation"] == new_inc and entry[0]["role"] == "voter", entry
    assert all(s["state_keys"] >= 50 for s in st), st
    r = victim.get("k49", "?consistency=stale")
    assert r is not None and r.status == 200 and r.body == b"v49", r
    wait_for("victim ready", lambda: health_status(victim) == 200)


def test_empty_member_never_counts_as_caught_up(make):
    """Started empty under its old id and address but without --join, the member cannot be
    replaced: the leader must see it lagging (lost data), its own health must fail, and the
    failure tolerance must drop, instead of the silent 'lag 0'."""
    c = make().start(3)
    ld = c.leader()
    write_keys(ld, "k", 20)
    c.wait_converged()
    victim = [n for n in c.running() if n is not ld][0]
    victim.kill(signal.SIGKILL)
    victim.wipe()
    victim.start()  # same id, same addresses, empty, no --join

    def lagging():
        s = ld.status()
        e = [x for x in s["servers"] if x["node_id"] == victim.node_id]
        return e and e[0]["lag"] > 0 and s["failure_tolerance"] == 0 and e
    e = wait_for("the leader to see the empty member lagging", lagging)
    assert e[0]["match_index"] < ld.status()["last_log_index"], e
    assert wait_for("lost data reported", lambda: [x for x in ld.status()["servers"]
                                                   if x["node_id"] == victim.node_id][0]["lost_data"])
    m = ld.metrics()
    assert 'cloudless_raft_follower_replication_lag_entries{follower_id="%s"} 0\n' % victim.node_id not in m
    # Readiness on the empty node fails the whole time (sample for a while).
    deadline = time.monotonic() + scaled(2)
    while time.monotonic() < deadline:
        assert health_status(victim) == 503
        time.sleep(0.05)
    r = victim.req("GET", "/raft/health")
    body = r.json()
    assert "member" in body["failing"] or "applied_lag" in body["failing"], body


def test_bootstrap_expect_forms_one_cluster(make):
    c, nodes = expect_cluster(make)
    with Sampler(nodes) as sampler:
        c.wait_voters(3, nodes=nodes, timeout=20)
        ld = c.leader()
        wait_for("a write", lambda: put_ok(ld, "k", "v"))
        c.wait_converged(nodes=nodes)
    sampler.assert_one_leader_per_term()
    ids = {n.status()["cluster_id"] for n in nodes}
    assert len(ids) == 1 and "" not in ids, ids
    for n in nodes:
        assert "Forming the cluster" in n.log() or "Founders already bootstrapped" in n.log(), n.log()[-2000:]
        assert n.status()["founders"], n.status()
    # Re-running every node's own command is safe: a restart with state just resumes.
    for n in nodes:
        assert n.stop() == 0
        n.restart()
    c.wait_voters(3, nodes=nodes)
    assert {n.status()["cluster_id"] for n in nodes} == ids


def test_bootstrap_expect_wiped_node_rejoins(make):
    c, nodes = expect_cluster(make)
    c.wait_voters(3, nodes=nodes, timeout=20)
    for victim in nodes:  # any one of them, the leader included
        ld = c.leader()
        write_keys(ld, victim.node_id + "-", 10)
        before = c.wait_converged()[0]["applied_index"]
        victim.kill(signal.SIGKILL)
        victim.wipe()
        with Sampler(nodes, health=[victim]) as sampler:
            sampler.required[victim.node_id] = before
            victim.restart()
            c.wait_voters(3, nodes=nodes, timeout=20)
            c.wait_converged(nodes=nodes, timeout=20)
        sampler.assert_one_leader_per_term()
        assert not sampler.healthy_while_behind, sampler.healthy_while_behind[:5]
        assert "Joining the existing cluster" in victim.log(), victim.log()[-2000:]
    assert len({n.status()["cluster_id"] for n in nodes}) == 1


def test_bootstrap_expect_wiped_node_with_peers_paused(make):
    """The two others are paused while the wiped node starts: it must not form a cluster of
    its own, never acknowledge a write, and end a voter with an equal digest."""
    c, nodes = expect_cluster(make)
    c.wait_voters(3, nodes=nodes, timeout=20)
    ld = c.leader()
    write_keys(ld, "k", 20)
    c.wait_converged(nodes=nodes)
    victim = [n for n in nodes if n is not ld][0]
    others = [n for n in nodes if n is not victim]
    victim.kill(signal.SIGKILL)
    victim.wipe()
    log_from = len(victim.log())
    with Sampler(nodes) as sampler:
        for n in others:
            n.kill(signal.SIGSTOP)
        try:
            victim.restart()
            acked = []
            deadline = time.monotonic() + scaled(3)
            while time.monotonic() < deadline:
                r = victim.req("PUT", "/v1/kv/rogue", "x", timeout=1)
                if r is not None and r.status == 200:
                    acked.append(r)
                s = victim.status()
                assert s is None or s["state"] != "leader", s
                time.sleep(0.1)
            assert not acked, acked
            assert "Bootstrapped Raft cluster" not in victim.log()[log_from:], victim.log()[-2000:]
        finally:
            for n in others:
                n.kill(signal.SIGCONT)
        c.wait_voters(3, nodes=nodes, timeout=20)
        st = c.wait_converged(nodes=nodes, timeout=20)
    sampler.assert_one_leader_per_term()
    r = c.leader().get("rogue")
    assert r is not None and r.status == 404, r
    assert len({s["cluster_id"] for s in st}) == 1


def test_join_from_another_cluster_refused(make):
    a = make(name="cluster-a").start(3)
    ld = a.leader()
    before = sorted((x["node_id"], x["raft_addr"], x["role"]) for x in ld.status()["servers"])
    b = make(name="cluster-b")
    x = b.node("coordinator-x").start(bootstrap=True)
    wait_for("x leads its cluster", lambda: b.leader_of([x]))
    xs = wait_for("x's cluster id", lambda: (lambda s: s if s and s["cluster_id"] else None)(x.status()))
    assert xs["cluster_id"] != ld.status()["cluster_id"]
    body = {"node_id": "coordinator-x", "raft_addr": x.raft_addr, "http_addr": x.http_addr,
            "incarnation": xs["incarnation"], "cluster_id": xs["cluster_id"]}
    for target in a.running():
        r = target.req("POST", "/raft/join", body, timeout=30)
        assert r is not None and r.status == 409, (target, r)
        assert r.header("Content-Type").startswith(PROBLEM)
        p = r.json()
        assert p["type"].endswith("/other-cluster"), p
        assert xs["cluster_id"] in p["detail"], p
    for n in a.running():
        now = sorted((x2["node_id"], x2["raft_addr"], x2["role"]) for x2 in n.status()["servers"])
        assert now == before, (n, now, before)
    # Its own process, restarted on a new raft address and pointed at cluster A, asks to
    # update its entry there and is refused for good.
    assert x.stop() == 0
    from harness import free_port
    x.raft_addr = "127.0.0.1:%d" % free_port()
    x.start(join=list(a.running()))
    wait_for("x refused", lambda: "Refusing to join: the cluster belongs elsewhere" in x.log())
    for n in a.running():
        now = sorted((x2["node_id"], x2["raft_addr"], x2["role"]) for x2 in n.status()["servers"])
        assert now == before, (n, now, before)


def test_plain_bootstrap_refuses_second_cluster(make):
    c = make().start(3)
    first = c.nodes["coordinator-1"]
    ld = c.leader()
    wait_for("a write", lambda: put_ok(ld, "k", "v"))
    first.kill(signal.SIGKILL)
    first.wipe()
    others = [n for n in c.running()]
    first.start(bootstrap=True, join=others)
    rc = first.proc.wait(timeout=scaled(20))
    assert rc == 2, rc
    assert "Refusing to bootstrap a second cluster" in first.log(), first.log()[-2000:]
    # Started without --bootstrap, the same node joins as a replacement.
    first.wipe()
    first.start(join=others)
    c.wait_voters(3, timeout=20)
    c.wait_converged()


if __name__ == "__main__":
    run([test_wiped_follower_rejoins_as_replacement, test_empty_member_never_counts_as_caught_up,
         test_bootstrap_expect_forms_one_cluster, test_bootstrap_expect_wiped_node_rejoins,
         test_bootstrap_expect_wiped_node_with_peers_paused, test_join_from_another_cluster_refused,
         test_plain_bootstrap_refuses_second_cluster])
