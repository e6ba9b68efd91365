#include "control/commands.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "board/machine_state.h"
#include "control/args.h"
#include "control/cmd_migrate.h"
#include "control/cmd_net.h"
#include "control/cmd_replicate.h"
#include "control/cmd_save.h"
#include "migration/migration.h"
#include "util/log.h"
#include "migration/live_scratch.h"
#include "vmm/dirty.h"

struct control_command {
	const char *name;
	bool test_only;
	bool needs_vm;			/* uses ctx->machine */
	const struct control_arg *args;	/* what it takes; NULL: nothing */
	int (*run)(struct control_ctx *ctx, json_object *args, json_object **ret);
};

int control_fail(json_object **ret, int err, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	*ret = json_object_new_string(msg);
	return err;
}

static int cmd_status(struct control_ctx *ctx, json_object *args, json_object **ret)
{
	struct machine *m = ctx->machine;
	struct vm *vm = &m->vm;
	json_object *o = json_object_new_object();
	enum vm_state st = vm_get_state(vm);

	json_object_object_add(o, "status", json_object_new_string(vm_state_name(st)));
	json_object_object_add(o, "running", json_object_new_boolean(st == VM_STATE_RUNNING));
	json_object_object_add(o, "vcpus", json_object_new_int((int)vm->nr_vcpus));
	json_object_object_add(o, "memory", json_object_new_int64((int64_t)vm->mem.size));
	json_object_object_add(o, "uptime-ms", json_object_new_int64(vm->start_ns ?
			       (int64_t)((vm_now_ns() - vm->start_ns) / 1000000) : 0));
	json_object_object_add(o, "kernel", json_object_new_string(m->kernel));
	json_object_object_add(o, "cmdline", json_object_new_string(m->cmdline));
	json_object_object_add(o, "pid", json_object_new_int((int)getpid()));
	if (m->nr_nics)
		json_object_object_add(o, "nics", control_nics_json(m));
	if (ctx->mig) {
		enum mig_commit_state cs = mig_commit_get_state(&ctx->mig->commit);
		if (cs != MIG_COMMIT_NONE)
			json_object_object_add(o, "switchover",
					       json_object_new_string(mig_commit_state_name(cs)));
	}
	*ret = o;
	return 0;
}

/*
 * Runs on the control thread, so the wait is bounded: a vCPU blocked in
 * the kernel (at a post-copy destination, on a page still in flight)
 * cannot park, and the API must not wedge behind it.
 */
static int cmd_pause(struct control_ctx *ctx, json_object *args, json_object **ret)
{
	int err = vm_hold(&ctx->machine->vm, VM_PAUSE_TIMEOUT_NS);

	if (err == -ETIMEDOUT)
		return control_fail(ret, err, "the vCPUs did not stop within %llu s%s; the VM "
				    "runs on", VM_PAUSE_TIMEOUT_NS / 1000000000ULL,
				    ctx->mig && migration_incoming_postcopy(ctx->mig)
				    ? " (post-copy pages still arriving?)" : "");
	if (err)
		return control_fail(ret, -ESRCH, "the VM has shut down");
	return 0;
}

/* Why this copy of the guest may not run: it is handed over, or may have been. */
static int resume_fenced(struct control_ctx *ctx, json_object **ret)
{
	if (ctx->mig && mig_commit_get_state(&ctx->mig->commit) == MIG_COMMIT_IN_DOUBT)
		return control_fail(ret, -EPERM, "the switchover is in doubt: the guest may be running "
				    "at the destination; settle it with 'migrate-resolve' (run or abandon)");
	return control_fail(ret, -EPERM, "the guest is being handed over by a migration, or runs "
			    "at its destination now: this copy stays paused so that it never runs on "
			    "both hosts (cancel the migration, or quit this copy)");
}

static int cmd_resume(struct control_ctx *ctx, json_object *args, json_object **ret)
{
	struct vm *vm = &ctx->machine->vm;
	char why[256];
	int err;

	if (vm_fenced(vm))
		return resume_fenced(ctx, ret);
	/* A copy kept paused after migrating away gave its disks up: take them back first. */
	if (vm_get_state(vm) == VM_STATE_PAUSED && machine_activate(ctx->machine, why, sizeof(why)))
		return control_fail(ret, -EBUSY, "%s", why);
	err = vm_release(vm);
	if (err == -EPERM)
		return resume_fenced(ctx, ret);
	if (err == -EAGAIN)
		return control_fail(ret, -EAGAIN, "the guest has not started here yet (a destination "
				    "runs it once its migration hands it over)");
	if (err)
		return control_fail(ret, -ESRCH, "the VM has shut down");
	return 0;
}

