/*
 * kernel_vmem.c - how a kernel lays out its resources with vmem: the
 * example docs/porting.md walks through.
 *
 *   kernel_phys  physical frames, quantum one page, a span per usable
 *                region of the memory map
 *   kernel_kva   kernel virtual memory that is mapped and backed: it imports
 *                from kernel_phys through kva_import / kva_release, a custom
 *                afunc/ffunc pair that takes frames from the source with
 *                vmem_alloc and maps them (and unmaps them and frees the
 *                frames when a span is wholly free again)
 *   kernel_heap  a byte-granular heap (quantum 16) that imports pages from
 *                kernel_kva, with quantum caches for every size up to 256
 *                bytes: the common small allocations take no arena lock
 *   kernel_pids  process IDs 1..4096 (quantum 1), handed out next-fit so
 *                an ID is not reused soon after it is freed
 *
 * The pretend machine: its "physical memory" is the array kernel_ram, at
 * physical address KERNEL_RAM_PHYS_BASE, and the kernel maps it into a
 * window at va = pa + offset (a higher-half direct map does the same with a
 * constant offset). Mapping is a page-table array here. A kernel whose
 * virtual window is not a direct map gives kernel_kva an arena of virtual
 * addresses as its source instead, and its import callback allocates the
 * virtual range there and maps frames into it one page at a time.
 */
#include "kernel.h"

#define PAGE ((size_t)KERNEL_PAGE_SIZE)

Vmem kernel_phys, kernel_kva, kernel_heap, kernel_pids;

_Alignas(KERNEL_PAGE_SIZE) unsigned char kernel_ram[KERNEL_RAM_PAGES * KERNEL_PAGE_SIZE];

/* ---- The kernel window: mapping physical frames ---------------------------- */

/* One entry per page of the window: the physical address mapped there, 0
 * when nothing is. A real kernel writes its page tables (and flushes the
 * TLB on unmap) instead. */
static uintptr_t window_pte[KERNEL_RAM_PAGES];
static size_t window_mapped, window_errors;

static uintptr_t pa_to_va(uintptr_t pa) { return (uintptr_t)kernel_ram + (pa - KERNEL_RAM_PHYS_BASE); }

static uintptr_t va_to_pa(uintptr_t va) { return KERNEL_RAM_PHYS_BASE + (va - (uintptr_t)kernel_ram); }

static void map_pages(uintptr_t va, uintptr_t pa, size_t npages)
{
    size_t first = (va - (uintptr_t)kernel_ram) / PAGE;
    for (size_t i = 0; i < npages; i++) {
        if (window_pte[first + i] != 0)
            window_errors++;
        window_pte[first + i] = pa + i * PAGE;
    }
    window_mapped += npages;
}

static void unmap_pages(uintptr_t va, size_t npages)
{
    size_t first = (va - (uintptr_t)kernel_ram) / PAGE;
    for (size_t i = 0; i < npages; i++) {
        if (window_pte[first + i] == 0)
            window_errors++;
        window_pte[first + i] = 0;
    }
    window_mapped -= npages;
}

size_t kernel_pages_mapped(void) { return window_mapped; }

size_t kernel_mapping_errors(void) { return window_errors; }

/*
 * The import callback of kernel_kva: `size` bytes (a multiple of the page,
 * kernel_kva's quantum) of frames from the source, mapped, returned as the
 * virtual address. Called by vmem with no arena lock held, so it may call
 * into vmem; vmflag carries the request's VM_SLEEP / VM_NOSLEEP and must be
 * passed on. A NULL return makes the request fail (or try elsewhere).
 */
static void *kva_import(Vmem *phys, size_t size, int vmflag)
{
    void *frames = vmem_alloc(phys, size, vmflag);
    if (frames == NULL)
        return NULL;
    uintptr_t pa = (uintptr_t)frames;
    map_pages(pa_to_va(pa), pa, size / PAGE);
    return (void *)pa_to_va(pa);
}

/* The give-back callback: a span of kernel_kva is wholly free again. */
static void kva_release(Vmem *phys, void *va, size_t size)
{
    uintptr_t pa = va_to_pa((uintptr_t)va);
    unmap_pages((uintptr_t)va, size / PAGE);
    vmem_free(phys, (void *)pa, size);
}

/* ---- Setting up ---------------------------------------------------------------- */

int kernel_add_frames(Vmem *phys, uint64_t base, uint64_t end,
                      const struct kernel_mem_region *reserved, size_t nreserved)
{
    /* A boot loader's regions need not be page-aligned: only the whole
     * pages inside one are usable. */
    base = (base + (PAGE - 1)) & ~(uint64_t)(PAGE - 1);
    end &= ~(uint64_t)(PAGE - 1);
    /* Never page 0: the void * calls use NULL for failure. */
    if (base < PAGE)
        base = PAGE;
    int result = 0;
    for (size_t i = 0; i < nreserved && base < end; i++) {
        /* Rounded outward: a page that holds any reserved byte is taken. */
        uint64_t r_base = reserved[i].base & ~(uint64_t)(PAGE - 1);
        uint64_t r_end = ((uint64_t)reserved[i].base + reserved[i].size + (PAGE - 1)) &
                         ~(uint64_t)(PAGE - 1);
        if (r_end <= base || r_base >= end)
            continue;
        if (r_base > base && vmem_add_range(phys, (uintptr_t)base, (size_t)(r_base - base),
                                            VM_NOSLEEP) != 0)
            result = -1;
        if (r_end > base)
            base = r_end;
    }
    if (base < end &&
        vmem_add_range(phys, (uintptr_t)base, (size_t)(end - base), VM_NOSLEEP) != 0)
        result = -1;
    return result;
}

