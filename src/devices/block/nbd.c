/*
 * An NBD export as a disk backend, through libnbd.  The handle is
 * connected on the thread that builds the machine and driven afterwards
 * by the disk's I/O thread alone: it polls the socket (poll_fd), lets
 * libnbd read and write (reap), and libnbd calls the completion callbacks
 * on that thread.  Reads and writes are asynchronous commands, split at
 * the server's largest request; discard, write-zeroes and flush are
 * synchronous (they block the I/O thread, never a vCPU).
 *
 * The server is hostile like every peer: libnbd checks the protocol
 * (reply lengths, handles, structured chunks); here the size and block
 * limits it announced are checked before use.  NBD has no locks: see
 * docs/devices.md for who keeps two VMs off one export.
 */
#include "devices/block/backend.h"

#include <errno.h>
#include <libnbd.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NBD_CHUNK_MAX	(32u << 20)	/* qemu-nbd's and most servers' maximum */
#define NBD_RANGE_MAX	(1u << 30)	/* trim / zero commands: 32-bit lengths on the wire */
#define NBD_SECTOR	512

/* One READ/WRITE/FLUSH, from queue to reap; owned by the I/O thread. */
struct nbd_req {
	struct nbd_req *next;		/* on the done list */
	void *user;
	enum block_op op;
	const struct iovec *iov;	/* the caller's, for a bounced read */
	unsigned niov;
	uint8_t *bounce;		/* several buffers: one contiguous copy */
	uint64_t len;
	unsigned pending;		/* commands (and the queue's guard) not yet done */
	int err;			/* the first error */
};

/* Fixed after open but for done (the I/O thread's). */
struct block_nbd {
	struct nbd_handle *h;
	uint32_t chunk;			/* largest read/write command */
	bool can_flush, can_trim, can_zero;
	struct nbd_req *done;		/* finished, not yet reaped */
};

static struct block_nbd *nbd_of(struct block_backend *bb)
{
	return bb->priv;
}

static int nbd_errno(void)
{
	int e = nbd_get_errno();

	return e > 0 ? -e : -EIO;
}

static void nbd_close_backend(struct block_backend *bb)
{
	struct block_nbd *n = nbd_of(bb);

	if (!n)
		return;
	if (n->h) {
		/* A clean disconnect (nothing is in flight: the I/O thread ended). */
		if (nbd_aio_is_ready(n->h))
			(void)nbd_shutdown(n->h, 0);
		nbd_close(n->h);
	}
	free(n);
	bb->priv = NULL;
}

/* What the server said about itself, checked before use. */
static int nbd_check_export(struct block_backend *bb, struct block_nbd *n, const char *uri,
			    char *why, size_t whylen)
{
	int64_t size = nbd_get_size(n->h), min = nbd_get_block_size(n->h, LIBNBD_SIZE_MINIMUM);
	int64_t max = nbd_get_block_size(n->h, LIBNBD_SIZE_MAXIMUM);

	if (size < NBD_SECTOR) {
		snprintf(why, whylen, "%s: %s", uri, size < 0 ? nbd_get_error() :
			 "the export is smaller than one sector");
		return size < 0 ? nbd_errno() : -EINVAL;
	}
	/* virtio-blk sends 512-byte sectors: a server that wants more cannot take them. */
	if (min > NBD_SECTOR) {
		snprintf(why, whylen, "%s: the server wants requests in blocks of %lld bytes; "
			 "ferry sends 512", uri, (long long)min);
		return -EINVAL;
	}
	if (nbd_is_read_only(n->h) == 1 && !bb->readonly) {
		snprintf(why, whylen, "%s: the export is read-only: add readonly=on", uri);
		return -EROFS;
	}
	bb->size = (uint64_t)size;
	n->chunk = max >= NBD_SECTOR && max < NBD_CHUNK_MAX ? (uint32_t)(max & ~(NBD_SECTOR - 1))
							    : NBD_CHUNK_MAX;
	n->can_flush = nbd_can_flush(n->h) == 1;
	n->can_trim = nbd_can_trim(n->h) == 1;
	n->can_zero = nbd_can_zero(n->h) == 1;
	return 0;
}

