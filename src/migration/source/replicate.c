/*
 * The primary of a replication (ferry replicate; docs/replication.md):
 * after the pre-copy passes, instead of the switchover,
 *
 *   0. with READY the standby sends STANDBY (its failover mode and
 *      timeout): checked before anything moves (replicate_handshake);
 *   1. the initial checkpoint: pause, the last dirty pages, STATE, END;
 *      the guest resumes, the standby loads it and answers EPOCH_ACK 0
 *      (within the fence timeout of END, or this side fences);
 *   2. every interval an epoch: pause, sync the dirty log, collect the
 *      dirty pages, the disk ranges written (copy-storage: disk.c) and
 *      the device state into the stream's buffer (held, not sent:
 *      mig_stream_hold), resume, then send it:
 *
 *        EPOCH seq, RAM/RAM_RUN..., EPOCH_DISK..., STATE,
 *        EPOCH_END seq pages chain [disk-records]
 *
 *      the standby applies it only once EPOCH_END proved it whole, then
 *      answers EPOCH_ACK seq;
 *   3. between epochs, HEARTBEAT both ways.
 *
 * Fencing: a standby in auto mode takes over after its failover timeout
 * of silence from this side.  So this side, when it has not heard the
 * standby for the fence timeout (half the standby's at most:
 * mig_fence_pick), or its link fails, pauses the guest for good
 * (mig->end.fenced): it never runs on past the moment the standby may
 * start.  With a manual standby the guest runs on here, unprotected.
 *
 * Migration thread only: mig->s, the epoch counters; stats under mig->lock.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "board/machine_state.h"
#include "migration/format.h"
#include "migration/live.h"
#include "migration/migration.h"
#include "migration/ram.h"
#include "migration/replicate/disk.h"
#include "migration/replicate/epoch.h"
#include "migration/section.h"
#include "util/le.h"
#include "util/log.h"

#define REPL_HOLD_MAX		(256u << 20)	/* an epoch larger than this is sent while paused */
#define REPL_HELLO_TIMEOUT_NS	(30ULL * 1000000000ULL)	/* initial copy loaded, STANDBY sent */

/* The standby's terms and what this side last heard; migration thread only. */
struct repl {
	struct migration *mig;
	enum mig_failover_mode mode;
	uint64_t standby_ns, fence_ns, hb_ns;
	/*
	 * last_heard is not when a message from the standby was read but the
	 * latest moment it proves the standby had heard *us*: when we sent
	 * the HEARTBEAT it echoes, or the epoch it acknowledges.  A message
	 * read late (this thread was busy with an epoch) cannot stretch the
	 * fence deadline past what the standby's failover clock allows.
	 */
	uint64_t last_heard, last_sent;
	uint64_t hb_seq;		/* HEARTBEATs sent */
	uint64_t hb_sent[MIG_HB_RING];	/* when each of the last ones went */
	uint64_t epoch_sent_at;		/* when epoch seq began to go out */
	uint64_t seq;			/* last epoch sent */
	uint64_t acked;			/* last epoch acknowledged */
	bool standby_quit;		/* it said (RESULT) it stopped for good */
	uint64_t acks;			/* EPOCH_ACKs heard */
};

static int repl_fence(struct repl *r, const char *why)
{
	struct migration *mig = r->mig;
	int err = vm_pause(&mig->m->vm, VM_PAUSE_TIMEOUT_NS);

	mig->end.fenced = true;
	if (err && err != -ESRCH) {
		/* It must not run on: stop the VM for good instead. */
		pr_err("replication: cannot pause the guest to fence it (%s); stopping the VM",
		       vm_pause_strerror(err));
		vm_request_stop(&mig->m->vm, VM_STOP_LOST, 0);
	}
	return precopy_fail(mig, -ETIMEDOUT, "fenced: %s (nothing heard from the standby for "
			    "%llu ms, and it may take over after %llu ms)", why,
			    (unsigned long long)((vm_now_ns() - r->last_heard) / 1000000),
			    (unsigned long long)(r->standby_ns / 1000000));
}

/*
 * The link failed (or the standby gave up): fence when the standby may
 * take over by itself, else run on unprotected.
 */
