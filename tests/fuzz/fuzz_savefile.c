/*
 * libFuzzer target: arbitrary bytes as a save file (docs/save-format.md)
 * through the real reader: savefile_open(), then, if it passes,
 * savefile_load_ram() into 16..64 MiB of RAM (a memfd: no KVM needed),
 * the copied disks' reader (savefile_disk_verify()) and the device
 * state's decoder.  See tests/fuzz/README.md.
 *
 * Input: one mode byte, then the file's first bytes.  Mode bit 1 set: the
 * file is extended (sparse, zeros) or cut to the size its header asks
 * for, so inputs of at most 64 KiB reach past the size check.  Mode bit 0
 * set: every checksum is rewritten to match (each block's over the file's
 * pages, the table's, the metadata's, the header's), so mutations reach
 * the decoders behind them.  Mode bit 2 set: the file is also restored
 * lazily (lazy.c: userfaultfd on a second RAM, a fault thread and a
 * prefetch thread) while this thread touches pages in an order the mode
 * byte's upper bits choose; where the eager load succeeded, the lazy one
 * must too, with the same RAM.
 *
 * FUZZ_SAVEFILE_LAZY_REPEAT=N: each input's lazy restore N times, for
 * replaying a finding that depends on the threads' timing.
 *
 * FUZZ_SAVEFILE_SEEDS=DIR: write the seeds (real saves: see fz_seed) into
 * DIR and exit.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "board/machine.h"
#include "board/machine_state.h"
#include "migration/savefile/savefile.h"
#include "util/le.h"
#include "util/log.h"
#include "vmm/memory.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_MAX_MEMORY	(64ULL << 20)
#define FZ_FIX_SUMS	0x01
#define FZ_FIX_SIZE	0x02
#define FZ_LAZY		0x04
#define FZ_LAZY_WAIT_MS	10000	/* a lazy restore not done by then is a finding (a hang) */

static char fz_path[64];
static int fz_lazy_repeat = 1;	/* FUZZ_SAVEFILE_LAZY_REPEAT=N: each lazy restore N times (races) */

/*
 * One seed: a real save of `memory` bytes (pages `every`-th of the first
 * `upto` written with a pattern), with these disks and NICs; the mode
 * byte, then the file's header, metadata and table (RAM comes back as
 * zeros through FZ_FIX_SIZE).
 */
static void fz_seed_one(const char *dir, const char *name, uint64_t memory,
			const char *const *disks, unsigned nd, const char *const *nics, unsigned nn,
			uint64_t every, uint64_t upto, const uint8_t *state, size_t state_len,
			bool lazy)
{
	struct mig_config cfg = { .memory = memory, .vcpus = 1, .page_size = 4096 };
	struct guest_memory mem;
	struct savefile_stats st;
	char path[512];
	uint8_t *meta, *buf;
	size_t len;
	int fd;

	if (guest_memory_create(&mem, cfg.memory) ||
	    savefile_meta_encode(&cfg, "probe.elf", disks, NULL, nd, nics, nn, state, state_len,
				 &meta, &len))
		exit(1);
	for (uint64_t i = 0; every && i < upto && i < guest_memory_pages(&mem); i += every)
		memset(guest_memory_page_alias(&mem, i), (int)i + 1, 64);
	fd = open(fz_path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || savefile_write(&mem, fd, meta, len, &st))
		exit(1);
	buf = malloc(65536);
	if (!buf)
		exit(1);
	buf[0] = FZ_FIX_SUMS | FZ_FIX_SIZE | (lazy ? FZ_LAZY | 0x28 : 0);
	len = (size_t)pread(fd, buf + 1, 65535, 0);
	close(fd);
	guest_memory_destroy(&mem);
	free(meta);
	if (len > 4096 + (size_t)le_get(buf + 1 + 72, 8) + (size_t)le_get(buf + 1 + 48, 8))
		len = 4096 + (size_t)le_get(buf + 1 + 72, 8) + (size_t)le_get(buf + 1 + 48, 8);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, buf, len + 1) != (ssize_t)(len + 1))
		exit(1);
	close(fd);
	free(buf);
	unlink(fz_path);
	printf("%s: %zu bytes\n", path, len + 1);
}

