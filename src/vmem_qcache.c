/*
 * vmem_qcache.c - quantum caches: the paper's per-CPU magazine layer in
 * front of an arena, one cache per multiple of the quantum up to
 * qcache_max. It owns magazines, depots, slabs, the slab table, object
 * states and counters, and keeps these invariants:
 *
 * 1. Layers. Per CPU, a loaded and a previous magazine (stacks of free
 *    objects): allocations pop the loaded one, frees push onto it, the two
 *    swap when it is empty (full). The depot (the cache's lock) trades full
 *    magazines when both are empty (full). Slabs, runs of objects carved
 *    from one arena segment (the next power of two above 3 x qcache_max,
 *    aligned to its size), fill magazines; a wholly free slab goes back.
 *
 * 2. CPU sections. A CPU's magazines are touched only inside its section,
 *    which the port provides (a kernel disables interrupts; the POSIX port
 *    takes a lock per CPU index). Inside: pops, pushes, magazine swaps and
 *    counters only - no lock, no other hook, no waiting. Depot, slab, arena
 *    and page work runs outside on a magazine the section handed out, and
 *    a second section installs the result. Only destroy, when nobody may
 *    use the arena, touches every CPU's magazines.
 *
 * 3. Draining. vmem_reap(), a request that drains before it fails or
 *    sleeps, and a free that sees a sleeper empty the depot and the
 *    calling CPU's magazines; another CPU keeps at most two per cache.
 *
 * 4. Sleepers. A VM_SLEEP request that must wait counts itself in
 *    vm_qcache_waiters, drains and sleeps in the arena. A free pushes, then
 *    reads that count (both sequentially consistent): seeing a waiter, it
 *    drains, and wholly free slabs go back to the arena, whose free wakes
 *    the sleeper. A free that read zero came before the waiter's drain.
 *
 * 5. Checked frees. Each slab has an external descriptor (objects are
 *    integers) with a state per quantum: no object start, in the slab,
 *    allocated, in a magazine. A free finds the descriptor in the slab
 *    table (open addressing, written under qs_lock with release stores,
 *    old tables kept until destroy) and moves the state from allocated to
 *    in a magazine by compare-and-swap, which only one of two racing frees
 *    on two CPUs can win: a double free, an interior or a foreign address
 *    is reported and changes nothing. Descriptors are reused at once, so
 *    states carry a generation, bumped when a slab is carved and released:
 *    a free that found the descriptor before its reuse fails.
 *
 * 6. Exact statistics. Each object handed out is counted once as an
 *    allocation, each taken back once as a free, per CPU (in its section)
 *    or per cache (under its lock): one writer each, a plain increment
 *    published by a release store. A reader sums frees, allocations, then
 *    frees again (acquire loads). An allocation is counted before its
 *    object can reach a freer, so allocations read after frees are never
 *    fewer; if both sums of frees agree, the difference lies between what
 *    was outstanding at the start and at the end of the read. The arena
 *    brackets this with its own counters, retries, then clamps.
 *
 * 7. Lock order: cache lock -> qs_lock. Neither is held inside a section,
 *    nor while calling the arena, the page source or the misuse hook.
 */
#include "vmem_internal.h"

#define MAG_ROUNDS VMEM_QCACHE_MAG_ROUNDS
#define DEPOT_MAX 4 /* full magazines a depot keeps; more are emptied into slabs */
#define COLD __attribute__((noinline, cold))
#define UNLIKELY(x) __builtin_expect(!!(x), 0)

/* A quantum's state: its kind in the low bits, its slab's generation above. */
enum { OBJ_NONE, OBJ_IN_SLAB, OBJ_ALLOCATED, OBJ_IN_MAGAZINE, KIND_MASK = 3 };
enum { GEN_SHIFT = 2, GEN_MASK = 0x3fff };

typedef struct {
    uintptr_t addr;
    struct vmem_slab *slab; /* spares allocations a table lookup */
} VmemRound;

/* Whole lines, so that two CPUs' magazines never share one. */
typedef struct vmem_mag {
    struct vmem_mag *next; /* first, as in every item of a free list */
    size_t rounds;
    VmemRound round[MAG_ROUNDS];
} __attribute__((aligned(64))) VmemMag;

