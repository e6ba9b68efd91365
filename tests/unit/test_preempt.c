/*
 * --postcopy-preempt (src/migration/preempt.h), both ends over socket
 * pairs, no KVM.
 *
 * The source's preempt thread: a request is answered on the preempt
 * connection with that page (raw, or zero), taken from the owed bitmap so
 * that the push never sends it again; a request for a page already
 * claimed by the push sends nothing; its end is a final BARRIER behind
 * every page it sent; a hostile request (not RAM, another section) fails
 * it with -EPROTO and cuts the main connection, and a lost connection
 * fails the main stream with a recoverable error.
 *
 * The destination's receiver (needs userfaultfd; skips where it is not
 * allowed): a fault is asked for on the preempt connection, the page that
 * comes there is placed and wakes the faulting thread; a page is placed
 * once, whichever connection brings it first (a second copy, even with
 * other bytes, is dropped); after the final BARRIER requests go back to
 * the main connection; a hostile section fails it with its own error and
 * cuts the main stream's reading side so that the main thread learns it.
 *
 * Then both ends together over a real unix listener: the source dials
 * (hello, RESULT), the destination accepts it with the channels' code,
 * and a vCPU's fault is asked for and answered end to end.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
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

#include "migration/channel/channel.h"
#include "migration/codec/codec.h"
#include "migration/dest/incoming.h"
#include "migration/dest/incoming_internal.h"
#include "migration/format.h"
#include "migration/migration.h"
#include "migration/multi.h"
#include "migration/preempt.h"
#include "migration/ram.h"
#include "migration/section.h"
#include "util/le.h"
#include "vmm/dirty.h"
#include "vmm/memory.h"

#define PG GUEST_PAGE_SIZE
#define T_MEM (16ULL << 20)
#define T_PAGES (T_MEM / PG)

/* A stream over one end of a new socket pair; the other end in *peer. */
static void t_pair(struct mig_stream *s, int *peer)
{
	int sv[2];
	struct mig_channel *ch;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(mig_channel_socket(sv[0], &ch), 0);
	assert_int_equal(mig_stream_init(s, ch, 1 << 16), 0);
	s->timeout_ms = 3000;
	*peer = sv[1];
}

static struct mig_stream *t_peer_stream(int fd)
{
	struct mig_stream *s = calloc(1, sizeof(*s));
	struct mig_channel *ch;

	assert_non_null(s);
	assert_int_equal(mig_channel_socket(fd, &ch), 0);
	assert_int_equal(mig_stream_init(s, ch, 1 << 16), 0);
	s->timeout_ms = 3000;
	return s;
}

static void t_peer_close(struct mig_stream *s)
{
	mig_stream_destroy(s);
	free(s);
}

static void t_page_req(struct mig_stream *s, uint64_t gpa)
{
	uint8_t p[8];

	le_put(p, gpa, 8);
	mig_section_write(s, MIG_SEC_PAGE_REQ, p, sizeof(p));
	assert_int_equal(mig_stream_flush(s), 0);
}

/* Does fd have bytes (or its end) to read within ms? */
static bool t_readable(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, ms) > 0;
}

/* ---- the source's preempt thread ---- */

struct t_src {
	struct machine m;
	struct migration mig;
	int main_peer, preempt_peer;
	struct mig_stream *peer;	/* the destination's end of the preempt connection */
};

static int t_src_setup(void **state)
{
	struct t_src *t = calloc(1, sizeof(*t));

	assert_non_null(t);
	assert_int_equal(guest_memory_create(&t->m.vm.mem, T_MEM), 0);
	migration_init(&t->mig, &t->m);
	struct migration *mig = &t->mig;
	mig->p.prepage = 8;
	mig->ram.codecs = (1u << MIG_CODEC_ZERO) | (1u << MIG_CODEC_RAW);
	assert_int_equal(guest_memory_nr_regions(&t->m.vm.mem), 1);
	uint64_t longs = dirty_bitmap_longs(guest_memory_region_pages(&t->m.vm.mem, 0));
	mig->ram.bitmap[0] = malloc(longs * sizeof(unsigned long));
	assert_non_null(mig->ram.bitmap[0]);
	memset(mig->ram.bitmap[0], 0xff, longs * sizeof(unsigned long));	/* all owed */
	t_pair(&mig->s, &t->main_peer);
	t_pair(&mig->preempt.s, &t->preempt_peer);
	mig->preempt.agreed = mig->preempt.open = true;
	mig->preempt.hint = MIG_PREEMPT_NO_HINT;
	mig->stats.preempt_asked = mig->stats.preempt_on = 1;
	mig->stats.status = MIG_STATUS_POSTCOPY;
	t->peer = t_peer_stream(t->preempt_peer);
	/* Page 3 holds data, page 4 is zero (a hole). */
	memset(guest_memory_page_ptr(&t->m.vm.mem, 3), 0x33, PG);
	*state = t;
	return 0;
}

