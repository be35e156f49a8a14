/*
 * memmap.h - the machine's physical memory as the boot loader described it,
 * minus what the kernel must not hand out. Every address in this interface
 * is physical.
 */
#ifndef KERNEL_MEMMAP_H
#define KERNEL_MEMMAP_H

#include <stddef.h>
#include <stdint.h>

#define PAGE_SIZE 4096ull

/*
 * Reads the Multiboot information: copies the memory map, and reserves
 * the first MiB, the kernel image's physical [__kernel_phys_start,
 * __kernel_phys_end) and every
 * Multiboot structure (the info block, the map, the command line, the boot
 * loader name, the module list and the modules). Panics if the kernel was
 * not started by a Multiboot loader or got no memory map.
 */
void memmap_init(uint32_t magic, uint32_t mbi_phys);

/* Prints the memory map and the reserved ranges. */
void memmap_print(void);

/* End of the highest available RAM region. */
uint64_t memmap_ram_top(void);

/* Keeps [base, base + size), rounded out to pages, out of every usable
 * range. */
void memmap_reserve(uint64_t base, uint64_t size, const char *what);

/*
 * Takes `pages` contiguous frames from usable RAM below `limit` (the
 * highest that fit), reserves them under `what` and returns their address;
 * 0 if none fit. For the page tables that exist before any allocator does.
 */
uint64_t memmap_take_early(size_t pages, uint64_t limit, const char *what);

/* Calls fn for each usable range, in address order: available RAM minus the
 * reserved ranges, page-aligned, and clipped to [0, limit). */
typedef void MemmapRangeFn(uint64_t base, uint64_t size, void *arg);
void memmap_for_each_usable(uint64_t limit, MemmapRangeFn *fn, void *arg);

#endif /* KERNEL_MEMMAP_H */
