/*
 * test_qcache.c - the quantum caches: hits that bypass the arena, slabs
 * going back when unused, draining before a request fails, checked frees
 * (each misuse reported, nothing changed) and exact stats.
 *
 * Freestanding, like every shared suite: it also runs in the test kernel
 * (one CPU there; the multi-threaded stress lives in host_threads.c). A
 * reap or a drain reaches the calling CPU's magazines only, so the host
 * runner keeps the shared suites on one CPU, as the test kernel does.
 */
#include "test_support.h"
#include "vmem_config.h"

#define Q 0x1000
#define BASE 0x40000000UL

/* An arena of `quanta` quanta at BASE with caches up to `cached` quanta. */
static bool make_cached_arena(Vmem *vm, const char *name, size_t quanta, size_t cached)
{
    return vmem_init(vm, name, TS_PTR(BASE), quanta * Q, Q, NULL, NULL, NULL, cached * Q,
                     VM_NOSLEEP) == 0;
}

/* Everything a caller sees through the cache-aware calls. */
struct cache_view {
    VmemStat stat;
    size_t size_alloc, size_free;
};

static void view_take(Vmem *vm, struct cache_view *view)
{
    vmem_stat(vm, &view->stat);
    view->size_alloc = vmem_size(vm, VMEM_ALLOC);
    view->size_free = vmem_size(vm, VMEM_FREE);
}

static bool view_equal(const struct cache_view *a, const struct cache_view *b)
{
    return a->stat.in_use == b->stat.in_use && a->stat.total == b->stat.total &&
           a->stat.alloc == b->stat.alloc && a->stat.free == b->stat.free &&
           a->size_alloc == b->size_alloc && a->size_free == b->size_free;
}

static void cache_hit_returns_the_last_freed_object_without_the_arena(void)
{
    static Vmem vm;
    VT_ASSERT(make_cached_arena(&vm, "qc-hit", 256, 4));
    void *first = vmem_alloc(&vm, Q, VM_NOSLEEP);
    VT_ASSERT(first != NULL);
    vmem_free(&vm, first, Q);
    size_t arena_allocs = vm.stat.alloc; /* the arena layer underneath */
    void *again = vmem_alloc(&vm, Q, VM_NOSLEEP);
    VT_ASSERT(vmem_size(&vm, VMEM_ALLOC) == Q);
    VT_ASSERT(again == first);
    VT_ASSERT(vm.stat.alloc == arena_allocs);
    vmem_free(&vm, again, Q);
    VT_CONSISTENT(&vm);
    vmem_destroy(&vm);
}

static void cached_sizes_are_served_from_slabs(void)
{
    static Vmem vm;
    VT_ASSERT(make_cached_arena(&vm, "qc-slab", 1024, 4));
    void *objects[8];
    for (int i = 0; i < 8; i++) {
        objects[i] = vmem_alloc(&vm, 2 * Q, VM_NOSLEEP);
        VT_ASSERT(objects[i] != NULL);
    }
    /* Eight 2-quantum objects come from one slab: a single arena segment. */
    struct ts_segment segs[8];
    VT_ASSERT(ts_collect(&vm, VMEM_ALLOC, segs, 8) == 1);
    VT_ASSERT(segs[0].size >= 16 * Q);
    for (int i = 0; i < 8; i++) {
        VT_ASSERT(TS_ADDR(objects[i]) >= segs[0].addr &&
                  TS_ADDR(objects[i]) + 2 * Q <= segs[0].addr + segs[0].size);
        vmem_free(&vm, objects[i], 2 * Q);
    }
    vmem_destroy(&vm);
}

static void reaped_slabs_go_back_to_the_arena(void)
{
    static Vmem vm;
    VT_ASSERT(make_cached_arena(&vm, "qc-reap", 1024, 4));
    static void *objects[200];
    for (int i = 0; i < 200; i++) {
        objects[i] = vmem_alloc(&vm, (size_t)(1 + i % 4) * Q, VM_NOSLEEP);
        VT_ASSERT(objects[i] != NULL);
    }
    for (int i = 0; i < 200; i++)
        vmem_free(&vm, objects[i], (size_t)(1 + i % 4) * Q);
    vmem_reap(&vm);
    VT_ASSERT(vm.stat.in_use == 0);
    struct ts_segment segs[2];
    VT_ASSERT(ts_collect(&vm, VMEM_FREE, segs, 2) == 1);
    VT_ASSERT(segs[0].addr == BASE && segs[0].size == 1024 * Q);
    VT_CONSISTENT(&vm);
    vmem_destroy(&vm);
}

