/*
 * The migration thread: pre-copy passes while the guest runs, then
 * stop-and-copy.  docs/migration-stream.md has the sequence; the rule that
 * matters most is that the source resumes its guest unless the destination
 * said, in a RESULT ok, that the guest runs there.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "migration/base.h"
#include "migration/block.h"
#include "migration/config.h"
#include "migration/format.h"
#include "migration/migration.h"
#include "migration/source/policy.h"
#include "migration/ram.h"
#include "migration/savefile/savefile.h"
#include "migration/replicate/epoch.h"
#include "migration/section.h"
#include "migration/live.h"
#include "migration/codec/codec.h"
#include "util/le.h"
#include "util/log.h"
#include "vmm/dirty.h"
#include "board/machine_state.h"

#define PRECOPY_CONNECT_TIMEOUT_MS 10000
#define PRECOPY_IO_TIMEOUT_MS 30000
#define PRECOPY_BUFFER (1 << 20)

void precopy_set_status(struct migration *mig, enum mig_status s)
{
	pthread_mutex_lock(&mig->lock);
	mig->stats.status = s;
	pthread_mutex_unlock(&mig->lock);
}

int precopy_fail(struct migration *mig, int err, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&mig->lock);
	if (!mig->stats.error[0]) {
		va_start(ap, fmt);
		vsnprintf(mig->stats.error, sizeof(mig->stats.error), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&mig->lock);
	return err ? err : -EIO;
}

/*
 * A destination that refuses the stream says why in a RESULT and hangs up,
 * so our next send fails with EPIPE.  Look for that RESULT (briefly): its
 * reason is the one worth reporting.  Returns 0 if one was found.
 */
static int precopy_peer_reason(struct migration *mig, char *why, size_t len)
{
	uint8_t buf[512], type;
	uint32_t n;
	struct mig_stream *s = &mig->s;
	int saved = mig_stream_error(s);
	char saved_why[sizeof(s->why)];

	if (!mig_stream_has_return_path(s))
		return -ENOENT;
	snprintf(saved_why, sizeof(saved_why), "%s", mig_stream_why(s));
	mig_stream_clear_error(s);
	s->timeout_ms = 1000;
	int err = mig_section_read(s, buf, sizeof(buf), &type, &n);
	mig_stream_clear_error(s);
	if (saved)
		mig_stream_fail(s, saved, "%s", saved_why);
	int32_t status;
	const char *msg;
	int mlen;
	if (err || type != MIG_SEC_RESULT || mig_result_parse(buf, n, &status, &msg, &mlen))
		return -ENOENT;
	snprintf(why, len, "destination: %.*s", mlen, msg);
	return 0;
}

/* The stream's own reason, or the cancel, as the failure. */
int precopy_stream_fail(struct migration *mig, int err)
{
	char why[300];

	if (err == -ECANCELED)
		return precopy_fail(mig, err, "cancelled");
	if ((err == -EPIPE || err == -ECONNRESET) && !precopy_peer_reason(mig, why, sizeof(why)))
		return precopy_fail(mig, err, "%s", why);
	return precopy_fail(mig, err, "%s", mig->s.why[0] ? mig->s.why : strerror(-err));
}

/*
 * Connections to ask for (--channels): extra ones carry the pages of
 * pre-copy passes only, so a file (no return path) and pure post-copy
 * (no pass) get one.
 */
static unsigned precopy_channels_wanted(const struct migration *mig)
{
	if (mig->p.channels <= 1 || !mig_stream_has_return_path(&mig->s) ||
	    mig->p.mode == MIG_MODE_POSTCOPY)
		return 1;
	return mig->p.channels > MIG_CHANNELS_MAX ? MIG_CHANNELS_MAX : mig->p.channels;
}

/*
 * The codecs CONFIG offers, and over a connection MIG_CAP_BASE: this
 * source can use a base the destination holds (base.h).  A file has no
 * way back for the digests; a standby takes no base.  A primary offers
 * MIG_CAP_EPOCH_RANGES: its epochs can carry disk blocks as 4 KiB ranges.
 * With --copy-storage and a --compress whose codec suits blocks (lz4,
 * zstd, adaptive), over a connection: MIG_CAP_BLOCK_Z, block data may go
 * encoded (DATA_Z).
 */
static uint32_t precopy_offer(const struct migration *mig)
{
	bool back = mig_stream_has_return_path(&mig->s) && !mig->p.replicate;
	bool block_z = back && mig->p.copy_storage &&
		       mig_block_z_codec(mig->p.compress) != MIG_CODEC_RAW;

	return mig_compress_codecs(mig->p.compress) | (back ? MIG_CAP_BASE : 0) |
	       (back && mig->p.postcopy_preempt ? MIG_CAP_PREEMPT : 0) |
	       (mig->p.replicate ? MIG_CAP_EPOCH_RANGES : 0) |
	       (block_z ? MIG_CAP_BLOCK_Z : 0);
}

