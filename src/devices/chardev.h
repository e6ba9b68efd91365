/*
 * Character backends for the serial port: where guest output goes and
 * where its input comes from.  Each backend is an ops table entry;
 * "stdio", "file:PATH" and "unix:PATH" (ferry listens, one client at a time).
 */
#ifndef FERRY_DEVICES_CHARDEV_H
#define FERRY_DEVICES_CHARDEV_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct chardev;

typedef void chardev_input_fn(void *opaque, const uint8_t *buf, size_t len);

struct chardev_ops {
	const char *prefix;	/* "stdio", "file:", "unix:" */
	int (*open)(struct chardev *c, const char *arg);
	void (*close)(struct chardev *c);
};

/*
 * Guest output a reader has not taken yet.  Past this it is dropped: a vCPU
 * must never wait for a reader (see chardev_write).
 */
#define CHARDEV_OUT_QUEUE (64 * 1024)

struct chardev {
	const struct chardev_ops *ops;
	/*
	 * `lock` guards every field down to out_queue.  Writers: vCPU
	 * threads (chardev_write, under their serial's lock) and the chardev
	 * thread (accepting and losing unix clients, draining the queue).
	 * Every write to out_fd is non-blocking, so the lock is held briefly.
	 */
	pthread_mutex_t lock;
	int out_fd;		/* -1: output dropped */
	int in_fd;
	bool out_not_sock;	/* out_fd refused send(): plain write() it */
	bool stopping;		/* chardev_close: the thread must exit */
	size_t out_head, out_len;	/* queued output in out_queue (a ring) */
	uint64_t out_dropped;	/* bytes dropped because the reader stalled */
	bool out_drop_told;	/* the thread was woken for this stall's drops */
	uint8_t out_queue[CHARDEV_OUT_QUEUE];

	/* Set at open; read-only while the thread runs. */
	int listen_fd;		/* unix: listening socket */
	char *path;		/* unix: socket path, removed on close */
	int wake_fd[2];		/* pipe that wakes the thread (output queued, stop) */
	pthread_t thread;
	bool thread_started;
	chardev_input_fn *input;
	void *input_opaque;

	/* The chardev thread's own. */
	bool stall_logged;	/* "dropping" said for this stall */
	uint64_t dropped_logged;	/* out_dropped when a stall was last summed up */
};

/*
 * Open the backend described by `spec`.  Returns 0, -EINVAL for an unknown
 * spec, or -errno from the backend (e.g. -EADDRINUSE for a busy socket).
 */
int chardev_open(struct chardev *c, const char *spec) __attribute__((warn_unused_result));

/*
 * Start the chardev's thread: it delivers input to `fn` and sends the
 * output that a reader could not take at once.  0 or -errno.
 */
int chardev_start_input(struct chardev *c, chardev_input_fn *fn, void *opaque)
	__attribute__((warn_unused_result));

/*
 * Write guest output; dropped when nobody listens.  Never blocks: what the
 * reader cannot take now is queued (CHARDEV_OUT_QUEUE) for the thread to
 * send, and what does not fit is dropped and counted.  Called by vCPUs.
 */
void chardev_write(struct chardev *c, const void *buf, size_t len);

/* Bytes of output dropped so far because the reader did not keep up. */
uint64_t chardev_dropped(struct chardev *c);

void chardev_close(struct chardev *c);

#endif
