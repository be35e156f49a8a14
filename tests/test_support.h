/*
 * test_support.h - helpers shared by the test suites (tests/test_*.c).
 *
 * Snapshots for "the arena is exactly as it was" checks, segment collection
 * through vmem_walk(), misuse-report expectations, and the constraint
 * arithmetic that results are checked against (an independent, brute-force
 * statement of what vmem_xalloc() promises). Freestanding like every test
 * source: only the public API, vtest.h and the compiler's headers.
 */
#ifndef TEST_SUPPORT_H
#define TEST_SUPPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmem.h"
#include "vtest.h"

/* Integer <-> void * conversions used by the void * calls. */
#define TS_PTR(addr) ((void *)(uintptr_t)(addr))
#define TS_ADDR(ptr) ((uintptr_t)(ptr))

/* ---- Observing an arena ------------------------------------------------ */

/* Everything a caller can observe of an arena without changing it. */
struct ts_snapshot {
    size_t in_use, import, total, alloc_count, free_count; /* vmp->stat */
    size_t size_alloc, size_free, size_total;              /* vmem_size() */
    size_t walk_entries;                                   /* spans + segments */
    uint64_t walk_hash;                                    /* of every entry */
    bool consistent;                                       /* vmem_check() == 0 */
};

void ts_snapshot_take(Vmem *vm, struct ts_snapshot *snap);
/* True when both snapshots are identical; prints the first difference. */
bool ts_snapshot_equal(const struct ts_snapshot *before, const struct ts_snapshot *after);

struct ts_segment {
    uintptr_t addr;
    size_t size;
    int type;
};

/* Collects the entries vmem_walk() reports for typemask, in walk order, into
 * out[0..cap). Returns how many were reported (possibly more than cap). */
size_t ts_collect(Vmem *vm, int typemask, struct ts_segment *out, size_t cap);

/* True when vm->stat holds exactly these values. Prints the stats otherwise. */
bool ts_stat_is(Vmem *vm, size_t in_use, size_t import, size_t total, size_t alloc_count,
                size_t free_count);

bool ts_str_eq(const char *a, const char *b);

/* ---- Misuse reports ---------------------------------------------------- */

/* Starts capturing misuse reports, with a zero count. */
void ts_capture_misuse(void);

/*
 * True when exactly one report was captured since ts_capture_misuse(), of
 * the given kind, from the given public call, with a non-empty reason and
 * arena name (equal to `arena` unless that is NULL). Prints what was seen
 * otherwise, so a failure explains itself.
 */
bool ts_misuse_once(VmemMisuseKind kind, const char *call, const char *arena);

/* The last report echoes these arguments. */
bool ts_misuse_echoes(uintptr_t addr, size_t size);

/* ---- Constraints ------------------------------------------------------- */

/*
 * A vmem_xalloc() request in the form the checks use: align is the real
 * alignment (never 0), nocross 0 means no boundary, maxaddr 0 means no
 * upper bound, and not_zero excludes address 0 (the void * calls).
 */
struct ts_request {
    size_t size;
    size_t align;
    size_t phase;
    size_t nocross;
    uintptr_t minaddr;
    uintptr_t maxaddr;
    bool not_zero;
};

/* A request with no constraint beyond size and alignment. */
void ts_request_init(struct ts_request *req, size_t size, size_t align);

/* True when [addr, addr + size) meets every constraint of req (the range
 * itself must not wrap past 2^64). */
bool ts_placement_ok(const struct ts_request *req, uintptr_t addr);

/*
 * The lowest / highest placement of req inside [start, start + len), where
 * start + len may be exactly 2^64. Return false when there is none.
 */
bool ts_lowest_placement(const struct ts_request *req, uintptr_t start, size_t len,
                         uintptr_t *addr);
bool ts_highest_placement(const struct ts_request *req, uintptr_t start, size_t len,
                          uintptr_t *addr);

/*
 * For the policies that define the placement (first-fit, VM_ENDALLOC,
 * best-fit with or without it), is `got` the placement they promise among
 * the free runs [start[i], start[i] + len[i])? True for any other policy.
 */
bool ts_policy_choice_ok(const struct ts_request *req, int policy, uintptr_t got,
                         const uintptr_t *start, const size_t *len, size_t count);

/* Print helpers for diagnostics, each prefixed by a label. */
void ts_note_u64(const char *label, uint64_t value);
void ts_note_hex(const char *label, uint64_t value);

#endif /* TEST_SUPPORT_H */
