/*
 * posix.c - the hosted port of libvmem: pthread mutexes for arena locks,
 * anonymous mmap for pages, stderr for reports and dumps.
 *
 * Used by every host test and usable by any user-space program (link
 * build/host/libvmem.a with -lpthread). It also offers fault injection and
 * page accounting (vmem_posix.h) so tests can prove that a failing page
 * source is handled cleanly and that nothing leaks, and checks the
 * CPU-section contract in builds without NDEBUG.
 *
 * fork(): a child inherits every mutex as it was, and a mutex some other
 * thread of the parent held is locked forever in the child, which has no
 * such thread. So the port keeps a registry of the mutexes it initialised
 * (arena, tag-pool and quantum-cache locks) and takes them all, and then
 * every CPU section, around fork() (Fork, below): the child starts with
 * every lock free and every arena consistent.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "vmem_config.h"
#include "vmem_port.h"
#include "vmem_posix.h"

/* The contract check (vmem_posix.h): whether this thread is in a CPU section. */
#ifndef NDEBUG
static _Thread_local bool in_cpu_section;
#define SECTION_CHECK(what)                                                                       \
    do {                                                                                          \
        if (in_cpu_section)                                                                       \
            vmem_port_panic("CPU-section contract broken: " what " inside a CPU section");       \
    } while (0)
#else
#define SECTION_CHECK(what) ((void)0)
#endif

/*
 * Fork. Every mutex the port hands out is a PortMutex: the pthread mutex
 * (first, so that a VmemLock is usable as one) and its links in the
 * registry, a list of every initialised one under registry_lock.
 *
 * Before fork() (fork_prepare) the forking thread takes registry_lock and
 * then every registered mutex, so no other thread is inside any of them;
 * after it, parent and child each release them all. Taking them all must
 * not deadlock against the library, which holds one lock while it takes
 * another (a quantum cache's depot lock, then its state lock: vmem_port.h)
 * in an order the registry does not know. So the prepare step never waits for a mutex while it
 * holds any: it only tries them, and on the first that is busy it lets go
 * of everything, registry_lock too, yields so that the holder can finish,
 * and starts again. The holders hold their locks briefly and never across
 * a fork, so a round soon finds every one free; while it goes on, the
 * mutexes already taken stop other threads from taking more.
 *
 * A port-internal mutex joins with port_mutex_register() (say, from a
 * pthread_once routine), and leaves with port_mutex_unregister().
 */
typedef struct PortMutex {
    pthread_mutex_t mutex;
    struct PortMutex *prev, *next;
} PortMutex;

_Static_assert(sizeof(PortMutex) <= sizeof(VmemLock),
               "pthread_mutex_t and its fork links do not fit in VmemLock: raise VMEM_LOCK_WORDS");
_Static_assert(_Alignof(PortMutex) <= _Alignof(VmemLock),
               "VmemLock is not aligned enough for pthread_mutex_t");

static void cpu_sections_lock_all(void);
static void cpu_sections_unlock_all(void);

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static PortMutex *registry_first; /* every registered mutex; under registry_lock */
static size_t registry_count;     /* how many; a longer list has a cycle */
static pthread_once_t fork_handlers_once = PTHREAD_ONCE_INIT;

static void fork_prepare(void)
{
    for (unsigned round = 0;; round++) {
        pthread_mutex_lock(&registry_lock);
        /* Only a lock initialised twice (vmem_init on a live arena) links
         * itself into the list again, making a cycle in which the sweep
         * below would find its own lock busy forever: say so instead. */
        size_t length = 0;
        for (PortMutex *m = registry_first; m != NULL && length <= registry_count; m = m->next)
            length++;
        if (length > registry_count)
            vmem_port_panic("fork: the lock registry is corrupt: a vmem lock was initialised "
                            "twice (vmem_init on a live arena?)");
        PortMutex *busy = NULL;
        for (PortMutex *m = registry_first; m != NULL; m = m->next) {
            if (pthread_mutex_trylock(&m->mutex) != 0) {
                busy = m;
                break;
            }
        }
        if (busy == NULL) {
            /* Then every CPU section: a thread inside one takes no lock and
             * leaves soon, so waiting for it while holding the mutexes
             * cannot deadlock. */
            cpu_sections_lock_all();
            return; /* registry_lock, every mutex and every section held */
        }
        for (PortMutex *m = registry_first; m != busy; m = m->next)
            pthread_mutex_unlock(&m->mutex);
        pthread_mutex_unlock(&registry_lock);
        if (round < 64) {
            sched_yield();
        } else { /* a holder that is not running: let it be scheduled */
            struct timespec pause = {0, 100000};
            nanosleep(&pause, NULL);
        }
    }
}

