/*
 * Post-copy on the source (docs/postcopy.md): pause the guest, tell the
 * destination which pages it still lacks, send the CPU and device state,
 * and once the guest runs there serve its page faults first — with the
 * pages around each fault ("bubbling", Hines & Gopalan) — and push the
 * rest: pages the guest wrote last first, then address order.  Each page
 * crosses the wire at most once.  From POSTCOPY_RUN on, the source never
 * resumes: neither side alone holds the whole guest.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "board/machine_state.h"
#include "migration/format.h"
#include "migration/migration.h"
#include "migration/ram.h"
#include "migration/section.h"
#include "migration/source/reply.h"
#include "migration/live.h"
#include "util/le.h"
#include "util/log.h"
#include "vmm/dirty.h"

#define PC_PUSH_BATCH 64		/* background pages between request checks */
#define PC_SNDBUF (256 * 1024)		/* little queued in front of an urgent page */
/*
 * Right after the switch the guest faults most and frames still reach this
 * host's taps: for PC_EARLY_NS, even less queued (about 0.5 ms at 1 Gbit/s;
 * the kernel doubles it), at some cost in throughput on fast links.
 */
#define PC_SNDBUF_EARLY (32 * 1024)
#define PC_EARLY_NS 30000000ULL
#define PC_FORWARD_NS 1000000ULL	/* how often the taps are looked at during the push */
#define PC_EARLY_BATCH 16		/* hot pages between looks for RUNNING */
#define PC_EARLY_MAX 64			/* hot pages before RUNNING, at most */
#define PC_FIRST_MAX 64			/* the vCPUs' first pages, sent in the switch, at most */

/* One DISCARD section per MIG_DISCARD_MAX_PAGES pages of the to-send bitmap. */
static void postcopy_send_discards(struct migration *mig)
{
	struct guest_memory *mem = &mig->m->vm.mem;

	for (unsigned r = 0; r < guest_memory_nr_regions(mem); r++) {
		uint64_t pages = guest_memory_region_pages(mem, r);
		uint64_t base = guest_memory_region_first(mem, r);
		for (uint64_t first = 0; first < pages; first += MIG_DISCARD_MAX_PAGES) {
			uint32_t n = (uint32_t)(pages - first < MIG_DISCARD_MAX_PAGES ?
						pages - first : MIG_DISCARD_MAX_PAGES);
			uint32_t words = (n + 63) / 64;
			struct mig_section_writer w;
			if (mig_section_begin(&w, &mig->s, MIG_SEC_DISCARD, 12 + 8 * words)) {
				mig_stream_fail(&mig->s, -ENOMEM, "out of memory");
				return;
			}
			mig_section_put_u64(&w, base + first);
			mig_section_put_u32(&w, n);
			for (uint32_t i = 0; i < words; i++)
				mig_section_put_u64(&w, mig->ram.bitmap[r][first / 64 + i]);
			mig_section_end(&w);
		}
	}
}

static uint64_t postcopy_count(struct migration *mig)
{
	struct guest_memory *mem = &mig->m->vm.mem;
	uint64_t n = 0;

	for (unsigned r = 0; r < guest_memory_nr_regions(mem); r++)
		for (uint64_t i = 0; i < dirty_bitmap_longs(guest_memory_region_pages(mem, r)); i++)
			n += (uint64_t)__builtin_popcountl(mig->ram.bitmap[r][i]);
	return n;
}

static int postcopy_serve_request(struct migration *mig, const uint8_t *buf, uint32_t len);

static bool postcopy_hot(struct migration *mig, uint64_t index);

/*
 * The push's next batch from *cursor on: at most max owed pages (only the
 * hot ones while hot_only), flushed and counted; *pushed (may be NULL)
 * gets how many.  0 or the stream's error.
 */
static int postcopy_push_batch(struct migration *mig, uint64_t *cursor, bool hot_only, uint32_t max,
			       uint32_t *pushed)
{
	uint64_t total = guest_memory_pages(&mig->m->vm.mem);
	uint32_t n = 0;

	for (; *cursor < total && n < max; (*cursor)++)
		if (!hot_only || postcopy_hot(mig, *cursor))
			n += ram_queue_index(mig, *cursor);
	int err = ram_flush(mig);
	if (err)
		return precopy_stream_fail(mig, err);
	pthread_mutex_lock(&mig->lock);
	mig->stats.pc_pages_pushed += n;
	pthread_mutex_unlock(&mig->lock);
	if (pushed)
		*pushed = n;
	return 0;
}

