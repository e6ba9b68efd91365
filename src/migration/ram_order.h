/*
 * Ordered propagation (Microwiper).  Pass 1 sends the chunks of RAM the
 * guest was seen writing last, fewest pages written first: it looks at the
 * dirty log as it goes (every 10 ms or so, nothing cleared) and leaves a
 * chunk that holds a page written since the migration began for its end.
 * From then on the RAM source remembers how often each page was found
 * rewritten at the last 8 syncs (a u8 per page, its rewrite history: bit 7
 * the last sync, bit 0 the eighth last; allocated when pass 1 starts, only
 * with --order rewrite).  Read as a number the history is a rewrite rate
 * that weighs recent syncs most.  Passes 2 and later send the dirty pages
 * by that number, coldest first, hottest last, and stop before the hot
 * tail, the pages rewritten in each of the last two sync intervals:
 * rewritten at least once a pass, they are rewritten as fast as the link
 * can carry them (docs/convergence.md, "Ordered propagation").
 *
 * The functions here are pure (bitmaps and counts in, counts, an order or
 * a number out): ram_order_send.c calls them and tests/unit/test_ram_order.c
 * feeds them.  Their cost is bounded: a byte per page at a sync, one walk
 * over the bitmap words and one step per dirty page for the order, counting
 * sorts over RAM_ORDER_BUCKETS or RAM_ORDER_CHUNK + 1 buckets, never a
 * comparison sort over RAM.
 */
#ifndef FERRY_MIGRATION_RAM_ORDER_H
#define FERRY_MIGRATION_RAM_ORDER_H

#include <stdbool.h>
#include <stdint.h>

/* --order: which order the live passes send dirty pages in. */
enum mig_order {
	MIG_ORDER_ADDRESS,	/* by guest address */
	MIG_ORDER_REWRITE,	/* written chunks last, then by rewrite count */
	MIG_ORDER_NR,
};

#define MIG_ORDER_DEFAULT MIG_ORDER_REWRITE

/* "address" or "rewrite" -> the order, or -1. */
int mig_order_parse(const char *name);
const char *mig_order_name(enum mig_order order);

#define RAM_ORDER_BUCKETS 256	/* one per value of a page's u8 history */

/*
 * One region as the order sees it: its bitmap of pages to send (bit i =
 * page i of the region), its pages' histories (count[i] for page i; NULL:
 * every one is 0) and the global index of its page 0.
 */
struct ram_order_region {
	const unsigned long *dirty;
	const uint8_t *count;
	uint64_t pages;
	uint64_t first;
};

/*
 * A sync's report `seen`: the pages written since their dirty bit was last
 * cleared (when they were sent, or deferred).  Every page's history moves
 * on by one sync: shifted right, bit 7 set if the page was seen.  Returns
 * the number of pages seen.
 */
uint64_t ram_order_note(uint8_t *history, const unsigned long *seen, uint64_t pages);

/* A history whose last two syncs both saw the page: the hot tail. */
#define RAM_ORDER_HOT 0xc0

/*
 * The send order of every page marked in the regions: global page indexes
 * into out (room for all of them), ascending by history, and within one
 * by region and address (a stable counting sort).  hist[c] is set to the
 * number of marked pages whose history is c.  Returns how many were written.
 */
uint64_t ram_order_build(const struct ram_order_region *rg, unsigned nr, uint32_t *out,
			 uint64_t hist[RAM_ORDER_BUCKETS]);

/*
 * How many pages of a pass, in the order above, to send before starting
 * the next pass early: all but the hot tail (the buckets from
 * RAM_ORDER_HOT up).  All of them when the coldest bucket present is hot
 * itself (a pass always makes progress) or when the tail is more than
 * max_tail pages: a deferred page is still owed, and a tail larger than
 * the switchover can carry would keep the migration from converging (the
 * caller passes the downtime's worth of pages).  The rule, from "the
 * accumulated rewrite rate of what is left exceeds the bandwidth", is
 * worked out in docs/convergence.md.
 */
uint64_t ram_order_cutoff(const uint64_t hist[RAM_ORDER_BUCKETS], uint64_t max_tail);

/*
 * Pass 1's unit: a chunk of RAM_ORDER_CHUNK pages (4 MiB, the chunk whose
 * dirty bits are cleared at once).  A page of the working set cannot be
 * told from a cold one until the guest writes it, which for a page written
 * once in a few seconds comes too late; but working sets are runs of pages
 * (a heap, a buffer, a file's cache), so one page of a chunk seen written
 * says the chunk is in use long before each of its pages was.
 */
#define RAM_ORDER_CHUNK 1024

/*
 * count[c] = the pages of chunk c (pages c * RAM_ORDER_CHUNK on, the last
 * chunk possibly short) marked in seen, a `pages`-page bitmap.  Returns the
 * number of chunks.
 */
uint64_t ram_order_chunk_counts(const unsigned long *seen, uint64_t pages, uint32_t *count);

/*
 * Sort ids[0..n) (chunk numbers) ascending by count[id], stably (a
 * counting sort over 0..RAM_ORDER_CHUNK; a larger count is taken as
 * RAM_ORDER_CHUNK).  tmp has room for n ids.  Pass 1 sends the chunks it
 * left in this order: fewest pages written first.
 */
void ram_order_sort_chunks(uint32_t *ids, uint64_t n, const uint32_t *count, uint32_t *tmp);

#endif
