"""The Prometheus kit of compose/: promtool's checks of the config and the rules, the rules'
unit tests (every alert firing and quiet), and a real Prometheus scraping a local 3-node
cluster and 3 agents: one leader, every agent connected, every metric the dashboard and the
rules name, no HELP line an unanchored grep would take for a sample, and the no-leader alert
firing on quorum loss but not through a leader failover."""
import datetime
import json
import os
import re
import signal
import tempfile

from harness import free_port, help_lines_with_values, load_yaml, run, wait_for
from harness import request
from prom import (ALERTS, ALERTS_TEST, Prometheus, alert_rules, check_shipped_config,
                  dashboard_exprs, metric_names, promtool)
from test_auth import SECRET, TOKENS, bearer, write_auth_file

# The no-leader alert's `for` in the live test: above what a failover takes, well below 15 s.
TEST_FOR = "3s"


def test_promtool_checks(make):
    out = check_shipped_config()
    assert "SUCCESS" in out and "1 rule files found" in out, out
    out = promtool("check", "rules", ALERTS)
    assert "SUCCESS: %d rules found" % len(alert_rules()) in out, out
    out = promtool("test", "rules", ALERTS_TEST)
    assert "SUCCESS" in out, out


def test_every_alert_has_firing_and_quiet_cases(make):
    rules = {r["alert"]: r for _, r in alert_rules()}
    required = {"CloudlessNoLeader", "CloudlessMembersBelowQuorum", "CloudlessFollowerLagging",
                "CloudlessHighNumberOfLeaderChanges", "CloudlessMemberDown", "CloudlessSlowApply",
                "CloudlessAgentsOffline", "CloudlessReplicasPending"}
    assert required <= set(rules), required - set(rules)
    assert rules["CloudlessNoLeader"]["for"] == "15s", rules["CloudlessNoLeader"]
    assert "increase(cloudless_raft_leader_changes_seen_total[15m]) >= 4" in \
        rules["CloudlessHighNumberOfLeaderChanges"]["expr"]
    assert rules["CloudlessReplicasPending"]["for"] == "5m"
    doc = load_yaml(ALERTS_TEST)
    assert doc["rule_files"] == [os.path.basename(ALERTS)], doc["rule_files"]
    firing, quiet = set(), set()
    for t in doc["tests"]:
        for case in t.get("alert_rule_test", []):
            name = case["alertname"]
            assert name in rules, "alerts_test.yml tests an alert alerts.yml lacks: %s" % name
            (firing if case.get("exp_alerts") else quiet).add(name)
    assert firing == set(rules), "alerts never seen firing: %s" % (set(rules) - firing)
    assert quiet == set(rules), "alerts never seen quiet: %s" % (set(rules) - quiet)


