/*
 * The block source in post-copy, the destination side (the source's is
 * block_postcopy.c; docs/migration-stream.md, "Disks"): OWED records
 * gather the chunks this image lacks, LAZY checks (--verify) the digest
 * of those it holds and closes the disk's gate over the rest
 * (devices/block/gate.h) before the guest starts.  The guest's requests
 * on a missing chunk wait in the device, whose gate asks the source for
 * it (BLOCK_REQ on the return path, from the disk's I/O thread).  A
 * chunk that arrives is written only if it is still missing, then
 * filled; one the gate already has (asked and pushed both, or filled
 * before) is dropped, so the guest's own writes are never overwritten.
 */
#include "migration/block.h"
#include "migration/block_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "migration/dest/incoming_internal.h"
#include "migration/section.h"
#include "util/hash.h"
#include "util/le.h"
#include "util/log.h"

static uint64_t lazy_chunks(const struct mig_block_in *bi, unsigned i)
{
	return (bi->size[i] + MIG_BLOCK_CHUNK - 1) / MIG_BLOCK_CHUNK;
}

/* Only in a post-copy, once per disk, after HELLO and before DONE. */
static int lazy_allowed(struct mig_in_ctx *c, struct mig_block_in *bi, unsigned i, const char *rec)
{
	if (!(c->inc->cfg.flags & MIG_FLAG_POSTCOPY))
		return mig_in_fail(c->inc, -EPROTO, "disk %u: %s in a migration that may not go "
				   "to post-copy", i, rec);
	if (bi->lazy[i])
		return mig_in_fail(c->inc, -EPROTO, "disk %u: %s after LAZY", i, rec);
	return 0;
}

/* OWED: first chunk (u64), count (u32), a bit per chunk. */
int mig_block_load_owed(struct mig_in_ctx *c, struct mig_block_in *bi, unsigned i,
			struct mig_payload *in)
{
	uint64_t chunks = lazy_chunks(bi, i);
	uint8_t hdr[12];
	int err = lazy_allowed(c, bi, i, "OWED");

	if (err)
		return err;
	if (mig_payload_get(in, hdr, sizeof(hdr)))
		return mig_in_fail(c->inc, -EPROTO, "disk %u: OWED cut short", i);
	uint64_t first = le_get(hdr, 8);
	uint32_t count = (uint32_t)le_get(hdr + 8, 4), words = (count + 63) / 64;
	if (first != bi->owed_next[i] || first % MIG_BLOCK_OWED_MAX || !count ||
	    count > MIG_BLOCK_OWED_MAX ||
	    count > chunks - first || mig_payload_left(in) != 8 * words)
		return mig_in_fail(c->inc, -EPROTO, "disk %u: malformed OWED (chunks %llu + %u, %u "
				   "bytes of bits; want chunk %llu of %llu)", i,
				   (unsigned long long)first, count, mig_payload_left(in),
				   (unsigned long long)bi->owed_next[i], (unsigned long long)chunks);
	if (!bi->owed[i] && !(bi->owed[i] = calloc(chunks / 64 + 1, 8)))
		return mig_in_fail(c->inc, -ENOMEM, "out of memory");
	/* first is a multiple of MIG_BLOCK_OWED_MAX, so of 64: whole words, inside the bitmap. */
	for (uint32_t k = 0; k < words; k++) {
		uint8_t le[8];
		if (mig_payload_get(in, le, 8))
			return mig_in_fail(c->inc, -EPROTO, "disk %u: OWED cut short", i);
		uint64_t bits = le_get(le, 8);
		if (k == words - 1 && count % 64)
			bits &= (1ULL << (count % 64)) - 1;
		bi->owed[i][first / 64 + k] = bits;
	}
	bi->owed_next[i] = first + count;
	return 0;
}

