/*
 * serial.h - polled output on the first 16550 UART (COM1).
 */
#ifndef KERNEL_SERIAL_H
#define KERNEL_SERIAL_H

#include <stddef.h>

/* Programs COM1 for 115200 baud, 8 data bits, no parity, one stop bit,
 * FIFOs on, interrupts off. Safe to call again (the fault path does, in
 * case the fault came before the first call). */
void serial_init(void);

void serial_putc(char c);
void serial_write(const char *text, size_t len);
void serial_puts(const char *text);

#endif /* KERNEL_SERIAL_H */
