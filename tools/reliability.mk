# tools/reliability.mk - the reliability layers of libvmem: sanitizers,
# valgrind, lint, fuzzing, fault injection and the soak run.
#
# Included by the top-level Makefile (-include tools/*.mk), so it sees
# LIB_SRCS, PORT_POSIX, TEST_SRCS, COMMON_CFLAGS, HEADERS and CHECK_LAYERS.
# It owns everything under build/asan, build/tsan, build/fuzz, build/faults
# and build/soak, and the sources in tools/fuzz, tools/lint and tools/soak.
#
# Layers added to `make check` (each ends with "N passed, N failed"):
#   check-asan    the host suite under AddressSanitizer + UBSan
#   check-tsan    the host suite and a short threaded soak under TSan
#   check-lint    cppcheck and clang-tidy on src/ and include/
#   check-fuzz    the libFuzzer target: corpus replay, then a timed run
#   check-faults  page-source and import failures, tag exhaustion, leaks
# On demand only:
#   check-valgrind  the host suite under valgrind memcheck
#   fuzz            FUZZ_SECONDS=N of fuzzing (default 300)
#   soak            SECONDS=N of randomized single- and multi-threaded load

# Sanitizer builds use clang whatever CC is: libFuzzer needs it, and one
# compiler keeps the sanitizer runtimes consistent. SAN_CC=gcc also works
# for check-asan / check-tsan / check-faults.
SAN_CC ?= clang
FUZZ_CC ?= clang

SAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all \
             -fno-omit-frame-pointer -O1 -g
ASAN_CFLAGS := $(COMMON_CFLAGS) -D_GNU_SOURCE -DVMEM_DEBUG -pthread $(SAN_FLAGS)
TSAN_CFLAGS := $(COMMON_CFLAGS) -D_GNU_SOURCE -DVMEM_DEBUG -pthread -fsanitize=thread -O1 -g
FUZZ_CFLAGS := $(COMMON_CFLAGS) -D_GNU_SOURCE -DVMEM_DEBUG -pthread -g -O1 -fno-omit-frame-pointer \
               -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all

# check-asan runs the suite at its own scale (10^6 segments: about 25 s
# under ASan on two cores); SAN_SCALE=N / SAN_RANDOM_OPS=N reduce it if the
# suite grows. TSan is 5-15x slower than native, so check-tsan runs the
# scale and model tests smaller: the threaded tests are what it is for.
SAN_SCALE ?=
SAN_RANDOM_OPS ?=
TSAN_SCALE ?= 200000
TSAN_RANDOM_OPS ?= 50000
ASAN_ENV := $(if $(SAN_SCALE),VTEST_SCALE=$(SAN_SCALE)) \
            $(if $(SAN_RANDOM_OPS),VTEST_RANDOM_OPS=$(SAN_RANDOM_OPS)) \
            ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:strict_string_checks=1 \
            UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

