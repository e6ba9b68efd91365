/*
 * --channels (src/migration/multi.h): the hello and BARRIER payloads as
 * hostile input, and the destination's side over real unix sockets (no
 * KVM): extra connections accepted after READY while hostile ones (another
 * migration's id, index 0 or past the count, a taken index, a hello cut
 * short) are refused with a RESULT and do not disturb the migration;
 * pages spread over the connections land in guest RAM; the pass barrier
 * keeps a page re-sent in a later pass from being overtaken by its older
 * copy on another connection; a connection that drops, carries a foreign
 * section, skips a barrier or falls silent fails the migration.  Then the
 * source's side (source/channels.c: connect, hello, sending threads,
 * barriers) against the destination's over three unix connections, a
 * destination that drops its connections (the source fails, naming a
 * channel) and one that refuses the hello.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <cmocka.h>

#include "migration/channel/channel.h"
#include "migration/codec/codec.h"
#include "migration/dest/incoming.h"
#include "migration/dest/incoming_internal.h"
#include "migration/format.h"
#include "migration/migration.h"
#include "migration/ram.h"
#include "migration/multi.h"
#include "migration/preempt.h"
#include "migration/section.h"
#include "util/le.h"
#include "vmm/memory.h"

#define PG GUEST_PAGE_SIZE
#define T_MEM (16ULL << 20)
#define T_ID 0x1234567890abcdefULL

/* ---- the payloads ---- */

static void t_hello(uint8_t *p, uint64_t id, uint32_t index, uint32_t count)
{
	struct mig_chan_hello h = { .id = id, .index = index, .count = count };

	mig_chan_hello_encode(p, &h);
}

static void test_hello_round_trip(void **state)
{
	uint8_t p[MIG_CHAN_HELLO_LEN];
	struct mig_chan_hello h;
	char why[200];

	(void)state;
	t_hello(p, T_ID, 3, 4);
	assert_int_equal(mig_chan_hello_check(p, sizeof(p), T_ID, 4, 1u | 1u << 1, false, &h, why,
					      sizeof(why)), 0);
	assert_true(h.id == T_ID);
	assert_int_equal(h.index, 3);
	assert_int_equal(h.count, 4);
}

/* Every way a hello can be wrong, each refused with its reason. */
static void test_hello_hostile(void **state)
{
	uint8_t p[MIG_CHAN_HELLO_LEN];
	struct mig_chan_hello h;
	char why[200];

	(void)state;
	t_hello(p, T_ID ^ 1, 1, 4);
	assert_int_equal(mig_chan_hello_check(p, sizeof(p), T_ID, 4, 1, false, &h, why, sizeof(why)),
			 -EPROTO);
	assert_non_null(strstr(why, "another migration"));
	t_hello(p, T_ID, 0, 4);
	assert_int_equal(mig_chan_hello_check(p, sizeof(p), T_ID, 4, 1, false, &h, why, sizeof(why)),
			 -EPROTO);
	assert_non_null(strstr(why, "index 0"));
	t_hello(p, T_ID, 4, 4);
	assert_int_equal(mig_chan_hello_check(p, sizeof(p), T_ID, 4, 1, false, &h, why, sizeof(why)),
			 -EPROTO);
	assert_non_null(strstr(why, "index 4"));
	t_hello(p, T_ID, 0xffffffffu, 4);
	assert_int_equal(mig_chan_hello_check(p, sizeof(p), T_ID, 4, 1, false, &h, why, sizeof(why)),
			 -EPROTO);
	t_hello(p, T_ID, 2, 4);
	assert_int_equal(mig_chan_hello_check(p, sizeof(p), T_ID, 4, 1u | 1u << 2, false, &h, why,
					      sizeof(why)), -EPROTO);
	assert_non_null(strstr(why, "connected already"));
	t_hello(p, T_ID, 2, 8);
	assert_int_equal(mig_chan_hello_check(p, sizeof(p), T_ID, 4, 1, false, &h, why, sizeof(why)),
			 -EPROTO);
	assert_non_null(strstr(why, "8 connections"));
	/* A count past the limit is refused even when both sides claim it. */
	t_hello(p, T_ID, 20, 64);
	assert_int_equal(mig_chan_hello_check(p, sizeof(p), T_ID, 64, 1, false, &h, why, sizeof(why)),
			 -EPROTO);
	/* Truncated, at every length. */
	t_hello(p, T_ID, 1, 4);
	for (size_t n = 0; n < sizeof(p); n++)
		assert_int_equal(mig_chan_hello_check(p, n, T_ID, 4, 1, false, &h, why, sizeof(why)),
				 -EPROTO);
	/* The main stream's magic, or a bad version. */
	memcpy(p, MIG_MAGIC, 8);
	assert_int_equal(mig_chan_hello_check(p, sizeof(p), T_ID, 4, 1, false, &h, why, sizeof(why)),
			 -EPROTO);
	assert_non_null(strstr(why, "magic"));
	t_hello(p, T_ID, 1, 4);
	le_put(p + 8, MIG_VERSION + 1, 4);
	assert_int_equal(mig_chan_hello_check(p, sizeof(p), T_ID, 4, 1, false, &h, why, sizeof(why)),
			 -EPROTO);
	assert_non_null(strstr(why, "version"));
	/* No migration id to match (an older CONFIG): nothing may join. */
	t_hello(p, 0, 1, 4);
	assert_int_equal(mig_chan_hello_check(p, sizeof(p), 0, 4, 1, false, &h, why, sizeof(why)),
			 -EPROTO);
}

