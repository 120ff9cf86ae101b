"""cloudlessctl's workload and agent verbs against live 3-node clusters, with agents simulated
over plain HTTP (test_domain.SimAgent) so that replicas get placed, run and move: every verb
through the leader and a follower, in both output formats, checked against what the API
answers; wrong usage (2, one line with a hint), files that are not workloads, errors the
cluster answers (1), no endpoint reachable (3) and the next endpoint after a dead one;
listings longer than a page; `workload watch` printing each change (scale, deletion,
re-creation, a killed leader) until SIGINT ends it with exit status 0; `agent drain --wait`
returning once the drain completed, and failing when a given --timeout passes first."""
import json
import os
import signal
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor

from harness import free_port, request, run, scaled, wait_for
from test_ctl import CTL, ctl, fails, ok, one_line, table
from test_domain import EXTRA, cluster_with_agents, spec

WORKLOAD_HEADS = ["NAMESPACE", "NAME", "READY", "PHASE", "VERSION", "LABELS", "REASON"]
REPLICA_HEADS = ["REPLICA", "AGENT", "EPOCH", "DESIRED", "STATE", "RESTARTS", "EXIT CODE",
                 "PENDING REASON"]
AGENT_HEADS = ["ID", "NAME", "REGION", "ZONE", "STATE", "SCHEDULING", "CPU", "MEMORY", "LABELS"]
ASSIGNED_HEADS = ["REPLICA", "EPOCH", "DESIRED", "STATE", "RESTARTS", "EXIT CODE"]


def api(node, path):
    r = request(node.http_addr, "GET", path)
    assert r is not None, path
    return r


def sections(text):
    """The blank-line separated parts of an output (e.g. get's workload and replica tables)."""
    return [s for s in text.split("\n\n") if s.strip()]


def write_line(out):
    """("default/web", "created", "version", 12) from "default/web: created (version 12)"."""
    line = out.strip()
    assert "\n" not in line, out
    key, rest = line.split(": ", 1)
    action, paren = rest.rsplit(" (", 1)
    what, number = paren.rstrip(")").split(" ")[:2]
    return key, action, what, int(number.rstrip(";"))


def running(node, key):
    r = api(node, "/v1/workloads/%s" % key)
    return r.json()["status"]["running"] if r.status == 200 else None


def suffix(node):
    """"2" of coordinator-2: names of what a test creates through that node."""
    return node.node_id.rsplit("-", 1)[1]


def spec_file(doc):
    f = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
    f.write(doc if isinstance(doc, str) else json.dumps(doc))
    f.close()
    return f.name


# ---- usage ------------------------------------------------------------------------------

VERBS = [["workload", v] for v in ("apply", "list", "get", "delete", "scale", "watch")] + \
    [["agent", v] for v in ("list", "get", "cordon", "uncordon", "drain", "remove")]


