/*
 * test_misuse.c - every kind of misuse is reported exactly once through the
 * port's hook, with the right VmemMisuseKind, a reason, the arena and call
 * names and the address and size given, and the call then fails leaving the
 * arena exactly as it was (stats, vmem_size, every span and segment,
 * vmem_check clean).
 */
#include "test_support.h"

#define PAGE ((size_t)4096)
#define VICTIM "victim"
#define VICTIM_BASE ((uintptr_t)0x100000)
#define VICTIM_PAGES 64

/* The victim arena holds two live segments: `plain` from vmem_alloc and
 * `aligned` from vmem_xalloc. */
struct victim {
    void *plain;   /* 4 pages */
    void *aligned; /* 2 pages, 64 KiB aligned */
    struct ts_snapshot before;
};

static bool setup_victim(Vmem *vm, struct victim *v)
{
    if (vmem_init(vm, VICTIM, TS_PTR(VICTIM_BASE), VICTIM_PAGES * PAGE, PAGE, NULL, NULL, NULL, 0,
                  0) != 0)
        return false;
    v->plain = vmem_alloc(vm, 4 * PAGE, VM_NOSLEEP);
    v->aligned = vmem_xalloc(vm, 2 * PAGE, 0x10000, 0, 0, NULL, NULL, VM_NOSLEEP);
    if (v->plain == NULL || v->aligned == NULL)
        return false;
    ts_snapshot_take(vm, &v->before);
    ts_capture_misuse();
    return true;
}

/* The arena is exactly as setup_victim() left it. */
static bool victim_unchanged(Vmem *vm, const struct victim *v)
{
    struct ts_snapshot after;
    ts_snapshot_take(vm, &after);
    return ts_snapshot_equal(&v->before, &after);
}

/* Stops capturing, frees the live segments and destroys the arena. */
static bool teardown_victim(Vmem *vm, struct victim *v)
{
    vtest_env_misuse_capture(false);
    vmem_free(vm, v->plain, 4 * PAGE);
    vmem_xfree(vm, v->aligned, 2 * PAGE);
    bool clean = vmem_size(vm, VMEM_ALLOC) == 0 && vmem_check(vm, NULL) == 0;
    vmem_destroy(vm);
    return clean;
}

/* ---- Frees -------------------------------------------------------------- */

static void free_of_an_unknown_address_is_misuse(void)
{
    static Vmem vm;
    struct victim v;
    VT_ASSERT(setup_victim(&vm, &v));
    vmem_free(&vm, TS_PTR(0x800000), PAGE);
    VT_ASSERT(ts_misuse_once(VMEM_MISUSE_FREE_UNKNOWN, "vmem_free", VICTIM));
    VT_ASSERT(ts_misuse_echoes(0x800000, PAGE));
    VT_ASSERT(victim_unchanged(&vm, &v));
    ts_capture_misuse();
    vmem_xfree(&vm, TS_PTR(VICTIM_BASE - PAGE), PAGE); /* just below the span */
    VT_ASSERT(ts_misuse_once(VMEM_MISUSE_FREE_UNKNOWN, "vmem_xfree", VICTIM));
    VT_ASSERT(ts_misuse_echoes(VICTIM_BASE - PAGE, PAGE));
    VT_ASSERT(victim_unchanged(&vm, &v));
    VT_ASSERT(teardown_victim(&vm, &v));
}

static void double_free_is_misuse(void)
{
    static Vmem vm;
    struct victim v;
    VT_ASSERT(setup_victim(&vm, &v));
    vtest_env_misuse_capture(false);
    void *once = vmem_alloc(&vm, 3 * PAGE, VM_NOSLEEP);
    VT_ASSERT(once != NULL);
    vmem_free(&vm, once, 3 * PAGE);
    ts_snapshot_take(&vm, &v.before);
    ts_capture_misuse();
    vmem_free(&vm, once, 3 * PAGE);
    VT_ASSERT(ts_misuse_once(VMEM_MISUSE_DOUBLE_FREE, "vmem_free", VICTIM));
    VT_ASSERT(ts_misuse_echoes(TS_ADDR(once), 3 * PAGE));
    VT_ASSERT(victim_unchanged(&vm, &v));
    VT_ASSERT(teardown_victim(&vm, &v));
}

static void free_inside_a_segment_is_misuse(void)
{
    static Vmem vm;
    struct victim v;
    VT_ASSERT(setup_victim(&vm, &v));
    uintptr_t inside = TS_ADDR(v.plain) + PAGE;
    vmem_free(&vm, TS_PTR(inside), PAGE);
    VT_ASSERT(ts_misuse_once(VMEM_MISUSE_FREE_INSIDE, "vmem_free", VICTIM));
    VT_ASSERT(ts_misuse_echoes(inside, PAGE));
    VT_ASSERT(victim_unchanged(&vm, &v));
    VT_ASSERT(teardown_victim(&vm, &v));
}

