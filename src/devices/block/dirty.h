/*
 * A disk's dirty-block bitmap: which ranges of `gran` bytes were written
 * since the last look.  The device marks every range a completed write,
 * discard or write-zeroes touched (after it reached the backend, so that
 * whoever reads the range after taking its bit sees the new data); a
 * consumer (live disk migration) starts tracking, takes the bits it owes
 * and stops.  Nothing here knows who asks.
 *
 * `lock` guards everything: the disk's I/O thread marks, the consumer's
 * thread starts, takes and stops.
 */
#ifndef FERRY_DEVICES_BLOCK_DIRTY_H
#define FERRY_DEVICES_BLOCK_DIRTY_H

#include <pthread.h>
#include <stdint.h>

struct block_dirty {
	pthread_mutex_t lock;
	uint64_t *bits;		/* NULL: not tracking */
	uint64_t nbits;
	uint64_t gran;		/* bytes per bit, a power of two */
};

void block_dirty_init(struct block_dirty *d);
void block_dirty_destroy(struct block_dirty *d);
/* Track a disk of `size` bytes in ranges of `gran` (a power of two).  0 or -errno. */
int block_dirty_start(struct block_dirty *d, uint64_t size, uint64_t gran)
	__attribute__((warn_unused_result));
void block_dirty_stop(struct block_dirty *d);
/* Bytes [off, off + len) were written.  Nothing while not tracking. */
void block_dirty_mark(struct block_dirty *d, uint64_t off, uint64_t len);
/*
 * OR the bits set since the last take into out (nbits bits, the same
 * geometry as started) and clear them.  Returns how many were set.
 */
uint64_t block_dirty_take(struct block_dirty *d, uint64_t *out, uint64_t nbits);
/* How many are set now, consuming nothing. */
uint64_t block_dirty_count(struct block_dirty *d);

#endif
