"""HTTP strictness at the edges (issue 19): raw requests, byte for byte, to a leader and a follower.

Every malformed, ambiguous or oversized request gets exactly one well-formed HTTP/1.1 response
(parsed strictly by harness.parse_responses: one status line, one Content-Length, nothing after
the body) with application/problem+json, the documented status and the X-Cloudless-* headers;
a request whose framing cannot be trusted is followed by a close, and a write pipelined behind
it is never executed. The replicated state (digest) is the same before and after the table.
A socket client, not curl or http.client, so the bytes are exactly these.
"""
import base64
import json
import urllib.parse

import harness
from harness import parse_responses, raw_exchange, wait_for

SMUG = b"PUT /v1/kv/smug HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nX"


def req(line, *headers, body=b""):
    h = b"".join(x.encode() + b"\r\n" for x in headers)
    return line.encode() + b"\r\n" + h + b"\r\n" + body


# (name, raw bytes, status, slug or None, connection must close)
FRAMING = [
    ("two Content-Lengths", req("PUT /v1/kv/t1 HTTP/1.1", "Host: x", "Content-Length: 3",
                                "Content-Length: 5", body=b"abcde") + SMUG, 400, "bad-request"),
    ("space before the colon", req("PUT /v1/kv/t2 HTTP/1.1", "Host: x", "Content-Length : 5",
                                   body=b"abcde") + SMUG, 400, "bad-request"),
    ("Content-Length and chunked", req("PUT /v1/kv/t3 HTTP/1.1", "Host: x", "Content-Length: 4",
                                       "Transfer-Encoding: chunked",
                                       body=b"5\r\nabcde\r\n0\r\n\r\n") + SMUG, 400, "bad-request"),
    ("NUL in a header value", req("PUT /v1/kv/t4 HTTP/1.1", "Host: x", "X-A: a\x00b",
                                  "Content-Length: 1", body=b"v") + SMUG, 400, "bad-request"),
    ("HTTP/1.1 without Host", req("PUT /v1/kv/t5 HTTP/1.1", "Content-Length: 1", body=b"v") + SMUG,
     400, "bad-request"),
    ("two Hosts", req("GET /v1/kv/t6 HTTP/1.1", "Host: x", "Host: y") + SMUG, 400, "bad-request"),
    ("Content-Length 10^23", req("PUT /v1/kv/t7 HTTP/1.1", "Host: x",
                                 "Content-Length: 99999999999999999999999") + SMUG, 413, "too-large"),
    ("Content-Length 2^64", req("PUT /v1/kv/t8 HTTP/1.1", "Host: x",
                                "Content-Length: 18446744073709551616") + SMUG, 413, "too-large"),
    ("Content-Length -1", req("PUT /v1/kv/t9 HTTP/1.1", "Host: x", "Content-Length: -1") + SMUG,
     400, "bad-request"),
    ("Content-Length abc", req("PUT /v1/kv/t10 HTTP/1.1", "Host: x", "Content-Length: abc") + SMUG,
     400, "bad-request"),
    ("Content-Length 1, 1", req("PUT /v1/kv/t11 HTTP/1.1", "Host: x", "Content-Length: 1, 1",
                                body=b"v") + SMUG, 400, "bad-request"),
    ("Content-Length over --max-body", req("PUT /v1/kv/t12 HTTP/1.1", "Host: x",
                                           "Content-Length: 600000") + SMUG, 413, "too-large"),
    ("chunked over --max-body", req("PUT /v1/kv/t13 HTTP/1.1", "Host: x",
                                    "Transfer-Encoding: chunked", "Expect: 100-continue",
                                    body=b"80000\r\n" + b"z" * 0x80000 + b"\r\n1\r\nz\r\n0\r\n\r\n")
     + SMUG, 413, "too-large"),
    ("malformed chunk size", req("PUT /v1/kv/t14 HTTP/1.1", "Host: x", "Transfer-Encoding: chunked",
                                 body=b"zz\r\nabc\r\n0\r\n\r\n") + SMUG, 400, "bad-request"),
    ("chunk longer than its size", req("PUT /v1/kv/t15 HTTP/1.1", "Host: x",
                                       "Transfer-Encoding: chunked",
                                       body=b"2\r\nabcd\r\n0\r\n\r\n") + SMUG, 400, "bad-request"),
    ("Transfer-Encoding gzip, chunked", req("PUT /v1/kv/t16 HTTP/1.1", "Host: x",
                                            "Transfer-Encoding: gzip, chunked",
                                            body=b"1\r\nv\r\n0\r\n\r\n") + SMUG, 501, "not-implemented"),
    ("Transfer-Encoding identity", req("PUT /v1/kv/t17 HTTP/1.1", "Host: x",
                                       "Transfer-Encoding: identity", body=b"v") + SMUG,
     501, "not-implemented"),
    ("Transfer-Encoding in HTTP/1.0", req("PUT /v1/kv/t18 HTTP/1.0", "Transfer-Encoding: chunked",
                                          body=b"1\r\nv\r\n0\r\n\r\n") + SMUG, 400, "bad-request"),
    ("Expect: foo", req("PUT /v1/kv/t19 HTTP/1.1", "Host: x", "Expect: foo", "Content-Length: 1",
                        body=b"v") + SMUG, 417, "expectation-failed"),
    ("obsolete line folding", req("PUT /v1/kv/t20 HTTP/1.1", "Host: x", "X-A: a", " b",
                                  "Content-Length: 1", body=b"v") + SMUG, 400, "bad-request"),
    ("header line without a colon", req("PUT /v1/kv/t21 HTTP/1.1", "Host: x", "Garbage",
                                        "Content-Length: 1", body=b"v") + SMUG, 400, "bad-request"),
    ("bare LF", b"PUT /v1/kv/t22 HTTP/1.1\nHost: x\nContent-Length: 1\n\nv" + SMUG, 400, "bad-request"),
    ("bare CR", b"PUT /v1/kv/t23 HTTP/1.1\r\nHost: x\rX: y\r\nContent-Length: 1\r\n\r\nv" + SMUG,
     400, "bad-request"),
    ("HTTP/2.0", req("GET /v1/kv/t24 HTTP/2.0", "Host: x") + SMUG, 505, "http-version"),
    ("HTTP/1.1x", req("GET /v1/kv/t25 HTTP/1.1x", "Host: x") + SMUG, 400, "bad-request"),
    ("no version", b"GET /v1/kv/t26\r\n\r\n" + SMUG, 400, "bad-request"),
    ("space in the target", req("GET /v1/kv/a b HTTP/1.1", "Host: x") + SMUG, 400, "bad-request"),
    ("target of 9000 bytes", req("GET /v1/kv/" + "a" * 9000 + " HTTP/1.1", "Host: x") + SMUG,
     414, "uri-too-long"),
    ("header block of 40 KB", req("GET /v1/kv/t27 HTTP/1.1", "Host: x", "X-Big: " + "b" * 40000)
     + SMUG, 431, "header-too-large"),
    ("200 header fields", req("GET /v1/kv/t28 HTTP/1.1", "Host: x",
                              *["X-H%d: v" % i for i in range(200)]) + SMUG, 431, "header-too-large"),
    ("authority-form target", req("CONNECT example.com:443 HTTP/1.1", "Host: x") + SMUG,
     400, "bad-request"),
]


