/* ferry migrate CONTROL URI: live-migrate a running VM and report how it went. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/stats_csv.h"
#include "migration/codec/codec.h"
#include "migration/ram_order.h"
#include "migration/format.h"
#include "control/client.h"
#include "util/log.h"
#include "util/parse.h"

static const char migrate_usage[] =
"Usage: ferry migrate CONTROL URI [options]\n"
"\n"
"Live-migrate the VM whose control socket is CONTROL to a destination\n"
"started with 'ferry run --incoming URI' (URI: tcp:HOST:PORT or unix:PATH).\n"
"Waits until the migration ends; Ctrl-C cancels it and the VM runs on here.\n"
"\n"
"With URI file:PATH, save the VM instead (like 'virsh save'): the guest is\n"
"paused, written to PATH.tmp, synced and renamed to PATH, and then stops\n"
"(--keep-source: stays paused); 'ferry run --incoming file:PATH' restores\n"
"it. A file has no return path: post-copy and hybrid are refused, and\n"
"--verify's digest is checked by the restore.\n"
"\n"
"Options:\n"
"  -b, --bandwidth RATE     cap the live phase, bytes/s: 100M, 1G (default: none)\n"
"  -d, --downtime LIMIT     switch over when the rest fits: 50ms, 1s (default 300ms)\n"
"  -n, --max-iterations N   switch over after N passes whatever the downtime\n"
"  -m, --mode MODE          precopy (default), postcopy (state first, the guest\n"
"                           runs there at once, pages follow on demand) or\n"
"                           hybrid (pre-copy passes, then post-copy)\n"
"      --postcopy-after N   hybrid: switch after N passes (default auto: as soon as\n"
"                           the dirty rate shows pre-copy cannot converge)\n"
"      --postcopy-bandwidth RATE  post-copy: cap the background push (pages the\n"
"                           guest asks for are never capped; default: none)\n"
"      --prepage N          post-copy: also push the N pages on each side of a\n"
"                           faulting page (default 64; 0: address order only)\n"
"      --postcopy-preempt   post-copy: one more connection, for the pages the\n"
"                           guest faults on, so they never wait behind the\n"
"                           background push (the destination agrees or it is off)\n"
"  -t, --timeout T          give up (or see --on-timeout) after T: 30s, 5m\n"
"      --on-timeout WHAT    cancel (default), force (stop-and-copy now) or\n"
"                           postcopy (switch to post-copy now)\n"
"      --switchover-timeout T  the longest the guest stays paused at the\n"
"                           switchover before the source gives up and resumes it\n"
"                           (default: 5 downtime limits, at least 1s)\n"
"      --net-epilogue T     after GO, go on forwarding the frames that reach\n"
"                           this host's taps to the destination until it has\n"
"                           announced the NICs, at most T (default 1s, at most\n"
"                           10s; 0: not at all)\n"
"  -a, --auto-converge      throttle the vCPUs while the guest dirties too fast\n"
"  -c, --compress WHAT      page encoding: none (default), lz4, zstd, delta (re-sent\n"
"                           pages as the bytes that changed) or adaptive (per page,\n"
"                           whatever pays on this link)\n"
"      --compress-level N   zstd's level (1..19, default 1)\n"
"      --xbzrle-cache SIZE  delta's cache of pages last sent (default 64M)\n"
"      --order WHAT         the pass order: rewrite (default: pass 1 leaves the\n"
"                           chunks the guest writes for its end, later passes send\n"
"                           rarely rewritten pages first, a hot tail that outruns\n"
"                           the link left for the next pass) or address\n"
"      --channels N         spread the pages over N connections, each with a\n"
"                           thread of its own (1..16, default 1; pre-copy)\n"
"  -V, --verify             compare digests of all RAM, of the device state and\n"
"                           (with --copy-storage) of every disk at switchover\n"
"      --copy-storage[=incremental]  copy the disks too, live (local disks): the\n"
"                           destination runs with --copy-storage and its own image\n"
"                           of the same size for each --disk; incremental: only the\n"
"                           64 KiB ranges whose digests differ there travel\n"
"      --copy-storage-mode M  background (default: blocks the guest wrote are\n"
"                           sent again pass after pass) or write-blocking (once a\n"
"                           disk's first pass is done, each guest write completes\n"
"                           only after it is sent: the disk always converges)\n"
"  -k, --keep-source        keep the source VM (paused) after success\n"
"      --keep-base FILE     after success, save the VM as it left to FILE (a\n"
"                           save file): a later 'ferry run --incoming URI --base\n"
"                           FILE' here gets only the pages that changed since\n"
"  -r, --resume             reconnect a post-copy whose connection broke\n"
"                           (the destination listens on URI again)\n"
"      --resume-timeout T   how long a broken post-copy waits for --resume\n"
"                           before the VM is given up (default 5m)\n"
"      --tls-creds DIR      encrypt and authenticate the connection with TLS\n"
"                           (the destination needs --tls-creds too): x509 from\n"
"                           DIR/ca-cert.pem (checks the destination's certificate)\n"
"                           and client-cert.pem, client-key.pem (if present: this\n"
"                           side's certificate); or PSK from DIR/keys.psk\n"
"                           (IDENTITY:HEXKEY lines, the first is used) when DIR\n"
"                           has no ca-cert.pem.  With --resume: the first one's\n"
"                           unless given again\n"
"      --tls-hostname NAME  the name the destination's certificate must carry\n"
"                           (default: HOST of tcp:HOST:PORT; unix: CA only)\n"
"  -p, --progress           show a live progress line\n"
"  -j, --json               print the final report as JSON\n"
"  -s, --stats-file PATH    append one CSV row of every statistic per second\n"
"  -h, --help               show this help\n"
"\n"
"Post-copy: once the guest runs at the destination, losing either side or\n"
"the connection loses the VM (neither holds all of it); say so before using it.\n"
"'ferry migrate-postcopy CONTROL' switches a running pre-copy to post-copy.\n"
"\n"
"Exit status: 0 completed, 1 failed or cancelled (the VM runs on at the\n"
"source), 3 post-copy failed and the VM is lost, 4 post-copy paused on a\n"
"broken connection (resume it with --resume), 5 the switchover is in doubt\n"
"(GO was sent, no answer came: both sides stay paused until\n"
"'ferry migrate-resolve' settles it), 64 usage, 69 no ferry at CONTROL.\n";

struct migrate_opts {
	const char *control, *uri, *stats_file;
	bool progress, json;
	json_object *args;
};

static volatile sig_atomic_t migrate_interrupted;

static void migrate_on_signal(int sig)
{
	migrate_interrupted = 1;
}

static void migrate_add_bool(json_object *args, const char *key)
{
	json_object_object_add(args, key, json_object_new_boolean(true));
}

/* Long options with no letter of their own. */
enum { OPT_ORDER = 0x100, OPT_NET_EPILOGUE, OPT_POSTCOPY_PREEMPT };

