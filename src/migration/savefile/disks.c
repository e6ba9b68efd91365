/*
 * A save file's disks (docs/save-format.md, "Disks"): each recorded by
 * its size and identity (the hash of its first 64 KiB), checked when a
 * restore opens it again; with `ferry save --disks copy` its contents in
 * a region of the file after RAM, at a fixed page-aligned offset, where
 * only pages that are not all zero are written (holes stay holes: the
 * image's holes are skipped with SEEK_DATA/SEEK_HOLE and never read) and
 * a restore writes them into a new image.
 *
 * The copy's checksum covers content, not layout: XXH3-64 over the index
 * and bytes of every page that is not all zero, in order
 * (savefile_disk_hash_page()), so a file copied to a file system that
 * stores its holes otherwise (or fills them) checks the same.
 */
#include "migration/savefile/savefile.h"
#include "migration/savefile/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "devices/block/lock.h"
#include "util/le.h"

#define DISK_CHUNK	(1u << 20)	/* read and hashed a MiB at a time */

static int disk_ident(int fd, uint64_t size, uint64_t *ident)
{
	size_t n = size < SAVEFILE_IDENT_LEN ? (size_t)size : SAVEFILE_IDENT_LEN;
	uint8_t *buf = malloc(n ? n : 1);
	int err;

	if (!buf)
		return -ENOMEM;
	err = savefile_pread(fd, buf, n, 0, true);
	if (!err)
		*ident = XXH3_64bits(buf, n);
	free(buf);
	return err;
}

void savefile_disk_hash_page(XXH3_state_t *xs, uint64_t index, const uint8_t *page)
{
	uint8_t le[8];

	le_put(le, index, 8);
	XXH3_64bits_update(xs, le, sizeof(le));
	XXH3_64bits_update(xs, page, SAVEFILE_PAGE_SIZE);
}

int savefile_disk_probe(const char *path, struct savefile_disk_rec *r, char *why, size_t whylen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), err;

	if (fd < 0) {
		err = -errno;
		snprintf(why, whylen, "cannot open disk %s: %s", path, strerror(-err));
		return err;
	}
	err = block_file_size(fd, &r->size);
	if (!err)
		err = disk_ident(fd, r->size, &r->ident);
	close(fd);
	if (err) {
		snprintf(why, whylen, "cannot read disk %s: %s", path,
			 err == -EINVAL ? "not a regular file or block device" : strerror(-err));
		return err;
	}
	if (r->size > SAVEFILE_DISK_MAX) {
		snprintf(why, whylen, "disk %s is larger than 16 TiB", path);
		return -E2BIG;
	}
	r->flags |= SAVEFILE_DISK_F_IDENT;
	return 0;
}

int savefile_disk_check(const struct savefile_disk_rec *r, unsigned index, const char *path,
			char *why, size_t whylen)
{
	struct savefile_disk_rec now = { 0 };
	int err;

	if (!(r->flags & SAVEFILE_DISK_F_IDENT))
		return 0;	/* an NBD export: nothing recorded to check */
	err = savefile_disk_probe(path, &now, why, whylen);
	if (err)
		return err;
	if (now.size != r->size) {
		snprintf(why, whylen, "disk %u, %s, is %llu bytes; it was %llu at the save (give "
			 "the saved image with --disk)", index, path, (unsigned long long)now.size,
			 (unsigned long long)r->size);
		return -EPROTO;
	}
	if (now.ident != r->ident) {
		snprintf(why, whylen, "disk %u, %s, changed since the save (its first %u KiB differ)",
			 index, path, SAVEFILE_IDENT_LEN >> 10);
		return -ESTALE;
	}
	return 0;
}

/*
 * Walk pages [0, len / 4096) of fd from `base`, reading only its data
 * (SEEK_DATA/SEEK_HOLE; holes read as zero pages and are skipped), a
 * chunk at a time.  Bytes at `size` and past it: zeroed (tail_zero) or
 * required to be zero (else -EPROTO, why).  Every page not all zero is
 * hashed into xs, counted, and handed on in runs to run(opaque, first
 * page, pages, data).  0 or -errno (why).
 */
struct disk_walk {
	int fd;
	uint64_t base, len, size;
	bool tail_zero;
	int (*run)(void *opaque, uint64_t first, uint64_t n, const uint8_t *data);
	void *opaque;
	XXH3_state_t *xs;
	uint64_t data_pages;
};

