/*
 * The control API's argument checker: each command declares the arguments
 * it takes, and control_dispatch checks a request against that table before
 * the handler runs, so a handler only ever sees keys it knows, of the type
 * it expects.  Arguments come from any process that can connect: untrusted.
 */
#ifndef FERRY_CONTROL_ARGS_H
#define FERRY_CONTROL_ARGS_H

#include <json-c/json.h>
#include <stdbool.h>

enum control_arg_type {
	CONTROL_ARG_STRING,
	CONTROL_ARG_UINT,	/* a JSON integer >= 0 */
	CONTROL_ARG_BOOL,
};

struct control_arg {
	const char *name;	/* NULL ends a table */
	enum control_arg_type type;
	bool required;
};

/*
 * Check `args` (a JSON object or NULL: no arguments) against `spec` (NULL:
 * the command takes none): an unknown key, a value of the wrong type (null
 * included) or a missing required key is refused.  Returns 0, or -EINVAL
 * with *ret set to a JSON string naming the argument and what it must be.
 */
int control_check_args(const char *command, const struct control_arg *spec, json_object *args,
		       json_object **ret);

#endif
