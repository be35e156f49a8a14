/*
 * vmem_tags.c - where boundary tags (and vmem_create storage) come from.
 *
 * Two levels, so the common operation touches no global lock:
 *   - the global pool: vmem_bootstrap() seeds it with a static array of
 *     VMEM_BOOTSTRAP_TAGS tags; later it is refilled one page at a time
 *     from vmem_port_page_alloc(). Protected by pool_lock. It keeps free
 *     tags page by page and hands out one page's tags before the next
 *     page's (TagPage), so an arena's tags stay close together in memory.
 *   - each arena's stash: a few spare tags under the arena's own lock.
 *     Before an operation searches, it fills the stash to its worst case
 *     (VMEM_TAGS_PER_OP), so it can never run out half-way through.
 *
 * Recursion: a kernel's page source typically allocates its pages from a
 * vmem arena, which itself needs tags. The pool therefore holds back
 * VMEM_TAG_RESERVE tags that only VM_BOOTSTRAP requests may take, and a
 * VM_BOOTSTRAP request never refills. Every refill passes VM_BOOTSTRAP to
 * the page source, so the nested allocation is served from the reserve and
 * cannot recurse again. Ordinary requests refill before they would dip into
 * the reserve, and fail cleanly if the page source has nothing.
 *
 * Lock order: pool_lock is only taken with no arena lock held, and the page
 * source is only called with no lock at all. Tag pages stay in the pool
 * until vmem_release_pages() finds them wholly unused (tags migrate between
 * arenas, so that is rare while arenas are busy; once they are destroyed,
 * it is every page).
 */
#include "vmem_internal.h"

static VmemLock pool_lock;
static bool pool_ready;
static VmemTag *bootstrap_free;     /* the static tags in the pool */
static struct tag_page *tag_pages;  /* pages with tags in the pool */
static size_t pool_count;           /* tags in the pool, static ones included */
static Vmem *storage_free;

/*
 * A page of tags: VMEM_TAGS_PER_PAGE hot parts, their links (vmem_internal.h
 * explains the split), then this header in the space left at the end of
 * the page. The pool keeps each page's free tags on the page's own list and
 * hands them out a page at a time: consecutive tags come from one page, so
 * an arena's tags stay close together however scattered the pool became (a
 * destroyed arena of a million segments returns its tags in no useful
 * order), and a page whose tags all came back is found without a walk over
 * tags.
 */
typedef struct tag_page {
    VmemTag *free;          /* this page's tags in the pool */
    struct tag_page *next;  /* pages with tags in the pool, on tag_pages */
    struct tag_page *prev;
    size_t in_pool;         /* length of free; 0 exactly when not listed */
} TagPage;

#define TAGS_PER_PAGE VMEM_TAGS_PER_PAGE
_Static_assert(sizeof(TagPage) <= VMEM_TAG_PAGE_HEADER, "the page header fits its reserved space");
_Static_assert(TAGS_PER_PAGE >= 8, "a page must hold a useful number of boundary tags");

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

/* A page that just got a tag back goes first: its tags are the most
 * recently used, so the likeliest to be in the cache. */
static void page_list(TagPage *page)
{
    page->prev = NULL;
    page->next = tag_pages;
    if (tag_pages != NULL)
        tag_pages->prev = page;
    tag_pages = page;
}

static void page_unlist(TagPage *page)
{
    if (page->prev != NULL)
        page->prev->next = page->next;
    else
        tag_pages = page->next;
    if (page->next != NULL)
        page->next->prev = page->prev;
}

static void pool_push(VmemTag *tag)
{
    tag->type = 0;
    pool_count++;
    if (from_bootstrap(tag)) {
        tag->u.pool_next = bootstrap_free;
        bootstrap_free = tag;
        return;
    }
    TagPage *page = page_of(tag);
    tag->u.pool_next = page->free;
    page->free = tag;
    if (page->in_pool++ == 0)
        page_list(page);
}

/* The static tags first (they can never be released), then the first
 * listed page until it has none left. The pool is not empty. */
