# tools/cross.mk - the freestanding library for other architectures:
# `make cross` and the check-cross layer of `make check`. Owns build/cross/.
# Also pulls in the example port's layer (examples/kernel_port/example.mk),
# which links the example kernel against these archives.
#
#   make cross          build/cross/<arch>/libvmem.a for every CROSS_ARCHS
#   make check-cross    builds each one and checks it; one result per
#                       architecture, then "N passed, N failed"
#
# One clang cross-compiles for every architecture (--target=...), so no
# per-architecture toolchain is needed; the archives are plain ELF
# relocatables that any linker for the target accepts. Each architecture
# gets the flags its kernels use, so that the library never touches FPU or
# SIMD state (a kernel does not save it on entry) and links wherever a
# kernel is placed:
#   x86_64   no red zone (interrupts share the stack), no SSE/MMX/x87,
#            the kernel code model (linked in the top 2 GiB)
#   i386     no SSE/MMX/x87
#   aarch64  general registers only; the small code model (PC-relative
#            within 4 GiB, so also fine for a higher-half kernel)
#   riscv64  rv64imac / lp64 (no F or D), medany (PC-relative anywhere)
# plus what every kernel object wants: -ffreestanding, no stack protector,
# no PIC, no unwind tables, the same warnings as the host build (errors).
# Override CROSS_FLAGS_<arch> to match your kernel, e.g.
#   make cross CROSS_FLAGS_aarch64='-mgeneral-regs-only -mcmodel=large'

CROSS_CC    ?= clang
CROSS_AR    ?= $(if $(shell command -v llvm-ar 2>/dev/null),llvm-ar,ar)
CROSS_NM    ?= $(if $(shell command -v llvm-nm 2>/dev/null),llvm-nm,nm)
CROSS_OBJDUMP ?= llvm-objdump
CROSS_READELF ?= llvm-readelf
CROSS_ARCHS := x86_64 i386 aarch64 riscv64

CROSS_TARGET_x86_64  := x86_64-unknown-none-elf
CROSS_TARGET_i386    := i386-unknown-none-elf
CROSS_TARGET_aarch64 := aarch64-unknown-none-elf
CROSS_TARGET_riscv64 := riscv64-unknown-none-elf

CROSS_FLAGS_x86_64  ?= -mno-red-zone -mno-sse -mno-mmx -mno-80387 -mcmodel=kernel
CROSS_FLAGS_i386    ?= -m32 -mno-sse -mno-mmx -mno-80387
CROSS_FLAGS_aarch64 ?= -mgeneral-regs-only -mcmodel=small
CROSS_FLAGS_riscv64 ?= -march=rv64imac -mabi=lp64 -mcmodel=medany

# What `llvm-objdump -f` must call every member, so a wrong --target or a
# host object slipping in is caught.
CROSS_FORMAT_x86_64  := elf64-x86-64
CROSS_FORMAT_i386    := elf32-i386
CROSS_FORMAT_aarch64 := elf64-littleaarch64
CROSS_FORMAT_riscv64 := elf64-littleriscv

