/*
 * vmem_hash.c - the hash of allocated segments, keyed by address.
 *
 * vmem_free() finds its segment here in O(1) and checks the size against
 * it. With 10^5 live segments and more, every table access is a cache miss,
 * so the layout is chosen for the number of lines a lookup touches: one
 * line of the table, then the tag it was looking for - which the free
 * reads anyway. A chained hash also reads every tag ahead of the right one
 * in its chain, each a full miss.
 *
 * 1. Layout. A table is an array of 64-byte buckets, one cache line each
 *    (page-source tables are page-aligned). A bucket has VMEM_HASH_SLOTS
 *    slots - 7 on LP64, 12 on ILP32 - each a tag pointer and, in the
 *    header at the front of the line, a one-byte fingerprint of the slot's
 *    key: eight bits of its hash, never 0, since 0 marks an empty slot (so
 *    address 0 is a key like any other), nor 1, which lets the lookup use
 *    a shorter byte comparison (vmem_hash_candidates). The header's last
 *    byte is the bucket's probe state (PROBE). A lookup reads the home
 *    bucket and looks only at tags whose fingerprint matches; one that is
 *    not the key costs a miss about once per 254 occupied slots compared.
 *
 *    The table's footprint decides its speed as much as the misses it
 *    saves: at 10^5 segments a table that is twice as large as it need be
 *    loses to the chained hash it replaced, whose 8-byte buckets stayed in
 *    the L2 cache. Hence no stored keys ((key, tag) pairs would take 16
 *    bytes a slot against 9) and a high load, up to 7/8.
 *
 * 2. Probing. A full bucket spills into the next one (linear probing by
 *    bucket, so the next line is usually in the same page) within a window
 *    of PROBE_BUCKETS buckets starting at the home bucket. Each bucket
 *    counts the entries that passed it to land further on (its passing
 *    count, the low bits of the probe byte); a lookup moves on to the next
 *    bucket only while that count is non-zero, so a removal just empties
 *    its slot and decrements the counts on its path: no tombstones, no
 *    entries moved back. A window holds at most (PROBE_BUCKETS - 1) * SLOTS
 *    passers, so the counts never saturate.
 *
 * 3. A full window. An insert whose whole window is full chains the entry
 *    instead, through the tags' u.hash_next, off the tag in slot
 *    (fingerprint mod SLOTS) of its home bucket, and marks the bucket
 *    CHAINED (the high bit of the probe byte). That happens to about one
 *    entry in 100 at a load of 7/8 and practically never at half load;
 *    it is what keeps inserts succeeding when no bigger table can be had
 *    (the page source failing, or only frees and VM_BOOTSTRAP allocations
 *    coming in, which may not allocate). A lookup that misses in the window
 *    of a CHAINED bucket walks that one chain. When an anchor tag is
 *    removed, the head of its chain moves up into its slot - that bucket is
 *    its home, so no passing count changes. An over-full table thus
 *    degrades like a chained hash with SLOTS chains per bucket, needs no
 *    memory, and recovers on the next resize. The mark is cleared only
 *    when the bucket is emptied by a migration: a stale mark costs a lookup
 *    nothing unless the key is absent from the window.
 *
 * 4. Resizing. The table doubles when more than 7/8 of its slots are used
 *    and halves under 1/16, never all at once: while a resize is under way
 *    the old table stays live, inserts go to the new one, and every insert
 *    or remove first moves a bucket's worth of entries (MIGRATE_ENTRIES,
 *    from at most MIGRATE_BUCKETS buckets) from the old table, in bucket
 *    order (the cursor vm_hash_migrated; passing counts stay exact in the
 *    old table too). A lookup tries the old table, then the new. A growing
 *    table of B buckets is emptied in about B operations, while the next
 *    growth needs about 6 * B more inserts; a shrinking one in B / 4. A
 *    resize only starts when no migration is under way, so at most two
 *    tables exist at any time, and no operation ever pays for a
 *    whole-table rehash. (Installing a table does clear it, a memset
 *    under the lock, as the chained hash did.) A table that could not grow
 *    for a while is replaced by one sized for its count at once.
 *
 * 5. Memory. Tables come from the port's page source, which may not be
 *    called under the arena lock: when the count passes a resize limit,
 *    or the limits move, the arena records the table size it would like
 *    (vm_hash_hint); the next allocation allocates that before locking and
 *    installs it under the lock (vmem_hash_install), which decides again
 *    with the lock held. Operations inside the limits never touch the hint.
 *    Retired tables are handed back the same way, after unlocking. Frees
 *    never allocate a table. The first VMEM_HASH_EMBEDDED buckets live
 *    inside the arena, so a new arena allocates nothing; shrinking back
 *    into them needs no memory and happens inline. An arena that only
 *    frees never gets its smaller table that way: vmem_release_pages()
 *    installs it for the page source's arena, whose oversized table would
 *    otherwise keep its pages (vmem_tags.c), and finishes the migration
 *    a few buckets per lock hold (vmem_hash_migrate_some).
 *
 * 6. Hot and cold code. What every vmem_alloc/vmem_free pair runs is
 *    inline in vmem_internal.h: the window probe, an insert into a free
 *    slot of the home bucket, and removal of an entry from its slot. The
 *    lookup a free makes to check its size returns where the entry sits
 *    (VmemHashWhere), so removing it needs no second probe; a free that
 *    turns out to be misuse removes nothing. This file keeps the rest:
 *    anything while a migration is under way, a spill past the home
 *    bucket on insert, overflow chains, resizing and the checks.
 *
 * Invariants (vmem_hash_check verifies them): a slot is empty exactly when
 * its fingerprint is 0; an entry lies in the window of its home bucket and
 * carries its own fingerprint; every passing count is exact; chained
 * entries hang off the right anchor of their home bucket, which is marked
 * CHAINED; old buckets below the cursor are empty; every allocated segment
 * is found, exactly once, and nothing else is in the hash.
 */