static void precopy_send_config(struct migration *mig)
{
	struct machine *m = mig->m;
	struct mig_config cfg = {
		.memory = m->vm.mem.size, .vcpus = m->vm.nr_vcpus, .page_size = GUEST_PAGE_SIZE,
		/*
		 * Post-copy may be asked for at any time (migrate-start-postcopy),
		 * except over a channel with no way back for page requests.
		 */
		.flags = (mig->p.verify ? MIG_FLAG_VERIFY : 0) |
			 (mig->p.replicate ? MIG_FLAG_REPLICATE :
			  mig_stream_has_return_path(&mig->s) ? MIG_FLAG_POSTCOPY : 0),
		.codecs = precopy_offer(mig),
		.channels = precopy_channels_wanted(mig),
		.mig_id = mig->chans.id,
	};
	struct vmstate_buf b;

	cfg.cmdline_len = (uint16_t)strlen(m->cmdline);
	memcpy(cfg.cmdline, m->cmdline, cfg.cmdline_len);
	mig_config_set_cpuid(&cfg, m->vm.cpuid);
	vmstate_buf_init(&b);
	if (vmstate_save(&mig_config_vmsd, &cfg, &b))
		mig_stream_fail(&mig->s, -EINVAL, "cannot encode the configuration");
	else
		mig_section_write(&mig->s, MIG_SEC_CONFIG, b.data, (uint32_t)b.len);
	vmstate_buf_free(&b);
}

/*
 * READY carries the codecs the destination accepts out of those CONFIG
 * offered: the RAM source uses only those.  Raw must be among them (it
 * takes every page).  A destination without the codecs --compress asked
 * for is not refused: the source falls back to what it accepted (raw at
 * worst) and says so.  A file has no READY: it uses what CONFIG declared.
 */
static int precopy_codecs(struct migration *mig, uint32_t offered, uint32_t accepted)
{
	char names[128];

	if (offered & ~accepted) {
		mig_codec_names(offered & ~accepted, names, sizeof(names));
		pr_info("migration: the destination lacks codecs %s; --compress %s falls back "
			"to what it has", names, mig_compress_name(mig->p.compress));
	}
	if (ram_codec_setup(mig, accepted))
		return precopy_fail(mig, -ENOMEM, "out of memory for the codecs");
	pthread_mutex_lock(&mig->lock);
	mig->stats.codecs = accepted;
	pthread_mutex_unlock(&mig->lock);
	return 0;
}

static int precopy_read_ready(struct migration *mig)
{
	uint8_t buf[512], type;
	uint32_t len;

	uint32_t offered = precopy_offer(mig);

	mig->ram.base = false;
	mig->epoch_ranges = false;
	mig->block_z = false;
	if (!mig_stream_has_return_path(&mig->s))
		return precopy_codecs(mig, offered, offered);
	int err = mig_section_read(&mig->s, buf, sizeof(buf), &type, &len);
	if (err && !mig_tls_enabled(&mig->p.tls) && mig_stream_heard_tls_alert(&mig->s))
		return precopy_fail(mig, err, "the destination answered with a TLS alert: it requires "
				    "TLS; give 'ferry migrate' --tls-creds DIR");
	if (err)
		return precopy_fail(mig, err, "destination: %s", mig->s.why);
	int32_t status;
	const char *msg;
	int n;
	if (type == MIG_SEC_RESULT && !mig_result_parse(buf, len, &status, &msg, &n))
		return precopy_fail(mig, status ? status : -EPROTO, "destination: %.*s", n, msg);
	if (type != MIG_SEC_READY)
		return precopy_fail(mig, -EPROTO, "destination answered with section %u", type);
	/* With --channels, the connections agreed follow (an older destination: one). */
	unsigned wanted = precopy_channels_wanted(mig), agreed = 1;
	if (len == MIG_READY_CHANNELS_LEN && wanted > 1)
		agreed = (unsigned)le_get(buf + 4, 4);
	else if (len != MIG_READY_LEN)
		return precopy_fail(mig, -EPROTO, "destination's READY is %u bytes, not %u", len,
				    wanted > 1 ? MIG_READY_CHANNELS_LEN : MIG_READY_LEN);
	if (agreed < 1 || agreed > wanted)
		return precopy_fail(mig, -EPROTO, "destination agreed to %u channels, asked for %u",
				    agreed, wanted);
	if (agreed < wanted)
		pr_info("migration: the destination takes %u of the %u channels asked for", agreed,
			wanted);
	mig->chans.n = agreed;
	uint32_t accepted = (uint32_t)le_get(buf, 4);
	if (accepted & ~offered)
		return precopy_fail(mig, -EPROTO, "destination accepted codecs 0x%x, offered 0x%x",
				    accepted, offered);
	if (!(accepted & (1u << MIG_CODEC_RAW)))
		return precopy_fail(mig, -EPROTO, "destination does not accept raw pages");
	/* Its base's page digests come next (ram_base_handshake). */
	mig->ram.base = accepted & MIG_CAP_BASE;
	/* An older standby masks the bit off: its epochs carry whole chunks (replicate/disk.c). */
	mig->epoch_ranges = accepted & MIG_CAP_EPOCH_RANGES;
	/* --postcopy-preempt: an older destination masks the bit off; then requests share main. */
	/* --copy-storage --compress: an older destination masks the bit off and gets DATA. */
	mig->block_z = accepted & MIG_CAP_BLOCK_Z;
	mig->preempt.agreed = accepted & MIG_CAP_PREEMPT;
	if ((offered & MIG_CAP_PREEMPT) && !mig->preempt.agreed)
		pr_warn("migration: the destination does not take a post-copy preempt connection; "
			"post-copy's page requests share the main connection");
	return precopy_codecs(mig, offered & MIG_CODECS_KNOWN, accepted & MIG_CODECS_KNOWN);
}

