"""Membership changes that cannot silently drop a live voter, honour deadlines, and leave
status and metrics true (removed nodes find out, metrics agree on every node, restarts and
re-addressing show the truth)."""
import re
import signal
import threading
import time

from harness import (free_port, help_lines_with_values, original_grep_says_leader, run, scaled,
                     wait_for)
from prom import run_rule_tests

PROBLEM = "application/problem+json"


def put_ok(node, key, value):
    r = node.put(key, value)
    return r if r is not None and r.status == 200 else None


def config_of(node):
    s = node.status()
    if not s:
        return None
    return sorted((x["node_id"], x["raft_addr"], x["http_addr"], x["role"]) for x in s["servers"])


def problem(r, status, what):
    assert r is not None, "%s: no response" % what
    assert r.status == status, "%s: expected %d, got %r" % (what, status, r)
    assert (r.header("Content-Type") or "").startswith(PROBLEM), (what, r.header("Content-Type"))
    return r.json()


def test_join_at_live_voters_address_refused(make):
    c = make().start(3)
    ld = c.leader()
    victim = [n for n in c.running() if n is not ld][0]
    before = {n.node_id: config_of(n) for n in c.running()}
    intruder = {"node_id": "intruder", "raft_addr": victim.raft_addr,
                "http_addr": "127.0.0.1:%d" % free_port()}
    for target in c.running():
        body = problem(target.req("POST", "/raft/join", intruder, timeout=30), 409,
                       "join at %s's address via %s" % (victim, target))
        assert body["type"].endswith("/address-in-use"), body
        assert victim.node_id in body["detail"] and "alive" in body["detail"], body
    for n in c.running():
        assert config_of(n) == before[n.node_id], n
    wait_for("a write through the victim", lambda: put_ok(victim, "after", "1"))
    assert "Replacing member" not in ld.log()


def test_replacing_a_dead_member_is_reported(make):
    c = make().start(3)
    ld = c.leader()
    dead = [n for n in c.running() if n is not ld][0]
    dead.kill(signal.SIGKILL)
    wait_for("the leader to count it gone", lambda: ld.metric("cloudless_raft_failure_tolerance") == 0)
    # A new node takes over the dead member's raft address.
    newcomer = c.node("coordinator-9")
    newcomer.raft_addr = dead.raft_addr
    newcomer.start()
    r = ld.req("POST", "/raft/join", {"node_id": "coordinator-9", "raft_addr": newcomer.raft_addr,
                                      "http_addr": newcomer.http_addr}, timeout=60)
    assert r is not None and r.status == 200, r
    body = r.json()
    assert body["replaced"] == dead.node_id, body
    assert dead.node_id in body["message"], body
    assert re.search(r"Replacing member node_id=%s reason=\"dead member" % dead.node_id,
                     ld.log()), ld.log()[-3000:]
    voters = sorted(x[0] for x in config_of(ld) if x[3] == "voter")
    assert voters == sorted(["coordinator-9"] + [n.node_id for n in c.running()
                                                 if n.node_id != "coordinator-9"]), voters
    assert dead.node_id not in [x[0] for x in config_of(ld)]


def test_removed_node_stops_being_ready_within_an_election_timeout(make):
    c = make().start(3)
    ld = c.leader()
    victim = [n for n in c.running() if n is not ld][0]
    r = ld.req("POST", "/raft/remove", {"node_id": victim.node_id}, timeout=30)
    assert r is not None and r.status == 200, r
    t0 = time.monotonic()
    wait_for("removed node to stop being ready",
             lambda: (lambda h: h is not None and h.status == 503)(victim.req("GET", "/raft/health")),
             timeout=c.election_ms / 1000.0 + 0.2, interval=0.01)
    assert time.monotonic() - t0 <= scaled(c.election_ms / 1000.0 + 0.2)
    body = victim.req("GET", "/raft/health").json()
    assert body["type"].endswith("/removed"), body
    # Its scrape says so, and the users' unanchored leader grep does not count it.
    text = victim.metrics()
    assert re.search(r"^cloudless_raft_removed 1$", text, re.M), text
    assert help_lines_with_values(text) == [], text
    assert not original_grep_says_leader(int(victim.http_addr.rsplit(":", 1)[1]))