/*
 * --postcopy-preempt's hello: index MIG_CHAN_PREEMPT, accepted only when
 * READY agreed on it, once, and with the migration's id and count.
 */
static void test_hello_preempt(void **state)
{
	uint8_t p[MIG_CHAN_HELLO_LEN];
	struct mig_chan_hello h;
	char why[200];

	(void)state;
	t_hello(p, T_ID, MIG_CHAN_PREEMPT, 1);
	assert_int_equal(mig_chan_hello_check(p, sizeof(p), T_ID, 1, 1, true, &h, why, sizeof(why)),
			 0);
	assert_int_equal(h.index, MIG_CHAN_PREEMPT);
	/* With channels: the count must be theirs. */
	t_hello(p, T_ID, MIG_CHAN_PREEMPT, 4);
	assert_int_equal(mig_chan_hello_check(p, sizeof(p), T_ID, 4, 1u | 1u << 1, true, &h, why,
					      sizeof(why)), 0);
	/* Not agreed: refused. */
	assert_int_equal(mig_chan_hello_check(p, sizeof(p), T_ID, 4, 1, false, &h, why, sizeof(why)),
			 -EPROTO);
	assert_non_null(strstr(why, "not agreed"));
	/* A second one. */
	assert_int_equal(mig_chan_hello_check(p, sizeof(p), T_ID, 4, 1 | MIG_CHAN_TAKEN_PREEMPT,
					      true, &h, why, sizeof(why)), -EPROTO);
	assert_non_null(strstr(why, "connected already"));
	/* Another migration's, or another count. */
	t_hello(p, T_ID ^ 2, MIG_CHAN_PREEMPT, 4);
	assert_int_equal(mig_chan_hello_check(p, sizeof(p), T_ID, 4, 1, true, &h, why, sizeof(why)),
			 -EPROTO);
	t_hello(p, T_ID, MIG_CHAN_PREEMPT, 3);
	assert_int_equal(mig_chan_hello_check(p, sizeof(p), T_ID, 4, 1, true, &h, why, sizeof(why)),
			 -EPROTO);
	/* Agreeing on preempt opens no other index. */
	t_hello(p, T_ID, MIG_CHAN_PREEMPT - 1, 4);
	assert_int_equal(mig_chan_hello_check(p, sizeof(p), T_ID, 4, 1, true, &h, why, sizeof(why)),
			 -EPROTO);
	t_hello(p, T_ID, 1, 1);
	assert_int_equal(mig_chan_hello_check(p, sizeof(p), T_ID, 1, 1, true, &h, why, sizeof(why)),
			 -EPROTO);
}

