/*
 * The page codecs (src/migration/codec/): every codec's encode/decode
 * round trip on pages of different character, the encoder's choice per
 * compression mode, delta's cache (hits, misses, overflows, a slot kept
 * equal to what the destination holds), and hostile input to every
 * decoder: lengths that decode past a page or short of it, truncated
 * input, malformed runs; and the vectorised zero check.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <lz4.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "migration/codec/codec.h"

#define PG GUEST_PAGE_SIZE

static uint64_t t_rng = 0x9e3779b97f4a7c15ULL;

static uint64_t t_rand(void)
{
	t_rng ^= t_rng << 13;
	t_rng ^= t_rng >> 7;
	t_rng ^= t_rng << 17;
	return t_rng;
}

/* Pages of different character: random, text-like, a fill, sparse. */
static void t_page(uint8_t *p, int kind)
{
	switch (kind) {
	case 0:		/* random: no codec shrinks it */
		for (unsigned i = 0; i < PG; i++)
			p[i] = (uint8_t)t_rand();
		break;
	case 1:		/* text-like: a small alphabet */
		for (unsigned i = 0; i < PG; i++)
			p[i] = (uint8_t)("abcdefgh ,.\n"[t_rand() % 12]);
		break;
	case 2:		/* a fill of one word */
		for (unsigned i = 0; i < PG; i += 8)
			memcpy(p + i, "FERRY!!\n", 8);
		break;
	default:	/* mostly zero, a few bytes set */
		memset(p, 0, PG);
		for (unsigned i = 0; i < 16; i++)
			p[t_rand() % PG] = (uint8_t)(t_rand() | 1);
		break;
	}
}

struct t_ctx {
	struct mig_codec_ctx src, dst;
};

static void t_ctx_init(struct t_ctx *t, enum mig_compress mode, uint64_t cache)
{
	assert_int_equal(mig_codec_ctx_init(&t->src, true, mode, mig_compress_codecs(mode), 3,
					    cache), 0);
	assert_int_equal(mig_codec_ctx_init(&t->dst, false, MIG_COMPRESS_NONE, MIG_CODECS_KNOWN,
					    0, 0), 0);
}

static void t_ctx_fini(struct t_ctx *t)
{
	mig_codec_ctx_fini(&t->src);
	mig_codec_ctx_fini(&t->dst);
}

/*
 * Encode page `index` and decode it as the destination would onto `held`
 * (its copy, updated); the result must equal what the encoder says the
 * destination holds, and the page.  Returns the codec id.
 */
static int t_send(struct t_ctx *t, uint64_t index, const uint8_t *page, uint8_t *held)
{
	uint8_t enc[PG], out[PG];
	const uint8_t *h;
	uint32_t len;
	int id = mig_codec_encode(&t->src, index, page, false, enc, &len, &h);
	const struct mig_codec *k = mig_codec_get((unsigned)id);

	assert_true(id >= 0);
	assert_non_null(k);
	assert_in_range(len, k->min_len, k->max_len);
	if (k->zero) {
		memset(out, 0, PG);
		assert_null(h);
	} else if (k->verbatim) {
		memcpy(out, enc, PG);
	} else {
		memcpy(out, held, PG);
		assert_int_equal(k->decode(&t->dst, enc, len, out), 0);
	}
	assert_memory_equal(out, page, PG);
	if (h)
		assert_memory_equal(h, page, PG);
	memcpy(held, out, PG);
	return id;
}

