/*
 * The block source (block.h), the source side (the destination's is
 * block_load.c): each disk in SOURCE sections under
 * MIG_SOURCE_BLOCK.  Payload after the source id: record kind (u8), disk
 * index (u8), then
 *
 *   HELLO  size (u64)                 before any other record of the disk
 *   DATA   offset (u64), the bytes    at most MIG_BLOCK_CHUNK of them
 *   ZERO   offset (u64), length (u64)
 *   DONE   XXH3-64 of the whole disk (u64), has digest (u8)
 *   SUMS_REQ                          incremental: answer with BLOCK_SUMS
 *   DATA_Z offset (u64), codec (u8), length (u32), encoded bytes
 *                                     DATA through a codec (block_codec.c)
 *
 * Setup starts dirty tracking, then sends HELLO and one ZERO per hole of
 * the image (SEEK_HOLE), and owes every 64 KiB chunk with data.  A live
 * pass sends at most BLOCK_PASS_MAX of what is owed, so that RAM gets the
 * link between slices; a sync adds what the guest wrote since, in ranges
 * of 4 KiB (the tracker's fine bits, `part`): a 4 KiB write costs 4 KiB
 * on the wire, not the chunk around it.  At
 * stop-and-copy (the disks drained by machine_quiesce) it sends the rest,
 * then DONE.  A chunk that reads back as zeros goes as ZERO.  With
 * --compress lz4, zstd or adaptive, and a destination whose READY agreed
 * to MIG_CAP_BLOCK_Z, a range whose encoding saves a 32nd of it goes as
 * DATA_Z (lz4 for adaptive; none for delta), encoded here, in the
 * migration thread.
 *
 * Incremental (copy_incremental): setup sends HELLO only; after READY the
 * handshake sends SUMS_REQ, and the destination answers on the return
 * path with BLOCK_SUMS sections (disk u8, first chunk u64, count u32, an
 * XXH3-64 per chunk); only chunks whose digests differ are owed.
 *
 * Write-blocking (copy_blocking): what the first sync owes is the disk's
 * first pass (`first`).  Once every chunk of it was sent, the disk's
 * dirty tracker turns blocking on: each guest write is held by the
 * device until acknowledged (devices/block/dirty.h).  The service op,
 * called between chunks of every live pass (RAM's too), takes the new
 * bits with their ticket, sends everything owed, flushes the stream and
 * acknowledges the ticket: a write completes only once its range, read
 * after the write reached the image, is on the connection ahead of the
 * final pass.  The guest's write rate is thereby bounded by the link and
 * the disk always converges.  `release` (before the switchover's pause,
 * and cleanup on every way out) turns blocking off: held writes complete
 * and their chunks, still marked, go in the final pass.  No record is
 * new on the wire: the mirror is DATA and ZERO records.
 */
#include "migration/block.h"
#include "migration/block_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "migration/live.h"
#include "migration/migration.h"
#include "migration/section.h"
#include "util/hash.h"
#include "util/le.h"
#include "util/log.h"
#include "vmm/vm.h"

#define BLOCK_PASS_MAX	(32u << 20)	/* bytes of one disk per live pass */
/* On the wire: section header, source id, kind and disk, n bytes, checksum. */
#define BLOCK_WIRE(n)	(MIG_SECTION_HDR + 4 + BLOCK_REC_HDR + (n) + 8)

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

uint64_t mig_block_popcount(const uint64_t *bits, uint64_t nbits)
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

