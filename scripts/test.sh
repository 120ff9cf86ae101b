#!/usr/bin/env bash
# Installs dependencies, builds Cloudless twice (optimised, and with ASan+UBSan) and runs every
# test suite in both builds, then a third build, build-fuzz (clang, libFuzzer), that runs only
# the fuzz suite for a bounded time (scripts/fuzz.sh). The last line is the total over all
# suites and all three builds:
#   N passed, N failed
# A test file that runs several cases reports them itself ("N passed, N failed" on its own
# line); its cases are counted individually, every other test counts as one.
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --test >&2 || { echo "0 passed, 1 failed"; exit 1; }
if [[ -f package-lock.json ]]; then
  npm ci --no-audit --no-fund --loglevel=error >&2 || { echo "0 passed, 1 failed"; exit 1; }
fi

status=0
builds=(build-test build-asan)
[[ -d build-test ]] || meson setup build-test --buildtype=debugoptimized >&2
[[ -d build-asan ]] || meson setup build-asan -Db_sanitize=address,undefined -Db_lundef=false \
  --buildtype=debug >&2
for b in "${builds[@]}"; do
  if ! ninja -C "$b" >&2; then
    echo "build $b failed" >&2
    status=1
    continue
  fi
  # Sanitizers: abort on the first UBSan report, fail a process that leaks, and print a stack
  # for an abort() too (an assertion in a library, or ours).
  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1:handle_abort=1 \
    meson test -C "$b" --print-errorlogs --num-processes 1 >&2 || status=1
done
# The fuzz targets, 30 s each; fuzz.sh sets up build-fuzz and runs `meson test --suite fuzz`
# there (nothing else). Its per-target executions go to the log, not to our last line.
scripts/fuzz.sh >&2 || status=1
python3 scripts/test_summary.py "${builds[@]}" build-fuzz
rc=$?
[[ $status -ne 0 || $rc -ne 0 ]] && exit 1
exit 0