static void a_request_drains_the_caches_before_it_fails(void)
{
    static Vmem vm;
    /* 64 quanta; slabs of 16 quanta for caches up to 4 quanta. */
    VT_ASSERT(make_cached_arena(&vm, "qc-drain", 64, 4));
    void *small[4];
    for (int i = 0; i < 4; i++) {
        small[i] = vmem_alloc(&vm, (size_t)(i + 1) * Q, VM_NOSLEEP);
        VT_ASSERT(small[i] != NULL);
    }
    for (int i = 0; i < 4; i++)
        vmem_free(&vm, small[i], (size_t)(i + 1) * Q);
    /* Every quantum now sits free in some cache's slab; the whole arena
     * must still be available. */
    void *all = vmem_alloc(&vm, 64 * Q, VM_NOSLEEP);
    VT_ASSERT(all == TS_PTR(BASE));
    vmem_free(&vm, all, 64 * Q);
    VT_CONSISTENT(&vm);
    vmem_destroy(&vm);
}

static void cached_double_free_is_reported_and_changes_nothing(void)
{
    static Vmem vm;
    VT_ASSERT(make_cached_arena(&vm, "qc-double", 256, 4));
    void *keep = vmem_alloc(&vm, Q, VM_NOSLEEP);
    void *object = vmem_alloc(&vm, Q, VM_NOSLEEP);
    VT_ASSERT(keep != NULL && object != NULL);
    vmem_free(&vm, object, Q);
    struct cache_view before, after;
    view_take(&vm, &before);
    ts_capture_misuse();
    vmem_free(&vm, object, Q);
    VT_ASSERT(ts_misuse_once(VMEM_MISUSE_DOUBLE_FREE, "vmem_free", "qc-double"));
    VT_ASSERT(ts_misuse_echoes(TS_ADDR(object), Q));
    view_take(&vm, &after);
    VT_ASSERT(view_equal(&before, &after));
    /* The object is handed out once, not twice. */
    void *a = vmem_alloc(&vm, Q, VM_NOSLEEP);
    void *b = vmem_alloc(&vm, Q, VM_NOSLEEP);
    VT_ASSERT(a != NULL && b != NULL && a != b);
    vmem_free(&vm, a, Q);
    vmem_free(&vm, b, Q);
    vmem_free(&vm, keep, Q);
    VT_CONSISTENT(&vm);
    vmem_destroy(&vm);
}

static void cached_free_of_an_object_never_handed_out_is_reported(void)
{
    static Vmem vm;
    VT_ASSERT(make_cached_arena(&vm, "qc-never", 256, 4));
    void *object = vmem_alloc(&vm, Q, VM_NOSLEEP);
    VT_ASSERT(object != NULL);
    /* Its slab neighbour exists in the cache but was never allocated. */
    void *neighbour = TS_PTR(TS_ADDR(object) ^ Q);
    struct cache_view before, after;
    view_take(&vm, &before);
    ts_capture_misuse();
    vmem_free(&vm, neighbour, Q);
    VT_ASSERT(ts_misuse_once(VMEM_MISUSE_DOUBLE_FREE, "vmem_free", "qc-never"));
    view_take(&vm, &after);
    VT_ASSERT(view_equal(&before, &after));
    vmem_free(&vm, object, Q);
    vmem_destroy(&vm);
}

static void cached_free_with_the_wrong_size_is_reported(void)
{
    static Vmem vm;
    VT_ASSERT(make_cached_arena(&vm, "qc-size", 256, 4));
    void *object = vmem_alloc(&vm, Q, VM_NOSLEEP);
    VT_ASSERT(object != NULL);
    struct cache_view before, after;
    view_take(&vm, &before);
    ts_capture_misuse();
    vmem_free(&vm, object, 2 * Q);
    VT_ASSERT(ts_misuse_once(VMEM_MISUSE_FREE_WRONG_SIZE, "vmem_free", "qc-size"));
    view_take(&vm, &after);
    VT_ASSERT(view_equal(&before, &after));
    vmem_free(&vm, object, Q);
    VT_ASSERT(vmem_size(&vm, VMEM_ALLOC) == 0);
    vmem_destroy(&vm);
}

