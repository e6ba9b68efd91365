#include "control/control.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "control/commands.h"
#include "util/log.h"
#include "util/unixsock.h"

static uint64_t control_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int control_addr(const char *path, struct sockaddr_un *sa)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (!*path || strlen(path) >= sizeof(sa->sun_path))
		return -ENAMETOOLONG;
	strcpy(sa->sun_path, path);
	return 0;
}

int control_server_open(struct control_server *cs, const char *path, struct machine *m,
			struct migration *mig, bool test_hooks)
{
	struct sockaddr_un sa;
	int err;

	memset(cs, 0, sizeof(*cs));
	pthread_mutex_init(&cs->lock, NULL);
	cs->listen_fd = cs->wake_fd[0] = cs->wake_fd[1] = -1;
	cs->ctx.machine = m;
	cs->ctx.mig = mig;
	cs->ctx.server = cs;
	cs->ctx.test_hooks = test_hooks;
	cs->idle_ms = CONTROL_IDLE_MS;
	err = control_addr(path, &sa);
	if (err) {
		pr_err("control socket path '%s' is empty or too long", path);
		return err;
	}
	/* A stale socket file from a ferry that died is replaced; nothing else is. */
	err = unixsock_claim(path);
	if (err) {
		pr_err("cannot use %s as the control socket: %s", path,
		       err == -EADDRINUSE ? "it is in use by another process; pick another --control path"
		       : err == -ENOTSOCK ? "it exists and is not a socket" : strerror(-err));
		return err;
	}
	cs->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (cs->listen_fd < 0)
		return -errno;
	/*
	 * Whoever can connect can stop the guest or send it away: owner only.
	 * Linux creates the socket file with the socket inode's mode less the
	 * umask, so the mode set here is the file's from its first instant
	 * (no chmod after bind, no window; umask is process-wide, not ours).
	 */
	if (fchmod(cs->listen_fd, S_IRUSR | S_IWUSR) < 0 ||
	    bind(cs->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		goto fail;
	cs->path = strdup(path);
	if (listen(cs->listen_fd, 4) < 0 || pipe2(cs->wake_fd, O_CLOEXEC | O_NONBLOCK) < 0)
		goto fail;
	return 0;
fail:
	err = -errno;
	pr_err("cannot listen on control socket %s: %s", path, strerror(-err));
	return err;
}

/* A JSON value as one line (malloc'd, '\n' included), or NULL. */
static char *control_line(json_object *obj, size_t *len)
{
	const char *s = json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN);
	size_t n = strlen(s);
	char *line = malloc(n + 1);

	if (!line)
		return NULL;
	memcpy(line, s, n);
	line[n] = '\n';
	*len = n + 1;
	return line;
}

/* Queue a whole line for c; a client that lets too much pile up is dropped.  Lock held. */
static void control_queue_locked(struct control_client *c, const char *line, size_t len)
{
	if (c->dead)
		return;
	if (c->out_len + len > CONTROL_MAX_QUEUE) {
		c->dead = true;		/* it does not read: waiting for it helps nobody */
		return;
	}
	if (c->out_len + len > c->out_cap) {
		size_t cap = c->out_cap ? c->out_cap : 4096;
		while (cap < c->out_len + len)
			cap *= 2;
		char *out = realloc(c->out, cap);
		if (!out) {
			c->dead = true;
			return;
		}
		c->out = out;
		c->out_cap = cap;
	}
	memcpy(c->out + c->out_len, line, len);
	c->out_len += len;
}

/* Send what c's socket takes now, never waiting.  Lock held. */
static void control_flush_locked(struct control_client *c)
{
	size_t off = 0;

	while (off < c->out_len && !c->dead) {
		ssize_t n = send(c->fd, c->out + off, c->out_len - off, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0)
			c->dead = true;
		else
			off += (size_t)n;
	}
	if (off) {
		memmove(c->out, c->out + off, c->out_len - off);
		c->out_len -= off;
	}
}

static void control_wake(struct control_server *cs)
{
	if (write(cs->wake_fd[1], "e", 1) < 0 && errno != EAGAIN)
		pr_debug("control wake: %s", strerror(errno));
}

/* Control thread: queue a reply and send what the client takes now. */
static void control_reply(struct control_server *cs, struct control_client *c, json_object *reply)
{
	size_t len;
	char *line = control_line(reply, &len);

	pthread_mutex_lock(&cs->lock);
	if (line)
		control_queue_locked(c, line, len);
	else
		c->dead = true;
	control_flush_locked(c);
	pthread_mutex_unlock(&cs->lock);
	free(line);
}

void control_server_broadcast(struct control_server *cs, json_object *event)
{
	size_t len;
	char *line = control_line(event, &len);

	if (!line)
		return;
	pthread_mutex_lock(&cs->lock);
	for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++)
		if (cs->clients[i])
			control_queue_locked(cs->clients[i], line, len);
	pthread_mutex_unlock(&cs->lock);
	free(line);
	if (cs->wake_fd[1] >= 0)
		control_wake(cs);
}

