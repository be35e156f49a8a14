/*
 * vmem_segment.c - an arena's segments: the segment list, the span list,
 * the free-segment indexes, and the two changes every operation makes to
 * them - carving an allocation out of a free segment and freeing one with
 * coalescing.
 *
 * Invariants (vmem_check verifies each):
 *  - vm_seg_first .. vm_seg_last lists every span marker and segment in
 *    address order; a span's marker comes right before the segments that
 *    tile it exactly, and no two free segments are neighbours in the list.
 *  - vm_span_first lists the span markers in address order.
 *  - Every free segment is in each index the arena keeps (vm_state): its
 *    size class's freelist, with the class's bit set in vm_freemap exactly
 *    when the list is not empty; the address tree; the size tree. An index
 *    is built on first need by vmem_index_build() and kept from then on.
 *  - vm_nsegs counts the segments; stat.total and stat.import the units of
 *    all spans and of imported ones.
 * Every function here runs with the arena locked and takes its new tags
 * from the arena's stash, which the caller has filled.
 */
#include "vmem_internal.h"

/* Links tag in after prev (NULL: first). */
static void seg_insert_after(Vmem *vm, VmemTag *prev, VmemTag *tag)
{
    VMEM_ASSERT(prev == NULL || (prev->bt_type == SEG_SPAN ? prev->bt_base <= tag->bt_base
                                                      : tag_last(prev) < tag->bt_base));
    VmemTag *next = prev != NULL ? prev->bt_next : vm->vm_seg_first;
    tag->bt_prev = prev;
    tag->bt_next = next;
    if (prev != NULL)
        prev->bt_next = tag;
    else
        vm->vm_seg_first = tag;
    if (next != NULL)
        next->bt_prev = tag;
    else
        vm->vm_seg_last = tag;
}

HOT_INLINE void seg_unlink(Vmem *vm, VmemTag *tag)
{
    if (tag->bt_prev != NULL)
        tag->bt_prev->bt_next = tag->bt_next;
    else
        vm->vm_seg_first = tag->bt_next;
    if (tag->bt_next != NULL)
        tag->bt_next->bt_prev = tag->bt_prev;
    else
        vm->vm_seg_last = tag->bt_prev;
}

VmemTag *vmem_span_containing(const Vmem *vm, uintptr_t addr, size_t size)
{
    uintptr_t last = addr + (size - 1);
    if (last < addr)
        return NULL;
    for (VmemTag *span = vm->vm_span_first; span != NULL; span = span->bt_u.span.next)
        if (addr >= span->bt_base && last <= tag_last(span))
            return span;
    return NULL;
}

bool vmem_span_overlaps(const Vmem *vm, uintptr_t base, uintptr_t last)
{
    for (VmemTag *span = vm->vm_span_first; span != NULL; span = span->bt_u.span.next)
        if (base <= tag_last(span) && span->bt_base <= last)
            return true;
    return false;
}

VmemTag *vmem_span_find(const Vmem *vm, uintptr_t base, size_t size)
{
    for (VmemTag *span = vm->vm_span_first; span != NULL; span = span->bt_u.span.next)
        if (span->bt_base == base && span->bt_size == size)
            return span;
    return NULL;
}

/* ---- Free-segment indexes --------------------------------------------------- */

/* Puts tag at the head of the freelist of class c, its size's class. */
static void freelist_insert_class(Vmem *vm, VmemTag *tag, unsigned c)
{
    VmemTag **head = &vm->vm_freelist[c];
    tag->bt_u.free.list_next = *head;
    if (*head != NULL)
        (*head)->bt_u.free.list_pprev = &tag->bt_u.free.list_next;
    tag->bt_u.free.list_pprev = head;
    *head = tag;
    vm->vm_freemap[c / FREEMAP_BITS] |= (size_t)1 << (c % FREEMAP_BITS);
}

static void freelist_remove(Vmem *vm, VmemTag *tag)
{
    VmemTag *next = tag->bt_u.free.list_next;
    *tag->bt_u.free.list_pprev = next;
    if (next != NULL) {
        next->bt_u.free.list_pprev = tag->bt_u.free.list_pprev;
        return; /* the list keeps a member: its bit stays */
    }
    /* Only the last member's removal can empty the list. */
    unsigned c = size_class(tag->bt_size);
    if (vm->vm_freelist[c] == NULL)
        vm->vm_freemap[c / FREEMAP_BITS] &= ~((size_t)1 << (c % FREEMAP_BITS));
}

/* Adds free segment tag to the indexes in `which`. */
HOT_INLINE void index_add(Vmem *vm, VmemTag *tag, unsigned which)
{
    if (which & VMEM_STATE_LISTED)
        freelist_insert_class(vm, tag, size_class(tag->bt_size));
    if (which & VMEM_STATE_ADDR_INDEXED)
        vmem_tree_insert_addr(vm, tag);
    if (which & VMEM_STATE_SIZE_INDEXED)
        vmem_size_insert(vm, tag);
}

