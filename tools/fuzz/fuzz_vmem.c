/*
 * fuzz_vmem.c - the libFuzzer target of libvmem: bytes become a sequence of
 * operations on four arenas, and a reference model checks every step.
 *
 * Owned by the reliability layer (tools/reliability.mk: `make fuzz`,
 * `make check-fuzz`). It exists because hand-written tests only visit the
 * states their author thought of; this target lets the fuzzer steer into
 * the others and holds the library to its documented promises in each.
 *
 * The arenas:
 *   A0, A1  plain arenas (vmem_init or vmem_create), spans added by hand;
 *           A1 often has quantum caches (qcache_max up to 20 quanta);
 *   S       a plain arena that is also the source of
 *   C       an importing arena: afunc = vmem_alloc / ffunc = vmem_free, or a
 *           foreign wrapper pair (which the library cannot see through).
 * Each arena lives in a window of at most MAX_UNITS quanta (at address 0,
 * in the middle, or ending exactly at 2^64); C shares S's window.
 *
 * The model keeps, per arena, the spans added and the live allocations.
 * After every operation (check_all):
 *   - vmem_check() finds nothing wrong;
 *   - vmem_walk() shows exactly the model's allocations (for S: plus C's
 *     imported spans), and exactly its spans (for C: the added ones plus
 *     imported spans, each an allocation of S and, when C gives spans
 *     back, none of them wholly free);
 *   - vmem_stat() (in_use, total, import, alloc and free counts) and
 *     vmem_size() are exact, and equal Vmem.stat when there are no caches;
 *     with caches, each cached allocation lies inside an allocated segment
 *     of the arena layer (a slab, or a direct serve) and every other one
 *     is a segment of its own;
 *   - a new allocation overlaps nothing, lies in one span, and meets its
 *     align / phase / nocross / minaddr / maxaddr constraints; where the
 *     policy fixes the answer (unconstrained first-fit, next-fit, best-fit,
 *     VM_ENDALLOC) it is the answer;
 *   - completeness: when a valid VM_NOSLEEP request fails on an arena that
 *     does not import, a brute-force search finds no placement in the
 *     arena layer as the call left it (with caches, slabs the caches still
 *     hold after reaping are not free space: that is the slab design);
 *   - misuse (bad flags or constraints, double free, wrong size, free
 *     inside or outside, overlapping or wrapping add, busy destroy, a
 *     destroyed arena) is reported exactly once, with a fitting kind, and
 *     leaves every arena exactly as it was; valid calls report nothing.
 * And after each input, once its arenas are destroyed and the unused tag
 * pages released, the library holds no page but vmem_create() storage:
 * no hash table, cache structure or tag page outlives its arenas.
 * Any discrepancy prints the recent operations and traps, so libFuzzer
 * records the input.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmem.h"
#include "vmem_config.h"
#include "vmem_posix.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_UNITS 8192   /* model units per window */
#define MAX_ALLOCS 192   /* live allocations tracked per arena */
#define MAX_SPANS 24     /* spans added per arena */
#define MAX_ENTRIES 1024 /* vmem_walk entries collected */
#define MAX_STEPS 1500
#define TOP_WINDOW_UNITS 2048

enum { A0, A1, AS, AC, NARENAS };
static const char *const arena_names[NARENAS] = {"fuzz-a0", "fuzz-a1", "fuzz-src", "fuzz-imp"};

typedef struct {
    uintptr_t addr;
    size_t size; /* rounded to the quantum */
    bool x;      /* from the xalloc family: freed with vmem_xfree */
} Alloc;

typedef struct {
    uintptr_t base;
    size_t size;
} Range;

typedef struct {
    bool live;
    bool created;  /* storage from vmem_create() */
    Vmem storage;  /* vmem_init() storage */
    Vmem *vm;
    uintptr_t win; /* window base */
    size_t q;
    size_t nq;     /* window length in quanta */
    int import;    /* 0: none, 1: vmem_alloc/vmem_free, 2: foreign wrappers */
    size_t qmax;   /* qcache_max given at creation */
    uintptr_t rotor;
    Alloc allocs[MAX_ALLOCS]; /* sorted by address */
    size_t nallocs;
    Range spans[MAX_SPANS];   /* added spans, sorted by address */
    size_t nspans;
    size_t nalloc_ok, nfree_ok;
} Arena;

static Arena arenas[NARENAS];
/* Arenas from vmem_create() alive now, and the most ever alive at once:
 * what the library's storage for them has had to grow to. */
static size_t created_live, created_peak;

/* Misuse expectations: a bit per VmemMisuseKind. */
#define K(kind) (1u << (kind))
/* A stale arena that was never initialised, for misuse of vmem_init. */
static Vmem scratch;

/* ---- Failure reporting ---------------------------------------------------- */

#define TRACE_LINES 48
static char trace[TRACE_LINES][160];
static size_t trace_next;
static size_t step_no;

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(trace[trace_next % TRACE_LINES], sizeof(trace[0]), fmt, ap);
    va_end(ap);
    trace_next++;
    if (getenv("FUZZ_VMEM_TRACE") != NULL)
        fprintf(stderr, "  %s\n", trace[(trace_next - 1) % TRACE_LINES]);
}

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void fail(const char *fmt, ...)
{
    fprintf(stderr, "\nfuzz_vmem: DISCREPANCY at step %zu: ", step_no);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nrecent operations (oldest first):\n");
    size_t first = trace_next > TRACE_LINES ? trace_next - TRACE_LINES : 0;
    for (size_t i = first; i < trace_next; i++)
        fprintf(stderr, "  %s\n", trace[i % TRACE_LINES]);
    for (int i = 0; i < NARENAS; i++)
        if (arenas[i].live) {
            fprintf(stderr, "arena %s (q %#zx, window %#lx + %zu quanta):\n", arena_names[i],
                    arenas[i].q, (unsigned long)arenas[i].win, arenas[i].nq);
            fflush(stderr);
            vmem_dump(arenas[i].vm);
            fflush(stdout);
        }
    __builtin_trap();
}

/* ---- Misuse recording ----------------------------------------------------- */

static size_t misuse_count;
static VmemMisuse misuse_last;

static void record_misuse(const VmemMisuse *report)
{
    misuse_count++;
    misuse_last = *report;
}

/* ---- Input ---------------------------------------------------------------- */

typedef struct {
    const uint8_t *p;
    size_t n;
} Input;

static unsigned u8(Input *in)
{
    if (in->n == 0)
        return 0;
    in->n--;
    return *in->p++;
}

static unsigned u16(Input *in) { return u8(in) | (u8(in) << 8); }

/* ---- Small arithmetic ----------------------------------------------------- */

static size_t round_q(size_t size, size_t q) { return (size + (q - 1)) & ~(q - 1); }
static bool pow2(uintptr_t x) { return x != 0 && (x & (x - 1)) == 0; }
static uintptr_t win_last(const Arena *a) { return a->win + (a->nq * a->q - 1); }

/* May vmem_alloc() of this (rounded) size come from a quantum cache? One
 * cache per multiple of the quantum up to qcache_max, at most 16. */
static bool maybe_cached(const Arena *a, size_t size, bool x)
{
    size_t n = a->qmax / a->q;
    if (n > 16)
        n = 16;
    return !x && size <= n * a->q;
}

/* Misuse kinds a bad free may be reported as on an arena with caches: the
 * cache layer sees a different picture from the arena layer (an object in
 * a magazine is free to the caller but inside an allocated slab). */
