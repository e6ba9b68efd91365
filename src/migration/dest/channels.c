/*
 * --channels on the destination (multi.h): accept the extra connections
 * after READY, a receiving thread each, and the pass barriers.
 *
 * A receiver decodes RAM and RAM_RUN sections with the one RAM decoder
 * (ram_load.c) through a view of its own (`view`): the migration's codec
 * set, its page bitmaps and digest table (shared: bits are set
 * atomically, digest slots are per page, and a page is in one section of
 * a pass, a pass being fenced by the barrier), and its own decoder
 * context, page buffer, counters and reason.  Anything else on an extra
 * connection ends the migration.
 */
#include "migration/multi.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "migration/dest/incoming_internal.h"
#include "migration/preempt.h"
#include "migration/ram.h"
#include "migration/section.h"
#include "util/le.h"
#include "util/log.h"

#define MIG_CHAN_HELLO_TIMEOUT_MS 5000
#define MIG_CHAN_ACCEPT_TIMEOUT_MS 30000

struct mig_chans_in;

/* One extra connection.  Fields below `lock`'s mark are guarded by set->lock. */
struct mig_chan_in {
	struct mig_chans_in *set;
	unsigned index;
	struct mig_stream s;		/* the receiver's */
	struct mig_incoming view;	/* the receiver's (see above) */
	struct machine *m;
	pthread_t thread;
	bool started;
	/* set->lock: */
	uint32_t reached;		/* the last BARRIER read: every page before it applied */
	bool final;			/* its final BARRIER came: it ended */
	bool ended;
	int err;			/* why in view.why */
	uint64_t progress;		/* sections handled */
};

struct mig_chans_in {
	unsigned n;			/* connections, the main one included */
	/*
	 * The main stream: a receiver that fails cuts its reading side (the
	 * one call another thread may make on it), so the main thread stops
	 * waiting for the source and answers with the receiver's reason.  The
	 * main thread closes it only after joining every receiver.
	 */
	struct mig_stream *main;
	int intr_fd;
	int timeout_ms;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	/* lock: */
	uint32_t released;		/* the main stream's last BARRIER */
	bool stop;
	bool done;			/* the final BARRIER passed: no extra connection left */
	struct mig_chan_in *in[MIG_CHANNELS_MAX];
};

static int mig_chan_in_fail(struct mig_chan_in *ci, int err, const char *why)
{
	if (!ci->view.why[0])
		mig_in_fail(&ci->view, err, "%s", why);
	return err;
}

/* A BARRIER on an extra connection: note it, and wait for the main stream's. */
static int mig_chan_in_barrier(struct mig_chan_in *ci, struct mig_section_reader *r, bool *end)
{
	struct mig_chans_in *set = ci->set;
	uint8_t p[MIG_CHAN_BARRIER_LEN];
	uint32_t seq;
	bool final;

	if (r->len != MIG_CHAN_BARRIER_LEN)
		return mig_in_fail(&ci->view, -EPROTO, "malformed BARRIER (%u bytes)", r->len);
	int err = mig_section_reader_get(r, p, sizeof(p));
	err = err ?: mig_section_reader_end(r);
	if (err)
		return mig_chan_in_fail(ci, err, mig_stream_why(&ci->s));
	if (mig_chan_barrier_parse(p, sizeof(p), &seq, &final))
		return mig_in_fail(&ci->view, -EPROTO, "malformed BARRIER");
	pthread_mutex_lock(&set->lock);
	if (seq <= ci->reached) {
		pthread_mutex_unlock(&set->lock);
		return mig_in_fail(&ci->view, -EPROTO, "BARRIER %u after BARRIER %u", seq,
				   ci->reached);
	}
	ci->reached = seq;
	ci->progress++;
	ci->final = final;
	pthread_cond_broadcast(&set->cond);
	/* The next pass's pages wait until every connection applied this one's. */
	while (!final && set->released < seq && !set->stop)
		pthread_cond_wait(&set->cond, &set->lock);
	*end = final || set->stop;
	pthread_mutex_unlock(&set->lock);
	return 0;
}