static void free_with_the_wrong_size_is_misuse(void)
{
    static Vmem vm;
    struct victim v;
    static const size_t wrong[] = {3 * PAGE, 5 * PAGE, 4 * PAGE + 1, PAGE};
    VT_ASSERT(setup_victim(&vm, &v));
    for (size_t i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++) {
        ts_capture_misuse();
        vmem_free(&vm, v.plain, wrong[i]);
        VT_ASSERT(ts_misuse_once(VMEM_MISUSE_FREE_WRONG_SIZE, "vmem_free", VICTIM));
        VT_ASSERT(ts_misuse_echoes(TS_ADDR(v.plain), wrong[i]));
        VT_ASSERT(victim_unchanged(&vm, &v));
    }
    ts_capture_misuse();
    vmem_xfree(&vm, v.aligned, PAGE);
    VT_ASSERT(ts_misuse_once(VMEM_MISUSE_FREE_WRONG_SIZE, "vmem_xfree", VICTIM));
    VT_ASSERT(victim_unchanged(&vm, &v));
    VT_ASSERT(teardown_victim(&vm, &v));
}

static void free_to_an_arena_without_the_address_is_misuse(void)
{
    static Vmem vm, bystander;
    struct victim v;
    struct ts_snapshot bystander_before, bystander_after;
    VT_ASSERT(vmem_init(&bystander, "bystander", TS_PTR(0x800000), 16 * PAGE, PAGE, NULL, NULL,
                        NULL, 0, 0) == 0);
    void *theirs = vmem_alloc(&bystander, 4 * PAGE, VM_NOSLEEP);
    VT_ASSERT(theirs != NULL);
    VT_ASSERT(setup_victim(&vm, &v));
    ts_snapshot_take(&bystander, &bystander_before);
    ts_capture_misuse();
    vmem_free(&bystander, v.plain, 4 * PAGE);
    VT_ASSERT(ts_misuse_once(VMEM_MISUSE_FREE_UNKNOWN, "vmem_free", "bystander"));
    VT_ASSERT(ts_misuse_echoes(TS_ADDR(v.plain), 4 * PAGE));
    ts_snapshot_take(&bystander, &bystander_after);
    VT_ASSERT(ts_snapshot_equal(&bystander_before, &bystander_after));
    VT_ASSERT(victim_unchanged(&vm, &v));
    VT_ASSERT(teardown_victim(&vm, &v));
    vmem_free(&bystander, theirs, 4 * PAGE);
    vmem_destroy(&bystander);
}

static void free_to_an_arena_where_the_address_is_free_is_misuse(void)
{
    /* Two ID arenas over the same integers: an ID from one, freed to the
     * other, lands in a free segment there. */
    static Vmem vm, twin;
    struct victim v;
    struct ts_snapshot twin_before, twin_after;
    VT_ASSERT(vmem_init(&twin, "twin", TS_PTR(VICTIM_BASE), VICTIM_PAGES * PAGE, PAGE, NULL, NULL,
                        NULL, 0, 0) == 0);
    VT_ASSERT(setup_victim(&vm, &v));
    ts_snapshot_take(&twin, &twin_before);
    vmem_free(&twin, v.plain, 4 * PAGE);
    VT_ASSERT(ts_misuse_once(VMEM_MISUSE_DOUBLE_FREE, "vmem_free", "twin"));
    ts_snapshot_take(&twin, &twin_after);
    VT_ASSERT(ts_snapshot_equal(&twin_before, &twin_after));
    VT_ASSERT(victim_unchanged(&vm, &v));
    VT_ASSERT(teardown_victim(&vm, &v));
    vmem_destroy(&twin);
}

static void zero_size_free_is_misuse(void)
{
    static Vmem vm;
    struct victim v;
    VT_ASSERT(setup_victim(&vm, &v));
    vmem_free(&vm, v.plain, 0);
    /* Either kind names the mistake; exactly one report is required. */
    VmemMisuseKind kind = vtest_env_misuse_last()->kind == VMEM_MISUSE_FREE_WRONG_SIZE
                              ? VMEM_MISUSE_FREE_WRONG_SIZE
                              : VMEM_MISUSE_BAD_ARGUMENT;
    VT_ASSERT(ts_misuse_once(kind, "vmem_free", VICTIM));
    VT_ASSERT(ts_misuse_echoes(TS_ADDR(v.plain), 0));
    VT_ASSERT(victim_unchanged(&vm, &v));
    VT_ASSERT(teardown_victim(&vm, &v));
}

