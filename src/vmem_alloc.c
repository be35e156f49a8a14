/*
 * vmem_alloc.c - the request path: building and checking a request, the
 * allocation engine (place, carve, refill, import, sleep), and free.
 *
 * Every allocation builds one VmemRequest with make_request() and goes
 * through arena_xalloc(); every free through arena_free(). An operation
 * holds the arena lock from its first look at the arena to its last
 * change, and drops it only around the port's page source, an import or
 * give-back callback, and a misuse report; whatever it saw before is
 * looked up again after. It fills the tag stash before it places
 * anything, so it completes or changes nothing.
 */
#include "vmem_internal.h"

#define MAX_IMPORTS 2

/* ---- Locking, with hash tables and tags kept outside the lock -------------- */

/* What an operation must release after it unlocks. */
typedef struct {
    void *unused_table; /* allocated but not installed */
    size_t unused_table_bytes;
} Leftovers;

static __attribute__((noinline)) void unlock_releasing(Vmem *vm, VmemIrqState state,
                                                       Leftovers *left)
{
    VmemTag *tags = vm->vm_stash_count > VMEM_STASH_HIGH ? vmem_stash_detach(vm, false) : NULL;
    size_t table_bytes;
    void *table = vmem_hash_take_retired(vm, &table_bytes);
    vmem_unlock(vm, state);
    if (tags != NULL)
        vmem_pool_return(tags);
    if (table != NULL)
        vmem_port_page_free(table, vmem_pages_for(table_bytes));
    if (left->unused_table != NULL)
        vmem_port_page_free(left->unused_table, vmem_pages_for(left->unused_table_bytes));
}

/* Inline: almost every operation ends with nothing to hand back. */
static inline void unlock_and_release(Vmem *vm, VmemIrqState state, Leftovers *left)
{
    if (__builtin_expect(vm->vm_stash_count <= VMEM_STASH_HIGH && !vmem_hash_has_retired(vm) &&
                             left->unused_table == NULL,
                         1))
        vmem_unlock(vm, state);
    else
        unlock_releasing(vm, state, left);
}

static __attribute__((noinline)) VmemIrqState lock_installing_table(Vmem *vm, size_t wanted,
                                                                    int vmflag, Leftovers *left)
{
    void *table = vmem_port_page_alloc(vmem_pages_for(wanted),
                                       (vmflag & (VM_SLEEP | VM_NOSLEEP)) | VM_BOOTSTRAP);
    VmemIrqState state = vmem_lock(vm);
    if (table != NULL && !vmem_hash_install(vm, table, wanted)) {
        left->unused_table = table;
        left->unused_table_bytes = wanted;
    }
    return state;
}

/* Locks, first allocating the hash table the arena wants (the page source
 * may not be called locked). Only allocations resize: VM_BOOTSTRAP is the
 * page source at work, and a kernel's page source frees with vmem_free(),
 * so a free that allocated could recurse. */
static inline VmemIrqState lock_with_hash_table(Vmem *vm, int vmflag, Leftovers *left)
{
    left->unused_table = NULL; /* its size is read only with it */
    size_t wanted = 0;
    if (!(vmflag & VM_BOOTSTRAP))
        wanted = __atomic_load_n(&vm->vm_hash_hint, __ATOMIC_RELAXED);
    if (__builtin_expect(wanted == 0, 1))
        return vmem_lock(vm);
    return lock_installing_table(vm, wanted, vmflag, left);
}

/* ---- Import ----------------------------------------------------------------- */

static size_t round_up(size_t size, size_t quantum)
{
    return (size + (quantum - 1)) & ~(quantum - 1);
}

/* One way to ask the source for a span: size units at phase from an align
 * boundary inside [min, max) (max 0: to the top), crossing no multiple of
 * nocross. A plain callback is told the size alone. */
typedef struct {
    size_t size;
    uintptr_t align, phase, nocross, min, max;
} ImportShape;

/* Field by field: a struct assignment may become a memcpy call. */
static void shape_set(ImportShape *to, const ImportShape *from)
{
    to->size = from->size;
    to->align = from->align;
    to->phase = from->phase;
    to->nocross = from->nocross;
    to->min = from->min;
    to->max = from->max;
}

