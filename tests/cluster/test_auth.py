"""Tokens and scopes, protected mode and authenticated joins (issue 14 items 1, 2 and 4), with
real processes: a three-node cluster started with one --auth-file (tokens made by
`cloudless-coordinator hash-token`) and an operator --join-token.

  - the matrix: every endpoint x every scope, no token, an unknown token, a wrong secret and
    malformed headers, on the leader and on a follower, each gets exactly its documented
    status (401/403 problem+json, or through to the route); the denied requests change
    nothing (state and data digests equal before and after);
  - forwarding does not widen rights: a follower forwards the caller's Authorization and the
    leader checks it again, for a request marked as forwarded and for every item of a
    forwarded batch (/raft/forward);
  - hash-token refuses bad input; an auth file reloaded on SIGHUP adds and drops tokens, and a
    bad one keeps the tokens in use;
  - a node joining with a wrong token is refused and the cluster is unchanged;
  - protected mode: without an auth file a non-loopback client is refused 403 and a loopback
    one served; a non-loopback listen address needs --insecure, which lets such clients in.
"""
import json
import os
import signal
import socket
import subprocess

from harness import BIN, free_port, request, run, wait_for
from test_forward_batch import batch, item, parse_responses

PROBLEM = "application/problem+json"
BATCH_TYPE = "application/vnd.cloudless.batch"
SCOPES = ["read", "write", "operator", "enroll", "metrics"]
SECRET = "s3cret-0123456789abcdef"


