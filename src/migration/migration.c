#include "migration/migration.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include "util/log.h"

void migration_init(struct migration *mig, struct machine *m)
{
	memset(mig, 0, sizeof(*mig));
	mig->m = m;
	pthread_mutex_init(&mig->lock, NULL);
	/* Timed waits on it (the post-copy resume) must not jump with the wall clock. */
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&mig->cond, &ca);
	pthread_condattr_destroy(&ca);
	/* Without its eventfd a decision is still seen, at the waiter's next poll. */
	if (mig_commit_init(&mig->commit))
		mig->commit.wake_fd = -1;
}

static void migration_join(struct migration *mig)
{
	if (mig->thread_started) {
		pthread_join(mig->thread, NULL);
		mig->thread_started = false;
	}
}

void migration_destroy(struct migration *mig)
{
	migration_cancel(mig);
	/* Quitting a source that is in doubt discards this copy. */
	if (!mig_commit_resolve(&mig->commit, MIG_RESOLVE_ABANDON))
		pr_warn("quitting while the switchover is in doubt: this copy of the guest is discarded");
	migration_join(mig);
	mig_commit_destroy(&mig->commit);
	pthread_cond_destroy(&mig->cond);
	pthread_mutex_destroy(&mig->lock);
}

bool migration_running(struct migration *mig)
{
	pthread_mutex_lock(&mig->lock);
	enum mig_status s = mig->stats.status;
	pthread_mutex_unlock(&mig->lock);
	return (s >= MIG_STATUS_SETUP && s <= MIG_STATUS_POSTCOPY_PAUSED) ||
	       s == MIG_STATUS_IN_DOUBT || s == MIG_STATUS_REPLICATING;
}

int migration_start(struct migration *mig, const struct mig_params *p, mig_event_fn *fn,
		    void *opaque)
{
	int err;

	if (migration_running(mig))
		return -EBUSY;
	if (migration_incoming_postcopy(mig))
		return -EINPROGRESS;
	/*
	 * Replication needs acknowledgements and sends every epoch whole:
	 * pre-copy, no codecs; disks only as copies (never shared storage:
	 * docs/replication.md, "Disks").
	 */
	if (p->replicate && (!mig_channel_uri_return_path(p->uri) || p->mode != MIG_MODE_PRECOPY ||
			     p->compress != MIG_COMPRESS_NONE ||
			     (mig->m->nr_disks && !p->copy_storage)))
		return -EOPNOTSUPP;
	/* Post-copy's page requests and incremental disk digests need a way back; a file has none. */
	if (!mig_channel_uri_return_path(p->uri) &&
	    (p->mode != MIG_MODE_PRECOPY || p->on_timeout == MIG_ON_TIMEOUT_POSTCOPY ||
	     p->copy_incremental))
		return -EOPNOTSUPP;
	/* A finished job leaves its thread to be joined and its stats to replace. */
	migration_join(mig);
	mig->p = *p;
	/* The last job closed its extra connections: start counting afresh. */
	memset(&mig->chans, 0, sizeof(mig->chans));
	mig->chans.stage_to = -1;
	memset(&mig->preempt, 0, sizeof(mig->preempt));
	mig->preempt.hint = MIG_PREEMPT_NO_HINT;
	/* The loop's state starts afresh: the last job's thread is joined. */
	memset(&mig->pass, 0, sizeof(mig->pass));
	mig->on_event = fn;
	mig->event_opaque = opaque;
	pthread_mutex_lock(&mig->lock);
	memset(&mig->stats, 0, sizeof(mig->stats));
	mig->stats.status = MIG_STATUS_SETUP;
	mig->stats.start_ns = vm_now_ns();
	mig->stats.verify = p->verify;
	mig->stats.compress = p->compress;
	mig->stats.order = p->order;
	/* The connections asked for, until the handshake says how many were agreed. */
	mig->stats.nr_channels = p->channels > 1 ? p->channels : 1;
	mig->stats.preempt_asked = p->postcopy_preempt;
	mig->req.cancel = false;
	mig->req.resume_requested = false;
	mig->end.committed = false;
	mig->end.abandoned = false;
	mig->end.fenced = false;
	mig->stats.replicating = p->replicate;
	pthread_mutex_unlock(&mig->lock);
	err = -pthread_create(&mig->thread, NULL, precopy_thread, mig);
	if (err) {
		pthread_mutex_lock(&mig->lock);
		mig->stats.status = MIG_STATUS_FAILED;
		pthread_mutex_unlock(&mig->lock);
		return err;
	}
	mig->thread_started = true;
	return 0;
}

void migration_set_incoming_postcopy(struct migration *mig, bool on)
{
	pthread_mutex_lock(&mig->lock);
	mig->req.incoming_postcopy = on;
	pthread_mutex_unlock(&mig->lock);
}

void migration_set_incoming_frames_after_go(struct migration *mig, uint64_t n)
{
	pthread_mutex_lock(&mig->lock);
	mig->req.incoming_frames_after_go = n;
	pthread_mutex_unlock(&mig->lock);
}

