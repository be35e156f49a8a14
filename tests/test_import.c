/*
 * test_import.c - arenas that import spans from a source arena: on demand,
 * accounted in stat.import, given back as soon as wholly free, shaped by the
 * request's constraints, through a chain of three arenas; a source that is
 * exhausted or a custom import function that fails or misbehaves gives a
 * clean NULL and never an endless loop; callbacks receive the source; the
 * give-back function is called for every span; a source of coarser quantum
 * is imported from in its own units, with the request's range rounded so
 * that a range ending inside its only free page still finds it; the import
 * quantum; a constrained import callback of one's own (a mapping import).
 *
 * The exact size of an imported span is the library's choice, except where
 * the header promises it (what a plain callback is asked for, whole units
 * of the source, the import quantum); tests assert only what it promises.
 */
#include "test_support.h"

#define PAGE ((size_t)4096)
#define SOURCE_BASE ((uintptr_t)0x10000000)
#define SOURCE_PAGES 256

static bool init_source(Vmem *vm, const char *name, uintptr_t base, size_t pages)
{
    return vmem_init(vm, name, TS_PTR(base), pages * PAGE, PAGE, NULL, NULL, NULL, 0, 0) == 0;
}

static bool init_importer(Vmem *vm, const char *name, Vmem *source)
{
    return vmem_init(vm, name, NULL, 0, PAGE, vmem_alloc, vmem_free, source, 0, 0) == 0;
}

/*
 * What must hold between an importer and its source at any quiet moment:
 * its spans add up to stat.import (it has no spans of its own in these
 * tests), lie inside the source's range, and each holds at least one live
 * segment (a wholly free span is given back at once).
 */
static bool import_invariants(Vmem *vm, uintptr_t source_base, size_t source_size)
{
    static struct ts_segment spans[64], allocs[256];
    size_t span_count = ts_collect(vm, VMEM_SPAN, spans, 64);
    size_t alloc_count = ts_collect(vm, VMEM_ALLOC, allocs, 256);
    if (span_count > 64 || alloc_count > 256)
        return false;
    size_t span_total = 0;
    for (size_t s = 0; s < span_count; s++) {
        uintptr_t start = spans[s].addr;
        span_total += spans[s].size;
        if (start < source_base || start - source_base > source_size - spans[s].size) {
            ts_note_hex("    span outside the source:", start);
            vtest_puts("\n");
            return false;
        }
        bool used = false;
        for (size_t a = 0; a < alloc_count && !used; a++)
            used = allocs[a].addr >= start && allocs[a].addr - start < spans[s].size;
        if (!used) {
            ts_note_hex("    wholly free span kept:", start);
            vtest_puts("\n");
            return false;
        }
    }
    return span_total == vm->stat.import && vm->stat.total == vm->stat.import &&
           vmem_check(vm, NULL) == 0;
}

/* ---- Importing through vmem_alloc / vmem_free ------------------------- */

static void import_brings_in_a_span_on_demand(void)
{
    static Vmem source, child;
    VT_ASSERT(init_source(&source, "import-source", SOURCE_BASE, SOURCE_PAGES));
    VT_ASSERT(init_importer(&child, "import-child", &source));
    VT_ASSERT(ts_stat_is(&child, 0, 0, 0, 0, 0));
    void *addr = vmem_alloc(&child, 3 * PAGE, VM_NOSLEEP);
    VT_ASSERT(addr != NULL);
    VT_ASSERT(vmem_contains(&child, addr, 3 * PAGE));
    VT_ASSERT(vmem_contains(&source, addr, 3 * PAGE));
    VT_ASSERT(child.stat.in_use == 3 * PAGE && child.stat.alloc == 1);
    VT_ASSERT(child.stat.import >= 3 * PAGE);
    /* What the child imported is allocated in the source. */
    VT_ASSERT(source.stat.in_use == child.stat.import);
    VT_ASSERT(source.stat.alloc >= 1);
    VT_ASSERT(import_invariants(&child, SOURCE_BASE, SOURCE_PAGES * PAGE));
    VT_CONSISTENT(&source);
    vmem_free(&child, addr, 3 * PAGE);
    vmem_destroy(&child);
    vmem_destroy(&source);
}

static void span_goes_back_to_the_source_once_wholly_free(void)
{
    static Vmem source, child;
    VT_ASSERT(init_source(&source, "import-source", SOURCE_BASE, SOURCE_PAGES));
    VT_ASSERT(init_importer(&child, "import-child", &source));
    void *addr = vmem_alloc(&child, 5 * PAGE, VM_NOSLEEP);
    VT_ASSERT(addr != NULL);
    vmem_free(&child, addr, 5 * PAGE);
    VT_ASSERT(ts_stat_is(&child, 0, 0, 0, 1, 1));
    VT_ASSERT(source.stat.in_use == 0);
    VT_ASSERT(source.stat.alloc == source.stat.free);
    struct ts_segment spans[4];
    VT_ASSERT(ts_collect(&child, VMEM_SPAN, spans, 4) == 0);
    VT_CONSISTENT(&child);
    VT_CONSISTENT(&source);
    vmem_destroy(&child);
    vmem_destroy(&source);
}

static void span_stays_while_any_segment_in_it_is_live(void)
{
    static Vmem source, child;
    static void *held[32];
    VT_ASSERT(init_source(&source, "import-source", SOURCE_BASE, SOURCE_PAGES));
    VT_ASSERT(init_importer(&child, "import-child", &source));
    for (size_t i = 0; i < 32; i++) {
        held[i] = vmem_alloc(&child, PAGE, VM_NOSLEEP);
        VT_ASSERT(held[i] != NULL);
    }
    /* Free every other one, then the rest, checking after each free. */
    for (size_t pass = 0; pass < 2; pass++) {
        for (size_t i = pass; i < 32; i += 2) {
            vmem_free(&child, held[i], PAGE);
            VT_ASSERT(import_invariants(&child, SOURCE_BASE, SOURCE_PAGES * PAGE));
            VT_ASSERT(source.stat.in_use == child.stat.import);
        }
    }
    VT_ASSERT(ts_stat_is(&child, 0, 0, 0, 32, 32));
    VT_ASSERT(source.stat.in_use == 0);
    VT_CONSISTENT(&source);
    vmem_destroy(&child);
    vmem_destroy(&source);
}

static void added_spans_stay_and_only_imported_spans_go_back(void)
{
    static Vmem source, child;
    VT_ASSERT(init_source(&source, "import-source", SOURCE_BASE, SOURCE_PAGES));
    VT_ASSERT(init_importer(&child, "import-mixed", &source));
    VT_ASSERT(vmem_add_range(&child, 0x500000, 4 * PAGE, VM_NOSLEEP) == 0);
    VT_ASSERT(ts_stat_is(&child, 0, 0, 4 * PAGE, 0, 0));
    void *own = vmem_alloc(&child, 4 * PAGE, VM_NOSLEEP);
    VT_ASSERT(own == TS_PTR(0x500000));
    VT_ASSERT(child.stat.import == 0); /* no import while the own span fits */
    void *imported = vmem_alloc(&child, 2 * PAGE, VM_NOSLEEP);
    VT_ASSERT(imported != NULL && vmem_contains(&source, imported, 2 * PAGE));
    VT_ASSERT(child.stat.import >= 2 * PAGE);
    VT_ASSERT(child.stat.total == 4 * PAGE + child.stat.import);
    VT_ASSERT(source.stat.in_use == child.stat.import);
    vmem_free(&child, imported, 2 * PAGE);
    vmem_free(&child, own, 4 * PAGE);
    VT_ASSERT(ts_stat_is(&child, 0, 0, 4 * PAGE, 2, 2));
    VT_ASSERT(source.stat.in_use == 0);
    VT_CONSISTENT(&child);
    vmem_destroy(&child);
    VT_CONSISTENT(&source);
    vmem_destroy(&source);
}

/* ---- Constrained imports ------------------------------------------------ */

