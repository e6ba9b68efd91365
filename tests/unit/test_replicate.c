/*
 * Continuous checkpointing's pure logic: the standby applies an epoch only
 * when it came whole, and the failover / fence decisions, fed timestamps.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "migration/channel/channel.h"
#include "migration/format.h"
#include "migration/replicate/epoch.h"
#include "migration/section.h"
#include "migration/stream.h"

#define MS 1000000ULL
#define SEC 1000000000ULL
#define PAGES 16

/* A fake guest RAM of PAGES pages, and how many writes reached it. */
struct ram {
	uint8_t b[PAGES * MIG_EPOCH_PAGE];
	unsigned writes;
	int fail_at;		/* -1: never */
};

static int ram_apply(void *opaque, uint64_t gpa, const uint8_t *data)
{
	struct ram *r = opaque;

	if (gpa / MIG_EPOCH_PAGE >= PAGES)
		return -ERANGE;
	if (r->fail_at >= 0 && (int)r->writes == r->fail_at)
		return -EIO;
	r->writes++;
	if (data)
		memcpy(r->b + gpa, data, MIG_EPOCH_PAGE);
	else
		memset(r->b + gpa, 0, MIG_EPOCH_PAGE);
	return 0;
}


static const uint8_t *fill(uint8_t *p, uint8_t v)
{
	memset(p, v, MIG_EPOCH_PAGE);
	return p;
}

/* EPOCH_END without disk records (a primary without disks). */
static int epoch_end(struct mig_epoch *e, uint64_t seq, uint64_t pages, uint64_t chain,
		     uint64_t chain_here, mig_epoch_apply_fn *apply, void *opaque, char *why,
		     size_t whylen)
{
	struct mig_epoch_end_rec end = { .seq = seq, .pages = pages, .chain = chain };

	return mig_epoch_end(e, &end, chain_here, apply, opaque, why, whylen);
}

static void open_epoch(struct mig_epoch *e, uint64_t seq)
{
	char why[128];

	assert_int_equal(mig_epoch_begin(e, seq, why, sizeof(why)), 0);
}

static void test_whole_epoch_commits(void **state)
{
	struct mig_epoch e;
	struct ram r = { .fail_at = -1 };
	uint8_t p[MIG_EPOCH_PAGE], st[3] = { 1, 2, 3 };
	char why[160];

	memset(r.b, 0x55, sizeof(r.b));
	mig_epoch_init(&e, PAGES);
	open_epoch(&e, 1);
	assert_int_equal(mig_epoch_add(&e, 2 * MIG_EPOCH_PAGE, fill(p, 0xaa), why, sizeof(why)), 0);
	assert_int_equal(mig_epoch_add(&e, 5 * MIG_EPOCH_PAGE, NULL, why, sizeof(why)), 0);
	assert_int_equal(mig_epoch_set_state(&e, st, sizeof(st), why, sizeof(why)), 0);
	/* Nothing reaches RAM before the end. */
	assert_int_equal(r.writes, 0);
	assert_int_equal(r.b[2 * MIG_EPOCH_PAGE], 0x55);
	assert_int_equal(epoch_end(&e, 1, 2, 77, 77, ram_apply, &r, why, sizeof(why)), 0);
	assert_int_equal(r.writes, 2);
	assert_int_equal(r.b[2 * MIG_EPOCH_PAGE + 100], 0xaa);
	assert_int_equal(r.b[5 * MIG_EPOCH_PAGE + 7], 0);
	assert_int_equal(r.b[0], 0x55);
	assert_int_equal(e.committed, 1);
	assert_false(e.open);
	assert_int_equal(e.committed_state_len, 3);
	assert_memory_equal(e.committed_state, st, 3);
	mig_epoch_free(&e);
}

/* Later pages of the same address win: they are applied in arrival order. */
static void test_order_kept(void **state)
{
	struct mig_epoch e;
	struct ram r = { .fail_at = -1 };
	uint8_t p[MIG_EPOCH_PAGE], st = 9;
	char why[160];

	mig_epoch_init(&e, PAGES);
	open_epoch(&e, 1);
	assert_int_equal(mig_epoch_add(&e, 0, fill(p, 1), why, sizeof(why)), 0);
	assert_int_equal(mig_epoch_add(&e, 0, fill(p, 2), why, sizeof(why)), 0);
	assert_int_equal(mig_epoch_set_state(&e, &st, 1, why, sizeof(why)), 0);
	assert_int_equal(epoch_end(&e, 1, 2, 5, 5, ram_apply, &r, why, sizeof(why)), 0);
	assert_int_equal(r.b[0], 2);
	mig_epoch_free(&e);
}

/* Every way an epoch can be incomplete drops it whole: RAM untouched, committed unchanged. */
static void test_broken_epochs_dropped(void **state)
{
	static const struct {
		uint64_t seq, pages, chain;
		bool state;
		const char *want;
	} cases[] = {
		{ 2, 1, 7, true, "ends epoch" },		/* another epoch's END */
		{ 1, 2, 7, true, "counts 2 pages" },		/* a page went missing */
		{ 1, 1, 7, false, "no STATE" },
		{ 1, 1, 8, true, "section chain" },		/* a section lost or changed */
	};
	uint8_t p[MIG_EPOCH_PAGE], st = 1;
	char why[160];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct mig_epoch e;
		struct ram r = { .fail_at = -1 };
		mig_epoch_init(&e, PAGES);
		open_epoch(&e, 1);
		assert_int_equal(mig_epoch_add(&e, 0, fill(p, 3), why, sizeof(why)), 0);
		if (cases[i].state)
			assert_int_equal(mig_epoch_set_state(&e, &st, 1, why, sizeof(why)), 0);
		assert_int_equal(epoch_end(&e, cases[i].seq, cases[i].pages, cases[i].chain, 7,
					       ram_apply, &r, why, sizeof(why)), -EPROTO);
		assert_non_null(strstr(why, cases[i].want));
		assert_int_equal(r.writes, 0);
		assert_int_equal(e.committed, 0);
		assert_false(e.open);
		assert_null(e.committed_state);
		/* The same epoch may come again (a new connection would start over). */
		open_epoch(&e, 1);
		mig_epoch_free(&e);
	}
}

