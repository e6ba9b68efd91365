/*
 * virtio-blk requests: parsed from a checked chain, refused with a status
 * when the guest asks for something wrong, run on the backend, completed
 * on the used ring.  The I/O thread, lifecycle and migration hooks are in
 * blk_dev.c.
 */
#include "devices/virtio/blk.h"
#include "devices/virtio/blk_internal.h"

#include <errno.h>
#include <string.h>

#include "util/le.h"

#define VIRTIO_BLK_HDR_LEN	16
#define VIRTIO_BLK_SEG_LEN	16
#define VIRTIO_BLK_SECTOR	512ULL

/*
 * Describe `len` bytes starting `skip` bytes into bufs[0..n) as iovecs.
 * Returns the number of iovecs (at most n).
 */
static unsigned blk_iov(const struct virtq_buf *bufs, unsigned n, uint64_t skip, uint64_t len,
			struct iovec *iov)
{
	unsigned k = 0;

	for (unsigned i = 0; i < n && len; i++) {
		if (skip >= bufs[i].len) {
			skip -= bufs[i].len;
			continue;
		}
		uint64_t take = bufs[i].len - skip;
		take = take < len ? take : len;
		iov[k++] = (struct iovec){ .iov_base = bufs[i].host + skip, .iov_len = (size_t)take };
		len -= take;
		skip = 0;
	}
	return k;
}

/* Copy `len` bytes at `skip` into the device-readable part of a chain. */
static void blk_gather(const struct virtq_chain *c, uint64_t skip, void *dst, size_t len)
{
	struct iovec iov[VIRTQ_MAX_CHAIN];
	unsigned n = blk_iov(c->bufs, c->nr_read, skip, len, iov);
	uint8_t *d = dst;

	for (unsigned i = 0; i < n; d += iov[i].iov_len, i++)
		memcpy(d, iov[i].iov_base, iov[i].iov_len);
}

/* Report what ferry wrote into the chain's writable buffers (up to `len` bytes). */
static void blk_dirty_written(struct virtio_blk *b, const struct virtq_chain *c, uint64_t len)
{
	const struct virtq_mem *m = &b->t.mem;

	for (unsigned i = c->nr_read; i < c->nr && len && m->dirty; i++) {
		uint64_t n = c->bufs[i].len < len ? c->bufs[i].len : len;
		m->dirty(m->opaque, c->bufs[i].gpa, n);
		len -= n;
	}
}

/*
 * Finish a request: status byte, used ring, interrupt if the driver wants
 * one.  `written`: data bytes put in the guest's buffers (status excluded).
 */
void virtio_blk_complete(struct virtio_blk *b, struct virtio_blk_req *r, uint8_t status,
			 uint64_t written)
{
	struct virtio_mmio *t = &b->t;
	struct virtq *q = &t->queues[0];

	/* Written into guest RAM either way: migration must send it again. */
	blk_dirty_written(b, &r->chain, written);
	pthread_mutex_lock(&t->lock);
	if (virtio_blk_orphan(b, r)) {
		/* The driver reset the device meanwhile: the chain is not ours any more. */
		virtio_blk_put_req(b, r);
		pthread_mutex_unlock(&t->lock);
		return;
	}
	*r->status = status;
	if (t->mem.dirty)
		t->mem.dirty(t->mem.opaque, r->status_gpa, 1);
	if (virtq_push(q, &t->mem, r->chain.head, (uint32_t)(written + 1)) == 0 &&
	    virtq_should_notify(q))
		virtio_mmio_interrupt(t, VIRTIO_MMIO_INT_VRING);
	virtio_blk_put_req(b, r);
	pthread_mutex_unlock(&t->lock);
}

static bool blk_range_ok(const struct virtio_blk *b, uint64_t sector, uint64_t sectors)
{
	return sector <= b->capacity && sectors <= b->capacity - sector;
}

