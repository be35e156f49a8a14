/*
 * smp.c - bringing up the other CPUs (application processors), the
 * per-CPU areas, the local APICs and their timers, and the clocks.
 *
 * Finding the CPUs: ACPI's RSDP (in the EBDA's first KiB or in
 * 0xE0000-0xFFFFF, checksummed) leads to the RSDT or XSDT, which lists
 * the MADT ("APIC"), whose processor entries give each enabled CPU's
 * LAPIC id. The CPU running this code is CPU 0; the others get 1, 2, ...
 * in MADT order.
 *
 * Starting one: its stack, fault stack and area are ready (smp_init), the
 * real-mode trampoline (boot/ap_start.S) sits at AP_TRAMPOLINE_PHYS with
 * this CPU's parameters written into it, and then INIT, a 10 ms wait and
 * up to two start-up IPIs naming that page. The trampoline enters long
 * mode on tables of its own (ap_pml4: the trampoline's page at its
 * physical address, and the kernel's higher-half tables, shared), and
 * ap_entry moves to the kernel's tables and calls ap_main(). CPUs start
 * one at a time, each waiting for the last to say it is online, so the
 * trampoline's one page and smp_starting_cpu serve them all.
 *
 * Invariants: page tables, the IDT and every area's setup fields are
 * written before the first other CPU starts (no TLB shootdowns are ever
 * needed); the LAPIC is mapped uncached; a CPU's own area is written by
 * that CPU only, apart from setup before it starts.
 *
 * Time: the PIT (channel 2, polled through port 0x61) is used once, to
 * calibrate the TSC (smp_now_ms) and the LAPIC timer's rate; nothing here
 * needs more than rough figures.
 */
#include "smp.h"

#include <stddef.h>

#include "cpu.h"
#include "kprintf.h"
#include "layout.h"
#include "memmap.h"
#include "paging.h"
#include "percpu.h"
#include "trap.h"

/* boot/isr.S */
extern void timer_interrupt_stub(void), spurious_interrupt_stub(void);

/* ---- Per-CPU areas and stacks ---------------------------------------------- */

#define AP_STACK_SIZE (64 * 1024)
#define AP_FAULT_STACK_SIZE (16 * 1024)
#define MSR_GS_BASE 0xC0000101

struct percpu percpu[CPU_MAX];

/* From boot/entry.S. */
extern char kernel_stack_guard[], kernel_stack_bottom[], boot_stack_top[];
extern char fault_stack_guard[], fault_stack_top[];
extern uint64_t boot_pml4[512];

/* Each stack of CPU i (i >= 1) is the page after its guard page. */
static char ap_stacks[CPU_MAX - 1][PAGE_SIZE + AP_STACK_SIZE] __attribute__((aligned(4096)));
static char ap_fault_stacks[CPU_MAX - 1][PAGE_SIZE + AP_FAULT_STACK_SIZE]
    __attribute__((aligned(4096)));

void percpu_load(struct percpu *c)
{
    cpu_wrmsr(MSR_GS_BASE, (uint64_t)(uintptr_t)c);
}

void percpu_init_boot_cpu(void)
{
    struct percpu *c = &percpu[0];
    c->self = c;
    c->id = 0;
    c->stack_guard = kernel_stack_guard;
    c->stack_bottom = kernel_stack_bottom;
    c->stack_top = boot_stack_top;
    c->fault_stack_guard = fault_stack_guard;
    c->fault_stack_top = fault_stack_top;
    c->online = true;
    percpu_load(c);
}

/* ---- Clocks ---------------------------------------------------------------- */

#define PIT_HZ 1193182u
#define PIT_COMMAND 0x43
#define PIT_CHANNEL2 0x42
#define PIT_GATE_PORT 0x61
#define PIT_GATE2 0x01
#define PIT_SPEAKER 0x02
#define PIT_OUT2 0x20
#define PIT_MAX_STEP_US 50000u /* a 16-bit count lasts 54.9 ms */
#define CALIBRATION_US 20000u