def hash_token(name, scopes, secret, rounds=None):
    args = [BIN, "hash-token", "--name", name, "--scopes", scopes]
    if rounds:
        args += ["--rounds", str(rounds)]
    p = subprocess.run(args, input=secret.encode(), capture_output=True, timeout=30)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def write_auth_file(path, tokens):
    """tokens: {name: scopes}; every secret is name + SECRET."""
    lines = ["# made by test_auth.py with cloudless-coordinator hash-token"]
    for name, scopes in tokens.items():
        rc, out, err = hash_token(name, scopes, name + "-" + SECRET)
        assert rc == 0, err
        lines.append(out.strip())
    with open(path + ".tmp", "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(path + ".tmp", path)


def bearer(name):
    return "Bearer %s.%s-%s" % (name, name, SECRET)


TOKENS = dict({s: s for s in SCOPES}, admin=",".join(SCOPES))


def auth_cluster(make, n=3):
    c = make()
    path = os.path.join(c.dir, "auth")
    write_auth_file(path, TOKENS)
    c.auth_path = path
    c.token = "admin.admin-" + SECRET
    c.extra_args = ["--auth-file", path, "--join-token", c.token]
    return c.start(n)


# (method, path, body, scopes any one of which gets through; () = open to anyone; "agent": the
# agent's own secret, test_agent_identity)
ENDPOINTS = [
    ("GET", "/raft/health?mode=live", None, ()),
    ("GET", "/raft/health", None, ("read", "metrics")),
    ("GET", "/metrics", None, ("metrics",)),
    ("GET", "/raft/status", None, ("read", "operator")),
    ("POST", "/raft/join", {}, ("operator",)),
    ("POST", "/raft/remove", {}, ("operator",)),
    ("POST", "/raft/transfer-leader", {"node_id": "no-such-node"}, ("operator",)),
    ("POST", "/raft/removed", {}, ()),
    ("POST", "/raft/forward", b"", ()),
    ("GET", "/v1/snapshot", None, ("operator",)),
    ("GET", "/v1/kv/", None, ("read",)),
    ("GET", "/v1/kv/m/a", None, ("read",)),
    ("PUT", "/v1/kv/m/a", "v", ("write",)),
    ("DELETE", "/v1/kv/m/a", None, ("write",)),
    ("GET", "/v1/agents", None, ("read",)),
    ("POST", "/v1/agents", {}, ("enroll",)),
    ("GET", "/v1/agents/ag-x", None, ("read",)),
    ("DELETE", "/v1/agents/ag-x", None, ("operator",)),
    ("POST", "/v1/agents/ag-x/heartbeat", {}, ("agent",)),  # the agent's own secret only
    ("GET", "/v1/agents/ag-x/assignments", None, ("read",)),
    ("POST", "/v1/agents/ag-x/cordon", None, ("operator",)),
    ("POST", "/v1/agents/ag-x/uncordon", None, ("operator",)),
    ("POST", "/v1/agents/ag-x/drain", None, ("operator",)),
    ("GET", "/v1/workloads", None, ("read",)),
    ("POST", "/v1/workloads", {}, ("write",)),
    ("GET", "/v1/workloads/ns/w", None, ("read",)),
    ("PUT", "/v1/workloads/ns/w", {}, ("write",)),
    ("DELETE", "/v1/workloads/ns/w", None, ("write",)),
    ("POST", "/v1/workloads/ns/w/scale", {}, ("write",)),
    ("GET", "/v1/replicas", None, ("read",)),
    ("GET", "/no/such/route", None, ("read",)),
]

# Credentials that are not a valid token: each is 401.
BAD = [
    ("no token", None),
    ("unknown name", "Bearer nobody.nobody-" + SECRET),
    ("wrong secret", "Bearer read.read-wrong-0123456789"),
    ("basic scheme", "Basic cmVhZDpzZWNyZXQ="),
    ("no secret", "Bearer read"),
    ("empty secret", "Bearer read."),
    ("empty bearer", "Bearer "),
    ("not token68", "Bearer read.read-" + SECRET + " extra"),
    ("scheme only", "Bearer"),
]


def call(node, method, path, body, auth):
    headers = {}
    if auth is not None:
        headers["Authorization"] = auth
    return request(node.http_addr, method, path, body, headers, timeout=10)


def digests(c):
    st = c.wait_converged()
    return {(s["state_digest"], s["data_digest"]) for s in st}


def assert_problem(r, status, slug, what):
    assert r is not None and r.status == status, (what, r)
    assert r.header("Content-Type") == PROBLEM, (what, r.headers)
    assert r.json()["type"].endswith("/" + slug), (what, r.json())
    if status == 401:
        assert r.header("WWW-Authenticate") == 'Bearer realm="cloudless"', (what, r.headers)


def test_scope_matrix(make):
    c = auth_cluster(make)
    ld = c.leader()
    f = c.followers()[0]
    assert ld.put("m/a", "before").status == 200
    before = digests(c)
    denied = 0
    denied_at = {}
    # Everything that must be refused first, on the leader and on a follower; then the state
    # must be what it was.
    for node in (ld, f):
        for method, path, body, allowed in ENDPOINTS:
            what = "%s %s on %s" % (method, path, node.node_id)
            for name, auth in BAD:
                r = call(node, method, path, body, auth)
                if allowed:
                    assert_problem(r, 401, "unauthorized", what + " with " + name)
                    denied += 1
                    denied_at[node] = denied_at.get(node, 0) + 1
                else:
                    assert r is not None and r.status not in (401, 403), (what, name, r)
            for scope in SCOPES:
                if not allowed or scope in allowed:
                    continue
                r = call(node, method, path, body, bearer(scope))
                assert_problem(r, 403, "forbidden", what + " with scope " + scope)
                if "agent" not in allowed:
                    assert scope in r.json()["detail"], r.json()
                denied += 1
                denied_at[node] = denied_at.get(node, 0) + 1
    assert digests(c) == before, "a denied request changed the state"
    # Each refusal is counted under route="denied": the tag is set before the refusal is
    # answered (after it, the HTTP thread may already have freed the request).
    for node, n in denied_at.items():
        counted = sum(node.metric("cloudless_http_requests_total",
                                  'route="denied",code="%d"' % code) or 0 for code in (401, 403))
        assert counted >= n, (node.node_id, counted, n)
    assert ld.get("m/a").body == b"before"
    # Then every scope that is allowed gets through to the route (which answers whatever it
    # answers: 200, 400 for the empty bodies, 404 for the unknown agent).
    for node in (ld, f):
        for method, path, body, allowed in ENDPOINTS:
            if "agent" in allowed:
                continue
            for scope in allowed:
                r = call(node, method, path, body, bearer(scope))
                assert r is not None and r.status not in (401, 403), (method, path, scope, r)
            r = call(node, method, path, body, bearer("admin"))
            assert r is not None and r.status not in (401, 403), (method, path, r)
    print("denied %d requests, state unchanged" % denied)


def test_repeated_authorization_header(make):
    c = auth_cluster(make, n=1)
    ld = c.leader()
    import http.client
    host, port = ld.http_addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    conn.putrequest("GET", "/v1/kv/")
    conn.putheader("Authorization", bearer("read"))
    conn.putheader("Authorization", bearer("read"))
    conn.endheaders()
    r = conn.getresponse()
    assert r.status == 401, r.status
    conn.close()


def test_forwarding_does_not_widen_rights(make):
    c = auth_cluster(make)
    ld = c.leader()
    f = c.followers()[0]
    before = digests(c)
    # A follower refuses before forwarding, and the leader refuses what comes marked as
    # forwarded with the same credential.
    for node, extra in ((f, {}), (ld, {"X-Cloudless-Forwarded-By": f.node_id,
                                       "X-Cloudless-Forward-Key": "k-1"})):
        for auth in (bearer("read"), None, "Bearer read.bad-secret-0123456789"):
            h = dict(extra)
            if auth:
                h["Authorization"] = auth
            r = request(node.http_addr, "PUT", "/v1/kv/fw/x", "v", h)
            assert r.status in (401, 403), (node.node_id, auth, r)
    # A forwarded batch: each item is checked on its own against its own Authorization.
    body = batch(*[
        item("PUT", "/v1/kv/fw/a", headers=[("Authorization", bearer("read"))], body=b"a"),
        item("PUT", "/v1/kv/fw/b", body=b"b"),
        item("PUT", "/v1/kv/fw/c", headers=[("Authorization", bearer("enroll"))], body=b"c"),
        item("PUT", "/v1/kv/fw/d", headers=[("Authorization", "Bearer x")], body=b"d")])
    r = request(ld.http_addr, "POST", "/raft/forward", body, {"Content-Type": BATCH_TYPE})
    assert r.status == 200, r
    statuses = [x[0] for x in parse_responses(r.body)]
    assert statuses == [403, 401, 403, 401], statuses
    assert digests(c) == before
    # The caller's own rights pass through: a write token writes through a follower, one by
    # one and in a batch of concurrent writes.
    r = request(f.http_addr, "PUT", "/v1/kv/fw/ok", "yes", {"Authorization": bearer("write")})
    assert r.status == 200, r
    import concurrent.futures
    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        rs = list(ex.map(lambda i: request(f.http_addr, "PUT", "/v1/kv/fw/%d" % i, "v",
                                           {"Authorization": bearer("write")}), range(64)))
    assert all(x is not None and x.status == 200 for x in rs), [x and x.status for x in rs]
    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        rs = list(ex.map(lambda i: request(f.http_addr, "PUT", "/v1/kv/fw/r%d" % i, "v",
                                           {"Authorization": bearer("read")}), range(32)))
    assert all(x is not None and x.status == 403 for x in rs), [x and x.status for x in rs]
    assert ld.get("fw/r0").status == 404
    assert ld.get("fw/ok").body == b"yes"


def test_hash_token_and_auth_file_errors(make):
    c = make()
    rc, out, err = hash_token("ci", "read,write", "0123456789abcdef0123")
    assert rc == 0, err
    name, scopes, h = out.split()
    assert name == "ci" and scopes == "read,write" and h.startswith("pbkdf2-sha256$4096$"), out
    assert "0123456789abcdef0123" not in out
    rc2, out2, _ = hash_token("ci", "read,write", "0123456789abcdef0123")
    assert rc2 == 0 and out2 != out, "the salt must be random"
    for args, secret, why in ((("bad name", "read"), SECRET, "--name"),
                              (("ci", "read,root"), SECRET, "unknown scope"),
                              (("ci", ""), SECRET, "scope"),
                              (("ci", "read"), "short", "secret"),
                              (("ci", "read"), "has.dot.0123456789", "secret")):
        rc, _, err = hash_token(args[0], args[1], secret)
        assert rc == 2 and why in err, (args, secret, err)
    # A bad auth file stops the start, naming the line.
    bad = os.path.join(c.dir, "bad-auth")
    for text, why in (("ci read\n", "line 1"),
                      ("# c\nci read,nope pbkdf2-sha256$4096$%s$%s\n" % ("0" * 32, "0" * 64),
                       "line 2: unknown scope"),
                      ("ci read sha1$x\n", "hash must start"),
                      (out + out, "named twice")):
        with open(bad, "w") as fh:
            fh.write(text)
        p = subprocess.run([BIN, "--node-id", "n1", "--bootstrap", "--data-dir",
                            os.path.join(c.dir, "d"), "--http-addr",
                            "127.0.0.1:%d" % free_port(), "--raft-addr",
                            "127.0.0.1:%d" % free_port(), "--auth-file", bad],
                           capture_output=True, timeout=30)
        assert p.returncode != 0 and why in p.stderr.decode(), (text, p.stderr)


def test_auth_file_reload_on_sighup(make):
    c = auth_cluster(make, n=1)
    ld = c.leader()
    assert call(ld, "GET", "/v1/kv/", None, bearer("read")).status == 200
    assert call(ld, "GET", "/v1/kv/", None, bearer("late")).status == 401
    write_auth_file(c.auth_path, dict(TOKENS, late="read", read="metrics"))
    ld.proc.send_signal(signal.SIGHUP)
    wait_for("the new token", lambda: call(ld, "GET", "/v1/kv/", None, bearer("late")).status
             == 200)
    assert call(ld, "GET", "/v1/kv/", None, bearer("read")).status == 403
    # A bad file keeps the tokens in use and says so.
    with open(c.auth_path, "w") as fh:
        fh.write("broken\n")
    ld.proc.send_signal(signal.SIGHUP)
    wait_for("the reload failure logged", lambda: "Auth file reload failed" in ld.log())
    assert call(ld, "GET", "/v1/kv/", None, bearer("late")).status == 200


def test_join_with_wrong_token_is_refused(make):
    c = auth_cluster(make, n=2)
    before = sorted(x["node_id"] for x in c.leader().status()["servers"])
    ld = c.leader()
    state = digests(c)
    for i, token in enumerate(("read.read-" + SECRET, "admin.wrong-secret-0123456789")):
        nd = c.node("intruder-%d" % i)
        nd.start(join=[ld], extra=["--join-token", token])  # the last --join-token wins
        want = "status=%d" % (403 if i == 0 else 401)
        wait_for("the refused join logged", lambda: want in nd.log(), timeout=20)
        assert sorted(x["node_id"] for x in ld.status()["servers"]) == before
        nd.kill()
        assert sorted(x["node_id"] for x in ld.status()["servers"]) == before
    assert digests(c) == state
    # The right token joins.
    nd = c.node("coordinator-3")
    nd.start(join=[ld])
    c.wait_voters(3)


def local_ipv4():
    """A non-loopback IPv4 address of this machine, or None."""
    out = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        parts = line.split()
        addr = parts[3].split("/")[0]
        if not addr.startswith("127."):
            return addr
    return None


def from_source(src, addr, path, method="GET"):
    """A request from a socket bound to the local address src (so the server sees src)."""
    host, port = addr.rsplit(":", 1)
    sk = socket.create_connection((host, int(port)), timeout=5, source_address=(src, 0))
    try:
        sk.sendall(("%s %s HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close"
                    "\r\n\r\n" % (method, path)).encode())
        data = b""
        while True:
            b = sk.recv(65536)
            if not b:
                break
            data += b
    finally:
        sk.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), head.decode(), body