# The host suite as build/host/vmem_tests has it: the shared suites, then
# the host-only ones (tests/host_*.c, which include the runner host_main.c).
HOST_SUITE_SRCS := $(LIB_SRCS) $(PORT_POSIX) $(TEST_SRCS) $(sort $(wildcard tests/host_*.c))
REL_HEADERS := $(HEADERS) $(wildcard tools/fuzz/*.h tools/soak/*.h)

.PHONY: check-asan check-tsan check-valgrind check-lint fuzz check-fuzz check-faults soak

# ---- AddressSanitizer + UndefinedBehaviorSanitizer ------------------------
ASAN_TESTS := $(BUILD)/asan/vmem_tests
ASAN_OBJS := $(HOST_SUITE_SRCS:%.c=$(BUILD)/asan/obj/%.o)

$(BUILD)/asan/obj/%.o: %.c $(REL_HEADERS)
	@mkdir -p $(dir $@)
	$(SAN_CC) $(ASAN_CFLAGS) -c $< -o $@

$(ASAN_TESTS): $(ASAN_OBJS)
	$(SAN_CC) $(ASAN_CFLAGS) -o $@ $^ $(HOST_LDLIBS)

check-asan: $(ASAN_TESTS)
	$(ASAN_ENV) $(ASAN_TESTS)

# ---- ThreadSanitizer ------------------------------------------------------
# The suite has threaded tests (tests/host_threads.c), so this layer is in
# `make check`. It also runs the soak program's threaded phase for 5 s (one
# more test): mixed arenas, caches and imports from four threads.
TSAN_TESTS := $(BUILD)/tsan/vmem_tests
TSAN_OBJS := $(HOST_SUITE_SRCS:%.c=$(BUILD)/tsan/obj/%.o)
TSAN_SOAK := $(BUILD)/tsan/vmem_soak
TSAN_ENV := VTEST_SCALE=$(TSAN_SCALE) VTEST_RANDOM_OPS=$(TSAN_RANDOM_OPS) \
            TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1

$(BUILD)/tsan/obj/%.o: %.c $(REL_HEADERS)
	@mkdir -p $(dir $@)
	$(SAN_CC) $(TSAN_CFLAGS) -c $< -o $@

$(TSAN_TESTS): $(TSAN_OBJS)
	$(SAN_CC) $(TSAN_CFLAGS) -o $@ $^ $(HOST_LDLIBS)

$(TSAN_SOAK): $(LIB_SRCS:%.c=$(BUILD)/tsan/obj/%.o) $(PORT_POSIX:%.c=$(BUILD)/tsan/obj/%.o) \
              $(BUILD)/tsan/obj/tools/soak/soak.o
	$(SAN_CC) $(TSAN_CFLAGS) -o $@ $^ $(HOST_LDLIBS)

check-tsan: $(TSAN_TESTS) $(TSAN_SOAK)
	@$(TSAN_ENV) tools/soak/check-tsan.sh $(TSAN_TESTS) $(TSAN_SOAK)

# ---- valgrind memcheck ----------------------------------------------------
# The library keeps boundary-tag pages for the life of the process (see
# src/vmem_tags.c): they come from mmap, which memcheck does not track as
# heap, and are reachable from static pointers anyway. Only definite and
# indirect losses are errors; memory errors always are.
VALGRIND_FLAGS := --error-exitcode=99 --leak-check=full --show-leak-kinds=definite,indirect \
                  --errors-for-leak-kinds=definite,indirect --track-origins=yes \
                  --fair-sched=yes
VALGRIND_SCALE ?= 50000
VALGRIND_RANDOM_OPS ?= 10000

check-valgrind: $(HOST_TESTS)
	VTEST_SCALE=$(VALGRIND_SCALE) VTEST_RANDOM_OPS=$(VALGRIND_RANDOM_OPS) \
	    valgrind $(VALGRIND_FLAGS) $(HOST_TESTS)

# ---- Lint -----------------------------------------------------------------
check-lint:
	@CC="$(CC)" tools/lint/run-lint.sh

# ---- libFuzzer ------------------------------------------------------------
FUZZER := $(BUILD)/fuzz/fuzz_vmem
FUZZ_SECONDS ?= 300
FUZZ_CHECK_SECONDS ?= 20
FUZZ_WORK := $(BUILD)/fuzz/corpus
FUZZ_OPTS := -max_len=4096 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
             -artifact_prefix=$(BUILD)/fuzz/

$(FUZZER): $(LIB_SRCS) $(PORT_POSIX) tools/fuzz/fuzz_vmem.c $(REL_HEADERS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $(LIB_SRCS) $(PORT_POSIX) tools/fuzz/fuzz_vmem.c

# New inputs go to build/fuzz/corpus (the seeds in tools/fuzz/corpus stay as
# they are); crashes to build/fuzz/crash-*. Minimise one with
#   build/fuzz/fuzz_vmem -minimize_crash=1 -runs=100000 build/fuzz/crash-...
fuzz: $(FUZZER)
	@tools/fuzz/run-fuzz.sh $(FUZZER) tools/fuzz/corpus $(BUILD)/fuzz $(FUZZ_SECONDS)

check-fuzz: $(FUZZER)
	@tools/fuzz/check-fuzz.sh $(FUZZER) tools/fuzz/corpus $(BUILD)/fuzz $(FUZZ_CHECK_SECONDS)

# ---- Fault injection ------------------------------------------------------
FAULTS := $(BUILD)/faults/vmem_faults

$(FAULTS): $(LIB_SRCS) $(PORT_POSIX) tools/fuzz/faults.c $(REL_HEADERS)
	@mkdir -p $(dir $@)
	$(SAN_CC) $(ASAN_CFLAGS) -o $@ $(LIB_SRCS) $(PORT_POSIX) tools/fuzz/faults.c $(HOST_LDLIBS)

check-faults: $(FAULTS)
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 $(FAULTS)

# ---- Soak -----------------------------------------------------------------
SOAK := $(BUILD)/soak/vmem_soak
SECONDS ?= 60
SOAK_THREADS ?= 4

$(SOAK): $(HOST_LIB) tools/soak/soak.c $(REL_HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(HOST_CFLAGS) -o $@ tools/soak/soak.c $(HOST_LIB) $(HOST_LDLIBS)

soak: $(SOAK)
	$(SOAK) --seconds $(SECONDS) --threads $(SOAK_THREADS)

CHECK_LAYERS += check-asan check-tsan check-lint check-fuzz check-faults
