/*
 * vmem_place.c - where a request goes: the allocation policies, and the
 * arithmetic of placing a request inside one free range.
 *
 * vmem_place() picks a free segment and an address in it, or fails; it
 * changes nothing but the indexes it builds on first need (vmem_segment.c).
 * The arithmetic works on inclusive last addresses, so a range that ends
 * at the top of the address space (base + size == 2^N) is like any other
 * and nothing overflows: each addition is bounded by a value known to be
 * representable or checked for wrap.
 */
#include "vmem_internal.h"

/* Members of the request's own freelist instant-fit looks at before it
 * takes a segment from a larger list (a constant: O(1) stays O(1)). */
#define INSTANT_FIT_PEEK 4
/* Free segments next-fit walks past before it asks the index. */
#define NEXT_FIT_WALK 32
/* Large-enough segments a constrained search tries in policy order before
 * it settles for the first comfortable one. */
#define SEARCH_BUDGET 64

/* ---- Fitting a request into one range --------------------------------------- */

static bool crosses(const VmemRequest *req, uintptr_t addr)
{
    return req->nocross != 0 && ((addr ^ (addr + (req->size - 1))) & ~(req->nocross - 1)) != 0;
}

/* Smallest a >= from with a == phase (mod align); false on wrap. */
static bool align_up(const VmemRequest *req, uintptr_t from, uintptr_t *out)
{
    *out = from + ((req->phase - from) & (req->align - 1));
    return *out >= from;
}

/* Largest a <= from with a == phase (mod align); false on wrap. */
static bool align_down(const VmemRequest *req, uintptr_t from, uintptr_t *out)
{
    *out = from - ((from - req->phase) & (req->align - 1));
    return *out <= from;
}

/* Does [addr, addr + size) end at or before last? */
static bool ends_by(const VmemRequest *req, uintptr_t addr, uintptr_t last)
{
    return addr <= last && last - addr >= req->size - 1;
}

static bool fit_bottom_up(const VmemRequest *req, uintptr_t lo, uintptr_t hi, uintptr_t *addrp)
{
    if (!align_up(req, lo, addrp) || !ends_by(req, *addrp, hi))
        return false;
    if (!crosses(req, *addrp))
        return true;
    /* Restart at the boundary crossed. Phase and size are the same in
     * every nocross window, so a second crossing would repeat forever:
     * one retry decides. */
    uintptr_t window_last = *addrp | (req->nocross - 1);
    return window_last != UINTPTR_MAX && align_up(req, window_last + 1, addrp) &&
           ends_by(req, *addrp, hi) && !crosses(req, *addrp);
}

static bool fit_top_down(const VmemRequest *req, uintptr_t lo, uintptr_t hi, uintptr_t *addrp)
{
    if (!align_down(req, hi - (req->size - 1), addrp) || *addrp < lo)
        return false;
    if (!crosses(req, *addrp))
        return true;
    /* End just below the boundary crossed. */
    uintptr_t boundary = (*addrp + (req->size - 1)) & ~(req->nocross - 1);
    return boundary >= req->size && align_down(req, boundary - req->size, addrp) &&
           *addrp >= lo && !crosses(req, *addrp);
}

bool vmem_fit_in(const VmemRequest *req, uintptr_t base, size_t size, uintptr_t *addrp)
{
    uintptr_t lo = base > req->min ? base : req->min;
    uintptr_t last = base + (size - 1);
    uintptr_t hi = last < req->max_last ? last : req->max_last;
    if (lo > hi || hi - lo < req->size - 1)
        return false;
    return req->top_down ? fit_top_down(req, lo, hi, addrp) : fit_bottom_up(req, lo, hi, addrp);
}

static size_t add_saturating(size_t a, size_t b) { return a > SIZE_MAX - b ? SIZE_MAX : a + b; }

/* Bases and phases are multiples of the quantum, so reaching the next
 * aligned address costs at most align - quantum; a crossed nocross
 * boundary at most one more window. */