#define FREE_KINDS                                                                      \
    (K(VMEM_MISUSE_FREE_UNKNOWN) | K(VMEM_MISUSE_DOUBLE_FREE) | K(VMEM_MISUSE_FREE_INSIDE) | \
     K(VMEM_MISUSE_FREE_WRONG_SIZE) | K(VMEM_MISUSE_FREE_WRONG_CALL))

/* ---- Observing the library ------------------------------------------------ */

typedef struct {
    uintptr_t addr;
    size_t size;
    int type;
} Entry;

typedef struct {
    Entry e[MAX_ENTRIES];
    size_t n;
    bool overflow;
} Walk;

static void walk_cb(void *arg, uintptr_t addr, size_t size, int type)
{
    Walk *w = arg;
    if (w->n == MAX_ENTRIES) {
        w->overflow = true;
        return;
    }
    w->e[w->n].addr = addr;
    w->e[w->n].size = size;
    w->e[w->n].type = type;
    w->n++;
}

static void walk_arena(const Arena *a, Walk *w)
{
    w->n = 0;
    w->overflow = false;
    vmem_walk(a->vm, VMEM_ALLOC | VMEM_FREE | VMEM_SPAN, walk_cb, w);
    if (w->overflow)
        fail("walk of %s overflowed", a->vm->name);
}

/* Imported spans of C: its walked spans that the model did not add. */
static size_t imported_spans(const Arena *c, const Walk *w, Range *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < w->n; i++) {
        if (w->e[i].type != VMEM_SPAN)
            continue;
        bool added = false;
        for (size_t j = 0; j < c->nspans; j++)
            if (c->spans[j].base == w->e[i].addr && c->spans[j].size == w->e[i].size)
                added = true;
        if (!added && n < cap) {
            out[n].base = w->e[i].addr;
            out[n].size = w->e[i].size;
            n++;
        }
    }
    return n;
}

/* A fingerprint of everything observable about an arena. */
typedef struct {
    VmemStat stat, user;
    size_t n;
    uint64_t hash;
} Snapshot;

static void snapshot(const Arena *a, Snapshot *s)
{
    static Walk w;
    memset(s, 0, sizeof(*s));
    if (!a->live)
        return;
    walk_arena(a, &w);
    if (vmem_stat(a->vm, &s->user) != 0)
        fail("vmem_stat(%s) failed", arena_names[(int)(a - arenas)]);
    uint64_t h = 1469598103934665603ULL;
    /* With quantum caches the caller sees spans and vmem_stat(); the slabs
     * underneath may come and go (vmem_destroy drains the caches before it
     * finds the arena busy, for one). */
    bool cached = a->qmax != 0;
    if (!cached) {
        s->stat = a->vm->stat;
        s->n = w.n;
    }
    for (size_t i = 0; i < w.n; i++) {
        if (cached && w.e[i].type != VMEM_SPAN)
            continue;
        h = (h ^ w.e[i].addr) * 1099511628211ULL;
        h = (h ^ w.e[i].size) * 1099511628211ULL;
        h = (h ^ (uint64_t)w.e[i].type) * 1099511628211ULL;
    }
    s->hash = h;
}

static void snapshot_all(Snapshot s[NARENAS])
{
    for (int i = 0; i < NARENAS; i++)
        snapshot(&arenas[i], &s[i]);
}

static void expect_unchanged(const Snapshot before[NARENAS], const char *what)
{
    Snapshot after[NARENAS];
    snapshot_all(after);
    for (int i = 0; i < NARENAS; i++)
        if (memcmp(&before[i], &after[i], sizeof(after[i])) != 0)
            fail("%s changed arena %s: walk %zu entries (hash %#llx) -> %zu (%#llx); "
                 "arena layer in_use %#zx -> %#zx, allocs %zu -> %zu; caller's view "
                 "in_use %#zx -> %#zx, allocs %zu -> %zu",
                 what, arena_names[i], before[i].n, (unsigned long long)before[i].hash,
                 after[i].n, (unsigned long long)after[i].hash, before[i].stat.in_use,
                 after[i].stat.in_use, before[i].stat.alloc, after[i].stat.alloc,
                 before[i].user.in_use, after[i].user.in_use, before[i].user.alloc,
                 after[i].user.alloc);
}


static void expect_no_misuse(const char *what)
{
    if (misuse_count != 0)
        fail("%s: unexpected misuse report \"%s\" from %s: %s", what,
             vmem_misuse_name(misuse_last.kind), misuse_last.call, misuse_last.reason);
}

static void expect_misuse(const char *what, unsigned kinds, const Snapshot before[NARENAS])
{
    if (misuse_count != 1)
        fail("%s: %zu misuse reports, expected exactly one", what, misuse_count);
    if (!(kinds & K(misuse_last.kind)))
        fail("%s: misuse kind \"%s\" (%d) not among the expected (mask %#x); reason: %s", what,
             vmem_misuse_name(misuse_last.kind), (int)misuse_last.kind, kinds,
             misuse_last.reason);
    if (misuse_last.call == NULL || misuse_last.reason == NULL || misuse_last.arena == NULL ||
        misuse_last.reason[0] == '\0')
        fail("%s: misuse report lacks call, arena or reason", what);
    expect_unchanged(before, what);
}

/* ---- The model's map of one arena ----------------------------------------- */

enum { U_NONE, U_FREE, U_ALLOC };

typedef struct {
    uint8_t state[MAX_UNITS];
    uint16_t span[MAX_UNITS];    /* span ordinal, for units in a span */
    uint32_t run_end[MAX_UNITS]; /* free units: last unit of their free run */
} Map;

static Map map;

static size_t unit_of(const Arena *a, uintptr_t addr) { return (size_t)((addr - a->win) / a->q); }

/* Builds the map from a walk: the arena layer's view. With user_view,
 * allocated units are the model's allocations instead (with quantum
 * caches, a slab is allocated in the arena layer but mostly free to the
 * caller). */
static void build_map(const Arena *a, const Walk *w, bool user_view)
{
    memset(map.state, U_NONE, a->nq);
    uint16_t span_no = 0;
    for (size_t i = 0; i < w->n; i++) {
        const Entry *e = &w->e[i];
        size_t u = unit_of(a, e->addr), k = e->size / a->q;
        if (e->type == VMEM_SPAN) {
            span_no++;
            continue;
        }
        for (size_t j = 0; j < k; j++) {
            map.state[u + j] = e->type == VMEM_FREE ? U_FREE : U_ALLOC;
            map.span[u + j] = span_no;
        }
    }
    if (user_view && a->qmax != 0) {
        for (size_t u = 0; u < a->nq; u++)
            if (map.state[u] == U_ALLOC)
                map.state[u] = U_FREE;
        for (size_t j = 0; j < a->nallocs; j++) {
            size_t u = unit_of(a, a->allocs[j].addr);
            for (size_t k = 0; k < a->allocs[j].size / a->q; k++)
                map.state[u + k] = U_ALLOC;
        }
    }
    for (size_t u = a->nq; u-- > 0;) {
        if (map.state[u] != U_FREE)
            continue;
        if (u + 1 < a->nq && map.state[u + 1] == U_FREE && map.span[u + 1] == map.span[u])
            map.run_end[u] = map.run_end[u + 1];
        else
            map.run_end[u] = (uint32_t)u;
    }
}

/* A request as the model states it: size in bytes (rounded), real align,
 * nocross 0 for none, inclusive bounds. */
typedef struct {
    size_t size;
    uintptr_t align, phase, nocross, min, max_last;
} Req;

