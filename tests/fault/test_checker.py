"""Unit tests for the linearizability checker (checker.py) on tiny hand-made histories that
are, and are not, linearizable; plus a simulated register to check it scales and still finds a
single corrupted read. Standard library only; prints `N passed, N failed`."""
import os
import random
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import checker  # noqa: E402

S = 1_000_000_000  # the history's unit is the nanosecond; tests talk in seconds


def H(*ops):
    """Builds events from (process, f, key-less value, start, end, outcome[, result]) tuples.
    outcome is ok / fail / info; info and fail ops ignore `end` (None for an op that never
    completed at all). For read/delete, `result` is the value read / whether it existed."""
    ev = []
    for o in ops:
        p, f, value, start, end, outcome = o[:6]
        result = o[6] if len(o) > 6 else value
        ev.append({"type": "invoke", "process": p, "f": f, "key": "k", "value": value if f not in ("read",) else None,
                   "time": int(start * S)})
        if end is not None:
            done = {"type": outcome, "process": p, "f": f, "key": "k", "time": int(end * S)}
            done["value"] = result if outcome == "ok" else value
            ev.append(done)
    ev.sort(key=lambda e: e["time"])
    return ev


def lin(events):
    results, problems = checker.check_history(events)
    assert all(r.ok is not None for r in results), results
    return all(r.ok for r in results), results, problems


def expect(events, ok):
    got, results, problems = lin(events)
    assert got == ok, "expected %s, got %s: %s %s" % (
        "linearizable" if ok else "not linearizable", got,
        [checker.explain(r) for r in results], problems)
    return results, problems


# ---- linearizable ----

def test_empty():
    expect([], True)


def test_read_initial_nil():
    expect(H((1, "read", None, 0, 1, "ok")), True)


def test_sequential_write_read():
    expect(H((1, "write", "a", 0, 1, "ok"), (2, "read", None, 2, 3, "ok", "a")), True)


def test_read_concurrent_with_write_sees_either():
    for seen in (None, "a"):
        expect(H((1, "write", "a", 0, 10, "ok"), (2, "read", None, 2, 3, "ok", seen)), True)


def test_concurrent_writes_order_chosen_by_reads():
    # w(a) and w(b) overlap; reads see b then a: the order b, a explains both.
    expect(H((1, "write", "a", 0, 10, "ok"), (2, "write", "b", 0, 10, "ok"),
             (3, "read", None, 1, 2, "ok", "b"), (3, "read", None, 3, 4, "ok", "a")), True)


def test_info_write_observed_later():
    # The client never learned the outcome; a later read shows it took effect.
    expect(H((1, "write", "a", 0, 1, "ok"), (2, "write", "b", 2, None, "info"),
             (3, "read", None, 20, 21, "ok", "b")), True)


def test_info_write_never_observed():
    expect(H((1, "write", "a", 0, 1, "ok"), (2, "write", "b", 2, 3, "info"),
             (3, "read", None, 20, 21, "ok", "a")), True)


def test_info_write_takes_effect_long_after():
    # Indeterminate ops stay pending to the end: it may apply after later reads.
    expect(H((1, "write", "a", 0, 1, "ok"), (2, "write", "b", 2, 3, "info"),
             (3, "read", None, 4, 5, "ok", "a"), (3, "read", None, 30, 31, "ok", "b")), True)


def test_failed_write_dropped():
    expect(H((1, "write", "a", 0, 1, "ok"), (2, "write", "b", 2, 3, "fail"),
             (3, "read", None, 4, 5, "ok", "a")), True)


def test_cas_chain():
    expect(H((1, "write", "a", 0, 1, "ok"), (2, "cas", ["a", "b"], 2, 3, "ok"),
             (3, "read", None, 4, 5, "ok", "b"), (1, "cas", ["b", "c"], 6, 7, "ok"),
             (2, "read", None, 8, 9, "ok", "c")), True)


def test_cas_create_only():
    expect(H((1, "cas", [None, "a"], 0, 1, "ok"), (2, "read", None, 2, 3, "ok", "a")), True)


def test_failed_cas_dropped():
    expect(H((1, "write", "a", 0, 1, "ok"), (2, "cas", ["x", "b"], 2, 3, "fail"),
             (3, "read", None, 4, 5, "ok", "a")), True)


def test_info_cas_observed():
    expect(H((1, "write", "a", 0, 1, "ok"), (2, "cas", ["a", "b"], 2, 3, "info"),
             (3, "read", None, 4, 5, "ok", "b")), True)


def test_delete():
    expect(H((1, "write", "a", 0, 1, "ok"), (2, "delete", None, 2, 3, "ok", True),
             (3, "read", None, 4, 5, "ok", None), (1, "delete", None, 6, 7, "ok", False)), True)