static void test_barrier_payload(void **state)
{
	uint8_t p[MIG_CHAN_BARRIER_LEN + 1];
	uint32_t seq;
	bool final;

	(void)state;
	mig_chan_barrier_encode(p, 7, true);
	assert_int_equal(mig_chan_barrier_parse(p, MIG_CHAN_BARRIER_LEN, &seq, &final), 0);
	assert_int_equal(seq, 7);
	assert_true(final);
	mig_chan_barrier_encode(p, 8, false);
	assert_int_equal(mig_chan_barrier_parse(p, MIG_CHAN_BARRIER_LEN, &seq, &final), 0);
	assert_false(final);
	assert_int_equal(mig_chan_barrier_parse(p, 4, &seq, &final), -EPROTO);
	assert_int_equal(mig_chan_barrier_parse(p, 6, &seq, &final), -EPROTO);
	p[4] = 2;
	assert_int_equal(mig_chan_barrier_parse(p, MIG_CHAN_BARRIER_LEN, &seq, &final), -EPROTO);
	assert_int_not_equal(mig_chan_new_id(), 0);
}

/* ---- the destination over unix sockets ---- */

struct t_env {
	char dir[64], uri[128];
	struct machine m;
	struct mig_incoming inc;
	struct mig_incoming_opts opts;
	struct mig_listener l;
	int main_peer;			/* the source's end of the main stream */
};

static int t_setup(void **state)
{
	struct t_env *e = calloc(1, sizeof(*e));
	uint64_t pages = T_MEM / PG;
	char why[256];
	int sv[2];
	struct mig_channel *ch;

	assert_non_null(e);
	snprintf(e->dir, sizeof(e->dir), "/tmp/ferry-chan-XXXXXX");
	assert_non_null(mkdtemp(e->dir));
	snprintf(e->uri, sizeof(e->uri), "unix:%s/s", e->dir);
	assert_int_equal(guest_memory_create(&e->m.vm.mem, T_MEM), 0);
	e->inc.m = &e->m;
	e->inc.written = calloc(pages / 64 + 1, sizeof(unsigned long));
	e->inc.known = calloc(pages / 64 + 1, sizeof(unsigned long));
	e->inc.codecs = MIG_CODECS_KNOWN;
	e->inc.cfg.mig_id = T_ID;
	e->inc.nchan = 3;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(mig_channel_socket(sv[0], &ch), 0);
	assert_int_equal(mig_stream_init(&e->inc.s, ch, 1 << 16), 0);
	e->main_peer = sv[1];
	e->opts = (struct mig_incoming_opts){ .uri = e->uri, .intr_fd = -1, .io_timeout_ms = 3000 };
	assert_int_equal(mig_channel_listen(e->uri, NULL, &e->l, why, sizeof(why)), 0);
	*state = e;
	return 0;
}

static int t_teardown(void **state)
{
	struct t_env *e = *state;

	mig_chans_in_stop(&e->inc);
	mig_preempt_in_stop(&e->inc);
	mig_listener_close(&e->l);
	mig_stream_destroy(&e->inc.s);
	close(e->main_peer);
	free(e->inc.written);
	free(e->inc.known);
	guest_memory_destroy(&e->m.vm.mem);
	rmdir(e->dir);
	free(e);
	return 0;
}

/* A source's connection (connected: the listener's backlog holds it). */
static struct mig_stream *t_connect(struct t_env *e)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct mig_stream *s = calloc(1, sizeof(*s));
	struct mig_channel *ch;
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	assert_non_null(s);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/s", e->dir);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(mig_channel_socket(fd, &ch), 0);
	assert_int_equal(mig_stream_init(s, ch, 1 << 16), 0);
	s->timeout_ms = 3000;
	return s;
}

static struct mig_stream *t_join(struct t_env *e, uint64_t id, uint32_t index, uint32_t count)
{
	struct mig_stream *s = t_connect(e);
	uint8_t p[MIG_CHAN_HELLO_LEN];

	t_hello(p, id, index, count);
	mig_stream_put(s, p, sizeof(p));
	assert_int_equal(mig_stream_flush(s), 0);
	return s;
}