/* READ or WRITE: checks, then the backend. */
static void blk_rw(struct virtio_blk *b, struct virtio_blk_req *r, bool write, uint64_t sector)
{
	const struct virtq_chain *c = &r->chain;
	uint64_t len = write ? c->read_len - VIRTIO_BLK_HDR_LEN : c->write_len - 1;
	uint64_t off = sector * VIRTIO_BLK_SECTOR;

	if (write && b->cfg.readonly)
		goto ioerr;
	/* Whole sectors, inside the disk, not more than we said we take. */
	if (len % VIRTIO_BLK_SECTOR || len > VIRTIO_BLK_MAX_IO ||
	    !blk_range_ok(b, sector, len / VIRTIO_BLK_SECTOR))
		goto ioerr;
	if (write)
		r->nr_iov = blk_iov(c->bufs, c->nr_read, VIRTIO_BLK_HDR_LEN, len, r->iov);
	else
		r->nr_iov = blk_iov(c->bufs + c->nr_read, c->nr - c->nr_read, 0, len, r->iov);
	r->off = off;
	r->expect = len;
	r->data_written = write ? 0 : len;
	if (!len) {
		virtio_blk_complete(b, r, VIRTIO_BLK_S_OK, 0);
		return;
	}
	int gate = virtio_blk_gate(b, r, off, len);
	if (gate < 0)
		goto ioerr;
	if (!gate)
		return;		/* parked: starts over once the range is here */
	if (virtio_blk_submit(b, r, write ? BLOCK_OP_WRITE : BLOCK_OP_READ, off))
		goto ioerr;
	return;
ioerr:
	virtio_blk_complete(b, r, VIRTIO_BLK_S_IOERR, 0);
}

/* GET_ID: the serial, NUL-padded to 20 bytes or cut to the buffer. */
static void blk_get_id(struct virtio_blk *b, struct virtio_blk_req *r)
{
	const struct virtq_chain *c = &r->chain;
	uint8_t id[BLOCK_SERIAL_MAX] = { 0 };
	struct iovec iov[VIRTQ_MAX_CHAIN];
	uint64_t len = c->write_len - 1 < sizeof(id) ? c->write_len - 1 : sizeof(id);
	unsigned n = blk_iov(c->bufs + c->nr_read, c->nr - c->nr_read, 0, len, iov);
	size_t done = 0;

	memcpy(id, b->cfg.serial, strnlen(b->cfg.serial, sizeof(id)));
	for (unsigned i = 0; i < n; done += iov[i].iov_len, i++)
		memcpy(iov[i].iov_base, id + done, iov[i].iov_len);
	virtio_blk_complete(b, r, VIRTIO_BLK_S_OK, len);
}

