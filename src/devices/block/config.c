/* --disk: KEY=VALUE pairs into a struct block_config (backend.h). */
#include "devices/block/backend.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/parse.h"

static int block_config_onoff(const char *val, bool *on)
{
	if (!strcmp(val, "on"))
		*on = true;
	else if (!strcmp(val, "off"))
		*on = false;
	else
		return -EINVAL;
	return 0;
}

/* path= or nbd=: the one place the disk is; the kind follows from the key. */
static int block_config_where(const char *key, const char *val, struct block_config *c,
			      char *why, size_t whylen)
{
	if (c->path[0]) {
		snprintf(why, whylen, "give one of path= and nbd=, once");
		return -EINVAL;
	}
	if (!*val || strlen(val) >= sizeof(c->path)) {
		snprintf(why, whylen, "bad %s '%s'", key, val);
		return -EINVAL;
	}
	/* libnbd takes other URIs too (TLS, vsock, ssh): only what is documented. */
	if (!strcmp(key, "nbd") && strncmp(val, "nbd://", 6) && strncmp(val, "nbd+unix://", 11)) {
		snprintf(why, whylen, "bad nbd '%s': use nbd://HOST[:PORT]/EXPORT or "
			 "nbd+unix:///EXPORT?socket=PATH", val);
		return -EINVAL;
	}
	c->kind = !strcmp(key, "nbd") ? BLOCK_KIND_NBD : BLOCK_KIND_FILE;
	strcpy(c->path, val);
	return 0;
}

static int block_config_value(const char *key, const char *val, struct block_config *c,
			      char *why, size_t whylen)
{
	bool on;

	if (!strcmp(key, "path") || !strcmp(key, "nbd"))
		return block_config_where(key, val, c, why, whylen);
	if (!strcmp(key, "readonly")) {
		if (block_config_onoff(val, &c->readonly))
			goto bad;
	} else if (!strcmp(key, "locking")) {
		if (block_config_onoff(val, &on))
			goto bad;
		c->nolock = !on;
	} else if (!strcmp(key, "cache")) {
		if (!strcmp(val, "none"))
			c->cache = BLOCK_CACHE_NONE;
		else if (!strcmp(val, "writeback"))
			c->cache = BLOCK_CACHE_WRITEBACK;
		else
			goto bad;
	} else if (!strcmp(key, "serial")) {
		if (strlen(val) > BLOCK_SERIAL_MAX)
			goto bad;
		for (const char *p = val; *p; p++)
			if (*p < 0x20 || *p > 0x7e)
				goto bad;
		strcpy(c->serial, val);
	} else {
		snprintf(why, whylen, "unknown key '%s' (path, nbd, readonly, cache, locking, serial)",
			 key);
		return -EINVAL;
	}
	return 0;
bad:
	snprintf(why, whylen, "bad %s '%s'%s", key, val,
		 !strcmp(key, "serial") ? ": up to 20 printable characters" :
		 !strcmp(key, "cache") ? ": none or writeback" : ": on or off");
	return -EINVAL;
}

/* Which keys came, for the checks across keys. */
struct block_config_walk {
	struct block_config *c;
	bool cache_set, lock_set;
};

static int block_config_pair(const char *key, const char *val, void *opaque, char *why,
			     size_t whylen)
{
	struct block_config_walk *w = opaque;

	w->cache_set |= !strcmp(key, "cache");
	w->lock_set |= !strcmp(key, "locking");
	return block_config_value(key, val, w->c, why, whylen);
}

int block_config_parse(const char *spec, struct block_config *c, char *why, size_t whylen)
{
	struct block_config_walk w = { .c = c };
	int err;

	memset(c, 0, sizeof(*c));
	err = parse_kv_list(spec, block_config_pair, &w, why, whylen);
	if (!err && !c->path[0]) {
		snprintf(why, whylen, "path=FILE or nbd=URI is missing");
		err = -EINVAL;
	}
	/* The server caches and locks (or not) for an NBD export: see docs/devices.md. */
	if (!err && c->kind == BLOCK_KIND_NBD && (w.cache_set || w.lock_set)) {
		snprintf(why, whylen, "%s applies to path= only", w.cache_set ? "cache" : "locking");
		err = -EINVAL;
	}
	return err;
}
