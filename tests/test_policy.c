/*
 * test_policy.c - the allocation policies: instant-fit (the default),
 * best-fit, first-fit, next-fit and VM_ENDALLOC, and the flag combinations
 * that are misuse.
 *
 * Most tests build an ID arena (quantum 1) whose only free segments are
 * "fragments" of chosen sizes, separated by one allocated ID each, so the
 * exact address a policy must choose is known in advance.
 */
#include "test_support.h"

#define FRAG_BASE ((uintptr_t)1000)
#define FRAG_MAX 8

struct fragments {
    size_t count;
    uintptr_t start[FRAG_MAX];     /* fragment i is [start[i], start[i] + size[i]) */
    size_t size[FRAG_MAX];
    uintptr_t separator[FRAG_MAX + 1]; /* one allocated ID before each fragment and
                                          before the tail */
    uintptr_t tail;                    /* free tail [tail, end), possibly empty */
    uintptr_t end;
};

/*
 * Initialises vm as IDs laid out as: separator, fragment 0, separator,
 * fragment 1, ..., separator, free tail of tail_size. Separators are
 * allocated with vmem_alloc_exact; everything else is free.
 */
static bool build_fragments(Vmem *vm, const char *name, const size_t *sizes, size_t count,
                            size_t tail_size, struct fragments *frags)
{
    size_t total = tail_size + count + 1;
    for (size_t i = 0; i < count; i++)
        total += sizes[i];
    if (count > FRAG_MAX ||
        vmem_init(vm, name, TS_PTR(FRAG_BASE), total, 1, NULL, NULL, NULL, 0, 0) != 0)
        return false;
    frags->count = count;
    uintptr_t at = FRAG_BASE;
    for (size_t i = 0; i < count; i++) {
        frags->separator[i] = at;
        frags->start[i] = at + 1;
        frags->size[i] = sizes[i];
        at += 1 + sizes[i];
    }
    frags->separator[count] = at;
    frags->tail = at + 1;
    frags->end = FRAG_BASE + total;
    for (size_t i = 0; i <= count; i++) {
        if (vmem_alloc_exact(vm, frags->separator[i], 1, VM_NOSLEEP) != 0)
            return false;
    }
    return vmem_check(vm, NULL) == 0;
}

/* Frees the separators and destroys the arena; false if the arena did not
 * end up as one free segment per span. */
static bool release_fragments(Vmem *vm, const struct fragments *frags)
{
    for (size_t i = 0; i <= frags->count; i++)
        vmem_xfree(vm, TS_PTR(frags->separator[i]), 1);
    bool clean = vmem_size(vm, VMEM_ALLOC) == 0 && vmem_check(vm, NULL) == 0;
    vmem_destroy(vm);
    return clean;
}

/* Allocates size IDs with flags, checks the result is `expect`, frees it. */
static bool alloc_lands_at(Vmem *vm, size_t size, int flags, uintptr_t expect)
{
    void *got = vmem_alloc(vm, size, flags | VM_NOSLEEP);
    if (got == NULL) {
        ts_note_u64("    allocation failed: size", size);
        vtest_puts("\n");
        return false;
    }
    bool right = TS_ADDR(got) == expect;
    if (!right) {
        ts_note_u64("    size", size);
        ts_note_u64(" landed at", TS_ADDR(got));
        ts_note_u64(", expected", expect);
        vtest_puts("\n");
    }
    bool consistent = vmem_check(vm, NULL) == 0;
    vmem_free(vm, got, size);
    return right && consistent;
}

/* ---- Instant-fit --------------------------------------------------------- */

static void instant_fit_takes_a_segment_from_a_list_that_guarantees_a_fit(void)
{
    static Vmem vm;
    struct fragments frags;
    /* 12 shares the size class [12, 14) with a request of 13 and does not
     * fit it, 9 is smaller still; 17 is in [16, 20), where every member
     * fits (vmem.h: VMEM_FREELIST_SPLIT). */
    static const size_t sizes[] = {9, 17, 12};
    VT_ASSERT(build_fragments(&vm, "policy-instant", sizes, 3, 0, &frags));
    VT_ASSERT(alloc_lands_at(&vm, 13, VM_INSTANTFIT, frags.start[1]));
    VT_ASSERT(release_fragments(&vm, &frags));
}

/* Before going to a larger class, instant-fit looks at the first few members
 * of the request's own class: 9 and 12 both fit a request of 9 better than
 * 17 does (vmem.h: VM_INSTANTFIT). */
static bool lands_in_own_list(Vmem *vm, int flags, const struct fragments *frags)
{
    void *got = vmem_alloc(vm, 9, flags | VM_NOSLEEP);
    bool right = got == TS_PTR(frags->start[0]) || got == TS_PTR(frags->start[2]);
    if (got != NULL)
        vmem_free(vm, got, 9);
    return right;
}

