#include "migration/transport.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "util/unixsock.h"

/* Big socket buffers keep a fast link busy while the sender hashes pages. */
#define MIG_SOCKET_BUFFER (4 << 20)

static void mig_socket_tune(int fd, bool tcp)
{
	int one = 1, buf = MIG_SOCKET_BUFFER;

	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
	if (tcp) {
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	}
}

/* Split "host:port" (host may be "[v6]"); both parts must be non-empty. */
static int mig_split_hostport(const char *addr, char *host, size_t hlen, const char **port)
{
	const char *colon = strrchr(addr, ':');
	size_t n;

	if (!colon || colon == addr || !colon[1])
		return -EINVAL;
	n = (size_t)(colon - addr);
	if (addr[0] == '[' && n >= 2 && addr[n - 1] == ']') {
		addr++;
		n -= 2;
	}
	if (n == 0 || n >= hlen)
		return -EINVAL;
	memcpy(host, addr, n);
	host[n] = '\0';
	*port = colon + 1;
	return 0;
}

static int mig_tcp_resolve(const char *addr, bool passive, struct addrinfo **res)
{
	struct addrinfo hints = {
		.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
		.ai_flags = passive ? AI_PASSIVE : 0,
	};
	char host[256];
	const char *port;

	if (mig_split_hostport(addr, host, sizeof(host), &port))
		return -EINVAL;
	return getaddrinfo(host, port, &hints, res) ? -EHOSTUNREACH : 0;
}

/* Connect with a deadline: a dead or silent peer must not hang the source. */
static int mig_connect_timeout(int fd, const struct sockaddr *sa, socklen_t len, int timeout_ms)
{
	int flags = fcntl(fd, F_GETFL), err = 0;
	socklen_t elen = sizeof(err);

	fcntl(fd, F_SETFL, flags | O_NONBLOCK);
	if (connect(fd, sa, len) < 0) {
		if (errno != EINPROGRESS)
			return -errno;
		struct pollfd p = { .fd = fd, .events = POLLOUT };
		int r = poll(&p, 1, timeout_ms);
		if (r == 0)
			return -ETIMEDOUT;
		if (r < 0)
			return -errno;
		getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen);
		if (err)
			return -err;
	}
	fcntl(fd, F_SETFL, flags);
	return 0;
}

static int mig_tcp_connect(const char *addr, int timeout_ms)
{
	struct addrinfo *res, *ai;
	int fd = -EHOSTUNREACH, err = mig_tcp_resolve(addr, false, &res);

	if (err)
		return err;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			fd = -errno;
			continue;
		}
		mig_socket_tune(fd, true);
		err = mig_connect_timeout(fd, ai->ai_addr, ai->ai_addrlen, timeout_ms);
		if (!err)
			break;
		close(fd);
		fd = err;
	}
	freeaddrinfo(res);
	return fd;
}

static int mig_tcp_listen(const char *addr)
{
	struct addrinfo *res;
	int one = 1, fd, err = mig_tcp_resolve(addr, true, &res);

	if (err)
		return err;
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		err = -errno;
		goto out;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	mig_socket_tune(fd, true);
	if (bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 1) < 0) {
		err = -errno;
		close(fd);
	}
out:
	freeaddrinfo(res);
	return err ? err : fd;
}

static int mig_unix_addr(const char *path, struct sockaddr_un *sa)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (!*path || strlen(path) >= sizeof(sa->sun_path))
		return -EINVAL;
	strcpy(sa->sun_path, path);
	return 0;
}

/* A tuned unix stream socket for addr, filled in sa.  fd or -errno. */
static int mig_unix_socket(const char *addr, struct sockaddr_un *sa)
{
	int fd, err = mig_unix_addr(addr, sa);

	if (err)
		return err;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	mig_socket_tune(fd, false);
	return fd;
}

static int mig_unix_connect(const char *addr, int timeout_ms)
{
	struct sockaddr_un sa;
	int err, fd = mig_unix_socket(addr, &sa);

	if (fd < 0)
		return fd;
	err = mig_connect_timeout(fd, (struct sockaddr *)&sa, sizeof(sa), timeout_ms);
	if (err) {
		close(fd);
		return err;
	}
	return fd;
}

static int mig_unix_listen(const char *addr)
{
	struct sockaddr_un sa;
	int err, fd;

	/* A socket file left by a destination that was killed would block bind. */
	err = mig_unix_addr(addr, &sa);
	if (!err)
		err = unixsock_claim(addr);
	if (err)
		return err;
	fd = mig_unix_socket(addr, &sa);
	if (fd < 0)
		return fd;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 1) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

static void mig_unix_unlisten(const char *addr)
{
	unlink(addr);
}

static const struct mig_transport_ops mig_transports[] = {
	{ "tcp", mig_tcp_connect, mig_tcp_listen, NULL },
	{ "unix", mig_unix_connect, mig_unix_listen, mig_unix_unlisten },
};

const struct mig_transport_ops *mig_transport_find(const char *uri, const char **addr)
{
	for (size_t i = 0; i < sizeof(mig_transports) / sizeof(mig_transports[0]); i++) {
		size_t n = strlen(mig_transports[i].scheme);
		if (!strncmp(uri, mig_transports[i].scheme, n) && uri[n] == ':') {
			*addr = uri + n + 1;
			return &mig_transports[i];
		}
	}
	return NULL;
}

int mig_transport_connect(const char *uri, int timeout_ms)
{
	const char *addr;
	const struct mig_transport_ops *t = mig_transport_find(uri, &addr);

	return t ? t->connect(addr, timeout_ms) : -EINVAL;
}

int mig_transport_listen(const char *uri)
{
	const char *addr;
	const struct mig_transport_ops *t = mig_transport_find(uri, &addr);

	return t ? t->listen(addr) : -EINVAL;
}

void mig_transport_unlisten(const char *uri)
{
	const char *addr;
	const struct mig_transport_ops *t = mig_transport_find(uri, &addr);

	if (t && t->unlisten)
		t->unlisten(addr);
}

int mig_transport_accept(int listen_fd, int timeout_ms, int intr_fd)
{
	struct pollfd p[2] = {
		{ .fd = listen_fd, .events = POLLIN },
		{ .fd = intr_fd, .events = POLLIN },	/* poll skips a negative fd */
	};
	int r = poll(p, 2, timeout_ms);

	if (r > 0 && p[1].revents)
		return -EINTR;
	if (r == 0)
		return -ETIMEDOUT;
	if (r < 0)
		return -errno;
	int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	getsockname(fd, (struct sockaddr *)&ss, &len);
	mig_socket_tune(fd, ss.ss_family != AF_UNIX);
	return fd;
}
