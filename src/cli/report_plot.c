/*
 * ferry report --png.  Every value reaches gnuplot through data files in
 * a private directory that gnuplot runs in, under fixed names; the script
 * is built from our own words and numbers only.  Names taken from the
 * file's header (codecs, channels, phases: [A-Za-z0-9_.-], report_load.c)
 * go into the data files, where gnuplot reads them as titles and tic
 * labels, never as commands.
 */
#include "cli/report_plot.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "migration/stats.h"

#define MIB		1048576.0
#define REPORT_MAX_SERIES	16	/* codecs or channels drawn */
#define GNUPLOT_TIMEOUT_S	60

static const char *const report_files[] = {
	"ts.dat", "codecs.dat", "channels.dat", "phases.dat", "plot.gp", "gnuplot.err", "out.png",
};

int report_family(const struct report_run *r, const char *prefix, const char *suffix, int i,
		  char *name, size_t len)
{
	size_t pl = strlen(prefix), sl = strlen(suffix);

	for (unsigned c = 0; c < r->ncols; c++) {
		const char *n = r->names[c];
		size_t nl = strlen(n);
		if (nl <= pl + sl || strncmp(n, prefix, pl) || strcmp(n + nl - sl, suffix))
			continue;
		if (i-- > 0)
			continue;
		snprintf(name, len, "%.*s", (int)(nl - pl - sl), n + pl);
		return (int)c;
	}
	return -1;
}

static void report_put(FILE *f, double v)
{
	if (isfinite(v))
		fprintf(f, " %.6g", v);
	else
		fputs(" NaN", f);
}

/* Per-second rate of a counter column between rows i-1 and i (NAN for row 0). */
static double report_rate(const struct report_run *r, unsigned i, int c, int tc)
{
	if (!i)
		return NAN;
	double dt = report_val(r, i, tc) - report_val(r, i - 1, tc);
	double dv = report_val(r, i, c) - report_val(r, i - 1, c);
	return dt > 0 && dv >= 0 ? dv / dt : NAN;
}

/* Has column c any value but 0?  A codec that never encoded a page is not drawn. */
static bool report_nonzero(const struct report_run *r, int c)
{
	for (unsigned i = 0; c >= 0 && i < r->nrows; i++)
		if (isfinite(report_val(r, i, c)) && report_val(r, i, c) != 0)
			return true;
	return false;
}

/* ts.dat's columns, from 0 (gnuplot counts from 1). */
enum report_ts {
	TS_TIME,		/* s */
	TS_THROUGHPUT,		/* MiB/s */
	TS_CAP,			/* MiB/s */
	TS_DIRTY,		/* MiB/s */
	TS_REMAINING,		/* MiB */
	TS_PASS,
	TS_WIRE,		/* MiB sent so far */
	TS_EXPECTED,		/* expected downtime, ms */
	TS_DISK_REMAINING,	/* MiB, with --copy-storage */
	TS_NR,
};

/*
 * ts.dat, one line a row; the columns the file lacks are NaN.  Returns
 * a mask of the columns (bit = enum report_ts) that have any value.
 */
static unsigned report_write_ts(const struct report_run *r, FILE *f, double cap_arg)
{
	int tc = report_col(r, "time-s"), thr = report_col(r, "throughput-bytes-per-second");
	int cap = report_col(r, "bandwidth-limit"), dirty = report_col(r, "dirty-pages-rate");
	int rem = report_col(r, "memory-remaining"), it = report_col(r, "iteration");
	int wire = report_col(r, "data-processed"), exp = report_col(r, "expected-downtime-ms");
	int disk = report_col(r, "disk-remaining");
	unsigned mask = 0;

	for (unsigned i = 0; i < r->nrows; i++) {
		double c = report_val(r, i, cap);
		double v[TS_NR] = {
			report_val(r, i, tc), report_val(r, i, thr) / MIB,
			(isfinite(c) && c > 0 ? c : cap_arg > 0 ? cap_arg : NAN) / MIB,
			report_val(r, i, dirty) * 4096 / MIB, report_val(r, i, rem) / MIB,
			report_val(r, i, it), report_val(r, i, wire) / MIB, report_val(r, i, exp),
			report_val(r, i, disk) / MIB,
		};
		for (int k = 0; k < TS_NR; k++) {
			report_put(f, v[k]);
			if (isfinite(v[k]))
				mask |= 1u << k;
		}
		fputc('\n', f);
	}
	return mask;
}

