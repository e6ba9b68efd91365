/*
 * An outgoing migration job: its parameters, its thread, its statistics.
 * One per ferry process.  The control thread starts, queries and cancels
 * it; the migration thread (precopy.c) does the work.
 */
#ifndef FERRY_MIGRATION_MIGRATION_H
#define FERRY_MIGRATION_MIGRATION_H

#include <json-c/json.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "migration/channel/tls.h"
#include "migration/commit.h"
#include "migration/digest.h"
#include "migration/format.h"
#include "migration/source/policy.h"
#include "migration/ram.h"
#include "migration/multi.h"
#include "migration/preempt.h"
#include "migration/stats.h"
#include "migration/stream.h"
#include "util/ratelimit.h"
#include "board/machine.h"

struct mig_block;

struct mig_params {
	char uri[256];
	uint64_t bandwidth;		/* live phase, bytes/s; 0 = unlimited */
	uint64_t downtime_ns;		/* switch over when expected downtime fits */
	uint32_t max_iterations;	/* force switchover after this many passes; 0 = no limit */
	uint64_t timeout_ns;		/* 0 = none */
	enum mig_on_timeout on_timeout;
	enum mig_mode mode;
	uint32_t postcopy_after;	/* hybrid: switch after this many passes; 0 = by itself */
	uint32_t prepage;		/* post-copy: neighbours pushed after a fault (0: none) */
	uint64_t postcopy_bandwidth;	/* post-copy: cap on the background push, bytes/s */
	uint64_t resume_timeout_ns;	/* post-copy: how long a broken one waits to resume */
	/*
	 * Pre-copy: the longest the guest may stay paused before the source
	 * gives up and resumes it (0: automatic, see switchover.c).
	 */
	uint64_t switchover_timeout_ns;
	/*
	 * Pre-copy with NICs: after GO, how long at most the source goes on
	 * forwarding what reaches its taps until the destination says
	 * ANNOUNCED (0: not at all; source/epilogue.c).
	 */
	uint64_t net_epilogue_ns;
	/* Page encoding (--compress): the mode, zstd's level, delta's cache. */
	enum mig_compress compress;
	int compress_level;
	uint64_t xbzrle_cache;
	enum mig_order order;		/* --order: passes 2 and later (ram_order.h) */
	/* --channels: connections carrying pages, the main one included (1..MIG_CHANNELS_MAX). */
	uint32_t channels;
	/*
	 * --postcopy-preempt: a connection of its own for the pages post-copy's
	 * faults ask for (preempt.h); the destination agrees in READY.
	 */
	bool postcopy_preempt;
	bool auto_converge;
	bool verify;
	bool keep_source;		/* stay paused after success instead of exiting */
	bool copy_storage;		/* copy the disks too (block.c) */
	bool copy_incremental;		/* ... only the 64 KiB ranges that differ there */
	/*
	 * ... write-blocking (--copy-storage-mode write-blocking): once a
	 * disk's first pass is done, every guest write to it completes only
	 * after its range is on the migration stream (block.c)
	 */
	bool copy_blocking;
	struct mig_tls tls;		/* --tls-creds: TLS over the connection (dir "": none) */
	/*
	 * ferry replicate (source/replicate.c, docs/replication.md): after the
	 * initial copy, a checkpoint every epoch_interval_ns to a standby;
	 * fence_ns is how long the primary runs on without hearing from an
	 * auto-failover standby (0: half the standby's failover timeout).
	 */
	bool replicate;
	uint64_t epoch_interval_ns;
	uint64_t fence_ns;
	/* --keep-base: after success, save the VM as it left to this file ("": none). */
	char keep_base[PATH_MAX];
};

#define MIG_DEFAULT_DOWNTIME_NS (300ULL * 1000000ULL)
#define MIG_DEFAULT_RESUME_TIMEOUT_NS (300ULL * 1000000000ULL)
#define MIG_DEFAULT_NET_EPILOGUE_NS (1000ULL * 1000000ULL)
#define MIG_NET_EPILOGUE_MAX_NS (10000ULL * 1000000ULL)

typedef void mig_event_fn(void *opaque, json_object *event);

/*
 * Requests from other threads to the migration thread, and the one flag
 * the receiving side sets.  All guarded by migration.lock.
 */
