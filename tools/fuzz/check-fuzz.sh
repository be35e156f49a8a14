#!/usr/bin/env bash
# check-fuzz.sh FUZZER SEEDS OUTDIR SECONDS - the check-fuzz layer.
#   fuzz.corpus_replay  every input in SEEDS runs clean (regressions: each
#                       crash ever found is minimised into SEEDS);
#   fuzz.timed          SECONDS of fuzzing from SEEDS, with a fixed seed so
#                       two runs on one machine explore alike; scratch corpus.
# Ends with "N passed, N failed".
set -u
fuzzer=$1 seeds=$2 out=$3 seconds=$4
passed=0 failed=0
work="$out/check"
rm -rf "$work"
mkdir -p "$work/corpus"

inputs=("$seeds"/*)
if "$fuzzer" -runs=1 "${inputs[@]}" >"$work/replay.log" 2>&1; then
    echo "ok   fuzz.corpus_replay (${#inputs[@]} inputs)"
    passed=$((passed + 1))
else
    echo "FAIL fuzz.corpus_replay:"
    grep -B2 -A30 'DISCREPANCY\|ERROR: \|runtime error' "$work/replay.log" | head -60
    failed=$((failed + 1))
fi

"$fuzzer" -max_len=4096 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -seed=20011 \
    -artifact_prefix="$work/" -max_total_time="$seconds" "$work/corpus" "$seeds" \
    >"$work/fuzz.log" 2>&1
status=$?
runs=$(awk '/^stat::number_of_executed_units/ {print $2}' "$work/fuzz.log")
if [ "$status" -eq 0 ]; then
    echo "ok   fuzz.timed (${runs:-0} executions in $seconds s)"
    passed=$((passed + 1))
else
    echo "FAIL fuzz.timed (exit status $status):"
    grep -B2 -A40 'DISCREPANCY\|ERROR: \|runtime error' "$work/fuzz.log" | head -80
    ls "$work"/crash-* "$work"/timeout-* "$work"/oom-* 2>/dev/null
    failed=$((failed + 1))
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
