/*
 * Writing a save file (docs/save-format.md): the guest paused throughout,
 * RAM written packed by SAVEFILE_THREADS threads, a 32 MiB segment each at
 * a time, straight from guest memory with pwritev (the segment's data
 * pages one after another, its writeback started as soon as it is
 * written), then the metadata, the block table
 * and last the header, into PATH.tmp; synced and renamed, so `path` holds
 * either nothing new or a whole file.
 */
#include "migration/savefile/savefile.h"
#include "migration/savefile/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "board/machine_state.h"
#include "util/iov.h"
#include "util/log.h"
#include "vmm/memory.h"

/* Shared by the writer threads: `next` and `err` atomically, table entries each its own. */
struct save_job {
	struct guest_memory *mem;
	const struct savefile_header *h;
	uint8_t *table;
	int fd;
	uint64_t next;			/* next segment to take */
	int err;			/* first failure, 0 if none */
	uint64_t data_pages;
};

/* A segment's data pages on their way out: pages adjacent in guest memory share an entry. */
#define SAVE_IOV	256
#define SAVE_FLUSH	(8ULL << 20)	/* bytes gathered before a write */
struct save_out {
	struct iovec iov[SAVE_IOV];
	int cnt;
	uint64_t off;			/* where iov[0] goes in the file */
	uint64_t len;			/* bytes in iov */
};

bool savefile_page_zero(const uint8_t *p)
{
	const uint64_t *w = (const uint64_t *)(const void *)p;

	for (unsigned i = 0; i < SAVEFILE_PAGE_SIZE / 8; i++)
		if (w[i])
			return false;
	return true;
}

