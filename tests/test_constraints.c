/*
 * test_constraints.c - vmem_xalloc() constraints: align, phase, nocross,
 * minaddr and maxaddr, alone and combined. Results always satisfy them;
 * a placement is found whenever one exists (completeness, checked against
 * brute force); when none exists the call fails and leaves the arena as it
 * was; invalid constraints are misuse.
 */
#include "test_support.h"

#define PAGE ((size_t)4096)

/* Every policy a constrained request may be made with. */
static const int all_policies[] = {
    0, VM_INSTANTFIT, VM_BESTFIT, VM_FIRSTFIT, VM_NEXTFIT, VM_ENDALLOC, VM_BESTFIT | VM_ENDALLOC,
};
#define POLICY_COUNT (sizeof(all_policies) / sizeof(all_policies[0]))

static bool init_pages(Vmem *vm, const char *name, uintptr_t base, size_t pages)
{
    return vmem_init(vm, name, TS_PTR(base), pages * PAGE, PAGE, NULL, NULL, NULL, 0, 0) == 0;
}

/* xalloc with every policy; each result must be in `expect` (count
 * entries), and is freed again. */
static bool every_policy_lands_in(Vmem *vm, const struct ts_request *req,
                                  const uintptr_t *expect, size_t count)
{
    for (size_t p = 0; p < POLICY_COUNT; p++) {
        void *got = vmem_xalloc(vm, req->size, req->align, req->phase, req->nocross,
                                TS_PTR(req->minaddr), TS_PTR(req->maxaddr),
                                all_policies[p] | VM_NOSLEEP);
        bool found = false;
        for (size_t i = 0; i < count; i++)
            found = found || TS_ADDR(got) == expect[i];
        if (!found || !ts_placement_ok(req, TS_ADDR(got))) {
            ts_note_hex("    policy", (uint64_t)all_policies[p]);
            ts_note_hex(" placed at", TS_ADDR(got));
            vtest_puts("\n");
            return false;
        }
        if (vmem_check(vm, NULL) != 0)
            return false;
        vmem_xfree(vm, got, req->size);
    }
    return true;
}

/* ---- Each constraint alone ---------------------------------------------- */

static void align_places_the_segment_on_a_boundary(void)
{
    static Vmem vm;
    /* The span starts one page past a 64 KiB boundary. */
    VT_ASSERT(init_pages(&vm, "constraint-align", 0x101000, 64));
    void *first = vmem_xalloc(&vm, PAGE, 0x10000, 0, 0, NULL, NULL, VM_FIRSTFIT | VM_NOSLEEP);
    VT_ASSERT(first == TS_PTR(0x110000));
    vmem_xfree(&vm, first, PAGE);
    for (size_t p = 0; p < POLICY_COUNT; p++) {
        void *got = vmem_xalloc(&vm, 3 * PAGE, 0x10000, 0, 0, NULL, NULL,
                                all_policies[p] | VM_NOSLEEP);
        VT_ASSERT(got != NULL && TS_ADDR(got) % 0x10000 == 0);
        VT_ASSERT(vmem_contains(&vm, got, 3 * PAGE));
        vmem_xfree(&vm, got, 3 * PAGE);
    }
    VT_ASSERT(vmem_size(&vm, VMEM_ALLOC) == 0);
    VT_CONSISTENT(&vm);
    vmem_destroy(&vm);
}

static void phase_offsets_the_segment_from_the_boundary(void)
{
    static Vmem vm;
    struct ts_request req;
    VT_ASSERT(init_pages(&vm, "constraint-phase", 0x101000, 64));
    void *first =
        vmem_xalloc(&vm, PAGE, 0x10000, 0x3000, 0, NULL, NULL, VM_FIRSTFIT | VM_NOSLEEP);
    VT_ASSERT(first == TS_PTR(0x103000));
    vmem_xfree(&vm, first, PAGE);
    ts_request_init(&req, 2 * PAGE, 0x10000);
    req.phase = 0x3000;
    uintptr_t expect[] = {0x103000, 0x113000, 0x123000, 0x133000};
    VT_ASSERT(every_policy_lands_in(&vm, &req, expect, 4));
    VT_CONSISTENT(&vm);
    vmem_destroy(&vm);
}

