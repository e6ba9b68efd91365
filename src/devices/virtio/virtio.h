/*
 * Numbers from the virtio 1.1 specification that the transport, the queues
 * and the devices share: MMIO registers (§4.2.2), device status (§2.1),
 * feature bits (§6), split-ring layout (§2.6).  Everything in guest memory
 * and in the registers is little-endian; ferry only runs on x86.
 */
#ifndef FERRY_DEVICES_VIRTIO_VIRTIO_H
#define FERRY_DEVICES_VIRTIO_VIRTIO_H

#include <stdint.h>

/* virtio-mmio registers, version 2 (non-legacy). */
#define VIRTIO_MMIO_MAGIC_VALUE		0x000	/* "virt" */
#define VIRTIO_MMIO_VERSION		0x004
#define VIRTIO_MMIO_DEVICE_ID		0x008
#define VIRTIO_MMIO_VENDOR_ID		0x00c
#define VIRTIO_MMIO_DEVICE_FEATURES	0x010
#define VIRTIO_MMIO_DEVICE_FEATURES_SEL	0x014
#define VIRTIO_MMIO_DRIVER_FEATURES	0x020
#define VIRTIO_MMIO_DRIVER_FEATURES_SEL	0x024
#define VIRTIO_MMIO_QUEUE_SEL		0x030
#define VIRTIO_MMIO_QUEUE_NUM_MAX	0x034
#define VIRTIO_MMIO_QUEUE_NUM		0x038
#define VIRTIO_MMIO_QUEUE_READY		0x044
#define VIRTIO_MMIO_QUEUE_NOTIFY	0x050
#define VIRTIO_MMIO_INTERRUPT_STATUS	0x060
#define VIRTIO_MMIO_INTERRUPT_ACK	0x064
#define VIRTIO_MMIO_STATUS		0x070
#define VIRTIO_MMIO_QUEUE_DESC_LOW	0x080
#define VIRTIO_MMIO_QUEUE_DESC_HIGH	0x084
#define VIRTIO_MMIO_QUEUE_AVAIL_LOW	0x090
#define VIRTIO_MMIO_QUEUE_AVAIL_HIGH	0x094
#define VIRTIO_MMIO_QUEUE_USED_LOW	0x0a0
#define VIRTIO_MMIO_QUEUE_USED_HIGH	0x0a4
#define VIRTIO_MMIO_CONFIG_GENERATION	0x0fc
#define VIRTIO_MMIO_CONFIG		0x100

#define VIRTIO_MMIO_MAGIC		0x74726976
#define VIRTIO_MMIO_VERSION_2		2
#define VIRTIO_MMIO_VENDOR		0x59525246	/* "FRRY" */

/* InterruptStatus bits. */
#define VIRTIO_MMIO_INT_VRING		0x1
#define VIRTIO_MMIO_INT_CONFIG		0x2

/* Device status (§2.1). */
#define VIRTIO_STATUS_ACKNOWLEDGE	0x01
#define VIRTIO_STATUS_DRIVER		0x02
#define VIRTIO_STATUS_DRIVER_OK		0x04
#define VIRTIO_STATUS_FEATURES_OK	0x08
#define VIRTIO_STATUS_NEEDS_RESET	0x40
#define VIRTIO_STATUS_FAILED		0x80
#define VIRTIO_STATUS_ALL		0xcf

/* Transport and ring feature bits (§6). */
#define VIRTIO_RING_F_INDIRECT_DESC	28
#define VIRTIO_RING_F_EVENT_IDX		29
#define VIRTIO_F_VERSION_1		32

/* Device ids (§5). */
#define VIRTIO_ID_NET			1
#define VIRTIO_ID_BLOCK			2

/* Split virtqueue layout (§2.6). */
#define VIRTQ_DESC_F_NEXT		1
#define VIRTQ_DESC_F_WRITE		2
#define VIRTQ_DESC_F_INDIRECT		4
#define VIRTQ_AVAIL_F_NO_INTERRUPT	1
#define VIRTQ_USED_F_NO_NOTIFY		1

struct virtq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

struct virtq_used_elem {
	uint32_t id;
	uint32_t len;
};

#define VIRTIO_BIT(b) (1ULL << (b))

#endif
