/* Helpers shared by the save file's readers and writers; not for outside savefile/. */
#ifndef FERRY_MIGRATION_SAVEFILE_INTERNAL_H
#define FERRY_MIGRATION_SAVEFILE_INTERNAL_H

#include "migration/savefile/savefile.h"
#include "util/vmstate.h"

#include <xxhash.h>

bool savefile_page_zero(const uint8_t *p);
/*
 * All len bytes at off: 0, or -ENODATA where the file ends first (with
 * zero_past_end, what lies past the end reads as zeros and 0), or -errno.
 */
int savefile_pread(int fd, void *buf, uint64_t len, uint64_t off, bool zero_past_end)
	__attribute__((warn_unused_result));
/* All len bytes at off.  Returns 0 or -errno. */
int savefile_pwrite(int fd, const uint8_t *p, uint64_t len, uint64_t off)
	__attribute__((warn_unused_result));
/* m's configuration, disks, NICs and the encoded state as metadata.  0 or -errno (why). */
/*
 * Create PATH.tmp (*tmp, freed by the caller) for writing a save into:
 * owner-only, truncated, never through a symlink.  An fd, or -errno with
 * the reason in why.
 */
int savefile_create_tmp(const char *path, char **tmp, char *why, size_t whylen);
/* recs: one per disk of m, or NULL (by path, unchecked). */
int savefile_machine_meta(struct machine *m, const struct vmstate_buf *state,
			  const struct savefile_disk_rec *recs, uint8_t **meta, size_t *len,
			  char *why, size_t whylen) __attribute__((warn_unused_result));
/*
 * The records of m's disks for a save that keeps them by `mode`: each
 * image's size and identity (an NBD export: neither; it cannot be
 * copied), live: the guest runs on after the save.  0 or -errno (why).
 */
int savefile_machine_disks(struct machine *m, enum savefile_disk_mode mode, bool live,
			   struct savefile_disk_rec *recs, char *why, size_t whylen)
	__attribute__((warn_unused_result));
/* Metadata, table, then the header (checksums filled in h), synced.  0 or -errno. */
int savefile_finish(int fd, struct savefile_header *h, const uint8_t *table,
		    const uint8_t *meta, size_t meta_len) __attribute__((warn_unused_result));
void savefile_sync_dir(const char *path);
/* A copied disk's checksum takes each page that is not all zero: its index, then its bytes. */
void savefile_disk_hash_page(XXH3_state_t *xs, uint64_t index, const uint8_t *page);

#endif
