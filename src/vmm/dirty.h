/*
 * Dirty-page tracking of guest RAM: KVM's dirty log with manual protection
 * (KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, bits initially set), plus pages that
 * ferry itself writes through its mapping, which KVM cannot see.
 *
 * Bitmaps are per memory region, one bit per 4 KiB page, in unsigned longs.
 */
#ifndef FERRY_VMM_DIRTY_H
#define FERRY_VMM_DIRTY_H

#include <stdint.h>

#include "vmm/vm.h"

#define DIRTY_BITS_PER_LONG (8 * sizeof(unsigned long))

static inline uint64_t dirty_bitmap_longs(uint64_t pages)
{
	return (pages + DIRTY_BITS_PER_LONG - 1) / DIRTY_BITS_PER_LONG;
}

/*
 * Turn logging on for every region.  Every page starts dirty, so the first
 * sync reports all of RAM.  Returns 0 or -errno.
 */
int vm_dirty_log_start(struct vm *vm) __attribute__((warn_unused_result));
/* Turn logging off (best effort). */
void vm_dirty_log_stop(struct vm *vm);

/*
 * Add the pages of region r dirtied since they were last cleared to
 * `bitmap` (bits already set stay set), including pages ferry wrote.
 * Returns 0 or -errno.
 */
int vm_dirty_log_sync(struct vm *vm, unsigned r, unsigned long *bitmap)
	__attribute__((warn_unused_result));

/*
 * Copy KVM's dirty bits of region r (pages written by the guest since they
 * were last cleared), and the pages ferry wrote since the last sync (its
 * devices: rings, received frames), into `out`, overwriting it; nothing is
 * consumed, so a later vm_dirty_log_sync() still sees them.  Returns the number of dirty
 * pages, or -errno.
 */
int64_t vm_dirty_log_peek(struct vm *vm, unsigned r, unsigned long *out)
	__attribute__((warn_unused_result));

/*
 * Clear the pages [first, first + count) of region r whose bits are set in
 * `bitmap` (bit 0 is page `first`) and write-protect them again, so later
 * writes are seen.  first
 * must be a multiple of 64; count too unless the range ends the region.
 * Call it right before the pages are read for sending.  Returns 0 or -errno.
 */
int vm_dirty_log_clear(struct vm *vm, unsigned r, uint64_t first, uint64_t count,
		       const unsigned long *bitmap) __attribute__((warn_unused_result));

/* Record that ferry wrote [gpa, gpa + len) of guest RAM.  Any thread. */
void vm_mark_dirty(struct vm *vm, uint64_t gpa, uint64_t len);

#endif
