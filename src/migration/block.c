/*
 * The block source (block.h): each disk in SOURCE sections under
 * MIG_SOURCE_BLOCK.  Payload after the source id: record kind (u8), disk
 * index (u8), then
 *
 *   HELLO  size (u64)                 before any other record of the disk
 *   DATA   offset (u64), the bytes    at most MIG_BLOCK_CHUNK of them
 *   ZERO   offset (u64), length (u64)
 *   DONE   has digest (u8), XXH3-64 of the whole disk (u64)
 *
 * Setup starts dirty tracking, then sends HELLO and one ZERO per hole of
 * the image (SEEK_HOLE), and owes every 64 KiB chunk with data.  A live
 * pass sends at most BLOCK_PASS_MAX of what is owed, so that RAM gets the
 * link between slices; a sync adds what the guest wrote since.  At
 * stop-and-copy (the disks drained by machine_quiesce) it sends the rest,
 * then DONE.  A chunk that reads back as zeros goes as ZERO.
 */
#include "migration/block.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "migration/dest/incoming_internal.h"
#include "migration/live.h"
#include "migration/migration.h"
#include "migration/section.h"
#include "util/hash.h"
#include "util/le.h"

#define BLOCK_PASS_MAX	(32u << 20)	/* bytes of one disk per live pass */
#define BLOCK_REC_HDR	2u		/* kind, disk */
#define BLOCK_WIRE(n)	(MIG_SECTION_HDR + 4 + BLOCK_REC_HDR + (n))

/* One disk being sent.  Migration thread only. */
struct mig_block_disk {
	int fd;				/* the image, read-only, ours */
	uint64_t size;
	uint64_t chunks;
	uint64_t *owed;			/* chunks to send (bit per chunk) */
	uint64_t cursor;		/* where the next live slice starts */
	struct block_dirty *dirty;	/* the device's bitmap */
};

/* The source's state (mig->block).  Migration thread only. */
struct mig_block {
	unsigned nr;
	struct mig_block_disk d[MACHINE_MAX_DISKS];
	uint8_t *buf;			/* one chunk */
};

/* Destination: set before any migration is received (ferry run --copy-storage). */
static bool blk_expect;

/*
 * Destination: one receive's disks (inc->src_state[MIG_SOURCE_BLOCK],
 * made at the first block section, freed by block_unload).  The
 * receiving thread only.
 */
struct mig_block_in {
	int fd[MACHINE_MAX_DISKS];	/* -1: no HELLO yet */
	bool hello[MACHINE_MAX_DISKS];
	bool done[MACHINE_MAX_DISKS];
	uint64_t size[MACHINE_MAX_DISKS];
};

void mig_block_expect(void)
{
	blk_expect = true;
}

int mig_block_check(const struct machine *m, char *why, size_t whylen)
{
	if (!m->nr_disks) {
		snprintf(why, whylen, "copy-storage: this VM has no disk");
		return -EINVAL;
	}
	for (unsigned i = 0; i < m->nr_disks; i++) {
		if (m->disks[i].cfg.kind != BLOCK_KIND_FILE) {
			snprintf(why, whylen, "copy-storage: disk %u is an NBD export (shared "
				 "storage: both hosts reach it; migrate without copy-storage)", i);
			return -EINVAL;
		}
	}
	return 0;
}

static uint64_t block_popcount(const uint64_t *bits, uint64_t nbits)
{
	uint64_t n = 0;

	for (uint64_t w = 0; w < nbits / 64 + 1; w++)
		n += (uint64_t)__builtin_popcountll(bits[w]);
	return n;
}

/* ---- source ------------------------------------------------------------- */

static bool block_active(struct migration *mig)
{
	return mig->p.copy_storage && mig->m->nr_disks;
}

/* One record: kind, disk, then a and b (u64s, `nums` of them), then data. */
static void block_send(struct migration *mig, uint8_t kind, unsigned disk, const uint64_t *nums,
		       unsigned nr_nums, const void *data, uint32_t len)
{
	struct mig_section_writer w;
	uint32_t plen = BLOCK_REC_HDR + 8 * nr_nums + len;
	uint8_t hdr[BLOCK_REC_HDR] = { kind, (uint8_t)disk };

	if (mig_source_section_begin(&w, &mig->s, MIG_SOURCE_BLOCK, plen))
		return;
	mig_section_put(&w, hdr, sizeof(hdr));
	for (unsigned i = 0; i < nr_nums; i++)
		mig_section_put_u64(&w, nums[i]);
	if (len)
		mig_section_put(&w, data, len);
	mig_section_end(&w);
	mig_source_account(mig, MIG_SOURCE_BLOCK, BLOCK_WIRE(8 * nr_nums + len));
}

