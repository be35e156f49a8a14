/*
 * vmem_arena.c - arenas: spans, segments, allocation, free, import.
 *
 * ---------------------------------------------------------------------------
 * Theory statement
 * ---------------------------------------------------------------------------
 * 1. Arenas, spans and segments. An arena manages integers in units of its
 *    quantum (a power of two). Ranges enter as spans, by vmem_add() or by
 *    import from a source arena. Each span is cut into segments, allocated
 *    or free, which tile it exactly. Every span and every segment is
 *    described by an external boundary tag (VmemTag): the resource need not
 *    be memory, so nothing is ever written inside it.
 *
 * 2. The segment list. All tags of an arena form one doubly linked list in
 *    address order; each span's marker comes right before the segments that
 *    tile it. A segment's neighbours in this list are its neighbours in the
 *    address space, which is what makes coalescing O(1): a freed segment
 *    merges with a free predecessor and a free successor, never across a
 *    span marker. Invariant: no two free segments are adjacent in the list.
 *
 * 3. Free segments sit on size-class freelists, and one bit per class in
 *    vm_freemap says whether its list is empty - from the first request
 *    that reads them (instant-fit, the default policy) on: an arena that
 *    only ever asks for next-fit, first-fit or best-fit never keeps them,
 *    so that its frees and splits touch no freelist neighbours. The
 *    classes split each power-of-two range of sizes [2^n, 2^(n+1)) in
 *    VMEM_FREELIST_SPLIT equal parts (size_class() in vmem_internal.h):
 *    the paper's power-of-two lists, each cut in four. Instant-fit first
 *    looks at a few (INSTANT_FIT_PEEK) members of the request's own class
 *    for one large enough, and otherwise takes the head of the first
 *    non-empty class whose every member is large enough: O(1) either way
 *    (a bounded peek and a find-first-set over a few bitmap words). The
 *    finer classes are what keeps instant-fit close to best-fit: a
 *    segment at most a quarter larger than the class boundary above the
 *    request, instead of up to twice its size, so large segments stay
 *    whole for large requests (what it buys: markedly less fragmentation
 *    than plain power-of-two lists, docs/performance.md). Only when neither finds anything does it search the one
 *    class that may hold a fit.
 *    Next-fit walks the segment list from its rotor, a few segments at
 *    most (next_fit). An arena that needs more - best-fit, first-fit,
 *    VM_ENDALLOC, a constrained request the freelists cannot serve, or a
 *    next-fit walk that went too far - also indexes its free segments in
 *    two AVL trees (vmem_tree.c):
 *    - by address, summarised with the largest size in each subtree:
 *      first-fit, next-fit, VM_ENDALLOC and constrained requests;
 *    - by (size, address): best-fit is its lower bound.
 *    Each tree is built on first need (one walk of the segments; at once
 *    if vmem_init names a policy that needs it) and kept current from then
 *    on; an arena that never asks for best-fit never keeps the size tree,
 *    and one that only asks for best-fit keeps only the size tree unless a
 *    constrained request falls back to address order.
 *    Until then instant-fit allocation and every free are O(1): they touch
 *    a freelist, the hash and the segment list, nothing else.
 *
 * 4. Constrained requests (align, phase, nocross, minaddr, maxaddr) visit
 *    candidates in their policy's order (address, or size for best-fit)
 *    and take the first in which the request fits: the exact first-fit,
 *    last-fit or best-fit answer. A large-enough segment can still fail to
 *    fit (misaligned, clipped by the range), so after SEARCH_BUDGET such
 *    failures the search settles for the first "comfortable" segment, one
 *    so large it fits wherever it lies (size + align - quantum, plus a
 *    nocross window): one more logarithmic search. Only if none exists does
 *    it examine every candidate, so vmem_xalloc() is complete - it fails
 *    only when no placement exists - and is never linear while a
 *    comfortable fit exists.
 *
 * 5. Allocated segments live in a hash keyed by address (vmem_hash.c), so
 *    vmem_free() finds them in O(1), checks the size, and rejects anything
 *    else as misuse. The hash resizes incrementally.
 *
 * 6. Import. An arena with a source imports a span when nothing fits, with
 *    its lock dropped around the callback, in units u of the coarser of
 *    its own and the source's quanta. A callback that can be told the
 *    constraints - vmem_xalloc_addr() itself when afunc is vmem_alloc, or
 *    one given with vmem_set_ximport() - is asked for spans that can hold
 *    the placement (import_shapes): the span that starts at it, with the
 *    range rounded so that exactly the starts the request allows remain;
 *    for an alignment finer than u, the units under the lowest placement
 *    in the unit that holds minaddr; for a phase or nocross finer than u,
 *    a span that fits wherever it lies, in the range rounded inward, then
 *    outward with room for what the end units hold outside it. Rounding
 *    only inward would lose a range that ends inside the source's only
 *    free unit. A plain callback is asked size + align - quantum
 *    (+ nocross). Sizes are rounded to u, so a byte-granular heap imports
 *    whole pages, and first to the import quantum when one is set. At
 *    most MAX_IMPORTS spans per call: import never loops. A span goes back
 *    to the source, through the give-back function, as soon as it is
 *    wholly free, again with the lock dropped; so does one that an
 *    allocation imported and then did not use (it holds no placement, or
 *    another thread freed room while the import ran), before that
 *    allocation returns.
 *
 * 7. Boundary tags. Before searching, an operation fills the arena's stash
 *    to VMEM_TAGS_PER_OP tags (vmem_tags.c explains the worst case), so it
 *    cannot run out half-way: an operation either completes or changes
 *    nothing.
 *
 * 8. Locking. Each arena has one lock, embedded in it. It is never held
 *    while calling the port's page source, an import or give-back callback,
 *    or the misuse hook, and never together with another arena's lock, the
 *    tag pool lock or a quantum-cache lock (those nest cache -> cache
 *    state, behind per-CPU slots, and drop all of them before calling the
 *    arena). Anything seen before the lock was dropped is looked up again
 *    after it is retaken. The one value read without it, the hash-table
 *    size hint, is an atomic, and is only a hint.
 *
 * 9. Misuse. Every argument is validated before anything changes, and
 *    every free is checked against the hash. A problem is reported once,
 *    through vmem_port_misuse() with the lock released, and the call then
 *    fails with the arena unchanged - in everything a later call can see:
 *    finding out what kind of misuse it was builds no index and takes no
 *    tag, since an index built then would change later placements. A
 *    source counts the arenas importing from it (vm_importers, under its
 *    lock) and may not be destroyed before them.
 *
 * 10. Address 0. The void * calls use NULL for failure, so they never place
 *    an allocation at 0 (their lowest acceptable address is 1, which
 *    alignment turns into the first quantum). The calls that return a
 *    status (vmem_xalloc_addr, vmem_alloc_exact, vmem_add_range) use 0 like
 *    any other address.
 *
 * 11. Quick paths. The commonest requests - vmem_alloc's instant-fit and
 *    next-fit, vmem_xalloc's instant-fit with an alignment alone - first
 *    try a path that makes exactly the choice the general one would, from
 *    the same freelist heads or rotor walk, and declines, leaving the
 *    arena as it found it, whenever anything else is needed (a refill, a
 *    new hash table, a search, an import, address 0). They exist because
 *    the general path's request building and policy dispatch cost as much
 *    as the work; twin-arena tests hold each to the general path's answer.
 */
#include "vmem_internal.h"

#define MAX_IMPORTS 2
/* Members of the request's own freelist instant-fit looks at before it
 * takes a segment from a larger list (a constant: O(1) stays O(1)). */
#define INSTANT_FIT_PEEK 4
/* Free segments next-fit walks past before it asks the index. */
#define NEXT_FIT_WALK 32
/* Large-enough segments a constrained search tries in policy order before
 * it settles for the first comfortable one (theory statement, 4). */
#define SEARCH_BUDGET 64

#define POLICY_FLAGS (VM_BESTFIT | VM_INSTANTFIT | VM_NEXTFIT | VM_FIRSTFIT)
#define KNOWN_FLAGS (POLICY_FLAGS | VM_SLEEP | VM_NOSLEEP | VM_BOOTSTRAP | VM_ENDALLOC)

/* For the few helpers every allocation and free runs: the compiler keeps
 * them out of line for their several callers, and on these paths the
 * call's register saves cost as much as the helper's own work. */
#define HOT_INLINE static inline __attribute__((always_inline))

/* ---- Layout agreement ----------------------------------------------------- */

/* The one symbol of the vmem_abi_ family that vmem.h makes every caller
 * refer to: its name spells the layout options this library was built
 * with, so a caller built with others fails to link. */
const char VMEM_ABI_SYMBOL = 1;

/* ---- Reports ------------------------------------------------------------- */

const char *vmem_misuse_name(VmemMisuseKind kind)
{
    switch (kind) {
    case VMEM_MISUSE_NOT_ARENA: return "not an arena";
    case VMEM_MISUSE_NOT_BOOTSTRAPPED: return "not bootstrapped";
    case VMEM_MISUSE_BAD_ARGUMENT: return "bad argument";
    case VMEM_MISUSE_BAD_FLAGS: return "bad flags";
    case VMEM_MISUSE_BAD_CONSTRAINT: return "bad constraint";
    case VMEM_MISUSE_SIZE_OVERFLOW: return "size overflow";
    case VMEM_MISUSE_SPAN_OVERLAP: return "overlapping span";
    case VMEM_MISUSE_SPAN_WRAP: return "wrapping span";
    case VMEM_MISUSE_FREE_UNKNOWN: return "free of unknown address";
    case VMEM_MISUSE_DOUBLE_FREE: return "double free";
    case VMEM_MISUSE_FREE_INSIDE: return "free inside a segment";
    case VMEM_MISUSE_FREE_WRONG_SIZE: return "free with wrong size";
    case VMEM_MISUSE_FREE_WRONG_CALL: return "free through the wrong call";
    case VMEM_MISUSE_DESTROY_BUSY: return "destroy of a busy arena";
    case VMEM_MISUSE_CANNOT_SLEEP: return "cannot sleep";
    }
    return "unknown misuse";
}