/* DISCARD and WRITE_ZEROES: a list of {sector, sectors, flags} ranges. */
static void blk_ranges(struct virtio_blk *b, struct virtio_blk_req *r, bool zeroes)
{
	const struct virtq_chain *c = &r->chain;
	uint64_t len = c->read_len - VIRTIO_BLK_HDR_LEN;
	uint8_t status = VIRTIO_BLK_S_OK;
	uint64_t ticket = 0;

	if (b->cfg.readonly || !len || len % VIRTIO_BLK_SEG_LEN ||
	    len / VIRTIO_BLK_SEG_LEN > VIRTIO_BLK_MAX_SEGS) {
		virtio_blk_complete(b, r, VIRTIO_BLK_S_IOERR, 0);
		return;
	}
	/* Every valid range must be here before any is changed (post-copy's gate). */
	for (uint64_t i = 0; i < len / VIRTIO_BLK_SEG_LEN; i++) {
		uint8_t seg[VIRTIO_BLK_SEG_LEN];
		blk_gather(c, VIRTIO_BLK_HDR_LEN + i * VIRTIO_BLK_SEG_LEN, seg, sizeof(seg));
		uint64_t sector = le_get(seg, 8);
		uint32_t sectors = (uint32_t)le_get(seg + 8, 4);
		if (sectors > VIRTIO_BLK_MAX_RANGE_SECTORS || !blk_range_ok(b, sector, sectors))
			continue;	/* refused below */
		int gate = virtio_blk_gate(b, r, sector * VIRTIO_BLK_SECTOR,
					   sectors * VIRTIO_BLK_SECTOR);
		if (!gate)
			return;
		if (gate < 0) {
			virtio_blk_complete(b, r, VIRTIO_BLK_S_IOERR, 0);
			return;
		}
	}
	for (uint64_t i = 0; i < len / VIRTIO_BLK_SEG_LEN && status == VIRTIO_BLK_S_OK; i++) {
		uint8_t seg[VIRTIO_BLK_SEG_LEN];
		blk_gather(c, VIRTIO_BLK_HDR_LEN + i * VIRTIO_BLK_SEG_LEN, seg, sizeof(seg));
		uint64_t sector = le_get(seg, 8);
		uint32_t sectors = (uint32_t)le_get(seg + 8, 4), flags = (uint32_t)le_get(seg + 12, 4);
		/* Only WRITE_ZEROES knows a flag: unmap (§5.2.6). */
		if (flags & ~(zeroes ? 1u : 0u)) {
			status = VIRTIO_BLK_S_UNSUPP;
			break;
		}
		if (sectors > VIRTIO_BLK_MAX_RANGE_SECTORS || !blk_range_ok(b, sector, sectors)) {
			status = VIRTIO_BLK_S_IOERR;
			break;
		}
		uint64_t off = sector * VIRTIO_BLK_SECTOR, n = sectors * VIRTIO_BLK_SECTOR;
		int err = zeroes ? b->bk.ops->write_zeroes(&b->bk, off, n, flags & 1)
				 : b->bk.ops->discard(&b->bk, off, n);
		/* Even a failed one may have changed some of it. */
		uint64_t t = block_dirty_mark(&b->dirty, off, n);
		ticket = t > ticket ? t : ticket;
		if (err)
			status = VIRTIO_BLK_S_IOERR;
	}
	virtio_blk_complete_marked(b, r, status, 0, ticket);
}

void virtio_blk_start(struct virtio_blk *b, struct virtio_blk_req *r)
{
	const struct virtq_chain *c = &r->chain;
	const struct virtq_buf *last = &c->bufs[c->nr - 1];
	uint8_t hdr[VIRTIO_BLK_HDR_LEN];

	/* No byte to put a status in: all we can do is hand the chain back. */
	if (c->nr_read == c->nr) {
		virtio_blk_drop(b, r);
		return;
	}
	/* The status is the last byte the device may write (§5.2.6). */
	r->status = last->host + last->len - 1;
	r->status_gpa = last->gpa + last->len - 1;
	if (c->read_len < VIRTIO_BLK_HDR_LEN) {
		virtio_blk_complete(b, r, VIRTIO_BLK_S_IOERR, 0);
		return;
	}
	blk_gather(c, 0, hdr, sizeof(hdr));
	r->type = (uint32_t)le_get(hdr, 4);
	uint64_t sector = le_get(hdr + 8, 8);

	switch (r->type) {
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_OUT:
		blk_rw(b, r, r->type == VIRTIO_BLK_T_OUT, sector);
		break;
	case VIRTIO_BLK_T_FLUSH:
		r->expect = 0;
		r->data_written = 0;
		if (b->cfg.readonly || virtio_blk_submit(b, r, BLOCK_OP_FLUSH, 0))
			virtio_blk_complete(b, r, b->cfg.readonly ? VIRTIO_BLK_S_OK :
					    VIRTIO_BLK_S_IOERR, 0);
		break;
	case VIRTIO_BLK_T_GET_ID:
		blk_get_id(b, r);
		break;
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		blk_ranges(b, r, r->type == VIRTIO_BLK_T_WRITE_ZEROES);
		break;
	default:
		virtio_blk_complete(b, r, VIRTIO_BLK_S_UNSUPP, 0);
		break;
	}
}

