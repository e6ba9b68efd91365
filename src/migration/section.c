#include "migration/section.h"

#include <assert.h>
#include <errno.h>
#include <string.h>

#include "migration/format.h"
#include "util/le.h"

uint64_t mig_section_chain(uint64_t chain, uint64_t sum)
{
	uint8_t b[8];

	le_put(b, sum, 8);
	return XXH3_64bits_withSeed(b, sizeof(b), chain);
}

static void mig_section_header(uint8_t hdr[MIG_SECTION_HDR], uint8_t type, uint32_t len)
{
	hdr[0] = type;
	hdr[1] = hdr[2] = hdr[3] = 0;
	le_put(hdr + 4, len, 4);
}

int mig_section_begin(struct mig_section_writer *w, struct mig_stream *s, uint8_t type,
		      uint32_t len)
{
	uint8_t hdr[MIG_SECTION_HDR];

	w->s = s;
	w->len = len;
	w->done = 0;
	w->hash = XXH3_createState();
	if (!w->hash)
		return -ENOMEM;
	XXH3_64bits_reset(w->hash);
	mig_section_header(hdr, type, len);
	XXH3_64bits_update(w->hash, hdr, sizeof(hdr));
	mig_stream_put(s, hdr, sizeof(hdr));
	return 0;
}

void mig_section_put(struct mig_section_writer *w, const void *data, size_t len)
{
	assert(w->done + len <= w->len);
	if (!len)
		return;
	XXH3_64bits_update(w->hash, data, len);
	mig_stream_put(w->s, data, len);
	w->done += (uint32_t)len;
}

void mig_section_putv(struct mig_section_writer *w, const struct iovec *iov, int n)
{
	size_t total = 0;

	for (int i = 0; i < n; i++) {
		XXH3_64bits_update(w->hash, iov[i].iov_base, iov[i].iov_len);
		total += iov[i].iov_len;
	}
	assert(w->done + total <= w->len);
	mig_stream_putv(w->s, iov, n);
	w->done += (uint32_t)total;
}

void mig_section_put_u32(struct mig_section_writer *w, uint32_t v)
{
	uint8_t b[4];

	le_put(b, v, 4);
	mig_section_put(w, b, 4);
}

void mig_section_put_u64(struct mig_section_writer *w, uint64_t v)
{
	uint8_t b[8];

	le_put(b, v, 8);
	mig_section_put(w, b, 8);
}

void mig_section_end(struct mig_section_writer *w)
{
	assert(w->done == w->len);
	uint64_t sum = XXH3_64bits_digest(w->hash);
	mig_stream_put_u64(w->s, sum);
	w->s->chain_out = mig_section_chain(w->s->chain_out, sum);
	XXH3_freeState(w->hash);
	w->hash = NULL;
}

void mig_section_write(struct mig_stream *s, uint8_t type, const void *payload, uint32_t len)
{
	struct mig_section_writer w;

	if (mig_section_begin(&w, s, type, len)) {
		mig_stream_fail(s, -ENOMEM, "out of memory");
		return;
	}
	mig_section_put(&w, payload, len);
	mig_section_end(&w);
}

int mig_section_reader_begin(struct mig_section_reader *r, struct mig_stream *s)
{
	uint8_t hdr[MIG_SECTION_HDR];
	uint32_t n = 0;

	memset(r, 0, sizeof(*r));
	r->s = s;
	mig_stream_get(s, hdr, sizeof(hdr));
	if (mig_stream_error(s))
		return mig_stream_error(s);
	n = (uint32_t)le_get(hdr + 4, 4);
	if (hdr[1] || hdr[2] || hdr[3]) {
		mig_stream_fail(s, -EPROTO, "section type %u: reserved bytes are not zero", hdr[0]);
		return mig_stream_error(s);
	}
	if (n > MIG_SECTION_MAX) {
		mig_stream_fail(s, -EPROTO, "section type %u: length %u exceeds the limit of %u",
				hdr[0], n, MIG_SECTION_MAX);
		return mig_stream_error(s);
	}
	r->hash = XXH3_createState();
	if (!r->hash) {
		mig_stream_fail(s, -ENOMEM, "out of memory");
		return mig_stream_error(s);
	}
	XXH3_64bits_reset(r->hash);
	XXH3_64bits_update(r->hash, hdr, sizeof(hdr));
	r->type = hdr[0];
	r->len = n;
	return 0;
}

int mig_section_reader_get(struct mig_section_reader *r, void *buf, uint32_t n)
{
	if (n > r->len - r->done) {
		mig_stream_fail(r->s, -EPROTO, "section type %u: contents run past its length of %u",
				r->type, r->len);
		return mig_stream_error(r->s);
	}
	mig_stream_get(r->s, buf, n);
	if (mig_stream_error(r->s))
		return mig_stream_error(r->s);
	XXH3_64bits_update(r->hash, buf, n);
	r->done += n;
	return 0;
}