/* One record: kind, disk, then nr_nums u64s, then len bytes of data. */
void mig_block_send(struct migration *mig, uint8_t kind, unsigned disk, const uint64_t *nums,
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

int mig_block_read(int fd, uint8_t *buf, uint64_t len, uint64_t off)
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

bool mig_block_is_zero(const uint8_t *p, size_t len)
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

	mig_block_send(mig, MIG_BLOCK_HELLO, i, &d->size, 1, NULL, 0);
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
			mig_block_send(mig, MIG_BLOCK_ZERO, i, z, 2, NULL, 0);
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
		/* Stopping also lets every held write complete. */
		if (b->d[i].dirty)
			block_dirty_stop(b->d[i].dirty);
		if (b->d[i].fd >= 0)
			close(b->d[i].fd);
		free(b->d[i].owed);
		free(b->d[i].part);
		free(b->d[i].first);
	}
	mig_block_z_fini(&b->z);
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
	b->z.codec = MIG_CODEC_RAW;	/* until READY agrees to DATA_Z (block_handshake) */
	for (unsigned i = 0; i < m->nr_disks; i++) {
		struct mig_block_disk *d = &b->d[i];
		d->fd = -1;
		b->nr = i + 1;
		d->size = m->disks[i].bk.size;
		d->chunks = (d->size + MIG_BLOCK_CHUNK - 1) / MIG_BLOCK_CHUNK;
		d->fines = (d->size + MIG_BLOCK_FINE - 1) / MIG_BLOCK_FINE;
		d->owed = calloc(d->chunks / 64 + 1, sizeof(*d->owed));
		d->part = calloc(d->fines / 64 + 1, sizeof(*d->part));
		if (!d->owed || !d->part)
			return -ENOMEM;
		d->fd = open(m->disks[i].cfg.path, O_RDONLY | O_CLOEXEC);
		if (d->fd < 0)
			return -errno;
		/* Before the first read: a write from now on is sent again. */
		int err = block_dirty_start(&m->disks[i].dirty, d->size, MIG_BLOCK_CHUNK);
		if (err)
			return err;
		d->dirty = &m->disks[i].dirty;
		if (mig->p.copy_incremental)	/* what differs is known at the handshake */
			mig_block_send(mig, MIG_BLOCK_HELLO, i, &d->size, 1, NULL, 0);
		else
			block_first_map(mig, i);
	}
	uint64_t total = 0;
	for (unsigned i = 0; i < b->nr; i++)
		total += b->d[i].size;
	pthread_mutex_lock(&mig->lock);
	mig->stats.disk_total = total;
	pthread_mutex_unlock(&mig->lock);
	return mig_stream_error(&mig->s);
}

/* XXH3-64 of every chunk of disk i, here.  0 or -errno. */
static int block_chunk_sums(struct mig_block *b, unsigned i, uint64_t *sums)
{
	struct mig_block_disk *d = &b->d[i];

	for (uint64_t c = 0; c < d->chunks; c++) {
		uint64_t off = c * MIG_BLOCK_CHUNK;
		uint64_t len = d->size - off < MIG_BLOCK_CHUNK ? d->size - off : MIG_BLOCK_CHUNK;
		int err = mig_block_read(d->fd, b->buf, len, off);
		if (err)
			return err;
		sums[c] = XXH3_64bits(b->buf, len);
	}
	return 0;
}

int mig_block_sums_apply(const uint8_t *buf, uint32_t len, unsigned disk, uint64_t chunks,
			 const uint64_t *ours, uint64_t *owed, uint64_t *next, uint64_t *differ,
			 char *why, size_t whylen)
{
	uint64_t first = len >= 13 ? le_get(buf + 1, 8) : 0;
	uint32_t count = len >= 13 ? (uint32_t)le_get(buf + 9, 4) : 0;

	if (len < 13 || buf[0] != disk || first != *next || *next > chunks || !count ||
	    count > MIG_BLOCK_SUMS_MAX || count > chunks - first || len != 13 + 8 * count) {
		snprintf(why, whylen, "destination's digests of disk %u are malformed (%u bytes, "
			 "disk %u, chunks %llu + %u; want %llu + up to %u)", disk, len,
			 len ? buf[0] : 0, (unsigned long long)first, count,
			 (unsigned long long)*next, MIG_BLOCK_SUMS_MAX);
		return -EPROTO;
	}
	for (uint32_t k = 0; k < count; k++) {
		uint64_t c = first + k;
		if (le_get(buf + 13 + 8 * k, 8) != ours[c]) {
			owed[c / 64] |= 1ULL << (c % 64);
			(*differ)++;
		}
	}
	*next = first + count;
	return 0;
}

/*
 * One BLOCK_SUMS section for disk i, the next after `*next` chunks: each
 * chunk whose digest differs from ours is owed.  0 or -errno (reason on
 * the stream).
 */
