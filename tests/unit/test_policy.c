/* The convergence policy, fed numbers: what it decides, and why. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "migration/source/policy.h"

#define MB 1000000ULL
#define MIB (1ULL << 20)
#define MS 1000000ULL
#define SEC 1000000000ULL

/*
 * A pre-copy after its first pass: the link carried 100 MB in 1 s, the
 * guest dirties 10 MB/s, the downtime limit is 300 ms (30 MB at that rate).
 */
static struct mig_policy_in policy_in(const uint64_t *pending, unsigned int n)
{
	return (struct mig_policy_in){
		.pending = pending,
		.nr_sources = n,
		.pass_bytes = 100 * MB,
		.pass_ns = SEC,
		.dirty_rate = 10 * MB,
		.downtime_ns = 300 * MS,
		.elapsed_ns = 2 * SEC,
		.passes_done = 1,
		.mode = MIG_MODE_PRECOPY,
	};
}

static enum mig_decision decide(const struct mig_policy_in *in, struct mig_policy_out *out)
{
	enum mig_decision d = mig_policy_decide(in, out);

	assert_int_equal(d, out->decision);
	assert_true(strlen(out->reason) > 0);
	return d;
}

static void test_converges_when_downtime_fits(void **state)
{
	uint64_t pending[] = { 10 * MB };
	struct mig_policy_in in = policy_in(pending, 1);
	struct mig_policy_out out;

	assert_int_equal(decide(&in, &out), MIG_POLICY_SWITCH_OVER);
	assert_int_equal(out.why, MIG_WHY_CONVERGED);
	assert_int_equal(out.bandwidth, 100 * MB);
	assert_int_equal(out.expected_downtime_ns, 100 * MS);
	assert_false(out.forced);
	assert_false(out.throttle);
	assert_string_equal(out.reason, "expected downtime 100 ms fits the 300 ms limit");

	/* Exactly the limit less the tenth kept for the switchover still fits. */
	pending[0] = 27 * MB;
	assert_int_equal(decide(&in, &out), MIG_POLICY_SWITCH_OVER);
	assert_int_equal(out.expected_downtime_ns, 270 * MS);
	assert_string_equal(out.reason, "expected downtime 270 ms fits the 300 ms limit");
	/* The whole limit does not: the switchover needs its own time too. */
	pending[0] = 30 * MB;
	assert_int_equal(decide(&in, &out), MIG_POLICY_CONTINUE);
	assert_int_equal(out.why, MIG_WHY_NOT_CONVERGED);
}

static void test_another_pass_when_not(void **state)
{
	uint64_t pending[] = { 27 * MB + 1 };
	struct mig_policy_in in = policy_in(pending, 1);
	struct mig_policy_out out;

	assert_int_equal(decide(&in, &out), MIG_POLICY_CONTINUE);
	assert_int_equal(out.why, MIG_WHY_NOT_CONVERGED);
	assert_false(out.throttle);
	assert_int_equal(out.throttle_pct, 0);

	pending[0] = 100 * MB;
	assert_int_equal(decide(&in, &out), MIG_POLICY_CONTINUE);
	assert_int_equal(out.expected_downtime_ns, SEC);
	assert_string_equal(out.reason, "expected downtime 1000 ms exceeds the 300 ms limit "
			    "(a tenth kept for the switchover): another pass");

	/* A larger limit lets the same numbers converge (1000 ms fits 1112 ms less a tenth). */
	in.downtime_ns = 1112 * MS;
	assert_int_equal(decide(&in, &out), MIG_POLICY_SWITCH_OVER);
}

