/*
 * test_sleep.c - VM_SLEEP without threads. A request that can be satisfied
 * never waits, whatever the port. On a port built without a scheduler
 * (VMEM_PORT_CAN_SLEEP=0, like the test kernel's), a VM_SLEEP request that
 * would have to wait is reported as misuse and fails, leaving the arena as
 * it was. Waiting and waking with threads is in host_threads.c.
 */
#include "test_support.h"
#include "vmem_config.h"

static void sleep_request_that_fits_is_served_at_once(void)
{
    static Vmem vm;
    VT_ASSERT(vmem_init(&vm, "sleep-fits", TS_PTR(0x10000), 4 * 0x1000, 0x1000, NULL, NULL,
                        NULL, 0, VM_SLEEP) == 0);
    ts_capture_misuse();
    void *got = vmem_alloc(&vm, 4 * 0x1000, VM_SLEEP);
    VT_ASSERT(got == TS_PTR(0x10000));
    VT_ASSERT(vtest_env_misuse_count() == 0);
    vmem_free(&vm, got, 4 * 0x1000);
    vmem_destroy(&vm);
}

#if !VMEM_PORT_CAN_SLEEP
static void sleep_request_that_must_wait_is_reported_when_the_port_cannot_sleep(void)
{
    static Vmem vm;
    struct ts_snapshot before, after;
    VT_ASSERT(vmem_init(&vm, "sleep-cannot", TS_PTR(0x10000), 4 * 0x1000, 0x1000, NULL, NULL,
                        NULL, 0, VM_NOSLEEP) == 0);
    void *all = vmem_alloc(&vm, 4 * 0x1000, VM_NOSLEEP);
    VT_ASSERT(all != NULL);
    ts_snapshot_take(&vm, &before);
    ts_capture_misuse();
    VT_ASSERT(vmem_alloc(&vm, 0x1000, VM_SLEEP) == NULL);
    VT_ASSERT(ts_misuse_once(VMEM_MISUSE_CANNOT_SLEEP, "vmem_alloc", "sleep-cannot"));
    ts_snapshot_take(&vm, &after);
    VT_ASSERT(ts_snapshot_equal(&before, &after));
    vmem_free(&vm, all, 4 * 0x1000);
    vmem_destroy(&vm);
}
#endif

VTEST_SUITE(suite_sleep, VTEST_CASE(sleep_request_that_fits_is_served_at_once)
#if !VMEM_PORT_CAN_SLEEP
                             ,
            VTEST_CASE(sleep_request_that_must_wait_is_reported_when_the_port_cannot_sleep)
#endif
);
