# tools/m32.mk - the whole host suite as a 32-bit program: the check-m32
# layer of `make check`. Owns build/m32/.
#
# The same sources as build/host/vmem_tests (library, POSIX port, shared and
# host-only suites) built with -m32, so uintptr_t and size_t are 32 bits:
# spans that end at 2^32, a 4 GiB address space, 32-bit hashes and bitmaps.
# The tests say "2^64" and mean "the top of the address space"; where a test
# needs addresses above 4 GiB it picks other ones on 32-bit (see the
# UINTPTR_MAX conditionals in tests/).
#
# Needs Debian's gcc-multilib (the 32-bit libc and libgcc). Some machines
# cannot execute 32-bit programs (no IA-32 emulation in the kernel or the
# sandbox); there the suite runs under qemu-i386 (Debian's qemu-user), with
# the randomized model tests at M32_EMULATED_RANDOM_OPS operations per seed
# so the layer stays well under a minute. VTEST_RANDOM_OPS / VTEST_SCALE in
# the environment override either way.

M32_CC     ?= $(CC)
M32_QEMU   ?= qemu-i386
M32_EMULATED_RANDOM_OPS ?= 100000
M32_CFLAGS := $(COMMON_CFLAGS) -m32 -O2 -g -D_GNU_SOURCE -DVMEM_DEBUG -pthread
M32_SRCS   := $(LIB_SRCS) $(PORT_POSIX) $(TEST_SRCS) $(HOST_ONLY_TEST_SRCS)
M32_OBJS   := $(M32_SRCS:%.c=$(BUILD)/m32/obj/%.o)
M32_TESTS  := $(BUILD)/m32/vmem_tests
M32_PROBE  := $(BUILD)/m32/probe

.PHONY: check-m32 m32

$(BUILD)/m32/obj/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(M32_CC) $(M32_CFLAGS) -c $< -o $@

$(M32_TESTS): $(M32_OBJS)
	$(M32_CC) $(M32_CFLAGS) -o $@ $^ $(HOST_LDLIBS)

# A do-nothing 32-bit program: can this machine run one natively?
$(M32_PROBE):
	@mkdir -p $(dir $@)
	printf 'int main(void) { return 0; }\n' | $(M32_CC) -m32 -x c - -o $@

m32: $(M32_TESTS)

# Layer: the host suite, 32-bit. A build failure is reported with the
# package it most likely lacks, and counts as one failure.
check-m32:
	@mkdir -p $(BUILD)/m32
	@if ! $(MAKE) --no-print-directory -s $(M32_TESTS) $(M32_PROBE) >$(BUILD)/m32/build.log 2>&1; then \
	    tail -n 20 $(BUILD)/m32/build.log; \
	    echo "FAIL m32.build (a 32-bit build needs gcc-multilib: apt-get install gcc-multilib)"; \
	    echo "0 passed, 1 failed"; exit 1; \
	fi; \
	if $(M32_PROBE) 2>/dev/null; then \
	    exec $(M32_TESTS); \
	elif command -v $(M32_QEMU) >/dev/null 2>&1; then \
	    echo "(this machine cannot execute 32-bit programs: running under $(M32_QEMU))"; \
	    VTEST_RANDOM_OPS=$${VTEST_RANDOM_OPS:-$(M32_EMULATED_RANDOM_OPS)} exec $(M32_QEMU) $(M32_TESTS); \
	else \
	    echo "FAIL m32.run (this machine cannot execute 32-bit programs and $(M32_QEMU) is missing: apt-get install qemu-user)"; \
	    echo "0 passed, 1 failed"; exit 1; \
	fi

CHECK_LAYERS += check-m32
