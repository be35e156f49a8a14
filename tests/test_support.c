/*
 * test_support.c - helpers shared by the test suites: snapshots, segment
 * collection, misuse expectations and brute-force constraint arithmetic.
 * See test_support.h. Registers no tests of its own.
 */
#include "test_support.h"

/* ---- Observing an arena ------------------------------------------------ */

struct walk_digest {
    size_t entries;
    uint64_t hash;
};

static uint64_t mix(uint64_t hash, uint64_t value)
{
    /* FNV-style mixing, then a multiply to spread low bits upward. */
    hash ^= value;
    hash *= 0x100000001b3ULL;
    return hash ^ (hash >> 29);
}

static void digest_entry(void *arg, uintptr_t addr, size_t size, int type)
{
    struct walk_digest *digest = arg;
    digest->entries++;
    digest->hash = mix(digest->hash, addr);
    digest->hash = mix(digest->hash, size);
    digest->hash = mix(digest->hash, (uint64_t)type);
}

void ts_snapshot_take(Vmem *vm, struct ts_snapshot *snap)
{
    struct walk_digest digest = {0, 0xcbf29ce484222325ULL};
    snap->in_use = vm->stat.in_use;
    snap->import = vm->stat.import;
    snap->total = vm->stat.total;
    snap->alloc_count = vm->stat.alloc;
    snap->free_count = vm->stat.free;
    snap->size_alloc = vmem_size(vm, VMEM_ALLOC);
    snap->size_free = vmem_size(vm, VMEM_FREE);
    snap->size_total = vmem_size(vm, VMEM_ALLOC | VMEM_FREE);
    vmem_walk(vm, VMEM_ALLOC | VMEM_FREE | VMEM_SPAN, digest_entry, &digest);
    snap->walk_entries = digest.entries;
    snap->walk_hash = digest.hash;
    snap->consistent = vmem_check(vm, NULL) == 0;
}

static bool same_field(const char *field, uint64_t before, uint64_t after)
{
    if (before == after)
        return true;
    vtest_puts("    snapshot differs in ");
    vtest_puts(field);
    ts_note_hex(": before", before);
    ts_note_hex(", after", after);
    vtest_puts("\n");
    return false;
}

bool ts_snapshot_equal(const struct ts_snapshot *before, const struct ts_snapshot *after)
{
    return same_field("stat.in_use", before->in_use, after->in_use) &&
           same_field("stat.import", before->import, after->import) &&
           same_field("stat.total", before->total, after->total) &&
           same_field("stat.alloc", before->alloc_count, after->alloc_count) &&
           same_field("stat.free", before->free_count, after->free_count) &&
           same_field("vmem_size(ALLOC)", before->size_alloc, after->size_alloc) &&
           same_field("vmem_size(FREE)", before->size_free, after->size_free) &&
           same_field("vmem_size(ALLOC|FREE)", before->size_total, after->size_total) &&
           same_field("walk entries", before->walk_entries, after->walk_entries) &&
           same_field("walk hash", before->walk_hash, after->walk_hash) &&
           same_field("vmem_check clean", before->consistent, after->consistent);
}

struct collector {
    struct ts_segment *out;
    size_t cap;
    size_t count;
};

static void collect_entry(void *arg, uintptr_t addr, size_t size, int type)
{
    struct collector *col = arg;
    if (col->count < col->cap) {
        col->out[col->count].addr = addr;
        col->out[col->count].size = size;
        col->out[col->count].type = type;
    }
    col->count++;
}

size_t ts_collect(Vmem *vm, int typemask, struct ts_segment *out, size_t cap)
{
    struct collector col = {out, cap, 0};
    vmem_walk(vm, typemask, collect_entry, &col);
    return col.count;
}

