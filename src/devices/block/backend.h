/*
 * A disk backend: where a virtio-blk disk's blocks live, behind one ops
 * table so the device does not know which it talks to (docs/devices.md):
 *
 *   file  a raw image file or block device (file.c): io_uring, OFD locks
 *   nbd   an export of an NBD server (nbd.c): libnbd, asynchronous
 *
 * Everything but open, close, activate and inactivate is called by the one
 * thread that drives the disk (its I/O thread); open and close run on the
 * thread that builds the machine, before that thread starts and after it
 * ended.  activate/inactivate run on the thread that saves or loads the
 * machine, with the I/O thread idle (the disk drained, the guest paused
 * or not yet started).
 */
#ifndef FERRY_DEVICES_BLOCK_BACKEND_H
#define FERRY_DEVICES_BLOCK_BACKEND_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define BLOCK_SERIAL_MAX 20	/* virtio-blk's GET_ID length */

enum block_kind {
	BLOCK_KIND_FILE,	/* path=FILE */
	BLOCK_KIND_NBD,		/* nbd=URI */
	BLOCK_KIND_NR
};

enum block_cache {
	BLOCK_CACHE_WRITEBACK,
	BLOCK_CACHE_NONE,	/* O_DIRECT */
};

/*
 * `--disk path=FILE[,readonly=on][,cache=none|writeback][,locking=on|off][,serial=S]`
 * or `--disk nbd=URI[,readonly=on][,serial=S]`.
 */
struct block_config {
	enum block_kind kind;
	char path[PATH_MAX];	/* the file, or the NBD URI */
	bool readonly;
	bool nolock;		/* locking=off: no image locks (file systems without them) */
	enum block_cache cache;
	char serial[BLOCK_SERIAL_MAX + 1];
};

/*
 * Parse a --disk value.  Returns 0, or -EINVAL with the reason in why
 * (unknown key, neither path nor nbd, both, a serial over 20 characters,
 * cache= with nbd, ...).
 */
int block_config_parse(const char *spec, struct block_config *c, char *why, size_t whylen)
	__attribute__((warn_unused_result));

/*
 * The size of the image open as fd: a regular file's, or a block
 * device's (file.c).  0, -EINVAL (neither, or a device whose size
 * cannot be read), or -errno (fstat).
 */
int block_file_size(int fd, uint64_t *size) __attribute__((warn_unused_result));

enum block_op {
	BLOCK_OP_READ,
	BLOCK_OP_WRITE,
	BLOCK_OP_FLUSH,
};

struct block_backend;

/* What a finished operation reports: res is the byte count (0 for a flush) or -errno. */
typedef void block_done_fn(void *user, int64_t res, void *opaque);

struct block_backend_ops {
	const char *name;
	/*
	 * Open c's image.  active: take the right to write now (the image
	 * locks); false for a migration's destination, which takes it at
	 * activate.  Returns 0 or -errno with the reason in why; -EBUSY: in
	 * use by another process.
	 */
	int (*open)(struct block_backend *bb, const struct block_config *c, bool active,
		    char *why, size_t whylen);
	void (*close)(struct block_backend *bb);
	/*
	 * Start an operation whose result comes back through reap with
	 * `user`; iov must stay valid until then.  It may complete at once
	 * (then the next reap reports it: call reap after every round of
	 * queue and submit).  Returns 0, -EAGAIN (full: submit, then retry)
	 * or -errno.
	 */
	int (*queue)(struct block_backend *bb, enum block_op op, const struct iovec *iov,
		     unsigned n, uint64_t off, void *user);
	/* Hand what was queued to the kernel.  NULL: queue starts it itself.  0 or -errno. */
	int (*submit)(struct block_backend *bb);
	/* The fd (and events) the I/O thread polls for completions; -1: none now. */
	int (*poll_fd)(struct block_backend *bb, short *events);
	/* After poll (revents of poll_fd, or 0): call done for every finished operation. */
	unsigned (*reap)(struct block_backend *bb, short revents, block_done_fn *done, void *opaque);
	/* Synchronous, on the I/O thread. 0 or -errno. */
	int (*flush)(struct block_backend *bb);
	int (*discard)(struct block_backend *bb, uint64_t off, uint64_t len);
	int (*write_zeroes)(struct block_backend *bb, uint64_t off, uint64_t len, bool unmap);
	/* Take the right to write (image locks).  NULL: nothing to take.  0 or -errno, why. */
	int (*activate)(struct block_backend *bb, char *why, size_t whylen);
	/* Give it up (after a flush).  NULL: nothing to give up. */
	void (*inactivate)(struct block_backend *bb);
};

/*
 * An open backend.  ops, size and readonly are fixed after open; priv is
 * the backend's own (its fields say who owns what).
 */
struct block_backend {
	const struct block_backend_ops *ops;
	void *priv;
	uint64_t size;		/* bytes */
	bool readonly;
};

/* Indexed by enum block_kind. */
extern const struct block_backend_ops *const block_backend_table[BLOCK_KIND_NR];
extern const struct block_backend_ops block_file_ops;
extern const struct block_backend_ops block_nbd_ops;

/* Open c with the backend of its kind (ops->open).  bb->ops is NULL when closed. */
int block_open(struct block_backend *bb, const struct block_config *c, bool active,
	       char *why, size_t whylen) __attribute__((warn_unused_result));
void block_close(struct block_backend *bb);

#endif
