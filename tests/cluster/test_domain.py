"""Workloads and agents in the coordinator (issue 10), with agents simulated by HTTP clients:
enrollment, spread placement seen the same from every coordinator, liveness without a raft
entry per heartbeat, replacement of a silent agent's replica with a new epoch, the returning
agent told to stop its stale copy, scaling, drain and uncordon, If-Match, blocking queries,
a blocking answer that holds all of the entry that woke it, a leader killed while agents
heartbeat (nothing offline, nothing moved), a leader paused for
longer than the agent timeout (nothing offline but the agent that really went silent), and a
table of bad specs that change nothing."""
import json
import re
import signal
import threading
import time

from harness import run, scaled, wait_for

PROBLEM = "application/problem+json"
AGENT_TIMEOUT_MS = 1500
HEARTBEAT_MS = 200
EXTRA = ["--agent-timeout-ms", str(AGENT_TIMEOUT_MS), "--agent-heartbeat-ms", str(HEARTBEAT_MS)]


class SimAgent:
    """An agent as cloudless-agent behaves towards the API: it heartbeats every interval to
    one coordinator (moving to the next on errors), runs what it is assigned (reports it
    running with its epoch one beat later) and stops anything no longer listed."""

    def __init__(self, nodes, agent_id, zone, cpu=4000, mem=8 << 30, labels=None):
        self.nodes = list(nodes)
        self.id = agent_id
        self.zone = zone
        self.cpu, self.mem = cpu, mem
        self.labels = labels or {}
        self.running = {}   # replica id -> epoch (what it runs)
        self.stopped = []   # (replica id, epoch) it was told to stop
        self.answers = 0
        self.errors = 0
        self.paused = threading.Event()
        self._stop = threading.Event()
        self._thread = None
        self._i = 0
        self.lock = threading.Lock()

    def enroll(self):
        body = {"id": self.id, "zone": self.zone, "labels": self.labels,
                "capacity": {"cpu_millicores": self.cpu, "memory_bytes": self.mem}}
        for _ in range(len(self.nodes) * 20):
            r = self.nodes[self._i % len(self.nodes)].req("POST", "/v1/agents", body, timeout=5)
            if r is not None and r.status in (200, 201):
                return r
            self._i += 1
            time.sleep(0.05)
        raise AssertionError("could not enroll %s: %r" % (self.id, r))

    def beat(self):
        with self.lock:
            reports = [{"id": rid, "epoch": ep, "state": "running", "exit_code": None,
                        "restarts": 0} for rid, ep in sorted(self.running.items())]
        node = self.nodes[self._i % len(self.nodes)]
        r = node.req("POST", "/v1/agents/%s/heartbeat" % self.id, {"replicas": reports},
                     timeout=AGENT_TIMEOUT_MS / 3000.0 + 0.5)
        if r is None or r.status != 200:
            self.errors += 1
            self._i += 1
            if r is not None and r.status == 404:
                self.enroll()
            return None
        ans = r.json()
        self.answers += 1
        assigned = {a["id"]: a["epoch"] for a in ans["assignments"] if a["desired"] == "run"}
        with self.lock:
            for rid, ep in list(self.running.items()):
                if assigned.get(rid) != ep:
                    self.stopped.append((rid, ep))
                    del self.running[rid]
            for rid, ep in assigned.items():
                self.running[rid] = ep
        return ans

    def start(self):
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def _loop(self):
        while not self._stop.is_set():
            if not self.paused.is_set():
                try:
                    self.beat()
                except Exception:
                    self.errors += 1
            self._stop.wait(HEARTBEAT_MS / 1000.0)

    def close(self):
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)

    def runs(self):
        with self.lock:
            return dict(self.running)


def put_ok(node, key, value):
    r = node.put(key, value)
    return r if r is not None and r.status == 200 else None


def workload(node, key, query="?consistency=stale"):
    r = node.req("GET", "/v1/workloads/%s%s" % (key, query), timeout=5)
    return r.json() if r is not None and r.status == 200 else None


