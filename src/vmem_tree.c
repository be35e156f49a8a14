/*
 * vmem_tree.c - the two balanced indexes of an arena's free segments.
 *
 * Every free segment is in both trees (and in one size-class freelist,
 * which vmem_arena.c owns):
 *   by address  keyed by base, each node also knowing the largest size in
 *               its subtree (addr_max), so first-fit, next-fit, VM_ENDALLOC
 *               and constrained searches skip every subtree that cannot
 *               hold the request: O(log n) when a comfortable fit exists.
 *   by size     keyed by (size, base), so best-fit is the lower bound of
 *               the size: the truly smallest fitting segment in O(log n).
 * Keys are unique because free segments never overlap.
 *
 * Invariants, which vmem_tree_check_addr / _size verify: in-order keys
 * strictly increase; each node's height (in the tag header) is one more
 * than its taller child's, a missing child counting 0; siblings' heights
 * differ by at most one (AVL); in the address tree, addr_max is the largest
 * size in the node's subtree.
 *
 * Cost. Every change to a free segment is a walk down one tree and, often,
 * a short walk back up, so the code is written for that walk:
 * - Without parent links (the tag has no room for them), the way back up
 *   is a path stack of child-link addresses, filled on the way down. A
 *   tree of n nodes is at most 1.44 log2(n + 2) high; TREE_MAX_HEIGHT
 *   derives the exact bound, so the stack is a few hundred bytes of kernel
 *   stack and nothing here recurses except the consistency check.
 * - Each operation is written once, generic over the tree, and inlined
 *   into one copy per tree with the tree a constant: the offsets of links
 *   and heights, the key comparison and the addr_max upkeep are decided at
 *   compile time instead of at every step. Rotations, which most steps do
 *   not need, are out of line, so the walks stay small.
 * - The walk up carries only what can still change, and stops when nothing
 *   can: a subtree whose height and addr_max come out as they were leaves
 *   everything above it as it was. An insertion raises addr_max on the way
 *   down (an ancestor's largest size can only grow to the new segment's),
 *   so its way up is about heights only and ends, as AVL insertion does,
 *   after at most one rotation; a removal's usually ends within a level or
 *   two, carrying heights and addr_max separately.
 * - A segment that shrinks or grows in place (vmem_tree_refresh_addr)
 *   first recomputes its own addr_max: usually nothing else changes. When
 *   it grew, the walk down raises its ancestors; only a shrink walks back
 *   up, through the ancestors whose largest size it was.
 * - Searches are loops with an explicit stack of the nodes still to visit
 *   in key order; the common case (the first candidate fits) is one walk
 *   down.
 */
#include "vmem_internal.h"

/*
 * Deepest tree, and so the longest path a walk records. An AVL tree of
 * height h has at least N(h) nodes, N(h) = N(h-1) + N(h-2) + 1 with N(0) = 0
 * and N(1) = 1 (the Fibonacci numbers less one). Every free segment holds
 * at least one unit of a 64-bit address space and no unit is in two, so
 * there are at most 2^64 of them, and N(92) > 2^64 >= N(91): no index is
 * ever higher than 91. (A 32-bit one stops at 45; one bound serves both.)
 * vmem_tree_check_* reports anything deeper, and the walks panic rather
 * than overrun the stack should a corrupted tree be deeper still.
 */
#define TREE_MAX_HEIGHT 91
_Static_assert(sizeof(uintptr_t) <= 8, "TREE_MAX_HEIGHT is derived for address spaces of 64 bits at most");

typedef enum { BY_ADDR, BY_SIZE } TreeKind;

/* Every helper and operation below takes `kind` as a compile-time constant
 * from the entry points: forcing them inline is what folds every kind test
 * away (an out-of-line generic copy would test it at each step). */
#define TREE_INLINE static inline __attribute__((always_inline))