def check_one(node, name, data, status, slug, must_close=True, head=False):
    got, closed = raw_exchange(node.http_addr, data, timeout=3.0)
    try:
        rs = parse_responses(got, head=head)
    except ValueError as e:
        raise AssertionError("%s on %s: not well-formed HTTP: %s (%r)" % (name, node, e, got[:300]))
    finals = [r for r in rs if r.status >= 200]
    assert len(finals) == 1, "%s on %s: %d responses: %r" % (name, node, len(finals), rs)
    r = finals[0]
    assert r.status == status, "%s on %s: status %d, want %d: %r" % (name, node, r.status, status, r)
    assert r.header("Content-Type") == "application/problem+json", (name, r)
    for h in ("X-Cloudless-Served-By", "X-Cloudless-Known-Leader", "X-Cloudless-Index"):
        assert r.count(h) == 1, "%s on %s: %s missing: %r" % (name, node, h, r)
    assert r.header("X-Cloudless-Served-By") == node.node_id, (name, r)
    if not head:
        doc = r.json()
        assert doc["status"] == status and doc["type"].endswith("/" + slug), (name, doc)
    if must_close:
        assert closed, "%s on %s: connection left open" % (name, node)
        assert r.header("Connection") == "close", (name, r)
    return r


def digests(cluster):
    st = cluster.wait_converged()
    return {(s["state_digest"], s["fsm_index"]) for s in st}


