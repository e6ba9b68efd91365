/*
 * The RAM source (live.h): sync the dirty log into its bitmaps and send
 * the pages they mark as RAM sections, each page in the cheapest
 * negotiated encoding (codec/codec.h), runs of raw pages as RAM_RUN.  Its
 * destination side, the one RAM decoder, is ram_load.c.
 */
#ifndef FERRY_MIGRATION_RAM_H
#define FERRY_MIGRATION_RAM_H

#include <stdbool.h>
#include <stdint.h>

#include "board/machine.h"
#include "migration/codec/codec.h"
#include "migration/ram_order.h"
#include "migration/ram_pool.h"

struct migration;
struct mig_in_ctx;
struct mig_payload;

/*
 * The RAM source's state, inside struct migration.  Migration thread only
 * (no lock): the control thread sees RAM through the stats.
 */
struct mig_ram {
	unsigned long *bitmap[GUEST_MAX_REGIONS];	/* pages still to send */
	/*
	 * Pages the guest wrote since they were last cleared (a peek at KVM's
	 * log): hot.  Hybrid's first pass leaves them for later, post-copy
	 * pushes them first.
	 */
	unsigned long *hot[GUEST_MAX_REGIONS];
	bool hot_skip;			/* this pass leaves hot pages for later */
	/*
	 * The guest is paused for good (the final pass, post-copy): with
	 * --compress none raw pages are sent from guest RAM, not copied.
	 */
	bool stable;
	uint64_t clear_ns;		/* when the whole log was last cleared */
	bool clean;			/* it was, before pass 1: a peek shows what the guest wrote */
	uint32_t codecs;		/* encodings the destination accepted (bit = id) */
	bool base;			/* READY accepted MIG_CAP_BASE: its digests follow */
	/* The encoder: codecs' state and counters (set up once READY is read). */
	struct mig_codec_ctx codec;
	bool codec_ready;
	/*
	 * The link's rate as the adaptive mode sees it: bytes handed to the
	 * stream and the time spent handing them (blocked on a slow link,
	 * memory speed on a fast one), decayed as they grow.
	 */
	uint64_t link_bytes, link_ns;
	/*
	 * The batches (ram_pool.h): with compression, a pool of encoder
	 * threads (pool_running); else `job`, encoded on this thread.
	 */
	struct ram_job *job;
	struct ram_pool pool;
	bool pool_running;
	/*
	 * Re-sends and ordered propagation (ram_order_send.c).  `sent` marks,
	 * by page index, the pages sent at least once: a page sent again is
	 * counted in pages-resent.  With --order rewrite, `rewrites` holds each
	 * page's rewrite history, the last 8 syncs (ram_order.h; allocated when
	 * pass 1 starts), `seen` a region's report from one sync or look, and
	 * `send_order` a pass's pages in the order they go.
	 */
	enum mig_order order;
	uint64_t nr_pages;		/* the page index space (last region's end) */
	unsigned long *sent;
	uint8_t *rewrites;
	unsigned long *seen[GUEST_MAX_REGIONS];
	uint32_t *send_order;
	uint64_t send_order_cap;	/* entries */
	bool counting;			/* pass 1 went out: syncs count rewrites */
	uint64_t deferred;		/* pages left by early pass ends, all passes */
};

/*
 * Set up the encoder for the codecs the destination accepted, in the
 * migration's compression mode (with compression, start the encoder
 * threads).  0 or -ENOMEM.
 */
int ram_codec_setup(struct migration *mig, uint32_t accepted) __attribute__((warn_unused_result));

/* Allocate bitmaps and the batch buffer.  0 or -ENOMEM. */
int ram_setup(struct migration *mig) __attribute__((warn_unused_result));
void ram_cleanup(struct migration *mig);

/*
 * Fetch the dirty log of every region into the bitmaps.  Returns the
 * number of dirty pages, or -errno.
 */
int64_t ram_sync(struct migration *mig) __attribute__((warn_unused_result));

/*
 * Send every page marked in the bitmaps (but hot ones while ram.hot_skip),
 * by address, clearing each chunk's dirty bits in KVM right before reading
 * it.  `resend` is not used: ram.sent tells which pages are re-sent.  Returns 0, -ECANCELED if
 * cancelled, -EAGAIN when post-copy was asked for (or pass.on_chunk said
 * so) mid-pass, or the stream's error.
 */
int ram_send_dirty(struct migration *mig, bool resend) __attribute__((warn_unused_result));

/*
 * One live pass (the source table's iterate): pass 1 and --order address
 * as ram_send_dirty(); later passes with --order rewrite coldest first,
 * ending early before a hot tail that outruns the link (those pages stay
 * marked for the next pass).  Same returns as ram_send_dirty().
 */
int ram_send_pass(struct migration *mig, bool resend) __attribute__((warn_unused_result));

/*
 * Peek at KVM's dirty log into the hot bitmaps (nothing consumed).
 * Returns the number of hot pages, or -errno.
 */
int64_t ram_peek_hot(struct migration *mig) __attribute__((warn_unused_result));
/*
 * Of the hot pages the last peek found, those not already owed (not in
 * the bitmap the last sync filled): what the guest added to pending since.
 * Counts the bitmaps only; peek first.
 */
uint64_t ram_hot_new(struct migration *mig);

/*
 * Clear KVM's dirty log for all RAM (write-protect everything), so a peek
 * shows what the guest wrote since, and mark every page to be sent in the
 * bitmaps (pass 1 sends all RAM).  0 or -errno.
 */
int ram_start_clean(struct migration *mig) __attribute__((warn_unused_result));

/*
 * Post-copy: queue page `index` if its bit is still set (clearing it, so no
 * page goes twice).  The vCPUs are paused: memory no longer changes.
 * Returns true if queued.
 */
bool ram_queue_index(struct migration *mig, uint64_t index);
/*
 * Post-copy: take page `index` out of the owed bitmap, atomically, so that
 * of the migration thread's push and the preempt thread (preempt.h) only
 * one ever sends it.  True if it was owed (the caller sends it now).
 */
bool ram_claim_index(struct migration *mig, uint64_t index);
/*
 * Mark page index sent (ram_order_send.c); true if it had been sent before,
 * a re-send, counted in pages-resent.  Atomic: the preempt thread calls it
 * for the pages it sends while the migration thread pushes.
 */
bool ram_order_mark_sent(struct mig_ram *ram, uint64_t index);
/*
 * ram_base.c, the handshake (live.h) with a destination that holds a base:
 * read its page digests and leave the pages that match out of pass 1.
 * 0 or -errno (reason on the stream).  Nothing to do unless ram.base.
 */
int ram_base_handshake(struct migration *mig) __attribute__((warn_unused_result));

/* Send the queued batch now.  Returns the stream's error. */
int ram_flush(struct migration *mig) __attribute__((warn_unused_result));

/*
 * ram_load.c, the destination: one RAM or RAM_RUN section, checked entry
 * by entry, decoded and handed to the sink of the phase (pre-copy: written
 * into guest RAM; post-copy: placed through userfaultfd).  0 or -errno
 * with the reason in c->inc->why.
 */
int ram_load(struct mig_in_ctx *c, uint8_t type, struct mig_payload *in)
	__attribute__((warn_unused_result));

#endif
