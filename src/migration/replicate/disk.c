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
_Static_assert(MACHINE_MAX_DISKS <= MIG_EPOCH_DISKS_MAX, "every disk fits an epoch");

/* Chunk c of disk i as one EPOCH_DISK (into the held epoch).  0 or the stream's error. */
static int disk_send_chunk(struct migration *mig, unsigned i, uint64_t c, uint64_t *bytes)
{
	struct mig_block_disk *d = &mig->block->d[i];
	uint8_t *buf = mig->block->buf;
	uint64_t off = c * MIG_BLOCK_CHUNK;
	uint32_t len = d->size - off < MIG_BLOCK_CHUNK ? (uint32_t)(d->size - off) : MIG_BLOCK_CHUNK;
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
	*bytes += len;
	return mig_stream_error(&mig->s);
}

int mig_repl_disk_collect(struct migration *mig, uint64_t *recs, uint64_t *bytes)
{
	struct mig_block *b = mig->block;

	*recs = *bytes = 0;
	if (!b)
		return 0;
	for (unsigned i = 0; i < b->nr; i++) {
		struct mig_block_disk *d = &b->d[i];
		/*
		 * The sync took the guest's writes as 4 KiB ranges (part); an
		 * epoch sends the chunks around them whole, the unit the
		 * standby checks and buffers.
		 */
		mig_block_fold(d);
		for (uint64_t w = 0; w < d->chunks / 64 + 1; w++) {
			while (d->owed[w]) {
				uint64_t c = w * 64 + (uint64_t)__builtin_ctzll(d->owed[w]);
				d->owed[w] &= d->owed[w] - 1;
				if (c >= d->chunks)
					continue;
				int err = disk_send_chunk(mig, i, c, bytes);
				if (err)
					return err;
				(*recs)++;
			}
		}
	}
	return 0;
}
