/*
 * The block source in post-copy, the source side (the destination's is
 * block_lazy.c; docs/migration-stream.md, "Disks"): at the switch, with
 * the guest paused, each disk's owed chunks go to the destination as an
 * OWED bitmap, then LAZY (under --verify with the digest of every chunk
 * the destination already holds); once the guest runs there, a
 * BLOCK_REQ on the return path (its guest waits on that chunk) is served
 * at once, and between requests the rest is pushed; DONE follows each
 * disk's last chunk.  Each chunk goes at most once (unless a resume says
 * it never arrived).  Migration thread only.
 */
#include "migration/block.h"
#include "migration/block_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "migration/live.h"
#include "migration/migration.h"
#include "migration/section.h"
#include "util/hash.h"
#include "util/le.h"
#include "util/log.h"

/* OWED of disk i, chunks [first, first + count): kind, disk, first, count, bitmap. */
static void block_send_owed_map(struct migration *mig, unsigned i, uint64_t first, uint32_t count)
{
	struct mig_block_disk *d = &mig->block->d[i];
	uint32_t words = (count + 63) / 64;
	struct mig_section_writer w;
	uint8_t hdr[BLOCK_REC_HDR] = { MIG_BLOCK_OWED, (uint8_t)i };
	uint32_t len = BLOCK_REC_HDR + 12 + 8 * words;

	if (mig_source_section_begin(&w, &mig->s, MIG_SOURCE_BLOCK, len))
		return;
	mig_section_put(&w, hdr, sizeof(hdr));
	mig_section_put_u64(&w, first);
	mig_section_put_u32(&w, count);
	for (uint32_t k = 0; k < words; k++) {
		uint64_t bits = d->owed[first / 64 + k];
		if (k == words - 1 && count % 64)
			bits &= (1ULL << (count % 64)) - 1;
		mig_section_put_u64(&w, bits);
	}
	mig_section_end(&w);
	mig_source_account(mig, MIG_SOURCE_BLOCK, MIG_SECTION_HDR + 4 + len + 8);
}

/* XXH3-64 of the chunks of disk i that are not owed, in order.  0 or -errno. */
static int block_held_digest(struct migration *mig, unsigned i, uint64_t *out)
{
	struct mig_block_disk *d = &mig->block->d[i];
	XXH3_state_t *st = XXH3_createState();

	if (!st)
		return -ENOMEM;
	XXH3_64bits_reset(st);
	for (uint64_t c = 0; c < d->chunks; c++) {
		if (d->owed[c / 64] & (1ULL << (c % 64)))
			continue;
		uint64_t off = c * MIG_BLOCK_CHUNK;
		uint64_t len = d->size - off < MIG_BLOCK_CHUNK ? d->size - off : MIG_BLOCK_CHUNK;
		int err = mig_block_read(d->fd, mig->block->buf, len, off);
		if (err) {
			XXH3_freeState(st);
			return err;
		}
		XXH3_64bits_update(st, mig->block->buf, len);
	}
	*out = XXH3_64bits_digest(st);
	XXH3_freeState(st);
	return 0;
}

/*
 * The switch (the guest paused, its disks quiesced): what each disk
 * still owes becomes the destination's to fetch.
 */
int mig_block_pc_switch(struct migration *mig)
{
	struct mig_block *b = mig->block;

	b->released = true;	/* mirroring ended before the pause; never again */
	b->lazy = true;
	for (unsigned i = 0; i < b->nr; i++) {
		struct mig_block_disk *d = &b->d[i];
		mig_block_take(d);
		mig_block_fold(d);	/* the destination fetches whole chunks */
		for (uint64_t first = 0; first < d->chunks; first += MIG_BLOCK_OWED_MAX)
			block_send_owed_map(mig, i, first, (uint32_t)(d->chunks - first < MIG_BLOCK_OWED_MAX ?
							      d->chunks - first : MIG_BLOCK_OWED_MAX));
		uint64_t digest = 0;
		uint8_t flag = mig->p.verify;
		if (flag) {
			int err = block_held_digest(mig, i, &digest);
			if (err) {
				mig_stream_fail(&mig->s, err, "cannot read disk %u: %s", i, strerror(-err));
				return err;
			}
		}
		mig_block_send(mig, MIG_BLOCK_LAZY, i, &digest, 1, &flag, 1);
		d->done_sent = false;
		d->cursor = 0;
		pthread_mutex_lock(&mig->lock);
		mig->stats.pc_block_chunks_owed += mig_block_popcount(d->owed, d->chunks);
		pthread_mutex_unlock(&mig->lock);
		pr_info("migration: disk %u: %llu chunks of 64 KiB left for post-copy", i,
			(unsigned long long)mig_block_popcount(d->owed, d->chunks));
	}
	return mig_stream_error(&mig->s);
}

