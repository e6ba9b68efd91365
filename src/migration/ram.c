#include "migration/ram.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <unistd.h>

#include "migration/format.h"
#include "migration/section.h"
#include "vmm/dirty.h"

/* Pages whose dirty bits are cleared in KVM at once: 4 MiB, 16 longs. */
#define RAM_CLEAR_CHUNK 1024

int ram_setup(struct migration *mig)
{
	struct guest_memory *mem = &mig->m->vm.mem;

	for (unsigned r = 0; r < guest_memory_nr_regions(mem); r++) {
		uint64_t longs = dirty_bitmap_longs(guest_memory_region_pages(mem, r));
		mig->bitmap[r] = calloc(longs, sizeof(unsigned long));
		mig->hot[r] = calloc(longs, sizeof(unsigned long));
		if (!mig->bitmap[r] || !mig->hot[r])
			return -ENOMEM;
	}
	mig->batch = malloc(MIG_RAM_BATCH_MAX * GUEST_PAGE_SIZE);
	mig->batch_gpa = malloc(MIG_RAM_BATCH_MAX * sizeof(uint64_t));
	return mig->batch && mig->batch_gpa ? 0 : -ENOMEM;
}

void ram_cleanup(struct migration *mig)
{
	for (unsigned r = 0; r < GUEST_MAX_REGIONS; r++) {
		free(mig->bitmap[r]);
		free(mig->hot[r]);
		mig->bitmap[r] = mig->hot[r] = NULL;
	}
	free(mig->batch);
	free(mig->batch_gpa);
	mig->batch = NULL;
	mig->batch_gpa = NULL;
}

int64_t ram_sync(struct migration *mig)
{
	struct guest_memory *mem = &mig->m->vm.mem;
	int64_t dirty = 0;

	for (unsigned r = 0; r < guest_memory_nr_regions(mem); r++) {
		uint64_t longs = dirty_bitmap_longs(guest_memory_region_pages(mem, r));
		int err = vm_dirty_log_sync(&mig->m->vm, r, mig->bitmap[r]);
		if (err)
			return err;
		for (uint64_t i = 0; i < longs; i++)
			dirty += __builtin_popcountl(mig->bitmap[r][i]);
	}
	return dirty;
}

int64_t ram_peek_hot(struct migration *mig)
{
	struct guest_memory *mem = &mig->m->vm.mem;
	int64_t hot = 0;

	for (unsigned r = 0; r < guest_memory_nr_regions(mem); r++) {
		int64_t n = vm_dirty_log_peek(&mig->m->vm, r, mig->hot[r]);
		if (n < 0)
			return n;
		hot += n;
	}
	return hot;
}

int ram_start_clean(struct migration *mig)
{
	struct guest_memory *mem = &mig->m->vm.mem;

	for (unsigned r = 0; r < guest_memory_nr_regions(mem); r++) {
		/* Regions are whole 2 MiB: whole longs of bits. */
		size_t bytes = dirty_bitmap_longs(guest_memory_region_pages(mem, r)) *
			       sizeof(unsigned long);
		memset(mig->bitmap[r], 0xff, bytes);
		int err = vm_dirty_log_clear(&mig->m->vm, r, 0, guest_memory_region_pages(mem, r),
					     mig->bitmap[r]);
		if (err)
			return err;
	}
	mig->clear_ns = vm_now_ns();
	return 0;
}

/* Publish what the batch did to the shared statistics. */
static void ram_publish(struct migration *mig)
{
	struct mig_stats *st = &mig->stats;
	uint64_t pages = mig->batch_count, raw = mig->batch_raw;

	pthread_mutex_lock(&mig->lock);
	st->mem_processed += pages * GUEST_PAGE_SIZE;
	st->zero_pages += pages - raw;
	st->normal_pages += raw;
	st->normal_bytes += raw * GUEST_PAGE_SIZE;
	st->pages_resent += mig->batch_resent;
	st->mem_remaining -= st->mem_remaining < pages * GUEST_PAGE_SIZE ?
			     st->mem_remaining : pages * GUEST_PAGE_SIZE;
	st->wire_bytes = mig->s.bytes_out;
	/* Live rate within the pass, so progress shows it before the pass ends. */
	uint64_t ns = vm_now_ns() - mig->pass_start_ns;
	if (ns > 50000000ULL) {
		st->throughput = (mig->s.bytes_out - mig->pass_start_bytes) * 1000000000ULL / ns;
		st->pages_per_sec = st->throughput / GUEST_PAGE_SIZE;
	}
	pthread_mutex_unlock(&mig->lock);
	mig->batch_resent = 0;
}

