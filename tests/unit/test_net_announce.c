/*
 * announce-self: the gratuitous RARP's bytes (against a frame written out
 * by hand from RFC 903 and QEMU's net/announce.c, not from the code under
 * test), the round schedule (QEMU's defaults: 5 rounds, 50 ms, +100 ms
 * steps, at most 550 ms), the --announce option, and a NIC on a
 * socketpair sending its rounds on time, only while the guest runs, with
 * the counts the control API reports.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "board/machine.h"
#include "control/cmd_net.h"
#include "devices/net/announce.h"
#include "devices/virtio/net.h"
#include "util/parse.h"

static const uint8_t t_mac[6] = { 0x52, 0x54, 0x00, 0xab, 0xcd, 0xef };

static void test_rarp_bytes(void **state)
{
	static const uint8_t want[NET_ANNOUNCE_FRAME_LEN] = {
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff,	/* to everyone */
		0x52, 0x54, 0x00, 0xab, 0xcd, 0xef,	/* from the NIC */
		0x80, 0x35,				/* ETH_P_RARP */
		0x00, 0x01, 0x08, 0x00, 6, 4,		/* Ethernet, IPv4, sizes */
		0x00, 0x03,				/* reverse request */
		0x52, 0x54, 0x00, 0xab, 0xcd, 0xef, 0, 0, 0, 0,	/* sender: MAC, 0.0.0.0 */
		0x52, 0x54, 0x00, 0xab, 0xcd, 0xef, 0, 0, 0, 0,	/* target: MAC, 0.0.0.0 */
		/* padding to 60 bytes: zero */
	};
	uint8_t f[NET_ANNOUNCE_FRAME_LEN];

	memset(f, 0xa5, sizeof(f));
	net_announce_build(t_mac, f);
	assert_memory_equal(f, want, sizeof(want));
}

static void test_schedule(void **state)
{
	struct net_announce_params p;
	char why[128];

	net_announce_defaults(&p);
	assert_int_equal(p.rounds, 5);
	/* Gaps after rounds 1..7: 50, 150, ... then capped at 550 ms. */
	static const uint64_t ms[] = { 50, 150, 250, 350, 450, 550, 550 };
	for (unsigned i = 0; i < 7; i++)
		assert_int_equal(net_announce_gap_ns(&p, i + 1), ms[i] * NSEC_PER_MSEC);
	assert_int_equal(net_announce_gap_ns(&p, 1000000), 550 * NSEC_PER_MSEC);
	/* No step: every gap is initial. */
	assert_int_equal(net_announce_parse("step=0,initial=20ms,max=1s", &p, why, sizeof(why)), 0);
	assert_int_equal(net_announce_gap_ns(&p, 9), 20 * NSEC_PER_MSEC);
	/* initial = max: every gap is max. */
	assert_int_equal(net_announce_parse("initial=1s,step=10ms,max=1s", &p, why, sizeof(why)), 0);
	assert_int_equal(net_announce_gap_ns(&p, 1), NSEC_PER_SEC);
	assert_int_equal(net_announce_gap_ns(&p, 50), NSEC_PER_SEC);
	/* Huge step: no overflow, the cap holds. */
	assert_int_equal(net_announce_parse("initial=0,step=60s,max=60s", &p, why, sizeof(why)), 0);
	assert_int_equal(net_announce_gap_ns(&p, 1), 0);
	assert_int_equal(net_announce_gap_ns(&p, 0xffffffffu), 60 * NSEC_PER_SEC);
}

static void test_parse(void **state)
{
	struct net_announce_params p;
	char why[128];

	net_announce_defaults(&p);
	assert_int_equal(net_announce_parse("rounds=2", &p, why, sizeof(why)), 0);
	assert_int_equal(p.rounds, 2);
	assert_int_equal(p.initial_ns, 50 * NSEC_PER_MSEC);	/* kept */
	assert_int_equal(net_announce_parse("rounds=1001", &p, why, sizeof(why)), -EINVAL);
	assert_int_equal(net_announce_parse("bogus=1", &p, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "bogus"));
	assert_int_equal(net_announce_parse("initial=61s", &p, why, sizeof(why)), -EINVAL);
	assert_int_equal(net_announce_parse("initial=soon", &p, why, sizeof(why)), -EINVAL);
	net_announce_defaults(&p);
	assert_int_equal(net_announce_parse("initial=600ms", &p, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "max"));
}

/* ---- a NIC sending its rounds -------------------------------------------- */

static struct guest_memory ram;
static bool t_runs;

static bool t_running(void *opaque)
{
	return __atomic_load_n((bool *)opaque, __ATOMIC_ACQUIRE);
}

static void t_raise(void *opaque)
{
}

/*
 * The next frame from the NIC, or -1 if none within ms; *sent_ms is when the
 * NIC sent it (the kernel's SO_TIMESTAMPNS stamp, CLOCK_REALTIME), so a test
 * thread that polls late on a loaded machine does not shorten the gap it
 * measures to the next frame.
 */
