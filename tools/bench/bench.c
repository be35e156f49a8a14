/*
 * bench.c - the libvmem benchmark program (`make bench`; docs/performance.md
 * describes the workloads, the method and the targets).
 *
 * Owns the workloads and how they are timed and reported:
 *   META  boundary-tag and hash-table bytes per live segment
 *   W1    steady state: N live segments, random free+alloc pairs, per policy
 *   W2    fragmentation: a fixed random trace on 1 GiB until the first failure
 *   W3    aligned vmem_xalloc: 4-64 KiB at 64 KiB alignment, 10,000 live
 *   W4    identifiers: a quantum-1 arena of 10^6 IDs, 10^5 live
 *   W5    adversarial: requests that must skip many too-small or misaligned
 *         free fragments, and how their cost grows with the fragment count
 *   W6    small sizes through an arena with qcache_max = 8 quanta, 1 and 2
 *         threads, the two each pinned to a CPU of its own (it measures
 *         whatever the library does for such sizes); and, for reference,
 *         two threads with an arena each, which share nothing
 *
 * Beside libvmem, W1-W4 run a classic vmem (classic.c: the paper's design
 * as the long-standing kernel implementations build it) on the same work in
 * the same process, and report libvmem's time as a fraction of its time
 * ("vs_classic"): the project's targets are stated against existing
 * implementations, for which the classic vmem stands in, and this VM's
 * noise moves two runs in one process alike far more than two processes.
 *
 * It uses only the public API (vmem.h, vmem_posix.h). Every random choice
 * comes from a fixed seed, so the work is identical from run to run and
 * from policy to policy; only the time varies. Each timed figure is the
 * median (with min and max) of several runs, each run timed as a whole with
 * CLOCK_MONOTONIC after an untimed warm-up; setup and teardown are never
 * timed, and each workload's arena is destroyed and the unused tag pages
 * released before the next one starts. The per-operation harness cost is
 * one xorshift step and an index into the live array (the next slot
 * prefetched), the same code for every policy: about 5-15 ns per pair on
 * its own.
 *
 * Output: one table on stdout and a CSV file with the columns
 * workload,policy,param,metric,median,min,max,runs (written row by row, so a
 * crash leaves the rows measured before it). A timed loop in which an
 * allocation failed adds an "alloc_failures" row, which tools/bench/check.sh
 * treats as an insane result. The table adds two columns the CSV does not
 * have: "target", the project's target for the figure (the table of
 * targets in docs/performance.md), and "cpu-median", the same figure timed
 * by the thread's CPU clock; with the share of CPU time the process got
 * (printed last), it tells a slow library from a busy machine.
 *
 * For profiling, --only, --policy, --n and --pairs narrow a run down, e.g.
 *   perf record -g build/bench/vmem_bench --only W1 --n 1000000 --policy bestfit
 *       --pairs 500000 --csv /tmp/profile.csv
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "vmem.h"
#include "vmem_posix.h"

#include "classic.h"

#define PAGE ((size_t)4096)
/* Bytes in one page of the port's page source (VMEM_PAGE_SIZE, private to
 * the library): pass -DMETA_PAGE_BYTES=... if the library is configured
 * otherwise. */
#ifndef META_PAGE_BYTES
#define META_PAGE_BYTES 4096.0
#endif
#define KIB ((size_t)1024)
#define MAX_RUNS 64

/* ---- Options ------------------------------------------------------------- */

enum { WL_META = 1 << 0, WL_W1 = 1 << 1, WL_W2 = 1 << 2, WL_W3 = 1 << 3,
       WL_W4 = 1 << 4, WL_W5 = 1 << 5, WL_W6 = 1 << 6, WL_ALL = (1 << 7) - 1 };

static struct {
    int quick;
    int runs;
    unsigned only;
    const char *csv_path;
    size_t w1_n[3];      /* W1 sizes from --n (w1_count 0: the defaults) */
    size_t w1_count;
    size_t w5_frags[3];  /* W5 fragment counts from --frags (w5_count 0: the defaults) */
    size_t w5_count;
    const char *policy;  /* --policy: only this policy / W5 kind (profiling) */
    size_t pairs;        /* --pairs: timed pairs (W1, W3, W4) or requests (W5) per run */
} opt = { 0, 5, WL_ALL, "build/bench/results.csv", { 0, 0, 0 }, 0, { 0, 0, 0 }, 0, NULL, 0 };

/* The number of timed pairs per run: --pairs, else the workload's own. */
static size_t pairs_or(size_t dflt) { return opt.pairs != 0 ? opt.pairs : dflt; }

static bool wanted(const char *policy) { return opt.policy == NULL || strcmp(opt.policy, policy) == 0; }

static void usage(FILE *to)
{
    fprintf(to,
            "usage: vmem_bench [--quick] [--runs N] [--only W1,W5,META,...] [--csv FILE]\n"
            "                  [--n N1,N2,N3] [--frags F1,F2,F3] [--policy P] [--pairs N]\n"
            "  --quick    reduced sizes (also when BENCH_QUICK is set and not 0)\n"
            "  --runs N   timed runs per figure (default 5, at most %d)\n"
            "  --only L   comma-separated workloads: META W1 W2 W3 W4 W5 W6\n"
            "  --csv F    results file (default build/bench/results.csv)\n"
            "  --n L      W1 live-segment counts, comma-separated, at most 3\n"
            "             (default 1000,100000,1000000; quick 1000,10000,100000)\n"
            "  --frags L  W5 fragment counts, comma-separated, at most 3\n"
            "             (default 1000,10000,100000; quick 1000,10000)\n"
            "  --policy P run only policy P (instantfit, bestfit, firstfit, nextfit,\n"
            "             or a W5 kind such as xalloc-nextfit): for profiling\n"
            "  --pairs N  timed pairs per run in W1, W3 and W4, requests in W5\n"
            "             (for profiling; tools/bench/w5-work.sh counts with it)\n",
            MAX_RUNS);
}

/* Up to 3 comma-separated counts between 16 and 4,000,000 into `counts`. */
static size_t parse_counts(const char *list, size_t counts[3], const char *option)
{
    size_t n = 0;
    char *end = (char *)list;
    while (*end != '\0') {
        unsigned long long v = strtoull(end, &end, 10);
        if (n == 3 || v < 16 || v > 4000000 || (*end != ',' && *end != '\0')) {
            fprintf(stderr, "vmem_bench: %s takes up to 3 counts between 16 and 4000000\n",
                    option);
            exit(2);
        }
        counts[n++] = (size_t)v;
        if (*end == ',')
            end++;
    }
    if (n == 0) {
        fprintf(stderr, "vmem_bench: %s needs at least one count\n", option);
        exit(2);
    }
    return n;
}

