/*
 * The Linux x86 boot protocol (Documentation/arch/x86/boot.rst): load a
 * bzImage's protected-mode kernel where its header asks, an initrd below
 * the limit it allows, and fill the zero page (struct boot_params) for its
 * 64-bit entry point.  Protocol 2.12 or later, 64-bit entry required.
 */
#ifndef FERRY_ARCH_X86_BZIMAGE_H
#define FERRY_ARCH_X86_BZIMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "arch/x86/pvh.h"

/* Guest-physical placement of what the loader writes besides the kernel. */
#define BZ_BOOT_PARAMS_GPA	0x7000ULL	/* the zero page */
#define BZ_CMDLINE_GPA		0x20000ULL
#define BZ_CMDLINE_MAX		4096		/* including the NUL; also cmdline_size */

/* Offsets into the image, as into boot_params (the header is at 0x1f1 in both). */
#define BZ_SETUP_SECTS		0x1f1
#define BZ_BOOT_FLAG		0x1fe
#define BZ_HEADER		0x202
#define BZ_VERSION		0x206
#define BZ_TYPE_OF_LOADER	0x210
#define BZ_LOADFLAGS		0x211
#define BZ_RAMDISK_IMAGE	0x218
#define BZ_RAMDISK_SIZE		0x21c
#define BZ_HEAP_END_PTR		0x224
#define BZ_CMD_LINE_PTR		0x228
#define BZ_INITRD_ADDR_MAX	0x22c
#define BZ_KERNEL_ALIGNMENT	0x230
#define BZ_RELOCATABLE		0x234
#define BZ_XLOADFLAGS		0x236
#define BZ_CMDLINE_SIZE		0x238
#define BZ_HARDWARE_SUBARCH	0x23c
#define BZ_PREF_ADDRESS		0x258
#define BZ_INIT_SIZE		0x260
#define BZ_HEADER_END		0x26c	/* the 2.12 header ends before here */
/* boot_params only */
#define BZ_EXT_RAMDISK_IMAGE	0x0c0
#define BZ_EXT_RAMDISK_SIZE	0x0c4
#define BZ_EXT_CMD_LINE_PTR	0x0c8
#define BZ_E820_ENTRIES		0x1e8
#define BZ_E820_TABLE		0x2d0	/* 128 entries of 20 bytes */
#define BZ_E820_MAX		128

#define BZ_LOADED_HIGH		0x01	/* loadflags */
#define BZ_CAN_USE_HEAP		0x80
#define BZ_XLF_KERNEL_64	0x01	/* xloadflags */
#define BZ_MAGIC		0x53726448u	/* "HdrS" */

struct bz_kernel {
	uint64_t load_addr;		/* protected-mode kernel */
	uint64_t entry;			/* 64-bit entry: load_addr + 0x200 */
	uint64_t end;			/* load_addr + the memory it needs (init_size) */
	uint64_t boot_params;		/* RSI at entry */
	uint64_t initrd_addr, initrd_size;
};

/* Is this image a bzImage (boot sector magic and "HdrS")? */
int bz_is_bzimage(const void *image, size_t len);

/*
 * Load the bzImage `image` and `initrd` (may be NULL, initrd_len 0) into
 * guest RAM and write the zero page and command line.  Everything from the
 * image is untrusted: -ENOEXEC (not a usable bzImage: bad magic, protocol
 * older than 2.12, no 64-bit entry, setup_sects out of range, truncated),
 * -ERANGE (kernel or initrd do not fit: larger than RAM, an initrd that
 * would overlap the kernel or lie above initrd_addr_max), -E2BIG (command
 * line), each with a reason in `why`.  Guest memory may be partly written
 * on failure.
 */
int bz_load(const struct pvh_ram *ram, const void *image, size_t len,
	    const void *initrd, size_t initrd_len, const char *cmdline,
	    struct bz_kernel *out, char *why, size_t whylen)
	__attribute__((warn_unused_result));

#endif