def test_info_delete_may_apply():
    expect(H((1, "write", "a", 0, 1, "ok"), (2, "delete", None, 2, 3, "info"),
             (3, "read", None, 4, 5, "ok", "a"), (3, "read", None, 6, 7, "ok", None)), True)


def test_info_write_found_by_delete():
    # Nobody read b, but the delete that found the key can only have found b.
    expect(H((1, "write", "a", 0, 1, "ok"), (1, "delete", None, 2, 3, "ok", True),
             (2, "write", "b", 4, None, "info"), (3, "delete", None, 5, 6, "ok", True),
             (3, "read", None, 7, 8, "ok", None)), True)


def test_delete_found_nothing_to_find():
    # Same, but the indeterminate write was invoked after the delete returned.
    expect(H((1, "write", "a", 0, 1, "ok"), (1, "delete", None, 2, 3, "ok", True),
             (3, "delete", None, 5, 6, "ok", True), (2, "write", "b", 7, None, "info")), False)


def test_incomplete_read_ignored():
    expect(H((1, "write", "a", 0, 1, "ok"), (2, "read", None, 2, None, "info")), True)


# ---- not linearizable ----

def test_stale_read():
    expect(H((1, "write", "a", 0, 1, "ok"), (1, "write", "b", 2, 3, "ok"),
             (2, "read", None, 4, 5, "ok", "a")), False)


def test_read_from_the_future():
    # The read completed before the write was even invoked.
    expect(H((2, "read", None, 0, 1, "ok", "a"), (1, "write", "a", 2, 3, "ok")), False)


def test_read_from_the_future_info():
    expect(H((2, "read", None, 0, 1, "ok", "a"), (1, "write", "a", 2, None, "info")), False)


def test_lost_acknowledged_write():
    # Final read shows the earlier value: the acknowledged write b disappeared.
    expect(H((1, "write", "a", 0, 1, "ok"), (2, "write", "b", 2, 3, "ok"),
             (3, "read", None, 100, 101, "ok", "a")), False)


def test_value_reverts_after_info_write_seen():
    expect(H((1, "write", "a", 0, 1, "ok"), (2, "write", "b", 2, None, "info"),
             (3, "read", None, 4, 5, "ok", "b"), (3, "read", None, 6, 7, "ok", "a")), False)


def test_failed_write_observed():
    results, problems = expect(H((1, "write", "a", 0, 1, "ok"), (2, "write", "b", 2, 3, "fail"),
                                 (3, "read", None, 4, 5, "ok", "b")), False)
    assert any("nobody wrote" in p for p in problems), problems


def test_failed_cas_observed():
    # A CAS reported as a definite failure whose value shows up: the retried-CAS hazard.
    expect(H((1, "write", "a", 0, 1, "ok"), (2, "cas", ["a", "b"], 2, 3, "fail"),
             (3, "read", None, 4, 5, "ok", "b")), False)


def test_cas_on_wrong_value():
    expect(H((1, "write", "a", 0, 1, "ok"), (1, "write", "c", 2, 3, "ok"),
             (2, "cas", ["a", "b"], 4, 5, "ok")), False)


def test_two_cas_from_same_value():
    # Both succeeded from a: only one can have.
    expect(H((1, "write", "a", 0, 1, "ok"), (2, "cas", ["a", "b"], 2, 5, "ok"),
             (3, "cas", ["a", "c"], 2, 5, "ok")), False)


def test_reads_disagree_on_order():
    # Two sequential readers see the concurrent writes in opposite orders.
    expect(H((1, "write", "a", 0, 10, "ok"), (2, "write", "b", 0, 10, "ok"),
             (3, "read", None, 1, 2, "ok", "a"), (3, "read", None, 3, 4, "ok", "b"),
             (4, "read", None, 5, 6, "ok", "a"), (4, "read", None, 11, 12, "ok", "b"),
             (5, "read", None, 13, 14, "ok", "a")), False)


def test_delete_existed_but_absent():
    expect(H((1, "delete", None, 0, 1, "ok", True)), False)


def test_read_after_delete():
    expect(H((1, "write", "a", 0, 1, "ok"), (2, "delete", None, 2, 3, "ok", True),
             (3, "read", None, 4, 5, "ok", "a")), False)


def test_explain_names_the_stuck_op():
    ev = H((1, "write", "a", 0, 1, "ok"), (1, "write", "b", 2, 3, "ok"),
           (2, "read", None, 4, 5, "ok", "a"))
    _, results, _ = lin(ev)
    text = checker.explain(results[0])
    assert "stuck at" in text and "read" in text, text


# ---- pairing, leaders, digests ----

