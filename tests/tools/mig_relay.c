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
 * DEST_URI is unix:PATH or tcp:HOST:PORT.  One connection (--conns N:
 * N of them, for --channels; the cut, stall and flip apply to connection
 * --cut-conn K, 0 the first accepted), then it exits once all have ended,
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

#define RELAY_MAX_CONNS 16

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

/* One relayed connection: the source's end and the destination's. */
struct relay_pair {
	int src, dst;
	long long up, down;
	bool done;
};

int main(int argc, char **argv)
{
	long long cut = -1, stall = -1, flip = -1, up = 0, down = 0;
	int conns = 1, cut_conn = 0, accepted = 0, open_pairs = 0;
	struct relay_pair pair[RELAY_MAX_CONNS];
	FILE *rec = NULL;
	char buf[65536];

	if (argc < 3) {
		fprintf(stderr, "usage: mig-relay LISTEN_PATH DEST_URI [--cut-after N] [--stall-after N] [--flip-at N] [--record FILE] [--conns N] [--cut-conn K]\n");
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
		else if (!strcmp(argv[i], "--conns"))
			conns = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--cut-conn"))
			cut_conn = atoi(argv[i + 1]);
	}
	if (conns < 1 || conns > RELAY_MAX_CONNS) {
		fprintf(stderr, "mig-relay: --conns takes 1..%d\n", RELAY_MAX_CONNS);
		return 2;
	}
	int lfd = relay_listen(argv[1]);

	for (;;) {
		/* The listener while connections are owed, then every pair still open. */
		struct pollfd p[1 + 2 * RELAY_MAX_CONNS];
		int np = 0;
		p[np++] = (struct pollfd){ .fd = accepted < conns ? lfd : -1, .events = POLLIN };
		for (int k = 0; k < accepted; k++) {
			struct relay_pair *q = &pair[k];
			bool hit = k == cut_conn;
			/* Stalled: leave the source's bytes unread (it blocks, as on a hung link). */
			bool stalled = hit && stall >= 0 && q->up >= stall;
			p[np++] = (struct pollfd){ .fd = q->done || stalled ? -1 : q->src, .events = POLLIN };
			p[np++] = (struct pollfd){ .fd = q->done ? -1 : q->dst, .events = POLLIN };
		}
		if (accepted == conns && !open_pairs)
			break;
		if (poll(p, (nfds_t)np, 60000) <= 0)
			break;
		int polled = accepted;	/* pairs with an entry in p this round */
		if (p[0].revents) {
			struct relay_pair *q = &pair[accepted++];
			q->src = accept(lfd, NULL, NULL);
			q->dst = relay_connect(argv[2]);
			q->up = q->down = 0;
			q->done = false;
			open_pairs++;
			if (accepted == conns) {
				close(lfd);
				unlink(argv[1]);
			}
		}
		for (int k = 0; k < polled; k++) {
			struct relay_pair *q = &pair[k];
			bool hit = k == cut_conn, end = false;
			if (q->done)
				continue;
			if (p[1 + 2 * k].revents) {
				ssize_t n = read(q->src, buf, sizeof(buf));
				if (n <= 0)
					end = true;
				if (!end && hit && cut >= 0 && q->up + n > cut)
					n = (ssize_t)(cut - q->up);
				if (!end && hit && stall >= 0 && q->up + n > stall)
					n = (ssize_t)(stall - q->up);	/* the rest of buf is dropped */
				if (!end && hit && flip >= q->up && flip < q->up + n)
					buf[flip - q->up] ^= 0x20;
				if (!end && hit && rec)
					fwrite(buf, 1, (size_t)n, rec);
				if (!end && n > 0 && write(q->dst, buf, (size_t)n) != n)
					end = true;
				if (!end) {
					q->up += n;
					up += n;
				}
				if (!end && hit && cut >= 0 && q->up >= cut)
					end = true;
				if (!end && hit && stall >= 0 && q->up >= stall)
					fprintf(stderr, "stalled after %lld bytes\n", q->up);
			}
			if (!end && p[2 + 2 * k].revents) {
				ssize_t n = read(q->dst, buf, sizeof(buf));
				if (n <= 0 || write(q->src, buf, (size_t)n) != n)
					end = true;
				else {
					q->down += n;
					down += n;
				}
			}
			if (end) {
				close(q->src);
				close(q->dst);
				q->done = true;
				open_pairs--;
			}
		}
		/* One connection, as ever: its end is the relay's. */
		if (conns == 1 && accepted == 1 && pair[0].done)
			break;
	}
	if (accepted < conns) {
		close(lfd);
		unlink(argv[1]);
	}
	for (int k = 0; k < accepted && k < conns; k++)
		if (!pair[k].done) {
			close(pair[k].src);
			close(pair[k].dst);
		}
	if (rec)
		fclose(rec);
	printf("relayed %lld %lld\n", up, down);
	return 0;
}
