/*
 * netbench - the benchmark's network helper (built by bench/run.sh into
 * build/bench/netbench; not part of ferry).
 *
 *   netbench sink  ADDR PORT
 *       Listen, print "ready", accept one connection, read to EOF, answer
 *       one byte, print {"bytes":N}.
 *   netbench sinkmem ADDR PORT SIZE
 *       The same, but the bytes land in a fresh SIZE-byte anonymous mapping
 *       (wrapping round), so every page is faulted in once, as when a VMM
 *       fills a new guest's RAM.
 *   netbench send  ADDR PORT BYTES
 *       Connect, send BYTES bytes (incompressible), shut down the write
 *       side, wait for the sink's one-byte answer; print
 *       {"bytes":N,"seconds":S}.  S runs from connect() to the answer, so
 *       it covers every byte reaching the receiving process.
 *   netbench relay LADDR LPORT TADDR TPORT DELAY_MS
 *       Print "ready", then for every accepted connection open one to
 *       TADDR:TPORT and copy both ways, holding every chunk DELAY_MS
 *       milliseconds before passing it on (so a request/response round
 *       trip through the relay costs 2*DELAY_MS more).  At most 16 MiB
 *       wait in each direction; past that the relay stops reading, and
 *       TCP's flow control pushes back on the sender.  Runs until killed.
 *   netbench udpecho ADDR PORT SECONDS WINDOW SIZE
 *       UDP echo rate against a guest's echo port: SIZE-byte datagrams
 *       (8 to 1472), WINDOW of them outstanding; each echo that comes back
 *       (checked byte for byte) sends the next one.  When nothing comes
 *       back for 20 ms, what is outstanding counts as lost and a fresh
 *       window goes out.  First one datagram every 100 ms until an echo
 *       comes back (ARP; at most 5 s), then SECONDS of measurement; print
 *       {"window":W,"size":S,"seconds":T,"sent":N,"received":R,"lost":L,
 *       "rate":R/T,"rtt_us":mean round trip}.  Exit 1 if nothing echoed.
 *
 * Every loop is bounded by the peer closing, an error or a time limit; the
 * harness kills the relay by its pid when a run ends.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CHUNK      (256 * 1024)
#define QUEUE_CAP  (16u << 20)

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
	fprintf(stderr, "netbench: %s: %s\n", what, strerror(errno));
	exit(1);
}

static struct sockaddr_in make_addr(const char *host, const char *port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(port)) };

	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
		fprintf(stderr, "netbench: bad IPv4 address '%s'\n", host);
		exit(2);
	}
	return sa;
}

static int listen_on(const char *host, const char *port)
{
	struct sockaddr_in sa = make_addr(host, port);
	int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		die("socket");
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("bind");
	if (listen(fd, 16) < 0)
		die("listen");
	printf("ready\n");
	fflush(stdout);
	return fd;
}

static int connect_to(const char *host, const char *port)
{
	struct sockaddr_in sa = make_addr(host, port);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		die("socket");
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("connect");
	return fd;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* ---- sink / send ------------------------------------------------------ */

