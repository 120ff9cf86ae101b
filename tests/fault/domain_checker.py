"""Checks a domain fault-injection history: workloads, agents and the replica processes they
ran (Python standard library only; the KV linearizability checker is checker.py).

A domain history is a list of JSON events sharing one clock (CLOCK_MONOTONIC nanoseconds,
time.monotonic_ns() in every process):

  replica lines, written by the replica processes themselves (replica.py):
    {"ev": "start", "time": t, "replica": "ns/w/0", "workload": "ns/w", "slot": 0,
     "epoch": 3, "agent": "a2", "pid": 4242}
    {"ev": "stop", ... the same fields ..., "signal": 15}
  harness lines:
    {"ev": "killed", "time": t, "pid": 4242}   it SIGKILLed that replica (machine death), so
                                               the copy wrote no stop line
    {"ev": "fault", "kind": k, "agent": "a2" | null, "start": t0, "end": t1}
        a nemesis window. kinds that cut an agent off from every coordinator (so the
        coordinators may replace its replicas while they still run): DISCONNECTS. Others
        (partition-some, leader-kill, coordinators-down, ...) explain nothing about overlap.
    {"ev": "drain", "agent": "a2", "invoke": t0, "complete": t1}
        the client started a drain at t0 and first saw drain_complete at t1
  workload changes, one client process per workload, so a workload's changes are sequential:
    {"type": "invoke"|"ok"|"fail"|"info", "process": p, "f": "create"|"update"|"scale"|
     "delete", "workload": "ns/w", "replicas": N, "marker": "m17", "time": t}
    marker is a value the change writes into the spec (an env variable): it tells the final
    state of an update apart from the one before it. scale carries only replicas.

Workload names are never reused after a delete, so a replica id names one workload's slot.

The checks (each returns a list of anomalies, strings naming times, pids and agents):
  check_duplicates  at most one running copy per replica slot at any instant. Two copies may
                    overlap only when the older one's agent was cut off from every coordinator
                    (a DISCONNECTS window began before the newer copy started) and the old copy
                    stopped within `grace_s` after that window ended ("older" is the lower
                    epoch, whichever copy started first): that is the documented
                    behaviour of a workload without the fence (the stale copy runs until its
                    agent reaches a coordinator again, as in Nomad and Kubernetes). Workloads
                    in `exclusive` may never overlap. A drain moves an ordinary workload's
                    replica at once, so its old copy may also run on until it has stopped
                    (within grace_s of the new copy's start). Both kinds are measured.
  check_changes     every acknowledged change is visible in the final state (no lost scale,
                    no lost update, no resurrected delete); an indeterminate change may or may
                    not have applied.
  check_convergence after healing: exactly `replicas` copies per workload (one per slot, none
                    for deleted workloads or slots past the count), on the agent and epoch the
                    coordinators record, and every coordinator's view equal.
  check_restarts    no copy was stopped while nothing explains it: no change to its workload,
                    no fault window on its agent, no drain of its agent, no harness kill. A
                    leader change, or another agent's fault, is not an explanation; every
                    coordinator down explains only the fence stopping an exclusive workload.
  check_drains      a drain was reported complete only after every copy on that agent that
                    started before completion had exited.
check_domain() runs them all and returns (anomalies, stats)."""
INF = float("inf")
S = 1_000_000_000

# Fault kinds during which an agent reaches no coordinator while its replicas may still run.
DISCONNECTS = ("partition-all", "sigstop", "agent-kill")
# Fault kinds that may legitimately stop the replicas of the agent they name.
AGENT_FAULTS = DISCONNECTS + ("machine-death",)
# ...and, for exclusive workloads, whose agent fences them when it reaches no coordinator:
# also every coordinator down (agent null: every agent).
FENCE_CAUSES = DISCONNECTS + ("coordinators-down",)


class Copy:
    """One replica process: [start, end) on one agent with one epoch."""
    __slots__ = ("pid", "replica", "workload", "slot", "epoch", "agent", "start", "end", "how")

    def __init__(self, e):
        self.pid = e["pid"]
        self.replica = e["replica"]
        self.workload = e["workload"]
        self.slot = e["slot"]
        self.epoch = e["epoch"]
        self.agent = e["agent"]
        self.start = e["time"]
        self.end = INF
        self.how = None  # "stop" | "killed" | None (still running)

    def __repr__(self):
        end = "running" if self.end == INF else "%.3f (%s)" % (self.end / S, self.how)
        return "%s epoch %d on %s pid %d [%.3f, %s]" % (self.replica, self.epoch, self.agent,
                                                       self.pid, self.start / S, end)


