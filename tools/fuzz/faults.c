/*
 * faults.c - fault injection for libvmem: the `check-faults` layer.
 *
 * Owned by the reliability layer (tools/reliability.mk). The host suite
 * tests single failures; this program drives random operation sequences
 * while the port's page source fails on many schedules, and an import
 * callback fails likewise, and holds the library to its contract for
 * running out of memory:
 *   - a failed allocation returns NULL / a negative code, reports no
 *     misuse, and leaves every arena consistent (vmem_check) and exactly
 *     accounted (vmem_stat against a model of the live allocations);
 *   - nothing leaks: once every arena is destroyed, the only pages still
 *     out are boundary-tag pages, which the library keeps for reuse
 *     (src/vmem_tags.c). Their number is measured from the tag pool
 *     (vmem_dump's "pool" figure): the pool must hold exactly the static
 *     tags plus a whole number of pages of tags, the port's outstanding-
 *     page count must equal that number of pages, and vmem_release_pages()
 *     must then hand every one of them back;
 *   - once faults stop, everything works again;
 *   - with no page source at all, right after vmem_bootstrap(), the static
 *     pool runs dry with clean failures, VM_BOOTSTRAP requests still reach
 *     the reserve, and work resumes once pages arrive.
 * It may use libc: it is a host program, not a freestanding test.
 * Prints "ok NAME" / "FAIL NAME: why" per test and "N passed, N failed".
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmem.h"
#include "vmem_config.h"
#include "vmem_posix.h"

/* ---- Harness --------------------------------------------------------------- */

static unsigned tests_passed, tests_failed;
static bool test_ok;
static char test_why[512];

