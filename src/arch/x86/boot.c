#include "arch/x86/boot.h"

#include <errno.h>
#include <linux/kvm.h>
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

int x86_boot_pvh(int vcpu_fd, uint32_t entry, uint32_t start_info)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs = {
		.rip = entry, .rbx = start_info, .rflags = 0x2,
	};

	if (ioctl(vcpu_fd, KVM_GET_SREGS, &sregs) < 0)
		return -errno;
	sregs.cs = x86_flat_segment(0x10, 0xb);		/* execute/read, accessed */
	sregs.ds = x86_flat_segment(0x18, 0x3);		/* read/write, accessed */
	sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
	sregs.tr = (struct kvm_segment){
		.base = 0, .limit = 0x67, .selector = 0x20, .type = 0xb, .present = 1,
	};
	sregs.cr0 = X86_CR0_PE | X86_CR0_ET;
	sregs.cr4 = 0;
	sregs.efer = 0;
	if (ioctl(vcpu_fd, KVM_SET_SREGS, &sregs) < 0)
		return -errno;
	if (ioctl(vcpu_fd, KVM_SET_REGS, &regs) < 0)
		return -errno;
	return 0;
}
