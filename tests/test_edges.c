/*
 * test_edges.c - the edges of the integer space and of the allocator's own
 * resources: quantum-1 arenas, arenas at address 0 (the void * calls never
 * hand out 0; the status-returning calls can), spans that end exactly at
 * 2^64, one-quantum arenas, vtest_env_scale() live segments freed in random
 * order, the bounds of an arena's spare tags, and a failing page source for
 * boundary tags.
 */
#include "test_support.h"

#define PAGE ((size_t)4096)
/* The first address of the last `size` units below 2^64 (2^32 on a 32-bit
 * build: "2^64" in these tests means the top of the address space). */
#define TOP_BASE(size) (UINTPTR_MAX - (uintptr_t)(size) + 1)
/* 2^63 on 64-bit, 2^31 on 32-bit: the largest power-of-two alignment. */
#define HALF_SPACE (UINTPTR_MAX / 2 + 1)

static bool single_free_segment(Vmem *vm, uintptr_t addr, size_t size)
{
    struct ts_segment segs[2];
    return ts_collect(vm, VMEM_ALLOC | VMEM_FREE, segs, 2) == 1 && segs[0].addr == addr &&
           segs[0].size == size && segs[0].type == VMEM_FREE;
}

/* ---- The arena's stash of spare tags ------------------------------------- */

/* Merging frees release tags into the arena's stash. The stash must stay
 * small (tags are shared by every arena), yet a trim must leave room to
 * grow: an arena whose stash sits at its limit would hand a tag to the
 * global pool, under the pool's lock, on nearly every merging free. */
static void merging_frees_trim_the_stash_rarely_and_keep_it_small(void)
{
    static Vmem vm;
    enum { IDS = 400, MERGING = IDS / 2 };
    VT_ASSERT(vmem_init(&vm, "edge-stash", TS_PTR(1), IDS, 1, NULL, NULL, NULL, 0, 0) == 0);
    for (uintptr_t id = 1; id <= IDS; id++)
        VT_ASSERT(TS_ADDR(vmem_alloc(&vm, 1, VM_NOSLEEP)) == id);
    for (uintptr_t id = 1; id <= IDS; id += 2) /* isolated: no merge, no tag released */
        vmem_free(&vm, TS_PTR(id), 1);
    size_t trims = 0;
    for (uintptr_t id = 2; id < IDS; id += 2) {
        /* Merges both neighbours: two tags are released into the stash,
         * and any fewer there afterwards went back to the pool. */
        size_t before = vm.vm_stash_count;
        vmem_free(&vm, TS_PTR(id), 1);
        VT_ASSERT(vm.vm_stash_count <= 48);
        if (vm.vm_stash_count != before + 2)
            trims++;
    }
    vmem_free(&vm, TS_PTR(IDS), 1); /* the last ID has no successor */
    VT_ASSERT(trims >= 1);
    VT_ASSERT(trims <= MERGING / 4);
    VT_ASSERT(single_free_segment(&vm, 1, IDS));
    VT_CONSISTENT(&vm);
    vmem_destroy(&vm);
}

/* ---- Quantum 1 and address 0 ---------------------------------------------- */

static void quantum_one_arena_hands_out_every_id_exactly_once(void)
{
    static Vmem vm;
    static bool taken[101];
    for (size_t i = 0; i <= 100; i++)
        taken[i] = false;
    VT_ASSERT(vmem_init(&vm, "edge-ids", TS_PTR(1), 100, 1, NULL, NULL, NULL, 0, 0) == 0);
    for (size_t i = 0; i < 100; i++) {
        uintptr_t id = TS_ADDR(vmem_alloc(&vm, 1, VM_NOSLEEP));
        VT_ASSERT(id >= 1 && id <= 100 && !taken[id]);
        taken[id] = true;
    }
    VT_ASSERT(vmem_alloc(&vm, 1, VM_NOSLEEP) == NULL);
    VT_ASSERT(ts_stat_is(&vm, 100, 0, 100, 100, 0));
    VT_CONSISTENT(&vm);
    for (uintptr_t id = 100; id >= 1; id--)
        vmem_free(&vm, TS_PTR(id), 1);
    VT_ASSERT(single_free_segment(&vm, 1, 100));
    VT_CONSISTENT(&vm);
    vmem_destroy(&vm);
}

