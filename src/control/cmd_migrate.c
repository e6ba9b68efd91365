#include "control/cmd_migrate.h"

#include <errno.h>
#include <string.h>

#include "control/cmd_net.h"
#include "control/control.h"
#include "migration/block.h"
#include "migration/migration.h"

const struct control_arg cmd_migrate_args[] = {
	{ "uri", CONTROL_ARG_STRING, true },
	{ "bandwidth", CONTROL_ARG_UINT, false },
	{ "postcopy-bandwidth", CONTROL_ARG_UINT, false },
	{ "downtime-ms", CONTROL_ARG_UINT, false },
	{ "max-iterations", CONTROL_ARG_UINT, false },
	{ "timeout-ms", CONTROL_ARG_UINT, false },
	{ "resume-timeout-ms", CONTROL_ARG_UINT, false },
	{ "switchover-timeout-ms", CONTROL_ARG_UINT, false },
	{ "net-epilogue-ms", CONTROL_ARG_UINT, false },
	{ "postcopy-after", CONTROL_ARG_UINT, false },
	{ "prepage", CONTROL_ARG_UINT, false },
	{ "auto-converge", CONTROL_ARG_BOOL, false },
	{ "verify", CONTROL_ARG_BOOL, false },
	{ "keep-source", CONTROL_ARG_BOOL, false },
	{ "keep-base", CONTROL_ARG_STRING, false },
	{ "resume", CONTROL_ARG_BOOL, false },
	{ "on-timeout", CONTROL_ARG_STRING, false },
	{ "mode", CONTROL_ARG_STRING, false },
	{ "compress", CONTROL_ARG_STRING, false },
	{ "compress-level", CONTROL_ARG_UINT, false },
	{ "xbzrle-cache", CONTROL_ARG_UINT, false },
	{ "order", CONTROL_ARG_STRING, false },
	{ "channels", CONTROL_ARG_UINT, false },
	{ "postcopy-preempt", CONTROL_ARG_BOOL, false },
	{ "copy-storage", CONTROL_ARG_BOOL_OR_STRING, false },
	{ "copy-storage-mode", CONTROL_ARG_STRING, false },
	{ "tls-creds", CONTROL_ARG_STRING, false },
	{ "tls-hostname", CONTROL_ARG_STRING, false },
	{ NULL },
};

const struct control_arg cmd_migrate_set_parameters_args[] = {
	{ "bandwidth", CONTROL_ARG_UINT, false },
	{ "downtime-ms", CONTROL_ARG_UINT, false },
	{ NULL },
};

const struct control_arg cmd_migrate_resolve_args[] = {
	{ "action", CONTROL_ARG_STRING, true },
	{ NULL },
};

int mig_arg_u64(json_object *args, const char *key, uint64_t *out, json_object **ret)
{
	json_object *v;

	if (!args || !json_object_object_get_ex(args, key, &v))
		return 0;
	if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0)
		return control_fail(ret, -EINVAL, "'%s' must be a non-negative integer", key);
	*out = (uint64_t)json_object_get_int64(v);
	return 0;
}

static int mig_arg_bool(json_object *args, const char *key, bool *out, json_object **ret)
{
	json_object *v;

	if (!args || !json_object_object_get_ex(args, key, &v))
		return 0;
	if (!json_object_is_type(v, json_type_boolean))
		return control_fail(ret, -EINVAL, "'%s' must be true or false", key);
	*out = json_object_get_boolean(v);
	return 0;
}

/* Optional string argument into out (len bytes with its NUL); -EINVAL if bad. */
static int mig_arg_str(json_object *args, const char *key, char *out, size_t len,
		       json_object **ret)
{
	json_object *v;

	if (!args || !json_object_object_get_ex(args, key, &v))
		return 0;
	if (!json_object_is_type(v, json_type_string) || !json_object_get_string_len(v) ||
	    (size_t)json_object_get_string_len(v) >= len)
		return control_fail(ret, -EINVAL, "'%s' must be a string of 1 to %zu bytes", key,
				    len - 1);
	strcpy(out, json_object_get_string(v));
	return 0;
}

