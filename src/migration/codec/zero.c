/*
 * The zero codec: an all-zero page travels as its entry alone.  Checked
 * first because it is the cheapest (a read of the page, no write).
 */
#include "migration/codec/codec.h"

#include <stddef.h>

#include "vmm/memory.h"

static int zero_encode(const uint8_t *page, uint8_t *dst)
{
	const uint64_t *w = (const uint64_t *)page;

	for (size_t i = 0; i < GUEST_PAGE_SIZE / 8; i++)
		if (w[i])
			return -1;
	return 0;
}

const struct mig_codec mig_codec_zero = {
	.id = MIG_CODEC_ZERO,
	.name = "zero",
	.encode = zero_encode,
	.min_len = 0,
	.max_len = 0,
	.cpu_cost = 1,
	.zero = true,
};
