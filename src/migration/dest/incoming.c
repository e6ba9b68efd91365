#include "migration/dest/incoming.h"
#include "migration/dest/incoming_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "migration/base.h"
#include "migration/block.h"
#include "migration/codec/codec.h"
#include "migration/savefile/savefile.h"
#include "migration/format.h"
#include "migration/dest/postcopy_dest.h"
#include "migration/section.h"
#include "migration/live.h"
#include "migration/multi.h"
#include "migration/preempt.h"
#include "migration/replicate/epoch.h"
#include "util/le.h"
#include "util/log.h"
#include "board/machine_state.h"


int mig_in_fail(struct mig_incoming *inc, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(inc->why, sizeof(inc->why), fmt, ap);
	va_end(ap);
	return err;
}

static int mig_in_header(struct mig_incoming *inc)
{
	char magic[MIG_MAGIC_LEN];
	uint32_t version;

	mig_stream_get(&inc->s, magic, sizeof(magic));
	version = mig_stream_get_u32(&inc->s);
	if (mig_stream_error(&inc->s))
		return mig_in_fail(inc, mig_stream_error(&inc->s), "no stream header: %s", mig_stream_why(&inc->s));
	if (magic[0] == 0x16 && magic[1] == 3)		/* a TLS handshake record */
		return mig_in_fail(inc, -EPROTO, "the source speaks TLS and this destination was "
				   "started without --tls-creds: start it with --tls-creds DIR, or "
				   "migrate without");
	if (memcmp(magic, MIG_MAGIC, MIG_MAGIC_LEN))
		return mig_in_fail(inc, -EPROTO, "not a ferry migration stream (bad magic)");
	if (version != MIG_VERSION)
		return mig_in_fail(inc, -EPROTONOSUPPORT,
				   "stream version %u is not supported: this ferry speaks version %u%s",
				   version, MIG_VERSION, version > MIG_VERSION ? "; upgrade it" : "");
	return 0;
}

/*
 * The codecs CONFIG offers: this side accepts those it knows.  A file
 * cannot be asked to do without one: an image using a codec this ferry
 * lacks is refused here, before any page.  Raw must be offered: every
 * page can be sent raw.
 */
static int mig_in_codecs(struct mig_incoming *inc)
{
	uint32_t offered = inc->cfg.codecs, unknown = offered & ~MIG_CODECS_KNOWN;
	char names[128];

	if (!(offered & (1u << MIG_CODEC_RAW)))
		return mig_in_fail(inc, -EPROTO, "the stream does not offer the raw codec "
				   "(codecs 0x%x)", offered);
	if (unknown && !mig_stream_has_return_path(&inc->s)) {
		mig_codec_names(unknown, names, sizeof(names));
		return mig_in_fail(inc, -EPROTONOSUPPORT, "the image may use codecs this ferry "
				   "does not know (%s): cannot restore it", names);
	}
	inc->codecs = offered & MIG_CODECS_KNOWN;
	/* Epochs are buffered page by page: only pages that need no copy held here. */
	if (inc->cfg.flags & MIG_FLAG_REPLICATE)
		inc->codecs &= (1u << MIG_CODEC_ZERO) | (1u << MIG_CODEC_RAW);
	if (mig_codec_ctx_init(&inc->codec, false, MIG_COMPRESS_NONE, inc->codecs, 0, 0))
		return mig_in_fail(inc, -ENOMEM, "out of memory for the codecs");
	inc->codec_ready = true;
	return 0;
}

/*
 * What this host can give a new VM, in bytes: MemAvailable plus SwapFree
 * from /proc/meminfo (what the kernel can hand out without taking it from
 * running processes).  0 if unknown.
 */
static uint64_t mig_in_host_room(void)
{
	FILE *f = fopen("/proc/meminfo", "re");
	unsigned long long kb, avail = 0, swap = 0;
	char line[128];

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
			avail = kb;
		else if (sscanf(line, "SwapFree: %llu kB", &kb) == 1)
			swap = kb;
	}
	fclose(f);
	return (uint64_t)(avail + swap) * 1024;
}

