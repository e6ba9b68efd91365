/*
 * Only what changed (migration/base.h, savefile_load_range()) without KVM
 * or a stream: the BASE_SUMS encoding and its hostile checks, the
 * comparison that decides which pages travel, the check that a base fits
 * the VM that arrives, and a base loaded into fresh RAM whose digests
 * match the RAM it was saved from, except where the guest wrote since
 * (A -> B -> A: only those pages differ) and except a damaged block, which
 * is left out and travels.
 */
#include <errno.h>
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
#include <xxhash.h>

#include "migration/base.h"
#include "migration/digest.h"
#include "migration/savefile/savefile.h"
#include "util/le.h"
#include "vmm/memory.h"

#define T_MEM (64ULL << 20)		/* 16384 pages: one BASE_SUMS section */
#define T_PAGES (T_MEM / GUEST_PAGE_SIZE)

static void test_sums_codec(void **state)
{
	uint64_t pages = 3 * MIG_BASE_SUMS_MAX + 100, sums[MIG_BASE_SUMS_MAX];
	uint8_t *buf = malloc(MIG_BASE_SUMS_HDR + 8 * MIG_BASE_SUMS_MAX + 8);
	uint32_t len, count = 0;
	char why[256];

	(void)state;
	for (uint32_t k = 0; k < MIG_BASE_SUMS_MAX; k++)
		sums[k] = 0x1234567800000000ULL + k;
	assert_int_equal(mig_base_sums_count(0, pages), MIG_BASE_SUMS_MAX);
	assert_int_equal(mig_base_sums_count(3 * MIG_BASE_SUMS_MAX, pages), 100);
	len = mig_base_sums_encode(buf, MIG_BASE_SUMS_MAX, MIG_BASE_SUMS_MAX, sums);
	assert_int_equal(len, MIG_BASE_SUMS_HDR + 8 * MIG_BASE_SUMS_MAX);
	assert_int_equal(mig_base_sums_decode(buf, len, MIG_BASE_SUMS_MAX, pages, &count, why,
					      sizeof(why)), 0);
	assert_int_equal(count, MIG_BASE_SUMS_MAX);
	assert_int_equal(mig_base_sum(buf, 7), sums[7]);
	/* Not the section expected next, a length off by one, cut short, too late. */
	assert_int_equal(mig_base_sums_decode(buf, len, 0, pages, &count, why, sizeof(why)),
			 -EPROTO);
	assert_non_null(strstr(why, "malformed"));
	assert_int_equal(mig_base_sums_decode(buf, len - 1, MIG_BASE_SUMS_MAX, pages, &count, why,
					      sizeof(why)), -EPROTO);
	assert_int_equal(mig_base_sums_decode(buf, len + 8, MIG_BASE_SUMS_MAX, pages, &count, why,
					      sizeof(why)), -EPROTO);
	assert_int_equal(mig_base_sums_decode(buf, 11, MIG_BASE_SUMS_MAX, pages, &count, why,
					      sizeof(why)), -EPROTO);
	assert_int_equal(mig_base_sums_decode(buf, len, pages, pages, &count, why, sizeof(why)),
			 -EPROTO);
	/* The last section must carry exactly what is left, no more, no less. */
	len = mig_base_sums_encode(buf, 3 * MIG_BASE_SUMS_MAX, 100, sums);
	assert_int_equal(mig_base_sums_decode(buf, len, 3 * MIG_BASE_SUMS_MAX, pages, &count, why,
					      sizeof(why)), 0);
	assert_int_equal(count, 100);
	len = mig_base_sums_encode(buf, 3 * MIG_BASE_SUMS_MAX, 101, sums);
	assert_int_equal(mig_base_sums_decode(buf, len, 3 * MIG_BASE_SUMS_MAX, pages, &count, why,
					      sizeof(why)), -EPROTO);
	/* A count so large its length would overflow 32 bits. */
	le_put(buf + 8, 0x20000000u, 4);
	assert_int_equal(mig_base_sums_decode(buf, len, 3 * MIG_BASE_SUMS_MAX, pages, &count, why,
					      sizeof(why)), -EPROTO);
	free(buf);
}

