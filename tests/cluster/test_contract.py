"""Contract test: real responses from real clusters against openapi/openapi.yaml.

Every request below is sent to a running coordinator and recorded as it came back (status,
headers, body). tests/cluster/contract_validate.mjs (Node, ajv) then checks each one against
the operation the spec documents for its path and method: the status must be listed, the
Content-Type documented, the body valid against the schema and the headers present and well
formed. Finally every documented (operation, status) pair must have been provoked, except the
few listed in NOT_PROVOKED with the reason.

Needs the npm packages of package.json: run `npm ci` at the repository root first.
"""
import base64
import json
import os
import shutil
import signal
import struct
import subprocess
import threading
import tempfile
from urllib.parse import quote

from harness import free_port, parse_responses, raw_exchange, request, run, scaled, wait_for

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SPEC = os.path.join(ROOT, "openapi", "openapi.yaml")
VALIDATOR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "contract_validate.mjs")

# Documented statuses no test here can provoke on demand, and why.
NOT_PROVOKED = {
    500: "an internal failure (raft or store error, JSON encoding failure)",
    507: "the leader's disk full or failing",
}
NOT_PROVOKED_OP = {
    ("POST /raft/join", 409): "replacing an entry without a reachable quorum needs a cluster that "
                              "has lost a voter while an address moves",
    ("POST /raft/join", 504): "a join's deadline is ?timeout plus 60 s of catch-up time",
    ("GET /raft/status", 503): "only while shutting down",
    ("GET /metrics", 503): "only while shutting down",
    ("POST /raft/forward", 503): "only while shutting down",
}


def require_node_modules():
    missing = [p for p in ("ajv", "ajv-formats", "yaml", "@redocly/cli")
               if not os.path.isdir(os.path.join(ROOT, "node_modules", p))]
    if missing:
        raise AssertionError("npm packages missing (%s): run `npm ci` in %s first"
                             % (", ".join(missing), ROOT))
    if shutil.which("node") is None:
        raise AssertionError("node is not installed (needed for the contract validator)")


class Recorder:
    def __init__(self):
        self.exchanges = []

    def send(self, node, method, path, body=None, headers=None, expect=None, timeout=10.0):
        """Sends one request, records the response and checks it is the one we meant to
        provoke (so coverage below means something)."""
        addr = node if isinstance(node, str) else node.http_addr
        r = request(addr, method, path, body, headers, timeout=scaled(timeout))
        assert r is not None, "no response to %s %s" % (method, path)
        self.exchanges.append({"method": method, "path": path, "status": r.status,
                               "headers": r.headers,
                               "body_b64": base64.b64encode(r.body).decode()})
        if expect is not None:
            expected = expect if isinstance(expect, tuple) else (expect,)
            assert r.status in expected, "%s %s: expected %s, got %r" % (method, path, expect, r)
        return r

    def send_raw(self, node, method, path, data, expect):
        """Raw bytes (what no HTTP client library would send), recorded like send."""
        got, _ = raw_exchange(node.http_addr, data, timeout=scaled(5))
        rs = [r for r in parse_responses(got) if r.status >= 200]
        assert len(rs) == 1 and rs[0].status == expect, "%s %s: expected %s, got %r" % (
            method, path, expect, rs)
        self.exchanges.append({"method": method, "path": path, "status": rs[0].status,
                               "headers": {k.lower(): v for k, v in rs[0].headers},
                               "body_b64": base64.b64encode(rs[0].body).decode()})

    def refused_before_routing(self, node, method, path):
        """414, 417, 431 and 501 are answered on any operation before routing (documented
        wherever 413 is): provoke each on this one."""
        line = "%s %s HTTP/1.1\r\nHost: x\r\n" % (method, path)
        long_path = path + ("&" if "?" in path else "?") + "pad=" + "a" * 9000
        self.send_raw(node, method, path, ("%s %s HTTP/1.1\r\nHost: x\r\n\r\n"
                                           % (method, long_path)).encode(), 414)
        self.send_raw(node, method, path, (line + "Expect: nothing\r\nContent-Length: 1"
                                           "\r\n\r\nv").encode(), 417)
        self.send_raw(node, method, path, (line + "X-Pad: " + "p" * 40000 + "\r\n\r\n").encode(),
                      431)
        self.send_raw(node, method, path, (line + "Transfer-Encoding: gzip\r\n\r\nv").encode(),
                      501)

    def validate(self):
        dump = os.environ.get("CLOUDLESS_CONTRACT_DUMP")
        if dump:  # keep the exchanges for debugging the spec or the validator
            with open(dump, "w") as f:
                json.dump(self.exchanges, f, indent=1)
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(self.exchanges, f)
            path = f.name
        try:
            p = subprocess.run(["node", VALIDATOR, SPEC, path], capture_output=True, text=True,
                               timeout=120, cwd=ROOT)
        finally:
            os.unlink(path)
        assert p.returncode == 0, "validator failed (%d): %s" % (p.returncode, p.stderr)
        return json.loads(p.stdout)


