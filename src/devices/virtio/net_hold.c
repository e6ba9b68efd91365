/*
 * Frames held for a NIC's guest across a switchover (net.h).  While the
 * guest is paused for a migration its frames wait in the source's tap,
 * and QEMU loses them when the guest leaves.  ferry takes them into this
 * hold instead: the migration forwards them to the destination, whose NIC
 * holds them in turn until its guest runs; if the migration fails, the
 * source's guest gets them when it runs on.  Either way the I/O thread
 * puts them into the RX queue ahead of anything newer (net.c).
 *
 * The hold is bounded (VIRTIO_NET_HOLD_MAX_FRAMES, _BYTES): a flood
 * while the guest is paused costs memory no longer than that, and what
 * does not fit is dropped and counted, as a full queue on a switch would.
 */
#include "devices/virtio/net.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/log.h"

/* hold_lock held. */
static int net_hold_locked(struct virtio_net *n, const uint8_t *frame, uint32_t len)
{
	if (n->held_frames >= VIRTIO_NET_HOLD_MAX_FRAMES ||
	    len > VIRTIO_NET_HOLD_MAX_BYTES - n->held_bytes) {
		NET_COUNT(n, hold_dropped);
		return -ENOSPC;
	}
	struct virtio_net_held *h = malloc(sizeof(*h) + len);
	if (!h) {
		NET_COUNT(n, hold_dropped);
		return -ENOMEM;
	}
	h->next = NULL;
	h->len = len;
	memcpy(h->data, frame, len);
	*n->held_tail = h;
	n->held_tail = &h->next;
	n->held_bytes += len;
	__atomic_store_n(&n->held_frames, n->held_frames + 1, __ATOMIC_RELAXED);
	NET_COUNT(n, held);
	return 0;
}

int virtio_net_hold_add(struct virtio_net *n, const uint8_t *frame, uint32_t len)
{
	int err;

	if (len < VIRTIO_NET_MIN_FRAME || len > VIRTIO_NET_MAX_FRAME)
		return -EINVAL;
	pthread_mutex_lock(&n->hold_lock);	/* not t.lock: net.h */
	err = net_hold_locked(n, frame, len);
	pthread_mutex_unlock(&n->hold_lock);
	if (!err)
		virtio_net_wake(n);
	return err;
}

unsigned virtio_net_hold_backend(struct virtio_net *n, uint64_t *dropped)
{
	const size_t cap = VIRTIO_NET_HDR_LEN + VIRTIO_NET_MAX_FRAME;
	uint8_t *buf = malloc(cap);
	unsigned taken = 0;

	if (!buf)
		return 0;
	pthread_mutex_lock(&n->t.lock);
	/*
	 * Only a paused guest's frames: a running one's I/O thread reads the
	 * backend itself.  The bound on reads keeps a flood from holding us
	 * here: what is left waits in the backend.
	 */
	for (unsigned i = 0; n->running && !n->running(n->opaque) && !n->be_dead &&
	     i < 4 * VIRTIO_NET_HOLD_MAX_FRAMES; i++) {
		ssize_t r = read(n->be.fd, buf, cap);
		if (r < 0)
			break;		/* EAGAIN: all taken; anything else: the I/O thread sees it */
		/* A segmented frame (buf[1], gso_type) cannot be ours: offloads are off. */
		if (r < VIRTIO_NET_HDR_LEN + VIRTIO_NET_MIN_FRAME || buf[1] != 0) {
			NET_COUNT(n, rx_dropped);
			continue;
		}
		pthread_mutex_lock(&n->hold_lock);
		if (net_hold_locked(n, buf + VIRTIO_NET_HDR_LEN, (uint32_t)r - VIRTIO_NET_HDR_LEN))
			(*dropped)++;
		else
			taken++;
		pthread_mutex_unlock(&n->hold_lock);
	}
	pthread_mutex_unlock(&n->t.lock);
	free(buf);
	return taken;
}

int virtio_net_hold_get(struct virtio_net *n, unsigned i, uint8_t *buf, uint32_t cap)
{
	int len = -ENOENT;

	pthread_mutex_lock(&n->hold_lock);
	struct virtio_net_held *h = n->held_head;
	while (h && i--)
		h = h->next;
	if (h && h->len > cap)
		len = -ENOSPC;
	else if (h) {
		memcpy(buf, h->data, h->len);
		len = (int)h->len;
	}
	pthread_mutex_unlock(&n->hold_lock);
	return len;
}

void virtio_net_hold_free(struct virtio_net *n)
{
	struct virtio_net_held *h, *next;

	pthread_mutex_lock(&n->hold_lock);
	for (h = n->held_head; h; h = next) {
		next = h->next;
		free(h);
	}
	n->held_head = NULL;
	n->held_tail = &n->held_head;
	n->held_frames = 0;
	n->held_bytes = 0;
	pthread_mutex_unlock(&n->hold_lock);
}
