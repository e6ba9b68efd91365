/*
 * The raw codec: the page's bytes as they are.  It takes every page, so it
 * is the fallback every migration must allow.  The copy made here is the
 * one snapshot of a page the guest may be writing: the checksum, the
 * digest and the bytes sent must all be of one copy.  On the destination
 * the data is read straight into guest RAM (verbatim): no decode.
 */
#include "migration/codec/codec.h"

#include <string.h>

static int raw_encode(struct mig_codec_ctx *c, uint64_t index, const uint8_t *page, uint8_t *dst)
{
	memcpy(dst, page, GUEST_PAGE_SIZE);
	return (int)GUEST_PAGE_SIZE;
}

const struct mig_codec mig_codec_raw = {
	.id = MIG_CODEC_RAW,
	.name = "raw",
	.encode = raw_encode,
	.min_len = GUEST_PAGE_SIZE,
	.max_len = GUEST_PAGE_SIZE,
	.verbatim = true,
};
