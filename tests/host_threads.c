/*
 * host_threads.c - host-only tests that need threads or CPUs: a
 * multi-threaded stress of every arena kind against a shared ownership
 * table, VM_SLEEP / VM_NOSLEEP behaviour, and where the quantum caches
 * take objects from when the caller moves between CPUs. Uses pthreads and
 * CPU affinity, so it is not part of the freestanding suites the test
 * kernel runs.
 *
 * The ownership table has one byte per quantum of each arena's range. A
 * thread that gets [addr, addr + size) swaps every byte to "owned" and the
 * old value must be "free"; before freeing, it swaps them back. Two live
 * allocations that overlap, on any arena, in any thread, fail the test.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "test_support.h"
#include "vmem_config.h"
#include "vmem_port.h"
#include "vmem_posix.h"

#if defined(__x86_64__) && defined(__linux__) && defined(__has_include)
#if __has_include(<sys/rseq.h>) && __has_include(<linux/membarrier.h>)
#include <linux/membarrier.h>
#include <sys/rseq.h>
#include <sys/syscall.h>
#define CLAIMS_BUILT 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#undef CLAIMS_BUILT
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#undef CLAIMS_BUILT
#endif
#endif

#define Q 0x1000UL
/* Where the arenas' ranges lie: above 4 GiB on 64-bit, below it on 32-bit,
 * where they cannot exist higher (the ranges are never touched as memory,
 * so any disjoint bases do; their sizes are the same everywhere). */
#if UINTPTR_MAX > 0xffffffffu
#define SOURCE_BASE 0x100000000UL
#define PLAIN_BASE 0x200000000UL
#define CACHED_BASE 0x300000000UL
#else
#define SOURCE_BASE 0x10000000UL
#define PLAIN_BASE 0x20000000UL
#define CACHED_BASE 0x30000000UL
#endif
#define SOURCE_QUANTA 65536UL
#define PLAIN_QUANTA 32768UL
#define CACHED_QUANTA 32768UL
#define OPS_PER_THREAD 60000
#define LIVE_PER_THREAD 256

struct owned_range {
    uintptr_t base;
    size_t quanta;
    _Atomic unsigned char *owner;
};

static _Atomic unsigned char source_owner[SOURCE_QUANTA];
static _Atomic unsigned char plain_owner[PLAIN_QUANTA];
static _Atomic unsigned char cached_owner[CACHED_QUANTA];
static atomic_int overlaps, escapes;

/* Arenas: plain, cached, and a child importing from source. */
static Vmem source, plain, cached, child;

struct target {
    Vmem *vm;
    struct owned_range *range;
    bool cached;
};

static struct owned_range source_range = {SOURCE_BASE, SOURCE_QUANTA, source_owner};
static struct owned_range plain_range = {PLAIN_BASE, PLAIN_QUANTA, plain_owner};
static struct owned_range cached_range = {CACHED_BASE, CACHED_QUANTA, cached_owner};

static void claim(struct owned_range *range, uintptr_t addr, size_t size, unsigned char to)
{
    if (addr < range->base || addr + size > range->base + range->quanta * Q) {
        atomic_fetch_add(&escapes, 1);
        return;
    }
    for (size_t q = (addr - range->base) / Q; q < (addr + size - range->base) / Q; q++)
        if (atomic_exchange(&range->owner[q], to) == to)
            atomic_fetch_add(&overlaps, 1);
}

struct live {
    struct target *target;
    uintptr_t addr;
    size_t size;
    bool constrained;
};

struct worker {
    pthread_t thread;
    uint64_t seed;
    struct target *targets;
    size_t ntargets;
    struct live live[LIVE_PER_THREAD];
    size_t nlive;
};

static const int policies[] = {0, VM_INSTANTFIT, VM_BESTFIT, VM_FIRSTFIT, VM_NEXTFIT,
                               VM_ENDALLOC, VM_BESTFIT | VM_ENDALLOC};

static void release(struct live *item)
{
    claim(item->target->range, item->addr, item->size, 0);
    if (item->constrained)
        vmem_xfree(item->target->vm, TS_PTR(item->addr), item->size);
    else
        vmem_free(item->target->vm, TS_PTR(item->addr), item->size);
}