static uint64_t tsc_per_ms = 1;
static uint64_t lapic_ticks_per_ms = 1;

/* Waits us microseconds by the PIT's channel 2 (mode 0, one shot). */
static void pit_delay_us(uint32_t us)
{
    while (us > 0) {
        uint32_t step = us > PIT_MAX_STEP_US ? PIT_MAX_STEP_US : us;
        us -= step;
        uint32_t count = (uint32_t)((uint64_t)PIT_HZ * step / 1000000u);
        if (count == 0)
            count = 1;
        uint8_t port = cpu_inb(PIT_GATE_PORT) & (uint8_t)~(PIT_GATE2 | PIT_SPEAKER);
        cpu_outb(PIT_GATE_PORT, port);
        cpu_outb(PIT_COMMAND, 0xb0); /* channel 2, low then high byte, mode 0 */
        cpu_outb(PIT_CHANNEL2, (uint8_t)count);
        cpu_outb(PIT_CHANNEL2, (uint8_t)(count >> 8));
        cpu_outb(PIT_GATE_PORT, port | PIT_GATE2); /* counting starts */
        while (!(cpu_inb(PIT_GATE_PORT) & PIT_OUT2))
            cpu_pause();
    }
}

uint64_t smp_now_ms(void) { return cpu_rdtsc() / tsc_per_ms; }

/* ---- Local APIC ------------------------------------------------------------ */

#define LAPIC_DEFAULT_PHYS 0xfee00000u
#define LAPIC_ID 0x020
#define LAPIC_TPR 0x080
#define LAPIC_EOI 0x0b0
#define LAPIC_SVR 0x0f0
#define LAPIC_ESR 0x280
#define LAPIC_ICR_LOW 0x300
#define LAPIC_ICR_HIGH 0x310
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_TIMER_INITIAL 0x380
#define LAPIC_TIMER_CURRENT 0x390
#define LAPIC_TIMER_DIVIDE 0x3e0

#define SVR_ENABLE 0x100
#define ICR_INIT 0x00000500
#define ICR_STARTUP 0x00000600
#define ICR_LEVEL_ASSERT 0x00004000
#define ICR_PENDING 0x00001000
#define LVT_MASKED 0x00010000
#define LVT_PERIODIC 0x00020000
#define TIMER_DIVIDE_16 0x3
#define MSR_APIC_BASE 0x1b
#define APIC_BASE_ENABLE (1u << 11)
#define ICR_SPIN_LIMIT 10000000u

static volatile uint32_t *lapic;

static uint32_t lapic_read(unsigned reg) { return lapic[reg / 4]; }

static void lapic_write(unsigned reg, uint32_t value)
{
    lapic[reg / 4] = value;
    (void)lapic[LAPIC_ID / 4]; /* the write has reached the LAPIC */
}

/* Enables the calling CPU's LAPIC, accepting every interrupt. */
static void lapic_enable(void)
{
    uint64_t base = cpu_rdmsr(MSR_APIC_BASE);
    if (!(base & APIC_BASE_ENABLE))
        cpu_wrmsr(MSR_APIC_BASE, base | APIC_BASE_ENABLE);
    lapic_write(LAPIC_TPR, 0);
    lapic_write(LAPIC_SVR, SVR_ENABLE | SMP_SPURIOUS_VECTOR);
    lapic_write(LAPIC_LVT_TIMER, LVT_MASKED | SMP_TIMER_VECTOR);
    lapic_write(LAPIC_ESR, 0);
}

static void lapic_send_ipi(uint8_t apic_id, uint32_t command)
{
    lapic_write(LAPIC_ICR_HIGH, (uint32_t)apic_id << 24);
    lapic_write(LAPIC_ICR_LOW, command);
    for (uint32_t spins = 0; lapic_read(LAPIC_ICR_LOW) & ICR_PENDING; spins++) {
        if (spins == ICR_SPIN_LIMIT)
            kpanic("smp: the LAPIC never sent IPI %#x to APIC id %u", command, apic_id);
        cpu_pause();
    }
}

