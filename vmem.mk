# vmem.mk - libvmem for a kernel's own Makefile.
#
#   VMEM_DIR    := third_party/libvmem        # where this file is
#   VMEM_CFLAGS := $(KERNEL_CFLAGS)           # your kernel's code flags
#   VMEM_CONFIG := -DVMEM_PORT_CAN_SLEEP=0    # options of include/vmem_config.h
#   include $(VMEM_DIR)/vmem.mk
#
#   CFLAGS += $(VMEM_INCLUDES) $(VMEM_CONFIG)  # code that includes vmem.h
#   kernel.elf: $(KERNEL_OBJS) $(VMEM_LIB)     # your port is one of KERNEL_OBJS
#
# Everything you may set (all optional, ?= defaults):
#   VMEM_CC, VMEM_AR    compiler and archiver           $(CC), $(AR)
#   VMEM_CFLAGS         your kernel's code-generation flags (code model, no
#                       red zone, no FPU/SIMD, ...)     $(CFLAGS)
#   VMEM_CONFIG         -D options of vmem_config.h, or
#                       -DVMEM_CONFIG_HEADER='"my_vmem_config.h"'
#   VMEM_BUILD          where objects and the archive go  build/vmem
# What it defines for you:
#   VMEM_SRCS           the library's sources (no port: the port is yours)
#   VMEM_INCLUDES       -I for vmem.h, vmem_port.h and vmem_config.h
#   VMEM_REQUIRED_CFLAGS  what the library needs whatever your flags are
#   VMEM_OBJS, VMEM_LIB the objects and $(VMEM_BUILD)/libvmem.a, with rules
#
# Compile everything that includes vmem.h with the same VMEM_CONFIG as the
# library: some options change the layout of Vmem, which you embed.

VMEM_DIR    ?= $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
VMEM_CC     ?= $(CC)
VMEM_AR     ?= $(AR)
VMEM_CFLAGS ?= $(CFLAGS)
VMEM_CONFIG ?=
VMEM_BUILD  ?= build/vmem

VMEM_SRCS     := $(sort $(wildcard $(VMEM_DIR)/src/vmem_*.c))
VMEM_INCLUDES := -I$(VMEM_DIR)/include
# C11 (the sources use _Static_assert and _Alignas); -ffreestanding: no
# libc, and no library call invented from a builtin's name.
VMEM_REQUIRED_CFLAGS := -std=c11 -ffreestanding
VMEM_OBJS := $(patsubst $(VMEM_DIR)/src/%.c,$(VMEM_BUILD)/%.o,$(VMEM_SRCS))
VMEM_LIB  := $(VMEM_BUILD)/libvmem.a

$(VMEM_BUILD)/%.o: $(VMEM_DIR)/src/%.c $(wildcard $(VMEM_DIR)/include/*.h $(VMEM_DIR)/src/*.h)
	@mkdir -p $(dir $@)
	$(VMEM_CC) $(VMEM_CFLAGS) $(VMEM_REQUIRED_CFLAGS) $(VMEM_INCLUDES) -I$(VMEM_DIR)/src \
	    $(VMEM_CONFIG) -c $< -o $@

$(VMEM_LIB): $(VMEM_OBJS)
	@rm -f $@
	$(VMEM_AR) rcs $@ $^
