/*
 * The adaptive mode (characteristic-based compression, CBC): each page
 * goes with the codec its features say pays, judged by cheap features of
 * the page and by what each codec has been costing:
 *
 *   1. all zero: zero (codec.c checked that already);
 *   2. the delta cache holds the copy last sent: delta, unless too much
 *      changed (delta's overflow) -- a scan as cheap as a compare;
 *   3. a probe of 256 sampled bytes and 64 sampled words: few distinct
 *      words (runs, fills, tables): lz4, fast and enough; a byte entropy
 *      near random: raw at once (the page would not shrink: give up
 *      before spending a compressor on it); else zstd, or lz4 when zstd
 *      is not negotiated or does not pay;
 *   4. a compressor is used only while it pays on this link: the encoder
 *      threads (working side by side while the migration thread writes)
 *      must compress pages faster than the link carries raw ones, with a
 *      fifth to spare; else the encoder, not the link, would set the pace
 *      and raw is faster.  The link's rate is measured by ram.c as bytes
 *      written per second spent writing (a fast link writes at memory
 *      speed, so there compression stops paying and pages go raw).  Every
 *      64th page of a class is compressed anyway, to keep the estimate of
 *      what it costs fresh;
 *   5. or while the encoders have time to spare over the recent pages as
 *      a whole: a page that costs more to compress than a raw page takes
 *      on the wire still pays when the pages around it (random, sent raw
 *      after a cheap probe) keep the link busy meanwhile.  What the
 *      encoders spent on the last pages that were not zero, against what
 *      the link needs for the bytes they made, with a fifth to spare: a
 *      slower, smaller codec is taken while it fits, so on a mix the
 *      encoders settle where they keep pace with the link.
 */
#include "migration/codec/codec.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ADAPTIVE_SAMPLE_BYTES	256u
#define ADAPTIVE_SAMPLE_WORDS	64u
#define ADAPTIVE_FEW_WORDS	6u	/* distinct sampled words: a fill or a table */
#define ADAPTIVE_RANDOM_BITS	6.6	/* sampled byte entropy: too close to random */
#define ADAPTIVE_EXPLORE	64u	/* one page in this many is tried regardless */
#define ADAPTIVE_WINDOW		(8u << 20)	/* bytes out the spare-time sums follow */

struct mig_adaptive {
	/* n*log2(n) for n = 0..256: the entropy of a histogram without logs. */
	double nlogn[ADAPTIVE_SAMPLE_BYTES + 1];
	/* Per compressor: moving averages of ns per page and bytes saved per page. */
	double ns[MIG_CODEC_NR], saved[MIG_CODEC_NR];
	uint64_t tries[MIG_CODEC_NR];
	uint32_t tick;
	/* What the whole choice costs per page that is not zero (codec.c times it). */
	double page_ns;
	uint64_t pages;
	/* The same pages' encoder time and bytes out, summed, halved as they grow. */
	double win_ns, win_bytes;
	uint32_t fast_tick;		/* pages seen by mig_adaptive_raw_only() */
};

int mig_adaptive_init(struct mig_codec_ctx *c)
{
	struct mig_adaptive *a = calloc(1, sizeof(*a));

	if (!a)
		return -ENOMEM;
	for (unsigned n = 1; n <= ADAPTIVE_SAMPLE_BYTES; n++)
		a->nlogn[n] = n * log2((double)n);
	c->adaptive = a;
	return 0;
}

void mig_adaptive_fini(struct mig_codec_ctx *c)
{
	free(c->adaptive);
	c->adaptive = NULL;
}

static uint64_t adaptive_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* How many distinct words among the sampled ones (at most 64). */
static unsigned adaptive_distinct_words(const uint8_t *page)
{
	uint64_t seen[ADAPTIVE_SAMPLE_WORDS];
	unsigned n = 0;

	for (unsigned i = 0; i < ADAPTIVE_SAMPLE_WORDS; i++) {
		uint64_t w;
		memcpy(&w, page + i * (GUEST_PAGE_SIZE / ADAPTIVE_SAMPLE_WORDS), 8);
		unsigned k = 0;
		while (k < n && seen[k] != w)
			k++;
		if (k == n) {
			seen[n++] = w;
			if (n > ADAPTIVE_FEW_WORDS)
				return n;	/* enough to know it is not few */
		}
	}
	return n;
}

/* Shannon entropy, in bits per byte, of the sampled bytes. */
static double adaptive_entropy(const struct mig_adaptive *a, const uint8_t *page)
{
	uint16_t hist[256] = { 0 };
	double sum = 0;

	for (unsigned i = 0; i < ADAPTIVE_SAMPLE_BYTES; i++)
		hist[page[i * (GUEST_PAGE_SIZE / ADAPTIVE_SAMPLE_BYTES) + (i & 15)]]++;
	for (unsigned b = 0; b < 256; b++)
		sum += a->nlogn[hist[b]];
	return log2((double)ADAPTIVE_SAMPLE_BYTES) - sum / ADAPTIVE_SAMPLE_BYTES;
}

/* Does compressor id pay on this link, by what it has cost so far? */
static bool adaptive_pays(const struct mig_codec_ctx *c, unsigned id)
{
	const struct mig_adaptive *a = c->adaptive;

	if (!(c->allowed & MIG_CODEC_BIT(id)))
		return false;
	if (!c->link_bps || a->tries[id] < 3)
		return true;	/* not measured enough yet: find out */
	if (a->saved[id] < 1)
		return false;
	/* The encoders' time per page against the wire time of a raw page. */
	double encoders = c->encoders ? c->encoders : 1;
	return a->ns[id] / encoders * 1e-9 * (double)c->link_bps < 0.8 * GUEST_PAGE_SIZE;
}