/*
 * tls-creds (a directory the VMM reads, so best absolute) and
 * tls-hostname: checked now, so that a bad directory is the caller's
 * error and not the migration thread's.
 */
static int mig_parse_tls(json_object *args, struct mig_tls *t, json_object **ret)
{
	char why[300];
	int err;

	err = mig_arg_str(args, "tls-creds", t->dir, sizeof(t->dir), ret);
	err = err ?: mig_arg_str(args, "tls-hostname", t->hostname, sizeof(t->hostname), ret);
	if (err)
		return err;
	if (t->hostname[0] && !t->dir[0])
		return control_fail(ret, -EINVAL, "'tls-hostname' needs 'tls-creds'");
	if (t->dir[0] && mig_tls_check(t, false, why, sizeof(why)))
		return control_fail(ret, -EINVAL, "%s", why);
	return 0;
}

int cmd_migrate_parse(json_object *args, struct mig_params *p, json_object **ret)
{
	uint64_t downtime_ms = MIG_DEFAULT_DOWNTIME_NS / 1000000, timeout_ms = 0, iters = 0;
	json_object *v;
	int err = 0;

	memset(p, 0, sizeof(*p));
	if (!args || !json_object_object_get_ex(args, "uri", &v) ||
	    !json_object_is_type(v, json_type_string) ||
	    strlen(json_object_get_string(v)) >= sizeof(p->uri))
		return control_fail(ret, -EINVAL, "'uri' (tcp:HOST:PORT, unix:PATH or file:PATH) is "
				    "required");
	strcpy(p->uri, json_object_get_string(v));
	/* A bad URI is the caller's mistake: say so now, not from the thread. */
	struct mig_uri u;
	char why[256];
	if (mig_channel_parse(p->uri, &u, why, sizeof(why)))
		return control_fail(ret, -EINVAL, "%s", why);
	err = err ?: mig_arg_u64(args, "bandwidth", &p->bandwidth, ret);
	err = err ?: mig_arg_u64(args, "postcopy-bandwidth", &p->postcopy_bandwidth, ret);
	err = err ?: mig_arg_u64(args, "downtime-ms", &downtime_ms, ret);
	err = err ?: mig_arg_u64(args, "max-iterations", &iters, ret);
	err = err ?: mig_arg_u64(args, "timeout-ms", &timeout_ms, ret);
	err = err ?: mig_arg_bool(args, "auto-converge", &p->auto_converge, ret);
	err = err ?: mig_arg_bool(args, "verify", &p->verify, ret);
	err = err ?: mig_arg_bool(args, "keep-source", &p->keep_source, ret);
	err = err ?: mig_arg_str(args, "keep-base", p->keep_base, sizeof(p->keep_base), ret);
	err = err ?: mig_parse_tls(args, &p->tls, ret);
	if (err)
		return err;
	/* copy-storage: true (every block), "full" (the same) or "incremental". */
	if (json_object_object_get_ex(args, "copy-storage", &v)) {
		const char *str = json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
		if (json_object_is_type(v, json_type_boolean))
			p->copy_storage = json_object_get_boolean(v);
		else if (str && !strcmp(str, "full"))
			p->copy_storage = true;
		else if (str && !strcmp(str, "incremental"))
			p->copy_storage = p->copy_incremental = true;
		else
			return control_fail(ret, -EINVAL, "'copy-storage' must be true, false, \"full\" or "
					    "\"incremental\"");
	}
	/* copy-storage-mode: background (the default) or write-blocking (block.c). */
	if (json_object_object_get_ex(args, "copy-storage-mode", &v)) {
		const char *str = json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
		if (str && !strcmp(str, "write-blocking"))
			p->copy_blocking = true;
		else if (!str || strcmp(str, "background"))
			return control_fail(ret, -EINVAL, "'copy-storage-mode' must be \"background\" or "
					    "\"write-blocking\"");
		if (!p->copy_storage)
			return control_fail(ret, -EINVAL, "'copy-storage-mode' needs 'copy-storage'");
	}
	/* Written by this process, from its own working directory. */
	if (p->keep_base[0] && p->keep_base[0] != '/')
		return control_fail(ret, -EINVAL, "'keep-base' must be an absolute path");
	if (p->tls.dir[0] && !u.ops->return_path)
		return control_fail(ret, -EINVAL, "TLS ('tls-creds') needs a connection, "
				    "tcp:HOST:PORT or unix:PATH, not %s", u.ops->syntax);
	if (iters > UINT32_MAX || downtime_ms > 3600000 || timeout_ms > 1000ULL * 86400 * 365)
		return control_fail(ret, -EINVAL, "a limit is out of range");
	p->max_iterations = (uint32_t)iters;
	p->downtime_ns = downtime_ms * 1000000;
	p->timeout_ns = timeout_ms * 1000000;
	if (json_object_object_get_ex(args, "on-timeout", &v)) {
		const char *s = json_object_get_string(v);
		if (!strcmp(s, "force"))
			p->on_timeout = MIG_ON_TIMEOUT_FORCE;
		else if (!strcmp(s, "postcopy"))
			p->on_timeout = MIG_ON_TIMEOUT_POSTCOPY;
		else if (strcmp(s, "cancel"))
			return control_fail(ret, -EINVAL, "'on-timeout' must be cancel, force or postcopy");
	}
	p->compress = MIG_COMPRESS_NONE;
	if (json_object_object_get_ex(args, "compress", &v)) {
		int mode = json_object_is_type(v, json_type_string) ?
			   mig_compress_parse(json_object_get_string(v)) : -1;
		if (mode < 0)
			return control_fail(ret, -EINVAL, "'compress' must be none, lz4, zstd, delta "
					    "or adaptive");
		p->compress = (enum mig_compress)mode;
	}
	uint64_t level = MIG_COMPRESS_LEVEL_DEFAULT, cache = MIG_XBZRLE_CACHE_DEFAULT;
	err = mig_arg_u64(args, "compress-level", &level, ret);
	err = err ?: mig_arg_u64(args, "xbzrle-cache", &cache, ret);
	if (err)
		return err;
	if (level < 1 || level > 19 || cache < 4096 || cache > (64ULL << 30))
		return control_fail(ret, -EINVAL, "'compress-level' must be 1..19 and 'xbzrle-cache' "
				    "4096..64 GiB");
	p->compress_level = (int)level;
	p->xbzrle_cache = cache;
	p->order = MIG_ORDER_DEFAULT;
	if (json_object_object_get_ex(args, "order", &v)) {
		int order = mig_order_parse(json_object_get_string(v));
		if (order < 0)
			return control_fail(ret, -EINVAL, "'order' must be address or rewrite");
		p->order = (enum mig_order)order;
	}
	uint64_t channels = 1;
	err = mig_arg_u64(args, "channels", &channels, ret);
	if (err)
		return err;
	if (channels < 1 || channels > MIG_CHANNELS_MAX)
		return control_fail(ret, -EINVAL, "'channels' must be 1..%u", MIG_CHANNELS_MAX);
	if (channels > 1 && !u.ops->return_path)
		return control_fail(ret, -EINVAL, "'channels' above 1 needs a connection, "
				    "tcp:HOST:PORT or unix:PATH, not %s", u.ops->syntax);
	p->channels = (uint32_t)channels;
	err = mig_arg_bool(args, "postcopy-preempt", &p->postcopy_preempt, ret);
	if (err)
		return err;
	if (p->postcopy_preempt && !u.ops->return_path)
		return control_fail(ret, -EINVAL, "'postcopy-preempt' needs a connection, "
				    "tcp:HOST:PORT or unix:PATH, not %s", u.ops->syntax);
	if (json_object_object_get_ex(args, "mode", &v)) {
		const char *s = json_object_get_string(v);
		if (!strcmp(s, "postcopy"))
			p->mode = MIG_MODE_POSTCOPY;
		else if (!strcmp(s, "hybrid"))
			p->mode = MIG_MODE_HYBRID;
		else if (strcmp(s, "precopy"))
			return control_fail(ret, -EINVAL, "'mode' must be precopy, postcopy or hybrid");
	}
	uint64_t resume_s = 0;
	err = mig_arg_u64(args, "resume-timeout-ms", &resume_s, ret);
	if (err)
		return err;
	p->resume_timeout_ns = resume_s * 1000000ULL;
	uint64_t after = 0, prepage = 64;	/* after 0: hybrid picks the moment */
	err = mig_arg_u64(args, "postcopy-after", &after, ret);
	err = err ?: mig_arg_u64(args, "prepage", &prepage, ret);
	if (err)
		return err;
	if (after > 1000000 || prepage > 4096)
		return control_fail(ret, -EINVAL, "'postcopy-after' must be 0..1000000 and 'prepage' 0..4096");
	uint64_t so_ms = 0;
	err = mig_arg_u64(args, "switchover-timeout-ms", &so_ms, ret);
	if (err)
		return err;
	if (so_ms > 3600000)
		return control_fail(ret, -EINVAL, "'switchover-timeout-ms' must be at most an hour");
	p->switchover_timeout_ns = so_ms * 1000000ULL;
	uint64_t epi_ms = MIG_DEFAULT_NET_EPILOGUE_NS / 1000000;
	err = mig_arg_u64(args, "net-epilogue-ms", &epi_ms, ret);
	if (err)
		return err;
	if (epi_ms > MIG_NET_EPILOGUE_MAX_NS / 1000000)
		return control_fail(ret, -EINVAL, "'net-epilogue-ms' must be at most %llu",
				    (unsigned long long)(MIG_NET_EPILOGUE_MAX_NS / 1000000));
	p->net_epilogue_ns = epi_ms * 1000000ULL;
	p->postcopy_after = (uint32_t)after;
	p->prepage = (uint32_t)prepage;
	return 0;
}

