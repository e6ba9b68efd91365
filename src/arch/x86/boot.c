#include "arch/x86/boot.h"

#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>

#define X86_CR0_PE 0x1ULL
#define X86_CR0_ET 0x10ULL

static struct kvm_segment x86_flat_segment(uint16_t selector, uint8_t type)
{
	return (struct kvm_segment){
		.base = 0, .limit = 0xffffffff, .selector = selector, .type = type,
		.present = 1, .dpl = 0, .db = 1, .s = 1, .l = 0, .g = 1,
	};
}

void x86_boot_pvh_state(struct kvm_sregs *sregs, struct kvm_regs *regs,
			uint32_t entry, uint32_t start_info)
{
	*regs = (struct kvm_regs){ .rip = entry, .rbx = start_info, .rflags = 0x2 };
	sregs->cs = x86_flat_segment(0x10, 0xb);	/* execute/read, accessed */
	sregs->ds = x86_flat_segment(0x18, 0x3);	/* read/write, accessed */
	sregs->es = sregs->fs = sregs->gs = sregs->ss = sregs->ds;
	/*
	 * QEMU's reset TR and LDTR (target/i386/cpu.c, x86_cpu_reset_hold):
	 * a busy 32-bit TSS and an LDT, both at 0 with a 64 KiB limit.  A
	 * TSS limit of 0x67 (no I/O bitmap) makes kvm-pvm fault ring-3 port
	 * I/O whatever IOPL says; QEMU's limit lets it through.
	 */
	sregs->tr = (struct kvm_segment){
		.base = 0, .limit = 0xffff, .selector = 0, .type = 0xb, .present = 1,
	};
	sregs->ldt = (struct kvm_segment){
		.base = 0, .limit = 0xffff, .selector = 0, .type = 0x2, .present = 1,
	};
	/* Reset GDTR and IDTR; the PVH protocol leaves them to the kernel. */
	memset(&sregs->gdt, 0, sizeof(sregs->gdt));
	memset(&sregs->idt, 0, sizeof(sregs->idt));
	sregs->gdt.limit = 0xffff;
	sregs->idt.limit = 0xffff;
	/*
	 * QEMU's CR0 also keeps the reset CD and NW bits (caches off) until
	 * the kernel rewrites CR0; ferry enters with caching on, as
	 * Firecracker and Cloud Hypervisor do: nothing a kernel reads.
	 */
	sregs->cr0 = X86_CR0_PE | X86_CR0_ET;
	sregs->cr2 = 0;
	sregs->cr3 = 0;
	sregs->cr4 = 0;
	sregs->efer = 0;
	memset(sregs->interrupt_bitmap, 0, sizeof(sregs->interrupt_bitmap));
}

int x86_boot_pvh(int vcpu_fd, uint32_t entry, uint32_t start_info)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs;

	if (ioctl(vcpu_fd, KVM_GET_SREGS, &sregs) < 0)
		return -errno;
	x86_boot_pvh_state(&sregs, &regs, entry, start_info);
	if (ioctl(vcpu_fd, KVM_SET_SREGS, &sregs) < 0)
		return -errno;
	if (ioctl(vcpu_fd, KVM_SET_REGS, &regs) < 0)
		return -errno;
	return 0;
}
