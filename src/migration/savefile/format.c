/*
 * Encoding and checking of the save file's header, block table and
 * metadata (docs/save-format.md).  The checks are in the order a reader
 * needs them: nothing is used before what locates it has been checked.
 */
#include "migration/savefile/format.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "migration/section.h"
#include "util/le.h"
#include "util/vmstate.h"
#include "vmm/memory.h"

/* Header fields: byte offsets in the header page. */
enum {
	H_MAGIC = 0, H_VERSION = 8, H_HEADER_SIZE = 12, H_FLAGS = 16, H_PAGE_SIZE = 20,
	H_BLOCK_PAGES = 24, H_MEMORY = 32, H_META_OFF = 40, H_META_LEN = 48,
	H_META_HASH = 56, H_TABLE_OFF = 64, H_TABLE_LEN = 72, H_TABLE_HASH = 80,
	H_RAM_OFF = 88, H_FILE_SIZE = 96, H_SAVED_NS = 104,
	H_DISK_OFF = 112, H_DISK_LEN = 120,	/* version 2 (zero in version 1) */
	H_HASH = SAVEFILE_HEADER_SIZE - 8,	/* XXH3-64 of every byte before it */
};

static uint64_t savefile_align(uint64_t v, uint64_t a)
{
	return (v + a - 1) / a * a;
}

void savefile_layout(struct savefile_header *h, uint64_t memory, uint64_t meta_len)
{
	memset(h, 0, sizeof(*h));
	h->version = SAVEFILE_VERSION;
	h->block_pages = SAVEFILE_BLOCK_PAGES;
	h->memory = memory;
	h->pages = memory / SAVEFILE_PAGE_SIZE;
	h->blocks = (h->pages + h->block_pages - 1) / h->block_pages;
	h->meta_off = SAVEFILE_HEADER_SIZE;
	h->meta_len = meta_len;
	h->table_off = h->meta_off + meta_len;
	h->table_len = h->blocks * SAVEFILE_ENTRY_SIZE;
	h->ram_off = savefile_align(h->table_off + h->table_len, SAVEFILE_RAM_ALIGN);
	h->disk_off = h->ram_off + memory;
	h->disk_len = 0;
	h->file_size = h->disk_off;
}

/* A region's length: the disk's size rounded up to whole pages. */
static uint64_t savefile_disk_region(uint64_t size)
{
	return savefile_align(size, SAVEFILE_PAGE_SIZE);
}

int savefile_layout_disks(struct savefile_header *h, struct savefile_disk_rec *recs, unsigned n)
{
	uint64_t off = h->disk_off;

	for (unsigned i = 0; i < n; i++) {
		if (recs[i].mode != SAVEFILE_DISK_COPY)
			continue;
		if (recs[i].size > SAVEFILE_DISK_MAX)
			return -E2BIG;
		recs[i].off = off;
		recs[i].len = savefile_disk_region(recs[i].size);
		off += recs[i].len;
	}
	h->disk_len = off - h->disk_off;
	h->file_size = off;
	return 0;
}

int savefile_check_disks(const struct savefile_header *h, const struct savefile_meta *meta,
			 char *why, size_t whylen)
{
	uint64_t off = h->disk_off;

	for (unsigned i = 0; meta->has_recs && i < meta->nr_disks; i++) {
		const struct savefile_disk_rec *r = &meta->drec[i];
		if (r->mode != SAVEFILE_DISK_COPY)
			continue;
		/* Each bounded by the decoder (size <= SAVEFILE_DISK_MAX): no overflow. */
		if (r->off != off || r->len != savefile_disk_region(r->size) ||
		    r->off + r->len > h->file_size) {
			snprintf(why, whylen, "disk %u's copy at %llu+%llu (%llu bytes) is not where "
				 "the file has room for it (%llu, %llu bytes from %llu in all)", i,
				 (unsigned long long)r->off, (unsigned long long)r->len,
				 (unsigned long long)r->size, (unsigned long long)off,
				 (unsigned long long)h->disk_len, (unsigned long long)h->disk_off);
			return -EPROTO;
		}
		off += r->len;
	}
	if (off != h->disk_off + h->disk_len) {
		snprintf(why, whylen, "the header gives %llu bytes of copied disks, the records %llu",
			 (unsigned long long)h->disk_len, (unsigned long long)(off - h->disk_off));
		return -EPROTO;
	}
	return 0;
}

