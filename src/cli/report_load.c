/* Reading a stats file back for ferry report: hostile input, bounded. */
#include "cli/report_load.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migration/stats.h"

static void report_why(char *why, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void report_why(char *why, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, len, fmt, ap);
	va_end(ap);
}

void report_run_free(struct report_run *r)
{
	for (unsigned i = 0; r->names && i < r->ncols; i++)
		free(r->names[i]);
	free(r->names);
	free(r->text);
	free(r->first_text_line);
	free(r->v);
	memset(r, 0, sizeof(*r));
}

/*
 * Split line (no line break) into at most max fields in place, RFC 4180
 * quoting.  Returns the field count, or -1 for a quote left open or
 * text after a closing quote, or more than max fields.
 */
static int report_split(char *line, char **f, int max)
{
	int n = 0;
	char *p = line;

	for (;;) {
		if (n == max)
			return -1;
		if (*p != '"') {
			f[n++] = p;
			p += strcspn(p, ",");
		} else {
			char *w = ++p;
			f[n++] = w;
			for (;;) {
				if (!*p)
					return -1;
				if (*p == '"' && p[1] != '"')
					break;
				if (*p == '"')
					p++;
				*w++ = *p++;
			}
			p++;
			*w = '\0';
			if (*p && *p != ',')
				return -1;
		}
		if (!*p)
			return n;
		*p++ = '\0';
	}
}

static bool report_name_ok(const char *s)
{
	return *s && strlen(s) < 128 && strspn(s, "abcdefghijklmnopqrstuvwxyz"
					 "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") == strlen(s);
}

/* A value: a finite number, true/false as 1/0, empty as NAN; else -1. */
static int report_number(const char *s, double *out)
{
	char *end;

	*out = NAN;
	if (!*s)
		return 0;
	if (!strcmp(s, "true") || !strcmp(s, "false")) {
		*out = !strcmp(s, "true");
		return 0;
	}
	errno = 0;
	double d = strtod(s, &end);
	if (*end || errno || !isfinite(d) || strspn(s, "0123456789.-+eE") != strlen(s))
		return -1;
	*out = d;
	return 0;
}

/* Start a migration at its header line.  0, -EINVAL (why), -ENOMEM. */
static int report_header(struct report_run *r, char **f, int n, unsigned line, char *why,
			 size_t wl)
{
	report_run_free(r);
	if (n < 1 || strcmp(f[0], "time-s")) {
		report_why(why, wl, "line %u: a header must start with time-s", line);
		return -EINVAL;
	}
	r->names = calloc((size_t)n, sizeof(*r->names));
	r->text = calloc((size_t)n, sizeof(*r->text));
	r->first_text_line = calloc((size_t)n, sizeof(*r->first_text_line));
	if (!r->names || !r->text || !r->first_text_line)
		return -ENOMEM;
	r->ncols = (unsigned)n;
	for (int i = 0; i < n; i++) {
		if (!report_name_ok(f[i])) {
			report_why(why, wl, "line %u: column %d of the header is not a column name",
				   line, i + 1);
			return -EINVAL;
		}
		for (int j = 0; j < i; j++)
			if (!strcmp(f[i], f[j])) {
				report_why(why, wl, "line %u: column %s appears twice", line, f[i]);
				return -EINVAL;
			}
		if (!(r->names[i] = strdup(f[i])))
			return -ENOMEM;
	}
	return 0;
}

