/*
 * The per-second stats file of `ferry migrate --stats-file` (docs/api.md,
 * "The stats file"): one CSV row of every scalar of query-migrate, the
 * downtime phases as downtime-NAME-ms and the codecs as codec-NAME-KEY.
 * `ferry report` reads it back.
 */
#ifndef FERRY_CLI_STATS_CSV_H
#define FERRY_CLI_STATS_CSV_H

#include <json-c/json.h>
#include <stdio.h>

/*
 * One migration's rows.  The first row fixes the columns (and writes the
 * header); later rows write those columns only, empty where a key is
 * missing, so a key that appears later (error, ram-digest) cannot shift
 * the columns.  Values with a comma, quote or line break are quoted.
 */
struct stats_csv {
	FILE *f;
	json_object *columns;		/* array of the header's names; NULL before the first row */
};

/* Append one row of query-migrate reply q at t seconds; writes the header first. */
void stats_csv_write(struct stats_csv *c, json_object *q, double t);
void stats_csv_close(struct stats_csv *c);

/* The header a migration's file starts with (ferry report --columns). */
void stats_csv_print_columns(FILE *f);

#endif