/*
 * A family of counters (codec-NAME-pages, channel-NAME-bytes) as rates
 * per second, in MiB/s (scale: bytes per count), stacked when `stack`:
 * column k+2 is the sum of the first k+1; titled label + NAME.  Returns how many.
 */
static int report_write_family(const struct report_run *r, FILE *f, const char *prefix,
			       const char *suffix, const char *label, double scale, bool stack)
{
	int cols[REPORT_MAX_SERIES], n = 0, tc = report_col(r, "time-s");
	char name[128];

	fputs("time", f);
	for (int i = 0; n < REPORT_MAX_SERIES; i++) {
		int c = report_family(r, prefix, suffix, i, name, sizeof(name));
		if (c < 0)
			break;
		if (!report_nonzero(r, c))
			continue;
		cols[n++] = c;
		fprintf(f, " \"%s%s\"", label, name);
	}
	fputc('\n', f);
	for (unsigned i = 1; n && i < r->nrows; i++) {
		double sum = 0;
		report_put(f, report_val(r, i, tc));
		for (int k = 0; k < n; k++) {
			double v = report_rate(r, i, cols[k], tc) * scale / MIB;
			sum += isfinite(v) ? v : 0;
			report_put(f, stack ? sum : v);
		}
		fputc('\n', f);
	}
	return n;
}

/* phases.dat: "NAME" ms, the last row's downtime-NAME-ms.  Returns how many. */
static int report_write_phases(const struct report_run *r, FILE *f)
{
	char name[128];
	int n = 0, c;

	for (int i = 0; (c = report_family(r, "downtime-", "-ms", i, name, sizeof(name))) >= 0; i++) {
		double v = report_val(r, r->nrows - 1, c);
		if (!isfinite(v))
			continue;
		fprintf(f, "\"%s\" %.3f\n", name, v);
		n++;
	}
	return n;
}

/* Title and placeholder for a panel that has nothing to draw. */
static void report_empty_panel(FILE *g, const char *title)
{
	fprintf(g, "set title '%s'\nset label 1 'not in this stats file' at graph 0.5,0.5 center\n"
		"plot [0:1] [0:1] 2 notitle\nunset label 1\n", title);
}

static const char *report_palette[] = {
	"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
};

/* A stacked family, drawn from the top down so each band shows. */
static void report_stack_panel(FILE *g, const char *title, const char *file, int n, bool stack)
{
	if (!n) {
		report_empty_panel(g, title);
		return;
	}
	fprintf(g, "set title '%s'\nset ylabel 'MiB/s'\nplot ", title);
	for (int k = n - 1; k >= 0; k--)
		fprintf(g, stack ? "'%s' using 1:%d with filledcurves x1 fs solid 0.7 lc rgb '%s' "
			"title columnheader(%d)%s" : "'%s' using 1:%d with lines lw 2 lc rgb '%s' "
			"title columnheader(%d)%s", file, k + 2,
			report_palette[k % 8], k + 2, k ? ", " : "\n");
}

static double report_last(const struct report_run *r, const char *col)
{
	for (unsigned i = r->nrows; i-- > 0;) {
		double v = report_val(r, i, report_col(r, col));
		if (isfinite(v))
			return v;
	}
	return NAN;
}

#define TS(col)		(1u << (col))