/* The RESULT a hello got: its status (1: none came, the connection closed). */
static int t_answer(struct mig_stream *s)
{
	uint8_t buf[512], type;
	uint32_t len;
	int32_t status;
	const char *msg;
	int n;

	if (mig_section_read(s, buf, sizeof(buf), &type, &len))
		return 1;
	assert_int_equal(type, MIG_SEC_RESULT);
	assert_int_equal(mig_result_parse(buf, len, &status, &msg, &n), 0);
	return status;
}

static void t_close(struct mig_stream *s)
{
	mig_stream_destroy(s);
	free(s);
}

static void t_page(struct mig_stream *s, uint64_t gpa, uint8_t fill)
{
	uint8_t p[4 + MIG_RAM_ENTRY + PG];

	le_put(p, 1, 4);
	le_put(p + 4, gpa | MIG_CODEC_RAW, 8);
	le_put(p + 12, PG, 4);
	memset(p + 16, fill, PG);
	mig_section_write(s, MIG_SEC_RAM, p, sizeof(p));
	assert_int_equal(mig_stream_flush(s), 0);
}

static void t_barrier(struct mig_stream *s, uint32_t seq, bool final)
{
	uint8_t p[MIG_CHAN_BARRIER_LEN];

	mig_chan_barrier_encode(p, seq, final);
	mig_section_write(s, MIG_SEC_BARRIER, p, sizeof(p));
	assert_int_equal(mig_stream_flush(s), 0);
}

static uint8_t t_byte(struct t_env *e, uint64_t gpa)
{
	return *(uint8_t *)guest_memory_ptr(&e->m.vm.mem, gpa, PG);
}

/* The source's side of t_accept, in a thread: the listener's backlog is short. */
struct t_joiner {
	struct t_env *e;
	struct mig_stream *bad_id, *c1, *dup, *past, *cut, *c2;
};

static void *t_joiner_run(void *arg)
{
	struct t_joiner *j = arg;
	struct t_env *e = j->e;

	j->bad_id = t_join(e, T_ID + 1, 1, 3);
	j->c1 = t_join(e, T_ID, 1, 3);
	j->dup = t_join(e, T_ID, 1, 3);
	j->past = t_join(e, T_ID, 3, 3);
	j->cut = t_connect(e);
	mig_stream_put(j->cut, MIG_CHAN_MAGIC, 8);	/* and then it hangs up */
	mig_stream_flush(j->cut);
	shutdown(j->cut->ch->fd, SHUT_WR);
	j->c2 = t_join(e, T_ID, 2, 3);
	return NULL;
}

/* Accept channels 1 and 2 of 3: hostile connections among them are refused. */
static void t_accept(struct t_env *e, struct mig_stream **c1, struct mig_stream **c2)
{
	struct t_joiner j = { .e = e };
	pthread_t t;

	assert_int_equal(pthread_create(&t, NULL, t_joiner_run, &j), 0);
	int err = mig_chans_in_accept(&e->inc, &e->opts, &e->l);
	pthread_join(t, NULL);
	assert_int_equal(err, 0);
	*c1 = j.c1;
	*c2 = j.c2;
	assert_int_equal(t_answer(*c1), 0);
	assert_int_equal(t_answer(*c2), 0);
	assert_true(t_answer(j.bad_id) < 0);
	assert_true(t_answer(j.dup) < 0);
	assert_true(t_answer(j.past) < 0);
	assert_int_not_equal(t_answer(j.cut), 0);
	t_close(j.bad_id);
	t_close(j.dup);
	t_close(j.past);
	t_close(j.cut);
	assert_false(mig_chans_in_done(&e->inc));
}

/* The source's side of test_accept_preempt: two channels and the preempt connection. */
struct t_pjoiner {
	struct t_env *e;
	struct mig_stream *c1, *pre, *dup, *c2;
};

static void *t_pjoiner_run(void *arg)
{
	struct t_pjoiner *j = arg;

	j->c1 = t_join(j->e, T_ID, 1, 3);
	j->pre = t_join(j->e, T_ID, MIG_CHAN_PREEMPT, 3);
	j->dup = t_join(j->e, T_ID, MIG_CHAN_PREEMPT, 3);
	j->c2 = t_join(j->e, T_ID, 2, 3);
	return NULL;
}

