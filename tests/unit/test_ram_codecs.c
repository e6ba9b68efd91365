/*
 * The destination's RAM decoder (src/migration/dest/ram_load.c) against
 * RAM sections whose pages the real encoder (codec.c) encoded, in every
 * --compress mode: guest RAM must end up equal to the source's pages, pass
 * after pass (delta re-sends included); and against hostile RAM sections,
 * one per encoding: an lz4 block or zstd frame that decodes past 4 KiB,
 * one cut short, a delta against a page this side never had, a delta in
 * post-copy, a codec that was not negotiated, a section shorter than its
 * entries say.  Each is refused with -EPROTO and a reason naming it.
 *
 * The sections are whole payloads handed to ram_load() as the dispatcher
 * would after the checksum; guest RAM is a real memfd-backed
 * guest_memory.  No KVM needed.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <lz4.h>
#include <xxhash.h>
#include <zstd.h>

#include "migration/codec/codec.h"
#include "migration/dest/incoming.h"
#include "migration/dest/incoming_internal.h"
#include "migration/format.h"
#include "migration/ram.h"
#include "migration/ram_pool.h"
#include "migration/section.h"
#include "util/le.h"
#include "vmm/memory.h"

#define PG GUEST_PAGE_SIZE
#define T_MEM (16ULL << 20)
#define T_PAGES 64u		/* pages the tests send, from gpa 0 */

struct t_env {
	struct machine m;
	struct mig_incoming inc;
	struct mig_in_ctx c;
	uint8_t *src;		/* the source's copy of the T_PAGES pages */
};

static uint64_t t_rng = 0x2545f4914f6cdd1dULL;

static uint64_t t_rand(void)
{
	t_rng ^= t_rng << 13;
	t_rng ^= t_rng >> 7;
	t_rng ^= t_rng << 17;
	return t_rng;
}

static int t_setup(void **state)
{
	struct t_env *e = calloc(1, sizeof(*e));
	uint64_t pages = T_MEM / PG;

	assert_non_null(e);
	assert_int_equal(guest_memory_create(&e->m.vm.mem, T_MEM), 0);
	e->inc.written = calloc(pages / 64 + 1, sizeof(unsigned long));
	e->inc.known = calloc(pages / 64 + 1, sizeof(unsigned long));
	e->inc.page = aligned_alloc(64, PG);
	e->inc.codecs = MIG_CODECS_KNOWN;
	assert_int_equal(mig_codec_ctx_init(&e->inc.codec, false, MIG_COMPRESS_NONE,
					    MIG_CODECS_KNOWN, 0, 0), 0);
	e->c = (struct mig_in_ctx){ .inc = &e->inc, .m = &e->m, .type = MIG_SEC_RAM };
	e->src = aligned_alloc(64, T_PAGES * PG);
	assert_non_null(e->src);
	*state = e;
	return 0;
}

static int t_teardown(void **state)
{
	struct t_env *e = *state;

	mig_codec_ctx_fini(&e->inc.codec);
	free(e->inc.written);
	free(e->inc.known);
	free(e->inc.page);
	free(e->src);
	guest_memory_destroy(&e->m.vm.mem);
	free(e);
	return 0;
}

/* A RAM section being built: entries then data, as ram.c writes it. */
struct t_sec {
	uint8_t ents[MIG_RAM_BATCH_MAX * MIG_RAM_ENTRY];
	uint8_t data[MIG_RAM_BATCH_MAX * PG];
	uint32_t n, bytes;
};

static void t_entry(struct t_sec *s, uint64_t gpa, unsigned id, const void *data, uint32_t len)
{
	le_put(s->ents + MIG_RAM_ENTRY * s->n, gpa | id, 8);
	le_put(s->ents + MIG_RAM_ENTRY * s->n + 8, len, 4);
	memcpy(s->data + s->bytes, data, len);
	s->n++;
	s->bytes += len;
}

/* Load the section; its result, the reason left in inc.why. */
static int t_load(struct t_env *e, const struct t_sec *s, uint32_t cut)
{
	uint32_t len = 4 + MIG_RAM_ENTRY * s->n + s->bytes - cut;
	uint8_t *p = malloc(len + cut);
	struct mig_payload in;

	assert_non_null(p);
	le_put(p, s->n, 4);
	memcpy(p + 4, s->ents, MIG_RAM_ENTRY * s->n);
	memcpy(p + 4 + MIG_RAM_ENTRY * s->n, s->data, s->bytes);
	mig_payload_whole(&in, p, len);
	e->inc.why[0] = '\0';
	int err = ram_load(&e->c, MIG_SEC_RAM, &in);
	free(p);
	return err;
}

