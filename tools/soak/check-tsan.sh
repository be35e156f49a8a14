#!/usr/bin/env bash
# check-tsan.sh SUITE SOAK - the check-tsan layer: the host suite (which has
# threaded tests in tests/host_*.c) under ThreadSanitizer, then 5 s of the
# soak program's threaded phase, also under TSan (one more test). Ends with
# the summed "N passed, N failed".
set -u
suite=$1 soak=$2
log=$(mktemp)
trap 'rm -f "$log"' EXIT
"$suite" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1)
if [ -n "$line" ]; then
    passed=${line%% passed*}
    failed=${line#*, }
    failed=${failed%% failed}
else
    passed=0 failed=1
    echo "FAIL tsan.suite: no result line (exit status $status)"
fi
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
    echo "FAIL tsan.suite: exit status $status (a TSan report?)"
    failed=1
fi
if "$soak" --seconds 5 --threads 4 --check-every 0 >"$log" 2>&1; then
    echo "ok   tsan.soak_threads ($(grep -E 'threads: .* ops/s' "$log" | sed 's/^soak: //'))"
    passed=$((passed + 1))
else
    cat "$log" | head -60
    echo "FAIL tsan.soak_threads"
    failed=$((failed + 1))
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