/*
 * Wait for RUNNING.  The guest may fault before the destination's main
 * thread says it runs, so page requests can come first: serve them.
 * While nothing waits to be read, the push's first round (the pages the
 * guest wrote last) begins, so they are on their way while the
 * destination starts the guest: PC_EARLY_BATCH pages between looks, at
 * most PC_EARLY_MAX in all (what the link carries in about the time the
 * destination takes to start, so that RUNNING is read on time).
 */
static int postcopy_wait_running(struct migration *mig)
{
	uint64_t total = guest_memory_pages(&mig->m->vm.mem), cursor = 0;
	uint32_t budget = PC_EARLY_MAX;

	for (;;) {
		uint8_t buf[512], type;
		uint32_t len;
		if (cursor < total && budget && mig_stream_wait_readable(&mig->s, 0, NULL, 0) == 0) {
			uint32_t pushed;
			int err = postcopy_push_batch(mig, &cursor, true,
						      budget < PC_EARLY_BATCH ? budget : PC_EARLY_BATCH, &pushed);
			if (err)
				return err;
			budget -= pushed;
			continue;
		}
		int err = mig_section_read(&mig->s, buf, sizeof(buf), &type, &len);
		if (err)
			return precopy_stream_fail(mig, err);
		if (type == MIG_SEC_RUNNING)
			return 0;
		if (type == MIG_SEC_PAGE_REQ) {
			err = postcopy_serve_request(mig, buf, len);
			if (err)
				return err;
			continue;
		}
		err = mig_sources_pc_request(mig, type, buf, len);	/* a disk chunk */
		if (err != -ENOENT) {
			if (err)
				return err;
			continue;
		}
		int32_t status;
		const char *msg;
		int n;
		if (type == MIG_SEC_RESULT && !mig_result_parse(buf, len, &status, &msg, &n)) {
			/* -EBUSY before RUNNING: a disk was locked, it never started the guest. */
			if (status == -EBUSY)
				mig->end.no_return = false;
			return precopy_fail(mig, -EPROTO, "destination: %.*s", n, msg);
		}
		return precopy_fail(mig, -EPROTO, "destination answered with section %u", type);
	}
}

/*
 * Inside the switch, before DISCARD: the pages the guest touches first
 * when it runs there (its page walks for RIP and RSP,
 * machine_first_pages()), as one more, short pre-copy pass.  Its TLB is
 * empty, so without them every first instruction waits a fault's round
 * trip, each behind the push's queued bytes.  A few pages per vCPU, so
 * a few tens of microseconds of downtime on a 1 Gbit/s link.  Only an
 * order: a vCPU whose registers cannot be read costs just the faults.
 * 0 or the stream's error.
 */
static int postcopy_send_first(struct migration *mig)
{
	uint64_t index[PC_FIRST_MAX];
	int n = machine_first_pages(mig->m, index, PC_FIRST_MAX);
	uint32_t sent = 0;

	if (n <= 0) {
		if (n < 0)
			pr_debug("post-copy: no first pages: %s", strerror(-n));
		return 0;
	}
	precopy_send_pass(mig, mig->pass.sent + 1, (uint64_t)n, false);
	for (int i = 0; i < n; i++)
		sent += ram_queue_index(mig, index[i]);
	pthread_mutex_lock(&mig->lock);
	mig->stats.pc_pages_first = sent;
	pthread_mutex_unlock(&mig->lock);
	return ram_flush(mig);
}