static void test_sequence_rules(void **state)
{
	struct mig_epoch e;
	struct ram r = { .fail_at = -1 };
	uint8_t p[MIG_EPOCH_PAGE], st = 1;
	char why[160];

	mig_epoch_init(&e, 2);
	/* Not 1 after 0; a page, a STATE or an END outside an epoch. */
	assert_int_equal(mig_epoch_begin(&e, 2, why, sizeof(why)), -EPROTO);
	assert_int_equal(mig_epoch_add(&e, 0, fill(p, 1), why, sizeof(why)), -EPROTO);
	assert_int_equal(mig_epoch_set_state(&e, &st, 1, why, sizeof(why)), -EPROTO);
	assert_int_equal(epoch_end(&e, 1, 0, 0, 0, ram_apply, &r, why, sizeof(why)), -EPROTO);
	open_epoch(&e, 1);
	/* No second EPOCH inside one, no unaligned page, no more pages than the guest has. */
	assert_int_equal(mig_epoch_begin(&e, 2, why, sizeof(why)), -EPROTO);
	assert_int_equal(mig_epoch_add(&e, 100, fill(p, 1), why, sizeof(why)), -EPROTO);
	assert_int_equal(mig_epoch_add(&e, 0, fill(p, 1), why, sizeof(why)), 0);
	assert_int_equal(mig_epoch_add(&e, 0, fill(p, 1), why, sizeof(why)), 0);
	assert_int_equal(mig_epoch_add(&e, 0, fill(p, 1), why, sizeof(why)), -EPROTO);
	assert_non_null(strstr(why, "more than 2 pages"));
	assert_int_equal(mig_epoch_set_state(&e, &st, 1, why, sizeof(why)), 0);
	assert_int_equal(mig_epoch_set_state(&e, &st, 1, why, sizeof(why)), -EPROTO);
	mig_epoch_discard(&e);
	/* Epoch 1 was dropped, not committed: 1 again, then 2. */
	open_epoch(&e, 1);
	assert_int_equal(mig_epoch_set_state(&e, &st, 1, why, sizeof(why)), 0);
	assert_int_equal(epoch_end(&e, 1, 0, 3, 3, ram_apply, &r, why, sizeof(why)), 0);
	assert_int_equal(mig_epoch_begin(&e, 1, why, sizeof(why)), -EPROTO);
	open_epoch(&e, 2);
	mig_epoch_free(&e);
}

static void test_apply_failure_reported(void **state)
{
	struct mig_epoch e;
	struct ram r = { .fail_at = 1 };
	uint8_t p[MIG_EPOCH_PAGE], st = 1;
	char why[160];

	mig_epoch_init(&e, PAGES);
	open_epoch(&e, 1);
	assert_int_equal(mig_epoch_add(&e, 0, fill(p, 1), why, sizeof(why)), 0);
	assert_int_equal(mig_epoch_add(&e, MIG_EPOCH_PAGE, fill(p, 1), why, sizeof(why)), 0);
	assert_int_equal(mig_epoch_set_state(&e, &st, 1, why, sizeof(why)), 0);
	assert_int_equal(epoch_end(&e, 1, 2, 0, 0, ram_apply, &r, why, sizeof(why)), -EIO);
	assert_int_equal(e.committed, 0);
	/* RAM is half-written: no further epoch can make it a checkpoint again. */
	assert_true(e.torn);
	assert_int_equal(mig_epoch_begin(&e, 1, why, sizeof(why)), -EPROTO);
	mig_epoch_free(&e);
}

/* Disks: two fake images, the second ending in a partial chunk. */
#define CHUNK MIG_EPOCH_DISK_CHUNK
#define D0_SIZE (4ULL * CHUNK)
#define D1_SIZE (2ULL * CHUNK + 100)

struct disks {
	uint8_t img[2][4 * CHUNK];
	unsigned writes;
	int fail_at;		/* -1: never */
};

static int disk_apply(void *opaque, unsigned disk, uint64_t off, uint32_t len, const uint8_t *data)
{
	struct disks *d = opaque;

	assert_true(disk < 2);
	assert_true(off + len <= (disk ? D1_SIZE : D0_SIZE));
	if (d->fail_at >= 0 && (int)d->writes == d->fail_at)
		return -EIO;
	d->writes++;
	if (data)
		memcpy(d->img[disk] + off, data, len);
	else
		memset(d->img[disk] + off, 0, len);
	return 0;
}

/* ranges: the standby agreed to MIG_CAP_EPOCH_RANGES (4 KiB records), else whole chunks. */
static void disks_epoch_init_as(struct mig_epoch *e, struct disks *d, bool ranges)
{
	static const uint64_t sizes[2] = { D0_SIZE, D1_SIZE };

	mig_epoch_init(e, PAGES);
	memset(d->img, 0x11, sizeof(d->img));
	d->writes = 0;
	d->fail_at = -1;
	assert_int_equal(mig_epoch_set_disks(e, 2, sizes, ranges, disk_apply, d), 0);
}

static void disks_epoch_init(struct mig_epoch *e, struct disks *d)
{
	disks_epoch_init_as(e, d, false);
}

