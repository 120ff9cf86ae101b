"""Data API on a real cluster: forwarding, concurrency, exactly-once retries across a leader
crash, compare-and-set, linearizable reads on a paused leader, redirect / deadline / no-leader
answers, input validation and listing. Every test polls with wait_for; none sleeps in place of
a condition."""
import base64
import concurrent.futures
import http.client
import json
import signal
import socket
import threading
import time
import urllib.parse

from harness import run, scaled, wait_for

PROBLEM = "application/problem+json"


def q(key):
    """A key as one path segment (slashes and all percent-encoded)."""
    return urllib.parse.quote(key, safe="")


def ok(r):
    return r if r is not None and r.status == 200 else None


def stale(node, key):
    return node.req("GET", "/v1/kv/%s?consistency=stale" % q(key))


def stale_value(node, key):
    r = stale(node, key)
    return r.body if ok(r) else None


def meta(node, key, stale_read=True):
    """The ?json view of a key on one node, or None when missing."""
    r = node.req("GET", "/v1/kv/%s?json%s" % (q(key), "&consistency=stale" if stale_read else ""))
    return r.json() if ok(r) else None


def assert_problem(r, status, what=""):
    assert r is not None, "no response for %s" % what
    assert r.status == status, "%s: expected %d, got %r %r" % (what, status, r, r.headers)
    assert r.header("Content-Type") == PROBLEM, (what, r.headers)
    body = r.json()
    for field in ("type", "title", "status", "detail"):
        assert field in body, (what, body)
    assert body["status"] == status, (what, body)
    assert body["type"].startswith("https://"), (what, body)
    return body


def assert_common_headers(r, what=""):
    """Every response names the index, whether a leader is known, the leader and the node
    that served it."""
    assert r.header("X-Cloudless-Known-Leader") in ("true", "false"), (what, r.headers)
    assert r.header("X-Cloudless-Index") is not None and r.header("X-Cloudless-Index").isdigit(), \
        (what, r.headers)
    assert r.header("X-Cloudless-Served-By"), (what, r.headers)
    if r.header("X-Cloudless-Known-Leader") == "true":
        assert r.header("X-Cloudless-Leader"), (what, r.headers)


def list_all(node, prefix, limit, consistency=None):
    """Every item under prefix, page by page; checks each page's size and token."""
    items, token, pages = [], None, 0
    while True:
        path = "/v1/kv/?prefix=%s&limit=%d" % (q(prefix), limit)
        if token is not None:
            path += "&continue=" + q(token)
        if consistency:
            path += "&consistency=" + consistency
        r = node.req("GET", path, timeout=15)
        assert ok(r), (path, r)
        assert r.header("Content-Type") == "application/json", r.headers
        body = r.json()
        assert set(body) == {"items", "continue"}, body
        assert len(body["items"]) <= limit, (limit, len(body["items"]))
        items += body["items"]
        token = body["continue"]
        pages += 1
        assert pages < 100000
        if token is None:
            return items
        # A page that hands out a token is full: the next page starts after it.
        assert len(body["items"]) == limit, (limit, body)


def declared_length_put(node, path, length):
    """PUT declaring `length` body bytes but sending only the first KiB; returns the answer
    as (status, lower-case headers, body). For requests the server answers and then closes
    the connection on (413), so it reads until the connection closes."""
    host, port = node.http_addr.rsplit(":", 1)
    data = b""
    with socket.create_connection((host, int(port)), timeout=scaled(10)) as s:
        s.sendall(b"PUT %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n"
                  % (path.encode(), node.http_addr.encode(), length) + b"x" * 1024)
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:  # the unread body makes the close a reset
                break
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:])}
    return int(lines[0].split(" ")[1]), headers, body