# Instruction operands that mean FPU or SIMD state in the disassembly
# (riscv64 is checked through its ELF float-ABI flag instead).
CROSS_FPU_RE_x86_64  := %([xyz]mm[0-9]|st\b|st\(|mm[0-7])
CROSS_FPU_RE_i386    := $(CROSS_FPU_RE_x86_64)
CROSS_FPU_RE_aarch64 := \b([qds][0-9]{1,2}|v[0-9]{1,2}\.[0-9]*[bhsdq])\b

CROSS_CFLAGS := $(COMMON_CFLAGS) $(FREESTANDING_CONFIG) -O2 -ffreestanding \
                -fno-stack-protector -fno-pic -fno-asynchronous-unwind-tables \
                -fno-unwind-tables

# cross_flags(arch): the full compiler flags for one architecture.
cross_flags = --target=$(CROSS_TARGET_$(1)) $(CROSS_FLAGS_$(1)) $(CROSS_CFLAGS)

define CROSS_ARCH_RULES
$(BUILD)/cross/$(1)/obj/%.o: %.c $(HEADERS)
	@mkdir -p $$(dir $$@)
	$$(call quiet,CC,$(1) $$<)$(CROSS_CC) $$(call cross_flags,$(1)) -c $$< -o $$@

$(BUILD)/cross/$(1)/libvmem.a: $(LIB_SRCS:%.c=$(BUILD)/cross/$(1)/obj/%.o)
	@rm -f $$@
	$$(call quiet,AR,$$@)$(CROSS_AR) rcs $$@ $$^

# Verifies one archive; prints why it is wrong and fails if it is.
.PHONY: cross-verify-$(1)
cross-verify-$(1): $(BUILD)/cross/$(1)/libvmem.a
	@lib=$$<; bad=0; \
	formats=$$$$($(CROSS_OBJDUMP) -f $$$$lib | sed -n 's/.*file format //p' | sort -u); \
	if [ "$$$$formats" != "$(CROSS_FORMAT_$(1))" ]; then \
	    echo "    object format: $$$$formats (want $(CROSS_FORMAT_$(1)))"; bad=1; fi; \
	foreign=$$$$(tools/foreign-symbols.sh $(CROSS_NM) $$$$lib); \
	if [ -n "$$$$foreign" ]; then \
	    echo "    undefined symbols besides vmem_port_*: "$$$$foreign; bad=1; fi; \
	if [ -n "$(CROSS_FPU_RE_$(1))" ]; then \
	    fpu=$$$$($(CROSS_OBJDUMP) -d --no-show-raw-insn $$$$lib | sed -e 's/<[^>]*>//g' -e 's/^ *[0-9a-f]*://' \
	          | grep -E '$(CROSS_FPU_RE_$(1))' | head -3); \
	    if [ -n "$$$$fpu" ]; then echo "    FPU/SIMD instructions:"; echo "$$$$fpu"; bad=1; fi; \
	else \
	    float=$$$$($(CROSS_READELF) -h $$$$lib | grep -E 'Flags:.*float' | sort -u); \
	    if [ -n "$$$$float" ]; then echo "    hardware float ABI: $$$$float"; bad=1; fi; \
	fi; \
	exit $$$$bad
endef
$(foreach arch,$(CROSS_ARCHS),$(eval $(call CROSS_ARCH_RULES,$(arch))))

CROSS_LIBS := $(foreach arch,$(CROSS_ARCHS),$(BUILD)/cross/$(arch)/libvmem.a)

# The freestanding promise at other optimisation levels and with gcc:
# compilers emit calls on their own (memcpy for a struct copy at -O0 or
# -Os, libgcc's __ctzdi2 for a 64-bit count on a 32-bit target), and which
# ones depends on the compiler, the level and the target. Each variant
# <cc>-<arch>-<level> below is the library's objects built with that
# architecture's kernel flags at that level, checked to need nothing but
# the port. The archives above are clang at -O2; gcc covers the
# architectures it can build for here (the host and -m32).
CROSS_SYMBOL_LEVELS_clang := O0 Os
CROSS_SYMBOL_LEVELS_gcc   := O0 Os O2
CROSS_SYMBOL_VARIANTS := \
    $(foreach arch,$(CROSS_ARCHS),$(foreach level,$(CROSS_SYMBOL_LEVELS_clang),clang-$(arch)-$(level))) \
    $(foreach arch,x86_64 i386,$(foreach level,$(CROSS_SYMBOL_LEVELS_gcc),gcc-$(arch)-$(level)))
CROSS_GCC ?= gcc
CROSS_SYMBOL_CC_clang = $(CROSS_CC) --target=$(CROSS_TARGET_$(1))
CROSS_SYMBOL_CC_gcc   = $(CROSS_GCC)

# variant_rules(cc,arch,level)
define CROSS_SYMBOL_RULES
$(BUILD)/cross/symbols/$(1)-$(2)-$(3)/%.o: %.c $(HEADERS)
	@mkdir -p $$(dir $$@)
	$$(call CROSS_SYMBOL_CC_$(1),$(2)) $(CROSS_FLAGS_$(2)) $(CROSS_CFLAGS) -$(3) -c $$< -o $$@

.PHONY: cross-symbols-$(1)-$(2)-$(3)
cross-symbols-$(1)-$(2)-$(3): $(LIB_SRCS:%.c=$(BUILD)/cross/symbols/$(1)-$(2)-$(3)/%.o)
	@foreign=$$$$(tools/foreign-symbols.sh $(CROSS_NM) $$^) || exit 1; \
	if [ -n "$$$$foreign" ]; then \
	    echo "    undefined symbols besides vmem_port_*: "$$$$foreign; exit 1; fi
endef
$(foreach variant,$(CROSS_SYMBOL_VARIANTS),$(eval $(call CROSS_SYMBOL_RULES,$(word 1,$(subst -, ,$(variant))),$(word 2,$(subst -, ,$(variant))),$(word 3,$(subst -, ,$(variant))))))

.PHONY: cross check-cross
cross: $(CROSS_LIBS)

# Layer: each architecture builds warning-free (-Werror), is of the right
# object format, needs nothing but the port hooks (no libc, no compiler
# runtime such as __udivdi3 or memcpy), and uses no FPU/SIMD state; then
# each variant above needs nothing but the port hooks either
# (cross.only_port_symbols_<cc>-<arch>-<level>). A failed build counts as
# that architecture or variant failing; the others still run.
check-cross:
	@passed=0; failed=0; \
	for arch in $(CROSS_ARCHS); do \
	    log=$$($(MAKE) --no-print-directory -s cross-verify-$$arch 2>&1); \
	    if [ $$? -eq 0 ]; then \
	        echo "ok   cross.$$arch"; passed=$$((passed + 1)); \
	    else \
	        echo "FAIL cross.$$arch"; echo "$$log" | grep -v "^make" | tail -n 20; failed=$$((failed + 1)); \
	    fi; \
	done; \
	for variant in $(CROSS_SYMBOL_VARIANTS); do \
	    log=$$($(MAKE) --no-print-directory -s cross-symbols-$$variant 2>&1); \
	    if [ $$? -eq 0 ]; then \
	        echo "ok   cross.only_port_symbols_$$variant"; passed=$$((passed + 1)); \
	    else \
	        echo "FAIL cross.only_port_symbols_$$variant"; echo "$$log" | grep -v "^make" | tail -n 20; \
	        failed=$$((failed + 1)); \
	    fi; \
	done; \
	echo "$$passed passed, $$failed failed"; \
	[ $$failed -eq 0 ]

CHECK_LAYERS += check-cross

include examples/kernel_port/example.mk