static void test_round_trip_each_mode(void **state)
{
	uint8_t page[PG], held[PG];
	/* Per mode, the codec each kind of page should travel with. */
	static const int want[MIG_COMPRESS_NR][4] = {
		[MIG_COMPRESS_NONE] = { MIG_CODEC_RAW, MIG_CODEC_RAW, MIG_CODEC_RAW, MIG_CODEC_RAW },
		[MIG_COMPRESS_LZ4] = { MIG_CODEC_RAW, MIG_CODEC_LZ4, MIG_CODEC_LZ4, MIG_CODEC_LZ4 },
		[MIG_COMPRESS_ZSTD] = { MIG_CODEC_RAW, MIG_CODEC_ZSTD, MIG_CODEC_ZSTD, MIG_CODEC_ZSTD },
		/* First sends: the cache holds nothing yet. */
		[MIG_COMPRESS_DELTA] = { MIG_CODEC_RAW, MIG_CODEC_RAW, MIG_CODEC_RAW, MIG_CODEC_RAW },
		[MIG_COMPRESS_ADAPTIVE] = { MIG_CODEC_RAW, -1, MIG_CODEC_LZ4, -1 },
	};

	for (int mode = 0; mode < MIG_COMPRESS_NR; mode++) {
		struct t_ctx t;
		t_ctx_init(&t, (enum mig_compress)mode, 1 << 20);
		for (int kind = 0; kind < 4; kind++) {
			t_page(page, kind);
			memset(held, 0, PG);
			int id = t_send(&t, (uint64_t)kind, page, held);
			if (want[mode][kind] >= 0)
				assert_int_equal(id, want[mode][kind]);
			else
				assert_int_not_equal(id, MIG_CODEC_RAW);	/* it shrank */
		}
		memset(page, 0, PG);
		assert_int_equal(t_send(&t, 9, page, held), MIG_CODEC_ZERO);
		assert_int_equal(t.src.stats[MIG_CODEC_ZERO].pages, 1);
		t_ctx_fini(&t);
	}
}

/* Delta: a re-sent page travels as its changes; the cache follows every send. */
static void test_delta_cache(void **state)
{
	uint8_t page[PG], held[PG];
	struct t_ctx t;

	t_ctx_init(&t, MIG_COMPRESS_DELTA, 4 * PG);	/* four slots */
	t_page(page, 0);
	memset(held, 0, PG);
	assert_int_equal(t_send(&t, 1, page, held), MIG_CODEC_RAW);
	assert_int_equal(t.src.delta.misses, 1);
	/* A few bytes changed: a delta of a few bytes. */
	page[10] ^= 0xff;
	page[4000] ^= 0x01;
	page[4095] ^= 0x80;
	assert_int_equal(t_send(&t, 1, page, held), MIG_CODEC_DELTA);
	assert_int_equal(t.src.delta.hits, 1);
	assert_true(t.src.stats[MIG_CODEC_DELTA].bytes_out < 16);
	/* Unchanged: an empty delta. */
	assert_int_equal(t_send(&t, 1, page, held), MIG_CODEC_DELTA);
	assert_int_equal(t.src.stats[MIG_CODEC_DELTA].bytes_out < 16, true);
	/* Everything changed: overflow, raw, and the cache takes the new copy. */
	t_page(page, 0);
	assert_int_equal(t_send(&t, 1, page, held), MIG_CODEC_RAW);
	assert_int_equal(t.src.delta.overflows, 1);
	page[100] ^= 0x55;
	assert_int_equal(t_send(&t, 1, page, held), MIG_CODEC_DELTA);
	/* Page 5 takes page 1's slot (5 % 4): page 1 misses next time. */
	uint8_t other[PG], held5[PG] = { 0 };
	t_page(other, 1);
	t_send(&t, 5, other, held5);
	page[200] ^= 0x55;
	uint64_t misses = t.src.delta.misses;
	assert_int_equal(t_send(&t, 1, page, held), MIG_CODEC_RAW);
	assert_int_equal(t.src.delta.misses, misses + 1);
	/* A zero page drops its copy: zero is cheaper than any delta. */
	memset(page, 0, PG);
	assert_int_equal(t_send(&t, 1, page, held), MIG_CODEC_ZERO);
	page[7] = 1;
	misses = t.src.delta.misses;
	assert_int_not_equal(t_send(&t, 1, page, held), MIG_CODEC_DELTA);
	assert_int_equal(t.src.delta.misses, misses + 1);
	t_ctx_fini(&t);
}