int mig_block_pc_push(struct migration *mig, uint64_t budget, bool *done)
{
	struct mig_block *b = mig->block;

	*done = true;
	for (unsigned i = 0; b && b->lazy && i < b->nr; i++) {
		struct mig_block_disk *d = &b->d[i];
		if (d->done_sent)
			continue;
		int err = mig_block_send_owed(mig, i, budget, false);
		if (err)
			return err;
		if (mig_block_popcount(d->owed, d->chunks)) {
			*done = false;
			return 0;	/* one disk a round: the requests come first */
		}
		uint64_t digest = 0;
		uint8_t flag = 0;	/* verified at LAZY */
		mig_block_send(mig, MIG_BLOCK_DONE, i, &digest, 1, &flag, 1);
		d->done_sent = true;
		pr_info("migration: disk %u: every chunk sent", i);
	}
	return mig_stream_error(&mig->s);
}

/* BLOCK_REQ (disk u8, chunk u64): the destination's guest waits on it. */
static int block_pc_serve(struct migration *mig, const uint8_t *p, uint32_t len)
{
	struct mig_block *b = mig->block;

	if (len != 9 || !b || !b->lazy || p[0] >= b->nr || le_get(p + 1, 8) >= b->d[p[0]].chunks)
		return precopy_fail(mig, -EPROTO, "malformed disk chunk request (%u bytes%s)", len,
				    len == 9 ? ", past the disks" : "");
	struct mig_block_disk *d = &b->d[p[0]];
	uint64_t c = le_get(p + 1, 8);
	if (!(d->owed[c / 64] & (1ULL << (c % 64))))
		return 0;	/* sent already: on its way */
	d->owed[c / 64] &= ~(1ULL << (c % 64));
	int err = mig_block_send_chunk(mig, p[0], c);
	if (!err)
		err = mig_stream_flush(&mig->s);
	if (err)
		return precopy_stream_fail(mig, err);
	pthread_mutex_lock(&mig->lock);
	mig->stats.pc_block_requests++;
	pthread_mutex_unlock(&mig->lock);
	return 0;
}

/*
 * BLOCK_ABSENT (resume: disk u8, first chunk u64, count u32, bitmap):
 * what the destination still lacks is owed again, and the disk's DONE
 * too.  Every byte came from the destination: checked.
 */
static int block_pc_absent(struct migration *mig, const uint8_t *p, uint32_t len)
{
	struct mig_block *b = mig->block;
	struct mig_block_disk *d = b && b->lazy && len >= 13 && p[0] < b->nr ? &b->d[p[0]] : NULL;
	uint64_t first = len >= 13 ? le_get(p + 1, 8) : 0;
	uint32_t count = len >= 13 ? (uint32_t)le_get(p + 9, 4) : 0;

	if (!d || first % 64 || !count || count > MIG_BLOCK_OWED_MAX || first > d->chunks ||
	    count > d->chunks - first || len != 13 + 8 * ((count + 63) / 64))
		return precopy_fail(mig, -EPROTO, "destination answered the resume with a malformed "
				    "list of disk chunks");
	for (uint32_t k = 0; k < (count + 63) / 64; k++) {
		uint64_t bits = le_get(p + 13 + 8 * k, 8);
		if (k == (count - 1) / 64 && count % 64)
			bits &= (1ULL << (count % 64)) - 1;
		d->owed[first / 64 + k] |= bits;
	}
	d->done_sent = false;
	return 0;
}

int mig_block_pc_request(struct migration *mig, uint8_t type, const uint8_t *p, uint32_t len)
{
	if (type == MIG_SEC_BLOCK_REQ)
		return block_pc_serve(mig, p, len);
	if (type == MIG_SEC_BLOCK_ABSENT)
		return block_pc_absent(mig, p, len);
	return -ENOENT;
}

/* Resume: nothing is owed until the destination says what it lacks. */
void mig_block_pc_resume_begin(struct migration *mig)
{
	struct mig_block *b = mig->block;

	for (unsigned i = 0; b && b->lazy && i < b->nr; i++) {
		memset(b->d[i].owed, 0, (b->d[i].chunks / 64 + 1) * 8);
		b->d[i].cursor = 0;
	}
}
