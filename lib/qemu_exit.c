/*
 * qemu_exit.c - the only way the test kernel ends: a write to QEMU's
 * isa-debug-exit port. Never returns; halts if the write had no effect.
 */
#include "qemu_exit.h"

#include "cpu.h"

void qemu_exit(bool success)
{
    cpu_outl(QEMU_EXIT_PORT, success ? QEMU_EXIT_VALUE_SUCCESS : QEMU_EXIT_VALUE_FAILURE);
    cpu_halt_forever();
}
