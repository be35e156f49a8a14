/*
 * vmem_hash.c - the hash of allocated segments, keyed by address.
 *
 * vmem_free() finds its segment here in O(1) and checks the size against
 * it. The table grows when the load passes 2 per bucket and shrinks when it
 * drops under 1/8, always by a factor of 4, and never all at once: while a
 * resize is under way the old table stays live, and every insert or remove
 * moves the next MIGRATE_STEP old buckets to the new table. An entry sits
 * in the old table if its old bucket has not moved yet, else in the new one;
 * lookups and inserts follow the same rule, so no operation ever pays for a
 * whole-table rehash and no timer is needed.
 *
 * Tables come from the port's page source, which may not be called under
 * the arena lock: each operation records, as it unlocks, the table size
 * the arena would like (vm_hash_hint); the next one allocates that before
 * locking and installs it under the lock (vmem_hash_install), which decides
 * again with the lock held. Retired tables
 * are handed back the same way, after unlocking. The first VMEM_HASH_EMBEDDED
 * buckets live inside the arena, so a new arena allocates nothing.
 *
 * Invariant: the migration finishes long before another resize is due
 * (a resize changes the load by 4x; migration ends after buckets/4 hash
 * operations), so at most two tables exist at any time.
 */
#include "vmem_internal.h"

#define MIGRATE_STEP 4
#define GROW_LOAD 2       /* entries per bucket that trigger growth */
#define SHRINK_DIVISOR 8  /* shrink below 1 entry per 8 buckets */
#define RESIZE_FACTOR 4

static size_t bucket_index(const Vmem *vm, uintptr_t addr, size_t mask)
{
    /* Addresses are multiples of the quantum: drop the zero bits, then
     * multiply by a 64-bit odd constant and fold so high bits matter. */
    uint64_t h = (uint64_t)(addr >> vm->vm_quantum_shift) * 0x9e3779b97f4a7c15ULL;
    h ^= h >> 29;
    return (size_t)h & mask;
}

static size_t buckets_of(size_t mask) { return mask + 1; }

void vmem_hash_init(Vmem *vm)
{
    for (size_t i = 0; i < VMEM_HASH_EMBEDDED; i++)
        vm->vm_hash_embedded[i] = NULL;
    vm->vm_hash = vm->vm_hash_embedded;
    vm->vm_hash_mask = VMEM_HASH_EMBEDDED - 1;
    vm->vm_hash_old = NULL;
    vm->vm_hash_old_mask = 0;
    vm->vm_hash_migrated = 0;
    vm->vm_hash_count = 0;
    vm->vm_hash_retired = NULL;
    vm->vm_hash_retired_bytes = 0;
}

/* The chain that holds, or would hold, addr. */
static VmemTag **chain_of(Vmem *vm, uintptr_t addr)
{
    if (vm->vm_hash_old != NULL) {
        size_t old = bucket_index(vm, addr, vm->vm_hash_old_mask);
        if (old >= vm->vm_hash_migrated)
            return &vm->vm_hash_old[old];
    }
    return &vm->vm_hash[bucket_index(vm, addr, vm->vm_hash_mask)];
}

static void retire(Vmem *vm, struct vmem_tag **table, size_t mask)
{
    if (table == vm->vm_hash_embedded)
        return;
    if (vm->vm_hash_retired != NULL)
        vmem_port_panic("vmem: two hash tables retired in one operation");
    vm->vm_hash_retired = table;
    vm->vm_hash_retired_bytes = buckets_of(mask) * sizeof(VmemTag *);
}

static void migrate_step(Vmem *vm)
{
    if (vm->vm_hash_old == NULL)
        return;
    size_t old_buckets = buckets_of(vm->vm_hash_old_mask);
    for (int step = 0; step < MIGRATE_STEP && vm->vm_hash_migrated < old_buckets; step++) {
        VmemTag *tag = vm->vm_hash_old[vm->vm_hash_migrated];
        vm->vm_hash_old[vm->vm_hash_migrated] = NULL;
        vm->vm_hash_migrated++;
        while (tag != NULL) {
            VmemTag *next = tag->u.hash_next;
            VmemTag **chain = &vm->vm_hash[bucket_index(vm, tag->base, vm->vm_hash_mask)];
            tag->u.hash_next = *chain;
            *chain = tag;
            tag = next;
        }
    }
    if (vm->vm_hash_migrated == old_buckets) {
        retire(vm, vm->vm_hash_old, vm->vm_hash_old_mask);
        vm->vm_hash_old = NULL;
        vm->vm_hash_old_mask = 0;
        vm->vm_hash_migrated = 0;
    }
}

/* Starts a migration to `table` with `buckets` buckets (zeroed here). */
static void begin_migration(Vmem *vm, VmemTag **table, size_t buckets)
{
    for (size_t i = 0; i < buckets; i++)
        table[i] = NULL;
    vm->vm_hash_old = vm->vm_hash;
    vm->vm_hash_old_mask = vm->vm_hash_mask;
    vm->vm_hash_migrated = 0;
    vm->vm_hash = table;
    vm->vm_hash_mask = buckets - 1;
}

/* Buckets a resized table should have, or 0 for none. */
static size_t wanted_buckets(const Vmem *vm)
{
    if (vm->vm_hash_old != NULL || vm->vm_hash_retired != NULL)
        return 0;
    size_t buckets = buckets_of(vm->vm_hash_mask);
    if (vm->vm_hash_count > GROW_LOAD * buckets && buckets <= SIZE_MAX / RESIZE_FACTOR / sizeof(VmemTag *))
        return buckets * RESIZE_FACTOR;
    if (buckets > VMEM_HASH_EMBEDDED && vm->vm_hash_count < buckets / SHRINK_DIVISOR) {
        size_t smaller = buckets / RESIZE_FACTOR;
        return smaller < VMEM_HASH_EMBEDDED ? VMEM_HASH_EMBEDDED : smaller;
    }
    return 0;
}

