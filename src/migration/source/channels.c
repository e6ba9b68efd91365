/*
 * --channels on the source (multi.h): the extra connections, a sending
 * thread each, and the pass barriers.
 *
 * The migration thread builds a RAM section for an extra connection in a
 * buffer (`stage`, a stream with no channel whose buffer is one of that
 * connection's), then queues the buffer; the connection's thread writes
 * queued buffers in order and hands them back.  Each connection has
 * MIG_CHAN_BUFS buffers: one filled while another is written.  The rate
 * limit is paid by the migration thread as it queues (the limiter has one
 * owner); the encoders (ram_pool.c) and the bitmap walk stay as they are.
 */
#include "migration/multi.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migration/migration.h"
#include "migration/preempt.h"
#include "migration/section.h"
#include "util/le.h"
#include "util/log.h"

#define MIG_CHAN_BUFS 2
/* Larger than any RAM section (256 pages, their entries, header, checksum). */
#define MIG_CHAN_BUF_SIZE (MIG_RAM_BATCH_MAX * (GUEST_PAGE_SIZE + MIG_RAM_ENTRY) + 64)
#define MIG_CHAN_CONNECT_TIMEOUT_MS 10000
#define MIG_CHAN_IO_TIMEOUT_MS 30000

/*
 * One extra connection.  `s` is the sending thread's once it runs; the
 * rest below `lock` is guarded by it (the migration thread fills, the
 * sending thread drains).
 */
struct mig_chan_out {
	struct migration *mig;
	unsigned index;
	struct mig_stream s;
	pthread_t thread;
	bool started;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint8_t *queue[MIG_CHAN_BUFS];	/* buffers to write, oldest first */
	size_t qlen[MIG_CHAN_BUFS];
	unsigned head, count;
	uint8_t *spare[MIG_CHAN_BUFS];	/* buffers free to fill */
	unsigned nspare;
	bool closing;			/* nothing more comes: write the rest and end */
	bool ended;			/* the thread is done (error or closing) */
	int err;			/* the first failure, reason in s.why */
};

static void *mig_chan_sender(void *arg)
{
	struct mig_chan_out *o = arg;
	char name[16];

	snprintf(name, sizeof(name), "mig-chan%u", o->index);
	pthread_setname_np(pthread_self(), name);
	pthread_mutex_lock(&o->lock);
	for (;;) {
		while (!o->count && !o->closing)
			pthread_cond_wait(&o->cond, &o->lock);
		if (!o->count)
			break;
		uint8_t *b = o->queue[o->head];
		size_t len = o->qlen[o->head];
		pthread_mutex_unlock(&o->lock);
		mig_stream_put(&o->s, b, len);
		int err = mig_stream_flush(&o->s);
		pthread_mutex_lock(&o->lock);
		o->head = (o->head + 1) % MIG_CHAN_BUFS;
		o->count--;
		o->spare[o->nspare++] = b;
		if (err) {
			o->err = err;
			break;
		}
		pthread_cond_broadcast(&o->cond);
	}
	o->ended = true;
	pthread_cond_broadcast(&o->cond);
	int err = o->err;
	pthread_mutex_unlock(&o->lock);
	if (err)	/* the migration fails on its next look at the main stream */
		mig_stream_fail(&o->mig->s, err, "channel %u: %s", o->index, mig_stream_why(&o->s));
	return NULL;
}

static void mig_chan_out_free(struct mig_chan_out *o)
{
	if (!o)
		return;
	if (o->started) {
		pthread_mutex_lock(&o->lock);
		o->closing = true;
		pthread_cond_broadcast(&o->cond);
		pthread_mutex_unlock(&o->lock);
		/* A sender stuck on a dead peer: cut it loose (the owner waits below). */
		if (!o->ended)
			mig_stream_shutdown(&o->s);
		pthread_join(o->thread, NULL);
	}
	mig_stream_destroy(&o->s);
	for (unsigned i = 0; i < o->nspare; i++)
		free(o->spare[i]);
	for (unsigned i = 0; i < o->count; i++)
		free(o->queue[(o->head + i) % MIG_CHAN_BUFS]);
	pthread_mutex_destroy(&o->lock);
	pthread_cond_destroy(&o->cond);
	free(o);
}

