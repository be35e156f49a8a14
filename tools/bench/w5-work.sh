#!/usr/bin/env bash
# tools/bench/w5-work.sh BENCH_BIN - W5's work per request, counted instead
# of timed (`make bench-w5-work`; needs valgrind).
#
# W5's target is about growth: a request that must get past F fragments
# may cost no more than logarithmically more as F grows. Timed, that
# growth also contains every cache and TLB miss that a larger arena adds
# (and this VM's noise); counted in instructions, it is the algorithm's
# alone, and the same on every machine. For each W5 kind and fragment
# count, cachegrind counts the instructions libvmem's own code (src/)
# executes in two runs of vmem_bench that differ only in the number of
# requests (R and 2R); the difference, divided by the extra requests, is
# the work of one request, setup and the warm-up excluded. Prints one line
# per kind: instructions per request at each count, what each step to the
# next count added (a tenfold one by default), and the growth from the
# first count to the last next to the logarithm's.
set -eu
bin=$1
frags=${W5_WORK_FRAGS:-1000 10000 100000}
requests=${W5_WORK_REQUESTS:-20000}
kinds="bestfit firstfit nextfit instantfit xalloc-bestfit xalloc-firstfit xalloc-nextfit xalloc-instantfit"
command -v valgrind >/dev/null || { echo "w5-work: needs valgrind (apt-get install -y valgrind)" >&2; exit 1; }
command -v cg_annotate >/dev/null || { echo "w5-work: needs cg_annotate (valgrind)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Instructions of libvmem's own code in one run: KIND FRAGS REQUESTS.
own_instructions() {
    valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file="$tmp/cg.out" \
        "$bin" --only W5 --policy "$1" --frags "$2" --pairs "$3" --runs 1 --csv "$tmp/r.csv" \
        >/dev/null 2>&1 || { echo "w5-work: vmem_bench failed under cachegrind ($1, $2)" >&2; exit 1; }
    cg_annotate "$tmp/cg.out" | awk '
        /file:function/ { body = 1; next }
        body { n = $1; gsub(",", "", n); if (n ~ /^[0-9]+$/ && $NF ~ /\/src\//) own += n }
        END { printf "%.0f\n", own }'
}

# A run makes requests / 10 + 1 warm-up requests and the probe beside its
# timed ones, so R and 2R differ by R + R / 10 requests (integer division).
extra=$((requests + 2 * requests / 10 - requests / 10))
printf '%-18s' "kind"
for f in $frags; do printf ' %9s' "F=$f"; done
printf '   added per step      growth (log)\n'
for kind in $kinds; do
    line=$(printf '%-18s' "$kind")
    previous=
    steps=
    first=
    for f in $frags; do
        one=$(own_instructions "$kind" "$f" "$requests")
        two=$(own_instructions "$kind" "$f" $((2 * requests)))
        per=$(( (two - one) / extra ))
        line+=$(printf ' %9d' "$per")
        [ -n "$previous" ] && steps+=$(printf ' %+6d' $((per - previous)))
        [ -z "$first" ] && first=$per
        previous=$per
    done
    growth=$(awk -v a="$first" -v b="$previous" -v f="$frags" 'BEGIN {
        n = split(f, c, " "); printf "%.2f (%.2f)", b / a, log(c[n]) / log(c[1]) }')
    printf '%s  %s   %s\n' "$line" "$steps" "$growth"
done
