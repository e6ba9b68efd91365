/*
 * The destination's side of a base (base.h, docs/migration-stream.md
 * "Base"): `ferry run --incoming URI --base FILE`.  After READY accepted
 * MIG_CAP_BASE, the base's RAM is read into guest RAM (all holes until
 * now) and the digest of every page it now holds goes back as BASE_SUMS,
 * 16384 pages a section, while the next ones load.  The digests are of
 * what guest RAM holds, not what the file claims: a block of the base that
 * fails its checksum is left out (its pages stay zero, and say so), so a
 * damaged base costs pages on the wire, never a wrong page.
 *
 * Runs on the receiving thread, which owns inc and the return path then.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "migration/base.h"
#include "migration/dest/incoming_internal.h"
#include "migration/format.h"
#include "migration/savefile/savefile.h"
#include "util/log.h"
#include "vmm/vm.h"

/* Pages [first, first + count) from the base into RAM, their digests into sums. */
static void mig_in_base_load(struct mig_incoming *inc, struct machine *m, struct savefile *sf,
			     uint64_t first, uint32_t count, uint64_t *sums, uint8_t *buf,
			     uint64_t *loaded, unsigned *damaged)
{
	unsigned before = *damaged;
	char why[256] = "";

	*loaded += savefile_load_range(sf, &m->vm.mem, first, count, sums, inc->written, buf,
				       damaged, why, sizeof(why));
	if (*damaged > before)
		pr_warn("base %s: %s; %u damaged block%s left out (their pages travel)", sf->path,
			why, *damaged - before, *damaged - before == 1 ? "" : "s");
	for (uint32_t k = 0; k < count; k++) {
		uint64_t index = first + k;
		/* Zero or data, this is what the page holds here now. */
		inc->known[index / 64] |= 1UL << (index % 64);
		if (inc->digest.hash)
			mig_digest_put(&inc->digest, index, sums[k]);
	}
}

int mig_in_base_send(struct mig_incoming *inc, struct machine *m, struct savefile *sf)
{
	uint64_t pages = guest_memory_pages(&m->vm.mem), loaded = 0, t0 = vm_now_ns();
	uint64_t *sums = malloc(MIG_BASE_SUMS_MAX * sizeof(*sums));
	uint8_t *out = malloc(MIG_BASE_SUMS_HDR + 8 * MIG_BASE_SUMS_MAX);
	uint8_t *buf = aligned_alloc(64, SAVEFILE_BLOCK_PAGES * SAVEFILE_PAGE_SIZE);
	unsigned damaged = 0;
	int err = 0;

	if (!sums || !out || !buf) {
		err = mig_in_fail(inc, -ENOMEM, "out of memory for the base's digests");
		goto out;
	}
	if (sf->h.pages != pages) {	/* mig_base_fits() said the sizes agree */
		err = mig_in_fail(inc, -EINVAL, "the base's RAM does not fit this VM");
		goto out;
	}
	for (uint64_t first = 0; first < pages;) {
		uint32_t count = mig_base_sums_count(first, pages);
		mig_in_base_load(inc, m, sf, first, count, sums, buf, &loaded, &damaged);
		uint32_t len = mig_base_sums_encode(out, first, count, sums);
		mig_section_write(&inc->s, MIG_SEC_BASE_SUMS, out, len);
		if (mig_stream_flush(&inc->s)) {
			inc->reply_broken = true;
			err = mig_in_fail(inc, mig_stream_error(&inc->s), "cannot send the base's "
					  "digests: %s", mig_stream_why(&inc->s));
			goto out;
		}
		first += count;
	}
	pr_info("base %s: %llu pages of data loaded and every page's digest sent in %.1f ms%s",
		sf->path, (unsigned long long)loaded, (double)(vm_now_ns() - t0) / 1e6,
		damaged ? " (damaged blocks left out)" : "");
out:
	free(sums);
	free(out);
	free(buf);
	return err;
}