/* Hybrid without --postcopy-after: ferry picks the moment itself. */
static bool precopy_auto_hybrid(const struct migration *mig)
{
	return mig_policy_auto_hybrid(mig->p.mode, mig->p.postcopy_after);
}

static int precopy_setup(struct migration *mig)
{
	struct mig_channel *ch;
	char why[256];
	int err;

	err = mig_channel_open(mig->p.uri, &mig->p.tls, PRECOPY_CONNECT_TIMEOUT_MS, &ch, why, sizeof(why));
	if (err)
		return precopy_fail(mig, err, "%s", why);
	pthread_mutex_lock(&mig->lock);		/* mig->s, for x-test-migration-break */
	err = mig_stream_init(&mig->s, ch, PRECOPY_BUFFER);
	pthread_mutex_unlock(&mig->lock);
	if (err)
		return precopy_fail(mig, -ENOMEM, "out of memory");
	mig->s.timeout_ms = PRECOPY_IO_TIMEOUT_MS;
	mig->chans.id = mig_chan_new_id();
	mig_stream_put(&mig->s, MIG_MAGIC, MIG_MAGIC_LEN);
	mig_stream_put_u32(&mig->s, MIG_VERSION);
	precopy_send_config(mig);
	err = mig_stream_flush(&mig->s);
	if (err)
		return precopy_stream_fail(mig, err);
	/* While the destination builds its VM. */
	err = mig_sources_setup(mig);
	if (!err && mig->p.verify)
		err = mig_digest_init(&mig->digest, &mig->m->vm.mem);
	if (err)
		return precopy_fail(mig, err, "out of memory");
	err = vm_dirty_log_start(&mig->m->vm);
	if (err)
		return precopy_fail(mig, err, "cannot start dirty logging: %s", strerror(-err));
	/*
	 * Watch what the guest writes from now on: hybrid's probe
	 * (precopy_probe), and --order rewrite's pass 1, which leaves what the
	 * guest writes for its end (ram_order_send.c).  Not for a save (one
	 * pass, paused) nor post-copy (no pass before the switch).
	 */
	if (precopy_auto_hybrid(mig) ||
	    (mig->ram.order == MIG_ORDER_REWRITE && mig->p.mode != MIG_MODE_POSTCOPY &&
	     mig_stream_has_return_path(&mig->s))) {
		err = ram_start_clean(mig);
		if (err)
			return precopy_fail(mig, err, "cannot clear the dirty log: %s", strerror(-err));
	}
	/* A file cannot say READY: a restore checks CONFIG when it reads it. */
	err = precopy_read_ready(mig);
	if (!err && mig->p.replicate)
		err = replicate_handshake(mig);
	if (err)
		return err;
	/*
	 * --channels: right after READY the destination waits for the extra
	 * connections, and for nothing else: they come before any other word.
	 */
	err = mig_chans_src_open(mig, mig->chans.n);
	/* --postcopy-preempt: the destination waits for it with the channels. */
	if (!err)
		err = mig_preempt_src_open(mig);
	if (err)
		return err;
	pthread_mutex_lock(&mig->lock);
	mig->stats.nr_channels = mig->chans.n ? mig->chans.n : 1;
	pthread_mutex_unlock(&mig->lock);
	err = mig_sources_handshake(mig);
	if (err)
		return precopy_fail(mig, err, "%s", mig->s.why[0] ? mig->s.why : strerror(-err));
	ratelimit_init(&mig->rl, mig->p.bandwidth, 0);
	mig->s.rl = &mig->rl;
	pthread_mutex_lock(&mig->lock);
	mig->stats.mem_total = mig->m->vm.mem.size;
	mig->stats.mem_remaining = mig->m->vm.mem.size;
	pthread_mutex_unlock(&mig->lock);
	return 0;
}

void precopy_send_pass(struct migration *mig, uint32_t pass, uint64_t dirty, bool final)
{
	uint8_t p[13];

	le_put(p, pass, 4);
	le_put(p + 4, dirty, 8);
	p[12] = final;
	mig_section_write(&mig->s, MIG_SEC_PASS, p, sizeof(p));
	mig->pass.sent = pass;
}

/* Auto-converge: apply the policy's throttle, and say so once it holds. */
static void precopy_throttle(struct migration *mig, const struct mig_policy_out *d)
{
	if (vm_set_throttle(&mig->m->vm, d->throttle_pct))
		return;
	pthread_mutex_lock(&mig->lock);
	mig->stats.throttle_pct = d->throttle_pct;
	pthread_mutex_unlock(&mig->lock);
	pr_info("migration: %s", d->reason);
}

#define PRECOPY_PROBE_NS 10000000ULL	/* a look at the dirty rate every 10 ms */

/*
 * Auto hybrid, pass 1 (between chunks): peek at what the guest wrote
 * since the log was cleared, which also refreshes the hot pages this pass
 * leaves for later, and let the policy judge it (mig_policy_probe).
 * True: pre-copy is hopeless, switch to post-copy now.
 */
