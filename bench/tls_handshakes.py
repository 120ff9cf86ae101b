#!/usr/bin/env python3
"""What a new TLS connection costs the coordinator: a one-node TLS cluster (its own CA, as in
tests/cluster/test_tls.py), then N connections one after the other, each a full TLS handshake,
one GET /raft/health?mode=live and Connection: close. Reports the server's CPU (utime + stime
of the process, /proc) and the client's wall time per connection, with Nagle left on in the
client as most clients do.

  python3 bench/tls_handshakes.py --coordinator build-rel/cloudless-coordinator --n 400

Standard library only; prints one JSON line.
"""
import argparse
import json
import os
import socket
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "cluster"))
import certs  # noqa: E402
import harness  # noqa: E402

REQ = b"GET /raft/health?mode=live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def cpu_seconds(pid):
    fields = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--coordinator", default=os.path.join(os.path.dirname(HERE), "build-rel",
                                                         "cloudless-coordinator"))
    p.add_argument("--n", type=int, default=400)
    a = p.parse_args()
    harness.BIN = a.coordinator
    c = harness.Cluster("tls-handshakes")
    try:
        pki = certs.Pki(c.dir)
        c.ssl_context = ctx = pki.context()
        c.start(1, extra_for=pki.node_args)
        nd = c.nodes["coordinator-1"]
        host, port = nd.http_addr.rsplit(":", 1)
        cpu0, t0 = cpu_seconds(nd.proc.pid), time.monotonic()
        for _ in range(a.n):
            raw = socket.create_connection((host, int(port)))
            with ctx.wrap_socket(raw, server_hostname=host) as s:
                s.sendall(REQ)
                while s.recv(4096):
                    pass
        wall = time.monotonic() - t0
        cpu = cpu_seconds(nd.proc.pid) - cpu0
        print(json.dumps({"connections": a.n, "server_cpu_ms_per_conn": round(cpu / a.n * 1e3, 3),
                          "client_wall_ms_per_conn": round(wall / a.n * 1e3, 3)}))
    finally:
        c.close()


if __name__ == "__main__":
    main()