static void test_max_iterations_forces_switchover(void **state)
{
	uint64_t pending[] = { 500 * MB };
	struct mig_policy_in in = policy_in(pending, 1);
	struct mig_policy_out out;

	/* At most 3 passes, the stop-and-copy included: 2 live ones. */
	in.max_iterations = 3;
	assert_int_equal(decide(&in, &out), MIG_POLICY_CONTINUE);
	assert_false(out.forced);
	in.passes_done = 2;
	assert_int_equal(decide(&in, &out), MIG_POLICY_SWITCH_OVER);
	assert_int_equal(out.why, MIG_WHY_MAX_ITERATIONS);
	assert_true(out.forced);

	/* 1: the first pass is the only live one. */
	in.max_iterations = 1;
	in.passes_done = 1;
	assert_int_equal(decide(&in, &out), MIG_POLICY_SWITCH_OVER);
	assert_true(out.forced);

	/* 0: no limit at all. */
	in.max_iterations = 0;
	in.passes_done = 1000;
	assert_int_equal(decide(&in, &out), MIG_POLICY_CONTINUE);
}

static void test_timeout_cancel_gives_up(void **state)
{
	uint64_t pending[] = { 500 * MB };
	struct mig_policy_in in = policy_in(pending, 1);
	struct mig_policy_out out;

	in.timeout_ns = 5 * SEC;
	in.on_timeout = MIG_ON_TIMEOUT_CANCEL;
	in.elapsed_ns = 5 * SEC - 1;
	assert_int_equal(decide(&in, &out), MIG_POLICY_CONTINUE);

	in.elapsed_ns = 5 * SEC;
	assert_int_equal(decide(&in, &out), MIG_POLICY_GIVE_UP);
	assert_int_equal(out.why, MIG_WHY_TIMEOUT);
	assert_string_equal(out.reason, "timed out after 5000 ms without converging");

	/* Giving up wins over anything else that pass. */
	in.postcopy_asked = true;
	in.max_iterations = 1;
	assert_int_equal(decide(&in, &out), MIG_POLICY_GIVE_UP);

	/* No timeout set: no elapsed time is too long. */
	in.timeout_ns = 0;
	in.postcopy_asked = false;
	in.max_iterations = 0;
	in.elapsed_ns = UINT64_MAX;
	assert_int_equal(decide(&in, &out), MIG_POLICY_CONTINUE);
}

static void test_timeout_force_switches_over(void **state)
{
	uint64_t pending[] = { 500 * MB };
	struct mig_policy_in in = policy_in(pending, 1);
	struct mig_policy_out out;

	in.timeout_ns = 5 * SEC;
	in.elapsed_ns = 6 * SEC;
	in.on_timeout = MIG_ON_TIMEOUT_FORCE;
	assert_int_equal(decide(&in, &out), MIG_POLICY_SWITCH_OVER);
	assert_int_equal(out.why, MIG_WHY_TIMEOUT);
	assert_true(out.forced);
	assert_int_equal(out.expected_downtime_ns, 5 * SEC);
}

static void test_timeout_postcopy_goes_postcopy(void **state)
{
	uint64_t pending[] = { 500 * MB };
	struct mig_policy_in in = policy_in(pending, 1);
	struct mig_policy_out out;

	in.timeout_ns = 5 * SEC;
	in.elapsed_ns = 6 * SEC;
	in.on_timeout = MIG_ON_TIMEOUT_POSTCOPY;
	assert_int_equal(decide(&in, &out), MIG_POLICY_POSTCOPY);
	assert_int_equal(out.why, MIG_WHY_TIMEOUT);
	assert_true(out.forced);
}

static void test_auto_converge_steps(void **state)
{
	static const uint32_t steps[] = { 20, 30, 40, 50, 60, 70, 80, 90, 99, 99 };
	uint64_t pending[] = { 500 * MB };
	struct mig_policy_in in = policy_in(pending, 1);
	struct mig_policy_out out;

	in.auto_converge = true;
	in.dirty_rate = 80 * MB;	/* 160 MB/s > the 100 MB/s sent */
	for (unsigned int i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		assert_int_equal(decide(&in, &out), MIG_POLICY_CONTINUE);
		assert_int_equal(out.why, MIG_WHY_THROTTLE);
		assert_true(out.throttle);
		assert_int_equal(out.throttle_pct, steps[i]);
		in.throttle_pct = out.throttle_pct;
	}
	assert_string_equal(out.reason, "dirty rate outruns the link; vCPUs throttled to 1%");

	in.throttle_pct = 0;
	assert_int_equal(decide(&in, &out), MIG_POLICY_CONTINUE);
	assert_string_equal(out.reason, "dirty rate outruns the link; vCPUs throttled to 80%");
	/* A throttle above the steps is capped, not wrapped. */
	in.throttle_pct = 95;
	decide(&in, &out);
	assert_int_equal(out.throttle_pct, 99);
}