static void nocross_moves_the_segment_past_the_boundary(void)
{
    static Vmem vm;
    struct ts_request req;
    /* The low end [0x102000, 0x105000) would cross 0x104000. */
    VT_ASSERT(init_pages(&vm, "constraint-nocross", 0x102000, 10));
    ts_request_init(&req, 3 * PAGE, PAGE);
    req.nocross = 0x4000;
    void *first = vmem_xalloc(&vm, 3 * PAGE, 0, 0, 0x4000, NULL, NULL, VM_FIRSTFIT | VM_NOSLEEP);
    VT_ASSERT(first == TS_PTR(0x104000));
    vmem_xfree(&vm, first, 3 * PAGE);
    /* Span [0x102000, 0x10c000): placements stay inside one 16 KiB block. */
    uintptr_t expect[] = {0x104000, 0x105000, 0x108000, 0x109000};
    VT_ASSERT(every_policy_lands_in(&vm, &req, expect, 4));
    VT_CONSISTENT(&vm);
    vmem_destroy(&vm);
}

static void minaddr_is_an_inclusive_lower_bound(void)
{
    static Vmem vm;
    VT_ASSERT(init_pages(&vm, "constraint-min", 0x100000, 16));
    void *got = vmem_xalloc(&vm, PAGE, 0, 0, 0, TS_PTR(0x108000), NULL, VM_FIRSTFIT | VM_NOSLEEP);
    VT_ASSERT(got == TS_PTR(0x108000));
    vmem_xfree(&vm, got, PAGE);
    for (size_t p = 0; p < POLICY_COUNT; p++) {
        got = vmem_xalloc(&vm, 2 * PAGE, 0, 0, 0, TS_PTR(0x10c000), NULL,
                          all_policies[p] | VM_NOSLEEP);
        VT_ASSERT(got != NULL && TS_ADDR(got) >= 0x10c000);
        VT_ASSERT(TS_ADDR(got) + 2 * PAGE <= 0x110000);
        vmem_xfree(&vm, got, 2 * PAGE);
    }
    VT_CONSISTENT(&vm);
    vmem_destroy(&vm);
}

static void maxaddr_is_an_exclusive_upper_bound(void)
{
    static Vmem vm;
    VT_ASSERT(init_pages(&vm, "constraint-max", 0x100000, 16));
    void *got = vmem_xalloc(&vm, 2 * PAGE, 0, 0, 0, NULL, TS_PTR(0x104000), VM_ENDALLOC | VM_NOSLEEP);
    VT_ASSERT(got == TS_PTR(0x102000)); /* ends exactly at maxaddr */
    vmem_xfree(&vm, got, 2 * PAGE);
    for (size_t p = 0; p < POLICY_COUNT; p++) {
        got = vmem_xalloc(&vm, 2 * PAGE, 0, 0, 0, NULL, TS_PTR(0x104000),
                          all_policies[p] | VM_NOSLEEP);
        VT_ASSERT(got != NULL && TS_ADDR(got) + 2 * PAGE <= 0x104000);
        VT_ASSERT(TS_ADDR(got) >= 0x100000);
        vmem_xfree(&vm, got, 2 * PAGE);
    }
    VT_CONSISTENT(&vm);
    vmem_destroy(&vm);
}

static void min_and_max_form_a_window(void)
{
    static Vmem vm;
    struct ts_request req;
    VT_ASSERT(init_pages(&vm, "constraint-window", 0x100000, 16));
    ts_request_init(&req, 3 * PAGE, PAGE);
    req.minaddr = 0x105000;
    req.maxaddr = 0x108000;
    uintptr_t expect[] = {0x105000}; /* the window holds exactly one placement */
    VT_ASSERT(every_policy_lands_in(&vm, &req, expect, 1));
    VT_CONSISTENT(&vm);
    vmem_destroy(&vm);
}

