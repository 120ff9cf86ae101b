"""Batching: a follower sends its clients' writes to the leader many at a time (POST
/raft/forward, src/api/batch.c), and the leader proposes the commands of one loop iteration to
raft as one multi-entry append (group commit, src/raft/propose.c). Each client must still get
exactly the answer the write alone would have got - successes, CAS conflicts, idempotent
replays, 404s - and the leader's endpoint must refuse malformed batches with a 4xx without
changing any state."""
import concurrent.futures
import re
import struct

from harness import run, wait_for

PROBLEM = "application/problem+json"
BATCH_TYPE = "application/vnd.cloudless.batch"


def ok(r):
    return r if r is not None and r.status == 200 else None


def counter(node, name):
    m = re.search(r"^%s (\S+)$" % re.escape(name), node.metrics(), re.M)
    return float(m.group(1)) if m else 0.0


def s(b):
    b = b.encode() if isinstance(b, str) else b
    return struct.pack(">I", len(b)) + b


def item(method, path, query="", headers=(), body=b""):
    out = s(method) + s(path) + s(query) + struct.pack(">I", len(headers))
    for name, value in headers:
        out += s(name) + s(value)
    return out + s(body)


def batch(*items, version=1):
    return struct.pack(">BI", version, len(items)) + b"".join(items)


def parse_responses(body):
    """[(status, content_type, {header: value}, body)] of a batch response."""
    version, n = struct.unpack_from(">BI", body, 0)
    assert version == 1
    off, out = 5, []

    def get():
        nonlocal off
        (ln,) = struct.unpack_from(">I", body, off)
        v = body[off + 4:off + 4 + ln]
        off += 4 + ln
        return v
    for _ in range(n):
        (status,) = struct.unpack_from(">I", body, off)
        off += 4
        ctype = get().decode()
        (nh,) = struct.unpack_from(">I", body, off)
        off += 4
        headers = {}
        for _ in range(nh):
            k = get().decode()
            headers[k.lower()] = get().decode()
        out.append((status, ctype, headers, get()))
    assert off == len(body), "trailing bytes in a batch response"
    return out


def mixed_writes(entry, leader, n):
    """n concurrent writes through `entry` of every kind a batch may mix: fresh puts, CAS
    misses, idempotent replays, reused idempotency keys, deletes of missing keys. Checks that
    each got its own answer and returns how many puts there were."""
    assert ok(entry.put("cas/k", "v0"))
    cas_index = int(leader.get("cas/k", "?json").json()["modify_index"])
    assert ok(entry.put("idem/k", "first", headers={"Idempotency-Key": "idem-1"}))

    def write(i):
        kind = i % 6
        if kind == 0:  # a CAS that can never match
            return "cas", entry.put("cas/k", "x%d" % i, query="?cas=%d" % (cas_index + 10**6))
        if kind == 1:  # a replay of the first write with the same key
            return "replay", entry.put("idem/k", "first", headers={"Idempotency-Key": "idem-1"})
        if kind == 2:  # the same key for a different request
            return "reuse", entry.put("idem/k", "other", headers={"Idempotency-Key": "idem-1"})
        if kind == 3:
            return "missing", entry.req("DELETE", "/v1/kv/missing/%d" % i)
        return "put", entry.put("b/%04d" % i, "value-%d" % i)

    with concurrent.futures.ThreadPoolExecutor(64) as pool:
        results = list(pool.map(write, range(n)))
    for i, (kind, r) in enumerate(results):
        assert r is not None, (i, kind)
        assert r.header("X-Cloudless-Served-By") == leader.node_id, (i, kind, r.headers)
        if kind == "put":
            assert ok(r), (i, r)
            assert r.json() == {"key": "b/%04d" % i, "index": int(r.header("X-Cloudless-Index")),
                                "created": True}, r.json()
        elif kind == "replay":
            assert ok(r) and r.header("X-Cloudless-Idempotent-Replay") == "true", (i, r.headers)
        else:
            status, slug = {"cas": (409, "cas-mismatch"), "reuse": (409, "idempotency-key-reused"),
                            "missing": (404, "not-found")}[kind]
            assert r.status == status and r.header("Content-Type") == PROBLEM, (i, kind, r)
            assert r.json()["type"].endswith("/" + slug), r.json()
            if kind == "cas":
                assert r.json()["current_index"] == cas_index, r.json()
    puts = [r for kind, r in results if kind == "put"]
    assert len({r.header("X-Cloudless-Index") for r in puts}) == len(puts)
    return len(puts)


