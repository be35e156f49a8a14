/*
 * memmap.c - the physical memory map: what the boot loader says is RAM,
 * and what of it the kernel must keep for itself.
 *
 * Owns a copy of the Multiboot memory map (so nothing later depends on the
 * loader's structures staying intact) and the list of reserved ranges.
 *
 * Invariants:
 *  - Every reserved range is page-aligned (rounded outwards when added), so
 *    usable ranges are page-aligned and never share a frame with anything
 *    reserved.
 *  - A usable range is available RAM with every reserved range cut out; it
 *    never includes the first MiB (where the other CPUs' start-up
 *    trampoline lives, checked to be free RAM), the kernel image (whose end covers .bss,
 *    the stacks and the boot page tables), the Multiboot structures, or
 *    frames taken with memmap_take_early().
 *  - Every address here is physical. The loader's structures are read
 *    through the direct map (phys_to_virt), which entry.S sets up for the
 *    first 4 GiB, where Multiboot 1 puts all of them.
 */
#include "memmap.h"

#include <stdbool.h>

#include "kprintf.h"
#include "layout.h"
#include "multiboot.h"

#define MEMMAP_MAX_REGIONS 64
#define MEMMAP_MAX_RESERVED 32
#define FIRST_MIB 0x100000ull

struct region {
    uint64_t base, size;
    uint32_t type;
};

struct reserved {
    uint64_t base, end;
    const char *what;
};

static struct region regions[MEMMAP_MAX_REGIONS];
static size_t region_count;
static struct reserved reserved[MEMMAP_MAX_RESERVED];
static size_t reserved_count;

/* From boot/kernel.ld: the image's physical bounds (absolute symbols,
 * whose "address" is the value). */
extern char __kernel_phys_start[], __kernel_phys_end[];

static uint64_t round_down(uint64_t x) { return x & ~(PAGE_SIZE - 1); }

/* Rounds up, saturating at the last page of the address space. */
static uint64_t round_up(uint64_t x)
{
    return x > UINT64_MAX - (PAGE_SIZE - 1) ? round_down(UINT64_MAX) : round_down(x + PAGE_SIZE - 1);
}

void memmap_reserve(uint64_t base, uint64_t size, const char *what)
{
    if (size == 0)
        return;
    if (reserved_count == MEMMAP_MAX_RESERVED)
        kpanic("memmap: more than %d reserved ranges (adding %s)", MEMMAP_MAX_RESERVED, what);
    uint64_t end = base + size < base ? UINT64_MAX : base + size;
    struct reserved r = {round_down(base), round_up(end), what};
    /* Insertion keeps the list sorted by base, which the subtraction in
     * memmap_for_each_usable relies on. */
    size_t at = reserved_count++;
    while (at > 0 && reserved[at - 1].base > r.base) {
        reserved[at] = reserved[at - 1];
        at--;
    }
    reserved[at] = r;
}

/* True when the page at base is available RAM that no reserved range
 * holds, the blanket reservation of the first MiB aside. */
static bool low_page_is_free_ram(uint64_t base)
{
    bool ram = false;
    for (size_t i = 0; i < region_count; i++) {
        const struct region *r = &regions[i];
        if (r->type == MULTIBOOT_MEMORY_AVAILABLE && r->base <= base &&
            base + PAGE_SIZE <= r->base + r->size)
            ram = true;
    }
    for (size_t i = 0; i < reserved_count; i++) {
        const struct reserved *r = &reserved[i];
        bool first_mib = r->base == 0 && r->end == FIRST_MIB;
        if (!first_mib && r->base < base + PAGE_SIZE && base < r->end)
            return false;
    }
    return ram;
}

static size_t string_length(const char *s)
{
    size_t n = 0;
    while (s[n] != '\0')
        n++;
    return n;
}

static void reserve_string(uint32_t addr, const char *what)
{
    if (addr != 0)
        memmap_reserve(addr, string_length(phys_to_virt(addr)) + 1, what);
}