void cmd_migrate_event(void *opaque, json_object *event)
{
	control_server_broadcast(opaque, event);
}

int cmd_migrate(struct control_ctx *ctx, json_object *args, json_object **ret)
{
	struct mig_params p;
	int err;

	/* Arguments first: a bad request is answered as one wherever it is sent. */
	err = cmd_migrate_parse(args, &p, ret);
	if (err)
		return err;
	if (!ctx->mig)
		return control_fail(ret, -ENOTSUP, "this VM cannot migrate");
	json_object *v;
	if (json_object_object_get_ex(args, "resume", &v) && json_object_get_boolean(v)) {
		if (migration_resume(ctx->mig, p.uri, &p.tls))
			return control_fail(ret, -ESRCH, "no post-copy is waiting to resume");
		return 0;
	}
	char why[160];
	if (p.copy_storage && mig_block_check(ctx->machine, why, sizeof(why)))
		return control_fail(ret, -EINVAL, "%s", why);
	if (p.copy_incremental && !mig_channel_uri_return_path(p.uri))
		return control_fail(ret, -EOPNOTSUPP, "copy-storage incremental compares digests "
				    "with the destination; %s has no return path", p.uri);
	enum vm_state st = vm_get_state(&ctx->machine->vm);
	if (st != VM_STATE_RUNNING && st != VM_STATE_PAUSED)
		return control_fail(ret, -ESRCH, "the VM is %s", vm_state_name(st));
	err = migration_start(ctx->mig, &p, cmd_migrate_event, ctx->server);
	if (err == -EBUSY)
		return control_fail(ret, err, "a migration is already running");
	if (err == -EOPNOTSUPP)
		return control_fail(ret, err, "post-copy needs a return path for page requests; "
				    "%s has none: use --mode precopy (and not --on-timeout postcopy) "
				    "to save to a file", p.uri);
	if (err == -EINPROGRESS)
		return control_fail(ret, err, "this VM is still arriving by post-copy (pages are "
				    "missing here); migrate it once that migration has completed");
	if (err)
		return control_fail(ret, err, "cannot start the migration: %s", strerror(-err));
	return 0;
}

