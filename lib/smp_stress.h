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

#endif /* KERNEL_SMP_STRESS_H */
