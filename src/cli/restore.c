/*
 * ferry run --restore FILE [--lazy]: the VM in a save file
 * (docs/save-format.md) rebuilt here.  The file is checked before
 * anything is built from it; its disks are opened by the paths recorded
 * (or those given with --disk), and a missing one is the user's to fix.
 */
#include "cli/restore.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "board/machine_state.h"
#include "cli/cli.h"
#include "util/log.h"

static int restore_fail(const struct restore_opts *o, int status, const char *why)
{
	pr_err("cannot restore %s: %s; the guest was not started", o->file, why);
	return status;
}

/* Disk i of a file saved with --disks copy: its contents into the image given.  0 or a status. */
static int restore_disk_copy(const struct restore_opts *o, struct savefile *sf, unsigned i,
			     const struct block_config *c)
{
	char why[PATH_MAX + 256];
	int err;

	err = savefile_disk_restore(sf, i, c, why, sizeof(why));
	if (err)
		return restore_fail(o, err == -EPROTO ? FERRY_EXIT_DATAERR :
				    err == -EINVAL ? FERRY_EXIT_USAGE :
				    err == -EBUSY ? FERRY_EXIT_UNAVAILABLE : FERRY_EXIT_OSERR, why);
	pr_info("disk %u: its copy in %s written to %s (%llu bytes, %llu pages of data)", i,
		o->file, c->path, (unsigned long long)sf->meta.drec[i].size,
		(unsigned long long)sf->meta.drec[i].data_pages);
	return 0;
}

/* Disk i kept by path: is the image there the one saved?  0 or an exit status. */
static int restore_disk_check(const struct restore_opts *o, const struct savefile_meta *meta,
			      unsigned i, const struct block_config *c)
{
	const struct savefile_disk_rec *r = &meta->drec[i];
	char why[PATH_MAX + 256], msg[PATH_MAX + 400];
	int err;

	if (!meta->has_recs || c->kind != BLOCK_KIND_FILE)
		return 0;	/* a version 1 file, or an NBD export: nothing to check */
	err = savefile_disk_check(r, i, c->path, why, sizeof(why));
	if (!err)
		return 0;
	if (err == -ESTALE && (r->flags & SAVEFILE_DISK_F_LIVE)) {
		/* Saved with the guest running on: its disks were expected to change. */
		pr_warn("%s; the guest ran on after the save, so it may be newer than the saved RAM",
			why);
		return 0;
	}
	if (err == -ESTALE) {
		snprintf(msg, sizeof(msg), "%s: it is not the image the guest was saved with "
			 "(give that one with --disk)", why);
		return restore_fail(o, FERRY_EXIT_DATAERR, msg);
	}
	return restore_fail(o, err == -EPROTO ? FERRY_EXIT_DATAERR : err == -ENOENT ?
			    FERRY_EXIT_NOINPUT : FERRY_EXIT_UNAVAILABLE, why);
}

/* The disks and NICs: those given, or those recorded.  0 or an exit status. */
static int restore_devices(const struct restore_opts *o, struct savefile *sf,
			   struct block_config *disks, struct net_config *nics)
{
	const struct savefile_meta *meta = &sf->meta;
	char why[256], msg[PATH_MAX + 320];
	int status;

