/*
 * Continuous checkpointing (Remus; docs/replication.md): the parts that
 * are pure logic, so that tests can feed them bytes and timestamps.
 *
 *   - the standby's epoch buffer: an epoch's pages and device state are
 *     kept aside as they arrive and reach guest RAM only when its
 *     EPOCH_END came with the right sequence number, page count and
 *     section chain (mig_epoch_end); a broken epoch is dropped whole, so
 *     the standby always holds the last committed checkpoint;
 *   - the standby's failover decision and the primary's fence decision,
 *     and the timeouts that make them exclusive: the primary stops its
 *     guest before the standby may start its own.
 *
 * A struct mig_epoch belongs to the thread receiving the replication
 * (ferry run's main thread); nothing here takes a lock.
 */
#ifndef FERRY_MIGRATION_REPLICATE_EPOCH_H
#define FERRY_MIGRATION_REPLICATE_EPOCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MIG_EPOCH_PAGE		4096u

struct mig_epoch {
	uint64_t max_pages;	/* most pages one epoch may carry (the guest's page count) */
	uint64_t committed;	/* sequence number of the last committed epoch (0: the initial copy) */
	bool open;		/* an EPOCH came and its EPOCH_END not yet */
	uint64_t seq;		/* of the open epoch */
	/* The open epoch's pages, in arrival order: address (bit 0 set: a zero page), data. */
	uint64_t *gpa;
	uint8_t *data;		/* MIG_EPOCH_PAGE bytes per entry (unused for zero pages) */
	uint64_t n, cap;
	uint8_t *state;		/* its STATE payload (a copy), NULL until it came */
	uint32_t state_len;
	/* The last committed epoch's STATE (NULL: the initial copy's, already loaded). */
	uint8_t *committed_state;
	uint32_t committed_state_len;
	uint64_t bytes;		/* payload bytes buffered in the open epoch */
	/* An apply failed halfway: RAM holds no checkpoint any more; nothing more is taken. */
	bool torn;
};

/* Empty, nothing open, committed = 0.  max_pages bounds every epoch. */
void mig_epoch_init(struct mig_epoch *e, uint64_t max_pages);
void mig_epoch_free(struct mig_epoch *e);

/*
 * EPOCH seq: opens an epoch.  0, or -EPROTO (one is open, or seq is not
 * committed + 1) with the reason in why.
 */
int mig_epoch_begin(struct mig_epoch *e, uint64_t seq, char *why, size_t whylen)
	__attribute__((warn_unused_result));

/*
 * One page of the open epoch at gpa (page-aligned), data NULL for a zero
 * page.  0, -EPROTO (no epoch open, unaligned, more than max_pages) or
 * -ENOMEM.
 */
int mig_epoch_add(struct mig_epoch *e, uint64_t gpa, const uint8_t *data, char *why,
		  size_t whylen) __attribute__((warn_unused_result));

/* The open epoch's STATE (copied).  0, -EPROTO (none open, a second one) or -ENOMEM. */
int mig_epoch_set_state(struct mig_epoch *e, const uint8_t *p, uint32_t len, char *why,
			size_t whylen) __attribute__((warn_unused_result));

/* Writes one page into guest RAM (data NULL: zeros).  0 or -errno. */
typedef int mig_epoch_apply_fn(void *opaque, uint64_t gpa, const uint8_t *data);

/*
 * EPOCH_END seq pages chain: the epoch is whole when seq is the open
 * one's, it holds `pages` pages and its STATE, and `chain` (the
 * source's section chain) equals `chain_here` (ours over the same
 * sections).  Then every page goes to apply, in order, the STATE becomes
 * the committed one and committed = seq: returns 0.  Otherwise the epoch
 * is dropped, nothing applied: -EPROTO with the reason.  A failure of
 * apply (-errno) leaves RAM half-written: `torn` is set, no epoch is
 * taken any more, and the caller must not fail over from it.
 */
int mig_epoch_end(struct mig_epoch *e, uint64_t seq, uint64_t pages, uint64_t chain,
		  uint64_t chain_here, mig_epoch_apply_fn *apply, void *opaque, char *why,
		  size_t whylen) __attribute__((warn_unused_result));

/* Drop the open epoch, if any (the link broke in the middle of it). */
void mig_epoch_discard(struct mig_epoch *e);

/* Failover and fencing ---------------------------------------------------- */

enum mig_failover_mode {
	MIG_FAILOVER_AUTO,	/* the standby takes over by itself after the timeout */
	MIG_FAILOVER_MANUAL,	/* only on 'ferry failover' */
};

#define MIG_FAILOVER_DEFAULT_NS	1000000000ULL	/* ferry run --standby --failover-timeout */
#define MIG_FAILOVER_MIN_NS	100000000ULL	/* 100 ms */

struct mig_failover_in {
	uint64_t now_ns;
	uint64_t last_heard_ns;		/* the last whole section from the primary */
	uint64_t timeout_ns;		/* --failover-timeout */
	enum mig_failover_mode mode;
	bool link_lost;			/* the connection failed (EOF, reset, bad section) */
	bool operator_asked;		/* 'ferry failover' */
};

enum mig_failover_action {
	MIG_FAILOVER_WAIT,		/* keep the replica paused, keep listening */
	MIG_FAILOVER_TAKEOVER,		/* resume the guest from the last checkpoint */
};

/*
 * The standby: take over when the operator says so, or (auto) when the
 * primary has been silent for the whole failover timeout, whether or not
 * the connection still looks open (a stalled link is silence too).  A
 * lost connection alone is not enough: the primary may be alive behind
 * a broken link, and it fences itself only after its own, shorter,
 * timeout.  *reason says why (a static string).
 */
enum mig_failover_action mig_failover_decide(const struct mig_failover_in *in,
					     const char **reason);

/*
 * The primary: fence (pause the guest for good) when a standby in auto
 * mode has not been heard from for fence_ns.  A manual standby never
 * takes over by itself: the primary then runs on unprotected instead.
 */
bool mig_fence_decide(uint64_t now_ns, uint64_t last_heard_ns, uint64_t fence_ns,
		      enum mig_failover_mode standby_mode);

/*
 * The primary's fence timeout from what it was given (0: none) and the
 * standby's failover timeout: by default half of the standby's; a given
 * one must not exceed that half, nor be shorter than three heartbeats.
 * 0 with *fence_ns set, or -EINVAL with the reason.  The margin (the
 * other half) covers one heartbeat interval of silence before the link
 * broke and the primary's time to pause its vCPUs.
 */
int mig_fence_pick(uint64_t given_ns, uint64_t standby_ns, uint64_t heartbeat_ns,
		   uint64_t *fence_ns, char *why, size_t whylen) __attribute__((warn_unused_result));

/*
 * What a standby's HEARTBEAT proves (docs/replication.md, "Who runs the
 * guest"): it echoes the counter of the last HEARTBEAT it had from the
 * primary, so it had heard the primary at or after the moment that one
 * was sent.  sent[c % MIG_HB_RING] holds when the primary sent counter c
 * (1..last); returns that moment for echo, or 0 when echo proves nothing
 * (0, not sent yet, or too old to be remembered).
 */
#define MIG_HB_RING 64u
uint64_t mig_hb_credit(const uint64_t sent[MIG_HB_RING], uint64_t last, uint64_t echo);

/* How often each side says it is alive: a tenth of the standby's failover timeout, 10 ms at least. */
uint64_t mig_heartbeat_ns(uint64_t standby_failover_ns);

#endif
