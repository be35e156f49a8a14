/*
 * posix.c - the hosted port of libvmem: pthread mutexes for arena locks,
 * anonymous mmap for pages, stderr for reports and dumps.
 *
 * Used by every host test and usable by any user-space program (link
 * build/host/libvmem.a with -lpthread). It also offers fault injection and
 * page accounting (vmem_posix.h) so tests can prove that a failing page
 * source is handled cleanly and that nothing leaks. On x86_64 Linux it
 * provides per-CPU claims (vmem_port_cpu_claim, below) as a restartable
 * sequence.
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

#include "vmem_config.h"
#include "vmem_port.h"
#include "vmem_posix.h"

_Static_assert(sizeof(pthread_mutex_t) <= sizeof(VmemLock),
               "pthread_mutex_t does not fit in VmemLock: raise VMEM_LOCK_WORDS");
_Static_assert(_Alignof(pthread_mutex_t) <= _Alignof(VmemLock),
               "VmemLock is not aligned enough for pthread_mutex_t");

static pthread_mutex_t *as_mutex(VmemLock *lock) { return (pthread_mutex_t *)(void *)lock; }

void vmem_port_lock_init(VmemLock *lock)
{
    if (pthread_mutex_init(as_mutex(lock), NULL) != 0)
        vmem_port_panic("pthread_mutex_init failed");
}

void vmem_port_lock_fini(VmemLock *lock) { pthread_mutex_destroy(as_mutex(lock)); }

/* Every vmem_alloc and vmem_free takes and drops a lock, so these two are
 * a call into pthreads and nothing more. The mutexes are of the default
 * kind, whose lock and unlock report nothing for a valid mutex (deadlock
 * and ownership errors are the error-checking kind's); the library never
 * relocks or unlocks out of turn (vmem_port.h), and an arena's magic is
 * checked before its lock is touched. The state is pthreads' 0. */
