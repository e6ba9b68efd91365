/*
 * The destination's state machine as one table (docs/migration-stream.md,
 * "Sections"): which section may come in which phase, who handles it, and
 * the phase after it.  Pre-copy handlers live in incoming.c, post-copy
 * ones in incoming_postcopy.c, the switchover's answer in
 * incoming_commit.c.  The destination side of a live source is a rule
 * whose handler calls the source's load (live.h): RAM and RAM_RUN go to
 * the RAM source (ram_load.c: streamed in pre-copy, whole in post-copy),
 * SOURCE to the source its id names.
 */
#include <errno.h>

#include "migration/format.h"
#include "migration/dest/incoming_internal.h"

#define P(ph) (1u << (ph))
#define LIVE (P(MIG_IN_PASS) | P(MIG_IN_RAM))
#define VERIFY MIG_FLAG_VERIFY
#define PC MIG_FLAG_POSTCOPY
#define REPL MIG_FLAG_REPLICATE

static const struct mig_in_rule mig_in_rules[] = {
	{ MIG_SEC_CONFIG, P(MIG_IN_CONFIG), 0, 0, MIG_IN_PASS, mig_in_h_config, NULL },
	/* Pre-copy. */
	{ MIG_SEC_PASS, LIVE, 0, 0, MIG_IN_SAME, mig_in_h_pass, NULL },
	{ MIG_SEC_RAM, P(MIG_IN_RAM) | P(MIG_IN_FINAL), 0, 0, MIG_IN_SAME, NULL, mig_in_h_ram },
	{ MIG_SEC_RAM_RUN, P(MIG_IN_RAM) | P(MIG_IN_FINAL), 0, 0, MIG_IN_SAME, NULL, mig_in_h_ram },
	/* Live sources other than RAM: their rest goes before STATE, also in post-copy. */
	/* Also before the first PASS: what a source checks before anything moves (disk sizes). */
	{ MIG_SEC_SOURCE, P(MIG_IN_PASS) | P(MIG_IN_RAM) | P(MIG_IN_FINAL), 0, 0, MIG_IN_SAME,
	  mig_in_h_source, NULL },
	{ MIG_SEC_SOURCE, P(MIG_IN_DISCARD), PC, 0, MIG_IN_SAME, mig_in_h_source, NULL },
	{ MIG_SEC_SYNC, P(MIG_IN_RAM), 0, 0, MIG_IN_SAME, mig_in_h_sync, NULL },
	{ MIG_SEC_BARRIER, P(MIG_IN_RAM) | P(MIG_IN_FINAL), 0, 0, MIG_IN_SAME, mig_in_h_barrier,
	  NULL },
	{ MIG_SEC_STATE, P(MIG_IN_FINAL), 0, 0, MIG_IN_STATE, mig_in_h_state, NULL },
	{ MIG_SEC_DIGEST, P(MIG_IN_STATE), VERIFY, 0, MIG_IN_DIGEST, mig_in_h_digest, NULL },
	{ MIG_SEC_END, P(MIG_IN_DIGEST), VERIFY, 0, MIG_IN_COMMIT, mig_in_h_end, NULL },
	{ MIG_SEC_END, P(MIG_IN_STATE), 0, VERIFY, MIG_IN_COMMIT, mig_in_h_end, NULL },
	{ MIG_SEC_GO, P(MIG_IN_COMMIT), 0, 0, MIG_IN_SAME, mig_in_h_go, NULL },
	{ MIG_SEC_SOURCE, P(MIG_IN_COMMIT), 0, 0, MIG_IN_SAME, mig_in_h_source_late, NULL },
	{ MIG_SEC_ABORT, P(MIG_IN_COMMIT), 0, 0, MIG_IN_SAME, mig_in_h_abort, NULL },
	/* After GO, the guest running here: only frames that still reached the source. */
	{ MIG_SEC_SOURCE, P(MIG_IN_AFTER_GO), 0, 0, MIG_IN_SAME, mig_in_h_source_after_go, NULL },
	{ MIG_SEC_END, P(MIG_IN_AFTER_GO), 0, 0, MIG_IN_SAME, mig_in_h_after_go_end, NULL },
	/* Replication (docs/replication.md): epochs after END, applied only whole. */
	{ MIG_SEC_EPOCH, P(MIG_IN_STANDBY), REPL, 0, MIG_IN_EPOCH, mig_in_h_epoch, NULL },
	{ MIG_SEC_RAM, P(MIG_IN_EPOCH), REPL, 0, MIG_IN_SAME, NULL, mig_in_h_ram },
	{ MIG_SEC_RAM_RUN, P(MIG_IN_EPOCH), REPL, 0, MIG_IN_SAME, NULL, mig_in_h_ram },
	{ MIG_SEC_EPOCH_DISK, P(MIG_IN_EPOCH), REPL, 0, MIG_IN_SAME, mig_in_h_epoch_disk, NULL },
	{ MIG_SEC_STATE, P(MIG_IN_EPOCH), REPL, 0, MIG_IN_SAME, mig_in_h_epoch_state, NULL },
	{ MIG_SEC_EPOCH_END, P(MIG_IN_EPOCH), REPL, 0, MIG_IN_STANDBY, mig_in_h_epoch_end, NULL },
	{ MIG_SEC_HEARTBEAT, P(MIG_IN_STANDBY), REPL, 0, MIG_IN_SAME, mig_in_h_heartbeat, NULL },
	{ MIG_SEC_ABORT, P(MIG_IN_STANDBY) | P(MIG_IN_EPOCH), REPL, 0, MIG_IN_SAME,
	  mig_in_h_stand_down, NULL },
	/* Post-copy (docs/postcopy.md). */
	{ MIG_SEC_DISCARD, LIVE | P(MIG_IN_DISCARD), PC, 0, MIG_IN_DISCARD, mig_in_h_discard, NULL },
	{ MIG_SEC_STATE, LIVE | P(MIG_IN_DISCARD), PC, 0, MIG_IN_PC_STATE, mig_in_h_state, NULL },
	{ MIG_SEC_POSTCOPY_RUN, P(MIG_IN_PC_STATE), 0, 0, MIG_IN_PC_RUN, mig_in_h_pc_run, NULL },
	{ MIG_SEC_RAM, P(MIG_IN_PC_RUN), 0, 0, MIG_IN_SAME, mig_in_h_pc_ram, NULL },
	{ MIG_SEC_RAM_RUN, P(MIG_IN_PC_RUN), 0, 0, MIG_IN_SAME, mig_in_h_pc_ram, NULL },
	/* Sources fetched on demand too (the disks): their data while the guest runs. */
	{ MIG_SEC_SOURCE, P(MIG_IN_PC_RUN), 0, 0, MIG_IN_SAME, mig_in_h_pc_source, NULL },
	{ MIG_SEC_DIGEST, P(MIG_IN_PC_RUN), VERIFY, 0, MIG_IN_PC_DIGEST, mig_in_h_digest, NULL },
	{ MIG_SEC_POSTCOPY_DONE, P(MIG_IN_PC_DIGEST), VERIFY, 0, MIG_IN_SAME, mig_in_h_pc_done,
	  NULL },
	{ MIG_SEC_POSTCOPY_DONE, P(MIG_IN_PC_RUN), 0, VERIFY, MIG_IN_SAME, mig_in_h_pc_done, NULL },
};