/* ---- Allocations -------------------------------------------------------- */

static void zero_size_allocation_is_misuse(void)
{
    static Vmem vm;
    struct victim v;
    uintptr_t addr = 0;
    VT_ASSERT(setup_victim(&vm, &v));
    VT_ASSERT(vmem_alloc(&vm, 0, VM_NOSLEEP) == NULL);
    VT_ASSERT(ts_misuse_once(VMEM_MISUSE_BAD_ARGUMENT, "vmem_alloc", VICTIM));
    ts_capture_misuse();
    VT_ASSERT(vmem_xalloc(&vm, 0, 0, 0, 0, NULL, NULL, VM_NOSLEEP) == NULL);
    VT_ASSERT(ts_misuse_once(VMEM_MISUSE_BAD_ARGUMENT, "vmem_xalloc", VICTIM));
    ts_capture_misuse();
    VT_ASSERT(vmem_xalloc_addr(&vm, 0, 0, 0, 0, 0, 0, VM_NOSLEEP, &addr) == -VMEM_ERR_INVALID);
    VT_ASSERT(ts_misuse_once(VMEM_MISUSE_BAD_ARGUMENT, "vmem_xalloc_addr", VICTIM));
    ts_capture_misuse();
    VT_ASSERT(vmem_alloc_exact(&vm, VICTIM_BASE + 32 * PAGE, 0, VM_NOSLEEP) == -VMEM_ERR_INVALID);
    VT_ASSERT(ts_misuse_once(VMEM_MISUSE_BAD_ARGUMENT, "vmem_alloc_exact", VICTIM));
    VT_ASSERT(victim_unchanged(&vm, &v));
    VT_ASSERT(teardown_victim(&vm, &v));
}

static void size_that_overflows_when_rounded_is_misuse(void)
{
    static Vmem vm;
    struct victim v;
    static const size_t huge[] = {SIZE_MAX, SIZE_MAX - PAGE + 2};
    VT_ASSERT(setup_victim(&vm, &v));
    for (size_t i = 0; i < 2; i++) {
        ts_capture_misuse();
        VT_ASSERT(vmem_alloc(&vm, huge[i], VM_NOSLEEP) == NULL);
        VT_ASSERT(ts_misuse_once(VMEM_MISUSE_SIZE_OVERFLOW, "vmem_alloc", VICTIM));
        VT_ASSERT(ts_misuse_echoes(0, huge[i]));
        ts_capture_misuse();
        VT_ASSERT(vmem_xalloc(&vm, huge[i], 0, 0, 0, NULL, NULL, VM_NOSLEEP) == NULL);
        VT_ASSERT(ts_misuse_once(VMEM_MISUSE_SIZE_OVERFLOW, "vmem_xalloc", VICTIM));
        VT_ASSERT(victim_unchanged(&vm, &v));
    }
    VT_ASSERT(teardown_victim(&vm, &v));
}

static void null_arena_is_misuse(void)
{
    ts_capture_misuse();
    VT_ASSERT(vmem_alloc(NULL, PAGE, VM_NOSLEEP) == NULL);
    VT_ASSERT(ts_misuse_once(VMEM_MISUSE_BAD_ARGUMENT, "vmem_alloc", NULL));
    ts_capture_misuse();
    vmem_free(NULL, TS_PTR(0x1000), PAGE);
    VT_ASSERT(ts_misuse_once(VMEM_MISUSE_BAD_ARGUMENT, "vmem_free", NULL));
    VT_ASSERT(ts_misuse_echoes(0x1000, PAGE));
}

/* ---- Spans ---------------------------------------------------------------- */

static void overlapping_add_is_misuse(void)
{
    static Vmem vm;
    struct victim v;
    VT_ASSERT(setup_victim(&vm, &v));
    uintptr_t last_page = VICTIM_BASE + (VICTIM_PAGES - 1) * PAGE;
    VT_ASSERT(vmem_add(&vm, TS_PTR(last_page), 2 * PAGE, VM_NOSLEEP) == NULL);
    VT_ASSERT(ts_misuse_once(VMEM_MISUSE_SPAN_OVERLAP, "vmem_add", VICTIM));
    VT_ASSERT(ts_misuse_echoes(last_page, 2 * PAGE));
    ts_capture_misuse();
    VT_ASSERT(vmem_add_range(&vm, VICTIM_BASE + 8 * PAGE, PAGE, VM_NOSLEEP) == -VMEM_ERR_INVALID);
    VT_ASSERT(ts_misuse_once(VMEM_MISUSE_SPAN_OVERLAP, "vmem_add_range", VICTIM));
    ts_capture_misuse();
    VT_ASSERT(vmem_add_range(&vm, VICTIM_BASE - PAGE, (VICTIM_PAGES + 2) * PAGE, VM_NOSLEEP) ==
              -VMEM_ERR_INVALID); /* covers the whole span */
    VT_ASSERT(ts_misuse_once(VMEM_MISUSE_SPAN_OVERLAP, "vmem_add_range", VICTIM));
    VT_ASSERT(victim_unchanged(&vm, &v));
    VT_ASSERT(teardown_victim(&vm, &v));
}

