/*
 * The standby of a replication (ferry run --incoming URI --standby;
 * docs/replication.md).  The initial copy arrived like a migration, up
 * to END, and its state is loaded; the guest does not start.  Then:
 *
 *   ->  STANDBY (failover timeout, mode), sent with READY (incoming.c)
 *   ->  EPOCH_ACK 0
 *   <-  EPOCH n, RAM/RAM_RUN..., EPOCH_DISK..., STATE,
 *       EPOCH_END n pages chain [disk-records]
 *   ->  EPOCH_ACK n            (only once the epoch was applied whole)
 *   <-> HEARTBEAT              (between epochs, both ways)
 *   <-  ABORT                  (the primary stops replicating: stand down)
 *
 * An epoch's pages, disk blocks and state wait in a struct mig_epoch
 * (epoch.c) until its EPOCH_END: then, and only if it is whole, they reach
 * guest RAM and this side's disk images (copy-storage: ferry run --disk
 * path=... --copy-storage) and the state becomes the one to resume from.
 * A broken link drops the open epoch: the standby always holds the last
 * committed checkpoint, RAM and disks of the same instant.
 *
 * It takes over (mig_failover_decide) when the operator says so (ferry
 * failover) or, in auto mode, after the failover timeout without a whole
 * section from the primary; the primary fences itself in half that time
 * (source/replicate.c), so the two never run the guest at once.
 *
 * Main thread only (struct mig_incoming, the epoch); the control thread
 * reaches it through the commit's resolve (failover, quit).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fcntl.h>
#include <unistd.h>

#include "board/machine_state.h"
#include "migration/block.h"
#include "migration/block_internal.h"
#include "migration/dest/incoming.h"
#include "migration/dest/incoming_internal.h"
#include "migration/format.h"
#include "migration/replicate/epoch.h"
#include "migration/section.h"
#include "util/le.h"
#include "util/log.h"

/* Write a small section to the primary, never waiting past wait_ns.  0 or -errno. */
static int standby_send(struct mig_incoming *inc, uint8_t type, const uint8_t *p, uint32_t len,
			uint64_t wait_ns)
{
	inc->s.deadline_ns = vm_now_ns() + wait_ns;
	mig_section_write(&inc->s, type, p, len);
	int err = mig_stream_flush(&inc->s);
	inc->s.deadline_ns = 0;
	if (err)
		inc->reply_broken = true;
	return err;
}

/* Handlers of the rule table (incoming_rules.c). */
int mig_in_h_epoch(struct mig_in_ctx *c, const uint8_t *p, uint32_t len)
{
	struct mig_incoming *inc = c->inc;

	if (len != 8)
		return mig_in_fail(inc, -EPROTO, "EPOCH of %u bytes (must be 8)", len);
	int err = mig_epoch_begin(inc->epoch, le_get(p, 8), inc->why, sizeof(inc->why));
	return err ? mig_in_fail(inc, err, "%s", inc->why) : 0;
}

/* An epoch's STATE: checked now (it must load at failover), kept until EPOCH_END. */
int mig_in_h_epoch_state(struct mig_in_ctx *c, const uint8_t *p, uint32_t len)
{
	struct mig_incoming *inc = c->inc;
	struct machine_state st = { 0 };
	struct vmstate_error verr;

	if (machine_state_decode(p, len, inc->cfg.vcpus, &st, &verr)) {
		machine_state_free(&st);
		return mig_in_fail(inc, -EPROTO, "bad device state in epoch %llu: %s",
				   (unsigned long long)inc->epoch->seq, verr.msg);
	}
	int err = machine_state_match(c->m, &st, &verr) ? -EPROTO : 0;
	machine_state_free(&st);
	if (err)
		return mig_in_fail(inc, err, "%s", verr.msg);
	err = mig_epoch_set_state(inc->epoch, p, len, inc->why, sizeof(inc->why));
	return err ? mig_in_fail(inc, err, "%s", inc->why) : 0;
}