bool ts_stat_is(Vmem *vm, size_t in_use, size_t import, size_t total, size_t alloc_count,
                size_t free_count)
{
    if (vm->stat.in_use == in_use && vm->stat.import == import && vm->stat.total == total &&
        vm->stat.alloc == alloc_count && vm->stat.free == free_count)
        return true;
    vtest_puts("    stat of ");
    vtest_puts(vm->name);
    ts_note_hex(": in_use", vm->stat.in_use);
    ts_note_hex(" (want", in_use);
    ts_note_hex(") import", vm->stat.import);
    ts_note_hex(" (want", import);
    ts_note_hex(") total", vm->stat.total);
    ts_note_hex(" (want", total);
    ts_note_u64(") alloc", vm->stat.alloc);
    ts_note_u64(" (want", alloc_count);
    ts_note_u64(") free", vm->stat.free);
    ts_note_u64(" (want", free_count);
    vtest_puts(")\n");
    return false;
}

bool ts_str_eq(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    while (*a != '\0' && *a == *b) {
        a++;
        b++;
    }
    return *a == *b;
}

/* ---- Misuse reports ---------------------------------------------------- */

void ts_capture_misuse(void) { vtest_env_misuse_capture(true); }

bool ts_misuse_once(VmemMisuseKind kind, const char *call, const char *arena)
{
    size_t count = vtest_env_misuse_count();
    const VmemMisuse *last = vtest_env_misuse_last();
    bool ok = count == 1 && last->kind == kind && ts_str_eq(last->call, call) &&
              last->reason != NULL && last->reason[0] != '\0' && last->arena != NULL &&
              last->arena[0] != '\0' && (arena == NULL || ts_str_eq(last->arena, arena));
    if (ok)
        return true;
    ts_note_u64("    misuse reports", count);
    if (count > 0) {
        ts_note_u64(", last kind", (uint64_t)last->kind);
        ts_note_u64(" (want", (uint64_t)kind);
        vtest_puts("), call ");
        vtest_puts(last->call != NULL ? last->call : "(null)");
        vtest_puts(" (want ");
        vtest_puts(call);
        vtest_puts("), arena ");
        vtest_puts(last->arena != NULL ? last->arena : "(null)");
        vtest_puts(", reason ");
        vtest_puts(last->reason != NULL ? last->reason : "(null)");
    }
    vtest_puts("\n");
    return false;
}

bool ts_misuse_echoes(uintptr_t addr, size_t size)
{
    const VmemMisuse *last = vtest_env_misuse_last();
    if (vtest_env_misuse_count() > 0 && last->addr == addr && last->size == size)
        return true;
    ts_note_hex("    misuse report addr", last->addr);
    ts_note_hex(" (want", addr);
    ts_note_hex(") size", last->size);
    ts_note_hex(" (want", size);
    vtest_puts(")\n");
    return false;
}

/* ---- Constraints ------------------------------------------------------- */

void ts_request_init(struct ts_request *req, size_t size, size_t align)
{
    req->size = size;
    req->align = align;
    req->phase = 0;
    req->nocross = 0;
    req->minaddr = 0;
    req->maxaddr = 0;
    req->not_zero = false;
}

static bool crosses(const struct ts_request *req, uintptr_t addr)
{
    uintptr_t last = addr + (req->size - 1);
    return req->nocross != 0 && ((addr ^ last) & ~(uintptr_t)(req->nocross - 1)) != 0;
}

bool ts_placement_ok(const struct ts_request *req, uintptr_t addr)
{
    if (req->size == 0 || addr > UINTPTR_MAX - (req->size - 1))
        return false;
    if (((addr - req->phase) & (req->align - 1)) != 0)
        return false;
    if (addr < req->minaddr)
        return false;
    if (req->maxaddr != 0 && (req->size > req->maxaddr || addr > req->maxaddr - req->size))
        return false;
    if (req->not_zero && addr == 0)
        return false;
    return !crosses(req, addr);
}

/* The bounds [*lo, *hi] of placement start addresses allowed by the range
 * [start, start + len) and by minaddr / maxaddr. False if empty. */