/*
 * A VM's size comes from the source, which may lie: without --memory (the
 * operator's own cap) accept no more RAM than this host has room for, and
 * say so before anything is allocated.
 */
static int mig_in_check_size(struct mig_incoming *inc, const struct mig_incoming_opts *opts)
{
	if (opts->max_memory) {
		if (inc->cfg.memory <= opts->max_memory)
			return 0;
		return mig_in_fail(inc, -E2BIG, "the VM has %llu MiB of RAM; this destination allows %llu MiB",
				   (unsigned long long)(inc->cfg.memory >> 20),
				   (unsigned long long)(opts->max_memory >> 20));
	}
	uint64_t room = mig_in_host_room();
	if (!room || inc->cfg.memory <= room)
		return 0;
	return mig_in_fail(inc, -E2BIG, "the VM has %llu MiB of RAM, more than this host has room "
			   "for (%llu MiB: MemAvailable + SwapFree); start the destination with "
			   "--memory SIZE to accept a VM up to SIZE anyway",
			   (unsigned long long)(inc->cfg.memory >> 20),
			   (unsigned long long)(room >> 20));
}

/*
 * --base: can this migration start from it?  Only if the source offered
 * (an older one cannot) and the base is of a VM with the same RAM layout;
 * otherwise every page travels, as without a base, and we say why.
 */
static bool mig_in_base_usable(struct mig_incoming *inc, const struct savefile *sf)
{
	char why[200];

	if (!(inc->cfg.codecs & MIG_CAP_BASE)) {
		pr_warn("--base %s: the source cannot start from a base (an older ferry); every "
			"page travels", sf->path);
		return false;
	}
	if (mig_base_fits(&sf->meta.cfg, &inc->cfg, why, sizeof(why))) {
		pr_warn("--base %s is not of this VM: %s; the base is ignored and every page "
			"travels", sf->path, why);
		return false;
	}
	return true;
}

static int mig_in_config(struct mig_incoming *inc, const struct mig_incoming_opts *opts,
			 struct machine *m, const uint8_t *p, uint32_t len)
{
	struct vmstate_error verr;
	char cmdline[PVH_CMDLINE_MAX];
	int err;

