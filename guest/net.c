/*
 * net.c - the virtio-net driver and the "net" workload (BSP, ring 3).
 *
 * Answers ARP requests and ICMP echo requests for ip=, and echoes UDP
 * datagrams sent to udp_port=, so that a client outside the guest can see
 * it, before and after a migration.  Everything else is dropped.  Frames
 * are one descriptor each (virtio-net header, then the frame); RX buffers
 * are re-posted as soon as a frame is handled, and a reply that finds no
 * free TX buffer, even after looking at the used ring again, is dropped,
 * as on a real link.
 *
 * Where the device offers GUEST_ANNOUNCE (with the control queue it needs),
 * the driver takes it: after a migration the device sets ANNOUNCE in its
 * config status and raises a config interrupt; the probe, which runs with
 * interrupts off, looks at the interrupt status every NET_ISR_POLL_HZ-th
 * of a second, and on that cause sends a gratuitous ARP for ip= and acks
 * with VIRTIO_NET_CTRL_ANNOUNCE_ACK, as Linux's virtio_net does.
 */
#include "user.h"
#include "virtio.h"

#define NET_RX_SLOTS            64
#define NET_TX_SLOTS            32
#define NET_QUEUE_MAX           128
#define NET_BUF                 2048    /* >= 12-byte header + 1514-byte frame */

#define NET_CTRL_QUEUE_MAX      8
#define NET_ISR_POLL_HZ         200     /* 5 ms: one trapped read each */

#define VIRTIO_NET_F_MAC        5
#define VIRTIO_NET_F_STATUS     16
#define VIRTIO_NET_F_CTRL_VQ    17
#define VIRTIO_NET_F_GUEST_ANNOUNCE 21
#define VIRTIO_NET_S_ANNOUNCE   2
#define VIRTIO_NET_CTRL_ANNOUNCE 3
#define VIRTIO_NET_CTRL_ANNOUNCE_ACK 0
#define VIRTIO_NET_OK           0

#define ETH_HLEN                14
#define ETH_P_IP                0x0800
#define ETH_P_ARP               0x0806
#define IP_P_ICMP               1
#define IP_P_UDP                17
#define ARP_LEN                 28

/* Owned by the BSP. */
static struct {
	struct virtio_dev *dev;
	struct virtq rxq, txq;  /* queues 0 and 1 */
	struct virtq ctrlq;     /* queue 2, with GUEST_ANNOUNCE */
	bool guest_announce;    /* negotiated (with CTRL_VQ) */
	bool ctrl_busy;         /* the ACK command is with the device */
	bool ack_due;           /* announced, not yet acked (ctrl was busy) */
	u8 *ctrl_buf;           /* DMA: class, command at 0; ack byte at 64 */
	u64 next_isr_poll;
	u32 hdr_len;            /* virtio_net_hdr: 12 bytes with VERSION_1, else 10 */
	u8 mac[6];
	u32 rx_slots, tx_slots; /* RX buffer i is descriptor i; so for TX */
	u8 *rx_buf, *tx_buf;    /* DMA: NET_BUF per slot */
	bool tx_busy[NET_TX_SLOTS];
	u64 rx, tx, arp, icmp, udp, dropped;   /* frames */
	u64 announces, ctrl_errors;            /* GUEST_ANNOUNCE rounds done, NAKs */
	u64 last_print, last_total;
} net;

/* ---- bytes on the wire --------------------------------------------------- */

static inline u16 get16(const u8 *p) { return (u16)(p[0] << 8 | p[1]); }
static inline u32 get32(const u8 *p) { return (u32)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3]; }
static inline void put16(u8 *p, u16 v) { p[0] = v >> 8; p[1] = (u8)v; }
static inline void put32(u8 *p, u32 v) { put16(p, v >> 16); put16(p + 2, (u16)v); }

static void swap_bytes(u8 *a, u8 *b, u32 n)
{
	for (u32 i = 0; i < n; i++) {
		u8 t = a[i];

		a[i] = b[i];
		b[i] = t;
	}
}