static void *stress_worker(void *arg)
{
    struct worker *w = arg;
    VtestRng rng;
    vtest_rng_seed(&rng, w->seed);
    for (int op = 0; op < OPS_PER_THREAD; op++) {
        bool do_free = w->nlive == LIVE_PER_THREAD || (w->nlive > 0 && vtest_rng_below(&rng, 2));
        if (do_free) {
            size_t i = (size_t)vtest_rng_below(&rng, w->nlive);
            release(&w->live[i]);
            w->live[i] = w->live[--w->nlive];
            continue;
        }
        struct target *t = &w->targets[vtest_rng_below(&rng, w->ntargets)];
        size_t size = (size_t)(1 + vtest_rng_below(&rng, t->cached ? 8 : 16)) * Q;
        int flags = policies[vtest_rng_below(&rng, sizeof(policies) / sizeof(policies[0]))] |
                    VM_NOSLEEP;
        bool constrained = vtest_rng_below(&rng, 4) == 0;
        void *got;
        if (constrained) {
            size_t align = Q << vtest_rng_below(&rng, 5);
            got = vmem_xalloc(t->vm, size, align, 0, 0, NULL, NULL, flags);
            if (got != NULL && TS_ADDR(got) % align != 0)
                atomic_fetch_add(&escapes, 1);
        } else {
            got = vmem_alloc(t->vm, size, flags);
        }
        if (got == NULL)
            continue;
        claim(t->range, TS_ADDR(got), size, 1);
        w->live[w->nlive++] = (struct live){t, TS_ADDR(got), size, constrained};
    }
    while (w->nlive > 0)
        release(&w->live[--w->nlive]);
    return NULL;
}

static bool setup_arenas(void)
{
    return vmem_init(&source, "mt-source", TS_PTR(SOURCE_BASE), SOURCE_QUANTA * Q, Q, NULL, NULL,
                     NULL, 4 * Q, VM_NOSLEEP) == 0 &&
           vmem_init(&plain, "mt-plain", TS_PTR(PLAIN_BASE), PLAIN_QUANTA * Q, Q, NULL, NULL,
                     NULL, 0, VM_NOSLEEP) == 0 &&
           vmem_init(&cached, "mt-cached", TS_PTR(CACHED_BASE), CACHED_QUANTA * Q, Q, NULL, NULL,
                     NULL, 8 * Q, VM_NOSLEEP) == 0 &&
           vmem_init(&child, "mt-child", NULL, 0, Q, vmem_alloc, vmem_free, &source, 0,
                     VM_NOSLEEP) == 0;
}

static void run_stress(size_t nthreads)
{
    static struct worker workers[8];
    struct target targets[] = {
        {&plain, &plain_range, false},
        {&cached, &cached_range, true},
        {&child, &source_range, false},
        {&source, &source_range, true},
    };
    atomic_store(&overlaps, 0);
    atomic_store(&escapes, 0);
    VT_ASSERT(setup_arenas());
    for (size_t i = 0; i < nthreads; i++) {
        workers[i].seed = 0x5eed0000 + nthreads * 16 + i;
        workers[i].targets = targets;
        workers[i].ntargets = sizeof(targets) / sizeof(targets[0]);
        workers[i].nlive = 0;
        VT_ASSERT(pthread_create(&workers[i].thread, NULL, stress_worker, &workers[i]) == 0);
    }
    for (size_t i = 0; i < nthreads; i++)
        pthread_join(workers[i].thread, NULL);
    VT_ASSERT(atomic_load(&overlaps) == 0);
    VT_ASSERT(atomic_load(&escapes) == 0);
    Vmem *arenas[] = {&child, &plain, &cached, &source};
    for (size_t i = 0; i < 4; i++) {
        VT_CONSISTENT(arenas[i]);
        VT_ASSERT(vmem_size(arenas[i], VMEM_ALLOC) == 0);
    }
    /* Every imported span went home once the child was empty. */
    VT_ASSERT(child.stat.import == 0 && child.stat.total == 0);
    for (size_t i = 0; i < 4; i++)
        vmem_destroy(arenas[i]);
}

static void stress_2_threads_never_overlap(void) { run_stress(2); }
static void stress_4_threads_never_overlap(void) { run_stress(4); }
static void stress_8_threads_never_overlap(void) { run_stress(8); }

/* A reap enters every CPU's slot of every cache from the reaping thread's
 * CPU, swapping in where the owners claim (vmem_qcache.c, Claims and
 * swaps): one that got in beside a hit would flush the magazine the hit
 * pops from, and hand an object out twice. Workers use the cached arena
 * while another thread reaps it again and again. */