def test_usage_and_help(make):
    nobody = "127.0.0.1:%d" % free_port()  # never contacted: usage is checked first
    good = spec_file(spec("web"))
    cases = [
        (["workload"], ["workload: missing verb", "apply", "watch"]),
        (["workload", "frob"], ["unknown verb \"frob\"", "'cloudlessctl workload --help'"]),
        (["workload", "apply"], ["--file is required", "'cloudlessctl workload apply --help'"]),
        (["workload", "apply", "-f"], ["--file: missing value"]),
        (["workload", "apply", "-f", good, "extra"], ["takes no arguments"]),
        (["workload", "apply", "-f", good, "--if-version", "x"], ["--if-version"]),
        (["workload", "apply", "-f", good, "--idempotency-key", "a b"],
         ["--idempotency-key: use visible ASCII characters"]),
        (["workload", "get"], ["workload get: missing arguments: expected NAMESPACE/NAME"]),
        (["workload", "get", "web"], ["expected NAMESPACE/NAME, got \"web\""]),
        (["workload", "get", "a/b/c"], ["expected NAMESPACE/NAME, got \"a/b/c\""]),
        (["workload", "get", "/web"], ["expected NAMESPACE/NAME"]),
        (["workload", "get", "a/b", "c/d"], ["too many arguments", "got 2"]),
        (["workload", "delete", "default/"], ["expected NAMESPACE/NAME"]),
        (["workload", "scale", "default/web"], ["--replicas is required"]),
        (["workload", "scale", "default/web", "--replicas", "-1"], ["--replicas"]),
        (["workload", "scale", "default/web", "--replicas", "two"], ["--replicas"]),
        (["workload", "scale", "--replicas", "2"], ["missing arguments"]),
        (["workload", "list", "-l", "tier"], ["--selector: expected KEY=VALUE, got \"tier\""]),
        (["workload", "list", "-l", "=x"], ["--selector: expected KEY=VALUE"]),
        (["workload", "list", "default"], ["takes no arguments"]),
        (["workload", "list", "-n"], ["--namespace: missing value"]),
        (["workload", "watch"], ["missing arguments: expected NAMESPACE/NAME"]),
        (["workload", "watch", "web"], ["expected NAMESPACE/NAME"]),
        (["workload", "watch", "default/web", "--stale"], ["unknown flag --stale"]),
        (["agent"], ["agent: missing verb", "cordon", "drain"]),
        (["agent", "list", "--state", "busy"], ["--state: must be ready or offline"]),
        (["agent", "list", "x"], ["takes no arguments"]),
        (["agent", "get"], ["agent get: missing arguments: expected ID"]),
        (["agent", "get", ""], ["the agent ID must not be empty"]),
        (["agent", "cordon", "a", "b"], ["too many arguments"]),
        (["agent", "uncordon"], ["missing arguments: expected ID"]),
        (["agent", "drain", "a", "--wait=maybe"], ["--wait"]),
        (["agent", "drain", "a", "--replicas", "1"], ["unknown flag --replicas"]),
        (["agent", "remove"], ["missing arguments: expected ID"]),
        (["agent", "remove", "a", "--idempotency-key", "\u00e9"], ["--idempotency-key"]),
    ]
    for args, needles in cases:
        line = fails(args, 2, [nobody], needles)
        assert line.startswith("cloudlessctl: "), line
        assert line.count("(see ") == 1, line

    # What a file holds is the cluster's to judge, but what is no workload at all is said
    # before anything is sent: exit status 1, one line naming the file.
    for content, needles in (("{", ["not JSON", "line 1"]), ("[1]", ["a workload is a JSON object"]),
                             ('{"command": ["x"]}', ["has no \"name\""]),
                             ('{"name": "w", "namespace": 3}', ["\"namespace\" must be a string"])):
        path = spec_file(content)
        fails(["workload", "apply", "-f", path], 1, [nobody], [path] + needles)
        os.unlink(path)
    fails(["workload", "apply", "-f", "-"], 1, [nobody], ["stdin", "not JSON"], stdin=b"")
    fails(["workload", "apply", "-f", "/nonexistent/web.json"], 1, [nobody],
          ["cannot open /nonexistent/web.json: No such file or directory"])
    # Nothing reachable: exit 3.
    fails(["workload", "apply", "-f", good], 3, [nobody], ["no endpoint reachable", nobody])
    fails(["agent", "list"], 3, [nobody], ["no endpoint reachable", nobody])
    os.unlink(good)

    top = ok(["--help"])
    for v in VERBS:
        assert "  " + " ".join(v) in top, (v, top)
    for group in ("workload", "agent"):
        g = ok([group, "--help"])
        assert g.startswith("Usage: cloudlessctl %s VERB" % group), g
    flags_of = {"apply": ["-f, --file", "--if-version", "--idempotency-key"],
                "list": [], "get": ["--stale"], "delete": ["--if-version", "--idempotency-key"],
                "scale": ["--replicas", "--if-version", "--idempotency-key"],
                "watch": ["SIGINT", "deleted", "keeps watching"],
                "cordon": ["--idempotency-key"], "uncordon": ["--idempotency-key"],
                "drain": ["--wait", "--timeout"], "remove": ["--idempotency-key"]}
    for v in VERBS:
        h = ok(v + ["--help"])
        assert h.startswith("Usage: cloudlessctl %s" % " ".join(v)), h
        for flag in flags_of[v[1]] + ["--endpoints", "--output", "--timeout"]:
            assert flag in h, (v, flag)
        assert max(len(line) for line in h.splitlines()) <= 80, v
    h = ok(["workload", "list", "--help"])
    assert "-n, --namespace" in h and "-l, --selector" in h, h
    h = ok(["agent", "list", "--help"])
    assert "--state" in h and "--zone" in h, h


