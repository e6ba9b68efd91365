/*
 * The MSR list for vCPU state.  KVM_GET_MSR_INDEX_LIST names what KVM can
 * save, but not everything it names is readable on every host (and a
 * single failing entry makes KVM_SET_MSRS stop there), so each candidate
 * is tried once on a scratch vCPU: read it, write the value back.
 */
#include "arch/x86/msr.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "arch/x86/cpuid.h"
#include "util/log.h"

static uint32_t msr_list[X86_MSR_MAX];
static size_t msr_count;
static bool msr_ready;

/*
 * Not in KVM's index list, but guest-visible state that QEMU migrates too:
 * TSC_AUX holds the CPU number Linux's vDSO getcpu() reads with RDTSCP,
 * and MTRRs are programmed by guest firmware/OS once and never re-read.
 */
static const uint32_t msr_extra[] = {
	X86_MSR_TSC_AUX, X86_MSR_IA32_SPEC_CTRL, X86_MSR_IA32_XSS,
	X86_MSR_MTRR_DEF_TYPE, 0x250, 0x258, 0x259,
	0x268, 0x269, 0x26a, 0x26b, 0x26c, 0x26d, 0x26e, 0x26f,
	0x200, 0x201, 0x202, 0x203, 0x204, 0x205, 0x206, 0x207,
	0x208, 0x209, 0x20a, 0x20b, 0x20c, 0x20d, 0x20e, 0x20f,
};

/*
 * Never restored.  Writing a kvmclock wall-clock MSR is not state but an
 * action: KVM writes the host's current wall time into guest memory at the
 * given address.  Replaying it on restore would scribble over a page the
 * guest may long since have reused; the guest asks again when it needs it.
 */
static const uint32_t msr_excluded[] = {
	X86_MSR_KVM_WALL_CLOCK, X86_MSR_KVM_WALL_CLOCK_NEW,
};

static bool msr_in(const uint32_t *set, size_t n, uint32_t index)
{
	for (size_t i = 0; i < n; i++)
		if (set[i] == index)
			return true;
	return false;
}

/*
 * Hyper-V's synthetic MSRs (0x40000000..0x400000ff).  kvm_amd and kvm_intel
 * list them, but a guest can only use them once CPUID says Hyper-V, and
 * ferry never does (QEMU saves them only with hv-* enlightenments).  Some
 * are not state at all: HV_X64_MSR_TIME_REF_COUNT (0x40000020) counts on
 * by itself, so a saved copy never reads back as it was loaded and
 * --verify's state digest could never match.  kvm-pvm does not list them.
 */
static bool msr_hyperv(uint32_t index)
{
	return index >= 0x40000000 && index <= 0x400000ff;
}

static int msr_add(uint32_t *cand, size_t *n, uint32_t index)
{
	if (msr_in(cand, *n, index) || msr_hyperv(index) ||
	    msr_in(msr_excluded, sizeof(msr_excluded) / sizeof(msr_excluded[0]), index))
		return 0;
	if (*n >= X86_MSR_MAX) {
		pr_err("msr: more than %d MSRs to save", X86_MSR_MAX);
		return -E2BIG;
	}
	/* ASYNC_PF_INT first: KVM refuses to enable async PF without its vector. */
	if (index == X86_MSR_KVM_ASYNC_PF_INT) {
		memmove(cand + 1, cand, *n * sizeof(*cand));
		cand[0] = index;
	} else {
		cand[*n] = index;
	}
	(*n)++;
	return 0;
}

static int msr_index_list(int kvm_fd, uint32_t *cand, size_t *n)
{
	struct kvm_msr_list probe = { .nmsrs = 0 }, *l;
	int ret = 0;

	/* The first call fails with E2BIG and tells us the size. */
	if (ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, &probe) < 0 && errno != E2BIG) {
		ret = -errno;
		pr_err("msr: KVM_GET_MSR_INDEX_LIST: %s", strerror(errno));
		return ret;
	}
	l = calloc(1, sizeof(*l) + probe.nmsrs * sizeof(l->indices[0]));
	if (!l)
		return -ENOMEM;
	l->nmsrs = probe.nmsrs;
	if (ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, l) < 0) {
		ret = -errno;
		pr_err("msr: KVM_GET_MSR_INDEX_LIST: %s", strerror(errno));
		goto out;
	}
	for (uint32_t i = 0; i < l->nmsrs && !ret; i++)
		ret = msr_add(cand, n, l->indices[i]);
	for (size_t i = 0; i < sizeof(msr_extra) / sizeof(msr_extra[0]) && !ret; i++)
		ret = msr_add(cand, n, msr_extra[i]);