static bool precopy_probe(struct migration *mig)
{
	uint64_t now = vm_now_ns();
	struct mig_policy_out d;

	if (now - mig->pass.probe_ns < PRECOPY_PROBE_NS)
		return false;
	mig->pass.probe_ns = now;
	uint64_t pending[MIG_SOURCE_NR];
	/* A failed peek counts as nothing new: the pass goes on, the next sync reports it. */
	mig_sources_peek(mig, pending);
	uint64_t dirty = 0;
	for (unsigned id = 0; id < MIG_SOURCE_NR; id++)
		dirty += pending[id];
	uint64_t window = now - mig->ram.clear_ns, since = now - mig->pass.probe_prev_ns;
	struct mig_policy_in in = {
		.pending = pending,
		.nr_sources = MIG_SOURCE_NR,
		.pass_bytes = mig_bytes_out(mig) - mig->pass.start_bytes,
		.pass_ns = now - mig->pass.start_ns,
		.dirty_rate = mig_policy_rate(dirty, window),
		.dirty_ns = window,
		/* How fast the dirty set grew since the look before. */
		.growth = dirty > mig->pass.probe_prev_dirty && since ?
			mig_policy_rate(dirty - mig->pass.probe_prev_dirty, since) : 0,
		.mode = mig->p.mode,
		.postcopy_after = mig->p.postcopy_after,
	};

	pthread_mutex_lock(&mig->lock);
	in.bandwidth_cap = mig->p.bandwidth;
	in.downtime_ns = mig->p.downtime_ns;
	mig->stats.dirty_rate = in.dirty_rate / GUEST_PAGE_SIZE;
	pthread_mutex_unlock(&mig->lock);
	mig->pass.probe_prev_ns = now;
	mig->pass.probe_prev_dirty = dirty;
	if (mig_policy_probe(&in, &d) != MIG_POLICY_POSTCOPY)
		return false;
	pr_info("migration: %s", d.reason);
	return true;
}

/*
 * What a decision saw, kept for precopy_confirm: the pending bytes per
 * source and the policy's input (its `pending` points into this).
 */
struct precopy_look {
	uint64_t pending[MIG_SOURCE_NR];
	struct mig_policy_in in;
};

/*
 * Let the policy decide on *in (pending, rates and pass counts filled in)
 * and act: publish the stats that `ferry status` shows while the guest
 * runs, throttle, fail.  dirty_pages_rate: the stats' dirty rate, pages/s.
 * 1 = switch over now (to post-copy if mig->pass.to_postcopy), 0 =
 * another pass, or -errno; *out holds the decision.
 */
static int precopy_act(struct migration *mig, uint32_t pass, struct mig_policy_in *in,
		       uint64_t dirty_pages_rate, struct mig_policy_out *d)
{
	/* The limit and the request change under us: decide on one look at them. */
	pthread_mutex_lock(&mig->lock);
	in->bandwidth_cap = mig->p.bandwidth;
	in->downtime_ns = mig->p.downtime_ns;
	in->postcopy_asked = mig->req.postcopy_requested;
	mig_policy_decide(in, d);
	pr_debug("migration: after pass %u: %llu KiB dirty, %llu KiB in flight, %llu KiB/s: %s",
		 pass - 1, (unsigned long long)(d->pending >> 10),
		 (unsigned long long)(in->in_flight >> 10), (unsigned long long)(d->bandwidth >> 10),
		 d->reason);
	mig->pass.left_over_prev = in->left_over;
	mig->stats.iteration = pass;
	mig->stats.throughput = d->bandwidth;
	mig->stats.pages_per_sec = d->bandwidth / GUEST_PAGE_SIZE;
	mig->stats.dirty_rate = dirty_pages_rate;
	mig->stats.mem_remaining = in->pending[MIG_SOURCE_RAM];
	mig_stats_note_pending(&mig->stats, in->pending, d->pending);
	mig->stats.expected_downtime_ns = d->expected_downtime_ns;
	mig->stats.wire_bytes = mig_bytes_out(mig);
	mig_chans_stats(mig, &mig->stats);
	pthread_mutex_unlock(&mig->lock);

	mig->pass.forced |= d->forced;
	switch (d->decision) {
	case MIG_POLICY_GIVE_UP:
		return precopy_fail(mig, -ETIMEDOUT, "%s", d->reason);
	case MIG_POLICY_POSTCOPY:
		if (d->why == MIG_WHY_HOPELESS)
			pr_info("migration: %s", d->reason);
		mig->pass.to_postcopy = true;
		return 1;
	case MIG_POLICY_SWITCH_OVER:
		return 1;
	case MIG_POLICY_CONTINUE:
		break;
	}
	if (d->throttle)
		precopy_throttle(mig, d);
	return 0;
}

/*
 * Sync the dirty log and let the policy decide (precopy_act).  look (if
 * given) is filled when the decision is to switch over on an estimate made
 * while more than a millisecond of bytes were still in flight: then
 * look->in.nr_sources is set, and precopy_confirm should look again once
 * they landed.
 */
static int precopy_decide(struct migration *mig, uint32_t pass, uint64_t pass_start,
			  uint64_t pass_bytes, uint64_t unsent0, int64_t *dirty_out,
			  struct precopy_look *look)
{
	uint64_t now = vm_now_ns(), pending[MIG_SOURCE_NR];
	/*
	 * What the destination took in this pass: what went out, plus what
	 * was still queued when it began, less what still is (read with the
	 * clock, before the sync).  The link's rate, not how fast the socket
	 * buffers filled.
	 */
	uint64_t unsent = mig_bytes_unsent(mig);
	struct mig_policy_out d;
	int err = mig_sources_sync(mig, pending);