static void test_auto_converge_only_when_outrun(void **state)
{
	uint64_t pending[] = { 500 * MB };
	struct mig_policy_in in = policy_in(pending, 1);
	struct mig_policy_out out;

	in.auto_converge = true;
	in.throttle_pct = 30;
	/* dirty rate * 2 == bandwidth: not yet. */
	in.dirty_rate = 50 * MB;
	assert_int_equal(decide(&in, &out), MIG_POLICY_CONTINUE);
	assert_false(out.throttle);
	assert_int_equal(out.throttle_pct, 30);
	in.dirty_rate = 50 * MB + 1;
	decide(&in, &out);
	assert_true(out.throttle);
	assert_int_equal(out.throttle_pct, 40);

	/* Odd bandwidth: 101 B/s, 51 * 2 > 101 but 50 * 2 is not. */
	in.pass_bytes = 101;
	in.dirty_rate = 50;
	decide(&in, &out);
	assert_false(out.throttle);
	in.dirty_rate = 51;
	decide(&in, &out);
	assert_true(out.throttle);

	/* Not without --auto-converge, and not once it converges. */
	in.auto_converge = false;
	decide(&in, &out);
	assert_false(out.throttle);
	in.auto_converge = true;
	in.pass_bytes = 100 * MB;
	in.dirty_rate = 90 * MB;
	pending[0] = MB;
	assert_int_equal(decide(&in, &out), MIG_POLICY_SWITCH_OVER);
	assert_false(out.throttle);
	assert_int_equal(out.throttle_pct, 30);
}

static void test_hybrid_postcopy_after(void **state)
{
	uint64_t pending[] = { 500 * MB };
	struct mig_policy_in in = policy_in(pending, 1);
	struct mig_policy_out out;

	in.mode = MIG_MODE_HYBRID;
	in.postcopy_after = 2;
	in.dirty_rate = 500 * MB;	/* hopeless, but N passes were asked for */
	in.passes_done = 1;
	assert_int_equal(decide(&in, &out), MIG_POLICY_CONTINUE);
	in.passes_done = 2;
	assert_int_equal(decide(&in, &out), MIG_POLICY_POSTCOPY);
	assert_int_equal(out.why, MIG_WHY_POSTCOPY_AFTER);

	/* After N passes it goes to post-copy even when pre-copy could finish. */
	pending[0] = MB;
	assert_int_equal(decide(&in, &out), MIG_POLICY_POSTCOPY);
	in.passes_done = 1;
	assert_int_equal(decide(&in, &out), MIG_POLICY_SWITCH_OVER);
	assert_int_equal(out.why, MIG_WHY_CONVERGED);

	/* The same numbers in pre-copy never go to post-copy. */
	in.mode = MIG_MODE_PRECOPY;
	in.passes_done = 5;
	pending[0] = 500 * MB;
	assert_int_equal(decide(&in, &out), MIG_POLICY_CONTINUE);
}