#define MAX_IMPORT_SHAPES 3

/* Appends shape sized `need` rounded to iq (if coarser than u), then to u
 * unless that repeats it; a size that would cross nocross is skipped. */
static size_t add_sizes(ImportShape *out, size_t n, const ImportShape *shape, size_t need,
                        size_t u, size_t iq)
{
    size_t sizes[2], count = 0;
    if (iq > u && need <= SIZE_MAX - (iq - 1))
        sizes[count++] = round_up(need, iq);
    if (need <= SIZE_MAX - (u - 1) && (count == 0 || round_up(need, u) != sizes[0]))
        sizes[count++] = round_up(need, u);
    for (size_t i = 0; i < count; i++) {
        if (shape->nocross != 0 && sizes[i] > shape->nocross)
            continue;
        shape_set(&out[n], shape);
        out[n++].size = sizes[i];
    }
    return n;
}

/* The spans to ask for, in order (theory statement, 6): multiples of the
 * import unit u, each holding a placement of req wherever the source puts
 * it in the shape's range; sizes only for a plain callback. 0: none helps. */
static size_t import_shapes(const VmemRequest *req, size_t u, size_t iq, bool constrained,
                            ImportShape *out)
{
    const uintptr_t below_u = u - 1;
    ImportShape shape;
    shape.size = 0;
    shape.align = u;
    shape.phase = shape.nocross = shape.min = shape.max = 0;
    size_t comfortable = vmem_fit_comfortable_size(req);
    if (!constrained)
        return add_sizes(out, 0, &shape, comfortable, u, iq);
    if (req->min > req->max_last || req->max_last - req->min < req->size - 1)
        return 0;
    uintptr_t last_start = req->max_last - (req->size - 1);
    size_t n = 0;
    if (req->phase % u != 0 || req->nocross % u != 0) {
        /* Finer than the source places: room for a placement wherever the
         * span lies, first inside the range, then in it rounded outward. */
        shape.min = round_up(req->min, u);
        shape.max = (req->max_last + 1) & ~below_u; /* 0: no bound */
        if (shape.min >= req->min &&
            (req->max_last == UINTPTR_MAX || (shape.max != 0 && shape.min < shape.max)))
            n = add_sizes(out, n, &shape, comfortable, u, iq);
        size_t outside = (req->min & below_u) + (below_u - (req->max_last & below_u));
        if (outside != 0 && comfortable <= SIZE_MAX - outside) {
            shape.min = req->min & ~below_u;
            shape.max = (req->max_last | below_u) + 1; /* 0 at the top */
            n = add_sizes(out, n, &shape, comfortable + outside, u, 0);
        }
        return n;
    }
    /* The span that starts at the placement, with its constraints. */
    uintptr_t first = round_up(req->min, u), last = last_start & ~below_u;
    if (first >= req->min && first <= last) {
        shape.align = req->align > u ? req->align : u;
        shape.phase = req->phase;
        shape.nocross = req->nocross;
        shape.min = first;
        size_t at = n;
        n = add_sizes(out, n, &shape, req->size, u, iq);
        /* Ends by its size past the last start (0: past the top). */
        for (size_t i = at; i < n; i++)
            out[i].max = out[i].size - 1 > UINTPTR_MAX - last ? 0 : last + out[i].size;
    }
    /* With an alignment finer than u, the unit holding minaddr may hold the
     * lowest placement: ask for the whole units under it, at that address. */
    if (req->align < u && (req->min & below_u) != 0) {
        uintptr_t at = round_up(req->min, req->align);
        bool crosses = req->nocross != 0 &&
                       ((at ^ (at + (req->size - 1))) & ~(req->nocross - 1)) != 0;
        if (at >= req->min && (at & below_u) != 0 && at <= last_start && !crosses) {
            uintptr_t span_last = (at + (req->size - 1)) | below_u;
            shape.align = u;
            shape.phase = shape.nocross = 0;
            shape.min = req->min & ~below_u;
            shape.size = span_last - shape.min + 1;
            shape.max = span_last + 1; /* 0 at the top */
            if (shape.size != 0)
                shape_set(&out[n++], &shape);
        }
    }
    return n;
}