static int block_read_sums(struct migration *mig, unsigned i, const uint64_t *ours,
			   uint64_t *next, uint64_t *differ)
{
	struct mig_block_disk *d = &mig->block->d[i];
	uint32_t cap = 13 + 8 * MIG_BLOCK_SUMS_MAX, len;
	uint8_t *buf = malloc(cap), type;
	int err = buf ? mig_section_read(&mig->s, buf, cap, &type, &len) : -ENOMEM;
	int32_t status;
	const char *msg;
	char why[200];
	int n;

	if (!err && type == MIG_SEC_RESULT && !mig_result_parse(buf, len, &status, &msg, &n)) {
		mig_stream_fail(&mig->s, status ? status : -EPROTO, "destination: %.*s", n, msg);
		err = status ? status : -EPROTO;
	} else if (!err && type != MIG_SEC_BLOCK_SUMS) {
		mig_stream_fail(&mig->s, -EPROTO, "destination answered the disk digests with section %u",
				type);
		err = -EPROTO;
	}
	if (!err) {
		err = mig_block_sums_apply(buf, len, i, d->chunks, ours, d->owed, next, differ, why,
					   sizeof(why));
		if (err)
			mig_stream_fail(&mig->s, err, "%s", why);
	}
	free(buf);
	return err;
}

/*
 * copy-storage=incremental: ask the destination for a digest of each
 * 64 KiB chunk of every disk, digest ours meanwhile, and owe only the
 * chunks that differ.  Writes from here on are tracked already (setup).
 */
static int block_handshake(struct migration *mig)
{
	struct mig_block *b = mig->block;
	int err = 0;

	/* READY agreed to DATA_Z, and to the codec --compress picks: blocks go through it. */
	uint8_t codec = mig_block_z_codec(mig->p.compress);
	if (mig->block_z && codec != MIG_CODEC_RAW && (mig->stats.codecs & MIG_CODEC_BIT(codec))) {
		err = mig_block_z_init(&b->z, codec, mig->p.compress_level);
		if (err)
			return err;
		pthread_mutex_lock(&mig->lock);
		mig->stats.block_z_codec = codec;
		pthread_mutex_unlock(&mig->lock);
	}
	if (!mig->p.copy_incremental)
		return 0;
	for (unsigned i = 0; i < b->nr; i++)
		mig_block_send(mig, MIG_BLOCK_SUMS_REQ, i, NULL, 0, NULL, 0);
	err = mig_stream_flush(&mig->s);
	for (unsigned i = 0; i < b->nr && !err; i++) {
		struct mig_block_disk *d = &b->d[i];
		uint64_t *ours = calloc(d->chunks + 1, sizeof(*ours)), next = 0, differ = 0;
		if (!ours)
			return -ENOMEM;
		err = block_chunk_sums(b, i, ours);
		if (err)
			mig_stream_fail(&mig->s, err, "cannot read disk %u: %s", i, strerror(-err));
		while (!err && next < d->chunks)
			err = block_read_sums(mig, i, ours, &next, &differ);
		free(ours);
		if (!err)
			pr_info("migration: disk %u: %llu of %llu ranges of 64 KiB differ at the "
				"destination", i, (unsigned long long)differ,
				(unsigned long long)d->chunks);
	}
	return err;
}

/* The first sync: what is owed now (the map, or what differs) is the first pass. */
static int block_note_first(struct mig_block_disk *d)
{
	size_t words = d->chunks / 64 + 1;

	if (d->first)
		return 0;
	d->first = malloc(words * sizeof(*d->first));
	if (!d->first)
		return -ENOMEM;
	memcpy(d->first, d->owed, words * sizeof(*d->first));
	d->first_left = mig_block_popcount(d->first, d->chunks);
	return 0;
}

_Static_assert(MIG_BLOCK_FINES == 16, "a chunk's ranges are 16 bits of one word of part");

/*
 * Take what the guest wrote into part (into owed, whole chunks, should the
 * tracker keep no ranges), remembering the ticket to acknowledge.
 */
void mig_block_take(struct mig_block_disk *d)
{
	uint64_t ticket;

	if (block_dirty_take_fine(d->dirty, d->part, d->fines, &ticket) < 0)
		block_dirty_take_ticket(d->dirty, d->owed, d->chunks, &ticket);
	if (ticket > d->ticket)
		d->ticket = ticket;
}

