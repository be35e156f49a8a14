/*
 * host_pages.c - host-only tests of the library against a page source that
 * is itself a vmem arena, as in a kernel whose boundary tags and hash
 * tables come from its frame arena (docs/design.md). The POSIX port
 * panics if the library calls the page source from inside a page-source
 * allocation, so any recursion fails these tests loudly.
 */
#include <stdio.h>
#include <sys/mman.h>

#include "test_support.h"
#include "vmem_posix.h"

#define PAGE 4096UL
#define REGION_BYTES (1UL << 30)
/* Ranges of the integer-only arenas (never touched as memory): above 4 GiB
 * on 64-bit, below it on 32-bit, where the work arena is 1 GiB rather than
 * 4 GiB (it needs 400 MiB: half of the 200,000 pages live at once). */
#if UINTPTR_MAX > 0xffffffffu
#define WORK_BASE 0x1000000000UL
#define WORK_BYTES (1UL << 32)
#define CACHED_BASE 0x2000000000UL
#else
#define WORK_BASE 0x40000000UL
#define WORK_BYTES (1UL << 30)
#define CACHED_BASE 0x80000000UL
#endif

/* Frames for the page source. Never destroyed: pages it lent may stay in
 * the library's pool while tags on them are in use (see hold_spare_tags),
 * and the port gives pages back only to the arena they came from. */
static Vmem frames;
static bool frames_ready;

