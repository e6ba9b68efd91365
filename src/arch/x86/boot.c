#include "arch/x86/boot.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <sys/ioctl.h>

#include "arch/x86/msr.h"
#include "arch/x86/pvh.h"
#include "util/log.h"

#define X86_CR0_PE 0x1ULL
#define X86_CR0_ET 0x10ULL
#define X86_CR0_PG 0x80000000ULL
#define X86_CR4_PAE 0x20ULL
#define X86_EFER_LME 0x100ULL
#define X86_EFER_LMA 0x400ULL

static struct kvm_segment x86_flat_segment(uint16_t selector, uint8_t type)
{
	return (struct kvm_segment){
		.base = 0, .limit = 0xffffffff, .selector = selector, .type = type,
		.present = 1, .dpl = 0, .db = 1, .s = 1, .l = 0, .g = 1,
	};
}

/* QEMU's reset TR and LDTR; see x86_boot_pvh_state() for why TR matters. */
static void x86_boot_reset_tr_ldt(struct kvm_sregs *sregs)
{
	sregs->tr = (struct kvm_segment){
		.base = 0, .limit = 0xffff, .selector = 0, .type = 0xb, .present = 1,
	};
	sregs->ldt = (struct kvm_segment){
		.base = 0, .limit = 0xffff, .selector = 0, .type = 0x2, .present = 1,
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
	x86_boot_reset_tr_ldt(sregs);
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

unsigned x86_boot_msrs(struct kvm_msr_entry *msrs)
{
	msrs[0] = (struct kvm_msr_entry){
		.index = X86_MSR_MTRR_DEF_TYPE, .data = 1u << 11 | 0x6,	/* E, WB */
	};
	msrs[1] = (struct kvm_msr_entry){
		.index = X86_MSR_IA32_MISC_ENABLE, .data = 1,	/* fast strings */
	};
	return 2;
}

/*
 * A refinement, not a condition of booting: a KVM that refuses it leaves
 * the reset values, which every kernel copes with.
 */
void x86_boot_set_msrs(int vcpu_fd)
{
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e[X86_BOOT_NR_MSRS];
	} m = { 0 };

	m.hdr.nmsrs = x86_boot_msrs(m.e);
	/* KVM stops at the first MSR it refuses: that one and the rest keep their reset values. */
	int n = ioctl(vcpu_fd, KVM_SET_MSRS, &m);
	if (n >= 0 && n < (int)m.hdr.nmsrs)
		pr_warn("boot: KVM refused MSR %#x; it and the ones after it keep their reset values",
			m.e[n].index);
	else if (n < 0)
		pr_warn("boot: KVM_SET_MSRS: %s; the guest starts with MTRRs off", strerror(errno));
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

int x86_boot_linux64_tables(const struct pvh_ram *ram)
{
	static const uint64_t gdt[4] = {
		0, 0,
		0x00af9b000000ffffULL,		/* 0x10: 64-bit code, DPL 0 */
		0x00cf93000000ffffULL,		/* 0x18: flat data */
	};
	uint8_t *g = pvh_ram_ptr(ram, X86_BOOT_GDT_GPA, sizeof(gdt));
	uint8_t *t = pvh_ram_ptr(ram, X86_BOOT_PML4_GPA, X86_BOOT_TABLES_END - X86_BOOT_PML4_GPA);

	if (!g || !t)
		return -ERANGE;
	memcpy(g, gdt, sizeof(gdt));
	memset(t, 0, X86_BOOT_TABLES_END - X86_BOOT_PML4_GPA);
	uint64_t *pml4 = (uint64_t *)t;
	uint64_t *pdpt = (uint64_t *)(t + (X86_BOOT_PDPT_GPA - X86_BOOT_PML4_GPA));
	uint64_t *pd = (uint64_t *)(t + (X86_BOOT_PD_GPA - X86_BOOT_PML4_GPA));
	pml4[0] = X86_BOOT_PDPT_GPA | 0x3;		/* present, writable */
	for (uint64_t i = 0; i < 4; i++)
		pdpt[i] = (X86_BOOT_PD_GPA + i * 0x1000) | 0x3;
	for (uint64_t i = 0; i < 4 * 512; i++)
		pd[i] = (i << 21) | 0x83;		/* present, writable, 2 MiB */
	return 0;
}

static struct kvm_segment x86_long_segment(uint16_t selector, uint8_t type, bool code)
{
	return (struct kvm_segment){
		.base = 0, .limit = 0xffffffff, .selector = selector, .type = type,
		.present = 1, .dpl = 0, .db = !code, .s = 1, .l = code, .g = 1,
	};
}

void x86_boot_linux64_state(struct kvm_sregs *sregs, struct kvm_regs *regs,
			    uint64_t entry, uint64_t boot_params)
{
	*regs = (struct kvm_regs){ .rip = entry, .rsi = boot_params, .rflags = 0x2 };
	sregs->cs = x86_long_segment(0x10, 0xb, true);
	sregs->ds = x86_long_segment(0x18, 0x3, false);
	sregs->es = sregs->fs = sregs->gs = sregs->ss = sregs->ds;
	x86_boot_reset_tr_ldt(sregs);
	memset(&sregs->gdt, 0, sizeof(sregs->gdt));
	memset(&sregs->idt, 0, sizeof(sregs->idt));
	sregs->gdt.base = X86_BOOT_GDT_GPA;
	sregs->gdt.limit = 4 * 8 - 1;
	sregs->idt.limit = 0xffff;		/* reset value; the kernel loads its own */
	sregs->cr0 = X86_CR0_PE | X86_CR0_ET | X86_CR0_PG;
	sregs->cr2 = 0;
	sregs->cr3 = X86_BOOT_PML4_GPA;
	sregs->cr4 = X86_CR4_PAE;
	sregs->efer = X86_EFER_LME | X86_EFER_LMA;
	memset(sregs->interrupt_bitmap, 0, sizeof(sregs->interrupt_bitmap));
}

int x86_boot_linux64(int vcpu_fd, uint64_t entry, uint64_t boot_params)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs;

	if (ioctl(vcpu_fd, KVM_GET_SREGS, &sregs) < 0)
		return -errno;
	x86_boot_linux64_state(&sregs, &regs, entry, boot_params);
	if (ioctl(vcpu_fd, KVM_SET_SREGS, &sregs) < 0)
		return -errno;
	if (ioctl(vcpu_fd, KVM_SET_REGS, &regs) < 0)
		return -errno;
	return 0;
}