/* XXH3-64 of the chunks of disk i not owed, in order, from this image.  0 or -errno. */
static int lazy_held_digest(struct mig_block_in *bi, unsigned i, uint64_t *out)
{
	uint64_t chunks = lazy_chunks(bi, i);
	uint8_t *buf = malloc(MIG_BLOCK_CHUNK);
	XXH3_state_t *st = XXH3_createState();
	int err = buf && st ? 0 : -ENOMEM;

	if (!err)
		XXH3_64bits_reset(st);
	for (uint64_t k = 0; k < chunks && !err; k++) {
		if (bi->owed[i][k / 64] & (1ULL << (k % 64)))
			continue;
		uint64_t off = k * MIG_BLOCK_CHUNK;
		uint64_t len = bi->size[i] - off < MIG_BLOCK_CHUNK ? bi->size[i] - off : MIG_BLOCK_CHUNK;
		err = mig_block_read(bi->fd[i], buf, len, off);
		if (!err)
			XXH3_64bits_update(st, buf, len);
	}
	if (!err)
		*out = XXH3_64bits_digest(st);
	if (st)
		XXH3_freeState(st);
	free(buf);
	return err;
}

/* The gate of disk w->disk lacks chunk r: ask the source (a disk's I/O thread). */
static void lazy_want(void *opaque, uint64_t r)
{
	struct mig_block_want *w = opaque;
	uint8_t p[9];

	p[0] = (uint8_t)w->disk;
	le_put(p + 1, r, 8);
	if (pc_dest_reply(&w->inc->pc, MIG_SEC_BLOCK_REQ, p, sizeof(p)))
		pr_debug("post-copy: cannot ask for chunk %llu of disk %u", (unsigned long long)r,
			 w->disk);
}

/* LAZY: digest (u64), has digest (u8).  The OWED bitmap is whole: close the gate. */
int mig_block_load_lazy(struct mig_in_ctx *c, struct mig_block_in *bi, unsigned i,
			struct mig_payload *in)
{
	uint64_t chunks = lazy_chunks(bi, i);
	uint8_t rec[9];
	int err = lazy_allowed(c, bi, i, "LAZY");

	if (err)
		return err;
	if (mig_payload_left(in) != 9 || mig_payload_get(in, rec, 9) || rec[8] > 1)
		return mig_in_fail(c->inc, -EPROTO, "disk %u: malformed LAZY", i);
	if (bi->owed_next[i] != chunks || !bi->owed[i])
		return mig_in_fail(c->inc, -EPROTO, "disk %u: LAZY before OWED covered the disk "
				   "(%llu of %llu chunks)", i, (unsigned long long)bi->owed_next[i],
				   (unsigned long long)chunks);
	if (c->inc->cfg.flags & MIG_FLAG_VERIFY) {
		uint64_t here = 0, want = le_get(rec, 8);
		if (!rec[8])
			return mig_in_fail(c->inc, -EPROTO, "disk %u: --verify, but LAZY has no digest", i);
		err = lazy_held_digest(bi, i, &here);
		if (err)
			return mig_in_fail(c->inc, err, "disk %u: cannot read it back: %s", i,
					   strerror(-err));
		if (here != want)
			return mig_in_fail(c->inc, -EIO, "disk %u differs from the source's at the switch "
					   "(digest of the chunks held here %016llx, there %016llx)", i,
					   (unsigned long long)here, (unsigned long long)want);
	}
	struct virtio_blk *dev = &c->m->disks[i];
	bi->want[i] = (struct mig_block_want){ .inc = c->inc, .disk = i };
	err = block_gate_close(&dev->gate, bi->size[i], MIG_BLOCK_CHUNK, bi->owed[i], lazy_want,
			       &bi->want[i]);
	if (err)
		return mig_in_fail(c->inc, err, "disk %u: cannot hold its guest's requests back: %s",
				   i, strerror(-err));
	free(bi->owed[i]);
	bi->owed[i] = NULL;
	bi->lazy[i] = true;
	return 0;
}

