/*
 * The destination's side of post-copy sections (docs/postcopy.md):
 * DISCARD, POSTCOPY_RUN (start the guest), RAM placed through
 * userfaultfd, POSTCOPY_DONE, and waiting out a broken connection.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "migration/format.h"
#include "migration/dest/incoming_internal.h"
#include "migration/multi.h"
#include "migration/preempt.h"
#include "migration/section.h"
#include "migration/live.h"
#include "util/le.h"
#include "util/log.h"

/* Post-copy: pages we hold that the source will send again (or never sent). */
static int mig_in_discard(struct mig_incoming *inc, struct machine *m, const uint8_t *p,
			  uint32_t len)
{
	uint64_t pages = guest_memory_pages(&m->vm.mem);
	struct mig_cursor c;

	mig_cursor_init(&c, p, len);
	uint64_t first = mig_cursor_u64(&c);
	uint32_t nbits = mig_cursor_u32(&c);
	if (c.bad || !nbits || nbits > MIG_DISCARD_MAX_PAGES || first % 64 ||
	    first > pages || nbits > pages - first || len != 12 + (nbits + 63) / 64 * 8)
		return mig_in_fail(inc, -EPROTO, "malformed DISCARD section");
	for (uint32_t w = 0; w < (nbits + 63) / 64; w++) {
		uint64_t bits;
		memcpy(&bits, p + 12 + 8 * w, 8);
		bits = le64toh(bits);
		if (w == (nbits - 1) / 64 && nbits % 64)
			bits &= (1ULL << (nbits % 64)) - 1;
		inc->known[first / 64 + w] &= ~bits;	/* what they hold stays: stale */
	}
	return 0;
}

/*
 * While post-copy runs, a requested page queues behind whatever pushed
 * data waits in our receive buffer, which the kernel would grow to
 * megabytes (milliseconds): keep it small.  Best effort.
 */
static void mig_in_pc_small_rcvbuf(struct mig_incoming *inc)
{
	mig_stream_set_buffers(&inc->s, 0, 512 * 1024);
}

/* Post-copy: load the state, arm userfaultfd, start the guest, say so. */
static int mig_in_pc_run(struct mig_incoming *inc, const struct mig_incoming_opts *opts,
			 struct machine *m, struct machine_state *st, uint32_t len)
{
	int err;

	if (len)
		return mig_in_fail(inc, -EPROTO, "POSTCOPY_RUN carries %u bytes (must be empty)", len);
	err = machine_state_apply(m, st);
	if (err)
		return mig_in_fail(inc, -EPROTO, "the device state does not load here: %s",
				   strerror(-err));
	inc->state_applied = true;
	/* Read back before the vCPUs run and change it; compared at DIGEST. */
	if (inc->cfg.flags & MIG_FLAG_VERIFY) {
		err = mig_in_state_hash(inc, m, st);
		if (err)
			return err;
	}
	err = pc_dest_start(&inc->pc, m, &inc->s, inc->known, inc->written,
			    inc->digest.hash ? &inc->digest : NULL);
	if (err)
		return mig_in_fail(inc, err, "cannot arm userfaultfd for post-copy: %s", strerror(-err));
	mig_in_pc_small_rcvbuf(inc);
	/* --postcopy-preempt: requests and their pages on a connection of their own. */
	err = mig_preempt_in_start(inc);
	if (err)
		return err;
	/*
	 * Only now (userfaultfd armed: what a device reads of guest memory is
	 * fetched if missing) the callback activates the devices, resumes them
	 * and starts the vCPUs, in that order (incoming.h).
	 */
	err = opts->start_guest ? opts->start_guest(opts->start_opaque) : -ENOTSUP;
	if (err)
		return mig_in_fail(inc, err, "cannot start the guest: %s", strerror(-err));
	inc->guest_started = true;
	if (pc_dest_reply(&inc->pc, MIG_SEC_RUNNING, NULL, 0))
		return mig_in_fail(inc, mig_stream_error(&inc->s), "cannot answer the source: %s", mig_stream_why(&inc->s));
	return 0;
}

static int mig_in_pc_done(struct mig_incoming *inc, uint32_t len, bool *done)
{
	if (len)
		return mig_in_fail(inc, -EPROTO, "POSTCOPY_DONE carries %u bytes (must be empty)", len);
	/* Pages still on their way on the preempt connection land first. */
	int err = mig_preempt_in_finish(inc);
	if (err)
		return err;
	pthread_mutex_lock(&inc->pc.lock);
	uint64_t missing = inc->pc.missing;
	pthread_mutex_unlock(&inc->pc.lock);
	if (missing)
		return mig_in_fail(inc, -EPROTO, "the source is done but %llu pages never arrived",
				   (unsigned long long)missing);
	*done = true;
	return 0;
}

