/*
 * vmem.h - the public interface of libvmem, a vmem resource allocator
 * (Bonwick and Adams, "Magazines and Vmem", USENIX 2001).
 *
 * An arena manages a set of integers: kernel virtual addresses, physical
 * frames, process IDs, DMA windows. Ranges enter an arena as spans, through
 * vmem_add() or by import from a source arena, and leave it as allocated
 * segments. Nothing is ever stored inside the managed range.
 *
 * Compatibility: the names, signatures, flag names and flag values of the
 * original vmem.h are kept, so a kernel written against it compiles
 * unchanged (the one widening: `name` is `const char *`, which every caller
 * of the `char *` version still satisfies). Everything marked "extension"
 * is new.
 *
 * This header includes only <stddef.h>, <stdint.h> and <stdbool.h>, defines
 * names only in the vmem_ / Vmem / VM_ / VMEM_ namespaces, and compiles
 * warning-free (-Wpedantic) as C89 to C23 and as C++98 to C++20.
 *
 * Conventions used throughout:
 *  - Ranges are half-open, [addr, addr + size). A span may end exactly at the
 *    top of the address space (addr + size == 2^N); nothing overflows.
 *  - Sizes are rounded up to the arena's quantum, which is a power of two.
 *  - The void * calls (vmem_alloc, vmem_xalloc) return NULL on failure, so
 *    they never hand out address 0: they place allocations at or above the
 *    first quantum. Address 0 is available through the extension calls that
 *    return a status and take the address by pointer (vmem_xalloc_addr,
 *    vmem_alloc_exact), so an arena of IDs starting at 0 can use all of them.
 *  - Misuse (freeing what is not allocated, a wrong size, bad constraints,
 *    overlapping spans, destroying a busy arena, ...) is detected in every
 *    build and reported through vmem_port_misuse(); when that hook returns,
 *    the call fails (NULL, a negative VMEM_ERR_ code, or no effect) and the
 *    arena is exactly as it was.
 */
#ifndef VMEM_H
#define VMEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* bool is C99's _Bool, which gcc and clang also offer in C89 but flag under
 * -Wpedantic; __extension__ says the header uses it knowingly. */
#if defined(__GNUC__) && !defined(__cplusplus) && \
    (!defined(__STDC_VERSION__) || __STDC_VERSION__ < 199901L)
#define VMEM_C99_BOOL __extension__
#else
#define VMEM_C99_BOOL
#endif

/* ---- Flags (values are those of the original header) ------------------- */

/* Use the smallest free segment that can satisfy the allocation. Best for
 * small, precious resources. */
#define VM_BESTFIT (1 << 0)
/* A good approximation to best-fit in constant time: the first of a few
 * members of the request's own size-class freelist that is large enough,
 * else the head of the first freelist whose every member is. The classes
 * split each power of two in VMEM_FREELIST_SPLIT, so the segment chosen is
 * rarely more than 1/VMEM_FREELIST_SPLIT larger than needed. The default
 * policy. */
#define VM_INSTANTFIT (1 << 1)
/* The first free placement after the previous allocation, wrapping around:
 * an ID arena hands out every ID once before reusing any. */
#define VM_NEXTFIT (1 << 2)
/* May wait until a free or vmem_add() makes the request satisfiable. */
#define VM_SLEEP (1 << 3)
/* Never waits: fails with NULL if the request cannot be satisfied now. */
#define VM_NOSLEEP (1 << 4)
/* The request is made on behalf of the allocator itself (a port's page
 * source refilling boundary tags): it may use the tags held in reserve and
 * never triggers a refill, so it cannot recurse. */
