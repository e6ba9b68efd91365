/*
 * A raw image file (or block device) as a disk backend.  Reads, writes and
 * flushes go through an io_uring owned by the one thread that drives the
 * disk (the device's I/O thread); discard and write-zeroes are fallocate()
 * calls that thread makes itself.  cache=none opens the file with O_DIRECT
 * (buffers that are not aligned for it go through a bounce buffer,
 * synchronously, and complete at the next reap); cache=writeback uses the
 * page cache, where writes are copied synchronously too (file_now says
 * why), and a flush is an fdatasync either way.  While active, the
 * image is locked (lock.h) unless locking=off.
 */
#include "devices/block/backend.h"
#include "devices/block/lock.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <liburing.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#define BLOCK_RING_ENTRIES	256	/* one virtqueue's worth */
#define BLOCK_DIRECT_ALIGN	512

/*
 * fd, the flags and path are fixed after open; the ring, queued and now[]
 * belong to the I/O thread; locked to the thread that (in)activates.
 */
struct block_file {
	int fd;
	bool direct;		/* O_DIRECT: buffers and offsets must be aligned */
	unsigned align;		/* that alignment */
	bool lock;		/* take the image locks when active */
	bool locked;		/* holding them */
	struct io_uring ring;
	bool ring_ok;
	int done_fd;		/* eventfd: readable when completions wait */
	unsigned queued;	/* submitted, not yet reaped */
	unsigned nr_now;	/* bounced operations done, not yet reaped */
	struct { void *user; int64_t res; } now[BLOCK_RING_ENTRIES];
	char path[PATH_MAX];
};

static struct block_file *file_of(struct block_backend *bb)
{
	return bb->priv;
}

/* ---- open -------------------------------------------------------------- */

int block_file_size(int fd, uint64_t *size)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (S_ISREG(st.st_mode)) {
		*size = (uint64_t)st.st_size;
		return 0;
	}
	if (S_ISBLK(st.st_mode) && ioctl(fd, BLKGETSIZE64, size) == 0)
		return 0;
	return -EINVAL;
}

static int file_size(struct block_file *f, uint64_t *size, char *why, size_t whylen)
{
	int err = block_file_size(f->fd, size);

	if (err == -EINVAL)
		snprintf(why, whylen, "not a regular file or block device");
	return err;
}

static int file_activate(struct block_backend *bb, char *why, size_t whylen)
{
	struct block_file *f = file_of(bb);
	int err;

	if (!f->lock || f->locked)
		return 0;
	err = block_lock_take(f->fd, !bb->readonly, f->path, why, whylen);
	f->locked = !err;
	return err;
}

static void file_inactivate(struct block_backend *bb)
{
	struct block_file *f = file_of(bb);

	if (f->locked)
		block_lock_release(f->fd);
	f->locked = false;
}

static void file_close(struct block_backend *bb)
{
	struct block_file *f = file_of(bb);

	if (!f)
		return;
	if (f->ring_ok)
		io_uring_queue_exit(&f->ring);
	if (f->done_fd >= 0)
		close(f->done_fd);
	if (f->fd >= 0)
		close(f->fd);	/* drops its locks with it */
	free(f);
	bb->priv = NULL;
}