	pass_bytes = pass_bytes + unsent0 > unsent ? pass_bytes + unsent0 - unsent : 0;
	if (err)
		return precopy_fail(mig, err, "dirty sync failed: %s", strerror(-err));
	/* Every source's bytes count; the PASS header and the stats count RAM pages. */
	int64_t dirty = (int64_t)(pending[MIG_SOURCE_RAM] / GUEST_PAGE_SIZE);
	*dirty_out = dirty;
	/* Pages/s, as the stats show it; the policy gets bytes/s. */
	uint64_t rate = mig_policy_rate((uint64_t)dirty, now - mig->pass.last_sync_ns);
	mig->pass.last_sync_ns = now;
	struct mig_policy_in in = {
		.pending = pending,	/* every live source's, summed by the policy */
		.nr_sources = MIG_SOURCE_NR,
		.pass_bytes = pass_bytes,
		.pass_ns = now - pass_start,
		.in_flight = unsent,
		.left_over = mig_sources_left_over(mig),
		.left_over_prev = mig->pass.left_over_prev,
		.dirty_rate = rate > UINT64_MAX / GUEST_PAGE_SIZE ?
			UINT64_MAX : rate * GUEST_PAGE_SIZE,
		.elapsed_ns = now - mig->stats.start_ns,
		.timeout_ns = mig->p.timeout_ns,
		.on_timeout = mig->p.on_timeout,
		.passes_done = pass - 1,
		.max_iterations = mig->p.max_iterations,
		.mode = mig->p.mode,
		.postcopy_after = mig->p.postcopy_after,
		.auto_converge = mig->p.auto_converge,
		.throttle_pct = mig->stats.throttle_pct,
		.forced = mig->pass.forced,
	};
	uint64_t left_over_prev = mig->pass.left_over_prev;

	err = precopy_act(mig, pass, &in, rate, &d);
	if (err == 1 && look && d.why == MIG_WHY_CONVERGED && unsent > d.bandwidth / 1000) {
		memcpy(look->pending, pending, sizeof(pending));
		look->in = in;
		look->in.pending = look->pending;
		look->in.left_over_prev = left_over_prev;
	}
	return err;
}

static int precopy_sync(struct migration *mig);

/*
 * The estimate says the rest fits, but the last pass is still on its way:
 * the dirty rate the policy knows is how much the passes found, and with
 * --order rewrite those found little (the hottest pages went last), while
 * the guest goes on writing at its own rate until the pause.  So let what
 * is in flight land (SYNC, the guest running), then peek at what the
 * guest wrote meanwhile that is not owed already (the dirty log is not
 * consumed, so the passes' rewrite history is not aged by an extra sync),
 * add it, and decide again: the dirty rate at least what the drain saw,
 * the bandwidth the pass's.  As precopy_decide: 1, 0 (another pass, which
 * sends what the decision's sync found; the next sync collects the rest)
 * or -errno.
 */
static int precopy_confirm(struct migration *mig, uint32_t pass, struct precopy_look *look)
{
	uint64_t grown[MIG_SOURCE_NR], sum = 0;
	struct mig_policy_out d;
	int err = precopy_sync(mig);

	if (err)
		return err;
	uint64_t now = vm_now_ns();
	mig_sources_peek(mig, grown);
	/*
	 * RAM: of what its peek just found, only the pages not owed already
	 * (a hot page written again adds nothing); a failed peek, nothing.
	 */
	if (grown[MIG_SOURCE_RAM])
		grown[MIG_SOURCE_RAM] = ram_hot_new(mig) * GUEST_PAGE_SIZE;
	for (unsigned id = 0; id < MIG_SOURCE_NR; id++) {
		look->pending[id] = grown[id] > UINT64_MAX - look->pending[id] ?
				    UINT64_MAX : look->pending[id] + grown[id];
		sum = grown[id] > UINT64_MAX - sum ? UINT64_MAX : sum + grown[id];
	}
	uint64_t rate = mig_policy_rate(sum, now - mig->pass.last_sync_ns);
	if (rate > look->in.dirty_rate)
		look->in.dirty_rate = rate;
	look->in.in_flight = mig_bytes_unsent(mig);
	look->in.elapsed_ns = now - mig->stats.start_ns;
	err = precopy_act(mig, pass, &look->in, look->in.dirty_rate / GUEST_PAGE_SIZE, &d);
	/* Switching now: nothing went out since the SYNC, no second one is needed. */
	mig->pass.drained = err == 1 && !mig->pass.to_postcopy;
	return err;
}

/*
 * Live passes until the rest fits the downtime (or we must stop, or go to
 * post-copy: then mig->pass.to_postcopy is set).
 */