/* The throughput panel: the rate on the wire, the cap, the dirty rate (MiB/s). */
static void report_panel_rates(FILE *g, unsigned ts)
{
	const char *sep = "";

	if (!(ts & (TS(TS_THROUGHPUT) | TS(TS_DIRTY)))) {
		report_empty_panel(g, "throughput against the cap, and the dirty rate");
		return;
	}
	fputs("set title 'throughput against the cap, and the dirty rate'\nset ylabel 'MiB/s'\nplot ", g);
	if (ts & TS(TS_THROUGHPUT))
		fprintf(g, "%s'ts.dat' using 1:%d with lines lw 2 lc rgb '#1f77b4' title 'throughput'",
			sep, TS_THROUGHPUT + 1), sep = ", ";
	if (ts & TS(TS_CAP))
		fprintf(g, "%s'ts.dat' using 1:%d with lines dt 2 lw 2 lc rgb '#000000' title 'cap'",
			sep, TS_CAP + 1), sep = ", ";
	if (ts & TS(TS_DIRTY))
		fprintf(g, "%s'ts.dat' using 1:%d with lines lw 2 lc rgb '#d62728' title 'dirty rate'",
			sep, TS_DIRTY + 1);
	fputc('\n', g);
}

/* RAM still to send (MiB) with the pass on the right axis. */
static void report_panel_remaining(const struct report_run *r, FILE *g, unsigned ts)
{
	double passes = report_last(r, "iteration");

	if (!(ts & TS(TS_REMAINING))) {
		report_empty_panel(g, "still to send, and the pass");
		return;
	}
	fputs("set title 'still to send, and the pass'\nset ylabel 'MiB'\nset ytics nomirror\n", g);
	if (ts & TS(TS_PASS) && isfinite(passes) && passes >= 0)
		fprintf(g, "set y2label 'pass'\nset y2range [0:%.0f]\nset y2tics %s\n", passes + 1,
			passes <= 20 ? "1" : "");
	fprintf(g, "plot 'ts.dat' using 1:%d with lines lw 2 lc rgb '#2ca02c' title 'RAM remaining'",
		TS_REMAINING + 1);
	if (ts & TS(TS_DISK_REMAINING))
		fprintf(g, ", 'ts.dat' using 1:%d with lines lw 2 lc rgb '#17becf' title 'disks remaining'",
			TS_DISK_REMAINING + 1);
	if (ts & TS(TS_PASS))
		fprintf(g, ", 'ts.dat' using 1:%d axes x1y2 with steps lc rgb '#7f7f7f' title 'pass'",
			TS_PASS + 1);
	fputs("\nunset y2tics\nunset y2label\nset ytics mirror\n", g);
}

/* The downtime as one bar per phase, the last row's values. */
static void report_panel_phases(FILE *g, int nphases, double downtime)
{
	if (!nphases) {
		report_empty_panel(g, "downtime by phase");
		return;
	}
	fputs("set title 'downtime", g);
	if (isfinite(downtime))
		fprintf(g, " %.2f ms,", downtime);
	fprintf(g, " by phase'\nset ylabel 'ms'\nunset xlabel\n"
		"set style fill solid 0.8 border -1\nset boxwidth 0.7\nset xtics rotate by -30\n"
		"set yrange [0:*]\nset xrange [-0.6:%.1f]\n"
		"plot 'phases.dat' using 0:2:xtic(1) with boxes lc rgb '#ff7f0e' notitle, "
		"'' using 0:2:(sprintf('%%.2f', $2)) with labels offset 0,0.8 notitle\n", nphases - 0.4);
}