int cmd_migrate_cancel(struct control_ctx *ctx, json_object *args, json_object **ret)
{
	if (!ctx->mig || migration_cancel(ctx->mig))
		return control_fail(ret, -ESRCH, "no migration is running");
	return 0;
}

int cmd_migrate_set_parameters(struct control_ctx *ctx, json_object *args, json_object **ret)
{
	uint64_t bw = 0, dt = 0;
	json_object *v;
	bool has_bw = args && json_object_object_get_ex(args, "bandwidth", &v);
	bool has_dt = args && json_object_object_get_ex(args, "downtime-ms", &v);
	int err;

	if (!ctx->mig)
		return control_fail(ret, -ENOTSUP, "this VM cannot migrate");
	if (!has_bw && !has_dt)
		return control_fail(ret, -EINVAL, "give 'bandwidth' and/or 'downtime-ms'");
	err = mig_arg_u64(args, "bandwidth", &bw, ret);
	err = err ?: mig_arg_u64(args, "downtime-ms", &dt, ret);
	if (err)
		return err;
	if (dt > 3600000)
		return control_fail(ret, -EINVAL, "'downtime-ms' is out of range");
	dt *= 1000000;
	if (migration_set_limits(ctx->mig, has_bw ? &bw : NULL, has_dt ? &dt : NULL))
		return control_fail(ret, -ESRCH, "no migration is in its live phase");
	return 0;
}