static int block_read(int fd, uint8_t *buf, uint64_t len, uint64_t off)
{
	uint64_t done = 0;

	while (done < len) {
		ssize_t r = pread(fd, buf + done, len - done, (off_t)(off + done));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0) {	/* shrunk under us: what is gone reads as zeros */
			memset(buf + done, 0, len - done);
			break;
		}
		done += (uint64_t)r;
	}
	return 0;
}

static bool block_is_zero(const uint8_t *p, size_t len)
{
	return !len || (!p[0] && !memcmp(p, p + 1, len - 1));
}

/*
 * HELLO, then a ZERO for every hole; every chunk that holds data is owed.
 * A file system without SEEK_DATA owes all of it.
 */
static void block_first_map(struct migration *mig, unsigned i)
{
	struct mig_block_disk *d = &mig->block->d[i];
	uint64_t off = 0;

	block_send(mig, MIG_BLOCK_HELLO, i, &d->size, 1, NULL, 0);
	while (off < d->size) {
		off_t data = lseek(d->fd, (off_t)off, SEEK_DATA);
		if (data < 0 && errno == ENXIO)
			data = (off_t)d->size;	/* a hole to the end */
		else if (data < 0) {
			memset(d->owed, 0xff, (d->chunks / 64 + 1) * 8);
			return;
		}
		if ((uint64_t)data > off) {
			uint64_t z[2] = { off, (uint64_t)data - off };
			block_send(mig, MIG_BLOCK_ZERO, i, z, 2, NULL, 0);
		}
		if ((uint64_t)data >= d->size)
			break;
		off_t hole = lseek(d->fd, data, SEEK_HOLE);
		uint64_t end = hole < 0 || (uint64_t)hole > d->size ? d->size : (uint64_t)hole;
		for (uint64_t c = (uint64_t)data / MIG_BLOCK_CHUNK; c * MIG_BLOCK_CHUNK < end; c++)
			d->owed[c / 64] |= 1ULL << (c % 64);
		off = end;
	}
}

static void block_cleanup(struct migration *mig)
{
	struct mig_block *b = mig->block;

	if (!b)
		return;
	for (unsigned i = 0; i < b->nr; i++) {
		if (b->d[i].dirty)
			block_dirty_stop(b->d[i].dirty);
		if (b->d[i].fd >= 0)
			close(b->d[i].fd);
		free(b->d[i].owed);
	}
	free(b->buf);
	free(b);
	mig->block = NULL;
}

static int block_setup(struct migration *mig)
{
	struct machine *m = mig->m;
	struct mig_block *b = calloc(1, sizeof(*b));

	if (!b || !(b->buf = malloc(MIG_BLOCK_CHUNK))) {
		free(b);
		return -ENOMEM;
	}
	mig->block = b;
	for (unsigned i = 0; i < m->nr_disks; i++) {
		struct mig_block_disk *d = &b->d[i];
		d->fd = -1;
		b->nr = i + 1;
		d->size = m->disks[i].bk.size;
		d->chunks = (d->size + MIG_BLOCK_CHUNK - 1) / MIG_BLOCK_CHUNK;
		d->owed = calloc(d->chunks / 64 + 1, sizeof(*d->owed));
		if (!d->owed)
			return -ENOMEM;
		d->fd = open(m->disks[i].cfg.path, O_RDONLY | O_CLOEXEC);
		if (d->fd < 0)
			return -errno;
		/* Before the first read: a write from now on is sent again. */
		int err = block_dirty_start(&m->disks[i].dirty, d->size, MIG_BLOCK_CHUNK);
		if (err)
			return err;
		d->dirty = &m->disks[i].dirty;
		block_first_map(mig, i);
	}
	return mig_stream_error(&mig->s);
}

static int64_t block_sync(struct migration *mig)
{
	struct mig_block *b = mig->block;
	uint64_t n = 0;

	for (unsigned i = 0; i < b->nr; i++) {
		struct mig_block_disk *d = &b->d[i];
		block_dirty_take(d->dirty, d->owed, d->chunks);
		n += block_popcount(d->owed, d->chunks);
	}
	return (int64_t)(n * MIG_BLOCK_CHUNK);
}

