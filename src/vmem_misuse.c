/*
 * vmem_misuse.c - the misuse catalogue: its names, the one way a report
 * leaves the library (vmem_report, through the port's misuse hook, never
 * with a lock held), and the checks of span and arena arguments that
 * vmem_init, vmem_create and vmem_add share. The checks of an allocation
 * request sit with the request (vmem_alloc.c), inline on its path.
 *
 * Every check runs before anything changes: a misused call reports once
 * and fails, and leaves the arena as it was in everything a later call
 * can see (docs/misuse.md lists the cases).
 */
#include "vmem_internal.h"

const char *vmem_misuse_name(VmemMisuseKind kind)
{
    switch (kind) {
    case VMEM_MISUSE_NOT_ARENA: return "not an arena";
    case VMEM_MISUSE_NOT_BOOTSTRAPPED: return "not bootstrapped";
    case VMEM_MISUSE_BAD_ARGUMENT: return "bad argument";
    case VMEM_MISUSE_BAD_FLAGS: return "bad flags";
    case VMEM_MISUSE_BAD_CONSTRAINT: return "bad constraint";
    case VMEM_MISUSE_SIZE_OVERFLOW: return "size overflow";
    case VMEM_MISUSE_SPAN_OVERLAP: return "overlapping span";
    case VMEM_MISUSE_SPAN_WRAP: return "wrapping span";
    case VMEM_MISUSE_FREE_UNKNOWN: return "free of unknown address";
    case VMEM_MISUSE_DOUBLE_FREE: return "double free";
    case VMEM_MISUSE_FREE_INSIDE: return "free inside a segment";
    case VMEM_MISUSE_FREE_WRONG_SIZE: return "free with wrong size";
    case VMEM_MISUSE_FREE_WRONG_CALL: return "free through the wrong call";
    case VMEM_MISUSE_DESTROY_BUSY: return "destroy of a busy arena";
    case VMEM_MISUSE_CANNOT_SLEEP: return "cannot sleep";
    }
    return "unknown misuse";
}

void vmem_report(const Vmem *vm, const char *call, uintptr_t addr, size_t size,
                 VmemMisuseKind kind, const char *reason)
{
    VmemMisuse report;
    report.arena = vm != NULL && vm->vm_magic == VMEM_MAGIC ? vm->name : "?";
    report.call = call;
    report.addr = addr;
    report.size = size;
    report.kind = kind;
    report.reason = reason;
    vmem_port_misuse(&report);
}

bool vmem_report_unusable(const Vmem *vm, const char *call, uintptr_t addr, size_t size)
{
    if (!vmem_library_ready())
        vmem_report(NULL, call, addr, size, VMEM_MISUSE_NOT_BOOTSTRAPPED,
                    "vmem_bootstrap() has not been called");
    else if (vm == NULL)
        vmem_report(NULL, call, addr, size, VMEM_MISUSE_BAD_ARGUMENT, "the arena is NULL");
    else if (vm->vm_magic != VMEM_MAGIC)
        vmem_report(NULL, call, addr, size, VMEM_MISUSE_NOT_ARENA,
                    "the arena is not initialised or was destroyed");
    else
        return true;
    return false;
}

/* ---- Checks shared by the calls that take spans ------------------------------ */

/* What is wrong with a span's flags or range, or NULL; sets *kind. */
const char *vmem_span_problem(uintptr_t base, size_t size, size_t quantum, int vmflag,
                              VmemMisuseKind *kind)
{
    *kind = VMEM_MISUSE_BAD_ARGUMENT;
    if (vmflag & ~KNOWN_FLAGS || ((vmflag & VM_SLEEP) && (vmflag & VM_NOSLEEP))) {
        *kind = VMEM_MISUSE_BAD_FLAGS;
        return "unknown or conflicting flags";
    }
    if (size == 0)
        return "the span is empty";
    if (base % quantum != 0 || size % quantum != 0)
        return "base or size is not a multiple of the quantum";
    if (size - 1 > UINTPTR_MAX - base) {
        *kind = VMEM_MISUSE_SPAN_WRAP;
        return "the span wraps past the top of the address space";
    }
    return NULL;
}

const char *vmem_init_problem(const Vmem *vmem, uintptr_t base, size_t size, size_t quantum,
                              VmemAlloc *afunc, VmemFree *ffunc, const Vmem *source,
                              int vmflag, VmemMisuseKind *kind)
{
    *kind = VMEM_MISUSE_BAD_ARGUMENT;
    if (!is_pow2(quantum))
        return "quantum is not a power of two";
    /* An empty initial span is allowed: the spans may all come later. */
    const char *why = vmem_span_problem(base, size != 0 ? size : quantum, quantum, vmflag, kind);
    if (why != NULL)
        return why;
    if ((afunc == NULL) != (source == NULL))
        return "an import function needs a source arena, and a source an import function";
    if (ffunc != NULL && afunc == NULL)
        return "a give-back function without an import function";
    if (source != NULL && source == vmem)
        return "an arena cannot import from itself";
    if (source != NULL && source->vm_magic != VMEM_MAGIC) {
        *kind = VMEM_MISUSE_NOT_ARENA;
        return "the source arena is not initialised or was destroyed";
    }
    return NULL;
}

/* ---- Classifying a bad free ------------------------------------------------- */

/* Is addr inside a free segment of span? Never builds an index: one built
 * here would change where later instant-fit requests are placed, and
 * misuse must change nothing. */
static bool in_free_segment(Vmem *vm, const VmemTag *span, uintptr_t addr)
{
    if (vmem_indexed(vm, VMEM_STATE_ADDR_INDEXED))
        return vmem_tree_find_free(vm, addr) != NULL;
    for (const VmemTag *tag = span->bt_next; tag != NULL && tag->bt_type != SEG_SPAN;
         tag = tag->bt_next)
        if (addr >= tag->bt_base && addr <= tag_last(tag))
            return tag->bt_type == SEG_FREE;
    return false;
}

const char *vmem_bad_free_problem(Vmem *vm, uintptr_t addr, VmemMisuseKind *kind)
{
    const VmemTag *span = vmem_span_containing(vm, addr, 1);
    if (span == NULL) {
        *kind = VMEM_MISUSE_FREE_UNKNOWN;
        return "the address is in no span of this arena (another arena's?)";
    }
    if (in_free_segment(vm, span, addr)) {
        *kind = VMEM_MISUSE_DOUBLE_FREE;
        return "the address lies in a free segment: freed twice, or never allocated";
    }
    *kind = VMEM_MISUSE_FREE_INSIDE;
    return "the address lies inside an allocated segment, not at its start";
}

