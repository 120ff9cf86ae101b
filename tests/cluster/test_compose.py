"""compose/ kept right without a Docker engine: `docker-compose config -q` accepts the HA file;
no host port is published twice; every variable and flag given to a coordinator or an agent is
one its binary's `--help` documents; the compose topology (coordinators and agents) is the one
test-ha-cluster.sh prints for compose mode, and the local mode's has the same ids, port
offsets, join targets and zones; the image runs as a non-root user and installs every shared
library the binaries link; Grafana's provisioning names the dashboard directory the file
mounts and the datasource uid the panels use."""
import json
import os
import re
import shutil
import subprocess

from harness import AGENT_BIN, BIN, ROOT, help_options, load_yaml, run

COMPOSE_DIR = os.path.join(ROOT, "compose")
COMPOSE_FILE = os.path.join(COMPOSE_DIR, "docker-compose-ha.yml")
SCRIPT = os.path.join(COMPOSE_DIR, "test-ha-cluster.sh")
DOCKERFILE = os.path.join(COMPOSE_DIR, "Dockerfile")
CTL = os.environ.get("CLOUDLESS_CTL", os.path.join(os.path.dirname(BIN), "cloudlessctl"))


def docker_compose(*args):
    dc = shutil.which("docker-compose")
    assert dc, "docker-compose is needed (Debian's docker-compose; scripts/install-deps.sh --test)"
    p = subprocess.run([dc, "-f", COMPOSE_FILE] + list(args), capture_output=True, text=True,
                       timeout=120, cwd=COMPOSE_DIR, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, "docker-compose %s failed:\n%s%s" % (" ".join(args), p.stdout, p.stderr)
    return p.stdout


_services = []


def services():
    """The file as Compose reads it (anchors, merges and short forms resolved)."""
    if not _services:
        _services.append(load_yaml(text=docker_compose("config"))["services"])
    return _services[0]


def ours(svcs):
    return {k: v for k, v in svcs.items() if v.get("image", "").startswith("cloudless-coordinator")}


def coordinators(svcs):
    return {k: v for k, v in ours(svcs).items() if "entrypoint" not in v}


def agents(svcs):
    return {k: v for k, v in ours(svcs).items()
            if v.get("entrypoint") == ["/usr/local/bin/cloudless-agent"]}


def published(svc):
    """[(host port, container port)] of a service."""
    out = []
    for p in svc.get("ports", []):
        if isinstance(p, dict):
            out.append((int(p["published"]), int(p["target"])))
        else:
            m = re.fullmatch(r"(?:[\d.]+:)?(\d+):(\d+)(?:/\w+)?", str(p))
            assert m, p
            out.append((int(m.group(1)), int(m.group(2))))
    return out


def port_of(addr):
    return int(addr.rsplit(":", 1)[1])


def test_compose_config_is_valid(make):
    docker_compose("config", "-q")


def test_no_host_port_twice(make):
    seen = {}
    for name, svc in services().items():
        for host, _ in published(svc):
            assert host not in seen, "host port %d published by %s and %s" % (host, seen[host], name)
            seen[host] = name
    assert {9090, 9091, 9092} <= set(seen), seen  # the ports the original script greps


def test_every_variable_is_a_flag(make):
    svcs = services()
    assert sorted(coordinators(svcs)) == ["coordinator-1", "coordinator-2", "coordinator-3"]
    assert sorted(agents(svcs)) == ["agent-1", "agent-2", "agent-3"]
    assert set(ours(svcs)) == set(coordinators(svcs)) | set(agents(svcs)), sorted(ours(svcs))
    envs = []
    for binary, group in ((BIN, coordinators(svcs)), (AGENT_BIN, agents(svcs))):
        flags = {o["flag"]: o["env"] for o in help_options(binary)}
        assert flags.get("--node-id"), (binary, flags)
        known_env = {v for v in flags.values() if v}
        envs.append(known_env)
        tool = os.path.basename(binary)
        for name, svc in group.items():
            for var in svc.get("environment", {}):
                assert var in known_env, "%s: %s is no variable of %s --help" % (name, var, tool)
            for arg in svc.get("command", []) or []:
                if arg.startswith("--"):
                    assert arg.split("=", 1)[0] in flags, "%s: %s is no flag of %s" % (name, arg, tool)
    # The image's own ENV applies to both binaries.
    with open(DOCKERFILE) as f:
        for var in re.findall(r"^ENV (CLOUDLESS_[A-Z0-9_]+)=", f.read(), re.M):
            assert all(var in e for e in envs), var


def script_topology(**env):
    p = subprocess.run(["bash", SCRIPT, "--topology"], env=dict(os.environ, **env),
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    nodes = []
    for ln in p.stdout.splitlines():
        kind, name, *fields = ln.split()
        assert kind in ("coordinator", "agent"), ln
        nodes.append(dict([("kind", kind), ("id", name)] + [f.split("=", 1) for f in fields]))
    return nodes


def compose_topology():
    svcs = coordinators(services())
    ip_to_id = {}
    for name, svc in svcs.items():
        ip_to_id[svc["networks"]["cloudless"]["ipv4_address"]] = svc["environment"]["CLOUDLESS_RAFT_ID"]
    nodes = []
    for name in sorted(svcs):
        svc = svcs[name]
        env = svc["environment"]
        ports = dict((target, host) for host, target in published(svc))
        assert env["CLOUDLESS_RAFT_ID"] == name, (name, env)
        assert env["CLOUDLESS_ADVERTISE_HTTP"].split(":")[0] == svc["networks"]["cloudless"]["ipv4_address"]
        nodes.append({
            "kind": "coordinator",
            "id": env["CLOUDLESS_RAFT_ID"],
            "metrics": "localhost:%d" % ports[port_of(env["CLOUDLESS_METRICS_ADDR"])],
            "http": "localhost:%d" % ports[port_of(env["CLOUDLESS_HTTP_ADDR"])],
            "raft": env["CLOUDLESS_RAFT_ADDR"],
            "advertise": env["CLOUDLESS_ADVERTISE_HTTP"],
            "join": ",".join(ip_to_id[a.split(":")[0]] for a in env["CLOUDLESS_RAFT_JOIN_ADDR"].split(",")
                             if port_of(a) == port_of(env["CLOUDLESS_HTTP_ADDR"])),
            "bootstrap_expect": str(env["CLOUDLESS_BOOTSTRAP_EXPECT"]),
        })
        assert len(env["CLOUDLESS_RAFT_JOIN_ADDR"].split(",")) == len(nodes[-1]["join"].split(","))
    http_port = port_of(svcs["coordinator-1"]["environment"]["CLOUDLESS_HTTP_ADDR"])
    svcs = agents(services())
    for name in sorted(svcs):
        env = svcs[name]["environment"]
        ports = dict((target, host) for host, target in published(svcs[name]))
        coords = env["CLOUDLESS_COORDINATOR_ADDRESSES"].split(",")
        assert all(port_of(a) == http_port for a in coords), coords
        assert env["CLOUDLESS_NODE_ID"] == name, (name, env)
        nodes.append({
            "kind": "agent",
            "id": env["CLOUDLESS_NODE_ID"],
            "metrics": "localhost:%d" % ports[port_of(env["CLOUDLESS_METRICS_ADDR"])],
            "zone": env["CLOUDLESS_ZONE"],
            "coordinators": ",".join(ip_to_id[a.split(":")[0]] for a in coords),
        })
    return nodes


def offsets(nodes, key):
    ports = [port_of(n[key]) for n in nodes]
    return [p - min(ports) for p in ports]


def test_topology_equals_the_scripts(make):
    compose = compose_topology()
    assert script_topology(LOCAL="0") == compose, (script_topology(LOCAL="0"), compose)
    local = script_topology(LOCAL="1", BASE_PORT="20000")
    assert [(n["kind"], n["id"]) for n in local] == [(n["kind"], n["id"]) for n in compose]
    coords = [n for n in compose if n["kind"] == "coordinator"]
    lcoords = [n for n in local if n["kind"] == "coordinator"]
    ags = [n for n in compose if n["kind"] == "agent"]
    lags = [n for n in local if n["kind"] == "agent"]
    for key in ("join", "bootstrap_expect"):
        assert [n[key] for n in lcoords] == [n[key] for n in coords], key
    for key in ("metrics", "http"):
        assert offsets(lcoords, key) == offsets(coords, key) == [0, 1, 2], key
    for key in ("zone", "coordinators"):
        assert [n[key] for n in lags] == [n[key] for n in ags], key
    assert offsets(lags, "metrics") == offsets(ags, "metrics") == [0, 1, 2]
    # Every coordinator joins all three, every agent knows all three, zones a/b/a.
    three = "coordinator-1,coordinator-2,coordinator-3"
    assert all(n["join"] == three for n in coords) and all(n["coordinators"] == three for n in ags)
    assert [n["zone"] for n in ags] == ["zone-a", "zone-b", "zone-a"]
    # The local mode's addresses are 12 distinct ports.
    addrs = [n[k] for n in lcoords for k in ("metrics", "http", "raft")] + [n["metrics"] for n in lags]
    assert len({port_of(a) for a in addrs}) == 12, addrs


def runtime_packages(text):
    stages = re.split(r"^FROM ", text, flags=re.M)
    final = stages[-1]
    assert final.startswith("debian:12"), final[:40]
    installs = re.findall(r"apt-get install [^&]*", final.replace("\\\n", " "))
    return final, {w for cmd in installs for w in cmd.split()[2:] if not w.startswith("-")}


def test_image_runs_unprivileged_with_its_libraries(make):
    with open(DOCKERFILE) as f:
        text = f.read()
    final, pkgs = runtime_packages(text)
    users = re.findall(r"^USER (\S+)", final, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0"), users
    assert re.search(r"useradd .*--uid (\d+)", final.replace("\\\n", " ")), final
    assert re.search(r"chown %s" % re.escape(users[-1]), final), final
    # Every shared library the binaries link comes from a package the runtime stage installs,
    # one they depend on, or the base image (Debian's required packages).
    if not shutil.which("apt-cache"):
        raise AssertionError("apt-cache is needed to check the image's packages")
    deps = subprocess.run(["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests",
                           "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances"]
                          + sorted(pkgs), capture_output=True, text=True, timeout=120)
    assert deps.returncode == 0, deps.stderr
    allowed = {ln.strip() for ln in deps.stdout.splitlines() if not ln.startswith(" ")}
    allowed |= {ln.split(":", 1)[1].strip() for ln in deps.stdout.splitlines()
                if "Depends:" in ln}
    libs = {}
    for binary in (BIN, AGENT_BIN, CTL):
        assert os.path.basename(binary) in text, "the image does not copy %s" % binary
        ldd = subprocess.run(["ldd", binary], capture_output=True, text=True, timeout=30).stdout
        for path in re.findall(r"=> (/\S+)", ldd):
            # The image builds without sanitizers: their runtimes are this build's alone.
            if not re.search(r"/lib(asan|ubsan|lsan|tsan)\.so", path):
                libs[path] = binary
    # dpkg knows a library by the path its package installed, which with merged /usr may be
    # the /lib spelling of what ldd shows, and a symlink's target or the link itself.
    spellings = {}
    for path in libs:
        for p in (path, os.path.realpath(path)):
            for q in (p, re.sub(r"^/usr/lib/", "/lib/", p), re.sub(r"^/lib/", "/usr/lib/", p)):
                spellings[q] = path
    owners = {}
    for ln in subprocess.run(["dpkg", "-S"] + sorted(spellings), capture_output=True,
                             text=True).stdout.splitlines():
        pkg, path = ln.split(": ", 1)
        if path in spellings:
            owners[spellings[path]] = pkg.split(":")[0]
    prio = dict(ln.split(" ", 1) for ln in subprocess.run(
        ["dpkg-query", "-W", "-f=${Package} ${Priority}\n"] + sorted(set(owners.values())),
        capture_output=True, text=True).stdout.splitlines())
    for path, binary in sorted(libs.items()):
        assert path in owners, "no Debian package ships %s (needed by %s)" % (path, binary)
        owner = owners[path]
        assert owner in allowed or prio.get(owner) == "required", \
            "%s needs %s from %s, which the image does not install" % (binary, path, owner)


def test_grafana_provisioning(make):
    svcs = services()
    graf = svcs["grafana"]
    mounts = {}
    for v in graf["volumes"]:
        if isinstance(v, dict):
            mounts[v["target"]] = v["source"]
        else:
            src, dst = v.split(":")[:2]
            mounts[dst] = src
    prov = mounts["/etc/grafana/provisioning"]
    prov = prov if os.path.isabs(prov) else os.path.join(COMPOSE_DIR, prov)
    ds = load_yaml(os.path.join(prov, "datasources", "prometheus.yml"))["datasources"]
    uids = {d["uid"] for d in ds}
    prom = [d for d in ds if d["type"] == "prometheus"]
    assert len(prom) == 1 and prom[0]["url"] == "http://prometheus:9090", prom
    boards = load_yaml(os.path.join(prov, "dashboards", "cloudless.yml"))["providers"]
    assert len(boards) == 1, boards
    target = boards[0]["options"]["path"]
    assert target in mounts, (target, mounts)
    src = mounts[target] if os.path.isabs(mounts[target]) else os.path.join(COMPOSE_DIR, mounts[target])
    dashboards = [n for n in os.listdir(src) if n.endswith(".json")]
    assert dashboards, src
    for n in dashboards:
        with open(os.path.join(src, n)) as f:
            d = json.load(f)
        for p in d["panels"]:
            assert p["datasource"]["uid"] in uids, (n, p["title"], p["datasource"])
            for t in p["targets"]:
                assert t.get("datasource", p["datasource"])["uid"] in uids, (n, p["title"])
    # Prometheus in compose reads the rules file beside its config.
    pv = [v if isinstance(v, str) else "%s:%s" % (v["source"], v["target"])
          for v in svcs["prometheus"]["volumes"]]
    assert any(v.split(":")[1] == "/etc/prometheus/alerts.yml" for v in pv), pv


if __name__ == "__main__":
    run([test_compose_config_is_valid, test_no_host_port_twice, test_every_variable_is_a_flag,
         test_topology_equals_the_scripts, test_image_runs_unprivileged_with_its_libraries,
         test_grafana_provisioning])
