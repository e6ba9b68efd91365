/*
 * virtio-blk's I/O thread, lifecycle and migration hooks.  The thread
 * waits on three eventfds: the queue's kick (signalled by KVM through an
 * ioeventfd, or by the transport), the backend's completions, and ctl
 * (stop, or a quiesce asking for a drain).  Requests are popped and
 * completed on this thread only.
 */
#include "devices/virtio/blk.h"
#include "devices/virtio/blk_internal.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "util/le.h"
#include "util/log.h"

/* A disk that does not finish its requests in this time fails the quiesce. */
#define VIRTIO_BLK_DRAIN_TIMEOUT_S 30
/*
 * How long a driver's reset (a vCPU thread's MMIO write) waits for the
 * requests in flight before it leaves them behind as orphans.
 */
#define VIRTIO_BLK_RESET_WAIT_MS 1000
/* How long destroy (ferry ending) waits for a backend to finish what it took. */
#define VIRTIO_BLK_STOP_WAIT_MS 5000

static void blk_signal(int fd)
{
	uint64_t one = 1;

	if (write(fd, &one, sizeof(one)) < 0)
		pr_debug("virtio-blk eventfd: %s", strerror(errno));
}

static void blk_consume(int fd)
{
	uint64_t v;

	if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		pr_debug("virtio-blk eventfd: %s", strerror(errno));
}

bool virtio_blk_orphan(const struct virtio_blk *b, const struct virtio_blk_req *r)
{
	return r->gen != b->gen;
}

bool virtio_blk_put_req(struct virtio_blk *b, struct virtio_blk_req *r)
{
	bool orphan = virtio_blk_orphan(b, r);

	/* An orphan's head may be a new request's by now: leave it alone. */
	if (!orphan)
		b->head_busy[r->chain.head] = 0;
	b->free_slots[b->nr_free++] = r->slot;
	b->in_flight--;
	if (!b->in_flight)
		pthread_cond_broadcast(&b->cond);	/* a reset may be waiting */
	return !orphan;
}

void virtio_blk_drop(struct virtio_blk *b, struct virtio_blk_req *r)
{
	struct virtio_mmio *t = &b->t;
	struct virtq *q = &t->queues[0];

	pthread_mutex_lock(&t->lock);
	if (virtio_blk_put_req(b, r) && virtq_push(q, &t->mem, r->chain.head, 0) == 0 &&
	    virtq_should_notify(q))
		virtio_mmio_interrupt(t, VIRTIO_MMIO_INT_VRING);
	pthread_mutex_unlock(&t->lock);
}

int virtio_blk_submit(struct virtio_blk *b, struct virtio_blk_req *r, enum block_op op,
		      uint64_t off)
{
	const struct block_backend_ops *ops = b->bk.ops;
	int err = ops->queue(&b->bk, op, r->iov, r->nr_iov, off, r);

	/* Cannot happen with one ring entry per queue slot; but never lose r. */
	if (err == -EAGAIN && ops->submit && !ops->submit(&b->bk))
		err = ops->queue(&b->bk, op, r->iov, r->nr_iov, off, r);
	return err;
}

/* A chain the queue refused (-EINVAL): back to the guest unused.  Lock held. */
static void blk_refuse_chain(struct virtio_blk *b, uint16_t head)
{
	struct virtio_mmio *t = &b->t;
	struct virtq *q = &t->queues[0];

	if (!t->warned)
		pr_warn("disk %u: malformed descriptor chain at head %u refused (further errors "
			"not logged)", b->index, head);
	t->warned = true;
	if (virtq_push(q, &t->mem, head, 0) == 0 && virtq_should_notify(q))
		virtio_mmio_interrupt(t, VIRTIO_MMIO_INT_VRING);
}

/*
 * Pop one chain into a free request.  Returns it (counted in flight), or
 * NULL when there is nothing (more) to take.  Lock held.
 */
static struct virtio_blk_req *blk_pop(struct virtio_blk *b)
{
	struct virtio_mmio *t = &b->t;
	struct virtq *q = &t->queues[0];

	while (virtio_mmio_running(t) && b->nr_free) {
		struct virtio_blk_req *r = &b->reqs[b->free_slots[b->nr_free - 1]];
		int got = virtq_pop(q, &t->mem, &r->chain);

		if (got == 0 && virtq_arm(q, &t->mem))
			continue;	/* one arrived as we asked for kicks */
		if (got == 0)
			return NULL;
		if (got == -EPROTO) {
			virtio_mmio_fail(t, "its request queue has an index out of range");
			return NULL;
		}
		if (got == -EINVAL) {
			blk_refuse_chain(b, r->chain.head);
			continue;
		}
		/* A head still in flight cannot be offered again: its buffers are busy. */
		if (b->head_busy[r->chain.head] == b->gen + 1) {
			virtio_mmio_fail(t, "offered a request that is still in flight");
			return NULL;
		}
		b->nr_free--;
		b->head_busy[r->chain.head] = b->gen + 1;
		r->gen = b->gen;
		r->done = 0;
		b->in_flight++;
		return r;
	}
	return NULL;
}