/* The Internet checksum of p[0..n), continuing from `sum`. */
static u16 csum(const u8 *p, u32 n, u32 sum)
{
	u64 s = sum;

	for (; n > 1; p += 2, n -= 2)
		s += get16(p);
	if (n)
		s += (u32)p[0] << 8;
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (u16)~s;
}

/* ---- transmit ---------------------------------------------------------- */

/* Take back the TX buffers the device has sent. */
static void tx_reclaim(void)
{
	u16 head;
	u32 len;

	while (virtq_pop(&net.txq, &head, &len)) {
		if (head >= net.tx_slots || !net.tx_busy[head]) {
			pr("probe: net: the device completed TX descriptor %u, which was not sent\n", head);
			probe_exit(EXIT_CORRUPT);
		}
		net.tx_busy[head] = false;
	}
}

/* A free slot, or net.tx_slots when all are out. */
static u32 tx_free_slot(void)
{
	u32 i;

	for (i = 0; i < net.tx_slots; i++)
		if (!net.tx_busy[i])
			break;
	return i;
}

/*
 * A free TX buffer (frame area past the virtio header), or NULL.  Before
 * giving up, look at the used ring again: net_poll() reclaims once per
 * round, but the requests it answers keep arriving during the round, and
 * each one may come after the device completed the reply that made room
 * for it (the client sends the next request once an echo is back).
 * Dropping then would count the device's speed against it.
 */
static u8 *tx_frame(u32 *slot)
{
	u32 i = tx_free_slot();

	if (i == net.tx_slots) {
		tx_reclaim();
		i = tx_free_slot();
		if (i == net.tx_slots)
			return NULL;
	}
	*slot = i;
	memset(net.tx_buf + i * NET_BUF, 0, net.hdr_len);
	return net.tx_buf + i * NET_BUF + net.hdr_len;
}

static void tx_send(u32 slot, u32 frame_len)
{
	net.txq.desc[slot] = (struct vring_desc){
		(u64)(net.tx_buf + slot * NET_BUF), net.hdr_len + frame_len, 0, 0 };
	net.tx_busy[slot] = true;
	virtq_push(&net.txq, (u16)slot);
	virtq_kick(&net.txq);
	net.tx++;
}

/* Copy the request, turn it round at the Ethernet level and send it. */
static u8 *reply_start(const u8 *req, u32 len, u32 *slot)
{
	u8 *out = tx_frame(slot);

	if (!out)
		return NULL;
	memcpy(out, req, len);
	memcpy(out, req + 6, 6);
	memcpy(out + 6, net.mac, 6);
	return out;
}

/* ---- protocols ------------------------------------------------------------- */

static bool arp_answer(const u8 *f, u32 len)
{
	const u8 *a = f + ETH_HLEN;
	u8 *out, *o;
	u32 slot;

	if (len < ETH_HLEN + ARP_LEN || get16(a) != 1 || get16(a + 2) != ETH_P_IP ||
	    a[4] != 6 || a[5] != 4 || get16(a + 6) != 1 || get32(a + 24) != sh.cfg.ip)
		return false;
	out = reply_start(f, ETH_HLEN + ARP_LEN, &slot);
	if (!out)
		return false;
	o = out + ETH_HLEN;
	put16(o + 6, 2);                        /* reply */
	memcpy(o + 18, a + 8, 10);              /* target = the asker */
	memcpy(o + 8, net.mac, 6);
	put32(o + 14, sh.cfg.ip);
	tx_send(slot, ETH_HLEN + ARP_LEN);
	net.arp++;
	return true;
}

/* Turn an IPv4 packet round: addresses swapped, fresh TTL and checksum. */
static void ip_turn(u8 *ip, u32 ihl)
{
	swap_bytes(ip + 12, ip + 16, 4);
	ip[8] = 64;
	put16(ip + 10, 0);
	put16(ip + 10, csum(ip, ihl, 0));
}

