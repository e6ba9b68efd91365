/*
 * Decoders for what a destination sends the source on the return path
 * (docs/migration-stream.md).  Its bytes are untrusted: each decoder checks
 * lengths and addresses before anything is used.  Pure: the fuzzer
 * (tests/fuzz/fuzz_return_path.c) drives them as the source does.
 */
#ifndef FERRY_MIGRATION_SOURCE_REPLY_H
#define FERRY_MIGRATION_SOURCE_REPLY_H

#include <stdint.h>

#include "vmm/memory.h"

/* PAGE_REQ: the index of the page asked for.  0, or -EPROTO (bad length, not a RAM page). */
int mig_reply_page_req(const uint8_t *p, uint32_t len, const struct guest_memory *mem,
		       uint64_t *index);

/*
 * PC_KNOWN: clear, in the per-region page bitmaps `owed`, each page the
 * destination says it holds.  0, or -EPROTO (malformed, or a page that is
 * not RAM; bits before it may already be cleared).
 */
int mig_reply_known(const uint8_t *p, uint32_t len, const struct guest_memory *mem,
		    unsigned long *const *owed);

#endif