static void constrained_import_honours_align_and_phase(void)
{
    static Vmem source, child;
    /* The source starts off every boundary above one page. */
    VT_ASSERT(init_source(&source, "import-source", SOURCE_BASE + PAGE, SOURCE_PAGES));
    VT_ASSERT(init_importer(&child, "import-align", &source));
    void *aligned = vmem_xalloc(&child, PAGE, 0x10000, 0, 0, NULL, NULL, VM_NOSLEEP);
    VT_ASSERT(aligned != NULL && TS_ADDR(aligned) % 0x10000 == 0);
    void *phased = vmem_xalloc(&child, 2 * PAGE, 0x20000, 0x3000, 0, NULL, NULL, VM_NOSLEEP);
    VT_ASSERT(phased != NULL && (TS_ADDR(phased) - 0x3000) % 0x20000 == 0);
    VT_ASSERT(vmem_contains(&child, aligned, PAGE) && vmem_contains(&child, phased, 2 * PAGE));
    VT_ASSERT(import_invariants(&child, SOURCE_BASE + PAGE, SOURCE_PAGES * PAGE));
    vmem_xfree(&child, aligned, PAGE);
    vmem_xfree(&child, phased, 2 * PAGE);
    VT_ASSERT(source.stat.in_use == 0 && child.stat.total == 0);
    VT_CONSISTENT(&source);
    vmem_destroy(&child);
    vmem_destroy(&source);
}

static void constrained_import_honours_nocross(void)
{
    static Vmem source, child;
    /* The low end of the source, [base + 3 pages, + 3 pages), crosses a
     * 16 KiB boundary. */
    VT_ASSERT(init_source(&source, "import-source", SOURCE_BASE + 3 * PAGE, SOURCE_PAGES));
    VT_ASSERT(init_importer(&child, "import-nocross", &source));
    void *addr = vmem_xalloc(&child, 3 * PAGE, 0, 0, 4 * PAGE, NULL, NULL, VM_NOSLEEP);
    VT_ASSERT(addr != NULL);
    VT_ASSERT(TS_ADDR(addr) / (4 * PAGE) == (TS_ADDR(addr) + 3 * PAGE - 1) / (4 * PAGE));
    VT_ASSERT(import_invariants(&child, SOURCE_BASE + 3 * PAGE, SOURCE_PAGES * PAGE));
    vmem_xfree(&child, addr, 3 * PAGE);
    VT_ASSERT(source.stat.in_use == 0 && child.stat.total == 0);
    vmem_destroy(&child);
    vmem_destroy(&source);
}

static void constrained_import_honours_minaddr_and_maxaddr(void)
{
    static Vmem source, child;
    VT_ASSERT(init_source(&source, "import-source", SOURCE_BASE, SOURCE_PAGES));
    VT_ASSERT(init_importer(&child, "import-window", &source));
    uintptr_t low = SOURCE_BASE + 100 * PAGE, high = SOURCE_BASE + 110 * PAGE;
    void *addr = vmem_xalloc(&child, 2 * PAGE, 0, 0, 0, TS_PTR(low), TS_PTR(high), VM_NOSLEEP);
    VT_ASSERT(addr != NULL && TS_ADDR(addr) >= low && TS_ADDR(addr) + 2 * PAGE <= high);
    /* The top page of the source, found through the importer. */
    uintptr_t top = 0;
    VT_ASSERT(vmem_xalloc_addr(&child, PAGE, 0, 0, 0, SOURCE_BASE + (SOURCE_PAGES - 1) * PAGE, 0,
                               VM_NOSLEEP, &top) == 0);
    VT_ASSERT(top == SOURCE_BASE + (SOURCE_PAGES - 1) * PAGE);
    VT_ASSERT(import_invariants(&child, SOURCE_BASE, SOURCE_PAGES * PAGE));
    vmem_xfree(&child, addr, 2 * PAGE);
    vmem_xfree(&child, TS_PTR(top), PAGE);
    VT_ASSERT(source.stat.in_use == 0 && child.stat.total == 0);
    vmem_destroy(&child);
    vmem_destroy(&source);
}

/* A phase finer than the source's quantum cannot be asked of the source
 * directly; the importer must still bring in a span inside the range. */
static void constrained_import_honours_a_range_when_phase_is_finer_than_the_source(void)
{
    static Vmem source, child;
    VT_ASSERT(vmem_init(&source, "import-coarse", TS_PTR(0x100000), 0x8000, 16, NULL, NULL, NULL,
                        0, 0) == 0);
    VT_ASSERT(vmem_init(&child, "import-fine", NULL, 0, 4, vmem_alloc, vmem_free, &source, 0,
                        0) == 0);
    ts_capture_misuse();
    void *got = vmem_xalloc(&child, 4, 16, 4, 0, TS_PTR(0x107000), NULL, VM_NOSLEEP);
    VT_ASSERT(vtest_env_misuse_count() == 0);
    VT_ASSERT(got != NULL);
    VT_ASSERT(TS_ADDR(got) >= 0x107000 && TS_ADDR(got) % 16 == 4);
    VT_CONSISTENT(&child);
    vmem_xfree(&child, got, 4);
    VT_ASSERT(child.stat.import == 0 && vmem_size(&source, VMEM_ALLOC) == 0);
    vmem_destroy(&child);
    vmem_destroy(&source);
}

static void alloc_exact_imports_the_requested_range(void)
{
    static Vmem source, child;
    VT_ASSERT(init_source(&source, "import-source", SOURCE_BASE, SOURCE_PAGES));
    VT_ASSERT(init_importer(&child, "import-exact", &source));
    uintptr_t want = SOURCE_BASE + 77 * PAGE;
    VT_ASSERT(vmem_alloc_exact(&child, want, 3 * PAGE, VM_NOSLEEP) == 0);
    VT_ASSERT(child.stat.in_use == 3 * PAGE);
    VT_ASSERT(import_invariants(&child, SOURCE_BASE, SOURCE_PAGES * PAGE));
    /* The range is no longer free in the source. */
    VT_ASSERT(vmem_xalloc(&source, PAGE, 0, 0, 0, TS_PTR(want + PAGE), TS_PTR(want + 2 * PAGE),
                          VM_NOSLEEP) == NULL);
    vmem_xfree(&child, TS_PTR(want), 3 * PAGE);
    VT_ASSERT(source.stat.in_use == 0 && child.stat.total == 0);
    vmem_destroy(&child);
    vmem_destroy(&source);
}

/* ---- Failure ------------------------------------------------------------ */

static void exhausted_source_makes_import_fail_cleanly(void)
{
    static Vmem source, child;
    struct ts_snapshot before, after;
    VT_ASSERT(init_source(&source, "import-small", SOURCE_BASE, 4));
    VT_ASSERT(init_importer(&child, "import-starved", &source));
    void *all = vmem_alloc(&source, 4 * PAGE, VM_NOSLEEP);
    VT_ASSERT(all != NULL);
    ts_snapshot_take(&child, &before);
    ts_capture_misuse();
    VT_ASSERT(vmem_alloc(&child, PAGE, VM_NOSLEEP) == NULL);
    VT_ASSERT(vmem_xalloc(&child, PAGE, 2 * PAGE, 0, 0, NULL, NULL, VM_NOSLEEP) == NULL);
    VT_ASSERT(vtest_env_misuse_count() == 0);
    ts_snapshot_take(&child, &after);
    VT_ASSERT(ts_snapshot_equal(&before, &after));
    VT_ASSERT(source.stat.in_use == 4 * PAGE);
    vtest_env_misuse_capture(false);
    /* Once the source has room again, importing works. */
    vmem_free(&source, all, 4 * PAGE);
    void *addr = vmem_alloc(&child, PAGE, VM_NOSLEEP);
    VT_ASSERT(addr != NULL);
    vmem_free(&child, addr, PAGE);
    VT_ASSERT(source.stat.in_use == 0);
    vmem_destroy(&child);
    vmem_destroy(&source);
}

static void request_larger_than_the_source_fails_cleanly(void)
{
    static Vmem source, child;
    VT_ASSERT(init_source(&source, "import-source", SOURCE_BASE, SOURCE_PAGES));
    VT_ASSERT(init_importer(&child, "import-huge", &source));
    ts_capture_misuse();
    VT_ASSERT(vmem_alloc(&child, (SOURCE_PAGES + 1) * PAGE, VM_NOSLEEP) == NULL);
    /* A window outside the source's range cannot be imported either. */
    VT_ASSERT(vmem_xalloc(&child, PAGE, 0, 0, 0, TS_PTR(0x20000000), TS_PTR(0x20100000),
                          VM_NOSLEEP) == NULL);
    VT_ASSERT(vtest_env_misuse_count() == 0);
    VT_ASSERT(ts_stat_is(&child, 0, 0, 0, 0, 0));
    VT_ASSERT(source.stat.in_use == 0);
    VT_CONSISTENT(&child);
    VT_CONSISTENT(&source);
    vtest_env_misuse_capture(false);
    vmem_destroy(&child);
    vmem_destroy(&source);
}