void memmap_init(uint32_t magic, uint32_t mbi_phys)
{
    if (magic != MULTIBOOT_BOOTLOADER_MAGIC)
        kpanic("not started by a Multiboot loader (eax = %#x)", magic);
    const struct multiboot_info *mbi = phys_to_virt(mbi_phys);
    if (!(mbi->flags & MULTIBOOT_INFO_MMAP))
        kpanic("the boot loader gave no memory map (flags %#x)", mbi->flags);

    uint64_t at = mbi->mmap_addr, end = (uint64_t)mbi->mmap_addr + mbi->mmap_length;
    while (at + sizeof(struct multiboot_mmap_entry) <= end) {
        const struct multiboot_mmap_entry *e = phys_to_virt(at);
        if (region_count == MEMMAP_MAX_REGIONS)
            kpanic("memmap: more than %d memory map entries", MEMMAP_MAX_REGIONS);
        if (e->len != 0)
            regions[region_count++] = (struct region){e->addr, e->len, e->type};
        at += (uint64_t)e->size + sizeof(e->size);
    }

    memmap_reserve(0, FIRST_MIB, "first MiB (BIOS, real-mode data)");
    memmap_reserve((uintptr_t)__kernel_phys_start,
                   (uintptr_t)__kernel_phys_end - (uintptr_t)__kernel_phys_start,
                   "kernel image, stacks, boot page tables");
    memmap_reserve(mbi_phys, sizeof(*mbi), "multiboot info");
    memmap_reserve(mbi->mmap_addr, mbi->mmap_length, "multiboot memory map");
    if (mbi->flags & MULTIBOOT_INFO_CMDLINE)
        reserve_string(mbi->cmdline, "multiboot command line");
    if (mbi->flags & MULTIBOOT_INFO_BOOTLOADER_NAME)
        reserve_string(mbi->boot_loader_name, "multiboot loader name");
    if ((mbi->flags & MULTIBOOT_INFO_MODS) && mbi->mods_count > 0) {
        const struct multiboot_module *mods = phys_to_virt(mbi->mods_addr);
        memmap_reserve(mbi->mods_addr, mbi->mods_count * sizeof(*mods), "multiboot modules");
        for (uint32_t i = 0; i < mbi->mods_count; i++) {
            memmap_reserve(mods[i].mod_start, mods[i].mod_end - mods[i].mod_start,
                           "multiboot module");
            reserve_string(mods[i].string, "multiboot module string");
        }
    }
    /* The other CPUs start in real mode at a fixed page (lib/layout.h):
     * it must be RAM the loader left alone. */
    if (!low_page_is_free_ram(AP_TRAMPOLINE_PHYS))
        kpanic("memmap: the AP trampoline page %#x is not free RAM", AP_TRAMPOLINE_PHYS);
    memmap_reserve(AP_TRAMPOLINE_PHYS, PAGE_SIZE, "AP start-up trampoline");
}

static const char *type_name(uint32_t type)
{
    switch (type) {
    case MULTIBOOT_MEMORY_AVAILABLE:
        return "available";
    case MULTIBOOT_MEMORY_RESERVED:
        return "reserved";
    case MULTIBOOT_MEMORY_ACPI_RECLAIMABLE:
        return "ACPI reclaimable";
    case MULTIBOOT_MEMORY_NVS:
        return "ACPI NVS";
    case MULTIBOOT_MEMORY_BADRAM:
        return "bad RAM";
    default:
        return "unknown";
    }
}

uint64_t memmap_ram_top(void)
{
    uint64_t top = 0;
    for (size_t i = 0; i < region_count; i++) {
        const struct region *r = &regions[i];
        if (r->type == MULTIBOOT_MEMORY_AVAILABLE && r->base + r->size > top)
            top = r->base + r->size;
    }
    return top;
}

void memmap_print(void)
{
    uint64_t available = 0;
    kprintf("memory map (multiboot):\n");
    for (size_t i = 0; i < region_count; i++) {
        const struct region *r = &regions[i];
        kprintf("  [0x%012lx, 0x%012lx) %8lu KiB  %s\n", (unsigned long)r->base,
                (unsigned long)(r->base + r->size), (unsigned long)(r->size >> 10),
                type_name(r->type));
        if (r->type == MULTIBOOT_MEMORY_AVAILABLE)
            available += r->size;
    }
    kprintf("  available RAM: %lu KiB, top at %#lx\n", (unsigned long)(available >> 10),
            (unsigned long)memmap_ram_top());
    kprintf("reserved ranges:\n");
    for (size_t i = 0; i < reserved_count; i++)
        kprintf("  [0x%012lx, 0x%012lx) %s\n", (unsigned long)reserved[i].base,
                (unsigned long)reserved[i].end, reserved[i].what);
}

/* Emits [base, end) minus every reserved range. */
static void subtract_reserved(uint64_t base, uint64_t end, MemmapRangeFn *fn, void *arg)
{
    uint64_t cur = base;
    for (size_t i = 0; i < reserved_count && cur < end; i++) {
        const struct reserved *r = &reserved[i];
        if (r->end <= cur || r->base >= end)
            continue;
        if (r->base > cur)
            fn(cur, r->base - cur, arg);
        if (r->end > cur)
            cur = r->end;
    }
    if (cur < end)
        fn(cur, end - cur, arg);
}

void memmap_for_each_usable(uint64_t limit, MemmapRangeFn *fn, void *arg)
{
    /* Regions are visited in address order (the map need not be sorted),
     * so callers see ascending ranges. */
    uint64_t done = 0;
    for (;;) {
        const struct region *next = NULL;
        for (size_t i = 0; i < region_count; i++) {
            const struct region *r = &regions[i];
            if (r->type != MULTIBOOT_MEMORY_AVAILABLE || r->base < done)
                continue;
            if (next == NULL || r->base < next->base)
                next = r;
        }
        if (next == NULL)
            break;
        uint64_t top = next->base + next->size < next->base ? UINT64_MAX : next->base + next->size;
        uint64_t base = round_up(next->base), end = round_down(top);
        if (end > limit)
            end = round_down(limit);
        if (base < end)
            subtract_reserved(base, end, fn, arg);
        done = next->base + 1;
    }
}

struct early_pick {
    uint64_t bytes, found;
};

static void pick_highest(uint64_t base, uint64_t size, void *arg)
{
    struct early_pick *pick = arg;
    if (size >= pick->bytes)
        pick->found = base + size - pick->bytes;
}

uint64_t memmap_take_early(size_t pages, uint64_t limit, const char *what)
{
    struct early_pick pick = {pages * PAGE_SIZE, 0};
    memmap_for_each_usable(limit, pick_highest, &pick);
    if (pick.found != 0)
        memmap_reserve(pick.found, pick.bytes, what);
    return pick.found;
}
