/*
 * Live disk migration without KVM: the dirty-block bitmap
 * (devices/block/dirty.h), and the block source (migration/block.c)
 * driven as the migration thread drives it - setup, passes with "guest"
 * writes in between, stop-and-copy - into a file stream whose sections
 * are then loaded into a second image by the destination's `load`, as the
 * receiving thread does.  The machines are plain structs with one disk
 * each (a real image file).  Then hostile block records against the
 * destination: each refused with its reason, none written.  And
 * write-blocking: a "guest" thread's writes, held as the device holds
 * them, complete only once the mirror sent them, and the destination then
 * holds every acknowledged write without any final pass.  And post-copy:
 * OWED and LAZY close the destination disk's gate, a chunk its guest
 * waits on is asked for and served, the rest is pushed, a late copy of a
 * chunk the guest may have written is dropped, and hostile post-copy
 * records are refused.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "devices/block/dirty.h"
#include "migration/block.h"
#include "migration/block_internal.h"
#include "migration/dest/incoming_internal.h"
#include "migration/live.h"
#include "migration/migration.h"
#include "migration/section.h"
#include "migration/stats.h"
#include "util/hash.h"
#include "util/le.h"

#define T_SIZE		(4ULL << 20)
#define T_CHUNK		MIG_BLOCK_CHUNK

static char t_dir[64];
static struct machine t_src, t_dst;
static struct migration t_mig;

static void t_path(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", t_dir, name);
}

/* A machine with one file disk of `size` bytes at dir/name, filled with `fill` (-1: sparse). */
static void t_machine(struct machine *m, const char *name, uint64_t size, int fill)
{
	char path[128];

	memset(m, 0, sizeof(*m));
	t_path(path, sizeof(path), name);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	if (fill >= 0) {
		uint8_t *p = malloc(size);
		assert_non_null(p);
		memset(p, fill, size);
		assert_int_equal(pwrite(fd, p, size, 0), (ssize_t)size);
		free(p);
	}
	close(fd);
	m->nr_disks = 1;
	m->disks[0].cfg.kind = BLOCK_KIND_FILE;
	snprintf(m->disks[0].cfg.path, sizeof(m->disks[0].cfg.path), "%s", path);
	m->disks[0].bk.size = size;
	block_dirty_init(&m->disks[0].dirty);
	block_gate_init(&m->disks[0].gate);
}

/* What the guest does: write the image, and the device marks it on completion. */
static void t_guest_write(uint64_t off, uint64_t len, uint8_t v)
{
	uint8_t *p = malloc(len);
	int fd = open(t_src.disks[0].cfg.path, O_WRONLY);

	assert_non_null(p);
	assert_true(fd >= 0);
	memset(p, v, len);
	assert_int_equal(pwrite(fd, p, len, (off_t)off), (ssize_t)len);
	close(fd);
	free(p);
	block_dirty_mark(&t_src.disks[0].dirty, off, len);
}

static int t_setup(void **state)
{
	snprintf(t_dir, sizeof(t_dir), "/tmp/ferry-blkmig.XXXXXX");
	assert_non_null(mkdtemp(t_dir));
	return 0;
}

static int t_teardown(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t_dir);
	return system(cmd);
}

/* ---- the bitmap ----------------------------------------------------------- */

static void t_count_notify(void *calls)
{
	(*(int *)calls)++;
}

static void test_dirty_bitmap(void **state)
{
	struct block_dirty d;
	uint64_t out[2] = { 0 };

	block_dirty_init(&d);
	block_dirty_mark(&d, 0, 4096);		/* not tracking: nothing */
	assert_int_equal(block_dirty_count(&d), 0);
	assert_int_equal(block_dirty_start(&d, 1000, 3), -EINVAL);	/* not a power of two */
	assert_int_equal(block_dirty_start(&d, 17 * T_CHUNK - 5, T_CHUNK), 0);
	assert_int_equal(block_dirty_count(&d), 0);
	block_dirty_mark(&d, T_CHUNK - 1, 2);		/* straddles chunks 0 and 1 */
	block_dirty_mark(&d, 16 * T_CHUNK, 1 << 20);	/* the last chunk, clipped at the end */
	block_dirty_mark(&d, 5 * T_CHUNK, 0);		/* nothing */
	assert_int_equal(block_dirty_count(&d), 3);
	assert_int_equal(block_dirty_take(&d, out, 17), 3);
	assert_int_equal(out[0], (1ULL << 0) | (1ULL << 1) | (1ULL << 16));
	assert_int_equal(out[1], 0);
	assert_int_equal(block_dirty_count(&d), 0);
	/* Another geometry than started takes nothing and clears nothing. */
	block_dirty_mark(&d, 2 * T_CHUNK, 1);
	assert_int_equal(block_dirty_take(&d, out, 16), 0);
	assert_int_equal(block_dirty_count(&d), 1);
	assert_int_equal(block_dirty_bytes(&d), 4096);	/* chunk 2's mark, as a 4 KiB range */
	/* The fine ranges: 16 per chunk, the last clipped at the disk's end. */
	uint64_t fine[5] = { 0 }, ticket;
	uint64_t nfine = (17 * T_CHUNK - 5 + 4095) / 4096;
	assert_int_equal(block_dirty_take_fine(&d, fine, nfine - 1, &ticket), -EINVAL);
	assert_int_equal(block_dirty_count(&d), 1);
	block_dirty_mark(&d, 4096 - 1, 2);		/* straddles ranges 0 and 1 */
	block_dirty_mark(&d, 17 * T_CHUNK - 6, 100);	/* the last range, clipped */
	assert_int_equal(block_dirty_bytes(&d), 4 * 4096);
	assert_int_equal(block_dirty_take_fine(&d, fine, nfine, &ticket), 4);
	assert_int_equal(nfine, 272);
	assert_int_equal(fine[0], 3 | (1ULL << 32));	/* ranges 0 and 1; chunk 2's first */
	assert_int_equal(fine[1] | fine[2] | fine[3], 0);
	assert_int_equal(fine[4], 1ULL << (271 % 64));	/* the last */
	assert_int_equal(block_dirty_count(&d), 0);	/* the chunks went with them */
	assert_int_equal(block_dirty_bytes(&d), 0);
	/* A chunk take clears the ranges too. */
	block_dirty_mark(&d, 3 * T_CHUNK, 1);
	memset(out, 0, sizeof(out));
	assert_int_equal(block_dirty_take(&d, out, 17), 1);
	assert_int_equal(block_dirty_bytes(&d), 0);
	block_dirty_stop(&d);
	block_dirty_mark(&d, 0, 1);
	assert_int_equal(block_dirty_count(&d), 0);
	block_dirty_destroy(&d);
}

/* ---- source -> stream -> destination -------------------------------------- */

static bool t_files_equal(const char *a, const char *b)
{
	char cmd[2 * PATH_MAX + 16];

	snprintf(cmd, sizeof(cmd), "cmp -s '%s' '%s'", a, b);
	return system(cmd) == 0;
}

/* Read every section of the stream at uri; feed the block ones to the destination. */
static int t_load_stream(const char *uri, struct mig_in_ctx *c)
{
	const struct mig_source_ops *o = mig_source_get(MIG_SOURCE_BLOCK);
	struct mig_listener l;
	struct mig_channel *ch;
	struct mig_stream s;
	char why[256];
	uint8_t *buf = malloc(MIG_SECTION_MAX);
	int err = 0, sections = 0;

	assert_non_null(buf);
	assert_int_equal(mig_channel_listen(uri, NULL, &l, why, sizeof(why)), 0);
	assert_int_equal(mig_channel_accept(&l, 0, -1, &ch), 0);
	mig_listener_close(&l);
	assert_int_equal(mig_stream_init(&s, ch, 1 << 20), 0);
	for (;;) {
		uint8_t type;
		uint32_t len;
		if (mig_section_read(&s, buf, MIG_SECTION_MAX, &type, &len))
			break;		/* the end of the file */
		assert_int_equal(type, MIG_SEC_SOURCE);
		assert_true(len >= 4);
		assert_int_equal(le_get(buf, 4), MIG_SOURCE_BLOCK);
		struct mig_payload in;
		mig_payload_whole(&in, buf + 4, len - 4);
		err = o->load(c, MIG_SEC_SOURCE, &in);
		if (err)
			break;
		sections++;
	}
	mig_stream_destroy(&s);
	free(buf);
	assert_true(sections > 0);
	return err;
}

/*
 * A sparse source image with a little data, a destination image full of
 * garbage; the guest writes between passes.  The destination ends equal
 * to the source, the --verify digest matches, and what went on the wire
 * is about the data, not the disk's size.
 */