static unsigned parse_only(const char *list)
{
    static const char *const names[] = { "META", "W1", "W2", "W3", "W4", "W5", "W6" };
    unsigned mask = 0;
    char buf[128];
    snprintf(buf, sizeof(buf), "%s", list);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok != NULL;
         tok = strtok_r(NULL, ",", &save)) {
        unsigned bit = 0;
        for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++)
            if (strcasecmp(tok, names[i]) == 0)
                bit = 1u << i;
        if (bit == 0) {
            fprintf(stderr, "vmem_bench: unknown workload '%s'\n", tok);
            exit(2);
        }
        mask |= bit;
    }
    return mask;
}

/* ---- Small tools ------------------------------------------------------------ */

static void die(const char *what)
{
    fprintf(stderr, "vmem_bench: %s\n", what);
    exit(1);
}

static void *xmalloc(size_t bytes)
{
    void *p = malloc(bytes != 0 ? bytes : 1);
    if (p == NULL)
        die("out of memory");
    return p;
}

static uint64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Every figure is timed with this clock. */
static uint64_t now_ns(void) { return clock_ns(CLOCK_MONOTONIC); }

/* Only to tell whether other processes competed for the CPUs. */
static uint64_t cpu_ns(void) { return clock_ns(CLOCK_PROCESS_CPUTIME_ID); }
static uint64_t thread_cpu_ns(void) { return clock_ns(CLOCK_THREAD_CPUTIME_ID); }

/* xorshift64*: one shift-xor chain and a multiply per number. */
typedef struct {
    uint64_t s;
} Rng;

static void rng_seed(Rng *r, uint64_t seed)
{
    /* splitmix64 of the seed: never a zero state, well mixed from small seeds */
    uint64_t z = seed + 0x9e3779b97f4a7c15u;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    z ^= z >> 31;
    r->s = z != 0 ? z : 1;
}

static inline uint64_t rng_next(Rng *r)
{
    uint64_t x = r->s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->s = x;
    return x * 0x2545f4914f6cdd1du;
}

/* A uniform value below n from 32 random bits (multiply-shift, no division). */
static inline uint32_t below(uint32_t bits, uint32_t n) { return (uint32_t)(((uint64_t)bits * n) >> 32); }

/* ---- Results ----------------------------------------------------------------- */

typedef struct {
    char workload[8];
    char policy[32];
    char param[24];
    char metric[32];
    double median, min, max;
    int runs;
    double cpu_median; /* for the printed table only, like target */
    char target[24];
} Row;

#define MAX_ROWS 256
static Row rows[MAX_ROWS];
static size_t nrows;
static FILE *csv;

typedef struct {
    double median, min, max;
    int n;
    double cpu_median; /* the same figure timed by thread CPU time, or NAN */
} Summary;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static Summary summarize(const double *samples, int n)
{
    double sorted[MAX_RUNS];
    Summary s = { 0, 0, 0, n, NAN };
    if (n <= 0)
        return s;
    memcpy(sorted, samples, (size_t)n * sizeof(double));
    qsort(sorted, (size_t)n, sizeof(double), cmp_double);
    s.min = sorted[0];
    s.max = sorted[n - 1];
    s.median = n % 2 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
    return s;
}

static void add_row(const char *workload, const char *policy, const char *param, const char *metric,
                    Summary s, const char *target)
{
    if (nrows == MAX_ROWS)
        die("too many result rows");
    Row *r = &rows[nrows++];
    snprintf(r->workload, sizeof(r->workload), "%s", workload);
    snprintf(r->policy, sizeof(r->policy), "%s", policy);
    snprintf(r->param, sizeof(r->param), "%s", param);
    snprintf(r->metric, sizeof(r->metric), "%s", metric);
    r->median = s.median;
    r->min = s.min;
    r->max = s.max;
    r->runs = s.n;
    r->cpu_median = s.cpu_median;
    snprintf(r->target, sizeof(r->target), "%s", target != NULL ? target : "");
    if (csv != NULL) {
        fprintf(csv, "%s,%s,%s,%s,%.6g,%.6g,%.6g,%d\n", r->workload, r->policy, r->param,
                r->metric, r->median, r->min, r->max, r->runs);
        fflush(csv);
    }
    fprintf(stderr, "  %-5s %-18s %-12s %-21s %10.4g  [%.4g .. %.4g] x%d  cpu %.4g\n",
            r->workload, r->policy, r->param, r->metric, r->median, r->min, r->max, r->runs,
            r->cpu_median);
}

static void add_value(const char *workload, const char *policy, const char *param,
                      const char *metric, double value, const char *target)
{
    Summary s = { value, value, value, 1, NAN };
    add_row(workload, policy, param, metric, s, target);
}

/* a/b of two summaries: median over median, and the widest bounds. */
static Summary ratio(Summary num, Summary den)
{
    Summary s;
    s.median = num.median / den.median;
    s.min = num.min / den.max;
    s.max = num.max / den.min;
    s.n = num.n < den.n ? num.n : den.n;
    s.cpu_median = num.cpu_median / den.cpu_median;
    return s;
}

/* The growth from `low` to `high`, `factor` times as many of something,
 * spread over the decades between them; min and max are the extreme pairs
 * of runs. Unlike every other figure, it may be negative (no growth). */
static Summary per_decade(Summary high, Summary low, double factor)
{
    double decades = log10(factor);
    Summary s;
    s.median = (high.median - low.median) / decades;
    s.min = (high.min - low.max) / decades;
    s.max = (high.max - low.min) / decades;
    s.n = high.n < low.n ? high.n : low.n;
    s.cpu_median = (high.cpu_median - low.cpu_median) / decades;
    return s;
}

static void report_failures(const char *workload, const char *policy, const char *param,
                            size_t failures)
{
    if (failures == 0)
        return;
    fprintf(stderr, "vmem_bench: %s %s %s: %zu allocations failed in timed loops\n", workload,
            policy, param, failures);
    add_value(workload, policy, param, "alloc_failures", (double)failures, NULL);
}

static void print_table(void)
{
    printf("\n%-5s %-18s %-12s %-21s %10s %10s %10s %4s %10s  %s\n", "work", "policy",
           "param", "metric", "median", "min", "max", "runs", "cpu-median", "target");
    for (size_t i = 0; i < nrows; i++) {
        const Row *r = &rows[i];
        char cpu[16] = "-";
        if (!isnan(r->cpu_median))
            snprintf(cpu, sizeof(cpu), "%.4g", r->cpu_median);
        printf("%-5s %-18s %-12s %-21s %10.4g %10.4g %10.4g %4d %10s  %s\n", r->workload,
               r->policy, r->param, r->metric, r->median, r->min, r->max, r->runs, cpu,
               r->target);
    }
}

