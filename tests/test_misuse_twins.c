/*
 * test_misuse_twins.c - a reported misuse changes nothing a later call can
 * observe. For each row of the misuse catalogue (docs/misuse.md) two arenas are
 * given the same history; one of them then suffers the misuse (reported
 * through a handler that records and returns), and both run the same
 * sequence of allocations and frees under every policy - instant-fit,
 * best-fit, first-fit, next-fit, VM_ENDALLOC and constrained vmem_xalloc.
 * Every address handed out, vmem_stat() and the whole vmem_walk() must be
 * the same for both: lazily built indexes, hash tables, the next-fit
 * rotor, the stash of tags and the counters must not differ because of
 * the misuse.
 *
 * The history leaves many free segments of one size class in the order
 * they were freed, so instant-fit's answer depends on whether an index of
 * the free segments has been built: an index built by a misuse shows.
 */
#include "test_support.h"
#include "vmem_config.h"

#define TQ ((size_t)16)
#define TBASE ((uintptr_t)0x100000)
#define TQUANTA 4096
#define TWIN_CACHED (4 * TQ) /* qcache_max of the cached twins */
#define TWIN_LIVE 256
#define TWIN_STEPS 96
#define TWIN_WALK 1024

/* What one arena of a twin holds: its live allocations, with the call that
 * frees each, and the addresses it freed. */
struct holding {
    uintptr_t addr[TWIN_LIVE];
    size_t size[TWIN_LIVE];
    bool xalloc[TWIN_LIVE];
    size_t count;
};

struct twin_arena {
    Vmem *vm;
    Vmem *child;              /* an arena importing from vm, or NULL */
    struct holding history;   /* live after the history */
    uintptr_t freed[TWIN_LIVE];
    size_t freed_size[TWIN_LIVE];
    size_t nfreed;
    struct holding sequence;  /* live after the sequence */
    uintptr_t results[TWIN_STEPS];
};

static bool hold(struct holding *h, uintptr_t addr, size_t size, bool xalloc)
{
    if (h->count == TWIN_LIVE)
        return false;
    h->addr[h->count] = addr;
    h->size[h->count] = size;
    h->xalloc[h->count] = xalloc;
    h->count++;
    return true;
}

static void release(Vmem *vm, struct holding *h, size_t i)
{
    if (h->xalloc[i])
        vmem_xfree(vm, TS_PTR(h->addr[i]), h->size[i]);
    else
        vmem_free(vm, TS_PTR(h->addr[i]), h->size[i]);
    h->count--;
    h->addr[i] = h->addr[h->count];
    h->size[i] = h->size[h->count];
    h->xalloc[i] = h->xalloc[h->count];
}

/*
 * The shared history: the arena filled with segments of 32-39 quanta (one
 * size class), from vmem_alloc and from vmem_xalloc, and with cached
 * objects when the arena has caches; then every other segment freed, in a
 * random order, so that the holes stay apart (segments follow each other
 * in address order, slabs aside).
 */
static bool build_history(struct twin_arena *t, const char *name, size_t qcache_max)
{
    Vmem *vm = t->vm;
    if (vmem_init(vm, name, TS_PTR(TBASE), TQUANTA * TQ, TQ, NULL, NULL, NULL, qcache_max, 0) != 0)
        return false;
    t->history.count = t->sequence.count = t->nfreed = 0;
    VtestRng rng;
    vtest_rng_seed(&rng, 0x7a1a);
    for (size_t i = 0;; i++) {
        size_t size = (size_t)(32 + vtest_rng_below(&rng, 8)) * TQ;
        bool x = i % 5 == 4;
        void *got = x ? vmem_xalloc(vm, size, 0, 0, 0, NULL, NULL, VM_NOSLEEP)
                      : vmem_alloc(vm, size, VM_NOSLEEP);
        if (got == NULL)
            break;
        if (!hold(&t->history, TS_ADDR(got), size, x))
            return false;
        if (qcache_max != 0 && i % 4 == 0) {
            size_t small = (size_t)(1 + vtest_rng_below(&rng, 4)) * TQ;
            void *cached = vmem_alloc(vm, small, VM_NOSLEEP);
            if (cached == NULL || !hold(&t->history, TS_ADDR(cached), small, false))
                return false;
        }
    }
    /* Fill what is left, so that every hole comes from a free below. */
    size_t rest = vmem_size(vm, VMEM_FREE);
    if (rest > 0) {
        void *got = vmem_xalloc(vm, rest, 0, 0, 0, NULL, NULL, VM_NOSLEEP);
        if (got != NULL && !hold(&t->history, TS_ADDR(got), rest, true))
            return false;
    }
    /* Free every other one (cached objects too), in a random order. */
    static struct holding odd;
    odd.count = 0;
    for (size_t i = t->history.count; i-- > 0;) {
        if (i % 2 == 1) {
            hold(&odd, t->history.addr[i], t->history.size[i], t->history.xalloc[i]);
            t->history.count--;
            t->history.addr[i] = t->history.addr[t->history.count];
            t->history.size[i] = t->history.size[t->history.count];
            t->history.xalloc[i] = t->history.xalloc[t->history.count];
        }
    }
    while (odd.count > 0) {
        size_t i = (size_t)vtest_rng_below(&rng, odd.count);
        t->freed[t->nfreed] = odd.addr[i];
        t->freed_size[t->nfreed] = odd.size[i];
        t->nfreed++;
        release(vm, &odd, i);
    }
    if (t->child != NULL) {
        /* Nothing left allocated, and a child that imported from vm and
         * gave its span back. */
        while (t->history.count > 0)
            release(vm, &t->history, t->history.count - 1);
        if (vmem_init(t->child, "twin-child", NULL, 0, TQ, vmem_alloc, vmem_free, vm, 0, 0) != 0)
            return false;
        void *got = vmem_alloc(t->child, 8 * TQ, VM_NOSLEEP);
        if (got == NULL)
            return false;
        vmem_free(t->child, got, 8 * TQ);
    }
    return vmem_check(vm, NULL) == 0;
}

