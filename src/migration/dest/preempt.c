/*
 * --postcopy-preempt on the destination (preempt.h): the preempt
 * connection, accepted with the channels after READY and idle until
 * POSTCOPY_RUN, then a receiving thread that places the pages the guest
 * asked for, while the fault thread writes its PAGE_REQs on the same
 * connection (under pc_dest.lock).
 *
 * The receiver is as hostile-minded as the main thread: it reads each
 * section whole (nothing is placed before its checksum is checked) and
 * takes only RAM and RAM_RUN, decoded by the one RAM decoder (ram_load.c)
 * through a view of its own whose sink places through the main
 * pc_dest, and one final BARRIER, after which nothing more may come.  A
 * page is placed once, under pc_dest.lock, by whichever connection brings
 * it first; a later copy is dropped.  In post-copy the source's RAM is
 * frozen, so both copies are the same final one (docs/migration-stream.md,
 * "Post-copy preempt").
 */
#include "migration/preempt.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "migration/dest/incoming_internal.h"
#include "migration/multi.h"
#include "migration/ram.h"
#include "migration/section.h"
#include "util/log.h"

/*
 * The connection and its receiver.  `s` is read by the receiver and
 * written by the fault thread (PAGE_REQ, under pc_dest.lock, while
 * pc_dest.req points at it); the main thread creates and destroys it.
 * Fields below `lock` are guarded by it.
 */
struct mig_preempt_in {
	struct mig_incoming *inc;
	struct mig_stream s;
	struct mig_incoming view;	/* the receiver's (see above) */
	uint8_t *buf;			/* one section's payload */
	pthread_t thread;
	bool started;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	/* lock: */
	bool stop;			/* the main thread is ending it */
	bool ended;
	bool final;			/* its final BARRIER came */
	bool first;			/* it failed before the main stream did, and cut it */
	int err;			/* why in view.why */
	uint64_t progress;		/* sections handled */
};

int mig_preempt_in_adopt(struct mig_incoming *inc, struct mig_stream *s)
{
	struct mig_preempt_in *pi = calloc(1, sizeof(*pi));

	if (!pi)
		return -ENOMEM;
	pi->inc = inc;
	pi->s = *s;
	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&pi->lock, NULL);
	pthread_cond_init(&pi->cond, NULL);
	inc->preempt_in = pi;
	pr_info("migration: post-copy page requests will have a connection of their own");
	return 0;
}

static int mig_preempt_in_fail(struct mig_preempt_in *pi, int err, const char *why)
{
	if (!pi->view.why[0])
		mig_in_fail(&pi->view, err, "%s", why);
	return err;
}

/* Its one BARRIER: final, the end of the connection's pages. */
static int mig_preempt_in_barrier(struct mig_preempt_in *pi, const uint8_t *p, uint32_t len)
{
	uint32_t seq;
	bool final;

	if (mig_chan_barrier_parse(p, len, &seq, &final) || !final)
		return mig_in_fail(&pi->view, -EPROTO, "a BARRIER that is not final (or malformed) "
				   "on the preempt connection");
	return 0;
}

static void *mig_preempt_receiver(void *arg)
{
	struct mig_preempt_in *pi = arg;
	struct mig_incoming *inc = pi->inc;
	bool end = false;
	int err = 0;

	pthread_setname_np(pthread_self(), "mig-in-preempt");
	while (!err && !end) {
		uint8_t type;
		uint32_t len;
		err = mig_section_read(&pi->s, pi->buf, MIG_SECTION_MAX, &type, &len);
		if (err) {
			mig_preempt_in_fail(pi, err, mig_stream_why(&pi->s));
			break;
		}
		if (type == MIG_SEC_BARRIER) {
			err = mig_preempt_in_barrier(pi, pi->buf, len);
			end = !err;
		} else if (type == MIG_SEC_RAM || type == MIG_SEC_RAM_RUN) {
			struct mig_in_ctx c = { .inc = &pi->view, .m = inc->m, .ph = MIG_IN_PC_RUN,
						.type = type };
			struct mig_payload in;
			mig_payload_whole(&in, pi->buf, len);
			err = ram_load(&c, type, &in);
		} else {
			err = mig_in_fail(&pi->view, -EPROTO, "section type %u on the preempt "
					  "connection (only RAM, RAM_RUN and its final BARRIER travel "
					  "there)", type);
		}
		pthread_mutex_lock(&pi->lock);
		pi->progress++;
		pthread_mutex_unlock(&pi->lock);
	}
	/* Nothing more comes here: a late fault's request goes on the main connection. */
	pc_dest_set_req(&inc->pc, NULL);
	pthread_mutex_lock(&pi->lock);
	pi->ended = true;
	pi->final = end;
	pi->err = err;
	bool stopping = pi->stop;
	pthread_cond_broadcast(&pi->cond);
	/*
	 * Failed while post-copy needs it: as if the main connection broke.
	 * Cut the main stream's reading side (the one call another thread may
	 * make on it; the main thread joins this one before it closes it), so
	 * the main thread stops waiting and takes this reason
	 * (mig_preempt_in_reason): pause and wait for a resume, or, for a bad
	 * section, the VM is lost.
	 */
	if (err && !stopping && !mig_stream_error(&inc->s)) {
		pi->first = true;
		mig_stream_shutdown(&pi->s);
		if (inc->s.ch)
			mig_channel_shutdown(inc->s.ch, true, false);
	}
	pthread_mutex_unlock(&pi->lock);
	return NULL;
}

