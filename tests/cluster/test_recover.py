"""Recovery from the permanent loss of quorum (issue 13): three nodes take writes, two are
SIGKILLed mid-stream and their data dirs deleted; `cloudless-coordinator recover` is refused
while the survivor runs, then rewrites its membership; started normally it leads alone with
every acknowledged write, new nodes join and every member converges to one digest. A lost
member brought back with its old data dir marks itself removed without disturbing the
recovered cluster. And the page's "Recovering from the loss of quorum" procedure, run as
written (test_runbooks.procedure)."""
import os
import shutil
import subprocess
import threading

from harness import BIN, run, scaled, wait_for
from test_runbooks import procedure



def recover(data_dir):
    return subprocess.run([BIN, "recover", "--data-dir", data_dir], capture_output=True,
                          text=True, timeout=scaled(30))


def voters(node):
    s = node.status()
    return sorted(x["node_id"] for x in s["servers"] if x["role"] == "voter") if s else None


class Writer:
    """Writes k/0, k/1, ... to one node until stopped; remembers what was acknowledged."""

    def __init__(self, node):
        self.node = node
        self.acked = {}
        self.attempts = 0
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while not self._stop.is_set():
            key = "k/%05d" % self.attempts
            self.attempts += 1
            r = self.node.req("PUT", "/v1/kv/" + key + "?timeout=500ms", "v" + key, timeout=2)
            if r is not None and r.status == 200:
                self.acked[key] = ("v" + key).encode()
            else:
                self.failures += 1

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=scaled(10))


def test_recover_after_quorum_loss(make):
    c = make().start(3)
    ld = c.leader()
    lost = c.followers()
    w = Writer(ld).start()
    wait_for("writes acknowledged", lambda: len(w.acked) >= 200, 30)
    for n in lost:
        n.kill()
    wait_for("writes to stop being acknowledged", lambda: w.failures >= 3, 20)
    w.stop()
    assert len(w.acked) >= 200 and w.attempts > len(w.acked), (len(w.acked), w.attempts)
    # One lost member's data dir is kept aside, to bring it back as it was later; then both
    # are gone for good.
    zombie_dir = os.path.join(c.dir, "zombie-data")
    shutil.copytree(lost[0].data_dir, zombie_dir)
    for n in lost:
        n.wipe()

    p = recover(ld.data_dir)
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert "process %d has %s open" % (ld.proc.pid, ld.data_dir) in p.stderr, p.stderr
    assert "nothing was changed" in p.stderr and p.stdout == "", p.stderr
    assert ld.stop() == 0
    p = recover(ld.data_dir)
    assert p.returncode == 0, (p.stdout, p.stderr)
    out = p.stdout
    assert "old configuration:  3 servers, 3 voters" in out, out
    for n in c.nodes.values():
        assert n.node_id in out, (n.node_id, out)
    assert "new configuration:  1 server, 1 voter" in out, out
    kept = int(out.split("last index kept:")[1].split()[0])
    # Again: it is already the only voter.
    p = recover(ld.data_dir)
    assert p.returncode == 0 and "nothing to do" in p.stdout, p.stdout

    ld.restart()
    wait_for("the survivor to lead alone", lambda: c.leader_of([ld]) is ld, 20)
    wait_for("the lost members' records dropped",
             lambda: ld.status()["member_records"] == [ld.node_id])
    s = ld.status()
    assert voters(ld) == [ld.node_id] and s["last_log_index"] > kept, s
    for key, value in w.acked.items():
        r = ld.get(key)
        assert r is not None and r.status == 200 and r.body == value, (key, r)
    assert "Dropping the record of a node outside the configuration" in ld.log()

    new = [c.node("coordinator-4").start(join=[ld]), c.node("coordinator-5").start(join=[ld])]
    members = sorted([ld.node_id] + [n.node_id for n in new])
    wait_for("three voters", lambda: all(voters(n) == members for n in [ld] + new), 30)
    st = c.wait_converged([ld] + new)
    assert all(sorted(x["member_records"]) == members for x in st), st
    r = new[0].put("after", "recovery")
    assert r is not None and r.status == 200, r
    for key in list(w.acked)[::37]:
        r = new[1].get(key)
        assert r is not None and r.status == 200 and r.body == w.acked[key], (key, r)

    # The lost member comes back with its old data dir: alone it cannot disturb the recovered
    # cluster; it finds itself out of the configuration and stops serving.
    term = ld.status()["term"]
    zombie = lost[0]
    zombie.data_dir = zombie_dir
    zombie.start()
    wait_for("the old member to find itself removed", lambda: (lambda r: r is not None and (
        r.status == 503 and r.json()["type"].endswith("/removed")))(
            zombie.req("GET", "/raft/health")), 30)
    assert c.leader_of([ld] + new) is ld and ld.status()["term"] == term
    assert voters(ld) == members
    r = new[1].put("after-zombie", "1")
    assert r is not None and r.status == 200, r


def lose_coordinators_2_and_3(h):
    """Every write acknowledged before is on coordinator-1 (converged), then the other two
    and their data dirs are gone."""
    wait_for("equal state digests", lambda: h.converged((1, 2, 3)))
    for host in ("coordinator-2", "coordinator-3"):
        h.kill(host)
        shutil.rmtree(h.datadir(host))
    wait_for("coordinator-1 to lose its leader",
             lambda: (h.status(1) or {}).get("leader", 0) is None, 20)


def check_recovered(h):
    members = ["coordinator-1", "coordinator-2", "coordinator-3"]
    for n in (1, 2, 3):
        assert h.voters(n) == members, (n, h.voters(n))
        assert sorted(h.status(n)["member_records"]) == members, h.status(n)
        for i in (1, 2, 3):
            assert h.get(n, "before-%d" % i) == "v%d" % i, (n, i)
    wait_for("a write after the recovery", lambda: h.put(2, "after", "1"))
    wait_for("equal state digests", lambda: h.converged((1, 2, 3)))


test_runbook_recover = procedure("Recovering from the loss of quorum",
                                 prepare=lose_coordinators_2_and_3, check=check_recovered)


if __name__ == "__main__":
    run([test_recover_after_quorum_loss, test_runbook_recover])