static void test_auto_hybrid_hopeless(void **state)
{
	uint64_t pending[] = { 100 * MIB };
	struct mig_policy_in in = policy_in(pending, 1);
	struct mig_policy_out out;

	in.mode = MIG_MODE_HYBRID;
	in.pass_bytes = 100 * MIB;
	in.dirty_rate = 200 * MIB;
	assert_true(mig_policy_auto_hybrid(in.mode, in.postcopy_after));
	assert_int_equal(decide(&in, &out), MIG_POLICY_POSTCOPY);
	assert_int_equal(out.why, MIG_WHY_HOPELESS);
	assert_string_equal(out.reason, "100 MiB dirty after pass 1 and the guest dirties "
			    "200 MiB/s, faster than the 100 MiB/s sent: switching to post-copy");

	/* Dirtying no faster than the link: another pass may win. */
	in.dirty_rate = 100 * MIB;
	assert_int_equal(decide(&in, &out), MIG_POLICY_CONTINUE);

	/* A dirty set within one downtime's worth (less its tenth) converges instead. */
	in.dirty_rate = 200 * MIB;
	pending[0] = 27 * MIB;
	assert_int_equal(decide(&in, &out), MIG_POLICY_SWITCH_OVER);
}

static void test_postcopy_asked(void **state)
{
	uint64_t pending[] = { MB };
	struct mig_policy_in in = policy_in(pending, 1);
	struct mig_policy_out out;

	/* Asked for: post-copy, even when pre-copy would converge now. */
	in.postcopy_asked = true;
	assert_int_equal(decide(&in, &out), MIG_POLICY_POSTCOPY);
	assert_int_equal(out.why, MIG_WHY_ASKED);
	/* ... and over the pass limit. */
	in.max_iterations = 1;
	assert_int_equal(decide(&in, &out), MIG_POLICY_POSTCOPY);
	assert_true(out.forced);
}

static void test_modes_and_forced(void **state)
{
	uint64_t pending[] = { 500 * MB };
	struct mig_policy_in in = policy_in(pending, 1);
	struct mig_policy_out out;

	in.forced = true;
	assert_int_equal(decide(&in, &out), MIG_POLICY_SWITCH_OVER);
	assert_int_equal(out.why, MIG_WHY_FORCED);
	assert_true(out.forced);

	in.forced = false;
	in.mode = MIG_MODE_POSTCOPY;
	assert_int_equal(decide(&in, &out), MIG_POLICY_POSTCOPY);
	assert_int_equal(out.why, MIG_WHY_POSTCOPY_MODE);
	assert_false(mig_policy_auto_hybrid(MIG_MODE_POSTCOPY, 0));
	assert_false(mig_policy_auto_hybrid(MIG_MODE_HYBRID, 3));
	assert_false(mig_policy_auto_hybrid(MIG_MODE_PRECOPY, 0));
}

static void test_zero_bandwidth(void **state)
{
	uint64_t pending[] = { 4096 };
	struct mig_policy_in in = policy_in(pending, 1);
	struct mig_policy_out out;

	/* Nothing sent: no rate, so no downtime estimate fits, and nothing to throttle by. */
	in.pass_bytes = 0;
	in.auto_converge = true;
	in.dirty_rate = 100 * MB;
	assert_int_equal(decide(&in, &out), MIG_POLICY_CONTINUE);
	assert_int_equal(out.bandwidth, 0);
	assert_int_equal(out.expected_downtime_ns, UINT64_MAX);
	assert_false(out.throttle);

	/* Nor is a hybrid hopeless on no measurement. */
	in.mode = MIG_MODE_HYBRID;
	assert_int_equal(decide(&in, &out), MIG_POLICY_CONTINUE);

	/* A zero-length pass counts as 1 ns rather than dividing by zero. */
	in.pass_bytes = 1;
	in.pass_ns = 0;
	decide(&in, &out);
	assert_int_equal(out.bandwidth, SEC);
	assert_int_equal(mig_policy_rate(7, 0), 7 * SEC);
}

static void test_sources_summed(void **state)
{
	/* Each alone fits 300 ms at 100 MB/s; together they do not. */
	uint64_t pending[] = { 20 * MB, 15 * MB, 5 * MB };
	struct mig_policy_in in = policy_in(pending, 3);
	struct mig_policy_out out;

	assert_int_equal(decide(&in, &out), MIG_POLICY_CONTINUE);
	assert_int_equal(out.pending, 40 * MB);
	assert_int_equal(out.expected_downtime_ns, 400 * MS);

	in.nr_sources = 2;
	assert_int_equal(decide(&in, &out), MIG_POLICY_CONTINUE);
	assert_int_equal(out.pending, 35 * MB);
	in.nr_sources = 1;
	assert_int_equal(decide(&in, &out), MIG_POLICY_SWITCH_OVER);

	/* No source left with anything: it fits. */
	in.nr_sources = 0;
	assert_int_equal(decide(&in, &out), MIG_POLICY_SWITCH_OVER);
	assert_int_equal(out.pending, 0);
	assert_int_equal(out.expected_downtime_ns, 0);
}

