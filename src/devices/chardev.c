#include "devices/chardev.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "util/log.h"

static int chardev_stdio_open(struct chardev *c, const char *arg)
{
	c->out_fd = STDOUT_FILENO;
	c->in_fd = STDIN_FILENO;
	return 0;
}

static int chardev_file_open(struct chardev *c, const char *arg)
{
	if (!*arg)
		return -EINVAL;
	c->out_fd = open(arg, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_APPEND, 0644);
	return c->out_fd < 0 ? -errno : 0;
}

static void chardev_fd_close(struct chardev *c)
{
	if (c->out_fd > STDERR_FILENO)
		close(c->out_fd);
}

static int chardev_unix_open(struct chardev *c, const char *arg)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	if (!*arg || strlen(arg) >= sizeof(sa.sun_path))
		return -EINVAL;
	strcpy(sa.sun_path, arg);
	c->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->listen_fd < 0)
		return -errno;
	if (bind(c->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(c->listen_fd, 1) < 0)
		return -errno;
	c->path = strdup(arg);
	return c->path ? 0 : -ENOMEM;
}

static void chardev_unix_close(struct chardev *c)
{
	if (c->out_fd >= 0)
		close(c->out_fd);
	if (c->listen_fd >= 0)
		close(c->listen_fd);
	if (c->path)
		unlink(c->path);
	free(c->path);
}

static const struct chardev_ops chardev_backends[] = {
	{ "stdio", chardev_stdio_open, NULL },
	{ "file:", chardev_file_open, chardev_fd_close },
	{ "unix:", chardev_unix_open, chardev_unix_close },
};

int chardev_open(struct chardev *c, const char *spec)
{
	memset(c, 0, sizeof(*c));
	c->out_fd = c->in_fd = c->listen_fd = -1;
	c->wake_fd[0] = c->wake_fd[1] = -1;
	pthread_mutex_init(&c->lock, NULL);
	for (size_t i = 0; i < sizeof(chardev_backends) / sizeof(chardev_backends[0]); i++) {
		const struct chardev_ops *ops = &chardev_backends[i];
		size_t n = strlen(ops->prefix);
		bool exact = ops->prefix[n - 1] != ':';
		if (exact ? strcmp(spec, ops->prefix) : strncmp(spec, ops->prefix, n))
			continue;
		c->ops = ops;
		int err = ops->open(c, spec + (exact ? n : n));
		if (err)
			chardev_close(c);
		return err;
	}
	return -EINVAL;
}

void chardev_write(struct chardev *c, const void *buf, size_t len)
{
	pthread_mutex_lock(&c->lock);
	const uint8_t *p = buf;
	while (c->out_fd >= 0 && len) {
		ssize_t n = write(c->out_fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			/* A unix client that went away; wait for the next one. */
			if (c->listen_fd >= 0) {
				close(c->out_fd);
				c->out_fd = c->in_fd = -1;
			}
			break;
		}
		p += n;
		len -= (size_t)n;
	}
	pthread_mutex_unlock(&c->lock);
}

/* unix: accept a client; it becomes both output and input. */
static void chardev_accept(struct chardev *c)
{
	int fd = accept4(c->listen_fd, NULL, NULL, SOCK_CLOEXEC);

	if (fd < 0)
		return;
	pthread_mutex_lock(&c->lock);
	if (c->out_fd >= 0) {
		close(fd);	/* one client at a time */
	} else {
		c->out_fd = c->in_fd = fd;
	}
	pthread_mutex_unlock(&c->lock);
}

static void *chardev_input_thread(void *arg)
{
	struct chardev *c = arg;
	uint8_t buf[256];

	for (;;) {
		pthread_mutex_lock(&c->lock);
		int in_fd = c->in_fd;
		pthread_mutex_unlock(&c->lock);
		struct pollfd pfd[3] = {
			{ .fd = c->wake_fd[0], .events = POLLIN },
			{ .fd = in_fd, .events = POLLIN },
			{ .fd = c->listen_fd, .events = POLLIN },
		};
		if (poll(pfd, 3, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pfd[0].revents)
			break;
		if (pfd[2].revents & POLLIN)
			chardev_accept(c);
		if (!pfd[1].revents)
			continue;
		ssize_t n = read(in_fd, buf, sizeof(buf));
		if (n > 0) {
			c->input(c->input_opaque, buf, (size_t)n);
		} else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
			/* End of input: stdin closed, or the unix client left. */
			pthread_mutex_lock(&c->lock);
			if (c->listen_fd >= 0 && c->in_fd == in_fd) {
				close(in_fd);
				c->out_fd = -1;
			}
			c->in_fd = -1;
			pthread_mutex_unlock(&c->lock);
		}
	}
	return NULL;
}

int chardev_start_input(struct chardev *c, chardev_input_fn *fn, void *opaque)
{
	if (c->in_fd < 0 && c->listen_fd < 0)
		return 0;
	if (pipe2(c->wake_fd, O_CLOEXEC) < 0)
		return -errno;
	c->input = fn;
	c->input_opaque = opaque;
	int err = -pthread_create(&c->thread, NULL, chardev_input_thread, c);
	if (!err)
		c->thread_started = true;
	return err;
}

void chardev_close(struct chardev *c)
{
	if (c->thread_started) {
		if (write(c->wake_fd[1], "x", 1) < 0)
			pr_debug("chardev wake: %s", strerror(errno));
		pthread_join(c->thread, NULL);
		c->thread_started = false;
	}
	for (int i = 0; i < 2; i++)
		if (c->wake_fd[i] >= 0)
			close(c->wake_fd[i]);
	if (c->ops && c->ops->close)
		c->ops->close(c);
	c->ops = NULL;
	c->out_fd = c->in_fd = c->listen_fd = -1;
	pthread_mutex_destroy(&c->lock);
}