static void test_roundtrip(void **state)
{
	const struct mig_source_ops *o = mig_source_get(MIG_SOURCE_BLOCK);
	char path[128], uri[160], why[256];
	struct mig_channel *ch;

	mig_block_expect();
	t_machine(&t_src, "src.img", T_SIZE, -1);
	t_machine(&t_dst, "dst.img", T_SIZE, 0xaa);
	t_guest_write(0, T_CHUNK, 1);
	t_guest_write((1 << 20) + 100, 8192, 2);
	t_guest_write(2 << 20, T_CHUNK, 0);		/* allocated, but zeros */

	memset(&t_mig, 0, sizeof(t_mig));
	pthread_mutex_init(&t_mig.lock, NULL);
	t_mig.m = &t_src;
	t_mig.p.copy_storage = true;
	t_mig.p.verify = true;
	t_path(path, sizeof(path), "stream");
	snprintf(uri, sizeof(uri), "file:%s", path);
	assert_int_equal(mig_channel_open(uri, NULL, 1000, &ch, why, sizeof(why)), 0);
	assert_int_equal(mig_stream_init(&t_mig.s, ch, 1 << 20), 0);

	assert_true(o->active(&t_mig));
	assert_int_equal(o->setup(&t_mig), 0);
	int64_t pending = o->sync(&t_mig);
	/* Chunks 0, 16 and 32 hold data (the rest are holes, sent as ZERO). */
	assert_int_equal(pending, 3 * T_CHUNK);
	assert_int_equal(o->iterate(&t_mig, false), 0);
	t_guest_write(3 << 20, 4096, 3);
	t_guest_write(0, 4096, 4);
	/* Two 4 KiB writes owe their 4 KiB each, not their chunks. */
	assert_int_equal(o->peek(&t_mig), 2 * 4096);
	assert_int_equal(o->sync(&t_mig), 2 * 4096);
	assert_int_equal(o->iterate(&t_mig, true), 0);
	assert_int_equal(o->sync(&t_mig), 0);
	t_guest_write(T_SIZE - 512, 512, 5);		/* the last sector */
	assert_int_equal(o->sync(&t_mig), 4096);
	assert_int_equal(o->complete(&t_mig, true), 0);
	assert_int_equal(mig_stream_flush(&t_mig.s), 0);
	assert_int_equal(mig_stream_finish(&t_mig.s), 0);
	uint64_t wire = t_mig.stats.source_sent[MIG_SOURCE_BLOCK];
	/* query-migrate's disk-total and disk-processed: three chunks, three ranges. */
	assert_int_equal(t_mig.stats.disk_total, T_SIZE);
	assert_int_equal(t_mig.stats.disk_processed, 3 * T_CHUNK + 3 * 4096);
	o->cleanup(&t_mig);
	assert_null(t_mig.block);
	mig_stream_destroy(&t_mig.s);

	struct mig_incoming inc;
	memset(&inc, 0, sizeof(inc));
	inc.cfg.flags = MIG_FLAG_VERIFY;
	struct mig_in_ctx c = { .inc = &inc, .m = &t_dst };
	assert_int_equal(o->loaded(&c), -EPROTO);	/* nothing yet */
	int err = t_load_stream(uri, &c) ? -1 : 0;
	if (err)
		fail_msg("load: %s", inc.why);
	assert_int_equal(o->loaded(&c), 0);
	o->unload(&inc);
	assert_null(inc.src_state[MIG_SOURCE_BLOCK]);
	assert_true(t_files_equal(t_src.disks[0].cfg.path, t_dst.disks[0].cfg.path));
	/* Three chunks and three 4 KiB ranges of data were sent, plus small records. */
	print_message("block bytes on the wire: %llu for a %llu-byte disk\n",
		      (unsigned long long)wire, (unsigned long long)T_SIZE);
	assert_true(wire >= 2 * T_CHUNK + 3 * 4096);	/* chunk 32 went as ZERO */
	assert_true(wire < 3 * T_CHUNK);
	block_dirty_destroy(&t_src.disks[0].dirty);
	block_dirty_destroy(&t_dst.disks[0].dirty);
}

/* ---- incremental: over a socket, the destination answering in a thread --- */

struct t_dest {
	struct mig_incoming *inc;	/* reads and answers on inc->s, as the loader does */
	struct mig_in_ctx c;
	int err;
};

/* The receiving thread: every section to the block source's load, until EOF. */
static void *t_dest_thread(void *arg)
{
	struct t_dest *d = arg;
	uint8_t *buf = malloc(MIG_SECTION_MAX);

	for (;;) {
		uint8_t type;
		uint32_t len;
		if (!buf || mig_section_read(&d->inc->s, buf, MIG_SECTION_MAX, &type, &len))
			break;
		struct mig_payload in;
		if (type != MIG_SEC_SOURCE || len < 4 || le_get(buf, 4) != MIG_SOURCE_BLOCK) {
			d->err = -EPROTO;
			break;
		}
		mig_payload_whole(&in, buf + 4, len - 4);
		d->err = mig_source_get(MIG_SOURCE_BLOCK)->load(&d->c, MIG_SEC_SOURCE, &in);
		if (d->err)
			break;
	}
	free(buf);
	return NULL;
}

/*
 * Copy a 16 MiB disk of random data to a destination that holds the same
 * but for 13 of its 256 chunks (5 %), one of them where the source has
 * zeros: only those travel, about 5 % of the disk, and the images end
 * equal (--verify's digest agrees).  Returns the block bytes on the wire.
 */
static uint64_t t_copy(bool incremental)
{
	const struct mig_source_ops *o = mig_source_get(MIG_SOURCE_BLOCK);
	const uint64_t size = 16 << 20;
	struct mig_channel *ch[2];
	struct mig_incoming inc;
	struct t_dest d;
	pthread_t t;
	int sv[2];

	mig_block_expect();
	t_machine(&t_src, "isrc.img", size, -1);
	t_machine(&t_dst, "idst.img", size, -1);
	uint8_t *img = malloc(size);
	assert_non_null(img);
	srand(42);
	for (uint64_t k = 0; k < size; k++)
		img[k] = (uint8_t)rand();
	memset(img + 7 * T_CHUNK, 0, T_CHUNK);
	int fs = open(t_src.disks[0].cfg.path, O_WRONLY), fd = open(t_dst.disks[0].cfg.path, O_WRONLY);
	assert_int_equal(pwrite(fs, img, size, 0), (ssize_t)size);
	for (unsigned k = 0; k < 13; k++)	/* chunks 7, 26, 45, ... differ there */
		memset(img + (7 + 19 * k) * T_CHUNK + 100 * k, 0xee, 4096);
	assert_int_equal(pwrite(fd, img, size, 0), (ssize_t)size);
	close(fs);
	close(fd);
	free(img);

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(mig_channel_socket(sv[0], &ch[0]), 0);
	assert_int_equal(mig_channel_socket(sv[1], &ch[1]), 0);
	memset(&t_mig, 0, sizeof(t_mig));
	pthread_mutex_init(&t_mig.lock, NULL);
	t_mig.m = &t_src;
	t_mig.p.copy_storage = true;
	t_mig.p.copy_incremental = incremental;
	t_mig.p.verify = true;
	assert_int_equal(mig_stream_init(&t_mig.s, ch[0], 1 << 20), 0);
	memset(&inc, 0, sizeof(inc));
	inc.cfg.flags = MIG_FLAG_VERIFY;
	memset(&d, 0, sizeof(d));
	d.inc = &inc;
	d.c = (struct mig_in_ctx){ .inc = &inc, .m = &t_dst };
	assert_int_equal(mig_stream_init(&inc.s, ch[1], 1 << 20), 0);
	assert_int_equal(pthread_create(&t, NULL, t_dest_thread, &d), 0);

	assert_int_equal(o->setup(&t_mig), 0);
	assert_int_equal(mig_stream_flush(&t_mig.s), 0);
	assert_int_equal(o->handshake(&t_mig), 0);
	int64_t pending = o->sync(&t_mig);
	assert_int_equal(pending, incremental ? 13 * T_CHUNK : (int64_t)size);
	assert_int_equal(o->iterate(&t_mig, false), 0);
	assert_int_equal(o->sync(&t_mig), 0);
	assert_int_equal(o->complete(&t_mig, false), 0);
	assert_int_equal(mig_stream_flush(&t_mig.s), 0);
	uint64_t wire = t_mig.stats.source_sent[MIG_SOURCE_BLOCK];
	o->cleanup(&t_mig);
	mig_channel_shutdown(ch[0], false, true);	/* EOF for the destination */
	assert_int_equal(pthread_join(t, NULL), 0);
	if (d.err)
		fail_msg("destination: %s", inc.why);
	assert_int_equal(o->loaded(&d.c), 0);
	o->unload(&inc);
	mig_stream_destroy(&t_mig.s);
	mig_stream_destroy(&inc.s);
	assert_true(t_files_equal(t_src.disks[0].cfg.path, t_dst.disks[0].cfg.path));
	print_message("%s: block bytes on the wire %llu for a %llu-byte disk (%.1f %%)\n",
		      incremental ? "incremental" : "full", (unsigned long long)wire,
		      (unsigned long long)size, 100.0 * (double)wire / (double)size);
	block_dirty_destroy(&t_src.disks[0].dirty);
	block_dirty_destroy(&t_dst.disks[0].dirty);
	return wire;
}

static void test_incremental(void **state)
{
	uint64_t full = t_copy(false), incr = t_copy(true);

	/* 12 chunks of data, one of zeros (a ZERO record), and the records' headers. */
	assert_true(incr >= 12 * T_CHUNK);
	assert_true(incr < 12 * T_CHUNK + 4096);
	/* Full: every chunk but the zero one, the same run. */
	assert_true(full >= 255 * T_CHUNK);
	assert_true(incr * 10 < full);
}

/*
 * A hostile destination's answers to SUMS_REQ: each one fails the
 * handshake with its reason, and nothing is owed on its word.
 */
