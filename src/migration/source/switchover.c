/*
 * The pre-copy switchover on the source: stop-and-copy, then the commit
 * that makes sure the guest never runs on both hosts
 * (docs/migration-stream.md, "Switchover"):
 *
 *   END ->  <- LOADED  GO ->  <- RESULT
 *
 * Until GO may have left, the source can always resume: the destination
 * starts the guest on GO only.  The whole stop-and-copy, up to LOADED, is
 * bounded by the switchover timeout; past it the source sends ABORT and
 * resumes.  After GO, only a RESULT (ok: done; error: the destination did
 * not start it, resume) or the operator (migrate-resolve) ends the wait.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "board/machine_state.h"
#include "migration/format.h"
#include "migration/migration.h"
#include "migration/ram.h"
#include "migration/section.h"
#include "migration/live.h"
#include "util/log.h"

#define SWITCHOVER_MIN_NS	1000000000ULL	/* the automatic timeout's floor */
#define SWITCHOVER_RESULT_POLL_MS 1000		/* in doubt: how often to look */
#define SWITCHOVER_ABORT_LINGER_NS 500000000ULL

/*
 * The automatic bound on the guest's pause: five downtime limits, at least
 * a second, and twice the expected downtime when a forced switchover
 * (max-iterations, --on-timeout force) sends more than the limit allows.
 */
static uint64_t switchover_timeout(const struct migration *mig)
{
	uint64_t t = mig->p.switchover_timeout_ns;

	if (t)
		return t;
	t = mig->p.downtime_ns * 5;
	if (mig->stats.expected_downtime_ns != UINT64_MAX && mig->stats.expected_downtime_ns * 2 > t)
		t = mig->stats.expected_downtime_ns * 2;
	return t > SWITCHOVER_MIN_NS ? t : SWITCHOVER_MIN_NS;
}

/* Pause the guest and send the final pass, the state, the digest and END. */
static int switchover_stop_and_copy(struct migration *mig, uint64_t *t)
{
	int64_t dirty;
	int err;

	/*
	 * Write-blocking disks let the guest's writes complete again: a vCPU
	 * waiting on one must not hold up the pause, nor a held write the
	 * quiesce.  What they write goes in the final pass.
	 */
	mig_sources_release(mig);
	/* From here the guest may end up at the destination: no resume but ours. */
	vm_fence(&mig->m->vm, true);
	err = vm_pause(&mig->m->vm, VM_PAUSE_TIMEOUT_NS);
	if (err)
		return precopy_fail(mig, err, "cannot pause for the switchover: %s",
				    vm_pause_strerror(err));
	precopy_phase(mig, MIG_PHASE_PAUSE, t);
	/* Devices drain into RAM before the final pass reads it. */
	err = machine_quiesce(mig->m);
	if (err)
		return precopy_fail(mig, err, "cannot quiesce the machine: %s", strerror(-err));
	/*
	 * Disks flushed and unlocked before END: the destination locks them on
	 * GO.  Copied disks are not handed over: the destination writes its own
	 * images, and this side keeps its lock until it ends.
	 */
	err = mig->p.copy_storage ? 0 : machine_inactivate(mig->m);
	if (err)
		return precopy_fail(mig, err, "cannot hand the disks over: %s", strerror(-err));
	uint64_t pending[MIG_SOURCE_NR];
	err = mig_sources_sync(mig, pending);
	if (err)
		return precopy_fail(mig, err, "final dirty sync failed");
	dirty = (int64_t)(pending[MIG_SOURCE_RAM] / GUEST_PAGE_SIZE);
	precopy_phase(mig, MIG_PHASE_FINAL_SYNC, t);
	pthread_mutex_lock(&mig->lock);
	mig->stats.mem_remaining = pending[MIG_SOURCE_RAM];
	pthread_mutex_unlock(&mig->lock);
	precopy_send_pass(mig, mig->stats.iteration, (uint64_t)dirty, true);
	/* A save's only pass sends each page once: none is re-sent. */
	err = mig_sources_complete(mig, mig->stats.iteration > 1, false);
	/* --channels: every page on every connection lands before STATE. */
	if (!err)
		err = mig_chans_barrier(mig, mig->stats.iteration, true);
	if (err)
		return precopy_stream_fail(mig, err);
	precopy_phase(mig, MIG_PHASE_FINAL_PAGES, t);
	err = precopy_send_state(mig);
	if (err)
		return err;
	err = precopy_send_last(mig, MIG_SEC_END);
	if (err)
		return err;
	precopy_phase(mig, MIG_PHASE_DEVICE_STATE, t);
	return 0;
}

