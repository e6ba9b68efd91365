/*
 * The destination's half of the epilogue after GO (docs/migration-stream.md,
 * "After GO"; the source's half is source/epilogue.c).  The guest runs
 * here and RESULT ok went out; the source goes on forwarding the frames
 * that reach its taps until this side says ANNOUNCED (every NIC that
 * announces has sent its first RARP round, so the switch now sends here)
 * and then ends them with END.
 *
 * Only SOURCE sections of a source with an after_go op (net) and END may
 * come now.  Anything else, a frame that fails its checks, silence past
 * the bound or a broken connection ends the late stream only: the guest
 * runs on, and the frames already taken stay in their NICs' holds.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "migration/dest/incoming.h"
#include "migration/dest/incoming_internal.h"
#include "migration/format.h"
#include "migration/live.h"
#include "migration/migration.h"
#include "migration/section.h"
#include "util/le.h"
#include "util/log.h"

/* The source's own bound is at most MIG_NET_EPILOGUE_MAX_NS; this is the destination's. */
#define EPILOGUE_DEST_MAX_NS	(MIG_NET_EPILOGUE_MAX_NS + 2000000000ULL)
#define EPILOGUE_DEST_POLL_MS	2

int mig_in_h_source_after_go(struct mig_in_ctx *c, const uint8_t *p, uint32_t len)
{
	if (len < 4)
		return mig_in_fail(c->inc, -EPROTO, "SOURCE section of %u bytes has no source id", len);
	uint32_t id = (uint32_t)le_get(p, 4);
	const struct mig_source_ops *o = mig_source_get(id);
	if (!o || !o->load || !o->after_go)
		return mig_in_fail(c->inc, -EPROTO, "SOURCE section for source %u after GO (only "
				   "forwarded frames may come then)", id);
	int err = mig_in_h_source(c, p, len);
	if (!err)
		c->after_go++;
	return err;
}

int mig_in_h_after_go_end(struct mig_in_ctx *c, const uint8_t *p, uint32_t len)
{
	if (len)
		return mig_in_fail(c->inc, -EPROTO, "END section carries %u bytes (must be empty)", len);
	c->done = true;
	return 0;
}

/*
 * Has every NIC that announces sent (or failed to send) a RARP round?
 * 1 yes, 0 not yet, -1 no NIC announces (the switch learns from the
 * guest's own frames, whenever: the source runs to its bound).  A NIC of
 * an incoming VM sends no round before its guest runs here.
 */
static int epilogue_announced(struct machine *m)
{
	int some = 0;

	for (unsigned i = 0; i < m->nr_nics; i++) {
		struct virtio_net_stats st;
		if (!m->nics[i].cfg.announce.rounds)
			continue;
		virtio_net_read_stats(&m->nics[i], &st);
		if (!st.announce_rounds && !st.announce_errors)
			return 0;
		some = 1;
	}
	return some ? 1 : -1;
}

/* Tell the source: 0, or -errno when it cannot hear it (the epilogue is over). */
static int epilogue_tell(struct mig_incoming *inc)
{
	mig_section_write(&inc->s, MIG_SEC_ANNOUNCED, NULL, 0);
	return mig_stream_flush(&inc->s);
}

uint64_t mig_incoming_epilogue(struct mig_incoming *inc, struct machine *m, int intr_fd)
{
	/* Post-copy's frames came already, while the pages did. */
	struct mig_in_ctx c = { .inc = inc, .m = m, .ph = MIG_IN_AFTER_GO, .after_go = inc->pc_after_go };
	uint64_t t0 = vm_now_ns(), end = t0 + EPILOGUE_DEST_MAX_NS;
	bool told = false;
	uint8_t *buf;

	if (!inc->connected || !(inc->go_heard || inc->guest_started) || inc->reply_broken ||
	    !mig_stream_has_return_path(&inc->s) || !m->nr_nics)
		return c.after_go;
	buf = malloc(MIG_SOURCE_LATE_MAX);
	if (!buf)
		return c.after_go;
	mig_stream_clear_error(&inc->s);
	inc->s.deadline_ns = end;
	inc->why[0] = '\0';
	while (!c.done) {
		if (!told && epilogue_announced(m) == 1) {
			if (epilogue_tell(inc)) {
				pr_debug("incoming migration: cannot send ANNOUNCED: %s", inc->s.why);
				break;
			}
			told = true;
		}
		if (vm_now_ns() >= end) {
			pr_warn("incoming migration: the source did not end its frames after GO within "
				"%llu s; the guest runs on here",
				(unsigned long long)(EPILOGUE_DEST_MAX_NS / 1000000000ULL));
			break;
		}
		if (vm_get_state(&m->vm) != VM_STATE_RUNNING)
			break;
		int n = mig_stream_wait_readable(&inc->s, told ? 50 : EPILOGUE_DEST_POLL_MS,
						 &intr_fd, intr_fd >= 0 ? 1 : 0);
		if (n < 0 || (n & MIG_WAIT_INTR(0)))
			break;		/* a signal: the caller's to handle */
		if (!(n & MIG_WAIT_CHANNEL))
			continue;
		int err = mig_in_dispatch(&c, buf, MIG_SOURCE_LATE_MAX);
		if (err == -EPIPE || err == -ENODATA || err == -ECONNRESET) {
			pr_debug("incoming migration: the source closed after GO: %s", inc->why);
			break;
		}
		if (err) {
			pr_warn("incoming migration: after GO: %s; the late frames stop here, the "
				"guest runs on", inc->why);
			break;
		}
	}
	free(buf);
	pr_info("incoming migration: %llu frames came after GO (%s)", (unsigned long long)c.after_go,
		c.done ? "the source ended them" : "the late stream was cut");
	return c.after_go;
}