static void t_bad_sums(const void *payload, uint32_t len, uint8_t type, const char *want)
{
	const struct mig_source_ops *o = mig_source_get(MIG_SOURCE_BLOCK);
	struct mig_channel *ch[2];
	struct mig_stream peer;
	int sv[2];

	t_machine(&t_src, "hsrc.img", 4 * T_CHUNK, 1);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(mig_channel_socket(sv[0], &ch[0]), 0);
	assert_int_equal(mig_channel_socket(sv[1], &ch[1]), 0);
	memset(&t_mig, 0, sizeof(t_mig));
	pthread_mutex_init(&t_mig.lock, NULL);
	t_mig.m = &t_src;
	t_mig.p.copy_storage = t_mig.p.copy_incremental = true;
	assert_int_equal(mig_stream_init(&t_mig.s, ch[0], 1 << 20), 0);
	assert_int_equal(mig_stream_init(&peer, ch[1], 1 << 20), 0);
	t_mig.s.timeout_ms = 5000;
	/* The answer is there before the question: the socket holds it. */
	mig_section_write(&peer, type, payload, len);
	assert_int_equal(mig_stream_flush(&peer), 0);
	assert_int_equal(o->setup(&t_mig), 0);
	assert_int_not_equal(o->handshake(&t_mig), 0);
	if (!strstr(t_mig.s.why, want))
		fail_msg("reason '%s' lacks '%s'", t_mig.s.why, want);
	assert_int_equal(o->sync(&t_mig), 0);
	o->cleanup(&t_mig);
	mig_stream_destroy(&t_mig.s);
	mig_stream_destroy(&peer);
	block_dirty_destroy(&t_src.disks[0].dirty);
}

static void test_hostile_sums(void **state)
{
	uint8_t p[13 + 8 * 5] = { 0 };

	/* Disk 1 of a one-disk VM. */
	p[0] = 1;
	le_put(p + 9, 4, 4);
	t_bad_sums(p, 13 + 32, MIG_SEC_BLOCK_SUMS, "digests of disk 0 are malformed");
	/* Not from chunk 0. */
	p[0] = 0;
	le_put(p + 1, 1, 8);
	le_put(p + 9, 3, 4);
	t_bad_sums(p, 13 + 24, MIG_SEC_BLOCK_SUMS, "chunks 1 + 3; want 0 +");
	/* More chunks than the disk has, and a count the length does not hold. */
	le_put(p + 1, 0, 8);
	le_put(p + 9, 5, 4);
	t_bad_sums(p, 13 + 40, MIG_SEC_BLOCK_SUMS, "chunks 0 + 5");
	le_put(p + 9, 4, 4);
	t_bad_sums(p, 13 + 8, MIG_SEC_BLOCK_SUMS, "(21 bytes");
	le_put(p + 9, 0, 4);
	t_bad_sums(p, 13, MIG_SEC_BLOCK_SUMS, "chunks 0 + 0");
	t_bad_sums(p, 5, MIG_SEC_BLOCK_SUMS, "(5 bytes");
	/* Another section, and the destination's refusal, said as it said it. */
	t_bad_sums(NULL, 0, MIG_SEC_LOADED, "answered the disk digests with section 24");
	uint8_t res[4 + 2 + 7] = { 0 };
	le_put(res, (uint32_t)-EIO, 4);
	le_put(res + 4, 7, 2);
	memcpy(res + 6, "no disk", 7);
	t_bad_sums(res, sizeof(res), MIG_SEC_RESULT, "destination: no disk");
}

/* ---- write-blocking ------------------------------------------------------ */

/* The device's side: a write waits for its ticket's ack, as virtio-blk holds it. */
struct t_guest {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned writes, done;		/* how many to write; how many acknowledged */
	uint64_t acked_before;		/* acks seen before the mirror could have sent (must be 0) */
	bool finished;
};

static void t_guest_notify(void *opaque)
{
	struct t_guest *g = opaque;

	pthread_mutex_lock(&g->lock);
	pthread_cond_broadcast(&g->cond);
	pthread_mutex_unlock(&g->lock);
}

/* Writes 4 KiB blocks all over the disk, each waiting for its ack. */
static void *t_guest_thread(void *arg)
{
	struct t_guest *g = arg;
	struct block_dirty *d = &t_src.disks[0].dirty;
	int fd = open(t_src.disks[0].cfg.path, O_WRONLY);
	uint8_t blk[4096];

	for (unsigned k = 0; k < g->writes && fd >= 0; k++) {
		uint64_t off = ((uint64_t)k * 37 % (T_SIZE / 4096)) * 4096;
		memset(blk, (int)(k & 0xff) | 1, sizeof(blk));
		if (pwrite(fd, blk, sizeof(blk), (off_t)off) != (ssize_t)sizeof(blk))
			break;
		uint64_t ticket = block_dirty_mark(d, off, sizeof(blk));
		pthread_mutex_lock(&g->lock);
		if (!ticket || block_dirty_acked(d) >= ticket)
			g->acked_before++;	/* blocking must hold every write */
		while (block_dirty_acked(d) < ticket)
			pthread_cond_wait(&g->cond, &g->lock);
		g->done++;
		pthread_mutex_unlock(&g->lock);
	}
	if (fd >= 0)
		close(fd);
	pthread_mutex_lock(&g->lock);
	g->finished = true;
	pthread_mutex_unlock(&g->lock);
	return NULL;
}

/*
 * The first pass goes by; then every write waits until the mirror (the
 * service op, as the migration thread calls it between chunks) sent it.
 * With no final pass and no DONE, the destination's image equals the
 * source's: nothing acknowledged is missing there.  Release lets writes
 * complete at once again, still marked for the final pass.
 */
static void test_write_blocking(void **state)
{
	const struct mig_source_ops *o = mig_source_get(MIG_SOURCE_BLOCK);
	struct mig_channel *ch[2];
	struct mig_incoming inc;
	struct t_dest d;
	struct t_guest g = { .writes = 600 };
	pthread_t td, tg;
	int sv[2];

	mig_block_expect();
	t_machine(&t_src, "wsrc.img", T_SIZE, -1);
	t_machine(&t_dst, "wdst.img", T_SIZE, 0xaa);
	t_guest_write(0, T_CHUNK, 1);
	t_guest_write(3 << 20, 3 * T_CHUNK, 2);
	pthread_mutex_init(&g.lock, NULL);
	pthread_cond_init(&g.cond, NULL);
	block_dirty_set_notify(&t_src.disks[0].dirty, t_guest_notify, &g);

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(mig_channel_socket(sv[0], &ch[0]), 0);
	assert_int_equal(mig_channel_socket(sv[1], &ch[1]), 0);
	memset(&t_mig, 0, sizeof(t_mig));
	pthread_mutex_init(&t_mig.lock, NULL);
	t_mig.m = &t_src;
	t_mig.p.copy_storage = true;
	t_mig.p.copy_blocking = true;
	assert_int_equal(mig_stream_init(&t_mig.s, ch[0], 1 << 20), 0);
	memset(&inc, 0, sizeof(inc));
	memset(&d, 0, sizeof(d));
	d.inc = &inc;
	d.c = (struct mig_in_ctx){ .inc = &inc, .m = &t_dst };
	assert_int_equal(mig_stream_init(&inc.s, ch[1], 1 << 20), 0);
	assert_int_equal(pthread_create(&td, NULL, t_dest_thread, &d), 0);

	assert_int_equal(o->setup(&t_mig), 0);
	assert_int_equal(o->service(&t_mig), 0);	/* before the first sync: nothing */
	assert_int_equal(block_dirty_acked(&t_src.disks[0].dirty), UINT64_MAX);
	assert_int_equal(o->sync(&t_mig), 4 * T_CHUNK);
	t_guest_write(1 << 20, 4096, 3);		/* not blocking yet: completes at once */
	assert_int_equal(block_dirty_acked(&t_src.disks[0].dirty), UINT64_MAX);
	/* The first pass ends inside this iterate: from here on writes are held. */
	assert_int_equal(o->iterate(&t_mig, false), 0);
	uint64_t acked = block_dirty_acked(&t_src.disks[0].dirty);
	assert_true(acked != UINT64_MAX);
	uint64_t ticket = block_dirty_mark(&t_src.disks[0].dirty, 0, 512);
	assert_true(ticket > acked);
	assert_true(block_dirty_acked(&t_src.disks[0].dirty) < ticket);
	assert_int_equal(o->service(&t_mig), 0);
	assert_true(block_dirty_acked(&t_src.disks[0].dirty) >= ticket);

	/* A guest writing as fast as it can: each write waits for the mirror. */
	uint64_t before = t_mig.stats.disk_processed;
	assert_int_equal(pthread_create(&tg, NULL, t_guest_thread, &g), 0);
	for (;;) {
		pthread_mutex_lock(&g.lock);
		bool fin = g.finished;
		pthread_mutex_unlock(&g.lock);
		if (fin)
			break;
		assert_int_equal(o->service(&t_mig), 0);
		usleep(200);
	}
	assert_int_equal(pthread_join(tg, NULL), 0);
	assert_int_equal(g.done, g.writes);
	assert_int_equal(g.acked_before, 0);
	uint64_t mirrored = t_mig.stats.disk_processed;
	print_message("write-blocking: %u writes acknowledged, %llu bytes read for the wire\n",
		      g.done, (unsigned long long)(mirrored - before));
	/* Each 4 KiB write costs its 4 KiB, not the 64 KiB chunk around it. */
	assert_true(mirrored - before >= 4096);
	assert_true(mirrored - before <= (uint64_t)g.writes * 4096);

	/* Release: writes complete at once, but stay owed for the final pass. */
	o->release(&t_mig);
	assert_int_equal(block_dirty_acked(&t_src.disks[0].dirty), UINT64_MAX);
	t_guest_write(2 << 20, 4096, 9);
	assert_int_equal(o->service(&t_mig), 0);	/* released: sends nothing */
	assert_int_equal(t_mig.stats.disk_processed, mirrored);
	assert_int_equal(o->sync(&t_mig), 4096);

	/* No final pass: what the destination holds is the first pass and the mirror. */
	assert_int_equal(mig_stream_flush(&t_mig.s), 0);
	mig_channel_shutdown(ch[0], false, true);
	assert_int_equal(pthread_join(td, NULL), 0);
	if (d.err)
		fail_msg("destination: %s", inc.why);
	o->unload(&inc);
	/* Equal but for the one write after the release (chunk 32, not yet sent). */
	char cmd[3 * PATH_MAX];
	snprintf(cmd, sizeof(cmd), "cmp -l '%s' '%s' | awk '$1 <= 2097152 || $1 > 2101248 {x=1} "
		 "END {exit x}'", t_src.disks[0].cfg.path, t_dst.disks[0].cfg.path);
	assert_int_equal(system(cmd), 0);
	assert_false(t_files_equal(t_src.disks[0].cfg.path, t_dst.disks[0].cfg.path));
	o->cleanup(&t_mig);
	mig_stream_destroy(&t_mig.s);
	mig_stream_destroy(&inc.s);
	block_dirty_destroy(&t_src.disks[0].dirty);
	block_dirty_destroy(&t_dst.disks[0].dirty);
	pthread_cond_destroy(&g.cond);
	pthread_mutex_destroy(&g.lock);
}