/* ---- Arenas and live sets ------------------------------------------------------ */

typedef struct {
    const char *name;
    int flag;
    int classic; /* the classic vmem's policy (classic.h), or NO_CLASSIC */
} Policy;

#define NO_CLASSIC (-1)

static const Policy policies[] = {
    { "instantfit", VM_INSTANTFIT, CLASSIC_INSTANTFIT },
    { "bestfit", VM_BESTFIT, CLASSIC_BESTFIT },
    { "firstfit", VM_FIRSTFIT, NO_CLASSIC },
    { "nextfit", VM_NEXTFIT, CLASSIC_NEXTFIT },
};
#define NPOLICIES (sizeof(policies) / sizeof(policies[0]))

typedef struct {
    uintptr_t addr;
    size_t size; /* 0: the slot is empty (its allocation failed) */
} Seg;

static Vmem *arena_new(const char *name, uintptr_t base, size_t size, size_t quantum,
                       size_t qcache_max)
{
    Vmem *vm = aligned_alloc(64, (sizeof(Vmem) + 63) & ~(size_t)63);
    if (vm == NULL)
        die("out of memory");
    if (vmem_init(vm, name, (void *)base, size, quantum, NULL, NULL, NULL, qcache_max,
                  VM_NOSLEEP) != 0)
        die("vmem_init failed");
    return vm;
}

/* Also hands the tag pages nobody uses back, as vmem.h advises after
 * destroying arenas, so that no workload inherits the layout of the tag
 * pool an earlier one left (a million tags freed in random order). */
static void arena_delete(Vmem *vm)
{
    vmem_destroy(vm);
    vmem_release_pages();
    free(vm);
}

/* What a loop runs against: a libvmem arena, or (vm NULL) the classic vmem
 * with one of its policies. */
typedef struct {
    Vmem *vm;
    ClassicArena *classic;
    int classic_policy;
} Target;

static Target target_vmem(Vmem *vm) { return (Target){ vm, NULL, NO_CLASSIC }; }

/* A libvmem arena (classic_policy NO_CLASSIC) or a classic one. */
static Target target_new(const char *name, uintptr_t base, size_t size, size_t quantum,
                         int classic_policy)
{
    if (classic_policy == NO_CLASSIC)
        return target_vmem(arena_new(name, base, size, quantum, 0));
    return (Target){ NULL, classic_create(base, size, quantum), classic_policy };
}

static void target_delete(const Target *t)
{
    if (t->vm != NULL)
        arena_delete(t->vm);
    else
        classic_destroy(t->classic);
}

/* `classic` and `xalloc` are constants wherever the calls are timed. */
static inline __attribute__((always_inline)) uintptr_t target_alloc(const Target *t, bool classic,
                                                                    bool xalloc, size_t size,
                                                                    size_t align, int flags)
{
    if (classic)
        return xalloc ? classic_xalloc(t->classic, size, align, t->classic_policy)
                      : classic_alloc(t->classic, size, t->classic_policy);
    return (uintptr_t)(xalloc ? vmem_xalloc(t->vm, size, align, 0, 0, NULL, NULL, flags)
                              : vmem_alloc(t->vm, size, flags));
}

static inline __attribute__((always_inline)) void target_free(const Target *t, bool classic,
                                                             bool xalloc, uintptr_t addr,
                                                             size_t size)
{
    if (classic)
        classic_free(t->classic, addr, size);
    else if (xalloc)
        vmem_xfree(t->vm, (void *)addr, size);
    else
        vmem_free(t->vm, (void *)addr, size);
}

/*
 * The timed loops. size = ((r & mask) + 1) << shift, slot = a uniform index
 * from the high half of the same random word: one RNG step per pair. The
 * slot of the next pair is prefetched, so that with a million live segments
 * the harness's own array does not add a cache miss to every pair.
 */
static inline __attribute__((always_inline)) size_t pairs_loop(const Target *t, bool classic,
                                                              bool xalloc, Seg *live, size_t n,
                                                              size_t pairs, uint64_t mask,
                                                              unsigned shift, size_t align,
                                                              int flags, Rng *rng)
{
    size_t failures = 0;
    uint64_t r = rng_next(rng);
    for (size_t i = 0; i < pairs; i++) {
        uint64_t next = rng_next(rng);
        __builtin_prefetch(&live[below((uint32_t)(next >> 32), (uint32_t)n)], 1);
        Seg *s = &live[below((uint32_t)(r >> 32), (uint32_t)n)];
        size_t size = (size_t)((r & mask) + 1) << shift;
        r = next;
        if (s->size != 0)
            target_free(t, classic, xalloc, s->addr, s->size);
        uintptr_t p = target_alloc(t, classic, xalloc, size, align, flags);
        if (p == 0) {
            failures++;
            size = 0;
        }
        s->addr = p;
        s->size = size;
    }
    return failures;
}

/* The loop once per kind of call, each with its calls fixed at compile
 * time, so that none pays a test per pair for another. */
#define PAIRS_VARIANT(name, classic, xalloc)                                                      \
    static __attribute__((noinline)) size_t name(const Target *t, Seg *live, size_t n,          \
                                                 size_t pairs, uint64_t mask, unsigned shift,   \
                                                 size_t align, int flags, Rng *rng)             \
    {                                                                                          \
        return pairs_loop(t, classic, xalloc, live, n, pairs, mask, shift, align, flags, rng); \
    }
PAIRS_VARIANT(vmem_pairs_alloc, false, false)
PAIRS_VARIANT(vmem_pairs_xalloc, false, true)
PAIRS_VARIANT(classic_pairs_alloc, true, false)
PAIRS_VARIANT(classic_pairs_xalloc, true, true)

/* n random free+alloc pairs (align != 0: aligned requests); returns the
 * allocations that failed. */
static size_t pairs_run(const Target *t, Seg *live, size_t n, size_t pairs, uint64_t mask,
                        unsigned shift, size_t align, int flags, Rng *rng)
{
    if (t->vm != NULL)
        return (align != 0 ? vmem_pairs_xalloc : vmem_pairs_alloc)(t, live, n, pairs, mask, shift,
                                                                   align, flags, rng);
    return (align != 0 ? classic_pairs_xalloc : classic_pairs_alloc)(t, live, n, pairs, mask,
                                                                     shift, align, flags, rng);
}

