/*
 * test_model.c - randomized operation sequences checked against a reference
 * model.
 *
 * Six arenas run side by side: an ID arena whose spans start at 0, an ID
 * arena and a page arena with several spans (some added during the run, one
 * adjacent to another), and an importing chain top <- middle <- leaf. Each
 * step picks an arena and one of vmem_alloc / vmem_xalloc /
 * vmem_xalloc_addr / vmem_alloc_exact / vmem_free / vmem_xfree / vmem_add,
 * with every policy and random constraints, and now and then a deliberately
 * wrong free (which must be reported once and change nothing). The model
 * keeps, per quantum of each address range, which arena (if any) handed it
 * to the test, and checks after every step:
 *  - a new segment was entirely free in the model (no overlap with any live
 *    segment of any arena, including the other levels of the chain), lies in
 *    one span, and meets every constraint;
 *  - first-fit, end-alloc and best-fit chose the placement they define;
 *  - a failed VM_NOSLEEP request had no valid placement (brute force over the
 *    free runs of the arena and, for importers, of every arena above it);
 *  - the stats equal the model's counts, importers hold no wholly free span,
 *    no misuse was reported, and vmem_check() is clean.
 * Every 512 steps the walk of each plain arena is compared with the model
 * quantum by quantum, and vmem_contains() with the model's spans. Seeds are
 * fixed; vtest_env_random_ops() steps run per seed.
 */
#include "test_support.h"

#define PAGE ((size_t)4096)

/* ---- The arenas and the ranges they draw from ---------------------------- */

enum { ZERO_IDS, IDS, PAGES, CHAIN_TOP, CHAIN_MIDDLE, CHAIN_LEAF, ARENAS };

/* The model of one range of integers: owner[i] is 0 while quantum i is
 * free, else the index + 1 of the arena that handed it out, with
 * OWNER_START added on the first quantum of each segment. */
#define OWNER_START 0x80

struct space {
    uintptr_t base;
    size_t quantum;
    size_t units;
    uint8_t *owner;
};

static uint8_t owner_zero_ids[512], owner_ids[2000], owner_pages[1600], owner_chain[1024];
static struct space spaces[] = {
    {0, 1, 512, owner_zero_ids},
    {1000, 1, 2000, owner_ids},
    {0x10000000, PAGE, 1600, owner_pages},
    {0x40000000, PAGE, 1024, owner_chain},
};

/* Spans, in quanta from the space base. The first `initial` exist from the
 * start; the rest are added by the run, in order. */
struct span_def {
    size_t start, units;
};

struct arena_def {
    const char *name;
    size_t space;
    int source; /* arena imported from, or -1 */
    const struct span_def *spans;
    size_t span_count, initial;
};

static const struct span_def zero_spans[] = {{0, 192}, {192, 128}, {400, 112}};
static const struct span_def id_spans[] = {{0, 500}, {500, 300}, {1000, 250}, {1500, 500}};
static const struct span_def page_spans[] = {{0, 512}, {512, 256}, {1000, 150}, {1500, 100}};
static const struct span_def chain_spans[] = {{0, 1024}};

static const struct arena_def defs[ARENAS] = {
    {"model-zero-ids", 0, -1, zero_spans, 3, 1},
    {"model-ids", 1, -1, id_spans, 4, 1},
    {"model-pages", 2, -1, page_spans, 4, 1},
    {"model-chain-top", 3, -1, chain_spans, 1, 1},
    {"model-chain-middle", 3, CHAIN_TOP, NULL, 0, 0},
    {"model-chain-leaf", 3, CHAIN_MIDDLE, NULL, 0, 0},
};

/* What the model knows of each arena. */
struct arena_model {
    bool draining;        /* freeing more than allocating, until empty */
    size_t spans_present; /* defs[].spans[0 .. spans_present) are in the arena */
    size_t span_units;    /* their total, in address units */
    size_t live_units;    /* allocated by the test, in address units */
    size_t live_count;
    size_t allocs, frees;
};

static Vmem arenas[ARENAS];
static struct arena_model models[ARENAS];

/* A segment the test holds. */
struct live {
    uintptr_t addr;
    size_t asked; /* the size passed when allocating */
    size_t units; /* rounded to the quantum */
    bool xfree;   /* from an x-call or exact: freed with vmem_xfree */
};

