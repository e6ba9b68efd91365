/* The control API's command table (docs/api.md). */
#ifndef FERRY_CONTROL_COMMANDS_H
#define FERRY_CONTROL_COMMANDS_H

#include <json-c/json.h>
#include <stdbool.h>

#include "board/machine.h"

struct migration;
struct control_server;

struct control_ctx {
	struct machine *machine;	/* NULL only in tests and fuzzers: no VM */
	struct migration *mig;		/* the outgoing migration job; may be NULL */
	struct control_server *server;
	bool test_hooks;	/* allow x-test-* commands (ferry run --test-hooks) */
};

/*
 * Run command `name` with `args` (a JSON object or NULL).  On success returns
 * 0 and sets *ret to the result (caller puts it); on failure returns -errno
 * (-ENOENT: no such command) and sets *ret to a JSON string saying why.
 */
int control_dispatch(struct control_ctx *ctx, const char *name, json_object *args,
		     json_object **ret);

/*
 * The reply object to one request line (untrusted bytes, NUL-terminated):
 * parse it, run the command, wrap the result or error, echo the "id".
 * Never NULL; the caller puts it.  Control thread (or a fuzzer).
 */
json_object *control_answer(struct control_ctx *ctx, const char *line);

/* {"error": {"class": cls, "desc": desc}}. */
json_object *control_error_reply(const char *cls, const char *desc);

/* Set *ret to a message and return err; for command handlers. */
int control_fail(json_object **ret, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
