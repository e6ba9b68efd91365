/*
 * libFuzzer target: hostile epochs into a replication's standby
 * (mig_incoming_receive with --standby, then mig_standby_run), over a real
 * unix socket, as a broken or hostile primary would send them.  See
 * tests/fuzz/README.md.
 *
 * Input: one mode byte, then the stream.  Mode bits:
 *   0  rewrite every whole section's XXH3 checksum to match;
 *   1  rewrite every EPOCH_END's section chain to match what came before
 *      it (docs/replication.md, "Commit"), so mutated epochs reach the
 *      page, disk record and STATE checks instead of all failing the chain;
 *   2  the harness's own initial copy goes first (header, CONFIG with the
 *      replicate flag, a final pass with a few pages, the disk's block
 *      sections with bit 3, STATE, END) and the input is what follows END:
 *      epochs, heartbeats, ABORT; clear: the input is the whole stream;
 *   3  the standby has one disk (1 MiB and 1 KiB) of its own (--copy-storage), so
 *      EPOCH_DISK records reach it;
 *   4-5 what the standby decides once the link is lost (the feeder always
 *      ends its side): 0 'ferry failover' (manual), 1 'quit' (manual),
 *      2 auto failover after the timeout (a clock of the harness's, moved
 *      on instead of waited for), 3 'ferry failover' with the feeder
 *      closing the socket once EPOCH_ACK 0 came, so that the standby's
 *      next acknowledgement or heartbeat fails (a cut connection);
 *   6  with bit 2: the harness's CONFIG offers epoch disk ranges
 *      (MIG_CAP_EPOCH_RANGES, as a primary does), so the standby agrees
 *      and takes 4 KiB ranges; clear, it takes whole chunks only (without
 *      bit 2 the input's own CONFIG decides);
 *   7  unused.
 *
 * The standby's machine is the harness's own, with no KVM VM behind it
 * (linked with -Wl,--wrap=machine_create, as fuzz_incoming without
 * /dev/kvm): real guest RAM, real devices, no vCPU.  Applying a state (END
 * of the initial copy, the checkpoint at a failover) checks that it fits
 * the machine and loads nothing.
 *
 * Checked besides the sanitizers, against a model the harness keeps from
 * the stream itself (the standby stops reading at its first bad section,
 * so the n-th epoch it commits is the n-th EPOCH..EPOCH_END in the
 * stream): after every EPOCH_END (mig_epoch_end, wrapped) and when the
 * standby returns, its guest RAM and disk image are the initial copy's
 * with the committed epochs applied in order, nothing of a rejected,
 * incomplete or dropped one; a commit is always epoch committed + 1, with
 * as many pages and disk records as the model read; a rejection changes
 * nothing; no write of a commit fails (torn); every disk record of a
 * committed epoch is one the standby may take (aligned to 4 KiB with
 * ranges agreed, to its chunk without, inside one chunk and the disk,
 * overlapping no other record of the epoch); a failover loads the STATE
 * of the last committed epoch (none: the initial one, already loaded);
 * the EPOCH_ACKs on the return path go 0, 1, 2, ... and never name an
 * epoch not committed; every failure says why.
 *
 * FUZZ_STANDBY_SEEDS=DIR writes the seeds into DIR and exits (no KVM
 * needed).  FUZZ_STANDBY_VERBOSE=1 prints each outcome.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "arch/x86/vcpu_state.h"
#include "arch/x86/vm_state.h"
#include "board/machine.h"
#include "board/machine_state.h"
#include "devices/device.h"
#include "migration/block.h"
#include "migration/block_internal.h"
#include "migration/commit.h"
#include "migration/dest/incoming.h"
#include "migration/format.h"
#include "migration/replicate/epoch.h"
#include "migration/section.h"
#include "util/log.h"
#include "util/vmstate.h"
#include "vmm/iobus.h"
#include "vmm/vm.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_FIX_SUMS	0x01
#define FZ_FIX_CHAIN	0x02
#define FZ_PREFIX	0x04	/* the harness's initial copy first; the input follows END */
#define FZ_DISK		0x08	/* one disk of the standby's own (FZ_DISK_SIZE) */
#define FZ_RANGES	0x40	/* the prefix's CONFIG offers epoch disk ranges */
#define FZ_DECIDE(m)	(((m) >> 4) & 3)
#define FZ_DECIDE_FAILOVER 0
#define FZ_DECIDE_QUIT	1
#define FZ_DECIDE_AUTO	2
#define FZ_DECIDE_CUT	3

#define FZ_MEM		(16ULL << 20)	/* the seeds' and the prefix's guest: the smallest */
#define FZ_MAX_MEMORY	(32ULL << 20)	/* what the standby accepts */
#define FZ_DISK_SIZE	((1u << 20) + 1024)	/* its last chunk is 1 KiB */
#define FZ_FAILOVER_NS	(5ULL * 1000000000ULL)	/* long: only the harness's clock reaches it */
#define FZ_CODECS	((1u << MIG_CODEC_ZERO) | (1u << MIG_CODEC_RAW))

static char fz_dir[64];
static char fz_sock[128];
static char fz_uri[160];
static struct block_config fz_disk;
static bool fz_verbose;

/* ---- a growing buffer, and the stream's pieces ------------------------- */

struct fz_buf {
	uint8_t *p;
	size_t len, cap;
	uint64_t chain;		/* the section chain over what fz_sec appended */
};

static void fz_put(struct fz_buf *b, const void *p, size_t n)
{
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2;
		b->p = realloc(b->p, b->cap);
		if (!b->p)
			abort();
	}
	if (n)
		memcpy(b->p + b->len, p, n);
	b->len += n;
}

static void fz_le(struct fz_buf *b, uint64_t v, unsigned w)
{
	uint8_t x[8];

	for (unsigned i = 0; i < w; i++)
		x[i] = (uint8_t)(v >> (8 * i));
	fz_put(b, x, w);
}

static uint64_t fz_get(const uint8_t *p, unsigned w)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < w; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static void fz_sec(struct fz_buf *b, uint8_t type, const void *payload, size_t n)
{
	uint8_t hdr[MIG_SECTION_HDR] = { type, 0, 0, 0 };

	for (int i = 0; i < 4; i++)
		hdr[4 + i] = (uint8_t)(n >> (8 * i));
	size_t at = b->len;
	fz_put(b, hdr, sizeof(hdr));
	fz_put(b, payload, n);
	uint64_t sum = XXH3_64bits(b->p + at, sizeof(hdr) + n);
	fz_le(b, sum, 8);
	b->chain = mig_section_chain(b->chain, sum);
}

static void fz_header(struct fz_buf *b)
{
	fz_put(b, MIG_MAGIC, MIG_MAGIC_LEN);
	fz_le(b, MIG_VERSION, 4);
}

