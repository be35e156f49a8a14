/*
 * smp_stress.c - every CPU, and an interrupt handler on each, using the
 * same arenas at once: what the port's locks, the quantum caches' per-CPU
 * slots and the allocator's interrupt rules are for.
 *
 * The arenas: the frame arena itself (kmem_phys: plain and constrained
 * vmem_xalloc requests), a heap importing from it with quantum caches
 * (smp-heap, the caches' sizes and an aligned vmem_xalloc that bypasses
 * them), an importing chain of two levels (smp-chain-leaf imports from
 * smp-chain-mid, which imports from kmem_phys) and next-fit IDs (smp-ids).
 * Each CPU does STRESS_OPS random allocations and frees of random kinds,
 * holding at most STRESS_LIVE at a time; one CPU (the last) also calls
 * vmem_reap() on the heap every REAP_EVERY operations while the others
 * allocate from it. Each CPU's LAPIC timer interrupts it every
 * TIMER_PERIOD_US, and the handler allocates and frees VM_NOSLEEP from the
 * heap (a quantum-cached size) and from the IDs (a plain arena).
 *
 * Ownership: every unit handed out is marked in a table with one word per
 * unit (per physical frame for the frame-valued arenas, which all hand
 * out frames of kmem_phys, so one table covers them all; per ID for the
 * IDs), set with an atomic exchange that must find the word clear, and
 * cleared with one that must find the holder's mark. A unit handed out
 * twice - by two arenas, two CPUs, or a CPU and an interrupt handler - is
 * caught when the second holder marks it, and named.
 *
 * Afterwards, on the boot CPU with every other CPU halted: no allocation
 * failed, no unit was handed out twice and every mark is clear again; each
 * leaf arena's statistics (vmem_stat) equal the counts of what its callers
 * did; vmem_check passes on every arena; and once the stress arenas are
 * destroyed, every frame is back in the frame arena. The counters of the
 * port (lock acquisitions and spins, interrupt-context locks, per-CPU
 * cache entries) and of the timer are printed per CPU.
 *
 * The watchdog: the boot CPU looks at every other CPU's progress counter
 * while it works and while it waits; a CPU whose counter stands still for
 * WATCHDOG_MS fails the run with a panic that names it.
 */
#include "smp_stress.h"

#include <stdbool.h>
#include <stdint.h>

#include "cpu.h"
#include "kmem.h"
#include "kprintf.h"
#include "ktests.h"
#include "memmap.h"
#include "percpu.h"
#include "smp.h"
#include "vmem.h"
#include "vmem_port_kernel.h"
#include "vtest.h"

/* Operations per CPU: a 4-CPU boot under TCG on two loaded host cores
 * finishes the stress in well under a minute. */
#define STRESS_OPS 40000
#define STRESS_LIVE 48
#define REAP_EVERY 64
#define WATCHDOG_EVERY 32
#define WATCHDOG_MS 60000
#define STALL_AFTER 500
#define TIMER_PERIOD_US 2000
#define FRAME KMEM_FRAME_SIZE
#define IDS 65536
#define MIB (1ull << 20)
/* Constrained frame requests stay in [XALLOC_LO, XALLOC_LO + XALLOC_SPAN)
 * (clipped to RAM), aligned to 16-64 KiB, never crossing NOCROSS. */
#define XALLOC_LO (16 * MIB)
#define XALLOC_SPAN (64 * MIB)
#define NOCROSS (256 * 1024)

enum kind { K_PHYS, K_PHYS_CONSTRAINED, K_HEAP, K_HEAP_ALIGNED, K_CHAIN, K_ID, KINDS };
static const char *const kind_names[KINDS] = {
    "phys", "phys constrained", "heap (cached)", "heap aligned", "chain leaf", "ids next-fit",
};

struct held {
    uintptr_t addr;
    size_t size;
    enum kind kind;
};

struct stress_cpu {
    uint64_t rng;
    size_t live;
    struct held held[STRESS_LIVE];
    uint64_t allocs[KINDS], frees[KINDS], failures[KINDS];
    uint64_t irq_heap_allocs, irq_id_allocs;
    uint64_t reaps;
    uint64_t constraint_violations;
    volatile bool done;
} __attribute__((aligned(64)));

