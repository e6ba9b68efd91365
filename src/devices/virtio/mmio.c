#include "devices/virtio/mmio.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "util/le.h"
#include "util/log.h"

/* Offered on every device: what this transport and queue.c implement. */
#define VIRTIO_MMIO_TRANSPORT_FEATURES						\
	(VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_RING_F_INDIRECT_DESC) |	\
	 VIRTIO_BIT(VIRTIO_RING_F_EVENT_IDX))

int virtio_mmio_init(struct virtio_mmio *t, const struct virtio_mmio_config *c)
{
	memset(t, 0, sizeof(*t));
	for (unsigned q = 0; q < VIRTIO_MMIO_MAX_QUEUES; q++)
		t->kick_fd[q] = -1;
	if (!c->nr_queues || c->nr_queues > VIRTIO_MMIO_MAX_QUEUES ||
	    c->config_len > VIRTIO_MMIO_CONFIG_MAX)
		return -EINVAL;
	for (unsigned q = 0; q < c->nr_queues; q++) {
		t->kick_fd[q] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (t->kick_fd[q] < 0) {
			int err = -errno;
			virtio_mmio_destroy(t);
			return err;
		}
	}
	pthread_mutex_init(&t->lock, NULL);
	t->device_id = c->device_id;
	t->device_features = c->features | VIRTIO_MMIO_TRANSPORT_FEATURES;
	t->nr_queues = c->nr_queues;
	memcpy(t->config, c->config, c->config_len);
	t->config_len = c->config_len;
	t->mem = (struct virtq_mem){ .ram = c->ram, .dirty = c->dirty, .opaque = c->opaque };
	t->raise = c->raise;
	t->raise_opaque = c->opaque;
	t->ops = c->ops;
	t->dev = c->dev;
	return 0;
}

void virtio_mmio_destroy(struct virtio_mmio *t)
{
	for (unsigned q = 0; q < VIRTIO_MMIO_MAX_QUEUES; q++) {
		if (t->kick_fd[q] >= 0)
			close(t->kick_fd[q]);
		t->kick_fd[q] = -1;
	}
	if (t->nr_queues)
		pthread_mutex_destroy(&t->lock);
	t->nr_queues = 0;
}

bool virtio_mmio_running(const struct virtio_mmio *t)
{
	return (t->status & VIRTIO_STATUS_DRIVER_OK) &&
	       !(t->status & (VIRTIO_STATUS_NEEDS_RESET | VIRTIO_STATUS_FAILED));
}

void virtio_mmio_interrupt(struct virtio_mmio *t, uint8_t bits)
{
	t->isr |= bits;
	if (t->raise)
		t->raise(t->raise_opaque);
}

void virtio_mmio_fail(struct virtio_mmio *t, const char *why)
{
	if (!t->warned)
		pr_warn("virtio device %u: %s; it needs a reset", t->device_id, why);
	t->warned = true;
	if (t->status & VIRTIO_STATUS_NEEDS_RESET)
		return;
	t->status |= VIRTIO_STATUS_NEEDS_RESET;
	if (t->status & VIRTIO_STATUS_DRIVER_OK)
		virtio_mmio_interrupt(t, VIRTIO_MMIO_INT_CONFIG);
}

/* A guest mistake that only the guest suffers from: logged once. */
static void virtio_mmio_guest_error(struct virtio_mmio *t, const char *what)
{
	if (!t->warned)
		pr_warn("virtio device %u: guest %s (ignored; further errors not logged)",
			t->device_id, what);
	t->warned = true;
}

static struct virtq *virtio_mmio_cur(struct virtio_mmio *t)
{
	return t->queue_sel < t->nr_queues ? &t->queues[t->queue_sel] : NULL;
}

static uint32_t virtio_mmio_reg_read(struct virtio_mmio *t, uint64_t off)
{
	struct virtq *q = virtio_mmio_cur(t);

	switch (off) {
	case VIRTIO_MMIO_MAGIC_VALUE:	return VIRTIO_MMIO_MAGIC;
	case VIRTIO_MMIO_VERSION:	return VIRTIO_MMIO_VERSION_2;
	case VIRTIO_MMIO_DEVICE_ID:	return t->device_id;
	case VIRTIO_MMIO_VENDOR_ID:	return VIRTIO_MMIO_VENDOR;
	case VIRTIO_MMIO_DEVICE_FEATURES:
		return t->device_features_sel > 1 ? 0 :
		       (uint32_t)(t->device_features >> (32 * t->device_features_sel));
	case VIRTIO_MMIO_QUEUE_NUM_MAX:	return q ? VIRTQ_MAX_SIZE : 0;
	case VIRTIO_MMIO_QUEUE_READY:	return q ? q->ready : 0;
	case VIRTIO_MMIO_INTERRUPT_STATUS: return t->isr;
	case VIRTIO_MMIO_STATUS:	return t->status;
	case VIRTIO_MMIO_CONFIG_GENERATION: return t->config_generation;
	default:			return 0;	/* write-only or reserved */
	}
}

