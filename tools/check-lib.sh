#!/usr/bin/env bash
# check-lib.sh LIB HOST_LIB - properties of the built library and its public headers,
# each one a test:
#   - the freestanding library calls nothing but itself and the port hooks
#     (no libc, no compiler-emitted memset/memcpy);
#   - it builds warning-free with both gcc and clang;
#   - vmem.h includes only <stddef.h> <stdint.h> <stdbool.h>, compiles as C11
#     and as C++, and defines macros only in the VMEM_ / VM_ namespaces, so a
#     kernel with its own sys/queue.h can include it;
#   - vmem.h and vmem_port.h compile on their own (self-contained).
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

# 4. The header includes only what it promises.
includes=$(grep -E '^#include' include/vmem.h | grep -vE '<(stddef|stdint|stdbool)\.h>')
result header_includes_only_std "$([ -z "$includes" ]; echo $?)" "$includes"

# 5. Compiles as C11 and as C++ (with -Wall -Werror), alone.
printf '#include "vmem.h"\n#include "vmem_port.h"\nint main(void) { Vmem v; (void)v; return 0; }\n' >"$tmp/use.c"
gcc -std=c11 -Wall -Wextra -Werror -pedantic -Iinclude -c "$tmp/use.c" -o "$tmp/c.o" 2>"$tmp/err"
result header_compiles_as_c11 $? "$(head -5 "$tmp/err")"
cp "$tmp/use.c" "$tmp/use.cpp"
g++ -std=c++11 -Wall -Wextra -Werror -Iinclude -c "$tmp/use.cpp" -o "$tmp/cpp.o" 2>"$tmp/err"
result header_compiles_as_cxx $? "$(head -5 "$tmp/err")"

# 6. Namespace: beyond what the three standard headers define, every macro
#    the header adds is VMEM_ / VM_ (its include guard is VMEM_H).
printf '#include <stddef.h>\n#include <stdint.h>\n#include <stdbool.h>\n' >"$tmp/std.c"
printf '#include <stddef.h>\n#include <stdint.h>\n#include <stdbool.h>\n#include "vmem.h"\n' >"$tmp/with.c"
macros() { gcc -E -dM -Iinclude "$1" | awk '{ print $2 }' | sed 's/(.*//' | sort -u; }
bad=$(comm -13 <(macros "$tmp/std.c") <(macros "$tmp/with.c") | grep -vE '^(VMEM_|VM_)')
result header_namespace_clean "$([ -z "$bad" ]; echo $?)" "macros outside the namespace: $(echo $bad)"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
