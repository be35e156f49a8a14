/*
 * vmem_internal.h - what the library's source files share and nobody else
 * sees: the boundary tag, the internal interfaces of each concern, and the
 * small arithmetic helpers.
 *
 * One file per concern:
 *   vmem_arena.c    the theory statement; creating, destroying, querying
 *   vmem_alloc.c    the request path: requests, allocation, import, free
 *   vmem_place.c    the policies: which free segment, and where in it
 *   vmem_segment.c  the segment and span lists, freelists, carve and merge
 *   vmem_tree.c     the two AVL indexes of free segments
 *   vmem_hash.c     the allocated-segment hash, resized incrementally
 *   vmem_tags.c     the boundary-tag pool, vmem_bootstrap, vmem_create storage
 *   vmem_qcache.c   the quantum caches: per-CPU magazines, depot, slabs
 *   vmem_misuse.c   the misuse catalogue and reports, span argument checks
 *   vmem_debug.c    vmem_dump, vmem_check, vmem_walk, and their formatting
 */
#ifndef VMEM_INTERNAL_H
#define VMEM_INTERNAL_H

#include "vmem.h"
#include "vmem_config.h"
#include "vmem_port.h"

#define VMEM_MAGIC 0x766d656dU /* "vmem" */

#define POLICY_FLAGS (VM_BESTFIT | VM_INSTANTFIT | VM_NEXTFIT | VM_FIRSTFIT)
#define KNOWN_FLAGS (POLICY_FLAGS | VM_SLEEP | VM_NOSLEEP | VM_BOOTSTRAP | VM_ENDALLOC)

/*
 * Internal consistency checks (preconditions of helpers, postconditions of
 * every allocation): compiled in when VMEM_DEBUG is defined, as in the
 * host test builds, and to nothing otherwise. A failed one panics.
 */
