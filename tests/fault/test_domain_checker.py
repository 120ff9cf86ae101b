"""Unit tests for the domain history checker (domain_checker.py) on hand-made histories: a
good one passes, and each anomaly the domain fault tests look for (duplicate replica, lost
scale, lost update, restart of a healthy replica, premature drain, no convergence) is caught.
Standard library only; prints `N passed, N failed`."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import domain_checker as dc  # noqa: E402
from test_checker import run_all  # noqa: E402

S = dc.S
WL = "default/w1"
_pid = [1000]


def start(t, slot=0, epoch=1, agent="a1", wl=WL, pid=None):
    if pid is None:
        _pid[0] += 1
        pid = _pid[0]
    return {"ev": "start", "time": int(t * S), "replica": "%s/%d" % (wl, slot), "workload": wl,
            "slot": slot, "epoch": epoch, "agent": agent, "pid": pid}


def stop(e, t):
    return dict(e, ev="stop", time=int(t * S), signal=15)


def killed(e, t):
    return {"ev": "killed", "time": int(t * S), "pid": e["pid"]}


def fault(kind, agent, t0, t1):
    return {"ev": "fault", "kind": kind, "agent": agent, "start": int(t0 * S), "end": int(t1 * S)}


def change(process, f, t0, t1, outcome="ok", replicas=1, marker=None, wl=WL):
    inv = {"type": "invoke", "process": process, "f": f, "workload": wl, "replicas": replicas,
           "marker": marker, "time": int(t0 * S)}
    out = [inv]
    if t1 is not None:
        out.append(dict(inv, type=outcome, time=int(t1 * S)))
    return out


def good_history():
    """Create w1 with 2 replicas, scale to 3, update (new epochs on every slot), a machine
    death of a2 with its copy replaced on a3; a drain of a1 that completes after its copies
    stopped."""
    ev = []
    ev += change(1, "create", 0, 0.1, replicas=2, marker="m1")
    s0 = start(0.5, 0, 1, "a1")
    s1 = start(0.6, 1, 1, "a2")
    ev += [s0, s1]
    ev += change(1, "scale", 1, 1.1, replicas=3)
    s2 = start(1.5, 2, 1, "a3")
    ev += [s2]
    ev += change(1, "update", 2, 2.1, replicas=3, marker="m2")
    # The update restarts every slot with a new epoch, one after the other.
    ev += [stop(s0, 2.3)]
    n0 = start(2.4, 0, 2, "a1")
    ev += [n0, stop(s1, 2.5)]
    n1 = start(2.6, 1, 2, "a2")
    ev += [n1, stop(s2, 2.7)]
    n2 = start(2.8, 2, 2, "a3")
    ev += [n2]
    # a2 dies with its replica; slot 1 moves to a3.
    ev += [killed(n1, 3.0), fault("machine-death", "a2", 3.0, 3.0)]
    m1 = start(4.0, 1, 3, "a3")
    ev += [m1]
    # drain a1: slot 0 moves to a3, and the drain completes after its copy exited.
    ev += [stop(n0, 5.2)]
    d0 = start(5.3, 0, 3, "a3")
    ev += [d0, {"ev": "drain", "agent": "a1", "invoke": int(5 * S), "complete": int(5.5 * S)}]
    final = {WL: {"replicas": 3, "marker": "m2"}}
    assigned = {WL + "/0": ("a3", 3), WL + "/1": ("a3", 3), WL + "/2": ("a3", 2)}
    views = {"n1": final, "n2": final, "n3": final}
    return ev, final, assigned, views


def run(ev, final, assigned, views, **kw):
    return dc.check_domain(ev, final, assigned, views, **kw)


def expect_ok(*args, **kw):
    anomalies, stats = run(*args, **kw)
    assert anomalies == [], anomalies
    return stats


def expect_anomaly(words, *args, **kw):
    anomalies, stats = run(*args, **kw)
    assert anomalies, "expected an anomaly mentioning %r, got none" % words
    assert any(words in a for a in anomalies), anomalies
    return anomalies


# ---- good histories ----

def test_good_history_passes():
    stats = expect_ok(*good_history())
    assert stats["copies"] == 8, stats
    assert stats["changes_ok"] == 3, stats
    assert stats["faults"] == {"machine-death": 1}, stats


def test_partitioned_agent_overlap_is_allowed_and_measured():
    ev, final, assigned, views = good_history()
    # a3 is cut off from every coordinator from 6 s to 9 s; its slot 2 is placed on a1 at 7.5 s
    # and the stale copy stops 0.4 s after the partition heals: a 1.9 s overlap.
    s2 = [e for e in ev if e.get("ev") == "start" and e["replica"] == WL + "/2"][-1]
    ev.append(fault("partition-all", "a3", 6, 9))
    r = start(7.5, 2, 3, "a1")
    ev += [r, stop(s2, 9.4)]
    assigned[WL + "/2"] = ("a1", 3)
    stats = expect_ok(ev, final, assigned, views)
    assert stats["allowed_overlaps"] == 1, stats
    assert abs(stats["max_overlap_s"] - 1.9) < 1e-6, stats


def test_indeterminate_scale_may_or_may_not_apply():
    ev, final, assigned, views = good_history()
    ev += change(1, "scale", 10, None, outcome="info", replicas=5)
    expect_ok(ev, final, assigned, views)


def test_delete_then_absent():
    ev = change(1, "create", 0, 0.1, replicas=1, marker="m1")
    s = start(0.5)
    ev += [s] + change(1, "delete", 1, 1.1) + [stop(s, 1.3)]
    expect_ok(ev, {}, {}, {"n1": {}, "n2": {}})


# ---- bad histories ----

def test_duplicate_replica_detected():
    ev, final, assigned, views = good_history()
    # slot 2 starts on a1 while a3's copy still runs, and a3 was never cut off.
    s2 = [e for e in ev if e.get("ev") == "start" and e["replica"] == WL + "/2"][-1]
    r = start(7.5, 2, 3, "a1")
    ev += [r, stop(s2, 8.0)]
    assigned[WL + "/2"] = ("a1", 3)
    expect_anomaly("duplicate replica " + WL + "/2", ev, final, assigned, views)


def test_stale_placement_started_after_a_pause_is_the_allowed_overlap():
    ev, final, assigned, views = good_history()
    # a3 is paused from 6 s to 9 s, holding an answer that gave it slot 2 with epoch 3; slot 2
    # moves to a2 (epoch 4) meanwhile. Resumed, a3 stops epoch 2 and starts its stale epoch 3
    # for 0.1 s, until its next answer.
    s2 = [e for e in ev if e.get("ev") == "start" and e["replica"] == WL + "/2"][-1]
    ev += [fault("sigstop", "a3", 6, 9), start(7.5, 2, 4, "a2"), stop(s2, 9.0)]
    stale = start(9.05, 2, 3, "a3")
    ev += [stale, stop(stale, 9.15)]
    assigned[WL + "/2"] = ("a2", 4)
    stats = expect_ok(ev, final, assigned, views)
    assert stats["allowed_overlaps"] == 2, stats
    # The same without the pause is a duplicate.
    ev = [e for e in ev if e.get("ev") != "fault" or e["kind"] != "sigstop"]
    expect_anomaly("duplicate replica", ev, final, assigned, views)


def test_overlap_past_the_partition_is_a_duplicate():
    ev, final, assigned, views = good_history()
    s2 = [e for e in ev if e.get("ev") == "start" and e["replica"] == WL + "/2"][-1]
    ev.append(fault("partition-all", "a3", 6, 9))
    # The stale copy keeps running 20 s after its agent could reach a coordinator again.
    ev += [start(7.5, 2, 3, "a1"), stop(s2, 29)]
    assigned[WL + "/2"] = ("a1", 3)
    expect_anomaly("duplicate replica", ev, final, assigned, views, grace_s=5)


def test_exclusive_workload_allows_no_overlap():
    ev, final, assigned, views = good_history()
    s2 = [e for e in ev if e.get("ev") == "start" and e["replica"] == WL + "/2"][-1]
    ev.append(fault("partition-all", "a3", 6, 9))
    ev += [start(7.5, 2, 3, "a1"), stop(s2, 8.0)]
    assigned[WL + "/2"] = ("a1", 3)
    # Allowed without exclusive...
    expect_ok(ev, final, assigned, views)
    # ...an anomaly with it.
    expect_anomaly("exclusive workload", ev, final, assigned, views, exclusive={WL})


def test_exclusive_fence_gap_measured():
    ev, final, assigned, views = good_history()
    s2 = [e for e in ev if e.get("ev") == "start" and e["replica"] == WL + "/2"][-1]
    ev.append(fault("partition-all", "a3", 6, 20))
    ev += [stop(s2, 8.0), start(10.5, 2, 3, "a1")]
    assigned[WL + "/2"] = ("a1", 3)
    stats = expect_ok(ev, final, assigned, views, exclusive={WL})
    gaps = {(rid, round(g, 6)) for rid, g, _, _ in dc.fence_gaps(dc.ordered(ev), {WL})}
    assert (WL + "/2", 2.5) in gaps, gaps
    # The drain's move of slot 0 (a1 -> a3) is the smallest gap of the history.
    assert abs(stats["exclusive_min_gap_s"] - 0.1) < 1e-6, stats


def test_lost_scale_detected():
    ev, final, assigned, views = good_history()
    # An acknowledged scale to 1 that the final state does not show.
    ev += change(1, "scale", 10, 10.1, replicas=1)
    expect_anomaly("lost change", ev, final, assigned, views)


def test_lost_update_detected():
    ev, final, assigned, views = good_history()
    ev += change(1, "update", 10, 10.1, replicas=3, marker="m3")
    expect_anomaly("final state replicas=3 marker=m2", ev, final, assigned, views)


def test_resurrected_delete_detected():
    ev, final, assigned, views = good_history()
    ev += change(1, "delete", 10, 10.1)
    expect_anomaly("lost change", ev, final, assigned, views)


def test_failed_change_must_not_apply():
    ev, final, assigned, views = good_history()
    ev += change(1, "scale", 10, 10.1, outcome="fail", replicas=3)  # same count: fine
    expect_ok(ev, final, assigned, views)
    final2 = {WL: {"replicas": 7, "marker": "m2"}}
    ev += change(1, "scale", 11, 11.1, outcome="fail", replicas=7)
    expect_anomaly("lost change", ev, final2, assigned, {"n1": final2})


def test_restart_of_healthy_replica_detected():
    ev, final, assigned, views = good_history()
    # slot 2's copy on a3 is stopped and started again at 8 s: no change, no fault on a3, no
    # drain (a leader change is no reason).
    s2 = [e for e in ev if e.get("ev") == "start" and e["replica"] == WL + "/2"][-1]
    ev += [fault("leader-kill", None, 7.5, 7.6), stop(s2, 8.0), start(8.2, 2, 2, "a3")]
    expect_anomaly("healthy replica restarted", ev, final, assigned, views)


def test_restart_after_a_fault_on_another_agent_detected():
    ev, final, assigned, views = good_history()
    s2 = [e for e in ev if e.get("ev") == "start" and e["replica"] == WL + "/2"][-1]
    ev += [fault("sigstop", "a1", 7.5, 8.5), stop(s2, 8.0), start(8.2, 2, 2, "a3")]
    expect_anomaly("healthy replica restarted", ev, final, assigned, views)


def test_copy_born_after_its_delete_is_explained_and_counted():
    ev = change(1, "create", 0, 0.1, replicas=1, marker="m1")
    s = start(0.5)
    # The slot moved (a drain of a1) just before the delete; the new agent got the placement
    # after the delete was acknowledged and stopped the copy at once.
    ev += [s, {"ev": "drain", "agent": "a1", "invoke": int(0.9 * S), "complete": int(1.6 * S)}]
    ev += [stop(s, 1.0)] + change(1, "delete", 1.05, 1.1)
    late = start(1.2, 0, 2, "a2")
    ev += [late, stop(late, 1.25)]
    stats = expect_ok(ev, {}, {}, {"n1": {}})
    assert stats["late_starts"] == 1, stats


def test_coordinators_down_explains_only_the_fence():
    ev, final, assigned, views = good_history()
    s2 = [e for e in ev if e.get("ev") == "start" and e["replica"] == WL + "/2"][-1]
    ev += [fault("coordinators-down", None, 7, 13), stop(s2, 11), start(13.5, 2, 2, "a3")]
    # The exclusive workload's agent fenced it: expected.
    expect_ok(ev, final, assigned, views, exclusive={WL})
    # An ordinary workload must keep running through the outage.
    expect_anomaly("healthy replica restarted", ev, final, assigned, views)


def test_drain_move_overlap_allowed_only_for_ordinary_workloads():
    ev, final, assigned, views = good_history()
    # Drain a3 at 9 s: slot 2 starts on a1 at 9.1 s while a3's copy takes 0.2 s to stop.
    s2 = [e for e in ev if e.get("ev") == "start" and e["replica"] == WL + "/2"][-1]
    ev += [{"ev": "drain", "agent": "a3", "invoke": int(9 * S), "complete": None},
           start(9.1, 2, 3, "a1"), stop(s2, 9.3)]
    assigned[WL + "/2"] = ("a1", 3)
    stats = expect_ok(ev, final, assigned, views)
    assert stats["drain_overlaps"] == 1 and abs(stats["max_drain_overlap_s"] - 0.2) < 1e-6, stats
    expect_anomaly("exclusive workload", ev, final, assigned, views, exclusive={WL})


def test_premature_drain_detected():
    ev, final, assigned, views = good_history()
    # a1's copy stops only at 5.2 s, but the drain said complete at 5.1 s.
    ev = [e for e in ev if e.get("ev") != "drain"]
    ev.append({"ev": "drain", "agent": "a1", "invoke": int(5 * S), "complete": int(5.1 * S)})
    expect_anomaly("drain of a1 reported complete", ev, final, assigned, views)


def test_too_few_copies_after_healing_detected():
    ev, final, assigned, views = good_history()
    d0 = [e for e in ev if e.get("ev") == "start" and e["replica"] == WL + "/0"][-1]
    ev += [fault("machine-death", "a3", 9, 9), killed(d0, 9)]
    expect_anomaly("has 0 running copies", ev, final, assigned, views)


def test_stray_copy_after_healing_detected():
    ev, final, assigned, views = good_history()
    ev += [start(9, 5, 1, "a2")]
    expect_anomaly("still runs but is not desired", ev, final, assigned, views)


def test_wrong_epoch_after_healing_detected():
    ev, final, assigned, views = good_history()
    assigned[WL + "/2"] = ("a3", 9)
    expect_anomaly("coordinators record", ev, final, assigned, views)


def test_coordinators_disagree_detected():
    ev, final, assigned, views = good_history()
    views["n3"] = {WL: {"replicas": 2, "marker": "m2"}}
    expect_anomaly("coordinators disagree", ev, final, assigned, views)


def test_stop_without_start_is_a_problem():
    ev, final, assigned, views = good_history()
    ev.append(stop(start(9, 0, 1, "a1", pid=99999), 9.5))
    ev = [e for e in ev if not (e.get("ev") == "start" and e["pid"] == 99999)]
    expect_anomaly("never started", ev, final, assigned, views)


if __name__ == "__main__":
    run_all(globals())
