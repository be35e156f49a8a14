/*
 * test_api.c - every public call on its own: vmem_init / vmem_create /
 * vmem_destroy, vmem_alloc / vmem_free, vmem_xalloc / vmem_xfree, vmem_add /
 * vmem_add_range, vmem_size, vmem_walk, vmem_contains, vmem_alloc_exact,
 * vmem_xalloc_addr, vmem_dump and vmem_misuse_name; exact statistics after
 * each operation, rounding to the quantum, coalescing and reuse.
 *
 * Each test owns its arena storage (a function-scope static), so a test that
 * fails half-way cannot disturb the next one.
 */
#include "test_support.h"

#define PAGE ((size_t)4096)

static bool init_pages(Vmem *vm, const char *name, uintptr_t base, size_t pages)
{
    return vmem_init(vm, name, TS_PTR(base), pages * PAGE, PAGE, NULL, NULL, NULL, 0, 0) == 0;
}

static bool init_ids(Vmem *vm, const char *name, uintptr_t base, size_t count)
{
    return vmem_init(vm, name, TS_PTR(base), count, 1, NULL, NULL, NULL, 0, 0) == 0;
}

static bool segment_is(const struct ts_segment *seg, uintptr_t addr, size_t size, int type)
{
    return seg->addr == addr && seg->size == size && seg->type == type;
}

/* ---- vmem_init / vmem_create / vmem_destroy ------------------------------ */

static void init_fills_caller_storage_with_initial_span(void)
{
    static Vmem vm;
    struct ts_segment segs[4];
    VT_ASSERT(init_pages(&vm, "api-init", 0x100000, 64));
    VT_ASSERT(ts_str_eq(vm.name, "api-init"));
    VT_ASSERT(vm.quantum == PAGE);
    VT_ASSERT(ts_stat_is(&vm, 0, 0, 64 * PAGE, 0, 0));
    VT_ASSERT(vmem_size(&vm, VMEM_FREE) == 64 * PAGE);
    VT_ASSERT(vmem_size(&vm, VMEM_ALLOC) == 0);
    VT_ASSERT(ts_collect(&vm, VMEM_SPAN, segs, 4) == 1);
    VT_ASSERT(segment_is(&segs[0], 0x100000, 64 * PAGE, VMEM_SPAN));
    VT_ASSERT(ts_collect(&vm, VMEM_FREE, segs, 4) == 1);
    VT_ASSERT(segment_is(&segs[0], 0x100000, 64 * PAGE, VMEM_FREE));
    VT_ASSERT(ts_collect(&vm, VMEM_ALLOC, segs, 4) == 0);
    VT_CONSISTENT(&vm);
    vmem_destroy(&vm);
}

static void init_without_span_holds_nothing(void)
{
    static Vmem vm;
    VT_ASSERT(vmem_init(&vm, "api-empty", NULL, 0, PAGE, NULL, NULL, NULL, 0, 0) == 0);
    VT_ASSERT(ts_stat_is(&vm, 0, 0, 0, 0, 0));
    VT_ASSERT(vmem_size(&vm, VMEM_ALLOC | VMEM_FREE) == 0);
    ts_capture_misuse();
    VT_ASSERT(vmem_alloc(&vm, PAGE, VM_NOSLEEP) == NULL);
    VT_ASSERT(vtest_env_misuse_count() == 0);
    VT_ASSERT(ts_stat_is(&vm, 0, 0, 0, 0, 0));
    VT_CONSISTENT(&vm);
    vmem_destroy(&vm);
}

static void create_returns_a_usable_arena(void)
{
    Vmem *vm = vmem_create("api-create", TS_PTR(0x200000), 16 * PAGE, PAGE, NULL, NULL, NULL, 0,
                           VM_SLEEP);
    VT_ASSERT(vm != NULL);
    VT_ASSERT(ts_str_eq(vm->name, "api-create"));
    VT_ASSERT(vm->quantum == PAGE);
    VT_ASSERT(ts_stat_is(vm, 0, 0, 16 * PAGE, 0, 0));
    void *addr = vmem_alloc(vm, 2 * PAGE, VM_NOSLEEP);
    VT_ASSERT(addr != NULL);
    VT_ASSERT(vmem_contains(vm, addr, 2 * PAGE));
    VT_ASSERT(ts_stat_is(vm, 2 * PAGE, 0, 16 * PAGE, 1, 0));
    VT_CONSISTENT(vm);
    vmem_free(vm, addr, 2 * PAGE);
    VT_ASSERT(ts_stat_is(vm, 0, 0, 16 * PAGE, 1, 1));
    VT_CONSISTENT(vm);
    vmem_destroy(vm);
}

static void create_and_destroy_repeatedly_succeeds(void)
{
    /* Many more cycles than one metadata page holds arenas: storage that
     * vmem_destroy() hands back must make room for the next vmem_create(). */
    for (int round = 0; round < 200; round++) {
        Vmem *vm = vmem_create("api-cycle", TS_PTR(0x1000), 4 * PAGE, PAGE, NULL, NULL, NULL, 0,
                               0);
        VT_ASSERT(vm != NULL);
        void *addr = vmem_alloc(vm, PAGE, VM_NOSLEEP);
        VT_ASSERT(addr != NULL);
        vmem_free(vm, addr, PAGE);
        vmem_destroy(vm);
    }
}

