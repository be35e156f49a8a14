/*
 * classic.h - the classic vmem that `make bench` measures libvmem against.
 *
 * A vmem as the paper describes it and the long-standing kernel
 * implementations build it, written for this benchmark (no code from any
 * of them): one lock per arena, boundary tags on an address-ordered list,
 * one freelist per power of two with a bitmap, allocated segments in a
 * chained hash that doubles with a full rehash, tags recycled last in,
 * first out, and a rotor that next-fit walks the segment list from. It
 * exists so that the project's targets (docs/performance.md), which are
 * stated against existing implementations, are checked in the same process
 * as libvmem rather than against figures from another day: the machine's
 * noise moves both alike.
 *
 * Only what the workloads use: one span, vmem_alloc-style requests with
 * instant-fit, best-fit or next-fit, and aligned requests. Misuse is a bug
 * in the benchmark, so it aborts.
 */
#ifndef CLASSIC_H
#define CLASSIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct classic_arena ClassicArena;

enum { CLASSIC_INSTANTFIT, CLASSIC_BESTFIT, CLASSIC_NEXTFIT };

/* An arena of [base, base + size), base > 0 so that 0 can mean failure. */
ClassicArena *classic_create(uintptr_t base, size_t size, size_t quantum);
void classic_destroy(ClassicArena *arena);

/* 0 when nothing fits. */
uintptr_t classic_alloc(ClassicArena *arena, size_t size, int policy);
uintptr_t classic_xalloc(ClassicArena *arena, size_t size, size_t align, int policy);
void classic_free(ClassicArena *arena, uintptr_t addr, size_t size);

/* Aborts with a message unless every invariant holds; returns the bytes
 * allocated. For the benchmark's untimed checks. */
size_t classic_check(ClassicArena *arena);

/* Bytes of one boundary tag. */
size_t classic_tag_size(void);

#endif