TREE_INLINE VmemTag **kids(VmemTag *tag, TreeKind kind)
{
    return kind == BY_ADDR ? tag_links(tag)->by_addr.child : tag_links(tag)->by_size.child;
}

TREE_INLINE VmemTag *const *ckids(const VmemTag *tag, TreeKind kind)
{
    return kind == BY_ADDR ? tag_links(tag)->by_addr.child : tag_links(tag)->by_size.child;
}

TREE_INLINE int height(const VmemTag *tag, TreeKind kind)
{
    if (tag == NULL)
        return 0;
    return kind == BY_ADDR ? tag->addr_height : tag->size_height;
}

TREE_INLINE void set_height(VmemTag *tag, TreeKind kind, int h)
{
    if (kind == BY_ADDR)
        tag->addr_height = (int8_t)h;
    else
        tag->size_height = (int8_t)h;
}

static inline size_t subtree_max(const VmemTag *tag) { return tag == NULL ? 0 : tag->u.free.addr_max; }

/* The largest size in tag's subtree, from its children's summaries. */
static inline size_t max_below(const VmemTag *tag)
{
    size_t m = tag->size, l = subtree_max(tag_links(tag)->by_addr.child[0]),
           r = subtree_max(tag_links(tag)->by_addr.child[1]);
    if (l > m)
        m = l;
    return r > m ? r : m;
}

/*
 * The size index's key, (size, base), as one integer of twice the width
 * where the compiler has one: then each step compares with a subtract-with-
 * borrow instead of branching on "same size?", a branch that loads with
 * many segments of one size mispredict (W1: 6-10% less CPU per pair than
 * the branch).
 */
#if defined(__SIZEOF_INT128__) && SIZE_MAX == UINT64_MAX && UINTPTR_MAX == UINT64_MAX
typedef unsigned __int128 SizeKey;
#define HAVE_SIZE_KEY 1
#elif SIZE_MAX == UINT32_MAX && UINTPTR_MAX == UINT32_MAX
typedef uint64_t SizeKey;
#define HAVE_SIZE_KEY 1
#else
#define HAVE_SIZE_KEY 0
#endif

/* Does the key (size, base) sort after node's? Which child of node leads
 * to it. */
TREE_INLINE int after_key(size_t size, uintptr_t base, const VmemTag *node, TreeKind kind)
{
    if (kind == BY_ADDR)
        return base > node->base;
#if HAVE_SIZE_KEY
    const unsigned shift = sizeof(size_t) * 8;
    return ((SizeKey)size << shift | base) > ((SizeKey)node->size << shift | node->base);
#else
    return (size > node->size) | ((size == node->size) & (base > node->base));
#endif
}

TREE_INLINE int after(const VmemTag *a, const VmemTag *b, TreeKind kind)
{
    return after_key(a->size, a->base, b, kind);
}

/* Lifts node's child on `side` into node's place; returns it. Only the two
 * nodes' own heights and summaries change. */
TREE_INLINE VmemTag *rotate_up(VmemTag *node, int side, TreeKind kind)
{
    VmemTag **nk = kids(node, kind);
    VmemTag *lifted = nk[side];
    VmemTag **lk = kids(lifted, kind);
    nk[side] = lk[!side];
    lk[!side] = node;
    int hn = 1 + (height(nk[0], kind) > height(nk[1], kind) ? height(nk[0], kind)
                                                           : height(nk[1], kind));
    set_height(node, kind, hn);
    int ho = height(lk[side], kind);
    set_height(lifted, kind, 1 + (hn > ho ? hn : ho));
    if (kind == BY_ADDR) {
        /* The lifted node's subtree is the one node had: same largest size. */
        lifted->u.free.addr_max = node->u.free.addr_max;
        node->u.free.addr_max = max_below(node);
    }
    return lifted;
}