/* Pause, say what is missing, send the state, wait until the guest runs there. */
static int postcopy_switch(struct migration *mig)
{
	uint64_t t0 = vm_now_ns(), t = t0;
	int err;

	pthread_mutex_lock(&mig->lock);
	mig->stats.status = MIG_STATUS_DEVICE;
	mig->stats.postcopy = 1;
	pthread_mutex_unlock(&mig->lock);
	/*
	 * The guest waits on requested pages: only the background push may
	 * be capped (--postcopy-bandwidth), and it pays for itself below.
	 */
	ratelimit_set_rate(&mig->rl, mig->p.postcopy_bandwidth);
	mig->s.rl = NULL;
	/* Held disk writes complete; they go with the disks below (switchover.c). */
	mig_sources_release(mig);
	/* From here the guest may end up at the destination: no resume but ours. */
	vm_fence(&mig->m->vm, true);
	err = vm_pause(&mig->m->vm, VM_PAUSE_TIMEOUT_NS);
	if (err)
		return precopy_fail(mig, err, "cannot pause for the switchover: %s", vm_pause_strerror(err));
	precopy_phase(mig, MIG_PHASE_PAUSE, &t);
	/* Devices drain into RAM before the final sync. */
	err = machine_quiesce(mig->m);
	if (err)
		return precopy_fail(mig, err, "cannot quiesce the machine: %s", strerror(-err));
	/*
	 * Disks flushed and unlocked before RUN: the destination locks them to
	 * start.  Copied disks stay locked here: the destination has its own.
	 */
	err = mig->p.copy_storage ? 0 : machine_inactivate(mig->m);
	if (err)
		return precopy_fail(mig, err, "cannot hand the disks over: %s", strerror(-err));
	/*
	 * What the guest wrote last goes first.  Only an order: if the peek
	 * fails, the last hot list (or none) orders the push just as well.
	 */
	if (ram_peek_hot(mig) < 0)
		pr_debug("post-copy: no fresh hot list; pushing by the last one");
	/* OR into the bitmap: pages of an unfinished pass are still owed. */
	if (ram_sync(mig) < 0)
		return precopy_fail(mig, -EIO, "final dirty sync failed");
	/*
	 * Paused from now on: nothing changes.  Logging stays on until the end
	 * (precopy_finish): turning it off rebuilds KVM's mappings, ~10 ms.
	 */
	precopy_phase(mig, MIG_PHASE_FINAL_SYNC, &t);
	mig->ram.stable = true;		/* so raw pages go from guest RAM, not copied */
	/*
	 * --channels: the extra connections carry pre-copy passes only; every
	 * page on them lands before the first DISCARD, and they close.
	 */
	err = mig_chans_barrier(mig, mig->stats.iteration + 1, true);
	if (!err)
		err = postcopy_send_first(mig);
	if (err)
		return precopy_stream_fail(mig, err);
	uint64_t owed = postcopy_count(mig);
	pthread_mutex_lock(&mig->lock);
	mig->stats.mem_remaining = owed * GUEST_PAGE_SIZE;
	mig->stats.pc_pages_owed = owed;
	pthread_mutex_unlock(&mig->lock);
	/* The destination drops discarded pages: delta's cache no longer says what it holds. */
	mig->ram.codec.delta_off = true;
	postcopy_send_discards(mig);
	/* What cannot be fetched on demand goes now, before the guest runs there. */
	err = mig_sources_complete(mig, false, true);
	/* What can (the disks): the destination learns what it lacks. */
	if (!err)
		err = mig_sources_pc_switch(mig);
	if (err)
		return precopy_stream_fail(mig, err);
	precopy_phase(mig, MIG_PHASE_FINAL_PAGES, &t);
	err = precopy_send_state(mig);
	if (err)
		return err;
	/* --postcopy-preempt: a preempt connection lost while idle fails now, before RUN. */
	err = mig_preempt_src_check(mig);
	if (err)
		return err;
	mig_section_write(&mig->s, MIG_SEC_POSTCOPY_RUN, NULL, 0);
	err = mig_stream_flush(&mig->s);
	/* Once RUN may have left, two running copies are possible: never resume. */
	mig->end.no_return = true;
	if (err)
		return precopy_stream_fail(mig, err);
	/*
	 * The owed bitmap is final: the preempt thread serves requests from
	 * before the guest can fault there (the destination asks only once
	 * it handled RUN).
	 */
	err = mig_preempt_src_start(mig);
	if (err)
		return err;
	/* From here pages go while the guest runs: little queued in front of an urgent one. */
	mig_stream_set_buffers(&mig->s, PC_SNDBUF_EARLY, 0);
	precopy_phase(mig, MIG_PHASE_DEVICE_STATE, &t);
	err = postcopy_wait_running(mig);
	precopy_phase(mig, MIG_PHASE_RESUME, &t);
	pthread_mutex_lock(&mig->lock);
	mig->stats.downtime_ns = t - t0;
	mig->stats.status = MIG_STATUS_POSTCOPY;
	mig->stats.pc_start_ns = t;
	pthread_mutex_unlock(&mig->lock);
	return err;
}

