#include "migration/digest.h"

#include <errno.h>
#include <stdlib.h>
#include "util/hash.h"

static uint64_t mig_zero_page_hash(void)
{
	static const uint8_t zero[GUEST_PAGE_SIZE];

	return XXH3_64bits(zero, sizeof(zero));
}

int mig_digest_init(struct mig_digest *d, const struct guest_memory *mem)
{
	uint64_t z = mig_zero_page_hash();

	d->pages = guest_memory_pages(mem);
	d->hash = malloc(d->pages * sizeof(uint64_t));
	if (!d->hash)
		return -ENOMEM;
	for (uint64_t i = 0; i < d->pages; i++)
		d->hash[i] = z;
	return 0;
}

void mig_digest_free(struct mig_digest *d)
{
	free(d->hash);
	d->hash = NULL;
	d->pages = 0;
}

void mig_digest_set(struct mig_digest *d, uint64_t index, const void *data)
{
	d->hash[index] = data ? XXH3_64bits(data, GUEST_PAGE_SIZE) : mig_zero_page_hash();
}

uint64_t mig_digest_total(const struct mig_digest *d)
{
	return XXH3_64bits(d->hash, d->pages * sizeof(uint64_t));
}

uint64_t mig_digest_of_memory(const struct guest_memory *mem)
{
	struct mig_digest d;
	uint64_t total;

	if (mig_digest_init(&d, mem))
		return 0;
	for (uint64_t i = 0; i < d.pages; i++)
		d.hash[i] = XXH3_64bits(guest_memory_page_ptr(mem, i), GUEST_PAGE_SIZE);
	total = mig_digest_total(&d);
	mig_digest_free(&d);
	return total;
}