static void created_arenas_are_independent(void)
{
    Vmem *first = vmem_create("api-first", TS_PTR(0x10000), 2 * PAGE, PAGE, NULL, NULL, NULL, 0, 0);
    Vmem *second =
        vmem_create("api-second", TS_PTR(0x10000), 2 * PAGE, PAGE, NULL, NULL, NULL, 0, 0);
    VT_ASSERT(first != NULL && second != NULL && first != second);
    /* The same integers in two arenas are two different resources. */
    VT_ASSERT(vmem_alloc(first, 2 * PAGE, VM_NOSLEEP) == TS_PTR(0x10000));
    VT_ASSERT(vmem_alloc(second, 2 * PAGE, VM_NOSLEEP) == TS_PTR(0x10000));
    VT_ASSERT(ts_stat_is(first, 2 * PAGE, 0, 2 * PAGE, 1, 0));
    VT_ASSERT(ts_stat_is(second, 2 * PAGE, 0, 2 * PAGE, 1, 0));
    vmem_free(first, TS_PTR(0x10000), 2 * PAGE);
    VT_ASSERT(ts_stat_is(second, 2 * PAGE, 0, 2 * PAGE, 1, 0));
    vmem_free(second, TS_PTR(0x10000), 2 * PAGE);
    VT_CONSISTENT(first);
    VT_CONSISTENT(second);
    vmem_destroy(first);
    vmem_destroy(second);
}

/* ---- vmem_alloc / vmem_free --------------------------------------------- */

static void alloc_takes_the_low_end_of_a_fresh_span(void)
{
    static Vmem vm;
    VT_ASSERT(init_pages(&vm, "api-alloc", 0x100000, 64));
    void *addr = vmem_alloc(&vm, 3 * PAGE, VM_NOSLEEP);
    VT_ASSERT(addr == TS_PTR(0x100000));
    VT_ASSERT(ts_stat_is(&vm, 3 * PAGE, 0, 64 * PAGE, 1, 0));
    VT_CONSISTENT(&vm);
    vmem_free(&vm, addr, 3 * PAGE);
    VT_ASSERT(ts_stat_is(&vm, 0, 0, 64 * PAGE, 1, 1));
    VT_CONSISTENT(&vm);
    vmem_destroy(&vm);
}

static void alloc_rounds_size_up_to_the_quantum(void)
{
    static Vmem vm;
    VT_ASSERT(init_pages(&vm, "api-round", 0x100000, 8));
    uintptr_t first = TS_ADDR(vmem_alloc(&vm, 1, VM_NOSLEEP));
    uintptr_t second = TS_ADDR(vmem_alloc(&vm, PAGE + 1, VM_NOSLEEP));
    VT_ASSERT(first != 0 && second != 0);
    VT_ASSERT(first % PAGE == 0 && second % PAGE == 0);
    /* Whole quanta are taken: one for 1 unit, two for PAGE + 1 units. */
    VT_ASSERT(ts_stat_is(&vm, 3 * PAGE, 0, 8 * PAGE, 2, 0));
    VT_ASSERT(second >= first + PAGE || first >= second + 2 * PAGE);
    VT_CONSISTENT(&vm);
    /* Either the requested or the rounded size frees the segment. */
    vmem_free(&vm, TS_PTR(first), 1);
    vmem_free(&vm, TS_PTR(second), 2 * PAGE);
    VT_ASSERT(ts_stat_is(&vm, 0, 0, 8 * PAGE, 2, 2));
    VT_CONSISTENT(&vm);
    vmem_destroy(&vm);
}

static void alloc_fails_cleanly_when_nothing_fits(void)
{
    static Vmem vm;
    struct ts_snapshot before, after;
    VT_ASSERT(init_pages(&vm, "api-toobig", 0x100000, 8));
    void *held = vmem_alloc(&vm, 3 * PAGE, VM_NOSLEEP);
    VT_ASSERT(held != NULL);
    ts_snapshot_take(&vm, &before);
    ts_capture_misuse();
    VT_ASSERT(vmem_alloc(&vm, 6 * PAGE, VM_NOSLEEP) == NULL);
    VT_ASSERT(vmem_alloc(&vm, 64 * PAGE, VM_NOSLEEP) == NULL);
    VT_ASSERT(vtest_env_misuse_count() == 0); /* running out is not misuse */
    ts_snapshot_take(&vm, &after);
    VT_ASSERT(ts_snapshot_equal(&before, &after));
    vmem_free(&vm, held, 3 * PAGE);
    vmem_destroy(&vm);
}

static void alloc_without_sleep_flag_fails_instead_of_waiting(void)
{
    static Vmem vm;
    VT_ASSERT(init_pages(&vm, "api-nosleep", 0x100000, 1));
    void *only = vmem_alloc(&vm, PAGE, 0);
    VT_ASSERT(only == TS_PTR(0x100000));
    /* Neither VM_SLEEP nor VM_NOSLEEP: VM_NOSLEEP is the default, so this
     * returns NULL at once (a hang here is the failure). */
    ts_capture_misuse();
    VT_ASSERT(vmem_alloc(&vm, PAGE, 0) == NULL);
    VT_ASSERT(vmem_alloc(&vm, PAGE, VM_BESTFIT) == NULL);
    VT_ASSERT(vtest_env_misuse_count() == 0);
    vmem_free(&vm, only, PAGE);
    VT_CONSISTENT(&vm);
    vmem_destroy(&vm);
}