/* Append one data row.  0, -EINVAL (why), -E2BIG, -ENOMEM. */
static int report_row(struct report_run *r, char **f, int n, unsigned line, unsigned *cap,
		      char *why, size_t wl)
{
	if ((unsigned)n != r->ncols) {
		report_why(why, wl, "line %u has %d fields; its header has %u", line, n, r->ncols);
		return -EINVAL;
	}
	if ((size_t)(r->nrows + 1) * r->ncols > REPORT_MAX_CELLS) {
		report_why(why, wl, "more than %u values in one migration", REPORT_MAX_CELLS);
		return -E2BIG;
	}
	if (r->nrows == *cap) {
		unsigned ncap = *cap ? *cap * 2 : 64;
		double *v = realloc(r->v, (size_t)ncap * r->ncols * sizeof(*v));
		if (!v)
			return -ENOMEM;
		r->v = v;
		*cap = ncap;
	}
	double *row = r->v + (size_t)r->nrows * r->ncols;
	for (int i = 0; i < n; i++) {
		if (!report_number(f[i], &row[i]))
			continue;
		if (!r->text[i])
			r->first_text_line[i] = line;
		r->text[i] = true;
	}
	if (isnan(row[0]) || row[0] < 0) {
		report_why(why, wl, "line %u: time-s is not a time", line);
		return -EINVAL;
	}
	r->last_status[0] = '\0';
	int st = report_col(r, "status");
	for (int s = MIG_STATUS_NONE; st >= 0 && s <= MIG_STATUS_ABANDONED; s++)
		if (!strcmp(f[st], mig_status_name(s)))
			snprintf(r->last_status, sizeof(r->last_status), "%s", f[st]);
	r->nrows++;
	return 0;
}

/* Read lines until the end; 0 or a negative errno with why. */
static int report_read(FILE *fp, unsigned index, struct report_run *r, char *why, size_t wl)
{
	static char buf[REPORT_MAX_LINE + 2];
	static char *f[REPORT_MAX_COLS];
	unsigned line = 0, cap = 0, headers = 0;
	bool want = false;
	int err;

	while (fgets(buf, sizeof(buf), fp)) {
		size_t len = strlen(buf);
		line++;
		if (len && buf[len - 1] == '\n') {
			buf[--len] = '\0';
		} else if (!feof(fp)) {
			/* fgets stopped short of a full buffer: a NUL byte ended the string. */
			report_why(why, wl, len < sizeof(buf) - 1 ? "line %u holds a NUL byte: a binary file?"
				   : "line %u is too long", line);
			return -EINVAL;
		}
		if (len && buf[len - 1] == '\r')
			buf[--len] = '\0';
		if (!len)
			continue;
		int n = report_split(buf, f, REPORT_MAX_COLS);
		if (n < 0) {
			report_why(why, wl, "line %u: an unclosed quote or more than %u fields", line,
				   REPORT_MAX_COLS);
			return -EINVAL;
		}
		if (!strcmp(f[0], "time-s")) {
			headers++;
			want = !index || headers == index;
			if (want) {
				cap = 0;
				if ((err = report_header(r, f, n, line, why, wl)))
					return err;
			}
			continue;
		}
		if (!headers) {
			report_why(why, wl, "line %u: no header (time-s,status,...) before it: "
				   "not a stats file of 'ferry migrate --stats-file'", line);
			return -EINVAL;
		}
		if (want && (err = report_row(r, f, n, line, &cap, why, wl)))
			return err;
	}
	if (ferror(fp)) {
		report_why(why, wl, "read error after line %u", line);
		return -EIO;
	}
	r->runs = headers;
	r->index = index ? index : headers;
	if (!headers) {
		report_why(why, wl, "empty file: not a stats file of 'ferry migrate --stats-file'");
		return -EINVAL;
	}
	if (index > headers) {
		report_why(why, wl, "the file holds %u migration%s, not %u", headers,
			   headers == 1 ? "" : "s", index);
		return -EINVAL;
	}
	if (!r->nrows) {
		report_why(why, wl, "migration %u has a header but no rows", r->index);
		return -EINVAL;
	}
	return 0;
}

int report_load(const char *path, unsigned index, struct report_run *r, char *why, size_t whylen)
{
	FILE *fp = fopen(path, "r");
	int err;

	memset(r, 0, sizeof(*r));
	if (!fp) {
		err = -errno;
		report_why(why, whylen, "%s", strerror(errno));
		return err;
	}
	err = report_read(fp, index, r, why, whylen);
	fclose(fp);
	if (err) {
		unsigned runs = r->runs;
		report_run_free(r);
		r->runs = runs;
	}
	return err;
}

int report_col(const struct report_run *r, const char *name)
{
	for (unsigned i = 0; i < r->ncols; i++)
		if (!strcmp(r->names[i], name))
			return (int)i;
	return -1;
}

double report_val(const struct report_run *r, unsigned i, int c)
{
	return c < 0 || i >= r->nrows ? NAN : r->v[(size_t)i * r->ncols + (unsigned)c];
}
