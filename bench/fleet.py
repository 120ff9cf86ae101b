#!/usr/bin/env python3
"""Fleet figures: 3 coordinators on loopback (tests/cluster/harness.py) and cloudless-fleet, the
fleet simulator (bench/fleet.c: N agents across 3 zones heartbeating as cloudless-agent does,
reporting their replicas running one heartbeat after they were assigned). Phases:

  heartbeats   for each --agents N: enroll N agents, one replica each, then a steady-state
               window of --window s: heartbeats/s answered, p50/p99 latency (simulator side),
               leader CPU (utime+stime of its process over the window), raft entries per
               1,000 heartbeats (the leader's commit index over the window; target 0)
  placements   1,000 agents; workloads of 100 replicas totalling each --replicas count,
               created 8 at a time, for spread, binpack and spread with a node selector
               (tier=a: half the agents): placements/s (replicas / first create -> last
               workload fully scheduled), time until all are reported running, p99 of one
               workload's create -> all its replicas scheduled
  failure      1,000 agents (1 s heartbeat, 3 s timeout), 3,000 replicas: silence 1 agent,
               then 10% of the agents (--trials each; they are revived in between): time
               until every replica they held runs on a live agent, reported running
               (--watch: the agents also run the blocking assignments query)
  leader       1,000 agents heartbeating; SIGKILL the leader: agents marked offline and
               replicas moved (both target 0), time until every agent's heartbeat is answered
  memory       leader VmRSS at 0 / 1,000 / 2,000 agents (no replicas) and at 2,000 agents with
               0 / 10,000 / 20,000 replicas: the slopes per agent and per replica
  real         one real cloudless-agent: a 200-replica workload of real processes, create ->
               all 200 alive, then scale to 0 -> all gone

--quick (the 'bench' suite runs it) starts a 3-node cluster with 30 simulated agents, places a
12-replica workload with a node selector, checks that every agent enrolled and heartbeats, that
the replicas were assigned to selected agents and reported running, and that silenced agents'
replicas come back elsewhere. It asserts no timing.

The machine is shared and has 2 cores: the simulator competes with the three coordinators for
them, so absolute figures are conservative. Standard library only:
  python3 bench/fleet.py --coordinator build-rel/cloudless-coordinator \\
      --fleet build-rel/bench/cloudless-fleet --phases heartbeats,placements
"""
import argparse
import json
import os
import queue
import signal
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
T0 = time.monotonic()


def log(msg):
    sys.stderr.write("[%7.1fs] %s\n" % (time.monotonic() - T0, msg))
    sys.stderr.flush()


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="a tiny run that proves the tooling works")
    p.add_argument("--coordinator", default=os.path.join(ROOT, "build-rel", "cloudless-coordinator"))
    p.add_argument("--fleet", default=os.path.join(ROOT, "build-rel", "bench", "cloudless-fleet"))
    p.add_argument("--phases", default="heartbeats,placements,failure,leader,memory,real")
    p.add_argument("--agents", default="100,1000,5000,10000",
                   help="heartbeats phase: fleet sizes")
    p.add_argument("--heartbeat-ms", type=int, default=500,
                   help="heartbeats phase: the agents' interval (timeout: 3x)")
    p.add_argument("--window", type=float, default=10.0, help="steady-state window, seconds")
    p.add_argument("--replicas", default="10000,50000", help="placements phase: totals")
    p.add_argument("--strategies", default="spread,binpack,selector")
    p.add_argument("--trials", type=int, default=20, help="failure phase: trials per size")
    p.add_argument("--watch", action="store_true",
                   help="failure phase: agents run the blocking assignments query too")
    p.add_argument("--connections", type=int, default=512,
                   help="the simulator's keep-alive connections (at most one per agent)")
    return p.parse_args()


ARGS = parse_args()
os.environ["CLOUDLESS_BIN"] = ARGS.coordinator
sys.path.insert(0, os.path.join(ROOT, "tests", "cluster"))
import harness  # noqa: E402
from harness import Cluster, wait_for  # noqa: E402


