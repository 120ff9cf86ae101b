"""Checks a fault-injection history (Python standard library only).

A history is a list of events, one per line in the JSON-lines file jepsen.py writes:

  {"type": "invoke", "process": 3, "f": "write", "key": "k1", "value": "c3-17", "time": ns}
  {"type": "ok",     "process": 3, "f": "write", "key": "k1", "value": "c3-17", "time": ns}

type is invoke, then exactly one of ok (it happened), fail (it certainly did not happen) or
info (unknown: it may or may not have happened, now or at any later time). One process has at
most one operation in flight. Operations on a key:

  read    value: the value read, null when the key was absent (404)
  write   value: the value written (values are unique per history)
  cas     value: [expected, new]; expected is the value the client read before it sent
          ?cas=<that read's modify_index>, or null for ?cas=0 (create only). Because every
          value is written once, "modify_index == I" is the same as "value == the value
          that had index I", so a CAS is a compare-and-set on values.
  delete  value: on ok, true when the key existed (200) and false when it was absent (404)

check_register() decides whether one key's history is linearizable for a register with the
Wing & Gong / Lowe search that Knossos and Porcupine use: walk the time-ordered call/return
entries, try to linearize each pending call against the model, backtrack when a return is
reached for an operation not yet linearized, and memoize (set of linearized ops as a bitmask,
model state) so no configuration is explored twice. Failed operations are dropped, and so are
reads that did not complete (they change nothing). Indeterminate writes, CAS and deletes stay
pending until the end of the history: each may be linearized at any point after its call, or
never. An indeterminate write or CAS whose value nobody ever observed is dropped up front
(it can be placed nowhere or anywhere without changing what anyone saw), which keeps the
search small without weakening it.

The other checks: check_leaders() (at most one leader per term, from status samples and
"Became leader" log lines) and check_digests() (every node has the same state after healing).
"""
import json
import re

INF = float("inf")
NIL = None


class Op:
    __slots__ = ("id", "process", "f", "key", "value", "call", "ret", "status", "node", "line")

    def __init__(self, process, f, key, value, call, node=None, line=None):
        self.id = -1
        self.process = process
        self.f = f
        self.key = key
        self.value = value
        self.call = call
        self.ret = INF
        self.status = "info"
        self.node = node
        self.line = line

    def __repr__(self):
        ret = "inf" if self.ret == INF else "%.3f" % (self.ret / 1e9)
        return "%s %s(%s, %r) p=%s [%.3f, %s]%s" % (
            self.status, self.f, self.key, self.value, self.process, self.call / 1e9, ret,
            " via " + self.node if self.node else "")


