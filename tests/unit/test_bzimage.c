/*
 * The bzImage loader on good and malformed images, and the zero page it
 * writes, field by field against the boot protocol
 * (Documentation/arch/x86/boot.rst).  No KVM needed.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "arch/x86/bzimage.h"

#define RAM_SIZE	(64ULL << 20)
#define SETUP_SECTS	4
#define KLEN		8192		/* protected-mode kernel bytes in the file */
#define IMG_LEN		((SETUP_SECTS + 1) * 512 + KLEN)
#define PREF		0x1000000ULL	/* 16 MiB */
#define INIT_SIZE	(4ULL << 20)

static struct pvh_ram ram;
static uint8_t *host;
static uint8_t img[IMG_LEN];
static char why[256];

static void put(uint8_t *p, size_t off, uint64_t v, unsigned w)
{
	for (unsigned i = 0; i < w; i++)
		p[off + i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get(const uint8_t *p, size_t off, unsigned w)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < w; i++)
		v |= (uint64_t)p[off + i] << (8 * i);
	return v;
}

/* A minimal bzImage, protocol 2.15, relocatable, 64-bit entry. */
static void make_image(void)
{
	memset(img, 0, sizeof(img));
	img[BZ_SETUP_SECTS] = SETUP_SECTS;
	put(img, BZ_BOOT_FLAG, 0xaa55, 2);
	img[0x200] = 0xeb;			/* jmp */
	img[0x201] = 0x6a;			/* header ends at 0x26c */
	put(img, BZ_HEADER, BZ_MAGIC, 4);
	put(img, BZ_VERSION, 0x020f, 2);
	img[BZ_LOADFLAGS] = BZ_LOADED_HIGH;
	put(img, BZ_INITRD_ADDR_MAX, 0x7fffffff, 4);
	put(img, BZ_KERNEL_ALIGNMENT, 0x200000, 4);
	img[BZ_RELOCATABLE] = 1;
	put(img, BZ_XLOADFLAGS, BZ_XLF_KERNEL_64, 2);
	put(img, BZ_CMDLINE_SIZE, 2047, 4);
	put(img, BZ_PREF_ADDRESS, PREF, 8);
	put(img, BZ_INIT_SIZE, INIT_SIZE, 4);
	for (size_t i = 0; i < KLEN; i++)
		img[(SETUP_SECTS + 1) * 512 + i] = (uint8_t)(i * 7 + 1);
}

static int setup(void **state)
{
	(void)state;
	host = calloc(1, RAM_SIZE);
	assert_non_null(host);
	ram = (struct pvh_ram){ .nr = 1, .block = { { 0, RAM_SIZE, host } } };
	make_image();
	why[0] = 0;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	free(host);
	return 0;
}

static void test_detect(void **state)
{
	(void)state;
	assert_true(bz_is_bzimage(img, sizeof(img)));
	assert_false(bz_is_bzimage("\177ELF", 4));
}

static void test_good_image(void **state)
{
	static const uint8_t initrd[5000] = { 0x1f, 0x8b, 8 };
	struct bz_kernel k;

	(void)state;
	assert_int_equal(bz_load(&ram, img, sizeof(img), initrd, sizeof(initrd),
				 "console=ttyS0 earlyprintk=serial", &k, why, sizeof(why)), 0);
	/* The kernel where the header asks; its 64-bit entry 0x200 in. */
	assert_int_equal(k.load_addr, PREF);
	assert_int_equal(k.entry, PREF + 0x200);
	assert_int_equal(k.end, PREF + INIT_SIZE);
	assert_memory_equal(host + PREF, img + (SETUP_SECTS + 1) * 512, KLEN);
	/* The initrd as high as RAM allows, page-aligned, above the kernel. */
	assert_int_equal(k.initrd_size, sizeof(initrd));
	assert_int_equal(k.initrd_addr, (RAM_SIZE - sizeof(initrd)) & ~0xfffULL);
	assert_true(k.initrd_addr >= k.end);
	assert_memory_equal(host + k.initrd_addr, initrd, sizeof(initrd));
	assert_int_equal(k.boot_params, BZ_BOOT_PARAMS_GPA);
	assert_string_equal((char *)host + BZ_CMDLINE_GPA, "console=ttyS0 earlyprintk=serial");
}

