#!/usr/bin/env python3
"""Backups of a large state (issue 13): does GET /v1/snapshot cost the raft loop?

A 3-node cluster holds SIZE MiB (values of VALUE KiB). A client writes small keys to the leader
one at a time throughout; phases alternate between `quiet` (only those writes), `backup` (the
same writes while another client takes linearizable backups back to back, through a follower,
so the leader builds the image and the follower relays it) and `stale` (the same backups with
?stale: the follower builds them, so the machine carries the same load but the leader's loop
none of it). Per phase it reports
the backups taken and their size and duration, the writes' median and p99 latency, the
leader's longest event-loop lag (upper bound of the cloudless_loop_lag_seconds bucket; the
loop only pins the snapshot, a uv worker serialises the image) and leader changes (target 0).
Compare the phases of the same run: the machine is noisy, and on 2 cores the worker that
serialises an image competes for the CPU with every other thread of the three nodes; `stale`
tells that competition apart from anything the leader's loop itself would do.

  python3 bench/backup.py --coordinator build-rel/cloudless-coordinator
  python3 bench/backup.py --size-mb 16 --runs 1          # quicker

Standard library only. Prints one JSON line per phase and a markdown table.
"""
import argparse
import json
import os
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "cluster"))
sys.path.insert(0, HERE)
import harness  # noqa: E402
from burst import changes, hist, max_bound, metrics  # noqa: E402


def load(leader, size_mb, value_kb):
    value = b"x" * (value_kb * 1024)
    n = size_mb * 1024 // value_kb
    errors = []

    def part(lo, hi):
        for i in range(lo, hi):
            r = leader.req("PUT", "/v1/kv/big/%06d" % i, value, timeout=30)
            if r is None or r.status != 200:
                errors.append(r)
    threads = [threading.Thread(target=part, args=(k * n // 4, (k + 1) * n // 4)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]


class Writes:
    """Small writes to one node, one at a time; latencies per phase."""

    def __init__(self, node):
        self.node = node
        self.lat = []
        self.errors = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.i = 0

    def loop(self):
        while not self.stop.is_set():
            t0 = time.monotonic()
            r = self.node.req("PUT", "/v1/kv/small/%d" % self.i, "v", timeout=10)
            self.i += 1
            if r is None or r.status != 200:
                self.errors += 1
            else:
                self.lat.append(time.monotonic() - t0)

    def take(self):
        lat, self.lat = self.lat, []
        return lat


def backups(node, stop, out, timeout, query):
    while not stop.is_set():
        t0 = time.monotonic()
        r = node.req("GET", "/v1/snapshot?timeout=%ds%s" % (timeout, query), timeout=timeout + 5)
        ok = r is not None and r.status == 200
        out.append((ok, len(r.body) if ok else 0, time.monotonic() - t0))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--coordinator", default=os.path.join(ROOT, "build-rel", "cloudless-coordinator"))
    p.add_argument("--size-mb", type=int, default=64)
    p.add_argument("--value-kb", type=int, default=256)
    p.add_argument("--seconds", type=float, default=8)
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--phases", default="quiet,backup,stale",
                   help="quiet: writes only; backup: linearizable backups through a follower "
                        "(the leader builds them); stale: ?stale backups of a follower (the "
                        "follower builds them: the same load on the machine, none on the "
                        "leader's loop)")
    a = p.parse_args()
    harness.BIN = a.coordinator
    c = harness.Cluster("backup-bench")
    rows = []
    try:
        c.start(3)
        leader = c.leader()
        t0 = time.monotonic()
        load(leader, a.size_mb, a.value_kb)
        print("loaded %d MiB in %.1fs" % (a.size_mb, time.monotonic() - t0), file=sys.stderr)
        c.wait_converged(timeout=120)
        follower = [n for n in c.running() if n is not leader][0]
        w = Writes(leader)
        w.thread.start()
        for run in range(a.runs):
            for phase in a.phases.split(","):
                ch0, term0 = changes(c.running())
                m0 = metrics(leader)
                w.take()
                taken, stop = [], threading.Event()
                bt = threading.Thread(target=backups, args=(follower, stop, taken, 120,
                                                            "&stale" if phase == "stale" else ""))
                if phase != "quiet":
                    bt.start()
                time.sleep(a.seconds)
                stop.set()
                if phase != "quiet":
                    bt.join()
                lat = sorted(w.take())
                m1 = metrics(leader)
                ch1, term1 = changes(c.running())
                lag = max_bound(hist(m0, "cloudless_loop_lag_seconds"),
                                hist(m1, "cloudless_loop_lag_seconds"))
                row = {"run": run + 1, "phase": phase,
                       "backups": sum(1 for ok, _, _ in taken if ok),
                       "backup_errors": sum(1 for ok, _, _ in taken if not ok),
                       "image_mib": max((n for _, n, _ in taken), default=0) / 2**20,
                       "backup_s_median": statistics.median([s for ok, _, s in taken if ok])
                       if any(ok for ok, _, _ in taken) else None,
                       "writes": len(lat), "write_errors": w.errors,
                       "write_p50_ms": 1000 * lat[len(lat) // 2] if lat else None,
                       "write_p99_ms": 1000 * lat[int(len(lat) * 0.99)] if lat else None,
                       "loop_lag_max_ms_le": None if lag is None else 1000 * lag,
                       "leader_changes": ch1 - ch0, "term_change": term1 - term0}
                rows.append(row)
                print(json.dumps(row), flush=True)
        w.stop.set()
        w.thread.join(timeout=15)
    finally:
        c.close()

    def f(v, fmt):
        return "-" if v is None else fmt % v
    print("\n| run | phase | backups (errors) | image MiB | backup s (median) | writes | write p50 ms "
          "| write p99 ms | leader loop lag max | elections |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print("| %d | %s | %d (%d) | %s | %s | %d | %s | %s | %s | %d |" % (
            r["run"], r["phase"], r["backups"], r["backup_errors"], f(r["image_mib"] or None, "%.1f"),
            f(r["backup_s_median"], "%.2f"), r["writes"], f(r["write_p50_ms"], "%.1f"),
            f(r["write_p99_ms"], "%.1f"), f(r["loop_lag_max_ms_le"], "<= %.0f ms"),
            r["term_change"]))


if __name__ == "__main__":
    main()
