/*
 * A disk's dirty-block bitmap: which ranges of `gran` bytes were written
 * since the last look.  The device marks every range a completed write,
 * discard or write-zeroes touched (after it reached the backend, so that
 * whoever reads the range after taking its bit sees the new data); a
 * consumer (live disk migration) starts tracking, takes the bits it owes
 * and stops.  Nothing here knows who asks.
 *
 * Write-blocking (a consumer that must see every write before the guest
 * does, like QEMU's mirror copy-mode=write-blocking): while `blocking`,
 * every mark gets a ticket, the next value of `marked`, and the device
 * holds that write's completion until the consumer acknowledges a ticket
 * at least as large (block_dirty_ack).  The consumer acknowledges ticket
 * T once everything it took at or before the take that returned T has
 * been sent: a write marked with T set its bit before that take, so its
 * range was read (and sent) after the write reached the image.  Turning
 * blocking off, or stopping, acknowledges every ticket; each ack calls
 * `notify` (the device wakes its I/O thread), outside the lock.
 *
 * Beside the bits of `gran` bytes, a tracker whose `gran` is larger than
 * BLOCK_DIRTY_FINE keeps `fine`, a bit per BLOCK_DIRTY_FINE bytes, set and
 * cleared together with `bits`: a consumer that takes both sends what a
 * small write changed, not the whole range around it.
 *
 * `lock` guards everything but notify/notify_opaque (set once by the
 * device before anyone tracks): the disk's I/O thread marks, the
 * consumer's thread starts, takes, acknowledges and stops.
 */
#ifndef FERRY_DEVICES_BLOCK_DIRTY_H
#define FERRY_DEVICES_BLOCK_DIRTY_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define BLOCK_DIRTY_FINE	4096u	/* bytes per fine bit */

struct block_dirty {
	pthread_mutex_t lock;
	uint64_t *bits;		/* NULL: not tracking */
	uint64_t nbits;
	uint64_t gran;		/* bytes per bit, a power of two */
	uint64_t *fine;		/* a bit per BLOCK_DIRTY_FINE bytes; NULL when gran is
				   not larger */
	uint64_t nfine;
	bool blocking;		/* marks wait for an ack (write-blocking) */
	uint64_t marked;	/* the last ticket handed out */
	uint64_t acked;		/* every ticket up to this one may complete */
	void (*notify)(void *opaque);	/* an ack came: tell the device */
	void *notify_opaque;
};

void block_dirty_init(struct block_dirty *d);
void block_dirty_destroy(struct block_dirty *d);
/* Track a disk of `size` bytes in ranges of `gran` (a power of two).  0 or -errno. */
int block_dirty_start(struct block_dirty *d, uint64_t size, uint64_t gran)
	__attribute__((warn_unused_result));
void block_dirty_stop(struct block_dirty *d);
/* Called (outside the lock, on the consumer's thread) after each ack. */
void block_dirty_set_notify(struct block_dirty *d, void (*fn)(void *opaque), void *opaque);
/*
 * Bytes [off, off + len) were written.  Nothing while not tracking.
 * Returns 0 (complete it now) or, while blocking, the write's ticket:
 * complete it once block_dirty_acked() reaches it.
 */
uint64_t block_dirty_mark(struct block_dirty *d, uint64_t off, uint64_t len);
/* The largest ticket that may complete (UINT64_MAX while not blocking). */
uint64_t block_dirty_acked(struct block_dirty *d);
/*
 * Consumer: hold writes until acknowledged (on), or stop holding them and
 * acknowledge every ticket (off).  Tracking must have started for on:
 * -EINVAL otherwise.  0 or -errno.
 */
int block_dirty_set_blocking(struct block_dirty *d, bool on)
	__attribute__((warn_unused_result));
/* Consumer: every write with a ticket up to `ticket` may complete. */
void block_dirty_ack(struct block_dirty *d, uint64_t ticket);
/*
 * As block_dirty_take, and *ticket gets the last ticket handed out before
 * this take: acknowledge it once what was taken (and owed before) is sent.
 */
uint64_t block_dirty_take_ticket(struct block_dirty *d, uint64_t *out, uint64_t nbits,
				 uint64_t *ticket);
/*
 * OR the bits set since the last take into out (nbits bits, the same
 * geometry as started) and clear them.  Returns how many were set.
 */
uint64_t block_dirty_take(struct block_dirty *d, uint64_t *out, uint64_t nbits);
/*
 * As block_dirty_take_ticket, but what is taken goes into `fine` (nfine
 * bits, a bit per BLOCK_DIRTY_FINE bytes) instead of bits of `gran`.
 * -EINVAL (nothing taken) when this tracker keeps no fine bits or the
 * geometry differs; else how many fine bits were set.
 */
int64_t block_dirty_take_fine(struct block_dirty *d, uint64_t *fine, uint64_t nfine,
			      uint64_t *ticket);
/* How many are set now, consuming nothing. */
uint64_t block_dirty_count(struct block_dirty *d);
/* How many bytes the set bits cover now (the fine ones where kept). */
uint64_t block_dirty_bytes(struct block_dirty *d);

#endif