static int64_t block_peek(struct migration *mig)
{
	struct mig_block *b = mig->block;
	uint64_t n = 0;

	for (unsigned i = 0; i < b->nr; i++)
		n += block_dirty_count(b->d[i].dirty);
	return (int64_t)(n * MIG_BLOCK_CHUNK);
}

/* Send chunk c of disk i: read now, so it is what the guest last wrote. */
static int block_send_chunk(struct migration *mig, unsigned i, uint64_t c)
{
	struct mig_block_disk *d = &mig->block->d[i];
	uint64_t off = c * MIG_BLOCK_CHUNK;
	uint64_t len = d->size - off < MIG_BLOCK_CHUNK ? d->size - off : MIG_BLOCK_CHUNK;
	int err = block_read(d->fd, mig->block->buf, len, off);

	if (err) {
		mig_stream_fail(&mig->s, err, "cannot read disk %u: %s", i, strerror(-err));
		return err;
	}
	if (block_is_zero(mig->block->buf, len)) {
		uint64_t z[2] = { off, len };
		block_send(mig, MIG_BLOCK_ZERO, i, z, 2, NULL, 0);
	} else {
		block_send(mig, MIG_BLOCK_DATA, i, &off, 1, mig->block->buf, (uint32_t)len);
	}
	return mig_stream_error(&mig->s);
}

/* Send up to `budget` bytes of what disk i owes, from its cursor on. */
static int block_send_owed(struct migration *mig, unsigned i, uint64_t budget)
{
	struct mig_block_disk *d = &mig->block->d[i];
	uint64_t sent = 0, start = d->cursor;

	for (uint64_t k = 0; k < d->chunks && sent < budget; k++) {
		uint64_t c = (start + k) % d->chunks;
		if (!(d->owed[c / 64] & (1ULL << (c % 64))))
			continue;
		d->owed[c / 64] &= ~(1ULL << (c % 64));
		int err = block_send_chunk(mig, i, c);
		if (err)
			return err;
		sent += MIG_BLOCK_CHUNK;
		d->cursor = (c + 1) % d->chunks;
	}
	return 0;
}

static bool block_cancelled(struct migration *mig)
{
	pthread_mutex_lock(&mig->lock);
	bool c = mig->req.cancel;
	pthread_mutex_unlock(&mig->lock);
	return c;
}

static int block_iterate(struct migration *mig, bool resend)
{
	for (unsigned i = 0; i < mig->block->nr; i++) {
		if (block_cancelled(mig))
			return -ECANCELED;
		int err = block_send_owed(mig, i, BLOCK_PASS_MAX);
		if (err)
			return err;
	}
	return 0;
}

/* XXH3-64 of a whole image, read from fd.  0 or -errno. */
static int block_digest(int fd, uint64_t size, uint8_t *buf, uint64_t *out)
{
	XXH3_state_t *st = XXH3_createState();

	if (!st)
		return -ENOMEM;
	XXH3_64bits_reset(st);
	for (uint64_t off = 0; off < size; off += MIG_BLOCK_CHUNK) {
		uint64_t len = size - off < MIG_BLOCK_CHUNK ? size - off : MIG_BLOCK_CHUNK;
		int err = block_read(fd, buf, len, off);
		if (err) {
			XXH3_freeState(st);
			return err;
		}
		XXH3_64bits_update(st, buf, len);
	}
	*out = XXH3_64bits_digest(st);
	XXH3_freeState(st);
	return 0;
}

/* Stop-and-copy: the rest of every disk, then its DONE (with its digest under --verify). */
static int block_complete(struct migration *mig, bool resend)
{
	struct mig_block *b = mig->block;

	for (unsigned i = 0; i < b->nr; i++) {
		int err = block_send_owed(mig, i, UINT64_MAX);
		if (err)
			return err;
		uint64_t digest = 0;
		uint8_t flag = mig->p.verify;
		if (flag) {
			err = block_digest(b->d[i].fd, b->d[i].size, b->buf, &digest);
			if (err) {
				mig_stream_fail(&mig->s, err, "cannot read disk %u: %s", i,
						strerror(-err));
				return err;
			}
		}
		block_send(mig, MIG_BLOCK_DONE, i, &digest, 1, &flag, 1);
	}
	return mig_stream_error(&mig->s);
}

/* ---- destination -------------------------------------------------------- */

static bool block_accepted(void)
{
	return blk_expect;
}

static struct mig_block_in *block_in(struct mig_in_ctx *c)
{
	struct mig_block_in *bi = c->inc->src_state[MIG_SOURCE_BLOCK];