size_t vmem_fit_comfortable_size(const VmemRequest *req)
{
    size_t need = add_saturating(req->size, req->align - req->quantum);
    return req->nocross != 0 ? add_saturating(need, req->nocross) : need;
}

/* ---- Policies ---------------------------------------------------------------- */

/* Where req fits in free segment tag, if it does. A plain request fits
 * at the first aligned address at or above both the base and req->min,
 * if the segment holds it from there. */
HOT_INLINE bool fit_segment(const VmemRequest *req, const VmemTag *tag, uintptr_t *addrp)
{
    if (tag->bt_size < req->size)
        return false;
    if (!req->plain)
        return vmem_fit_in(req, tag->bt_base, tag->bt_size, addrp);
    if (tag->bt_base >= req->min && req->align == req->quantum) {
        *addrp = tag->bt_base; /* the common case, without the arithmetic */
        return true;
    }
    uintptr_t lowest = tag->bt_base > req->min ? tag->bt_base : req->min;
    uintptr_t addr = (lowest + (req->align - 1)) & ~(req->align - 1);
    if (addr < lowest || addr - tag->bt_base > tag->bt_size - req->size)
        return false;
    *addrp = addr;
    return true;
}

/* Tries the heads of the first `tries` non-empty freelists from class c
 * up: when every member of c is long enough, the first head fits. */
HOT_INLINE VmemTag *freelist_heads_fit(Vmem *vm, const VmemRequest *req, unsigned c, int tries,
                                       uintptr_t *addrp)
{
    for (c = vmem_first_nonempty_class(vm, c); c < VMEM_FREELISTS && tries-- > 0;
         c = vmem_first_nonempty_class(vm, c + 1))
        if (fit_segment(req, vm->vm_freelist[c], addrp))
            return vm->vm_freelist[c];
    return NULL;
}

/* A fit among the first few of the request's own class (closer than a
 * larger class, which it leaves whole), else the head of one of the first
 * two classes that all fit (the second when the first sits at address 0). */
VmemTag *vmem_place_instant(Vmem *vm, const VmemRequest *req, uintptr_t *addrp)
{
    VMEM_ASSERT(req->plain && req->align == req->quantum && req->min <= 1);
    VMEM_ASSERT(vmem_indexed(vm, VMEM_STATE_LISTED));
    unsigned own = size_class(req->size);
    if (size_class_exact(req->size))
        return freelist_heads_fit(vm, req, own, 2, addrp);
    int peek = INSTANT_FIT_PEEK;
    for (VmemTag *tag = vm->vm_freelist[own]; tag != NULL && peek-- > 0;
         tag = tag->bt_u.free.list_next)
        if (fit_segment(req, tag, addrp))
            return tag;
    return freelist_heads_fit(vm, req, own + 1, 2, addrp);
}

/* Instant-fit for a plain request: the constant-time step, else a search
 * of the one class that may hold a fit, through an index if kept. */
static VmemTag *instant_fit(Vmem *vm, const VmemRequest *req, uintptr_t *addrp)
{
    VmemTag *tag = vmem_place_instant(vm, req, addrp);
    if (tag != NULL)
        return tag;
    bool exhausted;
    if (vmem_indexed(vm, VMEM_STATE_SIZE_INDEXED))
        return vmem_size_best_fit(vm, req, req->size, SIZE_MAX, &exhausted, addrp);
    if (vmem_indexed(vm, VMEM_STATE_ADDR_INDEXED))
        return vmem_tree_first_fit(vm, req, req->size, SIZE_MAX, &exhausted, addrp);
    for (tag = vm->vm_freelist[size_class(req->size)]; tag != NULL; tag = tag->bt_u.free.list_next)
        if (fit_segment(req, tag, addrp))
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
    if (req->align == req->quantum && req->nocross == 0 && req->min <= 1 &&
        req->max_last == UINTPTR_MAX)
        return vmem_size_best_fit(vm, req, req->size, SIZE_MAX, &exhausted, addrp);
    VmemTag *tag = vmem_size_best_fit(vm, req, req->size, SEARCH_BUDGET, &exhausted, addrp);
    if (tag != NULL || !exhausted)
        return tag;
    tag = vmem_size_best_fit(vm, req, vmem_fit_comfortable_size(req), SEARCH_BUDGET,
                             &exhausted, addrp);
    if (tag != NULL)
        return tag;
    /* No comfortable segment: examine every candidate, in address order. */
    vmem_index_ensure(vm, VMEM_STATE_ADDR_INDEXED);
    return address_order_fit(vm, req, addrp);
}

