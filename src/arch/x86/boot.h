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

/* Put vCPU `vcpu_fd` in the state above.  Returns 0 or -errno. */
int x86_boot_pvh(int vcpu_fd, uint32_t entry, uint32_t start_info)
	__attribute__((warn_unused_result));

#endif