class Sim:
    """One cloudless-fleet process: commands on its stdin, JSON lines from its stdout (a reader
    thread queues them; asynchronous events such as "replaced" are kept apart)."""

    def __init__(self, cluster, n, extra=()):
        urls = ",".join("http://" + nd.http_addr for nd in cluster.running())
        self.log_path = os.path.join(cluster.dir, "fleet.log")
        self.p = subprocess.Popen(
            [ARGS.fleet, "--url", urls, "--agents", str(n), "--connections",
             str(min(ARGS.connections, n))] + list(extra),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(self.log_path, "ab"),
            text=True, bufsize=1)
        self.lines = queue.Queue()
        self.events = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            d = json.loads(line)
            (self.events if "event" in d else self.lines).put(d)
        self.lines.put(None)

    def cmd(self, line, timeout=30):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        d = self.lines.get(timeout=timeout)
        if d is None:
            raise RuntimeError("cloudless-fleet exited: %s" % open(self.log_path).read()[-2000:])
        return d

    def status(self):
        return self.cmd("status")

    def event(self, timeout):
        return self.events.get(timeout=timeout)

    def close(self):
        """Asks it to quit; returns its exit status (a sanitizer's report makes it non-zero)."""
        if self.p.poll() is None:
            try:
                self.p.stdin.write("quit\n")
                self.p.stdin.flush()
                self.p.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.p.kill()
                self.p.wait()
        return self.p.returncode


def new_cluster(name, heartbeat_ms, timeout_ms):
    c = Cluster(name, heartbeat_ms=50, election_ms=1000,
                # every simulated agent (and every coordinator forwarding) connects from
                # 127.0.0.1, which a real fleet does not: lift the per-address limit
                extra_args=["--agent-heartbeat-ms", str(heartbeat_ms),
                            "--agent-timeout-ms", str(timeout_ms), "--log-level", "warn",
                            "--http-max-connections-per-ip", "8192"])
    c.start(3)
    c.leader()
    return c


def enrolled(sim, n, timeout):
    t0 = time.monotonic()
    wait_for("%d agents enrolled" % n, lambda: sim.status()["enrolled"] == n, timeout, 0.2)
    return time.monotonic() - t0


def create(c, name, replicas, strategy="spread", selector=None):
    pl = {"strategy": strategy}
    if selector:
        pl["node_selector"] = selector
    body = {"name": name, "replicas": replicas, "command": ["sleep", "600"], "placement": pl}
    for _ in range(50):
        nd = c.running()[hash(name) % len(c.running())]
        r = nd.req("POST", "/v1/workloads", body, timeout=30)
        if r is not None and r.status == 201:
            return
        time.sleep(0.1)
    raise AssertionError("could not create %s: %r" % (name, r))


def pages(nd, path):
    """Every item of a paged listing (limit 1,000, ?continue) from nd's mirror; None when a
    page fails."""
    items, token = [], None
    while True:
        full = path + ("&" if "?" in path else "?") + "limit=1000&consistency=stale"
        if token:
            full += "&continue=" + token
        r = nd.req("GET", full, timeout=30)
        if r is None or r.status != 200:
            return None
        doc = r.json()
        items += doc["items"]
        token = doc.get("continue")
        if not token:
            return items


def workloads(c):
    """{name: (desired, scheduled, running)} from a follower's mirror."""
    items = pages(c.running()[-1], "/v1/workloads")
    if items is None:
        return None
    return {w["name"]: (w["status"]["desired"], w["status"]["scheduled"],
                        w["status"]["running"]) for w in items}


def assigned_running(sim, n, timeout):
    """Waits until the simulator holds n replicas (desired run), all reported running."""
    deadline, s = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        s = sim.status()
        if s["assigned"] == n and s["running"] == n:
            return s
        time.sleep(0.05)
    raise AssertionError("timed out after %.0f s waiting for %d replicas running (last: %r)"
                         % (timeout, n, s))


def proc_cpu(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def commit_index(nd):
    return nd.status()["commit_index"]


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100.0 * len(xs)))] if xs else 0


# ---- phases ------------------------------------------------------------------------------

