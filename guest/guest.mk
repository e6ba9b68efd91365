# guest/guest.mk - builds $(BUILD)/probe.elf, the probe guest.
# Included by the top-level Makefile; defines only GUEST_* variables and the
# rules for files under $(BUILD)/guest/ and $(BUILD)/probe.elf.
#
# Ring-0 files are built with -mgeneral-regs-only so the kernel never
# touches the SSE/x87 state that the ring-3 workloads own.

GUEST_OUT     := $(BUILD)/guest
GUEST_CFLAGS  := -std=gnu11 -O2 -g -m64 -ffreestanding -fno-pic -fno-pie \
	-fno-stack-protector -mno-red-zone -mcmodel=small -nostdlib \
	-fno-asynchronous-unwind-tables -fno-unwind-tables -fcf-protection=none \
	-fno-tree-loop-distribute-patterns -fno-strict-aliasing \
	-Wall -Wextra -Werror -Wstrict-prototypes -Wmissing-prototypes -MMD -MP
GUEST_KERNEL  := kernel.c serial.c
GUEST_USER    := main.c cmdline.c tsc.c workloads.c cpu.c fill.c lib.c \
	virtio.c blk.c disk.c disk_rate.c net.c
GUEST_ASM     := boot.S trampoline.S
GUEST_KOBJS   := $(GUEST_KERNEL:%.c=$(GUEST_OUT)/%.o)
GUEST_UOBJS   := $(GUEST_USER:%.c=$(GUEST_OUT)/%.o)
GUEST_AOBJS   := $(GUEST_ASM:%.S=$(GUEST_OUT)/%.o)
GUEST_OBJS    := $(GUEST_AOBJS) $(GUEST_KOBJS) $(GUEST_UOBJS)

$(GUEST_KOBJS): $(GUEST_OUT)/%.o: guest/%.c guest/guest.mk
	@$(if $(Q),echo "  CC [guest] $<")
	$(Q)mkdir -p $(@D)
	$(Q)gcc $(GUEST_CFLAGS) -mgeneral-regs-only -c $< -o $@

$(GUEST_UOBJS): $(GUEST_OUT)/%.o: guest/%.c guest/guest.mk
	@$(if $(Q),echo "  CC [guest] $<")
	$(Q)mkdir -p $(@D)
	$(Q)gcc $(GUEST_CFLAGS) -c $< -o $@

$(GUEST_AOBJS): $(GUEST_OUT)/%.o: guest/%.S guest/guest.mk
	@$(if $(Q),echo "  AS [guest] $<")
	$(Q)mkdir -p $(@D)
	$(Q)gcc $(GUEST_CFLAGS) -D__ASSEMBLER__ -c $< -o $@

# Link as ELF64, then convert to ELF32: QEMU's PVH loader (-kernel) only
# takes EM_386 ELF files; the 64-bit code inside is just bytes to it.
$(BUILD)/probe.elf: $(GUEST_OBJS) guest/linker.ld
	@$(if $(Q),echo "  LD [guest] $@")
	$(Q)ld -m elf_x86_64 -static -nostdlib --no-warn-rwx-segments \
		-T guest/linker.ld -o $(GUEST_OUT)/probe64.elf $(GUEST_OBJS)
	$(Q)objcopy -O elf32-i386 $(GUEST_OUT)/probe64.elf $@