def big(n):
    return "b" * n


MAX_BODY = 4096


def exercise_kv(rec, ld, f):
    """Every kv operation and status a healthy 3-node cluster can give."""
    for n in (ld, f):
        k = "/v1/kv/contract%2F" + n.node_id
        rec.send(n, "PUT", k, "v1", expect=200)
        rec.send(n, "PUT", k, "v2", expect=200)
        rec.send(n, "GET", k, expect=200)
        rec.send(n, "GET", k + "?json", expect=200)
        rec.send(n, "GET", k + "?consistency=stale", expect=200)
        rec.send(n, "GET", k + "?stale&json", expect=200)
        rec.send(n, "GET", "/v1/kv/contract/missing/%s?consistency=stale" % n.node_id, expect=404)
        rec.send(n, "GET", "/v1/kv/missing-" + n.node_id, expect=404)
        rec.send(n, "GET", k + "?consistency=linearizable&timeout=2s", expect=200)
        # CAS and idempotency.
        cur = json.loads(rec.send(n, "GET", k + "?json", expect=200).body)["modify_index"]
        rec.send(n, "PUT", k + "?cas=0", "x", expect=409)
        rec.send(n, "PUT", k + "?cas=%d" % (cur + 1000), "x", expect=409)
        rec.send(n, "PUT", k + "?cas=%d" % cur, "v3", expect=200)
        h = {"Idempotency-Key": "contract-" + n.node_id}
        rec.send(n, "PUT", k + "-idem", "once", headers=h, expect=200)
        rec.send(n, "PUT", k + "-idem", "once", headers=h, expect=200)
        rec.send(n, "PUT", k + "-idem", "different", headers=h, expect=409)
        rec.send(n, "DELETE", k + "-idem", headers=h, expect=409)
        rec.send(n, "DELETE", k + "?cas=0", expect=409)
        rec.send(n, "DELETE", k, expect=200)
        rec.send(n, "DELETE", k, expect=404)
        rec.send(n, "PUT", "/v1/kv/contract/with/slashes", "s", expect=200)
        for _ in range(2):  # the second one is a replay of the first 404
            rec.send(n, "DELETE", k + "-idem2", headers={"Idempotency-Key": "del-" + n.node_id},
                     expect=404)
        # Listing.
        r = rec.send(n, "GET", "/v1/kv/?prefix=contract&limit=1", expect=200)
        token = json.loads(r.body)["continue"]
        assert token, r
        rec.send(n, "GET", "/v1/kv/?prefix=contract&limit=1&continue=" + quote(token, safe=""),
                 expect=200)
        rec.send(n, "GET", "/v1/kv/?prefix=contract&consistency=stale", expect=200)
        rec.send(n, "GET", "/v1/kv/?prefix=nothing", expect=200)
        rec.send(n, "GET", "/v1/kv/", expect=200)
        # Bad input.
        rec.send(n, "PUT", "/v1/kv/" + "k" * 1025, "v", expect=400)
        rec.send(n, "PUT", "/v1/kv/%FF", "v", expect=400)
        rec.send(n, "PUT", "/v1/kv/a%00b", "v", expect=400)
        rec.send(n, "PUT", "/v1/kv/x?cas=abc", "v", expect=400)
        rec.send(n, "PUT", "/v1/kv/x?timeout=forever", "v", expect=400)
        rec.send(n, "PUT", "/v1/kv/x", "v", headers={"Idempotency-Key": "i" * 257}, expect=400)
        rec.send(n, "GET", "/v1/kv/x?consistency=maybe", expect=400)
        rec.send(n, "GET", "/v1/kv/%FF", expect=400)
        rec.send(n, "DELETE", "/v1/kv/x?cas=-1", expect=400)
        rec.send(n, "GET", "/v1/kv/?limit=0", expect=400)
        rec.send(n, "GET", "/v1/kv/?continue=%25%25", expect=400)
        rec.send(n, "GET", "/v1/kv/?consistency=bad", expect=400)
        # Bodies over --max-body, on every operation.
        rec.send(n, "PUT", "/v1/kv/x", big(MAX_BODY + 1), expect=413)
        rec.refused_before_routing(n, "PUT", "/v1/kv/x")
        rec.send(n, "GET", "/v1/kv/x", big(MAX_BODY + 1), expect=413)
        rec.refused_before_routing(n, "GET", "/v1/kv/x")
        rec.send(n, "DELETE", "/v1/kv/x", big(MAX_BODY + 1), expect=413)
        rec.refused_before_routing(n, "DELETE", "/v1/kv/x")
        rec.send(n, "GET", "/v1/kv/", big(MAX_BODY + 1), expect=413)
        rec.refused_before_routing(n, "GET", "/v1/kv/")
    # ?redirect: 307 from the follower, served directly by the leader.
    for method, path, body in (("GET", "/v1/kv/contract/with/slashes?redirect", None),
                               ("PUT", "/v1/kv/contract/r?redirect", "v"),
                               ("DELETE", "/v1/kv/contract/r?redirect", None),
                               ("GET", "/v1/kv/?redirect", None)):
        rec.send(f, method, path, body, expect=307)
    rec.send(ld, "GET", "/v1/kv/contract/with/slashes?redirect", expect=200)


