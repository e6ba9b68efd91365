/*
 * libFuzzer target: arbitrary bytes into the real migration loader
 * (mig_incoming_receive), over a real unix socket, as a hostile source
 * would send them.  See tests/fuzz/README.md.
 *
 * Input: one mode byte, then the stream.  Mode bit 0 set: before sending,
 * walk the stream's sections (docs/migration-stream.md) and rewrite each
 * one's XXH3 checksum to match, so mutations get past the checksum and
 * reach the section decoders; clear: the bytes go out untouched.  Mode
 * bit 1 set: a u32 (little-endian) follows, the length of the first
 * connection's stream; the rest of the input is sent on a second
 * connection, as a source resuming a broken post-copy would (header,
 * RESUME, RAM, DIGEST, POSTCOPY_DONE).  Mode bit 2 set: the destination has
 * one 1 MiB disk to receive (--copy-storage), so block SOURCE sections
 * reach their loader; bit 3 set: it has one NIC (over a socket, no tap), so
 * forwarded frames (net SOURCE sections) reach the hold.  Bit 4 set: the
 * stream is what comes after GO alone (late SOURCE net sections, END) to
 * the destination's epilogue (mig_incoming_epilogue), as if a pre-copy
 * with the NIC had just committed: its phase is fuzzed without a vCPU,
 * where the sections before it need KVM to get past END.
 *
 * Each run: a feeder thread connects to the loader's socket, writes the
 * stream, half-closes, and drains the return path; the loader builds a
 * (small, never started) KVM VM if CONFIG passes, and everything is torn
 * down before the next run.  The loader is capped at 64 MiB and 2 vCPUs.
 *
 * Post-copy: the loader's start_guest hook is fz_start_guest(), which
 * starts nothing.  userfaultfd is armed all the same and every page after
 * POSTCOPY_RUN is placed through it (UFFDIO_COPY / CONTINUE / ZEROPAGE need
 * no fault), so RAM, DIGEST and POSTCOPY_DONE in post-copy, and the resume
 * handshake after a broken connection, run the production code; only the
 * vCPUs (which would fault on the pages) are missing.
 *
 * FUZZ_INCOMING_SEEDS=DIR: write the seed streams into DIR and exit (those
 * with a STATE section take it from a real KVM VM: only where /dev/kvm is;
 * the others anywhere).  FUZZ_INCOMING_VERBOSE=1: print each outcome.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "migration/block.h"
#include "migration/block_internal.h"
#include "migration/digest.h"
#include "migration/codec/codec.h"
#include "migration/commit.h"
#include "devices/net/backend.h"
#include "devices/virtio/net.h"
#include "migration/format.h"
#include "migration/dest/incoming.h"
#include "util/log.h"
#include "util/vmstate.h"
#include "board/machine.h"
#include "vmm/iobus.h"
#include "board/machine_state.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_MAX_MEMORY	(64ULL << 20)
#define FZ_MAX_VCPUS	2
#define FZ_FIX_SUMS	0x01
#define FZ_RESUME	0x02	/* a second connection resumes the first */
#define FZ_RESUME_MS	300	/* how long the loader waits for it */
#define FZ_DISK		0x04	/* the destination has one 1 MiB disk to receive (--copy-storage) */
#define FZ_NET		0x08	/* the destination has one NIC (an fd backend) */
#define FZ_COMMIT_MS	50	/* after END: how long the switchover waits for GO */
#define FZ_AFTER_GO	0x10	/* the stream is the epilogue's, after GO (with the NIC) */

static char fz_dir[64];
static struct block_config fz_disk;	/* FZ_DISK: a 1 MiB image in fz_dir */
static struct net_config fz_nic;	/* FZ_NET: one end of a socket pair */
static bool fz_verbose;		/* FUZZ_INCOMING_VERBOSE: print each outcome */
static char fz_sock[128];
static char fz_uri[160];

/* ---- a machine without KVM ------------------------------------------------ */

static bool fz_kvm;		/* /dev/kvm is usable: the loader makes real VMs */

int __real_machine_create(struct machine *m, const struct machine_config *cfg);

static void fz_no_irq(void *opaque, int level)
{
	(void)opaque;
	(void)level;
}
int __wrap_machine_create(struct machine *m, const struct machine_config *cfg);

/*
 * The loader's machine_create (linked with --wrap): with /dev/kvm the real
 * one; without, a machine with no KVM VM behind it (no vCPUs, no irqchip,
 * an empty CPUID table), but real guest RAM (a memfd) and the real devices
 * (COM1 with no backend, debug-exit, disks, NICs), which is all that the
 * sections before STATE touch.  So every section up to STATE, STATE's
 * decoding and device checks, and the sections after it up to the first
 * use of a vCPU (--verify's digest of the state read back, applying it
 * at END) are fuzzed anywhere; what needs the vCPUs fails there with its
 * reason.
 * machine_destroy() takes it apart like a real one (its fds are -1).
 */
int __wrap_machine_create(struct machine *m, const struct machine_config *cfg)
{
	struct vm *vm = &m->vm;
	pthread_condattr_t ca;
	int err;

	if (fz_kvm)
		return __real_machine_create(m, cfg);
	memset(m, 0, sizeof(*m));
	m->serial_chr.out_fd = m->serial_chr.in_fd = m->serial_chr.listen_fd = -1;
	vm->kvm_fd = vm->vm_fd = vm->stop_efd = -1;
	vm->mem.fd = -1;
	for (unsigned i = 0; i < VM_MAX_VCPUS; i++)
		vm->vcpus[i].fd = -1;
	pthread_mutex_init(&vm->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&vm->cond, &ca);
	pthread_condattr_destroy(&ca);
	iobus_init(&vm->pio, "port I/O");
	iobus_init(&vm->mmio, "MMIO");
	vm->state = VM_STATE_CREATED;
	if (cfg->vcpus < 1 || cfg->vcpus > VM_MAX_VCPUS)
		return -EINVAL;
	vm->nr_vcpus = cfg->vcpus;
	vm->cpuid = calloc(1, sizeof(*vm->cpuid));
	m->kernel = strdup("(incoming migration)");
	m->cmdline = strdup(cfg->cmdline ? cfg->cmdline : "");
	if (!vm->cpuid || !m->kernel || !m->cmdline)
		return -ENOMEM;
	serial_init(&m->com1, &m->serial_chr, fz_no_irq, NULL);
	m->devs[m->nr_devs++] = (struct machine_dev){ .id = DEVICE_SERIAL, .dev = &m->com1 };
	m->devs[m->nr_devs++] = (struct machine_dev){ .id = DEVICE_DEBUG_EXIT, .dev = &m->vm };
	err = guest_memory_create(&vm->mem, cfg->memory);
	if (!err)
		err = machine_virtio_add_disks(m, cfg);
	if (!err)
		err = machine_virtio_add_nics(m, cfg);
	return err;
}