/* ---- A chain of three ---------------------------------------------------- */

static void chain_of_three_arenas_imports_through_every_level(void)
{
    static Vmem top, middle, leaf;
    VT_ASSERT(init_source(&top, "chain-top", SOURCE_BASE, SOURCE_PAGES));
    VT_ASSERT(init_importer(&middle, "chain-middle", &top));
    VT_ASSERT(init_importer(&leaf, "chain-leaf", &middle));
    void *plain = vmem_alloc(&leaf, 2 * PAGE, VM_NOSLEEP);
    void *aligned = vmem_xalloc(&leaf, PAGE, 0x10000, 0, 0, NULL, NULL, VM_NOSLEEP);
    VT_ASSERT(plain != NULL && aligned != NULL);
    VT_ASSERT(TS_ADDR(aligned) % 0x10000 == 0);
    VT_ASSERT(leaf.stat.in_use == 3 * PAGE);
    /* Each level's imports are allocations in the level above. */
    VT_ASSERT(middle.stat.in_use == leaf.stat.import);
    VT_ASSERT(top.stat.in_use == middle.stat.import);
    VT_ASSERT(import_invariants(&leaf, SOURCE_BASE, SOURCE_PAGES * PAGE));
    VT_ASSERT(import_invariants(&middle, SOURCE_BASE, SOURCE_PAGES * PAGE));
    VT_CONSISTENT(&top);
    vmem_free(&leaf, plain, 2 * PAGE);
    vmem_xfree(&leaf, aligned, PAGE);
    VT_ASSERT(ts_stat_is(&leaf, 0, 0, 0, 2, 2));
    VT_ASSERT(middle.stat.in_use == 0 && middle.stat.total == 0);
    VT_ASSERT(top.stat.in_use == 0);
    VT_CONSISTENT(&middle);
    VT_CONSISTENT(&top);
    vmem_destroy(&leaf);
    vmem_destroy(&middle);
    vmem_destroy(&top);
}

/* ---- Custom import functions ------------------------------------------- */

/* What the custom callbacks saw; reset by each test. */
static struct {
    size_t alloc_calls, alloc_successes, free_calls;
    Vmem *alloc_source, *free_source;
    uintptr_t last_import_addr, last_free_addr;
    size_t last_import_size, last_free_size;
    uintptr_t floor; /* the misbehaving afunc only hands out spans above this */
} calls;

static void reset_calls(uintptr_t floor)
{
    calls.alloc_calls = calls.alloc_successes = calls.free_calls = 0;
    calls.alloc_source = calls.free_source = NULL;
    calls.last_import_addr = calls.last_free_addr = 0;
    calls.last_import_size = calls.last_free_size = 0;
    calls.floor = floor;
}

static void *refusing_import(Vmem *source, size_t size, int flags)
{
    (void)size;
    (void)flags;
    calls.alloc_calls++;
    calls.alloc_source = source;
    return NULL;
}

/* Ignores whatever the request needs and imports above calls.floor. */
static void *stubborn_import(Vmem *source, size_t size, int flags)
{
    (void)flags;
    calls.alloc_calls++;
    calls.alloc_source = source;
    void *addr = vmem_xalloc(source, size, 0, 0, 0, TS_PTR(calls.floor), NULL, VM_NOSLEEP);
    if (addr != NULL) {
        calls.alloc_successes++;
        calls.last_import_addr = TS_ADDR(addr);
        calls.last_import_size = size;
    }
    return addr;
}

static void recording_release(Vmem *source, void *addr, size_t size)
{
    calls.free_calls++;
    calls.free_source = source;
    calls.last_free_addr = TS_ADDR(addr);
    calls.last_free_size = size;
    vmem_xfree(source, addr, size);
}

/* The segment interfering_import frees in its arena, as another CPU could
 * while an import runs with the arena unlocked. */
static struct {
    Vmem *arena;
    void *addr;
} interference;

static void *interfering_import(Vmem *source, size_t size, int flags)
{
    if (interference.arena != NULL) {
        vmem_free(interference.arena, interference.addr, PAGE);
        interference.arena = NULL;
    }
    return vmem_alloc(source, size, flags);
}

/* A request that imports, and then finds room a free made meanwhile: the
 * span it imported and did not use goes back, not to stay imported with
 * nothing in it. First-fit takes the lower, freed page. */
static void import_left_unused_by_a_racing_free_goes_back(void)
{
    static Vmem source, child;
    VT_ASSERT(init_source(&source, "import-race-source", SOURCE_BASE, SOURCE_PAGES));
    VT_ASSERT(vmem_init(&child, "import-race", TS_PTR(0x500000), PAGE, PAGE, interfering_import,
                        vmem_free, &source, 0, 0) == 0);
    void *own = vmem_alloc(&child, PAGE, VM_NOSLEEP);
    VT_ASSERT(own == TS_PTR(0x500000));
    interference.arena = &child;
    interference.addr = own;
    void *got = vmem_alloc(&child, PAGE, VM_FIRSTFIT | VM_NOSLEEP);
    VT_ASSERT(interference.arena == NULL); /* the import ran, and freed */
    VT_ASSERT(got == TS_PTR(0x500000));
    VT_ASSERT(child.stat.import == 0);
    VT_ASSERT(source.stat.in_use == 0);
    VT_ASSERT(ts_stat_is(&child, PAGE, 0, PAGE, 2, 1));
    VT_CONSISTENT(&child);
    vmem_free(&child, got, PAGE);
    vmem_destroy(&child);
    VT_CONSISTENT(&source);
    vmem_destroy(&source);
}

/* A bound on import attempts for one request: any fixed small number means
 * the arena did not retry forever. */
#define IMPORT_ATTEMPTS_MAX 4

static void custom_import_returning_null_fails_without_looping(void)
{
    static Vmem source, child;
    VT_ASSERT(init_source(&source, "import-source", SOURCE_BASE, SOURCE_PAGES));
    VT_ASSERT(vmem_init(&child, "import-refused", NULL, 0, PAGE, refusing_import,
                        recording_release, &source, 0, 0) == 0);
    reset_calls(0);
    ts_capture_misuse();
    VT_ASSERT(vmem_alloc(&child, PAGE, VM_NOSLEEP) == NULL);
    VT_ASSERT(calls.alloc_calls >= 1 && calls.alloc_calls <= IMPORT_ATTEMPTS_MAX);
    reset_calls(0);
    VT_ASSERT(vmem_xalloc(&child, PAGE, 4 * PAGE, PAGE, 0, NULL, NULL, VM_NOSLEEP) == NULL);
    VT_ASSERT(calls.alloc_calls <= IMPORT_ATTEMPTS_MAX);
    VT_ASSERT(vtest_env_misuse_count() == 0);
    VT_ASSERT(ts_stat_is(&child, 0, 0, 0, 0, 0));
    VT_CONSISTENT(&child);
    vtest_env_misuse_capture(false);
    vmem_destroy(&child);
    vmem_destroy(&source);
}

static void custom_import_of_an_unsuitable_span_fails_without_looping(void)
{
    static Vmem source, child;
    uintptr_t floor = SOURCE_BASE + 128 * PAGE;
    VT_ASSERT(init_source(&source, "import-source", SOURCE_BASE, SOURCE_PAGES));
    VT_ASSERT(vmem_init(&child, "import-stubborn", NULL, 0, PAGE, stubborn_import,
                        recording_release, &source, 0, 0) == 0);
    reset_calls(floor);
    ts_capture_misuse();
    /* Only spans above `floor` ever arrive; the request wants one below. */
    VT_ASSERT(vmem_xalloc(&child, PAGE, 0, 0, 0, NULL, TS_PTR(SOURCE_BASE + 64 * PAGE),
                          VM_NOSLEEP) == NULL);
    VT_ASSERT(calls.alloc_calls <= IMPORT_ATTEMPTS_MAX);
    VT_ASSERT(vtest_env_misuse_count() == 0);
    /* Whatever was imported for nothing went back, being wholly free. */
    VT_ASSERT(calls.free_calls == calls.alloc_successes);
    VT_ASSERT(ts_stat_is(&child, 0, 0, 0, 0, 0));
    VT_ASSERT(source.stat.in_use == 0);
    VT_CONSISTENT(&child);
    VT_CONSISTENT(&source);
    vtest_env_misuse_capture(false);
    vmem_destroy(&child);
    vmem_destroy(&source);
}

