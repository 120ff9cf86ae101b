"""Forwarded writes through a faulty link to the leader are never applied twice (issue 21).

A fault-injecting TCP proxy sits between the followers and the leader: the leader is started
with --advertise-http pointing at the proxy, so that is where followers forward (clients and
the other coordinators still reach the leader directly). Per forwarded request the proxy
passes it, drops the reply (the leader applied the write, the follower never hears back), or
breaks the connection right after sending it (the leader may or may not apply it). The
follower re-sends what is safe to re-send: a write with an Idempotency-Key or a CAS on a
non-zero index, and since issue 21 every other write too, because it carries the follower's
internal idempotency key and the leader's fsm answers the re-send with the first result.
Before, a create-only CAS (cas=0) counted as safe by itself and was applied twice when a
delete came in between: A's create applied, B's delete, A's re-sent create applied again.

The tests, all checked with the linearizability checker of the fault harness
(tests/fault/checker.py):

  * for each kind of write (cas=0, CAS on an index, keyless, keyed), each fault (reply
    dropped, broken after send) and each way of forwarding (alone, batched), the fault hits
    the write's first attempt and a delete of the key completes before the follower's re-send
    reaches the leader (the proxy holds it);
  * a re-send that reaches the leader after its first attempt's record was pruned is not
    applied again (503 outcome-unknown);
  * a workload create forwarded without a key (and so with the follower's internal key) is
    applied once too: its re-send after a delete in between does not create it again;
  * several clients run those writes, deletes and linearizable reads through every node while
    the proxy injects both faults at random; afterwards every node's state digest is equal.
"""
import os
import random
import socket
import sys
import threading
import time

from harness import run, scaled, wait_for, free_port

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fault"))
import checker  # noqa: E402
from faultlib import History, b64value, kv_path, recorded_call  # noqa: E402


# ---------------------------------------------------------------- the proxy

class Reader:
    """Bytes from a socket, kept across the messages of one connection."""

    def __init__(self, sock):
        self.sock = sock
        self.data = b""

    def need(self, n=None, until=None):
        """Reads until n bytes are buffered, or `until` occurs in them; False at EOF."""
        while (len(self.data) < n) if until is None else (until not in self.data):
            chunk = self.sock.recv(65536)
            if not chunk:
                return False
            self.data += chunk
        return True

    def take(self, n):
        out, self.data = self.data[:n], self.data[n:]
        return out


def read_message(rd):
    """One HTTP/1.1 message (head and body, Content-Length or chunked) from the reader.
    Returns its bytes, or None at EOF / error."""
    try:
        if not rd.need(until=b"\r\n\r\n"):
            return None
        head = rd.take(rd.data.index(b"\r\n\r\n") + 4)
        length, chunked = 0, False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value.strip())
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if not chunked:
            return head + rd.take(length) if rd.need(length) else None
        body = b""
        while True:
            if not rd.need(until=b"\r\n"):
                return None
            size_line = rd.take(rd.data.index(b"\r\n") + 2)
            size = int(size_line.split(b";")[0], 16)
            if not rd.need(size + 2):
                return None
            body += size_line + rd.take(size + 2)
            if size == 0:
                return head + body
    except OSError:
        return None


def hard_close(sock):
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


class FaultProxy:
    """Relays each connection to the leader request by request, injecting faults.

    plan(match, fault, hold): the next request whose bytes contain `match` gets `fault`
    ("drop" the reply or "break" after sending), and the one after it waits at the proxy
    until release() (so a test can order something before the re-send). random_faults(p)
    instead gives every request "drop" or "break" with probability p/2 each, and holds a
    third of the others a few milliseconds (so that a re-send may come after other
    clients' operations)."""

    def __init__(self, target, seed):
        self.target = target.rsplit(":", 1)
        self.target = (self.target[0], int(self.target[1]))
        self.port = free_port()
        self.addr = "127.0.0.1:%d" % self.port
        self.lock = threading.Lock()
        self.rng = random.Random(seed)
        self.p = 0.0
        self.planned = None  # (match, fault)
        self.hold_match = None
        self.held = threading.Event()  # a held request arrived
        self.gate = threading.Event()
        self.counts = {"requests": 0, "drop": 0, "break": 0, "delay": 0, "held": 0}
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", self.port))
        self.lsock.listen(128)
        threading.Thread(target=self._accept, daemon=True).start()

    def plan(self, match, fault):
        with self.lock:
            self.planned = (match, fault)
            self.hold_match = match
            self.held.clear()
            self.gate.clear()

    def release(self):
        with self.lock:
            self.hold_match = None
        self.gate.set()

    def random_faults(self, p):
        with self.lock:
            self.p = p

    def _decide(self, req):
        with self.lock:
            self.counts["requests"] += 1
            if self.planned is not None and self.planned[0] in req:
                fault = self.planned[1]
                self.planned = None
                self.counts[fault] += 1
                return fault, False
            if self.hold_match is not None and self.hold_match in req:
                self.counts["held"] += 1
                return "pass", True
            x = self.rng.random()
            if x < self.p / 2:
                self.counts["drop"] += 1
                return "drop", False
            if x < self.p:
                self.counts["break"] += 1
                return "break", False
            if self.p > 0 and x < self.p + (1 - self.p) / 3:
                self.counts["delay"] += 1
                return "delay", False
            return "pass", False

    def _accept(self):
        while True:
            try:
                client, _ = self.lsock.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client):
        try:
            upstream = socket.create_connection(self.target, timeout=scaled(30))
        except OSError:
            hard_close(client)
            return
        crd, urd = Reader(client), Reader(upstream)
        try:
            while True:
                req = read_message(crd)
                if req is None:
                    return
                fault, hold = self._decide(req)
                if hold:
                    self.held.set()
                    self.gate.wait(scaled(30))
                elif fault == "delay":
                    time.sleep(self.rng.uniform(0.001, 0.02))
                upstream.sendall(req)
                if fault == "break":
                    return  # the request is at the leader; nobody hears of its outcome
                resp = read_message(urd)
                if resp is None or fault == "drop":
                    return  # applied (or not) at the leader, never answered here
                client.sendall(resp)
        except OSError:
            return
        finally:
            hard_close(client)
            hard_close(upstream)

    def close(self):
        self.lsock.close()
        self.gate.set()


