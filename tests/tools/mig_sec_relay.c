/*
 * mig-sec-relay: a section-aware man in the middle for switchover tests.
 * It forwards a migration connection both ways, section by section
 * (docs/migration-stream.md), and does harm to the first section of a
 * given type in a given direction:
 *
 *   mig_sec_relay LISTEN_PATH DEST_URI [--fault DIR:TYPE:ACTION]...
 *
 *   DIR     up (source to destination) or down (destination to source)
 *   TYPE    the section type number (END 6, GO 13, ABORT 14, RESULT 17,
 *           LOADED 24, ...)
 *   ACTION  drop           swallow it
 *           dup            forward it twice
 *           delay=MS       hold it (and what follows in that direction)
 *           cut            close both connections instead of forwarding it
 *           cut-after      forward it, then close both connections
 *           reset          like cut, but with a TCP-style reset (SO_LINGER 0)
 *           stall          swallow it and everything after it in that
 *                          direction, end included: a link gone silent
 *           stop=PID:MS    SIGSTOP PID, forward it, SIGCONT PID MS later
 *
 * DEST_URI is unix:PATH.  One connection, then it exits, printing one
 * "fault DIR TYPE ACTION" line per fault that fired.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define SEC_MAX ((4u << 20) + 16)
#define MAX_FAULTS 8

enum dir { UP, DOWN };

struct fault {
	enum dir dir;
	unsigned type;
	char action[16];
	long ms;
	pid_t pid;
	int fired;
};

static struct fault faults[MAX_FAULTS];
static int nfaults;
static int fd_src = -1, fd_dst = -1;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void msleep(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static int read_all(int fd, uint8_t *p, size_t len)
{
	while (len) {
		ssize_t n = read(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int write_all(int fd, const uint8_t *p, size_t len)
{
	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Close both connections: a clean end (FIN) or, with reset, an abort. */
