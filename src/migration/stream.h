/*
 * A buffered byte stream over a connected socket, in the manner of QEMU's
 * QEMUFile and redis' rio: little-endian put/get helpers, processed-byte
 * accounting, an optional rate limit on the sending side, and a sticky
 * error: after the first failure every operation is a no-op (gets return
 * zeros), so callers check mig_stream_error() at section boundaries.
 */
#ifndef FERRY_MIGRATION_STREAM_H
#define FERRY_MIGRATION_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "util/ratelimit.h"

struct mig_stream {
	int fd;
	int err;		/* 0, or the first -errno */
	char why[192];		/* human reason for err */
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
};

/* Wrap fd (the stream owns it from now on; no intr_fd).  Returns 0 or -ENOMEM. */
int mig_stream_init(struct mig_stream *s, int fd, size_t bufsize)
	__attribute__((warn_unused_result));
/* Close the fd and free the buffer. */
void mig_stream_destroy(struct mig_stream *s);

void mig_stream_put(struct mig_stream *s, const void *data, size_t len);
void mig_stream_put_u8(struct mig_stream *s, uint8_t v);
void mig_stream_put_u16(struct mig_stream *s, uint16_t v);
void mig_stream_put_u32(struct mig_stream *s, uint32_t v);
void mig_stream_put_u64(struct mig_stream *s, uint64_t v);
/* Send everything buffered.  Returns the sticky error (0 if none). */
int mig_stream_flush(struct mig_stream *s);

/* Read exactly len bytes; on error (EOF included) fills with zeros. */
void mig_stream_get(struct mig_stream *s, void *data, size_t len);
uint8_t mig_stream_get_u8(struct mig_stream *s);
uint16_t mig_stream_get_u16(struct mig_stream *s);
uint32_t mig_stream_get_u32(struct mig_stream *s);
uint64_t mig_stream_get_u64(struct mig_stream *s);

/*
 * Is a whole read possible without waiting on the socket?  True when bytes
 * are buffered; callers that poll the fd themselves check this first.
 */
int mig_stream_buffered(const struct mig_stream *s);

/* The sticky error, 0 if none. */
int mig_stream_error(const struct mig_stream *s);
/* Record an error (the first one wins) with a reason. */
void mig_stream_fail(struct mig_stream *s, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
