/*
 * The lz4 codec: one LZ4 block (no frame: the entry carries the length)
 * that decodes to exactly one page.  Taken only when it shrinks the page
 * by at least MIG_LZ4_MIN_SAVING bytes; else raw costs less to decode.
 * LZ4_decompress_safe never writes past the page or reads past the input,
 * whatever the input: a block that would decode to more or less than a
 * page is refused.
 */
#include "migration/codec/codec.h"

#include <errno.h>
#include <lz4.h>

#define MIG_LZ4_MIN_SAVING	64u
#define MIG_LZ4_MAX		(GUEST_PAGE_SIZE - MIG_LZ4_MIN_SAVING)

static int lz4_encode(struct mig_codec_ctx *c, uint64_t index, const uint8_t *page, uint8_t *dst)
{
	/* 0 when the block would not fit in MIG_LZ4_MAX bytes. */
	int n = LZ4_compress_default((const char *)page, (char *)dst, (int)GUEST_PAGE_SIZE,
				     (int)MIG_LZ4_MAX);

	return n > 0 ? n : -1;
}

static int lz4_decode(struct mig_codec_ctx *c, const uint8_t *in, uint32_t len, uint8_t *page)
{
	int n = LZ4_decompress_safe((const char *)in, (char *)page, (int)len, (int)GUEST_PAGE_SIZE);

	return n == (int)GUEST_PAGE_SIZE ? 0 : -EPROTO;
}

const struct mig_codec mig_codec_lz4 = {
	.id = MIG_CODEC_LZ4,
	.name = "lz4",
	.encode = lz4_encode,
	.decode = lz4_decode,
	.min_len = 1,
	.max_len = MIG_LZ4_MAX,
};
