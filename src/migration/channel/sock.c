/* Socket I/O shared by the tcp and unix channels (sock.h). */
#include "migration/channel/sock.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <unistd.h>

/* Big socket buffers keep a fast link busy while the sender hashes pages. */
#define MIG_SOCKET_BUFFER (4 << 20)

void mig_sock_tune(int fd, bool tcp)
{
	int one = 1, buf = MIG_SOCKET_BUFFER;

	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
	if (tcp) {
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	}
}

int mig_sock_connect(int fd, const struct sockaddr *sa, socklen_t len, int timeout_ms)
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

int mig_sock_accept(struct mig_listener *l, struct mig_channel *ch, int timeout_ms, int intr_fd)
{
	struct pollfd p[2] = {
		{ .fd = l->fd, .events = POLLIN },
		{ .fd = intr_fd, .events = POLLIN },	/* poll skips a negative fd */
	};
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int r = poll(p, 2, timeout_ms), fd;

	if (r > 0 && p[1].revents)
		return -EINTR;
	if (r == 0)
		return -ETIMEDOUT;
	if (r < 0)
		return -errno;
	fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return -errno;
	getsockname(fd, (struct sockaddr *)&ss, &len);
	mig_sock_tune(fd, ss.ss_family != AF_UNIX);
	ch->fd = fd;
	return 0;
}

ssize_t mig_sock_read(struct mig_channel *ch, void *buf, size_t len)
{
	ssize_t n = recv(ch->fd, buf, len, MSG_DONTWAIT);

	if (n >= 0)
		return n;
	return errno == EWOULDBLOCK ? -EAGAIN : -errno;
}

ssize_t mig_sock_writev(struct mig_channel *ch, const struct iovec *iov, int iovcnt)
{
	struct msghdr msg = { .msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt };
	ssize_t n = sendmsg(ch->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);

	if (n >= 0)
		return n;
	return errno == EWOULDBLOCK ? -EAGAIN : -errno;
}

int mig_sock_shutdown(struct mig_channel *ch, bool rd, bool wr)
{
	int how = rd && wr ? SHUT_RDWR : rd ? SHUT_RD : SHUT_WR;

	return shutdown(ch->fd, how) < 0 ? -errno : 0;
}

void mig_sock_close(struct mig_channel *ch)
{
	if (ch->fd >= 0)
		close(ch->fd);
	ch->fd = -1;
}

void mig_sock_set_buffers(struct mig_channel *ch, int sndbuf, int rcvbuf)
{
	/* Best effort: a hint, the kernel may round or cap it. */
	if (sndbuf > 0)
		setsockopt(ch->fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
	if (rcvbuf > 0)
		setsockopt(ch->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
}

uint64_t mig_sock_unsent(struct mig_channel *ch)
{
	int n = 0;

	/* TCP: not yet acknowledged; a unix socket: not yet read by the peer. */
	return ch->fd >= 0 && !ioctl(ch->fd, SIOCOUTQ, &n) && n > 0 ? (uint64_t)n : 0;
}
