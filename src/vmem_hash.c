/*
 * vmem_hash.c - the hash of allocated segments, keyed by address: resizing
 * and the checks. Lookup, unlink and insert are inline in vmem_internal.h.
 *
 * 1. Layout. A table is a power of two of chain heads; entries chain
 *    through their tags' bt_u.hash_next, newest first. A key's bucket is the
 *    top bits of its quantum number times 2^64/phi (vmem_hash_head). A
 *    lookup returns the link pointing at the entry (VmemHashWhere), so the
 *    free that checked the size unlinks it with one store.
 *
 * 2. Resizing. A table doubles when it holds more entries than buckets and
 *    halves under a quarter full (a one-page table goes back to the
 *    embedded heads under half their number), never at once: inserts go
 *    to the new table, and each insert or remove first moves up to
 *    MIGRATE_ENTRIES entries of the old one, in bucket order (the cursor
 *    vm_hash_migrated). A lookup walks the old bucket unless the cursor
 *    has passed it, then the new one. A migration ends long before the
 *    count can reach the next limit, and none starts while one is under
 *    way: at most two tables, and no operation rehashes a whole table.
 *
 * 3. Memory. Tables come from the page source, which may not be called
 *    under the arena lock: past a limit the arena records the bytes it
 *    wants (vm_hash_hint); the next allocation allocates them unlocked and
 *    installs them locked (vmem_hash_install), which decides again.
 *    Retired tables go back after unlocking. Frees never allocate (a
 *    kernel's page source frees with vmem_free), and an insert that gets
 *    no bigger table lengthens chains. VMEM_HASH_EMBEDDED heads live in
 *    the arena: a new arena allocates nothing, and shrinking back into
 *    them is inline. The page source's arena, which mostly frees, gets
 *    its smaller tables from vmem_release_pages() (vmem_tags.c).
 *
 * Invariants (vmem_hash_check verifies them): every entry is an allocated
 * segment in its own bucket's chain; old buckets below the cursor are
 * empty; vm_hash_count counts the entries; every allocated segment is
 * found, exactly once.
 */
#include "vmem_internal.h"

#define MIGRATE_ENTRIES 4
#define MIGRATE_BUCKETS 4
/* Tables from the page source are whole pages. */
#define PAGE_BUCKETS (VMEM_PAGE_SIZE / sizeof(VmemTag *))
/* Keeps bucket counts, and their byte sizes, far from overflowing. */
#define MAX_BUCKETS ((size_t)1 << (sizeof(size_t) * 8 - 8))

_Static_assert(VMEM_HASH_EMBEDDED >= 4 && (VMEM_HASH_EMBEDDED & (VMEM_HASH_EMBEDDED - 1)) == 0,
               "the embedded table is a power of two of at least 4 heads");
_Static_assert(PAGE_BUCKETS > 2 * VMEM_HASH_EMBEDDED, "a page-source table beats the embedded one");

typedef VmemHashTable Table;

static size_t buckets_of(const Table *t) { return (size_t)1 << (64 - t->ht_shift); }

static size_t table_bytes(const Table *t) { return buckets_of(t) * sizeof(VmemTag *); }

/* Field by field: a struct assignment may become a memcpy call. */
static void set_table(Table *t, VmemTag **heads, unsigned shift)
{
    t->ht_bucket = heads;
    t->ht_shift = shift;
}

static void new_table(Table *t, VmemTag **heads, size_t buckets)
{
    for (size_t b = 0; b < buckets; b++)
        heads[b] = NULL;
    set_table(t, heads, 64 - log2_floor(buckets));
}

static size_t grow_limit(size_t buckets) { return buckets; }

static size_t smaller_than(size_t buckets)
{
    return buckets / 2 < PAGE_BUCKETS ? VMEM_HASH_EMBEDDED : buckets / 2;
}

static size_t shrink_limit(size_t buckets)
{
    return buckets <= VMEM_HASH_EMBEDDED ? 0 : grow_limit(smaller_than(buckets)) / 2;
}

/* Buckets a resized table should have, or 0 for none. */
static size_t wanted_buckets(const Vmem *vm)
{
    size_t count = vm->vm_hash_count, buckets = buckets_of(&vm->vm_hash);
    if (count > vm->vm_hash_grow_at) {
        /* Normally one doubling; a table that could not grow for a while
         * catches up at once, to at most 3/4 of the limit. */
        size_t bigger = buckets * 2 < PAGE_BUCKETS ? PAGE_BUCKETS : buckets * 2;
        while (count > grow_limit(bigger) / 4 * 3 && bigger < MAX_BUCKETS)
            bigger *= 2;
        return bigger;
    }
    return count < vm->vm_hash_shrink_at ? smaller_than(buckets) : 0;
}

