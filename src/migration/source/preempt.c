/*
 * --postcopy-preempt on the source (preempt.h): the preempt connection
 * and its thread, which answers the destination's page requests on that
 * connection while the migration thread pushes the rest on the main one.
 *
 * The thread reads PAGE_REQ sections (hostile: checked as on the main
 * return path), claims the page from the owed bitmap (ram_claim_index,
 * atomic: a page claimed by the push is in flight on the main connection
 * and is not sent again) and sends it alone in a RAM section, as zero or
 * raw, straight from guest RAM: the guest is paused for good, so this
 * copy is the final one (docs/migration-stream.md, "Post-copy preempt").
 * Its neighbours are left to the push (`hint`), so the next request does
 * not wait behind them either.
 */
#include "migration/preempt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "migration/codec/codec.h"
#include "migration/format.h"
#include "migration/migration.h"
#include "migration/multi.h"
#include "migration/ram.h"
#include "migration/section.h"
#include "migration/source/reply.h"
#include "util/le.h"
#include "util/log.h"

/* A RAM section of one page: count, one entry, the page. */
#define PREEMPT_PAYLOAD (4 + MIG_RAM_ENTRY + GUEST_PAGE_SIZE)

int mig_preempt_src_open(struct migration *mig)
{
	struct mig_preempt_src *p = &mig->preempt;
	struct mig_stream s = { 0 };
	char why[256];

	p->hint = MIG_PREEMPT_NO_HINT;
	if (!p->agreed)
		return 0;
	int err = mig_chan_dial(mig, &s, MIG_CHAN_PREEMPT, why, sizeof(why));
	if (err) {
		mig_stream_destroy(&s);
		return precopy_fail(mig, err, "the post-copy preempt connection: %s", why);
	}
	pthread_mutex_lock(&mig->lock);		/* p->s, for x-test-migration-break */
	p->s = s;
	p->open = true;
	mig->stats.preempt_on = 1;
	pthread_mutex_unlock(&mig->lock);
	/* Idle until post-copy; then a page is urgent: nothing may queue in front of it. */
	p->s.timeout_ms = 30000;
	mig_stream_set_buffers(&p->s, 64 * 1024, 64 * 1024);
	pr_info("migration: post-copy page requests get a connection of their own");
	return 0;
}

/* Page `index` alone in a RAM section: zero when it reads so (or is a hole), else raw. */
static void mig_preempt_put_page(struct migration *mig, uint64_t index, bool *zero)
{
	struct mig_preempt_src *p = &mig->preempt;
	struct guest_memory *mem = &mig->m->vm.mem;
	const uint8_t *src = guest_memory_page_ptr(mem, index);
	bool can_zero = mig->ram.codecs & (1u << MIG_CODEC_ZERO);

	*zero = can_zero && (guest_memory_is_hole(mem, index, 1) || mig_page_is_zero(src));
	le_put(p->buf, 1, 4);
	le_put(p->buf + 4, guest_memory_page_gpa(mem, index) |
			   (*zero ? MIG_CODEC_ZERO : MIG_CODEC_RAW), 8);
	le_put(p->buf + 12, *zero ? 0 : GUEST_PAGE_SIZE, 4);
	if (!*zero)
		memcpy(p->buf + 16, src, GUEST_PAGE_SIZE);
	mig_section_write(&p->s, MIG_SEC_RAM, p->buf, *zero ? 16 : PREEMPT_PAYLOAD);
	/* --verify: this is the copy the destination places; the push never sends it. */
	if (mig->digest.hash)
		mig_digest_set(&mig->digest, index, *zero ? NULL : src);
}