static void all_constraints_combine(void)
{
    static Vmem vm;
    struct ts_request req;
    VT_ASSERT(init_pages(&vm, "constraint-all", 0x100000, 64));
    ts_request_init(&req, 3 * PAGE, 0x8000);
    req.phase = 0x1000;
    req.nocross = 0x8000;
    req.minaddr = 0x110000;
    req.maxaddr = 0x120000;
    uintptr_t expect[] = {0x111000, 0x119000};
    VT_ASSERT(every_policy_lands_in(&vm, &req, expect, 2));
    void *low = vmem_xalloc(&vm, 3 * PAGE, 0x8000, 0x1000, 0x8000, TS_PTR(0x110000),
                            TS_PTR(0x120000), VM_FIRSTFIT | VM_NOSLEEP);
    VT_ASSERT(low == TS_PTR(0x111000));
    void *high = vmem_xalloc(&vm, 3 * PAGE, 0x8000, 0x1000, 0x8000, TS_PTR(0x110000),
                             TS_PTR(0x120000), VM_ENDALLOC | VM_NOSLEEP);
    VT_ASSERT(high == TS_PTR(0x119000));
    vmem_xfree(&vm, low, 3 * PAGE);
    vmem_xfree(&vm, high, 3 * PAGE);
    VT_CONSISTENT(&vm);
    vmem_destroy(&vm);
}

/* ---- Completeness ------------------------------------------------------- */

/*
 * IDs [1000, 1200), all allocated except these fragments. For the request
 * size 5, align 4, phase 1, nocross 16, window [1010, 1150), each fragment
 * but F3 is ruled out by a different constraint:
 *   F0 [1001, 1006) below minaddr     F1 [1014, 1020) no phase-1 start fits
 *   F2 [1037, 1042) crosses 1040      F3 [1065, 1070) the one placement
 *   F4 [1150, 1160) above maxaddr     F5 [1180, 1183) too small
 */
static const uintptr_t fragment_start[] = {1001, 1014, 1037, 1065, 1150, 1180};
static const size_t fragment_size[] = {5, 6, 5, 5, 10, 3};
#define FRAGMENTS 6
#define ONE_PLACEMENT 1065

static void one_placement_request(struct ts_request *req)
{
    ts_request_init(req, 5, 4);
    req->phase = 1;
    req->nocross = 16;
    req->minaddr = 1010;
    req->maxaddr = 1150;
}

/* Builds the layout above; with_f3 false allocates F3 too. */
static bool build_one_placement_arena(Vmem *vm, const char *name, bool with_f3)
{
    if (vmem_init(vm, name, TS_PTR(1000), 200, 1, NULL, NULL, NULL, 0, 0) != 0)
        return false;
    uintptr_t at = 1000;
    for (size_t i = 0; i <= FRAGMENTS; i++) {
        uintptr_t gap_end = i < FRAGMENTS ? fragment_start[i] : 1200;
        if (gap_end > at && vmem_alloc_exact(vm, at, gap_end - at, VM_NOSLEEP) != 0)
            return false;
        if (i < FRAGMENTS) {
            at = fragment_start[i] + fragment_size[i];
            if (!with_f3 && fragment_start[i] == ONE_PLACEMENT &&
                vmem_alloc_exact(vm, fragment_start[i], fragment_size[i], VM_NOSLEEP) != 0)
                return false;
        }
    }
    return vmem_check(vm, NULL) == 0;
}

static void release_one_placement_arena(Vmem *vm)
{
    struct ts_segment segs[16];
    size_t count = ts_collect(vm, VMEM_ALLOC, segs, 16);
    for (size_t i = 0; i < count && i < 16; i++)
        vmem_xfree(vm, TS_PTR(segs[i].addr), segs[i].size);
    vmem_destroy(vm);
}