static void instant_fit_prefers_a_fitting_member_of_its_own_list(void)
{
    static Vmem vm;
    struct fragments frags;
    static const size_t sizes[] = {9, 17, 12};
    VT_ASSERT(build_fragments(&vm, "policy-instant-own", sizes, 3, 0, &frags));
    VT_ASSERT(lands_in_own_list(&vm, VM_INSTANTFIT, &frags));
    VT_ASSERT(release_fragments(&vm, &frags));
}

static void instant_fit_is_the_default_policy(void)
{
    static Vmem vm;
    struct fragments frags;
    static const size_t sizes[] = {9, 17, 12};
    VT_ASSERT(build_fragments(&vm, "policy-default", sizes, 3, 0, &frags));
    VT_ASSERT(alloc_lands_at(&vm, 13, 0, frags.start[1]));
    VT_ASSERT(lands_in_own_list(&vm, 0, &frags));
    VT_ASSERT(release_fragments(&vm, &frags));
}

static void instant_fit_of_a_power_of_two_uses_its_own_list(void)
{
    static Vmem vm;
    struct fragments frags;
    /* Every member of the class [16, 20) fits a request of 16; 20 and 40 are
     * in later classes. */
    static const size_t sizes[] = {40, 16, 20};
    VT_ASSERT(build_fragments(&vm, "policy-instant-p2", sizes, 3, 0, &frags));
    void *got = vmem_alloc(&vm, 16, VM_INSTANTFIT | VM_NOSLEEP);
    VT_ASSERT(got == TS_PTR(frags.start[1]));
    VT_CONSISTENT(&vm);
    vmem_free(&vm, got, 16);
    VT_ASSERT(release_fragments(&vm, &frags));
}

/* The classes split each power of two in four: a request of 16 takes the
 * 17 of [16, 20), not the 20 of [20, 24) - the lower of the two, so the
 * head of the one list plain power-of-two lists would share. */
static void instant_fit_takes_the_smallest_class_that_guarantees_a_fit(void)
{
    static Vmem vm;
    struct fragments frags;
    static const size_t sizes[] = {20, 17};
    VT_ASSERT(build_fragments(&vm, "policy-instant-class", sizes, 2, 0, &frags));
    VT_ASSERT(alloc_lands_at(&vm, 16, VM_INSTANTFIT, frags.start[1]));
    VT_ASSERT(alloc_lands_at(&vm, 18, VM_INSTANTFIT, frags.start[0]));
    VT_ASSERT(release_fragments(&vm, &frags));
}

static void instant_fit_uses_a_fitting_segment_when_no_list_guarantees_one(void)
{
    static Vmem vm;
    struct fragments frags;
    /* No class above 13's own holds anything, and its own class [12, 14)
     * lists five 12s ahead of the one 13 (lists built on the first
     * instant-fit request run up the addresses) - more than instant-fit
     * peeks at. The 13 still fits: the request must not fail (VM_NOSLEEP
     * fails only when nothing fits). */
    static const size_t sizes[] = {12, 12, 12, 12, 12, 13};
    VT_ASSERT(build_fragments(&vm, "policy-instant-fallback", sizes, 6, 0, &frags));
    VT_ASSERT(alloc_lands_at(&vm, 13, VM_INSTANTFIT, frags.start[5]));
    VT_ASSERT(release_fragments(&vm, &frags));
}

/* An arena that has built only its address index (a first-fit request
 * did) falls back to it, not to the size index it does not keep. */
static void instant_fit_falls_back_to_the_address_index_when_that_is_the_one_kept(void)
{
    static Vmem vm;
    struct fragments frags;
    static const size_t sizes[] = {12, 12, 12, 12, 12, 13};
    VT_ASSERT(build_fragments(&vm, "policy-instant-addr", sizes, 6, 0, &frags));
    /* A first-fit request that nothing satisfies still builds the address
     * index; the 13 is listed below the five 12s of its class list. */
    VT_ASSERT(vmem_alloc(&vm, 14, VM_FIRSTFIT | VM_NOSLEEP) == NULL);
    VT_ASSERT(alloc_lands_at(&vm, 13, VM_INSTANTFIT, frags.start[5]));
    VT_ASSERT(release_fragments(&vm, &frags));
}

/* The freelists are an index like the trees: an arena that has only seen
 * next-fit keeps none (its frees and splits touch no list), and the first
 * instant-fit request lists every free segment, each list running up the
 * addresses, and they are kept exact from then on. */
static bool freelists_kept(const Vmem *vm)
{
    for (size_t w = 0; w < VMEM_FREEMAP_WORDS; w++)
        if (vm->vm_freemap[w] != 0)
            return true;
    return false;
}