/*
 * --postcopy-preempt with --channels: the preempt connection is accepted
 * in the same wait (a second one refused), kept aside for post-copy; the
 * channels work as ever.
 */
static void test_accept_preempt(void **state)
{
	struct t_env *e = *state;
	struct t_pjoiner j = { .e = e };
	pthread_t t;

	e->inc.preempt = true;
	assert_int_equal(pthread_create(&t, NULL, t_pjoiner_run, &j), 0);
	assert_int_equal(mig_chans_in_accept(&e->inc, &e->opts, &e->l), 0);
	pthread_join(t, NULL);
	assert_int_equal(t_answer(j.c1), 0);
	assert_int_equal(t_answer(j.pre), 0);
	assert_true(t_answer(j.dup) < 0);
	assert_int_equal(t_answer(j.c2), 0);
	assert_non_null(e->inc.preempt_in);
	assert_false(mig_chans_in_done(&e->inc));
	t_page(j.c1, 3 * PG, 0x31);
	t_barrier(j.c1, 1, true);
	t_barrier(j.c2, 1, true);
	assert_int_equal(mig_chans_in_barrier(&e->inc, 1, true), 0);
	assert_int_equal(t_byte(e, 3 * PG), 0x31);
	mig_preempt_in_stop(&e->inc);
	assert_null(e->inc.preempt_in);
	/* The destination closed its end: the source's sees it. */
	uint8_t b;
	assert_true(read(j.pre->ch->fd, &b, 1) <= 0);
	t_close(j.c1);
	t_close(j.pre);
	t_close(j.dup);
	t_close(j.c2);
}

/* Only the preempt connection: no channel to wait for, DISCARD may come at once. */
static void test_accept_preempt_alone(void **state)
{
	struct t_env *e = *state;
	struct mig_stream *pre;

	e->inc.preempt = true;
	e->inc.nchan = 1;
	pre = t_join(e, T_ID, MIG_CHAN_PREEMPT, 1);
	assert_int_equal(mig_chans_in_accept(&e->inc, &e->opts, &e->l), 0);
	assert_int_equal(t_answer(pre), 0);
	assert_non_null(e->inc.preempt_in);
	assert_true(mig_chans_in_done(&e->inc));
	mig_preempt_in_stop(&e->inc);
	t_close(pre);
}

/*
 * Pass 1 sends page X on connection 1, pass 2 re-sends it on connection 2;
 * connection 2's copy reaches the destination first (connection 1 is
 * slow), yet the newer copy is what stays.
 */
static void test_pages_and_barriers(void **state)
{
	struct t_env *e = *state;
	struct mig_stream *c1, *c2;
	const uint64_t x = 5 * PG;

	t_accept(e, &c1, &c2);
	t_barrier(c2, 1, false);
	t_page(c2, x, 0xbb);		/* pass 2's copy, first on the wire */
	t_page(c2, 9 * PG, 0x99);
	usleep(100000);
	assert_int_equal(t_byte(e, x), 0);	/* held back behind barrier 1 */
	t_page(c1, x, 0xaa);		/* pass 1's copy, late */
	t_page(c1, 7 * PG, 0x77);
	t_barrier(c1, 1, false);
	assert_int_equal(mig_chans_in_barrier(&e->inc, 1, false), 0);
	t_barrier(c1, 2, true);
	t_barrier(c2, 2, true);
	assert_int_equal(mig_chans_in_barrier(&e->inc, 2, true), 0);
	assert_true(mig_chans_in_done(&e->inc));
	assert_int_equal(t_byte(e, x), 0xbb);
	assert_int_equal(t_byte(e, 7 * PG), 0x77);
	assert_int_equal(t_byte(e, 9 * PG), 0x99);
	assert_true(e->inc.known[0] & (1UL << 5));
	assert_int_equal(e->inc.pages, 4);
	/* Nothing after the final barrier: another is refused. */
	assert_int_equal(mig_chans_in_barrier(&e->inc, 3, false), -EPROTO);
	t_close(c1);
	t_close(c2);
}

