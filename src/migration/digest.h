/*
 * Page digests for --verify: one XXH3-64 per page of guest RAM, kept up to
 * date as pages are sent (source) and stored (destination), so the check
 * at switchover hashes 8 bytes per page, not the whole of RAM.
 */
#ifndef FERRY_MIGRATION_DIGEST_H
#define FERRY_MIGRATION_DIGEST_H

#include <stdint.h>

#include "vmm/memory.h"

struct mig_digest {
	uint64_t pages;
	uint64_t zero;		/* the XXH3 of a zero page, computed once */
	/* By page index (guest_memory_page_index): the page's XXH3 XOR a zero page's. */
	uint64_t *hash;
};

/*
 * A table for mem, every page a zero page; it takes memory only as pages
 * are set.
 */
int mig_digest_init(struct mig_digest *d, const struct guest_memory *mem)
	__attribute__((warn_unused_result));
void mig_digest_free(struct mig_digest *d);

/* Record the content of page `index` (data NULL: a zero page). */
void mig_digest_set(struct mig_digest *d, uint64_t index, const void *data);

/* The XXH3-64 of one page (data NULL: a zero page's), as DIGEST and BASE_SUMS use it. */
uint64_t mig_page_hash(const void *data);

/* Record page `index` by its mig_page_hash(). */
void mig_digest_put(struct mig_digest *d, uint64_t index, uint64_t hash);

/* The digest of the whole table. */
uint64_t mig_digest_total(const struct mig_digest *d);

/* Digest of the pages as they are in memory now (for checks and tests). */
uint64_t mig_digest_of_memory(const struct guest_memory *mem);

#endif