/* Fills n slots (untimed). align != 0: through vmem_xalloc. */
static size_t fill(const Target *t, Seg *live, size_t n, uint64_t mask, unsigned shift,
                   size_t align, int flags, Rng *rng)
{
    size_t failures = 0;
    for (size_t i = 0; i < n; i++) {
        size_t size = (size_t)((rng_next(rng) & mask) + 1) << shift;
        uintptr_t p = target_alloc(t, t->vm == NULL, align != 0, size, align, flags);
        if (p == 0) {
            failures++;
            size = 0;
        }
        live[i].addr = p;
        live[i].size = size;
    }
    return failures;
}

static void drain(const Target *t, Seg *live, size_t n, bool xalloc)
{
    for (size_t i = 0; i < n; i++) {
        if (live[i].size == 0)
            continue;
        target_free(t, t->vm == NULL, xalloc, live[i].addr, live[i].size);
        live[i].size = 0;
    }
}

/* Bytes the live set holds: what the arena must report allocated. */
static size_t live_bytes(const Seg *live, size_t n)
{
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++)
        bytes += live[i].size;
    return bytes;
}

/*
 * The steady-state measurement shared by W1, W3 and W4: fill `live`
 * segments, warm up with `pairs` untimed pairs, then time opt.runs runs of
 * `pairs` pairs each. Returns the ns-per-pair summary.
 */
typedef struct {
    const char *workload;
    const char *policy;
    const char *param;
    uintptr_t base;
    size_t arena_size;
    size_t quantum;
    size_t live;
    size_t pairs;
    uint64_t mask;  /* sizes: ((r & mask) + 1) << shift */
    unsigned shift;
    size_t align;   /* 0: vmem_alloc / vmem_free; else vmem_xalloc with this align */
    int flags;
    uint64_t seed;
} SteadySpec;

/* Dies unless the arena holds exactly the live set's bytes: the figures
 * of an allocator that lost or invented segments would mean nothing. */
static void check_allocated(const Target *t, const char *workload, const char *policy,
                            const Seg *live, size_t n)
{
    size_t expected = live_bytes(live, n);
    size_t held = t->vm != NULL ? vmem_size(t->vm, VMEM_ALLOC) : classic_check(t->classic);
    if (held != expected) {
        fprintf(stderr, "vmem_bench: %s %s%s: the arena holds %zu bytes, the live set %zu\n",
                workload, t->vm != NULL ? "" : "classic ", policy, held, expected);
        exit(1);
    }
}

static Summary steady(const SteadySpec *spec, int classic_policy)
{
    Target t = target_new(spec->workload, spec->base, spec->arena_size, spec->quantum,
                          classic_policy);
    Seg *live = xmalloc(spec->live * sizeof(Seg));
    Rng rng;
    rng_seed(&rng, spec->seed);
    size_t failures = fill(&t, live, spec->live, spec->mask, spec->shift, spec->align,
                           spec->flags, &rng);
    if (failures != 0)
        fprintf(stderr, "vmem_bench: %s %s: %zu of %zu setup allocations failed\n",
                spec->workload, spec->policy, failures, spec->live);

    double samples[MAX_RUNS], cpu_samples[MAX_RUNS];
    size_t timed_failures = 0;
    for (int run = -1; run < opt.runs; run++) { /* run -1 is the warm-up */
        uint64_t c0 = thread_cpu_ns(), t0 = now_ns();
        size_t f = pairs_run(&t, live, spec->live, spec->pairs, spec->mask, spec->shift,
                             spec->align, spec->flags, &rng);
        uint64_t t1 = now_ns(), c1 = thread_cpu_ns();
        if (run >= 0) {
            samples[run] = (double)(t1 - t0) / (double)spec->pairs;
            cpu_samples[run] = (double)(c1 - c0) / (double)spec->pairs;
            timed_failures += f;
        }
    }
    char policy[32];
    snprintf(policy, sizeof(policy), "%s%s", t.vm != NULL ? "" : "classic-", spec->policy);
    report_failures(spec->workload, policy, spec->param, timed_failures);
    check_allocated(&t, spec->workload, spec->policy, live, spec->live);
    drain(&t, live, spec->live, spec->align != 0);
    check_allocated(&t, spec->workload, spec->policy, live, spec->live);
    free(live);
    target_delete(&t);
    Summary s = summarize(samples, opt.runs);
    s.cpu_median = summarize(cpu_samples, opt.runs).median;
    return s;
}

/* The steady state of libvmem, then, in the same process, of the classic
 * vmem with the same policy when it has one: libvmem's row, the classic
 * row, and libvmem's time as a fraction of the classic one, which the
 * machine's noise moves much less than either. */
static void steady_rows(const SteadySpec *spec, const Policy *policy, const char *target,
                        const char *vs_target)
{
    Summary ours = steady(spec, NO_CLASSIC);
    add_row(spec->workload, policy->name, spec->param, "ns_per_pair", ours, target);
    if (policy->classic == NO_CLASSIC)
        return;
    Summary classic = steady(spec, policy->classic);
    char name[32];
    snprintf(name, sizeof(name), "classic-%s", policy->name);
    add_row(spec->workload, name, spec->param, "ns_per_pair", classic, NULL);
    add_row(spec->workload, policy->name, spec->param, "vs_classic", ratio(ours, classic),
            vs_target);
}

/* ---- META: metadata bytes per live segment ---------------------------------------- */

static size_t dump_tag_size(void)
{
    /* vmem_dump() prints "tag size N" through the port (stdout here). */
    Vmem *vm = arena_new("tagsize", 1u << 20, 16 * PAGE, PAGE, 0);
    char path[] = "/tmp/vmem_bench_dumpXXXXXX";
    int fd = mkstemp(path);
    size_t tag = 0;
    if (fd >= 0) {
        fflush(stdout);
        int saved = dup(STDOUT_FILENO);
        dup2(fd, STDOUT_FILENO);
        vmem_dump(vm);
        fflush(stdout);
        dup2(saved, STDOUT_FILENO);
        close(saved);
        FILE *f = fdopen(fd, "r");
        if (f != NULL) {
            char line[512];
            rewind(f);
            while (fgets(line, sizeof(line), f) != NULL) {
                const char *at = strstr(line, "tag size ");
                if (at != NULL)
                    tag = strtoul(at + 9, NULL, 10);
            }
            fclose(f);
        } else {
            close(fd);
        }
        unlink(path);
    }
    arena_delete(vm);
    return tag;
}

static void count_walker(void *arg, uintptr_t addr, size_t size, int type)
{
    (void)addr;
    (void)size;
    (void)type;
    ++*(size_t *)arg;
}

/* Must run first: the tag pool keeps its pages for the life of the process,
 * so only a fresh process sees every page an arena's growth costs. */