	if (o->nr_disks && o->nr_disks != meta->nr_disks) {
		snprintf(msg, sizeof(msg), "the saved VM has %u disks, %u --disk given",
			 meta->nr_disks, o->nr_disks);
		return restore_fail(o, FERRY_EXIT_USAGE, msg);
	}
	if (o->nr_nics && o->nr_nics != meta->nr_nics) {
		snprintf(msg, sizeof(msg), "the saved VM has %u NICs, %u --net given",
			 meta->nr_nics, o->nr_nics);
		return restore_fail(o, FERRY_EXIT_USAGE, msg);
	}
	for (unsigned i = 0; i < meta->nr_disks; i++) {
		bool copy = meta->has_recs && meta->drec[i].mode == SAVEFILE_DISK_COPY;
		if (copy && !o->nr_disks) {
			/* Never onto the recorded image unless the user names it. */
			snprintf(msg, sizeof(msg), "disk %u was copied into the save file (--disks "
				 "copy): name the image to restore it into with --disk path=NEW, "
				 "one --disk per saved disk, in order", i);
			return restore_fail(o, FERRY_EXIT_USAGE, msg);
		}
		if (o->nr_disks) {
			disks[i] = o->disks[i];
		} else if (block_config_parse(meta->disks[i], &disks[i], why, sizeof(why))) {
			snprintf(msg, sizeof(msg), "bad record of disk %u: %s", i, why);
			return restore_fail(o, FERRY_EXIT_DATAERR, msg);
		}
		if (copy) {
			status = restore_disk_copy(o, sf, i, &disks[i]);
			if (status)
				return status;
			continue;
		}
		if (disks[i].kind == BLOCK_KIND_FILE &&
		    access(disks[i].path, disks[i].readonly ? R_OK : R_OK | W_OK) < 0) {
			int e = errno;
			snprintf(msg, sizeof(msg), "the saved VM's disk %u, %s: %s (give its new "
				 "place with --disk)", i, disks[i].path, strerror(e));
			return restore_fail(o, e == ENOENT ? FERRY_EXIT_NOINPUT :
					    FERRY_EXIT_UNAVAILABLE, msg);
		}
		status = restore_disk_check(o, meta, i, &disks[i]);
		if (status)
			return status;
	}
	for (unsigned i = 0; i < meta->nr_nics; i++) {
		if (o->nr_nics) {
			nics[i] = o->nics[i];
		} else if (net_config_parse(meta->nics[i], &nics[i], why, sizeof(why))) {
			snprintf(msg, sizeof(msg), "bad record of NIC %u: %s", i, why);
			return restore_fail(o, FERRY_EXIT_DATAERR, msg);
		}
		nics[i].announce = *o->announce;
	}
	return 0;
}

/*
 * The saved CPUID against this host's offer (KVM's, less --cpu-model), as
 * an incoming migration checks CONFIG's; then the vCPUs get the saved
 * table: the guest keeps the CPU it booted with, not this host's fuller
 * one.  0 or an exit status.
 */
static int restore_cpu(struct machine *m, const struct restore_opts *o, struct savefile *sf)
{
	char why[512];

	if (savefile_check_cpu(sf, m->vm.cpuid, why, sizeof(why)))
		return restore_fail(o, FERRY_EXIT_UNAVAILABLE, why);
	if (!sf->meta.cfg.cpuid_nent)
		return 0;	/* an older file: the host's CPUID, unchecked */
	struct kvm_cpuid2 *cpuid = mig_config_cpuid(&sf->meta.cfg);
	if (!cpuid)
		return restore_fail(o, FERRY_EXIT_OSERR, "out of memory");
	int err = vm_set_cpuid(&m->vm, cpuid);
	if (err) {
		snprintf(why, sizeof(why), "cannot give the vCPUs the saved CPUID: %s",
			 strerror(-err));
		return restore_fail(o, FERRY_EXIT_OSERR, why);
	}
	return 0;
}

static int restore_open_status(int err)
{
	switch (-err) {
	case ENOENT: return FERRY_EXIT_NOINPUT;
	case EPROTO: case EPROTONOSUPPORT: return FERRY_EXIT_DATAERR;
	case EISDIR: case EINVAL: return FERRY_EXIT_USAGE;
	default: return FERRY_EXIT_OSERR;
	}
}

/* Lazy: once every page is in, saves and migrations may read RAM again. */
static void restore_lazy_done(void *opaque, int err)
{
	if (!err)
		migration_set_incoming_postcopy(opaque, false);
}

/* RAM and state into the created machine m.  0 or an exit status. */
static int restore_fill(struct machine *m, struct migration *mig, const struct restore_opts *o,
			struct restore_state *rs)
{
	struct savefile_stats st = { 0 };
	char why[256];
	int err;

