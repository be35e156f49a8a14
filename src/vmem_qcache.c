/*
 * vmem_qcache.c - quantum caches: the paper's per-CPU magazine layer in
 * front of an arena, for every multiple of the quantum up to qcache_max.
 *
 * Layers, from the hot path down:
 *   per-CPU    each cache has, per CPU, a loaded and a previous magazine
 *              (arrays of free objects), and an away one for objects
 *              going back to other CPUs, in a slot that only that CPU
 *              normally enters: a hit touches no shared lock.
 *   depot      per cache, lists of full and empty magazines, under the
 *              cache lock; a CPU trades magazines with it when both of its
 *              own are exhausted (alloc) or full (free).
 *   slabs      per cache, runs of objects carved from one arena segment
 *              (a slab, the next power of two above 3 x qcache_max, aligned
 *              to its size), each with a home CPU. Allocation misses fill a
 *              magazine from the CPU's own slabs, or take an object
 *              straight from one; a slab wholly free again goes back to
 *              the arena.
 *
 * Slots. A per-CPU slot is a lock nobody ever waits for: entering it is
 * one claim or one compare-and-swap, leaving it one store. Whoever finds
 * it taken - a thread preempted inside it, an interrupt handler that
 * interrupted its owner, a thread that migrated - uses the slab layer
 * under the cache lock instead (the unbuffered paths), and whoever needs
 * every slot (a drain) tries each for a bounded time and otherwise does
 * without it. No path can deadlock on a slot, not even an interrupt
 * handler on the CPU whose slot it interrupted. The slot word is odd while
 * someone is inside, and every exit adds to a count in its upper bits.
 * Since a busy slot is rare and depends on timing,
 * VMEM_QCACHE_SLOT_FAULT_PERIOD (vmem_config.h) makes slots refuse
 * regularly in a test build, so that every path without one runs.
 *
 * Claims and swaps. A hit enters the slot of the CPU it runs on; where
 * the port has per-CPU claims (VMEM_PORT_CPU_CLAIMS, vmem_port.h: in the
 * POSIX port a restartable sequence) it does so with a plain load and
 * store that nothing else on that CPU can come between, and a hit then
 * pays one atomic instruction in all (the checked free's), instead of a
 * compare-and-swap on each side. Everyone else - a drain, which enters
 * other CPUs' slots, and every entry where the port has no claims - swaps
 * in by compare-and-swap, marking the word as swapped. A claim is atomic
 * only on its own CPU, so a swap from another CPU can land between its
 * load and its store and be overwritten: a swapper that claims may race
 * with calls the port's fence after its swap, which lets every claim
 * under way finish or fail, and counts as inside only if the word still
 * holds what it wrote (slot_swap_held: the exit count keeps that value
 * from coming back); otherwise the claim won and is inside. A drain or a
 * grace period swaps into all of a cache's slots and fences once for them
 * (slots_swap_all).
 *
 * The hits. vmem_qcache_alloc() and vmem_qcache_free() are the whole cost
 * of a cached vmem_alloc()/vmem_free() when the loaded magazine can serve
 * it, so they are written as one straight line - the CPU id, the slot, a
 * round popped or pushed, one state byte - and everything else (magazine
 * swaps, depot trades, slabs, misuse) is out of line. A slab holds at
 * most VMEM_QCACHE_SLAB_OBJS quanta, so every per-object fact is indexed
 * by the object's offset in quanta, found by a shift: nothing on any path
 * divides by an object size.
 *
 * Checked frees. Objects are integers, so nothing can be written inside
 * them: each slab has an external descriptor with one state byte per
 * quantum (not an object start / in slab / allocated / in a magazine).
 * vmem_free() finds the descriptor through the slab table, keyed by the
 * slab's aligned base, and moves the state from "allocated" to "in a
 * magazine" with one compare-and-swap: a double free (even two racing
 * ones on different CPUs), an address inside an object, or one the cache
 * never handed out fails that step and is reported, and nothing changes.
 *
 * The slab table is read inside a slot or under a cache lock. Writers
 * (under qs_lock) publish entries with release stores and never free
 * anything a reader might hold: a replaced table stays until the arena is
 * destroyed, and the descriptor of a released slab is reused only after a
 * grace period - every slot and every cache lock entered and left once -
 * after which no reader can still see it. A grace period that a slot
 * holds up for too long fails, and fresh descriptors are used instead.
 *
 * Homes. A hit writes the state byte of its object, and a slab's state
 * bytes share one cache line: if two CPUs held objects of one slab, every
 * hit of each would take that line from the other (a transfer costs more
 * than the rest of the hit). So each slab has a home CPU - the one that
 * carved it - and sits on that CPU's partial list, and objects flow so
 * that a CPU holds objects of its own slabs:
 *   - an allocation miss takes a full magazine the same CPU put in the
 *     depot, else fills its empty magazine from its own partial slabs,
 *     else (when the slab layer is the way) carves a slab of its own;
 *   - another CPU's full magazine is taken only when the depot holds
 *     DEPOT_FULL_MAX of them (a surplus that would otherwise go back to
 *     the slabs) or no new slab can be had at once;
 *   - another CPU's partial slab is taken (and rehomed) only when that
 *     CPU can spare it - it has more than the one it takes from - or, in
 *     the end, when memory for a slab of its own is lacking;
 *   - a free of an object homed on another CPU (the thread moved, or the
 *     object was handed on) puts it in the freeing CPU's away magazine,
 *     which goes to the depot, full, as its home CPU's: objects go back to
 *     their home instead of circulating where they were freed, so a mix
 *     made while threads settled on their CPUs does not last.
 * Homes change where objects come from and go to, never whether a free is
 * checked (the state byte decides first) or whether a request is served:
 * a CPU short of memory still takes any free object there is, in any
 * magazine or slab, before a request fails (the arena's drain empties
 * every magazine). What they cost while memory lasts: per cache, one
 * partly used slab per CPU that the others leave alone, a third magazine
 * per CPU (away), fewer than DEPOT_FULL_MAX magazines left in the depot
 * for their home CPU while another carves a slab, and, while objects find
 * their way home after threads move, slabs carved meanwhile.
 *
 * Order: slot -> cache lock -> qs_lock. None of them is ever held while
 * calling the arena, the port's page source or the misuse hook.
 *
 * Stats: objects in magazines or slabs are free resources. Each slot
 * counts the objects it handed out and took back, and each cache those
 * that bypassed the magazines; the sums give the exact number of objects
 * allocated, so vmem_size() and vmem_stat() report cached objects as free.
 */
#include "vmem_internal.h"

#define MAG_ROUNDS VMEM_QCACHE_MAG_ROUNDS
/* Full magazines a depot keeps before it flushes one back to its slabs. */
#define DEPOT_FULL_MAX 4
#define DEPOT_EMPTY_MAX 4
/* Quanta in the largest slab (vmem_config.h derives the bound). */
#define SLAB_QUANTA_MAX VMEM_QCACHE_SLAB_OBJS
/* Attempts at a busy slot before an allocation or a free bypasses the
 * magazines: a slot is held for a few dozen instructions, so one still
 * busy after this is held by someone who is not running (preempted, or
 * interrupted by this very caller). */
#define SLOT_ATTEMPTS 64
/* Attempts before a drain or a grace period does without a slot: far
 * longer than any critical section, far shorter than a time slice. */
#define SLOT_PATIENCE 100000
/* Patient tries at each slot when the arena is being destroyed (drain). */
#define SLOT_INSIST 8

#define COLD __attribute__((noinline, cold))
#define UNLIKELY(x) __builtin_expect(!!(x), 0)
#define LIKELY(x) __builtin_expect(!!(x), 1)

/* State of each quantum of a slab. Quanta inside an object (not its first)
 * stay OBJ_NONE, so a free there fails the same compare-and-swap that
 * catches a double free. */
enum { OBJ_NONE = 0, OBJ_IN_SLAB, OBJ_ALLOCATED, OBJ_IN_MAGAZINE };

/* A cached object and its slab: keeping the slab beside the address saves
 * a table lookup on every allocation hit. */
typedef struct {
    uintptr_t addr;
    struct vmem_slab *slab;
} VmemRound;

/* A magazine's count and top rounds are written by every hit of the CPU
 * holding it: whole lines of its own, so that two CPUs' magazines, carved
 * from one page, never share one. */
typedef struct vmem_mag {
    struct vmem_mag *next;
    uint32_t rounds;
    uint32_t filler; /* in the depot's full list: the CPU that filled it */
    VmemRound round[MAG_ROUNDS];
} __attribute__((aligned(64))) VmemMag;