/* In the parent and in the child alike: what fork_prepare() took. (In the
 * child the forking thread is the one that took them; the mutexes are of
 * the default kind, which a child may unlock.) */
static void fork_release(void)
{
    cpu_sections_unlock_all();
    for (PortMutex *m = registry_first; m != NULL; m = m->next)
        pthread_mutex_unlock(&m->mutex);
    pthread_mutex_unlock(&registry_lock);
}

static void fork_handlers_install(void)
{
    if (pthread_atfork(fork_prepare, fork_release, fork_release) != 0)
        vmem_port_panic("pthread_atfork failed");
}

/* Adds an initialised, unheld mutex to those taken around fork(). */
static void port_mutex_register(PortMutex *m)
{
    pthread_once(&fork_handlers_once, fork_handlers_install);
    pthread_mutex_lock(&registry_lock);
    m->prev = NULL;
    m->next = registry_first;
    if (registry_first != NULL)
        registry_first->prev = m;
    registry_first = m;
    registry_count++;
    pthread_mutex_unlock(&registry_lock);
}

/* Removes a registered, unheld mutex, before it is destroyed. */
static void port_mutex_unregister(PortMutex *m)
{
    pthread_mutex_lock(&registry_lock);
    if (m->prev != NULL)
        m->prev->next = m->next;
    else
        registry_first = m->next;
    if (m->next != NULL)
        m->next->prev = m->prev;
    registry_count--;
    pthread_mutex_unlock(&registry_lock);
}

static PortMutex *as_port_mutex(VmemLock *lock) { return (PortMutex *)(void *)lock; }
static pthread_mutex_t *as_mutex(VmemLock *lock) { return &as_port_mutex(lock)->mutex; }

void vmem_port_lock_init(VmemLock *lock)
{
    if (pthread_mutex_init(as_mutex(lock), NULL) != 0)
        vmem_port_panic("pthread_mutex_init failed");
    port_mutex_register(as_port_mutex(lock));
}

void vmem_port_lock_fini(VmemLock *lock)
{
    port_mutex_unregister(as_port_mutex(lock));
    pthread_mutex_destroy(as_mutex(lock));
}

/* Every vmem_alloc and vmem_free takes and drops a lock, so these two are
 * a call into pthreads and nothing more. The mutexes are of the default
 * kind, whose lock and unlock report nothing for a valid mutex (deadlock
 * and ownership errors are the error-checking kind's); the library never
 * relocks or unlocks out of turn (vmem_port.h), and an arena's magic is
 * checked before its lock is touched. The state is pthreads' 0. */
VmemIrqState vmem_port_lock(VmemLock *lock)
{
    SECTION_CHECK("a lock taken");
    return (VmemIrqState)pthread_mutex_lock(as_mutex(lock));
}

void vmem_port_unlock(VmemLock *lock, VmemIrqState state)
{
    (void)state;
    pthread_mutex_unlock(as_mutex(lock));
}

_Static_assert(sizeof(pthread_cond_t) <= sizeof(VmemCond),
               "pthread_cond_t does not fit in VmemCond: raise VMEM_COND_WORDS");

static pthread_cond_t *as_cond(VmemCond *cond) { return (pthread_cond_t *)(void *)cond; }

void vmem_port_cond_init(VmemCond *cond)
{
    if (pthread_cond_init(as_cond(cond), NULL) != 0)
        vmem_port_panic("pthread_cond_init failed");
}

void vmem_port_cond_fini(VmemCond *cond) { pthread_cond_destroy(as_cond(cond)); }

