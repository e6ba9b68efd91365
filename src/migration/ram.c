#include "migration/ram.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <unistd.h>

#include "migration/codec/codec.h"
#include "migration/format.h"
#include "migration/migration.h"
#include "migration/ram_internal.h"
#include "migration/ram_pool.h"
#include "migration/section.h"
#include "migration/live.h"
#include "util/le.h"
#include "vmm/dirty.h"

int ram_setup(struct migration *mig)
{
	struct guest_memory *mem = &mig->m->vm.mem;
	struct mig_ram *ram = &mig->ram;

	for (unsigned r = 0; r < guest_memory_nr_regions(mem); r++) {
		uint64_t longs = dirty_bitmap_longs(guest_memory_region_pages(mem, r));
		mig->ram.bitmap[r] = calloc(longs, sizeof(unsigned long));
		mig->ram.hot[r] = calloc(longs, sizeof(unsigned long));
		if (!mig->ram.bitmap[r] || !mig->ram.hot[r])
			return -ENOMEM;
	}
	ram->stable = false;
	ram->clean = false;
	int err = ram_order_setup(mig);
	if (err)
		return err;
	ram->job = calloc(1, sizeof(*ram->job));
	if (!ram->job)
		return -ENOMEM;
	ram->job->data = malloc(MIG_RAM_BATCH_MAX * GUEST_PAGE_SIZE);
	return ram->job->data ? 0 : -ENOMEM;
}

static void ram_pool_end(struct mig_ram *ram)
{
	if (ram->pool_running)
		ram_pool_stop(&ram->pool);
	ram->pool_running = false;
}

int ram_codec_setup(struct migration *mig, uint32_t accepted)
{
	struct mig_ram *ram = &mig->ram;

	ram->codecs = accepted;
	ram_pool_end(ram);
	if (ram->codec_ready)
		mig_codec_ctx_fini(&ram->codec);
	ram->codec_ready = false;
	int err = mig_codec_ctx_init(&ram->codec, true, mig->p.compress, accepted,
				     mig->p.compress_level, mig->p.xbzrle_cache);
	if (err)
		return err;
	ram->codec_ready = true;
	/* Compression in threads of its own: this one writes while they encode. */
	if (mig->p.compress == MIG_COMPRESS_NONE)
		return 0;
	err = ram_pool_start(&ram->pool, ram_pool_default_workers(), &ram->codec,
			     mig->digest.hash ? &mig->digest : NULL);
	if (err)
		return err;
	ram->pool_running = true;
	return 0;
}

void ram_cleanup(struct migration *mig)
{
	struct mig_ram *ram = &mig->ram;

	ram_pool_end(ram);	/* before the context whose delta cache it shares */
	if (ram->codec_ready)
		mig_codec_ctx_fini(&ram->codec);
	ram->codec_ready = false;

	for (unsigned r = 0; r < GUEST_MAX_REGIONS; r++) {
		free(ram->bitmap[r]);
		free(ram->hot[r]);
		ram->bitmap[r] = ram->hot[r] = NULL;
	}
	ram_order_cleanup(ram);
	if (ram->job)
		free(ram->job->data);
	free(ram->job);
	ram->job = NULL;
}

int64_t ram_sync(struct migration *mig)
{
	struct guest_memory *mem = &mig->m->vm.mem;
	int64_t dirty = 0;

	for (unsigned r = 0; r < guest_memory_nr_regions(mem); r++) {
		uint64_t longs = dirty_bitmap_longs(guest_memory_region_pages(mem, r));
		/* With --order rewrite, also counts the pages rewritten since sent. */
		int err = ram_order_sync_region(mig, r);
		if (err)
			return err;
		for (uint64_t i = 0; i < longs; i++)
			dirty += __builtin_popcountl(mig->ram.bitmap[r][i]);
	}
	return dirty;
}

int64_t ram_peek_hot(struct migration *mig)
{
	struct guest_memory *mem = &mig->m->vm.mem;
	int64_t hot = 0;

	for (unsigned r = 0; r < guest_memory_nr_regions(mem); r++) {
		int64_t n = vm_dirty_log_peek(&mig->m->vm, r, mig->ram.hot[r]);
		if (n < 0)
			return n;
		hot += n;
	}
	return hot;
}

uint64_t ram_hot_new(struct migration *mig)
{
	struct guest_memory *mem = &mig->m->vm.mem;
	uint64_t n = 0;

	for (unsigned r = 0; r < guest_memory_nr_regions(mem); r++) {
		size_t longs = dirty_bitmap_longs(guest_memory_region_pages(mem, r));
		for (size_t i = 0; i < longs; i++)
			n += __builtin_popcountl(mig->ram.hot[r][i] & ~mig->ram.bitmap[r][i]);
	}
	return n;
}

