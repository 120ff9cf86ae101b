#!/usr/bin/env python3
"""Pipelined large-read burst (issue 18): does client load cost the cluster its leader?

A 3-node cluster holds one 512 KiB value. CONNS connections each pipeline DEPTH
`GET /v1/kv/big?consistency=stale` (200 x 20 x 512 KiB = 2 GiB by default) to the leader or
to a follower and read the answers as fast as they come. Per run it reports: leader changes
(every node's /raft/status leader_changes and term, before and after; target 0), the leader's
longest event-loop lag (cloudless_loop_lag_max_seconds) and the p99 and max of its
AppendEntries send interval per peer (heartbeats included; from the
cloudless_raft_append_send_interval_seconds histogram over the run; target < election timeout
/ 3), and the burst's duration and bytes.

  python3 bench/burst.py --coordinator build-rel/cloudless-coordinator --runs 3
  python3 bench/burst.py --target follower --conns 50 --depth 4    # smaller

Standard library only; the client is a selectors loop in this process. Prints one JSON line
per run and a markdown table.
"""
import argparse
import json
import os
import selectors
import socket
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "cluster"))
import harness  # noqa: E402


def metrics(node):
    out = {}
    for line in node.metrics().splitlines():
        if line.startswith("#") or " " not in line:
            continue
        k, v = line.rsplit(" ", 1)
        try:
            out[k] = float(v)
        except ValueError:
            pass
    return out


def hist(m, name):
    """{upper bound: cumulative count} of a histogram family."""
    h = {}
    for k, v in m.items():
        if k.startswith(name + "_bucket{le=\""):
            le = k[len(name) + 12:-2]
            h[float("inf") if le == "+Inf" else float(le)] = v
    return h


def quantile_bound(before, after, q):
    """Upper bound of the bucket holding quantile q of what was observed between two scrapes."""
    les = sorted(after)
    if not les:
        return None, 0  # a build without the histogram
    total = after[les[-1]] - before.get(les[-1], 0)
    if total <= 0:
        return None, 0
    for le in les:
        if after[le] - before.get(le, 0) >= q * total:
            return le, total
    return les[-1], total


def max_bound(before, after):
    """Upper bound of the highest bucket that got an observation between two scrapes."""
    les = sorted(after)
    if not les:
        return None
    total = after[les[-1]] - before.get(les[-1], 0)
    # Buckets are cumulative: the first one whose count reaches the total holds the maximum.
    for le in les:
        if total > 0 and after[le] - before.get(le, 0) >= total:
            return le
    return None


