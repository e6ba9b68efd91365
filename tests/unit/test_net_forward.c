/*
 * The net live source (src/migration/live_net.c) end to end without KVM:
 * a source NIC whose guest is paused for the switchover, frames arriving
 * on its backend before and after stop-and-copy, the pre-copy late op
 * sending them all after LOADED, and the destination's commit phase
 * taking them into its NIC's hold in order.  Then hostile forwarded-frame
 * sections (a NIC the destination lacks, lengths that lie, a source that
 * may not send after END, a section too long there) are refused with a
 * reason, and the source's hold is drained once its guest runs on (a
 * failed migration gives the frames back).
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
#include <unistd.h>
#include <cmocka.h>

#include "board/machine.h"
#include "migration/channel/channel.h"
#include "migration/dest/incoming_internal.h"
#include "migration/live.h"
#include "migration/migration.h"
#include "migration/section.h"
#include "util/le.h"

static struct guest_memory ram;
static bool src_runs, dst_runs;

static bool t_running(void *opaque)
{
	return __atomic_load_n((bool *)opaque, __ATOMIC_ACQUIRE);
}

static void t_raise(void *opaque)
{
}

/* A NIC on a socketpair into m->nics[0]; *peer gets the other end. */
static void t_nic(struct machine *m, bool *runs, int *peer)
{
	struct net_config c;
	char why[160];
	int sv[2];

	assert_int_equal(net_config_parse("tap=unused,mac=52:54:00:00:00:07", &c, why,
					  sizeof(why)), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	c.kind = NET_BACKEND_FD;
	c.fd = sv[0];
	struct virtio_net_config nc = {
		.net = &c, .ram = &ram, .raise = t_raise, .running = t_running, .opaque = runs,
	};
	assert_int_equal(virtio_net_create(&m->nics[0], &nc), 0);
	close(sv[0]);
	m->nr_nics = 1;
	*peer = sv[1];
}

/* A frame onto the NIC's backend, as a tap would hand it over. */
static void t_arrive(int peer, uint8_t seed, size_t len)
{
	uint8_t buf[VIRTIO_NET_HDR_LEN + 256] = { 0 };

	for (size_t i = 0; i < len; i++)
		buf[VIRTIO_NET_HDR_LEN + i] = (uint8_t)(seed + i);
	assert_int_equal(send(peer, buf, VIRTIO_NET_HDR_LEN + len, 0),
			 (ssize_t)(VIRTIO_NET_HDR_LEN + len));
}

static void t_stream(int fd, struct mig_stream *s)
{
	struct mig_channel *ch;

	assert_int_equal(mig_channel_socket(fd, &ch), 0);
	assert_int_equal(mig_stream_init(s, ch, 1 << 16), 0);
}

/* One section at the destination in phase ph; the reason of a refusal in inc->why. */
static int t_recv(struct mig_incoming *inc, struct machine *m, enum mig_in_phase ph, bool *late)
{
	struct mig_in_ctx c = { .inc = inc, .m = m, .ph = ph };
	uint8_t *buf = malloc(MIG_SOURCE_LATE_MAX);

	assert_non_null(buf);
	inc->why[0] = '\0';
	int err = mig_in_dispatch(&c, buf, MIG_SOURCE_LATE_MAX);
	free(buf);
	if (late)
		*late = c.late;
	return err;
}

/* A SOURCE section as a hostile source would write it. */
static void t_send_source(struct mig_stream *s, uint32_t id, uint32_t nic, uint32_t len,
			  uint32_t data)
{
	uint8_t *p = calloc(1, 12 + data);

	assert_non_null(p);
	le_put(p, id, 4);
	le_put(p + 4, nic, 4);
	le_put(p + 8, len, 4);
	mig_section_write(s, MIG_SEC_SOURCE, p, 12 + data);
	assert_int_equal(mig_stream_flush(s), 0);
	free(p);
}

static void test_forward(void **state)
{
	struct machine *src = calloc(1, sizeof(*src)), *dst = calloc(1, sizeof(*dst));
	struct mig_incoming *inc = calloc(1, sizeof(*inc));
	struct migration *mig = calloc(1, sizeof(*mig));
	uint8_t got[256];
	bool late;
	int psrc, pdst, sv[2];

	assert_non_null(src);
	assert_non_null(dst);
	assert_non_null(inc);
	assert_non_null(mig);
	assert_int_equal(guest_memory_create(&ram, 16ULL << 20), 0);
	src_runs = dst_runs = false;	/* the source's guest is paused for the switchover */
	t_nic(src, &src_runs, &psrc);
	t_nic(dst, &dst_runs, &pdst);
	migration_init(mig, src);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	t_stream(sv[0], &mig->s);
	t_stream(sv[1], &inc->s);
	inc->m = dst;

	const struct mig_source_ops *o = mig_source_get(MIG_SOURCE_NET);
	assert_non_null(o);
	assert_true(o->active(mig));
	mig->src_active[MIG_SOURCE_NET] = true;
	assert_int_equal(o->setup(mig), 0);
	/* Stop-and-copy: two frames wait in the tap; pre-copy holds them, sends nothing. */
	t_arrive(psrc, 1, 60);
	t_arrive(psrc, 2, 61);
	assert_int_equal(o->complete(mig, false), 0);
	assert_int_equal(mig_stream_flush(&mig->s), 0);
	assert_int_equal(mig->s.bytes_out, 0);
	assert_int_equal(src->nics[0].held_frames, 2);
	/* One more while the destination loads; then LOADED, and the late op. */
	t_arrive(psrc, 3, 200);
	assert_int_equal(mig_sources_late(mig), 0);
	assert_true(mig->s.bytes_out > 0);
	for (unsigned i = 0; i < 3; i++) {
		assert_int_equal(t_recv(inc, dst, MIG_IN_COMMIT, &late), 0);
		assert_true(late);
	}
	assert_int_equal(dst->nics[0].held_frames, 3);
	static const unsigned lens[3] = { 60, 61, 200 };
	for (unsigned i = 0; i < 3; i++) {
		assert_int_equal(virtio_net_hold_get(&dst->nics[0], i, got, sizeof(got)),
				 (int)lens[i]);
		for (unsigned k = 0; k < lens[i]; k++)
			assert_int_equal(got[k], (uint8_t)(i + 1 + k));
	}
	assert_int_equal(mig->stats.net_frames_forwarded, 3);
	assert_int_equal(mig->stats.net_bytes_forwarded, 321);
	assert_int_equal(mig->stats.net_frames_dropped, 0);
	/* Nothing new: a second late op sends nothing again. */
	uint64_t out = mig->s.bytes_out;
	assert_int_equal(mig_sources_late(mig), 0);
	assert_int_equal(mig->s.bytes_out, out);

	/* Hostile sections. */
	t_send_source(&mig->s, MIG_SOURCE_NET, 1, 60, 60);
	assert_int_equal(t_recv(inc, dst, MIG_IN_COMMIT, NULL), -EPROTO);
	assert_non_null(strstr(inc->why, "forwarded frame for NIC 1, which this destination lacks"));
	t_send_source(&mig->s, MIG_SOURCE_NET, 0, 70000, 70000);
	assert_int_equal(t_recv(inc, dst, MIG_IN_FINAL, NULL), -EPROTO);
	assert_non_null(strstr(inc->why, "forwarded frame of 70000 bytes"));
	t_send_source(&mig->s, MIG_SOURCE_NET, 0, 100, 60);
	assert_int_equal(t_recv(inc, dst, MIG_IN_FINAL, NULL), -EPROTO);
	assert_non_null(strstr(inc->why, "in a section holding 60"));
	t_send_source(&mig->s, MIG_SOURCE_SCRATCH, 0, 0, 4096);
	assert_int_equal(t_recv(inc, dst, MIG_IN_COMMIT, NULL), -EPROTO);
	assert_non_null(strstr(inc->why, "after END"));
	assert_int_equal(dst->nics[0].held_frames, 3);		/* none of those held */
	t_send_source(&mig->s, MIG_SOURCE_NET, 0, 65550, 200000);
	assert_int_equal(t_recv(inc, dst, MIG_IN_COMMIT, NULL), -EPROTO);
	assert_non_null(strstr(inc->why, "too long here"));

	/* The migration failed: the source's guest runs on and gets its frames. */
	__atomic_store_n(&src_runs, true, __ATOMIC_RELEASE);
	for (int i = 0; i < 5000 && __atomic_load_n(&src->nics[0].held_frames,
						    __ATOMIC_RELAXED); i++)
		usleep(1000);
	assert_int_equal(__atomic_load_n(&src->nics[0].held_frames, __ATOMIC_RELAXED), 0);

	mig_stream_destroy(&inc->s);
	mig_stream_destroy(&mig->s);
	migration_destroy(mig);
	virtio_net_destroy(&src->nics[0]);
	virtio_net_destroy(&dst->nics[0]);
	close(psrc);
	close(pdst);
	guest_memory_destroy(&ram);
	free(src);
	free(dst);
	free(inc);
	free(mig);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_forward),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