/* Walks the segment list from the rotor tag to the top, then from the
 * bottom to the rotor: in an ID arena the next free ID is almost always a
 * neighbour, so O(1) without an index; after NEXT_FIT_WALK segments the
 * index answers (the same first fit). The rotor tag never starts above
 * the rotor: it is the last next-fit segment, the free segment that
 * absorbed it, or the piece carved from that segment's front. */
static VmemTag *next_fit(Vmem *vm, const VmemRequest *req, uintptr_t *addrp)
{
    uintptr_t rotor = vm->vm_rotor;
    VmemRequest after_rotor;
    request_copy(&after_rotor, req);
    if (rotor > after_rotor.min)
        after_rotor.min = rotor;
    int budget = NEXT_FIT_WALK;
    VmemTag *tag = vm->vm_rotor_tag != NULL ? vm->vm_rotor_tag : vm->vm_seg_first;
    for (; tag != NULL; tag = tag->bt_next) {
        if (budget-- == 0)
            goto use_index;
        if (tag->bt_type == SEG_FREE && fit_segment(&after_rotor, tag, addrp))
            return tag;
    }
    for (tag = vm->vm_seg_first; tag != NULL && tag->bt_base < rotor; tag = tag->bt_next) {
        if (budget-- == 0)
            goto use_index;
        if (tag->bt_type == SEG_FREE && fit_segment(req, tag, addrp))
            return tag;
    }
    return NULL;
use_index:
    /* After the rotor, else from the bottom (wrap around). */
    vmem_index_ensure(vm, VMEM_STATE_ADDR_INDEXED);
    if (rotor > req->min && after_rotor.min <= after_rotor.max_last &&
        (tag = address_order_fit(vm, &after_rotor, addrp)) != NULL)
        return tag;
    return address_order_fit(vm, req, addrp);
}

VmemTag *vmem_place(Vmem *vm, const VmemRequest *req, int vmflag, uintptr_t *addrp)
{
    if (!(vmflag & (VM_BESTFIT | VM_NEXTFIT | VM_FIRSTFIT)) && !req->top_down) {
        vmem_index_ensure(vm, VMEM_STATE_LISTED);
        if (req->plain && req->align == req->quantum && req->min <= 1)
            return instant_fit(vm, req, addrp);
        /* Constrained instant-fit: a segment of the comfortable size fits
         * wherever it lies, so the freelists answer in O(1). Prefer the
         * next power of two: carving an aligned piece out of the middle of
         * a barely comfortable segment leaves two slivers and touches more
         * (scattered) tags; the exact class is the fallback. */
        size_t comfortable = vmem_fit_comfortable_size(req);
        size_t whole = is_pow2(comfortable) || comfortable > SIZE_MAX / 2
                           ? comfortable
                           : (size_t)1 << (log2_floor(comfortable) + 1);
        VmemTag *tag = freelist_heads_fit(vm, req, fitting_class(whole), 4, addrp);
        if (tag == NULL && whole != comfortable)
            tag = freelist_heads_fit(vm, req, fitting_class(comfortable), 4, addrp);
        if (tag != NULL)
            return tag;
    }
    if (vmflag & VM_NEXTFIT)
        return next_fit(vm, req, addrp);
    if (vmflag & VM_BESTFIT) {
        vmem_index_ensure(vm, VMEM_STATE_SIZE_INDEXED);
        return best_fit(vm, req, addrp);
    }
    vmem_index_ensure(vm, VMEM_STATE_ADDR_INDEXED);
    return address_order_fit(vm, req, addrp);
}
