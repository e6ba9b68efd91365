/*
 * virtio-net driven as a guest driver would, through its MMIO registers
 * and rings in plain RAM (no KVM), with one end of a SOCK_SEQPACKET
 * socketpair as its backend (frame boundaries kept, as on a tap): TX and
 * RX with the virtio-net header, every hostile chain a guest can offer
 * (device-writable TX buffers, device-readable or short RX buffers, loops,
 * over-long chains, a garbage ring), drops when no buffer is posted,
 * nothing taken or written while the guest is paused, the control queue,
 * and a save -> load to a second NIC that goes on exactly where the first
 * stopped and announces the guest.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "devices/virtio/net.h"
#include "util/le.h"

#define T_RAM		(16ULL << 20)
#define T_QSIZE		16
#define T_QBASE(q)	(0x10000ULL * ((q) + 1))	/* desc, avail +0x1000, used +0x2000 */
#define T_BUF		0x100000ULL			/* buffers: 4 KiB per (queue, slot) */
#define T_BUFSZ		4096

static struct guest_memory ram;
static struct virtio_net nic;
static int peer = -1;			/* the test's end of the socketpair */
static bool t_guest_runs = true;	/* the source's guest (or the only one) */
static bool t_dest_runs;		/* the destination's, in test_migrate */
static int raises;
static uint64_t dirtied;

/* The driver's view of one queue. */
static struct { uint16_t next_desc, avail_idx, used_seen; } dq[VIRTIO_NET_NR_QUEUES];

static void t_dirty(void *opaque, uint64_t gpa, uint64_t len)
{
	assert_non_null(guest_memory_ptr(&ram, gpa, len));
	__atomic_add_fetch(&dirtied, len, __ATOMIC_RELAXED);
}

static void t_raise(void *opaque)
{
	__atomic_add_fetch(&raises, 1, __ATOMIC_RELAXED);
}

static bool t_running(void *opaque)
{
	return __atomic_load_n((bool *)opaque, __ATOMIC_ACQUIRE);
}

static uint8_t *t_ptr(uint64_t gpa)
{
	return guest_memory_ptr(&ram, gpa, 1);
}

static uint32_t t_rd(struct virtio_net *n, uint64_t off)
{
	uint8_t v[4];

	virtio_mmio_read(&n->t, off, v, 4);
	return (uint32_t)le_get(v, 4);
}

static void t_wr(struct virtio_net *n, uint64_t off, uint32_t val)
{
	uint8_t v[4];

	le_put(v, val, 4);
	virtio_mmio_write(&n->t, off, v, 4);
}

static uint16_t t_status(struct virtio_net *n)
{
	uint8_t v[2];

	virtio_mmio_read(&n->t, VIRTIO_MMIO_CONFIG + 6, v, 2);
	return (uint16_t)le_get(v, 2);
}

/* A NIC on a fresh socketpair whose guest runs while *runs; the test keeps the other end. */
static int t_create(struct virtio_net *n, const char *mac, bool *runs, int *other)
{
	struct net_config c;
	char why[160], spec[64];
	int sv[2];

	snprintf(spec, sizeof(spec), "tap=unused%s%s", mac ? ",mac=" : "", mac ? mac : "");
	if (net_config_parse(spec, &c, why, sizeof(why)))
		return -1;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv))
		return -1;
	c.kind = NET_BACKEND_FD;
	c.fd = sv[0];
	struct virtio_net_config nc = {
		.net = &c, .index = 0, .ram = &ram, .dirty = t_dirty, .raise = t_raise,
		.running = t_running, .opaque = runs,
	};
	int err = virtio_net_create(n, &nc);
	close(sv[0]);		/* the device has its own copy */
	*other = sv[1];
	return err;
}