/*
 * Restores the AVL property at *slot, whose child on side `heavy` is two
 * higher than the other; returns the subtree's new height. One or two
 * rotations: they keep the subtree's node set, so its addr_max, which must
 * be right before the call. Out of line, in one copy per tree: most steps
 * of a walk do not rotate, and keeping this out of them keeps the walks
 * lean.
 */
TREE_INLINE int rebalance(VmemTag **slot, int heavy, TreeKind kind)
{
    VmemTag *node = *slot;
    VmemTag **k = kids(node, kind);
    VmemTag *child = k[heavy];
    VmemTag **ck = kids(child, kind);
    if (height(ck[!heavy], kind) > height(ck[heavy], kind))
        k[heavy] = rotate_up(child, !heavy, kind);
    node = rotate_up(node, heavy, kind);
    *slot = node;
    return height(node, kind);
}

static __attribute__((noinline)) int rebalance_addr(VmemTag **slot, int heavy)
{
    return rebalance(slot, heavy, BY_ADDR);
}

static __attribute__((noinline)) int rebalance_size(VmemTag **slot, int heavy)
{
    return rebalance(slot, heavy, BY_SIZE);
}

TREE_INLINE int rebalance_at(VmemTag **slot, int heavy, TreeKind kind)
{
    return kind == BY_ADDR ? rebalance_addr(slot, heavy) : rebalance_size(slot, heavy);
}

/*
 * One step of a walk back up, at *slot: its subtrees are AVL trees whose
 * heights differ by at most two (one change below). *heights says the
 * subtree's height may have changed, *maxes its addr_max: each is
 * recomputed only while it may, and comes back saying whether it did
 * change, i.e. whether the parent needs the same. Heights that do not
 * change mean balances that do not either, so a walk that only carries
 * addr_max up never rotates.
 */
TREE_INLINE void fix(VmemTag **slot, TreeKind kind, bool *heights, bool *maxes)
{
    VmemTag *node = *slot;
    if (kind == BY_ADDR && *maxes) {
        size_t m = max_below(node);
        *maxes = m != node->u.free.addr_max;
        node->u.free.addr_max = m;
    }
    if (!*heights)
        return;
    VmemTag **k = kids(node, kind);
    int hl = height(k[0], kind), hr = height(k[1], kind);
    int old_height = height(node, kind);
    int h;
    if (hl > hr + 1 || hr > hl + 1)
        h = rebalance_at(slot, hr > hl, kind);
    else
        set_height(node, kind, h = 1 + (hl > hr ? hl : hr));
    *heights = h != old_height;
}

/* Only a corrupted tree gets here: out of line, out of the walks' way. */
static __attribute__((noreturn, cold, noinline)) void too_deep(void)
{
    vmem_port_panic("vmem: free-segment index deeper than any balanced tree");
}

static __attribute__((noreturn, cold, noinline)) void missing(void)
{
    vmem_port_panic("vmem: free segment missing from its index");
}

TREE_INLINE void tree_insert(VmemTag **root, VmemTag *tag, TreeKind kind)
{
    VmemTag **path[TREE_MAX_HEIGHT];
    VmemTag ***top = path, ***const full = path + TREE_MAX_HEIGHT;
    VmemTag **slot = root;
    VmemTag *node;
    const size_t size = tag->size;
    const uintptr_t base = tag->base;
    while ((node = *slot) != NULL) {
        if (kind == BY_ADDR && node->u.free.addr_max < size)
            node->u.free.addr_max = size;
        if (top == full)
            too_deep();
        *top++ = slot;
        slot = &kids(node, kind)[after_key(size, base, node, kind)];
    }
    kids(tag, kind)[0] = kids(tag, kind)[1] = NULL;
    set_height(tag, kind, 1);
    if (kind == BY_ADDR)
        tag->u.free.addr_max = size;
    *slot = tag;
    /* The summaries are right already: only heights can change, and once
     * one does not (or a rotation has restored it), none above does. */
    while (top != path) {
        slot = *--top;
        node = *slot;
        VmemTag **k = kids(node, kind);
        int hl = height(k[0], kind), hr = height(k[1], kind);
        if (hl > hr + 1 || hr > hl + 1) {
            (void)rebalance_at(slot, hr > hl, kind);
            return;
        }
        int h = 1 + (hl > hr ? hl : hr);
        if (h == height(node, kind))
            return;
        set_height(node, kind, h);
    }
}