typedef struct vmem_slab {
    /* Read by every free; written by the slab layer, under the cache lock. */
    uintptr_t base;
    struct vmem_slab *next;  /* partial list, or a descriptor free list */
    struct vmem_slab *prev;
    uint64_t in_slab;        /* bit q: the object at quantum q is free in the slab layer */
    uint16_t cache;
    uint16_t out;            /* objects not in the slab layer */
    uint16_t home;           /* the CPU whose partial list it is on (or goes to) */
    bool partial;            /* on its home's partial list */
    /* Written by every hit, by the CPU holding the object (its home, as a
     * rule: see Homes): a line apart, so that those writes do not take the
     * fields above away from the other CPUs. */
    uint8_t state[SLAB_QUANTA_MAX] __attribute__((aligned(64)));
} VmemSlab;

typedef struct {
    uintptr_t key;
    VmemSlab *slab; /* NULL: never used; TOMBSTONE: deleted */
} SlabSlot;

typedef struct slab_table {
    size_t mask;
    unsigned shift; /* 64 - log2(slots): slot_of() keeps the hash's top bits */
    size_t used; /* live + tombstones */
    size_t live;
    SlabSlot slot[];
} SlabTable;

#define TOMBSTONE ((VmemSlab *)1)

/* One cache line per slot, so that CPUs never share one on a hit. */
typedef struct {
    unsigned seq;      /* odd while someone is inside the slot */
    uint16_t index;    /* which CPU's slot: what a free compares homes with */
    VmemMag *loaded;
    VmemMag *previous;
    VmemMag *away;     /* freed here, homed elsewhere: on their way back (Homes) */
    size_t handed_out; /* objects this slot gave to callers of this cache */
    size_t taken_back;
#if VMEM_QCACHE_SLOT_FAULT_PERIOD > 0
    unsigned acquisitions; /* for the fault knob */
#endif
} __attribute__((aligned(64))) QcCpu;

typedef struct {
    VmemLock lock;
    size_t objsize;
    VmemMag *full;
    VmemMag *empty;
    size_t nfull, nempty;
    size_t npartial;      /* slabs on all the partial lists */
    size_t slab_handouts; /* objects handed to callers straight from slabs */
    size_t slab_takebacks; /* objects callers freed straight into slabs */
    /* Partial slabs by home CPU: a CPU takes objects from its own, so
     * that a slab's state line is written by one CPU (see Homes). */
    VmemSlab *partial[VMEM_MAX_CPUS];
    QcCpu cpu[VMEM_MAX_CPUS];
} QcCache;

/* Pages this state owns, for vmem_qcache_fini. */
typedef struct qc_page {
    struct qc_page *next;
    size_t npages;
} QcPage;

/* Where descriptors and magazines start in their page: the first line
 * after its header (both are carved in whole lines). */
#define DESC_OFFSET ((sizeof(QcPage) + 63) & ~(size_t)63)
_Static_assert(sizeof(VmemMag) <= VMEM_PAGE_SIZE - DESC_OFFSET,
               "a magazine must fit in a page: lower VMEM_QCACHE_MAG_ROUNDS");

struct vmem_qcache_state {
    /* Read by every hit, written (table) only when the slab table grows:
     * a line of its own, apart from the locks other CPUs write. */
    struct {
        size_t ncaches;
        unsigned quantum_shift;
        unsigned slab_shift;
        uintptr_t quantum_mask;
        uintptr_t slab_mask;  /* ~(slab size - 1): a slab's base from an address */
        SlabTable *table;
    } __attribute__((aligned(64))) hot;
    VmemLock qs_lock __attribute__((aligned(64))); /* slab table writes; descriptor and magazine lists */
    size_t slab_size;
    VmemSlab *desc_free;
    VmemSlab *desc_retired; /* released slabs' descriptors, awaiting a grace period */
    VmemMag *mag_free;
    QcPage *pages;
    size_t slab_bytes;      /* arena units held in slabs */
    size_t slab_count;
    size_t slabs_created;   /* arena allocations made for slabs, ever */
    size_t slabs_released;
    QcCache cache[];
};

/* ---- Memory for the cache's own structures -------------------------------- */

static size_t pages_for(size_t bytes) { return (bytes + VMEM_PAGE_SIZE - 1) / VMEM_PAGE_SIZE; }

/* A page run for qs, recorded for release at destroy. No lock held. */
static void *qc_pages(VmemQcacheState *qs, size_t bytes, int vmflag)
{
    size_t npages = pages_for(bytes + sizeof(QcPage));
    QcPage *page = vmem_port_page_alloc(npages, (vmflag & (VM_SLEEP | VM_NOSLEEP)) | VM_BOOTSTRAP);
    if (page == NULL)
        return NULL;
    page->npages = npages;
    VmemIrqState state = vmem_port_lock(&qs->qs_lock);
    page->next = qs->pages;
    qs->pages = page;
    vmem_port_unlock(&qs->qs_lock, state);
    return page + 1;
}

/* ---- Slots ---------------------------------------------------------------------- */

/* The slot word (QcCpu.seq): SLOT_INSIDE while someone is inside, with
 * SLOT_SWAPPED when that someone came in by compare-and-swap rather than
 * by the port's claim; the bits above count exits, so that a value is
 * never seen twice. */
#define SLOT_INSIDE 1u
#define SLOT_SWAPPED 2u
#define SLOT_EXIT 4u

static inline QcCpu *my_cpu(QcCache *cache)
{
    return &cache->cpu[vmem_port_cpu_id() % VMEM_MAX_CPUS];
}

static inline unsigned cpu_index(const QcCache *cache, const QcCpu *cpu)
{
    return (unsigned)(cpu - cache->cpu);
}

/* One compare-and-swap attempt at the slot: fails at once if someone is
 * inside. Returns the value it wrote (never 0), or 0. Acquire: what the
 * last one inside did is visible here. */
static inline unsigned slot_swap(QcCpu *cpu)
{
    unsigned seq = __atomic_load_n(&cpu->seq, __ATOMIC_RELAXED);
    unsigned inside = seq | SLOT_INSIDE | SLOT_SWAPPED;
    return (seq & SLOT_INSIDE) == 0 &&
                   __atomic_compare_exchange_n(&cpu->seq, &seq, inside, false, __ATOMIC_ACQUIRE,
                                               __ATOMIC_RELAXED)
               ? inside
               : 0;
}

static inline bool slot_try(QcCpu *cpu) { return slot_swap(cpu) != 0; }

static inline void slot_exit(QcCpu *cpu)
{
    unsigned seq = __atomic_load_n(&cpu->seq, __ATOMIC_RELAXED);
    __atomic_store_n(&cpu->seq, (seq & ~(SLOT_INSIDE | SLOT_SWAPPED)) + SLOT_EXIT,
                     __ATOMIC_RELEASE);
}

/* The first attempt and up to `attempts` more; the value written, or 0.
 * Whoever is inside may be the code this caller interrupted, so it never
 * waits for good. */
static unsigned slot_swap_within(QcCpu *cpu, unsigned attempts)
{
    for (unsigned attempt = 0; attempt <= attempts; attempt++) {
        unsigned inside = slot_swap(cpu);
        if (inside != 0)
            return inside;
    }
    return 0;
}

/* Up to `attempts` more tries, after a first one failed: out of line,
 * since busy slots are rare. */
static COLD bool slot_retry(QcCpu *cpu, unsigned attempts)
{
    return attempts > 0 && slot_swap_within(cpu, attempts - 1) != 0;
}

#if VMEM_PORT_CPU_CLAIMS
/* A claim reads the slot word and writes it back as two plain accesses
 * (vmem_port_cpu_claim), atomic only against what runs on its own CPU: a
 * swap from another CPU can land between them and be overwritten. Once the
 * port's fence has returned, no claim that began before the swap is still
 * under way, and the word tells who got in: the swapper if it still holds
 * what the swap wrote (exits count, so that value does not come back). */
static inline bool slot_swap_held(QcCpu *cpu, unsigned inside)
{
    return __atomic_load_n(&cpu->seq, __ATOMIC_ACQUIRE) == inside;
}

/* A swap into a slot that claims may also enter: the swap, the fence, the
 * check, retried while claims win. */
static COLD bool slot_swap_fenced(QcCpu *cpu, unsigned attempts)
{
    for (unsigned attempt = 0; attempt <= attempts; attempt++) {
        unsigned inside = slot_swap(cpu);
        if (inside == 0)
            continue;
        vmem_port_cpu_fence();
        if (slot_swap_held(cpu, inside))
            return true;
    }
    return false;
}
#endif