def exercise_ops(rec, nodes):
    for n in nodes:
        rec.send(n, "GET", "/raft/status", expect=200)
        rec.send(n, "GET", "/raft/status?digest", expect=200)
        rec.send(n, "GET", "/raft/health", expect=200)
        rec.send(n, "GET", "/raft/health?mode=ready", expect=200)
        rec.send(n, "GET", "/raft/health?mode=live", expect=200)
        rec.send(n, "GET", "/raft/health?mode=sleepy", expect=400)
        rec.send(n, "GET", "/metrics", expect=200)
        for path in ("/raft/status", "/raft/health", "/metrics"):
            rec.send(n, "GET", path, big(MAX_BODY + 1), expect=413)
            rec.refused_before_routing(n, "GET", path)
        # Methods a path does not take, and paths that do not exist.
        for method, path in (("POST", "/v1/kv/x"), ("PATCH", "/v1/kv/x"), ("PUT", "/v1/kv/"),
                             ("DELETE", "/v1/kv/"), ("POST", "/raft/status"),
                             ("PUT", "/raft/health"), ("POST", "/metrics"),
                             ("GET", "/raft/join"), ("GET", "/raft/remove"),
                             ("DELETE", "/raft/transfer-leader")):
            rec.send(n, method, path, expect=405)
        for path in ("/", "/nope", "/v1", "/v1/kvx", "/raft", "/raft/statusx"):
            rec.send(n, "GET", path, expect=404)


def exercise_membership(rec, c, ld, f):
    """Join/remove/transfer: 200, 307, 400, 404, 409 (on a healthy cluster)."""
    me = {"node_id": f.node_id, "raft_addr": f.raft_addr, "http_addr": f.http_addr}
    for n in (ld, f):
        rec.send(n, "POST", "/raft/join", me, expect=200, timeout=30)
        rec.send(n, "POST", "/raft/join", {"node_id": "x"}, expect=400)
        rec.send(n, "POST", "/raft/join", "not json", expect=400)
        rec.send(n, "POST", "/raft/join", dict(me, extra=1), expect=400)
        rec.send(n, "POST", "/raft/remove", {}, expect=400)
        rec.send(n, "POST", "/raft/remove", {"node_id": "no-such-node"}, expect=404)
        rec.send(n, "POST", "/raft/transfer-leader", {"node_id": 7}, expect=400)
        rec.send(n, "POST", "/raft/transfer-leader", {"node_id": "no-such-node"}, expect=404)
        rec.send(n, "POST", "/raft/transfer-leader", {"node_id": ld.node_id}, expect=200)
        for path in ("/raft/join", "/raft/remove", "/raft/transfer-leader"):
            rec.send(n, "POST", path, big(MAX_BODY + 1), expect=413)
            rec.refused_before_routing(n, "POST", path)
    rec.send(f, "POST", "/raft/join?redirect", me, expect=307)
    rec.send(f, "POST", "/raft/remove?redirect", {"node_id": "no-such-node"}, expect=307)
    rec.send(f, "POST", "/raft/transfer-leader?redirect", "", expect=307)
    # A real join and removal of a fourth node, sent to a follower.
    n4 = c.node("coordinator-4").start()
    rec.send(f, "POST", "/raft/join", {"node_id": n4.node_id, "raft_addr": n4.raft_addr,
                                       "http_addr": n4.http_addr}, expect=200, timeout=60)
    c.wait_voters(4)
    rec.send(f, "POST", "/raft/remove", {"node_id": n4.node_id}, expect=200, timeout=30)
    # The removed node stays up, saying so on every request.
    wait_for("removed node to report it",
             lambda: (lambda r: r is not None and r.status == 503)(n4.req("GET", "/raft/health")), 20)
    rec.send(n4, "GET", "/raft/health", expect=503)
    rec.send(n4, "GET", "/raft/health?mode=live", expect=200)
    rec.send(n4, "GET", "/raft/status", expect=200)
    rec.send(n4, "GET", "/metrics", expect=200)
    rec.send(n4, "GET", "/v1/kv/k", expect=503)
    rec.send(n4, "PUT", "/v1/kv/k", "v", expect=503)
    rec.send(n4, "POST", "/raft/removed", {"node_id": n4.node_id}, expect=503)
    assert n4.stop() == 0
    c.wait_voters(3)
    # The leader's removal notice: bad bodies, another node's id, and a real one (the node
    # checks with the leader and stays a member).
    rec.send(f, "POST", "/raft/removed", "not json", expect=400)
    rec.send(f, "POST", "/raft/removed", big(MAX_BODY + 1), expect=413)
    rec.send(f, "POST", "/raft/removed", {"node_id": "someone-else"}, expect=409)
    rec.send(f, "POST", "/raft/removed", {"node_id": f.node_id, "by": ld.node_id}, expect=202)
    # Joins that are refused without changing anything: a live member's raft address, a
    # wildcard address, a data dir of another cluster, a queue deadline already passed.
    rec.send(ld, "POST", "/raft/join", {"node_id": "intruder", "raft_addr": f.raft_addr,
                                        "http_addr": "127.0.0.1:1"}, expect=409, timeout=30)
    rec.send(ld, "POST", "/raft/join", {"node_id": "w", "raft_addr": "0.0.0.0:7999",
                                        "http_addr": "127.0.0.1:1"}, expect=400)
    rec.send(ld, "POST", "/raft/join", dict(me, cluster_id="ab" * 16), expect=409, timeout=30)
    # A real leadership transfer, to the follower, sent to the follower.
    rec.send(f, "POST", "/raft/transfer-leader", {"node_id": f.node_id}, expect=200, timeout=30)
    wait_for("%s to lead" % f.node_id, lambda: c.leader_of() is f)


