# boot/kernel.mk - the QEMU test kernel. Included by the top-level Makefile
# after CHECK_LAYERS is defined; uses its CC, BUILD, LIB, TEST_SRCS,
# COMMON_CFLAGS and HEADERS.
#
#   make kernel        build/kernel/vmem-kernel.elf32 (Multiboot 1, ELF32)
#   make run           boot it under QEMU (TCG) with 512 MiB, show the serial log;
#                      CPUS=N (1 to 8, default 1) boots N CPUs (multi-threaded TCG)
#   make check-kernel  boot one CPU at 64 MiB, 512 MiB and 4 GiB, and 2 and 4
#                      CPUs at 512 MiB, then test the runner itself; ends
#                      with one "N passed, N failed" line
#
# The kernel has no scheduler: it links $(LIB), which the main Makefile
# builds with $(FREESTANDING_CONFIG) (VMEM_PORT_CAN_SLEEP=0: VM_SLEEP never
# waits, and the library never calls the vmem_port_cond_* hooks, which this
# port does not have), and compiles its own code with the same
# configuration. The shared test sources ($(TEST_SRCS)) and the kernel's
# own self-tests (tests/kernel/) are compiled freestanding into
# build/kernel/obj/.

KERNEL_DIR := $(BUILD)/kernel
KERNEL_OBJ_DIR := $(KERNEL_DIR)/obj
KERNEL := $(KERNEL_DIR)/vmem-kernel.elf32
KERNEL_OBJCOPY ?= objcopy

# Freestanding, no FPU/SIMD state (nothing saves it), no red zone (an
# exception pushes onto the interrupted stack), not position-independent
# (linked at a fixed address), kernel code model (the kernel is linked in
# the top 2 GiB, at 0xffffffff80000000 + its physical load address: see
# boot/kernel.ld and lib/layout.h), debug information for addr2line on the
# higher-half addresses a fault report prints (addr2line -e the .elf).
KERNEL_CFLAGS := $(COMMON_CFLAGS) -Ilib -Itests -Itests/kernel -O2 -g -ffreestanding -fno-stack-protector \
                 -fno-pic -mno-red-zone -mno-sse -mno-mmx -mno-80387 -mcmodel=kernel \
                 -fno-asynchronous-unwind-tables $(FREESTANDING_CONFIG)
KERNEL_LIB := $(LIB)
# GCC can turn string.c's loops back into calls to memset/memcpy; the flag
# that stops it is GCC's only, so probe for it (CC=clang then omits it).
KERNEL_NO_LOOP_CALLS := $(shell $(CC) -fno-tree-loop-distribute-patterns -Werror -x c \
                          -c /dev/null -o /dev/null 2>/dev/null && \
                          echo -fno-tree-loop-distribute-patterns)
KERNEL_LDFLAGS := -nostdlib -static -Wl,-T,boot/kernel.ld \
                  -Wl,-z,max-page-size=4096 -Wl,--build-id=none

KERNEL_ASM_SRCS := boot/entry.S boot/isr.S boot/ap_start.S
KERNEL_C_SRCS := lib/serial.c lib/kprintf.c lib/string.c lib/qemu_exit.c lib/trap.c \
                 lib/memmap.c lib/paging.c lib/kmem.c lib/vmem_port_kernel.c lib/smp.c
# The kernel's own self-tests (tests/kernel/): libvmem on real memory, the
# harness hooks of tests/vtest.h, and the SMP stress.
KERNEL_TEST_SRCS := tests/kernel/ktest_env.c tests/kernel/ktests.c tests/kernel/smp_stress.c
KERNEL_OBJS := $(KERNEL_ASM_SRCS:%.S=$(KERNEL_OBJ_DIR)/%.o) \
               $(KERNEL_C_SRCS:%.c=$(KERNEL_OBJ_DIR)/%.o) \
               $(KERNEL_TEST_SRCS:%.c=$(KERNEL_OBJ_DIR)/%.o) \
               $(TEST_SRCS:%.c=$(KERNEL_OBJ_DIR)/%.o)
