/*
 * kmem.h - the test kernel's memory arenas, built on libvmem.
 */
#ifndef KERNEL_KMEM_H
#define KERNEL_KMEM_H

#include <stdbool.h>
#include <stdint.h>

#include "layout.h"
#include "vmem.h"

/* Physical frames (quantum 4096): the arena's addresses are physical; a
 * frame's pointer is phys_to_virt() of it (lib/layout.h), or kmem_ptr(). */
extern Vmem kmem_phys;
/* The kernel heap: page-granular spans imported from kmem_phys and given
 * back once wholly free; its addresses are physical too. */
extern Vmem kmem_heap;

#define KMEM_FRAME_SIZE 4096

/*
 * Calls vmem_bootstrap(), then builds kmem_phys from every usable range
 * below map_end (memmap_for_each_usable) and kmem_heap on top of it.
 * Panics if any step fails: the tests need both arenas.
 */
void kmem_init(uint64_t map_end);

/* True once kmem_phys can hand out frames (the port's page source checks
 * this before using it). */
bool kmem_ready(void);

/* The pointer to the memory at a physical address that kmem_phys or
 * kmem_heap handed out (vmem_alloc returns it as a void *). */
static inline void *kmem_ptr(const void *phys) { return phys_to_virt((uintptr_t)phys); }

/* Bytes of RAM in kmem_phys's spans when kmem_init() finished. */
uint64_t kmem_phys_bytes(void);

#endif /* KERNEL_KMEM_H */
