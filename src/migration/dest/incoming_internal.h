/*
 * Shared between incoming.c (the stream and pre-copy) and
 * incoming_postcopy.c (the post-copy sections, resume): not a public API.
 */
#ifndef FERRY_MIGRATION_INCOMING_INTERNAL_H
#define FERRY_MIGRATION_INCOMING_INTERNAL_H

#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <time.h>

#include "migration/dest/incoming.h"
#include "board/machine_state.h"
#include "migration/section.h"

/* What the stream may carry next. */
enum mig_in_phase {
	MIG_IN_CONFIG,		/* nothing yet: CONFIG */
	MIG_IN_PASS,		/* a PASS must come before any RAM */
	MIG_IN_RAM,		/* inside a live pass: RAM or the next PASS */
	MIG_IN_FINAL,		/* inside the final pass: RAM or STATE */
	MIG_IN_STATE,		/* STATE seen: DIGEST (with verify) or END */
	MIG_IN_DIGEST,		/* DIGEST seen: END */
	MIG_IN_DISCARD,		/* post-copy: more DISCARD, or STATE */
	MIG_IN_PC_STATE,	/* post-copy: STATE seen, POSTCOPY_RUN next */
	MIG_IN_PC_RUN,		/* post-copy: the guest runs; RAM, DIGEST, DONE */
	MIG_IN_PC_DIGEST,	/* post-copy: DIGEST seen, DONE next */
	MIG_IN_COMMIT,		/* pre-copy: END checked, LOADED sent; GO or ABORT */
	MIG_IN_STANDBY,		/* replication, between epochs: EPOCH, HEARTBEAT, ABORT */
	MIG_IN_EPOCH,		/* inside an epoch: RAM, EPOCH_DISK, STATE, EPOCH_END */
	MIG_IN_AFTER_GO,	/* pre-copy, the guest runs here: late net frames, END */
	MIG_IN_PHASES,
	MIG_IN_SAME = MIG_IN_PHASES,	/* a rule's next phase: stay (or the handler decides) */
};

/* What a section handler works on: one per receive. */
struct mig_in_ctx {
	struct mig_incoming *inc;
	const struct mig_incoming_opts *opts;	/* NULL in MIG_IN_COMMIT */
	struct machine *m;
	struct machine_state *st;
	enum mig_in_phase ph;
	uint8_t type;			/* the section being handled */
	bool done;			/* the stream's last section was handled */
	bool go;			/* MIG_IN_COMMIT: GO came */
	bool late;			/* MIG_IN_COMMIT: a late SOURCE section came */
	uint64_t after_go;		/* MIG_IN_AFTER_GO: SOURCE sections taken */
};

/*
 * One rule of the incoming state machine (incoming_rules.c): a section of
 * `type` is allowed in the phases of the `phases` mask when CONFIG's flags
 * include `need` and none of `unless`; the phase becomes `next` (or stays:
 * MIG_IN_SAME; a handler may set c->ph itself) and the handler runs, with
 * the whole payload or, `streamed`, with the section reader so the data
 * goes straight where it belongs.  Handlers return 0 or -errno (reason in
 * inc->why).
 */
struct mig_in_rule {
	uint8_t type;
	uint32_t phases;
	uint32_t need, unless;
	enum mig_in_phase next;
	int (*whole)(struct mig_in_ctx *c, const uint8_t *p, uint32_t len);
	int (*streamed)(struct mig_in_ctx *c, struct mig_section_reader *r);
};

/*
 * Read the next section and hand it to its rule, or fail with "unknown
 * section type" / "out of order".  buf (cap bytes) takes whole payloads.
 * Returns 0 or -errno with the reason in c->inc->why.
 */
int mig_in_dispatch(struct mig_in_ctx *c, uint8_t *buf, uint32_t cap)
	__attribute__((warn_unused_result));

