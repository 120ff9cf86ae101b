"""Fault injection for the domain: workloads, agents and their replica processes under the
faults users of Nomad and Kubernetes suffer, checked by domain_checker.py.

Each round starts 3 coordinators and 3 agents (faultlib: each agent a machine under its own
uid, partitions by iptables inside a private network namespace), an exclusive workload
(placement.exclusive, stop_after_disconnect_s) and two churn clients that create, update
(If-Match), scale (If-Match) and delete workloads of their own on random coordinators,
recording every change as invoke + ok / fail / info. Every replica runs replica.py, which logs
its own start and stop. One nemesis per round:

  partition-all    cut one agent off from every coordinator (both ways) for 7 s
  partition-some   cut one agent off from one or two coordinators (the leader among them
                   half the time) for 5 s
  sigstop          SIGSTOP one agent for 3 s, then SIGCONT
  agent-kill       SIGKILL one agent (its replicas keep running), restart it after 2 s
  machine-death    SIGKILL one agent and every replica process group it ran, restart it
                   (same data dir: the machine rebooted) after 2 s
  leader-kill      SIGKILL the leader while the clients create and scale, restart it 2 s later
  drain-leader     drain one agent and, during the drain, cut the leader off from the other
                   coordinators for 3 s (or SIGKILL it)
  coordinators-down SIGKILL every coordinator for 2 s (> the 1 s agent timeout), restart them

Then every fault is healed, the clients stop, and the round waits until every workload runs
exactly its replica count and every coordinator agrees; the history (replica log + harness
events + changes) goes through domain_checker.check_domain.

  python3 domain_faults.py              short profile: each nemesis once (the default suite)
  python3 domain_faults.py --long       100 rounds cycling the nemeses, seeds printed
  python3 domain_faults.py --rounds N --seed S --only sigstop,agent-kill
Needs root for the namespace; without it the run is skipped (exit 77). Prints
`N passed, N failed`. Histories land in CLOUDLESS_FAULT_OUT (or --out)."""
import argparse
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import domain_checker as dc  # noqa: E402
from faultlib import (SCALE, Agent, Cluster, History, Net, NetNS, SendError, http_call,  # noqa: E402
                      http_or_none, log, now_ns, scaled, wait_for)

HERE = os.path.dirname(os.path.abspath(__file__))
NEMESES = ["partition-all", "partition-some", "sigstop", "agent-kill", "machine-death",
           "leader-kill", "drain-leader", "coordinators-down"]
# Longer than every nemesis window (which scale with CLOUDLESS_TIME_SCALE too): a SIGSTOPped
# agent cannot fence, so a pause past fence + kill timeout + margin would give an exclusive
# workload two copies (docs/architecture.md, "The fence").
FENCE_S = int(scaled(5))
KILL_MS = 1000
COORD_ARGS = ["--agent-heartbeat-ms", "200", "--agent-timeout-ms", "1000"]
EXCLUSIVE = "default/ex"
GRACE_S = 6  # a healed agent reaches a coordinator and stops what is not its own


def classify(resp=None, err=None):
    """ok / fail (certainly not applied) / info (may have applied)."""
    if err is not None:
        return "info" if err.sent else "fail"
    st = resp.status
    if st in (200, 201):
        return "ok"
    if st in (400, 404, 409, 412, 413):
        return "fail"
    if st == 503 and resp.problem_type() in ("no-leader", "not-leader"):
        return "fail"
    return "info"