/* One request, read at t0 (ns): send the page if it is still owed.  0 or the stream's error. */
static int mig_preempt_serve(struct migration *mig, uint64_t index, uint64_t t0)
{
	struct mig_preempt_src *p = &mig->preempt;
	bool sent = ram_claim_index(mig, index), zero = false, resent = false;
	uint64_t out0 = p->s.bytes_out;

	/* Its neighbours go with the push, on the main connection. */
	if (mig->p.prepage)
		__atomic_store_n(&p->hint, index, __ATOMIC_RELEASE);
	if (sent) {
		/* A page sent in a live pass before is a re-send (pages-resent), as on the push. */
		resent = ram_order_mark_sent(&mig->ram, index);
		mig_preempt_put_page(mig, index, &zero);
		int err = mig_stream_flush(&p->s);
		if (err)
			return err;
		__atomic_add_fetch(&p->bytes, p->s.bytes_out - out0, __ATOMIC_RELAXED);
	}
	uint64_t lat = vm_now_ns() - t0;
	struct mig_stats *st = &mig->stats;
	pthread_mutex_lock(&mig->lock);
	st->pc_requests++;
	st->preempt_requests++;
	if (sent) {
		st->pc_pages_requested++;
		st->preempt_pages++;
		st->preempt_lat_sum_ns += lat;
		if (lat > st->preempt_lat_max_ns)
			st->preempt_lat_max_ns = lat;
		st->mem_processed += GUEST_PAGE_SIZE;
		st->zero_pages += zero;
		st->normal_pages += !zero;
		st->normal_bytes += zero ? 0 : GUEST_PAGE_SIZE;
		st->pages_resent += resent;
		st->mem_remaining -= st->mem_remaining < GUEST_PAGE_SIZE ? st->mem_remaining
									 : GUEST_PAGE_SIZE;
	}
	pthread_mutex_unlock(&mig->lock);
	return 0;
}

/* Read and serve requests until told to stop.  0, or the failure (reason on p->s). */
static int mig_preempt_loop(struct migration *mig)
{
	struct mig_preempt_src *p = &mig->preempt;
	uint8_t buf[512], type;		/* a PAGE_REQ is 8 bytes; room for a bad one's header */
	uint32_t len;

	for (;;) {
		int r = mig_stream_wait_readable(&p->s, -1, &p->stop_fd[0], 1);
		if (r < 0) {
			mig_stream_fail(&p->s, r, "cannot wait on it: %s", strerror(-r));
			return r;
		}
		if (r & MIG_WAIT_INTR(0))
			return 0;
		if (!(r & MIG_WAIT_CHANNEL))
			continue;
		int err = mig_section_read(&p->s, buf, sizeof(buf), &type, &len);
		if (err)
			return err;
		uint64_t t0 = vm_now_ns(), index;
		if (type != MIG_SEC_PAGE_REQ) {
			mig_stream_fail(&p->s, -EPROTO, "section %u on it (only PAGE_REQ may come)", type);
			return -EPROTO;
		}
		if (mig_reply_page_req(buf, len, &mig->m->vm.mem, &index)) {
			mig_stream_fail(&p->s, -EPROTO, "a malformed page request, or one for a page "
					"that is not RAM");
			return -EPROTO;
		}
		err = mig_preempt_serve(mig, index, t0);
		if (err)
			return err;
	}
}

static void *mig_preempt_thread(void *arg)
{
	struct migration *mig = arg;
	struct mig_preempt_src *p = &mig->preempt;
	int err;

	pthread_setname_np(pthread_self(), "mig-preempt");
	err = mig_preempt_loop(mig);
	if (!err) {
		/* Every page it sent is ahead of this: the destination may check POSTCOPY_DONE. */
		uint8_t b[MIG_CHAN_BARRIER_LEN];
		uint64_t out0 = p->s.bytes_out;
		mig_chan_barrier_encode(b, 1, true);
		mig_section_write(&p->s, MIG_SEC_BARRIER, b, sizeof(b));
		err = mig_stream_flush(&p->s);
		__atomic_add_fetch(&p->bytes, p->s.bytes_out - out0, __ATOMIC_RELAXED);
	}
	__atomic_store_n(&p->err, err, __ATOMIC_RELEASE);
	__atomic_store_n(&p->ended, 1, __ATOMIC_RELEASE);
	/*
	 * Lost while post-copy needs it: as if the main connection broke (the
	 * same recovery: pause, resume).  The main stream fails with its error
	 * and is cut, so the migration thread stops waiting on it.  Not when
	 * the migration thread is closing it anyway.
	 */
	if (err && !__atomic_load_n(&p->stop, __ATOMIC_ACQUIRE)) {
		mig_stream_fail(&mig->s, err, "the post-copy preempt connection: %s",
				mig_stream_why(&p->s));
		pthread_mutex_lock(&mig->lock);
		if (mig->s.ch)
			mig_stream_shutdown(&mig->s);
		pthread_mutex_unlock(&mig->lock);
	}
	return NULL;
}