static void freelists_are_kept_from_the_first_instant_fit_request_on(void)
{
    static Vmem vm;
    static uintptr_t ids[40];
    VT_ASSERT(vmem_init(&vm, "policy-lists", TS_PTR(FRAG_BASE), 40 * 8, 1, NULL, NULL, NULL, 0,
                        VM_NOSLEEP) == 0);
    /* Forty 8-ID blocks by next-fit; freeing blocks 2 and 3, 10 and 11
     * leaves two free 16s, and the free tail of the arena is gone. */
    for (size_t i = 0; i < 40; i++) {
        void *got = vmem_alloc(&vm, 8, VM_NEXTFIT | VM_NOSLEEP);
        VT_ASSERT(got == TS_PTR(FRAG_BASE + 8 * i));
        ids[i] = TS_ADDR(got);
    }
    static const size_t freed[] = { 2, 3, 10, 11 };
    for (size_t i = 0; i < 4; i++)
        vmem_free(&vm, TS_PTR(ids[freed[i]]), 8);
    VT_CONSISTENT(&vm);
    VT_ASSERT(!freelists_kept(&vm));
    /* Eagerly kept lists would be headed by the last freed 16 (blocks
     * 10-11); lists built now start at the lowest (blocks 2-3). */
    void *got = vmem_alloc(&vm, 16, VM_INSTANTFIT | VM_NOSLEEP);
    VT_ASSERT(got == TS_PTR(ids[2]));
    VT_ASSERT(freelists_kept(&vm));
    VT_CONSISTENT(&vm);
    /* Kept from then on, whatever the policy of the request. */
    vmem_free(&vm, got, 16);
    vmem_free(&vm, TS_PTR(ids[20]), 8);
    VT_CONSISTENT(&vm);
    void *four = vmem_alloc(&vm, 4, VM_NEXTFIT | VM_NOSLEEP);
    VT_ASSERT(four != NULL);
    VT_CONSISTENT(&vm);
    void *eight = vmem_alloc(&vm, 8, VM_INSTANTFIT | VM_NOSLEEP);
    VT_ASSERT(eight != NULL);
    VT_CONSISTENT(&vm);
    vmem_free(&vm, four, 4);
    vmem_free(&vm, eight, 8);
    for (size_t i = 0; i < 40; i++)
        if (i != 2 && i != 3 && i != 10 && i != 11 && i != 20)
            vmem_free(&vm, TS_PTR(ids[i]), 8);
    VT_ASSERT(vmem_size(&vm, VMEM_ALLOC) == 0);
    VT_CONSISTENT(&vm);
    vmem_destroy(&vm);
}

/* Each free-segment index is built when a request first needs it, in
 * whatever state the arena is, and kept exact from then on: vmem_check()
 * counts each tree against the free segments (or against none while it is
 * not built) after every step. */
static void each_index_is_built_on_first_need_and_kept_exact(void)
{
    static const int phases[4] = { VM_INSTANTFIT, VM_FIRSTFIT, VM_BESTFIT, VM_NEXTFIT };
    static const int initial[3] = { 0, VM_BESTFIT, VM_FIRSTFIT };
    static uintptr_t live[64];
    static size_t live_size[64];
    for (size_t start = 0; start < 3; start++) {
        static Vmem vm;
        VtestRng rng;
        vtest_rng_seed(&rng, 0x1dec5 + start);
        VT_ASSERT(vmem_init(&vm, "policy-indexes", TS_PTR(0x1000), 4096, 1, NULL, NULL, NULL, 0,
                            initial[start] | VM_NOSLEEP) == 0);
        for (size_t i = 0; i < 64; i++)
            live_size[i] = 0;
        for (size_t phase = 0; phase < 4; phase++) {
            int policy = phases[(phase + start) % 4];
            for (size_t step = 0; step < 300; step++) {
                size_t i = (size_t)vtest_rng_below(&rng, 64);
                if (live_size[i] != 0) {
                    vmem_free(&vm, TS_PTR(live[i]), live_size[i]);
                    live_size[i] = 0;
                } else {
                    size_t size = 1 + (size_t)vtest_rng_below(&rng, 40);
                    void *got = step % 7 == 0
                                    ? vmem_xalloc(&vm, size, 8, 3, 0, NULL, NULL,
                                                  policy | VM_NOSLEEP)
                                    : vmem_alloc(&vm, size, policy | VM_NOSLEEP);
                    VT_ASSERT(got != NULL);
                    if (step % 7 == 0)
                        VT_ASSERT((TS_ADDR(got) & 7) == 3);
                    live[i] = TS_ADDR(got);
                    live_size[i] = size;
                }
                VT_CONSISTENT(&vm);
            }
        }
        for (size_t i = 0; i < 64; i++)
            if (live_size[i] != 0)
                vmem_free(&vm, TS_PTR(live[i]), live_size[i]);
        VT_ASSERT(vmem_size(&vm, VMEM_ALLOC) == 0);
        VT_CONSISTENT(&vm);
        vmem_destroy(&vm);
    }
}