void mig_block_fold(struct mig_block_disk *d)
{
	for (uint64_t c = 0; c < d->chunks; c++) {
		if (mig_block_part_bits(d, c))
			d->owed[c / 64] |= 1ULL << (c % 64);
		mig_block_part_clear(d, c);
	}
}

/* Bytes still to send of disk i (a range in a chunk owed whole counts twice). */
static uint64_t block_left(const struct mig_block_disk *d)
{
	return mig_block_popcount(d->owed, d->chunks) * MIG_BLOCK_CHUNK +
	       mig_block_popcount(d->part, d->fines) * MIG_BLOCK_FINE;
}

static int64_t block_sync(struct migration *mig)
{
	struct mig_block *b = mig->block;
	uint64_t n = 0;

	for (unsigned i = 0; i < b->nr; i++) {
		struct mig_block_disk *d = &b->d[i];
		int err = block_note_first(d);
		if (err)
			return err;
		mig_block_take(d);
		n += block_left(d);
	}
	return (int64_t)n;
}

static int64_t block_peek(struct migration *mig)
{
	struct mig_block *b = mig->block;
	uint64_t n = 0;

	for (unsigned i = 0; i < b->nr; i++)
		n += block_dirty_bytes(b->d[i].dirty);
	return (int64_t)n;
}

static uint64_t block_left_over(struct migration *mig)
{
	return mig->block->left_over;
}

/* Send [off, off + len) of disk i (at most a chunk): read now, so it is what the guest last wrote. */
static int block_send_range(struct migration *mig, unsigned i, uint64_t off, uint64_t len)
{
	struct mig_block_disk *d = &mig->block->d[i];
	int err = mig_block_read(d->fd, mig->block->buf, len, off);

	if (err) {
		mig_stream_fail(&mig->s, err, "cannot read disk %u: %s", i, strerror(-err));
		return err;
	}
	struct mig_block_z *bz = &mig->block->z;
	uint8_t id = MIG_CODEC_ZERO;
	uint64_t out = 0, ns = 0;
	bool tried = false;
	if (mig_block_is_zero(mig->block->buf, len)) {
		uint64_t z[2] = { off, len };
		mig_block_send(mig, MIG_BLOCK_ZERO, i, z, 2, NULL, 0);
	} else {
		int n = -1;
		if (bz->codec == MIG_CODEC_LZ4 || bz->codec == MIG_CODEC_ZSTD) {
			uint64_t t0 = vm_now_ns();
			n = mig_block_z_encode(bz, off, mig->block->buf, (uint32_t)len);
			ns = vm_now_ns() - t0;
			tried = true;
		}
		if (n > 0) {
			id = bz->codec;
			out = (uint64_t)n - BLOCK_Z_HDR;
			mig_block_send(mig, MIG_BLOCK_DATA_Z, i, NULL, 0, bz->buf, (uint32_t)n);
		} else {
			id = MIG_CODEC_RAW;
			out = len;
			mig_block_send(mig, MIG_BLOCK_DATA, i, &off, 1, mig->block->buf,
				       (uint32_t)len);
		}
	}
	pthread_mutex_lock(&mig->lock);
	mig->stats.disk_processed += len;
	mig->stats.block_codec[id].pages++;
	mig->stats.block_codec[id].bytes_in += len;
	mig->stats.block_codec[id].bytes_out += out;
	if (tried) {
		/* The encoding's time is the codec's, whether it paid or not. */
		mig->stats.block_codec[bz->codec].cpu_ns += ns;
		mig->stats.block_z_gave_up += id == MIG_CODEC_RAW;
	}
	pthread_mutex_unlock(&mig->lock);
	return mig_stream_error(&mig->s);
}

/* Chunk c of disk i, whole: its ranges in part go with it. */
int mig_block_send_chunk(struct migration *mig, unsigned i, uint64_t c)
{
	struct mig_block_disk *d = &mig->block->d[i];
	uint64_t off = c * MIG_BLOCK_CHUNK;
	uint64_t len = d->size - off < MIG_BLOCK_CHUNK ? d->size - off : MIG_BLOCK_CHUNK;

	if (d->first && (d->first[c / 64] & (1ULL << (c % 64)))) {
		d->first[c / 64] &= ~(1ULL << (c % 64));
		d->first_left--;
	}
	mig_block_part_clear(d, c);
	return block_send_range(mig, i, off, len);
}