static void blk_process(struct virtio_blk *b)
{
	struct virtio_blk_req *r;

	for (;;) {
		pthread_mutex_lock(&b->t.lock);
		r = blk_pop(b);
		pthread_mutex_unlock(&b->t.lock);
		if (!r)
			break;
		virtio_blk_start(b, r);
	}
	if (b->bk.ops->submit && b->bk.ops->submit(&b->bk))
		pr_warn("disk %u: submitting to the %s backend failed", b->index, b->bk.ops->name);
}

/* r at the tail of the list head..tail (held or parked: both the io thread's). */
static void blk_req_append(struct virtio_blk_req **head, struct virtio_blk_req **tail,
			   struct virtio_blk_req *r)
{
	r->next = NULL;
	if (*tail)
		(*tail)->next = r;
	else
		*head = r;
	*tail = r;
}

void virtio_blk_complete_marked(struct virtio_blk *b, struct virtio_blk_req *r, uint8_t status,
				uint64_t written, uint64_t ticket)
{
	if (!ticket) {
		virtio_blk_complete(b, r, status, written);
		return;
	}
	r->ticket = ticket;
	r->held_status = status;
	r->held_written = written;
	blk_req_append(&b->held_head, &b->held_tail, r);
}

/*
 * Complete the held writes the tracker acknowledged (all: every one).
 * Tickets grow in the order the requests were held.
 */
static void blk_release_held(struct virtio_blk *b, bool all)
{
	uint64_t acked = b->held_head ? block_dirty_acked(&b->dirty) : 0;

	while (b->held_head && (all || b->held_head->ticket <= acked)) {
		struct virtio_blk_req *r = b->held_head;
		b->held_head = r->next;
		if (!b->held_head)
			b->held_tail = NULL;
		virtio_blk_complete(b, r, r->held_status, r->held_written);
	}
}

int virtio_blk_gate(struct virtio_blk *b, struct virtio_blk_req *r, uint64_t off, uint64_t len)
{
	int ret = block_gate_check(&b->gate, off, len);

	if (ret)
		return ret;
	blk_req_append(&b->parked_head, &b->parked_tail, r);
	return 0;
}

/*
 * Start the parked requests over (the gate filled something): each goes
 * on, or is parked again at the end, or fails.  `fail`: the disk stops,
 * so they end with an error instead.
 */
static void blk_retry_parked(struct virtio_blk *b, bool fail)
{
	struct virtio_blk_req *r = b->parked_head;

	b->parked_head = b->parked_tail = NULL;
	while (r) {
		struct virtio_blk_req *next = r->next;
		if (fail)
			virtio_blk_complete(b, r, VIRTIO_BLK_S_IOERR, 0);
		else
			virtio_blk_start(b, r);
		r = next;
	}
}

/* The tracker acknowledged tickets, or the gate filled ranges (a consumer's thread): wake ours. */
static void blk_dirty_notify(void *opaque)
{
	struct virtio_blk *b = opaque;

	blk_signal(b->ctl_fd);
}

static void blk_reaped(void *user, int64_t res, void *opaque)
{
	virtio_blk_finished(opaque, user, res);
}