/* incoming.c: pre-copy handlers. */
int mig_in_h_config(struct mig_in_ctx *c, const uint8_t *p, uint32_t len);
int mig_in_h_pass(struct mig_in_ctx *c, const uint8_t *p, uint32_t len);
int mig_in_h_ram(struct mig_in_ctx *c, struct mig_section_reader *r);
int mig_in_h_source(struct mig_in_ctx *c, const uint8_t *p, uint32_t len);
int mig_in_h_source_late(struct mig_in_ctx *c, const uint8_t *p, uint32_t len);
int mig_in_h_sync(struct mig_in_ctx *c, const uint8_t *p, uint32_t len);
int mig_in_h_state(struct mig_in_ctx *c, const uint8_t *p, uint32_t len);
int mig_in_h_digest(struct mig_in_ctx *c, const uint8_t *p, uint32_t len);
int mig_in_h_barrier(struct mig_in_ctx *c, const uint8_t *p, uint32_t len);
int mig_in_h_end(struct mig_in_ctx *c, const uint8_t *p, uint32_t len);
/* incoming_postcopy.c: post-copy handlers. */
int mig_in_h_discard(struct mig_in_ctx *c, const uint8_t *p, uint32_t len);
int mig_in_h_pc_run(struct mig_in_ctx *c, const uint8_t *p, uint32_t len);
int mig_in_h_pc_ram(struct mig_in_ctx *c, const uint8_t *p, uint32_t len);
int mig_in_h_pc_source(struct mig_in_ctx *c, const uint8_t *p, uint32_t len);
int mig_in_h_pc_done(struct mig_in_ctx *c, const uint8_t *p, uint32_t len);
/* standby.c: replication. */
int mig_in_h_epoch(struct mig_in_ctx *c, const uint8_t *p, uint32_t len);
int mig_in_h_epoch_disk(struct mig_in_ctx *c, const uint8_t *p, uint32_t len);
int mig_in_h_epoch_state(struct mig_in_ctx *c, const uint8_t *p, uint32_t len);
int mig_in_h_epoch_end(struct mig_in_ctx *c, const uint8_t *p, uint32_t len);
int mig_in_h_heartbeat(struct mig_in_ctx *c, const uint8_t *p, uint32_t len);
int mig_in_h_stand_down(struct mig_in_ctx *c, const uint8_t *p, uint32_t len);
/* incoming_commit.c: the switchover's answer. */
int mig_in_h_go(struct mig_in_ctx *c, const uint8_t *p, uint32_t len);
int mig_in_h_abort(struct mig_in_ctx *c, const uint8_t *p, uint32_t len);
/* incoming_epilogue.c: after GO, the source's late frames and their END. */
int mig_in_h_source_after_go(struct mig_in_ctx *c, const uint8_t *p, uint32_t len);
int mig_in_h_after_go_end(struct mig_in_ctx *c, const uint8_t *p, uint32_t len);

/*
 * Record why the migration failed; returns err.  The latest reason
 * replaces an earlier one: a caller that wraps a lower failure checks
 * inc->why first (the dispatcher does) to keep the precise reason.
 */
/*
 * ram_base.c: after READY accepted a base, load it into RAM and send the
 * digest of every page (BASE_SUMS).  0 or -errno with the reason in inc->why.
 */
int mig_in_base_send(struct mig_incoming *inc, struct machine *m, struct savefile *sf)
	__attribute__((warn_unused_result));

int mig_in_fail(struct mig_incoming *inc, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Runs of at least this many pages are allocated in one call ahead of their data. */
#define MIG_IN_POPULATE_MIN 16
/* Compare a DIGEST section with the pages received.  0 or -errno. */
int mig_in_digest(struct mig_incoming *inc, const uint8_t *p, uint32_t len);

/*
 * --verify: read back the state just loaded into m (vCPUs not run yet),
 * digest it, note where it differs from `sent`, and compare with DIGEST's
 * if that came already.  Returns 0 or -errno (-EIO: mismatch), reason in
 * inc->why.
 */
int mig_in_state_hash(struct mig_incoming *inc, struct machine *m, const struct machine_state *sent)
	__attribute__((warn_unused_result));
/* Compare the two state digests once both are known.  0, or -EIO with the reason. */
int mig_in_state_check(struct mig_incoming *inc) __attribute__((warn_unused_result));

/* Wait for a resuming source after a broken post-copy.  0 once it is back. */
int mig_in_pc_reconnect(struct mig_incoming *inc, const struct mig_incoming_opts *opts,
			struct machine *m);
/* Send the destination's post-copy counters to the source. */
void mig_in_pc_stats(struct mig_incoming *inc);

/*
 * For the threads that wait on the receivers of extra connections
 * (channels.c, preempt.c): is fd (-1: none) readable now, and a wait on
 * cond of at most 100 ms, so that a stop or a silence is seen that often.
 */
static inline bool mig_in_fd_ready(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return fd >= 0 && poll(&p, 1, 0) > 0;
}

static inline void mig_in_cond_wait_tick(pthread_cond_t *cond, pthread_mutex_t *lock)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += 100000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(cond, lock, &ts);
}

#endif
