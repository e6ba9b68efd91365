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

#include "migration/config.h"
#include "migration/format.h"
#include "migration/migration.h"
#include "migration/ram.h"
#include "migration/section.h"
#include "migration/transport.h"
#include "util/le.h"
#include "util/log.h"
#include "vmm/dirty.h"
#include "vmm/machine_state.h"

#define PRECOPY_CONNECT_TIMEOUT_MS 10000
#define PRECOPY_IO_TIMEOUT_MS 30000
#define PRECOPY_BUFFER (1 << 20)

static void precopy_set_status(struct migration *mig, enum mig_status s)
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
	int saved = s->err;

	if (s->fd < 0)
		return -ENOENT;
	s->err = 0;
	s->timeout_ms = 1000;
	int err = mig_section_read(s, buf, sizeof(buf), &type, &n);
	s->err = saved;
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

static void precopy_send_config(struct migration *mig)
{
	struct machine *m = mig->m;
	struct mig_config cfg = {
		.memory = m->vm.mem.size, .vcpus = m->vm.nr_vcpus, .page_size = GUEST_PAGE_SIZE,
		/* Post-copy may be asked for at any time (migrate-start-postcopy). */
		.flags = (mig->p.verify ? MIG_FLAG_VERIFY : 0) | MIG_FLAG_POSTCOPY,
	};
	struct vmstate_buf b;

	cfg.cmdline_len = (uint16_t)strlen(m->cmdline);
	memcpy(cfg.cmdline, m->cmdline, cfg.cmdline_len);
	vmstate_buf_init(&b);
	if (vmstate_save(&mig_config_vmsd, &cfg, &b))
		mig_stream_fail(&mig->s, -EINVAL, "cannot encode the configuration");
	else
		mig_section_write(&mig->s, MIG_SEC_CONFIG, b.data, (uint32_t)b.len);
	vmstate_buf_free(&b);
}

/* Read the destination's READY or RESULT.  0 when it said ok/ready. */
int precopy_read_reply(struct migration *mig, uint8_t want)
{
	uint8_t buf[512], type;
	uint32_t len;
	int err = mig_section_read(&mig->s, buf, sizeof(buf), &type, &len);

	if (err)
		return precopy_fail(mig, err, "destination: %s", mig->s.why);
	int32_t status;
	const char *msg;
	int n;
	if (type == MIG_SEC_RESULT && !mig_result_parse(buf, len, &status, &msg, &n)) {
		if (status == 0 && want == MIG_SEC_RESULT)
			return 0;
		return precopy_fail(mig, status ? status : -EPROTO, "destination: %.*s", n, msg);
	}
	if (type != want)
		return precopy_fail(mig, -EPROTO, "destination answered with section %u", type);
	return 0;
}

/* Hybrid without --postcopy-after: ferry picks the moment itself. */
static bool precopy_auto_hybrid(const struct migration *mig)
{
	return mig->p.mode == MIG_MODE_HYBRID && !mig->p.postcopy_after;
}

static int precopy_setup(struct migration *mig)
{
	int fd, err;

	fd = mig_transport_connect(mig->p.uri, PRECOPY_CONNECT_TIMEOUT_MS);
	if (fd < 0)
		return precopy_fail(mig, fd, "cannot connect to %s: %s", mig->p.uri,
				    fd == -EINVAL ? "use tcp:HOST:PORT or unix:PATH" : strerror(-fd));
	if (mig_stream_init(&mig->s, fd, PRECOPY_BUFFER))
		return precopy_fail(mig, -ENOMEM, "out of memory");
	mig->s.timeout_ms = PRECOPY_IO_TIMEOUT_MS;
	mig_stream_put(&mig->s, MIG_MAGIC, MIG_MAGIC_LEN);
	mig_stream_put_u32(&mig->s, MIG_VERSION);
	precopy_send_config(mig);
	err = mig_stream_flush(&mig->s);
	if (err)
		return precopy_stream_fail(mig, err);
	/* While the destination builds its VM. */
	err = ram_setup(mig);
	if (!err && mig->p.verify)
		err = mig_digest_init(&mig->digest, &mig->m->vm.mem);
	if (err)
		return precopy_fail(mig, err, "out of memory");
	err = vm_dirty_log_start(&mig->m->vm);
	if (err)
		return precopy_fail(mig, err, "cannot start dirty logging: %s", strerror(-err));
	if (precopy_auto_hybrid(mig)) {
		/* Watch what the guest writes from now on (precopy_probe). */
		err = ram_start_clean(mig);
		if (err)
			return precopy_fail(mig, err, "cannot clear the dirty log: %s", strerror(-err));
	}
	err = precopy_read_reply(mig, MIG_SEC_READY);
	if (err)
		return err;
	ratelimit_init(&mig->rl, mig->p.bandwidth, 0);
	mig->s.rl = &mig->rl;
	pthread_mutex_lock(&mig->lock);
	mig->stats.mem_total = mig->m->vm.mem.size;
	mig->stats.mem_remaining = mig->m->vm.mem.size;
	pthread_mutex_unlock(&mig->lock);
	return 0;
}