void vmem_report(const Vmem *vm, const char *call, uintptr_t addr, size_t size,
                 VmemMisuseKind kind, const char *reason)
{
    VmemMisuse report;
    report.arena = vm != NULL && vm->vm_magic == VMEM_MAGIC ? vm->name : "?";
    report.call = call;
    report.addr = addr;
    report.size = size;
    report.kind = kind;
    report.reason = reason;
    vmem_port_misuse(&report);
}

/* Copies at most n - 1 characters and terminates (no libc strncpy). */
static void copy_name(char *dst, const char *src, size_t n)
{
    size_t i = 0;
    if (src != NULL)
        for (; i + 1 < n && src[i] != '\0'; i++)
            dst[i] = src[i];
    dst[i] = '\0';
}

/* Reports why vm may not be used, for usable(). */
static __attribute__((noinline, cold)) bool report_unusable(const Vmem *vm, const char *call,
                                                            uintptr_t addr, size_t size)
{
    if (!vmem_library_ready()) {
        vmem_report(NULL, call, addr, size, VMEM_MISUSE_NOT_BOOTSTRAPPED,
                    "vmem_bootstrap() has not been called");
        return false;
    }
    if (vm == NULL) {
        vmem_report(NULL, call, addr, size, VMEM_MISUSE_BAD_ARGUMENT, "the arena is NULL");
        return false;
    }
    if (vm->vm_magic != VMEM_MAGIC) {
        vmem_report(NULL, call, addr, size, VMEM_MISUSE_NOT_ARENA,
                    "the arena is not initialised or was destroyed");
        return false;
    }
    return true;
}

/* Is vm an arena that may be used? Reports if not. No lock held. */
static inline bool usable(const Vmem *vm, const char *call, uintptr_t addr, size_t size)
{
    /* vmem_init() refuses to run before vmem_bootstrap(), so the magic
     * alone proves the library ready: every call pays one test. */
    if (__builtin_expect(vm != NULL && vm->vm_magic == VMEM_MAGIC, 1))
        return true;
    return report_unusable(vm, call, addr, size);
}

bool vmem_arena_usable(const Vmem *vm, const char *call, uintptr_t addr, size_t size)
{
    return usable(vm, call, addr, size);
}

HOT_INLINE bool valid_flags(const Vmem *vm, const char *call, int vmflag, uintptr_t addr, size_t size)
{
    const char *why = NULL;
    int policy = vmflag & POLICY_FLAGS;
    if (vmflag & ~KNOWN_FLAGS)
        why = "unknown flag bits";
    else if ((vmflag & VM_SLEEP) && (vmflag & VM_NOSLEEP))
        why = "VM_SLEEP and VM_NOSLEEP together";
    else if (policy & (policy - 1))
        why = "more than one allocation policy";
    else if ((vmflag & VM_ENDALLOC) && (policy & (VM_NEXTFIT | VM_INSTANTFIT)))
        why = "VM_ENDALLOC with VM_NEXTFIT or VM_INSTANTFIT";
    if (why == NULL)
        return true;
    vmem_report(vm, call, addr, size, VMEM_MISUSE_BAD_FLAGS, why);
    return false;
}

/* ---- Segment list and span list ------------------------------------------ */

static inline bool is_free(const VmemTag *tag) { return tag != NULL && tag->type == SEG_FREE; }

/* Links tag in after prev (NULL: first). */
static void seg_insert_after(Vmem *vm, VmemTag *prev, VmemTag *tag)
{
    VmemTag *next = prev != NULL ? prev->seg_next : vm->vm_seg_first;
    tag->seg_prev = prev;
    tag->seg_next = next;
    if (prev != NULL)
        prev->seg_next = tag;
    else
        vm->vm_seg_first = tag;
    if (next != NULL)
        next->seg_prev = tag;
    else
        vm->vm_seg_last = tag;
}

HOT_INLINE void seg_unlink(Vmem *vm, VmemTag *tag)
{
    if (tag->seg_prev != NULL)
        tag->seg_prev->seg_next = tag->seg_next;
    else
        vm->vm_seg_first = tag->seg_next;
    if (tag->seg_next != NULL)
        tag->seg_next->seg_prev = tag->seg_prev;
    else
        vm->vm_seg_last = tag->seg_prev;
}

/* The span marker of the last span that starts below base, or NULL. */
static VmemTag *span_before(const Vmem *vm, uintptr_t base)
{
    VmemTag *prev = NULL;
    for (VmemTag *span = vm->vm_span_first; span != NULL && span->base < base;
         span = span->u.span.next)
        prev = span;
    return prev;
}

/* The span containing [addr, addr + size), or NULL. */
static VmemTag *span_containing(const Vmem *vm, uintptr_t addr, size_t size)
{
    uintptr_t last = addr + (size - 1);
    if (last < addr)
        return NULL;
    for (VmemTag *span = vm->vm_span_first; span != NULL; span = span->u.span.next)
        if (addr >= span->base && last <= tag_last(span))
            return span;
    return NULL;
}

static bool span_overlaps(const Vmem *vm, uintptr_t base, uintptr_t last)
{
    for (VmemTag *span = vm->vm_span_first; span != NULL; span = span->u.span.next)
        if (base <= tag_last(span) && span->base <= last)
            return true;
    return false;
}

static VmemTag *span_find_exact(const Vmem *vm, uintptr_t base, size_t size)
{
    for (VmemTag *span = vm->vm_span_first; span != NULL; span = span->u.span.next)
        if (span->base == base && span->size == size)
            return span;
    return NULL;
}

static void span_list_remove(Vmem *vm, VmemTag *marker)
{
    if (marker->u.span.prev != NULL)
        marker->u.span.prev->u.span.next = marker->u.span.next;
    else
        vm->vm_span_first = marker->u.span.next;
    if (marker->u.span.next != NULL)
        marker->u.span.next->u.span.prev = marker->u.span.prev;
}

/* ---- Free-segment indexes --------------------------------------------------- */

static void freemap_set(Vmem *vm, unsigned c)
{
    vm->vm_freemap[c / FREEMAP_BITS] |= (size_t)1 << (c % FREEMAP_BITS);
}

static void freemap_clear(Vmem *vm, unsigned c)
{
    vm->vm_freemap[c / FREEMAP_BITS] &= ~((size_t)1 << (c % FREEMAP_BITS));
}

/* The first non-empty class at c or above, or VMEM_FREELISTS: a
 * find-first-set over at most VMEM_FREEMAP_WORDS words. */
static unsigned first_nonempty_class(const Vmem *vm, unsigned c)
{
    if (c >= VMEM_FREELISTS)
        return VMEM_FREELISTS;
    unsigned word = c / FREEMAP_BITS;
    size_t bits = vm->vm_freemap[word] & ~(((size_t)1 << (c % FREEMAP_BITS)) - 1);
    while (bits == 0) {
        if (++word == VMEM_FREEMAP_WORDS)
            return VMEM_FREELISTS;
        bits = vm->vm_freemap[word];
    }
    return word * FREEMAP_BITS + (unsigned)__builtin_ctzl((unsigned long)bits);
}

/* Puts tag at the head of the freelist of class c, its size's class. */
static void freelist_insert_class(Vmem *vm, VmemTag *tag, unsigned c)
{
    VmemTag **head = &vm->vm_freelist[c];
    tag_set_class(tag, c);
    tag->u.free.list_next = *head;
    if (*head != NULL)
        (*head)->u.free.list_pprev = &tag->u.free.list_next;
    tag->u.free.list_pprev = head;
    *head = tag;
    freemap_set(vm, c);
}

static void freelist_insert(Vmem *vm, VmemTag *tag)
{
    freelist_insert_class(vm, tag, size_class(tag->size));
}

static void freelist_remove(Vmem *vm, VmemTag *tag)
{
    VmemTag *next = tag->u.free.list_next;
    *tag->u.free.list_pprev = next;
    if (next != NULL) {
        next->u.free.list_pprev = tag->u.free.list_pprev;
        return; /* the list keeps a member: its bit stays */
    }
    /* Only the last member's removal can empty the list. */
    unsigned c = tag_class(tag);
    if (vm->vm_freelist[c] == NULL)
        freemap_clear(vm, c);
}

static bool listed(const Vmem *vm) { return (vm->vm_state & VMEM_STATE_LISTED) != 0; }
static bool addr_indexed(const Vmem *vm) { return (vm->vm_state & VMEM_STATE_ADDR_INDEXED) != 0; }
static bool size_indexed(const Vmem *vm) { return (vm->vm_state & VMEM_STATE_SIZE_INDEXED) != 0; }

HOT_INLINE void free_index_insert(Vmem *vm, VmemTag *tag)
{
    tag->type = SEG_FREE;
    tag->flags = 0;
    if (listed(vm))
        freelist_insert(vm, tag);
    if (addr_indexed(vm))
        vmem_tree_insert_addr(vm, tag);
    if (size_indexed(vm))
        vmem_tree_insert_size(vm, tag);
}