/*
 * The same sequence on either arena: a burst of instant-fit requests of the
 * history's class (the ones an index would answer differently), then every
 * policy in turn, constrained requests, exact ones, and frees.
 */
static void run_sequence(struct twin_arena *t)
{
    Vmem *vm = t->vm;
    VtestRng rng;
    vtest_rng_seed(&rng, 0x5e91);
    for (size_t step = 0; step < TWIN_STEPS; step++) {
        size_t size = (size_t)(33 + vtest_rng_below(&rng, 7)) * TQ;
        uintptr_t got = 0;
        bool x = true;
        unsigned kind = step < 16 ? 0 : (unsigned)vtest_rng_below(&rng, 11);
        if (kind >= 1 && kind <= 3)
            size = (size_t)(1 + vtest_rng_below(&rng, 48)) * TQ;
        switch (kind) {
        case 0: /* instant-fit, the default */
            got = TS_ADDR(vmem_alloc(vm, size, VM_NOSLEEP));
            x = false;
            break;
        case 1: /* small sizes: through the caches when there are some */
            got = TS_ADDR(vmem_alloc(vm, size, VM_NOSLEEP | VM_INSTANTFIT));
            x = false;
            break;
        case 2:
            got = TS_ADDR(vmem_alloc(vm, size, VM_NOSLEEP | VM_NEXTFIT));
            x = false;
            break;
        case 3:
            got = TS_ADDR(vmem_alloc(vm, size, VM_NOSLEEP | VM_BESTFIT));
            x = false;
            break;
        case 4:
            got = TS_ADDR(vmem_alloc(vm, size, VM_NOSLEEP | VM_FIRSTFIT));
            x = false;
            break;
        case 5: /* constrained, instant-fit and best-fit */
            got = TS_ADDR(vmem_xalloc(vm, size, 8 * TQ, 2 * TQ, 128 * TQ,
                                      TS_PTR(TBASE + 512 * TQ), TS_PTR(TBASE + 3584 * TQ),
                                      VM_NOSLEEP | (step % 2 ? VM_BESTFIT : 0)));
            break;
        case 6: /* top-down */
            got = TS_ADDR(vmem_xalloc(vm, size, 0, 0, 0, NULL, NULL, VM_NOSLEEP | VM_ENDALLOC));
            break;
        case 7: /* an exact range, free or not */
        {
            uintptr_t at = TBASE + (uintptr_t)vtest_rng_below(&rng, TQUANTA - 64) * TQ;
            got = vmem_alloc_exact(vm, at, size, VM_NOSLEEP) == 0 ? at : 0;
            break;
        }
        default:
            if (t->sequence.count > 0)
                release(vm, &t->sequence, (size_t)vtest_rng_below(&rng, t->sequence.count));
            break;
        }
        t->results[step] = got;
        if (got != 0)
            hold(&t->sequence, got, size, x);
    }
}

