/*
 * MSR values as the save path keeps them (x86_msrs_as_loaded()): for an
 * AMD-vendor guest IA32_SYSENTER_ESP/EIP lose their upper 32 bits, as KVM
 * on an AMD host drops them on restore; any other vendor keeps all 64.
 * No KVM needed: the CPUID tables are made up here.
 */
#include <linux/kvm.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "arch/x86/cpuid.h"
#include "arch/x86/msr.h"

#define T_HI_ESP	0xfffffe0000001000ULL	/* Linux's cpu_entry_stack area */
#define T_HI_EIP	0xffffffff81a01234ULL	/* a kernel text address */

/* A CPUID table whose leaf 0 names vendor (12 chars), after a leaf 1. */
static struct kvm_cpuid2 *t_cpuid(const char *vendor)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + 2 * sizeof(c->entries[0]));

	assert_non_null(c);
	c->nent = 2;
	c->entries[0].function = 1;
	c->entries[0].eax = 0x00a20f10;
	c->entries[1].function = 0;
	c->entries[1].eax = 0x10;
	memcpy(&c->entries[1].ebx, vendor, 4);
	memcpy(&c->entries[1].edx, vendor + 4, 4);
	memcpy(&c->entries[1].ecx, vendor + 8, 4);
	return c;
}

/* What the save path reads from KVM: SYSENTER_* with high bits, and others. */
static void t_msrs(struct kvm_msr_entry *e)
{
	memset(e, 0, 5 * sizeof(*e));
	e[0] = (struct kvm_msr_entry){ .index = X86_MSR_IA32_SYSENTER_CS, .data = 0x10 };
	e[1] = (struct kvm_msr_entry){ .index = X86_MSR_IA32_SYSENTER_ESP, .data = T_HI_ESP };
	e[2] = (struct kvm_msr_entry){ .index = X86_MSR_IA32_SYSENTER_EIP, .data = T_HI_EIP };
	e[3] = (struct kvm_msr_entry){ .index = X86_MSR_LSTAR, .data = 0xffffffff81000000ULL };
	e[4] = (struct kvm_msr_entry){ .index = X86_MSR_KERNEL_GS_BASE,
				       .data = 0xffff888000000000ULL };
}

static void t_expect_truncated(const char *vendor)
{
	struct kvm_cpuid2 *c = t_cpuid(vendor);
	struct kvm_msr_entry e[5];

	assert_true(x86_cpuid_vendor_amd(c));
	t_msrs(e);
	x86_msrs_as_loaded(e, 5, c);
	assert_int_equal(e[0].data, 0x10);
	assert_int_equal(e[1].data, 0x00001000);
	assert_int_equal(e[2].data, 0x81a01234);
	/* Only SYSENTER_ESP/EIP: the other 64-bit MSRs are whole on AMD. */
	assert_int_equal(e[3].data, 0xffffffff81000000ULL);
	assert_int_equal(e[4].data, 0xffff888000000000ULL);
	free(c);
}

static void t_expect_unchanged(const struct kvm_cpuid2 *c)
{
	struct kvm_msr_entry e[5], want[5];

	assert_false(x86_cpuid_vendor_amd(c));
	t_msrs(e);
	t_msrs(want);
	x86_msrs_as_loaded(e, 5, c);
	assert_memory_equal(e, want, sizeof(e));
}

static void test_amd_truncated(void **state)
{
	(void)state;
	t_expect_truncated("AuthenticAMD");
}

static void test_hygon_truncated(void **state)
{
	(void)state;
	t_expect_truncated("HygonGenuine");
}

static void test_intel_unchanged(void **state)
{
	struct kvm_cpuid2 *c = t_cpuid("GenuineIntel");

	(void)state;
	t_expect_unchanged(c);
	free(c);
}

/* Centaur/Zhaoxin are Intel-compatible to KVM: 64-bit SYSENTER MSRs. */
static void test_other_vendors_unchanged(void **state)
{
	struct kvm_cpuid2 *c = t_cpuid("CentaurHauls");
	struct kvm_cpuid2 *none = calloc(1, sizeof(*none));

	(void)state;
	t_expect_unchanged(c);
	free(c);
	c = t_cpuid("  Shanghai  ");
	t_expect_unchanged(c);
	free(c);
	/* No leaf 0 (a vCPU given no CPUID), or no table at all. */
	assert_non_null(none);
	t_expect_unchanged(none);
	t_expect_unchanged(NULL);
	free(none);
}

/* A near-miss vendor string is not AMD. */
static void test_vendor_exact(void **state)
{
	struct kvm_cpuid2 *c = t_cpuid("AuthenticAMX");

	(void)state;
	assert_false(x86_cpuid_vendor_amd(c));
	free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_amd_truncated),
		cmocka_unit_test(test_hygon_truncated),
		cmocka_unit_test(test_intel_unchanged),
		cmocka_unit_test(test_other_vendors_unchanged),
		cmocka_unit_test(test_vendor_exact),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
