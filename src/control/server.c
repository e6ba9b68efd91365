#include "control/control.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "control/commands.h"
#include "util/log.h"
#include "util/unixsock.h"

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
	if (bind(cs->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		goto fail;
	cs->path = strdup(path);
	if (listen(cs->listen_fd, 4) < 0 || pipe2(cs->wake_fd, O_CLOEXEC) < 0)
		goto fail;
	return 0;
fail:
	err = -errno;
	pr_err("cannot listen on control socket %s: %s", path, strerror(-err));
	return err;
}

static void control_reply_locked(int fd, json_object *reply)
{
	const char *s = json_object_to_json_string_ext(reply, JSON_C_TO_STRING_PLAIN);
	size_t len = strlen(s);
	char *line = malloc(len + 1);

	if (!line)
		return;
	memcpy(line, s, len);
	line[len] = '\n';
	for (size_t off = 0; off < len + 1;) {
		ssize_t n = send(fd, line + off, len + 1 - off, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	free(line);
}

static void control_reply(struct control_server *cs, int fd, json_object *reply)
{
	pthread_mutex_lock(&cs->lock);
	control_reply_locked(fd, reply);
	pthread_mutex_unlock(&cs->lock);
}

void control_server_broadcast(struct control_server *cs, json_object *event)
{
	pthread_mutex_lock(&cs->lock);
	for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++)
		if (cs->clients[i])
			control_reply_locked(cs->clients[i]->fd, event);
	pthread_mutex_unlock(&cs->lock);
}

static json_object *control_error(const char *cls, const char *desc)
{
	json_object *err = json_object_new_object();
	json_object_object_add(err, "class", json_object_new_string(cls));
	json_object_object_add(err, "desc", json_object_new_string(desc));
	json_object *reply = json_object_new_object();
	json_object_object_add(reply, "error", err);
	return reply;
}

/* Parse one request line and answer it.  The line is untrusted. */
static void control_handle_line(struct control_server *cs, int fd, const char *line)
{
	json_object *req = json_tokener_parse(line), *reply, *ret = NULL, *v;
	const char *name;

	if (!req || !json_object_is_type(req, json_type_object)) {
		reply = control_error("ParseError", "request is not a JSON object");
		goto out;
	}
	if (!json_object_object_get_ex(req, "execute", &v) ||
	    !json_object_is_type(v, json_type_string)) {
		reply = control_error("BadRequest", "missing \"execute\": \"<command>\"");
		goto out;
	}
	name = json_object_get_string(v);
	json_object *args = NULL;
	if (json_object_object_get_ex(req, "arguments", &args) &&
	    !json_object_is_type(args, json_type_object)) {
		reply = control_error("BadRequest", "\"arguments\" must be an object");
		goto out;
	}
	int err = control_dispatch(&cs->ctx, name, args, &ret);
	if (err) {
		reply = control_error(err == -ENOENT ? "CommandNotFound" : "GenericError",
				      ret ? json_object_get_string(ret) : strerror(-err));
		json_object_put(ret);
	} else {
		reply = json_object_new_object();
		json_object_object_add(reply, "return", ret ? ret : json_object_new_object());
	}
out:
	if (req && json_object_is_type(req, json_type_object) &&
	    json_object_object_get_ex(req, "id", &v))
		json_object_object_add(reply, "id", json_object_get(v));
	control_reply(cs, fd, reply);
	json_object_put(reply);
	json_object_put(req);
}

static void control_drop_client(struct control_server *cs, unsigned i)
{
	pthread_mutex_lock(&cs->lock);
	close(cs->clients[i]->fd);
	free(cs->clients[i]);
	cs->clients[i] = NULL;
	pthread_mutex_unlock(&cs->lock);
}

/* Read what a client sent and run each complete line.  False: drop it. */
static bool control_read_client(struct control_server *cs, struct control_client *c)
{
	ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len, 0);

	if (n <= 0)
		return n < 0 && errno == EINTR;
	c->len += (size_t)n;
	char *start = c->buf, *nl;
	while ((nl = memchr(start, '\n', c->len - (size_t)(start - c->buf)))) {
		*nl = '\0';
		if (nl > start)
			control_handle_line(cs, c->fd, start);
		start = nl + 1;
	}
	c->len -= (size_t)(start - c->buf);
	memmove(c->buf, start, c->len);
	if (c->len == sizeof(c->buf) - 1) {
		json_object *r = control_error("BadRequest", "request line too long");
		control_reply(cs, c->fd, r);
		json_object_put(r);
		return false;
	}
	return true;
}

static void control_accept(struct control_server *cs)
{
	int fd = accept4(cs->listen_fd, NULL, NULL, SOCK_CLOEXEC);

	if (fd < 0)
		return;
	for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++) {
		if (cs->clients[i])
			continue;
		struct control_client *c = calloc(1, sizeof(*c));
		if (!c)
			break;
		c->fd = fd;
		pthread_mutex_lock(&cs->lock);
		cs->clients[i] = c;
		pthread_mutex_unlock(&cs->lock);
		return;
	}
	json_object *r = control_error("Busy", "too many control clients");
	control_reply(cs, fd, r);
	json_object_put(r);
	close(fd);
}

static void *control_thread(void *arg)
{
	struct control_server *cs = arg;

	pthread_setname_np(pthread_self(), "control");
	for (;;) {
		struct pollfd pfd[2 + CONTROL_MAX_CLIENTS];
		pfd[0] = (struct pollfd){ .fd = cs->wake_fd[0], .events = POLLIN };
		pfd[1] = (struct pollfd){ .fd = cs->listen_fd, .events = POLLIN };
		for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++)
			pfd[2 + i] = (struct pollfd){
				.fd = cs->clients[i] ? cs->clients[i]->fd : -1, .events = POLLIN,
			};
		if (poll(pfd, 2 + CONTROL_MAX_CLIENTS, -1) < 0 && errno != EINTR)
			break;
		if (pfd[0].revents)
			break;
		if (pfd[1].revents & POLLIN)
			control_accept(cs);
		for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++)
			if (cs->clients[i] && pfd[2 + i].revents &&
			    !control_read_client(cs, cs->clients[i]))
				control_drop_client(cs, i);
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
		if (write(cs->wake_fd[1], "x", 1) < 0)
			pr_debug("control wake: %s", strerror(errno));
		pthread_join(cs->thread, NULL);
		cs->thread_started = false;
	}
}

void control_server_close(struct control_server *cs)
{
	control_server_stop(cs);
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