#define VM_BOOTSTRAP (1 << 5)
/* Extension: the lowest-addressed placement that satisfies the request. */
#define VM_FIRSTFIT (1 << 6)
/* A note on constrained requests (align, phase, nocross, a range): a free
 * segment that is large enough may still not fit them. Best-fit, first-fit,
 * next-fit and VM_ENDALLOC give their exact answer unless more than 64 such
 * misfits come before it in their search order; then they settle for the
 * first segment that fits wherever it lies (size + align - quantum, plus a
 * nocross window), so that no request is ever linear in the number of
 * segments while such a comfortable fit exists. Without one they search
 * every candidate: a VM_NOSLEEP request fails only if nothing fits. */
/* Extension: place the allocation as high as possible (top-down). Combines
 * with VM_BESTFIT (smallest segment, its top end) or alone (highest address);
 * not with VM_NEXTFIT or VM_INSTANTFIT. */
#define VM_ENDALLOC (1 << 7)

/* Without VM_SLEEP, a request never waits: VM_NOSLEEP is the default. */

/* ---- Error codes (negative returns of the int-returning calls) --------- */
#define VMEM_ERR_NO_MEM 1     /* kept from the original header */
#define VMEM_ERR_INVALID 2    /* misuse: bad argument or state, reported */
#define VMEM_ERR_NOT_FOUND 3  /* vmem_check(): inconsistency found */

/* ---- Types ------------------------------------------------------------ */

struct vmem;
struct vmem_tag;
struct vmem_qcache_state;

/* Import callbacks: an arena imports spans by calling afunc(source, size,
 * vmflag) and gives each span back, once wholly free, with ffunc(source,
 * addr, size) - every span, whatever afunc is. Both are called with no
 * arena lock held. With ffunc NULL, spans stay while the arena lives (one
 * imported through vmem_alloc still goes back at vmem_destroy, or when the
 * allocation that imported it could not use it).
 * What is asked for, with u the larger of the arena's and the source's
 * quanta (the import unit):
 *  - afunc vmem_alloc: the arena imports through vmem_xalloc_addr() on the
 *    source, asking for the shapes described under VmemXImport, so that
 *    the span itself satisfies the request's constraints. The span goes
 *    back through ffunc; when ffunc is vmem_free, vmem_xfree or NULL,
 *    through vmem_xfree, the call that matches its allocation (a release
 *    of yours may use either: such a span is no quantum-cache object).
 *  - any other afunc (a plain callback, told no range or alignment):
 *    size + align - quantum, plus nocross when one is given, rounded up to
 *    u, so that the request fits wherever the span lies; with an import
 *    quantum (vmem_set_import_quantum), first that rounded up to the
 *    import quantum. A span that holds no placement after all (outside
 *    minaddr / maxaddr, say) goes straight back through ffunc: a failed
 *    attempt leaves nothing imported. */
typedef void *VmemAlloc(struct vmem *vmem, size_t size, int flags);
typedef void VmemFree(struct vmem *vmem, void *addr, size_t size);

/*
 * Extension: an import callback told every constraint (vmem_set_ximport).
 * It takes exactly size units at *addrp, at offset phase from an align
 * boundary, within [minaddr, maxaddr) (maxaddr 0: no upper bound), crossing
 * no multiple of nocross (0: none), and returns 0 - or returns a negative
 * VMEM_ERR_ code having taken nothing. vmflag holds the request's VM_SLEEP,
 * VM_NOSLEEP, VM_BOOTSTRAP, and VM_ENDALLOC when the request wants its
 * highest placement. vmem_xalloc_addr has this signature: it is what an
 * arena made with afunc vmem_alloc uses. Called with no arena lock held.
 *
 * For one request the arena asks for at most three shapes of span, in
 * this order, and stops at the first it gets (all but the last with
 * VM_SLEEP turned into VM_NOSLEEP, so that waiting for one never keeps the
 * next from being tried). Every value is a multiple of u (see VmemAlloc).
 * "Rounded" below means rounded up to the import quantum (when one is set
 * and nocross allows it) and then, as the next shape, rounded up to u.
 *  - When phase and nocross are multiples of u: the span that starts at
 *    the placement - the size rounded; align the larger of the request's
 *    and u; the request's phase and nocross; minaddr rounded up to u;
 *    maxaddr such that the span starts no higher than the last start the
 *    request's maxaddr allows, rounded down to u. Then, when align is
 *    below u and minaddr is not a multiple of u: the whole units holding
 *    the lowest placement at or above minaddr, at exactly that address.
 *  - Otherwise (a phase or nocross finer than u): a span that fits the
 *    request wherever it lies - size + align - quantum (+ nocross),
 *    rounded, inside the range rounded inward to u; then, when the range
 *    ends inside a unit, that size plus the parts of its two end units
 *    outside the range, rounded up to u, inside the range rounded outward
 *    to u. Both with align u and no phase or nocross.
 * So a request whose range ends, or starts, inside the source's only free
 * unit still gets it. A span that does not serve the request after all
 * goes back through the release function at once.
 */