/* Drops the lock, hands give back to its release function, relocks. */
static void unlock_give_back(Vmem *vm, VmemIrqState *state, const GiveBack *give)
{
    vmem_unlock(vm, *state);
    if (give->release != NULL)
        vmem_give_back(vm, give);
    *state = vmem_lock(vm);
}

/* Imports a span that can satisfy req; false if nothing came. Locked; the
 * lock is dropped around the callback. */
static bool import_span(Vmem *vm, VmemIrqState *state, const VmemRequest *req, int vmflag,
                        uintptr_t *span_base, size_t *span_size)
{
    Vmem *source = vm->source;
    VmemXImport *ximport = vm->vm_ximport;
    uint8_t flags = TAG_IMPORTED;
    if (source == NULL || (vm->alloc == NULL && ximport == NULL))
        return false;
    if (ximport == NULL && vm->alloc == vmem_alloc) {
        ximport = vmem_xalloc_addr;
        flags |= TAG_XALLOC;
    }
    size_t u = source->quantum > vm->quantum ? source->quantum : vm->quantum;
    ImportShape shapes[MAX_IMPORT_SHAPES];
    size_t count = import_shapes(req, u, vm->vm_import_quantum, ximport != NULL, shapes);
    int sleep_flags = vmflag & (VM_SLEEP | VM_NOSLEEP | VM_BOOTSTRAP);
    GiveBack give; /* not an initialiser: that may become a memcpy call */
    give.base = 0;
    give.size = 0;
    give.release = vmem_span_release(vm, flags);
    bool ok = false;

    vmem_unlock(vm, *state);
    for (size_t i = 0; i < count && !ok; i++) {
        /* Only the last shape may wait: an earlier one that cannot be had
         * now must not keep the next from being tried. */
        int flags_now = sleep_flags;
        if (i + 1 < count && (flags_now & VM_SLEEP))
            flags_now = (flags_now & ~VM_SLEEP) | VM_NOSLEEP;
        const ImportShape *sh = &shapes[i];
        if (ximport != NULL) {
            ok = ximport(source, sh->size, sh->align, sh->phase, sh->nocross, sh->min, sh->max,
                         flags_now | (req->top_down ? VM_ENDALLOC : 0), &give.base) == 0;
        } else {
            void *got = vm->alloc(source, sh->size, flags_now);
            ok = got != NULL;
            give.base = (uintptr_t)got;
        }
        give.size = sh->size;
    }
    *state = vmem_lock(vm);
    if (!ok)
        return false;

    /* The world may have changed while unlocked: refill, recheck. */
    uintptr_t last = give.base + (give.size - 1);
    if (last < give.base || give.base % vm->quantum != 0 ||
        vmem_span_overlaps(vm, give.base, last) || !vmem_stash_fill(vm, state, vmflag) ||
        vmem_span_overlaps(vm, give.base, last)) {
        unlock_give_back(vm, state, &give);
        return false;
    }
    vmem_span_add(vm, give.base, give.size, flags);
    *span_base = give.base;
    *span_size = give.size;
    return true;
}

/* ---- Allocation ------------------------------------------------------------- */

/* Gives back the span [base, base + size) if it is still wholly free: an
 * import that turned out not to serve the request. Locked. */
static void return_unused_import(Vmem *vm, VmemIrqState *state, uintptr_t base, size_t size)
{
    VmemTag *marker = vmem_span_find(vm, base, size);
    if (marker == NULL || !(marker->bt_flags & TAG_IMPORTED) || marker->bt_next == NULL ||
        marker->bt_next->bt_type != SEG_FREE || marker->bt_next->bt_size != marker->bt_size ||
        vmem_span_release(vm, marker->bt_flags) == NULL)
        return;
    GiveBack give;
    vmem_span_remove(vm, marker, marker->bt_next, &give);
    unlock_give_back(vm, state, &give);
}

