"""The operator-facing files that cannot drift from what they describe: docs/HA-CLUSTER-SETUP.md's
flag tables are `cloudless-coordinator --help`'s and `cloudless-agent --help`'s, its variable table is the HA script's, its
alert table is alerts.yml's, and every flag the docs' commands pass exists; the GitHub
workflow runs the README's test command on Debian 12 with a timeout; the HA script passes
shellcheck.

  python3 tests/cluster/test_ops_files.py --write    regenerates the flag tables
"""
import os
import re
import shutil
import subprocess
import sys

from harness import AGENT_BIN, BIN, ROOT, help_options, load_yaml, run
from prom import alert_rules

SETUP = os.path.join(ROOT, "docs", "HA-CLUSTER-SETUP.md")
OPERATIONS = os.path.join(ROOT, "docs", "operations.md")
SCRIPT = os.path.join(ROOT, "compose", "test-ha-cluster.sh")
WORKFLOW = os.path.join(ROOT, ".github", "workflows", "ci.yml")
README = os.path.join(ROOT, "README.md")
CTL = os.environ.get("CLOUDLESS_CTL", os.path.join(os.path.dirname(BIN), "cloudlessctl"))
# (binary, start marker, end marker) of each generated flag table
TABLES = [(BIN, "<!-- flags: generated from cloudless-coordinator --help; do not edit by hand -->",
           "<!-- end of flags -->"),
          (AGENT_BIN, "<!-- agent flags: generated from cloudless-agent --help; do not edit by hand -->",
           "<!-- end of agent flags -->")]


def read(path):
    with open(path) as f:
        return f.read()


def between(text, start, end):
    assert start in text and end in text, "markers %r / %r missing" % (start, end)
    return text[text.index(start) + len(start):text.index(end)]


def flag_table(binary):
    def cell(s):
        return s.replace("|", "\\|")
    rows = ["| flag | variable | default | meaning |", "|---|---|---|---|"]
    for o in help_options(binary):
        if o["env"] is None:  # --help, --version
            continue
        flag = o["flag"] + (" " + o["meta"] if o["meta"] else "")
        rows.append("| `%s` | `%s` | %s | %s |" % (cell(flag), o["env"], cell(o["default"]),
                                                   cell(o["text"])))
    return "\n" + "\n".join(rows) + "\n"


def test_flag_tables_are_the_help(make):
    for binary, start, end in TABLES:
        doc = between(read(SETUP), start, end)
        want = flag_table(binary)
        assert doc == want, ("docs/HA-CLUSTER-SETUP.md's table of %s differs from --help; run "
                             "`python3 tests/cluster/test_ops_files.py --write`.\n--- want:\n%s"
                             % (os.path.basename(binary), want))
        assert len(re.findall(r"^\| `--", doc, re.M)) >= 15, doc


def table_column(text, heading_row):
    """First-column values (inside backticks) of the markdown table whose header is heading_row."""
    part = text[text.index("\n" + heading_row + "\n") + 1:]
    rows = []
    for ln in part.splitlines()[2:]:
        if not ln.startswith("|"):
            break
        rows.append(re.match(r"^\| `([^`]+)`", ln).group(1))
    return rows


def test_script_variables_are_documented(make):
    script = read(SCRIPT)
    read_vars = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*):-", script))
    documented = set(table_column(read(SETUP), "| variable | default | meaning |"))
    assert read_vars == documented, ("script reads %s, the doc lists %s" %
                                     (sorted(read_vars), sorted(documented)))
    header = script[:script.index("set -euo pipefail")]
    for v in read_vars:
        assert v in header, "the script's header does not mention %s" % v


def test_alert_table_is_the_rules(make):
    table = between(read(SETUP), "<!-- alerts: checked against compose/prometheus/alerts.yml -->",
                    "<!-- end of alerts -->")
    assert table_column(table, "| alert | fires when |") == [r["alert"] for _, r in alert_rules()]