void savefile_header_encode(const struct savefile_header *h, uint8_t *page)
{
	memset(page, 0, SAVEFILE_HEADER_SIZE);
	memcpy(page + H_MAGIC, SAVEFILE_MAGIC, 8);
	le_put(page + H_VERSION, h->version, 4);
	le_put(page + H_HEADER_SIZE, SAVEFILE_HEADER_SIZE, 4);
	le_put(page + H_FLAGS, h->flags, 4);
	le_put(page + H_PAGE_SIZE, SAVEFILE_PAGE_SIZE, 4);
	le_put(page + H_BLOCK_PAGES, h->block_pages, 4);
	le_put(page + H_MEMORY, h->memory, 8);
	le_put(page + H_META_OFF, h->meta_off, 8);
	le_put(page + H_META_LEN, h->meta_len, 8);
	le_put(page + H_META_HASH, h->meta_hash, 8);
	le_put(page + H_TABLE_OFF, h->table_off, 8);
	le_put(page + H_TABLE_LEN, h->table_len, 8);
	le_put(page + H_TABLE_HASH, h->table_hash, 8);
	le_put(page + H_RAM_OFF, h->ram_off, 8);
	le_put(page + H_FILE_SIZE, h->file_size, 8);
	le_put(page + H_SAVED_NS, h->saved_ns, 8);
	if (h->version >= 2) {
		le_put(page + H_DISK_OFF, h->disk_off, 8);
		le_put(page + H_DISK_LEN, h->disk_len, 8);
	}
	le_put(page + H_HASH, XXH3_64bits(page, H_HASH), 8);
}

#define BAD(...) (snprintf(why, whylen, __VA_ARGS__), -EPROTO)

/* The layout a header claims must be the one this ferry would write for it. */
static int savefile_check_layout(const struct savefile_header *h, char *why, size_t whylen)
{
	struct savefile_header want;

	if (h->memory < GUEST_MIN_MEMORY || h->memory > GUEST_MAX_MEMORY ||
	    h->memory % (2ULL << 20))
		return BAD("the header gives %llu bytes of RAM (not a multiple of 2 MiB "
			   "from 16 MiB to 1 TiB)", (unsigned long long)h->memory);
	if (!h->meta_len || h->meta_len > SAVEFILE_META_MAX)
		return BAD("the metadata is %llu bytes long (at most %llu)",
			   (unsigned long long)h->meta_len, (unsigned long long)SAVEFILE_META_MAX);
	/* Both are bounded now: nothing below can overflow. */
	savefile_layout(&want, h->memory, h->meta_len);
	if (h->disk_len % SAVEFILE_PAGE_SIZE || h->disk_len > 8 * SAVEFILE_DISK_MAX)
		return BAD("the header gives %llu bytes of copied disks (whole pages, at most %llu)",
			   (unsigned long long)h->disk_len, 8 * SAVEFILE_DISK_MAX);
	/* disk_len is bounded now too. */
	want.file_size += h->disk_len;
	if (h->meta_off != want.meta_off || h->table_off != want.table_off ||
	    h->table_len != want.table_len || h->ram_off != want.ram_off ||
	    h->disk_off != want.disk_off || h->file_size != want.file_size)
		return BAD("the header's offsets and lengths do not fit together (metadata %llu+%llu, "
			   "table %llu+%llu, RAM at %llu, copied disks at %llu+%llu, size %llu)",
			   (unsigned long long)h->meta_off, (unsigned long long)h->meta_len,
			   (unsigned long long)h->table_off, (unsigned long long)h->table_len,
			   (unsigned long long)h->ram_off, (unsigned long long)h->disk_off,
			   (unsigned long long)h->disk_len, (unsigned long long)h->file_size);
	return 0;
}

