/*
 * The codec table (codec.h): one line per codec, indexed by wire id, and
 * the source's choice of codec for each page by the compression mode.
 */
#include "migration/codec/codec.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const struct mig_codec *const mig_codecs[MIG_CODEC_NR] = {
	[MIG_CODEC_ZERO] = &mig_codec_zero,
	[MIG_CODEC_RAW] = &mig_codec_raw,
	[MIG_CODEC_LZ4] = &mig_codec_lz4,
	[MIG_CODEC_ZSTD] = &mig_codec_zstd,
	[MIG_CODEC_DELTA] = &mig_codec_delta,
};

static const char *const mig_compress_names[MIG_COMPRESS_NR] = {
	[MIG_COMPRESS_NONE] = "none",
	[MIG_COMPRESS_LZ4] = "lz4",
	[MIG_COMPRESS_ZSTD] = "zstd",
	[MIG_COMPRESS_DELTA] = "delta",
	[MIG_COMPRESS_ADAPTIVE] = "adaptive",
};

const struct mig_codec *mig_codec_get(unsigned id)
{
	return id < MIG_CODEC_NR ? mig_codecs[id] : NULL;
}

uint32_t mig_compress_codecs(enum mig_compress mode)
{
	switch (mode) {
	case MIG_COMPRESS_LZ4:
		return MIG_CODECS_BASE | MIG_CODEC_BIT(MIG_CODEC_LZ4);
	case MIG_COMPRESS_ZSTD:
		return MIG_CODECS_BASE | MIG_CODEC_BIT(MIG_CODEC_ZSTD);
	case MIG_COMPRESS_DELTA:
		return MIG_CODECS_BASE | MIG_CODEC_BIT(MIG_CODEC_DELTA);
	case MIG_COMPRESS_ADAPTIVE:
		return MIG_CODECS_KNOWN;
	default:
		return MIG_CODECS_BASE;
	}
}

int mig_compress_parse(const char *name)
{
	for (int m = 0; m < MIG_COMPRESS_NR; m++)
		if (!strcmp(name, mig_compress_names[m]))
			return m;
	return -1;
}

const char *mig_compress_name(enum mig_compress mode)
{
	return mode < MIG_COMPRESS_NR ? mig_compress_names[mode] : "?";
}

static int mig_codec_ctx_setup(struct mig_codec_ctx *c, const struct mig_codec_ctx *share,
			       bool source, enum mig_compress mode, uint32_t allowed, int level,
			       uint64_t cache_bytes)
{
	memset(c, 0, sizeof(*c));
	c->share = share;
	c->source = source;
	c->mode = mode;
	c->allowed = allowed & MIG_CODECS_KNOWN;
	c->level = level;
	c->cache_bytes = cache_bytes;
	c->snap = aligned_alloc(64, GUEST_PAGE_SIZE);
	if (!c->snap)
		goto fail;
	for (unsigned id = 0; id < MIG_CODEC_NR; id++)
		if ((c->allowed & MIG_CODEC_BIT(id)) && mig_codecs[id]->init &&
		    mig_codecs[id]->init(c))
			goto fail;
	if (source && mode == MIG_COMPRESS_ADAPTIVE && mig_adaptive_init(c))
		goto fail;
	return 0;
fail:
	mig_codec_ctx_fini(c);
	return -ENOMEM;
}

int mig_codec_ctx_init(struct mig_codec_ctx *c, bool source, enum mig_compress mode,
		       uint32_t allowed, int level, uint64_t cache_bytes)
{
	return mig_codec_ctx_setup(c, NULL, source, mode, allowed, level, cache_bytes);
}

int mig_codec_ctx_init_worker(struct mig_codec_ctx *c, const struct mig_codec_ctx *main)
{
	return mig_codec_ctx_setup(c, main, main->source, main->mode, main->allowed, main->level,
				   main->cache_bytes);
}

