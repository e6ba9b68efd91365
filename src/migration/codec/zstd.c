/*
 * The zstd codec: one zstd frame per page, at the migration's level
 * (--compress-level), without checksum (the section has one) and with the
 * content size in its header.  The contexts are made once per migration
 * (they cost far more than a page).  A frame must decode to exactly one
 * page: one that says it holds more, or decodes past 4 KiB, is refused.
 */
#include "migration/codec/codec.h"

#include <errno.h>
#include <stdlib.h>
#include <zstd.h>

#define MIG_ZSTD_MIN_SAVING	64u
#define MIG_ZSTD_MAX		(GUEST_PAGE_SIZE - MIG_ZSTD_MIN_SAVING)

struct zstd_state {
	ZSTD_CCtx *cctx;		/* source */
	ZSTD_DCtx *dctx;		/* destination */
};

static int zstd_init(struct mig_codec_ctx *c)
{
	struct zstd_state *z = calloc(1, sizeof(*z));

	if (!z)
		return -ENOMEM;
	c->priv[MIG_CODEC_ZSTD] = z;
	if (c->source) {
		z->cctx = ZSTD_createCCtx();
		if (!z->cctx)
			return -ENOMEM;
		int level = c->level < ZSTD_minCLevel() ? ZSTD_minCLevel() :
			    c->level > ZSTD_maxCLevel() ? ZSTD_maxCLevel() : c->level;
		ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_compressionLevel, level);
		ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_checksumFlag, 0);
		ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_contentSizeFlag, 1);
		return 0;
	}
	z->dctx = ZSTD_createDCtx();
	return z->dctx ? 0 : -ENOMEM;
}

static void zstd_fini(struct mig_codec_ctx *c)
{
	struct zstd_state *z = c->priv[MIG_CODEC_ZSTD];

	if (!z)
		return;
	ZSTD_freeCCtx(z->cctx);
	ZSTD_freeDCtx(z->dctx);
	free(z);
	c->priv[MIG_CODEC_ZSTD] = NULL;
}

static int zstd_encode(struct mig_codec_ctx *c, uint64_t index, const uint8_t *page, uint8_t *dst)
{
	struct zstd_state *z = c->priv[MIG_CODEC_ZSTD];
	size_t n = ZSTD_compress2(z->cctx, dst, MIG_ZSTD_MAX, page, GUEST_PAGE_SIZE);

	/* An error here is "does not fit": the page is sent otherwise. */
	return ZSTD_isError(n) ? -1 : (int)n;
}

static int zstd_decode(struct mig_codec_ctx *c, const uint8_t *in, uint32_t len, uint8_t *page)
{
	struct zstd_state *z = c->priv[MIG_CODEC_ZSTD];
	/* The header must promise exactly a page before anything is decoded. */
	unsigned long long size = ZSTD_getFrameContentSize(in, len);

	if (size != GUEST_PAGE_SIZE)
		return -EPROTO;
	size_t n = ZSTD_decompressDCtx(z->dctx, page, GUEST_PAGE_SIZE, in, len);
	return !ZSTD_isError(n) && n == GUEST_PAGE_SIZE ? 0 : -EPROTO;
}

const struct mig_codec mig_codec_zstd = {
	.id = MIG_CODEC_ZSTD,
	.name = "zstd",
	.init = zstd_init,
	.fini = zstd_fini,
	.encode = zstd_encode,
	.decode = zstd_decode,
	.min_len = 1,
	.max_len = MIG_ZSTD_MAX,
};