/* An epoch's disk block (EPOCH_DISK): checked now, kept until EPOCH_END. */
int mig_in_h_epoch_disk(struct mig_in_ctx *c, const uint8_t *p, uint32_t len)
{
	struct mig_incoming *inc = c->inc;
	const uint8_t *data;
	unsigned disk;
	uint64_t off;
	uint32_t n;
	int err = mig_epoch_disk_decode(p, len, &disk, &off, &n, &data, inc->why,
					sizeof(inc->why));

	if (!err)
		err = mig_epoch_add_disk(inc->epoch, disk, off, n, data, inc->why, sizeof(inc->why));
	return err ? mig_in_fail(inc, err, "%s", inc->why) : 0;
}

/*
 * This side's images, written only at an epoch's commit.  Main thread
 * only; the guest's own disk devices do not run while standing by.
 */
struct standby_disks {
	unsigned nr;
	int fd[MACHINE_MAX_DISKS];
};

static int standby_disk_apply(void *opaque, unsigned disk, uint64_t off, uint32_t len,
			      const uint8_t *data)
{
	struct standby_disks *sd = opaque;

	if (disk >= sd->nr)
		return -ERANGE;
	return data ? mig_block_write(sd->fd[disk], data, len, off)
		    : mig_block_zero(sd->fd[disk], off, len);
}

static int standby_apply(void *opaque, uint64_t gpa, const uint8_t *data)
{
	struct machine *m = opaque;
	uint8_t *dst = guest_memory_alias_ptr(&m->vm.mem, gpa, GUEST_PAGE_SIZE);

	if (!dst)
		return -ERANGE;
	if (data)
		memcpy(dst, data, GUEST_PAGE_SIZE);
	else
		memset(dst, 0, GUEST_PAGE_SIZE);
	return 0;
}

int mig_in_h_epoch_end(struct mig_in_ctx *c, const uint8_t *p, uint32_t len)
{
	struct mig_incoming *inc = c->inc;

	/* 32 bytes with the disk record count, 24 from a primary without disks. */
	if (len != 24 && len != 32)
		return mig_in_fail(inc, -EPROTO, "EPOCH_END of %u bytes (must be 24 or 32)", len);
	struct mig_epoch_end_rec end = {
		.seq = le_get(p, 8), .pages = le_get(p + 8, 8), .chain = le_get(p + 16, 8),
		.disk_recs = len == 32 ? le_get(p + 24, 8) : 0,
	};
	uint64_t seq = end.seq, pages = end.pages;
	/* The chain over the sections before this one: what the primary wrote up to EPOCH_END. */
	int err = mig_epoch_end(inc->epoch, &end, inc->s.chain_in_prev, standby_apply, c->m,
				inc->why, sizeof(inc->why));
	if (err == -EPROTO)
		return mig_in_fail(inc, err, "%s", inc->why);
	if (err) {
		/* RAM or a disk is half-written (epoch->torn): this copy is no checkpoint any more. */
		return mig_in_fail(inc, -EIO, "%s: %s; this standby holds no usable checkpoint",
				   inc->why, strerror(-err));
	}
	pr_debug("standby: epoch %llu committed (%llu pages, %llu disk records)",
		 (unsigned long long)seq, (unsigned long long)pages,
		 (unsigned long long)end.disk_recs);
	uint8_t ack[8];
	le_put(ack, seq, 8);
	if (standby_send(inc, MIG_SEC_EPOCH_ACK, ack, sizeof(ack), 1000000000ULL))
		return mig_in_fail(inc, mig_stream_error(&inc->s), "cannot acknowledge epoch %llu: %s",
				   (unsigned long long)seq, mig_stream_why(&inc->s));
	return 0;
}

int mig_in_h_heartbeat(struct mig_in_ctx *c, const uint8_t *p, uint32_t len)
{
	if (len != 16)
		return mig_in_fail(c->inc, -EPROTO, "HEARTBEAT of %u bytes (must be 16)", len);
	/* Echoed at once: it tells the primary we heard it at or after it sent this one. */
	uint64_t n = le_get(p, 8);
	if (n > c->inc->standby_echo)
		c->inc->standby_echo = n;
	return 0;
}

