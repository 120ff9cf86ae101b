"""Cluster formation: one cluster from one bootstrap + joins, via --join or POST /raft/join."""
import re

from harness import run, wait_for


def leaders_by_metrics(cluster):
    lines = [n.metrics() for n in cluster.running()]
    return sum(1 for m in lines if re.search(r"^cloudless_coordinator_is_leader 1$", m, re.M)), \
        sum(1 for m in lines if re.search(r"^cloudless_coordinator_is_leader 0$", m, re.M))


def assert_one_cluster(c):
    wait_for("exactly one leader on /metrics", lambda: leaders_by_metrics(c) == (1, 2))
    states = [n.status()["state"] for n in c.running()]
    assert states.count("leader") == 1 and states.count("follower") == 2, states
    voter_sets = set()
    for n in c.running():
        s = n.status()
        voter_sets.add(tuple(sorted(x["node_id"] for x in s["servers"] if x["role"] == "voter")))
    assert voter_sets == {("coordinator-1", "coordinator-2", "coordinator-3")}, voter_sets
    terms = {n.status()["leader"]["node_id"] for n in c.running()}
    assert len(terms) == 1, terms


def test_bootstrap_and_join_flag(make):
    c = make().start(3)
    assert_one_cluster(c)
    logs = {n.node_id: n.log() for n in c.running()}
    assert "Bootstrapped Raft cluster" in logs["coordinator-1"]
    assert "Became leader" in logs["coordinator-1"]
    for nid in ("coordinator-2", "coordinator-3"):
        assert "Joined raft cluster" in logs[nid], nid
        assert "Node joined cluster node_id=%s" % nid in logs["coordinator-1"], nid


def test_join_with_curl_to_a_follower(make):
    c = make()
    first = c.node("coordinator-1").start(bootstrap=True)
    c.leader()
    second = c.node("coordinator-2").start()
    r = first.req("POST", "/raft/join", {"node_id": "coordinator-2", "raft_addr": second.raft_addr,
                                         "http_addr": second.http_addr}, timeout=30)
    assert r is not None and r.status == 200, r
    body = r.json()
    assert body["success"] is True and body["leader_id"] == "coordinator-1", body
    assert len(body["cluster_peers"]) == 2, body
    third = c.node("coordinator-3").start()
    # Sent to the follower: it forwards to the leader.
    r = second.req("POST", "/raft/join", {"node_id": "coordinator-3", "raft_addr": third.raft_addr,
                                          "http_addr": third.http_addr}, timeout=30)
    assert r is not None and r.status == 200, r
    assert r.header("X-Cloudless-Served-By") == "coordinator-1", r.headers
    c.wait_voters(3)
    assert_one_cluster(c)


def test_write_on_leader_readable_everywhere(make):
    c = make().start(3)
    ld = c.leader()
    r = ld.put("greeting", "hello world")
    assert r.status == 200, r
    index = int(r.header("X-Cloudless-Index"))
    for n in c.running():
        # Stale reads are local: poll until this node has applied the write.
        got = wait_for("value on %s" % n.node_id,
                       lambda: (lambda r: r if r and r.status == 200 else None)(n.get("greeting", "?consistency=stale")))
        assert got.body == b"hello world", got
        assert int(got.header("X-Cloudless-Index")) == index
        lin = n.get("greeting")
        assert lin.status == 200 and lin.body == b"hello world", lin
    c.wait_converged()


if __name__ == "__main__":
    run([test_bootstrap_and_join_flag, test_join_with_curl_to_a_follower,
         test_write_on_leader_readable_everywhere])
