"""cloudlessctl against live clusters: every cluster and kv verb, through the leader and a
follower, in both output formats, with their exit codes; wrong usage (2, one line with a
hint), no endpoint reachable (3), the next endpoint after a dead one, errors the cluster
answers (1, the problem's title and detail on one stderr line), values from stdin, and the
leader hint of a 503 followed. Stand-in endpoints (a small HTTP server in this process)
answer 503 with or without a leader hint, or never answer, where a real cluster cannot be
made to do so on cue."""
import base64
import http.server
import json
import os
import socketserver
import subprocess
import threading
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

from harness import BIN, free_port, request, run, scaled, wait_for

CTL = os.environ.get("CLOUDLESS_CTL") or os.path.join(os.path.dirname(BIN), "cloudlessctl")


def ctl(args, endpoints=None, stdin=b"", env=None, timeout=60):
    """Runs cloudlessctl; returns (exit status, stdout bytes, stderr text)."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDLESS_")}
    e.update(env or {})
    argv = [CTL]
    if endpoints is not None:
        argv += ["--endpoints", ",".join(n if isinstance(n, str) else n.http_addr
                                         for n in endpoints)]
    p = subprocess.run(argv + args, input=stdin, capture_output=True, env=e,
                       timeout=scaled(timeout))
    return p.returncode, p.stdout, p.stderr.decode()


def ok(args, endpoints=None, **kw):
    rc, out, err = ctl(args, endpoints, **kw)
    assert rc == 0, (args, rc, out, err)
    assert err == "", (args, err)
    return out.decode()


def one_line(err, *needles):
    lines = err.splitlines()
    assert len(lines) == 1, "expected one line on stderr, got %r" % lines
    for n in needles:
        assert n in lines[0], "%r does not mention %r" % (lines[0], n)
    return lines[0]


def fails(args, code, endpoints=None, needles=(), **kw):
    rc, out, err = ctl(args, endpoints, **kw)
    assert rc == code, (args, rc, out, err)
    assert out == b"", (args, out)
    return one_line(err, *needles)


def table(text):
    """Rows of a cloudlessctl table as dicts, cut where the header's columns start."""
    lines = text.splitlines()
    header = lines[0]
    names, starts, i = [], [], 0
    while i < len(header):
        j = header.find("   ", i)
        j = len(header) if j < 0 else j
        names.append(header[i:j])
        starts.append(i)
        i = j
        while i < len(header) and header[i] == " ":
            i += 1
    rows = []
    for line in lines[1:]:
        cells = [line[s:(starts[k + 1] if k + 1 < len(starts) else len(line))].strip()
                 for k, s in enumerate(starts)]
        rows.append(dict(zip(names, cells)))
    return names, rows


def quoted(key):
    return "/v1/kv/" + urllib.parse.quote(key, safe="")


# ---- stand-in endpoints ----------------------------------------------------------------