/* The script's start: terminal, common settings, the title. */
static void report_prologue(const struct report_run *r, FILE *g)
{
	double dt = report_last(r, "downtime-ms"), tt = report_last(r, "total-time-ms");
	double passes = report_last(r, "iteration");
	double t0 = report_val(r, 0, 0), t1 = report_val(r, r->nrows - 1, 0);

	fputs("if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {\n"
	      "  set terminal pngcairo size 1600,1000 noenhanced font ',10'\n"
	      "} else {\n  set terminal png size 1600,1000 noenhanced\n}\n"
	      "set output 'out.png'\nset datafile missing 'NaN'\n"
	      "set grid\nset key top right opaque\nset xlabel 'seconds'\nset yrange [0:*]\n"
	      "set tmargin 4\nset offsets 0,0,graph 0.15,0\n", g);
	/* Every time panel over the same seconds. */
	fprintf(g, "set xrange [%.3f:%.3f]\n", t0, t1 > t0 ? t1 : t0 + 1);
	fprintf(g, "set multiplot layout 2,3 title 'ferry migration %u of %u: %s", r->index, r->runs,
		r->last_status[0] ? r->last_status : "status unknown");
	if (isfinite(tt))
		fprintf(g, ", %.1f s", tt / 1000);
	if (isfinite(passes))
		fprintf(g, ", %.0f passes", passes);
	if (isfinite(dt))
		fprintf(g, ", downtime %.2f ms", dt);
	fputs("'\n", g);
}

/* The script; every string in it is ours, every number formatted here. */
static void report_script(const struct report_run *r, FILE *g, unsigned ts, int ncodecs,
			  int nchannels, int nphases)
{
	report_prologue(r, g);
	report_panel_rates(g, ts);
	report_panel_remaining(r, g, ts);
	report_stack_panel(g, "codec mix: guest pages encoded per second, by codec", "codecs.dat",
			   ncodecs, true);
	if (nchannels)
		report_stack_panel(g, "channels: bytes per second on each", "channels.dat",
				   nchannels, false);
	else if (ts & TS(TS_WIRE))
		fprintf(g, "set title 'sent on the wire so far'\nset ylabel 'MiB'\nplot 'ts.dat' "
			"using 1:%d with lines lw 2 lc rgb '#9467bd' title 'data processed'\n", TS_WIRE + 1);
	else
		report_empty_panel(g, "channels");
	if (ts & TS(TS_EXPECTED))
		fprintf(g, "set title 'expected downtime at each decision'\nset ylabel 'ms'\nplot 'ts.dat' "
			"using 1:%d with lines lw 2 lc rgb '#8c564b' title 'expected downtime'\n",
			TS_EXPECTED + 1);
	else
		report_empty_panel(g, "expected downtime at each decision");
	report_panel_phases(g, nphases, report_last(r, "downtime-ms"));
	fputs("unset multiplot\n", g);
}

/* Is there an executable gnuplot on PATH? */
static bool report_have_gnuplot(void)
{
	const char *path = getenv("PATH");
	char buf[4096];

	while (path && *path) {
		size_t n = strcspn(path, ":");
		if (n && n < sizeof(buf) - 10) {
			snprintf(buf, sizeof(buf), "%.*s/gnuplot", (int)n, path);
			if (!access(buf, X_OK))
				return true;
		}
		path += n + (path[n] == ':');
	}
	return false;
}

/* Run gnuplot plot.gp in dir.  0, or -ECHILD with its first error line in why. */
static int report_run_gnuplot(int dirfd, char *why, size_t wl)
{
	int status;
	pid_t pid = fork();

	if (pid < 0)
		return -errno;
	if (!pid) {
		int err = openat(dirfd, "gnuplot.err", O_WRONLY | O_CREAT | O_TRUNC, 0600);
		int null = open("/dev/null", O_RDWR);
		if (fchdir(dirfd) || err < 0 || null < 0)
			_exit(126);
		dup2(null, STDIN_FILENO);
		dup2(null, STDOUT_FILENO);
		dup2(err, STDERR_FILENO);
		alarm(GNUPLOT_TIMEOUT_S);
		execlp("gnuplot", "gnuplot", "plot.gp", (char *)NULL);
		_exit(127);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -errno;
	if (WIFEXITED(status) && !WEXITSTATUS(status))
		return 0;
	char line[200] = "";
	int fd = openat(dirfd, "gnuplot.err", O_RDONLY);
	if (fd >= 0) {
		ssize_t n = read(fd, line, sizeof(line) - 1);
		line[n > 0 ? n : 0] = '\0';
		close(fd);
	}
	for (char *p = line; *p; p++)
		if (*p == '\n' || (unsigned char)*p < ' ' || (unsigned char)*p > '~')
			*p = ' ';
	snprintf(why, wl, "gnuplot %s %d: %s", WIFEXITED(status) ? "exited" : "was killed by signal",
		 WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), line);
	return -ECHILD;
}