/* The chunk of len bytes at relative offset x, in buf: hash and hand on its data pages. */
static int disk_walk_chunk(struct disk_walk *w, uint8_t *buf, uint64_t x, uint64_t len,
			   char *why, size_t whylen)
{
	uint64_t first = x / SAVEFILE_PAGE_SIZE, npages = len / SAVEFILE_PAGE_SIZE, run = 0;
	int err = 0;

	if (x + len > w->size) {
		uint64_t from = w->size > x ? w->size - x : 0;
		if (w->tail_zero) {
			memset(buf + from, 0, len - from);
		} else {
			for (uint64_t k = from; k < len; k++)
				if (buf[k]) {
					snprintf(why, whylen, "data past the end of the disk");
					return -EPROTO;
				}
		}
	}
	for (uint64_t k = 0; k < npages && !err; k++) {
		const uint8_t *page = buf + k * SAVEFILE_PAGE_SIZE;
		if (savefile_page_zero(page)) {
			if (k > run)
				err = w->run(w->opaque, first + run, k - run, buf + run * SAVEFILE_PAGE_SIZE);
			run = k + 1;
			continue;
		}
		savefile_disk_hash_page(w->xs, first + k, page);
		w->data_pages++;
	}
	if (!err && npages > run)
		err = w->run(w->opaque, first + run, npages - run, buf + run * SAVEFILE_PAGE_SIZE);
	if (err)
		snprintf(why, whylen, "%s", strerror(-err));
	return err;
}

static int disk_walk(struct disk_walk *w, char *why, size_t whylen)
{
	uint8_t *buf = NULL;
	uint64_t pos = 0;
	int err = 0;

	if (posix_memalign((void **)&buf, SAVEFILE_PAGE_SIZE, DISK_CHUNK))
		return -ENOMEM;
	/* Each round moves pos forward by at least a page: at most len / 4096 rounds. */
	while (!err && pos < w->len) {
		off_t d = lseek(w->fd, (off_t)(w->base + pos), SEEK_DATA), e;
		if (d < 0 && errno == ENXIO)
			break;		/* nothing but a hole to the end of the file */
		if (d < 0)
			d = (off_t)(w->base + pos);	/* no SEEK_DATA here: all of it is data */
		if ((uint64_t)d >= w->base + w->len)
			break;
		e = lseek(w->fd, d, SEEK_HOLE);
		if (e < 0 || (uint64_t)e > w->base + w->len)
			e = (off_t)(w->base + w->len);
		uint64_t from = ((uint64_t)d - w->base) / SAVEFILE_PAGE_SIZE * SAVEFILE_PAGE_SIZE;
		uint64_t to = ((uint64_t)e - w->base + SAVEFILE_PAGE_SIZE - 1) / SAVEFILE_PAGE_SIZE *
			      SAVEFILE_PAGE_SIZE;
		if (from < pos)
			from = pos;
		if (to > w->len)
			to = w->len;
		if (to <= from)
			to = from + SAVEFILE_PAGE_SIZE;
		for (uint64_t x = from; x < to && !err;) {
			uint64_t n = to - x < DISK_CHUNK ? to - x : DISK_CHUNK;
			err = savefile_pread(w->fd, buf, n, w->base + x, true);
			if (err)
				snprintf(why, whylen, "%s", strerror(-err));
			else
				err = disk_walk_chunk(w, buf, x, n, why, whylen);
			x += n;
		}
		pos = to;
	}
	free(buf);
	return err;
}

/* ---- save: an image into its region ------------------------------------ */

struct disk_out {
	int fd;
	uint64_t off;		/* where page 0 goes */
	uint64_t limit;		/* bytes that may be written from off (the image's size, or the region) */
};

static int disk_out_run(void *opaque, uint64_t first, uint64_t n, const uint8_t *data)
{
	struct disk_out *o = opaque;
	uint64_t at = first * SAVEFILE_PAGE_SIZE, len = n * SAVEFILE_PAGE_SIZE;

	if (at >= o->limit)
		return 0;
	if (len > o->limit - at)
		len = o->limit - at;
	return savefile_pwrite(o->fd, data, len, o->off + at);
}

int savefile_disk_copy(const char *path, int fd, struct savefile_disk_rec *r, char *why,
		       size_t whylen)
{
	struct disk_out o = { .fd = fd, .off = r->off, .limit = r->len };
	struct disk_walk w = { .base = 0, .len = r->len, .size = r->size, .tail_zero = true,
			       .run = disk_out_run, .opaque = &o };
	char wwhy[200];
	uint64_t size;
	int err;

	w.fd = open(path, O_RDONLY | O_CLOEXEC);
	if (w.fd < 0) {
		err = -errno;
		snprintf(why, whylen, "cannot open disk %s to copy it: %s", path, strerror(-err));
		return err;
	}
	w.xs = XXH3_createState();
	err = w.xs ? block_file_size(w.fd, &size) : -ENOMEM;
	if (!err && size != r->size) {
		snprintf(why, whylen, "disk %s changed size during the save", path);
		err = -EAGAIN;
	} else if (!err) {
		XXH3_64bits_reset(w.xs);
		err = disk_walk(&w, wwhy, sizeof(wwhy));
		if (err)
			snprintf(why, whylen, "cannot copy disk %s: %s", path, wwhy);
	} else {
		snprintf(why, whylen, "cannot copy disk %s: %s", path, strerror(-err));
	}
	if (!err) {
		r->data_pages = w.data_pages;
		r->digest = XXH3_64bits_digest(w.xs);
	}
	XXH3_freeState(w.xs);
	close(w.fd);
	return err;
}

