#!/usr/bin/env python3
"""Agent figures on loopback: 3 coordinators and 3 cloudless-agents (tests/cluster/harness.py),
the coordinators' default 1 s heartbeat and 3 s agent timeout. Phases:

  placement   POST a 3-replica workload -> 3 processes running (each agent's /status, checked
              alive in /proc); once with the blocking assignments query (the default), once
              with --assignments-wait 0 (heartbeats only), on fresh clusters
  machine     SIGKILL an agent and its replicas -> its replica running on another agent (the
              issue's bound: agent timeout + 2 s = 5 s); the agent is restarted in between
  leader      SIGKILL the leader coordinator -> every agent's heartbeat answered by another
              coordinator (the issue's bound: one heartbeat); the coordinator is restarted

Prints a markdown table of medians and maxima over --reps repetitions. Standard library only:
  CLOUDLESS_BIN=build/cloudless-coordinator python3 bench/agent.py --reps 5
"""
import argparse
import os
import signal
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "cluster"))
import harness  # noqa: E402
from harness import Cluster, proc_alive, wait_for  # noqa: E402

AGENTS = (("a1", "z1"), ("a2", "z2"), ("a3", "z1"))


def cluster(name, agent_args=()):
    c = Cluster(name)
    c.start(3)
    c.leader()
    for agent_id, zone in AGENTS:
        c.agent(agent_id, zone=zone).start(extra=list(agent_args))
    wait_for("agents ready", lambda: ready(c) == 3, 20)
    return c


def ready(c):
    r = c.running()[0].req("GET", "/v1/agents?stale")
    return sum(1 for a in r.json()["items"] if a["state"] == "ready") if r else 0


def running(c, workload):
    """{replica id: (agent, pid)} of the workload's live processes."""
    out = {}
    for a in c.agents.values():
        if not a.alive():
            continue
        for x in (a.status() or {}).get("replicas", []):
            if x["workload"] == "default/" + workload and x["state"] == "running" and \
                    proc_alive(x["pid"]):
                out[x["id"]] = (a.agent_id, x["pid"])
    return out


def placement(reps, agent_args):
    c = cluster("bench-placement", agent_args)
    try:
        out = []
        for k in range(reps):
            time.sleep(0.37)  # spread the creations over the heartbeat's phase
            t0 = time.monotonic()
            r = c.running()[1].req("POST", "/v1/workloads",
                                   {"name": "p%d" % k, "replicas": 3, "command": ["sleep", "600"]})
            assert r is not None and r.status == 201, r
            wait_for("3 processes", lambda: len(running(c, "p%d" % k)) == 3, 10, interval=0.005)
            out.append(time.monotonic() - t0)
        return out
    finally:
        c.close()


def machine(reps):
    c = cluster("bench-machine")
    try:
        r = c.running()[0].req("POST", "/v1/workloads",
                               {"name": "m", "replicas": 3, "command": ["sleep", "600"]})
        assert r.status == 201, r
        out = []
        for k in range(reps):
            procs = wait_for("3 processes", lambda: (lambda p: p if len(p) == 3 else None)(
                running(c, "m")), 20)
            victim_agent = AGENTS[k % 3][0]
            victims = [rid for rid, (a, _) in procs.items() if a == victim_agent]
            c.agents[victim_agent].kill_machine()
            t0 = time.monotonic()

            def moved():
                now = running(c, "m")
                return all(rid in now and now[rid][0] != victim_agent for rid in victims)
            wait_for("replaced", moved, 20, interval=0.01)
            out.append(time.monotonic() - t0)
            c.agents[victim_agent].restart()
            wait_for("agent back", lambda: ready(c) == 3, 20)
        return out
    finally:
        c.close()


def leader(reps):
    c = cluster("bench-leader")
    try:
        out = []
        for _ in range(reps):
            ld = c.leader()
            wait_for("agents at the leader", lambda: all(
                (a.status() or {}).get("coordinator") == ld.http_addr
                for a in c.agents.values()), 10)
            before = {a.agent_id: a.metric("cloudless_agent_coordinator_switches_total")
                      for a in c.agents.values()}
            ld.kill(signal.SIGKILL)
            t0 = time.monotonic()
            done = {}
            while len(done) < 3 and time.monotonic() - t0 < 10:
                for a in c.agents.values():
                    if a.agent_id not in done and \
                            a.metric("cloudless_agent_coordinator_switches_total") > \
                            before[a.agent_id]:
                        done[a.agent_id] = time.monotonic() - t0
                time.sleep(0.005)
            assert len(done) == 3, done
            out.append(max(done.values()))
            ld.restart()
            c.wait_voters(3)
        return out
    finally:
        c.close()


def row(name, samples, bound=None):
    med, mx = statistics.median(samples), max(samples)
    return "| %s | %d | %.0f ms | %.0f ms | %s |" % (name, len(samples), med * 1000, mx * 1000,
                                                   bound or "")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    rows = [
        row("create -> 3 processes running (blocking query)", placement(args.reps * 2, ())),
        row("create -> 3 processes running (heartbeats only)",
            placement(args.reps * 2, ("--assignments-wait", "0"))),
        row("agent + replicas SIGKILL -> replica running elsewhere", machine(args.reps),
            "agent timeout + 2 s = 5000 ms"),
        row("leader SIGKILL -> every agent answered by another coordinator", leader(args.reps),
            "one heartbeat = 1000 ms"),
    ]
    print("| phase | n | median | max | issue 11 bound |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
