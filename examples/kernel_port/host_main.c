/*
 * host_main.c - runs the example kernel as a user program and checks what
 * it promises: kernel_main succeeds, the arenas stay consistent, heap
 * memory is mapped and usable, freeing everything returns every frame and
 * unmaps every page, constraints and next-fit IDs behave, misuse is
 * reported through the port, and the port's contract is never broken. The
 * console goes to stdout when VERBOSE is set, else to a buffer printed
 * only on failure. Prints "ok   example.<check>" lines and ends with
 * "N passed, N failed".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernel.h"

static char console[1 << 16];
static size_t console_len;
static bool verbose;

void kernel_console_write(const char *text)
{
    if (verbose) {
        fputs(text, stdout);
        return;
    }
    size_t n = strlen(text);
    if (console_len + n < sizeof(console)) {
        memcpy(console + console_len, text, n);
        console_len += n;
    }
}

void kernel_halt(void)
{
    printf("%.*s", (int)console_len, console);
    printf("FAIL example: the kernel halted (vmem panic)\n0 passed, 1 failed\n");
    exit(1);
}

static size_t passed, failed;

static void check(bool ok, const char *name)
{
    printf("%s example.%s\n", ok ? "ok  " : "FAIL", name);
    if (ok)
        passed++;
    else
        failed++;
}

static bool all_consistent(void)
{
    Vmem *arenas[] = {&kernel_phys, &kernel_kva, &kernel_heap, &kernel_pids};
    for (size_t i = 0; i < sizeof(arenas) / sizeof(arenas[0]); i++) {
        VmemCheckReport report;
        if (vmem_check(arenas[i], &report) != 0) {
            printf("    %s: %s at %#lx\n", arenas[i]->name, report.reason,
                   (unsigned long)report.addr);
            return false;
        }
    }
    return true;
}

static bool in_ram(const void *p, size_t size)
{
    uintptr_t a = (uintptr_t)p, ram = (uintptr_t)kernel_ram;
    return a >= ram && a + size <= ram + sizeof(kernel_ram);
}

/* Many heap objects of mixed sizes (cached and not): each lies in mapped
 * memory, holds its own pattern until freed, and none overlaps another. */
#define OBJECTS 600
static bool heap_objects_are_mapped_and_disjoint(void)
{
    static unsigned char *object[OBJECTS];
    static size_t size[OBJECTS];
    bool ok = true;
    for (size_t i = 0; i < OBJECTS; i++) {
        size[i] = i % 3 == 0 ? 16 + (i * 7) % 241 : 300 + (i * 13) % 1800;
        object[i] = kmalloc(size[i]);
        if (object[i] == NULL || !in_ram(object[i], size[i]))
            return false;
        memset(object[i], (int)(i & 0xff), size[i]);
    }
    size_t pages = kernel_pages_mapped();
    for (size_t i = 0; i < OBJECTS; i++) {
        for (size_t b = 0; b < size[i]; b++)
            ok = ok && object[i][b] == (unsigned char)(i & 0xff);
    }
    for (size_t i = 0; i < OBJECTS; i++)
        kfree(object[i], size[i]);
    return ok && pages > 0 && kernel_mapping_errors() == 0;
}

static bool small_sizes_come_from_the_quantum_caches(void)
{
    static void *object[200];
    size_t arena_allocs = kernel_heap.stat.alloc;
    for (size_t i = 0; i < 200; i++) {
        object[i] = kmalloc(32);
        if (object[i] == NULL)
            return false;
    }
    /* 200 objects of 32 bytes came from a few slabs, not 200 segments. */
    bool ok = kernel_heap.stat.alloc - arena_allocs < 20;
    VmemStat seen;
    ok = ok && vmem_stat(&kernel_heap, &seen) == 0 && seen.in_use == 200 * 32;
    for (size_t i = 0; i < 200; i++)
        kfree(object[i], 32);
    return ok;
}

static bool freeing_everything_returns_every_frame(void)
{
    vmem_reap(&kernel_heap);
    return vmem_size(&kernel_heap, VMEM_ALLOC) == 0 && vmem_size(&kernel_kva, VMEM_ALLOC) == 0 &&
           vmem_size(&kernel_phys, VMEM_ALLOC) == 0 && kernel_pages_mapped() == 0 &&
           kernel_heap.stat.import == 0 && kernel_kva.stat.import == 0;
}

