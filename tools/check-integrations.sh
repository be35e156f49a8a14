#!/usr/bin/env bash
# check-integrations.sh ROOT EXAMPLE_DIR LIB_SRCS... - the check-integrations
# layer: a kernel's build pulls libvmem in through vmem.mk, CMake
# (add_subdirectory) or meson (a subproject), and each one builds and runs
# the example port (EXAMPLE_DIR) and a user-space program on the POSIX port.
# LIB_SRCS are the Makefile's sources, which each integration must build
# too. Prints "ok   integrations.<what>" per check, then "N passed, N failed".
set -u
root=$(cd "$1" && pwd); example=$root/$2; shift 2
make_sources=$(printf '%s\n' "$@" | sort | tr '\n' ' ')
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
passed=0; failed=0
result() { # name status log
    if [ "$2" -eq 0 ]; then echo "ok   integrations.$1"; passed=$((passed + 1))
    else echo "FAIL integrations.$1"; tail -n 15 "$3" | sed 's/^/    /'; failed=$((failed + 1)); fi
}
# runs_clean LOG PROGRAM: the program exits 0 and, if it prints result
# lines, the last says "0 failed".
runs_clean() {
    "$2" >>"$1" 2>&1 || return 1
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$1" | tail -n 1)
    [ -z "$line" ] || [ "${line##*, }" = "0 failed" ]
}
example_sources="$example/vmem_port_example.c $example/kernel_vmem.c"
echo "$INSTALL_PROBE_C" >"$tmp/probe.c"

# ---- vmem.mk ---------------------------------------------------------------
mkdir -p "$tmp/mk"
cat >"$tmp/mk/Makefile" <<MK
VMEM_DIR    := $root
VMEM_CFLAGS := -O2 -Wall -Wextra -Werror -fno-stack-protector -fno-pic -mno-red-zone \\
               -mno-sse -mno-mmx -mno-80387 -mcmodel=kernel
VMEM_CONFIG := -DVMEM_PORT_CAN_SLEEP=0
VMEM_BUILD  := $tmp/mk/vmem
include \$(VMEM_DIR)/vmem.mk
KERNEL_CFLAGS := \$(VMEM_CFLAGS) -std=c11 -ffreestanding \$(VMEM_INCLUDES) \$(VMEM_CONFIG)
kernel.elf: $example_sources $example/kernel_stubs.c \$(VMEM_LIB)
	for src in $example_sources $example/kernel_stubs.c; do \\
	    \$(CC) \$(KERNEL_CFLAGS) -c \$\$src -o \$\$(basename \$\$src .c).o || exit 1; done
	ld.lld -static -nostdlib --no-undefined -e kernel_entry -Ttext=0xffffffff80100000 \\
	    -o \$@ vmem_port_example.o kernel_vmem.o kernel_stubs.o \$(VMEM_LIB)
print-sources:
	@echo \$(patsubst \$(VMEM_DIR)/%,%,\$(VMEM_SRCS))
MK
mk_sources=$(make -s -C "$tmp/mk" print-sources | tr ' ' '\n' | sort | tr '\n' ' ')
[ "$mk_sources" = "$make_sources" ]
echo "vmem.mk builds: $mk_sources; the Makefile: $make_sources" >"$tmp/log"
result vmem_mk_has_the_library_sources $? "$tmp/log"
make -s -C "$tmp/mk" kernel.elf >"$tmp/log" 2>&1
result vmem_mk_links_a_freestanding_kernel $? "$tmp/log"

# ---- CMake: add_subdirectory -----------------------------------------------
if command -v cmake >/dev/null 2>&1; then
    mkdir -p "$tmp/cmake"
    cat >"$tmp/cmake/CMakeLists.txt" <<CM