typedef struct vmem_slab {
    struct vmem_slab *next, *prev;    /* the partial list (next: the descriptor free list) */
    uintptr_t base;           /* base, cache, gen: atomic, read by frees unlocked */
    uint64_t in_slab;         /* bit q: the object at quantum q is in the slab */
    uint16_t cache, gen, out; /* out: objects not in the slab */
    bool partial;
    uint16_t state[VMEM_QCACHE_SLAB_OBJS] __attribute__((aligned(64))); /* written by hits */
} VmemSlab;

#define TOMBSTONE ((VmemSlab *)1)

/* Slots keyed by the slab's base, which the descriptor holds. */
typedef struct {
    size_t mask, used, live; /* used: live + tombstones */
    unsigned shift;          /* 64 - log2(slots): slot_of() keeps the top bits */
    VmemSlab *slot[];        /* NULL: never used; TOMBSTONE: deleted */
} SlabTable;

/* A CPU's magazines and counters: a line touched only in its section. */
typedef struct {
    VmemMag *loaded, *previous;
    size_t allocs, frees;
} __attribute__((aligned(64))) QcCpu;

typedef struct {
    VmemLock lock; /* the depot, the partial list, frees */
    size_t objsize, nfull;
    VmemMag *full;
    VmemSlab *partial;
    size_t frees; /* objects freed straight into their slabs (no magazine to be had) */
    QcCpu cpu[VMEM_MAX_CPUS];
} QcCache;

typedef struct qc_page {
    struct qc_page *next;
    size_t npages;
} QcPage; /* heads each page run taken, for destroy; items start a line after */
#define BLOCK_OFFSET ((sizeof(QcPage) + 63) & ~(size_t)63)
_Static_assert(sizeof(VmemMag) <= VMEM_PAGE_SIZE - BLOCK_OFFSET,
               "a magazine must fit in a page: lower VMEM_QCACHE_MAG_ROUNDS");

struct vmem_qcache_state {
    size_t ncaches, slab_size;
    unsigned quantum_shift, slab_shift;
    uintptr_t quantum_mask, slab_mask; /* slab_mask: a slab's base from an address */
    SlabTable *table;
    VmemLock qs_lock __attribute__((aligned(64))); /* table writes, free lists, pages */
    VmemSlab *desc_free;
    VmemMag *mag_free;
    QcPage *pages;
    QcCache cache[];
};

/* The calling CPU's section (point 2), entered and left. */
static inline QcCpu *cpu_enter(QcCache *cache, VmemIrqState *irq)
{
    unsigned cpu = vmem_port_cpu_enter(irq);
    if (UNLIKELY(cpu >= VMEM_MAX_CPUS))
        vmem_port_panic("vmem_port_cpu_enter returned an index >= VMEM_MAX_CPUS");
    return &cache->cpu[cpu];
}
#define cpu_leave(cache_, cpu_, irq_) vmem_port_cpu_leave((unsigned)((cpu_) - (cache_)->cpu), irq_)

/* ---- Memory for the caches' own structures -------------------------------------- */

/* Pushes an item (its first word links) onto a free list, or pops one. */
static void *list_put(VmemQcacheState *qs, void **list, void *item)
{
    VmemIrqState state = vmem_port_lock(&qs->qs_lock);
    void **top = *list;
    *list = item != NULL ? item : top != NULL ? *top : NULL;
    if (item != NULL)
        *(void **)item = top;
    vmem_port_unlock(&qs->qs_lock, state);
    return top;
}

/* Pages for qs, kept until destroy. No lock held. */
static void *qc_pages(VmemQcacheState *qs, size_t bytes, int vmflag)
{
    size_t npages = (bytes + BLOCK_OFFSET + VMEM_PAGE_SIZE - 1) / VMEM_PAGE_SIZE;
    QcPage *page = vmem_port_page_alloc(npages, (vmflag & (VM_SLEEP | VM_NOSLEEP)) | VM_BOOTSTRAP);
    if (page == NULL)
        return NULL;
    page->npages = npages;
    list_put(qs, (void **)&qs->pages, page);
    return (char *)page + BLOCK_OFFSET;
}