struct mig_requests {
	/*
	 * This VM is still arriving by post-copy: its guest runs here but
	 * pages are missing, so it cannot be migrated on.  Set and cleared by
	 * the thread receiving the incoming migration (cli/run.c).
	 */
	bool incoming_postcopy;
	/* Frames the source forwarded after GO of the last incoming migration (cli/run.c). */
	uint64_t incoming_frames_after_go;
	bool cancel;			/* control thread: migrate-cancel, quit */
	bool postcopy_requested;	/* control thread: migrate-start-postcopy */
	bool resume_requested;		/* control thread: migrate --resume, to resume_uri */
	char resume_uri[256];
	struct mig_tls resume_tls;	/* TLS for the resume (the first one's unless given) */
	bool limits_changed;		/* p.bandwidth / p.downtime_ns were set anew */
};

/*
 * The pre-copy loop's own state: the pass in progress and the hybrid
 * probe's last looks (precopy.c).  Migration thread only, no lock.
 */
struct mig_pass_state {
	/* Asked between chunks of a pass: true ends it and goes to post-copy. */
	bool (*on_chunk)(struct migration *mig);
	uint64_t probe_ns;		/* last look at the dirty rate */
	uint64_t probe_prev_ns, probe_prev_dirty;	/* the look before: time, bytes dirty */
	uint64_t last_sync_ns;
	uint64_t left_over_prev;	/* the policy's left_over at the last decision */
	uint64_t start_ns, start_bytes;	/* of this pass, for the live throughput */
	bool forced;			/* switch over at the next chance */
	bool to_postcopy;		/* ... and to post-copy */
	uint32_t sent;			/* the number of the last PASS section sent, 0: none */
	bool switch_pass;		/* post-copy asked for: end this pass now */
	bool epochs;			/* replicating: the standby's messages are read between epochs */
	bool drained;			/* precopy_confirm's SYNC came last: the link is empty */
};

/*
 * How the end of the job stands.  Migration thread only, no lock: the
 * control thread learns of it through stats.status and the commit.
 */
struct mig_end_flags {
	bool no_return;			/* post-copy began: the source may never resume */
	/*
	 * Pre-copy: GO may have reached the destination, so this side must not
	 * resume by itself; cleared again when the destination says it did not
	 * start the guest (RESULT error) or the operator says run here.
	 */
	bool committed;
	bool abandoned;			/* in doubt, the operator discarded this copy */
	/*
	 * Replication: the standby went silent and may take over, so this
	 * side paused its guest for good (never resumed by the job).
	 */
	bool fenced;
};

/*
 * The job.  Threads: the control thread (commands: start, query, cancel,
 * set limits, resume, break), the migration thread (precopy_thread and
 * all it calls: every source's ops, the switchover, post-copy) and the
 * thread receiving an incoming migration (req.incoming_postcopy only).
 */
struct migration {
	/* Set before the thread starts; read-only while it runs (but p's limits, below). */
	struct machine *m;
	struct mig_params p;
	mig_event_fn *on_event;		/* told of the end, from the migration thread */
	void *event_opaque;
	pthread_t thread;
	bool thread_started;		/* control thread only */

	/*
	 * `lock` guards stats, req, and p.bandwidth / p.downtime_ns while the
	 * thread runs.  Takers: the control thread, the migration thread, and
	 * the receiving thread (req.incoming_postcopy).  `cond` (with `lock`)
	 * signals req.resume_requested and req.cancel.
	 */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct mig_stats stats;
	struct mig_requests req;
	/* The switchover's commit state and the operator's word (its own lock). */
	struct mig_commit commit;

	/*
	 * Owned by the migration thread while it runs, except that it creates
	 * and destroys `s` holding `lock`, so that migration_break() (control
	 * thread, holding `lock`) may shut its channel down.
	 */
	struct mig_stream s;
	struct ratelimit rl;
	struct mig_digest digest;
	uint64_t state_digest;		/* with verify: of the STATE sent */
	/* Which sources take part (mig_sources_setup); migration thread only. */
	bool src_active[MIG_SOURCE_NR];
	struct mig_ram ram;		/* the RAM source's own state (ram.h) */
	struct mig_chans_src chans;	/* --channels: the extra connections (multi.h) */
	struct mig_preempt_src preempt;	/* --postcopy-preempt (preempt.h; its own rules) */
	struct mig_block *block;	/* the block source's (block.c), while it runs */
	/* Replication: the standby takes epoch disk blocks as 4 KiB ranges (READY, epoch.h). */
	bool epoch_ranges;
	/* copy-storage: the destination takes block data through a codec (READY, block.h). */
	bool block_z;
	struct mig_pass_state pass;
	struct mig_end_flags end;
};

void migration_init(struct migration *mig, struct machine *m);
/* Join a finished migration thread and free what it left. */
void migration_destroy(struct migration *mig);

/*
 * Start migrating in a thread of its own.  Returns 0, -EBUSY if one is
 * running, -EINPROGRESS while this VM is still arriving by post-copy,
 * -EOPNOTSUPP for post-copy (or hybrid) or an incremental disk copy over a
 * channel with no return path.
 */