/* The fault knob (vmem_config.h): every Nth acquisition of a slot fails
 * as a whole, as if the slot had stayed busy through every retry, so that
 * the paths a preempted or interrupted owner forces run regularly. Counted
 * per slot, so that of two drains in a row one enters each slot; atomic,
 * since CPUs share slots. Without the knob this is a constant false and
 * the acquisitions are the bare tries. */
static inline bool slot_refused(QcCpu *cpu)
{
#if VMEM_QCACHE_SLOT_FAULT_PERIOD > 0
    unsigned n = __atomic_add_fetch(&cpu->acquisitions, 1, __ATOMIC_RELAXED);
    return n % VMEM_QCACHE_SLOT_FAULT_PERIOD == 0;
#else
    (void)cpu;
    return false;
#endif
}

/* A first try inline, the rest (busy slots are rare) out of line. By
 * compare-and-swap alone: for a port without claims. */
static inline bool slot_enter_within(QcCpu *cpu, unsigned attempts)
{
    return !slot_refused(cpu) && (LIKELY(slot_try(cpu)) || slot_retry(cpu, attempts));
}

#if VMEM_PORT_CPU_CLAIMS
/* Claim failed: claim again while the slot is busy or the claim was cut
 * short, up to `attempts` times; a thread that cannot claim swaps (fenced,
 * if other threads claim). */
static COLD QcCpu *slot_enter_mine_again(QcCache *cache, unsigned attempts, long claimed)
{
    for (unsigned attempt = 0;; attempt++) {
        if (claimed >= 0) {
            QcCpu *cpu = &cache->cpu[claimed];
            if (!slot_refused(cpu))
                return cpu;
            slot_exit(cpu);
            return NULL;
        }
        if (claimed == VMEM_CLAIM_UNSUPPORTED) {
            QcCpu *cpu = my_cpu(cache);
            return slot_enter_within(cpu, attempts) ? cpu : NULL;
        }
        if (claimed == VMEM_CLAIM_UNAVAILABLE) {
            QcCpu *cpu = my_cpu(cache);
            return !slot_refused(cpu) && slot_swap_fenced(cpu, attempts) ? cpu : NULL;
        }
        if (attempt == attempts)
            return NULL;
        claimed = vmem_port_cpu_claim(&cache->cpu[0].seq, sizeof(QcCpu), VMEM_MAX_CPUS);
    }
}
#endif

/* Enters the slot of the CPU the caller runs on: by a claim where the port
 * has them (no atomic instruction), else by compare-and-swap; retried up
 * to `attempts` times while busy. NULL if it stayed busy or the fault knob
 * refused it; the caller then does without a slot. */
static inline QcCpu *slot_enter_mine(QcCache *cache, unsigned attempts)
{
#if VMEM_PORT_CPU_CLAIMS
    long claimed = vmem_port_cpu_claim(&cache->cpu[0].seq, sizeof(QcCpu), VMEM_MAX_CPUS);
    if (UNLIKELY(claimed < 0))
        return slot_enter_mine_again(cache, attempts, claimed);
    QcCpu *cpu = &cache->cpu[claimed];
    if (UNLIKELY(slot_refused(cpu))) {
        slot_exit(cpu);
        return NULL;
    }
    return cpu;
#else
    QcCpu *cpu = my_cpu(cache);
    return slot_enter_within(cpu, attempts) ? cpu : NULL;
#endif
}

/* Back into the slot a slow path left (one try): false if it is taken,
 * or if the caller now runs on another CPU, whose slot it leaves alone -
 * the slow path then goes on without a slot, as if it had been taken. */
static bool slot_reenter(QcCache *cache, QcCpu *left)
{
    QcCpu *cpu = slot_enter_mine(cache, 0);
    if (cpu == left)
        return true;
    if (cpu != NULL)
        slot_exit(cpu);
    return false;
}

/*
 * Enters every slot of a cache that it can, from whatever CPU (a drain, a
 * grace period), except those `skip` marks: each swapped into within
 * `patience` further tries, then, where claims exist, one fence for them
 * all and a check of each swap (Claims and swaps). held[i] is left with
 * what the swap wrote into a slot now entered, 0 for one not entered.
 * Returns whether any was entered.
 */
static bool slots_swap_all(QcCache *cache, const bool *skip, unsigned patience, unsigned *held)
{
    bool any = false;
    for (size_t i = 0; i < VMEM_MAX_CPUS; i++) {
        QcCpu *cpu = &cache->cpu[i];
        held[i] = (skip != NULL && skip[i]) || slot_refused(cpu) ? 0 : slot_swap_within(cpu, patience);
        any |= held[i] != 0;
    }
#if VMEM_PORT_CPU_CLAIMS
    if (!any)
        return false;
    vmem_port_cpu_fence();
    any = false;
    for (size_t i = 0; i < VMEM_MAX_CPUS; i++) {
        if (held[i] != 0 && !slot_swap_held(&cache->cpu[i], held[i]))
            held[i] = 0; /* a claim got in first, and is inside */
        any |= held[i] != 0;
    }
#endif
    return any;
}

/* Passes a grace period: once every slot and every cache lock has been
 * entered and left, no reader can still hold a pointer it found before.
 * False if a slot stayed busy too long. */
static bool grace_period(VmemQcacheState *qs)
{
    for (size_t c = 0; c < qs->hot.ncaches; c++) {
        unsigned held[VMEM_MAX_CPUS];
        slots_swap_all(&qs->cache[c], NULL, SLOT_PATIENCE, held);
        bool all = true;
        for (size_t i = 0; i < VMEM_MAX_CPUS; i++) {
            if (held[i] != 0)
                slot_exit(&qs->cache[c].cpu[i]);
            else
                all = false;
        }
        if (!all)
            return false;
        VmemIrqState state = vmem_port_lock(&qs->cache[c].lock);
        vmem_port_unlock(&qs->cache[c].lock, state);
    }
    return true;
}

static VmemSlab *desc_get(VmemQcacheState *qs, int vmflag)
{
    for (;;) {
        VmemIrqState state = vmem_port_lock(&qs->qs_lock);
        VmemSlab *desc = qs->desc_free;
        if (desc != NULL) {
            qs->desc_free = desc->next;
            vmem_port_unlock(&qs->qs_lock, state);
            return desc;
        }
        VmemSlab *retired = qs->desc_retired;
        qs->desc_retired = NULL;
        vmem_port_unlock(&qs->qs_lock, state);
        if (retired != NULL) {
            bool passed = grace_period(qs);
            state = vmem_port_lock(&qs->qs_lock);
            /* Not passed: they wait for the next try, and a fresh block
             * serves this one. */
            VmemSlab **to = passed ? &qs->desc_free : &qs->desc_retired;
            while (retired != NULL) {
                VmemSlab *next = retired->next;
                retired->next = *to;
                *to = retired;
                retired = next;
            }
            vmem_port_unlock(&qs->qs_lock, state);
            if (passed)
                continue;
        }
        char *page = qc_pages(qs, VMEM_PAGE_SIZE - sizeof(QcPage), vmflag);
        if (page == NULL)
            return NULL;
        VmemSlab *block = (VmemSlab *)(void *)(page - sizeof(QcPage) + DESC_OFFSET);
        state = vmem_port_lock(&qs->qs_lock);
        for (size_t i = 0; i < (VMEM_PAGE_SIZE - DESC_OFFSET) / sizeof(VmemSlab); i++) {
            block[i].next = qs->desc_free;
            qs->desc_free = &block[i];
        }
        vmem_port_unlock(&qs->qs_lock, state);
    }
}

static VmemMag *mag_get(VmemQcacheState *qs, int vmflag)
{
    for (;;) {
        VmemIrqState state = vmem_port_lock(&qs->qs_lock);
        VmemMag *mag = qs->mag_free;
        if (mag != NULL) {
            qs->mag_free = mag->next;
            vmem_port_unlock(&qs->qs_lock, state);
            mag->next = NULL;
            mag->rounds = 0;
            return mag;
        }
        vmem_port_unlock(&qs->qs_lock, state);
        char *page = qc_pages(qs, VMEM_PAGE_SIZE - sizeof(QcPage), vmflag);
        if (page == NULL)
            return NULL;
        VmemMag *block = (VmemMag *)(void *)(page - sizeof(QcPage) + DESC_OFFSET);
        state = vmem_port_lock(&qs->qs_lock);
        for (size_t i = 0; i < (VMEM_PAGE_SIZE - DESC_OFFSET) / sizeof(VmemMag); i++) {
            block[i].next = qs->mag_free;
            qs->mag_free = &block[i];
        }
        vmem_port_unlock(&qs->qs_lock, state);
    }
}