static void precopy_send_pass(struct migration *mig, uint32_t pass, uint64_t dirty, bool final)
{
	uint8_t p[13];

	le_put(p, pass, 4);
	le_put(p + 4, dirty, 8);
	p[12] = final;
	mig_section_write(&mig->s, MIG_SEC_PASS, p, sizeof(p));
}

/* Has the time limit run out?  Applies the on-timeout policy. */
static int precopy_check_timeout(struct migration *mig, uint64_t now)
{
	if (!mig->p.timeout_ns || now - mig->stats.start_ns < mig->p.timeout_ns)
		return 0;
	if (mig->p.on_timeout != MIG_ON_TIMEOUT_CANCEL) {
		mig->forced = true;
		mig->to_postcopy = mig->p.on_timeout == MIG_ON_TIMEOUT_POSTCOPY;
		return 0;
	}
	return precopy_fail(mig, -ETIMEDOUT, "timed out after %llu ms without converging",
			    (unsigned long long)(mig->p.timeout_ns / 1000000));
}

/* Auto-converge: throttle harder while the guest dirties faster than we send. */
static void precopy_throttle(struct migration *mig, uint64_t dirty_bytes_per_s, uint64_t bw)
{
	uint32_t pct = mig->stats.throttle_pct;

	if (!mig->p.auto_converge || !bw || dirty_bytes_per_s * 2 <= bw)
		return;
	pct = pct ? pct + 10 : 20;
	pct = pct > 99 ? 99 : pct;
	if (vm_set_throttle(&mig->m->vm, pct))
		return;
	pthread_mutex_lock(&mig->lock);
	mig->stats.throttle_pct = pct;
	pthread_mutex_unlock(&mig->lock);
	pr_info("migration: dirty rate outruns the link; vCPUs throttled to %u%%", 100 - pct);
}

/*
 * Can pre-copy never converge?  When the guest dirties pages faster than
 * the link carries them and its dirty set cannot go in one downtime, every
 * further pass only sends again what it writes: better switch to post-copy.
 */
static bool precopy_hopeless(uint64_t dirty_bytes, uint64_t rate, uint64_t bw,
			     uint64_t downtime_ns)
{
	return bw && rate > bw && dirty_bytes > bw * downtime_ns / 1000000000ULL;
}

#define PRECOPY_PROBE_NS 10000000ULL	/* a look at the dirty rate every 10 ms */

/*
 * Auto hybrid, pass 1 (between chunks): peek at what the guest wrote
 * since the log was cleared, which also refreshes the hot pages this pass
 * leaves for later.  True: pre-copy is hopeless, switch to post-copy now.
 */
static bool precopy_probe(struct migration *mig)
{
	uint64_t now = vm_now_ns();

	if (now - mig->probe_ns < PRECOPY_PROBE_NS)
		return false;
	mig->probe_ns = now;
	int64_t hot = ram_peek_hot(mig);
	if (hot < 0)
		return false;	/* the pass goes on; the next sync reports it */
	uint64_t dirty = (uint64_t)hot * GUEST_PAGE_SIZE;
	uint64_t window = now - mig->clear_ns, sending = now - mig->pass_start_ns;
	uint64_t rate = dirty * 1000000000ULL / (window ? window : 1);
	/* The measured send rate; until there is one, the cap (if any) bounds it. */
	pthread_mutex_lock(&mig->lock);
	uint64_t bw = mig->p.bandwidth, limit = mig->p.downtime_ns;
	mig->stats.dirty_rate = rate / GUEST_PAGE_SIZE;
	pthread_mutex_unlock(&mig->lock);
	if (sending > 20000000ULL) {
		uint64_t measured = (mig->s.bytes_out - mig->pass_start_bytes) * 1000000000ULL / sending;
		bw = bw && bw < measured ? bw : measured;
	}
	/*
	 * Still growing as fast as on average, and faster than we send: the
	 * dirty set is not about to level off below the downtime's worth, so
	 * there is no point waiting until it has grown past it.
	 */
	uint64_t since = now - mig->probe_prev_ns;
	uint64_t recent = dirty > mig->probe_prev_dirty && since ?
		(dirty - mig->probe_prev_dirty) * 1000000000ULL / since : 0;
	bool growing = bw && rate > bw && recent > bw && dirty > bw * limit / 4000000000ULL;
	mig->probe_prev_ns = now;
	mig->probe_prev_dirty = dirty;
	if (!growing && !precopy_hopeless(dirty, rate, bw, limit))
		return false;
	pr_info("migration: the guest dirties %llu MiB in %llu ms, faster than the %llu MiB/s "
		"sent: switching to post-copy", (unsigned long long)(dirty >> 20),
		(unsigned long long)(window / 1000000), (unsigned long long)(bw >> 20));
	return true;
}

