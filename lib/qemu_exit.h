/*
 * qemu_exit.h - ending the QEMU run with a verdict.
 *
 * QEMU's isa-debug-exit device (iobase 0xf4) ends QEMU when a value v is
 * written to it; QEMU's exit status is then (v << 1) | 1. The two values
 * below give statuses that nothing else produces: QEMU exits 0 on a
 * triple fault under -no-reboot or a normal shutdown, 1 on its own errors,
 * and timeout(1) exits 124 or 137. tools/run-qemu.sh knows these numbers.
 */
#ifndef KERNEL_QEMU_EXIT_H
#define KERNEL_QEMU_EXIT_H

#include <stdbool.h>

#define QEMU_EXIT_PORT 0xf4
#define QEMU_EXIT_VALUE_SUCCESS 0x10 /* QEMU exits with status 33 */
#define QEMU_EXIT_VALUE_FAILURE 0x11 /* QEMU exits with status 35 */

/* Ends the run. If the device is missing (QEMU started without it), halts
 * forever, which the runner reports as a hang rather than as success. */
__attribute__((noreturn)) void qemu_exit(bool success);

#endif /* KERNEL_QEMU_EXIT_H */