AGENT = {"id": "contract-agent", "zone": "z1", "capacity": {"cpu_millicores": 1000,
                                                             "memory_bytes": 1 << 30}}
WORKLOAD = {"namespace": "default", "name": "contract", "command": ["sleep", "1"], "replicas": 1,
            "resources": {"cpu_millicores": 10, "memory_bytes": 1024}}

# Domain requests that go to the leader, for the no-leader (503) and paused-leader (504)
# phases: (method, path, body).
DOMAIN_LEADER_OPS = [
    ("POST", "/v1/agents", AGENT),
    ("GET", "/v1/agents", None),
    ("GET", "/v1/agents/contract-agent", None),
    ("DELETE", "/v1/agents/contract-agent", None),
    ("POST", "/v1/agents/contract-agent/heartbeat", {"replicas": []}),
    ("GET", "/v1/agents/contract-agent/assignments", None),
    ("POST", "/v1/agents/contract-agent/cordon", None),
    ("POST", "/v1/agents/contract-agent/uncordon", None),
    ("POST", "/v1/agents/contract-agent/drain", None),
    ("POST", "/v1/workloads", WORKLOAD),
    ("GET", "/v1/workloads", None),
    ("GET", "/v1/workloads/default/contract", None),
    ("PUT", "/v1/workloads/default/contract", WORKLOAD),
    ("DELETE", "/v1/workloads/default/contract", None),
    ("POST", "/v1/workloads/default/contract/scale", {"replicas": 2}),
    ("GET", "/v1/replicas", None),
]