static void bench_meta(void)
{
    size_t n = opt.quick ? 100000 : 1000000;
    size_t pairs = opt.quick ? 100000 : 2000000;
    char param[24];
    snprintf(param, sizeof(param), "%zu", n);
    fprintf(stderr, "META: metadata per live segment, N = %zu\n", n);

    size_t tag = dump_tag_size();
    size_t pages0 = vmem_posix_pages_outstanding();
    Vmem *vm = arena_new("meta", (uintptr_t)1 << 40, 32 * n * PAGE, PAGE, 0);
    Seg *live = xmalloc(n * sizeof(Seg));
    Rng rng;
    rng_seed(&rng, 1);
    Target t = target_vmem(vm);
    size_t failures = fill(&t, live, n, 15, 12, 0, VM_INSTANTFIT | VM_NOSLEEP, &rng);
    size_t pages1 = vmem_posix_pages_outstanding();
    failures += pairs_run(&t, live, n, pairs, 15, 12, 0, VM_INSTANTFIT | VM_NOSLEEP, &rng);
    size_t pages2 = vmem_posix_pages_outstanding();
    size_t nfree = 0;
    vmem_walk(vm, VMEM_FREE, count_walker, &nfree);
    report_failures("META", "instantfit", param, failures);

    if (tag != 0)
        add_value("META", "instantfit", param, "tag_bytes", (double)tag, NULL);
    add_value("META", "classic", param, "tag_bytes", (double)classic_tag_size(), NULL);
    add_value("META", "instantfit", param, "bytes_per_seg_filled",
              (double)(pages1 - pages0) * META_PAGE_BYTES / (double)n, "small");
    add_value("META", "instantfit", param, "bytes_per_seg_steady",
              (double)(pages2 - pages0) * META_PAGE_BYTES / (double)n, "small");
    add_value("META", "instantfit", param, "free_segs_per_live", (double)nfree / (double)n,
              NULL);
    drain(&t, live, n, false);
    free(live);
    arena_delete(vm);
}

/* ---- W1: steady state ---------------------------------------------------------------- */

static void bench_w1(void)
{
    static const size_t full_n[] = { 1000, 100000, 1000000 };
    static const size_t quick_n[] = { 1000, 10000, 100000 };
    const size_t *ns = opt.w1_count != 0 ? opt.w1_n : opt.quick ? quick_n : full_n;
    size_t count = opt.w1_count != 0 ? opt.w1_count : 3;
    size_t pairs = pairs_or(opt.quick ? 30000 : 2000000);
    fprintf(stderr, "W1: steady state, %zu pairs per run\n", pairs);
    for (size_t i = 0; i < count; i++) {
        char param[24];
        snprintf(param, sizeof(param), "%zu", ns[i]);
        const char *target = ns[i] <= 1000 ? "<= 40" : ns[i] <= 100000 ? "<= 120" : "<= 420-700";
        for (size_t p = 0; p < NPOLICIES; p++) {
            if (!wanted(policies[p].name))
                continue;
            SteadySpec spec = {
                .workload = "W1", .policy = policies[p].name, .param = param,
                .base = (uintptr_t)1 << 40, .arena_size = 32 * ns[i] * PAGE, .quantum = PAGE,
                .live = ns[i], .pairs = pairs, .mask = 15, .shift = 12, .align = 0,
                .flags = policies[p].flag | VM_NOSLEEP, .seed = 1000 + ns[i],
            };
            steady_rows(&spec, &policies[p], target, "<= 0.5");
        }
    }
}

/* ---- W2: fragmentation ------------------------------------------------------------------ */

/* Runs the trace of `seed` on libvmem with `flags`, or on the classic vmem
 * with `classic_policy` (not NO_CLASSIC), until the first failure; returns
 * the % of the arena allocated at that point. */
static double w2_trace(int flags, int classic_policy, uint64_t seed, size_t *steps,
                       size_t *fail_pages)
{
    const size_t arena = (size_t)1 << 30;
    const size_t max_live = arena / PAGE;
    Target t = target_new("W2", (uintptr_t)1 << 30, arena, PAGE, classic_policy);
    bool classic = t.vm == NULL;
    Seg *live = xmalloc(max_live * sizeof(Seg));
    size_t nlive = 0;
    Rng rng;
    rng_seed(&rng, seed);
    *steps = 0;
    *fail_pages = 0;
    for (size_t step = 0; step < 100000000; step++) {
        uint64_t u = rng_next(&rng);
        if (below((uint32_t)u, 100) < 52 || nlive == 0) {
            uint64_t v = rng_next(&rng);
            uint32_t cls = below((uint32_t)v, 100), hi = (uint32_t)(v >> 32);
            size_t pages = cls < 70 ? 1 + below(hi, 4) : cls < 95 ? 5 + below(hi, 60)
                                                                  : 65 + below(hi, 960);
            size_t bytes = pages * PAGE;
            uintptr_t p = target_alloc(&t, classic, false, bytes, 0, flags | VM_NOSLEEP);
            if (p == 0 || nlive == max_live) {
                *steps = step;
                *fail_pages = pages;
                if (p != 0)
                    target_free(&t, classic, false, p, bytes);
                break;
            }
            live[nlive].addr = p;
            live[nlive].size = bytes;
            nlive++;
        } else {
            size_t idx = below((uint32_t)(u >> 32), (uint32_t)nlive);
            target_free(&t, classic, false, live[idx].addr, live[idx].size);
            live[idx] = live[--nlive];
        }
    }
    check_allocated(&t, "W2", "trace", live, nlive);
    double pct = 100.0 * (double)live_bytes(live, nlive) / (double)arena;
    drain(&t, live, nlive, false);
    free(live);
    target_delete(&t);
    return pct;
}

static void w2_row(const char *name, int flags, int classic_policy, const char *target)
{
    static const uint64_t seeds[] = { 11, 22, 33 };
    double pct[3];
    for (int s = 0; s < 3; s++) {
        size_t steps, fail_pages;
        pct[s] = w2_trace(flags, classic_policy, seeds[s], &steps, &fail_pages);
        fprintf(stderr, "    %s seed %llu: %.2f%% after %zu steps (failed: %zu pages)\n", name,
                (unsigned long long)seeds[s], pct[s], steps, fail_pages);
    }
    add_row("W2", name, "1GiB", "pct_allocated", summarize(pct, 3), target);
}

static void bench_w2(void)
{
    fprintf(stderr, "W2: fragmentation, 1 GiB arena, 3 seeds\n");
    for (size_t p = 0; p < NPOLICIES; p++) {
        if (!wanted(policies[p].name))
            continue;
        const char *target = policies[p].flag == VM_INSTANTFIT ? ">= 80"
                             : policies[p].flag == VM_BESTFIT  ? ">= 92"
                                                               : "";
        w2_row(policies[p].name, policies[p].flag, NO_CLASSIC, target);
        if (policies[p].classic != NO_CLASSIC) {
            char name[32];
            snprintf(name, sizeof(name), "classic-%s", policies[p].name);
            w2_row(name, 0, policies[p].classic, NULL);
        }
    }
}