#include "vmem_internal.h"

#define SLOTS VMEM_HASH_SLOTS
/* Buckets an entry may be stored in, its home bucket first. */
#define PROBE_BUCKETS 8
/* What one operation moves from the old table to the new: at most a
 * bucket's worth of entries, from at most MIGRATE_BUCKETS buckets. */
#define MIGRATE_ENTRIES SLOTS
#define MIGRATE_BUCKETS 4
/* The last header byte: the passing count and the chained flag. */
#define PROBE (VMEM_HASH_HEADER - 1)
#define PASSING_MASK 0x7f
#define CHAINED 0x80
/* Grow past GROW_NUM / GROW_DEN of the slots, shrink under 1 / SHRINK_DIVISOR. */
#define GROW_NUM 7
#define GROW_DEN 8
#define SHRINK_DIVISOR 16
/* Tables from the page source are whole pages. */
#define PAGE_BUCKETS (VMEM_PAGE_SIZE / sizeof(VmemHashBucket))
/* Keeps bucket counts, and their byte sizes, far from overflowing. */
#define MAX_BUCKETS ((size_t)1 << (sizeof(size_t) * 8 - 8))

_Static_assert(sizeof(VmemHashBucket) == 64, "a hash bucket is one 64-byte cache line");
_Static_assert((PROBE_BUCKETS - 1) * SLOTS <= PASSING_MASK, "passing counts must not saturate");
_Static_assert(VMEM_HASH_EMBEDDED >= 2 && (VMEM_HASH_EMBEDDED & (VMEM_HASH_EMBEDDED - 1)) == 0,
               "the embedded table is a power of two of at least 2 buckets");
_Static_assert(PAGE_BUCKETS > VMEM_HASH_EMBEDDED, "a page-source table beats the embedded one");

typedef VmemHashTable Table;

static size_t buckets_of(const Table *t) { return t->ht_mask + 1; }

