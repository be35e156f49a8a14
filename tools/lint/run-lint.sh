#!/usr/bin/env bash
# run-lint.sh - the check-lint layer: cppcheck and clang-tidy over src/ and
# include/, each one test. Configuration and every suppression, with its
# reason, live next to this script:
#   cppcheck-suppressions.txt   cppcheck --suppressions-list
#   vmem.cfg                    what cppcheck must know of the port contract
#   clang-tidy.yaml             the curated checks and why some are off
#   clang-tidy-suppressions.txt false positives, FILE|CHECK|MESSAGE
# clang-tidy analyses each source as the hosted build compiles it and,
# where the library has #if on a configuration option, also as the
# freestanding build does (VMEM_PORT_CAN_SLEEP=0), so both sides are seen;
# files run two at a time. cppcheck sees every #if configuration itself,
# except VMEM_CONFIG_HEADER (a kernel's own header, which does not exist
# here). Ends with "N passed, N failed".
set -u
cd "$(dirname "$0")/../.."
passed=0
failed=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

result() { # name status detail-file
    if [ "$2" -eq 0 ]; then
        echo "ok   lint.$1"
        passed=$((passed + 1))
    else
        echo "FAIL lint.$1:"
        sed 's/^/    /' "$3"
        failed=$((failed + 1))
    fi
}

lib_srcs=$(ls src/*.c)
port_srcs=$(ls src/port/*.c)

# ---- cppcheck ---------------------------------------------------------------
cppcheck --enable=warning,performance,portability --std=c11 --error-exitcode=1 \
    --library=tools/lint/vmem.cfg \
    --inline-suppr --suppressions-list=tools/lint/cppcheck-suppressions.txt \
    --template='{file}:{line}:{column}: {severity}: {message} [{id}]' \
    -q -Iinclude -Isrc -D_GNU_SOURCE -UVMEM_CONFIG_HEADER -j 2 src include >"$tmp/cppcheck" 2>&1
status=$?
[ -s "$tmp/cppcheck" ] && [ "$status" -eq 0 ] && status=1
result cppcheck "$status" "$tmp/cppcheck"

# ---- clang-tidy ---------------------------------------------------------------
hosted="-D_GNU_SOURCE -pthread"
freestanding="-DVMEM_PORT_CAN_SLEEP=0 -ffreestanding"
{
    for f in $lib_srcs $port_srcs; do echo "$f|$hosted"; done
    for f in $(grep -l '^#if.*VMEM_' $lib_srcs); do echo "$f|$freestanding"; done
} | xargs -d '\n' -P 2 -I{} sh -c '
    f=${1%%|*}; flags=${1#*|}
    clang-tidy --quiet --config-file=tools/lint/clang-tidy.yaml "$f" -- \
        -std=c11 -Iinclude -Isrc $flags 2>/dev/null' sh {} >"$tmp/tidy.raw"
# Keep each finding's first line; drop the suppressed ones.
grep -E '^[^ ]+:[0-9]+:[0-9]+: (warning|error): ' "$tmp/tidy.raw" | sort -u >"$tmp/tidy.all"
: >"$tmp/tidy"
while IFS= read -r line; do
    file=${line%%:*}
    file=${file#"$PWD/"}
    check=${line##*[}
    check=${check%]}
    msg=${line#*: warning: }
    msg=${msg#*: error: }
    msg=${msg% \[*}
    if ! grep -qxF "$file|$check|$msg" tools/lint/clang-tidy-suppressions.txt; then
        echo "$line" >>"$tmp/tidy"
    fi
done <"$tmp/tidy.all"
status=0
[ -s "$tmp/tidy" ] && status=1
result clang-tidy "$status" "$tmp/tidy"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