/* Random edits against random pages: the delta decodes to the page, always. */
static void test_delta_random_edits(void **state)
{
	uint8_t old[PG], page[PG], enc[PG], out[PG];
	struct t_ctx t;

	t_ctx_init(&t, MIG_COMPRESS_DELTA, PG);
	for (int round = 0; round < 2000; round++) {
		t_page(old, round % 4);
		memcpy(page, old, PG);
		unsigned edits = (unsigned)(t_rand() % 64);
		for (unsigned e = 0; e < edits; e++) {
			unsigned at = (unsigned)(t_rand() % PG), n = (unsigned)(t_rand() % 9);
			for (unsigned i = 0; i < n && at + i < PG; i++)
				page[at + i] = (uint8_t)t_rand();
		}
		int n = mig_delta_encode(old, page, enc, mig_codec_delta.max_len);
		if (n < 0)
			continue;
		memcpy(out, old, PG);
		assert_int_equal(mig_codec_delta.decode(&t.dst, enc, (uint32_t)n, out), 0);
		assert_memory_equal(out, page, PG);
	}
	t_ctx_fini(&t);
}

static void t_refused(const struct mig_codec *k, struct mig_codec_ctx *c, const uint8_t *in,
		      uint32_t len)
{
	uint8_t out[PG];

	memset(out, 0xaa, PG);
	assert_int_equal(k->decode(c, in, len, out), -EPROTO);
}

static void test_hostile_lz4(void **state)
{
	uint8_t page[PG], enc[2 * PG], big[2 * PG];
	struct t_ctx t;

	t_ctx_init(&t, MIG_COMPRESS_LZ4, 0);
	t_page(page, 1);
	int n = LZ4_compress_default((char *)page, (char *)enc, PG, sizeof(enc));
	assert_true(n > 0);
	for (int cut = 1; cut < n; cut += 97)
		t_refused(&mig_codec_lz4, &t.dst, enc, (uint32_t)cut);
	/* A block that decodes to two pages: refused, nothing past the page written. */
	memset(big, 0, sizeof(big));
	n = LZ4_compress_default((char *)big, (char *)enc, sizeof(big), sizeof(enc));
	assert_true(n > 0 && n < (int)PG);
	t_refused(&mig_codec_lz4, &t.dst, enc, (uint32_t)n);
	/* Half a page: refused (short of a page). */
	n = LZ4_compress_default((char *)page, (char *)enc, PG / 2, sizeof(enc));
	t_refused(&mig_codec_lz4, &t.dst, enc, (uint32_t)n);
	/* Garbage. */
	for (int i = 0; i < 200; i++) {
		uint8_t out[PG];
		for (unsigned j = 0; j < 64; j++)
			enc[j] = (uint8_t)t_rand();
		int r = mig_codec_lz4.decode(&t.dst, enc, 64, out);
		assert_true(r == 0 || r == -EPROTO);
	}
	t_ctx_fini(&t);
}

static void test_hostile_zstd(void **state)
{
	uint8_t page[PG], enc[2 * PG], big[2 * PG];
	struct t_ctx t;

	t_ctx_init(&t, MIG_COMPRESS_ZSTD, 0);
	t_page(page, 1);
	size_t n = ZSTD_compress(enc, sizeof(enc), page, PG, 1);
	assert_false(ZSTD_isError(n));
	for (size_t cut = 1; cut < n; cut += 61)
		t_refused(&mig_codec_zstd, &t.dst, enc, (uint32_t)cut);
	/* A frame of two pages (it says so, or not): refused. */
	memset(big, 0, sizeof(big));
	n = ZSTD_compress(enc, sizeof(enc), big, sizeof(big), 1);
	t_refused(&mig_codec_zstd, &t.dst, enc, (uint32_t)n);
	/* Two frames of a page each: decodes past the page, refused. */
	size_t one = ZSTD_compress(enc, sizeof(enc), big, PG, 1);
	memcpy(enc + one, enc, one);
	t_refused(&mig_codec_zstd, &t.dst, enc, (uint32_t)(2 * one));
	/* Half a page. */
	n = ZSTD_compress(enc, sizeof(enc), page, PG / 2, 1);
	t_refused(&mig_codec_zstd, &t.dst, enc, (uint32_t)n);
	t_ctx_fini(&t);
}

