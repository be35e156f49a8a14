/*
 * ktest_env.c - the vtest_env_* hooks of tests/vtest.h for the test kernel:
 * output to COM1, misuse capture through the port's handler, sizes that
 * fit the RAM QEMU was given, and page-source fault injection.
 *
 * Invariant: between ktest_env_init() and the end of the run, every misuse
 * report goes through on_misuse(): either a test asked for it (capture on)
 * or it fails the test that caused it. Nothing passes silently.
 */
#include "ktest_env.h"

#include <stdbool.h>

#include "kprintf.h"
#include "serial.h"
#include "vmem_port_kernel.h"
#include "vtest.h"

/* The scale tests keep this many live segments at most: enough to reach
 * the hash's growth and the tag pool's refills many times over, few enough
 * that the layer stays well inside its time budget under TCG. */
#define SCALE_MAX 100000
/* At least this many, so a small VM still exercises growth. */
#define SCALE_MIN 5000
/* Budget of frame-arena memory per live segment: a boundary tag (96 bytes
 * today) and its share of the hash table, with room to spare. The tests'
 * own arrays are static, in the kernel image. */
#define SCALE_BYTES_PER_SEGMENT 512
/* Operations per seed of the randomized model tests (the host runs
 * 250000): enough to reach every path, small enough for TCG. */
#define RANDOM_OPS 20000

static bool capturing;
static size_t captured;
static VmemMisuse last_captured;
static size_t unexpected;
static size_t scale = SCALE_MIN;

static void on_misuse(const VmemMisuse *report)
{
    if (capturing) {
        captured++;
        last_captured = *report;
        return;
    }
    unexpected++;
    kport_print_misuse(report);
    vtest_fail(__FILE__, __LINE__, "no vmem misuse outside a capture");
}

void ktest_env_init(uint64_t phys_bytes)
{
    /* Half the frame arena for the scale tests' metadata at most. */
    uint64_t fit = phys_bytes / 2 / SCALE_BYTES_PER_SEGMENT;
    scale = fit > SCALE_MAX ? SCALE_MAX : fit < SCALE_MIN ? SCALE_MIN : (size_t)fit;
    kport_set_misuse_handler(on_misuse);
    kprintf("self-tests: scale %zu live segments, %d random ops per seed\n", scale, RANDOM_OPS);
}

size_t ktest_env_unexpected_misuse(void) { return unexpected; }

void vtest_env_puts(const char *text) { serial_puts(text); }

void vtest_env_misuse_capture(bool on)
{
    capturing = on;
    captured = 0;
}

size_t vtest_env_misuse_count(void) { return captured; }

const VmemMisuse *vtest_env_misuse_last(void) { return &last_captured; }

size_t vtest_env_scale(void) { return scale; }

size_t vtest_env_random_ops(void) { return RANDOM_OPS; }

bool vtest_env_page_faults(size_t countdown)
{
    if (countdown == 0)
        kport_stop_page_faults();
    else
        kport_fail_pages_after(countdown - 1);
    return true;
}
