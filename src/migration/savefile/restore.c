/*
 * Reading a save file (docs/save-format.md): open and check the header,
 * metadata and block table before anything is built from them; then the
 * RAM, block by block on SAVEFILE_THREADS threads, each block's data
 * pages from where the block table places them (packed: one preadv per
 * block; unpacked: each page at its own offset), checked against the
 * block's checksum before the guest may run; then the device state
 * through the same hostile decoder a migration's STATE goes through.
 */
#include "migration/savefile/savefile.h"
#include "migration/savefile/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#define XXH_STATIC_LINKING_ONLY	/* an XXH3 state on the stack, per block */
#include <xxhash.h>

#include "board/machine_state.h"
#include "migration/digest.h"
#include "util/iov.h"
#include "util/log.h"
#include "vmm/memory.h"

int savefile_pread(int fd, void *buf, uint64_t len, uint64_t off, bool zero_past_end)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = pread(fd, p, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0 && !zero_past_end)
			return -ENODATA;
		if (n == 0) {
			memset(p, 0, len);
			return 0;
		}
		p += n;
		len -= (uint64_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

static int sf_pread(int fd, void *buf, uint64_t len, uint64_t off)
{
	return savefile_pread(fd, buf, len, off, false);
}

void savefile_close(struct savefile *sf)
{
	if (sf->fd >= 0)
		close(sf->fd);
	sf->fd = -1;
	free(sf->path);
	free(sf->meta_buf);
	free(sf->table);
	sf->path = NULL;
	sf->meta_buf = sf->table = NULL;
}

/* Read and check a checksummed part of the file into a new buffer. */
static int sf_read_part(struct savefile *sf, uint64_t off, uint64_t len, uint64_t hash,
			const char *what, uint8_t **out, char *why, size_t whylen)
{
	uint8_t *p = malloc(len ? len : 1);
	int err;

	if (!p) {
		snprintf(why, whylen, "out of memory for the %s", what);
		return -ENOMEM;
	}
	err = sf_pread(sf->fd, p, len, off);
	if (err) {
		free(p);
		snprintf(why, whylen, "cannot read the %s: %s", what,
			 err == -ENODATA ? "the file is truncated" : strerror(-err));
		return err == -ENODATA ? -EPROTO : err;
	}
	if (XXH3_64bits(p, len) != hash) {
		free(p);
		snprintf(why, whylen, "the %s fails its checksum: the file is damaged", what);
		return -EPROTO;
	}
	*out = p;
	return 0;
}

int savefile_open(struct savefile *sf, const char *path, char *why, size_t whylen)
{
	uint8_t header[SAVEFILE_HEADER_SIZE] = { 0 };
	struct savefile_block blk;
	struct stat st = { 0 };
	int err;

	memset(sf, 0, sizeof(*sf));
	sf->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (sf->fd < 0) {
		err = -errno;
		snprintf(why, whylen, "cannot open %s: %s", path, strerror(-err));
		return err;
	}
	sf->path = strdup(path);
	if (!sf->path) {
		err = -ENOMEM;
		snprintf(why, whylen, "out of memory");
		goto fail;
	}
	/* A pipe or a device would block reads beyond the reach of a signal. */
	if (fstat(sf->fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		err = S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
		snprintf(why, whylen, "%s is not a regular file", path);
		goto fail;
	}
	err = sf_pread(sf->fd, header, (uint64_t)st.st_size < sizeof(header) ?
		       (uint64_t)st.st_size : sizeof(header), 0);
	if (!err)
		err = savefile_header_decode(header, (uint64_t)st.st_size, &sf->h, why, whylen);
	else
		snprintf(why, whylen, "cannot read the header: %s", strerror(-err));
	if (err)
		goto fail;
	err = sf_read_part(sf, sf->h.meta_off, sf->h.meta_len, sf->h.meta_hash, "metadata",
			   &sf->meta_buf, why, whylen);
	if (!err)
		err = sf_read_part(sf, sf->h.table_off, sf->h.table_len, sf->h.table_hash,
				   "block table", &sf->table, why, whylen);
	if (!err)
		err = savefile_meta_decode(sf->meta_buf, sf->h.meta_len, sf->h.version, &sf->meta,
					   why, whylen);
	if (!err)
		err = savefile_check_disks(&sf->h, &sf->meta, why, whylen);
	if (!err && sf->meta.cfg.memory != sf->h.memory) {
		snprintf(why, whylen, "the header says %llu bytes of RAM, the configuration %llu",
			 (unsigned long long)sf->h.memory, (unsigned long long)sf->meta.cfg.memory);
		err = -EPROTO;
	}
	for (uint64_t b = 0; !err && b < sf->h.blocks; b++) {
		if (savefile_block_decode(&sf->h, sf->table, b, &blk)) {
			snprintf(why, whylen, "block %llu of the table has data past the end of RAM",
				 (unsigned long long)b);
			err = -EPROTO;
		}
	}
	if (!err)
		return 0;
fail:
	savefile_close(sf);
	return err;
}

/*
 * Pages of block b that hold data, from the file into dst (page k of the
 * block at dst + k pages; the others untouched), checked.  Returns 0,
 * -EPROTO (checksum, or the file ends early) or -errno, with why.
 */
/* All of iov (cnt entries, changed) at off: 0, -ENODATA where the file ends first, or -errno. */
static int sf_preadv(int fd, struct iovec *iov, int cnt, uint64_t off)
{
	while (cnt) {
		ssize_t n = preadv(fd, iov, cnt, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -ENODATA;
		off += (uint64_t)n;
		iov_advance(&iov, &cnt, (size_t)n);
	}
	return 0;
}

/*
 * The data pages of block b into dst: packed, one read of all of them
 * (scattered to their pages), else one read per run of data pages.
 */
static int sf_read_data(struct savefile *sf, uint64_t b, uint64_t data, unsigned n, uint8_t *dst)
{
	const struct savefile_header *h = &sf->h;
	bool packed = h->flags & SAVEFILE_F_PACKED;
	uint64_t off = savefile_block_off(h, sf->table, b);
	struct iovec iov[SAVEFILE_BLOCK_PAGES];
	int cnt = 0, err;

	for (unsigned k = 0; k < n;) {
		if (!(data >> k & 1)) {
			k++;
			continue;
		}
		unsigned e = k;
		while (e < n && (data >> e & 1))
			e++;
		iov[cnt].iov_base = dst + (uint64_t)k * SAVEFILE_PAGE_SIZE;
		iov[cnt++].iov_len = (size_t)(e - k) * SAVEFILE_PAGE_SIZE;
		if (!packed) {
			err = sf_preadv(sf->fd, iov, 1, off + (uint64_t)k * SAVEFILE_PAGE_SIZE);
			if (err)
				return err;
			cnt = 0;
		}
		k = e;
	}
	return cnt ? sf_preadv(sf->fd, iov, cnt, off) : 0;
}

int savefile_read_block(struct savefile *sf, uint64_t b, const struct savefile_block *blk,
			uint8_t *dst, char *why, size_t whylen)
{
	const struct savefile_header *h = &sf->h;
	uint64_t first = savefile_block_first(h, b);
	unsigned n = savefile_block_npages(h, b);
	XXH3_state_t xs;
	int err;

	err = sf_read_data(sf, b, blk->data, n, dst);
	if (err) {
		snprintf(why, whylen, "cannot read RAM block %llu: %s", (unsigned long long)b,
			 err == -ENODATA ? "the file is truncated" : strerror(-err));
		return err == -ENODATA ? -EPROTO : err;
	}
	/*
	 * A state on the stack starts as junk: one whose stale seed equals b
	 * (and no external secret) would keep a stale secret, and a good
	 * block would read as damaged.  XXH3_INITSTATE clears the seed.
	 */
	XXH3_INITSTATE(&xs);
	XXH3_64bits_reset_withSeed(&xs, b);
	for (unsigned k = 0; k < n; k++)
		if (blk->data >> k & 1)
			XXH3_64bits_update(&xs, dst + (uint64_t)k * SAVEFILE_PAGE_SIZE,
					   SAVEFILE_PAGE_SIZE);
	if (XXH3_64bits_digest(&xs) != blk->hash) {
		snprintf(why, whylen, "RAM block %llu (pages %llu..%llu) fails its checksum: the "
			 "file is damaged", (unsigned long long)b, (unsigned long long)first,
			 (unsigned long long)(first + n - 1));
		return -EPROTO;
	}
	return 0;
}

int savefile_check_cpu(const struct savefile *sf, const struct kvm_cpuid2 *host, char *why,
		       size_t whylen)
{
	char list[300];

	if (!mig_config_check_cpu(&sf->meta.cfg, host, list, sizeof(list)))
		return 0;
	snprintf(why, whylen, "the saved guest cannot run on this host: %s", list);
	return -EOPNOTSUPP;
}

uint64_t savefile_load_range(struct savefile *sf, struct guest_memory *mem, uint64_t first,
			     uint32_t count, uint64_t *sums, unsigned long *written, uint8_t *buf,
			     unsigned *damaged, char *why, size_t whylen)
{
	const struct savefile_header *h = &sf->h;
	uint64_t end = first + count <= h->pages ? first + count : h->pages, loaded = 0;
	uint64_t zero = mig_page_hash(NULL);

	for (uint64_t i = first; i < first + count; i++)
		sums[i - first] = zero;
	for (uint64_t b = first / h->block_pages; b * h->block_pages < end; b++) {
		struct savefile_block blk;
		char bwhy[256];
		if (savefile_block_decode(h, sf->table, b, &blk) || !blk.data)
			continue;	/* checked at open; nothing to load */
		if (savefile_read_block(sf, b, &blk, buf, bwhy, sizeof(bwhy))) {
			if (!(*damaged)++)
				snprintf(why, whylen, "%s", bwhy);
			continue;
		}
		uint64_t bfirst = savefile_block_first(h, b);
		unsigned n = savefile_block_npages(h, b);
		for (unsigned k = 0; k < n; k++) {
			uint64_t index = bfirst + k;
			if (!(blk.data >> k & 1) || index < first || index >= end)
				continue;
			const uint8_t *page = buf + (uint64_t)k * SAVEFILE_PAGE_SIZE;
			memcpy(guest_memory_page_alias(mem, index), page, SAVEFILE_PAGE_SIZE);
			written[index / 64] |= 1UL << (index % 64);
			sums[index - first] = mig_page_hash(page);
			loaded++;
		}
	}
	return loaded;
}

/* Shared by the loader threads: `next`, `err` and the counters atomically; `why` by the first to fail. */
struct load_job {
	struct savefile *sf;
	struct guest_memory *mem;
	uint64_t next;
	int err;
	uint64_t data_pages;
	char why[256];
};

static void load_fail(struct load_job *j, int err, const char *why)
{
	int zero = 0;

	if (__atomic_compare_exchange_n(&j->err, &zero, err, false, __ATOMIC_ACQ_REL,
					__ATOMIC_RELAXED))
		snprintf(j->why, sizeof(j->why), "%s", why);
}

static void *load_thread(void *opaque)
{
	struct load_job *j = opaque;
	struct savefile_block blk;
	char why[256];

	while (!__atomic_load_n(&j->err, __ATOMIC_RELAXED)) {
		uint64_t b = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED);
		if (b >= j->sf->h.blocks)
			break;
		if (savefile_block_decode(&j->sf->h, j->sf->table, b, &blk) || !blk.data) {
			/* Checked at open; an all-zero block stays holes, nothing to read. */
			continue;
		}
		uint64_t first = savefile_block_first(&j->sf->h, b);
		/* Allocate each run of data pages at once rather than a fault per page; zero pages stay holes. */
		for (unsigned k = 0, n = savefile_block_npages(&j->sf->h, b); k < n;) {
			unsigned e = k;
			while (e < n && (blk.data >> e & 1))
				e++;
			if (e > k)
				guest_memory_populate(j->mem, first + k, e - k);
			k = e + 1;
		}
		int err = savefile_read_block(j->sf, b, &blk, guest_memory_page_alias(j->mem, first),
					      why, sizeof(why));
		if (err)
			load_fail(j, err, why);
		__atomic_add_fetch(&j->data_pages, (uint64_t)__builtin_popcountll(blk.data),
				   __ATOMIC_RELAXED);
	}
	return NULL;
}

int savefile_load_ram(struct savefile *sf, struct guest_memory *mem, struct savefile_stats *st,
		      char *why, size_t whylen)
{
	struct load_job j = { .sf = sf, .mem = mem };
	pthread_t t[SAVEFILE_THREADS - 1];
	unsigned started = 0;
	uint64_t t0 = vm_now_ns();

	if (mem->size != sf->h.memory) {
		snprintf(why, whylen, "the VM has %llu bytes of RAM, the file %llu",
			 (unsigned long long)mem->size, (unsigned long long)sf->h.memory);
		return -EINVAL;
	}
	for (; started < SAVEFILE_THREADS - 1; started++)
		if (pthread_create(&t[started], NULL, load_thread, &j))
			break;
	load_thread(&j);
	for (unsigned i = 0; i < started; i++)
		pthread_join(t[i], NULL);
	if (j.err) {
		snprintf(why, whylen, "%s", j.why);
		return j.err;
	}
	st->data_pages = j.data_pages;
	st->zero_pages = sf->h.pages - j.data_pages;
	st->file_bytes = sf->h.file_size;
	st->total_ns = vm_now_ns() - t0;
	return 0;
}

int savefile_load_state(struct savefile *sf, struct machine *m, char *why, size_t whylen)
{
	struct vmstate_error verr = { 0 };
	struct machine_state ms;
	int err;

	err = machine_state_decode(sf->meta.state, sf->meta.state_len, m->vm.nr_vcpus, &ms, &verr);
	if (err) {
		snprintf(why, whylen, "bad device state: %s", verr.msg);
		return -EPROTO;
	}
	err = machine_state_match(m, &ms, &verr);
	if (err) {
		snprintf(why, whylen, "the device state does not fit this VM: %s", verr.msg);
		machine_state_free(&ms);
		return -EPROTO;
	}
	err = machine_state_apply(m, &ms);
	machine_state_free(&ms);
	/* KVM refusing state that decoded fine is a file this host cannot take (as incoming.c). */
	if (err)
		snprintf(why, whylen, "the device state does not load here: %s", strerror(-err));
	return err && err != -ENOMEM ? -EPROTO : err;
}