#if VMEM_PORT_CAN_SLEEP
/* Waits for a free or an added span; false when the port cannot sleep. */
static bool wait_for_space(Vmem *vm)
{
    vm->vm_waiters++;
#ifdef VMEM_DEBUG
    vm->vm_lock_held = 0;
#endif
    vmem_port_cond_wait(&vm->vm_cv, &vm->vm_lock);
#ifdef VMEM_DEBUG
    vm->vm_lock_held = 1;
#endif
    vm->vm_waiters--;
    return true;
}

static void wake_waiters(Vmem *vm)
{
    if (vm->vm_waiters != 0)
        vmem_port_cond_broadcast(&vm->vm_cv);
}
#else
static bool wait_for_space(Vmem *vm) { (void)vm; return false; }
static void wake_waiters(Vmem *vm) { (void)vm; }
#endif

/* Carves the placement from seg and moves the next-fit rotor past it. */
HOT_INLINE void take_placement(Vmem *vm, const VmemRequest *req, int vmflag, VmemTag *seg,
                               uintptr_t addr, uint8_t tag_flags)
{
#define LAST (addr + (req->size - 1))
    VMEM_ASSERT(seg->bt_type == SEG_FREE && addr >= seg->bt_base && LAST >= addr &&
                LAST <= tag_last(seg));
    VMEM_ASSERT(addr >= req->min && LAST <= req->max_last);
    VMEM_ASSERT(((addr - req->phase) & (req->align - 1)) == 0);
    VMEM_ASSERT(req->nocross == 0 || ((addr ^ LAST) & ~(req->nocross - 1)) == 0);
#undef LAST
    VmemTag *alloc = vmem_seg_carve(vm, seg, addr, req->size, tag_flags);
    if (vmflag & VM_NEXTFIT) {
        vm->vm_rotor = addr + req->size; /* 0 after the top: wraps */
        vm->vm_rotor_tag = vm->vm_rotor != 0 ? alloc : NULL;
    }
}

/* arena_xalloc() past its first attempt: refilling the stash, importing,
 * sleeping, and trying again after each. Locked on entry; unlocks. */
static __attribute__((noinline)) int arena_xalloc_slow(Vmem *vm, const char *call,
                                                       const VmemRequest *req, int vmflag,
                                                       uint8_t tag_flags, VmemIrqState state,
                                                       Leftovers *left, uintptr_t *addrp)
{
    int result = -VMEM_ERR_NO_MEM;
    int imports = 0;
    bool imported_last = false, cannot_sleep = false;
    uintptr_t span_base = 0;
    size_t span_size = 0;

    for (;;) {
        if (vm->vm_stash_count < VMEM_TAGS_PER_OP && !vmem_stash_fill(vm, &state, vmflag))
            break;
        uintptr_t addr;
        VmemTag *seg = vmem_place(vm, req, vmflag, &addr);
        if (seg != NULL) {
            take_placement(vm, req, vmflag, seg, addr, tag_flags);
            *addrp = addr;
            result = 0;
            break;
        }
        if (imported_last) {
            return_unused_import(vm, &state, span_base, span_size);
            imported_last = false;
        }
        if (imports < MAX_IMPORTS && import_span(vm, &state, req, vmflag, &span_base, &span_size)) {
            imports++;
            imported_last = true;
            continue;
        }
        if (!(vmflag & VM_SLEEP))
            break;
        if (!wait_for_space(vm)) {
            cannot_sleep = true;
            break;
        }
        imports = 0;
    }
    /* An unused import goes back now, or it would stay imported and empty
     * (only frees give spans back): while the import ran unlocked, another
     * thread may have freed what the request took instead. */
    if (imported_last && (result != 0 || *addrp < span_base || *addrp - span_base >= span_size))
        return_unused_import(vm, &state, span_base, span_size);
    unlock_and_release(vm, state, left);
    if (cannot_sleep)
        vmem_report(vm, call, req->min, req->size, VMEM_MISUSE_CANNOT_SLEEP,
                    "VM_SLEEP request must wait, but the port cannot sleep");
    return result;
}