def start_cluster(make, seed, extra=()):
    """coordinator-1 leads and advertises the proxy; the others forward through it."""
    c = make()
    first = c.node("coordinator-1")
    proxy = FaultProxy(first.http_addr, seed)
    first.start(bootstrap=True, extra=["--advertise-http", proxy.addr] + list(extra))
    wait_for("first node to lead", lambda: c.leader_of([first]))
    for i in (2, 3):
        c.node("coordinator-%d" % i).start(join=[first])
    c.wait_voters(3)
    return c, first, proxy


# ---------------------------------------------------------------- operations as history

class Client:
    """Runs operations against one node and records them (invoke, then ok/fail/info) in the
    shared history, classified the way the fault harness classifies them."""

    def __init__(self, history, pid, timeout_ms):
        self.h = history
        self.pid = pid
        self.timeout_ms = timeout_ms
        # Writes with their own ?timeout are forwarded one by one, others in batches
        # (api/batch.c): tests switch this to cover both.
        self.own_timeout = True

    def call(self, node, f, key, value, method, query="", body=None, headers=None, as_f=None):
        q = query
        if self.own_timeout or f == "read":
            q += ("&" if q else "?") + "timeout=%dms" % self.timeout_ms
        return recorded_call(self.h, self.pid, node, f, key, value, method, kv_path(key, q), body,
                             headers, timeout=self.timeout_ms / 1000 + 15, as_f=as_f)

    def read(self, node, key):
        typ, r, out = self.call(node, "read", key, None, "GET", "?json")
        if typ != "ok":
            return None
        return out, (r.json()["modify_index"] if r.status == 200 else 0)

    def write(self, node, key, value, idem=None):
        return self.call(node, "write", key, value, "PUT", body=value,
                         headers={"Idempotency-Key": idem} if idem else None)

    def create(self, node, key, value):
        return self.call(node, "cas", key, [None, value], "PUT", "?cas=0", body=value)

    def cas(self, node, key, expected, index, value):
        return self.call(node, "cas", key, [expected, value], "PUT", "?cas=%d" % index,
                         body=value)

    def delete(self, node, key):
        return self.call(node, "delete", key, None, "DELETE")


def assert_linearizable(history):
    results, problems = checker.check_history(history.events)
    assert not problems, problems
    bad = [r for r in results if r.ok is not True]
    assert not bad, "\n".join(checker.explain(r) for r in bad)
    return results


def metric(node, name):
    for line in node.metrics().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def forward_metric(node, result):
    return metric(node, 'cloudless_forward_requests_total{result="%s"}' % result)


def batched_items(node):
    return metric(node, "cloudless_forward_batch_items_total")


# ---------------------------------------------------------------- tests

KINDS = ("cas0", "cas-index", "keyless", "keyed")


