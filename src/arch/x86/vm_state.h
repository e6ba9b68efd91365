/*
 * VM-wide x86 state held by KVM: the in-kernel PICs, IOAPIC and PIT, and
 * the kvmclock base.  Assumes the VM was created with KVM_CREATE_IRQCHIP
 * and KVM_CREATE_PIT2.
 */
#ifndef FERRY_ARCH_X86_VM_STATE_H
#define FERRY_ARCH_X86_VM_STATE_H

#include <linux/kvm.h>

#include "util/vmstate.h"

struct x86_vm_state {
	struct kvm_pic_state pic[2];	/* master, slave */
	struct kvm_ioapic_state ioapic;
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clock;
};

extern const struct vmstate_desc x86_vm_state_vmsd;

/*
 * Read the state of a VM whose vCPUs are all stopped; take it right after
 * they stop, since the saved clock is where the guest's time will resume.
 * Returns 0 or a negative errno (logged, naming the ioctl).
 */
int x86_vm_state_get(int vm_fd, struct x86_vm_state *s)
	__attribute__((warn_unused_result));

/*
 * Load s into a fresh VM, after its vCPUs exist (KVM_SET_CLOCK updates
 * every vCPU's kvmclock) and ideally just before they resume: the clock is
 * set to the saved value with no flags, so guest time continues from where
 * it stopped and does not jump forward by the migration downtime.  The PIT
 * channels restart their counts now (KVM resets count_load_time).
 * Returns 0 or a negative errno (logged).
 */
int x86_vm_state_set(int vm_fd, const struct x86_vm_state *s)
	__attribute__((warn_unused_result));

#endif
