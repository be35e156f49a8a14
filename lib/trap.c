/*
 * trap.c - the TSS, the IDT, and the report of a fatal exception.
 *
 * The test kernel has no use for recoverable exceptions: any exception
 * means the kernel or the allocator under test is broken. The handler's
 * only job is to say so clearly on the serial line and to end QEMU with
 * the failure code, because a triple fault under -no-reboot would end
 * QEMU with status 0, the same as a clean shutdown.
 *
 * Invariants: the TSS and IDT are written once, before the first
 * exception can matter, and never change. A fault inside the fault report
 * (the console broken, say) is caught by a nesting counter and ends the
 * run at once instead of recursing.
 */
#include "trap.h"

#include <stdbool.h>
#include <stddef.h>

#include "cpu.h"
#include "kprintf.h"
#include "qemu_exit.h"
#include "serial.h"

#define SEL_KERNEL_CODE 0x08
#define SEL_TSS 0x18
#define GATE_INTERRUPT 0x8e /* present, ring 0, 64-bit interrupt gate */
#define TSS_AVAILABLE 0x89  /* present, 64-bit TSS, not busy */
#define IST_FAULT_STACK 1
#define EXCEPTION_VECTORS 32

#define VEC_NMI 2
#define VEC_DOUBLE_FAULT 8
#define VEC_PAGE_FAULT 14
#define VEC_MACHINE_CHECK 18

struct __attribute__((packed)) tss64 {
    uint32_t reserved0;
    uint64_t rsp[3];
    uint64_t reserved1;
    uint64_t ist[7];
    uint64_t reserved2;
    uint16_t reserved3;
    uint16_t iomap_base;
};
_Static_assert(sizeof(struct tss64) == 104, "the 64-bit TSS is 104 bytes");

struct __attribute__((packed)) idt_gate {
    uint16_t offset_low;
    uint16_t selector;
    uint8_t ist;
    uint8_t type;
    uint16_t offset_mid;
    uint32_t offset_high;
    uint32_t reserved;
};
_Static_assert(sizeof(struct idt_gate) == 16, "a long-mode IDT gate is 16 bytes");

struct __attribute__((packed)) table_pointer {
    uint16_t limit;
    uint64_t base;
};

/* From boot/entry.S and boot/isr.S. */
extern uint64_t gdt[];
extern char fault_stack_top[];
extern char kernel_stack_guard[], kernel_stack_bottom[], boot_stack_top[];
extern char fault_stack_guard[];
extern const uint64_t exception_stubs[EXCEPTION_VECTORS];
extern char __text_start[], __text_end[]; /* boot/kernel.ld */

#define STACK_SCAN_WORDS 1024
#define STACK_SCAN_SHOWN 24

static struct tss64 tss;
static struct idt_gate idt[EXCEPTION_VECTORS] __attribute__((aligned(16)));

static void install_tss(void)
{
    tss.ist[IST_FAULT_STACK - 1] = (uint64_t)(uintptr_t)fault_stack_top;
    tss.iomap_base = sizeof(tss); /* no I/O permission bitmap */

    uint64_t base = (uint64_t)(uintptr_t)&tss;
    uint64_t limit = sizeof(tss) - 1;
    /* A 16-byte system descriptor: the usual 8 bytes, then base 63..32. */
    gdt[SEL_TSS / 8] = (limit & 0xffff) | ((base & 0xffffff) << 16) |
                       ((uint64_t)TSS_AVAILABLE << 40) | (((limit >> 16) & 0xf) << 48) |
                       (((base >> 24) & 0xff) << 56);
    gdt[SEL_TSS / 8 + 1] = base >> 32;
    __asm__ volatile("ltr %w0" : : "r"((uint16_t)SEL_TSS) : "memory");
}

static bool uses_fault_stack(unsigned vector)
{
    return vector == VEC_NMI || vector == VEC_DOUBLE_FAULT || vector == VEC_PAGE_FAULT ||
           vector == VEC_MACHINE_CHECK;
}

void trap_init(void)
{
    install_tss();
    for (unsigned v = 0; v < EXCEPTION_VECTORS; v++) {
        uint64_t target = exception_stubs[v];
        idt[v].offset_low = (uint16_t)target;
        idt[v].selector = SEL_KERNEL_CODE;
        idt[v].ist = uses_fault_stack(v) ? IST_FAULT_STACK : 0;
        idt[v].type = GATE_INTERRUPT;
        idt[v].offset_mid = (uint16_t)(target >> 16);
        idt[v].offset_high = (uint32_t)(target >> 32);
        idt[v].reserved = 0;
    }
    /* Vectors past 31 are outside the limit: an unexpected interrupt or an
     * int $n then raises #GP, which is reported like any other fault. */
    struct table_pointer pointer = {sizeof(idt) - 1, (uint64_t)(uintptr_t)idt};
    __asm__ volatile("lidt %0" : : "m"(pointer) : "memory");
}

