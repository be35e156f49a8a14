/*
 * vmem_port_example.c - a minimal libvmem port for a kernel with spinlocks
 * and no scheduler (build libvmem with -DVMEM_PORT_CAN_SLEEP=0, as
 * build/libvmem.a and build/cross/<arch>/libvmem.a are).
 *
 * Every hook of include/vmem_port.h is here, each with the smallest body
 * that honours its contract:
 *   lock        a test-and-set spinlock, stored inside the arena's VmemLock,
 *               with interrupts disabled while it is held (stubbed below:
 *               the three lines each architecture needs are in comments);
 *   cond        absent: with VMEM_PORT_CAN_SLEEP=0 the library never calls
 *               the condition hooks, so they need not exist;
 *   pages       a static pool of pages with a bitmap, under its own lock:
 *               enough for boundary tags, hash tables and quantum-cache
 *               structures before (or instead of) a real page allocator;
 *   misuse      recorded, printed, and by default a panic;
 *   panic       printed, then the CPU halts;
 *   cpu section interrupts off, CPU index 0 (one CPU);
 *   puts        the kernel console.
 * It also counts contract violations (the page source or the misuse hook
 * entered with a vmem lock held), which a debug kernel can assert on.
 */
#include "kernel.h"
#include "vmem_config.h"
#include "vmem_port.h"

/* ---- Interrupts (stubbed) ---------------------------------------------------
 * A lock must keep interrupts off while held, or an interrupt handler that
 * allocates on the same CPU spins forever on a lock its own CPU holds. Real
 * bodies, by architecture:
 *   x86_64   pushfq; popq %rax; cli          restore: if (state & 0x200) sti
 *   i386     pushfl; popl %eax; cli          restore: if (state & 0x200) sti
 *   aarch64  mrs x0, daif; msr daifset, #2   restore: msr daif, x0
 *   riscv64  csrrci a0, sstatus, 2           restore: csrs sstatus, a0 & 2
 * The example also runs as a user program (host_main.c), where these are
 * privileged, so here they save nothing and change nothing. */
static VmemIrqState irq_save_disable(void) { return 0; }

static void irq_restore(VmemIrqState state) { (void)state; }

/* Tells the CPU we are spinning (x86 `pause`, arm `yield`), so a sibling
 * hyperthread runs and the lock holder is not starved. */
static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __asm__ volatile("pause" ::: "memory");
#elif defined(__aarch64__)
    __asm__ volatile("yield" ::: "memory");
#else
    __asm__ volatile("" ::: "memory");
#endif
}

/* ---- Spinlocks --------------------------------------------------------------- */

struct spinlock {
    uint32_t held; /* 0 free, 1 held; only touched with __atomic builtins */
};

_Static_assert(sizeof(struct spinlock) <= sizeof(VmemLock),
               "struct spinlock must fit in VmemLock");
_Static_assert(_Alignof(struct spinlock) <= _Alignof(VmemLock),
               "VmemLock is not aligned enough for struct spinlock");

static void spin_lock(struct spinlock *lock)
{
    while (__atomic_exchange_n(&lock->held, 1, __ATOMIC_ACQUIRE) != 0) {
        /* Wait with plain loads, so the cache line is not bounced. */
        while (__atomic_load_n(&lock->held, __ATOMIC_RELAXED) != 0)
            cpu_relax();
    }
}

static void spin_unlock(struct spinlock *lock) { __atomic_store_n(&lock->held, 0, __ATOMIC_RELEASE); }

static struct spinlock *as_spinlock(VmemLock *lock) { return (struct spinlock *)(void *)lock; }

/* vmem locks held by each CPU, to check the contract (one CPU here). */
#define PORT_MAX_CPUS 1
static unsigned vmem_locks_held[PORT_MAX_CPUS];

/* The CPU running the caller (a kernel reads its per-CPU id; one CPU here). */
static unsigned this_cpu(void) { return 0; }
static size_t contract_violations;

size_t kernel_port_contract_violations(void)
{
    return __atomic_load_n(&contract_violations, __ATOMIC_RELAXED);
}

static void contract_broken(void) { __atomic_fetch_add(&contract_violations, 1, __ATOMIC_RELAXED); }

void vmem_port_lock_init(VmemLock *lock) { as_spinlock(lock)->held = 0; }

void vmem_port_lock_fini(VmemLock *lock) { (void)lock; }

VmemIrqState vmem_port_lock(VmemLock *lock)
{
    VmemIrqState state = irq_save_disable();
    spin_lock(as_spinlock(lock));
    vmem_locks_held[this_cpu()]++;
    return state;
}

void vmem_port_unlock(VmemLock *lock, VmemIrqState state)
{
    unsigned *held = &vmem_locks_held[this_cpu()];
    if (*held == 0)
        contract_broken();
    else
        (*held)--;
    spin_unlock(as_spinlock(lock));
    irq_restore(state);
}

/* ---- The page source: a static pool ---------------------------------------- */

/* What vmem needs pages for: one boundary tag (96 bytes on LP64) per live
 * segment and per span, beyond the static ones vmem_bootstrap() provides,
 * kept by the library once taken; allocated-segment hash tables (8 bytes a
 * bucket, about one bucket per live segment); quantum-cache structures. So
 * 1 MiB covers about 10,000 live segments: the example's 4096 PIDs all in
 * use, plus its heap. A kernel sizes the pool for what vmem needs before its
 * frame allocator is up, and then takes pages from its frame arena instead
 * (passing vmflag on, VM_BOOTSTRAP included). */