/* An item from a free list, refilled a page at a time. No lock held. */
static void *list_get(VmemQcacheState *qs, void **list, size_t item_size, int vmflag)
{
    void *item = list_put(qs, list, NULL);
    char *block = item != NULL ? NULL : qc_pages(qs, VMEM_PAGE_SIZE - BLOCK_OFFSET, vmflag);
    for (size_t i = 1; block != NULL && i < (VMEM_PAGE_SIZE - BLOCK_OFFSET) / item_size; i++)
        list_put(qs, list, block + i * item_size);
    return item != NULL ? item : block;
}

/* ---- The slab table and object states ----------------------------------------- */

static inline uint16_t *state_of(const VmemQcacheState *qs, VmemSlab *slab, uintptr_t addr)
{
    return &slab->state[(addr & ~qs->slab_mask) >> qs->quantum_shift];
}

/* By the object's holder only (a magazine's, or the cache lock's). */
static inline void state_set(uint16_t *state, unsigned kind)
{
    uint16_t old = __atomic_load_n(state, __ATOMIC_RELAXED);
    __atomic_store_n(state, (uint16_t)((old & ~KIND_MASK) | kind), __ATOMIC_RELAXED);
}

/* Fibonacci hashing of the slab's number: consecutive slabs spread over
 * the top bits of the product instead of crowding its low ones. */
static size_t slot_of(const VmemQcacheState *qs, const SlabTable *table, uintptr_t key)
{
    return (size_t)(((uint64_t)(key >> qs->slab_shift) * 0x9e3779b97f4a7c15ULL) >> table->shift);
}

/* The descriptor of the slab holding addr, or NULL; *gen its generation,
 * read before what it guards (point 5), the base that is the key. */
static inline VmemSlab *slab_of(const VmemQcacheState *qs, uintptr_t addr, unsigned *gen)
{
    SlabTable *table = __atomic_load_n(&qs->table, __ATOMIC_ACQUIRE);
    uintptr_t key = addr & qs->slab_mask;
    VmemSlab *slab;
    for (size_t i = table != NULL ? slot_of(qs, table, key) : 0;
         table != NULL && (slab = __atomic_load_n(&table->slot[i], __ATOMIC_ACQUIRE)) != NULL;
         i = (i + 1) & table->mask) {
        if (slab == TOMBSTONE)
            continue;
        *gen = __atomic_load_n(&slab->gen, __ATOMIC_ACQUIRE);
        if (__atomic_load_n(&slab->base, __ATOMIC_RELAXED) == key)
            return slab;
    }
    return NULL;
}

static void table_put(VmemQcacheState *qs, SlabTable *table, VmemSlab *slab) /* qs_lock held */
{
    size_t i = slot_of(qs, table, slab->base);
    while (table->slot[i] != NULL && table->slot[i] != TOMBSTONE)
        i = (i + 1) & table->mask;
    table->used += table->slot[i] == NULL;
    table->live++;
    __atomic_store_n(&table->slot[i], slab, __ATOMIC_RELEASE);
}

/* Room for one more slab (at most 3/4 of the slots used: an empty slot ends
 * every probe), then true with qs_lock held (state in *state); or false. */
static bool table_room_locked(VmemQcacheState *qs, int vmflag, VmemIrqState *state)
{
    for (SlabTable *fresh = NULL;;) {
        *state = vmem_port_lock(&qs->qs_lock);
        SlabTable *old = qs->table;
        size_t slots = 64;
        if (old != NULL && (old->used + 1) * 4 <= (old->mask + 1) * 3)
            return true;
        while (old != NULL && slots * 3 < (old->live + 1) * 8)
            slots *= 2;
        if (fresh != NULL && fresh->mask + 1 == slots) { /* else another thread grew it */
            for (size_t i = 0; old != NULL && i <= old->mask; i++)
                if (old->slot[i] != NULL && old->slot[i] != TOMBSTONE)
                    table_put(qs, fresh, old->slot[i]);
            __atomic_store_n(&qs->table, fresh, __ATOMIC_RELEASE);
            return true;
        }
        vmem_port_unlock(&qs->qs_lock, *state);
        if ((fresh = qc_pages(qs, sizeof(SlabTable) + slots * sizeof(VmemSlab *), vmflag)) == NULL)
            return false;
        fresh->mask = slots - 1;
        fresh->shift = 64 - log2_floor(slots);
        fresh->used = fresh->live = 0;
        for (size_t i = 0; i < slots; i++)
            fresh->slot[i] = NULL;
    }
}

