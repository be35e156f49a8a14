/*
 * trap.c - the TSSs (one per CPU), the IDT, and the report of a fatal
 * exception.
 *
 * The test kernel has no use for recoverable exceptions: any exception
 * means the kernel or the allocator under test is broken. The handler's
 * only job is to say so clearly on the serial line and to end QEMU with
 * the failure code, because a triple fault under -no-reboot would end
 * QEMU with status 0, the same as a clean shutdown.
 *
 * Invariants: the IDT is written by the boot CPU before any other CPU
 * starts, and never changes after; each CPU's TSS is written once, by that
 * CPU, before it runs anything that can fault. One CPU reports: the first
 * to fault or panic (trap_claim_report) prints and ends the run, and any
 * other that faults or panics meanwhile stops quietly. A fault inside the
 * fault report (the console broken, say) is caught and ends the run at
 * once instead of recursing.
 */
#include "trap.h"

#include <stdbool.h>
#include <stddef.h>

#include "cpu.h"
#include "kprintf.h"
#include "percpu.h"
#include "qemu_exit.h"
#include "serial.h"

#define SEL_KERNEL_CODE 0x08
#define SEL_TSS 0x18 /* the boot CPU's; CPU i's is SEL_TSS + 16 * i */
#define GATE_INTERRUPT 0x8e /* present, ring 0, 64-bit interrupt gate */
#define TSS_AVAILABLE 0x89  /* present, 64-bit TSS, not busy */
#define IST_FAULT_STACK 1
#define EXCEPTION_VECTORS 32
#define IDT_VECTORS 256

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
extern const uint64_t exception_stubs[EXCEPTION_VECTORS];
extern char __text_start[], __text_end[]; /* boot/kernel.ld */

#define STACK_SCAN_WORDS 1024
#define STACK_SCAN_SHOWN 24

static struct tss64 tss[CPU_MAX];
static struct idt_gate idt[IDT_VECTORS] __attribute__((aligned(16)));

/* CPU c's TSS, whose IST1 is c's fault stack, into c's GDT slot, and
 * loaded: called on CPU c. */
static void install_tss(const struct percpu *c)
{
    struct tss64 *t = &tss[c->id];
    t->ist[IST_FAULT_STACK - 1] = (uint64_t)(uintptr_t)c->fault_stack_top;
    t->iomap_base = sizeof(*t); /* no I/O permission bitmap */

    uint64_t base = (uint64_t)(uintptr_t)t;
    uint64_t limit = sizeof(*t) - 1;
    unsigned selector = SEL_TSS + 16 * c->id;
    /* A 16-byte system descriptor: the usual 8 bytes, then base 63..32. */
    gdt[selector / 8] = (limit & 0xffff) | ((base & 0xffffff) << 16) |
                        ((uint64_t)TSS_AVAILABLE << 40) | (((limit >> 16) & 0xf) << 48) |
                        (((base >> 24) & 0xff) << 56);
    gdt[selector / 8 + 1] = base >> 32;
    __asm__ volatile("ltr %w0" : : "r"((uint16_t)selector) : "memory");
}

static void set_gate(unsigned vector, uint64_t target, unsigned ist)
{
    idt[vector].offset_low = (uint16_t)target;
    idt[vector].selector = SEL_KERNEL_CODE;
    idt[vector].ist = (uint8_t)ist;
    idt[vector].type = GATE_INTERRUPT;
    idt[vector].offset_mid = (uint16_t)(target >> 16);
    idt[vector].offset_high = (uint32_t)(target >> 32);
    idt[vector].reserved = 0;
}

static void load_idt(void)
{
    struct table_pointer pointer = {sizeof(idt) - 1, (uint64_t)(uintptr_t)idt};
    __asm__ volatile("lidt %0" : : "m"(pointer) : "memory");
}

static bool uses_fault_stack(unsigned vector)
{
    return vector == VEC_NMI || vector == VEC_DOUBLE_FAULT || vector == VEC_PAGE_FAULT ||
           vector == VEC_MACHINE_CHECK;
}

void trap_init(void)
{
    install_tss(this_cpu());
    for (unsigned v = 0; v < EXCEPTION_VECTORS; v++)
        set_gate(v, exception_stubs[v], uses_fault_stack(v) ? IST_FAULT_STACK : 0);
    /* Vectors past 31 are not present until trap_set_interrupt() fills
     * them: an unexpected interrupt or an int $n then raises #NP, which is
     * reported like any other fault. */
    load_idt();
}

void trap_init_cpu(void)
{
    install_tss(this_cpu());
    load_idt();
}

void trap_set_interrupt(unsigned vector, void (*stub)(void))
{
    if (vector < EXCEPTION_VECTORS || vector >= IDT_VECTORS)
        kpanic("trap_set_interrupt: vector %u is not an interrupt vector", vector);
    set_gate(vector, (uint64_t)(uintptr_t)stub, 0);
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
    const struct percpu *c = this_cpu();
    if (within(cr2, c->stack_guard, c->stack_bottom))
        return "kernel stack overflow (hit the guard page below the stack)";
    if (within(cr2, c->fault_stack_guard, c->fault_stack_guard + 4096))
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
    const struct percpu *c = this_cpu();
    if (!within(rsp, c->stack_bottom, c->stack_top))
        return;
    const uint64_t *sp = (const uint64_t *)(uintptr_t)rsp;
    int shown = 0;
    kprintf("  code addresses on the stack:");
    for (size_t i = 0; i < STACK_SCAN_WORDS && shown < STACK_SCAN_SHOWN &&
                       within((uint64_t)(uintptr_t)&sp[i], c->stack_bottom, c->stack_top);
         i++) {
        if (within(sp[i], __text_start, __text_end)) {
            kprintf(" %lx", (unsigned long)sp[i]);
            shown++;
        }
    }
    kprintf("\n");
}

#define NO_REPORTER CPU_MAX
static unsigned reporter = NO_REPORTER;

bool trap_claim_report(void)
{
    unsigned me = cpu_id(), none = NO_REPORTER;
    if (__atomic_compare_exchange_n(&reporter, &none, me, false, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE))
        return true;
    if (none == me)
        return false;
    cpu_halt_forever(); /* another CPU is reporting, and ends the run */
}

void trap_dispatch(struct trap_frame *f)
{
    if (!trap_claim_report()) {
        serial_puts("\nKERNEL FAULT: another exception while reporting one\n");
        qemu_exit(false);
    }
    uint64_t console = serial_lock();
    (void)console; /* held until the run ends */
    unsigned vector = (unsigned)f->vector;
    uint64_t cr2 = cpu_read_cr2();
    /* The first line alone says what happened (the runner quotes it). */
    kprintf("\nKERNEL FAULT: %s (vector %u) on cpu %u, error code %#lx, at rip %p",
            vector < EXCEPTION_VECTORS ? exception_names[vector] : "unknown", vector, cpu_id(),
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
