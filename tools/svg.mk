# tools/svg.mk - pictures of arenas: tools/vmem-svg turns vmem_dump output
# into one SVG per arena (`make run` draws the test kernel's; see
# boot/kernel.mk), and check-svg tests the tool on the fixtures in
# tools/svg-tests/. Included by the top-level Makefile.
#
#   make check-svg   ends with one "N passed, N failed" line
#
# The tool and its tests need python3 (the standard library only). Without
# it the layer says so and counts one failure instead of passing silently.

SVG_TOOL := tools/vmem-svg

.PHONY: check-svg
check-svg:
	@command -v python3 >/dev/null 2>&1 || { \
	    echo "check-svg: python3 not found (apt-get install python3-minimal)"; \
	    echo "0 passed, 1 failed"; exit 1; }
	python3 tools/svg-tests/run-tests.py $(SVG_TOOL)

CHECK_LAYERS += check-svg