static void void_calls_never_hand_out_address_zero(void)
{
    static Vmem vm;
    static bool taken[16];
    for (size_t i = 0; i < 16; i++)
        taken[i] = false;
    VT_ASSERT(vmem_init(&vm, "edge-zero", NULL, 0, 1, NULL, NULL, NULL, 0, 0) == 0);
    VT_ASSERT(vmem_add_range(&vm, 0, 16, VM_NOSLEEP) == 0);
    /* IDs 1..15 come out of vmem_alloc, and then it fails: 0 is not one. */
    for (size_t i = 0; i < 15; i++) {
        uintptr_t id = TS_ADDR(vmem_alloc(&vm, 1, VM_NOSLEEP));
        VT_ASSERT(id >= 1 && id < 16 && !taken[id]);
        taken[id] = true;
    }
    ts_capture_misuse();
    VT_ASSERT(vmem_alloc(&vm, 1, VM_NOSLEEP) == NULL);
    VT_ASSERT(vmem_xalloc(&vm, 1, 0, 0, 0, NULL, NULL, VM_BESTFIT | VM_NOSLEEP) == NULL);
    VT_ASSERT(vtest_env_misuse_count() == 0);
    VT_ASSERT(vmem_size(&vm, VMEM_FREE) == 1);
    /* ...but vmem_alloc_exact can hand it out, and vmem_xfree takes it back. */
    VT_ASSERT(vmem_alloc_exact(&vm, 0, 1, VM_NOSLEEP) == 0);
    VT_ASSERT(ts_stat_is(&vm, 16, 0, 16, 16, 0));
    vmem_xfree(&vm, TS_PTR(0), 1);
    for (uintptr_t id = 1; id < 16; id++)
        vmem_free(&vm, TS_PTR(id), 1);
    VT_ASSERT(single_free_segment(&vm, 0, 16));
    VT_CONSISTENT(&vm);
    vmem_destroy(&vm);
}

/* Instant-fit aligned requests go to the lowest aligned address of the
 * segment chosen, never 0, and a segment at 0 too small once 0 is ruled
 * out gives way to the next one. */
static void aligned_instant_fit_takes_the_lowest_aligned_address_never_zero(void)
{
    static Vmem vm;
    const int flags = VM_INSTANTFIT | VM_NOSLEEP;
    VT_ASSERT(vmem_init(&vm, "edge-zero-aligned", NULL, 0, PAGE, NULL, NULL, NULL, 0, 0) == 0);
    VT_ASSERT(vmem_add_range(&vm, 0, 16 * PAGE, VM_NOSLEEP) == 0);
    VT_ASSERT(vmem_xalloc(&vm, PAGE, 4 * PAGE, 0, 0, NULL, NULL, flags) == TS_PTR(4 * PAGE));
    /* [0, 4 pages) is free but holds no aligned page above 0. */
    VT_ASSERT(vmem_xalloc(&vm, PAGE, 4 * PAGE, 0, 0, NULL, NULL, flags) == TS_PTR(8 * PAGE));
    vmem_xfree(&vm, TS_PTR(4 * PAGE), PAGE);
    vmem_xfree(&vm, TS_PTR(8 * PAGE), PAGE);
    VT_ASSERT(vmem_xalloc(&vm, 2 * PAGE, 8 * PAGE, 0, 0, NULL, NULL, flags) == TS_PTR(8 * PAGE));
    /* Left: [0, 8 pages) and [10, 16): the smaller one serves a page... */
    VT_ASSERT(TS_ADDR(vmem_alloc(&vm, PAGE, flags)) == 10 * PAGE);
    /* ...and no aligned placement is left, until a span brings one. */
    VT_ASSERT(vmem_xalloc(&vm, PAGE, 8 * PAGE, 0, 0, NULL, NULL, flags) == NULL);
    VT_ASSERT(vmem_add_range(&vm, 20 * PAGE, 12 * PAGE, VM_NOSLEEP) == 0);
    VT_ASSERT(vmem_xalloc(&vm, PAGE, 8 * PAGE, 0, 0, NULL, NULL, flags) == TS_PTR(24 * PAGE));
    VT_ASSERT(ts_stat_is(&vm, 4 * PAGE, 0, 28 * PAGE, 5, 2));
    VT_CONSISTENT(&vm);
    vmem_xfree(&vm, TS_PTR(8 * PAGE), 2 * PAGE);
    vmem_xfree(&vm, TS_PTR(24 * PAGE), PAGE);
    vmem_free(&vm, TS_PTR(10 * PAGE), PAGE);
    VT_ASSERT(vmem_size(&vm, VMEM_ALLOC) == 0);
    VT_CONSISTENT(&vm);
    vmem_destroy(&vm);
}

