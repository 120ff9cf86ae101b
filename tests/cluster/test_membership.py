"""Membership changes: remove, re-join, address changes, quorum protection, concurrency,
auto-join backoff, refusing to join a second cluster, and strict input checking."""
import http.client
import json
import re
import signal
import threading
from datetime import datetime

from harness import Response, free_port, run, wait_for

PROBLEM = "application/problem+json"


def servers_of(node):
    """The configuration as this node sees it: sorted (node_id, raft_addr, http_addr, role)."""
    s = node.status()
    if not s:
        return None
    return sorted((x["node_id"], x["raft_addr"], x["http_addr"], x["role"]) for x in s["servers"])


def voters_of(node):
    s = node.status()
    if not s:
        return None
    return sorted(x["node_id"] for x in s["servers"] if x["role"] == "voter")


def same_config_everywhere(nodes):
    """The configuration every node reports, once they all report the same one."""
    def same():
        configs = [servers_of(n) for n in nodes]
        if not all(configs) or any(c != configs[0] for c in configs):
            return None
        return configs[0]
    return wait_for("the same configuration on %s" % nodes, same)


def assert_problem(r, status, what):
    assert r is not None, "%s: no response" % what
    assert r.status == status, "%s: expected %d, got %r" % (what, status, r)
    ctype = r.header("Content-Type") or ""
    assert ctype.split(";")[0].strip() == PROBLEM, "%s: Content-Type %r" % (what, ctype)
    body = r.json()
    for field in ("type", "title", "status", "detail"):
        assert field in body, "%s: problem body lacks %s: %r" % (what, field, body)
    assert body["status"] == status, "%s: body status %r != %d" % (what, body["status"], status)
    assert isinstance(body["title"], str) and body["title"], (what, body)
    assert isinstance(body["detail"], str) and body["detail"], (what, body)
    return body


def join_body(node):
    return {"node_id": node.node_id, "raft_addr": node.raft_addr, "http_addr": node.http_addr}


def put_ok(node, key, value):
    r = node.put(key, value)
    return r if r is not None and r.status == 200 else None


def problem_type(r):
    try:
        return r.json().get("type", "") if r is not None else ""
    except ValueError:
        return ""


def is_removed(node):
    """The node says, on readiness, that the cluster removed it."""
    r = node.req("GET", "/raft/health", timeout=2)
    return r is not None and r.status == 503 and problem_type(r).endswith("/removed")


def assert_stays_removed(node):
    """A removed node keeps running (a supervisor would restart an exit), refuses every
    request with 503 `removed`, stays live, and leaves when told to stop."""
    assert node.alive(), node
    live = node.req("GET", "/raft/health?mode=live", timeout=2)
    assert live is not None and live.status == 200, live
    for method, path in (("GET", "/v1/kv/x"), ("PUT", "/v1/kv/x"), ("GET", "/v1/kv/x?consistency=stale")):
        r = node.req(method, path, "v" if method == "PUT" else None, timeout=2)
        body = assert_problem(r, 503, "%s %s on a removed node" % (method, path))
        assert body["type"].endswith("/removed"), body
        assert "data dir" in body["detail"], body
    st = node.status()
    assert st is not None and st["state"] == "removed", st
    assert "Node removed from cluster" in node.log(), node.log()[-2000:]
    assert "delete --data-dir" in node.log(), node.log()[-2000:]


