/*
 * serial.c - polled driver for the 16550 UART at COM1 (I/O port 0x3f8).
 *
 * The kernel runs with interrupts off and has no scheduler, so output is
 * polled: each byte waits for the transmit holding register to empty. That
 * keeps every byte in order even when a fault handler prints in the middle
 * of another line. The only state is the "initialised" flag; the UART's
 * registers are the rest.
 *
 * Several CPUs print: a console lock (serial_lock) keeps each message in
 * one piece. It is an interrupt-disabling spinlock that its holder may
 * take again (a fault report in the middle of a line), and a CPU that
 * waits far longer than any message takes prints anyway, so that a CPU
 * stopped while holding it cannot silence the others' reports.
 *
 * Lines end in a bare '\n': the log is read by scripts (tools/run-qemu.sh
 * greps it), not by a terminal that needs "\r\n".
 */
#include "serial.h"

#include <stdbool.h>

#include "cpu.h"

#define COM1 0x3f8
/* Register offsets from the base port. With DLAB set in LCR, offsets 0 and
 * 1 are the divisor latch instead of data and interrupt enable. */
#define UART_DATA 0
#define UART_IER 1
#define UART_DLL 0
#define UART_DLM 1
#define UART_FCR 2
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5

#define LCR_8N1 0x03
#define LCR_DLAB 0x80
#define FCR_ENABLE_CLEAR 0x07 /* enable FIFOs, clear both */
#define MCR_DTR_RTS 0x03
#define LSR_THR_EMPTY 0x20

/* Polling is bounded so that a missing UART cannot hang the kernel: after
 * this many reads the byte is dropped. QEMU's UART is always ready. */
#define UART_SPIN_LIMIT 100000

static bool serial_ready;

#define NO_OWNER (~0u)
/* Pauses before a waiter decides the holder is gone: many times what the
 * longest message takes. */
#define CONSOLE_SPIN_LIMIT (1u << 26)
static unsigned console_owner = NO_OWNER;
static unsigned console_depth; /* the owner's nesting */

uint64_t serial_lock(void)
{
    uint64_t flags = cpu_irq_save();
    unsigned me = cpu_id();
    if (__atomic_load_n(&console_owner, __ATOMIC_ACQUIRE) == me) {
        console_depth++;
        return flags;
    }
    for (uint32_t spins = 0;; spins++) {
        unsigned expected = NO_OWNER;
        if (__atomic_compare_exchange_n(&console_owner, &expected, me, false,
                                        __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
            break;
        if (spins == CONSOLE_SPIN_LIMIT) {
            __atomic_store_n(&console_owner, me, __ATOMIC_SEQ_CST);
            break;
        }
        cpu_pause();
    }
    console_depth = 1;
    return flags;
}

void serial_unlock(uint64_t flags)
{
    if (--console_depth == 0)
        __atomic_store_n(&console_owner, NO_OWNER, __ATOMIC_RELEASE);
    cpu_irq_restore(flags);
}

void serial_init(void)
{
    cpu_outb(COM1 + UART_IER, 0x00);
    cpu_outb(COM1 + UART_LCR, LCR_DLAB);
    cpu_outb(COM1 + UART_DLL, 0x01); /* divisor 1: 115200 baud */
    cpu_outb(COM1 + UART_DLM, 0x00);
    cpu_outb(COM1 + UART_LCR, LCR_8N1);
    cpu_outb(COM1 + UART_FCR, FCR_ENABLE_CLEAR);
    cpu_outb(COM1 + UART_MCR, MCR_DTR_RTS);
    serial_ready = true;
}

void serial_putc(char c)
{
    if (!serial_ready)
        serial_init();
    for (int spins = 0; spins < UART_SPIN_LIMIT; spins++) {
        if (cpu_inb(COM1 + UART_LSR) & LSR_THR_EMPTY)
            break;
        cpu_pause();
    }
    cpu_outb(COM1 + UART_DATA, (uint8_t)c);
}

void serial_write(const char *text, size_t len)
{
    uint64_t flags = serial_lock();
    for (size_t i = 0; i < len; i++)
        serial_putc(text[i]);
    serial_unlock(flags);
}

void serial_puts(const char *text)
{
    uint64_t flags = serial_lock();
    while (*text != '\0')
        serial_putc(*text++);
    serial_unlock(flags);
}
