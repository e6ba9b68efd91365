/* The VM configuration that travels in the CONFIG section. */
#ifndef FERRY_MIGRATION_CONFIG_H
#define FERRY_MIGRATION_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "arch/x86/msr.h"
#include "arch/x86/pvh.h"
#include "util/vmstate.h"

/* As many CPUID entries as ferry reads from KVM (arch/x86/cpuid.c). */
#define MIG_CPUID_MAX 256

/* One CPUID entry the guest was given (struct kvm_cpuid_entry2's values). */
struct mig_cpuid_entry {
	uint32_t function, index, flags;
	uint32_t eax, ebx, ecx, edx;
};

struct mig_config {
	uint64_t memory;		/* bytes of guest RAM */
	uint32_t vcpus;
	uint32_t page_size;		/* 4096 */
	uint32_t flags;			/* MIG_FLAG_* */
	/*
	 * Codecs the source may use (bit = enum mig_codec_id); READY answers
	 * with the subset the destination accepts.  Never range-checked by
	 * the loader: a bit this ferry does not know is the destination's to
	 * judge (incoming.c).
	 */
	uint32_t codecs;
	uint16_t cmdline_len;
	uint8_t cmdline[PVH_CMDLINE_MAX - 1];
	/*
	 * Version 3: the CPUID the guest was given (its model applied, before
	 * the per-vCPU APIC ids), for the destination to check against its
	 * own KVM before any page moves.  0 entries: an older stream,
	 * unchecked.
	 */
	uint16_t cpuid_nent;
	struct mig_cpuid_entry cpuid[MIG_CPUID_MAX];
	/* Version 3: the MSRs the vCPU state will carry, checked the same way. */
	uint16_t msr_nent;
	uint32_t msrs[X86_MSR_MAX];
	/*
	 * Version 4 (--channels): connections the source wants to use, the
	 * main one included (0 or 1: one; at most MIG_CHANNELS_MAX),
	 * and a random id the extra connections name in their hello.
	 */
	uint32_t channels;
	uint64_t mig_id;
};

extern const struct vmstate_desc mig_config_vmsd;

struct kvm_cpuid2;

/*
 * Copy the guest's CPUID table (at most MIG_CPUID_MAX entries) and the
 * MSRs its vCPU state carries (arch/x86/msr.h) into c.
 */
void mig_config_set_cpuid(struct mig_config *c, const struct kvm_cpuid2 *cpuid);

/* The CPUID table of c as KVM takes it (malloc'd), or NULL when c has none or out of memory. */
struct kvm_cpuid2 *mig_config_cpuid(const struct mig_config *c);

/*
 * Can this host (its CPUID offer `host`, its restorable MSRs) run the guest
 * c describes?  0, or -EOPNOTSUPP with the features and MSRs it lacks, by
 * name, in why.
 */
int mig_config_check_cpu(const struct mig_config *c, const struct kvm_cpuid2 *host,
			 char *why, size_t whylen) __attribute__((warn_unused_result));

#endif
