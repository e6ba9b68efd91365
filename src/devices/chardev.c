#include "devices/chardev.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "util/log.h"

static uint64_t chardev_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int chardev_stdio_open(struct chardev *c, const char *arg)
{
	struct stat st;

	c->out_fd = STDOUT_FILENO;
	c->in_fd = STDIN_FILENO;
	/*
	 * A pipe or terminal on stdout may stop draining, and a vCPU must not
	 * wait for it.  O_NONBLOCK on fd 1 would also change the description
	 * the shell shares with us: open one of our own.  Files never block;
	 * sockets get MSG_DONTWAIT.
	 */
	if (fstat(STDOUT_FILENO, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode))) {
		int fd = open("/proc/self/fd/1", O_WRONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
		if (fd >= 0)
			c->out_fd = fd;
		else
			pr_debug("stdio: cannot reopen stdout non-blocking: %s", strerror(errno));
	}
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
	{ "stdio", chardev_stdio_open, chardev_fd_close },
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

/* One write that never blocks.  Caller holds c->lock. */
static ssize_t chardev_send(struct chardev *c, const void *p, size_t n)
{
	if (!c->out_not_sock) {
		ssize_t r = send(c->out_fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (r >= 0 || errno != ENOTSOCK)
			return r;
		c->out_not_sock = true;
	}
	return write(c->out_fd, p, n);	/* a file, or a pipe/tty opened O_NONBLOCK */
}

/*
 * Write from p while the reader takes it.  Returns the bytes taken; a
 * reader gone for good (EPIPE, ...) takes everything, as nobody listening
 * does.  Caller holds c->lock.
 */
static size_t chardev_send_all(struct chardev *c, const uint8_t *p, size_t len)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = chardev_send(c, p + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0)
			return len;
		done += (size_t)n;
	}
	return done;
}

/* Send queued output, oldest first, while the reader takes it.  Caller holds c->lock. */
static void chardev_flush_locked(struct chardev *c)
{
	while (c->out_len && c->out_fd >= 0) {
		size_t chunk = CHARDEV_OUT_QUEUE - c->out_head;
		if (chunk > c->out_len)
			chunk = c->out_len;
		size_t n = chardev_send_all(c, c->out_queue + c->out_head, chunk);
		c->out_head = (c->out_head + n) % CHARDEV_OUT_QUEUE;
		c->out_len -= n;
		if (n < chunk)
			break;
	}
	if (c->out_fd < 0)
		c->out_len = 0;
	if (!c->out_len) {
		c->out_head = 0;
		c->out_drop_told = false;	/* the stall is over */
	}
}

/* Queue what the reader could not take; returns the bytes that did not fit. */
static size_t chardev_queue(struct chardev *c, const uint8_t *p, size_t len)
{
	size_t room = CHARDEV_OUT_QUEUE - c->out_len, take = len < room ? len : room;

	for (size_t i = 0; i < take; i++)
		c->out_queue[(c->out_head + c->out_len + i) % CHARDEV_OUT_QUEUE] = p[i];
	c->out_len += take;
	return len - take;
}

static void chardev_wake(struct chardev *c)
{
	if (write(c->wake_fd[1], "o", 1) < 0 && errno != EAGAIN)
		pr_debug("chardev wake: %s", strerror(errno));
}

/*
 * Never blocks a vCPU (it holds its serial's lock here): a reader that
 * stops reading must not stall the guest, nor a pause waiting for that
 * vCPU.  What the reader cannot take now waits in a bounded queue that the
 * chardev thread sends on; past that, output is dropped and counted (the
 * thread logs it once per stall).  QEMU instead holds THR busy until the
 * backend takes the byte, which a polling guest turns into a stall of its
 * own; the probe guest and Linux's console give up waiting and write
 * anyway, so dropping here loses nothing they would not lose there.
 */
void chardev_write(struct chardev *c, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	bool wake = false;

	pthread_mutex_lock(&c->lock);
	if (c->out_fd >= 0 && len) {
		chardev_flush_locked(c);
		size_t queued = c->out_len;
		size_t sent = queued ? 0 : chardev_send_all(c, p, len);
		size_t lost = chardev_queue(c, p + sent, len - sent);
		c->out_dropped += lost;
		/* The thread needs to hear of new queued output and of a new stall. */
		wake = !queued && c->out_len;
		if (lost && !c->out_drop_told)
			wake = c->out_drop_told = true;
	}
	pthread_mutex_unlock(&c->lock);
	if (wake && c->thread_started)
		chardev_wake(c);
}

uint64_t chardev_dropped(struct chardev *c)
{
	pthread_mutex_lock(&c->lock);
	uint64_t n = c->out_dropped;
	pthread_mutex_unlock(&c->lock);
	return n;
}

