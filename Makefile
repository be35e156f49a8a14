# libvmem - top-level build.
#
#   make            build/libvmem.a (freestanding x86_64) and build/host/libvmem.a
#   make check      every test layer; ends with one line "N passed, N failed"
#   make check-quick  the host suite and one boot, for the edit-compile-test loop
#   make run        boot the test kernel under QEMU and show its serial log
#
# Warnings are errors under gcc and clang alike (CC=clang make check).

CC      ?= gcc

# Quiet builds: one line per step ("  CC      src/vmem_tree.c"); make V=1
# shows every command in full. Used as $(call quiet,CC,$<)command.
V ?= 0
ifeq ($(V),1)
quiet =
else
quiet = @printf '  %-7s %s\n' '$(1)' '$(2)';
endif
AR      ?= ar
BUILD   := build

LIB_SRCS := src/vmem_arena.c src/vmem_alloc.c src/vmem_place.c src/vmem_segment.c \
            src/vmem_tree.c src/vmem_hash.c src/vmem_tags.c src/vmem_qcache.c \
            src/vmem_misuse.c src/vmem_debug.c
PORT_POSIX := src/port/posix.c
TEST_SRCS := tests/vtest.c tests/vtest_suites.c $(sort $(wildcard tests/test_*.c))

WARNINGS := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
            -Wpointer-arith -Wcast-align -Wundef -Wvla
COMMON_CFLAGS := -std=c11 $(WARNINGS) -Iinclude -Isrc

# The freestanding library: no libc, no FPU/SIMD state touched, no red zone
# (interrupt handlers share the stack), and the kernel code model so it links
# both low and in a higher-half kernel at -2 GiB.
# It is built for a port without a scheduler, like the test kernel's
# (VMEM_PORT_CAN_SLEEP=0); a kernel that can sleep compiles src/ with its
# own configuration (see docs/porting.md).
FREESTANDING_CONFIG ?= -DVMEM_PORT_CAN_SLEEP=0
FREESTANDING_CFLAGS := $(COMMON_CFLAGS) $(FREESTANDING_CONFIG) -O2 -ffreestanding -fno-stack-protector \
            -fno-pic -mno-red-zone -mno-sse -mno-mmx -mno-80387 -mcmodel=kernel \
            -fno-asynchronous-unwind-tables
HOST_CFLAGS := $(COMMON_CFLAGS) -O2 -g -D_GNU_SOURCE -DVMEM_DEBUG -pthread
HOST_LDLIBS := -lpthread

LIB      := $(BUILD)/libvmem.a
HOST_LIB := $(BUILD)/host/libvmem.a
HOST_TESTS := $(BUILD)/host/vmem_tests

LIB_OBJS      := $(LIB_SRCS:%.c=$(BUILD)/obj/%.o)
HOST_LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/host/obj/%.o) $(PORT_POSIX:%.c=$(BUILD)/host/obj/%.o)
# Host-only tests (threads): tests/host_*.c, run after the shared suites.
HOST_ONLY_TEST_SRCS := $(sort $(wildcard tests/host_*.c))
HOST_TEST_OBJS := $(TEST_SRCS:%.c=$(BUILD)/host/obj/%.o) $(HOST_ONLY_TEST_SRCS:%.c=$(BUILD)/host/obj/%.o)

HEADERS := $(wildcard include/*.h src/*.h tests/*.h)

.PHONY: all check check-host check-lib check-quick check-boot clean
all: $(LIB) $(HOST_LIB)

$(BUILD)/obj/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(call quiet,CC,$<)$(CC) $(FREESTANDING_CFLAGS) -c $< -o $@

$(BUILD)/host/obj/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(call quiet,CC,host $<)$(CC) $(HOST_CFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJS)
	@rm -f $@
	$(call quiet,AR,$@)$(AR) rcs $@ $^

$(HOST_LIB): $(HOST_LIB_OBJS)
	@rm -f $@
	$(call quiet,AR,$@)$(AR) rcs $@ $^

$(HOST_TESTS): $(HOST_TEST_OBJS) $(HOST_LIB)
	$(call quiet,LD,$@)$(CC) $(HOST_CFLAGS) -o $@ $(HOST_TEST_OBJS) $(HOST_LIB) $(HOST_LDLIBS)

# Layer: the host unit, property and model tests.
check-host: $(HOST_TESTS)
	$(HOST_TESTS)

# Layer: properties of the built library itself (no libc, header hygiene).
check-lib: $(LIB) $(HOST_LIB)
	tools/check-lib.sh $(LIB) $(HOST_LIB)

# Test layers run by `make check`, in order; included makefiles add theirs
# (tools/*.mk: sanitizers, fuzzing, benchmarks; boot/kernel.mk: QEMU last).
CHECK_LAYERS := check-lib check-host

-include $(sort $(wildcard tools/*.mk))
-include boot/kernel.mk

# Every layer, then the aggregate line CI reads.
check: all
	@MAKE="$(MAKE)" tools/check.sh $(CHECK_LAYERS)

# The edit-compile-test loop: the host suite and one quiet boot at 64 MiB.
check-quick: all
	@MAKE="$(MAKE)" tools/check.sh check-host check-boot

check-boot: $(KERNEL)
	@tools/run-qemu.sh --quiet --memory 64M --log $(KERNEL_DIR)/logs/quick-64M.log $(KERNEL)

clean:
	rm -rf $(BUILD)
