/*
 * percpu.h - one area per CPU, reached through the GS base.
 *
 * Each CPU's GS base holds the address of its own struct percpu, set once
 * when the CPU starts (percpu_init_boot_cpu for the boot CPU, smp.c for
 * the others) and never changed. So `this_cpu()` is one load (%gs:0, the
 * self pointer), and the CPU index one load too (cpu_id() in cpu.h).
 *
 * Invariants: percpu[i].id == i; CPU 0 is the boot CPU; an area is
 * written by its own CPU only, except for the fields marked otherwise
 * (set by the boot CPU before the CPU starts, or read by the watchdog).
 */
#ifndef KERNEL_PERCPU_H
#define KERNEL_PERCPU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cpu.h"
#include "layout.h"

struct percpu {
    struct percpu *self; /* %gs:0 */
    unsigned id;         /* %gs:CPU_PERCPU_ID_OFFSET */
    uint8_t apic_id;     /* set by the boot CPU from the MADT */
    volatile bool online; /* set by the CPU itself once it can take work */
    /* The CPU's stacks (set by the boot CPU before it starts the CPU):
     * the guard page is unmapped, the stack is [bottom, top). */
    char *stack_guard, *stack_bottom, *stack_top;
    char *fault_stack_guard, *fault_stack_top;
    /* Interrupt handlers running on this CPU (0 or 1: they do not nest). */
    unsigned irq_depth;
    /* Page-source calls under way on this CPU (vmem_port_kernel.c). */
    unsigned page_alloc_depth, page_source_depth;
    /* Counters, written by their CPU, summed by the boot CPU at the end. */
    uint64_t lock_acquisitions; /* vmem port locks taken */
    uint64_t lock_spins;        /* pause loops waiting for a held one */
    uint64_t irq_lock_acquisitions; /* of them, taken inside an interrupt handler */
    uint64_t cache_entries;     /* vmem_port_cpu_enter() calls: per-CPU cache entries */
    uint64_t timer_ticks;       /* LAPIC timer interrupts handled */
    uint64_t irq_vmem_calls;    /* vmem calls made by the timer handler */
    uint64_t irq_vmem_failures; /* of them, allocations that failed */
    /* Read by the boot CPU's watchdog: grows while the CPU makes progress. */
    volatile uint64_t progress;
} __attribute__((aligned(64)));

_Static_assert(offsetof(struct percpu, self) == 0, "this_cpu() reads %gs:0");
_Static_assert(offsetof(struct percpu, id) == CPU_PERCPU_ID_OFFSET,
               "cpu_id() reads %gs:CPU_PERCPU_ID_OFFSET");

extern struct percpu percpu[CPU_MAX];

/* The running CPU's area. */
static inline struct percpu *this_cpu(void)
{
    struct percpu *self;
    __asm__ volatile("movq %%gs:0, %0" : "=r"(self));
    return self;
}

/* Adds one to a uint64_t counter of the running CPU's area in one
 * instruction, which an interrupt on this CPU cannot split (no lock
 * prefix: no other CPU writes it). */
#define PERCPU_COUNT(field)                                                              \
    __asm__ volatile("incq %%gs:%c0" : : "i"(offsetof(struct percpu, field)) : "memory")

/* Makes the boot CPU's area percpu[0] and points its GS base at it. The
 * first call of kernel_main(): everything after may use cpu_id(). */
void percpu_init_boot_cpu(void);

/* Points the running CPU's GS base at area c. */
void percpu_load(struct percpu *c);

#endif /* KERNEL_PERCPU_H */
