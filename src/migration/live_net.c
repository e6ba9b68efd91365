/*
 * The net source: frames that reach the source's taps while the guest is
 * paused for the switchover (QEMU drops them) travel to the destination
 * in the migration stream, and the destination's NIC puts them into the
 * guest's RX queue, ahead of new frames, once the guest runs there
 * (devices/virtio/net_hold.c).  Nothing is owed while the guest runs:
 * its NICs read their taps themselves.  At stop-and-copy (pre-copy) or
 * the post-copy switch each NIC takes what waits in its tap into its
 * hold, bounded in frames and bytes (past the caps: dropped, counted),
 * and every held frame goes out as one SOURCE section: at once in
 * post-copy; in pre-copy after LOADED, just before GO (the late op), as
 * the guest stays paused until GO and frames go on arriving while the
 * destination loads the state.  After GO (pre-copy with a return path)
 * the switch still sends to this host until it learns the new port from
 * the destination's announce: the epilogue (source/epilogue.c) calls the
 * after_go op until the destination says ANNOUNCED or its bound passes,
 * and those frames go the same way, under the same caps.  The hold
 * stays: if the migration fails before GO, the source's guest gets the
 * frames when it runs on; after GO that guest never runs again.
 *
 * Payload after the source id: NIC index (u32), frame length (u32), the
 * frame (14 .. 65550 bytes, no virtio-net header).  docs/migration-stream.md.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "migration/dest/incoming_internal.h"
#include "migration/live.h"
#include "migration/migration.h"
#include "migration/section.h"
#include "util/le.h"

#define NET_FWD_HDR	8	/* NIC index, frame length */

static bool net_fwd_active(struct migration *mig)
{
	/* Replication holds the guest's output instead (machine_output_*), and forwards nothing. */
	return mig->m->nr_nics > 0 && !mig->p.replicate;
}

/* Nothing is owed while the guest runs. */
static int64_t net_fwd_sync(struct migration *mig)
{
	return 0;
}

static int net_fwd_iterate(struct migration *mig, bool resend)
{
	return 0;
}

/*
 * Held frames already sent, per NIC, in this migration (migration thread
 * only; reset at setup).
 */
static unsigned net_fwd_sent[MACHINE_MAX_NICS];

static int net_fwd_setup(struct migration *mig)
{
	memset(net_fwd_sent, 0, sizeof(net_fwd_sent));
	return 0;
}

/*
 * The guest is paused: take each tap's frames and send the held ones not
 * yet sent (after_go: counted apart too).
 */
static int net_fwd_send(struct migration *mig, bool after_go)
{
	uint8_t *frame = malloc(VIRTIO_NET_MAX_FRAME);
	uint64_t frames = 0, bytes = 0, dropped = 0, wire = 0;

	if (!frame) {
		mig_stream_fail(&mig->s, -ENOMEM, "out of memory");
		return -ENOMEM;
	}
	for (unsigned i = 0; i < mig->m->nr_nics; i++) {
		struct virtio_net *n = &mig->m->nics[i];

		virtio_net_hold_backend(n, &dropped);
		for (unsigned k = net_fwd_sent[i];; k++) {
			int len = virtio_net_hold_get(n, k, frame, VIRTIO_NET_MAX_FRAME);
			if (len < 0)
				break;
			struct mig_section_writer w;
			if (mig_source_section_begin(&w, &mig->s, MIG_SOURCE_NET,
						     NET_FWD_HDR + (uint32_t)len))
				goto out;
			mig_section_put_u32(&w, i);
			mig_section_put_u32(&w, (uint32_t)len);
			mig_section_put(&w, frame, (uint32_t)len);
			mig_section_end(&w);
			net_fwd_sent[i] = k + 1;
			frames++;
			bytes += (uint64_t)len;
			wire += MIG_SECTION_HDR + 4 + NET_FWD_HDR + (uint64_t)len;
		}
	}
out:
	free(frame);
	mig_source_account(mig, MIG_SOURCE_NET, wire);
	pthread_mutex_lock(&mig->lock);
	mig->stats.net_frames_forwarded += frames;
	mig->stats.net_bytes_forwarded += bytes;
	mig->stats.net_frames_dropped += dropped;
	if (after_go) {
		mig->stats.net_frames_after_go += frames;
		mig->stats.net_bytes_after_go += bytes;
	}
	pthread_mutex_unlock(&mig->lock);
	return mig_stream_error(&mig->s);
}

