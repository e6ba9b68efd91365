/*
 * The block source on the destination (block.h, the records in block.c):
 * each disk's records written into this side's own image, every byte
 * checked first.
 */
#include "migration/block.h"
#include "migration/block_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "migration/dest/incoming_internal.h"
#include "migration/section.h"
#include "util/hash.h"
#include "util/le.h"
#include "util/log.h"

/* Destination: set before any migration is received (ferry run --copy-storage). */
static bool blk_expect;

void mig_block_expect(void)
{
	blk_expect = true;
}

bool mig_block_accepted(void)
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
		bi->fd[i] = bi->sync_fd[i] = -1;
	pthread_mutex_init(&bi->sync_lock, NULL);
	pthread_cond_init(&bi->sync_cond, NULL);
	c->inc->src_state[MIG_SOURCE_BLOCK] = bi;
	return bi;
}

static void block_syncer_stop(struct mig_block_in *bi);

void mig_block_unload(struct mig_incoming *inc)
{
	struct mig_block_in *bi = inc->src_state[MIG_SOURCE_BLOCK];

	if (!bi)
		return;
	block_syncer_stop(bi);
	mig_block_lazy_unload(inc, bi);
	for (unsigned i = 0; i < MACHINE_MAX_DISKS; i++) {
		/*
		 * The receive failed half-way: this image mixes the source's
		 * blocks with what it held before.  Say so; the guest never ran
		 * on it, and a later migration copies it whole again (or, with
		 * copy-storage=incremental, compares every range anyway).
		 */
		if (bi->hello[i] && !bi->done[i])
			pr_warn("incoming: disk %u: the copy did not finish; its image holds a partial "
				"copy of the source's disk and is not a valid image of the guest", i);
		if (bi->fd[i] >= 0)
			close(bi->fd[i]);
		free(bi->owed[i]);
	}
	mig_block_z_fini(&bi->z);
	pthread_mutex_destroy(&bi->sync_lock);
	pthread_cond_destroy(&bi->sync_cond);
	free(bi);
	inc->src_state[MIG_SOURCE_BLOCK] = NULL;
}

int mig_block_write(int fd, const uint8_t *p, uint64_t len, uint64_t off)
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

int mig_block_zero(int fd, uint64_t off, uint64_t len)
{
	static const uint8_t zeros[MIG_BLOCK_CHUNK];

	if (!fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len))
		return 0;
	if (errno != EOPNOTSUPP && errno != EINVAL)
		return -errno;
	while (len) {
		uint64_t n = len < sizeof(zeros) ? len : sizeof(zeros);
		int err = mig_block_write(fd, zeros, n, off);
		if (err)
			return err;
		off += n;
		len -= n;
	}
	return 0;
}

/*
 * Make the images durable while the copy goes on.  Left to itself the
 * kernel keeps a whole disk dirty in the page cache (its background
 * threshold is a share of RAM), and its new extents unjournaled, so DONE's
 * fdatasync, which runs while the guest is paused, would write all of it:
 * a second of downtime for a 2 GiB copy.  In this thread, so that
 * receiving never waits for the disk.
 */
#define MIG_BLOCK_WRITEBACK	(32u << 20)

static void *block_syncer(void *arg)
{
	struct mig_block_in *bi = arg;
	int fds[MACHINE_MAX_DISKS];

	pthread_setname_np(pthread_self(), "disksync");
	pthread_mutex_lock(&bi->sync_lock);
	for (;;) {
		while (!bi->sync_want && !bi->sync_stop)
			pthread_cond_wait(&bi->sync_cond, &bi->sync_lock);
		if (bi->sync_stop)
			break;
		bi->sync_want = false;
		memcpy(fds, bi->sync_fd, sizeof(fds));
		pthread_mutex_unlock(&bi->sync_lock);
		/* Only ahead of time: DONE's fdatasync is what the copy relies on. */
		for (unsigned i = 0; i < MACHINE_MAX_DISKS; i++)
			if (fds[i] >= 0 && fdatasync(fds[i]))
				pr_debug("incoming: disk %u: fdatasync: %s", i, strerror(errno));
		pthread_mutex_lock(&bi->sync_lock);
	}
	pthread_mutex_unlock(&bi->sync_lock);
	return NULL;
}

static void block_load_written(struct mig_block_in *bi, uint64_t len)
{
	bi->unsynced += len;
	if (bi->unsynced < MIG_BLOCK_WRITEBACK)
		return;
	bi->unsynced = 0;
	pthread_mutex_lock(&bi->sync_lock);
	if (!bi->syncer_on)
		bi->syncer_on = !pthread_create(&bi->syncer, NULL, block_syncer, bi);
	bi->sync_want = true;
	pthread_cond_signal(&bi->sync_cond);
	pthread_mutex_unlock(&bi->sync_lock);
}

