/*
 * host_threads.c - host-only tests that need threads or CPUs: a
 * multi-threaded stress of every arena kind against a shared ownership
 * table, VM_SLEEP / VM_NOSLEEP behaviour (through the quantum caches too),
 * statistics read while other threads use the caches, and the POSIX
 * port's CPU sections and their contract check. Uses pthreads and
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
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test_support.h"
#include "vmem_config.h"
#include "vmem_port.h"
#include "vmem_posix.h"

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
    static struct worker workers[16];
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
static void stress_16_threads_never_overlap(void) { run_stress(16); }

/* A reap empties the depot and its own CPU's magazines (in that CPU's
 * section) while other threads pop and push on theirs: one that emptied a
 * magazine a hit was using would hand an object out twice. Workers use
 * the cached arena while another thread reaps it again and again. */
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

/* ---- VM_SLEEP through the quantum caches ------------------------------------------ */

/*
 * Lost wake-up: a 64-quantum arena whose caches serve one quantum. This
 * thread holds all 64 cached objects; another asks VM_SLEEP for 32 quanta
 * and sleeps. Freed into the caches, the objects must reach the arena
 * while it sleeps (every free drains once a request waits), and it wakes.
 */
static void sleeping_alloc_is_woken_by_frees_into_the_caches(void)
{
    static Vmem vm;
    static void *objects[64];
    VT_ASSERT(vmem_init(&vm, "sleep-cached", TS_PTR(0x40000000), 64 * Q, Q, NULL, NULL, NULL, Q,
                        VM_NOSLEEP) == 0);
    for (int i = 0; i < 64; i++)
        VT_ASSERT((objects[i] = vmem_alloc(&vm, Q, VM_NOSLEEP)) != NULL);
    VT_ASSERT(vmem_size(&vm, VMEM_FREE) == 0);
    struct sleeper s = {&vm, 32 * Q, NULL, false};
    pthread_t thread;
    VT_ASSERT(pthread_create(&thread, NULL, sleeping_alloc, &s) == 0);
    VT_ASSERT(!eventually(&s.done, 100)); /* it waits while nothing is free */
    for (int i = 0; i < 64; i++)
        vmem_free(&vm, objects[i], Q);
    bool woke = eventually(&s.done, 3000);
    if (!woke)
        vmem_reap(&vm); /* so that the sleeper ends, and the test with it */
    pthread_join(thread, NULL);
    VT_ASSERT(woke);
    VT_ASSERT(s.got != NULL);
    VT_ASSERT(vmem_size(&vm, VMEM_ALLOC) == 32 * Q);
    vmem_free(&vm, s.got, 32 * Q);
    VT_CONSISTENT(&vm);
    vmem_destroy(&vm);
}

/* ---- Statistics read while the caches are in use ----------------------------------- */

/*
 * Every read of vmem_stat / vmem_size is a snapshot, even while other
 * threads allocate and free through the caches and reap them: in_use
 * never below zero or above total, no more frees than allocations, and
 * the allocated and free sizes always add up to the total.
 */
#define STATS_QUANTA 4096UL
#define STATS_LIVE 64

struct cache_user {
    pthread_t thread;
    Vmem *vm;
    uint64_t seed;
};

static atomic_bool users_stop;

static void *cache_user(void *arg)
{
    struct cache_user *u = arg;
    void *live[STATS_LIVE];
    size_t sizes[STATS_LIVE], nlive = 0;
    VtestRng rng;
    vtest_rng_seed(&rng, u->seed);
    while (!atomic_load_explicit(&users_stop, memory_order_relaxed)) {
        if (nlive == STATS_LIVE || (nlive > 0 && vtest_rng_below(&rng, 2))) {
            size_t i = (size_t)vtest_rng_below(&rng, nlive);
            vmem_free(u->vm, live[i], sizes[i]);
            live[i] = live[--nlive];
            sizes[i] = sizes[nlive];
            continue;
        }
        size_t size = (size_t)(1 + vtest_rng_below(&rng, 4)) * Q;
        if ((live[nlive] = vmem_alloc(u->vm, size, VM_NOSLEEP)) != NULL)
            sizes[nlive++] = size;
    }
    while (nlive > 0) {
        nlive--;
        vmem_free(u->vm, live[nlive], sizes[nlive]);
    }
    return NULL;
}

static void *stats_reaper(void *arg)
{
    while (!atomic_load_explicit(&users_stop, memory_order_relaxed))
        vmem_reap(arg);
    return NULL;
}