void vmem_hash_refresh_hint(Vmem *vm)
{
    size_t buckets = wanted_buckets(vm);
    size_t bytes = buckets <= VMEM_HASH_EMBEDDED ? 0 : buckets * sizeof(VmemTag *);
    __atomic_store_n(&vm->vm_hash_hint, bytes, __ATOMIC_RELAXED);
}

/* Caches the counts at which the arena wants a resize (none while one is
 * under way), so the check each operation makes is one comparison. */
static void update_limits(Vmem *vm)
{
    size_t buckets = buckets_of(&vm->vm_hash);
    bool busy = vmem_hash_migrating(vm) || vmem_hash_has_retired(vm);
    vm->vm_hash_grow_at = busy || buckets >= MAX_BUCKETS ? SIZE_MAX : grow_limit(buckets);
    vm->vm_hash_shrink_at = busy ? 0 : shrink_limit(buckets);
    vmem_hash_refresh_hint(vm);
}

void vmem_hash_init(Vmem *vm)
{
    new_table(&vm->vm_hash, vm->vm_hash_embedded, VMEM_HASH_EMBEDDED);
    set_table(&vm->vm_hash_old, NULL, 0);
    set_table(&vm->vm_hash_retired, NULL, 0);
    vm->vm_hash_migrated = vm->vm_hash_count = 0;
    update_limits(vm);
}

/* Moves up to `entries` entries from at most `buckets` old buckets, from
 * the cursor on, to the current table; retires the old table once empty. */
static void migrate(Vmem *vm, size_t entries, size_t buckets)
{
    Table *old = &vm->vm_hash_old;
    for (; buckets > 0; buckets--) {
        VmemTag **head = &old->ht_bucket[vm->vm_hash_migrated];
        for (VmemTag *tag; entries > 0 && (tag = *head) != NULL; entries--) {
            *head = tag->bt_u.hash_next;
            VmemTag **to = vmem_hash_head(vm, &vm->vm_hash, tag->bt_base);
            tag->bt_u.hash_next = *to;
            *to = tag;
        }
        if (*head != NULL)
            return;
        if (++vm->vm_hash_migrated == buckets_of(old)) {
            if (old->ht_bucket != vm->vm_hash_embedded)
                set_table(&vm->vm_hash_retired, old->ht_bucket, old->ht_shift);
            set_table(old, NULL, 0);
            vm->vm_hash_migrated = 0;
            update_limits(vm);
            return;
        }
    }
}

/* A shrinking table is sparse: a step visits more of its buckets, in
 * proportion, so the removals that brought the count under the limit
 * are enough to empty it. */
void vmem_hash_migrate_step(Vmem *vm)
{
    size_t old = buckets_of(&vm->vm_hash_old), cur = buckets_of(&vm->vm_hash);
    migrate(vm, MIGRATE_ENTRIES, MIGRATE_BUCKETS * (old > cur ? old / cur : 1));
}

/* Starts a resize into `heads`, `buckets` of them (cleared here). */
static void begin_migration(Vmem *vm, VmemTag **heads, size_t buckets)
{
    set_table(&vm->vm_hash_old, vm->vm_hash.ht_bucket, vm->vm_hash.ht_shift);
    vm->vm_hash_migrated = 0;
    new_table(&vm->vm_hash, heads, buckets);
    update_limits(vm);
}

bool vmem_hash_install(Vmem *vm, void *table, size_t bytes)
{
    /* Any table the count fits serves: it may have moved a little since
     * the size was chosen. A smaller one must leave room for the inserts
     * that may come while the larger drains into it. */
    size_t buckets = bytes / sizeof(VmemTag *), count = vm->vm_hash_count;
    size_t current = buckets_of(&vm->vm_hash);
    bool fits = !vmem_hash_migrating(vm) && !vmem_hash_has_retired(vm) && is_pow2(buckets) &&
                buckets >= PAGE_BUCKETS && buckets <= MAX_BUCKETS && buckets != current &&
                (buckets > current ? count <= grow_limit(buckets) && count >= shrink_limit(buckets)
                                   : count <= grow_limit(buckets) / 2);
    if (!fits) {
        vmem_hash_refresh_hint(vm); /* the count may have come back */
        return false;
    }
    begin_migration(vm, (VmemTag **)table, buckets);
    return true;
}

/* Shrinking back into the embedded heads needs no memory: done inline. */
static bool shrink_inline(Vmem *vm)
{
    if (vmem_hash_migrating(vm) || wanted_buckets(vm) != VMEM_HASH_EMBEDDED)
        return false;
    begin_migration(vm, vm->vm_hash_embedded, VMEM_HASH_EMBEDDED);
    return true;
}

