/*
 * Continuous checkpointing's pure logic: the standby applies an epoch only
 * when it came whole, and the failover / fence decisions, fed timestamps.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "migration/replicate/epoch.h"

#define MS 1000000ULL
#define SEC 1000000000ULL
#define PAGES 16

/* A fake guest RAM of PAGES pages, and how many writes reached it. */
struct ram {
	uint8_t b[PAGES * MIG_EPOCH_PAGE];
	unsigned writes;
	int fail_at;		/* -1: never */
};

static int ram_apply(void *opaque, uint64_t gpa, const uint8_t *data)
{
	struct ram *r = opaque;

	if (gpa / MIG_EPOCH_PAGE >= PAGES)
		return -ERANGE;
	if (r->fail_at >= 0 && (int)r->writes == r->fail_at)
		return -EIO;
	r->writes++;
	if (data)
		memcpy(r->b + gpa, data, MIG_EPOCH_PAGE);
	else
		memset(r->b + gpa, 0, MIG_EPOCH_PAGE);
	return 0;
}


static const uint8_t *fill(uint8_t *p, uint8_t v)
{
	memset(p, v, MIG_EPOCH_PAGE);
	return p;
}

static void open_epoch(struct mig_epoch *e, uint64_t seq)
{
	char why[128];

	assert_int_equal(mig_epoch_begin(e, seq, why, sizeof(why)), 0);
}

static void test_whole_epoch_commits(void **state)
{
	struct mig_epoch e;
	struct ram r = { .fail_at = -1 };
	uint8_t p[MIG_EPOCH_PAGE], st[3] = { 1, 2, 3 };
	char why[160];

	memset(r.b, 0x55, sizeof(r.b));
	mig_epoch_init(&e, PAGES);
	open_epoch(&e, 1);
	assert_int_equal(mig_epoch_add(&e, 2 * MIG_EPOCH_PAGE, fill(p, 0xaa), why, sizeof(why)), 0);
	assert_int_equal(mig_epoch_add(&e, 5 * MIG_EPOCH_PAGE, NULL, why, sizeof(why)), 0);
	assert_int_equal(mig_epoch_set_state(&e, st, sizeof(st), why, sizeof(why)), 0);
	/* Nothing reaches RAM before the end. */
	assert_int_equal(r.writes, 0);
	assert_int_equal(r.b[2 * MIG_EPOCH_PAGE], 0x55);
	assert_int_equal(mig_epoch_end(&e, 1, 2, 77, 77, ram_apply, &r, why, sizeof(why)), 0);
	assert_int_equal(r.writes, 2);
	assert_int_equal(r.b[2 * MIG_EPOCH_PAGE + 100], 0xaa);
	assert_int_equal(r.b[5 * MIG_EPOCH_PAGE + 7], 0);
	assert_int_equal(r.b[0], 0x55);
	assert_int_equal(e.committed, 1);
	assert_false(e.open);
	assert_int_equal(e.committed_state_len, 3);
	assert_memory_equal(e.committed_state, st, 3);
	mig_epoch_free(&e);
}

/* Later pages of the same address win: they are applied in arrival order. */
static void test_order_kept(void **state)
{
	struct mig_epoch e;
	struct ram r = { .fail_at = -1 };
	uint8_t p[MIG_EPOCH_PAGE], st = 9;
	char why[160];

	mig_epoch_init(&e, PAGES);
	open_epoch(&e, 1);
	assert_int_equal(mig_epoch_add(&e, 0, fill(p, 1), why, sizeof(why)), 0);
	assert_int_equal(mig_epoch_add(&e, 0, fill(p, 2), why, sizeof(why)), 0);
	assert_int_equal(mig_epoch_set_state(&e, &st, 1, why, sizeof(why)), 0);
	assert_int_equal(mig_epoch_end(&e, 1, 2, 5, 5, ram_apply, &r, why, sizeof(why)), 0);
	assert_int_equal(r.b[0], 2);
	mig_epoch_free(&e);
}

/* Every way an epoch can be incomplete drops it whole: RAM untouched, committed unchanged. */
static void test_broken_epochs_dropped(void **state)
{
	static const struct {
		uint64_t seq, pages, chain;
		bool state;
		const char *want;
	} cases[] = {
		{ 2, 1, 7, true, "ends epoch" },		/* another epoch's END */
		{ 1, 2, 7, true, "counts 2 pages" },		/* a page went missing */
		{ 1, 1, 7, false, "no STATE" },
		{ 1, 1, 8, true, "section chain" },		/* a section lost or changed */
	};
	uint8_t p[MIG_EPOCH_PAGE], st = 1;
	char why[160];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct mig_epoch e;
		struct ram r = { .fail_at = -1 };
		mig_epoch_init(&e, PAGES);
		open_epoch(&e, 1);
		assert_int_equal(mig_epoch_add(&e, 0, fill(p, 3), why, sizeof(why)), 0);
		if (cases[i].state)
			assert_int_equal(mig_epoch_set_state(&e, &st, 1, why, sizeof(why)), 0);
		assert_int_equal(mig_epoch_end(&e, cases[i].seq, cases[i].pages, cases[i].chain, 7,
					       ram_apply, &r, why, sizeof(why)), -EPROTO);
		assert_non_null(strstr(why, cases[i].want));
		assert_int_equal(r.writes, 0);
		assert_int_equal(e.committed, 0);
		assert_false(e.open);
		assert_null(e.committed_state);
		/* The same epoch may come again (a new connection would start over). */
		open_epoch(&e, 1);
		mig_epoch_free(&e);
	}
}

