/*
 * Declarative state encoder/decoder; see vmstate.h and docs/vmstate.md.
 *
 * Record:     u8 name_len | name | u32 version | u32 body_len | body
 * Body:       for each field of that version, in table order: u32 len | payload;
 *             then subsections to the end of the body
 * Subsection: u8 name_len | name | u8 flags | u32 version | u32 body_len | body
 * Payload:    scalars little-endian, buffers raw, structs as fields only.
 *
 * Everything read from the wire goes through struct vmstate_in, a window
 * that can only shrink, so no input can make us read out of bounds; and
 * everything written goes into a scratch copy of the target.
 */
#include "util/vmstate.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/hash.h"
#include "util/log.h"

#define VMSTATE_PATH_MAX	128
#define VMSTATE_MAX_DEPTH	8
#define VMSTATE_HDR_FIXED	9	/* name_len + version + body_len */

/* Where we are, for error messages: "top: field 'a.b[2]': why". */
struct vmstate_ctx {
	const char *top;
	uint32_t version;	/* of the record or subsection being decoded */
	char path[VMSTATE_PATH_MAX];
	size_t pathlen;
	char *msg;
	size_t msglen;
	bool verify;		/* save: for a digest (VMS_NO_VERIFY left empty) */
};

/* The unread part of the input; only ever shrinks. */
struct vmstate_in {
	const uint8_t *p;
	size_t len;
};

/* ---- helpers ----------------------------------------------------------- */

static size_t kind_width(enum vmstate_kind k)
{
	switch (k) {
	case VMSTATE_KIND_U8:  return 1;
	case VMSTATE_KIND_U16: return 2;
	case VMSTATE_KIND_U32: return 4;
	case VMSTATE_KIND_U64: return 8;
	default:               return 0;
	}
}