	memset(&inc->cfg, 0, sizeof(inc->cfg));
	if (vmstate_load(&mig_config_vmsd, &inc->cfg, p, len, &verr))
		return mig_in_fail(inc, -EPROTO, "bad configuration: %s", verr.msg);
	err = mig_in_check_size(inc, opts);
	if (err)
		return err;
	if (opts->max_vcpus && inc->cfg.vcpus > opts->max_vcpus)
		return mig_in_fail(inc, -E2BIG, "the VM has %u vCPUs; this destination allows %u",
				   inc->cfg.vcpus, opts->max_vcpus);
	if (opts->premade && opts->premade->size != inc->cfg.memory)
		return mig_in_fail(inc, -E2BIG, "the VM has %llu MiB of RAM; this destination "
				   "preallocated exactly %llu MiB (--memory with --prealloc)",
				   (unsigned long long)(inc->cfg.memory >> 20),
				   (unsigned long long)(opts->premade->size >> 20));
	err = mig_in_codecs(inc);
	if (err)
		return err;
	bool repl = inc->cfg.flags & MIG_FLAG_REPLICATE;
	if (repl && !opts->standby)
		return mig_in_fail(inc, -EPROTO, "the source replicates to a standby ('ferry "
				   "replicate'); start this side with 'ferry run --incoming URI "
				   "--standby'");
	if (!repl && opts->standby)
		return mig_in_fail(inc, -EPROTO, "this side is a standby and takes only 'ferry "
				   "replicate', not a migration");
	if (repl && ((inc->cfg.flags & MIG_FLAG_POSTCOPY) || !mig_stream_has_return_path(&inc->s)))
		return mig_in_fail(inc, -EPROTO, "a replication with post-copy, or without a return "
				   "path");
	/* A standby's disks are its own copies (--copy-storage), never shared storage. */
	if (repl && opts->nr_disks && !opts->own_disks)
		return mig_in_fail(inc, -EOPNOTSUPP, "a standby's disks must be its own copies "
				   "(--copy-storage): shared storage is refused (docs/replication.md)");
	/* Post-copy would start the guest and then ask for pages: from a file, nobody. */
	if ((inc->cfg.flags & MIG_FLAG_POSTCOPY) && !mig_stream_has_return_path(&inc->s))
		return mig_in_fail(inc, -EPROTO, "the stream allows post-copy, which needs a return "
				   "path; a file has none (not written by 'ferry migrate ... file:')");
	memcpy(cmdline, inc->cfg.cmdline, inc->cfg.cmdline_len);
	cmdline[inc->cfg.cmdline_len] = '\0';
	struct machine_config mc = {
		.memory = inc->cfg.memory, .vcpus = inc->cfg.vcpus,
		.cmdline = cmdline, .serial = opts->serial, .premade = opts->premade,
		.cpu_model = opts->cpu_model,
		.disks = opts->disks, .nr_disks = opts->nr_disks,
		.nics = opts->nics, .nr_nics = opts->nr_nics,
		.incoming = true,	/* disks unlocked until the guest may run here */
		.own_disks = opts->own_disks,
	};
	err = machine_create(m, &mc);
	if (err) {
		machine_destroy(m);
		return mig_in_fail(inc, err, "cannot create a VM of %llu MiB and %u vCPUs: %s",
				   (unsigned long long)(inc->cfg.memory >> 20), inc->cfg.vcpus,
				   strerror(-err));
	}
	inc->created = true;
	/* Before any page: a guest this CPU cannot run must not move here. */
	char cpu_why[sizeof(inc->why) - 32];	/* room for the prefix below */
	if (mig_config_check_cpu(&inc->cfg, m->vm.cpuid, cpu_why, sizeof(cpu_why)))
		return mig_in_fail(inc, -EOPNOTSUPP, "guest CPU not supported here: %s", cpu_why);
	/* The guest keeps the CPUID it booted with, not this host's fuller set. */
	if (inc->cfg.cpuid_nent) {
		struct kvm_cpuid2 *cpuid = mig_config_cpuid(&inc->cfg);
		if (!cpuid)
			return mig_in_fail(inc, -ENOMEM, "out of memory");
		err = vm_set_cpuid(&m->vm, cpuid);
		if (err)
			return mig_in_fail(inc, err, "cannot give the vCPUs the guest's CPUID: %s",
					   strerror(-err));
	}
	inc->written = calloc(guest_memory_pages(&m->vm.mem) / 64 + 1, sizeof(unsigned long));
	inc->known = calloc(guest_memory_pages(&m->vm.mem) / 64 + 1, sizeof(unsigned long));
	inc->page = aligned_alloc(64, GUEST_PAGE_SIZE);
	if (!inc->written || !inc->known || !inc->page)
		return mig_in_fail(inc, -ENOMEM, "out of memory");
	if ((inc->cfg.flags & MIG_FLAG_VERIFY) && mig_digest_init(&inc->digest, &m->vm.mem))
		return mig_in_fail(inc, -ENOMEM, "out of memory for page digests");
	inc->nchan = 1;
	if (!mig_stream_has_return_path(&inc->s))
		return 0;	/* a file: nobody to tell (and one channel) */
	/* --channels: as many as asked (CONFIG's range is checked), on this listener. */
	if (inc->cfg.channels > 1 && inc->listener && !repl)
		inc->nchan = inc->cfg.channels;
	bool base = opts->base && !repl && mig_in_base_usable(inc, opts->base);
	/*
	 * --postcopy-preempt: a connection for requested pages, if post-copy
	 * may come and the listener is still ours to take it on.
	 */
	inc->preempt = (inc->cfg.codecs & MIG_CAP_PREEMPT) && (inc->cfg.flags & MIG_FLAG_POSTCOPY) &&
		       inc->listener && !repl;
	/* A standby takes an epoch's disk blocks as 4 KiB ranges, if the primary can send them. */
	inc->epoch_ranges = repl && (inc->cfg.codecs & MIG_CAP_EPOCH_RANGES) &&
			    !opts->standby_chunks;
	/* Block data through a codec, when this side was told to take the disks. */
	inc->block_z = (inc->cfg.codecs & MIG_CAP_BLOCK_Z) &&
		       mig_source_get(MIG_SOURCE_BLOCK)->accepted() && !repl;
	uint8_t ready[MIG_READY_CHANNELS_LEN];
	/* The codecs the source may use; whether our base's digests follow; preempt; ranges. */
	le_put(ready, inc->codecs | (base ? MIG_CAP_BASE : 0) |
		      (inc->preempt ? MIG_CAP_PREEMPT : 0) |
		      (inc->epoch_ranges ? MIG_CAP_EPOCH_RANGES : 0) |
		      (inc->block_z ? MIG_CAP_BLOCK_Z : 0), 4);
	le_put(ready + 4, inc->nchan, 4);
	mig_section_write(&inc->s, MIG_SEC_READY, ready,
			  inc->cfg.channels > 1 ? MIG_READY_CHANNELS_LEN : MIG_READY_LEN);
	if (repl) {
		/* The standby's terms, before anything moves: the primary's fence depends on them. */
		uint8_t terms[5];
		le_put(terms, (uint32_t)(opts->failover_ns / 1000000), 4);
		terms[4] = (uint8_t)opts->failover_mode;
		mig_section_write(&inc->s, MIG_SEC_STANDBY, terms, sizeof(terms));
	}
	if (mig_stream_flush(&inc->s)) {
		inc->reply_broken = true;
		return mig_in_fail(inc, mig_stream_error(&inc->s), "cannot answer the source: %s", mig_stream_why(&inc->s));
	}
	/*
	 * The extra connections first: the source opens them right after
	 * READY and each hello has a deadline, while loading a base may take
	 * a while.  Its digests then go back on the main connection.
	 */
	if (inc->nchan > 1 || inc->preempt) {
		err = mig_chans_in_accept(inc, opts, inc->listener);
		if (err)
			return err;
	}
	return base ? mig_in_base_send(inc, m, opts->base) : 0;
}

