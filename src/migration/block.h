/*
 * Live disk migration (--copy-storage): every disk of the VM is a
 * live-iterable source (block.c).  The source reads its image through a
 * file descriptor of its own and follows the guest's writes through the
 * disk's dirty-block bitmap (devices/block/dirty.h); the destination
 * writes the blocks into its own image, which it opened and locked itself.
 */
#ifndef FERRY_MIGRATION_BLOCK_H
#define FERRY_MIGRATION_BLOCK_H

#include <stdbool.h>
#include <stddef.h>

#include "board/machine.h"
#include "migration/codec/codec.h"

#define MIG_BLOCK_CHUNK		(64u << 10)	/* the unit of dirty tracking and of DATA */

/* Records of the block source (docs/migration-stream.md, "Disks"). */
enum mig_block_rec {
	MIG_BLOCK_HELLO = 0,	/* disk, size: the copy of this disk begins */
	MIG_BLOCK_DATA = 1,	/* disk, offset, bytes */
	MIG_BLOCK_ZERO = 2,	/* disk, offset, length: all zero */
	MIG_BLOCK_DONE = 3,	/* disk, digest flag, digest: nothing more for it */
	MIG_BLOCK_SUMS_REQ = 4,	/* disk: answer with BLOCK_SUMS (incremental) */
	MIG_BLOCK_OWED = 5,	/* disk, first chunk, count, bitmap: post-copy, not there yet */
	MIG_BLOCK_LAZY = 6,	/* disk, digest, has digest: the rest comes on demand */
	MIG_BLOCK_DATA_Z = 7,	/* disk, offset, codec, length, encoded bytes (block_codec.c) */
};

/*
 * CONFIG's codec set, bit 28 (not a codec, like MIG_CAP_BASE): the source
 * can send DATA_Z, block data encoded with its --compress codec (lz4 or
 * zstd).  A destination that takes them answers READY with the bit set;
 * an older one masks it off and gets DATA only.
 */
#define MIG_CAP_BLOCK_Z		(1u << 28)

/*
 * The codec block data goes through under --compress `mode`: lz4 for lz4
 * and adaptive, zstd for zstd, MIG_CODEC_RAW (none: DATA) for none and
 * delta (a delta against what the destination holds needs a cache of the
 * disk; delta's own fallback, raw, is what blocks get).
 */
uint8_t mig_block_z_codec(enum mig_compress mode);

/* Chunks in one OWED record or BLOCK_ABSENT section, at most. */
#define MIG_BLOCK_OWED_MAX	(1u << 20)

/* Chunk digests in one BLOCK_SUMS section (return path), at most. */
#define MIG_BLOCK_SUMS_MAX	8192u

/*
 * Source, copy-storage=incremental: one BLOCK_SUMS payload from the
 * destination (disk u8, first chunk u64, count u32, count x u64 XXH3) for
 * disk `disk` of `chunks` 64 KiB chunks, expected to start at *next: set
 * the bit in owed (a bit per chunk) of each chunk whose digest differs from
 * ours[c], count them in *differ, advance *next.  Every byte is the
 * destination's: a wrong disk, a gap, a count past the disk or a length
 * that does not match is -EPROTO with the reason in why.
 */
int mig_block_sums_apply(const uint8_t *buf, uint32_t len, unsigned disk, uint64_t chunks,
			 const uint64_t *ours, uint64_t *owed, uint64_t *next, uint64_t *differ,
			 char *why, size_t whylen) __attribute__((warn_unused_result));

/*
 * Destination: this process was started to receive its disks' contents
 * (ferry run --incoming --copy-storage).  Without it, block sections are
 * refused; with it, a migration that did not copy every disk is.
 */
void mig_block_expect(void);

/*
 * Source: can m's disks be copied?  Every disk must be a file (an NBD
 * export is shared storage: nothing to copy).  0 or -errno with why.
 */
int mig_block_check(const struct machine *m, char *why, size_t whylen)
	__attribute__((warn_unused_result));

#endif