/*
 * Sync the dirty log and decide: 1 = switch over now, 0 = another pass.
 * Fills the stats that `ferry status` shows while the guest runs.
 */
static int precopy_decide(struct migration *mig, uint32_t pass, uint64_t pass_start,
			  uint64_t pass_bytes, int64_t *dirty_out)
{
	uint64_t now = vm_now_ns();
	int64_t dirty = ram_sync(mig);

	if (dirty < 0)
		return precopy_fail(mig, (int)dirty, "dirty log sync failed: %s", strerror((int)-dirty));
	*dirty_out = dirty;
	uint64_t pass_ns = now - pass_start ? now - pass_start : 1;
	uint64_t since_sync = now - mig->last_sync_ns ? now - mig->last_sync_ns : 1;
	uint64_t bw = pass_bytes * 1000000000ULL / pass_ns;
	uint64_t rate = (uint64_t)dirty * 1000000000ULL / since_sync;
	uint64_t remaining = (uint64_t)dirty * GUEST_PAGE_SIZE;
	uint64_t expect = bw ? remaining * 1000000000ULL / bw : UINT64_MAX;
	mig->last_sync_ns = now;

	pthread_mutex_lock(&mig->lock);
	mig->stats.iteration = pass;
	mig->stats.throughput = bw;
	mig->stats.pages_per_sec = bw / GUEST_PAGE_SIZE;
	mig->stats.dirty_rate = rate;
	mig->stats.mem_remaining = remaining;
	mig->stats.expected_downtime_ns = expect;
	mig->stats.wire_bytes = mig->s.bytes_out;
	pthread_mutex_unlock(&mig->lock);

	int err = precopy_check_timeout(mig, now);
	if (err)
		return err;
	if (mig->p.max_iterations && pass >= mig->p.max_iterations)
		mig->forced = true;
	pthread_mutex_lock(&mig->lock);
	uint64_t limit = mig->p.downtime_ns;
	bool asked = mig->postcopy_requested;
	pthread_mutex_unlock(&mig->lock);
	/* Hybrid: post-copy once the set number of passes is done, or it is hopeless. */
	bool hybrid_now = mig->p.mode == MIG_MODE_HYBRID &&
		(precopy_auto_hybrid(mig) ? expect > limit &&
		 precopy_hopeless(remaining, rate * GUEST_PAGE_SIZE, bw, limit)
		 : pass > mig->p.postcopy_after);
	if (hybrid_now && precopy_auto_hybrid(mig))
		pr_info("migration: %llu MiB dirty after pass %u and the guest dirties %llu MiB/s, "
			"faster than the %llu MiB/s sent: switching to post-copy",
			(unsigned long long)(remaining >> 20), pass - 1,
			(unsigned long long)(rate * GUEST_PAGE_SIZE >> 20), (unsigned long long)(bw >> 20));
	if (asked || hybrid_now) {
		mig->to_postcopy = true;
		return 1;
	}
	if (mig->forced || expect <= limit)
		return 1;
	precopy_throttle(mig, rate * GUEST_PAGE_SIZE, bw);
	return 0;
}

/*
 * Live passes until the rest fits the downtime (or we must stop, or go to
 * post-copy: then mig->to_postcopy is set).
 */
