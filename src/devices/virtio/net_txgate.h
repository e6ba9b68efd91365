/*
 * Output commit for a NIC (replication, docs/replication.md): while the
 * gate is on, the frames the guest sends are kept, each tagged with the
 * epoch it was sent in, and go out to the backend only when that epoch is
 * released (the standby holds a checkpoint that includes having sent
 * them).  Bounded: past NET_TXGATE_MAX_FRAMES or NET_TXGATE_MAX_BYTES a
 * frame is dropped, as a busy link would.  Knows nothing of migration;
 * the struct is guarded by its NIC's transport lock (net.h).
 */
#ifndef FERRY_DEVICES_VIRTIO_NET_TXGATE_H
#define FERRY_DEVICES_VIRTIO_NET_TXGATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define NET_TXGATE_MAX_FRAMES	4096
#define NET_TXGATE_MAX_BYTES	(8u << 20)

struct net_txgate_frame {
	struct net_txgate_frame *next;
	uint64_t epoch;
	uint32_t len;
	uint8_t data[];
};

struct net_txgate {
	bool on;
	uint64_t epoch;			/* the tag of frames sent now */
	struct net_txgate_frame *head, **tail;	/* in the order sent */
	unsigned frames;
	uint32_t bytes;
	uint64_t held, dropped, released;	/* counters since init */
};

void net_txgate_init(struct net_txgate *g);
/* Keep frames from now on, tagged `epoch` until the next mark. */
void net_txgate_start(struct net_txgate *g, uint64_t epoch);
/*
 * Keep a frame (len bytes in iov).  0, or -ENOBUFS when over the bounds
 * (dropped, counted) or out of memory.
 */
int net_txgate_hold(struct net_txgate *g, const struct iovec *iov, int iovcnt, size_t len);
/* An epoch is closed: frames from now on belong to the next.  Returns the closed one. */
uint64_t net_txgate_mark(struct net_txgate *g);
typedef void net_txgate_send_fn(void *opaque, const uint8_t *frame, uint32_t len);
/* Send (in order) and free every frame of an epoch <= upto. */
void net_txgate_release(struct net_txgate *g, uint64_t upto, net_txgate_send_fn *send,
			void *opaque);
/* Stop keeping frames: send what is held (send non-NULL) or drop it (NULL). */
void net_txgate_stop(struct net_txgate *g, net_txgate_send_fn *send, void *opaque);

#endif
