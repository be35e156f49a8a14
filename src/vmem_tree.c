/*
 * vmem_tree.c - the two balanced indexes of an arena's free segments.
 *
 * Every free segment is in both trees (and in one power-of-two freelist,
 * which vmem_arena.c owns):
 *   by address  keyed by base, each node also knowing the largest size in
 *               its subtree (addr_max), so first-fit, next-fit, VM_ENDALLOC
 *               and constrained searches skip every subtree that cannot
 *               hold the request: O(log n) when a comfortable fit exists.
 *   by size     keyed by (size, base), so best-fit is the lower bound of
 *               the size: the truly smallest fitting segment in O(log n).
 *
 * Both are AVL trees: heights differ by at most one between siblings, so a
 * tree of n nodes is at most 1.44 log2(n + 2) deep. That bound is what
 * makes the recursion here safe on a kernel stack (under 100 frames even
 * for 2^64 segments; about 30 for a million). Keys are unique because free
 * segments never overlap.
 */
#include "vmem_internal.h"

typedef enum { BY_ADDR, BY_SIZE } TreeKind;

static VmemTreeLink *link_of(VmemTag *tag, TreeKind kind)
{
    return kind == BY_ADDR ? &tag->u.free.by_addr : &tag->u.free.by_size;
}

static const VmemTreeLink *clink_of(const VmemTag *tag, TreeKind kind)
{
    return kind == BY_ADDR ? &tag->u.free.by_addr : &tag->u.free.by_size;
}

static int height(const VmemTag *tag, TreeKind kind)
{
    if (tag == NULL)
        return 0;
    return kind == BY_ADDR ? tag->addr_height : tag->size_height;
}

static size_t subtree_max(const VmemTag *tag) { return tag == NULL ? 0 : tag->u.free.addr_max; }

static int compare(const VmemTag *a, const VmemTag *b, TreeKind kind)
{
    if (kind == BY_SIZE && a->size != b->size)
        return a->size < b->size ? -1 : 1;
    if (a->base != b->base)
        return a->base < b->base ? -1 : 1;
    return 0;
}

/* Recomputes what a node derives from its children. */
static void update(VmemTag *tag, TreeKind kind)
{
    VmemTreeLink *link = link_of(tag, kind);
    int hl = height(link->child[0], kind), hr = height(link->child[1], kind);
    int8_t h = (int8_t)(1 + (hl > hr ? hl : hr));
    if (kind == BY_ADDR) {
        size_t m = tag->size;
        if (subtree_max(link->child[0]) > m)
            m = subtree_max(link->child[0]);
        if (subtree_max(link->child[1]) > m)
            m = subtree_max(link->child[1]);
        tag->u.free.addr_max = m;
        tag->addr_height = h;
    } else {
        tag->size_height = h;
    }
}

/* Lifts tag's child on `side` above it; returns the new subtree root. */
static VmemTag *rotate_up(VmemTag *tag, int side, TreeKind kind)
{
    VmemTag *lifted = link_of(tag, kind)->child[side];
    link_of(tag, kind)->child[side] = link_of(lifted, kind)->child[!side];
    link_of(lifted, kind)->child[!side] = tag;
    update(tag, kind);
    update(lifted, kind);
    return lifted;
}

static VmemTag *rebalance(VmemTag *tag, TreeKind kind)
{
    update(tag, kind);
    VmemTreeLink *link = link_of(tag, kind);
    int balance = height(link->child[0], kind) - height(link->child[1], kind);
    if (balance > 1 || balance < -1) {
        int heavy = balance > 1 ? 0 : 1;
        VmemTag *child = link->child[heavy];
        VmemTreeLink *clink = link_of(child, kind);
        if (height(clink->child[!heavy], kind) > height(clink->child[heavy], kind))
            link->child[heavy] = rotate_up(child, !heavy, kind);
        tag = rotate_up(tag, heavy, kind);
    }
    return tag;
}

/*
 * One insertion or removal. Once a subtree comes back with the same root,
 * height and summary it had, nothing above it can change: `settled` stops
 * the walk back up from recomputing every ancestor, which is most of the
 * cost of an update deep in the tree.
 */
typedef struct {
    TreeKind kind;
    bool settled;
} TreeOp;