/* ---- Slabs (cache lock held unless said otherwise) ------------------------------ */

/* Puts a slab on the cache's partial list (on), or takes it off. */
static void partial_set(QcCache *cache, VmemSlab *slab, bool on)
{
    if (slab->partial == on)
        return;
    slab->partial = on;
    if (!on) {
        *(slab->prev != NULL ? &slab->prev->next : &cache->partial) = slab->next;
        if (slab->next != NULL)
            slab->next->prev = slab->prev;
        return;
    }
    slab->prev = NULL;
    slab->next = cache->partial;
    if (cache->partial != NULL)
        cache->partial->prev = slab;
    cache->partial = slab;
}

/* Fills a magazine with the lowest free objects of the partial slabs. */
static void mag_fill(const VmemQcacheState *qs, QcCache *cache, VmemMag *mag)
{
    VmemSlab *slab;
    while (mag->rounds < MAG_ROUNDS && (slab = cache->partial) != NULL) {
        unsigned q = ctz64(slab->in_slab);
        slab->in_slab &= slab->in_slab - 1;
        slab->out++;
        state_set(&slab->state[q], OBJ_IN_MAGAZINE);
        if (slab->in_slab == 0)
            partial_set(cache, slab, false);
        mag->round[mag->rounds++] =
            (VmemRound){slab->base + ((uintptr_t)q << qs->quantum_shift), slab};
    }
}

/* Puts an object back in its slab; a slab wholly free again goes onto
 * *release, detached from everything but the table. */
static void slab_put(const VmemQcacheState *qs, QcCache *cache, VmemRound round, VmemSlab **release)
{
    VmemSlab *slab = round.slab;
    unsigned q = (unsigned)((round.addr - slab->base) >> qs->quantum_shift);
    state_set(&slab->state[q], OBJ_IN_SLAB);
    slab->in_slab |= (uint64_t)1 << q;
    partial_set(cache, slab, --slab->out != 0);
    if (slab->out == 0) {
        slab->next = *release;
        *release = slab;
    }
}

/* Gives wholly free slabs back to the arena. No lock held. */
static void slabs_release(Vmem *vm, VmemQcacheState *qs, VmemSlab *list)
{
    for (VmemSlab *next; list != NULL; list = next) {
        next = list->next;
        uintptr_t base = list->base;
        VmemIrqState state = vmem_port_lock(&qs->qs_lock);
        SlabTable *table = qs->table;
        size_t i = slot_of(qs, table, base);
        while (table->slot[i] != list)
            i = (i + 1) & table->mask;
        __atomic_store_n(&table->slot[i], TOMBSTONE, __ATOMIC_RELEASE);
        table->live--;
        /* A free still holding the descriptor now expects a dead generation. */
        __atomic_store_n(&list->gen, (uint16_t)((list->gen + 1) & GEN_MASK), __ATOMIC_RELEASE);
        vmem_port_unlock(&qs->qs_lock, state);
        list_put(qs, (void **)&qs->desc_free, list);
        vmem_arena_free_slab(vm, base, qs->slab_size);
    }
}

/* Carves a new slab for cache c and fills mag (empty) from it: no slab is
 * ever partial with no object out, where nothing would release it. Without
 * a slab, NULL: mag goes back to the shared list. */