static int mig_in_pass(struct mig_incoming *inc, const uint8_t *p, uint32_t len, bool *final)
{
	struct mig_cursor c;

	mig_cursor_init(&c, p, len);
	uint32_t pass = mig_cursor_u32(&c);
	(void)mig_cursor_u64(&c);
	uint8_t fin = mig_cursor_u8(&c);
	if (c.bad || c.off != len || fin > 1)
		return mig_in_fail(inc, -EPROTO, "malformed PASS section");
	if (pass != inc->pass + 1)
		return mig_in_fail(inc, -EPROTO, "pass %u follows pass %u", pass, inc->pass);
	inc->pass = pass;
	*final = fin;
	return 0;
}

int mig_in_digest(struct mig_incoming *inc, const uint8_t *p, uint32_t len)
{
	struct mig_cursor c;

	mig_cursor_init(&c, p, len);
	uint64_t pages = mig_cursor_u64(&c), want = mig_cursor_u64(&c);
	uint64_t state = mig_cursor_u64(&c);
	if (c.bad || c.off != len)
		return mig_in_fail(inc, -EPROTO, "malformed DIGEST section");
	if (pages != inc->digest.pages)
		return mig_in_fail(inc, -EPROTO, "DIGEST covers %llu pages, the VM has %llu",
				   (unsigned long long)pages, (unsigned long long)inc->digest.pages);
	uint64_t have = mig_digest_total(&inc->digest);
	if (have != want)
		return mig_in_fail(inc, -EIO, "verify: RAM digest mismatch (source %016llx, here %016llx)",
				   (unsigned long long)want, (unsigned long long)have);
	/* Post-copy loaded the state already: compared now; pre-copy once it is loaded. */
	inc->state_want = state;
	inc->state_want_set = true;
	return mig_in_state_check(inc);
}

