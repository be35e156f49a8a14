/*
 * vmem_arena.c - arenas: creating, destroying and querying them. Read this
 * file first: its theory statement describes the whole library.
 *
 * ---------------------------------------------------------------------------
 * Theory statement
 * ---------------------------------------------------------------------------
 * 1. Arenas, spans, segments. An arena manages integers in units of its
 *    quantum (a power of two). Ranges enter as spans, by vmem_add() or by
 *    import from a source arena, and are cut into segments, allocated or
 *    free, that tile each span exactly. Every span and segment is described
 *    by an external boundary tag (VmemTag): the resource need not be
 *    memory, so nothing is ever written inside it. (vmem_segment.c)
 *
 * 2. The segment list holds every tag of an arena in address order, each
 *    span's marker right before its segments. Neighbours in the list are
 *    neighbours in the address space, so a free merges with a free
 *    predecessor and successor in O(1), never across a span marker; no two
 *    free segments are ever adjacent.
 *
 * 3. Free segments are indexed three ways, each built the first time a
 *    request needs it (one walk of the list) and kept from then on, so an
 *    arena pays only for the policies it uses:
 *    - size-class freelists with a bitmap of the non-empty ones, for
 *      instant-fit. Each power of two of sizes is split in
 *      VMEM_FREELIST_SPLIT classes (the paper's lists, each cut in four),
 *      so the segment taken is rarely more than a quarter larger than the
 *      request and large segments stay whole for large requests;
 *    - an AVL tree by address, each node knowing the largest size below it,
 *      for first-fit, VM_ENDALLOC, next-fit past its short walk, and
 *      constrained requests (vmem_tree.c);
 *    - for best-fit, a list per size up to VMEM_EXACT_SIZES quanta with a
 *      bitmap of the non-empty ones, and an AVL tree by (size, address)
 *      of the larger segments: the smallest fit is the head of the first
 *      non-empty list at or above the request, else the tree's lower
 *      bound.
 *    An arena that only asks for instant-fit keeps no tree: its allocations
 *    and frees are O(1), touching a freelist, the hash and the list.
 *
 * 4. Placement (vmem_place.c). Instant-fit looks at a few members of the
 *    request's own class, then takes the head of the first class whose
 *    every member fits: O(1). Next-fit walks the list from its rotor, the
 *    last next-fit allocation, a few segments at most, then asks the
 *    address tree. First-fit and VM_ENDALLOC search the address tree,
 *    best-fit the size lists and then the size tree.
 *    Constrained requests (align, phase, nocross, minaddr, maxaddr) visit
 *    candidates in their policy's order and take the first that fits: the
 *    exact answer, unless 64 large-enough candidates fail to fit first;
 *    then the first "comfortable" segment, one large enough to fit wherever
 *    it lies, and only if none exists every candidate. So vmem_xalloc fails
 *    only when no placement exists, and is never linear while a
 *    comfortable segment exists.
 *
 * 5. One request path (vmem_alloc.c). Every allocation call validates its
 *    arguments and builds one VmemRequest; the arena, after the quantum
 *    caches for small vmem_alloc sizes, serves it in arena_xalloc(): lock,
 *    place, carve, unlock. Refilling tags, importing and sleeping are the
 *    out-of-line rest of the same loop.
 *
 * 6. Allocated segments are in a hash keyed by address (vmem_hash.c): a
 *    free finds its segment in O(1), checks the size and rejects anything
 *    else as misuse. The table grows and shrinks incrementally, its memory
 *    taken from the page source with no lock held.
 *
 * 7. Import. An arena with a source imports a span when nothing fits, with
 *    its lock dropped, in units of the coarser of the two quanta (and of
 *    the import quantum, when one is set). A callback that can be told
 *    constraints (vmem_xalloc_addr, or one set with vmem_set_ximport) is
 *    asked for spans that hold the placement itself; a plain one for
 *    size + align - quantum (+ nocross), which holds it wherever it lies.
 *    vmem.h (VmemXImport) lists the shapes asked for. At most two imports
 *    per request: import never loops. A span goes back through the
 *    give-back function once wholly free, with the lock dropped; so does
 *    one the request imported and then did not use.
 *
 * 8. Boundary tags (vmem_tags.c) come from a global pool, refilled a page
 *    at a time from the port, through a per-arena stash that an operation
 *    fills to its worst case (VMEM_TAGS_PER_OP) before it changes anything:
 *    it completes or changes nothing, and does not take the pool's lock.
 *
 * 9. Locking. Each arena has one lock, never held while calling the page
 *    source, an import or give-back callback or the misuse hook, and
 *    never with another arena's lock, the pool's lock or a cache lock.
 *    Whatever was seen before a lock was dropped is looked up again after.
 *
 * 10. Misuse (vmem_misuse.c, docs/misuse.md). Arguments are checked before
 *    anything changes, and every free against the hash. A problem is
 *    reported once through vmem_port_misuse(), with no lock held, and the
 *    call fails leaving the arena as it was in everything a later call can
 *    see: classifying a bad free builds no index and takes no tag.
 *
 * 11. Address 0. The void * calls use NULL for failure, so they never place
 *    an allocation at 0 (their lowest address is 1, which alignment turns
 *    into the first quantum); the calls that return a status use 0 like
 *    any other address.
 *
 * 12. What the mechanisms beyond the paper's buy, each measured by building
 *    the library without it (docs/performance.md has the method and the
 *    tables; instructions are per W1 pair, counted by cachegrind):
 *    - lazily built indexes: with the address tree kept anyway, a W1
 *      instant-fit run executes 49% more instructions at 10^3 live
 *      segments (77% at 10^5); with all three kept, next-fit 2.5 times as
 *      many;
 *    - split size classes: instant-fit fills 89.9% of W2's arena before
 *      its first failure, against 74.8% with one list per power of two;
 *    - the stash's band (keep 16 tags, give back past 32): without it
 *      next-fit runs 21% more of libvmem's instructions at 10^3, a third
 *      of them in the pool's lock;
 *    - one copy of each tree operation per tree (vmem_tree.c): best-fit
 *      runs 23% more instructions with one generic copy;
 *    - best-fit's exact-size lists: without them every W1 best-fit pair
 *      walks and rebalances the size tree, several times slower at 10^3
 *      live segments; they cost W2's best-fit a point and a half of fill,
 *      as one size's segments are not kept in address order.
 *    Measured and removed: the free-predecessor mark on every tag, three
 *    quick paths beside this one request path, a fingerprinted open-
 *    addressing hash (the chained one runs 14-28% fewer instructions), and
 *    a vmem_alloc shortcut into instant-fit's constant-time step (3% fewer
 *    of libvmem's instructions per pair: under the 10% it had to buy).
 */