def copies(events):
    """The replica processes of a history, by pid. Returns (copies, problems)."""
    out = {}
    problems = []
    for e in events:
        ev = e.get("ev")
        if ev == "start":
            if e["pid"] in out and out[e["pid"]].end == INF:
                problems.append("pid %d started twice without stopping" % e["pid"])
            out[e["pid"]] = Copy(e)
        elif ev in ("stop", "killed"):
            c = out.get(e["pid"])
            if c is None:
                if ev == "stop":
                    problems.append("stop of pid %d that never started" % e["pid"])
                continue
            if c.end == INF:
                c.end = e["time"]
                c.how = ev
    return list(out.values()), problems


def faults(events):
    return [e for e in events if e.get("ev") == "fault"]


def drains(events):
    return [e for e in events if e.get("ev") == "drain"]


def _by_replica(cs):
    by = {}
    for c in cs:
        by.setdefault(c.replica, []).append(c)
    for v in by.values():
        v.sort(key=lambda c: c.start)
    return by


def check_duplicates(events, exclusive=(), grace_s=5.0):
    """Returns (anomalies, overlaps, drain_overlaps): the allowed ones as (replica, seconds,
    old copy, new copy), those of a cut-off agent's stale copy and those of a drain's move."""
    cs, _ = copies(events)
    anomalies = []
    windows = [f for f in faults(events) if f["kind"] in DISCONNECTS]
    grace = grace_s * S
    overlaps = []
    drain_overlaps = []
    for rid, lst in sorted(_by_replica(cs).items()):
        for i, a in enumerate(lst):
            for b in lst[i + 1:]:
                if b.start >= a.end:
                    continue
                # The stale copy is the older placement (lower epoch), whichever started
                # first: an agent resumed after a pause may still start a placement it was
                # given before, until its next answer tells it the slot moved.
                old, new = (a, b) if (a.epoch, a.start) <= (b.epoch, b.start) else (b, a)
                t0, t1 = max(a.start, b.start), min(a.end, b.end)
                why = None
                if old.workload not in exclusive:
                    for w in windows:
                        if w["agent"] == old.agent and w["start"] <= new.start and \
                                old.end <= w["end"] + grace:
                            why = w
                            break
                    for d in drains(events):
                        # A drain moves an ordinary replica at once: the old copy stops
                        # while the new one starts (as a Kubernetes eviction does).
                        if why is None and d["agent"] == old.agent and \
                                d["invoke"] <= new.start and old.end <= new.start + grace:
                            why = d
                if why is not None and why.get("ev") == "drain":
                    drain_overlaps.append((rid, (t1 - t0) / S, old, new))
                    continue
                if why is None:
                    anomalies.append("duplicate replica %s: %r and %r both ran for %.3fs from %.3f%s"
                                     % (rid, old, new, (t1 - t0) / S, t0 / S,
                                        " (exclusive workload)" if old.workload in exclusive
                                        else ""))
                else:
                    overlaps.append((rid, (t1 - t0) / S, old, new))
    return anomalies, overlaps, drain_overlaps


def fence_gaps(events, exclusive):
    """For exclusive workloads: seconds between a copy's end and the start of the next copy
    of its slot on another agent (negative would be an overlap)."""
    cs, _ = copies(events)
    gaps = []
    for rid, lst in sorted(_by_replica(cs).items()):
        for a, b in zip(lst, lst[1:]):
            if a.workload in exclusive and a.agent != b.agent and a.end != INF:
                gaps.append((rid, (b.start - a.end) / S, a, b))
    return gaps


# ---- workload changes ----

