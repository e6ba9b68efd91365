/* The token bucket, driven by a fake clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "util/ratelimit.h"

#define MS 1000000ULL

static void test_unlimited(void **state)
{
	struct ratelimit rl;

	ratelimit_init(&rl, 0, 0);
	assert_int_equal(ratelimit_take(&rl, 1ULL << 40, 1), 0);
}

static void test_steady_rate(void **state)
{
	struct ratelimit rl;
	uint64_t now = 1000 * MS, sent = 0;

	/* 10 MB/s with a 1 MB burst: sending 64 KiB chunks as fast as allowed. */
	ratelimit_init(&rl, 10000000, 1000000);
	while (now < 3000 * MS) {
		uint64_t wait = ratelimit_take(&rl, 65536, now);
		sent += 65536;
		now += wait;
	}
	/* 2 s at 10 MB/s plus the initial burst, within one chunk. */
	assert_in_range(sent, 21000000 - 65536, 21000000 + 2 * 65536);
}

static void test_burst_is_capped(void **state)
{
	struct ratelimit rl;

	ratelimit_init(&rl, 1000000, 100000);
	assert_int_equal(ratelimit_take(&rl, 100000, 1 * MS), 0);
	/* A long idle time refills only up to the burst. */
	assert_int_equal(ratelimit_take(&rl, 100000, 10000 * MS), 0);
	uint64_t wait = ratelimit_take(&rl, 100000, 10000 * MS);
	assert_in_range(wait, 99 * MS, 101 * MS);
}

static void test_rate_change(void **state)
{
	struct ratelimit rl;

	ratelimit_init(&rl, 1000, 1000);
	assert_true(ratelimit_take(&rl, 1000000, 1) > 0);
	ratelimit_set_rate(&rl, 0);	/* stop-and-copy runs unlimited */
	assert_int_equal(ratelimit_take(&rl, 1000000, 2), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unlimited),
		cmocka_unit_test(test_steady_rate),
		cmocka_unit_test(test_burst_is_capped),
		cmocka_unit_test(test_rate_change),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