#include "vmem_internal.h"

/* The one symbol of the vmem_abi_ family that vmem.h makes every caller
 * refer to: its name spells the layout options this library was built
 * with, so a caller built with others fails to link. */
const char VMEM_ABI_SYMBOL = 1;

/* ---- Creation and destruction ---------------------------------------------- */

static void user_stat(Vmem *vm, VmemStat *out);

static void arena_locks_fini(Vmem *vm)
{
#if VMEM_PORT_CAN_SLEEP
    vmem_port_cond_fini(&vm->vm_cv);
#endif
    vmem_port_lock_fini(&vm->vm_lock);
}

/* Reports (as call) when vmem_bootstrap() has not run. */
static bool library_ready(const char *call, uintptr_t base, size_t size)
{
    if (vmem_library_ready())
        return true;
    vmem_report(NULL, call, base, size, VMEM_MISUSE_NOT_BOOTSTRAPPED,
                "vmem_bootstrap() has not been called");
    return false;
}

int vmem_init(Vmem *vmem, const char *name, void *base, size_t size, size_t quantum,
              VmemAlloc *afunc, VmemFree *ffunc, Vmem *source, size_t qcache_max, int vmflag)
{
    static const char call[] = "vmem_init";
    uintptr_t b = (uintptr_t)base;
    if (!library_ready(call, b, size))
        return -VMEM_ERR_INVALID;
    VmemMisuseKind kind = VMEM_MISUSE_BAD_ARGUMENT;
    const char *why = vmem == NULL ? "the arena storage is NULL"
                                   : vmem_init_problem(vmem, b, size, quantum, afunc, ffunc,
                                                       source, vmflag, &kind);
    if (why != NULL) {
        vmem_report(NULL, call, b, size, kind, why);
        return -VMEM_ERR_INVALID;
    }

    /* Copies at most the buffer less one (no libc strncpy). */
    const char *src = name != NULL ? name : "(anonymous)";
    size_t n = 0;
    for (; src[n] != '\0' && n + 1 < sizeof(vmem->name); n++)
        vmem->name[n] = src[n];
    vmem->name[n] = '\0';
    vmem->base = base;
    vmem->size = size;
    vmem->quantum = quantum;
    vmem->alloc = afunc;
    vmem->free = ffunc;
    vmem->source = source;
    vmem->qcache_max = qcache_max;
    vmem->vmflag = vmflag;
    vmem->stat.in_use = vmem->stat.import = vmem->stat.total = 0;
    vmem->stat.alloc = vmem->stat.free = 0;
    /* A policy that needs a free-segment index has it from the start. */
    vmem->vm_state = ((vmflag & VM_BESTFIT) ? VMEM_STATE_SIZE_INDEXED : 0) |
                     ((vmflag & (VM_FIRSTFIT | VM_ENDALLOC)) ? VMEM_STATE_ADDR_INDEXED : 0);
    vmem->vm_quantum_shift = log2_floor(quantum);
    for (size_t i = 0; i < VMEM_FREELISTS; i++)
        vmem->vm_freelist[i] = NULL;
    for (size_t i = 0; i < VMEM_FREEMAP_WORDS; i++)
        vmem->vm_freemap[i] = 0;
    for (size_t i = 0; i < VMEM_EXACT_SIZES; i++)
        vmem->vm_exact[i] = NULL;
    vmem->vm_exact_map = 0;
    vmem->vm_seg_first = vmem->vm_seg_last = vmem->vm_span_first = NULL;
    vmem->vm_free_by_addr = vmem->vm_free_by_size = vmem->vm_rotor_tag = vmem->vm_stash = NULL;
    vmem->vm_next_created = NULL;
    vmem->vm_qcache = NULL;
    vmem->vm_ximport = NULL;
    vmem->vm_rotor = 0;
    vmem->vm_lock_held = 0;
    vmem->vm_stash_count = vmem->vm_nsegs = vmem->vm_qcache_pages = vmem->vm_qcache_waiters = 0;
    vmem->vm_slab_bytes = vmem->vm_slabs_made = vmem->vm_slabs_freed = 0;
    vmem->vm_import_quantum = vmem->vm_hash_hint = vmem->vm_waiters = vmem->vm_importers = 0;
    vmem_hash_init(vmem);
    vmem_port_lock_init(&vmem->vm_lock);
#if VMEM_PORT_CAN_SLEEP
    vmem_port_cond_init(&vmem->vm_cv);
#endif
    vmem->vm_magic = VMEM_MAGIC;

    if (size != 0) {
        int result = vmem_arena_add(vmem, call, b, size, vmflag);
        if (result != 0) {
            VmemIrqState state = vmem_lock(vmem);
            VmemTag *tags = vmem_stash_detach(vmem, true);
            vmem->vm_magic = 0;
            vmem_unlock(vmem, state);
            vmem_pool_return(tags);
            arena_locks_fini(vmem);
            return result;
        }
    }
    if (source != NULL) {
        /* The source may not be destroyed while this arena lives. */
        VmemIrqState state = vmem_lock(source);
        source->vm_importers++;
        vmem_unlock(source, state);
    }
    return 0;
}

