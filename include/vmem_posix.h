/*
 * vmem_posix.h - extras of the hosted POSIX port (src/port/posix.c), for
 * user-space programs and the host test suite. Kernel ports do not have
 * these.
 *
 * Signal handlers: like malloc, the POSIX port is not async-signal-safe. A
 * handler must not call libvmem: it may have interrupted its own thread
 * inside an arena lock or a CPU section, which it would then wait for
 * forever.
 *
 * Builds without NDEBUG check the CPU-section contract (vmem_port.h): a
 * thread that takes a lock, calls the page source or the misuse hook, or
 * enters a section again from inside a CPU section panics.
 */
#ifndef VMEM_POSIX_H
#define VMEM_POSIX_H

#include <stddef.h>

#include "vmem.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Replaces the misuse handler. The default prints the report to stderr and
 * aborts; NULL restores it. A handler that returns makes the call fail
 * without changing the arena. */
typedef void VmemPosixMisuseHandler(const VmemMisuse *report);
void vmem_posix_set_misuse_handler(VmemPosixMisuseHandler *handler);

/* Fault injection for the page source: after `countdown` further successful
 * calls (0: none), every vmem_port_page_alloc() fails until
 * vmem_posix_stop_page_faults(). */
void vmem_posix_fail_pages_after(size_t countdown);
void vmem_posix_stop_page_faults(void);

/* Takes pages from `arena` (with vmem_xalloc, passing the vmflag the
 * library gives, and VM_ENDALLOC: from the top, as a kernel's page source
 * should, so that metadata stays apart from the frames the kernel takes
 * from the bottom) instead of mmap, as a kernel whose page source is its
 * frame arena does; the arena must span real, writable memory. NULL goes
 * back to mmap. Re-entering the page source from inside it panics. */
void vmem_posix_use_arena_pages(Vmem *arena);

/* Pages currently handed out by the page source and not yet given back. */
size_t vmem_posix_pages_outstanding(void);

#ifdef __cplusplus
}
#endif

#endif /* VMEM_POSIX_H */
