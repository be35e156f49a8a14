/*
 * vmem_debug.c - looking at an arena: vmem_dump, vmem_check, vmem_walk,
 * and the small formatter they share (the library has no libc printf).
 *
 * vmem_check re-derives every redundant piece of arena state from the
 * segment list and compares: span tiling, the no-adjacent-free-segments
 * rule, each tag's mark of a free predecessor, each freelist and the
 * bitmap, both AVL indexes, the hash, the counters and the stats. It
 * reports the first difference instead of crashing, and bounds every walk
 * so a corrupted list cannot loop forever.
 */
#include "vmem_internal.h"

/* ---- Formatting ------------------------------------------------------------ */

/* A line being built in a caller's buffer; output is cut, never overrun. */
typedef struct {
    char *buf;
    size_t cap;
    size_t len;
} Fmt;

static void fmt_str(Fmt *f, const char *s)
{
    while (*s != '\0' && f->len + 1 < f->cap)
        f->buf[f->len++] = *s++;
    f->buf[f->len] = '\0';
}

/* Divides *value by base (at most 16) in place and returns the remainder,
 * 16 bits at a time: only 32-bit divisions, because a 64-bit one on a
 * 32-bit target is a call to libgcc's __udivdi3, which a kernel linking
 * libvmem.a need not have. */
static unsigned divide_small(uint64_t *value, unsigned base)
{
    uint64_t quotient = 0;
    uint32_t rest = 0;
    for (int shift = 48; shift >= 0; shift -= 16) {
        uint32_t part = (rest << 16) | (uint32_t)((*value >> shift) & 0xffff);
        quotient |= (uint64_t)(part / base) << shift;
        rest = part % base;
    }
    *value = quotient;
    return rest;
}

static void fmt_digits(Fmt *f, uint64_t value, unsigned base)
{
    static const char digits[] = "0123456789abcdef";
    char tmp[24];
    size_t at = sizeof(tmp) - 1;
    tmp[at] = '\0';
    do {
        tmp[--at] = digits[divide_small(&value, base)];
    } while (value != 0);
    fmt_str(f, &tmp[at]);
}

static void fmt_u64(Fmt *f, uint64_t value) { fmt_digits(f, value, 10); }

static void fmt_hex(Fmt *f, uint64_t value)
{
    fmt_str(f, "0x");
    fmt_digits(f, value, 16);
}

/* "[base, end)" where end may be 2^N: printed as base + size in hex, with
 * the top of the address space spelled out rather than wrapped to 0. */
static void fmt_range(Fmt *f, uintptr_t base, size_t size)
{
    fmt_str(f, "[");
    fmt_hex(f, base);
    fmt_str(f, ", ");
    uintptr_t end = base + size;
    if (end == 0 && size != 0)
        fmt_str(f, "top");
    else
        fmt_hex(f, end);
    fmt_str(f, ")");
}

static const char *type_name(uint8_t type)
{
    switch (type) {
    case SEG_ALLOC: return "alloc";
    case SEG_FREE: return "free";
    case SEG_SPAN: return "span";
    }
    return "?";
}

/* ---- vmem_dump ---------------------------------------------------------------- */

#define LINE_MAX 192

static void line_start(Fmt *f, char *buf)
{
    f->buf = buf;
    f->cap = LINE_MAX;
    f->len = 0;
    buf[0] = '\0';
}

static void line_end(Fmt *f)
{
    fmt_str(f, "\n");
    vmem_port_puts(f->buf);
}

static void stat_field(Fmt *f, const char *name, uint64_t value, bool hex)
{
    fmt_str(f, name);
    if (hex)
        fmt_hex(f, value);
    else
        fmt_u64(f, value);
}

