/*
 * Migration channels: what the stream (stream.c) reads from and writes to.
 * A channel is an ops table entry, one file each (tcp.c, unix.c, file.c),
 * registered by enum in channel.c, in the manner of QEMU's QIOChannel and
 * redis' rio.  The migration code above never sees a file descriptor: it
 * reads, writes, waits, shuts down and closes through these calls.
 *
 * A channel may lack a return path (file:PATH carries the stream one way):
 * then nothing is ever read on the writing side, and the reading side never
 * answers.  docs/migration-stream.md, "Without a return path".
 *
 * TLS (tls.c) is not a URI scheme but a layer: --tls-creds turns it on for
 * a tcp: or unix: channel, whose ops it takes over and calls below itself
 * (ch->lower).  Every channel that carries a migration over a network,
 * now and to come (several connections, replication), opens through
 * mig_channel_open() / mig_channel_listen() with the caller's TLS settings
 * so that none of them can bypass it.
 *
 * Concurrency: a channel belongs to the thread that owns its stream.  Only
 * mig_channel_shutdown() may be called from another thread (a test hook
 * cutting the connection), and only while the owner cannot close it.  A
 * post-copy destination writes page requests from its fault thread while
 * the main thread reads: one writer and one reader at a time, which a TLS
 * session allows too (GnuTLS: one sending and one receiving thread).
 */
#ifndef FERRY_MIGRATION_CHANNEL_CHANNEL_H
#define FERRY_MIGRATION_CHANNEL_CHANNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

enum mig_channel_kind {
	MIG_CHANNEL_TCP,	/* tcp:HOST:PORT */
	MIG_CHANNEL_UNIX,	/* unix:PATH */
	MIG_CHANNEL_FILE,	/* file:PATH, one way, no return path */
	MIG_CHANNEL_TLS,	/* a layer over tcp/unix, not a scheme (--tls-creds) */
	MIG_CHANNEL_NR,
};

/* The longest address part of a URI accepted (a path). */
#define MIG_CHANNEL_ADDR_MAX 4000

struct mig_tls;
struct mig_tls_session;

struct mig_channel {
	const struct mig_channel_ops *ops;
	int fd;			/* only the ops and channel.c touch it */
	bool can_read;		/* which ways this end carries bytes */
	bool can_write;
	bool shut_rd, shut_wr;	/* mig_channel_shutdown() was called */
	char *path;		/* file: the final name (writer) */
	char *tmp;		/* file: the name written until finish; NULL after */
	const struct mig_channel_ops *lower;	/* under a layer (TLS): the socket's */
	struct mig_tls_session *tls;	/* tls.c's session; NULL without TLS */
};

/* A destination waiting for its source (sockets listen; a file is opened). */
struct mig_listener {
	const struct mig_channel_ops *ops;
	int fd;
	const struct mig_tls *tls;	/* NULL: plain; else the caller's, outlives l */
	char addr[MIG_CHANNEL_ADDR_MAX + 1];
};

struct mig_channel_ops {
	const char *scheme;	/* "tcp"; a layer (tls) is no scheme: check is NULL */
	const char *syntax;	/* "tcp:HOST:PORT", for messages */
	bool return_path;	/* the reader can answer the writer */
	/* What a read at the end of the stream means. */
	int eof_err;
	const char *eof_why;
	/* Is addr well formed?  0, or -EINVAL with a reason in why. */
	int (*check)(const char *addr, char *why, size_t len);
	/* Writer (source): connect / create.  0 or -errno, ch->fd set. */
	int (*open)(struct mig_channel *ch, const char *addr, int timeout_ms);
	/* Reader (destination): get ready for a writer.  0 or -errno. */
	int (*listen)(struct mig_listener *l, const char *addr);
	/* Take the writer: 0 or -errno (-ETIMEDOUT, -EINTR for intr_fd). */
	int (*accept)(struct mig_listener *l, struct mig_channel *ch, int timeout_ms, int intr_fd);
	/* Undo what listen left behind (a socket file).  May be NULL. */
	void (*unlisten)(const char *addr);
	/* Without blocking on a socket: bytes, 0 at the end, -EAGAIN, -errno. */
	ssize_t (*read)(struct mig_channel *ch, void *buf, size_t len);
	ssize_t (*writev)(struct mig_channel *ch, const struct iovec *iov, int iovcnt);
	/* Make what was written durable (file: fsync).  May be NULL. */
	int (*flush)(struct mig_channel *ch);
	/* The stream is complete: publish it (file: fsync, rename).  May be NULL. */
	int (*finish)(struct mig_channel *ch);
	int (*shutdown)(struct mig_channel *ch, bool rd, bool wr);
	/* Release; a writer that did not finish leaves nothing behind. */
	void (*close)(struct mig_channel *ch);
	/* A hint for kernel buffer sizes (0: leave as is).  May be NULL. */
	void (*set_buffers)(struct mig_channel *ch, int sndbuf, int rcvbuf);
	/*
	 * Bytes already read from the socket and waiting inside the channel
	 * (a TLS record decrypted in part): poll() cannot see them.  May be NULL.
	 */
	bool (*pending)(struct mig_channel *ch);
	/*
	 * Bytes written and not yet taken by the peer (a socket's send queue:
	 * unsent and unacknowledged).  Safe from any thread while ch is open.
	 * May be NULL: nothing waits.
	 */
	uint64_t (*unsent)(struct mig_channel *ch);
	/* Why the last read or write failed with err, in words.  May be NULL. */
	const char *(*strerror)(struct mig_channel *ch, int err);
};