static VmemMag *slab_grow(Vmem *vm, VmemQcacheState *qs, size_t c, int vmflag, VmemMag *mag)
{
    VmemSlab *slab = list_get(qs, (void **)&qs->desc_free, sizeof(VmemSlab), vmflag);
    uintptr_t base;
    VmemIrqState state;
    bool carved = slab != NULL && vmem_arena_alloc_slab(vm, qs->slab_size, vmflag, &base) == 0;
    if (!carved || !table_room_locked(qs, vmflag, &state)) {
        if (carved)
            vmem_arena_free_slab(vm, base, qs->slab_size);
        if (slab != NULL)
            list_put(qs, (void **)&qs->desc_free, slab);
        list_put(qs, (void **)&qs->mag_free, mag);
        return NULL;
    }
    uint16_t gen = (uint16_t)((slab->gen + 1) & GEN_MASK);
    __atomic_store_n(&slab->base, base, __ATOMIC_RELAXED);
    __atomic_store_n(&slab->cache, (uint16_t)c, __ATOMIC_RELAXED);
    slab->out = 0;
    slab->in_slab = 0;
    slab->partial = false; /* a new descriptor's memory is not zeroed */
    size_t stride = c + 1, quanta = qs->slab_size >> qs->quantum_shift;
    for (size_t q = 0; q < VMEM_QCACHE_SLAB_OBJS; q++) {
        bool starts = q % stride == 0 && q + stride <= quanta;
        slab->in_slab |= (uint64_t)starts << q;
        __atomic_store_n(&slab->state[q], (uint16_t)(gen << GEN_SHIFT | (starts ? OBJ_IN_SLAB : 0)),
                         __ATOMIC_RELAXED);
    }
    __atomic_store_n(&slab->gen, gen, __ATOMIC_RELEASE);
    /* Published before it is on the partial list: a free meanwhile finds
     * no object handed out, and is refused. */
    table_put(qs, qs->table, slab);
    vmem_port_unlock(&qs->qs_lock, state);
    QcCache *cache = &qs->cache[c];
    VmemIrqState cstate = vmem_port_lock(&cache->lock);
    partial_set(cache, slab, true);
    mag_fill(qs, cache, mag);
    vmem_port_unlock(&cache->lock, cstate);
    return mag;
}

/* ---- Creation, the depot, allocation and free ---------------------------------- */

size_t vmem_qcache_count(const Vmem *vm)
{
    size_t n = vm->qcache_max >> vm->vm_quantum_shift;
    return n > VMEM_QCACHE_MAX_CACHES ? VMEM_QCACHE_MAX_CACHES : n;
}

/* Releases qs (npages long) and every page it took. Nobody uses it. */
static void state_free(VmemQcacheState *qs, size_t npages)
{
    for (size_t c = 0; c < qs->ncaches; c++)
        vmem_port_lock_fini(&qs->cache[c].lock);
    vmem_port_lock_fini(&qs->qs_lock);
    for (QcPage *page = qs->pages, *next; page != NULL; page = next) {
        next = page->next;
        vmem_port_page_free(page, page->npages);
    }
    vmem_port_page_free(qs, npages);
}

/* The state of vm's caches, created on first use. No lock held. */
static COLD VmemQcacheState *qcache_state(Vmem *vm, int vmflag)
{
    size_t n = vmem_qcache_count(vm);
    size_t npages = (sizeof(VmemQcacheState) + n * sizeof(QcCache) + VMEM_PAGE_SIZE - 1) /
                    VMEM_PAGE_SIZE;
    VmemQcacheState *qs =
        vmem_port_page_alloc(npages, (vmflag & (VM_SLEEP | VM_NOSLEEP)) | VM_BOOTSTRAP);
    if (qs == NULL)
        return NULL;
    unsigned slab_shift = log2_floor(3 * n * vm->quantum) + 1;
    /* Field by field: a compound literal may become a memset call. */
    qs->ncaches = n;
    qs->slab_size = (size_t)1 << slab_shift;
    qs->quantum_shift = vm->vm_quantum_shift;
    qs->slab_shift = slab_shift;
    qs->quantum_mask = vm->quantum - 1;
    qs->slab_mask = ~(((uintptr_t)1 << slab_shift) - 1);
    qs->table = NULL;
    qs->desc_free = NULL;
    qs->mag_free = NULL;
    qs->pages = NULL;
    vmem_port_lock_init(&qs->qs_lock);
    for (size_t c = 0; c < n; c++) {
        QcCache *cache = &qs->cache[c];
        vmem_port_lock_init(&cache->lock);
        cache->objsize = (c + 1) * vm->quantum;
        cache->nfull = cache->frees = 0;
        cache->full = NULL;
        cache->partial = NULL;
        for (size_t i = 0; i < VMEM_MAX_CPUS; i++) {
            cache->cpu[i].loaded = cache->cpu[i].previous = NULL;
            cache->cpu[i].allocs = cache->cpu[i].frees = 0;
        }
    }
    VmemIrqState state = vmem_lock(vm);
    VmemQcacheState *existing = vm->vm_qcache;
    if (existing == NULL) {
        vm->vm_qcache_pages = npages;
        __atomic_store_n(&vm->vm_qcache, qs, __ATOMIC_RELEASE);
    }
    vmem_unlock(vm, state);
    if (existing != NULL)
        state_free(qs, npages);
    return existing != NULL ? existing : qs;
}