static atomic_bool workers_done;

static void *reaper(void *arg)
{
    Vmem *vm = arg;
    unsigned long reaps = 0;
    while (!atomic_load(&workers_done) || reaps == 0) {
        vmem_reap(vm);
        reaps++;
    }
    return (void *)(uintptr_t)reaps;
}

static void reaps_beside_cache_hits_never_hand_out_an_object_twice(void)
{
    static struct worker workers[3];
    struct target targets[] = {{&cached, &cached_range, true}};
    atomic_store(&overlaps, 0);
    atomic_store(&escapes, 0);
    atomic_store(&workers_done, false);
    VT_ASSERT(setup_arenas());
    pthread_t reaping;
    VT_ASSERT(pthread_create(&reaping, NULL, reaper, &cached) == 0);
    for (size_t round = 0; round < 6; round++) {
        for (size_t i = 0; i < 3; i++) {
            workers[i] = (struct worker){
                .seed = 0x5eedeaf0 + round * 16 + i, .targets = targets, .ntargets = 1};
            VT_ASSERT(pthread_create(&workers[i].thread, NULL, stress_worker, &workers[i]) == 0);
        }
        for (size_t i = 0; i < 3; i++)
            pthread_join(workers[i].thread, NULL);
    }
    atomic_store(&workers_done, true);
    void *reaps;
    pthread_join(reaping, &reaps);
    VT_ASSERT((uintptr_t)reaps > 0);
    VT_ASSERT(atomic_load(&overlaps) == 0);
    VT_ASSERT(atomic_load(&escapes) == 0);
    VT_CONSISTENT(&cached);
    VT_ASSERT(vmem_size(&cached, VMEM_ALLOC) == 0);
    Vmem *arenas[] = {&child, &plain, &cached, &source};
    ts_capture_misuse();
    for (size_t i = 0; i < 4; i++)
        vmem_destroy(arenas[i]);
    VT_ASSERT(vtest_env_misuse_count() == 0);
}

/* ---- VM_SLEEP ------------------------------------------------------------------ */

struct sleeper {
    Vmem *vm;
    size_t size;
    void *got;
    atomic_bool done;
};

static void *sleeping_alloc(void *arg)
{
    struct sleeper *s = arg;
    s->got = vmem_alloc(s->vm, s->size, VM_SLEEP);
    atomic_store(&s->done, true);
    return NULL;
}

static void pause_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Waits up to `ms` for flag; true if it was set. */
static bool eventually(atomic_bool *flag, long ms)
{
    for (long waited = 0; waited < ms; waited += 5) {
        if (atomic_load(flag))
            return true;
        pause_ms(5);
    }
    return atomic_load(flag);
}

static void sleeping_alloc_is_woken_by_a_free(void)
{
    static Vmem vm;
    VT_ASSERT(vmem_init(&vm, "sleep-free", TS_PTR(0x10000), 4 * Q, Q, NULL, NULL, NULL, 0,
                        VM_NOSLEEP) == 0);
    void *all = vmem_alloc(&vm, 4 * Q, VM_NOSLEEP);
    VT_ASSERT(all != NULL);
    struct sleeper s = {&vm, 2 * Q, NULL, false};
    pthread_t thread;
    VT_ASSERT(pthread_create(&thread, NULL, sleeping_alloc, &s) == 0);
    VT_ASSERT(!eventually(&s.done, 100)); /* it waits while nothing is free */
    vmem_free(&vm, all, 4 * Q);
    bool woke = eventually(&s.done, 5000);
    if (!woke) {
        /* Do not leave a thread blocked on an arena we destroy. */
        vmem_add(&vm, TS_PTR(0x100000), 4 * Q, VM_NOSLEEP);
    }
    pthread_join(thread, NULL);
    VT_ASSERT(woke);
    VT_ASSERT(s.got == TS_PTR(0x10000));
    vmem_free(&vm, s.got, 2 * Q);
    vmem_destroy(&vm);
}