static int t_src_teardown(void **state)
{
	struct t_src *t = *state;

	mig_preempt_src_close(&t->mig);
	t_peer_close(t->peer);
	mig_stream_destroy(&t->mig.s);
	close(t->main_peer);
	free(t->mig.ram.bitmap[0]);
	pthread_mutex_destroy(&t->mig.lock);
	pthread_cond_destroy(&t->mig.cond);
	mig_commit_destroy(&t->mig.commit);
	guest_memory_destroy(&t->m.vm.mem);
	free(t);
	return 0;
}

/* The next section on the preempt connection: a one-page RAM section; its entry word and data. */
static uint64_t t_read_page(struct t_src *t, uint8_t *data, uint32_t *len)
{
	uint8_t buf[4 + MIG_RAM_ENTRY + PG], type;
	uint32_t n;

	assert_int_equal(mig_section_read(t->peer, buf, sizeof(buf), &type, &n), 0);
	assert_int_equal(type, MIG_SEC_RAM);
	assert_int_equal(le_get(buf, 4), 1);
	*len = (uint32_t)le_get(buf + 12, 4);
	assert_int_equal(n, 16 + *len);
	memcpy(data, buf + 16, *len);
	return le_get(buf + 4, 8);
}

static bool t_owed(struct t_src *t, uint64_t page)
{
	return t->mig.ram.bitmap[0][page / 64] & (1UL << (page % 64));
}

/* Requests answered with their page on the preempt connection; each page once. */
static void test_src_serves_requests(void **state)
{
	struct t_src *t = *state;
	struct migration *mig = &t->mig;
	uint8_t data[PG], want[PG];
	uint32_t len;

	assert_int_equal(mig_preempt_src_start(mig), 0);
	t_page_req(t->peer, 3 * PG);
	assert_int_equal(t_read_page(t, data, &len), 3 * PG | MIG_CODEC_RAW);
	assert_int_equal(len, PG);
	memset(want, 0x33, PG);
	assert_memory_equal(data, want, PG);
	assert_false(t_owed(t, 3));
	assert_true(t_owed(t, 2) && t_owed(t, 4));
	/* Its neighbours are the push's: the hint names it, once. */
	assert_int_equal(mig_preempt_src_hint(mig), 3);
	assert_true(mig_preempt_src_hint(mig) == MIG_PREEMPT_NO_HINT);
	t_page_req(t->peer, 4 * PG);
	assert_int_equal(t_read_page(t, data, &len), 4 * PG | MIG_CODEC_ZERO);
	assert_int_equal(len, 0);
	/* The push took page 5 (in flight on main): a request for it sends nothing. */
	assert_true(ram_claim_index(mig, 5));
	assert_false(ram_claim_index(mig, 5));
	t_page_req(t->peer, 5 * PG);
	/* And page 3 again: sent already, nothing either. */
	t_page_req(t->peer, 3 * PG);
	/* The end: the next section is the final BARRIER, nothing for 5 or 3 before it. */
	for (int i = 0; i < 300; i++) {
		pthread_mutex_lock(&mig->lock);
		uint64_t r = mig->stats.preempt_requests;
		pthread_mutex_unlock(&mig->lock);
		if (r == 4)
			break;
		usleep(10000);
	}
	assert_int_equal(mig_preempt_src_end(mig), 0);
	uint8_t buf[512], type;
	uint32_t n;
	assert_int_equal(mig_section_read(t->peer, buf, sizeof(buf), &type, &n), 0);
	assert_int_equal(type, MIG_SEC_BARRIER);
	uint32_t seq;
	bool final;
	assert_int_equal(mig_chan_barrier_parse(buf, n, &seq, &final), 0);
	assert_true(final);
	assert_int_equal(mig->stats.preempt_requests, 4);
	assert_int_equal(mig->stats.preempt_pages, 2);
	assert_int_equal(mig->stats.pc_requests, 4);
	assert_true(mig->stats.preempt_lat_max_ns > 0);
	assert_true(mig_preempt_src_bytes(mig) > PG);
	assert_int_equal(mig_stream_error(&mig->s), 0);
	assert_false(t_readable(t->main_peer, 0));	/* main untouched */
}