class Standin:
    """An HTTP server that answers every request the way `mode` says: "hint" (503 naming the
    leader), "503" (no hint) or "hang" (never answers until closed). Counts requests."""

    def __init__(self, mode, leader=None):
        self.mode, self.leader, self.requests = mode, leader, 0
        self.release = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def handle_one(self):
                outer.requests += 1
                n = int(self.headers.get("Content-Length") or 0)
                if n:
                    self.rfile.read(n)
                if outer.mode == "hang":
                    outer.release.wait(scaled(60))
                    return
                doc = {"type": "https://cloudless.dev/problems/no-leader",
                       "title": "Service Unavailable", "status": 503,
                       "detail": "stand-in without a leader"}
                if outer.mode == "hint":
                    doc.update(leader_id=outer.leader.node_id,
                               leader_http_addr=outer.leader.http_addr)
                body = json.dumps(doc).encode()
                self.send_response(503)
                self.send_header("Content-Type", "application/problem+json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Retry-After", "1")
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_PUT = do_POST = do_DELETE = handle_one

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.port = free_port()
        self.http_addr = "127.0.0.1:%d" % self.port
        self.server = Server(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


# ---- tests ------------------------------------------------------------------------------

VERBS = [["cluster", "status"], ["cluster", "leader"], ["cluster", "members"],
         ["cluster", "health"], ["cluster", "join"], ["cluster", "remove"],
         ["cluster", "transfer"], ["kv", "get"], ["kv", "put"], ["kv", "del"], ["kv", "ls"]]


def test_usage_and_help(make):
    nobody = "127.0.0.1:%d" % free_port()  # never contacted: usage is checked first
    cases = [
        ([], ["missing command", "cloudlessctl --help"]),
        (["frob"], ["unknown command \"frob\"", "cluster", "kv"]),
        (["kv"], ["kv: missing verb", "get", "ls", "'cloudlessctl kv --help'"]),
        (["kv", "frob"], ["unknown verb \"frob\"", "'cloudlessctl kv --help'"]),
        (["kv", "get"], ["kv get: missing arguments: expected KEY",
                         "'cloudlessctl kv get --help'"]),
        (["kv", "get", "a", "b"], ["too many arguments", "got 2"]),
        (["kv", "put", "k"], ["missing arguments: expected KEY VALUE|-"]),
        (["kv", "get", ""], ["the key must not be empty"]),
        (["cluster", "status", "extra"], ["takes no arguments"]),
        (["cluster", "remove"], ["missing arguments: expected ID"]),
        (["cluster", "transfer", "a", "b"], ["too many arguments"]),
        (["cluster", "join", "--node-id", "n4"], ["--raft-addr is required",
                                                  "'cloudlessctl cluster join --help'"]),
        (["cluster", "join", "--node-id", "n4", "--raft-addr", "1.2.3.4:99999",
          "--http-addr", "h:1"], ["--raft-addr: port 99999 out of range"]),
        (["kv", "get", "k", "--frob"], ["unknown flag --frob",
                                        "(see 'cloudlessctl kv get --help')"]),
        (["kv", "get", "k", "-x"], ["unknown flag -x"]),
        (["kv", "put", "k", "v", "--cas", "abc"], ["--cas: not a non-negative integer"]),
        (["kv", "put", "k", "v", "--cas"], ["--cas: missing value"]),
        (["kv", "put", "k", "v", "--idempotency-key", "a b"], ["--idempotency-key"]),
        (["--timeout", "5", "kv", "get", "k"], ["--timeout", "with a unit", "\"5\""]),
        (["-o", "yaml", "kv", "get", "k"], ["--output: must be table or json"]),
        (["kv", "ls", "--limit", "-1"], ["--limit"]),
        (["--endpoints", "a:1,,b:2", "kv", "get", "k"], ["--endpoints: empty endpoint"]),
        (["--endpoints", "http://h:1/path", "kv", "get", "k"], ["--endpoints", "host:port"]),
        (["--endpoints", "ftp://h:1", "kv", "get", "k"], ["only http:// and https://"]),
        (["--endpoints", "h:0", "kv", "get", "k"], ["--endpoints: port 0 out of range"]),
        (["--version=1"], ["--version takes no value"]),
    ]
    for args, needles in cases:
        eps = [] if args[:1] == ["--endpoints"] else [nobody]
        line = fails(args, 2, eps or None, needles)
        assert line.startswith("cloudlessctl: "), line
        assert line.count("(see ") == 1, line
    # The environment is a fallback; a bad value there is blamed on the variable.
    fails(["kv", "get", "k"], 2, env={"CLOUDLESS_ENDPOINTS": "nope"},
          needles=["--endpoints (from CLOUDLESS_ENDPOINTS)", "expected host:port"])

    # --help at every level: the program, each group, each verb (also after other flags).
    top = ok(["--help"])
    assert top.startswith("Usage: cloudlessctl"), top
    for v in VERBS:
        assert "  " + " ".join(v) in top, (v, top)
    for flag in ("--endpoints", "CLOUDLESS_ENDPOINTS", "--output", "-o,", "--timeout",
                 "--version", "Exit status"):
        assert flag in top, flag
    assert ok(["-h"]) == top
    for group in ("cluster", "kv"):
        g = ok([group, "--help"])
        assert g.startswith("Usage: cloudlessctl %s VERB" % group), g
    flags_of = {"get": ["--stale"], "put": ["--cas", "--idempotency-key"],
                "del": ["--cas", "--idempotency-key"], "ls": ["--stale", "--limit"],
                "join": ["--node-id", "--raft-addr", "--http-addr"]}
    for v in VERBS:
        h = ok(v + ["--help"])
        assert h.startswith("Usage: cloudlessctl %s" % " ".join(v)), h
        for flag in flags_of.get(v[1], []) + ["--endpoints", "--output", "--timeout"]:
            assert flag in h, (v, flag)
        assert max(len(line) for line in h.splitlines()) <= 80, v
        assert ok(["-o", "json"] + v + ["-h", "--frob"]) == h
    version = ok(["--version"])
    assert version.startswith("cloudlessctl ") and version.endswith("\n"), version


class Survivors:
    """A cluster's running nodes but one, for checks of what its members report."""

    def __init__(self, c, gone):
        self.c, self.gone = c, gone

    def running(self):
        return [n for n in self.c.running() if n is not self.gone]


def check_status_table(text, c, leader):
    names, rows = table(text)
    assert names == ["ID", "RAFT ADDRESS", "HTTP ADDRESS", "ROLE", "VOTER", "LEADER",
                     "APPLIED", "LAG"], names
    by_id = {r["ID"]: r for r in rows}
    assert sorted(by_id) == sorted(n.node_id for n in c.running()), rows
    for n in c.running():
        r = by_id[n.node_id]
        assert (r["RAFT ADDRESS"], r["HTTP ADDRESS"]) == (n.raft_addr, n.http_addr), r
        assert (r["ROLE"], r["VOTER"]) == ("voter", "yes"), r
        assert r["LEADER"] == ("yes" if n is leader else "no"), r
        assert r["APPLIED"].isdigit() and r["LAG"].isdigit(), r


def test_cluster_verbs(make):
    c = make().start(3)
    ld = c.leader()
    f = [n for n in c.running() if n is not ld][0]
    direct = ld.status()
    for via in (ld, f):
        # status: the leader's view (lag per server) even through a follower.
        check_status_table(ok(["cluster", "status"], [via]), c, ld)
        doc = json.loads(ok(["cluster", "status", "-o", "json"], [via]))
        assert doc["state"] == "leader" and doc["node_id"] == ld.node_id, doc
        assert set(doc) == set(direct), set(doc) ^ set(direct)
        assert all("lag" in s for s in doc["servers"]), doc

        names, rows = table(ok(["cluster", "leader"], [via]))
        assert names == ["ID", "RAFT ADDRESS", "HTTP ADDRESS", "TERM"], names
        assert rows == [{"ID": ld.node_id, "RAFT ADDRESS": ld.raft_addr,
                         "HTTP ADDRESS": ld.http_addr, "TERM": str(direct["term"])}], rows
        assert json.loads(ok(["-o", "json", "cluster", "leader"], [via])) == direct["leader"]

        names, rows = table(ok(["cluster", "members"], [via]))
        assert names == ["ID", "RAFT ADDRESS", "HTTP ADDRESS", "ROLE"], names
        assert sorted((r["ID"], r["HTTP ADDRESS"], r["ROLE"]) for r in rows) == \
            sorted((n.node_id, n.http_addr, "voter") for n in c.running()), rows
        stable = ("node_id", "raft_addr", "http_addr", "role", "incarnation")
        got = json.loads(ok(["cluster", "members", "-o", "json"], [via]))
        assert [{k: s[k] for k in stable} for s in got] == \
            [{k: s[k] for k in stable} for s in via.status()["servers"]], got

        out = ok(["cluster", "health"], [via])
        names, rows = table(out.split("\n\n")[0])
        assert names == ["ID", "HTTP ADDRESS", "ROLE", "HEALTHY", "FAILING", "DETAIL"], names
        assert sorted(r["ID"] for r in rows) == sorted(n.node_id for n in c.running())
        assert all(r["HEALTHY"] == "yes" and r["FAILING"] == "-" for r in rows), rows
        assert "Failure tolerance: 1 (3 of 3 voters healthy)" in out, out
        report = json.loads(ok(["cluster", "health", "-o", "json"], [via]))
        assert report["healthy"] is True and report["failure_tolerance"] == 1, report
        for m in report["members"]:
            assert m["healthy"] and m["health"]["status"] == "ok", m
            assert m["health"]["node_id"] == m["node_id"], m

    # A member down: health says so and exits 1; status shows what it cannot know.
    victim = f
    victim.kill()
    wait_for("the leader to count the dead member out",
             lambda: ld.status()["failure_tolerance"] == 0)
    rc, out, err = ctl(["cluster", "health"], [ld])
    assert rc == 1 and err == "", (rc, out, err)
    _, rows = table(out.decode().split("\n\n")[0])
    dead = [r for r in rows if r["ID"] == victim.node_id][0]
    assert dead["HEALTHY"] == "no" and dead["FAILING"] == "unreachable", dead
    assert "Failure tolerance: 0" in out.decode(), out
    rc, out, err = ctl(["cluster", "health", "-o", "json"], [ld])
    assert rc == 1 and err == "", (rc, err)
    report = json.loads(out)
    assert report["healthy"] is False, report
    assert [m for m in report["members"] if m["node_id"] == victim.node_id][0]["error"]
    _, rows = table(ok(["cluster", "status"], [ld]))
    assert [r for r in rows if r["ID"] == victim.node_id][0]["APPLIED"] == "-", rows


def put_table(out):
    line = out.strip()
    key, rest = line.rsplit(": ", 1)
    what, index = rest.split(" (index ")
    return key, what, int(index.rstrip(")"))


def test_kv_verbs(make):
    c = make().start(3)
    ld = c.leader()
    f = [n for n in c.running() if n is not ld][0]
    # Keys that need escaping, and ones a URL would otherwise normalise away ("..").
    odd_keys = ["plain", "a/b c", "dir/", "100%", "q?x=1&y#z", ".", "..", "a/../b",
                "h\u00e9llo/\u043a\u043b\u044e\u0447"]
    for via in (f, ld):
        def name(k):
            return k if via is f else "%s-%s" % (via.node_id, k)
        for i, key in enumerate(map(name, odd_keys)):
            value = "value %d of %s" % (i, key)
            k, what, index = put_table(ok(["kv", "put", key, value], [via]))
            assert (k, what) == (key, "created"), (k, what)
            # Exactly the bytes, under exactly that key (read back with curl's encoding).
            assert ok(["kv", "get", key], [via]) == value
            r = request(ld.http_addr, "GET", quoted(key))
            assert r.status == 200 and r.body == value.encode(), (key, r)
            assert int(r.header("X-Cloudless-Index")) == index
            meta = json.loads(ok(["kv", "get", key, "-o", "json"], [via]))
            assert meta["key"] == key and meta["modify_index"] == index, meta
            assert base64.b64decode(meta["value_b64"]) == value.encode(), meta
        key = name("plain")
        doc = json.loads(ok(["kv", "put", key, "second", "-o", "json"], [via]))
        assert doc["key"] == key and doc["created"] is False, doc
        index = doc["index"]

        # Compare-and-set: the right index writes, a stale one is a conflict (exit 1).
        k, what, index2 = put_table(ok(["kv", "put", key, "third", "--cas", str(index)], [via]))
        assert what == "updated" and index2 > index
        line = fails(["kv", "put", key, "fourth", "--cas", str(index)], 1, [via],
                     ["Conflict", "compare-and-set failed",
                      "current modify index is %d" % index2, "(409 cas-mismatch)"])
        assert line.startswith("cloudlessctl: Conflict: "), line
        fails(["kv", "put", key, "x", "--cas", "0"], 1, [via], ["409 cas-mismatch"])
        k, what, _ = put_table(ok(["kv", "put", via.node_id + "-new", "x", "--cas=0"], [via]))
        assert what == "created"
        assert ok(["kv", "get", key], [via]) == "third"

        # Idempotency-Key: a repeat answers with the first result; another body is refused.
        idem = ["--idempotency-key", "ctl-%s-1" % via.node_id]
        first = json.loads(ok(["kv", "put", key, "fifth", "-o", "json"] + idem, [via]))
        again = json.loads(ok(["kv", "put", key, "fifth", "-o", "json"] + idem, [via]))
        assert again == first, (first, again)
        fails(["kv", "put", key, "sixth"] + idem, 1, [via], ["409 idempotency-key-reused"])

        # From stdin, binary and all; `kv get > file` gives the same bytes back.
        blob = bytes(range(256)) + b"\n\x00tail\n"
        k, what, _ = put_table(ok(["kv", "put", via.node_id + "-blob", "-"], [via], stdin=blob))
        assert what == "created"
        rc, out, err = ctl(["kv", "get", via.node_id + "-blob"], [via])
        assert rc == 0 and out == blob and err == "", (rc, err)
        assert ld.get(via.node_id + "-blob").body == blob
        k, what, _ = put_table(ok(["kv", "put", via.node_id + "-empty", "-"], [via], stdin=b""))
        rc, out, err = ctl(["kv", "get", via.node_id + "-empty"], [via])
        assert (rc, out, err) == (0, b"", ""), (rc, out, err)

        # After "--" nothing is a flag: a value may start with a dash.
        put_table(ok(["kv", "put", "--", name("dash"), "-5"], [via]))
        assert ok(["kv", "get", "--", name("dash")], [via]) == "-5"

        # A stale read answers from the follower's own state.
        got = wait_for("stale read of %s" % key,
                       lambda: ctl(["kv", "get", key, "--stale"], [via])[1] == b"fifth")
        assert got

        # Deleting, and what is not there: exit 1 with the problem on one line.
        k, what, _ = put_table(ok(["kv", "del", via.node_id + "-new"], [via]))
        assert what == "deleted"
        for args in (["kv", "get", via.node_id + "-new"], ["kv", "del", via.node_id + "-new"],
                     ["kv", "get", via.node_id + "-new", "-o", "json"]):
            fails(args, 1, [via], ["cloudlessctl: Not Found: key not found (404 not-found)"])
        doc = json.loads(ok(["kv", "del", key, "-o", "json"] + ["--cas", str(first["index"])],
                            [via]))
        assert doc == {"key": key, "index": doc["index"], "deleted": True}, doc


def test_kv_ls(make):
    c = make().start(3)
    ld = c.leader()
    f = [n for n in c.running() if n is not ld][0]
    keys = ["many/%05d" % i for i in range(1205)]  # more than one page of 1000

    def put(k):
        r = request(ld.http_addr, "PUT", quoted(k), k.encode())
        assert r is not None and r.status == 200, r
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, keys))
    assert ok(["kv", "put", "other", "line one\nline two"], [ld])

    for via in (f, ld):
        names, rows = table(ok(["kv", "ls", "many/"], [via]))
        assert names == ["KEY", "VERSION", "CREATE INDEX", "MODIFY INDEX", "VALUE"], names
        assert [r["KEY"] for r in rows] == keys, len(rows)
        assert all(r["VALUE"] == r["KEY"] and r["VERSION"] == "1" for r in rows)
        doc = json.loads(ok(["kv", "ls", "many/", "-o", "json"], [via]))
        assert [i["key"] for i in doc["items"]] == keys and doc["continue"] is None
        # --limit: the continue token says where the rest begins (as the API's does).
        doc = json.loads(ok(["kv", "ls", "many/", "--limit", "1100", "-o", "json"], [via]))
        assert [i["key"] for i in doc["items"]] == keys[:1100], len(doc["items"])
        rest = request(via.http_addr, "GET", "/v1/kv/?prefix=many/&continue=" +
                       urllib.parse.quote(doc["continue"], safe="")).json()
        assert rest["items"][0]["key"] == keys[1100], rest["items"][0]
        # One page is printed exactly as the API answered it.
        one = ok(["kv", "ls", "many/", "--limit", "3", "-o", "json"], [via])
        assert one.endswith("\n")
        api = request(via.http_addr, "GET", "/v1/kv/?prefix=many/&limit=3").body.decode()
        assert one[:-1] == api, (one, api)
        _, rows = table(ok(["kv", "ls", "--stale", "--limit", "2", "many/"], [via]))
        assert [r["KEY"] for r in rows] == keys[:2]
        # All keys, and a value with a newline kept on its row.
        _, rows = table(ok(["kv", "ls"], [via]))
        assert [r["KEY"] for r in rows] == keys + ["other"]
        assert rows[-1]["VALUE"] == "line one\\nline two", rows[-1]
        # Nothing under a prefix: no table, a note on stderr, success.
        rc, out, err = ctl(["kv", "ls", "nothing/"], [via])
        assert (rc, out) == (0, b"") and err == "No keys found under nothing/.\n", (rc, err)
        assert json.loads(ok(["kv", "ls", "nothing/", "-o", "json"], [via])) == \
            {"items": [], "continue": None}