/* An extra connection that drops mid-pass fails the migration, naming it. */
static void test_channel_dropped(void **state)
{
	struct t_env *e = *state;
	struct mig_stream *c1, *c2;

	t_accept(e, &c1, &c2);
	t_page(c1, 3 * PG, 0x33);
	t_close(c1);			/* killed before its barrier */
	t_barrier(c2, 1, false);
	int err = mig_chans_in_barrier(&e->inc, 1, false);
	assert_true(err < 0);
	assert_non_null(strstr(e->inc.why, "channel 1"));
	mig_chans_in_stop(&e->inc);
	t_close(c2);
}

/* Only pages and barriers travel on an extra connection. */
static void test_channel_foreign_section(void **state)
{
	struct t_env *e = *state;
	struct mig_stream *c1, *c2;

	t_accept(e, &c1, &c2);
	mig_section_write(c2, MIG_SEC_STATE, "x", 1);
	assert_int_equal(mig_stream_flush(c2), 0);
	t_barrier(c1, 1, false);
	assert_int_equal(mig_chans_in_barrier(&e->inc, 1, false), -EPROTO);
	assert_non_null(strstr(e->inc.why, "channel 2"));
	assert_non_null(strstr(e->inc.why, "extra channel"));
	t_close(c1);
	t_close(c2);
}

/* A connection ahead of the stream (it skipped a barrier) is refused. */
static void test_channel_skipped_barrier(void **state)
{
	struct t_env *e = *state;
	struct mig_stream *c1, *c2;

	t_accept(e, &c1, &c2);
	t_barrier(c1, 2, false);
	t_barrier(c2, 1, false);
	assert_int_equal(mig_chans_in_barrier(&e->inc, 1, false), -EPROTO);
	assert_non_null(strstr(e->inc.why, "channel 1 is at BARRIER 2"));
	t_close(c1);
	t_close(c2);
}

/* A connection that falls silent: the barrier gives up after the I/O timeout. */
static void test_channel_silent(void **state)
{
	struct t_env *e = *state;
	struct mig_stream *c1, *c2;

	e->opts.io_timeout_ms = 300;
	t_accept(e, &c1, &c2);
	t_barrier(c1, 1, false);
	assert_int_equal(mig_chans_in_barrier(&e->inc, 1, false), -ETIMEDOUT);
	t_close(c1);
	t_close(c2);
}

/* A page outside guest RAM on an extra connection is refused as on the main one. */
static void test_channel_bad_page(void **state)
{
	struct t_env *e = *state;
	struct mig_stream *c1, *c2;

	t_accept(e, &c1, &c2);
	t_page(c1, T_MEM, 0x11);
	t_barrier(c2, 1, false);
	assert_int_equal(mig_chans_in_barrier(&e->inc, 1, false), -ERANGE);
	assert_non_null(strstr(e->inc.why, "outside guest RAM"));
	/*
	 * The failed receiver cut the main stream's reading side, so a main
	 * thread blocked on the source wakes; the receiver's reason wins.
	 */
	assert_true(mig_stream_wait_readable(&e->inc.s, 2000, NULL, 0) > 0);
	uint8_t byte;
	mig_stream_get(&e->inc.s, &byte, 1);
	assert_int_equal(mig_stream_error(&e->inc.s), -EPIPE);
	e->inc.why[0] = '\0';
	assert_int_equal(mig_chans_in_reason(&e->inc, -EPIPE), -ERANGE);
	assert_non_null(strstr(e->inc.why, "channel 1: page 0x1000000 is outside guest RAM"));
	t_close(c1);
	t_close(c2);
}

/* The source hangs up on the main stream before its channels came. */
static void test_source_gone_before_channels(void **state)
{
	struct t_env *e = *state;

	close(e->main_peer);
	e->main_peer = -1;
	assert_int_equal(mig_chans_in_accept(&e->inc, &e->opts, &e->l), -EPROTO);
	assert_non_null(strstr(e->inc.why, "before its 3 connections connected"));
}

/* ---- the source's side against the destination's ---- */

struct t_source {
	struct t_env *e;
	struct migration mig;
	int open_err;
	bool fail_case;		/* send until a connection fails */
	char why[256];
};

