/*
 * The convergence policy (policy.h, docs/convergence.md).  Everything here
 * is arithmetic on the caller's numbers; precopy.c measures and acts.
 * Products go through 128 bits so that a huge guest, a fast link or a long
 * limit saturates instead of wrapping into a wrong decision.
 */
#include <stdarg.h>
#include <stdio.h>

#include "migration/source/policy.h"

#define NS_PER_SEC 1000000000ULL
#define NS_PER_MS 1000000ULL

/* a * b / c, saturating at UINT64_MAX; c == 0 gives UINT64_MAX. */
static uint64_t policy_muldiv(uint64_t a, uint64_t b, uint64_t c)
{
	unsigned __int128 q;

	if (!c)
		return UINT64_MAX;
	q = (unsigned __int128)a * b / c;
	return q > UINT64_MAX ? UINT64_MAX : (uint64_t)q;
}

uint64_t mig_policy_rate(uint64_t bytes, uint64_t ns)
{
	return policy_muldiv(bytes, NS_PER_SEC, ns ? ns : 1);
}

bool mig_policy_auto_hybrid(enum mig_mode mode, uint32_t postcopy_after)
{
	return mode == MIG_MODE_HYBRID && !postcopy_after;
}

static uint64_t policy_pending(const struct mig_policy_in *in)
{
	uint64_t sum = 0;

	for (unsigned int i = 0; i < in->nr_sources; i++)
		sum = in->pending[i] > UINT64_MAX - sum ? UINT64_MAX : sum + in->pending[i];
	return sum;
}

static enum mig_decision __attribute__((format(printf, 4, 5)))
policy_say(struct mig_policy_out *out, enum mig_decision d, enum mig_policy_why why,
	   const char *fmt, ...)
{
	va_list ap;

	out->decision = d;
	out->why = why;
	va_start(ap, fmt);
	vsnprintf(out->reason, sizeof(out->reason), fmt, ap);
	va_end(ap);
	return d;
}

/*
 * Can pre-copy never converge?  When the guest dirties faster than the
 * link carries and its dirty set cannot go in one downtime, every further
 * pass only sends again what it writes.
 */
static bool policy_hopeless(uint64_t dirty, uint64_t rate, uint64_t bw, uint64_t downtime_ns)
{
	return bw && rate > bw && dirty > policy_muldiv(bw, downtime_ns, NS_PER_SEC);
}

/*
 * Auto-converge: throttle harder while the guest dirties more than half
 * what we send (rate * 2 > bw, written so that it cannot overflow).
 */
static bool policy_throttle(const struct mig_policy_in *in, uint64_t bw, uint32_t *pct)
{
	if (!in->auto_converge || !bw || in->dirty_rate <= bw / 2)
		return false;
	*pct = !in->throttle_pct ? 20 : in->throttle_pct >= 89 ? 99 : in->throttle_pct + 10;
	return true;
}

static void policy_init(const struct mig_policy_in *in, struct mig_policy_out *out)
{
	*out = (struct mig_policy_out){
		.throttle_pct = in->throttle_pct,
		.pending = policy_pending(in),
		.expected_downtime_ns = UINT64_MAX,
	};
}

static bool policy_timed_out(const struct mig_policy_in *in)
{
	return in->timeout_ns && in->elapsed_ns >= in->timeout_ns;
}

/*
 * The downtime the bytes may take: the limit less a tenth, kept for what
 * the switchover costs besides them (the vCPUs' pause, the state, the
 * destination's start, the round trips: 0.3-10 ms on a busy 2-core host).
 */
uint64_t mig_policy_budget(uint64_t downtime_ns)
{
	return downtime_ns - downtime_ns / 10;
}

static uint64_t policy_limit(const struct mig_policy_in *in)
{
	return mig_policy_budget(in->downtime_ns);
}

/* After the limits and requests: does the rest fit, or another pass (and throttle)? */
static enum mig_decision policy_converge(const struct mig_policy_in *in,
					 struct mig_policy_out *out)
{
	uint64_t expect = out->expected_downtime_ns, limit = policy_limit(in);