/* ---- Best-fit ----------------------------------------------------------- */

static void best_fit_picks_the_smallest_fitting_segment(void)
{
    static Vmem vm;
    struct fragments frags;
    static const size_t sizes[] = {17, 9, 12, 10, 33};
    VT_ASSERT(build_fragments(&vm, "policy-best", sizes, 5, 100, &frags));
    VT_ASSERT(alloc_lands_at(&vm, 10, VM_BESTFIT, frags.start[3]));
    VT_ASSERT(alloc_lands_at(&vm, 11, VM_BESTFIT, frags.start[2]));
    VT_ASSERT(alloc_lands_at(&vm, 13, VM_BESTFIT, frags.start[0]));
    VT_ASSERT(alloc_lands_at(&vm, 5, VM_BESTFIT, frags.start[1]));
    VT_ASSERT(alloc_lands_at(&vm, 34, VM_BESTFIT, frags.tail));
    VT_ASSERT(release_fragments(&vm, &frags));
}

static void best_fit_prefers_an_exact_fit_over_a_larger_segment(void)
{
    static Vmem vm;
    struct fragments frags;
    /* The exact fit sits in a higher address than a same-list larger one. */
    static const size_t sizes[] = {15, 14, 13};
    VT_ASSERT(build_fragments(&vm, "policy-best-exact", sizes, 3, 50, &frags));
    VT_ASSERT(alloc_lands_at(&vm, 13, VM_BESTFIT, frags.start[2]));
    VT_ASSERT(alloc_lands_at(&vm, 14, VM_BESTFIT, frags.start[1]));
    VT_ASSERT(release_fragments(&vm, &frags));
}

static void best_fit_with_endalloc_takes_the_top_of_the_smallest_segment(void)
{
    static Vmem vm;
    struct fragments frags;
    static const size_t sizes[] = {17, 9, 12, 10, 33};
    VT_ASSERT(build_fragments(&vm, "policy-best-end", sizes, 5, 100, &frags));
    VT_ASSERT(alloc_lands_at(&vm, 10, VM_BESTFIT | VM_ENDALLOC, frags.start[3]));
    VT_ASSERT(alloc_lands_at(&vm, 11, VM_BESTFIT | VM_ENDALLOC, frags.start[2] + 1));
    VT_ASSERT(alloc_lands_at(&vm, 4, VM_BESTFIT | VM_ENDALLOC, frags.start[1] + 5));
    VT_ASSERT(release_fragments(&vm, &frags));
}

/* Segments of up to 64 quanta sit on one list per size, larger ones in a
 * tree: the smallest fit is found on either side of that line. */
static void best_fit_finds_the_smallest_on_both_sides_of_the_exact_size_lists(void)
{
    static Vmem vm;
    struct fragments frags;
    static const size_t sizes[] = {66, 64, 65, 63};
    VT_ASSERT(build_fragments(&vm, "policy-best-lists", sizes, 4, 200, &frags));
    VT_ASSERT(alloc_lands_at(&vm, 63, VM_BESTFIT, frags.start[3]));
    VT_ASSERT(alloc_lands_at(&vm, 64, VM_BESTFIT, frags.start[1]));
    VT_ASSERT(alloc_lands_at(&vm, 65, VM_BESTFIT, frags.start[2]));
    VT_ASSERT(alloc_lands_at(&vm, 66, VM_BESTFIT, frags.start[0]));
    VT_ASSERT(alloc_lands_at(&vm, 67, VM_BESTFIT, frags.tail));
    VT_ASSERT(alloc_lands_at(&vm, 60, VM_BESTFIT | VM_ENDALLOC, frags.start[3] + 3));
    VT_ASSERT(alloc_lands_at(&vm, 65, VM_BESTFIT | VM_ENDALLOC, frags.start[2]));
    VT_ASSERT(release_fragments(&vm, &frags));
}