def assert_everywhere(c, n_puts):
    c.wait_converged(timeout=60)
    for node in c.running():
        r = node.req("GET", "/v1/kv/?prefix=b/&limit=1000&consistency=stale")
        assert ok(r) and len(r.json()["items"]) == n_puts, node
        for item in r.json()["items"]:
            i = int(item["key"][2:])
            assert node.req("GET", "/v1/kv/b/%04d?consistency=stale" % i).body == \
                ("value-%d" % i).encode()
        assert node.req("GET", "/v1/kv/cas/k?consistency=stale").body == b"v0"
        assert node.req("GET", "/v1/kv/idem/k?consistency=stale").body == b"first"


def test_follower_writes_are_batched_with_their_own_answers(make):
    c = make().start(3)
    ld = c.leader()
    f = c.followers()[0]
    batches0 = counter(f, "cloudless_forward_batches_total")
    items0 = counter(f, "cloudless_forward_batch_items_total")
    n = 600
    n_puts = mixed_writes(f, ld, n)
    # Every write (the two set-up writes too) went through a batch, and batches carried more
    # than one write.
    batches = counter(f, "cloudless_forward_batches_total") - batches0
    items = counter(f, "cloudless_forward_batch_items_total") - items0
    assert items == n + 2, (items, n)
    assert 0 < batches < items, (batches, items)
    assert_everywhere(c, n_puts)


def test_leader_group_commit_keeps_each_answer(make):
    """Concurrent writes to the leader share raft entries' appends (several commands per
    raft_apply), yet each client gets its own entry's result and index."""
    c = make().start(3)
    ld = c.leader()
    proposals0 = counter(ld, "cloudless_raft_proposals_total")
    batches0 = counter(ld, "cloudless_raft_proposal_batches_total")
    n = 600
    n_puts = mixed_writes(ld, ld, n)
    proposals = counter(ld, "cloudless_raft_proposals_total") - proposals0
    batches = counter(ld, "cloudless_raft_proposal_batches_total") - batches0
    # Every write is one command (the two set-up writes too); replays and CAS misses are
    # commands as well (the fsm decides them, so every replica answers alike).
    assert proposals >= n, (proposals, n)
    assert 0 < batches < proposals, (batches, proposals)
    assert_everywhere(c, n_puts)


def test_forward_endpoint_runs_items_like_requests(make):
    c = make().start(3)
    ld = c.leader()
    f = c.followers()[0]
    body = batch(item("PUT", "/v1/kv/direct/a", headers=[("Content-Type", "text/plain")],
                      body=b"A"),
                 item("PUT", "/v1/kv/direct/b", "cas=0", body=b"\x00B"),
                 item("PUT", "/v1/kv/direct/a", "cas=0", body=b"again"),
                 item("DELETE", "/v1/kv/direct/none"),
                 item("PUT", b"/v1/kv/\xff", body=b"x"))  # paths travel decoded
    r = ld.req("POST", "/raft/forward", body, {"Content-Type": BATCH_TYPE})
    assert ok(r) and r.header("Content-Type") == BATCH_TYPE, r
    got = parse_responses(r.body)
    assert [g[0] for g in got] == [200, 200, 409, 404, 400], got
    assert got[0][1] == "application/json" and got[0][2]["x-cloudless-served-by"] == ld.node_id
    assert got[4][1] == PROBLEM, got[4]
    for node in c.running():
        wait_for("direct/b on %s" % node.node_id,
                 lambda: ok(node.req("GET", "/v1/kv/direct/b?consistency=stale")))
        assert node.req("GET", "/v1/kv/direct/a?consistency=stale").body == b"A"
        assert node.req("GET", "/v1/kv/direct/b?consistency=stale").body == b"\x00B"
    # A node that does not lead proposes nothing: forwarded items bounce as not-leader (the
    # sender may retry them), and the state does not change.
    before = {s["state_digest"] for s in c.wait_converged()}
    fwd = [("X-Cloudless-Forwarded-By", "test")]
    r = f.req("POST", "/raft/forward", batch(item("PUT", "/v1/kv/direct/c", headers=fwd,
                                                  body=b"C")), {"Content-Type": BATCH_TYPE})
    assert ok(r), r
    (status, ctype, headers, _), = parse_responses(r.body)
    assert status == 503 and ctype == PROBLEM, (status, ctype)
    assert {s["state_digest"] for s in c.wait_converged()} == before
    assert ld.get("direct/c").status == 404


