"""One bootstrapped coordinator under valgrind memcheck: a clean run has no reports.

The process is the normal (non-sanitized) build, started exactly like a user would but under
  valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite
           --track-origins=no --suppressions=tests/valgrind.supp
It serves the whole single-node API (writes with and without Idempotency-Key and CAS, deletes,
linearizable and stale reads, listings with continuation, status, health, metrics on both
listeners, the error answers), takes a raft snapshot, then gets SIGTERM. It must exit 0 and the
valgrind log must report no error and no definitely lost block. Valgrind slows everything
down 20-50x: the election timeout, the request timeouts and every deadline are generous.

Environment: CLOUDLESS_BIN (coordinator), VALGRIND (valgrind binary), CLOUDLESS_VALGRIND_SUPP
(suppressions file); meson passes all three.
"""
import glob
import os
import re
import sys
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cluster"))
from harness import BIN, free_port, request, run, wait_for  # noqa: E402

VALGRIND = os.environ.get("VALGRIND", "valgrind")
SUPP = os.environ.get("CLOUDLESS_VALGRIND_SUPP",
                      os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "valgrind.supp"))
T = 60.0  # per-request timeout under valgrind


def valgrind_report(node):
    logs = glob.glob(os.path.join(node.cluster.dir, "valgrind-*.log"))
    return "\n".join(open(p, errors="replace").read() for p in logs)


def check(what, r, status):
    assert r is not None, "%s: no response" % what
    assert r.status == status, "%s: expected %d, got %r" % (what, status, r)
    return r


def problem(what, r, status):
    check(what, r, status)
    body = r.json()
    assert body.get("status") == status and isinstance(body.get("detail"), str), (what, body)
    return body


def test_single_node_under_valgrind(make):
    c = make("valgrind")
    n = c.node("vg-1")
    metrics_addr = "127.0.0.1:%d" % free_port()
    args = [VALGRIND, "--error-exitcode=99", "--leak-check=full",
            "--errors-for-leak-kinds=definite", "--track-origins=no", "--num-callers=30",
            "--suppressions=" + SUPP,
            # The coordinator allocates with jemalloc: have memcheck replace that malloc too.
            "--soname-synonyms=somalloc=*jemalloc*",
            "--log-file=" + os.path.join(c.dir, "valgrind-%p.log"),
            BIN, "--node-id", n.node_id, "--bootstrap", "--data-dir", n.data_dir,
            "--raft-addr", n.raft_addr, "--http-addr", n.http_addr,
            "--metrics-addr", metrics_addr,
            # Valgrind runs us 20-50x slower: timers must not fire on their own lateness.
            "--heartbeat-ms", "500", "--election-ms", "5000", "--forward-timeout-ms", "60000",
            # Small enough that the writes below make raft take a snapshot.
            "--snapshot-threshold", "64", "--snapshot-trailing", "16",
            "--max-body", "4k"]
    n.start_args(args)
    try:
        exercise(n, metrics_addr)
        rc = n.stop(timeout=300)
    except BaseException:
        sys.stderr.write(valgrind_report(n)[-20000:])
        raise
    report = valgrind_report(n)
    summary = re.findall(r"ERROR SUMMARY: (\d+) errors", report)
    lost = re.findall(r"definitely lost: ([\d,]+) bytes", report)
    clean = bool(summary) and all(x == "0" for x in summary)  # -s prints it twice
    if rc != 0 or not clean or any(x != "0" for x in lost):
        sys.stderr.write(report[-30000:])
        sys.stderr.write("\n----- coordinator log -----\n" + n.log()[-6000:])
    assert rc == 0, "exit code %r (99 = valgrind found errors)" % rc
    assert clean, "valgrind: %r errors" % summary
    assert all(x == "0" for x in lost), "valgrind: definitely lost %r" % lost
    log = n.log()
    assert "Snapshot taken" in log, "no raft snapshot was taken"
    for line in report.splitlines():
        if re.search(r"(ERROR SUMMARY|definitely lost|indirectly lost|possibly lost|"
                     r"still reachable|total heap usage):", line):
            print(line.split("== ", 1)[-1].strip(), flush=True)