static void sleeping_alloc_is_woken_by_vmem_add(void)
{
    static Vmem vm;
    VT_ASSERT(vmem_init(&vm, "sleep-add", TS_PTR(0x10000), Q, Q, NULL, NULL, NULL, 0,
                        VM_NOSLEEP) == 0);
    struct sleeper s = {&vm, 8 * Q, NULL, false};
    pthread_t thread;
    VT_ASSERT(pthread_create(&thread, NULL, sleeping_alloc, &s) == 0);
    VT_ASSERT(!eventually(&s.done, 100));
    VT_ASSERT(vmem_add(&vm, TS_PTR(0x800000), 8 * Q, VM_NOSLEEP) != NULL);
    VT_ASSERT(eventually(&s.done, 5000));
    pthread_join(thread, NULL);
    VT_ASSERT(s.got == TS_PTR(0x800000));
    vmem_free(&vm, s.got, 8 * Q);
    vmem_destroy(&vm);
}

struct nosleeper {
    Vmem *vm;
    void *got;
    atomic_bool done;
};

static void *nosleep_alloc(void *arg)
{
    struct nosleeper *s = arg;
    s->got = vmem_alloc(s->vm, 2 * Q, VM_NOSLEEP);
    atomic_store(&s->done, true);
    return NULL;
}

static void nosleep_alloc_fails_at_once_when_full(void)
{
    static Vmem vm;
    VT_ASSERT(vmem_init(&vm, "nosleep", TS_PTR(0x10000), 2 * Q, Q, NULL, NULL, NULL, 0,
                        VM_NOSLEEP) == 0);
    void *all = vmem_alloc(&vm, 2 * Q, VM_NOSLEEP);
    VT_ASSERT(all != NULL);
    struct nosleeper s = {&vm, TS_PTR(1), false};
    pthread_t thread;
    VT_ASSERT(pthread_create(&thread, NULL, nosleep_alloc, &s) == 0);
    bool returned = eventually(&s.done, 2000);
    vmem_free(&vm, all, 2 * Q); /* unblocks it if it wrongly waited */
    pthread_join(thread, NULL);
    VT_ASSERT(returned);
    VT_ASSERT(s.got == NULL);
    vmem_destroy(&vm);
}

/* ---- The POSIX port's CPU id ----------------------------------------------------------- */

/* Moves the calling thread onto `cpu` alone; true once it runs there. */
static bool pin_to(int cpu)
{
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    return sched_setaffinity(0, sizeof(one), &one) == 0 && sched_getcpu() == cpu;
}

/* The caches index their per-CPU slots by vmem_port_cpu_id(), which the
 * POSIX port reads from the thread's restartable-sequences area when glibc
 * registered one: pinned to each CPU in turn, it must name that CPU, as
 * sched_getcpu() does (the same answer whichever way it was found). */
static void port_cpu_id_names_the_cpu_the_thread_runs_on(void)
{
    cpu_set_t saved;
    VT_ASSERT(sched_getaffinity(0, sizeof(saved), &saved) == 0);
    int checked = 0, wrong = -1;
    for (int c = 0; c < CPU_SETSIZE && wrong < 0; c++) {
        if (!CPU_ISSET(c, &saved))
            continue;
        if (!pin_to(c) || vmem_port_cpu_id() != (unsigned)c)
            wrong = c;
        checked++;
    }
    /* The affinity comes back before any verdict: later tests need every CPU. */
    VT_ASSERT(sched_setaffinity(0, sizeof(saved), &saved) == 0);
    VT_ASSERT(wrong < 0);
    VT_ASSERT(checked >= 1);
}

/* ---- Quantum caches: each CPU's objects from slabs of its own ----------------------- */

/*
 * The caches keep the objects a CPU holds in slabs that CPU carved (their
 * state bytes then stay in its cache: see "Homes" in vmem_qcache.c). These
 * tests move the calling thread between two CPUs with sched_setaffinity,
 * so they pass without checking anything on a machine that offers one;
 * and since a refused slot (check-slot-faults) sends objects back to their
 * slabs early, which lets another CPU take a slab legitimately, they check
 * where objects come from only when slots never refuse.
 */
#define SLOT_FAULTS (VMEM_QCACHE_SLOT_FAULT_PERIOD > 0)
#define HOME_BASE 0x10000000UL

struct two_cpus {
    int cpu[2];
    cpu_set_t saved; /* the affinity to restore */
};

