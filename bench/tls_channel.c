/*
 * tls_channel - what TLS costs the migration channel, beside plain TCP in
 * the same run: one process sends BYTES through a stream (stream.c) over
 * a loopback tcp: channel, a child receives them, alternately without and
 * with TLS (--tls-creds as scripts/tls-certs.sh makes them), ROUNDS times.
 * It prints, per run, throughput and the CPU time of each side.  No KVM
 * needed; it measures the channel alone, not a migration (bench/run.sh does
 * those, beside QEMU).  Build: make build/bench/tls_channel
 *
 *   tls_channel CREDS-DIR MIB [ROUNDS]    (CREDS-DIR holds server/ and client/)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "migration/channel/channel.h"
#include "migration/channel/tls.h"
#include "migration/stream.h"

#define CHUNK (4u << 20)

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static double cpu_s(const struct rusage *r)
{
	return (double)(r->ru_utime.tv_sec + r->ru_stime.tv_sec) +
	       (double)(r->ru_utime.tv_usec + r->ru_stime.tv_usec) / 1e6;
}

/* The receiving side, in the child: read `total` bytes, answer one. */
static int receive(struct mig_listener *l, size_t total)
{
	struct mig_channel *ch;
	struct mig_stream s;
	uint8_t *b = malloc(CHUNK);

	if (!b || mig_channel_accept(l, 20000, -1, &ch) || mig_stream_init(&s, ch, 1 << 20))
		return 2;
	s.timeout_ms = 20000;
	for (size_t got = 0; got < total; got += CHUNK)
		mig_stream_get(&s, b, CHUNK);
	mig_stream_put_u8(&s, 1);
	mig_stream_flush(&s);
	return mig_stream_error(&s) ? 3 : 0;
}

static int run(int port, const struct mig_tls *srv, const struct mig_tls *cli, size_t total)
{
	struct rusage r0, r1, rc;
	struct mig_listener l;
	struct mig_channel *ch;
	struct mig_stream s;
	char uri[64], why[512];
	int st;

	snprintf(uri, sizeof(uri), "tcp:127.0.0.1:%d", port);
	if (mig_channel_listen(uri, srv, &l, why, sizeof(why))) {
		fprintf(stderr, "%s\n", why);
		return 1;
	}
	pid_t pid = fork();
	if (!pid)
		_exit(receive(&l, total));
	mig_listener_close(&l);
	uint8_t *b = malloc(CHUNK);
	if (!b)
		return 1;
	for (size_t i = 0; i < CHUNK; i++)
		b[i] = (uint8_t)(i * 131 + (i >> 12));
	getrusage(RUSAGE_SELF, &r0);
	double t0 = now_s();
	if (mig_channel_open(uri, cli, 10000, &ch, why, sizeof(why)) ||
	    mig_stream_init(&s, ch, 1 << 20)) {
		fprintf(stderr, "%s\n", why);
		return 1;
	}
	s.timeout_ms = 20000;
	for (size_t put = 0; put < total; put += CHUNK)
		mig_stream_put(&s, b, CHUNK);
	mig_stream_flush(&s);
	(void)mig_stream_get_u8(&s);
	double t = now_s() - t0;
	getrusage(RUSAGE_SELF, &r1);
	int err = mig_stream_error(&s);
	mig_stream_destroy(&s);
	free(b);
	if (wait4(pid, &st, 0, &rc) < 0 || err || !WIFEXITED(st) || WEXITSTATUS(st)) {
		fprintf(stderr, "run failed: %s\n", err ? strerror(-err) : "receiver");
		return 1;
	}
	printf("%-5s %7.0f MB/s  sender CPU %5.2f s  receiver CPU %5.2f s  (%zu MiB)\n",
	       srv ? "tls" : "plain", (double)total / t / 1e6, cpu_s(&r1) - cpu_s(&r0), cpu_s(&rc),
	       total >> 20);
	fflush(stdout);
	return 0;
}

int main(int argc, char **argv)
{
	struct mig_tls srv = { 0 }, cli = { 0 };
	int rounds = argc > 3 ? atoi(argv[3]) : 3, port = 30000 + getpid() % 2000;

	if (argc < 3 || atoi(argv[2]) <= 0 || rounds <= 0 || rounds > 100) {
		fprintf(stderr, "usage: %s CREDS-DIR MIB [ROUNDS]\n", argv[0]);
		return 64;
	}
	snprintf(srv.dir, sizeof(srv.dir), "%s/server", argv[1]);
	snprintf(cli.dir, sizeof(cli.dir), "%s/client", argv[1]);
	for (int i = 0; i < rounds; i++)
		if (run(port++, NULL, NULL, (size_t)atoi(argv[2]) << 20) ||
		    run(port++, &srv, &cli, (size_t)atoi(argv[2]) << 20))
			return 1;
	return 0;
}
