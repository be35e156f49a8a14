#!/usr/bin/env bash
# check.sh LAYER... - runs each test layer (a make target) and sums them.
#
# Every layer prints its own "N passed, N failed" as its last such line.
# A layer that exits non-zero without printing one counts as one failure,
# so a crash can never pass silently. Ends with a recap (layer, passed,
# failed, seconds) and the aggregate line, alone, and exits non-zero if
# anything failed.
set -u
. "$(dirname "$0")/result-line.sh"
make_cmd=${MAKE:-make}
total_passed=0
total_failed=0
recap=""
for layer in "$@"; do
    echo "=== $layer"
    started=$SECONDS
    log=$(mktemp)
    $make_cmd --no-print-directory -s "$layer" 2>&1 | tee "$log"
    count_result "$log" "${PIPESTATUS[0]}"
    rm -f "$log"
    [ -z "$result_problem" ] || echo "=== $layer: $result_problem: counted as 1 failure"
    echo "=== $layer: $result_passed passed, $result_failed failed"
    total_passed=$((total_passed + result_passed))
    total_failed=$((total_failed + result_failed))
    recap="$recap$(printf '%-20s %7d %7d %8d' "$layer" "$result_passed" "$result_failed" \
                   $((SECONDS - started)))
"
done
echo "=== recap"
printf '%-20s %7s %7s %8s\n' layer passed failed seconds
printf '%s' "$recap"
echo "$total_passed passed, $total_failed failed"
[ "$total_failed" -eq 0 ]