struct fz_disk_meta {
	const char *const *specs;
	const uint8_t *state;
	size_t state_len;
};

static int fz_disk_meta(void *opaque, const struct savefile_disk_rec *recs, uint8_t **meta,
			size_t *len, char *why, size_t whylen)
{
	struct fz_disk_meta *c = opaque;
	struct mig_config cfg = { .memory = 16ULL << 20, .vcpus = 1, .page_size = 4096 };

	(void)why;
	(void)whylen;
	return savefile_meta_encode(&cfg, "probe.elf", c->specs, recs, 2, NULL, 0, c->state,
				    c->state_len, meta, len);
}

/*
 * save-disks: 16 MiB, two disk images of 1 MiB + 512 bytes (all holes,
 * so the copy's checksum holds for the zeros FZ_FIX_SIZE gives it): the
 * first copied into the file (--disks copy), the second kept by path,
 * both with their size and identity.
 */
static void fz_seed_disks(const char *dir, const uint8_t *state, size_t state_len)
{
	char img[2][64], specs[2][80], path[512], why[256];
	const char *paths[2] = { img[0], img[1] }, *sp[2] = { specs[0], specs[1] };
	struct fz_disk_meta c = { .specs = sp, .state = state, .state_len = state_len };
	struct savefile_disk_rec recs[2] = { { .mode = SAVEFILE_DISK_COPY },
					     { .mode = SAVEFILE_DISK_PATH } };
	struct guest_memory mem;
	struct savefile_stats st = { 0 };
	uint8_t *buf;
	ssize_t len;
	int fd;

	for (unsigned i = 0; i < 2; i++) {
		snprintf(img[i], sizeof(img[i]), "/tmp/fuzz-savefile-%d-%u.img", (int)getpid(), i);
		snprintf(specs[i], sizeof(specs[i]), "path=%s", img[i]);
		fd = open(img[i], O_RDWR | O_CREAT | O_TRUNC, 0600);
		if (fd < 0 || ftruncate(fd, (1 << 20) + 512) ||
		    savefile_disk_probe(img[i], &recs[i], why, sizeof(why)))
			exit(1);
		close(fd);
	}
	fd = open(fz_path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || guest_memory_create(&mem, 16ULL << 20))
		exit(1);
	memset(guest_memory_page_alias(&mem, 3), 0x5a, 64);
	if (savefile_write_disks(&mem, fd, paths, recs, 2, fz_disk_meta, &c, &st, why, sizeof(why))) {
		fprintf(stderr, "save-disks: %s\n", why);
		exit(1);
	}
	buf = malloc(65536);
	if (!buf)
		exit(1);
	buf[0] = FZ_FIX_SUMS | FZ_FIX_SIZE;
	len = pread(fd, buf + 1, 65535, 0);
	close(fd);
	if (len < 4096)
		exit(1);
	if ((uint64_t)len > 4096 + le_get(buf + 1 + 72, 8) + le_get(buf + 1 + 48, 8))
		len = (ssize_t)(4096 + le_get(buf + 1 + 72, 8) + le_get(buf + 1 + 48, 8));
	snprintf(path, sizeof(path), "%s/save-disks", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, buf, (size_t)len + 1) != len + 1)
		exit(1);
	close(fd);
	free(buf);
	guest_memory_destroy(&mem);
	unlink(fz_path);
	unlink(img[0]);
	unlink(img[1]);
	printf("%s: %zd bytes\n", path, len + 1);
}

/*
 * save-16M: 16 MiB, data pages in the first blocks, two disks (a file, a
 * read-only NBD export), a real device state (run from the repository's
 * top directory); save-nics: 32 MiB, one disk, two NICs, a page in
 * every block (every block's mask and digest used); save-empty: 18 MiB
 * (a last block of RAM not 2 MiB-aligned to the table), all holes.
 */
