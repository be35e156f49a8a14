/*
 * soak.c - the soak run of libvmem (`make soak SECONDS=N`): randomized load
 * for as long as asked, single-threaded and then multi-threaded, against a
 * shared ownership table, ending with vmem_check() on every arena.
 *
 * Owned by the reliability layer (tools/reliability.mk). Unit tests and the
 * fuzzer run short sequences; this program exists to run long ones (hours)
 * so that slow drifts - a stat that creeps, a tag that leaks, a hash that
 * never shrinks, a rare race - have time to show. Memory use is bounded by
 * the live-set caps, so it can run indefinitely.
 *
 * Arenas: P (plain, quantum 4 KiB), Q (quantum caches up to 8 quanta),
 * S (a source) and C (imports from S through vmem_alloc / vmem_free).
 * Every allocation is claimed in a table with one byte per quantum, by
 * atomic exchange: a byte already owned means two live allocations overlap,
 * in whichever threads they are. Before freeing, the owner releases them.
 *
 * Usage: vmem_soak [--seconds N] [--threads T] [--seed S] [--check-every K]
 * Prints operations per second for each phase, every 10 s a progress line,
 * and exits non-zero on any overlap, misuse report or vmem_check failure.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vmem.h"
#include "vmem_posix.h"

#define Q 0x1000UL
#define MAX_THREADS 64
#define LIVE_PER_THREAD 512

enum { AP, AQ, AS, AC, NARENAS };

typedef struct {
    const char *name;
    Vmem vm;
    uintptr_t base;
    size_t units;
    _Atomic unsigned char *owner; /* one byte per quantum of [base, base + units) */
} Arena;

static Arena arenas[NARENAS] = {
    [AP] = {.name = "soak-P", .base = 0x100000000UL, .units = 1UL << 18},
    [AQ] = {.name = "soak-Q", .base = 0x200000000UL, .units = 1UL << 16},
    [AS] = {.name = "soak-S", .base = 0x400000000UL, .units = 1UL << 19},
    [AC] = {.name = "soak-C", .base = 0x400000000UL, .units = 1UL << 19}, /* inside S */
};

static atomic_ulong overlaps, misuses, bad_results;
static atomic_bool stop;

