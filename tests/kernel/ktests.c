/*
 * ktests.c - kernel-only self-tests: libvmem handing out real RAM.
 *
 * The shared suites (tests/test_*.c) treat arenas as integers. These tests
 * use the kernel's frame arena and heap and check the one thing only real
 * memory can show: that no two live allocations share a byte. Each
 * allocation is filled with a pattern that depends on the word's address
 * and on an identity of the allocation (its base or a generation number,
 * through an odd multiplier, so two identities never give the same word),
 * and verified before it is freed: an overlap makes some word hold the
 * other allocation's value.
 *
 * Both arenas hold physical addresses (lib/layout.h): every test writes
 * and reads a frame through its direct-map pointer, kmem_ptr(), and frees
 * the physical address it was given. The first tests check that layout
 * itself: the kernel runs in the higher half, the lower half is unmapped,
 * and the two windows onto RAM show the same bytes.
 *
 * Invariant: a test leaves both arenas as it found them, except for pages
 * the port's page source handed to the allocator (boundary tags), which
 * are accounted separately (kport_pages_outstanding).
 */
#include "ktests.h"

#include <stdint.h>

#include "kmem.h"
#include "kprintf.h"
#include "ktest_env.h"
#include "layout.h"
#include "memmap.h"
#include "vmem_port_kernel.h"
#include "vtest.h"

#define FRAME KMEM_FRAME_SIZE
#define WORDS_PER_FRAME (FRAME / sizeof(uint64_t))
#define SALT 0x5a17ed5a17ed5a17ull
#define IDENTITY_MULTIPLIER 0xff51afd7ed558ccdull /* odd: a bijection on 2^64 */
#define GIB (1ull << 30)
#define MIB (1ull << 20)

/* Draining all RAM writes every word of the first FILL_BUDGET bytes and,
 * beyond that, two words of every frame: a 4 GiB machine would otherwise
 * spend most of the layer's time budget in a store loop under TCG. */
#define FILL_BUDGET (64 * MIB)

static bool current_failed;
static uint64_t phys_baseline; /* in use, without tag pages, before the tests */

void kt_fail(const char *file, int line, const char *expr)
{
    current_failed = true;
    kprintf("    assertion failed at %s:%d: %s\n", file, line, expr);
}

bool ktest_run(const struct ktest *test)
{
    size_t unexpected_before = ktest_env_unexpected_misuse();
    current_failed = false;
    vtest_env_misuse_capture(false);
    test->run();
    vtest_env_misuse_capture(false);
    if (ktest_env_unexpected_misuse() != unexpected_before)
        current_failed = true;
    kprintf("%s kernel.%s\n", current_failed ? "FAIL" : "ok  ", test->name);
    return !current_failed;
}

void ktest_run_list(const struct ktest *tests, size_t count, size_t *passed, size_t *failed)
{
    for (size_t i = 0; i < count; i++) {
        if (ktest_run(&tests[i]))
            (*passed)++;
        else
            (*failed)++;
    }
}

/* ---- Patterns ------------------------------------------------------------- */

static uint64_t pattern(uint64_t identity, const uint64_t *word)
{
    return (uint64_t)(uintptr_t)word ^ (identity * IDENTITY_MULTIPLIER) ^ SALT;
}

/* Byte offsets, within each frame, of the words written in sparse mode. */
#define SPARSE_FIRST 64
#define SPARSE_LAST (FRAME - sizeof(uint64_t))

/* Fills [base + skip, base + bytes): every word, or two words per frame.
 * `skip` leaves room for a header the caller keeps in the first words. */
static void fill(uint64_t identity, void *base, size_t bytes, size_t skip, bool every_word)
{
    uint64_t *words = base;
    if (every_word) {
        for (size_t i = skip / sizeof(*words); i < bytes / sizeof(*words); i++)
            words[i] = pattern(identity, &words[i]);
        return;
    }
    for (size_t f = 0; f < bytes / FRAME; f++) {
        uint64_t *first = &words[f * WORDS_PER_FRAME + SPARSE_FIRST / sizeof(*words)];
        uint64_t *last = &words[f * WORDS_PER_FRAME + SPARSE_LAST / sizeof(*words)];
        *first = pattern(identity, first);
        *last = pattern(identity, last);
    }
}

