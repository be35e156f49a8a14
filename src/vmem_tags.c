/*
 * vmem_tags.c - where boundary tags (and vmem_create storage) come from.
 *
 * The global pool, under pool_lock, starts with vmem_bootstrap()'s static
 * tags and grows a page at a time from vmem_port_page_alloc(). It hands
 * out one page's free tags before the next page's (TagPage), so an arena's
 * tags stay close together, and it finds a wholly unused page without a
 * walk. Each arena keeps a stash of spare tags under its own lock, filled
 * before an operation to its worst case (VMEM_TAGS_PER_OP): operations
 * rarely take pool_lock, and never run out half-way.
 *
 * Recursion: a kernel's page source typically allocates from a vmem arena,
 * which needs tags. So the pool holds VMEM_TAG_RESERVE tags back for
 * VM_BOOTSTRAP requests, which never refill; every refill passes
 * VM_BOOTSTRAP to the page source, whose nested allocation is served from
 * the reserve. pool_lock is taken with no arena lock held, and the page
 * source is called with no lock at all.
 *
 * Records. When the page source is an arena, it describes each tag page
 * it lends with a tag of its own, the page's record, which lives on a tag
 * page too. Left to chance, records chain pages together, so that one page
 * still in use keeps every page of its chain. The pool therefore places
 * records: the page-source arena is the one that refills its stash for a
 * VM_BOOTSTRAP request; before asking for a page the pool puts a record
 * tag on top of that arena's stash, where the page's allocation takes it.
 * Records of level-k pages come from pages of level k + 1, which hold
 * records only; level 0 holds every arena's tags; the top level's
 * records are static tags (TOP_RECORDS are kept for them). A record is
 * taken from the highest page of its level: a page source that lends from
 * the top (VM_ENDALLOC, as ports do) lent the highest pages first, so
 * records gather on the oldest pages. vmem_release_pages() first takes
 * the page-source arena's spare tags back and gives it the smaller hash
 * table it wants. A record then keeps a page only while the page it
 * records stays; vmem.h states the resulting bound.
 */
#include "vmem_internal.h"

static VmemLock pool_lock;
static bool pool_ready;
static VmemTag *bootstrap_free;     /* the static tags in the pool */
static VmemTag *top_records;        /* static tags kept for the top level's records */
static size_t top_records_count;
/* Levels of record pages: each multiplies by TAGS_PER_PAGE the level-0
 * pages one static record leads to; three cover millions of tags. */
#define RECORD_LEVELS 3
#define TOP_RECORDS 4
/* Pages with tags in the pool, by level. */
static struct tag_page *tag_pages[RECORD_LEVELS + 1];
static size_t pool_count;           /* static and level-0 tags in the pool */
static size_t record_count;         /* tags of record pages in the pool */
static Vmem *page_source_arena;     /* see "Records" above */
static Vmem *storage_free;

/* A page of tags: VMEM_TAGS_PER_PAGE hot parts, their links (see
 * vmem_internal.h), then this header at the end of the page, which keeps
 * the page's own list of its tags in the pool. */
typedef struct tag_page {
    VmemTag *free;          /* this page's tags in the pool */
    struct tag_page *next;  /* pages with tags in the pool, on tag_pages[level] */
    struct tag_page *prev;  /* (tag_pages[level]) */
    uint16_t in_pool;       /* length of free; 0 exactly when not listed */
    uint16_t level;         /* 0, or the level of a record page */
} TagPage;

#define TAGS_PER_PAGE VMEM_TAGS_PER_PAGE
_Static_assert(sizeof(TagPage) <= VMEM_TAG_PAGE_HEADER, "the page header fits its reserved space");
_Static_assert(TAGS_PER_PAGE >= 8, "a page must hold a useful number of boundary tags");
_Static_assert(TAGS_PER_PAGE <= UINT16_MAX, "a page's count of tags fits its header");

/* The static tags of vmem_bootstrap(), in pages laid out like those of the
 * page source, since tag_links() finds a tag's links by its page. */
#define BOOTSTRAP_PAGES ((VMEM_BOOTSTRAP_TAGS + TAGS_PER_PAGE - 1) / TAGS_PER_PAGE)
static struct {
    unsigned char bytes[VMEM_PAGE_SIZE];
} bootstrap_pages[BOOTSTRAP_PAGES] __attribute__((aligned(VMEM_PAGE_SIZE)));