static void sleep_request_that_fits_succeeds_at_once(void)
{
    static Vmem vm;
    VT_ASSERT(init_pages(&vm, "api-sleep", 0x100000, 4));
    void *addr = vmem_alloc(&vm, 4 * PAGE, VM_SLEEP);
    VT_ASSERT(addr == TS_PTR(0x100000));
    vmem_free(&vm, addr, 4 * PAGE);
    addr = vmem_xalloc(&vm, PAGE, 2 * PAGE, 0, 0, NULL, NULL, VM_SLEEP);
    VT_ASSERT(addr != NULL && TS_ADDR(addr) % (2 * PAGE) == 0);
    vmem_xfree(&vm, addr, PAGE);
    VT_ASSERT(ts_stat_is(&vm, 0, 0, 4 * PAGE, 2, 2));
    VT_CONSISTENT(&vm);
    vmem_destroy(&vm);
}

static void free_makes_the_segment_reusable(void)
{
    static Vmem vm;
    VT_ASSERT(init_pages(&vm, "api-reuse", 0x100000, 4));
    void *first = vmem_alloc(&vm, 4 * PAGE, VM_NOSLEEP);
    VT_ASSERT(first != NULL);
    VT_ASSERT(vmem_alloc(&vm, PAGE, VM_NOSLEEP) == NULL);
    vmem_free(&vm, first, 4 * PAGE);
    void *again = vmem_alloc(&vm, 4 * PAGE, VM_NOSLEEP);
    VT_ASSERT(again == first);
    vmem_free(&vm, again, 4 * PAGE);
    VT_ASSERT(ts_stat_is(&vm, 0, 0, 4 * PAGE, 2, 2));
    VT_CONSISTENT(&vm);
    vmem_destroy(&vm);
}

/* ---- vmem_xalloc / vmem_xfree / vmem_xalloc_addr / vmem_alloc_exact ------ */

static void xalloc_and_xfree_round_trip(void)
{
    static Vmem vm;
    VT_ASSERT(init_pages(&vm, "api-xalloc", 0x100000, 32));
    void *addr = vmem_xalloc(&vm, 2 * PAGE, 0, 0, 0, NULL, NULL, VM_NOSLEEP);
    VT_ASSERT(addr != NULL);
    VT_ASSERT(vmem_contains(&vm, addr, 2 * PAGE));
    VT_ASSERT(ts_stat_is(&vm, 2 * PAGE, 0, 32 * PAGE, 1, 0));
    VT_CONSISTENT(&vm);
    vmem_xfree(&vm, addr, 2 * PAGE);
    VT_ASSERT(ts_stat_is(&vm, 0, 0, 32 * PAGE, 1, 1));
    VT_CONSISTENT(&vm);
    vmem_destroy(&vm);
}

static void xalloc_addr_stores_the_address_and_treats_max_zero_as_unbounded(void)
{
    static Vmem vm;
    uintptr_t addr = 0;
    VT_ASSERT(init_pages(&vm, "api-xaddr", 0x100000, 8));
    VT_ASSERT(vmem_xalloc_addr(&vm, 3 * PAGE, 0, 0, 0, 0, 0, VM_NOSLEEP, &addr) == 0);
    VT_ASSERT(addr >= 0x100000 && addr + 3 * PAGE <= 0x100000 + 8 * PAGE);
    VT_ASSERT(ts_stat_is(&vm, 3 * PAGE, 0, 8 * PAGE, 1, 0));
    uintptr_t high = 0;
    VT_ASSERT(vmem_xalloc_addr(&vm, PAGE, 0, 0, 0, 0x100000 + 7 * PAGE, 0, VM_NOSLEEP, &high) ==
              0);
    VT_ASSERT(high == 0x100000 + 7 * PAGE);
    /* A failure is a negative status and leaves *addrp alone. */
    uintptr_t untouched = 0x5a5a;
    ts_capture_misuse();
    VT_ASSERT(vmem_xalloc_addr(&vm, 8 * PAGE, 0, 0, 0, 0, 0, VM_NOSLEEP, &untouched) < 0);
    VT_ASSERT(vtest_env_misuse_count() == 0);
    VT_ASSERT(untouched == 0x5a5a);
    vmem_xfree(&vm, TS_PTR(addr), 3 * PAGE);
    vmem_xfree(&vm, TS_PTR(high), PAGE);
    VT_ASSERT(ts_stat_is(&vm, 0, 0, 8 * PAGE, 2, 2));
    VT_CONSISTENT(&vm);
    vmem_destroy(&vm);
}

