/*
 * kernel_stubs.c - the rest of the pretend kernel for the freestanding build
 * of the example: a console that keeps what is written in a ring buffer (a
 * real one writes to a UART), a halt that parks the CPU, and the entry
 * point the linker starts at. The hosted build (host_main.c) provides the
 * same functions for a user-space run instead.
 */
#include "kernel.h"

/* The last 4 KiB written, for a debugger or a crash dump to read. */
#define CONSOLE_BYTES 4096
static char kernel_console_log[CONSOLE_BYTES];
static size_t kernel_console_at;

void kernel_console_write(const char *text)
{
    while (*text != '\0') {
        kernel_console_log[kernel_console_at % CONSOLE_BYTES] = *text++;
        kernel_console_at++;
    }
}

void kernel_halt(void)
{
    /* With interrupts off this would be `cli; hlt` (x86), `wfi` (arm,
     * riscv) in a loop. */
    for (;;)
        __asm__ volatile("" ::: "memory");
}

/* Where the boot code jumps once it has a stack; never returns. */
void kernel_entry(void);
void kernel_entry(void)
{
    kernel_main();
    kernel_halt();
}