/* Ticket arithmetic of the bitmap alone. */
static void test_dirty_tickets(void **state)
{
	struct block_dirty d;
	uint64_t out[1] = { 0 }, ticket = 99;
	int calls = 0;

	block_dirty_init(&d);
	block_dirty_set_notify(&d, t_count_notify, &calls);
	assert_int_equal(block_dirty_set_blocking(&d, true), -EINVAL);
	assert_int_equal(block_dirty_start(&d, 8 * T_CHUNK, T_CHUNK), 0);
	assert_int_equal(block_dirty_mark(&d, 0, 1), 0);	/* not blocking: no ticket */
	assert_int_equal(block_dirty_set_blocking(&d, true), 0);
	uint64_t t1 = block_dirty_mark(&d, T_CHUNK, 1), t2 = block_dirty_mark(&d, 2 * T_CHUNK, 1);
	assert_true(t1 > 0 && t2 == t1 + 1);
	assert_int_equal(block_dirty_mark(&d, 0, 0), 0);	/* nothing written */
	assert_true(block_dirty_acked(&d) < t1);
	/* The take's ticket covers both marks; an ack beyond the last is clipped to it. */
	assert_int_equal(block_dirty_take_ticket(&d, out, 8, &ticket), 3);
	assert_int_equal(ticket, t2);
	assert_int_equal(block_dirty_take_ticket(&d, out, 7, &ticket), 0);
	assert_int_equal(ticket, 0);			/* another geometry: nothing */
	block_dirty_ack(&d, t1);
	assert_int_equal(block_dirty_acked(&d), t1);
	assert_int_equal(calls, 1);
	block_dirty_ack(&d, t1);			/* nothing new: no call */
	assert_int_equal(calls, 1);
	block_dirty_ack(&d, UINT64_MAX);
	assert_int_equal(block_dirty_acked(&d), t2);
	uint64_t t3 = block_dirty_mark(&d, 0, 1);
	assert_true(t3 > t2 && block_dirty_acked(&d) < t3);	/* a later mark still waits */
	/* Stopping acknowledges everything and blocks no more. */
	block_dirty_stop(&d);
	assert_int_equal(block_dirty_acked(&d), UINT64_MAX);
	assert_int_equal(calls, 3);
	assert_int_equal(block_dirty_start(&d, 8 * T_CHUNK, T_CHUNK), 0);
	assert_int_equal(block_dirty_mark(&d, 0, 1), 0);
	block_dirty_destroy(&d);
}

/* ---- hostile records ---------------------------------------------------- */

struct t_rec {
	uint8_t b[T_CHUNK + 64];
	uint32_t len;
};

static void t_rec(struct t_rec *r, uint8_t kind, uint8_t disk)
{
	r->b[0] = kind;
	r->b[1] = disk;
	r->len = 2;
}

static void t_rec_u64(struct t_rec *r, uint64_t v)
{
	le_put(r->b + r->len, v, 8);
	r->len += 8;
}

static int t_load(struct mig_in_ctx *c, const struct t_rec *r)
{
	struct mig_payload in;

	mig_payload_whole(&in, r->b, r->len);
	return mig_source_get(MIG_SOURCE_BLOCK)->load(c, MIG_SEC_SOURCE, &in);
}

/* Load r; it must fail with err and a reason containing want. */
#define T_REFUSED(c, r, err, want) do {						\
	(c)->inc->why[0] = '\0';						\
	assert_int_equal(t_load((c), (r)), (err));				\
	if (!strstr((c)->inc->why, (want)))					\
		fail_msg("reason '%s' lacks '%s'", (c)->inc->why, (want));	\
} while (0)

static void test_hostile(void **state)
{
	struct mig_incoming inc;
	struct t_rec r;
	const uint64_t size = 1 << 20;

	mig_block_expect();
	t_machine(&t_dst, "hostile.img", size, 0x55);
	memset(&inc, 0, sizeof(inc));
	inc.cfg.flags = MIG_FLAG_VERIFY;
	struct mig_in_ctx c = { .inc = &inc, .m = &t_dst };

	t_rec(&r, MIG_BLOCK_HELLO, 0);
	r.len = 1;
	T_REFUSED(&c, &r, -EPROTO, "block section cut short");
	t_rec(&r, MIG_BLOCK_HELLO, 3);
	t_rec_u64(&r, size);
	T_REFUSED(&c, &r, -EPROTO, "blocks for disk 3; this destination has 1 disk(s)");
	t_rec(&r, MIG_BLOCK_DATA, 0);
	t_rec_u64(&r, 0);
	r.len += 512;
	T_REFUSED(&c, &r, -EPROTO, "before its HELLO");
	t_rec(&r, MIG_BLOCK_HELLO, 0);
	t_rec_u64(&r, size * 2);
	T_REFUSED(&c, &r, -EINVAL, "disk 0 is 2097152 bytes at the source but 1048576 here");
	t_rec(&r, MIG_BLOCK_HELLO, 0);
	t_rec_u64(&r, size);
	r.len++;
	T_REFUSED(&c, &r, -EPROTO, "HELLO of 9 bytes");
	t_rec(&r, MIG_BLOCK_HELLO, 0);
	t_rec_u64(&r, size);
	assert_int_equal(t_load(&c, &r), 0);
	T_REFUSED(&c, &r, -EPROTO, "a second HELLO");

	/* Offsets past the disk, lengths past the section or the disk. */
	t_rec(&r, MIG_BLOCK_DATA, 0);
	t_rec_u64(&r, size);
	r.len += 512;
	T_REFUSED(&c, &r, -ERANGE, "past its end");
	t_rec(&r, MIG_BLOCK_DATA, 0);
	t_rec_u64(&r, size - 512);
	r.len += 4096;
	T_REFUSED(&c, &r, -ERANGE, "past its end");
	t_rec(&r, MIG_BLOCK_DATA, 0);
	t_rec_u64(&r, UINT64_MAX - 100);
	r.len += 512;
	T_REFUSED(&c, &r, -ERANGE, "past its end");
	t_rec(&r, MIG_BLOCK_DATA, 0);
	t_rec_u64(&r, 0);
	r.len += T_CHUNK + 1;
	T_REFUSED(&c, &r, -EPROTO, "DATA of 65537 bytes");
	t_rec(&r, MIG_BLOCK_DATA, 0);
	t_rec_u64(&r, 0);
	T_REFUSED(&c, &r, -EPROTO, "DATA of 0 bytes");
	t_rec(&r, MIG_BLOCK_DATA, 0);
	r.len += 4;
	T_REFUSED(&c, &r, -EPROTO, "DATA cut short");
	t_rec(&r, MIG_BLOCK_ZERO, 0);
	t_rec_u64(&r, 8);
	t_rec_u64(&r, UINT64_MAX);
	T_REFUSED(&c, &r, -ERANGE, "past its end");
	t_rec(&r, MIG_BLOCK_ZERO, 0);
	t_rec_u64(&r, 0);
	T_REFUSED(&c, &r, -EPROTO, "ZERO of 8 bytes");
	t_rec(&r, 9, 0);
	T_REFUSED(&c, &r, -EPROTO, "unknown block record 9");
	t_rec(&r, MIG_BLOCK_SUMS_REQ, 0);
	r.len++;
	T_REFUSED(&c, &r, -EPROTO, "SUMS_REQ carries 1 bytes");
	t_rec(&r, MIG_BLOCK_SUMS_REQ, 0);
	T_REFUSED(&c, &r, -EPROTO, "digests asked for over a stream with no way back");

	/* A good block, then DONE with a digest that is not this image's. */
	t_rec(&r, MIG_BLOCK_DATA, 0);
	t_rec_u64(&r, 4096);
	memset(r.b + r.len, 0x77, 512);
	r.len += 512;
	assert_int_equal(t_load(&c, &r), 0);
	assert_int_equal(mig_source_get(MIG_SOURCE_BLOCK)->loaded(&c), -EPROTO);
	assert_non_null(strstr(inc.why, "disk 0 was not copied"));
	t_rec(&r, MIG_BLOCK_DONE, 0);
	t_rec_u64(&r, 0x1234);
	r.b[r.len++] = 2;
	T_REFUSED(&c, &r, -EPROTO, "digest flag is 2");
	r.b[r.len - 1] = 0;
	T_REFUSED(&c, &r, -EPROTO, "--verify, but DONE has no digest");
	t_rec(&r, MIG_BLOCK_DATA, 0);
	t_rec_u64(&r, 0);
	r.len += 512;
	T_REFUSED(&c, &r, -EPROTO, "after its DONE");

	/* Nothing refused was written: the image is 0x55 but for the good block. */
	uint8_t *img = malloc(size);
	int fd = open(t_dst.disks[0].cfg.path, O_RDONLY);
	assert_non_null(img);
	assert_int_equal(pread(fd, img, size, 0), (ssize_t)size);
	close(fd);
	for (uint64_t i = 0; i < size; i++)
		if (img[i] != (i >= 4096 && i < 4608 ? 0x77 : 0x55))
			fail_msg("byte %llu is 0x%02x", (unsigned long long)i, img[i]);
	free(img);
	mig_source_get(MIG_SOURCE_BLOCK)->unload(&inc);
	block_dirty_destroy(&t_dst.disks[0].dirty);
}

