/*
 * vmem_tree.c - the two indexes of an arena's free segments, kept from a
 * request's first need (vmem_segment.c):
 *   by address  an AVL tree keyed by base; each node also holds addr_max,
 *               the largest size in its subtree, so that the address-order
 *               searches (first-fit, VM_ENDALLOC, constrained requests)
 *               skip every subtree that cannot hold the request;
 *   by size     a list per size for segments of 1 to VMEM_EXACT_SIZES
 *               quanta, with a bitmap of the lists in use, and an AVL tree
 *               keyed by (size, base) for the larger ones: best-fit's
 *               common small sizes take a find-first-set and a list head
 *               instead of a walk down the tree, and every split and merge
 *               among them a list push or unlink instead of a rebalance.
 * Keys are unique, because free segments never overlap.
 *
 * Invariants, which vmem_tree_check_addr / vmem_size_check verify: keys
 * increase in order; a node's height (in the tag header) is one more than
 * its taller child's, an empty subtree's being 0; siblings' heights differ
 * by at most one; addr_max is the largest size in the node's subtree; a
 * free segment of i + 1 quanta (i < VMEM_EXACT_SIZES) is on vm_exact[i],
 * whose bit in vm_exact_map is set exactly when the list is not empty.
 *
 * A tag has no parent link, so a walk that changes a tree records the
 * child links it took on a stack and comes back up along it (retrace),
 * rebalancing and recomputing heights and addr_max until a subtree comes
 * out with the height and addr_max it had: nothing above it changes then.
 * The code is generic over the tree; each entry point is flattened, so that
 * the tree is a constant in its copy. Only the consistency check recurses;
 * every stack holds TREE_MAX_HEIGHT entries, and a walk that would go
 * deeper (only a corrupted tree can) panics instead of overrunning it.
 */
#include "vmem_internal.h"

/* An AVL tree of height h has at least F(h+2) - 1 nodes (F Fibonacci).
 * Free segments are disjoint and non-empty, so there are fewer than 2^64
 * of them, and F(93) - 1 > 2^64: no tree is higher than 91. */
#define TREE_MAX_HEIGHT 91
_Static_assert(sizeof(uintptr_t) <= 8, "TREE_MAX_HEIGHT is derived for 64-bit addresses at most");

#define TOO_DEEP "free-segment index deeper than any balanced tree"
#define PUSH(stack, depth, entry)                                                                  \
    ((depth) == TREE_MAX_HEIGHT ? vmem_port_panic("vmem: " TOO_DEEP)                              \
                                : (void)((stack)[(depth)++] = (entry)))

enum { BY_ADDR, BY_SIZE };

static inline VmemTag **kids(const VmemTag *tag, int tree)
{
    return tree == BY_ADDR ? tag_links(tag)->by_addr.child : tag_links(tag)->by_size.child;
}

static inline int8_t *height_of(VmemTag *tag, int tree)
{
    return tree == BY_ADDR ? &tag->bt_addr_height : &tag->bt_size_height;
}

static inline int height(VmemTag *tag, int tree) { return tag == NULL ? 0 : *height_of(tag, tree); }

static inline size_t max_of(const VmemTag *tag) { return tag == NULL ? 0 : tag->bt_u.free.addr_max; }

/* The largest size in tag's address subtree, from its children's. */
static inline size_t max_below(const VmemTag *tag)
{
    const VmemTreeLink *k = &tag_links(tag)->by_addr;
    size_t m = tag->bt_size, l = max_of(k->child[0]), r = max_of(k->child[1]);
    m = l > m ? l : m;
    return r > m ? r : m;
}

/* The size index's key, (size, base), as one integer of twice the width
 * where there is one: comparing it is a subtract-with-borrow instead of a
 * branch on "same size?", which many segments of one size make
 * unpredictable. */
#if defined(__SIZEOF_INT128__) && SIZE_MAX == UINT64_MAX && UINTPTR_MAX == UINT64_MAX
#define SIZE_KEY(size, base) ((unsigned __int128)(size) << 64 | (base))
#elif SIZE_MAX == UINT32_MAX && UINTPTR_MAX == UINT32_MAX
#define SIZE_KEY(size, base) ((uint64_t)(size) << 32 | (base))
#endif

/* Which child of node leads toward the key (size, base). */
static inline int after(size_t size, uintptr_t base, const VmemTag *node, int tree)
{
    if (tree == BY_ADDR)
        return base > node->bt_base;
#ifdef SIZE_KEY
    return SIZE_KEY(size, base) > SIZE_KEY(node->bt_size, node->bt_base);
#else
    return size > node->size || (size == node->size && base > node->base);
#endif
}

