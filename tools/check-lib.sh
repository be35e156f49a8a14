#!/usr/bin/env bash
# check-lib.sh LIB HOST_LIB - properties of the built library and its public headers,
# each one a test:
#   - the freestanding library calls nothing but itself and the port hooks
#     (no libc, no compiler-emitted memset/memcpy);
#   - it builds warning-free with both gcc and clang;
#   - vmem.h includes only <stddef.h> <stdint.h> <stdbool.h> and defines
#     macros only in the VMEM_ / VM_ namespaces, so a kernel with its own
#     sys/queue.h can include it;
#   - vmem.h, vmem_port.h and vmem_posix.h each compile on their own,
#     warning-free with -Wpedantic, as every C from C89 to C23 and every C++
#     from C++98 to C++20, by gcc and clang; a port file needs no header but
#     vmem_port.h;
#   - src/ compiled freestanding with no -D options needs no cond hooks, so
#     it links into a kernel without a scheduler (the example port);
#   - the internal assertions (VMEM_ASSERT) are compiled into the hosted
#     test library, which sets VMEM_DEBUG, and out of the freestanding one,
#     and a failed one panics through the port naming its condition.
# Ends with "N passed, N failed".
set -u
lib=$1
host_lib=$2
cd "$(dirname "$0")/.."
passed=0
failed=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

result() { # name status detail
    if [ "$2" -eq 0 ]; then
        echo "ok   lib.$1"
        passed=$((passed + 1))
    else
        echo "FAIL lib.$1: $3"
        failed=$((failed + 1))
    fi
}

# 1. Only port hooks are left undefined.
defined=$(nm --defined-only "$lib" | awk 'NF == 3 { print $3 }' | sort -u)
undefined=$(nm -u "$lib" | awk '{ print $2 }' | sort -u)
foreign=$(comm -23 <(echo "$undefined") <(echo "$defined") | grep -v '^vmem_port_' | grep -v '^$')
result no_libc_calls "$([ -z "$foreign" ]; echo $?)" "undefined symbols: $(echo $foreign)"

# 2. Every port hook declared in vmem_port.h is required (missing = link
#    error) by the full configuration, the hosted library (the freestanding
#    one is built for a port that cannot sleep).
hooks=$(grep -oE 'vmem_port_[a-z_]+\(' include/vmem_port.h | tr -d '(' | sort -u)
host_undefined=$(nm -u "$host_lib" | awk '{ print $2 }' | sort -u)
unused=$(comm -23 <(echo "$hooks") <(echo "$host_undefined"))
result port_hooks_all_used "$([ -z "$unused" ]; echo $?)" "hooks never called: $(echo $unused)"