/* A DONE whose digest differs from the image: -EIO under --verify. */
static void test_verify_mismatch(void **state)
{
	struct mig_incoming inc;
	struct t_rec r;

	mig_block_expect();
	t_machine(&t_dst, "verify.img", T_CHUNK, 0);
	memset(&inc, 0, sizeof(inc));
	inc.cfg.flags = MIG_FLAG_VERIFY;
	struct mig_in_ctx c = { .inc = &inc, .m = &t_dst };
	t_rec(&r, MIG_BLOCK_HELLO, 0);
	t_rec_u64(&r, T_CHUNK);
	assert_int_equal(t_load(&c, &r), 0);
	t_rec(&r, MIG_BLOCK_DONE, 0);
	t_rec_u64(&r, 0x1234);
	r.b[r.len++] = 1;
	T_REFUSED(&c, &r, -EIO, "disk 0 differs from the source's after the copy");
	mig_source_get(MIG_SOURCE_BLOCK)->unload(&inc);
	block_dirty_destroy(&t_dst.disks[0].dirty);
}

/* Before ferry run --copy-storage said so, the destination takes no block section. */
static void test_not_expected(void **state)
{
	assert_false(mig_source_get(MIG_SOURCE_BLOCK)->accepted());
	struct mig_incoming inc;
	memset(&inc, 0, sizeof(inc));
	struct mig_in_ctx c = { .inc = &inc, .m = &t_dst };
	assert_int_equal(mig_source_get(MIG_SOURCE_BLOCK)->loaded(&c), 0);
}

/* ---- post-copy: chunks fetched on demand ---------------------------------- */

/* A stream pair: the destination's inc->s, whose other end the test reads (the source's view). */
static void t_inc_stream(struct mig_incoming *inc, struct mig_stream *peer)
{
	struct mig_channel *ch[2];
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(mig_channel_socket(sv[0], &ch[0]), 0);
	assert_int_equal(mig_channel_socket(sv[1], &ch[1]), 0);
	assert_int_equal(mig_stream_init(&inc->s, ch[1], 1 << 20), 0);
	assert_int_equal(mig_stream_init(peer, ch[0], 1 << 20), 0);
	/* What pc_dest_start would set up for the return path. */
	pthread_mutex_init(&inc->pc.lock, NULL);
	inc->pc.s = &inc->s;
}

static void t_rec_owed(struct t_rec *r, uint64_t first, uint32_t count, uint64_t bits)
{
	t_rec(r, MIG_BLOCK_OWED, 0);
	t_rec_u64(r, first);
	le_put(r->b + r->len, count, 4);
	r->len += 4;
	for (uint32_t k = 0; k < (count + 63) / 64; k++)
		t_rec_u64(r, k ? 0 : bits);
}

static void t_rec_chunk(struct t_rec *r, uint64_t chunk, int fill)
{
	t_rec(r, fill < 0 ? MIG_BLOCK_ZERO : MIG_BLOCK_DATA, 0);
	t_rec_u64(r, chunk * T_CHUNK);
	if (fill < 0) {
		t_rec_u64(r, T_CHUNK);
		return;
	}
	memset(r->b + r->len, fill, T_CHUNK);
	r->len += T_CHUNK;
}

static uint8_t t_img_byte(const char *path, uint64_t off)
{
	uint8_t v = 0;
	int fd = open(path, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &v, 1, (off_t)off), 1);
	close(fd);
	return v;
}

/*
 * The destination's post-copy records one by one: each refusal with its
 * reason, then a gate over chunks 2, 3 and 9 of 16, the guest asking for
 * one, late copies dropped, DONE only once all came.
 */
static void test_lazy_records(void **state)
{
	const struct mig_source_ops *o = mig_source_get(MIG_SOURCE_BLOCK);
	const uint64_t size = 16 * T_CHUNK;
	const uint64_t owed = (1ULL << 2) | (1ULL << 3) | (1ULL << 9);
	struct mig_incoming inc;
	struct mig_stream peer;
	struct t_rec r;

	mig_block_expect();
	t_machine(&t_dst, "lazy.img", size, 0x55);
	struct block_gate *g = &t_dst.disks[0].gate;
	memset(&inc, 0, sizeof(inc));
	inc.m = &t_dst;
	inc.cfg.flags = MIG_FLAG_VERIFY;
	t_inc_stream(&inc, &peer);
	struct mig_in_ctx c = { .inc = &inc, .m = &t_dst };
	const char *path = t_dst.disks[0].cfg.path;

	t_rec(&r, MIG_BLOCK_HELLO, 0);
	t_rec_u64(&r, size);
	assert_int_equal(t_load(&c, &r), 0);
	t_rec_owed(&r, 0, 16, owed);
	T_REFUSED(&c, &r, -EPROTO, "may not go to post-copy");
	inc.cfg.flags |= MIG_FLAG_POSTCOPY;
	t_rec(&r, MIG_BLOCK_LAZY, 0);
	t_rec_u64(&r, 0);
	r.b[r.len++] = 1;
	T_REFUSED(&c, &r, -EPROTO, "LAZY before OWED covered the disk");
	t_rec_owed(&r, 64, 16, owed);
	T_REFUSED(&c, &r, -EPROTO, "malformed OWED");
	t_rec_owed(&r, 0, 0, owed);
	T_REFUSED(&c, &r, -EPROTO, "malformed OWED");
	t_rec_owed(&r, 0, 17, owed);
	T_REFUSED(&c, &r, -EPROTO, "malformed OWED");
	t_rec_owed(&r, 0, 16, owed);
	r.len -= 4;
	T_REFUSED(&c, &r, -EPROTO, "malformed OWED");
	t_rec_owed(&r, 0, 16, owed | (1ULL << 40));	/* bits past the count are ignored */
	assert_int_equal(t_load(&c, &r), 0);
	t_rec_chunk(&r, 4, 0x44);
	T_REFUSED(&c, &r, -EPROTO, "DATA between OWED and LAZY");

	/* LAZY: under --verify, the digest of the chunks held here. */
	uint8_t *held = malloc(13 * T_CHUNK);
	assert_non_null(held);
	memset(held, 0x55, 13 * T_CHUNK);
	uint64_t digest = XXH3_64bits(held, 13 * T_CHUNK);
	free(held);
	t_rec(&r, MIG_BLOCK_LAZY, 0);
	t_rec_u64(&r, digest);
	r.b[r.len++] = 0;
	T_REFUSED(&c, &r, -EPROTO, "--verify, but LAZY has no digest");
	r.b[r.len - 1] = 2;
	T_REFUSED(&c, &r, -EPROTO, "malformed LAZY");
	t_rec(&r, MIG_BLOCK_LAZY, 0);
	t_rec_u64(&r, digest ^ 1);
	r.b[r.len++] = 1;
	T_REFUSED(&c, &r, -EIO, "differs from the source's at the switch");
	t_rec(&r, MIG_BLOCK_LAZY, 0);
	t_rec_u64(&r, digest);
	r.b[r.len++] = 1;
	assert_int_equal(t_load(&c, &r), 0);
	assert_int_equal(block_gate_count(g), 3);
	T_REFUSED(&c, &r, -EPROTO, "LAZY after LAZY");
	t_rec_owed(&r, 0, 16, owed);
	T_REFUSED(&c, &r, -EPROTO, "OWED after LAZY");
	c.type = MIG_SEC_POSTCOPY_RUN;
	assert_int_equal(o->loaded(&c), 0);		/* the guest may start: the gate holds */
	c.type = MIG_SEC_POSTCOPY_DONE;
	assert_int_equal(o->loaded(&c), -EPROTO);
	assert_non_null(strstr(inc.why, "post-copy is done but its copy is not"));

	/* While the guest runs: whole chunks only; a chunk here already is not written. */
	t_rec(&r, MIG_BLOCK_DATA, 0);
	t_rec_u64(&r, 2 * T_CHUNK + 512);
	r.len += 512;
	T_REFUSED(&c, &r, -EPROTO, "not one whole chunk");
	t_rec(&r, MIG_BLOCK_ZERO, 0);
	t_rec_u64(&r, 2 * T_CHUNK);
	t_rec_u64(&r, 512);
	T_REFUSED(&c, &r, -EPROTO, "not one whole chunk");
	t_rec_chunk(&r, 2, 0x11);
	assert_int_equal(t_load(&c, &r), 0);
	assert_false(block_gate_absent(g, 2));
	t_rec_chunk(&r, 2, 0x22);			/* late: dropped */
	assert_int_equal(t_load(&c, &r), 0);
	assert_int_equal(t_img_byte(path, 2 * T_CHUNK + 100), 0x11);
	t_rec_chunk(&r, 3, 0x33);
	assert_int_equal(t_load(&c, &r), 0);
	/* The guest writes into chunk 3 (it may: the gate let it); a late ZERO must not undo it. */
	int fd = open(path, O_WRONLY);
	uint8_t v = 0x99;
	assert_int_equal(pwrite(fd, &v, 1, 3 * T_CHUNK + 7), 1);
	close(fd);
	t_rec_chunk(&r, 3, -1);
	assert_int_equal(t_load(&c, &r), 0);
	assert_int_equal(t_img_byte(path, 3 * T_CHUNK + 7), 0x99);
	assert_int_equal(t_img_byte(path, 3 * T_CHUNK + 8), 0x33);
	t_rec_chunk(&r, 5, 0x66);			/* never missing: dropped */
	assert_int_equal(t_load(&c, &r), 0);
	assert_int_equal(t_img_byte(path, 5 * T_CHUNK), 0x55);

	/* The guest reads chunk 9: the gate asks the source, on the return path. */
	assert_int_equal(block_gate_check(g, 9 * T_CHUNK + 4096, 4096), 0);
	assert_int_equal(block_gate_check(g, 9 * T_CHUNK, 512), 0);	/* asked once */
	uint8_t buf[64], type;
	uint32_t len;
	assert_int_equal(mig_section_read(&peer, buf, sizeof(buf), &type, &len), 0);
	assert_int_equal(type, MIG_SEC_BLOCK_REQ);
	assert_int_equal(len, 9);
	assert_int_equal(buf[0], 0);
	assert_int_equal(le_get(buf + 1, 8), 9);
	assert_int_equal(mig_stream_wait_readable(&peer, 50, NULL, 0), 0);

	t_rec(&r, MIG_BLOCK_DONE, 0);
	t_rec_u64(&r, 0);
	r.b[r.len++] = 0;
	T_REFUSED(&c, &r, -EPROTO, "DONE, but 1 chunks never arrived");
	t_rec_chunk(&r, 9, -1);
	assert_int_equal(t_load(&c, &r), 0);
	assert_int_equal(block_gate_check(g, 9 * T_CHUNK, 512), 1);
	t_rec(&r, MIG_BLOCK_DONE, 0);
	t_rec_u64(&r, 0);
	r.b[r.len++] = 0;
	assert_int_equal(t_load(&c, &r), 0);
	assert_int_equal(g->state, BLOCK_GATE_OPEN);
	assert_int_equal(o->loaded(&c), 0);
	assert_int_equal(t_img_byte(path, 9 * T_CHUNK + 5), 0);
	o->unload(&inc);
	mig_stream_destroy(&peer);
	mig_stream_destroy(&inc.s);
	pthread_mutex_destroy(&inc.pc.lock);
	block_dirty_destroy(&t_dst.disks[0].dirty);
	block_gate_destroy(g);
}

