/*
 * ktest_env.h - the kernel side of the shared test harness (tests/vtest.h).
 */
#ifndef KERNEL_KTEST_ENV_H
#define KERNEL_KTEST_ENV_H

#include <stddef.h>
#include <stdint.h>

/*
 * Sizes the tests to the machine (see vtest_env_scale) from the bytes of
 * RAM the frame arena has, and installs the misuse handler the tests run
 * under: captured reports are recorded; any other report is printed and
 * fails the running test (and is counted, see below).
 */
void ktest_env_init(uint64_t phys_bytes);

/* Misuse reports that arrived while nothing was capturing them. */
size_t ktest_env_unexpected_misuse(void);

#endif /* KERNEL_KTEST_ENV_H */