cmake_minimum_required(VERSION 3.13)
project(example_kernel C)
set(VMEM_PORT_CAN_SLEEP 0 CACHE STRING "" FORCE)
add_subdirectory($root libvmem)
add_executable(example_kernel $example_sources $example/host_main.c)
target_include_directories(example_kernel PRIVATE $example)
target_link_libraries(example_kernel PRIVATE vmem::vmem)
CM
    { cmake -S "$tmp/cmake" -B "$tmp/cmake/build" -DCMAKE_C_FLAGS="-Wall -Wextra -Werror" &&
      cmake --build "$tmp/cmake/build" -j2 &&
      runs_clean "$tmp/log2" "$tmp/cmake/build/example_kernel"; } >"$tmp/log" 2>&1
    status=$?; cat "$tmp/log2" >>"$tmp/log" 2>/dev/null; rm -f "$tmp/log2"
    result cmake_builds_and_runs_the_example_port "$status" "$tmp/log"
    mkdir -p "$tmp/cmake-posix"
    cat >"$tmp/cmake-posix/CMakeLists.txt" <<CM
cmake_minimum_required(VERSION 3.13)
project(probe C)
set(VMEM_FREESTANDING OFF CACHE BOOL "" FORCE)
set(VMEM_POSIX_PORT ON CACHE BOOL "" FORCE)
add_subdirectory($root libvmem)
add_executable(probe $tmp/probe.c)
target_include_directories(probe PRIVATE $root/include)
target_link_libraries(probe PRIVATE vmem::posix)
CM
    { cmake -S "$tmp/cmake-posix" -B "$tmp/cmake-posix/build" -DCMAKE_C_FLAGS="-std=c11 -Wall -Wextra -Werror" &&
      cmake --build "$tmp/cmake-posix/build" -j2 && "$tmp/cmake-posix/build/probe"; } >"$tmp/log" 2>&1
    result cmake_posix_port_program_runs $? "$tmp/log"
else
    echo "cmake not found (apt-get install cmake)" >"$tmp/log"
    result cmake_builds_and_runs_the_example_port 1 "$tmp/log"
fi

# ---- meson: a subproject ---------------------------------------------------
if command -v meson >/dev/null 2>&1 && command -v ninja >/dev/null 2>&1; then
    mkdir -p "$tmp/meson/subprojects"
    ln -s "$root" "$tmp/meson/subprojects/libvmem"
    cp $example_sources "$example/host_main.c" "$example/kernel.h" "$tmp/meson/"
    cp "$tmp/probe.c" "$tmp/meson/"
    cat >"$tmp/meson/meson.build" <<ME
project('example_kernel', 'c', default_options: ['c_std=c11', 'werror=true', 'warning_level=2'])
vmem = subproject('libvmem', default_options: ['port_can_sleep=0'])
executable('example_kernel', 'vmem_port_example.c', 'kernel_vmem.c', 'host_main.c',
           dependencies: vmem.get_variable('vmem_dep'))
ME
    { meson setup "$tmp/meson/build" "$tmp/meson" && ninja -C "$tmp/meson/build" &&
      runs_clean "$tmp/log2" "$tmp/meson/build/example_kernel"; } >"$tmp/log" 2>&1
    status=$?; cat "$tmp/log2" >>"$tmp/log" 2>/dev/null; rm -f "$tmp/log2"
    result meson_builds_and_runs_the_example_port "$status" "$tmp/log"
    mkdir -p "$tmp/meson-posix/subprojects"
    ln -s "$root" "$tmp/meson-posix/subprojects/libvmem"
    cp "$tmp/probe.c" "$tmp/meson-posix/"
    cat >"$tmp/meson-posix/meson.build" <<ME
project('probe', 'c', default_options: ['c_std=c11', 'werror=true', 'warning_level=2'])
vmem = subproject('libvmem', default_options: ['posix_port=true', 'freestanding=false'])
executable('probe', 'probe.c', dependencies: vmem.get_variable('vmem_posix_dep'))
ME
    { meson setup "$tmp/meson-posix/build" "$tmp/meson-posix" && ninja -C "$tmp/meson-posix/build" &&
      "$tmp/meson-posix/build/probe"; } >"$tmp/log" 2>&1
    result meson_posix_port_program_runs $? "$tmp/log"
else
    echo "meson or ninja not found (apt-get install meson ninja-build)" >"$tmp/log"
    result meson_builds_and_runs_the_example_port 1 "$tmp/log"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