HOT_INLINE void free_index_remove(Vmem *vm, VmemTag *tag)
{
    if (listed(vm))
        freelist_remove(vm, tag);
    if (addr_indexed(vm))
        vmem_tree_remove_addr(vm, tag);
    if (size_indexed(vm))
        vmem_tree_remove_size(vm, tag);
}

/* Builds one index of the free segments - a tree, or the freelists -
 * once: from then on every change keeps it current (theory statement, 3).
 * Each is built only when a request first needs it, so an arena that only
 * ever asks for addresses (first-fit, VM_ENDALLOC, next-fit) never pays
 * for the size tree, a best-fit arena for the address tree, nor either
 * of them for the freelists, which only instant-fit reads. The walk goes
 * down the addresses, so that each list starts at its lowest segment, as
 * in an arena that kept its lists from the start. Locked. */
static __attribute__((noinline, cold)) void build_index(Vmem *vm, unsigned which)
{
    vm->vm_state |= which;
    for (VmemTag *tag = vm->vm_seg_last; tag != NULL; tag = tag->seg_prev) {
        if (tag->type != SEG_FREE)
            continue;
        if (which == VMEM_STATE_LISTED)
            freelist_insert(vm, tag);
        else if (which == VMEM_STATE_ADDR_INDEXED)
            vmem_tree_insert_addr(vm, tag);
        else
            vmem_tree_insert_size(vm, tag);
    }
}

static inline void ensure_index(Vmem *vm, unsigned which)
{
    if ((vm->vm_state & which) == 0)
        build_index(vm, which);
}

/* Gives a free segment a new range that keeps its place in address order
 * (it shrank, or grew into space no free segment occupies). */
HOT_INLINE void free_resize(Vmem *vm, VmemTag *tag, uintptr_t base, size_t size)
{
    unsigned c = size_class(size);
    bool relist = listed(vm) && c != tag_class(tag);
    if (size_indexed(vm))
        vmem_tree_remove_size(vm, tag);
    if (relist)
        freelist_remove(vm, tag);
    tag->base = base;
    tag->size = size;
    if (addr_indexed(vm))
        vmem_tree_refresh_addr(vm, tag);
    if (size_indexed(vm))
        vmem_tree_insert_size(vm, tag);
    if (relist)
        freelist_insert_class(vm, tag, c);
}

/* ---- Spans ------------------------------------------------------------------ */

/* Adds [base, base + size) as a span with one free segment. Locked; the
 * range is valid and overlaps nothing; the stash holds two tags. */
static VmemTag *span_add(Vmem *vm, uintptr_t base, size_t size, uint8_t flags)
{
    VmemTag *prev_span = span_before(vm, base);
    VmemTag *next_span = prev_span != NULL ? prev_span->u.span.next : vm->vm_span_first;
    VmemTag *marker = vmem_stash_take(vm);
    VmemTag *seg = vmem_stash_take(vm);

    marker->type = SEG_SPAN;
    marker->flags = flags;
    marker->base = base;
    marker->size = size;
    marker->u.span.prev = prev_span;
    marker->u.span.next = next_span;
    if (prev_span != NULL)
        prev_span->u.span.next = marker;
    else
        vm->vm_span_first = marker;
    if (next_span != NULL)
        next_span->u.span.prev = marker;

    /* The new span's tags go right before the next span's marker. */
    VmemTag *before = next_span != NULL ? next_span->seg_prev : vm->vm_seg_last;
    seg_insert_after(vm, before, marker);
    seg->base = base;
    seg->size = size;
    seg_insert_after(vm, marker, seg);
    free_index_insert(vm, seg);
    vm->vm_nsegs++;
    vm->stat.total += size;
    if (flags & TAG_IMPORTED)
        vm->stat.import += size;
    return seg;
}

/* A span to hand back to the source once the lock is released. */
typedef struct {
    uintptr_t base;
    size_t size;
    VmemFree *release;
} GiveBack;

/* How an imported span goes back: through the arena's give-back function,
 * except that one the library imported itself with vmem_xalloc_addr
 * (TAG_XALLOC) goes back with the matching vmem_xfree when that function
 * is vmem_free or none. NULL: the span stays. */
static VmemFree *span_release(const Vmem *vm, uint8_t span_flags)
{
    if ((span_flags & TAG_XALLOC) && (vm->free == NULL || vm->free == vmem_free))
        return vmem_xfree;
    return vm->free;
}

/* Removes a wholly free imported span (marker + its one free segment). */
static void span_remove_free(Vmem *vm, VmemTag *marker, VmemTag *seg, GiveBack *give)
{
    give->base = marker->base;
    give->size = marker->size;
    give->release = span_release(vm, marker->flags);
    free_index_remove(vm, seg);
    seg_unlink(vm, seg);
    seg_unlink(vm, marker);
    span_list_remove(vm, marker);
    vm->vm_nsegs--;
    vm->stat.total -= marker->size;
    vm->stat.import -= marker->size;
    if (vm->vm_rotor_tag == seg || vm->vm_rotor_tag == marker)
        vm->vm_rotor_tag = NULL; /* next-fit restarts from the bottom */
    vmem_stash_put(vm, seg);
    vmem_stash_put(vm, marker);
}

static void give_back(Vmem *vm, const GiveBack *give)
{
    give->release(vm->source, (void *)give->base, give->size);
}

/* If seg is the whole of an imported span, detach the span for give-back. */
static bool maybe_release_span(Vmem *vm, VmemTag *seg, GiveBack *give)
{
    VmemTag *marker = seg->seg_prev;
    if (vm->free == NULL || marker == NULL || marker->type != SEG_SPAN ||
        !(marker->flags & TAG_IMPORTED) || marker->size != seg->size)
        return false;
    span_remove_free(vm, marker, seg, give);
    return true;
}

/* ---- End of an operation -------------------------------------------------- */

/* Everything an operation must release after it unlocks. */
typedef struct {
    VmemTag *tags;          /* surplus tags for the pool */
    void *table;            /* a hash table to give back */
    size_t table_bytes;
    void *unused_table;     /* a table allocated but not installed */
    size_t unused_table_bytes;
} Leftovers;

static size_t pages_for(size_t bytes) { return (bytes + VMEM_PAGE_SIZE - 1) / VMEM_PAGE_SIZE; }

/* unlock_and_release() when there is something to hand back. */
static __attribute__((noinline)) void unlock_releasing(Vmem *vm, VmemIrqState state,
                                                       Leftovers *left)
{
    left->tags = vm->vm_stash_count > VMEM_STASH_HIGH ? vmem_stash_detach(vm, false) : NULL;
    left->table = vmem_hash_take_retired(vm, &left->table_bytes);
    vmem_port_unlock(&vm->vm_lock, state);
    if (left->tags != NULL)
        vmem_pool_return(left->tags);
    if (left->table != NULL)
        vmem_port_page_free(left->table, pages_for(left->table_bytes));
    if (left->unused_table != NULL)
        vmem_port_page_free(left->unused_table, pages_for(left->unused_table_bytes));
}

/* Inline: every operation ends here, and almost always with nothing to
 * hand back - then it is an unlock. */
static inline void unlock_and_release(Vmem *vm, VmemIrqState state, Leftovers *left)
{
    if (__builtin_expect(vm->vm_stash_count <= VMEM_STASH_HIGH && !vmem_hash_has_retired(vm) &&
                             left->unused_table == NULL,
                         1)) {
        vmem_port_unlock(&vm->vm_lock, state);
    } else {
        unlock_releasing(vm, state, left);
    }
}

/* lock_with_hash_table() when the arena wants a new table. */
static __attribute__((noinline)) VmemIrqState lock_installing_table(Vmem *vm, size_t wanted,
                                                                    int vmflag, Leftovers *left)
{
    void *table = vmem_port_page_alloc(pages_for(wanted),
                                       (vmflag & (VM_SLEEP | VM_NOSLEEP)) | VM_BOOTSTRAP);
    VmemIrqState state = vmem_port_lock(&vm->vm_lock);
    if (table != NULL && !vmem_hash_install(vm, table, wanted)) {
        left->unused_table = table;
        left->unused_table_bytes = wanted;
    }
    return state;
}

/*
 * Locks the arena, first allocating a bigger or smaller hash table if the
 * arena wants one (the page source may not be called under the lock).
 * Only allocations resize: a VM_BOOTSTRAP request is the page source at
 * work, which must not call the page source again, and a free must not
 * either - a kernel's page source gives pages back with vmem_free(), so a
 * free that allocated could recurse. Frees still carry on a migration
 * already under way, and shrink into the embedded buckets, inline.
 */
static inline VmemIrqState lock_with_hash_table(Vmem *vm, int vmflag, Leftovers *left)
{
    left->unused_table = NULL;
    left->unused_table_bytes = 0;
    size_t wanted = 0;
    if (!(vmflag & VM_BOOTSTRAP))
        wanted = __atomic_load_n(&vm->vm_hash_hint, __ATOMIC_RELAXED);
    if (__builtin_expect(wanted == 0, 1))
        return vmem_port_lock(&vm->vm_lock);
    return lock_installing_table(vm, wanted, vmflag, left);
}

/* ---- Placement ------------------------------------------------------------ */

HOT_INLINE bool unconstrained(const Vmem *vm, const VmemRequest *req)
{
    return req->align == vm->quantum && req->phase == 0 && req->nocross == 0 && req->min <= 1 &&
           req->max_last == UINTPTR_MAX && !req->top_down;
}

