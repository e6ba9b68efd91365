/*
 * What the RAM source's files share (ram.c, ram_order_send.c): not for
 * the rest of the engine, which sees RAM through ram.h.  Migration thread
 * only, as struct mig_ram.
 */
#ifndef FERRY_MIGRATION_RAM_INTERNAL_H
#define FERRY_MIGRATION_RAM_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

struct migration;
struct mig_ram;

/* Pages whose dirty bits are cleared in KVM at once: 4 MiB, 16 longs. */
#define RAM_CLEAR_CHUNK 1024

/*
 * ram.c.  Queue page `index` (at gpa, its bytes at src; hole: zero without
 * reading) for the batch being filled; its bit must be cleared already,
 * and its dirty bit in KVM too (before src is read).
 */
void ram_queue_page(struct migration *mig, uint64_t gpa, const uint8_t *src, uint64_t index,
		    bool hole);
/*
 * Send the pages marked in chunk `first` (a multiple of RAM_CLEAR_CHUNK)
 * of region r, but hot ones while ram.hot_skip: their bits are cleared
 * here and in KVM, then they are queued.  0 or -errno.
 */
int ram_send_chunk(struct migration *mig, unsigned r, uint64_t first);
/* Send every queued batch, in order. */
void ram_flush_batch(struct migration *mig);
/*
 * Between two chunks of a pass: 0 to go on, -ECANCELED, -EAGAIN (to
 * post-copy now) or the stream's error.
 */
int ram_between_chunks(struct migration *mig);

/* ram_order_send.c. */
int ram_order_setup(struct migration *mig);
void ram_order_cleanup(struct mig_ram *ram);
/*
 * Sync region r's dirty log into ram.bitmap[r] and, while counting, add
 * the pages rewritten since they were sent to their counts.  0 or -errno.
 */
int ram_order_sync_region(struct migration *mig, unsigned r);

#endif
