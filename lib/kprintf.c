/*
 * kprintf.c - a small freestanding printf (see kprintf.h for what it
 * accepts) and kpanic.
 *
 * The formatter writes through a sink so that one implementation serves
 * both the serial console and ksnprintf(). It never allocates and uses a
 * fixed, small amount of stack, so it is safe in fault handlers and when
 * the allocator under test is broken.
 */
#include "kprintf.h"

#include <stdbool.h>
#include <stdint.h>

#include "qemu_exit.h"
#include "serial.h"
#include "trap.h"

struct sink {
    void (*put)(struct sink *sink, char c);
    char *buf;     /* ksnprintf only */
    size_t size;   /* capacity of buf */
    size_t count;  /* characters produced so far */
};

static void emit(struct sink *sink, char c)
{
    sink->put(sink, c);
    sink->count++;
}

static void emit_repeat(struct sink *sink, char c, int times)
{
    for (int i = 0; i < times; i++)
        emit(sink, c);
}

/* Prints an unsigned number in base 10 or 16 within a field, after an
 * optional sign or "0x" prefix (which zero padding goes after, as in C). */
static void emit_number(struct sink *sink, uint64_t value, unsigned base, bool upper,
                        const char *prefix, int width, bool left, bool zero)
{
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    char tmp[24];
    int len = 0;
    do {
        tmp[len++] = digits[value % base];
        value /= base;
    } while (value != 0);
    int prefix_len = 0;
    while (prefix[prefix_len] != '\0')
        prefix_len++;
    int total = len + prefix_len;
    int pad = width > total ? width - total : 0;

    if (!left && !zero)
        emit_repeat(sink, ' ', pad);
    for (int i = 0; i < prefix_len; i++)
        emit(sink, prefix[i]);
    if (!left && zero)
        emit_repeat(sink, '0', pad);
    while (len > 0)
        emit(sink, tmp[--len]);
    if (left)
        emit_repeat(sink, ' ', pad);
}

static void emit_string(struct sink *sink, const char *s, int width, bool left)
{
    if (s == NULL)
        s = "(null)";
    int len = 0;
    while (s[len] != '\0')
        len++;
    int pad = width > len ? width - len : 0;
    if (!left)
        emit_repeat(sink, ' ', pad);
    for (int i = 0; i < len; i++)
        emit(sink, s[i]);
    if (left)
        emit_repeat(sink, ' ', pad);
}

enum length { LEN_INT, LEN_LONG, LEN_LLONG, LEN_SIZE };

static uint64_t take_unsigned(va_list *args, enum length length)
{
    switch (length) {
    case LEN_LONG:
        return va_arg(*args, unsigned long);
    case LEN_LLONG:
        return va_arg(*args, unsigned long long);
    case LEN_SIZE:
        return va_arg(*args, size_t);
    default:
        return va_arg(*args, unsigned int);
    }
}

static int64_t take_signed(va_list *args, enum length length)
{
    switch (length) {
    case LEN_LONG:
        return va_arg(*args, long);
    case LEN_LLONG:
        return va_arg(*args, long long);
    case LEN_SIZE:
        /* %zd: the signed type of size_t's width. */
        return (int64_t)va_arg(*args, size_t);
    default:
        return va_arg(*args, int);
    }
}

static void format(struct sink *sink, const char *fmt, va_list args_in)
{
    va_list args;
    va_copy(args, args_in);
    for (const char *p = fmt; *p != '\0'; p++) {
        if (*p != '%') {
            emit(sink, *p);
            continue;
        }
        const char *start = p++;
        bool left = false, zero = false, alt = false;
        for (;; p++) {
            if (*p == '-')
                left = true;
            else if (*p == '#')
                alt = true;
            else if (*p == '0')
                zero = true;
            else
                break;
        }
        int width = 0;
        if (*p == '*') {
            width = va_arg(args, int);
            if (width < 0) {
                left = true;
                width = -width;
            }
            p++;
        } else {
            while (*p >= '0' && *p <= '9')
                width = width * 10 + (*p++ - '0');
        }
        enum length length = LEN_INT;
        if (*p == 'l') {
            length = LEN_LONG;
            if (*++p == 'l') {
                length = LEN_LLONG;
                p++;
            }
        } else if (*p == 'z') {
            length = LEN_SIZE;
            p++;
        }
        switch (*p) {
        case 'd':
        case 'i': {
            int64_t v = take_signed(&args, length);
            uint64_t magnitude = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
            emit_number(sink, magnitude, 10, false, v < 0 ? "-" : "", width, left, zero);
            break;
        }
        case 'u':
            emit_number(sink, take_unsigned(&args, length), 10, false, "", width, left, zero);
            break;
        case 'x':
        case 'X': {
            uint64_t v = take_unsigned(&args, length);
            /* Like C, "%#x" gives no prefix to 0. */
            const char *prefix = alt && v != 0 ? (*p == 'X' ? "0X" : "0x") : "";
            emit_number(sink, v, 16, *p == 'X', prefix, width, left, zero);
            break;
        }
        case 'p':
            emit_number(sink, (uintptr_t)va_arg(args, void *), 16, false, "0x", 18, false, true);
            break;
        case 's':
            emit_string(sink, va_arg(args, const char *), width, left);
            break;
        case 'c':
            emit(sink, (char)va_arg(args, int));
            break;
        case '%':
            emit(sink, '%');
            break;
        default:
            /* Unknown or truncated: print the directive as written. */
            for (const char *q = start; q <= p && *q != '\0'; q++)
                emit(sink, *q);
            if (*p == '\0')
                p--;
            break;
        }
    }
    va_end(args);
}

static void put_serial(struct sink *sink, char c)
{
    (void)sink;
    serial_putc(c);
}

void kvprintf(const char *fmt, va_list args)
{
    struct sink sink = {put_serial, NULL, 0, 0};
    uint64_t flags = serial_lock();
    format(&sink, fmt, args);
    serial_unlock(flags);
}

void kprintf(const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    kvprintf(fmt, args);
    va_end(args);
}

static void put_buffer(struct sink *sink, char c)
{
    if (sink->count + 1 < sink->size)
        sink->buf[sink->count] = c;
}

size_t ksnprintf(char *buf, size_t size, const char *fmt, ...)
{
    struct sink sink = {put_buffer, buf, size, 0};
    va_list args;
    va_start(args, fmt);
    format(&sink, fmt, args);
    va_end(args);
    if (size > 0)
        buf[sink.count < size ? sink.count : size - 1] = '\0';
    return sink.count;
}

void kpanic(const char *fmt, ...)
{
    va_list args;
    /* One CPU reports (trap_claim_report): a second panic, on this CPU
     * inside the report or on another, adds nothing. */
    if (!trap_claim_report())
        qemu_exit(false);
    uint64_t console = serial_lock();
    (void)console; /* held until the run ends */
    kprintf("\nKERNEL PANIC: ");
    va_start(args, fmt);
    kvprintf(fmt, args);
    va_end(args);
    kprintf("\n");
    uint64_t rsp;
    __asm__ volatile("movq %%rsp, %0" : "=r"(rsp));
    trap_print_code_addresses(rsp);
    qemu_exit(false);
}