def test_membership_deadlines(make):
    c = make(extra_args=["--catch-up-timeout-ms", "4000"]).start(3)
    ld = c.leader()
    follower = [n for n in c.running() if n is not ld][0]
    before = config_of(ld)
    ghost = {"node_id": "ghost", "raft_addr": "127.0.0.1:%d" % free_port(),
             "http_addr": "127.0.0.1:%d" % free_port()}
    results = {}

    def timed(name, node, path, body):
        t0 = time.monotonic()
        results[name] = (node.req("POST", path, body, timeout=60), time.monotonic() - t0)

    t = threading.Thread(target=timed, args=("ghost", ld, "/raft/join", ghost))
    t.start()
    wait_for("the ghost join to run", lambda: "ghost" in [x[0] for x in config_of(ld)])
    # Queued behind it: each caller is answered at its own deadline, and nothing happens.
    calls = [("remove", ld, "/raft/remove?timeout=1s", {"node_id": follower.node_id}),
             ("remove-via-follower", follower, "/raft/remove?timeout=1s", {"node_id": follower.node_id}),
             ("transfer", ld, "/raft/transfer-leader?timeout=1s", {})]
    threads = [threading.Thread(target=timed, args=call) for call in calls]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for name, _, _, _ in calls:
        r, took = results[name]
        body = problem(r, 504, name)
        assert body["type"].endswith("/not-applied"), (name, body)
        assert "not applied" in body["detail"], (name, body)
        assert took < scaled(1.0) + 1.0, (name, took)
    # More than the small queue gets 409 at once.
    busy = []
    lock = threading.Lock()

    def crowd():
        t0 = time.monotonic()
        r = ld.req("POST", "/raft/remove?timeout=3s", {"node_id": "nobody"}, timeout=30)
        with lock:
            busy.append((r, time.monotonic() - t0))
    crowders = [threading.Thread(target=crowd) for _ in range(8)]
    for th in crowders:
        th.start()
    for th in crowders:
        th.join()
    refused = [(r, took) for r, took in busy if r is not None and r.status == 409]
    assert refused, busy
    for r, took in refused:
        assert r.json()["type"].endswith("/change-in-progress"), r
        assert took < scaled(0.5), took
    # The stalled join is dropped after --catch-up-timeout-ms and says so.
    t.join(timeout=scaled(30))
    r, took = results["ghost"]
    body = problem(r, 504, "the ghost join")
    assert body["type"].endswith("/join-timeout"), body
    assert "removed" in body["detail"], body
    for n in c.running():
        wait_for("configuration back to the three voters on %s" % n, lambda: config_of(n) == before)
    assert ld.status()["state"] == "leader"


def test_leader_removal_without_quorum_keeps_leadership(make):
    c = make().start(3)
    ld = c.leader()
    dead = [n for n in c.running() if n is not ld][0]
    dead.kill(signal.SIGKILL)
    wait_for("the leader to count it gone", lambda: ld.metric("cloudless_raft_failure_tolerance") == 0)
    term = ld.status()["term"]
    body = problem(ld.req("POST", "/raft/remove", {"node_id": ld.node_id}, timeout=30), 409,
                   "removing the leader without quorum")
    assert "quorum" in body["detail"], body
    s = ld.status()
    assert s["state"] == "leader" and s["term"] == term, s


def test_failure_tolerance_is_the_same_everywhere(make):
    c = make().start(3)
    ld = c.leader()
    for n in c.running():
        wait_for("tolerance 1 on %s" % n, lambda: n.metric("cloudless_raft_failure_tolerance") == 1)
    healthy_scrapes = {n.node_id: n.metrics() for n in c.running()}
    down = [n for n in c.running() if n is not ld][0]
    down.kill(signal.SIGKILL)
    live = c.running()
    for n in live:
        wait_for("tolerance 0 on %s" % n, lambda: n.metric("cloudless_raft_failure_tolerance") == 0)
        assert n.metric("cloudless_raft_healthy_voters") == 2, n
    degraded_scrapes = {n.node_id: n.metrics() for n in live}
    # A lone survivor without quorum.
    other = [n for n in live if n is not ld][0]
    other.kill(signal.SIGKILL)
    wait_for("lone survivor reports 0", lambda: ld.metric("cloudless_raft_failure_tolerance") == 0)
    promtool_case(healthy_scrapes, degraded_scrapes)


def series_from(scrapes, name):
    out = []
    for node_id, text in sorted(scrapes.items()):
        m = re.search(r"^%s ([0-9.e+-]+)$" % re.escape(name), text, re.M)
        assert m, (node_id, name)
        out.append((node_id, float(m.group(1))))
    return out