static bool start_bounds(const struct ts_request *req, uintptr_t start, size_t len,
                         uintptr_t *lo, uintptr_t *hi)
{
    if (req->size == 0 || len < req->size)
        return false;
    if (req->nocross != 0 && req->nocross < req->size)
        return false;
    *lo = start > req->minaddr ? start : req->minaddr;
    *hi = start + (len - req->size); /* start + len <= 2^64: no overflow */
    if (req->maxaddr != 0) {
        if (req->maxaddr < req->size)
            return false;
        if (req->maxaddr - req->size < *hi)
            *hi = req->maxaddr - req->size;
    }
    return *lo <= *hi;
}

bool ts_lowest_placement(const struct ts_request *req, uintptr_t start, size_t len,
                         uintptr_t *addr)
{
    uintptr_t lo, hi;
    if (!start_bounds(req, start, len, &lo, &hi))
        return false;
    uintptr_t at = lo;
    for (;;) {
        uintptr_t off = (at - req->phase) & (req->align - 1);
        if (off != 0) {
            uintptr_t step = req->align - off;
            if (step > hi - at)
                return false;
            at += step;
        }
        if (req->not_zero && at == 0) {
            if (req->align > hi - at)
                return false;
            at += req->align;
            continue;
        }
        if (crosses(req, at)) {
            /* Jump to the next nocross boundary; at strictly increases. */
            uintptr_t block_last = at | (uintptr_t)(req->nocross - 1);
            if (block_last >= hi)
                return false;
            at = block_last + 1;
            continue;
        }
        *addr = at;
        return true;
    }
}

bool ts_highest_placement(const struct ts_request *req, uintptr_t start, size_t len,
                          uintptr_t *addr)
{
    uintptr_t lo, hi;
    if (!start_bounds(req, start, len, &lo, &hi))
        return false;
    uintptr_t at = hi;
    for (;;) {
        uintptr_t off = (at - req->phase) & (req->align - 1);
        if (off > at - lo)
            return false;
        at -= off;
        if (req->not_zero && at == 0)
            return false;
        if (crosses(req, at)) {
            /* End just below the boundary the range crosses; at decreases. */
            uintptr_t boundary = (at + (req->size - 1)) & ~(uintptr_t)(req->nocross - 1);
            if (boundary - lo < req->size)
                return false;
            at = boundary - req->size;
            continue;
        }
        *addr = at;
        return true;
    }
}

/* ---- Diagnostics ------------------------------------------------------- */

void ts_note_u64(const char *label, uint64_t value)
{
    vtest_puts(label);
    vtest_puts(" ");
    vtest_put_u64(value);
}

void ts_note_hex(const char *label, uint64_t value)
{
    vtest_puts(label);
    vtest_puts(" ");
    vtest_put_hex(value);
}

bool ts_policy_choice_ok(const struct ts_request *req, int policy, uintptr_t got,
                         const uintptr_t *start, const size_t *len, size_t count)
{
    uintptr_t lowest = UINTPTR_MAX, highest = 0;
    size_t smallest = SIZE_MAX, got_len = 0;
    bool got_at_edge = false;
    for (size_t i = 0; i < count; i++) {
        uintptr_t low, high;
        if (!ts_lowest_placement(req, start[i], len[i], &low))
            continue;
        /* A range with a lowest placement has a highest one; if the two
         * helpers ever disagree, the check fails rather than guess. */
        if (!ts_highest_placement(req, start[i], len[i], &high))
            return false;
        lowest = low < lowest ? low : lowest;
        highest = high > highest ? high : highest;
        smallest = len[i] < smallest ? len[i] : smallest;
        if (got >= start[i] && got - start[i] < len[i]) {
            got_len = len[i];
            got_at_edge = got == ((policy & VM_ENDALLOC) ? high : low);
        }
    }
    switch (policy) {
    case VM_FIRSTFIT:
        return got == lowest;
    case VM_ENDALLOC:
        return got == highest;
    case VM_BESTFIT:
    case VM_BESTFIT | VM_ENDALLOC:
        return got_len == smallest && got_at_edge;
    default:
        return true;
    }
}