static int do_sink(char **argv, uint64_t mem)
{
	int lfd = listen_on(argv[0], argv[1]);
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	char *buf = mem ? mmap(NULL, mem, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
			: malloc(CHUNK);
	uint64_t total = 0, off = 0;

	if (fd < 0 || !buf || buf == MAP_FAILED)
		die("accept");
	for (;;) {
		/* sinkmem: land the bytes in fresh memory, like a VMM filling
		 * guest RAM; sink: reuse one buffer */
		size_t want = mem ? (size_t)(mem - off < CHUNK ? mem - off : CHUNK) : CHUNK;
		ssize_t r = read(fd, buf + off, want);

		if (mem && r > 0 && (off += (uint64_t)r) == mem)
			off = 0;

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			die("read");
		if (r == 0)
			break;
		total += (uint64_t)r;
	}
	if (write_all(fd, "k", 1) < 0)
		die("write");
	printf("{\"bytes\":%llu}\n", (unsigned long long)total);
	close(fd);
	close(lfd);
	return 0;
}

static int do_send(char **argv)
{
	uint64_t want = strtoull(argv[2], NULL, 0), left = want, x = 0x9e3779b97f4a7c15ULL;
	char *buf = malloc(CHUNK), ack;
	double t0;
	int fd;

	if (!buf)
		die("malloc");
	for (size_t i = 0; i < CHUNK / 8; i++) {         /* xorshift: incompressible */
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		memcpy(buf + i * 8, &x, 8);
	}
	t0 = now_s();
	fd = connect_to(argv[0], argv[1]);
	while (left) {
		size_t n = left < CHUNK ? (size_t)left : CHUNK;

		if (write_all(fd, buf, n) < 0)
			die("write");
		left -= n;
	}
	shutdown(fd, SHUT_WR);
	for (;;) {
		ssize_t r = read(fd, &ack, 1);

		if (r < 0 && errno == EINTR)
			continue;
		if (r != 1)
			die("no answer from the sink");
		break;
	}
	printf("{\"bytes\":%llu,\"seconds\":%.6f}\n", (unsigned long long)want, now_s() - t0);
	close(fd);
	return 0;
}

/* ---- relay -------------------------------------------------------------- */

struct chunk {
	struct chunk *next;
	double due;
	size_t len, off;
	char data[];
};

struct pipe_dir {
	int from, to;
	double delay;
	pthread_t thread;
};

struct conn {
	struct pipe_dir dir[2];
};

static void *pump(void *arg)
{
	struct pipe_dir *d = arg;
	struct chunk *head = NULL, *tail = NULL;
	size_t queued = 0;
	int eof = 0;

	for (;;) {
		struct pollfd p[2] = { { .fd = -1 }, { .fd = -1 } };
		double now = now_s();
		int timeout = -1;

		if (eof && !head) {
			shutdown(d->to, SHUT_WR);
			break;
		}
		if (!eof && queued < QUEUE_CAP)
			p[0] = (struct pollfd){ .fd = d->from, .events = POLLIN };
		if (head) {
			if (head->due <= now)
				p[1] = (struct pollfd){ .fd = d->to, .events = POLLOUT };
			else
				timeout = (int)((head->due - now) * 1000) + 1;
		}
		if (poll(p, 2, timeout) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[0].revents) {
			struct chunk *c = malloc(sizeof(*c) + CHUNK);
			ssize_t r;

			if (!c)
				break;
			r = read(d->from, c->data, CHUNK);
			if (r <= 0) {
				free(c);
				if (r < 0 && errno == EINTR)
					continue;
				eof = 1;
			} else {
				*c = (struct chunk){ .due = now_s() + d->delay, .len = (size_t)r };
				if (tail)
					tail->next = c;
				else
					head = c;
				tail = c;
				queued += (size_t)r;
			}
		}
		if (p[1].revents & (POLLERR | POLLHUP))
			break;
		if (p[1].revents & POLLOUT) {
			ssize_t w = write(d->to, head->data + head->off, head->len - head->off);

			if (w < 0 && errno != EINTR && errno != EAGAIN)
				break;
			if (w > 0) {
				head->off += (size_t)w;
				queued -= (size_t)w;
				if (head->off == head->len) {
					struct chunk *done = head;

					head = head->next;
					if (!head)
						tail = NULL;
					free(done);
				}
			}
		}
	}
	if (!eof || head) {             /* an error: wake the other direction */
		shutdown(d->from, SHUT_RDWR);
		shutdown(d->to, SHUT_RDWR);
	}
	while (head) {
		struct chunk *next = head->next;

		free(head);
		head = next;
	}
	return NULL;
}

static void *serve(void *arg)
{
	struct conn *c = arg;

	pthread_create(&c->dir[0].thread, NULL, pump, &c->dir[0]);
	pthread_create(&c->dir[1].thread, NULL, pump, &c->dir[1]);
	pthread_join(c->dir[0].thread, NULL);
	pthread_join(c->dir[1].thread, NULL);
	close(c->dir[0].from);
	close(c->dir[1].from);
	free(c);
	return NULL;
}

static _Noreturn void do_relay(char **argv)
{
	int lfd = listen_on(argv[0], argv[1]), one = 1;
	double delay = atof(argv[4]) / 1000.0;

	signal(SIGPIPE, SIG_IGN);
	for (;;) {
		int a = accept4(lfd, NULL, NULL, SOCK_CLOEXEC), b;
		struct conn *c;
		pthread_t t;

		if (a < 0) {
			if (errno == EINTR)
				continue;
			die("accept");
		}
		b = connect_to(argv[2], argv[3]);
		setsockopt(a, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		setsockopt(b, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c = calloc(1, sizeof(*c));
		if (!c)
			die("calloc");
		c->dir[0] = (struct pipe_dir){ .from = a, .to = b, .delay = delay };
		c->dir[1] = (struct pipe_dir){ .from = b, .to = a, .delay = delay };
		pthread_create(&t, NULL, serve, c);
		pthread_detach(t);
	}
}

/* ---- UDP echo rate ------------------------------------------------------- */

#define ECHO_RING     4096    /* send times kept, by sequence number */
#define ECHO_WAIT_MS  20      /* silence after which the window counts as lost */
#define ECHO_MAX_SIZE 1472

/* The datagram for sequence number `seq`: the number, then bytes made from it. */
static void echo_fill(unsigned char *p, size_t n, uint64_t seq)
{
	memcpy(p, &seq, 8);
	for (size_t i = 8; i < n; i++)
		p[i] = (unsigned char)(seq * 31 + i);
}

static int do_udpecho(char **argv)
{
	struct sockaddr_in sa = make_addr(argv[0], argv[1]);
	double seconds = atof(argv[2]), sent_at[ECHO_RING], rtt_sum = 0, t0, t_end;
	long window = atol(argv[3]), size = atol(argv[4]), outstanding = 0;
	unsigned char out[ECHO_MAX_SIZE], in[ECHO_MAX_SIZE + 1], want[ECHO_MAX_SIZE];
	uint64_t seq = 0, sent = 0, received = 0, lost = 0, timed = 0;
	struct pollfd pfd;
	int fd;

	if (seconds <= 0 || seconds > 600 || window < 1 || window > ECHO_RING / 2 ||
	    size < 8 || size > ECHO_MAX_SIZE) {
		fprintf(stderr, "netbench: udpecho: SECONDS 0..600, WINDOW 1..%d, SIZE 8..%d\n",
			ECHO_RING / 2, ECHO_MAX_SIZE);
		return 2;
	}
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket");
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("connect");
	pfd = (struct pollfd){ .fd = fd, .events = POLLIN };
	/* Until the first echo: the neighbour entry, a guest still starting. */
	for (int i = 0; i < 50; i++) {
		echo_fill(out, (size_t)size, ~0ULL);
		send(fd, out, (size_t)size, 0);
		if (poll(&pfd, 1, 100) == 1 && recv(fd, in, sizeof(in), 0) == size &&
		    !memcmp(in, out, (size_t)size))
			break;
		if (i == 49) {
			printf("{\"error\":\"no echo in 5 s\"}\n");
			return 1;
		}
	}
	while (poll(&pfd, 1, 50) == 1)          /* drain late warm-up echoes */
		recv(fd, in, sizeof(in), 0);
	t0 = now_s();
	t_end = t0 + seconds;
	while (now_s() < t_end) {
		int r;

		while (outstanding < window) {
			echo_fill(out, (size_t)size, seq);
			if (send(fd, out, (size_t)size, 0) != size)
				break;          /* ENOBUFS or an ICMP error: try again later */
			sent_at[seq % ECHO_RING] = now_s();
			seq++, sent++, outstanding++;
		}
		r = poll(&pfd, 1, ECHO_WAIT_MS);
		if (r < 0 && errno != EINTR)
			die("poll");
		if (r == 0) {
			lost += (uint64_t)outstanding;
			outstanding = 0;
			continue;
		}
		for (;;) {
			ssize_t n = recv(fd, in, sizeof(in), MSG_DONTWAIT);
			uint64_t got;

			if (n < 0)
				break;
			if (n != size)
				continue;
			memcpy(&got, in, 8);
			if (got >= seq)
				continue;
			echo_fill(want, (size_t)size, got);
			if (memcmp(in, want, (size_t)size))
				continue;
			received++;
			if (seq - got < ECHO_RING) {
				rtt_sum += now_s() - sent_at[got % ECHO_RING];
				timed++;
			}
			if (outstanding > 0)
				outstanding--;
		}
	}
	seconds = now_s() - t0;
	printf("{\"window\":%ld,\"size\":%ld,\"seconds\":%.6f,\"sent\":%llu,\"received\":%llu,"
	       "\"lost\":%llu,\"rate\":%.1f,\"rtt_us\":%.1f}\n", window, size, seconds,
	       (unsigned long long)sent, (unsigned long long)received, (unsigned long long)lost,
	       received / seconds, timed ? 1e6 * rtt_sum / (double)timed : 0.0);
	close(fd);
	return received ? 0 : 1;
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	if (argc == 4 && !strcmp(argv[1], "sink"))
		return do_sink(argv + 2, 0);
	if (argc == 5 && !strcmp(argv[1], "sinkmem"))
		return do_sink(argv + 2, strtoull(argv[4], NULL, 0));
	if (argc == 5 && !strcmp(argv[1], "send"))
		return do_send(argv + 2);
	if (argc == 7 && !strcmp(argv[1], "relay"))
		do_relay(argv + 2);
	if (argc == 7 && !strcmp(argv[1], "udpecho"))
		return do_udpecho(argv + 2);
	fprintf(stderr, "usage: netbench sink ADDR PORT | sinkmem ADDR PORT SIZE | send ADDR PORT BYTES |"
		" relay LADDR LPORT TADDR TPORT DELAY_MS | udpecho ADDR PORT SECONDS WINDOW SIZE\n");
	return 2;
}