def test_protected_mode(make):
    src = local_ipv4()
    assert src is not None, "this test needs a non-loopback IPv4 address on the machine"
    c = make().start(1)
    nd = c.node("coordinator-1")
    assert "protected mode" in nd.log()
    # A loopback client is served; the same request from a non-loopback source is refused
    # (the node listens on 127.0.0.1; a socket bound to the machine's own address reaches it).
    assert nd.put("p/a", "1").status == 200
    status, head, body = from_source(src, nd.http_addr, "/v1/kv/p/a")
    assert status == 403 and PROBLEM in head, (status, head)
    assert json.loads(body)["type"].endswith("/protected-mode")
    status, _, _ = from_source(src, nd.http_addr, "/raft/health?mode=live")
    assert status == 200, status
    # The routes open under an auth file are not open here: a forwarded batch's items are not
    # checked again, so the batch itself must come from loopback.
    for method, path in (("POST", "/raft/forward"), ("POST", "/raft/removed"),
                         ("GET", "/raft/health"), ("GET", "/metrics")):
        status, head, _ = from_source(src, nd.http_addr, path, method)
        assert status == 403 and PROBLEM in head, (method, path, status)
    # A non-loopback listen address without an auth file needs --insecure.
    p = subprocess.run([BIN, "--node-id", "x", "--bootstrap", "--data-dir",
                        os.path.join(c.dir, "x"), "--raft-addr", "127.0.0.1:%d" % free_port(),
                        "--http-addr", "%s:%d" % (src, free_port())],
                       capture_output=True, timeout=30)
    assert p.returncode == 2 and b"--insecure" in p.stderr, p.stderr
    # With --insecure it starts, says so, and answers the non-loopback client.
    ins = make()
    n2 = ins.node("coordinator-1")
    n2.http_addr = "%s:%d" % (src, free_port())
    n2.start(bootstrap=True, extra=["--insecure"])
    wait_for("the insecure node to lead", lambda: ins.leader_of([n2]))
    assert "--insecure" in n2.log()
    status, _, _ = from_source(src, n2.http_addr, "/v1/kv/")
    assert status == 200, status