	/*
	 * A backlog the last pass had no room for (a disk's first copy, and
	 * what the guest wrote meanwhile), and smaller than the pass before
	 * left: the next passes shrink it while the guest runs, so switching
	 * now would stand the guest still for all of it.  Once it stops
	 * shrinking, waiting buys nothing: the rule lets go.
	 */
	if (expect <= limit && in->left_over && in->left_over < in->left_over_prev)
		return policy_say(out, MIG_POLICY_CONTINUE, MIG_WHY_LEFT_OVER,
				  "expected downtime %llu ms fits, but %llu MiB the last pass "
				  "had no room for are still shrinking: another pass",
				  (unsigned long long)(expect / NS_PER_MS),
				  (unsigned long long)(in->left_over >> 20));
	if (expect <= limit)
		return policy_say(out, MIG_POLICY_SWITCH_OVER, MIG_WHY_CONVERGED,
				  "expected downtime %llu ms fits the %llu ms limit",
				  (unsigned long long)(expect / NS_PER_MS),
				  (unsigned long long)(in->downtime_ns / NS_PER_MS));
	if (policy_throttle(in, out->bandwidth, &out->throttle_pct)) {
		out->throttle = true;
		return policy_say(out, MIG_POLICY_CONTINUE, MIG_WHY_THROTTLE,
				  "dirty rate outruns the link; vCPUs throttled to %u%%",
				  100 - out->throttle_pct);
	}
	if (!out->bandwidth)
		return policy_say(out, MIG_POLICY_CONTINUE, MIG_WHY_NOT_CONVERGED,
				  "nothing sent to measure the link by: another pass");
	return policy_say(out, MIG_POLICY_CONTINUE, MIG_WHY_NOT_CONVERGED,
			  "expected downtime %llu ms exceeds the %llu ms limit (a tenth kept for "
			  "the switchover): another pass",
			  (unsigned long long)(expect / NS_PER_MS),
			  (unsigned long long)(in->downtime_ns / NS_PER_MS));
}

enum mig_decision mig_policy_decide(const struct mig_policy_in *in, struct mig_policy_out *out)
{
	bool timed_out = policy_timed_out(in);
	uint64_t rem, bw;

	policy_init(in, out);
	rem = out->pending;
	/*
	 * The pass's send rate, but never more than --bandwidth: a short pass
	 * that went out in the limiter's burst measured memory, not the link
	 * the user shares, and would promise a downtime the cap cannot keep.
	 */
	bw = mig_policy_rate(in->pass_bytes, in->pass_ns);
	if (in->bandwidth_cap && bw > in->bandwidth_cap)
		bw = in->bandwidth_cap;
	out->bandwidth = bw;
	if (bw) {
		/*
		 * Before the pause the link drains what is in flight (SYNC) while
		 * the guest runs on; what it dirties meanwhile goes in the final
		 * pass too.
		 */
		uint64_t drain_ns = policy_muldiv(in->in_flight, NS_PER_SEC, bw);

		out->drain_dirty = policy_muldiv(in->dirty_rate, drain_ns, NS_PER_SEC);
		out->expected_downtime_ns = policy_muldiv(rem > UINT64_MAX - out->drain_dirty ?
							  UINT64_MAX : rem + out->drain_dirty,
							  NS_PER_SEC, bw);
	}
	if (in->mode == MIG_MODE_POSTCOPY)
		return policy_say(out, MIG_POLICY_POSTCOPY, MIG_WHY_POSTCOPY_MODE,
				  "post-copy mode: no pre-copy passes");
	if (timed_out && in->on_timeout == MIG_ON_TIMEOUT_CANCEL)
		return policy_say(out, MIG_POLICY_GIVE_UP, MIG_WHY_TIMEOUT,
				  "timed out after %llu ms without converging",
				  (unsigned long long)(in->timeout_ns / NS_PER_MS));
	/* max_iterations counts the stop-and-copy: it is the pass after this one. */
	bool out_of_passes = in->max_iterations && in->passes_done >= in->max_iterations - 1;
	out->forced = in->forced || timed_out || out_of_passes;