/* Gives node the height of one over children of heights hl and hr. */
static inline int set_height(VmemTag *node, int tree, int hl, int hr)
{
    return *height_of(node, tree) = (int8_t)(1 + (hl > hr ? hl : hr));
}

/* Recomputes node's height, and addr_max, from its children's. */
static void update(VmemTag *node, int tree)
{
    VmemTag **k = kids(node, tree);
    set_height(node, tree, height(k[0], tree), height(k[1], tree));
    if (tree == BY_ADDR)
        node->bt_u.free.addr_max = max_below(node);
}

/* Lifts node's child on `side` into node's place; returns it. */
static VmemTag *rotate(VmemTag *node, int side, int tree)
{
    VmemTag **nk = kids(node, tree), *up = nk[side], **uk = kids(up, tree);
    nk[side] = uk[!side];
    uk[!side] = node;
    update(node, tree);
    update(up, tree);
    return up;
}

/*
 * One step up, at *slot, whose children are AVL trees differing in height
 * by at most two. *maxes says that its addr_max may have changed, *heights
 * that its height may (and its balance with it): each is redone only then,
 * and comes back saying whether it did change, i.e. whether the parent
 * must be redone too.
 */
static void fix(VmemTag **slot, int tree, bool *heights, bool *maxes)
{
    VmemTag *node = *slot;
    if (*maxes) {
        size_t m = max_below(node);
        *maxes = m != node->bt_u.free.addr_max;
        node->bt_u.free.addr_max = m;
    }
    if (!*heights)
        return;
    VmemTag **k = kids(node, tree);
    int old_height = (int)*height_of(node, tree), hl = height(k[0], tree), hr = height(k[1], tree);
    if (hl <= hr + 1 && hr <= hl + 1) {
        *heights = set_height(node, tree, hl, hr) != old_height;
        return;
    }
    int heavy = hr > hl;
    VmemTag **ck = kids(k[heavy], tree);
    if (height(ck[!heavy], tree) > height(ck[heavy], tree))
        k[heavy] = rotate(k[heavy], !heavy, tree);
    *slot = node = rotate(node, heavy, tree);
    *heights = height(node, tree) != old_height;
}

/* Fixes the recorded slots bottom up until nothing changes, but redoes
 * addr_max from path[moved] up whatever happened below it. */
static void retrace(VmemTag **path[], int depth, int moved, int tree, bool heights, bool maxes)
{
    while (depth-- > 0) {
        if (depth == moved)
            maxes = tree == BY_ADDR;
        fix(path[depth], tree, &heights, &maxes);
        if (!heights && !maxes) {
            if (depth <= moved)
                return;
            depth = moved + 1;
        }
    }
}

static void tree_insert(VmemTag **root, VmemTag *tag, int tree)
{
    VmemTag **path[TREE_MAX_HEIGHT], **slot = root, *node;
    int depth = 0;
    const size_t size = tag->bt_size;
    const uintptr_t base = tag->bt_base;
    /* Raising addr_max on the way down leaves the way up to heights. */
    for (; (node = *slot) != NULL; slot = &kids(node, tree)[after(size, base, node, tree)]) {
        if (tree == BY_ADDR && node->bt_u.free.addr_max < size)
            node->bt_u.free.addr_max = size;
        PUSH(path, depth, slot);
    }
    kids(tag, tree)[0] = kids(tag, tree)[1] = NULL;
    *height_of(tag, tree) = 1;
    if (tree == BY_ADDR)
        tag->bt_u.free.addr_max = size;
    *slot = tag;
    retrace(path, depth, TREE_MAX_HEIGHT, tree, true, false);
}