static bool meets(const Req *r, uintptr_t addr)
{
    uintptr_t last = addr + (r->size - 1);
    if (last < addr || addr < r->min || last > r->max_last)
        return false;
    if (((addr - r->phase) & (r->align - 1)) != 0)
        return false;
    if (r->nocross != 0 && ((addr ^ last) & ~(r->nocross - 1)) != 0)
        return false;
    return true;
}

static bool fits_at(const Arena *a, const Req *r, size_t u)
{
    size_t k = r->size / a->q;
    if (k == 0 || k > a->nq || u > a->nq - k || map.state[u] != U_FREE ||
        map.run_end[u] < u + k - 1)
        return false;
    return meets(r, a->win + u * a->q);
}

/* Lowest (or highest) unit in [from, to] where the request fits. */
static bool scan(const Arena *a, const Req *r, size_t from, size_t to, bool top, size_t *out)
{
    if (r->size / a->q > a->nq || from > to)
        return false;
    if (top) {
        for (size_t u = to + 1; u-- > from;)
            if (fits_at(a, r, u)) {
                *out = u;
                return true;
            }
    } else {
        for (size_t u = from; u <= to; u++)
            if (fits_at(a, r, u)) {
                *out = u;
                return true;
            }
    }
    return false;
}

/* Best fit: the smallest free run (then the lowest) with a placement. */
static bool best_fit(const Arena *a, const Req *r, bool top, size_t *out)
{
    size_t best_len = SIZE_MAX;
    bool found = false;
    for (size_t u = 0; u < a->nq;) {
        if (map.state[u] != U_FREE) {
            u++;
            continue;
        }
        size_t end = map.run_end[u], len = end - u + 1, at;
        if (len < best_len && scan(a, r, u, end, top, &at)) {
            best_len = len;
            *out = at;
            found = true;
        }
        u = end + 1;
    }
    return found;
}

/* ---- Model upkeep ---------------------------------------------------------- */

static void model_add_alloc(Arena *a, uintptr_t addr, size_t size, bool x)
{
    if (a->nallocs == MAX_ALLOCS)
        fail("model allocation table full");
    size_t i = a->nallocs;
    while (i > 0 && a->allocs[i - 1].addr > addr) {
        a->allocs[i] = a->allocs[i - 1];
        i--;
    }
    a->allocs[i].addr = addr;
    a->allocs[i].size = size;
    a->allocs[i].x = x;
    a->nallocs++;
    a->nalloc_ok++;
}

static void model_remove_alloc(Arena *a, size_t i)
{
    memmove(&a->allocs[i], &a->allocs[i + 1], (a->nallocs - i - 1) * sizeof(Alloc));
    a->nallocs--;
    a->nfree_ok++;
}

static void model_add_span(Arena *a, uintptr_t base, size_t size)
{
    size_t i = a->nspans;
    while (i > 0 && a->spans[i - 1].base > base) {
        a->spans[i] = a->spans[i - 1];
        i--;
    }
    a->spans[i].base = base;
    a->spans[i].size = size;
    a->nspans++;
}

/* ---- The check after every step ------------------------------------------- */

static Walk walks[NARENAS];

static void check_arena(int i)
{
    Arena *a = &arenas[i];
    Vmem *vm = a->vm;
    VmemCheckReport rep;
    if (vmem_check(vm, &rep) != 0)
        fail("vmem_check(%s): %s at %#lx size %#zx", arena_names[i], rep.reason,
             (unsigned long)rep.addr, rep.size);
    Walk *w = &walks[i];
    walk_arena(a, w);

    /* Expected allocations: the model's, and for S each span C imported. */
    static Alloc expect[2 * MAX_ALLOCS + MAX_ENTRIES];
    size_t nexpect = 0;
    for (size_t j = 0; j < a->nallocs; j++)
        if (!maybe_cached(a, a->allocs[j].size, a->allocs[j].x) || a->qmax == 0)
            expect[nexpect++] = a->allocs[j];
    if (i == AS && arenas[AC].live) {
        static Range imp[MAX_ENTRIES];
        size_t nimp = imported_spans(&arenas[AC], &walks[AC], imp, MAX_ENTRIES);
        for (size_t j = 0; j < nimp; j++) {
            Alloc e = {imp[j].base, round_q(imp[j].size, a->q), false};
            size_t k = nexpect++;
            while (k > 0 && expect[k - 1].addr > e.addr) {
                expect[k] = expect[k - 1];
                k--;
            }
            expect[k] = e;
        }
    }

    size_t nalloc = 0, nspan = 0, in_use = 0, total = 0, added_total = 0;
    size_t arena_in_use = 0, nsegs_alloc = 0;
    const Entry *span = NULL;
    for (size_t j = 0; j < w->n; j++) {
        const Entry *e = &w->e[j];
        if (e->addr < a->win || e->size == 0 || e->size % a->q != 0 || e->addr % a->q != 0 ||
            e->size - 1 > win_last(a) - e->addr)
            fail("%s: walk entry [%#lx, +%#zx) type %d outside the window or misaligned",
                 arena_names[i], (unsigned long)e->addr, e->size, e->type);
        if (e->type == VMEM_SPAN) {
            span = e;
            total += e->size;
            nspan++;
            continue;
        }
        if (span == NULL || e->addr < span->addr ||
            e->addr + (e->size - 1) > span->addr + (span->size - 1))
            fail("%s: segment [%#lx, +%#zx) outside its span", arena_names[i],
                 (unsigned long)e->addr, e->size);
        if (e->type != VMEM_ALLOC)
            continue;
        arena_in_use += e->size;
        nsegs_alloc++;
        if (a->qmax != 0 && (nalloc >= nexpect || expect[nalloc].addr != e->addr ||
                             expect[nalloc].size != e->size))
            continue; /* a slab, or a cached-size allocation served directly */
        if (nalloc >= nexpect || expect[nalloc].addr != e->addr ||
            expect[nalloc].size != e->size)
            fail("%s: allocated segment [%#lx, +%#zx) is not the model's allocation #%zu "
                 "[%#lx, +%#zx)",
                 arena_names[i], (unsigned long)e->addr, e->size, nalloc,
                 nalloc < nexpect ? (unsigned long)expect[nalloc].addr : 0UL,
                 nalloc < nexpect ? expect[nalloc].size : (size_t)0);
        nalloc++;
    }
    for (size_t j = 0; j < a->nallocs; j++)
        in_use += a->allocs[j].size;
    if (i == AS)
        in_use = arena_in_use;
    if (nalloc != nexpect)
        fail("%s: %zu allocated segments, the model has %zu", arena_names[i], nalloc, nexpect);

    /* Cached allocations lie inside allocated segments of the arena layer. */
    for (size_t j = 0; a->qmax != 0 && j < a->nallocs; j++) {
        const Alloc *al = &a->allocs[j];
        bool inside = false;
        for (size_t k = 0; k < w->n && !inside; k++)
            inside = w->e[k].type == VMEM_ALLOC && al->addr >= w->e[k].addr &&
                     al->addr - w->e[k].addr <= w->e[k].size - al->size;
        if (!inside)
            fail("%s: live allocation [%#lx, +%#zx) is in no allocated segment", arena_names[i],
                 (unsigned long)al->addr, al->size);
    }

    /* Spans: exactly the added ones, or for C the added ones plus imports. */
    for (size_t j = 0; j < a->nspans; j++) {
        bool seen = false;
        for (size_t k = 0; k < w->n; k++)
            if (w->e[k].type == VMEM_SPAN && w->e[k].addr == a->spans[j].base &&
                w->e[k].size == a->spans[j].size)
                seen = true;
        if (!seen)
            fail("%s: added span [%#lx, +%#zx) missing", arena_names[i],
                 (unsigned long)a->spans[j].base, a->spans[j].size);
        added_total += a->spans[j].size;
    }
    if (a->import == 0 && nspan != a->nspans)
        fail("%s: %zu spans, the model added %zu", arena_names[i], nspan, a->nspans);
    if (a->import != 0) {
        /* Every imported span is in use: a wholly free one goes home. */
        const Entry *sp = NULL;
        bool used = true, imported = false;
        for (size_t j = 0; j <= w->n; j++) {
            if (j == w->n || w->e[j].type == VMEM_SPAN) {
                if (sp != NULL && imported && !used)
                    fail("%s: imported span [%#lx, +%#zx) is wholly free but was kept",
                         arena_names[i], (unsigned long)sp->addr, sp->size);
                if (j == w->n)
                    break;
                sp = &w->e[j];
                used = false;
                imported = true;
                for (size_t k = 0; k < a->nspans; k++)
                    if (a->spans[k].base == sp->addr && a->spans[k].size == sp->size)
                        imported = false;
            } else if (w->e[j].type == VMEM_ALLOC) {
                used = true;
            }
        }
    }

    /* Stats, exact: the caller's view, and the arena layer's. */
    VmemStat user;
    if (vmem_stat(vm, &user) != 0)
        fail("vmem_stat(%s) failed", arena_names[i]);
    const VmemStat *st = &user;
    if (a->qmax == 0 && memcmp(&user, &vm->stat, sizeof(user)) != 0)
        fail("%s: vmem_stat differs from Vmem.stat without caches", arena_names[i]);
    if (vm->stat.in_use != arena_in_use || vm->stat.total != total ||
        vm->stat.alloc - vm->stat.free != nsegs_alloc)
        fail("%s: arena-layer stats (in_use %#zx, total %#zx, %zu-%zu) differ from its "
             "segments (%#zx, %#zx, %zu)",
             arena_names[i], vm->stat.in_use, vm->stat.total, vm->stat.alloc, vm->stat.free,
             arena_in_use, total, nsegs_alloc);
    if (st->in_use != in_use || st->total != total)
        fail("%s: stat in_use %#zx total %#zx, segments say %#zx / %#zx", arena_names[i],
             st->in_use, st->total, in_use, total);
    if (st->import != total - added_total)
        fail("%s: stat.import %#zx, imported spans hold %#zx", arena_names[i], st->import,
             total - added_total);
    if (st->alloc - st->free != (i == AS ? nsegs_alloc : a->nallocs))
        fail("%s: stat alloc %zu - free %zu != %zu live allocations", arena_names[i],
             st->alloc, st->free, i == AS ? nsegs_alloc : a->nallocs);
    if (i != AS && (st->alloc != a->nalloc_ok || st->free != a->nfree_ok))
        fail("%s: stat alloc/free %zu/%zu, the model counted %zu/%zu", arena_names[i],
             st->alloc, st->free, a->nalloc_ok, a->nfree_ok);
    if (vmem_size(vm, VMEM_ALLOC) != in_use || vmem_size(vm, VMEM_FREE) != total - in_use ||
        vmem_size(vm, VMEM_ALLOC | VMEM_FREE) != total)
        fail("%s: vmem_size disagrees with the segments", arena_names[i]);
}