/* The destination's guest: wants chunk `chunk`, then writes its own bytes there. */
struct t_pc_guest {
	struct block_gate *g;
	const char *src, *dst;
	uint64_t chunk;
	int err;
	bool done;
};

static void *t_pc_guest_thread(void *arg)
{
	struct t_pc_guest *t = arg;
	uint8_t a[T_CHUNK], b[T_CHUNK];
	int ret;

	while ((ret = block_gate_check(t->g, t->chunk * T_CHUNK + 1024, 4096)) == 0)
		usleep(1000);	/* a device would park it until the fill wakes it */
	int fs = open(t->src, O_RDONLY), fd = open(t->dst, O_RDWR);
	if (ret != 1 || fs < 0 || fd < 0 || pread(fs, a, T_CHUNK, (off_t)(t->chunk * T_CHUNK)) != T_CHUNK ||
	    pread(fd, b, T_CHUNK, (off_t)(t->chunk * T_CHUNK)) != T_CHUNK || memcmp(a, b, T_CHUNK))
		t->err = -EIO;	/* it must read the source's copy */
	memset(b, 0xc3, 4096);
	if (fd >= 0 && pwrite(fd, b, 4096, (off_t)(t->chunk * T_CHUNK)) != 4096)
		t->err = -EIO;
	if (fs >= 0)
		close(fs);
	if (fd >= 0)
		close(fd);
	__atomic_store_n(&t->done, true, __ATOMIC_RELEASE);
	return NULL;
}

/*
 * Post-copy end to end without KVM: the source's switch (OWED, LAZY with
 * its digest) over a socket to the destination's loader in a thread; a
 * "guest" there waits on a chunk, which the source serves at once; the
 * rest is pushed; the guest's write survives, every other byte equals
 * the source's, and the destination's checks pass.
 */
static void test_lazy_roundtrip(void **state)
{
	const struct mig_source_ops *o = mig_source_get(MIG_SOURCE_BLOCK);
	struct mig_channel *ch[2];
	struct mig_incoming inc;
	struct t_dest d;
	pthread_t td, tg;
	int sv[2];

	mig_block_expect();
	t_machine(&t_src, "psrc.img", T_SIZE, -1);
	t_machine(&t_dst, "pdst.img", T_SIZE, 0xaa);
	for (unsigned k = 0; k < 12; k++)
		t_guest_write((uint64_t)(k * 5) * T_CHUNK + 300, 9000, (uint8_t)(k + 1));
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(mig_channel_socket(sv[0], &ch[0]), 0);
	assert_int_equal(mig_channel_socket(sv[1], &ch[1]), 0);
	memset(&t_mig, 0, sizeof(t_mig));
	pthread_mutex_init(&t_mig.lock, NULL);
	t_mig.m = &t_src;
	t_mig.p.copy_storage = true;
	t_mig.p.verify = true;
	assert_int_equal(mig_stream_init(&t_mig.s, ch[0], 1 << 20), 0);
	memset(&inc, 0, sizeof(inc));
	inc.m = &t_dst;
	inc.cfg.flags = MIG_FLAG_VERIFY | MIG_FLAG_POSTCOPY;
	assert_int_equal(mig_stream_init(&inc.s, ch[1], 1 << 20), 0);
	pthread_mutex_init(&inc.pc.lock, NULL);
	inc.pc.s = &inc.s;
	memset(&d, 0, sizeof(d));
	d.inc = &inc;
	d.c = (struct mig_in_ctx){ .inc = &inc, .m = &t_dst };
	assert_int_equal(pthread_create(&td, NULL, t_dest_thread, &d), 0);

	/* Pure post-copy: setup (HELLO, the holes), then the switch. */
	assert_int_equal(o->setup(&t_mig), 0);
	assert_int_equal(o->sync(&t_mig), 12 * T_CHUNK);
	assert_int_equal(o->pc_switch(&t_mig), 0);
	assert_int_equal(mig_stream_flush(&t_mig.s), 0);
	assert_int_equal(t_mig.stats.pc_block_chunks_owed, 12);
	struct block_gate *g = &t_dst.disks[0].gate;
	for (int i = 0; i < 5000 && !block_gate_count(g) && !d.err; i++)
		usleep(1000);
	if (d.err)
		fail_msg("destination: %s", inc.why);
	assert_int_equal(block_gate_count(g), 12);

	struct t_pc_guest gu = { .g = g, .src = t_src.disks[0].cfg.path,
				 .dst = t_dst.disks[0].cfg.path, .chunk = 35 };
	assert_int_equal(pthread_create(&tg, NULL, t_pc_guest_thread, &gu), 0);
	/* The source serves what the return path asks until the guest has its chunk. */
	while (!__atomic_load_n(&gu.done, __ATOMIC_ACQUIRE)) {
		if (mig_stream_wait_readable(&t_mig.s, 10, NULL, 0) <= 0)
			continue;
		uint8_t buf[64], type;
		uint32_t len;
		assert_int_equal(mig_section_read(&t_mig.s, buf, sizeof(buf), &type, &len), 0);
		assert_int_equal(o->pc_request(&t_mig, type, buf, len), 0);
	}
	assert_int_equal(pthread_join(tg, NULL), 0);
	assert_int_equal(gu.err, 0);
	assert_int_equal(t_mig.stats.pc_block_requests, 1);
	/* Hostile requests: refused with a reason. */
	uint8_t bad[9] = { 1 };
	assert_int_equal(o->pc_request(&t_mig, MIG_SEC_BLOCK_REQ, bad, 9), -EPROTO);
	assert_int_equal(o->pc_request(&t_mig, MIG_SEC_BLOCK_REQ, bad, 8), -EPROTO);
	le_put(bad + 1, T_SIZE / T_CHUNK, 8);
	bad[0] = 0;
	assert_int_equal(o->pc_request(&t_mig, MIG_SEC_BLOCK_REQ, bad, 9), -EPROTO);
	assert_int_equal(o->pc_request(&t_mig, MIG_SEC_PAGE_REQ, bad, 8), -ENOENT);

	/* The push: the other eleven chunks, then DONE. */
	bool done = false;
	for (int i = 0; i < 100 && !done; i++)
		assert_int_equal(o->pc_push(&t_mig, 2 * T_CHUNK, &done), 0);
	assert_true(done);
	assert_int_equal(mig_stream_flush(&t_mig.s), 0);
	uint64_t wire = t_mig.stats.source_sent[MIG_SOURCE_BLOCK];
	o->cleanup(&t_mig);
	mig_channel_shutdown(ch[0], false, true);
	assert_int_equal(pthread_join(td, NULL), 0);
	if (d.err)
		fail_msg("destination: %s", inc.why);
	d.c.type = MIG_SEC_POSTCOPY_DONE;
	assert_int_equal(o->loaded(&d.c), 0);
	assert_int_equal(g->state, BLOCK_GATE_OPEN);
	o->unload(&inc);
	/* Equal but for the guest's 4 KiB at chunk 35, which no late copy undid. */
	char cmd[3 * PATH_MAX];
	snprintf(cmd, sizeof(cmd), "cmp -l '%s' '%s' | awk '$1 <= %llu || $1 > %llu {x=1} END {exit x}'",
		 t_src.disks[0].cfg.path, t_dst.disks[0].cfg.path, 35ULL * T_CHUNK,
		 35ULL * T_CHUNK + 4096);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(t_img_byte(t_dst.disks[0].cfg.path, 35 * T_CHUNK + 10), 0xc3);
	print_message("post-copy: %llu block bytes on the wire, 1 chunk asked for\n",
		      (unsigned long long)wire);
	mig_stream_destroy(&t_mig.s);
	mig_stream_destroy(&inc.s);
	pthread_mutex_destroy(&inc.pc.lock);
	block_dirty_destroy(&t_src.disks[0].dirty);
	block_dirty_destroy(&t_dst.disks[0].dirty);
	block_gate_destroy(&t_src.disks[0].gate);
	block_gate_destroy(g);
}