static void test_huge_numbers_saturate(void **state)
{
	uint64_t pending[] = { UINT64_MAX - 5, 100, UINT64_MAX };
	struct mig_policy_in in = policy_in(pending, 3);
	struct mig_policy_out out;

	/* The sum saturates instead of wrapping to a small number that fits. */
	assert_int_equal(decide(&in, &out), MIG_POLICY_CONTINUE);
	assert_int_equal(out.pending, UINT64_MAX);
	assert_int_equal(out.expected_downtime_ns, UINT64_MAX);

	/* 18 EB in 1 ns: a saturated rate, not a wrapped one. */
	in.pass_bytes = UINT64_MAX;
	in.pass_ns = 1;
	decide(&in, &out);
	assert_int_equal(out.bandwidth, UINT64_MAX);
	assert_int_equal(mig_policy_rate(UINT64_MAX, SEC), UINT64_MAX);

	/* 20 GB left at 10 GB/s is 2 s (20e9 * 1e9 overflows 64 bits). */
	pending[0] = 20000 * MB;
	in.nr_sources = 1;
	in.pass_bytes = 10000 * MB;
	in.pass_ns = SEC;
	in.downtime_ns = 3 * SEC;
	assert_int_equal(decide(&in, &out), MIG_POLICY_SWITCH_OVER);
	assert_int_equal(out.expected_downtime_ns, 2 * SEC);
	in.downtime_ns = 2 * SEC - 1;
	assert_int_equal(decide(&in, &out), MIG_POLICY_CONTINUE);

	/* A dirty rate near the top does not wrap the throttle test. */
	in.auto_converge = true;
	in.dirty_rate = UINT64_MAX;
	decide(&in, &out);
	assert_true(out.throttle);

	/* The pass counter at its top, with a limit there too. */
	in.max_iterations = UINT32_MAX;
	in.passes_done = UINT32_MAX - 2;
	assert_int_equal(decide(&in, &out), MIG_POLICY_CONTINUE);
	in.passes_done = UINT32_MAX - 1;
	assert_int_equal(decide(&in, &out), MIG_POLICY_SWITCH_OVER);
	assert_int_equal(out.why, MIG_WHY_MAX_ITERATIONS);
}

/*
 * What the link still carries drains (SYNC) before the pause, while the
 * guest runs: what it dirties meanwhile counts in the expected downtime,
 * the queue itself does not.  Huge queues saturate.
 */
