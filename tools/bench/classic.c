/*
 * classic.c - the classic vmem of classic.h, the benchmark's yardstick.
 *
 * Owns one arena's segments, freelists, hash and tag supply. Invariants
 * (classic_check verifies them): the segment list covers the span in
 * address order without gaps; no two free segments are adjacent; every
 * free segment is on the freelist of its size's power of two, whose bit is
 * set exactly when the list is not empty; every allocated segment is in the
 * hash chain its address indexes, and nothing else is.
 *
 * It is built the way the well-known implementations are, not the way
 * libvmem is, and where they differ among themselves it takes the faster
 * choice, so that the comparison is with the best of them:
 *   - tags are one record each (base, size, two address links, two list
 *     links that the hash chain reuses, a type), taken from and returned
 *     to a per-arena stack, so a new tag is usually one just freed; the
 *     stack is refilled a page at a time from a region the arena reserves
 *     for itself, in ascending order, as a kernel's slab over its direct
 *     map would (not from malloc, whose heap an earlier workload leaves
 *     scattered: measured, that alone moved W4 by x2);
 *   - the hash keys on the address folded with itself shifted by the
 *     table's log size twice, and doubles (a full rehash, under the lock)
 *     as soon as it holds more entries than buckets - illumos rescales
 *     only from its periodic update, and lets chains grow meanwhile;
 *   - instant-fit takes the head of the smallest list all of whose members
 *     fit, else searches the request's own list;
 *   - best-fit takes the smallest fit in the lowest list that has one;
 *   - next-fit walks the segment list from the last next-fit allocation,
 *     wrapping around once;
 *   - an aligned request first tries the head of the smallest list whose
 *     members all fit it wherever they lie (size + align - quantum), then
 *     walks the lists from its own size up, skipping what cannot align.
 */
#include "classic.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

enum { SEG_FREE = 1, SEG_ALLOC = 2 };

typedef struct ctag {
    uintptr_t base;
    size_t size;
    struct ctag *seg_next; /* address order */
    struct ctag *seg_prev;
    struct ctag *k_next;   /* free: freelist; allocated: hash chain; spare: tag stack */
    struct ctag *k_prev;   /* free: freelist */
    int type;
} CTag;

#define LISTS 64
#define TAG_PAGE 4096
#define HASH_MIN 16

struct classic_arena {
    pthread_mutex_t lock;
    uintptr_t base;
    size_t size;
    size_t quantum;
    unsigned quantum_shift;
    CTag *seg_first;
    CTag *freelist[LISTS];
    uint64_t freemap;
    CTag **hash;
    size_t hash_buckets;
    unsigned hash_shift;
    size_t hash_count;
    CTag *rotor;           /* last next-fit allocation, NULL: from the bottom */
    CTag *spare;           /* tag stack */
    char *tag_region;      /* reserved for tags; the first tag_used bytes are in use */
    size_t tag_used;
    size_t tag_reserved;
};

static void fail(const char *what)
{
    fprintf(stderr, "classic vmem: %s\n", what);
    abort();
}

static unsigned floor_log2(size_t x) { return 63u - (unsigned)__builtin_clzll((unsigned long long)x); }
static size_t round_up(size_t x, size_t align) { return (x + align - 1) & ~(align - 1); }

/* ---- Tags ---------------------------------------------------------------- */

static CTag *tag_get(ClassicArena *a)
{
    if (a->spare == NULL) {
        if (a->tag_used == a->tag_reserved)
            fail("out of tag space");
        CTag *tags = (CTag *)(void *)(a->tag_region + a->tag_used);
        a->tag_used += TAG_PAGE;
        size_t n = TAG_PAGE / sizeof(CTag);
        for (size_t i = n; i > 0; i--) {
            tags[i - 1].k_next = a->spare;
            a->spare = &tags[i - 1];
        }
    }
    CTag *tag = a->spare;
    a->spare = tag->k_next;
    return tag;
}

static void tag_put(ClassicArena *a, CTag *tag)
{
    tag->type = 0;
    tag->k_next = a->spare;
    a->spare = tag;
}

/* ---- Freelists ------------------------------------------------------------ */

