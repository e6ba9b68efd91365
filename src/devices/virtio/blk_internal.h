/* What blk.c (requests) and blk_dev.c (thread, lifecycle, state) share. */
#ifndef FERRY_DEVICES_VIRTIO_BLK_INTERNAL_H
#define FERRY_DEVICES_VIRTIO_BLK_INTERNAL_H

#include <sys/uio.h>

#include "devices/virtio/blk.h"

/* One request, from pop to used; owned by the I/O thread. */
struct virtio_blk_req {
	uint16_t slot;			/* in b->reqs */
	uint32_t type;
	uint8_t *status;		/* the status byte in guest RAM */
	uint64_t status_gpa;
	uint64_t off;			/* READ/WRITE: where on the disk */
	uint64_t expect;		/* bytes the backend must move */
	uint64_t done;			/* of those, moved so far (short reads/writes) */
	uint64_t data_written;		/* bytes put in guest buffers on success */
	uint64_t gen;			/* b->gen when popped: older ones outlived a reset */
	unsigned nr_iov;		/* iov: what is left to move, from off + done */
	/* Held for a write-blocking consumer (dirty.h): its ticket and its outcome. */
	uint64_t ticket;
	uint8_t held_status;
	uint64_t held_written;
	struct virtio_blk_req *next;	/* in the held or the parked list */
	struct iovec iov[VIRTQ_MAX_CHAIN];
	struct virtq_chain chain;
};

/* blk.c */
void virtio_blk_start(struct virtio_blk *b, struct virtio_blk_req *r);
void virtio_blk_finished(struct virtio_blk *b, struct virtio_blk_req *r, int64_t res);
void virtio_blk_complete(struct virtio_blk *b, struct virtio_blk_req *r, uint8_t status,
			 uint64_t written);
/*
 * Complete r, or, with a ticket from block_dirty_mark, hold it until the
 * disk's dirty tracker acknowledges that ticket (blk_dev.c).
 */
void virtio_blk_complete_marked(struct virtio_blk *b, struct virtio_blk_req *r, uint8_t status,
				uint64_t written, uint64_t ticket);
/*
 * Ask the disk's gate about [off, off + len) before touching it: 1 = go
 * on; 0 = r was parked until the gate fills what it lacks (then it starts
 * over); -EIO = never (complete it with an error).
 */
int virtio_blk_gate(struct virtio_blk *b, struct virtio_blk_req *r, uint64_t off, uint64_t len);
void virtio_blk_build_config(const struct virtio_blk *b, uint8_t *cfg);
uint64_t virtio_blk_features(const struct virtio_blk *b);

/* blk_dev.c */
/* Queue r's I/O on the backend.  Returns 0 or -errno (then complete it yourself). */
int virtio_blk_submit(struct virtio_blk *b, struct virtio_blk_req *r, enum block_op op,
		      uint64_t off) __attribute__((warn_unused_result));
/* Return the chain unused (len 0, no status): a chain with nowhere to put one.  */
void virtio_blk_drop(struct virtio_blk *b, struct virtio_blk_req *r);
/*
 * Give r back to the pool.  Caller holds t.lock.  Returns false when r
 * outlived a reset of the device (an orphan): its chain belongs to a ring
 * the driver has since reset, so nothing may be written to it.
 */
bool virtio_blk_put_req(struct virtio_blk *b, struct virtio_blk_req *r);
/* Did r outlive a reset (its chain is no longer the driver's)?  Lock held. */
bool virtio_blk_orphan(const struct virtio_blk *b, const struct virtio_blk_req *r);

#endif
