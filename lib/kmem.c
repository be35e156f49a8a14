/*
 * kmem.c - the kernel's two arenas: physical frames and the heap.
 *
 * This is where the kernel first uses libvmem, in the order a real kernel
 * must: vmem_bootstrap() before any arena (its static tags are the only
 * memory the allocator has), then the frame arena from the memory map,
 * then arenas that import from it.
 *
 * Invariants:
 *  - kmem_phys holds physical addresses: only usable RAM below the direct
 *    map's end, so phys_to_virt() of every address it returns is a usable
 *    pointer; page 0 is never in it (the first MiB is reserved), so a frame
 *    is never NULL and vmem_alloc's NULL means failure. kmem_heap imports
 *    from it and so holds physical addresses too (a heap of frames, as a
 *    DMA pool would be: its address constraints are physical).
 *  - The port's page source (vmem_port_kernel.c) draws boundary-tag pages
 *    from kmem_phys and hands the allocator their direct-map address, so
 *    tag memory is real RAM that the tests observe.
 */
#include "kmem.h"

#include "kprintf.h"
#include "memmap.h"

Vmem kmem_phys;
Vmem kmem_heap;

static bool phys_ready;
static uint64_t phys_bytes;

bool kmem_ready(void) { return phys_ready; }

uint64_t kmem_phys_bytes(void) { return phys_bytes; }

static void add_range(uint64_t base, uint64_t size, void *arg)
{
    (void)arg;
    /* vmem_add_range: the status return says why a span was refused. */
    int rc = vmem_add_range(&kmem_phys, (uintptr_t)base, (size_t)size, VM_NOSLEEP);
    if (rc != 0)
        kpanic("vmem_add_range(phys, %#lx, %#lx) failed: %d", (unsigned long)base,
               (unsigned long)size, rc);
    phys_bytes += size;
}

void kmem_init(uint64_t map_end)
{
    vmem_bootstrap();

    if (vmem_init(&kmem_phys, "phys", NULL, 0, KMEM_FRAME_SIZE, NULL, NULL, NULL, 0,
                  VM_NOSLEEP) != 0)
        kpanic("vmem_init(phys) failed");
    memmap_for_each_usable(map_end, add_range, NULL);
    if (phys_bytes == 0)
        kpanic("no usable RAM for the frame arena");
    phys_ready = true;

    /* The heap starts empty: every span it has is imported from phys with
     * vmem_xalloc (afunc vmem_alloc), so its constraints reach phys. */
    if (vmem_init(&kmem_heap, "kheap", NULL, 0, KMEM_FRAME_SIZE, vmem_alloc, vmem_free,
                  &kmem_phys, 0, VM_NOSLEEP) != 0)
        kpanic("vmem_init(kheap) failed");

    kprintf("kmem: phys arena %lu KiB in %zu frames; kheap imports from phys\n",
            (unsigned long)(phys_bytes >> 10), (size_t)(phys_bytes / KMEM_FRAME_SIZE));
}