static int nbd_open_backend(struct block_backend *bb, const struct block_config *c, bool active,
			    char *why, size_t whylen)
{
	struct block_nbd *n = calloc(1, sizeof(*n));
	int err;

	if (!n)
		return -ENOMEM;
	bb->priv = n;
	n->h = nbd_create();
	if (!n->h) {
		snprintf(why, whylen, "libnbd: %s", nbd_get_error());
		err = -ENOMEM;
		goto fail;
	}
	/* Only what is documented: no TLS, vsock or ssh sockets behind our back. */
	if (nbd_set_uri_allow_transports(n->h, LIBNBD_ALLOW_TRANSPORT_TCP |
					 LIBNBD_ALLOW_TRANSPORT_UNIX) == -1 ||
	    nbd_set_uri_allow_tls(n->h, LIBNBD_TLS_DISABLE) == -1 ||
	    nbd_connect_uri(n->h, c->path) == -1) {
		snprintf(why, whylen, "%s", nbd_get_error());
		err = nbd_errno();
		goto fail;
	}
	err = nbd_check_export(bb, n, c->path, why, whylen);
	if (!err)
		return 0;
fail:
	nbd_close_backend(bb);
	return err;
}

/* ---- asynchronous: reads and writes ------------------------------------ */

static void nbd_req_finish(struct block_nbd *n, struct nbd_req *r)
{
	r->next = n->done;
	n->done = r;
}

/* libnbd's completion callback, on the I/O thread. */
static int nbd_chunk_done(void *user_data, int *error)
{
	struct nbd_req *r = user_data;

	if (*error && !r->err)
		r->err = *error;
	r->pending--;
	return 1;	/* retire the command */
}

static int64_t nbd_issue(struct block_nbd *n, struct nbd_req *r, uint8_t *buf, uint64_t len,
			 uint64_t off)
{
	nbd_completion_callback cb = { .callback = nbd_chunk_done, .user_data = r };

	if (r->op == BLOCK_OP_READ)
		return nbd_aio_pread(n->h, buf, len, off, cb, 0);
	return nbd_aio_pwrite(n->h, buf, len, off, cb, 0);
}

/* One buffer, in commands of at most n->chunk bytes.  0 or -errno. */
static int nbd_issue_buf(struct block_nbd *n, struct nbd_req *r, uint8_t *buf, uint64_t len,
			 uint64_t off)
{
	for (uint64_t done = 0; done < len;) {
		uint64_t k = len - done < n->chunk ? len - done : n->chunk;
		r->pending++;
		if (nbd_issue(n, r, buf + done, k, off + done) == -1) {
			r->pending--;
			return nbd_errno();
		}
		done += k;
	}
	return 0;
}

static int nbd_queue(struct block_backend *bb, enum block_op op, const struct iovec *iov,
		     unsigned niov, uint64_t off, void *user)
{
	struct block_nbd *n = nbd_of(bb);
	struct nbd_req *r = calloc(1, sizeof(*r));
	int err = 0;

	if (!r)
		return -ENOMEM;
	*r = (struct nbd_req){ .user = user, .op = op, .iov = iov, .niov = niov,
			       .pending = 1 };	/* the guard: done only after all are issued */
	for (unsigned i = 0; i < niov; i++)
		r->len += iov[i].iov_len;
	if (op == BLOCK_OP_FLUSH) {
		nbd_completion_callback cb = { .callback = nbd_chunk_done, .user_data = r };
		if (n->can_flush) {
			r->pending++;
			if (nbd_aio_flush(n->h, cb, 0) == -1) {
				r->pending--;
				err = nbd_errno();
			}
		}
	} else if (niov == 1) {
		err = nbd_issue_buf(n, r, iov[0].iov_base, r->len, off);
	} else if (!(r->bounce = malloc(r->len ? r->len : 1))) {
		err = -ENOMEM;
	} else {
		size_t at = 0;
		for (unsigned i = 0; op == BLOCK_OP_WRITE && i < niov; at += iov[i].iov_len, i++)
			memcpy(r->bounce + at, iov[i].iov_base, iov[i].iov_len);
		err = nbd_issue_buf(n, r, r->bounce, r->len, off);
	}
	if (err && !r->err)
		r->err = -err;
	r->pending--;		/* the guard */
	/* Commands issued before an error still complete: reap finishes r after them. */
	nbd_req_finish(n, r);
	return 0;
}

