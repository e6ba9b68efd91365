/*
 * PVH boot: load an ELF kernel that carries XEN_ELFNOTE_PHYS32_ENTRY and
 * build the hvm_start_info block it expects (Xen's arch-x86/hvm/start_info.h).
 */
#ifndef FERRY_ARCH_X86_PVH_H
#define FERRY_ARCH_X86_PVH_H

#include <stddef.h>
#include <stdint.h>

#define PVH_START_INFO_MAGIC  0x336ec578u
#define XEN_ELFNOTE_PHYS32_ENTRY 18

/* Guest-physical placement of the boot data; kernels may not load here. */
#define PVH_BOOT_DATA_GPA   0x6000ULL	/* start_info, then the memmap */
#define PVH_CMDLINE_GPA     0x7000ULL
#define PVH_CMDLINE_MAX     4096	/* including the terminating NUL */
#define PVH_BOOT_DATA_END   0x8000ULL
#define PVH_MAX_MEMMAP      8

struct hvm_start_info {
	uint32_t magic;
	uint32_t version;
	uint32_t flags;
	uint32_t nr_modules;
	uint64_t modlist_paddr;
	uint64_t cmdline_paddr;
	uint64_t rsdp_paddr;
	uint64_t memmap_paddr;		/* version >= 1 */
	uint32_t memmap_entries;
	uint32_t reserved;
};

struct hvm_modlist_entry {
	uint64_t paddr;
	uint64_t size;
	uint64_t cmdline_paddr;
	uint64_t reserved;
};

/* The module list (one entry: the initrd) follows the memmap in the boot data. */
#define PVH_MODLIST_GPA     (PVH_BOOT_DATA_GPA + 0x400)

struct hvm_memmap_table_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;			/* 1 = RAM, 2 = reserved */
	uint32_t reserved;
};

/*
 * Guest RAM as the loader sees it: where each block lies in the guest and
 * where ferry maps it.  The board describes it (arch/ knows nothing of how
 * RAM is allocated); blocks are in address order, the first at gpa 0.
 */
#define PVH_MAX_RAM 4

struct pvh_ram_block {
	uint64_t gpa;
	uint64_t size;
	uint8_t *host;
};

struct pvh_ram {
	unsigned nr;
	struct pvh_ram_block block[PVH_MAX_RAM];
};

struct pvh_kernel {
	uint32_t entry;			/* 32-bit physical entry point */
	uint64_t load_low, load_high;	/* lowest and highest byte loaded */
};

/*
 * Copy the PT_LOAD segments of the ELF `image` (len bytes, ELF32 or ELF64,
 * x86) into guest memory at their physical addresses and find the PVH entry.
 * The image is untrusted: every offset and size is checked.  Returns 0, or
 * -ENOEXEC (not a usable PVH ELF) / -ERANGE (does not fit in guest RAM) with
 * a reason in `why`.  Guest memory may be partly written on failure.
 */
int pvh_load_elf(const struct pvh_ram *ram, const void *image, size_t len,
		 struct pvh_kernel *out, char *why, size_t whylen)
	__attribute__((warn_unused_result));

/* Host pointer for guest [gpa, gpa + len) if it lies inside one block, else NULL. */
uint8_t *pvh_ram_ptr(const struct pvh_ram *ram, uint64_t gpa, uint64_t len);
uint64_t pvh_ram_size(const struct pvh_ram *ram);

/*
 * The guest's memory map (the same for PVH and the Linux boot protocol's
 * e820): low RAM, the legacy hole 0xa0000-0x100000 reserved, then each
 * block.  Returns the entries written (at most max).
 */
unsigned pvh_memmap(const struct pvh_ram *ram, struct hvm_memmap_table_entry *map,
		    unsigned max);

/*
 * Where an initrd of `size` bytes goes: page-aligned, as high in the RAM
 * below 4 GiB as it fits, above the kernel (which ends at load_high).
 * 0, or -ERANGE with a reason in why.
 */
int pvh_place_initrd(const struct pvh_ram *ram, uint64_t load_high, uint64_t size,
		     uint64_t *addr, char *why, size_t whylen) __attribute__((warn_unused_result));

/*
 * Write hvm_start_info (version 1), the memory map, the command line and,
 * when initrd_size is not 0, a module list with the initrd (already in
 * guest RAM at initrd_addr) into guest RAM.  Returns the start_info
 * address (for EBX) in *start_info, 0, or -E2BIG when the command line is
 * too long.
 */
int pvh_write_start_info(const struct pvh_ram *ram, const char *cmdline,
			 uint64_t initrd_addr, uint64_t initrd_size,
			 uint64_t *start_info) __attribute__((warn_unused_result));

#endif
