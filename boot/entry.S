/*
 * entry.S - Multiboot 1 header and the road from the boot loader's 32-bit
 * protected mode into 64-bit long mode in the higher half, up to the call
 * of kernel_main().
 *
 * Owns: the Multiboot header, the boot page tables, the GDT (with empty
 * slots that trap.c fills with the TSS descriptors), the kernel stack and the
 * fault (IST) stack, each with a guard page below it.
 *
 * The address layout is lib/layout.h's. The kernel is linked at
 * KERNEL_VMA_BASE + its load address (kernel.ld); only the code in
 * .boot.text is linked at its load address, because it runs before paging
 * (32-bit) or while only the identity map reaches it (the 64-bit
 * trampoline). That code therefore names every other symbol through
 * PHYS(), its physical address.
 *
 * Invariants kept here:
 *  - The GDT has a TSS slot for each of CPU_MAX CPUs (trap.c fills them);
 *    boot/ap_start.S brings the other CPUs onto it and these tables.
 *  - The boot page tables map [0, 4 GiB) with 2 MiB pages twice, from one
 *    PDPT: at 0 (identity, for this file's low code) and at
 *    KERNEL_DIRECT_MAP (the direct map). The kernel window
 *    (KERNEL_VMA_BASE) reuses the directory of the first GiB. paging.c
 *    extends the direct map above 4 GiB and splits the 2 MiB pages that
 *    hold guard pages.
 *  - The identity map is gone before kernel_main() runs: from then on no
 *    code, table or descriptor register (GDTR, the stack) holds a low
 *    address, and a NULL pointer faults.
 *  - .bss is zeroed before anything in it is used; it lives in the last
 *    load segment, whose physical end is __kernel_phys_end, so excluding
 *    [__kernel_phys_start, __kernel_phys_end) from the frame arena covers
 *    the stacks and the page tables too.
 *  - The boot loader's magic (eax) and info pointer (ebx, physical) reach
 *    kernel_main() untouched; memmap.c checks the magic.
 */
#include "layout.h"

#define MB_MAGIC 0x1BADB002
/* Flags: bit 0 page-align modules, bit 1 give memory information. Bit 16
 * (load addresses in the header) stays clear: QEMU then loads the ELF
 * program headers at their physical addresses, which is why the image is
 * converted to ELF32. */
#define MB_FLAGS 0x00000003

#define CR0_PE (1 << 0)
#define CR0_WP (1 << 16)
#define CR0_PG (1 << 31)
#define CR4_PAE (1 << 5)
#define MSR_EFER 0xC0000080
#define EFER_LME (1 << 8)

#define PTE_PRESENT 0x1
#define PTE_WRITE 0x2
#define PTE_HUGE 0x80 /* PS bit in a page-directory entry: a 2 MiB page */

#define KERNEL_STACK_SIZE (256 * 1024)
#define FAULT_STACK_SIZE (32 * 1024)

#define COM1 0x3f8
#define QEMU_EXIT_PORT 0xf4
#define QEMU_EXIT_VALUE_FAILURE 0x11

/* The physical address of a higher-half symbol, for code running at its
 * load address. */
#define PHYS(sym) ((sym) - KERNEL_VMA_BASE)

    .section .multiboot, "a"
    .balign 4
multiboot_header:
    .long MB_MAGIC
    .long MB_FLAGS
    .long -(MB_MAGIC + MB_FLAGS)

    .section .boot.text, "ax"
    .code32
    .globl _start
    .type _start, @function
_start:
    cli
    cld
    /* eax = boot loader magic, ebx = Multiboot info (physical). Keep them
     * in ebp and esi: clearing .bss uses eax, ecx and edi, and cpuid
     * overwrites eax, ebx, ecx and edx. */
    movl %eax, %ebp
    movl %ebx, %esi
    movl $PHYS(boot_stack_top), %esp

    movl $PHYS(__bss_start), %edi
    movl $PHYS(__bss_end), %ecx
    subl %edi, %ecx
    xorl %eax, %eax
    rep stosb

    /* Long mode needs CPUID leaf 0x80000001 with EDX bit 29. */
    movl $0x80000000, %eax
    cpuid
    cmpl $0x80000001, %eax
    jb no_long_mode
    movl $0x80000001, %eax
    cpuid
    btl $29, %edx
    jnc no_long_mode

    /* PML4[0] (identity) and PML4[256] (direct map) -> the one PDPT. */
    movl $PHYS(boot_pdpt), %eax
    orl $(PTE_PRESENT | PTE_WRITE), %eax
    movl %eax, PHYS(boot_pml4)
    movl %eax, PHYS(boot_pml4) + KERNEL_PML4_DIRECT * 8

    /* PML4[511] -> the kernel window's PDPT, whose entry 510 (-2 GiB) is
     * the directory of the physical first GiB. */
    movl $PHYS(boot_pdpt_kernel), %eax
    orl $(PTE_PRESENT | PTE_WRITE), %eax
    movl %eax, PHYS(boot_pml4) + KERNEL_PML4_KERNEL * 8
    movl $PHYS(boot_pd), %eax
    orl $(PTE_PRESENT | PTE_WRITE), %eax
    movl %eax, PHYS(boot_pdpt_kernel) + KERNEL_PDPT_KERNEL * 8

    /* PDPT[0..3] -> the four page directories; each of their 2048
     * entries maps 2 MiB, 4 GiB in all. */
    xorl %ecx, %ecx