def placements(node, key):
    w = workload(node, key)
    if w is None:
        return None
    return {x["id"]: (x["agent"], x["epoch"]) for x in w["replica_list"] if x["desired"] == "run"}


def metric_sum(node, name):
    total = 0.0
    for line in node.metrics().splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def entries(node):
    return metric_sum(node, "cloudless_raft_entries_total")


def cluster_with_agents(make, zones=("a", "b", "a")):
    c = make(extra_args=EXTRA).start(3)
    nodes = list(c.running())
    agents = [SimAgent(nodes[i:] + nodes[:i], "agent-%d" % (i + 1), "zone-" + z)
              for i, z in enumerate(zones)]
    for a in agents:
        a.enroll()
    for a in agents:
        a.start()
    return c, nodes, agents


def spec(name, replicas=3, **kw):
    s = {"namespace": "default", "name": name, "command": ["sleep", "1000"], "replicas": replicas,
         "resources": {"cpu_millicores": 100, "memory_bytes": 1 << 20}}
    s.update(kw)
    return s


def running_count(node, key):
    w = workload(node, key)
    return w["status"]["running"] if w else None


def test_spread_and_same_view_everywhere(make):
    c, nodes, agents = cluster_with_agents(make)
    try:
        r = nodes[1].req("POST", "/v1/workloads", spec("web"))
        assert r is not None and r.status == 201, r
        assert r.header("ETag") == '"%d"' % r.json()["version"], r.headers
        wait_for("3 running", lambda: running_count(nodes[0], "default/web") == 3)
        p = placements(nodes[0], "default/web")
        assert sorted(a for a, _ in p.values()) == ["agent-1", "agent-2", "agent-3"], p
        for a in agents:
            env_ok = all(rid.startswith("default/web/") for rid in a.runs())
            assert len(a.runs()) == 1 and env_ok, (a.id, a.runs())
        # Every coordinator answers the same workload and replicas (linearizable reads).
        views = []
        for n in nodes:
            w = workload(n, "default/web", "")
            views.append((w["version"], sorted((x["id"], x["agent"], x["epoch"]) for x in w["replica_list"])))
        assert all(v == views[0] for v in views), views
        # /v1/replicas by agent and by workload.
        r = nodes[2].req("GET", "/v1/replicas?agent=agent-2")
        assert r.status == 200 and len(r.json()["items"]) == 1, r
        r = nodes[2].req("GET", "/v1/replicas?workload=default/web")
        assert r.status == 200 and len(r.json()["items"]) == 3, r
        # Listing, by namespace and label selector, with pages.
        for i in range(3):
            r = nodes[0].req("PUT", "/v1/workloads/default/job-%d" % i,
                             spec("job-%d" % i, replicas=0, labels={"tier": "batch"}))
            assert r is not None and r.status == 201, r
        r = nodes[0].req("GET", "/v1/workloads?selector=tier%3Dbatch&limit=2")
        page = r.json()
        assert [w["name"] for w in page["items"]] == ["job-0", "job-1"] and page["continue"], page
        r = nodes[1].req("GET", "/v1/workloads?selector=tier%3Dbatch&limit=2&continue=" + page["continue"])
        assert [w["name"] for w in r.json()["items"]] == ["job-2"] and r.json()["continue"] is None, r
        # A token from another listing is refused.
        r = nodes[1].req("GET", "/v1/workloads?namespace=other&continue=" + page["continue"])
        assert r.status == 400, r
    finally:
        for a in agents:
            a.close()


def test_zero_entries_per_steady_heartbeat(make):
    c, nodes, agents = cluster_with_agents(make)
    try:
        nodes[0].req("POST", "/v1/workloads", spec("web"))
        wait_for("3 running", lambda: running_count(nodes[0], "default/web") == 3)
        ld = c.leader()
        wait_for("quiet", lambda: (lambda e: time.sleep(0.5) or entries(ld) == e)(entries(ld)))
        before_entries = entries(ld)
        before_beats = metric_sum(ld, "cloudless_agent_heartbeats_total")
        time.sleep(scaled(2.0))  # steady state: beats go on (the thing measured)
        beats = metric_sum(ld, "cloudless_agent_heartbeats_total") - before_beats
        assert beats >= 15, beats
        assert entries(ld) == before_entries, (entries(ld), before_entries)
    finally:
        for a in agents:
            a.close()


