# tools/integrations.mk - the check-integrations layer: vmem.mk, CMake and
# meson each build the example port and a POSIX-port program
# (tools/check-integrations.sh). Uses EXAMPLE_DIR (examples/kernel_port/
# example.mk) and INSTALL_PROBE_C (tools/install.mk).

.PHONY: check-integrations
check-integrations:
	@tools/check-integrations.sh . $(EXAMPLE_DIR) $(LIB_SRCS)

CHECK_LAYERS += check-integrations
