/*
 * The primary's disks in an epoch (docs/replication.md, "Disks"): with
 * copy-storage, the block source (migration/block.c) copies every disk
 * in the initial checkpoint and keeps tracking the guest's writes; each
 * epoch then carries, as EPOCH_DISK sections, the chunks written since
 * the last checkpoint, read while the guest is paused and its disks
 * drained, so they are the disks at the checkpoint's instant.
 */
#ifndef FERRY_MIGRATION_REPLICATE_DISK_H
#define FERRY_MIGRATION_REPLICATE_DISK_H

#include <stdint.h>

struct migration;

/*
 * Migration thread, the guest paused, machine_quiesce done and the block
 * source synced (its dirty bits taken into what it owes, whole chunks
 * and 4 KiB ranges): write an EPOCH_DISK section for every chunk owed or
 * holding an owed range, and owe nothing.  *recs gets
 * the sections written, *bytes the bytes they cover.  0 or the stream's
 * error (a read failure is set on the stream too).
 */
int mig_repl_disk_collect(struct migration *mig, uint64_t *recs, uint64_t *bytes)
	__attribute__((warn_unused_result));

#endif