class Churn(threading.Thread):
    """One client: workloads of its own, one change in flight, names never reused."""

    def __init__(self, rno, idx, cluster, cmd, hist, rng, stop_ev):
        threading.Thread.__init__(self, daemon=True)
        self.rno, self.idx, self.cluster, self.cmd = rno, idx, cluster, cmd
        self.hist, self.rng, self.stop_ev = hist, rng, stop_ev
        self.k = 0
        self.live = []  # names this client believes may exist
        self.n = {"ok": 0, "fail": 0, "info": 0}

    def node(self):
        return self.rng.choice(self.cluster.nodes)

    def change(self, f, name, replicas, marker, method, path, body=None, headers=None):
        wl = "default/" + name
        self.hist.add(type="invoke", process=self.idx, f=f, workload=wl, replicas=replicas,
                      marker=marker)
        nd = self.node()
        try:
            r = http_call(nd.http_addr, method, path, body, headers, timeout=scaled(4))
            typ = classify(resp=r)
        except SendError as e:
            r, typ = None, classify(err=e)
        self.hist.add(type=typ, process=self.idx, f=f, workload=wl, replicas=replicas,
                      marker=marker, node=nd.node_id, status=r.status if r is not None else None)
        self.n[typ] += 1
        return typ

    def step(self):
        if len(self.live) < 2 or self.rng.random() < 0.15:
            self.k += 1
            name = "c%d-%d-%d" % (self.rno, self.idx, self.k)
            n = self.rng.randint(1, 2)
            marker = "%s-m0" % name
            spec = {"namespace": "default", "name": name, "replicas": n, "command": self.cmd,
                    "env": {"MARKER": marker}, "kill_timeout_ms": KILL_MS}
            self.live.append(name)
            self.change("create", name, n, marker, "POST", "/v1/workloads", spec)
            return
        name = self.rng.choice(self.live)
        r = http_or_none(self.node().http_addr, "GET", "/v1/workloads/default/" + name,
                         timeout=scaled(3))
        if r is None or r.status not in (200, 404):
            return
        if r.status == 404:
            self.live.remove(name)  # never created, or deleted by an indeterminate delete
            return
        w = r.json()
        hdr = {"If-Match": '"%d"' % w["version"]}
        path = "/v1/workloads/default/" + name
        x = self.rng.random()
        if x < 0.35:
            n = self.rng.randint(0, 3)
            self.change("scale", name, n, None, "POST", path + "/scale", {"replicas": n}, hdr)
        elif x < 0.75:
            marker = "%s-m%d" % (name, self.rng.randrange(1 << 30))
            spec = {"namespace": "default", "name": name, "replicas": w["replicas"],
                    "command": self.cmd, "env": {"MARKER": marker}, "kill_timeout_ms": KILL_MS}
            self.change("update", name, w["replicas"], marker, "PUT", path, spec, hdr)
        else:
            if self.change("delete", name, 0, None, "DELETE", path, None, hdr) == "ok":
                self.live.remove(name)

    def run(self):
        while not self.stop_ev.is_set():
            try:
                self.step()
            except Exception as e:  # a harness bug must not hide behind a dead thread
                log("churn %d: %s: %s" % (self.idx, type(e).__name__, e))
            self.stop_ev.wait(self.rng.uniform(0.2, 0.6))


def replica_lines(path):
    with open(path) as f:
        return [json.loads(x) for x in f if x.strip()]


def running_copies(path, hist):
    """Copies still running: by their own log, less the ones the harness killed."""
    cs, _ = dc.copies(dc.ordered(replica_lines(path) + list(hist.events)))
    return [c for c in cs if c.end == dc.INF]


def views(cluster):
    """{node: {workload: {replicas, marker, placed}}} from each coordinator's own state."""
    out = {}
    for nd in cluster.nodes:
        r = http_or_none(nd.http_addr, "GET", "/v1/workloads?consistency=stale", timeout=3)
        if r is None or r.status != 200:
            out[nd.node_id] = None
            continue
        view = {}
        for item in r.json()["items"]:
            key = "%s/%s" % (item["namespace"], item["name"])
            w = http_or_none(nd.http_addr, "GET", "/v1/workloads/%s?consistency=stale" % key,
                             timeout=3)
            if w is None or w.status != 200:
                view[key] = None
                continue
            w = w.json()
            view[key] = {"replicas": w["replicas"], "marker": w["env"].get("MARKER"),
                         "running": w["status"]["running"],
                         "placed": sorted((x["id"], x["agent"], x["epoch"])
                                          for x in w["replica_list"] if x["desired"] == "run")}
        out[nd.node_id] = view
    return out


def converged(cluster, rlog, hist):
    vs = views(cluster)
    if any(v is None for v in vs.values()) or len({json.dumps(v, sort_keys=True)
                                                   for v in vs.values()}) != 1:
        return None
    view = next(iter(vs.values()))
    want = {}
    for wl, v in view.items():
        if v is None or v["running"] != v["replicas"] or len(v["placed"]) != v["replicas"]:
            return None
        for rid, agent, epoch in v["placed"]:
            want[rid] = (agent, epoch)
    have = {}
    for c in running_copies(rlog, hist):
        if c.replica in have:
            return None
        have[c.replica] = (c.agent, c.epoch)
    return vs if have == want else None