/* ---- The legacy PIC ------------------------------------------------------- */

/* The BIOS leaves the 8259 PICs delivering the PIT's IRQ 0 at vector 8,
 * which is #DF's: once interrupts are on, that would look like a double
 * fault. They are moved to vectors 0x20-0x2f, every line masked; a
 * spurious IRQ 7 or 15, which masking does not stop, lands on the
 * spurious stub. */
#define PIC1_COMMAND 0x20
#define PIC1_DATA 0x21
#define PIC2_COMMAND 0xa0
#define PIC2_DATA 0xa1
#define PIC_VECTOR_BASE 0x20

static void pic_disable(void)
{
    cpu_outb(PIC1_COMMAND, 0x11); /* ICW1: initialise, ICW4 follows */
    cpu_outb(PIC2_COMMAND, 0x11);
    cpu_outb(PIC1_DATA, PIC_VECTOR_BASE);     /* ICW2: vector base */
    cpu_outb(PIC2_DATA, PIC_VECTOR_BASE + 8);
    cpu_outb(PIC1_DATA, 0x04); /* ICW3: the second PIC on line 2 */
    cpu_outb(PIC2_DATA, 0x02);
    cpu_outb(PIC1_DATA, 0x01); /* ICW4: 8086 mode */
    cpu_outb(PIC2_DATA, 0x01);
    cpu_outb(PIC1_DATA, 0xff); /* every line masked */
    cpu_outb(PIC2_DATA, 0xff);
    trap_set_interrupt(PIC_VECTOR_BASE + 7, spurious_interrupt_stub);
    trap_set_interrupt(PIC_VECTOR_BASE + 15, spurious_interrupt_stub);
}

/* ---- ACPI: the MADT ------------------------------------------------------- */

struct __attribute__((packed)) acpi_rsdp {
    char signature[8];
    uint8_t checksum;
    char oem[6];
    uint8_t revision;
    uint32_t rsdt;
    uint32_t length; /* revision 2 and up from here */
    uint64_t xsdt;
    uint8_t extended_checksum;
    uint8_t reserved[3];
};

struct __attribute__((packed)) acpi_header {
    char signature[4];
    uint32_t length;
    uint8_t revision;
    uint8_t checksum;
    char oem[6];
    char oem_table[8];
    uint32_t oem_revision;
    uint32_t creator;
    uint32_t creator_revision;
};

struct __attribute__((packed)) acpi_madt {
    struct acpi_header header;
    uint32_t lapic_address;
    uint32_t flags;
    uint8_t entries[];
};

#define MADT_LOCAL_APIC 0
#define MADT_LAPIC_OVERRIDE 5
#define MADT_CPU_ENABLED 0x1
#define EBDA_SEGMENT_PTR 0x40e
#define BIOS_AREA 0xe0000
#define BIOS_AREA_END 0x100000

static bool bytes_sum_to_zero(const void *p, size_t n)
{
    const uint8_t *b = p;
    uint8_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum = (uint8_t)(sum + b[i]);
    return sum == 0;
}

static bool same(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i])
            return false;
    return true;
}

static const struct acpi_rsdp *rsdp_in(uint64_t base, uint64_t end)
{
    for (uint64_t at = base; at + sizeof(struct acpi_rsdp) <= end; at += 16) {
        const struct acpi_rsdp *r = phys_to_virt(at);
        if (same(r->signature, "RSD PTR ", 8) && bytes_sum_to_zero(r, 20))
            return r;
    }
    return NULL;
}

static const struct acpi_rsdp *find_rsdp(void)
{
    uint64_t ebda = (uint64_t)*(const uint16_t *)phys_to_virt(EBDA_SEGMENT_PTR) << 4;
    const struct acpi_rsdp *r = NULL;
    if (ebda >= 0x80000 && ebda < 0xa0000)
        r = rsdp_in(ebda, ebda + 1024);
    return r != NULL ? r : rsdp_in(BIOS_AREA, BIOS_AREA_END);
}

