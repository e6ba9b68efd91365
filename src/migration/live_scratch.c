/*
 * The scratch source (live_scratch.h): 1 MiB in 256 chunks of 4 KiB,
 * each with a dirty bit.  It sends its dirty chunks as SOURCE sections
 * (payload after the source id: chunk offset u32, then 4096 bytes) and
 * loads them on the destination.  Everything it has is process-global:
 * it outlives migrations, as a device would.
 */
#include "migration/live_scratch.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "migration/dest/incoming_internal.h"
#include "migration/migration.h"
#include "migration/section.h"
#include "migration/live.h"
#include "util/hash.h"
#include "util/le.h"

#define SCRATCH_CHUNK 4096u
#define SCRATCH_CHUNKS (MIG_SCRATCH_SIZE / SCRATCH_CHUNK)
#define SCRATCH_WORDS (SCRATCH_CHUNKS / 64)

/*
 * `lock` guards all of it: the control thread fills and queries, the
 * migration thread syncs and sends, the receiving thread loads.
 */
static struct {
	pthread_mutex_t lock;
	bool allowed;			/* --test-hooks */
	uint8_t *data;			/* NULL until filled or loaded */
	bool hot;			/* refill at every sync */
	uint64_t seed;
	uint64_t dirty[SCRATCH_WORDS];	/* written since last synced */
	uint64_t owed[SCRATCH_WORDS];	/* synced, not sent yet (migration thread) */
} scratch = { .lock = PTHREAD_MUTEX_INITIALIZER };

void mig_scratch_allow(void)
{
	pthread_mutex_lock(&scratch.lock);
	scratch.allowed = true;
	pthread_mutex_unlock(&scratch.lock);
}

/* A pattern no chunk shares with another, nor one seed with the next. */
static void scratch_pattern(uint64_t seed)
{
	uint64_t x = seed * 0x9e3779b97f4a7c15ULL + 1;

	for (uint32_t i = 0; i < MIG_SCRATCH_SIZE / 8; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(scratch.data + 8 * i, &x, 8);
	}
	memset(scratch.dirty, 0xff, sizeof(scratch.dirty));
}

int mig_scratch_fill(uint64_t seed, bool hot)
{
	int err = 0;

	pthread_mutex_lock(&scratch.lock);
	if (!scratch.allowed)
		err = -EPERM;
	else if (!scratch.data && !(scratch.data = malloc(MIG_SCRATCH_SIZE)))
		err = -ENOMEM;
	if (!err) {
		scratch.seed = seed;
		scratch.hot = hot;
		scratch_pattern(seed);
	}
	pthread_mutex_unlock(&scratch.lock);
	return err;
}

void mig_scratch_query(bool *present, uint64_t *digest)
{
	pthread_mutex_lock(&scratch.lock);
	*present = scratch.data != NULL;
	*digest = scratch.data ? XXH3_64bits(scratch.data, MIG_SCRATCH_SIZE) : 0;
	pthread_mutex_unlock(&scratch.lock);
}

static uint64_t scratch_count(const uint64_t *bits)
{
	uint64_t n = 0;

	for (unsigned w = 0; w < SCRATCH_WORDS; w++)
		n += (uint64_t)__builtin_popcountll(bits[w]);
	return n;
}

static bool scratch_active(struct migration *mig)
{
	pthread_mutex_lock(&scratch.lock);
	bool on = scratch.allowed && scratch.data;
	pthread_mutex_unlock(&scratch.lock);
	return on;
}

static bool scratch_accepted(void)
{
	pthread_mutex_lock(&scratch.lock);
	bool on = scratch.allowed;
	pthread_mutex_unlock(&scratch.lock);
	return on;
}

/* A new migration owes all of it: the destination holds nothing yet. */
static int scratch_setup(struct migration *mig)
{
	pthread_mutex_lock(&scratch.lock);
	memset(scratch.dirty, 0xff, sizeof(scratch.dirty));
	memset(scratch.owed, 0, sizeof(scratch.owed));
	pthread_mutex_unlock(&scratch.lock);
	return 0;
}

