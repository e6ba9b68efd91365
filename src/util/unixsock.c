#include "util/unixsock.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/*
 * Is a socket bound at `sa`?  Connecting a datagram socket to it asks the
 * kernel without touching a listener: Linux answers ECONNREFUSED when no
 * socket holds the file, EPROTOTYPE when a stream socket does (and connects
 * when a datagram one does).  A stream probe would be accepted, and a
 * waiting ferry destination would take it for its source.  1, 0 or -errno.
 */
static int unixsock_bound(const struct sockaddr_un *sa)
{
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0), ret;

	if (fd < 0)
		return -errno;
	if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0)
		ret = 1;
	else
		ret = errno == EPROTOTYPE ? 1 : errno == ECONNREFUSED ? 0 : -errno;
	close(fd);
	return ret;
}

int unixsock_claim(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	int bound;

	if (!*path || strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode))
		return -ENOTSOCK;
	bound = unixsock_bound(&sa);
	if (bound)
		return bound > 0 ? -EADDRINUSE : bound;
	if (unlink(path) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}
