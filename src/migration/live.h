/*
 * Live-iterable sources (QEMU's SaveVMHandlers): everything sent while the
 * guest runs, pass after pass, and finished at stop-and-copy.  RAM is one
 * (ram.c); a disk would be another.  Each is one file, registered in
 * mig_sources[] (live.c) by enum mig_source_id (format.h).
 *
 * The pre-copy loop (precopy.c), the final pass (switchover.c) and the
 * convergence policy's inputs iterate the table: nothing there knows which
 * sources exist.  On the destination, a source's sections reach its `load`
 * through a rule of incoming_rules.c: RAM has its own section types, the
 * others come in SOURCE sections under their id.
 *
 * All source-side ops run on the migration thread; `load` on the thread
 * receiving the migration.
 */
#ifndef FERRY_MIGRATION_LIVE_H
#define FERRY_MIGRATION_LIVE_H

#include <stdbool.h>
#include <stdint.h>

#include "migration/format.h"

struct migration;
struct mig_in_ctx;
struct mig_incoming;
struct mig_payload;
struct mig_section_writer;
struct mig_stream;

struct mig_source_ops {
	const char *name;
	/* Source: does it take part in this migration?  NULL: always. */
	bool (*active)(struct migration *mig);
	/* Destination: may its sections be loaded here?  NULL: always. */
	bool (*accepted)(void);
	/* Before the first pass: allocate, mark everything to send.  0 or -errno. */
	int (*setup)(struct migration *mig);
	/*
	 * After READY, before the first pass: a question to the destination
	 * and its answer over the return path, which is the source's alone
	 * until then.  NULL: none.  0 or -errno.
	 */
	int (*handshake)(struct migration *mig);
	/*
	 * Fetch what changed since the last look (end of a pass, stop-and-copy)
	 * and return the bytes still to send, or -errno.
	 */
	int64_t (*sync)(struct migration *mig);
	/*
	 * Mid-pass (the hybrid probe): bytes written since the last sync,
	 * consuming nothing.  NULL: nothing is known until the next sync.
	 */
	int64_t (*peek)(struct migration *mig);
	/*
	 * Bytes the last pass had to send but left for the next (a per-pass
	 * budget: a disk's first copy, and what the guest wrote meanwhile).
	 * Unlike what the guest wrote during the pass, the next passes can
	 * shrink them while the guest runs.  NULL: a pass sends all it has.
	 */
	uint64_t (*left_over)(struct migration *mig);
	/*
	 * One live pass: send what the last sync found, checking for cancel
	 * and post-copy between slices.  0, -ECANCELED, -EAGAIN (post-copy
	 * asked for mid-pass; the rest is owed) or the stream's error.
	 */
	int (*iterate)(struct migration *mig, bool resend);
	/*
	 * Stop-and-copy (the vCPUs are paused and the caller synced): send
	 * everything still owed.  0 or the stream's error.
	 */
	int (*complete)(struct migration *mig, bool resend);
	/*
	 * Destination: one section of this source, its payload after the
	 * source id (SOURCE) or all of it (RAM's own types).  Every byte is
	 * hostile.  0 or -errno with the reason in c->inc->why.
	 */
	int (*load)(struct mig_in_ctx *c, uint8_t type, struct mig_payload *in);
	/*
	 * Destination, before the guest may start here (END, POSTCOPY_RUN):
	 * did everything this source owes arrive?  NULL: nothing to check.
	 * 0 or -errno with the reason in c->inc->why.
	 */
	int (*loaded)(struct mig_in_ctx *c);
	/*
	 * Destination: the receive ended, either way; free what `load` kept
	 * in inc->src_state[id].  NULL: it keeps nothing.
	 */
	void (*unload)(struct mig_incoming *inc);
	/*
	 * Pre-copy with a return path, after LOADED and just before GO, the
	 * guest still paused: send SOURCE sections for what came since
	 * complete (each at most MIG_SOURCE_LATE_MAX bytes of payload after
	 * the id).  The destination loads them while it waits for GO.  0 or
	 * the stream's error.  NULL: nothing then (and such sections from
	 * the source are refused).
	 */
	int (*late)(struct migration *mig);
	/*
	 * Pre-copy with a return path, after GO and its RESULT ok: the guest
	 * runs at the destination and never again here.  Send SOURCE sections
	 * for what came since the last send (each at most
	 * MIG_SOURCE_LATE_MAX bytes after the id); called again and again
	 * until the epilogue ends (source/epilogue.c).  0 or the stream's
	 * error.  NULL: nothing then, and the destination refuses its
	 * sections after GO.
	 */
	int (*after_go)(struct migration *mig);
	void (*cleanup)(struct migration *mig);
	/*
	 * Between chunks of any source's live pass (and after each pass):
	 * send what must not wait for this source's turn (write-blocking
	 * disks hold the guest's writes until they are sent).  NULL: none.
	 * 0 or the stream's error.
	 */
	int (*service)(struct migration *mig);
	/*
	 * The switchover is next (before the guest is paused, and on every
	 * way out of the live phase): stop holding anything of the guest's
	 * on this source's account; what it still owes goes at the
	 * switchover.  NULL: nothing held.
	 */
	void (*release)(struct migration *mig);
	/*
	 * A `postcopy` source other than RAM (which has its own DISCARD), at
	 * the switch to post-copy, the guest paused and the others complete:
	 * sync and tell the destination what it still lacks, before STATE.
	 * NULL: nothing.  0 or the stream's error.
	 */
	int (*pc_switch)(struct migration *mig);
	/*
	 * After POSTCOPY_RUN, between RAM's requests: send a batch of what
	 * is still owed (at most `budget` bytes); *done once nothing is (its
	 * end records sent).  0 or the stream's error.
	 */
	int (*pc_push)(struct migration *mig, uint64_t budget, bool *done);
	/*
	 * A return-path section during post-copy: -ENOENT if not this
	 * source's type, else serve it (0 or -errno, reason recorded).
	 */
	int (*pc_request)(struct migration *mig, uint8_t type, const uint8_t *p, uint32_t len);
	/*
	 * Resume (source): owe nothing (begin), then take each section the
	 * destination sent before PC_RESUMED (-ENOENT: not this source's).
	 */
	void (*pc_resume_begin)(struct migration *mig);
	/*
	 * Resume (destination, with the return path's lock held): write the
	 * sections saying what this side still lacks; after the lock is
	 * dropped, `pc_resumed` asks again for what the guest waits on.
	 */
	int (*pc_report)(struct mig_incoming *inc, struct mig_stream *s);
	void (*pc_resumed)(struct mig_incoming *inc);
	/*
	 * It may be left owing data when the guest starts at the destination
	 * (RAM: pages are fetched on demand).  Others complete at the switch.
	 */
	bool postcopy;
};