/* A table's length is checked before its checksum is summed over it: a
 * stray pointer must not send the sum across the address space. */
#define ACPI_TABLE_MAX (1u << 20)

static const struct acpi_header *table_at(uint64_t phys)
{
    if (phys == 0 || phys + ACPI_TABLE_MAX > (4ull << 30))
        return NULL;
    const struct acpi_header *h = phys_to_virt(phys);
    if (h->length < sizeof(*h) || h->length > ACPI_TABLE_MAX || !bytes_sum_to_zero(h, h->length))
        return NULL;
    return h;
}

static const struct acpi_madt *find_madt(void)
{
    const struct acpi_rsdp *rsdp = find_rsdp();
    if (rsdp == NULL)
        return NULL;
    bool extended = rsdp->revision >= 2 && rsdp->xsdt != 0;
    const struct acpi_header *root = table_at(extended ? rsdp->xsdt : rsdp->rsdt);
    if (root == NULL)
        return NULL;
    size_t entry_size = extended ? 8 : 4;
    const uint8_t *entries = (const uint8_t *)(root + 1);
    size_t count = (root->length - sizeof(*root)) / entry_size;
    for (size_t i = 0; i < count; i++) {
        uint64_t phys = extended ? *(const uint64_t *)(const void *)(entries + 8 * i)
                                 : *(const uint32_t *)(const void *)(entries + 4 * i);
        const struct acpi_header *h = table_at(phys);
        if (h != NULL && same(h->signature, "APIC", 4))
            return (const struct acpi_madt *)(const void *)h;
    }
    return NULL;
}

/* ---- Bring-up --------------------------------------------------------------- */

#define AP_START_TIMEOUT_MS 5000
#define INIT_WAIT_US 10000
#define SIPI_WAIT_US 200

static unsigned cpus_present = 1;
static unsigned cpus_online = 1;

/* Read by boot/ap_start.S's ap_entry. */
uint64_t smp_kernel_cr3;
struct percpu *smp_starting_cpu;

/* The trampoline's tables: its own page, identity-mapped, and the
 * kernel's higher half. */
static uint64_t ap_pml4[512] __attribute__((aligned(4096)));
static uint64_t ap_pdpt_low[512] __attribute__((aligned(4096)));
static uint64_t ap_pd_low[512] __attribute__((aligned(4096)));
static uint64_t ap_pt_low[512] __attribute__((aligned(4096)));
#define PTE_PRESENT_WRITE 0x3ull

/* boot/ap_start.S */
extern const char ap_trampoline_start[], ap_trampoline_end[];
extern const char ap_param_cr3[], ap_param_stack[], ap_param_entry[];
extern char ap_entry[];

static void (*volatile ap_work)(void);

__attribute__((noreturn)) void ap_main(struct percpu *c);

unsigned smp_cpus_present(void) { return cpus_present; }

unsigned smp_cpus_online(void) { return __atomic_load_n(&cpus_online, __ATOMIC_ACQUIRE); }

static void calibrate(void)
{
    lapic_write(LAPIC_TIMER_DIVIDE, TIMER_DIVIDE_16);
    lapic_write(LAPIC_LVT_TIMER, LVT_MASKED | SMP_TIMER_VECTOR);
    lapic_write(LAPIC_TIMER_INITIAL, 0xffffffffu);
    uint64_t tsc0 = cpu_rdtsc();
    pit_delay_us(CALIBRATION_US);
    uint64_t tsc1 = cpu_rdtsc();
    uint32_t left = lapic_read(LAPIC_TIMER_CURRENT);
    lapic_write(LAPIC_TIMER_INITIAL, 0);
    uint64_t ms = CALIBRATION_US / 1000;
    tsc_per_ms = (tsc1 - tsc0) / ms;
    lapic_ticks_per_ms = (0xffffffffull - left) / ms;
    if (tsc_per_ms == 0 || lapic_ticks_per_ms == 0)
        kpanic("smp: calibration failed (TSC %lu, LAPIC %lu per ms)", (unsigned long)tsc_per_ms,
               (unsigned long)lapic_ticks_per_ms);
}