int savefile_header_decode(const uint8_t *page, uint64_t file_size,
			   struct savefile_header *h, char *why, size_t whylen)
{
	int err;

	memset(h, 0, sizeof(*h));
	if (file_size < SAVEFILE_HEADER_SIZE)
		return BAD("the file is %llu bytes, shorter than its header: truncated",
			   (unsigned long long)file_size);
	if (memcmp(page + H_MAGIC, SAVEFILE_MAGIC, 8))
		return BAD("not a ferry save file (no %s magic)", SAVEFILE_MAGIC);
	h->version = (uint32_t)le_get(page + H_VERSION, 4);
	if (h->version < 1 || h->version > SAVEFILE_VERSION) {
		snprintf(why, whylen, "save file version %u; this ferry reads versions 1 to %u",
			 h->version, SAVEFILE_VERSION);
		return -EPROTONOSUPPORT;
	}
	if (le_get(page + H_HASH, 8) != XXH3_64bits(page, H_HASH))
		return BAD("the header fails its checksum: the file is damaged");
	h->flags = (uint32_t)le_get(page + H_FLAGS, 4);
	h->block_pages = (uint32_t)le_get(page + H_BLOCK_PAGES, 4);
	h->memory = le_get(page + H_MEMORY, 8);
	h->meta_off = le_get(page + H_META_OFF, 8);
	h->meta_len = le_get(page + H_META_LEN, 8);
	h->meta_hash = le_get(page + H_META_HASH, 8);
	h->table_off = le_get(page + H_TABLE_OFF, 8);
	h->table_len = le_get(page + H_TABLE_LEN, 8);
	h->table_hash = le_get(page + H_TABLE_HASH, 8);
	h->ram_off = le_get(page + H_RAM_OFF, 8);
	h->file_size = le_get(page + H_FILE_SIZE, 8);
	h->saved_ns = le_get(page + H_SAVED_NS, 8);
	h->disk_off = le_get(page + H_DISK_OFF, 8);
	h->disk_len = le_get(page + H_DISK_LEN, 8);
	if (h->version == 1) {
		/* Zero in version 1 (covered by the checksum): no disk copied, none placed. */
		if (h->disk_off || h->disk_len)
			return BAD("a version 1 header with copied disks");
		h->disk_off = h->ram_off + h->memory;	/* checked with the layout below */
		if (h->disk_off < h->ram_off)
			return BAD("the header's RAM offset is out of range");
	}
	if (le_get(page + H_HEADER_SIZE, 4) != SAVEFILE_HEADER_SIZE ||
	    le_get(page + H_PAGE_SIZE, 4) != SAVEFILE_PAGE_SIZE)
		return BAD("header or page size is not %u", SAVEFILE_PAGE_SIZE);
	if (h->flags & ~(h->version >= 3 ? SAVEFILE_F_ALL : 0))
		return BAD("unknown header flags 0x%x", h->flags);
	if (h->block_pages != SAVEFILE_BLOCK_PAGES)
		return BAD("%u pages per block; this ferry reads %u", h->block_pages,
			   SAVEFILE_BLOCK_PAGES);
	err = savefile_check_layout(h, why, whylen);
	if (err)
		return err;
	h->pages = h->memory / SAVEFILE_PAGE_SIZE;
	h->blocks = h->table_len / SAVEFILE_ENTRY_SIZE;
	if (file_size < h->file_size)
		return BAD("the file is %llu bytes, its header says %llu: truncated",
			   (unsigned long long)file_size, (unsigned long long)h->file_size);
	if (file_size > h->file_size)
		return BAD("the file is %llu bytes, its header says %llu: something was appended",
			   (unsigned long long)file_size, (unsigned long long)h->file_size);
	return 0;
}

uint64_t savefile_table_hash(const uint8_t *table, uint64_t len)
{
	return XXH3_64bits(table, len);
}

int savefile_block_decode(const struct savefile_header *h, const uint8_t *table, uint64_t b,
			  struct savefile_block *out)
{
	unsigned n = savefile_block_npages(h, b);