static void tree_remove(VmemTag **root, VmemTag *tag, int tree)
{
    VmemTag **path[TREE_MAX_HEIGHT], **slot = root, *node;
    int depth = 0, moved = TREE_MAX_HEIGHT;
    const size_t size = tag->bt_size;
    const uintptr_t base = tag->bt_base;
    for (; (node = *slot) != tag; slot = &kids(node, tree)[after(size, base, node, tree)]) {
        if (node == NULL)
            vmem_port_panic("vmem: free segment missing from its index");
        PUSH(path, depth, slot);
    }
    VmemTag **k = kids(tag, tree);
    if (k[0] == NULL || k[1] == NULL) {
        *slot = k[k[0] == NULL];
    } else {
        /* The successor, leftmost on the right, takes tag's place with the
         * position's height and addr_max, which the retrace compares with;
         * it may not stop below the position, whose sizes lost tag's. */
        moved = depth;
        PUSH(path, depth, slot);
        VmemTag **succ_slot = &k[1];
        for (; kids(*succ_slot, tree)[0] != NULL; succ_slot = &kids(*succ_slot, tree)[0])
            PUSH(path, depth, succ_slot);
        VmemTag *succ = *succ_slot, **sk = kids(succ, tree);
        *succ_slot = sk[1];
        sk[0] = k[0];
        sk[1] = k[1];
        *height_of(succ, tree) = *height_of(tag, tree);
        if (tree == BY_ADDR)
            succ->bt_u.free.addr_max = tag->bt_u.free.addr_max;
        *slot = succ;
        if (depth > moved + 1)
            path[moved + 1] = &sk[1]; /* was tag's own right link */
    }
    retrace(path, depth, moved, tree, true, tree == BY_ADDR);
}

__attribute__((flatten)) void vmem_tree_insert_addr(Vmem *vm, VmemTag *tag)
{
    tree_insert(&vm->vm_free_by_addr, tag, BY_ADDR);
}

__attribute__((flatten)) void vmem_tree_remove_addr(Vmem *vm, VmemTag *tag)
{
    tree_remove(&vm->vm_free_by_addr, tag, BY_ADDR);
}

/* ---- The size index's small sizes: exact-size lists ------------------------ */

/* A listed segment's links in the size tree, which it is not in, serve as
 * its list links: both are in one index, never in two. */
#define EXACT_NEXT 0
#define EXACT_PREV 1
_Static_assert(VMEM_EXACT_SIZES >= 1 && VMEM_EXACT_SIZES <= 64, "vm_exact_map has 64 bits");

static inline VmemTag **exact_links(const VmemTag *tag) { return tag_links(tag)->by_size.child; }

/* The list for a free segment of `size` (a multiple of the quantum), or
 * VMEM_EXACT_SIZES: the tree. */
static inline unsigned exact_list(const Vmem *vm, size_t size)
{
    size_t quanta = size >> vm->vm_quantum_shift;
    VMEM_ASSERT(quanta != 0);
    return quanta <= VMEM_EXACT_SIZES ? (unsigned)quanta - 1 : VMEM_EXACT_SIZES;
}

__attribute__((flatten)) void vmem_size_insert(Vmem *vm, VmemTag *tag)
{
    unsigned i = exact_list(vm, tag->bt_size);
    if (i == VMEM_EXACT_SIZES) {
        tree_insert(&vm->vm_free_by_size, tag, BY_SIZE);
        return;
    }
    VmemTag *head = vm->vm_exact[i], **links = exact_links(tag);
    links[EXACT_NEXT] = head;
    links[EXACT_PREV] = NULL;
    if (head != NULL)
        exact_links(head)[EXACT_PREV] = tag;
    vm->vm_exact[i] = tag;
    vm->vm_exact_map |= (uint64_t)1 << i;
}

__attribute__((flatten)) void vmem_size_remove(Vmem *vm, VmemTag *tag)
{
    unsigned i = exact_list(vm, tag->bt_size);
    if (i == VMEM_EXACT_SIZES) {
        tree_remove(&vm->vm_free_by_size, tag, BY_SIZE);
        return;
    }
    VmemTag **links = exact_links(tag), *next = links[EXACT_NEXT], *prev = links[EXACT_PREV];
    if (next != NULL)
        exact_links(next)[EXACT_PREV] = prev;
    if (prev != NULL)
        exact_links(prev)[EXACT_NEXT] = next;
    else if ((vm->vm_exact[i] = next) == NULL)
        vm->vm_exact_map &= ~((uint64_t)1 << i);
}

/*
 * tag's size changed in place: only addr_max changes, from tag up, and only
 * at the ancestors whose addr_max is at most the larger of tag's old and
 * new one: the lowest on the path, since addr_max never grows going down.
 * They are recomputed bottom up until one comes out unchanged.
 */
