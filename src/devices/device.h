/*
 * The device registry: every device model the board can instantiate, by
 * id, with what migration needs of it.  A new device is a new file with
 * its ops and one line in device_table (device.c); the board creates the
 * instance and hands it to the ops as `dev`.  Machine state (board/
 * machine_state.c) walks this table to quiesce, save and load devices,
 * in table order, so the order of the ids is the order of the records on
 * the wire: append new devices, never reorder.
 */
#ifndef FERRY_DEVICES_DEVICE_H
#define FERRY_DEVICES_DEVICE_H

#include "util/vmstate.h"

enum device_id {
	DEVICE_SERIAL,		/* COM1: the 8250 UART (serial.c) */
	DEVICE_DEBUG_EXIT,	/* the isa-debug-exit port (debug_exit.c) */
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
	/* Copy the device's state into `state`.  Returns 0 or -errno. */
	int (*save)(void *dev, void *state);
	/*
	 * Make the device run from `state`, which vmstate_load() has
	 * checked already (ranges, post_load).  Returns 0 or -errno.
	 */
	int (*load)(void *dev, const void *state);
	/*
	 * At the switchover, right after the vCPUs paused and before the final
	 * pass over RAM and the save: finish or stop everything in flight, so
	 * that memory and state are complete and stay still.  NULL: nothing to
	 * drain.  Must be idempotent (the save calls it again) and leave the
	 * device able to run on if the migration fails and the guest resumes.
	 * Returns 0 or -errno (the migration then fails, the guest resumes).
	 *
	 * serial: nothing in flight (output is written at once, input is
	 * register state).  virtio-blk will complete its in-flight requests
	 * here: wait for the backend to finish each one, write its status and
	 * used-ring entry into guest memory and raise the interrupt, so that
	 * no request is half done on either host and the final RAM pass
	 * carries the data and the used ring.  virtio-net: stop taking
	 * packets from the tap (the guest sees a short loss, as on a real
	 * link).
	 */
	int (*quiesce)(void *dev);
};

/* Indexed by enum device_id; every entry set. */
extern const struct device_ops *const device_table[DEVICE_NR];

#endif
