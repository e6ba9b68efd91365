/*
 * virtio-blk (virtio 1.1 §5.2) on a virtio-mmio transport, backed by a
 * disk backend (devices/block/backend.h: a raw file, an NBD export).  One
 * I/O thread per disk pops requests from the queue when kicked (the
 * queue's eventfd, which KVM signals itself through an ioeventfd), starts
 * them on the backend, and on completion writes the status, returns the
 * chain on the used ring and interrupts: the vCPU threads never wait for
 * the disk.
 *
 * A disk is active (it may write its image, and holds the image's lock)
 * or not: a migration's destination opens it inactive and activates it
 * when told to run the guest; the source inactivates it at the
 * switchover (docs/devices.md, "Locking").  An inactive disk takes no
 * request from its queue.
 */
#ifndef FERRY_DEVICES_VIRTIO_BLK_H
#define FERRY_DEVICES_VIRTIO_BLK_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "devices/block/backend.h"
#include "devices/block/dirty.h"
#include "devices/block/gate.h"
#include "devices/device.h"
#include "devices/virtio/mmio.h"

/* Request types and statuses (§5.2.6). */
#define VIRTIO_BLK_T_IN			0
#define VIRTIO_BLK_T_OUT		1
#define VIRTIO_BLK_T_FLUSH		4
#define VIRTIO_BLK_T_GET_ID		8
#define VIRTIO_BLK_T_DISCARD		11
#define VIRTIO_BLK_T_WRITE_ZEROES	13

#define VIRTIO_BLK_S_OK			0
#define VIRTIO_BLK_S_IOERR		1
#define VIRTIO_BLK_S_UNSUPP		2

/* Feature bits (§5.2.3). */
#define VIRTIO_BLK_F_SEG_MAX		2
#define VIRTIO_BLK_F_RO			5
#define VIRTIO_BLK_F_BLK_SIZE		6
#define VIRTIO_BLK_F_FLUSH		9
#define VIRTIO_BLK_F_DISCARD		13
#define VIRTIO_BLK_F_WRITE_ZEROES	14

#define VIRTIO_BLK_CONFIG_LEN		60
#define VIRTIO_BLK_MAX_IO		(32u << 20)	/* bytes in one READ/WRITE */
#define VIRTIO_BLK_MAX_SEGS		32		/* DISCARD/WRITE_ZEROES ranges */
#define VIRTIO_BLK_MAX_RANGE_SECTORS	(1u << 22)	/* 2 GiB per range */

struct virtio_blk_req;

/* What the board gives a disk. */
struct virtio_blk_config {
	const struct block_config *disk;
	unsigned index;			/* disk number, for messages and records */
	const struct guest_memory *ram;
	void (*dirty)(void *opaque, uint64_t gpa, uint64_t len);
	void (*raise)(void *opaque);
	void *opaque;
	bool inactive;			/* open without the right to write (incoming) */
};

/*
 * One disk.  `t.lock` guards the fields marked (lock); the I/O thread owns
 * those marked (io); the rest is fixed after virtio_blk_create().
 */
struct virtio_blk {
	struct virtio_mmio t;
	struct block_backend bk;	/* (io) after create; activate/inactivate: the
					   machine's saver, with the thread idle */
	struct block_config cfg;
	unsigned index;
	uint64_t capacity;		/* 512-byte sectors */
	int ctl_fd;			/* eventfd: stop or drain asked */
	pthread_t thread;
	bool thread_started;
	pthread_cond_t cond;		/* in_flight or drain_done changed */
	bool stop;			/* (lock) the thread must end */
	uint64_t drain_req, drain_done;	/* (lock) quiesce rounds asked / done */
	uint64_t flush_req;		/* (lock) the drain round that also wants a flush */
	int flush_err;			/* (lock) its result */
	bool active;			/* (lock) may take requests and write the image */
	unsigned in_flight;		/* (lock) requests popped, not yet done, orphans
					   included */
	/*
	 * (lock) Driver resets so far.  A reset waits at most reset_wait_ms
	 * for what is in flight; requests still in the backend then are
	 * orphans (popped in an older generation): they finish, but write
	 * no status and push nothing on the ring the driver has reset.
	 */
	uint64_t gen;
	unsigned reset_wait_ms;		/* fixed after create (tests lower it) */
	unsigned stop_wait_ms;		/* destroy's wait for the backend (the same) */
	bool resubmitted;		/* (io) a short read/write went back to the backend */
	struct virtio_blk_req *reqs;	/* (io) VIRTQ_MAX_SIZE of them */
	uint16_t free_slots[VIRTQ_MAX_SIZE];	/* (io) */
	unsigned nr_free;		/* (io) */
	/* (lock) gen + 1 of the request that holds each head now; else not busy. */
	uint64_t head_busy[VIRTQ_MAX_SIZE];
	/*
	 * (io) Writes done on the image whose completion waits for the dirty
	 * tracker's ack (write-blocking), oldest first; still in_flight.
	 */
	struct virtio_blk_req *held_head, *held_tail;
	/*
	 * (io) Requests that touch a range the gate lacks (post-copy), in
	 * arrival order; started over when the gate fills something.  Still
	 * in_flight.
	 */
	struct virtio_blk_req *parked_head, *parked_tail;
	/*
	 * What the guest wrote, while someone tracks it (its own lock): every
	 * completed WRITE, DISCARD and WRITE_ZEROES range is marked.  While
	 * the tracker is blocking, a marked request is held (held_head) until
	 * the tracker acknowledges it; its ack wakes this disk's thread.
	 */
	struct block_dirty dirty;
	/*
	 * Ranges whose content is not here yet (its own lock): a request on
	 * one is parked until the gate fills it; the gate's fill wakes this
	 * disk's thread.
	 */
	struct block_gate gate;
};

/*
 * Open the disk, build its transport and start its I/O thread.  On
 * failure prints why and returns -errno (the image cannot be opened,
 * cache=none on a file system without O_DIRECT, no io_uring, ...).
 */
int virtio_blk_create(struct virtio_blk *b, const struct virtio_blk_config *c)
	__attribute__((warn_unused_result));
/*
 * Stop the thread (after what is in flight, for at most stop_wait_ms: what
 * a hung backend still holds is abandoned) and free everything.
 */
void virtio_blk_destroy(struct virtio_blk *b);

/*
 * Wait until every request taken from the queue is used (quiesce), and
 * with flush, until the backend has also made every write durable.
 * 0 or -errno.
 */
int virtio_blk_drain(struct virtio_blk *b, bool flush) __attribute__((warn_unused_result));

/* The migrated state of one disk. */
struct virtio_blk_state {
	struct virtio_mmio_state t;
};

extern const struct vmstate_desc virtio_blk_vmsd;
/* Its registry entry (dev = struct virtio_blk *, state = struct virtio_blk_state). */
extern const struct device_ops virtio_blk_device_ops;

#endif
