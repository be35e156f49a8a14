#!/usr/bin/env bash
# run-qemu.sh - boot the libvmem test kernel under QEMU and judge the run.
#
#   tools/run-qemu.sh [--memory SIZE] [--cpus N] [--timeout SECONDS] [--log FILE] [--quiet|--summary] KERNEL
#
# Boots KERNEL (a Multiboot 1 ELF32) with qemu-system-x86_64 under TCG (never
# KVM), with N CPUs (default 1; with more, multi-threaded TCG: one host
# thread per guest CPU), COM1 written to a log file and QEMU's isa-debug-exit device at port
# 0xf4. Shows the serial log as it grows (with --quiet: only on failure, the
# last lines; with --summary: passing tests counted per suite and dumps cut
# to their heading, tools/log-summary.awk), then one verdict line:
#   run-qemu: PASS: ...                      or
#   run-qemu: FAIL: <one-line reason>
# and, last, "N passed, N failed" for tools/check.sh to sum. Exits 0 on PASS.
#
# A run passes only when BOTH hold: QEMU exited with the kernel's success
# status (33) AND the log has a result line "N passed, 0 failed". Anything
# else fails with a reason: a kernel fault or panic, failed self-tests, a
# hang (the timeout), a reset or triple fault (QEMU exits 0 under
# -no-reboot), a missing result line, or QEMU missing or failing to start.
#
# Environment: QEMU names the emulator (default qemu-system-x86_64).
set -u

# QEMU exits with (value << 1) | 1 for a value written to isa-debug-exit;
# lib/qemu_exit.h writes 0x10 on success and 0x11 on failure.
readonly STATUS_SUCCESS=33
readonly STATUS_FAILURE=35
readonly RESULT_RE='^[0-9]+ passed, [0-9]+ failed$'

memory=512M
cpus=1
timeout_s=300
log=
quiet=0
summary=0
qemu=${QEMU:-qemu-system-x86_64}

usage() {
    echo "usage: $0 [--memory SIZE] [--cpus N] [--timeout SECONDS] [--log FILE] [--quiet|--summary] KERNEL" >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case $1 in
    -m | --memory) [ $# -ge 2 ] || usage; memory=$2; shift 2 ;;
    -c | --cpus) [ $# -ge 2 ] || usage; cpus=$2; shift 2 ;;
    -t | --timeout) [ $# -ge 2 ] || usage; timeout_s=$2; shift 2 ;;
    -l | --log) [ $# -ge 2 ] || usage; log=$2; shift 2 ;;
    -q | --quiet) quiet=1; shift ;;
    -s | --summary) summary=1; shift ;;
    -h | --help) usage ;;
    -*) usage ;;
    *) break ;;
    esac
done
[ $# -eq 1 ] || usage
kernel=$1
case $cpus in
[1-8]) ;;
*) echo "$0: --cpus must be 1 to 8 (the test kernel's CPU_MAX), not '$cpus'" >&2; exit 2 ;;
esac
# One CPU keeps QEMU's default single-threaded TCG; several get a host
# thread each, so that they really run at the same time.
accel=tcg
[ "$cpus" -eq 1 ] || accel=tcg,thread=multi

passed=0
failed=0

# Prints the verdict and the counts, and exits.
verdict_fail() {
    echo "run-qemu: FAIL: $1"
    echo "$passed passed, $failed failed"
    exit 1
}

if ! command -v "$qemu" >/dev/null 2>&1; then
    failed=1
    verdict_fail "qemu missing: '$qemu' not found (apt-get install qemu-system-x86)"
fi
if [ ! -f "$kernel" ]; then
    failed=1
    verdict_fail "kernel image '$kernel' not found (make kernel)"
fi

tmpdir=$(mktemp -d)
trap 'rm -rf "$tmpdir"' EXIT
[ -n "$log" ] || log=$tmpdir/serial.log
mkdir -p "$(dirname "$log")"
: >"$log"
qemu_err=$tmpdir/qemu.stderr