static struct stress_cpu stress[CPU_MAX];
static Vmem heap, chain_mid, chain_leaf, ids;
static uint32_t *frame_owner; /* one word per frame of [0, owner_frames * FRAME) */
static size_t owner_frames, owner_table_bytes;
static void *owner_table_phys;
static uint32_t id_owner[IDS + 1];
static uintptr_t xalloc_lo, xalloc_hi;
static unsigned cpus;
static unsigned arrived;
static volatile bool go;
static unsigned units_twice, marks_wrong, misuses; /* changed atomically */

static uint64_t next_random(struct stress_cpu *s)
{
    uint64_t x = s->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    s->rng = x;
    return x;
}

static uint64_t below(struct stress_cpu *s, uint64_t n) { return next_random(s) % n; }

/* ---- Ownership ------------------------------------------------------------- */

/* A holder's mark: its CPU, whether an interrupt handler holds it, and
 * the kind of allocation. Never 0. */
static uint32_t mark_of(enum kind kind, bool in_irq)
{
    return (cpu_id() + 1) | (in_irq ? 0x100u : 0) | ((uint32_t)kind << 16);
}

static uint32_t *table_of(enum kind kind, uintptr_t addr, size_t size, size_t *n)
{
    if (kind == K_ID) {
        *n = size;
        return &id_owner[addr];
    }
    *n = size / FRAME;
    if (addr / FRAME + *n > owner_frames)
        kpanic("smp stress: frame %#lx is beyond the ownership table", (unsigned long)addr);
    return &frame_owner[addr / FRAME];
}

static void claim(enum kind kind, uintptr_t addr, size_t size, bool in_irq)
{
    size_t n;
    uint32_t *words = table_of(kind, addr, size, &n), mark = mark_of(kind, in_irq);
    for (size_t i = 0; i < n; i++) {
        uint32_t old = __atomic_exchange_n(&words[i], mark, __ATOMIC_ACQ_REL);
        if (old != 0 && __atomic_fetch_add(&units_twice, 1, __ATOMIC_RELAXED) < 5)
            kprintf("    unit %#lx (%s) handed out twice: held by cpu %u%s (%s), now given "
                    "to cpu %u%s\n",
                    (unsigned long)(kind == K_ID ? addr + i : addr + i * FRAME),
                    kind_names[kind], (old & 0xff) - 1, (old & 0x100) ? " in an interrupt" : "",
                    kind_names[(old >> 16) % KINDS], cpu_id(), in_irq ? " in an interrupt" : "");
    }
}

static void unclaim(enum kind kind, uintptr_t addr, size_t size, bool in_irq)
{
    size_t n;
    uint32_t *words = table_of(kind, addr, size, &n), mark = mark_of(kind, in_irq);
    for (size_t i = 0; i < n; i++) {
        uint32_t old = __atomic_exchange_n(&words[i], 0, __ATOMIC_ACQ_REL);
        if (old != mark && __atomic_fetch_add(&marks_wrong, 1, __ATOMIC_RELAXED) < 5)
            kprintf("    unit %#lx (%s) freed by cpu %u held the mark %#x, not %#x\n",
                    (unsigned long)(kind == K_ID ? addr + i : addr + i * FRAME),
                    kind_names[kind], cpu_id(), old, mark);
    }
}

/* ---- One operation ---------------------------------------------------------- */

static const int policies[] = {VM_INSTANTFIT, VM_BESTFIT, VM_FIRSTFIT};

static void *allocate(struct stress_cpu *s, enum kind kind, size_t *size)
{
    switch (kind) {
    case K_PHYS:
        *size = (1 + below(s, 4)) * FRAME;
        return vmem_alloc(&kmem_phys, *size, policies[below(s, 3)] | VM_NOSLEEP);
    case K_PHYS_CONSTRAINED: {
        *size = (1 + below(s, 4)) * FRAME;
        size_t align = (size_t)FRAME << (2 + below(s, 3));
        size_t phase = below(s, 2) * FRAME;
        void *p = vmem_xalloc(&kmem_phys, *size, align, phase, NOCROSS, (void *)xalloc_lo,
                              (void *)xalloc_hi, VM_NOSLEEP);
        uintptr_t a = (uintptr_t)p;
        if (p != NULL && ((a - phase) % align != 0 || a < xalloc_lo || a + *size > xalloc_hi ||
                          a / NOCROSS != (a + *size - 1) / NOCROSS))
            s->constraint_violations++;
        return p;
    }
    case K_HEAP:
        *size = (1 + below(s, 4)) * FRAME;
        return vmem_alloc(&heap, *size, VM_NOSLEEP);
    case K_HEAP_ALIGNED: {
        *size = 2 * FRAME;
        void *p = vmem_xalloc(&heap, *size, 8 * FRAME, 0, 0, NULL, NULL, VM_NOSLEEP);
        if (p != NULL && (uintptr_t)p % (8 * FRAME) != 0)
            s->constraint_violations++;
        return p;
    }
    case K_CHAIN:
        *size = (1 + below(s, 8)) * FRAME;
        return vmem_alloc(&chain_leaf, *size, VM_NOSLEEP);
    case K_ID:
        *size = 1;
        return vmem_alloc(&ids, 1, VM_NEXTFIT | VM_NOSLEEP);
    default:
        return NULL;
    }
}

