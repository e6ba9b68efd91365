/*
 * Only what changed (ISR's temporal locality): a destination started with
 * `--base FILE` holds an earlier save file of the same VM.  It loads that
 * RAM first and sends the digest of every page it now holds (BASE_SUMS,
 * return path); the source leaves out of its first pass every page whose
 * digest is the same, so only pages that differ travel
 * (docs/migration-stream.md, "Base").
 *
 * This file is the pure part both sides share: the capability bit, the
 * BASE_SUMS encoding and its hostile checks, the comparison, and the
 * check that a save file fits the VM that arrives.  No I/O here.
 */
#ifndef FERRY_MIGRATION_BASE_H
#define FERRY_MIGRATION_BASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "migration/config.h"

/*
 * Bit 31 of CONFIG's codec set and of READY's: not a codec but the
 * source's offer (CONFIG) and the destination's acceptance (READY) of a
 * base.  A destination that does not know it masks it off like any codec
 * it does not know, so an older one never answers with it.
 */
#define MIG_CAP_BASE		(1u << 31)
/* Digests per BASE_SUMS section: 16384 pages (64 MiB of RAM), 128 KiB. */
#define MIG_BASE_SUMS_MAX	16384u
#define MIG_BASE_SUMS_HDR	12u	/* first page (u64), count (u32) */

/* The count the BASE_SUMS section starting at page `first` of `pages` must carry. */
static inline uint32_t mig_base_sums_count(uint64_t first, uint64_t pages)
{
	return pages - first < MIG_BASE_SUMS_MAX ? (uint32_t)(pages - first) : MIG_BASE_SUMS_MAX;
}

/* A BASE_SUMS payload into out (MIG_BASE_SUMS_HDR + 8 * count bytes); its length. */
uint32_t mig_base_sums_encode(uint8_t *out, uint64_t first, uint32_t count, const uint64_t *sums);

/*
 * Check a BASE_SUMS payload from the destination (hostile): it must be the
 * one that starts at page `next` of `pages` and carry exactly
 * mig_base_sums_count(next, pages) digests.  0 with *count set, or
 * -EPROTO with the reason in why.
 */
int mig_base_sums_decode(const uint8_t *p, uint32_t len, uint64_t next, uint64_t pages,
			 uint32_t *count, char *why, size_t whylen)
	__attribute__((warn_unused_result));

/* Digest k of a checked BASE_SUMS payload. */
uint64_t mig_base_sum(const uint8_t *p, uint32_t k);

/*
 * Compare n of our page digests `mine` with digests k0 .. k0 + n - 1 of a
 * checked payload: bit i of `owed` (starting at bit `bit0`) is set where
 * they differ and cleared where they match.  Returns how many differ.
 */
uint32_t mig_base_diff(const uint8_t *p, uint32_t k0, const uint64_t *mine, uint32_t n,
		       unsigned long *owed, uint64_t bit0);

/*
 * Does a save file made of a VM with configuration `base` fit the VM that
 * arrives with `cfg`?  The same memory size and page size, so the same
 * page layout (page i is the same guest address on both).  0, or -EINVAL
 * with what differs in why.
 */
int mig_base_fits(const struct mig_config *base, const struct mig_config *cfg, char *why,
		  size_t whylen) __attribute__((warn_unused_result));

#endif