static void xfree_of_a_cached_object_is_reported(void)
{
    static Vmem vm;
    VT_ASSERT(make_cached_arena(&vm, "qc-xfree", 256, 4));
    void *object = vmem_alloc(&vm, Q, VM_NOSLEEP);
    VT_ASSERT(object != NULL);
    struct cache_view before, after;
    view_take(&vm, &before);
    ts_capture_misuse();
    vmem_xfree(&vm, object, Q);
    VT_ASSERT(ts_misuse_once(VMEM_MISUSE_FREE_WRONG_CALL, "vmem_xfree", "qc-xfree"));
    view_take(&vm, &after);
    VT_ASSERT(view_equal(&before, &after));
    vmem_free(&vm, object, Q);
    vmem_destroy(&vm);
}

static void stats_count_cached_objects_as_free(void)
{
    static Vmem vm;
    VT_ASSERT(make_cached_arena(&vm, "qc-stats", 512, 8));
    static void *objects[64];
    size_t total = 0;
    for (int i = 0; i < 64; i++) {
        size_t size = (size_t)(1 + i % 8) * Q;
        objects[i] = vmem_alloc(&vm, size, VM_NOSLEEP);
        VT_ASSERT(objects[i] != NULL);
        total += size;
        VT_ASSERT(vmem_size(&vm, VMEM_ALLOC) == total);
    }
    VmemStat stat;
    VT_ASSERT(vmem_stat(&vm, &stat) == 0);
    VT_ASSERT(stat.in_use == total && stat.alloc == 64 && stat.free == 0);
    VT_ASSERT(vmem_size(&vm, VMEM_FREE) == 512 * Q - total);
    for (int i = 0; i < 64; i++) {
        size_t size = (size_t)(1 + i % 8) * Q;
        vmem_free(&vm, objects[i], size);
        total -= size;
        VT_ASSERT(vmem_size(&vm, VMEM_ALLOC) == total);
    }
    VT_ASSERT(vmem_stat(&vm, &stat) == 0);
    VT_ASSERT(stat.in_use == 0 && stat.alloc == 64 && stat.free == 64 && stat.total == 512 * Q);
    vmem_destroy(&vm);
}

static void constrained_and_placement_requests_bypass_the_caches(void)
{
    static Vmem vm;
    VT_ASSERT(make_cached_arena(&vm, "qc-bypass", 256, 4));
    void *x = vmem_xalloc(&vm, Q, 0, 0, 0, NULL, NULL, VM_NOSLEEP);
    void *n = vmem_alloc(&vm, Q, VM_NEXTFIT | VM_NOSLEEP);
    void *e = vmem_alloc(&vm, Q, VM_ENDALLOC | VM_NOSLEEP);
    VT_ASSERT(x != NULL && n != NULL && e != NULL);
    VT_ASSERT(TS_ADDR(e) == BASE + 255 * Q);
    /* Each is its own one-quantum arena segment, not a slab. */
    struct ts_segment segs[4];
    VT_ASSERT(ts_collect(&vm, VMEM_ALLOC, segs, 4) == 3);
    for (int i = 0; i < 3; i++)
        VT_ASSERT(segs[i].size == Q);
    vmem_xfree(&vm, x, Q);
    vmem_free(&vm, n, Q);
    vmem_free(&vm, e, Q);
    VT_ASSERT(vm.stat.in_use == 0);
    vmem_destroy(&vm);
}

static void destroy_drains_the_caches(void)
{
    static Vmem vm;
    VT_ASSERT(make_cached_arena(&vm, "qc-destroy", 256, 4));
    for (int i = 0; i < 20; i++) {
        void *object = vmem_alloc(&vm, (size_t)(1 + i % 4) * Q, VM_NOSLEEP);
        VT_ASSERT(object != NULL);
        vmem_free(&vm, object, (size_t)(1 + i % 4) * Q);
    }
    ts_capture_misuse();
    vmem_destroy(&vm);
    VT_ASSERT(vtest_env_misuse_count() == 0);
    VT_ASSERT(make_cached_arena(&vm, "qc-destroy", 256, 4)); /* storage reusable */
    vmem_destroy(&vm);
}

