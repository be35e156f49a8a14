# examples/kernel_port/example.mk - the check-example layer: the minimal
# example port (a kernel with spinlocks and no scheduler) and its
# kernel_main, built the two ways that matter. Owns build/example/.
# Included by tools/cross.mk, whose per-architecture flags and archives it
# uses.
#
#   1. Freestanding, for every architecture in CROSS_ARCHS: the port, the
#      example and its stubs compiled with that architecture's kernel flags
#      and linked by ld.lld with build/cross/<arch>/libvmem.a into a static
#      ELF with --no-undefined, no libc and no compiler runtime. This proves
#      the port supplies every hook the library needs, and nothing else is
#      missing. (Linked, not run: there is no machine to boot it on here.)
#   2. Hosted: the same port and example with the library's sources (also
#      VMEM_PORT_CAN_SLEEP=0) and examples/kernel_port/host_main.c, run as a
#      program that checks what the example promises.
# Prints "ok   example.<what>" per build or check, then "N passed, N failed".

EXAMPLE_DIR   := examples/kernel_port
EXAMPLE_SRCS  := $(EXAMPLE_DIR)/vmem_port_example.c $(EXAMPLE_DIR)/kernel_vmem.c
EXAMPLE_HDRS  := $(HEADERS) $(wildcard $(EXAMPLE_DIR)/*.h)
EXAMPLE_LD    ?= ld.lld

# Where each architecture's example kernel is linked: x86_64's kernel code
# model needs the top 2 GiB; the others link where their boards load.
EXAMPLE_LDFLAGS_x86_64  := -Ttext=0xffffffff80100000
EXAMPLE_LDFLAGS_i386    := -Ttext=0x100000
EXAMPLE_LDFLAGS_aarch64 := -Ttext=0x40080000
EXAMPLE_LDFLAGS_riscv64 := -Ttext=0x80200000

define EXAMPLE_ARCH_RULES
$(BUILD)/example/$(1)/obj/%.o: %.c $(EXAMPLE_HDRS)
	@mkdir -p $$(dir $$@)
	$$(call quiet,CC,$(1) $$<)$(CROSS_CC) $$(call cross_flags,$(1)) -c $$< -o $$@

$(BUILD)/example/$(1)/kernel.elf: $(patsubst %.c,$(BUILD)/example/$(1)/obj/%.o,$(EXAMPLE_SRCS) $(EXAMPLE_DIR)/kernel_stubs.c) \
                                  $(BUILD)/cross/$(1)/libvmem.a
	$$(call quiet,LD,$$@)$(EXAMPLE_LD) -static -nostdlib --no-undefined -e kernel_entry $(EXAMPLE_LDFLAGS_$(1)) \
	    -o $$@ $$^
endef
$(foreach arch,$(CROSS_ARCHS),$(eval $(call EXAMPLE_ARCH_RULES,$(arch))))

EXAMPLE_HOST_CFLAGS := $(COMMON_CFLAGS) $(FREESTANDING_CONFIG) -O2 -g
EXAMPLE_HOST_OBJS := $(patsubst %.c,$(BUILD)/example/host/obj/%.o,\
                       $(LIB_SRCS) $(EXAMPLE_SRCS) $(EXAMPLE_DIR)/host_main.c)
EXAMPLE_HOST := $(BUILD)/example/host/example_kernel

$(BUILD)/example/host/obj/%.o: %.c $(EXAMPLE_HDRS)
	@mkdir -p $(dir $@)
	$(call quiet,CC,example $<)$(CC) $(EXAMPLE_HOST_CFLAGS) -c $< -o $@

$(EXAMPLE_HOST): $(EXAMPLE_HOST_OBJS)
	$(call quiet,LD,$@)$(CC) $(EXAMPLE_HOST_CFLAGS) -o $@ $^

.PHONY: example check-example
example: $(EXAMPLE_HOST) $(foreach arch,$(CROSS_ARCHS),$(BUILD)/example/$(arch)/kernel.elf)

check-example:
	@passed=0; failed=0; \
	for arch in $(CROSS_ARCHS); do \
	    log=$$($(MAKE) --no-print-directory -s $(BUILD)/example/$$arch/kernel.elf 2>&1); \
	    if [ $$? -eq 0 ]; then \
	        echo "ok   example.links_freestanding_$$arch"; passed=$$((passed + 1)); \
	    else \
	        echo "FAIL example.links_freestanding_$$arch"; echo "$$log" | grep -v '^make' | tail -n 12; \
	        failed=$$((failed + 1)); \
	    fi; \
	done; \
	if log=$$($(MAKE) --no-print-directory -s $(EXAMPLE_HOST) 2>&1); then \
	    out=$$($(EXAMPLE_HOST)); status=$$?; echo "$$out" | grep -vE '^[0-9]+ passed, [0-9]+ failed$$'; \
	    line=$$(echo "$$out" | grep -E '^[0-9]+ passed, [0-9]+ failed$$' | tail -n 1); \
	    if [ -n "$$line" ]; then \
	        passed=$$((passed + $${line%% passed*})); n=$${line#*, }; failed=$$((failed + $${n%% failed})); \
	    fi; \
	    if [ -z "$$line" ] || [ $$status -ne 0 -a "$${n%% failed}" = 0 ]; then \
	        echo "FAIL example.host_run (exit status $$status)"; failed=$$((failed + 1)); \
	    fi; \
	else \
	    echo "FAIL example.host_build"; echo "$$log" | tail -n 12; failed=$$((failed + 1)); \
	fi; \
	echo "$$passed passed, $$failed failed"; \
	[ $$failed -eq 0 ]

CHECK_LAYERS += check-example
