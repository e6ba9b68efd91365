/*
 * The destination during post-copy: guest RAM registered with userfaultfd
 * (minor and missing faults), a thread that turns the guest's faults into
 * page requests to the source, and the placement of arriving pages:
 * written in place through the alias view and mapped with
 * UFFDIO_CONTINUE, or copied into holes with UFFDIO_COPY / UFFDIO_ZEROPAGE;
 * each also wakes the faulting vCPUs.  docs/postcopy.md describes the
 * states and what each failure leads to.
 */
#ifndef FERRY_MIGRATION_POSTCOPY_DEST_H
#define FERRY_MIGRATION_POSTCOPY_DEST_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "migration/digest.h"
#include "migration/stream.h"
#include "board/machine.h"

#define PC_LATENCY_BUCKETS 40	/* log2 buckets of microseconds */

struct pc_dest {
	struct machine *m;
	struct mig_stream *s;		/* the connection; writes under `lock` */
	/*
	 * Where PAGE_REQ goes: --postcopy-preempt's connection while its
	 * receiver runs (dest/preempt.c), else NULL: `s`.  Under `lock`.
	 */
	struct mig_stream *req;
	int uffd;
	bool minor;			/* minor faults: pages filled in place */
	int stop_fd[2];
	pthread_t thread;
	bool thread_started;

	/*
	 * `lock` guards the bitmaps, the counters, the digest entries of
	 * pages placed here and every write to the return path: the
	 * receiving thread and the fault thread share them.  A page is
	 * placed once, under the lock, by whichever thread finds it not
	 * `known` (in practice the receiving thread: the fault thread only
	 * maps pages already known); a later delivery of a known page is
	 * dropped and leaves its digest entry alone.
	 */
	pthread_mutex_t lock;
	unsigned long *known;		/* shared with incoming: page content is here */
	unsigned long *written;		/* shared with incoming: page holds data */
	/*
	 * Borrowed from incoming (NULL without --verify).  Entries change
	 * only when a page is really placed (pc_note_placed), so the digest
	 * is of guest memory as placed, not of the bytes received.  Only
	 * the receiving thread places pages from the wire and reads the
	 * table (at DIGEST), so it may read it without the lock.
	 */
	struct mig_digest *digest;
	unsigned long *requested;	/* asked the source for it */
	uint64_t *fault_ns;		/* when the first fault on a page was seen */
	uint64_t pages, missing;	/* all pages; pages not known yet */
	uint64_t faults, requests, zero_local, placed;
	uint64_t latency_hist[PC_LATENCY_BUCKETS];
	uint64_t blocked_ns;		/* summed fault-to-placement time */
	uint64_t start_ns, last_page_ns;
};

/*
 * Register guest RAM with userfaultfd after dropping every page whose
 * content is not known (discarded, or never sent), and start the fault
 * thread.  `known`/`written` are borrowed bitmaps (one bit per page index);
 * `digest` (NULL: no --verify) is borrowed too and kept up to date with
 * every page placed from now on.  Returns 0 or -errno.
 */
int pc_dest_start(struct pc_dest *pc, struct machine *m, struct mig_stream *s,
		  unsigned long *known, unsigned long *written, struct mig_digest *digest)
	__attribute__((warn_unused_result));

/*
 * Place n pages that arrived, at consecutive indexes from `index`, with
 * their data back to back (data NULL: zero pages); pages here already are
 * kept, and so is their digest entry.  Contiguous pages go in one
 * UFFDIO_COPY.  Returns 0 or -errno.
 */
int pc_dest_place_run(struct pc_dest *pc, uint64_t index, uint64_t n, const uint8_t *data)
	__attribute__((warn_unused_result));

/* Send a return-path section under the lock.  Returns the stream error. */
int pc_dest_reply(struct pc_dest *pc, uint8_t type, const void *payload, uint32_t len);
/* Page requests from now on go on req (NULL: the main connection), under the lock. */
void pc_dest_set_req(struct pc_dest *pc, struct mig_stream *req);

/* Stop the fault thread and unregister the memory (all pages are in). */
void pc_dest_stop(struct pc_dest *pc);

/* Latency percentile (0..100) of faulted pages, in microseconds. */
double pc_dest_latency_us(const struct pc_dest *pc, double pct);

#endif