/* The source asks whether we have caught up: answer once all before it is in. */
static int mig_in_sync(struct mig_incoming *inc, const uint8_t *p, uint32_t len)
{
	if (len != 4)
		return mig_in_fail(inc, -EPROTO, "malformed SYNC section");
	if (!mig_stream_has_return_path(&inc->s))
		return 0;	/* nobody waits for the answer */
	mig_section_write(&inc->s, MIG_SEC_SYNC_ACK, p, len);
	if (mig_stream_flush(&inc->s)) {
		inc->reply_broken = true;
		return mig_in_fail(inc, mig_stream_error(&inc->s), "cannot answer the source: %s", mig_stream_why(&inc->s));
	}
	return 0;
}

/* Handlers of the rule table (incoming_rules.c) for pre-copy sections. */
int mig_in_h_config(struct mig_in_ctx *c, const uint8_t *p, uint32_t len)
{
	return mig_in_config(c->inc, c->opts, c->m, p, len);
}

int mig_in_h_pass(struct mig_in_ctx *c, const uint8_t *p, uint32_t len)
{
	bool final = false;
	int err = mig_in_pass(c->inc, p, len, &final);

	c->ph = final ? MIG_IN_FINAL : MIG_IN_RAM;
	return err;
}

/* RAM and RAM_RUN in pre-copy: streamed straight into guest RAM by the RAM source. */
int mig_in_h_ram(struct mig_in_ctx *c, struct mig_section_reader *r)
{
	struct mig_payload in;

	mig_payload_streamed(&in, r);
	return mig_source_get(MIG_SOURCE_RAM)->load(c, r->type, &in);
}

/*
 * SOURCE: a live source other than RAM, by its id.  Read whole: such
 * sources are small, and a loader may then point into a checked payload.
 */
int mig_in_h_source(struct mig_in_ctx *c, const uint8_t *p, uint32_t len)
{
	struct mig_payload in;

	if (len < 4)
		return mig_in_fail(c->inc, -EPROTO, "SOURCE section of %u bytes has no source id", len);
	uint32_t id = (uint32_t)le_get(p, 4);
	const struct mig_source_ops *o = mig_source_get(id);
	/* RAM has sections of its own: its id here is as bad as an unknown one. */
	if (!o || id == MIG_SOURCE_RAM || !o->load)
		return mig_in_fail(c->inc, -EPROTO, "SOURCE section for unknown source %u", id);
	if (o->accepted && !o->accepted())
		return mig_in_fail(c->inc, -EPROTO, "SOURCE section for source %u (%s), which this "
				   "destination does not accept", id, o->name);
	mig_payload_whole(&in, p + 4, len - 4);
	return o->load(c, MIG_SEC_SOURCE, &in);
}

/* SOURCE after END, before GO: only from a source with a late op. */
int mig_in_h_source_late(struct mig_in_ctx *c, const uint8_t *p, uint32_t len)
{
	if (len < 4)
		return mig_in_fail(c->inc, -EPROTO, "SOURCE section of %u bytes has no source id", len);
	uint32_t id = (uint32_t)le_get(p, 4);
	const struct mig_source_ops *o = mig_source_get(id);
	if (!o || id == MIG_SOURCE_RAM || !o->load || !o->late)
		return mig_in_fail(c->inc, -EPROTO, "SOURCE section for source %u after END "
				   "(only a source that sends late may)", id);
	c->late = true;
	return mig_in_h_source(c, p, len);
}

int mig_in_h_sync(struct mig_in_ctx *c, const uint8_t *p, uint32_t len)
{
	return mig_in_sync(c->inc, p, len);
}

/* STATE, pre-copy or post-copy: decoded and checked now, loaded later. */
int mig_in_h_state(struct mig_in_ctx *c, const uint8_t *p, uint32_t len)
{
	struct vmstate_error verr;

	if (!mig_chans_in_done(c->inc))
		return mig_in_fail(c->inc, -EPROTO, "STATE before the final BARRIER: pages may "
				   "still be on their way on other channels");

	if (machine_state_decode(p, len, c->inc->cfg.vcpus, c->st, &verr))
		return mig_in_fail(c->inc, -EPROTO, "bad device state: %s", verr.msg);
	/* Devices the destination must have as the source did (disks, NICs). */
	if (machine_state_match(c->m, c->st, &verr))
		return mig_in_fail(c->inc, -EPROTO, "%s", verr.msg);
	return 0;
}

