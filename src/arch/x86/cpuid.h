/* CPUID presented to the guest: KVM's supported set, filtered per vCPU. */
#ifndef FERRY_ARCH_X86_CPUID_H
#define FERRY_ARCH_X86_CPUID_H

#include <linux/kvm.h>
#include <stdbool.h>

/*
 * Read KVM_GET_SUPPORTED_CPUID from /dev/kvm into a newly allocated table
 * (free() it).  Returns 0 or -errno.
 */
int x86_cpuid_get_supported(int kvm_fd, struct kvm_cpuid2 **out)
	__attribute__((warn_unused_result));

/*
 * Read the CPUID a vCPU was given (KVM_GET_CPUID2) into a newly allocated
 * table (free() it).  Returns 0 or -errno.
 */
int x86_cpuid_get_vcpu(int vcpu_fd, struct kvm_cpuid2 **out)
	__attribute__((warn_unused_result));

/*
 * Does leaf 0 name an AMD-compatible vendor (AuthenticAMD, HygonGenuine),
 * as KVM's guest_cpuid_is_amd_or_hygon() does?  False without leaf 0.
 */
bool x86_cpuid_vendor_amd(const struct kvm_cpuid2 *c);

/*
 * Give vCPU `index` of `nr_vcpus` its CPUID: the supported table with the
 * APIC ids, topology and the hypervisor bit filled in, and the features a
 * migratable guest must not see removed.  Returns 0 or -errno.
 */
int x86_cpuid_set_vcpu(int vcpu_fd, const struct kvm_cpuid2 *supported,
		       unsigned index, unsigned nr_vcpus) __attribute__((warn_unused_result));

#endif