def test_malformed_framing_table(make):
    c = make().start(3)
    leader = c.leader()
    follower = [n for n in c.running() if n is not leader][0]
    assert leader.put("ctl", "1").status == 200
    before = digests(c)
    for node in (leader, follower):
        for name, data, status, slug in FRAMING:
            check_one(node, name, data, status, slug)
    # Nothing was written: not the refused requests, not the write pipelined behind them.
    for node in (leader, follower):
        assert node.get("smug", "?consistency=stale").status == 404
    for i in range(1, 29):
        assert leader.get("t%d" % i).status == 404
    assert digests(c) == before


def token_for(prefix, key):
    raw = bytes([1, len(prefix) >> 8, len(prefix) & 255]) + prefix.encode() + key.encode()
    return base64.b64encode(raw).decode()


def test_parameters_and_tokens(make):
    c = make().start(3)
    leader = c.leader()
    follower = [n for n in c.running() if n is not leader][0]
    for i in range(1, 6):
        assert leader.put("p/%d" % i, "v").status == 200
    assert leader.put("q/1", "v").status == 200
    assert leader.put("q/2", "v").status == 200
    r = leader.req("GET", "/v1/kv/?prefix=q/&limit=1")
    qtok = r.json()["continue"]
    assert qtok
    before = digests(c)
    host = "Host: x\r\nConnection: close"
    cases = [
        ("cas twice (1, 67)", req("PUT /v1/kv/p/1?cas=1&cas=67 HTTP/1.1", host, "Content-Length: 1",
                                  body=b"v"), 400, "bad-parameter", "cas"),
        ("cas twice (67, 1)", req("PUT /v1/kv/p/1?cas=67&cas=1 HTTP/1.1", host, "Content-Length: 1",
                                  body=b"v"), 400, "bad-parameter", "cas"),
        ("consistency twice", req("GET /v1/kv/p/1?consistency=stale&consistency=linearizable HTTP/1.1",
                                  host), 400, "bad-parameter", "consistency"),
        ("consistency and stale", req("GET /v1/kv/p/1?consistency=linearizable&stale HTTP/1.1", host),
         400, "bad-parameter", "stale"),
        ("stale=bogus", req("GET /v1/kv/p/1?stale=bogus HTTP/1.1", host), 400, "bad-parameter", "stale"),
        ("two Idempotency-Keys", req("PUT /v1/kv/p/1 HTTP/1.1", host, "Idempotency-Key: a",
                                     "Idempotency-Key: b", "Content-Length: 1", body=b"v"),
         400, "bad-header", "Idempotency-Key"),
        ("timeout twice", req("GET /v1/kv/p/1?timeout=1s&timeout=2s HTTP/1.1", host),
         400, "bad-parameter", "timeout"),
        ("foreign continue token", req("GET /v1/kv/?prefix=p/&limit=2&continue=%s HTTP/1.1"
                                       % urllib.parse.quote(qtok), host), 400, "bad-parameter",
         "continue"),
        ("forged token outside the prefix", req("GET /v1/kv/?prefix=p/&continue=%s HTTP/1.1"
                                                % urllib.parse.quote(token_for("p/", "q/1")), host),
         400, "bad-parameter", "continue"),
        ("garbled token", req("GET /v1/kv/?prefix=p/&continue=AAAA HTTP/1.1", host),
         400, "bad-parameter", "continue"),
        # A 2.5 KB target with 300 parameters is an ordinary request: answered, not dropped.
        ("300 parameters", req("GET /v1/kv/nokey?consistency=stale&%s HTTP/1.1" % "&".join(
            "q%d=v" % i for i in range(300)), host), 404, "not-found", "not found"),
    ]
    for node in (leader, follower):
        for name, data, status, slug, word in cases:
            r = check_one(node, name, data, status, slug, must_close=False)
            assert word in r.json()["detail"], (name, r.json())
    assert digests(c) == before
    # The token issued for the listing works there, and only there.
    r = leader.req("GET", "/v1/kv/?prefix=q/&limit=1&continue=" + urllib.parse.quote(qtok))
    assert r.status == 200 and [i["key"] for i in r.json()["items"]] == ["q/2"], r
    # ?stale=false means linearizable, ?stale and ?stale=true stale.
    for q in ("?stale=false", "?stale", "?stale=true"):
        r = follower.get("p/1", q)
        assert r.status == 200 and r.body == b"v", (q, r)
        assert (r.header("X-Cloudless-Last-Contact") is not None) == (q != "?stale=false"), (q, r.headers)


