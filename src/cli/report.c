/* ferry report STATS.csv: one migration from its stats file, as text or a PNG. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/report_load.h"
#include "cli/report_plot.h"
#include "cli/stats_csv.h"
#include "util/log.h"
#include "util/parse.h"

static const char report_usage[] =
"Usage: ferry report STATS.csv [--png FILE] [--text] [options]\n"
"\n"
"Show one migration from the file 'ferry migrate --stats-file' wrote: a\n"
"short summary on stdout (the default), and with --png a chart of it\n"
"drawn by gnuplot: throughput against the bandwidth cap and the dirty\n"
"rate, RAM (and disks) still to send with the passes, the codec mix over\n"
"time, the channels (or the bytes sent), the expected downtime, and the\n"
"downtime by phase.\n"
"\n"
"Options:\n"
"  -o, --png FILE        write the chart to FILE (needs gnuplot)\n"
"  -t, --text            print the summary too (the default without --png)\n"
"  -m, --migration N     the Nth migration appended to the file (default: the last)\n"
"  -b, --bandwidth RATE  the cap to draw when the file has no bandwidth-limit\n"
"                        column (files of older ferry): 100M, 1G bytes/s\n"
"  -h, --help            show this help\n"
"\n"
"Exit status: 0 done, 64 usage, 65 the file is not a stats file or is\n"
"malformed, 66 it cannot be read, 69 gnuplot is not installed, 70 gnuplot\n"
"failed, 73 the PNG cannot be written.\n";

struct report_opts {
	const char *stats, *png;
	bool text, columns;
	unsigned index;
	double cap;
};

static void report_parse(int argc, char **argv, struct report_opts *o)
{
	static const struct option longopts[] = {
		{ "png", required_argument, NULL, 'o' },
		{ "text", no_argument, NULL, 't' },
		{ "migration", required_argument, NULL, 'm' },
		{ "bandwidth", required_argument, NULL, 'b' },
		{ "columns", no_argument, NULL, 'C' },	/* the header ferry writes (tests) */
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t v;
	int c;

	memset(o, 0, sizeof(*o));
	while ((c = getopt_long(argc, argv, "o:tm:b:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'o': o->png = optarg; break;
		case 't': o->text = true; break;
		case 'C': o->columns = true; break;
		case 'm':
			if (parse_uint(optarg, 1000000, &v) || !v)
				die(FERRY_EXIT_USAGE, "bad --migration '%s': use a number >= 1", optarg);
			o->index = (unsigned)v;
			break;
		case 'b':
			if (parse_size(optarg, &v))
				die(FERRY_EXIT_USAGE, "bad --bandwidth '%s': use bytes/s like 100M or 1G", optarg);
			o->cap = (double)v;
			break;
		case 'h': fputs(report_usage, stdout); exit(0);
		default:
			fputs("Try 'ferry report --help'.\n", stderr);
			exit(FERRY_EXIT_USAGE);
		}
	}
	if (o->columns && optind == argc)
		return;
	if (optind + 1 != argc)
		die(FERRY_EXIT_USAGE, "need one STATS.csv (try 'ferry report --help')");
	o->stats = argv[optind];
	if (!o->png)
		o->text = true;
}

static double report_last(const struct report_run *r, const char *col)
{
	int c = report_col(r, col);

	for (unsigned i = r->nrows; c >= 0 && i-- > 0;)
		if (isfinite(report_val(r, i, c)))
			return report_val(r, i, c);
	return NAN;
}

static double report_max(const struct report_run *r, const char *col)
{
	int c = report_col(r, col);
	double m = NAN;

	for (unsigned i = 0; c >= 0 && i < r->nrows; i++)
		if (isfinite(report_val(r, i, c)) && !(report_val(r, i, c) <= m))
			m = report_val(r, i, c);
	return m;
}

/* A size for humans, or "?" when the file does not say. */
static const char *report_size(double v, char *buf, unsigned len)
{
	if (!isfinite(v) || v < 0)
		return "?";
	if (v >= 0x1p63) {		/* no cast: past uint64_t it is undefined */
		snprintf(buf, len, "%.3g B", v);
		return buf;
	}
	return format_size((uint64_t)v, buf, len);
}

/* A number with prec decimals, or "?" when the file does not say. */
static const char *report_num(double v, int prec, char *buf, size_t len)
{
	if (!isfinite(v))
		return "?";
	snprintf(buf, len, "%.*f", prec, v);
	return buf;
}

/* The codecs' share of the pages, from the last row. */
static void report_print_codecs(const struct report_run *r)
{
	char name[128], col[192], in[32], out[32];
	double total = 0, bin = 0, bout = 0;
	int c;

	for (int i = 0; (c = report_family(r, "codec-", "-pages", i, name, sizeof(name))) >= 0; i++)
		if (isfinite(report_last(r, r->names[c])))
			total += report_last(r, r->names[c]);
	if (!(total > 0))
		return;
	printf("Codec mix:          ");
	for (int i = 0; (c = report_family(r, "codec-", "-pages", i, name, sizeof(name))) >= 0; i++) {
		double p = report_last(r, r->names[c]);
		if (!(p > 0))
			continue;
		printf("%s %.1f%% ", name, 100 * p / total);
		snprintf(col, sizeof(col), "codec-%s-bytes-in", name);
		bin += isfinite(report_last(r, col)) ? report_last(r, col) : 0;
		snprintf(col, sizeof(col), "codec-%s-bytes-out", name);
		bout += isfinite(report_last(r, col)) ? report_last(r, col) : 0;
	}
	printf("of %.0f pages\n", total);
	if (bin > 0)
		printf("  encoded           %s -> %s (%.1f%%)\n", report_size(bin, in, sizeof(in)),
		       report_size(bout, out, sizeof(out)), 100 * bout / bin);
}