static void release(const struct held *h)
{
    switch (h->kind) {
    case K_PHYS:
        vmem_free(&kmem_phys, (void *)h->addr, h->size);
        break;
    case K_PHYS_CONSTRAINED:
        vmem_xfree(&kmem_phys, (void *)h->addr, h->size);
        break;
    case K_HEAP:
        vmem_free(&heap, (void *)h->addr, h->size);
        break;
    case K_HEAP_ALIGNED:
        vmem_xfree(&heap, (void *)h->addr, h->size);
        break;
    case K_CHAIN:
        vmem_free(&chain_leaf, (void *)h->addr, h->size);
        break;
    case K_ID:
        vmem_free(&ids, (void *)h->addr, h->size);
        break;
    default:
        break;
    }
}

static void free_one(struct stress_cpu *s, size_t i)
{
    struct held h = s->held[i];
    s->held[i] = s->held[--s->live];
    unclaim(h.kind, h.addr, h.size, false);
    release(&h);
    s->frees[h.kind]++;
}

static void one_operation(struct stress_cpu *s)
{
    if (s->live == STRESS_LIVE || (s->live > 0 && below(s, 2) == 0)) {
        free_one(s, below(s, s->live));
        return;
    }
    enum kind kind = (enum kind)below(s, KINDS);
    size_t size = 0;
    void *p = allocate(s, kind, &size);
    if (p == NULL) {
        s->failures[kind]++;
        return;
    }
    s->allocs[kind]++;
    claim(kind, (uintptr_t)p, size, false);
    s->held[s->live++] = (struct held){(uintptr_t)p, size, kind};
}

/* ---- The timer ---------------------------------------------------------------- */

/* In interrupt context, on whichever CPU the tick came to: one cached
 * heap object and one ID, allocated, marked, unmarked and freed. */
static void stress_tick(void)
{
    struct stress_cpu *s = &stress[cpu_id()];
    struct percpu *me = this_cpu();
    void *frame = vmem_alloc(&heap, FRAME, VM_NOSLEEP);
    void *id = vmem_alloc(&ids, 1, VM_NOSLEEP);
    me->irq_vmem_calls += 2;
    if (frame != NULL) {
        s->irq_heap_allocs++;
        claim(K_HEAP, (uintptr_t)frame, FRAME, true);
        unclaim(K_HEAP, (uintptr_t)frame, FRAME, true);
        vmem_free(&heap, frame, FRAME);
        me->irq_vmem_calls++;
    } else {
        me->irq_vmem_failures++;
    }
    if (id != NULL) {
        s->irq_id_allocs++;
        claim(K_ID, (uintptr_t)id, 1, true);
        unclaim(K_ID, (uintptr_t)id, 1, true);
        vmem_free(&ids, id, 1);
        me->irq_vmem_calls++;
    } else {
        me->irq_vmem_failures++;
    }
}

/* ---- The watchdog --------------------------------------------------------------- */

static uint64_t seen_progress[CPU_MAX], seen_at_ms[CPU_MAX];
static unsigned watchdog_ms = WATCHDOG_MS;
static unsigned stall_cpu = CPU_MAX;

void smp_stress_stall_cpu(unsigned cpu, unsigned ms)
{
    stall_cpu = cpu;
    watchdog_ms = ms;
}

static void watchdog(void)
{
    uint64_t now = smp_now_ms();
    for (unsigned i = 1; i < cpus; i++) {
        if (stress[i].done)
            continue;
        uint64_t progress = percpu[i].progress;
        if (progress != seen_progress[i] || seen_at_ms[i] == 0) {
            seen_progress[i] = progress;
            seen_at_ms[i] = now;
        } else if (now - seen_at_ms[i] > watchdog_ms) {
            kpanic("smp stress: cpu %u stopped making progress (%lu operations done, none "
                   "for %u ms)",
                   i, (unsigned long)progress, watchdog_ms);
        }
    }
}