int ram_start_clean(struct migration *mig)
{
	struct guest_memory *mem = &mig->m->vm.mem;

	for (unsigned r = 0; r < guest_memory_nr_regions(mem); r++) {
		/* Regions are whole 2 MiB: whole longs of bits. */
		size_t bytes = dirty_bitmap_longs(guest_memory_region_pages(mem, r)) *
			       sizeof(unsigned long);
		memset(mig->ram.bitmap[r], 0xff, bytes);
		int err = vm_dirty_log_clear(&mig->m->vm, r, 0, guest_memory_region_pages(mem, r),
					     mig->ram.bitmap[r]);
		if (err)
			return err;
	}
	mig->ram.clear_ns = vm_now_ns();
	mig->ram.clean = true;
	return 0;
}

/* Publish what the batch did to the shared statistics. */
static void ram_publish(struct migration *mig, const struct ram_job *j, uint64_t wire)
{
	struct mig_stats *st = &mig->stats;
	struct mig_ram *ram = &mig->ram;
	uint64_t pages = j->count, raw = j->with_data;

	pthread_mutex_lock(&mig->lock);
	st->mem_processed += pages * GUEST_PAGE_SIZE;
	st->zero_pages += pages - raw;
	st->normal_pages += raw;
	st->normal_bytes += raw * GUEST_PAGE_SIZE;
	st->pages_resent += j->resent;
	st->mem_remaining -= st->mem_remaining < pages * GUEST_PAGE_SIZE ?
			     st->mem_remaining : pages * GUEST_PAGE_SIZE;
	st->source_sent[MIG_SOURCE_RAM] += wire;
	memcpy(st->codec, ram->codec.stats, sizeof(st->codec));
	st->delta = ram->codec.delta;
	st->codec_gave_up = ram->codec.gave_up;
	st->wire_bytes = mig_bytes_out(mig);
	mig_chans_stats(mig, st);
	/* Live rate within the pass, so progress shows it before the pass ends. */
	uint64_t ns = vm_now_ns() - mig->pass.start_ns;
	if (ns > 50000000ULL) {
		st->throughput = (st->wire_bytes - mig->pass.start_bytes) * 1000000000ULL / ns;
		st->pages_per_sec = st->throughput / GUEST_PAGE_SIZE;
	}
	pthread_mutex_unlock(&mig->lock);
}

/* A worker's counters for job j, into the migration's (ram->codec). */
static void ram_add_job_stats(struct mig_ram *ram, const struct ram_job *j)
{
	struct mig_codec_ctx *c = &ram->codec;

	for (unsigned id = 0; id < MIG_CODEC_NR; id++) {
		c->stats[id].pages += j->stats[id].pages;
		c->stats[id].bytes_in += j->stats[id].bytes_in;
		c->stats[id].bytes_out += j->stats[id].bytes_out;
		c->stats[id].cpu_ns += j->stats[id].cpu_ns;
	}
	c->delta.hits += j->delta.hits;
	c->delta.misses += j->delta.misses;
	c->delta.overflows += j->delta.overflows;
	c->gave_up += j->gave_up;
}

/*
 * What handing a batch to the stream cost: on a link slower than memory
 * the writes block, so bytes per second spent here is the link's rate.
 * The sums are halved as they grow, so the rate follows the link.
 */
static void ram_note_link(struct mig_ram *ram, uint64_t bytes, uint64_t ns)
{
	ram->link_bytes += bytes;
	ram->link_ns += ns;
	if (ram->link_ns > 200000000ULL) {
		ram->link_bytes /= 2;
		ram->link_ns /= 2;
	}
	/* Wait for a few milliseconds of evidence before believing it. */
	if (ram->link_ns > 2000000ULL)
		ram->codec.link_bps = ram->link_bytes * 1000000000ULL / ram->link_ns;
}

/*
 * Send an encoded batch as one RAM section, or as RAM_RUN when its pages
 * are consecutive and all raw (ram_job_write), in one scatter-gather
 * write.
 */