def test_follower_write_served_by_leader(make):
    c = make().start(3)
    ld = c.leader()
    for f in c.followers():
        key = "forwarded/%s" % f.node_id
        r = f.put(key, "from " + f.node_id)
        assert ok(r), r
        assert r.header("X-Cloudless-Served-By") == ld.node_id, r.headers
        assert r.header("X-Cloudless-Leader") == ld.node_id, r.headers
        assert r.header("X-Cloudless-Known-Leader") == "true", r.headers
        body = r.json()
        assert body == {"key": key, "index": int(r.header("X-Cloudless-Index")), "created": True}, body
        for n in c.running():
            got = wait_for("%s on %s" % (key, n.node_id), lambda: ok(stale(n, key)))
            assert got.body == ("from " + f.node_id).encode(), got
            assert got.header("X-Cloudless-Served-By") == n.node_id, got.headers
            lin = n.get(key)
            assert ok(lin) and lin.body == got.body, lin
            assert lin.header("Content-Type") == "application/octet-stream", lin.headers
            assert lin.header("X-Cloudless-Served-By") == ld.node_id, lin.headers
            m = meta(n, key, stale_read=False)
            assert m == {"key": key, "value_b64": base64.b64encode(got.body).decode(),
                         "create_index": body["index"], "modify_index": body["index"],
                         "version": 1}, m
    # The default body limit is 512 KiB: exactly that much is accepted (and forwarded), one
    # byte more is 413 before anything is proposed.
    f = c.followers()[0]
    big = bytes(range(256)) * 2048
    assert len(big) == 512 * 1024
    r = f.req("PUT", "/v1/kv/big", big, timeout=30)
    assert ok(r) and r.header("X-Cloudless-Served-By") == ld.node_id, r
    # The 413 is decided from Content-Length before the body is read, and the connection is
    # closed: a client still streaming a large body may see that as a reset before it reads
    # the answer, so this one declares the length and sends only the start of the body.
    status, headers, body = declared_length_put(f, "/v1/kv/too-big", len(big) + 1)
    assert status == 413, (status, body)
    assert headers.get("content-type") == PROBLEM, headers
    assert json.loads(body)["status"] == 413, body
    for n in c.running():
        got = wait_for("big value on %s" % n.node_id, lambda: ok(stale(n, "big")))
        assert got.body == big
        assert n.get("too-big").status == 404
    c.wait_converged()


def test_concurrent_writes_on_every_node(make):
    c = make().start(3)
    c.leader()
    nodes = sorted(c.running(), key=lambda n: n.node_id)
    n_keys = 1000

    def write(i):
        return nodes[i % 3].put("conc/%04d" % i, "value-%d" % i)

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        results = list(pool.map(write, range(n_keys)))
    bad = [(i, r) for i, r in enumerate(results) if not ok(r)]
    assert not bad, "%d writes not acknowledged, e.g. %r" % (len(bad), bad[:5])
    indexes = [int(r.header("X-Cloudless-Index")) for r in results]
    assert len(set(indexes)) == n_keys, "two writes acknowledged with the same index"
    served = {r.header("X-Cloudless-Served-By") for r in results}
    assert served == {c.leader().node_id}, served

    c.wait_converged(timeout=60)
    expected = {"conc/%04d" % i: "value-%d" % i for i in range(n_keys)}
    for n in nodes:
        for consistency, limit in (("stale", 97), (None, 1000)):
            items = list_all(n, "conc/", limit, consistency)
            keys = [it["key"] for it in items]
            assert keys == sorted(expected), "%s: %d keys, %d distinct" % (
                n.node_id, len(keys), len(set(keys)))
            for it in items:
                assert base64.b64decode(it["value_b64"]).decode() == expected[it["key"]], it
                assert it["version"] == 1, it
        for i in range(0, n_keys, 50):
            r = stale(n, "conc/%04d" % i)
            assert ok(r) and r.body == expected["conc/%04d" % i].encode(), r


