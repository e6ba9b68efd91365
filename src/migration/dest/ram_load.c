/*
 * The RAM source on the destination: one decoder for RAM and RAM_RUN
 * sections (docs/migration-stream.md) and two sinks for what it decodes.
 *
 *   decoder: check the header, every entry (address in RAM, encoding known
 *            and negotiated, length within the codec's bounds) and the
 *            total length before reading one byte of page data; then hand
 *            runs of verbatim pages, runs of zero pages and single decoded
 *            pages to the sink.
 *   sinks:   pre-copy writes into guest RAM through the alias view, the
 *            verbatim data read straight off the stream into place;
 *            post-copy places through userfaultfd (postcopy_dest.c), from
 *            the whole, already checksummed payload.
 *
 * The sink is chosen per section, by the phase; calls into it are per run
 * of pages, not per page.
 */
#include <errno.h>
#include <string.h>

#include "migration/codec/codec.h"
#include "migration/format.h"
#include "migration/dest/incoming_internal.h"
#include "migration/ram.h"
#include "migration/section.h"
#include "util/le.h"

struct ram_sink {
	/* n pages from gpa (one region), their data next in the payload as is. */
	int (*verbatim)(struct mig_in_ctx *c, struct mig_payload *in, uint64_t gpa, uint32_t n);
	/* n zero pages from gpa (one region). */
	int (*zero)(struct mig_in_ctx *c, uint64_t gpa, uint32_t n);
	/* One decoded page. */
	int (*page)(struct mig_in_ctx *c, uint64_t gpa, const uint8_t *data);
};

/* Why a payload read failed: the stream's reason, or a section cut short. */
static int ram_load_short(struct mig_in_ctx *c, struct mig_payload *in, int err)
{
	if (in->r && mig_stream_error(in->r->s))
		return mig_in_fail(c->inc, err, "%s", mig_stream_why(in->r->s));
	return mig_in_fail(c->inc, -EPROTO, "RAM section type %u: contents run past its length",
			   c->type);
}

/* Pre-copy sink ---------------------------------------------------------- */

/*
 * Allocate and map a run of pages [index, index + n) in one call before the
 * data lands there: far cheaper than a page fault per page.  Only the run
 * itself, never the chunk around it: what a source sends is untrusted, and
 * memory taken here must be in proportion to what arrived.  Short runs are
 * left to page faults, and so is a run seen before (its pages are in).
 */
/*
 * The page bitmaps are shared with the receivers of extra connections
 * (--channels, dest/channels.c): bits are read and set atomically.  Two
 * threads never hold the same page at once (one section per page per
 * pass, passes fenced by BARRIER), only neighbours in one word.
 */
static bool ram_load_bit(const unsigned long *bm, uint64_t index)
{
	return __atomic_load_n(&bm[index / 64], __ATOMIC_RELAXED) & (1UL << (index % 64));
}

static void ram_load_set_bit(unsigned long *bm, uint64_t index)
{
	__atomic_fetch_or(&bm[index / 64], 1UL << (index % 64), __ATOMIC_RELAXED);
}

static void ram_load_populate(struct mig_incoming *inc, struct guest_memory *mem,
			      uint64_t index, uint64_t n)
{
	if (guest_memory_allocated(mem) || n < MIG_IN_POPULATE_MIN ||
	    ram_load_bit(inc->written, index))
		return;
	/* Best effort: a failure just leaves it to page faults. */
	guest_memory_populate(mem, index, n);
}

static void ram_load_mark(struct mig_incoming *inc, uint64_t index, const uint8_t *data)
{
	ram_load_set_bit(inc->written, index);
	ram_load_set_bit(inc->known, index);
	if (inc->digest.hash)
		mig_digest_set(&inc->digest, index, data);
}

/*
 * Straight into guest RAM, through the alias view: the guest's view maps
 * the pages when the guest first touches them, and pages that turn out
 * stale can still be withheld from it in post-copy.  (Bytes written before
 * a bad checksum are harmless: a stream that fails never gets its guest
 * started.)
 */
static int ram_sink_ram_verbatim(struct mig_in_ctx *c, struct mig_payload *in, uint64_t gpa,
				 uint32_t n)
{
	struct mig_incoming *inc = c->inc;
	struct guest_memory *mem = &c->m->vm.mem;
	uint8_t *dst = guest_memory_alias_ptr(mem, gpa, (uint64_t)n * GUEST_PAGE_SIZE);
	uint64_t index = guest_memory_page_index(mem, gpa);

	ram_load_populate(inc, mem, index, n);
	int err = mig_payload_get(in, dst, n * (uint32_t)GUEST_PAGE_SIZE);
	if (err)
		return ram_load_short(c, in, err);
	for (uint32_t k = 0; k < n; k++)
		ram_load_mark(inc, index + k, dst + (uint64_t)k * GUEST_PAGE_SIZE);
	inc->raw_pages += n;
	return 0;
}

