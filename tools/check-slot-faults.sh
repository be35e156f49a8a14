#!/usr/bin/env bash
# check-slot-faults.sh ASAN_SUITE TSAN_SUITE TSAN_SOAK FILTER... - the
# check-slot-faults layer: the host suite built with quantum-cache slots
# refusing regularly, whole under ASan + UBSan; then, under TSan, the tests
# whose names contain one of the FILTERs (the threaded ones: TSan is what
# they are there for) and 5 s of the soak's threaded phase (one more test).
# VTEST_SCALE / VTEST_RANDOM_OPS come from the caller. Ends with the summed
# "N passed, N failed".
set -u
. "$(dirname "$0")/result-line.sh"
asan=$1 tsan=$2 soak=$3
shift 3
log=$(mktemp)
trap 'rm -f "$log"' EXIT
passed=0 failed=0

# run LABEL COMMAND...: adds the run's result line to the totals
# (tools/result-line.sh says how a missing line or a bad exit counts).
run() {
    local label=$1
    shift
    "$@" 2>&1 | tee "$log"
    count_result "$log" "${PIPESTATUS[0]}"
    [ -z "$result_problem" ] || echo "FAIL $label: $result_problem"
    passed=$((passed + result_passed))
    failed=$((failed + result_failed))
}

ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:strict_string_checks=1 \
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    run slot-faults.asan "$asan"
for filter in "$@"; do
    TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
        run "slot-faults.tsan.$filter" "$tsan" "$filter"
done
if TSAN_OPTIONS=halt_on_error=1 "$soak" --seconds 5 --threads 4 --check-every 0 >"$log" 2>&1
then
    echo "ok   slot-faults.tsan.soak_threads ($(grep -E 'threads: .* ops/s' "$log" | sed 's/^soak: //'))"
    passed=$((passed + 1))
else
    head -60 "$log"
    echo "FAIL slot-faults.tsan.soak_threads"
    failed=$((failed + 1))
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
