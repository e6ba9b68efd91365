/*
 * What the RAM source's send path costs in CPU per GiB, without KVM: 1 GiB
 * of synthetic guest pages (random, so none is zero and nothing repeats)
 * goes as RAM sections through the real encoder (ram_job_encode) and
 * section writer over a socketpair to a reader thread that drops it.
 * Three ways, interleaved, in the same run:
 *
 *   before     the path as it was: each page copied into the job's buffer,
 *              the section written with mig_section_put (the buffered
 *              header flushed by a write of its own, then the pages)
 *   copy       the live path now: copied, then one writev (ram_job_write)
 *   zero-copy  the paused path now: pages by reference, one writev from
 *              "guest memory", checksummed there (ram_job_write, by_ref)
 *
 * The sender's CPU (user + system, RUSAGE_THREAD: the encode, the checksum
 * and the kernel's copy into the socket) is what the source pays; the
 * reader's is printed beside it.  Not part of make check:
 *
 *   make build/bench/ram_send && build/bench/ram_send [GiB] [rounds]
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "migration/codec/codec.h"
#include "migration/format.h"
#include "migration/ram_pool.h"
#include "migration/section.h"
#include "migration/stream.h"

#define GUEST_MIB 256

enum way { BEFORE, COPY, ZEROCOPY, WAYS };
static const char *const way_name[WAYS] = { "before", "copy", "zero-copy" };

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double thread_cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_THREAD, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

struct reader {
	int fd;
	uint64_t bytes;
	double cpu;
};

static void *reader_thread(void *arg)
{
	struct reader *r = arg;
	uint8_t *buf = malloc(1 << 20);
	double c0 = thread_cpu_s();

	for (;;) {
		ssize_t n = read(r->fd, buf, 1 << 20);
		if (n <= 0)
			break;
		r->bytes += (uint64_t)n;
	}
	r->cpu = thread_cpu_s() - c0;
	free(buf);
	return NULL;
}

/* The section as ram.c wrote it before ram_job_write: a run of raw pages. */
static void write_before(struct mig_stream *s, const struct ram_job *j)
{
	struct mig_section_writer w;
	uint32_t len = 12 + j->bytes;

	if (mig_section_begin(&w, s, MIG_SEC_RAM_RUN, len))
		abort();
	mig_section_put_u64(&w, j->gpa[0]);
	mig_section_put_u32(&w, j->count);
	mig_section_put(&w, j->data, j->bytes);
	mig_section_end(&w);
}

struct result {
	double cpu, wall, reader_cpu;
};

static struct result run(enum way way, const uint8_t *guest, uint64_t total)
{
	struct mig_codec_ctx c;
	struct mig_channel *ch;
	struct mig_stream s;
	struct reader r = { 0 };
	pthread_t t;
	int sv[2], big = 4 << 20;

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		abort();
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	r.fd = sv[1];
	if (pthread_create(&t, NULL, reader_thread, &r) || mig_channel_socket(sv[0], &ch) ||
	    mig_stream_init(&s, ch, 1 << 20) ||
	    mig_codec_ctx_init(&c, true, MIG_COMPRESS_NONE, MIG_CODECS_BASE, 1, 0))
		abort();
	struct ram_job *j = calloc(1, sizeof(*j));
	j->data = malloc(MIG_RAM_BATCH_MAX * GUEST_PAGE_SIZE);
	uint64_t pages = (uint64_t)GUEST_MIB << 20 >> 12;

	double c0 = thread_cpu_s(), w0 = now_s();
	for (uint64_t done = 0; done < total; done += MIG_RAM_BATCH_MAX * GUEST_PAGE_SIZE) {
		uint64_t first = (done / GUEST_PAGE_SIZE) % pages;
		for (uint32_t i = 0; i < MIG_RAM_BATCH_MAX; i++) {
			j->gpa[i] = (first + i) * GUEST_PAGE_SIZE;
			j->index[i] = first + i;
			j->src[i] = guest + (first + i) * GUEST_PAGE_SIZE;
			j->hole[i] = false;
		}
		j->count = MIG_RAM_BATCH_MAX;
		j->by_ref = way == ZEROCOPY;
		ram_job_encode(j, &c, NULL);
		if (way == BEFORE)
			write_before(&s, j);
		else
			ram_job_write(&s, j);
	}
	if (mig_stream_flush(&s))
		fprintf(stderr, "ram_send: %s\n", mig_stream_why(&s));
	struct result res = { .cpu = thread_cpu_s() - c0 };
	mig_stream_destroy(&s);
	pthread_join(t, NULL);
	res.wall = now_s() - w0;
	res.reader_cpu = r.cpu;
	close(sv[1]);
	mig_codec_ctx_fini(&c);
	free(j->data);
	free(j);
	return res;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
	double gib = argc > 1 ? atof(argv[1]) : 1.0;
	int rounds = argc > 2 ? atoi(argv[2]) : 5;
	uint64_t total = (uint64_t)(gib * (1 << 30)) / (MIG_RAM_BATCH_MAX * GUEST_PAGE_SIZE) *
			 (MIG_RAM_BATCH_MAX * GUEST_PAGE_SIZE);
	size_t size = (size_t)GUEST_MIB << 20;
	uint8_t *guest = aligned_alloc(GUEST_PAGE_SIZE, size);
	uint64_t x = 0x2545f4914f6cdd1dULL;

	if (!guest || gib <= 0 || rounds < 1 || rounds > 64) {
		fprintf(stderr, "usage: ram_send [GiB > 0] [rounds 1..64]\n");
		return 2;
	}
	for (size_t i = 0; i < size / 8; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		((uint64_t *)guest)[i] = x;
	}
	double cpu[WAYS][64], wall[WAYS][64], rcpu[WAYS][64];
	for (int k = 0; k < rounds; k++)
		for (int w = 0; w < WAYS; w++) {
			enum way way = (enum way)((w + k) % WAYS);	/* rotate who goes first */
			struct result r = run(way, guest, total);
			cpu[way][k] = r.cpu;
			wall[way][k] = r.wall;
			rcpu[way][k] = r.reader_cpu;
		}
	double per = (double)(1 << 30) / (double)total;
	printf("ram_send: %.2f GiB of random pages over a socketpair, %d rounds, medians per GiB\n",
	       (double)total / (1 << 30), rounds);
	printf("%-10s %14s %12s %14s %10s\n", "way", "sender CPU s", "wall s", "reader CPU s",
	       "vs before");
	double base = median(cpu[BEFORE], rounds) * per;
	for (int w = 0; w < WAYS; w++) {
		double c = median(cpu[w], rounds) * per;
		printf("%-10s %14.3f %12.3f %14.3f %9.2fx\n", way_name[w], c,
		       median(wall[w], rounds) * per, median(rcpu[w], rounds) * per, c / base);
	}
	free(guest);
	return 0;
}