static int64_t scratch_sync(struct migration *mig)
{
	pthread_mutex_lock(&scratch.lock);
	if (scratch.hot)
		scratch_pattern(++scratch.seed);
	for (unsigned w = 0; w < SCRATCH_WORDS; w++) {
		scratch.owed[w] |= scratch.dirty[w];
		scratch.dirty[w] = 0;
	}
	uint64_t n = scratch_count(scratch.owed);
	pthread_mutex_unlock(&scratch.lock);
	return (int64_t)(n * SCRATCH_CHUNK);
}

static int64_t scratch_peek(struct migration *mig)
{
	pthread_mutex_lock(&scratch.lock);
	uint64_t n = scratch_count(scratch.dirty);
	pthread_mutex_unlock(&scratch.lock);
	return (int64_t)(n * SCRATCH_CHUNK);
}

/* Send every owed chunk, one SOURCE section each, copied under the lock. */
static int scratch_send(struct migration *mig, bool resend)
{
	uint8_t chunk[SCRATCH_CHUNK];
	uint64_t wire = 0;

	for (uint32_t i = 0; i < SCRATCH_CHUNKS; i++) {
		pthread_mutex_lock(&scratch.lock);
		bool owed = scratch.owed[i / 64] & (1ULL << (i % 64));
		scratch.owed[i / 64] &= ~(1ULL << (i % 64));
		if (owed)
			memcpy(chunk, scratch.data + (size_t)i * SCRATCH_CHUNK, SCRATCH_CHUNK);
		pthread_mutex_unlock(&scratch.lock);
		if (!owed)
			continue;
		struct mig_section_writer w;
		if (mig_source_section_begin(&w, &mig->s, MIG_SOURCE_SCRATCH, 4 + SCRATCH_CHUNK))
			break;
		mig_section_put_u32(&w, i * SCRATCH_CHUNK);
		mig_section_put(&w, chunk, SCRATCH_CHUNK);
		mig_section_end(&w);
		wire += MIG_SECTION_HDR + 8 + 4 + 4 + SCRATCH_CHUNK;
	}
	mig_source_account(mig, MIG_SOURCE_SCRATCH, wire);
	return mig_stream_error(&mig->s);
}

/* Destination: one chunk, checked, then stored. */
static int scratch_load(struct mig_in_ctx *c, uint8_t type, struct mig_payload *in)
{
	uint8_t off_le[4];

	if (mig_payload_left(in) != 4 + SCRATCH_CHUNK)
		return mig_in_fail(c->inc, -EPROTO, "scratch section of %u bytes (want %u)",
				   mig_payload_left(in), 4 + SCRATCH_CHUNK);
	if (mig_payload_get(in, off_le, 4))
		return mig_in_fail(c->inc, -EPROTO, "scratch section cut short");
	uint32_t off = (uint32_t)le_get(off_le, 4);
	if (off % SCRATCH_CHUNK || off >= MIG_SCRATCH_SIZE)
		return mig_in_fail(c->inc, -ERANGE, "scratch offset 0x%x is not a chunk of its %u bytes",
				   off, MIG_SCRATCH_SIZE);
	const uint8_t *p = mig_payload_ptr(in, SCRATCH_CHUNK);
	if (!p)
		return mig_in_fail(c->inc, -EPROTO, "scratch section cut short");
	pthread_mutex_lock(&scratch.lock);
	if (!scratch.data)
		scratch.data = calloc(1, MIG_SCRATCH_SIZE);
	if (scratch.data)
		memcpy(scratch.data + off, p, SCRATCH_CHUNK);
	pthread_mutex_unlock(&scratch.lock);
	return scratch.data ? 0 : mig_in_fail(c->inc, -ENOMEM, "out of memory");
}

const struct mig_source_ops mig_scratch_source = {
	.name = "scratch",
	.active = scratch_active,
	.accepted = scratch_accepted,
	.setup = scratch_setup,
	.sync = scratch_sync,
	.peek = scratch_peek,
	.iterate = scratch_send,
	.complete = scratch_send,
	.load = scratch_load,
};
