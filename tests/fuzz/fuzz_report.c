/*
 * libFuzzer target: arbitrary bytes as the stats file `ferry report`
 * reads (src/cli/report_load.c), a user's file and so hostile input.
 * See tests/fuzz/README.md.
 *
 * Invariants checked besides the sanitizers: a file that loads has rows,
 * columns, a header starting with time-s, names of [A-Za-z0-9_.-] only,
 * finite non-negative times; one that does not says why.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cli/report_load.h"
#include "cli/report_plot.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fz_check(const struct report_run *r)
{
	char name[128];

	if (!r->nrows || !r->ncols || strcmp(r->names[0], "time-s") || !r->index ||
	    r->index > r->runs)
		abort();
	for (unsigned c = 0; c < r->ncols; c++)
		if (strspn(r->names[c], "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
			   "0123456789_.-") != strlen(r->names[c]))
			abort();
	for (unsigned i = 0; i < r->nrows; i++)
		if (!isfinite(report_val(r, i, 0)) || report_val(r, i, 0) < 0)
			abort();
	for (int i = 0; report_family(r, "codec-", "-pages", i, name, sizeof(name)) >= 0; i++)
		if (!name[0])
			abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const unsigned indexes[] = { 0, 1, 2 };
	char path[64], why[256];
	int fd = memfd_create("fuzz_report", MFD_CLOEXEC);

	if (fd < 0 || write(fd, data, size) != (ssize_t)size)
		abort();
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	for (size_t k = 0; k < sizeof(indexes) / sizeof(indexes[0]); k++) {
		struct report_run r;
		why[0] = '\0';
		int err = report_load(path, indexes[k], &r, why, sizeof(why));
		if (!err)
			fz_check(&r);
		else if (!why[0] || (err != -EINVAL && err != -E2BIG && err != -ENOMEM))
			abort();
		report_run_free(&r);
	}
	close(fd);
	return 0;
}
