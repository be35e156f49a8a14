/*
 * ktests.h - kernel-only self-tests: libvmem managing real memory.
 *
 * They report like the shared suites ("ok   kernel.<name>" or
 * "FAIL kernel.<name>", assertion lines indented), so one log reads the
 * same throughout and tools/run-qemu.sh can count both kinds alike.
 */
#ifndef KERNEL_KTESTS_H
#define KERNEL_KTESTS_H

#include <stdbool.h>
#include <stddef.h>

struct ktest {
    const char *name;
    void (*run)(void);
};
#define KTEST(fn) {#fn, fn}

/* Records a failure of the running kernel test; KT_ASSERT returns from it. */
void kt_fail(const char *file, int line, const char *expr);
#define KT_ASSERT(cond)                                                               \
    do {                                                                              \
        if (!(cond)) {                                                                \
            kt_fail(__FILE__, __LINE__, #cond);                                       \
            return;                                                                   \
        }                                                                             \
    } while (0)

/* Runs one test and prints its result line; true when it passed. A test
 * also fails if a misuse report arrived that it did not capture. */
bool ktest_run(const struct ktest *test);

/* Runs a list; adds to *passed and *failed. */
void ktest_run_list(const struct ktest *tests, size_t count, size_t *passed, size_t *failed);

/* The tests that need fresh arenas: run before the shared suites. Records
 * the frame arena's baseline for ktests_run_after(). */
void ktests_run_before(size_t *passed, size_t *failed);

/* The tests that check what the whole run left behind: run last. */
void ktests_run_after(size_t *passed, size_t *failed);

#endif /* KERNEL_KTESTS_H */