int mig_block_load_lazy_chunk(struct mig_in_ctx *c, struct mig_block_in *bi, unsigned i,
			      uint64_t off, uint64_t len, const uint8_t *data)
{
	struct block_gate *g = &c->m->disks[i].gate;
	uint64_t r = off / MIG_BLOCK_CHUNK;
	uint64_t whole = bi->size[i] - off < MIG_BLOCK_CHUNK ? bi->size[i] - off : MIG_BLOCK_CHUNK;

	if (off % MIG_BLOCK_CHUNK || len != whole)
		return mig_in_fail(c->inc, -EPROTO, "disk %u: %llu bytes at %llu in post-copy: not "
				   "one whole chunk", i, (unsigned long long)len,
				   (unsigned long long)off);
	/*
	 * Here already (filled before, or never missing): the guest may have
	 * written it since.  Only this thread fills, so absent stays absent
	 * until our fill, and the guest does not touch it meanwhile.
	 */
	if (!block_gate_absent(g, r))
		return 0;
	int err = data ? mig_block_write(bi->fd[i], data, len, off) : mig_block_zero(bi->fd[i], off, len);
	if (err)
		return mig_in_fail(c->inc, err, "disk %u: cannot write: %s", i, strerror(-err));
	block_gate_fill(g, r);
	return 0;
}

int mig_block_lazy_done(struct mig_in_ctx *c, struct mig_block_in *bi, unsigned i)
{
	struct block_gate *g = &c->m->disks[i].gate;
	uint64_t missing = block_gate_count(g);

	if (missing)
		return mig_in_fail(c->inc, -EPROTO, "disk %u: DONE, but %llu chunks never arrived", i,
				   (unsigned long long)missing);
	if (fdatasync(bi->fd[i]))
		return mig_in_fail(c->inc, -errno, "disk %u: cannot sync: %s", i, strerror(errno));
	block_gate_finish(g, false);
	bi->done[i] = true;
	return 0;
}

void mig_block_lazy_unload(struct mig_incoming *inc, struct mig_block_in *bi)
{
	for (unsigned i = 0; i < MACHINE_MAX_DISKS && inc->m; i++) {
		if (!bi->lazy[i] || bi->done[i])
			continue;
		/* The rest never comes: what the guest waits on, and asks later, fails. */
		pr_err("post-copy: disk %u: %llu chunks never arrived; the guest's requests on them "
		       "fail", i, (unsigned long long)block_gate_count(&inc->m->disks[i].gate));
		block_gate_finish(&inc->m->disks[i].gate, true);
	}
}

/* Resume, the return path's lock held: BLOCK_ABSENT for every disk still lacking chunks. */
int mig_block_pc_report(struct mig_incoming *inc, struct mig_stream *s)
{
	struct mig_block_in *bi = inc->src_state[MIG_SOURCE_BLOCK];

	for (unsigned i = 0; bi && i < MACHINE_MAX_DISKS; i++) {
		if (!bi->lazy[i] || bi->done[i])
			continue;
		uint64_t chunks = lazy_chunks(bi, i);
		uint64_t *bits = calloc(chunks / 64 + 1, 8);
		uint8_t *p = malloc(13 + MIG_BLOCK_OWED_MAX / 8);
		if (!bits || !p) {
			free(bits);
			free(p);
			return -ENOMEM;
		}
		block_gate_snapshot(&inc->m->disks[i].gate, bits, chunks);
		for (uint64_t first = 0; first < chunks; first += MIG_BLOCK_OWED_MAX) {
			uint32_t n = (uint32_t)(chunks - first < MIG_BLOCK_OWED_MAX ? chunks - first
										 : MIG_BLOCK_OWED_MAX);
			p[0] = (uint8_t)i;
			le_put(p + 1, first, 8);
			le_put(p + 9, n, 4);
			for (uint32_t k = 0; k < (n + 63) / 64; k++)
				le_put(p + 13 + 8 * k, bits[first / 64 + k], 8);
			mig_section_write(s, MIG_SEC_BLOCK_ABSENT, p, 13 + 8 * ((n + 63) / 64));
		}
		free(bits);
		free(p);
	}
	return mig_stream_error(s);
}

/* Resumed (the lock dropped): ask again for every chunk the guest waits on. */
void mig_block_pc_resumed(struct mig_incoming *inc)
{
	struct mig_block_in *bi = inc->src_state[MIG_SOURCE_BLOCK];

	for (unsigned i = 0; bi && i < MACHINE_MAX_DISKS; i++)
		if (bi->lazy[i] && !bi->done[i])
			block_gate_reask(&inc->m->disks[i].gate);
}
