/*
 * string.c - memset, memcpy, memmove and memcmp for the freestanding
 * kernel. GCC and Clang emit calls to these even under -ffreestanding
 * (struct copies, zeroing, and loops they recognise), so the kernel must
 * define them.
 *
 * Invariant: nothing here may itself compile to a call to these functions.
 * kernel.mk builds this file with -fno-tree-loop-distribute-patterns where
 * the compiler has it (GCC), which stops GCC turning these loops back into
 * calls to themselves; Clang never does that inside functions of these names.
 */
#include <stddef.h>
#include <stdint.h>

void *memset(void *dst, int c, size_t n);
void *memcpy(void *restrict dst, const void *restrict src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
int memcmp(const void *a, const void *b, size_t n);

void *memset(void *dst, int c, size_t n)
{
    unsigned char *d = dst;
    /* Word stores for the aligned middle: the frame-pattern tests clear
     * and copy whole pages, and TCG pays per instruction. */
    while (n > 0 && ((uintptr_t)d & 7) != 0) {
        *d++ = (unsigned char)c;
        n--;
    }
    uint64_t word = (unsigned char)c * 0x0101010101010101ull;
    for (; n >= 8; n -= 8, d += 8)
        *(uint64_t *)(void *)d = word;
    while (n-- > 0)
        *d++ = (unsigned char)c;
    return dst;
}

void *memcpy(void *restrict dst, const void *restrict src, size_t n)
{
    unsigned char *d = dst;
    const unsigned char *s = src;
    while (n-- > 0)
        *d++ = *s++;
    return dst;
}

void *memmove(void *dst, const void *src, size_t n)
{
    unsigned char *d = dst;
    const unsigned char *s = src;
    if (d == s || n == 0)
        return dst;
    if (d < s) {
        while (n-- > 0)
            *d++ = *s++;
    } else {
        d += n;
        s += n;
        while (n-- > 0)
            *--d = *--s;
    }
    return dst;
}

int memcmp(const void *a, const void *b, size_t n)
{
    const unsigned char *x = a, *y = b;
    for (size_t i = 0; i < n; i++) {
        if (x[i] != y[i])
            return x[i] < y[i] ? -1 : 1;
    }
    return 0;
}