static bool use_frame_pages(void)
{
    if (!frames_ready) {
        void *region = mmap(NULL, REGION_BYTES, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (region == MAP_FAILED ||
            vmem_init(&frames, "frames", region, REGION_BYTES, PAGE, NULL, NULL, NULL, 0,
                      VM_NOSLEEP) != 0)
            return false;
        frames_ready = true;
    }
    vmem_posix_use_arena_pages(&frames);
    return true;
}

/* Pages the POSIX port has out once the library gave back every tag page
 * it could: what the tests below return to. One call, as vmem.h promises:
 * pages given back to the frame arena free some of its tags, and the pages
 * those leave unused must go back in the same call, or the tests' "back
 * to where it was" checks below fail (a single-pass release fails
 * released_tag_pages_go_back_to_the_page_source). */
static size_t pages_with_no_tag_pages_kept(void)
{
    vmem_posix_use_arena_pages(NULL);
    vmem_release_pages();
    return vmem_posix_pages_outstanding();
}

/*
 * The frame arena's own bookkeeping, seen from outside with vmem_walk: its
 * spans and tags (one per segment and one per span), the pages it has
 * lent, into how many runs of adjacent pages those fall, and where the
 * lowest and the last of them are.
 */
typedef struct {
    size_t spans;
    size_t tags;
    size_t alloc_pages;
    size_t runs;
    uintptr_t lowest;   /* start of the lowest allocated segment */
    uintptr_t first_run_end; /* end of the run that starts there */
    uintptr_t run_end;  /* end of the last allocated segment seen */
    uintptr_t span_end; /* end of the last span seen */
} FrameCensus;

static void count_frame_segment(void *arg, uintptr_t addr, size_t size, int type)
{
    FrameCensus *census = arg;
    census->tags++;
    if (type == VMEM_SPAN) {
        census->spans++;
        census->span_end = addr + size;
    } else if (type == VMEM_ALLOC) {
        if (census->runs == 0)
            census->lowest = addr;
        census->alloc_pages += size / PAGE;
        if (census->runs == 0 || addr != census->run_end)
            census->runs++;
        census->run_end = addr + size;
        if (census->runs == 1)
            census->first_run_end = census->run_end;
    }
}

static FrameCensus frame_census(void)
{
    FrameCensus census = {0, 0, 0, 0, 0, 0, 0, 0};
    vmem_walk(&frames, VMEM_ALLOC | VMEM_FREE | VMEM_SPAN, count_frame_segment, &census);
    return census;
}

static void print_census(const char *when, FrameCensus census)
{
    printf("    %s: the frame arena lends %zu pages in %zu runs and has %zu tags\n", when,
           census.alloc_pages, census.runs, census.tags);
}

/* Frees the pages live[0..n) one at a time in an order drawn from seed,
 * with release (vmem_free or vmem_xfree): the pattern that scatters free
 * tags over every tag page. */
static void free_pages_in_random_order(Vmem *vm, uintptr_t *live, size_t n, uint64_t seed,
                                       void (*release)(Vmem *, void *, size_t))
{
    VtestRng rng;
    vtest_rng_seed(&rng, seed);
    for (size_t left = n; left > 0; left--) {
        size_t j = (size_t)vtest_rng_below(&rng, left);
        release(vm, TS_PTR(live[j]), PAGE);
        live[j] = live[left - 1];
    }
}

/*
 * The next three tests run first, on a fresh frame arena whose span tag
 * predates its use as page source, as a kernel's frame arena does: tag
 * pages then come top-down with no gap to reuse, the setting in which
 * vmem.h states what vmem_release_pages() keeps.
 */

/* 40,000 segments with a tag each - a thousand tag pages on LP64 - in an
 * arena that is then destroyed: in this setting vmem.h promises that every
 * page the frame arena lent comes back, its records of them keeping none
 * (its span and free-space tags came from the pool before it lent any). */
static void a_burst_leaves_the_frame_arena_no_page_lent(void)
{
    static Vmem burst;
    static uintptr_t live[40000];
    pages_with_no_tag_pages_kept();
    VT_ASSERT(use_frame_pages());
    VT_ASSERT(vmem_init(&burst, "burst", TS_PTR(WORK_BASE), WORK_BYTES, PAGE, NULL, NULL, NULL,
                        0, VM_NOSLEEP) == 0);
    for (size_t i = 0; i < 40000; i++) {
        void *got = vmem_alloc(&burst, PAGE, VM_NOSLEEP);
        VT_ASSERT(got != NULL);
        live[i] = TS_ADDR(got);
    }
    VT_ASSERT(frame_census().alloc_pages > 400);
    free_pages_in_random_order(&burst, live, 40000, 0xb0257, vmem_free);
    vmem_destroy(&burst);
    vmem_release_pages();
    FrameCensus census = frame_census();
    print_census("after the burst", census);
    VT_ASSERT(census.alloc_pages == 0);
    VT_ASSERT(census.tags == 2 * census.spans); /* each span one free segment */
    vmem_posix_use_arena_pages(NULL);
    VT_CONSISTENT(&frames);
}

/* The same burst, with a small arena made near its end kept: its
 * few tags (its span, two segments, its spare tags) took one or two pages
 * of the burst's. Those pages stay, and each record of a page left keeps
 * a page of the record level above; the free gap left below a page that
 * stays keeps the page with its tag, a level-1 record page. So what stays
 * is at most those pages, their record pages, and every level-1 page the
 * burst made: one per TAGS_PER_PAGE_MIN pages it took. */
#define TAGS_PER_PAGE_MIN (PAGE / (12 * sizeof(void *)) - 1) /* a tag is 12 words */
static void a_small_arena_kept_from_a_burst_keeps_few_pages_of_the_frame_arena(void)
{
    static Vmem burst, kept;
    static uintptr_t live[40000];
    pages_with_no_tag_pages_kept();
    VT_ASSERT(use_frame_pages());
    VT_ASSERT(vmem_init(&burst, "burst", TS_PTR(WORK_BASE), WORK_BYTES, PAGE, NULL, NULL, NULL,
                        0, VM_NOSLEEP) == 0);
    for (size_t i = 0; i < 40000; i++) {
        if (i == 36000) {
            VT_ASSERT(vmem_init(&kept, "kept", TS_PTR(CACHED_BASE), 1UL << 20, PAGE, NULL, NULL,
                                NULL, 0, VM_NOSLEEP) == 0);
            VT_ASSERT(vmem_alloc(&kept, PAGE, VM_NOSLEEP) != NULL);
        }
        void *got = vmem_alloc(&burst, PAGE, VM_NOSLEEP);
        VT_ASSERT(got != NULL);
        live[i] = TS_ADDR(got);
    }
    size_t peak = frame_census().alloc_pages;
    for (size_t i = 0; i < 40000; i++)
        vmem_free(&burst, TS_PTR(live[i]), PAGE);
    vmem_destroy(&burst);
    vmem_release_pages();
    FrameCensus census = frame_census();
    print_census("with a small arena kept", census);
    size_t kept_pages = 2; /* its tags came from at most two pages */
    VT_ASSERT(census.alloc_pages <=
              kept_pages * (1 + 3) + (peak + TAGS_PER_PAGE_MIN - 1) / TAGS_PER_PAGE_MIN);
    vmem_free(&kept, TS_PTR(CACHED_BASE), PAGE);
    vmem_destroy(&kept);
    vmem_release_pages();
    VT_ASSERT(frame_census().alloc_pages == 0);
    vmem_posix_use_arena_pages(NULL);
    VT_CONSISTENT(&frames);
}

/* A kernel takes its frames from the bottom of its frame arena while the
 * allocator's metadata grows: the metadata must not be strewn among those
 * frames while they are out, and after a teardown what is left of it must
 * be one run at the top of the arena. (Here nothing is left; vmem.h
 * promises that only for tag pages taken top-down into free space, and
 * here some went into gaps that old hash tables left.) */
static void frames_and_metadata_interleaved_leave_no_metadata_among_the_frames(void)
{
    static Vmem work;
    static void *frame[2000];
    pages_with_no_tag_pages_kept();
    VT_ASSERT(use_frame_pages());
    VT_ASSERT(vmem_init(&work, "work", TS_PTR(WORK_BASE), WORK_BYTES, PAGE, NULL, NULL, NULL, 0,
                        VM_NOSLEEP) == 0);
    /* Each frame is followed by 20 segments of work: metadata grows by a
     * tag page every other frame or so. */
    for (size_t i = 0; i < 2000; i++) {
        frame[i] = vmem_alloc(&frames, PAGE, VM_NOSLEEP);
        VT_ASSERT(frame[i] != NULL);
        for (size_t j = 0; j < 20; j++)
            VT_ASSERT(vmem_alloc_exact(&work, WORK_BASE + (i * 20 + j) * PAGE, PAGE,
                                       VM_NOSLEEP) == 0);
    }
    /* The run of pages at the bottom of the arena is the kernel's frames
     * and nothing else. */
    FrameCensus peak = frame_census();
    print_census("at the peak", peak);
    size_t frames_at_bottom = 0;
    for (size_t i = 0; i < 2000; i++)
        if (TS_ADDR(frame[i]) >= peak.lowest && TS_ADDR(frame[i]) < peak.first_run_end)
            frames_at_bottom++;
    VT_ASSERT(frames_at_bottom > 0);
    VT_ASSERT(frames_at_bottom * PAGE == peak.first_run_end - peak.lowest);
    for (size_t i = 0; i < 2000 * 20; i++)
        vmem_xfree(&work, TS_PTR(WORK_BASE + i * PAGE), PAGE);
    vmem_destroy(&work);
    for (size_t i = 0; i < 2000; i++)
        vmem_free(&frames, frame[i], PAGE);
    vmem_release_pages();
    FrameCensus census = frame_census();
    print_census("after the teardown", census);
    VT_ASSERT(census.runs <= 1);
    VT_ASSERT(census.runs == 0 || census.run_end == census.span_end);
    VT_ASSERT(census.runs == 0 || census.lowest >= peak.first_run_end);
    vmem_posix_use_arena_pages(NULL);
    VT_CONSISTENT(&frames);
}

static void growing_and_shrinking_hashes_never_recurse_into_the_page_source(void)
{
    static Vmem work;
    static uintptr_t live[200000];
    /* Spare tags left by earlier tests (a million after a full-scale run)
     * would serve every tag this test needs: no refill would come from the
     * frame arena. */
    pages_with_no_tag_pages_kept();
    VT_ASSERT(use_frame_pages());
    VT_ASSERT(vmem_init(&work, "work", TS_PTR(WORK_BASE), WORK_BYTES, PAGE, NULL, NULL, NULL, 0,
                        VM_NOSLEEP) == 0);
    /* Tag refills and hash growth, in both arenas, then shrinking. */
    for (size_t round = 0; round < 3; round++) {
        for (size_t i = 0; i < 200000; i++) {
            void *got = vmem_alloc(i % 2 ? &work : &frames, PAGE, VM_NOSLEEP);
            VT_ASSERT(got != NULL);
            live[i] = TS_ADDR(got);
        }
        for (size_t i = 0; i < 200000; i++)
            vmem_free(i % 2 ? &work : &frames, TS_PTR(live[i]), PAGE);
        VT_CONSISTENT(&work);
        VT_CONSISTENT(&frames);
    }
    vmem_destroy(&work);
    vmem_posix_use_arena_pages(NULL);
    VT_CONSISTENT(&frames);
}

static void caches_of_the_page_arena_are_bypassed_by_the_page_source(void)
{
    static Vmem cached;
    VT_ASSERT(use_frame_pages());
    /* An arena with caches whose structures come from the frame arena. */
    VT_ASSERT(vmem_init(&cached, "cached", TS_PTR(CACHED_BASE), 1UL << 30, PAGE, NULL, NULL,
                        NULL, 8 * PAGE, VM_NOSLEEP) == 0);
    static void *objects[5000];
    for (size_t i = 0; i < 5000; i++) {
        objects[i] = vmem_alloc(&cached, (1 + i % 8) * PAGE, VM_NOSLEEP);
        VT_ASSERT(objects[i] != NULL);
    }
    for (size_t i = 0; i < 5000; i++)
        vmem_free(&cached, objects[i], (1 + i % 8) * PAGE);
    vmem_destroy(&cached);
    vmem_posix_use_arena_pages(NULL);
    VT_CONSISTENT(&frames);
}

/* Arenas over [SPARSE_BASE, + size) whose allocations are every other
 * page: each keeps a free neighbour, so each needs tags of its own. */
#define SPARSE_BASE 0x10000000UL

static uintptr_t sparse_page(size_t i) { return SPARSE_BASE + 2 * i * PAGE; }

/* Creates vm and allocates its first n sparse pages; false on a failure. */
static bool sparse_arena(Vmem *vm, const char *name, size_t size, size_t n)
{
    if (vmem_init(vm, name, TS_PTR(SPARSE_BASE), size, PAGE, NULL, NULL, NULL, 0, VM_NOSLEEP) != 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (vmem_alloc_exact(vm, sparse_page(i), PAGE, VM_NOSLEEP) != 0)
            return false;
    return true;
}

static void sparse_free(Vmem *vm, size_t n)
{
    for (size_t i = 0; i < n; i++)
        vmem_xfree(vm, TS_PTR(sparse_page(i)), PAGE);
}

/*
 * The pool hands out the tags it has before it takes a page, and pages that
 * hold a tag in use do not go back (the frame arena, never destroyed, keeps
 * its records of the pages it lent, its free gaps and its hash table on
 * some), so after earlier tests it may hold many spare tags. A test whose
 * arena must take new pages first takes every spare tag into `hold`, sized
 * from the pages out: a tag is at least its 8-word hot part, and each
 * sparse page after the first costs two tags.
 */
#define TAGS_PER_PAGE_MAX (PAGE / (8 * sizeof(void *)))

static bool hold_spare_tags(Vmem *hold, size_t pages_out, size_t *held)
{
    *held = pages_out * TAGS_PER_PAGE_MAX / 2 + 1;
    if (*held > (UINTPTR_MAX - SPARSE_BASE) / (2 * PAGE))
        return false;
    return sparse_arena(hold, "spare-tags", 2 * *held * PAGE, *held);
}

/* Returns the pages out once the held tags and their pages are back. */
static size_t let_go_of_spare_tags(Vmem *hold, size_t held)
{
    sparse_free(hold, held);
    vmem_destroy(hold);
    return pages_with_no_tag_pages_kept();
}

static void released_tag_pages_go_back_to_the_page_source(void)
{
    static Vmem vm, hold;
    size_t before = pages_with_no_tag_pages_kept(), held;
    VT_ASSERT(hold_spare_tags(&hold, before, &held));
    size_t baseline = vmem_posix_pages_outstanding();
    /* 30,000 segments with tags of their own: the pool grows by many pages. */
    VT_ASSERT(sparse_arena(&vm, "tag-pages", 0x10000000UL, 30000));
    VT_ASSERT(vmem_posix_pages_outstanding() > baseline + 500);
    sparse_free(&vm, 30000);
    vmem_destroy(&vm);
    VT_ASSERT(vmem_release_pages() > 500);
    VT_ASSERT(vmem_posix_pages_outstanding() == baseline);
    /* The allocator carries on: new tags come from new pages. */
    VT_ASSERT(sparse_arena(&vm, "tag-pages-again", 0x1000000UL, 1000));
    VT_CONSISTENT(&vm);
    sparse_free(&vm, 1000);
    vmem_destroy(&vm);
    vmem_release_pages();
    VT_ASSERT(vmem_posix_pages_outstanding() == baseline);
    VT_ASSERT(let_go_of_spare_tags(&hold, held) == before);
}

/* A destroyed arena gives its tags back in no useful order (here: freed
 * at random). The next arena's tags must still come a page at a time, so
 * that a small arena keeps only a few pages busy, not one per tag. */
static void a_small_arena_after_a_scattered_pool_keeps_few_tag_pages(void)
{
    static Vmem vm, hold;
    static uintptr_t live[30000];
    size_t before = pages_with_no_tag_pages_kept(), held;
    VT_ASSERT(hold_spare_tags(&hold, before, &held));
    size_t baseline = vmem_posix_pages_outstanding();
    VT_ASSERT(sparse_arena(&vm, "scatter", 0x10000000UL, 30000));
    for (size_t i = 0; i < 30000; i++)
        live[i] = sparse_page(i);
    free_pages_in_random_order(&vm, live, 30000, 0x5ca7, vmem_xfree);
    vmem_destroy(&vm);
    size_t scattered = vmem_posix_pages_outstanding() - baseline;
    VT_ASSERT(scattered > 500);

    /* 400 segments that each keep a free neighbour: about 800 tags. */
    VT_ASSERT(sparse_arena(&vm, "after-scatter", 0x1000000UL, 400));
    vmem_release_pages();
    /* 800 tags fill about 20 pages; one page per tag would keep hundreds. */
    VT_ASSERT(vmem_posix_pages_outstanding() - baseline <= 40);
    VT_CONSISTENT(&vm);
    sparse_free(&vm, 400);
    vmem_destroy(&vm);
    vmem_release_pages();
    VT_ASSERT(vmem_posix_pages_outstanding() == baseline);
    VT_ASSERT(let_go_of_spare_tags(&hold, held) == before);
}

/* Quantum caches take pages for their state, slab tables, descriptors and
 * magazines (fresh descriptor pages whenever a grace period fails, as it
 * does under slot faults): destroy gives every one back. */
static void a_cached_arena_gives_every_page_back_at_destroy(void)
{
    static Vmem vm;
    static void *live[512];
    static size_t live_size[512];
    size_t baseline = pages_with_no_tag_pages_kept();
    VT_ASSERT(vmem_init(&vm, "cache-pages", TS_PTR(CACHED_BASE), 1UL << 28, PAGE, NULL, NULL,
                        NULL, 8 * PAGE, VM_NOSLEEP) == 0);
    VtestRng rng;
    vtest_rng_seed(&rng, 0xcace);
    for (size_t round = 0; round < 40; round++) {
        for (size_t i = 0; i < 512; i++) {
            live_size[i] = (size_t)(1 + vtest_rng_below(&rng, 8)) * PAGE;
            live[i] = vmem_alloc(&vm, live_size[i], VM_NOSLEEP);
            VT_ASSERT(live[i] != NULL);
        }
        for (size_t i = 0; i < 512; i++)
            vmem_free(&vm, live[i], live_size[i]);
        if (round % 4 == 0)
            vmem_reap(&vm);
    }
    VT_ASSERT(vmem_posix_pages_outstanding() > baseline);
    ts_capture_misuse();
    vmem_destroy(&vm);
    VT_ASSERT(vtest_env_misuse_count() == 0);
    vmem_release_pages();
    VT_ASSERT(vmem_posix_pages_outstanding() == baseline);
}

VTEST_SUITE(suite_pages,
            VTEST_CASE(a_burst_leaves_the_frame_arena_no_page_lent),
            VTEST_CASE(a_small_arena_kept_from_a_burst_keeps_few_pages_of_the_frame_arena),
            VTEST_CASE(frames_and_metadata_interleaved_leave_no_metadata_among_the_frames),
            VTEST_CASE(growing_and_shrinking_hashes_never_recurse_into_the_page_source),
            VTEST_CASE(caches_of_the_page_arena_are_bypassed_by_the_page_source),
            VTEST_CASE(released_tag_pages_go_back_to_the_page_source),
            VTEST_CASE(a_small_arena_after_a_scattered_pool_keeps_few_tag_pages),
            VTEST_CASE(a_cached_arena_gives_every_page_back_at_destroy));
