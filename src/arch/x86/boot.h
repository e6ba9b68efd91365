/* The boot processor's register state at a PVH entry point. */
#ifndef FERRY_ARCH_X86_BOOT_H
#define FERRY_ARCH_X86_BOOT_H

#include <stdint.h>
#include <linux/kvm.h>

/*
 * Fill `sregs` and `regs` with the state a PVH kernel is entered in: 32-bit
 * protected mode, flat 4 GiB code and data segments, paging off, EBX =
 * `start_info`, at `entry`.  Everything the PVH protocol leaves unspecified
 * (TR, LDTR, GDTR, IDTR) is QEMU's x86 reset state, which is also what a
 * guest sees under QEMU after its PVH option ROM: on kvm-pvm the task
 * register decides whether ring-3 port I/O with IOPL=3 is allowed (its
 * emulator reads an I/O bitmap through TR), and a TSS limit of 0x67 refuses
 * it where QEMU's 0xffff allows it.  `sregs` must come from KVM_GET_SREGS
 * (fields not named here, such as the APIC base, keep their value).
 */
void x86_boot_pvh_state(struct kvm_sregs *sregs, struct kvm_regs *regs,
			uint32_t entry, uint32_t start_info);

/*
 * The MSRs a firmware leaves set, for both entries: MTRRs enabled with
 * write-back as the default type (MTRRdefType 0x806), as SeaBIOS leaves
 * them under QEMU and Firecracker sets them; KVM's reset value (0,
 * MTRRs off) makes Linux turn PAT off too.  And IA32_MISC_ENABLE with
 * fast strings on (bit 0), QEMU's reset value and Firecracker's boot
 * MSR: without it Linux on an Intel host says "Disabled fast string
 * operations" and gives up ERMS.  Fills `msrs` (room for
 * X86_BOOT_NR_MSRS entries) and returns how many.
 */
#define X86_BOOT_NR_MSRS 2
unsigned x86_boot_msrs(struct kvm_msr_entry *msrs);

/* Set them on one vCPU (every vCPU, as firmware does); a refusal is logged. */
void x86_boot_set_msrs(int vcpu_fd);

/* Put vCPU `vcpu_fd` in the state above.  Returns 0 or -errno. */
int x86_boot_pvh(int vcpu_fd, uint32_t entry, uint32_t start_info)
	__attribute__((warn_unused_result));

/*
 * The Linux 64-bit boot protocol's entry (Documentation/arch/x86/boot.rst,
 * "64-bit Boot Protocol"): long mode with paging on, an identity map of the
 * first 4 GiB, a GDT with __BOOT_CS (0x10, 64-bit code) and __BOOT_DS
 * (0x18), interrupts off, RSI = the zero page.  TR and LDTR as for PVH:
 * QEMU's reset state.  The tables live in low guest RAM at these addresses.
 */
#define X86_BOOT_GDT_GPA	0x500ULL	/* 4 entries */
#define X86_BOOT_PML4_GPA	0x9000ULL
#define X86_BOOT_PDPT_GPA	0xa000ULL
#define X86_BOOT_PD_GPA		0xb000ULL	/* 4 pages: 4 GiB of 2 MiB pages */
#define X86_BOOT_TABLES_END	0xf000ULL

struct pvh_ram;

/* Write the GDT and the page tables into guest RAM.  0, or -ERANGE (RAM too small). */
int x86_boot_linux64_tables(const struct pvh_ram *ram) __attribute__((warn_unused_result));

void x86_boot_linux64_state(struct kvm_sregs *sregs, struct kvm_regs *regs,
			    uint64_t entry, uint64_t boot_params);

int x86_boot_linux64(int vcpu_fd, uint64_t entry, uint64_t boot_params)
	__attribute__((warn_unused_result));

#endif