/* Send the batch as one RAM (or RAM_RUN) section. */
static void ram_flush_batch(struct migration *mig)
{
	struct mig_section_writer w;
	uint32_t n = mig->batch_count;

	if (!n)
		return;
	ram_publish(mig);
	/* Consecutive pages all with data (the common case) need one address. */
	bool run = mig->batch_raw == n;
	for (uint32_t i = 1; i < n && run; i++)
		run = mig->batch_gpa[i] == mig->batch_gpa[0] + i * GUEST_PAGE_SIZE;
	uint32_t len = (run ? 12 : 4 + 8 * n) + (uint32_t)GUEST_PAGE_SIZE * mig->batch_raw;
	if (mig_section_begin(&w, &mig->s, run ? MIG_SEC_RAM_RUN : MIG_SEC_RAM, len)) {
		mig_stream_fail(&mig->s, -ENOMEM, "out of memory");
		return;
	}
	if (run) {
		mig_section_put_u64(&w, mig->batch_gpa[0] & ~MIG_PAGE_KIND_MASK);
		mig_section_put_u32(&w, n);
	} else {
		mig_section_put_u32(&w, n);
		for (uint32_t i = 0; i < n; i++)
			mig_section_put_u64(&w, mig->batch_gpa[i]);
	}
	mig_section_put(&w, mig->batch, (size_t)GUEST_PAGE_SIZE * mig->batch_raw);
	mig_section_end(&w);
	mig->batch_count = mig->batch_raw = 0;
}

static bool ram_is_zero(const uint8_t *p)
{
	const uint64_t *w = (const uint64_t *)p;

	for (size_t i = 0; i < GUEST_PAGE_SIZE / 8; i++)
		if (w[i])
			return false;
	return true;
}

/*
 * Queue one page.  The data is copied first: the guest may be writing it,
 * and the checksum, the digest and the bytes sent must all be of one copy.
 * (A page torn that way is dirty again and goes out in a later pass.)
 */
static void ram_queue_page(struct migration *mig, uint64_t gpa, const uint8_t *src,
			   uint64_t index, bool resend, bool hole)
{
	bool zero = hole || ram_is_zero(src);

	if (zero) {
		mig->batch_gpa[mig->batch_count++] = gpa | MIG_PAGE_ZERO;
		if (mig->digest.hash)
			mig_digest_set(&mig->digest, index, NULL);
	} else {
		uint8_t *dst = mig->batch + (size_t)mig->batch_raw * GUEST_PAGE_SIZE;
		memcpy(dst, src, GUEST_PAGE_SIZE);
		mig->batch_gpa[mig->batch_count++] = gpa | MIG_PAGE_RAW;
		mig->batch_raw++;
		if (mig->digest.hash)
			mig_digest_set(&mig->digest, index, dst);
	}
	mig->batch_resent += resend;
	if (mig->batch_count == MIG_RAM_BATCH_MAX)
		ram_flush_batch(mig);
}

/*
 * Is [off, off + len) of the RAM file a hole, never written by anyone?
 * Then its pages are zero and need not be read (reading would allocate
 * them).  Asked after the chunk's dirty bits were cleared, so a write
 * racing with the question is seen in the next pass.
 */
/*
 * The destination speaks during the live phase only to refuse the stream;
 * then stop sending at once, so its reason is heard (and not a reset).
 */
static bool ram_peer_spoke(struct migration *mig)
{
	if (mig_stream_wait_readable(&mig->s, 0, NULL, 0) <= 0)
		return false;
	mig_stream_fail(&mig->s, -EPIPE, "the destination hung up");
	return true;
}