/* Segments held per arena: lives[a][0 .. models[a].live_count). */
#define LIVE_MAX 1024
static struct live lives[ARENAS][LIVE_MAX];

/* Free ranges a request may be placed in (model runs or walked segments). */
#define CANDIDATES_MAX 4096
static uintptr_t cand_start[CANDIDATES_MAX];
static size_t cand_len[CANDIDATES_MAX];
static struct ts_segment walked[CANDIDATES_MAX];

static const int policies[] = {
    0, VM_INSTANTFIT, VM_BESTFIT, VM_FIRSTFIT, VM_NEXTFIT, VM_ENDALLOC, VM_BESTFIT | VM_ENDALLOC,
};
#define POLICY_COUNT (sizeof(policies) / sizeof(policies[0]))

/* ---- Run state and diagnostics --------------------------------------------- */

static struct {
    VtestRng rng;
    uint64_t seed;
    size_t step;
    const char *op;
    int arena;
} run;

static uint64_t below(uint64_t bound) { return vtest_rng_below(&run.rng, bound); }

static bool model_failed(const char *what, int line)
{
    vtest_puts("    model: ");
    vtest_puts(what);
    ts_note_u64(" (test_model.c line", (uint64_t)line);
    ts_note_hex(") seed", run.seed);
    ts_note_u64(" step", run.step);
    vtest_puts(" op ");
    vtest_puts(run.op != NULL ? run.op : "-");
    vtest_puts(" arena ");
    vtest_puts(run.arena >= 0 ? defs[run.arena].name : "-");
    vtest_puts("\n");
    return false;
}

