"""Runs the shell blocks of a docs/operations.md procedure as they are written.

A procedure is a `## Title` section; its ```sh blocks are its commands, in order. They name
example machines (10.0.x.y addresses) and the usual data dir (/var/lib/cloudless); the test
gives the real loopback addresses to substitute, and runs each block with `bash -euo
pipefail` in a scratch directory, with a `cloudless-coordinator` on PATH that stands in for
the machines: `restore` and `recover` run the real binary in the foreground, and a server
start is launched in the background (as a supervisor would keep it running) with its data
dir mapped to <root>/<its --node-id> (a command without --node-id - `recover` - gets the
node the test names). Every server it starts is recorded, so the test kills exactly those
(`with Runner(...) as rb:` does, and shows their logs when the test fails). Standard library
only."""
import json
import os
import re
import signal
import subprocess
import sys
import time

from harness import BIN, scaled

SHIM = r'''#!/usr/bin/env python3
import json, os, subprocess, sys
cfg = json.load(open(os.environ["DOCRUN_CONFIG"]))
args = sys.argv[1:]
node = cfg["default_node"]
if "--node-id" in args:
    node = args[args.index("--node-id") + 1]
args = [os.path.join(cfg["root"], node) if a == cfg["data_dir"] else a for a in args]
if args and args[0] in ("restore", "recover", "--help", "--version"):
    os.execv(cfg["bin"], [cfg["bin"]] + args)
log = open(os.path.join(cfg["root"], node + ".log"), "ab")
p = subprocess.Popen([cfg["bin"]] + args, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                     start_new_session=True)
with open(cfg["pids"], "a") as f:
    f.write("%d %s\n" % (p.pid, node))
'''


def section(doc, title):
    """The text of the `## title` section."""
    with open(doc) as f:
        text = f.read()
    m = re.search(r"^## %s\n(.*?)(?=^## |\Z)" % re.escape(title), text, re.M | re.S)
    assert m, "no section %r in %s" % (title, doc)
    return m.group(1)


def blocks(doc, title):
    """The ```sh blocks of a section, in order."""
    return re.findall(r"^```sh\n(.*?)^```", section(doc, title), re.M | re.S)


class Runner:
    def __init__(self, root, subst, default_node, data_dir="/var/lib/cloudless"):
        self.root = root
        self.subst = dict(subst)
        self.work = os.path.join(root, "work")
        self.bindir = os.path.join(root, "bin")
        self.pids = os.path.join(root, "pids")
        os.makedirs(self.work, exist_ok=True)
        os.makedirs(self.bindir, exist_ok=True)
        cfg = os.path.join(root, "docrun.json")
        with open(cfg, "w") as f:
            json.dump({"root": root, "bin": os.path.abspath(BIN), "data_dir": data_dir,
                       "default_node": default_node, "pids": self.pids}, f)
        shim = os.path.join(self.bindir, "cloudless-coordinator")
        with open(shim, "w") as f:
            f.write(SHIM)
        os.chmod(shim, 0o755)
        self.env = dict(os.environ, PATH=self.bindir + os.pathsep + os.environ["PATH"],
                        DOCRUN_CONFIG=cfg)

    def data_dir(self, node):
        return os.path.join(self.root, node)

    def substitute(self, block):
        # Longest first, so 10.0.1.1:8080 is replaced before a shorter prefix of it.
        for k in sorted(self.subst, key=len, reverse=True):
            block = block.replace(k, self.subst[k])
        return block

    def run(self, block, expect_rc=0, timeout=60):
        script = self.substitute(block)
        p = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=self.work, env=self.env,
                           capture_output=True, text=True, timeout=scaled(timeout))
        if expect_rc is not None and p.returncode != expect_rc:
            raise AssertionError("block exited %d, not %d:\n%s\n--- stdout\n%s\n--- stderr\n%s"
                                 % (p.returncode, expect_rc, script, p.stdout, p.stderr))
        return p

    def started(self):
        """(pid, node id) of every server the blocks started."""
        if not os.path.exists(self.pids):
            return []
        with open(self.pids) as f:
            return [(int(pid), node) for pid, node in (ln.split() for ln in f if ln.strip())]

    def close(self):
        for pid, _ in self.started():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            # Not our child (the stand-in started it and exited): wait until it is gone.
            deadline = time.monotonic() + scaled(10)
            while time.monotonic() < deadline and os.path.exists("/proc/%d" % pid):
                time.sleep(0.01)

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        if kind is not None:
            self.logs()
        self.close()
        return False

    def logs(self):
        for _, node in self.started():
            try:
                with open(os.path.join(self.root, node + ".log"), errors="replace") as f:
                    sys.stderr.write("----- log of %s (runbook) -----\n%s\n" % (node, f.read()[-6000:]))
            except OSError:
                pass
