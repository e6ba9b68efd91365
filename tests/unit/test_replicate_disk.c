/*
 * Disks under replication without KVM: the primary's side (the block
 * source's initial copy, then mig_repl_disk_collect for an epoch, as
 * replicate.c drives them) written to a file stream, read back as the
 * standby does: the block SOURCE sections by the block loader, each
 * EPOCH_DISK decoded into a struct mig_epoch, written into the standby's
 * image only at EPOCH_END.  The standby's image then equals the primary's
 * at the checkpoint's instant: not the writes made after it, and not the
 * epoch's blocks before its END.  With epoch disk ranges agreed
 * (MIG_CAP_EPOCH_RANGES) and without (whole chunks, an older standby);
 * and what N random 4 KiB writes cost an epoch either way.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
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
#include "migration/format.h"
#include "migration/live.h"
#include "migration/migration.h"
#include "migration/replicate/disk.h"
#include "migration/replicate/epoch.h"
#include "migration/section.h"
#include "util/le.h"

#define T_SIZE		(1ULL << 20)
#define T_CHUNK		MIG_BLOCK_CHUNK

static char t_dir[64];
static struct machine t_src, t_dst;
static struct migration t_mig;

static void t_path(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", t_dir, name);
}

/* A machine with one file disk at dir/name, filled with `fill` (-1: sparse). */
static void t_machine(struct machine *m, const char *name, int fill)
{
	char path[128];

	memset(m, 0, sizeof(*m));
	t_path(path, sizeof(path), name);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)T_SIZE), 0);
	if (fill >= 0) {
		static uint8_t p[T_SIZE];
		memset(p, fill, sizeof(p));
		assert_int_equal(pwrite(fd, p, sizeof(p), 0), (ssize_t)sizeof(p));
	}
	close(fd);
	m->nr_disks = 1;
	m->disks[0].cfg.kind = BLOCK_KIND_FILE;
	snprintf(m->disks[0].cfg.path, sizeof(m->disks[0].cfg.path), "%s", path);
	m->disks[0].bk.size = T_SIZE;
	block_dirty_init(&m->disks[0].dirty);
	block_gate_init(&m->disks[0].gate);
}

/* The guest writes the primary's image; the device marks it on completion. */
static void t_guest_write(uint64_t off, uint64_t len, uint8_t v)
{
	static uint8_t p[T_SIZE];
	int fd = open(t_src.disks[0].cfg.path, O_WRONLY);

	assert_true(fd >= 0);
	memset(p, v, len);
	assert_int_equal(pwrite(fd, p, len, (off_t)off), (ssize_t)len);
	close(fd);
	block_dirty_mark(&t_src.disks[0].dirty, off, len);
}

static void t_read_image(const char *path, uint8_t *buf)
{
	int fd = open(path, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, buf, T_SIZE, 0), (ssize_t)T_SIZE);
	close(fd);
}

static int t_setup(void **state)
{
	snprintf(t_dir, sizeof(t_dir), "/tmp/ferry-repldisk.XXXXXX");
	assert_non_null(mkdtemp(t_dir));
	return 0;
}

static int t_teardown(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t_dir);
	return system(cmd);
}

/* The standby's image, written through its own descriptor at a commit. */
static int t_disk_apply(void *opaque, unsigned disk, uint64_t off, uint32_t len,
			const uint8_t *data)
{
	int fd = *(int *)opaque;

	assert_int_equal(disk, 0);
	return data ? mig_block_write(fd, data, len, off) : mig_block_zero(fd, off, len);
}

static int t_ram_apply(void *opaque, uint64_t gpa, const uint8_t *data)
{
	return 0;
}

/* The primary's side of one test: the block source on t_mig, writing to uri. */
static void t_primary_open(const char *uri, bool ranges)
{
	const struct mig_source_ops *o = mig_source_get(MIG_SOURCE_BLOCK);
	struct mig_channel *ch;
	char why[256];

	memset(&t_mig, 0, sizeof(t_mig));
	pthread_mutex_init(&t_mig.lock, NULL);
	t_mig.m = &t_src;
	t_mig.p.copy_storage = true;
	t_mig.p.replicate = true;
	/* What READY agreed (MIG_CAP_EPOCH_RANGES). */
	t_mig.epoch_ranges = ranges;
	assert_int_equal(mig_channel_open(uri, NULL, 1000, &ch, why, sizeof(why)), 0);
	assert_int_equal(mig_stream_init(&t_mig.s, ch, 1 << 20), 0);
	assert_true(o->active(&t_mig));
	assert_int_equal(o->setup(&t_mig), 0);
	assert_true(o->sync(&t_mig) >= 0);
	/* The initial checkpoint: the rest and DONE. */
	assert_int_equal(o->complete(&t_mig, false), 0);
}