static int ram_sink_ram_zero(struct mig_in_ctx *c, uint64_t gpa, uint32_t n)
{
	struct mig_incoming *inc = c->inc;
	struct guest_memory *mem = &c->m->vm.mem;
	uint64_t index = guest_memory_page_index(mem, gpa);

	for (uint32_t k = 0; k < n; k++, index++) {
		/*
		 * RAM starts as memfd holes, which read as zero: only a page
		 * filled before needs clearing; touching others would allocate
		 * them for nothing.
		 */
		if (ram_load_bit(inc->written, index))
			memset(guest_memory_alias_ptr(mem, gpa + k * GUEST_PAGE_SIZE, GUEST_PAGE_SIZE),
			       0, GUEST_PAGE_SIZE);
		ram_load_set_bit(inc->known, index);
		if (inc->digest.hash)
			mig_digest_set(&inc->digest, index, NULL);
	}
	inc->zero_pages += n;
	return 0;
}

static int ram_sink_ram_page(struct mig_in_ctx *c, uint64_t gpa, const uint8_t *data)
{
	struct guest_memory *mem = &c->m->vm.mem;
	uint8_t *dst = guest_memory_alias_ptr(mem, gpa, GUEST_PAGE_SIZE);

	memcpy(dst, data, GUEST_PAGE_SIZE);
	ram_load_mark(c->inc, guest_memory_page_index(mem, gpa), dst);
	return 0;
}

static const struct ram_sink ram_sink_ram = {
	.verbatim = ram_sink_ram_verbatim,
	.zero = ram_sink_ram_zero,
	.page = ram_sink_ram_page,
};

/* Post-copy sink ---------------------------------------------------------- */

/*
 * Place n pages from gpa (data back to back; NULL: zero).  The placement
 * digests what it places: a page delivered again is dropped, so hashing
 * the delivery here would describe bytes the guest never got.
 */
static int ram_sink_place(struct mig_in_ctx *c, uint64_t gpa, uint32_t n, const uint8_t *data)
{
	struct mig_incoming *inc = c->inc;
	/* The preempt receiver's view places through the main one's (dest/preempt.c). */
	struct pc_dest *pc = inc->pc_place ? inc->pc_place : &inc->pc;
	int err = pc_dest_place_run(pc, guest_memory_page_index(&c->m->vm.mem, gpa), n, data);

	if (err)
		return mig_in_fail(inc, err, "cannot place pages 0x%llx + %u: %s",
				   (unsigned long long)gpa, n, strerror(-err));
	return 0;
}

static int ram_sink_place_verbatim(struct mig_in_ctx *c, struct mig_payload *in, uint64_t gpa,
				   uint32_t n)
{
	/* The payload is whole in post-copy: place from it, no copy. */
	const uint8_t *data = mig_payload_ptr(in, n * (uint32_t)GUEST_PAGE_SIZE);

	return data ? ram_sink_place(c, gpa, n, data) : ram_load_short(c, in, -EPROTO);
}

static int ram_sink_place_zero(struct mig_in_ctx *c, uint64_t gpa, uint32_t n)
{
	return ram_sink_place(c, gpa, n, NULL);
}

static int ram_sink_place_page(struct mig_in_ctx *c, uint64_t gpa, const uint8_t *data)
{
	return ram_sink_place(c, gpa, 1, data);
}

static const struct ram_sink ram_sink_userfault = {
	.verbatim = ram_sink_place_verbatim,
	.zero = ram_sink_place_zero,
	.page = ram_sink_place_page,
};

/* Replication's sink: into the open epoch, applied only once it is whole (standby.c). */

static int ram_sink_epoch_page(struct mig_in_ctx *c, uint64_t gpa, const uint8_t *data)
{
	struct mig_incoming *inc = c->inc;
	int err = mig_epoch_add(inc->epoch, gpa, data, inc->why, sizeof(inc->why));

	return err ? mig_in_fail(inc, err, "%s", inc->why) : 0;
}

static int ram_sink_epoch_verbatim(struct mig_in_ctx *c, struct mig_payload *in, uint64_t gpa,
				   uint32_t n)
{
	uint8_t page[GUEST_PAGE_SIZE];

	for (uint32_t k = 0; k < n; k++) {
		int err = mig_payload_get(in, page, GUEST_PAGE_SIZE);
		if (err)
			return ram_load_short(c, in, err);
		err = ram_sink_epoch_page(c, gpa + (uint64_t)k * GUEST_PAGE_SIZE, page);
		if (err)
			return err;
	}
	return 0;
}