static VmemTag *bootstrap_tag(size_t i)
{
    return (VmemTag *)(void *)bootstrap_pages[i / TAGS_PER_PAGE].bytes + i % TAGS_PER_PAGE;
}

/* Compared as integers: a tag from a page is a different object. */
static bool from_bootstrap(const VmemTag *tag)
{
    uintptr_t at = (uintptr_t)tag;
    return at >= (uintptr_t)&bootstrap_pages[0] && at < (uintptr_t)&bootstrap_pages[BOOTSTRAP_PAGES];
}

static TagPage *page_of(const VmemTag *tag)
{
    uintptr_t page = (uintptr_t)tag & ~(uintptr_t)(VMEM_PAGE_SIZE - 1);
    return (TagPage *)(page + VMEM_PAGE_SIZE - sizeof(TagPage));
}

static VmemTag *first_tag_of(TagPage *page)
{
    return (VmemTag *)((uintptr_t)page & ~(uintptr_t)(VMEM_PAGE_SIZE - 1));
}

bool vmem_library_ready(void) { return __atomic_load_n(&pool_ready, __ATOMIC_ACQUIRE); }

static TagPage **page_list_of(const TagPage *page) { return &tag_pages[page->level]; }

/* A page that just got a tag back goes first: its tags are the most
 * recently used, so the likeliest to be in the cache. */
static void page_list(TagPage *page)
{
    TagPage **list = page_list_of(page);
    page->prev = NULL;
    page->next = *list;
    if (*list != NULL)
        (*list)->prev = page;
    *list = page;
}

static void page_unlist(TagPage *page)
{
    if (page->prev != NULL)
        page->prev->next = page->next;
    else
        *page_list_of(page) = page->next;
    if (page->next != NULL)
        page->next->prev = page->prev;
}

static void pool_push(VmemTag *tag)
{
    tag->bt_type = 0;
    if (from_bootstrap(tag)) {
        pool_count++;
        if (top_records_count < TOP_RECORDS) {
            tag->bt_u.pool_next = top_records;
            top_records = tag;
            top_records_count++;
            return;
        }
        tag->bt_u.pool_next = bootstrap_free;
        bootstrap_free = tag;
        return;
    }
    TagPage *page = page_of(tag);
    if (page->level == 0)
        pool_count++;
    else
        record_count++;
    tag->bt_u.pool_next = page->free;
    page->free = tag;
    if (page->in_pool++ == 0)
        page_list(page);
}

static VmemTag *page_pop(TagPage *page)
{
    if (page->level == 0)
        pool_count--;
    else
        record_count--;
    VmemTag *tag = page->free;
    page->free = tag->bt_u.pool_next;
    if (--page->in_pool == 0)
        page_unlist(page);
    return tag;
}

static VmemTag *top_record_pop(void)
{
    VmemTag *tag = top_records;
    if (tag != NULL) {
        pool_count--;
        top_records = tag->bt_u.pool_next;
        top_records_count--;
    }
    return tag;
}

/* The static tags first (they can never be released), then the first
 * listed page until it has none left, and the static tags kept for
 * records last. The pool is not empty. */
static VmemTag *pool_pop(void)
{
    if (bootstrap_free != NULL) {
        VmemTag *tag = bootstrap_free;
        pool_count--;
        bootstrap_free = tag->bt_u.pool_next;
        return tag;
    }
    if (tag_pages[0] != NULL)
        return page_pop(tag_pages[0]);
    return top_record_pop();
}

void vmem_bootstrap(void)
{
    if (vmem_library_ready())
        return;
    vmem_port_lock_init(&pool_lock);
    /* Pushed from the top, so that they are handed out in address order
     * (the first TOP_RECORDS pushed are set aside). */
    for (size_t i = VMEM_BOOTSTRAP_TAGS; i > 0; i--)
        pool_push(bootstrap_tag(i - 1));
    __atomic_store_n(&pool_ready, true, __ATOMIC_RELEASE);
}

size_t vmem_pool_free_tags(void)
{
    VmemIrqState state = vmem_port_lock(&pool_lock);
    size_t count = pool_count + record_count;
    vmem_port_unlock(&pool_lock, state);
    return count;
}