/* Pages of mixed character: zero, random, text-like, a fill. */
static void t_fill(uint8_t *p, unsigned i)
{
	switch (i % 4) {
	case 0:
		memset(p, 0, PG);
		break;
	case 1:
		for (unsigned k = 0; k < PG; k++)
			p[k] = (uint8_t)t_rand();
		break;
	case 2:
		for (unsigned k = 0; k < PG; k++)
			p[k] = (uint8_t)("the quick brown fox "[t_rand() % 20]);
		break;
	default:
		for (unsigned k = 0; k < PG; k += 4)
			le_put(p + k, i, 4);
		break;
	}
}

static bool t_is_zero(const uint8_t *p)
{
	for (unsigned k = 0; k < PG; k++)
		if (p[k])
			return false;
	return true;
}

/* Send every page through the encoder as one section; guest RAM must match. */
static void t_pass(struct t_env *e, struct mig_codec_ctx *enc, uint64_t *used)
{
	static struct t_sec s;
	uint8_t out[PG];

	memset(&s, 0, sizeof(s));
	for (unsigned i = 0; i < T_PAGES; i++) {
		const uint8_t *held;
		uint32_t len;
		int id = mig_codec_encode(enc, i, e->src + i * PG, false, out, &len, &held);
		assert_true(id >= 0);
		used[id]++;
		t_entry(&s, (uint64_t)i * PG, (unsigned)id, out, len);
	}
	assert_int_equal(t_load(e, &s, 0), 0);
	assert_memory_equal(guest_memory_ptr(&e->m.vm.mem, 0, T_PAGES * PG), e->src, T_PAGES * PG);
}

static void test_each_mode_round_trips(void **state)
{
	struct t_env *e = *state;

	for (int mode = 0; mode < MIG_COMPRESS_NR; mode++) {
		struct mig_codec_ctx enc;
		uint64_t used[MIG_CODEC_NR] = { 0 };

		assert_int_equal(mig_codec_ctx_init(&enc, true, (enum mig_compress)mode,
						    mig_compress_codecs((enum mig_compress)mode), 3,
						    1 << 20), 0);
		enc.link_bps = 1000000;		/* a slow link: adaptive compresses */
		for (unsigned i = 0; i < T_PAGES; i++)
			t_fill(e->src + i * PG, i + (unsigned)mode);
		t_pass(e, &enc, used);
		/* Second pass: a few bytes of every page change (delta's case). */
		for (unsigned i = 0; i < T_PAGES; i++)
			e->src[i * PG + t_rand() % PG] ^= 0x5a;
		t_pass(e, &enc, used);
		/* Every mode's own codec carried pages. */
		static const int own[MIG_COMPRESS_NR] = {
			[MIG_COMPRESS_NONE] = MIG_CODEC_RAW, [MIG_COMPRESS_LZ4] = MIG_CODEC_LZ4,
			[MIG_COMPRESS_ZSTD] = MIG_CODEC_ZSTD, [MIG_COMPRESS_DELTA] = MIG_CODEC_DELTA,
			[MIG_COMPRESS_ADAPTIVE] = MIG_CODEC_DELTA,
		};
		assert_true(used[own[mode]] > 0);
		if (mode == MIG_COMPRESS_DELTA || mode == MIG_COMPRESS_ADAPTIVE)
			assert_true(used[MIG_CODEC_DELTA] >= T_PAGES / 2);
		mig_codec_ctx_fini(&enc);
	}
}

/* A hostile entry must be refused with -EPROTO and a reason containing `why`. */
static void t_refused(struct t_env *e, const struct t_sec *s, uint32_t cut, const char *why)
{
	assert_int_equal(t_load(e, s, cut), -EPROTO);
	if (!strstr(e->inc.why, why))
		fail_msg("reason \"%s\" does not say \"%s\"", e->inc.why, why);
}

