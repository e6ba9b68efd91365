/*
 * The convergence policy: when a live migration stops copying and switches
 * over, goes to post-copy, throttles the guest or gives up.  A pure
 * function of the numbers the caller measured: no I/O, no locks, no clock,
 * no globals, so it is tested with numbers alone (tests/unit/test_policy.c).
 * docs/convergence.md explains the rules.
 */
#ifndef FERRY_MIGRATION_POLICY_H
#define FERRY_MIGRATION_POLICY_H

#include <stdbool.h>
#include <stdint.h>

enum mig_on_timeout {
	MIG_ON_TIMEOUT_CANCEL,	/* give up; the source runs on */
	MIG_ON_TIMEOUT_FORCE,	/* stop-and-copy now, whatever the downtime */
	MIG_ON_TIMEOUT_POSTCOPY,	/* switch to post-copy now */
};

enum mig_mode {
	MIG_MODE_PRECOPY,	/* passes, then stop-and-copy */
	MIG_MODE_POSTCOPY,	/* state first, the guest runs there, pages follow */
	MIG_MODE_HYBRID,	/* pre-copy passes, then post-copy */
};

/* Measurements shorter than this say more about scheduling than the link. */
#define MIG_POLICY_MEASURE_NS 20000000ULL

/*
 * One look at a migration.  Rates are bytes/s.  The policy knows nothing of
 * RAM or pages: it sums what every live source reports.
 */
struct mig_policy_in {
	/*
	 * Bytes each live source still has to send: at the end of a pass, what
	 * the sync found dirty; mid-pass (probe), what the guest dirtied since
	 * the log was cleared.
	 */
	const uint64_t *pending;
	unsigned int nr_sources;
	uint64_t pass_bytes;		/* taken by the destination in this pass ... */
	uint64_t pass_ns;		/* ... over this long: the measured bandwidth */
	/*
	 * Sent and not yet taken by the destination (socket queues).  The
	 * switchover lets them drain before it pauses the guest, which dirties
	 * more meanwhile (drain_dirty below).
	 */
	uint64_t in_flight;
	uint64_t dirty_rate;		/* how fast the guest dirties */
	uint64_t dirty_ns;		/* probe: the window dirty_rate was measured over */
	uint64_t growth;		/* probe: how fast pending grew since the last look */
	uint64_t left_over;		/* of pending: what the last pass had no room for */
	uint64_t left_over_prev;	/* ... the pass before (UINT64_MAX: none) */
	uint64_t bandwidth_cap;		/* --bandwidth; 0 = unlimited */
	uint64_t downtime_ns;		/* the most the guest may stand still */
	uint64_t elapsed_ns;		/* since the migration started */
	uint64_t timeout_ns;		/* 0 = none */
	enum mig_on_timeout on_timeout;
	uint32_t passes_done;		/* live passes completed (1 after the first) */
	uint32_t max_iterations;	/* passes, the final one included; 0 = no limit */
	enum mig_mode mode;
	uint32_t postcopy_after;	/* hybrid: post-copy after this many passes; 0 = auto */
	bool auto_converge;
	uint32_t throttle_pct;		/* the vCPU throttle now, 0..99 */
	bool postcopy_asked;		/* migrate-start-postcopy */
	bool forced;			/* switch over now, whatever the downtime */
};

enum mig_decision {
	MIG_POLICY_CONTINUE,	/* another pass (mid-pass: the rest of this one) */
	MIG_POLICY_SWITCH_OVER,	/* pause the guest, send the rest: stop-and-copy */
	MIG_POLICY_POSTCOPY,	/* start the guest at the destination, pages follow */
	MIG_POLICY_GIVE_UP,	/* timed out with on-timeout cancel: the source runs on */
};

/* Why: what the caller may log, and what the tests check. */
enum mig_policy_why {
	MIG_WHY_NOT_CONVERGED,	/* the rest does not fit the downtime yet */
	MIG_WHY_THROTTLE,	/* ... and the guest is throttled harder */
	MIG_WHY_CONVERGED,	/* the rest fits the downtime */
	MIG_WHY_LEFT_OVER,	/* it fits, but a backlog is still shrinking */
	MIG_WHY_MAX_ITERATIONS,
	MIG_WHY_TIMEOUT,
	MIG_WHY_FORCED,		/* in->forced */
	MIG_WHY_ASKED,		/* migrate-start-postcopy */
	MIG_WHY_POSTCOPY_MODE,	/* --mode postcopy: no passes at all */
	MIG_WHY_POSTCOPY_AFTER,	/* hybrid: the set number of passes is done */
	MIG_WHY_HOPELESS,	/* auto hybrid: pre-copy can never converge */
	MIG_WHY_GROWING,	/* auto hybrid probe: the dirty set grows too fast */
};

struct mig_policy_out {
	enum mig_decision decision;
	enum mig_policy_why why;
	bool forced;			/* the time or pass limit ran out */
	bool throttle;			/* set the vCPU throttle to throttle_pct */
	uint32_t throttle_pct;		/* the throttle from now on */
	uint64_t pending;		/* every source's pending bytes, summed */
	uint64_t bandwidth;		/* the send rate the decision assumed */
	/* the dirty rate over the time in_flight takes to drain at that rate */
	uint64_t drain_dirty;
	/* pending + drain_dirty at that rate; UINT64_MAX: no rate */
	uint64_t expected_downtime_ns;
	char reason[192];		/* for a human: a log line or the error */
};

/*
 * End of a live pass: another one, switch over, post-copy or give up, and
 * how hard to throttle.  Fills *out and returns out->decision.
 */
enum mig_decision mig_policy_decide(const struct mig_policy_in *in, struct mig_policy_out *out);

/*
 * Mid-pass, auto hybrid only: is pre-copy already hopeless?  Returns
 * MIG_POLICY_POSTCOPY (end the pass, go to post-copy) or
 * MIG_POLICY_CONTINUE; fills *out.
 */
enum mig_decision mig_policy_probe(const struct mig_policy_in *in, struct mig_policy_out *out);

/* Hybrid without --postcopy-after: the policy picks the moment itself. */
bool mig_policy_auto_hybrid(enum mig_mode mode, uint32_t postcopy_after);

/*
 * What of a downtime limit the bytes of the stop-and-copy may take: the
 * limit less a tenth, kept for the switchover's own cost (pause, state,
 * the destination's start).  Rule 8 judges against it, and ordered
 * propagation sizes the hot tail a pass may leave by it.
 */
uint64_t mig_policy_budget(uint64_t downtime_ns);

/* bytes over ns as bytes/s (ns 0 counts as 1), saturating at UINT64_MAX. */
uint64_t mig_policy_rate(uint64_t bytes, uint64_t ns);

#endif