bool migration_incoming_postcopy(struct migration *mig)
{
	pthread_mutex_lock(&mig->lock);
	bool on = mig->req.incoming_postcopy;
	pthread_mutex_unlock(&mig->lock);
	return on;
}

int migration_cancel(struct migration *mig)
{
	int err = -ESRCH;

	pthread_mutex_lock(&mig->lock);
	if ((mig->stats.status >= MIG_STATUS_SETUP && mig->stats.status <= MIG_STATUS_DEVICE) ||
	    mig->stats.status == MIG_STATUS_REPLICATING) {
		mig->req.cancel = true;
		pthread_cond_broadcast(&mig->cond);
		err = 0;
	} else if (mig->stats.status == MIG_STATUS_POSTCOPY_PAUSED) {
		/* Giving up on a broken post-copy: the VM is lost, and said so. */
		mig->req.cancel = true;
		pthread_cond_broadcast(&mig->cond);
		err = 0;
	}
	pthread_mutex_unlock(&mig->lock);
	return err;
}

bool migration_cancel_requested(struct migration *mig)
{
	pthread_mutex_lock(&mig->lock);
	bool c = mig->req.cancel;
	pthread_mutex_unlock(&mig->lock);
	return c;
}

int migration_set_limits(struct migration *mig, const uint64_t *bandwidth,
			 const uint64_t *downtime_ns)
{
	int err = -ESRCH;

	pthread_mutex_lock(&mig->lock);
	if (mig->stats.status >= MIG_STATUS_SETUP && mig->stats.status <= MIG_STATUS_ACTIVE) {
		if (bandwidth)
			mig->p.bandwidth = *bandwidth;
		if (downtime_ns)
			mig->p.downtime_ns = *downtime_ns;
		mig->req.limits_changed = true;
		err = 0;
	}
	pthread_mutex_unlock(&mig->lock);
	return err;
}

int migration_resume(struct migration *mig, const char *uri, const struct mig_tls *tls)
{
	int err = -ESRCH;

	pthread_mutex_lock(&mig->lock);
	if (mig->stats.status == MIG_STATUS_POSTCOPY_PAUSED && strlen(uri) < sizeof(mig->req.resume_uri)) {
		strcpy(mig->req.resume_uri, uri);
		mig->req.resume_tls = mig_tls_enabled(tls) ? *tls : mig->p.tls;
		mig->req.resume_requested = true;
		pthread_cond_broadcast(&mig->cond);
		err = 0;
	}
	pthread_mutex_unlock(&mig->lock);
	return err;
}

int migration_start_postcopy(struct migration *mig)
{
	int err = -ESRCH;

	pthread_mutex_lock(&mig->lock);
	if (mig->stats.status >= MIG_STATUS_SETUP && mig->stats.status <= MIG_STATUS_ACTIVE &&
	    !mig_channel_uri_return_path(mig->p.uri)) {
		err = -EOPNOTSUPP;
	} else if (mig->stats.status >= MIG_STATUS_SETUP && mig->stats.status <= MIG_STATUS_ACTIVE &&
		   mig->p.replicate) {
		err = -EOPNOTSUPP;
	} else if (mig->stats.status >= MIG_STATUS_SETUP && mig->stats.status <= MIG_STATUS_ACTIVE) {
		mig->req.postcopy_requested = true;
		err = 0;
	}
	pthread_mutex_unlock(&mig->lock);
	return err;
}

int migration_break(struct migration *mig, bool preempt)
{
	int err = -ESRCH;

	/* Under lock: the migration thread creates and destroys mig->s (and the preempt one) under it. */
	pthread_mutex_lock(&mig->lock);
	enum mig_status s = mig->stats.status;
	if (preempt) {
		if (s >= MIG_STATUS_SETUP && s <= MIG_STATUS_POSTCOPY)
			err = mig_preempt_src_break(mig);
	} else if (mig->s.ch && ((s >= MIG_STATUS_SETUP && s <= MIG_STATUS_POSTCOPY_PAUSED) ||
				 s == MIG_STATUS_IN_DOUBT || s == MIG_STATUS_REPLICATING)) {
		mig_stream_shutdown(&mig->s);
		err = 0;
	}
	pthread_mutex_unlock(&mig->lock);
	return err;
}

json_object *migration_query(struct migration *mig)
{
	pthread_mutex_lock(&mig->lock);
	/* The cap can change mid-run (migrate-set-parameters): report it as it is now. */
	mig->stats.bandwidth_limit = mig->p.bandwidth;
	json_object *o = mig_stats_to_json(&mig->stats, vm_now_ns());
	/* A destination's own count, whatever its migrations away do. */
	json_object_object_add(o, "incoming-net-frames-after-go",
			       json_object_new_int64((int64_t)mig->req.incoming_frames_after_go));
	pthread_mutex_unlock(&mig->lock);
	return o;
}