/* Frees everything either phase left and destroys the arenas. */
static bool teardown(struct twin_arena *t)
{
    while (t->sequence.count > 0)
        release(t->vm, &t->sequence, t->sequence.count - 1);
    while (t->history.count > 0)
        release(t->vm, &t->history, t->history.count - 1);
    bool clean = vmem_size(t->vm, VMEM_ALLOC) == 0 && vmem_check(t->vm, NULL) == 0;
    if (t->child != NULL)
        vmem_destroy(t->child);
    vmem_destroy(t->vm);
    return clean;
}

static bool same_stat(Vmem *a, Vmem *b)
{
    VmemStat sa, sb;
    if (vmem_stat(a, &sa) != 0 || vmem_stat(b, &sb) != 0)
        return false;
    if (sa.in_use == sb.in_use && sa.import == sb.import && sa.total == sb.total &&
        sa.alloc == sb.alloc && sa.free == sb.free)
        return true;
    vtest_puts("    vmem_stat differs\n");
    return false;
}

static bool same_walk(Vmem *a, Vmem *b)
{
    static struct ts_segment wa[TWIN_WALK], wb[TWIN_WALK];
    int all = VMEM_ALLOC | VMEM_FREE | VMEM_SPAN;
    size_t na = ts_collect(a, all, wa, TWIN_WALK), nb = ts_collect(b, all, wb, TWIN_WALK);
    if (na != nb || na > TWIN_WALK) {
        ts_note_u64("    walk lengths", na);
        ts_note_u64(" and", nb);
        vtest_puts("\n");
        return false;
    }
    for (size_t i = 0; i < na; i++) {
        if (wa[i].addr != wb[i].addr || wa[i].size != wb[i].size || wa[i].type != wb[i].type) {
            ts_note_u64("    walks differ at entry", i);
            ts_note_hex(":", wa[i].addr);
            ts_note_hex(" against", wb[i].addr);
            vtest_puts("\n");
            return false;
        }
    }
    return true;
}

static bool same_results(const struct twin_arena *a, const struct twin_arena *b)
{
    for (size_t step = 0; step < TWIN_STEPS; step++) {
        if (a->results[step] != b->results[step]) {
            ts_note_u64("    step", step);
            ts_note_hex(" placed the misused arena's request at", a->results[step]);
            ts_note_hex(", the other's at", b->results[step]);
            vtest_puts("\n");
            return false;
        }
    }
    return true;
}

/* Commits one misuse on the victim; true when it was reported once, as
 * expected. (A counterpart: true when the correct call behaved as
 * expected.) */
typedef bool Misuse(struct twin_arena *victim);

/*
 * The twin check: history on both, the misuse on one, the same sequence on
 * both, then identical addresses, stats and walks. A misuse that is found
 * only once the call has done what a correct call would (VM_SLEEP on a
 * port that cannot sleep) has a counterpart, that correct call, which the
 * other arena makes, reporting nothing. Cached: both arenas have quantum
 * caches; with_child: both are empty sources of a child arena.
 */
static void twins_stay_identical(Misuse *misuse, Misuse *counterpart, bool cached,
                                 bool with_child)
{
    static Vmem victim_vm, control_vm, victim_child, control_child;
    static struct twin_arena victim, control;
    size_t qcache_max = cached ? TWIN_CACHED : 0;
    victim.vm = &victim_vm;
    control.vm = &control_vm;
    victim.child = with_child ? &victim_child : NULL;
    control.child = with_child ? &control_child : NULL;
    VT_ASSERT(build_history(&victim, "victim", qcache_max));
    VT_ASSERT(build_history(&control, "control", qcache_max));
    VT_ASSERT(same_walk(victim.vm, control.vm));
    VT_ASSERT(misuse(&victim));
    ts_capture_misuse();
    if (counterpart != NULL)
        VT_ASSERT(counterpart(&control) && vtest_env_misuse_count() == 0);
    run_sequence(&victim);
    run_sequence(&control);
    VT_ASSERT(vtest_env_misuse_count() == 0);
    if (with_child) {
        /* The children import the same way from either source. */
        void *a = vmem_alloc(victim.child, 40 * TQ, VM_NOSLEEP);
        void *b = vmem_alloc(control.child, 40 * TQ, VM_NOSLEEP);
        VT_ASSERT(a != NULL && a == b && vtest_env_misuse_count() == 0);
        vmem_free(victim.child, a, 40 * TQ);
        vmem_free(control.child, b, 40 * TQ);
    }
    VT_ASSERT(same_results(&victim, &control));
    VT_ASSERT(same_stat(victim.vm, control.vm));
    VT_ASSERT(same_walk(victim.vm, control.vm));
    VT_CONSISTENT(victim.vm);
    ts_capture_misuse();
    VT_ASSERT(teardown(&victim));
    VT_ASSERT(teardown(&control));
    VT_ASSERT(vtest_env_misuse_count() == 0);
    vtest_env_misuse_capture(false);
}