/* An overlapping vmem_add is misuse even when no boundary tag can be had:
 * the overlap is found before a tag is asked for, so it is reported as
 * such (not as out of memory) and the tag pool is not touched. */
#define TAGLESS_IDS ((size_t)1 << 22)

static void overlapping_add_is_reported_even_when_no_tag_can_be_had(void)
{
    static Vmem vm;
    VT_ASSERT(vmem_init(&vm, "tagless", TS_PTR(1), TAGLESS_IDS, 1, NULL, NULL, NULL, 0, 0) == 0);
    if (!vtest_env_page_faults(1)) { /* this runner cannot inject faults */
        vmem_destroy(&vm);
        return;
    }
    ts_capture_misuse();
    /* Instant-fit takes IDs from the bottom, one tag each, until the tags
     * in hand run out and the page source refuses more. */
    size_t taken = 0;
    bool in_order = true;
    for (void *id; taken < TAGLESS_IDS - 1 && (id = vmem_alloc(&vm, 1, VM_NOSLEEP)) != NULL;)
        in_order &= TS_ADDR(id) == ++taken;
    bool ran_out = taken < TAGLESS_IDS - 1;
    bool quiet = vtest_env_misuse_count() == 0;
    int added = vmem_add_range(&vm, TAGLESS_IDS - 8, 16, VM_NOSLEEP);
    bool reported = ts_misuse_once(VMEM_MISUSE_SPAN_OVERLAP, "vmem_add_range", "tagless");
    vtest_env_page_faults(0);
    vtest_env_misuse_capture(false);
    for (size_t id = 1; id <= taken; id++)
        vmem_free(&vm, TS_PTR(id), 1);
    VT_ASSERT(ran_out && in_order && quiet);
    VT_ASSERT(added == -VMEM_ERR_INVALID);
    VT_ASSERT(reported);
    VT_ASSERT(vmem_size(&vm, VMEM_ALLOC) == 0);
    VT_CONSISTENT(&vm);
    vmem_destroy(&vm);
}

static void wrapping_add_is_misuse(void)
{
    static Vmem vm;
    struct victim v;
    uintptr_t top_page = UINTPTR_MAX - PAGE + 1;
    VT_ASSERT(setup_victim(&vm, &v));
    VT_ASSERT(vmem_add_range(&vm, top_page, 2 * PAGE, VM_NOSLEEP) == -VMEM_ERR_INVALID);
    VT_ASSERT(ts_misuse_once(VMEM_MISUSE_SPAN_WRAP, "vmem_add_range", VICTIM));
    VT_ASSERT(ts_misuse_echoes(top_page, 2 * PAGE));
    ts_capture_misuse();
    VT_ASSERT(vmem_add(&vm, TS_PTR(0x800000), SIZE_MAX - PAGE + 1, VM_NOSLEEP) == NULL);
    VT_ASSERT(ts_misuse_once(VMEM_MISUSE_SPAN_WRAP, "vmem_add", VICTIM));
    VT_ASSERT(victim_unchanged(&vm, &v));
    VT_ASSERT(teardown_victim(&vm, &v));
}

static void misaligned_or_empty_add_is_misuse(void)
{
    static Vmem vm;
    struct victim v;
    VT_ASSERT(setup_victim(&vm, &v));
    VT_ASSERT(vmem_add_range(&vm, 0x800800, PAGE, VM_NOSLEEP) == -VMEM_ERR_INVALID);
    VT_ASSERT(ts_misuse_once(VMEM_MISUSE_BAD_ARGUMENT, "vmem_add_range", VICTIM));
    VT_ASSERT(ts_misuse_echoes(0x800800, PAGE));
    ts_capture_misuse();
    VT_ASSERT(vmem_add_range(&vm, 0x800000, PAGE + 1, VM_NOSLEEP) == -VMEM_ERR_INVALID);
    VT_ASSERT(ts_misuse_once(VMEM_MISUSE_BAD_ARGUMENT, "vmem_add_range", VICTIM));
    ts_capture_misuse();
    VT_ASSERT(vmem_add(&vm, TS_PTR(0x800000), 0, VM_NOSLEEP) == NULL);
    VT_ASSERT(ts_misuse_once(VMEM_MISUSE_BAD_ARGUMENT, "vmem_add", VICTIM));
    VT_ASSERT(victim_unchanged(&vm, &v));
    VT_ASSERT(teardown_victim(&vm, &v));
}