def test_remove_then_readd(make):
    c = make().start(3)
    ld = c.leader()
    victim, other = [n for n in c.running() if n is not ld]
    wait_for("a write", lambda: put_ok(ld, "before-remove", "1"))
    # Any member accepts the removal: send it to the other follower, which forwards it.
    r = other.req("POST", "/raft/remove", {"node_id": victim.node_id}, timeout=30)
    assert r is not None and r.status == 200, r
    body = r.json()
    assert body["success"] is True and body["changed"] is True, body
    assert victim.node_id not in [p["node_id"] for p in body["cluster_peers"]], body

    remaining = [ld, other]
    c.wait_voters(2, nodes=remaining)
    for n in remaining:
        assert victim.node_id not in [x["node_id"] for x in n.status()["servers"]], n
    # The removed process learns it at once (the leader tells it) and stops serving, but
    # stays up: an exit would only make a supervisor restart it.
    wait_for("%s to report its removal" % victim, lambda: is_removed(victim), timeout=3)
    assert_stays_removed(victim)
    assert re.search(r"Node removed from cluster node_id=%s\b" % re.escape(victim.node_id),
                     ld.log()), ld.log()[-2000:]
    # Restarted with the same data dir, it stays out (no restart loop, no silent rejoin).
    assert victim.stop() == 0
    victim.restart()
    wait_for("%s to come back removed" % victim, lambda: is_removed(victim))
    assert_stays_removed(victim)
    assert victim.stop() == 0

    # Back in with an empty data dir.
    victim.wipe()
    victim.start(join=[ld])
    c.wait_voters(3)
    wait_for("a write", lambda: put_ok(c.leader(), "after-readd", "2"))
    st = c.wait_converged()
    assert all(s["state_keys"] >= 2 for s in st), st
    got = wait_for("old key on the re-added node",
                   lambda: (lambda r: r if r and r.status == 200 else None)(
                       victim.get("before-remove", "?consistency=stale")))
    assert got.body == b"1", got


def test_remove_the_leader(make):
    c = make().start(3)
    old = c.leader()
    via = [n for n in c.running() if n is not old][0]
    wait_for("a write", lambda: put_ok(old, "k", "v"))
    # The leader hands leadership over first; the removal then runs on the new leader.
    r = via.req("POST", "/raft/remove", {"node_id": old.node_id}, timeout=30)
    assert r is not None and r.status == 200, r
    assert r.json()["changed"] is True, r
    assert old.node_id not in [p["node_id"] for p in r.json()["cluster_peers"]], r
    wait_for("%s to report its removal" % old, lambda: is_removed(old), timeout=5)
    assert_stays_removed(old)
    assert old.stop() == 0
    c.wait_voters(2)
    new = c.leader()
    assert new is not old
    assert re.search(r"Node removed from cluster node_id=%s\b" % re.escape(old.node_id), new.log())
    wait_for("a write on the new leader", lambda: put_ok(new, "k2", "v2"))
    c.wait_converged()
    # Removing it again: it is no longer a member.
    r = new.req("POST", "/raft/remove", {"node_id": old.node_id}, timeout=30)
    assert_problem(r, 404, "removing a removed node")


def test_idempotent_rejoin(make):
    c = make().start(3)
    ld = c.leader()
    before = same_config_everywhere(c.running())
    st = ld.status()
    before_term, before_index = st["term"], st["last_log_index"]
    for member in c.running():  # existing voters, re-announced to the leader and a follower
        for target in c.running():
            r = target.req("POST", "/raft/join", join_body(member), timeout=30)
            assert r is not None and r.status == 200, (member, target, r)
            body = r.json()
            assert body["success"] is True, body
            assert body["changed"] is False, body
            peers = sorted((p["node_id"], p["raft_addr"], p["http_addr"], p["role"])
                           for p in body["cluster_peers"])
            assert peers == before, (peers, before)
    assert same_config_everywhere(c.running()) == before
    # A no-op join appends nothing to the log (an election would, so only within one term).
    st = ld.status()
    if st["term"] == before_term:
        assert st["last_log_index"] == before_index, (st, before_index)


def test_rejoin_with_new_address(make):
    c = make().start(3)
    ld = c.leader()
    mover = [n for n in c.running() if n is not ld][0]
    old_raft, old_http = mover.raft_addr, mover.http_addr
    mover.kill(signal.SIGKILL)
    mover.wipe()
    mover.raft_addr = "127.0.0.1:%d" % free_port()
    mover.http_addr = "127.0.0.1:%d" % free_port()
    assert (mover.raft_addr, mover.http_addr) != (old_raft, old_http)
    mover.start(join=[ld])
    wait_for("%s to rejoin" % mover, lambda: "Joined raft cluster" in mover.log())
    c.wait_voters(3)
    config = same_config_everywhere(c.running())
    entries = [x for x in config if x[0] == mover.node_id]
    assert entries == [(mover.node_id, mover.raft_addr, mover.http_addr, "voter")], config
    assert old_raft not in [x[1] for x in config], config
    voters = sorted(x[0] for x in config if x[3] == "voter")
    assert voters == sorted(n.node_id for n in c.nodes.values()), config
    wait_for("a write", lambda: put_ok(c.leader(), "moved", "yes"))
    c.wait_converged()