# 3. Warning-free under both compilers, freestanding.
for cc in gcc clang; do
    status=0
    for src in src/*.c; do
        $cc -std=c11 -Wall -Wextra -Werror -Iinclude -Isrc -O2 -ffreestanding -fno-pic \
            -mno-red-zone -mno-sse -mno-mmx -mno-80387 -mcmodel=kernel \
            -c "$src" -o "$tmp/x.o" 2>"$tmp/err" || { status=1; break; }
    done
    result "builds_with_$cc" "$status" "$(head -5 "$tmp/err")"
done

# 4. The header includes only what it promises (and its private layout,
#    vmem_impl.h, which includes nothing).
includes=$(grep -E '^#include' include/vmem.h include/vmem_impl.h |
    grep -vE '<(stddef|stdint|stdbool)\.h>' | grep -v 'vmem.h:#include "vmem_impl.h"')
result header_includes_only_std "$([ -z "$includes" ]; echo $?)" "$includes"

# 5. Each public header, alone, in every language version a kernel or a
#    program may be written in (TinyVMem builds with -std=c89 -Wpedantic
#    -Werror), hosted and freestanding. One result per header and compiler;
#    the detail names the versions that fail.
c_stds="c89 c99 c11 c17 c2x"
cxx_stds="c++98 c++11 c++14 c++17 c++20"
strict="-Wall -Wextra -Wpedantic -Wundef -Werror -Iinclude"
for header in vmem.h vmem_port.h vmem_posix.h; do
    printf '#include "%s"\nint header_user(Vmem *vmp);\nint header_user(Vmem *vmp) { return (int)sizeof *vmp; }\n' \
        "$header" >"$tmp/use.c"
    cp "$tmp/use.c" "$tmp/use.cpp"
    for cc in gcc clang; do
        case $cc in gcc) cxx=g++ ;; *) cxx=clang++ ;; esac
        failing=""
        for std in $c_stds; do
            for hosting in -fhosted -ffreestanding; do
                $cc -std=$std $hosting $strict -c "$tmp/use.c" -o "$tmp/use.o" 2>>"$tmp/err.$cc" ||
                    failing="$failing $std$hosting"
            done
        done
        for std in $cxx_stds; do
            $cxx -std=$std $strict -c "$tmp/use.cpp" -o "$tmp/use.o" 2>>"$tmp/err.$cc" ||
                failing="$failing $std"
        done
        result "${header%.h}_h_compiles_pedantic_in_c89_to_c23_and_cxx98_to_cxx20_$cc" \
            "$([ -z "$failing" ]; echo $?)" "fails as:$failing; $(grep -m 2 'error:' "$tmp/err.$cc")"
        rm -f "$tmp/err.$cc"
    done
done

# 6. A port file includes vmem_port.h and nothing else of libvmem, and
#    still has VMEM_PAGE_SIZE and the port options.
cat >"$tmp/port.c" <<'PORT'
#include "vmem_port.h"
static unsigned char port_pages[4][VMEM_PAGE_SIZE];
void *vmem_port_page_alloc(size_t npages, int vmflag)
{
    (void)vmflag;
    return npages == 1 && VMEM_PORT_CAN_SLEEP == 0 ? port_pages[0] : NULL;
}
PORT
gcc -std=c11 -ffreestanding $strict -c "$tmp/port.c" -o "$tmp/port.o" 2>"$tmp/err"
result port_file_needs_only_vmem_port_h $? "$(head -5 "$tmp/err")"

# 7. src/ compiled freestanding with no -D options defaults to a port that
#    cannot sleep, so it links, with nothing undefined, against the example
#    port, which has no cond hooks.
kernel_flags="-std=c11 -Wall -Wextra -Werror -Iinclude -Isrc -O2 -ffreestanding -fno-stack-protector
              -fno-pic -mno-red-zone -mno-sse -mno-mmx -mno-80387 -mcmodel=kernel"
mkdir "$tmp/kernel"
: >"$tmp/err"
status=0
for src in src/*.c examples/kernel_port/vmem_port_example.c examples/kernel_port/kernel_vmem.c \
           examples/kernel_port/kernel_stubs.c; do
    gcc $kernel_flags -c "$src" -o "$tmp/kernel/$(basename "$src" .c).o" 2>>"$tmp/err" || status=1
done
[ $status -eq 0 ] && ld -static -nostdlib --no-undefined -e kernel_entry -Ttext=0xffffffff80100000 \
    -o "$tmp/kernel.elf" "$tmp"/kernel/*.o 2>>"$tmp/err"
result freestanding_defaults_link_without_cond_hooks $? \
    "$(grep -m 5 -E 'error|undefined' "$tmp/err" | sort -u)"

# 9. Layout agreement: a program compiled with the library's VMEM_LOCK_WORDS
#    and VMEM_COND_WORDS links and runs; one compiled with another value of
#    either fails to link, and the linker names the values it was compiled
#    with. Both for a user program with the hosted library and for a kernel
#    (the example port) with the freestanding one.
cat >"$tmp/abi.c" <<'ABI'
#include "vmem.h"
int main(void)
{
    static Vmem ids;
    void *id;
    int ok;
    vmem_bootstrap();
    if (vmem_init(&ids, "ids", (void *)1, 100, 1, 0, 0, 0, 0, VM_NOSLEEP) != 0)
        return 1;
    id = vmem_alloc(&ids, 1, VM_NOSLEEP);
    ok = id == (void *)1 && ids.name[0] == 'i' && vmem_check(&ids, 0) == 0;
    vmem_free(&ids, id, 1);
    vmem_destroy(&ids);
    return ok ? 0 : 1;
}
ABI
gcc -std=c99 -Wall -Wextra -Werror -Iinclude "$tmp/abi.c" "$host_lib" -lpthread -o "$tmp/abi" \
    >"$tmp/err" 2>&1 && "$tmp/abi" >>"$tmp/err" 2>&1
result abi_matching_layout_links_and_runs $? "$(head -5 "$tmp/err")"
for option in VMEM_LOCK_WORDS=2 VMEM_COND_WORDS=16; do
    want=$(echo "vmem_abi_VMEM_LOCK_WORDS_8_VMEM_COND_WORDS_8" | sed "s/${option%=*}_8/${option%=*}_${option#*=}/")
    if gcc -std=c99 -D$option -Iinclude "$tmp/abi.c" "$host_lib" -lpthread -o "$tmp/abi" >"$tmp/err" 2>&1; then
        status=1 detail="linked although compiled with -D$option"
    else
        grep -q "undefined reference to .$want'" "$tmp/err"
        status=$? detail="the link failed without naming $want: $(head -3 "$tmp/err")"
    fi
    result "abi_${option%=*}_mismatch_fails_to_link_naming_it" $status "$detail"
done
: >"$tmp/err"
status=0
for src in vmem_port_example kernel_vmem kernel_stubs; do
    gcc $kernel_flags -DVMEM_LOCK_WORDS=2 -DVMEM_PORT_CAN_SLEEP=0 \
        -c examples/kernel_port/$src.c -o "$tmp/kernel/$src.o" 2>>"$tmp/err" || status=1
done
if [ $status -ne 0 ]; then
    detail="the example port does not compile with -DVMEM_LOCK_WORDS=2: $(head -3 "$tmp/err")"
elif ld -static -nostdlib --no-undefined -e kernel_entry -Ttext=0xffffffff80100000 \
        -o "$tmp/kernel.elf" "$tmp"/kernel/{vmem_port_example,kernel_vmem,kernel_stubs}.o "$lib" \
        >>"$tmp/err" 2>&1; then
    status=1 detail="a kernel compiled with -DVMEM_LOCK_WORDS=2 linked against $lib"
else
    grep -q "undefined reference to .vmem_abi_VMEM_LOCK_WORDS_2_VMEM_COND_WORDS_8'" "$tmp/err"
    status=$? detail="the link failed for another reason: $(head -3 "$tmp/err")"
fi
result abi_kernel_with_other_lock_words_fails_to_link_prebuilt_library $status "$detail"

# 10. Namespace: beyond what the three standard headers define, every macro
#    the header adds is VMEM_ / VM_ (its include guard is VMEM_H).
printf '#include <stddef.h>\n#include <stdint.h>\n#include <stdbool.h>\n' >"$tmp/std.c"
printf '#include <stddef.h>\n#include <stdint.h>\n#include <stdbool.h>\n#include "vmem.h"\n' >"$tmp/with.c"
macros() { gcc -E -dM -Iinclude "$1" | awk '{ print $2 }' | sed 's/(.*//' | sort -u; }
bad=$(comm -13 <(macros "$tmp/std.c") <(macros "$tmp/with.c") | grep -vE '^(VMEM_|VM_)')
result header_namespace_clean "$([ -z "$bad" ]; echo $?)" "macros outside the namespace: $(echo $bad)"

