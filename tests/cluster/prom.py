"""Prometheus for the cluster tests: the shipped files (compose/prometheus, compose/grafana),
promtool, the metric names their expressions use, and a real Prometheus server (Debian's
`prometheus` binary) scraping a local cluster. Standard library only, plus harness.load_yaml.
"""
import json
import os
import re
import shutil
import subprocess
import tempfile
import urllib.parse

from harness import ROOT, free_port, load_yaml, request, scaled, wait_for

PROM_DIR = os.path.join(ROOT, "compose", "prometheus")
ALERTS = os.path.join(PROM_DIR, "alerts.yml")
ALERTS_TEST = os.path.join(PROM_DIR, "alerts_test.yml")
CONFIG = os.path.join(PROM_DIR, "prometheus.yml")
DASHBOARDS = os.path.join(ROOT, "compose", "grafana", "dashboards")


def tool(name):
    path = shutil.which(name)
    assert path, "%s is needed (Debian's prometheus package; scripts/install-deps.sh --test)" % name
    return path


def promtool(*args, stdin=None):
    """Runs promtool; fails the test with its output unless it exits 0."""
    p = subprocess.run([tool("promtool")] + list(args), input=stdin, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, "promtool %s failed:\n%s%s" % (" ".join(args), p.stdout, p.stderr)
    return p.stdout


def check_shipped_config():
    """promtool check config of the shipped prometheus.yml, in a copy beside its rule file and
    a placeholder metrics.token (compose/make-auth.sh makes the real one, mounted in compose)."""
    with tempfile.TemporaryDirectory(prefix="cloudless-promcfg-") as d:
        for f in (CONFIG, ALERTS):
            shutil.copy(f, d)
        with open(os.path.join(d, "metrics.token"), "w") as f:
            f.write("placeholder\n")
        return promtool("check", "config", os.path.join(d, os.path.basename(CONFIG)))


def run_rule_tests(lines, rule_files=(ALERTS,)):
    """promtool test rules on a unit-test file made of `lines` (without its rule_files)."""
    d = tempfile.mkdtemp(prefix="promtool-")
    try:
        path = os.path.join(d, "rules_test.yml")
        with open(path, "w") as f:
            f.write("\n".join(["rule_files:"] + ["  - %s" % os.path.abspath(r) for r in rule_files]
                              + list(lines)) + "\n")
        return promtool("test", "rules", path)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def alert_rules(path=ALERTS):
    """The alerting rules of a rules file: [(group, rule)]."""
    doc = load_yaml(path)
    return [(g, r) for g in doc["groups"] for r in g["rules"] if "alert" in r]


def dashboard_exprs():
    out = []
    for name in sorted(os.listdir(DASHBOARDS)):
        if name.endswith(".json"):
            with open(os.path.join(DASHBOARDS, name)) as f:
                d = json.load(f)
            out += [t["expr"] for p in d["panels"] for t in p.get("targets", []) if "expr" in t]
    return out


# A metric name in PromQL: not a function or keyword (followed by "("), not a label name
# inside braces or after by/without/on/ignoring, not a string or a duration.
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
             "unless", "offset", "inf", "nan",
             # aggregations, which may take their `by (...)` before the parenthesis
             "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
             "bottomk", "topk", "quantile"}


def metric_names(expr):
    """The metric names an expression reads."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)          # strings
    s = re.sub(r"\{[^}]*\}", "{}", s)                    # label matchers
    s = re.sub(r"\[[^\]]*\]", "[]", s)                   # ranges
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", r"\1", s)
    names = set()
    for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", s):
        rest = s[m.end():].lstrip()
        if m.group(0).lower() in _KEYWORDS or rest.startswith("("):
            continue
        if s[m.start() - 1:m.start()].isdigit():       # 5m, 1e3
            continue
        names.add(m.group(0))
    return names


class Prometheus:
    """A Prometheus server on a free loopback port with its data under a temp dir, scraping
    the shipped config's jobs with local targets (`jobs`: {"coordinators": [host:port of each
    coordinator's metrics listener], "agents": [...]}; every job the config has must be given),
    every `interval`, with the given rules file. close() kills exactly the process it started."""

    def __init__(self, jobs, rules, interval="1s", metrics_token="unused-placeholder"):
        self.dir = tempfile.mkdtemp(prefix="cloudless-prometheus-")
        # The coordinators job's credentials_file (metrics.token, beside the config).
        with open(os.path.join(self.dir, "metrics.token"), "w") as f:
            f.write(metrics_token + "\n")
        self.addr = "127.0.0.1:%d" % free_port()
        self.config = os.path.join(self.dir, "prometheus.json")
        self.log_path = os.path.join(self.dir, "prometheus.log")
        # The shipped config with the local targets, the test's intervals and rules. JSON is
        # YAML, so both promtool and Prometheus read it.
        cfg = load_yaml(CONFIG)
        cfg["global"].update(scrape_interval=interval, evaluation_interval=interval,
                             scrape_timeout=interval)
        cfg["rule_files"] = [os.path.abspath(rules)]
        names = sorted(j["job_name"] for j in cfg["scrape_configs"])
        assert names == sorted(jobs), (names, sorted(jobs))
        for j in cfg["scrape_configs"]:
            j["static_configs"] = [{"targets": list(jobs[j["job_name"]])}]
        with open(self.config, "w") as f:
            json.dump(cfg, f, indent=1)
        promtool("check", "config", self.config)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [tool("prometheus"), "--config.file=" + self.config,
             "--storage.tsdb.path=" + os.path.join(self.dir, "tsdb"),
             "--web.listen-address=" + self.addr], stdout=log, stderr=log,
            stdin=subprocess.DEVNULL)
        log.close()
        wait_for("Prometheus to be ready", self.ready, timeout=30, interval=0.1)

    def ready(self):
        assert self.proc.poll() is None, "prometheus exited:\n" + self.log()
        r = request(self.addr, "GET", "/-/ready", timeout=2)
        return r is not None and r.status == 200

    def api(self, path, **params):
        r = request(self.addr, "GET", "/api/v1/" + path + "?" + urllib.parse.urlencode(params),
                    timeout=scaled(5))
        assert r is not None and r.status == 200, (path, params, r)
        body = r.json()
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr):
        """Instant vector: [(labels, value)]."""
        return [(x["metric"], float(x["value"][1])) for x in self.api("query", query=expr)["result"]]

    def names(self):
        return set(self.api("label/__name__/values"))

    def alerts(self, name):
        return [a for a in self.api("alerts")["alerts"] if a["labels"]["alertname"] == name]

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if not os.environ.get("CLOUDLESS_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)
