/*
 * The save file's layout (docs/save-format.md): a header page, the
 * metadata (configuration, disks, NICs, device state), the block table
 * (which pages hold data, and a checksum per block), then guest RAM at
 * fixed page-aligned offsets: page i at ram_off + i * 4096, or (packed,
 * as a save writes) 32 MiB segments at fixed offsets, each holding its
 * data pages one after another; so the file is never larger than its RAM
 * plus a little, and pages that were never written or are all zero are
 * holes in it (packed: one hole at the end of each segment).
 *
 * Everything here is pure (no I/O): the decoders take a file's bytes as
 * hostile and refuse anything out of place with the reason in `why`.
 */
#ifndef FERRY_MIGRATION_SAVEFILE_FORMAT_H
#define FERRY_MIGRATION_SAVEFILE_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "devices/block/backend.h"
#include "devices/net/backend.h"
#include "migration/config.h"

#define SAVEFILE_MAGIC		"FERRYSAV"
/* 3: packed RAM (SAVEFILE_F_PACKED); 2: disk records, copied disks; 1 and 2 are still read */
#define SAVEFILE_VERSION	3
#define SAVEFILE_HEADER_SIZE	4096
#define SAVEFILE_PAGE_SIZE	4096
/* Pages per checksummed block: 256 KiB, one read and one hash on a lazy fault. */
#define SAVEFILE_BLOCK_PAGES	64
#define SAVEFILE_ENTRY_SIZE	16	/* a block table entry: data mask, hash */
#define SAVEFILE_RAM_ALIGN	(1ULL << 20)
/*
 * Header flags (version 3).  SAVEFILE_F_PACKED: RAM is cut into segments
 * of SAVEFILE_SEG_PAGES pages, each at its fixed offset (segment s at
 * ram_off + s * SAVEFILE_SEG_PAGES pages); inside a segment only the pages
 * that hold data are stored, one after another in page order, and the
 * rest of the segment stays one hole.  Without it, page i is at
 * ram_off + i pages (a live snapshot writes so).
 */
#define SAVEFILE_F_PACKED	0x1
#define SAVEFILE_F_ALL		0x1
#define SAVEFILE_SEG_PAGES	8192	/* 32 MiB: a whole number of blocks */
#define SAVEFILE_META_MAX	(64ULL << 20)
#define SAVEFILE_SPEC_MAX	(PATH_MAX + 128)	/* one disk or NIC, as its option */
#define SAVEFILE_DISK_REC_SIZE	50	/* a disk record in the metadata (version 2) */
#define SAVEFILE_DISK_MAX	(1ULL << 44)	/* 16 TiB: the largest disk a save copies */
#define SAVEFILE_IDENT_LEN	65536	/* a disk's identity: XXH3-64 of its first 64 KiB */

/* The header, decoded.  Offsets are from the start of the file. */
struct savefile_header {
	uint32_t version;
	uint32_t flags;			/* SAVEFILE_F_* (version 3; else 0) */
	uint32_t block_pages;
	uint64_t memory;		/* guest RAM bytes */
	uint64_t pages, blocks;
	uint64_t meta_off, meta_len, meta_hash;
	uint64_t table_off, table_len, table_hash;
	uint64_t ram_off;
	uint64_t disk_off;		/* ram_off + memory: the copied disks' regions */
	uint64_t disk_len;		/* their total length (0: no disk copied) */
	uint64_t file_size;		/* disk_off + disk_len: the file's exact size */
	uint64_t saved_ns;		/* CLOCK_REALTIME of the save (information only) */
};

/* One block of the table: bit k of `data` set when page k holds data in the file. */
struct savefile_block {
	uint64_t data;
	uint64_t hash;
};

/* How a save keeps a disk (ferry save --disks). */
enum savefile_disk_mode {
	SAVEFILE_DISK_PATH = 0,	/* by its path, size and identity: the restore opens it */
	SAVEFILE_DISK_COPY = 1,	/* its contents in a region of the file */
};

/* Record flags. */
#define SAVEFILE_DISK_F_IDENT	0x01	/* size and ident hold the image's (else an NBD export) */
#define SAVEFILE_DISK_F_LIVE	0x02	/* the guest ran on after the save: the image may change */
#define SAVEFILE_DISK_F_ALL	0x03

/*
 * One disk's record (version 2), after the --disk options: what the image
 * was at the save, and with SAVEFILE_DISK_COPY where its contents are.
 */
struct savefile_disk_rec {
	uint8_t mode;		/* enum savefile_disk_mode */
	uint8_t flags;		/* SAVEFILE_DISK_F_* */
	uint64_t size;		/* the image's bytes */
	uint64_t ident;		/* XXH3-64 of its first min(size, 64 KiB) bytes */
	uint64_t off, len;	/* copy: its region (4 KiB aligned; len = size rounded up to 4 KiB) */
	uint64_t data_pages;	/* copy: pages of the region that hold data (not all zero) */
	uint64_t digest;	/* copy: savefile_disk_hash() of its contents */
};

