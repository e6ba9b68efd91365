/* The dirty-block bitmap (dirty.h). */
#include "devices/block/dirty.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void block_dirty_init(struct block_dirty *d)
{
	pthread_mutex_init(&d->lock, NULL);
	d->bits = NULL;
	d->nbits = 0;
	d->gran = 0;
	d->fine = NULL;
	d->nfine = 0;
	d->blocking = false;
	d->marked = d->acked = 0;
	d->notify = NULL;
	d->notify_opaque = NULL;
}

void block_dirty_set_notify(struct block_dirty *d, void (*fn)(void *opaque), void *opaque)
{
	pthread_mutex_lock(&d->lock);
	d->notify = fn;
	d->notify_opaque = opaque;
	pthread_mutex_unlock(&d->lock);
}

/* Lock held: tell the device, once unlocked. */
static void dirty_unlock_notify(struct block_dirty *d, bool tell)
{
	void (*fn)(void *) = d->notify;
	void *opaque = d->notify_opaque;

	pthread_mutex_unlock(&d->lock);
	if (tell && fn)
		fn(opaque);
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
	uint64_t nfine = gran > BLOCK_DIRTY_FINE ? (size + BLOCK_DIRTY_FINE - 1) / BLOCK_DIRTY_FINE : 0;
	uint64_t *bits = calloc(nbits / 64 + 1, sizeof(*bits));
	uint64_t *fine = nfine ? calloc(nfine / 64 + 1, sizeof(*fine)) : NULL;

	if (!bits || (nfine && !fine)) {
		free(bits);
		free(fine);
		return -ENOMEM;
	}
	pthread_mutex_lock(&d->lock);
	free(d->bits);
	free(d->fine);
	d->bits = bits;
	d->nbits = nbits;
	d->gran = gran;
	d->fine = fine;
	d->nfine = nfine;
	pthread_mutex_unlock(&d->lock);
	return 0;
}

void block_dirty_stop(struct block_dirty *d)
{
	pthread_mutex_lock(&d->lock);
	free(d->bits);
	free(d->fine);
	d->bits = d->fine = NULL;
	d->nbits = d->nfine = 0;
	/* Nobody will send what is held any more: let it all complete. */
	bool tell = d->blocking;
	d->blocking = false;
	d->acked = d->marked;
	dirty_unlock_notify(d, tell);
}

uint64_t block_dirty_mark(struct block_dirty *d, uint64_t off, uint64_t len)
{
	uint64_t ticket = 0;

	if (!len)
		return 0;
	pthread_mutex_lock(&d->lock);
	if (d->bits) {
		uint64_t first = off / d->gran, last = (off + len - 1) / d->gran;
		/* The device checked the range; a bit past the end would still be a bug. */
		for (uint64_t i = first; i <= last && i < d->nbits; i++)
			d->bits[i / 64] |= 1ULL << (i % 64);
		first = off / BLOCK_DIRTY_FINE;
		last = (off + len - 1) / BLOCK_DIRTY_FINE;
		for (uint64_t i = first; d->fine && i <= last && i < d->nfine; i++)
			d->fine[i / 64] |= 1ULL << (i % 64);
		if (d->blocking)
			ticket = ++d->marked;
	}
	pthread_mutex_unlock(&d->lock);
	return ticket;
}

uint64_t block_dirty_acked(struct block_dirty *d)
{
	pthread_mutex_lock(&d->lock);
	uint64_t a = d->blocking ? d->acked : UINT64_MAX;
	pthread_mutex_unlock(&d->lock);
	return a;
}

int block_dirty_set_blocking(struct block_dirty *d, bool on)
{
	pthread_mutex_lock(&d->lock);
	if (on && !d->bits) {
		pthread_mutex_unlock(&d->lock);
		return -EINVAL;
	}
	bool tell = d->blocking && !on;
	d->blocking = on;
	if (!on)
		d->acked = d->marked;
	dirty_unlock_notify(d, tell);
	return 0;
}

void block_dirty_ack(struct block_dirty *d, uint64_t ticket)
{
	pthread_mutex_lock(&d->lock);
	/* Never past what was handed out: a later mark must still wait. */
	if (ticket > d->marked)
		ticket = d->marked;
	bool tell = ticket > d->acked;
	if (tell)
		d->acked = ticket;
	dirty_unlock_notify(d, tell);
}

uint64_t block_dirty_take(struct block_dirty *d, uint64_t *out, uint64_t nbits)
{
	uint64_t ticket;

	return block_dirty_take_ticket(d, out, nbits, &ticket);
}

uint64_t block_dirty_take_ticket(struct block_dirty *d, uint64_t *out, uint64_t nbits,
				 uint64_t *ticket)
{
	uint64_t n = 0;

	pthread_mutex_lock(&d->lock);
	*ticket = 0;		/* nothing taken: nothing to acknowledge */
	if (d->bits && nbits == d->nbits) {
		*ticket = d->marked;
		for (uint64_t w = 0; w < nbits / 64 + 1; w++) {
			n += (uint64_t)__builtin_popcountll(d->bits[w]);
			out[w] |= d->bits[w];
			d->bits[w] = 0;
		}
		if (d->fine)
			memset(d->fine, 0, (d->nfine / 64 + 1) * sizeof(*d->fine));
	}
	pthread_mutex_unlock(&d->lock);
	return n;
}

int64_t block_dirty_take_fine(struct block_dirty *d, uint64_t *fine, uint64_t nfine,
			      uint64_t *ticket)
{
	int64_t n = 0;

	pthread_mutex_lock(&d->lock);
	*ticket = 0;
	if (!d->fine || nfine != d->nfine) {
		pthread_mutex_unlock(&d->lock);
		return -EINVAL;
	}
	*ticket = d->marked;
	for (uint64_t w = 0; w < nfine / 64 + 1; w++) {
		n += __builtin_popcountll(d->fine[w]);
		fine[w] |= d->fine[w];
		d->fine[w] = 0;
	}
	memset(d->bits, 0, (d->nbits / 64 + 1) * sizeof(*d->bits));
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

uint64_t block_dirty_bytes(struct block_dirty *d)
{
	uint64_t n = 0, *bits, words, unit;

	pthread_mutex_lock(&d->lock);
	bits = d->fine ? d->fine : d->bits;
	words = d->fine ? d->nfine / 64 + 1 : d->nbits / 64 + 1;
	unit = d->fine ? BLOCK_DIRTY_FINE : d->gran;
	for (uint64_t w = 0; bits && w < words; w++)
		n += (uint64_t)__builtin_popcountll(bits[w]);
	pthread_mutex_unlock(&d->lock);
	return n * unit;
}
