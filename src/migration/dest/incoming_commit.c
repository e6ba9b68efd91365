/*
 * The destination's half of the switchover commit (docs/migration-stream.md,
 * "Switchover"): everything is loaded and checked, LOADED tells the
 * source so, and the guest starts only on its GO.
 *
 * Without GO the answer is no: ABORT, a clean end of the stream (a GO
 * sent before it would have arrived first) or a bad section.  A timeout
 * or a reset connection could hide a GO: then this side is in doubt and
 * waits, paused, for a late GO/ABORT or the operator (migrate-resolve).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "migration/format.h"
#include "migration/dest/incoming.h"
#include "migration/dest/incoming_internal.h"
#include "migration/live.h"
#include "migration/section.h"
#include "util/log.h"

#define COMMIT_POLL_MS	250
#define COMMIT_DOUBT_NS	1000000000ULL	/* no GO this long after LOADED: in doubt */

/* Send LOADED.  Returns true if any of it may have reached the source. */
static bool commit_send_loaded(struct mig_incoming *inc)
{
	uint64_t before = inc->s.bytes_sent;

	mig_section_write(&inc->s, MIG_SEC_LOADED, NULL, 0);
	if (!mig_stream_flush(&inc->s))
		return true;
	inc->reply_broken = true;
	return inc->s.bytes_sent != before;
}

static void commit_doubt(struct mig_incoming *inc, struct mig_commit *c, const char *why)
{
	if (mig_commit_get_state(c) == MIG_COMMIT_IN_DOUBT)
		return;
	mig_commit_set_state(c, MIG_COMMIT_IN_DOUBT);
	pr_err("incoming migration is in doubt: the state is loaded and LOADED was sent, but no "
	       "GO or ABORT came (%s); the guest stays paused here. Find out which side runs it, "
	       "then run 'ferry migrate-resolve CONTROL run' on the side that should and "
	       "'ferry migrate-resolve CONTROL abandon' on the other", why);
}

/* Handlers of the rule table (incoming_rules.c) for the commit phase. */
int mig_in_h_go(struct mig_in_ctx *c, const uint8_t *p, uint32_t len)
{
	if (len)
		return mig_in_fail(c->inc, -EPROTO, "GO carries %u bytes (must be empty)", len);
	c->go = true;
	return 0;
}

int mig_in_h_abort(struct mig_in_ctx *c, const uint8_t *p, uint32_t len)
{
	return mig_in_fail(c->inc, -ECONNABORTED, "the source cancelled the switchover and runs "
			   "the guest on");
}

/*
 * Read the section the source sent after END.  Returns 0 for GO, 2 for a
 * late SOURCE section (loaded; GO is still to come), -errno for a
 * definite no (reason in inc->why), 1 when the connection failed in a
 * way that may have lost a GO.
 */
static int commit_read(struct mig_incoming *inc)
{
	struct mig_in_ctx c = { .inc = inc, .m = inc->m, .ph = MIG_IN_COMMIT };
	uint8_t *buf = malloc(MIG_SOURCE_LATE_MAX);

	if (!buf)
		return mig_in_fail(inc, -ENOMEM, "out of memory");
	int err = mig_in_dispatch(&c, buf, MIG_SOURCE_LATE_MAX);
	free(buf);
	if (!err && c.late)
		return 2;
	inc->go_heard = !err && c.go;
	if (!err)
		return c.go ? 0 : mig_in_fail(inc, -EPROTO, "no GO after END");
	if (err == -EPIPE) {
		inc->why[0] = '\0';
		return mig_in_fail(inc, -ECONNABORTED, "the source closed the connection without GO: "
				   "it runs the guest on");
	}
	if (err == -EPROTO || err == -ECONNABORTED)
		return err;
	inc->why[0] = '\0';
	return 1;
}

/*
 * A file: nobody to send LOADED to, nobody to wait for.  The writer put GO
 * after END once the whole stream was written, and synced the file before
 * naming it, so GO and then the file's end, exactly, say the save
 * completed; anything else is not an image to run.
 */
static int commit_from_file(struct mig_incoming *inc)
{
	uint8_t buf[64], type, extra;
	uint32_t len;
	int err = mig_section_read(&inc->s, buf, sizeof(buf), &type, &len);

	if (err == -ENODATA)
		return mig_in_fail(inc, err, "the file ends after END without GO: the save did not "
				   "complete");
	if (err)
		return mig_in_fail(inc, err, "%s", inc->s.why);
	if (type != MIG_SEC_GO || len)
		return mig_in_fail(inc, -EPROTO, "section type %u after END (expected GO)", type);
	mig_stream_get(&inc->s, &extra, 1);
	if (mig_stream_error(&inc->s) != -ENODATA)
		return mig_in_fail(inc, -EPROTO, "%s", mig_stream_error(&inc->s) ?
				   inc->s.why : "the file goes on after GO: not one saved image");
	return 0;
}

int mig_incoming_commit(struct mig_incoming *inc, struct mig_commit *c, int intr_fd)
{
	if (!mig_stream_has_return_path(&inc->s))
		return commit_from_file(inc);

	bool dead = !commit_send_loaded(inc);
	uint64_t t0 = vm_now_ns();
	int err = 1;

	if (dead)
		return mig_in_fail(inc, -EPIPE, "cannot tell the source the state is loaded: %s",
				   inc->s.why);
	mig_commit_set_state(c, MIG_COMMIT_WAITING);
	mig_stream_clear_error(&inc->s);
	while (err == 1) {
		enum mig_resolve r;
		int ready = mig_commit_wait(c, &inc->s, dead, intr_fd, COMMIT_POLL_MS, &r);
		if (r == MIG_RESOLVE_RUN) {
			pr_warn("incoming migration: the operator resolved the doubt: the guest runs here");
			err = 0;
		} else if (r == MIG_RESOLVE_ABANDON) {
			err = mig_in_fail(inc, -ECANCELED, "in doubt; the operator abandoned this copy");
		} else if (ready == -EINTR) {
			err = mig_in_fail(inc, -EINTR, "interrupted while waiting for GO");
		} else if (ready == 1) {
			err = commit_read(inc);
			if (err == 2)
				err = 1;	/* a late section: GO still to come */
			else if (err == 1) {
				dead = true;
				commit_doubt(inc, c, inc->s.why);
			}
		} else if (vm_now_ns() - t0 > COMMIT_DOUBT_NS) {
			commit_doubt(inc, c, "the source is silent");
		}
	}
	mig_commit_set_state(c, MIG_COMMIT_NONE);
	return err;
}
