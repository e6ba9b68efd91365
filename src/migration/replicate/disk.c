/* The primary's disk records in an epoch (disk.h). */
#include "migration/replicate/disk.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "migration/block.h"
#include "migration/block_internal.h"
#include "migration/format.h"
#include "migration/migration.h"
#include "migration/replicate/epoch.h"
#include "migration/section.h"
#include "util/le.h"

_Static_assert(MIG_EPOCH_DISK_CHUNK == MIG_BLOCK_CHUNK, "an epoch's disk record is one chunk");
_Static_assert(MIG_EPOCH_DISK_RANGE == MIG_BLOCK_FINE, "an epoch's range is the tracker's");
_Static_assert(MACHINE_MAX_DISKS <= MIG_EPOCH_DISKS_MAX, "every disk fits an epoch");

/*
 * [off, off + len) of disk i (inside one chunk) as one EPOCH_DISK, read
 * now, into the held epoch; zeros as a zero record.  0 or the stream's error.
 */
static int disk_send_range(struct migration *mig, unsigned i, uint64_t off, uint32_t len,
			   struct mig_repl_disk_sum *sum)
{
	struct mig_block_disk *d = &mig->block->d[i];
	uint8_t *buf = mig->block->buf;
	uint8_t hdr[MIG_EPOCH_DISK_HDR];
	struct mig_section_writer w;
	int err = mig_block_read(d->fd, buf, len, off);

	if (err) {
		mig_stream_fail(&mig->s, err, "cannot read disk %u: %s", i, strerror(-err));
		return err;
	}
	bool zero = mig_block_is_zero(buf, len);
	hdr[0] = (uint8_t)i;
	hdr[1] = zero ? MIG_EPOCH_DISK_ZERO : 0;
	le_put(hdr + 2, off, 8);
	le_put(hdr + 10, len, 4);
	if (mig_section_begin(&w, &mig->s, MIG_SEC_EPOCH_DISK, sizeof(hdr) + (zero ? 0 : len)))
		return mig_stream_error(&mig->s) ?: -ENOMEM;
	mig_section_put(&w, hdr, sizeof(hdr));
	if (!zero)
		mig_section_put(&w, buf, len);
	mig_section_end(&w);
	sum->recs++;
	sum->bytes += len;
	return mig_stream_error(&mig->s);
}

/* The bytes of disk d from off to the end of its chunk (the last chunk may be short). */
static uint32_t disk_chunk_len(const struct mig_block_disk *d, uint64_t off)
{
	uint64_t end = (off / MIG_BLOCK_CHUNK + 1) * MIG_BLOCK_CHUNK;

	return (uint32_t)((end < d->size ? end : d->size) - off);
}

/*
 * Chunk c of disk i: whole, or each run of adjacent owed ranges (`bits`,
 * one per MIG_BLOCK_FINE) as one record.  0 or the stream's error.
 */
static int disk_send_chunk(struct migration *mig, unsigned i, uint64_t c, bool whole,
			   uint64_t bits, struct mig_repl_disk_sum *sum)
{
	const struct mig_block_disk *d = &mig->block->d[i];
	uint64_t base = c * MIG_BLOCK_CHUNK;

	sum->chunk_bytes += disk_chunk_len(d, base);
	if (whole)
		return disk_send_range(mig, i, base, disk_chunk_len(d, base), sum);
	while (bits) {
		unsigned s = (unsigned)__builtin_ctzll(bits), e = s;
		while (e < MIG_BLOCK_FINES && (bits & (1ULL << e)))
			e++;
		bits &= ~(((1ULL << (e - s)) - 1) << s);
		uint64_t off = base + (uint64_t)s * MIG_BLOCK_FINE;
		if (off >= d->size)
			break;
		uint32_t len = (e - s) * MIG_BLOCK_FINE, left = disk_chunk_len(d, off);
		int err = disk_send_range(mig, i, off, len < left ? len : left, sum);
		if (err)
			return err;
	}
	return 0;
}

int mig_repl_disk_collect(struct migration *mig, struct mig_repl_disk_sum *sum)
{
	struct mig_block *b = mig->block;

	memset(sum, 0, sizeof(*sum));
	if (!b)
		return 0;
	for (unsigned i = 0; i < b->nr; i++) {
		struct mig_block_disk *d = &b->d[i];
		/* An older standby takes whole chunks only: each one written into goes. */
		if (!mig->epoch_ranges)
			mig_block_fold(d);
		/* A word of part holds four chunks' ranges; owed, a bit per chunk. */
		for (uint64_t w = 0; w < d->fines / 64 + 1; w++) {
			uint64_t c0 = 4 * w;
			if (!d->part[w] && !((d->owed[c0 / 64] >> (c0 % 64)) & 0xf))
				continue;
			for (uint64_t c = c0; c < c0 + 4 && c < d->chunks; c++) {
				bool whole = d->owed[c / 64] & (1ULL << (c % 64));
				uint64_t bits = mig_block_part_bits(d, c);
				if (!whole && !bits)
					continue;
				d->owed[c / 64] &= ~(1ULL << (c % 64));
				mig_block_part_clear(d, c);
				int err = disk_send_chunk(mig, i, c, whole, bits, sum);
				if (err)
					return err;
			}
		}
	}
	return 0;
}