/* The metadata, decoded; strings are NUL-terminated copies. */
struct savefile_meta {
	struct mig_config cfg;
	char kernel[PATH_MAX];
	unsigned nr_disks, nr_nics;
	char disks[8][SAVEFILE_SPEC_MAX];	/* as --disk options */
	bool has_recs;				/* version 2: drec[] holds each disk's record */
	struct savefile_disk_rec drec[8];
	char nics[8][SAVEFILE_SPEC_MAX];	/* as --net options */
	const uint8_t *state;		/* device state records, inside the buffer decoded */
	uint32_t state_len;
};

/* Lay out a file for `memory` bytes of RAM and meta_len bytes of metadata. */
void savefile_layout(struct savefile_header *h, uint64_t memory, uint64_t meta_len);
/*
 * Then place the copied disks of recs (mode SAVEFILE_DISK_COPY, size set)
 * one after another from h->disk_off: each record's off and len, and
 * h's disk_len and file_size.  Returns 0 or -E2BIG (a disk over
 * SAVEFILE_DISK_MAX).
 */
int savefile_layout_disks(struct savefile_header *h, struct savefile_disk_rec *recs,
			  unsigned n) __attribute__((warn_unused_result));
/*
 * Do decoded records fit the checked header h: every copied disk's
 * region exactly where savefile_layout_disks() puts it, inside the file,
 * and together exactly h->disk_len?  0 or -EPROTO with the reason in why.
 */
int savefile_check_disks(const struct savefile_header *h, const struct savefile_meta *meta,
			 char *why, size_t whylen) __attribute__((warn_unused_result));

/* The header page (SAVEFILE_HEADER_SIZE bytes), checksum included. */
void savefile_header_encode(const struct savefile_header *h, uint8_t *page);

/*
 * Decode and check the header page of a file of file_size bytes.
 * Returns 0, -EPROTONOSUPPORT (another version) or -EPROTO (damaged,
 * truncated, inconsistent), with the reason in why.
 */
int savefile_header_decode(const uint8_t *page, uint64_t file_size,
			   struct savefile_header *h, char *why, size_t whylen)
	__attribute__((warn_unused_result));

/* The block table's checksum, and the block hash seed (its index). */
uint64_t savefile_table_hash(const uint8_t *table, uint64_t len);

/* Decode entry b of a table whose checksum matched; -EPROTO if its mask runs past the block. */
int savefile_block_decode(const struct savefile_header *h, const uint8_t *table, uint64_t b,
			  struct savefile_block *out) __attribute__((warn_unused_result));
void savefile_block_encode(uint8_t *table, uint64_t b, const struct savefile_block *in);

/* The pages of block b: first page index and count. */
static inline uint64_t savefile_block_first(const struct savefile_header *h, uint64_t b)
{
	return b * h->block_pages;
}

static inline unsigned savefile_block_npages(const struct savefile_header *h, uint64_t b)
{
	uint64_t left = h->pages - b * h->block_pages;

	return left < h->block_pages ? (unsigned)left : h->block_pages;
}

/*
 * Where block b's data starts in the file: its pages that hold data lie
 * there one after another (packed), or each at its own page's offset
 * (not packed: the data pages of the block at that offset plus k pages).
 * table: a table whose checksum matched; never past the block's segment.
 */
uint64_t savefile_block_off(const struct savefile_header *h, const uint8_t *table, uint64_t b);
/* The file offset of page k of block b, which holds data (its bit in `data` is set). */
uint64_t savefile_page_off(const struct savefile_header *h, const uint8_t *table, uint64_t b,
			   unsigned k);

/*
 * The metadata: the configuration record, the kernel's name, the disks
 * and NICs as the options that recreate them, then the device state.
 * encode returns 0 or -errno (-E2BIG: too large); *out is malloc'ed.
 */
/*
 * recs: one record per disk (NULL: each SAVEFILE_DISK_PATH without
 * identity).
 */
int savefile_meta_encode(const struct mig_config *cfg, const char *kernel,
			 const char *const *disks, const struct savefile_disk_rec *recs,
			 unsigned nr_disks,
			 const char *const *nics, unsigned nr_nics,
			 const uint8_t *state, size_t state_len, uint8_t **out, size_t *len)
	__attribute__((warn_unused_result));
/*
 * Decode len bytes of checked metadata of a file of `version` (1: no disk
 * records); 0 or -EPROTO with the reason in why.
 */
int savefile_meta_decode(const uint8_t *p, uint64_t len, uint32_t version,
			 struct savefile_meta *meta, char *why, size_t whylen)
	__attribute__((warn_unused_result));

/* A disk or NIC as the option that recreates it.  Returns 0 or -EINVAL (why). */
int savefile_disk_spec(const struct block_config *c, char *buf, size_t len, char *why,
		       size_t whylen) __attribute__((warn_unused_result));
int savefile_nic_spec(const struct net_config *c, char *buf, size_t len, char *why,
		      size_t whylen) __attribute__((warn_unused_result));

#endif