void vmem_port_cond_wait(VmemCond *cond, VmemLock *lock)
{
    SECTION_CHECK("a wait");
    if (pthread_cond_wait(as_cond(cond), as_mutex(lock)) != 0)
        vmem_port_panic("pthread_cond_wait failed");
}

void vmem_port_cond_broadcast(VmemCond *cond) { pthread_cond_broadcast(as_cond(cond)); }

static atomic_size_t pages_outstanding;
static atomic_size_t fault_countdown; /* 0: no faults; else 1 + calls that still succeed */

void vmem_posix_fail_pages_after(size_t countdown)
{
    atomic_store(&fault_countdown, countdown == SIZE_MAX ? countdown : countdown + 1);
}

void vmem_posix_stop_page_faults(void) { atomic_store(&fault_countdown, 0); }

size_t vmem_posix_pages_outstanding(void) { return atomic_load(&pages_outstanding); }

static bool page_fault_now(void)
{
    size_t left = atomic_load(&fault_countdown);
    while (left > 1) {
        if (atomic_compare_exchange_weak(&fault_countdown, &left, left - 1))
            return false;
    }
    return left == 1;
}

/* An arena pages come from instead of mmap, as in a kernel whose page
 * source is its frame arena; and how deep this thread is in the page
 * source, to catch the library calling it again from inside itself. */
static Vmem *_Atomic page_arena;
static Vmem *_Atomic page_arena_ever; /* pages it gave may come back later */
static _Thread_local int page_source_depth;

void vmem_posix_use_arena_pages(Vmem *arena)
{
    if (arena != NULL)
        atomic_store(&page_arena_ever, arena);
    atomic_store(&page_arena, arena);
}