/* ---- The misuse catalogue, one row at a time ----------------------------- */

/* A live segment the history left (the first from vmem_alloc or
 * vmem_xalloc as asked, of at least two quanta). */
static size_t live_one(const struct twin_arena *t, bool xalloc)
{
    for (size_t i = 0; i < t->history.count; i++)
        if (t->history.xalloc[i] == xalloc && t->history.size[i] > TWIN_CACHED)
            return i;
    return 0;
}

/* A live cached object the history left. */
static size_t live_cached(const struct twin_arena *t)
{
    for (size_t i = 0; i < t->history.count; i++)
        if (!t->history.xalloc[i] && t->history.size[i] <= TWIN_CACHED)
            return i;
    return 0;
}

static bool free_unknown(struct twin_arena *t)
{
    ts_capture_misuse();
    vmem_free(t->vm, TS_PTR(TBASE - 64 * TQ), 40 * TQ);
    if (!ts_misuse_once(VMEM_MISUSE_FREE_UNKNOWN, "vmem_free", "victim"))
        return false;
    ts_capture_misuse();
    vmem_xfree(t->vm, TS_PTR(TBASE + TQUANTA * TQ), 40 * TQ);
    return ts_misuse_once(VMEM_MISUSE_FREE_UNKNOWN, "vmem_xfree", "victim");
}

/* The k-th segment the history freed that was not a cached object. */
static size_t freed_segment(const struct twin_arena *t, size_t k)
{
    for (size_t i = 0; i < t->nfreed; i++)
        if (t->freed_size[i] > TWIN_CACHED && k-- == 0)
            return i;
    return 0;
}

static bool double_free(struct twin_arena *t)
{
    size_t i = freed_segment(t, 0), j = freed_segment(t, 1);
    ts_capture_misuse();
    vmem_free(t->vm, TS_PTR(t->freed[i]), t->freed_size[i]);
    if (!ts_misuse_once(VMEM_MISUSE_DOUBLE_FREE, "vmem_free", "victim"))
        return false;
    ts_capture_misuse();
    vmem_xfree(t->vm, TS_PTR(t->freed[j]), t->freed_size[j]);
    return ts_misuse_once(VMEM_MISUSE_DOUBLE_FREE, "vmem_xfree", "victim");
}

static bool free_inside(struct twin_arena *t)
{
    size_t i = live_one(t, false);
    ts_capture_misuse();
    vmem_free(t->vm, TS_PTR(t->history.addr[i] + TQ), t->history.size[i] - TQ);
    return ts_misuse_once(VMEM_MISUSE_FREE_INSIDE, "vmem_free", "victim");
}

static bool free_wrong_size(struct twin_arena *t)
{
    size_t i = live_one(t, false), j = live_one(t, true);
    ts_capture_misuse();
    vmem_free(t->vm, TS_PTR(t->history.addr[i]), t->history.size[i] + TQ);
    if (!ts_misuse_once(VMEM_MISUSE_FREE_WRONG_SIZE, "vmem_free", "victim"))
        return false;
    ts_capture_misuse();
    vmem_xfree(t->vm, TS_PTR(t->history.addr[j]), t->history.size[j] - TQ);
    return ts_misuse_once(VMEM_MISUSE_FREE_WRONG_SIZE, "vmem_xfree", "victim");
}

static bool free_zero_or_overflowing_size(struct twin_arena *t)
{
    size_t i = live_one(t, false);
    ts_capture_misuse();
    vmem_free(t->vm, TS_PTR(t->history.addr[i]), 0);
    if (vtest_env_misuse_count() != 1)
        return false;
    ts_capture_misuse();
    vmem_xfree(t->vm, TS_PTR(t->history.addr[i]), SIZE_MAX);
    return ts_misuse_once(VMEM_MISUSE_FREE_WRONG_SIZE, "vmem_xfree", "victim");
}

static bool cached_double_free(struct twin_arena *t)
{
    /* A freed small object: in a magazine or back in its slab. */
    for (size_t k = 0; k < t->nfreed; k++) {
        if (t->freed_size[k] <= TWIN_CACHED) {
            ts_capture_misuse();
            vmem_free(t->vm, TS_PTR(t->freed[k]), t->freed_size[k]);
            return ts_misuse_once(VMEM_MISUSE_DOUBLE_FREE, "vmem_free", "victim");
        }
    }
    return false;
}