CTL = os.environ.get("CLOUDLESS_CTL") or os.path.join(os.path.dirname(BIN), "cloudlessctl")


def enroll_body(agent_id):
    return {"id": agent_id, "capacity": {"cpu_millicores": 1000, "memory_bytes": 1 << 30}}


def test_agent_identity(make):
    c = auth_cluster(make)
    ld = c.leader()
    f = c.followers()[0]
    # A real agent with an enroll token: it gets a secret of its own, keeps it in its data
    # dir (0600) and heartbeats with it.
    ag = c.agent("ag-1")
    ag.start(extra=["--token", "enroll.enroll-" + SECRET, "--heartbeat-ms", "100"])
    path = os.path.join(ag.data_dir, "agent-token")
    wait_for("the agent's secret saved", lambda: os.path.exists(path))
    assert os.stat(path).st_mode & 0o777 == 0o600
    with open(path) as fh:
        mine = fh.read().strip()
    assert mine.startswith("agent~ag-1."), mine
    wait_for("heartbeats with the agent's own secret",
             lambda: "heartbeat ok" in ag.log())
    wait_for("ag-1 ready", lambda: ld.req("GET", "/v1/agents/ag-1").json()["state"] == "ready")
    secret = mine.split(".", 1)[1]
    # Only a hash is in the replicated state: no view, no backup image, shows the secret.
    for nd in c.running():
        view = nd.req("GET", "/v1/agents/ag-1?consistency=stale").body
        assert secret.encode() not in view and b"secret_hash" not in view, view
    snap = ld.req("GET", "/v1/snapshot", timeout=20)
    assert snap.status == 200 and secret.encode() not in snap.body
    # A second agent enrolled through the API with the enroll token, on a follower.
    r = request(f.http_addr, "POST", "/v1/agents", enroll_body("ag-2"),
                {"Authorization": bearer("enroll")})
    assert r.status == 201, r
    other = r.json()["token"]
    assert other.startswith("agent~ag-2.") and "secret_hash" not in r.json()
    me = "Bearer " + mine
    hb = {"replicas": []}
    for nd in c.running():
        # Its own id: served (a follower forwards it to the leader).
        r = request(nd.http_addr, "POST", "/v1/agents/ag-1/heartbeat", hb, {"Authorization": me})
        assert r.status == 200, (nd.node_id, r)
        r = request(nd.http_addr, "GET", "/v1/agents/ag-1/assignments?stale", None,
                    {"Authorization": me})
        assert r.status == 200, (nd.node_id, r)
        # Another agent's id, anything else, enrolling another: 403.
        for method, p, body in (("POST", "/v1/agents/ag-2/heartbeat", hb),
                                ("GET", "/v1/agents/ag-2/assignments?stale", None),
                                ("POST", "/v1/agents", enroll_body("ag-2")),
                                ("GET", "/v1/kv/", None),
                                ("DELETE", "/v1/agents/ag-2", None),
                                ("GET", "/v1/agents", None)):
            r = request(nd.http_addr, method, p, body, {"Authorization": me})
            assert_problem(r, 403, "forbidden", "%s %s as ag-1 on %s" % (method, p, nd.node_id))
        # Heartbeats are the agent's own: no token scope sends them, not even admin's.
        for name in ("enroll", "admin"):
            r = request(nd.http_addr, "POST", "/v1/agents/ag-2/heartbeat", hb,
                        {"Authorization": bearer(name)})
            assert_problem(r, 403, "forbidden", "heartbeat with %s" % name)
        r = request(nd.http_addr, "POST", "/v1/agents/ag-1/heartbeat", hb,
                    {"Authorization": "Bearer agent~ag-1.wrong-secret-0123456789"})
        assert_problem(r, 401, "unauthorized", "a wrong agent secret")
    # Re-enrolling with its own secret keeps the secret (no new token answered).
    r = request(ld.http_addr, "POST", "/v1/agents", enroll_body("ag-1"), {"Authorization": me})
    assert r.status == 200 and "token" not in r.json(), r
    # The agent restarted keeps its secret and goes on.
    ag.kill()
    n_ok = ag.log().count("heartbeat ok")
    ag.restart()
    wait_for("heartbeats after the restart", lambda: ag.log().count("heartbeat ok") > n_ok)
    with open(path) as fh:
        assert fh.read().strip() == mine
    # Removing ag-2 revokes its secret on every node.
    r = request(ld.http_addr, "GET", "/v1/agents/ag-2/assignments?stale", None,
                {"Authorization": "Bearer " + other})
    assert r.status == 200, r
    assert ld.req("DELETE", "/v1/agents/ag-2").status == 200
    for nd in c.running():
        wait_for("ag-2's secret refused on %s" % nd.node_id, lambda: request(
            nd.http_addr, "GET", "/v1/agents/ag-2/assignments?stale", None,
            {"Authorization": "Bearer " + other}).status == 401)
        r = request(nd.http_addr, "POST", "/v1/agents/ag-2/heartbeat", hb,
                    {"Authorization": "Bearer " + other})
        assert_problem(r, 401, "unauthorized", "a removed agent's heartbeat on " + nd.node_id)
        r = request(nd.http_addr, "POST", "/v1/agents", enroll_body("ag-2"),
                    {"Authorization": "Bearer " + other})
        assert_problem(r, 401, "unauthorized", "a removed agent's enrollment on " + nd.node_id)
    # Removing the real agent: its secret is refused, it drops it and enrolls again with its
    # enroll token, getting a new one.
    assert ld.req("DELETE", "/v1/agents/ag-1").status == 200
    def new_secret():
        with open(path) as fh:
            v = fh.read().strip()
        return v if v != mine else None
    fresh = wait_for("a new secret after the removal", new_secret, timeout=20)
    assert request(ld.http_addr, "GET", "/v1/agents/ag-1/assignments?stale", None,
                   {"Authorization": me}).status == 401
    wait_for("the new secret works", lambda: request(
        ld.http_addr, "GET", "/v1/agents/ag-1/assignments?stale", None,
        {"Authorization": "Bearer " + fresh}).status == 200)


