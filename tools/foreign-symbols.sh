#!/usr/bin/env bash
# foreign-symbols.sh NM FILE... - prints, one a line, every symbol the
# object files or archives need from outside themselves other than the port
# hooks (vmem_port_*): libc, or compiler runtime such as memcpy, memset,
# __udivdi3 or __ctzdi2 that a compiler may emit on its own. Prints nothing
# when the library references nothing but the port. Fails if NM does.
set -eu -o pipefail
nm=$1
shift
{
    "$nm" --defined-only "$@" | awk 'NF == 3 { print "D", $3 }'
    "$nm" -u "$@" | awk 'NF >= 2 { print "U", $NF }'
} | awk '$1 == "D" { defined[$2] = 1 } $1 == "U" { used[$2] = 1 }
         END { for (s in used) if (!(s in defined) && s !~ /^vmem_port_/) print s }' | sort