static void test_hostile_delta(void **state)
{
	struct t_ctx t;

	t_ctx_init(&t, MIG_COMPRESS_DELTA, PG);
	/* Runs past the page. */
	static const uint8_t past[] = { 0xff, 0x1f, 0x02, 'a', 'b' };	/* skip 4095, 2 bytes */
	t_refused(&mig_codec_delta, &t.dst, past, sizeof(past));
	static const uint8_t past2[] = { 0x00, 0x81, 0x20 };		/* 4097 bytes */
	t_refused(&mig_codec_delta, &t.dst, past2, sizeof(past2));
	/* A run longer than the input left. */
	static const uint8_t cut[] = { 0x00, 0x05, 'a', 'b' };
	t_refused(&mig_codec_delta, &t.dst, cut, sizeof(cut));
	/* A zero-length run; a number of three bytes; a number cut in half. */
	static const uint8_t zero[] = { 0x01, 0x00 };
	t_refused(&mig_codec_delta, &t.dst, zero, sizeof(zero));
	static const uint8_t wide[] = { 0x80, 0x80, 0x01, 0x01, 'a' };
	t_refused(&mig_codec_delta, &t.dst, wide, sizeof(wide));
	static const uint8_t half[] = { 0x00, 0x81 };
	t_refused(&mig_codec_delta, &t.dst, half, sizeof(half));
	/* Two runs that together pass the end. */
	uint8_t two[8 + 2 * 100];
	unsigned o = 0;
	two[o++] = 0x80 | (4000 & 0x7f);
	two[o++] = 4000 >> 7;
	two[o++] = 50;
	memset(two + o, 'x', 50);
	o += 50;
	two[o++] = 0x00;
	two[o++] = 50;
	memset(two + o, 'y', 50);
	o += 50;
	t_refused(&mig_codec_delta, &t.dst, two, o);
	/* Random bytes never crash it and never write past the page. */
	for (int i = 0; i < 2000; i++) {
		uint8_t in[64], out[PG + 64];
		for (unsigned j = 0; j < sizeof(in); j++)
			in[j] = (uint8_t)t_rand();
		memset(out + PG, 0x5a, 64);
		int r = mig_codec_delta.decode(&t.dst, in, (uint32_t)(t_rand() % sizeof(in)), out);
		assert_true(r == 0 || r == -EPROTO);
		for (unsigned j = 0; j < 64; j++)
			assert_int_equal(out[PG + j], 0x5a);
	}
	t_ctx_fini(&t);
}

/* Adaptive: sends raw once the link is faster than compression pays for. */
static void test_adaptive_fast_link(void **state)
{
	uint8_t page[PG], held[PG];
	struct t_ctx t;

	t_ctx_init(&t, MIG_COMPRESS_ADAPTIVE, 1 << 20);
	t.src.link_bps = 1ULL << 50;	/* a link no compressor keeps up with */
	unsigned raw = 0;
	for (int i = 0; i < 256; i++) {
		t_page(page, 1);
		raw += t_send(&t, (uint64_t)i, page, held) == MIG_CODEC_RAW;
	}
	/* All but the first tries and the periodic probes go raw. */
	assert_true(raw >= 200);
	/* A slow link: text pages compress. */
	t.src.link_bps = 1000000;
	unsigned shrunk = 0;
	for (int i = 0; i < 256; i++) {
		t_page(page, 1);
		shrunk += t_send(&t, (uint64_t)(1000 + i), page, held) != MIG_CODEC_RAW;
	}
	assert_true(shrunk >= 250);
	/* Random pages give up after the probe, without a compressor. */
	uint64_t zstd_pages = t.src.stats[MIG_CODEC_ZSTD].pages, gave_up = t.src.gave_up;
	for (int i = 0; i < 64; i++) {
		t_page(page, 0);
		assert_int_equal(t_send(&t, (uint64_t)(5000 + i), page, held), MIG_CODEC_RAW);
	}
	assert_int_equal(t.src.stats[MIG_CODEC_ZSTD].pages, zstd_pages);
	assert_int_equal(t.src.gave_up, gave_up + 64);
	t_ctx_fini(&t);
}

