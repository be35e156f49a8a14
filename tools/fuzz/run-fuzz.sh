#!/usr/bin/env bash
# run-fuzz.sh FUZZER SEEDS OUTDIR SECONDS - `make fuzz`: fuzzes for SECONDS
# with the sanitizers on. New inputs accumulate in OUTDIR/corpus (the seeds
# in SEEDS are read, never written); a crash lands in OUTDIR/crash-*.
# Prints the number of executions; exits non-zero if anything was found.
set -u
fuzzer=$1 seeds=$2 out=$3 seconds=$4
mkdir -p "$out/corpus"
log="$out/fuzz.log"
echo "fuzz: $seconds s, corpus $out/corpus + $seeds, log $log"
"$fuzzer" -max_len=4096 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$out/" -max_total_time="$seconds" "$out/corpus" "$seeds" >"$log" 2>&1
status=$?
grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)|^Done' "$log"
runs=$(awk '/^stat::number_of_executed_units/ {print $2}' "$log")
rate=$(awk '/^stat::average_exec_per_sec/ {print $2}' "$log")
echo "fuzz: ${runs:-0} executions (${rate:-0}/s), $(ls "$out/corpus" | wc -l) corpus inputs"
if [ "$status" -ne 0 ]; then
    grep -A40 'DISCREPANCY\|ERROR: \(Address\|libFuzzer\|Undefined\)\|runtime error' "$log" | head -60
    ls "$out"/crash-* "$out"/timeout-* "$out"/oom-* 2>/dev/null
    echo "fuzz: FAILED (exit status $status); minimise with:"
    echo "  $fuzzer -minimize_crash=1 -runs=200000 -exact_artifact_path=$out/min <crash file>"
fi
exit "$status"