static bool icmp_answer(const u8 *f, u32 ihl, u32 ip_len)
{
	u32 n = ip_len - ihl, slot;
	u8 *out, *icmp;

	if (n < 8 || f[ETH_HLEN + ihl] != 8 || f[ETH_HLEN + ihl + 1] != 0)
		return false;                   /* not an echo request */
	out = reply_start(f, ETH_HLEN + ip_len, &slot);
	if (!out)
		return false;
	ip_turn(out + ETH_HLEN, ihl);
	icmp = out + ETH_HLEN + ihl;
	icmp[0] = 0;                            /* echo reply */
	put16(icmp + 2, 0);
	put16(icmp + 2, csum(icmp, n, 0));
	tx_send(slot, ETH_HLEN + ip_len);
	net.icmp++;
	return true;
}

static bool udp_answer(const u8 *f, u32 ihl, u32 ip_len)
{
	const u8 *u = f + ETH_HLEN + ihl;
	u32 n = ip_len - ihl, slot, sum;
	u8 *out, *ip, *uo;

	if (n < 8 || get16(u + 2) != sh.cfg.udp_port || get16(u + 4) < 8 || get16(u + 4) > n)
		return false;
	n = get16(u + 4);
	out = reply_start(f, ETH_HLEN + ihl + n, &slot);
	if (!out)
		return false;
	ip = out + ETH_HLEN;
	put16(ip + 2, (u16)(ihl + n));          /* drop any padding past the datagram */
	ip_turn(ip, ihl);
	uo = ip + ihl;
	swap_bytes(uo, uo + 2, 2);
	put16(uo + 6, 0);
	/* pseudo-header: addresses, protocol, UDP length */
	sum = get16(ip + 12) + get16(ip + 14) + get16(ip + 16) + get16(ip + 18) + IP_P_UDP + n;
	sum = csum(uo, n, sum);
	put16(uo + 6, sum ? sum : 0xffff);
	tx_send(slot, ETH_HLEN + ihl + n);
	net.udp++;
	return true;
}

static bool ip_answer(const u8 *f, u32 len)
{
	const u8 *ip = f + ETH_HLEN;
	u32 ihl, ip_len;

	if (len < ETH_HLEN + 20 || ip[0] >> 4 != 4)
		return false;
	ihl = (ip[0] & 15) * 4;
	ip_len = get16(ip + 2);
	if (ihl < 20 || ip_len < ihl || ip_len > len - ETH_HLEN ||
	    (get16(ip + 6) & 0x3fff) ||         /* a fragment */
	    get32(ip + 16) != sh.cfg.ip || csum(ip, ihl, 0))
		return false;
	if (ip[9] == IP_P_ICMP)
		return icmp_answer(f, ihl, ip_len);
	if (ip[9] == IP_P_UDP)
		return udp_answer(f, ihl, ip_len);
	return false;
}

static void handle_frame(const u8 *f, u32 len)
{
	static const u8 bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	bool answered = false;

	net.rx++;
	if (len >= ETH_HLEN && (!memcmp(f, net.mac, 6) || !memcmp(f, bcast, 6))) {
		if (get16(f + 12) == ETH_P_ARP)
			answered = arp_answer(f, len);
		else if (get16(f + 12) == ETH_P_IP)
			answered = ip_answer(f, len);
	}
	if (!answered)
		net.dropped++;
}

static void announce(void);

/* ---- GUEST_ANNOUNCE ------------------------------------------------------- */