static void set_table(Table *t, VmemHashBucket *bucket, size_t buckets)
{
    t->ht_bucket = bucket;
    t->ht_mask = buckets - 1;
    t->ht_shift = 64 - log2_floor(buckets);
    t->ht_window = buckets < PROBE_BUCKETS ? (unsigned)buckets : PROBE_BUCKETS;
}

static unsigned anchor_slot(uint64_t h) { return vmem_hash_fingerprint(h) % SLOTS; }

static unsigned lowest(uint32_t slots) { return (unsigned)__builtin_ctz(slots); }

/* Buckets from home to b, going forward. */
static size_t distance(const Table *t, size_t home, size_t b) { return (b - home) & t->ht_mask; }

static size_t grow_limit(size_t buckets) { return buckets * SLOTS / GROW_DEN * GROW_NUM; }

static size_t shrink_limit(size_t buckets) { return buckets * SLOTS / SHRINK_DIVISOR; }

/* The entry for addr in table t (old: t is vm_hash_old), in its window or
 * in the overflow chain of its home bucket; where it is goes to *at. */
static VmemTag *find_in(const Table *t, bool old, uint64_t h, uintptr_t addr, VmemHashWhere *at)
{
    VmemTag *tag = vmem_hash_find_in_window(t, old, h, addr, at);
    if (tag != NULL)
        return tag;
    const VmemHashBucket *bucket = &t->ht_bucket[vmem_hash_home(h, t)];
    if (!(bucket->hb_header[PROBE] & CHAINED) || bucket->hb_tag[anchor_slot(h)] == NULL)
        return NULL;
    for (VmemTag *prev = bucket->hb_tag[anchor_slot(h)]; prev->u.hash_next != NULL;
         prev = prev->u.hash_next) {
        if (prev->u.hash_next->base == addr) {
            at->old = old;
            at->chain_prev = prev;
            return prev->u.hash_next;
        }
    }
    return NULL;
}

/* Stores tag, whose key hashes to h, in table t. Never fails. */
static void place(Table *t, VmemTag *tag, uint64_t h)
{
    uint8_t fingerprint = vmem_hash_fingerprint(h);
    size_t home = vmem_hash_home(h, t), b = home;
    tag->u.hash_next = NULL;
    for (unsigned probe = 0; probe < t->ht_window; probe++) {
        VmemHashBucket *bucket = &t->ht_bucket[b];
        VmemHashCandidates empty = vmem_hash_candidates(bucket, 0);
        if (empty != 0) {
            unsigned s = vmem_hash_candidate_slot(empty);
            bucket->hb_header[s] = fingerprint;
            bucket->hb_tag[s] = tag;
            vmem_hash_count_passing(t, home, b, +1);
            return;
        }
        b = (b + 1) & t->ht_mask;
    }
    /* The window is full, so the home bucket is: the anchor exists. */
    VmemHashBucket *bucket = &t->ht_bucket[home];
    VmemTag *anchor = bucket->hb_tag[anchor_slot(h)];
    tag->u.hash_next = anchor->u.hash_next;
    anchor->u.hash_next = tag;
    bucket->hb_header[PROBE] |= CHAINED;
}

static void clear_buckets(VmemHashBucket *bucket, size_t buckets)
{
    for (size_t b = 0; b < buckets; b++) {
        for (unsigned i = 0; i < VMEM_HASH_HEADER; i++)
            bucket[b].hb_header[i] = 0;
        for (unsigned s = 0; s < SLOTS; s++)
            bucket[b].hb_tag[s] = NULL;
    }
}

/* Caches the counts at which the arena wants a resize, so the check each
 * operation makes is two comparisons. */
static void update_limits(Vmem *vm)
{
    size_t buckets = buckets_of(&vm->vm_hash);
    bool busy = vmem_hash_migrating(vm) || vm->vm_hash_retired != NULL;
    vm->vm_hash_grow_at = busy || buckets >= MAX_BUCKETS ? SIZE_MAX : grow_limit(buckets);
    vm->vm_hash_shrink_at = busy || buckets <= VMEM_HASH_EMBEDDED ? 0 : shrink_limit(buckets);
    vmem_hash_refresh_hint(vm);
}