Vmem *vmem_create(const char *name, void *base, size_t size, size_t quantum, VmemAlloc *afunc,
                  VmemFree *ffunc, Vmem *source, size_t qcache_max, int vmflag)
{
    if (!library_ready("vmem_create", (uintptr_t)base, size))
        return NULL;
    /* Checked before storage is taken, so that misuse takes nothing. */
    VmemMisuseKind kind;
    const char *why = vmem_init_problem(NULL, (uintptr_t)base, size, quantum, afunc, ffunc,
                                        source, vmflag, &kind);
    if (why != NULL) {
        vmem_report(NULL, "vmem_create", (uintptr_t)base, size, kind, why);
        return NULL;
    }
    Vmem *vm = vmem_storage_alloc(vmflag);
    if (vm == NULL)
        return NULL;
    if (vmem_init(vm, name, base, size, quantum, afunc, ffunc, source, qcache_max, vmflag) != 0) {
        vmem_storage_free(vm);
        return NULL;
    }
    vm->vm_state |= VMEM_STATE_CREATED;
    return vm;
}

/* Why vmem_destroy() refuses vmp, or NULL: an importer (whose next import
 * would call a destroyed arena), or allocated segments (busy). Locked. */
static const char *destroy_problem(const Vmem *vmp, bool busy)
{
    if (vmp->vm_importers != 0)
        return "the arena is the source of an arena that still exists: destroy that one first";
    return busy ? "the arena still has allocated segments" : NULL;
}