static bool word_ok(uint64_t identity, const uint64_t *word)
{
    if (*word == pattern(identity, word))
        return true;
    kprintf("    word at %p holds %#lx, expected %#lx: another allocation wrote it\n",
            (const void *)word, (unsigned long)*word,
            (unsigned long)pattern(identity, word));
    return false;
}

/* Checks what fill() wrote; prints the first bad word. */
static bool check(uint64_t identity, const void *base, size_t bytes, size_t skip,
                  bool every_word)
{
    const uint64_t *words = base;
    if (every_word) {
        for (size_t i = skip / sizeof(*words); i < bytes / sizeof(*words); i++)
            if (!word_ok(identity, &words[i]))
                return false;
        return true;
    }
    for (size_t f = 0; f < bytes / FRAME; f++) {
        if (!word_ok(identity, &words[f * WORDS_PER_FRAME + SPARSE_FIRST / sizeof(*words)]) ||
            !word_ok(identity, &words[f * WORDS_PER_FRAME + SPARSE_LAST / sizeof(*words)]))
            return false;
    }
    return true;
}

/* Frames in use in the frame arena, not counting the pages the port's page
 * source gave the allocator itself. */
static uint64_t phys_in_use_without_tags(void)
{
    return kmem_phys.stat.in_use - (uint64_t)kport_pages_outstanding() * FRAME;
}

/* ---- The address layout --------------------------------------------------------- */

/* From boot/entry.S and boot/kernel.ld. */
extern uint64_t boot_pml4[512];
extern char __kernel_phys_start[], __kernel_phys_end[], __text_start[];

static bool in_kernel_window(uintptr_t addr)
{
    return addr >= KERNEL_VMA_BASE && addr - KERNEL_VMA_BASE < KERNEL_WINDOW_SIZE;
}

/* Code, static data and the stack all have higher-half addresses, and no
 * page of the lower half is mapped: entry.S dropped the identity map. */
static void kernel_runs_in_the_higher_half_with_the_lower_half_unmapped(void)
{
    static int static_variable;
    int local_variable = 0;
    KT_ASSERT(in_kernel_window((uintptr_t)&kernel_runs_in_the_higher_half_with_the_lower_half_unmapped));
    KT_ASSERT(in_kernel_window((uintptr_t)__text_start));
    KT_ASSERT(in_kernel_window((uintptr_t)&static_variable));
    KT_ASSERT(in_kernel_window((uintptr_t)&local_variable));
    for (size_t i = 0; i < KERNEL_PML4_DIRECT; i++)
        KT_ASSERT(boot_pml4[i] == 0);
}

/* A variable of the image seen through the kernel window and through the
 * direct map at its physical address is one piece of RAM: the two
 * conversions agree with the page tables. */
static void kernel_window_and_direct_map_show_the_same_ram(void)
{
    static volatile uint64_t word;
    volatile uint64_t *alias = phys_to_virt(kernel_virt_to_phys((const void *)&word));
    KT_ASSERT((uintptr_t)alias != (uintptr_t)&word);
    word = SALT;
    KT_ASSERT(*alias == SALT);
    *alias = ~SALT;
    KT_ASSERT(word == ~SALT);
}

/* The frame arena's addresses are physical: inside RAM, outside the
 * kernel image's load addresses, and a frame's pointer is in the direct
 * map. */
static void frame_arena_holds_physical_frames_outside_the_image(void)
{
    uintptr_t image_lo = (uintptr_t)__kernel_phys_start, image_hi = (uintptr_t)__kernel_phys_end;
    void *inside = vmem_xalloc(&kmem_phys, FRAME, 0, 0, 0, (void *)image_lo, (void *)image_hi,
                               VM_NOSLEEP);
    if (inside != NULL)
        vmem_xfree(&kmem_phys, inside, FRAME);
    void *p = vmem_alloc(&kmem_phys, FRAME, VM_NOSLEEP);
    KT_ASSERT(p != NULL);
    uintptr_t phys = (uintptr_t)p;
    uint64_t *word = kmem_ptr(p);
    *word = phys ^ SALT;
    bool kept = *word == (phys ^ SALT);
    vmem_free(&kmem_phys, p, FRAME);
    KT_ASSERT(inside == NULL);
    KT_ASSERT(phys < memmap_ram_top());
    KT_ASSERT(phys + FRAME <= image_lo || phys >= image_hi);
    KT_ASSERT(virt_to_phys(word) == phys);
    KT_ASSERT((uintptr_t)word >= KERNEL_DIRECT_MAP && (uintptr_t)word < KERNEL_VMA_BASE);
    KT_ASSERT(kept);
}

