/*
 * vmem_port_kernel.c - the test kernel's port of libvmem: every hook of
 * include/vmem_port.h, for several CPUs with interrupts, no scheduler,
 * and frames from the kernel's own physical arena.
 *
 * Locks are interrupt-disabling spinlocks stored inside VmemLock: the
 * interrupt state is saved and interrupts disabled before the first try,
 * and restored after the release, so an interrupt handler on the same CPU
 * can never find a lock its CPU holds. A waiter spins on a plain load
 * with `pause` (not on the exchange, which would take the line from the
 * holder at every try), and counts its pauses in its per-CPU area: the
 * SMP stress reports them. The port checks the lock contract as it goes,
 * the way a test port should: a lock used before vmem_port_lock_init(),
 * released when not held or by another CPU, finalised while held, or
 * taken again by its own holder panics with the reason; so does a lock
 * held for seconds (its holder stopped), rather than hang.
 *
 * The quantum caches' CPU section is interrupts saved and disabled on this
 * CPU (cpu_irq_save / cpu_irq_restore), and its index is cpu_id(), one
 * load through the GS base: with no scheduler and interrupts off, nothing
 * else can enter the same CPU's magazines until the section ends.
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
 * reliance on it, or any use after free, show up. A page-source call runs
 * with interrupts off, so its per-CPU nesting counts (which catch the
 * allocator re-entering itself) see that CPU's calls only, never those of
 * an interrupt handler that came in between.
 *
 * The kernel cannot sleep (no scheduler): it is
 * built, with the library, with VMEM_PORT_CAN_SLEEP=0, so VM_SLEEP never
 * waits and the vmem_port_cond_* hooks are neither called nor defined.
 */
#include <stdbool.h>
#include <stdint.h>

#include "cpu.h"
#include "kmem.h"
#include "kprintf.h"
#include "layout.h"
#include "percpu.h"
#include "serial.h"
#include "smp.h"
#include "vmem_config.h"
#include "vmem_port.h"
#include "vmem_port_kernel.h"

_Static_assert(VMEM_PORT_CAN_SLEEP == 0,
               "the test kernel cannot sleep: build it and libvmem with VMEM_PORT_CAN_SLEEP=0");

/* ---- Locks --------------------------------------------------------------- */

#define KSPIN_MAGIC 0x6b73706eu /* "kspn": set by init, cleared by fini */
#define KSPIN_NO_OWNER (~0u)
/* A lock is held for a few microseconds, even under TCG with more guest
 * CPUs than host cores: one still held after this long has a stopped
 * holder, and waiting on would hang the run. */
#define KSPIN_HELD_LIMIT_MS 20000
/* Pauses between looks at the clock while waiting. */
#define KSPIN_CLOCK_EVERY 4096u

