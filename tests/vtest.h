/*
 * vtest.h - the tiny test harness shared by every test layer.
 *
 * Test sources (tests/test_*.c) are freestanding: they use only the public
 * vmem API, this header and the compiler's <stddef.h>/<stdint.h>/<stdbool.h>,
 * so the very same files run in the hosted suite (tests/host_main.c) and in
 * the QEMU test kernel. What differs between the two is supplied by the
 * runner through the vtest_env_* functions below.
 *
 * A test is a function registered with VTEST_SUITE; it passes unless a
 * VT_ASSERT fails. One behaviour per test, named after it.
 */
#ifndef VTEST_H
#define VTEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmem.h"

struct vtest_case {
    const char *name;
    void (*run)(void);
};

struct vtest_suite {
    const char *name;
    const struct vtest_case *cases;
    size_t count;
};

/* Every suite, in the order they run (tests/vtest_suites.c). */
extern const struct vtest_suite *const vtest_suites[];
extern const size_t vtest_suite_count;

#define VTEST_SUITE(ident, ...)                                                     \
    static const struct vtest_case ident##_cases[] = {__VA_ARGS__};                \
    const struct vtest_suite ident = {#ident, ident##_cases,                        \
                                      sizeof(ident##_cases) / sizeof(ident##_cases[0])}
#define VTEST_CASE(fn) {#fn, fn}

/* Records a failure of the running test; VT_ASSERT returns from the test. */
void vtest_fail(const char *file, int line, const char *expr);
#define VT_ASSERT(cond)                                                              \
    do {                                                                             \
        if (!(cond)) {                                                               \
            vtest_fail(__FILE__, __LINE__, #cond);                                   \
            return;                                                                  \
        }                                                                            \
    } while (0)

/* Asserts vmem_check() finds nothing wrong with the arena. */
#define VT_CONSISTENT(vm) VT_ASSERT(vtest_consistent(vm))
bool vtest_consistent(Vmem *vm);

/* Runs the given suites; returns the number of failed tests and adds the
 * passed ones to *passed. `filter`, if not NULL, runs only tests whose
 * name contains it. */
size_t vtest_run_suites(const struct vtest_suite *const *suites, size_t count,
                        const char *filter, size_t *passed);
/* vtest_run_suites over every shared suite (vtest_suites); *passed_out
 * must be initialised by the caller, like vtest_run_suites'. */
size_t vtest_run_all(const char *filter, size_t *passed_out);

/* Deterministic PRNG for randomized tests (xoshiro-style, 64-bit). */
typedef struct {
    uint64_t s[4];
} VtestRng;
void vtest_rng_seed(VtestRng *rng, uint64_t seed);
uint64_t vtest_rng_next(VtestRng *rng);
/* Uniform in [0, bound), bound > 0. */
uint64_t vtest_rng_below(VtestRng *rng, uint64_t bound);

/* Output helpers built on vtest_env_puts. */
void vtest_puts(const char *text);
void vtest_put_u64(uint64_t value);
void vtest_put_hex(uint64_t value);

/* ---- What each runner provides --------------------------------------- */

/* Writes text to the test log. */
void vtest_env_puts(const char *text);

/* Starts capturing misuse reports instead of treating them as fatal, and
 * resets the count. Capturing stays on until vtest_env_misuse_capture(false). */
void vtest_env_misuse_capture(bool on);
/* Reports captured since capture was turned on. */
size_t vtest_env_misuse_count(void);
/* The last report captured (its strings are valid for the test's life). */
const VmemMisuse *vtest_env_misuse_last(void);

/* How many live segments the scale tests use: 10^6 on the host, less in a
 * small VM. */
size_t vtest_env_scale(void);

/* Number of operations the randomized model tests run per seed. */
size_t vtest_env_random_ops(void);

/* Fault injection of the port's page source: countdown - 1 more calls
 * succeed, then every call fails until vtest_env_page_faults(0), which turns
 * faults off. Returns false when the runner cannot inject faults. */
bool vtest_env_page_faults(size_t countdown);

#endif /* VTEST_H */
