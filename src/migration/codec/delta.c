/*
 * The delta codec (QEMU's XBZRLE): a re-sent page as the runs of bytes
 * that changed since the copy the destination holds.  The source keeps
 * the last copy it sent of recently sent pages in a cache of fixed size
 * (--xbzrle-cache, 64 MiB by default, as QEMU), one direct-mapped slot per
 * page frame: a page's slot is its index modulo the number of slots.
 * Every page sent by any codec updates its slot (codec.h's `sent`), so a
 * slot always equals what the destination holds for its page.
 *
 * Encoding (docs/migration-stream.md, "delta"): pairs of
 *   skip  uleb128, bytes unchanged (0..4095)
 *   len   uleb128, bytes that changed (1..4096), then those len new bytes
 * covering the page from its start; bytes after the last pair are
 * unchanged.  A delta longer than MIG_DELTA_MAX is not worth it
 * (QEMU's "overflow"): the page goes another way.
 *
 * The destination applies a delta only to a page it holds (ram_load.c
 * refuses one for a page it never received), and refuses pairs that run
 * past the page, a zero-length run, or a number wider than two bytes.
 */
#include "migration/codec/codec.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define MIG_DELTA_MAX	(GUEST_PAGE_SIZE - GUEST_PAGE_SIZE / 8)
/* An unchanged gap shorter than this is cheaper sent than split around. */
#define MIG_DELTA_GAP	3u

#define DELTA_LOCKS	64u	/* slot s is guarded by lock[s % DELTA_LOCKS] */

/*
 * One per migration, in the main codec context; encoder threads share it
 * (codec.h's `share`).  A slot is read (encode) and replaced (sent) under
 * its lock, so a delta is never made against a half-written copy; the
 * pool never has one page in two jobs at once (ram_pool.h), so the copy
 * a delta is made against is always one already ahead on the wire.
 */
struct delta_cache {
	uint64_t slots;
	uint64_t *tag;			/* page index + 1 in the slot; 0: empty */
	uint8_t *data;			/* slots pages, the copies last sent */
	pthread_mutex_t lock[DELTA_LOCKS];
};

