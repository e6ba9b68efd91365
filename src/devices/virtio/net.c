/*
 * virtio-net's data path: transmit, receive and the control queue, run by
 * the NIC's I/O thread (net_dev.c has the thread, the lifecycle and the
 * migration hooks).  Each function takes the transport's lock for the
 * whole of its work on guest memory and the rings, and does nothing
 * unless the guest runs: see net.h for why that makes quiesce trivial.
 */
#include "devices/virtio/net.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "util/le.h"
#include "util/log.h"

/* Frames taken from one queue per round before the thread looks around. */
#define VIRTIO_NET_TX_BUDGET	VIRTQ_MAX_SIZE

/* The guest runs and the driver is ready.  Lock held. */
static bool net_live(struct virtio_net *n)
{
	return (!n->running || n->running(n->opaque)) && virtio_mmio_running(&n->t);
}

/* A guest mistake: logged once per device (until a reset), counted always. */
static void net_guest_error(struct virtio_net *n, const char *what, uint16_t head)
{
	if (!n->t.warned)
		pr_warn("nic %u: %s (chain at head %u; further errors not logged)", n->index, what,
			head);
	n->t.warned = true;
}

/* Hand a chain back with `len` bytes written; true if the driver wants an interrupt. */
static bool net_used(struct virtio_net *n, struct virtq *q, uint16_t head, uint32_t len)
{
	return virtq_push(q, &n->t.mem, head, len) == 0;
}

/*
 * Pop the next chain of q into n->chain.  Returns 1 (a chain), 0 (none:
 * armed for a kick), -EINVAL (malformed: returned to the guest unused,
 * try again), -EPROTO (the queue is broken).  Lock held.
 */
static int net_pop(struct virtio_net *n, struct virtq *q, const char *qname, bool *pushed)
{
	for (;;) {
		int got = virtq_pop(q, &n->t.mem, &n->chain);
		if (got == 0 && virtq_arm(q, &n->t.mem))
			continue;	/* one arrived as we asked for kicks */
		if (got == -EPROTO) {
			virtio_mmio_fail(&n->t, qname);
			return got;
		}
		if (got == -EINVAL) {
			net_guest_error(n, "malformed descriptor chain refused", n->chain.head);
			*pushed |= net_used(n, q, n->chain.head, 0);
		}
		return got;
	}
}

/* ---- transmit ------------------------------------------------------------ */

/*
 * One TX chain to the backend.  The header goes out as zeroes: with no
 * offload negotiated its flags and GSO fields mean nothing, and a hostile
 * guest must not steer the host kernel's checksum or segmentation code.
 */
static void net_tx_chain(struct virtio_net *n)
{
	const struct virtq_chain *c = &n->chain;
	uint8_t hdr[VIRTIO_NET_HDR_LEN] = { 0 };
	struct iovec iov[VIRTQ_MAX_CHAIN + 1];
	uint64_t skip = VIRTIO_NET_HDR_LEN;
	unsigned k = 0;

	if (c->nr_read != c->nr) {
		NET_COUNT(n, tx_bad_chains);
		net_guest_error(n, "transmit chain has device-writable buffers", c->head);
		return;
	}
	if (c->read_len < VIRTIO_NET_HDR_LEN + VIRTIO_NET_MIN_FRAME ||
	    c->read_len > VIRTIO_NET_HDR_LEN + VIRTIO_NET_MAX_FRAME) {
		NET_COUNT(n, tx_bad_chains);
		net_guest_error(n, "transmit chain shorter than a header and an Ethernet header, "
				"or longer than a frame", c->head);
		return;
	}
	iov[k++] = (struct iovec){ .iov_base = hdr, .iov_len = sizeof(hdr) };
	for (unsigned i = 0; i < c->nr; i++) {
		if (skip >= c->bufs[i].len) {
			skip -= c->bufs[i].len;
			continue;
		}
		iov[k++] = (struct iovec){ .iov_base = c->bufs[i].host + skip,
					   .iov_len = c->bufs[i].len - skip };
		skip = 0;
	}
	/* Output commit: kept until the epoch it belongs to is safe elsewhere. */
	if (n->txgate.on) {
		if (net_txgate_hold(&n->txgate, iov, (int)k, c->read_len))
			NET_COUNT(n, tx_errors);
		return;
	}
	/* A tap never blocks a writer; a full socket drops, like a busy link. */
	ssize_t w = writev(n->be.fd, iov, (int)k);
	if (w == (ssize_t)c->read_len) {
		NET_COUNT(n, tx_frames);
		return;
	}
	if (!NET_COUNT(n, tx_errors))
		pr_warn("nic %u: cannot send a frame: %s (further errors not logged)", n->index,
			w < 0 ? strerror(errno) : "short write");
}