def test_silent_agent_replaced_and_told_to_stop(make):
    c, nodes, agents = cluster_with_agents(make)
    try:
        nodes[0].req("POST", "/v1/workloads", spec("web"))
        wait_for("3 running", lambda: running_count(nodes[0], "default/web") == 3)
        victim = agents[1]
        (old_id, old_epoch), = victim.runs().items()
        victim.paused.set()
        t0 = time.monotonic()

        def offline():
            r = nodes[0].req("GET", "/v1/agents/%s?consistency=stale" % victim.id)
            return r is not None and r.json()["state"] == "offline"
        wait_for("victim offline", offline, timeout=AGENT_TIMEOUT_MS / 1000.0 + 1)
        assert time.monotonic() - t0 <= scaled(AGENT_TIMEOUT_MS / 1000.0 + 1)

        def moved():
            p = placements(nodes[0], "default/web")
            a, ep = p.get(old_id, (None, None))
            return a not in (None, victim.id) and ep > old_epoch and (a, ep)
        agent, epoch = wait_for("replica placed elsewhere with a new epoch", moved)
        wait_for("3 running again", lambda: running_count(nodes[0], "default/web") == 3)
        # It comes back: its first answer no longer lists the stale copy.
        victim.paused.clear()
        ans = victim.beat()
        assert all(a["id"] != old_id or a["epoch"] != old_epoch for a in ans["assignments"]), ans
        assert (old_id, old_epoch) in victim.stopped, victim.stopped
        wait_for("victim ready", lambda: not offline())
        # Never two running copies counted for one slot.
        w = workload(nodes[0], "default/web")
        assert w["status"]["running"] <= 3, w
    finally:
        for a in agents:
            a.close()