/* Reads until `reads` are done; returns the reads that broke a rule. */
static size_t impossible_reads(Vmem *vm, size_t reads)
{
    size_t bad = 0;
    for (size_t done = 0; done < reads; done += 4) {
        VmemStat st;
        bad += vmem_stat(vm, &st) != 0;
        size_t allocated = vmem_size(vm, VMEM_ALLOC);
        size_t free = vmem_size(vm, VMEM_FREE);
        size_t both = vmem_size(vm, VMEM_ALLOC | VMEM_FREE);
        bad += st.in_use > st.total || st.free > st.alloc || st.total != STATS_QUANTA * Q;
        bad += allocated > STATS_QUANTA * Q;
        bad += free > STATS_QUANTA * Q;
        bad += both != STATS_QUANTA * Q;
    }
    return bad;
}

static void stats_are_snapshots(size_t users, bool with_reaper)
{
    static Vmem vm;
    static struct cache_user user[4];
    VT_ASSERT(vmem_init(&vm, "stats-live", TS_PTR(CACHED_BASE), STATS_QUANTA * Q, Q, NULL, NULL,
                        NULL, 4 * Q, VM_NOSLEEP) == 0);
    atomic_store(&users_stop, false);
    for (size_t i = 0; i < users; i++) {
        user[i] = (struct cache_user){.vm = &vm, .seed = 0x57a7 + i};
        VT_ASSERT(pthread_create(&user[i].thread, NULL, cache_user, &user[i]) == 0);
    }
    pthread_t reaper_thread;
    if (with_reaper)
        VT_ASSERT(pthread_create(&reaper_thread, NULL, stats_reaper, &vm) == 0);
    size_t bad = impossible_reads(&vm, 2 * vtest_env_scale());
    atomic_store(&users_stop, true);
    for (size_t i = 0; i < users; i++)
        pthread_join(user[i].thread, NULL);
    if (with_reaper)
        pthread_join(reaper_thread, NULL);
    VT_ASSERT(bad == 0);
    VmemStat st;
    VT_ASSERT(vmem_stat(&vm, &st) == 0);
    VT_ASSERT(st.in_use == 0 && st.alloc == st.free && st.alloc > 0);
    VT_CONSISTENT(&vm);
    vmem_destroy(&vm);
}

static void stats_read_beside_one_cache_user_are_snapshots(void) { stats_are_snapshots(1, false); }

static void stats_read_beside_four_cache_users_and_a_reaper_are_snapshots(void)
{
    stats_are_snapshots(4, true);
}

/* ---- The POSIX port's CPU sections ------------------------------------------------- */

/* Moves the calling thread onto `cpu` alone; true once it runs there. */
static bool pin_to(int cpu)
{
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    return sched_setaffinity(0, sizeof(one), &one) == 0 && sched_getcpu() == cpu;
}

/*
 * Checked frees across CPUs: this thread and another, on two CPUs, free
 * the same cached object at the same moment, again and again. Each time
 * exactly one free is taken and the other reported as a double free;
 * afterwards every object of the arena is handed out exactly once.
 */
struct racer {
    Vmem *vm;
    int cpu;
};

static void *_Atomic race_object;
static atomic_int race_round, race_done, double_frees_reported;

static void count_double_free(const VmemMisuse *report)
{
    if (report->kind == VMEM_MISUSE_DOUBLE_FREE)
        atomic_fetch_add(&double_frees_reported, 1);
}

/* Spins until the next round is published, so that it frees at the same
 * moment as the publisher, then frees the object; -1 ends. */
static void *racing_free(void *arg)
{
    struct racer *r = arg;
    if (r->cpu >= 0)
        pin_to(r->cpu);
    for (int seen = 0;;) {
        int round;
        while ((round = atomic_load(&race_round)) == seen)
            ;
        if (round < 0)
            return NULL;
        vmem_free(r->vm, atomic_load(&race_object), Q);
        atomic_fetch_add(&race_done, 1);
        seen = round;
    }
}

