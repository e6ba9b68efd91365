/* A virtio-mmio transport's state as it migrates (docs/devices.md). */
#include "devices/virtio/mmio.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Rules between fields that need no machine to check. */
static int virtio_mmio_post_load(void *obj, char *why, size_t whylen)
{
	const struct virtio_mmio_state *s = obj;

	if (s->driver_features & ~s->device_features) {
		snprintf(why, whylen, "driver features 0x%llx include some never offered (0x%llx)",
			 (unsigned long long)s->driver_features,
			 (unsigned long long)s->device_features);
		return -EINVAL;
	}
	if ((s->status & VIRTIO_STATUS_DRIVER_OK) && !(s->status & VIRTIO_STATUS_FEATURES_OK)) {
		snprintf(why, whylen, "status 0x%02x: DRIVER_OK without FEATURES_OK", s->status);
		return -EINVAL;
	}
	return 0;
}

static const struct vmstate_field virtio_mmio_state_fields[] = {
	VMSTATE_U32(struct virtio_mmio_state, device_id),
	VMSTATE_U8_RANGE(struct virtio_mmio_state, status, 0, VIRTIO_STATUS_ALL),
	VMSTATE_U8_RANGE(struct virtio_mmio_state, isr, 0,
			 VIRTIO_MMIO_INT_VRING | VIRTIO_MMIO_INT_CONFIG),
	VMSTATE_U32(struct virtio_mmio_state, device_features_sel),
	VMSTATE_U32(struct virtio_mmio_state, driver_features_sel),
	VMSTATE_U32(struct virtio_mmio_state, queue_sel),
	VMSTATE_U64(struct virtio_mmio_state, device_features),
	VMSTATE_U64(struct virtio_mmio_state, driver_features),
	VMSTATE_U32(struct virtio_mmio_state, config_generation),
	VMSTATE_U32_RANGE(struct virtio_mmio_state, config_len, 0, VIRTIO_MMIO_CONFIG_MAX),
	VMSTATE_VARRAY_U8(struct virtio_mmio_state, config, config_len),
	VMSTATE_U32_RANGE(struct virtio_mmio_state, nr_queues, 1, VIRTIO_MMIO_MAX_QUEUES),
	VMSTATE_VARRAY_STRUCT(struct virtio_mmio_state, queues, nr_queues, virtq_state_vmsd),
	VMSTATE_END,
};

const struct vmstate_desc virtio_mmio_state_vmsd = {
	.name = "virtio-mmio",
	.version = 1,
	.size = sizeof(struct virtio_mmio_state),
	.fields = virtio_mmio_state_fields,
	.post_load = virtio_mmio_post_load,
};

void virtio_mmio_save(struct virtio_mmio *t, struct virtio_mmio_state *s)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_lock(&t->lock);
	s->device_id = t->device_id;
	s->status = t->status;
	s->isr = t->isr;
	s->device_features_sel = t->device_features_sel;
	s->driver_features_sel = t->driver_features_sel;
	s->queue_sel = t->queue_sel;
	s->device_features = t->device_features;
	s->driver_features = t->driver_features;
	s->config_generation = t->config_generation;
	s->config_len = t->config_len;
	memcpy(s->config, t->config, t->config_len);
	s->nr_queues = t->nr_queues;
	for (unsigned q = 0; q < t->nr_queues; q++)
		virtq_save(&t->queues[q], &s->queues[q]);
	pthread_mutex_unlock(&t->lock);
}

int virtio_mmio_check(const struct virtio_mmio *t, const struct virtio_mmio_state *s,
		      char *why, size_t whylen)
{
	if (s->device_id != t->device_id || s->nr_queues != t->nr_queues) {
		snprintf(why, whylen, "a virtio device of id %u with %u queues, where this one "
			 "is id %u with %u", s->device_id, s->nr_queues, t->device_id, t->nr_queues);
		return -EINVAL;
	}
	/* What the driver negotiated must still be on offer, or it breaks. */
	if (s->device_features != t->device_features) {
		snprintf(why, whylen, "features 0x%llx where this device offers 0x%llx",
			 (unsigned long long)s->device_features,
			 (unsigned long long)t->device_features);
		return -EINVAL;
	}
	if (s->config_len != t->config_len || memcmp(s->config, t->config, t->config_len)) {
		snprintf(why, whylen, "a device configuration different from this one's");
		return -EINVAL;
	}
	for (unsigned q = 0; q < s->nr_queues; q++) {
		char qwhy[160];
		if (virtq_state_check(&s->queues[q], t->mem.ram, qwhy, sizeof(qwhy))) {
			snprintf(why, whylen, "queue %u: %s", q, qwhy);
			return -EINVAL;
		}
	}
	return 0;
}

int virtio_mmio_load(struct virtio_mmio *t, const struct virtio_mmio_state *s)
{
	int err = 0;

	if (s->nr_queues != t->nr_queues)
		return -EINVAL;
	pthread_mutex_lock(&t->lock);
	t->status = s->status;
	t->isr = s->isr;
	t->device_features_sel = s->device_features_sel;
	t->driver_features_sel = s->driver_features_sel;
	t->queue_sel = s->queue_sel;
	t->driver_features = s->driver_features;
	t->config_generation = s->config_generation;
	for (unsigned q = 0; q < t->nr_queues && !err; q++) {
		struct virtq *vq = &t->queues[q];
		vq->event_idx = t->driver_features & VIRTIO_BIT(VIRTIO_RING_F_EVENT_IDX);
		vq->indirect = t->driver_features & VIRTIO_BIT(VIRTIO_RING_F_INDIRECT_DESC);
		err = virtq_load(vq, &s->queues[q], t->mem.ram);
	}
	pthread_mutex_unlock(&t->lock);
	return err;
}