#define MODEL_CHECK(cond)                                                                   \
    do {                                                                                    \
        if (!(cond))                                                                        \
            return model_failed(#cond, __LINE__);                                           \
    } while (0)

static void note_request(const struct ts_request *req, int policy, uintptr_t got)
{
    ts_note_hex("    request size", req->size);
    ts_note_hex(" align", req->align);
    ts_note_hex(" phase", req->phase);
    ts_note_hex(" nocross", req->nocross);
    ts_note_hex(" min", req->minaddr);
    ts_note_hex(" max", req->maxaddr);
    ts_note_hex(" policy", (uint64_t)policy);
    ts_note_hex(" result", got);
    vtest_puts("\n");
}

/* ---- The model's view of addresses ----------------------------------------- */

static struct space *space_of(int arena) { return &spaces[defs[arena].space]; }

static bool is_importer(int arena) { return defs[arena].source >= 0; }

/* The model knows an arena's free space exactly unless other arenas take
 * segments from it: the chain's top and middle lend spans to the level
 * below, which the model sees only through walks. */
static bool model_knows_free_space(int arena) { return arena < CHAIN_TOP; }

/* The arena that imports from `arena`, or -1. */
static int child_of(int arena)
{
    for (int a = 0; a < ARENAS; a++) {
        if (defs[a].source == arena)
            return a;
    }
    return -1;
}

static uintptr_t span_base(int arena, size_t i)
{
    return space_of(arena)->base + defs[arena].spans[i].start * space_of(arena)->quantum;
}

static size_t span_size(int arena, size_t i)
{
    return defs[arena].spans[i].units * space_of(arena)->quantum;
}

/* True when [addr, addr + units) is inside the space, and sets *index. */
static bool space_index(const struct space *sp, uintptr_t addr, size_t units, size_t *index)
{
    if (addr < sp->base || (addr - sp->base) % sp->quantum != 0)
        return false;
    size_t first = (addr - sp->base) / sp->quantum;
    size_t count = units / sp->quantum;
    if (first > sp->units || count > sp->units - first)
        return false;
    *index = first;
    return true;
}

static bool model_range_free(const struct space *sp, uintptr_t addr, size_t units)
{
    size_t first;
    if (!space_index(sp, addr, units, &first))
        return false;
    for (size_t i = 0; i < units / sp->quantum; i++) {
        if (sp->owner[first + i] != 0)
            return false;
    }
    return true;
}

/* Callers have checked the range lies in the space (model_range_free). */
static void model_mark(const struct space *sp, uintptr_t addr, size_t units, int arena)
{
    size_t first = (addr - sp->base) / sp->quantum;
    for (size_t i = 0; i < units / sp->quantum; i++)
        sp->owner[first + i] = (uint8_t)(arena + 1);
    sp->owner[first] |= OWNER_START;
}

static void model_clear(const struct space *sp, uintptr_t addr, size_t units)
{
    size_t first = (addr - sp->base) / sp->quantum;
    for (size_t i = 0; i < units / sp->quantum; i++)
        sp->owner[first + i] = 0;
}

/* Within one span of a plain arena, as the model knows its spans. */
static bool model_in_one_span(int arena, uintptr_t addr, size_t units)
{
    for (size_t i = 0; i < models[arena].spans_present; i++) {
        uintptr_t base = span_base(arena, i);
        if (addr >= base && addr - base <= span_size(arena, i) &&
            units <= span_size(arena, i) - (addr - base))
            return true;
    }
    return false;
}

/*
 * Fills cand_* with the free ranges a request to `arena` may use: for a
 * plain arena, the maximal free runs of its spans in the model; in the
 * chain, the free segments of the arena and of every arena above it (a
 * placement there can be imported). Returns the count.
 */
static size_t candidates(int arena)
{
    size_t count = 0;
    if (model_knows_free_space(arena)) {
        const struct space *sp = space_of(arena);
        for (size_t s = 0; s < models[arena].spans_present; s++) {
            size_t first = defs[arena].spans[s].start, end = first + defs[arena].spans[s].units;
            for (size_t i = first; i < end;) {
                if (sp->owner[i] != 0) {
                    i++;
                    continue;
                }
                size_t j = i;
                while (j < end && sp->owner[j] == 0)
                    j++;
                cand_start[count] = sp->base + i * sp->quantum;
                cand_len[count] = (j - i) * sp->quantum;
                count++;
                i = j;
            }
        }
        return count;
    }
    for (int level = arena; level >= 0; level = defs[level].source) {
        size_t found = ts_collect(&arenas[level], VMEM_FREE, walked, CANDIDATES_MAX);
        for (size_t i = 0; i < found && i < CANDIDATES_MAX && count < CANDIDATES_MAX; i++) {
            cand_start[count] = walked[i].addr;
            cand_len[count] = walked[i].size;
            count++;
        }
    }
    return count;
}

static bool any_placement(const struct ts_request *req, size_t count)
{
    uintptr_t addr;
    for (size_t i = 0; i < count; i++) {
        if (ts_lowest_placement(req, cand_start[i], cand_len[i], &addr))
            return true;
    }
    return false;
}

/* ---- Checks after every step ------------------------------------------------- */

/* Spans of an importer: their count and total, and whether each holds a
 * live segment. */
static bool importer_spans(int arena, size_t *count, size_t *total)
{
    static struct ts_segment spans[512], allocs[CANDIDATES_MAX];
    size_t span_count = ts_collect(&arenas[arena], VMEM_SPAN, spans, 512);
    size_t alloc_count = ts_collect(&arenas[arena], VMEM_ALLOC, allocs, CANDIDATES_MAX);
    MODEL_CHECK(span_count <= 512 && alloc_count <= CANDIDATES_MAX);
    *count = span_count;
    *total = 0;
    size_t a = 0;
    for (size_t s = 0; s < span_count; s++) {
        *total += spans[s].size;
        /* Both lists are in address order: skip allocations below this span. */
        while (a < alloc_count && allocs[a].addr < spans[s].addr)
            a++;
        MODEL_CHECK(a < alloc_count && allocs[a].addr - spans[s].addr < spans[s].size);
    }
    return true;
}

/* Spans of the chain's importers, walked once per step. */
struct chain_spans {
    size_t middle_count, middle_total, leaf_count, leaf_total;
};

static bool stats_match(int arena, const struct chain_spans *cs)
{
    const Vmem *vm = &arenas[arena];
    const struct arena_model *m = &models[arena];
    MODEL_CHECK(vmem_check(&arenas[arena], NULL) == 0);
    switch (arena) {
    case CHAIN_LEAF:
        MODEL_CHECK(vm->stat.in_use == m->live_units);
        MODEL_CHECK(vm->stat.alloc == m->allocs && vm->stat.free == m->frees);
        MODEL_CHECK(vm->stat.import == cs->leaf_total && vm->stat.total == cs->leaf_total);
        return true;
    case CHAIN_MIDDLE:
        /* The leaf's spans are segments allocated here. */
        MODEL_CHECK(vm->stat.in_use == m->live_units + cs->leaf_total);
        MODEL_CHECK(vm->stat.alloc - vm->stat.free == m->live_count + cs->leaf_count);
        MODEL_CHECK(vm->stat.import == cs->middle_total && vm->stat.total == cs->middle_total);
        return true;
    case CHAIN_TOP:
        MODEL_CHECK(vm->stat.in_use == m->live_units + cs->middle_total);
        MODEL_CHECK(vm->stat.alloc - vm->stat.free == m->live_count + cs->middle_count);
        MODEL_CHECK(vm->stat.import == 0 && vm->stat.total == m->span_units);
        return true;
    default:
        MODEL_CHECK(vm->stat.in_use == m->live_units);
        MODEL_CHECK(vm->stat.alloc == m->allocs && vm->stat.free == m->frees);
        MODEL_CHECK(vm->stat.import == 0 && vm->stat.total == m->span_units);
        MODEL_CHECK(vmem_size(&arenas[arena], VMEM_ALLOC) == m->live_units);
        MODEL_CHECK(vmem_size(&arenas[arena], VMEM_FREE) == m->span_units - m->live_units);
        return true;
    }
}

/* After a step on `arena`: it and every arena above it are right (an
 * operation on an importer can import from, or give back to, each). */
static bool step_checks(int arena)
{
    struct chain_spans cs = {0, 0, 0, 0};
    MODEL_CHECK(vtest_env_misuse_count() == 0);
    if (arena >= CHAIN_TOP &&
        (!importer_spans(CHAIN_MIDDLE, &cs.middle_count, &cs.middle_total) ||
         !importer_spans(CHAIN_LEAF, &cs.leaf_count, &cs.leaf_total)))
        return false;
    for (int level = arena; level >= 0; level = defs[level].source) {
        if (!stats_match(level, &cs))
            return false;
    }
    return true;
}

struct walk_compare {
    const struct space *sp;
    int arena;
    bool ok;
    uintptr_t bad_addr;
};

static void compare_entry(void *arg, uintptr_t addr, size_t size, int type)
{
    struct walk_compare *cmp = arg;
    size_t first;
    if (!cmp->ok)
        return;
    if (!space_index(cmp->sp, addr, size, &first) || size == 0) {
        cmp->ok = false;
    } else if (type == VMEM_FREE) {
        for (size_t i = 0; i < size / cmp->sp->quantum; i++)
            cmp->ok = cmp->ok && cmp->sp->owner[first + i] == 0;
    } else {
        /* One whole live segment of this arena, exactly. */
        uint8_t tag = (uint8_t)(cmp->arena + 1);
        cmp->ok = cmp->sp->owner[first] == (tag | OWNER_START);
        for (size_t i = 1; i < size / cmp->sp->quantum; i++)
            cmp->ok = cmp->ok && cmp->sp->owner[first + i] == tag;
        size_t next = first + size / cmp->sp->quantum;
        if (next < cmp->sp->units && cmp->sp->owner[next] == tag)
            cmp->ok = false;
    }
    if (!cmp->ok)
        cmp->bad_addr = addr;
}

/* The walk of a plain arena and the model agree quantum by quantum (the
 * walk covers the spans: stats_match checked the free + allocated sums). */
static bool walk_matches_model(int arena)
{
    struct walk_compare cmp = {space_of(arena), arena, true, 0};
    vmem_walk(&arenas[arena], VMEM_ALLOC | VMEM_FREE, compare_entry, &cmp);
    if (!cmp.ok)
        ts_note_hex("    walk and model disagree at", cmp.bad_addr);
    MODEL_CHECK(cmp.ok);
    return true;
}

/* ---- Operations ------------------------------------------------------------- */

struct request {
    struct ts_request req; /* align never 0 here */
    size_t asked;          /* size passed to the call */
    size_t call_align;     /* align passed to the call (0 stands for the quantum) */
    int policy;
};

static void random_request(int arena, bool constrained, struct request *r)
{
    const struct space *sp = space_of(arena);
    size_t q = sp->quantum;
    uint64_t pick = below(100);
    size_t units = pick < 70 ? 1 + (size_t)below(8)
                   : pick < 95 ? 1 + (size_t)below(32)
                               : 1 + (size_t)below(128);
    ts_request_init(&r->req, units * q, q);
    r->asked = units * q;
    if (q > 1 && below(2) == 0)
        r->asked -= (size_t)below(q); /* an unrounded size */
    r->call_align = below(2) == 0 ? 0 : q;
    r->policy = policies[below(POLICY_COUNT)];
    if (!constrained)
        return;
    if (below(2) == 0) {
        r->req.align = q << (1 + below(5));
        r->call_align = r->req.align;
        if (below(2) == 0)
            r->req.phase = q * (size_t)below(r->req.align / q);
    }
    if (below(10) < 3) {
        size_t nocross = q;
        while (nocross < r->req.size)
            nocross *= 2;
        r->req.nocross = nocross << below(3);
    }
    if (below(10) < 3)
        r->req.minaddr = sp->base + q * (size_t)below(sp->units);
    if (below(10) < 3) {
        uintptr_t from = r->req.minaddr != 0 ? r->req.minaddr : sp->base;
        r->req.maxaddr = from + q * (1 + (size_t)below(sp->units));
    }
}

/* True when [addr, addr + size) overlaps a span the arena below imported
 * from `arena` (that range is lent out, not free). */
static bool overlaps_child_span(int arena, uintptr_t addr, size_t size)
{
    int child = child_of(arena);
    if (child < 0)
        return false;
    size_t count = ts_collect(&arenas[child], VMEM_SPAN, walked, CANDIDATES_MAX);
    for (size_t i = 0; i < count && i < CANDIDATES_MAX; i++) {
        if (addr < walked[i].addr + walked[i].size && walked[i].addr < addr + size)
            return true;
    }
    return false;
}

static bool record_success(int arena, const struct request *r, uintptr_t addr, bool xfree)
{
    const struct space *sp = space_of(arena);
    if (!ts_placement_ok(&r->req, addr) || !model_range_free(sp, addr, r->req.size) ||
        (!is_importer(arena) && !model_in_one_span(arena, addr, r->req.size))) {
        note_request(&r->req, r->policy, addr);
        MODEL_CHECK(ts_placement_ok(&r->req, addr));
        MODEL_CHECK(model_range_free(sp, addr, r->req.size));
        MODEL_CHECK(is_importer(arena) || model_in_one_span(arena, addr, r->req.size));
    }
    MODEL_CHECK(vmem_contains(&arenas[arena], TS_PTR(addr), r->req.size));
    MODEL_CHECK(!overlaps_child_span(arena, addr, r->req.size));
    /* Policy placement is checked on plain arenas away from address 0, for
     * a quarter of the requests (it costs a scan of the arena). */
    if (model_knows_free_space(arena) && arena != ZERO_IDS && below(4) == 0) {
        size_t count = candidates(arena);
        /* The new segment is not marked yet: its run is still a free one. */
        bool chosen = ts_policy_choice_ok(&r->req, r->policy, addr, cand_start, cand_len, count);
        if (!chosen)
            note_request(&r->req, r->policy, addr);
        MODEL_CHECK(chosen);
    }
    MODEL_CHECK(models[arena].live_count < LIVE_MAX);
    model_mark(sp, addr, r->req.size, arena);
    struct live *l = &lives[arena][models[arena].live_count];
    l->addr = addr;
    l->asked = r->asked;
    l->units = r->req.size;
    l->xfree = xfree;
    models[arena].live_units += r->req.size;
    models[arena].live_count++;
    models[arena].allocs++;
    return true;
}

static bool check_failure(int arena, const struct request *r)
{
    size_t count = candidates(arena);
    if (any_placement(&r->req, count)) {
        note_request(&r->req, r->policy, 0);
        MODEL_CHECK(!"a VM_NOSLEEP request failed although a placement existed");
    }
    return true;
}

static bool op_alloc(int arena)
{
    struct request r;
    run.op = "vmem_alloc";
    random_request(arena, false, &r);
    r.req.not_zero = true;
    void *got = vmem_alloc(&arenas[arena], r.asked, r.policy | VM_NOSLEEP);
    if (got == NULL)
        return check_failure(arena, &r);
    return record_success(arena, &r, TS_ADDR(got), false);
}

static bool op_xalloc(int arena)
{
    struct request r;
    run.op = "vmem_xalloc";
    random_request(arena, true, &r);
    r.req.not_zero = true;
    void *got = vmem_xalloc(&arenas[arena], r.asked, r.call_align, r.req.phase, r.req.nocross,
                            TS_PTR(r.req.minaddr), TS_PTR(r.req.maxaddr), r.policy | VM_NOSLEEP);
    if (got == NULL)
        return check_failure(arena, &r);
    return record_success(arena, &r, TS_ADDR(got), true);
}

static bool op_xalloc_addr(int arena)
{
    struct request r;
    uintptr_t addr = 0;
    run.op = "vmem_xalloc_addr";
    random_request(arena, true, &r);
    int status = vmem_xalloc_addr(&arenas[arena], r.asked, r.call_align, r.req.phase,
                                  r.req.nocross, r.req.minaddr, r.req.maxaddr,
                                  r.policy | VM_NOSLEEP, &addr);
    if (status != 0) {
        MODEL_CHECK(status < 0);
        return check_failure(arena, &r);
    }
    return record_success(arena, &r, addr, true);
}

static bool op_alloc_exact(int arena)
{
    struct request r;
    const struct space *sp = space_of(arena);
    run.op = "vmem_alloc_exact";
    random_request(arena, false, &r);
    r.req.size = sp->quantum * (1 + (size_t)below(8));
    r.asked = r.req.size;
    /* Aim inside a span most of the time, anywhere in the space otherwise. */
    uintptr_t addr;
    if (model_knows_free_space(arena) && below(4) != 0) {
        size_t s = (size_t)below(models[arena].spans_present);
        addr = span_base(arena, s) + sp->quantum * (size_t)below(defs[arena].spans[s].units);
    } else {
        addr = sp->base + sp->quantum * (size_t)below(sp->units);
    }
    r.req.minaddr = addr; /* the only acceptable placement */
    r.req.maxaddr = addr + r.req.size;
    size_t count = candidates(arena);
    bool possible = any_placement(&r.req, count);
    int status = vmem_alloc_exact(&arenas[arena], addr, r.req.size, VM_NOSLEEP);
    if (status == 0) {
        MODEL_CHECK(possible);
        return record_success(arena, &r, addr, true);
    }
    MODEL_CHECK(status < 0);
    if (possible) {
        note_request(&r.req, 0, addr);
        MODEL_CHECK(!"vmem_alloc_exact failed on a free (or importable) range");
    }
    /* Whether a taken range is also reported as misuse is left open. */
    ts_capture_misuse();
    return true;
}

/* Frees a random segment the test holds in `arena`, if any. */
static void op_free(int arena)
{
    struct arena_model *m = &models[arena];
    run.op = "free";
    if (m->live_count == 0)
        return;
    size_t victim = (size_t)below(m->live_count);
    struct live *l = &lives[arena][victim];
    /* Either the size asked for or the rounded size frees the segment. */
    size_t size = below(2) == 0 ? l->asked : l->units;
    if (l->xfree) {
        run.op = "vmem_xfree";
        vmem_xfree(&arenas[arena], TS_PTR(l->addr), size);
    } else {
        run.op = "vmem_free";
        vmem_free(&arenas[arena], TS_PTR(l->addr), size);
    }
    model_clear(space_of(arena), l->addr, l->units);
    m->live_units -= l->units;
    m->frees++;
    m->live_count--;
    struct live *last = &lives[arena][m->live_count];
    l->addr = last->addr;
    l->asked = last->asked;
    l->units = last->units;
    l->xfree = last->xfree;
}

/*
 * A deliberately wrong free: of a wrong size, inside a live segment, of a
 * free address, or past every span. It must be reported once, as the right
 * kind, and change nothing (step_checks then compares the arena with the
 * model as usual).
 */
static bool op_bad_free(int arena)
{
    struct arena_model *m = &models[arena];
    const struct space *sp = space_of(arena);
    uintptr_t addr;
    size_t size;
    VmemMisuseKind kind;
    uint64_t pick = below(4);
    run.op = "bad free";
    if (pick < 2 && m->live_count > 0) {
        const struct live *l = &lives[arena][below(m->live_count)];
        if (pick == 0 || l->units == sp->quantum) {
            addr = l->addr;
            size = l->units + sp->quantum;
            kind = VMEM_MISUSE_FREE_WRONG_SIZE;
        } else {
            addr = l->addr + sp->quantum * (1 + (size_t)below(l->units / sp->quantum - 1));
            size = sp->quantum;
            kind = VMEM_MISUSE_FREE_INSIDE;
        }
    } else if (pick == 2) {
        /* A quantum of one of the arena's own free segments. */
        size_t count;
        if (model_knows_free_space(arena)) {
            count = candidates(arena);
        } else {
            count = ts_collect(&arenas[arena], VMEM_FREE, walked, CANDIDATES_MAX);
            for (size_t i = 0; i < count && i < CANDIDATES_MAX; i++) {
                cand_start[i] = walked[i].addr;
                cand_len[i] = walked[i].size;
            }
        }
        if (count == 0 || count > CANDIDATES_MAX)
            return true;
        size_t c = (size_t)below(count);
        addr = cand_start[c] + sp->quantum * (size_t)below(cand_len[c] / sp->quantum);
        size = sp->quantum;
        kind = VMEM_MISUSE_DOUBLE_FREE;
    } else {
        addr = sp->base + sp->quantum * (sp->units + (size_t)below(64));
        size = sp->quantum;
        kind = VMEM_MISUSE_FREE_UNKNOWN;
    }
    bool through_xfree = below(2) == 0;
    const char *call = through_xfree ? "vmem_xfree" : "vmem_free";
    ts_capture_misuse();
    if (through_xfree)
        vmem_xfree(&arenas[arena], TS_PTR(addr), size);
    else
        vmem_free(&arenas[arena], TS_PTR(addr), size);
    MODEL_CHECK(ts_misuse_once(kind, call, defs[arena].name));
    MODEL_CHECK(ts_misuse_echoes(addr, size));
    ts_capture_misuse();
    return true;
}

/* vmem_contains agrees with the spans the model knows, for random ranges. */
static bool contains_matches_model(int arena)
{
    const struct space *sp = space_of(arena);
    for (int i = 0; i < 8; i++) {
        uintptr_t addr = sp->base + sp->quantum * (size_t)below(sp->units);
        size_t size = sp->quantum * (1 + (size_t)below(64));
        MODEL_CHECK(vmem_contains(&arenas[arena], TS_PTR(addr), size) ==
                    model_in_one_span(arena, addr, size));
    }
    return true;
}

static bool op_add(int arena)
{
    run.op = "vmem_add";
    struct arena_model *m = &models[arena];
    if (is_importer(arena) || m->spans_present == defs[arena].span_count)
        return op_alloc(arena);
    uintptr_t base = span_base(arena, m->spans_present);
    size_t size = span_size(arena, m->spans_present);
    if (base != 0 && below(2) == 0)
        MODEL_CHECK(vmem_add(&arenas[arena], TS_PTR(base), size, VM_NOSLEEP) == TS_PTR(base));
    else
        MODEL_CHECK(vmem_add_range(&arenas[arena], base, size, VM_NOSLEEP) == 0);
    m->spans_present++;
    m->span_units += size;
    return true;
}

/*
 * Each arena alternates between filling (70% allocations) until a plain
 * allocation fails, and draining (70% frees) until it is empty, so runs see
 * empty, fragmented and full arenas alike.
 */
static bool one_step(void)
{
    int arena = (int)below(ARENAS);
    struct arena_model *m = &models[arena];
    run.arena = arena;
    run.op = NULL;
    if (m->draining ? m->live_count == 0 || below(1000) == 0 : below(3000) == 0)
        m->draining = !m->draining;
    uint64_t pick = below(1000);
    if (pick < (m->draining ? 700u : 300u)) {
        op_free(arena);
        return step_checks(arena);
    }
    pick = below(1000);
    size_t allocs_before = m->allocs;
    bool ok;
    if (pick < 500)
        ok = op_alloc(arena);
    else if (pick < 750)
        ok = op_xalloc(arena);
    else if (pick < 850)
        ok = op_xalloc_addr(arena);
    else if (pick < 980)
        ok = op_alloc_exact(arena);
    else if (pick < 990)
        ok = op_bad_free(arena);
    else
        ok = op_add(arena);
    if (pick < 500 && m->allocs == allocs_before)
        m->draining = true; /* full enough: a plain allocation failed */
    return ok && step_checks(arena);
}

/* ---- Setup and teardown ------------------------------------------------------ */

/* Read through a volatile so the compiler keeps this a plain loop and does
 * not call memset, which a freestanding kernel need not have. */
static volatile uint8_t zero_byte;

static bool model_setup(void)
{
    for (size_t s = 0; s < sizeof(spaces) / sizeof(spaces[0]); s++) {
        for (size_t i = 0; i < spaces[s].units; i++)
            spaces[s].owner[i] = zero_byte;
    }
    for (int a = 0; a < ARENAS; a++) {
        const struct arena_def *def = &defs[a];
        struct arena_model *m = &models[a];
        m->spans_present = m->span_units = m->live_units = m->live_count = 0;
        m->allocs = m->frees = 0;
        m->draining = false;
        const struct space *sp = &spaces[def->space];
        VmemAlloc *afunc = def->source >= 0 ? vmem_alloc : NULL;
        VmemFree *ffunc = def->source >= 0 ? vmem_free : NULL;
        Vmem *source = def->source >= 0 ? &arenas[def->source] : NULL;
        /* A first span at 0 is added with vmem_add_range (vmem_init takes a
         * pointer); other first spans come with vmem_init. */
        bool in_init = def->initial > 0 && span_base(a, 0) != 0;
        MODEL_CHECK(vmem_init(&arenas[a], def->name, in_init ? TS_PTR(span_base(a, 0)) : NULL,
                              in_init ? span_size(a, 0) : 0, sp->quantum, afunc, ffunc, source, 0,
                              0) == 0);
        for (size_t s = 0; s < def->initial; s++) {
            if (s > 0 || !in_init)
                MODEL_CHECK(vmem_add_range(&arenas[a], span_base(a, s), span_size(a, s),
                                           VM_NOSLEEP) == 0);
            m->spans_present++;
            m->span_units += span_size(a, s);
        }
    }
    return true;
}

static bool model_teardown(void)
{
    for (int a = 0; a < ARENAS; a++) {
        run.arena = a;
        while (models[a].live_count > 0)
            op_free(a);
    }
    run.op = "teardown";
    for (int a = 0; a < ARENAS; a++) {
        run.arena = a;
        MODEL_CHECK(arenas[a].stat.in_use == 0);
        MODEL_CHECK(vmem_check(&arenas[a], NULL) == 0);
    }
    MODEL_CHECK(arenas[CHAIN_LEAF].stat.total == 0 && arenas[CHAIN_MIDDLE].stat.total == 0);
    for (int a = ARENAS - 1; a >= 0; a--)
        vmem_destroy(&arenas[a]);
    MODEL_CHECK(vtest_env_misuse_count() == 0);
    return true;
}

static bool run_seed(uint64_t seed)
{
    vtest_rng_seed(&run.rng, seed);
    run.seed = seed;
    run.step = 0;
    run.arena = -1;
    run.op = "setup";
    ts_capture_misuse();
    if (!model_setup())
        return false;
    size_t steps = vtest_env_random_ops();
    for (run.step = 0; run.step < steps; run.step++) {
        if (!one_step())
            return false;
        if (run.step % 512 == 511) {
            run.op = "walk comparison";
            for (int a = ZERO_IDS; a <= PAGES; a++) {
                run.arena = a;
                if (!walk_matches_model(a) || !contains_matches_model(a))
                    return false;
            }
        }
    }
    return model_teardown();
}

/* ---- Tests ------------------------------------------------------------------- */

static void random_operations_agree_with_the_model_seed_1(void) { VT_ASSERT(run_seed(1)); }
static void random_operations_agree_with_the_model_seed_2(void) { VT_ASSERT(run_seed(0xdecafbad)); }
static void random_operations_agree_with_the_model_seed_3(void) { VT_ASSERT(run_seed(20010625)); }
static void random_operations_agree_with_the_model_seed_4(void) { VT_ASSERT(run_seed(0x5eed5eed)); }

VTEST_SUITE(suite_model,
            VTEST_CASE(random_operations_agree_with_the_model_seed_1),
            VTEST_CASE(random_operations_agree_with_the_model_seed_2),
            VTEST_CASE(random_operations_agree_with_the_model_seed_3),
            VTEST_CASE(random_operations_agree_with_the_model_seed_4));