static void racing_double_frees_on_two_cpus_are_caught_once(void)
{
    enum { ROUNDS = 1000, QUANTA = 256 };
    static Vmem vm;
    static unsigned char handed[QUANTA];
    VT_ASSERT(vmem_init(&vm, "race-free", TS_PTR(CACHED_BASE), QUANTA * Q, Q, NULL, NULL, NULL,
                        Q, VM_NOSLEEP) == 0);
    cpu_set_t saved;
    VT_ASSERT(sched_getaffinity(0, sizeof(saved), &saved) == 0);
    struct racer r[2] = {{&vm, -1}, {&vm, -1}};
    for (int c = 0, found = 0; c < CPU_SETSIZE && found < 2; c++)
        if (CPU_ISSET(c, &saved))
            r[found++].cpu = c;
    atomic_store(&double_frees_reported, 0);
    atomic_store(&race_round, 0);
    atomic_store(&race_done, 0);
    vmem_posix_set_misuse_handler(count_double_free);
    pthread_t other;
    VT_ASSERT(pthread_create(&other, NULL, racing_free, &r[1]) == 0);
    if (r[0].cpu >= 0)
        pin_to(r[0].cpu);
    bool once_each = true;
    for (int round = 1; round <= ROUNDS && once_each; round++) {
        void *object = vmem_alloc(&vm, Q, VM_NOSLEEP);
        atomic_store(&race_object, object);
        atomic_store(&race_round, round);
        vmem_free(&vm, object, Q);
        for (int spins = 0; atomic_load(&race_done) < round; spins++)
            if (spins > 1000)
                sched_yield();
        once_each = object != NULL && atomic_load(&double_frees_reported) == round;
    }
    atomic_store(&race_round, -1);
    pthread_join(other, NULL);
    vmem_posix_set_misuse_handler(NULL);
    VT_ASSERT(once_each);
    VT_ASSERT(vmem_size(&vm, VMEM_ALLOC) == 0);
    /* The freed objects sit in the two CPUs' magazines: a reap on each
     * brings them back (a reap reaches its own CPU's only). */
    for (int i = 0; i < 2; i++)
        if (r[i].cpu >= 0 && pin_to(r[i].cpu))
            vmem_reap(&vm);
    VT_ASSERT(sched_setaffinity(0, sizeof(saved), &saved) == 0);
    for (size_t q = 0; q < QUANTA; q++)
        handed[q] = 0;
    size_t got = 0, twice = 0;
    for (void *object; (object = vmem_alloc(&vm, Q, VM_NOSLEEP)) != NULL; got++)
        twice += handed[(TS_ADDR(object) - CACHED_BASE) / Q]++ != 0;
    VT_ASSERT(twice == 0);
    VT_ASSERT(got == QUANTA);
    for (size_t q = 0; q < QUANTA; q++)
        vmem_free(&vm, TS_PTR(CACHED_BASE + q * Q), Q);
    VT_ASSERT(vmem_size(&vm, VMEM_ALLOC) == 0);
    VT_CONSISTENT(&vm);
    vmem_destroy(&vm);
}

/* The caches index their per-CPU magazines by what vmem_port_cpu_enter()
 * returns, which the POSIX port reads from the thread's restartable-
 * sequences area when glibc registered one: pinned to each CPU in turn, it
 * must name that CPU (modulo VMEM_MAX_CPUS), as sched_getcpu() does. */
static void cpu_enter_names_the_cpu_the_thread_runs_on(void)
{
    cpu_set_t saved;
    VT_ASSERT(sched_getaffinity(0, sizeof(saved), &saved) == 0);
    int checked = 0, wrong = -1;
    for (int c = 0; c < CPU_SETSIZE && wrong < 0; c++) {
        if (!CPU_ISSET(c, &saved))
            continue;
        VmemIrqState state;
        unsigned got = pin_to(c) ? vmem_port_cpu_enter(&state) : VMEM_MAX_CPUS;
        if (got < VMEM_MAX_CPUS)
            vmem_port_cpu_leave(got, state);
        if (got != (unsigned)c % VMEM_MAX_CPUS)
            wrong = c;
        checked++;
    }
    /* The affinity comes back before any verdict: later tests need every CPU. */
    VT_ASSERT(sched_setaffinity(0, sizeof(saved), &saved) == 0);
    VT_ASSERT(wrong < 0);
    VT_ASSERT(checked >= 1);
}

/*
 * Threads enter sections over and over, each doing an unprotected
 * read-pause-write of the counter of the index it got: two inside one
 * index at once would lose an increment. Two of them are pinned to one
 * CPU, so that they preempt each other inside; the rest roam.
 */
#define SECTION_THREADS 6
#define SECTION_ENTRIES 20000

static unsigned long section_counter[VMEM_MAX_CPUS];

