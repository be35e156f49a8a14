/*
 * vmem_fit.c - where a request can be placed inside one free range.
 *
 * Owns the arithmetic of align, phase, nocross, minaddr and maxaddr. Every
 * computation works on inclusive last addresses, so a range that ends at
 * the very top of the address space (base + size == 2^N) is handled like
 * any other and nothing here can overflow: each addition is either bounded
 * by a value already known to be representable or checked for wrap.
 */
#include "vmem_internal.h"

/* True if [addr, addr + size) crosses a multiple of nocross. */
static bool crosses(const VmemRequest *req, uintptr_t addr)
{
    if (req->nocross == 0)
        return false;
    uintptr_t last = addr + (req->size - 1);
    return ((addr ^ last) & ~(req->nocross - 1)) != 0;
}

/* Smallest a >= from with a == phase (mod align), or false on wrap. */
static bool align_up(const VmemRequest *req, uintptr_t from, uintptr_t *out)
{
    uintptr_t a = from + ((req->phase - from) & (req->align - 1));
    if (a < from)
        return false;
    *out = a;
    return true;
}

/* Largest a <= from with a == phase (mod align), or false on wrap. */
static bool align_down(const VmemRequest *req, uintptr_t from, uintptr_t *out)
{
    uintptr_t a = from - ((from - req->phase) & (req->align - 1));
    if (a > from)
        return false;
    *out = a;
    return true;
}

/* Does [addr, addr + size) end at or before last? */
static bool ends_by(const VmemRequest *req, uintptr_t addr, uintptr_t last)
{
    return addr <= last && last - addr >= req->size - 1;
}

static bool fit_bottom_up(const VmemRequest *req, uintptr_t lo, uintptr_t hi, uintptr_t *addrp)
{
    uintptr_t a;
    if (!align_up(req, lo, &a) || !ends_by(req, a, hi))
        return false;
    if (crosses(req, a)) {
        /* Restart at the boundary the placement crossed. Because phase and
         * size are the same in every nocross window, a second crossing
         * would repeat forever: one retry decides. */
        uintptr_t window_last = a | (req->nocross - 1);
        if (window_last == UINTPTR_MAX)
            return false;
        if (!align_up(req, window_last + 1, &a) || !ends_by(req, a, hi) || crosses(req, a))
            return false;
    }
    *addrp = a;
    return true;
}

static bool fit_top_down(const VmemRequest *req, uintptr_t lo, uintptr_t hi, uintptr_t *addrp)
{
    uintptr_t a;
    if (!align_down(req, hi - (req->size - 1), &a) || a < lo)
        return false;
    if (crosses(req, a)) {
        /* End just below the boundary the placement crossed. */
        uintptr_t boundary = (a + (req->size - 1)) & ~(req->nocross - 1);
        if (boundary < req->size)
            return false;
        if (!align_down(req, boundary - req->size, &a) || a < lo || crosses(req, a))
            return false;
    }
    *addrp = a;
    return true;
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

size_t vmem_fit_comfortable_size(const VmemRequest *req)
{
    /* Segment bases and phases are multiples of the quantum, so reaching the
     * next aligned address costs at most align - quantum; a crossed nocross
     * boundary costs at most one more window. */
    size_t need = add_saturating(req->size, req->align - req->quantum);
    if (req->nocross != 0)
        need = add_saturating(need, req->nocross);
    return need;
}