/* Where req fits in free segment tag, if it does. An unconstrained
 * request fits at the base of any segment large enough; only one at
 * address 0, which the void * calls may not hand out, or a constrained
 * request needs the general arithmetic of vmem_fit.c. */
static bool segment_fit(const Vmem *vm, const VmemRequest *req, const VmemTag *tag,
                        uintptr_t *addrp)
{
    if (tag->size < req->size)
        return false;
    if (unconstrained(vm, req) && tag->base >= req->min) {
        *addrp = tag->base;
        return true;
    }
    return vmem_fit_in(req, tag->base, tag->size, addrp);
}

/* Tries the heads of the first `tries` non-empty freelists of the classes
 * whose every member is at least `need` long: when need guarantees a fit,
 * the first head is the answer. */
static VmemTag *freelist_heads_fit(Vmem *vm, const VmemRequest *req, size_t need, int tries,
                                   uintptr_t *addrp)
{
    for (unsigned c = first_nonempty_class(vm, fitting_class(need));
         c < VMEM_FREELISTS && tries-- > 0; c = first_nonempty_class(vm, c + 1)) {
        if (segment_fit(vm, req, vm->vm_freelist[c], addrp))
            return vm->vm_freelist[c];
    }
    return NULL;
}

/* Where an unconstrained request fits in free segment tag, if it does: at
 * its base, unless that is address 0 and the caller may not have 0. */
static bool unconstrained_fit(const VmemRequest *req, const VmemTag *tag, uintptr_t *addrp)
{
    if (tag->size < req->size)
        return false;
    if (tag->base >= req->min) {
        *addrp = tag->base;
        return true;
    }
    return vmem_fit_in(req, tag->base, tag->size, addrp);
}

/* Instant-fit, for unconstrained requests: the head of the first class
 * whose members all fit; a second head if the first sits at address 0 and
 * the request may not use it. */
HOT_INLINE VmemTag *instant_fit(Vmem *vm, const VmemRequest *req, uintptr_t *addrp)
{
    VmemTag *tag;
    unsigned own = size_class(req->size);
    /* fitting_class(req->size), from the class already at hand. */
    unsigned fitting = own;
    /* A segment from the request's own class is a closer fit than any from
     * a larger class; looking at a few of them keeps constant time and
     * leaves the larger segments whole for larger requests. */
    if (!size_class_exact(req->size)) {
        fitting = own + 1;
        int peek = INSTANT_FIT_PEEK;
        for (tag = vm->vm_freelist[own]; tag != NULL && peek-- > 0; tag = tag->u.free.list_next)
            if (unconstrained_fit(req, tag, addrp))
                return tag;
    }
    int heads = 2;
    for (unsigned c = first_nonempty_class(vm, fitting);
         c < VMEM_FREELISTS && heads-- > 0; c = first_nonempty_class(vm, c + 1)) {
        if (unconstrained_fit(req, vm->vm_freelist[c], addrp))
            return vm->vm_freelist[c];
    }
    /* No class is guaranteed to fit: search the one class that may hold a
     * fit - through an index when the arena has one. */
    bool exhausted;
    if (size_indexed(vm))
        return vmem_tree_best_fit(vm, req, req->size, SIZE_MAX, &exhausted, addrp);
    if (addr_indexed(vm))
        return vmem_tree_first_fit(vm, req, req->size, SIZE_MAX, &exhausted, addrp);
    for (tag = vm->vm_freelist[own]; tag != NULL; tag = tag->u.free.list_next)
        if (unconstrained_fit(req, tag, addrp))
            return tag;
    return NULL;
}

/* The lowest placement (highest when top-down), exactly, unless more than
 * SEARCH_BUDGET large-enough segments fail to fit before it; then the
 * lowest comfortable one, and only if there is none, every candidate. */
static VmemTag *address_order_fit(Vmem *vm, const VmemRequest *req, uintptr_t *addrp)
{
    bool exhausted;
    VmemTag *tag = vmem_tree_first_fit(vm, req, req->size, SEARCH_BUDGET, &exhausted, addrp);
    if (tag != NULL || !exhausted)
        return tag;
    tag = vmem_tree_first_fit(vm, req, vmem_fit_comfortable_size(req), SIZE_MAX, &exhausted, addrp);
    if (tag != NULL)
        return tag;
    return vmem_tree_first_fit(vm, req, req->size, SIZE_MAX, &exhausted, addrp);
}

static VmemTag *best_fit(Vmem *vm, const VmemRequest *req, uintptr_t *addrp)
{
    bool exhausted;
    if (unconstrained(vm, req) || (req->align == vm->quantum && req->nocross == 0 &&
                                   req->min <= 1 && req->max_last == UINTPTR_MAX))
        return vmem_tree_best_fit(vm, req, req->size, SIZE_MAX, &exhausted, addrp);
    VmemTag *tag =
        vmem_tree_best_fit(vm, req, req->size, SEARCH_BUDGET, &exhausted, addrp);
    if (tag != NULL || !exhausted)
        return tag;
    tag = vmem_tree_best_fit(vm, req, vmem_fit_comfortable_size(req), SEARCH_BUDGET,
                             &exhausted, addrp);
    if (tag != NULL)
        return tag;
    /* Only a request no comfortable segment serves gets here: it must
     * examine every candidate, in address order. */
    ensure_index(vm, VMEM_STATE_ADDR_INDEXED);
    return address_order_fit(vm, req, addrp);
}

/* Next-fit through the index: after the rotor, else from the bottom. */
static VmemTag *next_fit_indexed(Vmem *vm, const VmemRequest *req, uintptr_t *addrp)
{
    if (vm->vm_rotor > req->min) {
        VmemRequest after_rotor;
        request_copy(&after_rotor, req);
        after_rotor.min = vm->vm_rotor;
        if (after_rotor.min <= after_rotor.max_last) {
            VmemTag *tag = address_order_fit(vm, &after_rotor, addrp);
            if (tag != NULL)
                return tag;
        }
    }
    return address_order_fit(vm, req, addrp); /* wrap around */
}

/*
 * Next-fit walks the segment list from the last next-fit allocation (the
 * rotor tag) to the top, then from the bottom up to the rotor: in an ID
 * arena the next free ID is almost always a neighbour, so this is O(1) and
 * needs no index. After NEXT_FIT_WALK segments it asks the index instead,
 * so it is never linear either. In address order from the rotor, the first
 * fit is exactly what the index would find. The rotor tag never starts
 * above the rotor address: it is the last next-fit segment, the free
 * segment that absorbed it, or the piece another allocation carved from
 * the front of that free segment (carve).
 */
static VmemTag *next_fit(Vmem *vm, const VmemRequest *req, uintptr_t *addrp)
{
    uintptr_t rotor = vm->vm_rotor;
    VmemRequest after_rotor;
    request_copy(&after_rotor, req);
    if (rotor > after_rotor.min)
        after_rotor.min = rotor;
    int budget = NEXT_FIT_WALK;
    VmemTag *tag = vm->vm_rotor_tag != NULL ? vm->vm_rotor_tag : vm->vm_seg_first;
    for (; tag != NULL; tag = tag->seg_next) {
        if (budget-- == 0)
            goto use_index;
        if (tag->type == SEG_FREE && vmem_fit_in(&after_rotor, tag->base, tag->size, addrp))
            return tag;
    }
    for (tag = vm->vm_seg_first; tag != NULL && tag->base < rotor; tag = tag->seg_next) {
        if (budget-- == 0)
            goto use_index;
        if (tag->type == SEG_FREE && vmem_fit_in(req, tag->base, tag->size, addrp))
            return tag;
    }
    return NULL;
use_index:
    ensure_index(vm, VMEM_STATE_ADDR_INDEXED);
    return next_fit_indexed(vm, req, addrp);
}

/* The segment size find_placement() first looks for under a constrained
 * instant-fit request that needs `comfortable`: the next power of two (it
 * says why). */
static inline size_t whole_size(size_t comfortable)
{
    return is_pow2(comfortable) || comfortable > SIZE_MAX / 2
               ? comfortable
               : (size_t)1 << (log2_floor(comfortable) + 1);
}

HOT_INLINE VmemTag *find_placement(Vmem *vm, const VmemRequest *req, int vmflag, uintptr_t *addrp)
{
    if (!(vmflag & (VM_BESTFIT | VM_NEXTFIT | VM_FIRSTFIT)) && !req->top_down) {
        ensure_index(vm, VMEM_STATE_LISTED);
        if (unconstrained(vm, req))
            return instant_fit(vm, req, addrp);
        /* Constrained instant-fit: a segment of the comfortable size fits
         * wherever it lies, so the freelists answer in O(1) when one
         * exists inside the range. */
        /* Prefer a segment of the next power of two: carving an aligned
         * piece out of the middle of a barely comfortable segment leaves
         * two slivers and touches more tags, which a long-running arena,
         * whose tags are scattered, pays for in cache misses; the exact
         * class is the fallback. */
        size_t comfortable = vmem_fit_comfortable_size(req);
        size_t whole = whole_size(comfortable);
        VmemTag *tag = freelist_heads_fit(vm, req, whole, 4, addrp);
        if (tag == NULL && whole != comfortable)
            tag = freelist_heads_fit(vm, req, comfortable, 4, addrp);
        if (tag != NULL)
            return tag;
    }
    if (vmflag & VM_NEXTFIT)
        return next_fit(vm, req, addrp);
    if (vmflag & VM_BESTFIT) {
        ensure_index(vm, VMEM_STATE_SIZE_INDEXED);
        return best_fit(vm, req, addrp);
    }
    ensure_index(vm, VMEM_STATE_ADDR_INDEXED);
    return address_order_fit(vm, req, addrp);
}

