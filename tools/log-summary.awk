# log-summary.awk - the test kernel's serial log in a screenful, for
# `make run` (tools/run-qemu.sh --summary); the log file keeps everything.
#   - consecutive "ok   suite.test" lines become one "ok   suite: N passed";
#   - a vmem_dump keeps its heading and stats line, and its spans, segments,
#     freelists and hash lines become one line of counts;
#   - everything else (boot messages, FAIL lines, reports, the result line)
#     is shown as it comes.
function flush_ok() {
    if (ok_count > 0)
        printf "ok   %s: %d passed\n", ok_suite, ok_count
    ok_count = 0
}
function flush_dump() {
    if (in_dump)
        printf "  (%d spans, %d segments: the whole dump is in the log)\n", spans, segments
    in_dump = 0
}
/^ok   / {
    flush_dump()
    suite = $2
    sub(/\..*/, "", suite)
    if (suite != ok_suite)
        flush_ok()
    ok_suite = suite
    ok_count++
    next
}
/^vmem arena "/ {
    flush_ok(); flush_dump()
    in_dump = 1; spans = 0; segments = 0
    print; fflush(); next
}
in_dump && /^  stats:/ { print; fflush(); next }
in_dump && /^  span / { spans++; next }
in_dump && /^    (free|alloc) / { segments++; next }
in_dump && /^  (freelists|hash|qcache|quantum caches)/ { next }
in_dump && /^  / { next }
{ flush_ok(); flush_dump(); print; fflush() }
END { flush_ok(); flush_dump() }