/* Returns a list of empty magazines linked through next. qs_lock held. */
static void mags_put_locked(VmemQcacheState *qs, VmemMag *list)
{
    while (list != NULL) {
        VmemMag *next = list->next;
        list->next = qs->mag_free;
        qs->mag_free = list;
        list = next;
    }
}

/* ---- The slab table ------------------------------------------------------------ */

/* The state byte of the object at addr. Slabs are aligned to their size,
 * so the address alone gives the quantum: no descriptor field is read. */
static inline uint8_t *state_of(const VmemQcacheState *qs, VmemSlab *slab, uintptr_t addr)
{
    return &slab->state[(addr & ~qs->hot.slab_mask) >> qs->hot.quantum_shift];
}

/* Fibonacci hashing of the slab's number: the top bits of the product
 * depend on every bit of the number, its low bits only on the number's
 * own low bits. Slabs carved one after another have consecutive numbers,
 * which the low bits would crowd into a third of the slots (142 slabs in
 * 58 of 512), making a free probe 3 to 4 slots, each a branch the CPU
 * cannot predict; the top bits give each its own. */
static size_t slot_of(const VmemQcacheState *qs, const SlabTable *table, uintptr_t key)
{
    uint64_t h = (uint64_t)(key >> qs->hot.slab_shift) * 0x9e3779b97f4a7c15ULL;
    return (size_t)(h >> table->shift);
}

/* The descriptor of the slab holding addr, or NULL. Called inside a slot
 * or with a cache lock (or qs_lock) held, so that what it returns stays
 * valid until then. */
static inline VmemSlab *slab_of(const VmemQcacheState *qs, uintptr_t addr)
{
    SlabTable *table = __atomic_load_n(&qs->hot.table, __ATOMIC_ACQUIRE);
    if (table == NULL)
        return NULL;
    uintptr_t key = addr & qs->hot.slab_mask;
    size_t i = slot_of(qs, table, key);
    /* A table is never more than 3/4 used, so an empty slot ends the probe. */
    for (;;) {
        VmemSlab *slab = __atomic_load_n(&table->slot[i].slab, __ATOMIC_ACQUIRE);
        if (slab == NULL)
            return NULL;
        if (slab != TOMBSTONE && __atomic_load_n(&table->slot[i].key, __ATOMIC_RELAXED) == key)
            return slab;
        i = (i + 1) & table->mask;
    }
}

static void table_put(VmemQcacheState *qs, SlabTable *table, uintptr_t key, VmemSlab *slab)
{
    size_t i = slot_of(qs, table, key);
    while (true) {
        VmemSlab *old = table->slot[i].slab;
        if (old == NULL || old == TOMBSTONE) {
            if (old == NULL)
                table->used++;
            table->live++;
            __atomic_store_n(&table->slot[i].key, key, __ATOMIC_RELAXED);
            __atomic_store_n(&table->slot[i].slab, slab, __ATOMIC_RELEASE);
            return;
        }
        i = (i + 1) & table->mask;
    }
}

static void table_delete(VmemQcacheState *qs, uintptr_t key)
{
    SlabTable *table = qs->hot.table;
    size_t i = slot_of(qs, table, key);
    while (true) {
        VmemSlab *slab = table->slot[i].slab;
        if (slab == NULL)
            vmem_port_panic("vmem: quantum-cache slab missing from its table");
        if (slab != TOMBSTONE && table->slot[i].key == key) {
            __atomic_store_n(&table->slot[i].slab, TOMBSTONE, __ATOMIC_RELEASE);
            table->live--;
            return;
        }
        i = (i + 1) & table->mask;
    }
}

static size_t table_bytes(size_t slots) { return sizeof(SlabTable) + slots * sizeof(SlabSlot); }

/* Slots a table should have to take one more slab, or 0 if it has room. */
static size_t table_wanted_slots(const VmemQcacheState *qs)
{
    const SlabTable *table = qs->hot.table;
    if (table != NULL && (table->used + 1) * 4 <= (table->mask + 1) * 3)
        return 0;
    size_t slots = 64;
    while (table != NULL && slots * 3 < (table->live + 1) * 8)
        slots *= 2;
    return slots;
}

/* Makes room in the table for one more slab. No lock held. */
static bool table_reserve(VmemQcacheState *qs, int vmflag)
{
    for (;;) {
        VmemIrqState state = vmem_port_lock(&qs->qs_lock);
        size_t slots = table_wanted_slots(qs);
        vmem_port_unlock(&qs->qs_lock, state);
        if (slots == 0)
            return true;
        SlabTable *fresh = qc_pages(qs, table_bytes(slots), vmflag);
        if (fresh == NULL)
            return false;
        fresh->mask = slots - 1;
        fresh->shift = 64 - log2_floor(slots);
        fresh->used = fresh->live = 0;
        for (size_t i = 0; i < slots; i++) {
            fresh->slot[i].key = 0;
            fresh->slot[i].slab = NULL;
        }
        /* The replaced table, or one that lost a race to replace it,
         * stays on qs->pages until destroy: a reader may still be in it. */
        state = vmem_port_lock(&qs->qs_lock);
        SlabTable *old = qs->hot.table;
        if (table_wanted_slots(qs) == slots) {
            if (old != NULL)
                for (size_t i = 0; i <= old->mask; i++)
                    if (old->slot[i].slab != NULL && old->slot[i].slab != TOMBSTONE)
                        table_put(qs, fresh, old->slot[i].key, old->slot[i].slab);
            __atomic_store_n(&qs->hot.table, fresh, __ATOMIC_RELEASE);
        }
        vmem_port_unlock(&qs->qs_lock, state);
    }
}

/* ---- Slabs ----------------------------------------------------------------------- */

/* Cache lock held, for these two and every partial list. */
static void partial_add(QcCache *cache, VmemSlab *slab)
{
    VmemSlab **head = &cache->partial[slab->home];
    slab->partial = true;
    slab->prev = NULL;
    slab->next = *head;
    if (*head != NULL)
        (*head)->prev = slab;
    *head = slab;
    cache->npartial++;
}

static void partial_remove(QcCache *cache, VmemSlab *slab)
{
    slab->partial = false;
    if (slab->prev != NULL)
        slab->prev->next = slab->next;
    else
        cache->partial[slab->home] = slab->next;
    if (slab->next != NULL)
        slab->next->prev = slab->prev;
    cache->npartial--;
}

/* How far slab_pick() may reach beyond the CPU's own partial list. */
enum { PICK_OWN, PICK_SPARE, PICK_ANY };

/* A partial slab for CPU `home` to take objects from: its own first; else
 * with PICK_SPARE one another CPU can spare - never the head of its list,
 * which that CPU is taking from - or with PICK_ANY (no memory for a slab
 * of its own) any partial slab. A slab taken from another list changes
 * home. NULL if there is none. Cache lock held. */
static VmemSlab *slab_pick(QcCache *cache, unsigned home, int reach)
{
    VmemSlab *slab = cache->partial[home];
    if (LIKELY(slab != NULL) || reach == PICK_OWN || cache->npartial == 0)
        return slab;
    for (unsigned i = 0; i < VMEM_MAX_CPUS; i++) {
        VmemSlab *head = cache->partial[i];
        if (head == NULL)
            continue;
        slab = head->next != NULL ? head->next : reach == PICK_ANY ? head : NULL;
        if (slab == NULL)
            continue;
        partial_remove(cache, slab);
        /* Atomic: frees read it outside the lock (a hint where objects go). */
        __atomic_store_n(&slab->home, (uint16_t)home, __ATOMIC_RELAXED);
        partial_add(cache, slab);
        return slab;
    }
    return NULL;
}

/* Takes one object for a caller, from a partial slab slab_pick() gives.
 * Cache lock held. */
static bool slab_take(const VmemQcacheState *qs, QcCache *cache, unsigned home, int reach,
                      uintptr_t *addrp)
{
    VmemSlab *slab = slab_pick(cache, home, reach);
    if (slab == NULL)
        return false;
    unsigned q = ctz64(slab->in_slab);
    slab->in_slab &= ~((uint64_t)1 << q);
    slab->out++;
    __atomic_store_n(&slab->state[q], (uint8_t)OBJ_ALLOCATED, __ATOMIC_RELAXED);
    if (slab->in_slab == 0)
        partial_remove(cache, slab);
    cache->slab_handouts++;
    *addrp = slab->base + ((uintptr_t)q << qs->hot.quantum_shift);
    return true;
}

/* Puts an object back in its slab; returns the slab if it became wholly
 * free, detached from everything but the table (caller releases it).
 * Cache lock held. */