/* A RAM section of one raw page, as ram.c writes it, to wherever it goes. */
static void t_src_page(struct migration *mig, uint64_t gpa, uint8_t fill)
{
	static uint8_t data[PG];
	uint32_t len = 4 + MIG_RAM_ENTRY + PG;
	struct mig_section_writer w;
	uint8_t ent[MIG_RAM_ENTRY];
	struct mig_stream *out = mig_chans_ram_begin(mig, len + MIG_SECTION_HDR + 8);

	memset(data, fill, PG);
	le_put(ent, gpa | MIG_CODEC_RAW, 8);
	le_put(ent + 8, PG, 4);
	assert_int_equal(mig_section_begin(&w, out, MIG_SEC_RAM, len), 0);
	mig_section_put_u32(&w, 1);
	mig_section_put(&w, ent, sizeof(ent));
	mig_section_put(&w, data, PG);
	mig_section_end(&w);
	mig_chans_ram_end(mig, out);
}

static void *t_source_run(void *arg)
{
	struct t_source *t = arg;
	struct migration *mig = &t->mig;

	t->open_err = mig_chans_src_open(mig, 3);
	if (t->open_err) {
		/* As precopy_finish does: the destination hears the main stream end. */
		mig_chans_src_close(mig);
		mig_stream_shutdown(&mig->s);
		return NULL;
	}
	if (t->fail_case) {
		/* The destination drops its connections: sending must fail, naming one. */
		for (int i = 0; i < 20000 && !mig_stream_error(&mig->s); i++) {
			t_src_page(mig, (uint64_t)(i % 64) * PG, (uint8_t)i);
			if (i % 64 == 63)
				usleep(1000);
		}
		snprintf(t->why, sizeof(t->why), "%s", mig_stream_why(&mig->s));
		mig_chans_src_close(mig);
		return NULL;
	}
	/* Pass 1: pages 0..11 (fill 1..12), dealt over the three connections. */
	for (unsigned p = 0; p < 12; p++)
		t_src_page(mig, p * PG, (uint8_t)(p + 1));
	assert_int_equal(mig_chans_barrier(mig, 1, false), 0);
	/* Pass 2: page 4 again, now on another connection than its first copy. */
	t_src_page(mig, 4 * PG, 0xe4);
	t_src_page(mig, 20 * PG, 0x20);
	t_src_page(mig, 21 * PG, 0x21);
	assert_int_equal(mig_chans_barrier(mig, 2, true), 0);
	return NULL;
}

/* The destination's main thread: RAM and BARRIER off the main stream until the final one. */
static void t_dest_main(struct t_env *e)
{
	for (;;) {
		struct mig_section_reader r;
		assert_int_equal(mig_section_reader_begin(&r, &e->inc.s), 0);
		if (r.type == MIG_SEC_BARRIER) {
			uint8_t p[MIG_CHAN_BARRIER_LEN];
			uint32_t seq;
			bool final;
			assert_int_equal(mig_section_reader_get(&r, p, sizeof(p)), 0);
			assert_int_equal(mig_section_reader_end(&r), 0);
			assert_int_equal(mig_chan_barrier_parse(p, sizeof(p), &seq, &final), 0);
			assert_int_equal(mig_chans_in_barrier(&e->inc, seq, final), 0);
			if (final)
				return;
			continue;
		}
		assert_int_equal(r.type, MIG_SEC_RAM);
		struct mig_in_ctx c = { .inc = &e->inc, .m = &e->m, .ph = MIG_IN_RAM, .type = r.type };
		struct mig_payload in;
		mig_payload_streamed(&in, &r);
		assert_int_equal(ram_load(&c, r.type, &in), 0);
		assert_int_equal(mig_section_reader_end(&r), 0);
	}
}

static void t_source_init(struct t_env *e, struct t_source *t)
{
	struct mig_channel *ch;

	t->e = e;
	migration_init(&t->mig, &e->m);
	snprintf(t->mig.p.uri, sizeof(t->mig.p.uri), "%s", e->uri);
	t->mig.chans.id = T_ID;
	t->mig.chans.n = 3;
	assert_int_equal(mig_channel_socket(e->main_peer, &ch), 0);
	e->main_peer = -1;		/* the source's stream owns it now */
	assert_int_equal(mig_stream_init(&t->mig.s, ch, 1 << 16), 0);
	t->mig.s.timeout_ms = 3000;
}