/* Two CPUs this thread may run on, with different quantum-cache slots. */
static bool two_cpus_find(struct two_cpus *t)
{
    if (sched_getaffinity(0, sizeof(t->saved), &t->saved) != 0)
        return false;
    int found = 0;
    for (int c = 0; c < CPU_SETSIZE && found < 2; c++)
        if (CPU_ISSET(c, &t->saved) &&
            (found == 0 || c % VMEM_MAX_CPUS != t->cpu[0] % VMEM_MAX_CPUS))
            t->cpu[found++] = c;
    if (found < 2)
        vtest_puts("  (nothing checked: this machine offers one CPU)\n");
    return found == 2;
}

/* Moves the calling thread onto CPU `i` of t; true once it runs there. */
static bool run_on(const struct two_cpus *t, int i) { return pin_to(t->cpu[i]); }

/* Runs body on a machine with two CPUs, restoring the affinity after it. */
static void with_two_cpus(void (*body)(const struct two_cpus *))
{
    struct two_cpus t;
    if (!two_cpus_find(&t))
        return;
    body(&t);
    sched_setaffinity(0, sizeof(t.saved), &t.saved);
}

/* The arena segment (a slab) holding addr, as an index into segs, or n. */
static size_t slab_holding(const struct ts_segment *segs, size_t n, void *addr)
{
    size_t i = 0;
    while (i < n && !(TS_ADDR(addr) >= segs[i].addr && TS_ADDR(addr) < segs[i].addr + segs[i].size))
        i++;
    return i;
}

/* Caches up to 4 quanta: slabs of 16 quanta, each 16 one-quantum objects. */
static bool make_home_arena(Vmem *vm, const char *name)
{
    return vmem_init(vm, name, TS_PTR(HOME_BASE), 1024 * Q, Q, NULL, NULL, NULL, 4 * Q,
                     VM_NOSLEEP) == 0;
}

/* Allocates `count` one-quantum objects; false if any allocation fails. */
static bool take_quanta(Vmem *vm, void **objects, size_t count)
{
    for (size_t k = 0; k < count; k++)
        if ((objects[k] = vmem_alloc(vm, Q, VM_NOSLEEP)) == NULL)
            return false;
    return true;
}

static void give_back_quanta(Vmem *vm, void *const *objects, size_t count)
{
    for (size_t k = 0; k < count; k++)
        vmem_free(vm, objects[k], Q);
}

static void two_cpus_allocating_use_two_slabs(const struct two_cpus *t)
{
    static Vmem vm;
    VT_ASSERT(make_home_arena(&vm, "qc-homes"));
    void *objects[2][4];
    for (int i = 0; i < 2; i++) {
        VT_ASSERT(run_on(t, i));
        VT_ASSERT(take_quanta(&vm, objects[i], 4));
    }
    /* The first CPU's slab still has 12 free objects, yet the second CPU
     * carved a slab of its own rather than share that one. */
    struct ts_segment segs[4];
    size_t n = ts_collect(&vm, VMEM_ALLOC, segs, 4);
    VT_ASSERT(n == 2);
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < 4; k++)
            VT_ASSERT(slab_holding(segs, n, objects[i][k]) == slab_holding(segs, n, objects[i][0]));
    VT_ASSERT(slab_holding(segs, n, objects[0][0]) != slab_holding(segs, n, objects[1][0]));
    for (int i = 0; i < 2; i++)
        give_back_quanta(&vm, objects[i], 4);
    VT_CONSISTENT(&vm);
    vmem_destroy(&vm);
}

static void cached_objects_of_two_cpus_come_from_different_slabs(void)
{
    with_two_cpus(two_cpus_allocating_use_two_slabs);
}

/* Whether any of `count` objects lies in one of the slabs in `slabs`. */
static bool any_in(void *const *objects, size_t count, const struct ts_segment *slabs, size_t n)
{
    for (size_t k = 0; k < count; k++)
        if (slab_holding(slabs, n, objects[k]) < n)
            return true;
    return false;
}

/* Rounds in a magazine, and the one-quantum objects of a slab here. */
#define ROUNDS VMEM_QCACHE_MAG_ROUNDS
#define SLAB_OBJECTS 16