static void check_all(void)
{
    /* C first: S's expectations include C's imported spans. */
    static const int order[NARENAS] = {AC, A0, A1, AS};
    for (int j = 0; j < NARENAS; j++)
        if (arenas[order[j]].live)
            check_arena(order[j]);
    expect_no_misuse("check");
}

/* ---- Arena set-up ---------------------------------------------------------- */

/* A foreign import pair: the library cannot tell it is vmem underneath, so
 * it imports unconstrained spans through it. Like any careful callback it
 * refuses sizes its source cannot round (the library hands it whatever the
 * importing arena's own quantum allows; vmem_alloc on S would report that
 * as misuse). */
static void *foreign_alloc(Vmem *src, size_t size, int flags)
{
    if (size > SIZE_MAX - (src->quantum - 1))
        return NULL;
    return vmem_alloc(src, size, flags);
}
static void foreign_free(Vmem *src, void *addr, size_t size) { vmem_free(src, addr, size); }

static const size_t quanta[4] = {1, 8, 16, 4096};

static void arena_init(int i, Input *in)
{
    Arena *a = &arenas[i];
    unsigned cfg = u8(in), where = u8(in);
    memset(a->allocs, 0, sizeof(a->allocs));
    a->nallocs = a->nspans = 0;
    a->nalloc_ok = a->nfree_ok = 0;
    a->rotor = 0;
    a->import = 0;
    a->qmax = 0;
    uintptr_t base = 0;
    size_t size = 0;
    VmemAlloc *afunc = NULL;
    VmemFree *ffunc = NULL;
    Vmem *source = NULL;

    if (i == AC) {
        const Arena *s = &arenas[AS];
        size_t q = s->q;
        switch (cfg % 3) {
        case 0: q = s->q >= 4 ? s->q / 4 : s->q; break;
        case 1: break;
        default: q = s->q * 2; break;
        }
        a->q = q;
        a->win = s->win;
        a->nq = s->nq * s->q / q;
        a->import = (cfg / 3) % 2 + 1;
        afunc = a->import == 1 ? vmem_alloc : foreign_alloc;
        ffunc = a->import == 1 ? vmem_free : foreign_free;
        source = s->vm;
    } else {
        a->q = quanta[cfg % 4];
        a->nq = i == AS ? 2048 : 4096;
        switch ((cfg / 4) % 3) {
        case 0: a->win = 0; break;
        case 1: a->win = (uintptr_t)0x100000 * (1 + where % 64); break;
        default: a->win = (uintptr_t)0 - (uintptr_t)TOP_WINDOW_UNITS * a->q;
                 if (a->nq > TOP_WINDOW_UNITS) a->nq = TOP_WINDOW_UNITS;
                 break;
        }
        if ((cfg / 16) % 2) { /* an initial span */
            size_t u = (where * 7) % (a->nq / 2), k = 1 + (where * 13) % (a->nq / 2);
            base = a->win + u * a->q;
            size = k * a->q;
        }
    }
    if (i == A1 && where % 4 != 0)
        a->qmax = a->q * (1 + (where / 4) % 20);
    a->created = i != AC && (cfg & 0x80) != 0;
    int flags = (cfg & 0x40) ? VM_NOSLEEP : 0;
    misuse_count = 0;
    if (a->created) {
        a->vm = vmem_create(arena_names[i], (void *)base, size, a->q, afunc, ffunc, source,
                            a->qmax, flags);
        if (a->vm == NULL)
            fail("vmem_create(%s) failed", arena_names[i]);
        if (++created_live > created_peak)
            created_peak = created_live;
    } else {
        a->vm = &a->storage;
        if (vmem_init(a->vm, arena_names[i], (void *)base, size, a->q, afunc, ffunc, source,
                      a->qmax, flags) != 0)
            fail("vmem_init(%s) failed", arena_names[i]);
    }
    expect_no_misuse("init");
    a->live = true;
    if (size != 0)
        model_add_span(a, base, size);
    note("init %s q=%#zx win=%#lx nq=%zu span=[%#lx,+%#zx) import=%d created=%d qcache_max=%#zx",
         arena_names[i], a->q, (unsigned long)a->win, a->nq, (unsigned long)base, size,
         a->import, a->created, a->qmax);
}