static int cmd_quit(struct control_ctx *ctx, json_object *args, json_object **ret)
{
	/*
	 * A switchover waiting for its last message holds the main or the
	 * migration thread: quitting discards this copy of the guest, as
	 * 'migrate-resolve abandon' would (a destination's guest never ran).
	 */
	if (ctx->mig && !mig_commit_resolve(&ctx->mig->commit, MIG_RESOLVE_ABANDON))
		pr_warn("quit while the switchover waits for its answer: this copy of the guest "
			"is discarded");
	vm_request_stop(&ctx->machine->vm, VM_STOP_REQUESTED, 0);
	return 0;
}

/*
 * announce-self, as QEMU's: every NIC sends its rounds of gratuitous RARP
 * again (from its I/O thread, once the guest runs), and asks the guest to
 * announce itself where its driver can.
 */
static int cmd_announce(struct control_ctx *ctx, json_object *args, json_object **ret)
{
	struct machine *m = ctx->machine;

	for (unsigned i = 0; i < m->nr_nics; i++)
		virtio_net_announce_self(&m->nics[i]);
	*ret = json_object_new_object();
	json_object_object_add(*ret, "nics", json_object_new_int((int)m->nr_nics));
	return 0;
}

/* Read an unsigned integer argument; JSON numbers may be negative or huge. */
static int control_arg_u64(json_object *args, const char *key, uint64_t *out, json_object **ret)
{
	json_object *v;

	if (!args || !json_object_object_get_ex(args, key, &v) ||
	    !json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0)
		return control_fail(ret, -EINVAL, "argument '%s' must be a non-negative integer", key);
	*out = (uint64_t)json_object_get_int64(v);
	return 0;
}

/*
 * Test hook: flip bits of one guest byte.  By default as a memory error
 * would (unseen by dirty tracking); with "tracked": true as ferry's own
 * device code writes guest RAM, which migration must see.
 */
static int cmd_test_corrupt(struct control_ctx *ctx, json_object *args, json_object **ret)
{
	uint64_t gpa, mask = 0xff;
	json_object *v;
	bool tracked = json_object_object_get_ex(args, "tracked", &v) &&
		       json_object_get_boolean(v);

	if (control_arg_u64(args, "gpa", &gpa, ret))
		return -EINVAL;
	if (json_object_object_get_ex(args, "xor", &v) &&
	    (control_arg_u64(args, "xor", &mask, ret) || mask == 0 || mask > 0xff))
		return control_fail(ret, -EINVAL, "argument 'xor' must be 1..255");
	uint8_t *p = guest_memory_ptr(&ctx->machine->vm.mem, gpa, 1);
	if (!p)
		return control_fail(ret, -ERANGE, "gpa 0x%llx is not guest RAM",
				    (unsigned long long)gpa);
	__atomic_xor_fetch(p, (uint8_t)mask, __ATOMIC_SEQ_CST);
	if (tracked)
		vm_mark_dirty(&ctx->machine->vm, gpa, 1);
	return 0;
}

/* Test hook: read one byte of guest RAM. */
static int cmd_test_peek(struct control_ctx *ctx, json_object *args, json_object **ret)
{
	uint64_t gpa;

	if (control_arg_u64(args, "gpa", &gpa, ret))
		return -EINVAL;
	uint8_t *p = guest_memory_ptr(&ctx->machine->vm.mem, gpa, 1);
	if (!p)
		return control_fail(ret, -ERANGE, "gpa 0x%llx is not guest RAM",
				    (unsigned long long)gpa);
	*ret = json_object_new_object();
	json_object_object_add(*ret, "value", json_object_new_int(__atomic_load_n(p, __ATOMIC_SEQ_CST)));
	return 0;
}

/*
 * Test hook: the scratch live source (migration/live_scratch.h).  With
 * {"fill": SEED} (and "hot": true to refill it at every sync) fill it on
 * a source; always answer whether it holds anything and its digest.
 */
static int cmd_test_scratch(struct control_ctx *ctx, json_object *args, json_object **ret)
{
	json_object *v;
	uint64_t seed, digest;
	bool present;

	if (args && json_object_object_get_ex(args, "fill", &v)) {
		if (control_arg_u64(args, "fill", &seed, ret))
			return -EINVAL;
		bool hot = json_object_object_get_ex(args, "hot", &v) && json_object_get_boolean(v);
		int err = mig_scratch_fill(seed, hot);
		if (err)
			return control_fail(ret, err, "cannot fill the scratch source: %s",
					    strerror(-err));
	}
	mig_scratch_query(&present, &digest);
	char hex[24];
	snprintf(hex, sizeof(hex), "%016llx", (unsigned long long)digest);
	*ret = json_object_new_object();
	json_object_object_add(*ret, "present", json_object_new_boolean(present));
	json_object_object_add(*ret, "bytes", json_object_new_int(present ? MIG_SCRATCH_SIZE : 0));
	json_object_object_add(*ret, "digest", json_object_new_string(hex));
	return 0;
}

