/*
 * vmem_port_kernel.c - the test kernel's port of libvmem: every hook of
 * include/vmem_port.h, for one CPU, no scheduler, and frames from the
 * kernel's own physical arena.
 *
 * Locks are interrupt-disabling spinlocks stored inside VmemLock. The port
 * checks the lock contract as it goes, the way a test port should: a lock
 * used before vmem_port_lock_init(), released when not held, finalised
 * while held, or taken again by its holder panics with the reason. (With
 * one CPU and interrupts off, a held lock can only be held by us, so
 * spinning on it would hang: the spin is bounded and then panics.)
 *
 * Pages for boundary tags and hash tables come from kmem_phys, whose
 * addresses are physical: the page source hands out their direct-map
 * pointer (phys_to_virt) and converts back when pages return. The source
 * passes the caller's vmflag (with VM_BOOTSTRAP) straight on to
 * vmem_xalloc, so refilling tags draws on the reserve and cannot recurse,
 * and adds VM_ENDALLOC: metadata comes from the top of physical memory,
 * away from the frames the kernel takes from the bottom.
 * Pages are filled with a poison pattern when handed out and when given
 * back: the contract promises no zeroed memory, and poison makes any
 * reliance on it, or any use after free, show up.
 *
 * The kernel cannot sleep (one CPU, no scheduler, interrupts off): it is
 * built, with the library, with VMEM_PORT_CAN_SLEEP=0, so VM_SLEEP never
 * waits and the vmem_port_cond_* hooks are neither called nor defined.
 */
#include <stdbool.h>
#include <stdint.h>

#include "cpu.h"
#include "kmem.h"
#include "kprintf.h"
#include "layout.h"
#include "serial.h"
#include "vmem_config.h"
#include "vmem_port.h"
#include "vmem_port_kernel.h"

_Static_assert(VMEM_PORT_CAN_SLEEP == 0,
               "the test kernel cannot sleep: build it and libvmem with VMEM_PORT_CAN_SLEEP=0");

/* ---- Locks --------------------------------------------------------------- */

#define KSPIN_MAGIC 0x6b73706eu /* "kspn": set by init, cleared by fini */
/* With one CPU, a held lock is never released while we spin: this bound
 * turns a self-deadlock into a panic instead of a hang. */
#define KSPIN_SPIN_LIMIT (1u << 24)

struct kspin {
    uint32_t locked; /* 0 or 1, changed atomically */
    uint32_t magic;
    uint64_t acquisitions; /* for the curious reader of a dump */
};
_Static_assert(sizeof(struct kspin) <= sizeof(VmemLock),
               "struct kspin does not fit in VmemLock: raise VMEM_LOCK_WORDS");
_Static_assert(_Alignof(struct kspin) <= _Alignof(VmemLock),
               "VmemLock is not aligned enough for struct kspin");

static struct kspin *as_spin(VmemLock *lock) { return (struct kspin *)(void *)lock; }

void vmem_port_lock_init(VmemLock *lock)
{
    struct kspin *s = as_spin(lock);
    s->locked = 0;
    s->magic = KSPIN_MAGIC;
    s->acquisitions = 0;
}

void vmem_port_lock_fini(VmemLock *lock)
{
    struct kspin *s = as_spin(lock);
    if (s->magic != KSPIN_MAGIC)
        kpanic("vmem_port_lock_fini: lock %p was never initialised", (void *)lock);
    if (__atomic_load_n(&s->locked, __ATOMIC_ACQUIRE) != 0)
        kpanic("vmem_port_lock_fini: lock %p is held", (void *)lock);
    s->magic = 0;
}

VmemIrqState vmem_port_lock(VmemLock *lock)
{
    struct kspin *s = as_spin(lock);
    VmemIrqState state = (VmemIrqState)(cpu_read_rflags() & CPU_RFLAGS_IF);
    cpu_cli();
    if (s->magic != KSPIN_MAGIC)
        kpanic("vmem_port_lock: lock %p used before vmem_port_lock_init", (void *)lock);
    for (uint32_t spins = 0; __atomic_exchange_n(&s->locked, 1, __ATOMIC_ACQUIRE) != 0;
         spins++) {
        if (spins == KSPIN_SPIN_LIMIT)
            kpanic("vmem_port_lock: lock %p is already held (taken twice?)", (void *)lock);
        cpu_pause();
    }
    s->acquisitions++;
    return state;
}

void vmem_port_unlock(VmemLock *lock, VmemIrqState state)
{
    struct kspin *s = as_spin(lock);
    if (s->magic != KSPIN_MAGIC)
        kpanic("vmem_port_unlock: lock %p was never initialised", (void *)lock);
    if (__atomic_exchange_n(&s->locked, 0, __ATOMIC_RELEASE) != 1)
        kpanic("vmem_port_unlock: lock %p is not held", (void *)lock);
    if (state & CPU_RFLAGS_IF)
        cpu_sti();
}

/* ---- Page source --------------------------------------------------------- */