/* Drop the first n bytes of r's iovecs (n less than what they hold). */
static void blk_iov_advance(struct virtio_blk_req *r, uint64_t n)
{
	unsigned i = 0;

	while (i < r->nr_iov && n >= r->iov[i].iov_len)
		n -= r->iov[i++].iov_len;
	memmove(r->iov, r->iov + i, (r->nr_iov - i) * sizeof(r->iov[0]));
	r->nr_iov -= i;
	if (r->nr_iov) {
		r->iov[0].iov_base = (uint8_t *)r->iov[0].iov_base + n;
		r->iov[0].iov_len -= (size_t)n;
	}
}

/*
 * The backend finished (a round of) r: res is the byte count or -errno.
 * A READ or WRITE may move fewer bytes than asked and still succeed
 * (preadv, pwritev and io_uring may all do so): the rest goes back to the
 * backend, from where it stopped, until all is moved.  A round that moves
 * nothing (the image file ends before the disk does) or more than was
 * left is an I/O error.
 */
void virtio_blk_finished(struct virtio_blk *b, struct virtio_blk_req *r, int64_t res)
{
	bool rw = r->type == VIRTIO_BLK_T_IN || r->type == VIRTIO_BLK_T_OUT;
	uint64_t left = r->expect - r->done;

	if (rw && res > 0 && (uint64_t)res < left) {
		r->done += (uint64_t)res;
		blk_iov_advance(r, (uint64_t)res);
		if (!virtio_blk_submit(b, r, r->type == VIRTIO_BLK_T_OUT ? BLOCK_OP_WRITE :
					     BLOCK_OP_READ, r->off + r->done)) {
			b->resubmitted = true;
			return;
		}
		res = -EIO;
	}
	bool ok = res >= 0 && (uint64_t)res == left;
	uint64_t ticket = 0;

	/*
	 * Marked once the data is in the backend, before the guest hears of
	 * it: a reader that takes the bit afterwards reads the new data.  A
	 * failed write may have written part of its range: marked too.
	 * Write-blocking: the guest hears of it once the tracker's consumer
	 * has sent the range (a ticket).
	 */
	if (r->type == VIRTIO_BLK_T_OUT)
		ticket = block_dirty_mark(&b->dirty, r->off, r->expect);

	virtio_blk_complete_marked(b, r, ok ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_IOERR,
				   ok ? r->data_written : 0, ticket);
}

/* The device's configuration space (§5.2.4), little-endian. */
void virtio_blk_build_config(const struct virtio_blk *b, uint8_t *cfg)
{
	memset(cfg, 0, VIRTIO_BLK_CONFIG_LEN);
	le_put(cfg + 0, b->capacity, 8);
	le_put(cfg + 12, VIRTQ_MAX_CHAIN - 2, 4);		/* seg_max: header and status */
	le_put(cfg + 20, VIRTIO_BLK_SECTOR, 4);			/* blk_size */
	le_put(cfg + 34, 1, 2);					/* num_queues */
	le_put(cfg + 36, VIRTIO_BLK_MAX_RANGE_SECTORS, 4);	/* max_discard_sectors */
	le_put(cfg + 40, VIRTIO_BLK_MAX_SEGS, 4);		/* max_discard_seg */
	le_put(cfg + 44, 1, 4);					/* discard_sector_alignment */
	le_put(cfg + 48, VIRTIO_BLK_MAX_RANGE_SECTORS, 4);	/* max_write_zeroes_sectors */
	le_put(cfg + 52, VIRTIO_BLK_MAX_SEGS, 4);		/* max_write_zeroes_seg */
	cfg[56] = 1;						/* write_zeroes_may_unmap */
}

uint64_t virtio_blk_features(const struct virtio_blk *b)
{
	uint64_t f = VIRTIO_BIT(VIRTIO_BLK_F_SEG_MAX) | VIRTIO_BIT(VIRTIO_BLK_F_BLK_SIZE) |
		     VIRTIO_BIT(VIRTIO_BLK_F_FLUSH);

	if (b->cfg.readonly)
		return f | VIRTIO_BIT(VIRTIO_BLK_F_RO);
	return f | VIRTIO_BIT(VIRTIO_BLK_F_DISCARD) | VIRTIO_BIT(VIRTIO_BLK_F_WRITE_ZEROES);
}