def pair_changes(events):
    """[(invoke event, outcome type, completion event or None)] per workload, in invoke
    order, and problems."""
    pending = {}
    out = {}
    problems = []
    for i, e in enumerate(events):
        if e.get("f") not in ("create", "update", "scale", "delete") or "type" not in e:
            continue
        p = e["process"]
        if e["type"] == "invoke":
            if p in pending:
                problems.append("process %s invoked twice without completing (event %d)" % (p, i))
            rec = [e, "info", None]
            pending[p] = rec
            out.setdefault(e["workload"], []).append(rec)
        else:
            rec = pending.pop(p, None)
            if rec is None:
                problems.append("completion without invocation for process %s (event %d)" % (p, i))
                continue
            rec[1] = e["type"]
            rec[2] = e
    return out, problems


ABSENT = (False, 0, None)


def _apply(f, e, state):
    """The state after change e on state (exists, replicas, marker); None when the change
    cannot apply there (it would have been refused)."""
    exists = state[0]
    if f == "create":
        return None if exists else (True, e["replicas"], e.get("marker"))
    if not exists:
        return None
    if f == "update":
        return (True, e["replicas"], e.get("marker"))
    if f == "scale":
        return (True, e["replicas"], state[2])
    if f == "delete":
        return ABSENT
    raise ValueError("unknown change %r" % f)


def expected_states(recs):
    """The final states a workload's change history allows."""
    cands = {ABSENT}
    for inv, status, _done in recs:
        if status == "fail":
            continue
        after = {s for s in (_apply(inv["f"], inv, c) for c in cands) if s is not None}
        if status == "ok":
            if not after:
                return None  # acknowledged but impossible: reported by the caller
            cands = after
        else:  # info: it may have applied, now or later
            cands = cands | after
    return cands


def check_changes(events, final):
    """final: {workload key: {"replicas": N, "marker": m}} as every coordinator reports it
    after healing (a deleted workload is absent)."""
    by_wl, anomalies = pair_changes(events)
    for wl, recs in sorted(by_wl.items()):
        cands = expected_states(recs)
        f = final.get(wl)
        got = ABSENT if f is None else (True, f["replicas"], f.get("marker"))
        if cands is None:
            anomalies.append("workload %s: an acknowledged change could not have applied "
                             "(history: %s)" % (wl, _describe(recs)))
        elif got not in cands:
            anomalies.append("workload %s: final state %s, but the acknowledged changes allow "
                             "only %s (lost change; history: %s)" % (
                                 wl, _state(got), ", ".join(sorted(_state(c) for c in cands)),
                                 _describe(recs)))
    return anomalies


def _state(s):
    return "absent" if not s[0] else "replicas=%d marker=%s" % (s[1], s[2])


def _describe(recs, last=6):
    return "; ".join("%s(%s%s) %s" % (inv["f"], inv.get("replicas", ""),
                                     "," + inv["marker"] if inv.get("marker") else "", st)
                     for inv, st, _ in recs[-last:])


# ---- convergence, restarts, drains ----

def check_convergence(events, final, assigned, views):
    """final as for check_changes; assigned: {replica id: (agent, epoch)} the coordinators
    record as running; views: {coordinator: comparable final view} (all must be equal)."""
    anomalies = []
    cs, _ = copies(events)
    running = {}
    for c in cs:
        if c.end == INF:
            running.setdefault(c.replica, []).append(c)
    for wl, f in sorted(final.items()):
        for s in range(f["replicas"]):
            rid = "%s/%d" % (wl, s)
            got = running.pop(rid, [])
            if len(got) != 1:
                anomalies.append("after healing %s has %d running copies, want 1: %s"
                                 % (rid, len(got), got))
            elif rid in assigned and (got[0].agent, got[0].epoch) != tuple(assigned[rid]):
                anomalies.append("after healing %s runs as %r but the coordinators record "
                                 "agent %s epoch %d" % (rid, got[0], *assigned[rid]))
    for rid, got in sorted(running.items()):
        anomalies.append("after healing %s still runs but is not desired: %s" % (rid, got))
    if len({repr(v) for v in views.values()}) > 1:
        anomalies.append("coordinators disagree after healing: %s" % (
            "; ".join("%s=%r" % kv for kv in sorted(views.items()))))
    return anomalies