/* Send VIRTIO_NET_CTRL_ANNOUNCE_ACK: one command in flight at a time. */
static void ctrl_ack_send(void)
{
	u8 *b = net.ctrl_buf;

	if (net.ctrl_busy) {
		net.ack_due = true;
		return;
	}
	b[0] = VIRTIO_NET_CTRL_ANNOUNCE;
	b[1] = VIRTIO_NET_CTRL_ANNOUNCE_ACK;
	b[64] = 0xff;
	net.ctrlq.desc[0] = (struct vring_desc){ (u64)b, 2, VRING_DESC_F_NEXT, 1 };
	net.ctrlq.desc[1] = (struct vring_desc){ (u64)(b + 64), 1, VRING_DESC_F_WRITE, 0 };
	net.ctrl_busy = true;
	net.ack_due = false;
	virtq_push(&net.ctrlq, 0);
	virtq_kick(&net.ctrlq);
}

/* The device answered the ACK command. */
static void ctrl_reclaim(void)
{
	u16 head;
	u32 len;

	while (virtq_pop(&net.ctrlq, &head, &len)) {
		if (head != 0 || !net.ctrl_busy) {
			pr("probe: net: the device completed control descriptor %u, which was not sent\n",
			   head);
			probe_exit(EXIT_CORRUPT);
		}
		net.ctrl_busy = false;
		if (len != 1 || net.ctrl_buf[64] != VIRTIO_NET_OK) {
			net.ctrl_errors++;
			pr("probe: net: the device refused ANNOUNCE_ACK (ack %u, length %u)\n",
			   (u32)net.ctrl_buf[64], len);
		}
	}
	if (net.ack_due && !net.ctrl_busy)
		ctrl_ack_send();
}

/* A config interrupt with ANNOUNCE set: say where we are, then ack. */
static void announce_poll(u64 now)
{
	u16 status;

	if (!net.guest_announce || now < net.next_isr_poll)
		return;
	net.next_isr_poll = now + sh.tsc_hz / NET_ISR_POLL_HZ;
	ctrl_reclaim();
	if (!(virtio_isr(net.dev) & VIRTIO_ISR_CONFIG))
		return;
	virtio_isr_ack(net.dev, VIRTIO_ISR_CONFIG);
	status = (u16)(virtio_config8(net.dev, 6) | virtio_config8(net.dev, 7) << 8);
	if (!(status & VIRTIO_NET_S_ANNOUNCE))
		return;
	announce();
	ctrl_ack_send();
	net.announces++;
	pr("probe: net announce: gratuitous ARP sent (%lu)\n", net.announces);
}

/* ---- receive --------------------------------------------------------------- */

static void rx_post(u16 slot)
{
	net.rxq.desc[slot] = (struct vring_desc){
		(u64)(net.rx_buf + slot * NET_BUF), NET_BUF, VRING_DESC_F_WRITE, 0 };
	virtq_push(&net.rxq, slot);
}

void net_poll(u64 now)
{
	bool posted = false;
	u16 head;
	u32 len, budget = net.rx_slots;

	tx_reclaim();
	announce_poll(now);
	while (budget-- && virtq_pop(&net.rxq, &head, &len)) {
		if (head >= net.rx_slots) {
			pr("probe: net: the device completed RX descriptor %u, which was not posted\n", head);
			probe_exit(EXIT_CORRUPT);
		}
		if (len > net.hdr_len && len <= NET_BUF)
			handle_frame(net.rx_buf + head * NET_BUF + net.hdr_len, len - net.hdr_len);
		else
			net.dropped++;
		rx_post(head);
		posted = true;
	}
	if (posted)
		virtq_kick(&net.rxq);
	if (now - net.last_print >= sh.tsc_hz && net.rx + net.tx != net.last_total) {
		net_report();
		net.last_print = now;
		net.last_total = net.rx + net.tx;
	}
}

/* ---- set-up ------------------------------------------------------------------ */

/* Tell the link who has ip= (a gratuitous ARP request). */
static void announce(void)
{
	u32 slot;
	u8 *f = tx_frame(&slot), *a;

	if (!f)
		return;
	memset(f, 0xff, 6);
	memcpy(f + 6, net.mac, 6);
	put16(f + 12, ETH_P_ARP);
	a = f + ETH_HLEN;
	put16(a, 1);
	put16(a + 2, ETH_P_IP);
	a[4] = 6;
	a[5] = 4;
	put16(a + 6, 1);
	memcpy(a + 8, net.mac, 6);
	put32(a + 14, sh.cfg.ip);
	memset(a + 18, 0, 6);
	put32(a + 24, sh.cfg.ip);
	tx_send(slot, ETH_HLEN + ARP_LEN);
}