static int delta_init(struct mig_codec_ctx *c)
{
	struct delta_cache *d;

	if (!c->source)
		return 0;	/* the destination's copy is guest RAM itself */
	if (c->share) {
		c->priv[MIG_CODEC_DELTA] = c->share->priv[MIG_CODEC_DELTA];
		return c->priv[MIG_CODEC_DELTA] ? 0 : -EINVAL;
	}
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	for (unsigned i = 0; i < DELTA_LOCKS; i++)
		pthread_mutex_init(&d->lock[i], NULL);
	c->priv[MIG_CODEC_DELTA] = d;
	d->slots = c->cache_bytes / GUEST_PAGE_SIZE;
	if (!d->slots)
		d->slots = 1;
	d->tag = calloc(d->slots, sizeof(*d->tag));
	/* Huge pages: filling 64 MiB 4 KiB at a time costs a fault per page. */
	d->data = mmap(NULL, d->slots * GUEST_PAGE_SIZE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (d->data == MAP_FAILED) {
		d->data = NULL;
		return -ENOMEM;
	}
	madvise(d->data, d->slots * GUEST_PAGE_SIZE, MADV_HUGEPAGE);
	return d->tag ? 0 : -ENOMEM;
}

static void delta_fini(struct mig_codec_ctx *c)
{
	struct delta_cache *d = c->priv[MIG_CODEC_DELTA];

	c->priv[MIG_CODEC_DELTA] = NULL;
	if (!d || c->share)
		return;		/* a worker's: the main context frees it */
	for (unsigned i = 0; i < DELTA_LOCKS; i++)
		pthread_mutex_destroy(&d->lock[i]);
	free(d->tag);
	if (d->data)
		munmap(d->data, d->slots * GUEST_PAGE_SIZE);
	free(d);
}

static unsigned delta_put_uleb(uint8_t *p, uint32_t v)
{
	if (v < 0x80) {
		p[0] = (uint8_t)v;
		return 1;
	}
	p[0] = (uint8_t)(0x80 | (v & 0x7f));
	p[1] = (uint8_t)(v >> 7);
	return 2;
}

/* Bytes from pos on that are equal in a and b (a word at a time). */
static uint32_t delta_same(const uint8_t *a, const uint8_t *b, uint32_t pos)
{
	uint32_t p = pos;

	while (p + 8 <= GUEST_PAGE_SIZE) {
		uint64_t x, y;
		memcpy(&x, a + p, 8);
		memcpy(&y, b + p, 8);
		if (x != y)
			return p - pos + (uint32_t)__builtin_ctzll(x ^ y) / 8;
		p += 8;
	}
	while (p < GUEST_PAGE_SIZE && a[p] == b[p])
		p++;
	return p - pos;
}

int mig_delta_encode(const uint8_t *old, const uint8_t *page, uint8_t *dst, uint32_t max)
{
	uint32_t pos = 0, out = 0;

	for (;;) {
		uint32_t skip = delta_same(old, page, pos);
		if (pos + skip >= GUEST_PAGE_SIZE)
			break;
		uint32_t start = pos + skip, end = start + 1;
		/* The changed run: up to an unchanged gap worth a new pair. */
		while (end < GUEST_PAGE_SIZE) {
			uint32_t same = delta_same(old, page, end);
			if (end + same >= GUEST_PAGE_SIZE || same >= MIG_DELTA_GAP)
				break;
			end += same ? same : 1;
		}
		uint32_t len = end - start;
		if (out + 4 + len > max)
			return -1;
		out += delta_put_uleb(dst + out, skip);
		out += delta_put_uleb(dst + out, len);
		memcpy(dst + out, page + start, len);
		out += len;
		pos = end;
	}
	return (int)out;
}

static int delta_encode(struct mig_codec_ctx *c, uint64_t index, const uint8_t *page, uint8_t *dst)
{
	struct delta_cache *d = c->priv[MIG_CODEC_DELTA];
	uint64_t s = index % d->slots;
	pthread_mutex_t *lock = &d->lock[s % DELTA_LOCKS];
	int n = -1;

	pthread_mutex_lock(lock);
	bool hit = d->tag[s] == index + 1;
	if (hit)
		n = mig_delta_encode(d->data + s * GUEST_PAGE_SIZE, page, dst, MIG_DELTA_MAX);
	pthread_mutex_unlock(lock);
	if (!hit)
		c->delta.misses++;
	else if (n < 0)
		c->delta.overflows++;
	else
		c->delta.hits++;
	return n;
}

static void delta_sent(struct mig_codec_ctx *c, uint64_t index, const uint8_t *page)
{
	struct delta_cache *d = c->priv[MIG_CODEC_DELTA];

	if (!d)
		return;
	uint64_t s = index % d->slots;
	pthread_mutex_lock(&d->lock[s % DELTA_LOCKS]);
	if (!page) {
		/* A zero page is cheaper sent as zero again: no copy kept. */
		if (d->tag[s] == index + 1)
			d->tag[s] = 0;
	} else {
		d->tag[s] = index + 1;
		memcpy(d->data + s * GUEST_PAGE_SIZE, page, GUEST_PAGE_SIZE);
	}
	pthread_mutex_unlock(&d->lock[s % DELTA_LOCKS]);
}

/* A uleb128 of at most two bytes at in[*pos]; -1 when malformed or cut. */
static int delta_get_uleb(const uint8_t *in, uint32_t len, uint32_t *pos)
{
	if (*pos >= len)
		return -1;
	uint8_t b0 = in[(*pos)++];
	if (!(b0 & 0x80))
		return b0;
	if (*pos >= len || (in[*pos] & 0x80))
		return -1;
	return (b0 & 0x7f) | (in[(*pos)++] << 7);
}

static int delta_decode(struct mig_codec_ctx *c, const uint8_t *in, uint32_t len, uint8_t *page)
{
	uint32_t at = 0, pos = 0;

	while (at < len) {
		int skip = delta_get_uleb(in, len, &at);
		int n = delta_get_uleb(in, len, &at);
		if (skip < 0 || n <= 0)
			return -EPROTO;
		if ((uint32_t)skip + (uint32_t)n > GUEST_PAGE_SIZE - pos || (uint32_t)n > len - at)
			return -EPROTO;
		pos += (uint32_t)skip;
		memcpy(page + pos, in + at, (uint32_t)n);
		pos += (uint32_t)n;
		at += (uint32_t)n;
	}
	return 0;
}

const struct mig_codec mig_codec_delta = {
	.id = MIG_CODEC_DELTA,
	.name = "delta",
	.init = delta_init,
	.fini = delta_fini,
	.encode = delta_encode,
	.sent = delta_sent,
	.decode = delta_decode,
	.min_len = 0,
	.max_len = MIG_DELTA_MAX,
	.against_held = true,
};
