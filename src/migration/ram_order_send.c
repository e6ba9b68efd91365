/*
 * The RAM source's ordered passes (ram_order.h has the rules, and
 * docs/convergence.md "Ordered propagation" the why): which pages were
 * sent before (re-sends, both orders), and with --order rewrite a pass 1
 * that leaves the chunks the guest writes for its end, the rewrite counts
 * kept at every sync, and later passes that send pages coldest first and
 * end before a hot tail that outruns the link.  Migration thread only,
 * but for ram_order_mark_sent (the preempt thread's pages, in post-copy).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "migration/migration.h"
#include "migration/ram.h"
#include "migration/ram_internal.h"
#include "migration/ram_order.h"
#include "migration/source/policy.h"
#include "util/log.h"
#include "vmm/dirty.h"

int ram_order_setup(struct migration *mig)
{
	struct guest_memory *mem = &mig->m->vm.mem;
	struct mig_ram *ram = &mig->ram;
	unsigned last = guest_memory_nr_regions(mem) - 1;

	ram->order = mig->p.order;
	ram->nr_pages = guest_memory_region_first(mem, last) + guest_memory_region_pages(mem, last);
	ram->sent = calloc(dirty_bitmap_longs(ram->nr_pages), sizeof(unsigned long));
	if (!ram->sent)
		return -ENOMEM;
	/* The send order holds page indexes in 32 bits: 16 TiB of RAM. */
	if (ram->nr_pages > UINT32_MAX)
		ram->order = MIG_ORDER_ADDRESS;
	ram->counting = false;
	ram->deferred = 0;
	return 0;
}

void ram_order_cleanup(struct mig_ram *ram)
{
	free(ram->sent);
	free(ram->rewrites);
	free(ram->send_order);
	ram->sent = NULL;
	ram->rewrites = NULL;
	ram->send_order = NULL;
	ram->send_order_cap = 0;
	for (unsigned r = 0; r < GUEST_MAX_REGIONS; r++) {
		free(ram->seen[r]);
		ram->seen[r] = NULL;
	}
}

bool ram_order_mark_sent(struct mig_ram *ram, uint64_t index)
{
	if (!ram->sent || index >= ram->nr_pages)
		return false;
	unsigned long *w = &ram->sent[index / DIRTY_BITS_PER_LONG];
	unsigned long bit = 1UL << (index % DIRTY_BITS_PER_LONG);

	/* Atomic: in post-copy the preempt thread marks the pages it sends too. */
	return __atomic_fetch_or(w, bit, __ATOMIC_RELAXED) & bit;
}

/* Without room for the counts, ordering is given up, not the migration. */
static bool ram_order_alloc(struct migration *mig)
{
	struct guest_memory *mem = &mig->m->vm.mem;
	struct mig_ram *ram = &mig->ram;

	if (ram->rewrites)
		return true;
	ram->rewrites = calloc(ram->nr_pages, 1);
	for (unsigned r = 0; ram->rewrites && r < guest_memory_nr_regions(mem); r++) {
		ram->seen[r] = calloc(dirty_bitmap_longs(guest_memory_region_pages(mem, r)),
					sizeof(unsigned long));
		if (!ram->seen[r]) {
			free(ram->rewrites);
			ram->rewrites = NULL;
		}
	}
	if (ram->rewrites)
		return true;
	pr_warn("migration: no memory for the rewrite counts: pages go in address order");
	ram->order = MIG_ORDER_ADDRESS;
	return false;
}

int ram_order_sync_region(struct migration *mig, unsigned r)
{
	struct guest_memory *mem = &mig->m->vm.mem;
	struct mig_ram *ram = &mig->ram;
	bool count = ram->counting && ram->order == MIG_ORDER_REWRITE && ram_order_alloc(mig);
	uint64_t pages = guest_memory_region_pages(mem, r), longs = dirty_bitmap_longs(pages);

	if (!count)
		return vm_dirty_log_sync(&mig->m->vm, r, ram->bitmap[r]);
	/* The report alone (pages written since cleared), then into the bitmap. */
	memset(ram->seen[r], 0, longs * sizeof(unsigned long));
	int err = vm_dirty_log_sync(&mig->m->vm, r, ram->seen[r]);
	if (err)
		return err;
	ram_order_note(ram->rewrites + guest_memory_region_first(mem, r), ram->seen[r], pages);
	for (uint64_t l = 0; l < longs; l++)
		ram->bitmap[r][l] |= ram->seen[r][l];
	return 0;
}

/*
 * The most pages a pass may leave for later: what the link carries in the
 * downtime the policy allows the bytes (mig_policy_budget), at the rate the
 * last pass measured (0 before one was measured: nothing is left).
 */
static uint64_t ram_order_max_tail(struct migration *mig)
{
	pthread_mutex_lock(&mig->lock);
	uint64_t bw = mig->stats.throughput, cap = mig->p.bandwidth;
	uint64_t ns = mig_policy_budget(mig->p.downtime_ns);
	pthread_mutex_unlock(&mig->lock);
	if (cap && cap < bw)
		bw = cap;
	/* bytes/s * ns / 1e9 / page, without overflowing */
	unsigned __int128 pages = (unsigned __int128)bw * ns / 1000000000ULL / GUEST_PAGE_SIZE;
	return pages > UINT64_MAX ? UINT64_MAX : (uint64_t)pages;
}