static void *blk_thread(void *arg)
{
	struct virtio_blk *b = arg;
	struct virtio_mmio *t = &b->t;
	struct pollfd p[3] = {
		{ .fd = t->kick_fd[0], .events = POLLIN },
		{ .fd = -1 },
		{ .fd = b->ctl_fd, .events = POLLIN },
	};
	char name[16];
	struct timespec give_up = { 0 };	/* stopping: when to stop waiting for the backend */
	bool stopping = false;

	snprintf(name, sizeof(name), "disk%u", b->index);
	pthread_setname_np(pthread_self(), name);
	for (;;) {
		/* What the backend waits for changes (NBD: the socket's direction). */
		p[1].fd = b->bk.ops->poll_fd(&b->bk, &p[1].events);
		p[1].revents = 0;
		if (poll(p, 3, stopping ? 50 : -1) < 0 && errno != EINTR)
			break;
		if (p[0].revents & POLLIN)
			blk_consume(p[0].fd);
		if (p[2].revents & POLLIN)
			blk_consume(p[2].fd);
		pthread_mutex_lock(&t->lock);
		uint64_t asked = b->drain_req;	/* before we look at the queue */
		bool flush = b->flush_req == asked && asked != b->drain_done;
		bool stop = b->stop, take = b->active;
		pthread_mutex_unlock(&t->lock);
		if (b->parked_head && (stop || take))
			blk_retry_parked(b, stop);	/* before new ones: they came first */
		if (!stop && take)
			blk_process(b);
		/*
		 * A short read or write goes back to the backend from reap:
		 * submit it, and reap again (a synchronous one is done already).
		 */
		short revents = p[1].revents;
		do {
			b->resubmitted = false;
			b->bk.ops->reap(&b->bk, revents, blk_reaped, b);
			revents = 0;
			if (b->resubmitted && b->bk.ops->submit && b->bk.ops->submit(&b->bk))
				pr_warn("disk %u: submitting to the %s backend failed", b->index,
					b->bk.ops->name);
		} while (b->resubmitted);
		/* Stopping: nobody will acknowledge any more; the guest is going away. */
		blk_release_held(b, stop);
		pthread_mutex_lock(&t->lock);
		bool idle = !b->in_flight;
		if (idle && flush) {
			/* Nothing in flight: every write the guest saw acknowledged is made durable. */
			pthread_mutex_unlock(&t->lock);
			int ferr = b->bk.ops->flush(&b->bk);
			pthread_mutex_lock(&t->lock);
			b->flush_err = ferr;
		}
		if (idle) {
			b->drain_done = asked;
			pthread_cond_broadcast(&b->cond);
		}
		unsigned left = b->in_flight;
		pthread_mutex_unlock(&t->lock);
		if (stop && idle)
			break;
		/*
		 * Stopping with requests in a backend that does not answer (an
		 * NBD server gone): wait stop_wait_ms, not for ever, so that ferry
		 * can end.  What the backend still holds is abandoned with it
		 * (closing it cancels them); nothing here touches them again.
		 */
		if (stop && !stopping) {
			stopping = true;
			clock_gettime(CLOCK_MONOTONIC, &give_up);
			give_up.tv_sec += b->stop_wait_ms / 1000;
			give_up.tv_nsec += (long)(b->stop_wait_ms % 1000) * 1000000L;
			if (give_up.tv_nsec >= 1000000000L) {
				give_up.tv_sec++;
				give_up.tv_nsec -= 1000000000L;
			}
		}
		if (stopping) {
			struct timespec now;
			clock_gettime(CLOCK_MONOTONIC, &now);
			if (now.tv_sec > give_up.tv_sec ||
			    (now.tv_sec == give_up.tv_sec && now.tv_nsec >= give_up.tv_nsec)) {
				pr_warn("disk %u: %u requests still in the %s backend after %u ms; "
					"abandoned", b->index, left, b->bk.ops->name, b->stop_wait_ms);
				break;
			}
		}
	}
	return NULL;
}

int virtio_blk_drain(struct virtio_blk *b, bool flush)
{
	struct timespec until;
	int err = 0;

	if (!b->thread_started)
		return 0;
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += VIRTIO_BLK_DRAIN_TIMEOUT_S;
	pthread_mutex_lock(&b->t.lock);
	uint64_t want = ++b->drain_req;
	if (flush) {
		b->flush_req = want;
		b->flush_err = 0;
	}
	pthread_mutex_unlock(&b->t.lock);
	blk_signal(b->ctl_fd);
	pthread_mutex_lock(&b->t.lock);
	while (b->drain_done < want && !err)
		err = -pthread_cond_timedwait(&b->cond, &b->t.lock, &until);
	if (b->drain_done >= want)
		err = flush && b->flush_req == want ? b->flush_err : 0;
	else
		pr_err("disk %u: %u requests still in flight after %d s", b->index, b->in_flight,
		       VIRTIO_BLK_DRAIN_TIMEOUT_S);
	pthread_mutex_unlock(&b->t.lock);
	if (err && b->drain_done >= want)
		pr_err("disk %u: flushing %s failed: %s", b->index, b->cfg.path, strerror(-err));
	return err;
}

/*
 * The driver reset the device (on the vCPU thread that wrote the status):
 * the transport stopped new pops; wait for the rest, but not for ever (a
 * backend that hangs, an NBD server gone, must not wedge the vCPU and with
 * it the VMM).  What is still in flight after reset_wait_ms becomes an
 * orphan of the old generation: it still finishes (and counts for drain
 * and destroy), but writes no status and pushes nothing on the new ring.
 * A READ that lands late still writes the guest's old buffers, as a
 * hardware device's late DMA would; the driver has been told nothing.
 */