void vmem_dump(Vmem *vmp)
{
    char buf[LINE_MAX];
    Fmt f;
    if (!vmem_usable(vmp, "vmem_dump", 0, 0))
        return;
    line_start(&f, buf);
    size_t pool_tags = vmem_pool_free_tags();
    VmemStat user;
    vmem_stat(vmp, &user);
    VmemIrqState state = vmem_lock(vmp);

    fmt_str(&f, "vmem arena \"");
    fmt_str(&f, vmp->name);
    fmt_str(&f, "\": quantum ");
    fmt_hex(&f, vmp->quantum);
    fmt_str(&f, ", source ");
    if (vmp->source != NULL) {
        fmt_str(&f, "\"");
        fmt_str(&f, vmp->source->name);
        fmt_str(&f, "\"");
    } else {
        fmt_str(&f, "none");
    }
    line_end(&f);

    line_start(&f, buf);
    stat_field(&f, "  stats: in_use ", user.in_use, true);
    stat_field(&f, ", free ", user.total - user.in_use, true);
    stat_field(&f, ", total ", user.total, true);
    stat_field(&f, ", import ", user.import, true);
    stat_field(&f, ", allocs ", user.alloc, false);
    stat_field(&f, ", frees ", user.free, false);
    line_end(&f);
    if (vmem_qcache_count(vmp) != 0) {
        line_start(&f, buf);
        stat_field(&f, "  quantum caches: ", vmem_qcache_count(vmp), false);
        stat_field(&f, " up to ", vmem_qcache_count(vmp) * vmp->quantum, true);
        stat_field(&f, ", slabs ", vmp->vm_slabs_made - vmp->vm_slabs_freed, false);
        stat_field(&f, " (", vmp->vm_slab_bytes, true);
        stat_field(&f, "), cached free ", vmp->stat.in_use - user.in_use, true);
        stat_field(&f, ", cached allocs ", user.alloc - (vmp->stat.alloc - vmp->vm_slabs_made),
                   false);
        line_end(&f);
    }

    for (const VmemTag *tag = vmp->vm_seg_first; tag != NULL; tag = tag->bt_next) {
        line_start(&f, buf);
        fmt_str(&f, tag->bt_type == SEG_SPAN ? "  span  " : "    ");
        if (tag->bt_type != SEG_SPAN) {
            fmt_str(&f, type_name(tag->bt_type));
            fmt_str(&f, tag->bt_type == SEG_FREE ? "  " : " ");
        }
        fmt_range(&f, tag->bt_base, tag->bt_size);
        stat_field(&f, " size ", tag->bt_size, true);
        if (tag->bt_type == SEG_SPAN && (tag->bt_flags & TAG_IMPORTED))
            fmt_str(&f, " imported");
        if (tag->bt_type == SEG_ALLOC && (tag->bt_flags & TAG_XALLOC))
            fmt_str(&f, " xalloc");
        line_end(&f);
    }

    line_start(&f, buf);
    fmt_str(&f, "  freelists:");
    bool any_free = false;
    for (size_t w = 0; w < VMEM_FREEMAP_WORDS; w++)
        any_free |= vmp->vm_freemap[w] != 0;
    if (!(vmp->vm_state & VMEM_STATE_LISTED))
        fmt_str(&f, " not kept (no instant-fit request yet)");
    else if (!any_free)
        fmt_str(&f, " all empty");
    /* Counted by power of two, whatever the classes within one are. */
    size_t count = 0;
    for (unsigned c = 1; c < VMEM_FREELISTS; c++) {
        for (const VmemTag *tag = vmp->vm_freelist[c]; tag != NULL; tag = tag->bt_u.free.list_next)
            count++;
        unsigned exp = log2_floor(class_min_size(c));
        bool last_of_exp = c + 1 == VMEM_FREELISTS || log2_floor(class_min_size(c + 1)) != exp;
        if (last_of_exp && count != 0) {
            fmt_str(&f, " 2^");
            fmt_u64(&f, exp);
            fmt_str(&f, ":");
            fmt_u64(&f, count);
            count = 0;
        }
    }
    line_end(&f);

    line_start(&f, buf);
    VmemHashStats hash;
    vmem_hash_stats(vmp, &hash);
    stat_field(&f, "  hash: ", hash.count, false);
    stat_field(&f, " segments in ", hash.buckets, false);
    fmt_str(&f, " buckets");
    if (hash.old_buckets != 0) {
        stat_field(&f, ", migrating from ", hash.old_buckets, false);
        stat_field(&f, " (", hash.migrated, false);
        fmt_str(&f, " moved)");
    }
    stat_field(&f, "; tags: ", vmp->vm_nsegs, false);
    stat_field(&f, " segments, stash ", vmp->vm_stash_count, false);
    stat_field(&f, ", pool ", pool_tags, false);
    stat_field(&f, ", tag size ", sizeof(VmemTag) + sizeof(VmemTagLinks), false);
    line_end(&f);
    vmem_unlock(vmp, state);
}

