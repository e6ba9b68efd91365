/*
 * virtio-net (virtio 1.1 §5.1) on a virtio-mmio transport, backed by a
 * tap (devices/net/backend.h).  Queue 0 receives, queue 1 transmits,
 * queue 2 is the control queue (needed by GUEST_ANNOUNCE, whose ACK comes
 * through it).  Features: MAC, STATUS, CTRL_VQ, GUEST_ANNOUNCE; no
 * checksum or segmentation offloads, no mergeable buffers: every frame is
 * whole and fits one chain, preceded by the 12-byte virtio 1.x header.
 *
 * One I/O thread per NIC polls the tap, the queues' kick eventfds and a
 * wake eventfd.  TX chains go to the tap with writev (header included,
 * its offload fields cleared: nothing the guest puts there reaches the
 * host kernel); RX frames are read from the tap into a bounce buffer and
 * copied into the guest's next RX chain, or dropped (and counted) when
 * the guest has posted none, when they do not fit, or when the driver is
 * not ready.  The thread touches guest memory only while the guest runs
 * (the board's `running` callback) and only under the transport's lock:
 * a paused guest leaves frames in the tap, and taking the lock once after
 * the pause is enough to know the device is still (quiesce).
 */
#ifndef FERRY_DEVICES_VIRTIO_NET_H
#define FERRY_DEVICES_VIRTIO_NET_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "devices/device.h"
#include "devices/net/backend.h"
#include "devices/virtio/mmio.h"
#include "devices/virtio/net_txgate.h"

/* Feature bits (§5.1.3). */
#define VIRTIO_NET_F_MAC		5
#define VIRTIO_NET_F_STATUS		16
#define VIRTIO_NET_F_CTRL_VQ		17
#define VIRTIO_NET_F_GUEST_ANNOUNCE	21

/* Config status bits (§5.1.4). */
#define VIRTIO_NET_S_LINK_UP		1
#define VIRTIO_NET_S_ANNOUNCE		2

/* Control queue (§5.1.6.5). */
#define VIRTIO_NET_CTRL_ANNOUNCE	3
#define VIRTIO_NET_CTRL_ANNOUNCE_ACK	0
#define VIRTIO_NET_OK			0
#define VIRTIO_NET_ERR			1

#define VIRTIO_NET_Q_RX			0
#define VIRTIO_NET_Q_TX			1
#define VIRTIO_NET_Q_CTRL		2
#define VIRTIO_NET_NR_QUEUES		3

#define VIRTIO_NET_HDR_LEN		12	/* virtio 1.x: num_buffers included */
#define VIRTIO_NET_MAX_FRAME		65550	/* 64 KiB IP packet + Ethernet + VLAN */
#define VIRTIO_NET_MIN_FRAME		14	/* an Ethernet header */
#define VIRTIO_NET_CONFIG_LEN		10	/* mac, status, max_virtqueue_pairs */

/* What the board gives a NIC. */
struct virtio_net_config {
	const struct net_config *net;
	unsigned index;			/* NIC number, for messages and records */
	const struct guest_memory *ram;
	void (*dirty)(void *opaque, uint64_t gpa, uint64_t len);
	void (*raise)(void *opaque);
	/*
	 * Is the guest running (not paused, not yet started, not stopped)?
	 * Called by the I/O thread with the transport's lock held; NULL:
	 * always.  Must not take a transport lock.
	 */
	bool (*running)(void *opaque);
	void *opaque;
};

/*
 * Frame counters; written by the I/O thread only.  Other threads read
 * them with virtio_net_read_stats(), which loads each one atomically: the
 * counters are independent, so a snapshot need not be consistent across
 * fields, only each field whole; the writer adds with NET_COUNT().
 */
struct virtio_net_stats {
	uint64_t rx_frames, rx_dropped, rx_bad_chains;
	uint64_t tx_frames, tx_errors, tx_bad_chains;
	uint64_t announce_rounds, announce_errors;	/* RARP frames sent, failed */
	uint64_t held, hold_dropped, injected;		/* net_hold.c */
};

/* A frame held for the guest (net_hold.c), without its virtio-net header. */
struct virtio_net_held {
	struct virtio_net_held *next;
	uint32_t len;
	uint8_t data[];
};

/* The most a NIC holds for its guest: past either, frames are dropped. */
#define VIRTIO_NET_HOLD_MAX_FRAMES	512
#define VIRTIO_NET_HOLD_MAX_BYTES	(2u << 20)

/* Count one event in n->stats.field; evaluates to the count before. */
#define NET_COUNT(n, field) __atomic_fetch_add(&(n)->stats.field, 1, __ATOMIC_RELAXED)

/*
 * One NIC.  `t.lock` guards the fields marked (lock) and everything the
 * I/O thread does to guest memory and the rings; the I/O thread owns
 * those marked (io); the rest is fixed after virtio_net_create().
 * `hold_lock` guards the hold (hold): taken alone or inside t.lock, never
 * the other way round, and never across a touch of guest memory.  So a
 * thread adding a held frame never waits for the I/O thread, which may
 * hold t.lock while it waits on a guest page (post-copy: a page only that
 * other thread, the migration's receiving thread, can bring).
 */