/* The neighbours of a fault at index, outward (bubbling, --prepage). */
static uint32_t postcopy_bubble(struct migration *mig, uint64_t index)
{
	uint32_t sent = 0;

	for (uint64_t k = 1; k <= mig->p.prepage; k++) {
		sent += ram_queue_index(mig, index + k);
		if (index >= k)
			sent += ram_queue_index(mig, index - k);
	}
	return sent;
}

/*
 * A fault at index: send it alone, so the destination can place it as soon
 * as its own small section is in (a section is only trusted once its
 * checksum is), then its neighbours outward (bubbling).
 */
static uint32_t postcopy_serve(struct migration *mig, uint64_t index)
{
	uint32_t sent = ram_queue_index(mig, index);

	if (sent && ram_flush(mig))
		return sent;	/* the stream error is sticky: the caller sees it */
	return sent + postcopy_bubble(mig, index);
}

/*
 * --postcopy-preempt: the preempt thread sent a requested page on its own
 * connection; its neighbours go here, with the push.  0 or -errno.
 */
static int postcopy_bubble_hint(struct migration *mig)
{
	uint64_t index = mig_preempt_src_hint(mig);

	if (index == MIG_PREEMPT_NO_HINT)
		return 0;
	uint32_t sent = postcopy_bubble(mig, index);
	int err = ram_flush(mig);
	if (err)
		return precopy_stream_fail(mig, err);
	pthread_mutex_lock(&mig->lock);
	mig->stats.pc_pages_requested += sent;
	pthread_mutex_unlock(&mig->lock);
	return 0;
}

/* Read every page request waiting on the return path.  <0 on error. */
static int postcopy_requests(struct migration *mig)
{
	for (;;) {
		if (mig_stream_wait_readable(&mig->s, 0, NULL, 0) <= 0)
			return 0;
		uint8_t buf[512], type;	/* room for a RESULT's reason */
		uint32_t len;
		int err = mig_section_read(&mig->s, buf, sizeof(buf), &type, &len);
		if (err)
			return precopy_stream_fail(mig, err);
		if (type == MIG_SEC_RESULT) {
			/* A refusal: let the reply reader report it. */
			return precopy_fail(mig, -EPROTO, "destination gave up during post-copy");
		}
		if (type != MIG_SEC_PAGE_REQ) {
			err = mig_sources_pc_request(mig, type, buf, len);	/* a disk chunk */
			if (err == -ENOENT)
				return precopy_fail(mig, -EPROTO, "destination sent section %u in post-copy",
						    type);
			if (err)
				return err;
			continue;
		}
		err = postcopy_serve_request(mig, buf, len);
		if (err)
			return err;
	}
}

/* One PAGE_REQ: the page, its neighbours, sent at once. */
static int postcopy_serve_request(struct migration *mig, const uint8_t *buf, uint32_t len)
{
	uint64_t index;
	if (mig_reply_page_req(buf, len, &mig->m->vm.mem, &index))
		return precopy_fail(mig, -EPROTO, len != 8 ? "malformed page request" :
				    "destination asked for page 0x%llx, not RAM",
				    len == 8 ? (unsigned long long)le_get(buf, 8) : 0ULL);
	uint32_t sent = postcopy_serve(mig, index);
	int err = ram_flush(mig);
	if (err)
		return precopy_stream_fail(mig, err);
	pthread_mutex_lock(&mig->lock);
	mig->stats.pc_requests++;
	mig->stats.pc_pages_requested += sent;
	pthread_mutex_unlock(&mig->lock);
	return 0;
}