/* ---- Before the shared suites -------------------------------------------------- */

#define TAG_TEST_IDS 4096
static uintptr_t tag_test_ids[TAG_TEST_IDS];

/* Runs first, while the allocator has only its static tags: enough
 * single-unit allocations must make it refill from the page source, and
 * those pages must be frames of kmem_phys. */
static void boundary_tag_pages_come_from_the_frame_arena(void)
{
    Vmem ids;
    KT_ASSERT(vmem_init(&ids, "ktest-ids", (void *)1, 1000000, 1, NULL, NULL, NULL, 0,
                        VM_NOSLEEP) == 0);
    size_t pages_before = kport_pages_outstanding();
    uint64_t phys_before = kmem_phys.stat.in_use;
    size_t n = 0;
    while (n < TAG_TEST_IDS && kport_pages_outstanding() == pages_before) {
        void *id = vmem_alloc(&ids, 1, VM_NOSLEEP);
        if (id == NULL)
            break;
        tag_test_ids[n++] = (uintptr_t)id;
    }
    size_t pages_after = kport_pages_outstanding();
    uint64_t phys_after = kmem_phys.stat.in_use;
    for (size_t i = 0; i < n; i++)
        vmem_free(&ids, (void *)tag_test_ids[i], 1);
    KT_ASSERT(vtest_consistent(&ids));
    vmem_destroy(&ids);
    KT_ASSERT(n > 0);
    KT_ASSERT(pages_after > pages_before);
    KT_ASSERT(phys_after >= phys_before + (pages_after - pages_before) * FRAME);
    KT_ASSERT(vtest_consistent(&kmem_phys));
}

struct chunk {
    struct chunk *next;
    uint64_t bytes;
    uint64_t check; /* address ^ SALT: the header was not overwritten */
    uint64_t every_word;
};

/* Takes every frame the arena will give, in chunks of 1 to 64 frames with
 * each policy in turn, marks each chunk, verifies all of them, and gives
 * them back. The chunks are linked through their own headers, so the test
 * needs no memory of its own however much RAM there is. */
static void all_ram_drained_holds_distinct_patterns(void)
{
    static const int policies[] = {VM_INSTANTFIT, VM_BESTFIT, VM_FIRSTFIT, VM_NEXTFIT};
    VtestRng rng;
    vtest_rng_seed(&rng, 0x6b65726e656cull);
    uint64_t in_use_before = phys_in_use_without_tags();
    uint64_t free_before = vmem_size(&kmem_phys, VMEM_FREE);
    struct chunk *head = NULL;
    size_t chunks = 0;
    uint64_t got = 0, written = 0;
    size_t frames = 1 + (size_t)vtest_rng_below(&rng, 64);

    for (;;) {
        int policy = policies[chunks % (sizeof(policies) / sizeof(policies[0]))];
        void *phys = vmem_alloc(&kmem_phys, frames * FRAME, policy | VM_NOSLEEP);
        if (phys == NULL) {
            if (frames == 1)
                break;
            frames /= 2; /* fragments smaller than asked for are still RAM */
            continue;
        }
        bool every_word = written < FILL_BUDGET;
        struct chunk *c = kmem_ptr(phys);
        c->next = head;
        c->bytes = frames * FRAME;
        c->check = (uintptr_t)c ^ SALT;
        c->every_word = every_word;
        fill((uintptr_t)c, c, c->bytes, sizeof(*c), every_word);
        if (every_word)
            written += c->bytes;
        head = c;
        chunks++;
        got += c->bytes;
        frames = 1 + (size_t)vtest_rng_below(&rng, 64);
    }
    kprintf("    drained %lu KiB of %lu KiB free in %zu chunks (%lu KiB checked word by word)\n",
            (unsigned long)(got >> 10), (unsigned long)(free_before >> 10), chunks,
            (unsigned long)(written >> 10));

    size_t verified = 0;
    bool all_ok = true;
    for (struct chunk *c = head; c != NULL; c = c->next) {
        if (c->check != ((uintptr_t)c ^ SALT)) {
            kprintf("    chunk header at %p overwritten\n", (void *)c);
            all_ok = false;
            break; /* its next pointer cannot be trusted */
        }
        if (!check((uintptr_t)c, c, c->bytes, sizeof(*c), c->every_word != 0))
            all_ok = false;
        verified++;
    }
    /* Give back whatever is still reachable, even after a failure. */
    for (struct chunk *c = head; c != NULL;) {
        if (c->check != ((uintptr_t)c ^ SALT))
            break;
        struct chunk *next = c->next;
        vmem_free(&kmem_phys, (void *)(uintptr_t)virt_to_phys(c), c->bytes);
        c = next;
    }
    KT_ASSERT(all_ok);
    KT_ASSERT(verified == chunks);
    /* The allocator's own tag pages come from the same RAM; all but a
     * sliver must have been handed out. */
    KT_ASSERT(got >= free_before / 10 * 9);
    KT_ASSERT(phys_in_use_without_tags() == in_use_before);
    KT_ASSERT(vtest_consistent(&kmem_phys));
}