static bool kva_import_maps_and_release_unmaps(void)
{
    void *va = kernel_map_pages(8);
    bool ok = va != NULL && in_ram(va, 8 * KERNEL_PAGE_SIZE) && kernel_pages_mapped() == 8 &&
              vmem_size(&kernel_phys, VMEM_ALLOC) == 8 * KERNEL_PAGE_SIZE;
    if (va != NULL) {
        memset(va, 0x5a, 8 * KERNEL_PAGE_SIZE);
        kernel_unmap_pages(va, 8);
    }
    return ok && kernel_pages_mapped() == 0 && vmem_size(&kernel_phys, VMEM_ALLOC) == 0;
}

static bool dma_frames_meet_their_constraints(void)
{
    uintptr_t below = KERNEL_RAM_PHYS_BASE + 256 * KERNEL_PAGE_SIZE;
    uintptr_t got[17];
    size_t n = 0;
    bool ok = true;
    /* 4 frames on a 64 KiB boundary, below the end of the first region:
     * the region's 1 MiB holds exactly 16 such placements. */
    while (n < 17 && (got[n] = kernel_frames_alloc(4, 0x10000, below)) != 0) {
        ok = ok && got[n] % 0x10000 == 0 && got[n] >= KERNEL_RAM_PHYS_BASE &&
             got[n] + 4 * KERNEL_PAGE_SIZE <= below;
        n++;
    }
    ok = ok && n == 16 && kernel_misuse_log.count == 0;
    for (size_t i = 0; i < n; i++)
        kernel_frames_free(got[i], 4);
    return ok && vmem_size(&kernel_phys, VMEM_ALLOC) == 0;
}

static bool pids_are_handed_out_round_robin(void)
{
    long a = kernel_pid_alloc();
    kernel_pid_free(a);
    long b = kernel_pid_alloc();
    kernel_pid_free(b);
    return a > 0 && b == a + 1;
}

static bool pids_run_out_cleanly(void)
{
    static long pid[KERNEL_PID_COUNT];
    bool ok = true;
    for (size_t i = 0; i < KERNEL_PID_COUNT; i++) {
        pid[i] = kernel_pid_alloc();
        ok = ok && pid[i] >= KERNEL_PID_FIRST && pid[i] < KERNEL_PID_FIRST + KERNEL_PID_COUNT;
    }
    ok = ok && kernel_pid_alloc() == -1 && kernel_misuse_log.count == 0;
    if (!ok)
        printf("    pool in use %zu, failures %zu\n", kernel_page_pool_in_use(), kernel_page_pool_failures());
    for (size_t i = 0; i < KERNEL_PID_COUNT; i++) {
        if (pid[i] > 0)
            kernel_pid_free(pid[i]);
    }
    return ok && vmem_size(&kernel_pids, VMEM_ALLOC) == 0;
}

/* The spans a memory-map recipe run left in an arena, for checking. */
struct span_list {
    size_t count;
    uintptr_t base[16], size[16];
};

static void collect_span(void *arg, uintptr_t addr, size_t size, int type)
{
    struct span_list *list = arg;
    (void)type;
    if (list->count < 16) {
        list->base[list->count] = addr;
        list->size[list->count] = size;
    }
    list->count++;
}

/* kernel_add_frames on QEMU's memory map (as the test kernel's serial log
 * prints it at 512 MiB), with the reservations a multiboot kernel makes,
 * and on regions that are not page-aligned: exactly the free whole pages
 * become spans - never page 0, the first MiB, the kernel image or the boot
 * loader's structures. */
