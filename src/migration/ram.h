/*
 * Source side of RAM: sync the dirty log into the job's bitmaps and send
 * the pages they mark as RAM sections (zero pages as markers only).
 */
#ifndef FERRY_MIGRATION_RAM_H
#define FERRY_MIGRATION_RAM_H

#include "migration/migration.h"

/* Allocate bitmaps and the batch buffer.  0 or -ENOMEM. */
int ram_setup(struct migration *mig) __attribute__((warn_unused_result));
void ram_cleanup(struct migration *mig);

/*
 * Fetch the dirty log of every region into the bitmaps.  Returns the
 * number of dirty pages, or -errno.
 */
int64_t ram_sync(struct migration *mig) __attribute__((warn_unused_result));

/*
 * Send every page marked in the bitmaps (but hot ones while mig->hot_skip),
 * clearing each chunk's dirty bits in KVM right before reading it.
 * `resend`: count the pages as re-sent.  Returns 0, -ECANCELED if
 * cancelled, -EAGAIN when post-copy was asked for (or mig->on_chunk said
 * so) mid-pass, or the stream's error.
 */
int ram_send_dirty(struct migration *mig, bool resend) __attribute__((warn_unused_result));

/*
 * Peek at KVM's dirty log into the hot bitmaps (nothing consumed).
 * Returns the number of hot pages, or -errno.
 */
int64_t ram_peek_hot(struct migration *mig) __attribute__((warn_unused_result));

/*
 * Clear KVM's dirty log for all RAM (write-protect everything), so a peek
 * shows what the guest wrote since, and mark every page to be sent in the
 * job's bitmaps (pass 1 sends all RAM).  0 or -errno.
 */
int ram_start_clean(struct migration *mig) __attribute__((warn_unused_result));

/*
 * Post-copy: queue page `index` if its bit is still set (clearing it, so no
 * page goes twice).  The vCPUs are paused: memory no longer changes.
 * Returns true if queued.
 */
bool ram_queue_index(struct migration *mig, uint64_t index);
/* Send the queued batch now.  Returns the stream's error. */
int ram_flush(struct migration *mig) __attribute__((warn_unused_result));

#endif
