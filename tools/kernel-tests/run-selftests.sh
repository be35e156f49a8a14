#!/usr/bin/env bash
# run-selftests.sh - tests of tools/run-qemu.sh itself: every way a test
# kernel can go wrong must come out as a failure, with a reason that names
# what happened, and a last line counting at least one failure.
#
#   tools/kernel-tests/run-selftests.sh KERNEL_DIR
#
# KERNEL_DIR holds vmem-kernel.elf32 and the deliberately broken variants
# vmem-kernel-break-<how>.elf32 (boot/kmain.c built with -DKERNEL_BREAK=...;
# `make kernel-breaks`); the ap-* variants boot with two CPUs. Each case passes when the runner exits non-zero,
# its verdict line matches the expected reason, and its last line is
# "N passed, N failed" with N failed >= 1. Cases run concurrently (they are
# small); results print in a fixed order, then "N passed, N failed".
set -u
here=$(cd "$(dirname "$0")" && pwd)
runner=$here/../run-qemu.sh
[ $# -eq 1 ] || { echo "usage: $0 KERNEL_DIR" >&2; exit 2; }
dir=$1
# Long enough for a broken kernel to reach its breaking point under a
# loaded TCG, short enough not to dominate the layer's time.
hang_timeout=8
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

names=()
expects=()

# add_case NAME EXPECTED_VERDICT_REGEX -- COMMAND...
add_case() {
    local name=$1 expect=$2
    shift 3
    names+=("$name")
    expects+=("$expect")
    ("$@" >"$work/$name.out" 2>&1; echo $? >"$work/$name.status") &
}

break_kernel() { echo "$dir/vmem-kernel-break-$1.elf32"; }

add_case failed_self_test_is_reported \
    '^run-qemu: FAIL: failed tests: 1 self-test\(s\) failed: kernel\.deliberately_failing_test$' -- \
    "$runner" --quiet --memory 64M "$(break_kernel fail)"
add_case page_fault_is_reported \
    '^run-qemu: FAIL: kernel fault: #PF page fault .*NULL pointer dereference' -- \
    "$runner" --quiet --memory 64M "$(break_kernel fault)"
add_case stack_overflow_is_reported \
    '^run-qemu: FAIL: kernel fault: #PF page fault .*kernel stack overflow' -- \
    "$runner" --quiet --memory 64M "$(break_kernel overflow)"
add_case hang_is_reported_as_timeout \
    "^run-qemu: FAIL: hang/timeout: QEMU did not exit within ${hang_timeout}s" -- \
    "$runner" --quiet --memory 64M --timeout "$hang_timeout" "$(break_kernel hang)"
add_case triple_fault_is_reported \
    '^run-qemu: FAIL: reset or triple fault: QEMU exited with status 0' -- \
    "$runner" --quiet --memory 64M "$(break_kernel triple)"
add_case missing_result_line_is_reported \
    '^run-qemu: FAIL: missing result line: ' -- \
    "$runner" --quiet --memory 64M "$(break_kernel no-result)"
# Two CPUs: the second one breaks. Its fault must be reported like the
# boot CPU's, naming it; a CPU that never starts, or stops in the middle
# of the SMP stress, must fail the boot, not leave the others waiting.
add_case other_cpu_fault_is_reported \
    '^run-qemu: FAIL: kernel fault: #PF page fault \(vector 14\) on cpu 1, .*NULL pointer dereference' -- \
    "$runner" --quiet --cpus 2 --memory 64M "$(break_kernel ap-fault)"
add_case cpu_that_never_starts_is_reported \
    '^run-qemu: FAIL: kernel panic: smp: cpu 1 \(APIC id [0-9]+\) did not come up within [0-9]+ ms' -- \
    "$runner" --quiet --cpus 2 --memory 64M "$(break_kernel ap-never-up)"
add_case cpu_that_stops_is_caught_by_the_watchdog \
    '^run-qemu: FAIL: kernel panic: smp stress: cpu 1 stopped making progress' -- \
    "$runner" --quiet --cpus 2 --memory 64M "$(break_kernel ap-stall)"
add_case missing_qemu_is_reported \
    "^run-qemu: FAIL: qemu missing: '/nonexistent/qemu-system-x86_64' not found" -- \
    env QEMU=/nonexistent/qemu-system-x86_64 "$runner" --quiet "$dir/vmem-kernel.elf32"
add_case missing_kernel_is_reported \
    "^run-qemu: FAIL: kernel image '$dir/no-such-kernel.elf32' not found" -- \
    "$runner" --quiet "$dir/no-such-kernel.elf32"
wait

passed=0
failed=0
for i in "${!names[@]}"; do
    name=${names[$i]}
    out=$work/$name.out
    status=$(cat "$work/$name.status")
    verdict=$(grep -E '^run-qemu: (PASS|FAIL)' "$out" | tail -n 1)
    last=$(tail -n 1 "$out")
    why=
    if [ "$status" -eq 0 ]; then
        why="the runner exited 0"
    elif ! printf '%s\n' "$verdict" | grep -Eq -- "${expects[$i]}"; then
        why="verdict '${verdict:-none}' does not match /${expects[$i]}/"
    elif ! printf '%s\n' "$last" | grep -Eq '^[0-9]+ passed, [1-9][0-9]* failed$'; then
        why="last line '$last' does not count a failure"
    fi
    if [ -z "$why" ]; then
        echo "ok   runner.$name: ${verdict#run-qemu: }"
        passed=$((passed + 1))
    else
        echo "FAIL runner.$name: $why (exit status $status); runner output:"
        tail -n 12 "$out" | sed 's/^/    /'
        failed=$((failed + 1))
    fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
