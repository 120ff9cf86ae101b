"""Limits against abuse (issue 14 item 7), with real processes:

  - slowloris: many connections dripping a request head are cut off at
    --http-header-timeout-ms while another client goes on being served promptly;
  - the per-token rate limit (--rate-limit) answers 429 problem+json with Retry-After, spares
    other tokens, and recovers once the client waits what Retry-After says;
  - a flood of new wrong secrets for one token name is answered 429 once the node has spent its
    full checks for the second, and the token's verified secret goes on working;
  - JSON nested deeper than 32 levels is a 400, and oversized workload commands and
    environments are 400s; none of them changes the state (digests equal before and after).
(Body, head, URL size, connection counts and the idle timeout are test_http_strict's and
test_client_traffic's.)
"""
import concurrent.futures
import json
import os
import socket
import threading
import time

from harness import request, run, scaled, wait_for
from test_auth import SECRET, TOKENS, bearer, digests, write_auth_file

PROBLEM = "application/problem+json"


def test_slowloris_is_cut_off_while_others_are_served(make):
    c = make(extra_args=["--http-header-timeout-ms", "800"]).start(1)
    n = c.leader()
    host, port = n.http_addr.rsplit(":", 1)
    stop = threading.Event()
    closed_after = []

    def loris():
        s = socket.create_connection((host, int(port)), timeout=scaled(10))
        t0 = time.monotonic()
        s.sendall(b"GET /v1/kv/x HTTP/1.1\r\n")
        s.settimeout(0.05)
        while not stop.is_set():
            try:
                s.send(b"X")
            except OSError:
                break
            try:
                if s.recv(65536) == b"":
                    break
            except socket.timeout:
                continue
            except OSError:
                break
        closed_after.append(time.monotonic() - t0)
        s.close()
    threads = [threading.Thread(target=loris) for _ in range(64)]
    for t in threads:
        t.start()
    # Meanwhile a normal client is served, each request promptly.
    worst = 0.0
    deadline = time.monotonic() + 1.5
    i = 0
    while time.monotonic() < deadline:
        t0 = time.monotonic()
        r = n.put("ok/%d" % i, "v")
        worst = max(worst, time.monotonic() - t0)
        assert r is not None and r.status == 200, r
        i += 1
    for t in threads:
        t.join(timeout=scaled(10))
    stop.set()
    assert len(closed_after) == 64, closed_after
    # Cut off at the head timeout (not before), all of them.
    assert all(0.7 <= x <= scaled(3) for x in closed_after), sorted(closed_after)
    assert worst < scaled(0.5), worst
    assert i > 10, i


def auth_cluster(make, extra=()):
    c = make()
    path = os.path.join(c.dir, "auth")
    write_auth_file(path, TOKENS)
    c.token = "admin.admin-" + SECRET
    c.extra_args = ["--auth-file", path] + list(extra)
    return c.start(1)


def test_rate_limit_429_and_recovers(make):
    c = auth_cluster(make, ["--rate-limit", "20"])
    n = c.leader()
    results = []
    t0 = time.monotonic()
    while time.monotonic() - t0 < 0.5:
        results.append(request(n.http_addr, "GET", "/v1/kv/", None,
                               {"Authorization": bearer("read")}))
    limited = [r for r in results if r.status == 429]
    assert limited and results[0].status == 200, [r.status for r in results][:30]
    assert {r.status for r in results} == {200, 429}
    r = limited[0]
    assert r.header("Content-Type") == PROBLEM and r.json()["type"].endswith("/rate-limited")
    after = int(r.header("Retry-After"))
    assert after >= 1, r.headers
    # Another token is not limited by the first one's traffic.
    r2 = request(n.http_addr, "GET", "/raft/status", None, {"Authorization": bearer("operator")})
    assert r2.status == 200, r2
    # Waiting what Retry-After says is enough.
    time.sleep(after)
    r = request(n.http_addr, "GET", "/v1/kv/", None, {"Authorization": bearer("read")})
    assert r.status == 200, r


def test_wrong_secret_flood_is_bounded(make):
    c = auth_cluster(make)
    n = c.leader()
    assert request(n.http_addr, "GET", "/v1/kv/", None,
                   {"Authorization": bearer("read")}).status == 200
    statuses = []
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        statuses = list(ex.map(lambda i: request(
            n.http_addr, "GET", "/v1/kv/", None,
            {"Authorization": "Bearer read.wrong-%032d" % i}).status, range(200)))
    assert set(statuses) <= {401, 429} and 429 in statuses, statuses
    # The verified secret is not held up by the flood.
    r = request(n.http_addr, "GET", "/v1/kv/", None, {"Authorization": bearer("read")})
    assert r.status == 200, r
    # Health stays answered meanwhile.
    assert request(n.http_addr, "GET", "/raft/health?mode=live").status == 200


def nested(depth):
    v = 1
    for _ in range(depth):
        v = [v]
    return v


def test_bad_bodies_are_400_and_change_nothing(make):
    c = make().start(3)
    ld = c.leader()
    good = {"namespace": "default", "name": "w", "command": ["sleep", "1000"], "replicas": 0,
            "resources": {"cpu_millicores": 100, "memory_bytes": 1 << 20}}
    assert ld.req("PUT", "/v1/workloads/default/w", good).status in (200, 201)
    before = digests(c)

    def with_(**kw):
        return dict(good, **kw)
    cases = [
        ("PUT", "/v1/workloads/default/w", with_(labels={"a": nested(40)}), "nested deeper"),
        ("POST", "/v1/agents", {"id": "a", "capacity": nested(33)}, "nested deeper"),
        ("POST", "/v1/agents/a/heartbeat", {"replicas": nested(50)}, "nested deeper"),
        ("PUT", "/v1/workloads/default/w", with_(command=["x"] * 300), "command"),
        ("PUT", "/v1/workloads/default/w", with_(command=["x" * 5000]), "command[0]"),
        ("PUT", "/v1/workloads/default/w", with_(command=["y" * 4000] * 20), "in all"),
        ("PUT", "/v1/workloads/default/w", with_(command=[]), "command"),
        ("PUT", "/v1/workloads/default/w", with_(env={"V%d" % i: "v" for i in range(300)}),
         "env"),
        ("PUT", "/v1/workloads/default/w", with_(env={"V%d" % i: "z" * 4000 for i in range(20)}),
         "in all"),
        ("PUT", "/v1/workloads/default/w", with_(env={"V": "z" * 5000}), "env"),
    ]
    for node in (ld, c.followers()[0]):
        for method, path, body, why in cases:
            r = node.req(method, path, json.dumps(body), {"Content-Type": "application/json"})
            assert r is not None and r.status == 400, (method, path, why, r)
            assert r.header("Content-Type") == PROBLEM and why in r.json()["detail"], (why, r)
    # Nesting within the limit is read as usual (and refused for what it says, not its depth).
    r = ld.req("PUT", "/v1/workloads/default/w", with_(labels={"a": nested(20)}))
    assert r.status == 400 and "nested" not in r.json()["detail"], r
    assert digests(c) == before


if __name__ == "__main__":
    run([test_slowloris_is_cut_off_while_others_are_served, test_rate_limit_429_and_recovers,
         test_wrong_secret_flood_is_bounded, test_bad_bodies_are_400_and_change_nothing])