static int repl_link_lost(struct repl *r, int err)
{
	char why[260];

	/*
	 * A RESULT from the standby: it stopped (signal, quit, failure) and
	 * never starts the guest after saying so; no need to fence.
	 */
	if (r->standby_quit)
		return precopy_fail(r->mig, err, "%s; the guest runs on here unprotected",
				    r->mig->s.why);

	snprintf(why, sizeof(why), "the link to the standby failed: %s",
		 r->mig->s.why[0] ? r->mig->s.why : strerror(-err));
	if (r->mode == MIG_FAILOVER_AUTO)
		return repl_fence(r, why);
	return precopy_fail(r->mig, err ? err : -EIO, "%s; the standby takes over only by hand "
			    "(ferry failover), so the guest runs on here unprotected", why);
}

/* One section from the standby: EPOCH_ACK, HEARTBEAT, or RESULT (it gave up).  0 or -errno. */
static int repl_read(struct repl *r)
{
	struct migration *mig = r->mig;
	uint8_t buf[512], type;
	uint32_t len;
	int err = mig_section_read(&mig->s, buf, sizeof(buf), &type, &len);

	if (err)
		return err;
	if (type == MIG_SEC_EPOCH_ACK && len == 8) {
		uint64_t seq = le_get(buf, 8);
		if (seq > r->seq || seq < r->acked) {
			mig_stream_fail(&mig->s, -EPROTO, "the standby acknowledged epoch %llu; "
					"sent up to %llu, acknowledged %llu", (unsigned long long)seq,
					(unsigned long long)r->seq, (unsigned long long)r->acked);
			return -EPROTO;
		}
		/* It holds epoch seq: it heard us after seq began to go out. */
		if (seq && seq == r->seq && r->epoch_sent_at > r->last_heard)
			r->last_heard = r->epoch_sent_at;
		r->acked = seq;
		r->acks++;
		/* Output commit: what the guest sent up to that checkpoint may leave now. */
		machine_output_release(mig->m, seq);
		pthread_mutex_lock(&mig->lock);
		mig->stats.epochs_acked = seq;
		pthread_mutex_unlock(&mig->lock);
	} else if (type == MIG_SEC_HEARTBEAT && len == 16) {
		/* Its committed epoch, and the last of our HEARTBEATs it had. */
		uint64_t at = mig_hb_credit(r->hb_sent, r->hb_seq, le_get(buf + 8, 8));
		if (at > r->last_heard)
			r->last_heard = at;
	} else if (type == MIG_SEC_RESULT) {
		int32_t status;
		const char *msg;
		int n;
		if (mig_result_parse(buf, len, &status, &msg, &n))
			n = 0, msg = "";
		mig_stream_fail(&mig->s, -ECONNABORTED, "the standby gave up: %.*s", n, msg);
		r->standby_quit = true;
		return -ECONNABORTED;
	} else {
		mig_stream_fail(&mig->s, -EPROTO, "the standby sent section %u (%u bytes)", type, len);
		return -EPROTO;
	}
	return 0;
}

static void repl_put_u64s(struct mig_stream *s, uint8_t type, const uint64_t *v, unsigned n)
{
	uint8_t p[32];

	for (unsigned i = 0; i < n; i++)
		le_put(p + 8 * i, v[i], 8);
	mig_section_write(s, type, p, 8 * n);
}

/* HEARTBEAT: its counter (the standby echoes it) and our clock (for logs only). */
static int repl_heartbeat(struct repl *r)
{
	struct mig_stream *s = &r->mig->s;
	uint64_t now = vm_now_ns(), v[2] = { ++r->hb_seq, now };

	r->hb_sent[r->hb_seq % MIG_HB_RING] = now;

	repl_put_u64s(s, MIG_SEC_HEARTBEAT, v, 2);
	/* Never wait past the moment this side must fence. */
	s->deadline_ns = r->last_heard + r->fence_ns;
	int err = mig_stream_flush(s);
	s->deadline_ns = 0;
	r->last_sent = now;
	return err;
}