static int end_disks(struct mig_epoch *e, uint64_t seq, uint64_t pages, uint64_t recs,
		     uint64_t chain, uint64_t here, struct ram *r, char *why)
{
	struct mig_epoch_end_rec end = { .seq = seq, .pages = pages, .disk_recs = recs,
					 .chain = chain };

	return mig_epoch_end(e, &end, here, ram_apply, r, why, 160);
}

static bool all_bytes(const uint8_t *p, size_t len, uint8_t v)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != v)
			return false;
	return true;
}

/* Disk blocks reach the images with the RAM, at EPOCH_END, not before. */
static void test_disk_commits_with_ram(void **state)
{
	static struct disks d;
	static uint8_t blk[CHUNK];
	struct mig_epoch e;
	struct ram r = { .fail_at = -1 };
	uint8_t p[MIG_EPOCH_PAGE], st = 9;
	char why[160];

	disks_epoch_init(&e, &d);
	open_epoch(&e, 1);
	assert_int_equal(mig_epoch_add(&e, 0, fill(p, 0xaa), why, sizeof(why)), 0);
	memset(blk, 0x5a, sizeof(blk));
	assert_int_equal(mig_epoch_add_disk(&e, 0, CHUNK, CHUNK, blk, why, sizeof(why)), 0);
	/* The second disk's last, partial chunk, then a range of zeros. */
	memset(blk, 0x77, 100);
	assert_int_equal(mig_epoch_add_disk(&e, 1, 2 * CHUNK, 100, blk, why, sizeof(why)), 0);
	assert_int_equal(mig_epoch_add_disk(&e, 1, 0, CHUNK, NULL, why, sizeof(why)), 0);
	assert_int_equal(e.disk_bytes, 2 * CHUNK + 100);
	assert_int_equal(mig_epoch_set_state(&e, &st, 1, why, sizeof(why)), 0);
	/* Nothing on the disks while the epoch is open. */
	assert_int_equal(d.writes, 0);
	assert_true(all_bytes(d.img[0], sizeof(d.img[0]), 0x11));
	assert_int_equal(end_disks(&e, 1, 1, 3, 4, 4, &r, why), 0);
	assert_int_equal(r.writes, 1);
	assert_int_equal(d.writes, 3);
	assert_true(all_bytes(d.img[0], CHUNK, 0x11));
	assert_true(all_bytes(d.img[0] + CHUNK, CHUNK, 0x5a));
	assert_true(all_bytes(d.img[0] + 2 * CHUNK, 2 * CHUNK, 0x11));
	assert_true(all_bytes(d.img[1], CHUNK, 0));
	assert_true(all_bytes(d.img[1] + CHUNK, CHUNK, 0x11));
	assert_true(all_bytes(d.img[1] + 2 * CHUNK, 100, 0x77));
	assert_int_equal(e.committed, 1);
	/*
	 * The next epoch starts with no records and may write the chunks of
	 * the last one again; the same chunk twice in one epoch is refused.
	 */
	open_epoch(&e, 2);
	assert_int_equal(e.nd, 0);
	memset(blk, 1, sizeof(blk));
	assert_int_equal(mig_epoch_add_disk(&e, 0, CHUNK, CHUNK, blk, why, sizeof(why)), 0);
	memset(blk, 2, sizeof(blk));
	assert_int_equal(mig_epoch_add_disk(&e, 0, CHUNK, CHUNK, blk, why, sizeof(why)), -EPROTO);
	assert_non_null(strstr(why, "overlap"));
	assert_int_equal(e.nd, 1);
	assert_int_equal(mig_epoch_set_state(&e, &st, 1, why, sizeof(why)), 0);
	assert_int_equal(end_disks(&e, 2, 0, 1, 1, 1, &r, why), 0);
	assert_true(all_bytes(d.img[0] + CHUNK, CHUNK, 1));
	mig_epoch_free(&e);
}

/* An epoch whose disk records do not add up is dropped whole: no disk write, no RAM write. */
static void test_disk_broken_epochs_dropped(void **state)
{
	static const struct {
		uint64_t recs, chain;
		const char *want;
	} cases[] = {
		{ 2, 7, "counts 2 disk records, 1 came" },	/* a record went missing */
		{ 0, 7, "counts 0 disk records" },		/* an extra record slipped in */
		{ 1, 8, "section chain" },			/* a record changed */
	};
	static struct disks d;
	static uint8_t blk[CHUNK];
	uint8_t p[MIG_EPOCH_PAGE], st = 1;
	char why[160];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct mig_epoch e;
		struct ram r = { .fail_at = -1 };
		disks_epoch_init(&e, &d);
		open_epoch(&e, 1);
		assert_int_equal(mig_epoch_add(&e, 0, fill(p, 3), why, sizeof(why)), 0);
		memset(blk, 0x42, sizeof(blk));
		assert_int_equal(mig_epoch_add_disk(&e, 0, 0, CHUNK, blk, why, sizeof(why)), 0);
		assert_int_equal(mig_epoch_set_state(&e, &st, 1, why, sizeof(why)), 0);
		assert_int_equal(end_disks(&e, 1, 1, cases[i].recs, cases[i].chain, 7, &r, why),
				 -EPROTO);
		assert_non_null(strstr(why, cases[i].want));
		assert_int_equal(r.writes, 0);
		assert_int_equal(d.writes, 0);
		assert_true(all_bytes(d.img[0], sizeof(d.img[0]), 0x11));
		assert_int_equal(e.committed, 0);
		/* A discarded epoch leaves no record behind for the next try. */
		open_epoch(&e, 1);
		assert_int_equal(e.nd, 0);
		assert_int_equal(e.disk_bytes, 0);
		mig_epoch_free(&e);
	}
}

