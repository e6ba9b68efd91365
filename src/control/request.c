#include "control/commands.h"

#include <errno.h>
#include <string.h>

json_object *control_error_reply(const char *cls, const char *desc)
{
	json_object *err = json_object_new_object();
	json_object_object_add(err, "class", json_object_new_string(cls));
	json_object_object_add(err, "desc", json_object_new_string(desc));
	json_object *reply = json_object_new_object();
	json_object_object_add(reply, "error", err);
	return reply;
}

json_object *control_answer(struct control_ctx *ctx, const char *line)
{
	json_object *req = json_tokener_parse(line), *reply, *ret = NULL, *v;
	const char *name;

	if (!req || !json_object_is_type(req, json_type_object)) {
		reply = control_error_reply("ParseError", "request is not a JSON object");
		goto out;
	}
	if (!json_object_object_get_ex(req, "execute", &v) ||
	    !json_object_is_type(v, json_type_string)) {
		reply = control_error_reply("BadRequest", "missing \"execute\": \"<command>\"");
		goto out;
	}
	name = json_object_get_string(v);
	json_object *args = NULL;
	if (json_object_object_get_ex(req, "arguments", &args) &&
	    !json_object_is_type(args, json_type_object)) {
		reply = control_error_reply("BadRequest", "\"arguments\" must be an object");
		goto out;
	}
	int err = control_dispatch(ctx, name, args, &ret);
	if (err) {
		reply = control_error_reply(err == -ENOENT ? "CommandNotFound" : "GenericError",
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
	json_object_put(req);
	return reply;
}