def burst(addr, conns, depth, path):
    host, port = addr.rsplit(":", 1)
    req = ("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path).encode() * depth
    sel = selectors.DefaultSelector()
    state = {}
    for _ in range(conns):
        s = socket.create_connection((host, int(port)))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        s.sendall(req)
        s.setblocking(False)
        state[s] = {"buf": b"", "skip": 0, "left": depth}
        sel.register(s, selectors.EVENT_READ)
    total, ok, t0 = 0, 0, time.monotonic()
    chunk = bytearray(1 << 20)
    view = memoryview(chunk)
    while state:
        for key, _ in sel.select(timeout=30):
            s = key.fileobj
            st = state[s]
            n = s.recv_into(view)
            if n == 0:
                sel.unregister(s)
                s.close()
                del state[s]
                continue
            total += n
            data = view[:n]
            pos = 0
            while pos < n:
                if st["skip"]:
                    take = min(st["skip"], n - pos)
                    st["skip"] -= take
                    pos += take
                    if st["skip"] == 0:
                        st["left"] -= 1
                        ok += 1
                    continue
                st["buf"] += bytes(data[pos:])
                pos = n
                end = st["buf"].find(b"\r\n\r\n")
                if end < 0:
                    break
                head = st["buf"][:end].decode(errors="replace")
                rest = st["buf"][end + 4:]
                st["buf"] = b""
                clen = 0
                for ln in head.split("\r\n")[1:]:
                    k, _, v = ln.partition(":")
                    if k.lower() == "content-length":
                        clen = int(v)
                st["skip"] = clen
                if clen == 0:
                    st["left"] -= 1
                    ok += 1
                # Re-feed what followed the head.
                data = memoryview(rest)
                n, pos = len(rest), 0
            if st["left"] == 0:
                sel.unregister(s)
                s.close()
                del state[s]
    return ok, total, time.monotonic() - t0


def changes(nodes):
    st = [n.status() for n in nodes]
    return sum(s["leader_changes"] for s in st if s), max(s["term"] for s in st if s)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--coordinator", default=os.path.join(ROOT, "build-rel", "cloudless-coordinator"))
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--conns", type=int, default=200)
    p.add_argument("--depth", type=int, default=20)
    p.add_argument("--value-kb", type=int, default=512)
    p.add_argument("--target", choices=["idle", "leader", "follower", "both"], default="both",
                   help="both: idle (no load, for reference), then leader, then follower")
    a = p.parse_args()
    harness.BIN = a.coordinator
    c = harness.Cluster("burst")
    rows = []
    try:
        c.start(3)
        leader = c.leader()
        value = b"v" * (a.value_kb * 1024)
        r = leader.req("PUT", "/v1/kv/big", value, timeout=10)
        assert r is not None and r.status == 200, r
        c.wait_converged()
        targets = ["idle", "leader", "follower"] if a.target == "both" else [a.target]
        for target in targets:
            for run in range(a.runs):
                leader = c.leader()
                node = leader if target == "leader" else [n for n in c.running() if n is not leader][0]
                ch0, term0 = changes(c.running())
                m0 = metrics(leader)
                if target == "idle":
                    t0 = time.monotonic()
                    time.sleep(3)  # the reference: the same figures with no load at all
                    ok, total, secs = 0, 0, time.monotonic() - t0
                else:
                    ok, total, secs = burst(node.http_addr, a.conns, a.depth,
                                            "/v1/kv/big?consistency=stale")
                m1 = metrics(leader)
                ch1, term1 = changes(c.running())
                p99, n_sends = quantile_bound(hist(m0, "cloudless_raft_append_send_interval_seconds"),
                                              hist(m1, "cloudless_raft_append_send_interval_seconds"), 0.99)
                lag_max = max_bound(hist(m0, "cloudless_loop_lag_seconds"),
                                    hist(m1, "cloudless_loop_lag_seconds"))
                send_max = max_bound(hist(m0, "cloudless_raft_append_send_interval_seconds"),
                                     hist(m1, "cloudless_raft_append_send_interval_seconds"))
                row = {"target": target, "run": run + 1, "responses": ok,
                       "expected": 0 if target == "idle" else a.conns * a.depth,
                       "gib": total / 2**30, "seconds": secs,
                       "leader_changes": ch1 - ch0, "term_change": term1 - term0,
                       "loop_lag_max_ms_le": None if lag_max is None else 1000 * lag_max,
                       "append_interval_max_ms_le": None if send_max is None else 1000 * send_max,
                       "loop_lag_max_ms": 1000 * m1.get("cloudless_loop_lag_max_seconds", 0),
                       "append_interval_p99_ms_le": None if p99 is None else 1000 * p99,
                       "append_interval_max_ms": 1000 * m1.get(
                           "cloudless_raft_append_send_interval_max_seconds", 0),
                       "appends_sent": n_sends,
                       "still_leader": c.leader() is leader}
                rows.append(row)
                print(json.dumps(row), flush=True)
                c.wait_converged()
    finally:
        c.close()
    def le(v):
        return "-" if v is None else "<= %.0f ms" % v
    print("\n| target | run | responses | GiB | seconds | elections (term +) | loop lag max | "
          "heartbeat/append send interval p99 | its max |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print("| %s | %d | %d/%d | %.2f | %.2f | %d | %s | %s | %s |" % (
            r["target"], r["run"], r["responses"], r["expected"], r["gib"], r["seconds"],
            r["term_change"], le(r["loop_lag_max_ms_le"]), le(r["append_interval_p99_ms_le"]),
            le(r["append_interval_max_ms_le"])))


if __name__ == "__main__":
    main()
