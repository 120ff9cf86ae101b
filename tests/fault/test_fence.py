"""The agent-side fence against a real partition: 3 coordinators and 2 agents (faultlib), one
exclusive workload (placement.exclusive, stop_after_disconnect_s) and one ordinary workload,
both first on agent a1, which is then cut off from every coordinator by iptables (owner match
on a1's uid) while a2 is healthy.

What must happen, read from the replica processes' own start/stop log (replica.py) and checked
by domain_checker.py:
  - the exclusive replica's copy on a1 stops by itself once a1 has heard from no coordinator
    for stop_after_disconnect_s (a1's fence), and its replacement on a2 starts only after that
    stop: the gap between them is measured and must be positive;
  - the ordinary replica is replaced on a2 after the agent timeout while a1's copy keeps
    running (the documented overlap, measured), and a1 stops its stale copy once healed;
  - after healing, exactly one copy per workload, as every coordinator records;
  - a drain of the agent then running the exclusive replica stops it there before its
    replacement starts elsewhere (the gap is measured).
Needs root (a private network namespace); without it, exits 77 (skipped). Prints
`N passed, N failed`."""
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import domain_checker as dc  # noqa: E402
from faultlib import (Agent, Cluster, History, Net, NetNS, http_or_none, log, now_ns,  # noqa: E402
                      scaled, wait_for)

HERE = os.path.dirname(os.path.abspath(__file__))
FENCE_S = 2
KILL_MS = 1000
AGENT_ARGS = ["--agent-heartbeat-ms", "200", "--agent-timeout-ms", "1000"]


def api(cluster, method, path, body=None, ok=(200, 201)):
    """A request to the leader (any node that answers when there is none yet)."""
    for _ in range(50):
        nd = cluster.leader() or cluster.nodes[0]
        r = http_or_none(nd.http_addr, method, path, body, timeout=5)
        if r is not None and r.status in ok:
            return r.json()
        time.sleep(0.1)
    raise AssertionError("%s %s -> %r" % (method, path, r))


def replica_lines(path):
    with open(path) as f:
        return [json.loads(x) for x in f if x.strip()]


def copies_now(path):
    cs, _ = dc.copies(dc.ordered(replica_lines(path)))
    return cs


def running(path, workload):
    return [c for c in copies_now(path) if c.workload == workload and c.end == dc.INF]


def final_state(cluster, names):
    """(final, assigned, views) as domain_checker wants them, from every coordinator's own
    state (?consistency=stale)."""
    views, final, assigned = {}, {}, {}
    for nd in cluster.nodes:
        view = {}
        for name in names:
            r = http_or_none(nd.http_addr, "GET", "/v1/workloads/default/%s?consistency=stale" % name)
            if r is None or r.status != 200:
                continue
            w = r.json()
            view["default/" + name] = {
                "replicas": w["replicas"], "marker": w["env"].get("MARKER"),
                "placed": sorted((x["id"], x["agent"], x["epoch"]) for x in w["replica_list"]
                                 if x["desired"] == "run")}
        views[nd.node_id] = view
    first = views[cluster.nodes[0].node_id]
    for wl, v in first.items():
        final[wl] = {"replicas": v["replicas"], "marker": v["marker"]}
        for rid, agent, epoch in v["placed"]:
            assigned[rid] = (agent, epoch)
    return final, assigned, views