static void callbacks_receive_the_source_arena(void)
{
    static Vmem source, child;
    VT_ASSERT(init_source(&source, "import-source", SOURCE_BASE, SOURCE_PAGES));
    VT_ASSERT(vmem_init(&child, "import-recorded", NULL, 0, PAGE, stubborn_import,
                        recording_release, &source, 0, 0) == 0);
    reset_calls(SOURCE_BASE);
    void *addr = vmem_alloc(&child, 2 * PAGE, VM_NOSLEEP);
    VT_ASSERT(addr != NULL);
    VT_ASSERT(calls.alloc_successes == 1 && calls.alloc_source == &source);
    VT_ASSERT(calls.last_import_size >= 2 * PAGE);
    VT_ASSERT(child.stat.import == calls.last_import_size);
    VT_ASSERT(TS_ADDR(addr) >= calls.last_import_addr &&
              TS_ADDR(addr) + 2 * PAGE <= calls.last_import_addr + calls.last_import_size);
    vmem_free(&child, addr, 2 * PAGE);
    /* The span goes back whole, to the arena it came from. */
    VT_ASSERT(calls.free_calls == 1 && calls.free_source == &source);
    VT_ASSERT(calls.last_free_addr == calls.last_import_addr);
    VT_ASSERT(calls.last_free_size == calls.last_import_size);
    VT_ASSERT(source.stat.in_use == 0 && child.stat.total == 0);
    VT_CONSISTENT(&child);
    vmem_destroy(&child);
    vmem_destroy(&source);
}

static void destroying_an_idle_importer_leaves_the_source_clean(void)
{
    static Vmem source, child;
    VT_ASSERT(init_source(&source, "import-source", SOURCE_BASE, SOURCE_PAGES));
    VT_ASSERT(init_importer(&child, "import-destroyed", &source));
    void *a = vmem_alloc(&child, PAGE, VM_NOSLEEP);
    void *b = vmem_xalloc(&child, PAGE, 0x10000, 0, 0, NULL, NULL, VM_NOSLEEP);
    VT_ASSERT(a != NULL && b != NULL);
    vmem_free(&child, a, PAGE);
    vmem_xfree(&child, b, PAGE);
    vmem_destroy(&child);
    VT_ASSERT(source.stat.in_use == 0);
    VT_ASSERT(source.stat.alloc == source.stat.free);
    VT_CONSISTENT(&source);
    vmem_destroy(&source);
}

/* ---- The give-back callback --------------------------------------------- */

/* What counting_release saw: every span it was handed, in order. */
static struct {
    size_t count;
    Vmem *source;
    uintptr_t addr[8];
    size_t size[8];
} released;

static void counting_release(Vmem *source, void *addr, size_t size)
{
    if (released.count < 8) {
        released.addr[released.count] = TS_ADDR(addr);
        released.size[released.count] = size;
    }
    released.count++;
    released.source = source;
    vmem_xfree(source, addr, size);
}

/* Imports go through vmem_xalloc on the source (afunc is vmem_alloc), and
 * yet every span goes back through the given ffunc, once per span. */
static void release_is_called_for_every_span_imported_through_vmem_alloc(void)
{
    static Vmem source, imp;
    static struct ts_segment spans[8];
    VT_ASSERT(init_source(&source, "import-source", SOURCE_BASE, SOURCE_PAGES));
    VT_ASSERT(vmem_init(&imp, "imp", NULL, 0, PAGE, vmem_alloc, counting_release, &source, 0,
                        VM_NOSLEEP) == 0);
    released.count = 0;
    released.source = NULL;
    void *page[3];
    for (size_t i = 0; i < 3; i++) {
        page[i] = vmem_alloc(&imp, PAGE, VM_NOSLEEP);
        VT_ASSERT(page[i] != NULL);
    }
    size_t span_count = ts_collect(&imp, VMEM_SPAN, spans, 8);
    VT_ASSERT(span_count >= 1 && span_count <= 3);
    VT_ASSERT(source.stat.in_use == imp.stat.import);
    for (size_t i = 0; i < 3; i++)
        vmem_free(&imp, page[i], PAGE);
    VT_ASSERT(released.count == span_count);
    VT_ASSERT(released.source == &source);
    /* Each span went back whole, exactly as it was imported. */
    for (size_t s = 0; s < span_count; s++) {
        bool seen = false;
        for (size_t r = 0; r < released.count && !seen; r++)
            seen = released.addr[r] == spans[s].addr && released.size[r] == spans[s].size;
        VT_ASSERT(seen);
    }
    VT_ASSERT(ts_stat_is(&imp, 0, 0, 0, 3, 3));
    VT_ASSERT(source.stat.in_use == 0);
    VT_CONSISTENT(&source);
    vmem_destroy(&imp);
    VT_ASSERT(released.count == span_count);
    vmem_destroy(&source);
}

/* Without a give-back function, imported spans stay while the arena lives
 * (free space for later requests); one imported through vmem_alloc still
 * goes back when the arena is destroyed. */
static void without_a_give_back_function_spans_stay_until_destroy(void)
{
    static Vmem source, keeper;
    VT_ASSERT(init_source(&source, "import-source", SOURCE_BASE, SOURCE_PAGES));
    VT_ASSERT(vmem_init(&keeper, "import-keeper", NULL, 0, PAGE, vmem_alloc, NULL, &source, 0,
                        0) == 0);
    void *addr = vmem_alloc(&keeper, 2 * PAGE, VM_NOSLEEP);
    VT_ASSERT(addr != NULL);
    vmem_free(&keeper, addr, 2 * PAGE);
    VT_ASSERT(keeper.stat.import == 2 * PAGE && source.stat.in_use == 2 * PAGE);
    /* The kept span serves the next request without an import. */
    size_t source_allocs = source.stat.alloc;
    addr = vmem_alloc(&keeper, PAGE, VM_NOSLEEP);
    VT_ASSERT(addr != NULL && source.stat.alloc == source_allocs);
    vmem_free(&keeper, addr, PAGE);
    VT_CONSISTENT(&keeper);
    vmem_destroy(&keeper);
    VT_ASSERT(source.stat.in_use == 0);
    VT_CONSISTENT(&source);
    vmem_destroy(&source);
}

/* ---- A source with a coarser quantum ------------------------------------ */

#define COARSE_PAGES 4

/* A source of 4 KiB quanta over [base, base + 4 pages) whose only free
 * pages are those in `free_mask` (bit i: page i). */
static bool init_coarse_source(Vmem *source, uintptr_t base, unsigned free_mask)
{
    if (vmem_init(source, "coarse-source", TS_PTR(base), COARSE_PAGES * PAGE, PAGE, NULL, NULL,
                  NULL, 0, 0) != 0)
        return false;
    for (unsigned i = 0; i < COARSE_PAGES; i++)
        if (!(free_mask & (1u << i)) &&
            vmem_alloc_exact(source, base + i * PAGE, PAGE, VM_NOSLEEP) != 0)
            return false;
    return true;
}

/* Frees the pages init_coarse_source took and destroys the source. */
static void destroy_coarse_source(Vmem *source, uintptr_t base, unsigned free_mask)
{
    for (unsigned i = 0; i < COARSE_PAGES; i++)
        if (!(free_mask & (1u << i)))
            vmem_xfree(source, TS_PTR(base + i * PAGE), PAGE);
    vmem_destroy(source);
}

static bool init_fine_importer(Vmem *child, Vmem *source)
{
    return vmem_init(child, "fine-child", NULL, 0, 16, vmem_alloc, vmem_free, source, 0, 0) == 0;
}

/* The request's range, rounded to the source's pages, is what the import
 * may use: rounding maxaddr 0x800 down to 0 must not lose the one page
 * below it (nor read as "no bound"). */