static void first_page_of_an_arena_at_zero_is_not_handed_out(void)
{
    static Vmem vm;
    VT_ASSERT(vmem_init(&vm, "edge-zero-pages", NULL, 0, PAGE, NULL, NULL, NULL, 0, 0) == 0);
    VT_ASSERT(vmem_add_range(&vm, 0, 4 * PAGE, VM_NOSLEEP) == 0);
    void *addr = vmem_alloc(&vm, 3 * PAGE, VM_NOSLEEP);
    VT_ASSERT(addr == TS_PTR(PAGE)); /* at or above the first quantum */
    ts_capture_misuse();
    VT_ASSERT(vmem_alloc(&vm, PAGE, VM_NOSLEEP) == NULL);
    VT_ASSERT(vtest_env_misuse_count() == 0);
    vmem_free(&vm, addr, 3 * PAGE);
    VT_ASSERT(vmem_alloc(&vm, 4 * PAGE, VM_NOSLEEP) == NULL); /* would have to start at 0 */
    VT_CONSISTENT(&vm);
    vmem_destroy(&vm);
}

static void xalloc_addr_can_hand_out_address_zero(void)
{
    static Vmem vm;
    uintptr_t addr = 1;
    VT_ASSERT(vmem_init(&vm, "edge-zero-xaddr", NULL, 0, 1, NULL, NULL, NULL, 0, 0) == 0);
    VT_ASSERT(vmem_add_range(&vm, 0, 4, VM_NOSLEEP) == 0);
    ts_capture_misuse();
    /* The only placement of 4 IDs is at 0: out of reach of vmem_xalloc. */
    VT_ASSERT(vmem_xalloc(&vm, 4, 0, 0, 0, NULL, NULL, VM_NOSLEEP) == NULL);
    VT_ASSERT(vtest_env_misuse_count() == 0);
    VT_ASSERT(vmem_xalloc_addr(&vm, 4, 0, 0, 0, 0, 0, VM_NOSLEEP, &addr) == 0);
    VT_ASSERT(addr == 0);
    VT_ASSERT(ts_stat_is(&vm, 4, 0, 4, 1, 0));
    vmem_xfree(&vm, TS_PTR(0), 4);
    VT_ASSERT(single_free_segment(&vm, 0, 4));
    VT_CONSISTENT(&vm);
    vmem_destroy(&vm);
}

/* ---- The top of the address space ---------------------------------------- */

