/* CONFIG's CPUID (version 3): round trip, hostile records, the CPU check. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "migration/config.h"
#include "arch/x86/cpu_model.h"

static struct kvm_cpuid2 *table(unsigned n)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));

	assert_non_null(c);
	c->nent = n;
	return c;
}

static struct mig_config *config_with(const struct kvm_cpuid2 *cpuid)
{
	struct mig_config *c = calloc(1, sizeof(*c));

	assert_non_null(c);
	*c = (struct mig_config){ .memory = 64ULL << 20, .vcpus = 1, .page_size = 4096, .codecs = 1 };
	mig_config_set_cpuid(c, cpuid);
	return c;
}

static void test_roundtrip(void **state)
{
	struct kvm_cpuid2 *t = table(2);
	struct mig_config *back = calloc(1, sizeof(*back));
	struct vmstate_error err;
	struct vmstate_buf b;

	(void)state;
	t->entries[0] = (struct kvm_cpuid_entry2){ .function = 1, .ecx = 0x1234, .edx = 0x5678 };
	t->entries[1] = (struct kvm_cpuid_entry2){ .function = 7, .index = 0, .flags = 1, .ebx = 1u << 16 };
	struct mig_config *c = config_with(t);
	vmstate_buf_init(&b);
	assert_int_equal(vmstate_save(&mig_config_vmsd, c, &b), 0);
	assert_int_equal(vmstate_load(&mig_config_vmsd, back, b.data, b.len, &err), 0);
	assert_int_equal(back->cpuid_nent, 2);
	assert_memory_equal(back->cpuid, c->cpuid, 2 * sizeof(c->cpuid[0]));
	vmstate_buf_free(&b);
	free(c); free(back); free(t);
}

static void test_duplicate_refused(void **state)
{
	struct kvm_cpuid2 *t = table(2);
	struct mig_config *back = calloc(1, sizeof(*back));
	struct vmstate_error err;
	struct vmstate_buf b;

	(void)state;
	t->entries[0] = (struct kvm_cpuid_entry2){ .function = 0xd, .index = 1 };
	t->entries[1] = (struct kvm_cpuid_entry2){ .function = 0xd, .index = 1, .eax = 8 };
	struct mig_config *c = config_with(t);
	vmstate_buf_init(&b);
	assert_int_equal(vmstate_save(&mig_config_vmsd, c, &b), 0);
	assert_int_not_equal(vmstate_load(&mig_config_vmsd, back, b.data, b.len, &err), 0);
	assert_non_null(strstr(err.msg, "CPUID leaf 0xd.1 appears twice"));
	vmstate_buf_free(&b);
	free(c); free(back); free(t);
}

static void test_check_cpu(void **state)
{
	struct kvm_cpuid2 *guest = table(2), *host = table(2);
	char why[512];

	(void)state;
	guest->entries[0] = (struct kvm_cpuid_entry2){ .function = 7, .ebx = 1u << 5 | 1u << 16 };
	guest->entries[1] = (struct kvm_cpuid_entry2){ .function = 0xd, .index = 1, .eax = 1u << 3 };
	host->entries[0] = (struct kvm_cpuid_entry2){ .function = 7, .ebx = 1u << 5 };
	host->entries[1] = (struct kvm_cpuid_entry2){ .function = 0xd, .index = 1 };
	struct mig_config *c = config_with(guest);
	assert_int_equal(mig_config_check_cpu(c, guest, why, sizeof(why)), 0);
	assert_int_equal(mig_config_check_cpu(c, host, why, sizeof(why)), -EOPNOTSUPP);
	assert_string_equal(why, "this host's CPU lacks 2 features the guest uses: avx512f, xsaves");
	/* A reason too long for its buffer says so, whole names only. */
	guest->entries[0].ebx = 0xffffffffu;
	struct mig_config *many = config_with(guest);
	char small[100];
	assert_int_equal(mig_config_check_cpu(many, host, small, sizeof(small)), -EOPNOTSUPP);
	assert_true(strlen(small) < sizeof(small));
	assert_non_null(strstr(small, "lacks 26 features"));
	assert_string_equal(small + strlen(small) - 3, "...");
	free(many);
	/* An older stream carries no CPUID: nothing to check. */
	c->cpuid_nent = 0;
	assert_int_equal(mig_config_check_cpu(c, host, why, sizeof(why)), 0);
	/* An MSR this host did not probe as restorable (none, without KVM). */
	c->msr_nent = 1;
	c->msrs[0] = 0x10;
	assert_int_equal(mig_config_check_cpu(c, host, why, sizeof(why)), -EOPNOTSUPP);
	assert_string_equal(why, "this host's CPU lacks 1 feature the guest uses: msr-0x10");
	free(c); free(guest); free(host);
}

static void put(uint8_t **p, uint64_t v, unsigned w)
{
	for (unsigned i = 0; i < w; i++)
		*(*p)++ = (uint8_t)(v >> (8 * i));
}

/* A version-2 record (an older source, an older image): loaded, no CPUID. */
static void test_version2_accepted(void **state)
{
	uint8_t rec[128], *p = rec, *body;
	struct mig_config *c = calloc(1, sizeof(*c));
	struct vmstate_error err;

	(void)state;
	memset(c, 0x5a, sizeof(*c));			/* stale values must go */
	put(&p, 10, 1);
	memcpy(p, "mig-config", 10), p += 10;
	put(&p, 2, 4);
	uint8_t *body_len = p;
	p += 4;
	body = p;
	put(&p, 8, 4), put(&p, 64ULL << 20, 8);
	put(&p, 4, 4), put(&p, 1, 4);
	put(&p, 4, 4), put(&p, 4096, 4);
	put(&p, 4, 4), put(&p, 0, 4);
	put(&p, 4, 4), put(&p, 1, 4);
	put(&p, 2, 4), put(&p, 2, 2);
	put(&p, 2, 4), memcpy(p, "hi", 2), p += 2;
	uint8_t *end = p;
	p = body_len;
	put(&p, (uint64_t)(end - body), 4);
	assert_int_equal(vmstate_load(&mig_config_vmsd, c, rec, (size_t)(end - rec), &err), 0);
	assert_int_equal(c->memory, 64ULL << 20);
	assert_int_equal(c->cmdline_len, 2);
	assert_int_equal(c->cpuid_nent, 0);
	assert_int_equal(c->msr_nent, 0);
	free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_duplicate_refused),
		cmocka_unit_test(test_check_cpu),
		cmocka_unit_test(test_version2_accepted),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
