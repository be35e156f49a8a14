/*
 * host_misuse.c - host-only misuse tests: a misuse takes nothing from the
 * page source. Only the hosted port can count the pages it has handed out
 * (vmem_posix_pages_outstanding), and only there can this be seen: a page
 * taken by a misused call changes no placement, but it is memory the
 * kernel no longer has, and a table installed then shows in vmem_dump.
 */
#include "test_support.h"
#include "vmem_posix.h"

#define IDS_BASE ((uintptr_t)0x1000)
#define LIVE 1024

/* Leaves spare boundary tags in the library's pool, so that the next
 * allocations need no tag page. */
static bool warm_tag_pool(void)
{
    static Vmem warm;
    if (vmem_init(&warm, "warm", TS_PTR(IDS_BASE), 4 * LIVE, 1, NULL, NULL, NULL, 0, 0) != 0)
        return false;
    bool ok = true;
    for (size_t i = 0; i < 2 * LIVE && ok; i++)
        ok = vmem_alloc_exact(&warm, IDS_BASE + 2 * i, 1, VM_NOSLEEP) == 0;
    for (size_t i = 0; i < 2 * LIVE; i++)
        vmem_xfree(&warm, TS_PTR(IDS_BASE + 2 * i), 1);
    vmem_destroy(&warm);
    return ok;
}

/* An arena whose allocated-segment hash wants a bigger table: it grew
 * while the page source refused every page. The next allocation would
 * install one; a misused call must not. */
static void misuse_takes_no_page_for_a_hash_table_the_arena_wants(void)
{
    static Vmem vm;
    VT_ASSERT(warm_tag_pool());
    VT_ASSERT(vmem_init(&vm, "wants-table", TS_PTR(IDS_BASE), 4 * LIVE, 1, NULL, NULL, NULL, 0,
                        0) == 0);
    vmem_posix_fail_pages_after(0);
    bool taken = true;
    for (size_t i = 0; i < LIVE && taken; i++)
        taken = vmem_alloc_exact(&vm, IDS_BASE + 2 * i, 1, VM_NOSLEEP) == 0;
    vmem_posix_stop_page_faults();
    VT_ASSERT(taken);
    size_t pages = vmem_posix_pages_outstanding();
    ts_capture_misuse();
    VT_ASSERT(vmem_add_range(&vm, IDS_BASE, 16, VM_NOSLEEP) == -VMEM_ERR_INVALID);
    VT_ASSERT(ts_misuse_once(VMEM_MISUSE_SPAN_OVERLAP, "vmem_add_range", "wants-table"));
    VT_ASSERT(vmem_posix_pages_outstanding() == pages);
    ts_capture_misuse();
    vmem_xfree(&vm, TS_PTR(IDS_BASE + 1), 1);
    VT_ASSERT(ts_misuse_once(VMEM_MISUSE_DOUBLE_FREE, "vmem_xfree", "wants-table"));
    ts_capture_misuse();
    VT_ASSERT(vmem_xalloc(&vm, 1, 3, 0, 0, NULL, NULL, VM_NOSLEEP) == NULL);
    VT_ASSERT(ts_misuse_once(VMEM_MISUSE_BAD_CONSTRAINT, "vmem_xalloc", "wants-table"));
    VT_ASSERT(vmem_posix_pages_outstanding() == pages);
    vtest_env_misuse_capture(false);
    /* The arena did want a table: the next allocation takes its page. */
    void *one = vmem_alloc(&vm, 1, VM_NOSLEEP);
    VT_ASSERT(one != NULL);
    VT_ASSERT(vmem_posix_pages_outstanding() > pages);
    vmem_free(&vm, one, 1);
    for (size_t i = 0; i < LIVE; i++)
        vmem_xfree(&vm, TS_PTR(IDS_BASE + 2 * i), 1);
    VT_CONSISTENT(&vm);
    vmem_destroy(&vm);
}

VTEST_SUITE(suite_host_misuse,
            VTEST_CASE(misuse_takes_no_page_for_a_hash_table_the_arena_wants));