	if (o->lazy) {
		/* Before anything touches RAM: a page mapped now would shadow the file's. */
		migration_set_incoming_postcopy(mig, true);
		rs->lz.done = restore_lazy_done;
		rs->lz.opaque = mig;
		err = savefile_lazy_start(&rs->lz, &rs->sf, m, why, sizeof(why));
		if (err)
			return restore_fail(o, FERRY_EXIT_OSERR, why);
		rs->lazy_started = true;
	} else {
		err = savefile_load_ram(&rs->sf, &m->vm.mem, &st, why, sizeof(why));
		if (err)
			return restore_fail(o, err == -EPROTO ? FERRY_EXIT_DATAERR : FERRY_EXIT_OSERR,
					    why);
		pr_info("restored %llu MiB of RAM from %s in %.1f ms (%llu pages of data, %llu "
			"zero)", (unsigned long long)(m->vm.mem.size >> 20), o->file,
			(double)st.total_ns / 1e6, (unsigned long long)st.data_pages,
			(unsigned long long)st.zero_pages);
	}
	err = savefile_load_state(&rs->sf, m, why, sizeof(why));
	if (err)
		return restore_fail(o, err == -EPROTO ? FERRY_EXIT_DATAERR : FERRY_EXIT_OSERR, why);
	if (machine_activate(m, why, sizeof(why)))
		return restore_fail(o, FERRY_EXIT_UNAVAILABLE, why);
	machine_devices_resume(m);
	return 0;
}

int restore_machine(struct machine *m, struct migration *mig, const struct restore_opts *o,
		    struct restore_state *rs)
{
	struct block_config *disks = calloc(MACHINE_MAX_DISKS, sizeof(*disks));
	struct net_config nics[MACHINE_MAX_NICS];
	char why[256], cmdline[PVH_CMDLINE_MAX];
	struct savefile_meta *meta = &rs->sf.meta;
	int err, status;

	memset(rs, 0, sizeof(*rs));
	rs->sf.fd = -1;
	rs->lz.uffd = -1;
	if (!disks)
		return restore_fail(o, FERRY_EXIT_OSERR, "out of memory");
	err = savefile_open(&rs->sf, o->file, why, sizeof(why));
	if (err) {
		free(disks);
		return restore_fail(o, restore_open_status(err), why);
	}
	memset(nics, 0, sizeof(nics));
	status = restore_devices(o, &rs->sf, disks, nics);
	if (status)
		goto fail;
	memcpy(cmdline, meta->cfg.cmdline, meta->cfg.cmdline_len);
	cmdline[meta->cfg.cmdline_len] = '\0';
	struct machine_config mc = {
		.memory = meta->cfg.memory, .vcpus = meta->cfg.vcpus, .cmdline = cmdline,
		.serial = o->serial, .disks = disks, .nr_disks = meta->nr_disks,
		.nics = nics, .nr_nics = meta->nr_nics,
		.cpu_model = o->cpu_model,
		.incoming = true,	/* disks unlocked until the state is in */
	};
	err = machine_create(m, &mc);
	if (err) {
		machine_destroy(m);
		snprintf(why, sizeof(why), "cannot create a VM of %llu MiB and %u vCPUs: %s",
			 (unsigned long long)(mc.memory >> 20), mc.vcpus, strerror(-err));
		status = restore_fail(o, err == -EBUSY ? FERRY_EXIT_UNAVAILABLE : FERRY_EXIT_OSERR,
				      why);
		goto fail;
	}
	/* Before any page: a guest this CPU cannot run is refused, as a migration's is. */
	status = restore_cpu(m, o, &rs->sf);
	if (status) {
		machine_destroy(m);
		goto fail;
	}
	char *kernel = strdup(meta->kernel);
	if (kernel) {
		free(m->kernel);
		m->kernel = kernel;	/* what 'status' shows: the kernel the guest booted */
	}
	status = restore_fill(m, mig, o, rs);
	if (status) {
		restore_finish(rs);
		machine_destroy(m);
		free(disks);
		return status;
	}
	free(disks);
	return 0;
fail:
	free(disks);
	savefile_close(&rs->sf);
	return status;
}

void restore_finish(struct restore_state *rs)
{
	if (rs->lazy_started)
		savefile_lazy_stop(&rs->lz);
	rs->lazy_started = false;
	savefile_close(&rs->sf);
}