static void failf(int line, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void failf(int line, const char *fmt, ...)
{
    if (!test_ok)
        return; /* keep the first reason */
    test_ok = false;
    int n = snprintf(test_why, sizeof(test_why), "line %d: ", line);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(test_why + n, sizeof(test_why) - (size_t)n, fmt, ap);
    va_end(ap);
}

#define EXPECT(cond, ...)                  \
    do {                                   \
        if (!(cond)) {                     \
            failf(__LINE__, __VA_ARGS__);  \
            return false;                  \
        }                                  \
    } while (0)

static void run(const char *name, bool (*fn)(const void *), const void *arg)
{
    test_ok = true;
    test_why[0] = '\0';
    bool ok = fn(arg) && test_ok;
    if (ok) {
        printf("ok   faults.%s\n", name);
        tests_passed++;
    } else {
        printf("FAIL faults.%s: %s\n", name, test_why[0] ? test_why : "(no reason)");
        tests_failed++;
    }
    fflush(stdout);
}

/* Any misuse report is a failure here: every call is valid. */
static unsigned misuse_seen;
static VmemMisuse misuse_last;
static void record_misuse(const VmemMisuse *report)
{
    misuse_seen++;
    misuse_last = *report;
}

static uint64_t rng_state;
static uint64_t rnd(void)
{
    /* splitmix64: deterministic per seed */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static size_t below(size_t n) { return (size_t)(rnd() % n); }

/* ---- Observing the tag pool ------------------------------------------------ */

/* Free tags in the global pool and the size of a tag, read from vmem_dump()
 * of an empty probe arena (the library has no other way to tell). */
static bool pool_figures(size_t *pool, size_t *tag_size)
{
    static Vmem probe;
    if (vmem_init(&probe, "probe", NULL, 0, 1, NULL, NULL, NULL, 0, VM_NOSLEEP) != 0)
        return false;
    fflush(stdout);
    FILE *tmp = tmpfile();
    int saved = dup(STDOUT_FILENO);
    if (tmp == NULL || saved < 0)
        return false;
    dup2(fileno(tmp), STDOUT_FILENO);
    vmem_dump(&probe);
    fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    vmem_destroy(&probe);
    char text[4096];
    rewind(tmp);
    size_t n = fread(text, 1, sizeof(text) - 1, tmp);
    fclose(tmp);
    text[n] = '\0';
    const char *p = strstr(text, ", pool ");
    const char *t = strstr(text, "tag size ");
    if (p == NULL || t == NULL)
        return false;
    *pool = (size_t)strtoull(p + 7, NULL, 10);
    *tag_size = (size_t)strtoull(t + 9, NULL, 10);
    return *tag_size != 0;
}

/* With no arena alive: every page out must be a tag page, and the pool
 * must hold every tag ever made. Reports the figures in *note. */
static bool no_leaks(char *note, size_t cap)
{
    size_t pool, tag_size;
    EXPECT(pool_figures(&pool, &tag_size), "cannot read the tag pool from vmem_dump");
    size_t per_page = VMEM_PAGE_SIZE / tag_size;
    size_t outstanding = vmem_posix_pages_outstanding();
    EXPECT(pool >= VMEM_BOOTSTRAP_TAGS && (pool - VMEM_BOOTSTRAP_TAGS) % per_page == 0,
           "pool holds %zu tags: not %d static tags plus whole pages of %zu (tags lost)", pool,
           VMEM_BOOTSTRAP_TAGS, per_page);
    size_t tag_pages = (pool - VMEM_BOOTSTRAP_TAGS) / per_page;
    EXPECT(outstanding == tag_pages,
           "%zu pages outstanding with every arena destroyed, but only %zu are tag pages",
           outstanding, tag_pages);
    /* With no arena alive every tag page is unused: all of them go back. */
    size_t released = vmem_release_pages();
    EXPECT(released == tag_pages && vmem_posix_pages_outstanding() == 0,
           "vmem_release_pages gave back %zu of %zu tag pages; %zu pages still out", released,
           tag_pages, vmem_posix_pages_outstanding());
    snprintf(note, cap, "%zu tag pages, all handed back; 0 other pages", tag_pages);
    return true;
}

/* ---- A model of live allocations ------------------------------------------- */

#define MAX_LIVE 256

typedef struct {
    uintptr_t addr;
    size_t size;
    bool x;
} Live;

typedef struct {
    const char *name;
    Vmem storage;
    Vmem *vm;
    bool live;
    uintptr_t lo;       /* range the arena's allocations must lie in */
    size_t units;       /* length of that range in quanta */
    size_t q;
    uint8_t *owned;     /* one byte per quantum of the range */
    Live alloc[MAX_LIVE];
    size_t nlive;
    size_t next_span;   /* P: where the next added span goes */
} Arena;

static bool model_take(Arena *a, uintptr_t addr, size_t size, bool x)
{
    EXPECT(addr >= a->lo && (addr - a->lo) / a->q + size / a->q <= a->units && addr % a->q == 0,
           "%s: allocation [%#" PRIxPTR ", +%#zx) outside its range", a->name, addr, size);
    size_t u = (addr - a->lo) / a->q;
    for (size_t i = 0; i < size / a->q; i++) {
        EXPECT(!a->owned[u + i], "%s: allocation [%#" PRIxPTR ", +%#zx) overlaps a live one",
               a->name, addr, size);
        a->owned[u + i] = 1;
    }
    EXPECT(a->nlive < MAX_LIVE, "model full");
    a->alloc[a->nlive].addr = addr;
    a->alloc[a->nlive].size = size;
    a->alloc[a->nlive].x = x;
    a->nlive++;
    return true;
}

static void model_drop(Arena *a, size_t i)
{
    size_t u = (a->alloc[i].addr - a->lo) / a->q;
    memset(a->owned + u, 0, a->alloc[i].size / a->q);
    a->alloc[i] = a->alloc[--a->nlive];
}

static void count_span(void *arg, uintptr_t addr, size_t size, int type)
{
    size_t *counts = arg;
    (void)addr;
    (void)type;
    counts[0]++;
    counts[1] += size;
}

static Arena arenas[];

static bool consistent(Arena *a)
{
    if (!a->live)
        return true;
    VmemCheckReport rep;
    EXPECT(vmem_check(a->vm, &rep) == 0, "%s: vmem_check: %s at %#" PRIxPTR, a->name,
           rep.reason, rep.addr);
    VmemStat st;
    EXPECT(vmem_stat(a->vm, &st) == 0, "%s: vmem_stat failed", a->name);
    size_t in_use = 0, nlive = a->nlive;
    for (size_t i = 0; i < a->nlive; i++)
        in_use += a->alloc[i].size;
    if (a == &arenas[2]) {
        /* S: the importers' spans are allocations of S too. */
        for (int i = 3; i <= 4; i++) {
            size_t counts[2] = {0, 0};
            if (arenas[i].live)
                vmem_walk(arenas[i].vm, VMEM_SPAN, count_span, counts);
            nlive += counts[0];
            in_use += counts[1];
        }
    }
    EXPECT(st.in_use == in_use, "%s: vmem_stat in_use %#zx, live allocations %#zx", a->name,
           st.in_use, in_use);
    EXPECT(st.alloc - st.free == nlive, "%s: %zu allocs - %zu frees, %zu live", a->name,
           st.alloc, st.free, nlive);
    EXPECT(misuse_seen == 0, "misuse reported: %s in %s: %s",
           vmem_misuse_name(misuse_last.kind), misuse_last.call, misuse_last.reason);
    return true;
}

/* ---- Import through a callback that fails on its own schedule -------------- */

static size_t import_calls, import_fail_every;
static bool import_failing;

static void *failing_import(Vmem *src, size_t size, int flags)
{
    import_calls++;
    if (import_failing && (import_fail_every <= 1 || import_calls % import_fail_every == 0))
        return NULL;
    return vmem_alloc(src, size, flags);
}

static void failing_give_back(Vmem *src, void *addr, size_t size) { vmem_free(src, addr, size); }

/* ---- The arenas of a random run ------------------------------------------------ */

enum { AP, AQ, AS, AC, AF, NARENAS };
static Arena arenas[NARENAS];
_Static_assert(AS == 2 && AC == 3 && AF == 4, "consistent() knows S, C and F by index");

#define Q 0x1000UL
#define P_BASE 0x10000000UL
#define P_UNITS 16384UL   /* P grows by added spans up to this many quanta */
#define P_INITIAL 4096UL
#define Q_BASE 0x20000000UL
#define Q_UNITS 8192UL
#define S_BASE 0x40000000UL
#define S_UNITS 65536UL

static bool arena_up(int i)
{
    Arena *a = &arenas[i];
    Vmem *src = &arenas[AS].storage;
    int r = -1;
    misuse_seen = 0;
    a->vm = &a->storage;
    switch (i) {
    case AP:
        r = vmem_init(a->vm, "P", (void *)P_BASE, P_INITIAL * Q, Q, NULL, NULL, NULL, 0, 0);
        a->next_span = P_INITIAL;
        break;
    case AQ:
        r = vmem_init(a->vm, "Q", (void *)Q_BASE, Q_UNITS * Q, Q, NULL, NULL, NULL, 8 * Q, 0);
        break;
    case AS:
        r = vmem_init(a->vm, "S", (void *)S_BASE, S_UNITS * Q, Q, NULL, NULL, NULL, 0, 0);
        break;
    case AC:
        r = vmem_init(a->vm, "C", NULL, 0, Q, vmem_alloc, vmem_free, src, 0, 0);
        break;
    default:
        r = vmem_init(a->vm, "F", NULL, 0, Q, failing_import, failing_give_back, src, 0, 0);
        break;
    }
    /* vmem_init of an arena with an initial span needs tags: under faults
     * it may fail, cleanly. */
    EXPECT(r == 0 || r == -VMEM_ERR_NO_MEM, "vmem_init(%s) returned %d", a->name, r);
    EXPECT(misuse_seen == 0, "vmem_init(%s) reported misuse", a->name);
    a->live = r == 0;
    return true;
}

static void arenas_define(void)
{
    static const char *const names[NARENAS] = {"P", "Q", "S", "C", "F"};
    static uint8_t own_p[P_UNITS], own_q[Q_UNITS], own_s[S_UNITS], own_c[S_UNITS],
        own_f[S_UNITS];
    uint8_t *owned[NARENAS] = {own_p, own_q, own_s, own_c, own_f};
    for (int i = 0; i < NARENAS; i++) {
        Arena *a = &arenas[i];
        a->name = names[i];
        a->q = Q;
        a->nlive = 0;
        a->live = false;
        a->owned = owned[i];
        a->lo = i == AP ? P_BASE : i == AQ ? Q_BASE : S_BASE;
        a->units = i == AP ? P_UNITS : i == AQ ? Q_UNITS : S_UNITS;
        memset(a->owned, 0, a->units);
    }
}

/* ---- Operations -------------------------------------------------------------- */

static const int policies[] = {0, VM_INSTANTFIT, VM_BESTFIT, VM_FIRSTFIT, VM_NEXTFIT,
                               VM_ENDALLOC, VM_ENDALLOC | VM_BESTFIT};

static size_t alloc_tries, alloc_fails;

static bool op_alloc(Arena *a)
{
    size_t size = (1 + below(below(4) == 0 ? 64 : 8)) * Q;
    int flags = VM_NOSLEEP | policies[below(7)];
    if (a->nlive >= MAX_LIVE - 32) /* room for the recovery step */
        return true;
    bool constrained = below(3) == 0;
    uintptr_t addr = 0;
    bool ok;
    if (!constrained) {
        addr = (uintptr_t)vmem_alloc(a->vm, size, flags);
        ok = addr != 0;
    } else {
        size_t align = Q << below(5);
        size_t phase = below(2) ? 0 : (below(align / Q)) * Q;
        size_t nocross = 0;
        if (below(3) == 0) {
            nocross = Q;
            while (nocross < size || nocross < align)
                nocross <<= 1;
            nocross <<= below(2);
            if (phase + size > nocross)
                phase = 0;
        }
        uintptr_t min = below(2) ? a->lo + below(a->units / 2) * Q : 0;
        uintptr_t max = below(2) ? a->lo + (a->units / 2 + below(a->units / 2)) * Q : 0;
        ok = vmem_xalloc_addr(a->vm, size, align, phase, nocross, min, max, flags, &addr) == 0;
        if (ok) {
            EXPECT((addr - phase) % align == 0 && addr >= min && (max == 0 || addr + size <= max) &&
                       (nocross == 0 || addr / nocross == (addr + size - 1) / nocross),
                   "%s: vmem_xalloc_addr placed [%#" PRIxPTR ", +%#zx) against its constraints",
                   a->name, addr, size);
        }
    }
    EXPECT(misuse_seen == 0, "%s: allocation reported misuse: %s", a->name, misuse_last.reason);
    alloc_tries++;
    alloc_fails += !ok;
    if (ok && !model_take(a, addr, size, constrained))
        return false;
    return true;
}

/* Frees live allocation i the way it was made; frees need no new memory,
 * so they must succeed whatever the page source does. */
static bool free_live(Arena *a, size_t i)
{
    if (a->alloc[i].x)
        vmem_xfree(a->vm, (void *)a->alloc[i].addr, a->alloc[i].size);
    else
        vmem_free(a->vm, (void *)a->alloc[i].addr, a->alloc[i].size);
    EXPECT(misuse_seen == 0, "%s: free reported misuse: %s", a->name, misuse_last.reason);
    model_drop(a, i);
    return true;
}

static bool op_free(Arena *a)
{
    return a->nlive == 0 || free_live(a, below(a->nlive));
}

static bool op_add(Arena *a)
{
    if (a->next_span + 256 > P_UNITS)
        return true;
    int r = vmem_add_range(a->vm, P_BASE + a->next_span * Q, 256 * Q, VM_NOSLEEP);
    EXPECT(r == 0 || r == -VMEM_ERR_NO_MEM, "vmem_add_range returned %d", r);
    EXPECT(misuse_seen == 0, "vmem_add_range reported misuse: %s", misuse_last.reason);
    if (r == 0)
        a->next_span += 256;
    return true;
}

/* Frees every live allocation of an arena, the last first. */
static bool free_all(Arena *a)
{
    while (a->nlive > 0)
        if (!free_live(a, a->nlive - 1))
            return false;
    return true;
}

static bool destroy(Arena *a)
{
    if (!a->live)
        return true;
    vmem_destroy(a->vm);
    EXPECT(misuse_seen == 0, "vmem_destroy(%s) reported misuse: %s", a->name,
           misuse_last.reason);
    a->live = false;
    return true;
}

/* ---- Fault schedules ----------------------------------------------------------- */

typedef enum {
    SCHED_AFTER,  /* pages fail from the Nth call of the run on, until it ends */
    SCHED_PER_OP, /* in every operation, the calls after the first N fail */
    SCHED_SEEDED, /* per operation, a random N (or no fault) from the seed */
} SchedKind;

typedef struct {
    const char *name;
    SchedKind kind;
    size_t n;
    uint64_t seed;
    size_t import_every; /* F's import fails every Nth call (1: always) */
} Schedule;

static void faults_for_op(const Schedule *s)
{
    switch (s->kind) {
    case SCHED_AFTER: break;
    case SCHED_PER_OP: vmem_posix_fail_pages_after(s->n); break;
    default:
        if (below(3) == 0)
            vmem_posix_stop_page_faults();
        else
            vmem_posix_fail_pages_after(below(4));
        break;
    }
}

static bool random_run(const void *arg)
{
    const Schedule *s = arg;
    char note[128];
    rng_state = s->seed;
    arenas_define();
    misuse_seen = 0;
    import_calls = 0;
    alloc_tries = alloc_fails = 0;
    import_fail_every = s->import_every;
    import_failing = true;
    if (s->kind == SCHED_AFTER)
        vmem_posix_fail_pages_after(s->n);
    /* Arenas come up under the faults too; one that cannot is retried each
     * step (vmem_init must have failed cleanly). */
    for (int i = 0; i < NARENAS; i++)
        if (!arena_up(i))
            return false;

    for (int step = 0; step < 10000; step++) {
        int i = (int)below(NARENAS);
        Arena *a = &arenas[i];
        faults_for_op(s);
        if (!a->live) {
            if ((i == AC || i == AF) && !arenas[AS].live)
                continue;
            if (!arena_up(i))
                return false;
        } else {
            size_t what = below(16);
            bool ok = true;
            if (what < 8)
                ok = op_alloc(a);
            else if (what < 14)
                ok = op_free(a);
            else if (what == 14 && i == AP)
                ok = op_add(a);
            else if (what == 15 && (i == AC || i == AF) && a->nlive == 0 && below(4) == 0)
                ok = destroy(a); /* gives every span back; re-created later */
            if (!ok)
                return false;
        }
        if (s->kind != SCHED_AFTER)
            vmem_posix_stop_page_faults();
        for (int j = 0; j < NARENAS; j++)
            if (!consistent(&arenas[j]))
                return false;
    }

    /* Faults stop: everything works again. */
    vmem_posix_stop_page_faults();
    import_failing = false;
    for (int i = 0; i < NARENAS; i++) {
        if (!arenas[i].live && !arena_up(i))
            return false;
        EXPECT(arenas[i].live, "arena %s cannot be created once faults stop", arenas[i].name);
    }
    for (int i = 0; i < NARENAS; i++) {
        Arena *a = &arenas[i];
        for (int k = 0; k < 16; k++) {
            void *p = vmem_alloc(a->vm, Q, VM_NOSLEEP);
            EXPECT(p != NULL, "%s: allocation fails after faults stopped", a->name);
            if (!model_take(a, (uintptr_t)p, Q, false))
                return false;
        }
        uintptr_t addr;
        EXPECT(vmem_xalloc_addr(a->vm, 4 * Q, 16 * Q, Q, 0, 0, 0, VM_NOSLEEP, &addr) == 0,
               "%s: constrained allocation fails after faults stopped", a->name);
        if (!model_take(a, addr, 4 * Q, true) || !consistent(a))
            return false;
    }

    /* Tear down: importers first, then S must hold nothing of theirs. */
    for (int i = AC; i <= AF; i++)
        if (!free_all(&arenas[i]) || !destroy(&arenas[i]))
            return false;
    if (!consistent(&arenas[AS]))
        return false;
    for (int i = 0; i < NARENAS; i++)
        if (!free_all(&arenas[i]) || !consistent(&arenas[i]) || !destroy(&arenas[i]))
            return false;
    if (!no_leaks(note, sizeof(note)))
        return false;
    printf("     %s: %zu of %zu allocations failed, %zu import calls; %s\n", s->name,
           alloc_fails, alloc_tries, import_calls, note);
    return true;
}

/* ---- Boundary tags before any page source works ---------------------------------- */

static bool bootstrap_exhaustion(const void *arg)
{
    (void)arg;
    static Vmem a, b;
    /* No page at all, from the very first call. */
    vmem_posix_fail_pages_after(0);
    vmem_bootstrap();
    EXPECT(vmem_init(&a, "boot", (void *)0x100000, 0x1000000, 16, NULL, NULL, NULL, 0,
                     VM_NOSLEEP) == 0,
           "vmem_init with the static pool failed");
    /* Each allocation at the front of the free segment takes one new tag. */
    static uintptr_t got[VMEM_BOOTSTRAP_TAGS];
    size_t n = 0;
    for (;;) {
        void *p = vmem_alloc(&a, 16, VM_NOSLEEP | VM_FIRSTFIT);
        EXPECT(misuse_seen == 0, "allocation reported misuse");
        if (p == NULL)
            break;
        EXPECT(n < VMEM_BOOTSTRAP_TAGS, "more allocations than there are static tags");
        got[n++] = (uintptr_t)p;
    }
    EXPECT(n >= VMEM_BOOTSTRAP_TAGS - VMEM_TAG_RESERVE - 16,
           "only %zu allocations before the static pool ran dry", n);
    EXPECT(vmem_posix_pages_outstanding() == 0, "pages were handed out while failing");
    VmemCheckReport rep;
    EXPECT(vmem_check(&a, &rep) == 0, "vmem_check: %s", rep.reason);
    uintptr_t addr;
    int r = vmem_xalloc_addr(&a, 64, 64, 0, 0, 0, 0, VM_NOSLEEP, &addr);
    EXPECT(r == -VMEM_ERR_NO_MEM, "vmem_xalloc_addr returned %d, not -VMEM_ERR_NO_MEM", r);
    EXPECT(vmem_create("none", NULL, 0, 16, NULL, NULL, NULL, 0, VM_NOSLEEP) == NULL,
           "vmem_create succeeded without pages");
    r = vmem_init(&b, "b", (void *)0x100000, 0x1000, 16, NULL, NULL, NULL, 0, VM_NOSLEEP);
    EXPECT(r == -VMEM_ERR_NO_MEM || r == 0, "vmem_init returned %d", r);
    if (r == 0)
        vmem_destroy(&b);
    EXPECT(misuse_seen == 0, "misuse reported during exhaustion: %s", misuse_last.reason);

    /* The reserve is for VM_BOOTSTRAP requests (a page source refilling
     * the pool): they still succeed. */
    void *boot = vmem_alloc(&a, 16, VM_NOSLEEP | VM_BOOTSTRAP | VM_FIRSTFIT);
    EXPECT(boot != NULL, "a VM_BOOTSTRAP allocation could not use the reserve");
    vmem_free(&a, boot, 16);

    /* Frees need no new memory. */
    for (size_t i = 0; i < n; i += 2)
        vmem_free(&a, (void *)got[i], 16);
    EXPECT(vmem_check(&a, &rep) == 0, "vmem_check after frees: %s", rep.reason);

    /* Pages arrive: work resumes, well past the static pool. */
    vmem_posix_stop_page_faults();
    static uintptr_t again[4 * VMEM_BOOTSTRAP_TAGS];
    size_t more = 0;
    for (; more < 4 * VMEM_BOOTSTRAP_TAGS; more++)
        if ((again[more] = (uintptr_t)vmem_alloc(&a, 16, VM_NOSLEEP | VM_FIRSTFIT)) == 0)
            break;
    EXPECT(more == 4 * VMEM_BOOTSTRAP_TAGS, "only %zu allocations once pages arrived", more);
    EXPECT(vmem_check(&a, &rep) == 0, "vmem_check after recovery: %s", rep.reason);
    EXPECT(misuse_seen == 0, "misuse reported: %s", misuse_last.reason);
    VmemStat st;
    vmem_stat(&a, &st);
    EXPECT(st.in_use == (n - (n + 1) / 2 + more) * 16, "in_use %#zx after recovery", st.in_use);
    printf("     %zu allocations from the static pool, then %zu more once pages arrived\n", n,
           more);
    for (size_t i = 1; i < n; i += 2)
        vmem_free(&a, (void *)got[i], 16);
    for (size_t i = 0; i < more; i++)
        vmem_free(&a, (void *)again[i], 16);
    vmem_destroy(&a);
    EXPECT(misuse_seen == 0, "misuse reported: %s", misuse_last.reason);
    char note[128];
    if (!no_leaks(note, sizeof(note)))
        return false;
    printf("     %s\n", note);
    return true;
}

/* The hash table cannot grow while pages fail; the arena goes on with the
 * table it has, and grows it once pages come back. */
static bool hash_growth_failure(const void *arg)
{
    (void)arg;
    static Vmem a;
    static uintptr_t got[6000];
    EXPECT(vmem_init(&a, "hash", (void *)0x1000, 6000 * 2 * 16, 16, NULL, NULL, NULL, 0, 0) == 0,
           "vmem_init failed");
    /* Warm the tag pool so tags need no pages. */
    for (size_t i = 0; i < 6000; i++)
        EXPECT((got[i] = (uintptr_t)vmem_alloc(&a, 16, VM_NOSLEEP)) != 0, "warm-up failed");
    for (size_t i = 0; i < 6000; i++)
        vmem_free(&a, (void *)got[i], 16);
    vmem_posix_fail_pages_after(0);
    size_t n = 0;
    for (; n < 6000; n++) {
        void *p = vmem_xalloc(&a, 16, 0, 0, 0, NULL, NULL, VM_NOSLEEP);
        if (p == NULL)
            break;
        got[n] = (uintptr_t)p;
    }
    VmemCheckReport rep;
    EXPECT(vmem_check(&a, &rep) == 0, "vmem_check under faults: %s", rep.reason);
    EXPECT(n == 6000, "only %zu allocations with the pool warm (tags need no pages)", n);
    vmem_posix_stop_page_faults();
    for (size_t i = 0; i < n; i++)
        vmem_xfree(&a, (void *)got[i], 16);
    EXPECT(vmem_check(&a, &rep) == 0, "vmem_check after faults: %s", rep.reason);
    EXPECT(misuse_seen == 0, "misuse reported: %s", misuse_last.reason);
    vmem_destroy(&a);
    char note[128];
    return no_leaks(note, sizeof(note));
}

/* An import callback that always fails: clean failures, nothing taken from
 * the source, and work resumes when it recovers. */
static bool import_failure(const void *arg)
{
    (void)arg;
    static Vmem s, f;
    EXPECT(vmem_init(&s, "S", (void *)S_BASE, S_UNITS * Q, Q, NULL, NULL, NULL, 0, 0) == 0,
           "vmem_init(S) failed");
    EXPECT(vmem_init(&f, "F", NULL, 0, Q, failing_import, failing_give_back, &s, 0, 0) == 0,
           "vmem_init(F) failed");
    import_failing = true;
    import_fail_every = 1;
    for (int i = 0; i < 100; i++) {
        EXPECT(vmem_alloc(&f, Q * (1 + (size_t)i % 7), VM_NOSLEEP) == NULL,
               "allocation succeeded with the import failing");
        uintptr_t addr;
        EXPECT(vmem_xalloc_addr(&f, Q, 4 * Q, 0, 0, 0, 0, VM_NOSLEEP, &addr) ==
                   -VMEM_ERR_NO_MEM,
               "constrained allocation did not fail with -VMEM_ERR_NO_MEM");
    }
    VmemCheckReport rep;
    EXPECT(vmem_check(&f, &rep) == 0 && vmem_check(&s, &rep) == 0, "vmem_check: %s",
           rep.reason);
    EXPECT(s.stat.in_use == 0 && f.stat.total == 0, "something was imported");
    import_failing = false;
    void *p = vmem_alloc(&f, 3 * Q, VM_NOSLEEP);
    EXPECT(p != NULL, "allocation fails once the import recovers");
    vmem_free(&f, p, 3 * Q);
    EXPECT(f.stat.total == 0 && s.stat.in_use == 0, "the span was not given back");
    EXPECT(misuse_seen == 0, "misuse reported: %s", misuse_last.reason);
    vmem_destroy(&f);
    vmem_destroy(&s);
    return true;
}

/* vmem_create under faults: NULL, cleanly. Once pages come, create /
 * use / destroy cycles (with quantum caches) reuse what they had: the page
 * count after the first cycle never grows. Runs last: vmem_create storage
 * pages are kept for reuse, like tag pages. */
static bool create_under_faults(const void *arg)
{
    (void)arg;
    vmem_posix_fail_pages_after(0);
    Vmem *vm = vmem_create("c", (void *)0x1000, 0x1000, 16, NULL, NULL, NULL, 0, VM_NOSLEEP);
    EXPECT(vm == NULL, "vmem_create succeeded with no page to hold the arena");
    EXPECT(misuse_seen == 0, "misuse reported: %s", misuse_last.reason);
    vmem_posix_stop_page_faults();
    size_t first = 0;
    static uintptr_t got[64];
    for (int cycle = 0; cycle < 100; cycle++) {
        vm = vmem_create("c", (void *)0x1000, 0x100000, 16, NULL, NULL, NULL, 4 * 16,
                         VM_NOSLEEP);
        EXPECT(vm != NULL, "vmem_create failed with pages available");
        for (size_t k = 0; k < 64; k++) {
            /* Half of the cycles fail pages inside: caches and tables
             * cannot be made, allocations fall back or fail cleanly. */
            if (cycle % 2 == 1 && k == 8)
                vmem_posix_fail_pages_after(0);
            got[k] = (uintptr_t)vmem_alloc(vm, 16 * (1 + k % 6), VM_NOSLEEP);
        }
        vmem_posix_stop_page_faults();
        VmemCheckReport rep;
        EXPECT(vmem_check(vm, &rep) == 0, "vmem_check: %s", rep.reason);
        for (size_t k = 0; k < 64; k++)
            if (got[k] != 0)
                vmem_free(vm, (void *)got[k], 16 * (1 + k % 6));
        VmemStat st;
        EXPECT(vmem_stat(vm, &st) == 0 && st.in_use == 0 && st.alloc == st.free,
               "stats after freeing everything: in_use %#zx, %zu/%zu", st.in_use, st.alloc,
               st.free);
        vmem_destroy(vm);
        EXPECT(misuse_seen == 0, "misuse reported: %s", misuse_last.reason);
        if (cycle == 1)
            first = vmem_posix_pages_outstanding();
        else if (cycle > 1)
            EXPECT(vmem_posix_pages_outstanding() <= first,
                   "pages outstanding grew from %zu to %zu over create/destroy cycles", first,
                   vmem_posix_pages_outstanding());
    }
    return true;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    vmem_posix_set_misuse_handler(record_misuse);
    /* First, while the process has never had a page: */
    run("bootstrap_tag_exhaustion_then_recovery", bootstrap_exhaustion, NULL);
    run("import_callback_failure_is_clean", import_failure, NULL);

    static const Schedule schedules[] = {
        {"pages_fail_from_call_0", SCHED_AFTER, 0, 1, 1},
        {"pages_fail_from_call_1", SCHED_AFTER, 1, 2, 2},
        {"pages_fail_from_call_2", SCHED_AFTER, 2, 3, 3},
        {"pages_fail_from_call_5", SCHED_AFTER, 5, 4, 5},
        {"pages_fail_from_call_13", SCHED_AFTER, 13, 5, 2},
        {"pages_fail_from_call_40", SCHED_AFTER, 40, 6, 4},
        {"every_op_fails_at_page_call_0", SCHED_PER_OP, 0, 7, 1},
        {"every_op_fails_at_page_call_1", SCHED_PER_OP, 1, 8, 2},
        {"every_op_fails_at_page_call_2", SCHED_PER_OP, 2, 9, 3},
        {"seeded_faults_1", SCHED_SEEDED, 0, 101, 2},
        {"seeded_faults_2", SCHED_SEEDED, 0, 202, 3},
        {"seeded_faults_3", SCHED_SEEDED, 0, 303, 4},
        {"seeded_faults_4", SCHED_SEEDED, 0, 404, 7},
    };
    for (size_t i = 0; i < sizeof(schedules) / sizeof(schedules[0]); i++) {
        vmem_posix_stop_page_faults();
        run(schedules[i].name, random_run, &schedules[i]);
    }
    vmem_posix_stop_page_faults();
    run("hash_growth_failure_is_harmless", hash_growth_failure, NULL);
    run("create_destroy_cycles_under_faults", create_under_faults, NULL);
    printf("%u passed, %u failed\n", tests_passed, tests_failed);
    return tests_failed == 0 ? 0 : 1;
}
