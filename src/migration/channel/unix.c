/* unix:PATH, a unix stream socket. */
#include "migration/channel/sock.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "util/unixsock.h"

static int unix_addr(const char *path, struct sockaddr_un *sa)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (!*path || strlen(path) >= sizeof(sa->sun_path))
		return -EINVAL;
	strcpy(sa->sun_path, path);
	return 0;
}

static int unix_check(const char *addr, char *why, size_t len)
{
	struct sockaddr_un sa;

	if (!unix_addr(addr, &sa))
		return 0;
	if (!*addr)
		snprintf(why, len, "bad migration URI 'unix:': the socket path is empty "
			 "(use unix:PATH)");
	else
		snprintf(why, len, "bad migration URI 'unix:%.60s...': a socket path must be "
			 "shorter than %zu bytes", addr, sizeof(sa.sun_path));
	return -EINVAL;
}

/* A tuned unix stream socket for addr, filled in sa.  fd or -errno. */
static int unix_socket(const char *addr, struct sockaddr_un *sa)
{
	int fd, err = unix_addr(addr, sa);

	if (err)
		return err;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	mig_sock_tune(fd, false);
	return fd;
}

static int unix_open(struct mig_channel *ch, const char *addr, int timeout_ms)
{
	struct sockaddr_un sa;
	int err, fd = unix_socket(addr, &sa);

	if (fd < 0)
		return fd;
	err = mig_sock_connect(fd, (struct sockaddr *)&sa, sizeof(sa), timeout_ms);
	if (err) {
		close(fd);
		return err;
	}
	ch->fd = fd;
	return 0;
}

static int unix_listen(struct mig_listener *l, const char *addr)
{
	struct sockaddr_un sa;
	int err, fd;

	/* A socket file left by a destination that was killed would block bind. */
	err = unix_addr(addr, &sa);
	if (!err)
		err = unixsock_claim(addr);
	if (err)
		return err;
	fd = unix_socket(addr, &sa);
	if (fd < 0)
		return fd;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 1) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	l->fd = fd;
	return 0;
}

static void unix_unlisten(const char *addr)
{
	unlink(addr);
}

const struct mig_channel_ops mig_channel_unix = {
	.scheme = "unix", .syntax = "unix:PATH", .return_path = true,
	.eof_err = -EPIPE, .eof_why = "the peer closed the connection",
	.check = unix_check, .open = unix_open, .listen = unix_listen, .accept = mig_sock_accept,
	.unlisten = unix_unlisten, .read = mig_sock_read, .writev = mig_sock_writev,
	.shutdown = mig_sock_shutdown, .close = mig_sock_close,
	.set_buffers = mig_sock_set_buffers, .unsent = mig_sock_unsent,
};
