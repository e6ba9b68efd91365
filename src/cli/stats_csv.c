/* The per-second stats file: writer (ferry migrate) and its header (ferry report). */
#include "cli/stats_csv.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "board/machine.h"
#include "control/cmd_net.h"
#include "migration/stats.h"

/* Add one scalar under its column name. */
static void stats_csv_add(json_object *flat, const char *name, json_object *v)
{
	json_object_object_add(flat, name, json_object_get(v));
}

/*
 * query-migrate flattened to column -> scalar: top-level scalars as they
 * are, downtime-phases-ms as downtime-NAME-ms, codecs as codec-NAME-KEY
 * (codec-KEY for the scalars among them), channels as their count
 * (`channels`) and channel-N-bytes.  Other objects and arrays are left out.
 */
static json_object *stats_csv_flatten(json_object *q)
{
	json_object *flat = json_object_new_object(), *ph = NULL, *codecs = NULL, *chans = NULL;
	char name[160];

	json_object_object_foreach(q, k, v)
		if (!json_object_is_type(v, json_type_object) &&
		    !json_object_is_type(v, json_type_array))
			stats_csv_add(flat, k, v);
	if (json_object_object_get_ex(q, "downtime-phases-ms", &ph)) {
		json_object_object_foreach(ph, pk, pv) {
			snprintf(name, sizeof(name), "downtime-%s-ms", pk);
			stats_csv_add(flat, name, pv);
		}
	}
	if (json_object_object_get_ex(q, "codecs", &codecs)) {
		json_object_object_foreach(codecs, ck, cv) {
			if (!json_object_is_type(cv, json_type_object)) {
				snprintf(name, sizeof(name), "codec-%s", ck);
				stats_csv_add(flat, name, cv);
				continue;
			}
			json_object_object_foreach(cv, kk, kv) {
				snprintf(name, sizeof(name), "codec-%s-%s", ck, kk);
				stats_csv_add(flat, name, kv);
			}
		}
	}
	if (json_object_object_get_ex(q, "channels", &chans) &&
	    json_object_is_type(chans, json_type_array)) {
		size_t n = json_object_array_length(chans);
		json_object *count = json_object_new_int64((int64_t)n), *bytes;
		stats_csv_add(flat, "channels", count);
		json_object_put(count);
		for (size_t i = 0; i < n; i++) {
			json_object *c = json_object_array_get_idx(chans, i);
			if (!json_object_object_get_ex(c, "bytes", &bytes))
				continue;
			snprintf(name, sizeof(name), "channel-%zu-bytes", i);
			stats_csv_add(flat, name, bytes);
		}
	}
	return flat;
}

/* One field, quoted (RFC 4180) when it holds a comma, a quote or a line break. */
static void stats_csv_field(FILE *f, const char *s)
{
	fputc(',', f);
	if (!strpbrk(s, ",\"\r\n")) {
		fputs(s, f);
		return;
	}
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"')
			fputc('"', f);
		fputc(*s, f);
	}
	fputc('"', f);
}

void stats_csv_write(struct stats_csv *c, json_object *q, double t)
{
	json_object *flat = stats_csv_flatten(q), *v;

	if (!c->columns) {
		c->columns = json_object_new_array();
		fputs("time-s", c->f);
		json_object_object_foreach(flat, k, fv) {
			(void)fv;
			json_object_array_add(c->columns, json_object_new_string(k));
			fprintf(c->f, ",%s", k);
		}
		fputc('\n', c->f);
	}
	fprintf(c->f, "%.3f", t);
	for (size_t i = 0; i < json_object_array_length(c->columns); i++) {
		const char *k = json_object_get_string(json_object_array_get_idx(c->columns, i));
		stats_csv_field(c->f, json_object_object_get_ex(flat, k, &v) ?
				json_object_get_string(v) : "");
	}
	fputc('\n', c->f);
	fflush(c->f);
	json_object_put(flat);
}

void stats_csv_close(struct stats_csv *c)
{
	if (c->f)
		fclose(c->f);
	json_object_put(c->columns);
	c->f = NULL;
	c->columns = NULL;
}

void stats_csv_print_columns(FILE *f)
{
	/* A running migration's reply, as cmd_query_migrate builds it (no NICs). */
	struct mig_stats st = { .status = MIG_STATUS_ACTIVE };
	struct machine *m = calloc(1, sizeof(*m));
	json_object *q = mig_stats_to_json(&st, 0), *flat;

	if (m)
		control_net_totals(m, q);
	free(m);
	flat = stats_csv_flatten(q);
	fputs("time-s", f);
	json_object_object_foreach(flat, k, v) {
		(void)v;
		fprintf(f, ",%s", k);
	}
	fputc('\n', f);
	json_object_put(flat);
	json_object_put(q);
}
