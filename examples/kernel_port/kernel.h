/*
 * kernel.h - the little "kernel" around the example port: what the port
 * needs from it (a console, a way to halt, interrupt save/restore), and
 * what the example's kernel_main sets up (the arenas and their helpers).
 *
 * This directory is the minimal port that the README's port checklist and
 * docs/porting.md walk through, for a kernel with spinlocks and no
 * scheduler:
 *   vmem_port_example.c  every vmem_port_* hook
 *   kernel_vmem.c        a kernel_main-style setup: physical frames, kernel
 *                        virtual memory importing from them through a mapping
 *                        callback, a heap with quantum caches, an ID arena
 *   kernel_stubs.c       console / halt / entry point of a freestanding build
 *   host_main.c          a hosted main that runs the example and checks it
 * It uses only the public headers (vmem.h, vmem_port.h) and compiler
 * headers: it builds freestanding for every architecture in tools/cross.mk.
 */
#ifndef EXAMPLE_KERNEL_H
#define EXAMPLE_KERNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmem.h"

/* ---- Provided by the kernel (kernel_stubs.c, or host_main.c) ------------- */

/* Writes text to the console. Must not allocate or take vmem locks. */
void kernel_console_write(const char *text);

/* Stops this CPU for good. */
void kernel_halt(void)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((noreturn))
#endif
    ;

/* ---- The port's extras (vmem_port_example.c) ------------------------------ */

#define KERNEL_PAGE_SIZE 4096

/* Misuse reports the port has seen (it records them; see kernel_misuse_panics). */
struct kernel_misuse_log {
    size_t count;
    VmemMisuse last;
};
extern struct kernel_misuse_log kernel_misuse_log;

/* When true (the default) misuse panics, as a kernel usually wants; a test
 * that provokes misuse on purpose sets it to false, and the misused call
 * then fails with the arena unchanged. */
extern bool kernel_misuse_panics;

/* Pages of the static pool handed out by vmem_port_page_alloc() and not
 * given back, and calls that found the pool exhausted. */
size_t kernel_page_pool_in_use(void);
size_t kernel_page_pool_failures(void);

/* Times the port saw its contract broken: the page source or the misuse
 * hook called with a vmem lock held, an unlock without a lock. 0 always. */
size_t kernel_port_contract_violations(void);

/* ---- The example's arenas (kernel_vmem.c) --------------------------------- */

/* A region of the (pretend) physical memory map. */
struct kernel_mem_region {
    uintptr_t base;
    size_t size;
};

extern Vmem kernel_phys;  /* physical frames */
extern Vmem kernel_kva;   /* kernel virtual memory, mapped, imported from frames */
extern Vmem kernel_heap;  /* byte-granular heap with quantum caches, from kva */
extern Vmem kernel_pids;  /* process IDs */

/* The first PID and how many there are: [KERNEL_PID_FIRST, +KERNEL_PID_COUNT). */
#define KERNEL_PID_FIRST 1
#define KERNEL_PID_COUNT 4096

/* Sets up every arena from the memory map; returns 0, or -1 after saying
 * on the console what failed. Call once, on the boot CPU. */
int kernel_vmem_init(const struct kernel_mem_region *map, size_t nregions);

/* Adds the usable frames of one "available" memory-map region [base, end)
 * to phys: whole pages only (rounded inward), never page 0, and none of a
 * page that holds a byte of a reserved range (the first MiB, the kernel
 * image, the boot loader's structures...; sorted by base). Returns 0, or
 * -1 if vmem_add_range refused a piece (it reports why). */
int kernel_add_frames(Vmem *phys, uint64_t base, uint64_t end,
                      const struct kernel_mem_region *reserved, size_t nreserved);

/* A kernel_main: the memory map of the example's pretend machine, the
 * arenas, and a short demonstration of each. Returns 0 on success. */
int kernel_main(void);

/* The helpers a kernel builds on its arenas. NULL / -1 on failure. */
void *kmalloc(size_t size);
void kfree(void *ptr, size_t size);
void *kernel_map_pages(size_t npages);
void kernel_unmap_pages(void *va, size_t npages);
/* npages physical frames, aligned to `align` bytes and entirely below
 * `below` (0: anywhere), e.g. for a DMA buffer. Returns the physical address. */
uintptr_t kernel_frames_alloc(size_t npages, size_t align, uintptr_t below);
void kernel_frames_free(uintptr_t pa, size_t npages);
long kernel_pid_alloc(void);
void kernel_pid_free(long pid);

/* The pretend machine's physical memory and the kernel's mapping of it. */
#define KERNEL_RAM_PAGES 1024                       /* 4 MiB */
#define KERNEL_RAM_PHYS_BASE ((uintptr_t)0x100000)  /* physical address of page 0 */
extern unsigned char kernel_ram[KERNEL_RAM_PAGES * KERNEL_PAGE_SIZE];
/* Pages currently mapped in the kernel window, and mapping errors (a page
 * mapped twice, or unmapped while not mapped). */
size_t kernel_pages_mapped(void);
size_t kernel_mapping_errors(void);

#endif /* EXAMPLE_KERNEL_H */