def test_scale_drain_uncordon_if_match(make):
    c, nodes, agents = cluster_with_agents(make)
    try:
        r = nodes[0].req("POST", "/v1/workloads", spec("web", replicas=2))
        version = r.json()["version"]
        wait_for("2 running", lambda: running_count(nodes[0], "default/web") == 2)
        # If-Match with a stale version: 412 and nothing changes.
        r = nodes[1].req("PUT", "/v1/workloads/default/web", spec("web", replicas=9),
                         {"If-Match": '"%d"' % (version + 1000)})
        assert r is not None and r.status == 412, r
        assert r.json()["current_version"] == version, r.json()
        assert workload(nodes[0], "default/web")["replicas"] == 2
        # POST of an existing one: 409.
        r = nodes[2].req("POST", "/v1/workloads", spec("web"))
        assert r is not None and r.status == 409, r
        # Scale up and down.
        r = nodes[1].req("POST", "/v1/workloads/default/web/scale", {"replicas": 5})
        assert r is not None and r.status == 200 and r.json()["replicas"] == 5, r
        wait_for("5 running", lambda: running_count(nodes[0], "default/web") == 5)
        r = nodes[2].req("POST", "/v1/workloads/default/web/scale", {"replicas": 1})
        assert r.status == 200, r
        wait_for("1 running, the others stopped",
                 lambda: running_count(nodes[0], "default/web") == 1 and
                 sum(len(a.runs()) for a in agents) == 1)
        wait_for("stop records gone",
                 lambda: len(workload(nodes[0], "default/web")["replica_list"]) == 1)
        # Drain the agent that runs it: it moves, and the drain completes only afterwards.
        nodes[0].req("POST", "/v1/workloads/default/web/scale", {"replicas": 3})
        wait_for("3 running", lambda: running_count(nodes[0], "default/web") == 3)
        target = agents[0]
        r = nodes[1].req("POST", "/v1/agents/%s/drain" % target.id)
        assert r.status == 200 and r.json()["draining"] and not r.json()["drain_complete"], r
        wait_for("drained agent runs nothing", lambda: target.runs() == {})
        wait_for("drain complete", lambda: nodes[0].req(
            "GET", "/v1/agents/%s" % target.id).json()["drain_complete"])
        wait_for("3 running elsewhere", lambda: running_count(nodes[0], "default/web") == 3)
        assert all(a != target.id for a, _ in placements(nodes[0], "default/web").values())
        # Cordon keeps what runs; uncordon lets it take work again.
        r = nodes[2].req("POST", "/v1/agents/%s/uncordon" % target.id)
        assert r.status == 200 and r.json()["schedulable"], r
        nodes[0].req("POST", "/v1/workloads/default/web/scale", {"replicas": 6})
        wait_for("the uncordoned agent takes work", lambda: len(target.runs()) > 0)
        wait_for("6 running", lambda: running_count(nodes[0], "default/web") == 6 and
                 sum(len(a.runs()) for a in agents) == 6)
        other = agents[1]
        before = dict(other.runs())
        r = nodes[0].req("POST", "/v1/agents/%s/cordon" % other.id)
        assert r.status == 200 and r.json()["cordoned"] and not r.json()["schedulable"], r
        nodes[0].req("POST", "/v1/workloads/default/web/scale", {"replicas": 8})
        wait_for("8 running", lambda: running_count(nodes[0], "default/web") == 8)
        assert other.runs() == before, (other.runs(), before)
        # Delete: everything stops, the record goes.
        r = nodes[1].req("DELETE", "/v1/workloads/default/web")
        assert r.status == 200 and r.json()["deleted"] is True, r
        wait_for("nothing runs", lambda: sum(len(a.runs()) for a in agents) == 0)
        r = nodes[0].req("GET", "/v1/workloads/default/web")
        assert r.status == 404, r
    finally:
        for a in agents:
            a.close()


def test_blocking_query(make):
    c, nodes, agents = cluster_with_agents(make)
    try:
        r = nodes[0].req("PUT", "/v1/workloads/default/web", spec("web", replicas=1))
        wait_for("running", lambda: running_count(nodes[0], "default/web") == 1)
        idx = int(nodes[0].req("GET", "/v1/workloads/default/web").header("X-Cloudless-Index"))
        result = {}

        def block(node):
            t0 = time.monotonic()
            r = node.req("GET", "/v1/workloads/default/web?index=%d&wait=10s" % idx, timeout=20)
            result[node.node_id] = (r, time.monotonic())
            result[node.node_id + "-t0"] = t0
        threads = [threading.Thread(target=block, args=(n,)) for n in nodes]
        for t in threads:
            t.start()
        time.sleep(scaled(1.0))
        assert not result, "a blocking query returned before anything changed: %r" % result
        t_change = time.monotonic()
        r = nodes[1].req("POST", "/v1/workloads/default/web/scale", {"replicas": 2})
        assert r.status == 200, r
        t_applied = time.monotonic()
        for t in threads:
            t.join(timeout=15)
        for n in nodes:
            r, t_done = result[n.node_id]
            assert r is not None and r.status == 200, r
            assert r.json()["replicas"] == 2, r.json()
            assert int(r.header("X-Cloudless-Index")) > idx, r.headers
            assert t_done - t_applied < scaled(0.1) + 0.05, (n, t_done - t_applied)
            assert t_done >= t_change
        # wait runs out: the unchanged result, with its index.
        idx2 = int(nodes[0].req("GET", "/v1/agents/agent-1/assignments").header("X-Cloudless-Index"))
        t0 = time.monotonic()
        r = nodes[2].req("GET", "/v1/workloads/default/nope?index=999999&wait=300ms&consistency=stale")
        assert r.status == 404 and time.monotonic() - t0 >= 0.25, r
        r = nodes[2].req("GET", "/v1/agents/agent-1/assignments?index=%d&wait=300ms" % (idx2 + 10 ** 9))
        assert r.status == 200 and time.monotonic() - t0 >= 0.5, r
    finally:
        for a in agents:
            a.close()


