/*
 * paging.c - completes the address layout of lib/layout.h: the direct map
 * of all RAM (entry.S mapped its first 4 GiB) and the guard pages.
 *
 * Owns the page-table pages beyond the boot tables: page directories for
 * the direct map above 4 GiB and page tables for the few 2 MiB pages split
 * to make guard pages.
 *
 * Invariants:
 *  - Page tables hold physical addresses; this file writes them through
 *    the direct map (phys_to_virt) or, for tables inside the image,
 *    through the kernel window, and converts with kernel_virt_to_phys().
 *  - Every page-table page lives in memory the map already covers (the
 *    kernel's .bss, or frames below 4 GiB taken and reserved before the
 *    physical arena exists), so it is never handed out as a frame.
 *  - Only one PDPT serves the direct map: it ends at 512 GiB, and more RAM
 *    than that is left out (with a message) rather than mapped wrongly.
 *  - Page tables change only while the boot CPU runs alone (before
 *    smp.c starts the others), so no other CPU's TLB needs a flush.
 *  - Device registers (the LAPIC) are mapped uncached, as 4 KiB pages of
 *    the direct map; RAM is mapped write-back.
 *  - Large pages are split only in the first 4 GiB, inside the boot
 *    directories. The kernel window shares the first directory with the
 *    direct map, so a split (and an unmapped guard page) shows in both;
 *    both virtual addresses are flushed from the TLB.
 */
#include "paging.h"

#include <stdbool.h>
#include <stddef.h>

#include "cpu.h"
#include "kprintf.h"
#include "layout.h"
#include "memmap.h"

#define PTE_PRESENT 0x1ull
#define PTE_WRITE 0x2ull
#define PTE_WRITE_THROUGH 0x8ull
#define PTE_CACHE_DISABLE 0x10ull
#define PTE_HUGE 0x80ull
#define PTE_ADDR_MASK 0x000ffffffffff000ull
#define ENTRIES 512
#define SIZE_2M (2ull << 20)
#define SIZE_1G (1ull << 30)
#define BOOT_MAPPED (4 * SIZE_1G)
#define MAP_LIMIT (512 * SIZE_1G) /* what one PDPT covers */
#define SPLIT_TABLES 8

/* From boot/entry.S and boot/kernel.ld. */
extern uint64_t boot_pml4[ENTRIES], boot_pdpt[ENTRIES], boot_pd[4][ENTRIES];
extern char kernel_stack_guard[], fault_stack_guard[];
extern char __kernel_vma[], __kernel_end[], __kernel_phys_start[];

static uint64_t split_tables[SPLIT_TABLES][ENTRIES] __attribute__((aligned(4096)));
static size_t split_used;

static void flush_tlb(void)
{
    __asm__ volatile("movq %%cr3, %%rax; movq %%rax, %%cr3" : : : "rax", "memory");
}

/* Replaces the 2 MiB page holding physical address phys with a table of
 * 512 4 KiB pages mapping the same memory, and returns that table. */
static uint64_t *split_2m(uint64_t phys)
{
    if (phys >= BOOT_MAPPED)
        kpanic("paging: cannot split the page at %#lx (above 4 GiB)", (unsigned long)phys);
    uint64_t *pde = &boot_pd[phys / SIZE_1G][(phys / SIZE_2M) % ENTRIES];
    if (!(*pde & PTE_HUGE))
        return phys_to_virt(*pde & PTE_ADDR_MASK);
    if (split_used == SPLIT_TABLES)
        kpanic("paging: out of tables for splitting 2 MiB pages");
    uint64_t *table = split_tables[split_used++];
    uint64_t base = phys & ~(SIZE_2M - 1);
    for (size_t i = 0; i < ENTRIES; i++)
        table[i] = (base + i * PAGE_SIZE) | PTE_PRESENT | PTE_WRITE;
    *pde = kernel_virt_to_phys(table) | PTE_PRESENT | PTE_WRITE;
    flush_tlb();
    return table;
}

void paging_unmap_kernel_page(const void *addr)
{
    uint64_t phys = kernel_virt_to_phys(addr);
    uint64_t *table = split_2m(phys);
    table[(phys / PAGE_SIZE) % ENTRIES] = 0;
    cpu_invlpg((uintptr_t)addr);
    cpu_invlpg((uintptr_t)phys_to_virt(phys));
}

void *paging_map_uncached(uint64_t phys)
{
    phys &= ~(PAGE_SIZE - 1);
    uint64_t *table = split_2m(phys);
    table[(phys / PAGE_SIZE) % ENTRIES] |= PTE_CACHE_DISABLE | PTE_WRITE_THROUGH;
    void *virt = phys_to_virt(phys);
    cpu_invlpg((uintptr_t)virt);
    return virt;
}

/* Maps the direct map's [BOOT_MAPPED, end) with 2 MiB pages, one new
 * directory per GiB. */
static void map_high(uint64_t end)
{
    for (uint64_t gib = BOOT_MAPPED / SIZE_1G; gib * SIZE_1G < end; gib++) {
        uint64_t dir_phys = memmap_take_early(1, BOOT_MAPPED, "page directory above 4 GiB");
        if (dir_phys == 0)
            kpanic("paging: no low frame left for a page directory");
        uint64_t *dir = phys_to_virt(dir_phys);
        for (size_t i = 0; i < ENTRIES; i++) {
            uint64_t phys = gib * SIZE_1G + i * SIZE_2M;
            dir[i] = phys < end ? (phys | PTE_PRESENT | PTE_WRITE | PTE_HUGE) : 0;
        }
        boot_pdpt[gib] = dir_phys | PTE_PRESENT | PTE_WRITE;
    }
    flush_tlb();
}

uint64_t paging_init(uint64_t ram_top)
{
    /* The linker script and layout.h must agree on where the kernel is. */
    if ((uintptr_t)__kernel_vma != KERNEL_VMA_BASE)
        kpanic("paging: kernel.ld links at %p, layout.h says %#lx", (void *)__kernel_vma,
               (unsigned long)KERNEL_VMA_BASE);
    /* entry.S removed the identity map before kernel_main(). */
    if (boot_pml4[0] != 0)
        kpanic("paging: the boot identity map is still present");

    paging_unmap_kernel_page(kernel_stack_guard);
    paging_unmap_kernel_page(fault_stack_guard);

    uint64_t end = (ram_top + SIZE_2M - 1) & ~(SIZE_2M - 1);
    if (end > MAP_LIMIT) {
        kprintf("paging: RAM above %lu GiB is left unmapped and unused\n",
                (unsigned long)(MAP_LIMIT / SIZE_1G));
        end = MAP_LIMIT;
    }
    if (end > BOOT_MAPPED)
        map_high(end);
    else
        end = BOOT_MAPPED;
    kprintf("paging: kernel image [%p, %p) = physical [%#lx, %#lx); direct map [%p, %p) = "
            "physical [0, %#lx), 2 MiB pages; lower half unmapped; stack guards unmapped\n",
            (void *)(uintptr_t)(KERNEL_VMA_BASE + (uintptr_t)__kernel_phys_start),
            (void *)__kernel_end, (unsigned long)(uintptr_t)__kernel_phys_start,
            (unsigned long)kernel_virt_to_phys(__kernel_end), phys_to_virt(0), phys_to_virt(end),
            (unsigned long)end);
    return end;
}