static void span_ending_at_two_to_the_64_is_fully_usable(void)
{
    static Vmem vm;
    uintptr_t base = TOP_BASE(16 * PAGE), top_page = TOP_BASE(PAGE);
    VT_ASSERT(vmem_init(&vm, "edge-top", TS_PTR(base), 16 * PAGE, PAGE, NULL, NULL, NULL, 0, 0) ==
              0);
    VT_ASSERT(ts_stat_is(&vm, 0, 0, 16 * PAGE, 0, 0));
    VT_ASSERT(vmem_contains(&vm, TS_PTR(base), 16 * PAGE));
    VT_ASSERT(vmem_contains(&vm, TS_PTR(top_page), PAGE));
    void *all = vmem_alloc(&vm, 16 * PAGE, VM_NOSLEEP);
    VT_ASSERT(all == TS_PTR(base));
    VT_ASSERT(vmem_alloc(&vm, PAGE, VM_NOSLEEP) == NULL);
    VT_CONSISTENT(&vm);
    vmem_free(&vm, all, 16 * PAGE);
    VT_ASSERT(single_free_segment(&vm, base, 16 * PAGE));
    /* Cut it up, free the pieces in an odd order: it coalesces back. */
    void *low = vmem_alloc(&vm, 5 * PAGE, VM_NOSLEEP);
    void *high = vmem_alloc(&vm, PAGE, VM_ENDALLOC | VM_NOSLEEP);
    void *mid = vmem_alloc(&vm, 10 * PAGE, VM_NOSLEEP);
    VT_ASSERT(low == TS_PTR(base));
    VT_ASSERT(high == TS_PTR(top_page));
    VT_ASSERT(mid == TS_PTR(base + 5 * PAGE));
    VT_ASSERT(ts_stat_is(&vm, 16 * PAGE, 0, 16 * PAGE, 4, 1));
    VT_CONSISTENT(&vm);
    vmem_free(&vm, high, PAGE);
    vmem_free(&vm, low, 5 * PAGE);
    vmem_free(&vm, mid, 10 * PAGE);
    VT_ASSERT(single_free_segment(&vm, base, 16 * PAGE));
    VT_ASSERT(vmem_alloc_exact(&vm, top_page, PAGE, VM_NOSLEEP) == 0);
    vmem_xfree(&vm, TS_PTR(top_page), PAGE);
    VT_ASSERT(single_free_segment(&vm, base, 16 * PAGE));
    VT_CONSISTENT(&vm);
    vmem_destroy(&vm);
}

/* xalloc with req, expecting exactly `expect` (0: expecting failure). */
static bool top_xalloc_is(Vmem *vm, const struct ts_request *req, int flags, uintptr_t expect)
{
    void *got = vmem_xalloc(vm, req->size, req->align, req->phase, req->nocross,
                            TS_PTR(req->minaddr), TS_PTR(req->maxaddr), flags | VM_NOSLEEP);
    if (TS_ADDR(got) != expect) {
        ts_note_hex("    xalloc near the top returned", TS_ADDR(got));
        ts_note_hex(", expected", expect);
        vtest_puts("\n");
        return false;
    }
    if (got != NULL)
        vmem_xfree(vm, got, req->size);
    return vmem_check(vm, NULL) == 0;
}

static void constraints_near_the_top_do_not_overflow(void)
{
    static Vmem vm;
    struct ts_request req;
    uintptr_t base = TOP_BASE(16 * PAGE), expect;
    VT_ASSERT(vmem_init(&vm, "edge-top-constraints", TS_PTR(base), 16 * PAGE, PAGE, NULL, NULL,
                        NULL, 0, 0) == 0);
    ts_capture_misuse();

    /* Alignment larger than the span: exactly one placement, its base. */
    ts_request_init(&req, 16 * PAGE, 16 * PAGE);
    VT_ASSERT(top_xalloc_is(&vm, &req, 0, base));
    /* An alignment with no multiple in the span. */
    ts_request_init(&req, PAGE, HALF_SPACE);
    VT_ASSERT(top_xalloc_is(&vm, &req, 0, 0));

    /* Highest placements, computed independently, for phase and nocross. */
    ts_request_init(&req, 2 * PAGE, 4 * PAGE);
    req.phase = PAGE;
    VT_ASSERT(ts_highest_placement(&req, base, 16 * PAGE, &expect));
    VT_ASSERT(expect == TOP_BASE(3 * PAGE));
    VT_ASSERT(top_xalloc_is(&vm, &req, VM_ENDALLOC, expect));
    /* Below maxaddr 2^64 - 2 pages, the highest 3 pages would cross the
     * 4-page boundary at 2^64 - 4 pages: the block below it is used. */
    ts_request_init(&req, 3 * PAGE, PAGE);
    req.nocross = 4 * PAGE;
    req.maxaddr = TOP_BASE(2 * PAGE);
    VT_ASSERT(ts_highest_placement(&req, base, 16 * PAGE, &expect));
    VT_ASSERT(expect == TOP_BASE(7 * PAGE));
    VT_ASSERT(top_xalloc_is(&vm, &req, VM_ENDALLOC, expect));

    /* minaddr at the last page; through vmem_xalloc_addr, max 0 is 2^64. */
    ts_request_init(&req, PAGE, PAGE);
    req.minaddr = TOP_BASE(PAGE);
    VT_ASSERT(top_xalloc_is(&vm, &req, 0, TOP_BASE(PAGE)));
    req.size = 2 * PAGE;
    VT_ASSERT(top_xalloc_is(&vm, &req, 0, 0));
    uintptr_t addr = 0;
    VT_ASSERT(vmem_xalloc_addr(&vm, PAGE, 0, 0, 0, TOP_BASE(2 * PAGE), 0, VM_ENDALLOC | VM_NOSLEEP,
                               &addr) == 0);
    VT_ASSERT(addr == TOP_BASE(PAGE));
    vmem_xfree(&vm, TS_PTR(addr), PAGE);
    /* maxaddr just below the span: nothing fits, nothing wraps. */
    ts_request_init(&req, PAGE, PAGE);
    req.maxaddr = base;
    VT_ASSERT(top_xalloc_is(&vm, &req, 0, 0));

    VT_ASSERT(vtest_env_misuse_count() == 0);
    VT_ASSERT(single_free_segment(&vm, base, 16 * PAGE));
    vmem_destroy(&vm);
}

