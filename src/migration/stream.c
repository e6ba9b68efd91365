#include "migration/stream.h"

#include "util/iov.h"
#include "util/le.h"

#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MIG_STREAM_INTR_BYTES (1 << 20)

int mig_stream_init(struct mig_stream *s, struct mig_channel *ch, size_t bufsize)
{
	memset(s, 0, sizeof(*s));
	s->ch = ch;
	s->timeout_ms = -1;
	s->intr_fd = -1;
	s->buf = malloc(bufsize);
	s->rbuf = malloc(bufsize);
	s->cap = bufsize;
	return s->buf && s->rbuf ? 0 : -ENOMEM;
}

void mig_stream_destroy(struct mig_stream *s)
{
	mig_channel_close(s->ch);
	free(s->buf);
	free(s->rbuf);
	s->buf = s->rbuf = NULL;
	s->ch = NULL;
}

bool mig_stream_has_return_path(const struct mig_stream *s)
{
	return mig_channel_has_return_path(s->ch);
}

void mig_stream_fail(struct mig_stream *s, int err, const char *fmt, ...)
{
	va_list ap;
	int no = 0;

	if (!__atomic_compare_exchange_n(&s->failing, &no, 1, false, __ATOMIC_ACQ_REL,
					 __ATOMIC_ACQUIRE)) {
		/* Another thread records its failure: wait until it is visible. */
		while (!__atomic_load_n(&s->err, __ATOMIC_ACQUIRE))
			sched_yield();
		return;
	}
	va_start(ap, fmt);
	vsnprintf(s->why, sizeof(s->why), fmt, ap);
	va_end(ap);
	__atomic_store_n(&s->err, err ? err : -EIO, __ATOMIC_RELEASE);
}

int mig_stream_error(const struct mig_stream *s)
{
	return __atomic_load_n(&s->err, __ATOMIC_ACQUIRE);
}

const char *mig_stream_why(const struct mig_stream *s)
{
	return mig_stream_error(s) ? s->why : "";
}

void mig_stream_clear_error(struct mig_stream *s)
{
	__atomic_store_n(&s->err, 0, __ATOMIC_RELEASE);
	__atomic_store_n(&s->failing, 0, __ATOMIC_RELEASE);
	s->why[0] = '\0';
}

bool mig_stream_heard_tls_alert(const struct mig_stream *s)
{
	return s->first_len == 2 && s->first[0] == 21 && s->first[1] == 3;
}

int mig_stream_buffered(const struct mig_stream *s)
{
	return s->rpos < s->rlen;
}