def test_retry_after_fault_with_delete_in_between(make):
    c, leader, proxy = start_cluster(make, 1)
    follower = [n for n in c.running() if n is not leader][0]
    history = History()
    timeout_ms = int(scaled(8) * 1000)
    writer, deleter, reader = (Client(history, p, timeout_ms) for p in (0, 1, 2))
    case = 0
    cases = [(k, f, s) for s in (True, False) for k in KINDS for f in ("drop", "break")]
    for kind, fault, single in cases:
        case += 1
        writer.own_timeout = single
        key = "fx/%s-%s-%d" % (kind, fault, case)
        value = "v-%s-%s" % (kind, fault)
        expected, index = None, 0
        if kind == "cas-index":
            expected = "base-%d" % case
            typ, r, _ = writer.write(leader, key, expected)
            assert typ == "ok", r
            expected, index = writer.read(leader, key)
        proxy.plan(key.encode(), fault)
        result = {}

        def attempt():
            if kind == "cas0":
                result["r"] = writer.create(follower, key, value)
            elif kind == "cas-index":
                result["r"] = writer.cas(follower, key, expected, index, value)
            elif kind == "keyless":
                result["r"] = writer.write(follower, key, value)
            else:
                result["r"] = writer.write(follower, key, value, idem="idem-%d" % case)
        t = threading.Thread(target=attempt)
        t.start()
        # The first attempt met the fault; its re-send now waits at the proxy. The leader
        # got the whole first attempt either way (after a break it still runs it, only
        # the answer is lost), so the write shows up.
        wait_for("the re-send of %s to reach the proxy" % key, proxy.held.is_set, 20)
        wait_for("%s applied by the first attempt" % key,
                 lambda: (lambda r: r is not None and r.status == 200 and
                          r.body.decode() == value)(
                     leader.req("GET", kv_path(key, "?consistency=stale"))), 20)
        typ, r, existed = deleter.delete(leader, key)
        assert typ == "ok", r
        proxy.release()
        t.join(scaled(30))
        assert not t.is_alive()
        typ, r, _ = result["r"]
        final = wait_for("final read of %s" % key, lambda: reader.read(leader, key), 20)
        # Applied once, by the first attempt: the delete that came after it stands.
        assert final[0] is None, "%s %s: the re-send applied the write again: %r" % (
            kind, fault, final)
        if kind == "cas-index":
            # A re-sent CAS that meets the delete fails its comparison: the follower
            # says the outcome is unknown (its first attempt may have applied).
            assert typ in ("ok", "info"), (kind, fault, r)
        else:
            # Keyed and internally keyed writes get the first attempt's answer, exactly.
            assert typ == "ok", (kind, fault, r)
            body = r.json()
            assert set(body) == {"key", "index", "created"}, body
            assert body["created"] is True and body["key"] == key, body
            assert int(r.headers["x-cloudless-index"]) == body["index"], r.headers
            assert "x-cloudless-forward-key" not in r.headers, r.headers
            replay = r.headers.get("x-cloudless-idempotent-replay")
            assert replay == ("true" if kind == "keyed" else None), (kind, r.headers)
    assert proxy.counts["drop"] == 8 and proxy.counts["break"] == 8, proxy.counts
    assert proxy.counts["held"] >= 16, proxy.counts
    # Each fault failed a forward, except for keyed writes sent alone: curl re-sends those
    # on a fresh connection by itself (the proxy held that re-send just the same).
    assert forward_metric(follower, "failed") >= 14, follower.metrics()
    assert forward_metric(follower, "failed") <= 16, follower.metrics()
    assert batched_items(follower) >= 8, follower.metrics()
    assert_linearizable(history)
    c.wait_converged()
    proxy.close()


def test_resend_after_its_record_was_pruned(make):
    """A re-send that arrives after the leader pruned its first attempt's record (here: a
    leader keeping one record, and other forwarded writes in between) is not applied again
    but answered 503 outcome-unknown: the write was applied exactly once."""
    c, leader, proxy = start_cluster(make, 3, extra=["--idempotency-max", "1"])
    follower = [n for n in c.running() if n is not leader][0]
    history = History()
    timeout_ms = int(scaled(8) * 1000)
    writer, other = Client(history, 0, timeout_ms), Client(history, 1, timeout_ms)
    key = "pruned/first"
    proxy.plan(key.encode(), "drop")
    result = {}
    t = threading.Thread(target=lambda: result.update(r=writer.write(follower, key, "once")))
    t.start()
    wait_for("the re-send to reach the proxy", proxy.held.is_set, 20)
    # Forwarded writes made after it push its record out (cap 1, slack 1).
    for i in range(5):
        typ, r, _ = other.write(follower, "pruned/other-%d" % i, "x")
        assert typ == "ok", r
    proxy.release()
    t.join(scaled(30))
    typ, r, _ = result["r"]
    assert r is not None and r.status == 503, r
    assert r.problem_type() == "outcome-unknown", r
    assert "x-cloudless-forward-key" not in r.headers, r.headers
    got = leader.req("GET", kv_path(key, "?json"))
    assert got is not None and got.status == 200, got
    doc = got.json()
    assert b64value(doc) == "once" and doc["version"] == 1, doc
    assert_linearizable(history)
    c.wait_converged()
    proxy.close()


