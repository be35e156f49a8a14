/*
 * vmem_port.h - everything a kernel provides to libvmem.
 *
 * Each hook is a plain extern function with the vmem_port_ prefix. There
 * are no weak defaults: a port that forgets one fails at link time, not at
 * run time. Each hook's comment is its contract: when it is called, with
 * which locks held, and whether it may sleep.
 *
 * Locks and their order (the library never violates it):
 *   - each arena's lock, and the global boundary-tag pool lock: leaves,
 *     never held together, never held while taking any other lock;
 *   - quantum caches: cache (depot) lock -> cache state lock (slab table,
 *     descriptor and magazine lists), never held while taking an arena or
 *     the pool lock, nor inside a CPU section (below), which takes none.
 * So the library never holds two arena locks at once: an importing arena
 * drops its lock before calling into its source. It never calls
 * vmem_port_page_alloc(), vmem_port_page_free(), an import or give-back
 * callback, or vmem_port_misuse() with any of its locks held; only
 * vmem_port_puts() (from vmem_dump), the lock and condition hooks
 * themselves, and vmem_port_panic() (which does not return) are.
 *
 * Two ports ship with libvmem: src/port/posix.c (pthreads; used by every
 * host test and by user-space programs) and lib/vmem_port_kernel.c (the
 * test kernel's: interrupt-disabling spinlocks, no scheduler).
 */
#ifndef VMEM_PORT_H
#define VMEM_PORT_H

#include "vmem.h"
#include "vmem_config.h" /* VMEM_PAGE_SIZE and the port options */

#ifdef __cplusplus
extern "C" {
#endif

/* Interrupt state returned by vmem_port_lock() and given back, unchanged,
 * to the matching vmem_port_unlock(). */
typedef uintptr_t VmemIrqState;

/* Prepares the lock storage embedded in an arena, in a quantum cache, or
 * the library's global pool lock. Called once per lock, never concurrently with its use. The
 * lock must fit in sizeof(VmemLock); check that with _Static_assert. */
void vmem_port_lock_init(VmemLock *lock);

/* Releases whatever vmem_port_lock_init() set up. The lock is unheld. */
void vmem_port_lock_fini(VmemLock *lock);

/* Acquires the lock, spinning or blocking; on a kernel it disables
 * interrupts first and returns the previous interrupt state. Not
 * recursive: the library never takes a lock it holds. */
VmemIrqState vmem_port_lock(VmemLock *lock);

/* Releases the lock and restores the interrupt state vmem_port_lock()
 * returned. */
void vmem_port_unlock(VmemLock *lock, VmemIrqState state);

/*
 * Sleeping, for VM_SLEEP. Only a port built with VMEM_PORT_CAN_SLEEP = 1
 * (vmem_config.h) provides these; with 0 the library never calls them and
 * a VM_SLEEP request that would have to wait is reported as misuse.
 */
/* Prepares / releases the condition storage embedded in an arena. */
void vmem_port_cond_init(VmemCond *cond);
void vmem_port_cond_fini(VmemCond *cond);
/* Called with `lock` held (as vmem_port_lock() took it): atomically
 * releases it and sleeps until vmem_port_cond_broadcast() on the same
 * condition (or spuriously), then reacquires it before returning, with the
 * interrupt state the caller had. With vmem_port_lock() the only hook the
 * library itself waits in; a page source built on an arena may also wait
 * there when the request it serves has VM_SLEEP. */
void vmem_port_cond_wait(VmemCond *cond, VmemLock *lock);
/* Wakes every waiter on cond. Called with the matching lock held. */
void vmem_port_cond_broadcast(VmemCond *cond);

/*
 * Returns npages contiguous, writable, VMEM_PAGE_SIZE-aligned pages of
 * memory for boundary tags, hash tables and vmem_create() storage, or NULL.
 * Called with no vmem lock held. vmflag carries VM_SLEEP / VM_NOSLEEP from
 * the request that needs the memory, and always VM_BOOTSTRAP: if the port
 * takes the pages from a vmem arena it must pass vmflag on, so that
 * allocation draws on the reserved tags and cannot recurse - and should
 * add VM_ENDALLOC (with vmem_xalloc, freeing with vmem_xfree), so that
 * metadata grows down from the top, apart from the frames a kernel takes
 * from the bottom: what vmem_release_pages() keeps (vmem.h) assumes it.
 */
void *vmem_port_page_alloc(size_t npages, int vmflag);

/* Gives back pages from vmem_port_page_alloc(). No vmem lock held. */
void vmem_port_page_free(void *addr, size_t npages);

/*
 * Reports misuse of the API (see VmemMisuseKind). Called with no vmem lock
 * held, once per misused call. A port may panic; if it returns, the call
 * fails without changing the arena.
 */
void vmem_port_misuse(const VmemMisuse *report);

/* The allocator found its own state corrupt (vmem_check would say why)
 * and cannot go on. Must not return. */
void vmem_port_panic(const char *message)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((noreturn))
#endif
    ;

/*
 * CPU sections, for the per-CPU quantum-cache magazines.
 * vmem_port_cpu_enter() enters the calling CPU's section and returns that
 * CPU's index, below VMEM_MAX_CPUS (the library panics otherwise; a kernel
 * with more CPUs raises VMEM_MAX_CPUS), with whatever leaving needs in
 * *state. Until vmem_port_cpu_leave(cpu, state) no other section with the
 * same index may run: a kernel disables interrupts (and so preemption)
 * and returns its CPU id; a hosted port takes a lock per index, and a
 * caller that moved to another CPU meanwhile only contends for it.
 * Inside, the library touches only that index's magazines and counters
 * and reads shared tables: it takes no lock, calls no other hook and
 * never waits; it enters no section from inside one. Called with no vmem
 * lock held.
 */
unsigned vmem_port_cpu_enter(VmemIrqState *state);
void vmem_port_cpu_leave(unsigned cpu, VmemIrqState state);

/* Writes a NUL-terminated string to the console, for vmem_dump(). May be
 * called with an arena lock held; must not call into vmem. */
void vmem_port_puts(const char *text);

#ifdef __cplusplus
}
#endif

#endif /* VMEM_PORT_H */