#define LIVE_MAX 128
#define FRAME_RANDOM_OPS 3000

struct live {
    void *addr;
    size_t bytes;
    uint64_t generation;
    bool xalloc; /* free with vmem_xfree */
};
static struct live live[LIVE_MAX];

/* The policies vmem_alloc is asked for, one of them drawn per allocation. */
static const int alloc_policies[] = {VM_INSTANTFIT, VM_BESTFIT, VM_FIRSTFIT, VM_NEXTFIT};
#define ALLOC_POLICIES (sizeof(alloc_policies) / sizeof(alloc_policies[0]))

/* Verifies a live allocation's contents, then frees it the way it was
 * made. False if the contents changed. */
static bool release_live(const struct live *l)
{
    bool intact = check(l->generation, kmem_ptr(l->addr), l->bytes, 0, true);
    if (l->xalloc)
        vmem_xfree(&kmem_phys, l->addr, l->bytes);
    else
        vmem_free(&kmem_phys, l->addr, l->bytes);
    return intact;
}

/* Random allocations and frees of 1 to 16 frames with every policy and
 * some aligned and top-down requests; each allocation is filled when made
 * and verified when freed. */
static void random_frames_keep_their_contents(void)
{
    VtestRng rng;
    vtest_rng_seed(&rng, 0x72616e646f6dull);
    uint64_t in_use_before = phys_in_use_without_tags();
    size_t n = 0;
    uint64_t generation = 0;
    bool contents_ok = true, constraints_ok = true, allocated_all = true;

    for (size_t op = 0; op < FRAME_RANDOM_OPS; op++) {
        if (n == LIVE_MAX || (n > 0 && vtest_rng_below(&rng, 2) == 0)) {
            size_t i = (size_t)vtest_rng_below(&rng, n);
            if (!release_live(&live[i]))
                contents_ok = false;
            live[i] = live[--n];
            continue;
        }
        size_t bytes = (1 + (size_t)vtest_rng_below(&rng, 16)) * FRAME;
        size_t align = 0;
        void *p;
        bool xalloc = false;
        size_t kind = (size_t)vtest_rng_below(&rng, ALLOC_POLICIES + 2);
        if (kind < ALLOC_POLICIES) {
            p = vmem_alloc(&kmem_phys, bytes, alloc_policies[kind] | VM_NOSLEEP);
        } else if (kind == ALLOC_POLICIES) {
            align = (size_t)FRAME << (2 + vtest_rng_below(&rng, 4)); /* 16-128 KiB */
            p = vmem_xalloc(&kmem_phys, bytes, align, 0, 0, NULL, NULL, VM_NOSLEEP);
            xalloc = true;
        } else {
            p = vmem_xalloc(&kmem_phys, bytes, 0, 0, 0, NULL, NULL, VM_ENDALLOC | VM_NOSLEEP);
            xalloc = true;
        }
        if (p == NULL) {
            allocated_all = false;
            break;
        }
        if (align != 0 && ((uintptr_t)p & (align - 1)) != 0)
            constraints_ok = false;
        live[n] = (struct live){p, bytes, ++generation, xalloc};
        fill(generation, kmem_ptr(p), bytes, 0, true);
        n++;
    }
    while (n > 0)
        if (!release_live(&live[--n]))
            contents_ok = false;
    KT_ASSERT(allocated_all); /* at most 8 MiB is ever live */
    KT_ASSERT(constraints_ok);
    KT_ASSERT(contents_ok);
    KT_ASSERT(phys_in_use_without_tags() == in_use_before);
    KT_ASSERT(vtest_consistent(&kmem_phys));
}