VmemIrqState vmem_port_lock(VmemLock *lock)
{
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

/*
 * glibc (2.35 on) registers every thread for the kernel's restartable
 * sequences, and the kernel keeps the CPU the thread runs on in the
 * registered area. sched_getcpu() reads that too, but behind a call
 * through the PLT; reading it here saves that call on every quantum-cache
 * hit (two per allocation and free pair). Where the registration failed
 * (an emulator, a kernel before 4.18, GLIBC_TUNABLES turning it off)
 * __rseq_size is 0 or the field says so, and sched_getcpu() answers.
 */
#if defined(__has_include) && defined(__has_builtin)
#if __has_include(<sys/rseq.h>) && __has_builtin(__builtin_thread_pointer)
#include <sys/rseq.h>
#define HAVE_RSEQ_AREA 1
#endif
#endif

unsigned vmem_port_cpu_id(void)
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

/*
 * Per-CPU claims (vmem_port.h), as a restartable sequence. A thread
 * registered with the kernel's rseq (glibc registers every thread) names a
 * critical section in its rseq area before entering it; should the kernel
 * preempt, migrate or signal the thread after the section's first
 * instruction and before its single committing store, the thread resumes
 * at the section's abort handler instead, the store never made. So the
 * claim reads the CPU id, finds that CPU's word, tests it and stores it
 * incremented, and either all of that ran on one CPU with nothing in
 * between or nothing was written.
 *
 * Across CPUs a claim is not atomic: a compare-and-swap from another CPU
 * (a drain) can land between its read and its store. The swapper therefore
 * calls vmem_port_cpu_fence(), membarrier(PRIVATE_EXPEDITED_RSEQ), which
 * restarts every section running in this process and orders memory on
 * every CPU running one of its threads, and then checks that its value is
 * still there (vmem_qcache.c, Slots).
 *
 * Claims are switched on once per process, at the first claim or fence,
 * when everything they rest on is there: x86_64 (the section is written in
 * its assembly), a registered rseq area, the membarrier command (Linux
 * 5.10), and no more CPUs than VMEM_MAX_CPUS (a CPU past them could not
 * claim, and would pay a fence on every slot it entered). Never under the
 * thread sanitizer, which cannot see the section's accesses and would take
 * the slot's users for racing ones.
 */
#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif
#if defined(HAVE_RSEQ_AREA) && defined(__x86_64__) && defined(__linux__) && !defined(UNDER_TSAN)
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>
#define HAVE_CPU_CLAIMS 1
#endif

enum { CLAIMS_UNDECIDED = 0, CLAIMS_ON = 1, CLAIMS_OFF = -1 };
static atomic_int claims_state;

/* Whether this process claims: decided once, by whoever asks first. Out of
 * line, so that the check every claim makes stays a load and a branch. */
static __attribute__((noinline, cold)) int claims_decide(void)
{
    int decided = CLAIMS_OFF;
#ifdef HAVE_CPU_CLAIMS
    long cpus = sysconf(_SC_NPROCESSORS_CONF);
    if (__rseq_size != 0 && cpus > 0 && cpus <= VMEM_MAX_CPUS &&
        syscall(__NR_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ, 0, 0) == 0)
        decided = CLAIMS_ON;
#endif
    int expected = CLAIMS_UNDECIDED;
    if (!atomic_compare_exchange_strong(&claims_state, &expected, decided))
        decided = expected;
    return decided;
}

/* Whether this process claims, deciding it if nobody has yet. */
static inline bool claims_on(void)
{
    int state = atomic_load(&claims_state);
    if (__builtin_expect(state == CLAIMS_UNDECIDED, 0))
        state = claims_decide();
    return state == CLAIMS_ON;
}

long vmem_port_cpu_claim(unsigned *words, size_t stride, unsigned count)
{
    if (__builtin_expect(!claims_on(), 0))
        return VMEM_CLAIM_UNSUPPORTED;
#ifdef HAVE_CPU_CLAIMS
    struct rseq *area =
        (struct rseq *)(void *)((char *)__builtin_thread_pointer() + __rseq_offset);
    long result;
    /* The descriptor (version, flags, start, length, abort) goes in
     * __rseq_cs; the abort handler, after the signature glibc registered
     * (RSEQ_SIG, in the operand of a ud1 so that disassemblers stay in
     * step), in __rseq_failure, out of the way of the straight line. An
     * unregistered thread's cpu_id is negative, so not below count. */
    __asm__ volatile(".pushsection __rseq_cs, \"aw\"\n\t"
                     ".balign 32\n"
                     "3:\n\t"
                     ".long 0, 0\n\t"
                     ".quad 1f, 2f - 1f, 4f\n\t"
                     ".popsection\n\t"
                     "leaq 3b(%%rip), %%rax\n\t"
                     "movq %%rax, %[cs]\n"
                     "1:\n\t"
                     "movl %[cpu_id], %%ecx\n\t"
                     "cmpl %[count], %%ecx\n\t"
                     "jae 5f\n\t"
                     "movq %%rcx, %%rax\n\t"
                     "imulq %[stride], %%rax\n\t"
                     "addq %[words], %%rax\n\t"
                     "movl (%%rax), %%edx\n\t"
                     "testl $1, %%edx\n\t"
                     "jnz 6f\n\t"
                     "addl $1, %%edx\n\t"
                     "movl %%edx, (%%rax)\n"
                     "2:\n\t"
                     "movq %%rcx, %[result]\n\t"
                     "jmp 7f\n"
                     "5:\n\t"
                     "movq %[unavailable], %[result]\n\t"
                     "jmp 7f\n"
                     "6:\n\t"
                     "movq %[busy], %[result]\n\t"
                     "jmp 7f\n\t"
                     ".pushsection __rseq_failure, \"ax\"\n\t"
                     ".byte 0x0f, 0xb9, 0x3d\n\t"
                     ".long %c[sig]\n"
                     "4:\n\t"
                     "movq %[again], %[result]\n\t"
                     "jmp 7f\n\t"
                     ".popsection\n"
                     "7:\n\t"
                     : [result] "=&r"(result), [cs] "=m"(area->rseq_cs)
                     : [cpu_id] "m"(area->cpu_id), [count] "r"(count), [stride] "r"(stride),
                       [words] "r"(words), [sig] "i"(RSEQ_SIG),
                       [busy] "i"(VMEM_CLAIM_BUSY), [again] "i"(VMEM_CLAIM_AGAIN),
                       [unavailable] "i"(VMEM_CLAIM_UNAVAILABLE)
                     : "rax", "rcx", "rdx", "memory", "cc");
    return result;
#else
    (void)words;
    (void)stride;
    (void)count;
    return VMEM_CLAIM_UNSUPPORTED; /* claims_decide() said off: not reached */
#endif
}

bool vmem_posix_cpu_claims(void) { return claims_on(); }

void vmem_port_cpu_fence(void)
{
    if (!claims_on())
        return;
#ifdef HAVE_CPU_CLAIMS
    if (syscall(__NR_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ, 0, 0) == 0)
        return;
    /* A child of fork() may start unregistered: register, then try again. */
    if (syscall(__NR_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ, 0, 0) == 0 &&
        syscall(__NR_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ, 0, 0) == 0)
        return;
    vmem_port_panic("vmem: membarrier failed: per-CPU claims cannot be fenced");
#endif
}

void vmem_port_puts(const char *text) { fputs(text, stdout); }
