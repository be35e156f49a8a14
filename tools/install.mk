# tools/install.mk - `make install` / `make uninstall`, and the check-install
# layer of `make check`, which installs into a scratch DESTDIR and builds a
# program against what was installed.
#
#   make install PREFIX=/usr/local DESTDIR=/tmp/stage
#
# installs
#   $(INCLUDEDIR)/vmem.h vmem_port.h vmem_config.h   the API, the port
#                                       contract, the compile-time options
#   $(INCLUDEDIR)/vmem_posix.h          extras of the hosted library
#   $(LIBDIR)/libvmem.a                 the freestanding library (x86_64
#                                       kernel flags, VMEM_PORT_CAN_SLEEP=0),
#                                       for a kernel that supplies the port
#   $(LIBDIR)/libvmem-posix.a           the hosted library with the POSIX
#                                       port, for user space (-lpthread)
#   $(LIBDIR)/libvmem-<arch>.a          every other architecture's
#                                       freestanding library that was built
#                                       (`make cross`: build/cross/<arch>/)
#   $(PKGCONFIGDIR)/vmem-posix.pc       pkg-config for the hosted library
#   $(PKGCONFIGDIR)/vmem.pc, vmem-<arch>.pc  pkg-config for each freestanding
#                                       one: the include path, the options it
#                                       was built with, -lvmem[-<arch>]
# The libraries have different names on purpose: `-lvmem` on a user
# program would otherwise pick the kernel-model archive and fail to link
# (or link a port-less library).

PREFIX       ?= /usr/local
DESTDIR      ?=
INCLUDEDIR   ?= $(PREFIX)/include
LIBDIR       ?= $(PREFIX)/lib
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
INSTALL      ?= install
INSTALL_HEADERS := include/vmem.h include/vmem_impl.h include/vmem_port.h include/vmem_config.h \
                   include/vmem_posix.h
VMEM_VERSION ?= 0.1.0

.PHONY: install uninstall check-install

# install_pc(name, description, libs, cflags): writes one pkg-config file.
install_pc = printf '%s\n' 'prefix=$(PREFIX)' 'includedir=$(INCLUDEDIR)' 'libdir=$(LIBDIR)' '' \
    'Name: $(1)' 'Description: $(2)' 'Version: $(VMEM_VERSION)' \
    'Cflags: -I$${includedir} $(strip $(4))' 'Libs: -L$${libdir} $(3)' \
    >$(DESTDIR)$(PKGCONFIGDIR)/$(1).pc && chmod 644 $(DESTDIR)$(PKGCONFIGDIR)/$(1).pc