/* ---- block data through a codec (DATA_Z, block_codec.c) ------------------- */

/* len bytes of p at off, written by the "guest". */
static void t_guest_write_buf(uint64_t off, const uint8_t *p, uint64_t len)
{
	int fd = open(t_src.disks[0].cfg.path, O_WRONLY);

	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, p, len, (off_t)off), (ssize_t)len);
	close(fd);
	block_dirty_mark(&t_src.disks[0].dirty, off, len);
}

/* Text-like bytes (words and spaces): what a codec shrinks. */
static void t_fill_text(uint8_t *p, size_t len, uint64_t seed)
{
	static const char *const w[] = { "the ", "disk ", "block ", "migration ", "of ",
					 "guest ", "copy ", "data.\n" };

	for (size_t n = 0; n < len; seed = seed * 6364136223846793005ULL + 1442695040888963407ULL) {
		const char *s = w[(seed >> 33) % 8];
		while (*s && n < len)
			p[n++] = (uint8_t)*s++;
	}
}

static void t_fill_random(uint8_t *p, size_t len, uint64_t seed)
{
	for (size_t n = 0; n < len; n++) {
		seed ^= seed << 13;
		seed ^= seed >> 7;
		seed ^= seed << 17;
		p[n] = (uint8_t)seed;
	}
}

/* Encode, parse and decode one range; NULL expect: the codec must decline it. */
static void t_z_roundtrip(uint8_t codec, const uint8_t *src, uint32_t len, bool shrinks)
{
	struct mig_block_z src_z = { 0 }, dst_z = { 0 };
	struct mig_block_z_rec r;
	uint8_t *out = malloc(MIG_BLOCK_CHUNK);
	char why[96];

	assert_non_null(out);
	assert_int_equal(mig_block_z_init(&src_z, codec, 1), 0);
	int n = mig_block_z_encode(&src_z, 12345, src, len);
	if (!shrinks) {
		assert_int_equal(n, -1);
	} else {
		assert_true(n > (int)BLOCK_Z_HDR);
		assert_true((uint32_t)n + BLOCK_Z_MIN_SAVING(len) <= len);
		assert_int_equal(mig_block_z_parse(src_z.buf, (uint32_t)n, &r, why, sizeof(why)), 0);
		assert_int_equal(r.off, 12345);
		assert_int_equal(r.codec, codec);
		assert_int_equal(r.len, len);
		assert_int_equal(r.plen, (uint32_t)n - BLOCK_Z_HDR);
		assert_int_equal(mig_block_z_decode(&dst_z, &r, out), 0);
		assert_memory_equal(out, src, len);
	}
	mig_block_z_fini(&src_z);
	mig_block_z_fini(&dst_z);
	free(out);
}

/* Which codec each --compress mode gives blocks, and each codec's round trip. */
static void test_z_codec(void **state)
{
	uint8_t *text = malloc(T_CHUNK), *rnd = malloc(T_CHUNK);

	assert_non_null(text);
	assert_non_null(rnd);
	assert_int_equal(mig_block_z_codec(MIG_COMPRESS_NONE), MIG_CODEC_RAW);
	assert_int_equal(mig_block_z_codec(MIG_COMPRESS_DELTA), MIG_CODEC_RAW);
	assert_int_equal(mig_block_z_codec(MIG_COMPRESS_LZ4), MIG_CODEC_LZ4);
	assert_int_equal(mig_block_z_codec(MIG_COMPRESS_ADAPTIVE), MIG_CODEC_LZ4);
	assert_int_equal(mig_block_z_codec(MIG_COMPRESS_ZSTD), MIG_CODEC_ZSTD);
	t_fill_text(text, T_CHUNK, 7);
	t_fill_random(rnd, T_CHUNK, 0x9e3779b97f4a7c15ULL);
	for (uint8_t codec = MIG_CODEC_LZ4; codec <= MIG_CODEC_ZSTD; codec++) {
		t_z_roundtrip(codec, text, T_CHUNK, true);
		t_z_roundtrip(codec, text, 4096, true);		/* a 4 KiB range */
		t_z_roundtrip(codec, rnd, T_CHUNK, false);	/* would not shrink: DATA */
		t_z_roundtrip(codec, text, 20, false);		/* too short to pay */
	}
	free(text);
	free(rnd);
}

/*
 * The block source with --compress (lz4, then zstd) into a destination
 * that agreed to DATA_Z: text chunks go encoded, a random one raw, a zero
 * one as ZERO; the destination ends equal to the source and the wire
 * carries less than the data; the stats say so per codec.
 */
static void t_z_copy(enum mig_compress mode, uint8_t codec)
{
	const struct mig_source_ops *o = mig_source_get(MIG_SOURCE_BLOCK);
	char path[128], uri[160], why[256];
	struct mig_channel *ch;
	uint8_t *buf = malloc(T_CHUNK);

	assert_non_null(buf);
	mig_block_expect();
	t_machine(&t_src, "zsrc.img", T_SIZE, -1);
	t_machine(&t_dst, "zdst.img", T_SIZE, 0xaa);
	for (unsigned k = 0; k < 8; k++) {			/* 8 chunks of text */
		t_fill_text(buf, T_CHUNK, k + 1);
		t_guest_write_buf((uint64_t)k * T_CHUNK, buf, T_CHUNK);
	}
	t_fill_random(buf, T_CHUNK, 42);
	t_guest_write_buf(1 << 20, buf, T_CHUNK);		/* one of random bytes */
	t_guest_write(2 << 20, T_CHUNK, 0);			/* allocated, but zeros */

	memset(&t_mig, 0, sizeof(t_mig));
	pthread_mutex_init(&t_mig.lock, NULL);
	t_mig.m = &t_src;
	t_mig.p.copy_storage = true;
	t_mig.p.verify = true;
	t_mig.p.compress = mode;
	t_mig.p.compress_level = 1;
	t_mig.block_z = true;				/* READY agreed */
	t_mig.stats.codecs = mig_compress_codecs(mode);
	t_path(path, sizeof(path), "zstream");
	snprintf(uri, sizeof(uri), "file:%s", path);
	assert_int_equal(mig_channel_open(uri, NULL, 1000, &ch, why, sizeof(why)), 0);
	assert_int_equal(mig_stream_init(&t_mig.s, ch, 1 << 20), 0);
	assert_int_equal(o->setup(&t_mig), 0);
	assert_int_equal(o->handshake(&t_mig), 0);
	assert_int_equal(o->sync(&t_mig), 10 * T_CHUNK);
	assert_int_equal(o->iterate(&t_mig, false), 0);
	t_fill_text(buf, 4096, 99);
	t_guest_write_buf(3 * T_CHUNK + 8192, buf, 4096);	/* a 4 KiB range, encoded too */
	assert_int_equal(o->sync(&t_mig), 4096);
	assert_int_equal(o->complete(&t_mig, true), 0);
	assert_int_equal(mig_stream_flush(&t_mig.s), 0);
	assert_int_equal(mig_stream_finish(&t_mig.s), 0);
	uint64_t wire = t_mig.stats.source_sent[MIG_SOURCE_BLOCK];
	const struct mig_codec_stats *z = &t_mig.stats.block_codec[codec];
	assert_int_equal(t_mig.stats.block_z_codec, codec);
	assert_int_equal(z->pages, 9);				/* 8 chunks and the range */
	assert_int_equal(z->bytes_in, 8 * T_CHUNK + 4096);
	assert_true(z->bytes_out < z->bytes_in / 2);
	assert_int_equal(t_mig.stats.block_codec[MIG_CODEC_RAW].pages, 1);
	assert_int_equal(t_mig.stats.block_codec[MIG_CODEC_ZERO].pages, 1);
	assert_int_equal(t_mig.stats.block_z_gave_up, 1);
	/* The stats as query-migrate shows them. */
	t_mig.stats.status = MIG_STATUS_ACTIVE;
	json_object *js = mig_stats_to_json(&t_mig.stats, 1);
	json_object *src, *blk, *codecs, *e;
	assert_true(json_object_object_get_ex(js, "sources", &src));
	assert_true(json_object_object_get_ex(src, "block", &blk));
	assert_true(json_object_object_get_ex(blk, "codec", &e));
	assert_string_equal(json_object_get_string(e), mig_codec_get(codec)->name);
	assert_true(json_object_object_get_ex(blk, "codecs", &codecs));
	assert_true(json_object_object_get_ex(codecs, mig_codec_get(codec)->name, &e));
	assert_true(json_object_object_get_ex(e, "records", &e));
	assert_int_equal(json_object_get_int64(e), 9);
	json_object_put(js);
	o->cleanup(&t_mig);
	mig_stream_destroy(&t_mig.s);

	struct mig_incoming inc;
	memset(&inc, 0, sizeof(inc));
	inc.cfg.flags = MIG_FLAG_VERIFY;
	inc.block_z = true;
	inc.codecs = mig_compress_codecs(mode);	/* what CONFIG offered */
	struct mig_in_ctx c = { .inc = &inc, .m = &t_dst };
	if (t_load_stream(uri, &c))
		fail_msg("load: %s", inc.why);
	assert_int_equal(o->loaded(&c), 0);
	o->unload(&inc);
	assert_true(t_files_equal(t_src.disks[0].cfg.path, t_dst.disks[0].cfg.path));
	print_message("%s: block bytes on the wire %llu for %u bytes of data\n",
		      mig_codec_get(codec)->name, (unsigned long long)wire, 9 * T_CHUNK + 4096);
	assert_true(wire < 9 * T_CHUNK / 2 + T_CHUNK);
	block_dirty_destroy(&t_src.disks[0].dirty);
	block_dirty_destroy(&t_dst.disks[0].dirty);
	free(buf);
}