def flags_of(binary, *cmd):
    p = subprocess.run([binary] + list(cmd) + ["--help"], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 0, p.stderr
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", p.stdout))


def test_doc_commands_use_real_flags(make):
    coord = {o["flag"] for o in help_options(BIN)}
    # The coordinator's offline sub-commands have flags of their own.
    coord_sub = {sub: {o["flag"] for o in help_options(BIN, sub)}
                 for sub in ("restore", "recover", "hash-token")}
    agent = {o["flag"] for o in help_options(AGENT_BIN)}
    top = subprocess.run([CTL, "--help"], capture_output=True, text=True, timeout=30).stdout
    ctl = flags_of(CTL)
    for group, verb in re.findall(r"^  ([a-z]+) ([a-z]+)\b", top, re.M):
        ctl |= flags_of(CTL, group, verb)
    checked = set()
    for path in (SETUP, OPERATIONS, README):
        for block in re.findall(r"^```sh\n(.*?)^```$", read(path), re.M | re.S):
            for cmd in re.sub(r"\\\n\s*", " ", block).splitlines():
                cmd = cmd.split("#")[0]
                for tool, known in (("cloudless-coordinator", coord), ("cloudless-agent", agent),
                                    ("cloudlessctl", ctl)):
                    for m in re.finditer(r"(?:^|[\s/])%s((?:\s+\S+)*)" % tool, cmd):
                        args = re.split(r"[|;&]", m.group(1))[0].split()
                        flags = known
                        if tool == "cloudless-coordinator" and args and args[0] in coord_sub:
                            flags = coord_sub[args[0]]
                        for a in args:
                            if a == "--":
                                break
                            if a.startswith("--"):
                                assert a.split("=")[0] in flags, "%s: %s %s" % (path, tool, a)
                                checked.add((tool, a.split("=")[0]))
    assert len(checked) >= 6, checked


def test_ha_script_passes_shellcheck(make):
    """Its compose mode cannot run here (no Docker engine): shellcheck reads both modes."""
    sc = shutil.which("shellcheck")
    assert sc, "shellcheck is needed (Debian's shellcheck; scripts/install-deps.sh --test)"
    p = subprocess.run([sc, "-S", "warning", SCRIPT], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr


def test_ci_workflow(make):
    wf = load_yaml(WORKFLOW)
    assert set(wf) <= {"name", "on", "permissions", "concurrency", "env", "defaults", "jobs",
                       "run-name"}, set(wf)
    assert {"push", "pull_request"} <= set(wf["on"]), wf["on"]
    assert len(wf["jobs"]) == 1, wf["jobs"]
    job = list(wf["jobs"].values())[0]
    assert job["runs-on"] == "ubuntu-latest", job
    container = job["container"]
    image = container["image"] if isinstance(container, dict) else container
    assert image == "debian:12", container
    assert isinstance(job["timeout-minutes"], int) and 45 <= job["timeout-minutes"] <= 90, job
    for step in job["steps"]:
        assert ("uses" in step) != ("run" in step), step
        assert set(step) <= {"name", "uses", "run", "with", "env", "if", "id", "shell",
                             "timeout-minutes", "continue-on-error", "working-directory"}, step
        if "uses" in step:
            assert re.fullmatch(r"actions/[a-z-]+@v\d+", step["uses"]), step
    # The README's test command, and .ci/run's, is the step that runs.
    readme = read(README)
    after = readme[readme.index("Install, build and run every test"):]
    command = re.search(r"```sh\n(.*?)\n```", after, re.S).group(1).strip()
    assert command == "scripts/test.sh", command
    assert [s["run"].strip() for s in job["steps"] if "run" in s][-1] == command, job["steps"]
    assert re.search(r"^exec %s$" % re.escape(command), read(os.path.join(ROOT, ".ci", "run")), re.M)
    assert any(s.get("uses", "").startswith("actions/checkout@") for s in job["steps"])


if __name__ == "__main__":
    if "--write" in sys.argv[1:]:
        text = read(SETUP)
        for binary, start_mark, end_mark in TABLES:
            start, end = text.index(start_mark) + len(start_mark), text.index(end_mark)
            text = text[:start] + flag_table(binary) + text[end:]
        with open(SETUP, "w") as f:
            f.write(text)
        print("wrote the flag tables of %s" % SETUP)
        sys.exit(0)
    run([test_flag_tables_are_the_help, test_script_variables_are_documented,
         test_alert_table_is_the_rules, test_doc_commands_use_real_flags,
         test_ha_script_passes_shellcheck, test_ci_workflow])
