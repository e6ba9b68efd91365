/*
 * libFuzzer target: arbitrary bytes as control API requests, as a hostile
 * client would send them, through the real parser and dispatcher
 * (control_answer: JSON parse, "execute"/"arguments"/"id", the argument
 * tables, each command's own argument handling) and the reply's
 * serialisation.  See tests/fuzz/README.md.
 *
 * Input: request lines split at '\n' as the control thread splits them.
 * No VM is attached (ctx.machine and ctx.mig are NULL): commands that need
 * one say so after their arguments are checked, and migrate parses and
 * checks all of its parameters before it finds there is nothing to
 * migrate.  Test hooks stay off, as in production.
 *
 * Invariants checked besides the sanitizers: every line gets exactly one
 * reply object, with "return" or an "error" that has a string "class" and
 * "desc".
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "control/commands.h"
#include "util/log.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	log_set_level(LOG_ERROR);
	return 0;
}

static void fz_check_reply(json_object *reply)
{
	json_object *e, *v;

	if (!reply || !json_object_is_type(reply, json_type_object))
		abort();
	/* What the server sends: it must serialise. */
	if (!json_object_to_json_string_ext(reply, JSON_C_TO_STRING_PLAIN))
		abort();
	if (json_object_object_get_ex(reply, "return", NULL))
		return;
	if (!json_object_object_get_ex(reply, "error", &e) ||
	    !json_object_object_get_ex(e, "class", &v) || !json_object_is_type(v, json_type_string) ||
	    !json_object_object_get_ex(e, "desc", &v) || !json_object_is_type(v, json_type_string))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct control_ctx ctx = { 0 };
	char *buf = malloc(size + 1);

	if (!buf)
		return 0;
	memcpy(buf, data, size);
	buf[size] = '\0';
	for (char *line = buf, *nl; line; line = nl) {
		size_t left = size - (size_t)(line - buf);
		nl = memchr(line, '\n', left);
		size_t len = nl ? (size_t)(nl - line) : left;
		if (nl)
			*nl++ = '\0';
		if (!len)
			continue;	/* the server skips empty lines */
		json_object *reply = control_answer(&ctx, line);
		fz_check_reply(reply);
		json_object_put(reply);
	}
	free(buf);
	return 0;
}