bool virtio_net_tx(struct virtio_net *n)
{
	struct virtio_mmio *t = &n->t;
	struct virtq *q = &t->queues[VIRTIO_NET_Q_TX];
	bool pushed = false, done = false;

	pthread_mutex_lock(&t->lock);
	if (!net_live(n)) {
		/* Not a running guest's: kept for when it runs (or another host). */
		pthread_mutex_unlock(&t->lock);
		return !virtio_mmio_running(t);
	}
	/*
	 * No kicks while we take what is there: the ring is looked at again
	 * before we stop (net_pop arms it when it runs dry), or, past the
	 * budget, at once (the thread's tx_pending).  A guest that sends
	 * frame after frame exits once per burst, not once per frame.
	 */
	virtq_notify_off(q, &t->mem);
	for (unsigned i = 0; i < VIRTIO_NET_TX_BUDGET; i++) {
		int got = net_pop(n, q, "its transmit queue has an index out of range", &pushed);
		if (got == -EINVAL) {
			NET_COUNT(n, tx_bad_chains);
			continue;
		}
		if (got <= 0) {
			done = true;
			break;
		}
		net_tx_chain(n);
		/* TX buffers are only read: the used length is 0 (§5.1.6.2). */
		pushed |= net_used(n, q, n->chain.head, 0);
	}
	if (pushed && virtq_should_notify(q))
		virtio_mmio_interrupt(t, VIRTIO_MMIO_INT_VRING);
	pthread_mutex_unlock(&t->lock);
	return done;
}

/* ---- receive ------------------------------------------------------------- */

/*
 * Put frame (header + payload, len bytes, from the backend) into the next
 * RX chain.  Returns true if a chain was used.  Lock held.
 */
static bool net_rx_frame(struct virtio_net *n, struct virtq *q, uint32_t len, bool *pushed)
{
	const struct virtq_chain *c = &n->chain;
	int got;

	while ((got = net_pop(n, q, "its receive queue has an index out of range", pushed)) ==
	       -EINVAL)
		NET_COUNT(n, rx_bad_chains);
	if (got <= 0) {
		NET_COUNT(n, rx_dropped);	/* no buffer posted: dropped as on a real NIC */
		return false;
	}
	if (c->nr_read) {
		NET_COUNT(n, rx_bad_chains);
		NET_COUNT(n, rx_dropped);
		net_guest_error(n, "receive chain has device-readable buffers", c->head);
		*pushed |= net_used(n, q, c->head, 0);
		return true;
	}
	if (c->write_len < len) {
		/* Without mergeable buffers every chain must hold a whole frame. */
		NET_COUNT(n, rx_bad_chains);
		NET_COUNT(n, rx_dropped);
		net_guest_error(n, "receive chain too short for a frame", c->head);
		*pushed |= net_used(n, q, c->head, 0);
		return true;
	}
	uint32_t done = 0;
	for (unsigned i = 0; i < c->nr && done < len; i++) {
		uint32_t take = len - done < c->bufs[i].len ? len - done : c->bufs[i].len;
		memcpy(c->bufs[i].host, n->frame + done, take);
		if (n->t.mem.dirty)
			n->t.mem.dirty(n->t.mem.opaque, c->bufs[i].gpa, take);
		done += take;
	}
	NET_COUNT(n, rx_frames);
	*pushed |= net_used(n, q, c->head, len);
	return true;
}

/*
 * The header we give the guest: no flags, no GSO (none negotiated; the
 * backend's own, e.g. DATA_VALID, would be a feature we did not offer),
 * one buffer.  A frame the backend marked as segmented cannot be one of
 * ours (offloads are off): it is dropped.
 */
static bool net_rx_header(uint8_t *hdr)
{
	if (hdr[1] != 0)	/* gso_type */
		return false;
	memset(hdr, 0, VIRTIO_NET_HDR_LEN);
	le_put(hdr + 10, 1, 2);	/* num_buffers */
	return true;
}

