/*
 * host_fork.c - host-only test of fork() in the POSIX port: a process
 * forks while other threads are inside vmem, and the child's arenas must
 * work. Without fork handlers the child inherits, locked, every mutex a
 * thread of the parent held at that moment, and hangs on its first call
 * into that arena (or the tag pool, or a quantum cache).
 *
 * Four threads allocate and free on shared arenas (plain, quantum-cached,
 * one importing from another) and create and destroy arenas of their own,
 * so that arena, cache, tag-pool and import locks are all taken and lock
 * init/fini run while the main thread forks again and again. Each child
 * allocates and frees on every arena, checks each one, creates and destroys
 * an arena, and _exit()s 0; the parent fails the test on a child that
 * fails or does not exit within CHILD_SECONDS (it is killed, not waited
 * for forever).
 */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test_support.h"
#include "vmem_posix.h"

#define Q 0x1000UL
#if UINTPTR_MAX > 0xffffffffu
#define FORK_BASE 0x700000000UL
#else
#define FORK_BASE 0x70000000UL
#endif
#define ARENA_QUANTA 16384UL
#define FORKS 200
#define BUSY_THREADS 4
#define LIVE_PER_THREAD 64
/* A healthy child is done in milliseconds, even under a sanitizer. */
#define CHILD_SECONDS 10

static Vmem fork_source, fork_plain, fork_cached, fork_importer;
static Vmem *const fork_arenas[] = {&fork_plain, &fork_cached, &fork_importer, &fork_source};
#define ARENA_COUNT (sizeof(fork_arenas) / sizeof(fork_arenas[0]))

static atomic_bool busy_stop;

struct busy_live {
    Vmem *vm;
    void *addr;
    size_t size;
};

struct busy_thread {
    pthread_t thread;
    uint64_t seed;
    struct busy_live live[LIVE_PER_THREAD];
    size_t nlive;
    size_t creates;
};

/* Allocates and frees at random on the shared arenas until told to stop;
 * every so often creates, uses and destroys an arena of its own (tag pool,
 * lock init and fini). Leaves nothing allocated. */
static void *busy_worker(void *arg)
{
    struct busy_thread *b = arg;
    VtestRng rng;
    vtest_rng_seed(&rng, b->seed);
    while (!atomic_load_explicit(&busy_stop, memory_order_relaxed)) {
        if (vtest_rng_below(&rng, 64) == 0) {
            Vmem *own = vmem_create("fork-own", TS_PTR(FORK_BASE), 64 * Q, Q, NULL, NULL, NULL,
                                    2 * Q, VM_NOSLEEP);
            if (own != NULL) {
                void *a = vmem_alloc(own, Q, VM_NOSLEEP);
                if (a != NULL)
                    vmem_free(own, a, Q);
                vmem_destroy(own);
                b->creates++;
            }
            continue;
        }
        if (b->nlive == LIVE_PER_THREAD || (b->nlive > 0 && vtest_rng_below(&rng, 2))) {
            size_t i = (size_t)vtest_rng_below(&rng, b->nlive);
            vmem_free(b->live[i].vm, b->live[i].addr, b->live[i].size);
            b->live[i] = b->live[--b->nlive];
            continue;
        }
        Vmem *vm = fork_arenas[vtest_rng_below(&rng, ARENA_COUNT)];
        size_t size = (size_t)(1 + vtest_rng_below(&rng, 6)) * Q;
        void *got = vmem_alloc(vm, size, VM_NOSLEEP);
        if (got != NULL)
            b->live[b->nlive++] = (struct busy_live){vm, got, size};
    }
    while (b->nlive > 0) {
        b->nlive--;
        vmem_free(b->live[b->nlive].vm, b->live[b->nlive].addr, b->live[b->nlive].size);
    }
    return NULL;
}

/* The child: every arena still allocates, frees and checks out, and a new
 * arena can be made. Returns the exit status: 0, or which step failed. */
