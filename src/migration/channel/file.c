/*
 * file:PATH, a stream saved to (source) or restored from (destination) a
 * regular file.  One way: no return path, so the reader never answers and
 * the writer never waits for it (docs/migration-stream.md, "Without a
 * return path").
 *
 * The writer fills PATH.tmp and renames it to PATH only once the stream is
 * complete and on disk (finish): a crash or a failed save never leaves a
 * half image under the name a restore would read.
 */
#include "migration/channel/channel.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/log.h"

#define FILE_TMP_SUFFIX ".tmp"

static int file_check(const char *addr, char *why, size_t len)
{
	size_t n = strlen(addr);

	if (!n) {
		snprintf(why, len, "bad migration URI 'file:': the path is empty (use file:PATH)");
		return -EINVAL;
	}
	if (addr[n - 1] == '/') {
		snprintf(why, len, "bad migration URI 'file:%.200s': the path names a directory; "
			 "use file:PATH of a file", addr);
		return -EINVAL;
	}
	return 0;
}

static int file_open(struct mig_channel *ch, const char *addr, int timeout_ms)
{
	struct stat st;

	/* Found now rather than by the rename after the whole save. */
	if (!stat(addr, &st) && S_ISDIR(st.st_mode))
		return -EISDIR;
	ch->path = strdup(addr);
	if (!ch->path || asprintf(&ch->tmp, "%s" FILE_TMP_SUFFIX, addr) < 0) {
		ch->tmp = NULL;
		return -ENOMEM;
	}
	/* Guest memory: readable by its owner only. */
	ch->fd = open(ch->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (ch->fd < 0) {
		int err = -errno;
		free(ch->tmp);
		ch->tmp = NULL;		/* nothing of ours to remove */
		return err;
	}
	return 0;
}

static int file_listen(struct mig_listener *l, const char *addr)
{
	struct stat st;
	int fd = open(addr, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	/* A pipe or device would block reads beyond the reach of a signal. */
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		int err = fstat(fd, &st) < 0 ? -errno : S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
		close(fd);
		return err;
	}
	l->fd = fd;
	return 0;
}

/* The file is already open: hand it over (once). */
static int file_accept(struct mig_listener *l, struct mig_channel *ch, int timeout_ms,
		       int intr_fd)
{
	if (l->fd < 0)
		return -EBADF;
	ch->fd = l->fd;
	l->fd = -1;
	return 0;
}

static ssize_t file_read(struct mig_channel *ch, void *buf, size_t len)
{
	ssize_t n;

	do {
		n = read(ch->fd, buf, len);
	} while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : n;
}

static ssize_t file_writev(struct mig_channel *ch, const struct iovec *iov, int iovcnt)
{
	ssize_t n;

	do {
		n = writev(ch->fd, iov, iovcnt);
	} while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : n;
}

static int file_flush(struct mig_channel *ch)
{
	return fdatasync(ch->fd) < 0 ? -errno : 0;
}

/* fsync the directory holding path, so the rename survives a crash too. */
static void file_sync_dir(const char *path)
{
	char *copy = strdup(path);
	int fd = copy ? open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;

	if (fd < 0 || fsync(fd) < 0)
		pr_warn("saved %s, but could not sync its directory: a crash now may lose it", path);
	if (fd >= 0)
		close(fd);
	free(copy);
}

static int file_finish(struct mig_channel *ch)
{
	if (!ch->tmp)
		return 0;	/* finished already */
	if (fsync(ch->fd) < 0 || rename(ch->tmp, ch->path) < 0)
		return -errno;
	/* From here on the image exists under its name: the save happened. */
	free(ch->tmp);
	ch->tmp = NULL;
	file_sync_dir(ch->path);
	return 0;
}

static void file_close(struct mig_channel *ch)
{
	if (ch->fd >= 0)
		close(ch->fd);
	ch->fd = -1;
	if (ch->tmp)
		unlink(ch->tmp);	/* an unfinished save leaves nothing */
}

const struct mig_channel_ops mig_channel_file = {
	.scheme = "file", .syntax = "file:PATH", .return_path = false,
	.eof_err = -ENODATA,
	.eof_why = "the file ends before the stream does: it is truncated (an incomplete save?)",
	.check = file_check, .open = file_open, .listen = file_listen, .accept = file_accept,
	.read = file_read, .writev = file_writev, .flush = file_flush, .finish = file_finish,
	.close = file_close,
};