KERNEL_HEADERS := $(HEADERS) $(wildcard lib/*.h tests/kernel/*.h)

# Deliberately broken variants of the same kernel (boot/kmain.c with
# -DKERNEL_BREAK=...), which the runner must report as failures.
KERNEL_BREAKS := fail fault overflow hang triple no-result ap-fault ap-never-up ap-stall
KERNEL_BREAK_IMAGES := $(KERNEL_BREAKS:%=$(KERNEL_DIR)/vmem-kernel-break-%.elf32)

# Memory sizes check-kernel boots with: small, the default, and enough
# that QEMU puts RAM above 4 GiB.
KERNEL_CHECK_MEMORY := 64M 512M 4G
# CPUS:MEMORY of the SMP boots check-kernel adds.
KERNEL_CHECK_SMP := 2:512M 4:512M
RUN_MEMORY ?= 512M
CPUS ?= 1

$(KERNEL_OBJ_DIR)/%.o: %.c $(KERNEL_HEADERS)
	@mkdir -p $(dir $@)
	$(call quiet,CC,kernel $<)$(CC) $(KERNEL_CFLAGS) -c $< -o $@

$(KERNEL_OBJ_DIR)/%.o: %.S lib/layout.h
	@mkdir -p $(dir $@)
	$(call quiet,CC,kernel $<)$(CC) $(KERNEL_CFLAGS) -c $< -o $@

$(KERNEL_OBJ_DIR)/lib/string.o: KERNEL_CFLAGS += $(KERNEL_NO_LOOP_CALLS)

$(KERNEL_DIR)/main/kmain.o: boot/kmain.c $(KERNEL_HEADERS)
	@mkdir -p $(dir $@)
	$(call quiet,CC,kernel $<)$(CC) $(KERNEL_CFLAGS) -c $< -o $@

# "no-result" -> -DKERNEL_BREAK=KERNEL_BREAK_NO_RESULT
$(KERNEL_DIR)/break-%/kmain.o: boot/kmain.c $(KERNEL_HEADERS)
	@mkdir -p $(dir $@)
	$(call quiet,CC,kernel $< ($*))$(CC) $(KERNEL_CFLAGS) -DKERNEL_BREAK=KERNEL_BREAK_$$(echo $* | tr a-z- A-Z_) -c $< -o $@

# Links write to a temporary name: a failed link must not leave a file that
# looks up to date.
$(KERNEL_DIR)/vmem-kernel.elf: $(KERNEL_DIR)/main/kmain.o $(KERNEL_OBJS) $(KERNEL_LIB) \
                              boot/kernel.ld
	$(call quiet,LD,$@)$(CC) $(KERNEL_LDFLAGS) -o $@.tmp $< $(KERNEL_OBJS) $(KERNEL_LIB) && mv $@.tmp $@

$(KERNEL_DIR)/vmem-kernel-break-%.elf: $(KERNEL_DIR)/break-%/kmain.o $(KERNEL_OBJS) \
                                       $(KERNEL_LIB) boot/kernel.ld
	$(call quiet,LD,$@)$(CC) $(KERNEL_LDFLAGS) -o $@.tmp $< $(KERNEL_OBJS) $(KERNEL_LIB) && mv $@.tmp $@

# QEMU's -kernel loads Multiboot 1 images only as ELF32. The conversion
# keeps what QEMU uses: the program headers' physical (load) addresses,
# from 1 MiB up, and the entry point, in the identity-linked .boot section.
# The higher-half virtual addresses do not fit 32 bits and come out
# truncated (0x801xxxxx): read symbols and addresses in the 64-bit .elf.
$(KERNEL_DIR)/%.elf32: $(KERNEL_DIR)/%.elf
	$(call quiet,OBJCOPY,$@)$(KERNEL_OBJCOPY) -O elf32-i386 $< $@

# Keep the per-variant objects and 64-bit images make would otherwise
# delete as intermediates (gdb wants the .elf).
.SECONDARY: $(KERNEL_DIR)/vmem-kernel.elf $(KERNEL_BREAKS:%=$(KERNEL_DIR)/break-%/kmain.o) \
            $(KERNEL_BREAKS:%=$(KERNEL_DIR)/vmem-kernel-break-%.elf)

.PHONY: kernel kernel-breaks run check-kernel
kernel: $(KERNEL)
kernel-breaks: $(KERNEL_BREAK_IMAGES)

# The serial log stays in $(RUN_LOG); tools/vmem-svg (tools/svg.mk) draws
# every arena the kernel dumped next to it (run-<memory>-<arena>.svg, with
# CPUS=N run-<memory>-cpus<N>-<arena>.svg), even when the run failed: the
# pictures help most then. make's status is the runner's. Several CPUs
# under TCG on a loaded two-core machine take longer than one: the time
# limit leaves room for 8.
RUN_TIMEOUT ?= 600
RUN_LOG := $(KERNEL_DIR)/logs/run-$(RUN_MEMORY)$(if $(filter-out 1,$(CPUS)),-cpus$(CPUS)).log
SVG_TOOL ?= tools/vmem-svg
run: $(KERNEL)
	@status=0; tools/run-qemu.sh --summary --memory $(RUN_MEMORY) --cpus $(CPUS) \
	    --timeout $(RUN_TIMEOUT) --log $(RUN_LOG) $(KERNEL) || status=$$?; \
	if pictures=$$(python3 $(SVG_TOOL) --skip-empty --output-dir $(dir $(RUN_LOG)) \
	        --prefix $(notdir $(basename $(RUN_LOG)))- $(RUN_LOG)); then \
	    echo "run: $$(echo "$$pictures" | grep -c .) pictures of arenas: $(dir $(RUN_LOG))$(notdir $(basename $(RUN_LOG)))-*.svg"; \
	else echo "run: no pictures of the arenas (tools/vmem-svg failed)"; fi; \
	exit $$status

check-kernel: $(KERNEL) $(KERNEL_BREAK_IMAGES)
	boot/check-kernel.sh --kernel $(KERNEL) --breaks $(KERNEL_DIR) \
	    --memory "$(KERNEL_CHECK_MEMORY)" --smp "$(KERNEL_CHECK_SMP)" --logs $(KERNEL_DIR)/logs

CHECK_LAYERS += check-kernel