def exercise_domain(rec, ld, f):
    """Agents, workloads and replicas: every success and client-error status."""
    for n in (ld, f):
        rec.send(n, "POST", "/v1/agents", AGENT, expect=(200, 201))
        rec.send(n, "POST", "/v1/agents", AGENT, expect=200)
    rec.send(ld, "POST", "/v1/agents", dict(AGENT, id="contract-agent-2"), expect=201)
    rec.send(f, "POST", "/v1/agents?redirect", AGENT, expect=307)
    rec.send(f, "POST", "/v1/workloads?redirect", WORKLOAD, expect=307)
    for n in (ld, f):
        rec.send(n, "POST", "/v1/agents", {"id": "bad id"}, expect=400)
        rec.send(n, "POST", "/v1/agents", big(MAX_BODY + 1), expect=413)
        rec.send(n, "GET", "/v1/agents", expect=200)
        rec.send(n, "GET", "/v1/agents?state=ready&zone=z1&limit=1", expect=200)
        rec.send(n, "GET", "/v1/agents?consistency=stale", expect=200)
        rec.send(n, "GET", "/v1/agents?state=sleepy", expect=400)
        rec.send(n, "GET", "/v1/agents", big(MAX_BODY + 1), expect=413)
        rec.send(n, "GET", "/v1/agents/contract-agent", expect=200)
        rec.send(n, "GET", "/v1/agents/nobody", expect=404)
        rec.send(n, "GET", "/v1/agents/bad%20id", expect=400)
        rec.send(n, "GET", "/v1/agents/contract-agent", big(MAX_BODY + 1), expect=413)
        rec.send(n, "POST", "/v1/agents/contract-agent/heartbeat", {"replicas": []}, expect=200)
        rec.send(n, "POST", "/v1/agents/nobody/heartbeat", {"replicas": []}, expect=404)
        rec.send(n, "POST", "/v1/agents/contract-agent/heartbeat", {"replicas": 3}, expect=400)
        rec.send(n, "POST", "/v1/agents/contract-agent/heartbeat", big(MAX_BODY + 1), expect=413)
        rec.send(n, "GET", "/v1/agents/contract-agent/assignments", expect=200)
        rec.send(n, "GET", "/v1/agents/contract-agent/assignments?index=1&wait=100ms", expect=200)
        rec.send(n, "GET", "/v1/agents/nobody/assignments", expect=404)
        rec.send(n, "GET", "/v1/agents/contract-agent/assignments?index=x", expect=400)
        rec.send(n, "GET", "/v1/agents/contract-agent/assignments", big(MAX_BODY + 1), expect=413)
        for verb in ("cordon", "uncordon", "drain", "uncordon"):
            rec.send(n, "POST", "/v1/agents/contract-agent/" + verb, expect=200)
            rec.send(n, "POST", "/v1/agents/nobody/" + verb, expect=404)
            rec.send(n, "POST", "/v1/agents/contract-agent/" + verb, big(MAX_BODY + 1), expect=413)
        rec.send(n, "DELETE", "/v1/agents/nobody", expect=404)
        rec.send(n, "DELETE", "/v1/agents/bad%20id", expect=400)
        rec.send(n, "DELETE", "/v1/agents/contract-agent", big(MAX_BODY + 1), expect=413)
    rec.send(f, "DELETE", "/v1/agents/contract-agent-2", expect=200)
    # Workloads.
    rec.send(f, "POST", "/v1/workloads", WORKLOAD, expect=201)
    r = rec.send(ld, "GET", "/v1/workloads/default/contract", expect=200)
    version = json.loads(r.body)["version"]
    for n in (ld, f):
        rec.send(n, "POST", "/v1/workloads", WORKLOAD, expect=409)
        rec.send(n, "POST", "/v1/workloads", {"name": "x"}, expect=400)
        rec.send(n, "POST", "/v1/workloads", big(MAX_BODY + 1), expect=413)
        rec.send(n, "GET", "/v1/workloads", expect=200)
        rec.send(n, "GET", "/v1/workloads?namespace=default&selector=a%3Db&limit=1", expect=200)
        rec.send(n, "GET", "/v1/workloads?index=1&wait=100ms&consistency=stale", expect=200)
        rec.send(n, "GET", "/v1/workloads?namespace=Bad", expect=400)
        rec.send(n, "GET", "/v1/workloads", big(MAX_BODY + 1), expect=413)
        rec.send(n, "GET", "/v1/workloads/default/contract", expect=200)
        rec.send(n, "GET", "/v1/workloads/default/contract?index=%d&wait=100ms" % version, expect=200)
        rec.send(n, "GET", "/v1/workloads/default/nope", expect=404)
        rec.send(n, "GET", "/v1/workloads/default/Bad", expect=400)
        rec.send(n, "GET", "/v1/workloads/default/contract", big(MAX_BODY + 1), expect=413)
        rec.send(n, "PUT", "/v1/workloads/default/contract", WORKLOAD, expect=200)
        rec.send(n, "PUT", "/v1/workloads/default/contract", WORKLOAD,
                 headers={"If-Match": '"1"'}, expect=412)
        rec.send(n, "PUT", "/v1/workloads/default/contract", {"command": 1}, expect=400)
        rec.send(n, "PUT", "/v1/workloads/default/contract", big(MAX_BODY + 1), expect=413)
        rec.send(n, "POST", "/v1/workloads/default/contract/scale", {"replicas": 0}, expect=200)
        rec.send(n, "POST", "/v1/workloads/default/nope/scale", {"replicas": 0}, expect=404)
        rec.send(n, "POST", "/v1/workloads/default/contract/scale", {"replicas": -1}, expect=400)
        rec.send(n, "POST", "/v1/workloads/default/contract/scale", {"replicas": 1},
                 headers={"If-Match": "1"}, expect=412)
        rec.send(n, "POST", "/v1/workloads/default/contract/scale", big(MAX_BODY + 1), expect=413)
        rec.send(n, "GET", "/v1/replicas", expect=200)
        rec.send(n, "GET", "/v1/replicas?agent=contract-agent&consistency=stale", expect=200)
        rec.send(n, "GET", "/v1/replicas?workload=default/contract", expect=200)
        rec.send(n, "GET", "/v1/replicas?workload=nope", expect=400)
        rec.send(n, "GET", "/v1/replicas", big(MAX_BODY + 1), expect=413)
        rec.send(n, "DELETE", "/v1/workloads/default/nope", expect=404)
        rec.send(n, "DELETE", "/v1/workloads/Bad/x", expect=400)
        rec.send(n, "DELETE", "/v1/workloads/default/contract", headers={"If-Match": "1"}, expect=412)
        rec.send(n, "DELETE", "/v1/workloads/default/contract", big(MAX_BODY + 1), expect=413)
    rec.send(ld, "PUT", "/v1/workloads/default/contract-2", dict(WORKLOAD, name="contract-2"), expect=201)
    rec.send(f, "DELETE", "/v1/workloads/default/contract-2", expect=200)
    # Keyed domain writes: a retry is answered from the record (also once the workload is
    # gone), the key on another request is a 409.
    for i, n in enumerate((ld, f)):
        key = {"Idempotency-Key": "contract-domain-%d" % i}
        name = "contract-idem-%d" % i
        path = "/v1/workloads/default/" + name
        w = dict(WORKLOAD, name=name)
        first = rec.send(n, "POST", "/v1/workloads", w, headers=key, expect=201)
        again = rec.send(n, "POST", "/v1/workloads", w, headers=key, expect=201)
        assert again.headers.get("x-cloudless-idempotent-replay") == "true", again.headers
        assert again.headers["x-cloudless-index"] == first.headers["x-cloudless-index"]
        rec.send(n, "POST", "/v1/workloads", dict(w, replicas=2), headers=key, expect=409)
        rec.send(n, "POST", path + "/scale", {"replicas": 0}, headers=key, expect=409)
        rec.send(ld, "DELETE", path, expect=200)
        gone = rec.send(n, "POST", "/v1/workloads", w, headers=key, expect=201)
        assert json.loads(gone.body) == {"key": "default/" + name, "exists": False,
                                         "index": int(first.headers["x-cloudless-index"])}, gone
        for method, p, body in (("POST", "/v1/agents", AGENT),
                                ("POST", "/v1/agents/contract-agent/cordon", None),
                                ("POST", "/v1/agents/contract-agent/uncordon", None),
                                ("POST", "/v1/agents/contract-agent/drain", None),
                                ("PUT", path, w), ("DELETE", path, None),
                                ("DELETE", "/v1/agents/contract-agent", None)):
            rec.send(n, method, p, body, headers=key, expect=409)
    for method, path in (("PUT", "/v1/agents"), ("PATCH", "/v1/agents/x"), ("GET", "/v1/agents/x/heartbeat"),
                         ("DELETE", "/v1/workloads"), ("POST", "/v1/workloads/default/x"),
                         ("GET", "/v1/workloads/default/x/scale"), ("POST", "/v1/replicas")):
        rec.send(ld, method, path, expect=405)
    for path in ("/v1/agents/x/nope", "/v1/workloads/default", "/v1/workloads/a/b/c"):
        rec.send(ld, "GET", path, expect=404)