static int nbd_poll_fd(struct block_backend *bb, short *events)
{
	struct block_nbd *n = nbd_of(bb);
	unsigned dir = nbd_aio_get_direction(n->h);

	*events = (short)(((dir & LIBNBD_AIO_DIRECTION_READ) ? POLLIN : 0) |
			  ((dir & LIBNBD_AIO_DIRECTION_WRITE) ? POLLOUT : 0));
	return nbd_aio_get_fd(n->h);	/* -1 once the connection is dead: poll skips it */
}

/* Deliver every request whose commands all completed; keep the others. */
static unsigned nbd_reap(struct block_backend *bb, short revents, block_done_fn *done,
			 void *opaque)
{
	struct block_nbd *n = nbd_of(bb);
	struct nbd_req **pp = &n->done, *r;
	unsigned count = 0;

	if (revents & (POLLIN | POLLHUP | POLLERR))
		(void)nbd_aio_notify_read(n->h);
	if (revents & POLLOUT)
		(void)nbd_aio_notify_write(n->h);
	while ((r = *pp)) {
		if (r->pending) {
			pp = &r->next;
			continue;
		}
		*pp = r->next;
		int64_t res = r->err ? -(int64_t)r->err : r->op == BLOCK_OP_FLUSH ? 0 : (int64_t)r->len;
		if (!r->err && r->bounce && r->op == BLOCK_OP_READ) {
			size_t at = 0;
			for (unsigned i = 0; i < r->niov; at += r->iov[i].iov_len, i++)
				memcpy(r->iov[i].iov_base, r->bounce + at, r->iov[i].iov_len);
		}
		free(r->bounce);
		void *user = r->user;
		free(r);
		done(user, res, opaque);
		count++;
	}
	return count;
}

/* ---- synchronous ------------------------------------------------------- */

static int nbd_flush_backend(struct block_backend *bb)
{
	struct block_nbd *n = nbd_of(bb);

	if (!n->can_flush)
		return 0;	/* a server without FLUSH writes through */
	return nbd_flush(n->h, 0) == -1 ? nbd_errno() : 0;
}

static int nbd_discard(struct block_backend *bb, uint64_t off, uint64_t len)
{
	struct block_nbd *n = nbd_of(bb);

	/* Discard is a hint (§5.2.6.2). */
	for (uint64_t k; n->can_trim && len; off += k, len -= k) {
		k = len < NBD_RANGE_MAX ? len : NBD_RANGE_MAX;
		if (nbd_trim(n->h, k, off, 0) == -1)
			return nbd_errno();
	}
	return 0;
}

static int nbd_write_zeroes(struct block_backend *bb, uint64_t off, uint64_t len, bool unmap)
{
	struct block_nbd *n = nbd_of(bb);
	uint8_t *z = NULL;
	int err = 0;

	if (!n->can_zero && !(z = calloc(1, n->chunk)))
		return -ENOMEM;
	for (uint64_t k; len && !err; off += k, len -= k) {
		k = len < (z ? n->chunk : NBD_RANGE_MAX) ? len : (z ? n->chunk : NBD_RANGE_MAX);
		int r = z ? nbd_pwrite(n->h, z, k, off, 0)
			  : nbd_zero(n->h, k, off, unmap ? 0 : LIBNBD_CMD_FLAG_NO_HOLE);
		if (r == -1)
			err = nbd_errno();
	}
	free(z);
	return err;
}

const struct block_backend_ops block_nbd_ops = {
	.name = "nbd",
	.open = nbd_open_backend,
	.close = nbd_close_backend,
	.queue = nbd_queue,
	.poll_fd = nbd_poll_fd,
	.reap = nbd_reap,
	.flush = nbd_flush_backend,
	.discard = nbd_discard,
	.write_zeroes = nbd_write_zeroes,
};
