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

struct chardev {
	const struct chardev_ops *ops;
	/* Output goes to out_fd (-1: dropped).  `lock` guards out_fd/in_fd. */
	pthread_mutex_t lock;
	int out_fd;
	int in_fd;
	int listen_fd;		/* unix: listening socket */
	char *path;		/* unix: socket path, removed on close */
	int wake_fd[2];		/* pipe that stops the input thread */
	pthread_t thread;
	bool thread_started;
	chardev_input_fn *input;
	void *input_opaque;
};

/*
 * Open the backend described by `spec`.  Returns 0, -EINVAL for an unknown
 * spec, or -errno from the backend (e.g. -EADDRINUSE for a busy socket).
 */
int chardev_open(struct chardev *c, const char *spec) __attribute__((warn_unused_result));

/* Start delivering input to `fn` from a thread of its own.  0 or -errno. */
int chardev_start_input(struct chardev *c, chardev_input_fn *fn, void *opaque)
	__attribute__((warn_unused_result));

/* Write guest output; dropped when nobody listens.  Never blocks for long. */
void chardev_write(struct chardev *c, const void *buf, size_t len);

void chardev_close(struct chardev *c);

#endif