static void alloc_exact_takes_exactly_the_requested_range(void)
{
    static Vmem vm;
    struct ts_segment segs[8];
    VT_ASSERT(init_pages(&vm, "api-exact", 0x100000, 16));
    VT_ASSERT(vmem_alloc_exact(&vm, 0x104000, 2 * PAGE, VM_NOSLEEP) == 0);
    VT_ASSERT(ts_stat_is(&vm, 2 * PAGE, 0, 16 * PAGE, 1, 0));
    VT_ASSERT(ts_collect(&vm, VMEM_ALLOC | VMEM_FREE, segs, 8) == 3);
    VT_ASSERT(segment_is(&segs[0], 0x100000, 4 * PAGE, VMEM_FREE));
    VT_ASSERT(segment_is(&segs[1], 0x104000, 2 * PAGE, VMEM_ALLOC));
    VT_ASSERT(segment_is(&segs[2], 0x106000, 10 * PAGE, VMEM_FREE));
    VT_CONSISTENT(&vm);
    vmem_xfree(&vm, TS_PTR(0x104000), 2 * PAGE);
    VT_ASSERT(ts_stat_is(&vm, 0, 0, 16 * PAGE, 1, 1));
    VT_ASSERT(ts_collect(&vm, VMEM_ALLOC | VMEM_FREE, segs, 8) == 1);
    VT_CONSISTENT(&vm);
    vmem_destroy(&vm);
}

static void alloc_exact_fails_on_a_taken_or_foreign_range(void)
{
    static Vmem vm;
    struct ts_snapshot before, after;
    VT_ASSERT(init_pages(&vm, "api-exact-taken", 0x100000, 16));
    VT_ASSERT(vmem_alloc_exact(&vm, 0x104000, 2 * PAGE, VM_NOSLEEP) == 0);
    ts_snapshot_take(&vm, &before);
    /* Whether the library also calls these misuse is left open; they must
     * fail and leave the arena as it was. */
    ts_capture_misuse();
    VT_ASSERT(vmem_alloc_exact(&vm, 0x105000, 2 * PAGE, VM_NOSLEEP) < 0);
    VT_ASSERT(vmem_alloc_exact(&vm, 0x103000, 2 * PAGE, VM_NOSLEEP) < 0);
    VT_ASSERT(vmem_alloc_exact(&vm, 0x10f000, 2 * PAGE, VM_NOSLEEP) < 0);
    VT_ASSERT(vmem_alloc_exact(&vm, 0x200000, PAGE, VM_NOSLEEP) < 0);
    ts_snapshot_take(&vm, &after);
    VT_ASSERT(ts_snapshot_equal(&before, &after));
    vmem_xfree(&vm, TS_PTR(0x104000), 2 * PAGE);
    VT_CONSISTENT(&vm);
    vmem_destroy(&vm);
}

/* ---- vmem_add / vmem_add_range / vmem_contains --------------------------- */

static void add_inserts_disjoint_spans_in_address_order(void)
{
    static Vmem vm;
    struct ts_segment segs[8];
    VT_ASSERT(vmem_init(&vm, "api-add", NULL, 0, PAGE, NULL, NULL, NULL, 0, 0) == 0);
    VT_ASSERT(vmem_add(&vm, TS_PTR(0x80000), 2 * PAGE, VM_NOSLEEP) == TS_PTR(0x80000));
    VT_ASSERT(ts_stat_is(&vm, 0, 0, 2 * PAGE, 0, 0));
    VT_ASSERT(vmem_add(&vm, TS_PTR(0x10000), 4 * PAGE, VM_NOSLEEP) == TS_PTR(0x10000));
    VT_ASSERT(vmem_add_range(&vm, 0x40000, 8 * PAGE, VM_NOSLEEP) == 0);
    VT_ASSERT(ts_stat_is(&vm, 0, 0, 14 * PAGE, 0, 0));
    VT_ASSERT(ts_collect(&vm, VMEM_SPAN, segs, 8) == 3);
    VT_ASSERT(segment_is(&segs[0], 0x10000, 4 * PAGE, VMEM_SPAN));
    VT_ASSERT(segment_is(&segs[1], 0x40000, 8 * PAGE, VMEM_SPAN));
    VT_ASSERT(segment_is(&segs[2], 0x80000, 2 * PAGE, VMEM_SPAN));
    VT_ASSERT(ts_collect(&vm, VMEM_FREE, segs, 8) == 3);
    VT_ASSERT(segment_is(&segs[0], 0x10000, 4 * PAGE, VMEM_FREE));
    VT_ASSERT(segment_is(&segs[1], 0x40000, 8 * PAGE, VMEM_FREE));
    VT_ASSERT(segment_is(&segs[2], 0x80000, 2 * PAGE, VMEM_FREE));
    VT_CONSISTENT(&vm);
    /* Each span serves allocations. */
    VT_ASSERT(vmem_alloc(&vm, 8 * PAGE, VM_NOSLEEP) == TS_PTR(0x40000));
    vmem_free(&vm, TS_PTR(0x40000), 8 * PAGE);
    vmem_destroy(&vm);
}