static void forget_old_table(Vmem *vm)
{
    vm->vm_hash_old.ht_bucket = NULL;
    vm->vm_hash_old.ht_mask = 0;
    vm->vm_hash_old.ht_shift = 0;
    vm->vm_hash_old.ht_window = 0;
    vm->vm_hash_migrated = 0;
}

void vmem_hash_init(Vmem *vm)
{
    clear_buckets(vm->vm_hash_embedded, VMEM_HASH_EMBEDDED);
    set_table(&vm->vm_hash, vm->vm_hash_embedded, VMEM_HASH_EMBEDDED);
    forget_old_table(vm);
    vm->vm_hash_count = 0;
    vm->vm_hash_retired = NULL;
    vm->vm_hash_retired_bytes = 0;
    update_limits(vm);
}

static size_t table_bytes(const Table *t) { return buckets_of(t) * sizeof(VmemHashBucket); }

static void retire(Vmem *vm, const Table *t)
{
    if (t->ht_bucket == vm->vm_hash_embedded)
        return;
    if (vm->vm_hash_retired != NULL)
        vmem_port_panic("vmem: two hash tables retired in one operation");
    vm->vm_hash_retired = t->ht_bucket;
    vm->vm_hash_retired_bytes = table_bytes(t);
}

/*
 * Moves up to `budget` entries stored in the old bucket under the cursor to
 * the current table, and the cursor on once the bucket is empty. A bucket's
 * chains go first, an entry at a time (they hang off its slots' tags), so
 * even an over-full table migrates in bounded steps. Returns the budget
 * left.
 */
static unsigned migrate_bucket(Vmem *vm, unsigned budget)
{
    Table *old = &vm->vm_hash_old, *cur = &vm->vm_hash;
    size_t b = vm->vm_hash_migrated;
    VmemHashBucket *bucket = &old->ht_bucket[b];
    uint32_t full = ~vmem_hash_slots_holding(bucket, 0) & VMEM_HASH_SLOT_BITS;
    for (uint32_t m = full; m != 0 && budget > 0; m &= m - 1) {
        unsigned s = lowest(m);
        VmemTag *tag = bucket->hb_tag[s];
        for (; tag->u.hash_next != NULL && budget > 0; budget--) {
            VmemTag *chained = tag->u.hash_next;
            tag->u.hash_next = chained->u.hash_next;
            place(cur, chained, vmem_hash_of(vm, chained->base));
        }
        if (budget == 0)
            break;
        bucket->hb_tag[s] = NULL;
        bucket->hb_header[s] = 0;
        uint64_t h = vmem_hash_of(vm, tag->base);
        vmem_hash_count_passing(old, vmem_hash_home(h, old), b, -1);
        place(cur, tag, h);
        budget--;
    }
    if (vmem_hash_slots_holding(bucket, 0) != VMEM_HASH_SLOT_BITS)
        return 0;
    bucket->hb_header[PROBE] &= PASSING_MASK;
    if (++vm->vm_hash_migrated == buckets_of(old)) {
        retire(vm, old);
        forget_old_table(vm);
        update_limits(vm);
    }
    return budget;
}

/* One operation's share of a migration: a dense bucket, or a few sparse
 * ones (a shrinking table is mostly empty). */
static void migrate_step(Vmem *vm)
{
    unsigned budget = MIGRATE_ENTRIES;
    for (unsigned visited = 0; vmem_hash_migrating(vm) && budget > 0 && visited < MIGRATE_BUCKETS;
         visited++)
        budget = migrate_bucket(vm, budget);
}

/* Starts a migration to `table` with `buckets` buckets (cleared here). */
static void begin_migration(Vmem *vm, VmemHashBucket *table, size_t buckets)
{
    clear_buckets(table, buckets);
    vm->vm_hash_old = vm->vm_hash;
    vm->vm_hash_migrated = 0;
    set_table(&vm->vm_hash, table, buckets);
    update_limits(vm);
}