typedef int VmemXImport(struct vmem *source, size_t size, size_t align, size_t phase,
                        size_t nocross, uintptr_t minaddr, uintptr_t maxaddr, int vmflag,
                        uintptr_t *addrp);

/* Statistics of an arena; every field is exact at all times. */
typedef struct {
    size_t in_use; /* units currently allocated from the arena */
    size_t import; /* units currently held in spans imported from the source */
    size_t total;  /* units in all spans: added with vmem_add() and imported */
    size_t alloc;  /* number of successful allocations since creation */
    size_t free;   /* number of successful frees since creation */
} VmemStat;

/* Opaque storage for the port's lock, embedded by value so that creating an
 * arena allocates nothing. A port checks at compile time that its lock fits
 * (VMEM_LOCK_WORDS may be raised with -D, identically for library and
 * kernel). */
#ifndef VMEM_LOCK_WORDS
#define VMEM_LOCK_WORDS 8
#endif
typedef union {
    uint64_t vl_words[VMEM_LOCK_WORDS];
    void *vl_align;
} VmemLock;

/* Opaque storage for the port's condition variable (VM_SLEEP waits on it),
 * embedded like the lock. Unused by ports that cannot sleep. */
#ifndef VMEM_COND_WORDS
#define VMEM_COND_WORDS 8
#endif
typedef union {
    uint64_t vc_words[VMEM_COND_WORDS];
    void *vc_align;
} VmemCond;

/*
 * Layout agreement. VMEM_LOCK_WORDS and VMEM_COND_WORDS set the size and
 * layout of Vmem, which callers embed: a file compiled with other values
 * than the library would hand it storage of the wrong shape, and nothing
 * would say so until arenas went wrong. So every file that includes this
 * header refers to a symbol whose name spells both values, and the library
 * defines only the one it was built with; a mismatch fails at link time,
 * naming the values the file was compiled with:
 *     undefined reference to `vmem_abi_VMEM_LOCK_WORDS_2_VMEM_COND_WORDS_8'
 * (so give both as plain decimal numbers). The reference costs one pointer
 * of read-only data per object file and nothing per call. Compilers other
 * than gcc and clang go unchecked.
 */
#define VMEM_ABI_NAME(lock, cond) VMEM_ABI_NAME_(lock, cond)
#define VMEM_ABI_NAME_(lock, cond) vmem_abi_VMEM_LOCK_WORDS_##lock##_VMEM_COND_WORDS_##cond
#define VMEM_ABI_SYMBOL VMEM_ABI_NAME(VMEM_LOCK_WORDS, VMEM_COND_WORDS)
extern const char VMEM_ABI_SYMBOL;
#if defined(__GNUC__) || defined(__clang__)
static const char *const vmem_abi_reference __attribute__((used)) = &VMEM_ABI_SYMBOL;
#endif

/* An arena. vmem_init() fills caller storage of this type; vmem_create()
 * provides the storage itself. Read `name`, `quantum` and `stat` if you
 * like (under no lock, they may be momentarily stale); every other member
 * is private. The layout is in vmem_impl.h, which is not API. */