static void report_print(const struct report_run *r)
{
	char a[32], b[32], n[64], name[128];
	double tt = report_last(r, "total-time-ms"), wire = report_last(r, "data-processed");
	double cap = report_last(r, "bandwidth-limit");
	int c;

	printf("Migration:          %u of %u in the file, %s, %u rows over %.1f s\n", r->index,
	       r->runs, r->last_status[0] ? r->last_status : "status unknown", r->nrows,
	       report_val(r, r->nrows - 1, 0));
	printf("Total time:         %s ms\n", report_num(tt, 1, n, sizeof(n)));
	printf("Passes:             %s\n", report_num(report_max(r, "iteration"), 0, n, sizeof(n)));
	printf("Data on the wire:   %s\n", report_size(wire, a, sizeof(a)));
	printf("Memory:             %s, %s processed, %s pages re-sent\n",
	       report_size(report_last(r, "memory-total"), a, sizeof(a)),
	       report_size(report_last(r, "memory-processed"), b, sizeof(b)),
	       report_num(report_last(r, "pages-resent"), 0, n, sizeof(n)));
	if (report_col(r, "disk-total") >= 0)
		printf("Disks:              %s, %s processed\n",
		       report_size(report_last(r, "disk-total"), a, sizeof(a)),
		       report_size(report_last(r, "disk-processed"), b, sizeof(b)));
	printf("Throughput:         mean %s/s, peak %s/s",
	       report_size(tt > 0 ? wire / tt * 1000 : NAN, a, sizeof(a)),
	       report_size(report_max(r, "throughput-bytes-per-second"), b, sizeof(b)));
	if (cap > 0)
		printf(", cap %s/s", report_size(cap, a, sizeof(a)));
	printf("\nDirty rate:         peak %s/s\n",
	       report_size(report_max(r, "dirty-pages-rate") * 4096, a, sizeof(a)));
	printf("Downtime:           %s ms\n", report_num(report_last(r, "downtime-ms"), 2, n, sizeof(n)));
	for (int i = 0; (c = report_family(r, "downtime-", "-ms", i, name, sizeof(name))) >= 0; i++)
		printf("  %-17s %s ms\n", name, report_num(report_last(r, r->names[c]), 2, n, sizeof(n)));
	report_print_codecs(r);
}

/* Does the summary or the chart read column `name` as numbers? */
static bool report_reads(const char *name)
{
	static const char *const read[] = {
		"time-s", "total-time-ms", "data-processed", "memory-total", "memory-processed",
		"memory-remaining", "pages-resent", "throughput-bytes-per-second", "dirty-pages-rate",
		"iteration", "expected-downtime-ms", "downtime-ms", "bandwidth-limit", "disk-total",
		"disk-processed", "disk-remaining",
	};
	static const char *const family[][2] = {
		{ "codec-", "-pages" }, { "codec-", "-bytes-in" }, { "codec-", "-bytes-out" },
		{ "downtime-", "-ms" }, { "channel-", "-bytes" },
	};
	size_t len = strlen(name);

	for (size_t k = 0; k < sizeof(read) / sizeof(read[0]); k++)
		if (!strcmp(name, read[k]))
			return true;
	for (size_t k = 0; k < sizeof(family) / sizeof(family[0]); k++) {
		size_t pl = strlen(family[k][0]), sl = strlen(family[k][1]);
		if (len > pl + sl && !strncmp(name, family[k][0], pl) &&
		    !strcmp(name + len - sl, family[k][1]))
			return true;
	}
	return false;
}

/*
 * A column the report reads that held something else than a number: the
 * file is damaged.  Text in other columns (status, compress, a key a later
 * ferry adds) is no concern of the report's.
 */
static int report_check_numbers(const struct report_run *r, char *why, size_t wl)
{
	for (unsigned c = 0; c < r->ncols; c++) {
		if (r->text[c] && report_reads(r->names[c])) {
			snprintf(why, wl, "line %u: column %s holds something that is not a number",
				 r->first_text_line[c], r->names[c]);
			return -EINVAL;
		}
	}
	return 0;
}

int cli_report(int argc, char **argv)
{
	struct report_opts o;
	struct report_run r;
	char why[256] = "";
	int err;

	report_parse(argc, argv, &o);
	if (o.columns) {
		stats_csv_print_columns(stdout);
		return FERRY_EXIT_OK;
	}
	err = report_load(o.stats, o.index, &r, why, sizeof(why));
	if (!err)
		err = report_check_numbers(&r, why, sizeof(why));
	if (err) {
		pr_err("%s: %s", o.stats, why);
		report_run_free(&r);
		return err == -EINVAL || err == -E2BIG ? FERRY_EXIT_DATAERR :
		       err == -ENOMEM ? FERRY_EXIT_OSERR : err == -EIO ? FERRY_EXIT_IOERR :
		       FERRY_EXIT_NOINPUT;
	}
	if (o.text)
		report_print(&r);
	if (o.png) {
		err = report_plot(&r, o.png, o.cap, why, sizeof(why));
		if (err == -ENOENT)
			pr_err("gnuplot is not installed, so no chart (scripts/deps.sh installs "
			       "gnuplot-nox); 'ferry report %s' prints the summary without it", o.stats);
		else if (err)
			pr_err("%s", why);
	}
	report_run_free(&r);
	return !err ? FERRY_EXIT_OK : err == -ENOENT ? FERRY_EXIT_UNAVAILABLE :
	       err == -EIO ? FERRY_EXIT_CANTCREAT : FERRY_EXIT_SOFTWARE;
}