static void ram_write_job(struct migration *mig, struct ram_job *j)
{
	struct mig_ram *ram = &mig->ram;

	if (!j->count)
		return;
	if (j->err) {
		mig_stream_fail(&mig->s, -EINVAL, "no negotiated codec takes page 0x%llx",
				(unsigned long long)j->gpa[0]);
		return;
	}
	ram_add_job_stats(ram, j);
	/*
	 * --channels: the main stream, or the next extra connection's buffer
	 * (multi.h); waiting for a free one is the link's pace, so it counts.
	 */
	uint64_t t0 = vm_now_ns();
	struct mig_stream *out = mig_chans_ram_begin(mig, (uint32_t)ram_job_wire_len(j));
	uint64_t wire = ram_job_write(out, j);
	mig_chans_ram_end(mig, out);
	ram_note_link(ram, wire, vm_now_ns() - t0);
	ram_publish(mig, j, wire);
}

/* The batch being filled. */
static struct ram_job *ram_current(struct mig_ram *ram)
{
	return ram->pool_running ? ram_pool_current(&ram->pool) : ram->job;
}

/* Write the oldest batch in flight, once encoded; false when none is. */
static bool ram_write_oldest(struct migration *mig)
{
	struct ram_job *j = ram_pool_oldest(&mig->ram.pool);

	if (!j)
		return false;
	ram_write_job(mig, j);
	ram_pool_release(&mig->ram.pool);
	return true;
}

/*
 * The batch being filled is complete: encode it here and write it, or
 * hand it to the encoder threads (writing older batches while every slot
 * is taken).
 */
static void ram_submit(struct migration *mig)
{
	struct mig_ram *ram = &mig->ram;
	struct ram_job *j = ram_current(ram);

	if (!j->count)
		return;
	j->link_bps = ram->codec.link_bps;
	j->delta_off = ram->codec.delta_off;
	if (ram->pool_running) {
		ram_pool_submit(&ram->pool);
		while (ram_pool_full(&ram->pool))
			ram_write_oldest(mig);
		return;
	}
	/* Paused (ram.stable): raw pages go from guest RAM, not copied. */
	j->by_ref = ram->stable;
	ram_job_encode(j, &ram->codec, mig->digest.hash ? &mig->digest : NULL);
	ram_write_job(mig, j);
	j->count = j->resent = 0;
}

/*
 * Send everything queued, in order: after this no page is in flight, so
 * a later pass's copy of a page can never overtake an older one.
 */
void ram_flush_batch(struct migration *mig)
{
	ram_submit(mig);
	if (mig->ram.pool_running)
		while (ram_write_oldest(mig))
			;
}

/* A page that reads as zero without touching RAM (a hole): its stand-in. */
static const uint8_t ram_zero_page[GUEST_PAGE_SIZE] __attribute__((aligned(64)));

/*
 * Queue one page for the batch (the caller cleared its bit); it is encoded
 * with the batch (codec.c picks the codec by the compression mode).  While
 * the guest runs, the encoder reads the page once into a snapshot (raw's
 * copy is that snapshot): the guest may be writing it, and the checksum,
 * the digest and the bytes sent must all be of one copy.  (A page torn
 * that way is dirty again and goes out in a later pass.)  Once the guest
 * is paused for good (ram.stable) the page itself is that copy.
 */
void ram_queue_page(struct migration *mig, uint64_t gpa, const uint8_t *src, uint64_t index,
		    bool hole)
{
	struct ram_job *j = ram_current(&mig->ram);
	uint32_t i = j->count++;
	/* A re-send is a page that went out before, in any pass or phase. */
	bool resend = ram_order_mark_sent(&mig->ram, index);

	j->gpa[i] = gpa;
	j->index[i] = index;
	/* A hole is zero: the zero codec takes it without reading RAM (no allocation). */
	j->src[i] = hole ? ram_zero_page : src;
	j->hole[i] = hole;
	j->resent += resend;
	if (j->count == MIG_RAM_BATCH_MAX)
		ram_submit(mig);
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
	/* A standby speaks all the time (acks, heartbeats): replicate.c reads it between epochs. */
	if (mig->pass.epochs)
		return false;
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
	bool c = mig->req.cancel;
	mig->pass.switch_pass = !c && mig->req.postcopy_requested &&
				mig->stats.status == MIG_STATUS_ACTIVE;
	if (mig->req.limits_changed && mig->stats.status == MIG_STATUS_ACTIVE)
		ratelimit_set_rate(&mig->rl, mig->p.bandwidth);
	mig->req.limits_changed = false;
	pthread_mutex_unlock(&mig->lock);
	return c;
}

int ram_between_chunks(struct migration *mig)
{
	if (ram_cancelled(mig))
		return -ECANCELED;
	if (mig->pass.switch_pass || (mig->pass.on_chunk && mig->pass.on_chunk(mig)))
		return -EAGAIN;		/* to post-copy: the rest is owed */
	int err = mig_stream_error(&mig->s);
	if (err)
		return err;
	/* Write-blocking disks: the guest's writes wait on this. */
	return mig_sources_service(mig);
}