def main():
    ns = NetNS()
    if not ns.enter():
        print("SKIP: the fence test needs a private network namespace (%s)" % ns.reason)
        print("0 passed, 0 failed")
        return 77
    tmp = tempfile.mkdtemp(prefix="cloudless-fence-")
    os.chmod(tmp, 0o755)
    rlog = os.path.join(tmp, "replicas.jsonl")
    fd = os.open(rlog, os.O_CREAT | os.O_WRONLY, 0o666)
    os.close(fd)
    os.chmod(rlog, 0o666)
    shutil.copy(os.path.join(HERE, "replica.py"), os.path.join(tmp, "replica.py"))
    os.chmod(os.path.join(tmp, "replica.py"), 0o644)
    net = Net(ns)
    hist = History()
    cluster = Cluster(ns, os.path.join(tmp, "nodes"), 3, 21000, extra_args=AGENT_ARGS)
    agents = []
    failed = []
    try:
        cluster.start()
        a1 = Agent(tmp, 1, cluster.nodes, rlog, ns.active)
        a2 = Agent(tmp, 2, cluster.nodes, rlog, ns.active)
        agents = [a1, a2]
        for a in agents:
            net.mark_agent(a)
        a1.start()
        wait_for("a1 ready", lambda: any(
            a["id"] == "a1" and a["state"] == "ready"
            for a in api(cluster, "GET", "/v1/agents")["items"]), 15)
        cmd = ["python3", os.path.join(tmp, "replica.py"), rlog]
        for name, extra in (("lock", {"placement": {"exclusive": True},
                                      "stop_after_disconnect_s": FENCE_S}),
                            ("free", {})):
            spec = dict({"namespace": "default", "name": name, "replicas": 1, "command": cmd,
                         "env": {"MARKER": "m1"}, "kill_timeout_ms": KILL_MS}, **extra)
            hist.add(type="invoke", process=name, f="create", workload="default/" + name,
                     replicas=1, marker="m1")
            api(cluster, "POST", "/v1/workloads", spec)
            hist.add(type="ok", process=name, f="create", workload="default/" + name,
                     replicas=1, marker="m1")
        wait_for("both replicas running on a1", lambda: all(
            [c.agent for c in running(rlog, "default/" + n)] == ["a1"] for n in ("lock", "free")), 20)
        a2.start()
        wait_for("a2 ready", lambda: sum(
            a["state"] == "ready" for a in api(cluster, "GET", "/v1/agents")["items"]) == 2, 15)

        log("cutting a1 off from every coordinator")
        t_cut = now_ns()
        net.isolate_agent(a1, cluster.nodes)

        def moved(name):
            return [c for c in running(rlog, "default/" + name) if c.agent == "a2"]
        wait_for("free replaced on a2", lambda: moved("free"), 20)
        wait_for("lock replaced on a2", lambda: moved("lock"), 30)
        # Let the ordinary workload's overlap last a little, then heal.
        time.sleep(scaled(1))
        t_heal = now_ns()
        net.heal()
        hist.add(ev="fault", kind="partition-all", agent="a1", start=t_cut, end=t_heal)
        log("healed")
        wait_for("one copy each", lambda: all(
            len(running(rlog, "default/" + n)) == 1 for n in ("lock", "free")), 20)
        wait_for("coordinators agree", lambda: len({json.dumps(v, sort_keys=True) for v in
                                                    final_state(cluster, ("lock", "free"))[2].values()}) == 1, 20)

        # A drain of the agent that now runs the exclusive replica: stopped there first,
        # started elsewhere only after (no overlap, measured).
        holder = running(rlog, "default/lock")[0].agent
        t_drain = now_ns()
        api(cluster, "POST", "/v1/agents/%s/drain" % holder)
        done = wait_for("drain of %s complete" % holder, lambda: api(
            cluster, "GET", "/v1/agents/%s" % holder).get("drain_complete"), 20)
        hist.events.append({"ev": "drain", "agent": holder, "invoke": t_drain,
                            "complete": now_ns() if done else None})
        wait_for("lock running again", lambda: [c for c in running(rlog, "default/lock")
                                                if c.agent != holder], 20)
        wait_for("coordinators agree", lambda: len({json.dumps(v, sort_keys=True) for v in
                                                    final_state(cluster, ("lock", "free"))[2].values()}) == 1, 20)
        cs = copies_now(rlog)
        drained = [c for c in cs if c.workload == "default/lock" and c.agent == holder][-1]
        moved = [c for c in cs if c.workload == "default/lock" and c.start > drained.start][0]
        drain_gap = (moved.start - drained.end) / 1e9

        events = replica_lines(rlog) + hist.events
        final, assigned, views = final_state(cluster, ("lock", "free"))
        anomalies, stats = dc.check_domain(events, final, assigned, views,
                                           exclusive={"default/lock"}, grace_s=5)
        cs = copies_now(rlog)
        lock_a1 = [c for c in cs if c.workload == "default/lock" and c.agent == "a1"]
        lock_a2 = [c for c in cs if c.workload == "default/lock" and c.agent == "a2"]
        free_a1 = [c for c in cs if c.workload == "default/free" and c.agent == "a1"]
        fenced_after = (lock_a1[0].end - t_cut) / 1e9
        gap = (lock_a2[0].start - lock_a1[0].end) / 1e9
        overlap = stats["max_overlap_s"]
        print("fence: a1's exclusive copy stopped %.2f s after the cut (fence %d s); its "
              "replacement on a2 started %.2f s after that stop; the ordinary workload's two "
              "copies overlapped %.2f s (a1's stopped %.2f s after the heal)" % (
                  fenced_after, FENCE_S, gap, overlap, (free_a1[0].end - t_heal) / 1e9),
              flush=True)
        print("drain: the exclusive copy on %s stopped, and %.3f s later its replacement "
              "started on %s" % (holder, drain_gap, moved.agent), flush=True)
        if drain_gap <= 0:
            failed.append("a drain started the exclusive replacement %.3f s before the old "
                          "copy stopped" % -drain_gap)
        if anomalies:
            failed += ["checker: " + a for a in anomalies]
        if lock_a1[0].how != "stop":
            failed.append("a1's exclusive copy did not stop by itself: %r" % lock_a1[0])
        if not (FENCE_S - 0.5 <= fenced_after <= scaled(FENCE_S + 2)):
            failed.append("the fence fired %.2f s after the cut, want about %d s" % (fenced_after, FENCE_S))
        if gap <= 0:
            failed.append("the exclusive replacement started %.2f s before the fenced copy "
                          "stopped" % -gap)
        if stats["allowed_overlaps"] < 1:
            failed.append("the ordinary workload shows no overlap: was a1 really cut off?")
        if "Replica fenced" not in a1.log():
            failed.append("a1's log lacks the 'Replica fenced' line")
        for a in agents:
            if "AddressSanitizer" in a.log() or "runtime error:" in a.log():
                failed.append("sanitizer report in %s's log" % a)
        if "Replica fenced" in a2.log():
            failed.append("a2 fenced a replica although it was never cut off")
    except Exception as e:  # a failed wait_for: report it with the logs' tails
        failed.append("%s: %s" % (type(e).__name__, e))
        for a in agents:
            print("---- %s log tail ----\n%s" % (a, a.log()[-3000:]))
    finally:
        for a in agents:
            a.kill_machine(hist)
        cluster.close()
        net.heal()
        ns.close()
        if not failed and not os.environ.get("CLOUDLESS_KEEP"):
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print("data kept in %s" % tmp)
    for f in failed:
        print("FAIL " + f)
    print("%d passed, %d failed" % (0 if failed else 1, 1 if failed else 0), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