static void test_in_flight(void **state)
{
	uint64_t pending[] = { 10 * MB };
	struct mig_policy_in in = policy_in(pending, 1);
	struct mig_policy_out out;

	/* 15 MB queued at 100 MB/s: 150 ms of draining, 1.5 MB dirtied: 115 ms. */
	in.in_flight = 15 * MB;
	assert_int_equal(decide(&in, &out), MIG_POLICY_SWITCH_OVER);
	assert_int_equal(out.why, MIG_WHY_CONVERGED);
	assert_int_equal(out.drain_dirty, 1500000);
	assert_int_equal(out.expected_downtime_ns, 115 * MS);

	/* 400 MB queued: 4 s of draining, 40 MB more: 500 ms, another pass. */
	in.in_flight = 400 * MB;
	assert_int_equal(decide(&in, &out), MIG_POLICY_CONTINUE);
	assert_int_equal(out.why, MIG_WHY_NOT_CONVERGED);
	assert_int_equal(out.expected_downtime_ns, 500 * MS);

	/* A guest that dirties nothing: the queue costs no downtime at all. */
	in.dirty_rate = 0;
	assert_int_equal(decide(&in, &out), MIG_POLICY_SWITCH_OVER);
	assert_int_equal(out.drain_dirty, 0);
	assert_int_equal(out.expected_downtime_ns, 100 * MS);

	/* A huge queue never wraps into "fits"; a huge dirty rate saturates. */
	in.dirty_rate = 10 * MB;
	in.in_flight = UINT64_MAX;
	assert_int_equal(decide(&in, &out), MIG_POLICY_CONTINUE);
	assert_true(out.expected_downtime_ns > 1000000 * SEC);
	in.dirty_rate = UINT64_MAX;
	assert_int_equal(decide(&in, &out), MIG_POLICY_CONTINUE);
	assert_int_equal(out.drain_dirty, UINT64_MAX);
	assert_int_equal(out.expected_downtime_ns, UINT64_MAX);

	/* Limits outrank it: out of passes, switch over now. */
	in.max_iterations = 2;
	assert_int_equal(decide(&in, &out), MIG_POLICY_SWITCH_OVER);
	assert_int_equal(out.why, MIG_WHY_MAX_ITERATIONS);
}

/*
 * A backlog the last pass had no room for (a disk's first copy): while it
 * shrinks, another pass, even when the rest fits the downtime; once it
 * stops shrinking, or a limit runs out, the switch-over.
 */
static void test_left_over_shrinking(void **state)
{
	uint64_t pending[] = { 10 * MB };
	struct mig_policy_in in = policy_in(pending, 1);
	struct mig_policy_out out;

	in.left_over = 8 * MIB;
	in.left_over_prev = UINT64_MAX;			/* the first decision */
	assert_int_equal(decide(&in, &out), MIG_POLICY_CONTINUE);
	assert_int_equal(out.why, MIG_WHY_LEFT_OVER);
	assert_int_equal(out.expected_downtime_ns, 100 * MS);
	assert_string_equal(out.reason, "expected downtime 100 ms fits, but 8 MiB the last pass "
			    "had no room for are still shrinking: another pass");
	in.left_over_prev = 16 * MIB;
	assert_int_equal(decide(&in, &out), MIG_POLICY_CONTINUE);
	/* Not shrinking any more: waiting buys nothing. */
	in.left_over_prev = 8 * MIB;
	assert_int_equal(decide(&in, &out), MIG_POLICY_SWITCH_OVER);
	assert_int_equal(out.why, MIG_WHY_CONVERGED);
	/* Not fitting is the older reason. */
	in.left_over_prev = 16 * MIB;
	pending[0] = 100 * MB;
	assert_int_equal(decide(&in, &out), MIG_POLICY_CONTINUE);
	assert_int_equal(out.why, MIG_WHY_NOT_CONVERGED);
	/* The pass limit and forced switch-overs are not held back. */
	pending[0] = 10 * MB;
	in.max_iterations = 2;
	assert_int_equal(decide(&in, &out), MIG_POLICY_SWITCH_OVER);
	assert_int_equal(out.why, MIG_WHY_MAX_ITERATIONS);
	in.max_iterations = 0;
	in.forced = true;
	assert_int_equal(decide(&in, &out), MIG_POLICY_SWITCH_OVER);
	assert_int_equal(out.why, MIG_WHY_FORCED);
	/* Nothing left over: it converges. */
	in.forced = false;
	in.left_over = 0;
	assert_int_equal(decide(&in, &out), MIG_POLICY_SWITCH_OVER);
	assert_int_equal(out.why, MIG_WHY_CONVERGED);
}

/*
 * A short pass that left within the rate limiter's burst measured far
 * above --bandwidth: the estimate is at the cap, so 1 MiB at 32 MB/s
 * (31 ms) does not fit 5 ms, though 2 MB in 8 ms (250 MB/s) would say so.
 */