static int precopy_live(struct migration *mig)
{
	uint32_t pass = 1;
	int64_t dirty = (int64_t)(mig->m->vm.mem.size / GUEST_PAGE_SIZE);
	int err;

	if (mig->p.mode == MIG_MODE_POSTCOPY) {
		/* No pass: the switch's own sync finds every page still dirty. */
		mig->pass.to_postcopy = true;
		return 0;
	}
	if (!mig_stream_has_return_path(&mig->s)) {
		/*
		 * A save (virsh save): pause, then one pass of every page.  Live
		 * passes would only make the file larger: a file is not a link
		 * to keep busy while the guest runs, and the saved copy must not
		 * run on anyway.
		 */
		pthread_mutex_lock(&mig->lock);
		mig->stats.iteration = 1;
		pthread_mutex_unlock(&mig->lock);
		return 0;
	}

	pthread_mutex_lock(&mig->lock);
	mig->stats.status = MIG_STATUS_ACTIVE;
	mig->stats.mem_total = mig->m->vm.mem.size;
	mig->stats.mem_remaining = mig->m->vm.mem.size;
	mig->stats.iteration = 1;
	pthread_mutex_unlock(&mig->lock);
	/*
	 * Every page starts dirty (KVM_DIRTY_LOG_INITIALLY_SET, or marked by
	 * ram_start_clean): pass 1 is all RAM.
	 */
	uint64_t pending[MIG_SOURCE_NR];
	err = mig_sources_sync(mig, pending);
	mig->pass.last_sync_ns = vm_now_ns();
	mig->pass.left_over_prev = UINT64_MAX;
	if (!err && precopy_auto_hybrid(mig)) {
		/* Pass 1 leaves what the guest is writing for later, and keeps watching. */
		int64_t hot = ram_peek_hot(mig);
		mig->ram.hot_skip = hot >= 0;
		mig->pass.on_chunk = precopy_probe;
		mig->pass.probe_ns = 0;	/* the first look comes after the first chunk */
		mig->pass.probe_prev_ns = vm_now_ns();
		mig->pass.probe_prev_dirty = hot > 0 ? (uint64_t)hot * GUEST_PAGE_SIZE : 0;
	}
	for (;;) {
		if (err < 0)
			return precopy_fail(mig, err, "dirty log sync failed: %s", strerror(-err));
		uint64_t start = vm_now_ns(), bytes0 = mig_bytes_out(mig);
		uint64_t unsent0 = mig_bytes_unsent(mig);
		mig->pass.start_ns = start;
		mig->pass.start_bytes = bytes0;
		precopy_send_pass(mig, pass, (uint64_t)dirty, false);
		err = mig_sources_iterate(mig, pass > 1);
		mig->ram.hot_skip = false;
		mig->pass.on_chunk = NULL;
		if (err == -EAGAIN) {
			/* migrate-start-postcopy mid-pass: the rest of it is owed. */
			mig->pass.to_postcopy = true;
			err = ram_flush(mig);
			/*
			 * --channels: post-copy runs on the main connection; end the
			 * others now, so the SYNC that follows drains them too and
			 * the pause does not wait for them.
			 */
			if (!err)
				err = mig_chans_barrier(mig, pass + 1, true);
			return err ? precopy_stream_fail(mig, err) : 0;
		}
		/* --channels: every page of this pass lands before any of the next. */
		if (!err)
			err = mig_chans_barrier(mig, pass, false);
		if (!err)
			err = mig_stream_flush(&mig->s);
		if (err)
			return precopy_stream_fail(mig, err);
		pass++;
		struct precopy_look look = { .in.nr_sources = 0 };
		err = precopy_decide(mig, pass, start, mig_bytes_out(mig) - bytes0, unsent0, &dirty,
				     &look);
		if (err == 1 && look.in.nr_sources)
			err = precopy_confirm(mig, pass, &look);
		if (err)
			return err < 0 ? err : 0;	/* 1: converged */
	}
}

void precopy_phase(struct migration *mig, enum mig_phase ph, uint64_t *t)
{
	uint64_t now = vm_now_ns();

	pthread_mutex_lock(&mig->lock);
	mig->stats.phase_ns[ph] = now - *t;
	pthread_mutex_unlock(&mig->lock);
	*t = now;
}

/*
 * --verify: the digest of the STATE payload about to be sent, through the
 * same decoder a destination uses, so both sides hash the same records
 * the same way (machine_state_digest; docs/migration-stream.md, DIGEST).
 */
static int precopy_state_digest(struct migration *mig, const struct vmstate_buf *b)
{
	struct machine_state st;
	struct vmstate_error verr;
	int err = machine_state_decode(b->data, b->len, mig->m->vm.nr_vcpus, &st, &verr);

	if (err) {
		pr_err("migration: the saved state does not decode: %s", verr.msg);
		return err;
	}
	err = machine_state_digest(&st, &mig->state_digest);
	machine_state_free(&st);
	return err;
}

int precopy_send_state(struct migration *mig)
{
	struct vmstate_buf b;
	int err;

	vmstate_buf_init(&b);
	/* The caller quiesced the machine and handed its devices over already. */
	err = machine_state_encode(mig->m, &b);
	if (err) {
		vmstate_buf_free(&b);
		return precopy_fail(mig, err, "cannot save the device state: %s", strerror(-err));
	}
	if (b.len > MIG_SECTION_MAX) {
		vmstate_buf_free(&b);
		return precopy_fail(mig, -E2BIG, "device state too large (%zu bytes)", b.len);
	}
	/* Replication's epochs carry no DIGEST: only the initial copy is verified. */
	if (mig->p.verify && !mig->pass.epochs)
		err = precopy_state_digest(mig, &b);
	if (err) {
		vmstate_buf_free(&b);
		return precopy_fail(mig, err, "cannot digest the device state: %s", strerror(-err));
	}
	mig_section_write(&mig->s, MIG_SEC_STATE, b.data, (uint32_t)b.len);
	pthread_mutex_lock(&mig->lock);
	mig->stats.state_bytes = b.len;
	pthread_mutex_unlock(&mig->lock);
	vmstate_buf_free(&b);
	return 0;
}