/* ---- vmem_walk --------------------------------------------------------------- */

void vmem_walk(Vmem *vmp, int typemask, VmemWalker *func, void *arg)
{
    if (!vmem_usable(vmp, "vmem_walk", 0, 0))
        return;
    if (func == NULL) {
        vmem_report(vmp, "vmem_walk", 0, 0, VMEM_MISUSE_BAD_ARGUMENT, "func is NULL");
        return;
    }
    VmemIrqState state = vmem_lock(vmp);
    for (const VmemTag *tag = vmp->vm_seg_first; tag != NULL; tag = tag->bt_next)
        if (tag->bt_type & typemask)
            func(arg, tag->bt_base, tag->bt_size, tag->bt_type);
    vmem_unlock(vmp, state);
}

/* ---- vmem_check --------------------------------------------------------------- */

typedef struct {
    const char *reason;
    const VmemTag *tag;
} Problem;

static bool problem(Problem *p, const char *reason, const VmemTag *tag)
{
    p->reason = reason;
    p->tag = tag;
    return false;
}

typedef struct {
    size_t spans, free, alloc;
    size_t total, import, in_use;
} Census;

/* Walks the segment list: tiling, order, adjacency, the span list. */
static bool check_segments(const Vmem *vm, Census *c, Problem *p)
{
    size_t limit = 2 * vm->vm_nsegs + 2; /* spans never outnumber segments */
    size_t steps = 0;
    const VmemTag *span = NULL, *prev = NULL, *expect_span = vm->vm_span_first;
    uintptr_t next_base = 0;
    bool span_done = true;

    for (const VmemTag *tag = vm->vm_seg_first; tag != NULL; prev = tag, tag = tag->bt_next) {
        if (++steps > limit)
            return problem(p, "segment list longer than the segment count (a cycle?)", tag);
        if (tag->bt_prev != prev)
            return problem(p, "segment list back link broken", tag);
        if (tag->bt_size == 0 || tag->bt_base % vm->quantum != 0 || tag->bt_size % vm->quantum != 0)
            return problem(p, "segment empty or not a multiple of the quantum", tag);
        if (tag->bt_size - 1 > UINTPTR_MAX - tag->bt_base)
            return problem(p, "segment wraps past the top of the address space", tag);
        if (tag->bt_type == SEG_SPAN) {
            if (!span_done)
                return problem(p, "span not tiled to its end by segments", span);
            if (tag != expect_span)
                return problem(p, "span list and segment list disagree", tag);
            if (span != NULL && tag->bt_base <= tag_last(span))
                return problem(p, "spans overlap or are out of order", tag);
            if (tag->bt_u.span.prev != span)
                return problem(p, "span list back link broken", tag);
            span = tag;
            expect_span = tag->bt_u.span.next;
            next_base = tag->bt_base;
            span_done = false;
            c->spans++;
            c->total += tag->bt_size;
            if (tag->bt_flags & TAG_IMPORTED)
                c->import += tag->bt_size;
            continue;
        }
        if (span == NULL || span_done)
            return problem(p, "segment outside any span", tag);
        if (tag->bt_base != next_base)
            return problem(p, "gap or overlap between segments", tag);
        if (tag_last(tag) > tag_last(span))
            return problem(p, "segment runs past the end of its span", tag);
        if (tag->bt_type == SEG_FREE) {
            if (prev->bt_type == SEG_FREE)
                return problem(p, "two adjacent free segments not coalesced", tag);
            c->free++;
        } else if (tag->bt_type == SEG_ALLOC) {
            c->alloc++;
            c->in_use += tag->bt_size;
        } else {
            return problem(p, "tag of unknown type in the segment list", tag);
        }
        if (tag_last(tag) == tag_last(span))
            span_done = true;
        else
            next_base = tag_last(tag) + 1;
    }
    if (prev != vm->vm_seg_last)
        return problem(p, "segment list tail pointer wrong", prev);
    if (!span_done)
        return problem(p, "span not tiled to its end by segments", span);
    if (expect_span != NULL)
        return problem(p, "span list has spans the segment list lacks", expect_span);
    return true;
}

