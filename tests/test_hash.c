/*
 * test_hash.c - the hash of allocated segments, seen through the public
 * API: every allocated segment is found by its free, whatever state the
 * hash is in - growing or shrinking with a migration under way, over-full
 * (long chains) because the page source cannot give it a bigger table, or
 * holding address 0 and the last address of the space as keys.
 * vmem_check() verifies the hash's own structure (every entry in its own
 * key's chain, none left behind in a migrated old bucket, the count)
 * after each step, and the arena's own storage shows that the table
 * really grows and comes back to the embedded chain heads.
 */
#include "test_support.h"

#define PAGE ((size_t)4096)
#define TOP_BASE(size) (UINTPTR_MAX - (uintptr_t)(size) + 1)
/* Live segments in these tests: enough to overflow the table embedded in
 * the arena many times over, few enough to check after every step. */
#define HASH_LIVE ((size_t)1500)
/* IDs of the arenas below: one unit each, spread so neighbours rarely
 * coalesce (every other ID stays free). */
#define HASH_IDS (4 * HASH_LIVE)

static uintptr_t live_ids[HASH_LIVE];

/* Takes `count` IDs, every other one from `base`, in a shuffled order so
 * keys do not arrive in address order. True when all were allocated. */
static bool take_spread_ids(Vmem *vm, uintptr_t base, size_t count, VtestRng *rng)
{
    for (size_t i = 0; i < count; i++)
        live_ids[i] = base + 2 * i;
    for (size_t i = count; i > 1; i--) {
        size_t j = (size_t)vtest_rng_below(rng, i);
        uintptr_t id = live_ids[i - 1];
        live_ids[i - 1] = live_ids[j];
        live_ids[j] = id;
    }
    for (size_t i = 0; i < count; i++)
        if (vmem_alloc_exact(vm, live_ids[i], 1, VM_NOSLEEP) != 0)
            return false;
    return true;
}

/* Frees live_ids[0..count) in a random order; checks every `every` frees. */
static bool free_ids_checking(Vmem *vm, size_t count, size_t every, VtestRng *rng)
{
    for (size_t left = count; left > 0; left--) {
        size_t j = (size_t)vtest_rng_below(rng, left);
        uintptr_t id = live_ids[j];
        live_ids[j] = live_ids[left - 1];
        vmem_xfree(vm, TS_PTR(id), 1);
        if (left % every == 0 && vmem_check(vm, NULL) != 0)
            return false;
    }
    return vmem_size(vm, VMEM_ALLOC) == 0 && vmem_check(vm, NULL) == 0;
}

/* Tags for `count` segments, taken once and given back, so later
 * allocations need no page while the page source fails. */
static void warm_tag_pool(uintptr_t base, size_t count)
{
    static Vmem warm;
    if (vmem_init(&warm, "hash-warm", TS_PTR(base), 2 * count, 1, NULL, NULL, NULL, 0, 0) != 0)
        return;
    for (size_t i = 0; i < count; i++)
        if (vmem_alloc_exact(&warm, base + 2 * i, 1, VM_NOSLEEP) != 0)
            break;
    for (size_t i = 0; i < count; i++)
        if (vmem_size(&warm, VMEM_ALLOC) != 0)
            vmem_xfree(&warm, TS_PTR(base + 2 * i), 1);
    vmem_destroy(&warm);
}

/* ---- Growing and shrinking ---------------------------------------------------- */