def test_blocking_answer_holds_its_whole_entry(make):
    """One heartbeat reporting two replicas running is one replica.report entry that changes
    the workload twice. The blocking query it wakes answers with both changes: its answer
    carries the entry's index, so a client that got only the first and asked past that index
    would not see the second until something else changed (a `workload watch` stuck short of
    3/3 running)."""
    c = make(extra_args=EXTRA).start(3)
    nodes = list(c.running())
    ld = c.leader()
    f = [n for n in nodes if n is not ld][0]
    a = SimAgent(nodes, "agent-1", "zone-a")
    a.enroll()

    def heartbeat(reports):
        r = ld.req("POST", "/v1/agents/agent-1/heartbeat", {"replicas": reports}, timeout=5)
        assert r is not None and r.status == 200, r
        return [x for x in r.json()["assignments"] if x["desired"] == "run"]

    def waiting():
        return (ld.metric("cloudless_blocking_queries_waiting") or 0) >= 1

    r = ld.req("PUT", "/v1/workloads/default/pair", spec("pair", replicas=2))
    assert r is not None and r.status == 201, r
    assigned = wait_for("both replicas assigned", lambda: len(heartbeat([])) == 2 and heartbeat([]))
    r = ld.req("GET", "/v1/workloads/default/pair")
    assert r.status == 200 and r.json()["status"]["running"] == 0, r.json()
    idx = int(r.header("X-Cloudless-Index"))
    result = {}

    def block():
        result["r"] = f.req("GET", "/v1/workloads/default/pair?index=%d&wait=10s" % idx, timeout=20)
    t = threading.Thread(target=block)
    t.start()
    wait_for("the blocking query held by the leader", waiting)
    heartbeat([{"id": x["id"], "epoch": x["epoch"], "state": "running", "exit_code": None,
                "restarts": 0} for x in assigned])
    t.join(timeout=15)
    r = result.get("r")
    assert r is not None and r.status == 200, r
    assert int(r.header("X-Cloudless-Index")) > idx, r.headers
    assert r.json()["status"]["running"] == 2, r.json()["replica_list"]


def test_first_assignment_wakes_a_new_agent(make):
    """A blocking query for a new agent's assignments waits for its first assignment (the
    agent's topic starts at index 1, not at the domain's index) and is woken by it."""
    c, nodes, agents = cluster_with_agents(make)
    new = SimAgent(nodes, "agent-new", "zone-c", labels={"pool": "new"})
    try:
        new.enroll()
        new.start()
        r = nodes[1].req("GET", "/v1/agents/agent-new/assignments")
        assert r.status == 200 and r.json()["assignments"] == [], r
        assert r.json()["index"] == 1 and r.header("X-Cloudless-Index") == "1", r.headers
        result = {}

        def block():
            result["r"] = nodes[1].req("GET", "/v1/agents/agent-new/assignments?index=1&wait=10s",
                                       timeout=20)
            result["t"] = time.monotonic()
        t = threading.Thread(target=block)
        t.start()
        time.sleep(scaled(0.5))
        assert not result, "the blocking query answered before any assignment: %r" % result
        r = nodes[0].req("POST", "/v1/workloads", spec(
            "pinned", replicas=1, placement={"node_selector": {"pool": "new"}}))
        assert r.status == 201, r
        t_applied = time.monotonic()
        t.join(timeout=15)
        r = result["r"]
        assert r is not None and r.status == 200, r
        body = r.json()
        assert [a["workload"] for a in body["assignments"]] == ["default/pinned"], body
        assert body["index"] > 1 and int(r.header("X-Cloudless-Index")) == body["index"], body
        assert result["t"] - t_applied < scaled(1.0), result["t"] - t_applied
    finally:
        new.close()
        for a in agents:
            a.close()