def phase_heartbeats():
    rows = []
    for n in [int(x) for x in ARGS.agents.split(",")]:
        c = new_cluster("fleet-hb-%d" % n, ARGS.heartbeat_ms, 3 * ARGS.heartbeat_ms)
        sim = Sim(c, n)
        try:
            enroll_s = enrolled(sim, n, 60 + n / 50)
            k = 0
            while k * 1000 < n:  # one replica per agent, in workloads of at most 1,000
                create(c, "hb%d" % k, min(1000, n - k * 1000))
                k += 1
            assigned_running(sim, n, 60 + n / 50)
            time.sleep(2 * ARGS.heartbeat_ms / 1000.0)  # every agent past its first report
            ld = c.leader()
            followers = [nd for nd in c.running() if nd is not ld]
            sim.cmd("stats")
            cpu0, idx0, t0 = proc_cpu(ld.proc.pid), commit_index(ld), time.monotonic()
            fcpu0 = sum(proc_cpu(nd.proc.pid) for nd in followers)
            scpu0 = proc_cpu(sim.p.pid)
            time.sleep(ARGS.window)
            st = sim.cmd("stats")
            cpu1, idx1, t1 = proc_cpu(ld.proc.pid), commit_index(ld), time.monotonic()
            fcpu1 = sum(proc_cpu(nd.proc.pid) for nd in followers)
            scpu1 = proc_cpu(sim.p.pid)
            entries = idx1 - idx0
            row = {"agents": n, "interval_ms": ARGS.heartbeat_ms, "enroll_s": enroll_s,
                   "offered_per_s": n * 1000.0 / ARGS.heartbeat_ms, "per_s": st["per_s"],
                   "p50_ms": st["p50_ms"], "p99_ms": st["p99_ms"], "errors": st["errors"],
                   "late_p99_ms": st["late_p99_ms"], "offline": n - ready_count(c),
                   "leader_cpu": (cpu1 - cpu0) / (t1 - t0),
                   "followers_cpu": (fcpu1 - fcpu0) / (t1 - t0),
                   "sim_cpu": (scpu1 - scpu0) / (t1 - t0), "entries": entries,
                   "entries_per_1000": entries * 1000.0 / max(1, st["heartbeats"]),
                   "held_s": ld.metric("cloudless_liveness_held_seconds_total") or 0,
                   "spared": ld.metric("cloudless_liveness_spared_total") or 0}
            log("heartbeats %s" % row)
            rows.append(row)
        finally:
            sim.close()
            c.close()
    print("\n### Heartbeats (interval %d ms, timeout %d ms, %g s window, one replica per agent)\n"
          % (ARGS.heartbeat_ms, 3 * ARGS.heartbeat_ms, ARGS.window))
    print("| agents | offered/s | answered/s | p50 | p99 | errors | agents offline | leader CPU "
          "| followers CPU | simulator CPU | CPU µs / heartbeat (all) "
          "| raft entries / 1,000 heartbeats | simulator lateness p99 | liveness held / spared "
          "| enroll all |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        total = r["leader_cpu"] + r["followers_cpu"] + r["sim_cpu"]
        print("| %d | %.0f | %.0f | %.1f ms | %.1f ms | %d | %d | %.0f%% | %.0f%% | %.0f%% | %.0f "
              "| %.2f (%d in window) | %.1f ms | %.1f s / %d | %.1f s |"
              % (r["agents"], r["offered_per_s"], r["per_s"], r["p50_ms"], r["p99_ms"],
                 r["errors"], r["offline"], 100 * r["leader_cpu"], 100 * r["followers_cpu"],
                 100 * r["sim_cpu"], 1e6 * total / max(1.0, r["per_s"]), r["entries_per_1000"],
                 r["entries"], r["late_p99_ms"], r["held_s"], r["spared"], r["enroll_s"]))
    return rows


def placement_run(total, strategy, per=100, agents=1000):
    c = new_cluster("fleet-place", 1000, 3000)
    sim = Sim(c, agents)
    try:
        enrolled(sim, agents, 120)
        time.sleep(1.5)  # every agent heartbeated once: ready everywhere
        names = ["p%d" % i for i in range(total // per)]
        sel = {"tier": "a"} if strategy == "selector" else None
        strat = "binpack" if strategy == "binpack" else "spread"
        created, scheduled = {}, {}
        q = queue.Queue()
        for nm in names:
            q.put(nm)

        def worker():
            while True:
                try:
                    nm = q.get_nowait()
                except queue.Empty:
                    return
                t = time.monotonic()
                create(c, nm, per, strat, sel)
                created[nm] = t
        t0 = time.monotonic()
        threads = [threading.Thread(target=worker) for _ in range(8)]
        for th in threads:
            th.start()
        deadline = time.monotonic() + 120 + total / 100
        while len(scheduled) < len(names) and time.monotonic() < deadline:
            ws = workloads(c) or {}
            now = time.monotonic()
            for nm, (desired, sch, _) in ws.items():
                if nm not in scheduled and nm in created and sch == desired:
                    scheduled[nm] = now
            time.sleep(0.05)
        for th in threads:
            th.join()
        assert len(scheduled) == len(names), "only %d of %d workloads scheduled" % (
            len(scheduled), len(names))
        t_sched = max(scheduled.values()) - t0
        assigned_running(sim, total, 120 + total / 100)
        t_run = time.monotonic() - t0
        lat = [scheduled[nm] - created[nm] for nm in names]
        row = {"replicas": total, "strategy": strategy, "agents": agents,
               "placements_per_s": total / t_sched, "all_scheduled_s": t_sched,
               "all_running_s": t_run, "running_per_s": total / t_run,
               "p50_create_scheduled_s": pct(lat, 50), "p99_create_scheduled_s": pct(lat, 99)}
        log("placements %s" % row)
        return row
    finally:
        sim.close()
        c.close()


def phase_placements():
    rows = []
    for total in [int(x) for x in ARGS.replicas.split(",")]:
        for strategy in ARGS.strategies.split(","):
            rows.append(placement_run(total, strategy))
    print("\n### Placements (1,000 agents, workloads of 100 replicas created 8 at a time)\n")
    print("| replicas | strategy | placements/s | all scheduled | all reported running "
          "| running/s | workload create -> scheduled p50 / p99 |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print("| %d | %s | %.0f | %.1f s | %.1f s | %.0f | %.2f s / %.2f s |"
              % (r["replicas"], r["strategy"], r["placements_per_s"], r["all_scheduled_s"],
                 r["all_running_s"], r["running_per_s"], r["p50_create_scheduled_s"],
                 r["p99_create_scheduled_s"]))
    return rows


def steady_fleet(name, agents, replicas, extra=()):
    c = new_cluster(name, 1000, 3000)
    sim = Sim(c, agents, extra)
    enrolled(sim, agents, 120)
    k = 0
    while k * 1000 < replicas:
        create(c, "f%d" % k, min(1000, replicas - k * 1000))
        k += 1
    assigned_running(sim, replicas, 120)
    return c, sim


def phase_failure():
    agents, replicas = 1000, 3000
    # with the agent's blocking assignments query (--watch: one long poll per agent, so a
    # connection each, plus room for the heartbeats)
    extra = ["--watch", "30", "--connections", str(agents + 256)] if ARGS.watch else []
    c, sim = steady_fleet("fleet-fail", agents, replicas, extra)
    rows = []
    try:
        for k in (1, agents // 10):
            out = []
            while len(out) < ARGS.trials:
                s = sim.cmd("silence %d" % k)
                ev = sim.event(60)
                if s["replicas"] == 0:  # it held nothing: not a trial
                    sim.cmd("revive")
                    continue
                out.append(ev["seconds"])
                log("silence %d (%d replicas): %.3f s" % (k, s["replicas"], ev["seconds"]))
                sim.cmd("revive")
                # every agent back and ready, every replica running, before the next trial
                wait_for("fleet ready", lambda: ready_count(c) == agents, 60, 0.2)
                assigned_running(sim, replicas, 60)
            rows.append({"silenced": k, "trials": len(out), "p50_s": pct(out, 50),
                         "p99_s": pct(out, 99), "max_s": max(out)})
    finally:
        sim.close()
        c.close()
    print("\n### Failure to replacement (1,000 agents, 1 s heartbeat, 3 s timeout, "
          "3,000 replicas%s)\n" % (", assignments query" if ARGS.watch else ""))
    print("| agents silenced | trials | p50 | p99 | max |")
    print("|---|---|---|---|---|")
    for r in rows:
        print("| %d | %d | %.2f s | %.2f s | %.2f s |" % (r["silenced"], r["trials"], r["p50_s"],
                                                       r["p99_s"], r["max_s"]))
    return rows


def ready_count(c):
    items = pages(c.running()[-1], "/v1/agents?state=ready")
    return -1 if items is None else len(items)


def placement_map(c, nd=None):
    """{replica id: agent} of every replica."""
    items = pages(nd or c.running()[-1], "/v1/replicas")
    return None if items is None else {x["id"]: x.get("agent") for x in items}


def phase_leader():
    agents, replicas = 1000, 3000
    rows = []
    for t in range(max(1, min(ARGS.trials, 3))):
        c, sim = steady_fleet("fleet-leader", agents, replicas)
        try:
            before = placement_map(c)
            ld = c.leader()
            sim.cmd("mark")
            ld.kill(signal.SIGKILL)
            wait_for("every agent answered", lambda: (lambda r: r["answered"] == r["live"])(
                sim.cmd("recovery")), 30, 0.05)
            rec = sim.cmd("recovery")
            new = c.leader()
            time.sleep(4)  # past the 3 s agent timeout, counted from the new leader's start
            after = placement_map(c, new)
            moved = sum(1 for rid, ag in before.items() if after.get(rid) != ag)
            offline = agents - ready_count(c)
            row = {"agents": agents, "offline": offline, "moved": moved,
                   "p50_ms": rec["p50_ms"], "max_ms": rec["max_ms"]}
            log("leader %s" % row)
            rows.append(row)
        finally:
            sim.close()
            c.close()
    print("\n### Leader SIGKILL under 1,000 agents (1 s heartbeat, 3 s timeout, 3,000 "
          "replicas)\n")
    print("| trial | agents offline after (target 0) | replicas moved (target 0) "
          "| every agent answered again: p50 / max |")
    print("|---|---|---|---|")
    for i, r in enumerate(rows):
        print("| %d | %d | %d | %.0f ms / %.0f ms |" % (i + 1, r["offline"], r["moved"],
                                                      r["p50_ms"], r["max_ms"]))
    return rows


def phase_memory():
    c = new_cluster("fleet-mem", 1000, 3000)
    sims = []
    try:
        ld = c.leader()
        time.sleep(1)
        pts_a = [(0, harness.rss_kb(ld.proc.pid))]
        for i in range(2):
            # two simulators: their connections together stay under the per-address limit
            sim = Sim(c, 1000, ["--prefix", "m%d" % i, "--connections", "256"])
            sims.append(sim)
            enrolled(sim, 1000, 120)
            time.sleep(2)
            pts_a.append((1000 * (i + 1), harness.rss_kb(ld.proc.pid)))
        pts_r = [(0, pts_a[-1][1])]
        for i in range(2):
            for k in range(10):
                create(c, "mem%d-%d" % (i, k), 1000)
            wait_for("replicas running", lambda: sum(s.status()["running"] for s in sims) ==
                     10000 * (i + 1), 120, 0.2)
            time.sleep(2)
            pts_r.append((10000 * (i + 1), harness.rss_kb(ld.proc.pid)))
    finally:
        for s in sims:
            s.close()
        c.close()

    def slope(pts):
        return (pts[-1][1] - pts[0][1]) * 1024.0 / (pts[-1][0] - pts[0][0])
    print("\n### Leader memory (VmRSS)\n")
    print("| points | RSS | slope |")
    print("|---|---|---|")
    print("| agents %s | %s KiB | %.0f bytes per agent |" % (
        " / ".join(str(x) for x, _ in pts_a), " / ".join(str(y) for _, y in pts_a), slope(pts_a)))
    print("| replicas at 2,000 agents %s | %s KiB | %.0f bytes per replica |" % (
        " / ".join(str(x) for x, _ in pts_r), " / ".join(str(y) for _, y in pts_r), slope(pts_r)))
    return {"agents": pts_a, "replicas": pts_r}


def phase_real():
    """One real cloudless-agent, a 200-replica workload of real processes: create -> 200
    processes running (alive in /proc), then scale to 0 -> none left."""
    n, reps = 200, max(1, min(ARGS.trials, 3))
    c = new_cluster("fleet-real", 1000, 3000)
    rows = []
    try:
        ag = c.agent("real", zone="z1")
        ag.start()
        wait_for("agent ready", lambda: ready_count(c) == 1, 20)
        for k in range(reps):
            name = "real%d" % k
            t0 = time.monotonic()
            create(c, name, n)
            wait_for("%d processes" % n, lambda: len([1 for rid in ag.running()
                                                      if rid.startswith("default/%s/" % name)])
                     == n, 120, 0.05)
            t_start = time.monotonic() - t0
            pids = [pid for rid, (_, pid) in ag.running().items()
                    if rid.startswith("default/%s/" % name)]
            t1 = time.monotonic()
            r = c.leader().req("POST", "/v1/workloads/default/%s/scale" % name, {"replicas": 0})
            assert r is not None and r.status == 200, r
            wait_for("processes gone", lambda: not any(harness.proc_alive(p) for p in pids),
                     120, 0.05)
            t_stop = time.monotonic() - t1
            rows.append((t_start, t_stop))
            log("real agent: start-all %.2f s, stop-all %.2f s" % (t_start, t_stop))
            c.leader().req("DELETE", "/v1/workloads/default/%s" % name)
    finally:
        c.close()
    print("\n### One real cloudless-agent, 200 processes (`sleep 600`)\n")
    print("| repetition | create -> 200 running | scale to 0 -> every process gone |")
    print("|---|---|---|")
    for i, (a, b) in enumerate(rows):
        print("| %d | %.2f s | %.2f s |" % (i + 1, a, b))
    return rows


def quick():
    c = new_cluster("fleet-quick", 200, 600)
    sim = Sim(c, 30, ["--watch", "5", "--connections", "64"])  # the agent's query too
    try:
        enrolled(sim, 30, 30)
        wait_for("30 agents ready", lambda: ready_count(c) == 30, 20)
        create(c, "q", 12, "spread", {"tier": "a"})
        assigned_running(sim, 12, 30)
        placed = placement_map(c)
        assert len(placed) == 12, placed
        # tier=a is on even-numbered simulated agents (bench/fleet.c)
        assert all(int(ag.rsplit("-", 1)[1]) % 2 == 0 for ag in placed.values()), placed
        wait_for("workload running", lambda: workloads(c)["q"] == (12, 12, 12), 20)
        sim.cmd("stats")
        time.sleep(1)
        st = sim.cmd("stats")
        assert st["heartbeats"] > 0 and st["errors"] == 0, st
        s = sim.cmd("silence 3")
        ev = sim.event(30)
        assert ev["replicas"] == s["replicas"], (s, ev)
        assigned_running(sim, 12, 30)
        sim.cmd("revive")
        wait_for("30 agents ready again", lambda: ready_count(c) == 30, 20)
        status = sim.status()
        assert status["enroll_errors"] == 0, status
        rc = sim.close()
        assert rc == 0, "cloudless-fleet exited %r: %s" % (rc, open(sim.log_path).read()[-3000:])
        print("fleet quick: %d agents enrolled, %d heartbeats, 12 replicas placed on tier=a "
              "and running; 3 silenced agents' %d replicas replaced in %.2f s" % (
                  status["enrolled"], status["heartbeats"], s["replicas"], ev["seconds"]))
    except BaseException:
        c.dump_logs()
        sys.stderr.write(open(sim.log_path).read()[-3000:])
        raise
    finally:
        sim.close()
        c.close()


def main():
    if ARGS.quick:
        quick()
        return
    print("Fleet figures (bench/fleet.py; 2 shared cores: the simulator, three coordinators "
          "and other work share them)")
    phases = {"heartbeats": phase_heartbeats, "placements": phase_placements,
              "failure": phase_failure, "leader": phase_leader, "memory": phase_memory,
              "real": phase_real}
    for ph in ARGS.phases.split(","):
        phases[ph]()
        sys.stdout.flush()


if __name__ == "__main__":
    main()