# ---- workloads --------------------------------------------------------------------------

def check_workload_get(out, doc):
    """workload get's two tables against the API's document."""
    parts = sections(out)
    assert len(parts) == 2, out
    names, rows = table(parts[0])
    assert names == WORKLOAD_HEADS, names
    st = doc["status"]
    assert rows == [{"NAMESPACE": doc["namespace"], "NAME": doc["name"],
                     "READY": "%d/%d" % (st["running"], st["desired"]), "PHASE": st["phase"],
                     "VERSION": str(doc["version"]),
                     "LABELS": ",".join("%s=%s" % kv for kv in sorted(doc["labels"].items()))
                     or "-", "REASON": st["reason"] or "-"}], rows
    if not doc["replica_list"]:
        assert parts[1] == "No replicas.\n", parts[1]
        return
    names, rows = table(parts[1])
    assert names == REPLICA_HEADS, names
    assert [(r["REPLICA"], r["AGENT"], r["EPOCH"], r["DESIRED"], r["STATE"], r["RESTARTS"])
            for r in rows] == \
        [(x["id"], x["agent"] or "-", str(x["epoch"]), x["desired"], x["state"],
          str(x["restarts"])) for x in doc["replica_list"]], (rows, doc["replica_list"])


def settled_get(via, key, args=()):
    """workload get's output and the API's document for the same state of the workload
    (replicas report in between, so the two are read until they agree)."""
    def same():
        out = ok(["workload", "get", key] + list(args), [via])
        doc = api(via, "/v1/workloads/" + key).json()
        again = ok(["workload", "get", key] + list(args), [via])
        return out == again and (out, doc)
    return wait_for("a settled view of %s" % key, same)


def prints_as_api(args, via, path):
    """-o json prints the API's document as it answered: the bytes of a GET of path. Read
    again until the two agree, as replicas' reports may change the state between the reads
    (a CLI that reformats never agrees, and fails at the deadline)."""
    def same():
        out = ok(args, [via])[:-1]
        body = api(via, path).body.decode()
        return out == body
    wait_for("%s to print %s as the API answers it" % (" ".join(args), path), same)