int replicate_handshake(struct migration *mig)
{
	uint8_t buf[512], type;
	uint32_t len;
	char why[200];

	/*
	 * Epochs carry RAM, the disks (copy-storage: EPOCH_DISK) and the
	 * device state; a standby takes no other source's sections.
	 */
	for (unsigned id = 0; id < MIG_SOURCE_NR; id++)
		if (id != MIG_SOURCE_RAM && id != MIG_SOURCE_BLOCK && mig->src_active[id])
			return precopy_fail(mig, -EOPNOTSUPP, "replication carries RAM, the disks "
					    "and the device state only, not the %s source",
					    mig_source_get(id)->name);
	int err = mig_section_read(&mig->s, buf, sizeof(buf), &type, &len);

	if (err)
		return precopy_fail(mig, err, "destination: %s", mig->s.why);
	if (type != MIG_SEC_STANDBY || len != 5 || buf[4] > MIG_FAILOVER_MANUAL)
		return precopy_fail(mig, -EPROTO, "the destination is not a standby (it answered "
				    "section %u of %u bytes); start it with 'ferry run --incoming "
				    "URI --standby'", type, len);
	uint64_t standby_ns = le_get(buf, 4) * 1000000ULL, fence_ns;
	if (standby_ns < MIG_FAILOVER_MIN_NS)
		return precopy_fail(mig, -EPROTO, "the standby's failover timeout of %llu ms is "
				    "below %llu ms", (unsigned long long)(standby_ns / 1000000),
				    MIG_FAILOVER_MIN_NS / 1000000);
	if (mig_fence_pick(mig->p.fence_ns, standby_ns, mig_heartbeat_ns(standby_ns), &fence_ns,
			   why, sizeof(why)))
		return precopy_fail(mig, -EINVAL, "%s", why);
	pthread_mutex_lock(&mig->lock);
	mig->stats.standby_failover_ns = standby_ns;
	mig->stats.standby_manual = buf[4] == MIG_FAILOVER_MANUAL;
	mig->stats.epoch_disk_ranges = mig->epoch_ranges;
	mig->stats.fence_ns = fence_ns;
	pthread_mutex_unlock(&mig->lock);
	return 0;
}

/*
 * The initial checkpoint: stop-and-copy as a switchover does, but the
 * guest resumes right after END; the standby then loads it and answers
 * EPOCH_ACK 0.  Returns 0 or -errno (the guest runs on here, unless
 * mig->end.fenced).
 */