/*
 * A real device state of a 1-vCPU VM (it takes KVM to make one): the STATE
 * section of fuzz_incoming's seed verified-2-passes, when it is there.
 * Returns its length (a malloc'ed copy in *out), or 0.
 */
static size_t fz_real_state(uint8_t **out)
{
	FILE *f = fopen("tests/fuzz/seeds/fuzz_incoming/verified-2-passes", "rb");
	static uint8_t s[1 << 17];
	size_t n = f ? fread(s, 1, sizeof(s), f) : 0, off = 1 + 12;

	if (f)
		fclose(f);
	while (off + 8 <= n) {
		uint32_t len = (uint32_t)le_get(s + off + 4, 4);
		if (len > n - off - 8)
			break;
		if (s[off] == 4 && (*out = malloc(len))) {	/* MIG_SEC_STATE */
			memcpy(*out, s + off + 8, len);
			return len;
		}
		off += 8 + (size_t)len + 8;
	}
	return 0;
}

static void fz_seed(const char *dir)
{
	const char *disks[] = { "path=/var/lib/a.img", "nbd=nbd://host/x,readonly=on" };
	const char *one[] = { "path=/var/lib/b.img,cache=none,serial=S1" };
	const char *nics[] = { "tap=fz0", "tap=fz1" };
	static const uint8_t zeros[64];
	uint8_t *real = NULL;
	size_t real_len = fz_real_state(&real);

	fz_seed_one(dir, "save-16M", 16ULL << 20, disks, 2, NULL, 0, 7, 300,
		    real_len ? real : zeros, real_len ? real_len : sizeof(zeros), false);
	fz_seed_one(dir, "save-nics", 32ULL << 20, one, 1, nics, 2, 61, ~0ULL, zeros, sizeof(zeros),
		    false);
	fz_seed_one(dir, "save-empty", 18ULL << 20, NULL, 0, NULL, 0, 0, 0, zeros, sizeof(zeros),
		    false);
	fz_seed_one(dir, "lazy-16M", 16ULL << 20, disks, 2, NULL, 0, 7, 300,
		    real_len ? real : zeros, real_len ? real_len : sizeof(zeros), true);
	fz_seed_one(dir, "lazy-nics", 32ULL << 20, one, 1, nics, 2, 61, ~0ULL, zeros, sizeof(zeros),
		    true);
	fz_seed_disks(dir, real_len ? real : zeros, real_len ? real_len : sizeof(zeros));
	if (!real_len)
		fprintf(stderr, "no real device state found: save-16M carries zeros\n");
	free(real);
	exit(0);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *seeds = getenv("FUZZ_SAVEFILE_SEEDS");

	const char *repeat = getenv("FUZZ_SAVEFILE_LAZY_REPEAT");

	log_set_level(getenv("FUZZ_SAVEFILE_VERBOSE") ? LOG_DEBUG : LOG_ERROR);
	if (repeat && atoi(repeat) > 0)
		fz_lazy_repeat = atoi(repeat);
	snprintf(fz_path, sizeof(fz_path), "/tmp/fuzz-savefile-%d.sav", (int)getpid());
	if (seeds)
		fz_seed(seeds);
	return 0;
}

