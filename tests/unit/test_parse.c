/* Sizes and durations as users type them. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "util/parse.h"

static void test_sizes(void **state)
{
	static const struct { const char *in; uint64_t want; } ok[] = {
		{ "0", 0 }, { "4096", 4096 }, { "1k", 1024 }, { "64K", 65536 },
		{ "512M", 512ULL << 20 }, { "512MiB", 512ULL << 20 }, { "1G", 1ULL << 30 },
		{ "1gb", 1ULL << 30 }, { "1.5G", 3ULL << 29 }, { "2T", 2ULL << 40 },
		{ "100b", 100 },
	};
	uint64_t v;

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		assert_int_equal(parse_size(ok[i].in, &v), 0);
		assert_int_equal(v, ok[i].want);
	}
}

static void test_bad_sizes(void **state)
{
	static const char *const bad[] = {
		"", "M", "-1", "+5", "1Q", "1 G", "0x10", "1e3", "1.5", "1..5M", "G1", " 1",
	};
	uint64_t v = 77;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(parse_size(bad[i], &v), -EINVAL);
	assert_int_equal(parse_size(NULL, &v), -EINVAL);
	assert_int_equal(v, 77);
	assert_int_equal(parse_size("99999999999999999999999", &v), -ERANGE);
	assert_int_equal(parse_size("20000000T", &v), -ERANGE);
}

static void test_durations(void **state)
{
	static const struct { const char *in; uint64_t want; } ok[] = {
		{ "50ms", 50 * NSEC_PER_MSEC }, { "2s", 2 * NSEC_PER_SEC },
		{ "1.5s", 1500 * NSEC_PER_MSEC }, { "300us", 300 * NSEC_PER_USEC },
		{ "10m", 600 * NSEC_PER_SEC }, { "1h", 3600 * NSEC_PER_SEC }, { "7ns", 7 },
		{ "0", 0 },
	};
	uint64_t v;

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		assert_int_equal(parse_duration(ok[i].in, NSEC_PER_MSEC, &v), 0);
		assert_int_equal(v, ok[i].want);
	}
	/* A bare number takes the caller's unit. */
	assert_int_equal(parse_duration("300", NSEC_PER_MSEC, &v), 0);
	assert_int_equal(v, 300 * NSEC_PER_MSEC);
	assert_int_equal(parse_duration("3", NSEC_PER_SEC, &v), 0);
	assert_int_equal(v, 3 * NSEC_PER_SEC);
}

static void test_bad_durations(void **state)
{
	static const char *const bad[] = { "", "ms", "5 ms", "5sec", "-1s", "1d", "5S" };
	uint64_t v;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(parse_duration(bad[i], NSEC_PER_MSEC, &v), -EINVAL);
	assert_int_equal(parse_duration("99999999999999h", NSEC_PER_MSEC, &v), -ERANGE);
}

static void test_uint(void **state)
{
	uint64_t v;

	assert_int_equal(parse_uint("16", 64, &v), 0);
	assert_int_equal(v, 16);
	assert_int_equal(parse_uint("65", 64, &v), -ERANGE);
	assert_int_equal(parse_uint("18446744073709551616", UINT64_MAX, &v), -ERANGE);
	assert_int_equal(parse_uint("1x", 64, &v), -EINVAL);
	assert_int_equal(parse_uint("", 64, &v), -EINVAL);
	assert_int_equal(parse_uint("-1", 64, &v), -EINVAL);
}

static void test_format_size(void **state)
{
	char buf[32];

	assert_string_equal(format_size(512, buf, sizeof(buf)), "512 B");
	assert_string_equal(format_size(1536, buf, sizeof(buf)), "1.5 KiB");
	assert_string_equal(format_size(1ULL << 30, buf, sizeof(buf)), "1.0 GiB");
}

/* Collects "key=val;" for each pair; fails on key "stop". */
static int t_kv_pair(const char *key, const char *val, void *opaque, char *why, size_t whylen)
{
	char *out = opaque;

	if (!strcmp(key, "stop")) {
		snprintf(why, whylen, "stopped at %s", val);
		return -EINVAL;
	}
	strcat(out, key);
	strcat(out, "=");
	strcat(out, val);
	strcat(out, ";");
	return 0;
}

static void test_kv_list(void **state)
{
	char out[256] = "", why[64] = "";

	assert_int_equal(parse_kv_list("path=/x,readonly=on,serial=a=b", t_kv_pair, out, why,
				       sizeof(why)), 0);
	assert_string_equal(out, "path=/x;readonly=on;serial=a=b;");
	out[0] = '\0';
	assert_int_equal(parse_kv_list("a=1,bare,c=3", t_kv_pair, out, why, sizeof(why)), -EINVAL);
	assert_string_equal(out, "a=1;");
	assert_string_equal(why, "'bare' is not KEY=VALUE");
	out[0] = '\0';
	assert_int_equal(parse_kv_list("a=1,stop=here,c=3", t_kv_pair, out, why, sizeof(why)), -EINVAL);
	assert_string_equal(out, "a=1;");
	assert_string_equal(why, "stopped at here");
	out[0] = '\0';
	assert_int_equal(parse_kv_list("", t_kv_pair, out, why, sizeof(why)), 0);
	assert_string_equal(out, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_bad_sizes),
		cmocka_unit_test(test_durations),
		cmocka_unit_test(test_bad_durations),
		cmocka_unit_test(test_uint),
		cmocka_unit_test(test_format_size),
		cmocka_unit_test(test_kv_list),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
