/*
 * save: write the VM to a file with RAM at fixed offsets, as virsh save
 * does; snapshot: the same file of the VM at one instant, while it runs.
 * Both run on the control thread, start to end: the guest is paused
 * throughout anyway, and no migration can start meanwhile (commands run
 * one at a time).
 */
#include "control/cmd_save.h"

#include <errno.h>
#include <string.h>

#include "migration/migration.h"
#include "migration/savefile/savefile.h"

/* The file argument, checked; NULL with *ret set when it is not usable. */
static const char *cmd_save_file(json_object *args, json_object **ret)
{
	const char *file;
	json_object *v;

	if (!args || !json_object_object_get_ex(args, "file", &v) ||
	    !json_object_is_type(v, json_type_string) || !*(file = json_object_get_string(v))) {
		control_fail(ret, -EINVAL, "argument 'file' must be a non-empty string");
		return NULL;
	}
	if (file[0] != '/') {
		control_fail(ret, -EINVAL, "argument 'file' must be an absolute path "
			     "(ferry's working directory is not the client's)");
		return NULL;
	}
	return file;
}

/* Neither while a migration reads RAM, nor while RAM is still arriving. */
static int cmd_save_busy(struct control_ctx *ctx, json_object **ret)
{
	if (ctx->mig && migration_running(ctx->mig))
		return control_fail(ret, -EBUSY, "a migration is running");
	if (ctx->mig && migration_incoming_postcopy(ctx->mig))
		return control_fail(ret, -EBUSY, "the VM's memory is still arriving (post-copy or "
				    "a lazy restore): save once it is all in");
	return 0;
}

/* The disks argument: "path" (the default) or "copy".  0, or -EINVAL with *ret set. */
static int cmd_save_disks(json_object *args, enum savefile_disk_mode *mode, json_object **ret)
{
	const char *s;
	json_object *v;

	*mode = SAVEFILE_DISK_PATH;
	if (!args || !json_object_object_get_ex(args, "disks", &v))
		return 0;
	if (!json_object_is_type(v, json_type_string))
		return control_fail(ret, -EINVAL, "argument 'disks' must be \"path\" or \"copy\"");
	s = json_object_get_string(v);
	if (!strcmp(s, "copy"))
		*mode = SAVEFILE_DISK_COPY;
	else if (strcmp(s, "path"))
		return control_fail(ret, -EINVAL, "argument 'disks' must be \"path\" or \"copy\"");
	return 0;
}

static json_object *cmd_save_result(const char *file, const struct savefile_stats *st)
{
	json_object *r = json_object_new_object();

	json_object_object_add(r, "file", json_object_new_string(file));
	json_object_object_add(r, "file-size", json_object_new_int64((int64_t)st->file_bytes));
	json_object_object_add(r, "data-pages", json_object_new_int64((int64_t)st->data_pages));
	json_object_object_add(r, "zero-pages", json_object_new_int64((int64_t)st->zero_pages));
	json_object_object_add(r, "device-state-bytes", json_object_new_int64((int64_t)st->state_bytes));
	json_object_object_add(r, "disk-bytes", json_object_new_int64((int64_t)st->disk_bytes));
	json_object_object_add(r, "disk-data-pages",
			       json_object_new_int64((int64_t)st->disk_data_pages));
	json_object_object_add(r, "total-time-ms", json_object_new_double((double)st->total_ns / 1e6));
	json_object_object_add(r, "downtime-ms", json_object_new_double((double)st->paused_ns / 1e6));
	return r;
}

int cmd_snapshot(struct control_ctx *ctx, json_object *args, json_object **ret)
{
	struct savefile_stats st;
	const char *file = cmd_save_file(args, ret);
	char why[256];
	int err;

	enum savefile_disk_mode mode;

	if (!file)
		return -EINVAL;
	err = cmd_save_disks(args, &mode, ret);
	if (err)
		return err;
	if (mode == SAVEFILE_DISK_COPY)
		return control_fail(ret, -EINVAL, "a live snapshot cannot copy the disks: the guest "
				    "goes on writing them while its RAM is written; use 'save' with "
				    "disks \"copy\" (and keep-running), which copies them with the "
				    "guest paused");
	err = cmd_save_busy(ctx, ret);
	if (err)
		return err;
	err = savefile_snapshot(ctx->machine, file, &st, why, sizeof(why));
	if (err)
		return control_fail(ret, err, "%s", why);
	*ret = cmd_save_result(file, &st);
	json_object_object_add(*ret, "write-faults", json_object_new_int64((int64_t)st.wp_faults));
	json_object_object_add(*ret, "blocks-copied-on-write",
			       json_object_new_int64((int64_t)st.fault_copies));
	return 0;
}

int cmd_save(struct control_ctx *ctx, json_object *args, json_object **ret)
{
	struct savefile_save_opts o = { 0 };
	struct savefile_stats st;
	const char *file = cmd_save_file(args, ret);
	json_object *v;
	char why[256];
	int err;

	if (!file)
		return -EINVAL;
	if (json_object_object_get_ex(args, "keep-running", &v)) {
		if (!json_object_is_type(v, json_type_boolean))
			return control_fail(ret, -EINVAL, "argument 'keep-running' must be a boolean");
		o.keep_running = json_object_get_boolean(v);
	}
	err = cmd_save_disks(args, &o.disks, ret);
	if (err)
		return err;
	err = cmd_save_busy(ctx, ret);
	if (err)
		return err;
	err = savefile_save(ctx->machine, file, &o, &st, why, sizeof(why));
	if (err)
		return control_fail(ret, err, "%s", why);
	json_object *r = cmd_save_result(file, &st);
	json_object_object_add(r, "running", json_object_new_boolean(o.keep_running &&
			       vm_get_state(&ctx->machine->vm) == VM_STATE_RUNNING));
	*ret = r;
	return 0;
}