/* Rewrite every checksum of the file at fd (of its header's layout) to match. */
static void fz_fix_sums(int fd, uint64_t size)
{
	uint8_t page[SAVEFILE_HEADER_SIZE], *meta, *table, *blk;
	struct savefile_header h;
	char why[256];

	if (size < SAVEFILE_HEADER_SIZE || pread(fd, page, sizeof(page), 0) != sizeof(page))
		return;
	/* Decoding needs a matching header checksum: give it one first. */
	le_put(page + SAVEFILE_HEADER_SIZE - 8, XXH3_64bits(page, SAVEFILE_HEADER_SIZE - 8), 8);
	if (savefile_header_decode(page, size, &h, why, sizeof(why)) &&
	    !strstr(why, "checksum"))
		return;
	if (!h.meta_len || h.file_size != size || h.memory > FZ_MAX_MEMORY)
		return;
	meta = malloc(h.meta_len);
	table = malloc(h.table_len);
	blk = malloc((size_t)h.block_pages * SAVEFILE_PAGE_SIZE);
	if (meta && table && blk &&
	    pread(fd, meta, h.meta_len, (off_t)h.meta_off) == (ssize_t)h.meta_len &&
	    pread(fd, table, h.table_len, (off_t)h.table_off) == (ssize_t)h.table_len) {
		for (uint64_t b = 0; b < h.blocks; b++) {
			uint64_t mask = le_get(table + b * SAVEFILE_ENTRY_SIZE, 8);
			XXH3_state_t *xs = XXH3_createState();
			XXH3_64bits_reset_withSeed(xs, b);
			for (unsigned k = 0; k < savefile_block_npages(&h, b); k++) {
				uint64_t off = savefile_page_off(&h, table, b, k);
				if (!(mask >> k & 1) ||
				    pread(fd, blk, SAVEFILE_PAGE_SIZE, (off_t)off) != SAVEFILE_PAGE_SIZE)
					continue;
				XXH3_64bits_update(xs, blk, SAVEFILE_PAGE_SIZE);
			}
			le_put(table + b * SAVEFILE_ENTRY_SIZE + 8, XXH3_64bits_digest(xs), 8);
			XXH3_freeState(xs);
		}
		h.meta_hash = XXH3_64bits(meta, h.meta_len);
		h.table_hash = savefile_table_hash(table, h.table_len);
		if (pwrite(fd, table, h.table_len, (off_t)h.table_off) == (ssize_t)h.table_len) {
			le_put(page + 56, h.meta_hash, 8);
			le_put(page + 80, h.table_hash, 8);
			le_put(page + SAVEFILE_HEADER_SIZE - 8,
			       XXH3_64bits(page, SAVEFILE_HEADER_SIZE - 8), 8);
			if (pwrite(fd, page, sizeof(page), 0) != sizeof(page))
				abort();
		}
	}
	free(meta);
	free(table);
	free(blk);
}

/* The lazy restore's end, as the restore command learns it. */
struct fz_lazy_end {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
	int err;
};

static void fz_lazy_done(void *opaque, int err)
{
	struct fz_lazy_end *e = opaque;

	pthread_mutex_lock(&e->lock);
	e->done = true;
	e->err = err;
	pthread_cond_broadcast(&e->cond);
	pthread_mutex_unlock(&e->lock);
}

/*
 * Restore sf lazily into a machine of its own (no KVM: only its RAM and
 * run control are used), touching pages from `first` every `stride`-th
 * as a guest would; then wait for the restore to end.  When the eager
 * load into `eager` succeeded, the lazy one must end well with the same
 * RAM; either way it must end.
 */
