#include "control/args.h"

#include <errno.h>
#include <string.h>

#include "control/commands.h"

static const char *const control_arg_want[] = {
	[CONTROL_ARG_STRING] = "a string",
	[CONTROL_ARG_UINT] = "a non-negative integer",
	[CONTROL_ARG_BOOL] = "true or false",
};

static bool control_arg_fits(enum control_arg_type type, json_object *v)
{
	switch (type) {
	case CONTROL_ARG_STRING:
		return json_object_is_type(v, json_type_string);
	case CONTROL_ARG_UINT:
		/* json-c clamps what it cannot hold to INT64_MAX: big, still refused by range checks. */
		return json_object_is_type(v, json_type_int) && json_object_get_int64(v) >= 0;
	case CONTROL_ARG_BOOL:
		return json_object_is_type(v, json_type_boolean);
	}
	return false;
}

/* The JSON type of v in words, for the message; v may be NULL (JSON null). */
static const char *control_arg_got(json_object *v)
{
	switch (json_object_get_type(v)) {
	case json_type_null: return "null";
	case json_type_boolean: return "a boolean";
	case json_type_double: return "a fraction";
	case json_type_int: return "a negative integer";	/* the only int that does not fit */
	case json_type_object: return "an object";
	case json_type_array: return "an array";
	case json_type_string: return "a string";
	}
	return "something else";
}

int control_check_args(const char *command, const struct control_arg *spec, json_object *args,
		       json_object **ret)
{
	if (args) {
		json_object_object_foreach(args, key, v) {
			const struct control_arg *a = spec;
			while (a && a->name && strcmp(a->name, key))
				a++;
			if (!a || !a->name)
				return control_fail(ret, -EINVAL, "%s takes no argument '%.64s'",
						    command, key);
			if (!control_arg_fits(a->type, v))
				return control_fail(ret, -EINVAL, "argument '%s' of %s must be %s, "
						    "not %s", a->name, command,
						    control_arg_want[a->type], control_arg_got(v));
		}
	}
	for (const struct control_arg *a = spec; a && a->name; a++)
		if (a->required && (!args || !json_object_object_get_ex(args, a->name, NULL)))
			return control_fail(ret, -EINVAL, "%s needs argument '%s' (%s)", command,
					    a->name, control_arg_want[a->type]);
	return 0;
}