static int page_flags(int vmflag) { return (vmflag & (VM_SLEEP | VM_NOSLEEP)) | VM_BOOTSTRAP; }

/* Under pool_lock: the record the page-source arena should describe the
 * next tag page with, and in *level that page's level: the lowest level
 * whose level above has a record to give, from its highest page (a static
 * tag for the top level, while one is set aside). NULL when pages do not
 * come from an arena: the pool then takes level-0 pages only. */
static VmemTag *record_for_next_page(uint16_t *level)
{
    *level = 0;
    if (__atomic_load_n(&page_source_arena, __ATOMIC_RELAXED) == NULL)
        return NULL;
    for (uint16_t below = 0; below < RECORD_LEVELS; below++) {
        TagPage *highest = NULL;
        for (TagPage *page = tag_pages[below + 1]; page != NULL; page = page->next)
            if (highest == NULL || (uintptr_t)page > (uintptr_t)highest)
                highest = page;
        if (highest != NULL) {
            *level = below;
            return page_pop(highest);
        }
    }
    *level = RECORD_LEVELS;
    return top_record_pop();
}

/* Puts record on top of the page-source arena's spare tags, where its
 * next allocation, the page about to be asked for, takes it. No lock held. */
static void hand_record_to_page_source(VmemTag *record)
{
    Vmem *vm = __atomic_load_n(&page_source_arena, __ATOMIC_ACQUIRE);
    if (vm != NULL) {
        VmemIrqState state = vmem_lock(vm);
        bool usable = vm->vm_magic == VMEM_MAGIC;
        if (usable)
            vmem_stash_put(vm, record);
        vmem_unlock(vm, state);
        if (usable)
            return;
    }
    VmemIrqState state = vmem_port_lock(&pool_lock);
    pool_push(record);
    vmem_port_unlock(&pool_lock, state);
}

/* After the page source was called: a record still on top of the
 * page-source arena's stash was not what described the page, because the
 * page did not come from that arena (a port may change where its pages
 * come from) or came whole from a free segment. The record goes back to
 * the pool, the pool forgets that arena until its next VM_BOOTSTRAP
 * refill, and the caller treats the page as one no record describes.
 * No lock held. */
static bool record_went_unused(VmemTag *record)
{
    Vmem *vm = __atomic_load_n(&page_source_arena, __ATOMIC_ACQUIRE);
    if (vm == NULL)
        return true; /* forgotten meanwhile: the record went back to the pool */
    VmemIrqState state = vmem_lock(vm);
    bool unused = vm->vm_magic == VMEM_MAGIC && vm->vm_stash == record;
    if (unused) {
        vmem_stash_take(vm);
        Vmem *expected = vm;
        __atomic_compare_exchange_n(&page_source_arena, &expected, NULL, false, __ATOMIC_RELEASE,
                                    __ATOMIC_RELAXED);
    }
    vmem_unlock(vm, state);
    if (unused) {
        state = vmem_port_lock(&pool_lock);
        pool_push(record);
        vmem_port_unlock(&pool_lock, state);
    }
    return unused;
}

/* Takes n tags from the pool into *list, refilling from the page source
 * when needed and allowed. No lock held on entry or exit. */
static bool pool_take(size_t n, int vmflag, VmemTag **list)
{
    size_t reserve = (vmflag & VM_BOOTSTRAP) ? 0 : VMEM_TAG_RESERVE;
    VmemIrqState state = vmem_port_lock(&pool_lock);
    while (pool_count < n + reserve) {
        if (vmflag & VM_BOOTSTRAP) {
            vmem_port_unlock(&pool_lock, state);
            return false;
        }
        uint16_t level;
        VmemTag *record = record_for_next_page(&level);
        vmem_port_unlock(&pool_lock, state);
        if (record != NULL)
            hand_record_to_page_source(record);
        VmemTag *page = vmem_port_page_alloc(1, page_flags(vmflag));
        if (record != NULL && record_went_unused(record))
            level = 0;
        state = vmem_port_lock(&pool_lock);
        if (page == NULL) {
            if (pool_count >= n + reserve)
                break; /* another CPU refilled meanwhile */
            vmem_port_unlock(&pool_lock, state);
            return false;
        }
        TagPage *header = page_of(page);
        header->free = NULL;
        header->in_pool = 0;
        header->level = level;
        for (size_t i = TAGS_PER_PAGE; i > 0; i--)
            pool_push(&page[i - 1]);
    }
    VmemTag *taken = NULL;
    for (size_t i = 0; i < n; i++) {
        VmemTag *tag = pool_pop();
        tag->bt_u.pool_next = taken;
        taken = tag;
    }
    vmem_port_unlock(&pool_lock, state);
    *list = taken;
    return true;
}

