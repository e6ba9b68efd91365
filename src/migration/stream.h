/*
 * A buffered byte stream over a migration channel (channel/channel.h), in
 * the manner of QEMU's QEMUFile and redis' rio: little-endian put/get
 * helpers, processed-byte accounting, an optional rate limit on the sending
 * side, and a sticky error: after the first failure every operation is a
 * no-op (gets return zeros), so callers check mig_stream_error() at section
 * boundaries.
 *
 * A stream belongs to one thread at a time (the migration thread on a
 * source, the main thread on a destination; with --channels each extra
 * connection's stream belongs to its sending or receiving thread); see
 * mig_stream_shutdown() for the one call another thread may make, and
 * mig_stream_fail(), which any thread may call (a channel's sender fails
 * the main stream so).
 */
#ifndef FERRY_MIGRATION_STREAM_H
#define FERRY_MIGRATION_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include <stdbool.h>
#include <sys/uio.h>

#include "migration/channel/channel.h"
#include "util/ratelimit.h"

struct mig_stream {
	struct mig_channel *ch;	/* NULL: none (closed) */
	/*
	 * The sticky error.  A post-copy destination reads the stream in one
	 * thread and writes page requests from another (under its own lock),
	 * so either may record the failure: `failing` elects the first,
	 * which writes `why` and then publishes `err`.  Read them with
	 * mig_stream_error() and mig_stream_why(); reset with
	 * mig_stream_clear_error() only while one thread uses the stream.
	 */
	int err;		/* 0, or the first -errno (atomic) */
	int failing;		/* a failure is being recorded (atomic) */
	char why[192];		/* human reason for err, fixed once err is set */
	uint8_t *buf;		/* write side: bytes not sent yet */
	size_t cap;
	size_t len;
	uint8_t *rbuf;		/* read side: bytes received, not handed out */
	size_t rlen;
	size_t rpos;
	uint64_t bytes_out;	/* bytes put so far */
	uint64_t bytes_in;	/* bytes got so far */
	uint64_t bytes_sent;	/* bytes the kernel took (bytes_out less what is buffered) */
	struct ratelimit *rl;	/* sending side only; NULL = unlimited */
	int timeout_ms;		/* read/write inactivity limit; -1 = none */
	uint64_t deadline_ns;	/* CLOCK_MONOTONIC time no wait may pass; 0 = none */
	/*
	 * Optional (-1 = none): while this fd is readable, waiting to send or
	 * receive fails at once with -EINTR, so whoever owns the stream can
	 * abandon it promptly (ferry run: its signalfd).  Never read here.
	 * A busy stream that never has to wait checks it every 1 MiB moved.
	 */
	int intr_fd;
	size_t intr_count;	/* bytes moved since intr_fd was last checked */
	/* The first bytes received: did a TLS peer answer a plain stream? */
	uint8_t first[2];
	uint8_t first_len;
	/*
	 * Replication (docs/replication.md): while `hold` is set, puts and
	 * flushes keep the bytes here, the buffer growing up to hold_max (past
	 * it they go out as usual), so an epoch is collected while the guest
	 * is paused and sent after it resumed (mig_stream_release).
	 */
	bool hold;
	size_t hold_max;
	/*
	 * The section chain: XXH3-64 over the checksums of every section
	 * written (chain_out) or read (chain_in), in order, each step seeded
	 * with the chain before; chain_in_prev is chain_in before the last
	 * section read.  An EPOCH_END names the writer's chain so the reader
	 * knows no section of the epoch went missing or changed.
	 */
	uint64_t chain_out, chain_in, chain_in_prev;
};

/*
 * Did the peer's first bytes form a TLS alert record (21, 3)?  A plain
 * source hears that from a destination that requires TLS.
 */
bool mig_stream_heard_tls_alert(const struct mig_stream *s);

/*
 * Wrap ch (the stream owns it from now on, even on failure: destroy closes
 * it; no intr_fd).  Returns 0 or -ENOMEM.
 */
int mig_stream_init(struct mig_stream *s, struct mig_channel *ch, size_t bufsize)
	__attribute__((warn_unused_result));
