/*
 * layout.h - the test kernel's virtual address layout, and the only place
 * that converts between physical and virtual addresses.
 *
 * Three windows, all set up by boot/entry.S before any C runs:
 *
 *   [0, 4 GiB)                  identity map. Exists only while the 32-bit
 *                               boot code and its 64-bit trampoline run
 *                               from their load address; entry.S removes it
 *                               before kernel_main(), so a NULL (or any
 *                               other low) pointer faults from then on.
 *   KERNEL_DIRECT_MAP + phys    the direct map: every byte of RAM below the
 *                               end paging_init() returns (at most
 *                               512 GiB), 2 MiB pages, read-write.
 *   KERNEL_VMA_BASE + phys      the kernel window: the kernel image, linked
 *                               here (-mcmodel=kernel, top 2 GiB), backed by
 *                               the physical first GiB. Its load addresses
 *                               (LMA) are physical, from 1 MiB up.
 *
 * Invariants: the frame arena and everything imported from it hold
 * *physical* addresses; code turns them into pointers with phys_to_virt()
 * only, and pointers into RAM back with virt_to_phys() only. The kernel
 * window and the direct map share the page directory of the first GiB, so
 * a page unmapped there (a stack guard) is gone from both.
 *
 * Usable from assembly (constants only) and from C.
 */
#ifndef KERNEL_LAYOUT_H
#define KERNEL_LAYOUT_H

/* Must equal KERNEL_VMA in boot/kernel.ld (paging_init checks it). */
#define KERNEL_VMA_BASE 0xffffffff80000000
/* PML4 entry 256: the first address of the upper canonical half. */
#define KERNEL_DIRECT_MAP 0xffff800000000000
/* PML4 and PDPT indexes of the windows (entry.S builds them). */
#define KERNEL_PML4_DIRECT 256
#define KERNEL_PML4_KERNEL 511
#define KERNEL_PDPT_KERNEL 510
/* The kernel window maps the physical first GiB: the image must fit. */
#define KERNEL_WINDOW_SIZE 0x40000000

/* CPUs the kernel brings up at most (lib/smp.c; the GDT has a TSS slot
 * for each). */
#define CPU_MAX 8
/* The page the other CPUs start in (real mode, so below 1 MiB, and a
 * start-up IPI names it by its page number). memmap.c checks that it is
 * free RAM and keeps it out of the frame arena; boot/ap_start.S is copied
 * there. */
#define AP_TRAMPOLINE_PHYS 0x8000

#ifndef __ASSEMBLER__
#include <stdint.h>

/* A physical address of RAM as a pointer, through the direct map. */
static inline void *phys_to_virt(uint64_t phys)
{
    return (void *)(uintptr_t)(phys + KERNEL_DIRECT_MAP);
}

/* The physical address behind a direct-map pointer. */
static inline uint64_t virt_to_phys(const void *virt)
{
    return (uint64_t)(uintptr_t)virt - KERNEL_DIRECT_MAP;
}

/* The physical address behind a pointer into the kernel image (a static
 * variable, a stack, a page table in .bss). */
static inline uint64_t kernel_virt_to_phys(const void *virt)
{
    return (uint64_t)(uintptr_t)virt - KERNEL_VMA_BASE;
}
#endif

#endif /* KERNEL_LAYOUT_H */