/* The primary's records are hostile: every bad range, index and shape refused. */
static void test_disk_hostile_records(void **state)
{
	static struct disks d;
	static uint8_t blk[CHUNK + 1];
	struct mig_epoch e;
	char why[160];

	/* A standby without disks takes no disk record. */
	mig_epoch_init(&e, PAGES);
	open_epoch(&e, 1);
	assert_int_equal(mig_epoch_add_disk(&e, 0, 0, 512, blk, why, sizeof(why)), -EPROTO);
	assert_non_null(strstr(why, "replicates 0 disk"));
	mig_epoch_free(&e);

	disks_epoch_init(&e, &d);
	/* Outside an epoch. */
	assert_int_equal(mig_epoch_add_disk(&e, 0, 0, 512, blk, why, sizeof(why)), -EPROTO);
	open_epoch(&e, 1);
	/* An unknown disk, also past MIG_EPOCH_DISKS_MAX. */
	assert_int_equal(mig_epoch_add_disk(&e, 2, 0, 512, blk, why, sizeof(why)), -EPROTO);
	assert_non_null(strstr(why, "disk 2"));
	assert_int_equal(mig_epoch_add_disk(&e, 255, 0, 512, blk, why, sizeof(why)), -EPROTO);
	/* Lengths: none, more than a chunk. */
	assert_int_equal(mig_epoch_add_disk(&e, 0, 0, 0, blk, why, sizeof(why)), -EPROTO);
	assert_int_equal(mig_epoch_add_disk(&e, 0, 0, CHUNK + 1, blk, why, sizeof(why)), -EPROTO);
	/* Offsets: not chunk-aligned, past the end, a range over the end, a wrap. */
	assert_int_equal(mig_epoch_add_disk(&e, 0, 512, 512, blk, why, sizeof(why)), -EPROTO);
	assert_int_equal(mig_epoch_add_disk(&e, 0, D0_SIZE, 512, blk, why, sizeof(why)), -EPROTO);
	assert_non_null(strstr(why, "past its end"));
	assert_int_equal(mig_epoch_add_disk(&e, 1, 2 * CHUNK, 101, blk, why, sizeof(why)), -EPROTO);
	assert_int_equal(mig_epoch_add_disk(&e, 1, 2 * CHUNK, 101, NULL, why, sizeof(why)), -EPROTO);
	assert_int_equal(mig_epoch_add_disk(&e, 0, UINT64_MAX - CHUNK + 1, CHUNK, blk, why,
					    sizeof(why)), -EPROTO);
	/* Ranges were not agreed: whole chunks only, no 4 KiB range. */
	assert_int_equal(mig_epoch_add_disk(&e, 0, 4096, 4096, blk, why, sizeof(why)), -EPROTO);
	assert_non_null(strstr(why, "ranges were not agreed"));
	assert_int_equal(mig_epoch_add_disk(&e, 0, CHUNK, 4096, blk, why, sizeof(why)), -EPROTO);
	assert_non_null(strstr(why, "not a multiple of 65536"));
	assert_int_equal(e.nd, 0);
	/* Every chunk of both disks once (4 + 3); then any record overlaps one. */
	for (unsigned i = 0; i < 4; i++)
		assert_int_equal(mig_epoch_add_disk(&e, 0, i * CHUNK, CHUNK, NULL, why, sizeof(why)),
				 0);
	assert_int_equal(mig_epoch_add_disk(&e, 1, 0, CHUNK, NULL, why, sizeof(why)), 0);
	assert_int_equal(mig_epoch_add_disk(&e, 1, CHUNK, CHUNK, NULL, why, sizeof(why)), 0);
	assert_int_equal(mig_epoch_add_disk(&e, 1, 2 * CHUNK, 100, NULL, why, sizeof(why)), 0);
	assert_int_equal(mig_epoch_add_disk(&e, 0, 0, CHUNK, NULL, why, sizeof(why)), -EPROTO);
	assert_non_null(strstr(why, "overlap"));
	assert_int_equal(mig_epoch_add_disk(&e, 1, 2 * CHUNK, 100, blk, why, sizeof(why)), -EPROTO);
	assert_int_equal(e.nd, 7);
	mig_epoch_free(&e);

	/* Bad geometry from the caller. */
	uint64_t sizes[MIG_EPOCH_DISKS_MAX + 1] = { 0 };
	mig_epoch_init(&e, PAGES);
	assert_int_equal(mig_epoch_set_disks(&e, 1, sizes, false, disk_apply, &d), -EINVAL);
	assert_int_equal(mig_epoch_set_disks(&e, MIG_EPOCH_DISKS_MAX + 1, sizes, true, disk_apply, &d),
			 -EINVAL);
	mig_epoch_free(&e);
}

/* A refused record: the epoch stays as it was (count, bytes), nothing reaches a disk. */
static void refuse(struct mig_epoch *e, unsigned disk, uint64_t off, uint32_t len,
		   const uint8_t *data, const char *want)
{
	uint64_t nd = e->nd, bytes = e->disk_bytes;
	char why[160];

	assert_int_equal(mig_epoch_add_disk(e, disk, off, len, data, why, sizeof(why)), -EPROTO);
	if (!strstr(why, want))
		fail_msg("%u bytes at %llu: '%s', wanted '%s'", len, (unsigned long long)off, why,
			 want);
	assert_int_equal(e->nd, nd);
	assert_int_equal(e->disk_bytes, bytes);
}

/*
 * Ranges agreed (MIG_CAP_EPOCH_RANGES): records of 4 KiB ranges inside a
 * chunk are taken and committed with the epoch; every other shape, and
 * anything overlapping an earlier record of the epoch, is refused.
 */