static const char *const exception_names[EXCEPTION_VECTORS] = {
    "#DE divide error",       "#DB debug",
    "NMI",                    "#BP breakpoint",
    "#OF overflow",           "#BR bound range",
    "#UD invalid opcode",     "#NM device not available",
    "#DF double fault",       "coprocessor segment overrun",
    "#TS invalid TSS",        "#NP segment not present",
    "#SS stack fault",        "#GP general protection",
    "#PF page fault",         "reserved (15)",
    "#MF x87 error",          "#AC alignment check",
    "#MC machine check",      "#XM SIMD error",
    "#VE virtualization",     "#CP control protection",
    "reserved (22)",          "reserved (23)",
    "reserved (24)",          "reserved (25)",
    "reserved (26)",          "reserved (27)",
    "#HV hypervisor injection", "#VC VMM communication",
    "#SX security",           "reserved (31)",
};

static bool within(uint64_t addr, const char *lo, const char *hi)
{
    return addr >= (uint64_t)(uintptr_t)lo && addr < (uint64_t)(uintptr_t)hi;
}

/* Says what a page-fault address most likely means. */
static const char *page_fault_hint(uint64_t cr2)
{
    if (within(cr2, kernel_stack_guard, kernel_stack_bottom))
        return "kernel stack overflow (hit the guard page below the stack)";
    if (within(cr2, fault_stack_guard, fault_stack_guard + 4096))
        return "fault stack overflow";
    if (cr2 < 4096)
        return "NULL pointer dereference";
    return NULL;
}

void trap_print_code_addresses(uint64_t rsp)
{
    /* The library is built without frame pointers, so there is no chain
     * to follow; instead, list the words near the top of the stack that
     * point into the kernel's code: most are return addresses, which
     * addr2line on the kernel's .elf turns into a call chain. */
    if (!within(rsp, kernel_stack_bottom, boot_stack_top))
        return;
    const uint64_t *sp = (const uint64_t *)(uintptr_t)rsp;
    int shown = 0;
    kprintf("  code addresses on the stack:");
    for (size_t i = 0; i < STACK_SCAN_WORDS && shown < STACK_SCAN_SHOWN &&
                       within((uint64_t)(uintptr_t)&sp[i], kernel_stack_bottom, boot_stack_top);
         i++) {
        if (within(sp[i], __text_start, __text_end)) {
            kprintf(" %lx", (unsigned long)sp[i]);
            shown++;
        }
    }
    kprintf("\n");
}

static unsigned fault_depth;

void trap_dispatch(struct trap_frame *f)
{
    if (++fault_depth > 1) {
        serial_puts("\nKERNEL FAULT: another exception while reporting one\n");
        qemu_exit(false);
    }
    unsigned vector = (unsigned)f->vector;
    uint64_t cr2 = cpu_read_cr2();
    /* The first line alone says what happened (the runner quotes it). */
    kprintf("\nKERNEL FAULT: %s (vector %u), error code %#lx, at rip %p",
            vector < EXCEPTION_VECTORS ? exception_names[vector] : "unknown", vector,
            (unsigned long)f->error, (void *)(uintptr_t)f->rip);
    if (vector == VEC_PAGE_FAULT) {
        const char *hint = page_fault_hint(cr2);
        kprintf(", cr2 %p%s%s\n", (void *)(uintptr_t)cr2, hint ? ": " : "", hint ? hint : "");
        kprintf("  %s %s in %s mode\n",
                (f->error & 1) ? "protection violation on" : "page not present for",
                (f->error & 16) ? "instruction fetch" : (f->error & 2) ? "write" : "read",
                (f->error & 4) ? "user" : "kernel");
    } else {
        kprintf("\n  cr2 %p\n", (void *)(uintptr_t)cr2);
    }
    kprintf("  rax %p rbx %p rcx %p\n", (void *)f->rax, (void *)f->rbx, (void *)f->rcx);
    kprintf("  rdx %p rsi %p rdi %p\n", (void *)f->rdx, (void *)f->rsi, (void *)f->rdi);
    kprintf("  rbp %p rsp %p r8  %p\n", (void *)f->rbp, (void *)f->rsp, (void *)f->r8);
    kprintf("  r9  %p r10 %p r11 %p\n", (void *)f->r9, (void *)f->r10, (void *)f->r11);
    kprintf("  r12 %p r13 %p r14 %p\n", (void *)f->r12, (void *)f->r13, (void *)f->r14);
    kprintf("  r15 %p rflags %#lx cs %#lx ss %#lx cr3 %p\n", (void *)f->r15,
            (unsigned long)f->rflags, (unsigned long)f->cs, (unsigned long)f->ss,
            (void *)(uintptr_t)cpu_read_cr3());
    trap_print_code_addresses(f->rsp);
    qemu_exit(false);
}