void vmem_tree_refresh_addr(Vmem *vm, VmemTag *tag)
{
    size_t old = tag->bt_u.free.addr_max, now = max_below(tag), reach = now > old ? now : old;
    if (now == old)
        return;
    tag->bt_u.free.addr_max = now;
    VmemTag *path[TREE_MAX_HEIGHT], *node = vm->vm_free_by_addr;
    int depth = 0;
    for (; node != tag; node = tag_links(node)->by_addr.child[tag->bt_base > node->bt_base]) {
        if (node == NULL)
            vmem_port_panic("vmem: free segment missing from its index");
        if (node->bt_u.free.addr_max <= reach)
            PUSH(path, depth, node);
    }
    while (depth-- > 0) {
        node = path[depth];
        if ((now = max_below(node)) == node->bt_u.free.addr_max)
            return;
        node->bt_u.free.addr_max = now;
    }
}

/* ---- Searches ------------------------------------------------------------ */

/* Counts a candidate that did not fit against a search's budget (SIZE_MAX:
 * none); true, with *exhausted set, when that was the last one allowed. */
static inline bool budget_spent(size_t *budget, bool *exhausted)
{
    if (*budget == SIZE_MAX || --*budget != 0)
        return false;
    *exhausted = true;
    return true;
}

/*
 * Both searches visit candidates in key order, keeping on a stack the
 * nodes still to come: the ancestors at which the walk went toward the
 * start of the order, each tried after the subtree it stepped into. They
 * lie on one root-to-leaf path, so TREE_MAX_HEIGHT bounds the stack.
 */

/* vmem_tree_first_fit in one direction: near is the child toward the
 * start of the order (1 when top-down), a constant in each copy. */
