"""Backup and restore (issue 13): GET /v1/snapshot from a 3-node cluster holding KV and domain
data, `cloudless-coordinator restore` into a new data dir, that node started normally and two
fresh nodes joined to it: every member reports the backup's data digest and writes work. A
table of bad files (flipped byte, truncated, empty, wrong magic, a directory, a missing file)
and a non-empty target are refused with a clear error and write nothing. And the page's
"Backup and restore" procedure, run as written (test_runbooks.procedure)."""
import os
import subprocess

from harness import BIN, free_port, run, scaled, wait_for
from test_runbooks import procedure

# Liveness is leader memory: an agent that stops beating is marked offline by whichever
# leader times it out, which is a change of data. What is checked here is that the restored
# state is the backed-up one, so the agents' deadline is out of the way.
EXTRA = ["--agent-timeout-ms", "600000"]


def restore(snap, data_dir, node_id, raft_addr):
    return subprocess.run([BIN, "restore", "--from", snap, "--data-dir", data_dir, "--node-id",
                           node_id, "--raft-addr", raft_addr],
                          capture_output=True, text=True, timeout=scaled(30))


def snapshot(node, query=""):
    r = node.req("GET", "/v1/snapshot" + query, timeout=scaled(20))
    assert r is not None and r.status == 200, r
    assert r.header("Content-Type") == "application/octet-stream", r.headers
    assert r.body[:8] == b"CLSNAP02", r.body[:16]
    return r


def voters(node):
    s = node.status()
    return sorted(x["node_id"] for x in s["servers"] if x["role"] == "voter") if s else None


def write_domain(ld):
    """Two agents, a workload whose two replicas they report running."""
    for i, zone in ((1, "a"), (2, "b")):
        r = ld.req("POST", "/v1/agents", {"id": "agent-%d" % i, "zone": zone, "capacity": {
            "cpu_millicores": 2000, "memory_bytes": 1 << 30}})
        assert r is not None and r.status in (200, 201), r
    spec = {"namespace": "default", "name": "web", "command": ["sleep", "1000"], "replicas": 2,
            "resources": {"cpu_millicores": 100, "memory_bytes": 1 << 20}}
    r = ld.req("POST", "/v1/workloads", spec)
    assert r is not None and r.status == 201, r
    running = {}

    def beat_all():
        for i in (1, 2):
            aid = "agent-%d" % i
            reports = [{"id": rid, "epoch": ep, "state": "running", "exit_code": None,
                        "restarts": 0} for rid, ep in sorted(running.get(aid, {}).items())]
            r = ld.req("POST", "/v1/agents/%s/heartbeat" % aid, {"replicas": reports})
            assert r is not None and r.status == 200, r
            running[aid] = {a["id"]: a["epoch"] for a in r.json()["assignments"]
                            if a["desired"] == "run"}
        w = ld.req("GET", "/v1/workloads/default/web").json()
        return w["status"]["running"] == 2
    wait_for("two replicas reported running", beat_all)