	out->data = le_get(table + b * SAVEFILE_ENTRY_SIZE, 8);
	out->hash = le_get(table + b * SAVEFILE_ENTRY_SIZE + 8, 8);
	if (n < 64 && (out->data >> n))
		return -EPROTO;		/* data past the end of RAM */
	return 0;
}

void savefile_block_encode(uint8_t *table, uint64_t b, const struct savefile_block *in)
{
	le_put(table + b * SAVEFILE_ENTRY_SIZE, in->data, 8);
	le_put(table + b * SAVEFILE_ENTRY_SIZE + 8, in->hash, 8);
}

uint64_t savefile_block_off(const struct savefile_header *h, const uint8_t *table, uint64_t b)
{
	const uint64_t per_seg = SAVEFILE_SEG_PAGES / SAVEFILE_BLOCK_PAGES;
	uint64_t seg0 = b / per_seg * per_seg, pages = 0;

	if (!(h->flags & SAVEFILE_F_PACKED))
		return h->ram_off + savefile_block_first(h, b) * SAVEFILE_PAGE_SIZE;
	/*
	 * The data pages of the segment's blocks before b: at most the
	 * segment's pages (a mask never runs past RAM, checked at open), so
	 * the data stays inside its segment and inside RAM.
	 */
	for (uint64_t c = seg0; c < b; c++)
		pages += (uint64_t)__builtin_popcountll(le_get(table + c * SAVEFILE_ENTRY_SIZE, 8));
	return h->ram_off + (seg0 * SAVEFILE_BLOCK_PAGES + pages) * SAVEFILE_PAGE_SIZE;
}

uint64_t savefile_page_off(const struct savefile_header *h, const uint8_t *table, uint64_t b,
			   unsigned k)
{
	uint64_t data = le_get(table + b * SAVEFILE_ENTRY_SIZE, 8);
	/* Packed: after the block's data pages before it; else at its own page. */
	uint64_t at = !(h->flags & SAVEFILE_F_PACKED) ? k :
		      k ? (uint64_t)__builtin_popcountll(data & ((1ULL << k) - 1)) : 0;

	return savefile_block_off(h, table, b) + at * SAVEFILE_PAGE_SIZE;
}

/* ---- metadata ---------------------------------------------------------- */

static int savefile_put(struct vmstate_buf *b, const void *p, size_t n)
{
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n)
			cap *= 2;
		uint8_t *d = realloc(b->data, cap);
		if (!d)
			return -ENOMEM;
		b->data = d;
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
	return 0;
}

static int savefile_put_int(struct vmstate_buf *b, uint64_t v, unsigned n)
{
	uint8_t le[8];

	le_put(le, v, n);
	return savefile_put(b, le, n);
}

static int savefile_put_str(struct vmstate_buf *b, const char *s)
{
	size_t n = strlen(s);

	if (n >= SAVEFILE_SPEC_MAX)
		return -E2BIG;
	return savefile_put_int(b, n, 2) ?: savefile_put(b, s, n);
}

static int savefile_put_rec(struct vmstate_buf *b, const struct savefile_disk_rec *r)
{
	static const struct savefile_disk_rec none = { .mode = SAVEFILE_DISK_PATH };

	if (!r)
		r = &none;
	return savefile_put_int(b, r->mode, 1) ?: savefile_put_int(b, r->flags, 1) ?:
	       savefile_put_int(b, r->size, 8) ?: savefile_put_int(b, r->ident, 8) ?:
	       savefile_put_int(b, r->off, 8) ?: savefile_put_int(b, r->len, 8) ?:
	       savefile_put_int(b, r->data_pages, 8) ?: savefile_put_int(b, r->digest, 8);
}

