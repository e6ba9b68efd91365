#include "devices/block/file.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#define BLOCK_RING_ENTRIES	256	/* one virtqueue's worth */
#define BLOCK_DIRECT_ALIGN	512

/* ---- --disk ------------------------------------------------------------ */

static int block_config_value(const char *key, const char *val, struct block_config *c,
			      char *why, size_t whylen)
{
	if (!strcmp(key, "path")) {
		if (!*val || strlen(val) >= sizeof(c->path))
			goto bad;
		strcpy(c->path, val);
	} else if (!strcmp(key, "readonly")) {
		if (!strcmp(val, "on"))
			c->readonly = true;
		else if (!strcmp(val, "off"))
			c->readonly = false;
		else
			goto bad;
	} else if (!strcmp(key, "cache")) {
		if (!strcmp(val, "none"))
			c->cache = BLOCK_CACHE_NONE;
		else if (!strcmp(val, "writeback"))
			c->cache = BLOCK_CACHE_WRITEBACK;
		else
			goto bad;
	} else if (!strcmp(key, "serial")) {
		if (strlen(val) > BLOCK_SERIAL_MAX)
			goto bad;
		for (const char *p = val; *p; p++)
			if (*p < 0x20 || *p > 0x7e)
				goto bad;
		strcpy(c->serial, val);
	} else {
		snprintf(why, whylen, "unknown key '%s' (path, readonly, cache, serial)", key);
		return -EINVAL;
	}
	return 0;
bad:
	snprintf(why, whylen, "bad %s '%s'%s", key, val,
		 !strcmp(key, "serial") ? ": up to 20 printable characters" :
		 !strcmp(key, "cache") ? ": none or writeback" :
		 !strcmp(key, "readonly") ? ": on or off" : "");
	return -EINVAL;
}

int block_config_parse(const char *spec, struct block_config *c, char *why, size_t whylen)
{
	char *copy = strdup(spec), *save = NULL;
	int err = 0;

	memset(c, 0, sizeof(*c));
	if (!copy)
		return -ENOMEM;
	for (char *tok = strtok_r(copy, ",", &save); tok && !err; tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '=');
		if (!eq) {
			snprintf(why, whylen, "'%s' is not KEY=VALUE", tok);
			err = -EINVAL;
			break;
		}
		*eq = '\0';
		err = block_config_value(tok, eq + 1, c, why, whylen);
	}
	free(copy);
	if (!err && !c->path[0]) {
		snprintf(why, whylen, "path=FILE is missing");
		err = -EINVAL;
	}
	return err;
}

/* ---- open -------------------------------------------------------------- */

static int block_file_size(struct block_file *f, char *why, size_t whylen)
{
	struct stat st;

	if (fstat(f->fd, &st) < 0)
		return -errno;
	if (S_ISREG(st.st_mode)) {
		f->size = (uint64_t)st.st_size;
		return 0;
	}
	if (S_ISBLK(st.st_mode) && ioctl(f->fd, BLKGETSIZE64, &f->size) == 0)
		return 0;
	snprintf(why, whylen, "not a regular file or block device");
	return -EINVAL;
}

int block_file_open(struct block_file *f, const struct block_config *c, char *why, size_t whylen)
{
	int flags = (c->readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC;
	int err;

	memset(f, 0, sizeof(*f));
	f->fd = f->done_fd = -1;
	f->readonly = c->readonly;
	f->direct = c->cache == BLOCK_CACHE_NONE;
	f->align = f->direct ? BLOCK_DIRECT_ALIGN : 1;
	f->fd = open(c->path, flags | (f->direct ? O_DIRECT : 0));
	if (f->fd < 0) {
		err = -errno;
		if (err == -EINVAL && f->direct)
			snprintf(why, whylen, "cache=none: its file system does not do O_DIRECT");
		else
			snprintf(why, whylen, "%s", strerror(-err));
		return err;
	}
	err = block_file_size(f, why, whylen);
	if (err)
		goto fail;
	f->done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (f->done_fd < 0) {
		err = -errno;
		goto fail;
	}
	err = io_uring_queue_init(BLOCK_RING_ENTRIES, &f->ring, 0);
	if (!err) {
		f->ring_ok = true;
		err = io_uring_register_eventfd(&f->ring, f->done_fd);
	}
	if (err) {
		snprintf(why, whylen, "io_uring: %s", strerror(-err));
		goto fail;
	}
	return 0;
fail:
	block_file_close(f);
	return err;
}

void block_file_close(struct block_file *f)
{
	if (f->ring_ok)
		io_uring_queue_exit(&f->ring);
	f->ring_ok = false;
	if (f->done_fd >= 0)
		close(f->done_fd);
	if (f->fd >= 0)
		close(f->fd);
	f->fd = f->done_fd = -1;
}

/* ---- asynchronous: io_uring -------------------------------------------- */

int block_file_queue(struct block_file *f, enum block_op op, const struct iovec *iov,
		     unsigned n, uint64_t off, void *user)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&f->ring);

	if (!sqe)
		return -EAGAIN;
	switch (op) {
	case BLOCK_OP_READ:
		io_uring_prep_readv(sqe, f->fd, iov, n, off);
		break;
	case BLOCK_OP_WRITE:
		io_uring_prep_writev(sqe, f->fd, iov, n, off);
		break;
	case BLOCK_OP_FLUSH:
		io_uring_prep_fsync(sqe, f->fd, IORING_FSYNC_DATASYNC);
		break;
	}
	io_uring_sqe_set_data(sqe, user);
	f->queued++;
	return 0;
}