static void quantum_one_span_ending_at_two_to_the_64_is_fully_usable(void)
{
    static Vmem vm;
    uintptr_t base = TOP_BASE(10);
    VT_ASSERT(vmem_init(&vm, "edge-top-ids", TS_PTR(base), 10, 1, NULL, NULL, NULL, 0, 0) == 0);
    void *all = vmem_alloc(&vm, 10, VM_NOSLEEP);
    VT_ASSERT(all == TS_PTR(base));
    vmem_free(&vm, all, 10);
    VT_ASSERT(vmem_alloc_exact(&vm, UINTPTR_MAX, 1, VM_NOSLEEP) == 0);
    VT_ASSERT(vmem_alloc(&vm, 9, VM_ENDALLOC | VM_NOSLEEP) == TS_PTR(base));
    vmem_xfree(&vm, TS_PTR(UINTPTR_MAX), 1);
    vmem_free(&vm, TS_PTR(base), 9);
    VT_ASSERT(vmem_alloc(&vm, 1, VM_ENDALLOC | VM_NOSLEEP) == TS_PTR(UINTPTR_MAX));
    vmem_free(&vm, TS_PTR(UINTPTR_MAX), 1);
    VT_ASSERT(single_free_segment(&vm, base, 10));
    VT_CONSISTENT(&vm);
    vmem_destroy(&vm);
}

static void span_of_the_whole_space_above_the_first_page_works(void)
{
    static Vmem vm;
    size_t size = (size_t)0 - PAGE; /* [PAGE, 2^64) */
    VT_ASSERT(vmem_init(&vm, "edge-everything", TS_PTR(PAGE), size, PAGE, NULL, NULL, NULL, 0, 0) ==
              0);
    VT_ASSERT(ts_stat_is(&vm, 0, 0, size, 0, 0));
    void *all = vmem_alloc(&vm, size, VM_NOSLEEP);
    VT_ASSERT(all == TS_PTR(PAGE));
    VT_ASSERT(vmem_size(&vm, VMEM_FREE) == 0);
    vmem_free(&vm, all, size);
    void *half = vmem_xalloc(&vm, PAGE, HALF_SPACE, 0, 0, NULL, NULL, VM_NOSLEEP);
    VT_ASSERT(half == TS_PTR(HALF_SPACE));
    void *top = vmem_alloc(&vm, PAGE, VM_ENDALLOC | VM_NOSLEEP);
    VT_ASSERT(top == TS_PTR(TOP_BASE(PAGE)));
    VT_ASSERT(vmem_alloc(&vm, size, VM_NOSLEEP) == NULL);
    VT_CONSISTENT(&vm);
    vmem_xfree(&vm, half, PAGE);
    vmem_free(&vm, top, PAGE);
    VT_ASSERT(single_free_segment(&vm, PAGE, size));
    vmem_destroy(&vm);
}

