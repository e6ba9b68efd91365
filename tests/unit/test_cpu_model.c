/* CPU models and the destination's CPU check, on made-up CPUID tables. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "arch/x86/cpu_model.h"

#define NENT 6

/* A host with avx2, avx512f, xsaves, AVX and AVX-512 XSAVE components. */
static struct kvm_cpuid2 *rich_host(void)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + NENT * sizeof(c->entries[0]));

	assert_non_null(c);
	c->nent = NENT;
	c->entries[0] = (struct kvm_cpuid_entry2){ .function = 1,
		.ecx = 1u << 0 | 1u << 13 | 1u << 26 | 1u << 28, .edx = 1u << 0 | 1u << 25 };
	c->entries[1] = (struct kvm_cpuid_entry2){ .function = 7, .index = 0,
		.ebx = 1u << 5 | 1u << 16 };
	c->entries[2] = (struct kvm_cpuid_entry2){ .function = 0xd, .index = 0,
		.eax = 0xe7, .ebx = 832, .ecx = 2688 };
	c->entries[3] = (struct kvm_cpuid_entry2){ .function = 0xd, .index = 1, .eax = 1u << 3 };
	c->entries[4] = (struct kvm_cpuid_entry2){ .function = 0xd, .index = 2,
		.eax = 256, .ebx = 576 };
	c->entries[5] = (struct kvm_cpuid_entry2){ .function = 0xd, .index = 7,
		.eax = 1024, .ebx = 1664 };
	return c;
}

static void test_same_host_runs(void **state)
{
	struct kvm_cpuid2 *h = rich_host();
	char list[256];

	(void)state;
	assert_int_equal(x86_cpu_missing(h->entries, h->nent, h->entries, h->nent,
					 list, sizeof(list)), 0);
	assert_string_equal(list, "");
	free(h);
}

/* A destination without AVX-512 and XSAVES refuses, naming each by name. */
static void test_missing_named(void **state)
{
	struct kvm_cpuid2 *g = rich_host(), *h = rich_host();
	char list[256];

	(void)state;
	h->entries[1].ebx &= ~(1u << 16);		/* avx512f */
	h->entries[3].eax = 0;				/* xsaves */
	h->entries[2].eax = 0x7;			/* x87, sse, avx */
	h->entries[2].ecx = 832;
	unsigned n = x86_cpu_missing(g->entries, g->nent, h->entries, h->nent, list, sizeof(list));
	assert_int_equal(n, 6);
	assert_string_equal(list, "avx512f, xsaves, xsave-opmask, xsave-zmm_hi256, "
			    "xsave-hi16_zmm, xsave-size(2688>832)");
	free(g);
	free(h);
}

/* A guest table that lacks leaves, or a host that lacks them: no crash. */
static void test_missing_leaves(void **state)
{
	struct kvm_cpuid2 *g = rich_host();
	char list[16];

	(void)state;
	unsigned n = x86_cpu_missing(g->entries, g->nent, NULL, 0, list, sizeof(list));
	assert_true(n >= 8);
	assert_true(strlen(list) < sizeof(list));
	assert_non_null(strstr(list, "..."));		/* truncated, said so */
	assert_int_equal(x86_cpu_missing(NULL, 0, g->entries, g->nent, list, sizeof(list)), 0);
	free(g);
}

static void test_baseline(void **state)
{
	struct kvm_cpuid2 *g = rich_host(), *h = rich_host();
	struct x86_cpu_model m;
	char why[128], list[256];

	(void)state;
	assert_int_equal(x86_cpu_model_parse("baseline", &m, why, sizeof(why)), 0);
	x86_cpu_model_apply(&m, g);
	assert_int_equal(g->entries[0].ecx, 1u << 0 | 1u << 13);	/* sse3 cx16 */
	assert_int_equal(g->entries[0].edx, 1u << 0 | 1u << 25);	/* fpu sse */
	assert_int_equal(g->entries[1].ebx, 0);
	assert_int_equal(g->entries[3].eax, 0);
	assert_int_equal(g->entries[2].eax, 0x3);			/* x87, sse */
	/* ...and runs on a host that has none of the rest. */
	memset(&h->entries[1], 0, 5 * sizeof(h->entries[0]));
	assert_int_equal(x86_cpu_missing(g->entries, g->nent, h->entries, h->nent,
					 list, sizeof(list)), 0);
	free(g);
	free(h);
}

static void test_host_keeps_all(void **state)
{
	struct kvm_cpuid2 *g = rich_host(), *h = rich_host();
	struct x86_cpu_model m;
	char why[128];

	(void)state;
	assert_int_equal(x86_cpu_model_parse("host", &m, why, sizeof(why)), 0);
	x86_cpu_model_apply(&m, g);
	assert_memory_equal(g, h, sizeof(*g) + NENT * sizeof(g->entries[0]));
	free(g);
	free(h);
}

static char *write_model(const char *text)
{
	static char path[] = "/tmp/ferry-cpu-model-XXXXXX";
	int fd;

	strcpy(path, "/tmp/ferry-cpu-model-XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return path;
}

/* A file model: avx2 but not avx512f; the AVX-512 XSAVE state goes too. */
static void test_file_model(void **state)
{
	struct kvm_cpuid2 *g = rich_host();
	struct x86_cpu_model m;
	char why[128];
	char *path = write_model("# no AVX-512\nfpu sse sse3 cx16\txsave avx avx2\n\nxsaves # ok\n");

	(void)state;
	assert_int_equal(x86_cpu_model_parse(path, &m, why, sizeof(why)), 0);
	unlink(path);
	x86_cpu_model_apply(&m, g);
	assert_int_equal(g->entries[1].ebx, 1u << 5);
	assert_int_equal(g->entries[3].eax, 1u << 3);
	assert_int_equal(g->entries[2].eax, 0x7);
	assert_int_equal(g->entries[2].ecx, 832);		/* 576 + 256 */
	free(g);
}

static void test_file_errors(void **state)
{
	struct x86_cpu_model m;
	char why[128];
	char *path = write_model("fpu sse avx1024\n");

	(void)state;
	assert_int_equal(x86_cpu_model_parse(path, &m, why, sizeof(why)), -EINVAL);
	unlink(path);
	assert_non_null(strstr(why, "unknown feature 'avx1024'"));
	assert_int_equal(x86_cpu_model_parse("/nonexistent/model", &m, why, sizeof(why)), -ENOENT);
	assert_non_null(strstr(why, "/nonexistent/model"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_same_host_runs),
		cmocka_unit_test(test_missing_named),
		cmocka_unit_test(test_missing_leaves),
		cmocka_unit_test(test_baseline),
		cmocka_unit_test(test_host_keeps_all),
		cmocka_unit_test(test_file_model),
		cmocka_unit_test(test_file_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