static void test_sequence_rules(void **state)
{
	struct mig_epoch e;
	struct ram r = { .fail_at = -1 };
	uint8_t p[MIG_EPOCH_PAGE], st = 1;
	char why[160];

	mig_epoch_init(&e, 2);
	/* Not 1 after 0; a page, a STATE or an END outside an epoch. */
	assert_int_equal(mig_epoch_begin(&e, 2, why, sizeof(why)), -EPROTO);
	assert_int_equal(mig_epoch_add(&e, 0, fill(p, 1), why, sizeof(why)), -EPROTO);
	assert_int_equal(mig_epoch_set_state(&e, &st, 1, why, sizeof(why)), -EPROTO);
	assert_int_equal(mig_epoch_end(&e, 1, 0, 0, 0, ram_apply, &r, why, sizeof(why)), -EPROTO);
	open_epoch(&e, 1);
	/* No second EPOCH inside one, no unaligned page, no more pages than the guest has. */
	assert_int_equal(mig_epoch_begin(&e, 2, why, sizeof(why)), -EPROTO);
	assert_int_equal(mig_epoch_add(&e, 100, fill(p, 1), why, sizeof(why)), -EPROTO);
	assert_int_equal(mig_epoch_add(&e, 0, fill(p, 1), why, sizeof(why)), 0);
	assert_int_equal(mig_epoch_add(&e, 0, fill(p, 1), why, sizeof(why)), 0);
	assert_int_equal(mig_epoch_add(&e, 0, fill(p, 1), why, sizeof(why)), -EPROTO);
	assert_non_null(strstr(why, "more than 2 pages"));
	assert_int_equal(mig_epoch_set_state(&e, &st, 1, why, sizeof(why)), 0);
	assert_int_equal(mig_epoch_set_state(&e, &st, 1, why, sizeof(why)), -EPROTO);
	mig_epoch_discard(&e);
	/* Epoch 1 was dropped, not committed: 1 again, then 2. */
	open_epoch(&e, 1);
	assert_int_equal(mig_epoch_set_state(&e, &st, 1, why, sizeof(why)), 0);
	assert_int_equal(mig_epoch_end(&e, 1, 0, 3, 3, ram_apply, &r, why, sizeof(why)), 0);
	assert_int_equal(mig_epoch_begin(&e, 1, why, sizeof(why)), -EPROTO);
	open_epoch(&e, 2);
	mig_epoch_free(&e);
}

static void test_apply_failure_reported(void **state)
{
	struct mig_epoch e;
	struct ram r = { .fail_at = 1 };
	uint8_t p[MIG_EPOCH_PAGE], st = 1;
	char why[160];

	mig_epoch_init(&e, PAGES);
	open_epoch(&e, 1);
	assert_int_equal(mig_epoch_add(&e, 0, fill(p, 1), why, sizeof(why)), 0);
	assert_int_equal(mig_epoch_add(&e, MIG_EPOCH_PAGE, fill(p, 1), why, sizeof(why)), 0);
	assert_int_equal(mig_epoch_set_state(&e, &st, 1, why, sizeof(why)), 0);
	assert_int_equal(mig_epoch_end(&e, 1, 2, 0, 0, ram_apply, &r, why, sizeof(why)), -EIO);
	assert_int_equal(e.committed, 0);
	/* RAM is half-written: no further epoch can make it a checkpoint again. */
	assert_true(e.torn);
	assert_int_equal(mig_epoch_begin(&e, 1, why, sizeof(why)), -EPROTO);
	mig_epoch_free(&e);
}

static enum mig_failover_action decide(uint64_t now, uint64_t heard, enum mig_failover_mode mode,
				       bool lost, bool asked)
{
	struct mig_failover_in in = {
		.now_ns = now, .last_heard_ns = heard, .timeout_ns = SEC, .mode = mode,
		.link_lost = lost, .operator_asked = asked,
	};
	const char *reason = NULL;
	enum mig_failover_action a = mig_failover_decide(&in, &reason);

	assert_non_null(reason);
	return a;
}