/* ---- One quantum ---------------------------------------------------------- */

static void one_quantum_arena_serves_exactly_one_allocation(void)
{
    static Vmem vm;
    VT_ASSERT(vmem_init(&vm, "edge-one", TS_PTR(0x3000), PAGE, PAGE, NULL, NULL, NULL, 0, 0) == 0);
    void *only = vmem_alloc(&vm, 1, VM_NOSLEEP);
    VT_ASSERT(only == TS_PTR(0x3000));
    ts_capture_misuse();
    VT_ASSERT(vmem_alloc(&vm, 1, VM_NOSLEEP) == NULL);
    VT_ASSERT(vtest_env_misuse_count() == 0);
    vmem_free(&vm, only, 1);
    /* 0x3000 is not 8 KiB aligned: the one placement does not qualify. */
    VT_ASSERT(vmem_xalloc(&vm, PAGE, 2 * PAGE, 0, 0, NULL, NULL, VM_NOSLEEP) == NULL);
    VT_ASSERT(vmem_xalloc(&vm, PAGE, 2 * PAGE, PAGE, 0, NULL, NULL, VM_NOSLEEP) == TS_PTR(0x3000));
    vmem_xfree(&vm, TS_PTR(0x3000), PAGE);
    VT_ASSERT(ts_stat_is(&vm, 0, 0, PAGE, 2, 2));
    VT_ASSERT(single_free_segment(&vm, 0x3000, PAGE));
    VT_CONSISTENT(&vm);
    vmem_destroy(&vm);
}

/* ---- Page-source failure --------------------------------------------------- */

/* Enough IDs that the arena never runs out before the tag pool does. */
#define FAULT_IDS ((size_t)1 << 22)
static uint64_t fault_taken[FAULT_IDS / 64];

static void fault_map_clear(void)
{
    for (size_t i = 0; i < FAULT_IDS / 64; i++)
        fault_taken[i] = 0;
}

/* Allocates single IDs until the first failure or `limit`; records them. */
static size_t take_ids_until_failure(Vmem *vm, size_t limit, bool *failed)
{
    size_t taken = 0;
    *failed = false;
    while (taken < limit) {
        void *id = vmem_alloc(vm, 1, VM_NOSLEEP);
        if (id == NULL) {
            *failed = true;
            break;
        }
        uintptr_t bit = TS_ADDR(id) - 1;
        fault_taken[bit / 64] |= (uint64_t)1 << (bit % 64);
        taken++;
    }
    return taken;
}

static void give_back_ids(Vmem *vm)
{
    for (size_t word = 0; word < FAULT_IDS / 64; word++) {
        while (fault_taken[word] != 0) {
            unsigned bit = (unsigned)__builtin_ctzll(fault_taken[word]);
            fault_taken[word] &= fault_taken[word] - 1;
            vmem_free(vm, TS_PTR(word * 64 + bit + 1), 1);
        }
    }
}

static void failing_page_source_makes_tag_hungry_allocations_fail_cleanly(void)
{
    static Vmem vm;
    VT_ASSERT(vmem_init(&vm, "edge-faults", TS_PTR(1), FAULT_IDS, 1, NULL, NULL, NULL, 0, 0) == 0);
    fault_map_clear();
    if (!vtest_env_page_faults(1)) { /* this runner cannot inject faults */
        vmem_destroy(&vm);
        return;
    }
    ts_capture_misuse();
    /* Each allocation splits the free remainder and needs a new tag; once
     * the tags in hand run out, every refill fails. */
    bool failed;
    size_t taken = take_ids_until_failure(&vm, FAULT_IDS - 1, &failed);
    bool consistent = vmem_check(&vm, NULL) == 0;
    size_t in_use = vm.stat.in_use;
    bool xalloc_failed = vmem_xalloc(&vm, 1, 0, 0, 0, NULL, NULL, VM_NOSLEEP) == NULL;
    /* A new span needs tags too: it is added, or refused as out of memory
     * with nothing changed. */
    int added = vmem_add_range(&vm, FAULT_IDS + 100, 50, VM_NOSLEEP);
    size_t total = vm.stat.total;
    bool consistent_after_add = vmem_check(&vm, NULL) == 0;
    vtest_env_page_faults(0);
    VT_ASSERT(failed);
    VT_ASSERT(xalloc_failed);
    VT_ASSERT(consistent && consistent_after_add);
    VT_ASSERT(in_use == taken);
    VT_ASSERT(added == 0 || added == -VMEM_ERR_NO_MEM);
    VT_ASSERT(total == FAULT_IDS + (added == 0 ? 50 : 0));
    VT_ASSERT(vtest_env_misuse_count() == 0);
    /* With pages available again, allocation works. */
    void *again = vmem_alloc(&vm, 1, VM_NOSLEEP);
    VT_ASSERT(again != NULL);
    vmem_free(&vm, again, 1);
    give_back_ids(&vm);
    VT_ASSERT(vmem_size(&vm, VMEM_ALLOC) == 0);
    VT_ASSERT(vmem_size(&vm, VMEM_FREE) == total);
    VT_CONSISTENT(&vm);
    vmem_destroy(&vm);
}