static void test_disk_ranges(void **state)
{
	static struct disks d;
	static uint8_t blk[CHUNK + 4096];
	struct mig_epoch e;
	struct ram r = { .fail_at = -1 };
	uint8_t st = 1;
	char why[160];

	disks_epoch_init_as(&e, &d, true);
	open_epoch(&e, 1);
	memset(blk, 0x33, sizeof(blk));
	/* Two adjacent ranges, a run of three, a whole chunk, the short tail, zeros. */
	assert_int_equal(mig_epoch_add_disk(&e, 0, CHUNK + 8192, 4096, blk, why, sizeof(why)), 0);
	assert_int_equal(mig_epoch_add_disk(&e, 0, CHUNK + 4096, 4096, blk, why, sizeof(why)), 0);
	assert_int_equal(mig_epoch_add_disk(&e, 0, 2 * CHUNK + 40960, 3 * 4096, blk, why,
					    sizeof(why)), 0);
	assert_int_equal(mig_epoch_add_disk(&e, 0, 3 * CHUNK, CHUNK, blk, why, sizeof(why)), 0);
	assert_int_equal(mig_epoch_add_disk(&e, 1, 2 * CHUNK, 100, blk, why, sizeof(why)), 0);
	assert_int_equal(mig_epoch_add_disk(&e, 1, 61440, 4096, NULL, why, sizeof(why)), 0);
	assert_int_equal(e.nd, 6);
	assert_int_equal(e.disk_bytes, 2 * 4096 + 3 * 4096 + CHUNK + 100 + 4096);

	/* Misaligned offsets and lengths. */
	refuse(&e, 0, 512, 4096, blk, "not a multiple of 4096");
	refuse(&e, 0, 4095, 4096, blk, "not a multiple of 4096");
	refuse(&e, 0, 0, 4000, blk, "not a multiple of 4096 and not up to the disk's end");
	refuse(&e, 0, 0, 4097, NULL, "not a multiple of 4096");
	refuse(&e, 1, CHUNK + 4096, 100, blk, "not up to the disk's end");
	/* Empty; longer than a chunk; across a chunk boundary. */
	refuse(&e, 0, 0, 0, blk, "an empty record");
	refuse(&e, 0, 0, 0, NULL, "an empty record");
	refuse(&e, 0, 0, CHUNK + 4096, blk, "longer than a chunk");
	refuse(&e, 0, CHUNK - 4096, 8192, blk, "cross a chunk boundary");
	refuse(&e, 0, 4096, CHUNK, NULL, "cross a chunk boundary");
	/* Past the end: at it, over it, the short tail's chunk, a wrap. */
	refuse(&e, 0, D0_SIZE, 4096, blk, "past its end");
	refuse(&e, 1, 2 * CHUNK, 4096, blk, "past its end");
	refuse(&e, 1, 2 * CHUNK + 4096, 4096, NULL, "past its end");
	refuse(&e, 0, UINT64_MAX - 4095, 4096, blk, "past its end");
	/* Another disk; outside the disks this standby has. */
	refuse(&e, 2, 0, 4096, blk, "replicates 2 disk");
	/* Overlaps: the same range, a part of a run, a chunk over ranges, zeros over data. */
	refuse(&e, 0, CHUNK + 8192, 4096, blk, "overlap");
	refuse(&e, 0, CHUNK, 8192, blk, "overlap");
	refuse(&e, 0, 2 * CHUNK + 45056, 4096, NULL, "overlap");
	refuse(&e, 0, CHUNK, CHUNK, NULL, "overlap");
	refuse(&e, 0, 3 * CHUNK + 32768, 4096, blk, "overlap");
	refuse(&e, 1, 2 * CHUNK, 100, NULL, "overlap");
	refuse(&e, 1, 57344, 8192, blk, "overlap");
	/* A neighbour of each is not an overlap. */
	assert_int_equal(mig_epoch_add_disk(&e, 0, CHUNK, 4096, NULL, why, sizeof(why)), 0);
	assert_int_equal(mig_epoch_add_disk(&e, 1, 57344, 4096, blk, why, sizeof(why)), 0);
	assert_int_equal(d.writes, 0);

	/* What was taken commits, in order; the rest of the images is as it was. */
	assert_int_equal(mig_epoch_set_state(&e, &st, 1, why, sizeof(why)), 0);
	assert_int_equal(end_disks(&e, 1, 0, 8, 5, 5, &r, why), 0);
	assert_int_equal(d.writes, 8);
	assert_true(all_bytes(d.img[0], CHUNK, 0x11));
	assert_true(all_bytes(d.img[0] + CHUNK, 4096, 0));
	assert_true(all_bytes(d.img[0] + CHUNK + 4096, 8192, 0x33));
	assert_true(all_bytes(d.img[0] + CHUNK + 12288, CHUNK - 12288 + 40960, 0x11));
	assert_true(all_bytes(d.img[0] + 2 * CHUNK + 40960, 12288, 0x33));
	assert_true(all_bytes(d.img[0] + 2 * CHUNK + 53248, CHUNK - 53248, 0x11));
	assert_true(all_bytes(d.img[0] + 3 * CHUNK, CHUNK, 0x33));
	assert_true(all_bytes(d.img[1], 57344, 0x11));
	assert_true(all_bytes(d.img[1] + 57344, 4096, 0x33));
	assert_true(all_bytes(d.img[1] + 61440, 4096, 0));
	assert_true(all_bytes(d.img[1] + CHUNK, CHUNK, 0x11));
	assert_true(all_bytes(d.img[1] + 2 * CHUNK, 100, 0x33));

	/* The next epoch may write the same ranges again. */
	open_epoch(&e, 2);
	assert_int_equal(mig_epoch_add_disk(&e, 0, CHUNK + 8192, 4096, NULL, why, sizeof(why)), 0);
	/* A broken epoch is dropped: nothing written, its ranges free for the next try. */
	assert_int_equal(mig_epoch_set_state(&e, &st, 1, why, sizeof(why)), 0);
	assert_int_equal(end_disks(&e, 2, 0, 2, 5, 5, &r, why), -EPROTO);
	assert_int_equal(d.writes, 8);
	assert_int_equal(e.committed, 1);
	open_epoch(&e, 2);
	assert_int_equal(mig_epoch_add_disk(&e, 0, CHUNK + 8192, 4096, NULL, why, sizeof(why)), 0);
	/* Every range of disk 1 once (16 + 16 + the tail): 33 records, then all overlap. */
	for (uint64_t off = 0; off < 2 * CHUNK; off += 4096)
		assert_int_equal(mig_epoch_add_disk(&e, 1, off, 4096, NULL, why, sizeof(why)), 0);
	assert_int_equal(mig_epoch_add_disk(&e, 1, 2 * CHUNK, 100, NULL, why, sizeof(why)), 0);
	assert_int_equal(e.nd, 34);
	refuse(&e, 1, 0, 4096, NULL, "overlap");
	/* A refusal (the standby stops reading) drops the epoch: epoch 1 stays committed. */
	mig_epoch_discard(&e);
	assert_int_equal(e.committed, 1);
	assert_int_equal(d.writes, 8);
	assert_true(all_bytes(d.img[1] + CHUNK, CHUNK, 0x11));
	mig_epoch_free(&e);
}