static int child_uses_every_arena(void)
{
    for (size_t i = 0; i < ARENA_COUNT; i++) {
        void *small = vmem_alloc(fork_arenas[i], Q, VM_NOSLEEP);
        void *large = vmem_alloc(fork_arenas[i], 12 * Q, VM_NOSLEEP);
        if (small == NULL || large == NULL)
            return 10 + (int)i;
        vmem_free(fork_arenas[i], small, Q);
        vmem_free(fork_arenas[i], large, 12 * Q);
        if (vmem_check(fork_arenas[i], NULL) != 0)
            return 20 + (int)i;
    }
    Vmem *fresh =
        vmem_create("fork-child", TS_PTR(FORK_BASE), 64 * Q, Q, NULL, NULL, NULL, 2 * Q, VM_NOSLEEP);
    if (fresh == NULL)
        return 30;
    void *a = vmem_alloc(fresh, Q, VM_NOSLEEP);
    if (a == NULL)
        return 31;
    vmem_free(fresh, a, Q);
    vmem_destroy(fresh);
    return 0;
}

/* Waits for the child up to CHILD_SECONDS; kills it if it is still
 * running then. Returns its exit status, or -1 if it hung or died. */
static int wait_for_child(pid_t pid)
{
    struct timespec start, now, pause = {0, 1000000};
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        int status;
        pid_t done = waitpid(pid, &status, WNOHANG);
        if (done == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        if (done < 0)
            return -1;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - start.tv_sec >= CHILD_SECONDS) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        nanosleep(&pause, NULL);
    }
}

static void fork_while_threads_are_inside_vmem_leaves_the_child_working(void)
{
    static struct busy_thread busy[BUSY_THREADS];
    VT_ASSERT(vmem_init(&fork_source, "fork-source", TS_PTR(FORK_BASE), ARENA_QUANTA * Q, Q,
                        NULL, NULL, NULL, 4 * Q, VM_NOSLEEP) == 0);
    VT_ASSERT(vmem_init(&fork_plain, "fork-plain", TS_PTR(FORK_BASE), ARENA_QUANTA * Q, Q, NULL,
                        NULL, NULL, 0, VM_NOSLEEP) == 0);
    VT_ASSERT(vmem_init(&fork_cached, "fork-cached", TS_PTR(FORK_BASE), ARENA_QUANTA * Q, Q,
                        NULL, NULL, NULL, 8 * Q, VM_NOSLEEP) == 0);
    VT_ASSERT(vmem_init(&fork_importer, "fork-importer", NULL, 0, Q, vmem_alloc, vmem_free,
                        &fork_source, 0, VM_NOSLEEP) == 0);
    atomic_store(&busy_stop, false);
    for (size_t i = 0; i < BUSY_THREADS; i++) {
        busy[i].seed = 0xf0c0 + i;
        busy[i].nlive = 0;
        busy[i].creates = 0;
        VT_ASSERT(pthread_create(&busy[i].thread, NULL, busy_worker, &busy[i]) == 0);
    }
    int forks = 0, failed = 0, first_status = 0;
    for (; forks < FORKS && failed == 0; forks++) {
        struct timespec settle = {0, 200000};
        nanosleep(&settle, NULL); /* let the threads get back inside */
        pid_t pid = fork();
        if (pid == 0) {
            alarm(2 * CHILD_SECONDS); /* should the parent be gone */
            _exit(child_uses_every_arena());
        }
        if (pid < 0) {
            failed++;
            first_status = -2;
            break;
        }
        int status = wait_for_child(pid);
        if (status != 0) {
            failed++;
            first_status = status;
        }
    }
    atomic_store(&busy_stop, true);
    size_t creates = 0;
    for (size_t i = 0; i < BUSY_THREADS; i++) {
        pthread_join(busy[i].thread, NULL);
        creates += busy[i].creates;
    }
    if (failed != 0) {
        vtest_puts("    child after fork ");
        vtest_put_u64((uint64_t)forks);
        vtest_puts(first_status == -1 ? " hung (killed) or died\n" : " failed, status ");
        if (first_status != -1) {
            vtest_put_u64((uint64_t)(unsigned)first_status);
            vtest_puts("\n");
        }
    }
    VT_ASSERT(failed == 0);
    VT_ASSERT(forks == FORKS);
    VT_ASSERT(creates > 0); /* the threads really were busy throughout */
    for (size_t i = 0; i < ARENA_COUNT; i++) {
        VmemStat stat;
        VT_CONSISTENT(fork_arenas[i]);
        VT_ASSERT(vmem_stat(fork_arenas[i], &stat) == 0 && stat.in_use == 0);
    }
    for (size_t i = 0; i < ARENA_COUNT; i++)
        vmem_destroy(fork_arenas[i]);
}

/* A thread of the parent sleeps in VM_SLEEP on a full arena when the
 * process forks. The child has no such thread, but inherits the condition
 * variable with it counted as a waiter: the child's frees, which wake
 * waiters, must not wait for it. */