/*
 * Adaptive, rule 5: on a link where zstd does not pay page by page (the
 * encoder needs twice a raw page's wire time for one), pages of text
 * alone go mostly raw, but among random pages (sent raw after a cheap
 * probe, keeping the link busy) the encoder has time to spare, and they
 * go zstd.
 */
static unsigned t_zstd_share(struct t_ctx *t, uint64_t *idx, unsigned text, unsigned randoms)
{
	uint8_t page[PG], held[PG];
	uint64_t z0 = t->src.stats[MIG_CODEC_ZSTD].pages;

	for (unsigned i = 0; i < text; i++) {
		for (unsigned r = 0; r < randoms; r++) {
			t_page(page, 0);
			t_send(t, (*idx)++, page, held);
		}
		t_page(page, 1);
		t_send(t, (*idx)++, page, held);
	}
	return (unsigned)(t->src.stats[MIG_CODEC_ZSTD].pages - z0);
}

/*
 * One try: calibrate the link to the zstd cost just measured, then count.
 * Timing decides, so a machine busy in one phase and not the other can
 * spoil a try: the caller tries again.
 */
static bool t_spare_try(unsigned *alone, unsigned *mixed)
{
	struct t_ctx t;
	uint64_t idx = 0;

	t_ctx_init(&t, MIG_COMPRESS_ADAPTIVE, 1 << 20);
	/* A slow link, where zstd pays: learn what a page of text costs. */
	t.src.link_bps = 1000000;
	assert_true(t_zstd_share(&t, &idx, 128, 0) >= 64);
	const struct mig_codec_stats *z = &t.src.stats[MIG_CODEC_ZSTD];
	double ns = (double)z->cpu_ns / (double)z->pages;
	t.src.link_bps = (uint64_t)(PG * 1e9 / (ns / 2));
	/* Text alone: mostly raw (some zstd while raw pages leave time). */
	*alone = t_zstd_share(&t, &idx, 256, 0);
	/*
	 * Sixteen random pages to each page of text: time to spare, zstd, once
	 * the encoder's recent pages (ADAPTIVE_WINDOW) are mostly these.
	 */
	t_zstd_share(&t, &idx, 256, 16);
	*mixed = t_zstd_share(&t, &idx, 256, 16);
	print_message("zstd %.0f ns a page; of 256 pages of text: %u alone, %u among random\n",
		      ns, *alone, *mixed);
	t_ctx_fini(&t);
	return *alone <= 160 && *mixed >= 200;
}

static void test_adaptive_spare_time(void **state)
{
	unsigned alone = 0, mixed = 0;
	bool ok = false;

	for (int i = 0; i < 3 && !ok; i++)
		ok = t_spare_try(&alone, &mixed);
	assert_true(alone <= 160);
	assert_true(mixed >= 200);
}

static void test_zero_check(void **state)
{
	uint8_t *page = aligned_alloc(64, PG);

	memset(page, 0, PG);
	assert_true(mig_page_is_zero(page));
	for (unsigned i = 0; i < PG; i += 37) {
		page[i] = 1;
		assert_false(mig_page_is_zero(page));
		page[i] = 0;
	}
	page[PG - 1] = 0x80;
	assert_false(mig_page_is_zero(page));
	page[PG - 1] = 0;
	free(page);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip_each_mode),
		cmocka_unit_test(test_delta_cache),
		cmocka_unit_test(test_delta_random_edits),
		cmocka_unit_test(test_hostile_lz4),
		cmocka_unit_test(test_hostile_zstd),
		cmocka_unit_test(test_hostile_delta),
		cmocka_unit_test(test_adaptive_fast_link),
		cmocka_unit_test(test_adaptive_spare_time),
		cmocka_unit_test(test_zero_check),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