#ifdef VMEM_DEBUG
#define VMEM_STRINGIFY_(x) #x
#define VMEM_STRINGIFY(x) VMEM_STRINGIFY_(x)
#define VMEM_ASSERT(cond)                                                                 \
    ((cond) ? (void)0                                                                     \
            : vmem_port_panic("vmem: " __FILE__ ":" VMEM_STRINGIFY(__LINE__) ": assertion " \
                              "failed: " #cond))
#else
#define VMEM_ASSERT(cond) ((void)sizeof(cond)) /* not evaluated; uses its variables */
#endif

/* The arena lock. Under VMEM_DEBUG it also records that it is held, for
 * VMEM_ASSERT_LOCKED (a check within one thread: another thread's hold
 * also satisfies it). */
static inline VmemIrqState vmem_lock(Vmem *vm)
{
    VmemIrqState state = vmem_port_lock(&vm->vm_lock);
#ifdef VMEM_DEBUG
    vm->vm_lock_held = 1;
#endif
    return state;
}

static inline void vmem_unlock(Vmem *vm, VmemIrqState state)
{
#ifdef VMEM_DEBUG
    VMEM_ASSERT(vm->vm_lock_held);
    vm->vm_lock_held = 0;
#endif
    vmem_port_unlock(&vm->vm_lock, state);
}
#define VMEM_ASSERT_LOCKED(vm) VMEM_ASSERT((vm)->vm_lock_held)

/* For the few helpers every allocation and free runs: the compiler keeps
 * them out of line for their several callers, and on these paths the
 * call's register saves cost as much as the helper's own work. */
#define HOT_INLINE static inline __attribute__((always_inline))

/* Arena state bits (Vmem.vm_state). */
#define VMEM_STATE_CREATED 0x1 /* storage came from vmem_create() */
#define VMEM_STATE_ADDR_INDEXED 0x2 /* free segments are also in vm_free_by_addr */
#define VMEM_STATE_SIZE_INDEXED 0x4 /* free segments are also in vm_free_by_size */
#define VMEM_STATE_LISTED 0x8       /* free segments are on the size-class freelists */

/* Segment types: the public VMEM_ALLOC / VMEM_FREE / VMEM_SPAN values. */
enum { SEG_ALLOC = VMEM_ALLOC, SEG_FREE = VMEM_FREE, SEG_SPAN = VMEM_SPAN };

/* Tag flags. */
#define TAG_IMPORTED 0x1 /* span marker: span came from the source arena */
#define TAG_XALLOC 0x2   /* allocated segment: from vmem_xalloc (bypasses caches) */
#define TAG_SLAB 0x4     /* allocated segment: a quantum-cache slab */

/* A node of one of the AVL trees; its height lives in the tag header. */
typedef struct vmem_tree_link {
    struct vmem_tag *child[2];
} VmemTreeLink;

/*
 * The external boundary tag: one per segment and one per span marker, in
 * two parts. The hot part (VmemTag, 64 bytes on LP64, aligned to its size)
 * is all that allocation, free, coalescing, the freelists and the hash
 * touch: one cache line per tag, never two. The tree links (VmemTagLinks)
 * are only used once an arena indexes its free segments (theory statement
 * 3 of vmem_arena.c), so they live apart, in the same page: a tag page is
 * an array of hot parts, then the array of their links, then the pool's
 * page header (vmem_tags.c); tag_links() finds one from the other by
 * arithmetic. Only the members a tag's type uses are live: the union keeps
 * an allocated segment (the common case) as small as a free one.
 */
typedef struct vmem_tag {
    uintptr_t bt_base;
    size_t bt_size;                  /* never 0; base + size may be 2^N exactly */
    struct vmem_tag *bt_next;    /* every segment and span marker, by address */
    struct vmem_tag *bt_prev;
    uint8_t bt_type;                 /* SEG_ALLOC, SEG_FREE or SEG_SPAN */
    uint8_t bt_flags;                /* TAG_* */
    int8_t bt_addr_height;           /* height in vm_free_by_addr, when free */
    int8_t bt_size_height;           /* height in vm_free_by_size, when free */
    union {
        struct vmem_tag *hash_next;   /* SEG_ALLOC: hash chain */
        struct vmem_tag *pool_next;   /* unused tag: pool or stash list */
        struct {                      /* SEG_SPAN: ordered span list */
            struct vmem_tag *next;
            struct vmem_tag *prev;
        } span;
        struct {                      /* SEG_FREE */
            struct vmem_tag *list_next;   /* size-class freelist */
            struct vmem_tag **list_pprev;
            size_t addr_max;              /* largest size in by_addr subtree */
        } free;
    } bt_u;
} __attribute__((aligned(8 * sizeof(void *)))) VmemTag;

_Static_assert(sizeof(VmemTag) == 8 * sizeof(void *),
               "the hot part of a tag is one 64-byte line on LP64 (32 bytes on ILP32)");

/* The cold part of a free segment's tag: its links in the two trees. */
typedef struct {
    VmemTreeLink by_addr;
    VmemTreeLink by_size;
} VmemTagLinks;

/* Bytes of the pool's header at the end of each tag page (vmem_tags.c
 * checks its TagPage against this), and the tags a page holds. */
#define VMEM_TAG_PAGE_HEADER (4 * sizeof(void *))
#define VMEM_TAGS_PER_PAGE \
    ((VMEM_PAGE_SIZE - VMEM_TAG_PAGE_HEADER) / (sizeof(VmemTag) + sizeof(VmemTagLinks)))

/* Every tag lives in a VMEM_PAGE_SIZE-aligned page laid out as above
 * (the static bootstrap tags too): its links are at the same index in the
 * page's array of links. A link record is half a hot part, so the links
 * sit VMEM_TAGS_PER_PAGE hot parts past the tag, less half its offset in
 * the page: three instructions, on every step of a tree walk. */
_Static_assert(sizeof(VmemTag) == 2 * sizeof(VmemTagLinks), "tag_links() relies on the 2:1 ratio");
static inline VmemTagLinks *tag_links(const VmemTag *tag)
{
    uintptr_t at = (uintptr_t)tag;
    uintptr_t offset = at & (uintptr_t)(VMEM_PAGE_SIZE - 1);
    return (VmemTagLinks *)(at - offset / 2 + VMEM_TAGS_PER_PAGE * sizeof(VmemTag));
}

/* Last unit of a tag's range: never overflows, unlike base + size. */
static inline uintptr_t tag_last(const VmemTag *tag) { return tag->bt_base + (tag->bt_size - 1); }

static inline bool is_pow2(uintptr_t x) { return x != 0 && (x & (x - 1)) == 0; }

static inline unsigned log2_floor(uintptr_t x)
{
    return (unsigned)(sizeof(uintptr_t) * 8 - 1) - (unsigned)__builtin_clzl((unsigned long)x);
}

/* Index of the lowest set bit of a non-zero 64-bit word. On a 32-bit
 * target gcc turns __builtin_ctzll into a call to libgcc's __ctzdi2, which
 * a kernel need not link; two 32-bit halves need no runtime. */
static inline unsigned ctz64(uint64_t x)
{
#if UINTPTR_MAX > 0xffffffffu
    return (unsigned)__builtin_ctzll(x);
#else
    uint32_t low = (uint32_t)x;
    return low != 0 ? (unsigned)__builtin_ctz(low)
                    : 32u + (unsigned)__builtin_ctz((uint32_t)(x >> 32));
#endif
}

/*
 * Size classes of the freelists (see VMEM_FREELIST_SPLIT in vmem.h). A size
 * s >= SPLIT is 1.m x 2^e in binary; its class is picked by e and by the
 * SPLIT_SHIFT bits of m under the leading one, so the classes of one power
 * of two are consecutive and the classes grow with the size. Sizes below
 * 2 * SPLIT are their own class.
 *
 * Every free, split and merge computes a class, so the arithmetic has no
 * branch: a class ignores the low size_class_shift() bits of its sizes, and
 * with that shift w the class is w * SPLIT + (s >> w), which for w = 0 is
 * the size itself.
 */
static inline unsigned size_class_shift(size_t size)
{
    unsigned exp = log2_floor(size);
    return exp > VMEM_FREELIST_SPLIT_SHIFT ? exp - VMEM_FREELIST_SPLIT_SHIFT : 0;
}

static inline unsigned size_class(size_t size)
{
    unsigned ignored = size_class_shift(size);
    return (ignored << VMEM_FREELIST_SPLIT_SHIFT) + (unsigned)(size >> ignored);
}

/* Is size the smallest size of its class (so every member of the class fits it)? */
static inline bool size_class_exact(size_t size)
{
    return (size & (((size_t)1 << size_class_shift(size)) - 1)) == 0;
}

/* The smallest size in class c: every member of class c is at least this. */
static inline size_t class_min_size(unsigned c)
{
    if (c < VMEM_FREELIST_SPLIT)
        return c;
    unsigned exp = c / VMEM_FREELIST_SPLIT + VMEM_FREELIST_SPLIT_SHIFT - 1;
    return (size_t)(VMEM_FREELIST_SPLIT + c % VMEM_FREELIST_SPLIT) << (exp - VMEM_FREELIST_SPLIT_SHIFT);
}

/* The first class all of whose members are at least `size` long; may be
 * VMEM_FREELISTS when no class is (sizes near SIZE_MAX). */
static inline unsigned fitting_class(size_t size)
{
    return size_class(size) + !size_class_exact(size);
}

/* Bits per word of Vmem.vm_freemap, and whether class c's bit is set. */
#define FREEMAP_BITS (sizeof(size_t) * 8)
static inline bool freemap_has(const Vmem *vm, unsigned c)
{
    return (vm->vm_freemap[c / FREEMAP_BITS] >> (c % FREEMAP_BITS) & 1) != 0;
}

/* ---- vmem_place.c ------------------------------------------------------ */

/* A request, with sizes already rounded and validated. */
typedef struct {
    size_t size;
    size_t quantum;
    uintptr_t align;    /* power of two, >= quantum */
    uintptr_t phase;    /* < align */
    uintptr_t nocross;  /* 0, or a power of two >= size */
    uintptr_t min;      /* first acceptable unit */
    uintptr_t max_last; /* last acceptable unit (inclusive) */
    bool top_down;      /* VM_ENDALLOC: highest placement */
    bool plain;         /* constrained by align and min alone: no phase,
                           nocross or maxaddr, bottom-up */
} VmemRequest;

/* *to = *from, field by field: compilers turn a struct assignment of this
 * size into a call to memcpy at some optimisation levels and on some
 * targets, and the library calls nothing but the port (check-cross). */
static inline void request_copy(VmemRequest *to, const VmemRequest *from)
{
    to->size = from->size;
    to->quantum = from->quantum;
    to->align = from->align;
    to->phase = from->phase;
    to->nocross = from->nocross;
    to->min = from->min;
    to->max_last = from->max_last;
    to->top_down = from->top_down;
    to->plain = from->plain;
}

/* The free segment and the address in it where req goes under the policy
 * in vmflag, or NULL. Changes nothing but building an index on first
 * need. Locked. */
VmemTag *vmem_place(Vmem *vm, const VmemRequest *req, int vmflag, uintptr_t *addrp);

/* Instant-fit's constant-time step for a plain request aligned to the
 * quantum and placed at 1 or above, on an arena that keeps its freelists:
 * the segment and address instant-fit takes, or NULL when that step
 * decides nothing (vmem_place then searches). Locked. */
VmemTag *vmem_place_instant(Vmem *vm, const VmemRequest *req, uintptr_t *addrp);

/* Where in [base, base + size) the request fits, or false. */
bool vmem_fit_in(const VmemRequest *req, uintptr_t base, size_t size, uintptr_t *addrp);

/* The smallest free-segment size that fits the request wherever the segment
 * lies inside [min, max_last]; SIZE_MAX when no size guarantees it. */
size_t vmem_fit_comfortable_size(const VmemRequest *req);

/* ---- vmem_tree.c ------------------------------------------------------- */

void vmem_tree_insert_addr(Vmem *vm, VmemTag *tag);
void vmem_tree_remove_addr(Vmem *vm, VmemTag *tag);
/* tag's range shrank without changing its address order: fix addr_max. */
void vmem_tree_refresh_addr(Vmem *vm, VmemTag *tag);
/* The size index: a segment of up to VMEM_EXACT_SIZES quanta goes on the
 * exact-size list of its size, a larger one in the size tree. */
void vmem_size_insert(Vmem *vm, VmemTag *tag);
void vmem_size_remove(Vmem *vm, VmemTag *tag);

/*
 * Searches the free segments in address order (reverse order when
 * req->top_down) for the first one at least min_size long in which the
 * request fits, giving up after `budget` candidates that do not fit
 * (SIZE_MAX: never; *exhausted is set when it gave up). Visits only
 * subtrees that can hold such a segment and overlap [req->min,
 * req->max_last]. Returns the tag and the placement.
 */
VmemTag *vmem_tree_first_fit(Vmem *vm, const VmemRequest *req, size_t min_size, size_t budget,
                             bool *exhausted, uintptr_t *addrp);

/*
 * Searches the free segments in size order, from the smallest of at least
 * min_size, for one in which the request fits, giving up after `budget`
 * candidates that do not fit (SIZE_MAX: never). *exhausted is set when it
 * gave up. Segments of one size come in no particular order.
 */
VmemTag *vmem_size_best_fit(Vmem *vm, const VmemRequest *req, size_t min_size,
                            size_t budget, bool *exhausted, uintptr_t *addrp);

/* The free segment containing addr, or NULL. */
VmemTag *vmem_tree_find_free(Vmem *vm, uintptr_t addr);

/* For vmem_check: verifies order, balance, heights and addr_max; counts
 * nodes. Returns the offending tag or NULL. */
const VmemTag *vmem_tree_check_addr(const Vmem *vm, size_t *count, const char **why);
/* Also verifies the exact-size lists, counted with the tree's nodes. */
const VmemTag *vmem_size_check(const Vmem *vm, size_t *count, const char **why);

/* ---- vmem_hash.c ------------------------------------------------------- */

/* Finding a free's segment, unlinking it and pushing an allocation are
 * inline: the arena runs each on every vmem_alloc/vmem_free, and a call
 * costs as much as the work. Resizing is in vmem_hash.c, which explains
 * the design. */
static inline bool vmem_hash_migrating(const Vmem *vm) { return vm->vm_hash_old.ht_bucket != NULL; }

/* The chain head for addr in table t: the quantum number times 2^64/phi
 * (Fibonacci hashing), whose top bits spread any stride of keys evenly. */
static inline VmemTag **vmem_hash_head(const Vmem *vm, const VmemHashTable *t, uintptr_t addr)
{
    uint64_t h = (uint64_t)(addr >> vm->vm_quantum_shift) * 0x9e3779b97f4a7c15ULL;
    return &t->ht_bucket[(size_t)(h >> t->ht_shift)];
}

/* Where vmem_hash_find() found an entry: the link pointing at it, a chain
 * head or the previous entry's hash_next. Valid until the hash changes. */
typedef struct {
    VmemTag **link;
} VmemHashWhere;

static inline VmemTag *vmem_hash_find_in(VmemTag **link, uintptr_t addr, VmemHashWhere *where)
{
    for (VmemTag *tag; (tag = *link) != NULL; link = &tag->bt_u.hash_next) {
        if (tag->bt_base == addr) {
            where->link = link;
            return tag;
        }
    }
    return NULL;
}

VmemTag *vmem_hash_find_migrating(const Vmem *vm, uintptr_t addr, VmemHashWhere *where);

/* The allocated segment starting at addr, or NULL; where it is goes to
 * *where, for vmem_hash_remove_at(). */
static inline VmemTag *vmem_hash_find(const Vmem *vm, uintptr_t addr, VmemHashWhere *where)
{
    if (__builtin_expect(vmem_hash_migrating(vm), 0))
        return vmem_hash_find_migrating(vm, addr, where);
    return vmem_hash_find_in(vmem_hash_head(vm, &vm->vm_hash, addr), addr, where);
}

VmemTag *vmem_hash_lookup(const Vmem *vm, uintptr_t addr);
void vmem_hash_after_remove(Vmem *vm);

/* Removes tag, found by vmem_hash_find() at *where with no change since
 * (a free that turns out to be misuse changes nothing). */
static inline void vmem_hash_remove_at(Vmem *vm, const VmemHashWhere *where, VmemTag *tag)
{
    *where->link = tag->bt_u.hash_next;
    if (__builtin_expect(--vm->vm_hash_count < vm->vm_hash_shrink_at || vmem_hash_migrating(vm),
                         0))
        vmem_hash_after_remove(vm);
}

/* Sets vm_hash_hint, the bytes of the table the arena wants (0: none), for
 * the next operation to allocate unlocked. Arena locked. */
void vmem_hash_refresh_hint(Vmem *vm);
void vmem_hash_migrate_step(Vmem *vm);

/* Enters an allocated segment. Never fails: with no bigger table, chains
 * grow. */
static inline void vmem_hash_insert(Vmem *vm, VmemTag *tag)
{
    if (__builtin_expect(vmem_hash_migrating(vm), 0))
        vmem_hash_migrate_step(vm);
    VmemTag **head = vmem_hash_head(vm, &vm->vm_hash, tag->bt_base);
    tag->bt_u.hash_next = *head;
    *head = tag;
    if (__builtin_expect(++vm->vm_hash_count > vm->vm_hash_grow_at, 0))
        vmem_hash_refresh_hint(vm);
}

void vmem_hash_init(Vmem *vm);
/* Starts a resize into `table` if still wanted; false: give it back. */
bool vmem_hash_install(Vmem *vm, void *table, size_t bytes);
/* A table retired while locked, to free once unlocked (NULL: none). */
void *vmem_hash_take_retired(Vmem *vm, size_t *bytes);
static inline bool vmem_hash_has_retired(const Vmem *vm)
{
    return vm->vm_hash_retired.ht_bucket != NULL;
}
/* For vmem_release_pages(): moves up to `buckets` old buckets of a resize
 * (starting one into the embedded heads if due); true while one remains. */
bool vmem_hash_migrate_some(Vmem *vm, size_t buckets);
size_t vmem_hash_table_bytes(const Vmem *vm);
/* For vmem_check, after the segment list: returns the offending tag. */
const VmemTag *vmem_hash_check(const Vmem *vm, size_t *count, const char **why);

typedef struct {
    size_t count, buckets; /* entries; buckets of the current table */
    size_t old_buckets;    /* of the table being migrated from, or 0 */
    size_t migrated;       /* old buckets already moved */
} VmemHashStats;
void vmem_hash_stats(const Vmem *vm, VmemHashStats *stats);
/* Forgets the tables of an empty hash; up to two remain for the caller to
 * free once unlocked (NULL when none). */
void vmem_hash_fini(Vmem *vm, void *tables[2], size_t bytes[2]);

/* ---- vmem_tags.c ------------------------------------------------------- */

/* Worst-case new tags for one operation: a split in three (2), after
 * importing a span (its marker and free segment, 2 more). Frees, destroys
 * and give-backs only release tags. */
#define VMEM_TAGS_PER_OP 4
/* An arena keeps up to VMEM_STASH_HIGH spare tags and then hands back all
 * but VMEM_STASH_KEEP: the gap keeps a count that wanders by one per split
 * or merge from visiting the pool's lock every few operations. */
#define VMEM_STASH_HIGH (8 * VMEM_TAGS_PER_OP)
#define VMEM_STASH_KEEP (4 * VMEM_TAGS_PER_OP)

bool vmem_library_ready(void);
/* Fills the stash to VMEM_STASH_KEEP (at least VMEM_TAGS_PER_OP). Locked;
 * drops the lock around the pool (*state is updated), so the caller looks
 * again at anything it saw. False when the tags cannot be had. */
bool vmem_stash_fill(Vmem *vm, VmemIrqState *state, int vmflag);
/* Inline: every split and merge takes or puts a tag. */
static inline VmemTag *vmem_stash_take(Vmem *vm)
{
    VmemTag *tag = vm->vm_stash;
    if (__builtin_expect(tag == NULL, 0))
        vmem_port_panic("vmem: boundary-tag stash empty despite reservation");
    vm->vm_stash = tag->bt_u.pool_next;
    vm->vm_stash_count--;
    tag->bt_flags = 0;
    return tag;
}
static inline void vmem_stash_put(Vmem *vm, VmemTag *tag)
{
    tag->bt_type = 0;
    tag->bt_u.pool_next = vm->vm_stash;
    vm->vm_stash = tag;
    vm->vm_stash_count++;
}
/* Detaches the stash beyond VMEM_STASH_KEEP (all of it when `all`), for
 * vmem_pool_return() once the arena is unlocked. */
VmemTag *vmem_stash_detach(Vmem *vm, bool all);
void vmem_pool_return(VmemTag *list);
/* Storage for vmem_create(). */
Vmem *vmem_storage_alloc(int vmflag);
void vmem_storage_free(Vmem *vm);
/* Unused tags in the global pool, for dumps. */
size_t vmem_pool_free_tags(void);

/* ---- vmem_qcache.c ----------------------------------------------------- */

typedef struct vmem_qcache_state VmemQcacheState;

/* What the caches handed out and took back (vmem_qcache.c, point 6). */
typedef struct {
    size_t bytes;         /* objects handed out and not taken back, in arena units */
    size_t allocs, frees; /* objects handed out, taken back */
} VmemQcacheCounts;

/* Caches this arena has (0: none). */
size_t vmem_qcache_count(const Vmem *vm);
/* The address of a cached object of size (1 or more, not yet rounded), or
 * 0 when the caches do not serve this size or have nothing to give (use
 * the arena: a slab is never at 0). vmflag is valid. No lock held. */
uintptr_t vmem_qcache_alloc(Vmem *vm, size_t size, int vmflag);
/* vmem_free() of a size the caches serve: returns a cached object to them,
 * and hands anything else to vmem_arena_free_segment(). Misuse is
 * reported. size is 1 or more, not yet rounded. No lock held. */
void vmem_qcache_free(Vmem *vm, const char *call, uintptr_t addr, size_t size);
/* Does addr lie in one of the caches' slabs? */
bool vmem_qcache_owns(Vmem *vm, uintptr_t addr);
/* Returns the depot's objects and the calling CPU's magazines to their
 * slabs, or with all_cpus (destroy) every CPU's, and every free slab to
 * the arena. No lock held. */
void vmem_qcache_drain(Vmem *vm, bool all_cpus);
/* Reads the counters; true if no free was counted during the read, so
 * that bytes lies between what was outstanding at its start and its end. */
bool vmem_qcache_counts(Vmem *vm, VmemQcacheCounts *counts);
/* Frees the caches' memory; they must be drained and empty. */
void vmem_qcache_fini(Vmem *vm);

/* Arena-level calls the caches make, bypassing them. No lock held. */
int vmem_arena_alloc_slab(Vmem *vm, size_t slab_size, int vmflag, uintptr_t *addrp);
void vmem_arena_free_slab(Vmem *vm, uintptr_t base, size_t slab_size);
/* Frees an ordinary segment allocated with vmem_alloc (not a slab) from
 * the arena itself; the arguments are valid, misuse is reported. */
void vmem_arena_free_segment(Vmem *vm, const char *call, uintptr_t addr, size_t size);

/* ---- vmem_segment.c ----------------------------------------------------- */

static inline bool is_free(const VmemTag *tag) { return tag != NULL && tag->bt_type == SEG_FREE; }

/* Does the arena keep this index of its free segments (VMEM_STATE_*)? */
static inline bool vmem_indexed(const Vmem *vm, unsigned which) { return (vm->vm_state & which) != 0; }
/* Builds an index of the free segments, kept from then on. Locked. */
void vmem_index_build(Vmem *vm, unsigned which);
static inline void vmem_index_ensure(Vmem *vm, unsigned which)
{
    if (!vmem_indexed(vm, which))
        vmem_index_build(vm, which);
}

/* The first non-empty class at c or above, or VMEM_FREELISTS: a
 * find-first-set over at most VMEM_FREEMAP_WORDS words. */
static inline unsigned vmem_first_nonempty_class(const Vmem *vm, unsigned c)
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

/* A span to hand back to the source once the lock is released. */
typedef struct {
    uintptr_t base;
    size_t size;
    VmemFree *release;
} GiveBack;

/* Adds [base, base + size) as a span with one free segment; the range is
 * valid and overlaps nothing; the stash holds two tags. */
VmemTag *vmem_span_add(Vmem *vm, uintptr_t base, size_t size, uint8_t flags);
/* The span containing [addr, addr + size), or NULL. */
VmemTag *vmem_span_containing(const Vmem *vm, uintptr_t addr, size_t size);
bool vmem_span_overlaps(const Vmem *vm, uintptr_t base, uintptr_t last);
/* The span marker of exactly [base, base + size), or NULL. */
VmemTag *vmem_span_find(const Vmem *vm, uintptr_t base, size_t size);
/* The function a span with these flags goes back through (NULL: stays). */
VmemFree *vmem_span_release(const Vmem *vm, uint8_t span_flags);
/* Removes a wholly free imported span (its marker and its one free
 * segment), describing it in *give. */
void vmem_span_remove(Vmem *vm, VmemTag *marker, VmemTag *seg, GiveBack *give);
/* Hands a removed span to its release function. No lock held. */
void vmem_give_back(Vmem *vm, const GiveBack *give);
/* Allocates [addr, addr + size) out of free segment seg; the stash holds
 * two tags. Returns the allocated segment's tag (already in the hash). */
VmemTag *vmem_seg_carve(Vmem *vm, VmemTag *seg, uintptr_t addr, size_t size, uint8_t flags);
/* Frees allocated segment tag, which has left the hash, merging it with
 * free neighbours; true when that freed an imported span to give back,
 * detached into *give. */
bool vmem_seg_free(Vmem *vm, VmemTag *tag, GiveBack *give);

/* ---- vmem_misuse.c ------------------------------------------------------ */

/* Reports misuse of `call` on vm (may be NULL) through the port. The caller
 * holds no lock. */
void vmem_report(const Vmem *vm, const char *call, uintptr_t addr, size_t size,
                 VmemMisuseKind kind, const char *reason);
/* Reports why vm may not be used (not bootstrapped, NULL, not an arena);
 * returns false, or true if it may after all. */
bool vmem_report_unusable(const Vmem *vm, const char *call, uintptr_t addr, size_t size);
/* Is vm an arena that may be used? Reports if not. No lock held. Every
 * call pays one test: vmem_init() refuses to run before vmem_bootstrap(),
 * so the magic alone proves the library ready. */
static inline bool vmem_usable(const Vmem *vm, const char *call, uintptr_t addr, size_t size)
{
    if (__builtin_expect(vm != NULL && vm->vm_magic == VMEM_MAGIC, 1))
        return true;
    return vmem_report_unusable(vm, call, addr, size);
}
/* What is wrong with a span's flags or range, or NULL; sets *kind. */
const char *vmem_span_problem(uintptr_t base, size_t size, size_t quantum, int vmflag,
                              VmemMisuseKind *kind);
/* What is wrong with vmem_init's arguments (vmem NULL: vmem_create's,
 * before its storage exists), or NULL; sets *kind. */
const char *vmem_init_problem(const Vmem *vmem, uintptr_t base, size_t size, size_t quantum,
                              VmemAlloc *afunc, VmemFree *ffunc, const Vmem *source,
                              int vmflag, VmemMisuseKind *kind);
/* Why addr is no allocated segment of vm; sets *kind. Locked; changes
 * nothing (it builds no index). */
const char *vmem_bad_free_problem(Vmem *vm, uintptr_t addr, VmemMisuseKind *kind);

/* ---- vmem_alloc.c ------------------------------------------------------- */

/* Adds a span for vmem_add, vmem_add_range and vmem_init. */
int vmem_arena_add(Vmem *vm, const char *call, uintptr_t base, size_t size, int vmflag);

static inline size_t vmem_pages_for(size_t bytes) { return (bytes + VMEM_PAGE_SIZE - 1) / VMEM_PAGE_SIZE; }

#endif /* VMEM_INTERNAL_H */