int mig_chan_dial(struct migration *mig, struct mig_stream *s, uint32_t index, char *why,
		  size_t len)
{
	struct mig_channel *ch;
	uint8_t hello[MIG_CHAN_HELLO_LEN], buf[512], type;
	uint32_t n;
	struct mig_chan_hello h = { .id = mig->chans.id, .index = index,
				    .count = mig->chans.n ? mig->chans.n : 1 };
	int err = mig_channel_open(mig->p.uri, &mig->p.tls, MIG_CHAN_CONNECT_TIMEOUT_MS, &ch, why, len);

	if (err)
		return err;
	if (mig_stream_init(s, ch, 64 * 1024)) {
		snprintf(why, len, "out of memory");
		return -ENOMEM;
	}
	s->timeout_ms = MIG_CHAN_IO_TIMEOUT_MS;
	mig_chan_hello_encode(hello, &h);
	mig_stream_put(s, hello, sizeof(hello));
	err = mig_stream_flush(s);
	if (!err)
		err = mig_section_read(s, buf, sizeof(buf), &type, &n);
	if (err) {
		snprintf(why, len, "%s", mig_stream_why(s));
		return err;
	}
	int32_t status;
	const char *msg;
	int mlen;
	if (type != MIG_SEC_RESULT || mig_result_parse(buf, n, &status, &msg, &mlen)) {
		snprintf(why, len, "the destination answered the hello with section %u", type);
		return -EPROTO;
	}
	if (status) {
		snprintf(why, len, "the destination refused it: %.*s", mlen, msg);
		return status < 0 ? status : -EPROTO;
	}
	return 0;
}

int mig_chans_src_open(struct migration *mig, unsigned n)
{
	struct mig_chans_src *c = &mig->chans;
	char why[256];

	c->n = n;
	c->next = 0;
	c->stage_to = -1;
	if (n <= 1)
		return 0;
	c->stage = calloc(1, sizeof(*c->stage));
	if (!c->stage)
		return precopy_fail(mig, -ENOMEM, "out of memory");
	c->stage->timeout_ms = -1;
	c->stage->intr_fd = -1;
	c->open = true;
	for (unsigned i = 1; i < n; i++) {
		struct mig_chan_out *o = calloc(1, sizeof(*o));
		if (!o)
			return precopy_fail(mig, -ENOMEM, "out of memory");
		o->mig = mig;
		o->index = i;
		pthread_mutex_init(&o->lock, NULL);
		pthread_cond_init(&o->cond, NULL);
		c->out[i] = o;
		for (; o->nspare < MIG_CHAN_BUFS; o->nspare++)
			if (!(o->spare[o->nspare] = malloc(MIG_CHAN_BUF_SIZE)))
				return precopy_fail(mig, -ENOMEM, "out of memory");
		int err = mig_chan_dial(mig, &o->s, i, why, sizeof(why));
		if (err)
			return precopy_fail(mig, err, "channel %u of %u: %s", i, n, why);
		if (pthread_create(&o->thread, NULL, mig_chan_sender, o))
			return precopy_fail(mig, -EAGAIN, "cannot start the sender of channel %u", i);
		o->started = true;
	}
	pr_info("migration: %u channels", n);
	return 0;
}

/* Take a free buffer of connection i into the stage.  False once it failed. */
static bool mig_chan_take(struct mig_chans_src *c, unsigned i)
{
	struct mig_chan_out *o = c->out[i];

	pthread_mutex_lock(&o->lock);
	while (!o->nspare && !o->ended)
		pthread_cond_wait(&o->cond, &o->lock);
	bool ok = !o->ended;
	if (ok) {
		c->stage->buf = o->spare[--o->nspare];
		c->stage->cap = MIG_CHAN_BUF_SIZE;
		c->stage->len = 0;
		c->stage_to = (int)i;
	}
	pthread_mutex_unlock(&o->lock);
	return ok;
}

/* Queue the stage's buffer on its connection. */
static void mig_chan_queue(struct migration *mig)
{
	struct mig_chans_src *c = &mig->chans;
	struct mig_chan_out *o = c->out[c->stage_to];
	size_t len = c->stage->len;

	if (mig_stream_error(c->stage))
		mig_stream_fail(&mig->s, mig_stream_error(c->stage), "channel %d: %s", c->stage_to,
				mig_stream_why(c->stage));
	c->bytes[c->stage_to] += len;
	c->staged += len;
	pthread_mutex_lock(&o->lock);
	o->queue[(o->head + o->count) % MIG_CHAN_BUFS] = c->stage->buf;
	o->qlen[(o->head + o->count) % MIG_CHAN_BUFS] = len;
	o->count++;
	pthread_cond_broadcast(&o->cond);
	pthread_mutex_unlock(&o->lock);
	c->stage->buf = NULL;
	c->stage->len = 0;
	c->stage_to = -1;
	/* The limiter is ours alone: pay for the bytes here. */
	if (mig->s.rl)
		ratelimit_consume(mig->s.rl, len);
}

