#!/usr/bin/env bash
# check-slot-faults.sh ASAN_SUITE TSAN_SUITE TSAN_SOAK FILTER... - the
# check-slot-faults layer: the host suite built with quantum-cache slots
# refusing regularly, whole under ASan + UBSan; then, under TSan, the tests
# whose names contain one of the FILTERs (the threaded ones: TSan is what
# they are there for) and 5 s of the soak's threaded phase (one more test).
# VTEST_SCALE / VTEST_RANDOM_OPS come from the caller. Ends with the summed
# "N passed, N failed".
set -u
asan=$1 tsan=$2 soak=$3
shift 3
log=$(mktemp)
trap 'rm -f "$log"' EXIT
passed=0 failed=0

# run LABEL COMMAND...: adds the run's result line to the totals; a run that
# prints none, or exits non-zero with no failed test (a sanitizer report),
# counts as one failure.
run() {
    local label=$1
    shift
    "$@" 2>&1 | tee "$log"
    local status=${PIPESTATUS[0]}
    local line p f
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1)
    if [ -z "$line" ]; then
        echo "FAIL $label: no result line (exit status $status)"
        failed=$((failed + 1))
        return
    fi
    p=${line%% passed*}
    f=${line#*, }
    f=${f%% failed}
    if [ "$status" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "FAIL $label: exit status $status (a sanitizer report?)"
        f=1
    fi
    passed=$((passed + p))
    failed=$((failed + f))
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