static void add_extends_an_arena_with_an_initial_span(void)
{
    static Vmem vm;
    VT_ASSERT(init_pages(&vm, "api-add-more", 0x100000, 2));
    void *a = vmem_alloc(&vm, 2 * PAGE, VM_NOSLEEP);
    VT_ASSERT(a != NULL);
    VT_ASSERT(vmem_alloc(&vm, 3 * PAGE, VM_NOSLEEP) == NULL);
    VT_ASSERT(vmem_add(&vm, TS_PTR(0x300000), 3 * PAGE, VM_NOSLEEP) == TS_PTR(0x300000));
    VT_ASSERT(ts_stat_is(&vm, 2 * PAGE, 0, 5 * PAGE, 1, 0));
    void *b = vmem_alloc(&vm, 3 * PAGE, VM_NOSLEEP);
    VT_ASSERT(b == TS_PTR(0x300000));
    VT_CONSISTENT(&vm);
    vmem_free(&vm, a, 2 * PAGE);
    vmem_free(&vm, b, 3 * PAGE);
    VT_ASSERT(ts_stat_is(&vm, 0, 0, 5 * PAGE, 2, 2));
    vmem_destroy(&vm);
}

static void add_range_accepts_a_span_at_address_zero(void)
{
    static Vmem vm;
    struct ts_segment segs[4];
    VT_ASSERT(vmem_init(&vm, "api-add-zero", NULL, 0, PAGE, NULL, NULL, NULL, 0, 0) == 0);
    VT_ASSERT(vmem_add_range(&vm, 0, 4 * PAGE, VM_NOSLEEP) == 0);
    VT_ASSERT(ts_stat_is(&vm, 0, 0, 4 * PAGE, 0, 0));
    VT_ASSERT(ts_collect(&vm, VMEM_SPAN, segs, 4) == 1);
    VT_ASSERT(segment_is(&segs[0], 0, 4 * PAGE, VMEM_SPAN));
    VT_CONSISTENT(&vm);
    vmem_destroy(&vm);
}

static void allocation_never_straddles_adjacent_spans(void)
{
    static Vmem vm;
    struct ts_segment segs[8];
    VT_ASSERT(vmem_init(&vm, "api-adjacent", NULL, 0, PAGE, NULL, NULL, NULL, 0, 0) == 0);
    VT_ASSERT(vmem_add_range(&vm, 0x10000, 2 * PAGE, VM_NOSLEEP) == 0);
    VT_ASSERT(vmem_add_range(&vm, 0x12000, 2 * PAGE, VM_NOSLEEP) == 0);
    /* Spans are never merged, even when they touch. */
    VT_ASSERT(ts_collect(&vm, VMEM_FREE, segs, 8) == 2);
    VT_ASSERT(segment_is(&segs[0], 0x10000, 2 * PAGE, VMEM_FREE));
    VT_ASSERT(segment_is(&segs[1], 0x12000, 2 * PAGE, VMEM_FREE));
    ts_capture_misuse();
    VT_ASSERT(vmem_alloc(&vm, 3 * PAGE, VM_NOSLEEP) == NULL);
    VT_ASSERT(vmem_alloc(&vm, 4 * PAGE, VM_BESTFIT | VM_NOSLEEP) == NULL);
    VT_ASSERT(vmem_xalloc(&vm, 2 * PAGE, 0, 0, 0, TS_PTR(0x11000), TS_PTR(0x13000),
                          VM_NOSLEEP) == NULL);
    VT_ASSERT(vmem_alloc_exact(&vm, 0x11000, 2 * PAGE, VM_NOSLEEP) < 0);
    VT_ASSERT(vtest_env_misuse_count() == 0);
    VT_ASSERT(ts_stat_is(&vm, 0, 0, 4 * PAGE, 0, 0));
    VT_CONSISTENT(&vm);
    void *low = vmem_alloc(&vm, 2 * PAGE, VM_NOSLEEP);
    void *high = vmem_alloc(&vm, 2 * PAGE, VM_NOSLEEP);
    VT_ASSERT(low != NULL && high != NULL && low != high);
    vmem_free(&vm, low, 2 * PAGE);
    vmem_free(&vm, high, 2 * PAGE);
    /* Freeing both halves does not coalesce across the span boundary. */
    VT_ASSERT(ts_collect(&vm, VMEM_FREE, segs, 8) == 2);
    VT_CONSISTENT(&vm);
    vmem_destroy(&vm);
}

static void contains_is_true_only_within_one_span(void)
{
    static Vmem vm;
    VT_ASSERT(vmem_init(&vm, "api-contains", NULL, 0, PAGE, NULL, NULL, NULL, 0, 0) == 0);
    VT_ASSERT(vmem_add_range(&vm, 0x10000, 4 * PAGE, VM_NOSLEEP) == 0);
    VT_ASSERT(vmem_add_range(&vm, 0x14000, 4 * PAGE, VM_NOSLEEP) == 0);
    VT_ASSERT(vmem_add_range(&vm, 0x30000, 2 * PAGE, VM_NOSLEEP) == 0);
    VT_ASSERT(vmem_contains(&vm, TS_PTR(0x10000), 4 * PAGE));
    VT_ASSERT(vmem_contains(&vm, TS_PTR(0x11000), 2 * PAGE));
    VT_ASSERT(vmem_contains(&vm, TS_PTR(0x17000), PAGE));
    VT_ASSERT(vmem_contains(&vm, TS_PTR(0x30000), 2 * PAGE));
    VT_ASSERT(!vmem_contains(&vm, TS_PTR(0x13000), 2 * PAGE)); /* straddles two spans */
    VT_ASSERT(!vmem_contains(&vm, TS_PTR(0x18000), PAGE));     /* just past the end */
    VT_ASSERT(!vmem_contains(&vm, TS_PTR(0xf000), 2 * PAGE));  /* starts before */
    VT_ASSERT(!vmem_contains(&vm, TS_PTR(0x31000), 2 * PAGE)); /* runs off the end */
    VT_ASSERT(!vmem_contains(&vm, TS_PTR(0x20000), PAGE));     /* in no span */
    /* Allocation state does not matter: contains is about spans. */
    void *addr = vmem_alloc(&vm, 2 * PAGE, VM_NOSLEEP);
    VT_ASSERT(addr != NULL);
    VT_ASSERT(vmem_contains(&vm, addr, 2 * PAGE));
    vmem_free(&vm, addr, 2 * PAGE);
    vmem_destroy(&vm);
}

