/*
 * What the socket channels (tcp.c, unix.c) share: non-blocking I/O on a
 * connected stream socket, accepting with a deadline, buffer tuning.  Not
 * for use outside src/migration/channel/.
 */
#ifndef FERRY_MIGRATION_CHANNEL_SOCK_H
#define FERRY_MIGRATION_CHANNEL_SOCK_H

#include <stdbool.h>
#include <sys/socket.h>

#include "migration/channel/channel.h"

void mig_sock_tune(int fd, bool tcp);
/* Connect with a deadline: a dead or silent peer must not hang the source. */
int mig_sock_connect(int fd, const struct sockaddr *sa, socklen_t len, int timeout_ms);
int mig_sock_accept(struct mig_listener *l, struct mig_channel *ch, int timeout_ms, int intr_fd);
ssize_t mig_sock_read(struct mig_channel *ch, void *buf, size_t len);
ssize_t mig_sock_writev(struct mig_channel *ch, const struct iovec *iov, int iovcnt);
int mig_sock_shutdown(struct mig_channel *ch, bool rd, bool wr);
void mig_sock_close(struct mig_channel *ch);
void mig_sock_set_buffers(struct mig_channel *ch, int sndbuf, int rcvbuf);
uint64_t mig_sock_unsent(struct mig_channel *ch);

#endif