/* EPOCH_DISK payloads: the shape checked before any field is used. */
static void test_disk_decode(void **state)
{
	uint8_t p[MIG_EPOCH_DISK_HDR + 8] = { 0 };
	const uint8_t *data;
	unsigned disk;
	uint64_t off;
	uint32_t len;
	char why[160];

	/* disk 1, data, offset 0x10000, 8 bytes. */
	p[0] = 1;
	p[4] = 1;
	p[10] = 8;
	assert_int_equal(mig_epoch_disk_decode(p, sizeof(p), &disk, &off, &len, &data, why,
					       sizeof(why)), 0);
	assert_int_equal(disk, 1);
	assert_int_equal(off, 0x10000);
	assert_int_equal(len, 8);
	assert_ptr_equal(data, p + MIG_EPOCH_DISK_HDR);
	/* Fewer or more bytes than it says. */
	assert_int_equal(mig_epoch_disk_decode(p, sizeof(p) - 1, &disk, &off, &len, &data, why,
					       sizeof(why)), -EPROTO);
	p[10] = 9;
	assert_int_equal(mig_epoch_disk_decode(p, sizeof(p), &disk, &off, &len, &data, why,
					       sizeof(why)), -EPROTO);
	/* Zeros carry no bytes. */
	p[1] = MIG_EPOCH_DISK_ZERO;
	assert_int_equal(mig_epoch_disk_decode(p, sizeof(p), &disk, &off, &len, &data, why,
					       sizeof(why)), -EPROTO);
	assert_int_equal(mig_epoch_disk_decode(p, MIG_EPOCH_DISK_HDR, &disk, &off, &len, &data, why,
					       sizeof(why)), 0);
	assert_null(data);
	assert_int_equal(len, 9);
	/* Unknown flags; shorter than the header. */
	p[1] = 2;
	assert_int_equal(mig_epoch_disk_decode(p, MIG_EPOCH_DISK_HDR, &disk, &off, &len, &data, why,
					       sizeof(why)), -EPROTO);
	assert_int_equal(mig_epoch_disk_decode(p, MIG_EPOCH_DISK_HDR - 1, &disk, &off, &len, &data,
					       why, sizeof(why)), -EPROTO);
}

/* A disk write failing halfway tears the checkpoint: no failover from it, no later epoch. */
static void test_disk_apply_failure_torn(void **state)
{
	static struct disks d;
	static uint8_t blk[CHUNK];
	struct mig_epoch e;
	struct ram r = { .fail_at = -1 };
	uint8_t st = 1;
	char why[160];

	disks_epoch_init(&e, &d);
	d.fail_at = 1;
	open_epoch(&e, 1);
	assert_int_equal(mig_epoch_add_disk(&e, 0, 0, CHUNK, blk, why, sizeof(why)), 0);
	assert_int_equal(mig_epoch_add_disk(&e, 0, CHUNK, CHUNK, blk, why, sizeof(why)), 0);
	assert_int_equal(mig_epoch_set_state(&e, &st, 1, why, sizeof(why)), 0);
	assert_int_equal(end_disks(&e, 1, 0, 2, 0, 0, &r, why), -EIO);
	assert_non_null(strstr(why, "disk 0"));
	assert_true(e.torn);
	assert_int_equal(e.committed, 0);
	assert_null(e.committed_state);
	assert_int_equal(mig_epoch_begin(&e, 1, why, sizeof(why)), -EPROTO);
	mig_epoch_free(&e);
}

static enum mig_failover_action decide(uint64_t now, uint64_t heard, enum mig_failover_mode mode,
				       bool lost, bool asked)
{
	struct mig_failover_in in = {
		.now_ns = now, .last_heard_ns = heard, .timeout_ns = SEC, .mode = mode,
		.link_lost = lost, .operator_asked = asked,
	};
	const char *reason = NULL;
	enum mig_failover_action a = mig_failover_decide(&in, &reason);

	assert_non_null(reason);
	return a;
}