int mig_preempt_in_start(struct mig_incoming *inc)
{
	struct mig_preempt_in *pi = inc->preempt_in;

	if (!pi)
		return 0;
	struct mig_incoming *v = &pi->view;
	v->m = inc->m;
	v->cfg.flags = inc->cfg.flags;
	v->codecs = inc->codecs;
	v->written = inc->written;
	v->known = inc->known;
	v->digest = inc->digest;		/* the same table (entries change under pc.lock) */
	v->guest_started = true;		/* the post-copy sink; no delta */
	v->pc_place = &inc->pc;
	v->page = aligned_alloc(64, GUEST_PAGE_SIZE);
	pi->buf = malloc(MIG_SECTION_MAX);
	if (!v->page || !pi->buf ||
	    mig_codec_ctx_init(&v->codec, false, MIG_COMPRESS_NONE, inc->codecs, 0, 0))
		return mig_in_fail(inc, -ENOMEM, "out of memory");
	v->codec_ready = true;
	/* Silence is normal (no fault); a dead source is the main thread's to see. */
	pi->s.timeout_ms = -1;
	pi->s.intr_fd = -1;
	pc_dest_set_req(&inc->pc, &pi->s);
	if (pthread_create(&pi->thread, NULL, mig_preempt_receiver, pi)) {
		pc_dest_set_req(&inc->pc, NULL);
		return mig_in_fail(inc, -EAGAIN, "cannot start the preempt connection's receiver");
	}
	pi->started = true;
	return 0;
}

/* Is fd readable (a stop request)? */
int mig_preempt_in_finish(struct mig_incoming *inc)
{
	struct mig_preempt_in *pi = inc->preempt_in;
	int timeout_ms = inc->s.timeout_ms > 0 ? inc->s.timeout_ms : 30000;
	int err = 0;

	if (!pi || !pi->started)
		return 0;
	pthread_mutex_lock(&pi->lock);
	uint64_t seen = pi->progress, quiet_since = vm_now_ns();
	while (!pi->ended) {
		uint64_t now = vm_now_ns();
		if (pi->progress != seen) {
			seen = pi->progress;
			quiet_since = now;
		} else if (now - quiet_since > (uint64_t)timeout_ms * 1000000ULL) {
			err = mig_in_fail(inc, -ETIMEDOUT, "the post-copy preempt connection sent "
					  "nothing for %d s before its end", timeout_ms / 1000);
			break;
		}
		if (mig_in_fd_ready(inc->s.intr_fd)) {
			err = mig_in_fail(inc, -EINTR, "interrupted");
			break;
		}
		mig_in_cond_wait_tick(&pi->cond, &pi->lock);
	}
	if (!err && pi->err)
		err = mig_in_fail(inc, pi->err, "the post-copy preempt connection: %s", pi->view.why);
	pthread_mutex_unlock(&pi->lock);
	if (err)
		return err;
	/* Its final BARRIER came: every page before it is placed. */
	inc->pages += pi->view.pages;
	inc->zero_pages += pi->view.zero_pages;
	inc->raw_pages += pi->view.raw_pages;
	mig_preempt_in_stop(inc);
	return 0;
}

int mig_preempt_in_reason(struct mig_incoming *inc, int err)
{
	struct mig_preempt_in *pi = inc->preempt_in;

	if (!pi)
		return err;
	/* Only a failure that came first: the main stream's own (a bad section there) stands. */
	pthread_mutex_lock(&pi->lock);
	if (pi->ended && pi->err && pi->first)
		err = mig_in_fail(inc, pi->err, "the post-copy preempt connection: %s", pi->view.why);
	pthread_mutex_unlock(&pi->lock);
	return err;
}

void mig_preempt_in_stop(struct mig_incoming *inc)
{
	struct mig_preempt_in *pi = inc->preempt_in;

	if (!pi)
		return;
	if (pi->started) {
		/* No fault thread writes on it from now on. */
		pc_dest_set_req(&inc->pc, NULL);
		pthread_mutex_lock(&pi->lock);
		pi->stop = true;
		bool ended = pi->ended;
		pthread_mutex_unlock(&pi->lock);
		/* A receiver blocked on its socket: cut it (it is still the owner). */
		if (!ended)
			mig_stream_shutdown(&pi->s);
		pthread_join(pi->thread, NULL);
		if (pi->err && !pi->final)
			pr_info("post-copy: the preempt connection: %s", pi->view.why);
	}
	mig_stream_destroy(&pi->s);
	if (pi->view.codec_ready)
		mig_codec_ctx_fini(&pi->view.codec);
	free(pi->view.page);
	free(pi->buf);
	pthread_mutex_destroy(&pi->lock);
	pthread_cond_destroy(&pi->cond);
	free(pi);
	inc->preempt_in = NULL;
}