static bool memory_map_recipe_adds_only_free_whole_pages(void)
{
    static const struct kernel_mem_region qemu_available[] = {
        {0x0, 0x9fc00}, {0x100000, 0x1ffe0000 - 0x100000}};
    static const struct kernel_mem_region reserved[] = {
        {0x0, 0x100000},           /* first MiB: BIOS data, real-mode code */
        {0x9000, 0x1000},          /* multiboot info (inside the first MiB) */
        {0x100000, 0xbe7000},      /* kernel image, stacks, boot page tables */
        {0xce7123, 0x20},          /* multiboot command line, not page-aligned */
    };
    Vmem frames;
    struct span_list spans = {0, {0}, {0}};
    if (vmem_init(&frames, "frames", NULL, 0, KERNEL_PAGE_SIZE, NULL, NULL, NULL, 0, VM_NOSLEEP) != 0)
        return false;
    bool ok = true;
    for (size_t i = 0; i < 2; i++)
        ok &= kernel_add_frames(&frames, qemu_available[i].base,
                                qemu_available[i].base + qemu_available[i].size, reserved,
                                sizeof(reserved) / sizeof(reserved[0])) == 0;
    vmem_walk(&frames, VMEM_SPAN, collect_span, &spans);
    ok &= spans.count == 1 && spans.base[0] == 0xce8000 && spans.size[0] == 0x1ffe0000 - 0xce8000;
    vmem_destroy(&frames);

    /* No reservations: a region at 0 loses page 0 and its partial last
     * page; one inside a page adds nothing; a misaligned one is rounded in. */
    struct span_list bare = {0, {0}, {0}};
    if (vmem_init(&frames, "frames", NULL, 0, KERNEL_PAGE_SIZE, NULL, NULL, NULL, 0, VM_NOSLEEP) != 0)
        return false;
    ok &= kernel_add_frames(&frames, 0x0, 0x9fc00, NULL, 0) == 0;
    ok &= kernel_add_frames(&frames, 0xa0010, 0xa0ff0, NULL, 0) == 0;
    ok &= kernel_add_frames(&frames, 0x200123, 0x203456, NULL, 0) == 0;
    vmem_walk(&frames, VMEM_SPAN, collect_span, &bare);
    ok &= bare.count == 2 && bare.base[0] == 0x1000 && bare.size[0] == 0x9f000 - 0x1000 &&
          bare.base[1] == 0x201000 && bare.size[1] == 0x2000;
    vmem_destroy(&frames);
    return ok;
}

static bool misuse_is_reported_and_changes_nothing(void)
{
    kernel_misuse_panics = false;
    void *p = kmalloc(64);
    void *q = kmalloc(1000);
    kfree(p, 64);
    kfree(p, 64);      /* double free, caught in the quantum cache */
    bool ok = kernel_misuse_log.count == 1 && kernel_misuse_log.last.kind == VMEM_MISUSE_DOUBLE_FREE;
    kfree(q, 2000);    /* wrong size */
    ok = ok && kernel_misuse_log.count == 2 &&
         kernel_misuse_log.last.kind == VMEM_MISUSE_FREE_WRONG_SIZE &&
         strcmp(kernel_misuse_log.last.arena, "heap") == 0;
    kfree(q, 1000);
    kernel_misuse_panics = true;
    kernel_misuse_log.count = 0;
    return ok && all_consistent();
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    verbose = getenv("VERBOSE") != NULL;
    check(kernel_main() == 0, "kernel_main_succeeds");
    check(all_consistent(), "arenas_are_consistent_after_kernel_main");
    check(heap_objects_are_mapped_and_disjoint(), "heap_objects_are_mapped_and_disjoint");
    check(small_sizes_come_from_the_quantum_caches(), "small_sizes_come_from_the_quantum_caches");
    check(freeing_everything_returns_every_frame(), "freeing_everything_returns_every_frame");
    check(kva_import_maps_and_release_unmaps(), "kva_import_maps_and_release_unmaps");
    check(dma_frames_meet_their_constraints(), "dma_frames_meet_their_constraints");
    check(pids_are_handed_out_round_robin(), "pids_are_handed_out_round_robin");
    check(pids_run_out_cleanly(), "pids_run_out_cleanly");
    check(misuse_is_reported_and_changes_nothing(), "misuse_is_reported_and_changes_nothing");
    check(memory_map_recipe_adds_only_free_whole_pages(), "memory_map_recipe_adds_only_free_whole_pages");
    check(all_consistent() && freeing_everything_returns_every_frame(), "everything_is_back_at_the_end");
    check(kernel_port_contract_violations() == 0 && kernel_page_pool_failures() == 0 &&
              kernel_mapping_errors() == 0,
          "port_contract_was_never_broken");
    if (failed != 0 && !verbose)
        printf("console:\n%.*s", (int)console_len, console);
    printf("%zu passed, %zu failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
