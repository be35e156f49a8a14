/*
 * kmain.c - the test kernel's boot sequence and verdict.
 *
 * Order matters and is the point of the exercise: the boot CPU's per-CPU
 * area (the console lock and every report name the CPU), console and
 * exception handlers (so anything later that breaks is reported), then the
 * memory map and the rest of the direct map, then the CPUs are counted and
 * the LAPIC set up (smp_init: page tables change only while this CPU runs
 * alone), then vmem_bootstrap() and the arenas, then the tests on this
 * CPU, then the other CPUs start and the SMP stress runs on all of them,
 * then one result line and the exit code.
 *
 * This runs in the higher half (lib/layout.h): entry.S has already dropped
 * the identity map, so the Multiboot pointer it gets is physical and only
 * memmap.c, through the direct map, reads it.
 *
 * The same file builds the runner's negative fixtures: with
 * -DKERNEL_BREAK=<how> the kernel breaks in one specific way so that
 * tools/kernel-tests/ can check that tools/run-qemu.sh reports it as a
 * failure. A normal build has KERNEL_BREAK_NONE and none of that code.
 */
#include <stddef.h>
#include <stdint.h>

#include "cpu.h"
#include "kmem.h"
#include "kprintf.h"
#include "ktest_env.h"
#include "ktests.h"
#include "memmap.h"
#include "paging.h"
#include "percpu.h"
#include "qemu_exit.h"
#include "serial.h"
#include "smp.h"
#include "smp_stress.h"
#include "trap.h"
#include "vmem.h"
#include "vtest.h"

#define KERNEL_BREAK_NONE 0
#define KERNEL_BREAK_FAIL 1      /* one self-test fails */
#define KERNEL_BREAK_FAULT 2     /* a page fault (write through a null pointer) */
#define KERNEL_BREAK_OVERFLOW 3  /* the kernel stack overflows into its guard */
#define KERNEL_BREAK_HANG 4      /* never exits */
#define KERNEL_BREAK_TRIPLE 5    /* triple fault: QEMU resets, exits 0 */
#define KERNEL_BREAK_NO_RESULT 6 /* exits with the success code, no result line */
#define KERNEL_BREAK_AP_FAULT 7    /* CPU 1 faults (boot with 2 CPUs or more) */
#define KERNEL_BREAK_AP_NEVER_UP 8 /* the last CPU gets no start-up IPI (2 CPUs or more) */
#define KERNEL_BREAK_AP_STALL 9    /* CPU 1 stops in the SMP stress (2 CPUs or more) */

#ifndef KERNEL_BREAK
#define KERNEL_BREAK KERNEL_BREAK_NONE
#endif

/* The broken variants run none of the normal tests: what they test is the
 * runner, which must judge them the same whether or not the library under
 * test works today, and quickly. */
#define RUN_TESTS (KERNEL_BREAK == KERNEL_BREAK_NONE)

void kernel_main(uint32_t magic, uint32_t mbi_phys);

#if KERNEL_BREAK == KERNEL_BREAK_FAIL
static void deliberately_failing_test(void)
{
    /* Claims, wrongly and on purpose, that a frame written twice still
     * holds the first value. */
    void *phys = vmem_alloc(&kmem_phys, KMEM_FRAME_SIZE, VM_NOSLEEP);
    KT_ASSERT(phys != NULL);
    volatile uint64_t *frame = kmem_ptr(phys);
    frame[0] = 1;
    frame[0] = 2;
    uint64_t seen = frame[0];
    vmem_free(&kmem_phys, phys, KMEM_FRAME_SIZE);
    KT_ASSERT(seen == 1);
}
#endif

#if KERNEL_BREAK == KERNEL_BREAK_FAULT || KERNEL_BREAK == KERNEL_BREAK_AP_FAULT
/* volatile: the compiler must not see that the address is NULL and turn
 * the store into a trap instruction of its own. */
static volatile uintptr_t fault_address = 0x10;
#endif

#if KERNEL_BREAK == KERNEL_BREAK_OVERFLOW
/* The compiler cannot prove the recursion endless (which it would warn
 * about) because the limit is volatile. */
static volatile uint64_t recursion_limit = UINT64_MAX;

static uint64_t recurse(uint64_t depth)
{
    volatile uint64_t frame[64];
    frame[depth % 64] = depth;
    if (depth == recursion_limit)
        return frame[0];
    return recurse(depth + 1) + frame[0];
}
#endif