/* The engine every request goes through; the first attempt is inline. */
static inline int arena_xalloc(Vmem *vm, const char *call, const VmemRequest *req, int vmflag,
                               uint8_t tag_flags, uintptr_t *addrp)
{
    Leftovers left;
    VmemIrqState state = lock_with_hash_table(vm, vmflag, &left);
    uintptr_t addr;
    VmemTag *seg;
    if (__builtin_expect(vm->vm_stash_count >= VMEM_TAGS_PER_OP, 1) &&
        (seg = vmem_place(vm, req, vmflag, &addr)) != NULL) {
        take_placement(vm, req, vmflag, seg, addr, tag_flags);
        unlock_and_release(vm, state, &left);
        *addrp = addr;
        return 0;
    }
    return arena_xalloc_slow(vm, call, req, vmflag, tag_flags, state, &left, addrp);
}

/* Before failing or sleeping, drain the quantum caches: they may hold it. */
static __attribute__((noinline)) int alloc_draining(Vmem *vm, const char *call,
                                                    const VmemRequest *req, int vmflag,
                                                    uint8_t tag_flags, uintptr_t *addrp)
{
    if (arena_xalloc(vm, call, req, vmflag & ~VM_SLEEP, tag_flags, addrp) == 0)
        return 0;
    if (!(vmflag & VM_SLEEP)) {
        vmem_qcache_drain(vm, false);
        return arena_xalloc(vm, call, req, vmflag, tag_flags, addrp);
    }
    /* Counted before draining, so that every free into the caches from
     * now on drains too, and the arena frees that follow wake this
     * request (vmem_qcache.c, point 4). */
    __atomic_add_fetch(&vm->vm_qcache_waiters, 1, __ATOMIC_SEQ_CST);
    vmem_qcache_drain(vm, false);
    int result = arena_xalloc(vm, call, req, vmflag, tag_flags, addrp);
    __atomic_sub_fetch(&vm->vm_qcache_waiters, 1, __ATOMIC_SEQ_CST);
    return result;
}

/* Inline: an arena without caches goes straight to arena_xalloc. */
static inline int alloc_or_drain(Vmem *vm, const char *call, const VmemRequest *req, int vmflag,
                                 uint8_t tag_flags, uintptr_t *addrp)
{
    if (__atomic_load_n(&vm->vm_qcache, __ATOMIC_ACQUIRE) == NULL)
        return arena_xalloc(vm, call, req, vmflag, tag_flags, addrp);
    return alloc_draining(vm, call, req, vmflag, tag_flags, addrp);
}

/* Validates and builds a request; reports misuse and returns false. */
HOT_INLINE bool make_request(const Vmem *vm, const char *call, size_t size, size_t align,
                             size_t phase, size_t nocross, uintptr_t min, uintptr_t max,
                             bool max_given, int vmflag, VmemRequest *req)
{
    const size_t q = vm->quantum;
    const size_t under_q = q - 1; /* q is a power of two: x % q == (x & under_q) */
    const int policy = vmflag & POLICY_FLAGS;
    VmemMisuseKind kind = VMEM_MISUSE_BAD_FLAGS;
    const char *why = NULL;

    if (vmflag & ~KNOWN_FLAGS)
        why = "unknown flag bits";
    else if ((vmflag & VM_SLEEP) && (vmflag & VM_NOSLEEP))
        why = "VM_SLEEP and VM_NOSLEEP together";
    else if (policy & (policy - 1))
        why = "more than one allocation policy";
    else if ((vmflag & VM_ENDALLOC) && (policy & (VM_NEXTFIT | VM_INSTANTFIT)))
        why = "VM_ENDALLOC with VM_NEXTFIT or VM_INSTANTFIT";
    else if (size == 0) {
        kind = VMEM_MISUSE_BAD_ARGUMENT;
        why = "size is zero";
    } else if (size > SIZE_MAX - (q - 1)) {
        kind = VMEM_MISUSE_SIZE_OVERFLOW;
        why = "size overflows when rounded up to the quantum";
    } else {
        kind = VMEM_MISUSE_BAD_CONSTRAINT;
        if (align != 0 && (!is_pow2(align) || (align & under_q) != 0))
            why = "align is not a power of two multiple of the quantum";
        else if ((phase & under_q) != 0 || phase >= (align != 0 ? align : q))
            why = "phase is not a multiple of the quantum below align";
        else if (nocross != 0 && (!is_pow2(nocross) || (nocross & under_q) != 0))
            why = "nocross is not a power of two multiple of the quantum";
        else if (nocross != 0 && nocross < round_up(size, q))
            why = "nocross is smaller than size";
        else if ((min & under_q) != 0 || (max_given && (max & under_q) != 0))
            why = "minaddr or maxaddr is not a multiple of the quantum";
        else if (max_given && min >= max)
            why = "[minaddr, maxaddr) is empty or inverted";
    }
    if (why != NULL) {
        vmem_report(vm, call, min, size, kind, why);
        return false;
    }
    req->size = round_up(size, q);
    req->quantum = q;
    req->align = align != 0 ? align : q;
    req->phase = phase;
    req->nocross = nocross;
    req->min = min;
    req->max_last = max_given ? max - 1 : UINTPTR_MAX;
    req->top_down = (vmflag & VM_ENDALLOC) != 0;
    req->plain = phase == 0 && nocross == 0 && !max_given && !req->top_down;
    return true;
}