int ram_send_chunk(struct migration *mig, unsigned r, uint64_t first)
{
	struct vm *vm = &mig->m->vm;
	uint64_t pages = guest_memory_region_pages(&vm->mem, r);
	uint64_t base = guest_memory_region_first(&vm->mem, r);
	unsigned long *bm = mig->ram.bitmap[r], *hot = mig->ram.hot[r];
	unsigned long send[RAM_CLEAR_CHUNK / DIRTY_BITS_PER_LONG];
	uint64_t count = pages - first < RAM_CLEAR_CHUNK ? pages - first : RAM_CLEAR_CHUNK;
	uint64_t l0 = first / DIRTY_BITS_PER_LONG, l1 = dirty_bitmap_longs(first + count);
	bool any = false;

	for (uint64_t l = l0; l < l1; l++) {
		/* Hot pages would only be dirty again: they wait (and stay marked). */
		send[l - l0] = mig->ram.hot_skip ? bm[l] & ~hot[l] : bm[l];
		bm[l] &= ~send[l - l0];
		any |= send[l - l0] != 0;
	}
	if (!any)
		return 0;
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
				       base + page, hole);
		}
	}
	return 0;
}

static int ram_send_region(struct migration *mig, unsigned r)
{
	uint64_t pages = guest_memory_region_pages(&mig->m->vm.mem, r);

	for (uint64_t first = 0; first < pages; first += RAM_CLEAR_CHUNK) {
		int err = ram_send_chunk(mig, r, first);
		if (!err)
			err = ram_between_chunks(mig);
		if (err)
			return err;
	}
	return 0;
}

int ram_send_dirty(struct migration *mig, bool resend)
{
	for (unsigned r = 0; r < guest_memory_nr_regions(&mig->m->vm.mem); r++) {
		int err = ram_send_region(mig, r);
		if (err)
			return err;
	}
	ram_flush_batch(mig);
	return mig_stream_error(&mig->s);
}

bool ram_claim_index(struct migration *mig, uint64_t index)
{
	struct guest_memory *mem = &mig->m->vm.mem;
	uint64_t page;
	unsigned r;

	if (!guest_memory_locate(mem, index, &r, &page))
		return false;
	unsigned long *w = &mig->ram.bitmap[r][page / DIRTY_BITS_PER_LONG];
	unsigned long bit = 1UL << (page % DIRTY_BITS_PER_LONG);
	/* Look first: most pages asked about were sent already, and a load is cheaper. */
	if (!(__atomic_load_n(w, __ATOMIC_RELAXED) & bit))
		return false;
	return __atomic_fetch_and(w, ~bit, __ATOMIC_ACQ_REL) & bit;
}

bool ram_queue_index(struct migration *mig, uint64_t index)
{
	struct guest_memory *mem = &mig->m->vm.mem;

	if (!ram_claim_index(mig, index))
		return false;
	ram_queue_page(mig, guest_memory_page_gpa(mem, index), guest_memory_page_ptr(mem, index),
		       index, false);
	return true;
}

int ram_flush(struct migration *mig)
{
	ram_flush_batch(mig);
	return mig_stream_flush(&mig->s);
}

/*
 * The final pass: the guest is paused (and its devices quiesced) for the
 * rest of the job, so its RAM cannot change and raw pages can go straight
 * from it.  (Post-copy's switch, which does not complete RAM, says so
 * itself: source/postcopy.c.)
 */
static int ram_send_paused(struct migration *mig, bool resend)
{
	mig->ram.stable = true;
	return ram_send_dirty(mig, resend);
}

/* The source table's view of RAM (live.h). */
static int64_t ram_src_sync(struct migration *mig)
{
	int64_t n = ram_sync(mig);

	return n < 0 ? n : n * (int64_t)GUEST_PAGE_SIZE;
}

static int64_t ram_src_peek(struct migration *mig)
{
	int64_t n = ram_peek_hot(mig);

	return n < 0 ? n : n * (int64_t)GUEST_PAGE_SIZE;
}

const struct mig_source_ops mig_ram_source = {
	.name = "ram",
	.setup = ram_setup,
	.handshake = ram_base_handshake,
	.sync = ram_src_sync,
	.peek = ram_src_peek,
	.iterate = ram_send_pass,	/* ram_order_send.c: by address or by rewrites */
	.complete = ram_send_paused,	/* the final pass: one more of the same, zero-copy */
	.load = ram_load,
	.cleanup = ram_cleanup,
	.postcopy = true,
};