TREE_INLINE void tree_remove(VmemTag **root, VmemTag *tag, TreeKind kind)
{
    VmemTag **path[TREE_MAX_HEIGHT];
    VmemTag ***top = path, ***const full = path + TREE_MAX_HEIGHT;
    VmemTag **slot = root;
    VmemTag *node;
    const size_t size = tag->size;
    const uintptr_t base = tag->base;
    while ((node = *slot) != tag) {
        if (node == NULL)
            missing();
        if (top == full)
            too_deep();
        *top++ = slot;
        slot = &kids(node, kind)[after_key(size, base, node, kind)];
    }
    VmemTag **tk = kids(tag, kind);
    /* The entry of the position whose node changes, when the successor
     * moves up: the walk back up may not stop below it. */
    VmemTag ***moved = NULL;
    if (tk[0] == NULL || tk[1] == NULL) {
        *slot = tk[tk[0] == NULL];
    } else {
        /* The successor (leftmost of the right subtree) leaves its leaf-ward
         * spot and takes tag's place, height and summary: those describe
         * the position, and fix() compares against them. */
        if (top == full)
            too_deep();
        moved = top;
        *top++ = slot;
        VmemTag **sslot = &tk[1];
        VmemTag *succ = *sslot;
        VmemTag **sk = kids(succ, kind);
        while (sk[0] != NULL) {
            if (top == full)
                too_deep();
            *top++ = sslot;
            sslot = &sk[0];
            succ = *sslot;
            sk = kids(succ, kind);
        }
        *sslot = sk[1];
        sk[0] = tk[0];
        sk[1] = tk[1];
        set_height(succ, kind, height(tag, kind));
        if (kind == BY_ADDR)
            succ->u.free.addr_max = tag->u.free.addr_max;
        *slot = succ;
        /* The first link below the moved position was tag's own. */
        if (top > moved + 1)
            moved[1] = &sk[1];
    }
    /* Once neither heights nor summaries change, nothing above does, but
     * for the moved position's summary: its node and the sizes below it
     * are not those of the tag it replaced. */
    bool heights = true, maxes = kind == BY_ADDR;
    while (top != path) {
        if (--top == moved)
            maxes = kind == BY_ADDR;
        fix(*top, kind, &heights, &maxes);
        if (!heights && !maxes) {
            if (kind == BY_SIZE || moved == NULL || top <= moved)
                return;
            top = moved + 1;
        }
    }
}

void vmem_tree_insert_addr(Vmem *vm, VmemTag *tag) { tree_insert(&vm->vm_free_by_addr, tag, BY_ADDR); }

void vmem_tree_remove_addr(Vmem *vm, VmemTag *tag) { tree_remove(&vm->vm_free_by_addr, tag, BY_ADDR); }

void vmem_tree_insert_size(Vmem *vm, VmemTag *tag) { tree_insert(&vm->vm_free_by_size, tag, BY_SIZE); }

void vmem_tree_remove_size(Vmem *vm, VmemTag *tag) { tree_remove(&vm->vm_free_by_size, tag, BY_SIZE); }

/*
 * Only the summaries change: the tag's own first, from its children. If it
 * comes out as before, nothing above changes either. If it grew past its
 * old value, every ancestor's largest size becomes at least the new one,
 * which the walk down sets directly. If it shrank, the tag was its
 * subtree's largest, and the ancestors that took their largest from it are
 * those whose addr_max is the old value: the lowest ones on the path
 * (addr_max never grows going down). Only they are recomputed, bottom up,
 * until one comes out unchanged.
 */