static void *mig_chan_receiver(void *arg)
{
	struct mig_chan_in *ci = arg;
	struct mig_chans_in *set = ci->set;
	char name[16];
	bool end = false;
	int err = 0;

	snprintf(name, sizeof(name), "mig-in-chan%u", ci->index);
	pthread_setname_np(pthread_self(), name);
	while (!err && !end) {
		struct mig_section_reader r;
		err = mig_section_reader_begin(&r, &ci->s);
		if (err) {
			mig_chan_in_fail(ci, err, mig_stream_why(&ci->s));
			break;
		}
		if (r.type == MIG_SEC_BARRIER) {
			err = mig_chan_in_barrier(ci, &r, &end);
			if (err)
				mig_section_reader_abort(&r);
			continue;
		}
		if (r.type != MIG_SEC_RAM && r.type != MIG_SEC_RAM_RUN) {
			mig_section_reader_abort(&r);
			err = mig_in_fail(&ci->view, -EPROTO, "section type %u on an extra channel "
					  "(only RAM, RAM_RUN and BARRIER travel there)", r.type);
			break;
		}
		struct mig_in_ctx c = { .inc = &ci->view, .m = ci->m, .ph = MIG_IN_RAM,
					.type = r.type };
		struct mig_payload in;
		mig_payload_streamed(&in, &r);
		err = ram_load(&c, r.type, &in);
		if (!err)
			err = mig_section_reader_end(&r);
		else
			mig_section_reader_abort(&r);
		if (err)
			mig_chan_in_fail(ci, err, mig_stream_why(&ci->s));
		pthread_mutex_lock(&set->lock);
		ci->progress++;
		pthread_mutex_unlock(&set->lock);
	}
	pthread_mutex_lock(&set->lock);
	ci->ended = true;
	ci->err = err;
	pthread_cond_broadcast(&set->cond);
	pthread_mutex_unlock(&set->lock);
	/* Failed: hang up, so the source learns it at once (and gives up). */
	if (err) {
		mig_stream_shutdown(&ci->s);
		pthread_mutex_lock(&set->lock);
		bool stopping = set->stop;
		pthread_mutex_unlock(&set->lock);
		if (!stopping && set->main->ch)
			mig_channel_shutdown(set->main->ch, true, false);
	}
	return NULL;
}

static void mig_chan_in_free(struct mig_chan_in *ci)
{
	if (!ci)
		return;
	if (ci->started)
		pthread_join(ci->thread, NULL);
	mig_stream_destroy(&ci->s);
	if (ci->view.codec_ready)
		mig_codec_ctx_fini(&ci->view.codec);
	free(ci->view.page);
	free(ci);
}

/* Answer a hello on s: RESULT with status (0: accepted) and the reason. */
static void mig_chan_answer(struct mig_stream *s, int status, const char *msg)
{
	uint8_t p[6 + 200];
	size_t n = strlen(msg);

	n = n > 200 ? 200 : n;
	le_put(p, (uint32_t)status, 4);
	le_put(p + 4, n, 2);
	memcpy(p + 6, msg, n);
	mig_section_write(s, MIG_SEC_RESULT, p, (uint32_t)(6 + n));
	mig_stream_flush(s);
}

/* Make the receiver for an accepted connection (its view of inc). */
static int mig_chan_in_make(struct mig_incoming *inc, struct mig_chan_in *ci)
{
	ci->m = inc->m;
	ci->view.m = inc->m;
	ci->view.cfg.flags = inc->cfg.flags;
	ci->view.codecs = inc->codecs;
	ci->view.written = inc->written;
	ci->view.known = inc->known;
	ci->view.digest = inc->digest;		/* the same table */
	ci->view.page = aligned_alloc(64, GUEST_PAGE_SIZE);
	if (!ci->view.page ||
	    mig_codec_ctx_init(&ci->view.codec, false, MIG_COMPRESS_NONE, inc->codecs, 0, 0))
		return -ENOMEM;
	ci->view.codec_ready = true;
	return 0;
}

/*
 * Take one connection and its hello.  1: accepted as ci (index set),
 * 0: refused (logged, closed, the wait goes on), -errno: give up.
 */
static int mig_chan_take(struct mig_incoming *inc, const struct mig_incoming_opts *opts,
			 struct mig_listener *l, int timeout_ms, uint32_t taken,
			 struct mig_chan_in **out)
{
	struct mig_channel *ch;
	struct mig_stream s;
	uint8_t hello[MIG_CHAN_HELLO_LEN];
	struct mig_chan_hello h;
	char why[200];
	int err = mig_channel_accept(l, timeout_ms, opts->intr_fd, &ch);

	if (err)
		return err;
	if (mig_stream_init(&s, ch, 1 << 20)) {
		mig_stream_destroy(&s);
		return -ENOMEM;
	}
	s.timeout_ms = MIG_CHAN_HELLO_TIMEOUT_MS;
	s.intr_fd = opts->intr_fd;
	mig_stream_get(&s, hello, sizeof(hello));
	if (mig_stream_error(&s)) {
		snprintf(why, sizeof(why), "no hello: %s", mig_stream_why(&s));
		err = -EPROTO;
	} else {
		err = mig_chan_hello_check(hello, sizeof(hello), inc->cfg.mig_id, inc->nchan, taken,
					   inc->preempt, &h, why, sizeof(why));
	}
	if (err) {
		pr_warn("migration: refused a connection on %s: %s", opts->uri, why);
		mig_stream_clear_error(&s);
		s.timeout_ms = 1000;
		mig_chan_answer(&s, -EPROTO, why);
		mig_stream_destroy(&s);
		return 0;
	}
	struct mig_chan_in *ci = calloc(1, sizeof(*ci));
	if (!ci) {
		mig_stream_destroy(&s);
		return -ENOMEM;
	}
	ci->index = h.index;
	ci->s = s;
	mig_chan_answer(&ci->s, 0, "");
	if (mig_stream_error(&ci->s)) {
		pr_warn("migration: channel %u went away after its hello", h.index);
		mig_chan_in_free(ci);
		return 0;
	}
	*out = ci;
	return 1;
}