def test_workload_verbs(make):
    c, nodes, agents = cluster_with_agents(make)
    try:
        ld = c.leader()
        f = [n for n in nodes if n is not ld][0]
        for via in (f, ld):
            name = "web-" + suffix(via)
            key = "default/" + name
            s = spec(name, replicas=2, labels={"tier": "web", "via": via.node_id})
            path = spec_file(s)
            # apply: create, then update from stdin; the line says which with the version.
            k, action, what, version = write_line(ok(["workload", "apply", "-f", path], [via]))
            assert (k, action, what) == (key, "created", "version"), (k, action, what)
            doc = api(ld, "/v1/workloads/" + key).json()
            assert doc["version"] == version and doc["replicas"] == 2, doc
            s["replicas"] = 3
            k, action, _, v2 = write_line(ok(["workload", "apply", "-f", "-"], [via],
                                             stdin=json.dumps(s).encode()))
            assert (k, action) == (key, "updated") and v2 > version, (k, action, v2)
            # -o json: the API's document as it answered (an update keeps the spec version).
            doc = json.loads(ok(["workload", "apply", "-f", path, "-o", "json"], [via]))
            assert doc["name"] == name and doc["replicas"] == 2, doc
            assert set(doc) == set(api(ld, "/v1/workloads/" + key).json()), doc
            os.unlink(path)
            # A namespace from the file; none means "default", as for the API.
            other = spec("batch", replicas=0)
            other["namespace"] = "jobs-" + suffix(via)
            assert write_line(ok(["workload", "apply", "-f", "-"], [via],
                                 stdin=json.dumps(other).encode()))[:2] == \
                ("%s/batch" % other["namespace"], "created")
            del other["namespace"]
            other["name"] = "nons-" + suffix(via)
            assert write_line(ok(["workload", "apply", "-f", "-"], [via],
                                 stdin=json.dumps(other).encode()))[:2] == \
                ("default/" + other["name"], "created")

            # scale, with If-Match: a stale version is a 412 naming the current one.
            cur = api(ld, "/v1/workloads/" + key).json()["version"]
            fails(["workload", "scale", key, "--replicas", "9", "--if-version", str(cur - 1)],
                  1, [via], ["Precondition Failed", "is at version %d" % cur,
                             "(412 version-mismatch)"])
            k, action, _, v3 = write_line(ok(["workload", "scale", key, "--replicas", "3",
                                              "--if-version", str(cur)], [via]))
            assert (k, action) == (key, "scaled to 3 replicas") and v3 > cur
            wait_for("3 of %s running" % key, lambda: running(ld, key) == 3)

            # get: the workload and its replicas, placed and running on the agents.
            out, doc = settled_get(via, key)
            check_workload_get(out, doc)
            assert sorted(x["agent"] for x in doc["replica_list"]) == \
                ["agent-1", "agent-2", "agent-3"], doc
            prints_as_api(["workload", "get", key, "-o", "json"], via, "/v1/workloads/" + key)
            out, doc = settled_get(via, key, ["--stale"])
            check_workload_get(out, doc)
            # Scaled down to one: "1 replica"; to 0: "No replicas." once the others stopped.
            k, action, _, _ = write_line(ok(["workload", "scale", key, "--replicas", "1"], [via]))
            assert action == "scaled to 1 replica", action
            doc = json.loads(ok(["workload", "scale", key, "--replicas", "0", "-o", "json"],
                                [via]))
            assert doc["replicas"] == 0 and doc["name"] == name, doc
            wait_for("%s's replicas gone" % key,
                     lambda: api(ld, "/v1/workloads/" + key).json()["replica_list"] == [])
            out, doc = settled_get(via, key)
            check_workload_get(out, doc)
            assert "No replicas." in out and "0/0" in out and "stopped" in out, out

            # Idempotency-Key: a repeat answers with the first result; another body is
            # refused.
            idem = ["--idempotency-key", "scale-" + via.node_id]
            first = ok(["workload", "scale", key, "--replicas", "2"] + idem, [via])
            assert ok(["workload", "scale", key, "--replicas", "2"] + idem, [via]) == first
            fails(["workload", "scale", key, "--replicas", "3"] + idem, 1, [via],
                  ["409 idempotency-key-reused"])
            # Create-only: --if-version 0 on an existing workload.
            fails(["workload", "apply", "-f", "-", "--if-version", "0"], 1, [via],
                  ["412 version-mismatch"], stdin=json.dumps(s).encode())
            # What the API refuses: one line with its detail, nothing changed.
            before = api(ld, "/v1/workloads/" + key).json()["version"]
            bad = dict(s, replicas=1001)
            fails(["workload", "apply", "-f", "-"], 1, [via],
                  ["Bad Request", "replicas must be", "(400 bad-workload)"],
                  stdin=json.dumps(bad).encode())
            fails(["workload", "get", "Default/Web"], 1, [via], ["400 bad-parameter",
                                                                 "DNS labels"])
            assert api(ld, "/v1/workloads/" + key).json()["version"] == before

        # list: every workload, by namespace, by label, through either node.
        every = api(ld, "/v1/workloads").json()["items"]
        assert len(every) == 6, every
        for via in (f, ld):
            names, rows = table(ok(["workload", "list"], [via]))
            assert names == WORKLOAD_HEADS, names
            assert [(r["NAMESPACE"], r["NAME"], r["VERSION"]) for r in rows] == \
                [(w["namespace"], w["name"], str(w["version"])) for w in every], rows
            prints_as_api(["workload", "list", "-o", "json"], via, "/v1/workloads")
            _, rows = table(ok(["workload", "list", "-n", "default", "--stale"], [via]))
            assert sorted(r["NAME"] for r in rows) == \
                sorted(w["name"] for w in every if w["namespace"] == "default"), rows
            _, rows = table(ok(["workload", "list", "-l", "tier=web"], [via]))
            assert sorted(r["NAME"] for r in rows) == sorted("web-" + suffix(n) for n in (f, ld))
            assert all(r["LABELS"].startswith("tier=web,via=") for r in rows), rows
            doc = json.loads(ok(["workload", "list", "-l", "via=" + via.node_id, "-o", "json"],
                                [via]))
            assert [w["labels"]["via"] for w in doc["items"]] == [via.node_id], doc
            # Nothing found: no table, a note on stderr, success (as kubectl get).
            rc, out, err = ctl(["workload", "list", "-n", "nothing"], [via])
            assert (rc, out) == (0, b"") and err == "No workloads found in namespace nothing.\n"
            rc, out, err = ctl(["workload", "list", "-l", "a=b"], [via])
            assert (rc, out, err) == (0, b"", "No workloads found with label a=b.\n"), err
            assert json.loads(ok(["workload", "list", "-n", "nothing", "-o", "json"], [via])) == \
                {"items": [], "continue": None}
            fails(["workload", "list", "-n", "Bad_NS"], 1, [via], ["400 bad-parameter"])

        # delete, with If-Match; then it is gone (exit 1 with the 404 on one line).
        for via in (f, ld):
            key = "default/web-" + suffix(via)
            cur = api(ld, "/v1/workloads/" + key).json()["version"]
            fails(["workload", "delete", key, "--if-version", str(cur + 1)], 1, [via],
                  ["412 version-mismatch"])
            k, action, what, index = write_line(ok(["workload", "delete", key,
                                                    "--if-version", str(cur)], [via]))
            assert (k, action, what) == (key, "deleted", "index") and index > cur
            for args in (["workload", "get", key], ["workload", "delete", key],
                         ["workload", "scale", key, "--replicas", "1"],
                         ["workload", "get", key, "-o", "json"]):
                fails(args, 1, [via], ["Not Found: no workload %s (404 not-found)" % key])
        doc = json.loads(ok(["workload", "delete", "jobs-%s/batch" % suffix(f), "-o", "json"],
                            [ld]))
        assert doc["deleted"] is True and isinstance(doc["index"], int), doc

        # The first endpoint down: the next one answers.
        down = "127.0.0.1:%d" % free_port()
        assert table(ok(["workload", "list"], [down, f]))[1]
        assert write_line(ok(["workload", "apply", "-f", "-"], [down, f],
                             stdin=json.dumps(spec("after", replicas=0)).encode()))[1] == \
            "created"
    finally:
        for a in agents:
            a.close()