/* One epoch's disk records, as replicate.c collects them with the guest paused. */
static void t_primary_epoch(struct mig_repl_disk_sum *sum)
{
	/* Paused: sync takes the bits, collect reads the ranges. */
	assert_true(mig_source_get(MIG_SOURCE_BLOCK)->sync(&t_mig) >= 0);
	assert_int_equal(mig_repl_disk_collect(&t_mig, sum), 0);
}

static void t_primary_close(void)
{
	assert_int_equal(mig_stream_flush(&t_mig.s), 0);
	assert_int_equal(mig_stream_finish(&t_mig.s), 0);
	mig_source_get(MIG_SOURCE_BLOCK)->cleanup(&t_mig);
	mig_stream_destroy(&t_mig.s);
}

/*
 * The primary: the initial copy, two epochs' worth of disk records into
 * the stream at uri; with ranges, each run of written 4 KiB ranges goes
 * as one record, without, each chunk written into goes whole.
 */
static void t_primary(const char *uri, bool ranges, uint8_t *at_checkpoint, uint64_t *recs)
{
	struct mig_repl_disk_sum sum;

	t_primary_open(uri, ranges);
	/* Epoch 1: data over a hole, zeros over data, a sector of the last chunk. */
	t_guest_write(T_CHUNK, T_CHUNK, 0x11);
	t_guest_write(3 * T_CHUNK, T_CHUNK, 0);
	t_guest_write(T_SIZE - 512, 512, 0x22);
	t_primary_epoch(&sum);
	recs[0] = sum.recs;
	assert_int_equal(sum.recs, 3);
	/* The sector goes as its 4 KiB range, or as its whole chunk. */
	assert_int_equal(sum.bytes, 2 * T_CHUNK + (ranges ? 4096 : T_CHUNK));
	assert_int_equal(sum.chunk_bytes, 3 * T_CHUNK);
	t_read_image(t_src.disks[0].cfg.path, at_checkpoint);
	/* After the checkpoint: this one belongs to the next epoch. */
	t_guest_write(5 * T_CHUNK + 8192, 100, 0x33);
	/* Epoch 2, nothing written since that: one record; then none at all. */
	t_primary_epoch(&sum);
	recs[1] = sum.recs;
	assert_int_equal(sum.recs, 1);
	assert_int_equal(sum.bytes, ranges ? 4096 : T_CHUNK);
	t_primary_epoch(&sum);
	recs[2] = sum.recs;
	assert_int_equal(sum.recs, 0);
	assert_int_equal(sum.bytes, 0);
	assert_int_equal(sum.chunk_bytes, 0);
	t_primary_close();
}

/*
 * The standby's side: read the stream at uri, the initial copy through
 * the block loader, the EPOCH_DISK records into an epoch buffer that
 * takes ranges or whole chunks only (what it answered in READY);
 * p_ranges: what the primary was told.
 * Epoch 1 ends after recs[0] records (the stream has no EPOCH sections
 * here); the image is then compared with `want`.  Returns 0, or the first
 * refusal (-EPROTO, its reason in why): the epoch is dropped then.
 */