static void list_insert(ClassicArena *a, CTag *tag)
{
    unsigned c = floor_log2(tag->size);
    tag->type = SEG_FREE;
    tag->k_prev = NULL;
    tag->k_next = a->freelist[c];
    if (tag->k_next != NULL)
        tag->k_next->k_prev = tag;
    a->freelist[c] = tag;
    a->freemap |= (uint64_t)1 << c;
}

static void list_remove(ClassicArena *a, CTag *tag)
{
    unsigned c = floor_log2(tag->size);
    if (tag->k_prev != NULL)
        tag->k_prev->k_next = tag->k_next;
    else
        a->freelist[c] = tag->k_next;
    if (tag->k_next != NULL)
        tag->k_next->k_prev = tag->k_prev;
    if (a->freelist[c] == NULL)
        a->freemap &= ~((uint64_t)1 << c);
}

/* The lowest non-empty list at c or above, or LISTS. */
static unsigned list_at_or_above(const ClassicArena *a, unsigned c)
{
    if (c >= LISTS)
        return LISTS;
    uint64_t bits = a->freemap & (~(uint64_t)0 << c);
    return bits == 0 ? LISTS : (unsigned)__builtin_ctzll(bits);
}

/* The first list all of whose members are at least `size` long. */
static unsigned list_all_fit(size_t size)
{
    unsigned c = floor_log2(size);
    return (size & (size - 1)) == 0 ? c : c + 1;
}

/* ---- Hash ------------------------------------------------------------------ */

static size_t hash_index(const ClassicArena *a, uintptr_t addr)
{
    uintptr_t folded = addr + (addr >> a->hash_shift) + (addr >> (2 * a->hash_shift));
    return (folded >> a->quantum_shift) & (a->hash_buckets - 1);
}

static void hash_resize(ClassicArena *a, size_t buckets)
{
    CTag **old = a->hash;
    size_t old_buckets = a->hash_buckets;
    a->hash = calloc(buckets, sizeof(CTag *));
    if (a->hash == NULL)
        fail("out of memory for the hash");
    a->hash_buckets = buckets;
    a->hash_shift = floor_log2(buckets);
    for (size_t b = 0; b < old_buckets; b++) {
        for (CTag *tag = old[b], *next; tag != NULL; tag = next) {
            next = tag->k_next;
            CTag **head = &a->hash[hash_index(a, tag->base)];
            tag->k_next = *head;
            *head = tag;
        }
    }
    free(old);
}

static void hash_insert(ClassicArena *a, CTag *tag)
{
    if (a->hash_count >= a->hash_buckets)
        hash_resize(a, 2 * a->hash_buckets);
    CTag **head = &a->hash[hash_index(a, tag->base)];
    tag->k_next = *head;
    *head = tag;
    a->hash_count++;
}

static CTag *hash_remove(ClassicArena *a, uintptr_t addr)
{
    for (CTag **at = &a->hash[hash_index(a, addr)]; *at != NULL; at = &(*at)->k_next) {
        CTag *tag = *at;
        if (tag->base == addr) {
            *at = tag->k_next;
            a->hash_count--;
            return tag;
        }
    }
    return NULL;
}

/* ---- Segments ---------------------------------------------------------------- */

static void seg_insert_after(ClassicArena *a, CTag *prev, CTag *tag)
{
    tag->seg_prev = prev;
    tag->seg_next = prev != NULL ? prev->seg_next : a->seg_first;
    if (tag->seg_next != NULL)
        tag->seg_next->seg_prev = tag;
    if (prev != NULL)
        prev->seg_next = tag;
    else
        a->seg_first = tag;
}

static void seg_unlink(ClassicArena *a, CTag *tag)
{
    if (tag->seg_prev != NULL)
        tag->seg_prev->seg_next = tag->seg_next;
    else
        a->seg_first = tag->seg_next;
    if (tag->seg_next != NULL)
        tag->seg_next->seg_prev = tag->seg_prev;
}