/* A request for a page that is not RAM: hostile; the main connection is cut with -EPROTO. */
static void test_src_hostile_request(void **state)
{
	struct t_src *t = *state;
	struct migration *mig = &t->mig;

	assert_int_equal(mig_preempt_src_start(mig), 0);
	t_page_req(t->peer, T_MEM + 7 * PG);
	assert_true(t_readable(t->main_peer, 3000));	/* cut: the peer sees the end */
	assert_int_equal(mig_stream_error(&mig->s), -EPROTO);
	assert_non_null(strstr(mig_stream_why(&mig->s), "preempt"));
	assert_int_equal(mig_preempt_src_end(mig), -EPROTO);
}

/* Another section than PAGE_REQ on it: hostile too. */
static void test_src_foreign_section(void **state)
{
	struct t_src *t = *state;
	struct migration *mig = &t->mig;

	assert_int_equal(mig_preempt_src_start(mig), 0);
	mig_section_write(t->peer, MIG_SEC_PC_KNOWN, "12345678", 8);
	assert_int_equal(mig_stream_flush(t->peer), 0);
	assert_true(t_readable(t->main_peer, 3000));
	assert_int_equal(mig_stream_error(&mig->s), -EPROTO);
}

/* The preempt connection lost: the main stream fails with a recoverable error (post-copy pauses). */
static void test_src_connection_lost(void **state)
{
	struct t_src *t = *state;
	struct migration *mig = &t->mig;

	assert_int_equal(mig_preempt_src_start(mig), 0);
	shutdown(t->preempt_peer, SHUT_RDWR);
	assert_true(t_readable(t->main_peer, 3000));
	int err = mig_stream_error(&mig->s);
	assert_true(err < 0);
	assert_true(err != -EPROTO && err != -EIO && err != -ENOMEM && err != -ECANCELED);
}

/* ---- the destination's receiver ---- */

struct t_dst {
	struct machine m;
	struct mig_incoming inc;
	int main_peer, preempt_peer;
	struct mig_stream *peer, *main;	/* the source's ends */
};

static int t_dst_setup(void **state)
{
	struct t_dst *t = calloc(1, sizeof(*t));
	struct mig_stream s = { 0 };

	assert_non_null(t);
	assert_int_equal(guest_memory_create(&t->m.vm.mem, T_MEM), 0);
	struct mig_incoming *inc = &t->inc;
	inc->m = &t->m;
	inc->written = calloc(T_PAGES / 64 + 1, sizeof(unsigned long));
	inc->known = calloc(T_PAGES / 64 + 1, sizeof(unsigned long));
	assert_non_null(inc->written);
	assert_non_null(inc->known);
	inc->codecs = (1u << MIG_CODEC_ZERO) | (1u << MIG_CODEC_RAW);
	inc->cfg.flags = MIG_FLAG_POSTCOPY;
	inc->preempt = true;
	t_pair(&inc->s, &t->main_peer);
	t_pair(&s, &t->preempt_peer);
	assert_int_equal(mig_preempt_in_adopt(inc, &s), 0);
	assert_null(s.ch);
	t->peer = t_peer_stream(t->preempt_peer);
	t->main = t_peer_stream(t->main_peer);
	*state = t;
	return 0;
}

static int t_dst_teardown(void **state)
{
	struct t_dst *t = *state;

	mig_preempt_in_stop(&t->inc);
	mig_chans_in_stop(&t->inc);
	if (t->inc.guest_started)
		pc_dest_stop(&t->inc.pc);
	t_peer_close(t->peer);
	t_peer_close(t->main);
	mig_stream_destroy(&t->inc.s);
	free(t->inc.written);
	free(t->inc.known);
	guest_memory_destroy(&t->m.vm.mem);
	free(t);
	return 0;
}