/* ---- restore: a region into a new image -------------------------------- */

/*
 * Check the region of disk i against its record, and with fd >= 0 write
 * its data into fd (an image of the disk's size, all zeros).  0 or -errno
 * (-EPROTO: damaged) with why.
 */
static int disk_unpack(struct savefile *sf, unsigned i, int fd, char *why, size_t whylen)
{
	const struct savefile_disk_rec *r = &sf->meta.drec[i];
	struct disk_out o = { .fd = fd, .off = 0, .limit = r->size };
	struct disk_walk w = { .fd = sf->fd, .base = r->off, .len = r->len, .size = r->size,
			       .run = disk_out_run, .opaque = &o };
	char wwhy[200];
	int err;

	w.xs = XXH3_createState();
	if (!w.xs)
		return -ENOMEM;
	XXH3_64bits_reset(w.xs);
	if (fd < 0)
		o.limit = 0;	/* check only */
	err = disk_walk(&w, wwhy, sizeof(wwhy));
	if (err)
		snprintf(why, whylen, "disk %u's copy in the save file: %s", i, wwhy);
	if (!err && (w.data_pages != r->data_pages || XXH3_64bits_digest(w.xs) != r->digest)) {
		snprintf(why, whylen, "disk %u's copy fails its checksum: the file is damaged", i);
		err = -EPROTO;
	}
	XXH3_freeState(w.xs);
	return err;
}

int savefile_disk_verify(struct savefile *sf, unsigned i, char *why, size_t whylen)
{
	return disk_unpack(sf, i, -1, why, whylen);
}

int savefile_disk_restore(struct savefile *sf, unsigned i, const struct block_config *c,
			  char *why, size_t whylen)
{
	const struct savefile_disk_rec *r = &sf->meta.drec[i];
	char *tmp = NULL;
	int lock_fd, fd = -1, err;
	struct stat st;

	if (!sf->meta.has_recs || i >= sf->meta.nr_disks || r->mode != SAVEFILE_DISK_COPY) {
		snprintf(why, whylen, "disk %u was not copied into the save file", i);
		return -EINVAL;
	}
	if (c->kind != BLOCK_KIND_FILE || c->readonly) {
		snprintf(why, whylen, "disk %u's copy is restored into a writable image file: give "
			 "--disk path=NEW", i);
		return -EINVAL;
	}
	/* An image there already: the user named it; but not one another VM uses. */
	lock_fd = open(c->path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (lock_fd < 0 && errno != ENOENT) {
		err = -errno;
		snprintf(why, whylen, "disk %u: cannot open %s: %s", i, c->path, strerror(-err));
		return err;
	}
	if (lock_fd >= 0 && (fstat(lock_fd, &st) < 0 || !S_ISREG(st.st_mode))) {
		snprintf(why, whylen, "disk %u: %s is not a regular file (a copied disk is restored "
			 "into a new image file)", i, c->path);
		err = -EINVAL;
		goto out;
	}
	if (lock_fd >= 0 && !c->nolock) {
		err = block_lock_take(lock_fd, true, c->path, why, whylen);
		if (err)
			goto out;
	}
	fd = savefile_create_tmp(c->path, &tmp, why, whylen);
	if (fd < 0) {
		err = fd;
		goto out;
	}
	err = ftruncate(fd, (off_t)r->size) < 0 ? -errno : 0;
	if (err)
		snprintf(why, whylen, "disk %u: cannot size %s: %s", i, tmp, strerror(-err));
	else
		err = disk_unpack(sf, i, fd, why, whylen);
	if (!err && fsync(fd) < 0) {
		err = -errno;
		snprintf(why, whylen, "disk %u: cannot sync %s: %s", i, tmp, strerror(-err));
	}
	if (!err && rename(tmp, c->path) < 0) {
		err = -errno;
		snprintf(why, whylen, "disk %u: cannot rename %s to %s: %s", i, tmp, c->path,
			 strerror(-err));
	}
	if (err)
		unlink(tmp);	/* what was there stays as it was */
	else
		savefile_sync_dir(c->path);
out:
	if (fd >= 0)
		close(fd);
	if (lock_fd >= 0)
		close(lock_fd);	/* its locks go with it */
	free(tmp);
	return err;
}