echo "run-qemu: $qemu -accel $accel -smp $cpus -m $memory -kernel $kernel (timeout ${timeout_s}s, log $log)"
# -nodefaults: no NIC, no VGA, nothing to probe; -no-reboot: a reset (a
# triple fault) ends QEMU instead of rebooting forever.
timeout --kill-after=10 "$timeout_s" "$qemu" -accel "$accel" -smp "$cpus" -m "$memory" -nodefaults \
    -display none -no-reboot -serial "file:$log" -monitor none \
    -device isa-debug-exit,iobase=0xf4,iosize=0x04 -kernel "$kernel" \
    </dev/null 2>"$qemu_err" &
qemu_pid=$!
tail_pid=
if [ "$quiet" -eq 0 ]; then
    if [ "$summary" -eq 1 ]; then
        tail -n +1 -f --pid="$qemu_pid" "$log" | awk -f "$(dirname "$0")/log-summary.awk" &
    else
        tail -n +1 -f --pid="$qemu_pid" "$log" &
    fi
    tail_pid=$!
fi
wait "$qemu_pid"
status=$?
[ -z "$tail_pid" ] || wait "$tail_pid"

result=$(grep -E "$RESULT_RE" "$log" | tail -n 1)
ok_lines=$(grep -c '^ok ' "$log")
fail_lines=$(grep -c '^FAIL ' "$log")
fault=$(grep -m 1 -E '^KERNEL (FAULT|PANIC): ' "$log")
last_line=$(grep -v '^[[:space:]]*$' "$log" | tail -n 1)

if [ -n "$result" ]; then
    passed=${result%% passed*}
    failed=${result#*, }
    failed=${failed%% failed}
else
    # No result line: count what the log shows, plus one for the run itself.
    passed=$ok_lines
    failed=$((fail_lines + 1))
fi

show_tail() {
    if [ "$quiet" -eq 1 ]; then
        echo "run-qemu: last lines of $log:"
        tail -n 15 "$log" | sed 's/^/    /'
    fi
    if [ -s "$qemu_err" ]; then
        echo "run-qemu: qemu stderr:"
        sed 's/^/    /' "$qemu_err" | head -n 20
    fi
}

fail() {
    show_tail
    [ "$failed" -gt 0 ] || failed=1
    verdict_fail "$1"
}

failed_names() {
    grep '^FAIL ' "$log" | head -n 5 | awk '{print $2}' | paste -sd ' ' -
}

case $status in
"$STATUS_SUCCESS")
    if [ -z "$result" ]; then
        fail "missing result line: the kernel exited with the success code but printed no 'N passed, N failed' line"
    elif [ "$failed" -ne 0 ] || [ "$fail_lines" -ne 0 ]; then
        fail "inconsistent run: success exit code, but $failed test(s) failed: $(failed_names)"
    elif [ "$passed" -eq 0 ]; then
        fail "no test ran: the result line says 0 passed"
    fi
    echo "run-qemu: PASS: $passed passed at -m $memory -smp $cpus (exit status $status)"
    echo "$passed passed, $failed failed"
    exit 0
    ;;
"$STATUS_FAILURE")
    if [ -n "$fault" ]; then
        case $fault in
        "KERNEL FAULT: "*) fail "kernel fault: ${fault#KERNEL FAULT: }" ;;
        *) fail "kernel panic: ${fault#KERNEL PANIC: }" ;;
        esac
    elif [ -n "$result" ] && [ "$failed" -gt 0 ]; then
        fail "failed tests: $failed self-test(s) failed: $(failed_names)"
    elif [ -z "$result" ]; then
        fail "missing result line: the kernel exited with the failure code and printed no result line"
    fi
    fail "the kernel exited with the failure code although its result line says 0 failed"
    ;;
124 | 137)
    fail "hang/timeout: QEMU did not exit within ${timeout_s}s; last serial line: ${last_line:-(none)}"
    ;;
0)
    fail "reset or triple fault: QEMU exited with status 0 (the guest reset or shut down instead of exiting through isa-debug-exit); last serial line: ${last_line:-(none)}"
    ;;
*)
    fail "QEMU failed (exit status $status): $(head -n 1 "$qemu_err")"
    ;;
esac