/* ---- Each CPU's part ---------------------------------------------------------- */

static void stress_cpu_run(void)
{
    unsigned me = cpu_id();
    struct stress_cpu *s = &stress[me];
    s->rng = 0x9e3779b97f4a7c15ull * (me + 1);
    __atomic_add_fetch(&arrived, 1, __ATOMIC_ACQ_REL);
    while (!go) {
        if (me == 0)
            watchdog();
        cpu_pause();
    }
    smp_timer_start(TIMER_PERIOD_US, stress_tick);
    cpu_sti();
    bool reaper = me == cpus - 1;
    for (uint64_t op = 0; op < STRESS_OPS; op++) {
        one_operation(s);
        PERCPU_COUNT(progress);
        if (reaper && op % REAP_EVERY == 0) {
            vmem_reap(&heap);
            s->reaps++;
        }
        if (me == 0 && op % WATCHDOG_EVERY == 0)
            watchdog();
        if (me == stall_cpu && op == STALL_AFTER) {
            kprintf("kernel: cpu %u stops for good (KERNEL_BREAK=ap-stall)\n", me);
            cpu_halt_forever();
        }
    }
    while (s->live > 0)
        free_one(s, s->live - 1);
    cpu_cli();
    smp_timer_stop();
    __atomic_store_n(&s->done, true, __ATOMIC_RELEASE);
}

/* ---- Set-up, checks and report ------------------------------------------------ */

static void on_misuse(const VmemMisuse *report)
{
    __atomic_add_fetch(&misuses, 1, __ATOMIC_RELAXED);
    kport_print_misuse(report);
}

static uint64_t phys_in_use_without_tags(void)
{
    return kmem_phys.stat.in_use - (uint64_t)kport_pages_outstanding() * FRAME;
}

static uint64_t sum_of(const uint64_t *field_of_cpu0, size_t stride_words)
{
    uint64_t sum = 0;
    for (unsigned i = 0; i < cpus; i++)
        sum += field_of_cpu0[i * stride_words];
    return sum;
}
#define SUM(field) sum_of(&stress[0].field, sizeof(struct stress_cpu) / sizeof(uint64_t))
#define PERCPU_SUM(field) sum_of(&percpu[0].field, sizeof(struct percpu) / sizeof(uint64_t))

static bool setup_done;
static uint64_t phys_before;
static size_t failures_total;
static bool stats_exact, arenas_consistent, tables_clear, frames_back, every_cpu_ticked;
static bool every_cpu_worked;

static void setup(void)
{
    cpus = smp_cpus_online();
    /* The counters of the port and the timer cover the stress alone (the
     * boot CPU's self-tests ran before it; the others are waiting). */
    for (unsigned i = 0; i < cpus; i++) {
        struct percpu *c = &percpu[i];
        c->lock_acquisitions = c->lock_spins = c->irq_lock_acquisitions = 0;
        c->cache_entries = c->timer_ticks = c->irq_vmem_calls = c->irq_vmem_failures = 0;
        c->progress = 0;
    }
    phys_before = phys_in_use_without_tags();
    uint64_t top = memmap_ram_top();
    owner_frames = (size_t)((top + FRAME - 1) / FRAME);
    owner_table_bytes = (owner_frames * sizeof(uint32_t) + FRAME - 1) / FRAME * FRAME;
    owner_table_phys = vmem_alloc(&kmem_phys, owner_table_bytes, VM_NOSLEEP);
    if (owner_table_phys == NULL)
        kpanic("smp stress: no %zu bytes for the ownership table", owner_table_bytes);
    frame_owner = kmem_ptr(owner_table_phys);
    for (size_t i = 0; i < owner_frames; i++)
        frame_owner[i] = 0;
    xalloc_lo = XALLOC_LO;
    xalloc_hi = XALLOC_LO + XALLOC_SPAN < top ? XALLOC_LO + XALLOC_SPAN : (uintptr_t)top;

    if (vmem_init(&heap, "smp-heap", NULL, 0, FRAME, vmem_alloc, vmem_free, &kmem_phys,
                  4 * FRAME, VM_NOSLEEP) != 0 ||
        vmem_init(&chain_mid, "smp-chain-mid", NULL, 0, FRAME, vmem_alloc, vmem_free,
                  &kmem_phys, 0, VM_NOSLEEP) != 0 ||
        vmem_init(&chain_leaf, "smp-chain-leaf", NULL, 0, FRAME, vmem_alloc, vmem_free,
                  &chain_mid, 0, VM_NOSLEEP) != 0 ||
        vmem_init(&ids, "smp-ids", (void *)1, IDS, 1, NULL, NULL, NULL, 0, VM_NOSLEEP) != 0)
        kpanic("smp stress: cannot create the arenas");
    setup_done = true;
}