def test_quorum_losing_change_refused(make):
    c = make().start(3)
    ld = c.leader()
    dead, live = [n for n in c.running() if n is not ld]
    before = same_config_everywhere(c.running())
    dead.kill(signal.SIGKILL)
    # The leader judges reachability from what it last heard: wait until it counts the dead
    # follower as gone (no failure left to tolerate).
    wait_for("leader to see one voter down",
             lambda: ld.metric("cloudless_raft_failure_tolerance") == 0)
    for target in (ld, live):
        r = target.req("POST", "/raft/remove", {"node_id": live.node_id}, timeout=30)
        body = assert_problem(r, 409, "removing the live follower via %s" % target)
        assert "quorum" in body["detail"], body
    for n in (ld, live):
        assert servers_of(n) == before, (n, servers_of(n), before)
        assert len(voters_of(n)) == 3
    # Removing the dead one leaves a working 2-voter cluster.
    r = live.req("POST", "/raft/remove", {"node_id": dead.node_id}, timeout=30)
    assert r is not None and r.status == 200, r
    assert r.json()["changed"] is True, r
    c.wait_voters(2)
    assert voters_of(ld) == sorted([ld.node_id, live.node_id])
    wait_for("a write with 2 voters", lambda: put_ok(c.leader(), "k", "v"))
    # Restarted from its old data dir, the removed node finds out by itself (nobody told
    # it: it was down) and stops serving.
    dead.restart()
    wait_for("%s to find itself removed" % dead, lambda: is_removed(dead), timeout=20)
    assert_stays_removed(dead)
    assert dead.stop() == 0
    c.wait_voters(2)
    assert voters_of(ld) == sorted([ld.node_id, live.node_id])