/* Buckets a resized table should have, or 0 for none. */
static size_t wanted_buckets(const Vmem *vm)
{
    size_t count = vm->vm_hash_count, buckets = buckets_of(&vm->vm_hash);
    if (count > vm->vm_hash_grow_at) {
        /* Normally one doubling; a table that could not grow for a while
         * catches up at once, to at most 1/2 full. */
        size_t bigger = buckets * 2 < PAGE_BUCKETS ? PAGE_BUCKETS : buckets * 2;
        while (count > grow_limit(bigger) / 3 * 2 && bigger < MAX_BUCKETS)
            bigger *= 2;
        return bigger;
    }
    if (count < vm->vm_hash_shrink_at) {
        size_t smaller = buckets / 2 < PAGE_BUCKETS ? VMEM_HASH_EMBEDDED : buckets / 2;
        return count <= grow_limit(smaller) / 2 ? smaller : 0;
    }
    return 0;
}

/* Shrinking back into the embedded buckets needs no memory: do it inline. */
static void maybe_shrink_inline(Vmem *vm)
{
    if (wanted_buckets(vm) == VMEM_HASH_EMBEDDED)
        begin_migration(vm, vm->vm_hash_embedded, VMEM_HASH_EMBEDDED);
}

void vmem_hash_refresh_hint(Vmem *vm)
{
    size_t buckets = wanted_buckets(vm);
    size_t bytes = buckets <= VMEM_HASH_EMBEDDED ? 0 : buckets * sizeof(VmemHashBucket);
    __atomic_store_n(&vm->vm_hash_hint, bytes, __ATOMIC_RELAXED);
}

bool vmem_hash_install(Vmem *vm, void *table, size_t bytes)
{
    /* Any table the count fits serves: it may have moved a little since
     * the size was chosen, and refusing over a single entry would only
     * send the table back. A smaller table must leave room for the inserts
     * that may come while the larger one drains into it. */
    size_t buckets = bytes / sizeof(VmemHashBucket), count = vm->vm_hash_count;
    size_t current = buckets_of(&vm->vm_hash);
    bool fits = !vmem_hash_migrating(vm) && vm->vm_hash_retired == NULL && is_pow2(buckets) &&
                buckets >= PAGE_BUCKETS && buckets <= MAX_BUCKETS && buckets != current &&
                (buckets > current
                     ? count <= grow_limit(buckets) &&
                           (buckets == PAGE_BUCKETS || count >= shrink_limit(buckets) / 2)
                     : count <= grow_limit(buckets) / 2);
    if (!fits) {
        /* The hint that asked for it was set when the count passed a
         * limit; it may have come back since. */
        vmem_hash_refresh_hint(vm);
        return false;
    }
    begin_migration(vm, (VmemHashBucket *)table, buckets);
    return true;
}

bool vmem_hash_migrate_some(Vmem *vm, size_t buckets)
{
    for (size_t moved = 0; vmem_hash_migrating(vm) && moved < buckets; moved++)
        migrate_bucket(vm, ~0u);
    return vmem_hash_migrating(vm);
}

size_t vmem_hash_table_bytes(const Vmem *vm) { return table_bytes(&vm->vm_hash); }

void *vmem_hash_take_retired(Vmem *vm, size_t *bytes)
{
    void *table = vm->vm_hash_retired;
    *bytes = vm->vm_hash_retired_bytes;
    if (table != NULL) {
        vm->vm_hash_retired = NULL;
        vm->vm_hash_retired_bytes = 0;
        update_limits(vm);
    }
    return table;
}

/* The whole insert: a migration step first, then wherever the window or
 * the home bucket's chains have room. */
void vmem_hash_insert_slow(Vmem *vm, VmemTag *tag)
{
    if (vmem_hash_migrating(vm))
        migrate_step(vm);
    place(&vm->vm_hash, tag, vmem_hash_of(vm, tag->base));
    if (++vm->vm_hash_count > vm->vm_hash_grow_at)
        vmem_hash_refresh_hint(vm);
}