static void test_measured_rate_capped(void **state)
{
	uint64_t pending[] = { MIB };
	struct mig_policy_in in = policy_in(pending, 1);
	struct mig_policy_out out;

	in.pass_bytes = 2 * MB;
	in.pass_ns = 8 * MS;
	in.downtime_ns = 5 * MS;
	in.bandwidth_cap = 32 * MB;
	assert_int_equal(decide(&in, &out), MIG_POLICY_CONTINUE);
	assert_int_equal(out.bandwidth, 32 * MB);
	assert_int_equal(out.expected_downtime_ns, MIB * SEC / (32 * MB));

	/* Without a cap the measurement stands, and it fits. */
	in.bandwidth_cap = 0;
	assert_int_equal(decide(&in, &out), MIG_POLICY_SWITCH_OVER);
	assert_int_equal(out.bandwidth, 250 * MB);

	/* A cap above the measurement changes nothing. */
	in.bandwidth_cap = 1000 * MB;
	assert_int_equal(decide(&in, &out), MIG_POLICY_SWITCH_OVER);
	assert_int_equal(out.bandwidth, 250 * MB);
}

/* Auto hybrid, mid-pass: 100 MiB/s capped link, 300 ms limit = 30 MiB. */
static struct mig_policy_in probe_in(const uint64_t *dirty)
{
	return (struct mig_policy_in){
		.pending = dirty,
		.nr_sources = 1,
		.dirty_ns = 100 * MS,
		.bandwidth_cap = 100 * MIB,
		.downtime_ns = 300 * MS,
		.mode = MIG_MODE_HYBRID,
	};
}

static void test_probe_hopeless(void **state)
{
	uint64_t dirty[] = { 40 * MIB };
	struct mig_policy_in in = probe_in(dirty);
	struct mig_policy_out out;

	in.dirty_rate = 400 * MIB;
	assert_int_equal(mig_policy_probe(&in, &out), MIG_POLICY_POSTCOPY);
	assert_int_equal(out.why, MIG_WHY_HOPELESS);
	assert_int_equal(out.bandwidth, 100 * MIB);
	assert_string_equal(out.reason, "the guest dirties 40 MiB in 100 ms, faster than the "
			    "100 MiB/s sent: switching to post-copy");

	/* Dirtying slower than the link: keep going. */
	in.dirty_rate = 100 * MIB;
	assert_int_equal(mig_policy_probe(&in, &out), MIG_POLICY_CONTINUE);

	/* Only an automatic hybrid probes. */
	in.dirty_rate = 400 * MIB;
	in.postcopy_after = 3;
	assert_int_equal(mig_policy_probe(&in, &out), MIG_POLICY_CONTINUE);
	in.postcopy_after = 0;
	in.mode = MIG_MODE_PRECOPY;
	assert_int_equal(mig_policy_probe(&in, &out), MIG_POLICY_CONTINUE);
}

static void test_probe_still_growing(void **state)
{
	/* Under one downtime's worth (30 MiB), over a quarter of it (7.5 MiB). */
	uint64_t dirty[] = { 10 * MIB };
	struct mig_policy_in in = probe_in(dirty);
	struct mig_policy_out out;

	in.dirty_rate = 200 * MIB;
	in.growth = 150 * MIB;
	assert_int_equal(mig_policy_probe(&in, &out), MIG_POLICY_POSTCOPY);
	assert_int_equal(out.why, MIG_WHY_GROWING);

	/* Levelling off: growing no faster than the link. */
	in.growth = 100 * MIB;
	assert_int_equal(mig_policy_probe(&in, &out), MIG_POLICY_CONTINUE);

	/* Too little dirty yet to judge. */
	in.growth = 150 * MIB;
	dirty[0] = 7 * MIB;
	assert_int_equal(mig_policy_probe(&in, &out), MIG_POLICY_CONTINUE);

	/* Growing fast but the average rate is below the link. */
	dirty[0] = 10 * MIB;
	in.dirty_rate = 90 * MIB;
	assert_int_equal(mig_policy_probe(&in, &out), MIG_POLICY_CONTINUE);
}

