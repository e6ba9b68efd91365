#include "util/parse.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/*
 * Split "<number><unit>" into a finite non-negative number and its unit.
 * Only digits and one '.' are accepted: no sign, exponent, hex or spaces.
 */
static int parse_number_unit(const char *s, double *num, const char **unit)
{
	const char *p = s;
	double v = 0, scale = 0;
	int digits = 0;

	if (!s)
		return -EINVAL;
	for (; *p; p++) {
		if (isdigit((unsigned char)*p)) {
			if (scale) {
				v += (*p - '0') * scale;
				scale /= 10;
			} else {
				v = v * 10 + (*p - '0');
			}
			digits++;
		} else if (*p == '.' && !scale) {
			scale = 0.1;
		} else {
			break;
		}
	}
	if (!digits || !isfinite(v))
		return -EINVAL;
	*num = v;
	*unit = p;
	return 0;
}

static int scale_to_u64(double v, double mult, uint64_t *out)
{
	double r = v * mult;

	if (r >= 18446744073709551615.0)
		return -ERANGE;
	*out = (uint64_t)(r + 0.5);
	return 0;
}

int parse_size(const char *s, uint64_t *out)
{
	static const struct { const char *sfx; double mult; } units[] = {
		{ "", 1 }, { "b", 1 },
		{ "k", 1024.0 }, { "kb", 1024.0 }, { "kib", 1024.0 },
		{ "m", 1048576.0 }, { "mb", 1048576.0 }, { "mib", 1048576.0 },
		{ "g", 1073741824.0 }, { "gb", 1073741824.0 }, { "gib", 1073741824.0 },
		{ "t", 1099511627776.0 }, { "tb", 1099511627776.0 }, { "tib", 1099511627776.0 },
	};
	const char *unit;
	double v;

	if (parse_number_unit(s, &v, &unit))
		return -EINVAL;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (!strcasecmp(unit, units[i].sfx)) {
			/* A fractional count of bytes means nothing. */
			if (units[i].mult == 1 && v != floor(v))
				return -EINVAL;
			return scale_to_u64(v, units[i].mult, out);
		}
	}
	return -EINVAL;
}

int parse_duration(const char *s, uint64_t default_unit_ns, uint64_t *out_ns)
{
	static const struct { const char *sfx; double mult; } units[] = {
		{ "ns", 1 }, { "us", 1e3 }, { "ms", 1e6 }, { "s", 1e9 },
		{ "m", 60e9 }, { "min", 60e9 }, { "h", 3600e9 },
	};
	const char *unit;
	double v;

	if (parse_number_unit(s, &v, &unit))
		return -EINVAL;
	if (!*unit)
		return scale_to_u64(v, (double)default_unit_ns, out_ns);
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (!strcmp(unit, units[i].sfx))
			return scale_to_u64(v, units[i].mult, out_ns);
	return -EINVAL;
}

int parse_uint(const char *s, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;

	if (!s || !*s)
		return -EINVAL;
	for (const char *p = s; *p; p++) {
		if (!isdigit((unsigned char)*p))
			return -EINVAL;
		if (v > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
			return -ERANGE;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	if (v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

const char *format_size(uint64_t bytes, char *buf, unsigned len)
{
	static const char *const sfx[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)bytes;
	unsigned i = 0;

	while (v >= 1024 && i < 4) {
		v /= 1024;
		i++;
	}
	if (i == 0)
		snprintf(buf, len, "%llu B", (unsigned long long)bytes);
	else
		snprintf(buf, len, "%.1f %s", v, sfx[i]);
	return buf;
}

int parse_kv_list(const char *spec, int (*fn)(const char *key, const char *val, void *opaque,
					      char *why, size_t whylen),
		  void *opaque, char *why, size_t whylen)
{
	char *copy = strdup(spec), *save = NULL;
	int err = 0;

	if (!copy)
		return -ENOMEM;
	for (char *tok = strtok_r(copy, ",", &save); tok && !err; tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '=');
		if (!eq) {
			snprintf(why, whylen, "'%s' is not KEY=VALUE", tok);
			err = -EINVAL;
			break;
		}
		*eq = '\0';
		err = fn(tok, eq + 1, opaque, why, whylen);
	}
	free(copy);
	return err;
}
