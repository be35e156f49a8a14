# tools/result-line.sh - sourced by the scripts that sum test layers
# (tools/check.sh, boot/check-kernel.sh): how one run's outcome becomes
# counts, so that every layer judges a crash the same way.
#
# count_result FILE STATUS reads the last "N passed, N failed" line of FILE
# (the output of a run that exited with STATUS) and sets result_passed and
# result_failed. A run with no such line counts as one failure, and so does
# a non-zero STATUS with no failed test (a sanitizer report, a crash after
# the line); result_problem then says which, and is empty otherwise.

readonly RESULT_LINE_RE='^[0-9]+ passed, [0-9]+ failed$'

count_result() {
    local file=$1 status=$2 line
    result_problem=
    line=$(grep -E "$RESULT_LINE_RE" "$file" | tail -n 1)
    if [ -z "$line" ]; then
        result_passed=0
        result_failed=1
        result_problem="no result line (exit status $status)"
        return
    fi
    result_passed=${line%% passed*}
    result_failed=${line#*, }
    result_failed=${result_failed%% failed}
    if [ "$status" -ne 0 ] && [ "$result_failed" -eq 0 ]; then
        result_failed=1
        result_problem="exit status $status with no failed test"
    fi
}