out:
	free(l);
	return ret;
}

/* Can a vCPU read this MSR and take the value back? */
static bool msr_probe_one(int vcpu_fd, uint32_t index)
{
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e;
	} m = { .hdr.nmsrs = 1, .e.index = index };

	if (ioctl(vcpu_fd, KVM_GET_MSRS, &m) != 1)
		return false;
	return ioctl(vcpu_fd, KVM_SET_MSRS, &m) == 1;
}

static int msr_probe(int kvm_fd, const uint32_t *cand, size_t n)
{
	int vm_fd, vcpu_fd = -1, ret = 0;

	vm_fd = ioctl(kvm_fd, KVM_CREATE_VM, 0);
	if (vm_fd < 0) {
		ret = -errno;
		pr_err("msr: KVM_CREATE_VM: %s", strerror(errno));
		return ret;
	}
	/* Like a real VM: some MSRs live in the in-kernel LAPIC. */
	if (ioctl(vm_fd, KVM_CREATE_IRQCHIP, 0) < 0)
		pr_debug("msr: probe VM without irqchip: %s", strerror(errno));
	vcpu_fd = ioctl(vm_fd, KVM_CREATE_VCPU, 0);
	if (vcpu_fd < 0) {
		ret = -errno;
		pr_err("msr: KVM_CREATE_VCPU: %s", strerror(errno));
		goto out;
	}
	msr_count = 0;
	for (size_t i = 0; i < n; i++) {
		if (msr_probe_one(vcpu_fd, cand[i]))
			msr_list[msr_count++] = cand[i];
		else
			pr_debug("msr: %#x not saved: vCPU cannot read/write it", cand[i]);
	}
	close(vcpu_fd);
out:
	close(vm_fd);
	return ret;
}

int x86_msr_list_init(int kvm_fd)
{
	uint32_t *cand;
	size_t n = 0;
	int ret;

	if (msr_ready)
		return 0;
	cand = calloc(X86_MSR_MAX, sizeof(*cand));
	if (!cand)
		return -ENOMEM;
	ret = msr_index_list(kvm_fd, cand, &n);
	if (!ret)
		ret = msr_probe(kvm_fd, cand, n);
	if (!ret) {
		msr_ready = true;
		pr_debug("msr: saving %zu of %zu candidate MSRs", msr_count, n);
	}
	free(cand);
	return ret;
}

const uint32_t *x86_msr_list(size_t *n)
{
	*n = msr_ready ? msr_count : 0;
	return msr_list;
}

bool x86_msr_restorable(uint32_t index)
{
	return msr_ready && msr_in(msr_list, msr_count, index);
}

/*
 * AMD CPUs do not implement 64-bit SYSENTER: IA32_SYSENTER_ESP/EIP are 32
 * bits wide.  KVM on an AMD host stores only the low half of a value set
 * with KVM_SET_MSRS (svm_set_msr() keeps the upper half, in
 * sysenter_{esp,eip}_hi, only for an Intel-compatible guest CPUID), yet
 * KVM_GET_MSRS can return SYSENTER_ESP with upper bits set where the
 * guest's own WRMSR reached the VMCB unintercepted (seen under nested
 * SVM), and KVM on an Intel host keeps all 64 bits whatever the guest's
 * vendor.  Saving the low half for an AMD-vendor guest is what an AMD
 * guest can observe, and what the destination holds on any host.
 */
void x86_msrs_as_loaded(struct kvm_msr_entry *e, size_t n, const struct kvm_cpuid2 *cpuid)
{
	if (!x86_cpuid_vendor_amd(cpuid))
		return;
	for (size_t i = 0; i < n; i++)
		if (e[i].index == X86_MSR_IA32_SYSENTER_ESP ||
		    e[i].index == X86_MSR_IA32_SYSENTER_EIP)
			e[i].data = (uint32_t)e[i].data;
}
