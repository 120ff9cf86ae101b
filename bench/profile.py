#!/usr/bin/env python3
"""Profiles a 3-node Cloudless cluster under write load (see docs/benchmarks.md).

Starts a fresh release-build cluster on loopback, drives writes to the leader with
cloudless-loadgen, and meanwhile attaches one tool to the leader (or a follower):

  perf     `perf record -g` for --seconds; prints `perf report` (top symbols, children off)
  strace   `strace -c -f` for --seconds; prints syscall counts, and the fsync-family calls
           per acknowledged write (group commit: fewer than 1 under concurrency)

  bench/profile.py --tool perf --concurrency 64
  bench/profile.py --tool strace --concurrency 1
  bench/profile.py --tool strace --concurrency 64 --target follower
  bench/profile.py --tool perf --concurrency 64 --send-to follower --target follower
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

CLK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """utime + stime of a process (all threads), in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

p = argparse.ArgumentParser()
p.add_argument("--tool", choices=["perf", "strace", "none"], default="perf")
p.add_argument("--concurrency", type=int, default=64)
p.add_argument("--seconds", type=float, default=10)
p.add_argument("--target", choices=["leader", "follower", "follower2"], default="leader",
               help="the node the tool attaches to (follower2: the follower that gets no "
                    "client requests, only the log)")
p.add_argument("--send-to", choices=["leader", "follower"], default="leader",
               help="the node the writes are sent to (follower: the forwarding path)")
p.add_argument("--coordinator", default=os.path.join(ROOT, "build-rel", "cloudless-coordinator"))
p.add_argument("--loadgen", default=os.path.join(ROOT, "build-rel", "bench", "cloudless-loadgen"))
p.add_argument("--out", default=None, help="keep perf.data / strace output here")
p.add_argument("--preload", type=int, default=0, help="write this many keys before measuring")
p.add_argument("--extra", default="", help="extra coordinator flags, space-separated")
ARGS = p.parse_args()

os.environ["CLOUDLESS_BIN"] = os.path.abspath(ARGS.coordinator)
sys.path.insert(0, os.path.join(ROOT, "tests", "cluster"))
import harness  # noqa: E402

out = ARGS.out or tempfile.mkdtemp(prefix="cloudless-profile-")
os.makedirs(out, exist_ok=True)
c = harness.Cluster("profile", extra_args=ARGS.extra.split())
try:
    c.start(3)
    ld = c.leader()
    fol, fol2 = [n for n in c.running() if n is not ld][:2]
    victim = {"leader": ld, "follower": fol, "follower2": fol2}[ARGS.target]
    if ARGS.preload:
        subprocess.run([ARGS.loadgen, "--url", "http://" + ld.http_addr, "--op", "put",
                        "--concurrency", "64", "--requests", str(ARGS.preload), "--prefix", "pre",
                        "--quiet"], check=True, stdout=subprocess.DEVNULL)
    pid = victim.proc.pid
    total = ARGS.seconds + 3
    entry = ld if ARGS.send_to == "leader" else fol
    lg = subprocess.Popen([ARGS.loadgen, "--url", "http://" + entry.http_addr, "--op", "put",
                           "--concurrency", str(ARGS.concurrency), "--duration", str(total),
                           "--prefix", "prof"], stdout=subprocess.PIPE, text=True)
    time.sleep(1.5)  # let connections and the log warm up
    roles = [("leader", ld)] + [("follower%d" % i, n) for i, n in
                                enumerate([n for n in c.running() if n is not ld], 1)]
    cpu0 = {r: cpu_seconds(n.proc.pid) for r, n in roles}
    cpu0["loadgen"] = cpu_seconds(lg.pid)
    applied0 = ld.status()["applied_index"]
    t0 = time.monotonic()
    if ARGS.tool == "perf":
        data = os.path.join(out, "perf.data")
        subprocess.run(["perf", "record", "--call-graph", os.environ.get("PERF_CALLGRAPH", "fp"), "-F", "999", "-o", data, "-p", str(pid), "--",
                        "sleep", str(ARGS.seconds)], check=True, stderr=subprocess.DEVNULL)
    elif ARGS.tool == "strace":
        so = os.path.join(out, "strace.txt")
        st = subprocess.Popen(["strace", "-c", "-f", "-o", so, "-p", str(pid)])
        t0_applied = victim.status()["applied_index"]
        time.sleep(ARGS.seconds)
        t1_applied = victim.status()["applied_index"]
        st.send_signal(signal.SIGINT)
        st.wait()
    else:
        time.sleep(ARGS.seconds)
    # CPU per write of each process over the profiled window: what a change saves, and where
    # the two cores go (the nodes and the load generator share them).
    dt = time.monotonic() - t0
    applied = max(1, ld.status()["applied_index"] - applied0)
    cpu1 = {r: cpu_seconds(n.proc.pid) for r, n in roles}
    cpu1["loadgen"] = cpu_seconds(lg.pid)
    print("cpu over %.1f s, %d entries (%.0f/s):" % (dt, applied, applied / dt))
    for r in cpu1:
        used = cpu1[r] - cpu0[r]
        print("  %-10s %5.1f%% of a core  %6.1f us/entry" % (r, 100 * used / dt,
                                                            1e6 * used / applied))
    res = json.loads(lg.communicate()[0].strip().splitlines()[-1])
    print("load: %.0f writes/s, p50 %.2f ms, p99 %.2f ms, errors %d" % (
        res["throughput"], res["p50_ms"], res["p99_ms"], res["errors"]))
    if ARGS.tool == "perf":
        rep = subprocess.run(["perf", "report", "-i", data, "--no-children", "--stdio",
                              "--sort", "dso,symbol", "-g", "none", "--percent-limit", "0.7"],
                             capture_output=True, text=True)
        print("\n".join(l for l in rep.stdout.splitlines() if l and not l.startswith("#")))
        rep = subprocess.run(["perf", "report", "-i", data, "--children", "--stdio",
                              "--sort", "symbol", "-g", "none", "--percent-limit", "4"],
                             capture_output=True, text=True)
        print("\n--- inclusive (children) ---")
        print("\n".join(l for l in rep.stdout.splitlines() if l and not l.startswith("#")))
    elif ARGS.tool == "strace":
        text = open(so).read()
        print(text)
        writes = t1_applied - t0_applied
        syncs = 0
        for line in text.splitlines():
            f = line.split()
            if f and f[-1] in ("fsync", "fdatasync", "io_submit", "sync_file_range", "pwritev2",
                               "io_uring_enter"):
                syncs += int(f[3])
                print("%s: %s calls" % (f[-1], f[3]))
        if writes > 0:
            print("entries applied while tracing: %d; fsync/io_submit-family calls per entry: "
                  "%.3f" % (writes, syncs / writes))
finally:
    c.close()
    print("output kept in %s" % out)