/* Destroys an arena whose model is empty; reports it if not clean. */
static void arena_destroy(int i)
{
    Arena *a = &arenas[i];
    misuse_count = 0;
    vmem_destroy(a->vm);
    expect_no_misuse("destroy");
    a->live = false;
    if (a->created)
        created_live--;
    note("destroy %s", arena_names[i]);
}

/* ---- Requests: generation and the documented validity rules ----------- */

static const int good_policies[] = {
    0, VM_INSTANTFIT, VM_BESTFIT, VM_FIRSTFIT, VM_NEXTFIT, VM_ENDALLOC, VM_ENDALLOC | VM_BESTFIT,
};
static const int bad_policies[] = {
    VM_SLEEP | VM_NOSLEEP, VM_BESTFIT | VM_FIRSTFIT, VM_INSTANTFIT | VM_NEXTFIT,
    VM_ENDALLOC | VM_NEXTFIT, VM_ENDALLOC | VM_INSTANTFIT, 1 << 12,
};

static int gen_flags(Input *in)
{
    unsigned b = u8(in);
    if (b % 32 == 31)
        return bad_policies[(b / 32) % (sizeof(bad_policies) / sizeof(bad_policies[0]))];
    int flags = good_policies[b % 7];
    return (b & 0x80) ? flags | VM_NOSLEEP : flags;
}

/* Which misuse kinds the flags would be reported as (0: valid). */
static unsigned flag_misuse(int flags)
{
    int policy = flags & (VM_BESTFIT | VM_INSTANTFIT | VM_NEXTFIT | VM_FIRSTFIT);
    int known = VM_BESTFIT | VM_INSTANTFIT | VM_NEXTFIT | VM_FIRSTFIT | VM_SLEEP | VM_NOSLEEP |
                VM_BOOTSTRAP | VM_ENDALLOC;
    if ((flags & ~known) || ((flags & VM_SLEEP) && (flags & VM_NOSLEEP)) ||
        (policy & (policy - 1)) ||
        ((flags & VM_ENDALLOC) && (policy & (VM_NEXTFIT | VM_INSTANTFIT))))
        return K(VMEM_MISUSE_BAD_FLAGS);
    return 0;
}

/* A size in bytes: mostly small, sometimes large, rarely absurd. */
static size_t gen_size(const Arena *a, Input *in)
{
    unsigned b = u8(in), slack = u8(in);
    size_t units;
    switch (b >> 5) {
    case 0: case 1: case 2: units = 1 + (b & 3); break;
    case 3: case 4: units = 1 + (b & 31); break;
    case 5: units = 1 + ((size_t)(b & 31) << 5) + slack; break;
    case 6: units = a->nq / 4 + (b & 31) * a->nq / 32; break;
    default:
        switch (b & 7) {
        case 0: return 0;
        case 1: return SIZE_MAX - slack;
        case 2: return ((size_t)1 << 40) + slack * a->q;
        default: units = a->nq + (b & 7); break;
        }
    }
    size_t size = units * a->q;
    if (a->q > 1)
        size -= slack % a->q; /* rounds up to the same size */
    return size;
}

typedef struct {
    size_t size;
    size_t align, phase, nocross;
    uintptr_t min, max; /* max 0: none */
} Params;

static uintptr_t gen_addr_in_window(const Arena *a, Input *in)
{
    unsigned v = u16(in);
    size_t u = v % (a->nq + 1);
    return a->win + u * a->q;
}

static void gen_params(const Arena *a, Input *in, Params *p)
{
    size_t q = a->q;
    p->size = gen_size(a, in);
    unsigned b = u8(in), c = u8(in), d = u8(in);
    size_t rounded = p->size <= SIZE_MAX - (q - 1) ? round_q(p->size, q) : 0;
    /* align */
    switch (b & 7) {
    case 0: case 1: p->align = 0; break;
    case 7: p->align = (b & 8) ? 3 * q : (q > 1 ? q / 2 : 6); break;
    default: p->align = q << ((b >> 3) & 7); break;
    }
    /* phase */
    size_t a_eff = p->align != 0 ? p->align : q;
    if (c % 16 == 15)
        p->phase = (c & 16) ? a_eff : (q > 1 ? q / 2 : a_eff + 1);
    else if (c % 3 == 0)
        p->phase = ((c / 3) * q) % a_eff;
    else
        p->phase = 0;
    /* nocross */
    switch (d & 7) {
    case 0: case 1: case 2: p->nocross = 0; break;
    case 7: p->nocross = (d & 8) ? 5 * q : (rounded > q ? rounded / 2 : q / 2); break;
    default: {
        size_t nc = q;
        while (nc < rounded && nc < ((size_t)1 << 62))
            nc <<= 1;
        p->nocross = nc << ((d >> 3) & 3);
        break;
    }
    }
    /* minaddr / maxaddr */
    unsigned e = u8(in);
    p->min = (e & 3) == 0 ? gen_addr_in_window(a, in) : 0;
    p->max = (e & 12) == 0 ? gen_addr_in_window(a, in) : 0;
    if ((e & 0xf0) == 0xf0 && q > 1)
        p->min += 1; /* misaligned */
}

/* Misuse kinds the request would be reported as (0: valid), following the
 * rules in vmem.h: size, align, phase, nocross, minaddr, maxaddr. */
static unsigned request_misuse(const Arena *a, const Params *p, bool max_given)
{
    size_t q = a->q;
    unsigned kinds = 0;
    if (p->size == 0)
        kinds |= K(VMEM_MISUSE_BAD_ARGUMENT);
    if (p->size > SIZE_MAX - (q - 1)) {
        kinds |= K(VMEM_MISUSE_SIZE_OVERFLOW);
        return kinds; /* nothing else can be judged */
    }
    size_t size = round_q(p->size, q);
    size_t a_eff = p->align != 0 ? p->align : q;
    if (p->align != 0 && (!pow2(p->align) || p->align % q != 0))
        kinds |= K(VMEM_MISUSE_BAD_CONSTRAINT);
    if (p->phase % q != 0 || p->phase >= a_eff)
        kinds |= K(VMEM_MISUSE_BAD_CONSTRAINT);
    if (p->nocross != 0 && (!pow2(p->nocross) || p->nocross % q != 0 || p->nocross < size))
        kinds |= K(VMEM_MISUSE_BAD_CONSTRAINT);
    if (p->min % q != 0 || (max_given && p->max % q != 0))
        kinds |= K(VMEM_MISUSE_BAD_CONSTRAINT);
    if (max_given && p->min >= p->max)
        kinds |= K(VMEM_MISUSE_BAD_CONSTRAINT);
    /* A phase that puts every placement across a nocross boundary is not
     * misuse in vmem.h: such a request simply has no placement, which the
     * completeness check confirms. */
    if (size == 0)
        kinds |= K(VMEM_MISUSE_BAD_ARGUMENT);
    return kinds;
}

/* ---- Allocation ------------------------------------------------------------ */

enum { CALL_ALLOC, CALL_XALLOC, CALL_XALLOC_ADDR, CALL_EXACT };
static const char *const call_names[] = {"vmem_alloc", "vmem_xalloc", "vmem_xalloc_addr",
                                         "vmem_alloc_exact"};