static void import_under_a_maxaddr_below_the_first_source_page_finds_page_zero(void)
{
    static Vmem source, child;
    uintptr_t addr = 1;
    /* Page 0 is free; so is page 3, which a top-down import that ignored
     * maxaddr would take. */
    VT_ASSERT(init_coarse_source(&source, 0, 0x9));
    VT_ASSERT(init_fine_importer(&child, &source));
    VT_ASSERT(vmem_xalloc_addr(&child, 16, 0, 0, 0, 0, 0x800, VM_ENDALLOC | VM_NOSLEEP,
                               &addr) == 0);
    VT_ASSERT(addr == 0x800 - 16);
    vmem_xfree(&child, TS_PTR(addr), 16);
    VT_ASSERT(child.stat.import == 0 && source.stat.in_use == 2 * PAGE);
    VT_ASSERT(vmem_xalloc_addr(&child, 32, 0, 0, 0, 0, 0x800, VM_NOSLEEP, &addr) == 0);
    VT_ASSERT(addr + 32 <= 0x800);
    vmem_xfree(&child, TS_PTR(addr), 32);
    /* vmem_xalloc cannot return 0, so its range starts at 1: still page 0. */
    void *low = vmem_xalloc(&child, 64, 0, 0, 0, NULL, TS_PTR(0x800), VM_NOSLEEP);
    VT_ASSERT(low != NULL && TS_ADDR(low) + 64 <= 0x800);
    VT_ASSERT(child.stat.import == PAGE);
    VT_CONSISTENT(&child);
    vmem_xfree(&child, low, 64);
    VT_ASSERT(child.stat.import == 0 && source.stat.in_use == 2 * PAGE);
    vmem_destroy(&child);
    destroy_coarse_source(&source, 0, 0x9);
}

/* The only free page of the source holds the whole window the request
 * allows, at its bottom (maxaddr inside it) or at its top (minaddr inside
 * it): importing that page gives a placement. */
static void import_when_the_range_ends_inside_the_only_free_page(void)
{
    static Vmem source, child;
    uintptr_t free_page = SOURCE_BASE + 2 * PAGE, addr = 0;
    VT_ASSERT(init_coarse_source(&source, SOURCE_BASE, 1u << 2));
    VT_ASSERT(init_fine_importer(&child, &source));
    VT_ASSERT(vmem_xalloc_addr(&child, 48, 0, 0, 0, 0, free_page + 0x800, VM_NOSLEEP, &addr) ==
              0);
    VT_ASSERT(addr >= free_page && addr + 48 <= free_page + 0x800);
    vmem_xfree(&child, TS_PTR(addr), 48);
    VT_ASSERT(child.stat.import == 0 && source.stat.in_use == 3 * PAGE);
    VT_ASSERT(vmem_xalloc_addr(&child, 48, 0, 0, 0, free_page + 0x800, 0, VM_NOSLEEP, &addr) ==
              0);
    VT_ASSERT(addr >= free_page + 0x800 && addr + 48 <= free_page + PAGE);
    vmem_xfree(&child, TS_PTR(addr), 48);
    /* Both ends inside the page, and an alignment finer than it. */
    VT_ASSERT(vmem_xalloc_addr(&child, 256, 256, 0, 0, free_page + 0x410, free_page + 0xc00,
                               VM_NOSLEEP, &addr) == 0);
    VT_ASSERT(addr == free_page + 0x500);
    vmem_xfree(&child, TS_PTR(addr), 256);
    /* A window the page cannot hold still fails cleanly. */
    VT_ASSERT(vmem_xalloc_addr(&child, 0x900, 0, 0, 0, free_page + 0x800, 0, VM_NOSLEEP,
                               &addr) == -VMEM_ERR_NO_MEM);
    VT_ASSERT(child.stat.import == 0 && source.stat.in_use == 3 * PAGE);
    VT_CONSISTENT(&child);
    VT_CONSISTENT(&source);
    vmem_destroy(&child);
    destroy_coarse_source(&source, SOURCE_BASE, 1u << 2);
}

/* Completeness through a coarser source, checked against brute force: a
 * source of 8 pages with random pages free, a 16-byte-quantum child, and
 * random requests whose phase and nocross the source can place (multiples
 * of its page): the child's vmem_xalloc_addr succeeds exactly when some
 * placement lies in free pages of the source. */
#define PROP_PAGES 8
#define PROP_ROUNDS 500

static uint32_t prop_state;

static uint32_t prop_next(void)
{
    prop_state = prop_state * 1664525u + 1013904223u;
    return prop_state >> 8;
}

/* Does req have a placement in the free pages of free_mask? */
static bool prop_placement_exists(const struct ts_request *req, unsigned free_mask)
{
    for (unsigned p = 0; p < PROP_PAGES;) {
        if (!(free_mask & (1u << p))) {
            p++;
            continue;
        }
        unsigned end = p;
        while (end < PROP_PAGES && (free_mask & (1u << end)))
            end++;
        uintptr_t at;
        if (ts_lowest_placement(req, SOURCE_BASE + p * PAGE, (end - p) * PAGE, &at))
            return true;
        p = end;
    }
    return false;
}

static void prop_random_request(struct ts_request *req, int *policy)
{
    static const size_t aligns[] = {16, 64, 256, PAGE, 2 * PAGE};
    static const int policies[] = {0, VM_FIRSTFIT, VM_BESTFIT, VM_ENDALLOC};
    req->size = 16 * (1 + prop_next() % (prop_next() % 2 ? PAGE / 16 : 5 * PAGE / 16));
    req->align = aligns[prop_next() % 5];
    req->phase = req->align >= PAGE ? PAGE * (prop_next() % (req->align / PAGE)) : 0;
    req->nocross = 0;
    if (prop_next() % 2) {
        req->nocross = PAGE;
        while (req->nocross < req->size)
            req->nocross *= 2;
        req->nocross <<= prop_next() % 2;
    }
    req->minaddr = SOURCE_BASE - PAGE + 16 * (prop_next() % (10 * PAGE / 16));
    req->maxaddr = prop_next() % 4 == 0 ? 0
                                        : req->minaddr + 16 * (1 + prop_next() % (10 * PAGE / 16));
    req->not_zero = false;
    *policy = policies[prop_next() % 4];
}

static void coarse_source_import_is_complete_for_random_requests(void)
{
    static Vmem source, child;
    prop_state = 20;
    for (unsigned round = 0; round < PROP_ROUNDS; round++) {
        unsigned free_mask = (prop_next() | prop_next()) & ((1u << PROP_PAGES) - 1);
        VT_ASSERT(vmem_init(&source, "prop-source", TS_PTR(SOURCE_BASE), PROP_PAGES * PAGE, PAGE,
                            NULL, NULL, NULL, 0, 0) == 0);
        for (unsigned p = 0; p < PROP_PAGES; p++)
            if (!(free_mask & (1u << p)))
                VT_ASSERT(vmem_alloc_exact(&source, SOURCE_BASE + p * PAGE, PAGE, VM_NOSLEEP) ==
                          0);
        VT_ASSERT(init_fine_importer(&child, &source));
        struct ts_request req;
        int policy;
        prop_random_request(&req, &policy);
        bool exists = prop_placement_exists(&req, free_mask);
        uintptr_t addr = 0;
        int got = vmem_xalloc_addr(&child, req.size, req.align, req.phase, req.nocross,
                                   req.minaddr, req.maxaddr, policy | VM_NOSLEEP, &addr);
        if ((got == 0) != exists) {
            ts_note_u64("    round", round);
            ts_note_hex(", free pages", free_mask);
            ts_note_hex(", size", req.size);
            ts_note_hex(", align", req.align);
            ts_note_hex(", phase", req.phase);
            ts_note_hex(", nocross", req.nocross);
            ts_note_hex(", min", req.minaddr);
            ts_note_hex(", max", req.maxaddr);
            ts_note_hex(", policy", (uint64_t)policy);
            vtest_puts("\n");
        }
        VT_ASSERT((got == 0) == exists);
        if (got == 0) {
            VT_ASSERT(ts_placement_ok(&req, addr));
            VT_ASSERT(vmem_contains(&child, TS_PTR(addr), req.size));
            vmem_xfree(&child, TS_PTR(addr), req.size);
        }
        VT_ASSERT(child.stat.import == 0);
        size_t taken = 0;
        for (unsigned p = 0; p < PROP_PAGES; p++)
            taken += !(free_mask & (1u << p));
        VT_ASSERT(source.stat.in_use == taken * PAGE);
        vmem_destroy(&child);
        for (unsigned p = 0; p < PROP_PAGES; p++)
            if (!(free_mask & (1u << p)))
                vmem_xfree(&source, TS_PTR(SOURCE_BASE + p * PAGE), PAGE);
        vmem_destroy(&source);
    }
}

