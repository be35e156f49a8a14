/*
 * cpu.h - the few x86_64 instructions the test kernel needs from C, as
 * inline functions: port I/O, interrupt flag, control registers, TLB,
 * model-specific registers, the time-stamp counter, and the two
 * primitives a per-CPU section is made of: interrupts saved and disabled
 * (cpu_irq_save / cpu_irq_restore) and the running CPU's index, read in
 * one instruction through the GS base (cpu_id).
 *
 * Owns no state. Every asm statement that orders memory says so with a
 * "memory" clobber, so the compiler never moves loads and stores across a
 * change of interrupt state or of the page tables.
 */
#ifndef KERNEL_CPU_H
#define KERNEL_CPU_H

#include <stdint.h>

/* RFLAGS.IF: interrupts enabled. */
#define CPU_RFLAGS_IF (1ull << 9)

static inline void cpu_outb(uint16_t port, uint8_t value)
{
    __asm__ volatile("outb %0, %1" : : "a"(value), "Nd"(port) : "memory");
}

static inline void cpu_outl(uint16_t port, uint32_t value)
{
    __asm__ volatile("outl %0, %1" : : "a"(value), "Nd"(port) : "memory");
}

static inline uint8_t cpu_inb(uint16_t port)
{
    uint8_t value;
    __asm__ volatile("inb %1, %0" : "=a"(value) : "Nd"(port) : "memory");
    return value;
}

static inline uint64_t cpu_read_rflags(void)
{
    uint64_t flags;
    __asm__ volatile("pushfq; popq %0" : "=r"(flags) : : "memory");
    return flags;
}

/* Saves the interrupt state and disables interrupts: the caller stays on
 * this CPU, and nothing else runs on it, until cpu_irq_restore(). */
static inline uint64_t cpu_irq_save(void)
{
    uint64_t flags;
    __asm__ volatile("pushfq; popq %0; cli" : "=r"(flags) : : "memory");
    return flags;
}

/* Restores what cpu_irq_save() returned: enables interrupts only if they
 * were enabled then. */
static inline void cpu_irq_restore(uint64_t flags)
{
    if (flags & CPU_RFLAGS_IF)
        __asm__ volatile("sti" : : : "memory");
}

/* The offset of the CPU index in the per-CPU area the GS base points to
 * (lib/percpu.h lays the area out and checks this). */
#define CPU_PERCPU_ID_OFFSET 8

/* The index of the running CPU (0 is the boot CPU, then the others in the
 * order they came up), in one instruction. Stable only while the caller
 * cannot move: always in this kernel (no scheduler), and in general inside
 * a cpu_irq_save() section. Valid once percpu_init_boot_cpu() has run. */
static inline unsigned cpu_id(void)
{
    unsigned id;
    __asm__ volatile("movl %%gs:%c1, %0" : "=r"(id) : "i"(CPU_PERCPU_ID_OFFSET));
    return id;
}

static inline uint64_t cpu_rdmsr(uint32_t msr)
{
    uint32_t lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr) : "memory");
    return ((uint64_t)hi << 32) | lo;
}

static inline void cpu_wrmsr(uint32_t msr, uint64_t value)
{
    __asm__ volatile("wrmsr" : : "c"(msr), "a"((uint32_t)value), "d"((uint32_t)(value >> 32))
                     : "memory");
}

static inline uint64_t cpu_rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi) : : "memory");
    return ((uint64_t)hi << 32) | lo;
}

static inline void cpu_cli(void) { __asm__ volatile("cli" : : : "memory"); }
static inline void cpu_sti(void) { __asm__ volatile("sti" : : : "memory"); }
static inline void cpu_pause(void) { __asm__ volatile("pause" : : : "memory"); }

static inline uint64_t cpu_read_cr2(void)
{
    uint64_t value;
    __asm__ volatile("movq %%cr2, %0" : "=r"(value));
    return value;
}

static inline uint64_t cpu_read_cr3(void)
{
    uint64_t value;
    __asm__ volatile("movq %%cr3, %0" : "=r"(value) : : "memory");
    return value;
}

static inline void cpu_invlpg(uintptr_t addr)
{
    __asm__ volatile("invlpg (%0)" : : "r"(addr) : "memory");
}

/* Stops the CPU for good: interrupts off, then halt in a loop (an NMI
 * would otherwise resume after hlt). */
static inline __attribute__((noreturn)) void cpu_halt_forever(void)
{
    for (;;)
        __asm__ volatile("cli; hlt" : : : "memory");
}

#endif /* KERNEL_CPU_H */