/* Is intr_fd readable (a stop request)? */
int mig_chans_in_accept(struct mig_incoming *inc, const struct mig_incoming_opts *opts,
			struct mig_listener *l)
{
	struct mig_chans_in *set = calloc(1, sizeof(*set));
	uint64_t deadline = vm_now_ns() + MIG_CHAN_ACCEPT_TIMEOUT_MS * 1000000ULL;
	uint32_t taken = 1;	/* the main connection */
	/* The extra channels, and --postcopy-preempt's connection. */
	unsigned want = inc->nchan + (inc->preempt ? 1 : 0);
	int err = 0;

	if (!set)
		return mig_in_fail(inc, -ENOMEM, "out of memory");
	pthread_mutex_init(&set->lock, NULL);
	pthread_cond_init(&set->cond, NULL);
	set->n = inc->nchan;
	set->main = &inc->s;
	set->intr_fd = opts->intr_fd;
	set->timeout_ms = opts->io_timeout_ms > 0 ? opts->io_timeout_ms : 30000;
	/* Only the preempt connection: no channel, no barrier to wait for. */
	set->done = set->n <= 1;
	inc->chans = set;
	for (unsigned got = 1; got < want;) {
		uint64_t now = vm_now_ns();
		if (now >= deadline)
			return mig_in_fail(inc, -ETIMEDOUT, "only %u of the %u connections agreed "
					   "connected within %d s", got, want,
					   MIG_CHAN_ACCEPT_TIMEOUT_MS / 1000);
		struct mig_chan_in *ci = NULL;
		uint64_t left_ms = (deadline - now) / 1000000ULL + 1;
		/*
		 * Look at the listener in short slices (the main stream is watched
		 * between them); a connection that is there gets the whole time
		 * left to be accepted (its TLS handshake included).
		 */
		struct pollfd lp = { .fd = l->fd, .events = POLLIN };
		int ready = poll(&lp, 1, left_ms > 200 ? 200 : (int)left_ms);
		if (ready > 0)
			err = mig_chan_take(inc, opts, l, (int)left_ms, taken, &ci);
		else
			err = ready < 0 && errno != EINTR ? -errno : -ETIMEDOUT;
		if (err == -EINTR || mig_in_fd_ready(opts->intr_fd))
			return mig_in_fail(inc, -EINTR, "interrupted while waiting for the channels");
		/*
		 * The source says nothing on the main stream until every channel is
		 * in: a word (or its hanging up) before this round's answer means
		 * it gave up.  (After the last answer it may speak at once.)
		 */
		if (err != 1 && mig_stream_wait_readable(&inc->s, 0, NULL, 0) > 0)
			return mig_in_fail(inc, -EPROTO, "the source spoke (or hung up) before its "
					   "%u connections connected", want);
		if (err == -ETIMEDOUT)
			continue;
		if (err < 0)
			return mig_in_fail(inc, err, "cannot accept channel connections: %s",
					   strerror(-err));
		if (!err)
			continue;
		if (ci->index == MIG_CHAN_PREEMPT) {
			/* Idle until post-copy: dest/preempt.c keeps it. */
			err = mig_preempt_in_adopt(inc, &ci->s);
			mig_chan_in_free(ci);
			if (err)
				return mig_in_fail(inc, err, "out of memory");
			taken |= MIG_CHAN_TAKEN_PREEMPT;
			got++;
			continue;
		}
		ci->set = set;
		set->in[ci->index] = ci;
		taken |= 1u << ci->index;
		got++;
		if (mig_chan_in_make(inc, ci))
			return mig_in_fail(inc, -ENOMEM, "out of memory");
	}
	/* All here: now they may read (the source sends pages only once all are accepted). */
	for (unsigned i = 1; i < set->n; i++) {
		struct mig_chan_in *ci = set->in[i];
		/* Silence is judged by the main thread at the barrier (mig_chans_in_barrier). */
		ci->s.timeout_ms = -1;
		if (pthread_create(&ci->thread, NULL, mig_chan_receiver, ci))
			return mig_in_fail(inc, -EAGAIN, "cannot start the receiver of channel %u", i);
		ci->started = true;
	}
	if (set->n > 1)
		pr_info("migration: receiving on %u channels", set->n);
	return 0;
}