static void migrate_parse(int argc, char **argv, struct migrate_opts *o)
{
	static const struct option longopts[] = {
		{ "bandwidth", required_argument, NULL, 'b' },
		{ "downtime", required_argument, NULL, 'd' },
		{ "max-iterations", required_argument, NULL, 'n' },
		{ "timeout", required_argument, NULL, 't' },
		{ "on-timeout", required_argument, NULL, 'O' },
		{ "switchover-timeout", required_argument, NULL, 'S' },
		{ "mode", required_argument, NULL, 'm' },
		{ "postcopy-after", required_argument, NULL, 'A' },
		{ "prepage", required_argument, NULL, 'P' },
		{ "postcopy-bandwidth", required_argument, NULL, 'B' },
		{ "auto-converge", no_argument, NULL, 'a' },
		{ "verify", no_argument, NULL, 'V' },
		{ "compress", required_argument, NULL, 'c' },
		{ "compress-level", required_argument, NULL, 'L' },
		{ "xbzrle-cache", required_argument, NULL, 'X' },
		{ "order", required_argument, NULL, OPT_ORDER },
		{ "net-epilogue", required_argument, NULL, OPT_NET_EPILOGUE },
		{ "channels", required_argument, NULL, 'C' },
		{ "postcopy-preempt", no_argument, NULL, OPT_POSTCOPY_PREEMPT },
		{ "keep-source", no_argument, NULL, 'k' },
		{ "keep-base", required_argument, NULL, 'K' },
		{ "copy-storage", optional_argument, NULL, 'G' },
		{ "copy-storage-mode", required_argument, NULL, 'W' },
		{ "resume", no_argument, NULL, 'r' },
		{ "resume-timeout", required_argument, NULL, 'R' },
		{ "progress", no_argument, NULL, 'p' },
		{ "json", no_argument, NULL, 'j' },
		{ "stats-file", required_argument, NULL, 's' },
		{ "tls-creds", required_argument, NULL, 'T' },
		{ "tls-hostname", required_argument, NULL, 'H' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t v;
	int c;

	memset(o, 0, sizeof(*o));
	o->args = json_object_new_object();
	while ((c = getopt_long(argc, argv, "b:d:n:t:m:c:aVkrpjs:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'b':
			if (parse_size(optarg, &v))
				die(FERRY_EXIT_USAGE, "bad --bandwidth '%s': use bytes/s like 100M or 1G", optarg);
			json_object_object_add(o->args, "bandwidth", json_object_new_int64((int64_t)v));
			break;
		case 'd':
			if (parse_duration(optarg, NSEC_PER_MSEC, &v) || v > 3600 * NSEC_PER_SEC)
				die(FERRY_EXIT_USAGE, "bad --downtime '%s': use a time like 50ms", optarg);
			json_object_object_add(o->args, "downtime-ms",
					       json_object_new_int64((int64_t)(v / NSEC_PER_MSEC)));
			break;
		case 'n':
			if (parse_uint(optarg, UINT32_MAX, &v) || !v)
				die(FERRY_EXIT_USAGE, "bad --max-iterations '%s': use a count >= 1", optarg);
			json_object_object_add(o->args, "max-iterations", json_object_new_int64((int64_t)v));
			break;
		case 't':
			if (parse_duration(optarg, NSEC_PER_SEC, &v) || !v)
				die(FERRY_EXIT_USAGE, "bad --timeout '%s': use a time like 30s", optarg);
			json_object_object_add(o->args, "timeout-ms",
					       json_object_new_int64((int64_t)(v / NSEC_PER_MSEC)));
			break;
		case 'S':
			if (parse_duration(optarg, NSEC_PER_SEC, &v) || v < NSEC_PER_MSEC ||
			    v > 3600 * NSEC_PER_SEC)
				die(FERRY_EXIT_USAGE, "bad --switchover-timeout '%s': use a time like 2s "
				    "(1ms..1h)", optarg);
			json_object_object_add(o->args, "switchover-timeout-ms",
					       json_object_new_int64((int64_t)(v / NSEC_PER_MSEC)));
			break;
		case 'O':
			if (strcmp(optarg, "cancel") && strcmp(optarg, "force") && strcmp(optarg, "postcopy"))
				die(FERRY_EXIT_USAGE, "--on-timeout takes cancel, force or postcopy");
			json_object_object_add(o->args, "on-timeout", json_object_new_string(optarg));
			break;
		case 'm':
			if (strcmp(optarg, "precopy") && strcmp(optarg, "postcopy") && strcmp(optarg, "hybrid"))
				die(FERRY_EXIT_USAGE, "--mode takes precopy, postcopy or hybrid");
			json_object_object_add(o->args, "mode", json_object_new_string(optarg));
			break;
		case 'A':
			if (!strcmp(optarg, "auto"))
				v = 0;
			else if (parse_uint(optarg, 1000000, &v) || !v)
				die(FERRY_EXIT_USAGE, "bad --postcopy-after '%s': use a pass count >= 1 or auto",
				    optarg);
			json_object_object_add(o->args, "postcopy-after", json_object_new_int64((int64_t)v));
			break;
		case 'B':
			if (parse_size(optarg, &v))
				die(FERRY_EXIT_USAGE, "bad --postcopy-bandwidth '%s': use bytes/s like 100M", optarg);
			json_object_object_add(o->args, "postcopy-bandwidth", json_object_new_int64((int64_t)v));
			break;
		case 'P':
			if (parse_uint(optarg, 4096, &v))
				die(FERRY_EXIT_USAGE, "bad --prepage '%s': use 0 to 4096 pages", optarg);
			json_object_object_add(o->args, "prepage", json_object_new_int64((int64_t)v));
			break;
		case 'a': migrate_add_bool(o->args, "auto-converge"); break;
		case 'V': migrate_add_bool(o->args, "verify"); break;
		case 'c':
			if (mig_compress_parse(optarg) < 0)
				die(FERRY_EXIT_USAGE, "--compress takes none, lz4, zstd, delta or adaptive");
			json_object_object_add(o->args, "compress", json_object_new_string(optarg));
			break;
		case 'L':
			if (parse_uint(optarg, 19, &v) || !v)
				die(FERRY_EXIT_USAGE, "bad --compress-level '%s': use 1 to 19", optarg);
			json_object_object_add(o->args, "compress-level", json_object_new_int64((int64_t)v));
			break;
		case 'X':
			if (parse_size(optarg, &v) || v < 4096 || v > (64ULL << 30))
				die(FERRY_EXIT_USAGE, "bad --xbzrle-cache '%s': use a size like 64M "
				    "(4K..64G)", optarg);
			json_object_object_add(o->args, "xbzrle-cache", json_object_new_int64((int64_t)v));
			break;
		case OPT_NET_EPILOGUE:
			if (parse_duration(optarg, NSEC_PER_SEC, &v) || v > 10 * NSEC_PER_SEC)
				die(FERRY_EXIT_USAGE, "bad --net-epilogue '%s': use a time like 1s "
				    "(0..10s)", optarg);
			json_object_object_add(o->args, "net-epilogue-ms",
					       json_object_new_int64((int64_t)(v / NSEC_PER_MSEC)));
			break;
		case OPT_ORDER:
			if (mig_order_parse(optarg) < 0)
				die(FERRY_EXIT_USAGE, "--order takes address or rewrite");
			json_object_object_add(o->args, "order", json_object_new_string(optarg));
			break;
		case 'C':
			if (parse_uint(optarg, MIG_CHANNELS_MAX, &v) || !v)
				die(FERRY_EXIT_USAGE, "bad --channels '%s': use 1 to %u", optarg,
				    MIG_CHANNELS_MAX);
			json_object_object_add(o->args, "channels", json_object_new_int64((int64_t)v));
			break;
		case OPT_POSTCOPY_PREEMPT: migrate_add_bool(o->args, "postcopy-preempt"); break;
		case 'k': migrate_add_bool(o->args, "keep-source"); break;
		case 'K': {
			/* ferry run writes it, from its own working directory. */
			char cwd[PATH_MAX], file[PATH_MAX];
			if (optarg[0] == '/')
				snprintf(file, sizeof(file), "%s", optarg);
			else if (!getcwd(cwd, sizeof(cwd)) ||
				 snprintf(file, sizeof(file), "%s/%s", cwd, optarg) >= (int)sizeof(file))
				die(FERRY_EXIT_USAGE, "cannot make --keep-base %s an absolute path", optarg);
			json_object_object_add(o->args, "keep-base", json_object_new_string(file));
			break;
		}
		case 'G':
			if (!optarg || !strcmp(optarg, "full"))
				migrate_add_bool(o->args, "copy-storage");
			else if (!strcmp(optarg, "incremental"))
				json_object_object_add(o->args, "copy-storage",
						       json_object_new_string("incremental"));
			else
				die(FERRY_EXIT_USAGE, "--copy-storage takes full (the default) or incremental");
			break;
		case 'W':
			if (strcmp(optarg, "background") && strcmp(optarg, "write-blocking"))
				die(FERRY_EXIT_USAGE, "--copy-storage-mode takes background or write-blocking");
			json_object_object_add(o->args, "copy-storage-mode", json_object_new_string(optarg));
			break;
		case 'r': migrate_add_bool(o->args, "resume"); break;
		case 'R':
			if (parse_duration(optarg, NSEC_PER_SEC, &v) || !v)
				die(FERRY_EXIT_USAGE, "bad --resume-timeout '%s': use a time like 30s", optarg);
			json_object_object_add(o->args, "resume-timeout-ms",
					       json_object_new_int64((int64_t)(v / NSEC_PER_MSEC)));
			break;
		case 'p': o->progress = true; break;
		case 'j': o->json = true; break;
		case 's': o->stats_file = optarg; break;
		case 'T': {
			/* The VMM reads it, from its own working directory. */
			char *dir = realpath(optarg, NULL);
			if (!dir)
				die(FERRY_EXIT_USAGE, "bad --tls-creds '%s': %s", optarg, strerror(errno));
			json_object_object_add(o->args, "tls-creds", json_object_new_string(dir));
			free(dir);
			break;
		}
		case 'H':
			json_object_object_add(o->args, "tls-hostname", json_object_new_string(optarg));
			break;
		case 'h': fputs(migrate_usage, stdout); exit(0);
		default:
			fputs("Try 'ferry migrate --help'.\n", stderr);
			exit(FERRY_EXIT_USAGE);
		}
	}
	if (optind + 2 != argc)
		die(FERRY_EXIT_USAGE, "need CONTROL and URI (try 'ferry migrate --help')");
	o->control = argv[optind];
	o->uri = argv[optind + 1];
	json_object_object_add(o->args, "uri", json_object_new_string(o->uri));
}

static int64_t migrate_get_i64(json_object *o, const char *key)
{
	json_object *v;

	return json_object_object_get_ex(o, key, &v) ? json_object_get_int64(v) : 0;
}

static double migrate_get_double(json_object *o, const char *key)
{
	json_object *v;

	return json_object_object_get_ex(o, key, &v) ? json_object_get_double(v) : 0;
}

/* With --compress: encoded bytes as a share of the page bytes, so far ("" without). */
static void migrate_codec_share(json_object *q, char *buf, size_t len)
{
	json_object *codecs, *mode;
	int64_t in = 0, out = 0;

	buf[0] = '\0';
	if (!json_object_object_get_ex(q, "compress", &mode) ||
	    !strcmp(json_object_get_string(mode), "none") ||
	    !json_object_object_get_ex(q, "codecs", &codecs))
		return;
	json_object_object_foreach(codecs, name, k) {
		(void)name;
		if (json_object_is_type(k, json_type_object)) {
			in += migrate_get_i64(k, "bytes-in");
			out += migrate_get_i64(k, "bytes-out");
		}
	}
	if (in > 0)
		snprintf(buf, len, " | %s %.0f%%", json_object_get_string(mode),
			 100.0 * (double)out / (double)in);
}

static void migrate_print_progress(json_object *q)
{
	char rem[32], tp[32], dr[32], share[48];
	int64_t total = migrate_get_i64(q, "memory-total");
	int64_t done = migrate_get_i64(q, "memory-processed");
	double pct = total ? 100.0 * (double)done / (double)total : 0;
	json_object *st;

	json_object_object_get_ex(q, "status", &st);
	migrate_codec_share(q, share, sizeof(share));
	/* One line rewritten in place on a terminal, one line per update elsewhere. */
	fprintf(stderr, "%s%-8s pass %lld | %5.1f%% of RAM | %s/s | dirty %s/s | remaining %s | "
		"expected downtime %.1f ms%s   %s", isatty(STDERR_FILENO) ? "\r" : "",
		json_object_get_string(st), (long long)migrate_get_i64(q, "iteration"),
		pct > 999 ? 999 : pct,
		format_size((uint64_t)migrate_get_i64(q, "throughput-bytes-per-second"), tp, sizeof(tp)),
		format_size((uint64_t)migrate_get_i64(q, "dirty-pages-rate") * 4096, dr, sizeof(dr)),
		format_size((uint64_t)migrate_get_i64(q, "memory-remaining"), rem, sizeof(rem)),
		migrate_get_double(q, "expected-downtime-ms"), share, isatty(STDERR_FILENO) ? "" : "\n");
}

/* The codecs that encoded any page: pages, bytes in and out, time. */
static void migrate_print_codecs(json_object *d)
{
	json_object *codecs, *v;
	char in[32], out[32];

	if (!json_object_object_get_ex(d, "codecs", &codecs))
		return;
	if (json_object_object_get_ex(d, "compress", &v))
		printf("Compress:           %s (negotiated %s)\n", json_object_get_string(v),
		       json_object_object_get_ex(d, "codecs-negotiated", &v) ?
		       json_object_get_string(v) : "?");
	json_object_object_foreach(codecs, name, k) {
		if (!json_object_is_type(k, json_type_object) || !migrate_get_i64(k, "pages"))
			continue;
		printf("  %-17s %lld pages, %s -> %s, %.1f ms\n", name,
		       (long long)migrate_get_i64(k, "pages"),
		       format_size((uint64_t)migrate_get_i64(k, "bytes-in"), in, sizeof(in)),
		       format_size((uint64_t)migrate_get_i64(k, "bytes-out"), out, sizeof(out)),
		       (double)migrate_get_i64(k, "cpu-ns") / 1e6);
	}
	if (json_object_object_get_ex(codecs, "delta-cache", &v) && migrate_get_i64(v, "cache-hits") +
	    migrate_get_i64(v, "cache-misses") > 0)
		printf("  delta cache       %lld hits, %lld misses, %lld overflows\n",
		       (long long)migrate_get_i64(v, "cache-hits"),
		       (long long)migrate_get_i64(v, "cache-misses"),
		       (long long)migrate_get_i64(v, "cache-overflows"));
}

static void migrate_print_report(json_object *d, bool to_file)
{
	char b[32];
	json_object *st, *err, *ph;

	json_object_object_get_ex(d, "status", &st);
	printf("Migration:          %s\n", json_object_get_string(st));
	if (json_object_object_get_ex(d, "error", &err))
		printf("Error:              %s\n", json_object_get_string(err));
	printf("Time elapsed:       %.1f ms\n", migrate_get_double(d, "total-time-ms"));
	printf("Setup time:         %.1f ms\n", migrate_get_double(d, "setup-time-ms"));
	printf("Downtime:           %.2f ms\n", migrate_get_double(d, "downtime-ms"));
	if (json_object_object_get_ex(d, "downtime-phases-ms", &ph)) {
		json_object_object_foreach(ph, k, v)
			printf("  %-17s %.2f ms\n", k, json_object_get_double(v));
	}
	printf("Iterations:         %lld\n", (long long)migrate_get_i64(d, "iteration"));
	printf("Data processed:     %s\n", format_size((uint64_t)migrate_get_i64(d, "data-processed"), b, sizeof(b)));
	printf("Memory total:       %s\n", format_size((uint64_t)migrate_get_i64(d, "memory-total"), b, sizeof(b)));
	printf("Memory processed:   %s\n", format_size((uint64_t)migrate_get_i64(d, "memory-processed"), b, sizeof(b)));
	printf("Zero pages:         %lld\n", (long long)migrate_get_i64(d, "zero-pages"));
	printf("Normal pages:       %lld (%s)\n", (long long)migrate_get_i64(d, "normal-pages"),
	       format_size((uint64_t)migrate_get_i64(d, "normal-bytes"), b, sizeof(b)));
	printf("Pages re-sent:      %lld\n", (long long)migrate_get_i64(d, "pages-resent"));
	if (migrate_get_i64(d, "pages-deferred"))
		printf("Pages deferred:     %lld (passes ended before a hot tail)\n",
		       (long long)migrate_get_i64(d, "pages-deferred"));
	printf("Device state:       %s\n", format_size((uint64_t)migrate_get_i64(d, "device-state-bytes"), b, sizeof(b)));
	printf("Throughput:         %s/s\n", format_size((uint64_t)migrate_get_i64(d, "throughput-bytes-per-second"), b, sizeof(b)));
	migrate_print_codecs(d);
	json_object *pc;
	if (json_object_object_get_ex(d, "postcopy", &pc)) {
		printf("Post-copy:          %lld pages owed at the switch\n", (long long)migrate_get_i64(pc, "pages-owed"));
		printf("  requests          %lld (%lld pages sent for them, %lld pushed)\n",
		       (long long)migrate_get_i64(pc, "requests"), (long long)migrate_get_i64(pc, "pages-requested"),
		       (long long)migrate_get_i64(pc, "pages-pushed"));
		printf("  faults            %lld (%lld resolved at the destination)\n",
		       (long long)migrate_get_i64(pc, "faults"), (long long)migrate_get_i64(pc, "faults-resolved-locally"));
		printf("  fault latency     p50 %lld us, p99 %lld us\n",
		       (long long)migrate_get_i64(pc, "fault-latency-p50-us"), (long long)migrate_get_i64(pc, "fault-latency-p99-us"));
		printf("  vCPUs blocked     %.1f ms\n", migrate_get_double(pc, "vcpu-blocked-ms"));
		printf("  last page after   %.1f ms\n", migrate_get_double(pc, "last-page-ms"));
	}
	/* A file cannot answer: its restore is what compares the digest. */
	if (json_object_object_get_ex(d, "ram-digest", &err))
		printf("Verify:             RAM digest %s %s\n", json_object_get_string(err),
		       to_file ? "saved; the restore checks it" : "matches on both sides");
	if (json_object_object_get_ex(d, "state-digest", &err))
		printf("                    device state digest %s %s\n", json_object_get_string(err),
		       to_file ? "saved; the restore checks it" : "matches on both sides");
}

/* Poll progress until the MIGRATION event arrives; returns its data. */
static json_object *migrate_follow(struct control_conn *c, const struct migrate_opts *o)
{
	struct stats_csv csv = { 0 };
	bool cancelled = false;
	struct timespec t0, now;
	json_object *ev = NULL, *data = NULL;

	if (o->stats_file && !(csv.f = fopen(o->stats_file, "a")))
		pr_warn("cannot write %s: %s", o->stats_file, strerror(errno));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		int err = control_conn_wait_event(c, o->progress ? 250 : 1000, &ev);
		if (!err)
			break;
		if (err != -ETIMEDOUT && err != -EINTR) {
			pr_err("lost the control connection: %s", strerror(-err));
			break;
		}
		if (migrate_interrupted && !cancelled) {
			json_object *r = NULL;
			pr_info("cancelling the migration");
			if (!control_conn_call(c, "migrate-cancel", NULL, 5000, &r))
				json_object_put(r);
			cancelled = true;
		}
		json_object *reply = NULL, *q, *st;
		if (control_conn_call(c, "query-migrate", NULL, 5000, &reply))
			continue;
		if (json_object_object_get_ex(reply, "return", &q) &&
		    json_object_object_get_ex(q, "status", &st) &&
		    (!strcmp(json_object_get_string(st), "postcopy-paused") ||
		     !strcmp(json_object_get_string(st), "in-doubt"))) {
			/* Not the end: report it and leave the rest to --resume. */
			data = json_object_get(q);
			json_object_put(reply);
			break;
		}
		if (json_object_object_get_ex(reply, "return", &q)) {
			clock_gettime(CLOCK_MONOTONIC, &now);
			if (o->progress)
				migrate_print_progress(q);
			if (csv.f)
				stats_csv_write(&csv, q, (double)(now.tv_sec - t0.tv_sec) +
						(double)(now.tv_nsec - t0.tv_nsec) / 1e9);
		}
		json_object_put(reply);
	}
	if (o->progress && isatty(STDERR_FILENO))
		fputc('\n', stderr);
	if (!data && ev && json_object_object_get_ex(ev, "data", &data))
		json_object_get(data);
	/* The last row: how it ended, with the downtime and its phases measured. */
	if (csv.f && data) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		stats_csv_write(&csv, data, (double)(now.tv_sec - t0.tv_sec) +
				(double)(now.tv_nsec - t0.tv_nsec) / 1e9);
	}
	stats_csv_close(&csv);
	json_object_put(ev);
	return data;
}

int cli_migrate(int argc, char **argv)
{
	struct migrate_opts o;
	struct control_conn c;
	json_object *reply = NULL, *v, *final;
	struct sigaction sa = { .sa_handler = migrate_on_signal };
	int err, status = 1;

	migrate_parse(argc, argv, &o);
	err = control_conn_open(&c, o.control);
	if (err) {
		json_object_put(o.args);
		pr_err("cannot reach ferry at %s: %s (is 'ferry run --control %s' running?)",
		       o.control, strerror(-err), o.control);
		return FERRY_EXIT_UNAVAILABLE;
	}
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	err = control_conn_call(&c, "migrate", o.args, 10000, &reply);
	json_object_put(o.args);
	if (err || json_object_object_get_ex(reply, "error", &v)) {
		json_object *desc = NULL;
		if (!err)
			json_object_object_get_ex(v, "desc", &desc);
		pr_err("migrate failed: %s", desc ? json_object_get_string(desc) : strerror(-err));
		json_object_put(reply);
		control_conn_close(&c);
		return FERRY_EXIT_SOFTWARE;
	}
	json_object_put(reply);
	final = migrate_follow(&c, &o);
	control_conn_close(&c);
	if (!final) {
		pr_err("the source ended without reporting how the migration went");
		return 1;
	}
	if (o.json)
		printf("%s\n", json_object_to_json_string_ext(final, JSON_C_TO_STRING_PRETTY));
	else
		migrate_print_report(final, !strncmp(o.uri, "file:", 5));
	json_object_object_get_ex(final, "status", &v);
	status = strcmp(json_object_get_string(v), "completed") ? 1 : 0;
	if (!strcmp(json_object_get_string(v), "postcopy-paused")) {
		pr_err("post-copy paused: the connection broke; the guest waits at the destination. "
		       "Run 'ferry migrate %s URI --resume' once it listens again", o.control);
		status = 4;
	}
	if (!strcmp(json_object_get_string(v), "in-doubt")) {
		pr_err("the switchover is in doubt: GO was sent and the destination never confirmed. "
		       "Both sides stay paused. Find out which side runs the guest, then "
		       "'ferry migrate-resolve CONTROL run' there and "
		       "'ferry migrate-resolve CONTROL abandon' on the other");
		status = 5;
	}
	if (json_object_object_get_ex(final, "vm-lost", &v) && json_object_get_boolean(v))
		status = 3;	/* post-copy failed after the guest moved */
	json_object_put(final);
	return status;
}