_Static_assert(VMEM_PAGE_SIZE == KMEM_FRAME_SIZE,
               "the page source hands out whole frames: VMEM_PAGE_SIZE must be the frame size");

#define POISON_ALLOC 0xa110ca7edeadbeefull /* handed out, not yet written */
#define POISON_FREE 0xf4eedf4eedf4eed0ull  /* given back */

static size_t pages_outstanding;
static size_t fault_countdown; /* 0: no faults; else 1 + calls that still succeed */
/* Calls of vmem_port_page_alloc() in progress. The pages come from
 * kmem_phys with VM_BOOTSTRAP, and the contract says such a request never
 * needs the page source again: a nested call would recurse until the stack
 * overflows, so it is reported as the contract violation it is. */
static unsigned page_alloc_depth;
/* Page-source calls of either kind in progress. Giving pages back to
 * kmem_phys may make it resize its hash and so take pages, which is fine
 * once; a chain deeper than this is the allocator feeding on itself. */
static unsigned page_source_depth;
#define PAGE_SOURCE_MAX_DEPTH 4

static void enter_page_source(const char *call, size_t npages)
{
    if (++page_source_depth > PAGE_SOURCE_MAX_DEPTH)
        kpanic("%s of %zu pages: page-source calls nested %u deep: the allocator keeps "
               "re-entering kmem_phys through its page source",
               call, npages, page_source_depth);
}

void kport_fail_pages_after(size_t countdown)
{
    fault_countdown = countdown == SIZE_MAX ? countdown : countdown + 1;
}

void kport_stop_page_faults(void) { fault_countdown = 0; }

size_t kport_pages_outstanding(void) { return pages_outstanding; }

static bool page_fault_now(void)
{
    if (fault_countdown > 1) {
        fault_countdown--;
        return false;
    }
    return fault_countdown == 1;
}

static void poison(void *addr, size_t npages, uint64_t pattern)
{
    uint64_t *word = addr;
    for (size_t i = 0; i < npages * VMEM_PAGE_SIZE / sizeof(*word); i++)
        word[i] = pattern;
}

void *vmem_port_page_alloc(size_t npages, int vmflag)
{
    if (page_alloc_depth != 0)
        kpanic("vmem_port_page_alloc(%zu, %#x) re-entered: the allocator asked for pages "
               "while getting pages from kmem_phys with VM_BOOTSTRAP",
               npages, (unsigned)vmflag);
    if (npages == 0 || npages > SIZE_MAX / VMEM_PAGE_SIZE || !kmem_ready())
        return NULL;
    if (page_fault_now())
        return NULL;
    page_alloc_depth++;
    enter_page_source("vmem_port_page_alloc", npages);
    void *phys = vmem_xalloc(&kmem_phys, npages * VMEM_PAGE_SIZE, 0, 0, 0, NULL, NULL,
                             vmflag | VM_ENDALLOC);
    page_source_depth--;
    page_alloc_depth--;
    if (phys == NULL)
        return NULL;
    void *pages = kmem_ptr(phys);
    poison(pages, npages, POISON_ALLOC);
    pages_outstanding += npages;
    return pages;
}

void vmem_port_page_free(void *addr, size_t npages)
{
    if (addr == NULL || npages == 0)
        kpanic("vmem_port_page_free(%p, %zu): nothing to free", addr, npages);
    /* Only pages this source handed out, which are direct-map pointers. */
    if ((uintptr_t)addr < KERNEL_DIRECT_MAP || (uintptr_t)addr >= KERNEL_VMA_BASE)
        kpanic("vmem_port_page_free(%p, %zu): not a direct-map address", addr, npages);
    if (npages > pages_outstanding)
        kpanic("vmem_port_page_free(%p, %zu): only %zu pages are out", addr, npages,
               pages_outstanding);
    poison(addr, npages, POISON_FREE);
    pages_outstanding -= npages;
    enter_page_source("vmem_port_page_free", npages);
    vmem_xfree(&kmem_phys, (void *)(uintptr_t)virt_to_phys(addr), npages * VMEM_PAGE_SIZE);
    page_source_depth--;
}

/* ---- Reports, CPU id and console ----------------------------------------------- */

static KportMisuseHandler *misuse_handler;

void kport_set_misuse_handler(KportMisuseHandler *handler) { misuse_handler = handler; }

void kport_print_misuse(const VmemMisuse *r)
{
    kprintf("vmem misuse: %s in %s(arena \"%s\", addr %#lx, size %#zx): %s\n",
            vmem_misuse_name(r->kind), r->call, r->arena, (unsigned long)r->addr, r->size,
            r->reason);
}

void vmem_port_misuse(const VmemMisuse *report)
{
    if (misuse_handler != NULL) {
        misuse_handler(report);
        return;
    }
    kport_print_misuse(report);
    kpanic("unexpected vmem misuse outside the self-tests");
}

void vmem_port_panic(const char *message) { kpanic("vmem: %s", message); }

/* The test kernel runs on the boot CPU only. */
unsigned vmem_port_cpu_id(void) { return 0; }

void vmem_port_puts(const char *text) { serial_puts(text); }