/*
 * Pre-copy with a return path sends the frames in the late op only, once
 * the destination has checked the state: a destination without the NIC
 * is then refused for lacking it, as without frames, not for a frame.
 * Here the taps are only emptied into the holds.  Post-copy (and a save)
 * have no late op: they send now.
 */
static int net_fwd_complete(struct migration *mig, bool resend)
{
	uint64_t dropped = 0;

	pthread_mutex_lock(&mig->lock);
	bool postcopy = mig->stats.postcopy;
	pthread_mutex_unlock(&mig->lock);
	if (postcopy || !mig_stream_has_return_path(&mig->s))
		return net_fwd_send(mig, false);
	for (unsigned i = 0; i < mig->m->nr_nics; i++)
		virtio_net_hold_backend(&mig->m->nics[i], &dropped);
	pthread_mutex_lock(&mig->lock);
	mig->stats.net_frames_dropped += dropped;
	pthread_mutex_unlock(&mig->lock);
	return 0;
}

/*
 * After LOADED, before GO: the guest is still paused; send every frame
 * held since the pause, including those that arrived while the
 * destination loaded (the hold only grows while the guest is paused).
 */
static int net_fwd_late(struct migration *mig)
{
	return net_fwd_send(mig, false);
}

/*
 * After GO: the guest is paused here for good, so the hold only grows
 * (up to its caps); send what reached the taps since the last look.
 */
static int net_fwd_after_go(struct migration *mig)
{
	return net_fwd_send(mig, true);
}

/* Destination: one forwarded frame, checked, then held for its NIC. */
static int net_fwd_load(struct mig_in_ctx *c, uint8_t type, struct mig_payload *in)
{
	uint8_t hdr[NET_FWD_HDR];

	if (mig_payload_get(in, hdr, sizeof(hdr)))
		return mig_in_fail(c->inc, -EPROTO, "forwarded frame section cut short");
	uint32_t nic = (uint32_t)le_get(hdr, 4), len = (uint32_t)le_get(hdr + 4, 4);
	if (len < VIRTIO_NET_MIN_FRAME || len > VIRTIO_NET_MAX_FRAME)
		return mig_in_fail(c->inc, -EPROTO, "forwarded frame of %u bytes (a frame is %u to "
				   "%u)", len, VIRTIO_NET_MIN_FRAME, VIRTIO_NET_MAX_FRAME);
	if (mig_payload_left(in) != len)
		return mig_in_fail(c->inc, -EPROTO, "forwarded frame of %u bytes in a section "
				   "holding %u", len, mig_payload_left(in));
	if (nic >= c->m->nr_nics)
		return mig_in_fail(c->inc, -EPROTO, "forwarded frame for NIC %u, which this "
				   "destination lacks (it has %u)", nic, c->m->nr_nics);
	const uint8_t *p = mig_payload_ptr(in, len);
	if (!p)
		return mig_in_fail(c->inc, -EPROTO, "forwarded frame section cut short");
	int err = virtio_net_hold_add(&c->m->nics[nic], p, len);
	if (err == -ENOSPC)
		return mig_in_fail(c->inc, -EPROTO, "more forwarded frames for NIC %u than it holds "
				   "(%u frames, %u bytes)", nic, VIRTIO_NET_HOLD_MAX_FRAMES,
				   VIRTIO_NET_HOLD_MAX_BYTES);
	if (err)
		return mig_in_fail(c->inc, err, "cannot hold a forwarded frame: %s", strerror(-err));
	return 0;
}

const struct mig_source_ops mig_net_source = {
	.name = "net",
	.active = net_fwd_active,
	.setup = net_fwd_setup,
	.sync = net_fwd_sync,
	.iterate = net_fwd_iterate,
	.complete = net_fwd_complete,
	.load = net_fwd_load,
	.late = net_fwd_late,
	.after_go = net_fwd_after_go,
};