int savefile_meta_encode(const struct mig_config *cfg, const char *kernel,
			 const char *const *disks, const struct savefile_disk_rec *recs,
			 unsigned nr_disks,
			 const char *const *nics, unsigned nr_nics,
			 const uint8_t *state, size_t state_len, uint8_t **out, size_t *len)
{
	struct vmstate_buf b, c;
	int err;

	vmstate_buf_init(&b);
	vmstate_buf_init(&c);
	err = vmstate_save(&mig_config_vmsd, cfg, &c);
	if (!err && (nr_disks > 8 || nr_nics > 8 || state_len > SAVEFILE_META_MAX / 2))
		err = -E2BIG;
	if (!err)
		err = savefile_put_int(&b, c.len, 4) ?: savefile_put(&b, c.data, c.len) ?:
		      savefile_put_str(&b, kernel) ?: savefile_put_int(&b, nr_disks, 1);
	for (unsigned i = 0; !err && i < nr_disks; i++)
		err = savefile_put_str(&b, disks[i]);
	for (unsigned i = 0; !err && i < nr_disks; i++)
		err = savefile_put_rec(&b, recs ? &recs[i] : NULL);
	if (!err)
		err = savefile_put_int(&b, nr_nics, 1);
	for (unsigned i = 0; !err && i < nr_nics; i++)
		err = savefile_put_str(&b, nics[i]);
	if (!err)
		err = savefile_put_int(&b, state_len, 4) ?: savefile_put(&b, state, state_len);
	vmstate_buf_free(&c);
	if (err) {
		vmstate_buf_free(&b);
		return err;
	}
	*out = b.data;
	*len = b.len;
	return 0;
}

/* A string of at most max - 1 bytes without NUL, copied into dst. */
static int savefile_get_str(struct mig_cursor *c, char *dst, size_t max)
{
	uint16_t n = mig_cursor_u16(c);
	const uint8_t *p;

	if (c->bad || n >= max)
		return -EPROTO;
	p = mig_cursor_bytes(c, n);
	if (!p || memchr(p, '\0', n))
		return -EPROTO;
	memcpy(dst, p, n);
	dst[n] = '\0';
	return 0;
}

/* One disk record, checked on its own (its place in the file: savefile_check_disks()). */
static int savefile_get_rec(struct mig_cursor *c, struct savefile_disk_rec *r, char *why,
			    size_t whylen)
{
	r->mode = mig_cursor_u8(c);
	r->flags = mig_cursor_u8(c);
	r->size = mig_cursor_u64(c);
	r->ident = mig_cursor_u64(c);
	r->off = mig_cursor_u64(c);
	r->len = mig_cursor_u64(c);
	r->data_pages = mig_cursor_u64(c);
	r->digest = mig_cursor_u64(c);
	if (c->bad)
		return BAD("the metadata ends inside a disk record");
	if (r->mode != SAVEFILE_DISK_PATH && r->mode != SAVEFILE_DISK_COPY)
		return BAD("unknown mode %u", r->mode);
	if (r->flags & ~SAVEFILE_DISK_F_ALL)
		return BAD("unknown flags 0x%x", r->flags);
	if (r->size > SAVEFILE_DISK_MAX || r->size % 512)
		return BAD("a size of %llu bytes (whole sectors, at most 16 TiB)",
			   (unsigned long long)r->size);
	if (r->mode == SAVEFILE_DISK_PATH) {
		if (r->off || r->len || r->data_pages || r->digest)
			return BAD("a disk kept by path with a copy");
		return 0;
	}
	if (!(r->flags & SAVEFILE_DISK_F_IDENT) || (r->flags & SAVEFILE_DISK_F_LIVE) || !r->size)
		return BAD("a copied disk without its size, or one that changed after the save");
	if (r->off % SAVEFILE_PAGE_SIZE || r->len != (r->size + SAVEFILE_PAGE_SIZE - 1) /
	    SAVEFILE_PAGE_SIZE * SAVEFILE_PAGE_SIZE)
		return BAD("a copy at %llu of %llu bytes for a disk of %llu",
			   (unsigned long long)r->off, (unsigned long long)r->len,
			   (unsigned long long)r->size);
	if (r->data_pages > r->len / SAVEFILE_PAGE_SIZE)
		return BAD("%llu pages of data in a copy of %llu pages",
			   (unsigned long long)r->data_pages,
			   (unsigned long long)(r->len / SAVEFILE_PAGE_SIZE));
	return 0;
}