struct kspin {
    uint32_t locked; /* 0 or 1, changed atomically */
    uint32_t magic;
    uint32_t owner;  /* the holder's CPU, for the contract checks */
    uint32_t reserved;
    uint64_t acquisitions; /* for the curious reader of a dump */
    uint64_t spins;        /* pauses of every waiter, all CPUs */
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
    s->owner = KSPIN_NO_OWNER;
    s->acquisitions = 0;
    s->spins = 0;
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

/* Waits until the lock looks free; returns the pauses it took. While it
 * waits it holds nothing, so if the caller had interrupts on (and so held
 * no other lock) they are on again meanwhile: a CPU queueing for a busy
 * lock still takes its timer ticks. */
static uint64_t wait_until_free(struct kspin *s, VmemLock *lock, VmemIrqState state)
{
    uint64_t spins = 0, since = 0;
    cpu_irq_restore(state);
    while (__atomic_load_n(&s->locked, __ATOMIC_RELAXED) != 0) {
        cpu_pause();
        if (++spins % KSPIN_CLOCK_EVERY != 0)
            continue;
        uint64_t now = smp_now_ms();
        if (since == 0)
            since = now;
        else if (now - since > KSPIN_HELD_LIMIT_MS)
            kpanic("vmem_port_lock: lock %p held by cpu %u for over %u ms (cpu %u waiting)",
                   (void *)lock, __atomic_load_n(&s->owner, __ATOMIC_RELAXED),
                   KSPIN_HELD_LIMIT_MS, cpu_id());
    }
    cpu_cli();
    return spins;
}

VmemIrqState vmem_port_lock(VmemLock *lock)
{
    struct kspin *s = as_spin(lock);
    VmemIrqState state = (VmemIrqState)cpu_irq_save();
    struct percpu *me = this_cpu();
    if (s->magic != KSPIN_MAGIC)
        kpanic("vmem_port_lock: lock %p used before vmem_port_lock_init", (void *)lock);
    if (__atomic_load_n(&s->locked, __ATOMIC_RELAXED) != 0 &&
        __atomic_load_n(&s->owner, __ATOMIC_RELAXED) == me->id)
        kpanic("vmem_port_lock: lock %p is already held by this CPU (cpu %u: taken twice)",
               (void *)lock, me->id);
    uint64_t spins = 0;
    while (__atomic_exchange_n(&s->locked, 1, __ATOMIC_ACQUIRE) != 0)
        spins += wait_until_free(s, lock, state);
    __atomic_store_n(&s->owner, me->id, __ATOMIC_RELAXED);
    s->acquisitions++;
    s->spins += spins;
    me->lock_acquisitions++;
    me->lock_spins += spins;
    if (me->irq_depth != 0)
        me->irq_lock_acquisitions++;
    return state;
}

void vmem_port_unlock(VmemLock *lock, VmemIrqState state)
{
    struct kspin *s = as_spin(lock);
    if (s->magic != KSPIN_MAGIC)
        kpanic("vmem_port_unlock: lock %p was never initialised", (void *)lock);
    if (__atomic_load_n(&s->locked, __ATOMIC_RELAXED) == 1 && s->owner != cpu_id())
        kpanic("vmem_port_unlock: lock %p is held by cpu %u, not by cpu %u", (void *)lock,
               s->owner, cpu_id());
    __atomic_store_n(&s->owner, KSPIN_NO_OWNER, __ATOMIC_RELAXED);
    if (__atomic_exchange_n(&s->locked, 0, __ATOMIC_RELEASE) != 1)
        kpanic("vmem_port_unlock: lock %p is not held", (void *)lock);
    cpu_irq_restore(state);
}

/* ---- Page source --------------------------------------------------------- */

_Static_assert(VMEM_PAGE_SIZE == KMEM_FRAME_SIZE,
               "the page source hands out whole frames: VMEM_PAGE_SIZE must be the frame size");

#define POISON_ALLOC 0xa110ca7edeadbeefull /* handed out, not yet written */
#define POISON_FREE 0xf4eedf4eedf4eed0ull  /* given back */

static size_t pages_outstanding; /* changed atomically: every CPU calls the source */
/* 0: no faults; else 1 + calls that still succeed. Set by the shared
 * self-tests, which run on the boot CPU alone. */
static size_t fault_countdown;
/* Per CPU (struct percpu), page_alloc_depth counts calls of
 * vmem_port_page_alloc() in progress. The pages come from kmem_phys with
 * VM_BOOTSTRAP, and the contract says such a request never needs the page
 * source again: a nested call would recurse until the stack overflows, so
 * it is reported as the contract violation it is. page_source_depth counts
 * page-source calls of either kind: giving pages back to kmem_phys may
 * make it resize its hash and so take pages, which is fine once; a chain
 * deeper than this is the allocator feeding on itself. */
#define PAGE_SOURCE_MAX_DEPTH 4

static void enter_page_source(struct percpu *me, const char *call, size_t npages)
{
    if (++me->page_source_depth > PAGE_SOURCE_MAX_DEPTH)
        kpanic("%s of %zu pages: page-source calls nested %u deep: the allocator keeps "
               "re-entering kmem_phys through its page source",
               call, npages, me->page_source_depth);
}

void kport_fail_pages_after(size_t countdown)
{
    fault_countdown = countdown == SIZE_MAX ? countdown : countdown + 1;
}

void kport_stop_page_faults(void) { fault_countdown = 0; }

size_t kport_pages_outstanding(void) { return __atomic_load_n(&pages_outstanding, __ATOMIC_RELAXED); }

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
    if (npages == 0 || npages > SIZE_MAX / VMEM_PAGE_SIZE || !kmem_ready())
        return NULL;
    uint64_t irq = cpu_irq_save();
    struct percpu *me = this_cpu();
    if (me->page_alloc_depth != 0)
        kpanic("vmem_port_page_alloc(%zu, %#x) re-entered: the allocator asked for pages "
               "while getting pages from kmem_phys with VM_BOOTSTRAP",
               npages, (unsigned)vmflag);
    void *pages = NULL;
    if (!page_fault_now()) {
        me->page_alloc_depth++;
        enter_page_source(me, "vmem_port_page_alloc", npages);
        void *phys = vmem_xalloc(&kmem_phys, npages * VMEM_PAGE_SIZE, 0, 0, 0, NULL, NULL,
                                 vmflag | VM_ENDALLOC);
        me->page_source_depth--;
        me->page_alloc_depth--;
        if (phys != NULL) {
            pages = kmem_ptr(phys);
            poison(pages, npages, POISON_ALLOC);
            __atomic_add_fetch(&pages_outstanding, npages, __ATOMIC_RELAXED);
        }
    }
    cpu_irq_restore(irq);
    return pages;
}