/* Send our known-page bitmap, then re-ask for every page still awaited. */
static int mig_in_pc_report(struct mig_incoming *inc, struct machine *m)
{
	struct pc_dest *pc = &inc->pc;
	uint64_t pages = guest_memory_pages(&m->vm.mem);
	uint8_t *p = malloc(12 + MIG_DISCARD_MAX_PAGES / 8);
	int err = 0;

	if (!p)
		return -ENOMEM;
	pthread_mutex_lock(&pc->lock);
	for (uint64_t first = 0; first < pages && !err; first += MIG_DISCARD_MAX_PAGES) {
		uint32_t n = (uint32_t)(pages - first < MIG_DISCARD_MAX_PAGES ? pages - first
									    : MIG_DISCARD_MAX_PAGES);
		le_put(p, first, 8);
		le_put(p + 8, n, 4);
		for (uint32_t w = 0; w < (n + 63) / 64; w++) {
			uint64_t word = htole64(inc->known[first / 64 + w]);
			memcpy(p + 12 + 8 * w, &word, 8);
		}
		mig_section_write(pc->s, MIG_SEC_PC_KNOWN, p, 12 + (n + 63) / 64 * 8);
	}
	if (!err)
		err = mig_sources_pc_report(inc, pc->s);	/* what the disks lack */
	mig_section_write(pc->s, MIG_SEC_PC_RESUMED, NULL, 0);
	for (uint64_t i = 0; i < pages; i++) {
		unsigned long bit = 1UL << (i % 64);
		if (!(pc->requested[i / 64] & bit) || (inc->known[i / 64] & bit))
			continue;
		uint64_t gpa = guest_memory_page_gpa(&m->vm.mem, i);
		uint8_t q[8];
		le_put(q, gpa, 8);
		mig_section_write(pc->s, MIG_SEC_PAGE_REQ, q, sizeof(q));
	}
	err = err ? err : mig_stream_flush(pc->s);
	pthread_mutex_unlock(&pc->lock);
	free(p);
	/* Chunks the disks' guests wait on: asked for again, outside the lock. */
	if (!err)
		mig_sources_pc_resumed(inc);
	return err;
}

/*
 * Post-copy lost the source.  The guest cannot go on without it, so park
 * its vCPUs, listen again and wait (bounded) for 'ferry migrate --resume'.
 * Returns 0 once reconnected; else the VM is lost.
 */
int mig_in_pc_reconnect(struct mig_incoming *inc, const struct mig_incoming_opts *opts,
			       struct machine *m)
{
	struct pc_dest *pc = &inc->pc;
	char magic[MIG_MAGIC_LEN];
	int wait_ms = opts->resume_timeout_ms ? opts->resume_timeout_ms : 300000;
	struct mig_listener l;
	struct mig_channel *ch;
	char why[256];
	int err;

	pr_warn("post-copy: lost the source (%s); the guest is paused. Waiting %d s on %s for "
		"'ferry migrate CONTROL URI --resume'", inc->why, wait_ms / 1000, opts->uri);
	vm_pause_nowait(&m->vm);
	/*
	 * --postcopy-preempt: its connection goes too (the source closes its
	 * end); after a resume, page requests share the main connection.
	 */
	mig_preempt_in_stop(inc);
	pthread_mutex_lock(&pc->lock);
	mig_stream_destroy(&inc->s);		/* its sticky error keeps writers out */
	inc->connected = false;			/* nobody to reply to, unless one comes */
	pthread_mutex_unlock(&pc->lock);
	err = mig_channel_listen(opts->uri, opts->tls, &l, why, sizeof(why));
	if (err)
		return mig_in_fail(inc, err, "cannot wait for the source again: %s", why);
	err = mig_channel_accept(&l, wait_ms, opts->intr_fd, &ch);
	mig_listener_close(&l);
	if (err == -EINTR)
		return mig_in_fail(inc, err, "interrupted while waiting for the source to resume");
	if (err)
		return mig_in_fail(inc, err, "no source came back within %d s", wait_ms / 1000);
	pthread_mutex_lock(&pc->lock);
	err = mig_stream_init(&inc->s, ch, 1 << 20);
	inc->s.timeout_ms = opts->io_timeout_ms;
	inc->s.intr_fd = opts->intr_fd;
	inc->connected = !err;
	if (!err)
		mig_in_pc_small_rcvbuf(inc);
	pthread_mutex_unlock(&pc->lock);
	if (err)
		return mig_in_fail(inc, err, "out of memory");
	mig_stream_get(&inc->s, magic, sizeof(magic));
	uint32_t version = mig_stream_get_u32(&inc->s);
	uint8_t type;
	uint32_t len;
	if (mig_stream_error(&inc->s) || memcmp(magic, MIG_MAGIC, MIG_MAGIC_LEN) ||
	    version != MIG_VERSION ||
	    mig_section_read(&inc->s, inc->buf, MIG_SECTION_MAX, &type, &len) ||
	    type != MIG_SEC_RESUME || len)
		return mig_in_fail(inc, -EPROTO, "the reconnecting peer is not a resuming source");
	err = mig_in_pc_report(inc, m);
	if (err)
		return mig_in_fail(inc, err, "cannot answer the resuming source: %s", inc->s.why);
	inc->why[0] = '\0';
	if (vm_resume(&m->vm))
		return mig_in_fail(inc, -ESRCH, "the guest stopped while post-copy was paused");
	pr_info("post-copy: the source is back; the guest runs again");
	return 0;
}

