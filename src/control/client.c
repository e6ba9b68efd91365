#include "control/client.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "control/control.h"

int control_conn_open(struct control_conn *c, const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	memset(c, 0, sizeof(*c));
	c->fd = -1;
	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	c->cap = 4096;
	c->buf = malloc(c->cap);
	if (!c->buf)
		return -ENOMEM;
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return -errno;
	if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int err = -errno;
		control_conn_close(c);
		return err;
	}
	return 0;
}

void control_conn_close(struct control_conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	free(c->buf);
	json_object_put(c->event);
	memset(c, 0, sizeof(*c));
	c->fd = -1;
}

static int control_conn_send(struct control_conn *c, const char *command, json_object *args)
{
	json_object *req = json_object_new_object();
	const char *s;
	int err = 0;

	json_object_object_add(req, "execute", json_object_new_string(command));
	if (args)
		json_object_object_add(req, "arguments", json_object_get(args));
	s = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
	size_t len = strlen(s);
	for (size_t off = 0; off <= len && !err;) {
		/* The terminating NUL goes out as the line's newline. */
		const char *p = off < len ? s + off : "\n";
		size_t n = off < len ? len - off : 1;
		ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			err = -errno;
		else
			off += (size_t)w;
	}
	json_object_put(req);
	return err;
}

/* Next line as JSON, waiting up to timeout_ms.  0 or -errno. */
static int control_conn_read(struct control_conn *c, int timeout_ms, json_object **out)
{
	for (;;) {
		char *nl = memchr(c->buf, '\n', c->len);
		if (nl) {
			*nl = '\0';
			*out = json_tokener_parse(c->buf);
			size_t used = (size_t)(nl - c->buf) + 1;
			memmove(c->buf, c->buf + used, c->len - used);
			c->len -= used;
			if (!*out || !json_object_is_type(*out, json_type_object)) {
				json_object_put(*out);
				return -EPROTO;
			}
			return 0;
		}
		if (c->len + 1 >= c->cap) {
			if (c->cap >= (size_t)CONTROL_MAX_LINE * 16)
				return -EPROTO;
			char *nb = realloc(c->buf, c->cap * 2);
			if (!nb)
				return -ENOMEM;
			c->buf = nb;
			c->cap *= 2;
		}
		struct pollfd p = { .fd = c->fd, .events = POLLIN };
		int r = poll(&p, 1, timeout_ms);
		if (r == 0)
			return -ETIMEDOUT;
		if (r < 0)
			return errno == EINTR ? -EINTR : -errno;
		ssize_t n = recv(c->fd, c->buf + c->len, c->cap - 1 - c->len, 0);
		if (n == 0)
			return -EPIPE;
		if (n < 0)
			return errno == EINTR ? -EINTR : -errno;
		c->len += (size_t)n;
	}
}

static void control_conn_keep_event(struct control_conn *c, json_object *ev)
{
	json_object_put(c->event);
	c->event = ev;
}

int control_conn_call(struct control_conn *c, const char *command, json_object *args,
		      int timeout_ms, json_object **reply)
{
	int err = control_conn_send(c, command, args);

	/*
	 * A server that turns us away (Busy) says so and hangs up, maybe
	 * before our request went out: read its answer, not the EPIPE.
	 */
	if (err == -EPIPE || err == -ECONNRESET)
		err = 0;
	while (!err) {
		json_object *o, *v;
		err = control_conn_read(c, timeout_ms, &o);
		if (err == -EINTR) {
			err = 0;
			continue;
		}
		if (err)
			break;
		if (json_object_object_get_ex(o, "event", &v)) {
			control_conn_keep_event(c, o);
			continue;
		}
		*reply = o;
		return 0;
	}
	return err;
}

int control_conn_wait_event(struct control_conn *c, int timeout_ms, json_object **event)
{
	while (!c->event) {
		json_object *o, *v;
		int err = control_conn_read(c, timeout_ms, &o);
		if (err)
			return err;
		if (json_object_object_get_ex(o, "event", &v))
			control_conn_keep_event(c, o);
		else
			json_object_put(o);	/* a stray reply */
	}
	*event = c->event;
	c->event = NULL;
	return 0;
}

int control_client_call(const char *path, const char *command, json_object *args,
			int timeout_ms, json_object **reply)
{
	struct control_conn c;
	int err = control_conn_open(&c, path);

	if (!err)
		err = control_conn_call(&c, command, args, timeout_ms, reply);
	control_conn_close(&c);
	return err;
}