/* ---- Arena lifetime ------------------------------------------------------- */

static void destroy_with_live_segments_is_misuse(void)
{
    static Vmem vm;
    struct victim v;
    VT_ASSERT(setup_victim(&vm, &v));
    vmem_destroy(&vm);
    VT_ASSERT(ts_misuse_once(VMEM_MISUSE_DESTROY_BUSY, "vmem_destroy", VICTIM));
    VT_ASSERT(victim_unchanged(&vm, &v));
    /* The arena is still fully usable. */
    vtest_env_misuse_capture(false);
    void *more = vmem_alloc(&vm, PAGE, VM_NOSLEEP);
    VT_ASSERT(more != NULL);
    vmem_free(&vm, more, PAGE);
    VT_CONSISTENT(&vm);
    /* Once empty, it is destroyed without complaint. */
    ts_capture_misuse();
    vmem_free(&vm, v.plain, 4 * PAGE);
    vmem_xfree(&vm, v.aligned, 2 * PAGE);
    vmem_destroy(&vm);
    VT_ASSERT(vtest_env_misuse_count() == 0);
}

static void use_of_a_destroyed_arena_is_misuse(void)
{
    static Vmem vm;
    uintptr_t addr = 0;
    VT_ASSERT(vmem_init(&vm, "doomed", TS_PTR(VICTIM_BASE), 8 * PAGE, PAGE, NULL, NULL, NULL, 0,
                        0) == 0);
    vmem_destroy(&vm);
    ts_capture_misuse();
    VT_ASSERT(vmem_alloc(&vm, PAGE, VM_NOSLEEP) == NULL);
    VT_ASSERT(ts_misuse_once(VMEM_MISUSE_NOT_ARENA, "vmem_alloc", NULL));
    ts_capture_misuse();
    VT_ASSERT(vmem_xalloc_addr(&vm, PAGE, 0, 0, 0, 0, 0, VM_NOSLEEP, &addr) == -VMEM_ERR_INVALID);
    VT_ASSERT(ts_misuse_once(VMEM_MISUSE_NOT_ARENA, "vmem_xalloc_addr", NULL));
    ts_capture_misuse();
    vmem_free(&vm, TS_PTR(VICTIM_BASE), PAGE);
    VT_ASSERT(ts_misuse_once(VMEM_MISUSE_NOT_ARENA, "vmem_free", NULL));
    ts_capture_misuse();
    VT_ASSERT(vmem_add_range(&vm, 0x800000, PAGE, VM_NOSLEEP) == -VMEM_ERR_INVALID);
    VT_ASSERT(ts_misuse_once(VMEM_MISUSE_NOT_ARENA, "vmem_add_range", NULL));
    ts_capture_misuse();
    vmem_destroy(&vm);
    VT_ASSERT(ts_misuse_once(VMEM_MISUSE_NOT_ARENA, "vmem_destroy", NULL));
}

/* ---- Calls on something that is not an arena ------------------------------ */

static size_t walked;
static void count_walked(void *arg, uintptr_t addr, size_t size, int type)
{
    (void)arg, (void)addr, (void)size, (void)type;
    walked++;
}

static bool bytes_equal(const void *a, const void *b, size_t n)
{
    const unsigned char *x = a, *y = b;
    for (size_t i = 0; i < n; i++)
        if (x[i] != y[i])
            return false;
    return true;
}

/* Every public call that takes an arena, on storage that holds none: each
 * reports "not an arena" once, fails, and leaves the storage byte for byte
 * as it was. */