#define POOL_PAGES 256
#define POOL_WORD_BITS 32

static _Alignas(KERNEL_PAGE_SIZE) unsigned char pool[POOL_PAGES][KERNEL_PAGE_SIZE];
static uint32_t pool_used[POOL_PAGES / POOL_WORD_BITS]; /* bit set: page handed out */
static size_t pool_in_use, pool_failures;
static struct spinlock pool_lock;

_Static_assert(KERNEL_PAGE_SIZE == VMEM_PAGE_SIZE,
               "the pool's pages must be the library's VMEM_PAGE_SIZE");

static bool page_used(size_t i)
{
    return (pool_used[i / POOL_WORD_BITS] >> (i % POOL_WORD_BITS)) & 1u;
}

static void mark_pages(size_t first, size_t npages, bool used)
{
    for (size_t i = first; i < first + npages; i++) {
        uint32_t bit = (uint32_t)1 << (i % POOL_WORD_BITS);
        if (used)
            pool_used[i / POOL_WORD_BITS] |= bit;
        else
            pool_used[i / POOL_WORD_BITS] &= ~bit;
    }
}

static bool any_vmem_lock_held(void) { return vmem_locks_held[this_cpu()] != 0; }

void *vmem_port_page_alloc(size_t npages, int vmflag)
{
    (void)vmflag; /* a static pool never waits, so VM_SLEEP changes nothing */
    if (any_vmem_lock_held())
        contract_broken();
    if (npages == 0 || npages > POOL_PAGES)
        return NULL;
    VmemIrqState state = irq_save_disable();
    spin_lock(&pool_lock);
    void *pages = NULL;
    /* First fit over the bitmap: the pool is small and refills are rare. */
    for (size_t first = 0, run = 0; first + run < POOL_PAGES;) {
        if (page_used(first + run)) {
            first += run + 1;
            run = 0;
        } else if (++run == npages) {
            mark_pages(first, npages, true);
            pool_in_use += npages;
            pages = pool[first];
            break;
        }
    }
    if (pages == NULL)
        pool_failures++;
    spin_unlock(&pool_lock);
    irq_restore(state);
    return pages;
}

void vmem_port_page_free(void *addr, size_t npages)
{
    if (any_vmem_lock_held())
        contract_broken();
    uintptr_t offset = (uintptr_t)addr - (uintptr_t)pool[0];
    if ((uintptr_t)addr < (uintptr_t)pool[0] || offset % KERNEL_PAGE_SIZE != 0 ||
        offset / KERNEL_PAGE_SIZE + npages > POOL_PAGES)
        vmem_port_panic("vmem_port_page_free: pages that are not from the pool");
    VmemIrqState state = irq_save_disable();
    spin_lock(&pool_lock);
    mark_pages(offset / KERNEL_PAGE_SIZE, npages, false);
    pool_in_use -= npages;
    spin_unlock(&pool_lock);
    irq_restore(state);
}

size_t kernel_page_pool_in_use(void) { return pool_in_use; }

size_t kernel_page_pool_failures(void) { return pool_failures; }

/* ---- Reports ------------------------------------------------------------------ */

struct kernel_misuse_log kernel_misuse_log;
bool kernel_misuse_panics = true;

/* The console has no printf: numbers go through this. */
static void console_hex(uintptr_t value)
{
    char text[2 + 2 * sizeof(value) + 1];
    size_t at = sizeof(text) - 1;
    text[at] = '\0';
    do {
        text[--at] = "0123456789abcdef"[value & 0xf];
        value >>= 4;
    } while (value != 0);
    text[--at] = 'x';
    text[--at] = '0';
    kernel_console_write(&text[at]);
}

void vmem_port_misuse(const VmemMisuse *report)
{
    if (any_vmem_lock_held())
        contract_broken();
    kernel_misuse_log.count++;
    kernel_misuse_log.last = *report;
    kernel_console_write("vmem misuse: ");
    kernel_console_write(vmem_misuse_name(report->kind));
    kernel_console_write(" in ");
    kernel_console_write(report->call);
    kernel_console_write("(arena \"");
    kernel_console_write(report->arena);
    kernel_console_write("\", addr ");
    console_hex(report->addr);
    kernel_console_write(", size ");
    console_hex(report->size);
    kernel_console_write("): ");
    kernel_console_write(report->reason);
    kernel_console_write("\n");
    if (kernel_misuse_panics)
        vmem_port_panic("misuse of the vmem API (see above)");
    /* Returning makes the misused call fail, with the arena unchanged. */
}

void vmem_port_panic(const char *message)
{
    kernel_console_write("vmem panic: ");
    kernel_console_write(message);
    kernel_console_write("\n");
    kernel_halt();
}

/* A CPU section: interrupts off keep everything else on this CPU out. */
unsigned vmem_port_cpu_enter(VmemIrqState *state)
{
    *state = irq_save_disable();
    return this_cpu();
}

void vmem_port_cpu_leave(unsigned cpu, VmemIrqState state)
{
    (void)cpu;
    irq_restore(state);
}

void vmem_port_puts(const char *text) { kernel_console_write(text); }