static void copy_trampoline(void)
{
    size_t size = (size_t)(ap_trampoline_end - ap_trampoline_start);
    if (size > PAGE_SIZE)
        kpanic("smp: the AP trampoline is %zu bytes, more than a page", size);
    __builtin_memcpy(phys_to_virt(AP_TRAMPOLINE_PHYS), ap_trampoline_start, size);

    ap_pt_low[(AP_TRAMPOLINE_PHYS / PAGE_SIZE) % 512] = AP_TRAMPOLINE_PHYS | PTE_PRESENT_WRITE;
    ap_pd_low[0] = kernel_virt_to_phys(ap_pt_low) | PTE_PRESENT_WRITE;
    ap_pdpt_low[0] = kernel_virt_to_phys(ap_pd_low) | PTE_PRESENT_WRITE;
    ap_pml4[0] = kernel_virt_to_phys(ap_pdpt_low) | PTE_PRESENT_WRITE;
    ap_pml4[KERNEL_PML4_DIRECT] = boot_pml4[KERNEL_PML4_DIRECT];
    ap_pml4[KERNEL_PML4_KERNEL] = boot_pml4[KERNEL_PML4_KERNEL];
    smp_kernel_cr3 = cpu_read_cr3();
}

/* Writes one of the trampoline's parameters in its copy. */
static void set_param(const char *param, uint64_t value)
{
    char *copy = phys_to_virt(AP_TRAMPOLINE_PHYS);
    *(volatile uint64_t *)(void *)(copy + (param - ap_trampoline_start)) = value;
}

void smp_init(void)
{
    const struct acpi_madt *madt = find_madt();
    uint64_t lapic_phys = madt != NULL ? madt->lapic_address : LAPIC_DEFAULT_PHYS;
    uint8_t apic_ids[CPU_MAX];
    unsigned listed = 0, ignored = 0;
    if (madt != NULL) {
        const uint8_t *at = madt->entries;
        const uint8_t *end = (const uint8_t *)madt + madt->header.length;
        while (at + 2 <= end && at[1] >= 2 && at + at[1] <= end) {
            if (at[0] == MADT_LOCAL_APIC && at[1] >= 8) {
                uint32_t flags = *(const uint32_t *)(const void *)(at + 4);
                if (flags & MADT_CPU_ENABLED) {
                    if (listed < CPU_MAX)
                        apic_ids[listed++] = at[3];
                    else
                        ignored++;
                }
            } else if (at[0] == MADT_LAPIC_OVERRIDE && at[1] >= 12) {
                lapic_phys = *(const uint64_t *)(const void *)(at + 4);
            }
            at += at[1];
        }
    }
    pic_disable();
    lapic = paging_map_uncached(lapic_phys);
    lapic_enable();
    percpu[0].apic_id = (uint8_t)(lapic_read(LAPIC_ID) >> 24);
    calibrate();

    /* CPU 0 is this one; the others in MADT order. */
    unsigned n = 1;
    for (unsigned i = 0; i < listed; i++) {
        if (apic_ids[i] == percpu[0].apic_id)
            continue;
        struct percpu *c = &percpu[n];
        c->self = c;
        c->id = n;
        c->apic_id = apic_ids[i];
        c->stack_guard = ap_stacks[n - 1];
        c->stack_bottom = c->stack_guard + PAGE_SIZE;
        c->stack_top = c->stack_bottom + AP_STACK_SIZE;
        c->fault_stack_guard = ap_fault_stacks[n - 1];
        c->fault_stack_top = c->fault_stack_guard + PAGE_SIZE + AP_FAULT_STACK_SIZE;
        paging_unmap_kernel_page(c->stack_guard);
        paging_unmap_kernel_page(c->fault_stack_guard);
        n++;
        if (n == CPU_MAX)
            break;
    }
    cpus_present = n;
    trap_set_interrupt(SMP_SPURIOUS_VECTOR, spurious_interrupt_stub);
    trap_set_interrupt(SMP_TIMER_VECTOR, timer_interrupt_stub);
    copy_trampoline();
    kprintf("smp: %s lists %u CPUs%s; LAPIC at %#lx (uncached), boot CPU APIC id %u; "
            "TSC %lu kHz, LAPIC timer %lu kHz (divided by 16)\n",
            madt != NULL ? "the MADT" : "no MADT found, so one CPU:", n,
            ignored != 0 ? " (more ignored)" : "", (unsigned long)lapic_phys,
            percpu[0].apic_id, (unsigned long)tsc_per_ms, (unsigned long)lapic_ticks_per_ms);
}