static void do_alloc(int i, int call, Input *in)
{
    Arena *a = &arenas[i];
    /* The model holds MAX_ALLOCS live allocations an arena: with that many,
     * an allocation is skipped until the input frees some. */
    if (a->nallocs == MAX_ALLOCS)
        return;
    Params p;
    int flags = gen_flags(in);
    if (call == CALL_ALLOC) {
        memset(&p, 0, sizeof(p));
        p.size = gen_size(a, in);
    } else if (call == CALL_EXACT) {
        memset(&p, 0, sizeof(p));
        p.size = gen_size(a, in);
        p.min = gen_addr_in_window(a, in);
        if ((u8(in) & 15) == 15 && a->q > 1)
            p.min += a->q / 2;
    } else {
        gen_params(a, in, &p);
    }
    bool max_given = p.max != 0 && call != CALL_EXACT;
    unsigned kinds = flag_misuse(flags) | request_misuse(a, &p, max_given);
    size_t q = a->q;
    size_t rounded = kinds == 0 ? round_q(p.size, q) : 0;
    if (call == CALL_EXACT && kinds == 0 && rounded - 1 > UINTPTR_MAX - p.min)
        kinds |= K(VMEM_MISUSE_SIZE_OVERFLOW);

    note("%s %s size=%#zx align=%#zx phase=%#zx nocross=%#zx min=%#lx max=%#lx flags=%#x%s",
         call_names[call], arena_names[i], p.size, p.align, p.phase, p.nocross,
         (unsigned long)p.min, (unsigned long)p.max, (unsigned)flags, kinds ? " (misuse)" : "");

    Snapshot before[NARENAS];
    snapshot_all(before);
    static Walk w;
    if (kinds == 0 && a->import == 0) {
        walk_arena(a, &w);
        build_map(a, &w, true);
    }

    misuse_count = 0;
    uintptr_t addr = 0;
    bool ok;
    switch (call) {
    case CALL_ALLOC:
        addr = (uintptr_t)vmem_alloc(a->vm, p.size, flags);
        ok = addr != 0;
        break;
    case CALL_XALLOC:
        addr = (uintptr_t)vmem_xalloc(a->vm, p.size, p.align, p.phase, p.nocross, (void *)p.min,
                                      (void *)p.max, flags);
        ok = addr != 0;
        break;
    case CALL_XALLOC_ADDR:
        addr = 0x5a5a;
        ok = vmem_xalloc_addr(a->vm, p.size, p.align, p.phase, p.nocross, p.min, p.max, flags,
                              &addr) == 0;
        break;
    default: {
        int r = vmem_alloc_exact(a->vm, p.min, p.size, flags);
        ok = r == 0;
        addr = p.min;
        if (!ok && r != -VMEM_ERR_NO_MEM && r != -VMEM_ERR_INVALID)
            fail("vmem_alloc_exact returned %d", r);
        break;
    }
    }

    if (kinds != 0) {
        if (ok)
            fail("%s succeeded (%#lx) on a request that is misuse", call_names[call],
                 (unsigned long)addr);
        expect_misuse(call_names[call], kinds, before);
        misuse_count = 0;
        return;
    }
    expect_no_misuse(call_names[call]);

    /* The request as the model states it. */
    Req r;
    r.size = rounded;
    r.align = p.align != 0 ? p.align : q;
    r.phase = p.phase;
    r.nocross = p.nocross;
    r.min = p.min;
    r.max_last = max_given ? p.max - 1 : UINTPTR_MAX;
    if (call == CALL_ALLOC || call == CALL_XALLOC) {
        if (r.min == 0)
            r.min = 1; /* the void * calls never hand out 0 */
    }
    if (call == CALL_EXACT)
        r.max_last = p.min + (rounded - 1);
    bool top = (flags & VM_ENDALLOC) != 0;
    bool unconstrained = r.align == q && r.phase == 0 && r.nocross == 0 && r.min <= 1 &&
                         r.max_last == UINTPTR_MAX;

    if (!ok) {
        if (a->import != 0)
            return; /* completeness across imports is not modelled */
        walk_arena(a, &w); /* the arena layer as the call left it */
        build_map(a, &w, false);
        size_t u;
        if (r.min <= r.max_last && scan(a, &r, 0, a->nq - 1, false, &u))
            fail("%s failed, but [%#lx, +%#zx) was free and meets every constraint",
                 call_names[call], (unsigned long)(a->win + u * q), rounded);
        return;
    }

    note("  -> %#lx", (unsigned long)addr);
    if (!meets(&r, addr))
        fail("%s returned %#lx, which breaks a constraint", call_names[call],
             (unsigned long)addr);
    if (addr < a->win || addr > win_last(a) || rounded - 1 > win_last(a) - addr)
        fail("%s returned %#lx, outside the arena's window", call_names[call],
             (unsigned long)addr);
    if (a->import == 0) {
        size_t u = unit_of(a, addr);
        if (addr % q != 0 || !fits_at(a, &r, u))
            fail("%s returned [%#lx, +%#zx), which was not free in one span",
                 call_names[call], (unsigned long)addr, rounded);
        /* Where the policy fixes the answer, it must be the answer. */
        size_t want = SIZE_MAX;
        int policy = call == CALL_EXACT ? VM_FIRSTFIT
                                        : flags & (VM_BESTFIT | VM_NEXTFIT | VM_FIRSTFIT);
        if ((unconstrained || call == CALL_EXACT) && a->qmax == 0) {
            if (policy == VM_FIRSTFIT && !top)
                scan(a, &r, 0, a->nq - 1, false, &want);
            else if (policy == 0 && top)
                scan(a, &r, 0, a->nq - 1, true, &want);
            else if (policy == VM_BESTFIT)
                best_fit(a, &r, top, &want);
            else if (policy == VM_NEXTFIT) {
                /* The first placement at or after the rotor, else wrap. */
                bool found = false;
                if (a->rotor > r.min && a->rotor >= a->win && a->rotor <= win_last(a))
                    found = scan(a, &r, unit_of(a, a->rotor), a->nq - 1, false, &want);
                if (!found)
                    scan(a, &r, 0, a->nq - 1, false, &want);
            }
        }
        if (want != SIZE_MAX && want != u)
            fail("%s with flags %#x placed at %#lx; the policy's answer is %#lx",
                 call_names[call], (unsigned)flags, (unsigned long)addr,
                 (unsigned long)(a->win + want * q));
    }
    if ((flags & VM_NEXTFIT) && call != CALL_EXACT)
        a->rotor = addr + rounded;
    model_add_alloc(a, addr, rounded, call != CALL_ALLOC);
}

/* ---- Free ------------------------------------------------------------------ */

/* Frees (addr, size) from arena i through vmem_free or vmem_xfree, with the
 * outcome the model predicts: a free, or one misuse report of the right
 * kind and nothing changed. */