def test_endpoint_failover(make):
    c = make().start(3)
    ld = c.leader()
    f = [n for n in c.running() if n is not ld][0]
    down1, down2 = "127.0.0.1:%d" % free_port(), "127.0.0.1:%d" % free_port()

    # Nothing reachable: exit 3, every endpoint named on the one line.
    line = fails(["kv", "get", "k"], 3, [down1, down2], ["no endpoint reachable", down1, down2])
    assert line.startswith("cloudlessctl: no endpoint reachable: "), line
    fails(["cluster", "status"], 3, [down1], ["no endpoint reachable", down1])
    fails(["kv", "put", "k", "v"], 3, env={"CLOUDLESS_ENDPOINTS": down1},
          needles=["no endpoint reachable", down1])

    # The first one down: the next one answers, for reads, writes and changes alike.
    assert put_table(ok(["kv", "put", "fo", "v1"], [down1, f]))[1] == "created"
    assert ok(["kv", "get", "fo"], [down1, down2, f]) == "v1"
    check_status_table(ok(["cluster", "status"], [down1, f]), c, ld)
    # CLOUDLESS_ENDPOINTS is the default; the flag wins over it.
    assert ok(["kv", "get", "fo"], env={"CLOUDLESS_ENDPOINTS": "%s,%s" % (down1, f.http_addr)}) \
        == "v1"
    assert ok(["kv", "get", "fo"], [ld], env={"CLOUDLESS_ENDPOINTS": down1}) == "v1"

    # A 503 naming the leader: the leader is asked next (the stand-in is the only endpoint).
    hint = Standin("hint", leader=ld)
    no_leader = Standin("503")
    hang = Standin("hang")
    try:
        assert put_table(ok(["kv", "put", "hinted", "v2"], [hint]))[1] == "created"
        assert hint.requests == 1
        assert ld.get("hinted").body == b"v2"
        assert ok(["kv", "get", "hinted"], [hint]) == "v2"
        # A 503 without a hint: the next endpoint.
        assert ok(["kv", "get", "hinted"], [no_leader, f]) == "v2"
        assert no_leader.requests == 1
        # Every endpoint without a leader: the cluster's answer, exit 1.
        fails(["kv", "put", "k", "v"], 1, [no_leader],
              ["Service Unavailable: stand-in without a leader (503 no-leader)"])

        # An endpoint that never answers. A write that must not run twice is not sent
        # anywhere else: its outcome is unknown (exit 3), and it was not applied elsewhere.
        fails(["--timeout", "1s", "kv", "put", "unsent", "v"], 3, [hang, f],
              ["no answer", hang.http_addr, "may or may not have been applied"])
        assert ld.get("unsent").status == 404
        # With an Idempotency-Key it may be: the next endpoint applies it once.
        out = ok(["--timeout", "2s", "kv", "put", "sent", "v", "--idempotency-key", "once"],
                 [hang, f])
        assert put_table(out)[1] == "created"
        # Reads move on too.
        assert ok(["--timeout", "2s", "kv", "get", "sent"], [hang, f]) == "v"
    finally:
        for s in (hint, no_leader, hang):
            s.close()


