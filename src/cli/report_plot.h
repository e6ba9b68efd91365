/* ferry report --png: one migration's stats file drawn by gnuplot. */
#ifndef FERRY_CLI_REPORT_PLOT_H
#define FERRY_CLI_REPORT_PLOT_H

#include <stddef.h>

#include "cli/report_load.h"

/*
 * Draw r into the PNG at path.  cap: the bandwidth cap in bytes/s to
 * draw when the file has no bandwidth-limit column (0: none).  The data
 * goes to gnuplot through data files in a private directory; the script
 * holds only our own words and numbers.  Returns 0; -ENOENT when gnuplot
 * is not installed; -ECHILD when it failed (its first error in why);
 * -EIO when path cannot be written (why); other -errno.
 */
int report_plot(const struct report_run *r, const char *path, double cap, char *why, size_t wl)
	__attribute__((warn_unused_result));

/*
 * The columns codec-NAME-pages, channel-NAME-bytes, downtime-NAME-ms:
 * the column index of the i-th such (from 0), or -1 past the last; its
 * NAME (at most 127 bytes) into name.
 */
int report_family(const struct report_run *r, const char *prefix, const char *suffix, int i,
		  char *name, size_t len);

#endif
