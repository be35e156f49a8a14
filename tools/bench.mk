# tools/bench.mk - the benchmark suite (docs/performance.md describes its
# workloads, method and targets): `make bench`, `make bench-plot` and the
# check-bench layer of `make check`. Owns build/bench/.
#
#   make bench                  full run: table on stdout, build/bench/results.csv
#   BENCH_QUICK=1 make bench    reduced sizes, well under 30 seconds
#   make bench BENCH_ARGS='--only W1,W5 --runs 9'   any vmem_bench options
#   make bench-plot             build/bench/w1.svg and w5.svg (needs gnuplot)
#   make bench-w5-work          W5's instructions per request (cachegrind): its
#                               growth free of cache misses and this VM's noise
#
# The library is compiled again here, optimised and without assertions, so
# the figures do not depend on how build/host/ was configured.

BENCH_DIR    := $(BUILD)/bench
BENCH_CFLAGS := $(COMMON_CFLAGS) -O2 -g -DNDEBUG -D_GNU_SOURCE -pthread
BENCH_LIB_OBJS := $(addprefix $(BENCH_DIR)/obj/,$(LIB_SRCS:.c=.o) $(PORT_POSIX:.c=.o))
BENCH_OBJ    := $(BENCH_DIR)/obj/tools/bench/bench.o $(BENCH_DIR)/obj/tools/bench/classic.o
BENCH_BIN    := $(BENCH_DIR)/vmem_bench
BENCH_ARGS   ?=
BENCH_FLAGS   = $(if $(filter-out 0,$(BENCH_QUICK)),--quick) $(BENCH_ARGS)

.PHONY: bench bench-plot bench-w5-work check-bench

$(BENCH_LIB_OBJS) $(BENCH_OBJ): $(BENCH_DIR)/obj/%.o: %.c $(HEADERS) tools/bench/classic.h
	@mkdir -p $(dir $@)
	$(call quiet,CC,bench $<)$(CC) $(BENCH_CFLAGS) -c $< -o $@

$(BENCH_BIN): $(BENCH_OBJ) $(BENCH_LIB_OBJS)
	$(call quiet,LD,$@)$(CC) $(BENCH_CFLAGS) -o $@ $^ -lpthread -lm

bench: $(BENCH_BIN)
	$(BENCH_BIN) $(BENCH_FLAGS) --csv $(BENCH_DIR)/results.csv

bench-plot:
	@test -f $(BENCH_DIR)/results.csv || $(MAKE) --no-print-directory bench
	tools/bench/plot.sh $(BENCH_DIR)/results.csv $(BENCH_DIR)

bench-w5-work: $(BENCH_BIN)
	tools/bench/w5-work.sh $(BENCH_BIN)

# Layer: the quick benchmark once; a workload passes when it ran and its
# figures are sane (no timing assertions). Writes build/bench/check/.
check-bench: $(BENCH_BIN)
	tools/bench/check.sh $(BENCH_BIN) $(BENCH_DIR)/check

CHECK_LAYERS += check-bench
