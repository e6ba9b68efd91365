/*
 * --postcopy-preempt: post-copy's requested pages on a connection of their
 * own (docs/migration-stream.md, "Post-copy preempt"; QEMU's
 * postcopy-preempt idea), so that a vCPU waiting on a page never waits
 * behind the background push queued on the main connection.
 *
 * Agreed at CONFIG/READY (MIG_CAP_PREEMPT) and opened right after READY
 * (after --channels' extra connections) with the channels' hello, index
 * MIG_CHAN_PREEMPT; idle until post-copy.  Then the destination's fault
 * thread sends PAGE_REQ on it, and the source's preempt thread answers on
 * it with the page (RAM: zero or raw), claiming it from the owed bitmap
 * atomically so that the push on the main connection never sends it too.
 * Before POSTCOPY_DONE the source ends it with a final BARRIER; the
 * destination's main thread handles POSTCOPY_DONE only once everything
 * before that BARRIER is placed.  A break of either connection pauses
 * post-copy as a break of the main one does; a resume runs on the main
 * connection alone.
 *
 *   source/preempt.c  the source: connect, the preempt thread
 *   dest/preempt.c    the destination: adopt the connection, its receiver
 */
#ifndef FERRY_MIGRATION_PREEMPT_H
#define FERRY_MIGRATION_PREEMPT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "migration/stream.h"

/*
 * CONFIG's codec set, bit 30 (not a codec, like MIG_CAP_BASE): the source
 * asks for a preempt connection; READY's, the destination agrees.  An
 * older destination masks it off like an unknown codec: no preempt.
 */
#define MIG_CAP_PREEMPT		(1u << 30)

/* No page: the preempt thread's hint to the push is empty. */
#define MIG_PREEMPT_NO_HINT	UINT64_MAX

struct migration;

/*
 * The source's side, inside struct migration.  `agreed`, `open` and
 * `started` are the migration thread's.  The stream `s` is the preempt
 * thread's while it runs; the migration thread creates and destroys it
 * holding mig->lock, so that migration_break() may shut it down.  `stop`,
 * `ended`, `err`, `hint` and `bytes` are atomics shared by the two.
 */
struct mig_preempt_src {
	bool agreed;			/* READY accepted MIG_CAP_PREEMPT */
	bool open;			/* the connection is up (s valid) */
	bool started;			/* the thread runs (join it) */
	struct mig_stream s;
	pthread_t thread;
	int stop_fd[2];			/* a byte wakes the thread to end (valid while started) */
	int stop;			/* migration thread: end with the final BARRIER */
	int ended;			/* the thread is done (err says how) */
	int err;
	/* The last page served: the push sends its neighbours (prepaging). */
	uint64_t hint;
	uint64_t bytes;			/* on the preempt connection, all told */
	uint8_t *buf;			/* the preempt thread's section payload */
};

/*
 * After READY agreed (and after --channels' connections): connect to the
 * same URI with the migration's TLS settings, say hello (index
 * MIG_CHAN_PREEMPT) and hear it accepted.  0 or -errno, reason in the
 * stats (precopy_fail).
 */
int mig_preempt_src_open(struct migration *mig) __attribute__((warn_unused_result));
/*
 * Before POSTCOPY_RUN: nothing may come on the preempt connection before
 * post-copy, so a readable one was lost (or is hostile): fail while the
 * source may still resume.  0 (also without one) or -errno (precopy_fail).
 */
int mig_preempt_src_check(struct migration *mig) __attribute__((warn_unused_result));
/*
 * Post-copy's switch, RUN sent: start the preempt thread.
 * Nothing without a preempt connection.  0 or -errno.
 */
int mig_preempt_src_start(struct migration *mig) __attribute__((warn_unused_result));
/*
 * Before POSTCOPY_DONE: ask the preempt thread to end (a final BARRIER on
 * its connection, so every page it sent is ahead of it) and wait for it.
 * 0 (also without one), or its failure (the main stream failed with it).
 */
int mig_preempt_src_end(struct migration *mig) __attribute__((warn_unused_result));
/* The page the push should bubble around next, or MIG_PREEMPT_NO_HINT. */
uint64_t mig_preempt_src_hint(struct migration *mig);
/* Stop the thread (cut its connection if it must) and close (any state). */
void mig_preempt_src_close(struct migration *mig);
/* Bytes sent on the preempt connection so far (any thread). */
uint64_t mig_preempt_src_bytes(const struct migration *mig);
/* Test hook: cut the preempt connection both ways.  Caller holds mig->lock.  0 or -ESRCH. */
int mig_preempt_src_break(struct migration *mig);

/* The destination's side (dest/preempt.c). ----------------------------- */

struct mig_incoming;
struct mig_preempt_in;

/*
 * Take the accepted preempt connection (its hello answered): the stream
 * moves into inc (s is left empty).  0 or -ENOMEM.
 */
int mig_preempt_in_adopt(struct mig_incoming *inc, struct mig_stream *s)
	__attribute__((warn_unused_result));
/*
 * POSTCOPY_RUN, userfaultfd armed: start the receiver and send page
 * requests on the preempt connection.  Nothing without one.  0 or -errno,
 * reason in inc->why.
 */
int mig_preempt_in_start(struct mig_incoming *inc) __attribute__((warn_unused_result));
/*
 * POSTCOPY_DONE: wait (bounded by the I/O timeout) until the receiver
 * read the final BARRIER, every page before it placed, then end it.
 * 0 (also without one), or -errno with the reason in inc->why.
 */
int mig_preempt_in_finish(struct mig_incoming *inc) __attribute__((warn_unused_result));
/*
 * The main stream failed with err: if the receiver failed first (before
 * the main stream had an error of its own, and cut its reading side to
 * say so), its error and reason instead.
 */
int mig_preempt_in_reason(struct mig_incoming *inc, int err);
/* Stop the receiver, page requests back to the main connection, close (any state). */
void mig_preempt_in_stop(struct mig_incoming *inc);

#endif