static void block_syncer_stop(struct mig_block_in *bi)
{
	pthread_mutex_lock(&bi->sync_lock);
	bool on = bi->syncer_on;
	bi->sync_stop = true;
	pthread_cond_signal(&bi->sync_cond);
	pthread_mutex_unlock(&bi->sync_lock);
	if (on)
		pthread_join(bi->syncer, NULL);
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
	pthread_mutex_lock(&bi->sync_lock);
	bi->sync_fd[i] = fd;
	pthread_mutex_unlock(&bi->sync_lock);
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
	if (bi->lazy[i])
		return mig_block_lazy_done(c, bi, i);	/* verified at LAZY */
	pthread_mutex_lock(&bi->sync_lock);
	bi->sync_fd[i] = -1;			/* ours from here */
	pthread_mutex_unlock(&bi->sync_lock);
	if (fdatasync(bi->fd[i]))
		return mig_in_fail(c->inc, -errno, "disk %u: cannot sync: %s", i, strerror(errno));
	bi->done[i] = true;
	if (!(c->inc->cfg.flags & MIG_FLAG_VERIFY))
		return 0;
	if (!rec[8])
		return mig_in_fail(c->inc, -EPROTO, "disk %u: --verify, but DONE has no digest", i);
	uint8_t *buf = malloc(MIG_BLOCK_CHUNK);
	uint64_t here = 0;
	int err = buf ? mig_block_digest(bi->fd[i], bi->size[i], buf, &here) : -ENOMEM;
	free(buf);
	if (err)
		return mig_in_fail(c->inc, err, "disk %u: cannot read it back: %s", i, strerror(-err));
	if (here != want)
		return mig_in_fail(c->inc, -EIO, "disk %u differs from the source's after the copy "
				   "(digest %016llx here, %016llx there)", i,
				   (unsigned long long)here, (unsigned long long)want);
	return 0;
}

/* SUMS_REQ: a digest of every chunk of disk i, on the return path. */
static int block_load_sums_req(struct mig_in_ctx *c, struct mig_block_in *bi, unsigned i,
			       struct mig_payload *in)
{
	struct mig_stream *s = &c->inc->s;

	if (mig_payload_left(in))
		return mig_in_fail(c->inc, -EPROTO, "disk %u: SUMS_REQ carries %u bytes", i,
				   mig_payload_left(in));
	if (bi->summed[i])
		return mig_in_fail(c->inc, -EPROTO, "disk %u: a second SUMS_REQ", i);
	if (!mig_stream_has_return_path(s))
		return mig_in_fail(c->inc, -EPROTO, "disk %u: digests asked for over a stream "
				   "with no way back", i);
	bi->summed[i] = true;
	uint64_t chunks = (bi->size[i] + MIG_BLOCK_CHUNK - 1) / MIG_BLOCK_CHUNK;
	uint8_t *buf = malloc(MIG_BLOCK_CHUNK), *out = malloc(13 + 8 * MIG_BLOCK_SUMS_MAX);
	int err = buf && out ? 0 : -ENOMEM;
	for (uint64_t first = 0; first < chunks && !err; first += MIG_BLOCK_SUMS_MAX) {
		uint32_t count = chunks - first < MIG_BLOCK_SUMS_MAX ? (uint32_t)(chunks - first)
								    : MIG_BLOCK_SUMS_MAX;
		out[0] = (uint8_t)i;
		le_put(out + 1, first, 8);
		le_put(out + 9, count, 4);
		for (uint32_t k = 0; k < count && !err; k++) {
			uint64_t off = (first + k) * MIG_BLOCK_CHUNK;
			uint64_t len = bi->size[i] - off < MIG_BLOCK_CHUNK ? bi->size[i] - off
									: MIG_BLOCK_CHUNK;
			err = mig_block_read(bi->fd[i], buf, len, off);
			le_put(out + 13 + 8 * k, XXH3_64bits(buf, len), 8);
		}
		if (err) {
			mig_in_fail(c->inc, err, "disk %u: cannot read it: %s", i, strerror(-err));
			break;
		}
		mig_section_write(s, MIG_SEC_BLOCK_SUMS, out, 13 + 8 * count);
		if (mig_stream_flush(s)) {
			c->inc->reply_broken = true;
			err = mig_in_fail(c->inc, mig_stream_error(s), "cannot answer the source: %s",
					  mig_stream_why(s));
		}
	}
	if (!buf || !out)
		mig_in_fail(c->inc, err, "out of memory");
	free(buf);
	free(out);
	return err;
}

/* len bytes (checked: inside the disk, at most a chunk) at off of disk i. */
static int block_load_data(struct mig_in_ctx *c, struct mig_block_in *bi, unsigned i,
			   uint64_t off, uint32_t len, const uint8_t *p)
{
	if (bi->lazy[i])
		return mig_block_load_lazy_chunk(c, bi, i, off, len, p);
	if (bi->owed[i])
		return mig_in_fail(c->inc, -EPROTO, "disk %u: DATA between OWED and LAZY", i);
	int err = mig_block_write(bi->fd[i], p, len, off);
	if (err)
		return mig_in_fail(c->inc, err, "disk %u: cannot write: %s", i, strerror(-err));
	block_load_written(bi, len);
	return 0;
}