extern const struct mig_source_ops mig_ram_source;
extern const struct mig_source_ops mig_scratch_source;
extern const struct mig_source_ops mig_net_source;
extern const struct mig_source_ops mig_block_source;

/* The source registered as `id`, or NULL (out of range, or none). */
const struct mig_source_ops *mig_source_get(unsigned id);

/* Decide which sources take part and set them up.  0 or -errno. */
int mig_sources_setup(struct migration *mig) __attribute__((warn_unused_result));
void mig_sources_cleanup(struct migration *mig);
/* After READY: every active source's handshake.  0 or -errno. */
int mig_sources_handshake(struct migration *mig) __attribute__((warn_unused_result));
/*
 * Sync every active source; pending[id] gets its bytes still to send (0 for
 * those not taking part).  0 or -errno.
 */
int mig_sources_sync(struct migration *mig, uint64_t pending[MIG_SOURCE_NR])
	__attribute__((warn_unused_result));
/* Peek at every active source (0 where it cannot tell). */
void mig_sources_peek(struct migration *mig, uint64_t pending[MIG_SOURCE_NR]);
/* What the last pass of every active source left for the next (ops->left_over). */
uint64_t mig_sources_left_over(struct migration *mig);
/* One live pass of every active source, in id order.  As ops->iterate. */
int mig_sources_iterate(struct migration *mig, bool resend) __attribute__((warn_unused_result));
/*
 * Stop-and-copy of every active source, after mig_sources_sync(); with
 * `postcopy`, only of those that cannot be left to post-copy, each synced
 * here first.  0, -errno of a sync, or the stream's error.
 */
int mig_sources_complete(struct migration *mig, bool resend, bool postcopy)
	__attribute__((warn_unused_result));

/* Every active source's service op.  0 or the first error. */
int mig_sources_service(struct migration *mig) __attribute__((warn_unused_result));
/* Every active source's release op. */
void mig_sources_release(struct migration *mig);

/* Every active source's pc_switch.  0 or the first error. */
int mig_sources_pc_switch(struct migration *mig) __attribute__((warn_unused_result));
/*
 * One round of every active source's pc_push; *done once all are done.
 * 0 or the first error.
 */
int mig_sources_pc_push(struct migration *mig, uint64_t budget, bool *done)
	__attribute__((warn_unused_result));
/* A return-path section for a source: -ENOENT if none takes its type. */
int mig_sources_pc_request(struct migration *mig, uint8_t type, const uint8_t *p, uint32_t len)
	__attribute__((warn_unused_result));
void mig_sources_pc_resume_begin(struct migration *mig);
/* Destination: every source's pc_report (lock held), then pc_resumed (unlocked). */
int mig_sources_pc_report(struct mig_incoming *inc, struct mig_stream *s)
	__attribute__((warn_unused_result));
void mig_sources_pc_resumed(struct mig_incoming *inc);

/* Destination: every source's `unload`. */
void mig_sources_unload(struct mig_incoming *inc);
/* Destination: every source's `loaded` check.  0 or the first -errno. */
int mig_sources_loaded(struct mig_in_ctx *c) __attribute__((warn_unused_result));

#define MIG_SOURCE_LATE_MAX	(128u << 10)

/* Every active source's late op, then a flush.  0 or the stream's error. */
int mig_sources_late(struct migration *mig) __attribute__((warn_unused_result));
/* Does an active source send after GO (an after_go op)? */
bool mig_sources_have_after_go(const struct migration *mig);
/* Every active source's after_go op, then a flush.  0 or the stream's error. */
int mig_sources_after_go(struct migration *mig) __attribute__((warn_unused_result));

/*
 * Start a SOURCE section for source `id` with `len` payload bytes after
 * the id.  0 or -ENOMEM (also stuck to the stream).
 */
int mig_source_section_begin(struct mig_section_writer *w, struct mig_stream *s,
			     enum mig_source_id id, uint32_t len) __attribute__((warn_unused_result));

/* Publish the bytes a source sent (query-migrate's per-source breakdown). */
void mig_source_account(struct migration *mig, enum mig_source_id id, uint64_t bytes);

#endif
