/*
 * smp_stress.h - the SMP stress: every online CPU, and a LAPIC timer
 * interrupt on each, allocating from shared arenas at once.
 */
#ifndef KERNEL_SMP_STRESS_H
#define KERNEL_SMP_STRESS_H

#include <stddef.h>

/*
 * Runs the stress on every online CPU (smp_start_aps() first; with one
 * CPU it runs on the boot CPU alone, timer included), then checks what it
 * left and reports the checks as kernel tests ("ok   kernel.smp_..."),
 * adding to *passed and *failed. Needs kmem_init(); the other CPUs halt
 * when it returns. Panics if a CPU stops making progress (the watchdog).
 */
void smp_stress_run(size_t *passed, size_t *failed);

/*
 * For the runner's fixture (a CPU that stops answering): in the next
 * smp_stress_run(), CPU `cpu` stops for good, interrupts off, after a few
 * hundred operations, and the watchdog gives up on a CPU after
 * watchdog_ms instead of a minute.
 */
void smp_stress_stall_cpu(unsigned cpu, unsigned watchdog_ms);

#endif /* KERNEL_SMP_STRESS_H */