void *vmem_port_page_alloc(size_t npages, int vmflag)
{
    SECTION_CHECK("the page source called");
    if (npages == 0 || page_fault_now())
        return NULL;
    Vmem *arena = atomic_load(&page_arena);
    void *pages;
    if (arena != NULL) {
        if (page_source_depth > 0)
            vmem_port_panic("the page source was re-entered from a page-source allocation");
        page_source_depth++;
        /* From the top, away from the frames a kernel takes from the
         * bottom (vmem_port.h). */
        pages = vmem_xalloc(arena, npages * VMEM_PAGE_SIZE, 0, 0, 0, NULL, NULL,
                            vmflag | VM_ENDALLOC);
        page_source_depth--;
        if (pages == NULL)
            return NULL;
    } else {
        pages = mmap(NULL, npages * VMEM_PAGE_SIZE, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (pages == MAP_FAILED)
            return NULL;
    }
    atomic_fetch_add(&pages_outstanding, npages);
    return pages;
}

void vmem_port_page_free(void *addr, size_t npages)
{
    SECTION_CHECK("the page source called");
    Vmem *arena = atomic_load(&page_arena_ever);
    if (arena != NULL && vmem_contains(arena, addr, npages * VMEM_PAGE_SIZE)) {
        page_source_depth++;
        vmem_xfree(arena, addr, npages * VMEM_PAGE_SIZE);
        page_source_depth--;
    } else if (munmap(addr, npages * VMEM_PAGE_SIZE) != 0) {
        vmem_port_panic("munmap of a vmem page failed");
    }
    atomic_fetch_sub(&pages_outstanding, npages);
}

static VmemPosixMisuseHandler *_Atomic misuse_handler;

void vmem_posix_set_misuse_handler(VmemPosixMisuseHandler *handler)
{
    atomic_store(&misuse_handler, handler);
}

void vmem_port_misuse(const VmemMisuse *report)
{
    SECTION_CHECK("the misuse hook called");
    VmemPosixMisuseHandler *handler = atomic_load(&misuse_handler);
    if (handler != NULL) {
        handler(report);
        return;
    }
    fprintf(stderr, "vmem misuse: %s in %s(arena \"%s\", addr %#lx, size %#zx): %s\n",
            vmem_misuse_name(report->kind), report->call, report->arena,
            (unsigned long)report->addr, report->size, report->reason);
    abort();
}

void vmem_port_panic(const char *message)
{
    fprintf(stderr, "vmem panic: %s\n", message);
    abort();
}

/* ---- CPU sections (vmem_port_cpu_enter/leave) -----------------------------
 *
 * libumem's way: a lock per CPU index, on a line of its own, and the index
 * of the CPU the caller runs on. A thread moved to another CPU after
 * reading it just takes that CPU's lock - correct, and rare. The lock is a
 * test-and-set word (an exchange to take it, a store to drop it), which
 * yields the CPU when it finds the word taken for long: its holder was
 * preempted inside a section of a few dozen instructions.
 *
 * The CPU index comes from the area glibc (2.35 on) registers for the
 * kernel's restartable sequences, where the kernel keeps the CPU the
 * thread runs on: a load, where sched_getcpu() is a call. Where the
 * registration failed (an emulator, an old kernel, GLIBC_TUNABLES),
 * sched_getcpu() answers.
 *
 * At fork the prepare handler takes these too, after the mutexes
 * (cpu_sections_lock_all / _unlock_all).
 */
#if defined(__has_include) && defined(__has_builtin)
#if __has_include(<sys/rseq.h>) && __has_builtin(__builtin_thread_pointer)
#include <sys/rseq.h>
#define HAVE_RSEQ_AREA 1
#endif
#endif

typedef struct {
    atomic_uint taken;
} __attribute__((aligned(64))) CpuSection;

static CpuSection cpu_sections[VMEM_MAX_CPUS];

/* Tries before the waiter yields its CPU to the holder. */
#define CPU_SECTION_SPINS 64

static inline unsigned current_cpu(void)
{
#ifdef HAVE_RSEQ_AREA
    if (__rseq_size != 0) {
        const struct rseq *area =
            (const struct rseq *)(const void *)((const char *)__builtin_thread_pointer() +
                                               __rseq_offset);
        int32_t cpu = (int32_t)__atomic_load_n(&area->cpu_id, __ATOMIC_RELAXED);
        if (cpu >= 0)
            return (unsigned)cpu;
    }
#endif
    int cpu = sched_getcpu();
    return cpu < 0 ? 0 : (unsigned)cpu;
}

static __attribute__((noinline, cold)) void cpu_section_wait(CpuSection *section)
{
    for (unsigned spins = 0;; spins++) {
        if (atomic_load_explicit(&section->taken, memory_order_relaxed) == 0 &&
            atomic_exchange_explicit(&section->taken, 1, memory_order_acquire) == 0)
            return;
        if (spins >= CPU_SECTION_SPINS)
            sched_yield();
    }
}

unsigned vmem_port_cpu_enter(VmemIrqState *state)
{
    SECTION_CHECK("a CPU section entered");
    unsigned cpu = current_cpu() % VMEM_MAX_CPUS;
    CpuSection *section = &cpu_sections[cpu];
    if (atomic_exchange_explicit(&section->taken, 1, memory_order_acquire) != 0)
        cpu_section_wait(section);
#ifndef NDEBUG
    in_cpu_section = true;
#endif
    *state = 0;
    return cpu;
}

void vmem_port_cpu_leave(unsigned cpu, VmemIrqState state)
{
    (void)state;
#ifndef NDEBUG
    in_cpu_section = false;
#endif
    atomic_store_explicit(&cpu_sections[cpu].taken, 0, memory_order_release);
}

/* For the fork handlers: every section taken, so that none is mid-way in
 * the child; then given back in both processes. */
static void cpu_sections_lock_all(void)
{
    for (unsigned cpu = 0; cpu < VMEM_MAX_CPUS; cpu++)
        if (atomic_exchange_explicit(&cpu_sections[cpu].taken, 1, memory_order_acquire) != 0)
            cpu_section_wait(&cpu_sections[cpu]);
}

static void cpu_sections_unlock_all(void)
{
    for (unsigned cpu = 0; cpu < VMEM_MAX_CPUS; cpu++)
        atomic_store_explicit(&cpu_sections[cpu].taken, 0, memory_order_release);
}

/* ---- end of CPU sections -------------------------------------------------------- */

void vmem_port_puts(const char *text) { fputs(text, stdout); }