static void the_only_valid_placement_is_found_by_every_policy(void)
{
    static Vmem vm;
    struct ts_request req;
    one_placement_request(&req);
    /* The layout really has one placement (a check of the test itself). */
    size_t placements = 0;
    for (size_t i = 0; i < FRAGMENTS; i++) {
        uintptr_t addr;
        if (ts_lowest_placement(&req, fragment_start[i], fragment_size[i], &addr)) {
            VT_ASSERT(addr == ONE_PLACEMENT);
            placements++;
        }
    }
    VT_ASSERT(placements == 1);
    VT_ASSERT(build_one_placement_arena(&vm, "constraint-one", true));
    uintptr_t expect[] = {ONE_PLACEMENT};
    VT_ASSERT(every_policy_lands_in(&vm, &req, expect, 1));
    uintptr_t addr = 0;
    VT_ASSERT(vmem_xalloc_addr(&vm, 5, 4, 1, 16, 1010, 1150, VM_NOSLEEP, &addr) == 0);
    VT_ASSERT(addr == ONE_PLACEMENT);
    vmem_xfree(&vm, TS_PTR(addr), 5);
    VT_CONSISTENT(&vm);
    release_one_placement_arena(&vm);
}

static void no_valid_placement_fails_and_leaves_the_arena_unchanged(void)
{
    static Vmem vm;
    struct ts_request req;
    struct ts_snapshot before, after;
    one_placement_request(&req);
    VT_ASSERT(build_one_placement_arena(&vm, "constraint-none", false));
    ts_snapshot_take(&vm, &before);
    ts_capture_misuse();
    for (size_t p = 0; p < POLICY_COUNT; p++) {
        VT_ASSERT(vmem_xalloc(&vm, 5, 4, 1, 16, TS_PTR(1010), TS_PTR(1150),
                              all_policies[p] | VM_NOSLEEP) == NULL);
    }
    uintptr_t addr = 0;
    VT_ASSERT(vmem_xalloc_addr(&vm, 5, 4, 1, 16, 1010, 1150, VM_NOSLEEP, &addr) < 0);
    VT_ASSERT(vtest_env_misuse_count() == 0);
    ts_snapshot_take(&vm, &after);
    VT_ASSERT(ts_snapshot_equal(&before, &after));
    vtest_env_misuse_capture(false);
    release_one_placement_arena(&vm);
}

/*
 * Free segments that are large enough but cannot hold the request, below
 * the one that can. IDs from MISFIT_BASE: `misfits` times [one allocated
 * ID, three free IDs starting at 1 mod 4]; then an allocated run up to the
 * fitting fragment [fit, + 4), one allocated ID, and a free tail of 100. A
 * request of 2 IDs aligned to 4 fits no 3-ID fragment, fits the fragment at
 * `fit`, and fits the tail (a comfortable fit: 100 >= 2 + 4 - 1).
 *
 * vmem.h promises the exact first-fit / best-fit answer unless more than
 * 64 misfits precede it; past that, the first comfortable segment.
 */
#define MISFIT_BASE ((uintptr_t)1024)
#define MISFIT_BUDGET 64

static uintptr_t misfit_fit(size_t misfits) { return MISFIT_BASE + 4 * misfits + 4; }

static bool build_misfit_arena(Vmem *vm, const char *name, size_t misfits)
{
    if (vmem_init(vm, name, TS_PTR(MISFIT_BASE), 4 * misfits + 4 + 4 + 1 + 100, 1, NULL, NULL,
                  NULL, 0, 0) != 0)
        return false;
    for (uintptr_t k = 0; k < misfits; k++) {
        if (vmem_alloc_exact(vm, MISFIT_BASE + 4 * k, 1, VM_NOSLEEP) != 0)
            return false;
    }
    return vmem_alloc_exact(vm, misfit_fit(misfits) - 4, 4, VM_NOSLEEP) == 0 &&
           vmem_alloc_exact(vm, misfit_fit(misfits) + 4, 1, VM_NOSLEEP) == 0 &&
           vmem_check(vm, NULL) == 0;
}

static void release_misfit_arena(Vmem *vm, size_t misfits)
{
    for (uintptr_t k = 0; k < misfits; k++)
        vmem_xfree(vm, TS_PTR(MISFIT_BASE + 4 * k), 1);
    vmem_xfree(vm, TS_PTR(misfit_fit(misfits) - 4), 4);
    vmem_xfree(vm, TS_PTR(misfit_fit(misfits) + 4), 1);
    vmem_destroy(vm);
}