/*
 * Rule 5: over the recent pages, is the encoders' time under four fifths
 * of the link's time for the bytes they made?
 */
static bool adaptive_spare(const struct mig_codec_ctx *c)
{
	const struct mig_adaptive *a = c->adaptive;
	double encoders = c->encoders ? c->encoders : 1;

	if (!c->link_bps || a->win_bytes < 16 * GUEST_PAGE_SIZE)
		return false;
	return a->win_ns / encoders < 0.8 * a->win_bytes * 1e9 / (double)c->link_bps;
}

/* May compressor id be used: it pays on its own (rule 4), or there is time to spare (5). */
static bool adaptive_affordable(const struct mig_codec_ctx *c, unsigned id)
{
	const struct mig_adaptive *a = c->adaptive;

	if (adaptive_pays(c, id))
		return true;
	return (c->allowed & MIG_CODEC_BIT(id)) && a->saved[id] >= 1 && adaptive_spare(c);
}

/* Compress the snapshot with id, learning what it cost. */
static int adaptive_try(struct mig_codec_ctx *c, unsigned id, uint64_t index, uint8_t *dst)
{
	struct mig_adaptive *a = c->adaptive;
	uint64_t t0 = adaptive_now();
	int n = mig_codec_get(id)->encode(c, index, c->snap, dst);
	double ns = (double)(adaptive_now() - t0);
	double saved = n < 0 ? 0 : (double)(GUEST_PAGE_SIZE - (uint32_t)n);

	/*
	 * Moving averages over about the last 16 pages it was tried on; the
	 * time falls fast and rises slowly, so a first call (cold caches, a
	 * context's allocations) or a preempted one does not condemn a codec.
	 */
	/* The first call warms caches and allocates: not a measurement. */
	if (a->tries[id]++ <= 1) {
		a->ns[id] = ns;
		a->saved[id] = saved;
		return n;
	}
	a->ns[id] += ns < a->ns[id] ? (ns - a->ns[id]) / 2 : (ns - a->ns[id]) / 16;
	a->saved[id] += (saved - a->saved[id]) / 16;
	return n;
}

/*
 * On a link that carries raw pages faster than any compressor pays for,
 * and faster than this encoder can even choose (features, snapshot,
 * delta's cache), every page goes raw by the plain path, with nothing
 * measured or cached; one page in 64 still takes the whole path, so a
 * link that slows down is noticed.
 */
bool mig_adaptive_raw_only(struct mig_codec_ctx *c)
{
	struct mig_adaptive *a = c->adaptive;

	if (!c->link_bps || a->pages < 16 || ++a->fast_tick % ADAPTIVE_EXPLORE == 0)
		return false;
	if (adaptive_affordable(c, MIG_CODEC_LZ4) || adaptive_affordable(c, MIG_CODEC_ZSTD))
		return false;
	double encoders = c->encoders ? c->encoders : 1;
	return a->page_ns / encoders * 1e-9 * (double)c->link_bps > 0.8 * GUEST_PAGE_SIZE;
}

void mig_adaptive_note(struct mig_codec_ctx *c, uint64_t ns, uint32_t len)
{
	struct mig_adaptive *a = c->adaptive;
	double x = (double)ns;

	a->win_ns += x;
	a->win_bytes += len;
	if (a->win_bytes > ADAPTIVE_WINDOW) {
		a->win_ns /= 2;
		a->win_bytes /= 2;
	}

	/* As adaptive_try's: falls fast, rises slowly (a preempted page is noise). */
	if (!a->pages++)
		a->page_ns = x;
	else
		a->page_ns += x < a->page_ns ? (x - a->page_ns) / 2 : (x - a->page_ns) / 16;
}

int mig_adaptive_encode(struct mig_codec_ctx *c, uint64_t index, uint8_t *dst, uint32_t *len)
{
	struct mig_adaptive *a = c->adaptive;
	bool explore = ++a->tick % ADAPTIVE_EXPLORE == 0;
	unsigned id;
	int n;

	if ((c->allowed & MIG_CODEC_BIT(MIG_CODEC_DELTA)) && !c->delta_off) {
		n = mig_codec_get(MIG_CODEC_DELTA)->encode(c, index, c->snap, dst);
		if (n >= 0) {
			*len = (uint32_t)n;
			return MIG_CODEC_DELTA;
		}
	}
	if (adaptive_distinct_words(c->snap) <= ADAPTIVE_FEW_WORDS) {
		id = MIG_CODEC_LZ4;
	} else if (adaptive_entropy(a, c->snap) >= ADAPTIVE_RANDOM_BITS) {
		c->gave_up++;
		return -1;
	} else if (explore) {
		/* Each compressor in turn, so both estimates stay fresh. */
		id = (a->tick / ADAPTIVE_EXPLORE) % 2 && (c->allowed & MIG_CODEC_BIT(MIG_CODEC_ZSTD)) ?
		     MIG_CODEC_ZSTD : MIG_CODEC_LZ4;
	} else {
		id = adaptive_affordable(c, MIG_CODEC_ZSTD) ? MIG_CODEC_ZSTD : MIG_CODEC_LZ4;
	}
	if (!(c->allowed & MIG_CODEC_BIT(id)) || (!explore && !adaptive_affordable(c, id)))
		return -1;
	n = adaptive_try(c, id, index, dst);
	if (n < 0) {
		c->gave_up++;
		return -1;
	}
	*len = (uint32_t)n;
	return (int)id;
}