static void every_segment_is_found_while_the_table_grows_and_shrinks(void)
{
    static Vmem vm;
    VtestRng rng;
    vtest_rng_seed(&rng, 0x6a5b);
    VT_ASSERT(vmem_init(&vm, "hash-resize", TS_PTR(0x1000), HASH_IDS, 1, NULL, NULL, NULL, 0, 0) ==
              0);
    /* Growth: a check after every insert sees each migration step. */
    for (size_t i = 0; i < HASH_LIVE; i++) {
        live_ids[i] = 0x1000 + 2 * i;
        VT_ASSERT(vmem_alloc_exact(&vm, live_ids[i], 1, VM_NOSLEEP) == 0);
        VT_ASSERT(vmem_check(&vm, NULL) == 0);
    }
    /* The arena's storage is the caller's, so its table is in sight: one
     * from the page source, with a chain head for every entry. */
    VT_ASSERT(vm.vm_hash.ht_bucket != vm.vm_hash_embedded);
    VT_ASSERT(vm.vm_hash.ht_shift > 0 && vm.vm_hash.ht_shift < 64);
    VT_ASSERT(((uint64_t)1 << (64 - vm.vm_hash.ht_shift)) >= HASH_LIVE);
    /* Shrinking: frees step the migrations; the allocation in every third
     * step is what may install a smaller table. */
    size_t live = HASH_LIVE;
    while (live > 0) {
        for (int k = 0; k < 3 && live > 0; k++) {
            size_t j = (size_t)vtest_rng_below(&rng, live);
            uintptr_t id = live_ids[j];
            live_ids[j] = live_ids[--live];
            vmem_xfree(&vm, TS_PTR(id), 1);
            VT_ASSERT(vmem_check(&vm, NULL) == 0);
        }
        if (live > 0) {
            /* An odd ID: always free, never coalescing into a live one's. */
            uintptr_t odd = 0x1000 + 2 * (uintptr_t)vtest_rng_below(&rng, HASH_LIVE) + 1;
            VT_ASSERT(vmem_alloc_exact(&vm, odd, 1, VM_NOSLEEP) == 0);
            VT_ASSERT(vmem_check(&vm, NULL) == 0);
            vmem_xfree(&vm, TS_PTR(odd), 1);
        }
    }
    VT_ASSERT(vmem_size(&vm, VMEM_ALLOC) == 0);
    /* Back in the chain heads embedded in the arena. */
    VT_ASSERT(vm.vm_hash.ht_bucket == vm.vm_hash_embedded);
    VT_CONSISTENT(&vm);
    vmem_destroy(&vm);
}

static void frees_carry_a_growth_migration_to_its_end(void)
{
    static Vmem vm;
    VtestRng rng;
    vtest_rng_seed(&rng, 0xf4ee);
    /* Fill in one go, then only free: whatever migration the last
     * insertions started is finished by frees, checked at each one. */
    for (size_t live = 100; live <= HASH_LIVE; live += 350) {
        VT_ASSERT(vmem_init(&vm, "hash-free-migrate", TS_PTR(0x1000), HASH_IDS, 1, NULL, NULL,
                            NULL, 0, 0) == 0);
        VT_ASSERT(take_spread_ids(&vm, 0x1000, live, &rng));
        VT_ASSERT(free_ids_checking(&vm, live, 1, &rng));
        vmem_destroy(&vm);
    }
}

/* ---- A table that cannot grow ------------------------------------------------------ */

static void inserts_succeed_and_are_found_when_no_table_can_be_had(void)
{
    static Vmem vm;
    VtestRng rng;
    vtest_rng_seed(&rng, 0xfa11);
    warm_tag_pool(0x100000, 2 * HASH_LIVE);
    VT_ASSERT(vmem_init(&vm, "hash-no-pages", TS_PTR(0x1000), HASH_IDS, 1, NULL, NULL, NULL, 0,
                        0) == 0);
    /* From here the page source fails: the arena keeps its embedded table,
     * a hundred times over-full. Skipped where faults cannot be injected
     * (the test then runs with a table that grows, and still passes). */
    bool faults = vtest_env_page_faults(1);
    ts_capture_misuse();
    bool taken = take_spread_ids(&vm, 0x1000, HASH_LIVE, &rng);
    bool consistent = vmem_check(&vm, NULL) == 0;
    /* Misuse against an over-full table: absent keys are not found. */
    vmem_xfree(&vm, TS_PTR(0x1001), 1);  /* a free ID */
    size_t misuse_absent = vtest_env_misuse_count();
    vmem_xfree(&vm, TS_PTR(live_ids[0]), 2);  /* the wrong size */
    size_t misuse_size = vtest_env_misuse_count();
    bool freed = free_ids_checking(&vm, HASH_LIVE, 50, &rng);
    if (faults)
        vtest_env_page_faults(0);
    vtest_env_misuse_capture(false);
    VT_ASSERT(taken);
    VT_ASSERT(consistent);
    VT_ASSERT(misuse_absent == 1 && misuse_size == 2);
    VT_ASSERT(freed);
    vmem_destroy(&vm);
}