#define CREATED_MAX 4096
static Vmem *created[CREATED_MAX];

static void failing_page_source_makes_create_fail_cleanly(void)
{
    if (!vtest_env_page_faults(1))
        return;
    ts_capture_misuse();
    /* Arena storage comes from metadata pages: once the pages already in
     * hand are used up, vmem_create() returns NULL. */
    size_t count = 0;
    bool failed = false;
    while (count < CREATED_MAX && !failed) {
        created[count] = vmem_create("edge-create-fault", TS_PTR(0x1000), PAGE, PAGE, NULL, NULL,
                                     NULL, 0, VM_NOSLEEP);
        if (created[count] == NULL)
            failed = true;
        else
            count++;
    }
    vtest_env_page_faults(0);
    size_t misuse = vtest_env_misuse_count();
    Vmem *after = vmem_create("edge-create-after", TS_PTR(0x1000), PAGE, PAGE, NULL, NULL, NULL,
                              0, VM_NOSLEEP);
    bool usable = after != NULL && vmem_alloc(after, PAGE, VM_NOSLEEP) == TS_PTR(0x1000);
    if (usable)
        vmem_free(after, TS_PTR(0x1000), PAGE);
    if (after != NULL)
        vmem_destroy(after);
    for (size_t i = 0; i < count; i++)
        vmem_destroy(created[i]);
    VT_ASSERT(failed);
    VT_ASSERT(misuse == 0);
    VT_ASSERT(usable);
}

static void page_faults_at_any_point_leave_arenas_consistent(void)
{
    static Vmem vm;
    if (!vtest_env_page_faults(0))
        return;
    for (size_t countdown = 1; countdown <= 12; countdown++) {
        VT_ASSERT(vmem_init(&vm, "edge-fault-points", TS_PTR(1), FAULT_IDS, 1, NULL, NULL, NULL, 0,
                            0) == 0);
        fault_map_clear();
        /* Warm up a little so faults hit refills and table growth alike. */
        bool failed;
        size_t warm = take_ids_until_failure(&vm, 1000 * countdown, &failed);
        VT_ASSERT(!failed && warm == 1000 * countdown);
        vtest_env_page_faults(countdown);
        ts_capture_misuse();
        (void)take_ids_until_failure(&vm, 50000, &failed);
        bool consistent = vmem_check(&vm, NULL) == 0;
        vtest_env_page_faults(0);
        VT_ASSERT(consistent);
        VT_ASSERT(vtest_env_misuse_count() == 0);
        vtest_env_misuse_capture(false);
        give_back_ids(&vm);
        VT_ASSERT(single_free_segment(&vm, 1, FAULT_IDS));
        VT_CONSISTENT(&vm);
        vmem_destroy(&vm);
    }
}

/* ---- Scale ----------------------------------------------------------------- */

#define SCALE_MAX ((size_t)1000000)
/* 10^6 segments of up to 4 pages need 16 GiB of addresses: above 4 GiB on
 * 64-bit; a 32-bit build keeps the count and shrinks the quantum instead, so
 * the span (4 * 10^6 + 64 quanta) fits below 2^32. */
