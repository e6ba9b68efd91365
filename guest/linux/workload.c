/*
 * workload - the probe's workloads as a static Linux program, for the
 * initramfs scripts/linux-guest.sh builds: a heartbeat on stdout (the
 * console) every period, while threads idle, compute or touch memory.
 *
 *   workload idle [seconds]
 *   workload cpu THREADS [seconds]      each computes pow(sin(i), i)
 *   workload mem THREADS MIB [seconds]  each loads and stores over MIB MiB
 *
 * Lines: "hb N" every 100 ms; "done" at the end (seconds 0: run forever).
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_THREADS 64
#define PERIOD_NS 100000000L

static volatile double sink;
static size_t mem_bytes;

static void *cpu_thread(void *arg)
{
	double acc = 0;

	(void)arg;
	for (uint64_t i = 1;; i++) {
		acc += pow(sin((double)i), (double)(i % 64));
		if (!(i & 0xfffff))
			sink = acc;
	}
	return NULL;
}

static void *mem_thread(void *arg)
{
	volatile uint64_t *p = malloc(mem_bytes);
	size_t n = mem_bytes / sizeof(uint64_t);

	(void)arg;
	if (!p) {
		perror("workload: malloc");
		exit(1);
	}
	for (uint64_t pass = 0;; pass++)
		for (size_t i = 0; i < n; i += 8)	/* one store per cache line */
			p[i] = p[i] + pass;
	return NULL;
}

static long parse(const char *s, long lo, long hi, const char *what)
{
	char *end;
	long v = strtol(s, &end, 10);

	if (*s == '\0' || *end != '\0' || v < lo || v > hi) {
		fprintf(stderr, "workload: bad %s '%s' (%ld..%ld)\n", what, s, lo, hi);
		exit(64);
	}
	return v;
}

int main(int argc, char **argv)
{
	void *(*fn)(void *) = NULL;
	long threads = 0, seconds = 0;
	pthread_t t;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc >= 2 && !strcmp(argv[1], "idle")) {
		seconds = argc > 2 ? parse(argv[2], 0, 1L << 30, "seconds") : 0;
	} else if (argc >= 3 && !strcmp(argv[1], "cpu")) {
		fn = cpu_thread;
		threads = parse(argv[2], 1, MAX_THREADS, "threads");
		seconds = argc > 3 ? parse(argv[3], 0, 1L << 30, "seconds") : 0;
	} else if (argc >= 4 && !strcmp(argv[1], "mem")) {
		fn = mem_thread;
		threads = parse(argv[2], 1, MAX_THREADS, "threads");
		mem_bytes = (size_t)parse(argv[3], 1, 1L << 20, "MiB") << 20;
		seconds = argc > 4 ? parse(argv[4], 0, 1L << 30, "seconds") : 0;
	} else {
		fprintf(stderr, "usage: workload idle [s] | cpu THREADS [s] | mem THREADS MIB [s]\n");
		return 64;
	}
	for (long i = 0; i < threads; i++)
		if (pthread_create(&t, NULL, fn, NULL)) {
			perror("workload: pthread_create");
			return 1;
		}
	struct timespec next;
	clock_gettime(CLOCK_MONOTONIC, &next);
	for (long hb = 0; !seconds || hb < seconds * 10; hb++) {
		printf("hb %ld\n", hb);
		next.tv_nsec += PERIOD_NS;
		if (next.tv_nsec >= 1000000000L) {
			next.tv_nsec -= 1000000000L;
			next.tv_sec++;
		}
		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
	}
	printf("done\n");
	return 0;
}
