"""TLS on the HTTP API (issue 14 item 5), with real processes and real certificates.

Every cluster here has its own CA (tests/cluster/certs.py, the openssl command) and a
certificate per node naming 127.0.0.1, so a node that forwards to the leader verifies the
leader's certificate like any client. Cases:
  - a client without the CA fails verification (python's ssl and curl), with it succeeds;
    writes through a follower are forwarded over TLS, one by one and in batches; a plain
    HTTP request to the TLS port gets a plain 400 and bytes that are neither get closed, and
    the node goes on serving; the --metrics-addr listener stays plain HTTP unless
    --metrics-tls;
  - with --tls-client-ca a client without a certificate, or with one from another CA, is
    refused and one with a certificate is served, through a follower too;
  - a certificate swapped on disk is served after SIGHUP (its fingerprint) while a connection
    opened before goes on; a bad one on SIGHUP keeps the old and says so;
  - cloudlessctl and an agent work against the TLS cluster with --ca-file (and a client
    certificate under --tls-client-ca), and fail without it;
  - framing over TLS: pipelined large and chunked bodies, 100-continue, a strict-parser 400,
    close_notify after Connection: close and at the idle timeout, no delayed-ACK wait for
    the first request of a connection;
  - a handshake that stalls is cut off at --http-header-timeout-ms while others are served.
"""
import hashlib
import http.client
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time

import certs
from harness import BIN, free_port, run, scaled, wait_for

CTL = os.environ.get("CLOUDLESS_CTL") or os.path.join(os.path.dirname(BIN), "cloudlessctl")


def tls_cluster(make, n=3, client_ca=False, extra=None, per_node=None):
    """A TLS cluster of n nodes: the first bootstraps, the others join it over https."""
    c = make()
    c.pki = certs.Pki(c.dir)
    c.ssl_context = c.pki.context(client_cert=client_ca)
    c.extra_args = list(extra or [])
    index = {}

    def extra_for(nd):
        index[nd.node_id] = len(index) + 1
        return c.pki.node_args(nd, client_ca) + (per_node or {}).get(index[nd.node_id], [])
    return c.start(n, extra_for=extra_for)


def https(addr, ctx, method="GET", path="/raft/status", body=None, timeout=5.0):
    """(status, body) over HTTPS; raises on a failed handshake."""
    host, port = addr.rsplit(":", 1)
    conn = http.client.HTTPSConnection(host, int(port), timeout=timeout, context=ctx)
    try:
        conn.request(method, path, body=body)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def handshake_error(addr, ctx):
    """The exception a request over ctx ends with, or None when it was answered."""
    try:
        https(addr, ctx)
    except (ssl.SSLError, ConnectionError, http.client.HTTPException) as e:
        return e
    return None


def served_fingerprint(addr, ctx):
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=host) as s:
            return hashlib.sha256(s.getpeercert(binary_form=True)).hexdigest()


def curl(args):
    return subprocess.run(["curl", "-sS", "--max-time", "10"] + args, capture_output=True)


def raw_reply(addr, data, timeout=5.0):
    """Sends bytes on a plain TCP connection; everything read until the server closes."""
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while True:
            try:
                d = s.recv(65536)
            except ConnectionResetError:
                break
            if not d:
                break
            out += d
        return out


def ctl(c, args, extra=None):
    endpoints = ",".join(n.http_addr for n in c.nodes.values())
    p = subprocess.run([CTL, "--endpoints", endpoints, "--timeout", "5s"] + (extra or []) + args,
                       capture_output=True, timeout=scaled(60))
    return p.returncode, p.stdout.decode(), p.stderr.decode()


# ---- cases ------------------------------------------------------------------------------