static void on_misuse(const VmemMisuse *r)
{
    atomic_fetch_add(&misuses, 1);
    fprintf(stderr, "soak: misuse %s in %s(%s, %#" PRIxPTR ", %#zx): %s\n",
            vmem_misuse_name(r->kind), r->call, r->arena, r->addr, r->size, r->reason);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t next_rand(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* Claims (or releases) [addr, addr + size) in the ownership table. */
static void claim(Arena *a, uintptr_t addr, size_t size, bool take)
{
    if (addr < a->base || (addr - a->base) / Q + size / Q > a->units) {
        atomic_fetch_add(&bad_results, 1);
        return;
    }
    size_t u = (addr - a->base) / Q;
    for (size_t i = 0; i < size / Q; i++) {
        unsigned char old = atomic_exchange(&a->owner[u + i], take ? 1 : 0);
        if (old == take)
            atomic_fetch_add(&overlaps, 1);
    }
}

typedef struct {
    int arena;
    uintptr_t addr;
    size_t size;
    bool x;
} Held;

typedef struct {
    uint64_t seed;
    /* Written by the worker alone, read by the main thread for progress:
     * relaxed, since only the count matters, not what it orders. */
    atomic_ulong ops;
    Held held[LIVE_PER_THREAD];
    size_t nheld;
} Worker;

static const int policies[] = {0, VM_INSTANTFIT, VM_BESTFIT, VM_FIRSTFIT, VM_NEXTFIT,
                               VM_ENDALLOC, VM_ENDALLOC | VM_BESTFIT};

/* Frees a held allocation the way it was made, after taking it out of
 * the shadow map. */
static void give_back(Held h)
{
    Arena *a = &arenas[h.arena];
    claim(a, h.addr, h.size, false);
    if (h.x)
        vmem_xfree(&a->vm, (void *)h.addr, h.size);
    else
        vmem_free(&a->vm, (void *)h.addr, h.size);
}

static void one_op(Worker *w)
{
    uint64_t r = next_rand(&w->seed);
    bool do_free = w->nheld == LIVE_PER_THREAD || (w->nheld > 0 && (r & 1));
    if (do_free) {
        size_t i = (size_t)((r >> 8) % w->nheld);
        Held h = w->held[i];
        w->held[i] = w->held[--w->nheld];
        give_back(h);
    } else {
        int ai = (int)((r >> 8) % 4);
        if (ai == AS && ((r >> 10) & 1))
            ai = AC; /* S is mostly used through C */
        Arena *a = &arenas[ai];
        size_t size = (1 + (ai == AQ ? (r >> 16) % 8 : ((r >> 16) & 3) == 0 ? (r >> 20) % 64
                                                                             : (r >> 20) % 8)) *
                      Q;
        int flags = VM_NOSLEEP | policies[(r >> 32) % 7];
        bool x = ((r >> 40) & 3) == 0;
        uintptr_t addr = 0;
        if (x) {
            size_t align = Q << ((r >> 44) % 5);
            if (vmem_xalloc_addr(&a->vm, size, align, 0, 0, 0, 0, flags, &addr) != 0)
                addr = 0;
            else if (addr % align != 0)
                atomic_fetch_add(&bad_results, 1);
        } else {
            addr = (uintptr_t)vmem_alloc(&a->vm, size, flags);
        }
        if (addr != 0) {
            claim(a, addr, size, true);
            w->held[w->nheld].arena = ai;
            w->held[w->nheld].addr = addr;
            w->held[w->nheld].size = size;
            w->held[w->nheld].x = x;
            w->nheld++;
        }
    }
    atomic_store_explicit(&w->ops, atomic_load_explicit(&w->ops, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

static unsigned long ops_of(Worker *w)
{
    return atomic_load_explicit(&w->ops, memory_order_relaxed);
}

static void release_all(Worker *w)
{
    while (w->nheld > 0)
        give_back(w->held[--w->nheld]);
}

static bool check_all(const char *when)
{
    bool ok = true;
    for (int i = 0; i < NARENAS; i++) {
        VmemCheckReport rep;
        if (vmem_check(&arenas[i].vm, &rep) != 0) {
            fprintf(stderr, "soak: vmem_check(%s) %s: %s at %#" PRIxPTR " size %#zx\n",
                    arenas[i].name, when, rep.reason, rep.addr, rep.size);
            ok = false;
        }
    }
    return ok;
}

static void *worker_main(void *arg)
{
    Worker *w = arg;
    while (!atomic_load_explicit(&stop, memory_order_relaxed))
        for (int i = 0; i < 256; i++)
            one_op(w);
    return NULL;
}

static Worker workers[MAX_THREADS];

int main(int argc, char **argv)
{
    double seconds = 60;
    int threads = 4;
    uint64_t seed = 0x5eed;
    unsigned long check_every = 100000;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--seconds") == 0)
            seconds = atof(argv[i + 1]);
        else if (strcmp(argv[i], "--threads") == 0)
            threads = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--seed") == 0)
            seed = strtoull(argv[i + 1], NULL, 0);
        else if (strcmp(argv[i], "--check-every") == 0)
            check_every = strtoul(argv[i + 1], NULL, 0);
        else {
            fprintf(stderr, "usage: %s [--seconds N] [--threads T] [--seed S] [--check-every K]\n",
                    argv[0]);
            return 2;
        }
    }
    if (threads < 1 || threads > MAX_THREADS || seconds <= 0) {
        fprintf(stderr, "soak: threads must be 1..%d and seconds > 0\n", MAX_THREADS);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    vmem_bootstrap();
    vmem_posix_set_misuse_handler(on_misuse);
    for (int i = 0; i < NARENAS; i++) {
        Arena *a = &arenas[i];
        a->owner = calloc(a->units, 1);
        if (a->owner == NULL)
            return 2;
    }
    int r = vmem_init(&arenas[AP].vm, "soak-P", (void *)arenas[AP].base, arenas[AP].units * Q, Q,
                      NULL, NULL, NULL, 0, 0);
    r |= vmem_init(&arenas[AQ].vm, "soak-Q", (void *)arenas[AQ].base, arenas[AQ].units * Q, Q,
                   NULL, NULL, NULL, 8 * Q, 0);
    r |= vmem_init(&arenas[AS].vm, "soak-S", (void *)arenas[AS].base, arenas[AS].units * Q, Q,
                   NULL, NULL, NULL, 0, 0);
    r |= vmem_init(&arenas[AC].vm, "soak-C", NULL, 0, Q, vmem_alloc, vmem_free, &arenas[AS].vm,
                   0, 0);
    if (r != 0) {
        fprintf(stderr, "soak: vmem_init failed\n");
        return 1;
    }
    bool ok = true;
    printf("soak: %.0f s, %d threads, seed %#" PRIx64 "\n", seconds, threads, seed);

    /* Phase 1: one thread, vmem_check every check_every operations. */
    double t0 = now(), end1 = t0 + seconds / 3, last_print = t0;
    workers[0].seed = seed | 1;
    while (now() < end1 && ok) {
        for (int i = 0; i < 1024; i++) {
            one_op(&workers[0]);
            if (check_every != 0 && ops_of(&workers[0]) % check_every == 0)
                ok &= check_all("during the single-threaded phase");
        }
        if (now() - last_print >= 10) {
            last_print = now();
            printf("soak: single-threaded: %lu ops so far\n", ops_of(&workers[0]));
        }
    }
    double t1 = now();
    release_all(&workers[0]);
    ok &= check_all("after the single-threaded phase");
    printf("soak: single-threaded: %lu ops in %.1f s (%.0f ops/s)\n", ops_of(&workers[0]),
           t1 - t0, (double)ops_of(&workers[0]) / (t1 - t0));

    /* Phase 2: `threads` threads on the same arenas; the main thread runs
     * vmem_check concurrently every few seconds. */
    atomic_store_explicit(&workers[0].ops, 0, memory_order_relaxed);
    pthread_t tid[MAX_THREADS];
    for (int i = 0; i < threads; i++) {
        workers[i].seed = (seed + 0x9e3779b97f4a7c15ULL * (uint64_t)(i + 1)) | 1;
        atomic_store_explicit(&workers[i].ops, 0, memory_order_relaxed);
        if (pthread_create(&tid[i], NULL, worker_main, &workers[i]) != 0) {
            fprintf(stderr, "soak: pthread_create failed\n");
            return 1;
        }
    }
    double t2 = now(), end2 = t0 + seconds;
    last_print = t2;
    while (now() < end2) {
        struct timespec pause = {0, 200 * 1000 * 1000};
        nanosleep(&pause, NULL);
        if (now() - last_print >= 10) {
            last_print = now();
            ok &= check_all("during the threaded phase");
            unsigned long total = 0;
            for (int i = 0; i < threads; i++)
                total += ops_of(&workers[i]);
            printf("soak: %d threads: %lu ops so far\n", threads, total);
        }
    }
    atomic_store(&stop, true);
    for (int i = 0; i < threads; i++)
        pthread_join(tid[i], NULL);
    double t3 = now();
    unsigned long total = 0;
    for (int i = 0; i < threads; i++) {
        total += ops_of(&workers[i]);
        release_all(&workers[i]);
    }
    printf("soak: %d threads: %lu ops in %.1f s (%.0f ops/s)\n", threads, total, t3 - t2,
           (double)total / (t3 - t2));

    /* The end: everything freed, every arena consistent and empty. */
    ok &= check_all("at the end");
    for (int i = 0; i < NARENAS; i++) {
        VmemStat st;
        if (vmem_stat(&arenas[i].vm, &st) != 0 || st.in_use != 0 || st.alloc != st.free) {
            fprintf(stderr, "soak: %s not empty at the end: in_use %#zx, %zu allocs, %zu frees\n",
                    arenas[i].name, st.in_use, st.alloc, st.free);
            ok = false;
        }
    }
    if (arenas[AC].vm.stat.import != 0) {
        fprintf(stderr, "soak: C still holds %#zx imported with nothing allocated\n",
                arenas[AC].vm.stat.import);
        ok = false;
    }
    vmem_destroy(&arenas[AC].vm);
    for (int i = 0; i < AC; i++)
        vmem_destroy(&arenas[i].vm);
    unsigned long o = atomic_load(&overlaps), m = atomic_load(&misuses),
                  b = atomic_load(&bad_results);
    printf("soak: overlaps %lu, misuse reports %lu, bad results %lu, pages outstanding %zu\n", o,
           m, b, vmem_posix_pages_outstanding());
    ok &= o == 0 && m == 0 && b == 0;
    printf("soak: %s\n", ok ? "vmem_check clean, nothing overlapped: PASS" : "FAIL");
    return ok ? 0 : 1;
}
