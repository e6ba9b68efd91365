/*
 * virtio.h - virtio-mmio transport and split virtqueues for the probe's
 * ring-3 drivers (virtio 1.x "MMIO version 2", and legacy version 1).
 *
 * Devices are listed on the command line the Linux way,
 * virtio_mmio.device=SIZE@ADDR:IRQ[:ID]; the first 4 GiB (where such
 * windows live) are identity mapped user-accessible, so ring 3 reaches the
 * registers with plain loads and stores, which trap to the VMM.  The probe
 * runs with interrupts off: drivers poll their used rings and ask devices
 * not to interrupt (VIRTQ_AVAIL_F_NO_INTERRUPT).
 */
#ifndef VIRTIO_H
#define VIRTIO_H

#include "probe.h"

#define VIRTIO_MAX_DEVS         8

/* device IDs */
#define VIRTIO_ID_NET           1
#define VIRTIO_ID_BLOCK         2

/* feature bits */
#define VIRTIO_F_VERSION_1      32

/* interrupt causes (InterruptStatus) */
#define VIRTIO_ISR_VRING        1
#define VIRTIO_ISR_CONFIG       2

/* split virtqueue layout (virtio 1.x, 2.7) */
struct vring_desc {
	u64 addr;
	u32 len;
	u16 flags;
	u16 next;
};
#define VRING_DESC_F_NEXT       1
#define VRING_DESC_F_WRITE      2

struct vring_avail {
	u16 flags;
	u16 idx;
	u16 ring[];
};
#define VRING_AVAIL_F_NO_INTERRUPT 1

struct vring_used_elem {
	u32 id;
	u32 len;
};
struct vring_used {
	u16 flags;
	u16 idx;
	struct vring_used_elem ring[];
};
#define VRING_USED_F_NO_NOTIFY  1

/* Where the command line says a transport is. */
struct virtio_loc {
	u64 base, size;
	u32 irq;
};

/* One transport.  Owned by the BSP, like every driver. */
struct virtio_dev {
	struct virtio_loc loc;
	u32 version;            /* 1 = legacy, 2 = virtio 1.x */
	u32 device_id;          /* 0 = no device behind this window */
	u64 features;           /* negotiated */
	bool claimed;           /* a driver uses it */
};

struct virtq {
	struct virtio_dev *dev;
	u32 index;
	u16 size;               /* a power of two */
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;
	u16 avail_idx;          /* our copy of avail->idx */
	u16 last_used;          /* used entries consumed so far */
};

/* The devices found on the command line (virtio_scan). */
extern struct virtio_dev virtio_devs[VIRTIO_MAX_DEVS];
extern u32 virtio_ndevs;

void virtio_scan(const struct virtio_loc *locs, u32 n);
struct virtio_dev *virtio_claim(u32 device_id);
bool virtio_negotiate(struct virtio_dev *d, u64 want, u64 need);
bool virtq_setup(struct virtio_dev *d, struct virtq *q, u32 index, u32 max_size);
void virtio_driver_ok(struct virtio_dev *d);
u32 virtio_isr(struct virtio_dev *d);
void virtio_isr_ack(struct virtio_dev *d, u32 bits);
u8 virtio_config8(struct virtio_dev *d, u32 off);
u32 virtio_config32(struct virtio_dev *d, u32 off);
u64 virtio_config64(struct virtio_dev *d, u32 off);

/* Publish the chain starting at `head` (descriptors already filled in). */
static inline void virtq_push(struct virtq *q, u16 head)
{
	q->avail->ring[q->avail_idx & (q->size - 1)] = head;
	__asm__ volatile("" ::: "memory");      /* x86: stores stay in order */
	*(volatile u16 *)&q->avail->idx = ++q->avail_idx;
}

void virtq_kick(struct virtq *q);

/* Take one used entry: true with its head and length, false when none. */
static inline bool virtq_pop(struct virtq *q, u16 *head, u32 *len)
{
	const struct vring_used_elem *e;

	if (*(volatile u16 *)&q->used->idx == q->last_used)
		return false;
	__asm__ volatile("" ::: "memory");      /* x86: loads stay in order */
	e = &q->used->ring[q->last_used & (q->size - 1)];
	*head = (u16)e->id;
	*len = e->len;
	q->last_used++;
	return true;
}

/* DMA memory: page-aligned, zeroed, from a pool main.c set aside; NULL
 * when the pool is exhausted. */
void dma_pool_init(u64 start, u64 size);
void *dma_alloc(u64 size);

#endif /* VIRTIO_H */