/* The poll timeout: the inactivity limit, cut short by the deadline. */
static int mig_stream_wait_ms(const struct mig_stream *s)
{
	struct timespec ts;

	if (!s->deadline_ns)
		return s->timeout_ms;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	uint64_t now = (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
	if (now >= s->deadline_ns)
		return 0;
	uint64_t left = (s->deadline_ns - now + 999999) / 1000000;
	if (s->timeout_ms >= 0 && (uint64_t)s->timeout_ms < left)
		return s->timeout_ms;
	return left > 1000000000ULL ? 1000000000 : (int)left;
}

/*
 * Wait until the channel is ready for `events`, at most the stream's
 * timeout or deadline.  -EINTR when the interrupt fd is readable, even if
 * the channel is ready too: a peer that keeps sending must not keep a stop
 * request waiting.
 */
static int mig_stream_wait(struct mig_stream *s, short events)
{
	int r;

	do {
		r = mig_channel_wait(s->ch, events, mig_stream_wait_ms(s), &s->intr_fd, 1);
	} while (r == -EAGAIN);
	if (r > 0 && (r & MIG_WAIT_INTR(0)))
		return -EINTR;
	if (r == 0)
		return -ETIMEDOUT;
	return r < 0 ? r : 0;
}

/* Record a failed wait: an interruption, or the peer's silence. */
static void mig_stream_wait_fail(struct mig_stream *s, int err, const char *silence)
{
	if (err == -EINTR)
		mig_stream_fail(s, err, "interrupted");
	else
		mig_stream_fail(s, err, "%s: %s", silence, strerror(-err));
}

/*
 * A stream that always finds its socket ready never waits, so look at the
 * interrupt fd between waits too: once per MIG_STREAM_INTR_BYTES moved.
 */
static void mig_stream_check_intr(struct mig_stream *s, size_t moved)
{
	struct pollfd p = { .fd = s->intr_fd, .events = POLLIN };

	if (s->intr_fd < 0)
		return;
	s->intr_count += moved;
	if (s->intr_count < MIG_STREAM_INTR_BYTES)
		return;
	s->intr_count = 0;
	if (poll(&p, 1, 0) > 0)
		mig_stream_fail(s, -EINTR, "interrupted");
}

/* Send all of v[0..n) (ours to change as it goes out). */
static void mig_stream_send_allv(struct mig_stream *s, struct iovec *v, int n)
{
	while (n && !mig_stream_error(s)) {
		ssize_t r = mig_channel_writev(s->ch, v, n);
		if (r == -EAGAIN) {
			int err = mig_stream_wait(s, POLLOUT);
			if (err)
				mig_stream_wait_fail(s, err, "peer stopped reading");
			continue;
		}
		if (r == -EINTR)
			continue;
		if (r <= 0) {
			r = r ? r : -EIO;
			mig_stream_fail(s, (int)r, "send failed: %s", mig_channel_strerror(s->ch, (int)r));
			break;
		}
		s->bytes_sent += (uint64_t)r;
		mig_stream_check_intr(s, (size_t)r);
		iov_advance(&v, &n, (size_t)r);
	}
}

/*
 * Is the stream paced?  A limiter set to no limit (rate 0: pre-copy's
 * default) is not: its bytes go out as they come, scatter-gather too.
 * Asked at each write, as migrate-set-parameters may change the rate.
 */
static bool mig_stream_paced(const struct mig_stream *s)
{
	return s->rl && s->rl->rate;
}

static void mig_stream_send_all(struct mig_stream *s, const uint8_t *p, size_t len)
{
	while (len && !mig_stream_error(s)) {
		size_t chunk = len;
		if (mig_stream_paced(s)) {
			/* Pay for what we send in slices, so the rate stays smooth. */
			chunk = chunk > 256 * 1024 ? 256 * 1024 : chunk;
			ratelimit_consume(s->rl, chunk);
		}
		struct iovec v = { .iov_base = (void *)p, .iov_len = chunk };
		mig_stream_send_allv(s, &v, 1);
		p += chunk;
		len -= chunk;
	}
}

/* Below this, iovecs are copied into the buffer: a copy is cheaper than a write. */
#define MIG_STREAM_COPY_MAX (64 * 1024)
#define MIG_STREAM_IOV_MAX 512

uint64_t mig_stream_unsent(const struct mig_stream *s)
{
	return s->bytes_out - s->bytes_sent + mig_channel_unsent(s->ch);
}

void mig_stream_putv(struct mig_stream *s, const struct iovec *iov, int n)
{
	struct iovec v[MIG_STREAM_IOV_MAX];
	size_t total = 0;
	int k = 0;

	for (int i = 0; i < n; i++)
		total += iov[i].iov_len;
	if (mig_stream_error(s) || !total)
		return;
	if (mig_stream_paced(s) || s->hold || total < MIG_STREAM_COPY_MAX ||
	    n >= MIG_STREAM_IOV_MAX || !s->ch) {
		/*
		 * Rate-limited: mig_stream_put pays for it in slices.  Held
		 * (replication): copied now, while the guest is paused.
		 */
		for (int i = 0; i < n; i++)
			mig_stream_put(s, iov[i].iov_base, iov[i].iov_len);
		return;
	}
	s->bytes_out += total;
	if (s->len)
		v[k++] = (struct iovec){ .iov_base = s->buf, .iov_len = s->len };
	for (int i = 0; i < n; i++)
		if (iov[i].iov_len)
			v[k++] = iov[i];
	s->len = 0;		/* the buffered bytes go with them */
	mig_stream_send_allv(s, v, k);
}

/* Holding: make room for len more bytes in the buffer.  False: past hold_max (or no memory). */
static bool mig_stream_hold_room(struct mig_stream *s, size_t len)
{
	if (s->len + len <= s->cap)
		return true;
	if (s->len + len > s->hold_max)
		return false;
	size_t cap = s->cap * 2 > s->len + len ? s->cap * 2 : s->len + len;
	cap = cap > s->hold_max ? s->hold_max : cap;
	uint8_t *b = realloc(s->buf, cap);
	if (!b)
		return false;
	s->buf = b;
	s->cap = cap;
	return true;
}

void mig_stream_hold(struct mig_stream *s, size_t max)
{
	s->hold = true;
	s->hold_max = max > s->cap ? max : s->cap;
}

int mig_stream_release(struct mig_stream *s)
{
	s->hold = false;
	return mig_stream_flush(s);
}

int mig_stream_flush(struct mig_stream *s)
{
	if (s->hold && !mig_stream_error(s))
		return 0;
	if (s->len && !s->ch && !mig_stream_error(s))
		mig_stream_fail(s, -EBADF, "the stream is closed");
	if (s->len && !mig_stream_error(s))
		mig_stream_send_all(s, s->buf, s->len);
	s->len = 0;
	return mig_stream_error(s);
}

int mig_stream_finish(struct mig_stream *s)
{
	int err = mig_stream_flush(s);

	if (!err && (err = mig_channel_finish(s->ch)))
		mig_stream_fail(s, err, "cannot complete the stream: %s", strerror(-err));
	return mig_stream_error(s);
}

int mig_stream_wait_readable(struct mig_stream *s, int timeout_ms, const int *intr, int nintr)
{
	int r;

	if (s && s->ch && mig_stream_buffered(s))
		timeout_ms = 0;
	r = mig_channel_wait(s ? s->ch : NULL, POLLIN, timeout_ms, intr, nintr);
	if (r == -EAGAIN)
		r = 0;
	if (r >= 0 && s && s->ch && mig_stream_buffered(s))
		r |= MIG_WAIT_CHANNEL;
	return r;
}

void mig_stream_linger(struct mig_stream *s, uint64_t linger_ns)
{
	uint8_t sink[65536];
	struct timespec ts;

	if (!mig_stream_has_return_path(s))
		return;
	mig_channel_shutdown(s->ch, false, true);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	uint64_t now = (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
	uint64_t end = now + linger_ns;
	while (now < end) {
		int r = mig_channel_wait(s->ch, POLLIN, 50, NULL, 0);
		if (r < 0 && r != -EAGAIN)
			break;
		if (r > 0) {
			ssize_t n = mig_channel_read(s->ch, sink, sizeof(sink));
			if (n <= 0 && n != -EAGAIN && n != -EINTR)
				break;	/* the peer closed too (or broke) */
		}
		clock_gettime(CLOCK_MONOTONIC, &ts);
		now = (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
	}
}

void mig_stream_shutdown(struct mig_stream *s)
{
	if (s->ch)
		mig_channel_shutdown(s->ch, true, true);
}

void mig_stream_set_buffers(struct mig_stream *s, int sndbuf, int rcvbuf)
{
	if (s->ch)
		mig_channel_set_buffers(s->ch, sndbuf, rcvbuf);
}

void mig_stream_put(struct mig_stream *s, const void *data, size_t len)
{
	const uint8_t *p = data;

	if (mig_stream_error(s) || !len)
		return;
	s->bytes_out += len;
	if (s->hold && mig_stream_hold_room(s, len)) {
		memcpy(s->buf + s->len, p, len);
		s->len += len;
		return;
	}
	s->hold = false;	/* past hold_max: what is held goes out now, as usual */
	if (len >= s->cap) {
		/* Large payloads go straight out after what is queued. */
		mig_stream_flush(s);
		mig_stream_send_all(s, p, len);
		return;
	}
	if (s->len + len > s->cap)
		mig_stream_flush(s);
	memcpy(s->buf + s->len, p, len);
	s->len += len;
}

void mig_stream_put_u8(struct mig_stream *s, uint8_t v)
{
	mig_stream_put(s, &v, 1);
}

void mig_stream_put_u16(struct mig_stream *s, uint16_t v)
{
	uint8_t b[2];
	le_put(b, v, 2);
	mig_stream_put(s, b, 2);
}

void mig_stream_put_u32(struct mig_stream *s, uint32_t v)
{
	uint8_t b[4];
	le_put(b, v, 4);
	mig_stream_put(s, b, 4);
}

void mig_stream_put_u64(struct mig_stream *s, uint64_t v)
{
	uint8_t b[8];
	le_put(b, v, 8);
	mig_stream_put(s, b, 8);
}

/*
 * Receive up to len bytes into p, waiting (bounded by the stream's
 * timeout) until at least one arrives.  Returns how many, or 0 with the
 * stream's error set.
 */
static size_t mig_stream_recv_some(struct mig_stream *s, uint8_t *p, size_t len)
{
	if (!s->ch && !mig_stream_error(s))
		mig_stream_fail(s, -EBADF, "the stream is closed");
	while (!mig_stream_error(s)) {
		ssize_t n = mig_channel_read(s->ch, p, len);
		if (n > 0) {
			for (ssize_t i = 0; i < n && s->first_len < sizeof(s->first); i++)
				s->first[s->first_len++] = p[i];
			mig_stream_check_intr(s, (size_t)n);
			return (size_t)n;
		}
		if (n == 0) {
			mig_stream_fail(s, s->ch->ops->eof_err, "%s", s->ch->ops->eof_why);
		} else if (n == -EAGAIN) {
			int err = mig_stream_wait(s, POLLIN);
			if (err)
				mig_stream_wait_fail(s, err, "nothing from the peer");
		} else if (n != -EINTR) {
			mig_stream_fail(s, (int)n, "receive failed: %s",
					mig_channel_strerror(s->ch, (int)n));
		}
	}
	return 0;
}

/* Refill the read buffer with whatever arrives (at least one byte). */
static void mig_stream_fill(struct mig_stream *s)
{
	s->rpos = 0;
	s->rlen = mig_stream_recv_some(s, s->rbuf, s->cap);
}

/* Receive straight into p (a large read with nothing buffered). */
static size_t mig_stream_get_direct(struct mig_stream *s, uint8_t *p, size_t len)
{
	size_t got = 0;

	while (got < len && !mig_stream_error(s))
		got += mig_stream_recv_some(s, p + got, len - got);
	s->bytes_in += got;
	return got;
}

void mig_stream_get(struct mig_stream *s, void *data, size_t len)
{
	uint8_t *p = data;

	while (len && !mig_stream_error(s)) {
		if (s->rpos == s->rlen && len >= 16384) {
			/* Skip the copy through rbuf for page data. */
			size_t got = mig_stream_get_direct(s, p, len);
			p += got;
			len -= got;
			continue;
		}
		if (s->rpos == s->rlen)
			mig_stream_fill(s);
		size_t n = s->rlen - s->rpos < len ? s->rlen - s->rpos : len;
		memcpy(p, s->rbuf + s->rpos, n);
		s->rpos += n;
		s->bytes_in += n;
		p += n;
		len -= n;
	}
	if (len)
		memset(p, 0, len);
}

uint8_t mig_stream_get_u8(struct mig_stream *s)
{
	uint8_t v;
	mig_stream_get(s, &v, 1);
	return v;
}

uint16_t mig_stream_get_u16(struct mig_stream *s)
{
	uint8_t b[2];
	mig_stream_get(s, b, 2);
	return (uint16_t)le_get(b, 2);
}

uint32_t mig_stream_get_u32(struct mig_stream *s)
{
	uint8_t b[4];
	mig_stream_get(s, b, 4);
	return (uint32_t)le_get(b, 4);
}

uint64_t mig_stream_get_u64(struct mig_stream *s)
{
	uint8_t b[8];
	mig_stream_get(s, b, 8);
	return le_get(b, 8);
}
