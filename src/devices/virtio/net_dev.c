/*
 * virtio-net's I/O thread, lifecycle and migration hooks.  The thread
 * polls the backend (only while the guest runs), the three queues' kick
 * eventfds and ctl (stop, or look again after a load).  While the guest
 * does not run (paused, not yet started here, migrating away) it leaves
 * the backend alone and looks again every VIRTIO_NET_IDLE_MS: there is
 * no "resumed" event to wait for, and a short lag after a resume is what
 * a real link's carrier would cost too.
 */
#include "devices/virtio/net.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "util/le.h"
#include "util/log.h"

#define VIRTIO_NET_IDLE_MS	10
#define VIRTIO_NET_START_POLL_MS	1
#define VIRTIO_NET_START_POLL_NS	(1000ULL * 1000000ULL)	/* how long, after resume */
#define VIRTIO_NET_RX_BUDGET	64	/* frames per round, then TX gets a look */

static void net_signal(int fd)
{
	uint64_t one = 1;

	if (write(fd, &one, sizeof(one)) < 0)
		pr_debug("virtio-net eventfd: %s", strerror(errno));
}

/* Was eventfd p signalled?  Consumes it. */
static bool net_take(const struct pollfd *p)
{
	uint64_t v;

	if (!(p->revents & POLLIN))
		return false;
	if (read(p->fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		pr_debug("virtio-net eventfd: %s", strerror(errno));
	return true;
}

static uint64_t net_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* Does the guest run?  If not, *idle_ms: when to look again. */
static bool net_guest_runs(struct virtio_net *n, int *idle_ms)
{
	pthread_mutex_lock(&n->t.lock);
	bool r = !n->running || n->running(n->opaque);
	uint64_t until = n->start_poll_until_ns;
	pthread_mutex_unlock(&n->t.lock);
	*idle_ms = until && net_now_ns() < until ? VIRTIO_NET_START_POLL_MS : VIRTIO_NET_IDLE_MS;
	return r;
}

/* One gratuitous RARP from the NIC's MAC into the backend (announce.h). */
static void net_rarp_send(struct virtio_net *n)
{
	uint8_t hdr[VIRTIO_NET_HDR_LEN] = { 0 };
	uint8_t frame[NET_ANNOUNCE_FRAME_LEN];
	uint8_t mac[6];

	pthread_mutex_lock(&n->t.lock);
	memcpy(mac, n->mac, 6);
	pthread_mutex_unlock(&n->t.lock);
	net_announce_build(mac, frame);
	struct iovec iov[2] = {
		{ .iov_base = hdr, .iov_len = sizeof(hdr) },
		{ .iov_base = frame, .iov_len = sizeof(frame) },
	};
	if (n->be_dead || writev(n->be.fd, iov, 2) < 0) {
		pr_debug("nic %u: announce: %s", n->index, n->be_dead ? "no backend" : strerror(errno));
		NET_COUNT(n, announce_errors);
		return;
	}
	NET_COUNT(n, announce_rounds);
}

/*
 * Send the round that is due, if the guest runs (a paused guest, or one
 * that went away, is not announced here).  Returns the poll timeout in
 * ms until the next round, -1 when none is due.
 */
static int net_rarp_tick(struct virtio_net *n, bool runs)
{
	if (!runs)
		return -1;
	pthread_mutex_lock(&n->t.lock);
	bool restart = n->rarp_restart;
	n->rarp_restart = false;
	pthread_mutex_unlock(&n->t.lock);
	uint64_t now = net_now_ns();
	if (restart) {
		n->rarp_left = n->cfg.announce.rounds;
		n->rarp_sent = 0;
		n->rarp_next_ns = now;
	}
	if (!n->rarp_left)
		return -1;
	if (now >= n->rarp_next_ns) {
		net_rarp_send(n);
		n->rarp_left--;
		n->rarp_sent++;
		n->rarp_next_ns = now + net_announce_gap_ns(&n->cfg.announce, n->rarp_sent);
		if (!n->rarp_left) {
			pr_debug("nic %u: announced in %u rounds", n->index, n->rarp_sent);
			return -1;
		}
	}
	return (int)((n->rarp_next_ns - now + 999999) / 1000000);
}

static void *net_thread(void *arg)
{
	struct virtio_net *n = arg;
	struct virtio_mmio *t = &n->t;
	char name[16];

	snprintf(name, sizeof(name), "nic%u", n->index);
	pthread_setname_np(pthread_self(), name);
	for (;;) {
		int idle_ms;
		bool runs = net_guest_runs(n, &idle_ms);
		bool held = __atomic_load_n(&n->held_frames, __ATOMIC_RELAXED);
		bool busy = runs && (n->tx_pending || n->ctrl_pending || held);
		int timeout = busy ? 0 : runs ? -1 : idle_ms;
		int rarp = net_rarp_tick(n, runs);
		if (rarp >= 0 && (timeout < 0 || rarp < timeout))
			timeout = rarp;
		struct pollfd p[5] = {
			{ .fd = n->ctl_fd, .events = POLLIN },
			{ .fd = t->kick_fd[VIRTIO_NET_Q_RX], .events = POLLIN },
			{ .fd = t->kick_fd[VIRTIO_NET_Q_TX], .events = POLLIN },
			{ .fd = t->kick_fd[VIRTIO_NET_Q_CTRL], .events = POLLIN },
			{ .fd = n->be_dead ? -1 : n->be.fd, .events = runs ? POLLIN : 0 },
		};
		if (poll(p, 5, timeout) < 0 && errno != EINTR)
			break;
		net_take(&p[0]);
		net_take(&p[1]);	/* RX buffers posted: used when a frame comes */
		n->tx_pending |= net_take(&p[2]);
		n->ctrl_pending |= net_take(&p[3]);
		pthread_mutex_lock(&t->lock);
		bool stop = n->stop;
		pthread_mutex_unlock(&t->lock);
		if (stop)
			break;
		virtio_net_announce(n);
		if (n->ctrl_pending)
			n->ctrl_pending = !virtio_net_ctrl(n);
		if (n->tx_pending)
			n->tx_pending = !virtio_net_tx(n);
		if ((p[4].revents & POLLIN) || (runs && held))
			virtio_net_rx(n, VIRTIO_NET_RX_BUDGET);
		else if (p[4].revents)
			n->be_dead = true;	/* hung up (a socketpair's peer closed) */
		if (n->be_dead && !n->be_dead_told) {
			pr_warn("nic %u: its backend is gone; no more frames arrive", n->index);
			n->be_dead_told = true;
		}
	}
	return NULL;
}

void virtio_net_announce_self(struct virtio_net *n)
{
	uint64_t want = VIRTIO_BIT(VIRTIO_NET_F_GUEST_ANNOUNCE) | VIRTIO_BIT(VIRTIO_NET_F_CTRL_VQ);

	pthread_mutex_lock(&n->t.lock);
	n->rarp_restart = true;
	n->announce_pending = (n->t.driver_features & want) == want && virtio_mmio_running(&n->t);
	pthread_mutex_unlock(&n->t.lock);
	net_signal(n->ctl_fd);
}

void virtio_net_wake(struct virtio_net *n)
{
	net_signal(n->ctl_fd);
}

void virtio_net_read_stats(const struct virtio_net *n, struct virtio_net_stats *out)
{
	const uint64_t *from = (const uint64_t *)&n->stats;
	uint64_t *to = (uint64_t *)out;

	_Static_assert(sizeof(*out) % sizeof(uint64_t) == 0, "counters are all u64");
	for (size_t i = 0; i < sizeof(*out) / sizeof(uint64_t); i++)
		to[i] = __atomic_load_n(&from[i], __ATOMIC_RELAXED);
}

/* The driver reset the device: nothing is in flight outside the lock. */
static void net_reset(void *dev)
{
	struct virtio_net *n = dev;

	pthread_mutex_lock(&n->t.lock);
	le_put(n->t.config + 6, VIRTIO_NET_S_LINK_UP, 2);
	n->announce_pending = false;
	pthread_mutex_unlock(&n->t.lock);
}

static const struct virtio_mmio_dev_ops net_mmio_ops = {
	.reset = net_reset,
};

static int net_start_thread(struct virtio_net *n)
{
	sigset_t all, old;
	int err;

	/* Signals are for the main and vCPU threads. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	err = -pthread_create(&n->thread, NULL, net_thread, n);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	n->thread_started = !err;
	return err;
}

/* A random locally administered unicast MAC, as QEMU and libvirt make them. */
static void net_random_mac(uint8_t mac[6])
{
	if (getrandom(mac, 6, 0) != 6)
		for (unsigned i = 0; i < 6; i++)
			mac[i] = (uint8_t)rand();
	mac[0] = (uint8_t)((mac[0] & 0xfe) | 0x02);
}

int virtio_net_create(struct virtio_net *n, const struct virtio_net_config *c)
{
	uint8_t config[VIRTIO_NET_CONFIG_LEN];
	char why[160];
	int err;

	memset(n, 0, sizeof(*n));
	n->ctl_fd = -1;
	n->be.fd = -1;
	pthread_mutex_init(&n->hold_lock, NULL);
	n->held_tail = &n->held_head;
	net_txgate_init(&n->txgate);
	n->cfg = *c->net;
	n->index = c->index;
	n->running = c->running;
	n->opaque = c->opaque;
	if (n->cfg.mac_set)
		memcpy(n->mac, n->cfg.mac, 6);
	else
		net_random_mac(n->mac);
	err = net_backend_open(&n->be, &n->cfg, VIRTIO_NET_HDR_LEN, why, sizeof(why));
	if (err) {
		pr_err("nic %u: cannot open its backend: %s", c->index, why);
		return err;
	}
	virtio_net_build_config(n->mac, VIRTIO_NET_S_LINK_UP, config);
	struct virtio_mmio_config mc = {
		.device_id = VIRTIO_ID_NET, .features = virtio_net_features(),
		.nr_queues = VIRTIO_NET_NR_QUEUES, .config = config, .config_len = sizeof(config),
		.ram = c->ram, .dirty = c->dirty, .raise = c->raise, .opaque = c->opaque,
		.ops = &net_mmio_ops, .dev = n,
	};
	err = virtio_mmio_init(&n->t, &mc);
	if (err)
		goto fail_be;
	n->frame = malloc(VIRTIO_NET_HDR_LEN + VIRTIO_NET_MAX_FRAME);
	n->ctl_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (!n->frame || n->ctl_fd < 0) {
		err = -ENOMEM;
		goto fail;
	}
	err = net_start_thread(n);
	if (!err)
		return 0;
fail:
	free(n->frame);
	n->frame = NULL;
	if (n->ctl_fd >= 0)
		close(n->ctl_fd);
	virtio_mmio_destroy(&n->t);
fail_be:
	net_backend_close(&n->be);
	return err;
}

void virtio_net_destroy(struct virtio_net *n)
{
	if (!n->frame)
		return;		/* never created */
	if (n->thread_started) {
		pthread_mutex_lock(&n->t.lock);
		n->stop = true;
		pthread_mutex_unlock(&n->t.lock);
		net_signal(n->ctl_fd);
		pthread_join(n->thread, NULL);
		n->thread_started = false;
	}
	const struct virtio_net_stats *s = &n->stats;
	pr_debug("nic %u: rx %llu frames, %llu dropped, %llu bad chains; tx %llu frames, "
		 "%llu errors, %llu bad chains; announce %llu frames, %llu failed", n->index,
		 (unsigned long long)s->rx_frames,
		 (unsigned long long)s->rx_dropped, (unsigned long long)s->rx_bad_chains,
		 (unsigned long long)s->tx_frames, (unsigned long long)s->tx_errors,
		 (unsigned long long)s->tx_bad_chains, (unsigned long long)s->announce_rounds,
		 (unsigned long long)s->announce_errors);
	virtio_net_hold_free(n);
	net_txgate_stop(&n->txgate, NULL, NULL);
	free(n->frame);
	n->frame = NULL;
	close(n->ctl_fd);
	n->ctl_fd = -1;
	virtio_mmio_destroy(&n->t);
	net_backend_close(&n->be);
}

/* ---- migration (docs/devices.md) --------------------------------------- */

/* The net fields must say what the transport's configuration bytes say. */
static int net_post_load(void *obj, char *why, size_t whylen)
{
	const struct virtio_net_state *s = obj;

	if (s->t.device_id != VIRTIO_ID_NET || s->t.config_len != VIRTIO_NET_CONFIG_LEN ||
	    s->t.nr_queues != VIRTIO_NET_NR_QUEUES) {
		snprintf(why, whylen, "not a virtio-net transport (device %u, %u config bytes, "
			 "%u queues)", s->t.device_id, s->t.config_len, s->t.nr_queues);
		return -EINVAL;
	}
	if (memcmp(s->t.config, s->mac, 6) || le_get(s->t.config + 6, 2) != s->status) {
		snprintf(why, whylen, "MAC or status differ from the configuration space");
		return -EINVAL;
	}
	if (s->mac[0] & 1) {
		snprintf(why, whylen, "a multicast MAC");
		return -EINVAL;
	}
	return 0;
}

static const struct vmstate_field virtio_net_fields[] = {
	VMSTATE_STRUCT(struct virtio_net_state, t, virtio_mmio_state_vmsd),
	VMSTATE_U8_ARRAY(struct virtio_net_state, mac),
	VMSTATE_U16_RANGE(struct virtio_net_state, status, 0,
			  VIRTIO_NET_S_LINK_UP | VIRTIO_NET_S_ANNOUNCE),
	VMSTATE_END,
};

const struct vmstate_desc virtio_net_vmsd = {
	.name = "virtio-net",
	.version = 1,
	.size = sizeof(struct virtio_net_state),
	.fields = virtio_net_fields,
	.post_load = net_post_load,
};

static int net_dev_save(void *dev, void *state)
{
	struct virtio_net *n = dev;
	struct virtio_net_state *s = state;

	virtio_mmio_save(&n->t, &s->t);
	memcpy(s->mac, s->t.config, 6);
	s->status = (uint16_t)le_get(s->t.config + 6, 2);
	return 0;
}

/*
 * The source's NIC must be this one's twin, but its MAC is the guest's
 * identity and follows it: a NIC started without mac= takes the
 * source's; one with a different mac= is refused.  The status bits are
 * the guest's too.  So the transport is compared with those bytes as ours.
 */
static int net_dev_check(void *dev, const void *state, char *why, size_t whylen)
{
	struct virtio_net *n = dev;
	const struct virtio_net_state *s = state;
	struct virtio_mmio_state *cmp;
	char a[18], b[18], twhy[200];
	int err = 0;

	if (n->cfg.mac_set && memcmp(s->mac, n->mac, 6)) {
		net_mac_format(s->mac, a);
		net_mac_format(n->mac, b);
		snprintf(why, whylen, "nic %u: the source's NIC has MAC %s, this one mac=%s",
			 n->index, a, b);
		return -EINVAL;
	}
	cmp = malloc(sizeof(*cmp));
	if (!cmp)
		return -ENOMEM;
	*cmp = s->t;
	if (cmp->config_len == n->t.config_len)
		memcpy(cmp->config, n->t.config, 8);
	if (virtio_mmio_check(&n->t, cmp, twhy, sizeof(twhy))) {
		snprintf(why, whylen, "nic %u (tap %s): the source's NIC has %s", n->index,
			 n->cfg.ifname, twhy);
		err = -EINVAL;
	}
	free(cmp);
	return err;
}

static int net_dev_load(void *dev, const void *state)
{
	struct virtio_net *n = dev;
	const struct virtio_net_state *s = state;
	int err = virtio_mmio_load(&n->t, &s->t);

	if (err)
		return err;
	pthread_mutex_lock(&n->t.lock);
	memcpy(n->mac, s->mac, 6);
	virtio_net_build_config(s->mac, s->status, n->t.config);
	pthread_mutex_unlock(&n->t.lock);
	/*
	 * The guest now sits behind another port: once it runs here, ferry
	 * announces it with RARP, and so does its driver if it can
	 * (gratuitous ARP after the ANNOUNCE bit).
	 */
	virtio_net_announce_self(n);
	/* Chains the source never took wait in the rings: look once it runs. */
	net_signal(n->t.kick_fd[VIRTIO_NET_Q_TX]);
	net_signal(n->t.kick_fd[VIRTIO_NET_Q_CTRL]);
	net_signal(n->ctl_fd);
	return 0;
}

/* The vCPUs are about to start here: look for that closely for a while. */
static void net_dev_resume(void *dev)
{
	struct virtio_net *n = dev;

	pthread_mutex_lock(&n->t.lock);
	n->start_poll_until_ns = net_now_ns() + VIRTIO_NET_START_POLL_NS;
	pthread_mutex_unlock(&n->t.lock);
	net_signal(n->ctl_fd);
}

/*
 * The vCPUs are paused, so the thread touches neither guest memory nor
 * the backend any more (it checks under the lock): taking the lock once
 * waits for a frame it may be delivering.  Frames that arrive from now on
 * stay in this host's tap, and are lost if the guest leaves (docs).
 */
static int net_dev_quiesce(void *dev)
{
	struct virtio_net *n = dev;

	pthread_mutex_lock(&n->t.lock);
	pthread_mutex_unlock(&n->t.lock);
	return 0;
}

/* The rings and the next buffers on offer: what a post-copy sends first. */
static unsigned net_dev_first_pages(void *dev, uint64_t *gpa, unsigned max)
{
	struct virtio_net *n = dev;

	return virtio_mmio_first_pages(&n->t, gpa, max);
}

const struct device_ops virtio_net_device_ops = {
	.name = "virtio-net",
	.vmsd = &virtio_net_vmsd,
	.multi = true,
	.save = net_dev_save,
	.check = net_dev_check,
	.load = net_dev_load,
	.quiesce = net_dev_quiesce,
	.resume = net_dev_resume,
	.first_pages = net_dev_first_pages,
};