/* Global page index -> region and page within it (regions are few). */
static void ram_order_locate(const struct ram_order_region *rg, unsigned nr, uint64_t index,
			     unsigned *r, uint64_t *page)
{
	unsigned i = 0;

	while (i + 1 < nr && index >= rg[i + 1].first)
		i++;
	*r = i;
	*page = index - rg[i].first;
}

/*
 * Send order[*at .. end) from one 4 MiB chunk of one region at a time:
 * clear the chunk's bits for those pages here and in KVM (so a write from
 * now on is seen), then queue them.  Deferred pages (!send) are cleared in
 * KVM only: they stay owed, and the next sync tells whether they were
 * written again (so a page that cooled is sent in the next pass).
 */
static int ram_order_send_group(struct migration *mig, const struct ram_order_region *rg,
				unsigned nr, uint64_t *at, uint64_t end, bool send)
{
	struct mig_ram *ram = &mig->ram;
	struct vm *vm = &mig->m->vm;
	unsigned long mask[RAM_CLEAR_CHUNK / DIRTY_BITS_PER_LONG] = { 0 };
	uint64_t g = *at, page;
	unsigned r, r2;

	ram_order_locate(rg, nr, ram->send_order[g], &r, &page);
	uint64_t first = page / RAM_CLEAR_CHUNK * RAM_CLEAR_CHUNK;
	uint64_t count = rg[r].pages - first < RAM_CLEAR_CHUNK ? rg[r].pages - first : RAM_CLEAR_CHUNK;
	for (;;) {
		mask[(page - first) / DIRTY_BITS_PER_LONG] |= 1UL << ((page - first) % DIRTY_BITS_PER_LONG);
		if (send)
			ram->bitmap[r][page / DIRTY_BITS_PER_LONG] &= ~(1UL << (page % DIRTY_BITS_PER_LONG));
		if (++g == end)
			break;
		ram_order_locate(rg, nr, ram->send_order[g], &r2, &page);
		if (r2 != r || page < first || page >= first + count)
			break;
	}
	int err = vm_dirty_log_clear(vm, r, first, count, mask);
	if (err || !send) {
		*at = g;
		return err;
	}
	bool hole = guest_memory_is_hole(&vm->mem, rg[r].first + first, count);
	for (; *at < g; (*at)++) {
		uint64_t index = ram->send_order[*at];
		ram_queue_page(mig, guest_memory_page_gpa(&vm->mem, index),
			       guest_memory_page_ptr(&vm->mem, index), index, hole);
	}
	return 0;
}

/* A pass by rewrite history: coldest first, the hot tail left for the next. */
static int ram_send_ordered(struct migration *mig)
{
	struct mig_ram *ram = &mig->ram;
	struct guest_memory *mem = &mig->m->vm.mem;
	unsigned nr = guest_memory_nr_regions(mem);
	struct ram_order_region rg[GUEST_MAX_REGIONS];
	uint64_t hist[RAM_ORDER_BUCKETS], marked = 0;

	for (unsigned r = 0; r < nr; r++) {
		uint64_t pages = guest_memory_region_pages(mem, r);
		uint64_t first = guest_memory_region_first(mem, r);
		rg[r] = (struct ram_order_region){
			.dirty = ram->bitmap[r], .count = ram->rewrites + first,
			.pages = pages, .first = first,
		};
		for (uint64_t l = 0; l < dirty_bitmap_longs(pages); l++)
			marked += (uint64_t)__builtin_popcountl(ram->bitmap[r][l]);
	}
	if (marked > ram->send_order_cap) {
		uint32_t *o = realloc(ram->send_order, marked * sizeof(*o));
		if (!o) {
			pr_warn("migration: no memory for the send order: this pass goes by address");
			return ram_send_dirty(mig, true);
		}
		ram->send_order = o;
		ram->send_order_cap = marked;
	}
	uint64_t n = ram_order_build(rg, nr, ram->send_order, hist);
	uint64_t cut = ram_order_cutoff(hist, ram_order_max_tail(mig));
	for (uint64_t i = 0; i < cut;) {
		uint64_t end = cut - i < RAM_CLEAR_CHUNK ? cut : i + RAM_CLEAR_CHUNK;
		while (i < end) {
			int err = ram_order_send_group(mig, rg, nr, &i, end, true);
			if (err)
				return err;
		}
		int err = ram_between_chunks(mig);
		if (err)
			return err;
	}
	ram_flush_batch(mig);
	if (cut == n)
		return mig_stream_error(&mig->s);
	/* The hot tail waits for the next pass; from now on KVM tells if it is rewritten. */
	for (uint64_t i = cut; i < n;) {
		int err = ram_order_send_group(mig, rg, nr, &i, n, false);
		if (err)
			return err;
	}
	ram->deferred += n - cut;
	pthread_mutex_lock(&mig->lock);
	mig->stats.pages_deferred = ram->deferred;
	pthread_mutex_unlock(&mig->lock);
	return mig_stream_error(&mig->s);
}