/* Claim the first virtio-net device and fill its RX queue; exits with
 * EXIT_BADARG when there is none or it cannot be driven. */
void net_init(void)
{
	u32 ip = sh.cfg.ip;

	if (!ip) {
		pr("probe: workload net needs ip=A.B.C.D\n");
		probe_exit(EXIT_BADARG);
	}
	net.dev = virtio_claim(VIRTIO_ID_NET);
	if (!net.dev) {
		pr("probe: workload net needs a virtio-net device (virtio_mmio.device=)\n");
		probe_exit(EXIT_BADARG);
	}
	u64 announce_bits = 1UL << VIRTIO_NET_F_STATUS | 1UL << VIRTIO_NET_F_CTRL_VQ |
			    1UL << VIRTIO_NET_F_GUEST_ANNOUNCE;
	if (!virtio_negotiate(net.dev, 1UL << VIRTIO_NET_F_MAC | announce_bits,
			      1UL << VIRTIO_NET_F_MAC) ||
	    !virtq_setup(net.dev, &net.rxq, 0, NET_QUEUE_MAX) ||
	    !virtq_setup(net.dev, &net.txq, 1, NET_QUEUE_MAX))
		probe_exit(EXIT_BADARG);
	/* Without the control queue's ACK the guest must not take ANNOUNCE (§5.1.3.1). */
	net.guest_announce = (net.dev->features & announce_bits) == announce_bits;
	if (net.guest_announce) {
		net.ctrl_buf = dma_alloc(PAGE_SIZE);
		if (!net.ctrl_buf || !virtq_setup(net.dev, &net.ctrlq, 2, NET_CTRL_QUEUE_MAX))
			probe_exit(EXIT_BADARG);
	}
	net.hdr_len = net.dev->features & (1UL << VIRTIO_F_VERSION_1) ? 12 : 10;
	for (u32 i = 0; i < 6; i++)
		net.mac[i] = virtio_config8(net.dev, i);
	net.rx_slots = net.rxq.size < NET_RX_SLOTS ? net.rxq.size : NET_RX_SLOTS;
	net.tx_slots = net.txq.size < NET_TX_SLOTS ? net.txq.size : NET_TX_SLOTS;
	net.rx_buf = dma_alloc(NET_RX_SLOTS * NET_BUF);
	net.tx_buf = dma_alloc(NET_TX_SLOTS * NET_BUF);
	if (!net.rx_buf || !net.tx_buf) {
		pr("probe: net: out of DMA memory\n");
		probe_exit(EXIT_BADARG);
	}
	for (u16 i = 0; i < net.rx_slots; i++)
		rx_post(i);
	virtio_driver_ok(net.dev);
	virtq_kick(&net.rxq);
	announce();
	net.last_print = rdtsc();
	pr("probe: net 0x%lx mac %02x:%02x:%02x:%02x:%02x:%02x ip %u.%u.%u.%u udp_port %u, queues %u/%u%s\n",
	   net.dev->loc.base, net.mac[0], net.mac[1], net.mac[2], net.mac[3], net.mac[4], net.mac[5],
	   ip >> 24, (ip >> 16) & 255, (ip >> 8) & 255, ip & 255, (u32)sh.cfg.udp_port,
	   net.rxq.size, net.txq.size, net.guest_announce ? ", guest announce" : "");
}

void net_report(void)
{
	pr("probe: net rx %lu tx %lu arp %lu icmp %lu udp %lu dropped %lu announced %lu\n",
	   net.rx, net.tx, net.arp, net.icmp, net.udp, net.dropped, net.announces);
}