static bool cached_wrong_size(struct twin_arena *t)
{
    size_t i = live_cached(t);
    size_t other = t->history.size[i] == TQ ? 2 * TQ : TQ;
    ts_capture_misuse();
    vmem_free(t->vm, TS_PTR(t->history.addr[i]), other);
    return ts_misuse_once(VMEM_MISUSE_FREE_WRONG_SIZE, "vmem_free", "victim");
}

static bool cached_free_inside(struct twin_arena *t)
{
    /* A multi-quantum object, freed at its second quantum. */
    for (size_t i = 0; i < t->history.count; i++) {
        size_t size = t->history.size[i];
        if (!t->history.xalloc[i] && size > TQ && size <= TWIN_CACHED) {
            ts_capture_misuse();
            vmem_free(t->vm, TS_PTR(t->history.addr[i] + TQ), size);
            return ts_misuse_once(VMEM_MISUSE_FREE_INSIDE, "vmem_free", "victim");
        }
    }
    return false;
}

static bool xfree_of_a_cached_object(struct twin_arena *t)
{
    size_t i = live_cached(t);
    ts_capture_misuse();
    vmem_xfree(t->vm, TS_PTR(t->history.addr[i]), t->history.size[i]);
    return ts_misuse_once(VMEM_MISUSE_FREE_WRONG_CALL, "vmem_xfree", "victim");
}

static bool zero_size_allocation(struct twin_arena *t)
{
    uintptr_t addr;
    ts_capture_misuse();
    if (vmem_alloc(t->vm, 0, VM_NOSLEEP) != NULL ||
        !ts_misuse_once(VMEM_MISUSE_BAD_ARGUMENT, "vmem_alloc", "victim"))
        return false;
    ts_capture_misuse();
    if (vmem_xalloc(t->vm, 0, 0, 0, 0, NULL, NULL, VM_NOSLEEP | VM_BESTFIT) != NULL ||
        !ts_misuse_once(VMEM_MISUSE_BAD_ARGUMENT, "vmem_xalloc", "victim"))
        return false;
    ts_capture_misuse();
    if (vmem_xalloc_addr(t->vm, 0, 0, 0, 0, 0, 0, VM_NEXTFIT, &addr) != -VMEM_ERR_INVALID ||
        !ts_misuse_once(VMEM_MISUSE_BAD_ARGUMENT, "vmem_xalloc_addr", "victim"))
        return false;
    ts_capture_misuse();
    return vmem_alloc_exact(t->vm, TBASE, 0, VM_NOSLEEP) == -VMEM_ERR_INVALID &&
           ts_misuse_once(VMEM_MISUSE_BAD_ARGUMENT, "vmem_alloc_exact", "victim");
}

static bool size_overflow(struct twin_arena *t)
{
    ts_capture_misuse();
    if (vmem_alloc(t->vm, SIZE_MAX, VM_NOSLEEP) != NULL ||
        !ts_misuse_once(VMEM_MISUSE_SIZE_OVERFLOW, "vmem_alloc", "victim"))
        return false;
    ts_capture_misuse();
    return vmem_xalloc(t->vm, SIZE_MAX - 2, 0, 0, 0, NULL, NULL, VM_NOSLEEP | VM_FIRSTFIT) ==
               NULL &&
           ts_misuse_once(VMEM_MISUSE_SIZE_OVERFLOW, "vmem_xalloc", "victim");
}

static bool exact_range_past_the_top(struct twin_arena *t)
{
    ts_capture_misuse();
    return vmem_alloc_exact(t->vm, UINTPTR_MAX - TQ + 1, 2 * TQ, VM_NOSLEEP) ==
               -VMEM_ERR_INVALID &&
           ts_misuse_once(VMEM_MISUSE_SIZE_OVERFLOW, "vmem_alloc_exact", "victim");
}