/* Allocates [addr, addr + size) from free segment `free`; returns its tag. */
static CTag *carve(ClassicArena *a, CTag *free, uintptr_t addr, size_t size)
{
    list_remove(a, free);
    uintptr_t end = free->base + free->size;
    CTag *alloc = free;
    if (addr > free->base) {
        free->size = addr - free->base;
        list_insert(a, free);
        alloc = tag_get(a);
        seg_insert_after(a, free, alloc);
    }
    alloc->base = addr;
    alloc->size = size;
    alloc->type = SEG_ALLOC;
    if (addr + size < end) {
        CTag *rest = tag_get(a);
        rest->base = addr + size;
        rest->size = end - (addr + size);
        seg_insert_after(a, alloc, rest);
        list_insert(a, rest);
    }
    hash_insert(a, alloc);
    return alloc;
}

/* Where size at align fits in tag, if anywhere. */
static bool fits(const CTag *tag, size_t size, size_t align, uintptr_t *addr)
{
    uintptr_t start = (tag->base + align - 1) & ~(uintptr_t)(align - 1);
    if (start < tag->base || start - tag->base > tag->size || tag->size - (start - tag->base) < size)
        return false;
    *addr = start;
    return true;
}

/* The first fit in the lists from c up, or with `best` the smallest fit
 * in the first list that has one. */
static CTag *search_lists(ClassicArena *a, unsigned c, size_t size, size_t align, bool best,
                          uintptr_t *addr)
{
    for (c = list_at_or_above(a, c); c < LISTS; c = list_at_or_above(a, c + 1)) {
        CTag *found = NULL;
        uintptr_t at;
        for (CTag *tag = a->freelist[c]; tag != NULL; tag = tag->k_next) {
            if ((found == NULL || tag->size < found->size) && fits(tag, size, align, &at)) {
                found = tag;
                *addr = at;
                if (!best || tag->size == size)
                    break;
            }
        }
        if (found != NULL)
            return found;
    }
    return NULL;
}

static CTag *next_fit(ClassicArena *a, size_t size, uintptr_t *addr)
{
    CTag *start = a->rotor != NULL ? a->rotor : a->seg_first;
    CTag *tag = start;
    do {
        if (tag->type == SEG_FREE && tag->size >= size) {
            *addr = tag->base;
            return tag;
        }
        tag = tag->seg_next != NULL ? tag->seg_next : a->seg_first;
    } while (tag != start);
    return NULL;
}

static uintptr_t allocate(ClassicArena *a, size_t size, size_t align, int policy)
{
    size = round_up(size, a->quantum);
    if (size == 0 || align < a->quantum)
        fail("bad request");
    pthread_mutex_lock(&a->lock);
    CTag *tag = NULL;
    uintptr_t addr = 0;
    if (policy == CLASSIC_NEXTFIT && align == a->quantum) {
        tag = next_fit(a, size, &addr);
    } else if (policy == CLASSIC_INSTANTFIT) {
        unsigned c = list_at_or_above(a, list_all_fit(size + (align - a->quantum)));
        if (c < LISTS) {
            tag = a->freelist[c];
            if (!fits(tag, size, align, &addr))
                fail("a segment of the comfortable size does not fit");
        } else {
            tag = search_lists(a, floor_log2(size), size, align, false, &addr);
        }
    } else {
        tag = search_lists(a, floor_log2(size), size, align, policy == CLASSIC_BESTFIT, &addr);
    }
    if (tag != NULL) {
        CTag *alloc = carve(a, tag, addr, size);
        if (policy == CLASSIC_NEXTFIT)
            a->rotor = alloc;
    }
    pthread_mutex_unlock(&a->lock);
    return tag != NULL ? addr : 0;
}

uintptr_t classic_alloc(ClassicArena *a, size_t size, int policy)
{
    return allocate(a, size, a->quantum, policy);
}

uintptr_t classic_xalloc(ClassicArena *a, size_t size, size_t align, int policy)
{
    if (align == 0 || (align & (align - 1)) != 0)
        fail("bad alignment");
    return allocate(a, size, align < a->quantum ? a->quantum : align, policy);
}

/* Segment `upper` joins its neighbour `lower`; its tag goes back. Neither
 * is on a freelist. */
static void merge_into(ClassicArena *a, CTag *lower, CTag *upper)
{
    lower->size += upper->size;
    seg_unlink(a, upper);
    if (a->rotor == upper)
        a->rotor = lower;
    tag_put(a, upper);
}