static void test_failover_auto(void **state)
{
	/* Heard recently: wait, connected or not. */
	assert_int_equal(decide(10 * SEC, 10 * SEC - 100 * MS, MIG_FAILOVER_AUTO, false, false),
			 MIG_FAILOVER_WAIT);
	assert_int_equal(decide(10 * SEC, 10 * SEC - 999 * MS, MIG_FAILOVER_AUTO, true, false),
			 MIG_FAILOVER_WAIT);
	/* Silent for the timeout: take over, lost connection or stalled link alike. */
	assert_int_equal(decide(10 * SEC, 9 * SEC, MIG_FAILOVER_AUTO, true, false),
			 MIG_FAILOVER_TAKEOVER);
	assert_int_equal(decide(10 * SEC, 8 * SEC, MIG_FAILOVER_AUTO, false, false),
			 MIG_FAILOVER_TAKEOVER);
	/* A clock that seems to run backwards is no silence. */
	assert_int_equal(decide(SEC, 5 * SEC, MIG_FAILOVER_AUTO, true, false), MIG_FAILOVER_WAIT);
	/* The operator may always ask. */
	assert_int_equal(decide(SEC, SEC, MIG_FAILOVER_AUTO, false, true), MIG_FAILOVER_TAKEOVER);
}

static void test_failover_manual(void **state)
{
	assert_int_equal(decide(100 * SEC, SEC, MIG_FAILOVER_MANUAL, true, false),
			 MIG_FAILOVER_WAIT);
	assert_int_equal(decide(100 * SEC, SEC, MIG_FAILOVER_MANUAL, false, false),
			 MIG_FAILOVER_WAIT);
	assert_int_equal(decide(100 * SEC, SEC, MIG_FAILOVER_MANUAL, true, true),
			 MIG_FAILOVER_TAKEOVER);
}

static void test_fence(void **state)
{
	uint64_t f;
	char why[200];

	assert_int_equal(mig_heartbeat_ns(SEC), 100 * MS);
	assert_int_equal(mig_heartbeat_ns(50 * MS), 10 * MS);
	/* Default: half the standby's. */
	assert_int_equal(mig_fence_pick(0, SEC, 100 * MS, &f, why, sizeof(why)), 0);
	assert_int_equal(f, 500 * MS);
	assert_int_equal(mig_fence_pick(400 * MS, SEC, 100 * MS, &f, why, sizeof(why)), 0);
	assert_int_equal(f, 400 * MS);
	/* More than half the standby's could let both run. */
	assert_int_equal(mig_fence_pick(600 * MS, SEC, 100 * MS, &f, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "half"));
	assert_int_equal(mig_fence_pick(2 * SEC, SEC, 100 * MS, &f, why, sizeof(why)), -EINVAL);
	assert_int_equal(mig_fence_pick(200 * MS, SEC, 100 * MS, &f, why, sizeof(why)), -EINVAL);
	/* The primary fences before the standby may take over. */
	assert_false(mig_fence_decide(SEC + 499 * MS, SEC, 500 * MS, MIG_FAILOVER_AUTO));
	assert_true(mig_fence_decide(SEC + 500 * MS, SEC, 500 * MS, MIG_FAILOVER_AUTO));
	assert_int_equal(decide(SEC + 500 * MS, SEC, MIG_FAILOVER_AUTO, true, false),
			 MIG_FAILOVER_WAIT);
	/* A manual standby never takes over alone: the primary runs on. */
	assert_false(mig_fence_decide(100 * SEC, SEC, 500 * MS, MIG_FAILOVER_MANUAL));
}

/*
 * A cut link, both sides alive, as times: the link breaks at t, the
 * primary last heard the standby just before, the standby last heard the
 * primary one heartbeat before t.  At every later instant at most one
 * side may run the guest.
 */
static void test_cut_link_no_split_brain(void **state)
{
	const uint64_t F = SEC, hb = mig_heartbeat_ns(F), t = 50 * SEC;
	uint64_t fence;
	char why[200];

	assert_int_equal(mig_fence_pick(0, F, hb, &fence, why, sizeof(why)), 0);
	for (uint64_t now = t; now < t + 5 * SEC; now += MS) {
		bool primary_runs = !mig_fence_decide(now, t, fence, MIG_FAILOVER_AUTO);
		bool standby_runs = decide(now, t - hb, MIG_FAILOVER_AUTO, true, false) ==
				    MIG_FAILOVER_TAKEOVER;
		assert_false(primary_runs && standby_runs);
	}
	/* And the standby does take over in the end. */
	assert_int_equal(decide(t + 5 * SEC, t - hb, MIG_FAILOVER_AUTO, true, false),
			 MIG_FAILOVER_TAKEOVER);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_whole_epoch_commits),
		cmocka_unit_test(test_order_kept),
		cmocka_unit_test(test_broken_epochs_dropped),
		cmocka_unit_test(test_sequence_rules),
		cmocka_unit_test(test_apply_failure_reported),
		cmocka_unit_test(test_failover_auto),
		cmocka_unit_test(test_failover_manual),
		cmocka_unit_test(test_fence),
		cmocka_unit_test(test_cut_link_no_split_brain),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
