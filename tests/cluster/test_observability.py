"""Observability: /raft/status fields, /raft/health readiness and liveness, /metrics in
Prometheus text format (consistent with /raft/status), and the --metrics-addr listener."""
import math
import re
import shutil
import signal
import subprocess

from harness import (BIN, free_port, help_lines_with_values, original_grep_says_leader, request,
                     run, wait_for)

PROBLEM = "application/problem+json"


def ctype(r):
    return (r.header("Content-Type") or "").split(";")[0].strip()


# ---- a small parser for the Prometheus text exposition format (0.0.4) ----

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)')


def parse_labels(text):
    labels, pos = {}, 0
    while pos < len(text):
        m = LABEL.match(text, pos)
        assert m and m.end() > pos, "bad label set {%s}" % text
        assert m.group(1) not in labels, "label %s twice in {%s}" % (m.group(1), text)
        labels[m.group(1)] = m.group(2)
        pos = m.end()
    return labels


def parse_value(v):
    special = {"+Inf": math.inf, "-Inf": -math.inf, "NaN": math.nan}
    return special[v] if v in special else float(v)


class Metrics:
    """Families by name: {"type": t, "help": h, "samples": [(name, labels, value)]}."""

    def __init__(self, text):
        self.text = text
        self.families = {}
        assert text.endswith("\n"), "exposition must end with a newline"
        for line in text.splitlines():
            if not line:
                continue
            if line.startswith("# HELP "):
                name = line.split(" ", 3)[2]
                fam = self.families.setdefault(name, {"type": None, "help": None, "samples": []})
                assert fam["help"] is None and not fam["samples"], "HELP of %s late or twice" % name
                fam["help"] = line.split(" ", 3)[3] if line.count(" ") >= 3 else ""
                continue
            if line.startswith("# TYPE "):
                _, _, name, typ = line.split(" ")
                fam = self.families.setdefault(name, {"type": None, "help": None, "samples": []})
                assert fam["type"] is None and not fam["samples"], "TYPE of %s late or twice" % name
                assert typ in ("counter", "gauge", "histogram", "summary", "untyped"), line
                fam["type"] = typ
                continue
            assert not line.startswith("#"), "unexpected comment %r" % line
            m = SAMPLE.match(line)
            assert m, "bad sample line %r" % line
            name, value = m.group(1), parse_value(m.group(4))
            labels = parse_labels(m.group(3) or "")
            fam = self.family_of(name)
            assert fam is not None and fam["type"] is not None, "sample %r before its # TYPE" % line
            fam["samples"].append((name, labels, value))

    def family_of(self, sample_name):
        if sample_name in self.families:
            return self.families[sample_name]
        for suffix in ("_bucket", "_sum", "_count"):
            base = sample_name[:-len(suffix)]
            fam = self.families.get(base, {})
            if sample_name.endswith(suffix) and fam.get("type") == "histogram":
                return self.families[base]
        return None

    def type(self, name):
        return self.families[name]["type"] if name in self.families else None

    def samples(self, name, **labels):
        fam = self.family_of(name)
        if fam is None:
            return []
        return [(n, l, v) for n, l, v in fam["samples"]
                if n == name and all(l.get(k) == val for k, val in labels.items())]

    def value(self, name, **labels):
        s = self.samples(name, **labels)
        assert len(s) == 1, "expected one sample of %s%r, got %r" % (name, labels, s)
        return s[0][2]

    def histogram(self, name, **labels):
        """Checks the histogram invariants for one label set; returns (buckets, sum, count)."""
        assert self.type(name) == "histogram", (name, self.type(name))
        buckets = sorted((parse_value(l["le"]), v)
                         for _, l, v in self.samples(name + "_bucket", **labels)
                         if {k: x for k, x in l.items() if k != "le"} == labels)
        assert buckets and buckets[-1][0] == math.inf, "%s has no +Inf bucket: %r" % (name, buckets)
        counts = [v for _, v in buckets]
        assert counts == sorted(counts), "%s buckets not cumulative: %r" % (name, buckets)
        count = self.value(name + "_count", **labels)
        total = self.value(name + "_sum", **labels)
        assert counts[-1] == count, "%s +Inf bucket %r != count %r" % (name, counts[-1], count)
        assert total >= 0
        return buckets, total, count


