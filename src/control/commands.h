/* The control API's command table (docs/api.md). */
#ifndef FERRY_CONTROL_COMMANDS_H
#define FERRY_CONTROL_COMMANDS_H

#include <json-c/json.h>
#include <stdbool.h>

#include "vmm/machine.h"

struct control_ctx {
	struct machine *machine;
	bool test_hooks;	/* allow x-test-* commands (ferry run --test-hooks) */
};

/*
 * Run command `name` with `args` (a JSON object or NULL).  On success returns
 * 0 and sets *ret to the result (caller puts it); on failure returns -errno
 * (-ENOENT: no such command) and sets *ret to a JSON string saying why.
 */
int control_dispatch(struct control_ctx *ctx, const char *name, json_object *args,
		     json_object **ret);

#endif