/* Allocates [addr, addr + size) out of free segment `free`. Locked; the
 * stash holds two tags. Returns the allocated segment's tag. */
HOT_INLINE VmemTag *carve(Vmem *vm, VmemTag *free, uintptr_t addr, size_t size, uint8_t flags)
{
    uintptr_t seg_base = free->base, seg_last = tag_last(free);
    uintptr_t alloc_last = addr + (size - 1);
    bool lead = addr > seg_base, trail = alloc_last < seg_last;
    VmemTag *alloc;

    if (!lead && !trail) {
        free_index_remove(vm, free);
        alloc = free;
    } else {
        alloc = vmem_stash_take(vm);
        vm->vm_nsegs++;
        if (!lead) {
            free_resize(vm, free, alloc_last + 1, seg_last - alloc_last);
            seg_insert_after(vm, free->seg_prev, alloc);
            /* The rotor tag must not move up past the rotor: space freed
             * between them later would be skipped by next-fit. */
            if (vm->vm_rotor_tag == free)
                vm->vm_rotor_tag = alloc;
        } else {
            free_resize(vm, free, seg_base, addr - seg_base);
            if (trail) {
                VmemTag *rest = vmem_stash_take(vm);
                rest->base = alloc_last + 1;
                rest->size = seg_last - alloc_last;
                seg_insert_after(vm, free, rest);
                free_index_insert(vm, rest);
                vm->vm_nsegs++;
            }
            seg_insert_after(vm, free, alloc);
        }
    }
    alloc->type = SEG_ALLOC;
    alloc->flags = flags;
    alloc->base = addr;
    alloc->size = size;
    vmem_hash_insert(vm, alloc);
    vm->stat.in_use += size;
    vm->stat.alloc++;
    if (flags & TAG_SLAB) {
        vm->vm_slab_bytes += size;
        vm->vm_slabs_made++;
    }
    return alloc;
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

/* Field by field: a struct assignment or initialiser may become a call to
 * memcpy or memset, which a freestanding library may not make. */
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

/* Appends a shape of `need` units rounded up to the import quantum `iq`
 * (when it is coarser than the unit u and keeps within nocross), then
 * rounded up to u, unless that repeats the first. */
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
        out[n].size = sizes[i];
        n++;
    }
    return n;
}

/*
 * The spans to ask for, in order, for req (theory statement, 6; vmem.h
 * under VmemXImport says the same to callers). u is the import unit, the
 * coarser of the two quanta; iq the import quantum or 0. Every value is a
 * multiple of u, so the source can place them, and a span of any shape,
 * wherever the source puts it inside the shape's range, holds a placement
 * of req. A plain callback (!constrained) is told sizes only: its span
 * holds a placement wherever it lies inside req's range. Returns how
 * many; 0 when no span can help.
 */
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
        return 0; /* no placement in the range at all */
    uintptr_t last_start = req->max_last - (req->size - 1);
    size_t n = 0;
    if (req->phase % u != 0 || req->nocross % u != 0) {
        /* Finer than the source can place: a span with room for a
         * placement wherever it lies - first in the whole units inside
         * the range, then in the range rounded outward, counting what its
         * two end units have outside the request's own range. */
        shape.min = round_up(req->min, u);
        shape.max = (req->max_last + 1) & ~below_u; /* 0: no bound */
        bool inside = shape.min >= req->min &&
                      (req->max_last == UINTPTR_MAX || (shape.max != 0 && shape.min < shape.max));
        if (inside)
            n = add_sizes(out, n, &shape, comfortable, u, iq);
        size_t outside = (req->min & below_u) + (below_u - (req->max_last & below_u));
        if (outside != 0 && comfortable <= SIZE_MAX - outside) {
            shape.min = req->min & ~below_u;
            shape.max = (req->max_last | below_u) + 1; /* 0 at the top */
            n = add_sizes(out, n, &shape, comfortable + outside, u, 0);
        }
        return n;
    }

    /* The span that starts at the placement: then the placement's
     * constraints are the span's, in units of u. */
    uintptr_t first = round_up(req->min, u), last = last_start & ~below_u;
    if (first >= req->min && first <= last) {
        shape.align = req->align > u ? req->align : u;
        shape.phase = req->phase;
        shape.nocross = req->nocross;
        shape.min = first;
        size_t at = n;
        n = add_sizes(out, n, &shape, req->size, u, iq);
        /* Each ends no further than its size past the last start (when that
         * passes the top, the top bounds it: max 0). */
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

/* Imports a span that can satisfy req. Locked on entry and exit, but the
 * lock is dropped around the callback. Returns false if nothing came. */
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
    VmemFree *release = span_release(vm, flags);
    int sleep_flags = vmflag & (VM_SLEEP | VM_NOSLEEP | VM_BOOTSTRAP);
    uintptr_t base = 0;
    size_t size = 0;
    bool ok = false;

    vmem_port_unlock(&vm->vm_lock, *state);
    for (size_t i = 0; i < count && !ok; i++) {
        /* Only the last shape may wait: an earlier one that cannot be had
         * now must not keep the next from being tried. */
        int flags_now = sleep_flags;
        if (i + 1 < count && (flags_now & VM_SLEEP))
            flags_now = (flags_now & ~VM_SLEEP) | VM_NOSLEEP;
        const ImportShape *sh = &shapes[i];
        if (ximport != NULL) {
            ok = ximport(source, sh->size, sh->align, sh->phase, sh->nocross, sh->min, sh->max,
                         flags_now | (req->top_down ? VM_ENDALLOC : 0), &base) == 0;
        } else {
            void *got = vm->alloc(source, sh->size, flags_now);
            ok = got != NULL;
            base = (uintptr_t)got;
        }
        size = sh->size;
    }
    *state = vmem_port_lock(&vm->vm_lock);
    if (!ok)
        return false;

    /* The world may have changed while unlocked: refill, recheck. */
    uintptr_t last = base + (size - 1);
    bool sane = last >= base && base % vm->quantum == 0 && !span_overlaps(vm, base, last);
    if (!sane || !vmem_stash_fill(vm, state, vmflag) || span_overlaps(vm, base, last)) {
        GiveBack give; /* not an initialiser: that may become a memcpy call */
        give.base = base;
        give.size = size;
        give.release = release;
        vmem_port_unlock(&vm->vm_lock, *state);
        if (release != NULL)
            give_back(vm, &give);
        *state = vmem_port_lock(&vm->vm_lock);
        return false;
    }
    span_add(vm, base, size, flags);
    *span_base = base;
    *span_size = size;
    return true;
}

/* ---- Allocation ------------------------------------------------------------- */

static void arena_free(Vmem *vm, const char *call, uintptr_t addr, size_t size, bool slab);

/* Gives back the span [base, base + size) if it is still wholly free: an
 * import that turned out not to serve the request. Locked on entry and
 * exit; the lock is dropped around the give-back. */
static void return_unused_import(Vmem *vm, VmemIrqState *state, uintptr_t base, size_t size)
{
    VmemTag *marker = span_find_exact(vm, base, size);
    if (marker == NULL || !(marker->flags & TAG_IMPORTED) || marker->seg_next == NULL ||
        marker->seg_next->type != SEG_FREE || marker->seg_next->size != marker->size ||
        span_release(vm, marker->flags) == NULL)
        return;
    GiveBack give;
    span_remove_free(vm, marker, marker->seg_next, &give);
    vmem_port_unlock(&vm->vm_lock, *state);
    give_back(vm, &give);
    *state = vmem_port_lock(&vm->vm_lock);
}

/* Waits for a free or an added span. Locked; returns false (and the caller
 * fails) when the port cannot sleep. */
static bool wait_for_space(Vmem *vm)
{
#if VMEM_PORT_CAN_SLEEP
    vm->vm_waiters++;
    vmem_port_cond_wait(&vm->vm_cv, &vm->vm_lock);
    vm->vm_waiters--;
    return true;
#else
    (void)vm;
    return false;
#endif
}

/* Wakes VM_SLEEP allocations: something was freed or added. Locked. */
static void wake_waiters(Vmem *vm)
{
#if VMEM_PORT_CAN_SLEEP
    if (vm->vm_waiters != 0)
        vmem_port_cond_broadcast(&vm->vm_cv);
#else
    (void)vm;
#endif
}

/* Carves the allocation from free segment seg and moves the next-fit
 * rotor past it. Locked; the stash holds two tags. */
HOT_INLINE void take_placement(Vmem *vm, const VmemRequest *req, int vmflag, VmemTag *seg,
                               uintptr_t addr, uint8_t tag_flags)
{
    VmemTag *alloc = carve(vm, seg, addr, req->size, tag_flags);
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
        VmemTag *seg = find_placement(vm, req, vmflag, &addr);
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
    /* A span this request imported and did not use goes back now, or it
     * would stay imported with nothing in it (only frees give spans
     * back): while the import ran unlocked, another thread may have freed
     * what the request then took instead, and tags may have run out. */
    if (imported_last && (result != 0 || *addrp < span_base || *addrp - span_base >= span_size))
        return_unused_import(vm, &state, span_base, span_size);
    unlock_and_release(vm, state, left);
    if (cannot_sleep)
        vmem_report(vm, call, req->min, req->size, VMEM_MISUSE_CANNOT_SLEEP,
                    "VM_SLEEP request must wait, but the port cannot sleep");
    return result;
}