static inline __attribute__((always_inline)) VmemTag *
first_fit(VmemTag *node, const VmemRequest *req, size_t min_size, size_t budget, bool *exhausted,
          uintptr_t *addrp, int near)
{
    VmemTag *stack[TREE_MAX_HEIGHT];
    int depth = 0;
    for (;;) {
        /* Lower subtrees end before node->base, higher ones start after its
         * last unit: either may lie wholly outside [min, max_last]. */
        while (node != NULL && node->bt_u.free.addr_max >= min_size) {
            PUSH(stack, depth, node);
            bool reachable = near ? tag_last(node) < req->max_last : node->bt_base > req->min;
            node = reachable ? tag_links(node)->by_addr.child[near] : NULL;
        }
        if (depth == 0)
            return NULL;
        node = stack[--depth];
        if (node->bt_size >= min_size) {
            if (vmem_fit_in(req, node->bt_base, node->bt_size, addrp))
                return node;
            if (budget_spent(&budget, exhausted))
                return NULL;
        }
        bool reachable = near ? node->bt_base > req->min : tag_last(node) < req->max_last;
        node = reachable ? tag_links(node)->by_addr.child[!near] : NULL;
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

/* The size tree's part of vmem_size_best_fit: its segments in key order. */
static VmemTag *tree_best_fit(VmemTag *node, const VmemRequest *req, size_t min_size,
                              size_t budget, bool *exhausted, uintptr_t *addrp)
{
    VmemTag *stack[TREE_MAX_HEIGHT];
    int depth = 0;
    for (;;) {
        /* Sizes below min_size are on the left of every larger one. */
        while (node != NULL) {
            if (node->bt_size < min_size) {
                node = tag_links(node)->by_size.child[1];
                continue;
            }
            PUSH(stack, depth, node);
            node = tag_links(node)->by_size.child[0];
        }
        if (depth == 0)
            return NULL;
        node = stack[--depth];
        if (vmem_fit_in(req, node->bt_base, node->bt_size, addrp))
            return node;
        if (budget_spent(&budget, exhausted))
            return NULL;
        node = tag_links(node)->by_size.child[1];
    }
}

/* The exact lists from min_size's up, each in list order, then the tree:
 * every listed segment is smaller than every segment in the tree. */
VmemTag *vmem_size_best_fit(Vmem *vm, const VmemRequest *req, size_t min_size, size_t budget,
                            bool *exhausted, uintptr_t *addrp)
{
    *exhausted = false;
    size_t first = (min_size - 1) >> vm->vm_quantum_shift; /* holds ceil(min_size / q) quanta */
    uint64_t lists = first < VMEM_EXACT_SIZES ? vm->vm_exact_map >> first << first : 0;
    for (; lists != 0; lists &= lists - 1) {
        VmemTag *tag = vm->vm_exact[ctz64(lists)];
        for (; tag != NULL; tag = exact_links(tag)[EXACT_NEXT]) {
            if (vmem_fit_in(req, tag->bt_base, tag->bt_size, addrp))
                return tag;
            if (budget_spent(&budget, exhausted))
                return NULL;
        }
    }
    return tree_best_fit(vm->vm_free_by_size, req, min_size, budget, exhausted, addrp);
}

VmemTag *vmem_tree_find_free(Vmem *vm, uintptr_t addr)
{
    VmemTag *node = vm->vm_free_by_addr;
    while (node != NULL && (addr < node->bt_base || addr > tag_last(node)))
        node = tag_links(node)->by_addr.child[addr > node->bt_base];
    return node;
}

/* ---- Verification, for vmem_check ---------------------------------------- */

typedef struct {
    int tree;
    size_t count;
    VmemTag *prev; /* the previous node in key order */
    VmemTag *bad;
    const char *why;
} TreeCheck;

static int check_failed(TreeCheck *check, VmemTag *node, const char *why)
{
    check->bad = node;
    check->why = why;
    return -1;
}

/* The subtree's height, or -1 once a problem is recorded. It refuses to go
 * deeper than any walk could, which is what keeps the walks' stacks safe. */
static int check_subtree(VmemTag *node, TreeCheck *check, int depth)
{
    int tree = check->tree, hl, hr;
    if (node == NULL)
        return 0;
    if (depth >= TREE_MAX_HEIGHT)
        return check_failed(check, node, TOO_DEEP);
    if ((hl = check_subtree(kids(node, tree)[0], check, depth + 1)) < 0)
        return -1;
    if (node->bt_type != SEG_FREE)
        return check_failed(check, node, "free-segment index holds a segment that is not free");
    if (check->prev != NULL && !after(node->bt_size, node->bt_base, check->prev, tree))
        return check_failed(check, node, "free-segment index out of order");
    check->prev = node;
    check->count++;
    if ((hr = check_subtree(kids(node, tree)[1], check, depth + 1)) < 0)
        return -1;
    if (hl > hr + 1 || hr > hl + 1 || height(node, tree) != 1 + (hl > hr ? hl : hr))
        return check_failed(check, node, "free-segment index unbalanced or with a wrong height");
    if (tree == BY_ADDR && max_below(node) != node->bt_u.free.addr_max)
        return check_failed(check, node, "address index has a wrong largest-size summary");
    return height(node, tree);
}

static const VmemTag *check_tree(VmemTag *root, int tree, size_t *count, const char **why)
{
    TreeCheck check;
    /* Member by member: an initializer becomes a call to memset on some
     * targets, and the library calls nothing but the port. */
    check.tree = tree;
    check.count = 0;
    check.prev = check.bad = NULL;
    check.why = NULL;
    check_subtree(root, &check, 0);
    *count = check.count;
    *why = check.why;
    return check.bad;
}

const VmemTag *vmem_tree_check_addr(const Vmem *vm, size_t *count, const char **why)
{
    return check_tree(vm->vm_free_by_addr, BY_ADDR, count, why);
}

const VmemTag *vmem_size_check(const Vmem *vm, size_t *count, const char **why)
{
    const VmemTag *bad = check_tree(vm->vm_free_by_size, BY_SIZE, count, why);
    if (bad != NULL || *why != NULL)
        return bad;
    /* The tree's smallest segment must be too large for any list. */
    const VmemTag *node = vm->vm_free_by_size;
    while (node != NULL && tag_links(node)->by_size.child[0] != NULL)
        node = tag_links(node)->by_size.child[0];
    if (node != NULL && exact_list(vm, node->bt_size) != VMEM_EXACT_SIZES) {
        *why = "size tree holds a segment small enough for an exact-size list";
        return node;
    }
    for (unsigned i = 0; i < VMEM_EXACT_SIZES; i++) {
        if (((vm->vm_exact_map >> i & 1) != 0) != (vm->vm_exact[i] != NULL)) {
            *why = "exact-size list bitmap disagrees with the lists";
            return vm->vm_exact[i];
        }
        const VmemTag *prev = NULL;
        for (VmemTag *tag = vm->vm_exact[i]; tag != NULL; tag = exact_links(tag)[EXACT_NEXT]) {
            if (*count > vm->vm_nsegs) {
                *why = "exact-size lists hold more than the segments (a cycle?)";
                return tag;
            }
            if (tag->bt_type != SEG_FREE || exact_list(vm, tag->bt_size) != i) {
                *why = "exact-size list member not free or in the wrong list";
                return tag;
            }
            if (exact_links(tag)[EXACT_PREV] != prev) {
                *why = "exact-size list back link broken";
                return tag;
            }
            prev = tag;
            ++*count;
        }
    }
    return NULL;
}