static void test_hostile_lz4(void **state)
{
	struct t_env *e = *state;
	static uint8_t big[2 * PG], enc[2 * PG];
	static struct t_sec s;

	/* Decodes to two pages, in fewer bytes than a page. */
	memset(big, 0, sizeof(big));
	int n = LZ4_compress_default((char *)big, (char *)enc, sizeof(big), sizeof(enc));
	memset(&s, 0, sizeof(s));
	t_entry(&s, 0x1000, MIG_CODEC_LZ4, enc, (uint32_t)n);
	t_refused(e, &s, 0, "bad lz4 data");
	/* A block cut short (the entry says so too). */
	n = LZ4_compress_default((char *)big, (char *)enc, PG, sizeof(enc));
	memset(&s, 0, sizeof(s));
	t_entry(&s, 0x1000, MIG_CODEC_LZ4, enc, (uint32_t)n - 3);
	t_refused(e, &s, 0, "bad lz4 data");
	/* Longer than an lz4 page may be. */
	memset(&s, 0, sizeof(s));
	t_entry(&s, 0x1000, MIG_CODEC_LZ4, big, PG);
	t_refused(e, &s, 0, "lz4 page of 4096 bytes");
	/* The section ends inside the block. */
	memset(&s, 0, sizeof(s));
	t_entry(&s, 0x1000, MIG_CODEC_LZ4, enc, (uint32_t)n);
	t_refused(e, &s, 5, "need");
}

static void test_hostile_zstd(void **state)
{
	struct t_env *e = *state;
	static uint8_t big[2 * PG], enc[2 * PG];
	static struct t_sec s;

	memset(big, 0, sizeof(big));
	size_t n = ZSTD_compress(enc, sizeof(enc), big, sizeof(big), 1);
	memset(&s, 0, sizeof(s));
	t_entry(&s, 0x2000, MIG_CODEC_ZSTD, enc, (uint32_t)n);
	t_refused(e, &s, 0, "bad zstd data");
	/* Two one-page frames in one entry: past 4 KiB. */
	size_t one = ZSTD_compress(enc, sizeof(enc), big, PG, 1);
	memcpy(enc + one, enc, one);
	memset(&s, 0, sizeof(s));
	t_entry(&s, 0x2000, MIG_CODEC_ZSTD, enc, (uint32_t)(2 * one));
	t_refused(e, &s, 0, "bad zstd data");
	/* A frame cut short. */
	memset(&s, 0, sizeof(s));
	t_entry(&s, 0x2000, MIG_CODEC_ZSTD, enc, (uint32_t)one - 2);
	t_refused(e, &s, 0, "bad zstd data");
}

static void test_hostile_delta(void **state)
{
	struct t_env *e = *state;
	static struct t_sec s;
	static const uint8_t d[] = { 0x10, 0x02, 'h', 'i' };	/* bytes 16..17 := "hi" */
	static uint8_t page[PG];

	/* A delta against a page this side never had. */
	memset(&s, 0, sizeof(s));
	t_entry(&s, 0x5000, MIG_CODEC_DELTA, d, sizeof(d));
	t_refused(e, &s, 0, "does not hold");
	/* Once the page arrived, the same delta applies. */
	memset(page, 0x11, PG);
	memset(&s, 0, sizeof(s));
	t_entry(&s, 0x5000, MIG_CODEC_RAW, page, PG);
	t_entry(&s, 0x5000, MIG_CODEC_DELTA, d, sizeof(d));
	assert_int_equal(t_load(e, &s, 0), 0);
	uint8_t *g = guest_memory_ptr(&e->m.vm.mem, 0x5000, PG);
	assert_int_equal(g[16], 'h');
	assert_int_equal(g[17], 'i');
	assert_int_equal(g[15], 0x11);
	assert_int_equal(g[18], 0x11);
	/* A run past the end of the page. */
	static const uint8_t past[] = { 0xff, 0x1f, 0x02, 'a', 'b' };
	memset(&s, 0, sizeof(s));
	t_entry(&s, 0x5000, MIG_CODEC_DELTA, past, sizeof(past));
	t_refused(e, &s, 0, "bad delta data");
	assert_int_equal(g[4095], 0x11);
	/* A run longer than its entry. */
	static const uint8_t cut[] = { 0x00, 0x09, 'a' };
	memset(&s, 0, sizeof(s));
	t_entry(&s, 0x5000, MIG_CODEC_DELTA, cut, sizeof(cut));
	t_refused(e, &s, 0, "bad delta data");
	/* In post-copy the destination holds no copy the source can count on. */
	e->inc.guest_started = true;
	memset(&s, 0, sizeof(s));
	t_entry(&s, 0x5000, MIG_CODEC_DELTA, d, sizeof(d));
	t_refused(e, &s, 0, "does not hold");
	e->inc.guest_started = false;
}