/* Checked unlocked: a source is set at vmem_init and stays. */
static const char no_source[] = "the arena has no source to import from";

int vmem_set_ximport(Vmem *vmp, VmemXImport *ximport, VmemFree *release)
{
    static const char call[] = "vmem_set_ximport";
    if (!vmem_usable(vmp, call, 0, 0))
        return -VMEM_ERR_INVALID;
    const char *why = ximport == NULL ? "the import function is NULL"
                      : vmp->source == NULL ? no_source
                                            : NULL;
    if (why == NULL) {
        /* Spans already imported must go back the way they came. */
        VmemIrqState state = vmem_lock(vmp);
        if (vmp->stat.import != 0) {
            why = "the arena already holds imported spans";
        } else {
            vmp->vm_ximport = ximport;
            vmp->free = release;
        }
        vmem_unlock(vmp, state);
    }
    if (why != NULL) {
        vmem_report(vmp, call, 0, 0, VMEM_MISUSE_BAD_ARGUMENT, why);
        return -VMEM_ERR_INVALID;
    }
    return 0;
}

int vmem_set_import_quantum(Vmem *vmp, size_t quantum)
{
    static const char call[] = "vmem_set_import_quantum";
    if (!vmem_usable(vmp, call, 0, quantum))
        return -VMEM_ERR_INVALID;
    const char *why = vmp->source == NULL ? no_source : NULL;
    if (why == NULL && (!is_pow2(quantum) || quantum < vmp->quantum))
        why = "the import quantum is not a power of two at least the arena's quantum";
    if (why != NULL) {
        vmem_report(vmp, call, 0, quantum, VMEM_MISUSE_BAD_ARGUMENT, why);
        return -VMEM_ERR_INVALID;
    }
    VmemIrqState state = vmem_lock(vmp);
    vmp->vm_import_quantum = quantum > vmp->quantum ? quantum : 0;
    vmem_unlock(vmp, state);
    return 0;
}

void vmem_destroy(Vmem *vmp)
{
    static const char call[] = "vmem_destroy";
    if (!vmem_usable(vmp, call, 0, 0))
        return;
    /* Cached objects are free: only live ones make the arena busy, and a
     * busy arena keeps its caches as they are. */
    VmemStat user;
    user_stat(vmp, &user);
    VmemIrqState state = vmem_lock(vmp);
    const char *why = destroy_problem(vmp, user.in_use != 0);
    vmem_unlock(vmp, state);
    if (why != NULL) {
        vmem_report(vmp, call, 0, user.in_use, VMEM_MISUSE_DESTROY_BUSY, why);
        return;
    }
    vmem_qcache_drain(vmp, true);
    state = vmem_lock(vmp);
    why = destroy_problem(vmp, vmp->stat.in_use != 0 || vmp->vm_hash_count != 0);
    if (why != NULL) {
        size_t in_use = vmp->stat.in_use;
        vmem_unlock(vmp, state);
        vmem_report(vmp, call, 0, in_use, VMEM_MISUSE_DESTROY_BUSY, why);
        return;
    }
    /* Imported spans go home one at a time, each with the lock dropped. */
    for (;;) {
        VmemTag *marker = vmp->vm_span_first;
        while (marker != NULL && !(marker->bt_flags & TAG_IMPORTED))
            marker = marker->bt_u.span.next;
        if (marker == NULL || (vmp->free == NULL && !(marker->bt_flags & TAG_XALLOC)))
            break;
        GiveBack give;
        vmem_span_remove(vmp, marker, marker->bt_next, &give);
        vmem_unlock(vmp, state);
        vmem_give_back(vmp, &give);
        state = vmem_lock(vmp);
    }
    VmemTag *tags = vmem_stash_detach(vmp, true);
    for (VmemTag *tag = vmp->vm_seg_first, *next; tag != NULL; tag = next) {
        next = tag->bt_next;
        tag->bt_u.pool_next = tags;
        tags = tag;
    }
    void *tables[2];
    size_t table_bytes[2];
    vmem_hash_fini(vmp, tables, table_bytes);
    vmp->vm_magic = 0;
    vmem_unlock(vmp, state);

    arena_locks_fini(vmp);
    if (vmp->source != NULL) {
        state = vmem_lock(vmp->source);
        vmp->source->vm_importers--;
        vmem_unlock(vmp->source, state);
    }
    vmem_qcache_fini(vmp);
    vmem_pool_return(tags);
    for (int i = 0; i < 2; i++)
        if (tables[i] != NULL)
            vmem_port_page_free(tables[i], vmem_pages_for(table_bytes[i]));
    if (vmp->vm_state & VMEM_STATE_CREATED)
        vmem_storage_free(vmp);
}