void vmem_tree_refresh_addr(Vmem *vm, VmemTag *tag)
{
    size_t old = tag->u.free.addr_max, now = max_below(tag);
    if (now == old)
        return;
    tag->u.free.addr_max = now;
    VmemTag *node = vm->vm_free_by_addr;
    if (now > old) {
        for (; node != tag; node = tag_links(node)->by_addr.child[tag->base > node->base]) {
            if (node == NULL)
                missing();
            if (node->u.free.addr_max < now)
                node->u.free.addr_max = now;
        }
        return;
    }
    VmemTag *path[TREE_MAX_HEIGHT];
    int depth = 0;
    for (; node != tag; node = tag_links(node)->by_addr.child[tag->base > node->base]) {
        if (node == NULL)
            missing();
        if (node->u.free.addr_max == old) {
            if (depth == TREE_MAX_HEIGHT)
                too_deep();
            path[depth++] = node;
        }
    }
    while (depth > 0) {
        node = path[--depth];
        size_t m = max_below(node);
        if (m == node->u.free.addr_max)
            return;
        node->u.free.addr_max = m;
    }
}

/* ---- Searches ------------------------------------------------------------ */

/*
 * Both searches visit candidates in key order with a stack of the nodes
 * still to come: the ancestors at which the walk went toward the start of
 * the order, each to be tried after the subtree it stepped into. At any
 * moment they lie on one root-to-leaf path, so TREE_MAX_HEIGHT bounds it.
 */

/* vmem_tree_first_fit in one direction: `near` is the child toward the
 * start of the order (1, higher addresses, when top-down), a constant in
 * each of the two copies. */
TREE_INLINE VmemTag *first_fit(VmemTag *root, const VmemRequest *req, size_t min_size, size_t budget,
                               bool *exhausted, uintptr_t *addrp, int near)
{
    VmemTag *stack[TREE_MAX_HEIGHT];
    int depth = 0;
    VmemTag *node = root;
    uintptr_t addr;
    for (;;) {
        /* Lower subtrees end before node->base; higher ones start after its
         * last unit: either may lie wholly outside [min, max_last]. Only
         * subtrees that hold a large enough segment are entered. */
        while (node != NULL && node->u.free.addr_max >= min_size) {
            if (depth == TREE_MAX_HEIGHT)
                too_deep();
            stack[depth++] = node;
            bool near_reachable = near ? tag_last(node) < req->max_last : node->base > req->min;
            node = near_reachable ? tag_links(node)->by_addr.child[near] : NULL;
        }
        if (depth == 0)
            return NULL;
        node = stack[--depth];
        if (node->size >= min_size) {
            if (vmem_fit_in(req, node->base, node->size, &addr)) {
                *addrp = addr;
                return node;
            }
            if (budget != SIZE_MAX && --budget == 0) {
                *exhausted = true;
                return NULL;
            }
        }
        bool far_reachable = near ? node->base > req->min : tag_last(node) < req->max_last;
        node = far_reachable ? tag_links(node)->by_addr.child[!near] : NULL;
    }
}

VmemTag *vmem_tree_first_fit(Vmem *vm, const VmemRequest *req, size_t min_size, size_t budget,
                             bool *exhausted, uintptr_t *addrp)
{
    *exhausted = false;
    if (req->top_down)
        return first_fit(vm->vm_free_by_addr, req, min_size, budget, exhausted, addrp, 1);
    return first_fit(vm->vm_free_by_addr, req, min_size, budget, exhausted, addrp, 0);
}