int mig_chans_in_barrier(struct mig_incoming *inc, uint32_t seq, bool final)
{
	struct mig_chans_in *set = inc->chans;
	int err = 0;

	if (!set || set->done)
		return mig_in_fail(inc, -EPROTO, "BARRIER %u with no extra channel open", seq);
	pthread_mutex_lock(&set->lock);
	if (seq <= set->released) {
		pthread_mutex_unlock(&set->lock);
		return mig_in_fail(inc, -EPROTO, "BARRIER %u after BARRIER %u", seq, set->released);
	}
	uint64_t last_progress = UINT64_MAX, quiet_since = vm_now_ns();
	for (;;) {
		unsigned behind = 0;
		uint64_t progress = 0;
		for (unsigned i = 1; i < set->n && !err; i++) {
			struct mig_chan_in *ci = set->in[i];
			progress += ci->progress;
			if (ci->reached >= seq)
				continue;
			if (ci->ended) {
				err = mig_in_fail(inc, ci->err ? ci->err : -EPROTO, "channel %u: %s", i,
						  ci->view.why[0] ? ci->view.why :
						  "it ended before this pass's BARRIER");
				break;
			}
			behind++;
		}
		if (err || !behind)
			break;
		uint64_t now = vm_now_ns();
		if (progress != last_progress) {
			last_progress = progress;
			quiet_since = now;
		} else if (now - quiet_since > (uint64_t)set->timeout_ms * 1000000ULL) {
			err = mig_in_fail(inc, -ETIMEDOUT, "%u channels sent nothing for %d s before "
					  "BARRIER %u", behind, set->timeout_ms / 1000, seq);
			break;
		}
		if (mig_in_fd_ready(set->intr_fd)) {
			err = mig_in_fail(inc, -EINTR, "interrupted");
			break;
		}
		mig_in_cond_wait_tick(&set->cond, &set->lock);
	}
	for (unsigned i = 1; i < set->n && !err; i++) {
		struct mig_chan_in *ci = set->in[i];
		/* Every connection carries every barrier: one ahead skipped this one. */
		if (ci->reached != seq || ci->final != final)
			err = mig_in_fail(inc, -EPROTO, "channel %u is at BARRIER %u%s, the stream at "
					  "%u%s", i, ci->reached, ci->final ? " (final)" : "", seq,
					  final ? " (final)" : "");
	}
	if (!err) {
		set->released = seq;
		pthread_cond_broadcast(&set->cond);
	}
	pthread_mutex_unlock(&set->lock);
	if (err || !final)
		return err;
	/* The last barrier: every receiver ended; count what they did. */
	for (unsigned i = 1; i < set->n; i++) {
		struct mig_chan_in *ci = set->in[i];
		pthread_join(ci->thread, NULL);
		ci->started = false;
		inc->pages += ci->view.pages;
		inc->zero_pages += ci->view.zero_pages;
		inc->raw_pages += ci->view.raw_pages;
		mig_chan_in_free(ci);
		set->in[i] = NULL;
	}
	set->done = true;
	return 0;
}

bool mig_chans_in_done(const struct mig_incoming *inc)
{
	return !inc->chans || inc->chans->done;
}

int mig_chans_in_reason(struct mig_incoming *inc, int err)
{
	struct mig_chans_in *set = inc->chans;

	if (!set)
		return err;
	pthread_mutex_lock(&set->lock);
	for (unsigned i = 1; i < set->n; i++) {
		struct mig_chan_in *ci = set->in[i];
		if (ci && ci->ended && ci->err) {
			err = mig_in_fail(inc, ci->err, "channel %u: %s", i, ci->view.why);
			break;
		}
	}
	pthread_mutex_unlock(&set->lock);
	return err;
}

void mig_chans_in_stop(struct mig_incoming *inc)
{
	struct mig_chans_in *set = inc->chans;

	if (!set)
		return;
	pthread_mutex_lock(&set->lock);
	set->stop = true;
	pthread_cond_broadcast(&set->cond);
	pthread_mutex_unlock(&set->lock);
	for (unsigned i = 1; i < MIG_CHANNELS_MAX; i++) {
		struct mig_chan_in *ci = set->in[i];
		if (!ci)
			continue;
		if (ci->started) {
			pthread_mutex_lock(&set->lock);
			bool ended = ci->ended;
			int cerr = ci->err;
			pthread_mutex_unlock(&set->lock);
			if (cerr)
				pr_err("migration: channel %u: %s", i, ci->view.why);
			/* A receiver blocked on its socket: cut it (it is still the owner). */
			if (!ended)
				mig_stream_shutdown(&ci->s);
		}
		mig_chan_in_free(ci);
	}
	pthread_mutex_destroy(&set->lock);
	pthread_cond_destroy(&set->cond);
	free(set);
	inc->chans = NULL;
}