/* --channels: every page before it, on every connection, is applied. */
int mig_in_h_barrier(struct mig_in_ctx *c, const uint8_t *p, uint32_t len)
{
	uint32_t seq;
	bool final;

	if (mig_chan_barrier_parse(p, len, &seq, &final))
		return mig_in_fail(c->inc, -EPROTO, "malformed BARRIER section");
	return mig_chans_in_barrier(c->inc, seq, final);
}

int mig_in_h_digest(struct mig_in_ctx *c, const uint8_t *p, uint32_t len)
{
	return mig_in_digest(c->inc, p, len);
}

int mig_in_h_end(struct mig_in_ctx *c, const uint8_t *p, uint32_t len)
{
	if (len)
		return mig_in_fail(c->inc, -EPROTO, "END section carries %u bytes (must be empty)", len);
	int err = mig_sources_loaded(c);
	if (err)
		return err;
	c->done = true;
	return 0;
}

static void mig_in_close_listener(struct mig_incoming *inc)
{
	if (!inc->listener)
		return;
	mig_listener_close(inc->listener);
	free(inc->listener);
	inc->listener = NULL;
}

static int mig_in_connect(struct mig_incoming *inc, const struct mig_incoming_opts *opts)
{
	struct mig_listener l;
	struct mig_channel *ch;
	char why[256];
	int err = mig_channel_listen(opts->uri, opts->tls, &l, why, sizeof(why));

	if (err)
		return mig_in_fail(inc, err, "%s", why);
	if (mig_channel_uri_return_path(opts->uri))
		pr_info("waiting for a migration on %s", opts->uri);
	else
		pr_info("restoring the VM from %s", opts->uri);
	err = mig_channel_accept(&l, opts->accept_timeout_ms, opts->intr_fd, &ch);
	/* Kept open until CONFIG says whether more connections (--channels) come. */
	inc->listener = err ? NULL : malloc(sizeof(l));
	if (inc->listener)
		*inc->listener = l;
	else
		mig_listener_close(&l);
	if (err == -EINTR)
		return mig_in_fail(inc, err, "interrupted while waiting for a source");
	if (err)
		return mig_in_fail(inc, err, "no source connected to %s: %s", opts->uri, strerror(-err));
	if (mig_stream_init(&inc->s, ch, 1 << 20)) {
		mig_stream_destroy(&inc->s);	/* closes ch, frees what was allocated */
		return mig_in_fail(inc, -ENOMEM, "out of memory");
	}
	inc->s.timeout_ms = opts->io_timeout_ms;
	inc->s.intr_fd = opts->intr_fd;
	inc->connected = true;
	return 0;
}

int mig_incoming_receive(struct mig_incoming *inc, const struct mig_incoming_opts *opts,
			 struct machine *m)
{
	struct machine_state st = { 0 };
	struct mig_in_ctx c = { .inc = inc, .opts = opts, .m = m, .st = &st, .ph = MIG_IN_CONFIG };
	int err;

