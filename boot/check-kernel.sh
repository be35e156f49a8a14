#!/usr/bin/env bash
# check-kernel.sh - the QEMU layer of `make check` (target check-kernel).
#
#   boot/check-kernel.sh --kernel IMAGE --breaks DIR --memory "64M 512M 4G" \
#                        --smp "2:512M 4:512M" --logs DIR
#
# Boots IMAGE once per memory size with one CPU, and once per CPUS:MEMORY
# pair of --smp, through tools/run-qemu.sh, and runs the
# runner's own tests (tools/kernel-tests/run-selftests.sh DIR, on the
# deliberately broken kernels in DIR). Boots run two guest CPUs at a time
# (TCG uses one host core per guest CPU) and print in a fixed order; the serial logs stay
# in the logs directory. Ends with ONE line "N passed, N failed" summing
# every boot's count and the runner tests; exits non-zero on any failure.
set -u
here=$(cd "$(dirname "$0")" && pwd)
runner=$here/../tools/run-qemu.sh
selftests=$here/../tools/kernel-tests/run-selftests.sh
. "$here/../tools/result-line.sh"
# A 4 GiB boot takes about 30 s under TCG on an idle core, a 4-CPU boot
# about 40 s on two; the timeout leaves room for a machine whose two cores
# are shared with other builds (a 4 GiB boot has taken over 240 s there)
# without letting a hang stall CI for long.
boot_timeout=480
# Guest CPUs the layer runs at once: the host's two cores. A boot with
# more CPUs runs alone.
guest_cpu_slots=2

kernel=
breaks=
memory="64M 512M 4G"
smp=
logs=
while [ $# -gt 0 ]; do
    case $1 in
    --kernel) kernel=$2; shift 2 ;;
    --breaks) breaks=$2; shift 2 ;;
    --memory) memory=$2; shift 2 ;;
    --smp) smp=$2; shift 2 ;;
    --logs) logs=$2; shift 2 ;;
    *) echo "usage: $0 --kernel IMAGE --breaks DIR [--memory SIZES] [--smp CPUS:SIZE...] [--logs DIR]" >&2; exit 2 ;;
    esac
done
[ -n "$kernel" ] && [ -n "$breaks" ] || { echo "$0: --kernel and --breaks are required" >&2; exit 2; }
[ -n "$logs" ] || logs=$(dirname "$kernel")/logs
mkdir -p "$logs"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Jobs, in the order their output is shown. The biggest boot starts first
# so that it overlaps everything else.
jobs=()
for mem in $memory; do
    jobs+=("boot-$mem")
done
for pair in $smp; do
    jobs+=("boot-${pair%%:*}cpus-${pair#*:}")
done
jobs+=("runner-selftests")

run_job() {
    case $1 in
    boot-*cpus-*)
        local cpus=${1#boot-} mem=${1#boot-*cpus-}
        cpus=${cpus%%cpus-*}
        "$runner" --quiet --cpus "$cpus" --memory "$mem" --timeout "$boot_timeout" \
            --log "$logs/serial-${cpus}cpus-$mem.log" "$kernel"
        ;;
    boot-*)
        local mem=${1#boot-}
        "$runner" --quiet --memory "$mem" --timeout "$boot_timeout" \
            --log "$logs/serial-$mem.log" "$kernel"
        ;;
    runner-selftests) "$selftests" "$breaks" ;;
    esac
}

# The guest CPUs a job keeps busy: a boot's CPU count; the runner's tests
# (short boots, mostly of one CPU) one.
job_cpus() {
    case $1 in
    boot-*cpus-*) local cpus=${1#boot-}; echo "${cpus%%cpus-*}" ;;
    *) echo 1 ;;
    esac
}

# At most guest_cpu_slots guest CPUs at a time (two one-CPU jobs, or one
# SMP boot alone), longest first: the SMP boots, then the last memory
# size, the largest.
order=()
for ((i = ${#jobs[@]} - 2; i >= 0; i--)); do order+=("${jobs[$i]}"); done
order+=("runner-selftests")
declare -A cpus_of_pid
busy=0
for job in "${order[@]}"; do
    need=$(job_cpus "$job")
    while [ "$busy" -gt 0 ] && [ $((busy + need)) -gt "$guest_cpu_slots" ]; do
        wait -n -p finished
        busy=$((busy - cpus_of_pid[$finished]))
    done
    (run_job "$job" >"$work/$job.out" 2>&1; echo $? >"$work/$job.status") &
    cpus_of_pid[$!]=$need
    busy=$((busy + need))
done
wait

total_passed=0
total_failed=0
for job in "${jobs[@]}"; do
    echo "=== kernel: $job"
    # The job's own count line is summed below, not repeated: tools/check.sh
    # must see only the combined line.
    grep -Ev "$RESULT_LINE_RE" "$work/$job.out"
    count_result "$work/$job.out" "$(cat "$work/$job.status")"
    [ -z "$result_problem" ] || echo "=== kernel: $job: $result_problem: counted as 1 failure"
    echo "=== kernel: $job: $result_passed passed, $result_failed failed"
    total_passed=$((total_passed + result_passed))
    total_failed=$((total_failed + result_failed))
done
echo "$total_passed passed, $total_failed failed"
[ "$total_failed" -eq 0 ]
