#!/usr/bin/env bash
# Runs one libFuzzer target for a bounded time from a private copy of its seed corpus.
#   run_fuzz.sh FUZZER SEED_DIR OUT_DIR [extra libFuzzer flags]
# FUZZ_SECONDS (default 30) is the run time. The evolved corpus lives in a temporary directory
# that is removed afterwards; with FUZZ_KEEP_CORPUS_ROOT=DIR (scripts/fuzz.sh --keep) it is
# also read from and saved to DIR/corpus-<target>/. Crash, leak and timeout inputs go to
# OUT_DIR/artifacts/, the full log to OUT_DIR/logs/<target>.log. The exit status is 0 when
# nothing was found and 1 otherwise (libFuzzer reports a finding with 77, which meson would
# count as a skipped test, not a failed one). The last line summarises the run:
#   fuzz_command: 123456 executions in 30 s (4115 exec/s), corpus 12 -> 345
set -uo pipefail
fuzzer=$1 seeds=$2 out=$3
shift 3
name=$(basename "$fuzzer")
secs=${FUZZ_SECONDS:-30}
work=$(mktemp -d "${TMPDIR:-/tmp}/cloudless-$name.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/corpus" "$out/artifacts" "$out/logs"
cp -- "$seeds"/* "$work/corpus/"
keep=""
if [[ -n "${FUZZ_KEEP_CORPUS_ROOT:-}" ]]; then
  keep="$FUZZ_KEEP_CORPUS_ROOT/corpus-${name#fuzz_}"
  mkdir -p "$keep" && cp -- "$keep"/* "$work/corpus/" 2>/dev/null
fi
nseeds=$(ls "$work/corpus" | wc -l)
log="$out/logs/$name.log"

# A UBSan report is a finding, not a warning; ASan leak checking stays on.
export UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}halt_on_error=1:print_stacktrace=1"
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=1"
"$fuzzer" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -max_len=8192 \
  -print_final_stats=1 -artifact_prefix="$out/artifacts/$name-" "$@" \
  "$work/corpus" >"$log" 2>&1
rc=$?
# Enough of the log for meson's test log (the whole thing is in $log).
tail -n 40 "$log"
if [[ -n "$keep" ]]; then
  cp -- "$work/corpus"/* "$keep/" 2>/dev/null
fi
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
rate=$(sed -n 's/^#[0-9]*[[:space:]]*DONE .*exec\/s: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)
[[ -n "$rate" ]] || rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
echo "$name: ${execs:-?} executions in $secs s (${rate:-?} exec/s), corpus $nseeds -> $(ls "$work/corpus" | wc -l)"
if [[ $rc -ne 0 ]]; then
  echo "$name: libFuzzer exited $rc; reproduce with: $fuzzer $(ls -t "$out/artifacts/$name-"* 2>/dev/null | head -n 1)"
  exit 1
fi
exit 0