def test_leader_killed_mid_stream_exactly_once(make):
    c = make().start(3)
    old = c.leader()
    nodes = sorted(c.running(), key=lambda n: n.node_id)
    n_keys, n_threads = 300, 8
    run_id = "%x" % time.monotonic_ns()
    lock = threading.Lock()
    acked, retries, replays, unexpected = {}, [0], [0], []
    deadline = time.monotonic() + scaled(90)

    def write(i):
        key, value, idem = "once/%04d" % i, "value-%d" % i, "idem-%s-%d" % (run_id, i)
        attempt = 0
        while time.monotonic() < deadline:
            # The first attempt goes to node i % 3, every retry to the next node: the client
            # does not know which node died.
            node = nodes[(i + attempt) % 3]
            r = node.put(key, value, headers={"Idempotency-Key": idem}, query="?timeout=5s")
            if ok(r):
                with lock:
                    acked[i] = r
                    if r.header("X-Cloudless-Idempotent-Replay") == "true":
                        replays[0] += 1
                return
            if r is not None and r.status not in (503, 504):
                with lock:
                    unexpected.append((i, node.node_id, r))
                return
            with lock:
                retries[0] += 1
            attempt += 1
            time.sleep(0.02)  # back-off before the retry, not a wait for a condition
        with lock:
            unexpected.append((i, "deadline", None))

    with concurrent.futures.ThreadPoolExecutor(n_threads) as pool:
        futures = [pool.submit(write, i) for i in range(n_keys)]
        wait_for("a third of the writes acknowledged", lambda: len(acked) >= n_keys // 3, 60)
        old.kill(signal.SIGKILL)
        with lock:
            acked_at_kill = len(acked)
        for f in futures:
            f.result()
    assert not unexpected, unexpected[:5]
    assert len(acked) == n_keys, len(acked)
    assert acked_at_kill < n_keys, "the leader died after the stream ended"
    assert retries[0] > 0, "no write had to be retried: the kill did not hit the stream"
    print("  killed %s after %d acks; %d retries, %d replays" % (
        old.node_id, acked_at_kill, retries[0], replays[0]))

    survivors = [n for n in nodes if n is not old]
    new = wait_for("a new leader", lambda: c.leader_of(survivors), 20)
    assert new is not old
    old.restart()
    c.wait_voters(3)
    c.wait_converged(timeout=60)
    for n in nodes:
        items = list_all(n, "once/", 1000, "stale")
        assert [it["key"] for it in items] == ["once/%04d" % i for i in range(n_keys)], \
            (n.node_id, len(items))
        for it in items:
            i = int(it["key"].split("/")[1])
            assert base64.b64decode(it["value_b64"]) == b"value-%d" % i, it
            assert it["version"] == 1, "%s on %s applied more than once: %r" % (
                it["key"], n.node_id, it)
            assert it["create_index"] == it["modify_index"], it
    # The acknowledged index is the index the write was applied at, replay or not.
    for i, r in acked.items():
        m = meta(new, "once/%04d" % i, stale_read=False)
        assert m["modify_index"] == int(r.header("X-Cloudless-Index")), (i, m, r.headers)


def test_idempotency_key_replay_and_reuse(make):
    c = make().start(3)
    ld = c.leader()
    f = c.followers()[0]
    h = {"Idempotency-Key": "order-42"}
    first = f.put("idem/a", "one", headers=h)
    assert ok(first), first
    assert first.header("X-Cloudless-Idempotent-Replay") is None, first.headers
    for n in (f, ld):
        again = n.put("idem/a", "one", headers=h)
        assert ok(again), again
        assert again.header("X-Cloudless-Idempotent-Replay") == "true", again.headers
        assert again.json() == first.json(), (again.json(), first.json())
        assert again.header("X-Cloudless-Index") == first.header("X-Cloudless-Index")
    assert meta(ld, "idem/a", stale_read=False)["version"] == 1
    # The same key for a different request (other value, other key, other method) is refused.
    for n in (f, ld):
        assert_problem(n.put("idem/a", "two", headers=h), 409, "other value")
        assert_problem(n.put("idem/b", "one", headers=h), 409, "other key")
        assert_problem(n.req("DELETE", "/v1/kv/idem/a", headers=h), 409, "other method")
    m = meta(ld, "idem/a", stale_read=False)
    assert m["version"] == 1 and base64.b64decode(m["value_b64"]) == b"one", m
    assert ld.get("idem/b").status == 404


def test_cas(make):
    c = make().start(3)
    ld = c.leader()
    f = c.followers()[0]
    for n in (ld, f):
        key = "cas/%s" % n.node_id
        r = n.put(key, "v1", query="?cas=0")
        assert ok(r) and r.json()["created"] is True, r
        i1 = int(r.header("X-Cloudless-Index"))
        # Create-only on an existing key.
        body = assert_problem(n.put(key, "nope", query="?cas=0"), 409, "cas=0 on existing")
        assert body["current_index"] == i1, body
        r = n.put(key, "v2")
        assert ok(r), r
        i2 = int(r.header("X-Cloudless-Index"))
        assert i2 > i1
        # A stale index.
        r = n.put(key, "nope", query="?cas=%d" % i1)
        body = assert_problem(r, 409, "stale cas")
        assert body["current_index"] == i2, body
        assert int(r.header("X-Cloudless-Index")) == i2, r.headers
        assert n.get(key).body == b"v2"
        # The right index.
        r = n.put(key, "v3", query="?cas=%d" % i2)
        assert ok(r) and r.json()["created"] is False, r
        i3 = int(r.header("X-Cloudless-Index"))
        m = meta(n, key, stale_read=False)
        assert m["modify_index"] == i3 and m["create_index"] == i1 and m["version"] == 3, m
        # DELETE with cas: create-only and stale indexes fail, the current one deletes.
        body = assert_problem(n.req("DELETE", "/v1/kv/%s?cas=0" % q(key)), 409, "delete cas=0")
        assert body["current_index"] == i3, body
        body = assert_problem(n.req("DELETE", "/v1/kv/%s?cas=%d" % (q(key), i2)), 409,
                              "delete stale cas")
        assert body["current_index"] == i3, body
        assert n.get(key).body == b"v3"
        r = n.req("DELETE", "/v1/kv/%s?cas=%d" % (q(key), i3))
        assert ok(r) and r.json()["deleted"] is True, r
        assert n.get(key).status == 404
        # cas=N on a missing key fails with current_index 0; cas=0 creates it again.
        body = assert_problem(n.put(key, "x", query="?cas=%d" % i3), 409, "cas on missing")
        assert body["current_index"] == 0, body
        r = n.put(key, "v4", query="?cas=0")
        assert ok(r) and r.json()["created"] is True, r
        m = meta(n, key, stale_read=False)
        assert m["version"] == 1 and m["create_index"] > i3, m
    c.wait_converged()


def idle_connections(node, n):
    """n keep-alive connections the node has accepted and answered once, now idle."""
    host, port = node.http_addr.rsplit(":", 1)
    conns = []
    for _ in range(n):
        conn = http.client.HTTPConnection(host, int(port), timeout=scaled(15))
        conn.request("GET", "/raft/health?mode=live")
        r = conn.getresponse()
        r.read()
        assert r.status == 200 and not r.will_close, r.status
        conns.append(conn)
    return conns


def answer(conn):
    try:
        r = conn.getresponse()
        return r.status, r.read()
    except (OSError, http.client.HTTPException):
        return None, b""
    finally:
        conn.close()


def test_paused_leader_never_serves_stale_linearizable_read(make):
    # The paused leader has a long election timeout: resumed, it does not step down by
    # itself for seconds, so it still believes it leads when the reads below reach it and
    # only the read path (a barrier that needs a quorum in its term) keeps it from answering
    # the old value. Five rounds, leadership handed back to it in between.
    c = make()
    old = c.node("coordinator-1").start(bootstrap=True, extra=["--election-ms", "10000"])
    wait_for("the first node to lead", lambda: c.leader_of([old]))
    for i in (2, 3):
        c.node("coordinator-%d" % i).start(join=[old])
    c.wait_voters(3)
    assert c.leader() is old
    others = [n for n in c.running() if n is not old]
    key = "paused/k"
    assert ok(old.put(key, "v0"))
    for rnd in range(5):
        before, after = b"v%d" % rnd, b"v%d" % (rnd + 1)
        for n in c.running():
            wait_for("%s on %s" % (before, n.node_id), lambda: stale_value(n, key) == before)
        # Reads go over connections the old leader already holds, so on resume they are
        # read as soon as it polls, possibly before the new leader's raft messages.
        conns = idle_connections(old, 4)
        old.kill(signal.SIGSTOP)
        try:
            new = wait_for("a new leader among the others", lambda: c.leader_of(others), 20)
            r = new.put(key, after)
            assert ok(r), r
            # Sent only after `after` was acknowledged: a linearizable read must not return
            # `before` any more.
            for conn in conns:
                conn.request("GET", "/v1/kv/%s?timeout=3s" % q(key))
        finally:
            old.kill(signal.SIGCONT)
        answers = [answer(conn) for conn in conns]
        for _ in range(6):
            r = old.req("GET", "/v1/kv/%s?timeout=3s" % q(key), timeout=10)
            answers.append((r.status, r.body) if r is not None else (None, b""))
        for status, body in answers:
            assert status in (200, 503, 504), (rnd, answers)
            if status == 200:
                assert body == after, "round %d: a linearizable read returned %r after %r was " \
                    "acknowledged" % (rnd, body, after)
        # Stale reads answer locally, say how long ago the leader was heard from and catch
        # up.
        r = stale(old, key)
        assert ok(r) and r.body in (before, after), r
        assert r.header("X-Cloudless-Last-Contact") is not None, r.headers
        int(r.header("X-Cloudless-Last-Contact"))
        r = wait_for("%s by a stale read on the old leader" % after,
                     lambda: (lambda r: r if ok(r) and r.body == after else None)(stale(old, key)))
        lc = int(r.header("X-Cloudless-Last-Contact"))
        assert 0 <= lc < 60000, r.headers
        r = old.get(key)
        assert ok(r) and r.body == after, r
        # Hand leadership back to the slow-to-step-down node for the next round.
        r = new.req("POST", "/raft/transfer-leader", {"node_id": old.node_id}, timeout=30)
        assert ok(r), r
        wait_for("%s to lead again" % old.node_id, lambda: c.leader_of() is old)


def test_redirect_to_leader(make):
    c = make().start(3)
    ld = c.leader()
    assert ok(ld.put("redir/k", "v"))
    for f in c.followers():
        for method, path, body in (("GET", "/v1/kv/redir/k?redirect", None),
                                   ("GET", "/v1/kv/?prefix=redir%2F&redirect", None),
                                   ("PUT", "/v1/kv/redir/%s?redirect" % f.node_id, "x"),
                                   ("DELETE", "/v1/kv/redir/k?redirect", None)):
            r = f.req(method, path, body)
            assert r is not None and r.status == 307, (method, path, r)
            loc = urllib.parse.urlsplit(r.header("Location"))
            assert loc.netloc == ld.http_addr, (r.header("Location"), ld.http_addr)
            assert r.header("X-Cloudless-Leader") == ld.node_id, r.headers
            # The redirect did nothing by itself; following it does.
            follow = ld.req(method, loc.path + ("?" + loc.query if loc.query else ""), body)
            assert ok(follow), (method, follow)
            assert follow.header("X-Cloudless-Served-By") == ld.node_id
        assert ok(ld.get("redir/%s" % f.node_id))
        assert ok(ld.put("redir/k", "v"))
    # On the leader itself ?redirect is served directly.
    assert ok(ld.get("redir/k", "?redirect"))


def test_forward_deadline_gives_504(make):
    # Elections take 10 s here, so nobody replaces the paused leader during the test.
    c = make(election_ms=10000).start(3)
    ld = c.leader()
    f = c.followers()[0]
    assert ok(f.put("deadline/k", "v1"))
    wait_for("v1 applied on %s" % f.node_id, lambda: stale_value(f, "deadline/k") == b"v1")
    term = f.status()["term"]
    ld.kill(signal.SIGSTOP)
    try:
        for method, path, body in (("PUT", "/v1/kv/deadline/k?timeout=300ms", "v2"),
                                   ("GET", "/v1/kv/deadline/k?timeout=300ms", None),
                                   ("GET", "/v1/kv/?timeout=300ms", None),
                                   ("DELETE", "/v1/kv/deadline/k?timeout=300ms", None)):
            t0 = time.monotonic()
            r = f.req(method, path, body, timeout=10)
            took = time.monotonic() - t0
            assert_problem(r, 504, "%s %s" % (method, path))
            assert 0.25 <= took < scaled(3), "answered after %.2fs" % took
            assert r.header("X-Cloudless-Served-By") == f.node_id, r.headers
        # Stale reads still answer from the follower.
        assert ok(stale(f, "deadline/k"))
    finally:
        ld.kill(signal.SIGCONT)
    assert f.status()["term"] == term, "an election happened: the test did not test forwarding"
    assert c.leader() is ld
    r = f.put("deadline/after", "ok")
    assert ok(r) and r.header("X-Cloudless-Served-By") == ld.node_id, r


def test_no_leader_gives_503(make):
    c = make().start(3)
    ld = c.leader()
    survivor = c.followers()[0]
    assert ok(survivor.put("noleader/k", "v"))
    wait_for("write replicated", lambda: ok(stale(survivor, "noleader/k")))
    for n in list(c.running()):
        if n is not survivor:
            n.kill()
    for method, path, body, headers in (
            ("PUT", "/v1/kv/noleader/k", "v2", None),
            ("PUT", "/v1/kv/noleader/idem", "v2", {"Idempotency-Key": "noleader-1"}),
            ("PUT", "/v1/kv/noleader/k?cas=0", "v2", None),
            ("DELETE", "/v1/kv/noleader/k", None, None),
            ("GET", "/v1/kv/noleader/k", None, None),
            ("GET", "/v1/kv/?prefix=noleader", None, None),
            ("POST", "/raft/transfer-leader", "", None)):
        r = survivor.req(method, path, body, headers, timeout=15)
        assert_problem(r, 503, "%s %s" % (method, path))
        assert r.header("Retry-After") is not None and r.header("Retry-After").isdigit(), r.headers
    # Stale reads still answer locally.
    r = stale(survivor, "noleader/k")
    assert ok(r) and r.body == b"v", r
    assert r.header("X-Cloudless-Last-Contact") is not None
    assert c.leader_of([survivor]) is None and ld is not survivor


def test_no_leader_on_a_leader_without_quorum(make):
    c = make().start(3)
    ld = c.leader()
    for f in c.followers():
        f.kill()
    # The leader accepts the proposal, cannot commit it and steps down: the outcome is
    # unknown, which is 503 too (no Idempotency-Key, so it is not retried).
    r = ld.req("PUT", "/v1/kv/lonely/k", "v", timeout=15)
    assert_problem(r, 503, "write on a leader without quorum")
    assert r.header("Retry-After") is not None, r.headers
    r = ld.req("PUT", "/v1/kv/lonely/k2", "v", {"Idempotency-Key": "lonely-1"}, timeout=15)
    assert_problem(r, 503, "idempotent write on a leader without quorum")


def bad_input_table(long_key):
    """(method, path, body, headers, status, problem type suffix)."""
    return [
        ("PUT", "/v1/kv/" + long_key, "v", None, 400, "bad-key"),
        ("GET", "/v1/kv/" + long_key, None, None, 400, "bad-key"),
        ("DELETE", "/v1/kv/" + long_key, None, None, 400, "bad-key"),
        ("PUT", "/v1/kv/%FF", "v", None, 400, "bad-key"),
        ("PUT", "/v1/kv/bad%C3", "v", None, 400, "bad-key"),
        ("PUT", "/v1/kv/bad%ED%A0%80surrogate", "v", None, 400, "bad-key"),
        ("PUT", "/v1/kv/bad%C0%AFoverlong", "v", None, 400, "bad-key"),
        ("GET", "/v1/kv/%FF", None, None, 400, "bad-key"),
        # A NUL would cut the key short ("x" would be written): it is refused instead.
        ("PUT", "/v1/kv/x%00y", "v", None, 400, "bad-key"),
        ("DELETE", "/v1/kv/x%00", None, None, 400, "bad-key"),
        ("PUT", "/v1/kv/x?cas=abc", "v", None, 400, "bad-parameter"),
        ("PUT", "/v1/kv/x?cas=-1", "v", None, 400, "bad-parameter"),
        ("PUT", "/v1/kv/x?cas=", "v", None, 400, "bad-parameter"),
        ("PUT", "/v1/kv/x?cas=1.5", "v", None, 400, "bad-parameter"),
        ("PUT", "/v1/kv/x?cas=99999999999999999999999", "v", None, 400, "bad-parameter"),
        ("DELETE", "/v1/kv/x?cas=abc", None, None, 400, "bad-parameter"),
        ("PUT", "/v1/kv/x?timeout=soon", "v", None, 400, "bad-parameter"),
        ("PUT", "/v1/kv/x?timeout=0", "v", None, 400, "bad-parameter"),
        ("PUT", "/v1/kv/x?timeout=-1s", "v", None, 400, "bad-parameter"),
        ("PUT", "/v1/kv/x?timeout=2h", "v", None, 400, "bad-parameter"),
        ("GET", "/v1/kv/x?timeout=5y", None, None, 400, "bad-parameter"),
        ("DELETE", "/v1/kv/x?timeout=", None, None, 400, "bad-parameter"),
        ("PUT", "/v1/kv/x", "v" * 3000, None, 413, "too-large"),
        ("PUT", "/v1/kv/x?cas=0", "v" * 1025, None, 413, "too-large"),
        ("GET", "/v1/kv/?limit=0", None, None, 400, "bad-parameter"),
        ("GET", "/v1/kv/?limit=1001", None, None, 400, "bad-parameter"),
        ("GET", "/v1/kv/?limit=abc", None, None, 400, "bad-parameter"),
        ("GET", "/v1/kv/?limit=-5", None, None, 400, "bad-parameter"),
        ("GET", "/v1/kv/?continue=%21%21%21", None, None, 400, "bad-parameter"),
        ("GET", "/v1/kv/?continue=", None, None, 400, "bad-parameter"),
        ("GET", "/v1/kv/?prefix=%FF", None, None, 400, "bad-parameter"),
        ("GET", "/v1/kv/?prefix=x%00", None, None, 400, "bad-parameter"),
        ("GET", "/v1/kv/?consistency=stale&limit=0", None, None, 400, "bad-parameter"),
        ("GET", "/v1/kv/x?consistency=eventual", None, None, 400, "bad-parameter"),
        ("GET", "/v1/kv/?consistency=sometimes", None, None, 400, "bad-parameter"),
        ("POST", "/v1/kv/x", "v", None, 405, "method-not-allowed"),
        ("PATCH", "/v1/kv/x", "v", None, 405, "method-not-allowed"),
        ("PUT", "/v1/kv/", "v", None, 405, "method-not-allowed"),
        ("DELETE", "/v1/kv", None, None, 405, "method-not-allowed"),
        ("GET", "/raft/join", None, None, 405, "method-not-allowed"),
        ("DELETE", "/raft/status", None, None, 405, "method-not-allowed"),
        ("PUT", "/metrics", "x", None, 405, "method-not-allowed"),
        ("GET", "/nope", None, None, 404, "not-found"),
        ("PUT", "/v2/kv/x", "v", None, 404, "not-found"),
        ("GET", "/raft/statusx", None, None, 404, "not-found"),
        ("PUT", "/v1/kv/x", "v", {"Idempotency-Key": "k" * 257}, 400, "bad-header"),
        ("PUT", "/v1/kv/x", "v", {"Idempotency-Key": "has space"}, 400, "bad-header"),
        ("DELETE", "/v1/kv/x", None, {"Idempotency-Key": "k" * 300}, 400, "bad-header"),
        ("POST", "/raft/join", "{", None, 400, "bad-request"),
        ("POST", "/raft/join", {"node_id": "n9", "raft_addr": "nowhere", "http_addr": "h:1"},
         None, 400, "bad-request"),
        ("POST", "/raft/remove", {}, None, 400, "bad-request"),
        ("POST", "/raft/remove", {"node_id": "bad id!"}, None, 400, "bad-request"),
        ("POST", "/raft/transfer-leader", {"node": "x"}, None, 400, "bad-request"),
        ("GET", "/raft/health?mode=dead", None, None, 400, "bad-parameter"),
    ]


def test_bad_input_is_rejected_without_changes(make):
    c = make(extra_args=["--max-body", "1k"]).start(3)
    ld = c.leader()
    assert ok(ld.put("x", "original"))
    before = c.wait_converged()
    digest = {s["state_digest"] for s in before}
    long_key = "k" * 1025
    for target in (ld, c.followers()[0]):
        for method, path, body, headers, status, slug in bad_input_table(long_key):
            what = "%s %s %s on %s" % (method, path[:60], headers or "", target.node_id)
            r = target.req(method, path, body, headers)
            problem = assert_problem(r, status, what)
            assert problem["type"].endswith("/" + slug), (what, problem)
            assert r.header("X-Cloudless-Served-By") == target.node_id, (what, r.headers)
            assert_common_headers(r, what)
            if status == 405:
                allow = {m.strip() for m in r.header("Allow").split(",")}
                assert method not in allow and allow, (what, r.header("Allow"))
    after = c.wait_converged()
    assert {s["state_digest"] for s in after} == digest, "a rejected request changed the state"
    for n in c.running():
        assert stale(n, "x").body == b"original"
        assert stale(n, "y").status == 404
    # The limits themselves are accepted: a 1024-byte key, a body of exactly --max-body, a
    # 256-character Idempotency-Key, a one-hour timeout.
    r = ld.put("k" * 1024, "v" * 1024)
    assert ok(r), r
    r = ld.put("ключ-é-日本", "v")
    assert ok(r) and r.json()["key"] == "ключ-é-日本", r
    assert ok(ld.put("x", "v", headers={"Idempotency-Key": "k" * 256}))
    assert ok(ld.get("x", "?timeout=60m"))
    assert ok(ld.get("x", "?timeout=500ms&consistency=linearizable"))


def test_listing_prefix_order_pagination(make):
    c = make().start(3)
    ld = c.leader()
    f = c.followers()[0]
    inside = ["list/a", "list/b", "list/b/c", "list/b0", "list/ab", "list/A", "list/é", "list/z",
              "list/日本", "list/ ", "list/%2F", "list/~"] + ["list/n%03d" % i for i in range(40)]
    outside = ["lis", "list", "lisu", "lisz", "List/a", "a", "zzz"]
    for k in inside + outside:
        assert ok(ld.put(k, "v:" + k)), k
    expected = sorted(inside, key=lambda k: k.encode())
    for n in (ld, f):
        for consistency in (None, "stale"):
            if consistency:
                c.wait_converged()
            for limit in (1, 2, 3, 7, 26, 52, 100, 1000):
                items = list_all(n, "list/", limit, consistency)
                keys = [it["key"] for it in items]
                assert keys == expected, (n.node_id, limit, keys)
                for it in items:
                    assert base64.b64decode(it["value_b64"]).decode() == "v:" + it["key"], it
                    assert set(it) == {"key", "value_b64", "create_index", "modify_index",
                                       "version"}, it
            # A limit that divides the count exactly ends without an empty trailing page.
            r = n.req("GET", "/v1/kv/?prefix=list%2F&limit=52" +
                      ("&consistency=stale" if consistency else ""))
            assert ok(r) and len(r.json()["items"]) == 52 and r.json()["continue"] is None, r
    # Narrower prefixes, an empty result and the whole store.
    r = f.req("GET", "/v1/kv/?prefix=list%2Fb")
    assert [it["key"] for it in r.json()["items"]] == ["list/b", "list/b/c", "list/b0"], r
    r = f.req("GET", "/v1/kv/?prefix=nothing-here")
    assert ok(r) and r.json() == {"items": [], "continue": None}, r
    every = list_all(f, "", 5)
    assert [it["key"] for it in every] == sorted(inside + outside, key=lambda k: k.encode())
    # Default page size is 100.
    for i in range(60):
        assert ok(ld.put("many/%03d" % i, "v"))
    r = f.req("GET", "/v1/kv/")
    assert ok(r) and len(r.json()["items"]) == 100 and r.json()["continue"], r
    # Writes between pages: a key deleted behind the cursor is not repeated, one added ahead
    # of it appears exactly once.
    r = f.req("GET", "/v1/kv/?prefix=list%2F&limit=10")
    first = r.json()
    assert ok(ld.req("DELETE", "/v1/kv/" + q(first["items"][0]["key"])))
    assert ok(ld.put("list/zz-late", "v:list/zz-late"))
    rest = []
    token = first["continue"]
    while token:
        r = f.req("GET", "/v1/kv/?prefix=list%2F&limit=10&continue=" + q(token))
        rest += r.json()["items"]
        token = r.json()["continue"]
    keys = [it["key"] for it in first["items"]] + [it["key"] for it in rest]
    assert len(keys) == len(set(keys)) and "list/zz-late" in keys, keys


if __name__ == "__main__":
    run([test_follower_write_served_by_leader, test_concurrent_writes_on_every_node,
         test_leader_killed_mid_stream_exactly_once, test_idempotency_key_replay_and_reuse,
         test_cas, test_paused_leader_never_serves_stale_linearizable_read,
         test_redirect_to_leader, test_forward_deadline_gives_504, test_no_leader_gives_503,
         test_no_leader_on_a_leader_without_quorum, test_bad_input_is_rejected_without_changes,
         test_listing_prefix_order_pagination])
