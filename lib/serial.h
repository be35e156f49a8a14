/*
 * serial.h - polled output on the first 16550 UART (COM1).
 */
#ifndef KERNEL_SERIAL_H
#define KERNEL_SERIAL_H

#include <stddef.h>
#include <stdint.h>

/* Programs COM1 for 115200 baud, 8 data bits, no parity, one stop bit,
 * FIFOs on, interrupts off. Safe to call again (the fault path does, in
 * case the fault came before the first call). */
void serial_init(void);

/* The console lock: what is printed between serial_lock() and
 * serial_unlock(flags) comes out in one piece. Disables interrupts;
 * the holder may take it again. serial_write, serial_puts and kprintf
 * take it themselves. */
uint64_t serial_lock(void);
void serial_unlock(uint64_t flags);

void serial_putc(char c);
void serial_write(const char *text, size_t len);
void serial_puts(const char *text);

#endif /* KERNEL_SERIAL_H */