int migration_start(struct migration *mig, const struct mig_params *p, mig_event_fn *fn,
		    void *opaque) __attribute__((warn_unused_result));
/* Say whether this VM is still being received by post-copy (any thread). */
void migration_set_incoming_postcopy(struct migration *mig, bool on);
bool migration_incoming_postcopy(struct migration *mig);
/* The receiving thread: the last incoming migration took n frames after GO. */
void migration_set_incoming_frames_after_go(struct migration *mig, uint64_t n);
/* Ask a running migration to stop; the source keeps running.  0 or -ESRCH. */
int migration_cancel(struct migration *mig);
/* Has migration_cancel() asked this migration to stop (any thread)? */
bool migration_cancel_requested(struct migration *mig);
/*
 * Change the live-phase bandwidth (bytes/s, 0 = unlimited) and the downtime
 * limit of a running migration; either may be left as is (NULL).  0 or -ESRCH.
 */
int migration_set_limits(struct migration *mig, const uint64_t *bandwidth,
			 const uint64_t *downtime_ns);
/*
 * Reconnect a post-copy that lost its connection, to uri (the destination
 * listens again), with TLS settings tls (NULL or TLS off: those the
 * migration started with, as the destination keeps its own).  0, or
 * -ESRCH if no post-copy waits to resume.
 */
int migration_resume(struct migration *mig, const char *uri, const struct mig_tls *tls);
/*
 * Switch a running pre-copy to post-copy at the next chance.  0, -ESRCH,
 * or -EOPNOTSUPP when its channel has no return path (a file).
 */
int migration_start_postcopy(struct migration *mig);
/*
 * Test hook (x-test-migration-break): cut the migration's channel both
 * ways, as a network failure would (preempt: only the post-copy preempt
 * connection).  0, or -ESRCH when there is none.
 */
int migration_break(struct migration *mig, bool preempt);
/* A snapshot of the statistics as JSON (query-migrate). */
json_object *migration_query(struct migration *mig);
bool migration_running(struct migration *mig);

/* precopy.c: the migration thread. */
void *precopy_thread(void *arg);

/* precopy.c, for postcopy.c. */
int precopy_fail(struct migration *mig, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int precopy_stream_fail(struct migration *mig, int err);
void precopy_phase(struct migration *mig, enum mig_phase ph, uint64_t *t);
/* Send the state of the quiesced, handed-over machine.  0 or -errno. */
int precopy_send_state(struct migration *mig);
/*
 * End the stream's data: DIGEST (with --verify), then the empty closing
 * section `type` (END, POSTCOPY_DONE), flushed.  0 or the stream's failure.
 */
int precopy_send_last(struct migration *mig, uint8_t type);
void precopy_set_status(struct migration *mig, enum mig_status s);
void precopy_send_pass(struct migration *mig, uint32_t pass, uint64_t dirty, bool final);

/*
 * switchover.c: pause, send the rest and the state, then the commit:
 * LOADED, GO, RESULT.  Returns 0 when the guest runs at the destination
 * (or the operator abandoned this copy: mig->end.abandoned), else -errno; the
 * source may then resume unless mig->end.committed.
 */
int switchover_run(struct migration *mig) __attribute__((warn_unused_result));
/*
 * epilogue.c, after RESULT ok: forward what reaches the taps until the
 * destination says ANNOUNCED (plus a grace) or p.net_epilogue_ns passes,
 * then END.  Changes nothing about the migration's outcome.
 */
void switchover_epilogue(struct migration *mig);

/*
 * replicate.c: instead of the switchover, the initial checkpoint and then
 * one epoch every interval until cancelled (ABORT to the standby; the
 * guest runs on), the link fails (the guest runs on when the standby
 * only takes over by hand, else mig->end.fenced and it stays paused) or
 * the VM stops.  Returns -errno (-ECANCELED: cancelled).
 */
int replicate_run(struct migration *mig) __attribute__((warn_unused_result));
/*
 * replicate.c, right after READY: the standby's STANDBY (its failover
 * timeout and mode), checked against this side's fence timeout before
 * anything moves.  0 or -errno.
 */
int replicate_handshake(struct migration *mig) __attribute__((warn_unused_result));

/*
 * postcopy.c: from a live pre-copy (or none) to post-copy: pause, send the
 * state, let the destination run the guest, then every page still owed,
 * the faulted ones first.  Returns 0 or -errno (no_return tells whether
 * the source may still resume: mig->end.no_return).
 */
int postcopy_run(struct migration *mig) __attribute__((warn_unused_result));

#endif