static bool bad_constraints(struct twin_arena *t)
{
    static const struct {
        size_t align, phase, nocross;
        uintptr_t min, max;
    } bad[] = {
        {3 * TQ, 0, 0, 0, 0},                       /* align not a power of two */
        {TQ / 2, 0, 0, 0, 0},                       /* align below the quantum */
        {4 * TQ, 4 * TQ, 0, 0, 0},                  /* phase not below align */
        {4 * TQ, TQ / 2, 0, 0, 0},                  /* phase not a multiple */
        {0, 0, 3 * TQ, 0, 0},                       /* nocross not a power of two */
        {0, 0, TQ, 0, 0},                           /* nocross below size */
        {0, 0, 0, TBASE + 1, 0},                    /* misaligned minaddr */
        {0, 0, 0, 0, TBASE + 1},                    /* misaligned maxaddr */
        {0, 0, 0, TBASE + 64 * TQ, TBASE + 64 * TQ}, /* empty range */
        {0, 0, 0, TBASE + 64 * TQ, TBASE},          /* inverted range */
    };
    static const int policies[] = {VM_INSTANTFIT, VM_BESTFIT, VM_FIRSTFIT, VM_NEXTFIT};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ts_capture_misuse();
        uintptr_t addr;
        int flags = VM_NOSLEEP | policies[i % 4];
        if (vmem_xalloc_addr(t->vm, 2 * TQ, bad[i].align, bad[i].phase, bad[i].nocross,
                             bad[i].min, bad[i].max, flags, &addr) != -VMEM_ERR_INVALID ||
            !ts_misuse_once(VMEM_MISUSE_BAD_CONSTRAINT, "vmem_xalloc_addr", "victim"))
            return false;
    }
    return true;
}

static bool bad_flags(struct twin_arena *t)
{
    static const int bad[] = {VM_SLEEP | VM_NOSLEEP, VM_BESTFIT | VM_NEXTFIT,
                              VM_ENDALLOC | VM_NEXTFIT, VM_ENDALLOC | VM_INSTANTFIT, 1 << 20};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ts_capture_misuse();
        if (vmem_alloc(t->vm, 40 * TQ, bad[i]) != NULL ||
            !ts_misuse_once(VMEM_MISUSE_BAD_FLAGS, "vmem_alloc", "victim"))
            return false;
        ts_capture_misuse();
        if (vmem_xalloc(t->vm, TQ, 0, 0, 0, NULL, NULL, bad[i]) != NULL ||
            !ts_misuse_once(VMEM_MISUSE_BAD_FLAGS, "vmem_xalloc", "victim"))
            return false;
    }
    ts_capture_misuse();
    return vmem_add_range(t->vm, 0x10000000, 64 * TQ, VM_SLEEP | VM_NOSLEEP) ==
               -VMEM_ERR_INVALID &&
           ts_misuse_once(VMEM_MISUSE_BAD_FLAGS, "vmem_add_range", "victim");
}

static bool overlapping_add(struct twin_arena *t)
{
    ts_capture_misuse();
    if (vmem_add(t->vm, TS_PTR(TBASE + TQUANTA * TQ - TQ), 64 * TQ, VM_NOSLEEP) != NULL ||
        !ts_misuse_once(VMEM_MISUSE_SPAN_OVERLAP, "vmem_add", "victim"))
        return false;
    ts_capture_misuse();
    return vmem_add_range(t->vm, TBASE - TQ, (TQUANTA + 2) * TQ, VM_NOSLEEP) ==
               -VMEM_ERR_INVALID &&
           ts_misuse_once(VMEM_MISUSE_SPAN_OVERLAP, "vmem_add_range", "victim");
}

static bool wrapping_add(struct twin_arena *t)
{
    ts_capture_misuse();
    return vmem_add_range(t->vm, UINTPTR_MAX - TQ + 1, 2 * TQ, VM_NOSLEEP) == -VMEM_ERR_INVALID &&
           ts_misuse_once(VMEM_MISUSE_SPAN_WRAP, "vmem_add_range", "victim");
}

static bool empty_or_misaligned_span(struct twin_arena *t)
{
    ts_capture_misuse();
    if (vmem_add(t->vm, TS_PTR(0x10000000), 0, VM_NOSLEEP) != NULL ||
        !ts_misuse_once(VMEM_MISUSE_BAD_ARGUMENT, "vmem_add", "victim"))
        return false;
    ts_capture_misuse();
    return vmem_add_range(t->vm, 0x10000000 + TQ / 2, 64 * TQ, VM_NOSLEEP) == -VMEM_ERR_INVALID &&
           ts_misuse_once(VMEM_MISUSE_BAD_ARGUMENT, "vmem_add_range", "victim");
}

static bool destroy_busy(struct twin_arena *t)
{
    ts_capture_misuse();
    vmem_destroy(t->vm);
    return ts_misuse_once(VMEM_MISUSE_DESTROY_BUSY, "vmem_destroy", "victim");
}