def test_leader_killed_nothing_offline_nothing_moved(make):
    c, nodes, agents = cluster_with_agents(make)
    try:
        nodes[0].req("POST", "/v1/workloads", spec("web", replicas=6))
        wait_for("6 running", lambda: running_count(nodes[0], "default/web") == 6)
        before = placements(nodes[0], "default/web")
        ld = c.leader()
        ld.kill(signal.SIGKILL)
        survivors = [n for n in nodes if n is not ld]
        new = wait_for("a new leader", lambda: c.leader_of(survivors))
        # A full agent timeout and more after the election: nobody goes offline.
        time.sleep(scaled(AGENT_TIMEOUT_MS / 1000.0 * 2))
        r = new.req("GET", "/v1/agents")
        assert all(a["state"] == "ready" for a in r.json()["items"]), r.json()
        assert placements(new, "default/web") == before
        assert "Agent offline" not in new.log(), new.log()[-3000:]
        for a in agents:
            assert not a.stopped, (a.id, a.stopped)
    finally:
        for a in agents:
            a.close()


def test_heartbeat_names_its_index(make):
    """An agent that names the assignments index it holds gets "unchanged" and no list while
    nothing of its own changed, on the leader and through a follower; any older index, or a
    change to its replicas, brings the list in full with the new index; a malformed index is
    a 400 that changes nothing. The leader serves a list again from each replica's cached
    text while the replica and its workload are unchanged, and renders a changed one anew."""
    c, nodes, agents = cluster_with_agents(make)
    try:
        nodes[0].req("POST", "/v1/workloads", spec("web"))
        wait_for("3 running", lambda: running_count(nodes[0], "default/web") == 3)
        me = agents[0]
        me.close()  # from here it beats by hand, naming indexes
        path = "/v1/agents/%s/heartbeat" % me.id

        def beat(node, index=None):
            body = {"replicas": [{"id": rid, "epoch": ep, "state": "running", "exit_code": None,
                                  "restarts": 0} for rid, ep in sorted(me.runs().items())]}
            if index is not None:
                body["index"] = index
            r = node.req("POST", path, body, timeout=5)
            assert r is not None and r.status == 200, r
            return r.json()

        leader = c.leader()

        def texts(source):
            return metric_sum(leader, 'cloudless_assignment_texts_total{result="%s"}' % source)
        full = beat(nodes[0])
        n = full["index"]
        assert n > 0 and "unchanged" not in full, full
        assert sorted(a["id"] for a in full["assignments"]) == sorted(me.runs()), full
        cached, rendered = texts("cached"), texts("rendered")
        assert rendered >= 1, rendered
        again = beat(leader)  # nothing changed: the same list, from the cached texts
        assert again["assignments"] == full["assignments"], (again, full)
        # (the other agents' beats, without an index, are served lists from the cache too)
        assert texts("cached") >= cached + len(full["assignments"]), (texts("cached"), cached)
        assert texts("rendered") == rendered, (texts("rendered"), rendered)
        for node in nodes:  # the leader and both followers (forwarded) answer alike
            same = beat(node, n)
            assert same.get("unchanged") is True and "assignments" not in same, same
            assert same["index"] == n, same
        older = beat(nodes[1], n - 1)
        assert "unchanged" not in older and older["index"] == n, older
        assert sorted(a["id"] for a in older["assignments"]) == sorted(me.runs()), older

        # A change to its own replicas: drained, its replica moves (it is to run nothing).
        r = nodes[1].req("POST", "/v1/agents/%s/drain" % me.id)
        assert r is not None and r.status == 200, r

        def changed():
            ans = beat(nodes[2], n)
            return "unchanged" not in ans and ans["index"] > n and ans
        ans = wait_for("%s told to stop its replica" % me.id, changed)
        assert not [a for a in ans["assignments"] if a["desired"] == "run"], ans
        # Its replica moved: the agent now given it is sent a text rendered for the new record.
        wait_for("the moved replica rendered", lambda: texts("rendered") > rendered)
        assert beat(nodes[0], ans["index"]).get("unchanged") is True

        for bad in (-1, "7", 1.5, True):
            r = nodes[1].req("POST", path, {"replicas": [], "index": bad}, timeout=5)
            assert r is not None and r.status == 400, (bad, r)
            assert r.header("Content-Type").startswith(PROBLEM), r.header("Content-Type")
            assert "index must be an integer" in r.json()["detail"], r.json()
        # None of them reached the leader: what it is told is as it was.
        after = beat(nodes[0])
        assert after["index"] == ans["index"], (after, ans)
        assert after["assignments"] == ans["assignments"], (after, ans)
    finally:
        for a in agents:
            a.close()