/* ---- vmem_size / vmem_walk / vmem_dump ---------------------------------- */

static void size_reports_allocated_free_and_total_units(void)
{
    static Vmem vm;
    VT_ASSERT(init_pages(&vm, "api-size", 0x100000, 20));
    VT_ASSERT(vmem_add_range(&vm, 0x400000, 5 * PAGE, VM_NOSLEEP) == 0);
    void *a = vmem_alloc(&vm, 3 * PAGE, VM_NOSLEEP);
    void *b = vmem_alloc(&vm, 5 * PAGE, VM_NOSLEEP);
    VT_ASSERT(a != NULL && b != NULL);
    VT_ASSERT(vmem_size(&vm, VMEM_ALLOC) == 8 * PAGE);
    VT_ASSERT(vmem_size(&vm, VMEM_FREE) == 17 * PAGE);
    VT_ASSERT(vmem_size(&vm, VMEM_ALLOC | VMEM_FREE) == 25 * PAGE);
    vmem_free(&vm, a, 3 * PAGE);
    VT_ASSERT(vmem_size(&vm, VMEM_ALLOC) == 5 * PAGE);
    VT_ASSERT(vmem_size(&vm, VMEM_FREE) == 20 * PAGE);
    VT_ASSERT(vmem_size(&vm, VMEM_ALLOC | VMEM_FREE) == 25 * PAGE);
    vmem_free(&vm, b, 5 * PAGE);
    VT_ASSERT(vmem_size(&vm, VMEM_ALLOC) == 0);
    vmem_destroy(&vm);
}

static void walk_reports_requested_types_in_address_order(void)
{
    static Vmem vm;
    struct ts_segment segs[8];
    VT_ASSERT(init_pages(&vm, "api-walk", 0x100000, 16));
    VT_ASSERT(vmem_alloc_exact(&vm, 0x10a000, PAGE, VM_NOSLEEP) == 0);
    VT_ASSERT(vmem_alloc_exact(&vm, 0x104000, 2 * PAGE, VM_NOSLEEP) == 0);

    VT_ASSERT(ts_collect(&vm, VMEM_ALLOC, segs, 8) == 2);
    VT_ASSERT(segment_is(&segs[0], 0x104000, 2 * PAGE, VMEM_ALLOC));
    VT_ASSERT(segment_is(&segs[1], 0x10a000, PAGE, VMEM_ALLOC));

    VT_ASSERT(ts_collect(&vm, VMEM_FREE, segs, 8) == 3);
    VT_ASSERT(segment_is(&segs[0], 0x100000, 4 * PAGE, VMEM_FREE));
    VT_ASSERT(segment_is(&segs[1], 0x106000, 4 * PAGE, VMEM_FREE));
    VT_ASSERT(segment_is(&segs[2], 0x10b000, 5 * PAGE, VMEM_FREE));

    VT_ASSERT(ts_collect(&vm, VMEM_ALLOC | VMEM_FREE, segs, 8) == 5);
    uintptr_t expect = 0x100000;
    for (size_t i = 0; i < 5; i++) {
        VT_ASSERT(segs[i].addr == expect); /* contiguous, in order */
        VT_ASSERT(segs[i].type == (i % 2 == 0 ? VMEM_FREE : VMEM_ALLOC));
        expect += segs[i].size;
    }
    VT_ASSERT(expect == 0x100000 + 16 * PAGE);

    VT_ASSERT(ts_collect(&vm, VMEM_SPAN, segs, 8) == 1);
    VT_ASSERT(segment_is(&segs[0], 0x100000, 16 * PAGE, VMEM_SPAN));

    VT_ASSERT(ts_collect(&vm, VMEM_SPAN | VMEM_ALLOC | VMEM_FREE, segs, 8) == 6);
    for (size_t i = 1; i < 6; i++)
        VT_ASSERT(segs[i].addr >= segs[i - 1].addr);

    vmem_xfree(&vm, TS_PTR(0x104000), 2 * PAGE);
    vmem_xfree(&vm, TS_PTR(0x10a000), PAGE);
    VT_ASSERT(ts_collect(&vm, VMEM_ALLOC | VMEM_FREE, segs, 8) == 1);
    vmem_destroy(&vm);
}