static void second_cpu_carves_rather_than_take_a_few_magazines(const struct two_cpus *t)
{
    enum { FIRST = 3 * ROUNDS + 5, SECOND = ROUNDS + 5 };
    static Vmem vm;
    static void *first[FIRST], *second[SECOND];
    VT_ASSERT(make_home_arena(&vm, "qc-own-mags"));
    VT_ASSERT(run_on(t, 0));
    VT_ASSERT(take_quanta(&vm, first, FIRST));
    static struct ts_segment first_slabs[FIRST / SLAB_OBJECTS + 2];
    size_t n = ts_collect(&vm, VMEM_ALLOC, first_slabs, FIRST / SLAB_OBJECTS + 2);
    VT_ASSERT(n == (FIRST + SLAB_OBJECTS - 1) / SLAB_OBJECTS);
    /* Two magazines stay with this CPU, two more go full to the depot:
     * fewer than the depot keeps before it flushes one. */
    give_back_quanta(&vm, first, FIRST);
    VT_ASSERT(run_on(t, 1));
    VT_ASSERT(take_quanta(&vm, second, SECOND));
    if (!SLOT_FAULTS)
        VT_ASSERT(!any_in(second, SECOND, first_slabs, n));
    give_back_quanta(&vm, second, SECOND);
    VT_ASSERT(vmem_size(&vm, VMEM_ALLOC) == 0);
    VT_CONSISTENT(&vm);
    vmem_destroy(&vm);
}

static void a_cpu_takes_another_cpus_magazines_only_from_a_full_depot(void)
{
    with_two_cpus(second_cpu_carves_rather_than_take_a_few_magazines);
}

static void second_cpu_takes_the_surplus_of_a_full_depot(const struct two_cpus *t)
{
    static Vmem vm;
    static void *first[6 * ROUNDS], *second[ROUNDS];
    VT_ASSERT(make_home_arena(&vm, "qc-surplus"));
    VT_ASSERT(run_on(t, 0));
    VT_ASSERT(take_quanta(&vm, first, 6 * ROUNDS));
    /* Two magazines stay with this CPU and four go full to the depot:
     * as many as it keeps (one more and it would flush one to the slabs). */
    give_back_quanta(&vm, first, 6 * ROUNDS);
    size_t slabs = vm.stat.alloc;
    VT_ASSERT(run_on(t, 1));
    VT_ASSERT(take_quanta(&vm, second, ROUNDS));
    /* One of those magazines served them all: no slab was carved. */
    if (!SLOT_FAULTS)
        VT_ASSERT(vm.stat.alloc == slabs);
    give_back_quanta(&vm, second, ROUNDS);
    VT_ASSERT(vmem_size(&vm, VMEM_ALLOC) == 0);
    VT_CONSISTENT(&vm);
    vmem_destroy(&vm);
}

static void a_full_depot_gives_its_surplus_to_another_cpu(void)
{
    with_two_cpus(second_cpu_takes_the_surplus_of_a_full_depot);
}

static bool one_of(void *object, void *const *objects, size_t count)
{
    for (size_t k = 0; k < count; k++)
        if (objects[k] == object)
            return true;
    return false;
}

static void objects_freed_elsewhere_come_back(const struct two_cpus *t)
{
    enum { FIRST = ROUNDS + 5 };
    static Vmem vm;
    static void *first[FIRST], *again[ROUNDS];
    VT_ASSERT(make_home_arena(&vm, "qc-away"));
    VT_ASSERT(run_on(t, 0));
    VT_ASSERT(take_quanta(&vm, first, FIRST));
    /* Freed on the other CPU: a magazine's worth fill one that goes to
     * the depot as the first CPU's, five wait in the other CPU's. */
    VT_ASSERT(run_on(t, 1));
    give_back_quanta(&vm, first, FIRST);
    /* The first CPU gets them back, though its last slab has objects
     * never handed out. */
    VT_ASSERT(run_on(t, 0));
    for (int k = 0; k < ROUNDS; k++) {
        VT_ASSERT((again[k] = vmem_alloc(&vm, Q, VM_NOSLEEP)) != NULL);
        if (!SLOT_FAULTS)
            VT_ASSERT(one_of(again[k], first, FIRST));
    }
    give_back_quanta(&vm, again, ROUNDS);
    VT_ASSERT(vmem_size(&vm, VMEM_ALLOC) == 0);
    VT_CONSISTENT(&vm);
    /* Destroy's drain empties the other CPU's magazine of strays too. */
    ts_capture_misuse();
    vmem_destroy(&vm);
    VT_ASSERT(vtest_env_misuse_count() == 0);
}

static void objects_freed_on_another_cpu_go_back_to_their_home_cpu(void)
{
    with_two_cpus(objects_freed_elsewhere_come_back);
}

