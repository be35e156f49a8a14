/*
 * vtest.c - the freestanding core of the test harness: runs the suites,
 * counts results, prints them, and supplies the PRNG. Owns no state beyond
 * the result of the test currently running.
 */
#include "vtest.h"

static bool current_failed;

void vtest_puts(const char *text) { vtest_env_puts(text); }

void vtest_put_u64(uint64_t value)
{
    char digits[21];
    size_t at = sizeof(digits) - 1;
    digits[at] = '\0';
    do {
        digits[--at] = (char)('0' + value % 10);
        value /= 10;
    } while (value != 0);
    vtest_env_puts(&digits[at]);
}

void vtest_put_hex(uint64_t value)
{
    static const char hex[] = "0123456789abcdef";
    char digits[19];
    size_t at = sizeof(digits) - 1;
    digits[at] = '\0';
    do {
        digits[--at] = hex[value & 0xf];
        value >>= 4;
    } while (value != 0);
    digits[--at] = 'x';
    digits[--at] = '0';
    vtest_env_puts(&digits[at]);
}

void vtest_fail(const char *file, int line, const char *expr)
{
    current_failed = true;
    vtest_puts("    assertion failed at ");
    vtest_puts(file);
    vtest_puts(":");
    vtest_put_u64((uint64_t)line);
    vtest_puts(": ");
    vtest_puts(expr);
    vtest_puts("\n");
}

bool vtest_consistent(Vmem *vm)
{
    VmemCheckReport report;
    if (vmem_check(vm, &report) == 0)
        return true;
    vtest_puts("    vmem_check: ");
    vtest_puts(report.reason ? report.reason : "(no reason)");
    vtest_puts(" at ");
    vtest_put_hex(report.addr);
    vtest_puts(" size ");
    vtest_put_hex(report.size);
    vtest_puts("\n");
    return false;
}

static bool name_matches(const char *name, const char *filter)
{
    if (filter == NULL || filter[0] == '\0')
        return true;
    for (const char *start = name; *start != '\0'; start++) {
        const char *n = start, *f = filter;
        while (*f != '\0' && *n == *f) {
            n++;
            f++;
        }
        if (*f == '\0')
            return true;
    }
    return false;
}

size_t vtest_run_all(const char *filter, size_t *passed_out)
{
    return vtest_run_suites(vtest_suites, vtest_suite_count, filter, passed_out);
}

size_t vtest_run_suites(const struct vtest_suite *const *suites, size_t count,
                        const char *filter, size_t *passed_out)
{
    size_t passed = 0, failed = 0;
    for (size_t s = 0; s < count; s++) {
        const struct vtest_suite *suite = suites[s];
        for (size_t c = 0; c < suite->count; c++) {
            const struct vtest_case *tc = &suite->cases[c];
            if (!name_matches(tc->name, filter))
                continue;
            current_failed = false;
            vtest_env_misuse_capture(false);
            tc->run();
            vtest_env_misuse_capture(false);
            vtest_puts(current_failed ? "FAIL " : "ok   ");
            vtest_puts(suite->name);
            vtest_puts(".");
            vtest_puts(tc->name);
            vtest_puts("\n");
            if (current_failed)
                failed++;
            else
                passed++;
        }
    }
    if (passed_out != NULL)
        *passed_out += passed;
    return failed;
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void vtest_rng_seed(VtestRng *rng, uint64_t seed)
{
    /* splitmix64 spreads any seed, including 0, over the whole state. */
    for (int i = 0; i < 4; i++) {
        uint64_t z = (seed += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        rng->s[i] = z ^ (z >> 31);
    }
}

uint64_t vtest_rng_next(VtestRng *rng)
{
    uint64_t *s = rng->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

uint64_t vtest_rng_below(VtestRng *rng, uint64_t bound)
{
    /* Rejection keeps the result unbiased for every bound. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % bound;
    uint64_t r;
    do {
        r = vtest_rng_next(rng);
    } while (r >= limit);
    return r % bound;
}