def test_ctl_token(make):
    c = auth_cluster(make, n=1)
    ld = c.leader()
    env = dict(os.environ)
    env.pop("CLOUDLESS_TOKEN", None)

    def ctl(args, token=None, flag=False):
        e = dict(env)
        argv = [CTL, "--endpoints", ld.http_addr]
        if token and flag:
            argv += ["--token", token]
        elif token:
            e["CLOUDLESS_TOKEN"] = token
        p = subprocess.run(argv + args, capture_output=True, timeout=60, env=e)
        return p.returncode, p.stdout.decode(), p.stderr.decode()
    rc, out, err = ctl(["kv", "put", "ctl/a", "1"], "write.write-" + SECRET)
    assert rc == 0, err
    rc, out, err = ctl(["kv", "get", "ctl/a"], "read.read-" + SECRET, flag=True)
    assert rc == 0 and "1" in out, (out, err)
    rc, out, err = ctl(["kv", "get", "ctl/a"])
    assert rc != 0 and "401" in err + out, (rc, out, err)
    rc, out, err = ctl(["kv", "put", "ctl/a", "2"], "read.read-" + SECRET)
    assert rc != 0 and "403" in err + out, (rc, out, err)
    assert ld.get("ctl/a").body == b"1"


if __name__ == "__main__":
    run([test_scope_matrix, test_repeated_authorization_header,
         test_forwarding_does_not_widen_rights, test_hash_token_and_auth_file_errors,
         test_auth_file_reload_on_sighup, test_join_with_wrong_token_is_refused,
         test_protected_mode, test_agent_identity, test_ctl_token])