def test_verify_forward_plaintext(make):
    c = tls_cluster(make, per_node={1: ["--metrics-addr", "127.0.0.1:%d" % free_port()]})
    leader = c.leader()
    follower = c.followers()[0]
    # Without the CA: verification fails; with it the answer comes.
    err = handshake_error(leader.http_addr, ssl.create_default_context())
    assert isinstance(err, ssl.SSLCertVerificationError), err
    status, _ = https(leader.http_addr, c.pki.context())
    assert status == 200
    p = curl(["https://%s/raft/status" % leader.http_addr])
    assert p.returncode == 60, p  # curl: peer certificate cannot be authenticated
    p = curl(["--cacert", c.pki.ca.cert, "https://%s/raft/status" % leader.http_addr])
    assert p.returncode == 0 and b'"state":"leader"' in p.stdout, p

    # Writes through a follower are forwarded to the leader over TLS.
    r = follower.put("through-follower", "v1")
    assert r is not None and r.status in (200, 201), r
    r = leader.get("through-follower")
    assert r.status == 200 and r.body == b"v1", r
    # Concurrent ones go in batches (POST /raft/forward on the leader), over TLS as well.
    results = []

    def writer(i):
        results.append(follower.put("batch-%d" % i, "x%d" % i))
    threads = [threading.Thread(target=writer, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r is not None and r.status in (200, 201) for r in results), results
    for i in range(24):
        r = leader.get("batch-%d" % i, "?stale")
        assert r.status == 200 and r.body == b"x%d" % i, r
    # ?redirect names the leader with https.
    r = follower.req("GET", "/v1/kv/through-follower?redirect")
    assert r.status == 307 and r.header("Location").startswith("https://" + leader.http_addr), r

    # Plain HTTP to the TLS port: a plain 400 saying so, then the close.
    out = raw_reply(leader.http_addr, b"GET /raft/status HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 "), out[:200]
    assert b"tls-required" in out and b"Connection: close" in out, out
    # Neither TLS nor HTTP: closed, with at most a TLS alert record (type 21).
    out = raw_reply(leader.http_addr, b"\x00\x01\x02\x03garbage\r\n\r\n" * 4)
    assert out == b"" or out[0] == 21, out
    assert leader.alive() and https(leader.http_addr, c.pki.context())[0] == 200

    # --metrics-addr stays plain HTTP (no --metrics-tls).
    m = c.nodes["coordinator-1"].args[c.nodes["coordinator-1"].args.index("--metrics-addr") + 1]
    host, port = m.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    conn.request("GET", "/metrics")
    r = conn.getresponse()
    assert r.status == 200 and b"cloudless_raft_voters 3" in r.read()
    conn.close()
    c.wait_converged()


def test_client_certificates(make):
    metrics_port = free_port()
    c = tls_cluster(make, client_ca=True, per_node={
        2: ["--metrics-addr", "127.0.0.1:%d" % metrics_port, "--metrics-tls"]})
    leader = c.leader()
    follower = c.followers()[0]
    with_cert = c.pki.context(client_cert=True)
    # No client certificate: refused in the handshake (TLS 1.3 may report it at the first
    # read), and the node goes on.
    for nd in (leader, follower):
        err = handshake_error(nd.http_addr, c.pki.context())
        assert err is not None, nd
    # A certificate from another CA: refused too.
    other = certs.make_ca(c.pki.dir, "other-ca")
    stranger = certs.make_cert(c.pki.dir, other, "stranger")
    ctx = c.pki.context()
    ctx.load_cert_chain(stranger.cert, stranger.key)
    assert handshake_error(leader.http_addr, ctx) is not None
    # With one: served, and a write through a follower is forwarded (the follower presents
    # its own certificate to the leader).
    assert https(leader.http_addr, with_cert)[0] == 200
    status, body = https(follower.http_addr, with_cert, "PUT", "/v1/kv/mtls", b"yes")
    assert status in (200, 201), (status, body)
    assert https(leader.http_addr, with_cert, path="/v1/kv/mtls")[1] == b"yes"
    p = curl(["--cacert", c.pki.ca.cert, "https://%s/raft/status" % leader.http_addr])
    assert p.returncode != 0, p
    p = curl(["--cacert", c.pki.ca.cert, "--cert", c.pki.client.cert, "--key", c.pki.client.key,
              "https://%s/raft/status" % leader.http_addr])
    assert p.returncode == 0, p
    # --metrics-tls: the second listener wants TLS and the client certificate as well.
    maddr = "127.0.0.1:%d" % metrics_port
    assert handshake_error(maddr, c.pki.context()) is not None
    status, body = https(maddr, with_cert, path="/metrics")
    assert status == 200 and b"cloudless_raft_voters" in body
    assert all(n.alive() for n in c.nodes.values())


def test_sighup_reload(make):
    c = tls_cluster(make, n=1)
    nd = c.nodes["coordinator-1"]
    ctx = c.pki.context()
    old = nd.served
    assert served_fingerprint(nd.http_addr, ctx) == old.fingerprint()
    # A connection opened before the swap, kept alive across it.
    host, port = nd.http_addr.rsplit(":", 1)
    live = http.client.HTTPSConnection(host, int(port), timeout=5, context=ctx)
    live.request("GET", "/raft/status")
    assert live.getresponse().read()

    new = certs.make_cert(c.pki.dir, c.pki.ca, "coordinator-1")
    shutil.copy(new.cert, nd.cert_path)
    shutil.copy(new.key, nd.key_path)
    # On disk only: still the old one until SIGHUP.
    assert served_fingerprint(nd.http_addr, ctx) == old.fingerprint()
    nd.kill(signal.SIGHUP)
    wait_for("the new certificate served",
             lambda: served_fingerprint(nd.http_addr, ctx) == new.fingerprint())
    assert "TLS certificate reloaded" in nd.log()
    assert ("sha256=%s serial=%x" % (new.fingerprint(), new.serial)) in nd.log()
    live.request("GET", "/raft/status")
    r = live.getresponse()
    assert r.status == 200 and r.read()

    # A bad certificate (garbage), then a key that does not match: the old one stays.
    with open(nd.cert_path, "w") as f:
        f.write("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
    nd.kill(signal.SIGHUP)
    wait_for("the failed reload logged",
             lambda: nd.log().count("TLS certificate reload failed") == 1)
    other = certs.make_cert(c.pki.dir, c.pki.ca, "coordinator-1")
    shutil.copy(other.cert, nd.cert_path)  # new.key stays: a mismatch
    nd.kill(signal.SIGHUP)
    wait_for("the second failed reload logged",
             lambda: nd.log().count("TLS certificate reload failed") == 2)
    assert nd.alive()
    assert served_fingerprint(nd.http_addr, ctx) == new.fingerprint()
    assert nd.put("after-bad-reload", "ok").status in (200, 201)
    # A clean stop with TLS connections open (live is still connected): exit status 0, which
    # under ASan also means no leak of sessions or credentials.
    assert nd.stop() == 0
    live.close()


def test_ctl_and_agent(make):
    c = tls_cluster(make)
    ca = ["--ca-file", c.pki.ca.cert]
    rc, out, err = ctl(c, ["kv", "put", "from-ctl", "hello"], ca)
    assert rc == 0, (rc, out, err)
    rc, out, err = ctl(c, ["kv", "get", "from-ctl"], ca)
    assert rc == 0 and "hello" in out, (rc, out, err)
    rc, out, err = ctl(c, ["cluster", "status"], ca)
    assert rc == 0 and out.count("voter") >= 3, (rc, out, err)
    # Explicit https:// endpoints without --ca-file: the system's CAs do not know ours.
    eps = ",".join("https://" + n.http_addr for n in c.nodes.values())
    p = subprocess.run([CTL, "--endpoints", eps, "--timeout", "3s", "kv", "get", "from-ctl"],
                       capture_output=True, timeout=scaled(60))
    assert p.returncode == 3, p
    # Plain host:port without --ca-file: plain HTTP, which the TLS port refuses.
    rc, out, err = ctl(c, ["kv", "get", "from-ctl"])
    assert rc != 0, (rc, out, err)

    agent = c.agent("tls-agent")
    agent.start(extra=ca)

    def ready():
        st, body = https(c.leader().http_addr, c.pki.context(), path="/v1/agents")
        return st == 200 and b'"id":"tls-agent"' in body and b'"state":"ready"' in body
    wait_for("the agent enrolled over TLS", ready, 20)
    # Without --ca-file it speaks plain HTTP, is told the port wants TLS, and never enrolls.
    stray = c.agent("plain-agent")
    stray.start()
    wait_for("the plain agent told to use TLS", lambda: "tls-required" in stray.log(), 20)
    st, body = https(c.leader().http_addr, c.pki.context(), path="/v1/agents")
    assert b"plain-agent" not in body


def test_ctl_and_agent_client_certificates(make):
    c = tls_cluster(make, n=1, client_ca=True)
    tls = ["--ca-file", c.pki.ca.cert, "--cert-file", c.pki.client.cert,
           "--key-file", c.pki.client.key]
    rc, out, err = ctl(c, ["kv", "put", "k", "v"], tls)
    assert rc == 0, (rc, out, err)
    rc, out, err = ctl(c, ["kv", "get", "k"], ["--ca-file", c.pki.ca.cert])
    assert rc != 0, (rc, out, err)
    agent = c.agent("mtls-agent")
    agent.start(extra=tls)

    def ready():
        st, body = https(c.leader().http_addr, c.ssl_context, path="/v1/agents")
        return st == 200 and b'"state":"ready"' in body
    wait_for("the agent enrolled with its certificate", ready, 20)


def tls_socket(addr, ctx):
    """A TLS socket on which an EOF without close_notify raises (ssl.SSLEOFError)."""
    host, port = addr.rsplit(":", 1)
    raw = socket.create_connection((host, int(port)), timeout=scaled(10))
    return ctx.wrap_socket(raw, server_hostname=host, suppress_ragged_eofs=False)


def read_to_close(s):
    out = b""
    while True:
        d = s.recv(65536)
        if not d:
            return out  # close_notify: a ragged EOF would have raised
        out += d


def test_framing_over_tls(make):
    idle_ms = int(scaled(2) * 1000)
    c = tls_cluster(make, n=1, extra=["--http-idle-timeout-ms", str(idle_ms)])
    nd = c.nodes["coordinator-1"]
    ctx = c.pki.context()
    # Pipelined: large Content-Length bodies, a chunked one, reads of them, the last with
    # Connection: close; every answer in order, then close_notify.
    big = b"v" * 300000
    reqs = b"".join(b"PUT /v1/kv/big%d HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
                    % (i, len(big), big) for i in range(3))
    reqs += (b"PUT /v1/kv/chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
             b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    reqs += b"GET /v1/kv/big1 HTTP/1.1\r\nHost: x\r\n\r\n"
    reqs += b"GET /v1/kv/chunked HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    s = tls_socket(nd.http_addr, ctx)
    s.sendall(reqs)
    out = read_to_close(s)
    s.close()
    assert out.count(b"HTTP/1.1 200 OK\r\n") == 6, out[:500]
    assert big in out and out.endswith(b"\r\n\r\nhello world"), out[-300:]
    # Expect: 100-continue over TLS.
    s = tls_socket(nd.http_addr, ctx)
    s.sendall(b"PUT /v1/kv/expect HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
              b"Expect: 100-continue\r\nConnection: close\r\n\r\n")
    assert s.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
    s.sendall(b"ok")
    assert read_to_close(s).startswith(b"HTTP/1.1 200 OK")
    s.close()
    # The strict parser on the decrypted stream: a refusal as problem+json over TLS.
    s = tls_socket(nd.http_addr, ctx)
    s.sendall(b"GET /v1/kv/x HTTP/1.1\r\nHost: x\r\nContent-Length : 5\r\n\r\n")
    out = read_to_close(s)
    s.close()
    assert out.startswith(b"HTTP/1.1 400 ") and b"application/problem+json" in out, out
    # A new connection's first request, written right behind the client's Finished with Nagle
    # on (Python's default), is not held for the server's delayed ACK (40 ms): it takes about
    # as long as the second request on the same connection.
    extra = []
    for _ in range(5):
        s = tls_socket(nd.http_addr, ctx)
        times = []
        for _ in range(2):
            t0 = time.monotonic()
            s.sendall(b"GET /raft/health?mode=live HTTP/1.1\r\nHost: x\r\n\r\n")
            assert s.recv(4096).startswith(b"HTTP/1.1 200")
            times.append(time.monotonic() - t0)
        s.close()
        extra.append(times[0] - times[1])
    assert sorted(extra)[2] < 0.03, extra
    # An idle keep-alive connection is closed at the idle timeout, with close_notify.
    s = tls_socket(nd.http_addr, ctx)
    s.settimeout(scaled(10) + idle_ms / 1000.0)
    s.sendall(b"GET /v1/kv/expect HTTP/1.1\r\nHost: x\r\n\r\n")
    start = time.monotonic()
    out = read_to_close(s)
    s.close()
    assert out.startswith(b"HTTP/1.1 200 OK") and out.endswith(b"ok"), out
    assert time.monotonic() - start >= idle_ms / 1000.0 * 0.9


def test_handshake_stall(make):
    timeout_ms = int(scaled(1.5) * 1000)
    c = tls_cluster(make, n=1, extra=["--http-header-timeout-ms", str(timeout_ms)])
    nd = c.nodes["coordinator-1"]
    host, port = nd.http_addr.rsplit(":", 1)
    # A ClientHello's first bytes, then nothing; and a connection that sends nothing at all.
    stalled = socket.create_connection((host, int(port)))
    stalled.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
    silent = socket.create_connection((host, int(port)))
    start = time.monotonic()
    closed = {}

    def watch(name, s):
        s.settimeout(scaled(30))
        try:
            while s.recv(4096):
                pass
        except OSError:
            pass
        closed[name] = time.monotonic() - start
    watchers = [threading.Thread(target=watch, args=("stalled", stalled)),
                threading.Thread(target=watch, args=("silent", silent))]
    for t in watchers:
        t.start()
    # Others are served meanwhile.
    served = 0
    while time.monotonic() - start < timeout_ms / 1000.0 * 0.8:
        assert nd.put("during-stall-%d" % served, "x").status in (200, 201)
        served += 1
    for t in watchers:
        t.join()
    assert served > 0
    for name in ("stalled", "silent"):
        assert timeout_ms / 1000.0 * 0.9 <= closed[name] <= timeout_ms / 1000.0 + scaled(2), \
            (name, closed)
    stalled.close()
    silent.close()
    wait_for("the stall logged", lambda: "TLS handshake did not complete" in nd.log())
    assert nd.alive() and nd.status()["state"] == "leader"


if __name__ == "__main__":
    run([test_verify_forward_plaintext, test_client_certificates, test_sighup_reload,
         test_ctl_and_agent, test_ctl_and_agent_client_certificates, test_framing_over_tls,
         test_handshake_stall])