static VmemSlab *slab_put(const VmemQcacheState *qs, QcCache *cache, VmemSlab *slab,
                          uintptr_t addr)
{
    unsigned q = (unsigned)((addr - slab->base) >> qs->hot.quantum_shift);
    __atomic_store_n(state_of(qs, slab, addr), (uint8_t)OBJ_IN_SLAB, __ATOMIC_RELAXED);
    slab->in_slab |= (uint64_t)1 << q;
    slab->out--;
    if (slab->out == 0) {
        if (slab->partial)
            partial_remove(cache, slab);
        return slab;
    }
    if (!slab->partial)
        partial_add(cache, slab);
    return NULL;
}

/* Forgets wholly free slabs (linked through next) and gives them back to
 * the arena. No lock held. */
static void slabs_release(Vmem *vm, VmemQcacheState *qs, VmemSlab *list)
{
    while (list != NULL) {
        VmemSlab *next = list->next;
        uintptr_t base = list->base;
        VmemIrqState state = vmem_port_lock(&qs->qs_lock);
        table_delete(qs, base);
        list->next = qs->desc_retired;
        qs->desc_retired = list;
        qs->slab_bytes -= qs->slab_size;
        qs->slab_count--;
        qs->slabs_released++;
        vmem_port_unlock(&qs->qs_lock, state);
        vmem_arena_free_slab(vm, base, qs->slab_size);
        list = next;
    }
}

/* Returns a magazine's rounds to their slabs; wholly free slabs are added
 * to *release. Cache lock held. */
static void mag_flush(const VmemQcacheState *qs, QcCache *cache, VmemMag *mag,
                      VmemSlab **release)
{
    while (mag->rounds > 0) {
        VmemRound *round = &mag->round[--mag->rounds];
        VmemSlab *slab = slab_put(qs, cache, round->slab, round->addr);
        if (slab != NULL) {
            slab->next = *release;
            *release = slab;
        }
    }
}

/* Carves a new slab for cache c, homed at CPU `home`, and takes one
 * object from it: a slab never sits on a partial list with no object out,
 * where nothing would ever release it. Returns 0 with *addrp set, 1 if
 * another CPU raced for the table room (retry), or -VMEM_ERR_NO_MEM. No
 * lock held. */
static int slab_grow(Vmem *vm, VmemQcacheState *qs, size_t c, unsigned home, int vmflag,
                     uintptr_t *addrp)
{
    QcCache *cache = &qs->cache[c];
    if (!table_reserve(qs, vmflag))
        return -VMEM_ERR_NO_MEM;
    VmemSlab *slab = desc_get(qs, vmflag);
    if (slab == NULL)
        return -VMEM_ERR_NO_MEM;
    uintptr_t base;
    if (vmem_arena_alloc_slab(vm, qs->slab_size, vmflag, &base) != 0) {
        VmemIrqState state = vmem_port_lock(&qs->qs_lock);
        slab->next = qs->desc_free;
        qs->desc_free = slab;
        vmem_port_unlock(&qs->qs_lock, state);
        return -VMEM_ERR_NO_MEM;
    }
    slab->base = base;
    slab->cache = (uint16_t)c;
    slab->out = 0;
    __atomic_store_n(&slab->home, (uint16_t)home, __ATOMIC_RELAXED);
    slab->partial = false;
    slab->in_slab = 0;
    for (size_t q = 0; q < SLAB_QUANTA_MAX; q++)
        slab->state[q] = OBJ_NONE;
    size_t stride = c + 1, slab_quanta = qs->slab_size >> qs->hot.quantum_shift;
    for (size_t q = 0; q + stride <= slab_quanta; q += stride) {
        slab->state[q] = OBJ_IN_SLAB;
        slab->in_slab |= (uint64_t)1 << q;
    }

    VmemIrqState cstate = vmem_port_lock(&cache->lock);
    VmemIrqState state = vmem_port_lock(&qs->qs_lock);
    if (table_wanted_slots(qs) != 0) {
        /* Another CPU used the room reserved: undo and let the caller retry. */
        qs->slabs_created++;
        qs->slabs_released++;
        vmem_port_unlock(&qs->qs_lock, state);
        vmem_port_unlock(&cache->lock, cstate);
        vmem_arena_free_slab(vm, base, qs->slab_size);
        state = vmem_port_lock(&qs->qs_lock);
        slab->next = qs->desc_free;
        qs->desc_free = slab;
        vmem_port_unlock(&qs->qs_lock, state);
        return 1;
    }
    table_put(qs, qs->hot.table, base, slab);
    qs->slab_bytes += qs->slab_size;
    qs->slab_count++;
    qs->slabs_created++;
    vmem_port_unlock(&qs->qs_lock, state);
    partial_add(cache, slab);
    slab_take(qs, cache, home, PICK_SPARE, addrp);
    vmem_port_unlock(&cache->lock, cstate);
    return 0;
}

/* ---- Creation ------------------------------------------------------------------------ */

size_t vmem_qcache_count(const Vmem *vm)
{
    if (vm->qcache_max < vm->quantum)
        return 0;
    size_t n = vm->qcache_max >> vm->vm_quantum_shift;
    return n > VMEM_QCACHE_MAX_CACHES ? VMEM_QCACHE_MAX_CACHES : n;
}

/* The state of vm's caches, created on first use. */
static VmemQcacheState *qcache_state(Vmem *vm, int vmflag)
{
    VmemQcacheState *qs = __atomic_load_n(&vm->vm_qcache, __ATOMIC_ACQUIRE);
    if (qs != NULL)
        return qs;
    size_t n = vmem_qcache_count(vm);
    size_t bytes = sizeof(VmemQcacheState) + n * sizeof(QcCache);
    size_t npages = pages_for(bytes);
    qs = vmem_port_page_alloc(npages, (vmflag & (VM_SLEEP | VM_NOSLEEP)) | VM_BOOTSTRAP);
    if (qs == NULL)
        return NULL;
    vmem_port_lock_init(&qs->qs_lock);
    qs->hot.ncaches = n;
    qs->hot.quantum_shift = vm->vm_quantum_shift;
    qs->hot.quantum_mask = vm->quantum - 1;
    /* The paper's slab size: the next power of two above 3 x qcache_max. */
    size_t largest = n * vm->quantum;
    qs->slab_size = (size_t)1 << (log2_floor(3 * largest) + 1);
    qs->hot.slab_shift = log2_floor(qs->slab_size);
    qs->hot.slab_mask = ~(uintptr_t)(qs->slab_size - 1);
    qs->hot.table = NULL;
    qs->desc_free = qs->desc_retired = NULL;
    qs->mag_free = NULL;
    qs->pages = NULL;
    qs->slab_bytes = qs->slab_count = 0;
    qs->slabs_created = qs->slabs_released = 0;
    for (size_t c = 0; c < n; c++) {
        QcCache *cache = &qs->cache[c];
        vmem_port_lock_init(&cache->lock);
        cache->objsize = (c + 1) * vm->quantum;
        cache->full = cache->empty = NULL;
        cache->nfull = cache->nempty = 0;
        cache->npartial = 0;
        cache->slab_handouts = cache->slab_takebacks = 0;
        for (size_t i = 0; i < VMEM_MAX_CPUS; i++) {
            cache->partial[i] = NULL;
            cache->cpu[i].seq = 0;
            cache->cpu[i].index = (uint16_t)i;
            cache->cpu[i].loaded = cache->cpu[i].previous = cache->cpu[i].away = NULL;
            cache->cpu[i].handed_out = cache->cpu[i].taken_back = 0;
#if VMEM_QCACHE_SLOT_FAULT_PERIOD > 0
            cache->cpu[i].acquisitions = 0;
#endif
        }
    }
    VmemIrqState state = vmem_port_lock(&vm->vm_lock);
    VmemQcacheState *existing = vm->vm_qcache;
    if (existing == NULL) {
        vm->vm_qcache_pages = npages;
        __atomic_store_n(&vm->vm_qcache, qs, __ATOMIC_RELEASE);
    }
    vmem_port_unlock(&vm->vm_lock, state);
    if (existing != NULL) {
        for (size_t c = 0; c < n; c++)
            vmem_port_lock_fini(&qs->cache[c].lock);
        vmem_port_lock_fini(&qs->qs_lock);
        vmem_port_page_free(qs, npages);
        return existing;
    }
    return qs;
}

/* An empty magazine from the depot, or NULL. Cache lock held. */
static VmemMag *depot_take_empty(QcCache *cache)
{
    VmemMag *mag = cache->empty;
    if (mag != NULL) {
        cache->empty = mag->next;
        cache->nempty--;
    }
    return mag;
}

