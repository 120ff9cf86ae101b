"""Command line: bad configuration fails fast with one clear line on stderr, --help documents
every flag, a taken --http-addr is reported, and SIGINT stops a node cleanly."""
import os
import signal
import subprocess

from harness import BIN, free_port, run, scaled, wait_for

FLAGS = ["--node-id", "--raft-addr", "--http-addr", "--advertise-http", "--metrics-addr",
         "--data-dir", "--bootstrap", "--bootstrap-expect", "--join", "--catch-up-timeout-ms", "--heartbeat-ms", "--election-ms", "--log-level",
         "--snapshot-threshold", "--snapshot-trailing", "--health-max-lag", "--max-body",
         "--forward-timeout-ms", "--idempotency-ttl", "--idempotency-max",
         "--connect-retry-ms", "--help", "--version"]


def clean_env():
    """The caller's environment without CLOUDLESS_* settings, which would fill in flags."""
    return {k: v for k, v in os.environ.items() if not k.startswith("CLOUDLESS_")}


def coordinator(args, timeout=20):
    return subprocess.run([BIN] + args, capture_output=True, text=True, env=clean_env(),
                          stdin=subprocess.DEVNULL, timeout=scaled(timeout))


def assert_one_line_error(p, *needles):
    what = "%r" % (p.args[1:],)
    assert p.returncode != 0, "%s exited 0" % what
    assert p.returncode > 0, "%s died of signal %d" % (what, -p.returncode)
    assert p.stdout == "", "%s printed on stdout: %r" % (what, p.stdout)
    lines = p.stderr.splitlines()
    assert len(lines) == 1, "%s: expected one line on stderr, got %r" % (what, lines)
    line = lines[0]
    for needle in needles:
        assert needle in line, "%s: %r does not mention %r" % (what, line, needle)
    assert line.count("(see --help)") <= 1, "%s: %r" % (what, line)
    return line


def test_bad_configuration(make):
    c = make()
    data = os.path.join(c.dir, "data")
    base = ["--node-id", "n1", "--raft-addr", "127.0.0.1:%d" % free_port(),
            "--http-addr", "127.0.0.1:%d" % free_port(), "--data-dir", data]
    regular_file = os.path.join(c.dir, "a-file")
    with open(regular_file, "w") as f:
        f.write("not a directory\n")
    cases = [
        (base + ["--http-addr", "127.0.0.1:70000"], ["--http-addr", "70000", "out of range"]),
        (base + ["--raft-addr", "127.0.0.1:65536"], ["--raft-addr", "65536", "out of range"]),
        (base + ["--metrics-addr", "127.0.0.1:123456"], ["--metrics-addr", "123456"]),
        (base + ["--raft-addr", "127.0.0.1:0"], ["--raft-addr", "out of range"]),
        (base + ["--data-dir", os.path.join(regular_file, "sub")], ["--data-dir", regular_file]),
        (base + ["--frobnicate", "1"], ["unknown flag", "--frobnicate"]),
        (base + ["-x"], ["unknown flag", "-x"]),
        (base + ["--bootstrap", "--bootstrap-expect", "3", "--join", "127.0.0.1:%d" % free_port()],
         ["--bootstrap", "--bootstrap-expect", "exclusive"]),
        (base + ["--bootstrap-expect", "3"], ["--bootstrap-expect", "needs --join"]),
        (base[2:], ["--node-id", "required"]),
        (base + ["--log-level", "loud"], ["--log-level", "loud"]),
        (base + ["--node-id", "has space"], ["--node-id"]),
        (base + ["--election-ms", "50", "--heartbeat-ms", "50"],
         ["--election-ms", "--heartbeat-ms"]),
        (base + ["--max-body", "lots"], ["--max-body", "lots"]),
        (base + ["--heartbeat-ms"], ["--heartbeat-ms", "missing value"]),
    ]
    for args, needles in cases:
        p = coordinator(args)
        assert_one_line_error(p, *needles)
    assert not os.path.exists(os.path.join(regular_file, "sub"))


def test_help_and_version(make):
    p = coordinator(["--help"])
    assert p.returncode == 0, p
    assert p.stderr == "", p.stderr
    for flag in FLAGS:
        assert flag in p.stdout, "--help does not mention %s" % flag
    # Every flag has a line of its own that starts with it.
    starts = {line.split()[0].rstrip(",") for line in p.stdout.splitlines()
              if line.startswith("  -")}
    for flag in FLAGS:
        assert flag in starts or flag == "--help", (flag, sorted(starts))
    short = coordinator(["-h"])
    assert short.returncode == 0 and short.stdout == p.stdout, short
    v = coordinator(["--version"])
    assert v.returncode == 0 and v.stdout.startswith("cloudless-coordinator "), v
    assert v.stderr == "", v.stderr


def test_http_addr_in_use(make):
    c = make()
    first = c.node("coordinator-1").start(bootstrap=True)
    c.leader()
    second = c.node("coordinator-2")
    second.http_addr = first.http_addr
    args = ["--node-id", second.node_id, "--raft-addr", second.raft_addr, "--http-addr",
            second.http_addr, "--data-dir", second.data_dir, "--join", first.http_addr]
    p = coordinator(args)
    line = assert_one_line_error(p, "--http-addr", first.http_addr)
    assert "in use" in line.lower(), line
    # The first node is unaffected.
    assert first.alive() and c.leader_of([first]) is first
    assert first.status()["servers"][0]["node_id"] == first.node_id
    assert len(first.status()["servers"]) == 1


def test_sigint_stops_cleanly(make):
    c = make()
    n = c.node("coordinator-1").start(bootstrap=True)
    c.leader()
    assert n.put("k", "v").status == 200
    n.kill(signal.SIGINT)
    rc = n.proc.wait(timeout=scaled(10))
    assert rc == 0, rc
    log = n.log()
    assert "Stopping node_id=coordinator-1 reason=SIGINT" in log, log[-2000:]
    last = log.rstrip().splitlines()[-1]
    assert " Stopped node_id=coordinator-1" in last, log[-2000:]
    # Restarting from the same data dir finds the write.
    n.restart()
    wait_for("restarted node to lead", lambda: c.leader_of([n]))
    r = wait_for("value after restart",
                 lambda: (lambda r: r if r and r.status == 200 else None)(n.get("k")))
    assert r.body == b"v", r


if __name__ == "__main__":
    run([test_bad_configuration, test_help_and_version, test_http_addr_in_use,
         test_sigint_stops_cleanly])
