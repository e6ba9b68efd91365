/*
 * blk.c - virtio-blk set-up and request chains for the disk workloads
 * (BSP, ring 3).  See blk.h.
 */
#include "user.h"
#include "blk.h"

void blk_open(struct blk_dev *b)
{
	u64 want = 1UL << VIRTIO_BLK_F_RO | 1UL << VIRTIO_BLK_F_FLUSH;

	b->dev = virtio_claim(VIRTIO_ID_BLOCK);
	if (!b->dev) {
		pr("probe: workload disk needs a virtio-blk device (virtio_mmio.device=)\n");
		probe_exit(EXIT_BADARG);
	}
	if (!virtio_negotiate(b->dev, want, 0) ||
	    !virtq_setup(b->dev, &b->q, 0, BLK_QUEUE_MAX))
		probe_exit(EXIT_BADARG);
	if (b->dev->features & (1UL << VIRTIO_BLK_F_RO)) {
		pr("probe: workload disk needs a writable disk\n");
		probe_exit(EXIT_BADARG);
	}
	b->flush = b->dev->features & (1UL << VIRTIO_BLK_F_FLUSH);
	b->capacity = virtio_config64(b->dev, 0);
}

void blk_chain(struct blk_dev *b, u16 head, struct blk_hdr *hdr, void *data, u32 len,
	       u8 *status)
{
	struct vring_desc *d = &b->q.desc[head];

	*status = 0xff;
	d[0] = (struct vring_desc){ (u64)hdr, sizeof(*hdr), VRING_DESC_F_NEXT, (u16)(head + 1) };
	if (hdr->type == VIRTIO_BLK_T_FLUSH) {
		d[0].next = (u16)(head + 2);
	} else {
		d[1] = (struct vring_desc){ (u64)data, len,
					    VRING_DESC_F_NEXT | (hdr->type == VIRTIO_BLK_T_IN ? VRING_DESC_F_WRITE : 0),
					    (u16)(head + 2) };
	}
	d[2] = (struct vring_desc){ (u64)status, 1, VRING_DESC_F_WRITE, 0 };
	virtq_push(&b->q, head);
}