int mig_section_reader_end(struct mig_section_reader *r)
{
	if (r->done != r->len) {
		mig_stream_fail(r->s, -EPROTO, "section type %u: %u of its %u bytes unused",
				r->type, r->len - r->done, r->len);
	} else {
		uint64_t sum = mig_stream_get_u64(r->s);
		if (!mig_stream_error(r->s) && sum != XXH3_64bits_digest(r->hash))
			mig_stream_fail(r->s, -EPROTO, "section type %u (%u bytes): checksum mismatch",
					r->type, r->len);
		if (!mig_stream_error(r->s)) {
			r->s->chain_in_prev = r->s->chain_in;
			r->s->chain_in = mig_section_chain(r->s->chain_in, sum);
		}
	}
	mig_section_reader_abort(r);
	return mig_stream_error(r->s);
}

void mig_section_reader_abort(struct mig_section_reader *r)
{
	if (r->hash)
		XXH3_freeState(r->hash);
	r->hash = NULL;
}

int mig_section_read(struct mig_stream *s, uint8_t *buf, uint32_t cap, uint8_t *type,
		     uint32_t *len)
{
	struct mig_section_reader r;
	int err = mig_section_reader_begin(&r, s);

	if (err)
		return err;
	if (r.len > cap) {
		mig_section_reader_abort(&r);
		mig_stream_fail(s, -EPROTO, "section type %u: length %u exceeds the limit of %u",
				r.type, r.len, cap);
		return mig_stream_error(s);
	}
	err = mig_section_reader_get(&r, buf, r.len);
	if (err) {
		mig_section_reader_abort(&r);
		return err;
	}
	err = mig_section_reader_end(&r);
	if (err)
		return err;
	*type = r.type;
	*len = r.len;
	return 0;
}

void mig_cursor_init(struct mig_cursor *c, const uint8_t *p, uint32_t len)
{
	c->p = p;
	c->len = len;
	c->off = 0;
	c->bad = 0;
}

const uint8_t *mig_cursor_bytes(struct mig_cursor *c, uint32_t n)
{
	if (c->bad || n > c->len - c->off) {
		c->bad = 1;
		return NULL;
	}
	const uint8_t *r = c->p + c->off;
	c->off += n;
	return r;
}

static uint64_t mig_cursor_le(struct mig_cursor *c, unsigned n)
{
	const uint8_t *b = mig_cursor_bytes(c, n);

	return b ? le_get(b, n) : 0;
}

uint8_t mig_cursor_u8(struct mig_cursor *c) { return (uint8_t)mig_cursor_le(c, 1); }
uint16_t mig_cursor_u16(struct mig_cursor *c) { return (uint16_t)mig_cursor_le(c, 2); }
uint32_t mig_cursor_u32(struct mig_cursor *c) { return (uint32_t)mig_cursor_le(c, 4); }
uint64_t mig_cursor_u64(struct mig_cursor *c) { return mig_cursor_le(c, 8); }

int mig_result_parse(const uint8_t *p, uint32_t len, int32_t *status, const char **msg,
		     int *msglen)
{
	if (len < 6)
		return -EPROTO;
	*status = (int32_t)le_get(p, 4);
	uint32_t n = (uint32_t)le_get(p + 4, 2);
	*msg = (const char *)p + 6;
	*msglen = (int)(n < len - 6 ? n : len - 6);
	return 0;
}

void mig_payload_streamed(struct mig_payload *in, struct mig_section_reader *r)
{
	*in = (struct mig_payload){ .r = r, .len = r->len };
}

void mig_payload_whole(struct mig_payload *in, const uint8_t *p, uint32_t len)
{
	*in = (struct mig_payload){ .p = p, .len = len };
}

uint32_t mig_payload_left(const struct mig_payload *in)
{
	return in->len - in->off;
}

int mig_payload_get(struct mig_payload *in, void *dst, uint32_t n)
{
	if (n > in->len - in->off)
		return -EPROTO;
	if (in->r) {
		int err = mig_section_reader_get(in->r, dst, n);
		if (err)
			return err;
	} else {
		memcpy(dst, in->p + in->off, n);
	}
	in->off += n;
	return 0;
}

const uint8_t *mig_payload_ptr(struct mig_payload *in, uint32_t n)
{
	if (in->r || n > in->len - in->off)
		return NULL;
	const uint8_t *p = in->p + in->off;
	in->off += n;
	return p;
}