static void an_over_full_table_recovers_once_pages_return(void)
{
    static Vmem vm;
    VtestRng rng;
    vtest_rng_seed(&rng, 0x2ec0);
    warm_tag_pool(0x100000, 2 * HASH_LIVE);
    VT_ASSERT(vmem_init(&vm, "hash-recover", TS_PTR(0x1000), HASH_IDS, 1, NULL, NULL, NULL, 0,
                        0) == 0);
    bool faults = vtest_env_page_faults(1);
    bool taken = take_spread_ids(&vm, 0x1000, HASH_LIVE / 2, &rng);
    if (faults)
        vtest_env_page_faults(0);
    VT_ASSERT(taken);
    VT_CONSISTENT(&vm);
    /* The next allocations get a table sized for everything at once and
     * migrate the long chains into it, checked at every step. */
    for (size_t i = HASH_LIVE / 2; i < HASH_LIVE; i++) {
        live_ids[i] = 0x1000 + 2 * HASH_LIVE + 2 * i;
        VT_ASSERT(vmem_alloc_exact(&vm, live_ids[i], 1, VM_NOSLEEP) == 0);
        VT_ASSERT(vmem_check(&vm, NULL) == 0);
    }
    VT_ASSERT(free_ids_checking(&vm, HASH_LIVE, 7, &rng));
    vmem_destroy(&vm);
}

/* ---- Misuse in every state of the hash --------------------------------------- */

/* Frees `id` with the wrong size and frees the free ID above it: both
 * must be reported and change nothing, whether the entry heads its chain,
 * sits deep in a long one or in a table being migrated. */
static bool misused_frees_change_nothing(Vmem *vm, uintptr_t id, size_t live)
{
    size_t before = vtest_env_misuse_count();
    vmem_xfree(vm, TS_PTR(id), 2);
    vmem_xfree(vm, TS_PTR(id + 1), 1);
    return vtest_env_misuse_count() == before + 2 && vmem_size(vm, VMEM_ALLOC) == live &&
           vmem_check(vm, NULL) == 0;
}

static void misused_frees_leave_the_hash_unchanged_in_every_state(void)
{
    static Vmem vm;
    VtestRng rng;
    vtest_rng_seed(&rng, 0xbadf);
    VT_ASSERT(vmem_init(&vm, "hash-misuse", TS_PTR(0x1000), HASH_IDS, 1, NULL, NULL, NULL, 0, 0) ==
              0);
    ts_capture_misuse();
    /* Growing: after each insert (some start or step a migration), a
     * misused free of a random live entry. */
    bool ok = true;
    for (size_t i = 0; i < HASH_LIVE && ok; i++) {
        live_ids[i] = 0x1000 + 2 * i;
        ok = vmem_alloc_exact(&vm, live_ids[i], 1, VM_NOSLEEP) == 0 &&
             misused_frees_change_nothing(&vm, live_ids[vtest_rng_below(&rng, i + 1)], i + 1);
    }
    vtest_env_misuse_capture(false);
    VT_ASSERT(ok);
    VT_ASSERT(free_ids_checking(&vm, HASH_LIVE, 50, &rng));
    vmem_destroy(&vm);

    /* Over-full: no table can be had, so the chains are a hundred long;
     * every entry is misused once. */
    warm_tag_pool(0x100000, 2 * HASH_LIVE);
    VT_ASSERT(vmem_init(&vm, "hash-misuse-full", TS_PTR(0x1000), HASH_IDS, 1, NULL, NULL, NULL,
                        0, 0) == 0);
    bool faults = vtest_env_page_faults(1);
    ok = take_spread_ids(&vm, 0x1000, HASH_LIVE, &rng);
    ts_capture_misuse();
    for (size_t i = 0; i < HASH_LIVE && ok; i++)
        ok = misused_frees_change_nothing(&vm, live_ids[i], HASH_LIVE);
    vtest_env_misuse_capture(false);
    ok = ok && free_ids_checking(&vm, HASH_LIVE, 50, &rng);
    if (faults)
        vtest_env_page_faults(0);
    VT_ASSERT(ok);
    vmem_destroy(&vm);
}