def test_membership_verbs(make):
    c = make().start(3)
    ld = c.leader()
    f = [n for n in c.running() if n is not ld][0]
    n4 = c.node("coordinator-4").start()
    out = ok(["cluster", "join", "--node-id", n4.node_id, "--raft-addr", n4.raft_addr,
              "--http-addr", n4.http_addr], [f])
    head, rest = out.split("\n\n", 1)
    assert head == "node coordinator-4 joined the cluster as a voter", head
    names, rows = table(rest)
    assert names == ["ID", "RAFT ADDRESS", "HTTP ADDRESS", "ROLE", "LEADER"], names
    assert {r["ID"]: r["ROLE"] for r in rows}["coordinator-4"] == "voter", rows
    assert [r["ID"] for r in rows if r["LEADER"] == "yes"] == [ld.node_id], rows
    c.wait_voters(4)
    # The same join again changes nothing.
    doc = json.loads(ok(["cluster", "join", "--node-id", n4.node_id, "--raft-addr", n4.raft_addr,
                         "--http-addr", n4.http_addr, "-o", "json"], [ld]))
    assert doc["success"] is True and doc["changed"] is False, doc

    # Leadership to the new member, then to whoever is most caught up.
    doc = json.loads(ok(["cluster", "transfer", n4.node_id, "-o", "json"], [f]))
    assert doc["changed"] is True, doc
    assert doc["message"] == "leadership transferred to %s" % n4.node_id, doc
    wait_for("coordinator-4 to lead", lambda: c.leader_of() is n4)
    out = ok(["cluster", "transfer"], [ld])
    head = out.split("\n\n")[0]
    assert head.startswith("leadership transferred to ") and n4.node_id not in head, head
    new = head.rsplit(" ", 1)[1]
    wait_for("%s to lead" % new, lambda: c.leader_of() is c.nodes[new])
    wait_for("coordinator-4 to name %s as leader" % new,
             lambda: ok(["cluster", "leader"], [n4]).splitlines()[1].startswith(new + " "))
    fails(["cluster", "transfer", "no-such-node"], 1, [f],
          ["Not Found: node no-such-node is not a member of this cluster (404 unknown-node)"])

    # Removal, then the error of removing it again.
    doc = json.loads(ok(["cluster", "remove", n4.node_id, "-o", "json"], [f]))
    assert doc["changed"] is True, doc
    assert sorted(p["node_id"] for p in doc["cluster_peers"]) == \
        sorted(n.node_id for n in c.running() if n is not n4), doc
    fails(["cluster", "remove", n4.node_id], 1, [f],
          ["Not Found", "node coordinator-4 is not a member", "(404 unknown-node)"])
    # The removed node refuses service: it is skipped like any 503 (the next one answers).
    wait_for("the removed node to say so",
             lambda: (lambda r: r is not None and r.status == 503)(n4.req("GET", "/v1/kv/x")))
    assert put_table(ok(["kv", "put", "after", "remove"], [n4, f]))[1] == "created"
    # Its /raft/status answers (saying so); the cluster verbs ask the next endpoint.
    check_status_table(ok(["cluster", "status"], [n4, f]), Survivors(c, n4), c.leader())
    fails(["cluster", "members"], 1, [n4], ["coordinator-4 was removed from the cluster"])
    wait_for("the follower's configuration without coordinator-4",
             lambda: n4.node_id not in [r["ID"] for r in table(ok(["cluster", "members"], [f]))[1]])


if __name__ == "__main__":
    run([test_usage_and_help, test_cluster_verbs, test_kv_verbs, test_kv_ls,
         test_endpoint_failover, test_membership_verbs])