extern const struct mig_channel_ops mig_channel_tcp;
extern const struct mig_channel_ops mig_channel_unix;
extern const struct mig_channel_ops mig_channel_file;
extern const struct mig_channel_ops mig_channel_tls;

/* A URI taken apart: the scheme's entry and the address after "scheme:". */
struct mig_uri {
	enum mig_channel_kind kind;
	const struct mig_channel_ops *ops;
	const char *addr;	/* points into the URI given */
};

/*
 * Parse "scheme:address".  Returns 0, or -EINVAL with a message in why
 * that names the URI and the forms accepted.  Never trusts the length.
 */
int mig_channel_parse(const char *uri, struct mig_uri *u, char *why, size_t len)
	__attribute__((warn_unused_result));
/* Does uri name a channel with a return path?  False for a bad URI too. */
bool mig_channel_uri_return_path(const char *uri);

/*
 * Source: open a channel to write a stream to uri, with TLS when tls is
 * enabled (tls.h; NULL: plain), the handshake done within timeout_ms.
 * Returns 0 with *out set, or -errno with a reason in why (-EINVAL: a bad
 * URI or TLS settings; -ECONNREFUSED: the TLS handshake failed).
 */
int mig_channel_open(const char *uri, const struct mig_tls *tls, int timeout_ms,
		     struct mig_channel **out, char *why, size_t len)
	__attribute__((warn_unused_result));
/*
 * Destination: listen on uri (a file: open it); with tls enabled (it must
 * outlive l), every source accepted must pass the TLS handshake.  0 or
 * -errno, reason in why.
 */
int mig_channel_listen(const char *uri, const struct mig_tls *tls, struct mig_listener *l,
		       char *why, size_t len) __attribute__((warn_unused_result));
/*
 * Take one source within timeout_ms (-1: forever); -ETIMEDOUT, or -EINTR
 * as soon as intr_fd (-1: none) is readable.  0 with *out set.  Over TLS a
 * peer that fails the handshake is refused (logged, with why) and the wait
 * goes on for another.
 */
int mig_channel_accept(struct mig_listener *l, int timeout_ms, int intr_fd,
		       struct mig_channel **out) __attribute__((warn_unused_result));
/* Stop listening and remove what listening left (a socket file). */
void mig_listener_close(struct mig_listener *l);

/* Wrap a connected stream socket (tests, socketpairs).  0 or -ENOMEM. */
int mig_channel_socket(int fd, struct mig_channel **out) __attribute__((warn_unused_result));

bool mig_channel_has_return_path(const struct mig_channel *ch);

/* Bytes read (0: the end), -EAGAIN when a socket has none yet, -errno. */
ssize_t mig_channel_read(struct mig_channel *ch, void *buf, size_t len);
/* Bytes written (some), -EAGAIN when a socket is full, -errno. */
ssize_t mig_channel_write(struct mig_channel *ch, const void *buf, size_t len);
ssize_t mig_channel_writev(struct mig_channel *ch, const struct iovec *iov, int iovcnt);
/* 0 or -errno. */
int mig_channel_flush(struct mig_channel *ch);
int mig_channel_finish(struct mig_channel *ch) __attribute__((warn_unused_result));
/* Why a read or write failed with err, in words (strerror, or TLS's reason). */
const char *mig_channel_strerror(struct mig_channel *ch, int err);
/* Cut one or both ways; reads then see the end, writes fail (-EPIPE). */
int mig_channel_shutdown(struct mig_channel *ch, bool rd, bool wr);
void mig_channel_set_buffers(struct mig_channel *ch, int sndbuf, int rcvbuf);
/* Bytes written that the peer has not taken yet (0 for a file or none known). */
uint64_t mig_channel_unsent(struct mig_channel *ch);
/* Close and free (NULL is fine). */
void mig_channel_close(struct mig_channel *ch);

/* What mig_channel_wait() found ready: a bit each. */
#define MIG_WAIT_CHANNEL	1u		/* the channel: read/write won't block */
#define MIG_WAIT_INTR(i)	(2u << (i))	/* intr[i] is readable */
#define MIG_WAIT_INTR_MAX	4

/*
 * Wait at most timeout_ms (-1: forever) until ch is ready for `events`
 * (POLLIN / POLLOUT) or one of the nintr fds (at most MIG_WAIT_INTR_MAX;
 * -1 entries are skipped) is readable.  ch may be NULL, and a direction
 * the channel does not carry (reading a file being written) is never
 * ready: then it is a sleep that the fds can end.  Returns the MIG_WAIT_*
 * mask, 0 on timeout, -EAGAIN when a signal cut the wait, -errno.
 */
int mig_channel_wait(struct mig_channel *ch, short events, int timeout_ms, const int *intr,
		     int nintr);

#endif