def test_head_expect_absolute_form(make):
    c = make().start(3)
    leader = c.leader()
    follower = [n for n in c.running() if n is not leader][0]
    assert leader.put("hx", "ab").status == 200
    for node in (leader, follower):
        # HEAD through a follower reports the length GET would send, with no body.
        got, _ = raw_exchange(node.http_addr, req("HEAD /v1/kv/hx HTTP/1.1", "Host: x",
                                                  "Connection: close"), timeout=3)
        rs = parse_responses(got, head=True)
        assert len(rs) == 1 and rs[0].status == 200 and rs[0].header("Content-Length") == "2", rs
        assert got.endswith(b"\r\n\r\n"), got
        # An absolute-form target is the same request as its origin form.
        got, _ = raw_exchange(node.http_addr, req("GET http://%s/v1/kv/hx HTTP/1.1" % node.http_addr,
                                                  "Host: x", "Connection: close"), timeout=3)
        rs = parse_responses(got)
        assert len(rs) == 1 and rs[0].status == 200 and rs[0].body == b"ab", rs
        # 100-continue is honoured: the interim answer, then the final one.
        got, _ = raw_exchange(node.http_addr, req("PUT /v1/kv/hy HTTP/1.1", "Host: x",
                                                  "Expect: 100-continue", "Content-Length: 1",
                                                  "Connection: close", body=b"v"), timeout=3)
        rs = parse_responses(got)
        assert [r.status for r in rs] in ([100, 200], [200]), rs
        # A pipelined request after a good one is served in order on the same connection.
        got, _ = raw_exchange(node.http_addr,
                              req("GET /v1/kv/hx?consistency=stale HTTP/1.1", "Host: x")
                              + req("GET /v1/kv/nope?consistency=stale HTTP/1.1", "Host: x",
                                    "Connection: close"), timeout=3)
        rs = parse_responses(got)
        assert [r.status for r in rs] == [200, 404], rs


def test_504_says_may_have_been_applied(make):
    c = make().start(3)
    leader = c.leader()
    follower = [n for n in c.running() if n is not leader][0]
    leader.kill(harness.signal.SIGSTOP)
    try:
        r = follower.put("late", "v", query="?timeout=150ms")
        assert r is not None and r.status == 504, r
        assert "may or may not have been applied" in r.json()["detail"], r.json()
        r = follower.get("late", "?timeout=150ms")
        assert r is not None and r.status == 504, r
        assert "applied" not in r.json()["detail"], r.json()
    finally:
        leader.kill(harness.signal.SIGCONT)


if __name__ == "__main__":
    harness.run([test_malformed_framing_table, test_parameters_and_tokens,
                 test_head_expect_absolute_form, test_504_says_may_have_been_applied])