/* ---- Queries -------------------------------------------------------------- */

/* What user_stat() reads under the arena lock. */
typedef struct {
    VmemStat stat;
    size_t slab_bytes, slabs_made, slabs_freed;
} ArenaView;

/* Field by field: a struct assignment may become a memcpy call. */
static void arena_view(Vmem *vm, ArenaView *view)
{
    VmemIrqState state = vmem_lock(vm);
    view->stat.in_use = vm->stat.in_use;
    view->stat.import = vm->stat.import;
    view->stat.total = vm->stat.total;
    view->stat.alloc = vm->stat.alloc;
    view->stat.free = vm->stat.free;
    view->slab_bytes = vm->vm_slab_bytes;
    view->slabs_made = vm->vm_slabs_made;
    view->slabs_freed = vm->vm_slabs_freed;
    vmem_unlock(vm, state);
}

/* The stats callers see: cached objects are free, slabs no allocations.
 * The caches' counters count when they settled between two equal views of
 * the arena (vmem_qcache.c, point 6); else, after a few tries, the cached
 * bytes are clamped to the slabs holding them. No lock held. */
static void user_stat(Vmem *vm, VmemStat *out)
{
    ArenaView a, b;
    VmemQcacheCounts cached;
    for (int attempt = 0; attempt < 4; attempt++) {
        arena_view(vm, &a);
        bool settled = vmem_qcache_counts(vm, &cached);
        arena_view(vm, &b);
        if (settled && a.stat.in_use == b.stat.in_use && a.stat.total == b.stat.total &&
            a.stat.import == b.stat.import && a.stat.alloc == b.stat.alloc &&
            a.stat.free == b.stat.free && a.slabs_made == b.slabs_made &&
            a.slabs_freed == b.slabs_freed)
            break;
    }
    size_t bytes = cached.bytes < b.slab_bytes ? cached.bytes : b.slab_bytes;
    out->import = b.stat.import;
    out->total = b.stat.total;
    out->in_use = b.stat.in_use - b.slab_bytes + bytes;
    out->alloc = b.stat.alloc - b.slabs_made + cached.allocs;
    out->free = b.stat.free - b.slabs_freed + cached.frees;
}

int vmem_stat(Vmem *vmp, VmemStat *stat)
{
    if (!vmem_usable(vmp, "vmem_stat", 0, 0))
        return -VMEM_ERR_INVALID;
    if (stat == NULL) {
        vmem_report(vmp, "vmem_stat", 0, 0, VMEM_MISUSE_BAD_ARGUMENT, "stat is NULL");
        return -VMEM_ERR_INVALID;
    }
    user_stat(vmp, stat);
    return 0;
}

size_t vmem_size(Vmem *vmp, int typemask)
{
    if (!vmem_usable(vmp, "vmem_size", 0, 0))
        return 0;
    VmemStat stat;
    user_stat(vmp, &stat);
    return ((typemask & VMEM_ALLOC) ? stat.in_use : 0) +
           ((typemask & VMEM_FREE) ? stat.total - stat.in_use : 0);
}

void vmem_reap(Vmem *vmp)
{
    if (vmem_usable(vmp, "vmem_reap", 0, 0))
        vmem_qcache_drain(vmp, false);
}

bool vmem_contains(Vmem *vmp, void *addr, size_t size)
{
    if (!vmem_usable(vmp, "vmem_contains", (uintptr_t)addr, size))
        return false;
    VmemIrqState state = vmem_lock(vmp);
    bool inside = vmem_span_containing(vmp, (uintptr_t)addr, size != 0 ? size : 1) != NULL;
    vmem_unlock(vmp, state);
    return inside;
}