/*
 * The ranges the guest wrote in chunk c of disk i, each run of adjacent
 * ones in one record; `*sent` grows by the bytes.  0 or the stream's error.
 */
static int block_send_part(struct migration *mig, unsigned i, uint64_t c, uint64_t *sent)
{
	struct mig_block_disk *d = &mig->block->d[i];
	uint64_t bits = mig_block_part_bits(d, c);

	mig_block_part_clear(d, c);
	while (bits) {
		unsigned s = (unsigned)__builtin_ctzll(bits), e = s;
		while (e < MIG_BLOCK_FINES && (bits & (1ULL << e)))
			e++;
		bits &= ~(((1ULL << (e - s)) - 1) << s);
		uint64_t off = c * MIG_BLOCK_CHUNK + (uint64_t)s * MIG_BLOCK_FINE;
		if (off >= d->size)
			break;
		uint64_t len = (uint64_t)(e - s) * MIG_BLOCK_FINE;
		if (len > d->size - off)
			len = d->size - off;
		int err = block_send_range(mig, i, off, len);
		if (err)
			return err;
		*sent += len;
	}
	return 0;
}

/* Live passes, between chunks: a cancel, or a new bandwidth cap. */
static bool block_cancelled(struct migration *mig)
{
	pthread_mutex_lock(&mig->lock);
	bool c = mig->req.cancel;
	if (mig->req.limits_changed && mig->stats.status == MIG_STATUS_ACTIVE) {
		ratelimit_set_rate(&mig->rl, mig->p.bandwidth);
		mig->req.limits_changed = false;
	}
	pthread_mutex_unlock(&mig->lock);
	return c;
}

/*
 * Send up to `budget` bytes of what disk i owes, from its cursor on;
 * `live`: look for a cancel between chunks.  0, -ECANCELED or the
 * stream's error.
 */
int mig_block_send_owed(struct migration *mig, unsigned i, uint64_t budget, bool live)
{
	struct mig_block_disk *d = &mig->block->d[i];
	uint64_t sent = 0, start = d->cursor;

	for (uint64_t k = 0; k < d->chunks && sent < budget; k++) {
		uint64_t c = (start + k) % d->chunks;
		if (!(d->owed[c / 64] & (1ULL << (c % 64))))
			continue;
		if (live && block_cancelled(mig))
			return -ECANCELED;
		d->owed[c / 64] &= ~(1ULL << (c % 64));
		int err = mig_block_send_chunk(mig, i, c);
		if (err)
			return err;
		sent += MIG_BLOCK_CHUNK;
		d->cursor = (c + 1) % d->chunks;
	}
	/* Then what the guest wrote in chunks not owed whole. */
	for (uint64_t w = 0; w < d->fines / 64 + 1 && sent < budget; w++) {
		for (uint64_t c = 4 * w; d->part[w] && c < 4 * w + 4 && sent < budget; c++) {
			if (!mig_block_part_bits(d, c))
				continue;
			if (d->owed[c / 64] & (1ULL << (c % 64)))
				continue;	/* goes whole, later in this pass */
			if (live && block_cancelled(mig))
				return -ECANCELED;
			int err = block_send_part(mig, i, c, &sent);
			if (err)
				return err;
		}
	}
	return 0;
}

/*
 * Write-blocking, disk i: once its first pass is done, hold the guest's
 * writes; while held, send what they wrote and acknowledge them.  The
 * ack comes after a flush: the bytes are on the connection.
 */