/* POSTCOPY_RUN: userfaultfd (or skip), then the receiver. */
static void t_dst_start(struct t_dst *t)
{
	struct mig_incoming *inc = &t->inc;
	int err = pc_dest_start(&inc->pc, &t->m, &inc->s, inc->known, inc->written, NULL);

	if (err == -EPERM || err == -ENOSYS) {
		print_message("userfaultfd not allowed here (%s)\n", strerror(-err));
		skip();
	}
	assert_int_equal(err, 0);
	inc->guest_started = true;
	assert_int_equal(mig_preempt_in_start(inc), 0);
}

static void t_send_page(struct mig_stream *s, uint64_t index, uint8_t fill)
{
	uint8_t p[4 + MIG_RAM_ENTRY + PG];

	le_put(p, 1, 4);
	le_put(p + 4, index * PG | MIG_CODEC_RAW, 8);
	le_put(p + 12, PG, 4);
	memset(p + 16, fill, PG);
	mig_section_write(s, MIG_SEC_RAM, p, sizeof(p));
	assert_int_equal(mig_stream_flush(s), 0);
}

/* The next PAGE_REQ on s: its address. */
static uint64_t t_read_req(struct mig_stream *s)
{
	uint8_t buf[512], type;
	uint32_t n;

	assert_int_equal(mig_section_read(s, buf, sizeof(buf), &type, &n), 0);
	assert_int_equal(type, MIG_SEC_PAGE_REQ);
	assert_int_equal(n, 8);
	return le_get(buf, 8);
}

struct t_toucher {
	volatile uint8_t *p;
	uint8_t got;
	volatile int done;
};

static void *t_toucher_run(void *arg)
{
	struct t_toucher *k = arg;

	k->got = *k->p;
	k->done = 1;
	return NULL;
}

/* Wait (5 s at most) for a page's bit in `known`. */
static void t_wait_known(struct t_dst *t, uint64_t index)
{
	for (int i = 0; i < 500; i++) {
		pthread_mutex_lock(&t->inc.pc.lock);
		bool k = t->inc.known[index / 64] & (1UL << (index % 64));
		pthread_mutex_unlock(&t->inc.pc.lock);
		if (k)
			return;
		usleep(10000);
	}
	fail_msg("page %llu never placed", (unsigned long long)index);
}

static uint8_t t_dst_byte(struct t_dst *t, uint64_t index)
{
	return *(uint8_t *)guest_memory_page_alias(&t->m.vm.mem, index);
}

static void test_dst_places_requested(void **state)
{
	struct t_dst *t = *state;
	struct t_toucher k = { .p = t->m.vm.mem.host + 10 * PG };
	pthread_t th;

	t_dst_start(t);
	/* A vCPU faults: asked for on the preempt connection, not on main. */
	assert_int_equal(pthread_create(&th, NULL, t_toucher_run, &k), 0);
	assert_int_equal(t_read_req(t->peer), 10 * PG);
	assert_false(t_readable(t->main_peer, 0));
	usleep(20000);
	assert_false(k.done);
	t_send_page(t->peer, 10, 0xaa);
	for (int i = 0; i < 500 && !k.done; i++)
		usleep(10000);
	assert_true(k.done);
	pthread_join(th, NULL);
	assert_int_equal(k.got, 0xaa);
	/* A second copy on preempt (other bytes: hostile or a bug) is dropped. */
	t_send_page(t->peer, 10, 0xbb);
	/* The push brought page 11 first; the preempt copy after it is dropped. */
	uint8_t push[PG];
	memset(push, 0xcc, PG);
	assert_int_equal(pc_dest_place_run(&t->inc.pc, 11, 1, push), 0);
	t_send_page(t->peer, 11, 0xdd);
	/* ... and page 12 only on preempt. */
	t_send_page(t->peer, 12, 0x12);
	t_wait_known(t, 12);
	uint8_t b[MIG_CHAN_BARRIER_LEN];
	mig_chan_barrier_encode(b, 1, true);
	mig_section_write(t->peer, MIG_SEC_BARRIER, b, sizeof(b));
	assert_int_equal(mig_stream_flush(t->peer), 0);
	assert_int_equal(mig_preempt_in_finish(&t->inc), 0);
	assert_null(t->inc.preempt_in);
	assert_int_equal(t_dst_byte(t, 10), 0xaa);
	assert_int_equal(t_dst_byte(t, 11), 0xcc);
	assert_int_equal(t_dst_byte(t, 12), 0x12);
	assert_int_equal(t->inc.pages, 4);	/* decoded on preempt, placed or dropped */
	assert_int_equal(t->inc.pc.placed, 3);
	/* From now on a fault is asked for on main. */
	struct t_toucher k2 = { .p = t->m.vm.mem.host + 20 * PG };
	assert_int_equal(pthread_create(&th, NULL, t_toucher_run, &k2), 0);
	assert_int_equal(t_read_req(t->main), 20 * PG);
	assert_int_equal(pc_dest_place_run(&t->inc.pc, 20, 1, push), 0);
	for (int i = 0; i < 500 && !k2.done; i++)
		usleep(10000);
	assert_true(k2.done);
	pthread_join(th, NULL);
}