static void test_diff(void **state)
{
	uint64_t theirs[200], mine[130];
	unsigned long owed[4];
	uint8_t *buf = malloc(MIG_BASE_SUMS_HDR + 8 * 200);

	(void)state;
	for (unsigned k = 0; k < 200; k++)
		theirs[k] = k * 7 + 1;
	mig_base_sums_encode(buf, 0, 200, theirs);
	for (unsigned i = 0; i < 130; i++)
		mine[i] = theirs[50 + i] + (i % 13 == 0);	/* every 13th differs: 10 */
	memset(owed, 0xff, sizeof(owed));	/* bits set before must be cleared where equal */
	assert_int_equal(mig_base_diff(buf, 50, mine, 130, owed, 64), 10);
	assert_int_equal(owed[0], ~0UL);	/* outside the range: untouched */
	for (unsigned i = 0; i < 130; i++)
		assert_int_equal(!!(owed[(64 + i) / 64] & 1UL << ((64 + i) % 64)), i % 13 == 0);
	free(buf);
}

static void test_fits(void **state)
{
	struct mig_config a = { .memory = 256ULL << 20, .vcpus = 1, .page_size = 4096 };
	struct mig_config b = a;
	char why[256];

	(void)state;
	b.vcpus = 4;	/* vCPUs do not change where a page lives */
	assert_int_equal(mig_base_fits(&a, &b, why, sizeof(why)), 0);
	b.memory = 512ULL << 20;
	assert_int_equal(mig_base_fits(&a, &b, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "256 MiB"));
	assert_non_null(strstr(why, "512 MiB"));
	/* The digest both sides use for a page: a zero page's, and any other's. */
	static uint8_t zero[GUEST_PAGE_SIZE];
	assert_int_equal(mig_page_hash(NULL), XXH3_64bits(zero, sizeof(zero)));
}

/* ---- a base written, changed, loaded ----------------------------------- */

static void t_page(struct guest_memory *mem, uint64_t i, uint64_t v)
{
	uint64_t *p = guest_memory_page_alias(mem, i);

	p[0] = v;
	p[GUEST_PAGE_SIZE / 8 - 1] = ~v;
}

static void t_digests(struct guest_memory *mem, uint64_t *out)
{
	for (uint64_t i = 0; i < T_PAGES; i++)
		out[i] = guest_memory_is_hole(mem, i, 1) ? mig_page_hash(NULL) :
			 mig_page_hash(guest_memory_page_alias(mem, i));
}

static void t_write(struct guest_memory *mem, const char *path, uint64_t memory)
{
	struct mig_config cfg = { .memory = memory, .vcpus = 1, .page_size = 4096 };
	struct savefile_stats st;
	uint8_t *meta;
	size_t len;
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(savefile_meta_encode(&cfg, "k", NULL, NULL, 0, NULL, 0, (const uint8_t *)"s", 1,
					      &meta, &len), 0);
	assert_int_equal(savefile_write(mem, fd, meta, len, &st), 0);
	close(fd);
	free(meta);
}

