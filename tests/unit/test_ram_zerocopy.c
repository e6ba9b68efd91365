/*
 * Zero-copy RAM sections (ram_pool.c ram_job_write, by_ref jobs): with the
 * guest paused, raw pages go from guest memory in a scatter-gather write
 * instead of through the job's buffer.  The bytes on the wire must be
 * exactly those of the copying path (RAM_RUN for a run of raw pages, RAM
 * with entries when zero pages break it), the checksum must hold, the
 * digest must be of the pages, and a flipped byte must still be refused.
 * Over a real socketpair, read by another thread.  No KVM needed.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "migration/codec/codec.h"
#include "migration/digest.h"
#include "migration/format.h"
#include "migration/ram_pool.h"
#include "migration/section.h"
#include "migration/stream.h"
#include "util/ratelimit.h"

#define PAGES 64
#define GPA0 0x100000ULL

struct sink {
	int fd;
	uint8_t *buf;
	size_t len, cap;
};

/* The reader: everything until the end, into a buffer. */
static void *sink_thread(void *arg)
{
	struct sink *k = arg;

	for (;;) {
		if (k->len == k->cap) {
			k->cap = k->cap ? 2 * k->cap : 1 << 20;
			k->buf = realloc(k->buf, k->cap);
			if (!k->buf)
				return NULL;
		}
		ssize_t n = read(k->fd, k->buf + k->len, k->cap - k->len);
		if (n <= 0)
			return NULL;
		k->len += (size_t)n;
	}
}

static uint8_t *guest_pages(void)
{
	uint8_t *g = aligned_alloc(GUEST_PAGE_SIZE, PAGES * GUEST_PAGE_SIZE);
	uint64_t x = 0x9e3779b97f4a7c15ULL;

	assert_non_null(g);
	for (size_t i = 0; i < PAGES * GUEST_PAGE_SIZE / 8; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		((uint64_t *)g)[i] = x;
	}
	return g;
}

/*
 * Encode pages [0, n) of g (by reference or copied) as one job and write
 * it through a stream over a socketpair; returns the bytes on the wire
 * (*len) and fills the digest d if given.
 */
static uint8_t *write_job(const uint8_t *g, uint32_t n, const bool *hole, bool by_ref,
			  struct mig_digest *d, size_t *len)
{
	struct mig_codec_ctx c;
	struct mig_channel *ch;
	struct mig_stream s;
	struct sink k = { 0 };
	pthread_t t;
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	k.fd = sv[1];
	assert_int_equal(pthread_create(&t, NULL, sink_thread, &k), 0);
	assert_int_equal(mig_channel_socket(sv[0], &ch), 0);
	assert_int_equal(mig_stream_init(&s, ch, 1 << 20), 0);
	assert_int_equal(mig_codec_ctx_init(&c, true, MIG_COMPRESS_NONE, MIG_CODECS_BASE, 1, 0), 0);

	struct ram_job *j = calloc(1, sizeof(*j));
	assert_non_null(j);
	j->data = malloc(MIG_RAM_BATCH_MAX * GUEST_PAGE_SIZE);
	assert_non_null(j->data);
	static const uint8_t zero[GUEST_PAGE_SIZE];
	for (uint32_t i = 0; i < n; i++) {
		j->gpa[i] = GPA0 + i * GUEST_PAGE_SIZE;
		j->index[i] = i;
		j->hole[i] = hole && hole[i];
		j->src[i] = j->hole[i] ? zero : g + (size_t)i * GUEST_PAGE_SIZE;
	}
	j->count = n;
	j->by_ref = by_ref;
	ram_job_encode(j, &c, d);
	assert_int_equal(j->err, 0);
	uint64_t wire = ram_job_write(&s, j);
	assert_int_equal(mig_stream_flush(&s), 0);
	if (by_ref)
		assert_true(j->nref > 0);
	else
		assert_int_equal(j->nref, 0);
	mig_stream_destroy(&s);		/* closes sv[0]: the reader sees the end */
	pthread_join(t, NULL);
	close(sv[1]);
	assert_int_equal(k.len, wire);
	mig_codec_ctx_fini(&c);
	free(j->data);
	free(j);
	*len = k.len;
	return k.buf;
}

/* Read one section back from bytes; 0 with type and payload, or the error. */
static int read_back(const uint8_t *bytes, size_t len, uint8_t *type, uint8_t *payload,
		     uint32_t *plen)
{
	struct mig_channel *ch;
	struct mig_stream s;
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	int big = 4 << 20;
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	assert_int_equal(write(sv[0], bytes, len), (ssize_t)len);
	close(sv[0]);
	assert_int_equal(mig_channel_socket(sv[1], &ch), 0);
	assert_int_equal(mig_stream_init(&s, ch, 1 << 20), 0);
	s.timeout_ms = 5000;
	int err = mig_section_read(&s, payload, MIG_SECTION_MAX, type, plen);
	mig_stream_destroy(&s);
	return err;
}