/* ---- Import sizes -------------------------------------------------------- */

static void *counting_import(Vmem *source, size_t size, int flags)
{
    calls.alloc_calls++;
    calls.alloc_source = source;
    void *addr = vmem_alloc(source, size, flags);
    if (addr != NULL) {
        calls.alloc_successes++;
        calls.last_import_addr = TS_ADDR(addr);
        calls.last_import_size = size;
    }
    return addr;
}

/* A byte-granular heap over a page arena, through a custom callback: one
 * page imported serves many small requests. */
static void custom_import_takes_whole_source_quanta(void)
{
    static Vmem source, heap;
    void *small[4];
    VT_ASSERT(init_source(&source, "import-source", SOURCE_BASE, SOURCE_PAGES));
    VT_ASSERT(vmem_init(&heap, "byte-heap", NULL, 0, 16, counting_import, recording_release,
                        &source, 0, 0) == 0);
    reset_calls(0);
    for (size_t i = 0; i < 4; i++) {
        small[i] = vmem_alloc(&heap, 48, VM_NOSLEEP);
        VT_ASSERT(small[i] != NULL);
    }
    VT_ASSERT(calls.alloc_calls == 1 && calls.last_import_size == PAGE);
    VT_ASSERT(heap.stat.import == PAGE && source.stat.in_use == PAGE);
    /* A constrained request is asked as size + align - quantum, rounded
     * to the source's quantum: 48 + 256 - 16 bytes, one page. */
    for (size_t i = 0; i < 4; i++)
        vmem_free(&heap, small[i], 48);
    VT_ASSERT(calls.free_calls == 1 && heap.stat.import == 0);
    reset_calls(0);
    void *aligned = vmem_xalloc(&heap, 48, 256, 0, 0, NULL, NULL, VM_NOSLEEP);
    VT_ASSERT(aligned != NULL && TS_ADDR(aligned) % 256 == 0);
    VT_ASSERT(calls.alloc_calls == 1 && calls.last_import_size == PAGE);
    vmem_xfree(&heap, aligned, 48);
    VT_ASSERT(calls.free_calls == 1 && calls.last_free_size == PAGE);
    VT_ASSERT(source.stat.in_use == 0);
    VT_CONSISTENT(&heap);
    vmem_destroy(&heap);
    vmem_destroy(&source);
}

/* A plain callback cannot be told a range or an alignment: it is asked
 * size + align - quantum (+ nocross), rounded up to the coarser of the two
 * quanta, so that a placement exists wherever the span lies. */
static void plain_callback_is_asked_size_plus_align_minus_quantum_plus_nocross(void)
{
    static Vmem source, child;
    VT_ASSERT(init_source(&source, "import-source", SOURCE_BASE, SOURCE_PAGES));
    VT_ASSERT(vmem_init(&child, "import-plain", NULL, 0, 16, counting_import,
                        recording_release, &source, 0, 0) == 0);
    reset_calls(0);
    void *aligned = vmem_xalloc(&child, PAGE, 4 * PAGE, PAGE, 0, NULL, NULL, VM_NOSLEEP);
    VT_ASSERT(aligned != NULL && (TS_ADDR(aligned) - PAGE) % (4 * PAGE) == 0);
    VT_ASSERT(calls.alloc_calls == 1 && calls.last_import_size == 5 * PAGE);
    vmem_xfree(&child, aligned, PAGE);
    VT_ASSERT(calls.free_calls == 1 && child.stat.total == 0);
    reset_calls(0);
    void *bounded = vmem_xalloc(&child, 2 * PAGE, 0, 0, 4 * PAGE, NULL, NULL, VM_NOSLEEP);
    VT_ASSERT(bounded != NULL);
    VT_ASSERT(TS_ADDR(bounded) / (4 * PAGE) == (TS_ADDR(bounded) + 2 * PAGE - 1) / (4 * PAGE));
    VT_ASSERT(calls.alloc_calls == 1 && calls.last_import_size == 6 * PAGE);
    vmem_xfree(&child, bounded, 2 * PAGE);
    VT_ASSERT(calls.free_calls == 1 && source.stat.in_use == 0 && child.stat.total == 0);
    vmem_destroy(&child);
    vmem_destroy(&source);
}

/* At the top of the address space, rounding the range outward to the
 * source's quantum must not wrap: minaddr inside the top page, maxaddr
 * inside it, and a phase finer than the source. */
static void import_inside_the_top_page_of_the_address_space(void)
{
    static Vmem source, child;
    uintptr_t top_page = UINTPTR_MAX - (PAGE - 1), source_base = top_page - 3 * PAGE;
    uintptr_t addr = 0;
    VT_ASSERT(init_coarse_source(&source, source_base, 1u << 3));
    VT_ASSERT(init_fine_importer(&child, &source));
    VT_ASSERT(vmem_xalloc_addr(&child, 48, 0, 0, 0, top_page + 0x800, 0, VM_NOSLEEP, &addr) ==
              0);
    VT_ASSERT(addr >= top_page + 0x800 && addr <= UINTPTR_MAX - 47);
    vmem_xfree(&child, TS_PTR(addr), 48);
    VT_ASSERT(child.stat.import == 0);
    VT_ASSERT(vmem_xalloc_addr(&child, 48, 0, 0, 0, 0, top_page + 0x800,
                               VM_ENDALLOC | VM_NOSLEEP, &addr) == 0);
    VT_ASSERT(addr == top_page + 0x800 - 48);
    vmem_xfree(&child, TS_PTR(addr), 48);
    VT_ASSERT(vmem_xalloc_addr(&child, 16, 64, 16, 0, top_page + 0x800, 0, VM_NOSLEEP,
                               &addr) == 0);
    VT_ASSERT(addr >= top_page + 0x800 && addr % 64 == 16);
    vmem_xfree(&child, TS_PTR(addr), 16);
    VT_ASSERT(child.stat.import == 0 && source.stat.in_use == 3 * PAGE);
    VT_CONSISTENT(&child);
    vmem_destroy(&child);
    destroy_coarse_source(&source, source_base, 1u << 3);
}

/* ---- The import quantum ------------------------------------------------- */

static void import_quantum_makes_small_requests_import_big_spans(void)
{
    static Vmem source, heap;
    VT_ASSERT(init_source(&source, "import-source", SOURCE_BASE, SOURCE_PAGES));
    VT_ASSERT(vmem_init(&heap, "quantum-heap", NULL, 0, 16, vmem_alloc, vmem_free, &source, 0,
                        0) == 0);
    VT_ASSERT(vmem_set_import_quantum(&heap, 16 * PAGE) == 0);
    void *a = vmem_alloc(&heap, 48, VM_NOSLEEP);
    void *b = vmem_xalloc(&heap, 48, 1024, 0, 0, NULL, NULL, VM_NOSLEEP);
    VT_ASSERT(a != NULL && b != NULL);
    VT_ASSERT(heap.stat.import == 16 * PAGE && source.stat.in_use == 16 * PAGE);
    vmem_free(&heap, a, 48);
    vmem_xfree(&heap, b, 48);
    VT_ASSERT(heap.stat.import == 0 && source.stat.in_use == 0);
    /* With fewer than 16 pages free in the source, the import settles for
     * the smallest span that serves the request. */
    void *most = vmem_alloc(&source, (SOURCE_PAGES - 2) * PAGE, VM_NOSLEEP);
    VT_ASSERT(most != NULL);
    a = vmem_alloc(&heap, 48, VM_NOSLEEP);
    VT_ASSERT(a != NULL && heap.stat.import == PAGE);
    vmem_free(&heap, a, 48);
    vmem_free(&source, most, (SOURCE_PAGES - 2) * PAGE);
    /* A plain callback is asked whole import quanta too; the arena's own
     * quantum turns the import quantum off again. */
    VT_ASSERT(vmem_set_import_quantum(&heap, 16) == 0);
    a = vmem_alloc(&heap, 48, VM_NOSLEEP);
    VT_ASSERT(a != NULL && heap.stat.import == PAGE);
    vmem_free(&heap, a, 48);
    static Vmem plain;
    VT_ASSERT(vmem_init(&plain, "quantum-plain", NULL, 0, 16, counting_import,
                        recording_release, &source, 0, 0) == 0);
    VT_ASSERT(vmem_set_import_quantum(&plain, 4 * PAGE) == 0);
    reset_calls(0);
    a = vmem_alloc(&plain, 48, VM_NOSLEEP);
    VT_ASSERT(a != NULL && calls.alloc_calls == 1 && calls.last_import_size == 4 * PAGE);
    vmem_free(&plain, a, 48);
    VT_ASSERT(calls.free_calls == 1 && calls.last_free_size == 4 * PAGE);
    VT_ASSERT(source.stat.in_use == 0);
    VT_CONSISTENT(&heap);
    vmem_destroy(&plain);
    vmem_destroy(&heap);
    vmem_destroy(&source);
}