static bool null_out_pointers(struct twin_arena *t)
{
    ts_capture_misuse();
    if (vmem_xalloc_addr(t->vm, 40 * TQ, 0, 0, 0, 0, 0, VM_NOSLEEP, NULL) != -VMEM_ERR_INVALID ||
        !ts_misuse_once(VMEM_MISUSE_BAD_ARGUMENT, "vmem_xalloc_addr", "victim"))
        return false;
    ts_capture_misuse();
    if (vmem_stat(t->vm, NULL) != -VMEM_ERR_INVALID ||
        !ts_misuse_once(VMEM_MISUSE_BAD_ARGUMENT, "vmem_stat", "victim"))
        return false;
    ts_capture_misuse();
    vmem_walk(t->vm, VMEM_ALLOC, NULL, NULL);
    return ts_misuse_once(VMEM_MISUSE_BAD_ARGUMENT, "vmem_walk", "victim");
}

static bool bad_init_naming_it_as_source(struct twin_arena *t)
{
    static Vmem child;
    ts_capture_misuse();
    if (vmem_init(&child, "bad-child", NULL, 0, 3, vmem_alloc, vmem_free, t->vm, 0, 0) !=
            -VMEM_ERR_INVALID ||
        !ts_misuse_once(VMEM_MISUSE_BAD_ARGUMENT, "vmem_init", NULL))
        return false;
    ts_capture_misuse();
    return vmem_init(&child, "bad-child", TS_PTR(1), TQ, TQ, vmem_alloc, vmem_free, t->vm, 0,
                     0) == -VMEM_ERR_INVALID &&
           ts_misuse_once(VMEM_MISUSE_BAD_ARGUMENT, "vmem_init", NULL);
}

static bool destroy_of_a_source(struct twin_arena *t)
{
    ts_capture_misuse();
    vmem_destroy(t->vm);
    return ts_misuse_once(VMEM_MISUSE_DESTROY_BUSY, "vmem_destroy", "victim");
}

#if !VMEM_PORT_CAN_SLEEP
/* A request the full arena cannot serve: with VM_SLEEP it would have to
 * wait, which this port cannot (reported); the same with VM_NOSLEEP is
 * its correct counterpart, failing quietly. */
static bool request_that_must_wait(struct twin_arena *t, int sleep)
{
    ts_capture_misuse();
    bool failed =
        vmem_xalloc(t->vm, TQUANTA / 2 * TQ, 0, 0, 0, NULL, NULL, sleep | VM_BESTFIT) == NULL;
    return failed && (sleep == VM_NOSLEEP ||
                      ts_misuse_once(VMEM_MISUSE_CANNOT_SLEEP, "vmem_xalloc", "victim"));
}
static bool sleep_that_must_wait(struct twin_arena *t)
{
    return request_that_must_wait(t, VM_SLEEP);
}
static bool nosleep_that_fails(struct twin_arena *t)
{
    return request_that_must_wait(t, VM_NOSLEEP);
}
#endif

/* Misuse that touches no arena at all leaves the twins alike trivially;
 * these are the rows that name one. */