void vmem_port_page_free(void *addr, size_t npages)
{
    if (addr == NULL || npages == 0)
        kpanic("vmem_port_page_free(%p, %zu): nothing to free", addr, npages);
    /* Only pages this source handed out, which are direct-map pointers. */
    if ((uintptr_t)addr < KERNEL_DIRECT_MAP || (uintptr_t)addr >= KERNEL_VMA_BASE)
        kpanic("vmem_port_page_free(%p, %zu): not a direct-map address", addr, npages);
    size_t out = __atomic_load_n(&pages_outstanding, __ATOMIC_RELAXED);
    if (npages > out)
        kpanic("vmem_port_page_free(%p, %zu): only %zu pages are out", addr, npages, out);
    uint64_t irq = cpu_irq_save();
    struct percpu *me = this_cpu();
    poison(addr, npages, POISON_FREE);
    __atomic_sub_fetch(&pages_outstanding, npages, __ATOMIC_RELAXED);
    enter_page_source(me, "vmem_port_page_free", npages);
    vmem_xfree(&kmem_phys, (void *)(uintptr_t)virt_to_phys(addr), npages * VMEM_PAGE_SIZE);
    me->page_source_depth--;
    cpu_irq_restore(irq);
}

/* ---- Reports, CPU sections and console ----------------------------------------------- */

static KportMisuseHandler *misuse_handler;

KportMisuseHandler *kport_set_misuse_handler(KportMisuseHandler *handler)
{
    KportMisuseHandler *previous = misuse_handler;
    misuse_handler = handler;
    return previous;
}

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

/* A CPU section: interrupts off on this CPU, which is all the exclusion a
 * CPU's quantum-cache magazines need (nothing else runs here until leave).
 * The index is one load through the GS base. Counted per CPU, so the SMP
 * stress can say how often each CPU entered its caches. */
unsigned vmem_port_cpu_enter(VmemIrqState *state)
{
    *state = (VmemIrqState)cpu_irq_save();
    PERCPU_COUNT(cache_entries);
    return cpu_id();
}

void vmem_port_cpu_leave(unsigned cpu, VmemIrqState state)
{
    (void)cpu;
    cpu_irq_restore((uint64_t)state);
}

void vmem_port_puts(const char *text) { serial_puts(text); }