/* Past the deadline: that, not the stream's symptom, is the reason to give. */
static void switchover_late(struct migration *mig, uint64_t limit)
{
	pthread_mutex_lock(&mig->lock);
	snprintf(mig->stats.error, sizeof(mig->stats.error),
		 "the switchover took longer than its %llu ms limit (--switchover-timeout); "
		 "cancelled", (unsigned long long)(limit / 1000000));
	pthread_mutex_unlock(&mig->lock);
}

/*
 * Tell the destination to drop the guest, best effort: it never starts
 * one without GO anyway, ABORT only lets it give up at once.  Then linger
 * on the return path so our close does not reset what we sent.
 */
static void switchover_abort(struct migration *mig)
{
	struct mig_stream *s = &mig->s;

	/* A file that was not finished is removed when the stream closes. */
	if (!mig_stream_has_return_path(s))
		return;
	/*
	 * Even after a failed send: if a section was cut short, ABORT lands
	 * inside it and the destination refuses a garbled stream instead.
	 */
	mig_stream_clear_error(s);
	s->len = 0;
	s->deadline_ns = vm_now_ns() + SWITCHOVER_ABORT_LINGER_NS;
	mig_section_write(s, MIG_SEC_ABORT, NULL, 0);
	mig_stream_flush(s);
	mig_stream_linger(s, SWITCHOVER_ABORT_LINGER_NS);
}

/*
 * Read the destination's answer: LOADED (want_loaded) or RESULT.  A
 * repeated LOADED is skipped while waiting for RESULT.  Returns 0 for
 * LOADED / RESULT ok, 1 for RESULT error (reason recorded), else -errno.
 */
static int switchover_read_answer(struct migration *mig, bool want_loaded)
{
	for (;;) {
		uint8_t buf[512], type;
		uint32_t len;
		int err = mig_section_read(&mig->s, buf, sizeof(buf), &type, &len);
		if (err)
			return err;
		int32_t status;
		const char *msg;
		int n;
		if (type == MIG_SEC_LOADED && len == 0) {
			if (want_loaded)
				return 0;
			continue;
		}
		if (type == MIG_SEC_RESULT && !mig_result_parse(buf, len, &status, &msg, &n)) {
			if (!status && !want_loaded)
				return 0;
			precopy_fail(mig, status ? status : -EPROTO, "destination: %.*s", n, msg);
			return 1;
		}
		mig_stream_fail(&mig->s, -EPROTO, "destination answered with section %u", type);
		return -EPROTO;
	}
}

/*
 * Send GO.  Returns 0 once it may have reached the destination (from
 * then on mig->end.committed), or -errno when not one byte of it left: the
 * destination cannot start the guest, the source may resume.
 */
static int switchover_go(struct migration *mig)
{
	uint64_t before = mig->s.bytes_sent;
	int err;

	mig->end.committed = true;
	mig_section_write(&mig->s, MIG_SEC_GO, NULL, 0);
	err = mig_stream_flush(&mig->s);
	if (err && mig->s.bytes_sent == before) {
		mig->end.committed = false;
		return precopy_stream_fail(mig, err);
	}
	mig_commit_set_state(&mig->commit, MIG_COMMIT_WAITING);
	return 0;
}

/*
 * GO went out and RESULT did not come in time: the destination may or may
 * not run the guest.  Stay paused, keep listening (a late RESULT still
 * settles it) and take the operator's word.  Returns 0 (the guest runs
 * there, or abandoned) or -errno with mig->end.committed cleared (run here).
 */