/* A hostile section: the receiver's own error, and main's reading side is cut. */
static void t_dst_hostile(struct t_dst *t, int want, const char *why)
{
	/* The main thread's read ends (cut), and the reason is the receiver's. */
	uint8_t buf[64], type;
	uint32_t n;
	int err = mig_section_read(&t->inc.s, buf, sizeof(buf), &type, &n);
	assert_true(err < 0);
	assert_int_equal(mig_preempt_in_reason(&t->inc, err), want);
	if (!strstr(t->inc.why, why))
		fail_msg("reason '%s' lacks '%s'", t->inc.why, why);
	assert_int_not_equal(mig_preempt_in_finish(&t->inc), 0);
}

static void test_dst_foreign_section(void **state)
{
	struct t_dst *t = *state;

	t_dst_start(t);
	mig_section_write(t->peer, MIG_SEC_SYNC, "abcd", 4);
	assert_int_equal(mig_stream_flush(t->peer), 0);
	t_dst_hostile(t, -EPROTO, "section type 7 on the preempt connection");
}

static void test_dst_barrier_not_final(void **state)
{
	struct t_dst *t = *state;
	uint8_t b[MIG_CHAN_BARRIER_LEN];

	t_dst_start(t);
	mig_chan_barrier_encode(b, 1, false);
	mig_section_write(t->peer, MIG_SEC_BARRIER, b, sizeof(b));
	assert_int_equal(mig_stream_flush(t->peer), 0);
	t_dst_hostile(t, -EPROTO, "not final");
}

static void test_dst_page_outside_ram(void **state)
{
	struct t_dst *t = *state;

	t_dst_start(t);
	t_send_page(t->peer, T_PAGES + 3, 0x11);
	t_dst_hostile(t, -ERANGE, "outside guest RAM");
}

static void test_dst_bad_checksum(void **state)
{
	struct t_dst *t = *state;
	uint8_t raw[8 + 8 + 8] = { MIG_SEC_PAGE_REQ, 0, 0, 0, 8 };	/* a section, wrong sum */

	t_dst_start(t);
	assert_int_equal(write(t->preempt_peer, raw, sizeof(raw)), (ssize_t)sizeof(raw));
	t_dst_hostile(t, -EPROTO, "preempt");
	assert_false(t->inc.known[0] & 1);
}

/* The connection lost: a recoverable error (the main thread waits for a resume). */
static void test_dst_connection_lost(void **state)
{
	struct t_dst *t = *state;

	t_dst_start(t);
	shutdown(t->preempt_peer, SHUT_RDWR);
	uint8_t buf[64], type;
	uint32_t n;
	int err = mig_section_read(&t->inc.s, buf, sizeof(buf), &type, &n);
	assert_true(err < 0);
	err = mig_preempt_in_reason(&t->inc, err);
	assert_true(err != -EPROTO && err != -EIO && err != -ERANGE && err != -EINTR);
	assert_non_null(strstr(t->inc.why, "preempt"));
	/* A resume drops it: requests go on main again. */
	mig_preempt_in_stop(&t->inc);
	assert_null(t->inc.preempt_in);
	assert_null(t->inc.pc.req);
}

/* ---- both ends, over real unix connections ---- */

struct t_both {
	struct t_src *src;
	struct t_dst *dst;
	char dir[64], uri[128];
	struct mig_listener l;
	int open_err;
};

static void *t_both_open(void *arg)
{
	struct t_both *b = arg;

	b->open_err = mig_preempt_src_open(&b->src->mig);
	return NULL;
}

/*
 * The source opens the preempt connection (hello, RESULT) to a listening
 * destination, which accepts it; in post-copy a vCPU's fault is asked for
 * and answered on it end to end, and its end comes before POSTCOPY_DONE.
 */