static int ram_sink_epoch_zero(struct mig_in_ctx *c, uint64_t gpa, uint32_t n)
{
	for (uint32_t k = 0; k < n; k++) {
		int err = ram_sink_epoch_page(c, gpa + (uint64_t)k * GUEST_PAGE_SIZE, NULL);
		if (err)
			return err;
	}
	return 0;
}

static const struct ram_sink ram_sink_epoch = {
	.verbatim = ram_sink_epoch_verbatim,
	.zero = ram_sink_epoch_zero,
	.page = ram_sink_epoch_page,
};

/* The decoder ------------------------------------------------------------- */

/* One entry of a RAM section, checked. */
struct ram_entry {
	uint64_t gpa;
	const struct mig_codec *k;
	uint32_t len;
};

/* Check one entry before anything is read or written for it. */
static int ram_load_check(struct mig_in_ctx *c, uint64_t word, uint32_t len, struct ram_entry *e)
{
	struct mig_incoming *inc = c->inc;
	uint64_t gpa = word & ~MIG_PAGE_ENC_MASK;
	unsigned id = (unsigned)(word & MIG_PAGE_ENC_MASK);

	e->gpa = gpa;
	e->len = len;
	e->k = mig_codec_get(id);
	if (!e->k)
		return mig_in_fail(inc, -EPROTO, "page 0x%llx: unknown encoding %u",
				   (unsigned long long)gpa, id);
	if (!(inc->codecs & (1u << id)))
		return mig_in_fail(inc, -EPROTO, "page 0x%llx: encoding %u (%s) was not negotiated",
				   (unsigned long long)gpa, id, e->k->name);
	if (len < e->k->min_len || len > e->k->max_len)
		return mig_in_fail(inc, -EPROTO, "page 0x%llx: %s page of %u bytes (allowed %u..%u)",
				   (unsigned long long)gpa, e->k->name, len, e->k->min_len,
				   e->k->max_len);
	if (!guest_memory_ptr(&c->m->vm.mem, gpa, GUEST_PAGE_SIZE))
		return mig_in_fail(inc, -ERANGE, "page 0x%llx is outside guest RAM (%llu MiB)",
				   (unsigned long long)gpa,
				   (unsigned long long)(c->m->vm.mem.size >> 20));
	return 0;
}

/* How many entries from i on are like entry i and follow it in one region. */
static uint32_t ram_load_run(const struct guest_memory *mem, const struct ram_entry *e,
			     uint32_t i, uint32_t count)
{
	uint32_t n = 1;

	while (i + n < count && e[i + n].k == e[i].k &&
	       e[i + n].gpa == e[i].gpa + n * GUEST_PAGE_SIZE &&
	       guest_memory_ptr(mem, e[i].gpa, (n + 1) * GUEST_PAGE_SIZE))
		n++;
	return n;
}

/*
 * A page that must be decoded: into inc->page, then to the sink.  A delta
 * changes the copy this side holds: it is refused for a page that never
 * arrived, and in post-copy (the source stops sending deltas before it
 * discards pages here; one now is hostile).
 */
static int ram_load_decode(struct mig_in_ctx *c, const struct ram_sink *sink,
			   struct mig_payload *in, const struct ram_entry *e)
{
	struct mig_incoming *inc = c->inc;
	struct guest_memory *mem = &c->m->vm.mem;
	uint8_t enc[GUEST_PAGE_SIZE];		/* len <= max_len <= a page: checked */
	int err = mig_payload_get(in, enc, e->len);

	if (err)
		return ram_load_short(c, in, err);
	if (e->k->against_held) {
		uint64_t index = guest_memory_page_index(mem, e->gpa);
		if (inc->guest_started || !ram_load_bit(inc->known, index))
			return mig_in_fail(inc, -EPROTO, "page 0x%llx: a %s against a page this side "
					   "does not hold", (unsigned long long)e->gpa, e->k->name);
		memcpy(inc->page, guest_memory_alias_ptr(mem, e->gpa, GUEST_PAGE_SIZE),
		       GUEST_PAGE_SIZE);
	}
	if (e->k->decode(&inc->codec, enc, e->len, inc->page))
		return mig_in_fail(inc, -EPROTO, "page 0x%llx: bad %s data",
				   (unsigned long long)e->gpa, e->k->name);
	return sink->page(c, e->gpa, inc->page);
}