static void do_free_at(int i, uintptr_t addr, size_t size, bool x)
{
    Arena *a = &arenas[i];
    size_t q = a->q;
    unsigned kind = 0;
    size_t idx = SIZE_MAX;
    for (size_t j = 0; j < a->nallocs; j++) {
        const Alloc *al = &a->allocs[j];
        if (al->addr == addr)
            idx = j;
        else if (addr > al->addr && addr - al->addr < al->size)
            kind = K(VMEM_MISUSE_FREE_INSIDE);
    }
    if (size == 0 || size > SIZE_MAX - (q - 1))
        kind = K(VMEM_MISUSE_FREE_WRONG_SIZE);
    else if (idx != SIZE_MAX && round_q(size, q) != a->allocs[idx].size)
        kind = K(VMEM_MISUSE_FREE_WRONG_SIZE);
    else if (idx == SIZE_MAX && kind == 0) {
        /* In a span (free space) or nowhere? For S, C's imports are
         * allocated too: inside one is FREE_INSIDE, at its start the wrong
         * size or a free of C's span, both misuse here. */
        const Walk *w = &walks[i];
        kind = K(VMEM_MISUSE_FREE_UNKNOWN);
        for (size_t j = 0; j < w->n; j++) {
            const Entry *e = &w->e[j];
            if (addr < e->addr || addr - e->addr >= e->size)
                continue;
            if (e->type == VMEM_FREE)
                kind = K(VMEM_MISUSE_DOUBLE_FREE);
            else if (e->type == VMEM_ALLOC)
                kind = addr == e->addr ? 0 : K(VMEM_MISUSE_FREE_INSIDE);
        }
        if (kind == 0)
            return; /* S's segment holding C's span: not ours to free */
    } else if (idx != SIZE_MAX && a->allocs[idx].x != x) {
        return; /* the wrong call: misuse or not, depending on the caches */
    }
    if (kind != 0 && a->qmax != 0)
        kind = FREE_KINDS;
    const char *call = x ? "vmem_xfree" : "vmem_free";
    note("%s %s addr=%#lx size=%#zx%s", call, arena_names[i], (unsigned long)addr, size,
         kind ? " (misuse)" : "");
    Snapshot before[NARENAS];
    snapshot_all(before);
    misuse_count = 0;
    if (x)
        vmem_xfree(a->vm, (void *)addr, size);
    else
        vmem_free(a->vm, (void *)addr, size);
    if (kind != 0) {
        expect_misuse(call, kind, before);
        misuse_count = 0;
        return;
    }
    expect_no_misuse(call);
    model_remove_alloc(a, idx);
}

static uintptr_t recent_freed[16];
static size_t recent_freed_size[16];
static unsigned recent_next;

static void do_free(int i, Input *in)
{
    Arena *a = &arenas[i];
    if (a->nallocs == 0)
        return;
    unsigned b = u8(in), slack = u8(in);
    const Alloc *al = &a->allocs[b % a->nallocs];
    uintptr_t addr = al->addr;
    size_t size = al->size;
    bool x = al->x;
    recent_freed[recent_next % 16] = addr;
    recent_freed_size[recent_next % 16] = size;
    recent_next++;
    do_free_at(i, addr, a->q > 1 ? size - slack % a->q : size, x);
}

/* Deliberate misuse of free: double free, wrong size, inside, outside, the
 * wrong arena. The model decides what each turns out to be. */
static void do_bad_free(int i, Input *in)
{
    Arena *a = &arenas[i];
    unsigned b = u8(in), c = u8(in);
    size_t q = a->q;
    switch (b % 6) {
    case 0: /* double free of something freed recently */
        if (recent_next == 0)
            return;
        do_free_at(i, recent_freed[c % 16], recent_freed_size[c % 16], (b & 64) != 0);
        return;
    case 1: { /* wrong size */
        if (a->nallocs == 0)
            return;
        const Alloc *al = &a->allocs[c % a->nallocs];
        size_t size = (b & 64) ? al->size + q * (1 + (c & 3)) : (b & 128) ? 0 : al->size - q;
        do_free_at(i, al->addr, size, al->x);
        return;
    }
    case 2: { /* inside */
        if (a->nallocs == 0)
            return;
        const Alloc *al = &a->allocs[c % a->nallocs];
        uintptr_t off = (b & 64) && q > 1 ? 1 : q * (1 + (c & 7));
        if (off >= al->size)
            off = al->size > 1 ? al->size - 1 : 0;
        if (off == 0)
            return;
        do_free_at(i, al->addr + off, al->size, al->x);
        return;
    }
    case 3: /* anywhere in the window */
        do_free_at(i, gen_addr_in_window(a, in), q * (1 + (c & 3)), (b & 64) != 0);
        return;
    case 4: /* far outside */
        do_free_at(i, a->win - q * (1 + c), q, (b & 64) != 0);
        return;
    default: { /* another arena's allocation */
        int j = (int)(c % NARENAS);
        if (j == i || !arenas[j].live || arenas[j].nallocs == 0)
            return;
        const Alloc *al = &arenas[j].allocs[b % arenas[j].nallocs];
        if (al->addr < a->win || al->addr > win_last(a) || al->size % q != 0)
            return;
        do_free_at(i, al->addr, al->size, al->x);
        return;
    }
    }
}

/* ---- Spans ------------------------------------------------------------------ */

static void do_add(int i, Input *in)
{
    Arena *a = &arenas[i];
    unsigned b = u8(in), c = u8(in);
    uintptr_t base = gen_addr_in_window(a, in);
    size_t q = a->q;
    size_t size = q * (1 + (c % 64) * (1 + (b & 3) * 8));
    if ((b & 0x70) == 0x70 && q > 1)
        base += q / 2;
    if ((b & 0x70) == 0x60)
        size = 0;
    if ((b & 0x70) == 0x50) { /* wraps past the top */
        base = (uintptr_t)0 - q * (1 + (c & 3));
        size = q * (2 + (c & 3));
    }
    int flags = (b & 0x80) ? VM_NOSLEEP : 0;
    if ((b & 0x0c) == 0x0c && (c & 1))
        flags = VM_SLEEP | VM_NOSLEEP;
    bool range_call = base == 0 || (c & 0x80);

    unsigned kinds = 0;
    if ((flags & VM_SLEEP) && (flags & VM_NOSLEEP))
        kinds |= K(VMEM_MISUSE_BAD_FLAGS);
    if (size == 0 || base % q != 0 || size % q != 0)
        kinds |= K(VMEM_MISUSE_BAD_ARGUMENT);
    else if (size - 1 > UINTPTR_MAX - base)
        kinds |= K(VMEM_MISUSE_SPAN_WRAP);
    else if (base < a->win || base > win_last(a) || size - 1 > win_last(a) - base)
        return; /* valid but outside the model's window */
    else {
        uintptr_t last = base + (size - 1);
        const Walk *w = &walks[i];
        for (size_t j = 0; j < w->n; j++)
            if (w->e[j].type == VMEM_SPAN && base <= w->e[j].addr + (w->e[j].size - 1) &&
                w->e[j].addr <= last)
                kinds |= K(VMEM_MISUSE_SPAN_OVERLAP);
    }
    if (kinds == 0 && a->nspans == MAX_SPANS)
        return;
    const char *call = range_call ? "vmem_add_range" : "vmem_add";
    note("%s %s base=%#lx size=%#zx flags=%#x%s", call, arena_names[i], (unsigned long)base,
         size, (unsigned)flags, kinds ? " (misuse)" : "");
    Snapshot before[NARENAS];
    snapshot_all(before);
    misuse_count = 0;
    bool ok;
    if (range_call)
        ok = vmem_add_range(a->vm, base, size, flags) == 0;
    else
        ok = vmem_add(a->vm, (void *)base, size, flags) == (void *)base;
    if (kinds != 0) {
        if (ok)
            fail("%s succeeded on misuse", call);
        expect_misuse(call, kinds, before);
        misuse_count = 0;
        return;
    }
    expect_no_misuse(call);
    if (!ok)
        fail("%s of a free range failed", call);
    model_add_span(a, base, size);
}

/* ---- Queries ---------------------------------------------------------------- */

