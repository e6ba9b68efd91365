#include "arch/x86/cpuid.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#define CPUID_MAX_ENTRIES 256

/* A CPUID table from fd by `req` (KVM_GET_SUPPORTED_CPUID, KVM_GET_CPUID2). */
static int x86_cpuid_read(int fd, unsigned long req, struct kvm_cpuid2 **out)
{
	size_t sz = sizeof(struct kvm_cpuid2) + CPUID_MAX_ENTRIES * sizeof(struct kvm_cpuid_entry2);
	struct kvm_cpuid2 *c = calloc(1, sz);

	if (!c)
		return -ENOMEM;
	c->nent = CPUID_MAX_ENTRIES;
	if (ioctl(fd, req, c) < 0) {
		int err = -errno;
		free(c);
		return err;
	}
	*out = c;
	return 0;
}

int x86_cpuid_get_supported(int kvm_fd, struct kvm_cpuid2 **out)
{
	return x86_cpuid_read(kvm_fd, KVM_GET_SUPPORTED_CPUID, out);
}

int x86_cpuid_get_vcpu(int vcpu_fd, struct kvm_cpuid2 **out)
{
	return x86_cpuid_read(vcpu_fd, KVM_GET_CPUID2, out);
}

/* Leaf 0's vendor string, in EBX, EDX, ECX order. */
static bool x86_cpuid_vendor_is(const struct kvm_cpuid_entry2 *e, const char *vendor)
{
	char s[12];

	memcpy(s, &e->ebx, 4);
	memcpy(s + 4, &e->edx, 4);
	memcpy(s + 8, &e->ecx, 4);
	return !memcmp(s, vendor, sizeof(s));
}

bool x86_cpuid_vendor_amd(const struct kvm_cpuid2 *c)
{
	for (unsigned i = 0; c && i < c->nent; i++)
		if (c->entries[i].function == 0)
			return x86_cpuid_vendor_is(&c->entries[i], "AuthenticAMD") ||
			       x86_cpuid_vendor_is(&c->entries[i], "HygonGenuine");
	return false;
}

static void x86_cpuid_filter(struct kvm_cpuid_entry2 *e, unsigned index, unsigned nr_vcpus)
{
	switch (e->function) {
	case 1:
		/* Initial APIC id, logical processor count, hypervisor present. */
		e->ebx = (e->ebx & 0x0000ffffu) | (index << 24) | ((nr_vcpus & 0xff) << 16);
		e->ecx |= 1u << 31;
		break;
	case 7:
		/*
		 * IA32_ARCH_CAPABILITIES is host-specific and cannot be set on
		 * this kind of KVM (QEMU needs -arch-capabilities here too).
		 */
		if (e->index == 0)
			e->edx &= ~(1u << 29);
		break;
	case 0xb:
	case 0x1f:
		/* x2APIC topology: one thread per core, all cores in a package. */
		e->edx = index;
		break;
	default:
		break;
	}
}

int x86_cpuid_set_vcpu(int vcpu_fd, const struct kvm_cpuid2 *supported,
		       unsigned index, unsigned nr_vcpus)
{
	size_t sz = sizeof(*supported) + supported->nent * sizeof(supported->entries[0]);
	struct kvm_cpuid2 *c = malloc(sz);
	int err = 0;

	if (!c)
		return -ENOMEM;
	memcpy(c, supported, sz);
	for (unsigned i = 0; i < c->nent; i++)
		x86_cpuid_filter(&c->entries[i], index, nr_vcpus);
	if (ioctl(vcpu_fd, KVM_SET_CPUID2, c) < 0)
		err = -errno;
	free(c);
	return err;
}
