/*
 * The RAM source's encoders: a batch of pages (one RAM section) is a job,
 * encoded either on the migration thread (--compress none: the encode is
 * one copy) or by a small pool of worker threads (any compression), so
 * the migration thread writes one batch while workers compress the next.
 *
 * Order: jobs are written in the order they were filled, whatever order
 * they finish in, and the pool is drained (every job written) at the end
 * of every pass and at every ram_flush(): a page is in at most one job in
 * flight, so a later copy of a page can never overtake an older one and
 * delta's cache always describes pages already ahead on the wire.
 */
#ifndef FERRY_MIGRATION_RAM_POOL_H
#define FERRY_MIGRATION_RAM_POOL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "migration/codec/codec.h"
#include "migration/digest.h"
#include "migration/format.h"

#define RAM_POOL_WORKERS_MAX	4
#define RAM_POOL_JOBS		8	/* batches in flight, filled to written */

/* One batch: what to send (migration thread), then how it was encoded. */
struct ram_job {
	/* Filled by the migration thread before the job is queued. */
	uint32_t count;
	uint32_t resent;		/* pages of it that are re-sends */
	uint64_t link_bps;		/* the link as ram.c last measured it */
	bool delta_off;
	/*
	 * Zero-copy: the guest is paused and --compress is none, so raw pages
	 * are not copied: ref[i] points at the page in guest RAM and the
	 * section is written from there (ram_job_write).
	 */
	bool by_ref;
	uint64_t gpa[MIG_RAM_BATCH_MAX];
	uint64_t index[MIG_RAM_BATCH_MAX];
	const uint8_t *src[MIG_RAM_BATCH_MAX];	/* guest RAM (a hole: a zero page) */
	bool hole[MIG_RAM_BATCH_MAX];
	/* Written by the encoder (a worker, or the migration thread inline). */
	int err;
	uint8_t *data;			/* the encoded pages (but refs), back to back */
	const uint8_t *ref[MIG_RAM_BATCH_MAX];	/* by_ref: raw page i in guest RAM, or NULL */
	uint32_t nref;			/* pages sent by reference */
	uint64_t word[MIG_RAM_BATCH_MAX];	/* address | codec id */
	uint32_t len[MIG_RAM_BATCH_MAX];
	uint32_t bytes, with_data;	/* encoded bytes; pages that are not zero */
	/* The worker's counters for this job, added up by the migration thread. */
	struct mig_codec_stats stats[MIG_CODEC_NR];
	struct mig_delta_stats delta;
	uint64_t gave_up;
};

/*
 * Encode every page of j with c, digesting what the destination will hold
 * into d (NULL: no verify).  Sets j->err (-EINVAL: a page no negotiated
 * codec takes).
 */
void ram_job_encode(struct ram_job *j, struct mig_codec_ctx *c, struct mig_digest *d);

struct mig_stream;
/*
 * Write encoded job j as one RAM section, or RAM_RUN when its pages are
 * consecutive and all raw (docs/migration-stream.md has both layouts).
 * Header, entries and the pages go out in one scatter-gather write: the
 * pages from j->data, or straight from guest RAM for those by reference,
 * the checksum computed over those same bytes (they cannot change: the
 * guest is paused).  Returns the section's length on the wire; errors
 * stick to the stream.
 */
uint64_t ram_job_write(struct mig_stream *s, const struct ram_job *j);

/* The bytes ram_job_write puts on the stream for j: section header, payload, checksum. */
uint64_t ram_job_wire_len(const struct ram_job *j);

enum ram_job_state { RAM_JOB_FREE, RAM_JOB_QUEUED, RAM_JOB_BUSY, RAM_JOB_DONE };

struct ram_pool;
struct ram_pool_worker {
	struct ram_pool *pool;
	unsigned id;			/* its context: pool->ctx[id] */
};

/*
 * The pool.  `lock` guards state[], next and stop; a job's other fields
 * belong to the migration thread while FREE, to the one worker that took
 * it while BUSY, and to the migration thread again once DONE.  head and
 * tail are the migration thread's alone.
 */
struct ram_pool {
	pthread_mutex_t lock;
	pthread_cond_t work;		/* a job was queued, or stop */
	pthread_cond_t done;		/* a job is DONE */
	struct ram_job *jobs;		/* RAM_POOL_JOBS */
	enum ram_job_state state[RAM_POOL_JOBS];
	unsigned next;			/* the next queued job a worker takes */
	bool stop;
	unsigned head, tail;		/* oldest not yet written; the one being filled */
	unsigned workers;
	pthread_t thread[RAM_POOL_WORKERS_MAX];
	struct ram_pool_worker arg[RAM_POOL_WORKERS_MAX];
	struct mig_codec_ctx ctx[RAM_POOL_WORKERS_MAX];	/* each worker's own */
	struct mig_digest *digest;
};

/* How many workers this host gets: half its CPUs, 1..RAM_POOL_WORKERS_MAX. */
unsigned ram_pool_default_workers(void);

/*
 * Start `workers` threads whose codec contexts are like `main` (delta's
 * cache shared with it).  0 or -errno (nothing left running).
 */
int ram_pool_start(struct ram_pool *p, unsigned workers, const struct mig_codec_ctx *main,
		   struct mig_digest *digest) __attribute__((warn_unused_result));
/*
 * Stop and join the workers and free all.  A job a worker is encoding is
 * finished first; queued ones are dropped (drain before, to send them).
 */
void ram_pool_stop(struct ram_pool *p);

/* The job being filled (empty or partly filled). */
struct ram_job *ram_pool_current(struct ram_pool *p);
/* Queue the current job (if it has pages) for a worker. */
void ram_pool_submit(struct ram_pool *p);
/* Whether a free slot remains for the next job to fill. */
bool ram_pool_full(const struct ram_pool *p);
/*
 * The oldest job not yet written, once it is encoded (waits for it), or
 * NULL when none is in flight.  The caller writes it, then ram_pool_release().
 */
struct ram_job *ram_pool_oldest(struct ram_pool *p);
void ram_pool_release(struct ram_pool *p);

#endif
