/*
 * Split virtqueues (virtio 1.1 §2.6) over guest RAM that the guest may be
 * rewriting while we read it.  Every descriptor is copied out once and
 * checked before use: its buffer lies inside one RAM region, chains are
 * bounded (no loops), indirect tables are one level deep and inside RAM,
 * no buffer is empty, device-readable buffers come before writable ones.
 * A ring that cannot be trusted any more (an avail index that jumps past
 * the queue size, a head out of range) marks the queue broken: it is never
 * read again until the driver resets the device.
 *
 * Knows no transport and no KVM: tests drive it over plain RAM made with
 * guest_memory_create().
 */
#ifndef FERRY_DEVICES_VIRTIO_QUEUE_H
#define FERRY_DEVICES_VIRTIO_QUEUE_H

#include <stdbool.h>
#include <stdint.h>

#include "devices/virtio/virtio.h"
#include "util/vmstate.h"
#include "vmm/memory.h"

#define VIRTQ_MAX_SIZE	256	/* QueueNumMax we offer */
#define VIRTQ_MAX_CHAIN	256	/* buffers in one chain, indirect or not */

/* Guest RAM as the queue writes it: every host write is reported. */
struct virtq_mem {
	const struct guest_memory *ram;
	/*
	 * Called after ferry wrote [gpa, gpa + len) of guest RAM, which the
	 * KVM dirty log cannot see (migration must send it again).  NULL: none.
	 */
	void (*dirty)(void *opaque, uint64_t gpa, uint64_t len);
	void *opaque;
};

/* One buffer of a chain, checked: host points at len bytes of RAM. */
struct virtq_buf {
	uint64_t gpa;
	uint8_t *host;
	uint32_t len;
};

/* A popped chain: bufs[0 .. nr_read) device-readable, the rest writable. */
struct virtq_chain {
	uint16_t head;
	unsigned nr, nr_read;
	uint64_t read_len, write_len;	/* sums; cannot overflow (256 x 4 GiB) */
	struct virtq_buf bufs[VIRTQ_MAX_CHAIN];
};

/*
 * One queue.  The driver-set fields (size, ready, the three addresses) are
 * written through the transport by vCPU threads; everything is guarded by
 * the transport's lock, which whoever processes the queue (the device's
 * I/O thread) holds while it pops and pushes.
 */
struct virtq {
	uint16_t size;
	bool ready;
	uint64_t desc_gpa, avail_gpa, used_gpa;
	bool event_idx, indirect;	/* negotiated features */
	uint16_t last_avail;		/* next avail slot to take */
	uint16_t used_idx;		/* next used slot to fill */
	uint16_t signalled_used;	/* used_idx at the last interrupt */
	bool signalled_valid;
	bool broken;			/* the ring is not to be trusted any more */
	/* Host views of the rings, set by virtq_setup(); NULL: not set up. */
	uint8_t *desc, *avail, *used;
};

/*
 * The guest pages a set-up queue is touched through first: its three
 * rings and the first buffer of the next chain on offer (read from the
 * hostile ring: a bad index just ends the list).  At most max gpas, page
 * aligned, into out; returns how many.  Transport lock held.
 */
unsigned virtq_first_pages(const struct virtq *q, uint64_t *out, unsigned max);

/* Forget everything (device reset). */
void virtq_reset(struct virtq *q);

/*
 * Check the queue's size (a power of two up to VIRTQ_MAX_SIZE) and that its
 * three rings lie, aligned, inside RAM, and map them.  Returns 0 or -EINVAL
 * (q->desc etc. are then NULL).
 */
int virtq_setup(struct virtq *q, const struct guest_memory *ram)
	__attribute__((warn_unused_result));

/*
 * Take the next available chain into c.  Returns 1 (c filled), 0 (nothing
 * available), -EINVAL (the chain at c->head is malformed: it is consumed,
 * the caller should return it with virtq_push(q, m, c->head, 0)), or
 * -EPROTO (the queue is broken: nothing more will be popped).
 */
int virtq_pop(struct virtq *q, const struct virtq_mem *m, struct virtq_chain *c)
	__attribute__((warn_unused_result));

/* Publish chain `head` as used with `len` bytes written.  Returns 0 or -EPROTO. */
int virtq_push(struct virtq *q, const struct virtq_mem *m, uint16_t head, uint32_t len)
	__attribute__((warn_unused_result));

/*
 * After pushes: does the driver want an interrupt now (EVENT_IDX's
 * used_event, else the avail NO_INTERRUPT flag)?  Records the point.
 */
bool virtq_should_notify(struct virtq *q);

/*
 * About to wait for a kick: ask for one (EVENT_IDX: avail_event =
 * last_avail; else clear NO_NOTIFY) and return true if entries arrived
 * meanwhile (do not wait).
 */
bool virtq_arm(struct virtq *q, const struct virtq_mem *m);

/*
 * Ask the driver not to kick at all (VIRTQ_USED_F_NO_NOTIFY) while the
 * device looks at the ring by itself; virtq_arm asks for kicks again.
 * Without EVENT_IDX only: with it the driver ignores the flag and kicks
 * as avail_event says, which only virtq_arm moves.
 */
void virtq_notify_off(struct virtq *q, const struct virtq_mem *m);

/* Chains taken but not yet used. */
static inline uint16_t virtq_in_flight(const struct virtq *q)
{
	return (uint16_t)(q->last_avail - q->used_idx);
}

/* ---- migration --------------------------------------------------------- */

/* What migrates of a queue (the host views are rebuilt by virtq_setup). */
struct virtq_state {
	uint16_t size;
	uint8_t ready;
	uint8_t broken;
	uint64_t desc, avail, used;
	uint16_t last_avail, used_idx, signalled_used;
	uint8_t signalled_valid;
};

/* Nested description (no RAM checks: see virtq_state_check). */
extern const struct vmstate_desc virtq_state_vmsd;

void virtq_save(const struct virtq *q, struct virtq_state *s);
/*
 * Check a loaded state against this RAM (rings inside it) without touching
 * any queue.  Returns 0 or -EINVAL with the reason in why.
 */
int virtq_state_check(const struct virtq_state *s, const struct guest_memory *ram,
		      char *why, size_t whylen) __attribute__((warn_unused_result));
/* Apply a checked state.  Returns 0 or -EINVAL (rings outside RAM). */
int virtq_load(struct virtq *q, const struct virtq_state *s, const struct guest_memory *ram)
	__attribute__((warn_unused_result));

#endif