static bool leaf_stat_exact(Vmem *arena, uint64_t allocs, uint64_t frees)
{
    VmemStat st;
    if (vmem_stat(arena, &st) != 0)
        return false;
    bool exact = st.in_use == 0 && st.alloc == allocs && st.free == frees;
    kprintf("    %s: %lu allocations and %lu frees counted by the CPUs, %lu and %lu by "
            "vmem_stat, in use %zu\n",
            arena->name, (unsigned long)allocs, (unsigned long)frees, (unsigned long)st.alloc,
            (unsigned long)st.free, st.in_use);
    return exact;
}

static bool consistent(Vmem *arena)
{
    VmemCheckReport report;
    if (vmem_check(arena, &report) == 0)
        return true;
    kprintf("    vmem_check(%s): %s at %#lx size %#zx\n", arena->name, report.reason,
            (unsigned long)report.addr, report.size);
    return false;
}

static void check_results(void)
{
    for (unsigned i = 0; i < cpus; i++)
        for (int k = 0; k < KINDS; k++)
            failures_total += stress[i].failures[k];
    failures_total += PERCPU_SUM(irq_vmem_failures);

    uint64_t heap_allocs = SUM(allocs[K_HEAP]) + SUM(allocs[K_HEAP_ALIGNED]) + SUM(irq_heap_allocs);
    uint64_t heap_frees = SUM(frees[K_HEAP]) + SUM(frees[K_HEAP_ALIGNED]) + SUM(irq_heap_allocs);
    uint64_t id_allocs = SUM(allocs[K_ID]) + SUM(irq_id_allocs);
    uint64_t id_frees = SUM(frees[K_ID]) + SUM(irq_id_allocs);
    stats_exact = leaf_stat_exact(&heap, heap_allocs, heap_frees);
    stats_exact &= leaf_stat_exact(&chain_leaf, SUM(allocs[K_CHAIN]), SUM(frees[K_CHAIN]));
    stats_exact &= leaf_stat_exact(&ids, id_allocs, id_frees);
    stats_exact &= chain_mid.stat.in_use == 0 && chain_mid.stat.import == 0 &&
                   chain_leaf.stat.import == 0;

    /* Every arena is checked (and reported), not only up to the first
     * inconsistent one. */
    Vmem *const arenas[] = {&heap, &chain_mid, &chain_leaf, &ids, &kmem_phys, &kmem_heap};
    arenas_consistent = true;
    for (size_t i = 0; i < sizeof(arenas) / sizeof(arenas[0]); i++)
        if (!consistent(arenas[i]))
            arenas_consistent = false;

    tables_clear = true;
    for (size_t i = 0; i < owner_frames; i++)
        tables_clear &= frame_owner[i] == 0;
    for (size_t i = 0; i <= IDS; i++)
        tables_clear &= id_owner[i] == 0;

    every_cpu_ticked = every_cpu_worked = true;
    for (unsigned i = 0; i < cpus; i++) {
        every_cpu_ticked &= percpu[i].timer_ticks > 0 && percpu[i].irq_lock_acquisitions > 0;
        every_cpu_worked &= percpu[i].progress == STRESS_OPS;
    }

    vmem_destroy(&ids);
    vmem_destroy(&chain_leaf);
    vmem_destroy(&chain_mid);
    vmem_destroy(&heap);
    vmem_free(&kmem_phys, owner_table_phys, owner_table_bytes);
    vmem_release_pages();
    frames_back = phys_in_use_without_tags() == phys_before && consistent(&kmem_phys);
}

