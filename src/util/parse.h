/* Parsing of user-supplied sizes and durations. */
#ifndef FERRY_UTIL_PARSE_H
#define FERRY_UTIL_PARSE_H

#include <stddef.h>
#include <stdint.h>

/*
 * Parse a byte size such as "4096", "512M", "1G", "64k", "2GiB", "1.5G".
 * Suffixes are binary (K = 1024).  Returns 0 and stores the value, or
 * -EINVAL for malformed input, -ERANGE for values that overflow 64 bits.
 */
int parse_size(const char *s, uint64_t *out) __attribute__((warn_unused_result));

/*
 * Parse a duration such as "50ms", "2s", "1.5s", "300us", "10m", "1h" into
 * nanoseconds.  A bare number is taken in `default_unit_ns` units.
 * Returns 0, -EINVAL or -ERANGE as parse_size().
 */
int parse_duration(const char *s, uint64_t default_unit_ns, uint64_t *out_ns)
	__attribute__((warn_unused_result));

/* Parse a non-negative decimal integer no larger than max.  0, -EINVAL or -ERANGE. */
int parse_uint(const char *s, uint64_t max, uint64_t *out) __attribute__((warn_unused_result));

/*
 * Walk a "KEY=VALUE,KEY=VALUE" option string (--disk, --net), calling fn
 * for each pair until it fails.  Returns 0, -ENOMEM, -EINVAL with a
 * message in why for a token without '=', or what fn returned.
 */
int parse_kv_list(const char *spec, int (*fn)(const char *key, const char *val, void *opaque,
					      char *why, size_t whylen),
		  void *opaque, char *why, size_t whylen) __attribute__((warn_unused_result));

/* Format a byte count for humans ("1.5 GiB") into buf; returns buf. */
const char *format_size(uint64_t bytes, char *buf, unsigned len);

#define NSEC_PER_USEC 1000ULL
#define NSEC_PER_MSEC 1000000ULL
#define NSEC_PER_SEC  1000000000ULL

#endif