/* Say once per stall that output is dropped, and how much when it ends.  Thread only. */
static void chardev_note_drops(struct chardev *c, bool closing)
{
	pthread_mutex_lock(&c->lock);
	uint64_t dropped = c->out_dropped;
	size_t queued = c->out_len;
	pthread_mutex_unlock(&c->lock);
	if (dropped > c->dropped_logged && !c->stall_logged && !closing) {
		pr_warn("serial: the output reader is not reading; dropping guest output "
			"beyond %d KiB queued", CHARDEV_OUT_QUEUE / 1024);
		c->stall_logged = true;
	} else if (dropped > c->dropped_logged && (closing || !queued)) {
		pr_warn("serial: %llu bytes of guest output were dropped while the reader stalled",
			(unsigned long long)(dropped - c->dropped_logged));
		c->dropped_logged = dropped;
		c->stall_logged = false;
	}
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
		c->out_not_sock = false;
		c->out_head = c->out_len = 0;
	}
	pthread_mutex_unlock(&c->lock);
}

static void chardev_drain_wake(struct chardev *c)
{
	char buf[64];

	while (read(c->wake_fd[0], buf, sizeof(buf)) > 0)
		;
}

/* Read input and pass it on; at EOF a unix client has left and its socket goes. */
static void chardev_read_input(struct chardev *c, int in_fd)
{
	uint8_t buf[256];
	ssize_t n = read(in_fd, buf, sizeof(buf));

	if (n > 0) {
		c->input(c->input_opaque, buf, (size_t)n);
	} else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
		/* End of input: stdin closed, or the unix client left. */
		pthread_mutex_lock(&c->lock);
		if (c->listen_fd >= 0 && c->in_fd == in_fd) {
			close(in_fd);
			c->out_fd = -1;
			c->out_head = c->out_len = 0;	/* for the client that left */
		}
		c->in_fd = -1;
		pthread_mutex_unlock(&c->lock);
	}
}

/* Input, unix clients, and sending the output that was queued. */
static void *chardev_thread(void *arg)
{
	struct chardev *c = arg;

	for (;;) {
		pthread_mutex_lock(&c->lock);
		int in_fd = c->in_fd, out_fd = c->out_len ? c->out_fd : -1;
		bool stop = c->stopping;
		pthread_mutex_unlock(&c->lock);
		if (stop)
			break;
		struct pollfd pfd[4] = {
			{ .fd = c->wake_fd[0], .events = POLLIN },
			{ .fd = in_fd, .events = POLLIN },
			{ .fd = c->listen_fd, .events = POLLIN },
			{ .fd = out_fd, .events = POLLOUT },
		};
		if (poll(pfd, 4, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pfd[0].revents)
			chardev_drain_wake(c);
		if (pfd[3].revents) {
			pthread_mutex_lock(&c->lock);
			chardev_flush_locked(c);
			pthread_mutex_unlock(&c->lock);
		}
		chardev_note_drops(c, false);
		if (pfd[2].revents & POLLIN)
			chardev_accept(c);
		if (pfd[1].revents)
			chardev_read_input(c, in_fd);
	}
	return NULL;
}

int chardev_start_input(struct chardev *c, chardev_input_fn *fn, void *opaque)
{
	if (c->in_fd < 0 && c->listen_fd < 0 && c->out_fd < 0)
		return 0;
	if (pipe2(c->wake_fd, O_CLOEXEC | O_NONBLOCK) < 0)
		return -errno;
	c->input = fn;
	c->input_opaque = opaque;
	int err = -pthread_create(&c->thread, NULL, chardev_thread, c);
	if (!err)
		c->thread_started = true;
	return err;
}

/* At close: give a reader a moment to take the queued output. */
static void chardev_drain(struct chardev *c, int timeout_ms)
{
	uint64_t end = chardev_now_ms() + (uint64_t)timeout_ms;

	pthread_mutex_lock(&c->lock);
	for (;;) {
		chardev_flush_locked(c);
		uint64_t now = chardev_now_ms();
		if (!c->out_len || now >= end)
			break;
		struct pollfd p = { .fd = c->out_fd, .events = POLLOUT };
		pthread_mutex_unlock(&c->lock);
		poll(&p, 1, (int)(end - now));
		pthread_mutex_lock(&c->lock);
	}
	c->out_dropped += c->out_len;
	c->out_len = 0;
	pthread_mutex_unlock(&c->lock);
}

void chardev_close(struct chardev *c)
{
	if (c->thread_started) {
		pthread_mutex_lock(&c->lock);
		c->stopping = true;
		pthread_mutex_unlock(&c->lock);
		chardev_wake(c);
		pthread_join(c->thread, NULL);
		c->thread_started = false;
	}
	chardev_drain(c, 500);
	chardev_note_drops(c, true);
	for (int i = 0; i < 2; i++)
		if (c->wake_fd[i] >= 0)
			close(c->wake_fd[i]);
	if (c->ops && c->ops->close)
		c->ops->close(c);
	c->ops = NULL;
	c->out_fd = c->in_fd = c->listen_fd = -1;
	pthread_mutex_destroy(&c->lock);
}
