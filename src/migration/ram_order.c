/*
 * Ordered propagation's pure parts (ram_order.h): pass 1's chunk counts
 * and chunk order, rewrite histories, the send order by bucket, and where
 * a pass stops early.
 */
#include "migration/ram_order.h"

#include <string.h>

#define ORDER_BITS (8 * sizeof(unsigned long))

static const char *const mig_order_names[MIG_ORDER_NR] = {
	[MIG_ORDER_ADDRESS] = "address",
	[MIG_ORDER_REWRITE] = "rewrite",
};

int mig_order_parse(const char *name)
{
	for (int o = 0; o < MIG_ORDER_NR; o++)
		if (!strcmp(name, mig_order_names[o]))
			return o;
	return -1;
}

const char *mig_order_name(enum mig_order order)
{
	return order < MIG_ORDER_NR ? mig_order_names[order] : "?";
}

/* The bits of word l that are pages of a `pages`-page bitmap. */
static unsigned long order_word_mask(uint64_t l, uint64_t pages)
{
	uint64_t end = (l + 1) * ORDER_BITS;

	if (end <= pages)
		return ~0UL;
	return (1UL << (pages % ORDER_BITS)) - 1;
}

static bool order_all_zero(const uint8_t *h, uint64_t n)
{
	uint64_t acc = 0, v;
	uint64_t i = 0;

	for (; i + 8 <= n; i += 8) {
		memcpy(&v, h + i, 8);
		acc |= v;
	}
	for (; i < n; i++)
		acc |= h[i];
	return !acc;
}

uint64_t ram_order_note(uint8_t *history, const unsigned long *seen, uint64_t pages)
{
	uint64_t longs = (pages + ORDER_BITS - 1) / ORDER_BITS, n = 0;

	for (uint64_t l = 0; l < longs; l++) {
		unsigned long w = seen[l] & order_word_mask(l, pages);
		uint64_t p0 = l * ORDER_BITS;
		uint64_t end = p0 + ORDER_BITS < pages ? p0 + ORDER_BITS : pages;
		if (!w && order_all_zero(history + p0, end - p0))
			continue;	/* cold and not seen: stays 0 (most of an idle guest) */
		for (uint64_t p = p0; p < end; p++) {
			unsigned bit = (unsigned)((w >> (p - p0)) & 1);
			history[p] = (uint8_t)((history[p] >> 1) | (bit << 7));
			n += bit;
		}
	}
	return n;
}

/* Call fn(c, global index) for every marked page, region by region, by address. */
#define ORDER_FOR_EACH(rg, nr, BODY)							\
	for (unsigned r_ = 0; r_ < (nr); r_++) {					\
		const struct ram_order_region *g_ = &(rg)[r_];				\
		uint64_t longs_ = (g_->pages + ORDER_BITS - 1) / ORDER_BITS;		\
		for (uint64_t l_ = 0; l_ < longs_; l_++) {				\
			unsigned long w_ = g_->dirty[l_] & order_word_mask(l_, g_->pages); \
			while (w_) {							\
				uint64_t p_ = l_ * ORDER_BITS + (unsigned)__builtin_ctzl(w_); \
				w_ &= w_ - 1;						\
				unsigned c = g_->count ? g_->count[p_] : 0;		\
				uint64_t index = g_->first + p_;			\
				BODY							\
			}								\
		}									\
	}

uint64_t ram_order_build(const struct ram_order_region *rg, unsigned nr, uint32_t *out,
			 uint64_t hist[RAM_ORDER_BUCKETS])
{
	uint64_t at[RAM_ORDER_BUCKETS], n = 0;

	memset(hist, 0, RAM_ORDER_BUCKETS * sizeof(hist[0]));
	ORDER_FOR_EACH(rg, nr, { (void)index; hist[c]++; });
	for (unsigned c = 0; c < RAM_ORDER_BUCKETS; c++) {
		at[c] = n;
		n += hist[c];
	}
	ORDER_FOR_EACH(rg, nr, { out[at[c]++] = (uint32_t)index; });
	return n;
}

uint64_t ram_order_cutoff(const uint64_t hist[RAM_ORDER_BUCKETS], uint64_t max_tail)
{
	uint64_t total = 0, tail = 0;
	unsigned lowest = RAM_ORDER_BUCKETS;

	for (unsigned c = 0; c < RAM_ORDER_BUCKETS; c++) {
		total += hist[c];
		if (hist[c] && lowest == RAM_ORDER_BUCKETS)
			lowest = c;
		if (c >= RAM_ORDER_HOT)
			tail += hist[c];
	}
	return lowest >= RAM_ORDER_HOT || tail > max_tail ? total : total - tail;
}

uint64_t ram_order_chunk_counts(const unsigned long *seen, uint64_t pages, uint32_t *count)
{
	uint64_t chunks = (pages + RAM_ORDER_CHUNK - 1) / RAM_ORDER_CHUNK;
	uint64_t longs = (pages + ORDER_BITS - 1) / ORDER_BITS;

	for (uint64_t c = 0; c < chunks; c++) {
		uint64_t l0 = c * (RAM_ORDER_CHUNK / ORDER_BITS), l1 = l0 + RAM_ORDER_CHUNK / ORDER_BITS;
		uint32_t n = 0;

		for (uint64_t l = l0; l < l1 && l < longs; l++)
			n += (uint32_t)__builtin_popcountl(seen[l] & order_word_mask(l, pages));
		count[c] = n;
	}
	return chunks;
}

void ram_order_sort_chunks(uint32_t *ids, uint64_t n, const uint32_t *count, uint32_t *tmp)
{
	uint64_t at[RAM_ORDER_CHUNK + 1] = { 0 }, sum = 0;

	for (uint64_t i = 0; i < n; i++) {
		uint32_t c = count[ids[i]];
		at[c < RAM_ORDER_CHUNK ? c : RAM_ORDER_CHUNK]++;
	}
	for (unsigned c = 0; c <= RAM_ORDER_CHUNK; c++) {
		uint64_t k = at[c];
		at[c] = sum;
		sum += k;
	}
	for (uint64_t i = 0; i < n; i++) {
		uint32_t c = count[ids[i]];
		tmp[at[c < RAM_ORDER_CHUNK ? c : RAM_ORDER_CHUNK]++] = ids[i];
	}
	memcpy(ids, tmp, n * sizeof(*ids));
}