static int setup_failed(const char *what)
{
    kernel_console_write("kernel_vmem_init: ");
    kernel_console_write(what);
    kernel_console_write(" failed\n");
    return -1;
}

int kernel_vmem_init(const struct kernel_mem_region *map, size_t nregions)
{
    /* The static boundary tags: arenas work from here on, before any page
     * allocator exists. */
    vmem_bootstrap();

    /* Frames: no initial span; one span per usable region. */
    if (vmem_init(&kernel_phys, "phys", NULL, 0, PAGE, NULL, NULL, NULL, 0, VM_NOSLEEP) != 0)
        return setup_failed("phys arena");
    for (size_t i = 0; i < nregions; i++) {
        if (kernel_add_frames(&kernel_phys, map[i].base, (uint64_t)map[i].base + map[i].size,
                              NULL, 0) != 0)
            return setup_failed("adding a memory-map region");
    }

    /* Mapped kernel memory, imported from the frames through the mapping
     * callbacks. No span of its own. */
    if (vmem_init(&kernel_kva, "kva", NULL, 0, PAGE, kva_import, kva_release, &kernel_phys, 0,
                  VM_NOSLEEP) != 0)
        return setup_failed("kva arena");

    /* The heap imports whole pages from kernel_kva (vmem_alloc / vmem_free
     * as the callbacks: vmem then imports constrained requests through
     * vmem_xalloc, honouring them) and caches each size up to 256 bytes. */
    if (vmem_init(&kernel_heap, "heap", NULL, 0, 16, vmem_alloc, vmem_free, &kernel_kva, 256,
                  VM_NOSLEEP) != 0)
        return setup_failed("heap arena");

    /* IDs: a plain integer arena. Naming VM_NEXTFIT here builds its index
     * from the start. */
    if (vmem_init(&kernel_pids, "pids", (void *)KERNEL_PID_FIRST, KERNEL_PID_COUNT, 1, NULL,
                  NULL, NULL, 0, VM_NEXTFIT | VM_NOSLEEP) != 0)
        return setup_failed("pid arena");
    return 0;
}

/* ---- What the rest of the kernel calls ---------------------------------------- */

void *kmalloc(size_t size) { return vmem_alloc(&kernel_heap, size, VM_NOSLEEP); }

void kfree(void *ptr, size_t size) { vmem_free(&kernel_heap, ptr, size); }

void *kernel_map_pages(size_t npages) { return vmem_alloc(&kernel_kva, npages * PAGE, VM_NOSLEEP); }

void kernel_unmap_pages(void *va, size_t npages) { vmem_free(&kernel_kva, va, npages * PAGE); }

uintptr_t kernel_frames_alloc(size_t npages, size_t align, uintptr_t below)
{
    return (uintptr_t)vmem_xalloc(&kernel_phys, npages * PAGE, align, 0, 0, NULL, (void *)below,
                                  VM_NOSLEEP);
}

void kernel_frames_free(uintptr_t pa, size_t npages) { vmem_xfree(&kernel_phys, (void *)pa, npages * PAGE); }

long kernel_pid_alloc(void)
{
    void *id = vmem_alloc(&kernel_pids, 1, VM_NEXTFIT | VM_NOSLEEP);
    return id == NULL ? -1 : (long)(uintptr_t)id;
}

void kernel_pid_free(long pid) { vmem_free(&kernel_pids, (void *)(uintptr_t)pid, 1); }

/* ---- kernel_main ---------------------------------------------------------------- */

static int demo_failed(const char *what)
{
    kernel_console_write("kernel_main: ");
    kernel_console_write(what);
    kernel_console_write("\n");
    return 1;
}

int kernel_main(void)
{
    /* The pretend machine's memory map: two usable regions with a hole
     * between them, as firmware reports around legacy areas. */
    static const struct kernel_mem_region memory_map[] = {
        {KERNEL_RAM_PHYS_BASE, 256 * PAGE},
        {KERNEL_RAM_PHYS_BASE + 384 * PAGE, (KERNEL_RAM_PAGES - 384) * PAGE},
    };
    int failures = 0;
    if (kernel_vmem_init(memory_map, sizeof(memory_map) / sizeof(memory_map[0])) != 0)
        return 1;

    /* The heap: small objects come from the quantum caches. */
    unsigned char *object = kmalloc(40);
    unsigned char *buffer = kmalloc(3000);
    if (object == NULL || buffer == NULL)
        return demo_failed("kmalloc failed");
    for (size_t i = 0; i < 40; i++)
        object[i] = (unsigned char)i;
    buffer[0] = buffer[2999] = 0xa5;
    kfree(object, 40);
    kfree(buffer, 3000);

    /* A DMA buffer: 16 frames, 64 KiB aligned, in the first region. */
    uintptr_t dma = kernel_frames_alloc(16, 0x10000, KERNEL_RAM_PHYS_BASE + 256 * PAGE);
    if (dma == 0 || dma % 0x10000 != 0 || dma + 16 * PAGE > KERNEL_RAM_PHYS_BASE + 256 * PAGE)
        failures += demo_failed("DMA frames");
    else
        kernel_frames_free(dma, 16);

    /* Process IDs. */
    long init = kernel_pid_alloc(), next = kernel_pid_alloc();
    if (init != KERNEL_PID_FIRST || next != KERNEL_PID_FIRST + 1)
        failures += demo_failed("pids");
    kernel_pid_free(init);
    kernel_pid_free(next);

    /* Give every cached object back; the heap and kva spans follow. */
    vmem_reap(&kernel_heap);
    if (vmem_size(&kernel_phys, VMEM_ALLOC) != 0)
        failures += demo_failed("frames still allocated after everything was freed");
    vmem_dump(&kernel_phys);
    return failures;
}
