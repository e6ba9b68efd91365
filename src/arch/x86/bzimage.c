#include "arch/x86/bzimage.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int bz_fail(int err, char *why, size_t whylen, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int bz_fail(int err, char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
	return err;
}

static uint64_t bz_get(const uint8_t *p, size_t off, unsigned width)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < width; i++)
		v |= (uint64_t)p[off + i] << (8 * i);
	return v;
}

static void bz_put(uint8_t *p, size_t off, uint64_t v, unsigned width)
{
	for (unsigned i = 0; i < width; i++)
		p[off + i] = (uint8_t)(v >> (8 * i));
}

int bz_is_bzimage(const void *image, size_t len)
{
	const uint8_t *img = image;

	return len >= BZ_HEADER_END && bz_get(img, BZ_BOOT_FLAG, 2) == 0xaa55 &&
	       bz_get(img, BZ_HEADER, 4) == BZ_MAGIC;
}

/* The header checks; *setup_size is the real-mode part to skip. */
static int bz_check_header(const uint8_t *img, size_t len, size_t *setup_size,
			   char *why, size_t whylen)
{
	if (len < BZ_HEADER_END)
		return bz_fail(-ENOEXEC, why, whylen, "truncated bzImage (%zu bytes)", len);
	if (!bz_is_bzimage(img, len))
		return bz_fail(-ENOEXEC, why, whylen, "not a bzImage (bad magic: boot flag 0x%04x, "
			       "header 0x%08x)", (unsigned)bz_get(img, BZ_BOOT_FLAG, 2),
			       (unsigned)bz_get(img, BZ_HEADER, 4));
	unsigned version = (unsigned)bz_get(img, BZ_VERSION, 2);
	if (version < 0x020c)
		return bz_fail(-ENOEXEC, why, whylen, "boot protocol %u.%u is older than 2.12",
			       version >> 8, version & 0xff);
	/* The setup (boot sector included) is at most 32 KiB, and in the file. */
	unsigned sects = img[BZ_SETUP_SECTS] ? img[BZ_SETUP_SECTS] : 4;
	*setup_size = ((size_t)sects + 1) * 512;
	if (sects > 63 || *setup_size >= len)
		return bz_fail(-ENOEXEC, why, whylen, "setup_sects %u out of range (1..63, and "
			       "the setup must end before the file does: %zu bytes)", sects, len);
	if (!(img[BZ_LOADFLAGS] & BZ_LOADED_HIGH))
		return bz_fail(-ENOEXEC, why, whylen, "not a kernel loaded high (zImage)");
	if (!(bz_get(img, BZ_XLOADFLAGS, 2) & BZ_XLF_KERNEL_64))
		return bz_fail(-ENOEXEC, why, whylen, "the kernel has no 64-bit entry point");
	return 0;
}

/* The end of the RAM block at gpa 0, below 4 GiB: where everything low goes. */
static uint64_t bz_low_end(const struct pvh_ram *ram)
{
	return ram->nr && ram->block[0].gpa == 0 ? ram->block[0].size : 0;
}

/* Where the protected-mode kernel goes: where it asks, else aligned above 1 MiB. */
static int bz_place_kernel(const struct pvh_ram *ram, const uint8_t *img, uint64_t need,
			   uint64_t *addr, char *why, size_t whylen)
{
	uint64_t pref = bz_get(img, BZ_PREF_ADDRESS, 8);
	uint64_t align = bz_get(img, BZ_KERNEL_ALIGNMENT, 4);
	uint64_t low = bz_low_end(ram);

	if (pref >= 0x100000 && pref < low && need <= low - pref) {
		*addr = pref;
		return 0;
	}
	if (!img[BZ_RELOCATABLE])
		return bz_fail(-ERANGE, why, whylen, "the kernel must be loaded at 0x%llx and needs "
			       "0x%llx bytes there: more than guest RAM (%llu MiB below 4 GiB)",
			       (unsigned long long)pref, (unsigned long long)need,
			       (unsigned long long)(low >> 20));
	if (!align || (align & (align - 1)) || align > (1ULL << 30))
		align = 2ULL << 20;
	*addr = (0x100000 + align - 1) & ~(align - 1);
	if (*addr >= low || need > low - *addr)
		return bz_fail(-ERANGE, why, whylen, "the kernel needs 0x%llx bytes at 0x%llx: "
			       "more than guest RAM (%llu MiB below 4 GiB)",
			       (unsigned long long)need, (unsigned long long)*addr,
			       (unsigned long long)(low >> 20));
	return 0;
}

/* The initrd: as high as it may go, page-aligned, above the kernel. */
static int bz_place_initrd(const struct pvh_ram *ram, const uint8_t *img,
			   uint64_t kernel_start, uint64_t kernel_end,
			   uint64_t size, uint64_t *addr, char *why, size_t whylen)
{
	uint64_t max = bz_get(img, BZ_INITRD_ADDR_MAX, 4) + 1ULL;
	uint64_t low = bz_low_end(ram), limit = max < low ? max : low;
	uint64_t floor = (kernel_end + 0xfff) & ~0xfffULL;

	if (size > limit || ((limit - size) & ~0xfffULL) < floor) {
		if (max < low)
			return bz_fail(-ERANGE, why, whylen, "initrd of %llu bytes does not fit below "
				       "initrd_addr_max 0x%llx without overlapping the kernel "
				       "(0x%llx-0x%llx)", (unsigned long long)size,
				       (unsigned long long)(max - 1),
				       (unsigned long long)kernel_start,
				       (unsigned long long)kernel_end);
		return bz_fail(-ERANGE, why, whylen, "initrd of %llu bytes does not fit in guest "
			       "RAM above the kernel (which ends at 0x%llx; RAM below 4 GiB ends at "
			       "0x%llx)", (unsigned long long)size, (unsigned long long)kernel_end,
			       (unsigned long long)low);
	}
	*addr = (limit - size) & ~0xfffULL;
	return 0;
}