static int repl_initial(struct repl *r)
{
	struct migration *mig = r->mig;
	uint64_t t0 = vm_now_ns(), t = t0, pending[MIG_SOURCE_NR];
	int err;

	precopy_set_status(mig, MIG_STATUS_DEVICE);
	ratelimit_set_rate(&mig->rl, 0);
	err = vm_pause(&mig->m->vm, VM_PAUSE_TIMEOUT_NS);
	if (err)
		return precopy_fail(mig, err, "cannot pause for the initial checkpoint: %s",
				    vm_pause_strerror(err));
	precopy_phase(mig, MIG_PHASE_PAUSE, &t);
	err = machine_quiesce(mig->m);
	if (err)
		return precopy_fail(mig, err, "cannot quiesce the machine: %s", strerror(-err));
	err = mig_sources_sync(mig, pending);
	if (err)
		return precopy_fail(mig, err, "final dirty sync failed");
	precopy_phase(mig, MIG_PHASE_FINAL_SYNC, &t);
	precopy_send_pass(mig, mig->stats.iteration, pending[MIG_SOURCE_RAM] / GUEST_PAGE_SIZE, true);
	err = mig_sources_complete(mig, mig->stats.iteration > 1, false);
	if (err)
		return precopy_stream_fail(mig, err);
	precopy_phase(mig, MIG_PHASE_FINAL_PAGES, &t);
	err = precopy_send_state(mig);
	/* Before END leaves: the standby cannot start its failover clock sooner. */
	uint64_t t_end = vm_now_ns();
	if (!err)
		err = precopy_send_last(mig, MIG_SEC_END);
	if (err)
		return err;
	precopy_phase(mig, MIG_PHASE_DEVICE_STATE, &t);
	/* Output commit: frames sent from now on leave once epoch 1 is acknowledged. */
	machine_output_hold(mig->m, 1);
	if (vm_resume(&mig->m->vm))
		return precopy_fail(mig, -ESRCH, "the VM stopped during the initial checkpoint");
	pthread_mutex_lock(&mig->lock);
	mig->stats.downtime_ns = vm_now_ns() - t0;
	pthread_mutex_unlock(&mig->lock);

	/*
	 * The standby holds checkpoint 0 once END arrived, and its failover
	 * clock starts after that: ours starts at END sent.  Its EPOCH_ACK 0
	 * must come within the fence timeout (an auto standby), or this side
	 * fences as it would for any silence.
	 */
	r->last_heard = r->last_sent = t_end;
	mig->pass.epochs = true;
	mig->s.deadline_ns = r->mode == MIG_FAILOVER_AUTO ? t_end + r->fence_ns
							  : t_end + REPL_HELLO_TIMEOUT_NS;
	err = repl_read(r);
	mig->s.deadline_ns = 0;
	if (!err && !r->acks) {
		mig_stream_fail(&mig->s, -EPROTO, "the standby answered END with a heartbeat, "
				"not EPOCH_ACK 0");
		err = -EPROTO;
	}
	if (err)
		return repl_link_lost(r, err);
	pthread_mutex_lock(&mig->lock);
	mig->stats.status = MIG_STATUS_REPLICATING;
	pthread_mutex_unlock(&mig->lock);
	pr_info("replication to %s: the standby holds the initial checkpoint; epochs every "
		"%llu ms, standby failover %s after %llu ms%s", mig->p.uri,
		(unsigned long long)(mig->p.epoch_interval_ns / 1000000),
		r->mode == MIG_FAILOVER_AUTO ? "auto" : "manual",
		(unsigned long long)(r->standby_ns / 1000000),
		r->mode == MIG_FAILOVER_AUTO ? ", this side fences sooner" : "");
	if (mig->src_active[MIG_SOURCE_BLOCK])
		pr_info("replication to %s: epochs carry the disks' blocks as %s", mig->p.uri,
			mig->epoch_ranges ? "the 4 KiB ranges the guest wrote (epoch disk ranges)"
					  : "whole 64 KiB chunks: the standby takes no ranges "
					    "(an older ferry)");
	return 0;
}

/*
 * One epoch.  Returns 0, -ESRCH when the VM stopped (shut down), or the
 * stream's error (link lost).
 */
