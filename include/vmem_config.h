/*
 * vmem_config.h - compile-time options of libvmem.
 *
 * Every option is an #ifndef default, so a kernel can override any of them
 * with -D or by naming its own header in VMEM_CONFIG_HEADER (included first).
 * The static assertions at the bottom reject combinations the allocator
 * cannot honour, at compile time rather than at boot.
 *
 * The library's sources include this file, and so does vmem_port.h, since
 * a port needs VMEM_PAGE_SIZE and the port options; the public header
 * vmem.h stays free of anything but <stddef.h>, <stdint.h> and <stdbool.h>.
 * A port file may be written in any C from C89 on, or C++: this file keeps
 * to what all of them accept.
 */
#ifndef VMEM_CONFIG_H
#define VMEM_CONFIG_H

#ifdef VMEM_CONFIG_HEADER
#include VMEM_CONFIG_HEADER
#endif

/* Size of one page handed out by vmem_port_page_alloc(); boundary tags and
 * hash tables are carved from pages of this size. */
#ifndef VMEM_PAGE_SIZE
#define VMEM_PAGE_SIZE 4096
#endif

/* Boundary tags in the static pool that vmem_bootstrap() hands to the
 * allocator, so arenas work before any page source does. */
#ifndef VMEM_BOOTSTRAP_TAGS
#define VMEM_BOOTSTRAP_TAGS 256
#endif

/* Tags the global pool keeps back for VM_BOOTSTRAP requests: a kernel's page
 * source allocates the pages that refill the pool from an arena, and that
 * allocation must never need a refill itself. Ordinary requests that would
 * dip below this level refill from the page source first, and fail cleanly
 * (VM_NOSLEEP) if it has nothing. */
#ifndef VMEM_TAG_RESERVE
#define VMEM_TAG_RESERVE 32
#endif

/* 1: the port provides the vmem_port_cond_* hooks (vmem_port.h) and
 * VM_SLEEP waits on them. 0, for a port without a scheduler: VM_SLEEP then
 * never waits and a VM_SLEEP request that cannot be satisfied is reported
 * as misuse. The default is 1 in a hosted build (the POSIX port sleeps on
 * pthread condition variables) and 0 in a freestanding one, so that a
 * kernel without a scheduler links without the cond hooks; a kernel that
 * can sleep says -DVMEM_PORT_CAN_SLEEP=1. */
#ifndef VMEM_PORT_CAN_SLEEP
#if defined(__STDC_HOSTED__) && __STDC_HOSTED__ == 1
#define VMEM_PORT_CAN_SLEEP 1
#else
#define VMEM_PORT_CAN_SLEEP 0
#endif
#endif

/* Per-CPU magazine pairs in each quantum cache: vmem_port_cpu_enter()
 * returns an index below this. */
#ifndef VMEM_MAX_CPUS
#define VMEM_MAX_CPUS 16
#endif

/* Quantum caches an arena can have: one per multiple of the quantum up to
 * qcache_max, at most this many (larger qcache_max is clamped). */
#ifndef VMEM_QCACHE_MAX_CACHES
#define VMEM_QCACHE_MAX_CACHES 16
#endif

/* Objects a quantum-cache magazine holds. A CPU visits the depot (the
 * cache's lock, lines other CPUs write) when both its magazines run empty
 * or full, so larger ones make that rarer, at the price of more objects
 * held per CPU. 31 fills 512 bytes with the magazine's header. */
#ifndef VMEM_QCACHE_MAG_ROUNDS
#define VMEM_QCACHE_MAG_ROUNDS 31
#endif

/* Objects in the largest slab: the slab is the next power of two above
 * 3 x qcache_max, so with at most 16 caches it holds at most 64 quanta. */
#define VMEM_QCACHE_SLAB_OBJS 64

/* _Static_assert where the language has it; before C11 and C++11, an array
 * type whose size is negative, and so an error, when the condition fails. */
#if defined(__cplusplus) && __cplusplus >= 201103L
#define VMEM_STATIC_ASSERT(condition, message) static_assert(condition, message)
#elif !defined(__cplusplus) && defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
#define VMEM_STATIC_ASSERT(condition, message) _Static_assert(condition, message)
#else
#define VMEM_STATIC_ASSERT_NAME(line) VMEM_STATIC_ASSERT_NAME2(line)
#define VMEM_STATIC_ASSERT_NAME2(line) vmem_static_assert_line_##line
#define VMEM_STATIC_ASSERT(condition, message) \
    typedef char VMEM_STATIC_ASSERT_NAME(__LINE__)[(condition) ? 1 : -1]
#endif

VMEM_STATIC_ASSERT(VMEM_MAX_CPUS >= 1, "VMEM_MAX_CPUS must be at least 1");
VMEM_STATIC_ASSERT(VMEM_QCACHE_MAX_CACHES >= 1 && VMEM_QCACHE_MAX_CACHES <= 16,
                   "a slab's objects are tracked in one 64-bit word: at most 16 caches");
VMEM_STATIC_ASSERT(VMEM_PAGE_SIZE >= 1024 && (VMEM_PAGE_SIZE & (VMEM_PAGE_SIZE - 1)) == 0,
                   "VMEM_PAGE_SIZE must be a power of two of at least 1 KiB");
/* (vmem_tags.c also needs a whole Vmem to fit in one page, for
 * vmem_create(): 4 KiB on LP64, 2 KiB on 32-bit targets.) */
VMEM_STATIC_ASSERT(VMEM_TAG_RESERVE >= 8,
                   "VMEM_TAG_RESERVE must cover at least two nested worst-case operations");
VMEM_STATIC_ASSERT(VMEM_BOOTSTRAP_TAGS >= 2 * VMEM_TAG_RESERVE,
                   "the static pool must hold the reserve and leave room for real work");
VMEM_STATIC_ASSERT(VMEM_PORT_CAN_SLEEP == 0 || VMEM_PORT_CAN_SLEEP == 1,
                   "VMEM_PORT_CAN_SLEEP is 0 or 1");
VMEM_STATIC_ASSERT(VMEM_QCACHE_MAG_ROUNDS >= 2 && VMEM_QCACHE_MAG_ROUNDS <= 200,
                   "a magazine holds 2 to 200 objects (it must fit in a page)");

#endif /* VMEM_CONFIG_H */