def exercise(n, metrics_addr):
    # Start-up under valgrind takes a while: wait for a ready leader.
    wait_for("the node to be a healthy leader",
             lambda: (r := n.req("GET", "/raft/health", timeout=T)) is not None and r.status == 200,
             timeout=300, interval=0.5)

    # Writes: plain, idempotent (and its replay), compare-and-set, deletes.
    for i in range(80):
        check("put %d" % i, n.req("PUT", "/v1/kv/item/%03d" % i, "value-%d" % i, timeout=T), 200)
    idem = {"Idempotency-Key": "vg-req-1"}
    first = check("idempotent put", n.req("PUT", "/v1/kv/idem", "once", idem, timeout=T), 200)
    again = check("idempotent retry", n.req("PUT", "/v1/kv/idem", "once", idem, timeout=T), 200)
    assert again.header("X-Cloudless-Idempotent-Replay") == "true", again.headers
    assert again.json()["index"] == first.json()["index"], (first, again)
    problem("idempotency key reuse", n.req("PUT", "/v1/kv/idem", "other", idem, timeout=T), 409)
    check("cas create", n.req("PUT", "/v1/kv/lock?cas=0", "owner-1", timeout=T), 200)
    problem("cas conflict", n.req("PUT", "/v1/kv/lock?cas=0", "owner-2", timeout=T), 409)
    check("delete", n.req("DELETE", "/v1/kv/item/000", timeout=T), 200)
    problem("delete missing", n.req("DELETE", "/v1/kv/item/000", timeout=T), 404)
    check("utf-8 key", n.req("PUT", "/v1/kv/" + urllib.parse.quote("caf\u00e9"), "x", timeout=T),
          200)

    # Reads: linearizable, stale, JSON form, missing.
    r = check("get", n.req("GET", "/v1/kv/item/005", timeout=T), 200)
    assert r.body == b"value-5", r
    check("stale get", n.req("GET", "/v1/kv/item/006?consistency=stale", timeout=T), 200)
    body = check("json get", n.req("GET", "/v1/kv/lock?json", timeout=T), 200).json()
    assert body["value_b64"] == "b3duZXItMQ==", body
    problem("missing key", n.req("GET", "/v1/kv/nope", timeout=T), 404)

    # Listing, following the continuation token to the end.
    seen, token = 0, None
    while True:
        q = "/v1/kv/?prefix=item/&limit=25" + ("&continue=" + urllib.parse.quote(token)
                                               if token else "")
        page = check("list", n.req("GET", q, timeout=T), 200).json()
        seen += len(page["items"])
        token = page["continue"]
        if not token:
            break
    assert seen == 79, seen
    check("stale list", n.req("GET", "/v1/kv/?consistency=stale", timeout=T), 200)

    # Status, health, metrics on both listeners.
    st = check("status", n.req("GET", "/raft/status?digest", timeout=T), 200).json()
    assert st["state"] == "leader", st
    check("health", n.req("GET", "/raft/health", timeout=T), 200)
    m = check("metrics", n.req("GET", "/metrics", timeout=T), 200).body.decode()
    assert "cloudless_coordinator_is_leader 1" in m
    check("metrics listener", request(metrics_addr, "GET", "/metrics", timeout=T), 200)
    problem("metrics listener other path", request(metrics_addr, "GET", "/v1/kv/x", timeout=T),
            404)

    # Error answers: validation, routing, size limit, a path that is not UTF-8.
    problem("bad join", n.req("POST", "/raft/join", {"node_id": 5}, timeout=T), 400)
    problem("remove unknown", n.req("POST", "/raft/remove", {"node_id": "ghost"}, timeout=T), 404)
    problem("no route", n.req("GET", "/nope", timeout=T), 404)
    problem("not utf-8", n.req("GET", "/%ff%fe", timeout=T), 404)
    problem("method", n.req("PATCH", "/v1/kv/x", timeout=T), 405)
    problem("bad cas", n.req("PUT", "/v1/kv/x?cas=abc", "v", timeout=T), 400)
    problem("too large", n.req("PUT", "/v1/kv/big", "x" * 5000, timeout=T), 413)

    # The 80+ entries above passed --snapshot-threshold: raft snapshots (on a worker thread).
    wait_for("a raft snapshot", lambda: "Snapshot taken" in n.log(), timeout=120, interval=0.5)


if __name__ == "__main__":
    run([test_single_node_under_valgrind])