_Static_assert(RAM_ORDER_CHUNK == RAM_CLEAR_CHUNK, "pass 1 leaves whole clearing chunks");

/*
 * How often pass 1 looks at the dirty log: every 10 ms, and 2 ms more per
 * GiB of RAM (a look reads the whole log: 32 KiB per GiB, counted by
 * chunk), so that a large guest's looks stay a small part of the pass.
 */
static uint64_t ram_order_look_ns(const struct mig_ram *ram)
{
	return 10000000ULL + ram->nr_pages / (1ULL << 18) * 2000000ULL;
}

/*
 * A look: every region's log, nothing cleared, into count[] by chunk.  A
 * region whose log cannot be read keeps its counts (only the order
 * suffers; the next sync reports the failure).
 */
static void ram_order_look(struct migration *mig, uint32_t *count, const uint64_t *chunk0)
{
	struct guest_memory *mem = &mig->m->vm.mem;
	struct mig_ram *ram = &mig->ram;

	for (unsigned r = 0; r < guest_memory_nr_regions(mem); r++) {
		if (vm_dirty_log_peek(&mig->m->vm, r, ram->seen[r]) < 0)
			continue;
		ram_order_chunk_counts(ram->seen[r], guest_memory_region_pages(mem, r),
				       count + chunk0[r]);
	}
}

/*
 * Pass 1 with --order rewrite, the log cleared at the start (ram.clean):
 * by address, but a chunk that holds a page the guest wrote since the
 * start, as the latest look saw it, is left for the end of the pass; the
 * chunks left go last, fewest pages written first (ram_order.h,
 * RAM_ORDER_CHUNK; docs/convergence.md, "Ordered propagation").
 */
static int ram_send_first_ordered(struct migration *mig)
{
	struct guest_memory *mem = &mig->m->vm.mem;
	struct mig_ram *ram = &mig->ram;
	unsigned nr = guest_memory_nr_regions(mem);
	uint64_t chunk0[GUEST_MAX_REGIONS + 1], look = 0, left = 0;
	int err = 0;

	chunk0[0] = 0;
	for (unsigned r = 0; r < nr; r++)
		chunk0[r + 1] = chunk0[r] + (guest_memory_region_pages(mem, r) + RAM_ORDER_CHUNK - 1) /
					    RAM_ORDER_CHUNK;
	uint32_t *count = calloc(chunk0[nr], sizeof(*count));
	uint32_t *late = malloc(chunk0[nr] * sizeof(*late));
	uint32_t *tmp = malloc(chunk0[nr] * sizeof(*tmp));
	if (!count || !late || !tmp) {
		free(count);
		free(late);
		free(tmp);
		pr_warn("migration: no memory for pass 1's order: it goes by address");
		return ram_send_dirty(mig, false);
	}
	for (unsigned r = 0; r < nr && !err; r++) {
		uint64_t pages = guest_memory_region_pages(mem, r);
		for (uint64_t first = 0; first < pages && !err; first += RAM_ORDER_CHUNK) {
			uint64_t c = chunk0[r] + first / RAM_ORDER_CHUNK, now = vm_now_ns();
			if (!look || now - look >= ram_order_look_ns(ram)) {
				ram_order_look(mig, count, chunk0);
				look = now;
			}
			if (count[c])
				late[left++] = (uint32_t)c;	/* the guest writes here: later */
			else
				err = ram_send_chunk(mig, r, first);
			if (!err)
				err = ram_between_chunks(mig);
		}
	}
	/* The chunks left: one more look, then fewest pages written first. */
	if (!err && left) {
		ram_order_look(mig, count, chunk0);
		pr_debug("migration: pass 1 leaves %llu of %llu chunks, written to, for its end",
			 (unsigned long long)left, (unsigned long long)chunk0[nr]);
		ram_order_sort_chunks(late, left, count, tmp);
	}
	for (uint64_t i = 0; i < left && !err; i++) {
		unsigned r = 0;
		while (late[i] >= chunk0[r + 1])
			r++;
		err = ram_send_chunk(mig, r, (late[i] - chunk0[r]) * RAM_ORDER_CHUNK);
		if (!err)
			err = ram_between_chunks(mig);
	}
	free(count);
	free(late);
	free(tmp);
	if (err)
		return err;
	ram_flush_batch(mig);
	return mig_stream_error(&mig->s);
}

int ram_send_pass(struct migration *mig, bool resend)
{
	struct mig_ram *ram = &mig->ram;
	int err;

	if (ram->counting && ram->order == MIG_ORDER_REWRITE && ram->rewrites)
		err = ram_send_ordered(mig);
	else if (!ram->counting && ram->order == MIG_ORDER_REWRITE && ram->clean &&
		 !ram->hot_skip && ram_order_alloc(mig))
		err = ram_send_first_ordered(mig);
	else
		err = ram_send_dirty(mig, resend);
	/* Pass 1 went out: from the next sync on, a page found dirty was rewritten. */
	ram->counting = true;
	return err;
}
