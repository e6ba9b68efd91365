/*
 * --verify on the destination, for the device state (the RAM digest is
 * kept page by page as pages land: ram_load.c).  The state loaded into
 * KVM and the devices is read back before any vCPU runs and digested the
 * way the source digested what it sent (machine_state_digest); DIGEST
 * carries the source's value.  Pre-copy compares after END, once the
 * state is loaded, so a mismatch is refused before LOADED and the source
 * resumes; post-copy loads the state at POSTCOPY_RUN and compares when
 * DIGEST arrives (docs/migration-stream.md, "DIGEST").
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "migration/dest/incoming_internal.h"
#include "util/log.h"

int mig_in_state_hash(struct mig_incoming *inc, struct machine *m, const struct machine_state *sent)
{
	struct machine_state here;
	struct vmstate_error verr;
	struct vmstate_buf b;
	int err;

	vmstate_buf_init(&b);
	err = machine_state_encode(m, &b);
	if (!err)
		err = machine_state_decode(b.data, b.len, m->vm.nr_vcpus, &here, &verr);
	vmstate_buf_free(&b);
	if (err)
		return mig_in_fail(inc, err, "verify: cannot read back the loaded state: %s",
				   err == -EINVAL ? verr.msg : strerror(-err));
	err = machine_state_digest(&here, &inc->state_here);
	/* What did not survive the load, to name it if the digests disagree. */
	if (!err && !machine_state_diff(sent, &here, inc->state_diff, sizeof(inc->state_diff)))
		inc->state_diff[0] = '\0';
	machine_state_free(&here);
	if (err)
		return mig_in_fail(inc, err, "verify: cannot digest the loaded state: %s",
				   strerror(-err));
	inc->state_hashed = true;
	return mig_in_state_check(inc);
}

int mig_in_state_check(struct mig_incoming *inc)
{
	if (!inc->state_hashed || !inc->state_want_set || inc->state_want == inc->state_here)
		return 0;
	pr_debug("verify: device state sent %016llx, loaded here %016llx",
		 (unsigned long long)inc->state_want, (unsigned long long)inc->state_here);
	if (!inc->state_diff[0])
		return mig_in_fail(inc, -EIO, "verify: device state digest mismatch (source %016llx, "
				   "here %016llx): the state received is not the state the source "
				   "saved", (unsigned long long)inc->state_want,
				   (unsigned long long)inc->state_here);
	return mig_in_fail(inc, -EIO, "verify: device state digest mismatch (source %016llx, "
			   "here %016llx): %s did not load as it came (sent, read back)",
			   (unsigned long long)inc->state_want, (unsigned long long)inc->state_here,
			   inc->state_diff);
}