def nemesis(kind, cluster, agents, net, hist, rng):
    """Runs one fault and heals it; records its window in hist."""
    leader = cluster.leader(timeout=10)
    victim = rng.choice(agents)
    t0 = now_ns()
    if kind == "partition-all":
        net.isolate_agent(victim, cluster.nodes)
        time.sleep(scaled(7))
        net.heal()
        hist.add(ev="fault", kind=kind, agent=victim.agent_id, start=t0, end=now_ns())
    elif kind == "partition-some":
        cut = rng.sample(cluster.nodes, rng.randint(1, 2))
        if rng.random() < 0.5 and leader not in cut:
            cut[0] = leader
        net.isolate_agent(victim, cut)
        time.sleep(scaled(5))
        net.heal()
        hist.add(ev="fault", kind=kind, agent=victim.agent_id, start=t0, end=now_ns(),
                 coordinators=[n.node_id for n in cut])
    elif kind == "sigstop":
        victim.pause()
        time.sleep(scaled(3))
        victim.resume()
        hist.add(ev="fault", kind=kind, agent=victim.agent_id, start=t0, end=now_ns())
    elif kind in ("agent-kill", "machine-death"):
        if kind == "agent-kill":
            victim.kill()
        else:
            victim.kill_machine(hist)
        time.sleep(scaled(2))
        victim.start()
        # It reaches a coordinator within a heartbeat or two of its start.
        hist.add(ev="fault", kind=kind, agent=victim.agent_id, start=t0, end=now_ns() + 10**9)
    elif kind == "leader-kill":
        time.sleep(rng.uniform(0, 1))
        leader.kill()
        time.sleep(scaled(2))
        leader.restart()
        hist.add(ev="fault", kind=kind, agent=None, start=t0, end=now_ns(), node=leader.node_id)
    elif kind == "drain-leader":
        r = http_or_none(leader.http_addr, "POST", "/v1/agents/%s/drain" % victim.agent_id,
                         timeout=5)
        d = {"ev": "drain", "agent": victim.agent_id, "invoke": t0, "complete": None,
             "status": r.status if r is not None else None}
        how = rng.choice(["partition", "kill"])
        if how == "partition":
            net.block([(leader, n) for n in cluster.nodes if n is not leader])
        else:
            leader.kill()
        t1 = now_ns()
        deadline = time.monotonic() + scaled(25)
        healed = False

        def heal():
            if how == "partition":
                net.heal()
            else:
                leader.restart()
            hist.add(ev="fault", kind="leader-" + how, agent=None, start=t1, end=now_ns(),
                     node=leader.node_id)
        while time.monotonic() < deadline:
            if not healed and now_ns() - t1 > scaled(3) * 1e9:
                heal()
                healed = True
            nd = rng.choice([n for n in cluster.nodes if n.alive()])
            a = http_or_none(nd.http_addr, "GET", "/v1/agents/%s" % victim.agent_id, timeout=1)
            if a is not None and a.status == 200 and a.json().get("drain_complete"):
                d["complete"] = now_ns()
                break
            time.sleep(0.03)
        if not healed:
            heal()
        hist.events.append(d)
        uncordon = http_or_none(cluster.leader(timeout=10).http_addr, "POST",
                                "/v1/agents/%s/uncordon" % victim.agent_id, timeout=5)
        return {"drain_complete": d["complete"] is not None,
                "uncordon": uncordon.status if uncordon is not None else None}
    elif kind == "coordinators-down":
        for nd in cluster.nodes:
            nd.kill()
        time.sleep(scaled(2))
        for nd in cluster.nodes:
            nd.restart()
        hist.add(ev="fault", kind=kind, agent=None, start=t0, end=now_ns())
    return {}