/* The zero page: the image's setup header, then what the loader fills in. */
static void bz_write_zero_page(const struct pvh_ram *ram, uint8_t *zp, const uint8_t *img,
			       size_t len, const struct bz_kernel *k)
{
	struct hvm_memmap_table_entry map[PVH_MAX_MEMMAP];
	size_t hdr_end = 0x202 + (size_t)img[0x201];

	memset(zp, 0, 4096);
	if (hdr_end < BZ_HEADER_END)
		hdr_end = BZ_HEADER_END;
	if (hdr_end > len)
		hdr_end = len;
	if (hdr_end > 0x290)		/* the setup header ends before the EDD buffer */
		hdr_end = 0x290;
	memcpy(zp + BZ_SETUP_SECTS, img + BZ_SETUP_SECTS, hdr_end - BZ_SETUP_SECTS);
	zp[BZ_TYPE_OF_LOADER] = 0xff;			/* undefined loader */
	bz_put(zp, BZ_CMD_LINE_PTR, BZ_CMDLINE_GPA, 4);
	bz_put(zp, BZ_EXT_CMD_LINE_PTR, 0, 4);
	bz_put(zp, BZ_RAMDISK_IMAGE, k->initrd_addr, 4);
	bz_put(zp, BZ_RAMDISK_SIZE, k->initrd_size, 4);
	bz_put(zp, BZ_EXT_RAMDISK_IMAGE, k->initrd_addr >> 32, 4);
	bz_put(zp, BZ_EXT_RAMDISK_SIZE, k->initrd_size >> 32, 4);
	bz_put(zp, BZ_HARDWARE_SUBARCH, 0, 4);		/* X86_SUBARCH_PC */
	bz_put(zp, BZ_HARDWARE_SUBARCH + 4, 0, 8);	/* hardware_subarch_data */
	unsigned n = pvh_memmap(ram, map, PVH_MAX_MEMMAP);
	zp[BZ_E820_ENTRIES] = (uint8_t)n;
	for (unsigned i = 0; i < n; i++) {
		bz_put(zp, BZ_E820_TABLE + 20 * i, map[i].addr, 8);
		bz_put(zp, BZ_E820_TABLE + 20 * i + 8, map[i].size, 8);
		bz_put(zp, BZ_E820_TABLE + 20 * i + 16, map[i].type, 4);
	}
}

int bz_load(const struct pvh_ram *ram, const void *image, size_t len,
	    const void *initrd, size_t initrd_len, const char *cmdline,
	    struct bz_kernel *out, char *why, size_t whylen)
{
	const uint8_t *img = image;
	struct bz_kernel k = { .boot_params = BZ_BOOT_PARAMS_GPA };
	size_t setup_size = 0, clen = strlen(cmdline ? cmdline : "");
	int err;

	err = bz_check_header(img, len, &setup_size, why, whylen);
	if (err)
		return err;
	uint64_t cmax = bz_get(img, BZ_CMDLINE_SIZE, 4);
	if (cmax > BZ_CMDLINE_MAX - 1)
		cmax = BZ_CMDLINE_MAX - 1;
	if (clen > cmax)
		return bz_fail(-E2BIG, why, whylen, "command line of %zu bytes: the kernel takes "
			       "at most %llu", clen, (unsigned long long)cmax);
	uint64_t klen = len - setup_size, need = bz_get(img, BZ_INIT_SIZE, 4);
	if (need < klen)
		need = klen;
	err = bz_place_kernel(ram, img, need, &k.load_addr, why, whylen);
	if (err)
		return err;
	k.entry = k.load_addr + 0x200;
	k.end = k.load_addr + need;
	if (initrd_len) {
		err = bz_place_initrd(ram, img, k.load_addr, k.end, initrd_len, &k.initrd_addr, why, whylen);
		if (err)
			return err;
		k.initrd_size = initrd_len;
	}
	uint8_t *kdst = pvh_ram_ptr(ram, k.load_addr, need);
	uint8_t *zp = pvh_ram_ptr(ram, BZ_BOOT_PARAMS_GPA, 4096);
	uint8_t *cl = pvh_ram_ptr(ram, BZ_CMDLINE_GPA, BZ_CMDLINE_MAX);
	uint8_t *idst = initrd_len ? pvh_ram_ptr(ram, k.initrd_addr, initrd_len) : NULL;
	if (!kdst || !zp || !cl || (initrd_len && !idst))
		return bz_fail(-ERANGE, why, whylen, "guest RAM too small for the boot data");
	memcpy(kdst, img + setup_size, klen);
	memset(kdst + klen, 0, need - klen);
	if (initrd_len)
		memcpy(idst, initrd, initrd_len);
	memset(cl, 0, BZ_CMDLINE_MAX);
	memcpy(cl, cmdline ? cmdline : "", clen);
	bz_write_zero_page(ram, zp, img, len, &k);
	*out = k;
	return 0;
}