static void t_source_fini(struct t_source *t)
{
	mig_chans_src_close(&t->mig);
	mig_stream_destroy(&t->mig.s);
	pthread_mutex_destroy(&t->mig.lock);
	pthread_cond_destroy(&t->mig.cond);
	mig_commit_destroy(&t->mig.commit);
}

/* The real source and destination code over three unix connections. */
static void test_source_to_destination(void **state)
{
	struct t_env *e = *state;
	struct t_source *t = calloc(1, sizeof(*t));
	pthread_t th;

	assert_non_null(t);
	t_source_init(e, t);
	assert_int_equal(pthread_create(&th, NULL, t_source_run, t), 0);
	assert_int_equal(mig_chans_in_accept(&e->inc, &e->opts, &e->l), 0);
	t_dest_main(e);
	pthread_join(th, NULL);
	assert_int_equal(t->open_err, 0);
	assert_true(mig_chans_in_done(&e->inc));
	assert_false(t->mig.chans.open);
	for (unsigned p = 0; p < 12; p++)
		assert_int_equal(t_byte(e, p * PG), p == 4 ? 0xe4 : p + 1);
	assert_int_equal(t_byte(e, 20 * PG), 0x20);
	assert_int_equal(t_byte(e, 21 * PG), 0x21);
	assert_int_equal(e->inc.pages, 15);
	/* Every connection carried pages; the total counts them all. */
	assert_true(t->mig.chans.bytes[1] > 4 * PG && t->mig.chans.bytes[2] > 4 * PG);
	assert_true(mig_bytes_out(&t->mig) > 15 * PG);
	t_source_fini(t);
	free(t);
}

/* The destination's receivers go away: the source's sending fails, naming a channel. */
static void test_source_channel_fails(void **state)
{
	struct t_env *e = *state;
	struct t_source *t = calloc(1, sizeof(*t));
	pthread_t th;

	assert_non_null(t);
	t_source_init(e, t);
	t->fail_case = true;
	assert_int_equal(pthread_create(&th, NULL, t_source_run, t), 0);
	assert_int_equal(mig_chans_in_accept(&e->inc, &e->opts, &e->l), 0);
	mig_chans_in_stop(&e->inc);		/* cuts and closes both extra connections */
	pthread_join(th, NULL);
	assert_int_equal(t->open_err, 0);
	assert_non_null(strstr(t->why, "channel "));
	t_source_fini(t);
	free(t);
}

/* A destination that refuses the hello: the source fails before any page. */
static void test_source_refused(void **state)
{
	struct t_env *e = *state;
	struct t_source *t = calloc(1, sizeof(*t));
	pthread_t th;

	assert_non_null(t);
	t_source_init(e, t);
	e->inc.cfg.mig_id = T_ID + 1;		/* another migration, as far as it knows */
	e->opts.io_timeout_ms = 300;
	assert_int_equal(pthread_create(&th, NULL, t_source_run, t), 0);
	int err = mig_chans_in_accept(&e->inc, &e->opts, &e->l);
	pthread_join(th, NULL);
	assert_true(err < 0);		/* the source hung up the main stream, or time ran out */
	assert_true(t->open_err < 0);
	assert_non_null(strstr(t->mig.stats.error, "refused"));
	t_source_fini(t);
	free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hello_round_trip),
		cmocka_unit_test(test_hello_hostile),
		cmocka_unit_test(test_hello_preempt),
		cmocka_unit_test(test_barrier_payload),
		cmocka_unit_test_setup_teardown(test_pages_and_barriers, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_accept_preempt, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_accept_preempt_alone, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_channel_dropped, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_channel_foreign_section, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_channel_skipped_barrier, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_channel_silent, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_channel_bad_page, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_source_gone_before_channels, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_source_to_destination, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_source_channel_fails, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_source_refused, t_setup, t_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