/* While a migration is under way, the old table first, then the new; with
 * none, the current table's window again, then its chain. */
VmemTag *vmem_hash_find_slow(const Vmem *vm, uint64_t h, uintptr_t addr, VmemHashWhere *at)
{
    if (vmem_hash_migrating(vm)) {
        VmemTag *tag = find_in(&vm->vm_hash_old, true, h, addr, at);
        if (tag != NULL)
            return tag;
    }
    return find_in(&vm->vm_hash, false, h, addr, at);
}

VmemTag *vmem_hash_lookup(const Vmem *vm, uintptr_t addr)
{
    VmemHashWhere at;
    return vmem_hash_find(vm, addr, &at);
}

void vmem_hash_unlink_slow(Vmem *vm, const VmemHashWhere *at, VmemTag *tag)
{
    if (at->chain_prev != NULL) {
        at->chain_prev->u.hash_next = tag->u.hash_next;
        return;
    }
    /* tag anchors the chain of the bucket it sits in, which is the home
     * of every chained entry: the chain's head moves up into the slot, at
     * home, so only tag's own passing counts change. */
    const Table *t = at->old ? &vm->vm_hash_old : &vm->vm_hash;
    VmemHashBucket *bucket = &t->ht_bucket[at->bucket];
    VmemTag *heir = tag->u.hash_next;
    bucket->hb_tag[at->slot] = heir;
    bucket->hb_header[at->slot] = vmem_hash_fingerprint(vmem_hash_of(vm, heir->base));
    vmem_hash_count_passing(t, at->home, at->bucket, -1);
}

void vmem_hash_after_remove(Vmem *vm)
{
    if (vmem_hash_migrating(vm))
        migrate_step(vm);
    else if (vm->vm_hash_count < vm->vm_hash_shrink_at)
        maybe_shrink_inline(vm);
    if (vm->vm_hash_count < vm->vm_hash_shrink_at)
        vmem_hash_refresh_hint(vm); /* a smaller table from the page source */
}

void vmem_hash_stats(const Vmem *vm, VmemHashStats *stats)
{
    stats->count = vm->vm_hash_count;
    stats->buckets = buckets_of(&vm->vm_hash);
    stats->old_buckets = vmem_hash_migrating(vm) ? buckets_of(&vm->vm_hash_old) : 0;
    stats->migrated = vm->vm_hash_migrated;
    stats->displaced = 0;
    stats->chained = 0;
    for (int which = 0; which < (vmem_hash_migrating(vm) ? 2 : 1); which++) {
        const Table *t = which == 0 ? &vm->vm_hash : &vm->vm_hash_old;
        for (size_t b = 0; b <= t->ht_mask; b++) {
            for (unsigned s = 0; s < SLOTS; s++) {
                const VmemTag *tag = t->ht_bucket[b].hb_tag[s];
                if (tag == NULL)
                    continue;
                if (vmem_hash_home(vmem_hash_of(vm, tag->base), t) != b)
                    stats->displaced++;
                for (tag = tag->u.hash_next; tag != NULL && stats->chained < vm->vm_hash_count;
                     tag = tag->u.hash_next)
                    stats->chained++;
            }
        }
    }
}

/* ---- vmem_check ---------------------------------------------------------- */

/* The entries stored past b that passed it, recounted from their homes. */
static unsigned recount_passing(const Vmem *vm, const Table *t, size_t b)
{
    unsigned passers = 0;
    for (unsigned d = 1; d < t->ht_window; d++) {
        size_t later = (b + d) & t->ht_mask;
        for (unsigned s = 0; s < SLOTS; s++) {
            const VmemTag *tag = t->ht_bucket[later].hb_tag[s];
            if (tag == NULL)
                continue;
            if (distance(t, vmem_hash_home(vmem_hash_of(vm, tag->base), t), later) >= d)
                passers++;
        }
    }
    return passers;
}