static void bad_import_quantum_is_misuse_and_changes_nothing(void)
{
    static Vmem source, heap;
    VT_ASSERT(init_source(&source, "import-source", SOURCE_BASE, SOURCE_PAGES));
    VT_ASSERT(vmem_init(&heap, "quantum-misuse", NULL, 0, 16, vmem_alloc, vmem_free, &source, 0,
                        0) == 0);
    VT_ASSERT(vmem_set_import_quantum(&heap, 2 * PAGE) == 0);
    static const size_t bad[] = {0, 3 * PAGE, 8, 12};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ts_capture_misuse();
        VT_ASSERT(vmem_set_import_quantum(&heap, bad[i]) == -VMEM_ERR_INVALID);
        VT_ASSERT(ts_misuse_once(VMEM_MISUSE_BAD_ARGUMENT, "vmem_set_import_quantum",
                                 "quantum-misuse"));
        VT_ASSERT(ts_misuse_echoes(0, bad[i]));
    }
    /* An arena without a source imports nothing. */
    ts_capture_misuse();
    VT_ASSERT(vmem_set_import_quantum(&source, 2 * PAGE) == -VMEM_ERR_INVALID);
    VT_ASSERT(ts_misuse_once(VMEM_MISUSE_BAD_ARGUMENT, "vmem_set_import_quantum",
                             "import-source"));
    vtest_env_misuse_capture(false);
    /* The quantum set before the misuse still holds. */
    void *a = vmem_alloc(&heap, 48, VM_NOSLEEP);
    VT_ASSERT(a != NULL && heap.stat.import == 2 * PAGE);
    vmem_free(&heap, a, 48);
    vmem_destroy(&heap);
    ts_capture_misuse();
    VT_ASSERT(vmem_set_import_quantum(&heap, 2 * PAGE) == -VMEM_ERR_INVALID);
    VT_ASSERT(ts_misuse_once(VMEM_MISUSE_NOT_ARENA, "vmem_set_import_quantum", NULL));
    vtest_env_misuse_capture(false);
    VT_ASSERT(source.stat.in_use == 0);
    vmem_destroy(&source);
}

/* ---- Constrained import through a callback of one's own ----------------- */

/* A kernel's mapped window: virtual = frame + KVA_OFFSET. The import takes
 * frames within the constraints, translated, and records a mapping; the
 * release removes it and gives the frames back. */
#define KVA_OFFSET ((uintptr_t)0x40000000)
#define FRAMES_BASE ((uintptr_t)0x100000)
#define FRAMES 64

static struct {
    size_t import_calls, imports, releases, bad_releases;
    size_t asked_size, asked_align;
    uintptr_t asked_min, asked_max;
    size_t nmap;
    struct {
        uintptr_t va, pa;
        size_t size;
    } map[16];
} mapping;

static int mapping_import(Vmem *frames, size_t size, size_t align, size_t phase, size_t nocross,
                          uintptr_t minaddr, uintptr_t maxaddr, int vmflag, uintptr_t *addrp)
{
    mapping.import_calls++;
    mapping.asked_size = size;
    mapping.asked_align = align;
    mapping.asked_min = minaddr;
    mapping.asked_max = maxaddr;
    if ((maxaddr != 0 && maxaddr <= KVA_OFFSET) || mapping.nmap == 16)
        return -VMEM_ERR_NO_MEM;
    uintptr_t pmin = minaddr > KVA_OFFSET ? minaddr - KVA_OFFSET : 0;
    uintptr_t pmax = maxaddr != 0 ? maxaddr - KVA_OFFSET : 0;
    uintptr_t pa;
    int result = vmem_xalloc_addr(frames, size, align, phase, nocross, pmin, pmax, vmflag, &pa);
    if (result != 0)
        return result;
    mapping.map[mapping.nmap].va = pa + KVA_OFFSET;
    mapping.map[mapping.nmap].pa = pa;
    mapping.map[mapping.nmap].size = size;
    mapping.nmap++;
    mapping.imports++;
    *addrp = pa + KVA_OFFSET;
    return 0;
}

static void mapping_release(Vmem *frames, void *va, size_t size)
{
    for (size_t i = 0; i < mapping.nmap; i++) {
        if (mapping.map[i].va == TS_ADDR(va) && mapping.map[i].size == size) {
            vmem_xfree(frames, TS_PTR(mapping.map[i].pa), size);
            mapping.map[i] = mapping.map[--mapping.nmap];
            mapping.releases++;
            return;
        }
    }
    mapping.bad_releases++;
}

static void reset_mapping(void)
{
    mapping.import_calls = mapping.imports = mapping.releases = mapping.bad_releases = 0;
    mapping.nmap = 0;
}

/* Everything a kva arena allocates lies in one recorded mapping. */
static bool mapped(uintptr_t va, size_t size)
{
    for (size_t i = 0; i < mapping.nmap; i++)
        if (va >= mapping.map[i].va && va - mapping.map[i].va <= mapping.map[i].size - size)
            return true;
    return false;
}

/* The kernel's ranged request: 64 KiB-aligned... here 4 pages aligned,
 * inside an 8-page window of the mapped space. */
static void exercise_kva(Vmem *kva, Vmem *frames)
{
    uintptr_t lo = KVA_OFFSET + FRAMES_BASE + 40 * PAGE, hi = lo + 8 * PAGE;
    void *ranged = vmem_xalloc(kva, 2 * PAGE, 4 * PAGE, 0, 0, TS_PTR(lo), TS_PTR(hi), VM_NOSLEEP);
    VT_ASSERT(ranged != NULL);
    VT_ASSERT(TS_ADDR(ranged) >= lo && TS_ADDR(ranged) + 2 * PAGE <= hi);
    VT_ASSERT(TS_ADDR(ranged) % (4 * PAGE) == 0);
    VT_ASSERT(mapped(TS_ADDR(ranged), 2 * PAGE));
    /* The callback was told the request itself, in the source's units. */
    VT_ASSERT(mapping.asked_size == 2 * PAGE && mapping.asked_align == 4 * PAGE);
    VT_ASSERT(mapping.asked_min == lo && mapping.asked_max == hi);
    void *plain = vmem_alloc(kva, 3 * PAGE, VM_NOSLEEP);
    void *bounded = vmem_xalloc(kva, 3 * PAGE, 0, 0, 4 * PAGE, NULL, NULL, VM_NOSLEEP);
    void *top = vmem_xalloc(kva, PAGE, 0, 0, 0, NULL, TS_PTR(KVA_OFFSET + FRAMES_BASE + 8 * PAGE),
                            VM_ENDALLOC | VM_NOSLEEP);
    VT_ASSERT(plain != NULL && bounded != NULL && top != NULL);
    VT_ASSERT(mapped(TS_ADDR(plain), 3 * PAGE) && mapped(TS_ADDR(bounded), 3 * PAGE));
    VT_ASSERT(TS_ADDR(bounded) / (4 * PAGE) == (TS_ADDR(bounded) + 3 * PAGE - 1) / (4 * PAGE));
    VT_ASSERT(TS_ADDR(top) == KVA_OFFSET + FRAMES_BASE + 7 * PAGE);
    VT_ASSERT(frames->stat.in_use == kva->stat.import);
    VT_CONSISTENT(kva);
    vmem_xfree(kva, ranged, 2 * PAGE);
    vmem_free(kva, plain, 3 * PAGE);
    vmem_xfree(kva, bounded, 3 * PAGE);
    vmem_xfree(kva, top, PAGE);
    VT_ASSERT(kva->stat.import == 0 && frames->stat.in_use == 0);
}

