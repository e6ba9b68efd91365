/*
 * All CPU and device state of a machine as a sequence of vmstate records:
 * "x86_vm", one "x86_vcpu" per vCPU, then one record per device instance
 * with state, in device-registry order (devices/device.h) and instance
 * order: today "serial-8250", then "virtio-blk.0", "virtio-blk.1", ..., then
 * "virtio-net.0", ...  Used to rebuild a VM and, by migration, to carry it to
 * another host (the STATE section, docs/migration-stream.md).  RAM is not
 * included.
 */
#ifndef FERRY_BOARD_MACHINE_STATE_H
#define FERRY_BOARD_MACHINE_STATE_H

#include "arch/x86/vcpu_state.h"
#include "arch/x86/vm_state.h"
#include "board/machine.h"
#include "devices/device.h"
#include "util/vmstate.h"

/* One device instance's decoded state (its model's vmsd->size bytes). */
struct machine_state_dev {
	enum device_id id;
	unsigned index;
	void *state;
};

/* Decoded state; owned by the thread that decodes and applies it. */
struct machine_state {
	struct x86_vm_state vm;
	unsigned nr_vcpus;
	struct x86_vcpu_state *vcpus;	/* nr_vcpus entries */
	/* Every device record, in stream order. */
	struct machine_state_dev devs[MACHINE_MAX_DEVS];
	unsigned nr_devs;
};

/* The decoded state of instance `index` of model id, or NULL. */
void *machine_state_dev(const struct machine_state *st, enum device_id id, unsigned index);

/*
 * Bring paused machine m to rest: finish each vCPU's half-done I/O exit,
 * then let every device drain what is in flight (device_ops.quiesce).
 * Call it at the switchover before the final pass over RAM; harmless to
 * repeat.  Returns 0 or -errno (logged); -EBUSY if the VM is not paused.
 */
int machine_quiesce(struct machine *m) __attribute__((warn_unused_result));

/*
 * Hand the machine's backing stores over (device_ops.inactivate): flush
 * every disk and release its image lock, after machine_quiesce() at the
 * switchover.  Returns 0 or -errno (logged); the devices that had been
 * inactivated are active again then.
 */
int machine_inactivate(struct machine *m) __attribute__((warn_unused_result));
/*
 * Take them (device_ops.activate) before the guest runs here: on GO, at
 * the post-copy switch, or on a source taking its disks back after a
 * failed migration.  Returns 0, or -errno with the reason in why (-EBUSY:
 * another process holds a disk); then nothing is held.
 */
int machine_activate(struct machine *m, char *why, size_t whylen)
	__attribute__((warn_unused_result));

/*
 * The pages paused machine m touches first when it runs again (each
 * vCPU's page walks for its RIP and RSP, arch/x86/pagewalk.h), as guest
 * page indexes into out (room for max), without repeats.  Returns how
 * many, or -errno if a vCPU's registers cannot be read.
 */
int machine_first_pages(struct machine *m, uint64_t *out, unsigned max)
	__attribute__((warn_unused_result));

/*
 * Quiesce paused machine m and append its state to out.  Returns 0 or
 * -errno (logged); -EBUSY if the VM is not paused.
 */
int machine_state_save(struct machine *m, struct vmstate_buf *out)
	__attribute__((warn_unused_result));

/*
 * Append the state of machine m, whose vCPUs are stopped, to out, as
 * machine_state_save() does but without quiescing: to read back state
 * just loaded into vCPUs that have not run.  Returns 0 or -errno (logged).
 */
int machine_state_encode(struct machine *m, struct vmstate_buf *out)
	__attribute__((warn_unused_result));

/*
 * The --verify digest of decoded state st: XXH3-64 over the digests of
 * its records in stream order (vmstate_digest_as(): VMS_NO_VERIFY fields
 * left out), so a source and a destination that read back what it loaded
 * agree exactly when everything that must survive a migration did.
 * Logs each record's digest at debug level.  Returns 0 or -ENOMEM.
 */
int machine_state_digest(const struct machine_state *st, uint64_t *digest)
	__attribute__((warn_unused_result));

/*
 * Where a and b differ in what the digest covers: "x86_vcpu[1] field
 * 'lapic'" into why, and true; false when they digest the same.
 */
bool machine_state_diff(const struct machine_state *a, const struct machine_state *b,
			char *why, size_t len);

/*
 * Decode len bytes of untrusted records for a machine of nr_vcpus vCPUs
 * into st (allocated here; free with machine_state_free()).  Every record
 * of a single-instance device must be present once, in order; a
 * multi-instance model has records NAME.0, NAME.1, ... in order (as many
 * as the source had); nothing may follow.  Returns 0 or -errno with the
 * reason in err.
 */
int machine_state_decode(const void *data, size_t len, unsigned nr_vcpus,
			 struct machine_state *st, struct vmstate_error *err)
	__attribute__((warn_unused_result));

/*
 * Does decoded state st fit machine m: the same device instances (a disk
 * the source had must be here, and no other), each passing its model's
 * check (same disk size, rings inside this RAM)?  Returns 0 or -EINVAL
 * with the reason in err.
 */
int machine_state_match(const struct machine *m, const struct machine_state *st,
			struct vmstate_error *err) __attribute__((warn_unused_result));

/*
 * Load decoded state into machine m (checked with machine_state_match
 * here too), whose vCPUs have not run since their
 * KVM objects were created.  The devices do not touch guest memory
 * until machine_devices_resume().  Returns 0 or -errno (logged).
 */
int machine_state_apply(struct machine *m, const struct machine_state *st)
	__attribute__((warn_unused_result));

/*
 * Let the devices of m take up what a loaded state left pending
 * (device_ops.resume): after machine_state_apply(), once guest memory
 * is complete or served on demand, before the vCPUs start.
 */
void machine_devices_resume(struct machine *m);

void machine_state_free(struct machine_state *st);

/*
 * Save all state of paused machine m, destroy its KVM VM, create a new one
 * on the same RAM and load the state: what migration does, within one
 * process.  The machine stays paused.  Returns 0 or -errno (logged).
 */
int machine_state_rebuild(struct machine *m) __attribute__((warn_unused_result));

#endif