/*
 * Pay for pushed bytes under --postcopy-bandwidth, but wait by watching the
 * return path: a request arriving meanwhile ends the wait and is served.
 * `bytes` is what went on the wire (a zero page is an 8-byte entry, not
 * 4 KiB): the cap is on the link, so an idle guest's push is not slowed
 * to the pace of its memory size.
 */
static void postcopy_pace(struct migration *mig, uint64_t bytes)
{
	uint64_t wait = ratelimit_take(&mig->rl, bytes, vm_now_ns());

	if (wait)
		(void)mig_stream_wait_readable(&mig->s, (int)((wait + 999999) / 1000000), NULL, 0);
}

/* A PC_KNOWN bitmap: pages the destination holds leave the owed bitmap. */
static int postcopy_strike_known(struct migration *mig, const uint8_t *p, uint32_t len)
{
	return mig_reply_known(p, len, &mig->m->vm.mem, mig->ram.bitmap);
}

static bool postcopy_hot(struct migration *mig, uint64_t index)
{
	unsigned r;
	uint64_t page;

	return guest_memory_locate(&mig->m->vm.mem, index, &r, &page) &&
	       (mig->ram.hot[r][page / 64] & (1UL << (page % 64)));
}

/*
 * Frames that still reach this host's taps while the guest runs at the
 * destination follow it (the net source's after_go op, live_net.c),
 * between batches, at most every PC_FORWARD_NS; `--net-epilogue 0` turns
 * this off with the epilogue.  0 or the stream's error.
 */
static int postcopy_forward(struct migration *mig, uint64_t *last)
{
	uint64_t now = vm_now_ns();

	if (!mig->p.net_epilogue_ns || now - *last < PC_FORWARD_NS)
		return 0;
	*last = now;
	int err = mig_sources_after_go(mig);
	return err ? precopy_stream_fail(mig, err) : 0;
}

/*
 * Serve faults first; push the pages the guest wrote last before it paused
 * (what it works on, so what it would fault on next), then the rest, each
 * in address order, until none is owed.
 */
static int postcopy_push(struct migration *mig)
{
	uint64_t total = guest_memory_pages(&mig->m->vm.mem), fwd = 0;
	uint64_t early_until = mig->stats.pc_start_ns + PC_EARLY_NS;
	bool early = vm_now_ns() < early_until;
	int err;

	mig_stream_set_buffers(&mig->s, early ? PC_SNDBUF_EARLY : PC_SNDBUF, 0);
	for (int round = 0; round < 2; round++) {
		for (uint64_t cursor = 0; cursor < total;) {
			if (early && vm_now_ns() >= early_until) {
				mig_stream_set_buffers(&mig->s, PC_SNDBUF, 0);
				early = false;
			}
			err = postcopy_requests(mig);
			if (!err)
				err = postcopy_bubble_hint(mig);
			if (!err)
				err = postcopy_forward(mig, &fwd);
			if (err)
				return err;
			uint64_t wire0 = mig->s.bytes_out;	/* requests above are not paced */
			err = postcopy_push_batch(mig, &cursor, !round, PC_PUSH_BATCH, NULL);
			if (err)
				return err;
			postcopy_pace(mig, mig->s.bytes_out - wire0);
		}
	}
	/* Then the other sources fetched on demand (the disks), a batch at a time. */
	for (bool done = false; !done;) {
		err = postcopy_requests(mig);
		if (!err)
			err = postcopy_forward(mig, &fwd);
		if (err)
			return err;
		uint64_t wire0 = mig->s.bytes_out;
		err = mig_sources_pc_push(mig, PC_PUSH_BATCH * GUEST_PAGE_SIZE, &done);
		if (!err)
			err = mig_stream_flush(&mig->s);
		if (err)
			return precopy_stream_fail(mig, err);
		postcopy_pace(mig, mig->s.bytes_out - wire0);
	}
	return 0;
}

/* The destination's view: fault latency, time blocked, last page. */
static void postcopy_read_dest_stats(struct migration *mig, const uint8_t *p, uint32_t len)
{
	struct mig_cursor c;

	mig_cursor_init(&c, p, len);
	uint64_t v[8];
	for (int i = 0; i < 8; i++)
		v[i] = mig_cursor_u64(&c);
	if (c.bad)
		return;
	pthread_mutex_lock(&mig->lock);
	mig->stats.pc_faults = v[0];
	mig->stats.pc_zero_local = v[2];
	mig->stats.pc_latency_p50_us = v[4];
	mig->stats.pc_latency_p99_us = v[5];
	mig->stats.pc_blocked_us = v[6];
	mig->stats.pc_last_page_us = v[7];
	pthread_mutex_unlock(&mig->lock);
}

