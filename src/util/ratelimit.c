#include "util/ratelimit.h"

#include <time.h>

static uint64_t ratelimit_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

void ratelimit_init(struct ratelimit *rl, uint64_t rate, uint64_t burst)
{
	rl->rate = rate;
	rl->burst = burst ? burst : (rate / 20 > 256 * 1024 ? rate / 20 : 256 * 1024);
	rl->tokens = (double)rl->burst;
	rl->last_ns = 0;
}

void ratelimit_set_rate(struct ratelimit *rl, uint64_t rate)
{
	ratelimit_init(rl, rate, 0);
}

uint64_t ratelimit_take(struct ratelimit *rl, uint64_t bytes, uint64_t now_ns)
{
	if (!rl->rate)
		return 0;
	if (rl->last_ns && now_ns > rl->last_ns) {
		rl->tokens += (double)(now_ns - rl->last_ns) * (double)rl->rate / 1e9;
		if (rl->tokens > (double)rl->burst)
			rl->tokens = (double)rl->burst;
	}
	rl->last_ns = now_ns;
	rl->tokens -= (double)bytes;
	if (rl->tokens >= 0)
		return 0;
	return (uint64_t)(-rl->tokens * 1e9 / (double)rl->rate);
}

void ratelimit_consume(struct ratelimit *rl, uint64_t bytes)
{
	uint64_t wait = ratelimit_take(rl, bytes, ratelimit_now());

	if (wait) {
		struct timespec ts = { (time_t)(wait / 1000000000ULL), (long)(wait % 1000000000ULL) };
		nanosleep(&ts, NULL);
	}
}
