"""SIGTERM while a node still waits on a peer exits cleanly (issue 21).

A node that auto-joins (--join, empty data dir) posts /raft/join and waits for the answer,
which the leader holds until the new node has caught up (up to a minute). The node used to
free its options at shutdown before the forward client cancelled that request, whose
callback then read the freed options: a heap-use-after-free that AddressSanitizer reports.
The same ownership holds for the status requests a node without a leader sends its peers to
learn whether it was removed. Now whoever frees the options cancels those requests first.

Both cases hold the peer's answer open by stopping the peer (SIGSTOP: the kernel still
accepts the connection and the request, nobody answers), wait until the request is on the
wire, then SIGTERM the node and require exit status 0 and a log without any sanitizer
report. The suite runs these in the ASan+UBSan build too (build-asan), where a
use-after-free fails the test.

A third case: a request whose body completes after the HTTP thread began to stop (listener
gone, connections getting their last second) used to be queued to the loop after its last
drain; the loop then answered it through a queue no thread read and libuv aborted (seen in
a jepsen membership round). It must get 503 shutting-down from the HTTP thread instead."""
import signal
import socket

from harness import listening, run, wait_for

SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "runtime error:", "Assertion", "Aborted")


def request_waiting_at(port):
    """Whether a connection to 127.0.0.1:port holds bytes its (stopped) server has not read:
    a request on the wire, unanswered. From /proc/net/tcp: the server side's local address,
    state ESTABLISHED (01), and a non-zero receive queue."""
    want = ":%04X" % port
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            parts = line.split()
            rx = int(parts[4].split(":")[1], 16)
            if parts[1].endswith(want) and parts[3] == "01" and rx > 0:
                return True
    return False


def assert_clean_exit(node, timeout=30):
    rc = node.stop(timeout=timeout)
    log = node.log()
    for marker in SANITIZER_MARKERS:
        assert marker not in log, "%s's log has %r:\n%s" % (node.node_id, marker, log[-4000:])
    assert rc == 0, "%s exited with %r:\n%s" % (node.node_id, rc, log[-3000:])
    assert "Stopped node_id=%s" % node.node_id in log, log[-2000:]


def test_sigterm_while_join_held_open(make):
    c = make()
    leader = c.node("coordinator-1").start(bootstrap=True)
    wait_for("the first node to lead", lambda: c.leader_of([leader]))
    leader.kill(signal.SIGSTOP)  # holds every request it gets, the join included
    try:
        joiner = c.node("coordinator-2").start(join=[leader])
        port = int(leader.http_addr.rsplit(":", 1)[1])
        wait_for("the join request on the wire",
                 lambda: "Join attempt node_id=coordinator-2" in joiner.log() and
                 request_waiting_at(port), 20)
        assert "Join attempt failed" not in joiner.log(), joiner.log()[-2000:]
        assert joiner.alive(), joiner.log()[-2000:]
        assert_clean_exit(joiner)
        assert "Joined raft cluster" not in joiner.log()
    finally:
        leader.kill(signal.SIGCONT)
    # The leader is unharmed, and the node can join for real afterwards.
    wait_for("the first node to lead again", lambda: c.leader_of([leader]))
    joiner.wipe()
    joiner.start(join=[leader])
    c.wait_voters(2)
    assert_clean_exit(joiner)


def test_sigterm_while_removal_check_in_flight(make):
    c = make().start(3)
    ld = c.leader()
    node = [n for n in c.running() if n is not ld][0]
    peers = [n for n in c.running() if n is not node]
    for p in peers:
        p.kill(signal.SIGSTOP)
    try:
        # Without a leader for three election timeouts the node asks its peers' /raft/status
        # whether it is still a member; the stopped peers hold those requests.
        ports = [int(p.http_addr.rsplit(":", 1)[1]) for p in peers]
        wait_for("a removal check on the wire",
                 lambda: any(request_waiting_at(port) for port in ports), 20)
        assert node.alive(), node.log()[-2000:]
        assert_clean_exit(node)
    finally:
        for p in peers:
            p.kill(signal.SIGCONT)


def test_sigterm_while_a_body_arrives(make):
    c = make()
    node = c.node("coordinator-1").start(bootstrap=True)
    wait_for("the node to lead", lambda: c.leader_of([node]))
    port = int(node.http_addr.rsplit(":", 1)[1])
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.sendall(b"PUT /v1/kv/late HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        node.kill(signal.SIGTERM)
        wait_for("the HTTP thread to stop listening", lambda: not listening(port), 20, 0.005)
        s.sendall(b"defghij")
        got = b""
        while b"\r\n\r\n" not in got:
            chunk = s.recv(4096)
            assert chunk, "connection closed without an answer: %r" % got
            got += chunk
    finally:
        s.close()
    assert got.startswith(b"HTTP/1.1 503 "), got
    assert b"shutting-down" in got or b"Content-Length" in got, got
    assert_clean_exit(node)


if __name__ == "__main__":
    run([test_sigterm_while_join_held_open, test_sigterm_while_removal_check_in_flight,
         test_sigterm_while_a_body_arrives])
