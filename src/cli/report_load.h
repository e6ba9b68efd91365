/*
 * ferry report's reader of a stats file (cli/stats_csv.h).  The file is
 * a user's input and treated as hostile: every line is bounded, every
 * column name checked, every value parsed as a number or set aside; no
 * string from it reaches gnuplot's script (report_plot.c).
 */
#ifndef FERRY_CLI_REPORT_LOAD_H
#define FERRY_CLI_REPORT_LOAD_H

#include <stdbool.h>
#include <stddef.h>

#define REPORT_MAX_LINE		65536		/* bytes in one line */
#define REPORT_MAX_COLS		1024
#define REPORT_MAX_CELLS	(16u << 20)	/* rows x columns of one migration */

/* One migration: the rows under one header, as numbers. */
struct report_run {
	unsigned ncols, nrows;
	char **names;			/* [ncols]: [A-Za-z0-9_.-]+ only */
	bool *text;			/* [ncols]: some value was not a number */
	unsigned *first_text_line;	/* [ncols]: where, for the error */
	double *v;			/* [nrows * ncols]; NAN: empty or not a number */
	char last_status[32];		/* the last row's status when ferry names it, else "" */
	unsigned runs;			/* headers in the file: migrations appended to it */
	unsigned index;			/* which of them this is, 1-based */
};

/*
 * Read migration `index` (1-based; 0: the last) of the stats file at
 * path.  Returns 0; -ENOENT/-EACCES/... when it cannot be opened (errno);
 * -EINVAL for a file that is not a stats file or is malformed, with the
 * reason (and line) in why; -E2BIG past the limits above; -ENOMEM.
 */
int report_load(const char *path, unsigned index, struct report_run *r, char *why, size_t whylen)
	__attribute__((warn_unused_result));
void report_run_free(struct report_run *r);

/* Column `name`'s index, or -1. */
int report_col(const struct report_run *r, const char *name);
/* Row i's value of column c (NAN when c < 0). */
double report_val(const struct report_run *r, unsigned i, int c);

#endif