/* ---- The POSIX port's per-CPU claims ----------------------------------------------- */

/* Whether this machine and build have what the port's claims rest on (the
 * port decides the same way; vmem_posix_cpu_claims() says what it
 * decided): x86_64 Linux outside the thread sanitizer, an rseq area glibc
 * registered (not under valgrind), membarrier's rseq fence, and no more
 * CPUs than the caches have slots. */
static bool claims_expected(void)
{
#ifdef CLAIMS_BUILT
    long fences = syscall(__NR_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    long cpus = sysconf(_SC_NPROCESSORS_CONF);
    return __rseq_size != 0 && fences > 0 && (fences & MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ) &&
           cpus > 0 && cpus <= VMEM_MAX_CPUS;
#else
    return false;
#endif
}

/* A claim that is cut short (preempted, migrated) leaves nothing: try again. */
static long claim_until_done(unsigned *words, size_t stride, unsigned count)
{
    long got;
    do
        got = vmem_port_cpu_claim(words, stride, count);
    while (got == VMEM_CLAIM_AGAIN);
    return got;
}

/*
 * The quantum caches' hits enter their CPU's slot by a claim where the
 * port has them. Pinned to each CPU in turn, a claim must take exactly
 * that CPU's word (odd afterwards, every other word untouched), refuse it
 * while it is odd, and refuse a CPU past `count` as unavailable, writing
 * nothing; where claims are off it must say unsupported, always. A cached
 * allocation first, so that the library's own use made the decision.
 */
static void port_claim_takes_the_word_of_the_cpu_it_runs_on(void)
{
    static Vmem vm;
    VT_ASSERT(vmem_init(&vm, "claims", TS_PTR(CACHED_BASE), 64 * Q, Q, NULL, NULL, NULL, 2 * Q,
                        VM_NOSLEEP) == 0);
    void *object = vmem_alloc(&vm, Q, VM_NOSLEEP);
    VT_ASSERT(object != NULL);
    vmem_free(&vm, object, Q);
    vmem_destroy(&vm);
    bool on = vmem_posix_cpu_claims();
    VT_ASSERT(on == claims_expected());

    enum { STRIDE = 3 }; /* words apart, as slots are */
    unsigned words[VMEM_MAX_CPUS * STRIDE];
    cpu_set_t saved;
    VT_ASSERT(sched_getaffinity(0, sizeof(saved), &saved) == 0);
    int checked = 0, wrong = -1;
    for (int c = 0; c < CPU_SETSIZE && c < VMEM_MAX_CPUS && wrong < 0; c++) {
        if (!CPU_ISSET(c, &saved))
            continue;
        if (!pin_to(c)) {
            wrong = c;
            break;
        }
        for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
            words[i] = 4; /* even: free, an exit already counted */
        size_t stride = STRIDE * sizeof(unsigned);
        long first = claim_until_done(words, stride, VMEM_MAX_CPUS);
        long second = claim_until_done(words, stride, VMEM_MAX_CPUS);
        long beyond = claim_until_done(words, stride, (unsigned)c);
        bool others_untouched = true;
        for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
            if (i != (size_t)c * STRIDE && words[i] != 4)
                others_untouched = false;
        if (on ? first != c || words[c * STRIDE] != 5 || second != VMEM_CLAIM_BUSY ||
                     words[c * STRIDE] != 5 || beyond != VMEM_CLAIM_UNAVAILABLE ||
                     !others_untouched
               : first != VMEM_CLAIM_UNSUPPORTED || second != VMEM_CLAIM_UNSUPPORTED ||
                     beyond != VMEM_CLAIM_UNSUPPORTED || words[c * STRIDE] != 4 ||
                     !others_untouched)
            wrong = c;
        checked++;
    }
    VT_ASSERT(sched_setaffinity(0, sizeof(saved), &saved) == 0);
    VT_ASSERT(wrong < 0);
    VT_ASSERT(checked >= 1);
}

/*
 * Claims and compare-and-swap from another CPU share one word, as a hit
 * and a drain share a slot: the swapper writes a value of its own, fences
 * (vmem_port_cpu_fence) and counts as inside only if its value is still
 * there. One thread claims CPU A's word from CPU A while another swaps it
 * from CPU B, each doing an unprotected read-pause-write of a counter
 * while inside: every entry must have been alone (the counter equals the
 * entries), and both sides must have got in.
 */
struct exclusion {
    unsigned words[VMEM_MAX_CPUS]; /* only CPU A's is used */
    unsigned *word;                /* that one */
    unsigned long counter; /* updated only inside: no atomics on purpose */
    unsigned long claimed, swapped;
    atomic_bool done;
    int cpu[2];
};

static void bump_inside(unsigned long *counter)
{
    unsigned long seen = *(volatile unsigned long *)counter;
    for (volatile int pause = 0; pause < 50; pause++) {
    }
    *(volatile unsigned long *)counter = seen + 1;
}

static void leave(unsigned *word)
{
    unsigned seen = __atomic_load_n(word, __ATOMIC_RELAXED);
    __atomic_store_n(word, (seen & ~3u) + 4, __ATOMIC_RELEASE);
}

static void *claimer(void *arg)
{
    struct exclusion *x = arg;
    if (!pin_to(x->cpu[0]))
        return NULL;
    while (!atomic_load(&x->done)) {
        if (vmem_port_cpu_claim(x->words, sizeof(unsigned), VMEM_MAX_CPUS) != x->cpu[0])
            continue;
        bump_inside(&x->counter);
        x->claimed++;
        leave(x->word);
    }
    return NULL;
}

static void port_claims_and_fenced_swaps_exclude_each_other(const struct two_cpus *t)
{
    if (!vmem_posix_cpu_claims() || t->cpu[0] >= VMEM_MAX_CPUS) {
        vtest_puts("  (nothing checked: claims are off here)\n");
        return;
    }
    struct exclusion *x = calloc(1, sizeof(*x));
    VT_ASSERT(x != NULL);
    x->cpu[0] = t->cpu[0];
    x->cpu[1] = t->cpu[1];
    x->word = &x->words[t->cpu[0]];
    pthread_t thread;
    VT_ASSERT(pthread_create(&thread, NULL, claimer, x) == 0);
    VT_ASSERT(run_on(t, 1));
    /* Each successful swap pays a fence (an IPI to the claimer's CPU). */
    for (long round = 0; round < 1000000 && (x->swapped < 2000 || x->claimed == 0); round++) {
        unsigned seen = __atomic_load_n(x->word, __ATOMIC_RELAXED);
        unsigned inside = seen | 3;
        if ((seen & 1) != 0 || !__atomic_compare_exchange_n(x->word, &seen, inside, false,
                                                            __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
            continue;
        vmem_port_cpu_fence();
        if (__atomic_load_n(x->word, __ATOMIC_ACQUIRE) != inside)
            continue; /* a claim got in between: it is inside, not this thread */
        bump_inside(&x->counter);
        x->swapped++;
        leave(x->word);
    }
    atomic_store(&x->done, true);
    VT_ASSERT(pthread_join(thread, NULL) == 0);
    VT_ASSERT(x->claimed > 0);
    VT_ASSERT(x->swapped > 0);
    VT_ASSERT(x->counter == x->claimed + x->swapped);
    VT_ASSERT((*x->word & 1) == 0);
    free(x);
}

static void claims_and_fenced_swaps_exclude_each_other(void)
{
    with_two_cpus(port_claims_and_fenced_swaps_exclude_each_other);
}

VTEST_SUITE(suite_threads, VTEST_CASE(stress_2_threads_never_overlap),
            VTEST_CASE(stress_4_threads_never_overlap), VTEST_CASE(stress_8_threads_never_overlap),
            VTEST_CASE(reaps_beside_cache_hits_never_hand_out_an_object_twice),
            VTEST_CASE(sleeping_alloc_is_woken_by_a_free),
            VTEST_CASE(sleeping_alloc_is_woken_by_vmem_add),
            VTEST_CASE(nosleep_alloc_fails_at_once_when_full),
            VTEST_CASE(port_cpu_id_names_the_cpu_the_thread_runs_on),
            VTEST_CASE(port_claim_takes_the_word_of_the_cpu_it_runs_on),
            VTEST_CASE(claims_and_fenced_swaps_exclude_each_other),
            VTEST_CASE(cached_objects_of_two_cpus_come_from_different_slabs),
            VTEST_CASE(a_cpu_takes_another_cpus_magazines_only_from_a_full_depot),
            VTEST_CASE(a_full_depot_gives_its_surplus_to_another_cpu),
            VTEST_CASE(objects_freed_on_another_cpu_go_back_to_their_home_cpu));
