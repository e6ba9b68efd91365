/*
 * fill.c - fill all free RAM with zero, text-like, random or mixed pages,
 * so that migration compression is measured on realistic content.  Each
 * vCPU fills its share of the free pages, in ring 3.
 */
#include "user.h"

static const char *const words[64] = {
	"the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was",
	"with", "be", "by", "on", "not", "he", "this", "are", "or", "his",
	"from", "at", "which", "but", "have", "an", "had", "they", "you",
	"were", "their", "one", "all", "we", "can", "her", "has", "there",
	"been", "if", "more", "when", "will", "would", "who", "so", "no",
	"memory", "page", "migration", "virtual", "machine", "guest", "host",
	"dirty", "copy", "state", "network", "time", "system", "data",
	"between", "through",
};

static void fill_text(u8 *p, u64 *rng)
{
	u32 n = 0, col = 0, in_sentence = 0;

	while (n < PAGE_SIZE) {
		u64 r = xorshift64(rng);
		const char *w = words[r & 63];
		bool cap = !in_sentence;

		for (; *w && n < PAGE_SIZE; w++, n++, col++)
			p[n] = cap && w == words[r & 63] ? *w - 32 : *w;
		in_sentence = (r >> 8) % 12;            /* ~1 in 12 ends a sentence */
		if (n < PAGE_SIZE && !in_sentence)
			p[n++] = '.', col++;
		if (n < PAGE_SIZE) {
			p[n++] = col > 72 ? '\n' : ' ';
			col = col > 72 ? 0 : col + 1;
		}
	}
}

static void fill_random(u64 *p, u64 *rng)
{
	for (u32 i = 0; i < PAGE_SIZE / 8; i++)
		p[i] = xorshift64(rng);
}

static void fill_page(u64 addr, u64 *rng)
{
	enum fill kind = sh.cfg.fill;

	if (kind == FILL_MIXED) {
		/* by page: 40% zero, 30% text, 30% random */
		u64 h = mix64(addr ^ sh.cfg.seed) % 10;

		kind = h < 4 ? FILL_ZERO : h < 7 ? FILL_TEXT : FILL_RANDOM;
	}
	switch (kind) {
	case FILL_ZERO:
		for (u32 i = 0; i < PAGE_SIZE / 8; i++)
			((u64 *)addr)[i] = 0;
		break;
	case FILL_TEXT:
		fill_text((u8 *)addr, rng);
		break;
	default:
		fill_random((u64 *)addr, rng);
		break;
	}
}

/* Fill free pages [cpu * total / n, (cpu + 1) * total / n). */
void fill_memory(u32 cpu)
{
	u64 first = sh.free_pages * cpu / sh.ncpus;
	u64 last = sh.free_pages * (cpu + 1) / sh.ncpus;
	u64 rng = mix64(sh.cfg.seed ^ (0x1000 + cpu)) | 1, index = 0;

	for (u32 r = 0; r < sh.nfree && index < last; r++) {
		u64 pages = (sh.free[r].end - sh.free[r].start) / PAGE_SIZE;

		for (u64 i = 0; i < pages && index < last; i++, index++)
			if (index >= first)
				fill_page(sh.free[r].start + i * PAGE_SIZE, &rng);
	}
}