struct virtio_net {
	struct virtio_mmio t;		/* t.config: mac and status (lock) */
	struct net_backend be;
	struct net_config cfg;
	unsigned index;
	uint8_t mac[6];
	bool (*running)(void *opaque);
	void *opaque;
	int ctl_fd;			/* eventfd: stop, or look again (load) */
	pthread_t thread;
	bool thread_started;
	bool stop;			/* (lock) the thread must end */
	bool announce_pending;		/* (lock) set ANNOUNCE once the guest runs */
	bool rarp_restart;		/* (lock) start the RARP rounds once the guest runs */
	/*
	 * (lock) CLOCK_MONOTONIC time until which the thread looks for the
	 * guest's start every VIRTIO_NET_START_POLL_MS instead of every
	 * VIRTIO_NET_IDLE_MS: set by the resume hook, just before the vCPUs
	 * start at a destination, so that the first RARP and the held frames
	 * do not wait out an idle tick while the switch still sends to the
	 * source.
	 */
	uint64_t start_poll_until_ns;
	unsigned rarp_left, rarp_sent;	/* (io) rounds of cfg.announce still to send, sent */
	uint64_t rarp_next_ns;		/* (io) CLOCK_MONOTONIC time of the next round */
	bool tx_pending, ctrl_pending;	/* (io) kicked, not yet looked at while running */
	bool be_dead, be_dead_told;	/* (io) the backend failed for good: not polled */
	uint8_t *frame;			/* (io) bounce buffer: header + largest frame */
	struct virtq_chain chain;	/* (io) */
	/* (hold) frames for the guest's RX queue ahead of the backend's (net_hold.c) */
	pthread_mutex_t hold_lock;
	struct virtio_net_held *held_head, **held_tail;
	unsigned held_frames;		/* (hold; read atomically by the I/O thread) */
	uint32_t held_bytes;		/* (hold) */
	struct virtio_net_stats stats;	/* (io) */
	/* (lock) output commit: frames the guest sent, kept until released (net_txgate.c) */
	struct net_txgate txgate;
};

/*
 * Open the backend, build the transport and start the I/O thread.  On
 * failure prints why and returns -errno (no such tap, no permission, ...).
 */
int virtio_net_create(struct virtio_net *n, const struct virtio_net_config *c)
	__attribute__((warn_unused_result));
/* Stop the thread and free everything. */
void virtio_net_destroy(struct virtio_net *n);
/*
 * Announce the NIC (announce-self): once the guest runs, the I/O thread
 * sends cfg.announce's rounds of gratuitous RARP on the backend (starting
 * them over if some are still due), and, if the driver negotiated
 * GUEST_ANNOUNCE, sets ANNOUNCE with a config interrupt.  Any thread.
 */
void virtio_net_announce_self(struct virtio_net *n);
/* Have the I/O thread look around (held frames to put in). */
void virtio_net_wake(struct virtio_net *n);
/*
 * Output commit (replication): from now on keep the frames the guest
 * sends, tagged `epoch`, instead of sending them.  Any thread.
 */
void virtio_net_output_hold(struct virtio_net *n, uint64_t epoch);
/* Close the current epoch (the vCPUs are paused): later frames belong to the next. */
void virtio_net_output_mark(struct virtio_net *n);
/* Send the kept frames of every epoch <= upto, in order. */
void virtio_net_output_release(struct virtio_net *n, uint64_t upto);
/* Stop keeping frames: send those kept (send) or drop them. */
void virtio_net_output_stop(struct virtio_net *n, bool send);
/* A snapshot of n's counters, from any thread. */
void virtio_net_read_stats(const struct virtio_net *n, struct virtio_net_stats *out);

/* The migrated state of one NIC. */
struct virtio_net_state {
	struct virtio_mmio_state t;
	uint8_t mac[6];
	uint16_t status;		/* VIRTIO_NET_S_* */
};

extern const struct vmstate_desc virtio_net_vmsd;
/* Its registry entry (dev = struct virtio_net *, state = struct virtio_net_state). */
extern const struct device_ops virtio_net_device_ops;

/* ---- net_hold.c: frames held across a switchover ------------------------ */

/*
 * Hold one frame (len bytes, no header) for the guest: its I/O thread
 * puts held frames into the RX queue, in order, ahead of the backend's,
 * once the guest runs.  Returns 0, or -ENOSPC past the caps (counted as
 * dropped), -ENOMEM.  Any thread.
 */
int virtio_net_hold_add(struct virtio_net *n, const uint8_t *frame, uint32_t len)
	__attribute__((warn_unused_result));
/*
 * The guest is paused: take what waits in the backend into the hold (so
 * that it can be forwarded, and given back if the guest runs here
 * again).  Returns the frames taken; those past the caps are dropped and
 * counted in *dropped.  Does nothing while the guest runs.
 */
unsigned virtio_net_hold_backend(struct virtio_net *n, uint64_t *dropped);
/* Copy held frame i into buf (cap bytes).  Its length, or -ENOENT, -ENOSPC. */
int virtio_net_hold_get(struct virtio_net *n, unsigned i, uint8_t *buf, uint32_t cap);
/* I/O thread, lock held: put held frames into the RX queue.  (net.c) */
void virtio_net_hold_inject(struct virtio_net *n, bool *pushed);
void virtio_net_hold_free(struct virtio_net *n);

/* ---- net.c: the data path, called by the I/O thread ------------------ */

/*
 * Send what the TX queue offers.  Returns true when the queue is empty
 * (and armed for a kick), false when there may be more (not running, or
 * the round's budget spent).
 */
bool virtio_net_tx(struct virtio_net *n);
/* Answer the control queue.  Returns as virtio_net_tx. */
bool virtio_net_ctrl(struct virtio_net *n);
/*
 * Take up to `budget` frames from the backend into RX chains.  Returns
 * false when the guest does not run (nothing was read), else true.
 */
bool virtio_net_rx(struct virtio_net *n, unsigned budget);
/* If an announce is pending and the guest runs: set ANNOUNCE, config interrupt. */
void virtio_net_announce(struct virtio_net *n);
/* The device's configuration space (§5.1.4). */
void virtio_net_build_config(const uint8_t mac[6], uint16_t status, uint8_t *cfg);
uint64_t virtio_net_features(void);

#endif