static void dump_prints_without_changing_the_arena(void)
{
    static Vmem vm;
    struct ts_snapshot before, after;
    VT_ASSERT(init_pages(&vm, "api-dump", 0x100000, 16));
    VT_ASSERT(vmem_add_range(&vm, 0x300000, 4 * PAGE, VM_NOSLEEP) == 0);
    void *a = vmem_alloc(&vm, 3 * PAGE, VM_NOSLEEP);
    void *b = vmem_xalloc(&vm, PAGE, 4 * PAGE, PAGE, 0, NULL, NULL, VM_NOSLEEP);
    VT_ASSERT(a != NULL && b != NULL);
    ts_snapshot_take(&vm, &before);
    vmem_dump(&vm);
    ts_snapshot_take(&vm, &after);
    VT_ASSERT(ts_snapshot_equal(&before, &after));
    vmem_free(&vm, a, 3 * PAGE);
    vmem_xfree(&vm, b, PAGE);
    vmem_destroy(&vm);
}

static void misuse_names_are_distinct_and_nonempty(void)
{
    const char *names[VMEM_MISUSE_CANNOT_SLEEP + 1];
    for (int kind = VMEM_MISUSE_NOT_ARENA; kind <= VMEM_MISUSE_CANNOT_SLEEP; kind++) {
        names[kind] = vmem_misuse_name((VmemMisuseKind)kind);
        VT_ASSERT(names[kind] != NULL && names[kind][0] != '\0');
        for (int other = VMEM_MISUSE_NOT_ARENA; other < kind; other++)
            VT_ASSERT(!ts_str_eq(names[kind], names[other]));
    }
}

/* ---- Statistics, coalescing, reuse -------------------------------------- */

static void stats_are_exact_after_each_operation(void)
{
    static Vmem vm;
    VT_ASSERT(init_pages(&vm, "api-stats", 0x100000, 32));
    void *a = vmem_alloc(&vm, 2 * PAGE, VM_NOSLEEP);
    VT_ASSERT(a != NULL);
    VT_ASSERT(ts_stat_is(&vm, 2 * PAGE, 0, 32 * PAGE, 1, 0));
    void *b = vmem_xalloc(&vm, 3 * PAGE, 4 * PAGE, 0, 0, NULL, NULL, VM_NOSLEEP);
    VT_ASSERT(b != NULL);
    VT_ASSERT(ts_stat_is(&vm, 5 * PAGE, 0, 32 * PAGE, 2, 0));
    VT_ASSERT(vmem_alloc_exact(&vm, 0x100000 + 31 * PAGE, PAGE, VM_NOSLEEP) == 0);
    VT_ASSERT(ts_stat_is(&vm, 6 * PAGE, 0, 32 * PAGE, 3, 0));
    uintptr_t c = 0;
    VT_ASSERT(vmem_xalloc_addr(&vm, PAGE, 0, 0, 0, 0, 0, VM_NOSLEEP, &c) == 0);
    VT_ASSERT(ts_stat_is(&vm, 7 * PAGE, 0, 32 * PAGE, 4, 0));
    VT_ASSERT(vmem_add_range(&vm, 0x800000, 8 * PAGE, VM_NOSLEEP) == 0);
    VT_ASSERT(ts_stat_is(&vm, 7 * PAGE, 0, 40 * PAGE, 4, 0));
    vmem_free(&vm, a, 2 * PAGE);
    VT_ASSERT(ts_stat_is(&vm, 5 * PAGE, 0, 40 * PAGE, 4, 1));
    vmem_xfree(&vm, b, 3 * PAGE);
    VT_ASSERT(ts_stat_is(&vm, 2 * PAGE, 0, 40 * PAGE, 4, 2));
    vmem_xfree(&vm, TS_PTR(0x100000 + 31 * PAGE), PAGE);
    vmem_xfree(&vm, TS_PTR(c), PAGE);
    VT_ASSERT(ts_stat_is(&vm, 0, 0, 40 * PAGE, 4, 4));
    VT_CONSISTENT(&vm);
    vmem_destroy(&vm);
}

/*
 * The coalescing tests use IDs [100, 200) cut into guard [100, 120),
 * a [120, 130), b [130, 140), c [140, 150), guard [150, 200), all allocated
 * exactly, so the only free segments are the ones the test frees.
 */
static bool cut_into_five(Vmem *vm, const char *name)
{
    return init_ids(vm, name, 100, 100) &&
           vmem_alloc_exact(vm, 100, 20, VM_NOSLEEP) == 0 &&
           vmem_alloc_exact(vm, 120, 10, VM_NOSLEEP) == 0 &&
           vmem_alloc_exact(vm, 130, 10, VM_NOSLEEP) == 0 &&
           vmem_alloc_exact(vm, 140, 10, VM_NOSLEEP) == 0 &&
           vmem_alloc_exact(vm, 150, 50, VM_NOSLEEP) == 0 && vmem_size(vm, VMEM_FREE) == 0;
}

/* The single free segment is [addr, addr + size), and an allocation of
 * exactly that size reuses it; then everything is freed. */
static bool one_free_segment_then_reuse(Vmem *vm, uintptr_t addr, size_t size)
{
    struct ts_segment segs[8];
    if (ts_collect(vm, VMEM_FREE, segs, 8) != 1 || !segment_is(&segs[0], addr, size, VMEM_FREE))
        return false;
    if (vmem_check(vm, NULL) != 0)
        return false;
    void *again = vmem_alloc(vm, size, VM_NOSLEEP);
    if (again != TS_PTR(addr))
        return false;
    vmem_free(vm, again, size);
    return true;
}