static int repl_epoch(struct repl *r)
{
	struct migration *mig = r->mig;
	struct vm *vm = &mig->m->vm;
	uint64_t pending[MIG_SOURCE_NR];
	uint64_t t0 = vm_now_ns();
	/* Paused by the operator ('ferry pause'): checkpoint it, and leave it paused. */
	bool was_paused = vm_get_state(vm) == VM_STATE_PAUSED;
	int err = vm_pause(vm, VM_PAUSE_TIMEOUT_NS);

	if (err == -ESRCH)
		return err;
	if (err)
		return precopy_fail(mig, err, "cannot pause for an epoch: %s", vm_pause_strerror(err));
	err = machine_quiesce(mig->m);
	if (!err)
		err = mig_sources_sync(mig, pending);
	if (err) {
		if (!was_paused && vm_resume(vm))
			return -ESRCH;
		return precopy_fail(mig, err, "epoch %llu: cannot collect the dirty pages: %s",
				    (unsigned long long)r->seq + 1, strerror(-err));
	}
	uint64_t bytes0 = mig->s.bytes_out;
	pthread_mutex_lock(&mig->lock);
	uint64_t pages0 = mig->stats.normal_pages + mig->stats.zero_pages;
	pthread_mutex_unlock(&mig->lock);
	uint64_t seq = r->seq + 1;
	/* Frames the guest sent before this checkpoint belong to epoch seq; later ones to the next. */
	machine_output_mark(mig->m);
	mig_stream_hold(&mig->s, REPL_HOLD_MAX);
	repl_put_u64s(&mig->s, MIG_SEC_EPOCH, &seq, 1);
	/*
	 * RAM, then what the guest wrote to its disks: read now, paused and
	 * drained, so the blocks are the disks at this checkpoint.  Not the
	 * block source's complete: that ends a disk's copy (DONE) for good.
	 */
	bool disks = mig->src_active[MIG_SOURCE_BLOCK];
	struct mig_repl_disk_sum dsum = { 0 };
	err = mig_source_get(MIG_SOURCE_RAM)->complete(mig, true);
	if (!err && disks)
		err = mig_repl_disk_collect(mig, &dsum);
	if (!err)
		err = precopy_send_state(mig);
	if (err == -ECANCELED) {
		/* migrate-cancel mid-epoch: it is dropped (never sent), the guest runs on. */
		return !was_paused && vm_resume(vm) ? -ESRCH : -ECANCELED;
	}
	pthread_mutex_lock(&mig->lock);
	uint64_t pages = mig->stats.normal_pages + mig->stats.zero_pages - pages0;
	pthread_mutex_unlock(&mig->lock);
	/* The disk record count only with disks: a standby without them takes 24 bytes. */
	uint64_t v[4] = { seq, pages, mig->s.chain_out, dsum.recs };
	repl_put_u64s(&mig->s, MIG_SEC_EPOCH_END, v, disks ? 4 : 3);
	uint64_t paused = vm_now_ns() - t0;
	if (!was_paused && vm_resume(vm))
		return -ESRCH;
	r->seq = seq;
	/* The guest runs; now the epoch goes out, never past the fence deadline. */
	mig->s.deadline_ns = r->last_heard + r->fence_ns;
	r->epoch_sent_at = vm_now_ns();
	if (!err)
		err = mig_stream_release(&mig->s);
	mig->s.hold = false;
	mig->s.deadline_ns = 0;
	r->last_sent = vm_now_ns();
	uint64_t bytes = mig->s.bytes_out - bytes0;
	pthread_mutex_lock(&mig->lock);
	mig->stats.epochs = seq;
	mig->stats.epoch_pause_last_ns = paused;
	if (paused > mig->stats.epoch_pause_max_ns)
		mig->stats.epoch_pause_max_ns = paused;
	mig->stats.epoch_pause_total_ns += paused;
	mig->stats.epoch_bytes_last = bytes;
	mig->stats.epoch_bytes_total += bytes;
	mig->stats.epoch_disk_bytes_last = dsum.bytes;
	mig->stats.epoch_disk_bytes_total += dsum.bytes;
	mig->stats.epoch_disk_chunk_bytes_total += dsum.chunk_bytes;
	mig->stats.wire_bytes = mig->s.bytes_out;
	pthread_mutex_unlock(&mig->lock);
	return err;
}

/*
 * Stop replicating on purpose: tell the standby never to take over
 * (ABORT) and wait for it to say so (RESULT).  True when it did, or when
 * it never takes over by itself anyway (manual); false: it may, so the
 * caller must fence.
 */
static bool repl_stand_down(struct repl *r)
{
	struct mig_stream *s = &r->mig->s;
	uint64_t deadline = vm_now_ns() + 1000000000ULL;

	if (r->mode == MIG_FAILOVER_AUTO && r->last_heard + r->fence_ns < deadline)
		deadline = r->last_heard + r->fence_ns;
	mig_stream_clear_error(s);
	s->hold = false;
	s->len = 0;
	s->deadline_ns = deadline;
	mig_section_write(s, MIG_SEC_ABORT, NULL, 0);
	bool ok = !mig_stream_flush(s);
	while (ok) {
		uint8_t buf[512], type;
		uint32_t len;
		int32_t status;
		const char *msg;
		int n;
		if (mig_section_read(s, buf, sizeof(buf), &type, &len)) {
			ok = false;
		} else if (type == MIG_SEC_RESULT) {
			ok = !mig_result_parse(buf, len, &status, &msg, &n) && status == 0;
			break;
		}
	}
	s->deadline_ns = 0;
	if (ok)
		pr_info("replication: the standby stood down");
	return ok || r->mode == MIG_FAILOVER_MANUAL;
}

/* Cancelled, or the VM stopped (shutdown): stand the standby down, or fence. */
static int repl_stop(struct repl *r, const char *what)
{
	if (!repl_stand_down(r))
		return repl_fence(r, "the standby did not confirm it stood down");
	return precopy_fail(r->mig, -ECANCELED, "%s; the standby stood down", what);
}