/* A segment carved by best-fit moves to the list or tree of its new size. */
static void best_fit_follows_segments_that_shrink_across_the_lists(void)
{
    static Vmem vm;
    struct fragments frags;
    static const size_t sizes[] = {70, 40};
    VT_ASSERT(build_fragments(&vm, "policy-best-shrink", sizes, 2, 300, &frags));
    void *a = vmem_alloc(&vm, 30, VM_BESTFIT | VM_NOSLEEP); /* 40 -> 10 left */
    void *b = vmem_alloc(&vm, 65, VM_BESTFIT | VM_NOSLEEP); /* 70, from the tree -> 5 left */
    void *c = vmem_alloc(&vm, 5, VM_BESTFIT | VM_NOSLEEP);  /* the 5, not the 10 */
    void *d = vmem_alloc(&vm, 8, VM_BESTFIT | VM_NOSLEEP);  /* the 10 */
    VT_ASSERT(TS_ADDR(a) == frags.start[1] && TS_ADDR(b) == frags.start[0]);
    VT_ASSERT(TS_ADDR(c) == frags.start[0] + 65 && TS_ADDR(d) == frags.start[1] + 30);
    VT_CONSISTENT(&vm);
    vmem_free(&vm, b, 65);
    VT_CONSISTENT(&vm);
    /* 65 free again below c, 2 left above d: the 2 is the best fit for 1. */
    VT_ASSERT(alloc_lands_at(&vm, 1, VM_BESTFIT, frags.start[1] + 38));
    VT_ASSERT(alloc_lands_at(&vm, 65, VM_BESTFIT, frags.start[0]));
    vmem_free(&vm, a, 30);
    vmem_free(&vm, c, 5);
    vmem_free(&vm, d, 8);
    VT_ASSERT(release_fragments(&vm, &frags));
}

/* ---- First-fit ---------------------------------------------------------- */

static void first_fit_picks_the_lowest_fitting_segment(void)
{
    static Vmem vm;
    struct fragments frags;
    static const size_t sizes[] = {5, 20, 12, 40};
    VT_ASSERT(build_fragments(&vm, "policy-first", sizes, 4, 100, &frags));
    VT_ASSERT(alloc_lands_at(&vm, 10, VM_FIRSTFIT, frags.start[1]));
    VT_ASSERT(alloc_lands_at(&vm, 21, VM_FIRSTFIT, frags.start[3]));
    VT_ASSERT(alloc_lands_at(&vm, 3, VM_FIRSTFIT, frags.start[0]));
    VT_ASSERT(alloc_lands_at(&vm, 41, VM_FIRSTFIT, frags.tail));
    VT_ASSERT(release_fragments(&vm, &frags));
}

/* ---- Next-fit ----------------------------------------------------------- */

#define ID_COUNT 64

static void next_fit_hands_out_every_id_once_before_reusing_any(void)
{
    static Vmem vm;
    static bool seen[ID_COUNT + 1];
    for (size_t i = 0; i <= ID_COUNT; i++)
        seen[i] = false;
    VT_ASSERT(vmem_init(&vm, "policy-next", TS_PTR(1), ID_COUNT, 1, NULL, NULL, NULL, 0, 0) == 0);
    uintptr_t first = 0, previous = 0;
    for (size_t i = 0; i < ID_COUNT; i++) {
        uintptr_t id = TS_ADDR(vmem_alloc(&vm, 1, VM_NEXTFIT | VM_NOSLEEP));
        VT_ASSERT(id >= 1 && id <= ID_COUNT);
        VT_ASSERT(!seen[id]);
        seen[id] = true;
        /* Each ID is the one after the previous, wrapping from the top. */
        if (i == 0)
            first = id;
        else
            VT_ASSERT(id == (previous == ID_COUNT ? 1 : previous + 1));
        previous = id;
        vmem_free(&vm, TS_PTR(id), 1); /* freed at once, yet not reused */
    }
    /* All handed out once: the next one wraps around to the first. */
    VT_ASSERT(TS_ADDR(vmem_alloc(&vm, 1, VM_NEXTFIT | VM_NOSLEEP)) == first);
    vmem_free(&vm, TS_PTR(first), 1);
    VT_ASSERT(ts_stat_is(&vm, 0, 0, ID_COUNT, ID_COUNT + 1, ID_COUNT + 1));
    VT_CONSISTENT(&vm);
    vmem_destroy(&vm);
}

static void next_fit_skips_ids_in_use(void)
{
    static Vmem vm;
    VT_ASSERT(vmem_init(&vm, "policy-next-skip", TS_PTR(1), 16, 1, NULL, NULL, NULL, 0, 0) == 0);
    VT_ASSERT(vmem_alloc_exact(&vm, 5, 3, VM_NOSLEEP) == 0); /* 5, 6, 7 held */
    VT_ASSERT(vmem_alloc_exact(&vm, 12, 1, VM_NOSLEEP) == 0);
    uintptr_t previous = 0;
    for (size_t i = 0; i < 40; i++) {
        uintptr_t id = TS_ADDR(vmem_alloc(&vm, 1, VM_NEXTFIT | VM_NOSLEEP));
        VT_ASSERT(id >= 1 && id <= 16);
        VT_ASSERT(!(id >= 5 && id <= 7) && id != 12);
        if (i > 0) {
            uintptr_t expect = previous;
            do {
                expect = expect == 16 ? 1 : expect + 1;
            } while ((expect >= 5 && expect <= 7) || expect == 12);
            VT_ASSERT(id == expect);
        }
        previous = id;
        vmem_free(&vm, TS_PTR(id), 1);
        VT_CONSISTENT(&vm);
    }
    vmem_xfree(&vm, TS_PTR(5), 3);
    vmem_xfree(&vm, TS_PTR(12), 1);
    VT_CONSISTENT(&vm);
    vmem_destroy(&vm);
}