def test_domain_write_applied_once(make):
    """The domain API takes the same path: a workload create (POST, create-only) whose reply
    is dropped or whose connection breaks is re-sent by the follower with its internal key;
    a delete of the workload lands in between, and the re-send is answered with the first
    attempt's 201 instead of creating the workload again."""
    c, leader, proxy = start_cluster(make, 5)
    follower = [n for n in c.running() if n is not leader][0]
    for fault in ("drop", "break"):
        name = "once-%s" % fault
        proxy.plan(name.encode(), fault)
        result = {}
        body = {"namespace": "default", "name": name, "command": ["sleep", "1000"],
                "replicas": 0}
        t = threading.Thread(target=lambda: result.update(
            r=follower.req("POST", "/v1/workloads?timeout=%dms" % int(scaled(8) * 1000), body,
                           timeout=scaled(30))))
        t.start()
        wait_for("the re-send of %s to reach the proxy" % name, proxy.held.is_set, 20)
        path = "/v1/workloads/default/" + name
        wait_for("%s created by the first attempt" % name,
                 lambda: (lambda r: r is not None and r.status == 200)(
                     leader.req("GET", path + "?consistency=stale")), 20)
        r = leader.req("DELETE", path)
        assert r is not None and r.status in (200, 204), r
        proxy.release()
        t.join(scaled(30))
        assert not t.is_alive()
        r = result["r"]
        assert r is not None and r.status == 201, r
        assert "x-cloudless-idempotent-replay" not in r.headers, r.headers
        got = leader.req("GET", path)
        assert got is not None and got.status == 404, (fault, got)
    assert proxy.counts["held"] >= 2, proxy.counts
    c.wait_converged()
    proxy.close()


def test_random_faults_linearizable(make):
    seed = int(os.environ.get("CLOUDLESS_SEED", "0")) or random.SystemRandom().randrange(1 << 30)
    print("  seed %d (CLOUDLESS_SEED replays the schedule)" % seed)
    c, leader, proxy = start_cluster(make, seed)
    nodes = sorted(c.running(), key=lambda n: n.node_id)
    followers = [n for n in nodes if n is not leader]
    history = History()
    timeout_ms = int(scaled(6) * 1000)
    keys = ["rk%d" % i for i in range(4)]
    stop = threading.Event()
    statuses = {}
    slock = threading.Lock()

    def client(pid):
        rng = random.Random(seed * 31 + pid)
        cl = Client(history, pid, timeout_ms)
        seq = 0
        while not stop.is_set():
            seq += 1
            cl.own_timeout = rng.random() < 0.5
            key = rng.choice(keys)
            value = "c%d-%d" % (pid, seq)
            # Mostly through the followers, whose forwards cross the proxy.
            node = rng.choice(followers) if rng.random() < 0.8 else leader
            x = rng.random()
            if x < 0.2:
                out = cl.read(node, key)
                typ = "ok" if out is not None else "fail"
            elif x < 0.35:
                typ = cl.write(node, key, value)[0]
            elif x < 0.5:
                typ = cl.write(node, key, value, idem="p%d-%d-%d" % (seed, pid, seq))[0]
            elif x < 0.7:
                typ = cl.create(node, key, value)[0]
            elif x < 0.85:
                got = cl.read(node, key)
                if got is None:
                    continue
                typ = cl.cas(node, key, got[0], got[1], value)[0] if got[1] else \
                    cl.create(node, key, value)[0]
            else:
                typ = cl.delete(node, key)[0]
            with slock:
                statuses[typ] = statuses.get(typ, 0) + 1

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(6)]
    proxy.random_faults(0.3)
    for t in threads:
        t.start()
    wait_for("1500 operations and 100 faults of each kind",
             lambda: proxy.counts["drop"] >= 100 and proxy.counts["break"] >= 100 and
             sum(statuses.values()) >= 1500, 120, interval=0.1)
    stop.set()
    for t in threads:
        t.join(scaled(30))
    proxy.random_faults(0.0)
    final = Client(history, "final", timeout_ms)
    for key in keys:
        wait_for("final read of %s" % key, lambda: final.read(leader, key), 20)
    results = assert_linearizable(history)
    c.wait_converged()
    retried = sum(forward_metric(f, "failed") for f in followers)
    batched = sum(batched_items(f) for f in followers)
    assert retried >= 100, "the faults cost few forwards: %r" % proxy.counts
    assert batched >= 100, "few writes were forwarded in batches: %d" % batched
    print("  %d ops %r, proxy %r, %d forwards failed and re-sent, %d writes batched, %d keys "
          "linearizable" % (sum(statuses.values()), statuses, proxy.counts, retried, batched,
                            len(results)))
    proxy.close()


if __name__ == "__main__":
    run([test_retry_after_fault_with_delete_in_between, test_resend_after_its_record_was_pruned,
         test_domain_write_applied_once, test_random_faults_linearizable])