/* rebalance(), noting whether the subtree above can stop caring. */
static VmemTag *rebalance_op(VmemTag *tag, TreeOp *op)
{
    int old_height = height(tag, op->kind);
    size_t old_max = op->kind == BY_ADDR ? tag->u.free.addr_max : 0;
    VmemTag *root = rebalance(tag, op->kind);
    if (root == tag && height(root, op->kind) == old_height &&
        (op->kind != BY_ADDR || root->u.free.addr_max == old_max))
        op->settled = true;
    return root;
}

static VmemTag *insert(VmemTag *root, VmemTag *tag, TreeOp *op)
{
    if (root == NULL) {
        link_of(tag, op->kind)->child[0] = NULL;
        link_of(tag, op->kind)->child[1] = NULL;
        update(tag, op->kind);
        return tag;
    }
    VmemTreeLink *link = link_of(root, op->kind);
    int side = compare(tag, root, op->kind) > 0;
    link->child[side] = insert(link->child[side], tag, op);
    return op->settled ? root : rebalance_op(root, op);
}

static VmemTag *remove_min(VmemTag *root, VmemTag **min_out, TreeOp *op)
{
    VmemTreeLink *link = link_of(root, op->kind);
    if (link->child[0] == NULL) {
        *min_out = root;
        return link->child[1];
    }
    link->child[0] = remove_min(link->child[0], min_out, op);
    return op->settled ? root : rebalance_op(root, op);
}

static VmemTag *remove_node(VmemTag *root, VmemTag *tag, TreeOp *op)
{
    if (root == NULL)
        vmem_port_panic("vmem: free segment missing from its index");
    VmemTreeLink *link = link_of(root, op->kind);
    if (root == tag) {
        if (link->child[0] == NULL)
            return link->child[1];
        if (link->child[1] == NULL)
            return link->child[0];
        /* The successor takes the removed node's place: whatever the walk
         * inside the right subtree concluded, this position changed. */
        VmemTag *successor;
        VmemTag *right = remove_min(link->child[1], &successor, op);
        op->settled = false;
        link_of(successor, op->kind)->child[0] = link->child[0];
        link_of(successor, op->kind)->child[1] = right;
        return rebalance(successor, op->kind);
    }
    int side = compare(tag, root, op->kind) > 0;
    link->child[side] = remove_node(link->child[side], tag, op);
    return op->settled ? root : rebalance_op(root, op);
}

/* Recomputes the summaries on the path to tag; returns false once one
 * comes out unchanged, since nothing above it can change either. */
static bool refresh(VmemTag *root, VmemTag *tag)
{
    if (root == NULL)
        vmem_port_panic("vmem: free segment missing from its index");
    if (root != tag && !refresh(root->u.free.by_addr.child[compare(tag, root, BY_ADDR) > 0], tag))
        return false;
    size_t old_max = root->u.free.addr_max;
    update(root, BY_ADDR);
    return root == tag || root->u.free.addr_max != old_max;
}

void vmem_tree_insert_addr(Vmem *vm, VmemTag *tag)
{
    TreeOp op = {BY_ADDR, false};
    vm->vm_free_by_addr = insert(vm->vm_free_by_addr, tag, &op);
}

void vmem_tree_remove_addr(Vmem *vm, VmemTag *tag)
{
    TreeOp op = {BY_ADDR, false};
    vm->vm_free_by_addr = remove_node(vm->vm_free_by_addr, tag, &op);
}

void vmem_tree_refresh_addr(Vmem *vm, VmemTag *tag) { (void)refresh(vm->vm_free_by_addr, tag); }

void vmem_tree_insert_size(Vmem *vm, VmemTag *tag)
{
    TreeOp op = {BY_SIZE, false};
    vm->vm_free_by_size = insert(vm->vm_free_by_size, tag, &op);
}

void vmem_tree_remove_size(Vmem *vm, VmemTag *tag)
{
    TreeOp op = {BY_SIZE, false};
    vm->vm_free_by_size = remove_node(vm->vm_free_by_size, tag, &op);
}

/* ---- Searches ------------------------------------------------------------ */

typedef struct {
    const VmemRequest *req;
    size_t min_size;
    size_t budget;
    bool exhausted;
    uintptr_t addr;
} FitSearch;

