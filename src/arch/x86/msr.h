/*
 * Which MSRs a vCPU's state includes: KVM's own list plus a few that QEMU
 * also migrates, filtered once at startup by what a scratch vCPU can
 * actually read and write back.
 */
#ifndef FERRY_ARCH_X86_MSR_H
#define FERRY_ARCH_X86_MSR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define X86_MSR_MAX			256

#define X86_MSR_IA32_TSC		0x00000010
#define X86_MSR_KVM_WALL_CLOCK		0x00000011
#define X86_MSR_KVM_SYSTEM_TIME		0x00000012
#define X86_MSR_IA32_TSC_ADJUST		0x0000003b
#define X86_MSR_IA32_SPEC_CTRL		0x00000048
#define X86_MSR_IA32_SYSENTER_CS	0x00000174
#define X86_MSR_IA32_SYSENTER_ESP	0x00000175
#define X86_MSR_IA32_SYSENTER_EIP	0x00000176
#define X86_MSR_IA32_MISC_ENABLE	0x000001a0
#define X86_MSR_IA32_CR_PAT		0x00000277
#define X86_MSR_MTRR_DEF_TYPE		0x000002ff
#define X86_MSR_IA32_TSC_DEADLINE	0x000006e0
#define X86_MSR_IA32_XSS		0x00000da0
#define X86_MSR_STAR			0xc0000081
#define X86_MSR_LSTAR			0xc0000082
#define X86_MSR_KERNEL_GS_BASE		0xc0000102
#define X86_MSR_TSC_AUX			0xc0000103
#define X86_MSR_KVM_WALL_CLOCK_NEW	0x4b564d00
#define X86_MSR_KVM_SYSTEM_TIME_NEW	0x4b564d01
#define X86_MSR_KVM_ASYNC_PF_EN		0x4b564d02
#define X86_MSR_KVM_ASYNC_PF_INT	0x4b564d06

/*
 * Build the list: KVM_GET_MSR_INDEX_LIST on kvm_fd plus extras, minus the
 * excluded ones, keeping only MSRs that a scratch vCPU reads with
 * KVM_GET_MSRS and accepts back with KVM_SET_MSRS.  Call once before any
 * vCPU state is saved or restored; calling again is a no-op.
 * Returns 0 or a negative errno (logged).
 */
int x86_msr_list_init(int kvm_fd) __attribute__((warn_unused_result));

/* The list, in restore order; *n is 0 before x86_msr_list_init(). */
const uint32_t *x86_msr_list(size_t *n);

/* Is index in the list (so safe to restore from a migration stream)? */
bool x86_msr_restorable(uint32_t index);

struct kvm_msr_entry;
struct kvm_cpuid2;

/*
 * Make n MSR values read from a vCPU with this CPUID what any KVM will hold
 * once they are loaded, so that the value saved is the value restored (and
 * --verify's digests agree).  Today: for an AuthenticAMD or HygonGenuine
 * guest, IA32_SYSENTER_ESP/EIP keep only their low 32 bits.  cpuid may be
 * NULL (no vendor known: nothing changes).
 */
void x86_msrs_as_loaded(struct kvm_msr_entry *e, size_t n, const struct kvm_cpuid2 *cpuid);

#endif
