/*
 * ap_start.S - how the other CPUs (application processors) get from the
 * start-up IPI to C: a real-mode trampoline that lib/smp.c copies to
 * AP_TRAMPOLINE_PHYS (below 1 MiB), and the higher-half code it jumps to.
 *
 * A CPU woken by INIT and a start-up IPI runs in real mode at
 * AP_TRAMPOLINE_PHYS (CS = its paragraph, IP = 0). The trampoline is
 * assembled to run at that address only (T_ADDR below): it loads its own
 * GDT, enters protected mode, turns on PAE, long mode and paging with the
 * page tables whose physical address smp.c left in ap_param_cr3, and jumps
 * to the higher half on the stack smp.c left in ap_param_stack. Those
 * tables map the trampoline's page at its physical address (paging is
 * switched on while the CPU runs there) and share the kernel's higher-half
 * tables; the kernel's own tables have no identity map (entry.S removes
 * it), so ap_entry switches to them as soon as it runs in the higher half.
 *
 * Owns nothing but the trampoline's text; the parameters are written by
 * the boot CPU into the copy, for one CPU at a time.
 */
#include "layout.h"

#define CR0_PE (1 << 0)
#define CR0_WP (1 << 16)
#define CR0_PG (1 << 31)
#define CR4_PAE (1 << 5)
#define MSR_EFER 0xC0000080
#define EFER_LME (1 << 8)

/* The address a trampoline label has in the copy. */
#define T_ADDR(sym) (AP_TRAMPOLINE_PHYS + (sym) - ap_trampoline_start)

    .section .rodata.ap_trampoline, "a"
    .balign 16
    .globl ap_trampoline_start, ap_trampoline_end
    .globl ap_param_cr3, ap_param_stack, ap_param_entry
    .code16
ap_trampoline_start:
    cli
    cld
    movw %cs, %ax
    movw %ax, %ds
    /* ds-relative: the descriptor's offset in the page. */
    lgdtl ap_gdt_descriptor - ap_trampoline_start
    movl %cr0, %eax
    orl $CR0_PE, %eax
    movl %eax, %cr0
    ljmpl $0x08, $T_ADDR(ap_protected_mode)

    .code32
ap_protected_mode:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movl %cr4, %eax
    orl $CR4_PAE, %eax
    movl %eax, %cr4
    movl T_ADDR(ap_param_cr3), %eax
    movl %eax, %cr3
    movl $MSR_EFER, %ecx
    rdmsr
    orl $EFER_LME, %eax
    wrmsr
    movl %cr0, %eax
    orl $(CR0_PG | CR0_WP), %eax
    movl %eax, %cr0
    ljmp $0x18, $T_ADDR(ap_long_mode)

    .code64
ap_long_mode:
    movq T_ADDR(ap_param_stack), %rsp
    movq T_ADDR(ap_param_entry), %rax
    jmpq *%rax

    .balign 8
ap_gdt:
    .quad 0
    .quad 0x00cf9a000000ffff    /* 0x08 code: 32-bit, ring 0 */
    .quad 0x00cf92000000ffff    /* 0x10 data: ring 0, writable */
    .quad 0x00af9a000000ffff    /* 0x18 code: 64-bit, ring 0 */
ap_gdt_end:
ap_gdt_descriptor:
    .word ap_gdt_end - ap_gdt - 1
    .long T_ADDR(ap_gdt)
    .balign 8
ap_param_cr3:   /* physical, below 4 GiB: loaded in 32-bit mode */
    .quad 0
ap_param_stack: /* the CPU's stack top, a higher-half address */
    .quad 0
ap_param_entry: /* ap_entry */
    .quad 0
ap_trampoline_end:

/*
 * In the higher half, on the CPU's own stack, still on the trampoline's
 * page tables: the kernel's GDT (whose code selector differs from the
 * trampoline's, hence the far return), the kernel's page tables (CR3 from
 * smp_kernel_cr3), then ap_main(smp_starting_cpu), which never returns.
 */
    .section .text
    .globl ap_entry
    .type ap_entry, @function
ap_entry:
    lgdt gdt_descriptor
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorw %ax, %ax
    movw %ax, %fs
    movw %ax, %gs
    pushq $0x08
    leaq 1f(%rip), %rax
    pushq %rax
    lretq
1:  movq smp_kernel_cr3(%rip), %rax
    movq %rax, %cr3
    movq smp_starting_cpu(%rip), %rdi
    xorl %ebp, %ebp
    call ap_main
2:  cli
    hlt
    jmp 2b
    .size ap_entry, . - ap_entry

    .section .note.GNU-stack, "", @progbits