VmemTag *vmem_tree_best_fit(Vmem *vm, const VmemRequest *req, size_t min_size, size_t budget,
                            bool *exhausted, uintptr_t *addrp)
{
    VmemTag *stack[TREE_MAX_HEIGHT];
    int depth = 0;
    VmemTag *node = vm->vm_free_by_size;
    uintptr_t addr;
    *exhausted = false;
    /* To the lower bound of min_size: everything smaller is on the left. */
    while (node != NULL) {
        if (node->size < min_size) {
            node = tag_links(node)->by_size.child[1];
        } else {
            if (depth == TREE_MAX_HEIGHT)
                too_deep();
            stack[depth++] = node;
            node = tag_links(node)->by_size.child[0];
        }
    }
    while (depth > 0) {
        node = stack[--depth];
        if (vmem_fit_in(req, node->base, node->size, &addr)) {
            *addrp = addr;
            return node;
        }
        if (budget != SIZE_MAX && --budget == 0) {
            *exhausted = true;
            return NULL;
        }
        for (node = tag_links(node)->by_size.child[1]; node != NULL;
             node = tag_links(node)->by_size.child[0]) {
            if (depth == TREE_MAX_HEIGHT)
                too_deep();
            stack[depth++] = node;
        }
    }
    return NULL;
}

VmemTag *vmem_tree_find_free(Vmem *vm, uintptr_t addr)
{
    VmemTag *node = vm->vm_free_by_addr;
    while (node != NULL) {
        if (addr < node->base)
            node = tag_links(node)->by_addr.child[0];
        else if (addr > tag_last(node))
            node = tag_links(node)->by_addr.child[1];
        else
            return node;
    }
    return NULL;
}

/* ---- Verification, for vmem_check ---------------------------------------- */

typedef struct {
    TreeKind kind;
    size_t count;
    const VmemTag *prev; /* previous node in key order */
    const char *why;
} TreeCheck;

/* Returns the node's height, or -1 after recording a problem in check.
 * Recursive, to the tree's height: it refuses to go deeper than any walk
 * could (TREE_MAX_HEIGHT), which is what makes the walks' stacks safe. */
static int check_subtree(const VmemTag *node, TreeCheck *check, const VmemTag **bad, int depth)
{
    if (node == NULL)
        return 0;
    if (depth >= TREE_MAX_HEIGHT) {
        check->why = "free-segment index deeper than any balanced tree";
        *bad = node;
        return -1;
    }
    VmemTag *const *k = ckids(node, check->kind);
    int hl = check_subtree(k[0], check, bad, depth + 1);
    if (hl < 0)
        return -1;
    if (node->type != SEG_FREE) {
        check->why = "free-segment index holds a segment that is not free";
        *bad = node;
        return -1;
    }
    if (check->prev != NULL && !after(node, check->prev, check->kind)) {
        check->why = "free-segment index out of order";
        *bad = node;
        return -1;
    }
    check->prev = node;
    check->count++;
    int hr = check_subtree(k[1], check, bad, depth + 1);
    if (hr < 0)
        return -1;
    int h = 1 + (hl > hr ? hl : hr);
    if (hl - hr > 1 || hr - hl > 1 || h != height(node, check->kind)) {
        check->why = "free-segment index unbalanced or with a wrong height";
        *bad = node;
        return -1;
    }
    if (check->kind == BY_ADDR && max_below(node) != node->u.free.addr_max) {
        check->why = "address index has a wrong largest-size summary";
        *bad = node;
        return -1;
    }
    return h;
}

static const VmemTag *check_tree(const VmemTag *root, TreeKind kind, size_t *count,
                                 const char **why)
{
    TreeCheck check = {kind, 0, NULL, NULL};
    const VmemTag *bad = NULL;
    check_subtree(root, &check, &bad, 0);
    *count = check.count;
    *why = check.why;
    return bad;
}

const VmemTag *vmem_tree_check_addr(const Vmem *vm, size_t *count, const char **why)
{
    return check_tree(vm->vm_free_by_addr, BY_ADDR, count, why);
}

const VmemTag *vmem_tree_check_size(const Vmem *vm, size_t *count, const char **why)
{
    return check_tree(vm->vm_free_by_size, BY_SIZE, count, why);
}