/* One pass of vmem_release_pages(): every page wholly unused right now. */
static size_t release_unused_pages(void)
{
    /* Pages whose every tag is in the pool leave the list under the lock
     * (nothing can reach them after that) and go back without it. */
    TagPage *leaving = NULL;
    VmemIrqState state = vmem_port_lock(&pool_lock);
    for (size_t level = 0; level <= RECORD_LEVELS; level++) {
        for (TagPage *page = tag_pages[level], *next; page != NULL; page = next) {
            next = page->next;
            if (page->in_pool != TAGS_PER_PAGE)
                continue;
            page_unlist(page);
            if (level == 0)
                pool_count -= TAGS_PER_PAGE;
            else
                record_count -= TAGS_PER_PAGE;
            page->next = leaving;
            leaving = page;
        }
    }
    vmem_port_unlock(&pool_lock, state);
    size_t released = 0;
    while (leaving != NULL) {
        TagPage *next = leaving->next;
        vmem_port_page_free(first_tag_of(leaving), 1);
        released++;
        leaving = next;
    }
    return released;
}

/* Takes the page-source arena's spare tags back into the pool, so that
 * they keep no page of it from going back. */
static void trim_page_source_stash(void)
{
    Vmem *vm = __atomic_load_n(&page_source_arena, __ATOMIC_ACQUIRE);
    if (vm == NULL)
        return;
    VmemTag *tags = NULL;
    VmemIrqState state = vmem_lock(vm);
    while (vm->vm_magic == VMEM_MAGIC && vm->vm_stash_count > 0) {
        VmemTag *tag = vmem_stash_take(vm);
        tag->bt_u.pool_next = tags;
        tags = tag;
    }
    vmem_unlock(vm, state);
    vmem_pool_return(tags);
}

/* Buckets moved per hold of the arena lock when a release finishes a
 * migration: a short hold, as for any operation's migration step. */
#define MIGRATE_PER_HOLD 64

/* Gives the page-source arena the smaller hash table it asks for and
 * moves into it at once. That arena only frees while its pages come back,
 * and frees never allocate a table (vmem_hash.c, 5): its oversized table,
 * lent by the page source and lying low among the tag pages, would stay,
 * and with it every tag page whose record or gap it keeps. Returns whether
 * a table went back. No lock held. */
static bool shrink_page_source_hash(void)
{
    Vmem *vm = __atomic_load_n(&page_source_arena, __ATOMIC_ACQUIRE);
    if (vm == NULL)
        return false;
    size_t wanted = __atomic_load_n(&vm->vm_hash_hint, __ATOMIC_RELAXED);
    size_t pages = (wanted + VMEM_PAGE_SIZE - 1) / VMEM_PAGE_SIZE;
    VmemIrqState state = vmem_lock(vm);
    bool smaller = vm->vm_magic == VMEM_MAGIC && wanted != 0 && wanted < vmem_hash_table_bytes(vm);
    vmem_unlock(vm, state);
    void *table = smaller ? vmem_port_page_alloc(pages, VM_NOSLEEP | VM_BOOTSTRAP) : NULL;
    bool returned = false;
    for (bool more = true; more;) {
        void *unused = NULL, *retired = NULL;
        size_t retired_bytes = 0;
        state = vmem_lock(vm);
        more = vm->vm_magic == VMEM_MAGIC;
        if (table != NULL && !(more && vmem_hash_install(vm, table, wanted)))
            unused = table;
        table = NULL;
        if (more) {
            more = vmem_hash_migrate_some(vm, MIGRATE_PER_HOLD);
            retired = vmem_hash_take_retired(vm, &retired_bytes);
        }
        vmem_unlock(vm, state);
        if (unused != NULL)
            vmem_port_page_free(unused, pages);
        if (retired != NULL) {
            vmem_port_page_free(retired, (retired_bytes + VMEM_PAGE_SIZE - 1) / VMEM_PAGE_SIZE);
            returned = true;
        }
    }
    return returned;
}