/*
 * What needs the vCPUs (also wrapped): without KVM, refused with a reason
 * where the real ones would reach for a vCPU that is not there.
 */
int __real_machine_state_apply(struct machine *m, const struct machine_state *st);
int __wrap_machine_state_apply(struct machine *m, const struct machine_state *st);
int __real_machine_state_encode(struct machine *m, struct vmstate_buf *out);
int __wrap_machine_state_encode(struct machine *m, struct vmstate_buf *out);

int __wrap_machine_state_apply(struct machine *m, const struct machine_state *st)
{
	return fz_kvm ? __real_machine_state_apply(m, st) : -ENODEV;
}

int __wrap_machine_state_encode(struct machine *m, struct vmstate_buf *out)
{
	return fz_kvm ? __real_machine_state_encode(m, out) : -ENODEV;
}

/* ---- one run ----------------------------------------------------------- */

struct fz_feed {
	const uint8_t *data;
	size_t len;
	const uint8_t *resume;		/* FZ_RESUME: the second connection's bytes */
	size_t resume_len;
	volatile int loader_done;	/* mig_incoming_receive() returned: stop connecting */
};

/* Send one connection's bytes, half-close, drain the return path. */
static void fz_feed_one(const struct fz_feed *f, const uint8_t *data, size_t len)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = 5 };
	int fd = -1;

	strcpy(sa.sun_path, fz_sock);
	/* The loader binds when it starts; give it up to ~2 s. */
	for (int i = 0; i < 40000 && !__atomic_load_n(&f->loader_done, __ATOMIC_ACQUIRE); i++) {
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return;
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			break;
		close(fd);
		fd = -1;
		usleep(50);
	}
	if (fd < 0)
		return;
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	for (size_t off = 0; off < len;) {
		ssize_t n = send(fd, data + off, len - off, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;	/* the loader gave up: fine */
		off += (size_t)n;
	}
	shutdown(fd, SHUT_WR);
	/* Drain READY/RESULT so the loader never blocks on its answers. */
	for (;;) {
		char buf[512];
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		if (n <= 0 && !(n < 0 && errno == EINTR))
			break;
	}
	close(fd);
}

static void *fz_feeder(void *arg)
{
	struct fz_feed *f = arg;

	fz_feed_one(f, f->data, f->len);
	/*
	 * The loader listens again only if post-copy had started; otherwise it
	 * returns, and loader_done ends the attempts to connect.
	 */
	if (f->resume)
		fz_feed_one(f, f->resume, f->resume_len);
	return NULL;
}

/*
 * The loader's start_guest hook: start nothing.  Test-only stand-in for
 * ferry run's callback; the VM stays in VM_STATE_CREATED, no vCPU thread
 * touches guest memory, so no userfaultfd fault ever needs resolving.
 */
static int fz_start_guest(void *opaque)
{
	(void)opaque;
	return 0;
}

/* Rewrite every whole section's checksum, from off on, so it matches its bytes. */
static void fz_fix_sums_from(uint8_t *p, size_t len, size_t off)
{

	while (off + MIG_SECTION_HDR <= len) {
		uint32_t n = (uint32_t)(p[off + 4] | p[off + 5] << 8 | p[off + 6] << 16 |
					(uint32_t)p[off + 7] << 24);
		if (n > MIG_SECTION_MAX || len - off - MIG_SECTION_HDR < (size_t)n + 8)
			return;
		uint64_t sum = XXH3_64bits(p + off, MIG_SECTION_HDR + (size_t)n);
		for (int i = 0; i < 8; i++)
			p[off + MIG_SECTION_HDR + n + i] = (uint8_t)(sum >> (8 * i));
		off += MIG_SECTION_HDR + (size_t)n + 8;
	}
}

/* The same past a stream's header. */
static void fz_fix_sums(uint8_t *p, size_t len)
{
	fz_fix_sums_from(p, len, MIG_MAGIC_LEN + 4);
}