static int switchover_in_doubt(struct migration *mig, int why)
{
	bool dead = why != -ETIMEDOUT;

	mig_commit_set_state(&mig->commit, MIG_COMMIT_IN_DOUBT);
	precopy_set_status(mig, MIG_STATUS_IN_DOUBT);
	pr_err("migration to %s is in doubt: GO was sent but the destination did not confirm "
	       "(%s); the guest stays paused here. Find out which side runs it, then run "
	       "'ferry migrate-resolve CONTROL run' on the side that should and "
	       "'ferry migrate-resolve CONTROL abandon' on the other", mig->p.uri,
	       strerror(-why));
	mig->s.deadline_ns = 0;
	mig_stream_clear_error(&mig->s);
	for (;;) {
		enum mig_resolve r;
		int ready = mig_commit_wait(&mig->commit, &mig->s, dead, -1,
					    SWITCHOVER_RESULT_POLL_MS, &r);
		if (r == MIG_RESOLVE_RUN) {
			mig->end.committed = false;
			return precopy_fail(mig, -EIO, "in doubt; resolved by the operator: "
					    "the guest runs here");
		}
		if (r == MIG_RESOLVE_ABANDON) {
			mig->end.abandoned = true;
			return 0;
		}
		if (ready <= 0)
			continue;
		int err = switchover_read_answer(mig, false);
		if (err == 0) {
			pr_info("migration: the destination's late RESULT settles it: the guest runs there");
			return 0;
		}
		if (err == 1) {
			mig->end.committed = false;
			return -EREMOTEIO;
		}
		/* The connection is gone: only the operator can settle it now. */
		pr_warn("migration: in doubt and the connection to %s is lost (%s)", mig->p.uri,
			mig->s.why);
		dead = true;
	}
}

/*
 * Without a return path (a file) nobody answers: the image is the answer.
 * GO goes after END so a restore knows the save completed, then the file
 * is synced and published under its name.  Until that rename succeeds no
 * image exists and the source may resume; after it, the save happened.
 */
static int switchover_save(struct migration *mig)
{
	mig_section_write(&mig->s, MIG_SEC_GO, NULL, 0);
	int err = mig_stream_finish(&mig->s);
	if (err)
		return precopy_stream_fail(mig, err);
	return 0;
}

/* After GO: RESULT within the switchover timeout, else in doubt. */
static int switchover_await_result(struct migration *mig, uint64_t deadline)
{
	mig->s.deadline_ns = deadline;
	int err = switchover_read_answer(mig, false);
	if (err == 0)
		return 0;
	if (err == 1) {
		/* The destination did not start it and never will: resume. */
		mig->end.committed = false;
		return -EREMOTEIO;
	}
	return switchover_in_doubt(mig, err);
}

int switchover_run(struct migration *mig)
{
	uint64_t t0 = vm_now_ns(), t = t0, limit = switchover_timeout(mig);
	bool rp = mig_stream_has_return_path(&mig->s);
	int err;

	precopy_set_status(mig, MIG_STATUS_DEVICE);
	mig->pass.start_ns = t0;
	mig->pass.start_bytes = mig_bytes_out(mig);
	ratelimit_set_rate(&mig->rl, 0);	/* stop-and-copy runs unlimited */
	/* A save pauses the guest for all of it: no bound but the disk's pace. */
	mig->s.deadline_ns = rp ? t0 + limit : 0;
	err = switchover_stop_and_copy(mig, &t);
	pr_debug("migration: END sent at %.3f ms (monotonic)", (double)t / 1e6);
	if (!err && !rp) {
		err = switchover_save(mig);
	} else if (!err) {
		err = switchover_read_answer(mig, true);
		if (err < 0)
			err = precopy_stream_fail(mig, err);
		else if (err == 1)
			err = -EREMOTEIO;
	}
	precopy_phase(mig, MIG_PHASE_COMMIT, &t);
	if (err && rp && vm_now_ns() >= mig->s.deadline_ns)
		switchover_late(mig, limit);
	if (err) {
		mig->s.deadline_ns = 0;
		switchover_abort(mig);
		return err;
	}
	/* Frames that reached the taps while the destination loaded (live_net.c). */
	if (rp && (err = mig_sources_late(mig))) {
		err = precopy_stream_fail(mig, err);
		mig->s.deadline_ns = 0;
		switchover_abort(mig);
		return err;
	}
	if (rp)
		err = switchover_go(mig);
	if (!err && rp)
		err = switchover_await_result(mig, vm_now_ns() + limit);
	mig_commit_set_state(&mig->commit, MIG_COMMIT_NONE);
	precopy_phase(mig, MIG_PHASE_RESUME, &t);
	pthread_mutex_lock(&mig->lock);
	mig->stats.downtime_ns = t - t0;
	pthread_mutex_unlock(&mig->lock);
	/* The guest runs there: frames the switch still sends here follow it. */
	if (!err && rp && !mig->end.abandoned)
		switchover_epilogue(mig);
	pthread_mutex_lock(&mig->lock);
	mig->stats.wire_bytes = mig_bytes_out(mig);
	mig_chans_stats(mig, &mig->stats);
	pthread_mutex_unlock(&mig->lock);
	return err;
}
