#!/usr/bin/env python3
"""Totals meson's testlog.json of each build dir given on the command line.

A test whose output contains a line "N passed, N failed" contributes those counts (our
cluster test files run several cases each); any other test counts as one pass or one
failure by its result. Prints one line per build, then the plain total line CI reads.
Exits 1 when anything failed or nothing ran."""
import json
import re
import sys

LINE = re.compile(r"^(\d+) passed, (\d+) failed", re.M)
total_p = total_f = 0
for build in sys.argv[1:]:
    p = f = 0
    try:
        with open(build + "/meson-logs/testlog.json") as fh:
            records = [json.loads(l) for l in fh if l.strip()]
    except OSError:
        print("%s: no test log" % build, file=sys.stderr)
        f += 1
        records = []
    for r in records:
        out = r.get("stdout") or ""
        m = LINE.findall(out)
        ok = r.get("result") in ("OK", "EXPECTEDFAIL")
        if m:
            tp, tf = map(int, m[-1])
            p += tp
            f += tf
            if not ok and tf == 0:
                f += 1  # crashed or timed out after its summary
        elif r.get("result") == "SKIP":
            continue
        elif ok:
            p += 1
        else:
            f += 1
            print("FAILED: %s %s" % (build, r.get("name")), file=sys.stderr)
    print("%s: %d passed, %d failed" % (build, p, f), file=sys.stderr)
    total_p += p
    total_f += f
print("%d passed, %d failed" % (total_p, total_f))
sys.exit(1 if total_f or total_p == 0 else 0)