def batch_body(*items):
    """A forwarded batch (src/forward/batch.h) of (method, path, body) items."""
    def s(b):
        b = b.encode() if isinstance(b, str) else b
        return struct.pack(">I", len(b)) + b
    out = struct.pack(">BI", 1, len(items))
    for method, path, body in items:
        out += s(method) + s(path) + s("") + struct.pack(">I", 0) + s(body)
    return out


def exercise_forward(rec, ld, f):
    """POST /raft/forward, the batch endpoint followers use (items answered inside)."""
    ctype = {"Content-Type": "application/vnd.cloudless.batch"}
    rec.send(ld, "POST", "/raft/forward", batch_body(("PUT", "/v1/kv/batched", "v")), ctype,
             expect=200)
    for n in (ld, f):
        rec.send(n, "POST", "/raft/forward", b"\x01garbage", ctype, expect=400)
        rec.send(n, "POST", "/raft/forward", batch_body(("GET", "/v1/kv/x", "")), ctype,
                 expect=400)
        rec.send(n, "POST", "/raft/forward", batch_body(("PUT", "/v1/kv/x", "v")),
                 {"Content-Type": "application/json"}, expect=415)
        rec.send(n, "GET", "/raft/forward", expect=405)
        rec.send(n, "POST", "/raft/forward", big(MAX_BODY + 1), ctype, expect=413)
        rec.refused_before_routing(n, "POST", "/raft/forward")


def exercise_snapshot(rec, ld, f):
    """GET /v1/snapshot: the image, linearizable (forwarded by a follower) or stale."""
    for n in (ld, f):
        for q in ("", "?stale", "?consistency=stale", "?consistency=linearizable",
                  "?timeout=30s"):
            r = rec.send(n, "GET", "/v1/snapshot" + q, expect=200, timeout=30)
            assert r.body[:8] == b"CLSNAP02", r.body[:16]
        for q in ("?stale=maybe", "?stale&consistency=stale", "?consistency=eventual",
                  "?timeout=soon", "?stale&stale"):
            rec.send(n, "GET", "/v1/snapshot" + q, expect=400)
        rec.send(n, "GET", "/v1/snapshot", big(MAX_BODY + 1), expect=413)
        rec.refused_before_routing(n, "GET", "/v1/snapshot")
        for method in ("POST", "PUT", "DELETE"):
            rec.send(n, method, "/v1/snapshot", expect=405)
    rec.send(f, "GET", "/v1/snapshot?redirect", expect=307)