static void test_failover_auto(void **state)
{
	/* Heard recently: wait, connected or not. */
	assert_int_equal(decide(10 * SEC, 10 * SEC - 100 * MS, MIG_FAILOVER_AUTO, false, false),
			 MIG_FAILOVER_WAIT);
	assert_int_equal(decide(10 * SEC, 10 * SEC - 999 * MS, MIG_FAILOVER_AUTO, true, false),
			 MIG_FAILOVER_WAIT);
	/* Silent for the timeout: take over, lost connection or stalled link alike. */
	assert_int_equal(decide(10 * SEC, 9 * SEC, MIG_FAILOVER_AUTO, true, false),
			 MIG_FAILOVER_TAKEOVER);
	assert_int_equal(decide(10 * SEC, 8 * SEC, MIG_FAILOVER_AUTO, false, false),
			 MIG_FAILOVER_TAKEOVER);
	/* A clock that seems to run backwards is no silence. */
	assert_int_equal(decide(SEC, 5 * SEC, MIG_FAILOVER_AUTO, true, false), MIG_FAILOVER_WAIT);
	/* The operator may always ask. */
	assert_int_equal(decide(SEC, SEC, MIG_FAILOVER_AUTO, false, true), MIG_FAILOVER_TAKEOVER);
}

static void test_failover_manual(void **state)
{
	assert_int_equal(decide(100 * SEC, SEC, MIG_FAILOVER_MANUAL, true, false),
			 MIG_FAILOVER_WAIT);
	assert_int_equal(decide(100 * SEC, SEC, MIG_FAILOVER_MANUAL, false, false),
			 MIG_FAILOVER_WAIT);
	assert_int_equal(decide(100 * SEC, SEC, MIG_FAILOVER_MANUAL, true, true),
			 MIG_FAILOVER_TAKEOVER);
}

static void test_fence(void **state)
{
	uint64_t f;
	char why[200];

	assert_int_equal(mig_heartbeat_ns(SEC), 100 * MS);
	assert_int_equal(mig_heartbeat_ns(50 * MS), 10 * MS);
	/* Default: half the standby's. */
	assert_int_equal(mig_fence_pick(0, SEC, 100 * MS, &f, why, sizeof(why)), 0);
	assert_int_equal(f, 500 * MS);
	assert_int_equal(mig_fence_pick(400 * MS, SEC, 100 * MS, &f, why, sizeof(why)), 0);
	assert_int_equal(f, 400 * MS);
	/* More than half the standby's could let both run. */
	assert_int_equal(mig_fence_pick(600 * MS, SEC, 100 * MS, &f, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "half"));
	assert_int_equal(mig_fence_pick(2 * SEC, SEC, 100 * MS, &f, why, sizeof(why)), -EINVAL);
	assert_int_equal(mig_fence_pick(200 * MS, SEC, 100 * MS, &f, why, sizeof(why)), -EINVAL);
	/* The primary fences before the standby may take over. */
	assert_false(mig_fence_decide(SEC + 499 * MS, SEC, 500 * MS, MIG_FAILOVER_AUTO));
	assert_true(mig_fence_decide(SEC + 500 * MS, SEC, 500 * MS, MIG_FAILOVER_AUTO));
	assert_int_equal(decide(SEC + 500 * MS, SEC, MIG_FAILOVER_AUTO, true, false),
			 MIG_FAILOVER_WAIT);
	/* A manual standby never takes over alone: the primary runs on. */
	assert_false(mig_fence_decide(100 * SEC, SEC, 500 * MS, MIG_FAILOVER_MANUAL));
}

/*
 * A cut link, both sides alive, as times: the link breaks at t, the
 * primary last heard the standby just before, the standby last heard the
 * primary one heartbeat before t.  At every later instant at most one
 * side may run the guest.
 */
static void test_cut_link_no_split_brain(void **state)
{
	const uint64_t F = SEC, hb = mig_heartbeat_ns(F), t = 50 * SEC;
	uint64_t fence;
	char why[200];

	assert_int_equal(mig_fence_pick(0, F, hb, &fence, why, sizeof(why)), 0);
	for (uint64_t now = t; now < t + 5 * SEC; now += MS) {
		bool primary_runs = !mig_fence_decide(now, t, fence, MIG_FAILOVER_AUTO);
		bool standby_runs = decide(now, t - hb, MIG_FAILOVER_AUTO, true, false) ==
				    MIG_FAILOVER_TAKEOVER;
		assert_false(primary_runs && standby_runs);
	}
	/* And the standby does take over in the end. */
	assert_int_equal(decide(t + 5 * SEC, t - hb, MIG_FAILOVER_AUTO, true, false),
			 MIG_FAILOVER_TAKEOVER);
}

/*
 * A standby's HEARTBEAT counts from when the primary sent the one it
 * echoes, not from when the primary read it: a primary busy for 900 ms
 * (an epoch collected on a slow host) that then reads a heartbeat the
 * standby sent before the link was cut must not run on past what the
 * standby's failover clock allows.
 */
static void test_heartbeat_credit(void **state)
{
	const uint64_t F = SEC, hb = mig_heartbeat_ns(F), t = 50 * SEC;
	uint64_t sent[MIG_HB_RING] = { 0 }, fence;
	char why[200];

	/* Nothing proven: no echo, one not sent yet, one too old to remember. */
	sent[5 % MIG_HB_RING] = t;
	assert_int_equal(mig_hb_credit(sent, 5, 0), 0);
	assert_int_equal(mig_hb_credit(sent, 5, 6), 0);
	assert_int_equal(mig_hb_credit(sent, 5 + MIG_HB_RING, 5), 0);
	assert_int_equal(mig_hb_credit(sent, 5, 5), t);
	assert_int_equal(mig_hb_credit(sent, 5 + MIG_HB_RING - 1, 5), t);

	/*
	 * The primary sends HEARTBEAT 5 at t, the standby hears it and echoes
	 * it, then the link is cut.  The primary reads the echo only at
	 * t + 900 ms: its deadline stays t + fence, and the standby (which
	 * heard the primary last at t) never runs while the primary does.
	 */
	assert_int_equal(mig_fence_pick(0, F, hb, &fence, why, sizeof(why)), 0);
	uint64_t last_heard = mig_hb_credit(sent, 5, 5);
	for (uint64_t now = t + 900 * MS; now < t + 5 * SEC; now += MS) {
		bool primary_runs = !mig_fence_decide(now, last_heard, fence, MIG_FAILOVER_AUTO);
		bool standby_runs = decide(now, t, MIG_FAILOVER_AUTO, true, false) ==
				    MIG_FAILOVER_TAKEOVER;
		assert_false(primary_runs && standby_runs);
	}
}