/* Hands an empty magazine to the depot; past DEPOT_EMPTY_MAX it goes to the
 * shared magazine list instead, for any cache to use. Cache lock held. */
static void depot_put_empty(VmemQcacheState *qs, QcCache *cache, VmemMag *mag)
{
    if (cache->nempty < DEPOT_EMPTY_MAX) {
        mag->next = cache->empty;
        cache->empty = mag;
        cache->nempty++;
        return;
    }
    VmemIrqState state = vmem_port_lock(&qs->qs_lock);
    mag->next = NULL;
    mags_put_locked(qs, mag);
    vmem_port_unlock(&qs->qs_lock, state);
}

/* ---- Allocation ------------------------------------------------------------------------- */

/* vmflag for what is worth having only if it can be had without waiting. */
static int at_once(int vmflag) { return (vmflag & ~VM_SLEEP) | VM_NOSLEEP; }

static bool take_locked(VmemQcacheState *qs, QcCache *cache, unsigned home, int reach,
                        uintptr_t *addrp)
{
    VmemIrqState cstate = vmem_port_lock(&cache->lock);
    bool got = slab_take(qs, cache, home, reach, addrp);
    vmem_port_unlock(&cache->lock, cstate);
    return got;
}

/* Allocation that bypasses the magazines, for CPU `home`: an object
 * straight from one of its slabs or one another CPU can spare; else from
 * a new slab of its own if one can be had without waiting; else from any
 * partial slab; else from a new slab. No lock held. */
static COLD uintptr_t alloc_from_slabs(Vmem *vm, VmemQcacheState *qs, size_t c, unsigned home,
                                       int vmflag)
{
    QcCache *cache = &qs->cache[c];
    uintptr_t addr;
    if (take_locked(qs, cache, home, PICK_SPARE, &addr))
        return addr;
    int result = slab_grow(vm, qs, c, home, at_once(vmflag), &addr);
    bool waited = at_once(vmflag) == vmflag; /* that try was all vmflag allows */
    /* 1: another CPU raced for the table room; a few more tries. */
    for (int attempt = 0; result != 0 && attempt < 4; attempt++) {
        if (take_locked(qs, cache, home, PICK_ANY, &addr))
            return addr;
        if (result < 0 && waited)
            return 0;
        result = slab_grow(vm, qs, c, home, vmflag, &addr);
        waited = true;
    }
    return result == 0 ? addr : 0;
}

/* Pops the top round of a magazine that has one, marks the object
 * allocated and counts it, then leaves the slot: the end of every
 * allocation served by a magazine. */
static inline uintptr_t hand_out_round(VmemQcacheState *qs, QcCpu *cpu, VmemMag *mag)
{
    VmemRound *round = &mag->round[--mag->rounds];
    uintptr_t addr = round->addr;
    __atomic_store_n(state_of(qs, round->slab, addr), (uint8_t)OBJ_ALLOCATED, __ATOMIC_RELAXED);
    /* A plain increment, atomic only so that vmem_qcache_usage() may read it. */
    __atomic_store_n(&cpu->handed_out, cpu->handed_out + 1, __ATOMIC_RELAXED);
    slot_exit(cpu);
    return addr;
}

/* Pushes a round onto a magazine with room for it. */
static inline void put_round(VmemMag *mag, uintptr_t addr, VmemSlab *slab)
{
    mag->round[mag->rounds].addr = addr;
    mag->round[mag->rounds].slab = slab;
    mag->rounds++;
}

/* Fills an empty magazine for CPU `home` from its own partial slabs, or
 * if it has none, from one another CPU can spare (never from a new slab):
 * one lock hold for a magazine of misses. The objects count as free, in a
 * magazine. Returns the rounds loaded. Cache lock held. */
static size_t mag_refill(const VmemQcacheState *qs, QcCache *cache, unsigned home, VmemMag *mag)
{
    while (mag->rounds < MAG_ROUNDS) {
        /* Topping up from another CPU's slab would put objects of one
         * slab on two CPUs for the sake of a few rounds. */
        VmemSlab *slab = slab_pick(cache, home, mag->rounds == 0 ? PICK_SPARE : PICK_OWN);
        if (slab == NULL)
            break;
        /* The lowest objects, as a single take would hand them out, pushed
         * highest first so that the pops go up through the slab. */
        uint64_t taken = 0, left = slab->in_slab;
        for (size_t room = MAG_ROUNDS - mag->rounds; room > 0 && left != 0; room--) {
            taken |= left & (~left + 1);
            left &= left - 1;
        }
        slab->in_slab = left;
        while (taken != 0) {
            unsigned q = 63u - (unsigned)__builtin_clzll(taken);
            taken &= ~((uint64_t)1 << q);
            slab->out++;
            __atomic_store_n(&slab->state[q], (uint8_t)OBJ_IN_MAGAZINE, __ATOMIC_RELAXED);
            put_round(mag, slab->base + ((uintptr_t)q << qs->hot.quantum_shift), slab);
        }
        if (slab->in_slab == 0)
            partial_remove(cache, slab);
    }
    return mag->rounds;
}

/* Unlinks a full magazine from the depot: the latest one CPU `home`
 * filled, else with `anyone` the latest of all, else NULL. The depot
 * holds at most DEPOT_FULL_MAX + 1: a short walk. Cache lock held. */
static VmemMag *depot_take_full(QcCache *cache, unsigned home, bool anyone)
{
    VmemMag **link = &cache->full;
    while (*link != NULL && (*link)->filler != home)
        link = &(*link)->next;
    if (*link == NULL) {
        if (!anyone || cache->full == NULL)
            return NULL;
        link = &cache->full;
    }
    VmemMag *mag = *link;
    *link = mag->next;
    cache->nfull--;
    return mag;
}

/* Allocation when both magazines are empty. In order: a full magazine
 * this CPU put in the depot; its empty magazine refilled from its own
 * slabs (or one another CPU can spare); a full magazine another CPU put in
 * the depot, if the depot is full (the others free more than they
 * allocate, and their surplus would otherwise go back to the slabs only to
 * come out here) or no new slab can be had at once; else a new slab of
 * its own, whose first object is the caller's. With no magazine to fill,
 * or no slab to be had, the object comes straight from the slabs. Taking
 * other CPUs' magazines and slabs last keeps each slab's objects on one
 * CPU, so that the state bytes a hit writes stay in that CPU's cache (see
 * Homes). Entered inside the slot; returns outside it. */
static COLD uintptr_t alloc_miss(Vmem *vm, VmemQcacheState *qs, size_t c, QcCpu *cpu,
                                 int vmflag)
{
    QcCache *cache = &qs->cache[c];
    unsigned home = cpu_index(cache, cpu);
    bool grown = false;   /* a new slab was tried for (once is enough) */
    bool no_slab = false; /* and could not be had at once */
    for (;;) {
        VmemMag *mag = cpu->loaded;
        if (mag != NULL && mag->rounds > 0)
            return hand_out_round(qs, cpu, mag);
        if (cpu->previous != NULL && (cpu->previous->rounds > 0 || mag == NULL)) {
            cpu->loaded = cpu->previous;
            cpu->previous = mag;
            continue;
        }
        VmemIrqState cstate = vmem_port_lock(&cache->lock);
        VmemMag *full = depot_take_full(cache, home, false);
        if (full == NULL && mag == NULL)
            mag = cpu->loaded = depot_take_empty(cache);
        if (full == NULL && mag != NULL && mag_refill(qs, cache, home, mag) > 0) {
            vmem_port_unlock(&cache->lock, cstate);
            continue;
        }
        if (full == NULL && (cache->nfull >= DEPOT_FULL_MAX || no_slab))
            full = depot_take_full(cache, home, true);
        if (full != NULL) {
            /* Trade the older empty magazine for it. */
            if (cpu->previous != NULL)
                depot_put_empty(qs, cache, cpu->previous);
            cpu->previous = cpu->loaded;
            cpu->loaded = full;
            vmem_port_unlock(&cache->lock, cstate);
            continue;
        }
        vmem_port_unlock(&cache->lock, cstate);
        slot_exit(cpu);
        if (mag == NULL || grown)
            break;
        /* A new slab, with no slot or lock held: its first object is the
         * caller's, and the next miss fills the magazine from the rest.
         * Without one, into the slot again (or around it if it was taken
         * meanwhile) for another CPU's magazine. */
        grown = true;
        uintptr_t addr;
        int result = slab_grow(vm, qs, c, home, at_once(vmflag), &addr);
        if (result == 0)
            return addr;
        no_slab = result < 0;
        if (!slot_reenter(cache, cpu))
            break;
    }
    return alloc_from_slabs(vm, qs, c, home, vmflag);
}

