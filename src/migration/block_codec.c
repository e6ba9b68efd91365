/*
 * Block data through a codec (block.h, MIG_BLOCK_DATA_Z): a range of a
 * disk (a 64 KiB chunk or less) encoded whole with the migration's
 * --compress codec, sent only when it saves at least BLOCK_Z_MIN_SAVING
 * of the range; else it goes as DATA.  The record, after kind and disk:
 *
 *   offset (u64), codec (u8: 2 lz4, 3 zstd), length (u32: the bytes it
 *   decodes to, 1..MIG_BLOCK_CHUNK), then the encoded bytes
 *
 * lz4: one LZ4 block (no frame).  zstd: one frame at --compress-level,
 * its content size in its header, no checksum (the section has one).
 * The destination checks the header before it decodes a byte, and the
 * payload must decode to exactly `length` bytes, shorter than it was:
 * anything else is refused as hostile.  Both sides run in the migration
 * thread (the source) and the receiving thread (the destination), never
 * in a vCPU thread.
 */
#include "migration/block.h"
#include "migration/block_internal.h"

#include <errno.h>
#include <lz4.h>
#include <stdio.h>
#include <stdlib.h>
#include <zstd.h>

#include "util/le.h"

uint8_t mig_block_z_codec(enum mig_compress mode)
{
	switch (mode) {
	case MIG_COMPRESS_LZ4:
	case MIG_COMPRESS_ADAPTIVE:	/* per chunk, lz4 is the choice that pays at link speed */
		return MIG_CODEC_LZ4;
	case MIG_COMPRESS_ZSTD:
		return MIG_CODEC_ZSTD;
	default:			/* none; delta, whose fallback is raw */
		return MIG_CODEC_RAW;
	}
}

int mig_block_z_init(struct mig_block_z *z, uint8_t codec, int level)
{
	z->codec = codec;
	z->buf = malloc(BLOCK_Z_HDR + MIG_BLOCK_CHUNK);
	if (!z->buf)
		return -ENOMEM;
	if (codec != MIG_CODEC_ZSTD)
		return 0;
	z->cctx = ZSTD_createCCtx();
	if (!z->cctx)
		return -ENOMEM;
	level = level < ZSTD_minCLevel() ? ZSTD_minCLevel() :
		level > ZSTD_maxCLevel() ? ZSTD_maxCLevel() : level;
	ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_compressionLevel, level);
	ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_checksumFlag, 0);
	ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_contentSizeFlag, 1);
	return 0;
}

void mig_block_z_fini(struct mig_block_z *z)
{
	ZSTD_freeCCtx(z->cctx);
	ZSTD_freeDCtx(z->dctx);
	free(z->buf);
	*z = (struct mig_block_z){ 0 };
}

int mig_block_z_encode(struct mig_block_z *z, uint64_t off, const uint8_t *src, uint32_t len)
{
	uint8_t *dst = z->buf + BLOCK_Z_HDR;
	int n = -1;

	if (len > MIG_BLOCK_CHUNK || len <= BLOCK_Z_MIN_SAVING(len) + BLOCK_Z_HDR)
		return -1;
	/* What it may take and still pay, record header included. */
	uint32_t cap = len - BLOCK_Z_MIN_SAVING(len) - BLOCK_Z_HDR;
	if (z->codec == MIG_CODEC_LZ4) {
		n = LZ4_compress_default((const char *)src, (char *)dst, (int)len, (int)cap);
		n = n > 0 ? n : -1;
	} else if (z->codec == MIG_CODEC_ZSTD && z->cctx) {
		size_t r = ZSTD_compress2(z->cctx, dst, cap, src, len);
		n = ZSTD_isError(r) ? -1 : (int)r;	/* an error: it does not fit */
	}
	if (n <= 0)
		return -1;
	le_put(z->buf, off, 8);
	z->buf[8] = z->codec;
	le_put(z->buf + 9, len, 4);
	return BLOCK_Z_HDR + n;
}

int mig_block_z_parse(const uint8_t *p, uint32_t n, struct mig_block_z_rec *r, char *why,
		      size_t whylen)
{
	if (n <= BLOCK_Z_HDR) {
		snprintf(why, whylen, "DATA_Z cut short (%u bytes)", n);
		return -EPROTO;
	}
	r->off = le_get(p, 8);
	r->codec = p[8];
	r->len = (uint32_t)le_get(p + 9, 4);
	r->payload = p + BLOCK_Z_HDR;
	r->plen = n - BLOCK_Z_HDR;
	if (r->codec != MIG_CODEC_LZ4 && r->codec != MIG_CODEC_ZSTD) {
		snprintf(why, whylen, "DATA_Z with unknown codec %u", r->codec);
		return -EPROTO;
	}
	if (!r->len || r->len > MIG_BLOCK_CHUNK) {
		snprintf(why, whylen, "DATA_Z of %u bytes (1..%u)", r->len, MIG_BLOCK_CHUNK);
		return -EPROTO;
	}
	if (r->plen >= r->len) {
		snprintf(why, whylen, "DATA_Z of %u bytes encoded in %u", r->len, r->plen);
		return -EPROTO;
	}
	return 0;
}

int mig_block_z_decode(struct mig_block_z *z, const struct mig_block_z_rec *r, uint8_t *out)
{
	if (r->codec == MIG_CODEC_LZ4) {
		int n = LZ4_decompress_safe((const char *)r->payload, (char *)out, (int)r->plen,
					    (int)r->len);
		return n == (int)r->len ? 0 : -EPROTO;
	}
	if (r->codec != MIG_CODEC_ZSTD)
		return -EPROTO;
	/*
	 * One current-format frame, nothing else: no skippable frame, no
	 * frame of the legacy formats libzstd may still decode.
	 */
	if (r->plen < 4 || le_get(r->payload, 4) != ZSTD_MAGICNUMBER)
		return -EPROTO;
	if (!z->dctx && !(z->dctx = ZSTD_createDCtx()))
		return -ENOMEM;
	/* The header must promise exactly the length before anything is decoded. */
	if (ZSTD_getFrameContentSize(r->payload, r->plen) != r->len)
		return -EPROTO;
	size_t n = ZSTD_decompressDCtx(z->dctx, out, r->len, r->payload, r->plen);
	return !ZSTD_isError(n) && n == r->len ? 0 : -EPROTO;
}