def scrape(node):
    r = node.req("GET", "/metrics", timeout=3)
    assert r is not None and r.status == 200, r
    assert r.header("Content-Type").startswith("text/plain; version=0.0.4"), r.headers
    return Metrics(r.body.decode())


def put_ok(node, key, value):
    r = node.put(key, value)
    return r if r is not None and r.status == 200 else None


# ---- tests ----

def test_status_fields(make):
    c = make().start(3)
    ld = c.leader()
    for i in range(5):
        wait_for("a write", lambda: put_ok(ld, "status-%d" % i, "v"))
    c.wait_converged()
    by_id = {n.node_id: n for n in c.running()}
    terms = set()
    for n in c.running():
        s = n.status()
        assert s["node_id"] == n.node_id, s
        assert s["state"] == ("leader" if n is ld else "follower"), s
        assert isinstance(s["term"], int) and s["term"] >= 1, s
        terms.add(s["term"])
        assert s["leader"] == {"node_id": ld.node_id, "raft_addr": ld.raft_addr,
                               "http_addr": ld.http_addr}, s
        for k in ("commit_index", "applied_index", "last_log_index"):
            assert isinstance(s[k], int) and s[k] >= 6, (k, s)  # bootstrap, joins and 5 writes
        assert s["applied_index"] <= s["commit_index"] <= s["last_log_index"], s
        assert isinstance(s["last_contact_ms"], int), s
        if n is ld:
            assert s["last_contact_ms"] == 0, s
        else:
            assert 0 <= s["last_contact_ms"] <= 10 * c.election_ms, s
        assert len(s["servers"]) == 3, s
        for srv in s["servers"]:
            node = by_id[srv["node_id"]]
            assert (srv["raft_addr"], srv["http_addr"], srv["role"]) == (
                node.raft_addr, node.http_addr, "voter"), srv
            if n is ld:
                assert isinstance(srv["match_index"], int) and isinstance(srv["lag"], int), srv
                assert srv["lag"] == s["last_log_index"] - srv["match_index"], (srv, s)
                assert 0 <= srv["lag"] <= s["last_log_index"], srv
            else:
                assert "match_index" not in srv and "lag" not in srv, srv
        assert sorted(x["node_id"] for x in s["servers"]) == sorted(by_id), s
        r = n.req("GET", "/raft/status")
        assert ctype(r) == "application/json", r.headers
        assert r.header("X-Cloudless-Served-By") == n.node_id, r.headers
    assert len(terms) == 1, terms
    # The leader's own entry is fully matched; followers catch up to lag 0 once idle.
    def leader_sees_no_lag():
        s = ld.status()
        return s if all(x["lag"] == 0 for x in s["servers"]) else None
    s = wait_for("zero replication lag", leader_sees_no_lag)
    assert all(x["match_index"] == s["last_log_index"] for x in s["servers"]), s


def test_health(make):
    c = make().start(3)
    c.leader()
    checks = ("leader_known", "leader_quorum_contact", "applied_lag")
    for n in c.running():
        def healthy():
            r = n.req("GET", "/raft/health")
            return r if r is not None and r.status == 200 else None
        r = wait_for("%s ready" % n, healthy)
        assert ctype(r) == "application/json", r.headers
        body = r.json()
        assert body["status"] == "ok" and body["failing"] == [], body
        for name in checks:
            assert body["checks"][name]["ok"] is True, body
            assert isinstance(body["checks"][name]["detail"], str), body
        live = n.req("GET", "/raft/health?mode=live")
        assert live.status == 200 and live.json()["status"] == "ok", live
        ready = n.req("GET", "/raft/health?mode=ready")
        assert ready.status == 200, ready
        bad = n.req("GET", "/raft/health?mode=sideways")
        assert bad.status == 400 and ctype(bad) == PROBLEM, bad
        assert bad.json()["status"] == 400, bad

    survivor = c.leader()
    for n in c.running():
        if n is not survivor:
            n.kill(signal.SIGKILL)

    def unready():
        r = survivor.req("GET", "/raft/health")
        return r if r is not None and r.status == 503 else None
    r = wait_for("survivor to report not ready", unready, timeout=15)
    assert ctype(r) == PROBLEM, r.headers
    assert r.header("Retry-After") is not None and int(r.header("Retry-After")) >= 1, r.headers
    body = r.json()
    assert body["status"] == 503 and body["title"] and body["type"], body
    assert body["failing"], body
    assert set(body["failing"]) <= set(checks), body
    assert "leader_quorum_contact" in body["failing"], body
    for name in checks:
        assert body["checks"][name]["ok"] is (name not in body["failing"]), body
    assert body["failing"][0] in body["detail"], body
    # Liveness does not depend on the cluster.
    live = survivor.req("GET", "/raft/health?mode=live")
    assert live is not None and live.status == 200, live
    bad = survivor.req("GET", "/raft/health?mode=sideways")
    assert bad.status == 400 and ctype(bad) == PROBLEM, bad