/* The first allocation of an arena with caches creates their state. */
static COLD uintptr_t alloc_first(Vmem *vm, size_t size, int vmflag)
{
    if (((size - 1) >> vm->vm_quantum_shift) >= vmem_qcache_count(vm))
        return 0;
    if (qcache_state(vm, vmflag) == NULL)
        return 0; /* no memory for the caches themselves: use the arena */
    return vmem_qcache_alloc(vm, size, vmflag);
}

uintptr_t vmem_qcache_alloc(Vmem *vm, size_t size, int vmflag)
{
    VmemQcacheState *qs = __atomic_load_n(&vm->vm_qcache, __ATOMIC_ACQUIRE);
    if (UNLIKELY(qs == NULL))
        return alloc_first(vm, size, vmflag);
    size_t c = (size - 1) >> qs->hot.quantum_shift;
    if (c >= qs->hot.ncaches)
        return 0;
    QcCpu *cpu = slot_enter_mine(&qs->cache[c], SLOT_ATTEMPTS);
    if (UNLIKELY(cpu == NULL))
        return alloc_from_slabs(vm, qs, c, cpu_index(&qs->cache[c], my_cpu(&qs->cache[c])),
                                vmflag);
    VmemMag *mag = cpu->loaded;
    if (UNLIKELY(mag == NULL || mag->rounds == 0))
        return alloc_miss(vm, qs, c, cpu, vmflag);
    return hand_out_round(qs, cpu, mag);
}

/* ---- Free ---------------------------------------------------------------------------------- */

/* Hands a full magazine to the depot. Past DEPOT_FULL_MAX the oldest full
 * magazine goes back to its slabs instead, so that slabs no longer used
 * can be released. Cache lock held. */
static void depot_put_full(VmemQcacheState *qs, QcCache *cache, VmemMag *mag, unsigned filler,
                           VmemSlab **release)
{
    mag->filler = (uint16_t)filler;
    mag->next = cache->full;
    cache->full = mag;
    if (++cache->nfull <= DEPOT_FULL_MAX)
        return;
    VmemMag *oldest = cache->full, **link = &cache->full;
    while (oldest->next != NULL) {
        link = &oldest->next;
        oldest = oldest->next;
    }
    *link = NULL;
    cache->nfull--;
    mag_flush(qs, cache, oldest, release);
    depot_put_empty(qs, cache, oldest);
}

/* The end of a free that found no magazine for its object: the object
 * goes back to its slab, and the slabs that became wholly free (those on
 * `release` and perhaps its own) back to the arena. No slot held. */
static void free_into_slab(Vmem *vm, VmemQcacheState *qs, QcCache *cache, VmemSlab *slab,
                           uintptr_t addr, VmemSlab *release)
{
    VmemIrqState cstate = vmem_port_lock(&cache->lock);
    VmemSlab *emptied = slab_put(qs, cache, slab, addr);
    vmem_port_unlock(&cache->lock, cstate);
    if (emptied != NULL) {
        emptied->next = release;
        release = emptied;
    }
    slabs_release(vm, qs, release);
}

/* No empty magazine anywhere: a new one goes to the depot, taken from the
 * page source with no slot or lock held. Entered inside the slot; true when
 * the caller is inside it again, to retry, false when it is outside (no
 * memory, or the slot was taken meanwhile). */
static COLD bool restock_empty_magazine(VmemQcacheState *qs, QcCache *cache, QcCpu *cpu)
{
    slot_exit(cpu);
    VmemMag *fresh = mag_get(qs, VM_NOSLEEP);
    if (fresh == NULL)
        return false;
    VmemIrqState cstate = vmem_port_lock(&cache->lock);
    depot_put_empty(qs, cache, fresh);
    vmem_port_unlock(&cache->lock, cstate);
    return slot_reenter(cache, cpu);
}

/* Free when the loaded magazine is full (or missing): the object, already
 * marked as in a magazine and counted, goes into the previous one, an
 * empty one from the depot or a new one; without memory for one, or if
 * the slot is taken meanwhile, back to its slab. Entered inside the slot;
 * returns outside it. */
static COLD void free_miss(Vmem *vm, VmemQcacheState *qs, size_t c, QcCpu *cpu, uintptr_t addr,
                           VmemSlab *slab)
{
    QcCache *cache = &qs->cache[c];
    VmemSlab *release = NULL;
    for (;;) {
        VmemMag *mag = cpu->loaded;
        if (mag != NULL && mag->rounds < MAG_ROUNDS) {
            put_round(mag, addr, slab);
            slot_exit(cpu);
            slabs_release(vm, qs, release);
            return;
        }
        if (cpu->previous != NULL && cpu->previous->rounds == 0) {
            cpu->loaded = cpu->previous;
            cpu->previous = mag;
            continue;
        }
        /* Both full (or missing): trade the older one for an empty one. */
        VmemIrqState cstate = vmem_port_lock(&cache->lock);
        VmemMag *empty = depot_take_empty(cache);
        if (empty != NULL) {
            if (cpu->previous != NULL)
                depot_put_full(qs, cache, cpu->previous, cpu_index(cache, cpu), &release);
            cpu->previous = cpu->loaded;
            cpu->loaded = empty;
            vmem_port_unlock(&cache->lock, cstate);
            continue;
        }
        vmem_port_unlock(&cache->lock, cstate);
        /* The object is ours meanwhile (in no magazine yet), so its slab
         * stays. */
        if (!restock_empty_magazine(qs, cache, cpu))
            break;
    }
    free_into_slab(vm, qs, cache, slab, addr, release);
}

/* Free of an object whose slab is homed on another CPU (the caller moved,
 * or the object was handed on): it goes into this CPU's away magazine,
 * which, full, goes to the depot as a magazine its home CPU filled, so
 * that objects go back to the CPU whose slab lines they share instead of
 * circulating here for good. The first round's home names the magazine
 * (with more than two CPUs its rounds may have several). Without an empty
 * magazine, as in free_miss(). Entered inside the slot, with the object
 * marked and counted; returns outside it. */
static COLD void free_away(Vmem *vm, VmemQcacheState *qs, size_t c, QcCpu *cpu, uintptr_t addr,
                           VmemSlab *slab)
{
    QcCache *cache = &qs->cache[c];
    VmemSlab *release = NULL;
    for (;;) {
        VmemMag *mag = cpu->away;
        if (mag != NULL && mag->rounds < MAG_ROUNDS) {
            put_round(mag, addr, slab);
            slot_exit(cpu);
            slabs_release(vm, qs, release);
            return;
        }
        VmemIrqState cstate = vmem_port_lock(&cache->lock);
        VmemMag *empty = depot_take_empty(cache);
        if (empty != NULL) {
            if (mag != NULL)
                depot_put_full(qs, cache, mag,
                               __atomic_load_n(&mag->round[0].slab->home, __ATOMIC_RELAXED),
                               &release);
            cpu->away = empty;
            vmem_port_unlock(&cache->lock, cstate);
            continue;
        }
        vmem_port_unlock(&cache->lock, cstate);
        if (!restock_empty_magazine(qs, cache, cpu))
            break;
    }
    free_into_slab(vm, qs, cache, slab, addr, release);
}

/* Why a free was refused: by the slab's cache, the alignment, or seen, the
 * object's state. Inside the slot or the cache lock that found the slab. */
static COLD const char *free_refusal(const VmemQcacheState *qs, uintptr_t addr,
                                     const VmemSlab *slab, size_t c, uint8_t seen,
                                     VmemMisuseKind *kind)
{
    if (slab->cache != c) {
        *kind = VMEM_MISUSE_FREE_WRONG_SIZE;
        return "the address belongs to the quantum cache of another size";
    }
    if ((addr & qs->hot.quantum_mask) != 0 || seen == OBJ_NONE) {
        *kind = VMEM_MISUSE_FREE_INSIDE;
        return "the address is not the start of a cached object";
    }
    *kind = VMEM_MISUSE_DOUBLE_FREE;
    return "the cached object is already free";
}

/* Free that bypasses the magazines, when the slot is busy: the object
 * goes straight back to its slab, under the cache lock. */