static void report(uint64_t elapsed_ms)
{
    kprintf("smp stress: %u CPUs x %u operations in %lu ms, a timer tick every %u us on each\n",
            cpus, STRESS_OPS, (unsigned long)elapsed_ms, TIMER_PERIOD_US);
    for (unsigned i = 0; i < cpus; i++) {
        const struct percpu *c = &percpu[i];
        const struct stress_cpu *s = &stress[i];
        uint64_t allocs = 0;
        for (int k = 0; k < KINDS; k++)
            allocs += s->allocs[k];
        kprintf("  cpu %u: %lu allocations; locks %lu taken, %lu spins; timer %lu ticks, "
                "%lu interrupt-context vmem calls, %lu locks in interrupts; %lu per-CPU "
                "cache entries; %lu reaps\n",
                i, (unsigned long)allocs, (unsigned long)c->lock_acquisitions,
                (unsigned long)c->lock_spins, (unsigned long)c->timer_ticks,
                (unsigned long)c->irq_vmem_calls, (unsigned long)c->irq_lock_acquisitions,
                (unsigned long)c->cache_entries, (unsigned long)s->reaps);
    }
    kprintf("  in all: %lu lock spins, %lu interrupt-context vmem calls, %lu per-CPU cache "
            "entries; %zu failed allocations, %u units handed out twice, %u wrong marks, %u "
            "misuse reports\n",
            (unsigned long)PERCPU_SUM(lock_spins), (unsigned long)PERCPU_SUM(irq_vmem_calls),
            (unsigned long)PERCPU_SUM(cache_entries), failures_total, units_twice, marks_wrong,
            misuses);
}

/* ---- The verdicts, as kernel tests -------------------------------------------- */

static void smp_every_cpu_came_online_and_did_its_share(void)
{
    KT_ASSERT(cpus == smp_cpus_present());
    KT_ASSERT(every_cpu_worked);
}

static void smp_stress_hands_no_unit_out_twice(void)
{
    KT_ASSERT(units_twice == 0);
    KT_ASSERT(marks_wrong == 0);
    KT_ASSERT(tables_clear);
}

static void smp_stress_allocations_all_succeed_within_their_constraints(void)
{
    KT_ASSERT(failures_total == 0);
    KT_ASSERT(SUM(constraint_violations) == 0);
    KT_ASSERT(misuses == 0);
}

static void smp_timer_interrupts_allocate_on_every_cpu(void)
{
    KT_ASSERT(every_cpu_ticked);
    KT_ASSERT(PERCPU_SUM(irq_vmem_calls) >= 4 * PERCPU_SUM(timer_ticks));
}

static void smp_stress_statistics_are_exact(void) { KT_ASSERT(stats_exact); }

static void smp_stress_arenas_pass_vmem_check(void) { KT_ASSERT(arenas_consistent); }

static void smp_stress_gives_every_frame_back(void) { KT_ASSERT(frames_back); }

static const struct ktest verdicts[] = {
    KTEST(smp_every_cpu_came_online_and_did_its_share),
    KTEST(smp_stress_hands_no_unit_out_twice),
    KTEST(smp_stress_allocations_all_succeed_within_their_constraints),
    KTEST(smp_timer_interrupts_allocate_on_every_cpu),
    KTEST(smp_stress_statistics_are_exact),
    KTEST(smp_stress_arenas_pass_vmem_check),
    KTEST(smp_stress_gives_every_frame_back),
};

void smp_stress_run(size_t *passed, size_t *failed)
{
    setup();
    KportMisuseHandler *previous = kport_set_misuse_handler(on_misuse);
    smp_run_on_aps(stress_cpu_run);
    uint64_t asked = smp_now_ms();
    while (__atomic_load_n(&arrived, __ATOMIC_ACQUIRE) != cpus - 1) {
        if (smp_now_ms() - asked > watchdog_ms)
            kpanic("smp stress: only %u of the %u other CPUs started it within %u ms",
                   __atomic_load_n(&arrived, __ATOMIC_ACQUIRE), cpus - 1, watchdog_ms);
        cpu_pause();
    }
    uint64_t start = smp_now_ms();
    go = true;
    stress_cpu_run();
    for (unsigned i = 1; i < cpus; i++)
        while (!__atomic_load_n(&stress[i].done, __ATOMIC_ACQUIRE)) {
            watchdog();
            cpu_pause();
        }
    uint64_t elapsed = smp_now_ms() - start;
    check_results();
    report(elapsed);
    kport_set_misuse_handler(previous);
    ktest_run_list(verdicts, sizeof(verdicts) / sizeof(verdicts[0]), passed, failed);
}
