/*
 * paging.c - the kernel's identity map: virtual address == physical address
 * for all RAM, so a frame from the physical arena is a usable pointer.
 *
 * Owns the page-table pages beyond the boot tables: page directories for
 * RAM above 4 GiB and page tables for the few 2 MiB pages split to make
 * guard pages.
 *
 * Invariants:
 *  - Every page-table page lives in memory the map already covers (the
 *    kernel's .bss, or frames below 4 GiB taken and reserved before the
 *    physical arena exists), so the tables can be written through the
 *    identity map and are never handed out as frames.
 *  - Only one PDPT exists: the map ends at 512 GiB, and more RAM than
 *    that is left out (with a message) rather than mapped wrongly.
 *  - Large pages are split only below 4 GiB, inside the boot directories.
 */
#include "paging.h"

#include <stdbool.h>
#include <stddef.h>

#include "cpu.h"
#include "kprintf.h"
#include "memmap.h"

#define PTE_PRESENT 0x1ull
#define PTE_WRITE 0x2ull
#define PTE_HUGE 0x80ull
#define PTE_ADDR_MASK 0x000ffffffffff000ull
#define ENTRIES 512
#define SIZE_2M (2ull << 20)
#define SIZE_1G (1ull << 30)
#define BOOT_MAPPED (4 * SIZE_1G)
#define MAP_LIMIT (512 * SIZE_1G) /* what one PDPT covers */
#define SPLIT_TABLES 4

/* From boot/entry.S. */
extern uint64_t boot_pdpt[ENTRIES], boot_pd[4][ENTRIES];
extern char kernel_stack_guard[], fault_stack_guard[];

static uint64_t split_tables[SPLIT_TABLES][ENTRIES] __attribute__((aligned(4096)));
static size_t split_used;

static void flush_tlb(void)
{
    __asm__ volatile("movq %%cr3, %%rax; movq %%rax, %%cr3" : : : "rax", "memory");
}

/* Replaces the 2 MiB page holding addr with a table of 512 4 KiB pages
 * mapping the same memory, and returns that table. */
static uint64_t *split_2m(uint64_t addr)
{
    if (addr >= BOOT_MAPPED)
        kpanic("paging: cannot split the page at %#lx (above 4 GiB)", (unsigned long)addr);
    uint64_t *pde = &boot_pd[addr / SIZE_1G][(addr / SIZE_2M) % ENTRIES];
    if (!(*pde & PTE_HUGE))
        return (uint64_t *)(uintptr_t)(*pde & PTE_ADDR_MASK);
    if (split_used == SPLIT_TABLES)
        kpanic("paging: out of tables for splitting 2 MiB pages");
    uint64_t *table = split_tables[split_used++];
    uint64_t base = addr & ~(SIZE_2M - 1);
    for (size_t i = 0; i < ENTRIES; i++)
        table[i] = (base + i * PAGE_SIZE) | PTE_PRESENT | PTE_WRITE;
    *pde = (uint64_t)(uintptr_t)table | PTE_PRESENT | PTE_WRITE;
    flush_tlb();
    return table;
}

void paging_unmap_page(uint64_t addr)
{
    uint64_t *table = split_2m(addr);
    table[(addr / PAGE_SIZE) % ENTRIES] = 0;
    cpu_invlpg((uintptr_t)addr);
}

/* Maps [BOOT_MAPPED, end) with 2 MiB pages, one new directory per GiB. */
static void map_high(uint64_t end)
{
    for (uint64_t gib = BOOT_MAPPED / SIZE_1G; gib * SIZE_1G < end; gib++) {
        uint64_t dir_phys = memmap_take_early(1, BOOT_MAPPED, "page directory above 4 GiB");
        if (dir_phys == 0)
            kpanic("paging: no low frame left for a page directory");
        uint64_t *dir = (uint64_t *)(uintptr_t)dir_phys;
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
    /* A NULL dereference must fault, not read the real-mode IVT. */
    paging_unmap_page(0);
    paging_unmap_page((uintptr_t)kernel_stack_guard);
    paging_unmap_page((uintptr_t)fault_stack_guard);

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
    kprintf("paging: identity map [0, %#lx), 2 MiB pages; page 0 and stack guards unmapped\n",
            (unsigned long)end);
    return end;
}