def test_workload_list_pages(make):
    c = make(extra_args=EXTRA).start(3)
    ld = c.leader()
    f = [n for n in c.running() if n is not ld][0]
    names = ["w%04d" % i for i in range(1003)]  # more than one page of 1000

    def put(n):
        r = request(ld.http_addr, "PUT", "/v1/workloads/pages/" + n,
                    spec(n, replicas=0, namespace="pages"), timeout=30)
        assert r is not None and r.status == 201, r
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, names))
    for via in (f, ld):
        _, rows = table(ok(["workload", "list", "-n", "pages"], [via]))
        assert [r["NAME"] for r in rows] == names, len(rows)
        doc = json.loads(ok(["workload", "list", "-n", "pages", "-o", "json"], [via]))
        assert [w["name"] for w in doc["items"]] == names and doc["continue"] is None
        assert set(doc) == {"items", "continue"}, set(doc)


class Watch:
    """`cloudlessctl workload watch` running in the background, its output collected."""

    def __init__(self, args, endpoints):
        argv = [CTL, "--endpoints", ",".join(n.http_addr for n in endpoints),
                "workload", "watch"] + args
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDLESS_")}
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        self.out = b""
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for chunk in iter(lambda: self.p.stdout.read1(65536), b""):
            with self.lock:
                self.out += chunk

    def text(self):
        with self.lock:
            return self.out.decode()

    def wait_for(self, what, fn, timeout=10):
        """Waits until fn(output so far) holds; the watch must still be running."""
        def check():
            assert self.p.poll() is None, (self.p.returncode, self.p.stderr.read())
            return fn(self.text())
        return wait_for(what, check, timeout)

    def interrupt(self):
        self.p.send_signal(signal.SIGINT)
        try:
            rc = self.p.wait(timeout=scaled(5))
        except subprocess.TimeoutExpired:
            self.p.kill()
            raise AssertionError("the watch did not end on SIGINT")
        self.reader.join(timeout=scaled(5))
        return rc, self.text(), self.p.stderr.read().decode()

    def close(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


def snapshots(text):
    """The workload tables a table-mode watch printed: (READY, [(replica, state), ...])."""
    shots, parts = [], sections(text)
    for i, part in enumerate(parts):
        if not part.startswith("NAMESPACE"):
            continue
        ready = table(part)[1][0]["READY"]
        nxt = parts[i + 1] if i + 1 < len(parts) else ""
        reps = [(r["REPLICA"], r["STATE"]) for r in table(nxt)[1]] \
            if nxt.startswith("REPLICA") else []
        shots.append((ready, reps))
    return shots


def test_workload_watch(make):
    c, nodes, agents = cluster_with_agents(make)
    watches = []
    try:
        ld = c.leader()
        f = [n for n in nodes if n is not ld][0]
        key = "default/web"
        assert write_line(ok(["workload", "apply", "-f", "-"], [ld],
                             stdin=json.dumps(spec("web", replicas=1)).encode()))[1] == "created"
        wait_for("1 running", lambda: running(ld, key) == 1)
        # A workload that does not exist: an error at once, as get.
        fails(["workload", "watch", "default/nope"], 1, [f],
              ["Not Found: no workload default/nope (404 not-found)"])

        # Table mode through a follower: the current state, then each change.
        w = Watch([key], [f])
        watches.append(w)
        w.wait_for("the first snapshot",
                   lambda t: snapshots(t) and snapshots(t)[0][0] == "1/1")
        first = len(snapshots(w.text()))
        ok(["workload", "scale", key, "--replicas", "3"], [ld])
        w.wait_for("3 replicas running",
                   lambda t: ("3/3", [("default/web/%d" % i, "running") for i in range(3)])
                   in snapshots(t))
        shots = snapshots(w.text())
        assert len(shots) > first and all(s[0].endswith("/1") for s in shots[:first]), shots
        # Deleted: said once, and the watch goes on; created again: printed again.
        ok(["workload", "delete", key], [f])
        w.wait_for("the deletion", lambda t: "\ndefault/web: deleted\n" in t)
        ok(["workload", "apply", "-f", "-"], [f], stdin=json.dumps(spec("web", replicas=1)).encode())
        w.wait_for("the new workload",
                   lambda t: "deleted\n" in t and
                   snapshots(t.split("deleted\n", 1)[1]) and
                   snapshots(t.split("deleted\n", 1)[1])[-1] == ("1/1", [("default/web/0",
                                                                          "running")]))
        assert w.text().count("deleted") == 1, w.text()
        rc, out, err = w.interrupt()
        assert (rc, err) == (0, ""), (rc, err)
        assert out.endswith("\n") and not out.endswith("\n\n"), out[-200:]

        # -o json through the leader: one API document per line; the deletion is the
        # API's 404 problem document.
        w = Watch([key, "-o", "json"], [ld])
        watches.append(w)

        def docs(t):
            return [json.loads(line) for line in t.splitlines()]
        w.wait_for("the first document", lambda t: docs(t) and docs(t)[0]["name"] == "web")
        assert docs(w.text())[0] == api(ld, "/v1/workloads/" + key).json()
        ok(["workload", "scale", key, "--replicas", "2", "-o", "json"], [f])
        w.wait_for("2 running",
                   lambda t: any(d.get("status", {}).get("running") == 2 for d in docs(t)))
        ok(["workload", "delete", key], [ld])
        gone = w.wait_for("the deletion", lambda t: [d for d in docs(t) if d.get("status") == 404])
        assert gone[0]["type"].endswith("/not-found"), gone
        rc, out, err = w.interrupt()
        assert (rc, err) == (0, ""), (rc, err)
        lines = out.splitlines()
        assert all(line.startswith("{") for line in lines), out
        # Each line is a change: a wait that ran out is not printed again.
        assert all(a != b for a, b in zip(lines, lines[1:])), out

        # The leader killed mid-watch: the watch goes on through the election.
        ok(["workload", "apply", "-f", "-"], [ld], stdin=json.dumps(spec("web", replicas=1)).encode())
        wait_for("1 running", lambda: running(ld, key) == 1)
        w = Watch([key], [f] + [n for n in nodes if n is not f])
        watches.append(w)
        w.wait_for("the first snapshot", lambda t: snapshots(t) and snapshots(t)[-1][0] == "1/1")
        ld.kill(signal.SIGKILL)
        survivors = [n for n in nodes if n is not ld]
        wait_for("a new leader", lambda: c.leader_of(survivors))
        ok(["workload", "scale", key, "--replicas", "2"], survivors)
        w.wait_for("2 running after the election",
                   lambda t: any(s[0] == "2/2" for s in snapshots(t)), timeout=20)
        rc, out, err = w.interrupt()
        assert (rc, err) == (0, ""), (rc, err)
    finally:
        for w in watches:
            w.close()
        for a in agents:
            a.close()


# ---- agents -----------------------------------------------------------------------------

def agent_row(a):
    def mem(n):
        for unit in ("", "Ki", "Mi", "Gi", "Ti"):
            if n < 1024 or unit == "Ti":
                return ("%d%s" % (n, unit)) if n == int(n) else ("%.1f%s" % (n, unit))
            n /= 1024.0
    sched = ("drained" if a["drain_complete"] else "draining" if a["draining"] else
             "cordoned" if a["cordoned"] else "eligible")
    return {"ID": a["id"], "NAME": a["name"], "REGION": a["region"] or "-", "ZONE": a["zone"],
            "STATE": a["state"], "SCHEDULING": sched,
            "CPU": "%dm/%dm" % (a["allocated"]["cpu_millicores"], a["capacity"]["cpu_millicores"]),
            "MEMORY": "%s/%s" % (mem(a["allocated"]["memory_bytes"]),
                                 mem(a["capacity"]["memory_bytes"])),
            "LABELS": ",".join("%s=%s" % kv for kv in sorted(a["labels"].items())) or "-"}


def test_agent_verbs(make):
    c, nodes, agents = cluster_with_agents(make)
    try:
        ld = c.leader()
        f = [n for n in nodes if n is not ld][0]
        ok(["workload", "apply", "-f", "-"], [ld], stdin=json.dumps(spec("web")).encode())
        wait_for("3 running", lambda: running(ld, "default/web") == 3)
        for via in (f, ld):
            names, rows = table(ok(["agent", "list"], [via]))
            assert names == AGENT_HEADS, names
            assert rows == [agent_row(a) for a in api(ld, "/v1/agents").json()["items"]], rows
            assert [r["CPU"] for r in rows] == ["100m/4000m"] * 3, rows
            prints_as_api(["agent", "list", "-o", "json"], via, "/v1/agents")
            _, rows = table(ok(["agent", "list", "--zone", "zone-a"], [via]))
            assert [r["ID"] for r in rows] == ["agent-1", "agent-3"], rows
            _, rows = table(ok(["agent", "list", "--state", "ready", "--stale"], [via]))
            assert len(rows) == 3, rows
            rc, out, err = ctl(["agent", "list", "--state", "offline"], [via])
            assert (rc, out, err) == (0, b"", "No agents found.\n"), (rc, out, err)

            # get: the agent and what is assigned to it.
            out = ok(["agent", "get", "agent-2"], [via])
            doc = api(ld, "/v1/agents/agent-2").json()
            top, rest = sections(out)
            assert table(top) == (AGENT_HEADS, [agent_row(doc)]), top
            names, rows = table(rest)
            assert names == ASSIGNED_HEADS, names
            assert [(r["REPLICA"], r["EPOCH"], r["STATE"]) for r in rows] == \
                [(x["id"], str(x["epoch"]), x["state"]) for x in doc["replicas"]], rows
            assert len(rows) == 1 and rows[0]["STATE"] == "running", rows
            prints_as_api(["agent", "get", "agent-2", "-o", "json"], via, "/v1/agents/agent-2")
            fails(["agent", "get", "nobody"], 1, [via], ["Not Found: no agent nobody (404"])
            fails(["agent", "get", "a b"], 1, [via], ["400 bad-parameter"])

            # cordon and uncordon: idempotent, with their versions.
            k, action, what, v = write_line(ok(["agent", "cordon", "agent-2"], [via]))
            assert (k, action, what) == ("agent-2", "cordoned", "version"), (k, action)
            assert api(ld, "/v1/agents/agent-2").json()["cordoned"] is True
            assert write_line(ok(["agent", "cordon", "agent-2"], [via]))[3] == v  # unchanged
            _, rows = table(ok(["agent", "list"], [via]))
            assert [r["SCHEDULING"] for r in rows] == ["eligible", "cordoned", "eligible"]
            doc = json.loads(ok(["agent", "uncordon", "agent-2", "-o", "json"], [via]))
            assert doc["cordoned"] is False and doc["schedulable"] is True, doc
            idem = ["--idempotency-key", "cordon-" + via.node_id]
            first = ok(["agent", "cordon", "agent-3"] + idem, [via])
            assert ok(["agent", "cordon", "agent-3"] + idem, [via]) == first
            fails(["agent", "uncordon", "agent-3"] + idem, 1, [via],
                  ["409 idempotency-key-reused"])
            ok(["agent", "uncordon", "agent-3"], [via])
            for verb in ("cordon", "uncordon", "drain", "remove"):
                fails(["agent", verb, "nobody"], 1, [via], ["Not Found", "(404 not-found)"])

        # drain --wait through a follower: its replica moves, the agent stops it, and the
        # command returns once the leader marked the drain complete.
        rc, out, err = ctl(["agent", "drain", "agent-1", "--wait"], [f])
        assert (rc, err) == (0, ""), (rc, out, err)
        lines = out.decode().splitlines()
        assert write_line(lines[0])[:2] == ("agent-1", "draining"), lines
        assert lines[-1] == "agent-1: drain complete", lines
        assert all(l.startswith("agent-1: draining") for l in lines[1:-1]), lines
        assert len(set(lines)) == len(lines), lines
        doc = api(ld, "/v1/agents/agent-1").json()
        assert doc["drain_complete"] and doc["replicas"] == [], doc
        assert agents[0].runs() == {}, agents[0].runs()
        wait_for("3 running elsewhere", lambda: running(ld, "default/web") == 3)
        _, rows = table(ok(["agent", "list"], [ld]))
        assert rows[0]["SCHEDULING"] == "drained" and rows[0]["CPU"] == "0m/4000m", rows
        # Draining a drained agent: done at once.
        out = ok(["agent", "drain", "agent-1", "--wait"], [ld])
        assert out.splitlines()[0].startswith("agent-1: drained (version "), out
        assert out.splitlines()[-1] == "agent-1: drain complete", out
        ok(["agent", "uncordon", "agent-1"], [ld])

        # -o json through the leader: the drain's answer, then the agent at each step.
        rc, out, err = ctl(["agent", "drain", "agent-2", "--wait", "-o", "json"], [ld])
        assert (rc, err) == (0, ""), (rc, out, err)
        docs = [json.loads(line) for line in out.decode().splitlines()]
        assert docs[0]["id"] == "agent-2" and docs[0]["draining"], docs[0]
        assert docs[0]["drain_complete"] is False, docs[0]
        assert docs[-1]["drain_complete"] is True and docs[-1]["replicas"] == [], docs[-1]
        ok(["agent", "uncordon", "agent-2"], [ld])

        # A given --timeout bounds the wait: an agent that stopped heartbeating still has
        # its old processes reported running, so its drain cannot complete (until it is
        # found offline, 1.5 s after its last beat).
        wait_for("agent-3 to run a replica", lambda: agents[2].runs())
        agents[2].paused.set()
        rc, out, err = ctl(["agent", "drain", "agent-3", "--wait", "--timeout", "600ms"], [f])
        assert rc == 1, (rc, out, err)
        one_line(err, "agent-3: the drain did not complete within --timeout")
        assert out.decode().splitlines()[0].startswith("agent-3: draining (version "), out
        agents[2].paused.clear()
        out = ok(["agent", "drain", "agent-3", "--wait"], [f])
        assert out.splitlines()[-1] == "agent-3: drain complete", out

        # remove: the record goes; its replicas were moved already. (The simulated agent is
        # stopped first: it would enroll again when its heartbeat is refused.)
        agents[2].close()
        k, action, what, index = write_line(ok(["agent", "remove", "agent-3"], [f]))
        assert (k, action, what) == ("agent-3", "removed", "index"), (k, action, what)
        fails(["agent", "get", "agent-3"], 1, [ld], ["404 not-found"])
        agents[0].close()
        doc = json.loads(ok(["agent", "remove", "agent-1", "-o", "json"], [ld]))
        assert doc["deleted"] is True and doc["index"] > index, doc
        _, rows = table(ok(["agent", "list"], ["127.0.0.1:%d" % free_port(), f]))
        assert [r["ID"] for r in rows] == ["agent-2"], rows
    finally:
        for a in agents:
            a.close()


if __name__ == "__main__":
    run([test_usage_and_help, test_workload_verbs, test_workload_list_pages,
         test_workload_watch, test_agent_verbs])