static bool every_call_is_refused_as_not_an_arena(Vmem *vm)
{
    static Vmem copy, child;
    uintptr_t addr = 0;
    VmemStat stat;
    VmemCheckReport report = {NULL, 0, 0};
    copy = *vm;
    const VmemMisuseKind no = VMEM_MISUSE_NOT_ARENA;
#define REFUSED(call, expr) (ts_capture_misuse(), (expr) && ts_misuse_once(no, call, NULL))
    bool ok = REFUSED("vmem_alloc", vmem_alloc(vm, PAGE, VM_NOSLEEP) == NULL) &&
              REFUSED("vmem_xalloc", vmem_xalloc(vm, PAGE, 0, 0, 0, NULL, NULL, 0) == NULL) &&
              REFUSED("vmem_xalloc_addr", vmem_xalloc_addr(vm, PAGE, 0, 0, 0, 0, 0, 0, &addr) ==
                                              -VMEM_ERR_INVALID) &&
              REFUSED("vmem_alloc_exact",
                      vmem_alloc_exact(vm, VICTIM_BASE, PAGE, 0) == -VMEM_ERR_INVALID) &&
              REFUSED("vmem_free", (vmem_free(vm, TS_PTR(VICTIM_BASE), PAGE), true)) &&
              REFUSED("vmem_xfree", (vmem_xfree(vm, TS_PTR(VICTIM_BASE), PAGE), true)) &&
              REFUSED("vmem_add", vmem_add(vm, TS_PTR(0x800000), PAGE, 0) == NULL) &&
              REFUSED("vmem_add_range", vmem_add_range(vm, 0x800000, PAGE, 0) == -VMEM_ERR_INVALID) &&
              REFUSED("vmem_size", vmem_size(vm, VMEM_ALLOC | VMEM_FREE) == 0) &&
              REFUSED("vmem_contains", !vmem_contains(vm, TS_PTR(VICTIM_BASE), PAGE)) &&
              REFUSED("vmem_stat", vmem_stat(vm, &stat) == -VMEM_ERR_INVALID) &&
              REFUSED("vmem_walk", (walked = 0, vmem_walk(vm, VMEM_SPAN, count_walked, NULL),
                                    walked == 0)) &&
              REFUSED("vmem_dump", (vmem_dump(vm), true)) &&
              REFUSED("vmem_check", vmem_check(vm, &report) != 0 && report.reason != NULL) &&
              REFUSED("vmem_reap", (vmem_reap(vm), true)) &&
              REFUSED("vmem_destroy", (vmem_destroy(vm), true)) &&
              REFUSED("vmem_init", vmem_init(&child, "orphan", NULL, 0, PAGE, vmem_alloc,
                                             vmem_free, vm, 0, 0) == -VMEM_ERR_INVALID) &&
              REFUSED("vmem_create", vmem_create("orphan", NULL, 0, PAGE, vmem_alloc, vmem_free,
                                                 vm, 0, 0) == NULL);
#undef REFUSED
    vtest_env_misuse_capture(false);
    return ok && bytes_equal(&copy, vm, sizeof(copy));
}

static void every_call_on_a_destroyed_arena_reports_not_an_arena(void)
{
    static Vmem vm;
    VT_ASSERT(vmem_init(&vm, "destroyed", TS_PTR(VICTIM_BASE), 8 * PAGE, PAGE, NULL, NULL, NULL,
                        0, 0) == 0);
    void *used = vmem_alloc(&vm, PAGE, VM_NOSLEEP);
    VT_ASSERT(used != NULL);
    vmem_free(&vm, used, PAGE);
    vmem_destroy(&vm);
    VT_ASSERT(every_call_is_refused_as_not_an_arena(&vm));
    /* One with quantum caches, used, then destroyed. */
    VT_ASSERT(vmem_init(&vm, "destroyed-cached", TS_PTR(VICTIM_BASE), 64 * PAGE, PAGE, NULL, NULL,
                        NULL, 4 * PAGE, 0) == 0);
    used = vmem_alloc(&vm, PAGE, VM_NOSLEEP);
    VT_ASSERT(used != NULL);
    vmem_free(&vm, used, PAGE);
    vmem_destroy(&vm);
    VT_ASSERT(every_call_is_refused_as_not_an_arena(&vm));
}

static void every_call_on_a_never_initialised_arena_reports_not_an_arena(void)
{
    static Vmem zeroed, garbage;
    unsigned char *bytes = (unsigned char *)&garbage;
    for (size_t i = 0; i < sizeof(garbage); i++)
        bytes[i] = (unsigned char)(0xa5 ^ i);
    VT_ASSERT(every_call_is_refused_as_not_an_arena(&zeroed));
    VT_ASSERT(every_call_is_refused_as_not_an_arena(&garbage));
}

/* ---- Sources and the arenas importing from them --------------------------- */

#define SOURCE_BASE ((uintptr_t)0x40000000)

/* An import function of the caller's own, wrapping vmem_alloc. */
static void *import_pages(Vmem *source, size_t size, int vmflag)
{
    return vmem_alloc(source, size, vmflag);
}

/* A source of 64 pages and `n` children importing from it, each of which
 * has imported a span and given it back: the source holds no allocation. */