int mig_in_h_stand_down(struct mig_in_ctx *c, const uint8_t *p, uint32_t len)
{
	if (len)
		return mig_in_fail(c->inc, -EPROTO, "ABORT carries %u bytes (must be empty)", len);
	return mig_in_fail(c->inc, -ECONNABORTED, "the primary stopped replicating (it runs the "
			   "guest on, or the guest shut down); this standby stands down");
}

/* The last committed epoch's state into the machine (the initial one is loaded already). */
static int standby_load_checkpoint(struct mig_incoming *inc, struct mig_epoch *e)
{
	struct machine_state st = { 0 };
	struct vmstate_error verr;

	if (e->torn)
		return mig_in_fail(inc, -EIO, "the last epoch was half applied: no checkpoint to "
				   "resume from");
	if (!e->committed_state)
		return 0;
	int err = machine_state_decode(e->committed_state, e->committed_state_len, inc->cfg.vcpus,
				       &st, &verr);
	if (err) {
		machine_state_free(&st);
		return mig_in_fail(inc, -EPROTO, "the checkpoint's state does not decode: %s",
				   verr.msg);
	}
	err = machine_state_apply(inc->m, &st);
	machine_state_free(&st);
	if (err)
		return mig_in_fail(inc, -EPROTO, "the checkpoint's state does not load here: %s",
				   strerror(-err));
	return 0;
}

static void standby_link_lost(struct mig_incoming *inc, struct mig_epoch *e, bool *dead)
{
	if (*dead)
		return;
	*dead = true;
	pr_warn("standby: the link to the primary is lost (%s)%s; holding the checkpoint of "
		"epoch %llu", inc->why[0] ? inc->why : mig_stream_why(&inc->s),
		e->open ? ", the epoch in flight is dropped" : "",
		(unsigned long long)e->committed);
	mig_epoch_discard(e);
}

static int standby_loop(struct mig_incoming *inc, const struct mig_incoming_opts *opts,
			struct mig_commit *c, struct mig_epoch *e, uint8_t *buf)
{
	struct mig_in_ctx ctx = { .inc = inc, .opts = opts, .m = inc->m, .ph = MIG_IN_STANDBY };
	uint64_t hb = mig_heartbeat_ns(opts->failover_ns), now = vm_now_ns();
	uint64_t last_heard = now, last_sent = now, echoed = inc->standby_echo;
	bool dead = false, asked = false;
	uint8_t ack0[8] = { 0 };

	/* Our failover clock starts now, after END arrived: the primary's fence clock started before. */
	if (standby_send(inc, MIG_SEC_EPOCH_ACK, ack0, sizeof(ack0), hb))
		standby_link_lost(inc, e, &dead);
	else
		pr_info("standby: holding the initial checkpoint; failover %s after %llu ms of "
			"silence", opts->failover_mode == MIG_FAILOVER_AUTO ? "auto" : "by hand",
			(unsigned long long)(opts->failover_ns / 1000000));
	for (;;) {
		now = vm_now_ns();
		struct mig_failover_in in = {
			.now_ns = now, .last_heard_ns = last_heard, .timeout_ns = opts->failover_ns,
			.mode = opts->failover_mode, .link_lost = dead, .operator_asked = asked,
		};
		const char *reason;
		if (mig_failover_decide(&in, &reason) == MIG_FAILOVER_TAKEOVER) {
			pr_warn("standby: taking over from the checkpoint of epoch %llu: %s",
				(unsigned long long)e->committed, reason);
			return 0;
		}
		if (!dead && (now - last_sent >= hb || inc->standby_echo != echoed)) {
			/* Our last committed epoch, and the primary's last HEARTBEAT we had. */
			uint64_t v[2] = { e->committed, inc->standby_echo };
			echoed = inc->standby_echo;
			uint8_t p[16];
			le_put(p, v[0], 8);
			le_put(p + 8, v[1], 8);
			inc->why[0] = '\0';
			if (standby_send(inc, MIG_SEC_HEARTBEAT, p, sizeof(p), hb))
				standby_link_lost(inc, e, &dead);
			last_sent = now;
			continue;
		}
		uint64_t until = dead ? now + hb : last_sent + hb;
		if (opts->failover_mode == MIG_FAILOVER_AUTO && last_heard + opts->failover_ns < until)
			until = last_heard + opts->failover_ns;
		int ms = until > now ? (int)((until - now + 999999) / 1000000) : 0;
		enum mig_resolve r;
		int ready = mig_commit_wait(c, &inc->s, dead, opts->intr_fd, ms, &r);
		if (r == MIG_RESOLVE_RUN) {
			asked = true;
			continue;
		}
		if (r == MIG_RESOLVE_ABANDON)
			return mig_in_fail(inc, -ECANCELED, "the operator stopped the standby");
		if (ready == -EINTR)
			return mig_in_fail(inc, -EINTR, "interrupted while standing by");
		if (ready != 1)
			continue;
		inc->why[0] = '\0';
		int err = mig_in_dispatch(&ctx, buf, MIG_SECTION_MAX);
		if (!err) {
			last_heard = vm_now_ns();
			continue;
		}
		if (err == -ECONNABORTED)
			return err;
		if (e->torn)
			return err;	/* RAM half-written: nothing to resume from */
		ctx.ph = MIG_IN_STANDBY;
		standby_link_lost(inc, e, &dead);
	}
}