def test_backup_restore_into_a_new_cluster(make):
    c = make(extra_args=EXTRA).start(3)
    ld = c.leader()
    for i in range(200):
        r = ld.put("k/%03d" % i, "value-%d" % i)
        assert r is not None and r.status == 200, r
    r = ld.put("idem", "first", headers={"Idempotency-Key": "backup-key-1"})
    assert r is not None and r.status == 200, r
    write_domain(ld)
    f = c.followers()[0]
    # Linearizable through a follower: forwarded to the leader, served after a barrier.
    r = snapshot(f)
    assert r.header("X-Cloudless-Served-By") == ld.node_id, r.headers
    index = int(r.header("X-Cloudless-Index"))
    state, data = r.header("X-Cloudless-State-Digest"), r.header("X-Cloudless-Data-Digest")
    # The headers are the digests /raft/status reports at that index (nothing was written
    # since: barriers do not reach the store).
    st = c.wait_converged()
    assert {(s["fsm_index"], s["state_digest"], s["data_digest"]) for s in st} == {
        (index, state, data)}, (st, index, state, data)
    # ?stale on a follower: its own store, same content here, with its last contact.
    rs = snapshot(f, "?stale")
    assert rs.header("X-Cloudless-Served-By") == f.node_id, rs.headers
    assert rs.header("X-Cloudless-Last-Contact") is not None, rs.headers
    assert rs.header("X-Cloudless-Data-Digest") == data and rs.body == r.body
    old_cluster = ld.status()["cluster_id"]
    snap = os.path.join(c.dir, "backup.snap")
    with open(snap, "wb") as fh:
        fh.write(r.body)

    # Restore into a new data dir; the old cluster keeps running beside the new one.
    r1 = c.node("restored-1")
    p = restore(snap, r1.data_dir, r1.node_id, r1.raft_addr)
    assert p.returncode == 0, (p.stdout, p.stderr)
    assert "Restored snapshot index %d" % index in p.stdout, p.stdout
    assert "state %s" % state in p.stdout and "data %s" % data in p.stdout, p.stdout
    r1.start()  # no --bootstrap, no --join
    wait_for("the restored node to lead alone", lambda: c.leader_of([r1]) is r1)
    s = r1.status(digest=True)
    assert s["data_digest"] == data and s["fsm_index"] >= index, s
    assert s["cluster_id"] != old_cluster and len(s["cluster_id"]) == 32, s
    joiners = [c.node("restored-2").start(join=[r1]), c.node("restored-3").start(join=[r1])]
    new = [r1] + joiners
    wait_for("three voters in the restored cluster",
             lambda: all(voters(n) == sorted(x.node_id for x in new) for n in new), 30)
    st = c.wait_converged(new)
    assert {x["data_digest"] for x in st} == {data}, st
    assert all(sorted(x["member_records"]) == sorted(n.node_id for n in new) for x in st), st
    assert {x["cluster_id"] for x in st} == {s["cluster_id"]}, st
    # The data is there, through a joiner too, and new writes go after the backup's index.
    for n in new:
        g = n.get("k/123")
        assert g is not None and g.status == 200 and g.body == b"value-123", g
        w = n.req("GET", "/v1/workloads/default/web")
        assert w is not None and w.status == 200 and w.json()["status"]["running"] == 2, w
    r = joiners[0].put("after", "restore")
    assert r is not None and r.status == 200 and r.json()["index"] > index, r
    # An idempotency record came along: the same key and request replays the first answer.
    r = joiners[1].put("idem", "first", headers={"Idempotency-Key": "backup-key-1"})
    assert r is not None and r.status == 200, r
    assert r.header("X-Cloudless-Idempotent-Replay") == "true", r.headers
    # The old cluster is another cluster: none of its members joins the new one.
    r = r1.req("POST", "/raft/join", {"node_id": f.node_id, "raft_addr": f.raft_addr,
                                      "http_addr": f.http_addr,
                                      "cluster_id": old_cluster}, timeout=scaled(10))
    assert r is not None and r.status == 409 and r.json()["type"].endswith("/other-cluster"), r
    # The restored data dir is an ordinary one: restarted, its node carries on.
    assert r1.stop() == 0
    r1.restart()
    wait_for("a leader after the restart", lambda: c.leader_of(new) is not None, 20)
    st = c.wait_converged(new)
    assert {x["data_digest"] for x in st} != {data}  # the write after the restore
    g = r1.get("after")
    assert g is not None and g.status == 200 and g.body == b"restore", g