/* A stream pair over a socketpair: a writes, b reads. */
static void stream_pair(struct mig_stream *a, struct mig_stream *b)
{
	struct mig_channel *ch[2];
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(mig_channel_socket(sv[0], &ch[0]), 0);
	assert_int_equal(mig_channel_socket(sv[1], &ch[1]), 0);
	assert_int_equal(mig_stream_init(a, ch[0], 4096), 0);
	assert_int_equal(mig_stream_init(b, ch[1], 1 << 20), 0);
	a->timeout_ms = b->timeout_ms = 1000;
}

/*
 * An epoch is collected while the guest is paused: nothing leaves until
 * release, even past the stream's buffer size; then it all arrives, in
 * order, and the reader's chain before EPOCH_END is the writer's chain
 * that EPOCH_END names.
 */
static void test_hold_and_chain(void **state)
{
	struct mig_stream a, b;
	static uint8_t big[100000], got[100000];
	uint8_t type;
	uint32_t len;

	stream_pair(&a, &b);
	mig_section_write(&a, MIG_SEC_HEARTBEAT, "0123456789abcdef", 16);
	assert_int_equal(mig_stream_flush(&a), 0);
	mig_stream_hold(&a, 1 << 20);
	memset(big, 0x5a, sizeof(big));
	mig_section_write(&a, MIG_SEC_EPOCH, "\1\0\0\0\0\0\0\0", 8);
	mig_section_write(&a, MIG_SEC_STATE, big, 60000);
	assert_int_equal(mig_stream_flush(&a), 0);	/* held: sends nothing */
	uint64_t chain = a.chain_out;
	mig_section_write(&a, MIG_SEC_EPOCH_END, &chain, 8);
	assert_true(a.len > 60000);			/* grew past its 4 KiB */
	/* Only the heartbeat is readable so far. */
	assert_int_equal(mig_section_read(&b, got, sizeof(got), &type, &len), 0);
	assert_int_equal(type, MIG_SEC_HEARTBEAT);
	assert_int_equal(mig_stream_wait_readable(&b, 50, NULL, 0), 0);
	assert_int_equal(mig_stream_release(&a), 0);
	assert_false(a.hold);
	assert_int_equal(mig_section_read(&b, got, sizeof(got), &type, &len), 0);
	assert_int_equal(type, MIG_SEC_EPOCH);
	assert_int_equal(mig_section_read(&b, got, sizeof(got), &type, &len), 0);
	assert_int_equal(type, MIG_SEC_STATE);
	assert_int_equal(len, 60000);
	assert_memory_equal(got, big, 60000);
	assert_int_equal(mig_section_read(&b, got, sizeof(got), &type, &len), 0);
	assert_int_equal(type, MIG_SEC_EPOCH_END);
	uint64_t named;
	memcpy(&named, got, 8);
	assert_true(named == b.chain_in_prev);
	assert_true(b.chain_in == a.chain_out);
	assert_true(b.chain_in != b.chain_in_prev);
	mig_stream_destroy(&a);
	mig_stream_destroy(&b);
}

/* A held epoch larger than the hold limit goes out as usual, in order, nothing lost. */
static void test_hold_overflow(void **state)
{
	struct mig_stream a, b;
	static uint8_t big[200000], got[200000];
	uint8_t type;
	uint32_t len;

	stream_pair(&a, &b);
	mig_stream_hold(&a, 8192);
	memset(big, 0x33, sizeof(big));
	/* The reader must drain while the writer sends past the socket's buffer. */
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		mig_section_write(&a, MIG_SEC_STATE, big, 150000);
		_exit(mig_stream_release(&a) ? 1 : 0);
	}
	assert_int_equal(mig_section_read(&b, got, sizeof(got), &type, &len), 0);
	assert_int_equal(type, MIG_SEC_STATE);
	assert_int_equal(len, 150000);
	assert_memory_equal(got, big, 150000);
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	mig_stream_destroy(&a);
	mig_stream_destroy(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_whole_epoch_commits),
		cmocka_unit_test(test_order_kept),
		cmocka_unit_test(test_broken_epochs_dropped),
		cmocka_unit_test(test_sequence_rules),
		cmocka_unit_test(test_apply_failure_reported),
		cmocka_unit_test(test_disk_commits_with_ram),
		cmocka_unit_test(test_disk_broken_epochs_dropped),
		cmocka_unit_test(test_disk_hostile_records),
		cmocka_unit_test(test_disk_ranges),
		cmocka_unit_test(test_disk_decode),
		cmocka_unit_test(test_disk_apply_failure_torn),
		cmocka_unit_test(test_failover_auto),
		cmocka_unit_test(test_failover_manual),
		cmocka_unit_test(test_fence),
		cmocka_unit_test(test_cut_link_no_split_brain),
		cmocka_unit_test(test_heartbeat_credit),
		cmocka_unit_test(test_hold_and_chain),
		cmocka_unit_test(test_hold_overflow),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