int savefile_pwrite(int fd, const uint8_t *p, uint64_t len, uint64_t off)
{
	while (len) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		len -= (uint64_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/* All of o's pages at o->off, one after another.  Returns 0 or -errno. */
static int save_flush(struct save_job *j, struct save_out *o)
{
	struct iovec *iov = o->iov;
	int cnt = o->cnt;
	uint64_t off = o->off;

	while (cnt) {
		ssize_t n = pwritev(j->fd, iov, cnt, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		off += (uint64_t)n;
		iov_advance(&iov, &cnt, (size_t)n);
	}
	o->off += o->len;
	o->len = 0;
	o->cnt = 0;
	return 0;
}

/* One more data page, next in the file. */
static int save_add(struct save_job *j, struct save_out *o, const uint8_t *page)
{
	struct iovec *last = o->cnt ? &o->iov[o->cnt - 1] : NULL;
	int err;

	if (last && (const uint8_t *)last->iov_base + last->iov_len == page) {
		last->iov_len += SAVEFILE_PAGE_SIZE;
	} else {
		if (o->cnt == SAVE_IOV && (err = save_flush(j, o)))
			return err;
		o->iov[o->cnt].iov_base = (void *)page;
		o->iov[o->cnt++].iov_len = SAVEFILE_PAGE_SIZE;
	}
	o->len += SAVEFILE_PAGE_SIZE;
	return o->len >= SAVE_FLUSH ? save_flush(j, o) : 0;
}

/*
 * One block: only allocated pages are looked at (reading a hole would
 * allocate it), only non-zero ones written, packed after the segment's
 * pages before them.  cur: the thread's cursor (blocks are taken in
 * increasing order, the guest is paused).
 */
static int save_block(struct save_job *j, uint64_t b, XXH3_state_t *xs,
		      struct guest_data_cursor *cur, struct save_out *o)
{
	uint64_t first = savefile_block_first(j->h, b), end = first + savefile_block_npages(j->h, b);
	struct savefile_block blk = { 0 };
	uint64_t p = first, rf, rn;
	int err = 0;

	XXH3_64bits_reset_withSeed(xs, b);
	while (!err && p < end && guest_memory_data_run_at(j->mem, cur, p, end - p, &rf, &rn)) {
		for (uint64_t q = rf; q < rf + rn && !err; q++) {
			const uint8_t *page = guest_memory_page_alias(j->mem, q);
			if (savefile_page_zero(page))
				continue;
			blk.data |= 1ULL << (q - first);
			XXH3_64bits_update(xs, page, SAVEFILE_PAGE_SIZE);
			err = save_add(j, o, page);
		}
		p = rf + rn;
	}
	blk.hash = XXH3_64bits_digest(xs);
	savefile_block_encode(j->table, b, &blk);
	__atomic_add_fetch(&j->data_pages, (uint64_t)__builtin_popcountll(blk.data), __ATOMIC_RELAXED);
	return err;
}

/*
 * Segment s: its blocks' data pages in one run from the segment's start,
 * then the disk is set to work on them at once (the final fsync waits for
 * less), while the next segment is gathered.
 */
static int save_segment(struct save_job *j, uint64_t s, XXH3_state_t *xs,
			struct guest_data_cursor *cur, struct save_out *o)
{
	const uint64_t per_seg = SAVEFILE_SEG_PAGES / SAVEFILE_BLOCK_PAGES;
	uint64_t start = j->h->ram_off + s * SAVEFILE_SEG_PAGES * SAVEFILE_PAGE_SIZE;
	int err = 0;

	o->off = start;
	o->cnt = 0;
	o->len = 0;
	for (uint64_t b = s * per_seg; !err && b < j->h->blocks && b < (s + 1) * per_seg; b++)
		err = save_block(j, b, xs, cur, o);
	if (!err)
		err = save_flush(j, o);
	if (!err && o->off > start)
		(void)sync_file_range(j->fd, (off_t)start, (off_t)(o->off - start),
				      SYNC_FILE_RANGE_WRITE);
	return err;
}

static void *save_thread(void *opaque)
{
	const uint64_t per_seg = SAVEFILE_SEG_PAGES / SAVEFILE_BLOCK_PAGES;
	struct save_job *j = opaque;
	XXH3_state_t *xs = XXH3_createState();
	struct guest_data_cursor cur = { 0 };
	struct save_out *o = malloc(sizeof(*o));

	if (!xs || !o) {
		__atomic_store_n(&j->err, -ENOMEM, __ATOMIC_RELAXED);
		goto out;
	}
	while (!__atomic_load_n(&j->err, __ATOMIC_RELAXED)) {
		uint64_t s = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED);
		if (s * per_seg >= j->h->blocks)
			break;
		int err = save_segment(j, s, xs, &cur, o);
		if (err) {
			int zero = 0;
			__atomic_compare_exchange_n(&j->err, &zero, err, false, __ATOMIC_RELAXED,
						    __ATOMIC_RELAXED);
		}
	}
out:
	free(o);
	XXH3_freeState(xs);
	return NULL;
}

/* RAM on SAVEFILE_THREADS threads, plus this one.  Returns 0 or -errno. */
static int save_ram(struct save_job *j)
{
	pthread_t t[SAVEFILE_THREADS - 1];
	unsigned started = 0;

	for (; started < SAVEFILE_THREADS - 1; started++)
		if (pthread_create(&t[started], NULL, save_thread, j))
			break;
	save_thread(j);
	for (unsigned i = 0; i < started; i++)
		pthread_join(t[i], NULL);
	return j->err;
}

int savefile_machine_disks(struct machine *m, enum savefile_disk_mode mode, bool live,
			   struct savefile_disk_rec *recs, char *why, size_t whylen)
{
	for (unsigned i = 0; i < m->nr_disks; i++) {
		const struct block_config *c = &m->disks[i].cfg;
		struct savefile_disk_rec *r = &recs[i];
		int err;

		memset(r, 0, sizeof(*r));
		r->mode = (uint8_t)mode;
		if (c->kind != BLOCK_KIND_FILE) {
			if (mode == SAVEFILE_DISK_COPY) {
				snprintf(why, whylen, "disk %u is an NBD export: --disks copy copies "
					 "image files only (save it with --disks path)", i);
				return -EINVAL;
			}
			continue;	/* by its URI, without identity */
		}
		err = savefile_disk_probe(c->path, r, why, whylen);
		if (err)
			return err;
		if (live && mode == SAVEFILE_DISK_PATH)
			r->flags |= SAVEFILE_DISK_F_LIVE;
	}
	return 0;
}

/* The configuration and the disks and NICs as options, with the device state. */
int savefile_machine_meta(struct machine *m, const struct vmstate_buf *state,
			  const struct savefile_disk_rec *recs, uint8_t **meta, size_t *len,
			  char *why, size_t whylen)
{
	char specs[MACHINE_VIRTIO_SLOTS][SAVEFILE_SPEC_MAX];
	const char *disks[MACHINE_MAX_DISKS], *nics[MACHINE_MAX_NICS];
	struct mig_config cfg = {
		.memory = m->vm.mem.size, .vcpus = m->vm.nr_vcpus, .page_size = SAVEFILE_PAGE_SIZE,
	};
	size_t cl = strlen(m->cmdline);
	int err;

	if (cl > sizeof(cfg.cmdline)) {
		snprintf(why, whylen, "the command line is too long to record");
		return -E2BIG;
	}
	cfg.cmdline_len = (uint16_t)cl;
	memcpy(cfg.cmdline, m->cmdline, cl);
	/* The CPU the guest runs on, as CONFIG carries it: a restore checks its host against it. */
	if (m->vm.cpuid)
		mig_config_set_cpuid(&cfg, m->vm.cpuid);
	for (unsigned i = 0; i < m->nr_disks; i++) {
		err = savefile_disk_spec(&m->disks[i].cfg, specs[i], sizeof(specs[i]), why, whylen);
		if (err)
			return err;
		disks[i] = specs[i];
	}
	for (unsigned i = 0; i < m->nr_nics; i++) {
		char *s = specs[m->nr_disks + i];
		err = savefile_nic_spec(&m->nics[i].cfg, s, SAVEFILE_SPEC_MAX, why, whylen);
		if (err)
			return err;
		nics[i] = s;
	}
	err = savefile_meta_encode(&cfg, m->kernel, disks, recs, m->nr_disks, nics, m->nr_nics,
				   state->data, state->len, meta, len);
	if (err)
		snprintf(why, whylen, "cannot record the configuration: %s", strerror(-err));
	return err;
}

void savefile_sync_dir(const char *path)
{
	char *copy = strdup(path);
	int fd = copy ? open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;

	if (fd < 0 || fsync(fd) < 0)
		pr_warn("saved %s, but could not sync its directory: a crash now may lose it", path);
	if (fd >= 0)
		close(fd);
	free(copy);
}

int savefile_finish(int fd, struct savefile_header *h, const uint8_t *table,
		    const uint8_t *meta, size_t meta_len)
{
	uint8_t header[SAVEFILE_HEADER_SIZE];
	struct timespec now;
	int err;

	h->meta_hash = XXH3_64bits(meta, meta_len);
	h->table_hash = savefile_table_hash(table, h->table_len);
	clock_gettime(CLOCK_REALTIME, &now);
	h->saved_ns = (uint64_t)now.tv_sec * 1000000000ULL + (uint64_t)now.tv_nsec;
	savefile_header_encode(h, header);
	/* The header last: until it is written the file is no save file at all. */
	err = savefile_pwrite(fd, meta, meta_len, h->meta_off) ?:
	      savefile_pwrite(fd, table, h->table_len, h->table_off) ?:
	      savefile_pwrite(fd, header, sizeof(header), 0);
	if (!err && fsync(fd) < 0)
		err = -errno;
	return err;
}

/* The file sized as h lays it out, then RAM into it and the table (h->table_len bytes). */
static int save_ram_file(struct guest_memory *mem, int fd, const struct savefile_header *h,
			 uint8_t *table, struct savefile_stats *st)
{
	struct save_job j = { .mem = mem, .fd = fd, .h = h, .table = table };
	int err;

	/* The size first: RAM not written stays a hole, and a reader can check the size. */
	err = ftruncate(fd, (off_t)h->file_size) < 0 ? -errno : save_ram(&j);
	st->data_pages = j.data_pages;
	st->zero_pages = h->pages - j.data_pages;
	st->file_bytes = h->file_size;
	return err;
}

int savefile_write(struct guest_memory *mem, int fd, const uint8_t *meta, size_t meta_len,
		   struct savefile_stats *st)
{
	struct savefile_header h;
	uint8_t *table;
	int err;

	savefile_layout(&h, mem->size, meta_len);
	h.flags |= SAVEFILE_F_PACKED;
	table = calloc(1, h.table_len);
	if (!table)
		return -ENOMEM;
	err = save_ram_file(mem, fd, &h, table, st);
	if (!err)
		err = savefile_finish(fd, &h, table, meta, meta_len);
	free(table);
	return err;
}

/* Everything into tmp, synced.  Returns 0 or -errno with why. */
int savefile_create_tmp(const char *path, char **tmp, char *why, size_t whylen)
{
	int fd;

	if (asprintf(tmp, "%s.tmp", path) < 0) {
		*tmp = NULL;
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	}
	/* Guest memory: readable by its owner only; a planted symlink is not followed. */
	fd = open(*tmp, O_RDWR | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		fd = -errno;
		snprintf(why, whylen, "cannot create %s: %s", *tmp, strerror(-fd));
	}
	return fd;
}

int savefile_write_disks(struct guest_memory *mem, int fd, const char *const *paths,
			 struct savefile_disk_rec *recs, unsigned nr_disks,
			 savefile_meta_fn *meta_fn, void *opaque, struct savefile_stats *st,
			 char *why, size_t whylen)
{
	struct savefile_header h;
	uint8_t *meta = NULL, *table = NULL;
	size_t meta_len, len2;
	int err;

	err = meta_fn(opaque, recs, &meta, &meta_len, why, whylen);
	if (err)
		return err;
	savefile_layout(&h, mem->size, meta_len);
	h.flags |= SAVEFILE_F_PACKED;
	err = savefile_layout_disks(&h, recs, nr_disks);
	if (err) {
		snprintf(why, whylen, "a disk is too large to copy (at most 16 TiB)");
		goto out;
	}
	table = calloc(1, h.table_len);
	err = table ? save_ram_file(mem, fd, &h, table, st) : -ENOMEM;
	if (err) {
		snprintf(why, whylen, "cannot write the save file: %s", strerror(-err));
		goto out;
	}
	for (unsigned i = 0; i < nr_disks && !err; i++) {
		if (recs[i].mode != SAVEFILE_DISK_COPY)
			continue;
		err = savefile_disk_copy(paths[i], fd, &recs[i], why, whylen);
		st->disk_bytes += recs[i].len;
		st->disk_data_pages += recs[i].data_pages;
	}
	if (err)
		goto out;
	/* Again, with the copies' checksums: the same length, as records are of fixed size. */
	free(meta);
	meta = NULL;
	err = meta_fn(opaque, recs, &meta, &len2, why, whylen);
	if (!err && len2 != meta_len) {
		snprintf(why, whylen, "the metadata changed length (%zu, then %zu)", meta_len, len2);
		err = -EIO;
	}
	if (err)
		goto out;
	err = savefile_finish(fd, &h, table, meta, meta_len);
	if (err)
		snprintf(why, whylen, "cannot write the save file: %s", strerror(-err));
out:
	free(table);
	free(meta);
	return err;
}

struct save_meta_ctx {
	struct machine *m;
	const struct vmstate_buf *state;
};

static int save_meta(void *opaque, const struct savefile_disk_rec *recs, uint8_t **meta,
		     size_t *len, char *why, size_t whylen)
{
	struct save_meta_ctx *c = opaque;

	return savefile_machine_meta(c->m, c->state, recs, meta, len, why, whylen);
}

/*
 * RAM, then the copied disks after it (the guest paused, the disks
 * drained and flushed), then the metadata, which records the copies'
 * checksums, the table and the header.
 */
static int save_write(struct machine *m, int fd, const struct vmstate_buf *state,
		      const struct savefile_save_opts *o, struct savefile_stats *st, char *why,
		      size_t whylen)
{
	struct savefile_disk_rec recs[MACHINE_MAX_DISKS];
	const char *paths[MACHINE_MAX_DISKS];
	struct save_meta_ctx c = { .m = m, .state = state };
	int err;

	st->state_bytes = state->len;
	err = savefile_machine_disks(m, o->disks, o->keep_running, recs, why, whylen);
	if (err)
		return err;
	for (unsigned i = 0; i < m->nr_disks; i++)
		paths[i] = m->disks[i].cfg.path;
	return savefile_write_disks(&m->vm.mem, fd, paths, recs, m->nr_disks, save_meta, &c, st,
				    why, whylen);
}

/* The paused machine to path (through path.tmp).  Returns 0 or -errno with why. */
static int save_to(struct machine *m, const char *path, const struct savefile_save_opts *o,
		   struct savefile_stats *st, char *why, size_t whylen)
{
	struct vmstate_buf state;
	struct stat sb;
	char *tmp = NULL;
	int fd, err;

	if (!stat(path, &sb) && S_ISDIR(sb.st_mode)) {
		snprintf(why, whylen, "%s is a directory", path);
		return -EISDIR;
	}
	vmstate_buf_init(&state);
	err = machine_state_encode(m, &state);
	if (err) {
		snprintf(why, whylen, "cannot save the device state: %s", strerror(-err));
		goto out;
	}
	fd = savefile_create_tmp(path, &tmp, why, whylen);
	if (fd < 0) {
		err = fd;
		goto out;
	}
	err = save_write(m, fd, &state, o, st, why, whylen);
	close(fd);
	if (!err && rename(tmp, path) < 0) {
		err = -errno;
		snprintf(why, whylen, "cannot rename %s to %s: %s", tmp, path, strerror(-err));
	}
	if (err)
		unlink(tmp);	/* a failed save leaves nothing */
	else
		savefile_sync_dir(path);
out:
	free(tmp);
	vmstate_buf_free(&state);
	return err;
}

int savefile_save_paused(struct machine *m, const char *path, struct savefile_stats *st,
			 char *why, size_t whylen)
{
	/* The VM runs on elsewhere (a migration's base): its disks go on changing. */
	struct savefile_save_opts o = { .keep_running = true, .disks = SAVEFILE_DISK_PATH };

	memset(st, 0, sizeof(*st));
	return save_to(m, path, &o, st, why, whylen);
}

int savefile_save(struct machine *m, const char *path, const struct savefile_save_opts *o,
		  struct savefile_stats *st, char *why, size_t whylen)
{
	enum vm_state vs = vm_get_state(&m->vm);
	bool was_running = vs == VM_STATE_RUNNING;
	uint64_t t0 = vm_now_ns(), t1;
	char awhy[256];
	int err;

	memset(st, 0, sizeof(*st));
	if (vs != VM_STATE_RUNNING && vs != VM_STATE_PAUSED) {
		snprintf(why, whylen, "the VM is %s", vm_state_name(vs));
		return -EBUSY;
	}
	err = was_running ? vm_pause(&m->vm, VM_PAUSE_TIMEOUT_NS) : 0;
	if (err) {
		snprintf(why, whylen, "the vCPUs did not stop: %s", vm_pause_strerror(err));
		return err;
	}
	/* In-flight I/O done, disks flushed and released: the image and the disks agree. */
	err = machine_quiesce(m);
	if (!err)
		err = machine_inactivate(m);
	if (err) {
		snprintf(why, whylen, "cannot bring the devices to rest: %s", strerror(-err));
		goto resume;
	}
	/* The disks are read now (--disks copy), while the guest stays paused. */
	err = save_to(m, path, o, st, why, whylen);
	if (!err && !o->keep_running) {
		/* The file holds the guest now: this copy must never run again. */
		st->total_ns = st->paused_ns = vm_now_ns() - t0;
		vm_request_stop(&m->vm, VM_STOP_REQUESTED, 0);
		return 0;
	}
	if (machine_activate(m, awhy, sizeof(awhy))) {
		pr_err("after the save: %s; the guest stays paused", awhy);
		if (!err)
			snprintf(why, whylen, "saved, but %s; the guest stays paused", awhy);
		return err ? err : -EBUSY;
	}
resume:
	t1 = vm_now_ns();
	if (was_running && vm_resume(&m->vm))
		pr_warn("the VM stopped during the save");
	st->total_ns = st->paused_ns = t1 - t0;
	return err;
}