1:  movl %eax, PHYS(boot_pdpt)(, %ecx, 8)
    addl $4096, %eax
    incl %ecx
    cmpl $4, %ecx
    jb 1b

    /* Entry i of the 2048 maps physical i * 2 MiB: the low dword holds
     * bits 21..31 of the address, the high dword bits 32..33 (i >> 11 is
     * always 0 here, as 2048 entries stop at 4 GiB). .bss is zeroed, so
     * the high dwords already are. */
    xorl %ecx, %ecx
2:  movl %ecx, %eax
    shll $21, %eax
    orl $(PTE_PRESENT | PTE_WRITE | PTE_HUGE), %eax
    movl %eax, PHYS(boot_pd)(, %ecx, 8)
    incl %ecx
    cmpl $2048, %ecx
    jb 2b

    movl $PHYS(boot_pml4), %eax
    movl %eax, %cr3
    movl %cr4, %eax
    orl $CR4_PAE, %eax
    movl %eax, %cr4
    movl $MSR_EFER, %ecx
    rdmsr
    orl $EFER_LME, %eax
    wrmsr
    movl %cr0, %eax
    orl $(CR0_PG | CR0_WP | CR0_PE), %eax
    movl %eax, %cr0

    /* A 32-bit lgdt takes a 32-bit base: the GDT's physical address. */
    lgdt boot_gdt_descriptor
    ljmp $0x08, $long_mode_trampoline

no_long_mode:
    /* No C yet and no long mode: say why on COM1 and fail the run. */
    movl $no_long_mode_message, %esi
3:  lodsb
    testb %al, %al
    jz 4f
    movw $COM1, %dx
    outb %al, %dx
    jmp 3b
4:  movw $QEMU_EXIT_PORT, %dx
    movl $QEMU_EXIT_VALUE_FAILURE, %eax
    outl %eax, %dx
5:  hlt
    jmp 5b
    .size _start, . - _start

    /* 64-bit now, but still at the load address (a far jump from 32-bit
     * code has a 32-bit target): an absolute jump to the higher half. */
    .code64
long_mode_trampoline:
    movabsq $higher_half_entry, %rax
    jmpq *%rax
    .size long_mode_trampoline, . - long_mode_trampoline

    .balign 8
boot_gdt_descriptor:
    .word gdt_end - gdt - 1
    .long PHYS(gdt)

no_long_mode_message:
    .asciz "\nKERNEL PANIC: this CPU has no long mode (x86_64)\n"

    .section .text
higher_half_entry:
    /* The same GDT through its higher-half address, so that dropping the
     * identity map leaves GDTR valid (ltr and every segment load read it). */
    lgdt gdt_descriptor
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorw %ax, %ax
    movw %ax, %fs
    movw %ax, %gs
    movabsq $boot_stack_top, %rsp
    /* Nothing runs from low addresses any more: remove the identity map,
     * so that a stray low pointer (NULL, or a physical address used as a
     * pointer) faults. Reloading CR3 flushes the TLB. */
    movq $0, boot_pml4(%rip)
    movq %cr3, %rax
    movq %rax, %cr3
    /* kernel_main(magic, mbi). 32-bit moves zero-extend, so whatever the
     * upper halves held across the mode switch does not leak in. */
    movl %ebp, %edi
    movl %esi, %esi
    xorl %ebp, %ebp /* the end of the frame-pointer chain */
    call kernel_main
    /* kernel_main never returns; if it did, that is a failed run. */
    movw $QEMU_EXIT_PORT, %dx
    movl $QEMU_EXIT_VALUE_FAILURE, %eax
    outl %eax, %dx
6:  cli
    hlt
    jmp 6b
    .size higher_half_entry, . - higher_half_entry

/* The GDT is writable: ltr marks the TSS descriptor busy in place. */
    .section .data
    .balign 16
    .globl gdt
gdt:
    .quad 0                     /* 0x00 null */
    .quad 0x00af9a000000ffff    /* 0x08 code: 64-bit, ring 0, readable */
    .quad 0x00cf92000000ffff    /* 0x10 data: ring 0, writable */
    /* 0x18 + 16 * cpu: each CPU's TSS, 16 bytes, filled by trap.c */
    .fill 2 * CPU_MAX, 8, 0
gdt_end:
    .globl gdt_descriptor
gdt_descriptor:
    .word gdt_end - gdt - 1
    .quad gdt

    .section .bss.pagetables, "aw", @nobits
    .balign 4096
    .globl boot_pml4, boot_pdpt, boot_pdpt_kernel, boot_pd
boot_pml4:
    .skip 4096
boot_pdpt:
    .skip 4096
boot_pdpt_kernel:
    .skip 4096
boot_pd:
    .skip 4 * 4096

/* Each stack has an unmapped guard page below it (paging.c removes the
 * mapping), so an overflow faults instead of corrupting .bss. */
    .section .bss.stack, "aw", @nobits
    .balign 4096
    .globl kernel_stack_guard, kernel_stack_bottom, boot_stack_top
    .globl fault_stack_guard, fault_stack_top
kernel_stack_guard:
    .skip 4096
kernel_stack_bottom:
    .skip KERNEL_STACK_SIZE
boot_stack_top:
fault_stack_guard:
    .skip 4096
    .skip FAULT_STACK_SIZE
fault_stack_top:

    .section .note.GNU-stack, "", @progbits
