/*
 * The net live source (src/migration/live_net.c) end to end without KVM:
 * a source NIC whose guest is paused for the switchover, frames arriving
 * on its backend before and after stop-and-copy, the pre-copy late op
 * sending them all after LOADED, and the destination's commit phase
 * taking them into its NIC's hold in order.  Then hostile forwarded-frame
 * sections (a NIC the destination lacks, lengths that lie, a source that
 * may not send after END, a section too long there) are refused with a
 * reason, and the source's hold is drained once its guest runs on (a
 * failed migration gives the frames back).  After GO: frames that still
 * reach the source's tap go in the epilogue (source/epilogue.c,
 * dest/incoming_epilogue.c), counted apart; the destination then takes
 * only forwarded frames and END, and refuses anything else; the epilogue
 * ends on ANNOUNCED, at its bound when the destination is silent, and at
 * once when the destination goes away.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "board/machine.h"
#include "devices/net/announce.h"
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

/* A NIC on a socketpair into m->nics[0] announcing `rounds` times; *peer gets the other end. */
static void t_nic_announcing(struct machine *m, bool *runs, int *peer, unsigned rounds)
{
	struct net_config c;
	char why[160];
	int sv[2];

	assert_int_equal(net_config_parse("tap=unused,mac=52:54:00:00:00:07", &c, why,
					  sizeof(why)), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	c.kind = NET_BACKEND_FD;
	c.fd = sv[0];
	net_announce_defaults(&c.announce);
	c.announce.rounds = rounds;
	struct virtio_net_config nc = {
		.net = &c, .ram = &ram, .raise = t_raise, .running = t_running, .opaque = runs,
	};
	assert_int_equal(virtio_net_create(&m->nics[0], &nc), 0);
	close(sv[0]);
	m->nr_nics = 1;
	*peer = sv[1];
}

static void t_nic(struct machine *m, bool *runs, int *peer)
{
	t_nic_announcing(m, runs, peer, 0);
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

/* Source and destination of one migration, joined by a socketpair, each with one NIC. */
struct t_pair {
	struct machine *src, *dst;
	struct mig_incoming *inc;
	struct migration *mig;
	int psrc, pdst;
};

/* The next section, after GO, is refused and why says so. */
static void t_refused_after_go(struct t_pair *t, const char *want)
{
	assert_int_equal(t_recv(t->inc, t->dst, MIG_IN_AFTER_GO, NULL), -EPROTO);
	if (!strstr(t->inc->why, want))
		fail_msg("refused with '%s', not '%s'", t->inc->why, want);
}


static void t_pair_up(struct t_pair *t, unsigned dst_rounds)
{
	int sv[2];

	memset(t, 0, sizeof(*t));
	t->src = calloc(1, sizeof(*t->src));
	t->dst = calloc(1, sizeof(*t->dst));
	t->inc = calloc(1, sizeof(*t->inc));
	t->mig = calloc(1, sizeof(*t->mig));
	assert_non_null(t->src);
	assert_non_null(t->dst);
	assert_non_null(t->inc);
	assert_non_null(t->mig);
	assert_int_equal(guest_memory_create(&ram, 16ULL << 20), 0);
	src_runs = dst_runs = false;
	t_nic(t->src, &src_runs, &t->psrc);
	t_nic_announcing(t->dst, &dst_runs, &t->pdst, dst_rounds);
	migration_init(t->mig, t->src);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	t_stream(sv[0], &t->mig->s);
	t_stream(sv[1], &t->inc->s);
	t->inc->m = t->dst;
	t->inc->connected = true;
	t->inc->go_heard = true;
	const struct mig_source_ops *o = mig_source_get(MIG_SOURCE_NET);
	assert_true(o->active(t->mig));
	t->mig->src_active[MIG_SOURCE_NET] = true;
	assert_int_equal(o->setup(t->mig), 0);
}

static void t_pair_down(struct t_pair *t)
{
	/* The source's guest never runs again after GO: its hold is just freed. */
	mig_stream_destroy(&t->inc->s);
	mig_stream_destroy(&t->mig->s);
	migration_destroy(t->mig);
	virtio_net_destroy(&t->src->nics[0]);
	virtio_net_destroy(&t->dst->nics[0]);
	close(t->psrc);
	close(t->pdst);
	guest_memory_destroy(&ram);
	free(t->src);
	free(t->dst);
	free(t->inc);
	free(t->mig);
}

/* After GO, at the level of sections: frames in order, counted apart, and hostile ones refused. */
static void test_after_go_sections(void **state)
{
	struct t_pair t;
	uint8_t got[256];

	t_pair_up(&t, 0);
	/* One frame before GO (the late op), two after: only those two count as after GO. */
	t_arrive(t.psrc, 1, 60);
	assert_int_equal(mig_sources_late(t.mig), 0);
	assert_int_equal(t_recv(t.inc, t.dst, MIG_IN_COMMIT, NULL), 0);
	t_arrive(t.psrc, 2, 100);
	t_arrive(t.psrc, 3, 61);
	assert_true(mig_sources_have_after_go(t.mig));
	assert_int_equal(mig_sources_after_go(t.mig), 0);
	assert_int_equal(t_recv(t.inc, t.dst, MIG_IN_AFTER_GO, NULL), 0);
	assert_int_equal(t_recv(t.inc, t.dst, MIG_IN_AFTER_GO, NULL), 0);
	assert_int_equal(t.dst->nics[0].held_frames, 3);
	static const unsigned lens[3] = { 60, 100, 61 };
	for (unsigned i = 0; i < 3; i++) {
		assert_int_equal(virtio_net_hold_get(&t.dst->nics[0], i, got, sizeof(got)),
				 (int)lens[i]);
		for (unsigned k = 0; k < lens[i]; k++)
			assert_int_equal(got[k], (uint8_t)(i + 1 + k));
	}
	assert_int_equal(t.mig->stats.net_frames_forwarded, 3);
	assert_int_equal(t.mig->stats.net_frames_after_go, 2);
	assert_int_equal(t.mig->stats.net_bytes_after_go, 161);
	/* Nothing new: nothing sent. */
	uint64_t out = t.mig->s.bytes_out;
	assert_int_equal(mig_sources_after_go(t.mig), 0);
	assert_int_equal(t.mig->s.bytes_out, out);

	/* Hostile: after GO only forwarded frames and END. */
	uint8_t pass[13] = { 0 };
	mig_section_write(&t.mig->s, MIG_SEC_PASS, pass, sizeof(pass));
	assert_int_equal(mig_stream_flush(&t.mig->s), 0);
	t_refused_after_go(&t, "section type 3 out of order (expected SOURCE net or END)");
	mig_section_write(&t.mig->s, MIG_SEC_GO, NULL, 0);
	assert_int_equal(mig_stream_flush(&t.mig->s), 0);
	t_refused_after_go(&t, "section type 13 out of order");
	t_send_source(&t.mig->s, MIG_SOURCE_SCRATCH, 0, 0, 4096);
	t_refused_after_go(&t, "source 1 after GO");
	t_send_source(&t.mig->s, MIG_SOURCE_BLOCK, 0, 0, 64);
	t_refused_after_go(&t, "source 3 after GO");
	t_send_source(&t.mig->s, MIG_SOURCE_NET, 1, 60, 60);
	t_refused_after_go(&t, "forwarded frame for NIC 1, which this destination lacks");
	t_send_source(&t.mig->s, MIG_SOURCE_NET, 0xffffffffu, 60, 60);
	t_refused_after_go(&t, "NIC 4294967295");
	t_send_source(&t.mig->s, MIG_SOURCE_NET, 0, 70000, 70000);
	t_refused_after_go(&t, "forwarded frame of 70000 bytes");
	t_send_source(&t.mig->s, MIG_SOURCE_NET, 0, 0xffffffffu, 60);
	t_refused_after_go(&t, "forwarded frame of 4294967295 bytes");
	t_send_source(&t.mig->s, MIG_SOURCE_NET, 0, 13, 13);
	t_refused_after_go(&t, "forwarded frame of 13 bytes");
	t_send_source(&t.mig->s, MIG_SOURCE_NET, 0, 100, 60);
	t_refused_after_go(&t, "in a section holding 60");
	mig_section_write(&t.mig->s, MIG_SEC_END, pass, 1);
	assert_int_equal(mig_stream_flush(&t.mig->s), 0);
	t_refused_after_go(&t, "END section carries 1 bytes");
	assert_int_equal(t.dst->nics[0].held_frames, 3);	/* none of those held */
	/* ANNOUNCED is the destination's: the incoming rules do not know it from a source. */
	mig_section_write(&t.mig->s, MIG_SEC_ANNOUNCED, NULL, 0);
	assert_int_equal(mig_stream_flush(&t.mig->s), 0);
	t_refused_after_go(&t, "unknown section type 35 (expected SOURCE net or END)");
	/* The empty END ends the late frames. */
	mig_section_write(&t.mig->s, MIG_SEC_END, NULL, 0);
	assert_int_equal(mig_stream_flush(&t.mig->s), 0);
	struct mig_in_ctx c = { .inc = t.inc, .m = t.dst, .ph = MIG_IN_AFTER_GO };
	uint8_t buf[64];
	assert_int_equal(mig_in_dispatch(&c, buf, sizeof(buf)), 0);
	assert_true(c.done);
	/* Last: a section too long is refused before its payload is read (the stream is over). */
	t_send_source(&t.mig->s, MIG_SOURCE_NET, 0, 65550, 200000);
	t_refused_after_go(&t, "too long here");
	t_pair_down(&t);
}

struct t_epilogue {
	struct migration *mig;
	uint64_t ns;		/* how long switchover_epilogue took */
};

static uint64_t t_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void *t_source_epilogue(void *arg)
{
	struct t_epilogue *e = arg;
	uint64_t t0 = t_now();

	switchover_epilogue(e->mig);
	e->ns = t_now() - t0;
	return NULL;
}

/*
 * Both halves end to end: frames reach the source's tap after GO while
 * the destination's guest runs; its NIC announces, the destination says
 * ANNOUNCED, the source ends with END well before its bound.
 */
static void test_after_go_epilogue(void **state)
{
	struct t_pair t;
	struct t_epilogue e;
	pthread_t th;

	t_pair_up(&t, 1);
	t.mig->p.net_epilogue_ns = 5000000000ULL;
	t.dst->vm.state = VM_STATE_RUNNING;
	/* Frames that came between GO and now, and the guest running here. */
	t_arrive(t.psrc, 10, 60);
	t_arrive(t.psrc, 11, 90);
	e = (struct t_epilogue){ .mig = t.mig };
	assert_int_equal(pthread_create(&th, NULL, t_source_epilogue, &e), 0);
	__atomic_store_n(&dst_runs, true, __ATOMIC_RELEASE);
	virtio_net_announce_self(&t.dst->nics[0]);
	uint64_t t0 = t_now();
	uint64_t got = mig_incoming_epilogue(t.inc, t.dst, -1);
	uint64_t took = t_now() - t0;
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(got, 2);
	assert_int_equal(t.mig->stats.net_frames_after_go, 2);
	assert_int_equal(t.mig->stats.net_bytes_after_go, 150);
	struct virtio_net_stats st;
	virtio_net_read_stats(&t.dst->nics[0], &st);
	assert_true(st.announce_rounds >= 1);
	/* Ended by ANNOUNCED and END, not by either side's bound. */
	assert_true(e.ns < 2000000000ULL);
	assert_true(took < 2000000000ULL);
	t.dst->vm.state = VM_STATE_STOPPED;
	t_pair_down(&t);
}

/* A destination that never announces: the source stops at its bound, and ends with END. */
static void test_after_go_silent(void **state)
{
	struct t_pair t;
	struct t_epilogue e;
	pthread_t th;
	uint8_t buf[256], type;
	uint32_t len;

	t_pair_up(&t, 0);
	t.mig->p.net_epilogue_ns = 150000000ULL;
	e = (struct t_epilogue){ .mig = t.mig };
	assert_int_equal(pthread_create(&th, NULL, t_source_epilogue, &e), 0);
	usleep(20000);
	t_arrive(t.psrc, 20, 70);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_true(e.ns >= 150000000ULL);
	assert_true(e.ns < 1500000000ULL);
	assert_int_equal(t.mig->stats.net_frames_after_go, 1);
	assert_int_equal(mig_section_read(&t.inc->s, buf, sizeof(buf), &type, &len), 0);
	assert_int_equal(type, MIG_SEC_SOURCE);
	assert_int_equal(len, 4 + 8 + 70);
	assert_int_equal(mig_section_read(&t.inc->s, buf, sizeof(buf), &type, &len), 0);
	assert_int_equal(type, MIG_SEC_END);
	assert_int_equal(len, 0);

	/* No bound at all: nothing is sent after GO. */
	uint64_t out = t.mig->s.bytes_out;
	t.mig->p.net_epilogue_ns = 0;
	t_arrive(t.psrc, 21, 70);
	switchover_epilogue(t.mig);
	assert_int_equal(t.mig->s.bytes_out, out);
	t_pair_down(&t);
}

/* A destination that goes away, or answers nonsense: the epilogue ends at once. */
static void test_after_go_dest_gone(void **state)
{
	struct t_pair t;
	uint64_t t0;

	t_pair_up(&t, 0);
	t.mig->p.net_epilogue_ns = 5000000000ULL;
	/* Nonsense on the return path (a RESULT where ANNOUNCED may come). */
	uint8_t res[6] = { 0 };
	mig_section_write(&t.inc->s, MIG_SEC_RESULT, res, sizeof(res));
	assert_int_equal(mig_stream_flush(&t.inc->s), 0);
	t0 = t_now();
	switchover_epilogue(t.mig);
	assert_true(t_now() - t0 < 2000000000ULL);
	/* Gone: the destination's end closes. */
	mig_stream_clear_error(&t.mig->s);
	mig_stream_destroy(&t.inc->s);
	t_arrive(t.psrc, 30, 80);
	t0 = t_now();
	switchover_epilogue(t.mig);
	assert_true(t_now() - t0 < 2000000000ULL);
	t_pair_down(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_forward),
		cmocka_unit_test(test_after_go_sections),
		cmocka_unit_test(test_after_go_epilogue),
		cmocka_unit_test(test_after_go_silent),
		cmocka_unit_test(test_after_go_dest_gone),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
