/*
 * The switchover commit (docs/migration-stream.md, "Switchover"): what the
 * two sides of a pre-copy know about who runs the guest, and the
 * operator's word where neither can know.
 *
 * The destination runs the guest only on GO; the source sends GO only
 * after LOADED and, once GO may have left, never resumes by itself.  If
 * the answer to GO (RESULT) or GO itself goes missing, a side is *in
 * doubt*: it stays paused, keeps listening on the connection (a late
 * message still settles it) and obeys `migrate-resolve` (run | abandon).
 */
#ifndef FERRY_MIGRATION_COMMIT_H
#define FERRY_MIGRATION_COMMIT_H

#include <pthread.h>
#include <stdbool.h>

#include "migration/stream.h"

enum mig_commit_state {
	MIG_COMMIT_NONE,	/* no decision pending */
	MIG_COMMIT_WAITING,	/* source: GO sent; destination: LOADED sent */
	MIG_COMMIT_IN_DOUBT,	/* the answer is late or the connection broke */
	MIG_COMMIT_STANDBY,	/* a replication standby: RUN is 'ferry failover' */
};

enum mig_resolve {
	MIG_RESOLVE_NONE,
	MIG_RESOLVE_RUN,	/* the operator says: the guest runs on this side */
	MIG_RESOLVE_ABANDON,	/* the operator says: this copy is discarded */
};

/*
 * One per ferry process (in struct migration).  `lock` guards state and
 * resolve.  state is written by the thread that runs the switchover (the
 * migration thread on a source, the main thread on a destination);
 * resolve by the control thread (migrate-resolve) or by shutdown.  The
 * eventfd wake_fd is written with every resolve so the waiter's poll ends.
 */
struct mig_commit {
	pthread_mutex_t lock;
	enum mig_commit_state state;
	enum mig_resolve resolve;
	int wake_fd;
};

/* Returns 0 or -errno (no eventfd). */
int mig_commit_init(struct mig_commit *c) __attribute__((warn_unused_result));
void mig_commit_destroy(struct mig_commit *c);

void mig_commit_set_state(struct mig_commit *c, enum mig_commit_state st);
enum mig_commit_state mig_commit_get_state(struct mig_commit *c);
const char *mig_commit_state_name(enum mig_commit_state st);

/*
 * The operator's decision (migrate-resolve).  Returns 0, or -ESRCH when
 * no switchover waits for one.
 */
int mig_commit_resolve(struct mig_commit *c, enum mig_resolve r) __attribute__((warn_unused_result));

/*
 * Wait at most timeout_ms for the stream to have something to read, the
 * operator's decision or intr_fd (-1: none) to become readable.  The
 * stream is not waited on when it is closed or `dead`.  Returns 1 when
 * the stream is readable, 0 on timeout, -EINTR for intr_fd; *r gets any
 * decision (checked first).
 */
int mig_commit_wait(struct mig_commit *c, struct mig_stream *s, bool dead, int intr_fd,
		    int timeout_ms, enum mig_resolve *r);

#endif