def agent_states(node):
    r = node.req("GET", "/v1/agents?consistency=stale", timeout=5)
    return {a["id"]: a["state"] for a in r.json()["items"]} if r is not None and r.status == 200 else {}


def test_paused_leader_marks_nobody_offline(make):
    """A leader stopped (SIGSTOP) for twice the agent timeout, inside its election timeout:
    when it resumes, the agents that kept beating (their heartbeats waited in the leader's
    sockets and in the followers' forwards) stay ready, and the one that went silent before
    the pause is still found, within one agent timeout of the resume: the time the leader
    was not running does not count against agents (hashicorp/nomad#3840)."""
    c = make(election_ms=20000, extra_args=EXTRA).start(3)
    nodes = list(c.running())
    ld = c.leader()
    agents = [SimAgent(nodes[i % 3:] + nodes[:i % 3], "agent-%d" % (i + 1), "zone-a")
              for i in range(4)]
    try:
        for a in agents:
            a.enroll()
            a.start()
        wait_for("every agent answered", lambda: all(a.answers > 0 for a in agents))
        victim = agents[-1]
        victim.paused.set()
        pause = AGENT_TIMEOUT_MS / 1000.0 * 2
        ld.kill(signal.SIGSTOP)
        try:
            time.sleep(pause)  # the fault itself: the leader is not running for this long
        finally:
            ld.kill(signal.SIGCONT)
        resumed = time.monotonic()

        wait_for("the silent agent offline",
                 lambda: agent_states(ld).get(victim.id) == "offline",
                 timeout=scaled(AGENT_TIMEOUT_MS / 1000.0 + 2))
        assert time.monotonic() - resumed <= scaled(AGENT_TIMEOUT_MS / 1000.0 + 1.5)
        assert c.leader_of() is ld
        # The others, a full agent timeout after the resume and more: all ready, never offline.
        time.sleep(scaled(AGENT_TIMEOUT_MS / 1000.0))
        states = agent_states(ld)
        assert all(states[a.id] == "ready" for a in agents[:-1]), states
        offline = re.findall(r"Agent offline.*?agent_id=(\S+)", ld.log())
        assert offline == [victim.id], offline
        held = ld.metric("cloudless_liveness_held_seconds_total")
        assert held >= pause * 0.8, held
    finally:
        for a in agents:
            a.close()


BAD_SPECS = [
    ({"name": "web"}, "missing command"),
    ({"name": "web", "command": ["x"], "replicas": 1001}, "replicas must be"),
    ({"name": "web", "command": ["x"], "replicas": "3"}, "replicas must be"),
    ({"name": "web", "command": "x"}, "command must be an array"),
    ({"name": "web", "command": ["x"], "replica": 1}, "unknown field \"replica\""),
    ({"name": "w" * 64, "command": ["x"]}, "DNS label"),
    ({"name": "Web", "command": ["x"]}, "DNS label"),
    ({"name": "web", "command": ["x"], "resources": {"cpu_millicores": -1}}, "resources.cpu_millicores"),
    ({"name": "web", "command": ["x"], "placement": {"strategy": "random"}}, "placement.strategy"),
    ({"name": "web", "command": ["x"], "restart": {"policy": "sometimes"}}, "restart.policy"),
    ({"name": "web", "command": ["x"], "env": {"1X": "v"}}, "env"),
    ({"name": "web", "command": ["x"], "placement": {"exclusive": True}},
     "placement.exclusive needs stop_after_disconnect_s"),
    ({"name": "web", "command": ["x"], "placement": {"exclusive": "yes"}}, "placement.exclusive"),
    ({"name": "web", "command": ["x"], "stop_after_disconnect_s": 86401}, "stop_after_disconnect_s"),
    ("not json", "malformed JSON"),
]