/* Close the channel and free the buffers. */
void mig_stream_destroy(struct mig_stream *s);
/* Can the peer answer?  False for a file, and for no channel. */
bool mig_stream_has_return_path(const struct mig_stream *s);

void mig_stream_put(struct mig_stream *s, const void *data, size_t len);
void mig_stream_put_u8(struct mig_stream *s, uint8_t v);
void mig_stream_put_u16(struct mig_stream *s, uint16_t v);
void mig_stream_put_u32(struct mig_stream *s, uint32_t v);
void mig_stream_put_u64(struct mig_stream *s, uint64_t v);
/*
 * Put the bytes of n iovecs.  Large ones are not copied: what is buffered
 * and the iovecs go out in one scatter-gather write, so their memory must
 * not change until this returns.  Small ones, or with a rate limit, are
 * put as mig_stream_put() would.
 */
void mig_stream_putv(struct mig_stream *s, const struct iovec *iov, int n);
/* Send everything buffered.  Returns the sticky error (0 if none). */
int mig_stream_flush(struct mig_stream *s);
/*
 * Bytes put that the peer has not taken yet: still in this buffer, or in
 * the channel's send queue (mig_channel_unsent).  The stream's thread.
 */
uint64_t mig_stream_unsent(const struct mig_stream *s);
/*
 * The stream is complete: send what is buffered and publish it (a file is
 * synced and renamed to its name).  Returns the sticky error (0 if none).
 */
int mig_stream_finish(struct mig_stream *s) __attribute__((warn_unused_result));

/* Read exactly len bytes; on error (EOF included) fills with zeros. */
void mig_stream_get(struct mig_stream *s, void *data, size_t len);
uint8_t mig_stream_get_u8(struct mig_stream *s);
uint16_t mig_stream_get_u16(struct mig_stream *s);
uint32_t mig_stream_get_u32(struct mig_stream *s);
uint64_t mig_stream_get_u64(struct mig_stream *s);

/* Are received bytes buffered (a read cannot block)? */
int mig_stream_buffered(const struct mig_stream *s);

/*
 * Wait at most timeout_ms (0: just look) until a read would not block
 * (bytes buffered, or the channel readable: data, the end or an error) or
 * one of nintr fds is readable.  s may be NULL, and a stream without a
 * return path never becomes readable on its writing side.  Returns the
 * MIG_WAIT_* mask of channel.h (0: timeout) or -errno.
 */
int mig_stream_wait_readable(struct mig_stream *s, int timeout_ms, const int *intr, int nintr);

/*
 * After giving up on a stream, say so by closing our sending side, then
 * read and drop what the peer still sends for at most linger_ns (or until
 * it closes): closing with unread data would reset the connection and
 * could destroy what we sent last.  Nothing to do without a return path.
 */
void mig_stream_linger(struct mig_stream *s, uint64_t linger_ns);
/*
 * Cut the channel both ways, as a network failure would (a test hook).
 * The one call another thread may make, while the owner cannot destroy
 * the stream (the caller holds the lock the owner destroys it under).
 */
void mig_stream_shutdown(struct mig_stream *s);
/*
 * Keep what is put from now on in memory (up to max bytes in all) until
 * mig_stream_release(), which sends it.  Owner only.
 */
void mig_stream_hold(struct mig_stream *s, size_t max);
/* Stop holding and send everything buffered.  Returns the sticky error. */
int mig_stream_release(struct mig_stream *s);
/* Kernel buffer size hints for the channel (0: leave as is). */
void mig_stream_set_buffers(struct mig_stream *s, int sndbuf, int rcvbuf);

/* The sticky error, 0 if none.  Any thread. */
int mig_stream_error(const struct mig_stream *s);
/* Why it failed ("" before a failure).  Any thread, once the error is set. */
const char *mig_stream_why(const struct mig_stream *s);
/* Forget the error (to answer on a stream whose reading failed).  Owner only. */
void mig_stream_clear_error(struct mig_stream *s);
/* Record an error (the first one wins) with a reason. */
void mig_stream_fail(struct mig_stream *s, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