static VmemTag *pool_pop(void)
{
    VmemTag *tag;
    pool_count--;
    if (bootstrap_free != NULL) {
        tag = bootstrap_free;
        bootstrap_free = tag->u.pool_next;
        return tag;
    }
    TagPage *page = tag_pages;
    tag = page->free;
    page->free = tag->u.pool_next;
    if (--page->in_pool == 0)
        page_unlist(page);
    return tag;
}

void vmem_bootstrap(void)
{
    if (vmem_library_ready())
        return;
    vmem_port_lock_init(&pool_lock);
    /* Pushed from the top, so that they are handed out in address order. */
    for (size_t i = VMEM_BOOTSTRAP_TAGS; i > 0; i--)
        pool_push(bootstrap_tag(i - 1));
    __atomic_store_n(&pool_ready, true, __ATOMIC_RELEASE);
}

size_t vmem_pool_free_tags(void)
{
    VmemIrqState state = vmem_port_lock(&pool_lock);
    size_t count = pool_count;
    vmem_port_unlock(&pool_lock, state);
    return count;
}

static int page_flags(int vmflag) { return (vmflag & (VM_SLEEP | VM_NOSLEEP)) | VM_BOOTSTRAP; }

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
        vmem_port_unlock(&pool_lock, state);
        VmemTag *page = vmem_port_page_alloc(1, page_flags(vmflag));
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
        for (size_t i = TAGS_PER_PAGE; i > 0; i--)
            pool_push(&page[i - 1]);
    }
    VmemTag *taken = NULL;
    for (size_t i = 0; i < n; i++) {
        VmemTag *tag = pool_pop();
        tag->u.pool_next = taken;
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
    for (TagPage *page = tag_pages, *next; page != NULL; page = next) {
        next = page->next;
        if (page->in_pool != TAGS_PER_PAGE)
            continue;
        page_unlist(page);
        pool_count -= TAGS_PER_PAGE;
        page->next = leaving;
        leaving = page;
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

size_t vmem_release_pages(void)
{
    if (!vmem_library_ready())
        return 0;
    /* A page given back to a page source that is an arena is a free in
     * that arena, which may give tags back to the pool and so leave more
     * pages wholly unused: go on until a pass finds none. Each pass but the
     * last gives back a page, so this ends. */
    size_t released = 0;
    for (size_t pass = release_unused_pages(); pass != 0; pass = release_unused_pages())
        released += pass;
    return released;
}

void vmem_pool_return(VmemTag *list)
{
    if (list == NULL)
        return;
    VmemIrqState state = vmem_port_lock(&pool_lock);
    while (list != NULL) {
        VmemTag *next = list->u.pool_next;
        pool_push(list);
        list = next;
    }
    vmem_port_unlock(&pool_lock, state);
}

bool vmem_stash_fill(Vmem *vm, VmemIrqState *state, int vmflag)
{
    while (vm->vm_stash_count < VMEM_TAGS_PER_OP) {
        /* Refill to the middle of the band, where a give-back also leaves
         * the stash: a count that starts there wanders further, on
         * average, before it reaches either edge and costs a pool visit
         * (W4 next-fit, where a free may give back two tags or none while
         * each allocation takes one, refilled on one pair in three when
         * it refilled to 8, on one in eight now). */
        size_t want = VMEM_STASH_KEEP - vm->vm_stash_count;
        VmemTag *list;
        vmem_port_unlock(&vm->vm_lock, *state);
        bool ok = pool_take(want, vmflag, &list);
        *state = vmem_port_lock(&vm->vm_lock);
        if (!ok)
            return vm->vm_stash_count >= VMEM_TAGS_PER_OP;
        while (list != NULL) {
            VmemTag *next = list->u.pool_next;
            vmem_stash_put(vm, list);
            list = next;
        }
    }
    return true;
}

VmemTag *vmem_stash_detach(Vmem *vm, bool all)
{
    size_t keep = all ? 0 : VMEM_STASH_KEEP;
    VmemTag *detached = NULL;
    while (vm->vm_stash_count > keep) {
        VmemTag *tag = vmem_stash_take(vm);
        tag->u.pool_next = detached;
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
