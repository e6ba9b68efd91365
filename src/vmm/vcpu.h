/* vCPU threads: the KVM_RUN loop and the exits user space handles. */
#ifndef FERRY_VMM_VCPU_H
#define FERRY_VMM_VCPU_H

#include "vmm/vm.h"

/* Install the signal used to kick vCPUs out of KVM_RUN (once per process). */
void vcpu_signal_setup(void);

/* Start the thread running vCPU v.  Returns 0 or -errno. */
int vcpu_start_thread(struct vcpu *v) __attribute__((warn_unused_result));

/* Make v leave KVM_RUN soon.  Caller holds vm->lock. */
void vcpu_kick(struct vcpu *v);

#endif
