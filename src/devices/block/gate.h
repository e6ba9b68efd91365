/*
 * A disk's gate: ranges of `gran` bytes whose content is not here yet
 * (the image holds something stale or nothing), for a disk whose guest
 * runs before its copy finished (post-copy).  The device asks before
 * every request: a request that touches an absent range waits (the
 * device parks it), and the gate asks its consumer for each such range
 * once (`want`).  The consumer writes a range into the image, then fills
 * it (block_gate_fill); from then on the device may read and write it,
 * and the consumer must never write it again: a late copy of a range the
 * guest may have written is dropped (fill says so).  Each fill calls
 * `notify` (the device retries what it parked).  Nothing here knows who
 * fills.
 *
 * `lock` guards everything but the callbacks, which are set before the
 * gate closes and called outside the lock: `want` on the device's thread,
 * `notify` on the consumer's.
 */
#ifndef FERRY_DEVICES_BLOCK_GATE_H
#define FERRY_DEVICES_BLOCK_GATE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

enum block_gate_state {
	BLOCK_GATE_OPEN,	/* every range is here */
	BLOCK_GATE_CLOSED,	/* some are absent: requests on them wait */
	BLOCK_GATE_FAILED,	/* the absent ones never come: requests on them fail */
};

struct block_gate {
	pthread_mutex_t lock;
	enum block_gate_state state;
	uint64_t *absent;	/* bit per range: not here yet (NULL while open) */
	uint64_t *asked;	/* bit per range: `want` was called for it */
	uint64_t nbits, gran, nr_absent;
	void (*want)(void *opaque, uint64_t range);
	void *want_opaque;
	void (*notify)(void *opaque);
	void *notify_opaque;
	unsigned asking;	/* calls to `want` under way (finish waits them out) */
	pthread_cond_t idle;	/* asking fell to 0 */
};

void block_gate_init(struct block_gate *g);
/* Free everything; the gate is open again. */
void block_gate_destroy(struct block_gate *g);
/* The device: called (outside the lock) after each fill or state change. */
void block_gate_set_notify(struct block_gate *g, void (*fn)(void *opaque), void *opaque);

/*
 * The consumer: close the gate over a disk of `size` bytes in ranges of
 * `gran` (a power of two), absent[] (one bit per range, (size + gran - 1)
 * / gran bits) naming the ranges not here; `want` is asked for each once.
 * 0 or -errno (-EINVAL: bad geometry, or not open).
 */
int block_gate_close(struct block_gate *g, uint64_t size, uint64_t gran, const uint64_t *absent,
		     void (*want)(void *opaque, uint64_t range), void *opaque)
	__attribute__((warn_unused_result));
/*
 * The consumer wrote range r into the image: it is here now.  Returns
 * true if it was absent (the write counted), false if it was here already
 * (the consumer must not have written it: call block_gate_absent first).
 */
bool block_gate_fill(struct block_gate *g, uint64_t r);
/* Is range r still absent?  (False when open or out of range.) */
bool block_gate_absent(struct block_gate *g, uint64_t r);
/* How many ranges are absent. */
uint64_t block_gate_count(struct block_gate *g);
/*
 * Copy the absent bitmap (the geometry closed with) into out; returns how
 * many are absent.  0 and nothing copied when not closed.
 */
uint64_t block_gate_snapshot(struct block_gate *g, uint64_t *out, uint64_t nbits);
/* Ask `want` again for every range asked and still absent (after a reconnect). */
void block_gate_reask(struct block_gate *g);
/*
 * The consumer is done: open (every range is here; anything still absent
 * is a bug of the consumer and fails instead) or failed (the rest never
 * comes: requests on it fail).  Frees the bitmaps when open.  Returns
 * once no call to `want` is under way: the consumer may free what its
 * `want` uses.
 */
void block_gate_finish(struct block_gate *g, bool failed);

/*
 * The device, before a request on [off, off + len): 1 = go ahead, 0 =
 * wait (some range is absent; `want` was called for those not asked
 * before), -EIO = a range will never come.
 */
int block_gate_check(struct block_gate *g, uint64_t off, uint64_t len);

#endif
