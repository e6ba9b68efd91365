/*
 * Shared between incoming.c (the stream and pre-copy) and
 * incoming_postcopy.c (the post-copy sections, resume): not a public API.
 */
#ifndef FERRY_MIGRATION_INCOMING_INTERNAL_H
#define FERRY_MIGRATION_INCOMING_INTERNAL_H

#include "migration/incoming.h"
#include "board/machine_state.h"

/* What the stream may carry next. */
enum mig_in_phase {
	MIG_IN_CONFIG,		/* nothing yet: CONFIG */
	MIG_IN_PASS,		/* a PASS must come before any RAM */
	MIG_IN_RAM,		/* inside a live pass: RAM or the next PASS */
	MIG_IN_FINAL,		/* inside the final pass: RAM or STATE */
	MIG_IN_STATE,		/* STATE seen: DIGEST (with verify) or END */
	MIG_IN_DIGEST,		/* DIGEST seen: END */
	MIG_IN_DISCARD,		/* post-copy: more DISCARD, or STATE */
	MIG_IN_PC_STATE,	/* post-copy: STATE seen, POSTCOPY_RUN next */
	MIG_IN_PC_RUN,		/* post-copy: the guest runs; RAM, DIGEST, DONE */
	MIG_IN_PC_DIGEST,	/* post-copy: DIGEST seen, DONE next */
};

/* Record why the migration failed (the first reason wins); returns err. */
int mig_in_fail(struct mig_incoming *inc, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Check a RAM batch's page list (kinds, addresses, length).  0 or -errno. */
int mig_in_ram_check(struct mig_incoming *inc, struct machine *m, const uint64_t *ents,
		     uint32_t count, uint32_t len);
/* Check a RAM_RUN section's address, count and length.  0 or -errno. */
int mig_in_run_check(struct mig_incoming *inc, struct machine *m, uint64_t gpa, uint32_t count,
		     uint32_t len);
/* How many raw pages from ents[i] on lie back to back in one region (>= 1). */
uint32_t mig_in_raw_run(const struct guest_memory *mem, const uint64_t *ents, uint32_t i,
			uint32_t count);
/* Compare a DIGEST section with the pages received.  0 or -errno. */
int mig_in_digest(struct mig_incoming *inc, const uint8_t *p, uint32_t len);

/*
 * incoming_postcopy.c: handle a post-copy section; returns 1 when `type`
 * is not one (pre-copy handles it), -EAGAIN when it is out of order.
 */
int mig_in_pc_section(struct mig_incoming *inc, const struct mig_incoming_opts *opts,
		      struct machine *m, enum mig_in_phase *ph, struct machine_state *st,
		      uint8_t type, uint32_t len, bool *done);
/* Wait for a resuming source after a broken post-copy.  0 once it is back. */
int mig_in_pc_reconnect(struct mig_incoming *inc, const struct mig_incoming_opts *opts,
			struct machine *m);
/* Send the destination's post-copy counters to the source. */
void mig_in_pc_stats(struct mig_incoming *inc);

#endif