/* Copy dir/out.png to path.  0, or -EIO with why. */
static int report_copy_png(int dirfd, const char *path, char *why, size_t wl)
{
	static const unsigned char magic[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };
	unsigned char buf[65536];
	int in = openat(dirfd, "out.png", O_RDONLY), out = -1, err = 0;
	ssize_t n;
	bool first = true;

	if (in < 0) {
		snprintf(why, wl, "gnuplot wrote no image");
		return -ECHILD;
	}
	while ((n = read(in, buf, sizeof(buf))) > 0) {
		if (first && (n < 8 || memcmp(buf, magic, 8))) {
			snprintf(why, wl, "gnuplot's output is not a PNG");
			err = -ECHILD;
			break;
		}
		if (first && (out = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0) {
			snprintf(why, wl, "cannot write %s: %s", path, strerror(errno));
			err = -EIO;
			break;
		}
		first = false;
		if (write(out, buf, (size_t)n) != n) {
			snprintf(why, wl, "cannot write %s: %s", path, strerror(errno));
			err = -EIO;
			break;
		}
	}
	if (!err && first) {
		snprintf(why, wl, "gnuplot wrote an empty image");
		err = -ECHILD;
	}
	if (out >= 0 && close(out) && !err) {
		snprintf(why, wl, "cannot write %s: %s", path, strerror(errno));
		err = -EIO;
	}
	close(in);
	return err;
}

/* Write the data files and the script into dir.  0 or -errno. */
static int report_write_all(const struct report_run *r, int dirfd, double cap)
{
	FILE *f[5];
	int err = 0;

	for (int i = 0; i < 5; i++) {
		int fd = openat(dirfd, report_files[i], O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		f[i] = fd >= 0 ? fdopen(fd, "w") : NULL;
		if (!f[i]) {
			err = -errno;
			if (fd >= 0)
				close(fd);
			while (i-- > 0)
				fclose(f[i]);
			return err;
		}
	}
	unsigned ts = report_write_ts(r, f[0], cap);
	int nc = report_write_family(r, f[1], "codec-", "-pages", "", 4096, true);
	int nch = report_write_family(r, f[2], "channel-", "-bytes", "channel ", 1, false);
	int np = report_write_phases(r, f[3]);
	report_script(r, f[4], ts, nc, nch, np);
	for (int i = 0; i < 5; i++)
		if (fclose(f[i]) && !err)
			err = -EIO;
	return err;
}

int report_plot(const struct report_run *r, const char *path, double cap, char *why, size_t wl)
{
	const char *tmp = getenv("TMPDIR");
	char dir[4096];
	int dirfd, err;

	if (!report_have_gnuplot())
		return -ENOENT;
	snprintf(dir, sizeof(dir), "%s/ferry-report.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(dir)) {
		err = -errno;
		snprintf(why, wl, "cannot make a temporary directory: %s", strerror(errno));
		return err;
	}
	dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0) {
		err = -errno;
		snprintf(why, wl, "cannot open the temporary directory: %s", strerror(errno));
		rmdir(dir);
		return err;
	}
	err = report_write_all(r, dirfd, cap);
	if (err)
		snprintf(why, wl, "cannot write gnuplot's input: %s", strerror(-err));
	else
		err = report_run_gnuplot(dirfd, why, wl);
	if (!err)
		err = report_copy_png(dirfd, path, why, wl);
	for (size_t i = 0; i < sizeof(report_files) / sizeof(report_files[0]); i++)
		unlinkat(dirfd, report_files[i], 0);
	close(dirfd);
	rmdir(dir);
	return err;
}