void classic_free(ClassicArena *a, uintptr_t addr, size_t size)
{
    pthread_mutex_lock(&a->lock);
    CTag *tag = hash_remove(a, addr);
    if (tag == NULL || tag->size != round_up(size, a->quantum))
        fail("free of something not allocated, or with the wrong size");
    CTag *next = tag->seg_next, *prev = tag->seg_prev;
    if (next != NULL && next->type == SEG_FREE) {
        list_remove(a, next);
        merge_into(a, tag, next);
    }
    if (prev != NULL && prev->type == SEG_FREE) {
        list_remove(a, prev);
        merge_into(a, prev, tag);
        tag = prev;
    }
    list_insert(a, tag);
    pthread_mutex_unlock(&a->lock);
}

ClassicArena *classic_create(uintptr_t base, size_t size, size_t quantum)
{
    if (base == 0 || size == 0 || quantum == 0 || (quantum & (quantum - 1)) != 0 ||
        base % quantum != 0 || size % quantum != 0)
        fail("bad arena");
    ClassicArena *a = calloc(1, sizeof(*a));
    if (a == NULL)
        fail("out of memory for an arena");
    pthread_mutex_init(&a->lock, NULL);
    a->base = base;
    a->size = size;
    a->quantum = quantum;
    a->quantum_shift = floor_log2(quantum);
    /* Room for a tag per quantum (the most segments the span can have),
     * reserved, not committed: pages are only touched as tags are needed. */
    size_t most_tags = size / quantum + 1;
    a->tag_reserved = round_up((most_tags / (TAG_PAGE / sizeof(CTag)) + 1) * TAG_PAGE, TAG_PAGE);
    a->tag_region = mmap(NULL, a->tag_reserved, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (a->tag_region == MAP_FAILED)
        fail("cannot reserve tag space");
    hash_resize(a, HASH_MIN);
    CTag *whole = tag_get(a);
    whole->base = base;
    whole->size = size;
    seg_insert_after(a, NULL, whole);
    list_insert(a, whole);
    return a;
}

void classic_destroy(ClassicArena *a)
{
    munmap(a->tag_region, a->tag_reserved);
    free(a->hash);
    pthread_mutex_destroy(&a->lock);
    free(a);
}

size_t classic_check(ClassicArena *a)
{
    pthread_mutex_lock(&a->lock);
    uintptr_t expect = a->base;
    size_t allocated = 0, allocs = 0, frees = 0;
    int last_type = 0;
    for (CTag *tag = a->seg_first; tag != NULL; tag = tag->seg_next) {
        if (tag->base != expect || tag->size == 0 || tag->size % a->quantum != 0)
            fail("check: the segments do not tile the span");
        if (tag->seg_next != NULL && tag->seg_next->seg_prev != tag)
            fail("check: broken address links");
        if (tag->type == SEG_FREE) {
            if (last_type == SEG_FREE)
                fail("check: two free segments are adjacent");
            frees++;
        } else if (tag->type == SEG_ALLOC) {
            CTag *found = a->hash[hash_index(a, tag->base)];
            while (found != NULL && found != tag)
                found = found->k_next;
            if (found == NULL)
                fail("check: an allocated segment is not in the hash");
            allocated += tag->size;
            allocs++;
        } else {
            fail("check: a segment has no type");
        }
        last_type = tag->type;
        expect = tag->base + tag->size;
    }
    if (expect != a->base + a->size)
        fail("check: the segments do not reach the end of the span");
    if (allocs != a->hash_count)
        fail("check: the hash holds something that is not an allocated segment");
    size_t listed = 0;
    for (unsigned c = 0; c < LISTS; c++) {
        if ((a->freelist[c] != NULL) != ((a->freemap >> c & 1) != 0))
            fail("check: the freemap disagrees with the lists");
        for (CTag *tag = a->freelist[c]; tag != NULL; tag = tag->k_next) {
            if (tag->type != SEG_FREE || floor_log2(tag->size) != c)
                fail("check: a freelist holds the wrong segment");
            if (tag->k_next != NULL && tag->k_next->k_prev != tag)
                fail("check: broken freelist links");
            listed++;
        }
    }
    if (listed != frees)
        fail("check: a free segment is missing from the freelists");
    pthread_mutex_unlock(&a->lock);
    return allocated;
}

size_t classic_tag_size(void) { return sizeof(CTag); }