# Every operation with a token, as test_auth.py's matrix has them: (method, path, body, a
# token that lacks the operation's scopes).
AUTH_OPS = [
    ("GET", "/v1/kv/contract/a", None, "write"), ("PUT", "/v1/kv/contract/a", "v", "read"),
    ("DELETE", "/v1/kv/contract/a", None, "read"), ("GET", "/v1/kv/", None, "write"),
    ("GET", "/v1/snapshot", None, "read"), ("GET", "/raft/status", None, "write"),
    ("GET", "/raft/health", None, "write"), ("GET", "/metrics", None, "read"),
    ("POST", "/raft/join", {}, "read"), ("POST", "/raft/remove", {}, "read"),
    ("POST", "/raft/transfer-leader", {}, "read"), ("GET", "/v1/agents", None, "write"),
    ("POST", "/v1/agents", {}, "read"), ("GET", "/v1/agents/a1", None, "write"),
    ("DELETE", "/v1/agents/a1", None, "read"), ("POST", "/v1/agents/a1/heartbeat", {}, "admin"),
    ("GET", "/v1/agents/a1/assignments", None, "write"),
    ("POST", "/v1/agents/a1/cordon", None, "read"), ("POST", "/v1/agents/a1/uncordon", None, "read"),
    ("POST", "/v1/agents/a1/drain", None, "read"), ("GET", "/v1/workloads", None, "write"),
    ("POST", "/v1/workloads", {}, "read"), ("GET", "/v1/workloads/ns/w", None, "write"),
    ("PUT", "/v1/workloads/ns/w", {}, "read"), ("DELETE", "/v1/workloads/ns/w", None, "read"),
    ("POST", "/v1/workloads/ns/w/scale", {}, "read"), ("GET", "/v1/replicas", None, "write"),
]


def exercise_auth(rec, make):
    """401, 403 and 429 on every operation, against a node with an --auth-file and a
    --rate-limit of one request a second per token."""
    from test_auth import SECRET, TOKENS, bearer, write_auth_file
    c = make("contract-auth")
    path = os.path.join(c.dir, "auth")
    write_auth_file(path, dict(TOKENS, flood=TOKENS["admin"]))
    c.token = "admin.admin-" + SECRET
    c.extra_args = ["--auth-file", path, "--rate-limit", "1"]
    ld = c.start(1).leader()
    # An enrollment with an enroll token answers the agent's secret (token), which then
    # heartbeats as that agent.
    r = rec.send(ld, "POST", "/v1/agents", {"id": "a1", "capacity": {
        "cpu_millicores": 1000, "memory_bytes": 1 << 30}}, {"Authorization": bearer("enroll")},
        expect=201)
    agent = {"Authorization": "Bearer " + r.json()["token"]}
    rec.send(ld, "POST", "/v1/agents/a1/heartbeat", {"replicas": []}, agent, expect=200)
    rec.send(ld, "POST", "/v1/agents", {"id": "a1", "capacity": {
        "cpu_millicores": 1000, "memory_bytes": 1 << 30}}, agent, expect=200)
    for method, p, body, weak in AUTH_OPS:
        rec.send(ld, method, p, body, expect=401)
        rec.send(ld, method, p, body, {"Authorization": bearer(weak)}, expect=403)
        if p.endswith("/heartbeat"):
            continue  # an agent's own secret, which no rate limit counts
        for _ in range(10):
            request(ld.http_addr, "GET", "/raft/status", None, {"Authorization": bearer("flood")})
            r = rec.send(ld, method, p, body, {"Authorization": bearer("flood")})
            if r.status == 429:
                break
        assert r.status == 429, (method, p, r)
    c.close()


def check(rec):
    report = rec.validate()
    errors = report["errors"]
    assert not errors, "%d contract violations:\n  %s" % (len(errors), "\n  ".join(errors[:40]))
    return report