/* The heap starts with no span: what it hands out it imports from the
 * frame arena, and once everything is freed it gives every span back. */
static void heap_imports_from_phys_and_gives_spans_back(void)
{
    uint64_t phys_before = phys_in_use_without_tags();
    KT_ASSERT(kmem_heap.stat.total == 0);

    void *a = vmem_alloc(&kmem_heap, 3 * FRAME, VM_NOSLEEP);
    void *b = vmem_alloc(&kmem_heap, 40 * FRAME, VM_NOSLEEP);
    void *c = vmem_xalloc(&kmem_heap, 4 * FRAME, 64 * 1024, 0, 0, NULL, NULL, VM_NOSLEEP);
    bool all = a != NULL && b != NULL && c != NULL;
    if (all) {
        fill(1, kmem_ptr(a), 3 * FRAME, 0, true);
        fill(2, kmem_ptr(b), 40 * FRAME, 0, true);
        fill(3, kmem_ptr(c), 4 * FRAME, 0, true);
    }
    size_t in_use = kmem_heap.stat.in_use, import = kmem_heap.stat.import;
    size_t total = kmem_heap.stat.total;
    uint64_t phys_during = phys_in_use_without_tags();
    bool contents = all && check(1, kmem_ptr(a), 3 * FRAME, 0, true) &&
                    check(2, kmem_ptr(b), 40 * FRAME, 0, true) &&
                    check(3, kmem_ptr(c), 4 * FRAME, 0, true);
    bool heap_consistent = vtest_consistent(&kmem_heap);
    if (a != NULL)
        vmem_free(&kmem_heap, a, 3 * FRAME);
    if (b != NULL)
        vmem_free(&kmem_heap, b, 40 * FRAME);
    if (c != NULL)
        vmem_xfree(&kmem_heap, c, 4 * FRAME);

    KT_ASSERT(all);
    KT_ASSERT(((uintptr_t)c & (64 * 1024 - 1)) == 0);
    KT_ASSERT(contents);
    KT_ASSERT(heap_consistent);
    KT_ASSERT(in_use == 47 * FRAME);
    KT_ASSERT(import >= in_use);
    KT_ASSERT(import == total); /* the heap has no span of its own */
    KT_ASSERT(phys_during == phys_before + import);
    KT_ASSERT(kmem_heap.stat.in_use == 0);
    KT_ASSERT(kmem_heap.stat.import == 0);
    KT_ASSERT(kmem_heap.stat.total == 0);
    KT_ASSERT(phys_in_use_without_tags() == phys_before);
    KT_ASSERT(vtest_consistent(&kmem_heap));
    KT_ASSERT(vtest_consistent(&kmem_phys));
}

/* A constrained heap request must import a span that satisfies it: an
 * address window (like a DMA limit) and a boundary not to cross. */
static void heap_import_honours_address_range_and_boundary(void)
{
    const uintptr_t lo = 8 * MIB, hi = 16 * MIB;
    uint64_t phys_before = phys_in_use_without_tags();
    void *p = vmem_xalloc(&kmem_heap, 5 * FRAME, 0, 0, 0, (void *)lo, (void *)hi, VM_NOSLEEP);
    void *q = vmem_xalloc(&kmem_heap, 3 * FRAME, 0, 0, 16 * FRAME, NULL, NULL, VM_NOSLEEP);
    bool window = p != NULL && (uintptr_t)p >= lo && (uintptr_t)p + 5 * FRAME <= hi;
    bool no_cross = q != NULL &&
                    (uintptr_t)q / (16 * FRAME) == ((uintptr_t)q + 3 * FRAME - 1) / (16 * FRAME);
    if (p != NULL) {
        fill(4, kmem_ptr(p), 5 * FRAME, 0, true);
        window = window && check(4, kmem_ptr(p), 5 * FRAME, 0, true);
        vmem_xfree(&kmem_heap, p, 5 * FRAME);
    }
    if (q != NULL)
        vmem_xfree(&kmem_heap, q, 3 * FRAME);
    KT_ASSERT(window);
    KT_ASSERT(no_cross);
    KT_ASSERT(kmem_heap.stat.import == 0);
    KT_ASSERT(phys_in_use_without_tags() == phys_before);
    KT_ASSERT(vtest_consistent(&kmem_heap));
}

