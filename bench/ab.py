#!/usr/bin/env python3
"""A/B write throughput of two coordinator builds, side by side on one machine.

Starts two 3-node clusters, A (e.g. main's build) and B (the change), at the same time, and
for each repetition, operation and concurrency runs cloudless-loadgen against A then B (B then
A on odd repetitions), so that the noise of a shared machine hits both alike. Reports the
median throughput, p50 and p99 of each and the ratios B/A.

  python3 bench/ab.py --a /tmp/base/build-rel/cloudless-coordinator \\
                      --b build-rel/cloudless-coordinator --reps 5

With --b-tls, cluster B serves TLS (a CA and node certificates made with openssl, as in
tests/cluster/test_tls.py) and the load goes over https: --a and --b the same binary measure
what TLS costs. With --b-auth, cluster B runs with an --auth-file (test_auth.py's tokens) and
the load carries a write token: what checking tokens costs.

Standard library only; prints one JSON line per measurement and a markdown table.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "cluster"))
import certs  # noqa: E402
import harness  # noqa: E402
import test_auth  # noqa: E402
from test_auth import TOKENS, write_auth_file  # noqa: E402


class Side:
    def __init__(self, name, binary, tls=False, auth=False):
        self.name, self.binary = name, binary
        self.cluster = harness.Cluster("ab-" + name)
        self.pki = certs.Pki(self.cluster.dir) if tls else None
        self.token = None
        if auth:
            test_auth.BIN = binary  # its hash-token
            path = os.path.join(self.cluster.dir, "auth")
            write_auth_file(path, TOKENS)
            self.cluster.token = "admin.admin-" + test_auth.SECRET
            self.cluster.extra_args = ["--auth-file", path, "--join-token", self.cluster.token]
            self.token = "write.write-" + test_auth.SECRET

    def start(self):
        harness.BIN = self.binary
        if self.pki is not None:
            self.cluster.ssl_context = self.pki.context()
        self.cluster.start(3, extra_for=self.pki.node_args if self.pki is not None else None)
        # Nodes keep their own command line: later restarts would use this binary too.
        return self

    def target(self, where):
        ld = self.cluster.leader()
        if where == "leader":
            return ld
        return sorted((n for n in self.cluster.running() if n is not ld),
                      key=lambda n: n.node_id)[0]


    def url(self, node):
        return ("https://" if self.pki is not None else "http://") + node.http_addr


def loadgen(a, side, url, c, prefix):
    args = [a.loadgen, "--api", "cloudless", "--op", "put", "--url", url, "--concurrency", str(c),
            "--duration", str(a.duration), "--warmup", str(a.warmup), "--prefix", prefix, "--quiet"]
    if side.pki is not None:
        args += ["--cacert", side.pki.ca.cert]
    if side.token is not None:
        args += ["--token", side.token]
    r = subprocess.run(args, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError("loadgen failed: %s" % r.stderr.strip())
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--a", required=True, help="coordinator binary A (the reference)")
    p.add_argument("--b", required=True, help="coordinator binary B")
    p.add_argument("--loadgen", default=os.path.join(ROOT, "build-rel", "bench", "cloudless-loadgen"))
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--duration", type=float, default=3.0)
    p.add_argument("--warmup", type=float, default=0.5)
    p.add_argument("--concurrency", default="1,16,64,256")
    p.add_argument("--ops", default="put-leader,put-follower")
    p.add_argument("--b-tls", action="store_true", help="cluster B serves TLS; B's load is https")
    p.add_argument("--b-auth", action="store_true",
                   help="cluster B has an --auth-file; B's load carries a write token")
    a = p.parse_args()
    sides = [Side("A", a.a).start(), Side("B", a.b, tls=a.b_tls, auth=a.b_auth).start()]
    res, seq = {}, 0
    try:
        for rep in range(a.reps):
            for op in a.ops.split(","):
                where = op.split("-", 1)[1]
                for c in [int(x) for x in a.concurrency.split(",")]:
                    order = sides if rep % 2 == 0 else sides[::-1]
                    for s in order:
                        seq += 1
                        node = s.target(where)
                        r = loadgen(a, s, s.url(node), c, "ab%d" % seq)
                        r.update(side=s.name, op=op, c=c, rep=rep)
                        print(json.dumps(r), flush=True)
                        res.setdefault((op, c, s.name), []).append(r)
    finally:
        for s in sides:
            s.cluster.close()
    med = lambda xs: statistics.median(xs) if xs else float("nan")  # noqa: E731
    print("\n| operation | conc. | A req/s | B req/s | B/A | A p50 | B p50 | A p99 | B p99 | "
          "B/A p99 | errors A/B |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for op in a.ops.split(","):
        for c in [int(x) for x in a.concurrency.split(",")]:
            ra, rb = res.get((op, c, "A"), []), res.get((op, c, "B"), [])
            ta, tb = med([x["throughput"] for x in ra]), med([x["throughput"] for x in rb])
            pa, pb = med([x["p50_ms"] for x in ra]), med([x["p50_ms"] for x in rb])
            qa, qb = med([x["p99_ms"] for x in ra]), med([x["p99_ms"] for x in rb])
            ea, eb = sum(x["errors"] for x in ra), sum(x["errors"] for x in rb)
            print("| %s | %d | %.0f | %.0f | %.2fx | %.2f ms | %.2f ms | %.2f ms | %.2f ms | "
                  "%.2fx | %d / %d |" % (op, c, ta, tb, tb / ta, pa, pb, qa, qb, qb / qa, ea, eb))


if __name__ == "__main__":
    main()
