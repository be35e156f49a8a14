#!/usr/bin/env bash
# check.sh LAYER... - runs each test layer (a make target) and sums them.
#
# Every layer prints its own "N passed, N failed" as its last such line.
# A layer that exits non-zero without printing one counts as one failure,
# so a crash can never pass silently. Ends with the aggregate line, alone,
# and exits non-zero if anything failed.
set -u
make_cmd=${MAKE:-make}
total_passed=0
total_failed=0
for layer in "$@"; do
    echo "=== $layer"
    log=$(mktemp)
    $make_cmd --no-print-directory -s "$layer" 2>&1 | tee "$log"
    status=${PIPESTATUS[0]}
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1)
    rm -f "$log"
    if [ -z "$line" ]; then
        echo "=== $layer: no result line (exit status $status): counted as 1 failure"
        total_failed=$((total_failed + 1))
        continue
    fi
    passed=${line%% passed*}
    failed=${line#*, }
    failed=${failed%% failed}
    if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
        echo "=== $layer: exit status $status with no failed test: counted as 1 failure"
        failed=1
    fi
    echo "=== $layer: $passed passed, $failed failed"
    total_passed=$((total_passed + passed))
    total_failed=$((total_failed + failed))
done
echo "$total_passed passed, $total_failed failed"
[ "$total_failed" -eq 0 ]