/* A full magazine from the depot, or NULL. Cache lock held. */
static VmemMag *depot_take(QcCache *cache)
{
    VmemMag *mag = cache->full;
    if (mag != NULL) {
        cache->full = mag->next;
        cache->nfull--;
    }
    return mag;
}

/* Takes a magazine back (cache lock held): a full one joins the depot unless
 * it holds DEPOT_MAX or drains; any other is emptied into the slabs. */
static void depot_put(VmemQcacheState *qs, QcCache *cache, VmemMag *mag, VmemSlab **release,
                      bool draining)
{
    if (mag->rounds == MAG_ROUNDS && cache->nfull < DEPOT_MAX && !draining) {
        mag->next = cache->full;
        cache->full = mag;
        cache->nfull++;
        return;
    }
    while (mag->rounds > 0)
        slab_put(qs, cache, mag->round[--mag->rounds], release);
    list_put(qs, (void **)&qs->mag_free, mag);
}

/* depot_put(), or without mag a freed object into its slab. No lock held. */
static void cache_return(Vmem *vm, VmemQcacheState *qs, QcCache *cache, VmemMag *mag,
                         VmemRound round)
{
    VmemSlab *release = NULL;
    VmemIrqState cstate = vmem_port_lock(&cache->lock);
    if (mag != NULL) {
        depot_put(qs, cache, mag, &release, false);
    } else {
        slab_put(qs, cache, round, &release);
        __atomic_store_n(&cache->frees, cache->frees + 1, __ATOMIC_RELEASE);
    }
    vmem_port_unlock(&cache->lock, cstate);
    slabs_release(vm, qs, release);
}

/* Empties the depot and the calling CPU's magazines, or with all_cpus
 * (destroy: nobody uses the arena) every CPU's, into the slabs, and gives
 * wholly free slabs back to the arena. No lock held. */
static void drain_cache(Vmem *vm, VmemQcacheState *qs, QcCache *cache, bool all_cpus)
{
    VmemMag *mags[2 * VMEM_MAX_CPUS];
    size_t n = 0;
    for (size_t i = 0; i < (all_cpus ? VMEM_MAX_CPUS : 1); i++) {
        VmemIrqState irq = 0;
        QcCpu *cpu = all_cpus ? &cache->cpu[i] : cpu_enter(cache, &irq);
        mags[n++] = cpu->loaded;
        mags[n++] = cpu->previous;
        cpu->loaded = cpu->previous = NULL;
        if (!all_cpus)
            cpu_leave(cache, cpu, irq);
    }
    VmemSlab *release = NULL;
    VmemIrqState cstate = vmem_port_lock(&cache->lock);
    for (VmemMag *mag; n > 0 || (mag = depot_take(cache)) != NULL;)
        if (n == 0 || (mag = mags[--n]) != NULL)
            depot_put(qs, cache, mag, &release, true);
    vmem_port_unlock(&cache->lock, cstate);
    slabs_release(vm, qs, release);
}

/* In the section: the magazine to pop from (push onto, for a free),
 * swapped with the previous if need be; NULL if neither can serve. */
static inline VmemMag *mag_ready(QcCpu *cpu, bool for_free)
{
    VmemMag *mag = cpu->loaded, *previous = cpu->previous;
    if (mag != NULL && mag->rounds != (for_free ? MAG_ROUNDS : 0))
        return mag;
    if (previous == NULL || (previous->rounds == 0) != for_free)
        return NULL;
    cpu->loaded = previous;
    cpu->previous = mag;
    return previous;
}

/* In the section: pops the caller's object, or pushes the freed one. */
static inline uintptr_t mag_use(const VmemQcacheState *qs, QcCpu *cpu, VmemMag *mag,
                                bool for_free, VmemRound freed)
{
    if (for_free) {
        mag->round[mag->rounds++] = freed;
        __atomic_store_n(&cpu->frees, cpu->frees + 1, __ATOMIC_RELEASE);
        return 0;
    }
    VmemRound round = mag->round[--mag->rounds];
    state_set(state_of(qs, round.slab, round.addr), OBJ_ALLOCATED);
    __atomic_store_n(&cpu->allocs, cpu->allocs + 1, __ATOMIC_RELEASE);
    return round.addr;
}