/* A slab for the quantum caches: aligned to its size, never at 0 (object 0
 * would mean NULL), and never waited for (the caller can be served
 * without one). Its arguments are valid, so the request is never misuse. */
int vmem_arena_alloc_slab(Vmem *vm, size_t slab_size, int vmflag, uintptr_t *addrp)
{
    VmemRequest req;
    int flags = (vmflag & VM_BOOTSTRAP) | VM_NOSLEEP;
    if (!make_request(vm, "vmem_alloc", slab_size, slab_size, 0, 0, 0, 0, false, flags, &req))
        return -VMEM_ERR_INVALID;
    req.min = 1;
    return arena_xalloc(vm, "vmem_alloc", &req, flags, TAG_SLAB, addrp);
}

int vmem_xalloc_addr(Vmem *vmp, size_t size, size_t align, size_t phase, size_t nocross,
                     uintptr_t minaddr, uintptr_t maxaddr, int vmflag, uintptr_t *addrp)
{
    static const char call[] = "vmem_xalloc_addr";
    VmemRequest req;
    if (!vmem_usable(vmp, call, minaddr, size))
        return -VMEM_ERR_INVALID;
    if (addrp == NULL) {
        vmem_report(vmp, call, minaddr, size, VMEM_MISUSE_BAD_ARGUMENT, "addrp is NULL");
        return -VMEM_ERR_INVALID;
    }
    if (!make_request(vmp, call, size, align, phase, nocross, minaddr, maxaddr, maxaddr != 0,
                      vmflag, &req))
        return -VMEM_ERR_INVALID;
    return alloc_or_drain(vmp, call, &req, vmflag, TAG_XALLOC, addrp);
}

void *vmem_xalloc(Vmem *vmp, size_t size, size_t align, size_t phase, size_t nocross,
                  void *minaddr, void *maxaddr, int vmflag)
{
    static const char call[] = "vmem_xalloc";
    VmemRequest req;
    uintptr_t addr;
    if (!vmem_usable(vmp, call, (uintptr_t)minaddr, size) ||
        !make_request(vmp, call, size, align, phase, nocross, (uintptr_t)minaddr,
                      (uintptr_t)maxaddr, maxaddr != NULL, vmflag, &req))
        return NULL;
    if (req.min == 0)
        req.min = 1; /* NULL means failure, so 0 is never handed out here */
    if (req.min > req.max_last ||
        alloc_or_drain(vmp, call, &req, vmflag, TAG_XALLOC, &addr) != 0)
        return NULL;
    return (void *)addr;
}

/* Small requests go through the quantum caches, except under the policies
 * that promise a placement only the arena can keep (next-fit, first-fit,
 * VM_ENDALLOC) and VM_BOOTSTRAP (the caches' own memory comes from the
 * page source). Only a bound: the caches know the exact sizes they serve. */