static bool make_family(Vmem *source, Vmem *children, size_t n)
{
    if (vmem_init(source, "source", TS_PTR(SOURCE_BASE), 64 * PAGE, PAGE, NULL, NULL, NULL, 0,
                  0) != 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        VmemAlloc *afunc = i % 2 == 0 ? vmem_alloc : import_pages;
        if (vmem_init(&children[i], "child", NULL, 0, PAGE, afunc, vmem_free, source, 0, 0) != 0)
            return false;
        void *got = vmem_alloc(&children[i], 2 * PAGE, VM_NOSLEEP);
        if (got == NULL)
            return false;
        vmem_free(&children[i], got, 2 * PAGE);
    }
    return vmem_size(source, VMEM_ALLOC) == 0;
}

/* Does the arena still serve an allocation, with no misuse reported? */
static bool still_serves(Vmem *vm)
{
    ts_capture_misuse();
    void *got = vmem_alloc(vm, PAGE, VM_NOSLEEP);
    if (got != NULL)
        vmem_free(vm, got, PAGE);
    bool quiet = vtest_env_misuse_count() == 0;
    vtest_env_misuse_capture(false);
    return got != NULL && quiet;
}

static void destroying_the_source_of_a_live_arena_is_misuse(void)
{
    static Vmem source, children[1];
    struct ts_snapshot before, after;
    VT_ASSERT(make_family(&source, children, 1));
    ts_snapshot_take(&source, &before);
    ts_capture_misuse();
    vmem_destroy(&source);
    VT_ASSERT(ts_misuse_once(VMEM_MISUSE_DESTROY_BUSY, "vmem_destroy", "source"));
    vtest_env_misuse_capture(false);
    ts_snapshot_take(&source, &after);
    VT_ASSERT(ts_snapshot_equal(&before, &after));
    /* Both still work: the child imports from its source again. */
    VT_ASSERT(still_serves(&children[0]));
    VT_ASSERT(still_serves(&source));
    VT_CONSISTENT(&source);
    vmem_destroy(&children[0]);
    vmem_destroy(&source);
}

/* Child first is the right order; source first is refused cleanly, and
 * the right order then still works - for arenas from vmem_init and from
 * vmem_create, with one child or several, whatever their import function. */
static void arenas_are_destroyed_in_either_order_only_children_first(void)
{
    static Vmem source, children[3];
    /* Right order. */
    VT_ASSERT(make_family(&source, children, 1));
    ts_capture_misuse();
    vmem_destroy(&children[0]);
    vmem_destroy(&source);
    VT_ASSERT(vtest_env_misuse_count() == 0);
    /* Wrong order, refused at each step while a child lives. */
    VT_ASSERT(make_family(&source, children, 3));
    for (size_t i = 0; i < 3; i++) {
        ts_capture_misuse();
        vmem_destroy(&source);
        VT_ASSERT(ts_misuse_once(VMEM_MISUSE_DESTROY_BUSY, "vmem_destroy", "source"));
        VT_ASSERT(still_serves(&source));
        VT_ASSERT(still_serves(&children[i]));
        ts_capture_misuse();
        vmem_destroy(&children[i]);
        VT_ASSERT(vtest_env_misuse_count() == 0);
    }
    ts_capture_misuse();
    vmem_destroy(&source);
    VT_ASSERT(vtest_env_misuse_count() == 0);
    /* Both are gone now. */
    VT_ASSERT(vmem_alloc(&source, PAGE, VM_NOSLEEP) == NULL);
    VT_ASSERT(ts_misuse_once(VMEM_MISUSE_NOT_ARENA, "vmem_alloc", NULL));
    /* Arenas from vmem_create, both orders. */
    vtest_env_misuse_capture(false);
    for (int order = 0; order < 2; order++) {
        Vmem *src = vmem_create("created-source", TS_PTR(SOURCE_BASE), 64 * PAGE, PAGE, NULL,
                                NULL, NULL, 0, 0);
        VT_ASSERT(src != NULL);
        Vmem *kid = vmem_create("created-child", NULL, 0, PAGE, vmem_alloc, vmem_free, src, 0, 0);
        VT_ASSERT(kid != NULL);
        VT_ASSERT(still_serves(kid));
        ts_capture_misuse();
        if (order == 1) {
            vmem_destroy(src);
            VT_ASSERT(ts_misuse_once(VMEM_MISUSE_DESTROY_BUSY, "vmem_destroy", "created-source"));
            VT_ASSERT(still_serves(kid));
            ts_capture_misuse();
        }
        vmem_destroy(kid);
        vmem_destroy(src);
        VT_ASSERT(vtest_env_misuse_count() == 0);
        vtest_env_misuse_capture(false);
    }
}