void mig_codec_ctx_fini(struct mig_codec_ctx *c)
{
	for (unsigned id = 0; id < MIG_CODEC_NR; id++)
		if (mig_codecs[id]->fini)
			mig_codecs[id]->fini(c);
	mig_adaptive_fini(c);
	free(c->snap);
	c->snap = NULL;
}

static uint64_t mig_codec_now(void)
{
	struct timespec ts;

	/* CLOCK_MONOTONIC is read without a system call; encoding never sleeps. */
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* Try codec id on the snapshot; its length, or -1 when it does not take it. */
static int mig_codec_try(struct mig_codec_ctx *c, unsigned id, uint64_t index, uint8_t *dst)
{
	if (!(c->allowed & MIG_CODEC_BIT(id)))
		return -1;
	if (id == MIG_CODEC_DELTA && c->delta_off)
		return -1;
	return mig_codecs[id]->encode(c, index, c->snap, dst);
}

/* The codec a fixed mode (not adaptive) uses for a page that is not zero. */
static int mig_codec_fixed(struct mig_codec_ctx *c, uint64_t index, uint8_t *dst, uint32_t *len)
{
	static const uint8_t mode_codec[MIG_COMPRESS_NR] = {
		[MIG_COMPRESS_LZ4] = MIG_CODEC_LZ4,
		[MIG_COMPRESS_ZSTD] = MIG_CODEC_ZSTD,
		[MIG_COMPRESS_DELTA] = MIG_CODEC_DELTA,
	};
	unsigned id = mode_codec[c->mode];
	int n = mig_codec_try(c, id, index, dst);

	if (n < 0)
		return -1;
	*len = (uint32_t)n;
	return (int)id;
}

static void mig_codec_count(struct mig_codec_ctx *c, unsigned id, uint32_t len, uint64_t ns)
{
	struct mig_codec_stats *st = &c->stats[id];

	st->pages++;
	st->bytes_in += GUEST_PAGE_SIZE;
	st->bytes_out += len;
	st->cpu_ns += ns;
}

/* Tell the codecs that keep a copy of what the destination holds (delta). */
static void mig_codec_sent(struct mig_codec_ctx *c, uint64_t index, const uint8_t *held)
{
	for (unsigned id = 0; id < MIG_CODEC_NR; id++)
		if ((c->allowed & MIG_CODEC_BIT(id)) && mig_codecs[id]->sent)
			mig_codecs[id]->sent(c, index, held);
}

int mig_codec_encode(struct mig_codec_ctx *c, uint64_t index, const uint8_t *src, bool hole,
		     uint8_t *dst, uint32_t *len, const uint8_t **held)
{
	bool timed = c->mode != MIG_COMPRESS_NONE;
	uint64_t t0 = timed ? mig_codec_now() : 0;
	int id;

	if (hole || mig_page_is_zero(src)) {
		if (!(c->allowed & MIG_CODEC_BIT(MIG_CODEC_ZERO)))
			goto raw_live;
		id = MIG_CODEC_ZERO;
		*len = 0;
		*held = NULL;
		goto out;
	}
	if (c->mode == MIG_COMPRESS_NONE)
		goto raw_live;
	if (c->mode == MIG_COMPRESS_ADAPTIVE && mig_adaptive_raw_only(c)) {
		c->gave_up++;
		goto raw_fast;
	}
	/* One copy of the page: what is encoded, digested and cached. */
	memcpy(c->snap, src, GUEST_PAGE_SIZE);
	*held = c->snap;
	id = c->mode == MIG_COMPRESS_ADAPTIVE ? mig_adaptive_encode(c, index, dst, len)
					       : mig_codec_fixed(c, index, dst, len);
	if (id < 0) {
		if (!(c->allowed & MIG_CODEC_BIT(MIG_CODEC_RAW)))
			return -EINVAL;
		memcpy(dst, c->snap, GUEST_PAGE_SIZE);
		id = MIG_CODEC_RAW;
		*len = GUEST_PAGE_SIZE;
	}
	mig_codec_sent(c, index, *held);
	uint64_t ns = mig_codec_now() - t0;
	if (c->mode == MIG_COMPRESS_ADAPTIVE)
		mig_adaptive_note(c, ns, *len);
	mig_codec_count(c, (unsigned)id, *len, ns);
	return id;
raw_fast:
	if (!(c->allowed & MIG_CODEC_BIT(MIG_CODEC_RAW)))
		return -EINVAL;
	memcpy(dst, src, GUEST_PAGE_SIZE);
	id = MIG_CODEC_RAW;
	*len = GUEST_PAGE_SIZE;
	*held = dst;
	/* No copy kept: delta's slot for the page is dropped, not refilled. */
	mig_codec_sent(c, index, NULL);
	mig_codec_count(c, (unsigned)id, *len, mig_codec_now() - t0);
	return id;
raw_live:
	if (!(c->allowed & MIG_CODEC_BIT(MIG_CODEC_RAW)))
		return -EINVAL;
	/* Raw's copy is the snapshot: the bytes sent are what is held. */
	memcpy(dst, src, GUEST_PAGE_SIZE);
	id = MIG_CODEC_RAW;
	*len = GUEST_PAGE_SIZE;
	*held = dst;
out:
	mig_codec_sent(c, index, *held);
	mig_codec_count(c, (unsigned)id, *len, timed ? mig_codec_now() - t0 : 0);
	return id;
}

int mig_codec_encode_ref(struct mig_codec_ctx *c, uint64_t index, const uint8_t *src, bool hole,
			 uint32_t *len, const uint8_t **held)
{
	int id;

	if ((hole || mig_page_is_zero(src)) && (c->allowed & MIG_CODEC_BIT(MIG_CODEC_ZERO))) {
		id = MIG_CODEC_ZERO;
		*len = 0;
		*held = NULL;
	} else {
		if (!(c->allowed & MIG_CODEC_BIT(MIG_CODEC_RAW)))
			return -EINVAL;
		id = MIG_CODEC_RAW;
		*len = GUEST_PAGE_SIZE;
		*held = src;
	}
	mig_codec_sent(c, index, *held);
	mig_codec_count(c, (unsigned)id, *len, 0);
	return id;
}

json_object *mig_codec_stats_json(const struct mig_codec_stats st[MIG_CODEC_NR],
				  const struct mig_delta_stats *d, uint64_t gave_up)
{
	json_object *o = json_object_new_object();

	for (unsigned id = 0; id < MIG_CODEC_NR; id++) {
		json_object *k = json_object_new_object();
		json_object_object_add(k, "pages", json_object_new_int64((int64_t)st[id].pages));
		json_object_object_add(k, "bytes-in", json_object_new_int64((int64_t)st[id].bytes_in));
		json_object_object_add(k, "bytes-out",
				       json_object_new_int64((int64_t)st[id].bytes_out));
		json_object_object_add(k, "cpu-ns", json_object_new_int64((int64_t)st[id].cpu_ns));
		json_object_object_add(o, mig_codecs[id]->name, k);
	}
	json_object *x = json_object_new_object();
	json_object_object_add(x, "cache-hits", json_object_new_int64((int64_t)d->hits));
	json_object_object_add(x, "cache-misses", json_object_new_int64((int64_t)d->misses));
	json_object_object_add(x, "cache-overflows", json_object_new_int64((int64_t)d->overflows));
	json_object_object_add(o, "delta-cache", x);
	json_object_object_add(o, "adaptive-gave-up", json_object_new_int64((int64_t)gave_up));
	return o;
}

void mig_codec_names(uint32_t mask, char *buf, unsigned len)
{
	unsigned off = 0;

	buf[0] = '\0';
	for (unsigned id = 0; id < 32 && off < len; id++) {
		if (!(mask & (1u << id)))
			continue;
		const struct mig_codec *k = mig_codec_get(id);
		int n = k ? snprintf(buf + off, len - off, "%s%s", off ? "," : "", k->name)
			  : snprintf(buf + off, len - off, "%s#%u", off ? "," : "", id);
		off += n > 0 ? (unsigned)n : 0;
	}
}