# The other architectures' archives that exist when install runs.
INSTALL_CROSS_ARCHS = $(filter-out x86_64,$(patsubst $(BUILD)/cross/%/libvmem.a,%,\
                        $(wildcard $(BUILD)/cross/*/libvmem.a)))

install: $(LIB) $(HOST_LIB)
	$(INSTALL) -d $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(PKGCONFIGDIR)
	$(INSTALL) -m 644 $(INSTALL_HEADERS) $(DESTDIR)$(INCLUDEDIR)/
	$(INSTALL) -m 644 $(LIB) $(DESTDIR)$(LIBDIR)/libvmem.a
	$(INSTALL) -m 644 $(HOST_LIB) $(DESTDIR)$(LIBDIR)/libvmem-posix.a
	$(call install_pc,vmem,vmem resource allocator for an x86_64 kernel (bring your own port),-lvmem,$(FREESTANDING_CONFIG))
	$(foreach arch,$(INSTALL_CROSS_ARCHS),\
	    $(INSTALL) -m 644 $(BUILD)/cross/$(arch)/libvmem.a $(DESTDIR)$(LIBDIR)/libvmem-$(arch).a && \
	    $(call install_pc,vmem-$(arch),vmem resource allocator for a $(arch) kernel (bring your own port),-lvmem-$(arch),$(FREESTANDING_CONFIG)) &&) true
	printf '%s\n' \
	    'prefix=$(PREFIX)' \
	    'includedir=$(INCLUDEDIR)' \
	    'libdir=$(LIBDIR)' \
	    '' \
	    'Name: vmem-posix' \
	    'Description: vmem resource allocator (Bonwick & Adams), hosted POSIX port' \
	    'Version: $(VMEM_VERSION)' \
	    'Cflags: -I$${includedir}' \
	    'Libs: -L$${libdir} -lvmem-posix -lpthread' \
	    >$(DESTDIR)$(PKGCONFIGDIR)/vmem-posix.pc
	chmod 644 $(DESTDIR)$(PKGCONFIGDIR)/vmem-posix.pc

uninstall:
	rm -f $(addprefix $(DESTDIR)$(INCLUDEDIR)/,$(notdir $(INSTALL_HEADERS))) \
	      $(DESTDIR)$(LIBDIR)/libvmem.a $(DESTDIR)$(LIBDIR)/libvmem-posix.a \
	      $(DESTDIR)$(PKGCONFIGDIR)/vmem-posix.pc $(DESTDIR)$(PKGCONFIGDIR)/vmem.pc \
	      $(foreach arch,$(CROSS_ARCHS),$(DESTDIR)$(LIBDIR)/libvmem-$(arch).a \
	          $(DESTDIR)$(PKGCONFIGDIR)/vmem-$(arch).pc)

# A user-space program using the installed hosted library: an ID arena and a
# page-granular arena, with the misuse hook replaced, checking its results.
define INSTALL_PROBE_C
#include <stdio.h>
#include <vmem.h>
#include <vmem_posix.h>

static int misuses;
static void count_misuse(const VmemMisuse *report) { (void)report; misuses++; }

int main(void)
{
    static Vmem ids;
    vmem_bootstrap();
    vmem_posix_set_misuse_handler(count_misuse);
    if (vmem_init(&ids, "ids", (void *)1, 100, 1, NULL, NULL, NULL, 0, VM_NOSLEEP) != 0)
        return 1;
    void *a = vmem_alloc(&ids, 1, VM_NEXTFIT | VM_NOSLEEP);
    void *b = vmem_alloc(&ids, 1, VM_NEXTFIT | VM_NOSLEEP);
    vmem_free(&ids, a, 1);
    vmem_free(&ids, a, 1); /* double free: reported, nothing changes */
    vmem_free(&ids, b, 1);
    Vmem *pages = vmem_create("pages", (void *)0x100000, 1 << 20, 4096, NULL, NULL, NULL, 0,
                              VM_NOSLEEP);
    void *p = pages ? vmem_xalloc(pages, 8192, 65536, 0, 0, NULL, NULL, VM_NOSLEEP) : NULL;
    int ok = a == (void *)1 && b == (void *)2 && misuses == 1 && p != NULL &&
             (unsigned long)p % 65536 == 0 && vmem_check(&ids, NULL) == 0;
    if (p != NULL)
        vmem_xfree(pages, p, 8192);
    if (pages != NULL)
        vmem_destroy(pages);
    vmem_destroy(&ids);
    puts(ok ? "installed library works" : "installed library misbehaves");
    return ok ? 0 : 1;
}
endef
export INSTALL_PROBE_C

# Layer: install into a scratch DESTDIR, then: every file is where it should
# be; a program compiles against the installed headers and links against
# the installed libvmem-posix.a, and runs correctly; the same through
# pkg-config; the installed freestanding libvmem.a links a kernel (the
# example port) with the installed headers only.
export $(foreach arch,$(CROSS_ARCHS),CROSS_TARGET_$(arch) CROSS_FLAGS_$(arch) EXAMPLE_LDFLAGS_$(arch))
check-install: $(LIB) $(HOST_LIB) $(CROSS_LIBS)
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	stage=$$tmp/stage; root=$$stage$(PREFIX); passed=0; failed=0; \
	result() { if [ "$$2" -eq 0 ]; then echo "ok   install.$$1"; passed=$$((passed + 1)); \
	           else echo "FAIL install.$$1: $$3"; failed=$$((failed + 1)); fi; }; \
	$(MAKE) --no-print-directory -s install DESTDIR=$$stage PREFIX=$(PREFIX) \
	    INCLUDEDIR=$(PREFIX)/include LIBDIR=$(PREFIX)/lib >$$tmp/log 2>&1; \
	result installs $$? "$$(tail -n 5 $$tmp/log)"; \
	missing=""; \
	for f in include/vmem.h include/vmem_impl.h include/vmem_port.h include/vmem_config.h \
	         include/vmem_posix.h \
	         lib/libvmem.a lib/libvmem-posix.a lib/pkgconfig/vmem-posix.pc lib/pkgconfig/vmem.pc \
	         $(foreach arch,$(filter-out x86_64,$(CROSS_ARCHS)),lib/libvmem-$(arch).a \
	             lib/pkgconfig/vmem-$(arch).pc); do \
	    [ -f $$root/$$f ] || missing="$$missing $$f"; done; \
	result every_file_in_place "$$([ -z "$$missing" ]; echo $$?)" "missing:$$missing"; \
	echo "$$INSTALL_PROBE_C" >$$tmp/probe.c; \
	$(CC) -std=c11 -Wall -Wextra -Werror -I$$root/include $$tmp/probe.c -L$$root/lib \
	    -lvmem-posix -lpthread -o $$tmp/probe >$$tmp/log 2>&1 && $$tmp/probe >>$$tmp/log 2>&1; \
	result hosted_program_builds_and_runs $$? "$$(tail -n 5 $$tmp/log)"; \
	if command -v pkg-config >/dev/null 2>&1; then \
	    flags=$$(PKG_CONFIG_PATH=$$root/lib/pkgconfig PKG_CONFIG_SYSROOT_DIR=$$stage \
	             pkg-config --cflags --libs vmem-posix 2>$$tmp/log) && \
	    $(CC) -std=c11 -Wall -Wextra -Werror $$tmp/probe.c $$flags -o $$tmp/probe2 >>$$tmp/log 2>&1 && \
	    $$tmp/probe2 >>$$tmp/log 2>&1; \
	    result pkg_config_builds_and_runs $$? "$$(tail -n 5 $$tmp/log)"; \
	else \
	    result pkg_config_builds_and_runs 1 "pkg-config not found (apt-get install pkgconf)"; \
	fi; \
	if command -v $(CROSS_CC) >/dev/null 2>&1 && command -v $(EXAMPLE_LD) >/dev/null 2>&1; then \
	    ok=0; for src in vmem_port_example kernel_vmem kernel_stubs; do \
	        $(CROSS_CC) --target=$(CROSS_TARGET_x86_64) $(CROSS_FLAGS_x86_64) -std=c11 -Wall -Wextra \
	            -Werror -O2 -ffreestanding -fno-stack-protector -fno-pic $(FREESTANDING_CONFIG) \
	            -nostdinc -isystem $$($(CROSS_CC) -print-resource-dir)/include -I$$root/include \
	            -c $(EXAMPLE_DIR)/$$src.c -o $$tmp/$$src.o >>$$tmp/log 2>&1 || ok=1; done; \
	    [ $$ok -eq 0 ] && $(EXAMPLE_LD) -static -nostdlib --no-undefined -e kernel_entry \
	        $(EXAMPLE_LDFLAGS_x86_64) -o $$tmp/kernel.elf $$tmp/vmem_port_example.o \
	        $$tmp/kernel_vmem.o $$tmp/kernel_stubs.o -L$$root/lib -lvmem >>$$tmp/log 2>&1; \
	    result freestanding_kernel_links $$? "$$(tail -n 5 $$tmp/log)"; \
	    for arch in $(CROSS_ARCHS); do \
	        pc=vmem-$$arch; [ $$arch = x86_64 ] && pc=vmem; ok=0; \
	        flags=$$(PKG_CONFIG_PATH=$$root/lib/pkgconfig PKG_CONFIG_SYSROOT_DIR=$$stage \
	                 pkg-config --cflags --libs $$pc 2>>$$tmp/log) || ok=1; \
	        cflags=$$(echo "$$flags" | tr ' ' '\n' | grep -v '^-[lL]' | tr '\n' ' '); \
	        libs=$$(echo "$$flags" | tr ' ' '\n' | grep '^-[lL]' | tr '\n' ' '); \
	        for src in vmem_port_example kernel_vmem kernel_stubs; do \
	            [ $$ok -eq 0 ] && $(CROSS_CC) --target=$$(eval echo \$$CROSS_TARGET_$$arch) \
	                $$(eval echo \$$CROSS_FLAGS_$$arch) -std=c11 -Wall -Wextra -Werror -O2 \
	                -ffreestanding -fno-stack-protector -fno-pic -nostdinc \
	                -isystem $$($(CROSS_CC) -print-resource-dir)/include $$cflags \
	                -c $(EXAMPLE_DIR)/$$src.c -o $$tmp/$$arch-$$src.o >>$$tmp/log 2>&1 || ok=1; done; \
	        [ $$ok -eq 0 ] && $(EXAMPLE_LD) -static -nostdlib --no-undefined -e kernel_entry \
	            $$(eval echo \$$EXAMPLE_LDFLAGS_$$arch) -o $$tmp/$$arch.elf $$tmp/$$arch-vmem_port_example.o \
	            $$tmp/$$arch-kernel_vmem.o $$tmp/$$arch-kernel_stubs.o $$libs >>$$tmp/log 2>&1 || ok=1; \
	        result $${arch}_kernel_links_through_pkg_config $$ok "$$(tail -n 5 $$tmp/log)"; \
	    done; \
	else \
	    result freestanding_kernel_links 1 "$(CROSS_CC) or $(EXAMPLE_LD) not found"; \
	fi; \
	echo "$$passed passed, $$failed failed"; \
	[ $$failed -eq 0 ]

CHECK_LAYERS += check-install