/* ---- W3: aligned xalloc ------------------------------------------------------------------ */

static void bench_w3(void)
{
    size_t live = 10000;
    size_t pairs = pairs_or(opt.quick ? 20000 : 200000);
    fprintf(stderr, "W3: vmem_xalloc 4-64 KiB at 64 KiB alignment, %zu live\n", live);
    for (size_t p = 0; p < NPOLICIES; p++) {
        if (!wanted(policies[p].name))
            continue;
        SteadySpec spec = {
            .workload = "W3", .policy = policies[p].name, .param = "10000",
            .base = (uintptr_t)1 << 40, .arena_size = 4 * live * 64 * KIB, .quantum = PAGE,
            .live = live, .pairs = pairs, .mask = 15, .shift = 12, .align = 64 * KIB,
            .flags = policies[p].flag | VM_NOSLEEP, .seed = 3,
        };
        /* The classic next-fit walks its rotor for unconstrained requests
         * only; an aligned one searches the lists like best-fit. */
        Policy policy = policies[p];
        if (policy.flag == VM_NEXTFIT)
            policy.classic = NO_CLASSIC;
        steady_rows(&spec, &policy, p == 0 ? "<= 55" : NULL, p == 0 ? "<= 0.5" : NULL);
    }
}

/* ---- W4: identifiers ------------------------------------------------------------------------ */

static void bench_w4(void)
{
    static const Policy w4_policies[] = { { "nextfit", VM_NEXTFIT, CLASSIC_NEXTFIT },
                                          { "instantfit", VM_INSTANTFIT, CLASSIC_INSTANTFIT } };
    size_t pairs = pairs_or(opt.quick ? 50000 : 2000000);
    fprintf(stderr, "W4: IDs [1, 10^6], 10^5 live\n");
    for (size_t p = 0; p < 2; p++) {
        if (!wanted(w4_policies[p].name))
            continue;
        SteadySpec spec = {
            .workload = "W4", .policy = w4_policies[p].name, .param = "100000",
            .base = 1, .arena_size = 1000000, .quantum = 1,
            .live = 100000, .pairs = pairs, .mask = 0, .shift = 0, .align = 0,
            .flags = w4_policies[p].flag | VM_NOSLEEP, .seed = 4,
        };
        steady_rows(&spec, &w4_policies[p], "<= 90", "<= 0.5");
    }
}

/* ---- W5: adversarial fragments ---------------------------------------------------------------- */

/*
 * Two layouts of one span, each ending in a free tail that holds exactly
 * one placement, so every request must get past all the fragments:
 *   small:   [hole 1q][spacer 1q] x F, tail 2q;  request 2q (holes too small)
 *   aligned: [spacer 1q][hole 2q][spacer 1q] x F, tail 3q; request 2q aligned
 *            to 2q (each hole is big enough but sits at an odd quantum; the
 *            tail is the smallest segment that fits wherever it lies)
 * Each request is an allocation followed by its free; the tail is the only
 * placement, and after the free the next-fit rotor sits at the end of the
 * span, so next-fit wraps and must skip the fragments every time too.
 */
typedef struct {
    const char *name;
    int flag;
    bool aligned;
} W5Kind;

static const W5Kind w5_kinds[] = {
    { "bestfit", VM_BESTFIT, false },
    { "firstfit", VM_FIRSTFIT, false },
    { "nextfit", VM_NEXTFIT, false },
    { "instantfit", VM_INSTANTFIT, false },
    { "xalloc-bestfit", VM_BESTFIT, true },
    { "xalloc-firstfit", VM_FIRSTFIT, true },
    { "xalloc-nextfit", VM_NEXTFIT, true },
    { "xalloc-instantfit", VM_INSTANTFIT, true },
};
#define W5_KINDS (sizeof(w5_kinds) / sizeof(w5_kinds[0]))

static __attribute__((noinline)) size_t w5_requests(Vmem *vm, size_t n, size_t size, size_t align,
                                                    int flags)
{
    size_t failures = 0;
    for (size_t i = 0; i < n; i++) {
        void *p = align != 0 ? vmem_xalloc(vm, size, align, 0, 0, NULL, NULL, flags)
                             : vmem_alloc(vm, size, flags);
        if (p == NULL) {
            failures++;
            continue;
        }
        if (align != 0)
            vmem_xfree(vm, p, size);
        else
            vmem_free(vm, p, size);
    }
    return failures;
}

static Summary w5_one(const W5Kind *kind, size_t frags, size_t requests)
{
    const uintptr_t q = PAGE, base = (uintptr_t)1 << 40;
    size_t period = kind->aligned ? 4 : 2, tail = kind->aligned ? 3 : 2;
    size_t span = (period * frags + tail) * q;
    Vmem *vm = arena_new("W5", base, span, q, 0);
    for (size_t i = 0; i < frags; i++) {
        uintptr_t at = base + i * period * q;
        int rc = kind->aligned ? vmem_alloc_exact(vm, at, q, VM_NOSLEEP) |
                                     vmem_alloc_exact(vm, at + 3 * q, q, VM_NOSLEEP)
                               : vmem_alloc_exact(vm, at + q, q, VM_NOSLEEP);
        if (rc != 0)
            die("W5 setup: vmem_alloc_exact failed");
    }
    size_t size = 2 * q, align = kind->aligned ? 2 * q : 0;
    int flags = kind->flag | VM_NOSLEEP;
    uintptr_t tail_base = base + period * frags * q;

    /* The layout really is adversarial: the only placement is in the tail. */
    void *probe = align != 0 ? vmem_xalloc(vm, size, align, 0, 0, NULL, NULL, flags)
                             : vmem_alloc(vm, size, flags);
    if (probe == NULL || (uintptr_t)probe < tail_base)
        die("W5 setup: a request was placed outside the tail");
    if (align != 0)
        vmem_xfree(vm, probe, size);
    else
        vmem_free(vm, probe, size);

    double samples[MAX_RUNS], cpu_samples[MAX_RUNS];
    size_t failures = w5_requests(vm, requests / 10 + 1, size, align, flags); /* warm-up */
    for (int run = 0; run < opt.runs; run++) {
        uint64_t c0 = thread_cpu_ns(), t0 = now_ns();
        failures += w5_requests(vm, requests, size, align, flags);
        uint64_t t1 = now_ns(), c1 = thread_cpu_ns();
        samples[run] = (double)(t1 - t0) / (double)requests;
        cpu_samples[run] = (double)(c1 - c0) / (double)requests;
    }
    char param[24];
    snprintf(param, sizeof(param), "%zu", frags);
    report_failures("W5", kind->name, param, failures);

    for (size_t i = 0; i < frags; i++) {
        uintptr_t at = base + i * period * q;
        if (kind->aligned) {
            vmem_xfree(vm, (void *)at, q);
            vmem_xfree(vm, (void *)(at + 3 * q), q);
        } else {
            vmem_xfree(vm, (void *)(at + q), q);
        }
    }
    arena_delete(vm);
    Summary s = summarize(samples, opt.runs);
    s.cpu_median = summarize(cpu_samples, opt.runs).median;
    return s;
}