static void cut_both(int reset)
{
	struct linger l = { 1, 0 };

	pthread_mutex_lock(&lock);
	if (reset) {
		setsockopt(fd_src, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
		setsockopt(fd_dst, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
		close(fd_src);
		close(fd_dst);
		fd_src = fd_dst = -1;
	} else {
		shutdown(fd_src, SHUT_RDWR);
		shutdown(fd_dst, SHUT_RDWR);
	}
	pthread_mutex_unlock(&lock);
}

struct cont_arg {
	pid_t pid;
	long ms;
};

static void *cont_later(void *arg)
{
	struct cont_arg *c = arg;

	msleep(c->ms);
	kill(c->pid, SIGCONT);
	free(c);
	return NULL;
}

static struct fault *fault_for(enum dir d, unsigned type)
{
	for (int i = 0; i < nfaults; i++)
		if (faults[i].dir == d && faults[i].type == type && !faults[i].fired) {
			faults[i].fired = 1;
			printf("fault %s %u %s\n", d == UP ? "up" : "down", type, faults[i].action);
			fflush(stdout);
			return &faults[i];
		}
	return NULL;
}

/* Forward one section (already read into buf) with its fault, if any.  0 or -1 to stop. */
static int forward(enum dir d, int out, const uint8_t *buf, size_t len)
{
	struct fault *f = fault_for(d, buf[0]);

	if (!f)
		return write_all(out, buf, len);
	if (!strcmp(f->action, "drop"))
		return 0;
	if (!strcmp(f->action, "dup"))
		return write_all(out, buf, len) || write_all(out, buf, len) ? -1 : 0;
	if (!strcmp(f->action, "delay")) {
		msleep(f->ms);
		return write_all(out, buf, len);
	}
	if (!strcmp(f->action, "cut") || !strcmp(f->action, "reset")) {
		cut_both(!strcmp(f->action, "reset"));
		return -1;
	}
	if (!strcmp(f->action, "cut-after")) {
		write_all(out, buf, len);
		msleep(50);
		cut_both(0);
		return -1;
	}
	if (!strcmp(f->action, "stop")) {
		struct cont_arg *c = malloc(sizeof(*c));
		pthread_t t;
		kill(f->pid, SIGSTOP);
		c->pid = f->pid;
		c->ms = f->ms;
		pthread_create(&t, NULL, cont_later, c);
		pthread_detach(t);
		return write_all(out, buf, len);
	}
	return write_all(out, buf, len);
}

/* A silent link: read and drop everything, and keep the other end open. */
static void stall(int in, uint8_t *buf)
{
	while (read(in, buf, 65536) > 0)
		;
	for (;;)
		pause();
}

static void *pump(void *arg)
{
	enum dir d = (enum dir)(intptr_t)arg;
	int in = d == UP ? fd_src : fd_dst, out = d == UP ? fd_dst : fd_src;
	uint8_t *buf = malloc(SEC_MAX);

	if (d == UP) {
		/* The stream header: magic and version. */
		if (read_all(in, buf, 12) || write_all(out, buf, 12))
			goto out;
	}
	for (;;) {
		if (read_all(in, buf, 8))
			break;
		uint32_t len = (uint32_t)buf[4] | (uint32_t)buf[5] << 8 | (uint32_t)buf[6] << 16 |
			       (uint32_t)buf[7] << 24;
		if (len > SEC_MAX - 16 || read_all(in, buf + 8, (size_t)len + 8))
			break;
		struct fault *f = NULL;
		for (int i = 0; i < nfaults; i++)
			if (faults[i].dir == d && faults[i].type == buf[0] && !faults[i].fired &&
			    !strcmp(faults[i].action, "stall"))
				f = fault_for(d, buf[0]);
		if (f)
			stall(in, buf);
		if (forward(d, out, buf, 16 + (size_t)len))
			break;
	}
out:
	/* Pass the end on as an end. */
	pthread_mutex_lock(&lock);
	if (out >= 0 && (d == UP ? fd_dst : fd_src) >= 0)
		shutdown(out, SHUT_WR);
	pthread_mutex_unlock(&lock);
	free(buf);
	return NULL;
}

static int parse_fault(const char *spec, struct fault *f)
{
	char dir[8], act[16];
	unsigned type;

	memset(f, 0, sizeof(*f));
	if (sscanf(spec, "%7[^:]:%u:%15s", dir, &type, act) != 3)
		return -1;
	f->dir = !strcmp(dir, "up") ? UP : DOWN;
	f->type = type;
	if (!strncmp(act, "delay=", 6)) {
		f->ms = atol(act + 6);
		strcpy(f->action, "delay");
	} else if (!strncmp(act, "stop=", 5)) {
		long pid;
		if (sscanf(act + 5, "%ld:%ld", &pid, &f->ms) != 2)
			return -1;
		f->pid = (pid_t)pid;
		strcpy(f->action, "stop");
	} else {
		snprintf(f->action, sizeof(f->action), "%s", act);
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	pthread_t up, down;

	if (argc < 3 || strncmp(argv[2], "unix:", 5)) {
		fprintf(stderr, "usage: mig_sec_relay LISTEN_PATH unix:DEST [--fault DIR:TYPE:ACTION]...\n");
		return 2;
	}
	for (int i = 3; i + 1 < argc && nfaults < MAX_FAULTS; i += 2) {
		if (strcmp(argv[i], "--fault") || parse_fault(argv[i + 1], &faults[nfaults++])) {
			fprintf(stderr, "mig_sec_relay: bad fault '%s'\n", argv[i + 1]);
			return 2;
		}
	}
	int lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", argv[1]);
	unlink(argv[1]);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) || listen(lfd, 1)) {
		perror("mig_sec_relay: listen");
		return 2;
	}
	fd_src = accept(lfd, NULL, NULL);
	close(lfd);
	unlink(argv[1]);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", argv[2] + 5);
	fd_dst = socket(AF_UNIX, SOCK_STREAM, 0);
	if (fd_src < 0 || fd_dst < 0 || connect(fd_dst, (struct sockaddr *)&sa, sizeof(sa))) {
		perror("mig_sec_relay: connect");
		return 2;
	}
	pthread_create(&up, NULL, pump, (void *)(intptr_t)UP);
	pthread_create(&down, NULL, pump, (void *)(intptr_t)DOWN);
	pthread_join(up, NULL);
	pthread_join(down, NULL);	/* a stall never ends: the test kills us */
	/* Give a pending SIGCONT its time. */
	for (int i = 0; i < nfaults; i++)
		if (faults[i].fired && !strcmp(faults[i].action, "stop"))
			msleep(faults[i].ms + 100);
	return 0;
}