static void destroy_with_a_live_cached_object_is_misuse(void)
{
    static Vmem vm;
    VT_ASSERT(make_cached_arena(&vm, "qc-busy", 256, 4));
    void *object = vmem_alloc(&vm, Q, VM_NOSLEEP);
    VT_ASSERT(object != NULL);
    ts_capture_misuse();
    vmem_destroy(&vm);
    VT_ASSERT(ts_misuse_once(VMEM_MISUSE_DESTROY_BUSY, "vmem_destroy", "qc-busy"));
    VT_ASSERT(vmem_size(&vm, VMEM_ALLOC) == Q); /* still usable, unchanged */
    vmem_free(&vm, object, Q);
    vmem_destroy(&vm);
}

/* Misuse caught, reported once, and the arena exactly as it was, however
 * often it is repeated. */
static bool misuse_changes_nothing(Vmem *vm, void *addr, size_t size, VmemMisuseKind kind)
{
    for (int t = 0; t < 3; t++) {
        struct ts_snapshot before, after;
        struct cache_view view_before, view_after;
        ts_snapshot_take(vm, &before);
        view_take(vm, &view_before);
        ts_capture_misuse();
        vmem_free(vm, addr, size);
        if (!ts_misuse_once(kind, "vmem_free", "qc-misuse") ||
            !ts_misuse_echoes(TS_ADDR(addr), size))
            return false;
        ts_snapshot_take(vm, &after);
        view_take(vm, &view_after);
        if (!ts_snapshot_equal(&before, &after) || !view_equal(&view_before, &view_after))
            return false;
    }
    vtest_env_misuse_capture(false);
    return true;
}

static void cached_misuse_is_reported_on_every_free_path(void)
{
    static Vmem vm;
    VT_ASSERT(make_cached_arena(&vm, "qc-misuse", 256, 4));
    void *keep = vmem_alloc(&vm, Q, VM_NOSLEEP);
    void *freed = vmem_alloc(&vm, Q, VM_NOSLEEP);
    void *pair = vmem_alloc(&vm, 2 * Q, VM_NOSLEEP);
    VT_ASSERT(keep != NULL && freed != NULL && pair != NULL);
    vmem_free(&vm, freed, Q);
    VT_ASSERT(misuse_changes_nothing(&vm, freed, Q, VMEM_MISUSE_DOUBLE_FREE));
    VT_ASSERT(misuse_changes_nothing(&vm, keep, 2 * Q, VMEM_MISUSE_FREE_WRONG_SIZE));
    VT_ASSERT(misuse_changes_nothing(&vm, TS_PTR(TS_ADDR(pair) + Q), 2 * Q,
                                     VMEM_MISUSE_FREE_INSIDE));
    vmem_free(&vm, keep, Q);
    vmem_free(&vm, pair, 2 * Q);
    VT_ASSERT(vmem_size(&vm, VMEM_ALLOC) == 0);
    VT_CONSISTENT(&vm);
    ts_capture_misuse();
    vmem_destroy(&vm);
    VT_ASSERT(vtest_env_misuse_count() == 0);
}

/*
 * A mixed workload on an importing arena - cached sizes (1-8 quanta) and
 * larger ones, reaps now and then - checked against a model: no quantum
 * handed out twice, and vmem_stat / vmem_size exact after every step,
 * whether the caches served a request from a magazine or bypassed them.
 * Destroy then returns every slab and span to the source.
 */
#define MIX_QUANTA 2048
#define MIX_LIVE 192
#define MIX_STEPS 12000

static bool mix_claim(uint8_t *owned, uintptr_t addr, size_t size, uint8_t to)
{
    if (addr < BASE || addr + size > BASE + (uintptr_t)MIX_QUANTA * Q)
        return false;
    for (size_t q = (addr - BASE) / Q; q < (addr + size - BASE) / Q; q++) {
        if (owned[q] == to)
            return false;
        owned[q] = to;
    }
    return true;
}

