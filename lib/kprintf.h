/*
 * kprintf.h - formatted output on the serial console, and panic.
 */
#ifndef KERNEL_KPRINTF_H
#define KERNEL_KPRINTF_H

#include <stdarg.h>
#include <stddef.h>

/*
 * A printf for the kernel, writing to COM1. Conversions: %s %c %d %i %u
 * %x %X %p %%, with the length modifiers l, ll and z (so %zu %lu %lx
 * %llx), flags '-' (left-justify), '0' (zero padding) and '#' (0x before
 * a non-zero %x), and a field width, given as digits or '*'. %p prints 0x and 16 hex digits. An
 * unknown conversion is printed as-is, so a typo shows in the log instead
 * of consuming an argument.
 */
void kprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void kvprintf(const char *fmt, va_list args);

/* Formats into buf (always NUL-terminated when size > 0); returns the
 * number of characters the full output would have. */
size_t ksnprintf(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Prints "KERNEL PANIC: <message>" and ends the QEMU run with the failure
 * code. tools/run-qemu.sh looks for that prefix to explain the failure.
 */
__attribute__((noreturn)) void kpanic(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

#endif /* KERNEL_KPRINTF_H */
