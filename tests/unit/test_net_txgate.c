/*
 * Output commit's frame gate (devices/virtio/net_txgate.c): frames leave
 * only when the epoch they were sent in is released, in order; bounded;
 * stop sends or drops what is kept.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <string.h>
#include <cmocka.h>

#include "devices/virtio/net_txgate.h"

struct sent {
	unsigned n;
	uint8_t first[64];	/* first byte of each frame sent, in order */
	uint32_t len[64];
};

static void t_send(void *opaque, const uint8_t *frame, uint32_t len)
{
	struct sent *s = opaque;

	if (s->n < 64) {
		s->first[s->n] = frame[0];
		s->len[s->n] = len;
	}
	s->n++;
}

static void hold(struct net_txgate *g, uint8_t tag, size_t len)
{
	static uint8_t a[8000], b[8000];
	struct iovec iov[2] = { { a, 10 }, { b, sizeof(b) } };

	a[0] = tag;
	assert_int_equal(net_txgate_hold(g, iov, 2, len), 0);
}

static void test_released_by_epoch(void **state)
{
	struct net_txgate g;
	struct sent s = { 0 };

	net_txgate_init(&g);
	net_txgate_start(&g, 1);
	hold(&g, 'a', 60);
	hold(&g, 'b', 70);
	assert_int_equal(net_txgate_mark(&g), 1);	/* checkpoint 1 taken */
	hold(&g, 'c', 80);
	assert_int_equal(net_txgate_mark(&g), 2);
	hold(&g, 'd', 90);
	/* Nothing before an acknowledgement. */
	net_txgate_release(&g, 0, t_send, &s);
	assert_int_equal(s.n, 0);
	/* ACK 1: the frames sent before checkpoint 1, in order, and whole. */
	net_txgate_release(&g, 1, t_send, &s);
	assert_int_equal(s.n, 2);
	assert_int_equal(s.first[0], 'a');
	assert_int_equal(s.len[0], 60);
	assert_int_equal(s.first[1], 'b');
	assert_int_equal(g.frames, 2);
	/* ACK 2. */
	net_txgate_release(&g, 2, t_send, &s);
	assert_int_equal(s.n, 3);
	assert_int_equal(s.first[2], 'c');
	/* Stop sending the rest (the guest runs on unprotected). */
	net_txgate_stop(&g, t_send, &s);
	assert_int_equal(s.n, 4);
	assert_int_equal(s.first[3], 'd');
	assert_false(g.on);
	assert_int_equal(g.frames, 0);
	assert_int_equal(g.bytes, 0);
	assert_int_equal(g.released, 4);
}

static void test_fenced_drops(void **state)
{
	struct net_txgate g;
	struct sent s = { 0 };

	net_txgate_init(&g);
	net_txgate_start(&g, 1);
	hold(&g, 'a', 60);
	net_txgate_mark(&g);
	hold(&g, 'b', 60);
	net_txgate_stop(&g, NULL, NULL);
	assert_int_equal(g.dropped, 2);
	assert_int_equal(g.frames, 0);
	/* Held again later: the list was reset properly. */
	net_txgate_start(&g, 5);
	hold(&g, 'e', 60);
	net_txgate_release(&g, 5, t_send, &s);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.first[0], 'e');
}

static void test_bounded(void **state)
{
	struct net_txgate g;
	static uint8_t big[NET_TXGATE_MAX_BYTES / 2];
	struct iovec iov = { big, sizeof(big) };

	net_txgate_init(&g);
	net_txgate_start(&g, 1);
	assert_int_equal(net_txgate_hold(&g, &iov, 1, sizeof(big)), 0);
	assert_int_equal(net_txgate_hold(&g, &iov, 1, sizeof(big)), 0);
	assert_int_equal(net_txgate_hold(&g, &iov, 1, 100), -ENOBUFS);
	assert_int_equal(g.dropped, 1);
	net_txgate_stop(&g, NULL, NULL);
	for (unsigned i = 0; i < NET_TXGATE_MAX_FRAMES; i++)
		hold(&g, 'x', 60);
	iov.iov_len = 60;
	assert_int_equal(net_txgate_hold(&g, &iov, 1, 60), -ENOBUFS);
	net_txgate_stop(&g, NULL, NULL);
	assert_int_equal(g.frames, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_released_by_epoch),
		cmocka_unit_test(test_fenced_drops),
		cmocka_unit_test(test_bounded),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