int mig_preempt_src_check(struct migration *mig)
{
	struct mig_preempt_src *p = &mig->preempt;

	if (!p->open)
		return 0;
	int r = mig_stream_wait_readable(&p->s, 0, NULL, 0);
	if (r == 0)
		return 0;
	return precopy_fail(mig, -EPIPE, "the post-copy preempt connection was lost (or spoke) "
			    "before post-copy began");
}

int mig_preempt_src_start(struct migration *mig)
{
	struct mig_preempt_src *p = &mig->preempt;

	if (!p->open || p->started)
		return 0;
	if (!p->buf && !(p->buf = malloc(PREEMPT_PAYLOAD)))
		return precopy_fail(mig, -ENOMEM, "out of memory");
	p->stop = p->ended = p->err = 0;
	p->hint = MIG_PREEMPT_NO_HINT;
	if (pipe2(p->stop_fd, O_CLOEXEC) < 0)
		return precopy_fail(mig, -errno, "cannot make a pipe: %s", strerror(errno));
	if (pthread_create(&p->thread, NULL, mig_preempt_thread, mig)) {
		close(p->stop_fd[0]);
		close(p->stop_fd[1]);
		return precopy_fail(mig, -EAGAIN, "cannot start the post-copy preempt thread");
	}
	p->started = true;
	return 0;
}

/* Ask the thread to stop and join it.  Its error (0: it sent its final BARRIER). */
static int mig_preempt_join(struct migration *mig, bool cut)
{
	struct mig_preempt_src *p = &mig->preempt;

	if (!p->started)
		return 0;
	__atomic_store_n(&p->stop, 1, __ATOMIC_RELEASE);
	if (write(p->stop_fd[1], "x", 1) < 0)
		pr_debug("post-copy preempt: wake: %s", strerror(errno));
	if (cut) {
		pthread_mutex_lock(&mig->lock);
		mig_stream_shutdown(&p->s);
		pthread_mutex_unlock(&mig->lock);
	}
	pthread_join(p->thread, NULL);
	p->started = false;
	close(p->stop_fd[0]);
	close(p->stop_fd[1]);
	return __atomic_load_n(&p->err, __ATOMIC_ACQUIRE);
}

int mig_preempt_src_end(struct migration *mig)
{
	struct mig_preempt_src *p = &mig->preempt;

	if (!p->started)
		return 0;
	int err = mig_preempt_join(mig, false);
	if (!err)
		return 0;
	/* The thread failed the main stream already (or would have: stop was set). */
	mig_stream_fail(&mig->s, err, "the post-copy preempt connection: %s", mig_stream_why(&p->s));
	return err;
}

uint64_t mig_preempt_src_hint(struct migration *mig)
{
	if (!mig->preempt.open)
		return MIG_PREEMPT_NO_HINT;
	return __atomic_exchange_n(&mig->preempt.hint, MIG_PREEMPT_NO_HINT, __ATOMIC_ACQ_REL);
}

void mig_preempt_src_close(struct migration *mig)
{
	struct mig_preempt_src *p = &mig->preempt;

	(void)mig_preempt_join(mig, true);
	if (p->open) {
		pthread_mutex_lock(&mig->lock);		/* p->s, for x-test-migration-break */
		mig_stream_destroy(&p->s);
		p->open = false;
		pthread_mutex_unlock(&mig->lock);
	}
	free(p->buf);
	p->buf = NULL;
}

uint64_t mig_preempt_src_bytes(const struct migration *mig)
{
	return __atomic_load_n(&mig->preempt.bytes, __ATOMIC_RELAXED);
}

int mig_preempt_src_break(struct migration *mig)
{
	struct mig_preempt_src *p = &mig->preempt;

	if (!p->open || !p->s.ch)
		return -ESRCH;
	mig_stream_shutdown(&p->s);
	return 0;
}
