/*
 * The device registry: every device model the board can instantiate, by
 * id, with what migration needs of it.  A new device is a new file with
 * its ops and one line in device_table (device.c); the board creates the
 * instances and hands each to the ops as `dev`.  Machine state (board/
 * machine_state.c) walks the machine's instances, which are in table
 * order (and, within a model, in instance order), to quiesce, save and
 * load them, so the order of the ids is the order of the records on the
 * wire: append new devices, never reorder.
 */
#ifndef FERRY_DEVICES_DEVICE_H
#define FERRY_DEVICES_DEVICE_H

#include <stdbool.h>
#include <stddef.h>

#include "util/vmstate.h"

enum device_id {
	DEVICE_SERIAL,		/* COM1: the 8250 UART (serial.c) */
	DEVICE_DEBUG_EXIT,	/* the isa-debug-exit port (debug_exit.c) */
	DEVICE_VIRTIO_BLK,	/* disks: virtio-blk over virtio-mmio (virtio/blk.c) */
	DEVICE_VIRTIO_NET,	/* NICs: virtio-net over virtio-mmio (virtio/net.c) */
	DEVICE_NR
};

/*
 * A device model's migration hooks.  Called with the vCPUs paused (or not
 * yet started, for load) by the thread that saves or loads the machine:
 * the migration thread at the switchover, the main thread of an incoming
 * VM, the control thread for a rebuild.  The device's own lock still
 * guards it against its backend threads (chardev input, I/O completions).
 */
struct device_ops {
	const char *name;	/* for messages */
	/*
	 * The device's migrated state (a struct of vmsd->size bytes), one
	 * record named vmsd->name; NULL for a device with no state (no record).
	 */
	const struct vmstate_desc *vmsd;
	/*
	 * A machine may have any number of instances, 0 included (disks): the
	 * record of instance n is named "<vmsd->name>.<n>", n = 0, 1, ... in
	 * order.  false: exactly one instance, whose record is vmsd->name.
	 */
	bool multi;
	/* Copy the device's state into `state`.  Returns 0 or -errno. */
	int (*save)(void *dev, void *state);
	/*
	 * Does `state` (checked by vmstate_load() already) fit this instance,
	 * on this machine: a disk of the same size, rings inside this RAM?
	 * Run on the destination when the state arrives, before anything is
	 * loaded.  NULL: any state fits.  Returns 0 or -errno with the
	 * reason in why.
	 */
	int (*check)(void *dev, const void *state, char *why, size_t whylen);
	/*
	 * Make the device run from `state`, which vmstate_load() and check
	 * have passed already.  Returns 0 or -errno.
	 */
	int (*load)(void *dev, const void *state);
	/*
	 * After a load, once guest memory is in place (post-copy: once
	 * userfaultfd serves it) and just before the vCPUs run: take up what
	 * the loaded state leaves pending (virtio-blk: chains the source
	 * never took, which no kick will announce again).  Until then a
	 * loaded device must not read guest memory, which may still be stale.
	 * NULL: nothing pending.
	 */
	void (*resume)(void *dev);
	/*
	 * At the switchover, right after the vCPUs paused and before the final
	 * pass over RAM and the save: finish or stop everything in flight, so
	 * that memory and state are complete and stay still.  NULL: nothing to
	 * drain.  Must be idempotent (the save calls it again) and leave the
	 * device able to run on if the migration fails and the guest resumes.
	 * Returns 0 or -errno (the migration then fails, the guest resumes).
	 *
	 * serial: nothing in flight (output is written at once, input is
	 * register state).  virtio-blk completes its in-flight requests here
	 * (and takes what the ring still offers): waits for the backend to
	 * finish each one, writes its status and used-ring entry into guest
	 * memory and raises the interrupt, so that no request is half done
	 * on either host and the final RAM pass carries the data and the
	 * used ring.  virtio-net takes nothing from the tap and touches no
	 * ring while the guest is paused, so its quiesce only waits out a
	 * frame being delivered; frames arriving meanwhile stay in the tap
	 * (the guest sees a short loss, as on a real link).
	 */
	int (*quiesce)(void *dev);
	/*
	 * The lock moves with the guest (QEMU's inactivate/activate; see
	 * docs/devices.md, "Locking").  inactivate: the source at the
	 * switchover, after quiesce and before the state goes: make every
	 * acknowledged write durable (flush), stop all I/O, give up what
	 * keeps others from writing the device's backing store (a disk's
	 * image lock).  activate: take it (again) before the guest runs: the
	 * destination on GO or at the post-copy switch, a source whose
	 * migration failed before it resumes.  Both idempotent; NULL: nothing
	 * to hand over.  Called like the others, by the thread that saves or
	 * loads the machine.  Return 0 or -errno (activate: -EBUSY when
	 * another process holds it, with the whole reason in why).
	 */
	int (*inactivate)(void *dev);
	int (*activate)(void *dev, char *why, size_t whylen);
	/*
	 * The guest pages the device touches first when it runs again (a
	 * virtio device: its rings and the buffer its next frame or request
	 * goes to), so that a post-copy sends them before the guest runs
	 * (docs/postcopy.md, "First pages").  On the source, the machine
	 * paused and quiesced.  At most max gpas into gpa; returns how many.
	 * NULL: none.
	 */
	unsigned (*first_pages)(void *dev, uint64_t *gpa, unsigned max);
};

/* Indexed by enum device_id; every entry set. */
extern const struct device_ops *const device_table[DEVICE_NR];

#endif