static void *fz_after_go_feeder(void *arg)
{
	struct fz_feed *f = arg;
	int fd = (int)f->resume_len;	/* this mode's: the socket pair's source end */

	for (size_t off = 0; off < f->len;) {
		ssize_t n = send(fd, f->data + off, f->len - off, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	shutdown(fd, SHUT_WR);
	for (;;) {	/* ANNOUNCED, if the NIC announced */
		char buf[256];
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		if (n <= 0 && !(n < 0 && errno == EINTR))
			break;
	}
	return NULL;
}

/*
 * FZ_AFTER_GO: a machine with the NIC (FZ_NET's), marked running (there
 * is no vCPU: the epilogue only asks whether the guest still runs), an
 * incoming whose GO was heard, on one end of a socket pair; the input
 * comes on the other.  The epilogue must end (the feeder half-closes)
 * having taken no more frames than the NIC holds, its reason logged.
 */
static void fz_after_go(const uint8_t *p, size_t len)
{
	struct machine_config cfg = { .memory = 16ULL << 20, .vcpus = 1, .incoming = true,
				      .serial = "file:/dev/null", .nics = &fz_nic, .nr_nics = 1 };
	struct mig_incoming *inc = calloc(1, sizeof(*inc));
	struct machine *m = calloc(1, sizeof(*m));
	struct mig_channel *ch;
	struct fz_feed feed = { .data = p, .len = len };
	pthread_t t;
	int sv[2];

	if (!inc || !m || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		abort();
	int err = __wrap_machine_create(m, &cfg);
	if (err) {
		if (fz_verbose)
			fprintf(stderr, "fuzz_incoming: after GO: no machine: %s\n", strerror(-err));
		machine_destroy(m);
		close(sv[0]);
		close(sv[1]);
		free(m);
		free(inc);
		return;
	}
	if (mig_channel_socket(sv[0], &ch) || mig_stream_init(&inc->s, ch, 1 << 20))
		abort();
	inc->m = m;
	inc->connected = inc->go_heard = true;
	pthread_mutex_lock(&m->vm.lock);
	m->vm.state = VM_STATE_RUNNING;
	pthread_mutex_unlock(&m->vm.lock);
	feed.resume_len = (size_t)sv[1];
	if (pthread_create(&t, NULL, fz_after_go_feeder, &feed))
		abort();
	uint64_t frames = mig_incoming_epilogue(inc, m, -1);
	struct virtio_net_stats st;
	virtio_net_read_stats(&m->nics[0], &st);
	if (frames > VIRTIO_NET_HOLD_MAX_FRAMES || st.held > frames)
		abort();	/* took more than it may, or held what it did not count */
	if (fz_verbose)
		fprintf(stderr, "fuzz_incoming: after GO: %llu frames held%s%s\n",
			(unsigned long long)frames, inc->why[0] ? "; " : "", inc->why);
	mig_incoming_drop(inc);
	pthread_join(t, NULL);
	close(sv[1]);
	pthread_mutex_lock(&m->vm.lock);
	m->vm.state = VM_STATE_CREATED;
	pthread_mutex_unlock(&m->vm.lock);
	machine_destroy(m);
	free(m);
	free(inc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mig_incoming_opts opts = {
		.uri = fz_uri, .serial = "file:/dev/null",
		.max_memory = FZ_MAX_MEMORY, .max_vcpus = FZ_MAX_VCPUS,
		.accept_timeout_ms = 3000, .io_timeout_ms = 2000, .intr_fd = -1,
		.start_guest = fz_start_guest, .resume_timeout_ms = FZ_RESUME_MS,
	};
	struct mig_incoming *inc;
	struct machine *m;
	struct fz_feed feed;

	if (size >= 1 && (data[0] & FZ_DISK)) {
		opts.disks = &fz_disk;
		opts.nr_disks = 1;
		opts.own_disks = true;
	}
	if (size >= 1 && (data[0] & FZ_NET)) {
		opts.nics = &fz_nic;
		opts.nr_nics = 1;
	}
	pthread_t t;
	uint8_t *stream;
	int err;

	if (size < 1)
		return 0;
	stream = malloc(size);
	if (stream && (data[0] & FZ_AFTER_GO)) {
		memcpy(stream, data + 1, size - 1);
		if (data[0] & FZ_FIX_SUMS)
			fz_fix_sums_from(stream, size - 1, 0);
		fz_after_go(stream, size - 1);
		free(stream);
		return 0;
	}
	inc = calloc(1, sizeof(*inc));
	m = calloc(1, sizeof(*m));
	if (!stream || !inc || !m)
		abort();
	memcpy(stream, data + 1, size - 1);
	uint8_t *one = stream, *two = NULL;
	size_t n1 = size - 1, n2 = 0;
	if ((data[0] & FZ_RESUME) && size >= 5) {
		size_t first = (size_t)(data[1] | data[2] << 8 | data[3] << 16 |
					(uint32_t)data[4] << 24);
		one = stream + 4;
		n1 = first < size - 5 ? first : size - 5;
		two = one + n1;
		n2 = size - 5 - n1;
	}
	if (data[0] & FZ_FIX_SUMS) {
		fz_fix_sums(one, n1);
		if (two)
			fz_fix_sums(two, n2);
	}
	feed = (struct fz_feed){ .data = one, .len = n1, .resume = two, .resume_len = n2 };
	unlink(fz_sock);
	if (pthread_create(&t, NULL, fz_feeder, &feed))
		abort();
	err = mig_incoming_receive(inc, &opts, m);
	bool ours = !err || inc->guest_started;
	/*
	 * A pre-copy that arrived whole: the switchover, as ferry run does it
	 * (LOADED, then GO, ABORT or late SOURCE sections), waiting at most
	 * FZ_COMMIT_MS for the source (a timerfd stands for SIGTERM).
	 */
	if (!err && !inc->guest_started) {
		struct itimerspec its = { .it_value = { .tv_nsec = FZ_COMMIT_MS * 1000000L } };
		int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
		struct mig_commit mc;
		if (tfd < 0 || timerfd_settime(tfd, 0, &its, NULL) || mig_commit_init(&mc))
			abort();
		err = mig_incoming_commit(inc, &mc, tfd);
		mig_commit_destroy(&mc);
		close(tfd);
	}
	__atomic_store_n(&feed.loader_done, 1, __ATOMIC_RELEASE);
	/*
	 * A complete, valid stream (committed or not), or one that failed once
	 * the (never started) post-copy guest "ran": the machine is ours to
	 * tear down.
	 */
	if (ours)
		machine_destroy(m);
	if (err && !inc->why[0])
		abort();		/* every failure must say why */
	if (fz_verbose)
		fprintf(stderr, "fuzz_incoming: %s\n", err ? inc->why : "accepted");
	mig_incoming_reply(inc, err, err ? inc->why : "ok");
	pthread_join(t, NULL);
	free(m);
	free(inc);
	free(stream);
	return 0;
}

/* ---- seeds ------------------------------------------------------------- */

#define FZ_MEM		(16ULL << 20)

struct fz_buf {
	uint8_t *p;
	size_t len, cap;
};

static void fz_put(struct fz_buf *b, const void *p, size_t n)
{
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2;
		b->p = realloc(b->p, b->cap);
		if (!b->p)
			abort();
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
}

/* RAM entries as the seeds write them: address | encoding (codec id). */
#define MIG_PAGE_ZERO MIG_CODEC_ZERO
#define MIG_PAGE_RAW MIG_CODEC_RAW

static void fz_le(struct fz_buf *b, uint64_t v, unsigned w)
{
	uint8_t x[8];

	for (unsigned i = 0; i < w; i++)
		x[i] = (uint8_t)(v >> (8 * i));
	fz_put(b, x, w);
}

static void fz_sec(struct fz_buf *b, uint8_t type, const void *payload, size_t n)
{
	uint8_t hdr[MIG_SECTION_HDR] = { type, 0, 0, 0 };

	for (int i = 0; i < 4; i++)
		hdr[4 + i] = (uint8_t)(n >> (8 * i));
	size_t at = b->len;
	fz_put(b, hdr, sizeof(hdr));
	if (n)
		fz_put(b, payload, n);
	fz_le(b, XXH3_64bits(b->p + at, sizeof(hdr) + n), 8);
}

/* CONFIG offering every codec and the capability bits in caps. */
static void fz_config_caps(struct fz_buf *b, uint64_t memory, uint32_t vcpus, uint32_t flags,
			   uint32_t caps)
{
	struct mig_config c = { .memory = memory, .vcpus = vcpus, .page_size = GUEST_PAGE_SIZE,
				.flags = flags, .codecs = MIG_CODECS_KNOWN | caps,
				.cmdline_len = 13 };
	struct vmstate_buf v;

	memcpy(c.cmdline, "console=ttyS0", 13);
	vmstate_buf_init(&v);
	if (vmstate_save(&mig_config_vmsd, &c, &v))
		abort();
	fz_sec(b, MIG_SEC_CONFIG, v.data, v.len);
	vmstate_buf_free(&v);
}

static void fz_config(struct fz_buf *b, uint64_t memory, uint32_t vcpus, uint32_t flags)
{
	fz_config_caps(b, memory, vcpus, flags, 0);
}

static void fz_pass(struct fz_buf *b, uint32_t pass, int final)
{
	struct fz_buf p = { 0 };

	fz_le(&p, pass, 4);
	fz_le(&p, 3, 8);
	fz_le(&p, (uint64_t)final, 1);
	fz_sec(b, MIG_SEC_PASS, p.p, p.len);
	free(p.p);
}

/* A RAM batch (address | encoding, length); raw pages get their data from img. */
static void fz_ram(struct fz_buf *b, const uint8_t *img, const uint64_t *e, uint32_t n)
{
	struct fz_buf p = { 0 };

	fz_le(&p, n, 4);
	for (uint32_t i = 0; i < n; i++) {
		fz_le(&p, e[i], 8);
		fz_le(&p, (e[i] & MIG_PAGE_ENC_MASK) == MIG_PAGE_RAW ? GUEST_PAGE_SIZE : 0, 4);
	}
	for (uint32_t i = 0; i < n; i++)
		if ((e[i] & MIG_PAGE_ENC_MASK) == MIG_PAGE_RAW)
			fz_put(&p, img + (e[i] & ~MIG_PAGE_ENC_MASK), GUEST_PAGE_SIZE);
	fz_sec(b, MIG_SEC_RAM, p.p, p.len);
	free(p.p);
}

/* The --verify digest of a STATE payload of `vcpus` vCPUs, as a source computes it. */
static uint64_t fz_state_digest(const struct vmstate_buf *st, unsigned vcpus)
{
	struct machine_state s;
	struct vmstate_error verr;
	uint64_t d = 0;

	if (machine_state_decode(st->data, st->len, vcpus, &s, &verr) || machine_state_digest(&s, &d))
		abort();
	machine_state_free(&s);
	return d;
}

/* The state of a never-run VM of `vcpus` vCPUs, as a STATE payload. */
static int fz_state(unsigned vcpus, struct vmstate_buf *out)
{
	struct machine *m = calloc(1, sizeof(*m));
	struct machine_config mc = { .memory = FZ_MEM, .vcpus = vcpus, .serial = "file:/dev/null" };
	int err;

	if (!m)
		return -ENOMEM;
	err = machine_create(m, &mc);
	if (!err) {
		m->vm.state = VM_STATE_PAUSED;	/* never ran: nothing to pause */
		err = machine_state_save(m, out);
		m->vm.state = VM_STATE_CREATED;
	}
	machine_destroy(m);
	free(m);
	return err;
}

/* A seed: the mode byte, then b; with `resume`, b's length and then resume. */
static void fz_write_seed3(const char *dir, const char *name, const struct fz_buf *b,
			   const struct fz_buf *resume, uint8_t mode)
{
	uint8_t len[4];
	char path[512];
	size_t total = 1 + b->len;
	FILE *f;
	bool ok;

	for (int i = 0; i < 4; i++)
		len[i] = (uint8_t)(b->len >> (8 * i));
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	ok = f && fputc(mode, f) != EOF;
	if (ok && resume)
		ok = fwrite(len, 1, 4, f) == 4;
	ok = ok && fwrite(b->p, 1, b->len, f) == b->len;
	if (ok && resume) {
		ok = fwrite(resume->p, 1, resume->len, f) == resume->len;
		total += 4 + resume->len;
	}
	if (f && fclose(f))
		ok = false;
	if (!ok) {
		fprintf(stderr, "cannot write %s: %s\n", path, strerror(errno));
		exit(1);
	}
	printf("%s: %zu bytes\n", path, total);
}

static void fz_write_seed2(const char *dir, const char *name, const struct fz_buf *b,
			   const struct fz_buf *resume)
{
	fz_write_seed3(dir, name, b, resume, FZ_FIX_SUMS | (resume ? FZ_RESUME : 0));
}

static void fz_write_seed(const char *dir, const char *name, const struct fz_buf *b)
{
	fz_write_seed2(dir, name, b, NULL);
}

static void fz_write_seed_mode(const char *dir, const char *name, const struct fz_buf *b,
			       uint8_t mode)
{
	fz_write_seed3(dir, name, b, NULL, mode);
}

static void fz_header(struct fz_buf *b)
{
	fz_put(b, MIG_MAGIC, MIG_MAGIC_LEN);
	fz_le(b, MIG_VERSION, 4);
}

/* A RAM_RUN of one page at gpa, its data from img. */
static void fz_ram_run1(struct fz_buf *b, const uint8_t *img, uint64_t gpa)
{
	struct fz_buf p = { 0 };

	fz_le(&p, gpa, 8);
	fz_le(&p, 1, 4);
	fz_put(&p, img + gpa, GUEST_PAGE_SIZE);
	fz_sec(b, MIG_SEC_RAM_RUN, p.p, p.len);
	free(p.p);
}

static void fz_postcopy_seeds(const char *dir, const uint8_t *src, const struct vmstate_buf *st)
{
	const uint64_t pages = FZ_MEM / GUEST_PAGE_SIZE;
	const uint64_t late1 = 0x1000, late2 = 0x5000;	/* sent after POSTCOPY_RUN */
	uint8_t *img = calloc(1, FZ_MEM);		/* all zero but those two */
	struct guest_memory mem = {
		.fd = -1, .host = img, .size = FZ_MEM, .nr_regions = 1,
		.regions = { { .gpa = 0, .size = FZ_MEM } },
	};
	uint64_t e[MIG_RAM_BATCH_MAX];
	struct fz_buf b = { 0 }, r = { 0 }, p = { 0 };

	if (!img)
		abort();
	memcpy(img + late1, src + late1, GUEST_PAGE_SIZE);
	memcpy(img + late2, src + late2, GUEST_PAGE_SIZE);

	fz_header(&b);
	fz_config(&b, FZ_MEM, 1, MIG_FLAG_VERIFY | MIG_FLAG_POSTCOPY);
	fz_pass(&b, 1, 0);
	for (uint64_t i = 0; i < pages;) {
		uint32_t n = 0;
		for (; i < pages && n < MIG_RAM_BATCH_MAX; i++)
			if (i * GUEST_PAGE_SIZE != late2)
				e[n++] = i * GUEST_PAGE_SIZE | MIG_PAGE_ZERO;
		fz_ram(&b, img, e, n);
	}
	fz_le(&p, 0, 8);		/* DISCARD: pages 0..63, late1 among them */
	fz_le(&p, 64, 4);
	fz_le(&p, 1ULL << (late1 / GUEST_PAGE_SIZE), 8);
	fz_sec(&b, MIG_SEC_DISCARD, p.p, p.len);
	fz_sec(&b, MIG_SEC_STATE, st->data, st->len);
	fz_sec(&b, MIG_SEC_POSTCOPY_RUN, NULL, 0);
	const uint64_t first[] = { late1 | MIG_PAGE_RAW };
	fz_ram(&b, img, first, 1);
	size_t cut = b.len;		/* the resume seed's first connection ends here */
	fz_ram_run1(&b, img, late2);
	struct fz_buf d = { 0 };
	fz_le(&d, pages, 8);
	fz_le(&d, mig_digest_of_memory(&mem), 8);
	fz_le(&d, fz_state_digest(st, 1), 8);
	fz_sec(&b, MIG_SEC_DIGEST, d.p, d.len);
	fz_sec(&b, MIG_SEC_POSTCOPY_DONE, NULL, 0);
	fz_write_seed(dir, "postcopy-verified", &b);

	fz_header(&r);
	fz_sec(&r, MIG_SEC_RESUME, NULL, 0);
	fz_put(&r, b.p + cut, b.len - cut);	/* RAM_RUN, DIGEST, POSTCOPY_DONE */
	b.len = cut;
	fz_write_seed2(dir, "postcopy-resumed", &b, &r);
	free(b.p);
	free(r.p);
	free(p.p);
	free(d.p);
	free(img);
}

/* One RAM entry with its encoded data, for the codec seed. */
struct fz_coded {
	uint64_t word;		/* address | codec id */
	const void *data;
	uint32_t len;
};

static void fz_ram_coded(struct fz_buf *b, const struct fz_coded *e, uint32_t n)
{
	struct fz_buf p = { 0 };

	fz_le(&p, n, 4);
	for (uint32_t i = 0; i < n; i++) {
		fz_le(&p, e[i].word, 8);
		fz_le(&p, e[i].len, 4);
	}
	for (uint32_t i = 0; i < n; i++)
		if (e[i].len)
			fz_put(&p, e[i].data, e[i].len);
	fz_sec(b, MIG_SEC_RAM, p.p, p.len);
	free(p.p);
}

/*
 * The codec seed, made by the real encoder and without KVM (no STATE):
 * CONFIG offering every codec, PASS 1 with a raw, an lz4, a zstd and a
 * zero page, PASS 2 final with a delta of the raw page and an lz4 page
 * again, then END too early.  Mutations from here reach every decoder.
 */
static void fz_codec_seed(const char *dir)
{
	static uint8_t pages[4][GUEST_PAGE_SIZE], enc[4][GUEST_PAGE_SIZE];
	static const enum mig_compress modes[4] = {
		MIG_COMPRESS_NONE, MIG_COMPRESS_LZ4, MIG_COMPRESS_ZSTD, MIG_COMPRESS_DELTA,
	};
	struct mig_codec_ctx c[4];
	struct fz_coded e[4];
	struct fz_buf b = { 0 };
	const uint8_t *held;

	for (unsigned k = 0; k < GUEST_PAGE_SIZE; k++) {
		pages[0][k] = (uint8_t)(k * 131 + (k >> 7));
		pages[1][k] = (uint8_t)"ferry moves pages "[k % 18];
		pages[2][k] = (uint8_t)(k % 61 < 8 ? k : 0);
	}
	for (unsigned i = 0; i < 4; i++)
		if (mig_codec_ctx_init(&c[i], true, modes[i], MIG_CODECS_KNOWN, 3, 1 << 20))
			abort();
	fz_header(&b);
	fz_config(&b, FZ_MEM, 1, 0);
	fz_pass(&b, 1, 0);
	for (unsigned i = 0; i < 4; i++) {
		int id = mig_codec_encode(&c[i == 0 ? 3 : i], 1 + i, pages[i], false, enc[i],
					  &e[i].len, &held);
		if (id < 0)
			abort();
		e[i].word = (uint64_t)(1 + i) * GUEST_PAGE_SIZE | (uint64_t)id;
		e[i].data = enc[i];
	}
	fz_ram_coded(&b, e, 4);
	fz_pass(&b, 2, 1);
	pages[0][100] ^= 0xff;
	pages[0][2000] ^= 0x0f;
	int id = mig_codec_encode(&c[3], 1, pages[0], false, enc[0], &e[0].len, &held);
	if (id != MIG_CODEC_DELTA)
		abort();
	e[0].word = GUEST_PAGE_SIZE | MIG_CODEC_DELTA;
	e[0].data = enc[0];
	fz_ram_coded(&b, e, 2);
	fz_sec(&b, MIG_SEC_END, NULL, 0);
	fz_write_seed(dir, "codecs", &b);
	for (unsigned i = 0; i < 4; i++)
		mig_codec_ctx_fini(&c[i]);
	free(b.p);
}

/* A SOURCE section of the block source: kind, disk 0, then the record. */
static void fz_block(struct fz_buf *b, uint8_t kind, const void *rec, size_t n)
{
	struct fz_buf p = { 0 };

	fz_le(&p, MIG_SOURCE_BLOCK, 4);
	fz_put(&p, (const uint8_t[]){ kind, 0 }, 2);
	if (n)
		fz_put(&p, rec, n);
	fz_sec(b, MIG_SEC_SOURCE, p.p, p.len);
	free(p.p);
}

/*
 * The adaptive seed: pages of each character the adaptive mode tells apart
 * (a fill, a table of few words, text, near-random bytes, a sparse page),
 * encoded by MIG_COMPRESS_ADAPTIVE as a source would; PASS 2 sends them
 * again slightly changed (delta from the cache, where it pays).
 */
static void fz_adaptive_seed(const char *dir)
{
	static uint8_t pages[5][GUEST_PAGE_SIZE], enc[5][GUEST_PAGE_SIZE];
	struct mig_codec_ctx c;
	struct fz_coded e[5];
	struct fz_buf b = { 0 };
	const uint8_t *held;
	uint64_t x = 0x243f6a8885a308d3ULL;

	for (unsigned k = 0; k < GUEST_PAGE_SIZE; k++) {
		pages[0][k] = 0xa5;
		pages[1][k] = (uint8_t)((k / 8) % 3 * 0x41);
		pages[2][k] = (uint8_t)"the quick brown fox jumps over a lazy dog, "[k % 43];
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		pages[3][k] = (uint8_t)x;
		pages[4][k] = k % 512 == 0 ? (uint8_t)(k >> 9) + 1 : 0;
	}
	if (mig_codec_ctx_init(&c, true, MIG_COMPRESS_ADAPTIVE, MIG_CODECS_KNOWN, 3, 1 << 20))
		abort();
	fz_header(&b);
	fz_config(&b, FZ_MEM, 1, 0);
	for (uint32_t pass = 1; pass <= 2; pass++) {
		fz_pass(&b, pass, pass == 2);
		for (unsigned i = 0; i < 5; i++) {
			if (pass == 2)
				pages[i][64 * i + 7] ^= 0x5a;
			int id = mig_codec_encode(&c, 16 + i, pages[i], false, enc[i], &e[i].len, &held);
			if (id < 0)
				abort();
			e[i].word = (uint64_t)(16 + i) * GUEST_PAGE_SIZE | (uint64_t)id;
			e[i].data = enc[i];
		}
		fz_ram_coded(&b, e, 5);
	}
	fz_sec(&b, MIG_SEC_END, NULL, 0);
	fz_write_seed(dir, "adaptive", &b);
	mig_codec_ctx_fini(&c);
	free(b.p);
}

/*
 * Forwarded frames (FZ_NET: one NIC): frames that reached the source's tap
 * during the switchover, held here for the guest (a broadcast ARP, an
 * IPv4 frame), one for a NIC this destination lacks; then END too early.
 */
static void fz_net_seed(const char *dir)
{
	struct fz_buf b = { 0 }, p = { 0 };
	uint8_t frame[98];

	memset(frame, 0xff, 6);
	memcpy(frame + 6, (const uint8_t[]){ 0x52, 0x54, 0, 0xab, 0xcd, 0xef }, 6);
	for (unsigned k = 12; k < sizeof(frame); k++)
		frame[k] = (uint8_t)k;
	frame[12] = 0x08, frame[13] = 0x06;
	fz_header(&b);
	fz_config(&b, FZ_MEM, 1, 0);
	fz_pass(&b, 1, 1);
	for (unsigned nic = 0; nic < 2; nic++)
		for (unsigned len = 42; len <= 98; len += 56) {
			p.len = 0;
			fz_le(&p, MIG_SOURCE_NET, 4);
			fz_le(&p, nic, 4);
			fz_le(&p, len, 4);
			frame[13] = len == 42 ? 0x06 : 0x00;	/* ARP, IPv4 */
			fz_put(&p, frame, len);
			fz_sec(&b, MIG_SEC_SOURCE, p.p, p.len);
		}
	fz_sec(&b, MIG_SEC_END, NULL, 0);
	fz_write_seed_mode(dir, "net-frames", &b, FZ_FIX_SUMS | FZ_NET);

	/*
	 * After GO (FZ_AFTER_GO): two frames the source's tap got after GO,
	 * then END; and a frame for a NIC this destination lacks, one cut
	 * short, a section not allowed then.  No header: the epilogue reads
	 * sections straight on.
	 */
	p.len = 0;
	fz_le(&p, MIG_SOURCE_NET, 4);
	fz_le(&p, 0, 4);
	fz_le(&p, 98, 4);
	fz_put(&p, frame, 98);
	b.len = 0;
	fz_sec(&b, MIG_SEC_SOURCE, p.p, p.len);
	fz_sec(&b, MIG_SEC_SOURCE, p.p, p.len);
	fz_sec(&b, MIG_SEC_END, NULL, 0);
	fz_write_seed_mode(dir, "after-go", &b, FZ_FIX_SUMS | FZ_AFTER_GO);
	b.len = 0;
	p.p[4] = 3;			/* NIC 3 */
	fz_sec(&b, MIG_SEC_SOURCE, p.p, p.len);
	p.p[4] = 0;
	fz_sec(&b, MIG_SEC_SOURCE, p.p, p.len - 10);
	fz_sec(&b, MIG_SEC_PASS, NULL, 0);
	fz_write_seed_mode(dir, "after-go-bad", &b, FZ_FIX_SUMS | FZ_AFTER_GO);
	free(p.p);
	free(b.p);
}

/* The seeds that need no KVM: no STATE section in them. */
static void fz_seeds_no_kvm(const char *dir, const uint8_t *img)
{
	struct fz_buf b = { 0 }, bp = { 0 };

	fz_codec_seed(dir);
	fz_adaptive_seed(dir);
	fz_net_seed(dir);

	/* The framing without RAM or STATE. */
	fz_header(&b);
	fz_config(&b, 32ULL << 20, 1, 0);
	fz_pass(&b, 1, 0);
	fz_pass(&b, 2, 1);
	fz_sec(&b, MIG_SEC_END, NULL, 0);
	fz_write_seed(dir, "passes-only", &b);

	/* A SOURCE section (refused here: the harness has no --test-hooks). */
	b.len = 0;
	fz_header(&b);
	fz_config(&b, FZ_MEM, 1, 0);
	fz_pass(&b, 1, 1);
	fz_le(&bp, MIG_SOURCE_SCRATCH, 4);
	fz_le(&bp, 0, 4);
	fz_put(&bp, img + 0x1000, 4096);
	fz_sec(&b, MIG_SEC_SOURCE, bp.p, bp.len);
	fz_write_seed(dir, "source-section", &b);

	/* Block sections for a 1 MiB disk (FZ_DISK): HELLO, DATA, ZERO, DONE. */
	b.len = 0;
	fz_header(&b);
	fz_config(&b, FZ_MEM, 1, 0);
	bp.len = 0;
	fz_le(&bp, 1 << 20, 8);
	fz_block(&b, MIG_BLOCK_HELLO, bp.p, bp.len);
	fz_pass(&b, 1, 1);
	bp.len = 0;
	fz_le(&bp, 8192, 8);
	fz_put(&bp, img + 0x1000, 4096);
	fz_block(&b, MIG_BLOCK_DATA, bp.p, bp.len);
	bp.len = 0;
	fz_le(&bp, 65536, 8);
	fz_le(&bp, 65536, 8);
	fz_block(&b, MIG_BLOCK_ZERO, bp.p, bp.len);
	bp.len = 0;
	fz_le(&bp, 0, 8);
	fz_put(&bp, (const uint8_t[]){ 0 }, 1);
	fz_block(&b, MIG_BLOCK_DONE, bp.p, bp.len);
	fz_write_seed_mode(dir, "block-sections", &b, FZ_FIX_SUMS | FZ_DISK);

	/*
	 * copy-storage=incremental, verified (FZ_DISK): HELLO, SUMS_REQ (the
	 * loader answers BLOCK_SUMS on the return path), DATA of 4 KiB, DONE
	 * with the digest of the disk that results (the image is all zero
	 * but those bytes), so that a run reaches the digest check and passes
	 * it.
	 */
	static uint8_t chunk[4096];
	uint8_t *disk = calloc(1, 1 << 20);
	uint64_t digest = 0;
	if (!disk)
		abort();
	for (unsigned k = 0; k < sizeof(chunk); k++)
		chunk[k] = (uint8_t)(k * 7 + (k >> 12));
	memcpy(disk + 3 * MIG_BLOCK_CHUNK, chunk, sizeof(chunk));
	char tmp[] = "/tmp/ferry-fuzz-disk-XXXXXX";
	int fd = mkstemp(tmp);
	uint8_t *cb = malloc(MIG_BLOCK_CHUNK);
	if (fd < 0 || !cb || pwrite(fd, disk, 1 << 20, 0) != 1 << 20 ||
	    mig_block_digest(fd, 1 << 20, cb, &digest))
		abort();
	close(fd);
	unlink(tmp);
	free(cb);
	free(disk);
	b.len = 0;
	fz_header(&b);
	fz_config(&b, FZ_MEM, 1, MIG_FLAG_VERIFY);
	bp.len = 0;
	fz_le(&bp, 1 << 20, 8);
	fz_block(&b, MIG_BLOCK_HELLO, bp.p, bp.len);
	fz_block(&b, MIG_BLOCK_SUMS_REQ, NULL, 0);
	fz_pass(&b, 1, 1);
	bp.len = 0;
	fz_le(&bp, 3 * MIG_BLOCK_CHUNK, 8);
	fz_put(&bp, chunk, sizeof(chunk));
	fz_block(&b, MIG_BLOCK_DATA, bp.p, bp.len);
	bp.len = 0;
	fz_le(&bp, digest, 8);
	fz_put(&bp, (const uint8_t[]){ 1 }, 1);
	fz_block(&b, MIG_BLOCK_DONE, bp.p, bp.len);
	fz_sec(&b, MIG_SEC_END, NULL, 0);
	fz_write_seed_mode(dir, "block-incremental", &b, FZ_FIX_SUMS | FZ_DISK);

	/*
	 * Block data through a codec (FZ_DISK): CONFIG offers MIG_CAP_BLOCK_Z,
	 * HELLO, then DATA_Z of a 64 KiB chunk of text in lz4 and of 4 KiB in
	 * zstd, DATA, DONE.
	 */
	b.len = 0;
	fz_header(&b);
	fz_config_caps(&b, FZ_MEM, 1, 0, MIG_CAP_BLOCK_Z);
	bp.len = 0;
	fz_le(&bp, 1 << 20, 8);
	fz_block(&b, MIG_BLOCK_HELLO, bp.p, bp.len);
	fz_pass(&b, 1, 1);
	uint8_t *text = malloc(MIG_BLOCK_CHUNK);
	if (!text)
		abort();
	for (unsigned k = 0; k < MIG_BLOCK_CHUNK; k++)
		text[k] = "the disk block of the guest\n"[(k * 7 + k / 97) % 28];
	for (uint8_t codec = MIG_CODEC_LZ4; codec <= MIG_CODEC_ZSTD; codec++) {
		struct mig_block_z z = { 0 };
		uint32_t len = codec == MIG_CODEC_LZ4 ? MIG_BLOCK_CHUNK : 4096;
		int n;
		if (mig_block_z_init(&z, codec, 1) ||
		    (n = mig_block_z_encode(&z, 2 * MIG_BLOCK_CHUNK + (codec - 2) * 8192, text,
					    len)) < 0)
			abort();
		fz_block(&b, MIG_BLOCK_DATA_Z, z.buf, (size_t)n);
		mig_block_z_fini(&z);
	}
	free(text);
	bp.len = 0;
	fz_le(&bp, 0, 8);
	fz_put(&bp, img + 0x1000, 512);
	fz_block(&b, MIG_BLOCK_DATA, bp.p, bp.len);
	bp.len = 0;
	fz_le(&bp, 0, 8);
	fz_put(&bp, (const uint8_t[]){ 0 }, 1);
	fz_block(&b, MIG_BLOCK_DONE, bp.p, bp.len);
	fz_sec(&b, MIG_SEC_END, NULL, 0);
	fz_write_seed_mode(dir, "block-data-z", &b, FZ_FIX_SUMS | FZ_DISK);

	/* Just a header and CONFIG. */
	b.len = 0;
	fz_header(&b);
	fz_config(&b, FZ_MEM, 1, MIG_FLAG_VERIFY);
	fz_write_seed(dir, "config-only", &b);
	free(bp.p);
	free(b.p);
}

static void fz_seeds(const char *dir)
{
	struct vmstate_buf st1, st2;
	uint8_t *img = calloc(1, FZ_MEM);
	struct guest_memory mem = {
		.fd = -1, .host = img, .size = FZ_MEM, .nr_regions = 1,
		.regions = { { .gpa = 0, .size = FZ_MEM } },
	};
	struct fz_buf b = { 0 };

	if (!img)
		abort();
	mkdir(dir, 0755);
	/* Page contents: a few recognisable bytes, the rest zero. */
	memset(img + 0x1000, 1, 64);
	memset(img + 0x3000, 3, 64);
	memset(img + 0x5000, 5, 64);
	fz_seeds_no_kvm(dir, img);
	vmstate_buf_init(&st1);
	vmstate_buf_init(&st2);
	if (!fz_kvm || fz_state(1, &st1) || fz_state(2, &st2)) {
		fprintf(stderr, "no /dev/kvm: the seeds with a STATE section (verified-2-passes, "
			"2-vcpus-zero-pages, postcopy-*) were not written\n");
		exit(0);
	}
	const uint64_t live[] = { 0x1000 | MIG_PAGE_RAW, 0x2000 | MIG_PAGE_RAW,
				  0x3000 | MIG_PAGE_RAW, 0x8000 | MIG_PAGE_ZERO,
				  (FZ_MEM - 0x1000) | MIG_PAGE_ZERO };
	const uint64_t final[] = { 0x5000 | MIG_PAGE_RAW, 0x2000 | MIG_PAGE_ZERO };

	/* A whole verified migration, two passes. */
	uint64_t digest = mig_digest_of_memory(&mem);
	memset(img + 0x2000, 2, 64);	/* sent live, zeroed in the final pass */
	fz_header(&b);
	fz_config(&b, FZ_MEM, 1, MIG_FLAG_VERIFY);
	fz_pass(&b, 1, 0);
	fz_ram(&b, img, live, 5);
	fz_pass(&b, 2, 1);
	fz_ram(&b, img, final, 2);
	struct fz_buf r = { 0 };	/* the last raw page again, as a run */
	fz_le(&r, 0x5000, 8);
	fz_le(&r, 1, 4);
	fz_put(&r, img + 0x5000, GUEST_PAGE_SIZE);
	fz_sec(&b, MIG_SEC_RAM_RUN, r.p, r.len);
	free(r.p);
	fz_sec(&b, MIG_SEC_STATE, st1.data, st1.len);
	struct fz_buf d = { 0 };
	fz_le(&d, FZ_MEM / GUEST_PAGE_SIZE, 8);
	fz_le(&d, digest, 8);
	fz_le(&d, fz_state_digest(&st1, 1), 8);
	fz_sec(&b, MIG_SEC_DIGEST, d.p, d.len);
	free(d.p);
	fz_sec(&b, MIG_SEC_END, NULL, 0);
	fz_write_seed(dir, "verified-2-passes", &b);

	/* No verify, 2 vCPUs, one final pass of zero pages. */
	b.len = 0;
	const uint64_t zeros[] = { 0x0 | MIG_PAGE_ZERO, 0x1000 | MIG_PAGE_ZERO };
	fz_header(&b);
	fz_config(&b, FZ_MEM, 2, 0);
	fz_pass(&b, 1, 1);
	fz_ram(&b, img, zeros, 2);
	fz_sec(&b, MIG_SEC_STATE, st2.data, st2.len);
	fz_sec(&b, MIG_SEC_END, NULL, 0);
	fz_write_seed(dir, "2-vcpus-zero-pages", &b);

	/*
	 * The switchover with a NIC (FZ_NET): a whole pre-copy, then after END
	 * (the loader sent LOADED) a frame the source's tap got meanwhile
	 * (the net source's late op), then GO: the guest may start here.
	 */
	b.len = 0;
	fz_header(&b);
	fz_config(&b, FZ_MEM, 1, 0);
	fz_pass(&b, 1, 1);
	fz_ram(&b, img, zeros, 2);
	fz_sec(&b, MIG_SEC_STATE, st1.data, st1.len);
	fz_sec(&b, MIG_SEC_END, NULL, 0);
	struct fz_buf np = { 0 };
	uint8_t frame[60] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0, 1, 2, 3, 0x08, 0x06 };
	fz_le(&np, MIG_SOURCE_NET, 4);
	fz_le(&np, 0, 4);
	fz_le(&np, sizeof(frame), 4);
	fz_put(&np, frame, sizeof(frame));
	fz_sec(&b, MIG_SEC_SOURCE, np.p, np.len);
	free(np.p);
	fz_sec(&b, MIG_SEC_GO, NULL, 0);
	fz_write_seed_mode(dir, "net-late-go", &b, FZ_FIX_SUMS | FZ_NET);

	/*
	 * A verified post-copy: pass 1 sends every page as zero but two,
	 * DISCARD forgets one it sent, STATE, POSTCOPY_RUN; then the two
	 * pages (a RAM batch and a RAM_RUN), DIGEST, POSTCOPY_DONE.  And the
	 * same, cut after the first page; the second connection resumes it
	 * (header, RESUME) and sends the rest.
	 */
	fz_postcopy_seeds(dir, img, &st1);

	free(b.p);
	free(img);
	vmstate_buf_free(&st1);
	vmstate_buf_free(&st2);
	exit(0);
}

/* ---- setup ------------------------------------------------------------- */

static void fz_cleanup(void)
{
	unlink(fz_sock);
	unlink(fz_disk.path);
	rmdir(fz_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *seeds = getenv("FUZZ_INCOMING_SEEDS");

	(void)argc;
	(void)argv;
	log_set_level(LOG_ERROR);
	fz_verbose = getenv("FUZZ_INCOMING_VERBOSE") != NULL;
	signal(SIGPIPE, SIG_IGN);
	fz_kvm = access("/dev/kvm", R_OK | W_OK) == 0;
	if (seeds && *seeds)
		fz_seeds(seeds);
	if (!fz_kvm)
		fprintf(stderr, "fuzz_incoming: no /dev/kvm: machines without a VM; STATE and what "
			"follows it are not reached\n");
	strcpy(fz_dir, "/tmp/ferry-fuzz-XXXXXX");
	if (!mkdtemp(fz_dir)) {
		perror("mkdtemp");
		exit(1);
	}
	snprintf(fz_sock, sizeof(fz_sock), "%s/in.sock", fz_dir);
	snprintf(fz_uri, sizeof(fz_uri), "unix:%s", fz_sock);
	/* Block sections reach their loader: every run accepts them (FZ_DISK gives a disk). */
	fz_disk.kind = BLOCK_KIND_FILE;
	snprintf(fz_disk.path, sizeof(fz_disk.path), "%s/disk.img", fz_dir);
	int fd = open(fz_disk.path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0 || ftruncate(fd, 1 << 20)) {
		perror(fz_disk.path);
		exit(1);
	}
	close(fd);
	/* The NIC's backend: frames it would send the world land in sv[1], unread. */
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv)) {
		perror("socketpair");
		exit(1);
	}
	fz_nic = (struct net_config){ .kind = NET_BACKEND_FD, .fd = sv[0], .mac_set = true,
				      .mac = { 0x52, 0x54, 0, 0x12, 0x34, 0x56 } };
	mig_block_expect();
	atexit(fz_cleanup);
	return 0;
}