GAUGES = ["cloudless_coordinator_is_leader", "cloudless_raft_has_leader", "cloudless_raft_term",
          "cloudless_raft_commit_index", "cloudless_raft_last_log_index",
          "cloudless_coordinator_raft_applied_index", "cloudless_raft_node_state",
          "cloudless_raft_peers", "cloudless_raft_voters", "cloudless_raft_failure_tolerance",
          "cloudless_raft_healthy_voters", "cloudless_raft_removed",
          "cloudless_build_info"]
COUNTERS = ["cloudless_raft_leader_changes_seen_total", "cloudless_raft_snapshot_creation_total",
            "cloudless_raft_snapshot_restore_total", "cloudless_http_requests_total"]
HISTOGRAMS = ["cloudless_raft_apply_latency_seconds", "cloudless_http_request_duration_seconds"]


def test_metrics(make):
    c = make().start(3)
    ld = c.leader()
    writes = 10
    for i in range(writes):
        wait_for("a write", lambda: put_ok(ld, "metrics-%d" % i, "v"))
    c.wait_converged()
    version = subprocess.run([BIN, "--version"], capture_output=True, text=True).stdout.split()[-1]

    for n in c.running():
        is_leader = n is ld
        text = n.metrics()
        assert re.search(r"^cloudless_coordinator_is_leader %d$" % is_leader, text, re.M), text
        assert not re.search(r"^cloudless_coordinator_is_leader %d$" % (not is_leader), text, re.M)
        m = Metrics(text)
        for name in GAUGES:
            assert m.type(name) == "gauge", (name, m.type(name))
        for name in COUNTERS:
            assert m.type(name) == "counter", (name, m.type(name))
        for name in HISTOGRAMS:
            assert m.type(name) == "histogram", (name, m.type(name))

        # Raft gauges agree with /raft/status (retry: a heartbeat may move an index between
        # the two requests).
        def consistent():
            s = n.status()
            mm = scrape(n)
            ok = (mm.value("cloudless_raft_term") == s["term"] and
                  mm.value("cloudless_raft_commit_index") == s["commit_index"] and
                  mm.value("cloudless_raft_last_log_index") == s["last_log_index"] and
                  mm.value("cloudless_coordinator_raft_applied_index") == s["applied_index"])
            return (mm, s) if ok else None
        mm, s = wait_for("metrics consistent with /raft/status on %s" % n, consistent)
        assert mm.value("cloudless_raft_has_leader") == 1
        assert mm.value("cloudless_raft_peers") == len(s["servers"]) == 3
        assert mm.value("cloudless_raft_voters") == 3
        # Followers report the leader's figure, which they ask for once a second.
        wait_for("failure tolerance 1 on %s" % n,
                 lambda: scrape(n).value("cloudless_raft_failure_tolerance") == 1)
        assert scrape(n).value("cloudless_raft_healthy_voters") == 3
        assert mm.value("cloudless_raft_node_state", node_id=n.node_id) == (2 if is_leader else 0)
        assert len(mm.samples("cloudless_raft_node_state")) == 1
        assert mm.value("cloudless_raft_leader_changes_seen_total") >= 1
        assert mm.value("cloudless_build_info", version=version) == 1
        for fam in ("cloudless_raft_snapshot_creation_total",
                    "cloudless_raft_snapshot_restore_total"):
            results = sorted(l["result"] for _, l, _ in mm.samples(fam))
            assert results == ["failure", "success"], (fam, results)
            assert all(v >= 0 for _, _, v in mm.samples(fam))
        lag = mm.samples("cloudless_raft_follower_replication_lag_entries")
        if is_leader:
            assert mm.type("cloudless_raft_follower_replication_lag_entries") == "gauge"
            followers = sorted(x.node_id for x in c.running() if x is not ld)
            assert sorted(l["follower_id"] for _, l, _ in lag) == followers, lag
            assert all(v >= 0 for _, _, v in lag), lag
            _, total, count = mm.histogram("cloudless_raft_apply_latency_seconds")
            assert count >= writes and total > 0, (count, total)
        else:
            assert lag == [], lag
        # This node has answered our /raft/status polls: they are counted by route and code.
        status_ok = mm.value("cloudless_http_requests_total", route="/raft/status", code="200")
        assert status_ok >= 1, status_ok
        for _, labels, v in mm.samples("cloudless_http_requests_total"):
            assert set(labels) == {"route", "code"} and re.fullmatch(r"[1-5]\d\d", labels["code"])
        _, _, count = mm.histogram("cloudless_http_request_duration_seconds", route="/raft/status")
        # The /raft/status request in flight during the scrape may not be observed yet.
        assert count >= status_ok - 1, (count, status_ok)

        # Counters never go down between scrapes.
        again = scrape(n)
        for _, labels, v in mm.samples("cloudless_http_requests_total"):
            assert again.value("cloudless_http_requests_total", **labels) >= v, labels

    leader_writes = scrape(ld).samples("cloudless_http_requests_total", route="/v1/kv/{key}",
                                       code="200")
    assert leader_writes and leader_writes[0][2] >= writes, leader_writes

    # The users' unanchored grep counts exactly the leader: no HELP line reads as a sample.
    for n in c.running():
        assert help_lines_with_values(n.metrics()) == [], n
    said = [n for n in c.running()
            if original_grep_says_leader(int(n.http_addr.rsplit(":", 1)[1]))]
    assert said == [c.leader()], said

    promtool = shutil.which("promtool")
    assert promtool, "promtool is needed (Debian's prometheus package; install-deps --test)"
    for n in c.running():
        p = subprocess.run([promtool, "check", "metrics"], input=n.metrics(), capture_output=True,
                           text=True, timeout=30)
        assert p.returncode == 0, "promtool check metrics failed on %s:\n%s%s" % (
            n, p.stdout, p.stderr)