static void *section_user(void *arg)
{
    int cpu = (int)(intptr_t)arg;
    if (cpu >= 0)
        pin_to(cpu);
    for (int i = 0; i < SECTION_ENTRIES; i++) {
        VmemIrqState state;
        unsigned index = vmem_port_cpu_enter(&state);
        unsigned long seen = *(volatile unsigned long *)&section_counter[index];
        for (volatile int pause = 0; pause < 20; pause++) {
        }
        *(volatile unsigned long *)&section_counter[index] = seen + 1;
        vmem_port_cpu_leave(index, state);
    }
    return NULL;
}

static void cpu_sections_of_one_index_never_overlap(void)
{
    for (size_t i = 0; i < VMEM_MAX_CPUS; i++)
        section_counter[i] = 0;
    int first = sched_getcpu();
    pthread_t thread[SECTION_THREADS];
    for (intptr_t i = 0; i < SECTION_THREADS; i++)
        VT_ASSERT(pthread_create(&thread[i], NULL, section_user,
                                 (void *)(i < 2 ? (intptr_t)first : -1)) == 0);
    for (int i = 0; i < SECTION_THREADS; i++)
        pthread_join(thread[i], NULL);
    unsigned long total = 0;
    for (size_t i = 0; i < VMEM_MAX_CPUS; i++)
        total += section_counter[i];
    VT_ASSERT(total == (unsigned long)SECTION_THREADS * SECTION_ENTRIES);
}

/*
 * The contract check (vmem_posix.h): inside a CPU section, the library
 * takes no lock and calls neither the page source nor the misuse hook. A
 * child process breaks each rule in turn and must die of the panic
 * (SIGABRT) before the call does anything.
 */
enum { BREAK_PAGES, BREAK_LOCK, BREAK_MISUSE, BREAK_NOTHING };

static void break_the_contract(int how)
{
    static Vmem vm;
    VmemMisuse report = {0};
    if (vmem_init(&vm, "contract", TS_PTR(CACHED_BASE), 64 * Q, Q, NULL, NULL, NULL, 0,
                  VM_NOSLEEP) != 0)
        _exit(2);
    VmemIrqState state;
    unsigned cpu = vmem_port_cpu_enter(&state);
    if (how == BREAK_PAGES)
        vmem_port_page_alloc(1, VM_NOSLEEP | VM_BOOTSTRAP);
    else if (how == BREAK_LOCK)
        vmem_alloc(&vm, Q, VM_NOSLEEP);
    else if (how == BREAK_MISUSE)
        vmem_port_misuse(&report);
    vmem_port_cpu_leave(cpu, state);
    _exit(0);
}

static void the_contract_check_catches_hooks_called_inside_a_cpu_section(void)
{
#ifdef NDEBUG
    vtest_puts("  (nothing checked: the port checks the contract only without NDEBUG)\n");
#else
    fflush(NULL);
    for (int how = BREAK_PAGES; how <= BREAK_NOTHING; how++) {
        pid_t pid = fork();
        VT_ASSERT(pid >= 0);
        if (pid == 0) {
            /* The panic's message would look like a failure in the log. */
            if (freopen("/dev/null", "w", stderr) == NULL)
                _exit(3);
            break_the_contract(how);
        }
        int status;
        VT_ASSERT(waitpid(pid, &status, 0) == pid);
        if (how == BREAK_NOTHING)
            VT_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        else
            VT_ASSERT(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
    }
#endif
}

VTEST_SUITE(suite_threads, VTEST_CASE(stress_2_threads_never_overlap),
            VTEST_CASE(stress_4_threads_never_overlap), VTEST_CASE(stress_8_threads_never_overlap),
            VTEST_CASE(stress_16_threads_never_overlap),
            VTEST_CASE(reaps_beside_cache_hits_never_hand_out_an_object_twice),
            VTEST_CASE(sleeping_alloc_is_woken_by_a_free),
            VTEST_CASE(sleeping_alloc_is_woken_by_vmem_add),
            VTEST_CASE(sleeping_alloc_is_woken_by_frees_into_the_caches),
            VTEST_CASE(nosleep_alloc_fails_at_once_when_full),
            VTEST_CASE(stats_read_beside_one_cache_user_are_snapshots),
            VTEST_CASE(stats_read_beside_four_cache_users_and_a_reaper_are_snapshots),
            VTEST_CASE(racing_double_frees_on_two_cpus_are_caught_once),
            VTEST_CASE(cpu_enter_names_the_cpu_the_thread_runs_on),
            VTEST_CASE(cpu_sections_of_one_index_never_overlap),
            VTEST_CASE(the_contract_check_catches_hooks_called_inside_a_cpu_section));