/*
 * Held frames (net_hold.c) go first, all of them: they arrived before
 * anything now in the backend.  One that finds no buffer, or no driver,
 * is dropped like a frame from the backend would be.  Lock held.
 */
void virtio_net_hold_inject(struct virtio_net *n, bool *pushed)
{
	struct virtq *q = &n->t.queues[VIRTIO_NET_Q_RX];
	struct virtio_net_held *h;

	for (;;) {
		/* Off the hold, then into guest memory with hold_lock let go (net.h). */
		pthread_mutex_lock(&n->hold_lock);
		h = n->held_head;
		if (h) {
			n->held_head = h->next;
			if (!n->held_head)
				n->held_tail = &n->held_head;
			__atomic_store_n(&n->held_frames, n->held_frames - 1, __ATOMIC_RELAXED);
			n->held_bytes -= h->len;
		}
		pthread_mutex_unlock(&n->hold_lock);
		if (!h)
			break;
		if (!virtio_mmio_running(&n->t) || !q->ready || q->broken) {
			NET_COUNT(n, rx_dropped);
		} else {
			memset(n->frame, 0, VIRTIO_NET_HDR_LEN);
			net_rx_header(n->frame);
			memcpy(n->frame + VIRTIO_NET_HDR_LEN, h->data, h->len);
			if (net_rx_frame(n, q, VIRTIO_NET_HDR_LEN + h->len, pushed))
				NET_COUNT(n, injected);
		}
		free(h);
	}
}

bool virtio_net_rx(struct virtio_net *n, unsigned budget)
{
	struct virtio_mmio *t = &n->t;
	struct virtq *q = &t->queues[VIRTIO_NET_Q_RX];
	bool pushed = false;

	pthread_mutex_lock(&t->lock);
	/* A paused guest's frames wait in the backend; we must not write its RAM. */
	if (n->running && !n->running(n->opaque)) {
		pthread_mutex_unlock(&t->lock);
		return false;
	}
	/*
	 * A frame finds a buffer or is dropped when it comes; nothing waits
	 * for the driver's "buffers posted" kick, so it need not exit for it.
	 */
	virtq_notify_off(q, &t->mem);
	virtio_net_hold_inject(n, &pushed);
	while (budget--) {
		ssize_t r = read(n->be.fd, n->frame, VIRTIO_NET_HDR_LEN + VIRTIO_NET_MAX_FRAME);
		if (r < 0) {
			/* EAGAIN: all taken.  A tap whose interface went away fails for good. */
			if (errno != EAGAIN && errno != EINTR && errno != ENOBUFS)
				n->be_dead = true;
			break;
		}
		if (r < VIRTIO_NET_HDR_LEN + VIRTIO_NET_MIN_FRAME || !net_rx_header(n->frame) ||
		    !virtio_mmio_running(t) || !q->ready || q->broken) {
			NET_COUNT(n, rx_dropped);	/* no driver to take it, or not a frame */
			continue;
		}
		net_rx_frame(n, q, (uint32_t)r, &pushed);
	}
	if (pushed && virtq_should_notify(q))
		virtio_mmio_interrupt(t, VIRTIO_MMIO_INT_VRING);
	pthread_mutex_unlock(&t->lock);
	return true;
}

/* ---- control queue and announce ------------------------------------------ */

/* One command: class, command, data (readable), then the ack byte (writable). */
static uint32_t net_ctrl_chain(struct virtio_net *n)
{
	const struct virtq_chain *c = &n->chain;
	uint8_t ack = VIRTIO_NET_ERR;

	if (c->nr_read == c->nr || c->read_len < 2) {
		net_guest_error(n, "malformed control command", c->head);
		return 0;
	}
	uint8_t class = c->bufs[0].host[0];
	uint8_t cmd = c->bufs[0].len > 1 ? c->bufs[0].host[1] : c->bufs[1].host[0];
	if (class == VIRTIO_NET_CTRL_ANNOUNCE && cmd == VIRTIO_NET_CTRL_ANNOUNCE_ACK &&
	    (n->t.driver_features & VIRTIO_BIT(VIRTIO_NET_F_GUEST_ANNOUNCE))) {
		/* The guest has announced itself: clear the bit (§5.1.6.5.4). */
		uint16_t st = (uint16_t)le_get(n->t.config + 6, 2) & ~VIRTIO_NET_S_ANNOUNCE;
		le_put(n->t.config + 6, st, 2);
		n->t.config_generation++;
		ack = VIRTIO_NET_OK;
	}
	const struct virtq_buf *b = &c->bufs[c->nr_read];
	b->host[0] = ack;
	if (n->t.mem.dirty)
		n->t.mem.dirty(n->t.mem.opaque, b->gpa, 1);
	return 1;
}

