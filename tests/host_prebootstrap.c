/*
 * host_prebootstrap.c - what happens before vmem_bootstrap(): every call is
 * reported as misuse and fails, and nothing is touched. The host runner
 * runs this suite first, before it bootstraps the library, which is why it
 * is host-only (the test kernel bootstraps before anything else).
 */
#include "test_support.h"

static void calls_before_bootstrap_are_reported(void)
{
    static Vmem vm;
    ts_capture_misuse();
    VT_ASSERT(vmem_init(&vm, "early", TS_PTR(0x1000), 0x10000, 0x1000, NULL, NULL, NULL, 0,
                        VM_NOSLEEP) == -VMEM_ERR_INVALID);
    VT_ASSERT(ts_misuse_once(VMEM_MISUSE_NOT_BOOTSTRAPPED, "vmem_init", NULL));
    ts_capture_misuse();
    VT_ASSERT(vmem_alloc(&vm, 0x1000, VM_NOSLEEP) == NULL);
    VT_ASSERT(ts_misuse_once(VMEM_MISUSE_NOT_BOOTSTRAPPED, "vmem_alloc", NULL));
    ts_capture_misuse();
    VT_ASSERT(vmem_create("early", TS_PTR(0x1000), 0x10000, 0x1000, NULL, NULL, NULL, 0,
                          VM_NOSLEEP) == NULL);
    VT_ASSERT(ts_misuse_once(VMEM_MISUSE_NOT_BOOTSTRAPPED, "vmem_create", NULL));
}

VTEST_SUITE(suite_prebootstrap, VTEST_CASE(calls_before_bootstrap_are_reported));
