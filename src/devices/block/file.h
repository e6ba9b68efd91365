/*
 * A raw image file (or block device) as a disk backend.  Reads, writes and
 * flushes go through an io_uring owned by the one thread that drives the
 * disk (the device's I/O thread); discard and write-zeroes are fallocate()
 * calls that thread makes itself.  cache=none opens the file with O_DIRECT
 * (buffers that are not aligned for it go through a bounce buffer,
 * synchronously); cache=writeback uses the page cache, and a flush is an
 * fdatasync either way.
 */
#ifndef FERRY_DEVICES_BLOCK_FILE_H
#define FERRY_DEVICES_BLOCK_FILE_H

#include <limits.h>
#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#define BLOCK_SERIAL_MAX 20	/* virtio-blk's GET_ID length */

enum block_cache {
	BLOCK_CACHE_WRITEBACK,
	BLOCK_CACHE_NONE,	/* O_DIRECT */
};

/* `--disk path=FILE[,readonly=on][,cache=none|writeback][,serial=S]` */
struct block_config {
	char path[PATH_MAX];
	bool readonly;
	enum block_cache cache;
	char serial[BLOCK_SERIAL_MAX + 1];
};

/*
 * Parse a --disk value.  Returns 0, or -EINVAL with the reason in why
 * (unknown key, missing path, a serial over 20 characters, ...).
 */
int block_config_parse(const char *spec, struct block_config *c, char *why, size_t whylen)
	__attribute__((warn_unused_result));

enum block_op {
	BLOCK_OP_READ,
	BLOCK_OP_WRITE,
	BLOCK_OP_FLUSH,
};

/*
 * An open backend.  fd, size and the flags are fixed after open; the ring
 * and `queued` belong to the thread that drives the disk.
 */
struct block_file {
	int fd;
	uint64_t size;		/* bytes */
	bool readonly;
	bool direct;		/* O_DIRECT: buffers and offsets must be aligned */
	unsigned align;		/* that alignment */
	struct io_uring ring;
	bool ring_ok;
	int done_fd;		/* eventfd: readable when completions wait */
	unsigned queued;	/* submitted, not yet reaped */
};

/*
 * Open the image of c.  Returns 0, or -errno with the reason in why:
 * -ENOENT / -EACCES (the file), -EINVAL (cache=none where the file system
 * has no O_DIRECT, or not a regular file or block device).
 */
int block_file_open(struct block_file *f, const struct block_config *c, char *why, size_t whylen)
	__attribute__((warn_unused_result));
void block_file_close(struct block_file *f);

/*
 * Queue an operation (not yet submitted: block_file_submit_all) whose
 * result comes back through block_file_reap with `user`.  READ/WRITE
 * iov must stay valid until then.  Returns 0 or -EAGAIN (ring full).
 */
int block_file_queue(struct block_file *f, enum block_op op, const struct iovec *iov,
		     unsigned n, uint64_t off, void *user) __attribute__((warn_unused_result));
/* Hand everything queued to the kernel.  Returns 0 or -errno. */
int block_file_submit_all(struct block_file *f) __attribute__((warn_unused_result));
/*
 * Call done(user, res, opaque) for every finished operation: res is the
 * byte count (0 for a flush) or -errno.  Returns how many.
 */
unsigned block_file_reap(struct block_file *f, void (*done)(void *user, int64_t res, void *opaque),
			 void *opaque);

/* Can iov/off go to the file as they are (O_DIRECT alignment)? */
bool block_file_aligned(const struct block_file *f, const struct iovec *iov, unsigned n,
			uint64_t off);
/*
 * READ or WRITE now, through an aligned bounce buffer: for buffers that
 * O_DIRECT cannot take.  Returns the bytes done or -errno.
 */
int64_t block_file_rw_bounce(struct block_file *f, enum block_op op, const struct iovec *iov,
			     unsigned n, uint64_t off);
/* Deallocate, or zero (keeping or freeing the blocks), [off, off + len) now.  0 or -errno. */
int block_file_discard(struct block_file *f, uint64_t off, uint64_t len);
int block_file_write_zeroes(struct block_file *f, uint64_t off, uint64_t len, bool unmap);

#endif
