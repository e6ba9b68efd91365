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

static int control_client_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

static int control_client_send(int fd, const char *line)
{
	size_t len = strlen(line);

	for (size_t off = 0; off < len;) {
		ssize_t n = send(fd, line + off, len - off, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -errno;
		off += (size_t)n;
	}
	return 0;
}

/* Read until the first newline.  Returns a malloc'd line or NULL (errno). */
static char *control_client_read_line(int fd, int timeout_ms)
{
	size_t cap = 4096, len = 0;
	char *buf = malloc(cap);

	while (buf) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int r = poll(&p, 1, timeout_ms);
		if (r == 0)
			errno = ETIMEDOUT;
		if (r <= 0)
			break;
		if (len + 1 == cap) {
			char *nb = cap < CONTROL_MAX_LINE * 16 ? realloc(buf, cap * 2) : NULL;
			if (!nb)
				break;
			buf = nb;
			cap *= 2;
		}
		ssize_t n = recv(fd, buf + len, cap - 1 - len, 0);
		if (n <= 0) {
			errno = n == 0 ? EPIPE : errno;
			break;
		}
		len += (size_t)n;
		char *nl = memchr(buf, '\n', len);
		if (nl) {
			*nl = '\0';
			return buf;
		}
	}
	free(buf);
	return NULL;
}

int control_client_call(const char *path, const char *command, json_object *args,
			int timeout_ms, json_object **reply)
{
	json_object *req = json_object_new_object();
	int fd, err = 0;
	char *line = NULL;

	json_object_object_add(req, "execute", json_object_new_string(command));
	if (args)
		json_object_object_add(req, "arguments", json_object_get(args));
	fd = control_client_connect(path);
	if (fd < 0) {
		err = fd;
		goto out;
	}
	char *msg;
	if (asprintf(&msg, "%s\n", json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN)) < 0) {
		err = -ENOMEM;
		goto out;
	}
	err = control_client_send(fd, msg);
	free(msg);
	if (err)
		goto out;
	line = control_client_read_line(fd, timeout_ms);
	if (!line) {
		err = -errno;
		goto out;
	}
	*reply = json_tokener_parse(line);
	if (!*reply || !json_object_is_type(*reply, json_type_object)) {
		json_object_put(*reply);
		*reply = NULL;
		err = -EPROTO;
	}
out:
	free(line);
	if (fd >= 0)
		close(fd);
	json_object_put(req);
	return err;
}
