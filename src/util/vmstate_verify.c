/*
 * Where two objects differ in what vmstate_digest_as() covers: the same
 * walk as the encoder (fields in table order, nested descriptions, needed
 * subsections), skipping VMS_NO_VERIFY fields and what verify_mask
 * blanks.  Only for messages: when a --verify state digest mismatches,
 * the destination names the first field that did not survive the load.
 */
#include "util/vmstate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct vmstate_diff_ctx {
	char *path;
	size_t len;
	size_t used;
};

static void diff_took(struct vmstate_diff_ctx *c, int n)
{
	size_t room = c->len - c->used;

	if (n > 0)
		c->used += (size_t)n < room ? (size_t)n : room - 1;
}

static void diff_name(struct vmstate_diff_ctx *c, const char *name)
{
	diff_took(c, snprintf(c->path + c->used, c->len - c->used, "%s%s", c->used ? "." : "",
			      name));
}

static void diff_index(struct vmstate_diff_ctx *c, uint32_t i)
{
	diff_took(c, snprintf(c->path + c->used, c->len - c->used, "[%u]", i));
}

/* A scalar that differs: both values, first a's. */
static void diff_values(struct vmstate_diff_ctx *c, const uint8_t *a, const uint8_t *b, size_t w)
{
	uint64_t va = 0, vb = 0;

	memcpy(&va, a, w);	/* little-endian host */
	memcpy(&vb, b, w);
	diff_took(c, snprintf(c->path + c->used, c->len - c->used, " (%#llx, %#llx)",
			      (unsigned long long)va, (unsigned long long)vb));
}

static uint32_t diff_count(const struct vmstate_field *f, const uint8_t *obj)
{
	uint64_t v = 0;

	if (!f->varray)
		return f->count;
	memcpy(&v, obj + f->count_offset, f->count_size);	/* little-endian host */
	return v > f->count ? f->count : (uint32_t)v;
}

static bool diff_body(struct vmstate_diff_ctx *c, const struct vmstate_desc *d,
		      const uint8_t *a, const uint8_t *b);

static bool diff_field(struct vmstate_diff_ctx *c, const struct vmstate_field *f,
		       const uint8_t *a, const uint8_t *b)
{
	uint32_t n = diff_count(f, a);
	size_t at = c->used;

	diff_name(c, f->name);
	if (f->kind != VMSTATE_KIND_STRUCT) {
		if (f->kind == VMSTATE_KIND_BUFFER)
			n = 1;
		for (uint32_t i = 0; i < n; i++) {
			if (!memcmp(a + f->offset + i * f->size, b + f->offset + i * f->size, f->size))
				continue;
			if (f->count > 1)
				diff_index(c, i);
			if (f->kind != VMSTATE_KIND_BUFFER)
				diff_values(c, a + f->offset + i * f->size, b + f->offset + i * f->size,
					    f->size);
			return true;
		}
	} else {
		for (uint32_t i = 0; i < n; i++) {
			size_t el = c->used;
			if (f->count > 1)
				diff_index(c, i);
			if (diff_body(c, f->sub, a + f->offset + i * f->size,
				      b + f->offset + i * f->size))
				return true;
			c->used = el;
		}
	}
	c->used = at;
	c->path[at] = '\0';
	return false;
}

static bool diff_fields(struct vmstate_diff_ctx *c, const struct vmstate_desc *d,
			const uint8_t *a, const uint8_t *b)
{
	for (const struct vmstate_field *f = d->fields; f->name; f++)
		if (!(f->flags & VMS_NO_VERIFY) && diff_field(c, f, a, b))
			return true;
	for (const struct vmstate_desc *const *s = d->subsections; s && *s; s++) {
		bool na = !(*s)->needed || (*s)->needed(a), nb = !(*s)->needed || (*s)->needed(b);
		size_t at = c->used;
		diff_name(c, (*s)->name);
		if (na != nb || (na && diff_body(c, *s, a, b)))
			return true;
		c->used = at;
		c->path[at] = '\0';
	}
	return false;
}

/* One description's body, through copies blanked by its verify_mask. */
static bool diff_body(struct vmstate_diff_ctx *c, const struct vmstate_desc *d,
		      const uint8_t *a, const uint8_t *b)
{
	if (!d->verify_mask)
		return diff_fields(c, d, a, b);
	uint8_t *ma = malloc(d->size), *mb = malloc(d->size);
	bool differ = true;

	if (ma && mb) {
		memcpy(ma, a, d->size);
		memcpy(mb, b, d->size);
		d->verify_mask(ma);
		d->verify_mask(mb);
		differ = diff_fields(c, d, ma, mb);
	}
	free(ma);
	free(mb);
	return differ;
}

bool vmstate_diff(const struct vmstate_desc *d, const void *a, const void *b, char *path,
		  size_t pathlen)
{
	char scratch[1];
	struct vmstate_diff_ctx c = {
		.path = pathlen ? path : scratch, .len = pathlen ? pathlen : sizeof(scratch),
	};

	c.path[0] = '\0';
	return diff_body(&c, d, a, b);
}
