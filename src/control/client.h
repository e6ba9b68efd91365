/* Client side of the control API, for the CLI verbs and tests. */
#ifndef FERRY_CONTROL_CLIENT_H
#define FERRY_CONTROL_CLIENT_H

#include <json-c/json.h>
#include <stddef.h>

/* A connection that may carry many requests and the events the server sends. */
struct control_conn {
	int fd;
	char *buf;
	size_t len, cap;
	json_object *event;	/* the last event seen and not yet taken */
};

/* Connect to the socket at path.  Returns 0 or -errno (-ENOENT/-ECONNREFUSED: nobody). */
int control_conn_open(struct control_conn *c, const char *path) __attribute__((warn_unused_result));
void control_conn_close(struct control_conn *c);

/*
 * Run `command` with `args` (borrowed, may be NULL); the reply object goes
 * to *reply (caller puts it).  Events that arrive meanwhile are kept in
 * c->event.  Returns 0 or -errno (-ETIMEDOUT, -EPIPE, -EPROTO: not JSON).
 */
int control_conn_call(struct control_conn *c, const char *command, json_object *args,
		      int timeout_ms, json_object **reply) __attribute__((warn_unused_result));

/*
 * Wait up to timeout_ms for an event; returns 0 with *event set (caller
 * puts it), -ETIMEDOUT, or another -errno.
 */
int control_conn_wait_event(struct control_conn *c, int timeout_ms, json_object **event)
	__attribute__((warn_unused_result));

/* One request on a connection of its own. */
int control_client_call(const char *path, const char *command, json_object *args,
			int timeout_ms, json_object **reply) __attribute__((warn_unused_result));

#endif
