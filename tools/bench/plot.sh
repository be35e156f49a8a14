#!/usr/bin/env bash
# tools/bench/plot.sh RESULTS.CSV OUTDIR - `make bench-plot`: draws the
# benchmark figures from results.csv with gnuplot, as SVG:
#   OUTDIR/w1.svg  W1 ns per free+alloc pair against live segments N, one
#                  line per policy, log-log, bars from min to max
#   OUTDIR/w5.svg  W5 ns per request against the number of fragments the
#                  request must skip, one line per request kind, log-log
# The data files gnuplot reads are left in OUTDIR/plot/.
set -eu
csv=$1
out=$2
if ! command -v gnuplot >/dev/null 2>&1; then
    echo "bench-plot: gnuplot is missing (Debian: apt-get install -y gnuplot-nox)" >&2
    exit 1
fi
[ -f "$csv" ] || { echo "bench-plot: no $csv (run make bench first)" >&2; exit 1; }
data=$out/plot
mkdir -p "$data"

# series WORKLOAD METRIC: one file per policy, "param median min max" sorted
# by param; prints the gnuplot plot clauses for them.
series() {
    local workload=$1 metric=$2 clauses="" policy file
    for policy in $(awk -F, -v w="$workload" -v m="$metric" \
                        'NR > 1 && $1 == w && $4 == m && !seen[$2]++ { print $2 }' "$csv"); do
        file=$data/$workload-$policy.dat
        awk -F, -v w="$workload" -v m="$metric" -v p="$policy" \
            'NR > 1 && $1 == w && $4 == m && $2 == p { print $3, $5, $6, $7 }' "$csv" |
            sort -n >"$file"
        clauses="$clauses${clauses:+, }'$file' using 1:2:3:4 with yerrorlines title '$policy'"
    done
    printf '%s' "$clauses"
}

w1=$(series W1 ns_per_pair)
if [ -n "$w1" ]; then
    # The project's W1 targets (docs/performance.md: 40 ns at 10^3, 120 at
    # 10^5, 700 at 10^6), for reference.
    printf '%s\n' '1000 40' '100000 120' '1000000 700' >"$data/W1-target.dat"
    w1="$w1, '$data/W1-target.dat' using 1:2 with lines dashtype 2 linecolor 'gray40' title 'target'"
fi
w5=$(series W5 ns_per_request)
[ -n "$w1" ] || [ -n "$w5" ] || { echo "bench-plot: no W1 or W5 rows in $csv" >&2; exit 1; }

common="set terminal svg size 900,560 dynamic enhanced font 'sans,12'
set logscale xy
set grid
set key outside right top
set format x '10^{%L}'
set pointsize 0.8
set autoscale xfix
set offsets graph 0.04, graph 0.04, 0, 0"

if [ -n "$w1" ]; then
    gnuplot <<GP
$common
set output '$out/w1.svg'
set title 'W1 steady state: random free+alloc pairs, segments of 1-16 quanta, arena 32N quanta'
set xlabel 'live segments N'
set ylabel 'ns per pair (median, bars min..max)'
plot $w1
GP
    echo "bench-plot: $out/w1.svg"
fi
if [ -n "$w5" ]; then
    gnuplot <<GP
$common
set output '$out/w5.svg'
set title 'W5 adversarial: requests that must skip F too-small or misaligned fragments'
set xlabel 'fragments F'
set ylabel 'ns per request, alloc + free (median, bars min..max)'
plot $w5
GP
    echo "bench-plot: $out/w5.svg"
fi