/* The placement `policy` picks among `misfits` misfits, or 0 on failure. */
static uintptr_t misfit_choice(const char *name, size_t misfits, int policy)
{
    static Vmem vm;
    if (!build_misfit_arena(&vm, name, misfits))
        return 0;
    void *got = vmem_xalloc(&vm, 2, 4, 0, 0, NULL, NULL, policy | VM_NOSLEEP);
    bool consistent = vmem_check(&vm, NULL) == 0;
    if (got != NULL)
        vmem_xfree(&vm, got, 2);
    release_misfit_arena(&vm, misfits);
    return consistent ? TS_ADDR(got) : 0;
}

static void first_fit_finds_the_lowest_placement_past_budgeted_misfits(void)
{
    size_t misfits = MISFIT_BUDGET - 4;
    VT_ASSERT(misfit_choice("constraint-misfit-first", misfits, VM_FIRSTFIT) ==
              misfit_fit(misfits));
}

static void best_fit_finds_the_smallest_fitting_segment_past_budgeted_misfits(void)
{
    size_t misfits = MISFIT_BUDGET - 4;
    VT_ASSERT(misfit_choice("constraint-misfit-best", misfits, VM_BESTFIT) ==
              misfit_fit(misfits));
}

static void too_many_misfits_settle_for_the_first_comfortable_segment(void)
{
    size_t misfits = 100;
    uintptr_t tail = misfit_fit(misfits) + 8; /* the tail's first 4-aligned ID */
    VT_ASSERT(misfit_choice("constraint-misfit-many-first", misfits, VM_FIRSTFIT) == tail);
    VT_ASSERT(misfit_choice("constraint-misfit-many-best", misfits, VM_BESTFIT) == tail);
}

/*
 * Random fragmentation of 64 IDs and random constrained requests, each
 * compared with brute force over a model of the arena: a success must be a
 * valid placement on free IDs (and the one the policy defines, for first-fit,
 * end-alloc and best-fit); a failure must mean no placement exists.
 */
#define SMALL_BASE ((uintptr_t)128)
#define SMALL_IDS 64

static bool small_used[SMALL_IDS];

/* Free runs of the model: run i is [run_start[i], run_start[i] + run_len[i]). */
static size_t small_runs(uintptr_t *run_start, size_t *run_len)
{
    size_t runs = 0;
    for (size_t i = 0; i < SMALL_IDS;) {
        if (small_used[i]) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < SMALL_IDS && !small_used[j])
            j++;
        run_start[runs] = SMALL_BASE + i;
        run_len[runs] = j - i;
        runs++;
        i = j;
    }
    return runs;
}