/* A miss, entered in the section: it hands out the previous magazine,
 * traded for a full one (allocation: else filled from the slabs) or an
 * empty one (free), which a second section installs and uses. Without one
 * the arena serves the allocation (0); the freed object goes to its slab. */
static COLD uintptr_t cache_miss(Vmem *vm, VmemQcacheState *qs, size_t c, QcCpu *cpu,
                                 VmemIrqState irq, int vmflag, bool for_free, VmemRound freed)
{
    QcCache *cache = &qs->cache[c];
    VmemMag *mag = cpu->previous, *full = NULL;
    VmemSlab *release = NULL;
    cpu->previous = NULL;
    cpu_leave(cache, cpu, irq);
    VmemIrqState cstate = vmem_port_lock(&cache->lock);
    if (!for_free && (full = depot_take(cache)) == NULL) {
        if (mag == NULL)
            mag = list_put(qs, (void **)&qs->mag_free, NULL);
        if (mag != NULL) {
            mag->rounds = 0; /* it was empty, or is new */
            mag_fill(qs, cache, mag);
        }
    } else {
        if (mag != NULL)
            depot_put(qs, cache, mag, &release, false);
        mag = full;
    }
    vmem_port_unlock(&cache->lock, cstate);
    slabs_release(vm, qs, release);
    if (mag == NULL && (mag = list_get(qs, (void **)&qs->mag_free, sizeof(VmemMag),
                                       VM_NOSLEEP)) != NULL)
        mag->rounds = 0; /* an empty one from the shared list, or a new one */
    if (!for_free && mag != NULL && mag->rounds == 0)
        mag = slab_grow(vm, qs, c, (vmflag & ~VM_SLEEP) | VM_NOSLEEP, mag);
    if (mag == NULL && for_free)
        cache_return(vm, qs, cache, NULL, freed);
    if (mag == NULL)
        return 0;
    cpu = cpu_enter(cache, &irq);
    VmemMag *displaced = cpu->previous; /* NULL unless something ran here meanwhile */
    cpu->previous = cpu->loaded;
    cpu->loaded = mag;
    uintptr_t addr = mag_use(qs, cpu, mag, for_free, freed);
    cpu_leave(cache, cpu, irq);
    if (UNLIKELY(displaced != NULL))
        cache_return(vm, qs, cache, displaced, freed);
    return addr;
}

uintptr_t vmem_qcache_alloc(Vmem *vm, size_t size, int vmflag)
{
    VmemQcacheState *qs = __atomic_load_n(&vm->vm_qcache, __ATOMIC_ACQUIRE);
    size_t c = (size - 1) >> vm->vm_quantum_shift;
    /* The first allocation creates the caches (without memory: the arena). */
    if (UNLIKELY(qs == NULL) && c < vmem_qcache_count(vm))
        qs = qcache_state(vm, vmflag);
    if (qs == NULL || c >= qs->ncaches)
        return 0;
    QcCache *cache = &qs->cache[c];
    VmemIrqState irq;
    QcCpu *cpu = cpu_enter(cache, &irq);
    VmemMag *mag = mag_ready(cpu, false);
    if (UNLIKELY(mag == NULL))
        return cache_miss(vm, qs, c, cpu, irq, vmflag, false, (VmemRound){0, NULL});
    uintptr_t addr = mag_use(qs, cpu, mag, false, (VmemRound){0, NULL});
    cpu_leave(cache, cpu, irq);
    return addr;
}

static COLD void free_refused(Vmem *vm, const VmemQcacheState *qs, const char *call,
                              uintptr_t addr, size_t size, bool other_cache, unsigned seen)
{
    bool inside = (addr & qs->quantum_mask) != 0 || (seen & KIND_MASK) == OBJ_NONE;
    vmem_report(vm, call, addr, size,
                other_cache ? VMEM_MISUSE_FREE_WRONG_SIZE
                : inside    ? VMEM_MISUSE_FREE_INSIDE
                            : VMEM_MISUSE_DOUBLE_FREE,
                other_cache ? "the address belongs to the quantum cache of another size"
                : inside    ? "the address is not the start of a cached object"
                            : "the cached object is already free");
}