/* §3.1.1 with the driver features `want` (low word), queues 0..nq-1. */
static void t_driver_init(struct virtio_net *n, uint32_t want, unsigned nq)
{
	t_wr(n, VIRTIO_MMIO_STATUS, 0);
	t_wr(n, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	t_wr(n, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	assert_int_equal(t_rd(n, VIRTIO_MMIO_DEVICE_FEATURES) & want, want);
	t_wr(n, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	t_wr(n, VIRTIO_MMIO_DRIVER_FEATURES, want);
	t_wr(n, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	t_wr(n, VIRTIO_MMIO_DRIVER_FEATURES, 1);	/* VERSION_1 */
	t_wr(n, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
	     VIRTIO_STATUS_FEATURES_OK);
	assert_true(t_rd(n, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_FEATURES_OK);
	for (unsigned q = 0; q < nq; q++) {
		uint64_t b = T_QBASE(q);
		memset(t_ptr(b), 0, 0x3000);
		t_wr(n, VIRTIO_MMIO_QUEUE_SEL, q);
		t_wr(n, VIRTIO_MMIO_QUEUE_NUM, T_QSIZE);
		t_wr(n, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)b);
		t_wr(n, VIRTIO_MMIO_QUEUE_AVAIL_LOW, (uint32_t)(b + 0x1000));
		t_wr(n, VIRTIO_MMIO_QUEUE_USED_LOW, (uint32_t)(b + 0x2000));
		t_wr(n, VIRTIO_MMIO_QUEUE_READY, 1);
		assert_int_equal(t_rd(n, VIRTIO_MMIO_QUEUE_READY), 1);
		dq[q].next_desc = dq[q].avail_idx = dq[q].used_seen = 0;
	}
	t_wr(n, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
	     VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
}

/* Descriptor at the next free index of queue q; next = the one after. */
static uint16_t t_desc(unsigned q, uint64_t addr, uint32_t len, uint16_t flags)
{
	uint16_t i = dq[q].next_desc++ % T_QSIZE;
	uint8_t *p = t_ptr(T_QBASE(q) + 16ULL * i);

	le_put(p, addr, 8);
	le_put(p + 8, len, 4);
	le_put(p + 12, flags, 2);
	le_put(p + 14, (i + 1) % T_QSIZE, 2);
	return i;
}

static void t_avail(struct virtio_net *n, unsigned q, uint16_t head, bool kick)
{
	le_put(t_ptr(T_QBASE(q) + 0x1000 + 4 + 2 * (dq[q].avail_idx % T_QSIZE)), head, 2);
	dq[q].avail_idx++;
	__atomic_store_n((uint16_t *)(void *)t_ptr(T_QBASE(q) + 0x1000 + 2), dq[q].avail_idx,
			 __ATOMIC_RELEASE);
	if (kick)
		t_wr(n, VIRTIO_MMIO_QUEUE_NOTIFY, q);
}

static uint16_t t_used_idx(unsigned q)
{
	return __atomic_load_n((uint16_t *)(void *)t_ptr(T_QBASE(q) + 0x2000 + 2),
			       __ATOMIC_ACQUIRE);
}

/* Wait until queue q's used index reaches `want`; the id and len of the last entry. */
static void t_wait_used(unsigned q, uint16_t want, uint32_t *id, uint32_t *len)
{
	for (int i = 0; i < 5000; i++) {
		if (t_used_idx(q) == want) {
			const uint8_t *e = t_ptr(T_QBASE(q) + 0x2000 + 4 + 8 * ((want - 1) % T_QSIZE));
			if (id)
				*id = (uint32_t)le_get(e, 4);
			if (len)
				*len = (uint32_t)le_get(e + 4, 4);
			dq[q].used_seen = want;
			return;
		}
		usleep(1000);
	}
	fail_msg("queue %u: used index stuck at %u, wanted %u", q, t_used_idx(q), want);
}

/* Wait for *counter (written by the I/O thread) to reach want. */
static void t_wait_count(const uint64_t *counter, uint64_t want)
{
	for (int i = 0; i < 5000 && __atomic_load_n(counter, __ATOMIC_ACQUIRE) < want; i++)
		usleep(1000);
	assert_int_equal(__atomic_load_n(counter, __ATOMIC_ACQUIRE), want);
}

static uint64_t t_buf(unsigned q, unsigned slot)
{
	return T_BUF + T_BUFSZ * (q * 64ULL + slot);
}

/* Post RX buffer `slot` (len bytes, one writable descriptor). */
static uint16_t t_post_rx(struct virtio_net *n, unsigned slot, uint32_t len, bool kick)
{
	uint16_t h = t_desc(VIRTIO_NET_Q_RX, t_buf(VIRTIO_NET_Q_RX, slot), len, VIRTQ_DESC_F_WRITE);

	t_avail(n, VIRTIO_NET_Q_RX, h, kick);
	return h;
}

/* A frame from the "network": backend header (hdr_flags, gso_type), then payload. */
static void t_send_frame(int fd, uint8_t hdr_flags, uint8_t gso, const uint8_t *p, size_t len)
{
	uint8_t buf[VIRTIO_NET_HDR_LEN + 2048] = { 0 };

	buf[0] = hdr_flags;
	buf[1] = gso;
	memcpy(buf + VIRTIO_NET_HDR_LEN, p, len);
	assert_int_equal(send(fd, buf, VIRTIO_NET_HDR_LEN + len, 0),
			 (ssize_t)(VIRTIO_NET_HDR_LEN + len));
}

/* The next frame the device sent, or -1 if none within ms. */
static ssize_t t_recv_frame(int fd, uint8_t *buf, size_t len, int ms)
{
	for (int i = 0; i < ms; i++) {
		ssize_t r = recv(fd, buf, len, MSG_DONTWAIT);
		if (r >= 0)
			return r;
		usleep(1000);
	}
	return -1;
}

static void t_frame(uint8_t *f, size_t len, uint8_t seed)
{
	for (size_t i = 0; i < len; i++)
		f[i] = (uint8_t)(seed + i * 7);
}

static int setup(void **state)
{
	if (guest_memory_create(&ram, T_RAM))
		return -1;
	raises = 0;
	dirtied = 0;
	t_guest_runs = true;
	if (t_create(&nic, "52:54:00:12:34:56", &t_guest_runs, &peer))
		return -1;
	t_driver_init(&nic, 1u << VIRTIO_NET_F_MAC, 2);
	return 0;
}

static int teardown(void **state)
{
	virtio_net_destroy(&nic);
	close(peer);
	peer = -1;
	guest_memory_destroy(&ram);
	return 0;
}

static void test_identify(void **state)
{
	uint8_t mac[6];

	assert_int_equal(t_rd(&nic, VIRTIO_MMIO_DEVICE_ID), VIRTIO_ID_NET);
	t_wr(&nic, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	uint32_t lo = t_rd(&nic, VIRTIO_MMIO_DEVICE_FEATURES);
	assert_true(lo & (1u << VIRTIO_NET_F_MAC));
	assert_true(lo & (1u << VIRTIO_NET_F_STATUS));
	assert_true(lo & (1u << VIRTIO_NET_F_CTRL_VQ));
	assert_true(lo & (1u << VIRTIO_NET_F_GUEST_ANNOUNCE));
	assert_false(lo & 1u);		/* no CSUM: the guest never sends partial checksums */
	virtio_mmio_read(&nic.t, VIRTIO_MMIO_CONFIG, mac, 6);
	assert_memory_equal(mac, "\x52\x54\x00\x12\x34\x56", 6);
	assert_int_equal(t_status(&nic), VIRTIO_NET_S_LINK_UP);
	t_wr(&nic, VIRTIO_MMIO_QUEUE_SEL, 2);
	assert_int_equal(t_rd(&nic, VIRTIO_MMIO_QUEUE_NUM_MAX), VIRTQ_MAX_SIZE);
	t_wr(&nic, VIRTIO_MMIO_QUEUE_SEL, 3);
	assert_int_equal(t_rd(&nic, VIRTIO_MMIO_QUEUE_NUM_MAX), 0);

	/* No mac=: random, locally administered, unicast, and not the same twice. */
	struct virtio_net a, b;
	int pa, pb;
	assert_int_equal(t_create(&a, NULL, &t_guest_runs, &pa), 0);
	assert_int_equal(t_create(&b, NULL, &t_guest_runs, &pb), 0);
	assert_int_equal(a.mac[0] & 3, 2);
	assert_memory_not_equal(a.mac, b.mac, 6);
	virtio_net_destroy(&a);
	virtio_net_destroy(&b);
	close(pa);
	close(pb);
}

static void test_tx(void **state)
{
	const unsigned q = VIRTIO_NET_Q_TX;
	uint8_t frame[300], got[2048];
	uint32_t id, len;

	/* Header with offload flags set (not negotiated): they must not reach the host. */
	t_frame(frame, sizeof(frame), 1);
	uint64_t b = t_buf(q, 0);
	memset(t_ptr(b), 0xff, VIRTIO_NET_HDR_LEN);
	memcpy(t_ptr(b + VIRTIO_NET_HDR_LEN), frame, 100);
	memcpy(t_ptr(b + 1024), frame + 100, 200);
	uint16_t h = t_desc(q, b, VIRTIO_NET_HDR_LEN + 100, VIRTQ_DESC_F_NEXT);
	t_desc(q, b + 1024, 200, 0);
	t_avail(&nic, q, h, true);
	t_wait_used(q, 1, &id, &len);
	assert_int_equal(id, h);
	assert_int_equal(len, 0);
	assert_int_equal(t_recv_frame(peer, got, sizeof(got), 2000), VIRTIO_NET_HDR_LEN + 300);
	for (unsigned i = 0; i < VIRTIO_NET_HDR_LEN; i++)
		assert_int_equal(got[i], 0);
	assert_memory_equal(got + VIRTIO_NET_HDR_LEN, frame, 300);

	/* The header split over two descriptors. */
	b = t_buf(q, 1);
	memset(t_ptr(b), 0, VIRTIO_NET_HDR_LEN);
	memcpy(t_ptr(b + 2048), frame, 60);
	h = t_desc(q, b, 4, VIRTQ_DESC_F_NEXT);
	t_desc(q, b + 4, VIRTIO_NET_HDR_LEN - 4, VIRTQ_DESC_F_NEXT);
	t_desc(q, b + 2048, 60, 0);
	t_avail(&nic, q, h, true);
	t_wait_used(q, 2, &id, NULL);
	assert_int_equal(t_recv_frame(peer, got, sizeof(got), 2000), VIRTIO_NET_HDR_LEN + 60);
	assert_memory_equal(got + VIRTIO_NET_HDR_LEN, frame, 60);
	assert_int_equal(nic.stats.tx_frames, 2);
	assert_true(raises > 0);
}

static void test_tx_hostile(void **state)
{
	const unsigned q = VIRTIO_NET_Q_TX;
	uint8_t got[2048];
	uint32_t id, len;
	uint64_t b = t_buf(q, 0);

	memset(t_ptr(b), 0, 512);
	/* A device-writable buffer in a TX chain: returned, nothing sent. */
	uint16_t h = t_desc(q, b, VIRTIO_NET_HDR_LEN + 60, VIRTQ_DESC_F_NEXT);
	t_desc(q, b + 256, 64, VIRTQ_DESC_F_WRITE);
	t_avail(&nic, q, h, true);
	t_wait_used(q, 1, &id, &len);
	assert_int_equal(id, h);
	assert_int_equal(len, 0);
	/* Shorter than a header and an Ethernet header. */
	h = t_desc(q, b, VIRTIO_NET_HDR_LEN + 13, 0);
	t_avail(&nic, q, h, true);
	t_wait_used(q, 2, &id, &len);
	/* Longer than any frame (a buffer of 128 KiB). */
	h = t_desc(q, b, 128 * 1024, 0);
	t_avail(&nic, q, h, true);
	t_wait_used(q, 3, &id, &len);
	/* A loop: descriptor pointing at itself. */
	h = t_desc(q, b, 100, VIRTQ_DESC_F_NEXT);
	le_put(t_ptr(T_QBASE(q) + 16ULL * h + 14), h, 2);
	t_avail(&nic, q, h, true);
	t_wait_used(q, 4, &id, &len);
	assert_int_equal(len, 0);
	/* A buffer past the end of RAM. */
	h = t_desc(q, T_RAM - 16, 100, 0);
	t_avail(&nic, q, h, true);
	t_wait_used(q, 5, &id, &len);
	assert_int_equal(t_recv_frame(peer, got, sizeof(got), 50), -1);
	assert_int_equal(nic.stats.tx_frames, 0);
	assert_int_equal(nic.stats.tx_bad_chains, 5);
	/* The queue goes on. */
	h = t_desc(q, b, VIRTIO_NET_HDR_LEN + 60, 0);
	t_avail(&nic, q, h, true);
	t_wait_used(q, 6, &id, &len);
	assert_int_equal(t_recv_frame(peer, got, sizeof(got), 2000), VIRTIO_NET_HDR_LEN + 60);
	assert_false(t_rd(&nic, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
}

static void test_rx(void **state)
{
	const unsigned q = VIRTIO_NET_Q_RX;
	uint8_t frame[1514];
	uint32_t id, len;

	uint16_t h0 = t_post_rx(&nic, 0, 2048, true);
	uint16_t h1 = t_post_rx(&nic, 1, 2048, true);
	t_frame(frame, sizeof(frame), 3);
	/* DATA_VALID from the backend: a flag the guest did not negotiate, cleared. */
	t_send_frame(peer, 2, 0, frame, 100);
	t_wait_used(q, 1, &id, &len);
	assert_int_equal(id, h0);
	assert_int_equal(len, VIRTIO_NET_HDR_LEN + 100);
	const uint8_t *g = t_ptr(t_buf(q, 0));
	for (unsigned i = 0; i < 10; i++)
		assert_int_equal(g[i], 0);
	assert_int_equal(le_get(g + 10, 2), 1);		/* num_buffers */
	assert_memory_equal(g + VIRTIO_NET_HDR_LEN, frame, 100);
	assert_true(dirtied >= VIRTIO_NET_HDR_LEN + 100);
	t_send_frame(peer, 0, 0, frame, sizeof(frame));
	t_wait_used(q, 2, &id, &len);
	assert_int_equal(id, h1);
	assert_int_equal(len, VIRTIO_NET_HDR_LEN + sizeof(frame));
	assert_memory_equal(t_ptr(t_buf(q, 1)) + VIRTIO_NET_HDR_LEN, frame, sizeof(frame));
	assert_int_equal(nic.stats.rx_frames, 2);
}

static void test_rx_hostile(void **state)
{
	const unsigned q = VIRTIO_NET_Q_RX;
	uint8_t frame[1000];
	uint32_t id, len;

	t_frame(frame, sizeof(frame), 5);
	/* No buffer posted: dropped and counted. */
	t_send_frame(peer, 0, 0, frame, 60);
	t_wait_count(&nic.stats.rx_dropped, 1);
	assert_int_equal(t_used_idx(q), 0);
	/* A device-readable RX buffer: returned unused, the frame dropped. */
	uint16_t h = t_desc(q, t_buf(q, 0), 2048, 0);
	t_avail(&nic, q, h, true);
	t_send_frame(peer, 0, 0, frame, 60);
	t_wait_used(q, 1, &id, &len);
	assert_int_equal(len, 0);
	/* A buffer too short for the frame: the same. */
	t_post_rx(&nic, 1, 200, true);
	t_send_frame(peer, 0, 0, frame, 500);
	t_wait_used(q, 2, &id, &len);
	assert_int_equal(len, 0);
	/* Not a frame (shorter than an Ethernet header), and a GSO frame: dropped. */
	t_send_frame(peer, 0, 0, frame, 10);
	t_send_frame(peer, 0, 1, frame, 60);
	t_wait_count(&nic.stats.rx_dropped, 5);
	/* A loop in an RX chain: refused; the frame goes to the next good chain. */
	h = t_desc(q, t_buf(q, 2), 2048, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT);
	le_put(t_ptr(T_QBASE(q) + 16ULL * h + 14), h, 2);
	t_avail(&nic, q, h, false);
	uint16_t good = t_post_rx(&nic, 3, 2048, true);
	t_send_frame(peer, 0, 0, frame, 300);
	t_wait_used(q, 4, &id, &len);
	assert_int_equal(id, good);
	assert_int_equal(len, VIRTIO_NET_HDR_LEN + 300);
	assert_memory_equal(t_ptr(t_buf(q, 3)) + VIRTIO_NET_HDR_LEN, frame, 300);
	assert_int_equal(nic.stats.rx_bad_chains, 3);
	/* A garbage avail index: the device needs a reset and says so. */
	int before = raises;
	le_put(t_ptr(T_QBASE(q) + 0x1000 + 2), (uint16_t)(dq[q].avail_idx + 100), 2);
	t_send_frame(peer, 0, 0, frame, 60);
	for (int i = 0; i < 2000 && !(t_rd(&nic, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET); i++)
		usleep(1000);
	assert_true(t_rd(&nic, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
	assert_true(t_rd(&nic, VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_CONFIG);
	assert_true(raises > before);
	/* A reset brings it back. */
	t_driver_init(&nic, 1u << VIRTIO_NET_F_MAC, 2);
	t_post_rx(&nic, 0, 2048, true);
	t_send_frame(peer, 0, 0, frame, 70);
	t_wait_used(q, 1, &id, &len);
	assert_int_equal(len, VIRTIO_NET_HDR_LEN + 70);
}

/* A paused guest: nothing taken from the backend, nothing sent, no RAM written. */
static void test_paused(void **state)
{
	uint8_t frame[200], got[512];
	uint32_t id, len;

	t_frame(frame, sizeof(frame), 9);
	t_post_rx(&nic, 0, 2048, true);
	__atomic_store_n(&t_guest_runs, false, __ATOMIC_RELEASE);
	assert_int_equal(virtio_net_device_ops.quiesce(&nic), 0);
	uint64_t d = dirtied;
	t_send_frame(peer, 0, 0, frame, 200);
	uint64_t b = t_buf(VIRTIO_NET_Q_TX, 0);
	memset(t_ptr(b), 0, VIRTIO_NET_HDR_LEN);
	memcpy(t_ptr(b + VIRTIO_NET_HDR_LEN), frame, 64);
	uint16_t h = t_desc(VIRTIO_NET_Q_TX, b, VIRTIO_NET_HDR_LEN + 64, 0);
	t_avail(&nic, VIRTIO_NET_Q_TX, h, true);
	usleep(100 * 1000);
	assert_int_equal(t_used_idx(VIRTIO_NET_Q_RX), 0);
	assert_int_equal(t_used_idx(VIRTIO_NET_Q_TX), 0);
	assert_int_equal(t_recv_frame(peer, got, sizeof(got), 10), -1);
	assert_int_equal(dirtied, d);
	assert_int_equal(nic.stats.rx_dropped, 0);	/* the frame waits in the backend */
	/* Resumed: both go through. */
	__atomic_store_n(&t_guest_runs, true, __ATOMIC_RELEASE);
	t_wait_used(VIRTIO_NET_Q_RX, 1, &id, &len);
	assert_int_equal(len, VIRTIO_NET_HDR_LEN + 200);
	t_wait_used(VIRTIO_NET_Q_TX, 1, &id, &len);
	assert_int_equal(t_recv_frame(peer, got, sizeof(got), 2000), VIRTIO_NET_HDR_LEN + 64);
}

/* Send one control command (class, cmd); returns the ack byte, *len the used length. */
static uint8_t t_ctrl(struct virtio_net *n, uint8_t class, uint8_t cmd, bool with_ack,
		      uint32_t *len)
{
	const unsigned q = VIRTIO_NET_Q_CTRL;
	uint64_t b = t_buf(q, dq[q].avail_idx % 16);
	uint32_t id;

	t_ptr(b)[0] = class;
	t_ptr(b)[1] = cmd;
	t_ptr(b + 64)[0] = 0xee;
	uint16_t h = t_desc(q, b, 2, with_ack ? VIRTQ_DESC_F_NEXT : 0);
	if (with_ack)
		t_desc(q, b + 64, 1, VIRTQ_DESC_F_WRITE);
	t_avail(n, q, h, true);
	t_wait_used(q, dq[q].avail_idx, &id, len);
	assert_int_equal(id, h);
	return t_ptr(b + 64)[0];
}

static const uint32_t t_announce_features =
	(1u << VIRTIO_NET_F_MAC) | (1u << VIRTIO_NET_F_STATUS) | (1u << VIRTIO_NET_F_CTRL_VQ) |
	(1u << VIRTIO_NET_F_GUEST_ANNOUNCE);

static void test_ctrl(void **state)
{
	uint32_t len;

	t_driver_init(&nic, t_announce_features, 3);
	assert_int_equal(t_ctrl(&nic, 0, 0, true, &len), VIRTIO_NET_ERR);	/* RX mode: no */
	assert_int_equal(len, 1);
	assert_int_equal(t_ctrl(&nic, VIRTIO_NET_CTRL_ANNOUNCE, 0, true, &len), VIRTIO_NET_OK);
	assert_int_equal(t_ctrl(&nic, VIRTIO_NET_CTRL_ANNOUNCE, 0, false, &len), 0xee);
	assert_int_equal(len, 0);						/* no ack byte */
	assert_false(t_rd(&nic, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
}

/* Queue a hand-built control chain and return its used length. */
static uint32_t t_ctrl_chain(struct virtio_net *n, uint16_t head)
{
	uint32_t id, len;

	t_avail(n, VIRTIO_NET_Q_CTRL, head, true);
	t_wait_used(VIRTIO_NET_Q_CTRL, dq[VIRTIO_NET_Q_CTRL].avail_idx, &id, &len);
	assert_int_equal(id, head);
	return len;
}

/*
 * Hostile control commands: each is answered (an error ack, or no ack
 * byte where there is no writable buffer) and the queue goes on; ANNOUNCE
 * without GUEST_ANNOUNCE negotiated is refused.
 */
static void test_ctrl_hostile(void **state)
{
	const unsigned q = VIRTIO_NET_Q_CTRL;
	uint64_t b = t_buf(q, 0), w = t_buf(q, 1);
	uint32_t len;

	/* Only CTRL_VQ: the ACK means nothing without GUEST_ANNOUNCE. */
	t_driver_init(&nic, (1u << VIRTIO_NET_F_MAC) | (1u << VIRTIO_NET_F_CTRL_VQ), 3);
	assert_int_equal(t_ctrl(&nic, VIRTIO_NET_CTRL_ANNOUNCE, VIRTIO_NET_CTRL_ANNOUNCE_ACK, true,
				&len), VIRTIO_NET_ERR);
	t_driver_init(&nic, t_announce_features, 3);
	/* One readable byte (no command) and an ack: malformed, untouched. */
	t_ptr(b)[0] = VIRTIO_NET_CTRL_ANNOUNCE;
	t_ptr(w)[0] = 0xee;
	uint16_t h = t_desc(q, b, 1, VIRTQ_DESC_F_NEXT);
	t_desc(q, w, 1, VIRTQ_DESC_F_WRITE);
	assert_int_equal(t_ctrl_chain(&nic, h), 0);
	assert_int_equal(t_ptr(w)[0], 0xee);
	/* Only a writable buffer: malformed. */
	h = t_desc(q, w, 16, VIRTQ_DESC_F_WRITE);
	assert_int_equal(t_ctrl_chain(&nic, h), 0);
	assert_int_equal(t_ptr(w)[0], 0xee);
	/* Class and command in two one-byte buffers: understood. */
	t_ptr(b)[0] = VIRTIO_NET_CTRL_ANNOUNCE;
	t_ptr(b + 64)[0] = VIRTIO_NET_CTRL_ANNOUNCE_ACK;
	h = t_desc(q, b, 1, VIRTQ_DESC_F_NEXT);
	t_desc(q, b + 64, 1, VIRTQ_DESC_F_NEXT);
	t_desc(q, w, 1, VIRTQ_DESC_F_WRITE);
	assert_int_equal(t_ctrl_chain(&nic, h), 1);
	assert_int_equal(t_ptr(w)[0], VIRTIO_NET_OK);
	/* An unknown class with a page of data: an error ack. */
	memset(t_ptr(b), 0x5a, T_BUFSZ);
	h = t_desc(q, b, T_BUFSZ, VIRTQ_DESC_F_NEXT);
	t_desc(q, w, 1, VIRTQ_DESC_F_WRITE);
	assert_int_equal(t_ctrl_chain(&nic, h), 1);
	assert_int_equal(t_ptr(w)[0], VIRTIO_NET_ERR);
	/* A buffer outside RAM: refused, returned unused. */
	h = t_desc(q, T_RAM - 1, 2, VIRTQ_DESC_F_NEXT);
	t_desc(q, w, 1, VIRTQ_DESC_F_WRITE);
	t_ptr(w)[0] = 0xee;
	assert_int_equal(t_ctrl_chain(&nic, h), 0);
	assert_int_equal(t_ptr(w)[0], 0xee);
	/* A loop: refused. */
	h = t_desc(q, b, 2, VIRTQ_DESC_F_NEXT);
	uint8_t *d = t_ptr(T_QBASE(q) + 16ULL * h);
	le_put(d + 14, h, 2);
	assert_int_equal(t_ctrl_chain(&nic, h), 0);
	/* The queue still works, the device is not broken. */
	assert_int_equal(t_ctrl(&nic, VIRTIO_NET_CTRL_ANNOUNCE, VIRTIO_NET_CTRL_ANNOUNCE_ACK, true,
				&len), VIRTIO_NET_OK);
	assert_false(t_rd(&nic, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
}

/*
 * Migration: traffic on A, pause, quiesce, save; B (another backend, no
 * mac=) checks and loads it, takes A's MAC, goes on at the same ring
 * positions, and announces the guest once it runs.
 */
static void test_migrate(void **state)
{
	struct virtio_net_state *s = calloc(1, sizeof(*s)), *s2 = calloc(1, sizeof(*s2));
	struct virtio_net b, c;
	uint8_t frame[256], got[512];
	uint32_t id, len;
	char why[256];
	int pb, pc;

	t_driver_init(&nic, t_announce_features, 3);
	t_frame(frame, sizeof(frame), 11);
	for (unsigned i = 0; i < 4; i++)
		t_post_rx(&nic, i, 2048, true);
	t_send_frame(peer, 0, 0, frame, 100);
	t_wait_used(VIRTIO_NET_Q_RX, 1, NULL, NULL);
	/* Switchover: the guest pauses, a frame and a TX chain arrive meanwhile. */
	__atomic_store_n(&t_guest_runs, false, __ATOMIC_RELEASE);
	assert_int_equal(virtio_net_device_ops.quiesce(&nic), 0);
	t_send_frame(peer, 0, 0, frame, 120);	/* stays in the source's backend (test_hold) */
	uint64_t tb = t_buf(VIRTIO_NET_Q_TX, 0);
	memset(t_ptr(tb), 0, VIRTIO_NET_HDR_LEN);
	memcpy(t_ptr(tb + VIRTIO_NET_HDR_LEN), frame, 80);
	uint16_t th = t_desc(VIRTIO_NET_Q_TX, tb, VIRTIO_NET_HDR_LEN + 80, 0);
	t_avail(&nic, VIRTIO_NET_Q_TX, th, true);
	usleep(30 * 1000);
	assert_int_equal(virtio_net_device_ops.save(&nic, s), 0);
	assert_int_equal(s->t.queues[VIRTIO_NET_Q_RX].used_idx, 1);
	assert_int_equal(s->t.queues[VIRTIO_NET_Q_TX].last_avail, 0);	/* not taken here */

	/* A destination NIC with another mac=: refused, naming both. */
	assert_int_equal(t_create(&c, "52:54:00:00:00:01", &t_dest_runs, &pc), 0);
	assert_int_equal(virtio_net_device_ops.check(&c, s, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "52:54:00:12:34:56"));
	virtio_net_destroy(&c);
	close(pc);
	/* A state whose MAC disagrees with its configuration bytes: refused by the description. */
	*s2 = *s;
	s2->mac[5] ^= 1;
	assert_int_not_equal(virtio_net_vmsd.post_load(s2, why, sizeof(why)), 0);

	/* The destination: no mac=, so the guest's MAC comes along. */
	t_dest_runs = false;
	assert_int_equal(t_create(&b, NULL, &t_dest_runs, &pb), 0);
	assert_int_equal(virtio_net_device_ops.check(&b, s, why, sizeof(why)), 0);
	assert_int_equal(virtio_net_device_ops.load(&b, s), 0);
	assert_memory_equal(b.mac, "\x52\x54\x00\x12\x34\x56", 6);
	usleep(30 * 1000);
	assert_int_equal(t_recv_frame(pb, got, sizeof(got), 10), -1);	/* not before it runs */
	assert_int_equal(t_status(&b), VIRTIO_NET_S_LINK_UP);
	int before = raises;
	/* The guest starts here (the source's stays paused, then stops). */
	__atomic_store_n(&t_dest_runs, true, __ATOMIC_RELEASE);
	/* The TX chain the source left is sent from here, once. */
	t_wait_used(VIRTIO_NET_Q_TX, 1, &id, &len);
	assert_int_equal(id, th);
	assert_int_equal(t_recv_frame(pb, got, sizeof(got), 2000), VIRTIO_NET_HDR_LEN + 80);
	assert_memory_equal(got + VIRTIO_NET_HDR_LEN, frame, 80);
	assert_int_equal(t_recv_frame(peer, got, sizeof(got), 10), -1);
	/* RX goes on in the next posted buffer. */
	t_send_frame(pb, 0, 0, frame, 140);
	t_wait_used(VIRTIO_NET_Q_RX, 2, &id, &len);
	assert_int_equal(len, VIRTIO_NET_HDR_LEN + 140);
	assert_memory_equal(t_ptr(t_buf(VIRTIO_NET_Q_RX, 1)) + VIRTIO_NET_HDR_LEN, frame, 140);
	/* Announce: status bit and a configuration interrupt; the ACK clears it. */
	for (int i = 0; i < 2000 && !(t_status(&b) & VIRTIO_NET_S_ANNOUNCE); i++)
		usleep(1000);
	assert_int_equal(t_status(&b), VIRTIO_NET_S_LINK_UP | VIRTIO_NET_S_ANNOUNCE);
	assert_true(t_rd(&b, VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_CONFIG);
	assert_true(raises > before);
	assert_int_equal(t_ctrl(&b, VIRTIO_NET_CTRL_ANNOUNCE, VIRTIO_NET_CTRL_ANNOUNCE_ACK, true,
				&len), VIRTIO_NET_OK);
	assert_int_equal(t_status(&b), VIRTIO_NET_S_LINK_UP);
	virtio_net_destroy(&b);
	close(pb);
	free(s);
	free(s2);
}

/*
 * Frames held across a switchover: while the guest is paused the
 * backend's frames are taken into the hold (past the cap: dropped and
 * counted), copied out in order, and put into the RX queue ahead of a
 * newer frame once the guest runs again (a failed migration gives them
 * back).  Frames a destination is given come first the same way.
 */
static void test_hold(void **state)
{
	uint8_t frame[256], got[512];
	uint64_t dropped = 0;
	uint32_t id, len;

	t_frame(frame, sizeof(frame), 21);
	for (unsigned i = 0; i < 8; i++)
		t_post_rx(&nic, i, 2048, true);
	__atomic_store_n(&t_guest_runs, false, __ATOMIC_RELEASE);
	assert_int_equal(virtio_net_device_ops.quiesce(&nic), 0);
	for (uint8_t i = 0; i < 3; i++) {
		frame[0] = i;
		t_send_frame(peer, 0, 0, frame, 100 + i);
	}
	t_send_frame(peer, 0, 4, frame, 100);		/* "segmented": not ours, dropped */
	assert_int_equal(virtio_net_hold_backend(&nic, &dropped), 3);
	assert_int_equal(dropped, 0);
	assert_int_equal(virtio_net_hold_get(&nic, 1, got, sizeof(got)), 101);
	assert_int_equal(got[0], 1);
	assert_int_equal(virtio_net_hold_get(&nic, 3, got, sizeof(got)), -ENOENT);
	assert_int_equal(virtio_net_hold_get(&nic, 0, got, 10), -ENOSPC);
	/* Bad lengths are refused before anything is held. */
	assert_int_equal(virtio_net_hold_add(&nic, frame, VIRTIO_NET_MIN_FRAME - 1), -EINVAL);
	assert_int_equal(virtio_net_hold_add(&nic, frame, VIRTIO_NET_MAX_FRAME + 1), -EINVAL);
	usleep(30 * 1000);
	assert_int_equal(t_used_idx(VIRTIO_NET_Q_RX), 0);	/* nothing while paused */
	/* The guest runs on here: held frames first, in order, then the new one. */
	frame[0] = 9;
	t_send_frame(peer, 0, 0, frame, 150);
	__atomic_store_n(&t_guest_runs, true, __ATOMIC_RELEASE);
	t_wait_used(VIRTIO_NET_Q_RX, 4, &id, &len);
	for (unsigned i = 0; i < 4; i++) {
		const uint8_t *e = t_ptr(T_QBASE(VIRTIO_NET_Q_RX) + 0x2000 + 4 + 8 * i);
		uint32_t want = i < 3 ? 100 + i : 150;
		assert_int_equal(le_get(e + 4, 4), VIRTIO_NET_HDR_LEN + want);
		const uint8_t *b = t_ptr(t_buf(VIRTIO_NET_Q_RX, (unsigned)le_get(e, 4)));
		assert_int_equal(b[VIRTIO_NET_HDR_LEN], i < 3 ? i : 9);
		assert_int_equal(le_get(b + 10, 2), 1);			/* num_buffers */
	}
	struct virtio_net_stats st;
	virtio_net_read_stats(&nic, &st);
	assert_int_equal(st.held, 3);
	assert_int_equal(st.injected, 3);
	assert_int_equal(nic.held_frames, 0);

	/* The caps: frames past VIRTIO_NET_HOLD_MAX_FRAMES are dropped, counted. */
	__atomic_store_n(&t_guest_runs, false, __ATOMIC_RELEASE);
	assert_int_equal(virtio_net_device_ops.quiesce(&nic), 0);
	unsigned ok = 0;
	for (unsigned i = 0; i < VIRTIO_NET_HOLD_MAX_FRAMES + 5; i++)
		ok += virtio_net_hold_add(&nic, frame, 60) == 0;
	assert_int_equal(ok, VIRTIO_NET_HOLD_MAX_FRAMES);
	virtio_net_read_stats(&nic, &st);
	assert_int_equal(st.hold_dropped, 5);
	virtio_net_hold_free(&nic);
	assert_int_equal(virtio_net_hold_add(&nic, frame, 60), 0);
}

static void test_net_option(void **state)
{
	struct net_config c;
	char why[160];

	assert_int_equal(net_config_parse("tap=tap0,mac=52:54:00:ab:CD:ef", &c, why, sizeof(why)), 0);
	assert_string_equal(c.ifname, "tap0");
	assert_int_equal(c.kind, NET_BACKEND_TAP);
	assert_true(c.mac_set);
	assert_memory_equal(c.mac, "\x52\x54\x00\xab\xcd\xef", 6);
	assert_int_equal(net_config_parse("tap=tap0", &c, why, sizeof(why)), 0);
	assert_false(c.mac_set);
	assert_int_equal(net_config_parse("mac=52:54:00:00:00:01", &c, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "tap="));
	assert_int_equal(net_config_parse("tap=a-name-far-too-long", &c, why, sizeof(why)), -EINVAL);
	assert_int_equal(net_config_parse("tap=t,mac=01:00:5e:00:00:01", &c, why, sizeof(why)),
			 -EINVAL);	/* multicast */
	assert_int_equal(net_config_parse("tap=t,mac=52:54:00:00:00", &c, why, sizeof(why)), -EINVAL);
	assert_int_equal(net_config_parse("tap=t,mac=52:54:00:00:00:0g", &c, why, sizeof(why)),
			 -EINVAL);
	assert_int_equal(net_config_parse("tap=t,mac=52-54-00-00-00-01", &c, why, sizeof(why)),
			 -EINVAL);
	assert_int_equal(net_config_parse("tap=t,queues=2", &c, why, sizeof(why)), -EINVAL);
	assert_int_equal(net_config_parse("tap", &c, why, sizeof(why)), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_identify, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tx, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tx_hostile, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rx, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rx_hostile, setup, teardown),
		cmocka_unit_test_setup_teardown(test_paused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ctrl, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ctrl_hostile, setup, teardown),
		cmocka_unit_test_setup_teardown(test_migrate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hold, setup, teardown),
		cmocka_unit_test(test_net_option),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