typedef struct vmem Vmem;
#include "vmem_impl.h"

/* ---- The original API ------------------------------------------------- */

/*
 * Initialises an arena in caller storage. Allocates nothing. Its initial
 * span is [base, base + size) when size > 0. quantum must be a power of
 * two; base and size multiples of it. afunc/ffunc/source describe where
 * spans are imported from (all NULL, or afunc and source both set).
 * qcache_max > 0 puts a quantum cache in front of the arena for each
 * multiple of the quantum up to it (at most 16): vmem_alloc() of such a
 * size is then served from per-CPU magazines without taking the arena lock
 * (their memory comes from the page source on first use).
 * Returns 0, or -VMEM_ERR_INVALID after reporting misuse (storage then
 * holds no arena).
 */
int vmem_init(Vmem *vmem, const char *name, void *base, size_t size, size_t quantum,
              VmemAlloc *afunc, VmemFree *ffunc, Vmem *source, size_t qcache_max,
              int vmflag);

/* Destroys an arena with no allocated segment: gives imported spans back to
 * the source and returns every boundary tag. With live segments, or while
 * another arena imports from it (destroy that one first), this is misuse:
 * reported, and the arena stays usable and unchanged. */
void vmem_destroy(Vmem *vmp);

/* Allocates size units (rounded to the quantum) with the policy in vmflag
 * (VM_INSTANTFIT by default). Returns the address, or NULL. */
void *vmem_alloc(Vmem *vmp, size_t size, int vmflag);

/* Frees a segment from vmem_alloc(); size must be the size allocated. */
void vmem_free(Vmem *vmp, void *addr, size_t size);

/*
 * Allocates size units at offset phase from an align boundary, such that
 * [addr, addr + size) lies within [minaddr, maxaddr) and does not cross a
 * nocross-aligned boundary. align 0 means the quantum; nocross 0 means no
 * boundary; minaddr / maxaddr NULL mean unconstrained. align and nocross
 * must be powers of two, align, phase and nocross multiples of the
 * quantum, phase < align, and nocross >= size. With VM_NOSLEEP it fails
 * only when no such placement exists, even after importing.
 */
void *vmem_xalloc(Vmem *vmp, size_t size, size_t align, size_t phase, size_t nocross,
                  void *minaddr, void *maxaddr, int vmflag);

/* Frees a segment from vmem_xalloc(). */
void vmem_xfree(Vmem *vmp, void *addr, size_t size);

/* Adds the span [addr, addr + size) to the arena. Returns addr on success,
 * NULL on failure (out of boundary tags under VM_NOSLEEP, or misuse: an
 * overlapping, wrapping, empty or misaligned span). A span at address 0
 * cannot report success through this call: use vmem_add_range(). */
void *vmem_add(Vmem *vmp, void *addr, size_t size, int vmflag);

/* Prints the arena (spans, segments, freelists, hash load, stats) through
 * vmem_port_puts(). */
void vmem_dump(Vmem *vmp);

/* Hands the allocator its static pool of boundary tags. Call once, before
 * any other vmem call; until then every call is reported as misuse. */
void vmem_bootstrap(void);

/* ---- Extensions -------------------------------------------------------- */

/* The paper's constructor: like vmem_init(), with arena storage taken from
 * the library's own metadata pages. Returns NULL on failure. vmem_destroy()
 * keeps the storage for the next vmem_create() (it is not given back to
 * the page source). */
Vmem *vmem_create(const char *name, void *base, size_t size, size_t quantum,
                  VmemAlloc *afunc, VmemFree *ffunc, Vmem *source, size_t qcache_max,
                  int vmflag);

/* vmem_add() with a status return, usable for a span at address 0.
 * Returns 0 or a negative VMEM_ERR_ code. */
int vmem_add_range(Vmem *vmp, uintptr_t base, size_t size, int vmflag);