unsigned smp_start_aps(unsigned withhold_sipi)
{
    for (unsigned i = 1; i < cpus_present; i++) {
        struct percpu *c = &percpu[i];
        set_param(ap_param_cr3, kernel_virt_to_phys(ap_pml4));
        set_param(ap_param_stack, (uint64_t)(uintptr_t)c->stack_top);
        set_param(ap_param_entry, (uint64_t)(uintptr_t)ap_entry);
        __atomic_store_n(&smp_starting_cpu, c, __ATOMIC_RELEASE);

        lapic_send_ipi(c->apic_id, ICR_INIT | ICR_LEVEL_ASSERT);
        pit_delay_us(INIT_WAIT_US);
        for (int sipi = 0; sipi < 2 && i != withhold_sipi && !c->online; sipi++) {
            lapic_send_ipi(c->apic_id, ICR_STARTUP | (AP_TRAMPOLINE_PHYS / PAGE_SIZE));
            pit_delay_us(SIPI_WAIT_US);
        }
        uint64_t start = smp_now_ms();
        while (!__atomic_load_n(&c->online, __ATOMIC_ACQUIRE)) {
            if (smp_now_ms() - start > AP_START_TIMEOUT_MS)
                kpanic("smp: cpu %u (APIC id %u) did not come up within %u ms", i, c->apic_id,
                       AP_START_TIMEOUT_MS);
            cpu_pause();
        }
    }
    kprintf("cpus online: %u\n", smp_cpus_online());
    return smp_cpus_online();
}

void ap_main(struct percpu *c)
{
    percpu_load(c);
    trap_init_cpu();
    lapic_enable();
    __atomic_add_fetch(&cpus_online, 1, __ATOMIC_ACQ_REL);
    __atomic_store_n(&c->online, true, __ATOMIC_RELEASE);
    void (*work)(void);
    while ((work = ap_work) == NULL)
        cpu_pause();
    work();
    cpu_halt_forever();
}

void smp_run_on_aps(void (*work)(void)) { ap_work = work; }

/* ---- The LAPIC timer -------------------------------------------------------- */

static void (*timer_tick)(void);

void smp_timer_start(unsigned period_us, void (*tick)(void))
{
    timer_tick = tick;
    uint64_t count = lapic_ticks_per_ms * period_us / 1000;
    lapic_write(LAPIC_TIMER_DIVIDE, TIMER_DIVIDE_16);
    lapic_write(LAPIC_LVT_TIMER, LVT_PERIODIC | SMP_TIMER_VECTOR);
    lapic_write(LAPIC_TIMER_INITIAL, count == 0 ? 1 : count > 0xffffffffu ? 0xffffffffu
                                                                          : (uint32_t)count);
}

void smp_timer_stop(void)
{
    lapic_write(LAPIC_LVT_TIMER, LVT_MASKED | SMP_TIMER_VECTOR);
    lapic_write(LAPIC_TIMER_INITIAL, 0);
}

/* Called by boot/isr.S's timer_interrupt_stub, interrupts off. */
void smp_timer_interrupt(void);
void smp_timer_interrupt(void)
{
    struct percpu *c = this_cpu();
    c->irq_depth++;
    c->timer_ticks++;
    if (timer_tick != NULL)
        timer_tick();
    c->irq_depth--;
    lapic_write(LAPIC_EOI, 0);
}