static void a_failed_init_leaves_its_source_destroyable(void)
{
    static Vmem source, child;
    VT_ASSERT(vmem_init(&source, "source", TS_PTR(SOURCE_BASE), 64 * PAGE, PAGE, NULL, NULL, NULL,
                        0, 0) == 0);
    ts_capture_misuse();
    VT_ASSERT(vmem_init(&child, "bad-child", NULL, 0, 3 * PAGE, vmem_alloc, vmem_free, &source, 0,
                        0) == -VMEM_ERR_INVALID);
    VT_ASSERT(ts_misuse_once(VMEM_MISUSE_BAD_ARGUMENT, "vmem_init", NULL));
    ts_capture_misuse();
    vmem_destroy(&source);
    VT_ASSERT(vtest_env_misuse_count() == 0);
}

static void init_with_a_bad_quantum_is_misuse(void)
{
    static Vmem vm;
    static const size_t bad[] = {0, 3, 4096 + 4096 / 2};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ts_capture_misuse();
        VT_ASSERT(vmem_init(&vm, "bad-quantum", TS_PTR(0x100000), 0x10000, bad[i], NULL, NULL,
                            NULL, 0, 0) == -VMEM_ERR_INVALID);
        VT_ASSERT(ts_misuse_once(VMEM_MISUSE_BAD_ARGUMENT, "vmem_init", NULL));
        /* The storage holds no arena afterwards. */
        ts_capture_misuse();
        VT_ASSERT(vmem_alloc(&vm, 1, VM_NOSLEEP) == NULL);
        VT_ASSERT(ts_misuse_once(VMEM_MISUSE_NOT_ARENA, "vmem_alloc", NULL));
    }
}

static void init_with_a_misaligned_span_is_misuse(void)
{
    static Vmem vm;
    ts_capture_misuse();
    VT_ASSERT(vmem_init(&vm, "bad-span", TS_PTR(0x100800), 4 * PAGE, PAGE, NULL, NULL, NULL, 0,
                        0) == -VMEM_ERR_INVALID);
    VT_ASSERT(ts_misuse_once(VMEM_MISUSE_BAD_ARGUMENT, "vmem_init", NULL));
    ts_capture_misuse();
    VT_ASSERT(vmem_init(&vm, "bad-span", TS_PTR(0x100000), 4 * PAGE + 8, PAGE, NULL, NULL, NULL,
                        0, 0) == -VMEM_ERR_INVALID);
    VT_ASSERT(ts_misuse_once(VMEM_MISUSE_BAD_ARGUMENT, "vmem_init", NULL));
}

static void init_with_import_function_but_no_source_is_misuse(void)
{
    static Vmem vm;
    ts_capture_misuse();
    VT_ASSERT(vmem_init(&vm, "bad-import", NULL, 0, PAGE, vmem_alloc, vmem_free, NULL, 0, 0) ==
              -VMEM_ERR_INVALID);
    VT_ASSERT(ts_misuse_once(VMEM_MISUSE_BAD_ARGUMENT, "vmem_init", NULL));
}

VTEST_SUITE(suite_misuse,
            VTEST_CASE(free_of_an_unknown_address_is_misuse),
            VTEST_CASE(double_free_is_misuse),
            VTEST_CASE(free_inside_a_segment_is_misuse),
            VTEST_CASE(free_with_the_wrong_size_is_misuse),
            VTEST_CASE(free_to_an_arena_without_the_address_is_misuse),
            VTEST_CASE(free_to_an_arena_where_the_address_is_free_is_misuse),
            VTEST_CASE(zero_size_free_is_misuse),
            VTEST_CASE(zero_size_allocation_is_misuse),
            VTEST_CASE(size_that_overflows_when_rounded_is_misuse),
            VTEST_CASE(null_arena_is_misuse),
            VTEST_CASE(overlapping_add_is_misuse),
            VTEST_CASE(overlapping_add_is_reported_even_when_no_tag_can_be_had),
            VTEST_CASE(wrapping_add_is_misuse),
            VTEST_CASE(misaligned_or_empty_add_is_misuse),
            VTEST_CASE(destroy_with_live_segments_is_misuse),
            VTEST_CASE(use_of_a_destroyed_arena_is_misuse),
            VTEST_CASE(every_call_on_a_destroyed_arena_reports_not_an_arena),
            VTEST_CASE(every_call_on_a_never_initialised_arena_reports_not_an_arena),
            VTEST_CASE(destroying_the_source_of_a_live_arena_is_misuse),
            VTEST_CASE(arenas_are_destroyed_in_either_order_only_children_first),
            VTEST_CASE(a_failed_init_leaves_its_source_destroyable),
            VTEST_CASE(init_with_a_bad_quantum_is_misuse),
            VTEST_CASE(init_with_a_misaligned_span_is_misuse),
            VTEST_CASE(init_with_import_function_but_no_source_is_misuse));
