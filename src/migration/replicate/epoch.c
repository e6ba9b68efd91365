/* The standby's epoch buffer and the failover/fence decisions (epoch.h). */
#include "migration/replicate/epoch.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/le.h"

static int epoch_fail(char *why, size_t whylen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int epoch_fail(char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
	return -EPROTO;
}

void mig_epoch_init(struct mig_epoch *e, uint64_t max_pages)
{
	memset(e, 0, sizeof(*e));
	e->max_pages = max_pages;
}

/* Bits u .. u + n - 1 of a `seen` bitmap: set, cleared, or whether any is set. */
static bool epoch_seen_any(const uint64_t *bits, uint64_t u, uint64_t n)
{
	for (uint64_t k = u; k < u + n; k++)
		if (bits[k / 64] & (1ULL << (k % 64)))
			return true;
	return false;
}

static void epoch_seen_set(uint64_t *bits, uint64_t u, uint64_t n, bool on)
{
	for (uint64_t k = u; k < u + n; k++) {
		if (on)
			bits[k / 64] |= 1ULL << (k % 64);
		else
			bits[k / 64] &= ~(1ULL << (k % 64));
	}
}

/* The 4 KiB units a record covers: the first, and how many. */
static uint64_t epoch_units(uint64_t off, uint32_t len, uint64_t *n)
{
	*n = (off + len - 1) / MIG_EPOCH_DISK_RANGE - off / MIG_EPOCH_DISK_RANGE + 1;
	return off / MIG_EPOCH_DISK_RANGE;
}

void mig_epoch_discard(struct mig_epoch *e)
{
	/* Only the open epoch's records set bits: clearing those clears all. */
	for (uint64_t i = 0; i < e->nd; i++) {
		const struct mig_epoch_disk_rec *r = &e->drec[i];
		uint64_t n, u = epoch_units(r->off, r->len, &n);
		epoch_seen_set(e->seen[r->disk], u, n, false);
	}
	e->open = false;
	e->n = 0;
	e->bytes = 0;
	e->nd = 0;
	e->ddata_len = 0;
	e->disk_bytes = 0;
	free(e->state);
	e->state = NULL;
	e->state_len = 0;
}

void mig_epoch_free(struct mig_epoch *e)
{
	mig_epoch_discard(e);
	free(e->gpa);
	free(e->data);
	free(e->drec);
	free(e->ddata);
	free(e->committed_state);
	for (unsigned i = 0; i < MIG_EPOCH_DISKS_MAX; i++)
		free(e->seen[i]);
	memset(e, 0, sizeof(*e));
}

int mig_epoch_set_disks(struct mig_epoch *e, unsigned nr, const uint64_t *sizes, bool ranges,
			mig_epoch_disk_fn *apply, void *opaque)
{
	uint32_t align = ranges ? MIG_EPOCH_DISK_RANGE : MIG_EPOCH_DISK_CHUNK;
	uint64_t recs = 0;

	if (nr > MIG_EPOCH_DISKS_MAX || e->nd)
		return -EINVAL;
	for (unsigned i = 0; i < nr; i++)
		if (!sizes[i])
			return -EINVAL;
	for (unsigned i = 0; i < MIG_EPOCH_DISKS_MAX; i++) {
		free(e->seen[i]);
		e->seen[i] = NULL;
	}
	e->nr_disks = 0;
	for (unsigned i = 0; i < nr; i++) {
		uint64_t units = (sizes[i] + MIG_EPOCH_DISK_RANGE - 1) / MIG_EPOCH_DISK_RANGE;
		e->seen[i] = calloc(units / 64 + 1, sizeof(uint64_t));
		if (!e->seen[i])
			return -ENOMEM;
		e->disk_size[i] = sizes[i];
		recs += (sizes[i] + align - 1) / align;
	}
	e->nr_disks = nr;
	e->disk_align = align;
	e->max_disk_recs = recs;
	e->disk_apply = apply;
	e->disk_opaque = opaque;
	return 0;
}

int mig_epoch_begin(struct mig_epoch *e, uint64_t seq, char *why, size_t whylen)
{
	if (e->torn)
		return epoch_fail(why, whylen, "EPOCH %llu after a checkpoint was torn",
				  (unsigned long long)seq);
	if (e->open)
		return epoch_fail(why, whylen, "EPOCH %llu while epoch %llu is still open",
				  (unsigned long long)seq, (unsigned long long)e->seq);
	if (seq != e->committed + 1)
		return epoch_fail(why, whylen, "EPOCH %llu follows committed epoch %llu",
				  (unsigned long long)seq, (unsigned long long)e->committed);
	mig_epoch_discard(e);
	e->open = true;
	e->seq = seq;
	return 0;
}

/* Room for one more entry; the arrays grow by half, never past max_pages. */
static int epoch_grow(struct mig_epoch *e)
{
	if (e->n < e->cap)
		return 0;
	uint64_t cap = e->cap ? e->cap + e->cap / 2 : 256;
	if (cap > e->max_pages)
		cap = e->max_pages;
	uint64_t *gpa = realloc(e->gpa, cap * sizeof(*gpa));
	if (!gpa)
		return -ENOMEM;
	e->gpa = gpa;
	uint8_t *data = realloc(e->data, cap * MIG_EPOCH_PAGE);
	if (!data)
		return -ENOMEM;
	e->data = data;
	e->cap = cap;
	return 0;
}

int mig_epoch_add(struct mig_epoch *e, uint64_t gpa, const uint8_t *data, char *why,
		  size_t whylen)
{
	if (!e->open)
		return epoch_fail(why, whylen, "a page outside an epoch");
	if (gpa % MIG_EPOCH_PAGE)
		return epoch_fail(why, whylen, "page address 0x%llx is not page-aligned",
				  (unsigned long long)gpa);
	if (e->n >= e->max_pages)
		return epoch_fail(why, whylen, "epoch %llu carries more than %llu pages, the "
				  "guest's whole RAM", (unsigned long long)e->seq,
				  (unsigned long long)e->max_pages);
	if (epoch_grow(e)) {
		snprintf(why, whylen, "out of memory for epoch %llu", (unsigned long long)e->seq);
		return -ENOMEM;
	}
	e->gpa[e->n] = gpa | (data ? 0 : 1);
	if (data) {
		memcpy(e->data + e->n * MIG_EPOCH_PAGE, data, MIG_EPOCH_PAGE);
		e->bytes += MIG_EPOCH_PAGE;
	}
	e->n++;
	return 0;
}

/* Room for one more disk record and `len` more bytes; both grow by half. */
static int epoch_grow_disk(struct mig_epoch *e, uint32_t len)
{
	if (e->nd == e->dcap) {
		uint64_t cap = e->dcap ? e->dcap + e->dcap / 2 : 64;
		if (cap > e->max_disk_recs)
			cap = e->max_disk_recs;
		struct mig_epoch_disk_rec *r = realloc(e->drec, cap * sizeof(*r));
		if (!r)
			return -ENOMEM;
		e->drec = r;
		e->dcap = cap;
	}
	if (e->ddata_len + len > e->ddata_cap) {
		uint64_t cap = e->ddata_cap ? e->ddata_cap + e->ddata_cap / 2 : 1u << 20;
		if (cap < e->ddata_len + len)
			cap = e->ddata_len + len;
		uint8_t *d = realloc(e->ddata, cap);
		if (!d)
			return -ENOMEM;
		e->ddata = d;
		e->ddata_cap = cap;
	}
	return 0;
}

/* Whether a record's range is one this standby may take (not its overlaps).  0 or -EPROTO. */
static int epoch_check_range(const struct mig_epoch *e, unsigned disk, uint64_t off, uint32_t len,
			     char *why, size_t whylen)
{
	unsigned long long seq = e->seq, o = off;
	uint32_t a = e->disk_align;
	uint64_t size = e->disk_size[disk];

	if (!len)
		return epoch_fail(why, whylen, "epoch %llu: disk %u: an empty record at %llu", seq,
				  disk, o);
	if (len > MIG_EPOCH_DISK_CHUNK)
		return epoch_fail(why, whylen, "epoch %llu: disk %u: a record of %u bytes at %llu, "
				  "longer than a chunk (%u)", seq, disk, len, o,
				  MIG_EPOCH_DISK_CHUNK);
	if (off % a)
		return epoch_fail(why, whylen, "epoch %llu: disk %u: a record at %llu, not a "
				  "multiple of %u%s", seq, disk, o, a,
				  a == MIG_EPOCH_DISK_CHUNK ? " (this standby takes whole chunks: "
				  "ranges were not agreed)" : "");
	if (off > size || len > size - off)
		return epoch_fail(why, whylen, "epoch %llu: disk %u: %u bytes at %llu are past its "
				  "end (%llu bytes)", seq, disk, len, o, (unsigned long long)size);
	if (off % MIG_EPOCH_DISK_CHUNK + len > MIG_EPOCH_DISK_CHUNK)
		return epoch_fail(why, whylen, "epoch %llu: disk %u: %u bytes at %llu cross a "
				  "chunk boundary (%u)", seq, disk, len, o, MIG_EPOCH_DISK_CHUNK);
	if (len % a && off + len != size)
		return epoch_fail(why, whylen, "epoch %llu: disk %u: a record of %u bytes at %llu, "
				  "not a multiple of %u and not up to the disk's end", seq, disk,
				  len, o, a);
	return 0;
}

int mig_epoch_add_disk(struct mig_epoch *e, unsigned disk, uint64_t off, uint32_t len,
		       const uint8_t *data, char *why, size_t whylen)
{
	if (!e->open)
		return epoch_fail(why, whylen, "a disk record outside an epoch");
	if (disk >= e->nr_disks)
		return epoch_fail(why, whylen, "epoch %llu: blocks for disk %u; this standby "
				  "replicates %u disk(s)", (unsigned long long)e->seq, disk,
				  e->nr_disks);
	int err = epoch_check_range(e, disk, off, len, why, whylen);
	if (err)
		return err;
	uint64_t n, u = epoch_units(off, len, &n);
	if (epoch_seen_any(e->seen[disk], u, n))
		return epoch_fail(why, whylen, "epoch %llu: disk %u: %u bytes at %llu overlap a "
				  "record earlier in the epoch", (unsigned long long)e->seq, disk,
				  len, (unsigned long long)off);
	if (e->nd >= e->max_disk_recs)
		return epoch_fail(why, whylen, "epoch %llu carries more than %llu disk records, "
				  "one per %u bytes of every disk", (unsigned long long)e->seq,
				  (unsigned long long)e->max_disk_recs, e->disk_align);
	if (epoch_grow_disk(e, data ? len : 0)) {
		snprintf(why, whylen, "out of memory for epoch %llu", (unsigned long long)e->seq);
		return -ENOMEM;
	}
	epoch_seen_set(e->seen[disk], u, n, true);
	struct mig_epoch_disk_rec *r = &e->drec[e->nd++];
	r->off = off;
	r->len = len;
	r->disk = (uint8_t)disk;
	r->zero = !data;
	r->data_at = e->ddata_len;
	if (data) {
		memcpy(e->ddata + e->ddata_len, data, len);
		e->ddata_len += len;
		e->bytes += len;
	}
	e->disk_bytes += len;
	return 0;
}

int mig_epoch_disk_decode(const uint8_t *p, uint32_t plen, unsigned *disk, uint64_t *off,
			  uint32_t *len, const uint8_t **data, char *why, size_t whylen)
{
	if (plen < MIG_EPOCH_DISK_HDR)
		return epoch_fail(why, whylen, "EPOCH_DISK of %u bytes (at least %u)", plen,
				  MIG_EPOCH_DISK_HDR);
	uint8_t flags = p[1];
	uint64_t n = le_get(p + 10, 4);
	bool zero = flags & MIG_EPOCH_DISK_ZERO;

	if (flags & ~MIG_EPOCH_DISK_ZERO)
		return epoch_fail(why, whylen, "EPOCH_DISK with unknown flags 0x%02x", flags);
	if (plen - MIG_EPOCH_DISK_HDR != (zero ? 0 : n))
		return epoch_fail(why, whylen, "EPOCH_DISK of %u bytes says %llu %s", plen,
				  (unsigned long long)n, zero ? "zero bytes but carries data"
							  : "bytes of data");
	*disk = p[0];
	*off = le_get(p + 2, 8);
	*len = (uint32_t)n;
	*data = zero ? NULL : p + MIG_EPOCH_DISK_HDR;
	return 0;
}

int mig_epoch_set_state(struct mig_epoch *e, const uint8_t *p, uint32_t len, char *why,
			size_t whylen)
{
	if (!e->open)
		return epoch_fail(why, whylen, "STATE outside an epoch");
	if (e->state)
		return epoch_fail(why, whylen, "a second STATE in epoch %llu",
				  (unsigned long long)e->seq);
	e->state = malloc(len ? len : 1);
	if (!e->state) {
		snprintf(why, whylen, "out of memory for epoch %llu", (unsigned long long)e->seq);
		return -ENOMEM;
	}
	memcpy(e->state, p, len);
	e->state_len = len;
	e->bytes += len;
	return 0;
}

/* An epoch that came whole: every check before anything is applied.  0 or -EPROTO. */
static int epoch_check_end(const struct mig_epoch *e, const struct mig_epoch_end_rec *end,
			   uint64_t chain_here, char *why, size_t whylen)
{
	unsigned long long seq = end->seq;

	if (!e->open)
		return epoch_fail(why, whylen, "EPOCH_END %llu without an EPOCH", seq);
	if (end->seq != e->seq)
		return epoch_fail(why, whylen, "EPOCH_END %llu ends epoch %llu", seq,
				  (unsigned long long)e->seq);
	if (end->pages != e->n)
		return epoch_fail(why, whylen, "epoch %llu: EPOCH_END counts %llu pages, %llu came",
				  seq, (unsigned long long)end->pages, (unsigned long long)e->n);
	if (end->disk_recs != e->nd)
		return epoch_fail(why, whylen, "epoch %llu: EPOCH_END counts %llu disk records, "
				  "%llu came", seq, (unsigned long long)end->disk_recs,
				  (unsigned long long)e->nd);
	if (!e->state)
		return epoch_fail(why, whylen, "epoch %llu has no STATE", seq);
	if (end->chain != chain_here)
		return epoch_fail(why, whylen, "epoch %llu: section chain %016llx, the source "
				  "sent %016llx: not the sections it wrote", seq,
				  (unsigned long long)chain_here, (unsigned long long)end->chain);
	return 0;
}

/* A writer failed: RAM or a disk is half-written, and stays no checkpoint. */
static int epoch_tear(struct mig_epoch *e, int err)
{
	e->torn = true;
	mig_epoch_discard(e);
	return err;
}

int mig_epoch_end(struct mig_epoch *e, const struct mig_epoch_end_rec *end, uint64_t chain_here,
		  mig_epoch_apply_fn *apply, void *opaque, char *why, size_t whylen)
{
	unsigned long long seq = end->seq;
	int err = epoch_check_end(e, end, chain_here, why, whylen);

	if (err) {
		mig_epoch_discard(e);
		return err;
	}
	for (uint64_t i = 0; i < e->n; i++) {
		bool zero = e->gpa[i] & 1;
		err = apply(opaque, e->gpa[i] & ~1ULL, zero ? NULL : e->data + i * MIG_EPOCH_PAGE);
		if (err) {
			snprintf(why, whylen, "epoch %llu: cannot write page 0x%llx", seq,
				 (unsigned long long)(e->gpa[i] & ~1ULL));
			return epoch_tear(e, err);
		}
	}
	for (uint64_t i = 0; i < e->nd; i++) {
		const struct mig_epoch_disk_rec *r = &e->drec[i];
		err = e->disk_apply(e->disk_opaque, r->disk, r->off, r->len,
				    r->zero ? NULL : e->ddata + r->data_at);
		if (err) {
			snprintf(why, whylen, "epoch %llu: cannot write %u bytes at %llu of disk %u",
				 seq, r->len, (unsigned long long)r->off, r->disk);
			return epoch_tear(e, err);
		}
	}
	free(e->committed_state);
	e->committed_state = e->state;
	e->committed_state_len = e->state_len;
	e->state = NULL;
	e->committed = end->seq;
	mig_epoch_discard(e);
	return 0;
}

enum mig_failover_action mig_failover_decide(const struct mig_failover_in *in,
					     const char **reason)
{
	if (in->operator_asked) {
		*reason = "the operator asked for it (ferry failover)";
		return MIG_FAILOVER_TAKEOVER;
	}
	if (in->mode == MIG_FAILOVER_MANUAL) {
		*reason = in->link_lost ? "the primary is gone; waiting for 'ferry failover'"
					: "replicating";
		return MIG_FAILOVER_WAIT;
	}
	uint64_t silent = in->now_ns > in->last_heard_ns ? in->now_ns - in->last_heard_ns : 0;
	if (silent >= in->timeout_ns) {
		*reason = in->link_lost ? "the connection to the primary is lost and it has been "
					  "silent for the failover timeout"
					: "the primary has been silent for the failover timeout";
		return MIG_FAILOVER_TAKEOVER;
	}
	*reason = in->link_lost ? "the connection to the primary is lost; waiting out the "
				  "failover timeout" : "replicating";
	return MIG_FAILOVER_WAIT;
}

bool mig_fence_decide(uint64_t now_ns, uint64_t last_heard_ns, uint64_t fence_ns,
		      enum mig_failover_mode standby_mode)
{
	if (standby_mode != MIG_FAILOVER_AUTO)
		return false;
	return now_ns > last_heard_ns && now_ns - last_heard_ns >= fence_ns;
}

uint64_t mig_hb_credit(const uint64_t sent[MIG_HB_RING], uint64_t last, uint64_t echo)
{
	if (!echo || echo > last || last - echo >= MIG_HB_RING)
		return 0;
	return sent[echo % MIG_HB_RING];
}

uint64_t mig_heartbeat_ns(uint64_t standby_failover_ns)
{
	uint64_t hb = standby_failover_ns / 10;

	return hb < 10000000ULL ? 10000000ULL : hb;
}

int mig_fence_pick(uint64_t given_ns, uint64_t standby_ns, uint64_t heartbeat_ns,
		   uint64_t *fence_ns, char *why, size_t whylen)
{
	uint64_t half = standby_ns / 2;

	if (given_ns > half) {
		snprintf(why, whylen, "--failover-timeout %llu ms on the primary must be at most "
			 "half the standby's %llu ms, or both could run the guest",
			 (unsigned long long)(given_ns / 1000000),
			 (unsigned long long)(standby_ns / 1000000));
		return -EINVAL;
	}
	uint64_t f = given_ns ? given_ns : half;
	if (f < 3 * heartbeat_ns) {
		snprintf(why, whylen, "a fence timeout of %llu ms is shorter than three heartbeats "
			 "(%llu ms each)", (unsigned long long)(f / 1000000),
			 (unsigned long long)(heartbeat_ns / 1000000));
		return -EINVAL;
	}
	*fence_ns = f;
	return 0;
}