/* The allocation engine every request goes through. The first attempt is
 * inline and, when tags are at hand and something fits, all there is. */
static inline int arena_xalloc(Vmem *vm, const char *call, const VmemRequest *req, int vmflag,
                               uint8_t tag_flags, uintptr_t *addrp)
{
    Leftovers left;
    VmemIrqState state = lock_with_hash_table(vm, vmflag, &left);
    uintptr_t addr;
    VmemTag *seg;
    if (__builtin_expect(vm->vm_stash_count >= VMEM_TAGS_PER_OP, 1) &&
        (seg = find_placement(vm, req, vmflag, &addr)) != NULL) {
        take_placement(vm, req, vmflag, seg, addr, tag_flags);
        unlock_and_release(vm, state, &left);
        *addrp = addr;
        return 0;
    }
    return arena_xalloc_slow(vm, call, req, vmflag, tag_flags, state, &left, addrp);
}

/* arena_xalloc for an arena with quantum caches: before failing (or
 * sleeping) it drains them, since their free objects and slabs may be
 * what the request needs. */
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

/* Inline, and the cached case apart: an arena without caches then goes
 * straight to arena_xalloc, with no frame of its own to set up. */
static inline int alloc_or_drain(Vmem *vm, const char *call, const VmemRequest *req, int vmflag,
                                 uint8_t tag_flags, uintptr_t *addrp)
{
    if (__atomic_load_n(&vm->vm_qcache, __ATOMIC_ACQUIRE) == NULL)
        return arena_xalloc(vm, call, req, vmflag, tag_flags, addrp);
    return alloc_draining(vm, call, req, vmflag, tag_flags, addrp);
}

int vmem_arena_alloc_slab(Vmem *vm, size_t slab_size, int vmflag, uintptr_t *addrp)
{
    VmemRequest req;
    req.size = slab_size;
    req.quantum = vm->quantum;
    req.align = slab_size;
    req.phase = 0;
    req.nocross = 0;
    req.min = 1; /* a slab at 0 would hand out object 0, which means NULL */
    req.max_last = UINTPTR_MAX;
    req.top_down = false;
    /* Never sleep for a slab: the caller can still be served without one. */
    int flags = (vmflag & VM_BOOTSTRAP) | VM_NOSLEEP;
    return arena_xalloc(vm, "vmem_alloc", &req, flags, TAG_SLAB, addrp);
}

void vmem_arena_free_slab(Vmem *vm, uintptr_t base, size_t slab_size)
{
    arena_free(vm, "vmem_free", base, slab_size, true);
}

void vmem_arena_free_segment(Vmem *vm, const char *call, uintptr_t addr, size_t size)
{
    arena_free(vm, call, addr, size, false);
}