/* Parse one request line and answer it.  The line is untrusted. */
static void control_handle_line(struct control_server *cs, struct control_client *c,
				const char *line)
{
	json_object *reply = control_answer(&cs->ctx, line);

	control_reply(cs, c, reply);
	json_object_put(reply);
}

/* Close client i, after one last try at sending what it has queued. */
static void control_drop_client(struct control_server *cs, unsigned i)
{
	struct control_client *c = cs->clients[i];

	pthread_mutex_lock(&cs->lock);
	bool stalled = c->dead && c->out_len;
	control_flush_locked(c);
	cs->clients[i] = NULL;
	pthread_mutex_unlock(&cs->lock);
	if (stalled)
		pr_warn("control: disconnected a client that did not read its replies and events");
	close(c->fd);
	free(c->out);
	free(c);
}

static bool control_client_dead(struct control_server *cs, struct control_client *c)
{
	pthread_mutex_lock(&cs->lock);
	bool dead = c->dead;
	pthread_mutex_unlock(&cs->lock);
	return dead;
}

/* Read what a client sent and run each complete line.  False: drop it. */
static bool control_read_client(struct control_server *cs, struct control_client *c)
{
	ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len, 0);

	if (n <= 0)
		return n < 0 && errno == EINTR;
	c->last_ms = control_now_ms();
	c->len += (size_t)n;
	char *start = c->buf, *nl;
	while ((nl = memchr(start, '\n', c->len - (size_t)(start - c->buf)))) {
		*nl = '\0';
		if (nl > start)
			control_handle_line(cs, c, start);
		if (control_client_dead(cs, c))
			return false;	/* no one reads the answers: run no more */
		start = nl + 1;
	}
	c->len -= (size_t)(start - c->buf);
	memmove(c->buf, start, c->len);
	if (c->len == sizeof(c->buf) - 1) {
		json_object *r = control_error_reply("BadRequest", "request line too long");
		control_reply(cs, c, r);
		json_object_put(r);
		return false;
	}
	return true;
}

/*
 * All slots are taken: disconnect the client silent longest, if it has been
 * silent for idle_ms, so that idle connections cannot lock everyone out.
 */
static void control_evict_idle(struct control_server *cs)
{
	uint64_t now = control_now_ms(), oldest = UINT64_MAX;
	unsigned victim = CONTROL_MAX_CLIENTS;

	for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++) {
		struct control_client *c = cs->clients[i];
		if (c && c->last_ms < oldest) {
			oldest = c->last_ms;
			victim = i;
		}
	}
	if (victim == CONTROL_MAX_CLIENTS || now - oldest < cs->idle_ms)
		return;
	json_object *r = control_error_reply("Timeout", "idle too long while every control slot was "
				       "taken: disconnected to make room");
	control_reply(cs, cs->clients[victim], r);
	json_object_put(r);
	pr_info("control: disconnected a client idle for %llu s to make room for another",
		(unsigned long long)((now - oldest) / 1000));
	control_drop_client(cs, victim);
}

