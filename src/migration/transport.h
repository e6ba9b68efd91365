/*
 * Migration transports: how a URI becomes a connected socket.  Each scheme
 * is an ops table entry ("tcp:HOST:PORT", "unix:PATH"); adding one is a new
 * entry, not an edit across the engine.
 */
#ifndef FERRY_MIGRATION_TRANSPORT_H
#define FERRY_MIGRATION_TRANSPORT_H

struct mig_transport_ops {
	const char *scheme;	/* "tcp", "unix" */
	/* Connect to addr; returns a connected fd or -errno. */
	int (*connect)(const char *addr, int timeout_ms);
	/*
	 * Listen on addr; returns a listening fd or -errno (-EADDRINUSE: a
	 * process listens there; -ENOTSOCK: a file that is not a socket).
	 */
	int (*listen)(const char *addr);
	/* Undo what listen left behind (a socket file).  May be NULL. */
	void (*unlisten)(const char *addr);
};

/*
 * Find the transport for `uri` ("scheme:address"); stores the address part
 * in *addr.  Returns NULL for an unknown scheme.
 */
const struct mig_transport_ops *mig_transport_find(const char *uri, const char **addr);

/* Connect to uri.  Returns a connected fd or -errno (-EINVAL: bad URI). */
int mig_transport_connect(const char *uri, int timeout_ms) __attribute__((warn_unused_result));
/* Listen on uri.  Returns a listening fd or -errno (-EINVAL: bad URI). */
int mig_transport_listen(const char *uri) __attribute__((warn_unused_result));
/*
 * Accept one peer on a listening fd within timeout_ms (-1: forever); fd or
 * -errno: -ETIMEDOUT, or -EINTR as soon as intr_fd (-1: none) is readable.
 */
int mig_transport_accept(int listen_fd, int timeout_ms, int intr_fd)
	__attribute__((warn_unused_result));
void mig_transport_unlisten(const char *uri);

#endif