def test_forward_endpoint_rejects_bad_batches(make):
    c = make().start(3)
    ld = c.leader()
    assert ok(ld.put("x", "original"))
    before = {s["state_digest"] for s in c.wait_converged()}
    good = item("PUT", "/v1/kv/x", body=b"changed")
    table = [
        # (method, body, content type, status, problem type suffix)
        ("POST", batch(good), "application/json", 415, "unsupported-media-type"),
        ("POST", batch(good), None, 415, "unsupported-media-type"),
        ("POST", b"", BATCH_TYPE, 400, "bad-batch"),
        ("POST", b"garbage", BATCH_TYPE, 400, "bad-batch"),
        ("POST", batch(good, version=2), BATCH_TYPE, 400, "bad-batch"),
        ("POST", batch(), BATCH_TYPE, 400, "bad-batch"),
        ("POST", struct.pack(">BI", 1, 2) + good, BATCH_TYPE, 400, "bad-batch"),
        ("POST", batch(good) + b"\x00", BATCH_TYPE, 400, "bad-batch"),
        ("POST", batch(good)[:-3], BATCH_TYPE, 400, "bad-batch"),
        ("POST", struct.pack(">BI", 1, 5000), BATCH_TYPE, 400, "bad-batch"),
        ("POST", batch(good, item("GET", "/v1/kv/x")), BATCH_TYPE, 400, "bad-batch"),
        ("POST", batch(item("POST", "/raft/join", body=b"{}")), BATCH_TYPE, 400, "bad-batch"),
        ("POST", batch(item("PUT", "/v1/kv/")), BATCH_TYPE, 400, "bad-batch"),
        ("POST", batch(item("PUT", "/v1/kv/x\x00y")), BATCH_TYPE, 400, "bad-batch"),
        ("POST", batch(item("PUT", "/v1/kv/x", headers=[("", "v")])), BATCH_TYPE, 400,
         "bad-batch"),
        ("POST", batch(item("PUT", "/v1/kv/x", headers=[("A", "v")] * 33)), BATCH_TYPE, 400,
         "bad-batch"),
        ("GET", None, None, 405, "method-not-allowed"),
        ("PUT", batch(good), BATCH_TYPE, 405, "method-not-allowed"),
    ]
    for target in (ld, c.followers()[0]):
        for method, body, ctype, status, slug in table:
            what = "%s %r on %s" % (method, body[:24] if body else body, target.node_id)
            r = target.req(method, "/raft/forward", body, {"Content-Type": ctype} if ctype else {})
            assert r is not None and r.status == status, (what, r)
            assert r.header("Content-Type") == PROBLEM, (what, r.headers)
            assert r.json()["type"].endswith("/" + slug), (what, r.json())
    assert {s["state_digest"] for s in c.wait_converged()} == before
    for node in c.running():
        assert node.req("GET", "/v1/kv/x?consistency=stale").body == b"original"


if __name__ == "__main__":
    run([test_follower_writes_are_batched_with_their_own_answers, test_leader_group_commit_keeps_each_answer,
         test_forward_endpoint_runs_items_like_requests,
         test_forward_endpoint_rejects_bad_batches])