/* Validates and builds a request; reports misuse and returns false. */
HOT_INLINE bool make_request(const Vmem *vm, const char *call, size_t size, size_t align,
                         size_t phase, size_t nocross, uintptr_t min, uintptr_t max,
                         bool max_given, int vmflag, VmemRequest *req)
{
    const size_t q = vm->quantum;
    const size_t under_q = q - 1; /* q is a power of two: x % q == (x & under_q) */
    VmemMisuseKind kind = VMEM_MISUSE_BAD_CONSTRAINT;
    const char *why = NULL;

    if (!valid_flags(vm, call, vmflag, min, size))
        return false;
    if (size == 0) {
        kind = VMEM_MISUSE_BAD_ARGUMENT;
        why = "size is zero";
    } else if (size > SIZE_MAX - (q - 1)) {
        kind = VMEM_MISUSE_SIZE_OVERFLOW;
        why = "size overflows when rounded up to the quantum";
    } else if (align != 0 && (!is_pow2(align) || (align & under_q) != 0)) {
        why = "align is not a power of two multiple of the quantum";
    } else if ((phase & under_q) != 0 || phase >= (align != 0 ? align : q)) {
        why = "phase is not a multiple of the quantum below align";
    } else if (nocross != 0 && (!is_pow2(nocross) || (nocross & under_q) != 0)) {
        why = "nocross is not a power of two multiple of the quantum";
    } else if (nocross != 0 && nocross < round_up(size, q)) {
        why = "nocross is smaller than size";
    } else if ((min & under_q) != 0 || (max_given && (max & under_q) != 0)) {
        why = "minaddr or maxaddr is not a multiple of the quantum";
    } else if (max_given && min >= max) {
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
    return true;
}

int vmem_xalloc_addr(Vmem *vmp, size_t size, size_t align, size_t phase, size_t nocross,
                     uintptr_t minaddr, uintptr_t maxaddr, int vmflag, uintptr_t *addrp)
{
    static const char call[] = "vmem_xalloc_addr";
    VmemRequest req;
    if (!usable(vmp, call, minaddr, size))
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
    if (!usable(vmp, call, (uintptr_t)minaddr, size) ||
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

/* Small vmem_alloc() requests go through the quantum caches, except with
 * the policies that promise a placement (next-fit's rotor, first-fit,
 * VM_ENDALLOC), which only the arena can keep. VM_BOOTSTRAP requests (a
 * page source at work) skip them too: their magazines and slab
 * descriptors come from the page source. Only a bound here, to keep
 * arenas without caches fast: vmem_qcache_alloc() and vmem_qcache_free()
 * know the exact sizes they serve. */
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
    if (!usable(vmp, call, 0, size) ||
        !make_request(vmp, call, size, 0, 0, 0, 0, 0, false, vmflag, &req))
        return NULL;
    if (uses_qcache(vmp, req.size, vmflag)) {
        addr = vmem_qcache_alloc(vmp, req.size, vmflag);
        if (addr != 0)
            return (void *)addr;
    }
    /* The caches could not serve it (no slab to be had, or not a cached
     * size): the arena serves it as an ordinary segment, which vmem_free
     * tells from a cached object. */
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
    if (!usable(vmp, call, addr, size))
        return -VMEM_ERR_INVALID;
    if (!make_request(vmp, call, size, 0, 0, 0, addr, 0, false, vmflag, &req))
        return -VMEM_ERR_INVALID;
    if (req.size - 1 > UINTPTR_MAX - addr) {
        vmem_report(vmp, call, addr, size, VMEM_MISUSE_SIZE_OVERFLOW,
                    "the range wraps past the top of the address space");
        return -VMEM_ERR_INVALID;
    }
    req.max_last = addr + (req.size - 1);
    return alloc_or_drain(vmp, call, &req, (vmflag & ~POLICY_FLAGS) | VM_FIRSTFIT, TAG_XALLOC,
                          &got);
}

/* ---- Free ------------------------------------------------------------------- */

/* Is addr inside a free segment of span? The address index answers when
 * the arena keeps one; otherwise the span's segments are walked. Never
 * builds an index: one built here would change where later instant-fit
 * requests are placed, and misuse must change nothing. Locked. */
static bool in_free_segment(Vmem *vm, const VmemTag *span, uintptr_t addr)
{
    if (addr_indexed(vm))
        return vmem_tree_find_free(vm, addr) != NULL;
    for (const VmemTag *tag = span->seg_next; tag != NULL && tag->type != SEG_SPAN;
         tag = tag->seg_next)
        if (addr >= tag->base && addr <= tag_last(tag))
            return tag->type == SEG_FREE;
    return false;
}

/* Why addr is not an allocated segment of vm: sets *kind, returns the
 * reason. Locked; changes nothing. */
static const char *classify_bad_free(Vmem *vm, uintptr_t addr, VmemMisuseKind *kind)
{
    const VmemTag *span = span_containing(vm, addr, 1);
    if (span == NULL) {
        *kind = VMEM_MISUSE_FREE_UNKNOWN;
        return "the address is in no span of this arena (another arena's?)";
    }
    if (in_free_segment(vm, span, addr)) {
        *kind = VMEM_MISUSE_DOUBLE_FREE;
        return "the address lies in a free segment: freed twice, or never allocated";
    }
    *kind = VMEM_MISUSE_FREE_INSIDE;
    return "the address lies inside an allocated segment, not at its start";
}

/* Out of line, so that the report's frame is not every free's. */
static __attribute__((noinline, cold)) void report_free_size(Vmem *vm, const char *call,
                                                             uintptr_t addr, size_t size)
{
    vmem_report(vm, call, addr, size, VMEM_MISUSE_FREE_WRONG_SIZE,
                size == 0 ? "size is zero" : "size overflows when rounded to the quantum");
}

/* Checks a free's arguments before anything else; reports misuse. */
static inline bool valid_free(Vmem *vm, const char *call, uintptr_t addr, size_t size)
{
    if (!usable(vm, call, addr, size))
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
    size_t rounded = round_up(size, vm->quantum);
    Leftovers left;
    VmemIrqState state = lock_with_hash_table(vm, VM_NOSLEEP | VM_BOOTSTRAP, &left);
    VmemHashWhere where;
    VmemTag *tag = vmem_hash_find(vm, addr, &where);
    const char *why = NULL;
    VmemMisuseKind kind = VMEM_MISUSE_FREE_WRONG_SIZE;
    if (tag == NULL) {
        why = classify_bad_free(vm, addr, &kind);
    } else if (((tag->flags & TAG_SLAB) != 0) != slab) {
        kind = VMEM_MISUSE_FREE_WRONG_CALL;
        why = "the address came from a quantum cache (vmem_alloc): free it with vmem_free";
    } else if (tag->size != rounded) {
        why = "size differs from the size allocated";
    }
    if (why != NULL) {
        unlock_and_release(vm, state, &left);
        if (kind == VMEM_MISUSE_FREE_INSIDE && vmem_qcache_owns(vm, addr)) {
            kind = VMEM_MISUSE_FREE_WRONG_CALL;
            why = "the address came from a quantum cache (vmem_alloc): free it with vmem_free";
        }
        vmem_report(vm, call, addr, size, kind, why);
        return;
    }

    /* Nothing has changed since the lookup: remove without probing again. */
    vmem_hash_remove_at(vm, &where, tag);
    vm->stat.in_use -= tag->size;
    vm->stat.free++;
    if (slab) {
        vm->vm_slab_bytes -= tag->size;
        vm->vm_slabs_freed++;
    }

    /* A merged tag's place as the next-fit rotor goes to the survivor. */
    VmemTag *next = tag->seg_next;
    if (is_free(next)) {
        free_index_remove(vm, next);
        seg_unlink(vm, next);
        tag->size += next->size;
        if (vm->vm_rotor_tag == next)
            vm->vm_rotor_tag = tag;
        vmem_stash_put(vm, next);
        vm->vm_nsegs--;
    }
    VmemTag *prev = tag->seg_prev;
    if (is_free(prev)) {
        seg_unlink(vm, tag);
        free_resize(vm, prev, prev->base, prev->size + tag->size);
        if (vm->vm_rotor_tag == tag)
            vm->vm_rotor_tag = prev;
        vmem_stash_put(vm, tag);
        vm->vm_nsegs--;
        tag = prev;
    } else {
        free_index_insert(vm, tag);
    }

    GiveBack give;
    bool release = maybe_release_span(vm, tag, &give);
    wake_waiters(vm);
    unlock_and_release(vm, state, &left);
    if (release)
        give_back(vm, &give);
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

/* ---- Spans ------------------------------------------------------------------ */

/* What is wrong with a span's flags or range, or NULL; sets *kind. Shared
 * by vmem_add and vmem_init, which checks before touching its storage. */
static const char *span_problem(uintptr_t base, size_t size, size_t quantum, int vmflag,
                                VmemMisuseKind *kind)
{
    *kind = VMEM_MISUSE_BAD_ARGUMENT;
    if (vmflag & ~KNOWN_FLAGS || ((vmflag & VM_SLEEP) && (vmflag & VM_NOSLEEP))) {
        *kind = VMEM_MISUSE_BAD_FLAGS;
        return "unknown or conflicting flags";
    }
    if (size == 0)
        return "the span is empty";
    if (base % quantum != 0 || size % quantum != 0)
        return "base or size is not a multiple of the quantum";
    if (size - 1 > UINTPTR_MAX - base) {
        *kind = VMEM_MISUSE_SPAN_WRAP;
        return "the span wraps past the top of the address space";
    }
    return NULL;
}

static int arena_add(Vmem *vm, const char *call, uintptr_t base, size_t size, int vmflag)
{
    VmemMisuseKind kind;
    const char *why = span_problem(base, size, vm->quantum, vmflag, &kind);
    if (why != NULL) {
        vmem_report(vm, call, base, size, kind, why);
        return -VMEM_ERR_INVALID;
    }

    /* An overlap is looked for before anything else, so that the misuse
     * takes no tag and installs no hash table the arena was waiting for
     * (and is reported as what it is when no tag can be had); and again
     * once the stash is full, as the fill may drop the lock. */
    uintptr_t last = base + (size - 1);
    VmemIrqState state = vmem_port_lock(&vm->vm_lock);
    bool overlaps = span_overlaps(vm, base, last);
    vmem_port_unlock(&vm->vm_lock, state);
    int result = 0;
    if (!overlaps) {
        Leftovers left;
        state = lock_with_hash_table(vm, vmflag, &left);
        if (!vmem_stash_fill(vm, &state, vmflag)) {
            result = -VMEM_ERR_NO_MEM;
        } else if (span_overlaps(vm, base, last)) {
            overlaps = true;
        } else {
            span_add(vm, base, size, 0);
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
    if (!usable(vmp, "vmem_add_range", base, size))
        return -VMEM_ERR_INVALID;
    return arena_add(vmp, "vmem_add_range", base, size, vmflag);
}

void *vmem_add(Vmem *vmp, void *addr, size_t size, int vmflag)
{
    if (!usable(vmp, "vmem_add", (uintptr_t)addr, size))
        return NULL;
    if (arena_add(vmp, "vmem_add", (uintptr_t)addr, size, vmflag) != 0)
        return NULL;
    return addr;
}

/* ---- Creation and destruction ---------------------------------------------- */

static void user_stat(Vmem *vm, VmemStat *out);

static void arena_locks_fini(Vmem *vm)
{
#if VMEM_PORT_CAN_SLEEP
    vmem_port_cond_fini(&vm->vm_cv);
#endif
    vmem_port_lock_fini(&vm->vm_lock);
}

/* What is wrong with the arguments of vmem_init (or of vmem_create, whose
 * storage does not exist yet: vmem NULL), or NULL; sets *kind. */
static const char *init_problem(const Vmem *vmem, uintptr_t base, size_t size, size_t quantum,
                                VmemAlloc *afunc, VmemFree *ffunc, const Vmem *source,
                                int vmflag, VmemMisuseKind *kind)
{
    *kind = VMEM_MISUSE_BAD_ARGUMENT;
    if (!is_pow2(quantum))
        return "quantum is not a power of two";
    /* An empty initial span is allowed: the spans may all come later. */
    const char *why = span_problem(base, size != 0 ? size : quantum, quantum, vmflag, kind);
    if (why != NULL)
        return why;
    if ((afunc == NULL) != (source == NULL))
        return "an import function needs a source arena, and a source an import function";
    if (ffunc != NULL && afunc == NULL)
        return "a give-back function without an import function";
    if (source != NULL && source == vmem)
        return "an arena cannot import from itself";
    if (source != NULL && source->vm_magic != VMEM_MAGIC) {
        *kind = VMEM_MISUSE_NOT_ARENA;
        return "the source arena is not initialised or was destroyed";
    }
    return NULL;
}

int vmem_init(Vmem *vmem, const char *name, void *base, size_t size, size_t quantum,
              VmemAlloc *afunc, VmemFree *ffunc, Vmem *source, size_t qcache_max, int vmflag)
{
    static const char call[] = "vmem_init";
    uintptr_t b = (uintptr_t)base;
    if (!vmem_library_ready()) {
        vmem_report(NULL, call, b, size, VMEM_MISUSE_NOT_BOOTSTRAPPED,
                    "vmem_bootstrap() has not been called");
        return -VMEM_ERR_INVALID;
    }
    VmemMisuseKind kind = VMEM_MISUSE_BAD_ARGUMENT;
    const char *why = vmem == NULL ? "the arena storage is NULL"
                                   : init_problem(vmem, b, size, quantum, afunc, ffunc, source,
                                                  vmflag, &kind);
    if (why != NULL) {
        vmem_report(NULL, call, b, size, kind, why);
        return -VMEM_ERR_INVALID;
    }

    copy_name(vmem->name, name != NULL ? name : "(anonymous)", sizeof(vmem->name));
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
    /* An arena created with a policy that needs a free-segment index builds
     * it from the start rather than on first use. */
    vmem->vm_state = ((vmflag & VM_BESTFIT) ? VMEM_STATE_SIZE_INDEXED : 0) |
                     ((vmflag & (VM_FIRSTFIT | VM_ENDALLOC)) ? VMEM_STATE_ADDR_INDEXED : 0);
    vmem->vm_quantum_shift = log2_floor(quantum);
    vmem->vm_seg_first = vmem->vm_seg_last = NULL;
    vmem->vm_span_first = NULL;
    for (size_t i = 0; i < VMEM_FREELISTS; i++)
        vmem->vm_freelist[i] = NULL;
    for (size_t i = 0; i < VMEM_FREEMAP_WORDS; i++)
        vmem->vm_freemap[i] = 0;
    vmem->vm_free_by_addr = vmem->vm_free_by_size = NULL;
    vmem->vm_rotor = 0;
    vmem->vm_rotor_tag = NULL;
    vmem->vm_stash = NULL;
    vmem->vm_stash_count = 0;
    vmem->vm_nsegs = 0;
    vmem->vm_next_created = NULL;
    vmem->vm_qcache = NULL;
    vmem->vm_qcache_pages = 0;
    vmem->vm_qcache_waiters = 0;
    vmem->vm_slab_bytes = vmem->vm_slabs_made = vmem->vm_slabs_freed = 0;
    vmem->vm_ximport = NULL;
    vmem->vm_import_quantum = 0;
    vmem->vm_hash_hint = 0;
    vmem->vm_waiters = 0;
    vmem->vm_importers = 0;
    vmem_hash_init(vmem);
    vmem_port_lock_init(&vmem->vm_lock);
#if VMEM_PORT_CAN_SLEEP
    vmem_port_cond_init(&vmem->vm_cv);
#endif
    vmem->vm_magic = VMEM_MAGIC;

    if (size != 0) {
        int result = arena_add(vmem, call, b, size, vmflag);
        if (result != 0) {
            VmemIrqState state = vmem_port_lock(&vmem->vm_lock);
            VmemTag *tags = vmem_stash_detach(vmem, true);
            vmem->vm_magic = 0;
            vmem_port_unlock(&vmem->vm_lock, state);
            vmem_pool_return(tags);
            arena_locks_fini(vmem);
            return result;
        }
    }
    if (source != NULL) {
        /* The source may not be destroyed while this arena lives. */
        VmemIrqState state = vmem_port_lock(&source->vm_lock);
        source->vm_importers++;
        vmem_port_unlock(&source->vm_lock, state);
    }
    return 0;
}

Vmem *vmem_create(const char *name, void *base, size_t size, size_t quantum, VmemAlloc *afunc,
                  VmemFree *ffunc, Vmem *source, size_t qcache_max, int vmflag)
{
    if (!vmem_library_ready()) {
        vmem_report(NULL, "vmem_create", (uintptr_t)base, size, VMEM_MISUSE_NOT_BOOTSTRAPPED,
                    "vmem_bootstrap() has not been called");
        return NULL;
    }
    /* Checked before storage is taken, so that misuse takes nothing. */
    VmemMisuseKind kind;
    const char *why = init_problem(NULL, (uintptr_t)base, size, quantum, afunc, ffunc, source,
                                   vmflag, &kind);
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

/* Why vmem_destroy() refuses vmp, or NULL: arenas still importing from it
 * (their next import would call into a destroyed arena), or segments still
 * allocated (busy). Locked. */
static const char *destroy_problem(const Vmem *vmp, bool busy)
{
    if (vmp->vm_importers != 0)
        return "the arena is the source of an arena that still exists: destroy that one first";
    if (busy)
        return "the arena still has allocated segments";
    return NULL;
}

/* What keeps vmp from taking import settings, or NULL. Checked unlocked:
 * a source is set at vmem_init and stays. */
static const char *import_setting_problem(const Vmem *vmp)
{
    if (vmp->source == NULL)
        return "the arena has no source to import from";
    return NULL;
}

int vmem_set_ximport(Vmem *vmp, VmemXImport *ximport, VmemFree *release)
{
    static const char call[] = "vmem_set_ximport";
    if (!usable(vmp, call, 0, 0))
        return -VMEM_ERR_INVALID;
    const char *why = ximport == NULL ? "the import function is NULL" : import_setting_problem(vmp);
    if (why == NULL) {
        /* Spans already imported must go back the way they came. */
        VmemIrqState state = vmem_port_lock(&vmp->vm_lock);
        if (vmp->stat.import != 0) {
            why = "the arena already holds imported spans";
        } else {
            vmp->vm_ximport = ximport;
            vmp->free = release;
        }
        vmem_port_unlock(&vmp->vm_lock, state);
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
    if (!usable(vmp, call, 0, quantum))
        return -VMEM_ERR_INVALID;
    const char *why = import_setting_problem(vmp);
    if (why == NULL && (!is_pow2(quantum) || quantum < vmp->quantum))
        why = "the import quantum is not a power of two at least the arena's quantum";
    if (why != NULL) {
        vmem_report(vmp, call, 0, quantum, VMEM_MISUSE_BAD_ARGUMENT, why);
        return -VMEM_ERR_INVALID;
    }
    VmemIrqState state = vmem_port_lock(&vmp->vm_lock);
    vmp->vm_import_quantum = quantum > vmp->quantum ? quantum : 0;
    vmem_port_unlock(&vmp->vm_lock, state);
    return 0;
}

void vmem_destroy(Vmem *vmp)
{
    static const char call[] = "vmem_destroy";
    if (!usable(vmp, call, 0, 0))
        return;
    /* Cached objects are free: only live ones make the arena busy, and a
     * busy arena keeps its caches as they are. */
    VmemStat user;
    user_stat(vmp, &user);
    VmemIrqState state = vmem_port_lock(&vmp->vm_lock);
    const char *why = destroy_problem(vmp, user.in_use != 0);
    vmem_port_unlock(&vmp->vm_lock, state);
    if (why != NULL) {
        vmem_report(vmp, call, 0, user.in_use, VMEM_MISUSE_DESTROY_BUSY, why);
        return;
    }
    vmem_qcache_drain(vmp, true);
    state = vmem_port_lock(&vmp->vm_lock);
    why = destroy_problem(vmp, vmp->stat.in_use != 0 || vmp->vm_hash_count != 0);
    if (why != NULL) {
        size_t in_use = vmp->stat.in_use;
        vmem_port_unlock(&vmp->vm_lock, state);
        vmem_report(vmp, call, 0, in_use, VMEM_MISUSE_DESTROY_BUSY, why);
        return;
    }
    /* Imported spans go home one at a time, each with the lock dropped. */
    for (;;) {
        VmemTag *marker = vmp->vm_span_first;
        while (marker != NULL && !(marker->flags & TAG_IMPORTED))
            marker = marker->u.span.next;
        if (marker == NULL || (vmp->free == NULL && !(marker->flags & TAG_XALLOC)))
            break;
        GiveBack give;
        span_remove_free(vmp, marker, marker->seg_next, &give);
        vmem_port_unlock(&vmp->vm_lock, state);
        give_back(vmp, &give);
        state = vmem_port_lock(&vmp->vm_lock);
    }
    VmemTag *tags = vmem_stash_detach(vmp, true);
    for (VmemTag *tag = vmp->vm_seg_first, *next; tag != NULL; tag = next) {
        next = tag->seg_next;
        tag->u.pool_next = tags;
        tags = tag;
    }
    void *tables[2];
    size_t table_bytes[2];
    vmem_hash_fini(vmp, tables, table_bytes);
    vmp->vm_magic = 0;
    vmem_port_unlock(&vmp->vm_lock, state);

    arena_locks_fini(vmp);
    if (vmp->source != NULL) {
        state = vmem_port_lock(&vmp->source->vm_lock);
        vmp->source->vm_importers--;
        vmem_port_unlock(&vmp->source->vm_lock, state);
    }
    vmem_qcache_fini(vmp);
    vmem_pool_return(tags);
    for (int i = 0; i < 2; i++)
        if (tables[i] != NULL)
            vmem_port_page_free(tables[i], pages_for(table_bytes[i]));
    if (vmp->vm_state & VMEM_STATE_CREATED)
        vmem_storage_free(vmp);
}

/* ---- Queries -------------------------------------------------------------- */

/* What user_stat() reads under the arena lock. */
typedef struct {
    VmemStat stat;
    size_t slab_bytes, slabs_made, slabs_freed;
} ArenaView;

static void arena_view(Vmem *vm, ArenaView *view)
{
    VmemIrqState state = vmem_port_lock(&vm->vm_lock);
    /* Field by field: a struct assignment may become a memcpy call. */
    view->stat.in_use = vm->stat.in_use;
    view->stat.import = vm->stat.import;
    view->stat.total = vm->stat.total;
    view->stat.alloc = vm->stat.alloc;
    view->stat.free = vm->stat.free;
    view->slab_bytes = vm->vm_slab_bytes;
    view->slabs_made = vm->vm_slabs_made;
    view->slabs_freed = vm->vm_slabs_freed;
    vmem_port_unlock(&vm->vm_lock, state);
}

static bool views_equal(const ArenaView *a, const ArenaView *b)
{
    return a->stat.in_use == b->stat.in_use && a->stat.total == b->stat.total &&
           a->stat.import == b->stat.import && a->stat.alloc == b->stat.alloc &&
           a->stat.free == b->stat.free && a->slabs_made == b->slabs_made &&
           a->slabs_freed == b->slabs_freed;
}

/* The arena's stats as its callers see them: objects sitting in the
 * quantum caches are free, slabs are not allocations. A snapshot even
 * while other CPUs use the caches (vmem_qcache.c, point 6): the caches'
 * counters are accepted when they settled between two equal views of the
 * arena, which then held still throughout; else, after a few tries, the
 * cached bytes are clamped to the slabs holding them. No lock held. */
static void user_stat(Vmem *vm, VmemStat *out)
{
    ArenaView before, after;
    VmemQcacheCounts cached;
    for (int attempt = 0; attempt < 4; attempt++) {
        arena_view(vm, &before);
        bool settled = vmem_qcache_counts(vm, &cached);
        arena_view(vm, &after);
        if (settled && views_equal(&before, &after))
            break;
    }
    size_t bytes = cached.bytes < after.slab_bytes ? cached.bytes : after.slab_bytes;
    /* Field by field: a struct assignment may become a memcpy call. */
    out->import = after.stat.import;
    out->total = after.stat.total;
    out->in_use = after.stat.in_use - after.slab_bytes + bytes;
    out->alloc = after.stat.alloc - after.slabs_made + cached.allocs;
    out->free = after.stat.free - after.slabs_freed + cached.frees;
}

int vmem_stat(Vmem *vmp, VmemStat *stat)
{
    if (!usable(vmp, "vmem_stat", 0, 0))
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
    if (!usable(vmp, "vmem_size", 0, 0))
        return 0;
    VmemStat stat;
    user_stat(vmp, &stat);
    size_t size = 0;
    if (typemask & VMEM_ALLOC)
        size += stat.in_use;
    if (typemask & VMEM_FREE)
        size += stat.total - stat.in_use;
    return size;
}

void vmem_reap(Vmem *vmp)
{
    if (usable(vmp, "vmem_reap", 0, 0))
        vmem_qcache_drain(vmp, false);
}

bool vmem_contains(Vmem *vmp, void *addr, size_t size)
{
    if (!usable(vmp, "vmem_contains", (uintptr_t)addr, size))
        return false;
    VmemIrqState state = vmem_port_lock(&vmp->vm_lock);
    bool inside = span_containing(vmp, (uintptr_t)addr, size != 0 ? size : 1) != NULL;
    vmem_port_unlock(&vmp->vm_lock, state);
    return inside;
}