static bool check_freelists(const Vmem *vm, const Census *c, Problem *p)
{
    /* Until instant-fit first needs them, the lists are empty. */
    size_t expected = (vm->vm_state & VMEM_STATE_LISTED) ? c->free : 0;
    size_t members = 0;
    for (unsigned n = 0; n < VMEM_FREELISTS; n++) {
        if (freemap_has(vm, n) != (vm->vm_freelist[n] != NULL))
            return problem(p, "freelist bitmap disagrees with the lists", vm->vm_freelist[n]);
        VmemTag *const *pprev = &vm->vm_freelist[n];
        for (const VmemTag *tag = vm->vm_freelist[n]; tag != NULL; tag = tag->bt_u.free.list_next) {
            if (++members > expected)
                return problem(p, "freelists hold more than the free segments", tag);
            if (tag->bt_type != SEG_FREE || size_class(tag->bt_size) != n)
                return problem(p, "freelist member not free or in the wrong list", tag);
            if (tag->bt_u.free.list_pprev != pprev)
                return problem(p, "freelist back link broken", tag);
            pprev = &tag->bt_u.free.list_next;
        }
    }
    if (members != expected)
        return problem(p, "a free segment is missing from the freelists", NULL);
    return true;
}

static bool check_indexes(const Vmem *vm, const Census *c, Problem *p)
{
    size_t count;
    const char *why;
    const VmemTag *bad;
    bad = vmem_tree_check_addr(vm, &count, &why);
    if (why != NULL)
        return problem(p, why, bad);
    if (count != ((vm->vm_state & VMEM_STATE_ADDR_INDEXED) ? c->free : 0))
        return problem(p, "address index and free segments differ in number", NULL);
    bad = vmem_size_check(vm, &count, &why);
    if (why != NULL)
        return problem(p, why, bad);
    if (count != ((vm->vm_state & VMEM_STATE_SIZE_INDEXED) ? c->free : 0))
        return problem(p, "size index and free segments differ in number", NULL);
    bad = vmem_hash_check(vm, &count, &why);
    if (why != NULL)
        return problem(p, why, bad);
    if (count != c->alloc)
        return problem(p, "hash and allocated segments differ in number", NULL);
    return true;
}

static bool check_counters(const Vmem *vm, const Census *c, Problem *p)
{
    if (c->free + c->alloc != vm->vm_nsegs)
        return problem(p, "segment count wrong", NULL);
    if (c->in_use != vm->stat.in_use)
        return problem(p, "stat.in_use differs from the allocated segments", NULL);
    if (c->total != vm->stat.total)
        return problem(p, "stat.total differs from the spans", NULL);
    if (c->import != vm->stat.import)
        return problem(p, "stat.import differs from the imported spans", NULL);
    size_t stash = 0;
    for (const VmemTag *tag = vm->vm_stash; tag != NULL; tag = tag->bt_u.pool_next)
        if (++stash > vm->vm_stash_count)
            break;
    if (stash != vm->vm_stash_count)
        return problem(p, "boundary-tag stash count wrong", NULL);
    return true;
}

int vmem_check(Vmem *vmp, VmemCheckReport *report)
{
    Problem p; /* not `= {NULL, NULL}`: that may become a memset call */
    p.reason = NULL;
    p.tag = NULL;
    int result = -VMEM_ERR_NOT_FOUND;
    if (!vmem_usable(vmp, "vmem_check", 0, 0)) {
        p.reason = "not an initialised arena";
        result = -VMEM_ERR_INVALID;
    } else {
        Census c; /* not `= {0}`: that may become a memset call */
        c.spans = c.free = c.alloc = c.total = c.import = c.in_use = 0;
        VmemIrqState state = vmem_lock(vmp);
        if (check_segments(vmp, &c, &p) && check_freelists(vmp, &c, &p) &&
            check_indexes(vmp, &c, &p))
            check_counters(vmp, &c, &p);
        vmem_unlock(vmp, state);
    }
    if (report != NULL) {
        report->reason = p.reason;
        report->addr = p.tag != NULL ? p.tag->bt_base : 0;
        report->size = p.tag != NULL ? p.tag->bt_size : 0;
    }
    return p.reason == NULL ? 0 : result;
}
