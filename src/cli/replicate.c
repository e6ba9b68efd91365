/*
 * ferry replicate CONTROL URI: start continuous checkpointing of a running
 * VM to a standby (docs/replication.md), wait until the standby holds the
 * initial checkpoint, and say so.  Replication then goes on inside the
 * VM's ferry until 'ferry call CONTROL migrate-cancel', quit, or a failure.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "control/client.h"
#include "util/log.h"
#include "util/parse.h"

#define REPLICATE_TIMEOUT_MS 10000

static const char replicate_usage[] =
"Usage: ferry replicate CONTROL URI [options]\n"
"\n"
"Keep a standby ('ferry run --incoming URI --standby') in step with the VM\n"
"behind CONTROL: after an initial copy (a pre-copy migration), every\n"
"interval the guest pauses briefly, its dirty pages and device state are\n"
"collected, it resumes, and the epoch goes to the standby, which applies it\n"
"only once it arrived whole.  When this side is gone the standby resumes the\n"
"guest from the last checkpoint; when the standby is silent for the fence\n"
"timeout (and takes over by itself) this side pauses its guest for good.\n"
"Returns once the standby holds the initial checkpoint; 'ferry call CONTROL\n"
"query-migrate' shows the epochs, 'ferry call CONTROL migrate-cancel' stops.\n"
"\n"
"Options:\n"
"      --interval T          time between epochs (default 50ms; 5ms..60s)\n"
"      --failover-timeout T  fence this side after T without a word from the\n"
"                            standby (default: half the standby's\n"
"                            --failover-timeout; more than that is refused)\n"
"      --bandwidth RATE      cap on the initial copy's live passes, e.g. 100M\n"
"      --copy-storage[=incremental]  replicate the disks (local images): the\n"
"                            initial copy copies them, every epoch carries\n"
"                            the blocks written in it; the standby runs with\n"
"                            --copy-storage and its own images.  Without it a\n"
"                            VM with disks is refused (no shared storage)\n"
"      --verify              check the initial copy's RAM and state digests\n"
"      --json                print the final query-migrate as JSON\n"
"  -h, --help                show this help\n"
"\n"
"Exit status: 0 replicating, 64 usage, 69 CONTROL unreachable, 70 refused or\n"
"failed (the reason is printed).\n";

int cli_replicate(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "interval", required_argument, NULL, 'i' },
		{ "failover-timeout", required_argument, NULL, 'f' },
		{ "bandwidth", required_argument, NULL, 'b' },
		{ "copy-storage", optional_argument, NULL, 'G' },
		{ "verify", no_argument, NULL, 'V' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	json_object *args = json_object_new_object(), *reply = NULL, *v, *q = NULL;
	bool as_json = false;
	uint64_t n;
	int c;

	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'i':
			if (parse_duration(optarg, NSEC_PER_MSEC, &n) || n < 5 * NSEC_PER_MSEC ||
			    n > 60 * NSEC_PER_SEC)
				die(FERRY_EXIT_USAGE, "bad --interval '%s': use 5ms to 60s", optarg);
			json_object_object_add(args, "interval-ms",
					       json_object_new_int64((int64_t)(n / NSEC_PER_MSEC)));
			break;
		case 'f':
			if (parse_duration(optarg, NSEC_PER_SEC, &n) || n < NSEC_PER_MSEC ||
			    n > 3600 * NSEC_PER_SEC)
				die(FERRY_EXIT_USAGE, "bad --failover-timeout '%s': use a time like 500ms",
				    optarg);
			json_object_object_add(args, "failover-timeout-ms",
					       json_object_new_int64((int64_t)(n / NSEC_PER_MSEC)));
			break;
		case 'b':
			if (parse_size(optarg, &n) || !n)
				die(FERRY_EXIT_USAGE, "bad --bandwidth '%s': use a rate like 100M", optarg);
			json_object_object_add(args, "bandwidth", json_object_new_int64((int64_t)n));
			break;
		case 'V':
			json_object_object_add(args, "verify", json_object_new_boolean(1));
			break;
		case 'G':
			if (!optarg || !strcmp(optarg, "full"))
				json_object_object_add(args, "copy-storage", json_object_new_boolean(1));
			else if (!strcmp(optarg, "incremental"))
				json_object_object_add(args, "copy-storage",
						       json_object_new_string("incremental"));
			else
				die(FERRY_EXIT_USAGE, "--copy-storage takes full (the default) or "
				    "incremental");
			break;
		case 'j': as_json = true; break;
		case 'h': fputs(replicate_usage, stdout); json_object_put(args); return 0;
		default:
			fputs(replicate_usage, stderr);
			json_object_put(args);
			return FERRY_EXIT_USAGE;
		}
	}
	if (optind + 2 != argc) {
		fputs(replicate_usage, stderr);
		json_object_put(args);
		return FERRY_EXIT_USAGE;
	}
	const char *path = argv[optind];
	json_object_object_add(args, "uri", json_object_new_string(argv[optind + 1]));
	int err = control_client_call(path, "replicate", args, REPLICATE_TIMEOUT_MS, &reply);
	json_object_put(args);
	if (err) {
		pr_err("cannot reach ferry at %s: %s", path, strerror(-err));
		return FERRY_EXIT_UNAVAILABLE;
	}
	if (json_object_object_get_ex(reply, "error", &v)) {
		json_object *desc = NULL;
		json_object_object_get_ex(v, "desc", &desc);
		pr_err("replicate failed: %s", desc ? json_object_get_string(desc) : "unknown error");
		json_object_put(reply);
		return FERRY_EXIT_SOFTWARE;
	}
	json_object_put(reply);
	/* Until the standby holds the initial checkpoint, or it failed. */
	const char *st = "setup";
	for (;;) {
		struct timespec ts = { 0, 100000000 };
		reply = NULL;
		if (control_client_call(path, "query-migrate", NULL, REPLICATE_TIMEOUT_MS, &reply)) {
			pr_err("lost ferry at %s", path);
			return FERRY_EXIT_UNAVAILABLE;
		}
		if (json_object_object_get_ex(reply, "return", &q) &&
		    json_object_object_get_ex(q, "status", &v))
			st = json_object_get_string(v);
		if (strcmp(st, "setup") && strcmp(st, "active") && strcmp(st, "device"))
			break;
		json_object_put(reply);
		nanosleep(&ts, NULL);
	}
	int status = strcmp(st, "replicating") ? FERRY_EXIT_SOFTWARE : 0;
	if (as_json)
		printf("%s\n", json_object_to_json_string_ext(q, JSON_C_TO_STRING_PRETTY));
	else if (!status)
		printf("replicating to %s: the standby holds the initial checkpoint\n",
		       argv[optind + 1]);
	if (status) {
		json_object *e = NULL;
		json_object_object_get_ex(q, "error", &e);
		pr_err("replication %s: %s", st, e ? json_object_get_string(e) : "no reason given");
	}
	json_object_put(reply);
	return status;
}
