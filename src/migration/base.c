#include "migration/base.h"

#include <errno.h>
#include <stdio.h>

#include "util/le.h"

uint32_t mig_base_sums_encode(uint8_t *out, uint64_t first, uint32_t count, const uint64_t *sums)
{
	le_put(out, first, 8);
	le_put(out + 8, count, 4);
	for (uint32_t k = 0; k < count; k++)
		le_put(out + MIG_BASE_SUMS_HDR + 8 * (size_t)k, sums[k], 8);
	return MIG_BASE_SUMS_HDR + 8 * count;
}

int mig_base_sums_decode(const uint8_t *p, uint32_t len, uint64_t next, uint64_t pages,
			 uint32_t *count, char *why, size_t whylen)
{
	if (len < MIG_BASE_SUMS_HDR || next >= pages) {
		snprintf(why, whylen, "destination's base digests are malformed (%u bytes)", len);
		return -EPROTO;
	}
	uint64_t first = le_get(p, 8);
	uint32_t n = (uint32_t)le_get(p + 8, 4), want = mig_base_sums_count(next, pages);
	/* want <= MIG_BASE_SUMS_MAX: the length below cannot overflow. */
	if (first != next || n != want || len != MIG_BASE_SUMS_HDR + 8 * want) {
		snprintf(why, whylen, "destination's base digests are malformed (%u bytes, pages "
			 "%llu + %u; want %llu + %u)", len, (unsigned long long)first, n,
			 (unsigned long long)next, want);
		return -EPROTO;
	}
	*count = n;
	return 0;
}

uint64_t mig_base_sum(const uint8_t *p, uint32_t k)
{
	return le_get(p + MIG_BASE_SUMS_HDR + 8 * (size_t)k, 8);
}

uint32_t mig_base_diff(const uint8_t *p, uint32_t k0, const uint64_t *mine, uint32_t n,
		       unsigned long *owed, uint64_t bit0)
{
	const unsigned lb = 8 * sizeof(unsigned long);
	uint32_t differ = 0;

	for (uint32_t i = 0; i < n; i++) {
		uint64_t b = bit0 + i;
		unsigned long bit = 1UL << (b % lb);
		if (mig_base_sum(p, k0 + i) != mine[i]) {
			owed[b / lb] |= bit;
			differ++;
		} else {
			owed[b / lb] &= ~bit;
		}
	}
	return differ;
}

int mig_base_fits(const struct mig_config *base, const struct mig_config *cfg, char *why,
		  size_t whylen)
{
	if (base->memory != cfg->memory) {
		snprintf(why, whylen, "the base holds %llu MiB of RAM, the VM that arrives %llu MiB",
			 (unsigned long long)(base->memory >> 20),
			 (unsigned long long)(cfg->memory >> 20));
		return -EINVAL;
	}
	if (base->page_size != cfg->page_size) {
		snprintf(why, whylen, "the base has pages of %u bytes, the VM that arrives %u",
			 base->page_size, cfg->page_size);
		return -EINVAL;
	}
	return 0;
}