static void blk_reset(void *dev)
{
	struct virtio_blk *b = dev;
	struct timespec until;
	int err = 0;

	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += b->reset_wait_ms / 1000;
	until.tv_nsec += (long)(b->reset_wait_ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&b->t.lock);
	while (b->in_flight && !err)
		err = pthread_cond_timedwait(&b->cond, &b->t.lock, &until);
	if (b->in_flight)
		pr_warn("disk %u: reset with %u requests still in the %s backend after %u ms; "
			"they finish unreported", b->index, b->in_flight, b->bk.ops->name,
			b->reset_wait_ms);
	b->gen++;
	pthread_mutex_unlock(&b->t.lock);
}

static const struct virtio_mmio_dev_ops blk_mmio_ops = {
	.reset = blk_reset,
};

static int blk_start_thread(struct virtio_blk *b)
{
	sigset_t all, old;
	int err;

	/* Signals are for the main and vCPU threads. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	err = -pthread_create(&b->thread, NULL, blk_thread, b);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	b->thread_started = !err;
	return err;
}

int virtio_blk_create(struct virtio_blk *b, const struct virtio_blk_config *c)
{
	uint8_t config[VIRTIO_BLK_CONFIG_LEN];
	pthread_condattr_t ca;
	char why[768];		/* a path, a pid and what to do */
	int err;

	memset(b, 0, sizeof(*b));
	b->ctl_fd = -1;
	b->cfg = *c->disk;
	b->index = c->index;
	b->active = !c->inactive;
	b->reset_wait_ms = VIRTIO_BLK_RESET_WAIT_MS;
	b->stop_wait_ms = VIRTIO_BLK_STOP_WAIT_MS;
	err = block_open(&b->bk, c->disk, b->active, why, sizeof(why));
	if (err == -EBUSY)
		pr_err("%s", why);	/* the whole story: in use, by whom, what to do */
	else if (err)
		pr_err("disk %u: cannot open %s: %s", c->index, c->disk->path, why);
	if (err)
		return err;
	b->capacity = b->bk.size / 512;
	virtio_blk_build_config(b, config);
	struct virtio_mmio_config mc = {
		.device_id = VIRTIO_ID_BLOCK, .features = virtio_blk_features(b), .nr_queues = 1,
		.config = config, .config_len = sizeof(config), .ram = c->ram, .dirty = c->dirty,
		.raise = c->raise, .opaque = c->opaque, .ops = &blk_mmio_ops, .dev = b,
	};
	err = virtio_mmio_init(&b->t, &mc);
	if (err)
		goto fail_file;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&b->cond, &ca);
	pthread_condattr_destroy(&ca);
	block_dirty_init(&b->dirty);
	block_gate_init(&b->gate);
	b->reqs = calloc(VIRTQ_MAX_SIZE, sizeof(*b->reqs));
	b->ctl_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (!b->reqs || b->ctl_fd < 0) {
		err = -ENOMEM;
		goto fail;
	}
	block_dirty_set_notify(&b->dirty, blk_dirty_notify, b);
	block_gate_set_notify(&b->gate, blk_dirty_notify, b);
	for (unsigned i = 0; i < VIRTQ_MAX_SIZE; i++) {
		b->reqs[i].slot = (uint16_t)i;
		b->free_slots[b->nr_free++] = (uint16_t)(VIRTQ_MAX_SIZE - 1 - i);
	}
	err = blk_start_thread(b);
	if (!err)
		return 0;
fail:
	free(b->reqs);
	if (b->ctl_fd >= 0)
		close(b->ctl_fd);
	pthread_cond_destroy(&b->cond);
	block_dirty_destroy(&b->dirty);
	block_gate_destroy(&b->gate);
	virtio_mmio_destroy(&b->t);
fail_file:
	block_close(&b->bk);
	return err;
}

void virtio_blk_destroy(struct virtio_blk *b)
{
	if (!b->reqs)
		return;		/* never created */
	if (b->thread_started) {
		pthread_mutex_lock(&b->t.lock);
		b->stop = true;
		pthread_mutex_unlock(&b->t.lock);
		blk_signal(b->ctl_fd);
		pthread_join(b->thread, NULL);
		b->thread_started = false;
	}
	free(b->reqs);
	b->reqs = NULL;
	close(b->ctl_fd);
	b->ctl_fd = -1;
	pthread_cond_destroy(&b->cond);
	block_dirty_destroy(&b->dirty);
	block_gate_destroy(&b->gate);
	virtio_mmio_destroy(&b->t);
	block_close(&b->bk);
}