static int t_standby(const char *uri, bool ranges, bool p_ranges, const uint64_t *recs,
		     const uint8_t *want, char *why, size_t whylen)
{
	const struct mig_source_ops *o = mig_source_get(MIG_SOURCE_BLOCK);
	static uint8_t got[T_SIZE], before[T_SIZE];
	struct mig_incoming inc;
	memset(&inc, 0, sizeof(inc));
	struct mig_in_ctx c = { .inc = &inc, .m = &t_dst };
	struct mig_listener l;
	struct mig_channel *ch;
	struct mig_stream s;
	uint8_t *buf = malloc(MIG_SECTION_MAX), type;
	uint32_t len;
	int ret = 0;

	assert_non_null(buf);
	assert_int_equal(mig_channel_listen(uri, NULL, &l, why, whylen), 0);
	assert_int_equal(mig_channel_accept(&l, 0, -1, &ch), 0);
	mig_listener_close(&l);
	assert_int_equal(mig_stream_init(&s, ch, 1 << 20), 0);
	struct mig_epoch e;
	uint64_t size = T_SIZE, epoch = 0, in_epoch = 0;
	int fd = open(t_dst.disks[0].cfg.path, O_RDWR);
	assert_true(fd >= 0);
	mig_epoch_init(&e, 16);
	assert_int_equal(mig_epoch_set_disks(&e, 1, &size, ranges, t_disk_apply, &fd), 0);
	uint8_t st = 1;
	while (!mig_section_read(&s, buf, MIG_SECTION_MAX, &type, &len)) {
		if (type == MIG_SEC_SOURCE) {
			assert_int_equal(epoch, 0);
			assert_int_equal(le_get(buf, 4), MIG_SOURCE_BLOCK);
			struct mig_payload in;
			mig_payload_whole(&in, buf + 4, len - 4);
			if (o->load(&c, MIG_SEC_SOURCE, &in))
				fail_msg("load: %s", inc.why);
			continue;
		}
		assert_int_equal(type, MIG_SEC_EPOCH_DISK);
		if (!epoch) {
			/* The initial copy is whole: the standby's image is the primary's then. */
			assert_int_equal(o->loaded(&c), 0);
			o->unload(&inc);
			t_read_image(t_dst.disks[0].cfg.path, before);
			assert_int_equal(mig_epoch_begin(&e, ++epoch, why, whylen), 0);
		}
		const uint8_t *data;
		unsigned disk;
		uint64_t off;
		uint32_t n;
		assert_int_equal(mig_epoch_disk_decode(buf, len, &disk, &off, &n, &data, why,
						       whylen), 0);
		/* A primary without ranges agreed sends every record as a whole chunk. */
		if (!p_ranges && (off % T_CHUNK || n != T_CHUNK))
			fail_msg("a standby without ranges got %u bytes at %llu", n,
				 (unsigned long long)off);
		ret = mig_epoch_add_disk(&e, disk, off, n, data, why, whylen);
		if (ret) {
			/* The standby stops reading: the epoch is dropped, the image is epoch 0's. */
			mig_epoch_discard(&e);
			t_read_image(t_dst.disks[0].cfg.path, got);
			assert_memory_equal(got, before, T_SIZE);
			break;
		}
		if (++in_epoch == recs[0]) {
			/* Nothing written before END. */
			t_read_image(t_dst.disks[0].cfg.path, got);
			assert_memory_equal(got, before, T_SIZE);
			assert_int_equal(mig_epoch_set_state(&e, &st, 1, why, whylen), 0);
			struct mig_epoch_end_rec end = { .seq = 1, .disk_recs = recs[0] };
			assert_int_equal(mig_epoch_end(&e, &end, 0, t_ram_apply, NULL, why, whylen),
					 0);
			/* The checkpoint's disk, not the write after it. */
			t_read_image(t_dst.disks[0].cfg.path, got);
			assert_memory_equal(got, want, T_SIZE);
			assert_int_equal(mig_epoch_begin(&e, ++epoch, why, whylen), 0);
		}
	}
	if (!ret) {
		/* Epoch 2's one record, never ended (the link broke): dropped, not written. */
		assert_int_equal(e.nd, recs[1]);
		mig_epoch_discard(&e);
		t_read_image(t_dst.disks[0].cfg.path, got);
		assert_memory_equal(got, want, T_SIZE);
	}
	mig_epoch_free(&e);
	close(fd);
	mig_stream_destroy(&s);
	free(buf);
	return ret;
}

/* A primary (ranges or not) to a standby (ranges or not); the standby's verdict. */
static int t_roundtrip(bool p_ranges, bool s_ranges, char *why, size_t whylen)
{
	static uint8_t want[T_SIZE];
	char path[128], uri[160];
	uint64_t recs[3];

	mig_block_expect();
	t_machine(&t_src, "src.img", -1);
	t_machine(&t_dst, "dst.img", 0xaa);	/* garbage: the copy must replace it */
	t_guest_write(0, T_CHUNK, 1);
	t_guest_write(3 * T_CHUNK, 4096, 2);
	t_path(path, sizeof(path), "stream");
	snprintf(uri, sizeof(uri), "file:%s", path);
	t_primary(uri, p_ranges, want, recs);
	int err = t_standby(uri, s_ranges, p_ranges, recs, want, why, whylen);
	block_dirty_destroy(&t_src.disks[0].dirty);
	block_dirty_destroy(&t_dst.disks[0].dirty);
	return err;
}

/* Both sides agreed to epoch disk ranges: 4 KiB ranges travel, the image is the checkpoint's. */
static void test_epoch_disk_roundtrip(void **state)
{
	char why[256];

	assert_int_equal(t_roundtrip(true, true, why, sizeof(why)), 0);
}

