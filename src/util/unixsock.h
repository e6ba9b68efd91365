/* Unix socket paths: taking over the file a dead process left behind. */
#ifndef FERRY_UTIL_UNIXSOCK_H
#define FERRY_UTIL_UNIXSOCK_H

/*
 * Make `path` free for bind().  A socket file that no process holds (its
 * owner was killed before it could remove it) is removed.  Returns 0 when
 * the path is free now; -EADDRINUSE when a process has a socket bound
 * there; -ENOTSOCK when something that is not a socket is there (never
 * removed); -ENAMETOOLONG or another -errno.  Nothing listening there sees
 * the check.
 */
int unixsock_claim(const char *path) __attribute__((warn_unused_result));

#endif