static void bench_w5(void)
{
    static const size_t full_frags[] = { 1000, 10000, 100000 };
    static const size_t quick_frags[] = { 1000, 10000 };
    const size_t *frags = opt.w5_count != 0 ? opt.w5_frags : opt.quick ? quick_frags : full_frags;
    size_t nfrags = opt.w5_count != 0 ? opt.w5_count : opt.quick ? 2 : 3;
    size_t requests = pairs_or(opt.quick ? 10000 : 200000);
    fprintf(stderr, "W5: adversarial fragments, %zu requests per run\n", requests);
    for (size_t k = 0; k < W5_KINDS; k++) {
        if (!wanted(w5_kinds[k].name))
            continue;
        Summary at[sizeof(opt.w5_frags) / sizeof(opt.w5_frags[0])];
        for (size_t f = 0; f < nfrags; f++) {
            char param[24];
            snprintf(param, sizeof(param), "%zu", frags[f]);
            at[f] = w5_one(&w5_kinds[k], frags[f], requests);
            add_row("W5", w5_kinds[k].name, param, "ns_per_request", at[f], NULL);
        }
        if (nfrags < 2)
            continue;
        char param[24];
        snprintf(param, sizeof(param), "%zu-%zu", frags[0], frags[nfrags - 1]);
        char target[24];
        snprintf(target, sizeof(target), "log: %.2f",
                 log((double)frags[nfrags - 1]) / log((double)frags[0]));
        add_row("W5", w5_kinds[k].name, param, "growth_ratio", ratio(at[nfrags - 1], at[0]),
                target);
        /* The ratio alone misjudges a cost a + b log n whose constant a is
         * small or negative (cache misses that start between the counts):
         * what says "logarithmic" is that each tenfold step in fragments
         * adds no more than the one before it. */
        for (size_t f = 1; f < nfrags; f++) {
            snprintf(param, sizeof(param), "%zu-%zu", frags[f - 1], frags[f]);
            add_row("W5", w5_kinds[k].name, param, "ns_per_decade",
                    per_decade(at[f], at[f - 1], (double)frags[f] / (double)frags[f - 1]),
                    f == 1 ? NULL : "log: <= decade before");
        }
    }
}

/* ---- W6: small sizes, one and two threads -------------------------------------------------- */

typedef struct {
    Vmem *vm;
    pthread_barrier_t *barrier;
    size_t live;
    size_t pairs;
    uint64_t seed;
    uint64_t t0, t1;
    size_t failures;
    int index; /* pinned to the index-th CPU the process may use; -1: not pinned */
} W6Thread;

/* Pins the calling thread to the index-th CPU of the process's set, when
 * there are that many: unpinned, the scheduler moves the two threads
 * between the CPUs (and stacks both on one for a while), and W6 would
 * measure that. A lone thread is left where the scheduler puts it, as
 * before: pinned, it would measure whichever vCPU comes first, which the
 * host may be sharing at the time. Best effort: without the CPUs, the
 * thread runs where it is put. */
static void pin_to_cpu(int index)
{
    cpu_set_t allowed;
    if (index < 0 || sched_getaffinity(0, sizeof(allowed), &allowed) != 0)
        return;
    for (int cpu = 0, seen = 0; cpu < CPU_SETSIZE; cpu++) {
        if (!CPU_ISSET(cpu, &allowed) || seen++ != index)
            continue;
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(cpu, &one);
        (void)pthread_setaffinity_np(pthread_self(), sizeof(one), &one);
        return;
    }
}

static void *w6_thread(void *arg)
{
    W6Thread *t = arg;
    const int flags = VM_INSTANTFIT | VM_NOSLEEP;
    pin_to_cpu(t->index);
    Seg *live = xmalloc(t->live * sizeof(Seg));
    Rng rng;
    rng_seed(&rng, t->seed);
    Target target = target_vmem(t->vm);
    t->failures = fill(&target, live, t->live, 7, 12, 0, flags, &rng);
    pairs_run(&target, live, t->live, t->pairs / 4, 7, 12, 0, flags, &rng); /* warm-up */
    pthread_barrier_wait(t->barrier);
    t->t0 = now_ns();
    t->failures += pairs_run(&target, live, t->live, t->pairs, 7, 12, 0, flags, &rng);
    t->t1 = now_ns();
    pthread_barrier_wait(t->barrier); /* nobody drains while another is timed */
    drain(&target, live, t->live, false);
    free(live);
    return NULL;
}

/* Wall time of `nthreads` threads each doing `pairs` pairs, all on one
 * arena, or with `arena_each` on an arena of their own: what the machine
 * allows two CPUs when they share nothing but the library's code. */
static double w6_run(int nthreads, bool arena_each, size_t live, size_t pairs, int run,
                     size_t *failures)
{
    Vmem *vm[2] = { NULL, NULL };
    for (int i = 0; i < (arena_each ? nthreads : 1); i++)
        vm[i] = arena_new("W6", (uintptr_t)(i + 1) << 40, (size_t)32 * 2 * live * 8 * PAGE, PAGE,
                          8 * PAGE);
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, (unsigned)nthreads);
    W6Thread t[2];
    pthread_t tid[2];
    for (int i = 0; i < nthreads; i++) {
        t[i] = (W6Thread){ .vm = vm[arena_each ? i : 0], .barrier = &barrier, .live = live,
                           .pairs = pairs, .seed = 600 + (uint64_t)run * 16 + (uint64_t)i,
                           .index = nthreads > 1 ? i : -1 };
        if (pthread_create(&tid[i], NULL, w6_thread, &t[i]) != 0)
            die("pthread_create failed");
    }
    uint64_t start = UINT64_MAX, end = 0;
    for (int i = 0; i < nthreads; i++) {
        pthread_join(tid[i], NULL);
        start = t[i].t0 < start ? t[i].t0 : start;
        end = t[i].t1 > end ? t[i].t1 : end;
        *failures += t[i].failures;
    }
    pthread_barrier_destroy(&barrier);
    for (int i = 0; i < 2; i++)
        if (vm[i] != NULL)
            arena_delete(vm[i]);
    return (double)(end - start);
}