static bool free_all_five(Vmem *vm, bool a_live, bool b_live, bool c_live)
{
    vmem_xfree(vm, TS_PTR(100), 20);
    vmem_xfree(vm, TS_PTR(150), 50);
    if (a_live)
        vmem_xfree(vm, TS_PTR(120), 10);
    if (b_live)
        vmem_xfree(vm, TS_PTR(130), 10);
    if (c_live)
        vmem_xfree(vm, TS_PTR(140), 10);
    struct ts_segment segs[4];
    return ts_collect(vm, VMEM_ALLOC | VMEM_FREE, segs, 4) == 1 &&
           segment_is(&segs[0], 100, 100, VMEM_FREE) && vmem_check(vm, NULL) == 0;
}

static void free_coalesces_with_left_neighbour(void)
{
    static Vmem vm;
    VT_ASSERT(cut_into_five(&vm, "api-coalesce-left"));
    vmem_xfree(&vm, TS_PTR(120), 10);
    vmem_xfree(&vm, TS_PTR(130), 10);
    VT_ASSERT(one_free_segment_then_reuse(&vm, 120, 20));
    VT_ASSERT(free_all_five(&vm, false, false, true));
    vmem_destroy(&vm);
}

static void free_coalesces_with_right_neighbour(void)
{
    static Vmem vm;
    VT_ASSERT(cut_into_five(&vm, "api-coalesce-right"));
    vmem_xfree(&vm, TS_PTR(140), 10);
    vmem_xfree(&vm, TS_PTR(130), 10);
    VT_ASSERT(one_free_segment_then_reuse(&vm, 130, 20));
    VT_ASSERT(free_all_five(&vm, true, false, false));
    vmem_destroy(&vm);
}

static void free_coalesces_with_both_neighbours(void)
{
    static Vmem vm;
    VT_ASSERT(cut_into_five(&vm, "api-coalesce-both"));
    vmem_xfree(&vm, TS_PTR(120), 10);
    vmem_xfree(&vm, TS_PTR(140), 10);
    struct ts_segment segs[4];
    VT_ASSERT(ts_collect(&vm, VMEM_FREE, segs, 4) == 2); /* b still separates them */
    vmem_xfree(&vm, TS_PTR(130), 10);
    VT_ASSERT(one_free_segment_then_reuse(&vm, 120, 30));
    VT_ASSERT(free_all_five(&vm, false, false, false));
    vmem_destroy(&vm);
}

static void free_without_free_neighbours_stays_separate(void)
{
    static Vmem vm;
    VT_ASSERT(cut_into_five(&vm, "api-no-coalesce"));
    vmem_xfree(&vm, TS_PTR(130), 10);
    VT_ASSERT(one_free_segment_then_reuse(&vm, 130, 10));
    VT_ASSERT(ts_stat_is(&vm, 90, 0, 100, 6, 2));
    VT_ASSERT(free_all_five(&vm, true, false, true));
    vmem_destroy(&vm);
}

VTEST_SUITE(suite_api,
            VTEST_CASE(init_fills_caller_storage_with_initial_span),
            VTEST_CASE(init_without_span_holds_nothing),
            VTEST_CASE(create_returns_a_usable_arena),
            VTEST_CASE(create_and_destroy_repeatedly_succeeds),
            VTEST_CASE(created_arenas_are_independent),
            VTEST_CASE(alloc_takes_the_low_end_of_a_fresh_span),
            VTEST_CASE(alloc_rounds_size_up_to_the_quantum),
            VTEST_CASE(alloc_fails_cleanly_when_nothing_fits),
            VTEST_CASE(alloc_without_sleep_flag_fails_instead_of_waiting),
            VTEST_CASE(sleep_request_that_fits_succeeds_at_once),
            VTEST_CASE(free_makes_the_segment_reusable),
            VTEST_CASE(xalloc_and_xfree_round_trip),
            VTEST_CASE(xalloc_addr_stores_the_address_and_treats_max_zero_as_unbounded),
            VTEST_CASE(alloc_exact_takes_exactly_the_requested_range),
            VTEST_CASE(alloc_exact_fails_on_a_taken_or_foreign_range),
            VTEST_CASE(add_inserts_disjoint_spans_in_address_order),
            VTEST_CASE(add_extends_an_arena_with_an_initial_span),
            VTEST_CASE(add_range_accepts_a_span_at_address_zero),
            VTEST_CASE(allocation_never_straddles_adjacent_spans),
            VTEST_CASE(contains_is_true_only_within_one_span),
            VTEST_CASE(size_reports_allocated_free_and_total_units),
            VTEST_CASE(walk_reports_requested_types_in_address_order),
            VTEST_CASE(dump_prints_without_changing_the_arena),
            VTEST_CASE(misuse_names_are_distinct_and_nonempty),
            VTEST_CASE(stats_are_exact_after_each_operation),
            VTEST_CASE(free_coalesces_with_left_neighbour),
            VTEST_CASE(free_coalesces_with_right_neighbour),
            VTEST_CASE(free_coalesces_with_both_neighbours),
            VTEST_CASE(free_without_free_neighbours_stays_separate));