static int file_open(struct block_backend *bb, const struct block_config *c, bool active,
		     char *why, size_t whylen)
{
	int flags = (c->readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC;
	struct block_file *f = calloc(1, sizeof(*f));
	int err;

	if (!f)
		return -ENOMEM;
	bb->priv = f;
	f->fd = f->done_fd = -1;
	f->direct = c->cache == BLOCK_CACHE_NONE;
	f->align = f->direct ? BLOCK_DIRECT_ALIGN : 1;
	f->lock = !c->nolock;
	snprintf(f->path, sizeof(f->path), "%s", c->path);
	f->fd = open(c->path, flags | (f->direct ? O_DIRECT : 0));
	if (f->fd < 0) {
		err = -errno;
		if (err == -EINVAL && f->direct)
			snprintf(why, whylen, "cache=none: its file system does not do O_DIRECT");
		else
			snprintf(why, whylen, "%s", strerror(-err));
		goto fail;
	}
	err = file_size(f, &bb->size, why, whylen);
	if (!err && active)
		err = file_activate(bb, why, whylen);
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
	file_close(bb);
	return err;
}

/* ---- synchronous: the bounce path -------------------------------------- */

/* Can iov/off go to the file as they are (O_DIRECT alignment)? */
static bool file_aligned(const struct block_file *f, const struct iovec *iov, unsigned n,
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

/*
 * READ or WRITE now, through an aligned buffer.  Returns the bytes done
 * (perhaps fewer than asked: the device asks again for the rest) or -errno.
 */
static int64_t file_rw_bounce(struct block_file *f, enum block_op op, const struct iovec *iov,
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
		/* Only what was read: a short read leaves the rest of buf uninitialised. */
		size_t got = (size_t)r;
		done = 0;
		for (unsigned i = 0; i < n && done < got; done += iov[i].iov_len, i++)
			memcpy(iov[i].iov_base, buf + done,
			       iov[i].iov_len < got - done ? iov[i].iov_len : got - done);
	}
	free(buf);
	return r;
}

/* A WRITE into the page cache, now.  Returns the bytes done or -errno. */
static int64_t file_write_now(struct block_file *f, const struct iovec *iov, unsigned n,
			      uint64_t off)
{
	ssize_t r;

	do {
		r = pwritev(f->fd, iov, (int)n, (off_t)off);
	} while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : r;
}

/* ---- asynchronous: io_uring -------------------------------------------- */

/*
 * Does this operation run now, on the I/O thread, rather than through the
 * ring?  Unaligned O_DIRECT buffers need the bounce.  Buffered writes: on
 * file systems that cannot copy into the page cache without blocking (ext4)
 * io_uring punts every one to an io-wq worker, which runs writes to one
 * inode one at a time anyway; the copy costs the same here, without a
 * worker wakeup and a completion wakeup per request.  The price: a write
 * throttled by dirty page writeback holds up this disk's other requests.
 */
static bool file_now(const struct block_file *f, enum block_op op, const struct iovec *iov,
		     unsigned n, uint64_t off)
{
	if (op == BLOCK_OP_FLUSH)
		return false;
	if (op == BLOCK_OP_WRITE && !f->direct)
		return true;
	return !file_aligned(f, iov, n, off);
}

static int file_queue(struct block_backend *bb, enum block_op op, const struct iovec *iov,
		      unsigned n, uint64_t off, void *user)
{
	struct block_file *f = file_of(bb);
	struct io_uring_sqe *sqe;

	if (file_now(f, op, iov, n, off)) {
		if (f->nr_now == BLOCK_RING_ENTRIES)
			return -EAGAIN;
		f->now[f->nr_now].user = user;
		f->now[f->nr_now++].res = f->direct ? file_rw_bounce(f, op, iov, n, off)
						    : file_write_now(f, iov, n, off);
		return 0;
	}
	sqe = io_uring_get_sqe(&f->ring);
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

static int file_submit(struct block_backend *bb)
{
	struct block_file *f = file_of(bb);
	int r;

	if (!f->queued)
		return 0;
	do {
		r = io_uring_submit(&f->ring);
	} while (r == -EINTR);
	return r < 0 ? r : 0;
}

static int file_poll_fd(struct block_backend *bb, short *events)
{
	*events = POLLIN;
	return file_of(bb)->done_fd;
}

static unsigned file_reap(struct block_backend *bb, short revents, block_done_fn *done,
			  void *opaque)
{
	struct block_file *f = file_of(bb);
	struct io_uring_cqe *cqe;
	unsigned n = 0;
	uint64_t v;

	while (f->nr_now) {
		f->nr_now--;
		done(f->now[f->nr_now].user, f->now[f->nr_now].res, opaque);
		n++;
	}
	/* Consume the wakeup first: a completion after this wakes us again. */
	if (read(f->done_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return n;
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

static int file_flush(struct block_backend *bb)
{
	return fdatasync(file_of(bb)->fd) ? -errno : 0;
}

static int file_discard(struct block_backend *bb, uint64_t off, uint64_t len)
{
	if (fallocate(file_of(bb)->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
		      (off_t)len) == 0)
		return 0;
	/* Discard is a hint (§5.2.6.2): a file system without holes ignores it. */
	return errno == EOPNOTSUPP ? 0 : -errno;
}

/* Zeroes by writing them, for file systems without fallocate modes. */
static int file_write_zero_bytes(struct block_file *f, uint64_t off, uint64_t len)
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

static int file_write_zeroes(struct block_backend *bb, uint64_t off, uint64_t len, bool unmap)
{
	struct block_file *f = file_of(bb);
	int mode = unmap ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
			 : FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;

	if (fallocate(f->fd, mode, (off_t)off, (off_t)len) == 0)
		return 0;
	if (errno != EOPNOTSUPP && errno != EINVAL)
		return -errno;
	return file_write_zero_bytes(f, off, len);
}

const struct block_backend_ops block_file_ops = {
	.name = "file",
	.open = file_open,
	.close = file_close,
	.queue = file_queue,
	.submit = file_submit,
	.poll_fd = file_poll_fd,
	.reap = file_reap,
	.flush = file_flush,
	.discard = file_discard,
	.write_zeroes = file_write_zeroes,
	.activate = file_activate,
	.inactivate = file_inactivate,
};