/* ---- migration (docs/devices.md) --------------------------------------- */

static const struct vmstate_field virtio_blk_fields[] = {
	VMSTATE_STRUCT(struct virtio_blk_state, t, virtio_mmio_state_vmsd),
	VMSTATE_END,
};

const struct vmstate_desc virtio_blk_vmsd = {
	.name = "virtio-blk",
	.version = 1,
	.size = sizeof(struct virtio_blk_state),
	.fields = virtio_blk_fields,
};

static int blk_dev_save(void *dev, void *state)
{
	struct virtio_blk *b = dev;
	struct virtio_blk_state *s = state;

	virtio_mmio_save(&b->t, &s->t);
	return 0;
}

/* The source's disk must be this one's twin: same size, same features. */
static int blk_dev_check(void *dev, const void *state, char *why, size_t whylen)
{
	struct virtio_blk *b = dev;
	const struct virtio_blk_state *s = state;
	char twhy[200];

	if (s->t.device_id == VIRTIO_ID_BLOCK && s->t.config_len >= 8 &&
	    le_get(s->t.config, 8) != b->capacity) {
		snprintf(why, whylen, "disk %u: the source's disk has %llu sectors, %s has %llu",
			 b->index, (unsigned long long)le_get(s->t.config, 8), b->cfg.path,
			 (unsigned long long)b->capacity);
		return -EINVAL;
	}
	if (virtio_mmio_check(&b->t, &s->t, twhy, sizeof(twhy))) {
		snprintf(why, whylen, "disk %u (%s): the source's disk has %s", b->index,
			 b->cfg.path, twhy);
		return -EINVAL;
	}
	return 0;
}

static int blk_dev_load(void *dev, const void *state)
{
	struct virtio_blk *b = dev;
	const struct virtio_blk_state *s = state;
	return virtio_mmio_load(&b->t, &s->t);
}

/* Chains the source never took wait in the ring: look without a kick. */
static void blk_dev_resume(void *dev)
{
	struct virtio_blk *b = dev;

	blk_signal(b->t.kick_fd[0]);
}

static int blk_dev_quiesce(void *dev)
{
	return virtio_blk_drain(dev, false);
}

/*
 * The switchover: nothing in flight, every acknowledged write durable,
 * then no more I/O and the lock released for the destination.
 */
static int blk_dev_inactivate(void *dev)
{
	struct virtio_blk *b = dev;
	int err;

	pthread_mutex_lock(&b->t.lock);
	bool was = b->active;
	b->active = false;
	pthread_mutex_unlock(&b->t.lock);
	if (!was)
		return 0;
	err = virtio_blk_drain(b, !b->cfg.readonly);
	if (err) {
		pthread_mutex_lock(&b->t.lock);
		b->active = true;	/* the guest runs on here: it keeps its disk */
		pthread_mutex_unlock(&b->t.lock);
		return err;
	}
	if (b->bk.ops->inactivate)
		b->bk.ops->inactivate(&b->bk);
	return 0;
}

/* Take the image's lock (the destination at GO, a source taking it back), then run. */
static int blk_dev_activate(void *dev, char *why, size_t whylen)
{
	struct virtio_blk *b = dev;
	int err = 0;

	pthread_mutex_lock(&b->t.lock);
	bool was = b->active;
	pthread_mutex_unlock(&b->t.lock);
	if (was)
		return 0;
	if (b->bk.ops->activate)
		err = b->bk.ops->activate(&b->bk, why, whylen);
	if (err)
		return err;
	pthread_mutex_lock(&b->t.lock);
	b->active = true;
	pthread_mutex_unlock(&b->t.lock);
	/* Requests offered while inactive wait in the ring: look without a kick. */
	blk_signal(b->t.kick_fd[0]);
	return 0;
}

/* The rings and the next buffers on offer: what a post-copy sends first. */
static unsigned blk_dev_first_pages(void *dev, uint64_t *gpa, unsigned max)
{
	struct virtio_blk *b = dev;

	return virtio_mmio_first_pages(&b->t, gpa, max);
}

const struct device_ops virtio_blk_device_ops = {
	.name = "virtio-blk",
	.vmsd = &virtio_blk_vmsd,
	.multi = true,
	.save = blk_dev_save,
	.check = blk_dev_check,
	.load = blk_dev_load,
	.resume = blk_dev_resume,
	.quiesce = blk_dev_quiesce,
	.inactivate = blk_dev_inactivate,
	.activate = blk_dev_activate,
	.first_pages = blk_dev_first_pages,
};