static void test_probe_bandwidth(void **state)
{
	uint64_t dirty[] = { 40 * MIB };
	struct mig_policy_in in = probe_in(dirty);
	struct mig_policy_out out;

	in.dirty_rate = 400 * MIB;
	/* 20 ms of sending is too short to trust: the cap stands in. */
	in.pass_ns = MIG_POLICY_MEASURE_NS;
	in.pass_bytes = 1 * MIB;
	mig_policy_probe(&in, &out);
	assert_int_equal(out.bandwidth, 100 * MIB);

	/* Measured slower than the cap: the measurement. */
	in.pass_ns = 100 * MS;
	in.pass_bytes = 5 * MIB;
	mig_policy_probe(&in, &out);
	assert_int_equal(out.bandwidth, 50 * MIB);

	/* Measured faster than the cap: the cap. */
	in.pass_bytes = 50 * MIB;
	mig_policy_probe(&in, &out);
	assert_int_equal(out.bandwidth, 100 * MIB);

	/* No cap: the measurement, which here outruns the guest. */
	in.bandwidth_cap = 0;
	assert_int_equal(mig_policy_probe(&in, &out), MIG_POLICY_CONTINUE);
	assert_int_equal(out.bandwidth, 500 * MIB);

	/* Neither cap nor measurement: no rate, so never hopeless. */
	in.pass_ns = 0;
	assert_int_equal(mig_policy_probe(&in, &out), MIG_POLICY_CONTINUE);
	assert_int_equal(out.bandwidth, 0);

	/* A stalled link (nothing sent in 100 ms) is no evidence either. */
	in.bandwidth_cap = 100 * MIB;
	in.pass_ns = 100 * MS;
	in.pass_bytes = 0;
	assert_int_equal(mig_policy_probe(&in, &out), MIG_POLICY_CONTINUE);
}

static void test_probe_huge_limit(void **state)
{
	/*
	 * 1 TB/s for 1000 s is 1e15 bytes: 1e14 dirty is not hopeless.  The
	 * product 1e24 wraps 64 bits to about 2e9, which would say it is.
	 */
	uint64_t dirty[] = { 100000000 * MB };
	struct mig_policy_in in = probe_in(dirty);
	struct mig_policy_out out;

	in.bandwidth_cap = 1000000 * MB;
	in.downtime_ns = 1000 * SEC;
	in.dirty_rate = 2000000 * MB;
	assert_int_equal(mig_policy_probe(&in, &out), MIG_POLICY_CONTINUE);
	assert_int_equal(out.expected_downtime_ns, 100 * SEC);
	dirty[0] = 1000000000 * MB + 1;
	assert_int_equal(mig_policy_probe(&in, &out), MIG_POLICY_POSTCOPY);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_converges_when_downtime_fits),
		cmocka_unit_test(test_another_pass_when_not),
		cmocka_unit_test(test_measured_rate_capped),
		cmocka_unit_test(test_left_over_shrinking),
		cmocka_unit_test(test_max_iterations_forces_switchover),
		cmocka_unit_test(test_timeout_cancel_gives_up),
		cmocka_unit_test(test_timeout_force_switches_over),
		cmocka_unit_test(test_timeout_postcopy_goes_postcopy),
		cmocka_unit_test(test_auto_converge_steps),
		cmocka_unit_test(test_auto_converge_only_when_outrun),
		cmocka_unit_test(test_hybrid_postcopy_after),
		cmocka_unit_test(test_auto_hybrid_hopeless),
		cmocka_unit_test(test_postcopy_asked),
		cmocka_unit_test(test_modes_and_forced),
		cmocka_unit_test(test_zero_bandwidth),
		cmocka_unit_test(test_sources_summed),
		cmocka_unit_test(test_huge_numbers_saturate),
		cmocka_unit_test(test_in_flight),
		cmocka_unit_test(test_probe_hopeless),
		cmocka_unit_test(test_probe_still_growing),
		cmocka_unit_test(test_probe_bandwidth),
		cmocka_unit_test(test_probe_huge_limit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