def load_history(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def pair_ops(events):
    """Matches invocations with completions. Returns (ops, problems): an invocation without
    completion is indeterminate; a completion without invocation is a harness bug."""
    pending = {}
    ops = []
    problems = []
    for i, e in enumerate(events):
        p = e.get("process")
        if p == "nemesis" or e.get("f") not in ("read", "write", "cas", "delete"):
            continue
        t = e["type"]
        if t == "invoke":
            if p in pending:
                problems.append("process %s invoked twice without completing (line %d)" % (p, i + 1))
            op = Op(p, e["f"], e["key"], e.get("value"), e["time"], e.get("node"), i + 1)
            pending[p] = op
            ops.append(op)
        else:
            op = pending.pop(p, None)
            if op is None:
                problems.append("completion without invocation for process %s (line %d)" % (p, i + 1))
                continue
            if t not in ("ok", "fail", "info"):
                problems.append("unknown event type %r (line %d)" % (t, i + 1))
                continue
            op.status = t
            if t == "ok":
                op.ret = e["time"]
                if op.f in ("read", "delete"):
                    op.value = e.get("value")
            # fail: dropped later; info: return stays at infinity
    return ops, problems


def _step(f, value, status, state):
    """Model of one register: returns the new state, or a sentinel when not allowed."""
    if f == "read":
        return state if state == value else _NO
    if f == "write":
        return value
    if f == "cas":
        return value[1] if state == value[0] else _NO
    if f == "delete":
        if status == "info":
            return NIL
        if value:  # existed
            return NIL if state is not NIL else _NO
        return NIL if state is NIL else _NO
    raise ValueError("unknown op %r" % f)


_NO = object()


def prepare(ops):
    """Drops failed ops, incomplete reads, and indeterminate writes/CAS nobody observed.

    Observing a value: a read returning it or a CAS expecting it. A delete that found the key
    (200) observes "some value", so an indeterminate write or CAS invoked before such a
    delete returned is kept whatever its value: it may be what the delete found."""
    kept = [o for o in ops if o.status != "fail" and not (o.f == "read" and o.status != "ok")]
    observed = set()
    last_found_delete = -INF
    for o in kept:
        if o.f == "read":
            observed.add(("v", o.value))
        elif o.f == "cas":
            observed.add(("v", o.value[0]))
        elif o.f == "delete" and o.status == "ok" and o.value:
            last_found_delete = max(last_found_delete, o.ret)
    out = []
    for o in kept:
        if o.status == "info" and o.f in ("write", "cas"):
            produced = o.value if o.f == "write" else o.value[1]
            if ("v", produced) not in observed and o.call > last_found_delete:
                continue
        out.append(o)
    return out


class Result:
    def __init__(self, ok, key, ops, detail="", linearization=None, stuck=None, explored=0):
        self.ok = ok
        self.key = key
        self.n_ops = len(ops)
        self.detail = detail
        self.linearization = linearization or []
        self.stuck = stuck
        self.explored = explored

    def __repr__(self):
        return "<%s key=%s ops=%d %s>" % ("linearizable" if self.ok else "NOT linearizable",
                                          self.key, self.n_ops, self.detail)


def check_register(ops, key=None, init=NIL, budget=20_000_000):
    """Linearizability of one register's history (ops already prepared). Returns Result;
    ok is True, False, or None when the search exceeded `budget` steps (inconclusive)."""
    ops = sorted(ops, key=lambda o: o.call)
    for i, o in enumerate(ops):
        o.id = i
    n = len(ops)
    if n == 0:
        return Result(True, key, ops)
    # Entries: (time, kind, op index); calls sort before returns at the same instant so
    # operations touching in time count as concurrent (the permissive reading).
    raw = []
    for o in ops:
        raw.append((o.call, 0, o.id))
        raw.append((o.ret, 1, o.id))
    raw.sort(key=lambda x: (x[0], x[1]))
    m = len(raw)
    # Doubly linked list over entries 1..m with sentinel 0.
    nxt = list(range(1, m + 2))
    prv = list(range(-1, m))
    nxt[m] = -1
    kind = [None] * (m + 1)
    opi = [None] * (m + 1)
    match = [None] * (m + 1)
    ret_pos = {}
    for pos, (t, k, i) in enumerate(raw, start=1):
        kind[pos] = k
        opi[pos] = i
        if k == 1:
            ret_pos[i] = pos
    for pos in range(1, m + 1):
        if kind[pos] == 0:
            match[pos] = ret_pos[opi[pos]]

    def lift(pos):
        r = match[pos]
        nxt[prv[pos]] = nxt[pos]
        if nxt[pos] != -1:
            prv[nxt[pos]] = prv[pos]
        nxt[prv[r]] = nxt[r]
        if nxt[r] != -1:
            prv[nxt[r]] = prv[r]

    def unlift(pos):
        r = match[pos]
        if nxt[r] != -1:
            prv[nxt[r]] = r
        nxt[prv[r]] = r
        if nxt[pos] != -1:
            prv[nxt[pos]] = pos
        nxt[prv[pos]] = pos

    cache = set()
    stack = []  # (call pos, state before)
    state = init
    lin = 0
    pos = nxt[0]
    steps = 0
    best_depth = -1
    best_lin = []
    best_stuck = None
    while pos != -1:
        steps += 1
        if steps > budget:
            return Result(None, key, ops, "search budget of %d steps exceeded" % budget,
                          explored=steps)
        o = ops[opi[pos]]
        if kind[pos] == 0:
            new = _step(o.f, o.value, o.status, state)
            if new is not _NO:
                nlin = lin | (1 << o.id)
                ck = (nlin, new)
                if ck not in cache:
                    cache.add(ck)
                    stack.append((pos, state))
                    state = new
                    lin = nlin
                    lift(pos)
                    pos = nxt[0]
                    continue
            pos = nxt[pos]
        else:
            if o.status == "info":
                # Only returns at infinity remain ahead: every completed op is linearized.
                return Result(True, key, ops, explored=steps)
            if len(stack) > best_depth:
                best_depth = len(stack)
                best_lin = [ops[opi[p]] for p, _ in stack]
                best_stuck = (o, state)
            if not stack:
                stuck, st = best_stuck
                detail = "no linearization: %s cannot be linearized (register holds %r there)" % (
                    stuck, st)
                return Result(False, key, ops, detail, best_lin, stuck, steps)
            cpos, state = stack.pop()
            lin &= ~(1 << opi[cpos])
            unlift(cpos)
            pos = nxt[cpos]
    # Every call is followed by its return, so running off the end means the list is empty:
    # everything was linearized.
    return Result(True, key, ops, explored=steps)


def check_history(events, init=NIL, budget=20_000_000):
    """Linearizability of every key. Returns (results, problems)."""
    ops, problems = pair_ops(events)
    keys = sorted({o.key for o in ops})
    results = []
    written = {}
    for o in ops:
        if o.f == "write" and o.status != "fail":
            written[o.value] = o
        elif o.f == "cas" and o.status != "fail":
            written[o.value[1]] = o
    for o in ops:
        # A value no write/CAS ever (possibly) produced is the plainest anomaly; name it.
        if o.f == "read" and o.status == "ok" and o.value is not NIL and o.value not in written:
            problems.append("read of a value nobody wrote (or whose write definitely failed): %r" % o)
    for k in keys:
        kops = prepare([o for o in ops if o.key == k])
        results.append(check_register(kops, k, init, budget))
    return results, problems


def explain(result, context=8):
    """A short human-readable account of a non-linearizable key."""
    lines = [repr(result)]
    if result.stuck is not None:
        lin = result.linearization
        lines.append("  longest linearizable prefix (%d ops), last %d:" % (len(lin), min(context, len(lin))))
        for o in lin[-context:]:
            lines.append("    " + repr(o))
        lines.append("  then stuck at: " + repr(result.stuck))
    return "\n".join(lines)


# ---- leaders and convergence ----

LEADER_LOG = re.compile(r"Became leader node_id=(\S+) term=(\d+)")


def leaders_from_log(text):
    """[(term, node_id)] from a coordinator log."""
    return [(int(m.group(2)), m.group(1)) for m in LEADER_LOG.finditer(text)]


def check_leaders(samples):
    """samples: iterable of (term, node_id) observations of a node being leader. Returns a
    list of anomalies: every term with more than one distinct leader."""
    by_term = {}
    for term, node in samples:
        by_term.setdefault(term, set()).add(node)
    return ["term %d had %d leaders: %s" % (t, len(ns), ", ".join(sorted(ns)))
            for t, ns in sorted(by_term.items()) if len(ns) > 1]


def check_digests(statuses):
    """statuses: {node_id: /raft/status?digest JSON}. Anomalies when the nodes disagree on
    the state digest at equal applied indexes (the caller waits for equal indexes)."""
    if not statuses:
        return ["no node status to compare"]
    out = []
    idx = {n: s.get("applied_index") for n, s in statuses.items()}
    dig = {n: (s.get("state_digest"), s.get("fsm_index")) for n, s in statuses.items()}
    if len(set(idx.values())) > 1:
        out.append("applied_index differs after healing: %s" % idx)
    if len(set(dig.values())) > 1:
        out.append("state digests differ after healing: %s" % dig)
    return out