int cmd_migrate_start_postcopy(struct control_ctx *ctx, json_object *args, json_object **ret)
{
	int err = ctx->mig ? migration_start_postcopy(ctx->mig) : -ESRCH;

	if (err == -EOPNOTSUPP)
		return control_fail(ret, err, "post-copy needs a return path for page requests; "
				    "this migration writes to a file, which has none");
	if (err)
		return control_fail(ret, -ESRCH, "no migration is in its live phase");
	return 0;
}

/*
 * Test hook: cut the migration's connection, as a network failure would;
 * {"connection": "preempt"}: only the post-copy preempt connection.
 */
int cmd_test_migration_break(struct control_ctx *ctx, json_object *args, json_object **ret)
{
	json_object *v;
	bool preempt = false;

	if (args && json_object_object_get_ex(args, "connection", &v)) {
		const char *c = json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "";
		if (!strcmp(c, "preempt"))
			preempt = true;
		else if (strcmp(c, "main"))
			return control_fail(ret, -EINVAL, "'connection' must be main or preempt");
	}
	if (!ctx->mig || migration_break(ctx->mig, preempt))
		return control_fail(ret, -ESRCH, "no migration connection to break");
	return 0;
}

int cmd_migrate_resolve(struct control_ctx *ctx, json_object *args, json_object **ret)
{
	json_object *v;
	enum mig_resolve r;

	if (!ctx->mig)
		return control_fail(ret, -ENOTSUP, "this VM cannot migrate");
	const char *a = args && json_object_object_get_ex(args, "action", &v) &&
			json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "";
	if (!strcmp(a, "run"))
		r = MIG_RESOLVE_RUN;
	else if (!strcmp(a, "abandon"))
		r = MIG_RESOLVE_ABANDON;
	else
		return control_fail(ret, -EINVAL, "'action' must be \"run\" or \"abandon\"");
	if (mig_commit_resolve(&ctx->mig->commit, r))
		return control_fail(ret, -ESRCH, "no switchover is waiting for a decision");
	return 0;
}

int cmd_query_migrate(struct control_ctx *ctx, json_object *args, json_object **ret)
{
	if (!ctx->mig)
		return control_fail(ret, -ENOTSUP, "this VM cannot migrate");
	*ret = migration_query(ctx->mig);
	control_net_totals(ctx->machine, *ret);
	return 0;
}