static void next_fit_keeps_live_ids_distinct_until_exhausted(void)
{
    static Vmem vm;
    static bool seen[ID_COUNT + 1];
    for (size_t i = 0; i <= ID_COUNT; i++)
        seen[i] = false;
    VT_ASSERT(vmem_init(&vm, "policy-next-full", TS_PTR(1), ID_COUNT, 1, NULL, NULL, NULL, 0,
                        0) == 0);
    for (size_t i = 0; i < ID_COUNT; i++) {
        uintptr_t id = TS_ADDR(vmem_alloc(&vm, 1, VM_NEXTFIT | VM_NOSLEEP));
        VT_ASSERT(id >= 1 && id <= ID_COUNT && !seen[id]);
        seen[id] = true;
    }
    VT_ASSERT(vmem_alloc(&vm, 1, VM_NEXTFIT | VM_NOSLEEP) == NULL);
    /* The only free ID is found wherever the rotor is. */
    vmem_free(&vm, TS_PTR(17), 1);
    VT_ASSERT(vmem_alloc(&vm, 1, VM_NEXTFIT | VM_NOSLEEP) == TS_PTR(17));
    VT_CONSISTENT(&vm);
    for (uintptr_t id = 1; id <= ID_COUNT; id++)
        vmem_free(&vm, TS_PTR(id), 1);
    VT_ASSERT(vmem_size(&vm, VMEM_ALLOC) == 0);
    VT_CONSISTENT(&vm);
    vmem_destroy(&vm);
}

/* ---- VM_ENDALLOC -------------------------------------------------------- */

/*
 * Next-fit against a model: random next-fit allocations of 1-4 IDs and
 * random frees (other policies mixed in, so segments split and merge around
 * the rotor), each next-fit result compared with the first free run at or
 * after the end of the previous next-fit allocation, wrapping once.
 */
#define NF_BASE ((uintptr_t)64)
#define NF_IDS 512

static bool nf_used[NF_IDS];

/* The model's next-fit placement of `size` IDs from `rotor`, or 0. */
static uintptr_t nf_expect(size_t size, uintptr_t rotor)
{
    for (int pass = 0; pass < 2; pass++) {
        size_t from = pass == 0 && rotor > NF_BASE ? rotor - NF_BASE : 0;
        for (size_t i = from; i + size <= NF_IDS; i++) {
            size_t run = 0;
            while (run < size && !nf_used[i + run])
                run++;
            if (run == size)
                return NF_BASE + i;
        }
    }
    return 0;
}

static void next_fit_matches_a_model_as_segments_split_and_merge(void)
{
    static Vmem vm;
    static uintptr_t live_addr[NF_IDS];
    static size_t live_size[NF_IDS];
    size_t live = 0;
    uintptr_t rotor = 0;
    VtestRng rng;
    vtest_rng_seed(&rng, 0x4e587446);
    for (size_t i = 0; i < NF_IDS; i++)
        nf_used[i] = false;
    VT_ASSERT(vmem_init(&vm, "policy-nextfit-model", TS_PTR(NF_BASE), NF_IDS, 1, NULL, NULL,
                        NULL, 0, 0) == 0);
    for (int step = 0; step < 20000; step++) {
        if (live > 0 && (live == NF_IDS || vtest_rng_below(&rng, 2) == 0)) {
            size_t k = (size_t)vtest_rng_below(&rng, live);
            vmem_free(&vm, TS_PTR(live_addr[k]), live_size[k]);
            for (size_t j = 0; j < live_size[k]; j++)
                nf_used[live_addr[k] - NF_BASE + j] = false;
            live--;
            live_addr[k] = live_addr[live];
            live_size[k] = live_size[live];
            continue;
        }
        size_t size = 1 + (size_t)vtest_rng_below(&rng, 4);
        bool next = vtest_rng_below(&rng, 4) != 0;
        uintptr_t expect = next ? nf_expect(size, rotor) : 0;
        void *got = vmem_alloc(&vm, size, (next ? VM_NEXTFIT : VM_BESTFIT) | VM_NOSLEEP);
        if (next && TS_ADDR(got) != expect) {
            ts_note_u64("    step", (uint64_t)step);
            ts_note_u64(" next-fit got", TS_ADDR(got));
            ts_note_u64(", model says", expect);
            ts_note_u64(", rotor", rotor);
            vtest_puts("\n");
        }
        VT_ASSERT(!next || TS_ADDR(got) == expect);
        if (got == NULL)
            continue;
        for (size_t j = 0; j < size; j++) {
            VT_ASSERT(!nf_used[TS_ADDR(got) - NF_BASE + j]);
            nf_used[TS_ADDR(got) - NF_BASE + j] = true;
        }
        if (next)
            rotor = TS_ADDR(got) + size;
        live_addr[live] = TS_ADDR(got);
        live_size[live] = size;
        live++;
    }
    VT_CONSISTENT(&vm);
    while (live > 0) {
        live--;
        vmem_free(&vm, TS_PTR(live_addr[live]), live_size[live]);
    }
    vmem_destroy(&vm);
}