/*
 * DATA_Z (block_codec.c): only where READY agreed to it; the header is
 * checked (codec, length, range) before a byte is decoded, and the bytes
 * must decode to exactly the length it says.
 */
static int block_load_data_z(struct mig_in_ctx *c, struct mig_block_in *bi, unsigned i,
			     struct mig_payload *in)
{
	struct mig_block_z_rec r;
	char why[96];
	uint32_t n = mig_payload_left(in);
	const uint8_t *p = mig_payload_ptr(in, n);

	if (!c->inc->block_z)
		return mig_in_fail(c->inc, -EPROTO, "disk %u: DATA_Z, which READY did not agree to",
				   i);
	if (!p || mig_block_z_parse(p, n, &r, why, sizeof(why)))
		return mig_in_fail(c->inc, -EPROTO, "disk %u: %s", i,
				   p ? why : "DATA_Z cut short");
	/* Only a codec the source offered in CONFIG and this side accepted. */
	if (!(c->inc->codecs & MIG_CODEC_BIT(r.codec)))
		return mig_in_fail(c->inc, -EPROTO, "disk %u: DATA_Z in %s, which was not agreed",
				   i, mig_codec_get(r.codec)->name);
	int err = block_range(c, bi, i, r.off, r.len);
	if (err)
		return err;
	if (!bi->z.buf && !(bi->z.buf = malloc(MIG_BLOCK_CHUNK)))
		return mig_in_fail(c->inc, -ENOMEM, "out of memory");
	err = mig_block_z_decode(&bi->z, &r, bi->z.buf);
	if (err)
		return mig_in_fail(c->inc, err, "disk %u: DATA_Z of %u bytes at %llu does not "
				   "decode (%s, %u bytes)", i, r.len, (unsigned long long)r.off,
				   mig_codec_get(r.codec)->name, r.plen);
	return block_load_data(c, bi, i, r.off, r.len, bi->z.buf);
}

int mig_block_load(struct mig_in_ctx *c, uint8_t type, struct mig_payload *in)
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
		return block_load_data(c, bi, i, off, len, p);
	}
	case MIG_BLOCK_DATA_Z:
		return block_load_data_z(c, bi, i, in);
	case MIG_BLOCK_ZERO: {
		if (mig_payload_left(in) != 16 || mig_payload_get(in, le, 16))
			return mig_in_fail(c->inc, -EPROTO, "disk %u: ZERO of %u bytes (want 16)", i,
					   mig_payload_left(in));
		uint64_t off = le_get(le, 8), len = le_get(le + 8, 8);
		err = block_range(c, bi, i, off, len);
		if (err)
			return err;
		if (bi->lazy[i])
			return mig_block_load_lazy_chunk(c, bi, i, off, len, NULL);
		if (bi->owed[i])
			return mig_in_fail(c->inc, -EPROTO, "disk %u: ZERO between OWED and LAZY", i);
		err = len ? mig_block_zero(bi->fd[i], off, len) : 0;
		break;
	}
	case MIG_BLOCK_DONE:
		return block_load_done(c, bi, i, in);
	case MIG_BLOCK_SUMS_REQ:
		return block_load_sums_req(c, bi, i, in);
	case MIG_BLOCK_OWED:
		return mig_block_load_owed(c, bi, i, in);
	case MIG_BLOCK_LAZY:
		return mig_block_load_lazy(c, bi, i, in);
	default:
		return mig_in_fail(c->inc, -EPROTO, "disk %u: unknown block record %u", i, kind);
	}
	if (err)
		return mig_in_fail(c->inc, err, "disk %u: cannot write: %s", i, strerror(-err));
	return 0;
}

/*
 * Before the guest may run here: every disk arrived whole, or (at
 * POSTCOPY_RUN) its gate is closed over what is still to come.  At
 * POSTCOPY_DONE: every disk is whole.
 */
int mig_block_loaded(struct mig_in_ctx *c)
{
	const struct mig_block_in *bi = c->inc->src_state[MIG_SOURCE_BLOCK];
	bool run = c->type == MIG_SEC_POSTCOPY_RUN;

	if (!blk_expect)
		return 0;
	for (unsigned i = 0; i < c->m->nr_disks; i++) {
		if (bi && run && bi->lazy[i])
			continue;
		if (bi && bi->hello[i] && !bi->done[i] && c->type == MIG_SEC_POSTCOPY_DONE)
			return mig_in_fail(c->inc, -EPROTO, "disk %u: post-copy is done but its copy "
					   "is not (no DONE)", i);
		if (!bi || !bi->done[i])
			return mig_in_fail(c->inc, -EPROTO, "disk %u was not copied: this destination "
					   "was started to receive its disks (--copy-storage), so the "
					   "source must migrate with --copy-storage", i);
	}
	return 0;
}