static void constrained_results_match_brute_force_on_a_small_arena(void)
{
    static Vmem vm;
    static uintptr_t run_start[SMALL_IDS];
    static size_t run_len[SMALL_IDS];
    static const size_t aligns[] = {1, 2, 4, 8, 16};
    VtestRng rng;
    vtest_rng_seed(&rng, 0xc0ffee);
    VT_ASSERT(vmem_init(&vm, "constraint-brute", TS_PTR(SMALL_BASE), SMALL_IDS, 1, NULL, NULL,
                        NULL, 0, 0) == 0);
    for (size_t i = 0; i < SMALL_IDS; i++)
        small_used[i] = false;
    ts_capture_misuse();
    for (int round = 0; round < 4000; round++) {
        /* Flip one random ID between used and free to vary the layout. */
        size_t flip = (size_t)vtest_rng_below(&rng, SMALL_IDS);
        if (small_used[flip]) {
            vmem_xfree(&vm, TS_PTR(SMALL_BASE + flip), 1);
            small_used[flip] = false;
        } else if (vtest_rng_below(&rng, 3) != 0) {
            VT_ASSERT(vmem_alloc_exact(&vm, SMALL_BASE + flip, 1, VM_NOSLEEP) == 0);
            small_used[flip] = true;
        }
        struct ts_request req;
        ts_request_init(&req, 1 + (size_t)vtest_rng_below(&rng, 6),
                        aligns[vtest_rng_below(&rng, 5)]);
        req.phase = (size_t)vtest_rng_below(&rng, req.align);
        if (vtest_rng_below(&rng, 2) == 0) {
            size_t nocross = 8;
            while (nocross < req.size)
                nocross *= 2;
            req.nocross = nocross << vtest_rng_below(&rng, 2);
        }
        if (vtest_rng_below(&rng, 2) == 0)
            req.minaddr = SMALL_BASE + vtest_rng_below(&rng, SMALL_IDS);
        if (vtest_rng_below(&rng, 2) == 0) {
            uintptr_t from = req.minaddr != 0 ? req.minaddr : SMALL_BASE;
            req.maxaddr = from + 1 + vtest_rng_below(&rng, SMALL_IDS);
        }
        int policy = all_policies[vtest_rng_below(&rng, POLICY_COUNT)];
        req.not_zero = true;

        size_t runs = small_runs(run_start, run_len);
        bool possible = false;
        for (size_t r = 0; r < runs && !possible; r++) {
            uintptr_t addr;
            possible = ts_lowest_placement(&req, run_start[r], run_len[r], &addr);
        }
        void *got = vmem_xalloc(&vm, req.size, req.align, req.phase, req.nocross,
                                TS_PTR(req.minaddr), TS_PTR(req.maxaddr), policy | VM_NOSLEEP);
        VT_ASSERT(vtest_env_misuse_count() == 0);
        if (got == NULL) {
            if (possible) {
                ts_note_u64("    missed a placement: size", req.size);
                ts_note_u64(" align", req.align);
                ts_note_u64(" phase", req.phase);
                ts_note_u64(" nocross", req.nocross);
                ts_note_u64(" min", req.minaddr);
                ts_note_u64(" max", req.maxaddr);
                ts_note_hex(" policy", (uint64_t)policy);
                vtest_puts("\n");
            }
            VT_ASSERT(!possible);
            continue;
        }
        uintptr_t addr = TS_ADDR(got);
        VT_ASSERT(ts_placement_ok(&req, addr));
        VT_ASSERT(addr >= SMALL_BASE && addr + req.size <= SMALL_BASE + SMALL_IDS);
        for (size_t i = 0; i < req.size; i++)
            VT_ASSERT(!small_used[addr - SMALL_BASE + i]);
        if (!ts_policy_choice_ok(&req, policy, addr, run_start, run_len, runs)) {
            ts_note_hex("    policy", (uint64_t)policy);
            ts_note_u64(" chose", addr);
            ts_note_u64(" for size", req.size);
            ts_note_u64(" align", req.align);
            ts_note_u64(" phase", req.phase);
            ts_note_u64(" nocross", req.nocross);
            ts_note_u64(" min", req.minaddr);
            ts_note_u64(" max", req.maxaddr);
            vtest_puts("\n");
            VT_ASSERT(false);
        }
        VT_CONSISTENT(&vm);
        vmem_xfree(&vm, got, req.size);
    }
    VT_CONSISTENT(&vm);
    for (size_t i = 0; i < SMALL_IDS; i++) {
        if (small_used[i])
            vmem_xfree(&vm, TS_PTR(SMALL_BASE + i), 1);
    }
    VT_ASSERT(vmem_size(&vm, VMEM_ALLOC) == 0);
    VT_ASSERT(vtest_env_misuse_count() == 0);
    vmem_destroy(&vm);
}

