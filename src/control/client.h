/* Client side of the control API, for the CLI verbs and tests. */
#ifndef FERRY_CONTROL_CLIENT_H
#define FERRY_CONTROL_CLIENT_H

#include <json-c/json.h>

/*
 * Connect to the control socket at `path`, run `command` with `args`
 * (borrowed, may be NULL) and store the reply object in *reply (caller
 * puts it).  Waits at most `timeout_ms` for the reply.  Returns 0 or
 * -errno (-ECONNREFUSED/-ENOENT: nobody there, -ETIMEDOUT, -EPROTO: the
 * reply was not JSON).
 */
int control_client_call(const char *path, const char *command, json_object *args,
			int timeout_ms, json_object **reply) __attribute__((warn_unused_result));

#endif