/* Shrinking back into the embedded buckets needs no memory: do it inline. */
static void maybe_shrink_inline(Vmem *vm)
{
    if (wanted_buckets(vm) == VMEM_HASH_EMBEDDED && vm->vm_hash != vm->vm_hash_embedded)
        begin_migration(vm, vm->vm_hash_embedded, VMEM_HASH_EMBEDDED);
}

size_t vmem_hash_wanted_bytes(const Vmem *vm)
{
    size_t buckets = wanted_buckets(vm);
    if (buckets <= VMEM_HASH_EMBEDDED)
        return 0;
    return buckets * sizeof(VmemTag *);
}

bool vmem_hash_install(Vmem *vm, void *table, size_t bytes)
{
    /* Any table between the shrink and the grow thresholds serves: the
     * count may have moved a little since the size was chosen, and
     * refusing over a single entry would only send the table back. */
    size_t buckets = bytes / sizeof(VmemTag *);
    if (vm->vm_hash_old != NULL || vm->vm_hash_retired != NULL ||
        buckets == buckets_of(vm->vm_hash_mask) || !is_pow2(buckets) ||
        vm->vm_hash_count > GROW_LOAD * buckets ||
        vm->vm_hash_count < buckets / (SHRINK_DIVISOR * RESIZE_FACTOR))
        return false;
    begin_migration(vm, (VmemTag **)table, buckets);
    return true;
}

void *vmem_hash_take_retired(Vmem *vm, size_t *bytes)
{
    void *table = vm->vm_hash_retired;
    *bytes = vm->vm_hash_retired_bytes;
    vm->vm_hash_retired = NULL;
    vm->vm_hash_retired_bytes = 0;
    return table;
}

void vmem_hash_insert(Vmem *vm, VmemTag *tag)
{
    migrate_step(vm);
    VmemTag **chain = chain_of(vm, tag->base);
    tag->u.hash_next = *chain;
    *chain = tag;
    vm->vm_hash_count++;
}

VmemTag *vmem_hash_lookup(Vmem *vm, uintptr_t addr)
{
    for (VmemTag *tag = *chain_of(vm, addr); tag != NULL; tag = tag->u.hash_next)
        if (tag->base == addr)
            return tag;
    return NULL;
}

void vmem_hash_remove(Vmem *vm, VmemTag *tag)
{
    VmemTag **link = chain_of(vm, tag->base);
    while (*link != tag) {
        if (*link == NULL)
            vmem_port_panic("vmem: allocated segment missing from the hash");
        link = &(*link)->u.hash_next;
    }
    *link = tag->u.hash_next;
    vm->vm_hash_count--;
    migrate_step(vm);
    maybe_shrink_inline(vm);
}

size_t vmem_hash_buckets(const Vmem *vm) { return buckets_of(vm->vm_hash_mask); }

static const VmemTag *check_table(const Vmem *vm, VmemTag *const *table, size_t mask,
                                  size_t first, bool is_old, size_t *count, const char **why)
{
    for (size_t i = first; i <= mask; i++) {
        for (const VmemTag *tag = table[i]; tag != NULL; tag = tag->u.hash_next) {
            if (tag->type != SEG_ALLOC) {
                *why = "hash holds a segment that is not allocated";
                return tag;
            }
            if (bucket_index(vm, tag->base, mask) != i) {
                *why = "hash entry in the wrong bucket";
                return tag;
            }
            if (!is_old && vm->vm_hash_old != NULL &&
                bucket_index(vm, tag->base, vm->vm_hash_old_mask) >= vm->vm_hash_migrated) {
                *why = "hash entry moved ahead of its migration";
                return tag;
            }
            if (++*count > vm->vm_nsegs) {
                *why = "hash chain longer than the arena's segments (a cycle?)";
                return tag;
            }
        }
    }
    return NULL;
}

const VmemTag *vmem_hash_check(const Vmem *vm, size_t *count, const char **why)
{
    *count = 0;
    *why = NULL;
    const VmemTag *bad = check_table(vm, vm->vm_hash, vm->vm_hash_mask, 0, false, count, why);
    if (bad == NULL && vm->vm_hash_old != NULL)
        bad = check_table(vm, vm->vm_hash_old, vm->vm_hash_old_mask, vm->vm_hash_migrated, true,
                          count, why);
    if (bad == NULL && *count != vm->vm_hash_count)
        *why = "hash entry count differs from its chains";
    return bad;
}

void vmem_hash_fini(Vmem *vm, void *tables[2], size_t bytes[2])
{
    tables[0] = tables[1] = NULL;
    bytes[0] = bytes[1] = 0;
    if (vm->vm_hash != vm->vm_hash_embedded) {
        tables[0] = vm->vm_hash;
        bytes[0] = buckets_of(vm->vm_hash_mask) * sizeof(VmemTag *);
    }
    if (vm->vm_hash_old != NULL && vm->vm_hash_old != vm->vm_hash_embedded) {
        tables[1] = vm->vm_hash_old;
        bytes[1] = buckets_of(vm->vm_hash_old_mask) * sizeof(VmemTag *);
    }
    vmem_hash_init(vm);
}