static inline bool uses_qcache(const Vmem *vm, size_t size, int vmflag)
{
    return size <= vm->qcache_max &&
           !(vmflag & (VM_NEXTFIT | VM_FIRSTFIT | VM_ENDALLOC | VM_BOOTSTRAP));
}

void *vmem_alloc(Vmem *vmp, size_t size, int vmflag)
{
    static const char call[] = "vmem_alloc";
    VmemRequest req;
    uintptr_t addr;
    if (!vmem_usable(vmp, call, 0, size) ||
        !make_request(vmp, call, size, 0, 0, 0, 0, 0, false, vmflag, &req))
        return NULL;
    if (uses_qcache(vmp, req.size, vmflag)) {
        addr = vmem_qcache_alloc(vmp, req.size, vmflag);
        if (addr != 0)
            return (void *)addr;
    }
    /* Not served by the caches: an ordinary segment (vmem_free tells). */
    req.min = 1; /* NULL means failure, so 0 is never handed out here */
    if (alloc_or_drain(vmp, call, &req, vmflag, 0, &addr) != 0)
        return NULL;
    return (void *)addr;
}

int vmem_alloc_exact(Vmem *vmp, uintptr_t addr, size_t size, int vmflag)
{
    static const char call[] = "vmem_alloc_exact";
    VmemRequest req;
    uintptr_t got;
    if (!vmem_usable(vmp, call, addr, size) ||
        !make_request(vmp, call, size, 0, 0, 0, addr, 0, false, vmflag, &req))
        return -VMEM_ERR_INVALID;
    if (req.size - 1 > UINTPTR_MAX - addr) {
        vmem_report(vmp, call, addr, size, VMEM_MISUSE_SIZE_OVERFLOW,
                    "the range wraps past the top of the address space");
        return -VMEM_ERR_INVALID;
    }
    req.max_last = addr + (req.size - 1);
    req.plain = false;
    return alloc_or_drain(vmp, call, &req, (vmflag & ~POLICY_FLAGS) | VM_FIRSTFIT, TAG_XALLOC,
                          &got);
}

/* ---- Free ------------------------------------------------------------------- */

/* Out of line, so that the report's frame is not every free's. */
static __attribute__((noinline, cold)) void report_free_size(Vmem *vm, const char *call,
                                                             uintptr_t addr, size_t size)
{
    vmem_report(vm, call, addr, size, VMEM_MISUSE_FREE_WRONG_SIZE,
                size == 0 ? "size is zero" : "size overflows when rounded to the quantum");
}

static inline bool valid_free(Vmem *vm, const char *call, uintptr_t addr, size_t size)
{
    if (!vmem_usable(vm, call, addr, size))
        return false;
    if (__builtin_expect(size == 0 || size > SIZE_MAX - (vm->quantum - 1), 0)) {
        report_free_size(vm, call, addr, size);
        return false;
    }
    return true;
}

/* Frees an arena segment; the arguments are valid. Only the caches
 * themselves (slab) may free a slab. */
static void arena_free(Vmem *vm, const char *call, uintptr_t addr, size_t size, bool slab)
{
    static const char wrong_call[] =
        "the address came from a quantum cache (vmem_alloc): free it with vmem_free";
    size_t rounded = round_up(size, vm->quantum);
    Leftovers left;
    VmemIrqState state = lock_with_hash_table(vm, VM_NOSLEEP | VM_BOOTSTRAP, &left);
    VmemHashWhere where;
    VmemTag *tag = vmem_hash_find(vm, addr, &where);
    const char *why = NULL;
    VmemMisuseKind kind = VMEM_MISUSE_FREE_WRONG_SIZE;
    if (tag == NULL) {
        why = vmem_bad_free_problem(vm, addr, &kind);
    } else if (((tag->bt_flags & TAG_SLAB) != 0) != slab) {
        kind = VMEM_MISUSE_FREE_WRONG_CALL;
        why = wrong_call;
    } else if (tag->bt_size != rounded) {
        why = "size differs from the size allocated";
    }
    if (why != NULL) {
        unlock_and_release(vm, state, &left);
        if (kind == VMEM_MISUSE_FREE_INSIDE && vmem_qcache_owns(vm, addr)) {
            kind = VMEM_MISUSE_FREE_WRONG_CALL;
            why = wrong_call;
        }
        vmem_report(vm, call, addr, size, kind, why);
        return;
    }

    /* Nothing has changed since the lookup: remove without probing again. */
    vmem_hash_remove_at(vm, &where, tag);
    vm->stat.in_use -= tag->bt_size;
    vm->stat.free++;
    if (slab) {
        vm->vm_slab_bytes -= tag->bt_size;
        vm->vm_slabs_freed++;
    }
    GiveBack give;
    bool release = vmem_seg_free(vm, tag, &give);
    wake_waiters(vm);
    unlock_and_release(vm, state, &left);
    if (release)
        vmem_give_back(vm, &give);
}