static const VmemTag *check_chain(const Vmem *vm, const Table *t, size_t b, unsigned s,
                                  size_t *count, const char **why)
{
    const VmemTag *anchor = t->ht_bucket[b].hb_tag[s];
    if (anchor->u.hash_next != NULL && !(t->ht_bucket[b].hb_header[PROBE] & CHAINED)) {
        *why = "hash chain on a bucket not marked chained";
        return anchor;
    }
    for (const VmemTag *tag = anchor->u.hash_next; tag != NULL; tag = tag->u.hash_next) {
        uint64_t h = vmem_hash_of(vm, tag->base);
        if (++*count > vm->vm_nsegs) {
            *why = "hash chain longer than the arena's segments (a cycle?)";
            return tag;
        }
        if (tag->type != SEG_ALLOC) {
            *why = "hash holds a segment that is not allocated";
            return tag;
        }
        if (vmem_hash_home(h, t) != b || anchor_slot(h) != s) {
            *why = "chained hash entry off its home bucket's anchor";
            return tag;
        }
    }
    return NULL;
}

/* Verifies one table; buckets below `first` must be empty (migrated). */
static const VmemTag *check_table(const Vmem *vm, const Table *t, size_t first, size_t *count,
                                  const char **why)
{
    for (size_t b = 0; b <= t->ht_mask; b++) {
        const VmemHashBucket *bucket = &t->ht_bucket[b];
        if (recount_passing(vm, t, b) != vmem_hash_passing(bucket)) {
            *why = "hash bucket passing count wrong";
            return NULL;
        }
        for (unsigned i = SLOTS; i < PROBE; i++) {
            if (bucket->hb_header[i] != 0) {
                *why = "hash bucket spare fingerprint byte not zero";
                return NULL;
            }
        }
        for (unsigned s = 0; s < SLOTS; s++) {
            const VmemTag *tag = bucket->hb_tag[s];
            if ((bucket->hb_header[s] == 0) != (tag == NULL)) {
                *why = "hash slot fingerprint and tag disagree on emptiness";
                return tag;
            }
            if (tag == NULL)
                continue;
            uint64_t h = vmem_hash_of(vm, tag->base);
            if (++*count > vm->vm_nsegs) {
                *why = "hash holds more entries than the arena has segments";
                return tag;
            }
            if (b < first) {
                *why = "hash entry left behind by the migration";
                return tag;
            }
            if (tag->type != SEG_ALLOC) {
                *why = "hash holds a segment that is not allocated";
                return tag;
            }
            if (bucket->hb_header[s] != vmem_hash_fingerprint(h)) {
                *why = "hash fingerprint wrong";
                return tag;
            }
            if (distance(t, vmem_hash_home(h, t), b) >= t->ht_window) {
                *why = "hash entry outside its probe window";
                return tag;
            }
            const VmemTag *bad = check_chain(vm, t, b, s, count, why);
            if (*why != NULL)
                return bad;
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
    for (const VmemTag *tag = vm->vm_seg_first; tag != NULL; tag = tag->seg_next) {
        if (tag->type == SEG_ALLOC && vmem_hash_lookup(vm, tag->base) != tag) {
            *why = "allocated segment not found in the hash";
            return tag;
        }
    }
    return NULL;
}

void vmem_hash_fini(Vmem *vm, void *tables[2], size_t bytes[2])
{
    tables[0] = tables[1] = NULL;
    bytes[0] = bytes[1] = 0;
    if (vm->vm_hash.ht_bucket != vm->vm_hash_embedded) {
        tables[0] = vm->vm_hash.ht_bucket;
        bytes[0] = table_bytes(&vm->vm_hash);
    }
    if (vmem_hash_migrating(vm) && vm->vm_hash_old.ht_bucket != vm->vm_hash_embedded) {
        tables[1] = vm->vm_hash_old.ht_bucket;
        bytes[1] = table_bytes(&vm->vm_hash_old);
    }
    vmem_hash_init(vm);
}