def test_bad_specs_change_nothing(make):
    c = make(extra_args=EXTRA).start(3)
    nodes = list(c.running())
    before = c.wait_converged()
    for body, needle in BAD_SPECS:
        for n in nodes:
            r = n.req("POST", "/v1/workloads", body)
            assert r is not None and r.status == 400, (body, r)
            assert r.header("Content-Type").startswith(PROBLEM), r.headers
            assert needle in r.json()["detail"], (body, r.json())
    for body, needle in (({"id": "a b", "capacity": {"cpu_millicores": 1, "memory_bytes": 1}}, "id"),
                         ({"id": "a1"}, "capacity"),
                         ({"id": "a1", "capacity": {"cpu_millicores": 0, "memory_bytes": 1}}, "cpu_millicores")):
        r = nodes[1].req("POST", "/v1/agents", body)
        assert r is not None and r.status == 400 and needle in r.json()["detail"], (body, r)
    r = nodes[0].req("PUT", "/v1/workloads/default/web", {"name": "other", "command": ["x"]})
    assert r.status == 400 and "differs from the path" in r.json()["detail"], r
    r = nodes[0].req("POST", "/v1/agents/nobody/heartbeat", {"replicas": []})
    assert r.status == 404, r
    r = nodes[0].req("POST", "/v1/agents/nobody/heartbeat", {"replicas": [{"id": 1}]})
    assert r.status == 400, r
    after = c.wait_converged()
    assert [s["state_digest"] for s in after] == [s["state_digest"] for s in before]
    assert after[0]["applied_index"] == before[0]["applied_index"]


def test_pending_reason_and_capacity_freed(make):
    c = make(extra_args=EXTRA).start(3)
    nodes = list(c.running())
    agents = [SimAgent(nodes, "small-1", "zone-a", cpu=1000, mem=1 << 30),
              SimAgent(nodes, "small-2", "zone-b", cpu=1000, mem=1 << 30)]
    for a in agents:
        a.enroll()
        a.start()
    try:
        r = nodes[0].req("POST", "/v1/workloads",
                         spec("big", replicas=1, resources={"cpu_millicores": 100, "memory_bytes": 4 << 30}))
        assert r.status == 201, r
        w = wait_for("pending with a reason", lambda: (lambda w: w if w and w["status"]["pending"] == 1
                     and w["status"]["reason"] else None)(workload(nodes[1], "default/big")))
        assert w["status"]["reason"] == "0/2 agents fit: 2 insufficient memory", w["status"]
        assert w["replica_list"][0]["pending_reason"] == w["status"]["reason"]
        # Capacity added (a bigger agent enrolls): the pending replica is placed by itself.
        big = SimAgent(nodes, "big-1", "zone-a", cpu=4000, mem=8 << 30)
        big.enroll()
        big.start()
        agents.append(big)
        wait_for("placed on the new agent", lambda: "default/big/0" in big.runs())
        wait_for("running", lambda: running_count(nodes[0], "default/big") == 1)
    finally:
        for a in agents:
            a.close()


if __name__ == "__main__":
    run([test_spread_and_same_view_everywhere, test_zero_entries_per_steady_heartbeat,
         test_silent_agent_replaced_and_told_to_stop, test_scale_drain_uncordon_if_match,
         test_blocking_query, test_blocking_answer_holds_its_whole_entry,
         test_first_assignment_wakes_a_new_agent,
         test_leader_killed_nothing_offline_nothing_moved, test_paused_leader_marks_nobody_offline,
         test_heartbeat_names_its_index,
         test_bad_specs_change_nothing, test_pending_reason_and_capacity_freed])