static void random_constrained_requests_always_satisfy_their_constraints(void)
{
    static Vmem vm;
    static uintptr_t held_addr[256];
    static size_t held_size[256];
    size_t held = 0;
    VtestRng rng;
    vtest_rng_seed(&rng, 42);
    /* 4 MiB of pages starting off any large boundary. */
    VT_ASSERT(init_pages(&vm, "constraint-random", 0x10003000, 1024));
    for (int round = 0; round < 3000; round++) {
        if (held == 256 || (held > 0 && vtest_rng_below(&rng, 2) == 0)) {
            size_t victim = (size_t)vtest_rng_below(&rng, held);
            vmem_xfree(&vm, TS_PTR(held_addr[victim]), held_size[victim]);
            held--;
            held_addr[victim] = held_addr[held];
            held_size[victim] = held_size[held];
            continue;
        }
        struct ts_request req;
        size_t pages = 1 + (size_t)vtest_rng_below(&rng, 8);
        ts_request_init(&req, pages * PAGE, PAGE << vtest_rng_below(&rng, 6));
        req.phase = PAGE * (size_t)vtest_rng_below(&rng, req.align / PAGE);
        if (vtest_rng_below(&rng, 2) == 0)
            req.nocross = (size_t)(8 * PAGE) << vtest_rng_below(&rng, 4);
        if (vtest_rng_below(&rng, 3) == 0)
            req.minaddr = 0x10003000 + PAGE * vtest_rng_below(&rng, 1024);
        if (vtest_rng_below(&rng, 3) == 0) {
            uintptr_t from = req.minaddr != 0 ? req.minaddr : 0x10003000;
            req.maxaddr = from + PAGE * (1 + vtest_rng_below(&rng, 1024));
        }
        int policy = all_policies[vtest_rng_below(&rng, POLICY_COUNT)];
        void *got = vmem_xalloc(&vm, req.size, req.align, req.phase, req.nocross,
                                TS_PTR(req.minaddr), TS_PTR(req.maxaddr), policy | VM_NOSLEEP);
        if (got == NULL)
            continue;
        VT_ASSERT(ts_placement_ok(&req, TS_ADDR(got)));
        VT_ASSERT(vmem_contains(&vm, got, req.size));
        held_addr[held] = TS_ADDR(got);
        held_size[held] = req.size;
        held++;
        if (round % 16 == 0)
            VT_CONSISTENT(&vm);
    }
    while (held > 0) {
        held--;
        vmem_xfree(&vm, TS_PTR(held_addr[held]), held_size[held]);
    }
    VT_ASSERT(vmem_size(&vm, VMEM_ALLOC) == 0);
    VT_CONSISTENT(&vm);
    vmem_destroy(&vm);
}

/* ---- Invalid constraints -------------------------------------------------- */

#define BAD_ARENA "constraint-bad"

/* Both xalloc calls report the request once as a bad constraint and leave
 * the arena unchanged. */
static bool constraint_rejected(Vmem *vm, size_t size, size_t align, size_t phase,
                                size_t nocross, uintptr_t minaddr, uintptr_t maxaddr)
{
    struct ts_snapshot before, after;
    ts_snapshot_take(vm, &before);
    ts_capture_misuse();
    if (vmem_xalloc(vm, size, align, phase, nocross, TS_PTR(minaddr), TS_PTR(maxaddr),
                    VM_NOSLEEP) != NULL ||
        !ts_misuse_once(VMEM_MISUSE_BAD_CONSTRAINT, "vmem_xalloc", BAD_ARENA))
        return false;
    ts_capture_misuse();
    uintptr_t addr = 0;
    if (vmem_xalloc_addr(vm, size, align, phase, nocross, minaddr, maxaddr, VM_NOSLEEP, &addr) !=
            -VMEM_ERR_INVALID ||
        !ts_misuse_once(VMEM_MISUSE_BAD_CONSTRAINT, "vmem_xalloc_addr", BAD_ARENA))
        return false;
    vtest_env_misuse_capture(false);
    ts_snapshot_take(vm, &after);
    return ts_snapshot_equal(&before, &after);
}

static bool init_bad_arena(Vmem *vm)
{
    if (!init_pages(vm, BAD_ARENA, 0x100000, 64))
        return false;
    /* A live segment, so "unchanged" covers more than an empty arena. */
    return vmem_alloc_exact(vm, 0x104000, PAGE, VM_NOSLEEP) == 0;
}

static void finish_bad_arena(Vmem *vm)
{
    vmem_xfree(vm, TS_PTR(0x104000), PAGE);
    vmem_destroy(vm);
}