static void do_contains(int i, Input *in)
{
    Arena *a = &arenas[i];
    uintptr_t addr = gen_addr_in_window(a, in);
    size_t size = a->q * (u8(in) % 8);
    const Walk *w = &walks[i];
    size_t len = size != 0 ? size : 1;
    bool want = false;
    for (size_t j = 0; j < w->n; j++)
        if (w->e[j].type == VMEM_SPAN && addr >= w->e[j].addr &&
            addr - w->e[j].addr < w->e[j].size && len - 1 <= w->e[j].size - 1 - (addr - w->e[j].addr))
            want = true;
    misuse_count = 0;
    bool got = vmem_contains(a->vm, (void *)addr, size);
    expect_no_misuse("vmem_contains");
    if (got != want)
        fail("vmem_contains(%s, %#lx, %#zx) = %d, the spans say %d", arena_names[i],
             (unsigned long)addr, size, got, want);
}

/* ---- Destroy, re-init, and misuse of arenas --------------------------------- */

static void free_all(int i)
{
    Arena *a = &arenas[i];
    while (a->nallocs > 0) {
        const Alloc *al = &a->allocs[a->nallocs - 1];
        do_free_at(i, al->addr, al->size, al->x);
    }
}

static bool busy(int i)
{
    if (arenas[i].nallocs != 0)
        return true;
    if (i == AS && arenas[AC].live && arenas[AC].vm->stat.import != 0)
        return true;
    return false;
}

static void do_destroy(int i, Input *in)
{
    unsigned b = u8(in);
    if (i == AS && !busy(AS) && arenas[AC].live && busy(AC))
        i = AC; /* S goes only after C, which is busy: try C */
    Arena *a = &arenas[i];
    if (busy(i)) {
        note("vmem_destroy %s (busy: misuse)", arena_names[i]);
        Snapshot before[NARENAS];
        snapshot_all(before);
        misuse_count = 0;
        vmem_destroy(a->vm);
        expect_misuse("vmem_destroy", K(VMEM_MISUSE_DESTROY_BUSY), before);
        misuse_count = 0;
        return;
    }
    if (i == AS && arenas[AC].live) {
        arena_destroy(AC); /* C depends on S */
    }
    arena_destroy(i);
    if ((b & 7) == 7 && !a->created) {
        /* A call on the destroyed arena. */
        note("vmem_alloc on destroyed %s", arena_names[i]);
        misuse_count = 0;
        void *p = vmem_alloc(&a->storage, a->q, VM_NOSLEEP);
        if (p != NULL)
            fail("vmem_alloc on a destroyed arena succeeded");
        if (misuse_count != 1 || misuse_last.kind != VMEM_MISUSE_NOT_ARENA)
            fail("vmem_alloc on a destroyed arena: %zu reports, last kind %d", misuse_count,
                 (int)misuse_last.kind);
        misuse_count = 0;
    }
    arena_init(i, in);
    if (i == AS)
        arena_init(AC, in);
}

static void do_bad_init(Input *in)
{
    unsigned b = u8(in);
    static const size_t bad_quanta[] = {0, 3, 12, 4097};
    size_t q = 16;
    uintptr_t base = 0x1000;
    size_t size = 0x1000;
    VmemAlloc *afunc = NULL;
    VmemFree *ffunc = NULL;
    Vmem *src = NULL;
    unsigned kinds = K(VMEM_MISUSE_BAD_ARGUMENT);
    switch (b % 6) {
    case 0: q = bad_quanta[(b / 8) % 4]; break;
    case 1: base = 0x1008; break;
    case 2: base = (uintptr_t)0 - 0x100; kinds = K(VMEM_MISUSE_SPAN_WRAP); break;
    case 3: afunc = vmem_alloc; break; /* no source */
    case 4: afunc = vmem_alloc; ffunc = vmem_free; src = &scratch; /* itself */ break;
    default: ffunc = vmem_free; break; /* give-back without import */
    }
    note("vmem_init (bad, case %u)", b % 6);
    misuse_count = 0;
    int r = vmem_init(&scratch, "scratch", (void *)base, size, q, afunc, ffunc, src, 0, 0);
    if (r != -VMEM_ERR_INVALID)
        fail("bad vmem_init returned %d", r);
    if (misuse_count != 1 || !(kinds & K(misuse_last.kind)))
        fail("bad vmem_init: %zu reports, last kind %d", misuse_count, (int)misuse_last.kind);
    misuse_count = 0;
    void *p = vmem_alloc(&scratch, 16, VM_NOSLEEP);
    if (p != NULL || misuse_count != 1 || misuse_last.kind != VMEM_MISUSE_NOT_ARENA)
        fail("arena storage after a failed vmem_init is usable (%zu reports)", misuse_count);
    misuse_count = 0;
}

/* ---- The driver --------------------------------------------------------------- */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    vmem_bootstrap();
    vmem_posix_set_misuse_handler(record_misuse);
    return 0;
}

/* With every arena destroyed, the only pages the library may keep are
 * those of vmem_create() storage, which it keeps for reuse and grows a
 * page at a time, only when every slot is taken: exactly enough for the
 * most arenas ever created at once. Anything else is a leak that a long
 * fuzzing run would show only as a slowly growing process. */
static void expect_no_pages_kept(void)
{
    vmem_release_pages();
    size_t arenas_per_page = VMEM_PAGE_SIZE / sizeof(Vmem);
    size_t storage_pages = (created_peak + arenas_per_page - 1) / arenas_per_page;
    size_t out = vmem_posix_pages_outstanding();
    if (out != storage_pages)
        fail("%zu pages out with every arena destroyed; vmem_create() storage needs %zu", out,
             storage_pages);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Input in = {data, size};
    trace_next = 0;
    step_no = 0;
    recent_next = 0;
    misuse_count = 0;
    arena_init(A0, &in);
    arena_init(A1, &in);
    arena_init(AS, &in);
    arena_init(AC, &in);
    check_all();

    while (in.n > 0 && step_no < MAX_STEPS) {
        step_no++;
        unsigned op = u8(&in);
        int i = (int)(op & 3);
        switch (op >> 2) {
        case 0: case 1: case 2: case 3: case 4: case 5: case 6:
            do_alloc(i, CALL_ALLOC, &in);
            break;
        case 7: case 8: case 9: case 10: case 11: case 12: case 13:
            do_alloc(i, CALL_XALLOC, &in);
            break;
        case 14: case 15: case 16: case 17: case 18:
            do_alloc(i, CALL_XALLOC_ADDR, &in);
            break;
        case 19: case 20: case 21:
            do_alloc(i, CALL_EXACT, &in);
            break;
        case 22: case 23: case 24: case 25: case 26: case 27: case 28: case 29: case 30:
        case 31: case 32: case 33: case 34: case 35: case 36: case 37: case 38:
            do_free(i, &in);
            break;
        case 39: case 40: case 41: case 42: case 43: case 44:
            do_bad_free(i, &in);
            break;
        case 45: case 46: case 47: case 48: case 49: case 50:
            do_add(i, &in);
            break;
        case 51: case 52:
            do_contains(i, &in);
            break;
        case 53: case 54: case 55:
            do_destroy(i, &in);
            break;
        case 56:
            do_bad_init(&in);
            break;
        default:
            free_all(i);
            break;
        }
        check_all();
    }

    /* Tear everything down: every free and destroy must be clean. */
    step_no++;
    for (int i = 0; i < NARENAS; i++)
        if (arenas[i].live)
            free_all(i);
    check_all();
    if (arenas[AC].live && arenas[AC].vm->stat.import != 0)
        fail("%s holds imported spans with nothing allocated", arena_names[AC]);
    arena_destroy(AC);
    check_all();
    for (int i = 0; i < NARENAS; i++)
        if (arenas[i].live)
            arena_destroy(i);
    expect_no_pages_kept();
    return 0;
}
