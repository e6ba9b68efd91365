/*
 * The zero codec: an all-zero page travels as its entry alone.  Checked
 * first because it is the cheapest (a read of the page, no write).
 *
 * The check ORs the page in SSE2 registers (the x86-64 baseline) and
 * tests the result once per 256 bytes: a non-zero page usually shows it in
 * its first bytes, a zero one is read at memory speed.  Side by side on
 * zero pages (-O2, one run on a shared machine), the word-at-a-time loop
 * with a branch per word it replaces ran at 15 GB/s from cache and
 * 15-18 GB/s from memory; this at 93-99 and 30-33 GB/s.
 */
#include "migration/codec/codec.h"

#include <emmintrin.h>
#include <stddef.h>

bool mig_page_is_zero(const uint8_t *page)
{
	const __m128i *v = (const __m128i *)page;

	for (size_t i = 0; i < GUEST_PAGE_SIZE / 16; i += 16) {
		__m128i a = _mm_or_si128(_mm_or_si128(_mm_loadu_si128(v + i), _mm_loadu_si128(v + i + 1)),
					 _mm_or_si128(_mm_loadu_si128(v + i + 2), _mm_loadu_si128(v + i + 3)));
		__m128i b = _mm_or_si128(_mm_or_si128(_mm_loadu_si128(v + i + 4), _mm_loadu_si128(v + i + 5)),
					 _mm_or_si128(_mm_loadu_si128(v + i + 6), _mm_loadu_si128(v + i + 7)));
		__m128i c = _mm_or_si128(_mm_or_si128(_mm_loadu_si128(v + i + 8), _mm_loadu_si128(v + i + 9)),
					 _mm_or_si128(_mm_loadu_si128(v + i + 10), _mm_loadu_si128(v + i + 11)));
		__m128i d = _mm_or_si128(_mm_or_si128(_mm_loadu_si128(v + i + 12), _mm_loadu_si128(v + i + 13)),
					 _mm_or_si128(_mm_loadu_si128(v + i + 14), _mm_loadu_si128(v + i + 15)));
		__m128i all = _mm_or_si128(_mm_or_si128(a, b), _mm_or_si128(c, d));
		if (_mm_movemask_epi8(_mm_cmpeq_epi8(all, _mm_setzero_si128())) != 0xffff)
			return false;
	}
	return true;
}

static int zero_encode(struct mig_codec_ctx *c, uint64_t index, const uint8_t *page, uint8_t *dst)
{
	return mig_page_is_zero(page) ? 0 : -1;
}

const struct mig_codec mig_codec_zero = {
	.id = MIG_CODEC_ZERO,
	.name = "zero",
	.encode = zero_encode,
	.min_len = 0,
	.max_len = 0,
	.zero = true,
};
