/*
 * ferry save CONTROL FILE: write a running VM to a file, as virsh save
 * does.  ferry snapshot CONTROL FILE: the same file of the VM at one
 * instant, while it runs on.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "control/client.h"
#include "util/log.h"
#include "util/parse.h"

/* A save writes all of RAM: minutes for a large guest on a slow disk. */
#define SAVE_TIMEOUT_MS (30 * 60 * 1000)

static const char save_usage[] =
"Usage: ferry save CONTROL FILE [--keep-running] [--disks path|copy] [--json]\n"
"\n"
"Pause the VM whose control socket is CONTROL, write its RAM, CPU and\n"
"device state to FILE (docs/save-format.md), then stop it: ferry run exits\n"
"0.  Restore it with 'ferry run --restore FILE [--lazy]'.  The disks are\n"
"drained and flushed, and recorded by path, size and identity: the restore\n"
"opens them again, and refuses one that changed.  FILE appears only once\n"
"it is complete (it is written as FILE.tmp, synced and renamed); on a\n"
"failure the guest runs on.\n"
"\n"
"  -k, --keep-running  resume the guest after the save instead of stopping it\n"
"                      (disks kept by path go on changing)\n"
"      --disks MODE    path (default): record each disk's path; copy: also\n"
"                      copy each disk's contents into FILE (holes stay holes),\n"
"                      with the guest paused; the restore writes them into the\n"
"                      image named by --disk path=NEW\n"
"  -j, --json          print the result as JSON\n"
"  -h, --help          show this help\n";

static const char snapshot_usage[] =
"Usage: ferry snapshot CONTROL FILE [--disks path] [--json]\n"
"\n"
"Write the VM whose control socket is CONTROL to FILE as it is at this\n"
"instant, while it runs on (docs/save-format.md, \"Live snapshot\"): the\n"
"guest pauses only to take its CPU and device state; its RAM is written\n"
"behind it, each block copied before the guest may change it.  Restore\n"
"with 'ferry run --restore FILE [--lazy]'.  Disks are recorded by path,\n"
"not copied, and go on changing (--disks copy is refused: use 'ferry save\n"
"--keep-running --disks copy', which copies them with the guest paused).\n"
"\n"
"  -j, --json          print the result as JSON\n"
"  -h, --help          show this help\n";

enum { OPT_DISKS = 0x100 };

static int save_verb(bool snapshot, int argc, char **argv)
{
	const char *usage = snapshot ? snapshot_usage : save_usage;
	static const struct option longopts[] = {
		{ "keep-running", no_argument, NULL, 'k' },
		{ "disks", required_argument, NULL, OPT_DISKS },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool keep = false, as_json = false;
	const char *disks = NULL;
	char file[PATH_MAX], cwd[PATH_MAX], buf[32];
	json_object *args, *reply = NULL, *v, *r;
	int c, err;

	while ((c = getopt_long(argc, argv, "kjh", longopts, NULL)) != -1) {
		switch (c) {
		case 'k':
			if (snapshot) {
				fputs(usage, stderr);
				return FERRY_EXIT_USAGE;
			}
			keep = true;
			break;
		case OPT_DISKS:
			if (strcmp(optarg, "path") && strcmp(optarg, "copy")) {
				pr_err("--disks takes path or copy, not '%s'", optarg);
				return FERRY_EXIT_USAGE;
			}
			if (snapshot && !strcmp(optarg, "copy")) {
				pr_err("a live snapshot cannot copy the disks: the guest goes on "
				       "writing them while its RAM is written; use 'ferry save "
				       "--keep-running --disks copy', which copies them with the "
				       "guest paused");
				return FERRY_EXIT_USAGE;
			}
			disks = optarg;
			break;
		case 'j': as_json = true; break;
		case 'h': fputs(usage, stdout); return 0;
		default: fputs(usage, stderr); return FERRY_EXIT_USAGE;
		}
	}
	if (optind + 2 != argc) {
		fputs(usage, stderr);
		return FERRY_EXIT_USAGE;
	}
	const char *path = argv[optind], *name = argv[optind + 1];
	/* ferry run's working directory is not ours: send an absolute path. */
	if (name[0] == '/') {
		snprintf(file, sizeof(file), "%s", name);
	} else if (!getcwd(cwd, sizeof(cwd)) ||
		   snprintf(file, sizeof(file), "%s/%s", cwd, name) >= (int)sizeof(file)) {
		pr_err("cannot make %s an absolute path", name);
		return FERRY_EXIT_USAGE;
	}
	args = json_object_new_object();
	json_object_object_add(args, "file", json_object_new_string(file));
	if (!snapshot)
		json_object_object_add(args, "keep-running", json_object_new_boolean(keep));
	if (disks)
		json_object_object_add(args, "disks", json_object_new_string(disks));
	err = control_client_call(path, snapshot ? "snapshot" : "save", args, SAVE_TIMEOUT_MS,
				  &reply);
	json_object_put(args);
	if (err) {
		pr_err("cannot reach ferry at %s: %s (is 'ferry run --control %s' running?)",
		       path, strerror(-err), path);
		return FERRY_EXIT_UNAVAILABLE;
	}
	if (json_object_object_get_ex(reply, "error", &v)) {
		json_object *desc;
		json_object_object_get_ex(v, "desc", &desc);
		pr_err("%s failed: %s", snapshot ? "snapshot" : "save", desc ? json_object_get_string(desc) : "unknown error");
		json_object_put(reply);
		return FERRY_EXIT_SOFTWARE;
	}
	json_object_object_get_ex(reply, "return", &r);
	if (as_json) {
		printf("%s\n", json_object_to_json_string_ext(r, JSON_C_TO_STRING_PRETTY));
	} else {
		json_object_object_get_ex(r, "file-size", &v);
		format_size((uint64_t)json_object_get_int64(v), buf, sizeof(buf));
		json_object_object_get_ex(r, "total-time-ms", &v);
		printf("%s to %s (%s) in %.1f ms%s\n", snapshot ? "snapshot" : "saved", file, buf,
		       json_object_get_double(v), keep || snapshot ? "; the guest runs on" : "");
	}
	json_object_put(reply);
	return 0;
}

int cli_save(int argc, char **argv)
{
	return save_verb(false, argc, argv);
}

int cli_snapshot(int argc, char **argv)
{
	return save_verb(true, argc, argv);
}