def promtool_case(healthy, degraded):
    """promtool test rules on the shipped alert, with series taken from the real scrapes:
    fires for the degraded cluster, stays quiet for the healthy one."""
    lines = ["evaluation_interval: 1m", "tests:"]
    for label, scrapes, fires in (("healthy", healthy, False), ("degraded", degraded, True)):
        lines += ["  - interval: 1m", "    input_series:"]
        for node_id, v in series_from(scrapes, "cloudless_raft_failure_tolerance"):
            lines += ["      - series: 'cloudless_raft_failure_tolerance{instance=\"%s\"}'" % node_id,
                      "        values: '%sx10'" % (int(v))]
        lines += ["    alert_rule_test:", "      - eval_time: 6m",
                  "        alertname: CloudlessNoFailureTolerance"]
        if fires:
            lines += ["        exp_alerts:", "          - exp_labels: { severity: warning }",
                      "            exp_annotations:",
                      "              summary: \"The coordinator cluster cannot lose another voter without losing quorum.\""]
        else:
            lines += ["        exp_alerts: []"]
    run_rule_tests(lines)


def test_restarted_node_reports_its_real_applied_index(make):
    c = make().start(3)
    ld = c.leader()
    for i in range(100):
        wait_for("write", lambda: put_ok(ld, "k%d" % i, "v"))
    st = c.wait_converged()
    index = st[0]["applied_index"]
    nodes = list(c.running())
    for n in nodes:
        assert n.stop() == 0
    lone = nodes[0]
    lone.restart()  # no leader can be elected: it hears from nobody
    s = wait_for("status of the lone restarted node", lone.status)
    assert s["applied_index"] >= index and s["commit_index"] >= index, (s, index)
    assert lone.metric("cloudless_coordinator_raft_applied_index") >= index
    assert lone.metric("cloudless_raft_commit_index") >= index


def test_restart_with_new_raft_address(make):
    c = make().start(3)
    ld = c.leader()
    wait_for("a write", lambda: put_ok(ld, "k", "v"))
    mover = [n for n in c.running() if n is not ld][0]
    assert mover.stop() == 0
    old = mover.raft_addr
    mover.raft_addr = "127.0.0.1:%d" % free_port()
    args = list(mover.args)
    args[args.index("--raft-addr") + 1] = mover.raft_addr
    mover.args = args
    mover.restart()
    t0 = time.monotonic()
    for n in c.running():
        wait_for("%s to show the new raft address" % n,
                 lambda: (mover.node_id, mover.raft_addr, mover.http_addr, "voter") in (config_of(n) or []),
                 timeout=5)
    assert time.monotonic() - t0 < scaled(5)
    for n in c.running():
        assert old not in [x[1] for x in config_of(n)], config_of(n)
    assert "Raft address changed" in mover.log()
    wait_for("a write after the move", lambda: put_ok(c.leader(), "k2", "v2"))
    c.wait_converged()


def test_restart_with_new_http_address(make):
    c = make().start(3)
    ld = c.leader()
    mover = [n for n in c.running() if n is not ld][0]
    assert mover.stop() == 0
    mover.http_addr = "127.0.0.1:%d" % free_port()
    args = list(mover.args)
    args[args.index("--http-addr") + 1] = mover.http_addr
    mover.args = args
    mover.restart()
    for n in c.running():
        wait_for("%s to show the new HTTP address" % n,
                 lambda: (mover.node_id, mover.raft_addr, mover.http_addr, "voter") in (config_of(n) or []),
                 timeout=5)
    # Followers forward to it once it leads: transfer leadership there and write via another.
    r = ld.req("POST", "/raft/transfer-leader", {"node_id": mover.node_id}, timeout=30)
    assert r is not None and r.status == 200, r
    other = [n for n in c.running() if n is not mover][0]
    wait_for("a write forwarded to the moved leader", lambda: put_ok(other, "k", "v"))


def test_join_address_validation(make):
    c = make().start(3)
    ld = c.leader()
    before = config_of(ld)
    good = "127.0.0.1:%d" % free_port()
    for raft, http, what in (("0.0.0.0:%d" % free_port(), good, "wildcard raft address"),
                             (good, "0.0.0.0:8080", "wildcard http address"),
                             (good, "[::]:8080", "wildcard v6 http address")):
        body = problem(ld.req("POST", "/raft/join", {"node_id": "n9", "raft_addr": raft,
                                                    "http_addr": http}), 400, what)
        assert "wildcard" in body["detail"] or "0.0.0.0" in body["detail"], body
    assert config_of(ld) == before


if __name__ == "__main__":
    run([test_join_at_live_voters_address_refused, test_replacing_a_dead_member_is_reported,
         test_removed_node_stops_being_ready_within_an_election_timeout, test_membership_deadlines,
         test_leader_removal_without_quorum_keeps_leadership,
         test_failure_tolerance_is_the_same_everywhere,
         test_restarted_node_reports_its_real_applied_index, test_restart_with_new_raft_address,
         test_restart_with_new_http_address, test_join_address_validation])