#define MIG_IN_NR_RULES (sizeof(mig_in_rules) / sizeof(mig_in_rules[0]))

/* What may come next, for messages (after STATE: DIGEST with verify, else END). */
static const char *mig_in_expect(enum mig_in_phase ph, bool verify)
{
	static const char *const expect[MIG_IN_PHASES] = {
		[MIG_IN_CONFIG] = "CONFIG", [MIG_IN_PASS] = "PASS", [MIG_IN_RAM] = "RAM or PASS",
		[MIG_IN_FINAL] = "RAM or STATE", [MIG_IN_STATE] = "END", [MIG_IN_DIGEST] = "END",
		[MIG_IN_DISCARD] = "DISCARD or STATE", [MIG_IN_PC_STATE] = "POSTCOPY_RUN",
		[MIG_IN_PC_RUN] = "RAM or POSTCOPY_DONE", [MIG_IN_PC_DIGEST] = "POSTCOPY_DONE",
		[MIG_IN_COMMIT] = "GO or ABORT",
		[MIG_IN_STANDBY] = "EPOCH or HEARTBEAT", [MIG_IN_EPOCH] = "RAM, EPOCH_DISK, STATE or EPOCH_END",
		[MIG_IN_AFTER_GO] = "SOURCE net or END",
	};

	return ph == MIG_IN_STATE && verify ? "DIGEST" : expect[ph];
}

/* The rule for a section of `type` now; NULL if none (*known: the type exists). */
static const struct mig_in_rule *mig_in_rule_find(uint8_t type, enum mig_in_phase ph,
						  uint32_t flags, bool *known)
{
	*known = false;
	for (size_t i = 0; i < MIG_IN_NR_RULES; i++) {
		const struct mig_in_rule *r = &mig_in_rules[i];
		if (r->type != type)
			continue;
		*known = true;
		if ((r->phases & P(ph)) && (flags & r->need) == r->need && !(flags & r->unless))
			return r;
	}
	return NULL;
}

/*
 * Streamed sections go straight to their handler; the rest is read whole
 * and its checksum checked before the order is: a damaged section is
 * reported as damaged, whatever its type says.
 */
int mig_in_dispatch(struct mig_in_ctx *c, uint8_t *buf, uint32_t cap)
{
	struct mig_incoming *inc = c->inc;
	struct mig_section_reader r;
	bool known;
	int err = mig_section_reader_begin(&r, &inc->s);

	if (err)
		return mig_in_fail(inc, err, "%s", inc->s.why);
	const struct mig_in_rule *rule = mig_in_rule_find(r.type, c->ph, inc->cfg.flags, &known);
	c->type = r.type;
	if (rule && rule->streamed) {
		if (rule->next != MIG_IN_SAME)
			c->ph = rule->next;
		err = rule->streamed(c, &r);
	} else if (r.len > cap) {
		err = mig_in_fail(inc, -EPROTO, "section type %u of %u bytes is too long here "
				  "(expected %s)", r.type, r.len,
				  mig_in_expect(c->ph, inc->cfg.flags & VERIFY));
	} else {
		err = mig_section_reader_get(&r, buf, r.len);
	}
	if (!err)
		err = mig_section_reader_end(&r);
	else
		mig_section_reader_abort(&r);
	if (err)
		return inc->why[0] ? err : mig_in_fail(inc, err, "%s", inc->s.why);
	if (rule && rule->streamed)
		return 0;
	if (!rule)
		return mig_in_fail(inc, -EPROTO, known ? "section type %u out of order (expected %s)"
				   : "unknown section type %u (expected %s)", r.type,
				   mig_in_expect(c->ph, inc->cfg.flags & VERIFY));
	if (rule->next != MIG_IN_SAME)
		c->ph = rule->next;
	return rule->whole(c, buf, r.len);
}