void vmem_arena_free_slab(Vmem *vm, uintptr_t base, size_t slab_size)
{
    arena_free(vm, "vmem_free", base, slab_size, true);
}

void vmem_arena_free_segment(Vmem *vm, const char *call, uintptr_t addr, size_t size)
{
    arena_free(vm, call, addr, size, false);
}

void vmem_free(Vmem *vmp, void *addr, size_t size)
{
    static const char call[] = "vmem_free";
    if (!valid_free(vmp, call, (uintptr_t)addr, size))
        return;
    /* Either way a tail call: this function needs no frame. */
    if (uses_qcache(vmp, size, 0))
        vmem_qcache_free(vmp, call, (uintptr_t)addr, size);
    else
        arena_free(vmp, call, (uintptr_t)addr, size, false);
}

/* Constrained allocations bypass the caches, so their frees do too. */
void vmem_xfree(Vmem *vmp, void *addr, size_t size)
{
    static const char call[] = "vmem_xfree";
    if (valid_free(vmp, call, (uintptr_t)addr, size))
        arena_free(vmp, call, (uintptr_t)addr, size, false);
}

/* ---- Adding spans ------------------------------------------------------------- */

int vmem_arena_add(Vmem *vm, const char *call, uintptr_t base, size_t size, int vmflag)
{
    VmemMisuseKind kind;
    const char *why = vmem_span_problem(base, size, vm->quantum, vmflag, &kind);
    if (why != NULL) {
        vmem_report(vm, call, base, size, kind, why);
        return -VMEM_ERR_INVALID;
    }
    /* Overlap is checked first, so that the misuse takes no tag or table
     * (and is reported as such when no tag can be had); and again once the
     * stash is full, as the fill may drop the lock. */
    uintptr_t last = base + (size - 1);
    VmemIrqState state = vmem_lock(vm);
    bool overlaps = vmem_span_overlaps(vm, base, last);
    vmem_unlock(vm, state);
    int result = 0;
    if (!overlaps) {
        Leftovers left;
        state = lock_with_hash_table(vm, vmflag, &left);
        if (!vmem_stash_fill(vm, &state, vmflag)) {
            result = -VMEM_ERR_NO_MEM;
        } else if (vmem_span_overlaps(vm, base, last)) {
            overlaps = true;
        } else {
            vmem_span_add(vm, base, size, 0);
            wake_waiters(vm);
        }
        unlock_and_release(vm, state, &left);
    }
    if (overlaps) {
        vmem_report(vm, call, base, size, VMEM_MISUSE_SPAN_OVERLAP,
                    "the span overlaps a span already in the arena");
        return -VMEM_ERR_INVALID;
    }
    return result;
}

int vmem_add_range(Vmem *vmp, uintptr_t base, size_t size, int vmflag)
{
    if (!vmem_usable(vmp, "vmem_add_range", base, size))
        return -VMEM_ERR_INVALID;
    return vmem_arena_add(vmp, "vmem_add_range", base, size, vmflag);
}

void *vmem_add(Vmem *vmp, void *addr, size_t size, int vmflag)
{
    if (!vmem_usable(vmp, "vmem_add", (uintptr_t)addr, size) ||
        vmem_arena_add(vmp, "vmem_add", (uintptr_t)addr, size, vmflag) != 0)
        return NULL;
    return addr;
}