#if KERNEL_BREAK == KERNEL_BREAK_AP_FAULT
/* Every other CPU runs this; CPU 1 faults, the others stop. */
static void fault_on_cpu_1(void)
{
    if (cpu_id() != 1)
        return;
    kprintf("kernel: cpu 1 writing through a null pointer (KERNEL_BREAK=ap-fault)\n");
    *(volatile uint64_t *)fault_address = 1;
}
#endif

/* Where a broken variant breaks: after the arenas exist and the tests
 * would have run, before the result line. */
static void break_as_configured(void)
{
#if KERNEL_BREAK == KERNEL_BREAK_FAULT
    kprintf("kernel: writing through a null pointer (KERNEL_BREAK=fault)\n");
    *(volatile uint64_t *)fault_address = 1;
#elif KERNEL_BREAK == KERNEL_BREAK_OVERFLOW
    kprintf("kernel: recursing without end (KERNEL_BREAK=overflow)\n");
    recurse(0);
#elif KERNEL_BREAK == KERNEL_BREAK_HANG
    kprintf("kernel: spinning forever (KERNEL_BREAK=hang)\n");
    for (;;)
        cpu_pause();
#elif KERNEL_BREAK == KERNEL_BREAK_TRIPLE
    kprintf("kernel: loading an empty IDT and trapping (KERNEL_BREAK=triple)\n");
    struct __attribute__((packed)) {
        uint16_t limit;
        uint64_t base;
    } empty = {0, 0};
    __asm__ volatile("lidt %0; int3" : : "m"(empty) : "memory");
#elif KERNEL_BREAK == KERNEL_BREAK_NO_RESULT
    kprintf("kernel: exiting with success before the result line (KERNEL_BREAK=no-result)\n");
    qemu_exit(true);
#elif KERNEL_BREAK == KERNEL_BREAK_AP_FAULT
    /* The fault ends the run; if it never comes, the result line below
     * says this variant passed, and the runner's test of it fails. */
    smp_run_on_aps(fault_on_cpu_1);
    for (uint64_t start = smp_now_ms(); smp_now_ms() - start < 60000;)
        cpu_pause();
#endif
}

void kernel_main(uint32_t magic, uint32_t mbi_phys)
{
    percpu_init_boot_cpu();
    serial_init();
    kprintf("libvmem test kernel%s\n",
            KERNEL_BREAK == KERNEL_BREAK_NONE ? "" : " (deliberately broken variant)");
    trap_init();
    memmap_init(magic, mbi_phys);
    uint64_t map_end = paging_init(memmap_ram_top());
    memmap_print();
    smp_init();

    kmem_init(map_end);
    vmem_dump(&kmem_phys);
    vmem_dump(&kmem_heap);

    ktest_env_init(kmem_phys_bytes());
    size_t passed = 0, failed = 0;
    if (RUN_TESTS) {
        ktests_run_before(&passed, &failed);
        size_t shared_passed = 0;
        failed += vtest_run_all(NULL, &shared_passed);
        passed += shared_passed;
        ktests_run_after(&passed, &failed);
    }
#if KERNEL_BREAK == KERNEL_BREAK_FAIL
    static const struct ktest failing = KTEST(deliberately_failing_test);
    ktest_run_list(&failing, 1, &passed, &failed);
#endif

    /* The other CPUs start only now, so that they do not compete with the
     * boot CPU's self-tests for the host's cores; then the SMP stress. */
    smp_start_aps(KERNEL_BREAK == KERNEL_BREAK_AP_NEVER_UP ? smp_cpus_present() - 1 : CPU_MAX);
    if (KERNEL_BREAK == KERNEL_BREAK_AP_STALL)
        smp_stress_stall_cpu(1, 3000);
    if (RUN_TESTS || KERNEL_BREAK == KERNEL_BREAK_AP_STALL)
        smp_stress_run(&passed, &failed);

    /* The frame arena once more, for the pictures (tools/vmem-svg): what
     * the run left allocated (the allocator's own tag pages) and where.
     * Only after a clean run: a dump walks the segment list unbounded, and
     * a corrupted arena must not turn a failure into a hang. */
    if (RUN_TESTS && failed == 0) {
        kprintf("kernel: the frame arena after the self-tests:\n");
        vmem_dump(&kmem_phys);
    }

    break_as_configured();

    kprintf("%zu passed, %zu failed\n", passed, failed);
    qemu_exit(failed == 0);
}