static void invalid_align_is_misuse(void)
{
    static Vmem vm;
    VT_ASSERT(init_bad_arena(&vm));
    VT_ASSERT(constraint_rejected(&vm, PAGE, 3 * PAGE, 0, 0, 0, 0)); /* not a power of two */
    VT_ASSERT(constraint_rejected(&vm, PAGE, PAGE / 2, 0, 0, 0, 0)); /* below the quantum */
    VT_ASSERT(constraint_rejected(&vm, PAGE, PAGE + 1, 0, 0, 0, 0));
    VT_CONSISTENT(&vm);
    finish_bad_arena(&vm);
}

static void invalid_phase_is_misuse(void)
{
    static Vmem vm;
    VT_ASSERT(init_bad_arena(&vm));
    VT_ASSERT(constraint_rejected(&vm, PAGE, 4 * PAGE, 4 * PAGE, 0, 0, 0)); /* phase == align */
    VT_ASSERT(constraint_rejected(&vm, PAGE, 4 * PAGE, 8 * PAGE, 0, 0, 0)); /* phase > align */
    VT_ASSERT(constraint_rejected(&vm, PAGE, 4 * PAGE, 100, 0, 0, 0));      /* not quanta */
    VT_ASSERT(constraint_rejected(&vm, PAGE, 0, PAGE, 0, 0, 0)); /* align 0 means the quantum */
    VT_CONSISTENT(&vm);
    finish_bad_arena(&vm);
}

static void invalid_nocross_is_misuse(void)
{
    static Vmem vm;
    VT_ASSERT(init_bad_arena(&vm));
    VT_ASSERT(constraint_rejected(&vm, 4 * PAGE, 0, 0, 2 * PAGE, 0, 0)); /* smaller than size */
    VT_ASSERT(constraint_rejected(&vm, PAGE, 0, 0, 3 * PAGE, 0, 0));     /* not a power of two */
    VT_ASSERT(constraint_rejected(&vm, 1, 0, 0, PAGE / 2, 0, 0));        /* below the quantum */
    VT_CONSISTENT(&vm);
    finish_bad_arena(&vm);
}

static void invalid_address_range_is_misuse(void)
{
    static Vmem vm;
    VT_ASSERT(init_bad_arena(&vm));
    VT_ASSERT(constraint_rejected(&vm, PAGE, 0, 0, 0, 0x110000, 0x110000)); /* min == max */
    VT_ASSERT(constraint_rejected(&vm, PAGE, 0, 0, 0, 0x120000, 0x110000)); /* min > max */
    VT_ASSERT(constraint_rejected(&vm, PAGE, 0, 0, 0, 0x110800, 0));        /* min misaligned */
    VT_ASSERT(constraint_rejected(&vm, PAGE, 0, 0, 0, 0, 0x120800));        /* max misaligned */
    VT_CONSISTENT(&vm);
    finish_bad_arena(&vm);
}

VTEST_SUITE(suite_constraints,
            VTEST_CASE(align_places_the_segment_on_a_boundary),
            VTEST_CASE(phase_offsets_the_segment_from_the_boundary),
            VTEST_CASE(nocross_moves_the_segment_past_the_boundary),
            VTEST_CASE(minaddr_is_an_inclusive_lower_bound),
            VTEST_CASE(maxaddr_is_an_exclusive_upper_bound),
            VTEST_CASE(min_and_max_form_a_window),
            VTEST_CASE(all_constraints_combine),
            VTEST_CASE(the_only_valid_placement_is_found_by_every_policy),
            VTEST_CASE(no_valid_placement_fails_and_leaves_the_arena_unchanged),
            VTEST_CASE(first_fit_finds_the_lowest_placement_past_budgeted_misfits),
            VTEST_CASE(best_fit_finds_the_smallest_fitting_segment_past_budgeted_misfits),
            VTEST_CASE(too_many_misfits_settle_for_the_first_comfortable_segment),
            VTEST_CASE(constrained_results_match_brute_force_on_a_small_arena),
            VTEST_CASE(random_constrained_requests_always_satisfy_their_constraints),
            VTEST_CASE(invalid_align_is_misuse),
            VTEST_CASE(invalid_phase_is_misuse),
            VTEST_CASE(invalid_nocross_is_misuse),
            VTEST_CASE(invalid_address_range_is_misuse));
