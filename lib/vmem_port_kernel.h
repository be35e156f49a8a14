/*
 * vmem_port_kernel.h - extras of the test kernel's libvmem port
 * (vmem_port_kernel.c), used by the self-test runner. The twin of
 * include/vmem_posix.h for the hosted port.
 *
 * The kernel has no scheduler: libvmem's users here must treat
 * VMEM_PORT_CAN_SLEEP as 0 (VM_SLEEP never waits).
 */
#ifndef KERNEL_VMEM_PORT_KERNEL_H
#define KERNEL_VMEM_PORT_KERNEL_H

#include <stddef.h>

#include "vmem.h"

/* Replaces the misuse handler and returns the one it replaces. With none
 * (the default) a misuse report is printed and the kernel panics: nothing
 * at boot misuses the API on purpose. */
typedef void KportMisuseHandler(const VmemMisuse *report);
KportMisuseHandler *kport_set_misuse_handler(KportMisuseHandler *handler);

/* Prints a misuse report on the console, in one line. */
void kport_print_misuse(const VmemMisuse *report);

/* Page-source fault injection: after `countdown` more successful calls,
 * every vmem_port_page_alloc() fails until kport_stop_page_faults(). */
void kport_fail_pages_after(size_t countdown);
void kport_stop_page_faults(void);

/* Pages currently handed out by the page source and not given back. */
size_t kport_pages_outstanding(void);

#endif /* KERNEL_VMEM_PORT_KERNEL_H */