/* vmem_xalloc() with a status return and the full address range: stores the
 * address in *addrp and returns 0, or returns a negative VMEM_ERR_ code.
 * May return address 0. maxaddr 0 means no upper bound. */
int vmem_xalloc_addr(Vmem *vmp, size_t size, size_t align, size_t phase, size_t nocross,
                     uintptr_t minaddr, uintptr_t maxaddr, int vmflag, uintptr_t *addrp);

/* Allocates exactly [addr, addr + size), which must be free (or importable).
 * Returns 0 or a negative VMEM_ERR_ code; free it with vmem_xfree(). */
int vmem_alloc_exact(Vmem *vmp, uintptr_t addr, size_t size, int vmflag);

/* Makes an arena that has a source import through ximport (see
 * VmemXImport) and give spans back, once wholly free, through release
 * (NULL: spans stay while the arena lives), in place of the afunc / ffunc
 * it was made with - for vmem_init() and vmem_create() arenas alike: make
 * it with afunc vmem_alloc and its source, then call this before its first
 * allocation and before sharing it. Returns 0, or -VMEM_ERR_INVALID after
 * reporting misuse (a NULL ximport, an arena without a source, or one that
 * already holds imported spans), the arena unchanged. */
int vmem_set_ximport(Vmem *vmp, VmemXImport *ximport, VmemFree *release);

/* Gives an arena that has a source an import quantum: every import first
 * asks for whole import quanta (FreeBSD's vmem_set_import has the same),
 * and only if it cannot have them for the smallest span that serves the
 * request, so that an importer of small requests brings in large spans.
 * quantum must be a power of two at least the arena's quantum (which
 * itself means no import quantum, the default). Safe at any time; returns
 * 0, or -VMEM_ERR_INVALID after reporting misuse, the arena unchanged. */
int vmem_set_import_quantum(Vmem *vmp, size_t quantum);

/* Segment types, for vmem_size() and vmem_walk() masks. */
#define VMEM_ALLOC 0x1
#define VMEM_FREE 0x2
#define VMEM_SPAN 0x4

/* Units allocated (VMEM_ALLOC), free (VMEM_FREE), or both (total). */
size_t vmem_size(Vmem *vmp, int typemask);

/* Calls func(arg, addr, size, type) for each segment whose type is in
 * typemask, in address order, with the arena locked: func must not call
 * into the same arena. */
typedef void VmemWalker(void *arg, uintptr_t addr, size_t size, int type);
void vmem_walk(Vmem *vmp, int typemask, VmemWalker *func, void *arg);

/* True if [addr, addr + size) lies within one span of the arena. */
VMEM_C99_BOOL bool vmem_contains(Vmem *vmp, void *addr, size_t size);

/* The arena's statistics as its callers see them, exactly: resources held
 * by the quantum caches count as free, and their slabs as nothing. (The
 * `stat` member of Vmem shows the arena layer underneath: a slab there is
 * one allocation.) Returns 0, or -VMEM_ERR_INVALID after reporting misuse. */
int vmem_stat(Vmem *vmp, VmemStat *stat);

/* Returns everything the quantum caches hold to the arena (the arena also
 * does this by itself before it fails a request, and in vmem_destroy),
 * except the magazines of a CPU that is inside its cache at that moment. */
void vmem_reap(Vmem *vmp);