struct mig_stream *mig_chans_ram_begin(struct migration *mig, uint32_t len)
{
	struct mig_chans_src *c = &mig->chans;

	if (!c->open || len > MIG_CHAN_BUF_SIZE || mig_stream_error(&mig->s))
		return &mig->s;
	unsigned i = c->next;
	c->next = (c->next + 1) % c->n;
	if (i == 0 || !mig_chan_take(c, i))
		return &mig->s;		/* a failed connection failed the main stream too */
	/* A fresh stage: no error, nothing counted. */
	mig_stream_clear_error(c->stage);
	return c->stage;
}

void mig_chans_ram_end(struct migration *mig, struct mig_stream *out)
{
	if (out != &mig->s && mig->chans.stage_to > 0)
		mig_chan_queue(mig);
}

int mig_chans_barrier(struct migration *mig, uint32_t seq, bool final)
{
	struct mig_chans_src *c = &mig->chans;
	uint8_t p[MIG_CHAN_BARRIER_LEN];

	if (!c->open)
		return mig_stream_error(&mig->s);
	mig_chan_barrier_encode(p, seq, final);
	for (unsigned i = 1; i < c->n; i++) {
		if (!mig_chan_take(c, i))
			break;
		mig_section_write(c->stage, MIG_SEC_BARRIER, p, sizeof(p));
		mig_chan_queue(mig);
	}
	mig_section_write(&mig->s, MIG_SEC_BARRIER, p, sizeof(p));
	/* Out now: the destination's receivers wait for it to go on. */
	int err = mig_stream_flush(&mig->s);
	if (!final || err)
		return err;
	/* The extra connections have nothing more to carry: drain and close them. */
	for (unsigned i = 1; i < c->n; i++) {
		struct mig_chan_out *o = c->out[i];
		pthread_mutex_lock(&o->lock);
		o->closing = true;
		pthread_cond_broadcast(&o->cond);
		while (!o->ended)
			pthread_cond_wait(&o->cond, &o->lock);
		pthread_mutex_unlock(&o->lock);
	}
	err = mig_stream_error(&mig->s);
	mig_chans_src_close(mig);
	return err;
}

void mig_chans_stats(const struct migration *mig, struct mig_stats *st)
{
	const struct mig_chans_src *c = &mig->chans;

	st->nr_channels = c->n ? c->n : 1;
	st->channel_bytes[0] = mig->s.bytes_out;
	for (unsigned i = 1; i < c->n && i < MIG_CHANNELS_MAX; i++)
		st->channel_bytes[i] = c->bytes[i];
	st->preempt_bytes = mig_preempt_src_bytes(mig);
}

uint64_t mig_bytes_out(const struct migration *mig)
{
	return mig->s.bytes_out + mig->chans.staged + mig_preempt_src_bytes(mig);
}

uint64_t mig_bytes_unsent(struct migration *mig)
{
	struct mig_chans_src *c = &mig->chans;
	uint64_t n = mig_stream_unsent(&mig->s);

	for (unsigned i = 1; c->open && i < c->n; i++) {
		struct mig_chan_out *o = c->out[i];
		pthread_mutex_lock(&o->lock);
		for (unsigned k = 0; k < o->count; k++)
			n += o->qlen[(o->head + k) % MIG_CHAN_BUFS];
		pthread_mutex_unlock(&o->lock);
		/* The sender owns its stream; the socket's own count is safe to ask. */
		n += mig_channel_unsent(o->s.ch);
	}
	return n;
}

void mig_chans_src_close(struct migration *mig)
{
	struct mig_chans_src *c = &mig->chans;

	for (unsigned i = 1; i < MIG_CHANNELS_MAX; i++) {
		mig_chan_out_free(c->out[i]);
		c->out[i] = NULL;
	}
	if (c->stage) {
		/* A buffer taken and not queued (a failure mid-section) is ours. */
		free(c->stage->buf);
		free(c->stage);
		c->stage = NULL;
	}
	c->stage_to = -1;
	c->open = false;
}