static Vmem sleep_arena;

static void *sleeping_alloc(void *arg)
{
    (void)arg;
    return vmem_alloc(&sleep_arena, Q, VM_SLEEP);
}

static int child_frees_and_allocates(void *held)
{
    vmem_free(&sleep_arena, held, Q);
    for (int round = 0; round < 3; round++) { /* each free wakes the waiters */
        void *again = vmem_alloc(&sleep_arena, Q, VM_NOSLEEP);
        if (again == NULL)
            return 1;
        vmem_free(&sleep_arena, again, Q);
    }
    return vmem_check(&sleep_arena, NULL) == 0 ? 0 : 2;
}

static void fork_while_a_thread_sleeps_in_vm_sleep_leaves_the_child_working(void)
{
    VT_ASSERT(vmem_init(&sleep_arena, "fork-sleep", TS_PTR(FORK_BASE), Q, Q, NULL, NULL, NULL, 0,
                        VM_NOSLEEP) == 0);
    void *held = vmem_alloc(&sleep_arena, Q, VM_NOSLEEP);
    VT_ASSERT(held != NULL);
    pthread_t sleeper;
    VT_ASSERT(pthread_create(&sleeper, NULL, sleeping_alloc, NULL) == 0);
    struct timespec settle = {0, 50000000};
    nanosleep(&settle, NULL); /* the sleeper is waiting by now */
    pid_t pid = fork();
    if (pid == 0) {
        alarm(2 * CHILD_SECONDS);
        _exit(child_frees_and_allocates(held));
    }
    VT_ASSERT(pid > 0);
    int status = wait_for_child(pid);
    vmem_free(&sleep_arena, held, Q);
    void *woken = NULL;
    pthread_join(sleeper, &woken);
    VT_ASSERT(woken == held);
    vmem_free(&sleep_arena, woken, Q);
    VT_ASSERT(status == 0);
    vmem_destroy(&sleep_arena);
}

/* Initialising a live arena again (misuse the library cannot always see)
 * initialises its lock again while it is still registered. A later fork()
 * must then end - with a panic from the port, or normally if the library
 * refused the second vmem_init - and never hang. Run in a helper process,
 * which may abort; its stderr is discarded. */
static void ignore_misuse(const VmemMisuse *report) { (void)report; }

static int fork_after_double_init(void)
{
    static Vmem twice;
    int devnull = open("/dev/null", O_WRONLY);
    if (devnull >= 0)
        dup2(devnull, 2);
    vmem_posix_set_misuse_handler(ignore_misuse);
    if (vmem_init(&twice, "twice", TS_PTR(FORK_BASE), 16 * Q, Q, NULL, NULL, NULL, 0,
                  VM_NOSLEEP) != 0)
        return 1;
    (void)vmem_init(&twice, "twice", TS_PTR(FORK_BASE), 16 * Q, Q, NULL, NULL, NULL, 0,
                    VM_NOSLEEP);
    pid_t pid = fork();
    if (pid == 0)
        _exit(0);
    return pid > 0 && wait_for_child(pid) == 0 ? 0 : 2;
}

static void fork_after_a_lock_is_initialised_twice_ends_instead_of_hanging(void)
{
    pid_t helper = fork();
    if (helper == 0) {
        alarm(2 * CHILD_SECONDS);
        _exit(fork_after_double_init());
    }
    VT_ASSERT(helper > 0);
    struct timespec start, now, pause = {0, 1000000};
    clock_gettime(CLOCK_MONOTONIC, &start);
    int status = 0;
    bool ended = false;
    do {
        ended = waitpid(helper, &status, WNOHANG) == helper;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (!ended)
            nanosleep(&pause, NULL);
    } while (!ended && now.tv_sec - start.tv_sec < CHILD_SECONDS);
    if (!ended) {
        kill(helper, SIGKILL);
        waitpid(helper, &status, 0);
    }
    VT_ASSERT(ended);
    VT_ASSERT((WIFEXITED(status) && WEXITSTATUS(status) == 0) ||
              (WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT));
}

VTEST_SUITE(suite_fork, VTEST_CASE(fork_while_threads_are_inside_vmem_leaves_the_child_working),
            VTEST_CASE(fork_while_a_thread_sleeps_in_vm_sleep_leaves_the_child_working),
            VTEST_CASE(fork_after_a_lock_is_initialised_twice_ends_instead_of_hanging));