static void test_not_negotiated(void **state)
{
	struct t_env *e = *state;
	static struct t_sec s;
	uint8_t enc[PG], page[PG];

	memset(page, 7, PG);
	int n = LZ4_compress_default((char *)page, (char *)enc, PG, sizeof(enc));
	e->inc.codecs = MIG_CODECS_BASE;
	memset(&s, 0, sizeof(s));
	t_entry(&s, 0x3000, MIG_CODEC_LZ4, enc, (uint32_t)n);
	t_refused(e, &s, 0, "was not negotiated");
	/* An id no ferry knows. */
	memset(&s, 0, sizeof(s));
	t_entry(&s, 0x3000, MIG_CODEC_NR, enc, (uint32_t)n);
	t_refused(e, &s, 0, "unknown encoding");
	e->inc.codecs = MIG_CODECS_KNOWN;
}

/*
 * The encoder pool: jobs come back in the order they were queued whatever
 * order the workers finish them in; sections made from them, loaded in
 * that order over three passes of sparse rewrites, leave guest RAM equal
 * to the source's pages, with delta's shared cache used by every worker;
 * the digest the workers computed is of exactly those pages.
 */
static void test_pool_in_order(void **state)
{
	struct t_env *e = *state;
	struct mig_codec_ctx main;
	struct mig_digest dg;
	struct ram_pool pool;
	static struct t_sec s;
	const uint32_t per_job = 5;	/* small jobs: many in flight at once */
	uint64_t deltas = 0;

	assert_int_equal(mig_codec_ctx_init(&main, true, MIG_COMPRESS_ADAPTIVE, MIG_CODECS_KNOWN, 1,
					    1 << 20), 0);
	assert_int_equal(mig_digest_init(&dg, &e->m.vm.mem), 0);
	assert_int_equal(ram_pool_start(&pool, 3, &main, &dg), 0);
	for (unsigned i = 0; i < T_PAGES; i++)
		t_fill(e->src + i * PG, i);
	for (int pass = 0; pass < 3; pass++) {
		unsigned next_page = 0, written = 0;
		while (written < T_PAGES) {
			/* Fill and queue jobs while slots are free, then write the oldest. */
			while (next_page < T_PAGES && !ram_pool_full(&pool)) {
				struct ram_job *j = ram_pool_current(&pool);
				j->link_bps = 1000000;
				for (uint32_t k = 0; k < per_job && next_page < T_PAGES; k++, next_page++) {
					j->gpa[j->count] = (uint64_t)next_page * PG;
					j->index[j->count] = next_page;
					j->src[j->count] = e->src + next_page * PG;
					j->hole[j->count] = false;
					j->count++;
				}
				ram_pool_submit(&pool);
			}
			struct ram_job *j = ram_pool_oldest(&pool);
			assert_non_null(j);
			assert_int_equal(j->err, 0);
			assert_int_equal(j->gpa[0], (uint64_t)written * PG);	/* in order */
			memset(&s, 0, sizeof(s));
			uint32_t off = 0;
			for (uint32_t k = 0; k < j->count; k++) {
				t_entry(&s, j->gpa[k], (unsigned)(j->word[k] & MIG_PAGE_ENC_MASK),
					j->data + off, j->len[k]);
				off += j->len[k];
				deltas += (j->word[k] & MIG_PAGE_ENC_MASK) == MIG_CODEC_DELTA;
			}
			written += j->count;
			ram_pool_release(&pool);
			assert_int_equal(t_load(e, &s, 0), 0);
		}
		assert_null(ram_pool_oldest(&pool));
		assert_memory_equal(guest_memory_ptr(&e->m.vm.mem, 0, T_PAGES * PG), e->src,
				    T_PAGES * PG);
		for (unsigned i = 0; i < T_PAGES; i++) {
			uint64_t want = XXH3_64bits(e->src + i * PG, PG);
			if (!t_is_zero(e->src + i * PG))
				assert_int_equal(dg.hash[i] ^ dg.zero, want);
		}
		/* Sparse rewrites for the next pass. */
		for (unsigned i = 0; i < T_PAGES; i++)
			e->src[i * PG + t_rand() % PG] ^= 0x3c;
	}
	/* Pages of passes 2 and 3 are deltas against the shared cache. */
	assert_true(deltas >= T_PAGES);
	ram_pool_stop(&pool);
	mig_digest_free(&dg);
	mig_codec_ctx_fini(&main);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_each_mode_round_trips, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_hostile_lz4, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_hostile_zstd, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_hostile_delta, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_not_negotiated, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_pool_in_order, t_setup, t_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
