#include "migration/commit.h"

#include <errno.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

int mig_commit_init(struct mig_commit *c)
{
	c->state = MIG_COMMIT_NONE;
	c->resolve = MIG_RESOLVE_NONE;
	c->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	pthread_mutex_init(&c->lock, NULL);
	return c->wake_fd < 0 ? -errno : 0;
}

void mig_commit_destroy(struct mig_commit *c)
{
	if (c->wake_fd >= 0)
		close(c->wake_fd);
	c->wake_fd = -1;
	pthread_mutex_destroy(&c->lock);
}

void mig_commit_set_state(struct mig_commit *c, enum mig_commit_state st)
{
	uint64_t v;

	pthread_mutex_lock(&c->lock);
	c->state = st;
	if (st == MIG_COMMIT_NONE) {
		/* A decision applies to one switchover only. */
		c->resolve = MIG_RESOLVE_NONE;
		if (read(c->wake_fd, &v, sizeof(v)) < 0) {
			/* EAGAIN: nothing was pending. */
		}
	}
	pthread_mutex_unlock(&c->lock);
}

enum mig_commit_state mig_commit_get_state(struct mig_commit *c)
{
	pthread_mutex_lock(&c->lock);
	enum mig_commit_state st = c->state;
	pthread_mutex_unlock(&c->lock);
	return st;
}

const char *mig_commit_state_name(enum mig_commit_state st)
{
	switch (st) {
	case MIG_COMMIT_WAITING: return "awaiting-commit";
	case MIG_COMMIT_IN_DOUBT: return "in-doubt";
	case MIG_COMMIT_STANDBY: return "standby";
	default: return "none";
	}
}

int mig_commit_resolve(struct mig_commit *c, enum mig_resolve r)
{
	uint64_t one = 1;
	int err = -ESRCH;

	pthread_mutex_lock(&c->lock);
	if (c->state != MIG_COMMIT_NONE && c->resolve == MIG_RESOLVE_NONE) {
		c->resolve = r;
		err = 0;
		if (write(c->wake_fd, &one, sizeof(one)) < 0) {
			/* Cannot fail short of a full counter; the waiter polls anyway. */
		}
	}
	pthread_mutex_unlock(&c->lock);
	return err;
}

int mig_commit_wait(struct mig_commit *c, struct mig_stream *s, bool dead, int intr_fd,
		    int timeout_ms, enum mig_resolve *r)
{
	const int fds[2] = { c->wake_fd, intr_fd };

	pthread_mutex_lock(&c->lock);
	*r = c->resolve;
	pthread_mutex_unlock(&c->lock);
	if (*r != MIG_RESOLVE_NONE)
		return 0;
	/* A dead stream, or one without a return path, is never readable. */
	int n = mig_stream_wait_readable(dead ? NULL : s, timeout_ms, fds, 2);
	if (n < 0)
		return n;
	pthread_mutex_lock(&c->lock);
	*r = c->resolve;
	pthread_mutex_unlock(&c->lock);
	if (*r != MIG_RESOLVE_NONE)
		return 0;
	if (n & MIG_WAIT_INTR(1))
		return -EINTR;
	return n & MIG_WAIT_CHANNEL ? 1 : 0;
}
