#!/usr/bin/env bash
# tools/bench/check.sh BENCH_BIN OUTDIR - the check-bench layer of `make check`.
#
# Runs the quick benchmark once (results in OUTDIR/results.csv, its output in
# OUTDIR/bench.log) and counts one test per workload, and one for bad
# options (refused before anything runs). A workload passes when it ran,
# wrote the rows it must (the required_* lists below), and every row it
# wrote is well-formed and sane - eight fields, finite positive numbers
# (W5's growth per decade may be negative) with min <= median <= max, a
# positive run count, and no "alloc_failures" row. Nothing here asserts on
# speed. A benchmark that exits non-zero with every workload sane still
# counts one failure. Ends with "N passed, N failed" and exits non-zero if
# anything failed.
set -u
bin=$1
out=$2
workloads="META W1 W2 W3 W4 W5 W6"
# Rows a workload must write (param:metric, or policy:param:metric),
# beyond being sane: the classic vmem's figures and libvmem's ratio to
# them, which the project's targets (docs/performance.md) are stated
# against; W5's growth, as a ratio and per tenfold step in fragments; W6's
# scaling of one shared arena and its reference, an arena per thread.
required_W1="classic-instantfit:1000:ns_per_pair instantfit:1000:vs_classic instantfit:100000:vs_classic nextfit:100000:vs_classic bestfit:100000:vs_classic"
required_W2="classic-instantfit:1GiB:pct_allocated classic-bestfit:1GiB:pct_allocated"
required_W3="classic-instantfit:10000:ns_per_pair instantfit:10000:vs_classic"
required_W4="classic-nextfit:100000:ns_per_pair nextfit:100000:vs_classic instantfit:100000:vs_classic"
required_W5="bestfit:1000-10000:growth_ratio bestfit:1000-10000:ns_per_decade xalloc-instantfit:1000-10000:ns_per_decade"
required_W6="2-vs-1:scaling 2-arena-each:scaling 2-arena-each:ns_per_pair"
mkdir -p "$out"
csv=$out/results.csv
log=$out/bench.log
rm -f "$csv"

"$bin" --quick --csv "$csv" >"$log" 2>&1
status=$?

passed=0
failed=0
header="workload,policy,param,metric,median,min,max,runs"
if [ ! -f "$csv" ] || [ "$(head -n 1 "$csv")" != "$header" ]; then
    echo "FAIL results.csv: missing or without the header '$header'"
    bad_header=1
else
    bad_header=0
fi

for w in $workloads; do
    if [ "$bad_header" -eq 1 ]; then
        verdict="no readable results.csv"
    else
        need_var=required_$w
        verdict=$(awk -F, -v w="$w" -v need="${!need_var:-}" '
            function num(x) { return x ~ /^[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?$/ }
            function signed_num(x) { return x ~ /^-?[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?$/ }
            function abs(x) { return x < 0 ? -x : x }
            function at_most(a, b) { return a + 0 <= b + 1e-9 * (abs(a) + abs(b)) }
            NR == 1 { next }
            NF != 8 { if ($1 == w) { bad = "row " NR ": " NF " fields, not 8" }; next }
            $1 != w { next }
            {
                rows++
                # A growth (W5 per decade) may be negative; every other figure is a
                # time, a ratio, a percentage or a size, which cannot be.
                growth = $4 == "ns_per_decade"
                if (growth) {
                    if (!signed_num($5) || !signed_num($6) || !signed_num($7)) { bad = "row " NR ": a figure is not a finite number"; next }
                } else {
                    if (!num($5) || !num($6) || !num($7)) { bad = "row " NR ": a figure is not a finite number"; next }
                    if ($5 + 0 <= 0 || $6 + 0 <= 0 || $7 + 0 <= 0) { bad = "row " NR ": a figure is not positive"; next }
                }
                if (!at_most($6, $5) || !at_most($5, $7)) { bad = "row " NR ": not min <= median <= max"; next }
                if ($8 !~ /^[1-9][0-9]*$/) { bad = "row " NR ": runs is not a positive integer"; next }
                if ($4 == "alloc_failures") { bad = "row " NR ": " $4 " in a timed loop (" $2 " " $3 ")"; next }
                seen[$3 ":" $4] = 1
                seen[$2 ":" $3 ":" $4] = 1
            }
            END {
                n = split(need, wanted, " ")
                for (i = 1; i <= n && bad == ""; i++)
                    if (!(wanted[i] in seen)) bad = "no " wanted[i] " row"
                if (bad != "") print bad
                else if (rows == 0) print "no rows (did not run, or crashed before it)"
                else print "ok " rows
            }' "$csv")
    fi
    case $verdict in
    ok\ *)
        echo "PASS $w (${verdict#ok } rows)"
        passed=$((passed + 1))
        ;;
    *)
        echo "FAIL $w: $verdict"
        failed=$((failed + 1))
        ;;
    esac
done

# One more test: bad options. Each must be refused with a message on stderr
# and a non-zero status, before anything is measured or a results file is
# written. The options before the bad one keep a run short in case it is
# wrongly accepted (the last --runs or --only given wins).
refused_wrongly=""
for bad_option in "--runs 0" "--runs 65" "--only W9" "--n 5" "--n 1000,2000,3000,4000" \
    "--n 1000,x" "--frags 1000,1000" "--frags 10000,1000" "--pairs 0" "--no-such-option"; do
    rm -f "$out/refused.csv"
    # shellcheck disable=SC2086  # each option and its value are two words
    "$bin" --quick --only META --runs 1 $bad_option --csv "$out/refused.csv" \
        >/dev/null 2>"$out/refused.err"
    rc=$?
    if [ "$rc" -eq 0 ] || [ -e "$out/refused.csv" ] ||
        ! grep -q -E '^(vmem_bench: |usage: )' "$out/refused.err"; then
        refused_wrongly="$refused_wrongly '$bad_option'"
    fi
done
rm -f "$out/refused.csv" "$out/refused.err"
if [ -z "$refused_wrongly" ]; then
    echo "PASS options (bad ones refused with a message, nothing written)"
    passed=$((passed + 1))
else
    echo "FAIL options: not refused cleanly:$refused_wrongly"
    failed=$((failed + 1))
fi

if [ "$status" -ne 0 ]; then
    echo "FAIL vmem_bench exited with status $status; the end of $log:"
    tail -n 15 "$log"
    [ "$failed" -eq 0 ] && failed=1
elif [ "$failed" -ne 0 ]; then
    echo "the end of $log:"
    tail -n 15 "$log"
fi
grep -E '^Total [0-9.]+ s\.$' "$log" | sed 's/^/quick benchmark: /'
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$status" -eq 0 ]
