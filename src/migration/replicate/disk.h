/*
 * The primary's disks in an epoch (docs/replication.md, "Disks"): with
 * copy-storage, the block source (migration/block.c) copies every disk
 * in the initial checkpoint and keeps tracking the guest's writes, in
 * 4 KiB ranges; each epoch then carries, as EPOCH_DISK sections, what
 * was written since the last checkpoint, read while the guest is paused
 * and its disks drained, so they are the disks at the checkpoint's
 * instant.  With a standby that agreed to MIG_CAP_EPOCH_RANGES
 * (mig->epoch_ranges) a record is one run of written 4 KiB ranges inside
 * a chunk; with an older one, every chunk written into goes whole.
 */
#ifndef FERRY_MIGRATION_REPLICATE_DISK_H
#define FERRY_MIGRATION_REPLICATE_DISK_H

#include <stdint.h>

struct migration;

/* What one epoch's disk records came to. */
struct mig_repl_disk_sum {
	uint64_t recs;		/* EPOCH_DISK sections written */
	uint64_t bytes;		/* the disk bytes they cover (written or zeroed) */
	uint64_t chunk_bytes;	/* what whole chunks around the same writes would cover */
};

/*
 * Migration thread, the guest paused, machine_quiesce done and the block
 * source synced (its dirty bits taken into what it owes, whole chunks
 * and 4 KiB ranges): write an EPOCH_DISK section for every chunk owed
 * whole and, with mig->epoch_ranges, for every run of owed ranges in the
 * other chunks (without, for every chunk holding one), and owe nothing.
 * 0 or the stream's error (a read failure is set on the stream too).
 */
int mig_repl_disk_collect(struct migration *mig, struct mig_repl_disk_sum *sum)
	__attribute__((warn_unused_result));

#endif