static void test_base_roundtrip(void **state)
{
	char dir[] = "/tmp/ferry-base-XXXXXX", path[64], why[256] = "";
	struct guest_memory a, b;
	struct savefile sf;
	uint64_t *mine = malloc(T_PAGES * 8), *sums = malloc(T_PAGES * 8);
	unsigned long *written = calloc(T_PAGES / 64, sizeof(unsigned long));
	uint8_t *buf = aligned_alloc(64, SAVEFILE_BLOCK_PAGES * GUEST_PAGE_SIZE);
	uint8_t *p = malloc(MIG_BASE_SUMS_HDR + 8 * T_PAGES);
	unsigned damaged = 0, long_bits = 8 * sizeof(unsigned long);

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/base.sav", dir);
	/* A: half the pages hold data, the rest were never written. */
	assert_int_equal(guest_memory_create(&a, T_MEM), 0);
	for (uint64_t i = 0; i < T_PAGES; i += 2)
		t_page(&a, i, i + 1);
	t_write(&a, path, T_MEM);		/* the VM leaves A: --keep-base */

	/* Back at B the guest changes 5% of its pages (some of them holes before). */
	uint64_t changed = 0;
	for (uint64_t i = 0; i < T_PAGES; i += 20, changed++)
		t_page(&a, i + (changed & 1), 0xabc0000 + i);
	t_digests(&a, mine);

	/* A again, --base: fresh RAM filled from the base; its digests against B's. */
	assert_int_equal(savefile_open(&sf, path, why, sizeof(why)), 0);
	assert_int_equal(mig_base_fits(&sf.meta.cfg, &(struct mig_config){ .memory = T_MEM,
				       .page_size = 4096 }, why, sizeof(why)), 0);
	assert_int_equal(mig_base_fits(&sf.meta.cfg, &(struct mig_config){ .memory = 2 * T_MEM,
				       .page_size = 4096 }, why, sizeof(why)), -EINVAL);
	assert_int_equal(guest_memory_create(&b, T_MEM), 0);
	assert_int_equal(savefile_load_range(&sf, &b, 0, (uint32_t)T_PAGES, sums, written, buf,
					     &damaged, why, sizeof(why)), T_PAGES / 2);
	assert_int_equal(damaged, 0);
	for (uint64_t i = 0; i < T_PAGES; i++)
		assert_int_equal(!!(written[i / long_bits] & 1UL << (i % long_bits)), i % 2 == 0);
	mig_base_sums_encode(p, 0, (uint32_t)T_PAGES, sums);
	unsigned long *owed = calloc(T_PAGES / 64, sizeof(unsigned long));
	uint32_t differ = mig_base_diff(p, 0, mine, (uint32_t)T_PAGES, owed, 0);
	print_message("%u of %llu pages differ\n", differ, (unsigned long long)T_PAGES);
	assert_int_equal(differ, changed);
	/* What did not travel is what B has: RAM here, page for page. */
	for (uint64_t i = 0; i < T_PAGES; i++)
		if (!(owed[i / long_bits] & 1UL << (i % long_bits)))
			assert_int_equal(mig_page_hash(guest_memory_page_alias(&b, i)), mine[i]);
	savefile_close(&sf);
	guest_memory_destroy(&b);

	/* A bit flipped in block 3's data: that block is left out, its pages travel. */
	assert_int_equal(savefile_open(&sf, path, why, sizeof(why)), 0);
	off_t off = (off_t)(savefile_page_off(&sf.h, sf.table, 3, 2) + 5);
	savefile_close(&sf);
	int fd = open(path, O_RDWR);
	uint8_t byte;
	assert_int_equal(pread(fd, &byte, 1, off), 1);
	byte ^= 1;
	assert_int_equal(pwrite(fd, &byte, 1, off), 1);
	close(fd);
	assert_int_equal(savefile_open(&sf, path, why, sizeof(why)), 0);
	assert_int_equal(guest_memory_create(&b, T_MEM), 0);
	memset(written, 0, T_PAGES / 8);
	assert_int_equal(savefile_load_range(&sf, &b, 0, (uint32_t)T_PAGES, sums, written, buf,
					     &damaged, why, sizeof(why)),
			 T_PAGES / 2 - SAVEFILE_BLOCK_PAGES / 2);
	assert_int_equal(damaged, 1);
	assert_non_null(strstr(why, "RAM block 3"));
	for (unsigned k = 0; k < SAVEFILE_BLOCK_PAGES; k++) {
		uint64_t i = 3 * SAVEFILE_BLOCK_PAGES + k;
		assert_int_equal(sums[i], mig_page_hash(NULL));
		assert_true(guest_memory_is_hole(&b, i, 1));
	}
	mig_base_sums_encode(p, 0, (uint32_t)T_PAGES, sums);
	differ = mig_base_diff(p, 0, mine, (uint32_t)T_PAGES, owed, 0);
	assert_true(differ > changed);	/* block 3's data pages travel too */
	savefile_close(&sf);
	guest_memory_destroy(&b);
	guest_memory_destroy(&a);
	unlink(path);
	rmdir(dir);
	free(mine);
	free(sums);
	free(written);
	free(owed);
	free(buf);
	free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sums_codec),
		cmocka_unit_test(test_diff),
		cmocka_unit_test(test_fits),
		cmocka_unit_test(test_base_roundtrip),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