static ssize_t t_recv_at(int fd, uint8_t *buf, size_t len, int ms, uint64_t *sent_ms)
{
	union {
		char buf[CMSG_SPACE(sizeof(struct timespec))];
		struct cmsghdr align;
	} ctl;

	for (int i = 0; i < ms; i++) {
		struct iovec iov = { .iov_base = buf, .iov_len = len };
		struct msghdr msg = {
			.msg_iov = &iov, .msg_iovlen = 1,
			.msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf),
		};
		ssize_t r = recvmsg(fd, &msg, MSG_DONTWAIT);
		if (r < 0) {
			usleep(1000);
			continue;
		}
		if (sent_ms) {
			struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
			struct timespec ts;

			assert_non_null(c);
			assert_int_equal(c->cmsg_level, SOL_SOCKET);
			assert_int_equal(c->cmsg_type, SCM_TIMESTAMPNS);
			memcpy(&ts, CMSG_DATA(c), sizeof(ts));
			*sent_ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
		}
		return r;
	}
	return -1;
}

static ssize_t t_recv(int fd, uint8_t *buf, size_t len, int ms)
{
	return t_recv_at(fd, buf, len, ms, NULL);
}

static void test_rounds(void **state)
{
	struct machine *m = calloc(1, sizeof(*m));
	uint8_t want[NET_ANNOUNCE_FRAME_LEN], got[256];
	struct virtio_net_stats s;
	struct net_config c;
	char why[160];
	int sv[2];

	assert_non_null(m);
	assert_int_equal(guest_memory_create(&ram, 16ULL << 20), 0);
	assert_int_equal(net_config_parse("tap=unused,mac=52:54:00:ab:cd:ef", &c, why, sizeof(why)),
			 0);
	net_announce_defaults(&c.announce);
	assert_int_equal(net_announce_parse("rounds=4,initial=40ms,step=20ms,max=70ms",
					    &c.announce, why, sizeof(why)), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	c.kind = NET_BACKEND_FD;
	c.fd = sv[0];
	struct virtio_net_config nc = {
		.net = &c, .ram = &ram, .raise = t_raise, .running = t_running, .opaque = &t_runs,
	};
	t_runs = false;
	assert_int_equal(virtio_net_create(&m->nics[0], &nc), 0);
	close(sv[0]);
	m->nr_nics = 1;
	net_announce_build(t_mac, want);
	int on = 1;
	assert_int_equal(setsockopt(sv[1], SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof(on)), 0);

	/* A paused guest is not announced; its rounds go out once it runs. */
	virtio_net_announce_self(&m->nics[0]);
	assert_int_equal(t_recv(sv[1], got, sizeof(got), 100), -1);
	__atomic_store_n(&t_runs, true, __ATOMIC_RELEASE);
	uint64_t at[4];
	for (unsigned i = 0; i < 4; i++) {
		assert_int_equal(t_recv_at(sv[1], got, sizeof(got), 5000, &at[i]),
				 VIRTIO_NET_HDR_LEN + NET_ANNOUNCE_FRAME_LEN);
		for (unsigned k = 0; k < VIRTIO_NET_HDR_LEN; k++)
			assert_int_equal(got[k], 0);
		assert_memory_equal(got + VIRTIO_NET_HDR_LEN, want, sizeof(want));
	}
	/* Gaps of at least 40, 60, 70 ms as sent (a loaded machine may stretch them). */
	assert_true(at[1] - at[0] >= 39);
	assert_true(at[2] - at[1] >= 59);
	assert_true(at[3] - at[2] >= 69);
	/* Four rounds, then no more. */
	assert_int_equal(t_recv(sv[1], got, sizeof(got), 300), -1);
	virtio_net_read_stats(&m->nics[0], &s);
	assert_int_equal(s.announce_rounds, 4);
	assert_int_equal(s.announce_errors, 0);

	/* The control API's view. */
	json_object *o = json_object_new_object(), *v, *a = control_nics_json(m);
	control_net_totals(m, o);
	assert_true(json_object_object_get_ex(o, "net-announce-rounds", &v));
	assert_int_equal(json_object_get_int64(v), 4);
	assert_int_equal(json_object_array_length(a), 1);
	assert_true(json_object_object_get_ex(json_object_array_get_idx(a, 0), "mac", &v));
	assert_string_equal(json_object_get_string(v), "52:54:00:ab:cd:ef");
	assert_true(json_object_object_get_ex(json_object_array_get_idx(a, 0), "announce-rounds",
					      &v));
	assert_int_equal(json_object_get_int64(v), 4);
	json_object_put(o);
	json_object_put(a);

	/* Again on demand (ferry announce): the rounds start over. */
	virtio_net_announce_self(&m->nics[0]);
	assert_int_equal(t_recv(sv[1], got, sizeof(got), 5000),
			 VIRTIO_NET_HDR_LEN + NET_ANNOUNCE_FRAME_LEN);
	/* The peer gone: rounds fail and are counted as such, nothing crashes. */
	close(sv[1]);
	for (int i = 0; i < 5000; i++) {
		virtio_net_read_stats(&m->nics[0], &s);
		if (s.announce_rounds + s.announce_errors == 8)
			break;
		usleep(1000);
	}
	assert_int_equal(s.announce_rounds + s.announce_errors, 8);
	assert_true(s.announce_rounds >= 5);
	virtio_net_destroy(&m->nics[0]);
	guest_memory_destroy(&ram);
	free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rarp_bytes),
		cmocka_unit_test(test_schedule),
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_rounds),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