static void free_of_an_unknown_address_leaves_later_placements_unchanged(void)
{
    twins_stay_identical(free_unknown, NULL, false, false);
}
static void double_free_leaves_later_placements_unchanged(void)
{
    twins_stay_identical(double_free, NULL, false, false);
}
static void free_inside_a_segment_leaves_later_placements_unchanged(void)
{
    twins_stay_identical(free_inside, NULL, false, false);
}
static void free_with_the_wrong_size_leaves_later_placements_unchanged(void)
{
    twins_stay_identical(free_wrong_size, NULL, false, false);
}
static void free_of_size_zero_or_overflowing_leaves_later_placements_unchanged(void)
{
    twins_stay_identical(free_zero_or_overflowing_size, NULL, false, false);
}
static void uncached_frees_misused_on_a_cached_arena_leave_later_placements_unchanged(void)
{
    twins_stay_identical(double_free, NULL, true, false);
    twins_stay_identical(free_inside, NULL, true, false);
    twins_stay_identical(free_unknown, NULL, true, false);
}
static void cached_double_free_leaves_later_placements_unchanged(void)
{
    twins_stay_identical(cached_double_free, NULL, true, false);
}
static void cached_free_with_another_cached_size_leaves_later_placements_unchanged(void)
{
    twins_stay_identical(cached_wrong_size, NULL, true, false);
}
static void cached_free_inside_an_object_leaves_later_placements_unchanged(void)
{
    twins_stay_identical(cached_free_inside, NULL, true, false);
}
static void xfree_of_a_cached_object_leaves_later_placements_unchanged(void)
{
    twins_stay_identical(xfree_of_a_cached_object, NULL, true, false);
}
static void zero_size_allocation_leaves_later_placements_unchanged(void)
{
    twins_stay_identical(zero_size_allocation, NULL, false, false);
}
static void size_overflow_leaves_later_placements_unchanged(void)
{
    twins_stay_identical(size_overflow, NULL, false, false);
}
static void exact_range_past_the_top_leaves_later_placements_unchanged(void)
{
    twins_stay_identical(exact_range_past_the_top, NULL, false, false);
}
static void bad_constraints_leave_later_placements_unchanged(void)
{
    twins_stay_identical(bad_constraints, NULL, false, false);
}
static void bad_flags_leave_later_placements_unchanged(void)
{
    twins_stay_identical(bad_flags, NULL, false, false);
    twins_stay_identical(bad_flags, NULL, true, false);
}
static void overlapping_add_leaves_later_placements_unchanged(void)
{
    twins_stay_identical(overlapping_add, NULL, false, false);
}
static void wrapping_add_leaves_later_placements_unchanged(void)
{
    twins_stay_identical(wrapping_add, NULL, false, false);
}
static void empty_or_misaligned_add_leaves_later_placements_unchanged(void)
{
    twins_stay_identical(empty_or_misaligned_span, NULL, false, false);
}
static void destroy_of_a_busy_arena_leaves_later_placements_unchanged(void)
{
    twins_stay_identical(destroy_busy, NULL, false, false);
    twins_stay_identical(destroy_busy, NULL, true, false);
}
static void destroy_of_a_source_leaves_later_placements_unchanged(void)
{
    twins_stay_identical(destroy_of_a_source, NULL, false, true);
    twins_stay_identical(destroy_of_a_source, NULL, true, true);
}
#if !VMEM_PORT_CAN_SLEEP
static void sleep_on_a_port_that_cannot_leaves_later_placements_unchanged(void)
{
    twins_stay_identical(sleep_that_must_wait, nosleep_that_fails, false, false);
    twins_stay_identical(sleep_that_must_wait, nosleep_that_fails, true, false);
}
#endif
static void null_out_pointers_leave_later_placements_unchanged(void)
{
    twins_stay_identical(null_out_pointers, NULL, false, false);
}
static void bad_init_naming_an_arena_as_source_leaves_it_unchanged(void)
{
    twins_stay_identical(bad_init_naming_it_as_source, NULL, false, false);
}

VTEST_SUITE(suite_misuse_twins,
            VTEST_CASE(free_of_an_unknown_address_leaves_later_placements_unchanged),
            VTEST_CASE(double_free_leaves_later_placements_unchanged),
            VTEST_CASE(free_inside_a_segment_leaves_later_placements_unchanged),
            VTEST_CASE(free_with_the_wrong_size_leaves_later_placements_unchanged),
            VTEST_CASE(free_of_size_zero_or_overflowing_leaves_later_placements_unchanged),
            VTEST_CASE(uncached_frees_misused_on_a_cached_arena_leave_later_placements_unchanged),
            VTEST_CASE(cached_double_free_leaves_later_placements_unchanged),
            VTEST_CASE(cached_free_with_another_cached_size_leaves_later_placements_unchanged),
            VTEST_CASE(cached_free_inside_an_object_leaves_later_placements_unchanged),
            VTEST_CASE(xfree_of_a_cached_object_leaves_later_placements_unchanged),
            VTEST_CASE(zero_size_allocation_leaves_later_placements_unchanged),
            VTEST_CASE(size_overflow_leaves_later_placements_unchanged),
            VTEST_CASE(exact_range_past_the_top_leaves_later_placements_unchanged),
            VTEST_CASE(bad_constraints_leave_later_placements_unchanged),
            VTEST_CASE(bad_flags_leave_later_placements_unchanged),
            VTEST_CASE(overlapping_add_leaves_later_placements_unchanged),
            VTEST_CASE(wrapping_add_leaves_later_placements_unchanged),
            VTEST_CASE(empty_or_misaligned_add_leaves_later_placements_unchanged),
            VTEST_CASE(destroy_of_a_busy_arena_leaves_later_placements_unchanged),
            VTEST_CASE(destroy_of_a_source_leaves_later_placements_unchanged),
#if !VMEM_PORT_CAN_SLEEP
            VTEST_CASE(sleep_on_a_port_that_cannot_leaves_later_placements_unchanged),
#endif
            VTEST_CASE(null_out_pointers_leave_later_placements_unchanged),
            VTEST_CASE(bad_init_naming_an_arena_as_source_leaves_it_unchanged));
