#!/usr/bin/env bash
# Builds the libFuzzer targets and runs the fuzz suite (tests/fuzz/): a third build,
# build-fuzz, with clang, ASan+UBSan and every library instrumented for coverage
# (-Dfuzz=true). Each target runs for a bounded time from a copy of its seed corpus
# (tests/fuzz/corpus/<target>/); a crash, leak, sanitizer report or violated property fails it
# and leaves the input under build-fuzz/tests/fuzz/artifacts/.
#   scripts/fuzz.sh               30 s per target (what CI runs, through scripts/test.sh)
#   scripts/fuzz.sh --time 300    a longer local run
#   scripts/fuzz.sh --keep        also keep each evolved corpus in tests/fuzz/corpus-<name>/
#                                 (e.g. corpus-http; gitignored) and start from it next time
# Prints one line per target with its executions and exec/s; exits non-zero when the suite
# failed. Full libFuzzer logs: build-fuzz/tests/fuzz/logs/<target>.log.
set -uo pipefail
cd "$(dirname "$0")/.."

secs=${FUZZ_SECONDS:-30}
keep=0
while (($#)); do
  case $1 in
    --time) secs=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "fuzz.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ $secs =~ ^[0-9]+$ && $secs -gt 0 ]] || { echo "fuzz.sh: --time needs seconds" >&2; exit 2; }

opts=(-Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false)
if [[ ! -f build-fuzz/build.ninja ]]; then
  rm -rf build-fuzz
  CC=clang meson setup build-fuzz "${opts[@]}" >&2 || exit 1
else
  meson configure build-fuzz "${opts[@]}" >&2 || exit 1
fi
# No stale results: scripts/test_summary.py reads this log, and an old one must not stand in
# for a run that did not happen.
rm -f build-fuzz/meson-logs/testlog.json
rm -rf build-fuzz/tests/fuzz/logs
ninja -C build-fuzz >&2 || { echo "fuzz.sh: build-fuzz failed to build" >&2; exit 1; }

if ((keep)); then
  # run_fuzz.sh copies the evolved corpus here; seeds and earlier finds are both inputs.
  export FUZZ_KEEP_CORPUS_ROOT="$PWD/tests/fuzz"
fi
# meson's per-test timeout is 240 s for the default 30 s; scale it for longer runs.
mult=$(((secs + 90 + 239) / 240))
FUZZ_SECONDS=$secs meson test -C build-fuzz --suite fuzz --print-errorlogs --num-processes 1 \
  --timeout-multiplier "$mult" >&2
rc=$?

echo "fuzz: $secs s per target"
for log in build-fuzz/tests/fuzz/logs/*.log; do
  [[ -f $log ]] || continue
  name=$(basename "$log" .log)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  done_line=$(grep -a -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1)
  rate=$(sed -n 's/.*exec\/s: *\([0-9]*\).*/\1/p' <<<"$done_line")
  cov=$(sed -n 's/.* cov: *\([0-9]*\).*/\1/p' <<<"$done_line")
  if [[ -z $done_line ]]; then
    echo "$name: FAILED after ${execs:-?} executions (see $log)"
  else
    echo "$name: ${execs:-?} executions, ${rate:-?} exec/s, coverage ${cov:-?}"
  fi
done
exit $rc