bool virtio_net_ctrl(struct virtio_net *n)
{
	struct virtio_mmio *t = &n->t;
	struct virtq *q = &t->queues[VIRTIO_NET_Q_CTRL];
	bool pushed = false, done = false;

	pthread_mutex_lock(&t->lock);
	if (!net_live(n)) {
		pthread_mutex_unlock(&t->lock);
		return !virtio_mmio_running(t);
	}
	for (unsigned i = 0; i < VIRTQ_MAX_SIZE; i++) {
		int got = net_pop(n, q, "its control queue has an index out of range", &pushed);
		if (got == -EINVAL)
			continue;
		if (got <= 0) {
			done = true;
			break;
		}
		pushed |= net_used(n, q, n->chain.head, net_ctrl_chain(n));
	}
	if (pushed && virtq_should_notify(q))
		virtio_mmio_interrupt(t, VIRTIO_MMIO_INT_VRING);
	pthread_mutex_unlock(&t->lock);
	return done;
}

void virtio_net_announce(struct virtio_net *n)
{
	struct virtio_mmio *t = &n->t;

	pthread_mutex_lock(&t->lock);
	if (n->announce_pending && net_live(n)) {
		uint16_t st = (uint16_t)le_get(t->config + 6, 2) | VIRTIO_NET_S_ANNOUNCE;
		le_put(t->config + 6, st, 2);
		t->config_generation++;
		virtio_mmio_interrupt(t, VIRTIO_MMIO_INT_CONFIG);
		n->announce_pending = false;
	}
	pthread_mutex_unlock(&t->lock);
}

void virtio_net_build_config(const uint8_t mac[6], uint16_t status, uint8_t *cfg)
{
	memset(cfg, 0, VIRTIO_NET_CONFIG_LEN);
	memcpy(cfg, mac, 6);
	le_put(cfg + 6, status, 2);
	le_put(cfg + 8, 1, 2);		/* max_virtqueue_pairs (no MQ: informative) */
}

uint64_t virtio_net_features(void)
{
	return VIRTIO_BIT(VIRTIO_NET_F_MAC) | VIRTIO_BIT(VIRTIO_NET_F_STATUS) |
	       VIRTIO_BIT(VIRTIO_NET_F_CTRL_VQ) | VIRTIO_BIT(VIRTIO_NET_F_GUEST_ANNOUNCE);
}

/* ---- output commit (net_txgate.c) --------------------------------------- */

/* A released frame to the backend, as net_tx_chain would have sent it.  Lock held. */
static void net_output_send(void *opaque, const uint8_t *frame, uint32_t len)
{
	struct virtio_net *n = opaque;

	if (!n->be_dead && write(n->be.fd, frame, len) == (ssize_t)len) {
		NET_COUNT(n, tx_frames);
		return;
	}
	NET_COUNT(n, tx_errors);
}

void virtio_net_output_hold(struct virtio_net *n, uint64_t epoch)
{
	pthread_mutex_lock(&n->t.lock);
	net_txgate_start(&n->txgate, epoch);
	pthread_mutex_unlock(&n->t.lock);
}

void virtio_net_output_mark(struct virtio_net *n)
{
	pthread_mutex_lock(&n->t.lock);
	if (n->txgate.on)
		net_txgate_mark(&n->txgate);
	pthread_mutex_unlock(&n->t.lock);
}

void virtio_net_output_release(struct virtio_net *n, uint64_t upto)
{
	pthread_mutex_lock(&n->t.lock);
	net_txgate_release(&n->txgate, upto, net_output_send, n);
	pthread_mutex_unlock(&n->t.lock);
}

void virtio_net_output_stop(struct virtio_net *n, bool send)
{
	pthread_mutex_lock(&n->t.lock);
	net_txgate_stop(&n->txgate, send ? net_output_send : NULL, n);
	pthread_mutex_unlock(&n->t.lock);
}