def run_round(args, ns, rno, kind, seed, outdir):
    rng = random.Random(seed)
    tmp = tempfile.mkdtemp(prefix="cloudless-domfault-%d-" % rno)
    os.chmod(tmp, 0o755)
    rlog = os.path.join(tmp, "replicas.jsonl")
    os.close(os.open(rlog, os.O_CREAT | os.O_WRONLY, 0o666))
    os.chmod(rlog, 0o666)
    shutil.copy(os.path.join(HERE, "replica.py"), os.path.join(tmp, "replica.py"))
    os.chmod(os.path.join(tmp, "replica.py"), 0o644)
    cmd = ["python3", os.path.join(tmp, "replica.py"), rlog]
    net = Net(ns)
    hist = History()
    cluster = Cluster(ns, os.path.join(tmp, "nodes"), 3, 22000 + (rno % 20) * 300,
                      extra_args=COORD_ARGS)
    agents = []
    churn = []
    stop_ev = threading.Event()
    sm = {"round": rno, "nemesis": kind, "seed": seed, "anomalies": []}
    t_start = time.monotonic()
    try:
        cluster.start()
        agents = [Agent(tmp, i, cluster.nodes, rlog, ns.active) for i in (1, 2, 3)]
        for a in agents:
            net.mark_agent(a)
            a.start()
        wait_for("3 agents ready", lambda: sum(
            x["state"] == "ready" for x in (http_or_none(cluster.leader().http_addr, "GET",
                                                         "/v1/agents").json()["items"])) == 3, 20)
        spec = {"namespace": "default", "name": "ex", "replicas": 2, "command": cmd,
                "env": {"MARKER": "ex-m0"}, "kill_timeout_ms": KILL_MS,
                "placement": {"exclusive": True}, "stop_after_disconnect_s": FENCE_S}
        hist.add(type="invoke", process="ex", f="create", workload=EXCLUSIVE, replicas=2,
                 marker="ex-m0")
        r = http_or_none(cluster.leader().http_addr, "POST", "/v1/workloads", spec, timeout=5)
        hist.add(type=classify(resp=r) if r is not None else "info", process="ex", f="create",
                 workload=EXCLUSIVE, replicas=2, marker="ex-m0")
        churn = [Churn(rno, i, cluster, cmd, hist, random.Random(rng.randrange(1 << 30)), stop_ev)
                 for i in (1, 2)]
        for c in churn:
            c.start()
        time.sleep(scaled(2))
        log("round %d: %s" % (rno, kind))
        sm.update(nemesis(kind, cluster, agents, net, hist, rng))
        time.sleep(scaled(1))
        stop_ev.set()
        for c in churn:
            c.join(timeout=scaled(15))
        # Heal everything (a nemesis heals its own; this is the safety net).
        net.heal()
        for a in agents:
            a.resume()
            if not a.alive():
                a.start()
        for nd in cluster.nodes:
            if not nd.alive():
                nd.restart()
        t_heal = time.monotonic()
        vs = wait_for("every workload at its count, coordinators agreeing",
                      lambda: converged(cluster, rlog, hist), 45, interval=0.3)
        sm["converge_s"] = round(time.monotonic() - t_heal, 2)
        view = next(iter(vs.values()))
        final = {wl: {"replicas": v["replicas"], "marker": v["marker"]} for wl, v in view.items()}
        assigned = {rid: (agent, epoch) for v in view.values() for rid, agent, epoch in v["placed"]}
        cmp_views = {n: {wl: (v["replicas"], v["marker"], v["placed"]) for wl, v in vw.items()}
                     for n, vw in vs.items()}
        events = replica_lines(rlog) + hist.events
        anomalies, stats = dc.check_domain(events, final, assigned, cmp_views,
                                           exclusive={EXCLUSIVE}, grace_s=GRACE_S)
        sm["anomalies"] += anomalies
        sm.update(stats)
        sm["ops"] = {k: sum(c.n[k] for c in churn) for k in ("ok", "fail", "info")}
        for a in agents:
            a.reap()
            text = a.log()
            if "AddressSanitizer" in text or "runtime error:" in text:
                sm["anomalies"].append("sanitizer report in %s's log" % a)
            for rc, expected in a.exits:
                if not expected:
                    sm["anomalies"].append("%s exited by itself with %s" % (a, rc))
        for nd in cluster.nodes:
            nd.reap()
            for rc, expected in nd.exits:
                if not expected:
                    sm["anomalies"].append("%s exited by itself with %s" % (nd, rc))
        with open(os.path.join(outdir, "domain-round-%03d.history.jsonl" % rno), "w") as f:
            for e in dc.ordered(events):
                f.write(json.dumps(e, sort_keys=True) + "\n")
    except Exception as e:
        sm["anomalies"].append("round did not complete: %s: %s" % (type(e).__name__, e))
        try:
            sm["last_views"] = views(cluster)
            sm["running"] = [repr(c) for c in running_copies(rlog, hist)]
        except Exception:
            pass
    finally:
        stop_ev.set()
        for a in agents:
            a.resume()
            a.kill_machine()
        cluster.close()
        net.heal()
        if sm["anomalies"] or args.keep:
            sm["dir"] = tmp
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    sm["seconds"] = round(time.monotonic() - t_start, 1)
    return sm


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--long", action="store_true", help="100 rounds cycling the nemeses")
    ap.add_argument("--rounds", type=int, default=0)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--only", default="")
    ap.add_argument("--out", default="")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    kinds = [k for k in args.only.split(",") if k] or NEMESES
    unknown = set(kinds) - set(NEMESES)
    if unknown:
        print("unknown nemesis: %s (one of %s)" % (", ".join(sorted(unknown)), ", ".join(NEMESES)))
        return 2
    rounds = args.rounds or (100 if args.long else len(kinds))
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    master = random.Random(seed)
    signal.signal(signal.SIGTERM, lambda sig, frame: sys.exit(1))
    ns = NetNS()
    if not ns.enter():
        print("SKIP: the domain faults need a private network namespace (%s)" % ns.reason)
        print("0 passed, 0 failed")
        return 77
    outdir = args.out or os.environ.get("CLOUDLESS_FAULT_OUT") or tempfile.mkdtemp(
        prefix="cloudless-domfault-")
    os.makedirs(outdir, exist_ok=True)
    print("cloudless domain fault injection: seed=%d rounds=%d time-scale=%g out=%s" % (
        seed, rounds, SCALE, outdir), flush=True)
    t0 = time.monotonic()
    summaries = []
    try:
        for rno in range(1, rounds + 1):
            kind = kinds[(rno - 1) % len(kinds)]
            rseed = master.randrange(1 << 31)
            sm = run_round(args, ns, rno, kind, rseed, outdir)
            summaries.append(sm)
            log("%s round %d %s: %s changes (%s), %s copies, %s allowed overlaps (max %.2fs), "
                "converged in %ss, %d anomalies, %.1fs" % (
                    "PASS" if not sm["anomalies"] else "FAIL", rno, kind, sm.get("changes"),
                    json.dumps(sm.get("ops")), sm.get("copies"), sm.get("allowed_overlaps"),
                    sm.get("max_overlap_s") or 0, sm.get("converge_s"), len(sm["anomalies"]),
                    sm["seconds"]))
            for a in sm["anomalies"]:
                print("    anomaly: " + a, flush=True)
            if sm.get("dir"):
                print("    kept: " + sm["dir"], flush=True)
    finally:
        ns.close()
    total = {"seed": seed, "rounds": len(summaries), "seconds": round(time.monotonic() - t0, 1),
             "changes": sum(s.get("changes") or 0 for s in summaries),
             "changes_ok": sum(s.get("changes_ok") or 0 for s in summaries),
             "copies": sum(s.get("copies") or 0 for s in summaries),
             "faults": {}, "anomalies": sum(len(s["anomalies"]) for s in summaries),
             "max_overlap_s": max((s.get("max_overlap_s") or 0 for s in summaries), default=0),
             "exclusive_min_gap_s": min((s["exclusive_min_gap_s"] for s in summaries
                                         if s.get("exclusive_min_gap_s") is not None), default=None),
             "summaries": summaries}
    for s in summaries:
        for k, v in (s.get("faults") or {}).items():
            total["faults"][k] = total["faults"].get(k, 0) + v
    with open(os.path.join(outdir, "domain-summary.json"), "w") as f:
        json.dump(total, f, indent=1, sort_keys=True)
    failed = sum(1 for s in summaries if s["anomalies"])
    print("total: %d rounds, %d changes (%d ok), %d replica copies, faults %s, %d anomalies, "
          "max allowed overlap %.2fs, min exclusive gap %s, %.0fs (seed %d)" % (
              total["rounds"], total["changes"], total["changes_ok"], total["copies"],
              json.dumps(total["faults"], sort_keys=True), total["anomalies"],
              total["max_overlap_s"], total["exclusive_min_gap_s"], total["seconds"], seed),
          flush=True)
    print("%d passed, %d failed" % (len(summaries) - failed, failed), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
