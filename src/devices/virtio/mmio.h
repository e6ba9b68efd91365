/*
 * The virtio-mmio transport, version 2 (virtio 1.1 §4.2.2): a 512-byte
 * register window per device, feature negotiation, device status, queue
 * setup, a read-only device configuration and the interrupt status.  The
 * data path bypasses it: a QueueNotify write signals the queue's kick
 * eventfd (KVM does it itself when the board registered the fd as an
 * ioeventfd; else the vCPU's MMIO exit lands here and we do it), and
 * interrupts go out through the board's raise callback (irqfd, or
 * KVM_IRQ_LINE).  Knows no KVM and no particular device.
 */
#ifndef FERRY_DEVICES_VIRTIO_MMIO_H
#define FERRY_DEVICES_VIRTIO_MMIO_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "devices/virtio/queue.h"
#include "devices/virtio/virtio.h"
#include "util/vmstate.h"
#include "vmm/iobus.h"

#define VIRTIO_MMIO_SIZE	0x200
#define VIRTIO_MMIO_MAX_QUEUES	8
#define VIRTIO_MMIO_CONFIG_MAX	256

/* What the device model behind a transport does for it. */
struct virtio_mmio_dev_ops {
	/*
	 * The driver reset the device (status 0): stop taking chains and wait
	 * until none is in flight.  Called on the vCPU thread, without the
	 * lock; the transport forgets its queues afterwards.
	 */
	void (*reset)(void *dev);
};

struct virtio_mmio_config {
	uint32_t device_id;		/* VIRTIO_ID_* */
	uint64_t features;		/* device-specific bits (the transport adds its own) */
	unsigned nr_queues;		/* 1..VIRTIO_MMIO_MAX_QUEUES */
	const void *config;		/* device configuration, read-only to the driver */
	uint32_t config_len;
	const struct guest_memory *ram;
	/* Report ferry's writes to RAM (migration); may be NULL. */
	void (*dirty)(void *opaque, uint64_t gpa, uint64_t len);
	/* Send one edge on the device's IRQ line. */
	void (*raise)(void *opaque);
	void *opaque;			/* for dirty and raise */
	const struct virtio_mmio_dev_ops *ops;
	void *dev;
};

/*
 * One transport.  `lock` guards every field below it; vCPU threads take
 * it for register accesses, the device's I/O thread while it pops and
 * pushes chains and raises interrupts.  The fds and the config are fixed
 * after virtio_mmio_init().
 */
struct virtio_mmio {
	int kick_fd[VIRTIO_MMIO_MAX_QUEUES];	/* eventfd per queue */
	uint32_t device_id;
	uint64_t device_features;
	unsigned nr_queues;
	uint8_t config[VIRTIO_MMIO_CONFIG_MAX];
	uint32_t config_len;
	struct virtq_mem mem;
	void (*raise)(void *opaque);
	void *raise_opaque;
	const struct virtio_mmio_dev_ops *ops;
	void *dev;

	pthread_mutex_t lock;
	uint8_t status;
	uint8_t isr;
	uint32_t device_features_sel, driver_features_sel, queue_sel;
	uint64_t driver_features;
	uint32_t config_generation;
	struct virtq queues[VIRTIO_MMIO_MAX_QUEUES];
	bool warned;			/* a guest error was logged already */
};

/* Returns 0 or -errno (eventfds). */
int virtio_mmio_init(struct virtio_mmio *t, const struct virtio_mmio_config *c)
	__attribute__((warn_unused_result));
void virtio_mmio_destroy(struct virtio_mmio *t);

/* Register access at `offset` in the window; any width, hostile values. */
void virtio_mmio_read(struct virtio_mmio *t, uint64_t offset, void *data, unsigned len);
void virtio_mmio_write(struct virtio_mmio *t, uint64_t offset, const void *data, unsigned len);
extern const struct iobus_ops virtio_mmio_iobus_ops;	/* opaque = struct virtio_mmio * */

/*
 * The guest pages the device is touched through first when it runs again
 * (virtq_first_pages() of each queue), at most max into out; returns how
 * many.  Takes the lock.
 */
unsigned virtio_mmio_first_pages(struct virtio_mmio *t, uint64_t *out, unsigned max);

/* The driver set DRIVER_OK and the device does not need a reset.  Lock held. */
bool virtio_mmio_running(const struct virtio_mmio *t);
/* Raise `bits` (VIRTIO_MMIO_INT_*) in InterruptStatus and send an edge.  Lock held. */
void virtio_mmio_interrupt(struct virtio_mmio *t, uint8_t bits);
/*
 * The guest broke the device (a garbage ring): set DEVICE_NEEDS_RESET and
 * tell the driver (§2.1.2), logging `why` once.  Lock held.
 */
void virtio_mmio_fail(struct virtio_mmio *t, const char *why);

/* ---- migration --------------------------------------------------------- */

/* The transport and its queues, as they migrate. */
struct virtio_mmio_state {
	uint32_t device_id;
	uint8_t status, isr;
	uint32_t device_features_sel, driver_features_sel, queue_sel;
	uint64_t device_features, driver_features;
	uint32_t config_generation;
	uint32_t config_len;
	uint8_t config[VIRTIO_MMIO_CONFIG_MAX];
	uint32_t nr_queues;
	struct virtq_state queues[VIRTIO_MMIO_MAX_QUEUES];
};

/* Nested description: checks what needs no machine. */
extern const struct vmstate_desc virtio_mmio_state_vmsd;

/* Copy the state out.  Takes the lock. */
void virtio_mmio_save(struct virtio_mmio *t, struct virtio_mmio_state *s);
/*
 * Does state s (already through its vmstate checks) fit this transport:
 * same device, features, configuration and queues, rings inside this RAM?
 * Returns 0 or -EINVAL with the reason in why.
 */
int virtio_mmio_check(const struct virtio_mmio *t, const struct virtio_mmio_state *s,
		      char *why, size_t whylen) __attribute__((warn_unused_result));
/* Apply a checked state.  Takes the lock.  Returns 0 or -EINVAL. */
int virtio_mmio_load(struct virtio_mmio *t, const struct virtio_mmio_state *s)
	__attribute__((warn_unused_result));

#endif
