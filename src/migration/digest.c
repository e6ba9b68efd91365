#include "migration/digest.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>
#include "util/hash.h"

static uint64_t mig_zero_page_hash(void)
{
	static const uint8_t zero[GUEST_PAGE_SIZE];

	return XXH3_64bits(zero, sizeof(zero));
}

/*
 * The table holds each page's hash XOR the zero page's, so an entry never
 * written reads 0 and means "zero page": it is mapped without reserve and
 * never filled, and costs memory only where pages arrive.  A source's
 * announced size is untrusted; 8 bytes per announced page up front would
 * let it take 2 GiB of a destination's RAM per TiB it claims.
 */
int mig_digest_init(struct mig_digest *d, const struct guest_memory *mem)
{
	d->pages = guest_memory_pages(mem);
	d->zero = mig_zero_page_hash();
	void *p = mmap(NULL, d->pages * sizeof(uint64_t), PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED) {
		d->hash = NULL;
		d->pages = 0;
		return -ENOMEM;
	}
	d->hash = p;
	return 0;
}

void mig_digest_free(struct mig_digest *d)
{
	if (d->hash)
		munmap(d->hash, d->pages * sizeof(uint64_t));
	d->hash = NULL;
	d->pages = 0;
}

uint64_t mig_page_hash(const void *data)
{
	return data ? XXH3_64bits(data, GUEST_PAGE_SIZE) : mig_zero_page_hash();
}

void mig_digest_put(struct mig_digest *d, uint64_t index, uint64_t hash)
{
	d->hash[index] = hash ^ d->zero;
}

void mig_digest_set(struct mig_digest *d, uint64_t index, const void *data)
{
	d->hash[index] = data ? XXH3_64bits(data, GUEST_PAGE_SIZE) ^ d->zero : 0;
}

/* The XXH3 of the table of real per-page hashes (the stream's definition). */
uint64_t mig_digest_total(const struct mig_digest *d)
{
	const uint64_t z = d->zero;
	XXH3_state_t *st = XXH3_createState();
	uint64_t buf[512], total;

	if (!st)
		abort();	/* 576 bytes: nothing else would run either */
	XXH3_64bits_reset(st);
	for (uint64_t i = 0; i < d->pages;) {
		size_t n = 0;
		for (; n < sizeof(buf) / sizeof(buf[0]) && i < d->pages; n++, i++)
			buf[n] = d->hash[i] ^ z;
		XXH3_64bits_update(st, buf, n * sizeof(buf[0]));
	}
	total = XXH3_64bits_digest(st);
	XXH3_freeState(st);
	return total;
}

uint64_t mig_digest_of_memory(const struct guest_memory *mem)
{
	struct mig_digest d;
	uint64_t total;

	if (mig_digest_init(&d, mem))
		return 0;
	for (uint64_t i = 0; i < d.pages; i++)
		mig_digest_set(&d, i, guest_memory_page_ptr(mem, i));
	total = mig_digest_total(&d);
	mig_digest_free(&d);
	return total;
}