static void precopy_send_digest(struct migration *mig)
{
	uint64_t total = mig_digest_total(&mig->digest);
	uint8_t p[24];

	le_put(p, mig->digest.pages, 8);
	le_put(p + 8, total, 8);
	le_put(p + 16, mig->state_digest, 8);
	mig_section_write(&mig->s, MIG_SEC_DIGEST, p, sizeof(p));
	pthread_mutex_lock(&mig->lock);
	mig->stats.digest = total;
	mig->stats.state_digest = mig->state_digest;
	pthread_mutex_unlock(&mig->lock);
}

int precopy_send_last(struct migration *mig, uint8_t type)
{
	int err;

	if (mig->p.verify)
		precopy_send_digest(mig);
	mig_section_write(&mig->s, type, NULL, 0);
	err = mig_stream_flush(&mig->s);
	return err ? precopy_stream_fail(mig, err) : 0;
}

/*
 * Before pausing, let the destination drain what is queued between us
 * (socket buffers hold megabytes; on a slow link, seconds): a SYNC it
 * answers only once everything before it is stored.  The guest runs
 * meanwhile; what it dirties goes in the final pass.
 */
static int precopy_sync(struct migration *mig)
{
	uint8_t seq[4] = { 1, 0, 0, 0 }, buf[512], type;
	uint32_t len;
	int32_t status;
	const char *msg;
	int n, err;

	mig_section_write(&mig->s, MIG_SEC_SYNC, seq, sizeof(seq));
	err = mig_stream_flush(&mig->s);
	if (err)
		return precopy_stream_fail(mig, err);
	err = mig_section_read(&mig->s, buf, sizeof(buf), &type, &len);
	if (err)
		return precopy_stream_fail(mig, err);
	/* A destination that gave up says why in a RESULT: report that. */
	if (type == MIG_SEC_RESULT && !mig_result_parse(buf, len, &status, &msg, &n))
		return precopy_fail(mig, -EPROTO, "destination: %.*s", n, msg);
	if (type != MIG_SEC_SYNC_ACK || len != 4 || memcmp(buf, seq, 4))
		return precopy_fail(mig, -EPROTO, "destination answered SYNC with section %u", type);
	return 0;
}

/*
 * --keep-base: the VM as it left, as a save file on this host, for a later
 * migration back here to start from (base.h).  Written after the guest
 * runs at the destination, from this paused copy, so the migration itself
 * is not slowed; its failure costs the base, not the migration.
 */
static void precopy_keep_base(struct migration *mig)
{
	struct savefile_stats st = { 0 };
	uint64_t t0 = vm_now_ns();
	char why[300];

	if (savefile_save_paused(mig->m, mig->p.keep_base, &st, why, sizeof(why))) {
		pr_warn("migration completed, but the base %s was not kept: %s", mig->p.keep_base,
			why);
		return;
	}
	pr_info("kept the VM as it left in %s (%llu pages of data, %.1f ms)", mig->p.keep_base,
		(unsigned long long)st.data_pages, (double)(vm_now_ns() - t0) / 1e6);
}

/*
 * The guest stopped on its own while it was being migrated (a triple
 * fault, an internal error, its own exit): that, not the cancel the main
 * thread sends once the VM stops nor a pause refused with -ESRCH, is why
 * the migration failed.  Then the error says so, *err becomes -ESRCH for
 * a cancel (failed, not cancelled), and true is returned.
 */
static bool precopy_guest_gone(struct migration *mig, int *err)
{
	char why[sizeof(mig->stats.error)];
	enum vm_stop_reason r = vm_stop_why(&mig->m->vm, why, sizeof(why));

	if (!*err || mig->end.no_return || mig->end.committed ||
	    (r != VM_STOP_GUEST_CRASH && r != VM_STOP_GUEST_EXIT))
		return false;
	pthread_mutex_lock(&mig->lock);
	/* What followed from the stop says nothing more; anything else stays, after it. */
	char was[sizeof(mig->stats.error)];
	snprintf(was, sizeof(was), "%s", *err == -ESRCH || !strcmp(mig->stats.error, "cancelled") ?
		 "" : mig->stats.error);
	char full[2 * sizeof(mig->stats.error) + 32];
	snprintf(full, sizeof(full), "on the source, %s%s%s", why, was[0] ? "; " : "", was);
	/* Cut short if need be: the cause comes first. */
	snprintf(mig->stats.error, sizeof(mig->stats.error), "%.*s",
		 (int)sizeof(mig->stats.error) - 1, full);
	pthread_mutex_unlock(&mig->lock);
	if (*err == -ECANCELED)
		*err = -ESRCH;
	return true;
}