static void standby_disks_close(struct standby_disks *sd)
{
	for (unsigned i = 0; i < sd->nr; i++)
		if (sd->fd[i] >= 0)
			close(sd->fd[i]);
	sd->nr = 0;
}

/*
 * With copy-storage the initial copy filled this side's images (block
 * source, checked whole at END); epochs write them again at each commit,
 * through descriptors of our own.  Without, the standby has no disks
 * (ferry run refuses --standby with shared disks).  0 or -errno.
 */
static int standby_disks_open(struct mig_incoming *inc, struct mig_epoch *e,
			      struct standby_disks *sd)
{
	struct machine *m = inc->m;
	uint64_t sizes[MACHINE_MAX_DISKS];

	sd->nr = 0;
	if (!mig_block_accepted() || !m->nr_disks)
		return 0;
	for (unsigned i = 0; i < m->nr_disks; i++) {
		const struct virtio_blk *dev = &m->disks[i];
		sd->fd[i] = open(dev->cfg.path, O_RDWR | O_CLOEXEC);
		sd->nr = i + 1;
		if (sd->fd[i] < 0)
			return mig_in_fail(inc, -errno, "disk %u: cannot open %s: %s", i,
					   dev->cfg.path, strerror(errno));
		sizes[i] = dev->bk.size;
	}
	if (mig_epoch_set_disks(e, sd->nr, sizes, inc->epoch_ranges, standby_disk_apply, sd))
		return mig_in_fail(inc, -EINVAL, "cannot replicate %u disks", sd->nr);
	pr_info("standby: epochs carry the disks' blocks as %s", inc->epoch_ranges ?
		"the 4 KiB ranges written" : "whole 64 KiB chunks (ranges not agreed)");
	return 0;
}

int mig_standby_run(struct mig_incoming *inc, const struct mig_incoming_opts *opts,
		    struct mig_commit *c)
{
	struct standby_disks sd = { 0 };
	struct mig_epoch e;
	uint8_t *buf = malloc(MIG_SECTION_MAX);

	if (!buf)
		return mig_in_fail(inc, -ENOMEM, "out of memory");
	mig_epoch_init(&e, guest_memory_pages(&inc->m->vm.mem));
	int err = standby_disks_open(inc, &e, &sd);
	if (err) {
		standby_disks_close(&sd);
		mig_epoch_free(&e);
		free(buf);
		return err;
	}
	inc->epoch = &e;
	/* A section that stops halfway is silence, like no section at all. */
	inc->s.timeout_ms = (int)(opts->failover_ns / 1000000);
	inc->s.intr_fd = opts->intr_fd;
	mig_commit_set_state(c, MIG_COMMIT_STANDBY);
	err = standby_loop(inc, opts, c, &e, buf);
	mig_commit_set_state(c, MIG_COMMIT_NONE);
	if (!err)
		err = standby_load_checkpoint(inc, &e);
	inc->epoch = NULL;
	mig_epoch_free(&e);
	standby_disks_close(&sd);
	free(buf);
	return err;
}
