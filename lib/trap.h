/*
 * trap.h - CPU tables (TSS, IDT) and the fatal-exception report.
 */
#ifndef KERNEL_TRAP_H
#define KERNEL_TRAP_H

#include <stdbool.h>
#include <stdint.h>

/* What boot/isr.S leaves on the stack, lowest address first. */
struct trap_frame {
    uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
    uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
    uint64_t vector, error;
    uint64_t rip, cs, rflags, rsp, ss; /* pushed by the CPU */
};

/* On the boot CPU: installs its TSS (whose IST1 is the fault stack) and
 * an IDT with a handler for each of the 32 exception vectors. #DF, #PF,
 * #NMI and #MC run on the fault stack, so a kernel stack overflow is still
 * reported. Needs percpu_init_boot_cpu(). */
void trap_init(void);

/* On another CPU, once its per-CPU area is loaded: its own TSS (IST1 on
 * its own fault stack), and the shared IDT. */
void trap_init_cpu(void);

/* Routes interrupt vector (32..255) to stub. Boot CPU, before the other
 * CPUs start. */
void trap_set_interrupt(unsigned vector, void (*stub)(void));

/* Makes the calling CPU the one that reports and ends the run: true for
 * the first caller; false when the caller already is the reporter (a
 * fault inside its report); a CPU that comes second halts here for good,
 * since the first ends the run. */
bool trap_claim_report(void);

/* Called by the exception stubs: prints "KERNEL FAULT: ..." with the
 * vector, error code, RIP, CR2 and every register, then ends the run with
 * the failure code. */
__attribute__((noreturn)) void trap_dispatch(struct trap_frame *frame);

/* Prints the words on the kernel stack, from rsp up, that point into the
 * kernel's code: a rough call chain for code without frame pointers. */
void trap_print_code_addresses(uint64_t rsp);

#endif /* KERNEL_TRAP_H */
