/*
 * cpu.h - the few x86_64 instructions the test kernel needs from C, as
 * inline functions: port I/O, interrupt flag, control registers, TLB.
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