static void mixed_workload_keeps_exact_stats_and_destroy_returns_everything(void)
{
    static Vmem source, vm;
    static uint8_t owned[MIX_QUANTA];
    static struct {
        uintptr_t addr;
        size_t size;
    } live[MIX_LIVE];
    for (size_t q = 0; q < MIX_QUANTA; q++)
        owned[q] = 0;
    VT_ASSERT(vmem_init(&source, "qc-mix-source", TS_PTR(BASE), MIX_QUANTA * Q, Q, NULL, NULL,
                        NULL, 0, VM_NOSLEEP) == 0);
    VT_ASSERT(vmem_init(&vm, "qc-mix", NULL, 0, Q, vmem_alloc, vmem_free, &source, 8 * Q,
                        VM_NOSLEEP) == 0);
    VtestRng rng;
    vtest_rng_seed(&rng, 0x510f);
    size_t nlive = 0, in_use = 0, allocs = 0, frees = 0;
    for (size_t step = 0; step < MIX_STEPS; step++) {
        uint64_t roll = vtest_rng_below(&rng, 100);
        if (roll < 2) {
            vmem_reap(&vm);
        } else if (nlive == 0 || (roll < 52 && nlive < MIX_LIVE)) {
            size_t size = (size_t)(1 + vtest_rng_below(&rng, 12)) * Q;
            void *got = vmem_alloc(&vm, size, VM_NOSLEEP);
            VT_ASSERT(got != NULL);
            VT_ASSERT(mix_claim(owned, TS_ADDR(got), size, 1));
            live[nlive].addr = TS_ADDR(got);
            live[nlive].size = size;
            nlive++;
            in_use += size;
            allocs++;
        } else {
            size_t i = (size_t)vtest_rng_below(&rng, nlive);
            VT_ASSERT(mix_claim(owned, live[i].addr, live[i].size, 0));
            vmem_free(&vm, TS_PTR(live[i].addr), live[i].size);
            in_use -= live[i].size;
            frees++;
            live[i] = live[--nlive];
        }
        VmemStat stat;
        VT_ASSERT(vmem_stat(&vm, &stat) == 0);
        VT_ASSERT(stat.in_use == in_use && stat.alloc == allocs && stat.free == frees);
        VT_ASSERT(vmem_size(&vm, VMEM_ALLOC) == in_use);
        VT_ASSERT(vmem_size(&vm, VMEM_FREE) == stat.total - in_use);
    }
    while (nlive > 0) {
        nlive--;
        vmem_free(&vm, TS_PTR(live[nlive].addr), live[nlive].size);
    }
    VT_ASSERT(vmem_size(&vm, VMEM_ALLOC) == 0);
    VT_CONSISTENT(&vm);
    /* No reap first: destroy's own drain must bring back every slab. */
    ts_capture_misuse();
    vmem_destroy(&vm);
    VT_ASSERT(vtest_env_misuse_count() == 0);
    VT_ASSERT(ts_stat_is(&source, 0, 0, MIX_QUANTA * Q, source.stat.alloc, source.stat.alloc));
    VT_CONSISTENT(&source);
    vmem_destroy(&source);
    VT_ASSERT(vtest_env_misuse_count() == 0);
}

VTEST_SUITE(suite_qcache, VTEST_CASE(cache_hit_returns_the_last_freed_object_without_the_arena),
            VTEST_CASE(cached_sizes_are_served_from_slabs),
            VTEST_CASE(reaped_slabs_go_back_to_the_arena),
            VTEST_CASE(a_request_drains_the_caches_before_it_fails),
            VTEST_CASE(cached_double_free_is_reported_and_changes_nothing),
            VTEST_CASE(cached_free_of_an_object_never_handed_out_is_reported),
            VTEST_CASE(cached_free_with_the_wrong_size_is_reported),
            VTEST_CASE(xfree_of_a_cached_object_is_reported),
            VTEST_CASE(stats_count_cached_objects_as_free),
            VTEST_CASE(constrained_and_placement_requests_bypass_the_caches),
            VTEST_CASE(destroy_drains_the_caches),
            VTEST_CASE(destroy_with_a_live_cached_object_is_misuse),
            VTEST_CASE(cached_misuse_is_reported_on_every_free_path),
            VTEST_CASE(mixed_workload_keeps_exact_stats_and_destroy_returns_everything));