def short_for_rules(directory):
    """alerts.yml with the no-leader alert's `for` cut to TEST_FOR (everything else as
    shipped), as JSON, which Prometheus reads as YAML."""
    doc = load_yaml(ALERTS)
    hits = 0
    for g in doc["groups"]:
        for r in g["rules"]:
            if r.get("alert") == "CloudlessNoLeader":
                r["for"] = TEST_FOR
                hits += 1
    assert hits == 1, doc
    path = os.path.join(directory, "alerts-short-for.json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
    promtool("check", "rules", path)
    return path


def start_with_metrics_listeners(c):
    """Three coordinators, each with a --metrics-addr listener (what compose scrapes), and an
    --auth-file as compose has (the harness uses the admin token)."""
    path = os.path.join(c.dir, "auth")
    write_auth_file(path, TOKENS)
    c.token = "admin.admin-" + SECRET
    c.extra_args = ["--auth-file", path, "--join-token", c.token]
    maddr = {}
    for i in (1, 2, 3):
        maddr["coordinator-%d" % i] = "127.0.0.1:%d" % free_port()
    first = c.node("coordinator-1").start(bootstrap=True,
                                          extra=["--metrics-addr", maddr["coordinator-1"]])
    wait_for("first node to lead", lambda: c.leader_of([first]))
    for i in (2, 3):
        c.node("coordinator-%d" % i).start(join=[first],
                                           extra=["--metrics-addr", maddr["coordinator-%d" % i]])
    c.wait_voters(3)
    return maddr


def start_agents(c):
    ags = [c.agent("agent-%d" % i, zone=z) for i, z in ((1, "zone-a"), (2, "zone-b"), (3, "zone-a"))]
    for a in ags:
        a.start(extra=["--token", "enroll.enroll-" + SECRET])
    return {a.metrics_addr: a for a in ags}


def test_real_scrape(make):
    c = make()
    maddr = start_with_metrics_listeners(c)
    instance_of = {v: k for k, v in maddr.items()}
    ld = c.leader()
    follower = [n for n in c.running() if n is not ld][0]
    # A forwarded write, so that the forward counters the dashboard shows have series.
    wait_for("a write through a follower",
             lambda: (lambda r: r is not None and r.status == 200)(follower.put("k", "v")))
    # The metrics listener wants the metrics token, as the main one does.
    for addr in maddr.values():
        assert request(addr, "GET", "/metrics").status == 401
        assert request(addr, "GET", "/metrics", None, {"Authorization": bearer("read")}).status == 403
        assert request(addr, "GET", "/metrics", None, {"Authorization": bearer("metrics")}).status == 200
    agents = start_agents(c)
    with tempfile.TemporaryDirectory(prefix="cloudless-rules-") as d:
        prom = Prometheus({"coordinators": maddr.values(), "agents": agents}, short_for_rules(d),
                          metrics_token="metrics.metrics-" + SECRET)
        try:
            check_agents(prom, agents)
            check_scrape(c, prom, instance_of)
        except Exception:
            print("----- prometheus log -----\n" + prom.log())
            raise
        finally:
            prom.close()


def leaders(prom):
    return [m["instance"] for m, _ in prom.query("cloudless_coordinator_is_leader == 1")]


def evaluated_since(prom, t):
    """Whether Prometheus has evaluated the alerting rules TEST_FOR and three more intervals
    after its own time t (seconds)."""
    deadline = t + float(TEST_FOR.rstrip("s")) + 3
    for g in prom.api("rules", type="alert")["groups"]:
        # RFC 3339 with nanoseconds; microseconds are enough here.
        stamp = re.sub(r"(\.\d{6})\d*", r"\1", g["lastEvaluation"]).replace("Z", "+00:00")
        if datetime.datetime.fromisoformat(stamp).timestamp() < deadline:
            return False
    return True


def prom_now(prom):
    return float(prom.api("query", query="time()")["result"][1])


def check_agents(prom, agents):
    """Every agent is a target that is up, connected, and whose HELP lines read as no sample."""
    def connected():
        got = sorted(m["instance"] for m, _ in prom.query('cloudless_agent_connected{job="agents"} == 1'))
        return got == sorted(agents)
    wait_for("three agents scraped and connected", connected, timeout=30)
    for a in agents.values():
        assert help_lines_with_values(a.metrics()) == [], a
    assert sorted(v for _, v in prom.query('up{job="agents"}')) == [1, 1, 1]


def check_scrape(c, prom, instance_of):
    ld = c.leader()
    wait_for("three targets up",
             lambda: sorted(v for _, v in prom.query('up{job="coordinators"}')) == [1, 1, 1],
             timeout=20)
    # Exactly one target leads, and it is the cluster's leader.
    got = wait_for("exactly one target with cloudless_coordinator_is_leader == 1",
                   lambda: leaders(prom) if len(leaders(prom)) == 1 else None, timeout=20)
    assert [instance_of[i] for i in got] == [ld.node_id], (got, ld)
    assert len(prom.query("cloudless_coordinator_is_leader")) == 3

    # Every metric the dashboard and the rules read is in the scrape.
    wanted = set()
    for expr in dashboard_exprs() + [r["expr"] for _, r in alert_rules()]:
        wanted |= metric_names(expr)
    assert "cloudless_coordinator_is_leader" in wanted and "up" in wanted, wanted
    try:
        wait_for("every dashboard and rule metric scraped", lambda: wanted <= prom.names(),
                 timeout=20)
    except AssertionError:
        raise AssertionError("not in the scrape: %s" % sorted(wanted - prom.names()))

    # A leader failover (its process killed) leaves the no-leader alert quiet.
    old = ld
    old.kill(signal.SIGKILL)
    new = wait_for("a new leader in Prometheus",
                   lambda: (lambda l: l if len(l) == 1 and instance_of[l[0]] != old.node_id
                            else None)(leaders(prom)), timeout=20)[0]
    t = prom_now(prom)
    wait_for("the rules evaluated long enough after the failover to fire",
             lambda: evaluated_since(prom, t), timeout=30)
    fired = prom.query('ALERTS{alertname="CloudlessNoLeader",alertstate="firing"}')
    assert fired == [], fired
    assert prom.query('max_over_time(ALERTS{alertname="CloudlessNoLeader",'
                      'alertstate="firing"}[5m])') == []

    # Quorum lost (a second node stopped): the survivor has no leader and the alert fires.
    survivor = [n for n in c.running() if n.node_id != instance_of[new]][0]
    c.nodes[instance_of[new]].kill(signal.SIGKILL)
    survivor_instance = [i for i, nid in instance_of.items() if nid == survivor.node_id][0]

    def firing():
        a = [x for x in prom.alerts("CloudlessNoLeader") if x["state"] == "firing"]
        return a if a else None
    got = wait_for("CloudlessNoLeader firing for the survivor", firing, timeout=30)
    assert [a["labels"]["instance"] for a in got] == [survivor_instance], got
    assert got[0]["labels"]["severity"] == "critical", got
    assert survivor_instance in got[0]["annotations"]["summary"], got
    assert survivor.status()["leader"] is None, survivor.status()


if __name__ == "__main__":
    run([test_promtool_checks, test_every_alert_has_firing_and_quiet_cases, test_real_scrape])