/*
 * Until the next epoch is due: read what the standby says, send
 * heartbeats, fence when it has been silent too long.  0 when the epoch
 * is due, else -errno.
 */
static int repl_wait(struct repl *r, uint64_t due)
{
	struct migration *mig = r->mig;

	for (;;) {
		uint64_t now = vm_now_ns();
		if (migration_cancel_requested(mig))
			return -ECANCELED;
		if (mig_fence_decide(now, r->last_heard, r->fence_ns, r->mode))
			return repl_fence(r, "the standby is silent");
		/* A manual standby never takes over alone: give it up, run on. */
		if (r->mode == MIG_FAILOVER_MANUAL && now - r->last_heard >= r->fence_ns)
			return precopy_fail(mig, -ETIMEDOUT, "the standby has been silent for %llu ms; "
					    "it takes over only by hand (ferry failover), so the "
					    "guest runs on here unprotected",
					    (unsigned long long)((now - r->last_heard) / 1000000));
		/*
		 * At most one epoch in flight: the next waits for the last one's
		 * ACK, so the link never queues epochs (a slow standby makes the
		 * epochs longer) and this side keeps reading the standby.
		 */
		if (now >= due && r->acked == r->seq)
			return 0;
		if (now - r->last_sent >= r->hb_ns) {
			int err = repl_heartbeat(r);
			if (err)
				return repl_link_lost(r, err);
			continue;
		}
		uint64_t until = r->last_sent + r->hb_ns;
		if (now < due && due < until)
			until = due;
		if (r->mode == MIG_FAILOVER_AUTO && r->last_heard + r->fence_ns < until)
			until = r->last_heard + r->fence_ns;
		int ms = until > now ? (int)((until - now + 999999) / 1000000) : 0;
		int n = mig_stream_wait_readable(&mig->s, ms > 100 ? 100 : ms, NULL, 0);
		if (n < 0)
			return repl_link_lost(r, n);
		if (n & MIG_WAIT_CHANNEL) {
			/* A section that began arriving must end before the fence deadline. */
			mig->s.deadline_ns = r->last_heard + r->fence_ns;
			int err = repl_read(r);
			mig->s.deadline_ns = 0;
			if (err)
				return repl_link_lost(r, err);
		}
	}
}

/* The initial checkpoint, then epochs until the end.  -errno (see replicate_run). */
static int repl_loop(struct repl *r)
{
	struct migration *mig = r->mig;
	int err = repl_initial(r);

	if (err)
		return err;
	uint64_t due = vm_now_ns() + mig->p.epoch_interval_ns;
	for (;;) {
		err = repl_wait(r, due);
		if (err == -ECANCELED)
			return repl_stop(r, "replication stopped (migrate-cancel or quit)");
		if (err)
			return err;
		due = vm_now_ns() + mig->p.epoch_interval_ns;
		err = repl_epoch(r);
		if (err == -ECANCELED)
			return repl_stop(r, "replication stopped (migrate-cancel or quit)");
		if (err == -ESRCH)
			return repl_stop(r, "the VM stopped");
		if (err)
			return repl_link_lost(r, err);
	}
}

int replicate_run(struct migration *mig)
{
	struct repl r = { .mig = mig };

	/* The standby's terms, from the handshake (replicate_handshake). */
	pthread_mutex_lock(&mig->lock);
	r.standby_ns = mig->stats.standby_failover_ns;
	r.mode = mig->stats.standby_manual ? MIG_FAILOVER_MANUAL : MIG_FAILOVER_AUTO;
	r.fence_ns = mig->stats.fence_ns;
	if (r.mode == MIG_FAILOVER_MANUAL)
		mig->stats.fence_ns = 0;	/* reported as: no fence */
	pthread_mutex_unlock(&mig->lock);
	r.hb_ns = mig_heartbeat_ns(r.standby_ns);
	int err = repl_loop(&r);

	/*
	 * Output commit ends: frames kept for epochs never acknowledged go out
	 * when the guest runs on here, and are dropped when it was fenced (a
	 * standby may run the guest from an earlier checkpoint).
	 */
	machine_output_stop(mig->m, !mig->end.fenced);
	return err;
}