static int postcopy_finish(struct migration *mig)
{
	uint8_t buf[512], type;		/* room for a RESULT's reason */
	uint32_t len;
	int err;

	/*
	 * --postcopy-preempt: every page the preempt thread sent goes ahead of
	 * its final BARRIER, which the destination reads before it checks
	 * POSTCOPY_DONE.
	 */
	err = mig_preempt_src_end(mig);
	if (err)
		return precopy_stream_fail(mig, err);
	err = precopy_send_last(mig, MIG_SEC_POSTCOPY_DONE);
	if (err)
		return err;
	/* Late requests may still be in flight; they are for pages already sent. */
	for (;;) {
		err = mig_section_read(&mig->s, buf, sizeof(buf), &type, &len);
		if (err)
			return precopy_stream_fail(mig, err);
		if (type == MIG_SEC_PC_STATS)
			postcopy_read_dest_stats(mig, buf, len);
		else if (type != MIG_SEC_PAGE_REQ && type != MIG_SEC_BLOCK_REQ)
			break;
	}
	int32_t status;
	const char *msg;
	int n;
	if (type != MIG_SEC_RESULT || mig_result_parse(buf, len, &status, &msg, &n))
		return precopy_fail(mig, -EPROTO, "destination answered with section %u", type);
	if (status)
		return precopy_fail(mig, status, "destination: %.*s", n, msg);
	return 0;
}

/* A broken connection, as opposed to a refusal or a protocol error. */
static bool postcopy_recoverable(struct migration *mig, int err)
{
	return mig->stats.status == MIG_STATUS_POSTCOPY && err != -EPROTO && err != -EIO &&
	       err != -ENOMEM && err != -ECANCELED;
}

/*
 * Wait (bounded) for migrate --resume; 0 with resume_uri set, or the
 * original error when the wait ends without one: then the VM is lost.
 */
static int postcopy_wait_resume(struct migration *mig, int err)
{
	struct timespec until;
	uint64_t ns = mig->p.resume_timeout_ns ? mig->p.resume_timeout_ns
					       : MIG_DEFAULT_RESUME_TIMEOUT_NS;

	clock_gettime(CLOCK_MONOTONIC, &until);	/* mig->cond waits on this clock */
	until.tv_sec += (time_t)(ns / 1000000000ULL);
	until.tv_nsec += (long)(ns % 1000000000ULL);
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&mig->lock);
	mig->stats.status = MIG_STATUS_POSTCOPY_PAUSED;
	mig->req.resume_requested = false;
	pr_err("post-copy to %s lost its connection (%s); the guest waits at the destination. "
	       "Resume with 'ferry migrate CONTROL URI --resume' within %llu s, or the VM is lost",
	       mig->p.uri, mig->stats.error, (unsigned long long)(ns / 1000000000ULL));
	while (!mig->req.resume_requested && !mig->req.cancel)
		if (pthread_cond_timedwait(&mig->cond, &mig->lock, &until) == ETIMEDOUT)
			break;
	bool go = mig->req.resume_requested && !mig->req.cancel;
	if (go) {
		mig->stats.status = MIG_STATUS_POSTCOPY;
		mig->stats.error[0] = '\0';
		mig->stats.pc_resumes++;
	} else {
		mig->stats.status = MIG_STATUS_POSTCOPY;	/* so finish reports it as lost */
	}
	pthread_mutex_unlock(&mig->lock);
	return go ? 0 : err;
}

