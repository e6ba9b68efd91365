/* ferry status|pause|resume|quit|announce|call|migrate-resolve CONTROL: talk to a running ferry. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "control/client.h"
#include "util/log.h"
#include "util/parse.h"

#define CLIENT_TIMEOUT_MS 10000

static void client_usage(const char *verb, FILE *f)
{
	fprintf(f,
		"Usage: ferry %s CONTROL [--json]\n"
		"\n"
		"Send '%s' to the ferry whose control socket is CONTROL\n"
		"(the PATH given to 'ferry run --control PATH').\n"
		"\n"
		"  -j, --json   print the reply as JSON\n"
		"  -h, --help   show this help\n", verb, verb);
}

static const char call_usage[] =
"Usage: ferry call CONTROL COMMAND [ARGUMENTS-JSON]\n"
"\n"
"Send any control API command (docs/api.md) and print the JSON reply.\n"
"Example: ferry call /tmp/vm.sock status\n"
"         ferry call /tmp/vm.sock x-test-corrupt '{\"gpa\": 16777216}'\n";

static const char resolve_usage[] =
"Usage: ferry migrate-resolve CONTROL run|abandon\n"
"\n"
"Settle a switchover that is in doubt: GO was sent (or LOADED, on the\n"
"destination) and the answer never came, so neither side knows whether the\n"
"other runs the guest and both stay paused ('ferry status' says in-doubt).\n"
"Find out which side should run it, then:\n"
"  run       start (destination) or resume (source) the guest on this side\n"
"  abandon   discard this side's copy of the guest; its ferry exits\n"
"Run 'run' on one side only, and 'abandon' on the other.\n";

static const char *client_str(json_object *o, const char *key)
{
	json_object *v;

	return json_object_object_get_ex(o, key, &v) ? json_object_get_string(v) : "?";
}

static long long client_i64(json_object *o, const char *key)
{
	json_object *v;

	return json_object_object_get_ex(o, key, &v) ? (long long)json_object_get_int64(v) : 0;
}

static void client_print_status(json_object *r)
{
	json_object *v;
	char buf[32];

	if (json_object_object_get_ex(r, "status", &v))
		printf("status:   %s\n", json_object_get_string(v));
	if (json_object_object_get_ex(r, "vcpus", &v))
		printf("vcpus:    %d\n", json_object_get_int(v));
	if (json_object_object_get_ex(r, "memory", &v))
		printf("memory:   %s\n", format_size((uint64_t)json_object_get_int64(v), buf, sizeof(buf)));
	if (json_object_object_get_ex(r, "uptime-ms", &v))
		printf("uptime:   %.1f s\n", (double)json_object_get_int64(v) / 1000.0);
	if (json_object_object_get_ex(r, "kernel", &v))
		printf("kernel:   %s\n", json_object_get_string(v));
	if (json_object_object_get_ex(r, "cmdline", &v))
		printf("cmdline:  %s\n", json_object_get_string(v));
	if (json_object_object_get_ex(r, "nics", &v)) {
		for (size_t i = 0; i < json_object_array_length(v); i++) {
			json_object *n = json_object_array_get_idx(v, i);
			printf("nic %zu:    tap %s mac %s rx %lld (%lld dropped) tx %lld, "
			       "announce rounds %lld\n", i, client_str(n, "tap"), client_str(n, "mac"),
			       client_i64(n, "rx-frames"), client_i64(n, "rx-dropped"),
			       client_i64(n, "tx-frames"), client_i64(n, "announce-rounds"));
		}
	}
	if (json_object_object_get_ex(r, "switchover", &v))
		printf("switchover: %s%s\n", json_object_get_string(v),
		       strcmp(json_object_get_string(v), "in-doubt") ? "" :
		       " (paused; settle it with 'ferry migrate-resolve CONTROL run|abandon')");
}

int cli_client(const char *verb, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	json_object *reply = NULL, *v;
	bool as_json = false;
	int c, err;

	/* "+": stop at the first operand, so JSON arguments are never options. */
	while ((c = getopt_long(argc, argv, "+jh", longopts, NULL)) != -1) {
		if (c == 'j') {
			as_json = true;
		} else if (c == 'h') {
			if (!strcmp(verb, "call"))
				fputs(call_usage, stdout);
			else if (!strcmp(verb, "migrate-resolve"))
				fputs(resolve_usage, stdout);
			else
				client_usage(verb, stdout);
			return 0;
		} else {
			client_usage(verb, stderr);
			return FERRY_EXIT_USAGE;
		}
	}
	bool call = !strcmp(verb, "call");
	json_object *args = NULL;
	if (call) {
		if (optind + 2 != argc && optind + 3 != argc) {
			fputs(call_usage, stderr);
			return FERRY_EXIT_USAGE;
		}
		if (optind + 3 == argc) {
			args = json_tokener_parse(argv[optind + 2]);
			if (!args || !json_object_is_type(args, json_type_object)) {
				json_object_put(args);
				pr_err("arguments must be a JSON object, e.g. '{\"gpa\": 4096}'");
				return FERRY_EXIT_USAGE;
			}
		}
		as_json = true;
	} else if (!strcmp(verb, "migrate-resolve")) {
		if (optind + 2 != argc || (strcmp(argv[optind + 1], "run") &&
					   strcmp(argv[optind + 1], "abandon"))) {
			fputs(resolve_usage, stderr);
			return FERRY_EXIT_USAGE;
		}
		args = json_object_new_object();
		json_object_object_add(args, "action", json_object_new_string(argv[optind + 1]));
	} else if (optind + 1 != argc) {
		client_usage(verb, stderr);
		return FERRY_EXIT_USAGE;
	}
	const char *path = argv[optind];
	/* The verb names its command, but for one whose name says more. */
	const char *command = call ? argv[optind + 1] :
			      !strcmp(verb, "migrate-postcopy") ? "migrate-start-postcopy" : verb;
	err = control_client_call(path, command, args, CLIENT_TIMEOUT_MS, &reply);
	json_object_put(args);
	if (err) {
		pr_err("cannot reach ferry at %s: %s (is 'ferry run --control %s' running?)",
		       path, strerror(-err), path);
		return FERRY_EXIT_UNAVAILABLE;
	}
	if (json_object_object_get_ex(reply, "error", &v)) {
		json_object *desc;
		json_object_object_get_ex(v, "desc", &desc);
		pr_err("%s failed: %s", verb, desc ? json_object_get_string(desc) : "unknown error");
		json_object_put(reply);
		return FERRY_EXIT_SOFTWARE;
	}
	json_object_object_get_ex(reply, "return", &v);
	if (as_json)
		printf("%s\n", json_object_to_json_string_ext(v, JSON_C_TO_STRING_PRETTY));
	else if (!strcmp(verb, "status"))
		client_print_status(v);
	json_object_put(reply);
	return 0;
}
