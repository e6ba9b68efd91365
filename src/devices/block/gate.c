/* A disk's gate (gate.h). */
#include "devices/block/gate.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define GATE_ASK_BATCH 64	/* ranges asked for per unlock */

static bool gate_test(const uint64_t *b, uint64_t i)
{
	return b[i / 64] & (1ULL << (i % 64));
}

void block_gate_init(struct block_gate *g)
{
	memset(g, 0, sizeof(*g));
	pthread_mutex_init(&g->lock, NULL);
	pthread_cond_init(&g->idle, NULL);
	g->state = BLOCK_GATE_OPEN;
}

static void gate_free(struct block_gate *g)
{
	free(g->absent);
	free(g->asked);
	g->absent = g->asked = NULL;
	g->nbits = g->nr_absent = 0;
}

void block_gate_destroy(struct block_gate *g)
{
	gate_free(g);
	g->state = BLOCK_GATE_OPEN;
	pthread_cond_destroy(&g->idle);
	pthread_mutex_destroy(&g->lock);
}

void block_gate_set_notify(struct block_gate *g, void (*fn)(void *opaque), void *opaque)
{
	pthread_mutex_lock(&g->lock);
	g->notify = fn;
	g->notify_opaque = opaque;
	pthread_mutex_unlock(&g->lock);
}

static void gate_unlock_notify(struct block_gate *g, bool tell)
{
	void (*fn)(void *) = g->notify;
	void *opaque = g->notify_opaque;

	pthread_mutex_unlock(&g->lock);
	if (tell && fn)
		fn(opaque);
}

int block_gate_close(struct block_gate *g, uint64_t size, uint64_t gran, const uint64_t *absent,
		     void (*want)(void *opaque, uint64_t range), void *opaque)
{
	if (!gran || (gran & (gran - 1)) || !size || !absent)
		return -EINVAL;
	uint64_t nbits = (size + gran - 1) / gran, words = nbits / 64 + 1;
	uint64_t *a = calloc(words, 8), *k = calloc(words, 8), n = 0;

	if (!a || !k) {
		free(a);
		free(k);
		return -ENOMEM;
	}
	for (uint64_t i = 0; i < nbits; i++)
		if (gate_test(absent, i)) {
			a[i / 64] |= 1ULL << (i % 64);
			n++;
		}
	pthread_mutex_lock(&g->lock);
	if (g->state != BLOCK_GATE_OPEN || g->absent) {
		pthread_mutex_unlock(&g->lock);
		free(a);
		free(k);
		return -EINVAL;
	}
	g->absent = a;
	g->asked = k;
	g->nbits = nbits;
	g->gran = gran;
	g->nr_absent = n;
	g->want = want;
	g->want_opaque = opaque;
	g->state = BLOCK_GATE_CLOSED;
	pthread_mutex_unlock(&g->lock);
	return 0;
}

bool block_gate_fill(struct block_gate *g, uint64_t r)
{
	bool was = false;

	pthread_mutex_lock(&g->lock);
	if (g->state == BLOCK_GATE_CLOSED && r < g->nbits && gate_test(g->absent, r)) {
		g->absent[r / 64] &= ~(1ULL << (r % 64));
		g->nr_absent--;
		was = true;
	}
	gate_unlock_notify(g, was);
	return was;
}

bool block_gate_absent(struct block_gate *g, uint64_t r)
{
	pthread_mutex_lock(&g->lock);
	bool a = g->state == BLOCK_GATE_CLOSED && r < g->nbits && gate_test(g->absent, r);
	pthread_mutex_unlock(&g->lock);
	return a;
}

uint64_t block_gate_count(struct block_gate *g)
{
	pthread_mutex_lock(&g->lock);
	uint64_t n = g->state == BLOCK_GATE_CLOSED ? g->nr_absent : 0;
	pthread_mutex_unlock(&g->lock);
	return n;
}

uint64_t block_gate_snapshot(struct block_gate *g, uint64_t *out, uint64_t nbits)
{
	uint64_t n = 0;

	pthread_mutex_lock(&g->lock);
	if (g->state == BLOCK_GATE_CLOSED && nbits == g->nbits) {
		memcpy(out, g->absent, (nbits / 64 + 1) * 8);
		n = g->nr_absent;
	}
	pthread_mutex_unlock(&g->lock);
	return n;
}

/*
 * Lock held: call want (as it is now) for ranges, outside the lock, and
 * return with the lock released.  finish waits until no call is under way.
 */
static void gate_ask_unlock(struct block_gate *g, const uint64_t *ranges, unsigned n)
{
	void (*want)(void *, uint64_t) = g->want;
	void *opaque = g->want_opaque;

	if (!want || !n) {
		pthread_mutex_unlock(&g->lock);
		return;
	}
	g->asking++;
	pthread_mutex_unlock(&g->lock);
	for (unsigned i = 0; i < n; i++)
		want(opaque, ranges[i]);
	pthread_mutex_lock(&g->lock);
	if (!--g->asking)
		pthread_cond_broadcast(&g->idle);
	pthread_mutex_unlock(&g->lock);
}

void block_gate_reask(struct block_gate *g)
{
	uint64_t batch[GATE_ASK_BATCH], next = 0;
	unsigned n;

	do {
		n = 0;
		pthread_mutex_lock(&g->lock);
		for (; g->state == BLOCK_GATE_CLOSED && next < g->nbits && n < GATE_ASK_BATCH; next++)
			if (gate_test(g->absent, next) && gate_test(g->asked, next))
				batch[n++] = next;
		gate_ask_unlock(g, batch, n);
	} while (n == GATE_ASK_BATCH);
}

void block_gate_finish(struct block_gate *g, bool failed)
{
	pthread_mutex_lock(&g->lock);
	bool tell = g->state == BLOCK_GATE_CLOSED;
	if (g->state == BLOCK_GATE_CLOSED && (failed || g->nr_absent)) {
		g->state = BLOCK_GATE_FAILED;	/* keep the bitmap: those ranges fail */
		g->want = NULL;
	} else if (g->state == BLOCK_GATE_CLOSED) {
		gate_free(g);
		g->state = BLOCK_GATE_OPEN;
		g->want = NULL;
	}
	while (g->asking)
		pthread_cond_wait(&g->idle, &g->lock);
	gate_unlock_notify(g, tell);
}

int block_gate_check(struct block_gate *g, uint64_t off, uint64_t len)
{
	uint64_t batch[GATE_ASK_BATCH];
	unsigned n = 0;
	int ret = 1;

	if (!len)
		return 1;
	pthread_mutex_lock(&g->lock);
	if (g->state == BLOCK_GATE_OPEN) {
		pthread_mutex_unlock(&g->lock);
		return 1;
	}
	uint64_t first = off / g->gran, last = (off + len - 1) / g->gran;
	for (uint64_t r = first; r <= last && r < g->nbits; r++) {
		if (!gate_test(g->absent, r))
			continue;
		if (g->state == BLOCK_GATE_FAILED) {
			ret = -EIO;
			break;
		}
		ret = 0;
		if (!gate_test(g->asked, r) && n < GATE_ASK_BATCH) {
			g->asked[r / 64] |= 1ULL << (r % 64);
			batch[n++] = r;
		}
	}
	gate_ask_unlock(g, batch, ret == 0 ? n : 0);
	return ret;
}