/* Reconnect, learn what the destination holds: everything else is owed again. */
static int postcopy_reconnect(struct migration *mig)
{
	struct guest_memory *mem = &mig->m->vm.mem;
	struct mig_channel *ch;
	char why[256];
	int err;

	pthread_mutex_lock(&mig->lock);		/* mig->s, for x-test-migration-break */
	mig_stream_destroy(&mig->s);
	pthread_mutex_unlock(&mig->lock);
	err = mig_channel_open(mig->req.resume_uri, &mig->req.resume_tls, 10000, &ch, why, sizeof(why));
	if (!err && !mig_channel_has_return_path(ch)) {
		mig_channel_close(ch);
		err = -EOPNOTSUPP;
		snprintf(why, sizeof(why), "%.200s has no return path for page requests",
			 mig->req.resume_uri);
	}
	if (err)
		return precopy_fail(mig, err, "cannot reconnect: %s", why);
	pthread_mutex_lock(&mig->lock);
	err = mig_stream_init(&mig->s, ch, 1 << 20);
	pthread_mutex_unlock(&mig->lock);
	if (err)
		return precopy_fail(mig, -ENOMEM, "out of memory");
	mig->s.timeout_ms = 30000;
	mig_stream_put(&mig->s, MIG_MAGIC, MIG_MAGIC_LEN);
	mig_stream_put_u32(&mig->s, MIG_VERSION);
	mig_section_write(&mig->s, MIG_SEC_RESUME, NULL, 0);
	err = mig_stream_flush(&mig->s);
	if (err)
		return precopy_stream_fail(mig, err);
	/* The disks owe what the destination says it lacks (BLOCK_ABSENT). */
	mig_sources_pc_resume_begin(mig);
	/* Owe every page again, then strike what the destination says it has. */
	for (unsigned r = 0; r < guest_memory_nr_regions(mem); r++)
		memset(mig->ram.bitmap[r], 0xff,
		       dirty_bitmap_longs(guest_memory_region_pages(mem, r)) * sizeof(unsigned long));
	uint8_t *buf = malloc(MIG_SECTION_MAX);
	if (!buf)
		return precopy_fail(mig, -ENOMEM, "out of memory");
	for (;;) {
		uint8_t type;
		uint32_t len;
		err = mig_section_read(&mig->s, buf, MIG_SECTION_MAX, &type, &len);
		if (err) {
			err = precopy_stream_fail(mig, err);
			break;
		}
		if (type == MIG_SEC_PC_RESUMED)
			break;
		if (type != MIG_SEC_PC_KNOWN) {
			/* BLOCK_ABSENT; a BLOCK_REQ from before the break is asked again later. */
			err = mig_sources_pc_request(mig, type, buf, len);
			if (err == -ENOENT)
				err = precopy_fail(mig, -EPROTO, "destination answered the resume badly");
			if (err)
				break;
			continue;
		}
		if (postcopy_strike_known(mig, buf, len)) {
			err = precopy_fail(mig, -EPROTO, "destination answered the resume badly");
			break;
		}
	}
	free(buf);
	if (!err) {
		mig_stream_set_buffers(&mig->s, PC_SNDBUF, 0);
		pr_info("post-copy resumed to %s; %llu pages still owed", mig->req.resume_uri,
			(unsigned long long)postcopy_count(mig));
	}
	return err;
}

int postcopy_run(struct migration *mig)
{
	int err = postcopy_switch(mig);

	for (;;) {
		if (!err)
			err = postcopy_push(mig);
		if (!err)
			err = postcopy_finish(mig);
		if (!err || !postcopy_recoverable(mig, err))
			break;
		/*
		 * --postcopy-preempt: either connection lost pauses both; a
		 * resume runs on the main connection alone (the destination
		 * drops its end too).
		 */
		if (mig->preempt.open) {
			mig_preempt_src_close(mig);
			pr_info("post-copy: the preempt connection is closed; after a resume, "
				"page requests share the main connection");
		}
		err = postcopy_wait_resume(mig, err);
		if (err)
			break;
		err = postcopy_reconnect(mig);
		if (err && postcopy_recoverable(mig, err))
			continue;	/* reconnecting failed: wait for another --resume */
		if (err)
			break;
	}
	/* The destination said ok; frames still reaching the taps follow until it announced. */
	if (!err)
		switchover_epilogue(mig);
	pthread_mutex_lock(&mig->lock);
	mig->stats.wire_bytes = mig_bytes_out(mig);
	mig_chans_stats(mig, &mig->stats);
	pthread_mutex_unlock(&mig->lock);
	return err;
}