HOT_INLINE void index_insert(Vmem *vm, VmemTag *tag)
{
    VMEM_ASSERT(tag->bt_type != SEG_SPAN);
    tag->bt_type = SEG_FREE;
    tag->bt_flags = 0;
    index_add(vm, tag, vm->vm_state);
}

HOT_INLINE void index_remove(Vmem *vm, VmemTag *tag)
{
    VMEM_ASSERT(tag->bt_type == SEG_FREE);
    if (vmem_indexed(vm, VMEM_STATE_LISTED))
        freelist_remove(vm, tag);
    if (vmem_indexed(vm, VMEM_STATE_ADDR_INDEXED))
        vmem_tree_remove_addr(vm, tag);
    if (vmem_indexed(vm, VMEM_STATE_SIZE_INDEXED))
        vmem_size_remove(vm, tag);
}

/* Builds one index of the free segments once, on a request's first need;
 * from then on every change keeps it current (theory statement, 3). The
 * walk goes down the addresses, so that each list starts at its lowest
 * segment, as in an arena that kept its lists from the start. */
void vmem_index_build(Vmem *vm, unsigned which)
{
    VMEM_ASSERT_LOCKED(vm);
    VMEM_ASSERT(!vmem_indexed(vm, which));
    vm->vm_state |= which;
    for (VmemTag *tag = vm->vm_seg_last; tag != NULL; tag = tag->bt_prev)
        if (tag->bt_type == SEG_FREE)
            index_add(vm, tag, which);
}

/* Gives a free segment a new range that keeps its place in address order
 * (it shrank, or grew into space no free segment occupies). */
HOT_INLINE void index_resize(Vmem *vm, VmemTag *tag, uintptr_t base, size_t size)
{
    unsigned c = size_class(size);
    bool relist = vmem_indexed(vm, VMEM_STATE_LISTED) && c != size_class(tag->bt_size);
    if (vmem_indexed(vm, VMEM_STATE_SIZE_INDEXED))
        vmem_size_remove(vm, tag);
    if (relist)
        freelist_remove(vm, tag);
    tag->bt_base = base;
    tag->bt_size = size;
    if (vmem_indexed(vm, VMEM_STATE_ADDR_INDEXED))
        vmem_tree_refresh_addr(vm, tag);
    if (vmem_indexed(vm, VMEM_STATE_SIZE_INDEXED))
        vmem_size_insert(vm, tag);
    if (relist)
        freelist_insert_class(vm, tag, c);
}

/* ---- Spans ------------------------------------------------------------------ */

VmemTag *vmem_span_add(Vmem *vm, uintptr_t base, size_t size, uint8_t flags)
{
    VMEM_ASSERT_LOCKED(vm);
    VMEM_ASSERT(vm->vm_stash_count >= 2 && !vmem_span_overlaps(vm, base, base + (size - 1)));
    VmemTag *prev_span = NULL, *next_span = vm->vm_span_first;
    for (; next_span != NULL && next_span->bt_base < base; next_span = next_span->bt_u.span.next)
        prev_span = next_span;
    VmemTag *marker = vmem_stash_take(vm);
    VmemTag *seg = vmem_stash_take(vm);

    marker->bt_type = SEG_SPAN;
    marker->bt_flags = flags;
    marker->bt_base = seg->bt_base = base;
    marker->bt_size = seg->bt_size = size;
    marker->bt_u.span.prev = prev_span;
    marker->bt_u.span.next = next_span;
    *(prev_span != NULL ? &prev_span->bt_u.span.next : &vm->vm_span_first) = marker;
    if (next_span != NULL)
        next_span->bt_u.span.prev = marker;
    /* The new span's tags go right before the next span's marker. */
    seg_insert_after(vm, next_span != NULL ? next_span->bt_prev : vm->vm_seg_last, marker);
    seg_insert_after(vm, marker, seg);
    index_insert(vm, seg);
    vm->vm_nsegs++;
    vm->stat.total += size;
    if (flags & TAG_IMPORTED)
        vm->stat.import += size;
    return seg;
}

/* An imported span goes back through the arena's give-back function,
 * except that one the library imported itself with vmem_xalloc_addr
 * (TAG_XALLOC) goes back with the matching vmem_xfree when that function
 * is vmem_free or none. */
VmemFree *vmem_span_release(const Vmem *vm, uint8_t span_flags)
{
    if ((span_flags & TAG_XALLOC) && (vm->free == NULL || vm->free == vmem_free))
        return vmem_xfree;
    return vm->free;
}