/* Between chunks: a cancel, or new limits from migrate-set-parameters. */
static bool ram_cancelled(struct migration *mig)
{
	if (ram_peer_spoke(mig))
		return false;	/* the stream error ends the pass */
	pthread_mutex_lock(&mig->lock);
	bool c = mig->cancel;
	mig->switch_pass = !c && mig->postcopy_requested && mig->stats.status == MIG_STATUS_ACTIVE;
	if (mig->limits_changed && mig->stats.status == MIG_STATUS_ACTIVE)
		ratelimit_set_rate(&mig->rl, mig->p.bandwidth);
	mig->limits_changed = false;
	pthread_mutex_unlock(&mig->lock);
	return c;
}

static int ram_send_region(struct migration *mig, unsigned r, bool resend)
{
	struct vm *vm = &mig->m->vm;
	uint64_t pages = guest_memory_region_pages(&vm->mem, r);
	uint64_t base = guest_memory_region_first(&vm->mem, r);
	unsigned long *bm = mig->bitmap[r], *hot = mig->hot[r];
	unsigned long send[RAM_CLEAR_CHUNK / DIRTY_BITS_PER_LONG];

	for (uint64_t first = 0; first < pages; first += RAM_CLEAR_CHUNK) {
		uint64_t count = pages - first < RAM_CLEAR_CHUNK ? pages - first : RAM_CLEAR_CHUNK;
		uint64_t l0 = first / DIRTY_BITS_PER_LONG, l1 = dirty_bitmap_longs(first + count);
		bool any = false;
		for (uint64_t l = l0; l < l1; l++) {
			/* Hot pages would only be dirty again: they wait (and stay marked). */
			send[l - l0] = mig->hot_skip ? bm[l] & ~hot[l] : bm[l];
			bm[l] &= ~send[l - l0];
			any |= send[l - l0] != 0;
		}
		if (!any)
			goto next;
		/* Re-arm tracking before reading: a write from now on is seen. */
		int err = vm_dirty_log_clear(vm, r, first, count, send);
		if (err)
			return err;
		bool hole = guest_memory_is_hole(&vm->mem, base + first, count);
		for (uint64_t l = l0; l < l1; l++) {
			unsigned long w = send[l - l0];
			while (w) {
				unsigned bit = (unsigned)__builtin_ctzl(w);
				w &= w - 1;
				uint64_t page = l * DIRTY_BITS_PER_LONG + bit;
				ram_queue_page(mig, guest_memory_page_gpa(&vm->mem, base + page),
					       guest_memory_page_ptr(&vm->mem, base + page),
					       base + page, resend, hole);
			}
		}
next:
		if (ram_cancelled(mig))
			return -ECANCELED;
		if (mig->switch_pass || (mig->on_chunk && mig->on_chunk(mig)))
			return -EAGAIN;		/* to post-copy: the rest is owed */
		if (mig_stream_error(&mig->s))
			return mig_stream_error(&mig->s);
	}
	return 0;
}

int ram_send_dirty(struct migration *mig, bool resend)
{
	for (unsigned r = 0; r < guest_memory_nr_regions(&mig->m->vm.mem); r++) {
		int err = ram_send_region(mig, r, resend);
		if (err)
			return err;
	}
	ram_flush_batch(mig);
	return mig_stream_error(&mig->s);
}

bool ram_queue_index(struct migration *mig, uint64_t index)
{
	struct guest_memory *mem = &mig->m->vm.mem;
	uint64_t page;
	unsigned r;

	if (!guest_memory_locate(mem, index, &r, &page))
		return false;
	unsigned long *w = &mig->bitmap[r][page / DIRTY_BITS_PER_LONG];
	unsigned long bit = 1UL << (page % DIRTY_BITS_PER_LONG);
	if (!(*w & bit))
		return false;
	*w &= ~bit;
	ram_queue_page(mig, guest_memory_page_gpa(mem, index), guest_memory_page_ptr(mem, index),
		       index, false, false);
	return true;
}

int ram_flush(struct migration *mig)
{
	ram_flush_batch(mig);
	return mig_stream_flush(&mig->s);
}
