/*
 * The channel table and URI dispatch (channel.h).  Everything here is the
 * same for every scheme: each scheme's own work is in its ops.
 */
#include "migration/channel/channel.h"
#include "migration/channel/tls.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const struct mig_channel_ops *const mig_channels[MIG_CHANNEL_NR] = {
	[MIG_CHANNEL_TCP] = &mig_channel_tcp,
	[MIG_CHANNEL_UNIX] = &mig_channel_unix,
	[MIG_CHANNEL_FILE] = &mig_channel_file,
	[MIG_CHANNEL_TLS] = &mig_channel_tls,
};

#define MIG_CHANNEL_FORMS "tcp:HOST:PORT, unix:PATH or file:PATH"

int mig_channel_parse(const char *uri, struct mig_uri *u, char *why, size_t len)
{
	const char *colon = uri ? strchr(uri, ':') : NULL;

	if (!uri || !*uri) {
		snprintf(why, len, "no migration URI given: use " MIG_CHANNEL_FORMS);
		return -EINVAL;
	}
	if (!colon) {
		snprintf(why, len, "'%.200s' is not a migration URI: use " MIG_CHANNEL_FORMS, uri);
		return -EINVAL;
	}
	for (unsigned k = 0; k < MIG_CHANNEL_NR; k++) {
		const struct mig_channel_ops *ops = mig_channels[k];
		size_t n = strlen(ops->scheme);
		if (!ops->check)
			continue;	/* a layer, not a scheme */
		if ((size_t)(colon - uri) != n || strncmp(uri, ops->scheme, n))
			continue;
		if (strlen(colon + 1) > MIG_CHANNEL_ADDR_MAX) {
			snprintf(why, len, "%s: the address is longer than %d bytes", ops->syntax,
				 MIG_CHANNEL_ADDR_MAX);
			return -EINVAL;
		}
		int err = ops->check(colon + 1, why, len);
		if (err)
			return err;
		u->kind = (enum mig_channel_kind)k;
		u->ops = ops;
		u->addr = colon + 1;
		return 0;
	}
	snprintf(why, len, "unknown migration URI scheme '%.*s' in '%.200s': use "
		 MIG_CHANNEL_FORMS, (int)(colon - uri > 32 ? 32 : colon - uri), uri, uri);
	return -EINVAL;
}

bool mig_channel_uri_return_path(const char *uri)
{
	struct mig_uri u;
	char why[8];

	return !mig_channel_parse(uri, &u, why, sizeof(why)) && u.ops->return_path;
}

static struct mig_channel *mig_channel_alloc(const struct mig_channel_ops *ops)
{
	struct mig_channel *ch = calloc(1, sizeof(*ch));

	if (ch) {
		ch->ops = ops;
		ch->fd = -1;
	}
	return ch;
}

/* Why a channel's open or listen failed, in words. */
static const char *mig_channel_why(const struct mig_channel_ops *ops, int err)
{
	if (err == -ENXIO && !strcmp(ops->scheme, "tcp"))
		return "the host name does not resolve (check it, or give an IP address)";
	return strerror(-err);
}

/* TLS needs a connection: a file has nobody to shake hands with. */
static int mig_channel_tls_fits(const struct mig_uri *u, const struct mig_tls *tls, char *why,
				size_t len)
{
	if (!mig_tls_enabled(tls) || u->ops->return_path)
		return 0;
	snprintf(why, len, "TLS (--tls-creds) needs a connection, tcp:HOST:PORT or unix:PATH, "
		 "not %s", u->ops->syntax);
	return -EINVAL;
}

/* The host part of tcp:HOST:PORT (brackets dropped), the name TLS checks. */
static void mig_channel_host(const struct mig_uri *u, char *host, size_t len)
{
	const char *a = u->addr, *colon = strrchr(a, ':');
	size_t n = colon ? (size_t)(colon - a) : 0;

	host[0] = '\0';
	if (u->kind != MIG_CHANNEL_TCP || !n)
		return;
	if (a[0] == '[' && n >= 2) {
		a++;
		n -= 2;
	}
	if (n < len) {
		memcpy(host, a, n);
		host[n] = '\0';
	}
}

int mig_channel_open(const char *uri, const struct mig_tls *tls, int timeout_ms,
		     struct mig_channel **out, char *why, size_t len)
{
	struct mig_uri u;
	struct mig_channel *ch;
	char host[256];
	int err = mig_channel_parse(uri, &u, why, len);

	if (!err)
		err = mig_channel_tls_fits(&u, tls, why, len);
	if (err)
		return err;
	ch = mig_channel_alloc(u.ops);
	if (!ch) {
		snprintf(why, len, "out of memory");
		return -ENOMEM;
	}
	err = u.ops->open(ch, u.addr, timeout_ms);
	if (err) {
		snprintf(why, len, "cannot open %.200s: %s", uri, mig_channel_why(u.ops, err));
		mig_channel_close(ch);
		return err;
	}
	if (mig_tls_enabled(tls)) {
		mig_channel_host(&u, host, sizeof(host));
		err = mig_tls_client(ch, tls, host, timeout_ms, why, len);
		if (err) {
			mig_channel_close(ch);
			return err;
		}
	}
	ch->can_write = true;
	ch->can_read = u.ops->return_path;
	*out = ch;
	return 0;
}

