/* The dirty-block bitmap (dirty.h). */
#include "devices/block/dirty.h"

#include <errno.h>
#include <stdlib.h>

void block_dirty_init(struct block_dirty *d)
{
	pthread_mutex_init(&d->lock, NULL);
	d->bits = NULL;
	d->nbits = 0;
	d->gran = 0;
}

void block_dirty_destroy(struct block_dirty *d)
{
	block_dirty_stop(d);
	pthread_mutex_destroy(&d->lock);
}

int block_dirty_start(struct block_dirty *d, uint64_t size, uint64_t gran)
{
	if (!gran || (gran & (gran - 1)))
		return -EINVAL;
	uint64_t nbits = (size + gran - 1) / gran;
	uint64_t *bits = calloc(nbits / 64 + 1, sizeof(*bits));

	if (!bits)
		return -ENOMEM;
	pthread_mutex_lock(&d->lock);
	free(d->bits);
	d->bits = bits;
	d->nbits = nbits;
	d->gran = gran;
	pthread_mutex_unlock(&d->lock);
	return 0;
}

void block_dirty_stop(struct block_dirty *d)
{
	pthread_mutex_lock(&d->lock);
	free(d->bits);
	d->bits = NULL;
	d->nbits = 0;
	pthread_mutex_unlock(&d->lock);
}

void block_dirty_mark(struct block_dirty *d, uint64_t off, uint64_t len)
{
	if (!len)
		return;
	pthread_mutex_lock(&d->lock);
	if (d->bits) {
		uint64_t first = off / d->gran, last = (off + len - 1) / d->gran;
		/* The device checked the range; a bit past the end would still be a bug. */
		for (uint64_t i = first; i <= last && i < d->nbits; i++)
			d->bits[i / 64] |= 1ULL << (i % 64);
	}
	pthread_mutex_unlock(&d->lock);
}

uint64_t block_dirty_take(struct block_dirty *d, uint64_t *out, uint64_t nbits)
{
	uint64_t n = 0;

	pthread_mutex_lock(&d->lock);
	if (d->bits && nbits == d->nbits) {
		for (uint64_t w = 0; w < nbits / 64 + 1; w++) {
			n += (uint64_t)__builtin_popcountll(d->bits[w]);
			out[w] |= d->bits[w];
			d->bits[w] = 0;
		}
	}
	pthread_mutex_unlock(&d->lock);
	return n;
}

uint64_t block_dirty_count(struct block_dirty *d)
{
	uint64_t n = 0;

	pthread_mutex_lock(&d->lock);
	for (uint64_t w = 0; d->bits && w < d->nbits / 64 + 1; w++)
		n += (uint64_t)__builtin_popcountll(d->bits[w]);
	pthread_mutex_unlock(&d->lock);
	return n;
}
