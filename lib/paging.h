/*
 * paging.h - completing the kernel's address layout (lib/layout.h).
 */
#ifndef KERNEL_PAGING_H
#define KERNEL_PAGING_H

#include <stdint.h>

/*
 * Completes the direct map that boot/entry.S started (physical [0, 4 GiB)
 * at KERNEL_DIRECT_MAP, 2 MiB pages): maps RAM from 4 GiB up to ram_top
 * (page directories taken with memmap_take_early() from low RAM, which is
 * already mapped), and unmaps the guard pages below the two stacks.
 * Returns the end of the direct map, a physical address: every physical
 * address below it has a pointer, phys_to_virt(). Call after memmap_init()
 * and trap_init().
 */
uint64_t paging_init(uint64_t ram_top);

/* Removes the 4 KiB page of the kernel image at addr (a kernel-window
 * address) from the map, from the direct map too, splitting its 2 MiB
 * page first. */
void paging_unmap_kernel_page(const void *addr);

/* Makes the direct map's 4 KiB page at phys (below 4 GiB: device
 * registers such as the LAPIC's) uncached, splitting its 2 MiB page, and
 * returns its address. */
void *paging_map_uncached(uint64_t phys);

#endif /* KERNEL_PAGING_H */