/* boot_params, field by field. */
static void test_zero_page(void **state)
{
	static const uint8_t initrd[4096];
	const uint8_t *zp = host + BZ_BOOT_PARAMS_GPA;
	struct bz_kernel k;

	(void)state;
	memset(host + BZ_BOOT_PARAMS_GPA, 0x5a, 4096);	/* stale bytes must go */
	assert_int_equal(bz_load(&ram, img, sizeof(img), initrd, sizeof(initrd), "quiet",
				 &k, why, sizeof(why)), 0);
	/* The image's setup header, copied. */
	assert_int_equal(zp[BZ_SETUP_SECTS], SETUP_SECTS);
	assert_int_equal(get(zp, BZ_BOOT_FLAG, 2), 0xaa55);
	assert_int_equal(get(zp, BZ_HEADER, 4), BZ_MAGIC);
	assert_int_equal(get(zp, BZ_VERSION, 2), 0x020f);
	assert_int_equal(get(zp, BZ_KERNEL_ALIGNMENT, 4), 0x200000);
	assert_int_equal(get(zp, BZ_PREF_ADDRESS, 8), PREF);
	assert_int_equal(get(zp, BZ_INIT_SIZE, 4), INIT_SIZE);
	/* What the loader fills in. */
	assert_int_equal(zp[BZ_TYPE_OF_LOADER], 0xff);
	assert_int_equal(get(zp, BZ_CMD_LINE_PTR, 4), BZ_CMDLINE_GPA);
	assert_int_equal(get(zp, BZ_EXT_CMD_LINE_PTR, 4), 0);
	assert_int_equal(get(zp, BZ_RAMDISK_IMAGE, 4), k.initrd_addr);
	assert_int_equal(get(zp, BZ_RAMDISK_SIZE, 4), sizeof(initrd));
	assert_int_equal(get(zp, BZ_EXT_RAMDISK_IMAGE, 4), 0);
	assert_int_equal(get(zp, BZ_EXT_RAMDISK_SIZE, 4), 0);
	assert_int_equal(get(zp, BZ_HARDWARE_SUBARCH, 4), 0);	/* PC */
	assert_int_equal(get(zp, BZ_HARDWARE_SUBARCH + 4, 8), 0);
	/* e820: low RAM, the legacy hole, RAM from 1 MiB. */
	assert_int_equal(zp[BZ_E820_ENTRIES], 3);
	const uint64_t want[3][3] = {
		{ 0, 0xa0000, 1 }, { 0xa0000, 0x60000, 2 }, { 0x100000, RAM_SIZE - 0x100000, 1 },
	};
	for (unsigned i = 0; i < 3; i++) {
		assert_int_equal(get(zp, BZ_E820_TABLE + 20 * i, 8), want[i][0]);
		assert_int_equal(get(zp, BZ_E820_TABLE + 20 * i + 8, 8), want[i][1]);
		assert_int_equal(get(zp, BZ_E820_TABLE + 20 * i + 16, 4), want[i][2]);
	}
	assert_int_equal(get(zp, BZ_E820_TABLE + 20 * 3, 8), 0);
	/* Outside the header and the loader's fields the page is zero. */
	assert_int_equal(get(zp, 0, 8), 0);
	assert_int_equal(get(zp, 0x1e0, 8), 0);
	assert_int_equal(get(zp, 0xff8, 8), 0);
}

/* Not relocatable and its address is not in RAM: refused.  Relocatable: moved. */
static void test_relocation(void **state)
{
	struct bz_kernel k;

	(void)state;
	put(img, BZ_PREF_ADDRESS, 1ULL << 40, 8);
	assert_int_equal(bz_load(&ram, img, sizeof(img), NULL, 0, "", &k, why, sizeof(why)), 0);
	assert_int_equal(k.load_addr, 0x200000);		/* 1 MiB rounded to 2 MiB */
	img[BZ_RELOCATABLE] = 0;
	assert_int_equal(bz_load(&ram, img, sizeof(img), NULL, 0, "", &k, why, sizeof(why)),
			 -ERANGE);
	assert_non_null(strstr(why, "must be loaded at 0x10000000000"));
}

static void expect_bad(int err, const char *msg)
{
	struct bz_kernel k;
	static const uint8_t initrd[16];

	assert_int_equal(bz_load(&ram, img, sizeof(img), initrd, sizeof(initrd), "", &k,
				 why, sizeof(why)), err);
	if (!strstr(why, msg))
		fail_msg("reason '%s' does not say '%s'", why, msg);
}

static void test_bad_magic(void **state)
{
	(void)state;
	put(img, BZ_HEADER, 0x53726449, 4);
	expect_bad(-ENOEXEC, "bad magic");
	make_image();
	put(img, BZ_BOOT_FLAG, 0x55aa, 2);
	expect_bad(-ENOEXEC, "bad magic");
}

static void test_protocol_too_old(void **state)
{
	(void)state;
	put(img, BZ_VERSION, 0x020b, 2);
	expect_bad(-ENOEXEC, "boot protocol 2.11 is older than 2.12");
}

