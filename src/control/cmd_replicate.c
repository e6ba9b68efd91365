#include "control/cmd_replicate.h"

#include <errno.h>
#include <string.h>

#include "control/cmd_migrate.h"
#include "migration/block.h"
#include "migration/migration.h"
#include "migration/replicate/epoch.h"

#define REPL_DEFAULT_INTERVAL_MS 50

const struct control_arg cmd_replicate_args[] = {
	{ "uri", CONTROL_ARG_STRING, true },
	{ "interval-ms", CONTROL_ARG_UINT, false },
	{ "failover-timeout-ms", CONTROL_ARG_UINT, false },
	{ "bandwidth", CONTROL_ARG_UINT, false },
	{ "downtime-ms", CONTROL_ARG_UINT, false },
	{ "max-iterations", CONTROL_ARG_UINT, false },
	{ "verify", CONTROL_ARG_BOOL, false },
	{ "tls-creds", CONTROL_ARG_STRING, false },
	{ "tls-hostname", CONTROL_ARG_STRING, false },
	{ "copy-storage", CONTROL_ARG_BOOL_OR_STRING, false },
	{ "copy-storage-mode", CONTROL_ARG_STRING, false },
	{ NULL },
};

static int repl_arg_ms(json_object *args, const char *key, uint64_t def, uint64_t *out,
		       json_object **ret)
{
	*out = def;
	return mig_arg_u64(args, key, out, ret);
}

int cmd_replicate(struct control_ctx *ctx, json_object *args, json_object **ret)
{
	struct mig_params p;
	uint64_t interval, fence;
	int err = cmd_migrate_parse(args, &p, ret);

	err = err ?: repl_arg_ms(args, "interval-ms", REPL_DEFAULT_INTERVAL_MS, &interval, ret);
	err = err ?: repl_arg_ms(args, "failover-timeout-ms", 0, &fence, ret);
	if (err)
		return err;
	if (interval < 5 || interval > 60000)
		return control_fail(ret, -EINVAL, "'interval-ms' must be 5..60000");
	if (fence > 3600000)
		return control_fail(ret, -EINVAL, "'failover-timeout-ms' must be at most an hour");
	if (!mig_channel_uri_return_path(p.uri))
		return control_fail(ret, -EINVAL, "a standby acknowledges epochs: replicate to "
				    "tcp:HOST:PORT or unix:PATH, not %s", p.uri);
	if (!ctx->mig)
		return control_fail(ret, -ENOTSUP, "this VM cannot migrate");
	/*
	 * Disks travel with the epochs only as copies (docs/replication.md,
	 * "Disks"): on shared storage the primary's writes after the last
	 * checkpoint would already be on the disk the standby resumes with.
	 */
	if (ctx->machine->nr_disks && !p.copy_storage)
		return control_fail(ret, -EOPNOTSUPP, "this VM has %u disk(s): replicate them with "
				    "'copy-storage' to a standby with its own images (ferry run "
				    "--standby --copy-storage --disk path=...); shared storage is "
				    "refused, as after a failover the disk would hold writes newer "
				    "than the checkpoint the guest resumes from",
				    ctx->machine->nr_disks);
	if (p.copy_storage) {
		char why[200];
		if (mig_block_check(ctx->machine, why, sizeof(why)))
			return control_fail(ret, -EINVAL, "%s", why);
	}
	p.replicate = true;
	p.epoch_interval_ns = interval * 1000000ULL;
	p.fence_ns = fence * 1000000ULL;
	enum vm_state st = vm_get_state(&ctx->machine->vm);
	if (st != VM_STATE_RUNNING)
		return control_fail(ret, -ESRCH, "the VM is %s; replicate a running one",
				    vm_state_name(st));
	err = migration_start(ctx->mig, &p, cmd_migrate_event, ctx->server);
	if (err == -EBUSY)
		return control_fail(ret, err, "a migration or replication is already running");
	if (err == -EINPROGRESS)
		return control_fail(ret, err, "this VM is still arriving by post-copy");
	if (err)
		return control_fail(ret, err, "cannot start replicating: %s", strerror(-err));
	return 0;
}

int cmd_failover(struct control_ctx *ctx, json_object *args, json_object **ret)
{
	if (!ctx->mig || mig_commit_get_state(&ctx->mig->commit) != MIG_COMMIT_STANDBY)
		return control_fail(ret, -ESRCH, "this ferry is not a standby holding a checkpoint "
				    "('ferry run --incoming URI --standby', after the initial copy)");
	if (mig_commit_resolve(&ctx->mig->commit, MIG_RESOLVE_RUN))
		return control_fail(ret, -EALREADY, "a failover or quit is already under way");
	return 0;
}