	if (bi)
		return bi;
	bi = calloc(1, sizeof(*bi));
	if (!bi)
		return NULL;
	for (unsigned i = 0; i < MACHINE_MAX_DISKS; i++)
		bi->fd[i] = -1;
	c->inc->src_state[MIG_SOURCE_BLOCK] = bi;
	return bi;
}

static void block_unload(struct mig_incoming *inc)
{
	struct mig_block_in *bi = inc->src_state[MIG_SOURCE_BLOCK];

	if (!bi)
		return;
	for (unsigned i = 0; i < MACHINE_MAX_DISKS; i++)
		if (bi->fd[i] >= 0)
			close(bi->fd[i]);
	free(bi);
	inc->src_state[MIG_SOURCE_BLOCK] = NULL;
}

static int block_write(int fd, const uint8_t *p, uint64_t len, uint64_t off)
{
	uint64_t done = 0;

	while (done < len) {
		ssize_t r = pwrite(fd, p + done, len - done, (off_t)(off + done));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : -EIO;
		done += (uint64_t)r;
	}
	return 0;
}

static int block_zero(int fd, uint64_t off, uint64_t len)
{
	static const uint8_t zeros[MIG_BLOCK_CHUNK];

	if (!fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len))
		return 0;
	if (errno != EOPNOTSUPP && errno != EINVAL)
		return -errno;
	while (len) {
		uint64_t n = len < sizeof(zeros) ? len : sizeof(zeros);
		int err = block_write(fd, zeros, n, off);
		if (err)
			return err;
		off += n;
		len -= n;
	}
	return 0;
}

static int block_load_hello(struct mig_in_ctx *c, struct mig_block_in *bi, unsigned i,
			    struct mig_payload *in)
{
	uint8_t le[8];

	if (mig_payload_left(in) != 8 || mig_payload_get(in, le, 8))
		return mig_in_fail(c->inc, -EPROTO, "disk %u: HELLO of %u bytes (want 8)", i,
				   mig_payload_left(in));
	uint64_t size = le_get(le, 8);
	if (bi->hello[i])
		return mig_in_fail(c->inc, -EPROTO, "disk %u: a second HELLO", i);
	const struct virtio_blk *dev = &c->m->disks[i];
	if (dev->cfg.kind != BLOCK_KIND_FILE)
		return mig_in_fail(c->inc, -EINVAL, "disk %u here is an NBD export: copy-storage "
				   "needs an image file (path=)", i);
	if (size != dev->bk.size)
		return mig_in_fail(c->inc, -EINVAL, "disk %u is %llu bytes at the source but %llu "
				   "here: give an image of the same size", i,
				   (unsigned long long)size, (unsigned long long)dev->bk.size);
	int fd = open(dev->cfg.path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return mig_in_fail(c->inc, -errno, "disk %u: cannot open %s: %s", i, dev->cfg.path,
				   strerror(errno));
	bi->fd[i] = fd;
	bi->size[i] = size;
	bi->hello[i] = true;
	return 0;
}

/* An offset and length inside disk i, or the reason they are not. */
static int block_range(struct mig_in_ctx *c, const struct mig_block_in *bi, unsigned i,
		       uint64_t off, uint64_t len)
{
	if (off > bi->size[i] || len > bi->size[i] - off)
		return mig_in_fail(c->inc, -ERANGE, "disk %u: %llu bytes at %llu are past its end "
				   "(%llu bytes)", i, (unsigned long long)len,
				   (unsigned long long)off, (unsigned long long)bi->size[i]);
	return 0;
}

static int block_load_done(struct mig_in_ctx *c, struct mig_block_in *bi, unsigned i,
			   struct mig_payload *in)
{
	uint8_t rec[9];