static void constrained_import_through_a_mapping_callback(void)
{
    static Vmem frames, kva;
    VT_ASSERT(vmem_init(&frames, "frames", TS_PTR(FRAMES_BASE), FRAMES * PAGE, PAGE, NULL, NULL,
                        NULL, 0, 0) == 0);
    VT_ASSERT(vmem_init(&kva, "kva", NULL, 0, PAGE, vmem_alloc, vmem_free, &frames, 0,
                        VM_NOSLEEP) == 0);
    VT_ASSERT(vmem_set_ximport(&kva, mapping_import, mapping_release) == 0);
    reset_mapping();
    exercise_kva(&kva, &frames);
    vmem_destroy(&kva);
    VT_ASSERT(mapping.imports >= 4 && mapping.imports == mapping.releases);
    VT_ASSERT(mapping.nmap == 0 && mapping.bad_releases == 0);
    VT_ASSERT(frames.stat.in_use == 0 && frames.stat.alloc == frames.stat.free);

    /* The same through vmem_create. */
    Vmem *created = vmem_create("kva-created", NULL, 0, PAGE, vmem_alloc, vmem_free, &frames, 0,
                                VM_NOSLEEP);
    VT_ASSERT(created != NULL);
    VT_ASSERT(vmem_set_ximport(created, mapping_import, mapping_release) == 0);
    reset_mapping();
    exercise_kva(created, &frames);
    vmem_destroy(created);
    VT_ASSERT(mapping.imports >= 4 && mapping.imports == mapping.releases);
    VT_ASSERT(mapping.nmap == 0 && mapping.bad_releases == 0);
    VT_CONSISTENT(&frames);
    vmem_destroy(&frames);
}

/* A constrained import the callback cannot satisfy fails cleanly and takes
 * nothing; one it can satisfy only outside the request's range is given
 * back through the release. */
static void constrained_import_callback_failures_leave_nothing_imported(void)
{
    static Vmem frames, kva;
    VT_ASSERT(vmem_init(&frames, "frames", TS_PTR(FRAMES_BASE), FRAMES * PAGE, PAGE, NULL, NULL,
                        NULL, 0, 0) == 0);
    VT_ASSERT(vmem_init(&kva, "kva", NULL, 0, PAGE, vmem_alloc, vmem_free, &frames, 0, 0) == 0);
    VT_ASSERT(vmem_set_ximport(&kva, mapping_import, mapping_release) == 0);
    reset_mapping();
    ts_capture_misuse();
    /* Below the mapped window: the callback refuses. */
    VT_ASSERT(vmem_xalloc(&kva, PAGE, 0, 0, 0, NULL, TS_PTR(KVA_OFFSET), VM_NOSLEEP) == NULL);
    /* Beyond the frames. */
    VT_ASSERT(vmem_xalloc(&kva, PAGE, 0, 0, 0, TS_PTR(KVA_OFFSET + FRAMES_BASE + FRAMES * PAGE),
                          NULL, VM_NOSLEEP) == NULL);
    VT_ASSERT(mapping.import_calls >= 2 && mapping.import_calls <= 2 * IMPORT_ATTEMPTS_MAX);
    VT_ASSERT(vtest_env_misuse_count() == 0);
    VT_ASSERT(ts_stat_is(&kva, 0, 0, 0, 0, 0));
    VT_ASSERT(mapping.imports == mapping.releases && mapping.nmap == 0);
    VT_ASSERT(frames.stat.in_use == 0);
    vtest_env_misuse_capture(false);
    VT_CONSISTENT(&kva);
    vmem_destroy(&kva);
    vmem_destroy(&frames);
}

static void bad_ximport_settings_are_misuse_and_change_nothing(void)
{
    static Vmem frames, kva;
    VT_ASSERT(vmem_init(&frames, "frames", TS_PTR(FRAMES_BASE), FRAMES * PAGE, PAGE, NULL, NULL,
                        NULL, 0, 0) == 0);
    VT_ASSERT(vmem_init(&kva, "kva-misuse", NULL, 0, PAGE, counting_import, recording_release,
                        &frames, 0, 0) == 0);
    ts_capture_misuse();
    VT_ASSERT(vmem_set_ximport(&kva, NULL, mapping_release) == -VMEM_ERR_INVALID);
    VT_ASSERT(ts_misuse_once(VMEM_MISUSE_BAD_ARGUMENT, "vmem_set_ximport", "kva-misuse"));
    ts_capture_misuse();
    VT_ASSERT(vmem_set_ximport(&frames, mapping_import, mapping_release) == -VMEM_ERR_INVALID);
    VT_ASSERT(ts_misuse_once(VMEM_MISUSE_BAD_ARGUMENT, "vmem_set_ximport", "frames"));
    vtest_env_misuse_capture(false);
    /* Once a span is imported, it must go back the way it came. */
    reset_calls(0);
    reset_mapping();
    void *held = vmem_alloc(&kva, PAGE, VM_NOSLEEP);
    VT_ASSERT(held != NULL && calls.alloc_successes == 1);
    ts_capture_misuse();
    VT_ASSERT(vmem_set_ximport(&kva, mapping_import, mapping_release) == -VMEM_ERR_INVALID);
    VT_ASSERT(ts_misuse_once(VMEM_MISUSE_BAD_ARGUMENT, "vmem_set_ximport", "kva-misuse"));
    vtest_env_misuse_capture(false);
    void *more = vmem_alloc(&kva, 2 * PAGE, VM_NOSLEEP);
    VT_ASSERT(more != NULL && calls.alloc_successes == 2 && mapping.import_calls == 0);
    vmem_free(&kva, held, PAGE);
    vmem_free(&kva, more, 2 * PAGE);
    VT_ASSERT(calls.free_calls == 2 && mapping.releases + mapping.bad_releases == 0);
    VT_ASSERT(frames.stat.in_use == 0);
    vmem_destroy(&kva);
    ts_capture_misuse();
    VT_ASSERT(vmem_set_ximport(&kva, mapping_import, mapping_release) == -VMEM_ERR_INVALID);
    VT_ASSERT(ts_misuse_once(VMEM_MISUSE_NOT_ARENA, "vmem_set_ximport", NULL));
    vtest_env_misuse_capture(false);
    vmem_destroy(&frames);
}

VTEST_SUITE(suite_import,
            VTEST_CASE(import_brings_in_a_span_on_demand),
            VTEST_CASE(span_goes_back_to_the_source_once_wholly_free),
            VTEST_CASE(span_stays_while_any_segment_in_it_is_live),
            VTEST_CASE(constrained_import_honours_a_range_when_phase_is_finer_than_the_source),
            VTEST_CASE(added_spans_stay_and_only_imported_spans_go_back),
            VTEST_CASE(constrained_import_honours_align_and_phase),
            VTEST_CASE(constrained_import_honours_nocross),
            VTEST_CASE(constrained_import_honours_minaddr_and_maxaddr),
            VTEST_CASE(alloc_exact_imports_the_requested_range),
            VTEST_CASE(exhausted_source_makes_import_fail_cleanly),
            VTEST_CASE(request_larger_than_the_source_fails_cleanly),
            VTEST_CASE(chain_of_three_arenas_imports_through_every_level),
            VTEST_CASE(custom_import_returning_null_fails_without_looping),
            VTEST_CASE(custom_import_of_an_unsuitable_span_fails_without_looping),
            VTEST_CASE(callbacks_receive_the_source_arena),
            VTEST_CASE(destroying_an_idle_importer_leaves_the_source_clean),
            VTEST_CASE(import_left_unused_by_a_racing_free_goes_back),
            VTEST_CASE(release_is_called_for_every_span_imported_through_vmem_alloc),
            VTEST_CASE(without_a_give_back_function_spans_stay_until_destroy),
            VTEST_CASE(import_under_a_maxaddr_below_the_first_source_page_finds_page_zero),
            VTEST_CASE(import_when_the_range_ends_inside_the_only_free_page),
            VTEST_CASE(custom_import_takes_whole_source_quanta),
            VTEST_CASE(plain_callback_is_asked_size_plus_align_minus_quantum_plus_nocross),
            VTEST_CASE(import_inside_the_top_page_of_the_address_space),
            VTEST_CASE(coarse_source_import_is_complete_for_random_requests),
            VTEST_CASE(import_quantum_makes_small_requests_import_big_spans),
            VTEST_CASE(bad_import_quantum_is_misuse_and_changes_nothing),
            VTEST_CASE(constrained_import_through_a_mapping_callback),
            VTEST_CASE(constrained_import_callback_failures_leave_nothing_imported),
            VTEST_CASE(bad_ximport_settings_are_misuse_and_change_nothing));