static void bench_w6(void)
{
    size_t live = 256;
    size_t pairs = opt.quick ? 50000 : 2000000;
    fprintf(stderr, "W6: sizes 1-8 quanta, qcache_max = 8 quanta, %zu live per thread\n", live);
    /* One thread; two on one arena (the workload); two on an arena each. */
    static const struct {
        int threads;
        bool arena_each;
        const char *param;
    } setups[3] = { { 1, false, "1" }, { 2, false, "2" }, { 2, true, "2-arena-each" } };
    double lat[3][MAX_RUNS], tput[3][MAX_RUNS];
    size_t failures[3] = { 0, 0, 0 };
    for (int run = 0; run < opt.runs; run++) {
        for (int k = 0; k < 3; k++) { /* alternate, so all see the same noise */
            double wall = w6_run(setups[k].threads, setups[k].arena_each, live, pairs, run,
                                 &failures[k]);
            lat[k][run] = wall / (double)pairs; /* ns per pair, per thread */
            tput[k][run] = (double)setups[k].threads * (double)pairs / wall * 1e3; /* Mpairs/s */
        }
    }
    Summary s[3];
    for (int k = 0; k < 3; k++) {
        add_row("W6", "qcache_max=8q", setups[k].param, "ns_per_pair",
                summarize(lat[k], opt.runs), k == 0 ? "<= 20 (hit)" : NULL);
        s[k] = summarize(tput[k], opt.runs);
        add_row("W6", "qcache_max=8q", setups[k].param, "mpairs_per_s", s[k], NULL);
        report_failures("W6", "qcache_max=8q", setups[k].param, failures[k]);
    }
    add_row("W6", "qcache_max=8q", "2-vs-1", "scaling", ratio(s[1], s[0]), ">= 1.8");
    /* Against one thread as well: the scaling two CPUs that share no arena
     * reach, the ceiling for the line above on this machine. */
    add_row("W6", "qcache_max=8q", "2-arena-each", "scaling", ratio(s[2], s[0]), NULL);
}

/* ---- Main ------------------------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    const char *env = getenv("BENCH_QUICK");
    if (env != NULL && env[0] != '\0' && strcmp(env, "0") != 0)
        opt.quick = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            opt.quick = 1;
        } else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) {
            long runs = strtol(argv[++i], NULL, 10);
            if (runs < 1 || runs > MAX_RUNS)
                die("--runs must be between 1 and 64");
            opt.runs = (int)runs;
        } else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
            opt.only = parse_only(argv[++i]);
        } else if (strcmp(argv[i], "--n") == 0 && i + 1 < argc) {
            opt.w1_count = parse_counts(argv[++i], opt.w1_n, "--n");
        } else if (strcmp(argv[i], "--frags") == 0 && i + 1 < argc) {
            opt.w5_count = parse_counts(argv[++i], opt.w5_frags, "--frags");
            for (size_t f = 1; f < opt.w5_count; f++) {
                if (opt.w5_frags[f] <= opt.w5_frags[f - 1]) {
                    /* W5 reports growth from each count to the next. */
                    fprintf(stderr, "vmem_bench: --frags counts must increase\n");
                    return 2;
                }
            }
        } else if (strcmp(argv[i], "--pairs") == 0 && i + 1 < argc) {
            opt.pairs = strtoull(argv[++i], NULL, 10);
            if (opt.pairs == 0)
                die("--pairs must be positive");
        } else if (strcmp(argv[i], "--policy") == 0 && i + 1 < argc) {
            opt.policy = argv[++i];
        } else if (strcmp(argv[i], "--csv") == 0 && i + 1 < argc) {
            opt.csv_path = argv[++i];
        } else if (strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }

    csv = fopen(opt.csv_path, "w");
    if (csv == NULL) {
        fprintf(stderr, "vmem_bench: cannot write %s: %s\n", opt.csv_path, strerror(errno));
        return 1;
    }
    fprintf(csv, "workload,policy,param,metric,median,min,max,runs\n");
    fflush(csv);

    vmem_bootstrap();
    fprintf(stderr, "vmem_bench: %s run, %d timed runs per figure, results in %s\n",
            opt.quick ? "quick" : "full", opt.runs, opt.csv_path);
    static const struct {
        unsigned bit;
        void (*run)(void);
    } workloads[] = {
        { WL_META, bench_meta }, /* first: see bench_meta() */
        { WL_W1, bench_w1 }, { WL_W2, bench_w2 }, { WL_W3, bench_w3 },
        { WL_W4, bench_w4 }, { WL_W5, bench_w5 }, { WL_W6, bench_w6 },
    };
    uint64_t t0 = now_ns(), busy_wall = 0, busy_cpu = 0;
    for (size_t i = 0; i < sizeof(workloads) / sizeof(workloads[0]); i++) {
        if (!(opt.only & workloads[i].bit))
            continue;
        uint64_t w0 = now_ns(), wc0 = cpu_ns();
        workloads[i].run();
        uint64_t wall = now_ns() - w0, cpu = cpu_ns() - wc0;
        fprintf(stderr, "  (%.1f s wall, %.1f s CPU)\n", (double)wall / 1e9, (double)cpu / 1e9);
        if (workloads[i].bit != WL_W6) { /* single-threaded: CPU should equal wall */
            busy_wall += wall;
            busy_cpu += cpu;
        }
    }
    fclose(csv);

    print_table();
    printf("\nns figures: median of %d runs (min..max) timed with CLOCK_MONOTONIC; cpu-median "
           "is the same figure timed with the thread's CPU clock (not in the CSV), which "
           "discounts time the benchmark spent descheduled on a busy machine.\n"
           "W1/W3/W4/W6 count a free and an alloc as one pair; W5 one request = alloc + free; "
           "growth_ratio = ns at the most fragments / ns at the fewest.\n"
           "W6 measures whatever the library does for vmem_alloc/vmem_free of 1-8 quanta in "
           "an arena created with qcache_max = 8 quanta (its quantum caches, if any).\n"
           "Total %.1f s.\n",
           opt.runs, (double)(now_ns() - t0) / 1e9);
    if (busy_wall > 0) {
        double share = (double)busy_cpu / (double)busy_wall;
        printf("CPU share of the single-threaded workloads: %.0f%%%s\n", 100 * share,
               share < 0.9 ? " - other processes competed for the CPUs: figures are inflated"
                           : "");
    }
    return 0;
}