	/* Hybrid: post-copy once the set number of passes is done, or it is hopeless. */
	if (mig_policy_auto_hybrid(in->mode, in->postcopy_after) &&
	    out->expected_downtime_ns > policy_limit(in) &&
	    policy_hopeless(rem, in->dirty_rate, bw, policy_limit(in)))
		return policy_say(out, MIG_POLICY_POSTCOPY, MIG_WHY_HOPELESS,
				  "%llu MiB dirty after pass %u and the guest dirties %llu MiB/s, "
				  "faster than the %llu MiB/s sent: switching to post-copy",
				  (unsigned long long)(rem >> 20), in->passes_done,
				  (unsigned long long)(in->dirty_rate >> 20),
				  (unsigned long long)(bw >> 20));
	if (in->mode == MIG_MODE_HYBRID && in->postcopy_after &&
	    in->passes_done >= in->postcopy_after)
		return policy_say(out, MIG_POLICY_POSTCOPY, MIG_WHY_POSTCOPY_AFTER,
				  "%u passes done: switching to post-copy", in->passes_done);
	if (in->postcopy_asked)
		return policy_say(out, MIG_POLICY_POSTCOPY, MIG_WHY_ASKED,
				  "post-copy asked for: switching to post-copy");
	if (timed_out)
		return in->on_timeout == MIG_ON_TIMEOUT_POSTCOPY ?
			policy_say(out, MIG_POLICY_POSTCOPY, MIG_WHY_TIMEOUT,
				   "timed out after %llu ms: switching to post-copy",
				   (unsigned long long)(in->timeout_ns / NS_PER_MS)) :
			policy_say(out, MIG_POLICY_SWITCH_OVER, MIG_WHY_TIMEOUT,
				   "timed out after %llu ms: switching over whatever the downtime",
				   (unsigned long long)(in->timeout_ns / NS_PER_MS));
	if (out_of_passes)
		return policy_say(out, MIG_POLICY_SWITCH_OVER, MIG_WHY_MAX_ITERATIONS,
				  "%u of at most %u passes done: switching over",
				  in->passes_done, in->max_iterations);
	if (in->forced)
		return policy_say(out, MIG_POLICY_SWITCH_OVER, MIG_WHY_FORCED,
				  "switching over whatever the downtime");
	return policy_converge(in, out);
}

enum mig_decision mig_policy_probe(const struct mig_policy_in *in, struct mig_policy_out *out)
{
	uint64_t dirty, bw, limit = in->downtime_ns, rate = in->dirty_rate;

	policy_init(in, out);
	dirty = out->pending;
	/* The measured send rate; until there is one, the cap (if any) bounds it. */
	bw = in->bandwidth_cap;
	if (in->pass_ns > MIG_POLICY_MEASURE_NS) {
		uint64_t measured = mig_policy_rate(in->pass_bytes, in->pass_ns);
		bw = bw && bw < measured ? bw : measured;
	}
	out->bandwidth = bw;
	if (bw)
		out->expected_downtime_ns = policy_muldiv(dirty, NS_PER_SEC, bw);
	if (!mig_policy_auto_hybrid(in->mode, in->postcopy_after))
		return policy_say(out, MIG_POLICY_CONTINUE, MIG_WHY_NOT_CONVERGED,
				  "not an automatic hybrid: nothing to probe");
	/*
	 * Still growing as fast as on average, and faster than we send: the
	 * dirty set is not about to level off below the downtime's worth, so
	 * there is no point waiting until it has grown past it.
	 */
	bool growing = bw && rate > bw && in->growth > bw &&
		dirty > policy_muldiv(bw, limit, 4 * NS_PER_SEC);
	if (!growing && !policy_hopeless(dirty, rate, bw, limit))
		return policy_say(out, MIG_POLICY_CONTINUE, MIG_WHY_NOT_CONVERGED,
				  "the guest dirties %llu MiB in %llu ms, within what the "
				  "%llu MiB/s sent can catch up with",
				  (unsigned long long)(dirty >> 20),
				  (unsigned long long)(in->dirty_ns / NS_PER_MS),
				  (unsigned long long)(bw >> 20));
	return policy_say(out, MIG_POLICY_POSTCOPY, growing ? MIG_WHY_GROWING : MIG_WHY_HOPELESS,
			  "the guest dirties %llu MiB in %llu ms, faster than the %llu MiB/s "
			  "sent: switching to post-copy",
			  (unsigned long long)(dirty >> 20),
			  (unsigned long long)(in->dirty_ns / NS_PER_MS),
			  (unsigned long long)(bw >> 20));
}