static void test_both_ends(void **state)
{
	struct t_both b = { 0 };
	void *ss = NULL, *ds = NULL;
	char why[256];
	pthread_t th;

	(void)state;
	t_src_setup(&ss);
	t_dst_setup(&ds);
	b.src = ss;
	b.dst = ds;
	struct migration *mig = &b.src->mig;
	struct mig_incoming *inc = &b.dst->inc;
	/* The source dials this time: forget the socket pair's preempt stream. */
	mig_stream_destroy(&mig->preempt.s);
	mig->preempt.open = false;
	mig_preempt_in_stop(inc);
	snprintf(b.dir, sizeof(b.dir), "/tmp/ferry-preempt-XXXXXX");
	assert_non_null(mkdtemp(b.dir));
	snprintf(b.uri, sizeof(b.uri), "unix:%s/s", b.dir);
	assert_int_equal(mig_channel_listen(b.uri, NULL, &b.l, why, sizeof(why)), 0);
	snprintf(mig->p.uri, sizeof(mig->p.uri), "%s", b.uri);
	mig->chans.id = 0x5151;
	mig->chans.n = 1;
	inc->cfg.mig_id = 0x5151;
	inc->nchan = 1;
	struct mig_incoming_opts opts = { .uri = b.uri, .intr_fd = -1, .io_timeout_ms = 3000 };
	assert_int_equal(pthread_create(&th, NULL, t_both_open, &b), 0);
	assert_int_equal(mig_chans_in_accept(inc, &opts, &b.l), 0);
	pthread_join(th, NULL);
	assert_int_equal(b.open_err, 0);
	assert_true(mig->preempt.open);
	assert_non_null(inc->preempt_in);
	assert_true(mig_chans_in_done(inc));
	/* Post-copy: RUN checked, then both sides start. */
	assert_int_equal(mig_preempt_src_check(mig), 0);
	assert_int_equal(mig_preempt_src_start(mig), 0);
	t_dst_start(b.dst);
	memset(guest_memory_page_ptr(&b.src->m.vm.mem, 30), 0x30, PG);
	struct t_toucher k = { .p = b.dst->m.vm.mem.host + 30 * PG };
	assert_int_equal(pthread_create(&th, NULL, t_toucher_run, &k), 0);
	for (int i = 0; i < 500 && !k.done; i++)
		usleep(10000);
	assert_true(k.done);
	pthread_join(th, NULL);
	assert_int_equal(k.got, 0x30);
	assert_false(t_owed(b.src, 30));
	/* Before POSTCOPY_DONE: the source ends it, the destination reads its end. */
	assert_int_equal(mig_preempt_src_end(mig), 0);
	assert_int_equal(mig_preempt_in_finish(inc), 0);
	assert_int_equal(mig->stats.preempt_pages, 1);
	assert_int_equal(inc->pc.placed, 1);
	assert_int_equal(inc->pages, 1);
	/* Neither main connection was used. */
	assert_false(t_readable(b.src->main_peer, 0));
	assert_false(t_readable(b.dst->main_peer, 0));
	mig_listener_close(&b.l);
	rmdir(b.dir);
	t_dst_teardown(&ds);
	t_src_teardown(&ss);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_src_serves_requests, t_src_setup, t_src_teardown),
		cmocka_unit_test_setup_teardown(test_src_hostile_request, t_src_setup, t_src_teardown),
		cmocka_unit_test_setup_teardown(test_src_foreign_section, t_src_setup, t_src_teardown),
		cmocka_unit_test_setup_teardown(test_src_connection_lost, t_src_setup, t_src_teardown),
		cmocka_unit_test_setup_teardown(test_dst_places_requested, t_dst_setup, t_dst_teardown),
		cmocka_unit_test_setup_teardown(test_dst_foreign_section, t_dst_setup, t_dst_teardown),
		cmocka_unit_test_setup_teardown(test_dst_barrier_not_final, t_dst_setup,
						t_dst_teardown),
		cmocka_unit_test_setup_teardown(test_dst_page_outside_ram, t_dst_setup, t_dst_teardown),
		cmocka_unit_test_setup_teardown(test_dst_bad_checksum, t_dst_setup, t_dst_teardown),
		cmocka_unit_test_setup_teardown(test_dst_connection_lost, t_dst_setup, t_dst_teardown),
		cmocka_unit_test(test_both_ends),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
