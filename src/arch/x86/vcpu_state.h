/*
 * Everything KVM exposes about one x86 vCPU, as one plain struct with a
 * vmstate description, so it can be saved on one host and restored on
 * another.
 *
 * Segment/control registers use KVM_{GET,SET}_SREGS2 rather than SREGS:
 * sregs2 carries the PAE PDPTRs (restored as the guest loaded them, not
 * re-read from memory it may have changed since) and drops
 * interrupt_bitmap, which duplicates the injected interrupt that
 * kvm_vcpu_events already carries - one source of truth for it.  It needs
 * KVM_CAP_SREGS2 (Linux 5.16+); x86_vcpu_state_init() checks.
 */
#ifndef FERRY_ARCH_X86_VCPU_STATE_H
#define FERRY_ARCH_X86_VCPU_STATE_H

#include <linux/kvm.h>
#include <stdint.h>

#include "arch/x86/msr.h"
#include "util/vmstate.h"

/* Room for any XSAVE layout KVM reports today (AMX needs about 11 KiB). */
#define X86_XSAVE_MAX		16384
#define X86_XSAVE_LEGACY	4096	/* struct kvm_xsave, KVM_GET_XSAVE */

struct x86_vcpu_state {
	struct kvm_regs regs;
	struct kvm_sregs2 sregs;
	struct kvm_xcrs xcrs;
	uint32_t xsave_size;			/* bytes used in xsave[] */
	uint8_t xsave[X86_XSAVE_MAX] __attribute__((aligned(64)));
	uint32_t nmsrs;
	struct kvm_msr_entry msrs[X86_MSR_MAX];	/* in restore order */
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events events;
	struct kvm_debugregs debugregs;
	struct kvm_mp_state mp_state;
	uint32_t tsc_khz;			/* guest TSC rate, 0 if unknown */
};

extern const struct vmstate_desc x86_vcpu_state_vmsd;

/*
 * Probe the host once: KVM_CAP_SREGS2 (required), the XSAVE size
 * (KVM_CAP_XSAVE2) and the MSR list (x86_msr_list_init()).  Call before
 * any other function here.  Returns 0 or a negative errno (logged).
 */
int x86_vcpu_state_init(int kvm_fd) __attribute__((warn_unused_result));

/*
 * Finish an in-flight KVM_EXIT_IO/MMIO without running guest code
 * (KVM_RUN with immediate_exit).  KVM completes such an exit only on the
 * next KVM_RUN and keeps that pending work out of the state it reports, so
 * call this on a stopped vCPU before x86_vcpu_state_get().
 * Returns 0 or a negative errno (logged).
 */
int x86_vcpu_quiesce(int vcpu_fd, struct kvm_run *run)
	__attribute__((warn_unused_result));

/*
 * Read the state of a stopped vCPU into s.
 * Returns 0 or a negative errno (logged, naming the ioctl).
 */
int x86_vcpu_state_get(int vcpu_fd, struct x86_vcpu_state *s)
	__attribute__((warn_unused_result));

/*
 * Load s into a vCPU that has not run since it was created with the same
 * CPUID as the source.  Order matters (see the function); every MSR in s
 * must be in this host's list.  Returns 0 or a negative errno (logged).
 */
int x86_vcpu_state_set(int vcpu_fd, const struct x86_vcpu_state *s)
	__attribute__((warn_unused_result));

#endif