	memset(inc, 0, sizeof(*inc));
	inc->m = m;
	err = mig_in_connect(inc, opts);
	if (err)
		return err;
	inc->start_ns = vm_now_ns();
	inc->buf = malloc(MIG_SECTION_MAX);
	if (!inc->buf)
		return mig_in_fail(inc, -ENOMEM, "out of memory");
	err = mig_in_header(inc);
	while (!err && !c.done) {
		err = mig_in_dispatch(&c, inc->buf, MIG_SECTION_MAX);
		if (inc->listener && c.ph != MIG_IN_CONFIG)
			mig_in_close_listener(inc);	/* CONFIG handled: no connection comes now */
		/* The preempt connection's receiver may have failed first, and cut main to say so. */
		if (err && inc->guest_started)
			err = mig_preempt_in_reason(inc, err);
		/* A broken connection in post-copy is worth waiting out; a stop request is not. */
		if (err && inc->guest_started && err != -EPROTO && err != -EIO && err != -ERANGE &&
		    err != -EINTR) {
			int rerr = mig_in_pc_reconnect(inc, opts, m);
			err = !rerr || rerr == -EINTR ? rerr : err;
			c.ph = MIG_IN_PC_RUN;
		}
	}
	mig_in_close_listener(inc);
	/* A failure with receivers running: stop them before the memory they write goes. */
	if (err)
		err = mig_chans_in_reason(inc, err);
	mig_chans_in_stop(inc);
	mig_preempt_in_stop(inc);	/* before the pages it places can go */
	uint64_t t_end = vm_now_ns();
	if (!err && inc->guest_started)
		mig_in_pc_stats(inc);
	if (inc->guest_started)
		pc_dest_stop(&inc->pc);	/* every page is in, or all is lost anyway */
	if (!err && !inc->state_applied) {
		err = machine_state_apply(m, &st);
		/*
		 * KVM refusing state that decoded fine (reserved EFER bits, an MSR
		 * this host lacks, ...) is a stream this destination cannot take,
		 * not a usage error (-EINVAL would exit 64): the ioctl is logged.
		 */
		if (err && err != -ENOMEM)
			err = mig_in_fail(inc, -EPROTO, "the device state does not load here: %s",
					  strerror(-err));
		if (!err && (inc->cfg.flags & MIG_FLAG_VERIFY))
			err = mig_in_state_hash(inc, m, &st);
	}
	pr_debug("incoming: END checked at %.3f ms (monotonic); state applied in %.2f ms",
		 (double)t_end / 1e6, (double)(vm_now_ns() - t_end) / 1e6);
	if (!err)
		inc->end_ns = vm_now_ns();
	else if (inc->created && !inc->guest_started)
		machine_destroy(m);
	machine_state_free(&st);
	mig_sources_unload(inc);
	free(inc->buf);
	free(inc->written);
	free(inc->known);
	free(inc->page);
	inc->page = NULL;
	if (inc->codec_ready)
		mig_codec_ctx_fini(&inc->codec);
	inc->codec_ready = false;
	inc->buf = NULL;
	inc->written = inc->known = NULL;
	if (err && !inc->why[0])
		mig_in_fail(inc, err, "cannot load the device state: %s", strerror(-err));
	return err;
}

void mig_incoming_drop(struct mig_incoming *inc)
{
	mig_stream_destroy(&inc->s);
	mig_digest_free(&inc->digest);
	inc->connected = false;
}

int mig_incoming_result(struct mig_incoming *inc, int status, const char *msg)
{
	size_t n = msg ? strlen(msg) : 0;
	uint8_t payload[4 + 2 + 256];

	if (!inc->connected || !mig_stream_has_return_path(&inc->s))
		return -ENOTCONN;
	/*
	 * A failed read (bad section, peer gone) left the stream's sticky error
	 * set, which would swallow the answer; the return path may still work,
	 * so try it: the source then learns why instead of seeing the
	 * connection drop.  Only a failed write means it does not.
	 */
	if (!inc->reply_broken) {
		mig_stream_clear_error(&inc->s);
		inc->s.len = 0;
	}
	n = n > 256 ? 256 : n;
	le_put(payload, (uint32_t)status, 4);
	le_put(payload + 4, n, 2);
	if (n)
		memcpy(payload + 6, msg, n);
	mig_section_write(&inc->s, MIG_SEC_RESULT, payload, (uint32_t)(6 + n));
	return mig_stream_flush(&inc->s);
}

void mig_incoming_reply(struct mig_incoming *inc, int status, const char *msg)
{
	if (!inc->connected || !mig_stream_has_return_path(&inc->s)) {
		/* Nobody to tell (a file): just let go of it. */
		mig_stream_destroy(&inc->s);
		mig_digest_free(&inc->digest);
		inc->connected = false;
		return;
	}
	if (mig_incoming_result(inc, status, msg))
		pr_debug("incoming migration: cannot send RESULT: %s", inc->s.why);
	/*
	 * After refusing a stream, keep reading (and dropping) what the source
	 * still sends for a moment: closing with unread data would reset the
	 * connection and could destroy our RESULT before the source reads why.
	 */
	if (status)
		mig_stream_linger(&inc->s, 1000000000ULL);
	mig_stream_destroy(&inc->s);
	mig_digest_free(&inc->digest);
	inc->connected = false;
}