# 11. VMEM_ASSERT: in the test builds (VMEM_DEBUG), nothing without it; a
#     failed assertion reaches vmem_port_panic() with its file and condition.
count_asserts() { strings -a "$1" | grep -c 'assertion failed' || true; }
in_host=$(count_asserts "$host_lib")
in_lib=$(count_asserts "$lib")
result assertions_only_in_debug_builds "$([ "$in_host" -gt 10 ] && [ "$in_lib" -eq 0 ]; echo $?)" \
    "assertion messages: $in_host in the hosted test library, $in_lib in the freestanding one"
cat >"$tmp/assert.c" <<'CEOF'
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include "vmem_internal.h"
const char VMEM_ABI_SYMBOL = 1; /* this program is its own library */
static jmp_buf back;
static char seen[256];
/* The test's own panic hook: records the message and returns to main. */
void vmem_port_panic(const char *message)
{
    snprintf(seen, sizeof(seen), "%s", message);
    longjmp(back, 1);
}
int main(void)
{
    Vmem arena;
    arena.vm_lock_held = 0;
    if (setjmp(back) == 0) {
        VMEM_ASSERT_LOCKED(&arena);
        return 1; /* the assertion did not fire */
    }
    return strstr(seen, "assertion failed") != NULL && strstr(seen, "vm_lock_held") != NULL ? 0 : 2;
}
CEOF
status=1
if gcc -std=c11 -D_GNU_SOURCE -DVMEM_DEBUG -Iinclude -Isrc -O2 "$tmp/assert.c" -o "$tmp/assert" \
        2>"$tmp/err"; then
    "$tmp/assert"; status=$?
fi
result failed_assertion_panics_naming_its_condition "$status" "exit $status: $(head -3 "$tmp/err")"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