/* Instant-fit allocations carve the front off the free segment that
 * absorbed the last next-fit segment, so that segment now starts above
 * the rotor; an ID freed between the rotor and it is still the next one
 * next-fit hands out (found by the fuzzer: next-fit skipped it). */
static void next_fit_finds_an_id_freed_behind_a_carved_rotor_segment(void)
{
    static Vmem vm;
    VT_ASSERT(vmem_init(&vm, "policy-next-carved", TS_PTR(FRAG_BASE), 100, 1, NULL, NULL, NULL, 0,
                        VM_NOSLEEP) == 0);
    void *first = vmem_alloc(&vm, 1, VM_NEXTFIT | VM_NOSLEEP);
    VT_ASSERT(first == TS_PTR(FRAG_BASE));
    vmem_free(&vm, first, 1); /* the rotor is FRAG_BASE + 1 */
    void *ids[3];
    for (size_t i = 0; i < 3; i++) {
        ids[i] = vmem_alloc(&vm, 1, VM_INSTANTFIT | VM_NOSLEEP);
        VT_ASSERT(ids[i] == TS_PTR(FRAG_BASE + i));
    }
    vmem_free(&vm, ids[1], 1);
    VT_CONSISTENT(&vm);
    void *next = vmem_alloc(&vm, 1, VM_NEXTFIT | VM_NOSLEEP);
    VT_ASSERT(next == TS_PTR(FRAG_BASE + 1));
    vmem_free(&vm, next, 1);
    vmem_free(&vm, ids[0], 1);
    vmem_free(&vm, ids[2], 1);
    VT_ASSERT(vmem_size(&vm, VMEM_ALLOC) == 0);
    VT_CONSISTENT(&vm);
    vmem_destroy(&vm);
}

static void endalloc_takes_the_highest_address(void)
{
    static Vmem vm;
    struct fragments frags;
    static const size_t sizes[] = {20, 12};
    VT_ASSERT(build_fragments(&vm, "policy-end", sizes, 2, 50, &frags));
    VT_ASSERT(alloc_lands_at(&vm, 10, VM_ENDALLOC, frags.end - 10));
    VT_ASSERT(alloc_lands_at(&vm, 50, VM_ENDALLOC, frags.tail));
    VT_ASSERT(release_fragments(&vm, &frags));
}

static void endalloc_prefers_a_higher_small_segment_to_a_lower_large_one(void)
{
    static Vmem vm;
    struct fragments frags;
    static const size_t sizes[] = {50, 12};
    VT_ASSERT(build_fragments(&vm, "policy-end-high", sizes, 2, 0, &frags));
    VT_ASSERT(alloc_lands_at(&vm, 10, VM_ENDALLOC, frags.start[1] + 2));
    VT_ASSERT(alloc_lands_at(&vm, 13, VM_ENDALLOC, frags.start[0] + 37));
    VT_ASSERT(release_fragments(&vm, &frags));
}

/* ---- Flag misuse -------------------------------------------------------- */

/* Each combination is reported once as bad flags, from both allocation
 * calls, and leaves the arena as it was. */
static bool flags_rejected(Vmem *vm, int flags)
{
    struct ts_snapshot before, after;
    ts_snapshot_take(vm, &before);
    ts_capture_misuse();
    if (vmem_alloc(vm, 4, flags) != NULL || !ts_misuse_once(VMEM_MISUSE_BAD_FLAGS, "vmem_alloc",
                                                             "policy-flags"))
        return false;
    ts_capture_misuse();
    if (vmem_xalloc(vm, 4, 0, 0, 0, NULL, NULL, flags) != NULL ||
        !ts_misuse_once(VMEM_MISUSE_BAD_FLAGS, "vmem_xalloc", "policy-flags"))
        return false;
    ts_snapshot_take(vm, &after);
    return ts_snapshot_equal(&before, &after);
}