static VmemTag *first_fit(VmemTag *node, FitSearch *search)
{
    const VmemRequest *req = search->req;
    if (node == NULL || node->u.free.addr_max < search->min_size)
        return NULL;
    VmemTreeLink *link = &node->u.free.by_addr;
    /* Lower subtrees end before node->base; higher ones start after its
     * last unit: either may lie wholly outside [min, max_last]. */
    bool lower_reachable = node->base > req->min;
    bool upper_reachable = tag_last(node) < req->max_last;
    int near = req->top_down ? 1 : 0;
    bool near_reachable = req->top_down ? upper_reachable : lower_reachable;
    bool far_reachable = req->top_down ? lower_reachable : upper_reachable;
    VmemTag *found;
    if (near_reachable && (found = first_fit(link->child[near], search)) != NULL)
        return found;
    if (search->exhausted)
        return NULL;
    if (node->size >= search->min_size) {
        if (vmem_fit_in(req, node->base, node->size, &search->addr))
            return node;
        if (search->budget != SIZE_MAX && --search->budget == 0) {
            search->exhausted = true;
            return NULL;
        }
    }
    if (far_reachable)
        return first_fit(link->child[!near], search);
    return NULL;
}

VmemTag *vmem_tree_first_fit(Vmem *vm, const VmemRequest *req, size_t min_size, size_t budget,
                             bool *exhausted, uintptr_t *addrp)
{
    FitSearch search = {req, min_size, budget, false, 0};
    VmemTag *found = first_fit(vm->vm_free_by_addr, &search);
    *exhausted = search.exhausted;
    if (found != NULL)
        *addrp = search.addr;
    return found;
}

static VmemTag *best_fit(VmemTag *node, FitSearch *search)
{
    while (node != NULL) {
        VmemTreeLink *link = &node->u.free.by_size;
        if (node->size < search->min_size) {
            node = link->child[1]; /* everything smaller is on the left */
            continue;
        }
        VmemTag *found = best_fit(link->child[0], search);
        if (found != NULL || search->exhausted)
            return found;
        if (vmem_fit_in(search->req, node->base, node->size, &search->addr))
            return node;
        if (search->budget != SIZE_MAX && --search->budget == 0) {
            search->exhausted = true;
            return NULL;
        }
        node = link->child[1];
    }
    return NULL;
}

VmemTag *vmem_tree_best_fit(Vmem *vm, const VmemRequest *req, size_t min_size, size_t budget,
                            bool *exhausted, uintptr_t *addrp)
{
    FitSearch search = {req, min_size, budget, false, 0};
    VmemTag *found = best_fit(vm->vm_free_by_size, &search);
    *exhausted = search.exhausted;
    if (found != NULL)
        *addrp = search.addr;
    return found;
}

VmemTag *vmem_tree_find_free(Vmem *vm, uintptr_t addr)
{
    VmemTag *node = vm->vm_free_by_addr;
    while (node != NULL) {
        if (addr < node->base)
            node = node->u.free.by_addr.child[0];
        else if (addr > tag_last(node))
            node = node->u.free.by_addr.child[1];
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

/* Returns the node's height, or -1 after recording a problem in check. */
static int check_subtree(const VmemTag *node, TreeCheck *check, const VmemTag **bad, int depth)
{
    if (node == NULL)
        return 0;
    if (depth > 128) {
        check->why = "free-segment index deeper than any balanced tree";
        *bad = node;
        return -1;
    }
    const VmemTreeLink *link = clink_of(node, check->kind);
    int hl = check_subtree(link->child[0], check, bad, depth + 1);
    if (hl < 0)
        return -1;
    if (node->type != SEG_FREE) {
        check->why = "free-segment index holds a segment that is not free";
        *bad = node;
        return -1;
    }
    if (check->prev != NULL && compare(check->prev, node, check->kind) >= 0) {
        check->why = "free-segment index out of order";
        *bad = node;
        return -1;
    }
    check->prev = node;
    check->count++;
    int hr = check_subtree(link->child[1], check, bad, depth + 1);
    if (hr < 0)
        return -1;
    int h = 1 + (hl > hr ? hl : hr);
    if (hl - hr > 1 || hr - hl > 1 || h != height(node, check->kind)) {
        check->why = "free-segment index unbalanced or with a wrong height";
        *bad = node;
        return -1;
    }
    if (check->kind == BY_ADDR) {
        size_t m = node->size;
        if (subtree_max(link->child[0]) > m)
            m = subtree_max(link->child[0]);
        if (subtree_max(link->child[1]) > m)
            m = subtree_max(link->child[1]);
        if (m != node->u.free.addr_max) {
            check->why = "address index has a wrong largest-size summary";
            *bad = node;
            return -1;
        }
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
