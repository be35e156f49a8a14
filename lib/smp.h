/*
 * smp.h - the other CPUs: found in ACPI's MADT, started with INIT and
 * start-up IPIs, each with its own stacks, per-CPU area, TSS and LAPIC
 * timer; and the clocks the kernel measures time with (the PIT, once, to
 * calibrate the TSC and the LAPIC timer).
 */
#ifndef KERNEL_SMP_H
#define KERNEL_SMP_H

#include <stdbool.h>
#include <stdint.h>

/* The interrupt vectors the kernel uses. */
#define SMP_TIMER_VECTOR 0x40
#define SMP_SPURIOUS_VECTOR 0xff

/*
 * Boot CPU, after paging_init() and before anything else starts a CPU:
 * calibrates the TSC and the LAPIC timer against the PIT, finds the CPUs
 * in the MADT (one CPU when there is none), maps the LAPIC uncached and
 * enables the boot CPU's, routes the timer and spurious vectors, and
 * prepares every other CPU's stacks (with guard pages) and area. Prints
 * what it found.
 */
void smp_init(void);

/* CPUs the MADT lists (at most CPU_MAX), the boot CPU included. */
unsigned smp_cpus_present(void);

/*
 * Starts every other CPU, one at a time, and waits (a few seconds at
 * most) for each to come up; panics naming one that does not. Prints
 * "cpus online: N" once all have. Each waits, spinning, for
 * smp_run_on_aps(). A CPU whose index is withhold_sipi is sent INIT but
 * no start-up IPI, so it never comes up: the runner's fixture for a CPU
 * that does not start (pass CPU_MAX otherwise).
 */
unsigned smp_start_aps(unsigned withhold_sipi);

/* CPUs online, the boot CPU included. */
unsigned smp_cpus_online(void);

/* Every other online CPU calls work() once, then halts for good. */
void smp_run_on_aps(void (*work)(void));

/* Milliseconds since an arbitrary origin, from the TSC (every CPU). */
uint64_t smp_now_ms(void);

/* The calling CPU's LAPIC timer: a periodic interrupt every period_us
 * microseconds (roughly: calibrated once against the PIT) that calls
 * tick() in interrupt context; smp_timer_stop() masks it. The tick
 * function is shared by all CPUs: set it before the first start. */
void smp_timer_start(unsigned period_us, void (*tick)(void));
void smp_timer_stop(void);

#endif /* KERNEL_SMP_H */