def test_metrics_addr(make):
    c = make()
    maddr = "127.0.0.1:%d" % free_port()
    n = c.node("coordinator-1").start(bootstrap=True, extra=["--metrics-addr", maddr])
    c.leader()
    r = wait_for("metrics listener", lambda: request(maddr, "GET", "/metrics"))
    assert r.status == 200 and r.header("Content-Type").startswith("text/plain"), r
    assert re.search(r"^cloudless_coordinator_is_leader 1$", r.body.decode(), re.M), r.body
    Metrics(r.body.decode())
    h = request(maddr, "GET", "/raft/health")
    assert h is not None and h.status == 200 and h.json()["status"] == "ok", h
    live = request(maddr, "GET", "/raft/health?mode=live")
    assert live is not None and live.status == 200, live
    for method, path in (("GET", "/v1/kv/x"), ("PUT", "/v1/kv/x"), ("GET", "/raft/status"),
                         ("POST", "/raft/join")):
        r = request(maddr, method, path, "{}" if method != "GET" else None)
        assert r is not None and r.status == 404, (method, path, r)
        assert ctype(r) == PROBLEM and r.json()["status"] == 404, r
    # Nothing was written through the metrics listener; the main listener still serves the API.
    assert n.get("x").status == 404
    assert n.put("x", "1").status == 200
    assert n.get("x").body == b"1"


if __name__ == "__main__":
    run([test_status_fields, test_health, test_metrics, test_metrics_addr])