static int block_mirror(struct migration *mig, unsigned i)
{
	struct mig_block_disk *d = &mig->block->d[i];
	int err;

	if (!d->mirroring) {
		if (!d->first || d->first_left)
			return 0;
		err = block_dirty_set_blocking(d->dirty, true);
		if (err) {
			mig_stream_fail(&mig->s, err, "disk %u: cannot mirror its writes", i);
			return err;
		}
		d->mirroring = true;
		pr_info("migration: disk %u: first pass done; guest writes are mirrored before "
			"they complete (write-blocking)", i);
	}
	mig_block_take(d);
	/* Nothing written since the last ack: no flush (this runs every RAM slice). */
	if (d->ticket <= d->acked && !block_left(d))
		return 0;
	err = mig_block_send_owed(mig, i, UINT64_MAX, true);
	if (!err)
		err = mig_stream_flush(&mig->s);
	if (err)
		return err;
	block_dirty_ack(d->dirty, d->ticket);
	d->acked = d->ticket;
	return 0;
}

static int block_service(struct migration *mig)
{
	struct mig_block *b = mig->block;

	if (!b || !mig->p.copy_blocking || b->released)
		return 0;
	for (unsigned i = 0; i < b->nr; i++) {
		int err = block_mirror(mig, i);
		if (err)
			return err;
	}
	return 0;
}

/* Before the switchover's pause: writes flow again, marked for the final pass. */
static void block_release(struct migration *mig)
{
	struct mig_block *b = mig->block;

	if (!b || b->released)
		return;
	b->released = true;
	for (unsigned i = 0; i < b->nr; i++) {
		if (!b->d[i].mirroring)
			continue;
		b->d[i].mirroring = false;
		/* Off cannot fail; what was held is acknowledged and still marked. */
		if (block_dirty_set_blocking(b->d[i].dirty, false))
			pr_warn("migration: disk %u: cannot stop mirroring", i);
	}
}

static int block_iterate(struct migration *mig, bool resend)
{
	for (unsigned i = 0; i < mig->block->nr; i++) {
		int err = mig_block_send_owed(mig, i, BLOCK_PASS_MAX, true);
		if (err)
			return err;
	}
	/* Before the sync adds the guest's writes: what the budget left. */
	mig->block->left_over = 0;
	for (unsigned i = 0; i < mig->block->nr; i++)
		mig->block->left_over += block_left(&mig->block->d[i]);
	/* The first pass may have ended just now: mirror from here on. */
	return block_service(mig);
}

/* XXH3-64 of a whole image, read from fd.  0 or -errno. */
int mig_block_digest(int fd, uint64_t size, uint8_t *buf, uint64_t *out)
{
	XXH3_state_t *st = XXH3_createState();

	if (!st)
		return -ENOMEM;
	XXH3_64bits_reset(st);
	for (uint64_t off = 0; off < size; off += MIG_BLOCK_CHUNK) {
		uint64_t len = size - off < MIG_BLOCK_CHUNK ? size - off : MIG_BLOCK_CHUNK;
		int err = mig_block_read(fd, buf, len, off);
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

	block_release(mig);	/* nothing may follow DONE */
	for (unsigned i = 0; i < b->nr; i++) {
		int err = mig_block_send_owed(mig, i, UINT64_MAX, false);
		if (err)
			return err;
		uint64_t digest = 0;
		uint8_t flag = mig->p.verify;
		if (flag) {
			err = mig_block_digest(b->d[i].fd, b->d[i].size, b->buf, &digest);
			if (err) {
				mig_stream_fail(&mig->s, err, "cannot read disk %u: %s", i,
						strerror(-err));
				return err;
			}
		}
		mig_block_send(mig, MIG_BLOCK_DONE, i, &digest, 1, &flag, 1);
	}
	return mig_stream_error(&mig->s);
}

const struct mig_source_ops mig_block_source = {
	.name = "block",
	.active = block_active,
	.accepted = mig_block_accepted,
	.setup = block_setup,
	.handshake = block_handshake,
	.sync = block_sync,
	.peek = block_peek,
	.left_over = block_left_over,
	.iterate = block_iterate,
	.complete = block_complete,
	.load = mig_block_load,
	.loaded = mig_block_loaded,
	.unload = mig_block_unload,
	.cleanup = block_cleanup,
	.service = block_service,
	.release = block_release,
	.pc_switch = mig_block_pc_switch,
	.pc_push = mig_block_pc_push,
	.pc_request = mig_block_pc_request,
	.pc_resume_begin = mig_block_pc_resume_begin,
	.pc_report = mig_block_pc_report,
	.pc_resumed = mig_block_pc_resumed,
	.postcopy = true,
};
