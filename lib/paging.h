/*
 * paging.h - the kernel's identity map.
 */
#ifndef KERNEL_PAGING_H
#define KERNEL_PAGING_H

#include <stdint.h>

/*
 * Completes the identity map that boot/entry.S started ([0, 4 GiB) in
 * 2 MiB pages): maps RAM from 4 GiB up to ram_top (2 MiB pages, page
 * directories taken with memmap_take_early() from low RAM, which is
 * already mapped), and unmaps page 0 and the guard pages below the two
 * stacks. Returns the end of the identity map: every physical address
 * below it is a usable pointer. Call after memmap_init() and trap_init().
 */
uint64_t paging_init(uint64_t ram_top);

/* Removes the 4 KiB page at addr (below 4 GiB) from the map, splitting
 * its 2 MiB page first. */
void paging_unmap_page(uint64_t addr);

#endif /* KERNEL_PAGING_H */
