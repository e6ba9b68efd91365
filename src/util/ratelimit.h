/*
 * Token-bucket rate limiter (bytes per second), as Firecracker's
 * rate_limiter: a bucket of `burst` bytes refilled at `rate` bytes/s.
 * Not thread-safe: one owner (the migration thread) drives it.
 */
#ifndef FERRY_UTIL_RATELIMIT_H
#define FERRY_UTIL_RATELIMIT_H

#include <stdint.h>

struct ratelimit {
	uint64_t rate;		/* bytes per second; 0 = unlimited */
	uint64_t burst;		/* bucket size in bytes */
	double tokens;		/* may go negative: debt paid by sleeping */
	uint64_t last_ns;	/* CLOCK_MONOTONIC of the last refill */
};

/* rate 0 means unlimited.  burst 0 picks 1/20 s worth (at least 256 KiB). */
void ratelimit_init(struct ratelimit *rl, uint64_t rate, uint64_t burst);
/* Change the rate on the fly (e.g. unlimited for stop-and-copy). */
void ratelimit_set_rate(struct ratelimit *rl, uint64_t rate);
/*
 * Take `bytes` tokens; returns how many nanoseconds the caller must wait
 * before sending more (0 when within the budget).  `now_ns` is
 * CLOCK_MONOTONIC, passed in so tests can drive time.
 */
uint64_t ratelimit_take(struct ratelimit *rl, uint64_t bytes, uint64_t now_ns);
/* ratelimit_take() with the real clock, sleeping as needed. */
void ratelimit_consume(struct ratelimit *rl, uint64_t bytes);

#endif
