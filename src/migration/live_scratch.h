/*
 * A synthetic 1 MiB live source for tests only (live_scratch.c): it
 * proves that a source is a file and a table line.  `ferry run
 * --test-hooks` allows it; the control command x-test-scratch fills it on
 * a source and reports its digest on either side.
 */
#ifndef FERRY_MIGRATION_LIVE_SCRATCH_H
#define FERRY_MIGRATION_LIVE_SCRATCH_H

#include <stdbool.h>
#include <stdint.h>

#define MIG_SCRATCH_SIZE (1u << 20)

/* This process may use the scratch source (--test-hooks), either side. */
void mig_scratch_allow(void);
/*
 * Fill the region with a pattern from `seed` and owe all of it to the next
 * migration; `hot`: refill it (seed + 1, + 2, ...) at every sync, as a
 * guest that keeps writing would.  0, -EPERM (not allowed) or -ENOMEM.
 */
int mig_scratch_fill(uint64_t seed, bool hot) __attribute__((warn_unused_result));
/* Whether it holds anything (filled or loaded), and the XXH3-64 of its bytes. */
void mig_scratch_query(bool *present, uint64_t *digest);

#endif
