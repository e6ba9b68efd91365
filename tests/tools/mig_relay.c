/*
 * mig-relay: a man in the middle for migration tests.  Listens on a unix
 * socket, connects each client to the real destination, and forwards both
 * ways — optionally cutting the source's stream after N bytes or flipping
 * one byte of it, or stalling it after N bytes (the connection stays open,
 * nothing more is forwarded to the destination, as on a hung network), to
 * prove what the two ends do with a broken stream.
 *
 *   mig-relay LISTEN_PATH DEST_URI [--cut-after N] [--stall-after N] [--flip-at N]
 *             [--record FILE]
 *
 * With --stall-after it prints "stalled" on stderr once it stops forwarding.
 *
 * DEST_URI is unix:PATH or tcp:HOST:PORT.  One connection, then it exits,
 * printing "relayed <bytes to dest> <bytes to source>".
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int relay_listen(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	unlink(path);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 1)) {
		perror("mig-relay: listen");
		exit(2);
	}
	return fd;
}

static int relay_connect(const char *uri)
{
	int fd = -1;

	if (!strncmp(uri, "unix:", 5)) {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", uri + 5);
		fd = socket(AF_UNIX, SOCK_STREAM, 0);
		if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			return fd;
	} else if (!strncmp(uri, "tcp:", 4)) {
		char host[256];
		snprintf(host, sizeof(host), "%s", uri + 4);
		char *port = strrchr(host, ':');
		struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res;
		if (port) {
			*port++ = '\0';
			if (!getaddrinfo(host, port, &hints, &res)) {
				fd = socket(res->ai_family, SOCK_STREAM, 0);
				if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) == 0) {
					freeaddrinfo(res);
					return fd;
				}
				freeaddrinfo(res);
			}
		}
	}
	perror("mig-relay: connect");
	exit(2);
}

int main(int argc, char **argv)
{
	long long cut = -1, stall = -1, flip = -1, up = 0, down = 0;
	FILE *rec = NULL;
	char buf[65536];

	if (argc < 3) {
		fprintf(stderr, "usage: mig-relay LISTEN_PATH DEST_URI [--cut-after N] [--stall-after N] [--flip-at N] [--record FILE]\n");
		return 2;
	}
	for (int i = 3; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--cut-after"))
			cut = atoll(argv[i + 1]);
		else if (!strcmp(argv[i], "--stall-after"))
			stall = atoll(argv[i + 1]);
		else if (!strcmp(argv[i], "--flip-at"))
			flip = atoll(argv[i + 1]);
		else if (!strcmp(argv[i], "--record"))
			rec = fopen(argv[i + 1], "wb");
	}
	int lfd = relay_listen(argv[1]);
	int src = accept(lfd, NULL, NULL);
	close(lfd);
	unlink(argv[1]);
	int dst = relay_connect(argv[2]);

	for (;;) {
		/* Stalled: leave the source's bytes unread (it blocks, as on a hung link). */
		bool stalled = stall >= 0 && up >= stall;
		struct pollfd p[2] = { { .fd = stalled ? -1 : src, .events = POLLIN },
				       { .fd = dst, .events = POLLIN } };
		if (poll(p, 2, 60000) <= 0)
			break;
		if (p[0].revents) {
			ssize_t n = read(src, buf, sizeof(buf));
			if (n <= 0)
				break;
			if (cut >= 0 && up + n > cut)
				n = (ssize_t)(cut - up);
			if (stall >= 0 && up + n > stall)
				n = (ssize_t)(stall - up);	/* the rest of buf is dropped */
			if (flip >= up && flip < up + n)
				buf[flip - up] ^= 0x20;
			if (rec)
				fwrite(buf, 1, (size_t)n, rec);
			if (n > 0 && write(dst, buf, (size_t)n) != n)
				break;
			up += n;
			if (cut >= 0 && up >= cut)
				break;
			if (stall >= 0 && up >= stall)
				fprintf(stderr, "stalled after %lld bytes\n", up);
		}
		if (p[1].revents) {
			ssize_t n = read(dst, buf, sizeof(buf));
			if (n <= 0 || write(src, buf, (size_t)n) != n)
				break;
			down += n;
		}
	}
	if (rec)
		fclose(rec);
	close(src);
	close(dst);
	printf("relayed %lld %lld\n", up, down);
	return 0;
}