/* A run of raw pages: RAM_RUN, byte for byte the copying path's, from guest memory. */
static void test_run_by_reference(void **state)
{
	uint8_t *g = guest_pages(), type;
	struct mig_digest dr = { 0 }, dc = { 0 };
	size_t lr, lc;
	uint32_t plen;

	/* A digest table the size of the test's "RAM". */
	dr.pages = dc.pages = PAGES;
	dr.hash = calloc(PAGES, sizeof(uint64_t));
	dc.hash = calloc(PAGES, sizeof(uint64_t));
	uint8_t *ref = write_job(g, PAGES, NULL, true, &dr, &lr);
	uint8_t *copy = write_job(g, PAGES, NULL, false, &dc, &lc);
	assert_int_equal(lr, lc);
	assert_memory_equal(ref, copy, lr);
	assert_memory_equal(dr.hash, dc.hash, PAGES * sizeof(uint64_t));

	uint8_t *payload = malloc(MIG_SECTION_MAX);
	assert_non_null(payload);
	assert_int_equal(read_back(ref, lr, &type, payload, &plen), 0);
	assert_int_equal(type, MIG_SEC_RAM_RUN);
	assert_int_equal(plen, 12 + PAGES * GUEST_PAGE_SIZE);
	assert_memory_equal(payload + 12, g, PAGES * GUEST_PAGE_SIZE);

	/* A flipped byte in a page is refused. */
	ref[MIG_SECTION_HDR + 12 + 5 * GUEST_PAGE_SIZE + 77] ^= 0x10;
	assert_int_equal(read_back(ref, lr, &type, payload, &plen), -EPROTO);
	free(payload);
	free(ref);
	free(copy);
	free(dr.hash);
	free(dc.hash);
	free(g);
}

/* Zero pages and a hole break the run: RAM with entries, still the same bytes. */
static void test_mixed_by_reference(void **state)
{
	uint8_t *g = guest_pages(), type;
	bool hole[PAGES] = { 0 };
	size_t lr, lc;
	uint32_t plen;

	memset(g + 3 * GUEST_PAGE_SIZE, 0, GUEST_PAGE_SIZE);
	memset(g + 40 * GUEST_PAGE_SIZE, 0, GUEST_PAGE_SIZE);
	hole[20] = true;
	uint8_t *ref = write_job(g, PAGES, hole, true, NULL, &lr);
	uint8_t *copy = write_job(g, PAGES, hole, false, NULL, &lc);
	assert_int_equal(lr, lc);
	assert_memory_equal(ref, copy, lr);

	uint8_t *payload = malloc(MIG_SECTION_MAX);
	assert_non_null(payload);
	assert_int_equal(read_back(ref, lr, &type, payload, &plen), 0);
	assert_int_equal(type, MIG_SEC_RAM);
	uint32_t data = 4 + MIG_RAM_ENTRY * PAGES;
	assert_int_equal(plen, data + (PAGES - 3) * GUEST_PAGE_SIZE);
	/* Page 21's bytes follow pages 0-2 and 4-19 (the zeros and the hole carry none). */
	assert_memory_equal(payload + data + 19 * GUEST_PAGE_SIZE, g + 21 * GUEST_PAGE_SIZE,
			    GUEST_PAGE_SIZE);
	ref[lr - 9] ^= 1;	/* the last page's last byte */
	assert_int_equal(read_back(ref, lr, &type, payload, &plen), -EPROTO);
	free(payload);
	free(ref);
	free(copy);
	free(g);
}

/*
 * Pre-copy's stream always has a limiter, at rate 0 unless --bandwidth
 * says otherwise: unlimited, its pages must still go out in the
 * scatter-gather write (nothing left in the stream's buffer), and only a
 * real limit sends them through the buffer, paid for in slices.
 */
static void test_unlimited_limiter_writes_through(void **state)
{
	uint8_t *g = guest_pages();
	size_t len = 32 * GUEST_PAGE_SIZE;	/* above the copy threshold, below the buffer */
	struct ratelimit rl;

	for (int limited = 0; limited < 2; limited++) {
		struct mig_channel *ch;
		struct mig_stream s;
		struct sink k = { 0 };
		pthread_t t;
		int sv[2];

		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
		k.fd = sv[1];
		assert_int_equal(pthread_create(&t, NULL, sink_thread, &k), 0);
		assert_int_equal(mig_channel_socket(sv[0], &ch), 0);
		assert_int_equal(mig_stream_init(&s, ch, 1 << 20), 0);
		ratelimit_init(&rl, limited ? 1ULL << 40 : 0, 0);
		s.rl = &rl;
		struct iovec iov = { .iov_base = g, .iov_len = len };
		mig_stream_putv(&s, &iov, 1);
		assert_int_equal(mig_stream_error(&s), 0);
		if (limited) {
			assert_int_equal(s.len, len);	/* copied, sent at the next flush */
			assert_int_equal(s.bytes_sent, 0);
		} else {
			assert_int_equal(s.len, 0);	/* written from the pages themselves */
			assert_int_equal(s.bytes_sent, len);
		}
		assert_int_equal(mig_stream_flush(&s), 0);
		mig_stream_destroy(&s);
		pthread_join(t, NULL);
		close(sv[1]);
		assert_int_equal(k.len, len);
		assert_memory_equal(k.buf, g, len);
		free(k.buf);
	}
	free(g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_run_by_reference),
		cmocka_unit_test(test_mixed_by_reference),
		cmocka_unit_test(test_unlimited_limiter_writes_through),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