static void control_accept(struct control_server *cs)
{
	int fd = accept4(cs->listen_fd, NULL, NULL, SOCK_CLOEXEC);

	if (fd < 0)
		return;
	control_evict_idle(cs);
	for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++) {
		if (cs->clients[i])
			continue;
		struct control_client *c = calloc(1, sizeof(*c));
		if (!c)
			break;
		c->fd = fd;
		c->last_ms = control_now_ms();
		pthread_mutex_lock(&cs->lock);
		cs->clients[i] = c;
		pthread_mutex_unlock(&cs->lock);
		return;
	}
	/* A new socket takes one short line without waiting. */
	char desc[160];
	snprintf(desc, sizeof(desc), "all %d control connections are in use; retry once one "
		 "closes or has been idle for %u s", CONTROL_MAX_CLIENTS, cs->idle_ms / 1000);
	json_object *r = control_error_reply("Busy", desc);
	size_t len;
	char *line = control_line(r, &len);
	if (line && send(fd, line, len, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
		pr_debug("control: cannot turn a client away: %s", strerror(errno));
	free(line);
	json_object_put(r);
	close(fd);
}

static void control_drain_wake(struct control_server *cs)
{
	char buf[64];

	while (read(cs->wake_fd[0], buf, sizeof(buf)) > 0)
		;
}

/* What to poll: each client's input, and output where some is queued.  False: stop. */
static bool control_poll_set(struct control_server *cs, struct pollfd *pfd)
{
	pfd[0] = (struct pollfd){ .fd = cs->wake_fd[0], .events = POLLIN };
	pfd[1] = (struct pollfd){ .fd = cs->listen_fd, .events = POLLIN };
	pthread_mutex_lock(&cs->lock);
	bool stop = cs->stopping;
	for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++) {
		struct control_client *c = cs->clients[i];
		pfd[2 + i] = (struct pollfd){
			.fd = c ? c->fd : -1,
			.events = (short)(POLLIN | (c && c->out_len ? POLLOUT : 0)),
		};
	}
	pthread_mutex_unlock(&cs->lock);
	return !stop;
}

/* Send queued output and drop the clients that failed or stopped reading. */
static void control_service_clients(struct control_server *cs)
{
	for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++) {
		struct control_client *c = cs->clients[i];
		if (!c)
			continue;
		pthread_mutex_lock(&cs->lock);
		control_flush_locked(c);
		bool dead = c->dead;
		pthread_mutex_unlock(&cs->lock);
		if (dead)
			control_drop_client(cs, i);
	}
}

static void *control_thread(void *arg)
{
	struct control_server *cs = arg;
	struct pollfd pfd[2 + CONTROL_MAX_CLIENTS];

	pthread_setname_np(pthread_self(), "control");
	while (control_poll_set(cs, pfd)) {
		if (poll(pfd, 2 + CONTROL_MAX_CLIENTS, -1) < 0 && errno != EINTR)
			break;
		if (pfd[0].revents)
			control_drain_wake(cs);
		if (pfd[1].revents & POLLIN)
			control_accept(cs);
		for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++)
			if (cs->clients[i] && (pfd[2 + i].revents & ~POLLOUT) &&
			    !control_read_client(cs, cs->clients[i]))
				control_drop_client(cs, i);
		control_service_clients(cs);
	}
	return NULL;
}

int control_server_start(struct control_server *cs)
{
	int err = -pthread_create(&cs->thread, NULL, control_thread, cs);

	cs->thread_started = !err;
	return err;
}

void control_server_stop(struct control_server *cs)
{
	if (cs->thread_started) {
		pthread_mutex_lock(&cs->lock);
		cs->stopping = true;
		pthread_mutex_unlock(&cs->lock);
		control_wake(cs);
		pthread_join(cs->thread, NULL);
		cs->thread_started = false;
	}
}

/*
 * After the thread: give clients up to timeout_ms to take what is queued
 * (the final MIGRATION event of a source about to exit, above all).
 */
static void control_flush_all(struct control_server *cs, int timeout_ms)
{
	uint64_t end = control_now_ms() + (uint64_t)timeout_ms;

	for (;;) {
		struct pollfd pfd[CONTROL_MAX_CLIENTS];
		unsigned n = 0;
		pthread_mutex_lock(&cs->lock);
		for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++) {
			struct control_client *c = cs->clients[i];
			if (c)
				control_flush_locked(c);
			if (c && c->out_len && !c->dead)
				pfd[n++] = (struct pollfd){ .fd = c->fd, .events = POLLOUT };
		}
		pthread_mutex_unlock(&cs->lock);
		uint64_t now = control_now_ms();
		if (!n || now >= end || poll(pfd, n, (int)(end - now)) < 0)
			return;
	}
}

void control_server_close(struct control_server *cs)
{
	control_server_stop(cs);
	control_flush_all(cs, 1000);
	for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++)
		if (cs->clients[i])
			control_drop_client(cs, i);
	for (int i = 0; i < 2; i++)
		if (cs->wake_fd[i] >= 0)
			close(cs->wake_fd[i]);
	if (cs->listen_fd >= 0)
		close(cs->listen_fd);
	if (cs->path)
		unlink(cs->path);
	free(cs->path);
	pthread_mutex_destroy(&cs->lock);
	memset(cs, 0, sizeof(*cs));
	cs->listen_fd = cs->wake_fd[0] = cs->wake_fd[1] = -1;
}