	if (mig_payload_left(in) != 9 || mig_payload_get(in, rec, 9))
		return mig_in_fail(c->inc, -EPROTO, "disk %u: DONE of %u bytes (want 9)", i,
				   mig_payload_left(in));
	uint64_t want = le_get(rec, 8);
	if (rec[8] > 1)
		return mig_in_fail(c->inc, -EPROTO, "disk %u: DONE's digest flag is %u", i, rec[8]);
	if (fdatasync(bi->fd[i]))
		return mig_in_fail(c->inc, -errno, "disk %u: cannot sync: %s", i, strerror(errno));
	bi->done[i] = true;
	if (!(c->inc->cfg.flags & MIG_FLAG_VERIFY))
		return 0;
	if (!rec[8])
		return mig_in_fail(c->inc, -EPROTO, "disk %u: --verify, but DONE has no digest", i);
	uint8_t *buf = malloc(MIG_BLOCK_CHUNK);
	uint64_t here = 0;
	int err = buf ? block_digest(bi->fd[i], bi->size[i], buf, &here) : -ENOMEM;
	free(buf);
	if (err)
		return mig_in_fail(c->inc, err, "disk %u: cannot read it back: %s", i, strerror(-err));
	if (here != want)
		return mig_in_fail(c->inc, -EIO, "disk %u differs from the source's after the copy "
				   "(digest %016llx here, %016llx there)", i,
				   (unsigned long long)here, (unsigned long long)want);
	return 0;
}

static int block_load(struct mig_in_ctx *c, uint8_t type, struct mig_payload *in)
{
	uint8_t hdr[BLOCK_REC_HDR], le[16];
	int err;

	if (mig_payload_get(in, hdr, sizeof(hdr)))
		return mig_in_fail(c->inc, -EPROTO, "block section cut short");
	unsigned kind = hdr[0], i = hdr[1];
	struct mig_block_in *bi = block_in(c);
	if (!bi)
		return mig_in_fail(c->inc, -ENOMEM, "out of memory");
	if (i >= c->m->nr_disks)
		return mig_in_fail(c->inc, -EPROTO, "blocks for disk %u; this destination has %u "
				   "disk(s)", i, c->m->nr_disks);
	if (kind == MIG_BLOCK_HELLO)
		return block_load_hello(c, bi, i, in);
	if (!bi->hello[i] || bi->done[i])
		return mig_in_fail(c->inc, -EPROTO, "disk %u: record %u %s", i, kind,
				   bi->done[i] ? "after its DONE" : "before its HELLO");
	switch (kind) {
	case MIG_BLOCK_DATA: {
		if (mig_payload_get(in, le, 8))
			return mig_in_fail(c->inc, -EPROTO, "disk %u: DATA cut short", i);
		uint64_t off = le_get(le, 8);
		uint32_t len = mig_payload_left(in);
		if (!len || len > MIG_BLOCK_CHUNK)
			return mig_in_fail(c->inc, -EPROTO, "disk %u: DATA of %u bytes (1..%u)", i,
					   len, MIG_BLOCK_CHUNK);
		err = block_range(c, bi, i, off, len);
		if (err)
			return err;
		const uint8_t *p = mig_payload_ptr(in, len);
		if (!p)
			return mig_in_fail(c->inc, -EPROTO, "disk %u: DATA cut short", i);
		err = block_write(bi->fd[i], p, len, off);
		break;
	}
	case MIG_BLOCK_ZERO: {
		if (mig_payload_left(in) != 16 || mig_payload_get(in, le, 16))
			return mig_in_fail(c->inc, -EPROTO, "disk %u: ZERO of %u bytes (want 16)", i,
					   mig_payload_left(in));
		uint64_t off = le_get(le, 8), len = le_get(le + 8, 8);
		err = block_range(c, bi, i, off, len);
		if (err)
			return err;
		err = len ? block_zero(bi->fd[i], off, len) : 0;
		break;
	}
	case MIG_BLOCK_DONE:
		return block_load_done(c, bi, i, in);
	default:
		return mig_in_fail(c->inc, -EPROTO, "disk %u: unknown block record %u", i, kind);
	}
	if (err)
		return mig_in_fail(c->inc, err, "disk %u: cannot write: %s", i, strerror(-err));
	return 0;
}

/* Before the guest may run here: every disk arrived whole. */
static int block_loaded(struct mig_in_ctx *c)
{
	const struct mig_block_in *bi = c->inc->src_state[MIG_SOURCE_BLOCK];

	if (!blk_expect)
		return 0;
	for (unsigned i = 0; i < c->m->nr_disks; i++)
		if (!bi || !bi->done[i])
			return mig_in_fail(c->inc, -EPROTO, "disk %u was not copied: this destination "
					   "was started to receive its disks (--copy-storage), so the "
					   "source must migrate with --copy-storage", i);
	return 0;
}

const struct mig_source_ops mig_block_source = {
	.name = "block",
	.active = block_active,
	.accepted = block_accepted,
	.setup = block_setup,
	.sync = block_sync,
	.peek = block_peek,
	.iterate = block_iterate,
	.complete = block_complete,
	.load = block_load,
	.loaded = block_loaded,
	.unload = block_unload,
	.cleanup = block_cleanup,
};