int block_file_submit_all(struct block_file *f)
{
	int r;

	do {
		r = io_uring_submit(&f->ring);
	} while (r == -EINTR);
	return r < 0 ? r : 0;
}

unsigned block_file_reap(struct block_file *f, void (*done)(void *user, int64_t res, void *opaque),
			 void *opaque)
{
	struct io_uring_cqe *cqe;
	unsigned n = 0;
	uint64_t v;

	/* Consume the wakeup first: a completion after this wakes us again. */
	if (read(f->done_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return 0;
	while (io_uring_peek_cqe(&f->ring, &cqe) == 0) {
		void *user = io_uring_cqe_get_data(cqe);
		int64_t res = cqe->res;
		io_uring_cqe_seen(&f->ring, cqe);
		f->queued--;
		done(user, res, opaque);
		n++;
	}
	return n;
}

/* ---- synchronous ------------------------------------------------------- */

bool block_file_aligned(const struct block_file *f, const struct iovec *iov, unsigned n,
			uint64_t off)
{
	uintptr_t a = f->align - 1;

	if (off & a)
		return false;
	for (unsigned i = 0; i < n; i++)
		if (((uintptr_t)iov[i].iov_base & a) || (iov[i].iov_len & a))
			return false;
	return true;
}

int64_t block_file_rw_bounce(struct block_file *f, enum block_op op, const struct iovec *iov,
			     unsigned n, uint64_t off)
{
	size_t len = 0, done = 0;
	uint8_t *buf;
	ssize_t r;

	for (unsigned i = 0; i < n; i++)
		len += iov[i].iov_len;
	if (posix_memalign((void **)&buf, 4096, len ? len : 1))
		return -ENOMEM;
	if (op == BLOCK_OP_WRITE)
		for (unsigned i = 0; i < n; done += iov[i].iov_len, i++)
			memcpy(buf + done, iov[i].iov_base, iov[i].iov_len);
	do {
		r = op == BLOCK_OP_WRITE ? pwrite(f->fd, buf, len, (off_t)off)
					 : pread(f->fd, buf, len, (off_t)off);
	} while (r < 0 && errno == EINTR);
	if (r < 0) {
		r = -errno;
	} else if (op == BLOCK_OP_READ) {
		done = 0;
		for (unsigned i = 0; i < n; done += iov[i].iov_len, i++)
			memcpy(iov[i].iov_base, buf + done, iov[i].iov_len);
	}
	free(buf);
	return r;
}

int block_file_discard(struct block_file *f, uint64_t off, uint64_t len)
{
	if (fallocate(f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) == 0)
		return 0;
	/* Discard is a hint (§5.2.6.2): a file system without holes ignores it. */
	return errno == EOPNOTSUPP ? 0 : -errno;
}

/* Zeroes by writing them, for file systems without fallocate modes. */
static int block_file_write_zero_bytes(struct block_file *f, uint64_t off, uint64_t len)
{
	const size_t chunk = 1 << 20;
	uint8_t *z;
	int err = 0;

	if (posix_memalign((void **)&z, 4096, chunk))
		return -ENOMEM;
	memset(z, 0, chunk);
	while (len && !err) {
		size_t n = len < chunk ? (size_t)len : chunk;
		ssize_t r = pwrite(f->fd, z, n, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			err = r < 0 ? -errno : -EIO;
		else {
			off += (uint64_t)r;
			len -= (uint64_t)r;
		}
	}
	free(z);
	return err;
}

int block_file_write_zeroes(struct block_file *f, uint64_t off, uint64_t len, bool unmap)
{
	int mode = unmap ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
			 : FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;

	if (fallocate(f->fd, mode, (off_t)off, (off_t)len) == 0)
		return 0;
	if (errno != EOPNOTSUPP && errno != EINVAL)
		return -errno;
	return block_file_write_zero_bytes(f, off, len);
}
