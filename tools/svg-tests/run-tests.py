#!/usr/bin/env python3
"""run-tests.py - the tests of tools/vmem-svg (make check-svg).

    tools/svg-tests/run-tests.py [VMEM_SVG]

Runs the tool on the dumps in this directory (known.dump, edges.dump,
kernel-serial.log) and on dumps generated here (many segments), reads the
pictures back as XML and checks what they must show: how many segment
rects of each class, at which x and width for a layout whose pixels are
known, the gap mark between spans, a span ending at the top of the address
space, an empty arena, sub-pixel aggregation, the legend and the stats.
Prints "ok   svg.<name>" or "FAIL svg.<name>: why" per test, then
"N passed, N failed"; exits non-zero on any failure.

Every test runs the tool in a fresh temporary directory, so tests share
nothing. Only the standard library is used.
"""

import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
TOOL = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "vmem-svg")
SVG = "{http://www.w3.org/2000/svg}"
MARGIN = 20  # the tool's left margin: strip x = MARGIN + pixel
WORK = tempfile.TemporaryDirectory(prefix="vmem-svg-tests.")  # removed at exit


class Failure(Exception):
    pass


def check(cond, why):
    if not cond:
        raise Failure(why)


def run(args, stdin=None):
    """Runs the tool in a new directory; returns (status, stdout, stderr, dir)."""
    out = tempfile.mkdtemp(dir=WORK.name)
    p = subprocess.run([sys.executable, TOOL, "-o", out] + args, input=stdin,
                       capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr, out


def draw(fixture, *options):
    status, stdout, stderr, out = run(list(options) + [os.path.join(HERE, fixture)])
    check(status == 0, "vmem-svg exited %d: %s" % (status, stderr.strip()))
    return out, stdout.split()


def load(path):
    try:
        return ET.parse(path).getroot()
    except ET.ParseError as e:
        raise Failure("%s is not well-formed XML: %s" % (path, e))


def rects(root, cls):
    """Segment rects whose class is exactly `cls` plus optional extra words
    (legend swatches, class "key ...", are left out)."""
    words = cls.split()
    found = []
    for r in root.iter(SVG + "rect"):
        have = r.get("class", "").split()
        if "key" not in have and have[:len(words)] == words:
            found.append(r)
    return found


def geometry(rs):
    return [(float(r.get("x")), float(r.get("width"))) for r in rs]


def texts(root):
    return [t.text or "" for t in root.iter(SVG + "text")]


# ---- The tests --------------------------------------------------------------


def known_layout_draws_each_allocated_segment_to_scale():
    out, _ = draw("known.dump", "--width", "1000", "--rows", "1")
    root = load(os.path.join(out, "known.svg"))
    got = geometry(rects(root, "alloc"))
    want = [(MARGIN + 0, 100), (MARGIN + 200, 100), (MARGIN + 300, 100)]
    check(got == want, "alloc rects at %s, expected %s" % (got, want))


def known_layout_marks_the_xalloc_segment():
    out, _ = draw("known.dump", "--width", "1000", "--rows", "1")
    got = geometry(rects(load(os.path.join(out, "known.svg")), "alloc xalloc"))
    check(got == [(MARGIN + 200, 100)], "xalloc rects at %s" % got)


def known_layout_draws_the_free_segments_between():
    out, _ = draw("known.dump", "--width", "1000", "--rows", "1")
    got = geometry(rects(load(os.path.join(out, "known.svg")), "free"))
    want = [(MARGIN + 100, 100), (MARGIN + 400, 600)]
    check(got == want, "free rects at %s, expected %s" % (got, want))


def picture_has_the_legend_and_the_stats():
    out, _ = draw("known.dump", "--width", "1000", "--rows", "1")
    root = load(os.path.join(out, "known.svg"))
    all_text = "\n".join(texts(root))
    for needed in ('vmem arena "known": quantum 0x1000, source none',
                   "stats: in_use 0x12c000, free 0x2bc000, total 0x3e8000",
                   "3 allocated segments", "largest free 0x258000",
                   "fragmentation 14.3%", "freelists: 2^18:1 2^21:1", "hash: 3 segments",
                   "allocated", "allocated (xalloc)", "free", "gap between spans",
                   "imported span"):
        check(needed in all_text, "no text %r in the picture" % needed)
    keys = [r for r in root.iter(SVG + "rect") if "key" in r.get("class", "").split()]
    check(len(keys) >= 6, "legend has %d swatches" % len(keys))


def lines_between_dump_lines_are_ignored():
    out, names = draw("known.dump")
    check([os.path.basename(n) for n in names] == ["known.svg"], "wrote %s" % names)
    root = load(os.path.join(out, "known.svg"))
    check(len(rects(root, "alloc")) == 3 and len(rects(root, "free")) == 2,
          "the interleaved lines changed the segments")


def kernel_serial_log_gives_one_picture_per_dump():
    out, names = draw("kernel-serial.log", "--prefix", "run-")
    base = [os.path.basename(n) for n in names]
    check(base == ["run-phys.svg", "run-kheap.svg", "run-api-dump.svg"], "wrote %s" % base)
    for n in names:
        load(n)
    phys = load(os.path.join(out, "run-phys.svg"))
    check(len(rects(phys, "free")) == 1 and not rects(phys, "alloc"), "phys is one free segment")
    api = load(os.path.join(out, "run-api-dump.svg"))
    check(len(rects(api, "alloc")) == 2 and len(rects(api, "alloc xalloc")) == 1,
          "api-dump has 2 allocated segments, one xalloc")
    check(len(rects(api, "gap")) == 1, "api-dump's two spans are apart: one gap mark")


def gap_between_spans_is_a_short_mark_and_top_is_the_end():
    out, _ = draw("edges.dump", "--width", "1010", "--rows", "1")
    root = load(os.path.join(out, "edges.svg"))
    gaps = geometry(rects(root, "gap"))
    check(gaps == [(MARGIN + 500, 10)], "gap marks at %s" % gaps)
    spans = geometry(rects(root, "span"))
    check(spans == [(MARGIN + 0, 500), (MARGIN + 510, 500)], "spans at %s" % spans)
    check(len(rects(root, "span imported")) == 1, "the second span is drawn as imported")
    alloc = geometry(rects(root, "alloc"))
    check(alloc == [(MARGIN + 0, 1), (MARGIN + 1009, 1)], "alloc rects at %s" % alloc)
    check("top" in texts(root), "no 'top' label at the end of the last span")
    titles = [t.text for t in root.iter(SVG + "title")]
    check("alloc [0xfffffffffffff000, top) size 0x1000 xalloc" in titles,
          "the segment at the top has no tooltip naming its range")


def arena_without_spans_draws_an_empty_row():
    out, _ = draw("edges.dump")
    root = load(os.path.join(out, "empty.svg"))
    for cls in ("alloc", "free", "mixed", "span", "gap"):
        check(not rects(root, cls), "empty arena has %s rects" % cls)
    check(any("no spans" in t for t in texts(root)), "no 'no spans' note")
    check(any("0 spans" in t for t in texts(root)), "no summary line")


def repeated_dump_of_an_arena_gets_a_numbered_picture():
    out, names = draw("edges.dump", "--width", "1010", "--rows", "1")
    base = [os.path.basename(n) for n in names]
    check(base == ["edges.svg", "empty.svg", "edges-2.svg"], "wrote %s" % base)
    second = load(os.path.join(out, "edges-2.svg"))
    check(len(rects(second, "alloc")) == 3, "the second dump has 3 allocated segments")


def segment_crossing_a_row_end_is_cut_in_two():
    out, _ = draw("known.dump", "--width", "500", "--rows", "2")
    root = load(os.path.join(out, "known.svg"))
    # 1000 quanta on two rows of 500 px: the last free segment [400, 1000)
    # runs from x 400 in row 0 into row 1.
    free = [(float(r.get("x")), float(r.get("width")), float(r.get("y")))
            for r in rects(root, "free")]
    check(len(free) == 3, "free rects %s" % free)
    check(free[1][:2] == (MARGIN + 400, 100) and free[2][:2] == (MARGIN + 0, 500)
          and free[2][2] > free[1][2], "the cut is wrong: %s" % free)


def many_segments_aggregate_below_a_pixel():
    lines = ['vmem arena "many": quantum 0x1, source none',
             "  stats: in_use 0x186a0, free 0x186a0, total 0x30d40, import 0x0, "
             "allocs 100000, frees 0",
             "  span  [0x0, 0x30d40) size 0x30d40"]
    for i in range(100000):
        kind = "alloc" if i % 2 == 0 else "free "
        lines.append("    %s [0x%x, 0x%x) size 0x1" % (kind, i * 2, i * 2 + 2))
    # Not a valid arena (adjacent free segments would have coalesced), but
    # the picture only needs the segments: half the bytes are allocated.
    lines = [l.replace("size 0x1", "size 0x2") for l in lines]
    lines.append("  hash: 50000 segments in 65536 buckets; tags: 100001 segments")
    status, stdout, stderr, out = run(["--width", "500", "--rows", "2", "-"],
                                      stdin="\n".join(lines) + "\n")
    check(status == 0, "exit %d: %s" % (status, stderr.strip()))
    root = load(os.path.join(out, "many.svg"))
    mixed = rects(root, "mixed")
    check(900 <= len(mixed) <= 1000, "%d mixed columns for 1000 pixels" % len(mixed))
    check(not rects(root, "alloc") and not rects(root, "free"),
          "sub-pixel segments drawn one by one")
    fills = {r.get("fill") for r in mixed}
    check(len(fills) <= 3, "half-allocated columns have %d shades: %s" % (len(fills), fills))


def input_without_a_dump_fails():
    status, stdout, stderr, _ = run(["-"], stdin="hello\nno dump here\n")
    check(status == 1, "exit status %d" % status)
    check("no vmem_dump output" in stderr, "stderr: %r" % stderr)


def every_picture_is_well_formed_xml_with_an_svg_root():
    for fixture in ("known.dump", "edges.dump", "kernel-serial.log"):
        _, names = draw(fixture)
        for n in names:
            root = load(n)
            check(root.tag == SVG + "svg", "%s: root is %s" % (n, root.tag))
            check(float(root.get("width")) > 0 and float(root.get("height")) > 0,
                  "%s has no size" % n)


TESTS = [
    known_layout_draws_each_allocated_segment_to_scale,
    known_layout_marks_the_xalloc_segment,
    known_layout_draws_the_free_segments_between,
    picture_has_the_legend_and_the_stats,
    lines_between_dump_lines_are_ignored,
    kernel_serial_log_gives_one_picture_per_dump,
    gap_between_spans_is_a_short_mark_and_top_is_the_end,
    arena_without_spans_draws_an_empty_row,
    repeated_dump_of_an_arena_gets_a_numbered_picture,
    segment_crossing_a_row_end_is_cut_in_two,
    many_segments_aggregate_below_a_pixel,
    input_without_a_dump_fails,
    every_picture_is_well_formed_xml_with_an_svg_root,
]


def main():
    passed = failed = 0
    for test in TESTS:
        try:
            test()
        except Failure as e:
            print("FAIL svg.%s: %s" % (test.__name__, e))
            failed += 1
        except Exception as e:  # a crash of the test or the tool is a failure too
            print("FAIL svg.%s: %s: %s" % (test.__name__, type(e).__name__, e))
            failed += 1
        else:
            print("ok   svg.%s" % test.__name__)
            passed += 1
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
