/*
 * host_main.c - the hosted test runner: the vtest_env_* hooks for the POSIX
 * port, then every shared suite and the host-only ones. Usage: vmem_tests [name-filter]. Exits non-zero
 * when any test fails; the last line is "N passed, N failed".
 */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>

#include "vmem.h"
#include "vmem_posix.h"
#include "vtest.h"

/* Suites that need the host (threads, mmap): tests/host_*.c. */
extern const struct vtest_suite suite_threads;
extern const struct vtest_suite suite_pages;
extern const struct vtest_suite suite_prebootstrap;
extern const struct vtest_suite suite_host_misuse;
extern const struct vtest_suite suite_fork;
static const struct vtest_suite *const before_bootstrap[] = {&suite_prebootstrap};
static const struct vtest_suite *const host_suites[] = {&suite_threads, &suite_pages,
                                                        &suite_host_misuse, &suite_fork};
static const size_t host_suite_count = sizeof(host_suites) / sizeof(host_suites[0]);

static size_t misuse_count;
static VmemMisuse misuse_last;

static void record_misuse(const VmemMisuse *report)
{
    misuse_count++;
    misuse_last = *report;
}

void vtest_env_puts(const char *text) { fputs(text, stdout); }

void vtest_env_misuse_capture(bool on)
{
    misuse_count = 0;
    vmem_posix_set_misuse_handler(on ? record_misuse : NULL);
}

size_t vtest_env_misuse_count(void) { return misuse_count; }

const VmemMisuse *vtest_env_misuse_last(void) { return &misuse_last; }

size_t vtest_env_scale(void)
{
    const char *env = getenv("VTEST_SCALE");
    return env != NULL ? (size_t)strtoull(env, NULL, 0) : 1000000;
}

size_t vtest_env_random_ops(void)
{
    const char *env = getenv("VTEST_RANDOM_OPS");
    return env != NULL ? (size_t)strtoull(env, NULL, 0) : 250000;
}

bool vtest_env_page_faults(size_t countdown)
{
    if (countdown == 0)
        vmem_posix_stop_page_faults();
    else
        vmem_posix_fail_pages_after(countdown - 1);
    return true;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *filter = argc > 1 ? argv[1] : NULL;
    size_t passed = 0;
    size_t failed = vtest_run_suites(before_bootstrap, 1, filter, &passed);
    vmem_bootstrap();
    /* The shared suites run on one CPU, as in the test kernel: a reap, or a
     * request that drains before it fails, reaches the calling CPU's
     * quantum-cache magazines only, and a single-threaded test moved
     * between CPUs would leave objects behind on the first. */
    cpu_set_t all, one;
    bool pinned = sched_getaffinity(0, sizeof(all), &all) == 0 && sched_getcpu() >= 0;
    if (pinned) {
        CPU_ZERO(&one);
        CPU_SET(sched_getcpu(), &one);
        pinned = sched_setaffinity(0, sizeof(one), &one) == 0;
    }
    failed += vtest_run_all(filter, &passed);
    if (pinned)
        sched_setaffinity(0, sizeof(all), &all);
    failed += vtest_run_suites(host_suites, host_suite_count, filter, &passed);
    printf("%zu passed, %zu failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
