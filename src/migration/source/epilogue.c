/*
 * The source's epilogue after GO (docs/migration-stream.md, "After GO"):
 * the guest runs at the destination, but the switch still sends its
 * frames here until it learns the new port from the destination's
 * announce.  Until the destination says ANNOUNCED (and a short grace for
 * frames already on their way), or the bound (--net-epilogue) passes,
 * keep emptying the taps and forwarding their frames as the same SOURCE
 * sections as before GO (live_net.c: the same caps), then END.
 *
 *   <- RESULT ok   SOURCE net ... ->   <- ANNOUNCED   SOURCE net ... ->   END ->
 *
 * Nothing here can bring the guest back: GO is committed and this side's
 * copy never runs again.  A destination that goes away, answers
 * something else or says nothing only ends the epilogue early (or at its
 * bound); the migration's result is already decided.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "migration/format.h"
#include "migration/live.h"
#include "migration/migration.h"
#include "migration/section.h"
#include "util/log.h"

/* After ANNOUNCED: frames the switch sent here just before it learned still arrive. */
#define EPILOGUE_GRACE_NS	20000000ULL
#define EPILOGUE_POLL_MS	5
/* Writes and the END may take this long past the bound (a destination that stopped reading). */
#define EPILOGUE_SEND_SLACK_NS	500000000ULL

/*
 * Wait up to ms for a frame on a tap (the first MIG_WAIT_INTR_MAX NICs;
 * any others are looked at every EPILOGUE_POLL_MS) or, unless announced,
 * for the return path.  Returns the MIG_WAIT_* mask or -errno.
 */
static int epilogue_wait(struct migration *mig, int ms, bool announced)
{
	int fds[MIG_WAIT_INTR_MAX];
	unsigned n = 0;

	for (unsigned i = 0; i < mig->m->nr_nics && n < MIG_WAIT_INTR_MAX; i++)
		if (mig->m->nics[i].be.fd >= 0)
			fds[n++] = mig->m->nics[i].be.fd;
	return mig_stream_wait_readable(announced ? NULL : &mig->s, ms, fds, (int)n);
}

/*
 * Read what the destination sent: ANNOUNCED (returns 1) or anything else,
 * the end included (returns -errno, the reason in why).
 */
static int epilogue_read(struct migration *mig, char *why, size_t whylen)
{
	uint8_t buf[64], type;
	uint32_t len;
	int err = mig_section_read(&mig->s, buf, sizeof(buf), &type, &len);

	if (err) {
		snprintf(why, whylen, "the destination's return path ended (%s)",
			 mig_stream_why(&mig->s));
		return err;
	}
	if (type != MIG_SEC_ANNOUNCED || len) {
		snprintf(why, whylen, "the destination sent section %u of %u bytes (expected "
			 "ANNOUNCED)", type, len);
		return -EPROTO;
	}
	return 1;
}

/* Frames taken from the taps after GO so far, forwarded or dropped over the caps. */
static uint64_t epilogue_taken(struct migration *mig)
{
	pthread_mutex_lock(&mig->lock);
	uint64_t n = mig->stats.net_frames_after_go + mig->stats.net_frames_dropped;
	pthread_mutex_unlock(&mig->lock);
	return n;
}

void switchover_epilogue(struct migration *mig)
{
	uint64_t t0 = vm_now_ns(), end = t0 + mig->p.net_epilogue_ns, announced = 0, now;
	char why[256] = "";
	bool tap_woke = false;
	int err = 0;

	if (!mig->p.net_epilogue_ns || !mig_sources_have_after_go(mig) ||
	    !mig_stream_has_return_path(&mig->s) || mig_stream_error(&mig->s))
		return;
	mig->s.deadline_ns = end + EPILOGUE_SEND_SLACK_NS;
	for (;;) {
		uint64_t taken = epilogue_taken(mig);
		err = mig_sources_after_go(mig);
		bool moved = epilogue_taken(mig) != taken;
		if (err) {
			snprintf(why, sizeof(why), "cannot forward: %s", mig_stream_why(&mig->s));
			break;
		}
		now = vm_now_ns();
		if ((announced && now - announced >= EPILOGUE_GRACE_NS) || now >= end ||
		    migration_cancel_requested(mig))
			break;
		uint64_t left = (announced ? announced + EPILOGUE_GRACE_NS : end) - now;
		int ms = left < EPILOGUE_POLL_MS * 1000000ULL ? (int)(left / 1000000) + 1
							       : EPILOGUE_POLL_MS;
		/* A tap that woke us with nothing to take (it failed): do not spin on it. */
		int n = tap_woke && !moved
			? mig_stream_wait_readable(announced ? NULL : &mig->s, ms, NULL, 0)
			: epilogue_wait(mig, ms, announced);
		if (n < 0) {
			err = n;
			snprintf(why, sizeof(why), "cannot wait: %s", strerror(-n));
			break;
		}
		tap_woke = (n & ~MIG_WAIT_CHANNEL) != 0;
		if (!announced && (n & MIG_WAIT_CHANNEL)) {
			err = epilogue_read(mig, why, sizeof(why));
			if (err < 0)
				break;
			err = 0;
			announced = vm_now_ns();
		}
	}
	if (!err) {
		/* One more look, then the end of the late frames. */
		err = mig_sources_after_go(mig);
		if (!err) {
			mig_section_write(&mig->s, MIG_SEC_END, NULL, 0);
			err = mig_stream_flush(&mig->s);
		}
		if (err)
			snprintf(why, sizeof(why), "cannot forward: %s", mig_stream_why(&mig->s));
	}
	pthread_mutex_lock(&mig->lock);
	uint64_t frames = mig->stats.net_frames_after_go;
	pthread_mutex_unlock(&mig->lock);
	now = vm_now_ns();
	if (err)
		pr_info("migration: %llu frames forwarded after GO in %llu ms; stopped early: %s "
			"(the guest runs at the destination either way)", (unsigned long long)frames,
			(unsigned long long)((now - t0) / 1000000), why);
	else
		pr_info("migration: %llu frames forwarded after GO in %llu ms, %s",
			(unsigned long long)frames, (unsigned long long)((now - t0) / 1000000),
			announced ? "until the destination announced" :
			now >= end ? "until --net-epilogue's bound (no ANNOUNCED)" : "until cancelled");
}