/* Hands every boundary-tag page that no arena is using back to the port's
 * page source, and returns how many - including pages that only became
 * unused because a page it gave back to an arena freed that arena's tags.
 * The allocator keeps tag pages when tags are freed (the next operation
 * will likely want them); call this after destroying arenas, or when
 * memory is short. Safe at any time.
 *
 * What stays, when the page source is an arena (a kernel's frame arena,
 * taking pages from the top with VM_ENDALLOC as vmem_port.h advises): that
 * arena describes each page it lends with a tag of its own, a record,
 * which lives on a tag page too. This call first takes that arena's spare
 * tags back and gives it the smaller hash table it may be waiting for
 * (frees alone never shrink one), and the library places each record on a
 * record page of the level above (three levels; the top one is recorded by
 * static tags), so a record keeps a page only while the page it records
 * stays. A record lives on a page taken before the page it records; with
 * pages taken top-down into free space, the lowest page left is the
 * newest, so it holds no record of a page left, nor the tag of a free gap
 * between pages left (the record of a page above it). Hence the bound:
 * when no other arena has tags, and the page source's arena lends nothing
 * but tag pages (and its own hash table, which shrinks as they go), took
 * them top-down (none into a gap an earlier release left), and keeps its
 * span and free-space tags on pages it did not lend (it was set up before
 * it became the page source, as at boot), every page comes back: none
 * stays. Otherwise a page stays while it holds a tag in use - another
 * arena's, or one of the page-source arena's own (spans, free gaps, other
 * allocations) - and so may each record page above it, and a page holding
 * the tag of a free gap below a page that stays. */
size_t vmem_release_pages(void);

/* What vmem_check() found wrong, if anything. */
typedef struct {
    const char *reason; /* NULL when the arena is consistent */
    uintptr_t addr;     /* the segment where the problem was seen */
    size_t size;
} VmemCheckReport;

/* Full consistency check, O(segments): spans, segment order and coverage,
 * freelists and bitmap, both free-segment indexes, the hash and the stats.
 * Returns 0 when consistent, else -VMEM_ERR_NOT_FOUND with *report (if
 * given) describing the first problem; -VMEM_ERR_INVALID after reporting
 * misuse when vmp is not an arena. Never crashes on a sane arena. */
int vmem_check(Vmem *vmp, VmemCheckReport *report);

/* ---- Misuse reports ----------------------------------------------------- */

typedef enum {
    VMEM_MISUSE_NOT_ARENA = 1,     /* arena not initialised, or destroyed */
    VMEM_MISUSE_NOT_BOOTSTRAPPED,  /* a call before vmem_bootstrap() */
    VMEM_MISUSE_BAD_ARGUMENT,      /* NULL arena, bad quantum, size 0, ... */
    VMEM_MISUSE_BAD_FLAGS,         /* conflicting policy or sleep flags */
    VMEM_MISUSE_BAD_CONSTRAINT,    /* align / phase / nocross / range invalid */
    VMEM_MISUSE_SIZE_OVERFLOW,     /* size too large to round or place */
    VMEM_MISUSE_SPAN_OVERLAP,      /* vmem_add of a range already present */
    VMEM_MISUSE_SPAN_WRAP,         /* a span past the top of the address space */
    VMEM_MISUSE_FREE_UNKNOWN,      /* address in no span of this arena */
    VMEM_MISUSE_DOUBLE_FREE,       /* address lies in a free segment */
    VMEM_MISUSE_FREE_INSIDE,       /* address inside an allocated segment */
    VMEM_MISUSE_FREE_WRONG_SIZE,   /* size differs from the allocated size */
    VMEM_MISUSE_FREE_WRONG_CALL,   /* vmem_free of an xalloc segment, or the
                                      reverse, where the caches make it matter */
    VMEM_MISUSE_DESTROY_BUSY,      /* vmem_destroy with allocated segments */
    VMEM_MISUSE_CANNOT_SLEEP       /* VM_SLEEP that would wait, port can't */
} VmemMisuseKind; /* no comma after the last: C89 and C++98 forbid it */

typedef struct {
    const char *arena;   /* arena name ("?" when there is no arena) */
    const char *call;    /* public function, e.g. "vmem_free" */
    uintptr_t addr;      /* address argument, 0 if none */
    size_t size;         /* size argument, 0 if none */
    VmemMisuseKind kind;
    const char *reason;  /* one specific sentence */
} VmemMisuse;

/* A short name for a misuse kind, e.g. "double free". */
const char *vmem_misuse_name(VmemMisuseKind kind);

#ifdef __cplusplus
}
#endif

#endif /* VMEM_H */
