/*
 * The small payloads of --channels (multi.h): an extra connection's hello,
 * and BARRIER.  Both are parsed as hostile input.
 */
#include "migration/multi.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "util/le.h"

void mig_chan_hello_encode(uint8_t out[MIG_CHAN_HELLO_LEN], const struct mig_chan_hello *h)
{
	memcpy(out, MIG_CHAN_MAGIC, 8);
	le_put(out + 8, MIG_VERSION, 4);
	le_put(out + 12, h->id, 8);
	le_put(out + 20, h->index, 4);
	le_put(out + 24, h->count, 4);
}

int mig_chan_hello_check(const uint8_t *p, size_t len, uint64_t id, uint32_t count,
			 uint32_t taken, bool preempt, struct mig_chan_hello *h, char *why,
			 size_t whylen)
{
	if (len < MIG_CHAN_HELLO_LEN) {
		snprintf(why, whylen, "a hello of %zu bytes (need %u)", len, MIG_CHAN_HELLO_LEN);
		return -EPROTO;
	}
	if (memcmp(p, MIG_CHAN_MAGIC, 8)) {
		snprintf(why, whylen, "not a ferry channel hello (bad magic)");
		return -EPROTO;
	}
	uint32_t version = (uint32_t)le_get(p + 8, 4);
	if (version != MIG_VERSION) {
		snprintf(why, whylen, "channel hello of stream version %u (this ferry speaks %u)",
			 version, MIG_VERSION);
		return -EPROTO;
	}
	h->id = le_get(p + 12, 8);
	h->index = (uint32_t)le_get(p + 20, 4);
	h->count = (uint32_t)le_get(p + 24, 4);
	if (!id || h->id != id) {
		snprintf(why, whylen, "a channel of another migration (id %016llx, this one's %016llx)",
			 (unsigned long long)h->id, (unsigned long long)id);
		return -EPROTO;
	}
	if (h->count != count) {
		snprintf(why, whylen, "a channel of %u connections; %u were agreed", h->count, count);
		return -EPROTO;
	}
	if (h->index == MIG_CHAN_PREEMPT) {
		if (!preempt) {
			snprintf(why, whylen, "a preempt connection, which was not agreed");
			return -EPROTO;
		}
		if (taken & MIG_CHAN_TAKEN_PREEMPT) {
			snprintf(why, whylen, "the preempt connection is connected already");
			return -EPROTO;
		}
		return 0;
	}
	if (h->index == 0 || h->index >= count || count > MIG_CHANNELS_MAX) {
		snprintf(why, whylen, "channel index %u (allowed 1..%u)", h->index,
			 count ? count - 1 : 0);
		return -EPROTO;
	}
	if (taken & (1u << h->index)) {
		snprintf(why, whylen, "channel %u is connected already", h->index);
		return -EPROTO;
	}
	return 0;
}

void mig_chan_barrier_encode(uint8_t out[MIG_CHAN_BARRIER_LEN], uint32_t seq, bool final)
{
	le_put(out, seq, 4);
	out[4] = final;
}

int mig_chan_barrier_parse(const uint8_t *p, uint32_t len, uint32_t *seq, bool *final)
{
	if (len != MIG_CHAN_BARRIER_LEN || p[4] > 1)
		return -EPROTO;
	*seq = (uint32_t)le_get(p, 4);
	*final = p[4];
	return 0;
}

uint64_t mig_chan_new_id(void)
{
	uint64_t id = 0;

	if (getrandom(&id, sizeof(id), GRND_NONBLOCK) != (ssize_t)sizeof(id)) {
		/* No entropy yet: unique enough to tell migrations apart, not a secret. */
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		id = ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 16);
	}
	return id ? id : 1;
}