/* Queue registers are only writable while the queue is off (§4.2.2.3). */
static void virtio_mmio_queue_write(struct virtio_mmio *t, struct virtq *q, uint64_t off,
				    uint32_t v)
{
	uint64_t *addr = NULL;

	if (q->ready && off != VIRTIO_MMIO_QUEUE_READY) {
		virtio_mmio_guest_error(t, "changed a queue while it is ready");
		return;
	}
	switch (off) {
	case VIRTIO_MMIO_QUEUE_NUM:
		q->size = v > 0xffff ? 0 : (uint16_t)v;
		return;
	case VIRTIO_MMIO_QUEUE_READY:
		if (!v) {
			/*
			 * Off: its rings are forgotten too.  Its size and addresses
			 * may now change; a request still in flight must not push
			 * through the old views sized for the old ring (a size of 0
			 * divides by zero, a larger one writes past the ring).
			 */
			q->ready = false;
			q->desc = q->avail = q->used = NULL;
			return;
		}
		if (q->ready)
			return;
		/* A ring outside RAM is never used: the driver reads back 0. */
		if (virtq_setup(q, t->mem.ram)) {
			virtio_mmio_guest_error(t, "made a queue ready with a bad size or ring address");
			return;
		}
		q->ready = true;
		return;
	case VIRTIO_MMIO_QUEUE_DESC_LOW: case VIRTIO_MMIO_QUEUE_DESC_HIGH:
		addr = &q->desc_gpa;
		break;
	case VIRTIO_MMIO_QUEUE_AVAIL_LOW: case VIRTIO_MMIO_QUEUE_AVAIL_HIGH:
		addr = &q->avail_gpa;
		break;
	case VIRTIO_MMIO_QUEUE_USED_LOW: case VIRTIO_MMIO_QUEUE_USED_HIGH:
		addr = &q->used_gpa;
		break;
	default:
		return;
	}
	unsigned shift = (off & 4) ? 32 : 0;
	*addr = (*addr & ~(0xffffffffULL << shift)) | ((uint64_t)v << shift);
}

/* Negotiated ring features go to the queues once the driver accepts them. */
static void virtio_mmio_set_queue_features(struct virtio_mmio *t)
{
	for (unsigned i = 0; i < t->nr_queues; i++) {
		t->queues[i].event_idx = t->driver_features & VIRTIO_BIT(VIRTIO_RING_F_EVENT_IDX);
		t->queues[i].indirect = t->driver_features & VIRTIO_BIT(VIRTIO_RING_F_INDIRECT_DESC);
	}
}

/* Returns true when the device must be reset (status 0 written). */
static bool virtio_mmio_status_write(struct virtio_mmio *t, uint32_t v)
{
	uint8_t s = (uint8_t)(v & VIRTIO_STATUS_ALL);

	if (!v)
		return true;
	if ((s & VIRTIO_STATUS_FEATURES_OK) && !(t->status & VIRTIO_STATUS_FEATURES_OK)) {
		/* Only features we offered, and only virtio 1.x (no legacy layout). */
		if ((t->driver_features & ~t->device_features) ||
		    !(t->driver_features & VIRTIO_BIT(VIRTIO_F_VERSION_1)))
			s &= (uint8_t)~VIRTIO_STATUS_FEATURES_OK;
		else
			virtio_mmio_set_queue_features(t);
	}
	if ((s & VIRTIO_STATUS_DRIVER_OK) && !(s & VIRTIO_STATUS_FEATURES_OK))
		s &= (uint8_t)~VIRTIO_STATUS_DRIVER_OK;
	bool starting = (s & VIRTIO_STATUS_DRIVER_OK) && !(t->status & VIRTIO_STATUS_DRIVER_OK);
	t->status = s | (t->status & VIRTIO_STATUS_NEEDS_RESET);
	/* Chains offered before DRIVER_OK: have the device look once. */
	for (unsigned q = 0; starting && q < t->nr_queues; q++) {
		uint64_t one = 1;
		if (write(t->kick_fd[q], &one, sizeof(one)) < 0)
			pr_debug("virtio kick: %s", strerror(errno));
	}
	return false;
}