static void fz_config(struct fz_buf *b, uint64_t memory, bool ranges)
{
	struct mig_config c = { .memory = memory, .vcpus = 1, .page_size = GUEST_PAGE_SIZE,
				.flags = MIG_FLAG_REPLICATE,
				.codecs = FZ_CODECS | (ranges ? MIG_CAP_EPOCH_RANGES : 0),
				.cmdline_len = 13 };
	struct vmstate_buf v;

	memcpy(c.cmdline, "console=ttyS0", 13);
	vmstate_buf_init(&v);
	if (vmstate_save(&mig_config_vmsd, &c, &v))
		abort();
	fz_sec(b, MIG_SEC_CONFIG, v.data, v.len);
	vmstate_buf_free(&v);
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

/* A block source section (disk 0): kind, then the record. */
static void fz_block(struct fz_buf *b, uint8_t kind, const void *rec, size_t n)
{
	struct fz_buf p = { 0 };

	fz_le(&p, MIG_SOURCE_BLOCK, 4);
	fz_put(&p, (const uint8_t[]){ kind, 0 }, 2);
	fz_put(&p, rec, n);
	fz_sec(b, MIG_SEC_SOURCE, p.p, p.len);
	free(p.p);
}

/* A page's contents in the seeds: recognisable per address and epoch. */
static void fz_page(uint8_t *page, uint64_t gpa, unsigned epoch)
{
	for (unsigned k = 0; k < GUEST_PAGE_SIZE; k++)
		page[k] = (uint8_t)(gpa >> 12) ^ (uint8_t)(k * 7 + epoch * 31);
}

/* A RAM batch: raw pages (filled by fz_page) and zero pages (zero[i]). */
static void fz_ram(struct fz_buf *b, const uint64_t *gpa, const bool *zero, uint32_t n,
		   unsigned epoch)
{
	struct fz_buf p = { 0 };
	uint8_t page[GUEST_PAGE_SIZE];

	fz_le(&p, n, 4);
	for (uint32_t i = 0; i < n; i++) {
		fz_le(&p, gpa[i] | (zero[i] ? MIG_CODEC_ZERO : MIG_CODEC_RAW), 8);
		fz_le(&p, zero[i] ? 0 : GUEST_PAGE_SIZE, 4);
	}
	for (uint32_t i = 0; i < n; i++)
		if (!zero[i]) {
			fz_page(page, gpa[i], epoch);
			fz_put(&p, page, GUEST_PAGE_SIZE);
		}
	fz_sec(b, MIG_SEC_RAM, p.p, p.len);
	free(p.p);
}

/* A RAM_RUN of n raw pages from gpa. */
static void fz_ram_run(struct fz_buf *b, uint64_t gpa, uint32_t n, unsigned epoch)
{
	struct fz_buf p = { 0 };
	uint8_t page[GUEST_PAGE_SIZE];

	fz_le(&p, gpa, 8);
	fz_le(&p, n, 4);
	for (uint32_t i = 0; i < n; i++) {
		fz_page(page, gpa + (uint64_t)i * GUEST_PAGE_SIZE, epoch);
		fz_put(&p, page, GUEST_PAGE_SIZE);
	}
	fz_sec(b, MIG_SEC_RAM_RUN, p.p, p.len);
	free(p.p);
}

/* An EPOCH_DISK record for disk 0: len bytes at off (zero: a zero record). */
static void fz_epoch_disk(struct fz_buf *b, uint64_t off, uint32_t len, bool zero, unsigned epoch)
{
	struct fz_buf p = { 0 };

	fz_put(&p, (const uint8_t[]){ 0, zero ? MIG_EPOCH_DISK_ZERO : 0 }, 2);
	fz_le(&p, off, 8);
	fz_le(&p, len, 4);
	for (uint32_t k = 0; !zero && k < len; k++)
		fz_le(&p, (uint8_t)(k * 13 + (off >> 16) + epoch * 5), 1);
	fz_sec(b, MIG_SEC_EPOCH_DISK, p.p, p.len);
	free(p.p);
}

static void fz_epoch(struct fz_buf *b, uint64_t seq)
{
	uint8_t p[8];

	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(seq >> (8 * i));
	fz_sec(b, MIG_SEC_EPOCH, p, sizeof(p));
}

/* EPOCH_END: seq, pages, the chain so far, disk records (with_disk: 32 bytes). */
static void fz_epoch_end(struct fz_buf *b, uint64_t seq, uint64_t pages, uint64_t recs,
			 bool with_disk)
{
	struct fz_buf p = { 0 };

	fz_le(&p, seq, 8);
	fz_le(&p, pages, 8);
	fz_le(&p, b->chain, 8);
	if (with_disk)
		fz_le(&p, recs, 8);
	fz_sec(b, MIG_SEC_EPOCH_END, p.p, p.len);
	free(p.p);
}

static void fz_heartbeat(struct fz_buf *b, uint64_t n)
{
	struct fz_buf p = { 0 };

	fz_le(&p, n, 8);
	fz_le(&p, 0, 8);
	fz_sec(b, MIG_SEC_HEARTBEAT, p.p, p.len);
	free(p.p);
}

/* ---- a machine without KVM ------------------------------------------------ */

static void fz_no_irq(void *opaque, int level)
{
	(void)opaque;
	(void)level;
}

int __wrap_machine_create(struct machine *m, const struct machine_config *cfg);

/*
 * The loader's machine_create (linked with --wrap): as fuzz_incoming's
 * without /dev/kvm, a machine with no KVM VM behind it (no vCPUs, an empty
 * CPUID table) but real guest RAM and the real devices (COM1 without a
 * backend, debug-exit, the disk).  A standby never runs a vCPU until it
 * takes over, which is where this harness stops.
 */
int __wrap_machine_create(struct machine *m, const struct machine_config *cfg)
{
	struct vm *vm = &m->vm;
	pthread_condattr_t ca;
	int err;

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
 * The state of machine m as a STATE payload, without KVM: the VM's and
 * one vCPU's records zeroed (but for the IOAPIC's fixed address and the
 * legacy XSAVE size), then every
 * device's own record as machine_state_encode writes it.
 */
static void fz_state(struct machine *m, struct fz_buf *out)
{
	struct x86_vm_state *vms = calloc(1, sizeof(*vms));
	struct x86_vcpu_state *cpu = calloc(1, sizeof(*cpu));
	struct vmstate_buf v;
	char name[64];

	if (!vms || !cpu)
		abort();
	vms->ioapic.base_address = 0xfec00000;	/* the only one KVM has */
	cpu->xsave_size = X86_XSAVE_LEGACY;
	vmstate_buf_init(&v);
	if (vmstate_save(&x86_vm_state_vmsd, vms, &v) || vmstate_save(&x86_vcpu_state_vmsd, cpu, &v))
		abort();
	for (unsigned i = 0; i < m->nr_devs; i++) {
		const struct device_ops *d = device_table[m->devs[i].id];
		if (!d->vmsd)
			continue;
		void *st = calloc(1, d->vmsd->size);
		if (!st || d->save(m->devs[i].dev, st))
			abort();
		if (d->multi)
			snprintf(name, sizeof(name), "%s.%u", d->vmsd->name, m->devs[i].index);
		else
			snprintf(name, sizeof(name), "%s", d->vmsd->name);
		if (vmstate_save_as(d->vmsd, name, st, &v))
			abort();
		free(st);
	}
	fz_put(out, v.data, v.len);
	vmstate_buf_free(&v);
	free(vms);
	free(cpu);
}

/* ---- the model: what the standby must hold ----------------------------- */

/*
 * The stream as the harness sent it, cut into sections, and the epochs in
 * it: the n-th EPOCH..EPOCH_END group is what the standby's n-th commit
 * must have applied (it stops reading at its first bad section).
 */
struct fz_group {
	size_t first, last;	/* section indexes: EPOCH, EPOCH_END */
};

struct fz_model {
	const uint8_t *p;
	size_t nsec;
	size_t *off;		/* each section's header */
	struct fz_group *g;
	size_t ngroups;
	bool started;		/* the standby started: fz_shadow holds its RAM, disk */
	uint64_t ram_size;
	bool disk;
	uint64_t committed;
	uint8_t *state;		/* the last committed epoch's STATE payload */
	uint32_t state_len;
	/* The run under test. */
	struct machine *m;
	bool standing_by;
	bool applied;		/* a state was applied while standing by */
	uint64_t applied_digest;
};

static struct fz_model fz_model;

/*
 * The committed RAM and disk as the model has them.  Kept for the
 * process's life (touching 16 MiB anew each run would cost more than the
 * run); fz_nz marks the pages of fz_shadow that may be other than zero.
 * RAM is read through its memfd, from its data extents only: a page the
 * guest never had is a hole there, read as zeros without allocating.
 */
static uint8_t *fz_shadow;
static uint64_t fz_nz[FZ_MAX_MEMORY / GUEST_PAGE_SIZE / 64];
static uint8_t fz_shadow_disk[FZ_DISK_SIZE];
static uint8_t fz_tmp[FZ_DISK_SIZE];

static void fz_nz_set(uint64_t gpa, uint64_t len)
{
	for (uint64_t pg = gpa / GUEST_PAGE_SIZE; pg < (gpa + len + GUEST_PAGE_SIZE - 1) / GUEST_PAGE_SIZE;
	     pg++)
		fz_nz[pg / 64] |= 1ULL << (pg % 64);
}

/* Calls fn for each data extent [off, end) of fd below size. */
static void fz_extents(int fd, uint64_t size, void (*fn)(int fd, uint64_t off, uint64_t end))
{
	for (off_t off = 0; (uint64_t)off < size;) {
		off_t d = lseek(fd, off, SEEK_DATA);
		if (d < 0 || (uint64_t)d >= size)
			return;
		off_t h = lseek(fd, d, SEEK_HOLE);
		if (h < 0 || (uint64_t)h > size)
			h = (off_t)size;
		fn(fd, (uint64_t)d, (uint64_t)h);
		off = h;
	}
}

static void fz_pread(int fd, uint8_t *to, uint64_t len, uint64_t off)
{
	while (len) {
		ssize_t n = pread(fd, to, len, (off_t)off);
		if (n <= 0)
			abort();
		to += n;
		len -= (uint64_t)n;
		off += (uint64_t)n;
	}
}

static void fz_snap_extent(int fd, uint64_t off, uint64_t end)
{
	fz_pread(fd, fz_shadow + off, end - off, off);
	fz_nz_set(off, end - off);
}

static uint64_t fz_covered;	/* fz_cmp_extent: how far the data extents were compared */

static void fz_cmp_fail(uint64_t at)
{
	fprintf(stderr, "fuzz_standby: guest page 0x%llx is not the committed epoch %llu's\n",
		(unsigned long long)(at & ~(uint64_t)(GUEST_PAGE_SIZE - 1)),
		(unsigned long long)fz_model.committed);
	abort();
}

/* A hole [off, end) of guest RAM: the model's pages there must be zeros. */
static void fz_cmp_hole(uint64_t off, uint64_t end)
{
	for (uint64_t pg = off / GUEST_PAGE_SIZE; pg < end / GUEST_PAGE_SIZE; pg++) {
		if (!(fz_nz[pg / 64] & (1ULL << (pg % 64))))
			continue;
		const uint8_t *p = fz_shadow + pg * GUEST_PAGE_SIZE;
		if (p[0] || memcmp(p, p + 1, GUEST_PAGE_SIZE - 1))
			fz_cmp_fail(pg * GUEST_PAGE_SIZE);
	}
}

static void fz_cmp_extent(int fd, uint64_t off, uint64_t end)
{
	fz_cmp_hole(fz_covered, off);
	for (uint64_t at = off; at < end;) {
		uint64_t n = end - at < sizeof(fz_tmp) ? end - at : sizeof(fz_tmp);
		fz_pread(fd, fz_tmp, n, at);
		if (memcmp(fz_tmp, fz_shadow + at, n))
			for (uint64_t k = 0; k < n; k++)
				if (fz_tmp[k] != fz_shadow[at + k])
					fz_cmp_fail(at + k);
		at += n;
	}
	fz_covered = end;
}

static void fz_model_parse(struct fz_model *md, const uint8_t *p, size_t len, size_t off)
{
	size_t open = SIZE_MAX;

	md->p = p;
	while (off + MIG_SECTION_HDR + 8 <= len) {
		uint32_t n = (uint32_t)fz_get(p + off + 4, 4);
		if (n > MIG_SECTION_MAX || len - off - MIG_SECTION_HDR - 8 < n)
			break;
		md->off = realloc(md->off, (md->nsec + 1) * sizeof(*md->off));
		if (!md->off)
			abort();
		md->off[md->nsec] = off;
		if (p[off] == MIG_SEC_EPOCH)
			open = md->nsec;
		if (p[off] == MIG_SEC_EPOCH_END && open != SIZE_MAX) {
			md->g = realloc(md->g, (md->ngroups + 1) * sizeof(*md->g));
			if (!md->g)
				abort();
			md->g[md->ngroups++] = (struct fz_group){ .first = open, .last = md->nsec };
			open = SIZE_MAX;
		}
		md->nsec++;
		off += MIG_SECTION_HDR + n + 8;
	}
}

static void fz_model_free(struct fz_model *md)
{
	free(md->off);
	free(md->g);
	free(md->state);
	memset(md, 0, sizeof(*md));
}

static void fz_disk_read(uint8_t *to)
{
	int fd = open(fz_disk.path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		abort();
	fz_pread(fd, to, FZ_DISK_SIZE, 0);
	close(fd);
}

/* The standby's RAM and disk image as the initial copy left them. */
static void fz_snapshot(struct fz_model *md, struct machine *m)
{
	md->m = m;
	md->ram_size = m->vm.mem.size;
	if (m->vm.mem.nr_regions != 1 || md->ram_size > FZ_MAX_MEMORY)
		abort();	/* one region: its memfd offsets are its addresses */
	for (uint64_t i = 0; i < sizeof(fz_nz) / sizeof(fz_nz[0]); i++) {
		for (uint64_t b = 0; fz_nz[i] && b < 64; b++)
			if (fz_nz[i] & (1ULL << b))
				memset(fz_shadow + (i * 64 + b) * GUEST_PAGE_SIZE, 0, GUEST_PAGE_SIZE);
		fz_nz[i] = 0;
	}
	fz_extents(m->vm.mem.fd, md->ram_size, fz_snap_extent);
	md->disk = m->nr_disks > 0;
	if (md->disk)
		fz_disk_read(fz_shadow_disk);
	md->started = true;
}

/* RAM and disk must be the model's: the last whole epoch's, nothing of another. */
static void fz_model_check(const struct fz_model *md, const char *when)
{
	if (!md->started)
		return;
	fz_covered = 0;
	fz_extents(md->m->vm.mem.fd, md->ram_size, fz_cmp_extent);
	fz_cmp_hole(fz_covered, md->ram_size);
	if (!md->disk)
		return;
	fz_disk_read(fz_tmp);
	if (memcmp(fz_tmp, fz_shadow_disk, FZ_DISK_SIZE)) {
		fprintf(stderr, "fuzz_standby: %s: the disk is not the committed epoch %llu's\n",
			when, (unsigned long long)md->committed);
		abort();
	}
}

/* What a committed epoch wrote must lie inside the RAM or disk. */
static void fz_model_in(uint64_t size, uint64_t off, uint64_t len, const char *what)
{
	if (off > size || len > size - off) {
		fprintf(stderr, "fuzz_standby: a committed %s of %llu bytes at %llu is past the end "
			"(%llu bytes)\n", what, (unsigned long long)len, (unsigned long long)off,
			(unsigned long long)size);
		abort();
	}
}

/*
 * A committed disk record (inside the disk: fz_model_in) must be one the
 * standby may take: aligned to `align` (4 KiB with ranges agreed, a chunk
 * without), so long too unless it ends at the disk's end, not empty,
 * inside one chunk, and overlapping no other record of its epoch (`seen`,
 * a byte per 4 KiB).
 */
static void fz_model_range(uint8_t *seen, uint32_t align, uint64_t off, uint32_t len)
{
	bool ok = len && off % align == 0 && (len % align == 0 || off + len == FZ_DISK_SIZE) &&
		  off % MIG_EPOCH_DISK_CHUNK + len <= MIG_EPOCH_DISK_CHUNK;

	for (uint64_t u = off / MIG_EPOCH_DISK_RANGE; ok && len &&
	     u <= (off + len - 1) / MIG_EPOCH_DISK_RANGE; u++)
		ok = !seen[u]++;
	if (!ok) {
		fprintf(stderr, "fuzz_standby: a committed disk record of %u bytes at %llu (the "
			"standby takes %u-byte alignment) is one it must refuse\n", len,
			(unsigned long long)off, align);
		abort();
	}
}

/*
 * Apply the model's n-th epoch to its RAM and disk, as the standby had to;
 * its page and record counts into *pages, *recs.  A standby takes only
 * zero and raw pages in epochs (incoming.c): a committed page of another
 * codec is a finding too.
 */
static void fz_model_apply(struct fz_model *md, uint64_t n, uint32_t align, uint64_t *pages,
			   uint64_t *recs)
{
	const struct fz_group *g = &md->g[n - 1];
	uint8_t seen[(FZ_DISK_SIZE + MIG_EPOCH_DISK_RANGE - 1) / MIG_EPOCH_DISK_RANGE] = { 0 };

	*pages = *recs = 0;
	for (size_t s = g->first + 1; s < g->last; s++) {
		const uint8_t *h = md->p + md->off[s];
		const uint8_t *p = h + MIG_SECTION_HDR;
		uint32_t len = (uint32_t)fz_get(h + 4, 4);
		switch (h[0]) {
		case MIG_SEC_RAM: {
			uint32_t cnt = (uint32_t)fz_get(p, 4);
			const uint8_t *data = p + 4 + (size_t)MIG_RAM_ENTRY * cnt;
			for (uint32_t i = 0; i < cnt; i++) {
				uint64_t w = fz_get(p + 4 + MIG_RAM_ENTRY * i, 8);
				uint32_t l = (uint32_t)fz_get(p + 4 + MIG_RAM_ENTRY * i + 8, 4);
				uint64_t gpa = w & ~MIG_PAGE_ENC_MASK;
				fz_model_in(md->ram_size, gpa, GUEST_PAGE_SIZE, "page");
				if ((w & MIG_PAGE_ENC_MASK) == MIG_CODEC_ZERO && l == 0) {
					memset(fz_shadow + gpa, 0, GUEST_PAGE_SIZE);
				} else if ((w & MIG_PAGE_ENC_MASK) == MIG_CODEC_RAW &&
					   l == GUEST_PAGE_SIZE) {
					memcpy(fz_shadow + gpa, data, GUEST_PAGE_SIZE);
					fz_nz_set(gpa, GUEST_PAGE_SIZE);
				} else {
					fprintf(stderr, "fuzz_standby: a committed page 0x%llx of "
						"codec %u, %u bytes\n", (unsigned long long)gpa,
						(unsigned)(w & MIG_PAGE_ENC_MASK), l);
					abort();
				}
				data += l;
			}
			*pages += cnt;
			break;
		}
		case MIG_SEC_RAM_RUN: {
			uint64_t gpa = fz_get(p, 8);
			uint32_t cnt = (uint32_t)fz_get(p + 8, 4);
			fz_model_in(md->ram_size, gpa, (uint64_t)cnt * GUEST_PAGE_SIZE, "RAM_RUN");
			memcpy(fz_shadow + gpa, p + 12, (size_t)cnt * GUEST_PAGE_SIZE);
			fz_nz_set(gpa, (uint64_t)cnt * GUEST_PAGE_SIZE);
			*pages += cnt;
			break;
		}
		case MIG_SEC_EPOCH_DISK: {
			uint64_t off = fz_get(p + 2, 8);
			uint32_t l = (uint32_t)fz_get(p + 10, 4);
			fz_model_in(md->disk ? FZ_DISK_SIZE : 0, off, l, "disk record");
			fz_model_range(seen, align, off, l);
			if (p[1] & MIG_EPOCH_DISK_ZERO)
				memset(fz_shadow_disk + off, 0, l);
			else
				memcpy(fz_shadow_disk + off, p + MIG_EPOCH_DISK_HDR, l);
			(*recs)++;
			break;
		}
		case MIG_SEC_STATE:
			free(md->state);
			md->state = malloc(len ? len : 1);
			if (!md->state)
				abort();
			memcpy(md->state, p, len);
			md->state_len = len;
			break;
		default:
			break;
		}
	}
}

/* ---- the wrapped calls ---------------------------------------------------- */

int __real_mig_epoch_end(struct mig_epoch *e, const struct mig_epoch_end_rec *end,
			 uint64_t chain_here, mig_epoch_apply_fn *apply, void *opaque, char *why,
			 size_t whylen);
int __wrap_mig_epoch_end(struct mig_epoch *e, const struct mig_epoch_end_rec *end,
			 uint64_t chain_here, mig_epoch_apply_fn *apply, void *opaque, char *why,
			 size_t whylen);

/*
 * Every EPOCH_END: a commit is the next epoch, whole, as the model read
 * it; a rejection leaves everything as it was.  A writer never fails here,
 * so a torn checkpoint is a finding too.
 */
int __wrap_mig_epoch_end(struct mig_epoch *e, const struct mig_epoch_end_rec *end,
			 uint64_t chain_here, mig_epoch_apply_fn *apply, void *opaque, char *why,
			 size_t whylen)
{
	struct fz_model *md = &fz_model;
	uint64_t before = e->committed;
	int err = __real_mig_epoch_end(e, end, chain_here, apply, opaque, why, whylen);

	if (err == -EPROTO) {
		if (e->committed != before || e->open || e->torn) {
			fprintf(stderr, "fuzz_standby: a refused EPOCH_END changed the checkpoint\n");
			abort();
		}
		fz_model_check(md, "after a refused epoch");
		return err;
	}
	if (err) {
		fprintf(stderr, "fuzz_standby: epoch %llu was torn: %s\n",
			(unsigned long long)end->seq, why);
		abort();
	}
	if (end->seq != before + 1 || e->committed != end->seq || before != md->committed) {
		fprintf(stderr, "fuzz_standby: epoch %llu committed after %llu (model: %llu)\n",
			(unsigned long long)end->seq, (unsigned long long)before,
			(unsigned long long)md->committed);
		abort();
	}
	if (end->seq > md->ngroups) {
		fprintf(stderr, "fuzz_standby: epoch %llu committed, the stream has %zu\n",
			(unsigned long long)end->seq, md->ngroups);
		abort();
	}
	md->committed = end->seq;
	uint64_t pages, recs;
	fz_model_apply(md, end->seq, e->disk_align ? e->disk_align : MIG_EPOCH_DISK_CHUNK, &pages,
		       &recs);
	if (pages != end->pages || recs != end->disk_recs) {
		fprintf(stderr, "fuzz_standby: epoch %llu committed with %llu pages and %llu disk "
			"records; the stream's has %llu and %llu\n", (unsigned long long)end->seq,
			(unsigned long long)end->pages, (unsigned long long)end->disk_recs,
			(unsigned long long)pages, (unsigned long long)recs);
		abort();
	}
	fz_model_check(md, "after a commit");
	return 0;
}

/*
 * Applying a state: there is no vCPU to load it into.  The stub checks
 * what the real one checks before it reaches for one (that the state fits
 * the machine) and, while standing by, notes what it was given.
 */
int __wrap_machine_state_apply(struct machine *m, const struct machine_state *st);
int __wrap_machine_state_encode(struct machine *m, struct vmstate_buf *out);

int __wrap_machine_state_apply(struct machine *m, const struct machine_state *st)
{
	struct vmstate_error verr;

	if (machine_state_match(m, st, &verr))
		return -EINVAL;
	if (fz_model.standing_by) {
		if (machine_state_digest(st, &fz_model.applied_digest))
			abort();
		fz_model.applied = true;
	}
	return 0;
}

int __wrap_machine_state_encode(struct machine *m, struct vmstate_buf *out)
{
	(void)m;
	(void)out;
	return -ENODEV;
}

/* The harness's clock: moved on, instead of waited out, once the link is lost. */
static uint64_t fz_clock_skew;
static unsigned fz_decide;

uint64_t __real_vm_now_ns(void);
uint64_t __wrap_vm_now_ns(void);

uint64_t __wrap_vm_now_ns(void)
{
	return __real_vm_now_ns() + __atomic_load_n(&fz_clock_skew, __ATOMIC_RELAXED);
}

int __real_mig_commit_wait(struct mig_commit *c, struct mig_stream *s, bool dead, int intr_fd,
			   int timeout_ms, enum mig_resolve *r);
int __wrap_mig_commit_wait(struct mig_commit *c, struct mig_stream *s, bool dead, int intr_fd,
			   int timeout_ms, enum mig_resolve *r);

/*
 * The standby's wait between sections.  Once the link is lost nothing more
 * comes: the operator's answer (mode bits 4-5) at once, or for the auto
 * mode the time it would have waited, added to the harness's clock.
 */
int __wrap_mig_commit_wait(struct mig_commit *c, struct mig_stream *s, bool dead, int intr_fd,
			   int timeout_ms, enum mig_resolve *r)
{
	if (!dead)
		return __real_mig_commit_wait(c, s, dead, intr_fd, timeout_ms, r);
	*r = MIG_RESOLVE_NONE;
	switch (fz_decide) {
	case FZ_DECIDE_QUIT:
		*r = MIG_RESOLVE_ABANDON;
		break;
	case FZ_DECIDE_AUTO:
		__atomic_add_fetch(&fz_clock_skew, (uint64_t)(timeout_ms > 0 ? timeout_ms : 1) * 1000000ULL,
				   __ATOMIC_RELAXED);
		break;
	default:
		*r = MIG_RESOLVE_RUN;
		break;
	}
	return 0;
}

/* ---- one run ----------------------------------------------------------- */

struct fz_feed {
	const uint8_t *data;
	size_t len;
	bool cut;		/* close once EPOCH_ACK 0 came, without reading more */
	volatile int loader_done;
	struct fz_buf back;	/* the return path */
};

/* Does the return path hold EPOCH_ACK 0 yet? */
static bool fz_has_ack0(const struct fz_buf *b)
{
	for (size_t off = 0; off + MIG_SECTION_HDR + 8 <= b->len;) {
		uint32_t n = (uint32_t)fz_get(b->p + off + 4, 4);
		if (b->len - off - MIG_SECTION_HDR - 8 < n)
			break;
		if (b->p[off] == MIG_SEC_EPOCH_ACK)
			return true;
		off += MIG_SECTION_HDR + n + 8;
	}
	return false;
}

static void *fz_feeder(void *arg)
{
	struct fz_feed *f = arg;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = 5 };
	int fd = -1;

	strcpy(sa.sun_path, fz_sock);
	for (int i = 0; i < 40000 && !__atomic_load_n(&f->loader_done, __ATOMIC_ACQUIRE); i++) {
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return NULL;
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			break;
		close(fd);
		fd = -1;
		usleep(50);
	}
	if (fd < 0)
		return NULL;
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	for (size_t off = 0; off < f->len;) {
		ssize_t n = send(fd, f->data + off, f->len - off, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	shutdown(fd, SHUT_WR);
	for (;;) {
		uint8_t buf[4096];
		if (f->cut && fz_has_ack0(&f->back))
			break;
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (f->back.len < (1u << 20))
			fz_put(&f->back, buf, (size_t)n);
	}
	close(fd);
	return NULL;
}

/* Rewrite sums and EPOCH_END chains (mode bits 0, 1) from off on. */
static void fz_fix(uint8_t *p, size_t len, size_t off, uint8_t mode)
{
	uint64_t chain = 0;

	while (off + MIG_SECTION_HDR + 8 <= len) {
		uint32_t n = (uint32_t)fz_get(p + off + 4, 4);
		if (n > MIG_SECTION_MAX || len - off - MIG_SECTION_HDR - 8 < n)
			return;
		uint8_t *pl = p + off + MIG_SECTION_HDR;
		if ((mode & FZ_FIX_CHAIN) && p[off] == MIG_SEC_EPOCH_END && n >= 24)
			for (int i = 0; i < 8; i++)
				pl[16 + i] = (uint8_t)(chain >> (8 * i));
		if (mode & FZ_FIX_SUMS) {
			uint64_t sum = XXH3_64bits(p + off, MIG_SECTION_HDR + (size_t)n);
			for (int i = 0; i < 8; i++)
				pl[n + i] = (uint8_t)(sum >> (8 * i));
		}
		chain = mig_section_chain(chain, fz_get(pl + n, 8));
		off += MIG_SECTION_HDR + (size_t)n + 8;
	}
}

/* The return path: EPOCH_ACKs 0, 1, 2, ..., none for an epoch not committed. */
static void fz_check_back(const struct fz_buf *b, uint64_t committed)
{
	uint64_t next = 0;

	for (size_t off = 0; off + MIG_SECTION_HDR + 8 <= b->len;) {
		uint32_t n = (uint32_t)fz_get(b->p + off + 4, 4);
		if (b->len - off - MIG_SECTION_HDR - 8 < n)
			break;
		const uint8_t *p = b->p + off + MIG_SECTION_HDR;
		if (b->p[off] == MIG_SEC_EPOCH_ACK) {
			uint64_t seq = n == 8 ? fz_get(p, 8) : UINT64_MAX;
			if (seq != next || seq > committed) {
				fprintf(stderr, "fuzz_standby: EPOCH_ACK %llu, expected %llu (%llu "
					"committed)\n", (unsigned long long)seq,
					(unsigned long long)next, (unsigned long long)committed);
				abort();
			}
			next++;
		}
		if (b->p[off] == MIG_SEC_HEARTBEAT && (n != 16 || fz_get(p, 8) > committed)) {
			fprintf(stderr, "fuzz_standby: a HEARTBEAT of %u bytes names epoch %llu (%llu "
				"committed)\n", n, (unsigned long long)(n >= 8 ? fz_get(p, 8) : 0),
				(unsigned long long)committed);
			abort();
		}
		off += MIG_SECTION_HDR + n + 8;
	}
}

/*
 * The harness's initial copy (mode bit 2): a whole one, of FZ_MEM, disk or
 * not ([disk]), offering epoch disk ranges or not ([..][ranges]).
 */
static struct fz_buf fz_prefix[2][2];

static void fz_prefix_make(struct fz_buf *b, bool disk, bool ranges)
{
	struct block_config dc = fz_disk;
	struct machine_config mc = { .memory = FZ_MEM, .vcpus = 1, .serial = "file:/dev/null",
				     .incoming = true, .disks = &dc, .nr_disks = disk,
				     .own_disks = true };
	struct machine *m = calloc(1, sizeof(*m));
	struct fz_buf p = { 0 };

	if (!m || __wrap_machine_create(m, &mc))
		abort();
	memset(b, 0, sizeof(*b));
	fz_header(b);
	fz_config(b, FZ_MEM, ranges);
	if (disk) {
		fz_le(&p, FZ_DISK_SIZE, 8);
		fz_block(b, MIG_BLOCK_HELLO, p.p, p.len);
	}
	fz_pass(b, 1, 1);
	const uint64_t gpa[] = { 0x1000, 0x2000, 0x3000, FZ_MEM - 0x1000 };
	const bool zero[] = { false, true, false, true };
	fz_ram(b, gpa, zero, 4, 0);
	if (disk) {
		/* A chunk of data, one of zeros, then DONE (no digest: not verified). */
		p.len = 0;
		fz_le(&p, 0, 8);
		for (unsigned k = 0; k < 1024; k++)
			fz_le(&p, (uint8_t)(k * 3 + 1), 1);
		fz_block(b, MIG_BLOCK_DATA, p.p, p.len);
		p.len = 0;
		fz_le(&p, 65536, 8);
		fz_le(&p, 65536, 8);
		fz_block(b, MIG_BLOCK_ZERO, p.p, p.len);
		p.len = 0;
		fz_le(&p, 0, 8);
		fz_le(&p, 0, 1);
		fz_block(b, MIG_BLOCK_DONE, p.p, p.len);
	}
	p.len = 0;
	fz_state(m, &p);
	fz_sec(b, MIG_SEC_STATE, p.p, p.len);
	fz_sec(b, MIG_SEC_END, NULL, 0);
	free(p.p);
	machine_destroy(m);
	free(m);
}

static const char *fz_decide_name[] = { "failover", "quit", "auto", "cut+failover" };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t mode = data[0];
	struct mig_incoming_opts opts = {
		.uri = fz_uri, .serial = "file:/dev/null",
		.max_memory = FZ_MAX_MEMORY, .max_vcpus = 2,
		.accept_timeout_ms = 3000, .io_timeout_ms = 2000, .intr_fd = -1,
		.standby = true, .failover_ns = FZ_FAILOVER_NS,
		.failover_mode = FZ_DECIDE(mode) == FZ_DECIDE_AUTO ? MIG_FAILOVER_AUTO
								 : MIG_FAILOVER_MANUAL,
	};
	struct fz_buf stream = { 0 };
	const struct fz_buf *pre = &fz_prefix[!!(mode & FZ_DISK)][!!(mode & FZ_RANGES)];

	if (mode & FZ_DISK) {
		opts.disks = &fz_disk;
		opts.nr_disks = 1;
		opts.own_disks = true;
		/* Every run starts from the same image: the initial copy writes only some of it. */
		int fd = open(fz_disk.path, O_RDWR | O_TRUNC | O_CLOEXEC);
		if (fd < 0 || ftruncate(fd, FZ_DISK_SIZE))
			abort();
		close(fd);
	}
	if (mode & FZ_PREFIX)
		fz_put(&stream, pre->p, pre->len);
	fz_put(&stream, data + 1, size - 1);
	fz_fix(stream.p, stream.len, MIG_MAGIC_LEN + 4, mode);

	struct mig_incoming *inc = calloc(1, sizeof(*inc));
	struct machine *m = calloc(1, sizeof(*m));
	struct fz_feed feed = { .data = stream.p, .len = stream.len,
				.cut = FZ_DECIDE(mode) == FZ_DECIDE_CUT };
	pthread_t t;

	if (!inc || !m)
		abort();
	memset(&fz_model, 0, sizeof(fz_model));
	fz_model_parse(&fz_model, stream.p, stream.len, MIG_MAGIC_LEN + 4);
	fz_decide = FZ_DECIDE(mode);
	__atomic_store_n(&fz_clock_skew, 0, __ATOMIC_RELAXED);
	unlink(fz_sock);
	if (pthread_create(&t, NULL, fz_feeder, &feed))
		abort();
	int err = mig_incoming_receive(inc, &opts, m);
	bool stood_by = !err;
	if (!err) {
		/* The initial copy is loaded: stand by, as ferry run --standby does. */
		struct mig_commit mc;
		if (mig_commit_init(&mc))
			abort();
		fz_snapshot(&fz_model, m);
		fz_model.standing_by = true;
		err = mig_standby_run(inc, &opts, &mc);
		fz_model.standing_by = false;
		mig_commit_destroy(&mc);
		fz_model_check(&fz_model, "when the standby returned");
		if (!err) {
			/* A failover: the checkpoint loaded is the last committed epoch's. */
			struct machine_state st;
			struct vmstate_error verr;
			uint64_t d = 0;
			if (fz_model.committed) {
				if (machine_state_decode(fz_model.state, fz_model.state_len,
							 inc->cfg.vcpus, &st, &verr) ||
				    machine_state_digest(&st, &d))
					abort();
				machine_state_free(&st);
				if (!fz_model.applied || fz_model.applied_digest != d) {
					fprintf(stderr, "fuzz_standby: the failover loaded a state "
						"other than epoch %llu's\n",
						(unsigned long long)fz_model.committed);
					abort();
				}
			} else if (!fz_model.committed && fz_model.applied) {
				fprintf(stderr, "fuzz_standby: a state applied at failover, no epoch "
					"committed\n");
				abort();
			}
		}
	}
	__atomic_store_n(&feed.loader_done, 1, __ATOMIC_RELEASE);
	if (err && !inc->why[0])
		abort();		/* every failure must say why */
	if (fz_verbose)
		fprintf(stderr, "fuzz_standby: %s%s; %llu epoch(s) committed (%s)\n",
			stood_by ? "stood by: " : "initial copy: ",
			err ? inc->why : "took over", (unsigned long long)fz_model.committed,
			fz_decide_name[fz_decide]);
	if (stood_by && !err)
		mig_incoming_drop(inc);
	else
		mig_incoming_reply(inc, err, err ? inc->why : "ok");
	pthread_join(t, NULL);
	fz_check_back(&feed.back, fz_model.committed);
	if (stood_by)
		machine_destroy(m);
	fz_model_free(&fz_model);
	free(feed.back.p);
	free(stream.p);
	free(m);
	free(inc);
	return 0;
}

/* ---- seeds ------------------------------------------------------------- */

static void fz_write_seed(const char *dir, const char *name, uint8_t mode, const uint8_t *p,
			  size_t len)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	if (!f || fputc(mode, f) == EOF || fwrite(p, 1, len, f) != len || fclose(f)) {
		fprintf(stderr, "cannot write %s: %s\n", path, strerror(errno));
		exit(1);
	}
	printf("%s: %zu bytes\n", path, len + 1);
}

/*
 * Epoch seq as a primary writes it: a RAM batch (raw and zero pages), a
 * RAM_RUN, with a disk (`disk` 1: whole chunks, 2: epoch disk ranges)
 * EPOCH_DISK records: data in the disk's short last chunk, zeros
 * elsewhere (in epoch 2 over what the initial copy wrote, and with
 * ranges a 4 KiB range of data inside a chunk), STATE, EPOCH_END.
 * pages_off and recs_off make its counts disagree.  Little data, so that
 * a seed stays within fuzz_short's -max_len of 64 KiB.
 */
static void fz_seed_epoch(struct fz_buf *b, uint64_t seq, int disk, const struct fz_buf *st,
			  int pages_off, int recs_off)
{
	const uint64_t gpa[] = { 0x1000, 0x2000, 0x3000 + seq * 0x1000 };
	const bool zero[] = { seq == 2, true, true };
	uint64_t recs = 0, c = (seq % 4 + 4) * 65536;
	unsigned e = (unsigned)seq;

	fz_epoch(b, seq);
	fz_ram(b, gpa, zero, 3, (unsigned)seq);
	fz_ram_run(b, 0x20000 + seq * 0x2000, 1, (unsigned)seq);
	if (disk) {
		fz_epoch_disk(b, FZ_DISK_SIZE - 1024, 1024, false, e);
		recs = 3;
	}
	if (disk == 1) {
		/* Whole chunks: zeros in chunk seq % 4 + 4 and chunk 8. */
		fz_epoch_disk(b, c, 65536, true, e);
		fz_epoch_disk(b, 8 * 65536, 65536, true, e);
		if (seq == 2) {	/* zeros over what the initial copy wrote */
			fz_epoch_disk(b, 0, 65536, true, e);
			recs++;
		}
	} else if (disk == 2) {
		/* Ranges: a run of three of zeros in chunk seq % 4 + 4, one in chunk 8. */
		fz_epoch_disk(b, c + 32768, 3 * 4096, true, e);
		fz_epoch_disk(b, 8 * 65536 + seq * 4096, 4096, true, e);
		if (seq == 2) {	/* data beside them; zeros over the initial copy's start */
			fz_epoch_disk(b, c + 8192, 4096, false, e);
			fz_epoch_disk(b, 0, 4096, true, e);
			recs += 2;
		}
	}
	fz_sec(b, MIG_SEC_STATE, st->p, st->len);
	fz_epoch_end(b, seq, (uint64_t)(4 + pages_off), (uint64_t)((int64_t)recs + recs_off),
		     disk != 0);
}

/* The seed's epoch part: what follows the initial copy in b, from `from`. */
static void fz_seed_tail(const char *dir, const char *name, uint8_t mode, const struct fz_buf *b,
			 size_t from)
{
	fz_write_seed(dir, name, mode, b->p + from, b->len - from);
}

/* Most seeds' mode: epochs after the harness's initial copy, sums and chains put right. */
#define FZ_SEED (FZ_FIX_SUMS | FZ_FIX_CHAIN | FZ_PREFIX)

/* Epoch 1, then an epoch 2 of one disk record of len bytes at off: refused, failover from 1. */
static void fz_seed_bad_record(const char *dir, const char *name, bool ranges,
			       const struct fz_buf *st, uint64_t off, uint32_t len, bool zero)
{
	const struct fz_buf *pre = &fz_prefix[1][ranges];
	struct fz_buf b = { 0 };

	fz_put(&b, pre->p, pre->len);
	b.chain = pre->chain;
	fz_seed_epoch(&b, 1, ranges ? 2 : 1, st, 0, 0);
	fz_epoch(&b, 2);
	fz_epoch_disk(&b, off, len, zero, 2);
	fz_sec(&b, MIG_SEC_STATE, st->p, st->len);
	fz_epoch_end(&b, 2, 0, 1, true);
	fz_seed_tail(dir, name, FZ_SEED | FZ_DISK | (ranges ? FZ_RANGES : 0), &b, pre->len);
	free(b.p);
}

static void fz_seeds(const char *dir)
{
	struct fz_buf st[2] = { { 0 } };
	struct fz_buf b;

	mkdir(dir, 0755);
	for (int disk = 0; disk < 2; disk++) {
		struct block_config dc = fz_disk;
		struct machine_config mc = { .memory = FZ_MEM, .vcpus = 1, .serial = "file:/dev/null",
					     .incoming = true, .disks = &dc, .nr_disks = (unsigned)disk,
					     .own_disks = true };
		struct machine *m = calloc(1, sizeof(*m));
		if (!m || __wrap_machine_create(m, &mc))
			abort();
		fz_state(m, &st[disk]);
		machine_destroy(m);
		free(m);
	}
	/* No disk; a disk in whole chunks; a disk with epoch disk ranges agreed. */
	for (int v = 0; v < 3; v++) {
		int disk = v > 0;
		const struct fz_buf *pre = &fz_prefix[disk][v == 2];
		uint8_t dm = (disk ? FZ_DISK : 0) | (v == 2 ? FZ_RANGES : 0);
		const char *sfx = (const char *[]){ "", "-disk", "-ranges" }[v];
		char name[64];

		/* Three good epochs, heartbeats between, then the link ends: failover. */
		b = (struct fz_buf){ 0 };
		fz_put(&b, pre->p, pre->len);
		b.chain = pre->chain;
		for (uint64_t seq = 1; seq <= 3; seq++) {
			fz_seed_epoch(&b, seq, v, &st[disk], 0, 0);
			fz_heartbeat(&b, seq);
		}
		snprintf(name, sizeof(name), "epochs%s", sfx);
		fz_seed_tail(dir, name, FZ_SEED | dm, &b, pre->len);
		/* The same with the initial copy in the input (with ranges: over 64 KiB). */
		snprintf(name, sizeof(name), "whole%s", sfx);
		if (v < 2)
			fz_write_seed(dir, name, FZ_FIX_SUMS | dm, b.p, b.len);
		/* Auto failover after the link ends. */
		snprintf(name, sizeof(name), "epochs-auto%s", sfx);
		fz_seed_tail(dir, name, FZ_SEED | dm | (FZ_DECIDE_AUTO << 4), &b,
			     pre->len);
		/* The feeder cuts the connection: acknowledgements fail. */
		snprintf(name, sizeof(name), "epochs-cut%s", sfx);
		fz_seed_tail(dir, name, FZ_SEED | dm | (FZ_DECIDE_CUT << 4), &b,
			     pre->len);
		/* Stood down: ABORT after the epochs. */
		fz_sec(&b, MIG_SEC_ABORT, NULL, 0);
		snprintf(name, sizeof(name), "stand-down%s", sfx);
		fz_seed_tail(dir, name, FZ_SEED | dm, &b, pre->len);
		free(b.p);

		/* Epoch 2's EPOCH_END counts a page too many: failover from epoch 1. */
		b = (struct fz_buf){ 0 };
		fz_put(&b, pre->p, pre->len);
		b.chain = pre->chain;
		fz_seed_epoch(&b, 1, v, &st[disk], 0, 0);
		fz_seed_epoch(&b, 2, v, &st[disk], 1, 0);
		snprintf(name, sizeof(name), "bad-pages%s", sfx);
		fz_seed_tail(dir, name, FZ_SEED | dm, &b, pre->len);
		free(b.p);

		if (disk) {
			/* The same with a disk record too few in epoch 2's count. */
			b = (struct fz_buf){ 0 };
			fz_put(&b, pre->p, pre->len);
			b.chain = pre->chain;
			fz_seed_epoch(&b, 1, v, &st[disk], 0, 0);
			fz_seed_epoch(&b, 2, v, &st[disk], 0, -1);
			snprintf(name, sizeof(name), "bad-recs%s", sfx);
			fz_seed_tail(dir, name, FZ_SEED | dm, &b, pre->len);
			free(b.p);
		}

		/* Epoch 2 first: out of order. */
		b = (struct fz_buf){ 0 };
		fz_put(&b, pre->p, pre->len);
		b.chain = pre->chain;
		fz_seed_epoch(&b, 2, v, &st[disk], 0, 0);
		snprintf(name, sizeof(name), "out-of-order%s", sfx);
		fz_seed_tail(dir, name, FZ_SEED | dm, &b, pre->len);
		free(b.p);

		/* Epoch 2 cut in its RAM_RUN: the connection ends mid-epoch (auto). */
		b = (struct fz_buf){ 0 };
		fz_put(&b, pre->p, pre->len);
		b.chain = pre->chain;
		fz_seed_epoch(&b, 1, v, &st[disk], 0, 0);
		size_t cut = b.len;
		fz_seed_epoch(&b, 2, v, &st[disk], 0, 0);
		b.len = cut + (b.len - cut) / 2;
		snprintf(name, sizeof(name), "cut-mid-epoch%s", sfx);
		fz_seed_tail(dir, name, FZ_SEED | dm | (FZ_DECIDE_AUTO << 4), &b,
			     pre->len);
		free(b.p);
	}

	/*
	 * Disk records that must be refused.  Whole chunks: past the end, a
	 * 4 KiB range (ranges not agreed).  Ranges: unaligned, a length not
	 * a multiple of 4 KiB, empty, across a chunk boundary, overlapping.
	 */
	fz_seed_bad_record(dir, "disk-past-end", false, &st[1], 17 * 65536, 65536, true);
	fz_seed_bad_record(dir, "disk-unaligned", false, &st[1], 4096, 4096, true);
	fz_seed_bad_record(dir, "disk-ranges-unaligned", true, &st[1], 4096 + 512, 4096, true);
	fz_seed_bad_record(dir, "disk-ranges-short", true, &st[1], 8192, 1000, true);
	fz_seed_bad_record(dir, "disk-ranges-empty", true, &st[1], 8192, 0, false);
	fz_seed_bad_record(dir, "disk-ranges-cross", true, &st[1], 65536 - 4096, 8192, true);
	/* Two records of epoch 2 over the same 4 KiB. */
	b = (struct fz_buf){ 0 };
	fz_put(&b, fz_prefix[1][1].p, fz_prefix[1][1].len);
	b.chain = fz_prefix[1][1].chain;
	fz_seed_epoch(&b, 1, 2, &st[1], 0, 0);
	fz_epoch(&b, 2);
	fz_epoch_disk(&b, 65536, 8192, true, 2);
	fz_epoch_disk(&b, 65536 + 4096, 4096, true, 2);
	fz_sec(&b, MIG_SEC_STATE, st[1].p, st[1].len);
	fz_epoch_end(&b, 2, 0, 2, true);
	fz_seed_tail(dir, "disk-ranges-overlap", FZ_SEED | FZ_DISK | FZ_RANGES, &b,
		     fz_prefix[1][1].len);
	free(b.p);

	/* A disk record to a standby without disks, then epoch 1 again, well formed. */
	b = (struct fz_buf){ 0 };
	fz_put(&b, fz_prefix[0][0].p, fz_prefix[0][0].len);
	fz_epoch(&b, 1);
	fz_epoch_disk(&b, 0, 512, false, 1);
	fz_sec(&b, MIG_SEC_STATE, st[0].p, st[0].len);
	fz_epoch_end(&b, 1, 0, 1, true);
	fz_seed_epoch(&b, 1, 0, &st[0], 0, 0);
	fz_seed_tail(dir, "disk-none", FZ_SEED, &b, fz_prefix[0][0].len);
	free(b.p);
	free(st[0].p);
	free(st[1].p);
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
	const char *seeds = getenv("FUZZ_STANDBY_SEEDS");

	(void)argc;
	(void)argv;
	log_set_level(LOG_ERROR);
	fz_verbose = getenv("FUZZ_STANDBY_VERBOSE") != NULL;
	signal(SIGPIPE, SIG_IGN);
	strcpy(fz_dir, "/tmp/ferry-fuzz-standby-XXXXXX");
	if (!mkdtemp(fz_dir)) {
		perror("mkdtemp");
		exit(1);
	}
	atexit(fz_cleanup);
	snprintf(fz_sock, sizeof(fz_sock), "%s/in.sock", fz_dir);
	snprintf(fz_uri, sizeof(fz_uri), "unix:%s", fz_sock);
	fz_disk.kind = BLOCK_KIND_FILE;
	snprintf(fz_disk.path, sizeof(fz_disk.path), "%s/disk.img", fz_dir);
	int fd = open(fz_disk.path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0 || ftruncate(fd, FZ_DISK_SIZE)) {
		perror(fz_disk.path);
		exit(1);
	}
	close(fd);
	mig_block_expect();
	fz_shadow = calloc(1, FZ_MAX_MEMORY);
	if (!fz_shadow)
		abort();
	for (int disk = 0; disk < 2; disk++)
		for (int ranges = 0; ranges < 2; ranges++)
			fz_prefix_make(&fz_prefix[disk][ranges], disk, ranges);
	if (seeds && *seeds)
		fz_seeds(seeds);
	return 0;
}
