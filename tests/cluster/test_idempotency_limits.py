"""Nodes with different --idempotency-ttl / --idempotency-max never diverge (issue 21).

Before the fix every node expired and pruned idempotency records by its own flags: with a
leader on --idempotency-ttl 1 and followers on the default, a key reused after 2.5 s was
applied anew on the leader and replayed on the followers, all at the same applied index, and
the acknowledged write was gone after a leadership transfer. Now the leader stamps its limits
into every entry, so the flags of the applying node do not matter.

The test runs a cluster whose three nodes all have different limits, reuses keys across
expiry and past the record cap (so pruning runs), moves leadership to every node in turn
(POST /raft/transfer-leader) and restarts one node with yet other values while it has a log
tail to replay. After each phase every node's state digest (GET /raft/status?digest) must be
equal, and every acknowledged write must read back, linearizably, through every node."""
import urllib.parse

from harness import run, wait_for

KEY = "Idempotency-Key"


def put(node, key, value, idem=None):
    return node.req("PUT", "/v1/kv/" + urllib.parse.quote(key, safe=""), value,
                    {KEY: idem} if idem else None, timeout=10)


def read(node, key):
    r = node.req("GET", "/v1/kv/" + urllib.parse.quote(key, safe=""), timeout=10)
    if r is None:
        return None
    return r.body.decode() if r.status == 200 else (None if r.status == 404 else r)


def start_cluster(make):
    """coordinator-1 bootstraps with a 1 s TTL and a cap of 3, coordinator-2 keeps the
    defaults, coordinator-3 has 2 s and 50."""
    c = make()
    limits = {"coordinator-1": ["--idempotency-ttl", "1", "--idempotency-max", "3"],
              "coordinator-2": [],
              "coordinator-3": ["--idempotency-ttl", "2", "--idempotency-max", "50"]}
    first = c.node("coordinator-1").start(bootstrap=True, extra=limits["coordinator-1"])
    wait_for("first node to lead", lambda: c.leader_of([first]))
    for nid in ("coordinator-2", "coordinator-3"):
        c.node(nid).start(join=[first], extra=limits[nid])
        c.wait_voters(int(nid[-1]), nodes=[first])
    c.wait_voters(3)
    return c


class Acked:
    """The last acknowledged value of every key."""

    def __init__(self):
        self.values = {}

    def put(self, node, key, value, idem=None, expect=200):
        r = put(node, key, value, idem)
        assert r is not None and r.status == expect, (key, value, idem, r)
        if r.status == 200:
            self.values[key] = value
        return r

    def check(self, c):
        """Converged digests, then every acknowledged value, read linearizably through every
        node (followers forward the read to the leader)."""
        st = c.wait_converged()
        assert len({s["state_digest"] for s in st}) == 1, st
        for nd in c.running():
            for key, want in self.values.items():
                got = read(nd, key)
                assert got == want, "%s reads %s=%r, acknowledged %r" % (
                    nd.node_id, key, got, want)
        return st


def transfer_to(c, target):
    ld = c.leader()
    if ld is target:
        return
    r = ld.req("POST", "/raft/transfer-leader", {"node_id": target.node_id}, timeout=30)
    assert r is not None and r.status == 200, r
    wait_for("%s to lead" % target.node_id, lambda: c.leader_of() is target, 20)


def reuse_after_expiry(c, acked, key, idem, first, second):
    """A keyed write, then the same key for another request once the leader's TTL has let it
    go: until then the leader refuses it (409), then applies it (200)."""
    ld = c.leader()
    acked.put(ld, key, first, idem)

    def applied():
        r = put(ld, key, second, idem)
        assert r is not None and r.status in (200, 409), r
        return r.status == 200
    wait_for("%s to expire on %s" % (idem, ld.node_id), applied, 20, interval=0.1)
    acked.values[key] = second


def test_mixed_limits_never_diverge(make):
    c = start_cluster(make)
    n1, n2, n3 = (c.node("coordinator-%d" % i) for i in (1, 2, 3))
    acked = Acked()
    assert c.leader() is n1

    # The reproduction: reuse after the 1 s TTL of the leader, which the followers
    # (86400 s, 2 s) would not have let expire by their own flags.
    reuse_after_expiry(c, acked, "k", "K", "v1", "v2")
    acked.check(c)

    # Past the leader's cap of 3: pruning by count, on every node by the leader's cap, and a
    # pruned key can be reused at once.
    for i in range(8):
        acked.put(n1, "cap/%d" % i, "x%d" % i, "cap-%d" % i)
    acked.put(n1, "cap/0", "reused", "cap-0")
    acked.check(c)

    # Leadership to the default node: its 86400 s TTL now decides. A record made under the
    # 1 s TTL just before stays alive however long the transfer took: a different request
    # is refused everywhere, the same one replays.
    acked.put(n1, "fresh", "f1", "F")
    transfer_to(c, n2)
    acked.check(c)
    r = put(n2, "fresh", "other", "F")
    assert r is not None and r.status == 409, r
    r = put(n3, "fresh", "f1", "F")
    assert r is not None and r.status == 200, r
    assert r.header("X-Cloudless-Idempotent-Replay") == "true", r.headers
    for i in range(5):
        acked.put(n2, "leader2/%d" % i, "y%d" % i, "leader2-%d" % i)
    acked.check(c)

    # coordinator-3 restarted with other limits while it has entries to replay (it was down
    # for them): the replay uses the entries' limits, not its new flags.
    n3.stop()
    for i in range(6):
        acked.put(n2, "while-down/%d" % i, "z%d" % i, "down-%d" % i)
    acked.put(n2, "cap/1", "again", "cap-1")
    i = n3.args.index("--idempotency-ttl")
    n3.args[i + 1] = "1"
    j = n3.args.index("--idempotency-max")
    n3.args[j + 1] = "2"
    n3.restart()
    c.wait_voters(3)
    acked.check(c)

    # Leadership to coordinator-3 (now 1 s, cap 2): expiry and pruning by its limits.
    transfer_to(c, n3)
    reuse_after_expiry(c, acked, "k3", "K3", "w1", "w2")
    for i in range(4):
        acked.put(n3, "leader3/%d" % i, "u%d" % i, "leader3-%d" % i)
    acked.check(c)

    # And back to the first node: everything acknowledged survives every transfer.
    transfer_to(c, n1)
    acked.put(n1, "last", "write", "last-1")
    st = acked.check(c)
    print("  %d keys acknowledged; digest %s at index %s on all three" % (
        len(acked.values), st[0]["state_digest"], st[0]["applied_index"]))


if __name__ == "__main__":
    run([test_mixed_limits_never_diverge])