def check_restarts(events, grace_s=5.0, lag_s=2.0, exclusive=()):
    """A copy stopped by its agent (a stop line) needs a reason: a change to its workload
    invoked while it ran, a fault window on its agent that began before it stopped (and ended
    no more than grace_s before it started), or a drain of its agent invoked before it
    stopped."""
    cs, _ = copies(events)
    anomalies = []
    by_wl, _ = pair_changes(events)
    fs = [f for f in faults(events) if f["kind"] in AGENT_FAULTS]
    ds = drains(events)
    grace = grace_s * S
    lag = lag_s * S
    for c in sorted(cs, key=lambda c: c.start):
        if c.how != "stop":
            continue  # running, or killed by the harness (machine death)
        # An agent acts on an answer up to a few heartbeats after the change it reflects:
        # a copy started from a placement decided just before a delete may start after the
        # delete was acknowledged, and be stopped within lag_s (see late_starts).
        born_stale = c.end - c.start <= lag
        if any(inv["time"] <= c.end and (done is None or done["time"] >= c.start or
                                         (born_stale and done["time"] + lag >= c.start))
               for inv, st, done in by_wl.get(c.workload, []) if st != "fail"):
            continue
        if any(f["agent"] == c.agent and f["start"] <= c.end and f["end"] + grace >= c.start
               for f in fs):
            continue
        if c.workload in exclusive and any(
                f["kind"] in FENCE_CAUSES and f["agent"] in (None, c.agent) and
                f["start"] <= c.end and f["end"] + grace >= c.start for f in faults(events)):
            continue  # its agent's fence
        if any(d["agent"] == c.agent and d["invoke"] <= c.end for d in ds):
            continue
        anomalies.append("healthy replica restarted: %r was stopped with no change to its "
                         "workload, no fault on %s and no drain" % (c, c.agent))
    return anomalies


def late_starts(events):
    """Copies that started after their workload's delete was acknowledged (an observation:
    the placement was decided before the delete and reached the agent after it; the copy is
    stopped by the next answer and the convergence check sees it gone)."""
    cs, _ = copies(events)
    by_wl, _ = pair_changes(events)
    out = []
    for c in cs:
        for inv, st, done in by_wl.get(c.workload, []):
            if inv["f"] == "delete" and st == "ok" and done["time"] < c.start:
                out.append((c, (c.start - done["time"]) / S))
    return out


def check_drains(events):
    cs, _ = copies(events)
    anomalies = []
    for d in drains(events):
        if d.get("complete") is None:
            continue
        for c in cs:
            if c.agent == d["agent"] and c.start < d["complete"] and c.end > d["complete"]:
                anomalies.append("drain of %s reported complete at %.3f while %r still ran"
                                 % (d["agent"], d["complete"] / S, c))
    return anomalies


def ordered(events):
    """Events in time order (fault and drain lines by their start), as the checks expect."""
    return sorted(events, key=lambda e: e.get("time", e.get("start", e.get("invoke", 0))))


def check_domain(events, final, assigned, views, exclusive=(), grace_s=5.0):
    """Every check; returns (anomalies, stats)."""
    events = ordered(events)
    _, problems = copies(events)
    dup, overlaps, drain_overlaps = check_duplicates(events, exclusive, grace_s)
    anomalies = problems + dup + check_changes(events, final) + \
        check_convergence(events, final, assigned, views) + \
        check_restarts(events, grace_s, exclusive=exclusive) + check_drains(events)
    gaps = fence_gaps(events, exclusive)
    cs, _ = copies(events)
    by_kind = {}
    for f in faults(events):
        by_kind[f["kind"]] = by_kind.get(f["kind"], 0) + 1
    by_wl, _ = pair_changes(events)
    stats = {
        "copies": len(cs),
        "changes": sum(len(v) for v in by_wl.values()),
        "changes_ok": sum(1 for v in by_wl.values() for _, st, _ in v if st == "ok"),
        "faults": by_kind,
        "drains": len(drains(events)),
        "allowed_overlaps": len(overlaps),
        "max_overlap_s": max((o[1] for o in overlaps), default=0.0),
        "drain_overlaps": len(drain_overlaps),
        "max_drain_overlap_s": max((o[1] for o in drain_overlaps), default=0.0),
        "exclusive_min_gap_s": min((g[1] for g in gaps), default=None),
        "late_starts": len(late_starts(events)),
    }
    return anomalies, stats