/* How it ended: tell the control API, then stop or resume the guest. */
static void precopy_finish(struct migration *mig, int err)
{
	struct vm *vm = &mig->m->vm;
	bool guest_gone = precopy_guest_gone(mig, &err);

	if (vm->dirty_logging)
		vm_dirty_log_stop(vm);
	if (mig->stats.throttle_pct && vm_set_throttle(vm, 0))
		pr_warn("could not stop throttling");
	mig_chans_src_close(mig);	/* before the main stream its senders fail into */
	mig_preempt_src_close(mig);	/* ... and its thread */
	pthread_mutex_lock(&mig->lock);		/* mig->s, for x-test-migration-break */
	mig_stream_destroy(&mig->s);
	pthread_mutex_unlock(&mig->lock);
	mig_sources_cleanup(mig);
	mig_digest_free(&mig->digest);
	/* Failed: the disks come back here first; if another process took one, no resume. */
	char lockwhy[256] = "";
	bool runs_here = err && !mig->end.no_return && !mig->end.abandoned && !mig->end.committed;
	bool locked_out = runs_here && machine_activate(mig->m, lockwhy, sizeof(lockwhy));

	/*
	 * The switchover's fence stays where the guest went on elsewhere (or
	 * was given up); it lifts where the guest runs on here, or was saved
	 * to a file and may be resumed.
	 */
	if (runs_here || (!err && !mig_channel_uri_return_path(mig->p.uri)))
		vm_fence(vm, false);

	pthread_mutex_lock(&mig->lock);
	if (locked_out) {
		size_t at = strlen(mig->stats.error);
		snprintf(mig->stats.error + at, sizeof(mig->stats.error) - at,
			 "; the guest stays paused here: its disk is in use by another process");
	}
	mig->stats.end_ns = vm_now_ns();
	if (mig->stats.postcopy && mig->stats.end_ns > mig->stats.start_ns)
		mig->stats.throughput = mig_bytes_out(mig) * 1000000000ULL /
					(mig->stats.end_ns - mig->stats.start_ns);
	mig->stats.throttle_pct = 0;
	mig->stats.status = mig->end.abandoned ? MIG_STATUS_ABANDONED : !err ? MIG_STATUS_COMPLETED
			  : mig->end.fenced ? MIG_STATUS_FENCED
			  : err == -ECANCELED ? MIG_STATUS_CANCELLED : MIG_STATUS_FAILED;
	mig->stats.lost = err && mig->end.no_return;
	json_object *ev = json_object_new_object();
	json_object_object_add(ev, "event", json_object_new_string("MIGRATION"));
	json_object_object_add(ev, "data", mig_stats_to_json(&mig->stats, mig->stats.end_ns));
	pthread_mutex_unlock(&mig->lock);

	if (err && mig->end.no_return) {
		pr_err("post-copy to %s failed: %s; the guest was already running there and "
		       "neither side holds all of its memory: the VM is lost", mig->p.uri,
		       mig->stats.error);
	} else if (mig->end.abandoned) {
		pr_warn("migration to %s was in doubt; the operator abandoned this copy of the guest",
			mig->p.uri);
	} else if (err && mig->end.fenced) {
		pr_err("replication to %s: %s; the guest stays paused here so that it never runs on "
		       "both hosts. If the standby is gone and never took over, 'ferry resume' runs "
		       "it here again", mig->p.uri, mig->stats.error);
	} else if (err == -ECANCELED && mig->p.replicate) {
		pr_info("replication to %s stopped; the guest runs on here", mig->p.uri);
	} else if (err && mig->end.committed) {
		/* Unreachable by design: the in-doubt wait ends only once settled. */
		pr_err("migration to %s failed after GO: %s; the guest stays paused", mig->p.uri,
		       mig->stats.error);
	} else if (guest_gone) {
		pr_err("migration to %s failed: %s", mig->p.uri, mig->stats.error);
	} else if (err && locked_out) {
		pr_err("migration to %s failed: %s", mig->p.uri, mig->stats.error);
		pr_err("the guest stays paused here: %s", lockwhy);
	} else if (err) {
		pr_err("migration to %s failed: %s; the guest runs on here", mig->p.uri,
		       mig->stats.error);
		if (vm_get_state(vm) == VM_STATE_PAUSED && vm_resume(vm))
			pr_err("cannot resume the guest");
	} else if (!mig_channel_uri_return_path(mig->p.uri)) {
		pr_info("saved the VM to %s; the guest %s", mig->p.uri,
			mig->p.keep_source ? "stays paused here" : "stops here");
	} else {
		pr_info("migration to %s completed; the guest runs there now", mig->p.uri);
	}
	/* Before the event: whoever waits for it finds the base whole. */
	if (!err && mig->p.keep_base[0])
		precopy_keep_base(mig);
	if (mig->on_event)
		mig->on_event(mig->event_opaque, ev);
	json_object_put(ev);
	/* The guest lives on at the destination: this copy must never run again. */
	if (!err && !mig->p.keep_source)
		vm_request_stop(vm, VM_STOP_MIGRATED, 0);
	else if (err && mig->end.no_return)
		vm_request_stop(vm, VM_STOP_LOST, 0);
}

void *precopy_thread(void *arg)
{
	struct migration *mig = arg;
	int err;

	pthread_setname_np(pthread_self(), "migration");
	err = precopy_setup(mig);
	pthread_mutex_lock(&mig->lock);
	mig->stats.setup_ns = vm_now_ns() - mig->stats.start_ns;
	pthread_mutex_unlock(&mig->lock);
	if (!err)
		err = precopy_live(mig);
	if (!err && mig->pass.to_postcopy) {
		/* SYNC only inside a pass: pure post-copy has none. */
		if (mig->p.mode != MIG_MODE_POSTCOPY)
			err = precopy_sync(mig);
		if (!err)
			err = postcopy_run(mig);
	} else {
		/* Nothing answers a SYNC in a file: the save is paused throughout. */
		if (!err && mig_stream_has_return_path(&mig->s) && !mig->pass.drained)
			err = precopy_sync(mig);
		if (!err && mig->p.replicate)
			err = replicate_run(mig);
		else if (!err)
			err = switchover_run(mig);
	}
	precopy_finish(mig, err);
	return NULL;
}