static int precopy_live(struct migration *mig)
{
	uint32_t pass = 1;
	int64_t dirty = (int64_t)(mig->m->vm.mem.size / GUEST_PAGE_SIZE);
	int err;

	if (mig->p.mode == MIG_MODE_POSTCOPY) {
		/* No pass: the switch's own sync finds every page still dirty. */
		mig->to_postcopy = true;
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
	err = (int)ram_sync(mig);
	mig->last_sync_ns = vm_now_ns();
	if (err >= 0 && precopy_auto_hybrid(mig)) {
		/* Pass 1 leaves what the guest is writing for later, and keeps watching. */
		int64_t hot = ram_peek_hot(mig);
		mig->hot_skip = hot >= 0;
		mig->on_chunk = precopy_probe;
		mig->probe_ns = 0;	/* the first look comes after the first chunk */
		mig->probe_prev_ns = vm_now_ns();
		mig->probe_prev_dirty = hot > 0 ? (uint64_t)hot * GUEST_PAGE_SIZE : 0;
	}
	for (;;) {
		if (err < 0)
			return precopy_fail(mig, err, "dirty log sync failed: %s", strerror(-err));
		uint64_t start = vm_now_ns(), bytes0 = mig->s.bytes_out;
		mig->pass_start_ns = start;
		mig->pass_start_bytes = bytes0;
		precopy_send_pass(mig, pass, (uint64_t)dirty, false);
		err = ram_send_dirty(mig, pass > 1);
		mig->hot_skip = false;
		mig->on_chunk = NULL;
		if (err == -EAGAIN) {
			/* migrate-start-postcopy mid-pass: the rest of it is owed. */
			mig->to_postcopy = true;
			err = ram_flush(mig);
			return err ? precopy_stream_fail(mig, err) : 0;
		}
		if (!err)
			err = mig_stream_flush(&mig->s);
		if (err)
			return precopy_stream_fail(mig, err);
		pass++;
		err = precopy_decide(mig, pass, start, mig->s.bytes_out - bytes0, &dirty);
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

int precopy_send_state(struct migration *mig)
{
	struct vmstate_buf b;
	int err;

	vmstate_buf_init(&b);
	err = machine_state_save(mig->m, &b);
	if (err) {
		vmstate_buf_free(&b);
		return precopy_fail(mig, err, "cannot save the device state: %s", strerror(-err));
	}
	if (b.len > MIG_SECTION_MAX) {
		vmstate_buf_free(&b);
		return precopy_fail(mig, -E2BIG, "device state too large (%zu bytes)", b.len);
	}
	mig_section_write(&mig->s, MIG_SEC_STATE, b.data, (uint32_t)b.len);
	pthread_mutex_lock(&mig->lock);
	mig->stats.state_bytes = b.len;
	pthread_mutex_unlock(&mig->lock);
	vmstate_buf_free(&b);
	return 0;
}

void precopy_send_digest(struct migration *mig)
{
	uint64_t total = mig_digest_total(&mig->digest);
	uint8_t p[16];

	le_put(p, mig->digest.pages, 8);
	le_put(p + 8, total, 8);
	mig_section_write(&mig->s, MIG_SEC_DIGEST, p, sizeof(p));
	mig->stats.digest = total;
}

/*
 * Before pausing, let the destination drain what is queued between us
 * (socket buffers hold megabytes; on a slow link, seconds): a SYNC it
 * answers only once everything before it is stored.  The guest runs
 * meanwhile; what it dirties goes in the final pass.
 */
static int precopy_sync(struct migration *mig)
{
	uint8_t seq[4] = { 1, 0, 0, 0 }, buf[16], type;
	uint32_t len;
	int err;

	mig_section_write(&mig->s, MIG_SEC_SYNC, seq, sizeof(seq));
	err = mig_stream_flush(&mig->s);
	if (err)
		return precopy_stream_fail(mig, err);
	err = mig_section_read(&mig->s, buf, sizeof(buf), &type, &len);
	if (err)
		return precopy_stream_fail(mig, err);
	if (type != MIG_SEC_SYNC_ACK || len != 4 || memcmp(buf, seq, 4))
		return precopy_fail(mig, -EPROTO, "destination answered SYNC with section %u", type);
	return 0;
}

/* Pause, send the rest and the state, and hear the destination out. */
static int precopy_switchover(struct migration *mig)
{
	uint64_t t0 = vm_now_ns(), t = t0;
	int64_t dirty;
	int err;

	precopy_set_status(mig, MIG_STATUS_DEVICE);
	mig->pass_start_ns = t0;
	mig->pass_start_bytes = mig->s.bytes_out;
	ratelimit_set_rate(&mig->rl, 0);	/* stop-and-copy runs unlimited */
	err = vm_pause(&mig->m->vm, VM_PAUSE_TIMEOUT_NS);
	if (err)
		return precopy_fail(mig, err, "cannot pause for the switchover: %s", vm_pause_strerror(err));
	precopy_phase(mig, MIG_PHASE_PAUSE, &t);
	dirty = ram_sync(mig);
	if (dirty < 0)
		return precopy_fail(mig, (int)dirty, "final dirty sync failed");
	precopy_phase(mig, MIG_PHASE_FINAL_SYNC, &t);
	pthread_mutex_lock(&mig->lock);
	mig->stats.mem_remaining = (uint64_t)dirty * GUEST_PAGE_SIZE;
	pthread_mutex_unlock(&mig->lock);
	precopy_send_pass(mig, mig->stats.iteration, (uint64_t)dirty, true);
	err = ram_send_dirty(mig, true);
	if (err)
		return precopy_stream_fail(mig, err);
	precopy_phase(mig, MIG_PHASE_FINAL_PAGES, &t);
	err = precopy_send_state(mig);
	if (err)
		return err;
	if (mig->p.verify)
		precopy_send_digest(mig);
	mig_section_write(&mig->s, MIG_SEC_END, NULL, 0);
	err = mig_stream_flush(&mig->s);
	if (err)
		return precopy_stream_fail(mig, err);
	precopy_phase(mig, MIG_PHASE_DEVICE_STATE, &t);
	pr_debug("migration: END sent at %.3f ms (monotonic)", (double)t / 1e6);
	err = precopy_read_reply(mig, MIG_SEC_RESULT);
	precopy_phase(mig, MIG_PHASE_RESUME, &t);
	pthread_mutex_lock(&mig->lock);
	mig->stats.downtime_ns = t - t0;
	mig->stats.wire_bytes = mig->s.bytes_out;
	pthread_mutex_unlock(&mig->lock);
	return err;
}

/* How it ended: tell the control API, then stop or resume the guest. */
static void precopy_finish(struct migration *mig, int err)
{
	struct vm *vm = &mig->m->vm;

	if (vm->dirty_logging)
		vm_dirty_log_stop(vm);
	if (mig->stats.throttle_pct && vm_set_throttle(vm, 0))
		pr_warn("could not stop throttling");
	mig_stream_destroy(&mig->s);
	ram_cleanup(mig);
	mig_digest_free(&mig->digest);

	pthread_mutex_lock(&mig->lock);
	mig->stats.end_ns = vm_now_ns();
	if (mig->stats.postcopy && mig->stats.end_ns > mig->stats.start_ns)
		mig->stats.throughput = mig->s.bytes_out * 1000000000ULL /
					(mig->stats.end_ns - mig->stats.start_ns);
	mig->stats.throttle_pct = 0;
	mig->stats.status = !err ? MIG_STATUS_COMPLETED
			  : err == -ECANCELED ? MIG_STATUS_CANCELLED : MIG_STATUS_FAILED;
	mig->stats.lost = err && mig->no_return;
	json_object *ev = json_object_new_object();
	json_object_object_add(ev, "event", json_object_new_string("MIGRATION"));
	json_object_object_add(ev, "data", mig_stats_to_json(&mig->stats, mig->stats.end_ns));
	pthread_mutex_unlock(&mig->lock);

	if (err && mig->no_return) {
		pr_err("post-copy to %s failed: %s; the guest was already running there and "
		       "neither side holds all of its memory: the VM is lost", mig->p.uri,
		       mig->stats.error);
	} else if (err) {
		pr_err("migration to %s failed: %s; the guest runs on here", mig->p.uri,
		       mig->stats.error);
		if (vm_get_state(vm) == VM_STATE_PAUSED && vm_resume(vm))
			pr_err("cannot resume the guest");
	} else {
		pr_info("migration to %s completed; the guest runs there now", mig->p.uri);
	}
	if (mig->on_event)
		mig->on_event(mig->event_opaque, ev);
	json_object_put(ev);
	/* The guest lives on at the destination: this copy must never run again. */
	if (!err && !mig->p.keep_source)
		vm_request_stop(vm, VM_STOP_MIGRATED, 0);
	else if (err && mig->no_return)
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
	if (!err && mig->to_postcopy) {
		/* SYNC only inside a pass: pure post-copy has none. */
		if (mig->p.mode != MIG_MODE_POSTCOPY)
			err = precopy_sync(mig);
		if (!err)
			err = postcopy_run(mig);
	} else {
		if (!err)
			err = precopy_sync(mig);
		if (!err)
			err = precopy_switchover(mig);
	}
	precopy_finish(mig, err);
	return NULL;
}
