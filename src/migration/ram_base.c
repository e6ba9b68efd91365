/*
 * The RAM source's handshake with a destination that holds a base
 * (base.h, docs/migration-stream.md "Base"): read its BASE_SUMS, digest
 * our own pages alongside, and leave out of the first pass every page
 * whose digest matches.  Runs on the migration thread after READY, before
 * the first pass; dirty logging is on, so a page the guest writes after
 * we read it is sent in a later pass anyway.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "migration/base.h"
#include "migration/format.h"
#include "migration/migration.h"
#include "migration/ram.h"
#include "migration/section.h"
#include "util/hash.h"
#include "util/le.h"
#include "util/log.h"
#include "vmm/dirty.h"

#define RAM_BASE_SPAN 64	/* pages asked about holes at once, and cleared in KVM */

/*
 * Pages [index, index + n) of region r (n <= RAM_BASE_SPAN, index within
 * the region a multiple of 64): re-arm KVM's dirty tracking, then digest
 * them (a hole: zero pages, not read, so not allocated).
 */
static int ram_base_digest(struct migration *mig, unsigned r, uint64_t page, uint32_t n,
			   uint64_t *out)
{
	struct vm *vm = &mig->m->vm;
	uint64_t index = guest_memory_region_first(&vm->mem, r) + page;
	unsigned long all[RAM_BASE_SPAN / DIRTY_BITS_PER_LONG];

	memset(all, 0xff, sizeof(all));
	int err = vm_dirty_log_clear(vm, r, page, n, all);
	if (err)
		return err;
	if (guest_memory_is_hole(&vm->mem, index, n)) {
		for (uint32_t k = 0; k < n; k++)
			out[k] = mig_page_hash(NULL);
		return 0;
	}
	for (uint32_t k = 0; k < n; k++)
		out[k] = mig_page_hash(guest_memory_page_ptr(&vm->mem, index + k));
	return 0;
}

/* One BASE_SUMS section, the one starting at page *next.  0 or -errno (reason on the stream). */
static int ram_base_read(struct migration *mig, uint8_t *buf, uint64_t *next, uint64_t *same)
{
	struct guest_memory *mem = &mig->m->vm.mem;
	uint64_t pages = guest_memory_pages(mem), mine[RAM_BASE_SPAN];
	uint32_t len, count;
	uint8_t type;
	int32_t status;
	const char *msg;
	char why[200];
	int n;

	int err = mig_section_read(&mig->s, buf, MIG_BASE_SUMS_HDR + 8 * MIG_BASE_SUMS_MAX,
				   &type, &len);
	if (err)
		return err;
	if (type == MIG_SEC_RESULT && !mig_result_parse(buf, len, &status, &msg, &n)) {
		mig_stream_fail(&mig->s, status ? status : -EPROTO, "destination: %.*s", n, msg);
		return status ? status : -EPROTO;
	}
	if (type != MIG_SEC_BASE_SUMS) {
		mig_stream_fail(&mig->s, -EPROTO, "destination answered with section %u where "
				"its base digests belong", type);
		return -EPROTO;
	}
	if (mig_base_sums_decode(buf, len, *next, pages, &count, why, sizeof(why))) {
		mig_stream_fail(&mig->s, -EPROTO, "%s", why);
		return -EPROTO;
	}
	/*
	 * first is a multiple of MIG_BASE_SUMS_MAX and regions start at
	 * multiples of 2 MiB: every span below starts 64-aligned in its region.
	 */
	for (uint32_t k = 0; k < count;) {
		uint64_t index = *next + k, page;
		unsigned r;
		if (!guest_memory_locate(mem, index, &r, &page))
			return -EINVAL;	/* unreachable: index < pages */
		uint64_t left = guest_memory_region_pages(mem, r) - page;
		uint32_t span = count - k < RAM_BASE_SPAN ? count - k : RAM_BASE_SPAN;
		if (span > left)
			span = (uint32_t)left;
		err = ram_base_digest(mig, r, page, span, mine);
		if (err) {
			mig_stream_fail(&mig->s, err, "cannot clear the dirty log: %s", strerror(-err));
			return err;
		}
		uint32_t differ = mig_base_diff(buf, k, mine, span, mig->ram.bitmap[r], page);
		*same += span - differ;
		/* With --verify: the destination holds these pages as we have them. */
		if (mig->digest.hash)
			for (uint32_t i = 0; i < span; i++)
				if (mig_base_sum(buf, k + i) == mine[i])
					mig_digest_put(&mig->digest, index + i, mine[i]);
		k += span;
	}
	*next += count;
	return 0;
}

int ram_base_handshake(struct migration *mig)
{
	uint64_t pages = guest_memory_pages(&mig->m->vm.mem), next = 0, same = 0;
	uint64_t t0 = vm_now_ns();
	int err = 0;

	if (!mig->ram.base)
		return 0;
	uint8_t *buf = malloc(MIG_BASE_SUMS_HDR + 8 * MIG_BASE_SUMS_MAX);
	if (!buf) {
		mig_stream_fail(&mig->s, -ENOMEM, "out of memory");
		return -ENOMEM;
	}
	while (!err && next < pages)
		err = ram_base_read(mig, buf, &next, &same);
	free(buf);
	if (err)
		return err;
	mig->ram.clear_ns = vm_now_ns();	/* the whole log was cleared just now */
	pthread_mutex_lock(&mig->lock);
	mig->stats.base_pages = same;
	pthread_mutex_unlock(&mig->lock);
	pr_info("migration: the destination's base already holds %llu of %llu pages (%.0f%%); "
		"%llu differ (compared in %.1f ms)", (unsigned long long)same,
		(unsigned long long)pages, pages ? 100.0 * (double)same / (double)pages : 0.0,
		(unsigned long long)(pages - same), (double)(vm_now_ns() - t0) / 1e6);
	return 0;
}