#if UINTPTR_MAX > 0xffffffffu
#define SCALE_BASE ((uintptr_t)0x100000000)
#define SCALE_QUANTUM PAGE
#else
#define SCALE_BASE ((uintptr_t)0x10000000)
#define SCALE_QUANTUM ((size_t)256)
#endif
static uintptr_t scale_addr[SCALE_MAX];
static uint8_t scale_pages[SCALE_MAX];

static void many_live_segments_freed_in_random_order_coalesce_completely(void)
{
    static Vmem vm;
    VtestRng rng;
    size_t count = vtest_env_scale();
    if (count > SCALE_MAX)
        count = SCALE_MAX;
    size_t span_pages = 4 * count + 64;
    vtest_rng_seed(&rng, 0x5ca1e);
    VT_ASSERT(vmem_init(&vm, "edge-scale", TS_PTR(SCALE_BASE), span_pages * SCALE_QUANTUM,
                        SCALE_QUANTUM, NULL, NULL, NULL, 0, 0) == 0);
    size_t expect_in_use = 0;
    for (size_t i = 0; i < count; i++) {
        size_t pages = 1 + (size_t)vtest_rng_below(&rng, 4);
        void *addr = vmem_alloc(&vm, pages * SCALE_QUANTUM, VM_NOSLEEP);
        VT_ASSERT(addr != NULL);
        scale_addr[i] = TS_ADDR(addr);
        scale_pages[i] = (uint8_t)pages;
        expect_in_use += pages * SCALE_QUANTUM;
    }
    VT_ASSERT(ts_stat_is(&vm, expect_in_use, 0, span_pages * SCALE_QUANTUM, count, 0));
    VT_CONSISTENT(&vm); /* also proves the live segments are disjoint */
    /* Fisher-Yates: free in a uniformly random order. */
    for (size_t i = count; i > 1; i--) {
        size_t j = (size_t)vtest_rng_below(&rng, i);
        uintptr_t addr = scale_addr[i - 1];
        uint8_t pages = scale_pages[i - 1];
        scale_addr[i - 1] = scale_addr[j];
        scale_pages[i - 1] = scale_pages[j];
        scale_addr[j] = addr;
        scale_pages[j] = pages;
    }
    for (size_t i = 0; i < count; i++) {
        vmem_free(&vm, TS_PTR(scale_addr[i]), scale_pages[i] * SCALE_QUANTUM);
        if (i == count / 2)
            VT_CONSISTENT(&vm);
    }
    VT_ASSERT(ts_stat_is(&vm, 0, 0, span_pages * SCALE_QUANTUM, count, count));
    VT_ASSERT(single_free_segment(&vm, SCALE_BASE, span_pages * SCALE_QUANTUM));
    VT_CONSISTENT(&vm);
    vmem_destroy(&vm);
}

VTEST_SUITE(suite_edges,
            VTEST_CASE(merging_frees_trim_the_stash_rarely_and_keep_it_small),
            VTEST_CASE(quantum_one_arena_hands_out_every_id_exactly_once),
            VTEST_CASE(void_calls_never_hand_out_address_zero),
            VTEST_CASE(first_page_of_an_arena_at_zero_is_not_handed_out),
            VTEST_CASE(aligned_instant_fit_takes_the_lowest_aligned_address_never_zero),
            VTEST_CASE(xalloc_addr_can_hand_out_address_zero),
            VTEST_CASE(span_ending_at_two_to_the_64_is_fully_usable),
            VTEST_CASE(constraints_near_the_top_do_not_overflow),
            VTEST_CASE(quantum_one_span_ending_at_two_to_the_64_is_fully_usable),
            VTEST_CASE(span_of_the_whole_space_above_the_first_page_works),
            VTEST_CASE(one_quantum_arena_serves_exactly_one_allocation),
            VTEST_CASE(failing_page_source_makes_tag_hungry_allocations_fail_cleanly),
            VTEST_CASE(page_faults_at_any_point_leave_arenas_consistent),
            VTEST_CASE(failing_page_source_makes_create_fail_cleanly),
            VTEST_CASE(many_live_segments_freed_in_random_order_coalesce_completely));