/* A standby that did not agree (an older one masks bit 29 off) gets whole chunks, as before. */
static void test_epoch_disk_roundtrip_chunks(void **state)
{
	char why[256];

	assert_int_equal(t_roundtrip(false, false, why, sizeof(why)), 0);
}

/* A primary that sends ranges to a standby that did not agree: refused, epoch 1 not applied. */
static void test_epoch_disk_ranges_unagreed(void **state)
{
	char why[256];

	assert_int_equal(t_roundtrip(true, false, why, sizeof(why)), -EPROTO);
	assert_non_null(strstr(why, "ranges were not agreed"));
}

/*
 * The measurement: N random 4 KiB writes in one epoch, the disk bytes
 * (and the bytes on the wire) it carries with ranges and as whole chunks,
 * from the same writes.
 */
static void test_epoch_disk_measure(void **state)
{
	enum { N = 20 };
	static uint8_t seen[T_SIZE / 4096];
	static uint8_t chunk_seen[T_SIZE / T_CHUNK];
	struct mig_repl_disk_sum sum[2];
	uint64_t wire[2], units = 0, chunks = 0, offs[N];
	char path[128], uri[160];
	uint32_t x = 12345;

	for (unsigned k = 0; k < N; k++) {
		x = x * 1103515245u + 12345u;
		offs[k] = (uint64_t)((x >> 8) % (T_SIZE / 4096)) * 4096;
		units += !seen[offs[k] / 4096]++;
		chunks += !chunk_seen[offs[k] / T_CHUNK]++;
	}
	mig_block_expect();
	t_machine(&t_src, "src.img", -1);
	t_path(path, sizeof(path), "measure");
	snprintf(uri, sizeof(uri), "file:%s", path);
	t_primary_open(uri, true);
	/* The same writes twice: one epoch with ranges, one as whole chunks. */
	for (int mode = 0; mode < 2; mode++) {
		t_mig.epoch_ranges = mode == 0;
		for (unsigned k = 0; k < N; k++)
			t_guest_write(offs[k], 4096, (uint8_t)(k + 1 + mode));
		assert_int_equal(mig_stream_flush(&t_mig.s), 0);
		uint64_t b0 = t_mig.s.bytes_out;
		t_primary_epoch(&sum[mode]);
		assert_int_equal(mig_stream_flush(&t_mig.s), 0);
		wire[mode] = t_mig.s.bytes_out - b0;
	}
	t_primary_close();
	block_dirty_destroy(&t_src.disks[0].dirty);
	print_message("%d random 4 KiB writes to a %llu KiB disk (%llu ranges, %llu chunks): "
		      "ranges %llu records, %llu KiB of disk data, %llu KiB on the wire; whole "
		      "chunks %llu records, %llu KiB, %llu KiB on the wire\n", N,
		      (unsigned long long)(T_SIZE >> 10), (unsigned long long)units,
		      (unsigned long long)chunks, (unsigned long long)sum[0].recs,
		      (unsigned long long)(sum[0].bytes >> 10), (unsigned long long)(wire[0] >> 10),
		      (unsigned long long)sum[1].recs, (unsigned long long)(sum[1].bytes >> 10),
		      (unsigned long long)(wire[1] >> 10));
	/* Exactly the ranges written, against exactly the chunks around them. */
	assert_int_equal(sum[0].bytes, units * 4096);
	assert_int_equal(sum[1].bytes, chunks * T_CHUNK);
	assert_int_equal(sum[1].recs, chunks);
	assert_true(sum[0].recs >= chunks && sum[0].recs <= units);
	assert_int_equal(sum[0].chunk_bytes, sum[1].bytes);
	assert_int_equal(sum[1].chunk_bytes, sum[1].bytes);
	/* On the wire: the data and a header and checksum per record. */
	assert_true(wire[0] >= sum[0].bytes && wire[0] < sum[0].bytes + sum[0].recs * 64);
	assert_true(wire[1] >= sum[1].bytes && wire[1] < sum[1].bytes + sum[1].recs * 64);
	assert_true(wire[0] * 8 < wire[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_epoch_disk_roundtrip),
		cmocka_unit_test(test_epoch_disk_roundtrip_chunks),
		cmocka_unit_test(test_epoch_disk_ranges_unagreed),
		cmocka_unit_test(test_epoch_disk_measure),
	};

	return cmocka_run_group_tests(tests, t_setup, t_teardown);
}