size_t vmem_release_pages(void)
{
    if (!vmem_library_ready())
        return 0;
    /* A page given back to a page source that is an arena is a free in
     * that arena, which may give tags back to the pool and so leave more
     * pages wholly unused: go on until a pass finds none. Each pass but the
     * last gives back a page or a larger hash table for a smaller one, so
     * this ends. */
    size_t released = 0;
    for (;;) {
        trim_page_source_stash();
        bool shrunk = shrink_page_source_hash();
        size_t pass = release_unused_pages();
        if (pass == 0 && !shrunk)
            break;
        released += pass;
    }
    return released;
}

void vmem_pool_return(VmemTag *list)
{
    if (list == NULL)
        return;
    VmemIrqState state = vmem_port_lock(&pool_lock);
    while (list != NULL) {
        VmemTag *next = list->bt_u.pool_next;
        pool_push(list);
        list = next;
    }
    vmem_port_unlock(&pool_lock, state);
}

bool vmem_stash_fill(Vmem *vm, VmemIrqState *state, int vmflag)
{
    if ((vmflag & VM_BOOTSTRAP) && __atomic_load_n(&page_source_arena, __ATOMIC_RELAXED) != vm)
        __atomic_store_n(&page_source_arena, vm, __ATOMIC_RELEASE);
    while (vm->vm_stash_count < VMEM_TAGS_PER_OP) {
        /* Refill to the middle of the band, where a give-back also leaves
         * the stash: a count that starts there wanders further, on
         * average, before it reaches either edge and costs a pool visit
         * (as in next-fit IDs, where a free may give back two tags or
         * none while each allocation takes one). */
        size_t want = VMEM_STASH_KEEP - vm->vm_stash_count;
        VmemTag *list;
        vmem_unlock(vm, *state);
        bool ok = pool_take(want, vmflag, &list);
        *state = vmem_lock(vm);
        if (!ok)
            return vm->vm_stash_count >= VMEM_TAGS_PER_OP;
        while (list != NULL) {
            VmemTag *next = list->bt_u.pool_next;
            vmem_stash_put(vm, list);
            list = next;
        }
    }
    return true;
}

VmemTag *vmem_stash_detach(Vmem *vm, bool all)
{
    size_t keep = all ? 0 : VMEM_STASH_KEEP;
    if (all) {
        /* The arena is going away: the pool must forget it. */
        Vmem *expected = vm;
        __atomic_compare_exchange_n(&page_source_arena, &expected, NULL, false, __ATOMIC_RELEASE,
                                    __ATOMIC_RELAXED);
    }
    VmemTag *detached = NULL;
    while (vm->vm_stash_count > keep) {
        VmemTag *tag = vmem_stash_take(vm);
        tag->bt_u.pool_next = detached;
        detached = tag;
    }
    return detached;
}

/* ---- vmem_create() storage ------------------------------------------------ */

_Static_assert(sizeof(Vmem) <= VMEM_PAGE_SIZE, "an arena must fit in one page");

Vmem *vmem_storage_alloc(int vmflag)
{
    VmemIrqState state = vmem_port_lock(&pool_lock);
    while (storage_free == NULL) {
        vmem_port_unlock(&pool_lock, state);
        Vmem *page = vmem_port_page_alloc(1, page_flags(vmflag));
        if (page == NULL)
            return NULL;
        state = vmem_port_lock(&pool_lock);
        for (size_t i = 0; i < VMEM_PAGE_SIZE / sizeof(Vmem); i++) {
            page[i].vm_next_created = storage_free;
            storage_free = &page[i];
        }
    }
    Vmem *vm = storage_free;
    storage_free = vm->vm_next_created;
    vmem_port_unlock(&pool_lock, state);
    return vm;
}

void vmem_storage_free(Vmem *vm)
{
    VmemIrqState state = vmem_port_lock(&pool_lock);
    vm->vm_next_created = storage_free;
    storage_free = vm;
    vmem_port_unlock(&pool_lock, state);
}