/* A RAM section: count, entries, then the encoded pages. */
static int ram_load_batch(struct mig_in_ctx *c, const struct ram_sink *sink, struct mig_payload *in)
{
	struct mig_incoming *inc = c->inc;
	uint8_t raw[MIG_RAM_BATCH_MAX * MIG_RAM_ENTRY];
	struct ram_entry e[MIG_RAM_BATCH_MAX];
	uint64_t data = 0;
	uint8_t cb[4];
	int err;

	if (mig_payload_left(in) < 4)
		return mig_in_fail(inc, -EPROTO, "RAM section too short");
	err = mig_payload_get(in, cb, 4);
	if (err)
		return ram_load_short(c, in, err);
	uint32_t count = (uint32_t)le_get(cb, 4);
	if (count == 0 || count > MIG_RAM_BATCH_MAX)
		return mig_in_fail(inc, -EPROTO, "RAM batch of %u pages (allowed 1..%u)", count,
				   MIG_RAM_BATCH_MAX);
	if (mig_payload_left(in) < MIG_RAM_ENTRY * count)
		return mig_in_fail(inc, -EPROTO, "RAM batch shorter than its page list");
	err = mig_payload_get(in, raw, MIG_RAM_ENTRY * count);
	if (err)
		return ram_load_short(c, in, err);
	for (uint32_t i = 0; i < count; i++) {
		err = ram_load_check(c, le_get(raw + MIG_RAM_ENTRY * i, 8),
				     (uint32_t)le_get(raw + MIG_RAM_ENTRY * i + 8, 4), &e[i]);
		if (err)
			return err;
		data += e[i].len;
	}
	if (data != mig_payload_left(in))
		return mig_in_fail(inc, -EPROTO, "RAM batch is %u bytes; its %u pages need %llu",
				   in->len, count,
				   (unsigned long long)(4 + MIG_RAM_ENTRY * count + data));
	for (uint32_t i = 0; i < count;) {
		const struct mig_codec *k = e[i].k;
		uint32_t n = k->verbatim || k->zero ? ram_load_run(&c->m->vm.mem, e, i, count) : 1;
		if (k->verbatim)
			err = sink->verbatim(c, in, e[i].gpa, n);
		else if (k->zero)
			err = sink->zero(c, e[i].gpa, n);
		else
			err = ram_load_decode(c, sink, in, &e[i]);
		if (err)
			return err;
		i += n;
	}
	inc->pages += count;
	return 0;
}

/* A RAM_RUN section: address, count, then that many raw pages. */
static int ram_load_run_section(struct mig_in_ctx *c, const struct ram_sink *sink,
				struct mig_payload *in)
{
	struct mig_incoming *inc = c->inc;
	struct guest_memory *mem = &c->m->vm.mem;
	uint8_t h[12];

	if (mig_payload_left(in) < sizeof(h))
		return mig_in_fail(inc, -EPROTO, "RAM run section too short");
	int err = mig_payload_get(in, h, sizeof(h));
	if (err)
		return ram_load_short(c, in, err);
	uint64_t gpa = le_get(h, 8);
	uint32_t count = (uint32_t)le_get(h + 8, 4);
	if (count == 0 || count > MIG_RAM_BATCH_MAX)
		return mig_in_fail(inc, -EPROTO, "RAM run of %u pages (allowed 1..%u)", count,
				   MIG_RAM_BATCH_MAX);
	if ((uint64_t)in->len != 12 + GUEST_PAGE_SIZE * count)
		return mig_in_fail(inc, -EPROTO, "RAM run is %u bytes; its %u pages need %llu",
				   in->len, count, (unsigned long long)(12 + GUEST_PAGE_SIZE * count));
	if (gpa % GUEST_PAGE_SIZE || !guest_memory_ptr(mem, gpa, GUEST_PAGE_SIZE * count))
		return mig_in_fail(inc, -ERANGE, "pages 0x%llx + %u are not all in one RAM region "
				   "(%llu MiB)", (unsigned long long)gpa, count,
				   (unsigned long long)(mem->size >> 20));
	/* Raw is always negotiated (CONFIG without it is refused). */
	err = sink->verbatim(c, in, gpa, count);
	if (!err)
		inc->pages += count;
	return err;
}

int ram_load(struct mig_in_ctx *c, uint8_t type, struct mig_payload *in)
{
	const struct ram_sink *sink = c->inc->epoch ? &ram_sink_epoch :
				      c->inc->guest_started ? &ram_sink_userfault : &ram_sink_ram;

	return type == MIG_SEC_RAM_RUN ? ram_load_run_section(c, sink, in)
				       : ram_load_batch(c, sink, in);
}
