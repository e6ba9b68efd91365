/* tcp:HOST:PORT (HOST may be a name, an IPv4 address or [IPv6]). */
#include "migration/channel/sock.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Split "host:port"; host may be "[v6]".  0 or -EINVAL (port 1..65535). */
static int tcp_split(const char *addr, char *host, size_t hlen, char *port, size_t plen)
{
	const char *colon = strrchr(addr, ':');
	size_t n;
	char *end;

	if (!colon || colon == addr || !colon[1])
		return -EINVAL;
	n = (size_t)(colon - addr);
	if (addr[0] == '[') {
		if (n < 3 || addr[n - 1] != ']')
			return -EINVAL;
		addr++;
		n -= 2;
	} else if (memchr(addr, ':', n)) {
		return -EINVAL;		/* a bare IPv6 address: which colon is the port's? */
	}
	if (n == 0 || n >= hlen)
		return -EINVAL;
	unsigned long v = strtoul(colon + 1, &end, 10);
	if (*end || colon[1] < '0' || colon[1] > '9' || v == 0 || v > 65535 || strlen(colon + 1) >= plen)
		return -EINVAL;
	memcpy(host, addr, n);
	host[n] = '\0';
	strcpy(port, colon + 1);
	return 0;
}

static int tcp_check(const char *addr, char *why, size_t len)
{
	char host[256], port[8];

	if (!tcp_split(addr, host, sizeof(host), port, sizeof(port)))
		return 0;
	snprintf(why, len, "bad migration URI 'tcp:%.200s': use tcp:HOST:PORT with a port of "
		 "1..65535 (an IPv6 host in brackets: tcp:[::1]:4444)", addr);
	return -EINVAL;
}

static int tcp_resolve(const char *addr, bool passive, struct addrinfo **res)
{
	struct addrinfo hints = {
		.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
		.ai_flags = passive ? AI_PASSIVE : 0,
	};
	char host[256], port[8];

	if (tcp_split(addr, host, sizeof(host), port, sizeof(port)))
		return -EINVAL;
	/* -ENXIO (no TCP call returns it): the channel layer says "does not resolve". */
	return getaddrinfo(host, port, &hints, res) ? -ENXIO : 0;
}

static int tcp_open(struct mig_channel *ch, const char *addr, int timeout_ms)
{
	struct addrinfo *res, *ai;
	int fd = -EHOSTUNREACH, err = tcp_resolve(addr, false, &res);

	if (err)
		return err;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			fd = -errno;
			continue;
		}
		mig_sock_tune(fd, true);
		err = mig_sock_connect(fd, ai->ai_addr, ai->ai_addrlen, timeout_ms);
		if (!err)
			break;
		close(fd);
		fd = err;
	}
	freeaddrinfo(res);
	if (fd < 0)
		return fd;
	ch->fd = fd;
	return 0;
}

static int tcp_listen(struct mig_listener *l, const char *addr)
{
	struct addrinfo *res;
	int one = 1, fd, err = tcp_resolve(addr, true, &res);

	if (err)
		return err;
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		err = -errno;
		goto out;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	mig_sock_tune(fd, true);
	if (bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 1) < 0) {
		err = -errno;
		close(fd);
		goto out;
	}
	l->fd = fd;
out:
	freeaddrinfo(res);
	return err;
}

const struct mig_channel_ops mig_channel_tcp = {
	.scheme = "tcp", .syntax = "tcp:HOST:PORT", .return_path = true,
	.eof_err = -EPIPE, .eof_why = "the peer closed the connection",
	.check = tcp_check, .open = tcp_open, .listen = tcp_listen, .accept = mig_sock_accept,
	.read = mig_sock_read, .writev = mig_sock_writev, .shutdown = mig_sock_shutdown,
	.close = mig_sock_close, .set_buffers = mig_sock_set_buffers,
	.unsent = mig_sock_unsent,
};