def test_pairing_unfinished_is_info():
    ev = [{"type": "invoke", "process": 1, "f": "write", "key": "k", "value": "a", "time": 1}]
    ops, problems = checker.pair_ops(ev)
    assert ops[0].status == "info" and ops[0].ret == checker.INF and not problems


def test_pairing_double_invoke_reported():
    ev = [{"type": "invoke", "process": 1, "f": "write", "key": "k", "value": "a", "time": 1},
          {"type": "invoke", "process": 1, "f": "write", "key": "k", "value": "b", "time": 2}]
    _, problems = checker.pair_ops(ev)
    assert problems


def test_leaders_one_per_term():
    assert checker.check_leaders([(3, "n1"), (3, "n1"), (4, "n2")]) == []
    bad = checker.check_leaders([(3, "n1"), (3, "n2"), (4, "n2")])
    assert len(bad) == 1 and "term 3" in bad[0], bad


def test_leaders_from_log():
    log = ("2024-01-01T00:00:00.000Z info Became leader node_id=coordinator-2 term=7\n"
           "2024-01-01T00:00:01.000Z info Lost leadership node_id=coordinator-2 term=8\n")
    assert checker.leaders_from_log(log) == [(7, "coordinator-2")]


def test_digests():
    same = {"a": {"applied_index": 5, "state_digest": "x", "fsm_index": 5},
            "b": {"applied_index": 5, "state_digest": "x", "fsm_index": 5}}
    assert checker.check_digests(same) == []
    diff = dict(same, b={"applied_index": 5, "state_digest": "y", "fsm_index": 5})
    assert checker.check_digests(diff)


# ---- scale ----

def simulate(n_ops, n_procs, seed, info_rate=0.05):
    """A history of a real atomic register under concurrency: each op takes effect at a
    random instant inside its [call, return] window."""
    rng = random.Random(seed)
    t = [0.0] * n_procs
    effects = []  # (effect time, proc, f, value, start, end, outcome)
    for i in range(n_ops):
        p = rng.randrange(n_procs)
        start = t[p] + rng.random()
        end = start + rng.random() * 3
        eff = start + rng.random() * (end - start)
        t[p] = end
        r = rng.random()
        f = "read" if r < 0.4 else "write" if r < 0.8 else "cas"
        outcome = "info" if f != "read" and rng.random() < info_rate else "ok"
        effects.append([eff, p, f, "v%d" % i, start, end, outcome])
    effects.sort()
    state = None
    ops = []
    for eff, p, f, v, start, end, outcome in effects:
        if f == "read":
            ops.append((p, "read", None, start, end, "ok", state))
        elif f == "write":
            if outcome == "info" and rng.random() < 0.5:
                ops.append((p, "write", v, start, None, "info"))  # never happened
                continue
            state = v
            ops.append((p, "write", v, start, end if outcome == "ok" else None, outcome))
        else:
            # The CAS expects the current value (as if the client had just read it).
            if outcome == "info" and rng.random() < 0.5:
                ops.append((p, "cas", [state, v + "x"], start, None, "info"))
                continue
            ops.append((p, "cas", [state, v], start, end if outcome == "ok" else None, outcome))
            state = v
    return ops


def test_simulated_register_is_linearizable_and_fast():
    for seed in range(3):
        ops = simulate(1500, 8, seed)
        t0 = time.monotonic()
        ok, results, problems = lin(H(*ops))
        took = time.monotonic() - t0
        assert ok, [checker.explain(r) for r in results]
        assert took < 20, "checker took %.1fs" % took


def test_simulated_register_with_one_stale_read_is_caught():
    ops = simulate(800, 6, 42, info_rate=0.0)
    # Make one late read return a value from long before.
    reads = [i for i, o in enumerate(ops) if o[1] == "read" and o[6] is not None]
    i = reads[int(len(reads) * 0.8)]
    writes = [o for o in ops if o[1] == "write" and o[5] == "ok" and o[4] < ops[i][3] - 30]
    assert writes
    p, f, v, start, end, outcome, _ = ops[i]
    ops[i] = (p, f, v, start, end, outcome, writes[0][2])
    expect(H(*ops), False)


def run_all(namespace):
    """Runs every test_* function of a module's namespace; prints PASS/FAIL lines and
    `N passed, N failed`, and exits 1 when any failed (the fault suite's test runner)."""
    tests = [(n, f) for n, f in sorted(namespace.items()) if n.startswith("test_") and callable(f)]
    passed = failed = 0
    for name, fn in tests:
        try:
            fn()
            passed += 1
            print("PASS %s" % name)
        except Exception:
            failed += 1
            print("FAIL %s" % name)
            traceback.print_exc()
    print("%d passed, %d failed" % (passed, failed), flush=True)
    sys.exit(1 if failed else 0)


def main():
    run_all(globals())


if __name__ == "__main__":
    main()
