/*
 * blk.h - the probe's virtio-blk driver basics, shared by the disk
 * workloads: disk.c (write, read back, verify) and disk_rate.c
 * (throughput: random 4 KiB writes, large sequential writes or reads).
 */
#ifndef BLK_H
#define BLK_H

#include "virtio.h"

#define BLOCK_SIZE              4096UL
#define SECTORS_PER_BLOCK       (BLOCK_SIZE / 512)
#define BLK_QUEUE_MAX           128

#define VIRTIO_BLK_F_RO         5
#define VIRTIO_BLK_F_FLUSH      9
#define VIRTIO_BLK_T_IN         0
#define VIRTIO_BLK_T_OUT        1
#define VIRTIO_BLK_T_FLUSH      4
#define VIRTIO_BLK_S_OK         0

struct blk_hdr {
	u32 type;
	u32 reserved;
	u64 sector;
};

/* A virtio-blk device driven through queue 0.  Owned by the BSP. */
struct blk_dev {
	struct virtio_dev *dev;
	struct virtq q;
	bool flush;             /* the device takes FLUSH */
	u64 capacity;           /* sectors */
};

/*
 * Claim the first virtio-blk device, negotiate (RO, FLUSH), set up queue 0
 * with up to BLK_QUEUE_MAX entries.  Does not set DRIVER_OK: the caller
 * allocates its buffers first.  Exits with EXIT_BADARG when there is no
 * device, it cannot be driven, or it is read-only.
 */
void blk_open(struct blk_dev *b);

/* Queue one request of up to one data buffer as descriptors d[0..2] of
 * the chain at `head`: header, data (none for FLUSH), status. */
void blk_chain(struct blk_dev *b, u16 head, struct blk_hdr *hdr, void *data, u32 len,
	       u8 *status);

#endif /* BLK_H */
