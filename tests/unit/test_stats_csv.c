/* The stats file: what ferry migrate writes, ferry report reads back the same. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/report_load.h"
#include "cli/stats_csv.h"

static json_object *reply(const char *status, int64_t iteration)
{
	json_object *q = json_object_new_object(), *ph = json_object_new_object();
	json_object *codecs = json_object_new_object(), *zero = json_object_new_object();

	json_object_object_add(q, "status", json_object_new_string(status));
	json_object_object_add(q, "iteration", json_object_new_int64(iteration));
	json_object_object_add(q, "codecs-negotiated", json_object_new_string("zero,raw,lz4"));
	json_object_object_add(ph, "pause", json_object_new_double(0.5));
	json_object_object_add(q, "downtime-phases-ms", ph);
	json_object_object_add(zero, "pages", json_object_new_int64(iteration * 10));
	json_object_object_add(codecs, "zero", zero);
	json_object_object_add(codecs, "adaptive-gave-up", json_object_new_int64(3));
	json_object_object_add(q, "codecs", codecs);
	return q;
}

static void test_roundtrip(void **state)
{
	char path[] = "/tmp/test_stats_csv.XXXXXX", why[256] = "";
	int fd = mkstemp(path);
	struct stats_csv c = { 0 };
	struct report_run r;

	assert_true(fd >= 0);
	c.f = fdopen(fd, "w");
	json_object *q = reply("active", 1);
	stats_csv_write(&c, q, 0);
	json_object_put(q);
	/* A key the header does not have (with a comma and a quote), and one gone. */
	q = reply("failed", 2);
	json_object_object_add(q, "error", json_object_new_string("said \"no\", twice"));
	json_object_object_del(q, "iteration");
	stats_csv_write(&c, q, 1.5);
	json_object_put(q);
	stats_csv_close(&c);

	assert_int_equal(report_load(path, 0, &r, why, sizeof(why)), 0);
	assert_int_equal(r.nrows, 2);
	assert_int_equal(r.ncols, 7);
	assert_string_equal(r.names[4], "downtime-pause-ms");
	assert_string_equal(r.names[5], "codec-zero-pages");
	assert_string_equal(r.names[6], "codec-adaptive-gave-up");
	assert_int_equal(report_col(&r, "error"), -1);
	assert_true(report_val(&r, 0, report_col(&r, "iteration")) == 1);
	assert_true(isnan(report_val(&r, 1, report_col(&r, "iteration"))));
	assert_true(report_val(&r, 1, report_col(&r, "codec-zero-pages")) == 20);
	assert_true(report_val(&r, 1, 0) == 1.5);
	assert_true(r.text[report_col(&r, "codecs-negotiated")]);
	assert_string_equal(r.last_status, "failed");
	report_run_free(&r);
	unlink(path);
}

/* A quoted field that hides a line's worth of commas and quotes. */
static void test_quotes(void **state)
{
	char path[] = "/tmp/test_stats_csv.XXXXXX", why[256] = "";
	int fd = mkstemp(path);
	struct report_run r;
	FILE *f;

	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	fputs("time-s,compress,iteration\n0,\"a,\"\"b\"\",c\",4\n", f);
	fclose(f);
	assert_int_equal(report_load(path, 0, &r, why, sizeof(why)), 0);
	assert_int_equal(r.ncols, 3);
	assert_true(report_val(&r, 0, 2) == 4);
	report_run_free(&r);

	f = fopen(path, "w");
	fputs("time-s,compress\n0,\"a\"b\n", f);
	fclose(f);
	assert_int_equal(report_load(path, 0, &r, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "line 2"));
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_quotes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