static void fz_lazy(struct savefile *sf, const struct guest_memory *eager, bool eager_ok,
		    uint64_t first, uint64_t stride)
{
	static struct machine m;
	struct savefile_lazy lz = { 0 };
	struct fz_lazy_end end = { .lock = PTHREAD_MUTEX_INITIALIZER,
				   .cond = PTHREAD_COND_INITIALIZER };
	char why[256];
	volatile uint8_t sink = 0;

	memset(&m, 0, sizeof(m));
	pthread_mutex_init(&m.vm.lock, NULL);
	pthread_cond_init(&m.vm.cond, NULL);
	m.vm.kvm_fd = m.vm.vm_fd = m.vm.stop_efd = -1;
	if (guest_memory_create(&m.vm.mem, sf->h.memory))
		return;
	lz.done = fz_lazy_done;
	lz.opaque = &end;
	if (savefile_lazy_start(&lz, sf, &m, why, sizeof(why))) {
		pr_debug("no lazy restore here: %s", why);	/* no userfaultfd: nothing to try */
		guest_memory_destroy(&m.vm.mem);
		return;
	}
	uint64_t pages = guest_memory_pages(&m.vm.mem);
	for (uint64_t i = first % pages, n = 0; n < 4096 && i < pages; i += stride, n++)
		sink ^= *(volatile uint8_t *)guest_memory_page_ptr(&m.vm.mem, i);
	(void)sink;

	struct timespec t;
	clock_gettime(CLOCK_REALTIME, &t);
	t.tv_sec += FZ_LAZY_WAIT_MS / 1000;
	pthread_mutex_lock(&end.lock);
	while (!end.done && pthread_cond_timedwait(&end.cond, &end.lock, &t) == 0)
		;
	bool done = end.done;
	int err = end.err;
	pthread_mutex_unlock(&end.lock);
	if (!done) {
		fprintf(stderr, "lazy restore did not end in %d ms\n", FZ_LAZY_WAIT_MS);
		abort();
	}
	savefile_lazy_stop(&lz);
	if (eager_ok && err) {
		fprintf(stderr, "eager load succeeded, lazy restore failed: %s\n", lz.why);
		for (uint64_t b = 0; b < sf->h.blocks; b++) {
			struct savefile_block blk;
			uint8_t *buf = aligned_alloc(4096, (size_t)sf->h.block_pages * 4096);
			if (buf && !savefile_block_decode(&sf->h, sf->table, b, &blk) && blk.data &&
			    savefile_read_block(sf, b, &blk, buf, why, sizeof(why)))
				fprintf(stderr, "  block %llu read again now: %s\n",
					(unsigned long long)b, why);
			free(buf);
		}
		abort();
	}
	if (eager_ok) {
		for (uint64_t i = 0; i < pages; i++) {
			if (memcmp(guest_memory_page_ptr(eager, i),
				   guest_memory_page_ptr(&m.vm.mem, i), GUEST_PAGE_SIZE)) {
				fprintf(stderr, "page %llu differs between eager and lazy restore\n",
					(unsigned long long)i);
				abort();
			}
		}
	}
	guest_memory_destroy(&m.vm.mem);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct machine_state ms;
	struct vmstate_error verr;
	struct guest_memory mem;
	struct savefile_stats st;
	struct savefile sf;
	char why[256];
	uint64_t fsize;
	int fd;

	if (size < 1)
		return 0;
	fd = open(fz_path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, data + 1, size - 1) != (ssize_t)(size - 1))
		abort();
	fsize = size - 1;
	if ((data[0] & FZ_FIX_SIZE) && size - 1 >= 104) {
		uint64_t want = le_get(data + 1 + 96, 8);
		if (want <= FZ_MAX_MEMORY + (64ULL << 20) && !ftruncate(fd, (off_t)want))
			fsize = want;
	}
	if (data[0] & FZ_FIX_SUMS)
		fz_fix_sums(fd, fsize);
	close(fd);
	if (savefile_open(&sf, fz_path, why, sizeof(why)) == 0) {
		if (sf.h.memory <= FZ_MAX_MEMORY && guest_memory_create(&mem, sf.h.memory) == 0) {
			/* The copied disks' regions: read and checked, nothing written. */
			for (unsigned i = 0; sf.meta.has_recs && i < sf.meta.nr_disks; i++)
				if (sf.meta.drec[i].mode == SAVEFILE_DISK_COPY &&
				    sf.meta.drec[i].len <= (64ULL << 20) &&
				    savefile_disk_verify(&sf, i, why, sizeof(why)))
					pr_debug("disk %u refused: %s", i, why);
			bool ram_ok = savefile_load_ram(&sf, &mem, &st, why, sizeof(why)) == 0;
			if (ram_ok && machine_state_decode(sf.meta.state, sf.meta.state_len,
							   sf.meta.cfg.vcpus, &ms, &verr) == 0)
				machine_state_free(&ms);
			else
				pr_debug("refused later: %s", why);
			/* Upper bits: where the guest starts touching, and its stride. */
			for (int r = fz_lazy_repeat; (data[0] & FZ_LAZY) && r > 0; r--)
				fz_lazy(&sf, &mem, ram_ok, (uint64_t)(data[0] >> 3 & 3) * 1021,
					1 + ((uint64_t)(data[0] >> 5) * 97));
			guest_memory_destroy(&mem);
		}
		savefile_close(&sf);
	} else {
		pr_debug("refused: %s", why);
	}
	unlink(fz_path);
	return 0;
}