/* Test hook: save all state, recreate the KVM VM, load it (VM stays paused). */
static int cmd_test_rebuild(struct control_ctx *ctx, json_object *args, json_object **ret)
{
	int err;

	if (vm_get_state(&ctx->machine->vm) != VM_STATE_PAUSED)
		return control_fail(ret, -EBUSY, "pause the VM first");
	err = machine_state_rebuild(ctx->machine);
	if (err)
		return control_fail(ret, err, "rebuild failed: %s", strerror(-err));
	return 0;
}

static const struct control_arg corrupt_args[] = {
	{ "gpa", CONTROL_ARG_UINT, true },
	{ "xor", CONTROL_ARG_UINT, false },
	{ "tracked", CONTROL_ARG_BOOL, false },
	{ NULL },
};

static const struct control_arg peek_args[] = {
	{ "gpa", CONTROL_ARG_UINT, true },
	{ NULL },
};

static const struct control_arg break_args[] = {
	{ "connection", CONTROL_ARG_STRING, false },
	{ NULL },
};

static const struct control_arg scratch_args[] = {
	{ "fill", CONTROL_ARG_UINT, false },
	{ "hot", CONTROL_ARG_BOOL, false },
	{ NULL },
};

static const struct control_arg save_args[] = {
	{ "file", CONTROL_ARG_STRING, true },
	{ "keep-running", CONTROL_ARG_BOOL, false },
	{ "disks", CONTROL_ARG_STRING, false },	/* "path" or "copy" */
	{ NULL },
};

static const struct control_arg snapshot_args[] = {
	{ "file", CONTROL_ARG_STRING, true },
	{ "disks", CONTROL_ARG_STRING, false },	/* "path" only: "copy" is refused */
	{ NULL },
};

static const struct control_command control_commands[] = {
	{ "status", false, true, NULL, cmd_status },
	{ "pause", false, true, NULL, cmd_pause },
	{ "resume", false, true, NULL, cmd_resume },
	{ "quit", false, true, NULL, cmd_quit },
	{ "announce", false, true, NULL, cmd_announce },
	{ "migrate", false, false, cmd_migrate_args, cmd_migrate },
	{ "migrate-cancel", false, false, NULL, cmd_migrate_cancel },
	{ "migrate-set-parameters", false, false, cmd_migrate_set_parameters_args,
	  cmd_migrate_set_parameters },
	{ "migrate-start-postcopy", false, false, NULL, cmd_migrate_start_postcopy },
	{ "migrate-resolve", false, false, cmd_migrate_resolve_args, cmd_migrate_resolve },
	{ "query-migrate", false, false, NULL, cmd_query_migrate },
	{ "replicate", false, true, cmd_replicate_args, cmd_replicate },
	{ "failover", false, false, NULL, cmd_failover },
	{ "save", false, true, save_args, cmd_save },
	{ "snapshot", false, true, snapshot_args, cmd_snapshot },
	{ "x-test-corrupt", true, true, corrupt_args, cmd_test_corrupt },
	{ "x-test-rebuild", true, true, NULL, cmd_test_rebuild },
	{ "x-test-peek", true, true, peek_args, cmd_test_peek },
	{ "x-test-migration-break", true, false, break_args, cmd_test_migration_break },
	{ "x-test-scratch", true, false, scratch_args, cmd_test_scratch },
};

int control_dispatch(struct control_ctx *ctx, const char *name, json_object *args,
		     json_object **ret)
{
	*ret = NULL;
	for (size_t i = 0; i < sizeof(control_commands) / sizeof(control_commands[0]); i++) {
		const struct control_command *c = &control_commands[i];
		if (strcmp(c->name, name))
			continue;
		if (c->test_only && !ctx->test_hooks)
			return control_fail(ret, -EPERM,
					    "%s is a test hook; start ferry run with --test-hooks",
					    name);
		/* Handlers trust the table: a type they did not expect never reaches them. */
		int err = control_check_args(name, c->args, args, ret);
		if (!err && c->needs_vm && !ctx->machine)
			err = control_fail(ret, -ENODEV, "no VM is attached to this control server");
		return err ? err : c->run(ctx, args, ret);
	}
	return control_fail(ret, -ENOENT, "unknown command '%s'", name);
}