void vmem_qcache_free(Vmem *vm, const char *call, uintptr_t addr, size_t size)
{
    VmemQcacheState *qs = __atomic_load_n(&vm->vm_qcache, __ATOMIC_ACQUIRE);
    size_t c = (size - 1) >> vm->vm_quantum_shift;
    VmemSlab *slab;
    unsigned gen;
    if (qs == NULL || c >= qs->ncaches || (slab = slab_of(qs, addr, &gen)) == NULL) {
        vmem_arena_free_segment(vm, call, addr, size); /* not a cached object */
        return;
    }
    uint16_t seen = (uint16_t)(gen << GEN_SHIFT | OBJ_ALLOCATED);
    bool other_cache = __atomic_load_n(&slab->cache, __ATOMIC_RELAXED) != c;
    if (UNLIKELY(other_cache || (addr & qs->quantum_mask) != 0 ||
                 !__atomic_compare_exchange_n(state_of(qs, slab, addr), &seen,
                                              (uint16_t)(gen << GEN_SHIFT | OBJ_IN_MAGAZINE),
                                              false, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))) {
        free_refused(vm, qs, call, addr, size, other_cache, seen);
        return;
    }
    QcCache *cache = &qs->cache[c];
    VmemIrqState irq;
    QcCpu *cpu = cpu_enter(cache, &irq);
    VmemMag *mag = mag_ready(cpu, true);
    if (UNLIKELY(mag == NULL)) {
        cache_miss(vm, qs, c, cpu, irq, 0, true, (VmemRound){addr, slab});
    } else {
        mag_use(qs, cpu, mag, true, (VmemRound){addr, slab});
        cpu_leave(cache, cpu, irq);
    }
    if (UNLIKELY(__atomic_load_n(&vm->vm_qcache_waiters, __ATOMIC_SEQ_CST) != 0))
        drain_cache(vm, qs, cache, false); /* point 4 */
}

bool vmem_qcache_owns(Vmem *vm, uintptr_t addr)
{
    VmemQcacheState *qs = __atomic_load_n(&vm->vm_qcache, __ATOMIC_ACQUIRE);
    unsigned gen;
    return qs != NULL && slab_of(qs, addr, &gen) != NULL;
}

/* ---- Counting, teardown -------------------------------------------------------- */

void vmem_qcache_drain(Vmem *vm, bool all_cpus)
{
    VmemQcacheState *qs = __atomic_load_n(&vm->vm_qcache, __ATOMIC_ACQUIRE);
    for (size_t c = 0; qs != NULL && c < qs->ncaches; c++)
        drain_cache(vm, qs, &qs->cache[c], all_cpus);
}

/* A cache's frees (or allocations, all made in sections). */
static size_t counted(const QcCache *cache, bool frees)
{
    size_t sum = frees ? __atomic_load_n(&cache->frees, __ATOMIC_ACQUIRE) : 0;
    for (size_t i = 0; i < VMEM_MAX_CPUS; i++)
        sum += __atomic_load_n(frees ? &cache->cpu[i].frees : &cache->cpu[i].allocs,
                               __ATOMIC_ACQUIRE);
    return sum;
}

bool vmem_qcache_counts(Vmem *vm, VmemQcacheCounts *out)
{
    VmemQcacheState *qs = __atomic_load_n(&vm->vm_qcache, __ATOMIC_ACQUIRE);
    size_t frees_again = 0;
    out->bytes = out->allocs = out->frees = 0;
    for (size_t c = 0; qs != NULL && c < qs->ncaches; c++) {
        size_t frees = counted(&qs->cache[c], true); /* point 6: frees first */
        size_t allocs = counted(&qs->cache[c], false);
        out->bytes += (allocs - frees) * qs->cache[c].objsize;
        out->allocs += allocs;
        out->frees += frees;
    }
    for (size_t c = 0; qs != NULL && c < qs->ncaches; c++)
        frees_again += counted(&qs->cache[c], true);
    return frees_again == out->frees;
}

void vmem_qcache_fini(Vmem *vm)
{
    if (vm->vm_qcache != NULL)
        state_free(vm->vm_qcache, vm->vm_qcache_pages);
    vm->vm_qcache = NULL;
}