/* Post-copy done: tell the source what the guest went through. */
void mig_in_pc_stats(struct mig_incoming *inc)
{
	struct pc_dest *pc = &inc->pc;
	uint64_t v[8];
	uint8_t p[64];

	pthread_mutex_lock(&pc->lock);
	v[0] = pc->faults;
	v[1] = pc->requests;
	v[2] = pc->zero_local;
	v[3] = pc->placed;
	v[4] = (uint64_t)pc_dest_latency_us(pc, 50);
	v[5] = (uint64_t)pc_dest_latency_us(pc, 99);
	v[6] = pc->blocked_ns / 1000;
	v[7] = pc->last_page_ns > pc->start_ns ? (pc->last_page_ns - pc->start_ns) / 1000 : 0;
	pthread_mutex_unlock(&pc->lock);
	for (int i = 0; i < 8; i++)
		le_put(p + 8 * i, v[i], 8);
	pr_info("post-copy: %llu faults, %llu requests, %llu pages placed, fault latency p50 %llu us "
		"p99 %llu us, vCPUs blocked %.1f ms, last page after %.1f ms",
		(unsigned long long)v[0], (unsigned long long)v[1], (unsigned long long)v[3],
		(unsigned long long)v[4], (unsigned long long)v[5], (double)v[6] / 1000,
		(double)v[7] / 1000);
	if (pc_dest_reply(pc, MIG_SEC_PC_STATS, p, sizeof(p)))
		pr_debug("post-copy: cannot send statistics");
}

/* Handlers of the rule table (incoming_rules.c) for post-copy sections. */
int mig_in_h_discard(struct mig_in_ctx *c, const uint8_t *p, uint32_t len)
{
	if (!mig_chans_in_done(c->inc))
		return mig_in_fail(c->inc, -EPROTO, "DISCARD before the final BARRIER: pages may "
				   "still be on their way on other channels");
	return mig_in_discard(c->inc, c->m, p, len);
}

int mig_in_h_pc_run(struct mig_in_ctx *c, const uint8_t *p, uint32_t len)
{
	/* The guest starts at once: whatever must be whole before it runs is checked now. */
	int err = mig_sources_loaded(c);
	if (err)
		return err;
	return mig_in_pc_run(c->inc, c->opts, c->m, c->st, len);
}

/*
 * RAM and RAM_RUN in post-copy: read whole, so nothing is placed before its
 * checksum is checked (a placed page cannot be taken back from the guest).
 */
int mig_in_h_pc_ram(struct mig_in_ctx *c, const uint8_t *p, uint32_t len)
{
	struct mig_payload in;

	mig_payload_whole(&in, p, len);
	return mig_source_get(MIG_SOURCE_RAM)->load(c, c->type, &in);
}

/* SOURCE while the guest runs: only for a source fetched on demand (not RAM's). */
int mig_in_h_pc_source(struct mig_in_ctx *c, const uint8_t *p, uint32_t len)
{
	uint32_t id = len >= 4 ? (uint32_t)le_get(p, 4) : MIG_SOURCE_NR;
	const struct mig_source_ops *o = mig_source_get(id);

	if (!o || id == MIG_SOURCE_RAM || (!o->postcopy && !o->after_go))
		return mig_in_fail(c->inc, -EPROTO, "SOURCE section for source %u during post-copy "
				   "(only one fetched on demand, or forwarded frames, may)", id);
	int err = mig_in_h_source(c, p, len);
	if (!err && !o->postcopy)
		c->inc->pc_after_go++;	/* a frame that reached the source's tap meanwhile */
	return err;
}

int mig_in_h_pc_done(struct mig_in_ctx *c, const uint8_t *p, uint32_t len)
{
	/* Whatever came on demand besides RAM must be whole now (the disks' DONE). */
	int err = mig_sources_loaded(c);
	if (err)
		return err;
	return mig_in_pc_done(c->inc, len, &c->done);
}