bool vmem_hash_migrate_some(Vmem *vm, size_t buckets)
{
    if (vmem_hash_migrating(vm) || shrink_inline(vm))
        migrate(vm, SIZE_MAX, buckets);
    return vmem_hash_migrating(vm);
}

void vmem_hash_after_remove(Vmem *vm)
{
    if (vmem_hash_migrating(vm))
        vmem_hash_migrate_step(vm);
    else if (!shrink_inline(vm))
        vmem_hash_refresh_hint(vm); /* a smaller table from the page source */
}

size_t vmem_hash_table_bytes(const Vmem *vm) { return table_bytes(&vm->vm_hash); }

void *vmem_hash_take_retired(Vmem *vm, size_t *bytes)
{
    void *table = vm->vm_hash_retired.ht_bucket;
    *bytes = table != NULL ? table_bytes(&vm->vm_hash_retired) : 0;
    if (table != NULL) {
        set_table(&vm->vm_hash_retired, NULL, 0);
        update_limits(vm);
    }
    return table;
}

VmemTag *vmem_hash_find_migrating(const Vmem *vm, uintptr_t addr, VmemHashWhere *where)
{
    VmemTag **old = vmem_hash_head(vm, &vm->vm_hash_old, addr);
    VmemTag *tag = NULL;
    if ((size_t)(old - vm->vm_hash_old.ht_bucket) >= vm->vm_hash_migrated)
        tag = vmem_hash_find_in(old, addr, where);
    return tag != NULL ? tag : vmem_hash_find_in(vmem_hash_head(vm, &vm->vm_hash, addr), addr, where);
}

VmemTag *vmem_hash_lookup(const Vmem *vm, uintptr_t addr)
{
    VmemHashWhere where;
    return vmem_hash_find(vm, addr, &where);
}

void vmem_hash_stats(const Vmem *vm, VmemHashStats *stats)
{
    stats->count = vm->vm_hash_count;
    stats->buckets = buckets_of(&vm->vm_hash);
    stats->old_buckets = vmem_hash_migrating(vm) ? buckets_of(&vm->vm_hash_old) : 0;
    stats->migrated = vm->vm_hash_migrated;
}

/* Verifies one table; buckets below `first` must be empty (migrated). */
static const VmemTag *check_table(const Vmem *vm, const Table *t, size_t first, size_t *count,
                                  const char **why)
{
    for (size_t b = 0; b < buckets_of(t); b++) {
        for (VmemTag *tag = t->ht_bucket[b]; tag != NULL; tag = tag->bt_u.hash_next) {
            if (++*count > vm->vm_nsegs)
                *why = "hash holds more entries than the arena has segments (a cycle?)";
            else if (b < first)
                *why = "hash entry left behind by the migration";
            else if (tag->bt_type != SEG_ALLOC)
                *why = "hash holds a segment that is not allocated";
            else if (vmem_hash_head(vm, t, tag->bt_base) != &t->ht_bucket[b])
                *why = "hash entry in another key's chain";
            if (*why != NULL)
                return tag;
        }
    }
    return NULL;
}

const VmemTag *vmem_hash_check(const Vmem *vm, size_t *count, const char **why)
{
    *count = 0;
    *why = NULL;
    const VmemTag *bad = check_table(vm, &vm->vm_hash, 0, count, why);
    if (*why == NULL && vmem_hash_migrating(vm))
        bad = check_table(vm, &vm->vm_hash_old, vm->vm_hash_migrated, count, why);
    if (*why != NULL)
        return bad;
    if (*count != vm->vm_hash_count) {
        *why = "hash entry count differs from its tables";
        return NULL;
    }
    /* With the counts equal, finding each allocated segment once proves
     * there is no stray or duplicate entry. The caller has checked the
     * segment list, so this walk ends. */
    for (const VmemTag *tag = vm->vm_seg_first; tag != NULL; tag = tag->bt_next) {
        if (tag->bt_type == SEG_ALLOC && vmem_hash_lookup(vm, tag->bt_base) != tag) {
            *why = "allocated segment not found in the hash";
            return tag;
        }
    }
    return NULL;
}

void vmem_hash_fini(Vmem *vm, void *tables[2], size_t bytes[2])
{
    const Table *t[2] = {&vm->vm_hash, &vm->vm_hash_old};
    for (int i = 0; i < 2; i++) {
        bool own = t[i]->ht_bucket != NULL && t[i]->ht_bucket != vm->vm_hash_embedded;
        tables[i] = own ? t[i]->ht_bucket : NULL;
        bytes[i] = own ? table_bytes(t[i]) : 0;
    }
    vmem_hash_init(vm);
}