int mig_channel_listen(const char *uri, const struct mig_tls *tls, struct mig_listener *l,
		       char *why, size_t len)
{
	struct mig_uri u;
	int err = mig_channel_parse(uri, &u, why, len);

	l->ops = NULL;
	l->fd = -1;
	l->tls = mig_tls_enabled(tls) ? tls : NULL;
	if (!err)
		err = mig_channel_tls_fits(&u, tls, why, len);
	if (err)
		return err;
	err = u.ops->listen(l, u.addr);
	if (err) {
		snprintf(why, len, "cannot %s %.200s: %s", u.ops->return_path ? "listen on" : "open",
			 uri, err == -EADDRINUSE ? "another process listens there" :
			 err == -ENOTSOCK ? "the path exists and is not a socket" :
			 err == -EINVAL && !u.ops->return_path ? "not a regular file" :
			 mig_channel_why(u.ops, err));
		return err;
	}
	l->ops = u.ops;
	snprintf(l->addr, sizeof(l->addr), "%s", u.addr);
	return 0;
}

int mig_channel_accept(struct mig_listener *l, int timeout_ms, int intr_fd,
		       struct mig_channel **out)
{
	struct mig_channel *ch = mig_channel_alloc(l->ops);
	int err;

	if (!ch)
		return -ENOMEM;
	err = l->tls ? mig_tls_accept(l, ch, timeout_ms, intr_fd)
		     : l->ops->accept(l, ch, timeout_ms, intr_fd);
	if (err) {
		mig_channel_close(ch);
		return err;
	}
	ch->can_read = true;
	ch->can_write = l->ops->return_path;
	*out = ch;
	return 0;
}

void mig_listener_close(struct mig_listener *l)
{
	if (l->fd >= 0)
		close(l->fd);
	l->fd = -1;
	if (l->ops && l->ops->unlisten)
		l->ops->unlisten(l->addr);
	l->ops = NULL;
}

int mig_channel_socket(int fd, struct mig_channel **out)
{
	struct mig_channel *ch = mig_channel_alloc(&mig_channel_unix);

	if (!ch)
		return -ENOMEM;
	ch->fd = fd;
	ch->can_read = ch->can_write = true;
	*out = ch;
	return 0;
}

bool mig_channel_has_return_path(const struct mig_channel *ch)
{
	return ch && ch->ops->return_path;
}

ssize_t mig_channel_read(struct mig_channel *ch, void *buf, size_t len)
{
	if (!ch->can_read)
		return -EBADF;
	if (ch->shut_rd)
		return 0;
	return ch->ops->read(ch, buf, len);
}

ssize_t mig_channel_writev(struct mig_channel *ch, const struct iovec *iov, int iovcnt)
{
	if (!ch->can_write)
		return -EBADF;
	if (ch->shut_wr)
		return -EPIPE;
	return ch->ops->writev(ch, iov, iovcnt);
}

ssize_t mig_channel_write(struct mig_channel *ch, const void *buf, size_t len)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };

	return mig_channel_writev(ch, &iov, 1);
}

int mig_channel_flush(struct mig_channel *ch)
{
	return ch->ops->flush ? ch->ops->flush(ch) : 0;
}

int mig_channel_finish(struct mig_channel *ch)
{
	if (ch->shut_wr)
		return -EPIPE;
	return ch->ops->finish ? ch->ops->finish(ch) : 0;
}

const char *mig_channel_strerror(struct mig_channel *ch, int err)
{
	return ch && ch->ops->strerror ? ch->ops->strerror(ch, err) : strerror(-err);
}

int mig_channel_shutdown(struct mig_channel *ch, bool rd, bool wr)
{
	ch->shut_rd |= rd;
	ch->shut_wr |= wr;
	return ch->ops->shutdown ? ch->ops->shutdown(ch, rd, wr) : 0;
}

void mig_channel_set_buffers(struct mig_channel *ch, int sndbuf, int rcvbuf)
{
	if (ch->ops->set_buffers)
		ch->ops->set_buffers(ch, sndbuf, rcvbuf);
}

uint64_t mig_channel_unsent(struct mig_channel *ch)
{
	return ch && ch->ops->unsent ? ch->ops->unsent(ch) : 0;
}

void mig_channel_close(struct mig_channel *ch)
{
	if (!ch)
		return;
	ch->ops->close(ch);
	free(ch->path);
	free(ch->tmp);
	free(ch);
}

int mig_channel_wait(struct mig_channel *ch, short events, int timeout_ms, const int *intr,
		     int nintr)
{
	struct pollfd p[1 + MIG_WAIT_INTR_MAX];
	bool usable = ch && ch->fd >= 0 && (!(events & POLLIN) || ch->can_read) &&
		      (!(events & POLLOUT) || ch->can_write);
	unsigned mask = 0;
	int n = nintr > MIG_WAIT_INTR_MAX ? MIG_WAIT_INTR_MAX : nintr;
	/* Bytes the channel holds already: ready now, but the fds still get a look. */
	bool pending = usable && (events & POLLIN) && ch->ops->pending && ch->ops->pending(ch);

	p[0] = (struct pollfd){ .fd = usable ? ch->fd : -1, .events = events };
	for (int i = 0; i < n; i++)
		p[1 + i] = (struct pollfd){ .fd = intr[i], .events = POLLIN };	/* poll skips -1 */
	int r = poll(p, (nfds_t)(1 + n), pending ? 0 : timeout_ms);
	if (r < 0)
		return errno == EINTR ? -EAGAIN : -errno;
	if (pending)
		mask |= MIG_WAIT_CHANNEL;
	/* An error or hang-up counts as ready: the read or write then says what. */
	if (p[0].revents)
		mask |= MIG_WAIT_CHANNEL;
	for (int i = 0; i < n; i++)
		if (p[1 + i].revents)
			mask |= MIG_WAIT_INTR(i);
	return (int)mask;
}