def test_concurrent_joins(make):
    c = make().start(3)
    ld = c.leader()
    follower = [n for n in c.running() if n is not ld][0]
    newcomers = [c.node("coordinator-4").start(), c.node("coordinator-5").start()]
    results = {}
    go = threading.Barrier(2)

    def join(node, via):
        go.wait()
        results[node.node_id] = via.req("POST", "/raft/join", join_body(node), timeout=90)

    threads = [threading.Thread(target=join, args=(newcomers[0], ld)),
               threading.Thread(target=join, args=(newcomers[1], follower))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    joined = []
    for nid, r in results.items():
        assert r is not None and r.status in (200, 409), (nid, r)
        if r.status == 200:
            assert r.json()["success"] is True, r
            joined.append(nid)
        else:
            assert_problem(r, 409, "join of %s" % nid)
    assert joined, results
    expected = sorted(["coordinator-1", "coordinator-2", "coordinator-3"] + joined)
    c.wait_voters(len(expected))
    config = same_config_everywhere(c.running())
    assert sorted(x[0] for x in config if x[3] == "voter") == expected, config
    assert len({x[0] for x in config}) == len(config), config  # no id twice
    assert len({x[1] for x in config}) == len(config), config  # no address twice
    wait_for("a write", lambda: put_ok(c.leader(), "k", "v"))
    c.wait_converged()


LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z \S+ Join attempt node_id=", re.M)


def join_attempt_times(node):
    return [datetime.strptime(t, "%Y-%m-%dT%H:%M:%S.%f").timestamp()
            for t in LOG_TIME.findall(node.log())]


def test_autojoin_backoff(make):
    c = make()
    first = c.node("coordinator-1")  # ports chosen, nothing listening yet
    joiner = c.node("coordinator-2").start(join=[first])
    times = wait_for("5 join attempts", lambda: (lambda t: t if len(t) >= 5 else None)(
        join_attempt_times(joiner)), timeout=15)
    gaps = [b - a for a, b in zip(times, times[1:])]
    # Exponential backoff (doubling, +-20% jitter): no hot loop, no gap clearly shorter than
    # the one before (slack for a late timer on a busy machine), and clear growth overall.
    assert gaps[0] > 0.05, gaps
    for g1, g2 in zip(gaps, gaps[1:]):
        assert g2 > 0.8 * g1, gaps
    assert gaps[-1] > 3 * gaps[0], gaps
    assert "Join attempt failed" in joiner.log()
    assert joiner.alive()
    first.start(bootstrap=True)
    wait_for("joiner admitted", lambda: "Joined raft cluster" in joiner.log(), timeout=20)
    c.wait_voters(2)
    assert voters_of(first) == ["coordinator-1", "coordinator-2"]


def test_bootstrapped_node_never_joins_another_cluster(make):
    cb = make(name="cluster-b").start(3)
    b_leader = cb.leader()
    ca = make(name="cluster-a")
    x = ca.node("coordinator-x").start(bootstrap=True)
    wait_for("x leads its own cluster", lambda: ca.leader_of([x]))
    assert x.stop() == 0
    x.start(join=[b_leader] + [n for n in cb.running() if n is not b_leader])
    wait_for("x refuses", lambda: "Refusing to join another cluster" in x.log())
    # x is back as the single voter of its own cluster; it never asked B.
    wait_for("x leads its own cluster again", lambda: ca.leader_of([x]))
    assert voters_of(x) == ["coordinator-x"], x.status()
    assert "Join attempt" not in x.log(), x.log()
    for n in cb.running():
        config = servers_of(n)
        assert "coordinator-x" not in [e[0] for e in config], config
        assert x.raft_addr not in [e[1] for e in config], config
        assert "coordinator-x" not in n.log()

    # A member of B that joined once and restarts with --join does not join again.
    member = [n for n in cb.running() if n is not cb.leader()][0]
    before = same_config_everywhere(cb.running())
    attempts = member.log().count("Join attempt")
    assert member.stop() == 0
    member.restart()
    wait_for("restarted member declines to join", lambda: "Not joining again" in member.log())
    cb.wait_voters(3)
    assert member.log().count("Join attempt") == attempts
    assert same_config_everywhere(cb.running()) == before
    wait_for("a write", lambda: put_ok(cb.leader(), "k", "v"))
    cb.wait_converged()


def bad_input_table(cluster):
    real = cluster.nodes["coordinator-2"]
    ok_join = {"node_id": "coordinator-9", "raft_addr": "127.0.0.1:%d" % free_port(),
               "http_addr": "127.0.0.1:%d" % free_port()}

    def j(**kw):
        d = dict(ok_join)
        for k, v in kw.items():
            if v is Ellipsis:
                d.pop(k)
            else:
                d[k] = v
        return json.dumps(d)

    big = json.dumps({"node_id": "coordinator-2", "pad": "x" * 8192})
    cases = [
        # (name, path, method, raw body, expected status)
        ("join malformed", "/raft/join", "POST", '{"node_id": ', 400),
        ("join trailing garbage", "/raft/join", "POST", j() + "}", 400),
        ("join array", "/raft/join", "POST", "[1, 2]", 400),
        ("join string", "/raft/join", "POST", '"coordinator-9"', 400),
        ("join null", "/raft/join", "POST", "null", 400),
        ("join empty body", "/raft/join", "POST", "", 400),
        ("join missing node_id", "/raft/join", "POST", j(node_id=...), 400),
        ("join missing raft_addr", "/raft/join", "POST", j(raft_addr=...), 400),
        ("join missing http_addr", "/raft/join", "POST", j(http_addr=...), 400),
        ("join numeric node_id", "/raft/join", "POST", j(node_id=9), 400),
        ("join null node_id", "/raft/join", "POST", j(node_id=None), 400),
        ("join list raft_addr", "/raft/join", "POST", j(raft_addr=["127.0.0.1:1"]), 400),
        ("join numeric http_addr", "/raft/join", "POST", j(http_addr=8080), 400),
        ("join unknown field", "/raft/join", "POST", j(role="voter"), 400),
        ("join duplicate field", "/raft/join", "POST", j()[:-1] + ', "node_id": "x"}', 400),
        ("join bad node_id chars", "/raft/join", "POST", j(node_id="bad id!"), 400),
        ("join node_id slash", "/raft/join", "POST", j(node_id="a/b"), 400),
        ("join empty node_id", "/raft/join", "POST", j(node_id=""), 400),
        ("join long node_id", "/raft/join", "POST", j(node_id="n" * 65), 400),
        ("join raft_addr no port", "/raft/join", "POST", j(raft_addr="127.0.0.1"), 400),
        ("join raft_addr empty port", "/raft/join", "POST", j(raft_addr="127.0.0.1:"), 400),
        ("join raft_addr port 70000", "/raft/join", "POST", j(raft_addr="127.0.0.1:70000"), 400),
        ("join raft_addr port 0", "/raft/join", "POST", j(raft_addr="127.0.0.1:0"), 400),
        ("join raft_addr hostname", "/raft/join", "POST", j(raft_addr="localhost:7000"), 400),
        ("join raft_addr ipv6", "/raft/join", "POST", j(raft_addr="[::1]:7000"), 400),
        ("join http_addr no port", "/raft/join", "POST", j(http_addr="127.0.0.1"), 400),
        ("join http_addr port 99999", "/raft/join", "POST", j(http_addr="127.0.0.1:99999"), 400),
        ("join NUL in node_id", "/raft/join", "POST", j(node_id="a\u0000b"), 400),
        ("join invalid UTF-8", "/raft/join",
         "POST", j(node_id="n").encode().replace(b'"n"', b'"\xff"'), 400),
        ("join UTF-8 BOM", "/raft/join", "POST", "\ufeff" + j(), 400),
        ("join deep nesting", "/raft/join", "POST", "[" * 1500 + "]" * 1500, 400),
        # The detail quotes the field name; cut at 64 bytes, it must still be valid UTF-8.
        ("join long unknown field", "/raft/join", "POST", j(**{"f" * 63 + "\u00e9": 1}), 400),
        ("join bad timeout", "/raft/join?timeout=forever", "POST", j(), 400),
        ("join oversized", "/raft/join", "POST", big, 413),
        ("join GET", "/raft/join", "GET", None, 405),
        ("join PUT", "/raft/join", "PUT", j(), 405),
        ("remove malformed", "/raft/remove", "POST", "{node_id: x}", 400),
        ("remove array", "/raft/remove", "POST", '["coordinator-2"]', 400),
        ("remove empty body", "/raft/remove", "POST", "", 400),
        ("remove empty object", "/raft/remove", "POST", "{}", 400),
        ("remove numeric node_id", "/raft/remove", "POST", '{"node_id": 2}', 400),
        ("remove bool node_id", "/raft/remove", "POST", '{"node_id": true}', 400),
        ("remove unknown field", "/raft/remove",
         "POST", json.dumps({"node_id": real.node_id, "force": True}), 400),
        ("remove bad chars", "/raft/remove", "POST", '{"node_id": "coordinator 2"}', 400),
        ("remove unknown node", "/raft/remove", "POST", '{"node_id": "coordinator-77"}', 404),
        ("remove bad timeout", "/raft/remove?timeout=-1s",
         "POST", json.dumps({"node_id": real.node_id}), 400),
        ("remove oversized", "/raft/remove", "POST", big, 413),
        ("remove GET", "/raft/remove", "GET", None, 405),
        ("remove DELETE", "/raft/remove", "DELETE", None, 405),
        ("transfer malformed", "/raft/transfer-leader", "POST", "{", 400),
        ("transfer array", "/raft/transfer-leader", "POST", "[]", 400),
        ("transfer numeric node_id", "/raft/transfer-leader", "POST", '{"node_id": 3}', 400),
        ("transfer unknown field", "/raft/transfer-leader",
         "POST", json.dumps({"node_id": real.node_id, "now": 1}), 400),
        ("transfer bad chars", "/raft/transfer-leader", "POST", '{"node_id": "c\\u00e9"}', 400),
        ("transfer unknown node", "/raft/transfer-leader",
         "POST", '{"node_id": "coordinator-77"}', 404),
        ("transfer oversized", "/raft/transfer-leader", "POST", big, 413),
        ("transfer GET", "/raft/transfer-leader", "GET", None, 405),
    ]
    return cases


def chunked_post(node, path, chunks):
    """POST with Transfer-Encoding: chunked (no Content-Length to check up front)."""
    host, port = node.http_addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("POST", path, body=iter(chunks), encode_chunked=True,
                     headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        return Response(r.status, r.getheaders(), r.read())
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def test_bad_input_changes_nothing(make):
    c = make(extra_args=["--max-body", "4k"]).start(3)
    ld = c.leader()
    follower = [n for n in c.running() if n is not ld][0]
    wait_for("a write", lambda: put_ok(ld, "k", "v"))
    c.wait_converged()

    def snapshot():
        return {n.node_id: (servers_of(n), n.status(digest=True)["state_digest"])
                for n in c.running()}
    before = snapshot()
    for name, path, method, body, status in bad_input_table(c):
        for target in (ld, follower):
            what = "%s -> %s" % (name, target.node_id)
            headers = {"Content-Type": "application/json"} if body is not None else None
            r = target.req(method, path, body, headers, timeout=30)
            assert_problem(r, status, what)
            if status == 405:
                allow = r.header("Allow") or ""
                assert [m.strip() for m in allow.split(",")] == ["POST"], (what, allow)
    # Oversized without a Content-Length: the limit applies while the body streams in.
    for path in ("/raft/join", "/raft/remove", "/raft/transfer-leader"):
        for target in (ld, follower):
            chunks = [b'{"node_id": "'] + [b"x" * 1024] * 8 + [b'"}']
            r = chunked_post(target, path, chunks)
            assert_problem(r, 413, "chunked oversized %s -> %s" % (path, target.node_id))
    after = snapshot()
    assert after == before, (before, after)



SNAP_OK = ("cloudless_raft_snapshot_creation_total", 'result="success"')
RESTORE_OK = ("cloudless_raft_snapshot_restore_total", 'result="success"')


def join_after_writes(make, trailing, writes):
    """3 nodes with a snapshot threshold far above `writes` and --snapshot-trailing
    `trailing`; `writes` keys written; then a 4th node joins. Returns (cluster, leader,
    joiner) once the joiner is a voter holding the leader's data."""
    c = make(extra_args=["--snapshot-threshold", "100000", "--snapshot-trailing", str(trailing)])
    c.start(3)
    ld = c.leader()
    for i in range(writes):
        assert put_ok(ld, "pre-%d" % i, "v%d" % i), i
    new = c.node("coordinator-4").start(join=[ld])
    c.wait_voters(4)
    c.wait_converged()
    r = new.get("pre-%d" % (writes - 1), "?consistency=stale")
    assert r is not None and r.status == 200, r
    return c, ld, new


def test_far_behind_joiner_gets_a_snapshot(make):
    """Issue 15 item 4: a joiner that would replay more than --snapshot-trailing entries
    installs a snapshot the leader takes for it, instead of replaying the log; the leader's
    threshold is back afterwards (no snapshot per write)."""
    c, ld, new = join_after_writes(make, trailing=64, writes=300)
    assert "Snapshot taken for a joiner" in ld.log(), ld.log()[-3000:]
    assert new.metric(*RESTORE_OK) == 1, new.metrics()
    assert "Snapshot restored" in new.log(), new.log()[-2000:]
    taken = ld.metric(*SNAP_OK)
    assert taken == 1, taken
    for i in range(50):
        assert put_ok(ld, "post-%d" % i, "x"), i
    c.wait_converged()
    assert ld.metric(*SNAP_OK) == taken, "the snapshot threshold stayed lowered"


def test_near_joiner_replays_the_log(make):
    """The same join with fewer entries than --snapshot-trailing: no snapshot anywhere."""
    c, ld, new = join_after_writes(make, trailing=1000, writes=300)
    assert "Snapshot taken for a joiner" not in ld.log(), ld.log()[-3000:]
    assert ld.metric(*SNAP_OK) == 0
    assert new.metric(*RESTORE_OK) == 0


if __name__ == "__main__":
    run([test_remove_then_readd, test_remove_the_leader, test_idempotent_rejoin,
         test_rejoin_with_new_address, test_quorum_losing_change_refused, test_concurrent_joins,
         test_autojoin_backoff, test_bootstrapped_node_never_joins_another_cluster,
         test_bad_input_changes_nothing, test_far_behind_joiner_gets_a_snapshot,
         test_near_joiner_replays_the_log])