def flipped(data):
    b = bytearray(data)
    b[len(b) // 2] ^= 0x40
    return bytes(b)


def test_bad_files_and_targets_write_nothing(make):
    c = make(extra_args=EXTRA)
    one = c.node("coordinator-1").start(bootstrap=True)
    c.leader()
    for i in range(20):
        assert one.put("k%d" % i, "v%d" % i).status == 200
    good = snapshot(one).body
    files = os.path.join(c.dir, "files")
    os.makedirs(os.path.join(files, "a-directory"))
    bad = {  # name -> (content or None, what the error says)
        "flipped.snap": (flipped(good), "checksum mismatch"),
        "truncated.snap": (good[:len(good) - 9], "checksum mismatch"),
        "short.snap": (good[:20], "too short"),
        "empty.snap": (b"", "is empty"),
        "magic.snap": (b"NOTASNAP" + good[8:], "not a Cloudless snapshot image"),
        "a-directory": (None, "not a regular file"),
        "missing.snap": (None, "No such file or directory"),
    }
    for name, (content, _) in bad.items():
        if content is not None:
            with open(os.path.join(files, name), "wb") as fh:
                fh.write(content)
    port = free_port()
    for name, (_, says) in bad.items():
        target = os.path.join(c.dir, "restored", "dir-" + name)
        p = restore(os.path.join(files, name), target, "r1", "127.0.0.1:%d" % port)
        assert p.returncode == 1, (name, p.returncode, p.stdout, p.stderr)
        assert says in p.stderr and "nothing was written" in p.stderr, (name, p.stderr)
        assert p.stdout == "", (name, p.stdout)
        assert not os.path.exists(target), name
        # Nothing left beside it either (the temporary directory is removed).
        parent = os.path.dirname(target)
        assert not os.path.isdir(parent) or os.listdir(parent) == [], (name, os.listdir(parent))
    # A target that exists and is not empty is refused, and left as it was.
    good_file = os.path.join(files, "good.snap")
    with open(good_file, "wb") as fh:
        fh.write(good)
    busy = os.path.join(c.dir, "busy")
    os.makedirs(busy)
    with open(os.path.join(busy, "something"), "w") as fh:
        fh.write("keep me")
    p = restore(good_file, busy, "r1", "127.0.0.1:%d" % port)
    assert p.returncode == 1 and "is not empty" in p.stderr, p.stderr
    assert os.listdir(busy) == ["something"]
    # So is a node's own running data dir.
    p = restore(good_file, one.data_dir, "r1", "127.0.0.1:%d" % port)
    assert p.returncode == 1 and "is not empty" in p.stderr, p.stderr
    # Usage errors: exit status 2, naming the flag.
    for args, says in ((["--from", good_file, "--node-id", "r1", "--raft-addr", "127.0.0.1:1"],
                        "--data-dir is required"),
                       (["--from", good_file, "--data-dir", busy + "-x", "--node-id", "r 1",
                         "--raft-addr", "127.0.0.1:1"], "invalid node id"),
                       (["--from", good_file, "--data-dir", busy + "-x", "--node-id", "r1",
                         "--raft-addr", "0.0.0.0:1"], "0.0.0.0 cannot be used")):
        p = subprocess.run([BIN, "restore"] + args, capture_output=True, text=True,
                           env={k: v for k, v in os.environ.items()
                                if not k.startswith("CLOUDLESS_")})
        assert p.returncode == 2 and says in p.stderr, (args, p.returncode, p.stderr)
    assert not os.path.exists(busy + "-x")
    # An empty directory is a fine target.
    empty = os.path.join(c.dir, "empty-target")
    os.makedirs(empty)
    p = restore(good_file, empty, "r1", "127.0.0.1:%d" % port)
    assert p.returncode == 0, p.stderr
    assert sorted(os.listdir(empty)) == ["db", "identity.json", "raft"], os.listdir(empty)


def check_restored(h):
    """The page's "Backup and restore": coordinator-4..6 are a new cluster holding the old one's
    data, beside it."""
    new = ["coordinator-4", "coordinator-5", "coordinator-6"]
    for n in (4, 5, 6):
        assert h.voters(n) == new, (n, h.voters(n))
        assert sorted(h.status(n)["member_records"]) == new, h.status(n)
        for i in (1, 2, 3):
            assert h.get(n, "before-%d" % i) == "v%d" % i, (n, i)
    assert h.status(4)["cluster_id"] != h.status(1)["cluster_id"]
    assert all(n in h.last_output for n in new), h.last_output
    wait_for("a write in the restored cluster", lambda: h.put(5, "after", "1"))
    assert h.voters(1) == ["coordinator-1", "coordinator-2", "coordinator-3"]
    wait_for("a write in the old cluster", lambda: h.put(1, "after-old", "1"))


test_runbook_backup_and_restore = procedure("Backup and restore", check=check_restored)


if __name__ == "__main__":
    run([test_backup_restore_into_a_new_cluster, test_bad_files_and_targets_write_nothing,
         test_runbook_backup_and_restore])