static void test_setup_sects(void **state)
{
	struct bz_kernel k;

	(void)state;
	img[BZ_SETUP_SECTS] = 64;
	expect_bad(-ENOEXEC, "setup_sects 64 out of range");
	img[BZ_SETUP_SECTS] = 63;	/* in range, but past the end of this file */
	expect_bad(-ENOEXEC, "setup_sects 63 out of range");
	make_image();
	/* 0 means 4, as on the oldest kernels */
	img[BZ_SETUP_SECTS] = 0;
	assert_int_equal(bz_load(&ram, img, sizeof(img), NULL, 0, "", &k, why, sizeof(why)), 0);
}

static void test_truncated(void **state)
{
	struct bz_kernel k;

	(void)state;
	assert_int_equal(bz_load(&ram, img, BZ_HEADER_END - 1, NULL, 0, "", &k, why, sizeof(why)),
			 -ENOEXEC);
	assert_non_null(strstr(why, "truncated"));
}

static void test_no_64bit_entry(void **state)
{
	(void)state;
	put(img, BZ_XLOADFLAGS, 0, 2);
	expect_bad(-ENOEXEC, "no 64-bit entry point");
	make_image();
	img[BZ_LOADFLAGS] = 0;
	expect_bad(-ENOEXEC, "loaded high");
}

static void test_kernel_larger_than_ram(void **state)
{
	(void)state;
	put(img, BZ_INIT_SIZE, RAM_SIZE, 4);
	expect_bad(-ERANGE, "more than guest RAM (64 MiB");
}

static void test_initrd_overlaps_kernel(void **state)
{
	struct bz_kernel k;
	size_t big = RAM_SIZE - PREF - INIT_SIZE + 4096;	/* a page too many */
	uint8_t *initrd = calloc(1, big);

	(void)state;
	assert_int_equal(bz_load(&ram, img, sizeof(img), initrd, big, "", &k, why, sizeof(why)),
			 -ERANGE);
	assert_non_null(strstr(why, "does not fit in guest RAM above the kernel"));
	/* One page less fits, right above the kernel. */
	assert_int_equal(bz_load(&ram, img, sizeof(img), initrd, big - 4096, "", &k, why,
				 sizeof(why)), 0);
	assert_int_equal(k.initrd_addr, PREF + INIT_SIZE);
	free(initrd);
}

static void test_initrd_above_limit(void **state)
{
	struct bz_kernel k;
	static uint8_t initrd[2 << 20];

	(void)state;
	/* The kernel allows an initrd only below 21 MiB: 1 MiB above the kernel. */
	put(img, BZ_INITRD_ADDR_MAX, PREF + INIT_SIZE + (1 << 20) - 1, 4);
	assert_int_equal(bz_load(&ram, img, sizeof(img), initrd, sizeof(initrd), "", &k,
				 why, sizeof(why)), -ERANGE);
	assert_non_null(strstr(why, "below initrd_addr_max 0x14fffff without overlapping the kernel"));
	assert_int_equal(bz_load(&ram, img, sizeof(img), initrd, 1 << 20, "", &k, why,
				 sizeof(why)), 0);
	assert_int_equal(k.initrd_addr + k.initrd_size, PREF + INIT_SIZE + (1 << 20));
}

static void test_cmdline_too_long(void **state)
{
	struct bz_kernel k;
	char line[3000];

	(void)state;
	memset(line, 'a', sizeof(line) - 1);
	line[sizeof(line) - 1] = 0;
	assert_int_equal(bz_load(&ram, img, sizeof(img), NULL, 0, line, &k, why, sizeof(why)),
			 -E2BIG);
	assert_non_null(strstr(why, "at most 2047"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_detect, setup, teardown),
		cmocka_unit_test_setup_teardown(test_good_image, setup, teardown),
		cmocka_unit_test_setup_teardown(test_zero_page, setup, teardown),
		cmocka_unit_test_setup_teardown(test_relocation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_magic, setup, teardown),
		cmocka_unit_test_setup_teardown(test_protocol_too_old, setup, teardown),
		cmocka_unit_test_setup_teardown(test_setup_sects, setup, teardown),
		cmocka_unit_test_setup_teardown(test_truncated, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_64bit_entry, setup, teardown),
		cmocka_unit_test_setup_teardown(test_kernel_larger_than_ram, setup, teardown),
		cmocka_unit_test_setup_teardown(test_initrd_overlaps_kernel, setup, teardown),
		cmocka_unit_test_setup_teardown(test_initrd_above_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cmdline_too_long, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