static void test_z_copy(void **state)
{
	t_z_copy(MIG_COMPRESS_LZ4, MIG_CODEC_LZ4);
	t_z_copy(MIG_COMPRESS_ZSTD, MIG_CODEC_ZSTD);
}

/* One DATA_Z record: offset, codec, length, then n bytes of payload. */
static void t_rec_z(struct t_rec *r, uint64_t off, uint8_t codec, uint32_t len,
		    const void *payload, uint32_t n)
{
	t_rec(r, MIG_BLOCK_DATA_Z, 0);
	t_rec_u64(r, off);
	r->b[r->len++] = codec;
	le_put(r->b + r->len, len, 4);
	r->len += 4;
	memcpy(r->b + r->len, payload, n);
	r->len += n;
}

/* Hostile DATA_Z records: each refused with its reason, nothing written. */
static void test_hostile_z(void **state)
{
	struct mig_incoming inc;
	struct t_rec r;
	const uint64_t size = 1 << 20;
	uint8_t *text = malloc(T_CHUNK), *enc = malloc(T_CHUNK);
	struct mig_block_z z = { 0 };

	assert_non_null(text);
	assert_non_null(enc);
	mig_block_expect();
	t_machine(&t_dst, "hostilez.img", size, 0x55);
	memset(&inc, 0, sizeof(inc));
	struct mig_in_ctx c = { .inc = &inc, .m = &t_dst };
	t_rec(&r, MIG_BLOCK_HELLO, 0);
	t_rec_u64(&r, size);
	assert_int_equal(t_load(&c, &r), 0);

	/* A good lz4 chunk of text, to take apart. */
	t_fill_text(text, T_CHUNK, 5);
	assert_int_equal(mig_block_z_init(&z, MIG_CODEC_LZ4, 0), 0);
	int n = mig_block_z_encode(&z, 0, text, T_CHUNK);
	assert_true(n > (int)BLOCK_Z_HDR);
	uint32_t plen = (uint32_t)n - BLOCK_Z_HDR;
	memcpy(enc, z.buf + BLOCK_Z_HDR, plen);
	mig_block_z_fini(&z);

	/* Not agreed at READY (an older source would never send it). */
	t_rec_z(&r, 0, MIG_CODEC_LZ4, T_CHUNK, enc, plen);
	T_REFUSED(&c, &r, -EPROTO, "DATA_Z, which READY did not agree to");
	inc.block_z = true;
	inc.codecs = MIG_CODEC_BIT(MIG_CODEC_LZ4) | MIG_CODEC_BIT(MIG_CODEC_ZSTD);
	t_rec(&r, MIG_BLOCK_DATA_Z, 0);
	t_rec_u64(&r, 0);
	r.len += 4;
	T_REFUSED(&c, &r, -EPROTO, "DATA_Z cut short (12 bytes)");
	t_rec_z(&r, 0, MIG_CODEC_LZ4, T_CHUNK, enc, 0);
	T_REFUSED(&c, &r, -EPROTO, "DATA_Z cut short (13 bytes)");
	t_rec_z(&r, 0, MIG_CODEC_DELTA, T_CHUNK, enc, plen);
	T_REFUSED(&c, &r, -EPROTO, "DATA_Z with unknown codec 4");
	t_rec_z(&r, 0, MIG_CODEC_RAW, T_CHUNK, enc, plen);
	T_REFUSED(&c, &r, -EPROTO, "DATA_Z with unknown codec 1");
	t_rec_z(&r, 0, 200, T_CHUNK, enc, plen);
	T_REFUSED(&c, &r, -EPROTO, "DATA_Z with unknown codec 200");
	t_rec_z(&r, 0, MIG_CODEC_LZ4, 0, enc, plen);
	T_REFUSED(&c, &r, -EPROTO, "DATA_Z of 0 bytes (1..65536)");
	t_rec_z(&r, 0, MIG_CODEC_LZ4, T_CHUNK + 1, enc, plen);
	T_REFUSED(&c, &r, -EPROTO, "DATA_Z of 65537 bytes (1..65536)");
	t_rec_z(&r, 0, MIG_CODEC_LZ4, UINT32_MAX, enc, plen);
	T_REFUSED(&c, &r, -EPROTO, "DATA_Z of 4294967295 bytes");
	t_rec_z(&r, 0, MIG_CODEC_LZ4, 100, text, 100);
	T_REFUSED(&c, &r, -EPROTO, "DATA_Z of 100 bytes encoded in 100");
	/* Past the disk, however well it decodes. */
	t_rec_z(&r, size - 4096, MIG_CODEC_LZ4, T_CHUNK, enc, plen);
	T_REFUSED(&c, &r, -ERANGE, "past its end");
	t_rec_z(&r, UINT64_MAX - 100, MIG_CODEC_LZ4, T_CHUNK, enc, plen);
	T_REFUSED(&c, &r, -ERANGE, "past its end");
	/* Decodes to fewer or more bytes than it says, or not at all. */
	t_rec_z(&r, 0, MIG_CODEC_LZ4, T_CHUNK - 1, enc, plen);
	T_REFUSED(&c, &r, -EPROTO, "does not decode");
	t_rec_z(&r, 0, MIG_CODEC_LZ4, T_CHUNK / 2, enc, plen);
	T_REFUSED(&c, &r, -EPROTO, "does not decode");
	t_rec_z(&r, 0, MIG_CODEC_LZ4, T_CHUNK, enc, plen - 1);	/* truncated */
	T_REFUSED(&c, &r, -EPROTO, "does not decode");
	t_rec_z(&r, 0, MIG_CODEC_LZ4, T_CHUNK, text, 4096);	/* not lz4 at all */
	T_REFUSED(&c, &r, -EPROTO, "does not decode");
	t_rec_z(&r, 0, MIG_CODEC_ZSTD, T_CHUNK, enc, plen);	/* lz4 said to be zstd */
	T_REFUSED(&c, &r, -EPROTO, "does not decode (zstd");
	/* A skippable frame (zstd's magic range 0x184D2A5?), then a real one: not ours. */
	uint8_t skip[16] = { 0x50, 0x2a, 0x4d, 0x18, 8 };
	t_rec_z(&r, 0, MIG_CODEC_ZSTD, T_CHUNK, skip, sizeof(skip));
	T_REFUSED(&c, &r, -EPROTO, "does not decode (zstd");
	/* lz4 only agreed: a zstd record is refused before anything is decoded. */
	inc.codecs = MIG_CODEC_BIT(MIG_CODEC_LZ4);
	t_rec_z(&r, 0, MIG_CODEC_ZSTD, T_CHUNK, enc, plen);
	T_REFUSED(&c, &r, -EPROTO, "DATA_Z in zstd, which was not agreed");
	inc.codecs |= MIG_CODEC_BIT(MIG_CODEC_ZSTD);
	/* A zstd frame whose header promises another size than the record. */
	assert_int_equal(mig_block_z_init(&z, MIG_CODEC_ZSTD, 1), 0);
	n = mig_block_z_encode(&z, 0, text, 8192);
	assert_true(n > (int)BLOCK_Z_HDR);
	t_rec_z(&r, 0, MIG_CODEC_ZSTD, 4096, z.buf + BLOCK_Z_HDR, (uint32_t)n - BLOCK_Z_HDR);
	T_REFUSED(&c, &r, -EPROTO, "does not decode");
	mig_block_z_fini(&z);

	uint8_t *img = malloc(size);
	int fd = open(t_dst.disks[0].cfg.path, O_RDONLY);
	assert_non_null(img);
	assert_int_equal(pread(fd, img, size, 0), (ssize_t)size);
	for (uint64_t i = 0; i < size; i++)
		if (img[i] != 0x55)
			fail_msg("byte %llu is 0x%02x after refused records", (unsigned long long)i,
				 img[i]);
	/* And the good record writes its chunk. */
	t_rec_z(&r, 2 * T_CHUNK, MIG_CODEC_LZ4, T_CHUNK, enc, plen);
	assert_int_equal(t_load(&c, &r), 0);
	assert_int_equal(pread(fd, img, T_CHUNK, 2 * T_CHUNK), (ssize_t)T_CHUNK);
	assert_memory_equal(img, text, T_CHUNK);
	close(fd);
	free(img);
	free(text);
	free(enc);
	mig_source_get(MIG_SOURCE_BLOCK)->unload(&inc);
	block_dirty_destroy(&t_dst.disks[0].dirty);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dirty_bitmap),
		cmocka_unit_test(test_not_expected),	/* before any mig_block_expect() */
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_hostile),
		cmocka_unit_test(test_verify_mismatch),
		cmocka_unit_test(test_incremental),
		cmocka_unit_test(test_hostile_sums),
		cmocka_unit_test(test_dirty_tickets),
		cmocka_unit_test(test_write_blocking),
		cmocka_unit_test(test_lazy_records),
		cmocka_unit_test(test_lazy_roundtrip),
		cmocka_unit_test(test_z_codec),
		cmocka_unit_test(test_z_copy),
		cmocka_unit_test(test_hostile_z),
	};
	return cmocka_run_group_tests(tests, t_setup, t_teardown);
}