static COLD void free_to_slab(Vmem *vm, VmemQcacheState *qs, size_t c, const char *call,
                              uintptr_t addr, size_t size)
{
    QcCache *cache = &qs->cache[c];
    VmemIrqState cstate = vmem_port_lock(&cache->lock);
    VmemSlab *slab = slab_of(qs, addr);
    if (slab == NULL) {
        vmem_port_unlock(&cache->lock, cstate);
        vmem_arena_free_segment(vm, call, addr, size);
        return;
    }
    uint8_t seen = OBJ_ALLOCATED;
    if (slab->cache != c || (addr & qs->hot.quantum_mask) != 0 ||
        !__atomic_compare_exchange_n(state_of(qs, slab, addr), &seen, (uint8_t)OBJ_IN_SLAB,
                                     false, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
        VmemMisuseKind kind;
        const char *why = free_refusal(qs, addr, slab, c, seen, &kind);
        vmem_port_unlock(&cache->lock, cstate);
        vmem_report(vm, call, addr, size, kind, why);
        return;
    }
    cache->slab_takebacks++;
    VmemSlab *emptied = slab_put(qs, cache, slab, addr);
    vmem_port_unlock(&cache->lock, cstate);
    if (emptied != NULL) {
        emptied->next = NULL;
        slabs_release(vm, qs, emptied);
    }
}

void vmem_qcache_free(Vmem *vm, const char *call, uintptr_t addr, size_t size)
{
    VmemQcacheState *qs = __atomic_load_n(&vm->vm_qcache, __ATOMIC_ACQUIRE);
    size_t c;
    if (qs == NULL || (c = (size - 1) >> qs->hot.quantum_shift) >= qs->hot.ncaches) {
        vmem_arena_free_segment(vm, call, addr, size);
        return;
    }
    QcCpu *cpu = slot_enter_mine(&qs->cache[c], SLOT_ATTEMPTS);
    if (UNLIKELY(cpu == NULL)) {
        free_to_slab(vm, qs, c, call, addr, size);
        return;
    }
    VmemSlab *slab = slab_of(qs, addr);
    if (slab == NULL) {
        slot_exit(cpu);
        /* Not from a cache: an arena segment (or misuse the arena reports). */
        vmem_arena_free_segment(vm, call, addr, size);
        return;
    }
    uint8_t seen = OBJ_ALLOCATED;
    if (UNLIKELY(slab->cache != c || (addr & qs->hot.quantum_mask) != 0 ||
                 !__atomic_compare_exchange_n(state_of(qs, slab, addr), &seen,
                                              (uint8_t)OBJ_IN_MAGAZINE, false, __ATOMIC_ACQ_REL,
                                              __ATOMIC_RELAXED))) {
        VmemMisuseKind kind;
        const char *why = free_refusal(qs, addr, slab, c, seen, &kind);
        slot_exit(cpu);
        vmem_report(vm, call, addr, size, kind, why);
        return;
    }
    __atomic_store_n(&cpu->taken_back, cpu->taken_back + 1, __ATOMIC_RELAXED);
    /* Both lines are in this CPU's cache already (slab->cache, the slot). */
    if (UNLIKELY(__atomic_load_n(&slab->home, __ATOMIC_RELAXED) != cpu->index)) {
        free_away(vm, qs, c, cpu, addr, slab);
        return;
    }
    VmemMag *mag = cpu->loaded;
    if (UNLIKELY(mag == NULL || mag->rounds == MAG_ROUNDS)) {
        free_miss(vm, qs, c, cpu, addr, slab);
        return;
    }
    put_round(mag, addr, slab);
    slot_exit(cpu);
}

bool vmem_qcache_owns(Vmem *vm, uintptr_t addr)
{
    VmemQcacheState *qs = __atomic_load_n(&vm->vm_qcache, __ATOMIC_ACQUIRE);
    if (qs == NULL)
        return false;
    VmemIrqState state = vmem_port_lock(&qs->qs_lock);
    bool owned = slab_of(qs, addr) != NULL;
    vmem_port_unlock(&qs->qs_lock, state);
    return owned;
}

/* ---- Draining, stats, teardown ----------------------------------------------------------- */

void vmem_qcache_drain(Vmem *vm, bool insist)
{
    VmemQcacheState *qs = __atomic_load_n(&vm->vm_qcache, __ATOMIC_ACQUIRE);
    if (qs == NULL)
        return;
    for (size_t c = 0; c < qs->hot.ncaches; c++) {
        QcCache *cache = &qs->cache[c];
        VmemSlab *release = NULL;
        VmemMag *spent = NULL;
        /* A slot busy all along is in use right now: its magazines stay,
         * as they would have a moment later anyway. Destroy cannot leave
         * them (their slabs would count as live segments), and nobody may
         * use an arena being destroyed, so it tries again: only a caller
         * stuck inside, which is misuse, outlasts SLOT_INSIST patient
         * tries, and destroy then reports the arena busy. */
        unsigned held[VMEM_MAX_CPUS];
        bool emptied[VMEM_MAX_CPUS];
        for (size_t i = 0; i < VMEM_MAX_CPUS; i++)
            emptied[i] = false;
        for (unsigned round = 0; round < (insist ? SLOT_INSIST : 1u); round++) {
            if (!slots_swap_all(cache, emptied, SLOT_PATIENCE, held))
                continue;
            for (size_t i = 0; i < VMEM_MAX_CPUS; i++) {
                QcCpu *cpu = &cache->cpu[i];
                if (held[i] == 0)
                    continue;
                VmemIrqState cstate = vmem_port_lock(&cache->lock);
                VmemMag *mags[3] = {cpu->loaded, cpu->previous, cpu->away};
                cpu->loaded = cpu->previous = cpu->away = NULL;
                for (int m = 0; m < 3; m++) {
                    if (mags[m] == NULL)
                        continue;
                    mag_flush(qs, cache, mags[m], &release);
                    mags[m]->next = spent;
                    spent = mags[m];
                }
                vmem_port_unlock(&cache->lock, cstate);
                slot_exit(cpu);
                emptied[i] = true;
            }
        }
        VmemIrqState cstate = vmem_port_lock(&cache->lock);
        while (cache->full != NULL) {
            VmemMag *mag = cache->full;
            cache->full = mag->next;
            mag_flush(qs, cache, mag, &release);
            mag->next = spent;
            spent = mag;
        }
        cache->nfull = 0;
        while (cache->empty != NULL) {
            VmemMag *mag = cache->empty;
            cache->empty = mag->next;
            mag->next = spent;
            spent = mag;
        }
        cache->nempty = 0;
        vmem_port_unlock(&cache->lock, cstate);
        VmemIrqState state = vmem_port_lock(&qs->qs_lock);
        mags_put_locked(qs, spent);
        vmem_port_unlock(&qs->qs_lock, state);
        slabs_release(vm, qs, release);
    }
}

void vmem_qcache_usage(Vmem *vm, VmemQcacheUsage *usage)
{
    usage->slab_bytes = usage->objects_bytes = 0;
    usage->allocs = usage->frees = usage->slabs = 0;
    usage->slabs_created = usage->slabs_released = 0;
    VmemQcacheState *qs = __atomic_load_n(&vm->vm_qcache, __ATOMIC_ACQUIRE);
    if (qs == NULL)
        return;
    VmemIrqState state = vmem_port_lock(&qs->qs_lock);
    usage->slab_bytes = qs->slab_bytes;
    usage->slabs = qs->slab_count;
    usage->slabs_created = qs->slabs_created;
    usage->slabs_released = qs->slabs_released;
    vmem_port_unlock(&qs->qs_lock, state);
    for (size_t c = 0; c < qs->hot.ncaches; c++) {
        QcCache *cache = &qs->cache[c];
        VmemIrqState cstate = vmem_port_lock(&cache->lock);
        size_t allocs = cache->slab_handouts;
        size_t frees = cache->slab_takebacks;
        vmem_port_unlock(&cache->lock, cstate);
        for (size_t i = 0; i < VMEM_MAX_CPUS; i++) {
            allocs += __atomic_load_n(&cache->cpu[i].handed_out, __ATOMIC_RELAXED);
            frees += __atomic_load_n(&cache->cpu[i].taken_back, __ATOMIC_RELAXED);
        }
        usage->objects_bytes += (allocs - frees) * cache->objsize;
        usage->allocs += allocs;
        usage->frees += frees;
    }
}

void vmem_qcache_fini(Vmem *vm)
{
    VmemQcacheState *qs = vm->vm_qcache;
    if (qs == NULL)
        return;
    vm->vm_qcache = NULL;
    for (size_t c = 0; c < qs->hot.ncaches; c++)
        vmem_port_lock_fini(&qs->cache[c].lock);
    vmem_port_lock_fini(&qs->qs_lock);
    for (QcPage *page = qs->pages, *next; page != NULL; page = next) {
        next = page->next;
        vmem_port_page_free(page, page->npages);
    }
    vmem_port_page_free(qs, vm->vm_qcache_pages);
}