/* The arena's top is the top of RAM in the memory map, and that frame is
 * mapped and writable (above 4 GiB when QEMU has more than 3 GiB). */
static void highest_frame_is_the_top_of_ram_and_writable(void)
{
    uint64_t top = memmap_ram_top() & ~(uint64_t)(FRAME - 1);
    void *p = vmem_xalloc(&kmem_phys, FRAME, 0, 0, 0, NULL, NULL, VM_ENDALLOC | VM_NOSLEEP);
    KT_ASSERT(p != NULL);
    bool at_top = (uint64_t)(uintptr_t)p + FRAME == top;
    fill(5, kmem_ptr(p), FRAME, 0, true);
    bool kept = check(5, kmem_ptr(p), FRAME, 0, true);
    vmem_xfree(&kmem_phys, p, FRAME);
    KT_ASSERT(at_top);
    KT_ASSERT(kept);
}

/* RAM above 4 GiB is in the arena exactly when the memory map has it. */
static void frames_above_4gib_exist_exactly_when_ram_does(void)
{
    bool ram_above = memmap_ram_top() > 4 * GIB;
    void *p = vmem_xalloc(&kmem_phys, 16 * FRAME, 0, 0, 0, (void *)(uintptr_t)(4 * GIB), NULL,
                          VM_NOSLEEP);
    bool kept = true;
    if (p != NULL) {
        fill(6, kmem_ptr(p), 16 * FRAME, 0, true);
        kept = check(6, kmem_ptr(p), 16 * FRAME, 0, true);
        vmem_xfree(&kmem_phys, p, 16 * FRAME);
    }
    KT_ASSERT((p != NULL) == ram_above);
    KT_ASSERT(p == NULL || (uint64_t)(uintptr_t)p >= 4 * GIB);
    KT_ASSERT(kept);
    KT_ASSERT(vtest_env_misuse_count() == 0);
}

/* highest_frame_is_the_top_of_ram_and_writable runs before the drain: the
 * tag pages the drain takes stay in the pool for good, wherever the last
 * free frames were, and one of them may be the top frame. */
static const struct ktest before_tests[] = {
    KTEST(kernel_runs_in_the_higher_half_with_the_lower_half_unmapped),
    KTEST(kernel_window_and_direct_map_show_the_same_ram),
    KTEST(boundary_tag_pages_come_from_the_frame_arena),
    KTEST(highest_frame_is_the_top_of_ram_and_writable),
    KTEST(all_ram_drained_holds_distinct_patterns),
    KTEST(random_frames_keep_their_contents),
    KTEST(heap_imports_from_phys_and_gives_spans_back),
    KTEST(heap_import_honours_address_range_and_boundary),
    KTEST(frames_above_4gib_exist_exactly_when_ram_does),
    KTEST(frame_arena_holds_physical_frames_outside_the_image),
};

void ktests_run_before(size_t *passed, size_t *failed)
{
    phys_baseline = phys_in_use_without_tags();
    ktest_run_list(before_tests, sizeof(before_tests) / sizeof(before_tests[0]), passed, failed);
}

/* ---- After the shared suites ------------------------------------------------------ */

/* Every frame the tests took from the frame arena (directly, through the
 * heap, or for vmem_create storage) came back; only the allocator's tag
 * pages are still out. */
static void self_tests_leave_no_frame_behind(void)
{
    KT_ASSERT(phys_in_use_without_tags() == phys_baseline);
    KT_ASSERT(kmem_heap.stat.in_use == 0);
    KT_ASSERT(kmem_heap.stat.import == 0);
    KT_ASSERT(vtest_consistent(&kmem_heap));
    KT_ASSERT(vtest_consistent(&kmem_phys));
}

static const struct ktest after_tests[] = {
    KTEST(self_tests_leave_no_frame_behind),
};

void ktests_run_after(size_t *passed, size_t *failed)
{
    ktest_run_list(after_tests, sizeof(after_tests) / sizeof(after_tests[0]), passed, failed);
}