/* ---- Extreme keys --------------------------------------------------------------- */

static uintptr_t extreme_ids[2 * HASH_LIVE];

/* Allocates [0, n) and the last n units below 2^64 one by one in an arena
 * of quantum 1 (address 0 and UINTPTR_MAX among them), then frees them in
 * a random order. n <= HASH_LIVE. */
static bool extreme_keys_round_trip(size_t n, VtestRng *rng)
{
    static Vmem vm;
    if (vmem_init(&vm, "hash-extremes", NULL, 0, 1, NULL, NULL, NULL, 0, 0) != 0 ||
        vmem_add_range(&vm, 0, n, VM_NOSLEEP) != 0 ||
        vmem_add_range(&vm, TOP_BASE(n), n, VM_NOSLEEP) != 0)
        return false;
    bool ok = true;
    for (size_t i = 0; i < n && ok; i++) {
        extreme_ids[2 * i] = i;
        extreme_ids[2 * i + 1] = UINTPTR_MAX - i;
        ok = vmem_alloc_exact(&vm, extreme_ids[2 * i], 1, VM_NOSLEEP) == 0 &&
             vmem_alloc_exact(&vm, extreme_ids[2 * i + 1], 1, VM_NOSLEEP) == 0;
    }
    ok = ok && vmem_check(&vm, NULL) == 0;
    /* Freed once, the extremes are gone: freeing again is reported and
     * changes nothing. */
    ts_capture_misuse();
    vmem_xfree(&vm, TS_PTR(0), 1);
    vmem_xfree(&vm, TS_PTR(UINTPTR_MAX), 1);
    vmem_xfree(&vm, TS_PTR(0), 1);
    vmem_xfree(&vm, TS_PTR(UINTPTR_MAX), 1);
    ok = ok && vtest_env_misuse_count() == 2 && vmem_check(&vm, NULL) == 0;
    vtest_env_misuse_capture(false);
    /* The rest in a random order, checked as the table shrinks. */
    for (size_t left = 2 * n - 2; left > 0 && ok; left--) {
        size_t j = 2 + (size_t)vtest_rng_below(rng, left);
        uintptr_t id = extreme_ids[j];
        extreme_ids[j] = extreme_ids[left + 1];
        vmem_xfree(&vm, TS_PTR(id), 1);
        if (left % 64 == 0)
            ok = vmem_check(&vm, NULL) == 0;
    }
    ok = ok && vmem_size(&vm, VMEM_ALLOC) == 0 && vmem_check(&vm, NULL) == 0;
    vmem_destroy(&vm);
    return ok;
}

static void address_zero_and_the_last_address_are_keys_like_any_other(void)
{
    VtestRng rng;
    vtest_rng_seed(&rng, 0x0ff);
    VT_ASSERT(extreme_keys_round_trip(4, &rng));        /* the embedded table */
    VT_ASSERT(extreme_keys_round_trip(HASH_LIVE, &rng)); /* grown tables */
    /* And in an over-full table, where they may sit deep in long chains. */
    warm_tag_pool(0x100000, 4 * HASH_LIVE);
    bool faults = vtest_env_page_faults(1);
    bool ok = extreme_keys_round_trip(HASH_LIVE, &rng);
    if (faults)
        vtest_env_page_faults(0);
    VT_ASSERT(ok);
}

VTEST_SUITE(suite_hash,
            VTEST_CASE(every_segment_is_found_while_the_table_grows_and_shrinks),
            VTEST_CASE(frees_carry_a_growth_migration_to_its_end),
            VTEST_CASE(inserts_succeed_and_are_found_when_no_table_can_be_had),
            VTEST_CASE(an_over_full_table_recovers_once_pages_return),
            VTEST_CASE(misused_frees_leave_the_hash_unchanged_in_every_state),
            VTEST_CASE(address_zero_and_the_last_address_are_keys_like_any_other));