def test_contract(make):
    require_node_modules()
    rec = Recorder()

    # A healthy cluster: every success and client-error status.
    c = make("contract", extra_args=["--max-body", str(MAX_BODY)]).start(3)
    ld = c.leader()
    f = c.followers()[0]
    exercise_kv(rec, ld, f)
    exercise_ops(rec, c.running())
    exercise_membership(rec, c, ld, f)
    exercise_forward(rec, c.leader(), c.followers()[0])
    exercise_domain(rec, c.leader(), c.followers()[0])
    exercise_snapshot(rec, c.leader(), c.followers()[0])

    # 409 on remove: with one voter down, removing another live one would leave no quorum.
    ld = c.leader()
    f1, f2 = c.followers()
    f2.kill()
    # Only once the leader counts the dead voter as unreachable (its contact window passed).
    wait_for("the leader to miss %s" % f2.node_id,
             lambda: "\ncloudless_raft_failure_tolerance 0\n" in ld.metrics(), 20)
    rec.send(ld, "POST", "/raft/remove", {"node_id": f1.node_id}, expect=409, timeout=30)
    # 503: no leader. Kill the leader too; the survivor cannot elect one.
    ld.kill()
    wait_for("survivor to lose the leader", lambda: request(
        f1.http_addr, "GET", "/raft/health").status == 503, 20)
    for method, path, body, headers in (
            ("PUT", "/v1/kv/contract/none", "v", None),
            ("PUT", "/v1/kv/contract/none", "v", {"Idempotency-Key": "none-1"}),
            ("DELETE", "/v1/kv/contract/none", None, None),
            ("GET", "/v1/kv/contract/none", None, None),
            ("GET", "/v1/kv/?prefix=contract", None, None),
            ("GET", "/raft/health", None, None),
            ("POST", "/raft/join", {"node_id": "n9", "raft_addr": "127.0.0.1:1",
                                    "http_addr": "127.0.0.1:2"}, None),
            ("POST", "/raft/remove", {"node_id": f2.node_id}, None),
            ("POST", "/raft/transfer-leader", "", None),
            ("GET", "/v1/snapshot", None, None)):
        rec.send(f1, method, path, body, headers, expect=503, timeout=30)
    for method, path, body in DOMAIN_LEADER_OPS:
        rec.send(f1, method, path, body, expect=503, timeout=30)
    # Stale reads and status still answer.
    rec.send(f1, "GET", "/v1/kv/contract/with/slashes?consistency=stale", expect=200)
    rec.send(f1, "GET", "/v1/kv/?consistency=stale", expect=200)
    rec.send(f1, "GET", "/v1/snapshot?stale", expect=200)
    rec.send(f1, "GET", "/raft/status", expect=200)
    rec.send(f1, "GET", "/raft/health?mode=live", expect=200)
    c.close()

    # 504: a paused leader that nobody replaces (elections take 10 s here).
    c = make("contract-504", election_ms=10000).start(3)
    ld = c.leader()
    f = c.followers()[0]
    ld.kill(signal.SIGSTOP)
    try:
        for method, path, body in (
                ("PUT", "/v1/kv/contract/late?timeout=300ms", "v"),
                ("GET", "/v1/kv/contract/late?timeout=300ms", None),
                ("DELETE", "/v1/kv/contract/late?timeout=300ms", None),
                ("GET", "/v1/kv/?timeout=300ms", None),
                ("GET", "/v1/snapshot?timeout=300ms", None)) + tuple(
                    (m, p + "?timeout=300ms", b) for m, p, b in DOMAIN_LEADER_OPS):
            rec.send(f, method, path, body, expect=504)
    finally:
        ld.kill(signal.SIGCONT)
    c.close()

    # 504 on membership changes: queued behind a join that cannot finish (its node never
    # comes up), they are dropped at their deadline, through a follower too.
    c = make("contract-504-membership", extra_args=["--catch-up-timeout-ms", "3000"]).start(3)
    ld = c.leader()
    f = c.followers()[0]
    ghost = {"node_id": "ghost", "raft_addr": "127.0.0.1:%d" % free_port(),
             "http_addr": "127.0.0.1:%d" % free_port()}
    ghost_join = threading.Thread(
        target=lambda: rec.send(ld, "POST", "/raft/join", ghost, expect=504, timeout=30))
    ghost_join.start()
    wait_for("the ghost join to run",
             lambda: "ghost" in [x["node_id"] for x in ld.status()["servers"]])
    for n in (ld, f):
        rec.send(n, "POST", "/raft/remove?timeout=300ms", {"node_id": "no-such-node"}, expect=504)
        rec.send(n, "POST", "/raft/transfer-leader?timeout=300ms", {"node_id": ld.node_id},
                 expect=504)
    ghost_join.join()
    c.close()

    exercise_auth(rec, make)

    # 409 on transfer: a single voter has nobody to hand leadership to.
    c = make("contract-single")
    one = c.node("coordinator-1").start(bootstrap=True)
    c.leader()
    rec.send(one, "POST", "/raft/transfer-leader", "", expect=409)
    rec.send(one, "POST", "/raft/transfer-leader", {}, expect=409)
    c.close()

    report = check(rec)
    observed = {k: set(v) for k, v in report["observed"].items()}
    missing = []
    for op, statuses in report["documented"].items():
        for s in statuses:
            if s in NOT_PROVOKED or (op, s) in NOT_PROVOKED_OP:
                continue
            if s not in observed.get(op, set()):
                missing.append("%s %d" % (op, s))
    assert not missing, "documented but never provoked: %s" % ", ".join(missing)
    for k in ("* (unknown path)",):
        assert observed.get(k) == {404}, observed.get(k)
    assert all(v == {405} for k, v in observed.items() if k.endswith("(other methods)")), observed
    print("  %d exchanges validated; %d operations" % (len(rec.exchanges), len(report["documented"])))


if __name__ == "__main__":
    run([test_contract])