void vmem_span_remove(Vmem *vm, VmemTag *marker, VmemTag *seg, GiveBack *give)
{
    VMEM_ASSERT(marker->bt_type == SEG_SPAN && (marker->bt_flags & TAG_IMPORTED) &&
                seg->bt_type == SEG_FREE && seg->bt_prev == marker && seg->bt_size == marker->bt_size);
    give->base = marker->bt_base;
    give->size = marker->bt_size;
    give->release = vmem_span_release(vm, marker->bt_flags);
    index_remove(vm, seg);
    seg_unlink(vm, seg);
    seg_unlink(vm, marker);
    *(marker->bt_u.span.prev != NULL ? &marker->bt_u.span.prev->bt_u.span.next : &vm->vm_span_first) =
        marker->bt_u.span.next;
    if (marker->bt_u.span.next != NULL)
        marker->bt_u.span.next->bt_u.span.prev = marker->bt_u.span.prev;
    vm->vm_nsegs--;
    vm->stat.total -= marker->bt_size;
    vm->stat.import -= marker->bt_size;
    if (vm->vm_rotor_tag == seg || vm->vm_rotor_tag == marker)
        vm->vm_rotor_tag = NULL; /* next-fit restarts from the bottom */
    vmem_stash_put(vm, seg);
    vmem_stash_put(vm, marker);
}

void vmem_give_back(Vmem *vm, const GiveBack *give)
{
    give->release(vm->source, (void *)give->base, give->size);
}

/* ---- Carving and freeing -------------------------------------------------- */

VmemTag *vmem_seg_carve(Vmem *vm, VmemTag *seg, uintptr_t addr, size_t size, uint8_t flags)
{
    VMEM_ASSERT_LOCKED(vm);
    VMEM_ASSERT(seg->bt_type == SEG_FREE && vm->vm_stash_count >= 2);
    uintptr_t seg_base = seg->bt_base, seg_last = tag_last(seg);
    uintptr_t alloc_last = addr + (size - 1);
    bool lead = addr > seg_base, trail = alloc_last < seg_last;
    VmemTag *alloc;

    if (!lead && !trail) {
        index_remove(vm, seg); /* taken whole: its range is the allocation's */
        alloc = seg;
    } else {
        alloc = vmem_stash_take(vm);
        alloc->bt_base = addr;
        alloc->bt_size = size;
        vm->vm_nsegs++;
        if (!lead) {
            index_resize(vm, seg, alloc_last + 1, seg_last - alloc_last);
            seg_insert_after(vm, seg->bt_prev, alloc);
            /* The rotor tag must not move up past the rotor: space freed
             * between them later would be skipped by next-fit. */
            if (vm->vm_rotor_tag == seg)
                vm->vm_rotor_tag = alloc;
        } else {
            index_resize(vm, seg, seg_base, addr - seg_base);
            if (trail) {
                VmemTag *rest = vmem_stash_take(vm);
                rest->bt_base = alloc_last + 1;
                rest->bt_size = seg_last - alloc_last;
                seg_insert_after(vm, seg, rest);
                index_insert(vm, rest);
                vm->vm_nsegs++;
            }
            seg_insert_after(vm, seg, alloc);
        }
    }
    alloc->bt_type = SEG_ALLOC;
    alloc->bt_flags = flags;
    vmem_hash_insert(vm, alloc);
    vm->stat.in_use += size;
    vm->stat.alloc++;
    if (flags & TAG_SLAB) {
        vm->vm_slab_bytes += size;
        vm->vm_slabs_made++;
    }
    return alloc;
}

bool vmem_seg_free(Vmem *vm, VmemTag *tag, GiveBack *give)
{
    VMEM_ASSERT_LOCKED(vm);
    VMEM_ASSERT(tag->bt_type == SEG_ALLOC);
    /* A merged tag's place as the next-fit rotor goes to the survivor. */
    VmemTag *next = tag->bt_next;
    if (is_free(next)) {
        index_remove(vm, next);
        seg_unlink(vm, next);
        tag->bt_size += next->bt_size;
        if (vm->vm_rotor_tag == next)
            vm->vm_rotor_tag = tag;
        vmem_stash_put(vm, next);
        vm->vm_nsegs--;
    }
    VmemTag *prev = tag->bt_prev;
    if (is_free(prev)) {
        seg_unlink(vm, tag);
        index_resize(vm, prev, prev->bt_base, prev->bt_size + tag->bt_size);
        if (vm->vm_rotor_tag == tag)
            vm->vm_rotor_tag = prev;
        vmem_stash_put(vm, tag);
        vm->vm_nsegs--;
        tag = prev;
    } else {
        index_insert(vm, tag);
    }
    VMEM_ASSERT(!is_free(tag->bt_prev) && !is_free(tag->bt_next));
    /* A merge that leaves an imported span wholly free gives it back. */
    VmemTag *marker = tag->bt_prev;
    if (vm->free == NULL || marker == NULL || marker->bt_type != SEG_SPAN ||
        !(marker->bt_flags & TAG_IMPORTED) || marker->bt_size != tag->bt_size)
        return false;
    vmem_span_remove(vm, marker, tag, give);
    return true;
}