static uint64_t le_get(const uint8_t *p, size_t w)
{
	uint64_t v = 0;

	for (size_t i = 0; i < w; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static void le_put(uint8_t *p, uint64_t v, size_t w)
{
	for (size_t i = 0; i < w; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* Native-endian scalar of width w at p (unaligned). */
static uint64_t mem_get(const void *p, size_t w)
{
	uint8_t u8; uint16_t u16; uint32_t u32; uint64_t u64;

	switch (w) {
	case 1: memcpy(&u8, p, 1); return u8;
	case 2: memcpy(&u16, p, 2); return u16;
	case 4: memcpy(&u32, p, 4); return u32;
	default: memcpy(&u64, p, 8); return u64;
	}
}

static void mem_put(void *p, uint64_t v, size_t w)
{
	uint8_t u8 = (uint8_t)v; uint16_t u16 = (uint16_t)v;
	uint32_t u32 = (uint32_t)v;

	switch (w) {
	case 1: memcpy(p, &u8, 1); break;
	case 2: memcpy(p, &u16, 2); break;
	case 4: memcpy(p, &u32, 4); break;
	default: memcpy(p, &v, 8); break;
	}
}

static bool in_take(struct vmstate_in *in, size_t n, const uint8_t **out)
{
	if (n > in->len)
		return false;
	*out = in->p;
	in->p += n;
	in->len -= n;
	return true;
}

static bool in_le(struct vmstate_in *in, size_t w, uint64_t *v)
{
	const uint8_t *p;

	if (!in_take(in, w, &p))
		return false;
	*v = le_get(p, w);
	return true;
}

static void path_push(struct vmstate_ctx *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void path_push(struct vmstate_ctx *c, const char *fmt, ...)
{
	va_list ap;
	size_t room = sizeof(c->path) - c->pathlen;

	va_start(ap, fmt);
	int n = vsnprintf(c->path + c->pathlen, room, fmt, ap);
	va_end(ap);
	/* A truncated path only shortens a message; keep the NUL in place. */
	if (n > 0)
		c->pathlen += (size_t)n < room ? (size_t)n : room - 1;
}

static void path_pop(struct vmstate_ctx *c, size_t len)
{
	c->pathlen = len;
	c->path[len] = '\0';
}

static void path_field(struct vmstate_ctx *c, const char *name)
{
	path_push(c, c->pathlen ? ".%s" : "%s", name);
}

/* Record an error (first one wins) and return err. */
static int fail(struct vmstate_ctx *c, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(struct vmstate_ctx *c, int err, const char *fmt, ...)
{
	char why[VMSTATE_ERR_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (!c->msg || !c->msglen)
		return err;
	if (c->pathlen)
		snprintf(c->msg, c->msglen, "%s: field '%s': %s", c->top, c->path, why);
	else
		snprintf(c->msg, c->msglen, "%s: %s", c->top, why);
	return err;
}

static int range_fail(struct vmstate_ctx *c, const struct vmstate_field *f,
		      uint32_t i, uint64_t v)
{
	if (f->count > 1)
		path_push(c, "[%u]", i);
	return fail(c, -ERANGE, "value %llu out of range %llu..%llu",
		    (unsigned long long)v, (unsigned long long)f->min,
		    (unsigned long long)f->max);
}

/* ---- description sanity (programming errors, not input) -------------- */

static uint32_t field_since(const struct vmstate_field *f)
{
	return f->since ? f->since : 1;
}

static uint32_t desc_min_version(const struct vmstate_desc *d)
{
	return d->min_version ? d->min_version : d->version;
}

static bool field_count_ok(const struct vmstate_desc *d,
			   const struct vmstate_field *f)
{
	/*
	 * The count must be an earlier scalar field, so it is loaded first,
	 * and appear in the same version, so neither is defaulted alone.
	 */
	for (const struct vmstate_field *g = d->fields; g < f; g++)
		if (g->offset == f->count_offset && kind_width(g->kind) &&
		    g->size == f->count_size && g->count == 1 && !g->varray &&
		    field_since(g) == field_since(f))
			return true;
	return false;
}

static bool desc_ok(const struct vmstate_desc *d, int depth, uint32_t top_version,
		    bool defaultable, bool nested);

static bool subsections_ok(const struct vmstate_desc *d, int depth)
{
	unsigned n = 0;

	for (const struct vmstate_desc *const *s = d->subsections; s && *s; s++, n++) {
		if (n >= VMSTATE_MAX_SUBSECTIONS || (*s)->size != d->size ||
		    !desc_ok(*s, depth + 1, (*s)->version, true, false))
			return false;
		for (const struct vmstate_desc *const *t = d->subsections; t < s; t++)
			if (!strcmp((*t)->name, (*s)->name))
				return false;
	}
	return true;
}

/*
 * top_version: the version of the record the fields are in; defaultable:
 * the fields may be set to their defaults (subsections, fields added
 * later); nested: the body of a struct field, which cannot end in
 * subsections (it has no length of its own).
 */
static bool desc_ok(const struct vmstate_desc *d, int depth, uint32_t top_version,
		    bool defaultable, bool nested)
{
	if (depth > VMSTATE_MAX_DEPTH || !d->name || !d->fields || !d->version ||
	    d->min_version > d->version || (nested && d->subsections))
		return false;
	size_t nlen = strlen(d->name);
	if (nlen == 0 || nlen > 255)
		return false;
	for (const struct vmstate_field *f = d->fields; f->name; f++) {
		size_t w = kind_width(f->kind);
		bool dflt = defaultable || field_since(f) > 1;
		if (f->count == 0 || f->size == 0 || field_since(f) > top_version ||
		    f->offset + f->size * f->count > d->size)
			return false;
		if (w && (f->size != w || f->min > f->max ||
			  (dflt && (f->def < f->min || f->def > f->max))))
			return false;
		if (f->kind == VMSTATE_KIND_STRUCT &&
		    (!f->sub || f->sub->size != f->size ||
		     !desc_ok(f->sub, depth + 1, top_version, dflt, true)))
			return false;
		if (f->kind == VMSTATE_KIND_BUFFER && (f->varray || f->count != 1))
			return false;
		if (f->varray && !field_count_ok(d, f))
			return false;
	}
	return subsections_ok(d, depth);
}

static bool top_desc_ok(const struct vmstate_desc *d)
{
	return desc_ok(d, 0, d->version, false, false);
}

/* ---- output buffer ----------------------------------------------------- */

void vmstate_buf_init(struct vmstate_buf *b)
{
	memset(b, 0, sizeof(*b));
}

void vmstate_buf_free(struct vmstate_buf *b)
{
	free(b->data);
	vmstate_buf_init(b);
}

static int buf_grow(struct vmstate_buf *b, size_t n)
{
	if (n <= b->cap - b->len)
		return 0;
	if (n > SIZE_MAX / 2 - b->len)
		return -ENOMEM;
	size_t cap = b->cap ? b->cap : 256;
	while (cap - b->len < n)
		cap *= 2;
	uint8_t *p = realloc(b->data, cap);
	if (!p)
		return -ENOMEM;
	b->data = p;
	b->cap = cap;
	return 0;
}

static int buf_put_le(struct vmstate_buf *b, uint64_t v, size_t w)
{
	int ret = buf_grow(b, w);

	if (ret)
		return ret;
	le_put(b->data + b->len, v, w);
	b->len += w;
	return 0;
}

static int buf_put(struct vmstate_buf *b, const void *p, size_t n)
{
	int ret = buf_grow(b, n);

	if (ret)
		return ret;
	memcpy(b->data + b->len, p, n);
	b->len += n;
	return 0;
}

/* Patch the u32 length at 'at' to cover everything written after it. */
static int buf_patch_len(struct vmstate_buf *b, size_t at)
{
	size_t n = b->len - at - 4;

	if (n > UINT32_MAX)
		return -EOVERFLOW;
	le_put(b->data + at, n, 4);
	return 0;
}

/* ---- save -------------------------------------------------------------- */

static int save_desc(struct vmstate_ctx *c, const struct vmstate_desc *d,
		     const uint8_t *obj, struct vmstate_buf *out);

static int varray_count(struct vmstate_ctx *c, const struct vmstate_field *f,
			const uint8_t *obj, uint32_t *n)
{
	if (!f->varray) {
		*n = f->count;
		return 0;
	}
	uint64_t v = mem_get(obj + f->count_offset, f->count_size);
	if (v > f->count)
		return fail(c, -ERANGE, "count %llu exceeds maximum %u",
			    (unsigned long long)v, f->count);
	*n = (uint32_t)v;
	return 0;
}

static int save_scalars(struct vmstate_ctx *c, const struct vmstate_field *f,
			const uint8_t *p, uint32_t n, struct vmstate_buf *out)
{
	size_t w = f->size;

	for (uint32_t i = 0; i < n; i++) {
		uint64_t v = mem_get(p + i * w, w);
		if (v < f->min || v > f->max)
			return range_fail(c, f, i, v);
		int ret = buf_put_le(out, v, w);
		if (ret)
			return ret;
	}
	return 0;
}

static int save_field(struct vmstate_ctx *c, const struct vmstate_field *f,
		      const uint8_t *obj, struct vmstate_buf *out)
{
	const uint8_t *p = obj + f->offset;
	size_t at = out->len;
	uint32_t n;
	int ret;

	ret = varray_count(c, f, obj, &n);
	if (ret == 0)
		ret = buf_put_le(out, 0, 4);	/* length, patched below */
	if (ret)
		return ret;
	if (c->verify && (f->flags & VMS_NO_VERIFY))
		return 0;	/* for a digest: present, but empty */
	if (f->kind == VMSTATE_KIND_BUFFER) {
		ret = buf_put(out, p, f->size);
	} else if (f->kind == VMSTATE_KIND_STRUCT) {
		size_t plen = c->pathlen;
		for (uint32_t i = 0; i < n && !ret; i++) {
			if (f->count > 1)
				path_push(c, "[%u]", i);
			ret = save_desc(c, f->sub, p + i * f->size, out);
			if (!ret)
				path_pop(c, plen);
		}
	} else {
		ret = save_scalars(c, f, p, n, out);
	}
	return ret ? ret : buf_patch_len(out, at);
}

static int save_fields(struct vmstate_ctx *c, const struct vmstate_desc *d,
		       const uint8_t *obj, struct vmstate_buf *out)
{
	for (const struct vmstate_field *f = d->fields; f->name; f++) {
		size_t plen = c->pathlen;
		path_field(c, f->name);
		int ret = save_field(c, f, obj, out);
		if (ret)
			return ret;
		path_pop(c, plen);
	}
	return 0;
}

/* The fields; for a digest, of a copy blanked by the description's verify_mask. */
static int save_desc(struct vmstate_ctx *c, const struct vmstate_desc *d,
		     const uint8_t *obj, struct vmstate_buf *out)
{
	if (!c->verify || !d->verify_mask)
		return save_fields(c, d, obj, out);
	uint8_t *masked = malloc(d->size);
	if (!masked)
		return -ENOMEM;
	memcpy(masked, obj, d->size);
	d->verify_mask(masked);
	int ret = save_fields(c, d, masked, out);
	free(masked);
	return ret;
}

static int save_body(struct vmstate_ctx *c, const struct vmstate_desc *d,
		     const uint8_t *obj, struct vmstate_buf *out);

/* One subsection: its header, then its body; the length patched last. */
static int save_subsection(struct vmstate_ctx *c, const struct vmstate_desc *sub,
			   const uint8_t *obj, struct vmstate_buf *out)
{
	size_t nlen = strlen(sub->name), plen = c->pathlen, at;
	int ret;

	ret = buf_put_le(out, nlen, 1);
	if (!ret)
		ret = buf_put(out, sub->name, nlen);
	if (!ret)
		ret = buf_put_le(out, sub->optional ? VMSTATE_SUB_OPTIONAL : 0, 1);
	if (!ret)
		ret = buf_put_le(out, sub->version, 4);
	at = out->len;
	if (!ret)
		ret = buf_put_le(out, 0, 4);
	if (ret)
		return ret;
	path_field(c, sub->name);
	ret = save_body(c, sub, obj, out);
	if (ret)
		return ret;
	path_pop(c, plen);
	return buf_patch_len(out, at);
}

/* The fields, then each subsection that is needed. */
static int save_body(struct vmstate_ctx *c, const struct vmstate_desc *d,
		     const uint8_t *obj, struct vmstate_buf *out)
{
	int ret = save_desc(c, d, obj, out);

	for (const struct vmstate_desc *const *s = d->subsections; !ret && s && *s; s++)
		if (!(*s)->needed || (*s)->needed(obj))
			ret = save_subsection(c, *s, obj, out);
	return ret;
}

static int save_record(const struct vmstate_desc *d, const char *name, const void *obj,
		       struct vmstate_buf *out, bool verify)
{
	char msg[VMSTATE_ERR_MAX] = "";
	struct vmstate_ctx c = { .top = name, .msg = msg, .msglen = sizeof(msg), .verify = verify };
	size_t start = out->len, nlen = strlen(name);
	int ret;

	assert(top_desc_ok(d));
	if (!nlen || nlen > 255)
		return -EINVAL;
	ret = buf_put_le(out, nlen, 1);
	if (!ret)
		ret = buf_put(out, name, nlen);
	if (!ret)
		ret = buf_put_le(out, d->version, 4);
	if (!ret)
		ret = buf_put_le(out, 0, 4);	/* body length, patched below */
	if (!ret)
		ret = save_body(&c, d, obj, out);
	if (!ret)
		ret = buf_patch_len(out, start + 1 + nlen + 4);
	if (ret) {
		if (!verify)
			pr_err("vmstate save: %s", msg[0] ? msg : strerror(-ret));
		out->len = start;
	}
	return ret;
}

int vmstate_save_as(const struct vmstate_desc *d, const char *name, const void *obj,
		    struct vmstate_buf *out)
{
	return save_record(d, name, obj, out, false);
}

int vmstate_digest_as(const struct vmstate_desc *d, const char *name, const void *obj,
		      uint64_t *digest)
{
	struct vmstate_buf b;
	int ret;

	vmstate_buf_init(&b);
	ret = save_record(d, name, obj, &b, true);
	if (!ret)
		*digest = XXH3_64bits(b.data, b.len);
	vmstate_buf_free(&b);
	return ret;
}

int vmstate_save(const struct vmstate_desc *d, const void *obj,
		 struct vmstate_buf *out)
{
	return vmstate_save_as(d, d->name, obj, out);
}

/* ---- load -------------------------------------------------------------- */

static int load_desc(struct vmstate_ctx *c, const struct vmstate_desc *d,
		     uint8_t *obj, struct vmstate_in *in, bool body_end);

static int load_scalars(struct vmstate_ctx *c, const struct vmstate_field *f,
			uint8_t *p, uint32_t n, struct vmstate_in *in)
{
	size_t w = f->size;

	if (in->len != (size_t)n * w)
		return fail(c, -EINVAL, "length %zu, expected %zu",
			    in->len, (size_t)n * w);
	for (uint32_t i = 0; i < n; i++) {
		uint64_t v;
		if (!in_le(in, w, &v))
			return fail(c, -EINVAL, "truncated");
		if (v < f->min || v > f->max)
			return range_fail(c, f, i, v);
		mem_put(p + i * w, v, w);
	}
	return 0;
}

static int load_structs(struct vmstate_ctx *c, const struct vmstate_field *f,
			uint8_t *p, uint32_t n, struct vmstate_in *in)
{
	size_t plen = c->pathlen;

	for (uint32_t i = 0; i < n; i++) {
		if (f->count > 1)
			path_push(c, "[%u]", i);
		int ret = load_desc(c, f->sub, p + i * f->size, in, false);
		if (ret)
			return ret;
		path_pop(c, plen);
	}
	return 0;
}

static int load_payload(struct vmstate_ctx *c, const struct vmstate_field *f,
			uint8_t *obj, struct vmstate_in *win)
{
	uint8_t *p = obj + f->offset;
	const uint8_t *src;
	uint32_t n;
	int ret;

	/* For a varray, the count field was loaded and range-checked already. */
	ret = varray_count(c, f, obj, &n);
	if (ret)
		return ret;
	if (f->kind == VMSTATE_KIND_BUFFER) {
		if (win->len != f->size)
			return fail(c, -EINVAL, "length %zu, expected %zu",
				    win->len, f->size);
		if (!in_take(win, f->size, &src))
			return fail(c, -EINVAL, "truncated");
		memcpy(p, src, f->size);
		return 0;
	}
	if (f->kind == VMSTATE_KIND_STRUCT)
		ret = load_structs(c, f, p, n, win);
	else
		ret = load_scalars(c, f, p, n, win);
	if (ret)
		return ret;
	/* Elements past the count are not on the wire: don't keep stale ones. */
	memset(p + (size_t)n * f->size, 0, (size_t)(f->count - n) * f->size);
	return 0;
}

static int load_field(struct vmstate_ctx *c, const struct vmstate_field *f,
		      uint8_t *obj, struct vmstate_in *in)
{
	struct vmstate_in win;
	uint64_t len;
	char why[VMSTATE_ERR_MAX] = "";
	int ret;

	if (!in_le(in, 4, &len))
		return fail(c, -EINVAL, "truncated before its length");
	if (!in_take(in, len, &win.p))
		return fail(c, -EINVAL, "length %llu exceeds the %zu bytes left",
			    (unsigned long long)len, in->len);
	win.len = len;
	ret = load_payload(c, f, obj, &win);
	if (ret)
		return ret;
	if (win.len)
		return fail(c, -EINVAL, "%zu trailing bytes", win.len);
	if (f->check) {
		ret = f->check(obj + f->offset, why, sizeof(why));
		if (ret)
			return fail(c, ret < 0 ? ret : -EINVAL, "%s",
				    why[0] ? why : "check failed");
	}
	return 0;
}

static void default_desc(const struct vmstate_desc *d, uint8_t *obj);

/* A field the record does not carry: its declared default. */
static void default_field(const struct vmstate_field *f, uint8_t *obj)
{
	uint8_t *p = obj + f->offset;

	if (f->varray || f->kind == VMSTATE_KIND_BUFFER) {
		memset(p, 0, f->size * f->count);
	} else if (f->kind == VMSTATE_KIND_STRUCT) {
		for (uint32_t i = 0; i < f->count; i++)
			default_desc(f->sub, p + i * f->size);
	} else {
		for (uint32_t i = 0; i < f->count; i++)
			mem_put(p + i * f->size, f->def, f->size);
	}
}

static void default_desc(const struct vmstate_desc *d, uint8_t *obj)
{
	for (const struct vmstate_field *f = d->fields; f->name; f++)
		default_field(f, obj);
	for (const struct vmstate_desc *const *s = d->subsections; s && *s; s++)
		default_desc(*s, obj);
}

static int load_subsections(struct vmstate_ctx *c, const struct vmstate_desc *d,
			    uint8_t *obj, struct vmstate_in *in);

/*
 * The fields of c->version (later ones defaulted), then, if in ends with
 * this body (a record or subsection, not a nested struct), subsections;
 * then post_load.
 */
static int load_desc(struct vmstate_ctx *c, const struct vmstate_desc *d,
		     uint8_t *obj, struct vmstate_in *in, bool body_end)
{
	char why[VMSTATE_ERR_MAX] = "";
	int ret;

	for (const struct vmstate_field *f = d->fields; f->name; f++) {
		size_t plen = c->pathlen;
		if (field_since(f) > c->version) {
			default_field(f, obj);
			continue;
		}
		path_field(c, f->name);
		ret = load_field(c, f, obj, in);
		if (ret)
			return ret;
		path_pop(c, plen);
	}
	if (body_end) {
		ret = load_subsections(c, d, obj, in);
		if (ret)
			return ret;
	}
	if (d->post_load) {
		ret = d->post_load(obj, why, sizeof(why));
		if (ret)
			return fail(c, ret < 0 ? ret : -EINVAL, "%s",
				    why[0] ? why : "post_load failed");
	}
	return 0;
}

/* Copy a hostile name into dst for messages: printable and bounded. */
static void name_sanitize(char *dst, size_t dlen, const uint8_t *src, size_t n)
{
	size_t i;

	for (i = 0; i < n && i + 1 < dlen; i++)
		dst[i] = (src[i] >= 0x20 && src[i] < 0x7f) ? (char)src[i] : '?';
	dst[i] = '\0';
}

/* Parse the header; leaves in at the body, which must fill the rest. */
static int parse_header(struct vmstate_ctx *c, struct vmstate_in *in,
			const uint8_t **name, size_t *nlen, uint32_t *version,
			size_t *body_len)
{
	uint64_t v, blen, ver;

	if (!in_le(in, 1, &v))
		return fail(c, -EINVAL, "bad header: truncated");
	if (v == 0)
		return fail(c, -EINVAL, "bad header: empty name");
	*nlen = v;
	if (!in_take(in, *nlen, name) || !in_le(in, 4, &ver) || !in_le(in, 4, &blen))
		return fail(c, -EINVAL, "bad header: truncated");
	*version = (uint32_t)ver;
	*body_len = blen;
	return 0;
}

int vmstate_peek(const void *data, size_t len, char *name, size_t namelen,
		 uint32_t *version, size_t *record_len)
{
	struct vmstate_ctx c = { .top = "vmstate" };
	struct vmstate_in in = { data, len };
	const uint8_t *n;
	size_t nlen, blen;
	int ret;

	ret = parse_header(&c, &in, &n, &nlen, version, &blen);
	if (ret)
		return ret;
	if (blen > in.len)
		return -EINVAL;
	if (namelen)
		name_sanitize(name, namelen, n, nlen);
	*record_len = len - in.len + blen;
	return 0;
}

/* Is ver within what d accepts?  what: "" or "subsection 'x': ". */
static int check_version(struct vmstate_ctx *c, const struct vmstate_desc *d,
			 uint32_t ver, const char *what)
{
	uint32_t min = desc_min_version(d);

	if (ver > d->version)
		return fail(c, -EPROTONOSUPPORT,
			    "%sversion %u is newer than this ferry supports (%u)",
			    what, ver, d->version);
	if (ver < min && min == d->version)
		return fail(c, -EPROTONOSUPPORT, "%sversion %u is not supported (only %u)",
			    what, ver, d->version);
	if (ver < min)
		return fail(c, -EPROTONOSUPPORT,
			    "%sversion %u is older than this ferry accepts (%u..%u)",
			    what, ver, min, d->version);
	return 0;
}

static int find_subsection(const struct vmstate_desc *d, const uint8_t *name, size_t nlen)
{
	int i = 0;

	for (const struct vmstate_desc *const *s = d->subsections; s && *s; s++, i++)
		if (strlen((*s)->name) == nlen && !memcmp((*s)->name, name, nlen))
			return i;
	return -1;
}

/* One subsection known to d: its version, then its body, exactly. */
static int load_subsection(struct vmstate_ctx *c, const struct vmstate_desc *sub,
			   uint8_t *obj, uint32_t ver, struct vmstate_in *body)
{
	char what[VMSTATE_ERR_MAX];
	uint32_t outer = c->version;
	size_t plen = c->pathlen;
	int ret;

	snprintf(what, sizeof(what), "subsection '%s': ", sub->name);
	ret = check_version(c, sub, ver, what);
	if (ret)
		return ret;
	c->version = ver;
	path_field(c, sub->name);
	ret = load_desc(c, sub, obj, body, true);
	if (!ret && body->len)
		ret = fail(c, -EINVAL, "%zu trailing bytes", body->len);
	if (ret)
		return ret;
	path_pop(c, plen);
	c->version = outer;
	return 0;
}

/*
 * What follows the fields of a record or subsection: subsections to the
 * end.  Unknown ones are skipped when the sender marked them optional;
 * known ones that are absent leave their fields at their defaults.
 */
static int load_subsections(struct vmstate_ctx *c, const struct vmstate_desc *d,
			    uint8_t *obj, struct vmstate_in *in)
{
	uint32_t seen = 0;
	size_t plen = c->pathlen;

	while (in->len) {
		struct vmstate_in body;
		const uint8_t *name;
		uint64_t nlen, flags, ver, blen;
		char shown[40];

		if (!in_le(in, 1, &nlen) || !nlen || !in_take(in, nlen, &name) ||
		    !in_le(in, 1, &flags) || !in_le(in, 4, &ver) || !in_le(in, 4, &blen))
			return fail(c, -EINVAL, "bad subsection header (truncated or empty name)");
		name_sanitize(shown, sizeof(shown), name, nlen);
		if (!in_take(in, blen, &body.p))
			return fail(c, -EINVAL, "subsection '%s': length %llu exceeds the %zu bytes left",
				    shown, (unsigned long long)blen, in->len);
		body.len = blen;
		if (flags & ~(uint64_t)VMSTATE_SUB_OPTIONAL)
			return fail(c, -EINVAL, "subsection '%s': unknown flags 0x%02llx", shown,
				    (unsigned long long)flags);
		int i = find_subsection(d, name, nlen);
		if (i < 0 && (flags & VMSTATE_SUB_OPTIONAL))
			continue;	/* a newer ferry's refinement: ours does without */
		if (i < 0)
			return fail(c, -EINVAL, "unknown subsection '%s' (not optional)", shown);
		if (seen & (1u << i))
			return fail(c, -EINVAL, "subsection '%s' appears twice", shown);
		seen |= 1u << i;
		int ret = load_subsection(c, d->subsections[i], obj, (uint32_t)ver, &body);
		if (ret)
			return ret;
		path_pop(c, plen);
	}
	for (int i = 0; d->subsections && d->subsections[i]; i++)
		if (!(seen & (1u << i)))
			default_desc(d->subsections[i], obj);
	return 0;
}

static int check_header(struct vmstate_ctx *c, const struct vmstate_desc *d,
			const char *want, struct vmstate_in *in)
{
	const uint8_t *name;
	size_t nlen, blen;
	uint32_t ver;
	char shown[40];
	int ret;

	ret = parse_header(c, in, &name, &nlen, &ver, &blen);
	if (ret)
		return ret;
	if (nlen != strlen(want) || memcmp(name, want, nlen)) {
		name_sanitize(shown, sizeof(shown), name, nlen);
		return fail(c, -EINVAL, "record is for '%s', not '%s'", shown, want);
	}
	ret = check_version(c, d, ver, "");
	if (ret)
		return ret;
	c->version = ver;
	if (blen != in->len)
		return fail(c, -EINVAL, "body length %zu but %zu bytes %s",
			    blen, in->len, blen > in->len ? "present (truncated)" :
			    "present (trailing bytes)");
	return 0;
}

int vmstate_load_as(const struct vmstate_desc *d, const char *name, void *obj,
		    const void *data, size_t len, struct vmstate_error *err)
{
	struct vmstate_ctx c = { .top = name };
	struct vmstate_in in = { data, len };
	uint8_t *scratch;
	int ret;

	assert(top_desc_ok(d));
	if (err) {
		c.msg = err->msg;
		c.msglen = sizeof(err->msg);
		err->msg[0] = '\0';
	}
	if (!data && len)
		return fail(&c, -EINVAL, "no data");
	scratch = malloc(d->size);
	if (!scratch)
		return fail(&c, -ENOMEM, "out of memory");
	memcpy(scratch, obj, d->size);
	ret = check_header(&c, d, name, &in);
	if (!ret)
		ret = load_desc(&c, d, scratch, &in, true);
	if (!ret && in.len)	/* load_field() bounds each field; belt and braces */
		ret = fail(&c, -EINVAL, "%zu trailing bytes", in.len);
	if (!ret)
		memcpy(obj, scratch, d->size);
	free(scratch);
	return ret;
}

int vmstate_load(const struct vmstate_desc *d, void *obj, const void *data,
		 size_t len, struct vmstate_error *err)
{
	return vmstate_load_as(d, d->name, obj, data, len, err);
}