int savefile_meta_decode(const uint8_t *p, uint64_t len, uint32_t version,
			 struct savefile_meta *meta, char *why, size_t whylen)
{
	char rwhy[200];
	struct vmstate_error verr;
	struct mig_cursor c;
	const uint8_t *rec;
	uint32_t n;

	memset(meta, 0, sizeof(*meta));
	if (len > SAVEFILE_META_MAX)
		return BAD("metadata too long");
	mig_cursor_init(&c, p, (uint32_t)len);
	n = mig_cursor_u32(&c);
	rec = mig_cursor_bytes(&c, n);
	if (!rec)
		return BAD("the metadata ends inside the configuration");
	if (vmstate_load(&mig_config_vmsd, &meta->cfg, rec, n, &verr))
		return BAD("bad configuration: %s", verr.msg);
	if (meta->cfg.flags)
		return BAD("the configuration has flags 0x%x (a save has none)", meta->cfg.flags);
	if (savefile_get_str(&c, meta->kernel, sizeof(meta->kernel)))
		return BAD("bad kernel name in the metadata");
	meta->nr_disks = mig_cursor_u8(&c);
	if (c.bad || meta->nr_disks > 8)
		return BAD("bad number of disks in the metadata");
	for (unsigned i = 0; i < meta->nr_disks; i++)
		if (savefile_get_str(&c, meta->disks[i], sizeof(meta->disks[i])))
			return BAD("bad disk %u in the metadata", i);
	meta->has_recs = version >= 2;
	for (unsigned i = 0; meta->has_recs && i < meta->nr_disks; i++)
		if (savefile_get_rec(&c, &meta->drec[i], rwhy, sizeof(rwhy)))
			return BAD("bad record of disk %u in the metadata: %s", i, rwhy);
	meta->nr_nics = mig_cursor_u8(&c);
	if (c.bad || meta->nr_nics > 8 || meta->nr_disks + meta->nr_nics > 8)
		return BAD("bad number of NICs in the metadata");
	for (unsigned i = 0; i < meta->nr_nics; i++)
		if (savefile_get_str(&c, meta->nics[i], sizeof(meta->nics[i])))
			return BAD("bad NIC %u in the metadata", i);
	meta->state_len = mig_cursor_u32(&c);
	meta->state = mig_cursor_bytes(&c, meta->state_len);
	if (!meta->state || c.off != len)
		return BAD("the device state does not end where the metadata does");
	return 0;
}

int savefile_disk_spec(const struct block_config *c, char *buf, size_t len, char *why,
		       size_t whylen)
{
	int n;

	/* The option parser splits at commas: a path with one could not come back. */
	if (strchr(c->path, ',') || strchr(c->serial, ',')) {
		snprintf(why, whylen, "disk %s: a path or serial with a comma cannot be recorded",
			 c->path);
		return -EINVAL;
	}
	n = snprintf(buf, len, "%s=%s%s%s%s%s%s", c->kind == BLOCK_KIND_NBD ? "nbd" : "path",
		     c->path, c->readonly ? ",readonly=on" : "",
		     c->cache == BLOCK_CACHE_NONE ? ",cache=none" : "",
		     c->nolock ? ",locking=off" : "", c->serial[0] ? ",serial=" : "", c->serial);
	if (n < 0 || (size_t)n >= len) {
		snprintf(why, whylen, "disk %s: its options are too long to record", c->path);
		return -EINVAL;
	}
	return 0;
}

int savefile_nic_spec(const struct net_config *c, char *buf, size_t len, char *why,
		      size_t whylen)
{
	/* The MAC is device state: it comes back with the NIC's record. */
	if (c->kind != NET_BACKEND_TAP) {
		snprintf(why, whylen, "a NIC on an inherited file descriptor cannot be recorded");
		return -EINVAL;
	}
	snprintf(buf, len, "tap=%s", c->ifname);
	return 0;
}