/* Returns true when the device must be reset. */
static bool virtio_mmio_reg_write(struct virtio_mmio *t, uint64_t off, uint32_t v)
{
	struct virtq *q = virtio_mmio_cur(t);
	uint64_t one = 1;

	switch (off) {
	case VIRTIO_MMIO_DEVICE_FEATURES_SEL:
		t->device_features_sel = v;
		break;
	case VIRTIO_MMIO_DRIVER_FEATURES_SEL:
		t->driver_features_sel = v;
		break;
	case VIRTIO_MMIO_DRIVER_FEATURES:
		/* Fixed once FEATURES_OK is set (§3.1.1). */
		if (t->driver_features_sel > 1 || (t->status & VIRTIO_STATUS_FEATURES_OK))
			break;
		unsigned shift = 32 * t->driver_features_sel;
		t->driver_features = (t->driver_features & ~(0xffffffffULL << shift)) |
				     ((uint64_t)v << shift);
		break;
	case VIRTIO_MMIO_QUEUE_SEL:
		t->queue_sel = v;
		break;
	case VIRTIO_MMIO_QUEUE_NOTIFY:
		/* KVM did not take it (no ioeventfd, or another value): pass it on. */
		if (v < t->nr_queues && write(t->kick_fd[v], &one, sizeof(one)) < 0)
			pr_debug("virtio kick: %s", strerror(errno));
		break;
	case VIRTIO_MMIO_INTERRUPT_ACK:
		t->isr &= (uint8_t)~v;
		break;
	case VIRTIO_MMIO_STATUS:
		return virtio_mmio_status_write(t, v);
	case VIRTIO_MMIO_QUEUE_NUM: case VIRTIO_MMIO_QUEUE_READY:
	case VIRTIO_MMIO_QUEUE_DESC_LOW: case VIRTIO_MMIO_QUEUE_DESC_HIGH:
	case VIRTIO_MMIO_QUEUE_AVAIL_LOW: case VIRTIO_MMIO_QUEUE_AVAIL_HIGH:
	case VIRTIO_MMIO_QUEUE_USED_LOW: case VIRTIO_MMIO_QUEUE_USED_HIGH:
		if (q)
			virtio_mmio_queue_write(t, q, off, v);
		break;
	default:
		break;
	}
	return false;
}

/* Back to the state after power-on (§2.1.2, §4.2.3.1.1: writing 0). */
static void virtio_mmio_reset(struct virtio_mmio *t)
{
	pthread_mutex_lock(&t->lock);
	/* The device stops taking chains before we wait for it. */
	t->status = 0;
	pthread_mutex_unlock(&t->lock);
	if (t->ops && t->ops->reset)
		t->ops->reset(t->dev);
	pthread_mutex_lock(&t->lock);
	t->isr = 0;
	t->driver_features = 0;
	t->device_features_sel = t->driver_features_sel = t->queue_sel = 0;
	t->warned = false;
	for (unsigned q = 0; q < VIRTIO_MMIO_MAX_QUEUES; q++)
		virtq_reset(&t->queues[q]);
	pthread_mutex_unlock(&t->lock);
}

void virtio_mmio_read(struct virtio_mmio *t, uint64_t off, void *data, unsigned len)
{
	uint8_t *d = data;

	memset(d, 0, len);
	pthread_mutex_lock(&t->lock);
	if (off >= VIRTIO_MMIO_CONFIG) {
		uint64_t c = off - VIRTIO_MMIO_CONFIG;
		if (c < t->config_len && len <= t->config_len - c)
			memcpy(d, t->config + c, len);
	} else if (len == 4 && !(off % 4)) {
		le_put(d, virtio_mmio_reg_read(t, off), 4);
	}
	pthread_mutex_unlock(&t->lock);
}

void virtio_mmio_write(struct virtio_mmio *t, uint64_t off, const void *data, unsigned len)
{
	bool reset = false;

	/* The configuration is read-only; registers are 32-bit, aligned. */
	if (off >= VIRTIO_MMIO_CONFIG || len != 4 || off % 4)
		return;
	pthread_mutex_lock(&t->lock);
	reset = virtio_mmio_reg_write(t, off, (uint32_t)le_get(data, 4));
	pthread_mutex_unlock(&t->lock);
	if (reset)
		virtio_mmio_reset(t);
}

static void virtio_mmio_bus_read(void *opaque, uint64_t off, void *data, unsigned len)
{
	virtio_mmio_read(opaque, off, data, len);
}

static void virtio_mmio_bus_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
	virtio_mmio_write(opaque, off, data, len);
}

const struct iobus_ops virtio_mmio_iobus_ops = {
	.read = virtio_mmio_bus_read,
	.write = virtio_mmio_bus_write,
};

unsigned virtio_mmio_first_pages(struct virtio_mmio *t, uint64_t *out, unsigned max)
{
	unsigned n = 0;

	pthread_mutex_lock(&t->lock);
	for (unsigned i = 0; i < t->nr_queues && n < max; i++)
		n += virtq_first_pages(&t->queues[i], out + n, max - n);
	pthread_mutex_unlock(&t->lock);
	return n;
}