static void conflicting_policy_flags_are_misuse(void)
{
    static Vmem vm;
    VT_ASSERT(vmem_init(&vm, "policy-flags", TS_PTR(1), 100, 1, NULL, NULL, NULL, 0, 0) == 0);
    void *held = vmem_alloc(&vm, 10, VM_NOSLEEP);
    VT_ASSERT(held != NULL);
    VT_ASSERT(flags_rejected(&vm, VM_BESTFIT | VM_NEXTFIT));
    VT_ASSERT(flags_rejected(&vm, VM_BESTFIT | VM_INSTANTFIT));
    VT_ASSERT(flags_rejected(&vm, VM_BESTFIT | VM_FIRSTFIT));
    VT_ASSERT(flags_rejected(&vm, VM_INSTANTFIT | VM_NEXTFIT));
    VT_ASSERT(flags_rejected(&vm, VM_FIRSTFIT | VM_NEXTFIT));
    VT_ASSERT(flags_rejected(&vm, VM_FIRSTFIT | VM_INSTANTFIT));
    vtest_env_misuse_capture(false);
    vmem_free(&vm, held, 10);
    VT_CONSISTENT(&vm);
    vmem_destroy(&vm);
}

static void sleep_with_nosleep_is_misuse(void)
{
    static Vmem vm;
    VT_ASSERT(vmem_init(&vm, "policy-flags", TS_PTR(1), 100, 1, NULL, NULL, NULL, 0, 0) == 0);
    VT_ASSERT(flags_rejected(&vm, VM_SLEEP | VM_NOSLEEP));
    VT_ASSERT(flags_rejected(&vm, VM_SLEEP | VM_NOSLEEP | VM_BESTFIT));
    vtest_env_misuse_capture(false);
    VT_CONSISTENT(&vm);
    vmem_destroy(&vm);
}

static void endalloc_with_next_fit_or_instant_fit_is_misuse(void)
{
    static Vmem vm;
    VT_ASSERT(vmem_init(&vm, "policy-flags", TS_PTR(1), 100, 1, NULL, NULL, NULL, 0, 0) == 0);
    VT_ASSERT(flags_rejected(&vm, VM_ENDALLOC | VM_NEXTFIT));
    VT_ASSERT(flags_rejected(&vm, VM_ENDALLOC | VM_INSTANTFIT));
    vtest_env_misuse_capture(false);
    VT_CONSISTENT(&vm);
    vmem_destroy(&vm);
}

VTEST_SUITE(suite_policy,
            VTEST_CASE(instant_fit_takes_a_segment_from_a_list_that_guarantees_a_fit),
            VTEST_CASE(instant_fit_prefers_a_fitting_member_of_its_own_list),
            VTEST_CASE(instant_fit_is_the_default_policy),
            VTEST_CASE(instant_fit_of_a_power_of_two_uses_its_own_list),
            VTEST_CASE(instant_fit_takes_the_smallest_class_that_guarantees_a_fit),
            VTEST_CASE(instant_fit_uses_a_fitting_segment_when_no_list_guarantees_one),
            VTEST_CASE(instant_fit_falls_back_to_the_address_index_when_that_is_the_one_kept),
            VTEST_CASE(each_index_is_built_on_first_need_and_kept_exact),
            VTEST_CASE(freelists_are_kept_from_the_first_instant_fit_request_on),
            VTEST_CASE(best_fit_picks_the_smallest_fitting_segment),
            VTEST_CASE(best_fit_prefers_an_exact_fit_over_a_larger_segment),
            VTEST_CASE(best_fit_with_endalloc_takes_the_top_of_the_smallest_segment),
            VTEST_CASE(best_fit_finds_the_smallest_on_both_sides_of_the_exact_size_lists),
            VTEST_CASE(best_fit_follows_segments_that_shrink_across_the_lists),
            VTEST_CASE(first_fit_picks_the_lowest_fitting_segment),
            VTEST_CASE(next_fit_hands_out_every_id_once_before_reusing_any),
            VTEST_CASE(next_fit_skips_ids_in_use),
            VTEST_CASE(next_fit_keeps_live_ids_distinct_until_exhausted),
            VTEST_CASE(next_fit_matches_a_model_as_segments_split_and_merge),
            VTEST_CASE(next_fit_finds_an_id_freed_behind_a_carved_rotor_segment),
            VTEST_CASE(endalloc_takes_the_highest_address),
            VTEST_CASE(endalloc_prefers_a_higher_small_segment_to_a_lower_large_one),
            VTEST_CASE(conflicting_policy_flags_are_misuse),
            VTEST_CASE(sleep_with_nosleep_is_misuse),
            VTEST_CASE(endalloc_with_next_fit_or_instant_fit_is_misuse));
