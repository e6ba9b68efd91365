/*
 * vmstate engine: round trip of every field kind, and rejection of every
 * kind of bad input without touching the target.  No KVM needed.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "util/vmstate.h"

struct t_inner {
	uint16_t a;
	uint8_t b;		/* 0..100 in the strict description */
	uint8_t pad;
	uint32_t c;
};

struct t_obj {
	uint8_t u8;
	uint16_t u16;
	uint32_t u32;		/* post_load rejects 0xdeadbeef */
	uint64_t u64;
	uint16_t lcr;		/* 0..255 in the strict description */
	uint32_t arr[4];
	uint64_t arr64[2];
	char buf[10];
	struct t_inner in;
	struct t_inner ins[3];
	uint32_t n;
	uint64_t var[8];
	uint16_t ns;
	struct t_inner vs[4];
	uint32_t even;		/* check callback: must be even */
	int runtime_fd;		/* not described: a load must leave it alone */
};

static int t_even_check(const void *field, char *why, size_t whylen)
{
	uint32_t v;

	memcpy(&v, field, sizeof(v));
	if (v & 1) {
		snprintf(why, whylen, "%u is odd", v);
		return -EINVAL;
	}
	return 0;
}

static int t_post_load(void *obj, char *why, size_t whylen)
{
	const struct t_obj *t = obj;

	if (t->u32 == 0xdeadbeef) {
		snprintf(why, whylen, "u32 is dead beef");
		return -EINVAL;
	}
	return 0;
}

/* Strict and lenient twins: the lenient one encodes what strict refuses. */
#define T_INNER_FIELDS(bmax, padmax) {					\
	VMSTATE_U16(struct t_inner, a),					\
	VMSTATE_U8_RANGE(struct t_inner, b, 0, bmax),			\
	VMSTATE_U8_RANGE(struct t_inner, pad, 0, padmax),		\
	VMSTATE_U32(struct t_inner, c),					\
	VMSTATE_END }

static const struct vmstate_field t_inner_fields[] = T_INNER_FIELDS(100, 0);
static const struct vmstate_field t_inner_lax_fields[] = T_INNER_FIELDS(255, 255);

static const struct vmstate_desc t_inner_desc = {
	.name = "inner", .version = 1, .size = sizeof(struct t_inner),
	.fields = t_inner_fields,
};
static const struct vmstate_desc t_inner_lax = {
	.name = "inner", .version = 1, .size = sizeof(struct t_inner),
	.fields = t_inner_lax_fields,
};

#define T_FIELDS(lcrmax, inner, chk) {					\
	VMSTATE_U8(struct t_obj, u8),					\
	VMSTATE_U16(struct t_obj, u16),					\
	VMSTATE_U32(struct t_obj, u32),					\
	VMSTATE_U64(struct t_obj, u64),					\
	VMSTATE_U16_RANGE(struct t_obj, lcr, 0, lcrmax),		\
	VMSTATE_U32_ARRAY(struct t_obj, arr),				\
	VMSTATE_U64_ARRAY(struct t_obj, arr64),				\
	VMSTATE_BUFFER(struct t_obj, buf),				\
	VMSTATE_STRUCT(struct t_obj, in, inner),			\
	VMSTATE_STRUCT_ARRAY(struct t_obj, ins, inner),			\
	VMSTATE_U32(struct t_obj, n),					\
	VMSTATE_VARRAY_U64(struct t_obj, var, n),			\
	VMSTATE_U16(struct t_obj, ns),					\
	VMSTATE_VARRAY_STRUCT(struct t_obj, vs, ns, inner),		\
	VMSTATE_U32(struct t_obj, even, .check = chk),			\
	VMSTATE_END }

static const struct vmstate_field t_fields[] = T_FIELDS(255, t_inner_desc, t_even_check);
static const struct vmstate_field t_lax_fields[] = T_FIELDS(UINT16_MAX, t_inner_lax, NULL);

static const struct vmstate_desc t_desc = {
	.name = "test", .version = 1, .size = sizeof(struct t_obj),
	.fields = t_fields, .post_load = t_post_load,
};
static const struct vmstate_desc t_lax = {
	.name = "test", .version = 1, .size = sizeof(struct t_obj),
	.fields = t_lax_fields,
};
static const struct vmstate_desc t_other_name = {
	.name = "other", .version = 1, .size = sizeof(struct t_obj),
	.fields = t_fields,
};
static const struct vmstate_desc t_v2 = {
	.name = "test", .version = 2, .size = sizeof(struct t_obj),
	.fields = t_fields,
};

static void t_fill(struct t_obj *t)
{
	memset(t, 0, sizeof(*t));
	t->u8 = 0xab;
	t->u16 = 0xbeef;
	t->u32 = 0x12345678;
	t->u64 = 0x0102030405060708ULL;
	t->lcr = 200;
	for (int i = 0; i < 4; i++)
		t->arr[i] = 0x1000u + (uint32_t)i;
	t->arr64[0] = UINT64_MAX;
	t->arr64[1] = 7;
	memcpy(t->buf, "ferry-vms", 10);
	t->in = (struct t_inner){ .a = 1, .b = 2, .c = 3 };
	for (int i = 0; i < 3; i++)
		t->ins[i] = (struct t_inner){ .a = (uint16_t)(10 + i), .b = (uint8_t)(20 + i), .c = 30u + (uint32_t)i };
	t->n = 5;
	for (int i = 0; i < 5; i++)
		t->var[i] = 0xa0a0a0a0a0a0a0a0ULL + (uint64_t)i;
	t->ns = 2;
	t->vs[0] = (struct t_inner){ .a = 100, .b = 99, .c = 98 };
	t->vs[1] = (struct t_inner){ .a = 200, .b = 0, .c = 0xffffffff };
	t->even = 42;
	t->runtime_fd = 7;
}

static void t_encode(const struct vmstate_desc *d, const struct t_obj *t,
		     struct vmstate_buf *b)
{
	vmstate_buf_init(b);
	assert_int_equal(vmstate_save(d, t, b), 0);
}

/* Load must fail with err, leave the target untouched and mention 'what'. */
static void t_expect_fail(const void *data, size_t len, int err, const char *what)
{
	struct t_obj target, before;
	struct vmstate_error e;

	t_fill(&target);
	target.u8 = 0x5a;
	target.runtime_fd = -3;
	before = target;
	int ret = vmstate_load(&t_desc, &target, data, len, &e);
	if (ret != err || (what && !strstr(e.msg, what)))
		print_error("ret %d (want %d), msg '%s' (want '%s')\n", ret, err,
			    e.msg, what ? what : "");
	assert_int_equal(ret, err);
	if (what)
		assert_non_null(strstr(e.msg, what));
	assert_memory_equal(&target, &before, sizeof(target));
}

static void test_round_trip(void **state)
{
	struct t_obj src, dst;
	struct vmstate_buf b;
	struct vmstate_error e;

	t_fill(&src);
	t_encode(&t_desc, &src, &b);
	/* Zeroed so struct padding (not described) matches src. */
	memset(&dst, 0, sizeof(dst));
	dst.runtime_fd = 99;
	assert_int_equal(vmstate_load(&t_desc, &dst, b.data, b.len, &e), 0);
	assert_int_equal(dst.runtime_fd, 99);	/* not described, kept */
	dst.runtime_fd = src.runtime_fd;
	/* Elements past a varray's count are zeroed, as in src. */
	assert_memory_equal(&dst, &src, sizeof(src));

	/* Re-encoding the decoded object gives the same bytes. */
	struct vmstate_buf b2;
	t_encode(&t_desc, &dst, &b2);
	assert_int_equal(b2.len, b.len);
	assert_memory_equal(b2.data, b.data, b.len);
	vmstate_buf_free(&b2);
	vmstate_buf_free(&b);
}

static void test_wire_layout(void **state)
{
	struct t_obj src;
	struct vmstate_buf b;
	char name[16];
	uint32_t ver;
	size_t rlen;

	t_fill(&src);
	t_encode(&t_desc, &src, &b);
	/* Header: u8 name_len, name, u32 version, u32 body_len (LE). */
	assert_int_equal(b.data[0], 4);
	assert_memory_equal(b.data + 1, "test", 4);
	assert_int_equal(b.data[5], 1);
	assert_int_equal(b.data[9] | b.data[10] << 8 | b.data[11] << 16, b.len - 13);
	/* First field: u32 len 1, then u8 0xab; second: len 2, 0xbeef LE. */
	const uint8_t f0[] = { 1, 0, 0, 0, 0xab, 2, 0, 0, 0, 0xef, 0xbe };
	assert_memory_equal(b.data + 13, f0, sizeof(f0));

	/* Two records back to back: peek finds the boundary. */
	assert_int_equal(vmstate_save(&t_desc, &src, &b), 0);
	assert_int_equal(vmstate_peek(b.data, b.len, name, sizeof(name), &ver, &rlen), 0);
	assert_string_equal(name, "test");
	assert_int_equal(ver, 1);
	assert_int_equal(rlen * 2, b.len);
	assert_int_equal(vmstate_peek(b.data, rlen - 1, name, sizeof(name), &ver, &rlen), -EINVAL);
	vmstate_buf_free(&b);
}

static void test_out_of_range(void **state)
{
	struct t_obj src;
	struct vmstate_buf b;

	t_fill(&src);
	src.lcr = 300;
	t_encode(&t_lax, &src, &b);
	t_expect_fail(b.data, b.len, -ERANGE,
		      "test: field 'lcr': value 300 out of range 0..255");
	vmstate_buf_free(&b);

	t_fill(&src);
	src.ins[1].b = 200;
	t_encode(&t_lax, &src, &b);
	t_expect_fail(b.data, b.len, -ERANGE,
		      "test: field 'ins[1].b': value 200 out of range 0..100");
	vmstate_buf_free(&b);

	t_fill(&src);
	src.vs[1].pad = 1;
	t_encode(&t_lax, &src, &b);
	t_expect_fail(b.data, b.len, -ERANGE, "field 'vs[1].pad': value 1 out of range 0..0");
	vmstate_buf_free(&b);
}

static void test_save_refuses_bad_state(void **state)
{
	struct t_obj src;
	struct vmstate_buf b;

	t_fill(&src);
	vmstate_buf_init(&b);
	assert_int_equal(vmstate_save(&t_desc, &src, &b), 0);
	size_t len = b.len;
	src.lcr = 256;
	assert_int_equal(vmstate_save(&t_desc, &src, &b), -ERANGE);
	assert_int_equal(b.len, len);		/* nothing appended */
	src.lcr = 0;
	src.n = 9;				/* capacity is 8 */
	assert_int_equal(vmstate_save(&t_desc, &src, &b), -ERANGE);
	assert_int_equal(b.len, len);
	vmstate_buf_free(&b);
}

static void test_truncated(void **state)
{
	struct t_obj src;
	struct vmstate_buf b;

	t_fill(&src);
	t_encode(&t_desc, &src, &b);
	for (size_t len = 0; len < b.len; len++) {
		/* A copy of exactly len bytes, so ASan sees any overread. */
		uint8_t *p = malloc(len ? len : 1);
		assert_non_null(p);
		memcpy(p, b.data, len);
		t_expect_fail(p, len, -EINVAL, NULL);
		free(p);
	}
	vmstate_buf_free(&b);
}

static void test_trailing(void **state)
{
	struct t_obj src;
	struct vmstate_buf b;

	t_fill(&src);
	t_encode(&t_desc, &src, &b);
	uint8_t *p = calloc(1, b.len + 1);
	assert_non_null(p);
	memcpy(p, b.data, b.len);
	t_expect_fail(p, b.len + 1, -EINVAL, "trailing bytes");
	/* Body length that lies about the record size. */
	p[9]++;
	t_expect_fail(p, b.len + 1, -EINVAL, NULL);
	free(p);
	vmstate_buf_free(&b);
}

static void test_wrong_name_and_version(void **state)
{
	struct t_obj src;
	struct vmstate_buf b;

	t_fill(&src);
	t_encode(&t_other_name, &src, &b);
	t_expect_fail(b.data, b.len, -EINVAL, "test: record is for 'other', not 'test'");
	vmstate_buf_free(&b);

	t_encode(&t_v2, &src, &b);
	t_expect_fail(b.data, b.len, -EPROTONOSUPPORT,
		      "test: version 2 is newer than this ferry supports (1)");
	/* An older version is refused too, with its own message. */
	b.data[5] = 0;
	t_expect_fail(b.data, b.len, -EPROTONOSUPPORT, "version 0 is not supported");
	vmstate_buf_free(&b);
}

/* Offset of the first occurrence of a marker in the encoding. */
static size_t t_find(const struct vmstate_buf *b, const void *marker, size_t n)
{
	for (size_t i = 0; i + n <= b->len; i++)
		if (!memcmp(b->data + i, marker, n))
			return i;
	fail_msg("marker not found");
	return 0;
}

static void test_varray_over_max(void **state)
{
	struct t_obj src;
	struct vmstate_buf b;
	/* Field n (len 4, value 5), then var's length (5 * 8 bytes). */
	const uint8_t n5[] = { 4, 0, 0, 0, 5, 0, 0, 0, 40, 0, 0, 0 };

	t_fill(&src);
	t_encode(&t_desc, &src, &b);
	size_t at = t_find(&b, n5, sizeof(n5));
	b.data[at + 4] = 9;		/* var's capacity is 8 */
	t_expect_fail(b.data, b.len, -ERANGE, "test: field 'var': count 9 exceeds maximum 8");
	/* A count within range that disagrees with the payload length. */
	b.data[at + 4] = 6;
	t_expect_fail(b.data, b.len, -EINVAL, "test: field 'var': length 40, expected 48");
	vmstate_buf_free(&b);
}

static void test_check_and_post_load(void **state)
{
	struct t_obj src;
	struct vmstate_buf b;

	t_fill(&src);
	src.even = 3;
	t_encode(&t_desc, &src, &b);	/* save does not run check callbacks */
	t_expect_fail(b.data, b.len, -EINVAL, "test: field 'even': 3 is odd");
	vmstate_buf_free(&b);

	t_fill(&src);
	src.u32 = 0xdeadbeef;
	t_encode(&t_desc, &src, &b);
	t_expect_fail(b.data, b.len, -EINVAL, "test: u32 is dead beef");
	vmstate_buf_free(&b);
}

/* xorshift64*: deterministic, so a failure reproduces. */
static uint64_t t_rand(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545f4914f6cdd1dULL;
}

static void t_mutate(uint8_t *p, size_t *len, size_t cap, uint64_t *s)
{
	int edits = 1 + (int)(t_rand(s) % 4);

	for (int i = 0; i < edits && *len; i++) {
		size_t at = t_rand(s) % *len;
		switch (t_rand(s) % 5) {
		case 0: p[at] ^= (uint8_t)(1u << (t_rand(s) % 8)); break;
		case 1: p[at] = (uint8_t)t_rand(s); break;
		case 2: p[at] = (uint8_t[]){ 0, 0xff, 0x7f, 0x80 }[t_rand(s) % 4]; break;
		case 3: *len = at; break;			/* truncate */
		case 4:						/* insert */
			if (*len < cap) {
				memmove(p + at + 1, p + at, *len - at);
				p[at] = (uint8_t)t_rand(s);
				(*len)++;
			}
			break;
		}
	}
}

static void test_random_mutations(void **state)
{
	struct t_obj src, dst, before;
	struct vmstate_buf b;
	struct vmstate_error e;
	uint64_t seed = 0x9e3779b97f4a7c15ULL;
	int loaded = 0, rejected = 0;

	t_fill(&src);
	t_encode(&t_desc, &src, &b);
	for (int iter = 0; iter < 20000; iter++) {
		size_t cap = b.len + 8, len = b.len;
		uint8_t *p = malloc(cap);
		assert_non_null(p);
		memcpy(p, b.data, b.len);
		t_mutate(p, &len, cap, &seed);
		/* Exact-size copy so ASan catches reads past len. */
		uint8_t *q = malloc(len ? len : 1);
		assert_non_null(q);
		memcpy(q, p, len);
		memset(&dst, 0x3c, sizeof(dst));
		before = dst;
		int ret = vmstate_load(&t_desc, &dst, q, len, &e);
		if (ret == 0) {
			loaded++;
		} else {
			assert_true(ret < 0);
			assert_true(e.msg[0] != '\0');
			assert_memory_equal(&dst, &before, sizeof(dst));
			rejected++;
		}
		free(q);
		free(p);
	}
	print_message("random mutations: %d loaded, %d rejected\n", loaded, rejected);
	assert_true(rejected > 0);
	vmstate_buf_free(&b);
}

/* ---- versions and subsections ------------------------------------------ */

/*
 * A device state as three ferry releases describe it: v1 had only a; v2
 * added b (default 7) and the subsections; v3 added x and stopped
 * accepting v1.  Every variant calls its record "dev".
 */
struct t_dev {
	uint32_t a;
	uint32_t b;		/* since v2 */
	uint16_t c;		/* subsection "dev-c": optional, sent when non-zero */
	uint8_t d;		/* subsection "dev-d": mandatory, sent when non-zero */
	uint8_t x;		/* since v3 */
	uint32_t pad;		/* named, so struct copies keep it equal */
	uint64_t e;		/* subsection "dev-e", known only to the newest */
};

static bool t_dev_c_needed(const void *obj)
{
	return ((const struct t_dev *)obj)->c != 0;
}

static bool t_dev_d_needed(const void *obj)
{
	return ((const struct t_dev *)obj)->d != 0;
}

static const struct vmstate_field t_dev_c_fields[] = {
	VMSTATE_U16_RANGE(struct t_dev, c, 0, 1000),
	VMSTATE_END
};
static const struct vmstate_desc t_dev_sub_c = {
	.name = "dev-c", .version = 1, .size = sizeof(struct t_dev),
	.fields = t_dev_c_fields, .needed = t_dev_c_needed, .optional = true,
};
/* The same, one version on: what a newer ferry would send. */
static const struct vmstate_desc t_dev_sub_c2 = {
	.name = "dev-c", .version = 2, .size = sizeof(struct t_dev),
	.fields = t_dev_c_fields, .needed = t_dev_c_needed, .optional = true,
};
static const struct vmstate_field t_dev_d_fields[] = {
	VMSTATE_U8(struct t_dev, d, .def = 3),
	VMSTATE_END
};
static const struct vmstate_desc t_dev_sub_d = {
	.name = "dev-d", .version = 1, .size = sizeof(struct t_dev),
	.fields = t_dev_d_fields, .needed = t_dev_d_needed,
};
static const struct vmstate_field t_dev_e_fields[] = {
	VMSTATE_U64(struct t_dev, e),
	VMSTATE_END
};
static const struct vmstate_desc t_dev_sub_e_opt = {
	.name = "dev-e", .version = 1, .size = sizeof(struct t_dev),
	.fields = t_dev_e_fields, .optional = true,
};
static const struct vmstate_desc t_dev_sub_e_must = {
	.name = "dev-e", .version = 1, .size = sizeof(struct t_dev),
	.fields = t_dev_e_fields,
};

static const struct vmstate_field t_dev_v1_fields[] = {
	VMSTATE_U32(struct t_dev, a),
	VMSTATE_END
};
static const struct vmstate_field t_dev_v2_fields[] = {
	VMSTATE_U32(struct t_dev, a),
	VMSTATE_U32_RANGE(struct t_dev, b, 1, 100, .since = 2, .def = 7),
	VMSTATE_END
};
static const struct vmstate_field t_dev_v3_fields[] = {
	VMSTATE_U32(struct t_dev, a),
	VMSTATE_U32_RANGE(struct t_dev, b, 1, 100, .since = 2, .def = 7),
	VMSTATE_U8(struct t_dev, x, .since = 3, .def = 9),
	VMSTATE_END
};

static const struct vmstate_desc t_dev_v1 = {
	.name = "dev", .version = 1, .size = sizeof(struct t_dev), .fields = t_dev_v1_fields,
};
/* The loader under test: accepts v1 and v2, knows dev-c and dev-d. */
static const struct vmstate_desc t_dev_v2 = {
	.name = "dev", .version = 2, .min_version = 1, .size = sizeof(struct t_dev),
	.fields = t_dev_v2_fields,
	.subsections = (const struct vmstate_desc *const[]){ &t_dev_sub_c, &t_dev_sub_d, NULL },
};
static const struct vmstate_desc t_dev_v3 = {
	.name = "dev", .version = 3, .min_version = 2, .size = sizeof(struct t_dev),
	.fields = t_dev_v3_fields,
	.subsections = (const struct vmstate_desc *const[]){ &t_dev_sub_c, &t_dev_sub_d, NULL },
};
/* v2 senders that know one more subsection than the loader. */
static const struct vmstate_desc t_dev_v2_e_opt = {
	.name = "dev", .version = 2, .min_version = 1, .size = sizeof(struct t_dev),
	.fields = t_dev_v2_fields,
	.subsections = (const struct vmstate_desc *const[]){
		&t_dev_sub_c, &t_dev_sub_e_opt, &t_dev_sub_d, NULL },
};
static const struct vmstate_desc t_dev_v2_e_must = {
	.name = "dev", .version = 2, .min_version = 1, .size = sizeof(struct t_dev),
	.fields = t_dev_v2_fields,
	.subsections = (const struct vmstate_desc *const[]){ &t_dev_sub_c, &t_dev_sub_e_must, NULL },
};
static const struct vmstate_desc t_dev_v2_c2 = {
	.name = "dev", .version = 2, .min_version = 1, .size = sizeof(struct t_dev),
	.fields = t_dev_v2_fields,
	.subsections = (const struct vmstate_desc *const[]){ &t_dev_sub_c2, NULL },
};

static const struct t_dev t_dev_src = { .a = 0x11223344, .b = 42, .c = 500, .d = 0x66,
					 .x = 5, .e = 0xfeedfacecafebeefULL };
/* What a load starts from: none of it equal to a value or default above. */
static const struct t_dev t_dev_junk = { .a = 0xa5a5a5a5, .b = 99, .c = 999, .d = 0xa5,
					  .x = 0xa5, .e = 0xa5 };

/* Save src with `from`, load with `into` starting from junk: return code. */
static int t_dev_move(const struct vmstate_desc *from, const struct t_dev *src,
		      const struct vmstate_desc *into, struct t_dev *dst,
		      struct vmstate_error *e, size_t *len)
{
	struct vmstate_buf b;

	vmstate_buf_init(&b);
	assert_int_equal(vmstate_save(from, src, &b), 0);
	*dst = t_dev_junk;
	int ret = vmstate_load(into, dst, b.data, b.len, e);
	if (len)
		*len = b.len;
	vmstate_buf_free(&b);
	return ret;
}

static void t_dev_expect_fail(const struct vmstate_desc *from, const struct t_dev *src,
			      const struct vmstate_desc *into, int err, const char *what)
{
	struct vmstate_error e;
	struct t_dev dst;
	int ret = t_dev_move(from, src, into, &dst, &e, NULL);

	if (ret != err || !strstr(e.msg, what))
		print_error("ret %d (want %d), msg '%s' (want '%s')\n", ret, err, e.msg, what);
	assert_int_equal(ret, err);
	assert_non_null(strstr(e.msg, what));
	assert_memory_equal(&dst, &t_dev_junk, sizeof(dst));
}

static void test_subsection_present(void **state)
{
	struct vmstate_error e;
	struct t_dev dst;
	size_t with, without;

	assert_int_equal(t_dev_move(&t_dev_v2, &t_dev_src, &t_dev_v2, &dst, &e, &with), 0);
	assert_int_equal(dst.a, t_dev_src.a);
	assert_int_equal(dst.b, t_dev_src.b);
	assert_int_equal(dst.c, t_dev_src.c);
	assert_int_equal(dst.d, t_dev_src.d);
	assert_int_equal(dst.x, t_dev_junk.x);	/* not described: untouched */
	assert_int_equal(dst.e, t_dev_junk.e);

	/* Exactly the two subsections' bytes on the wire. */
	struct t_dev none = t_dev_src;
	none.c = 0;
	none.d = 0;
	assert_int_equal(t_dev_move(&t_dev_v2, &none, &t_dev_v2, &dst, &e, &without), 0);
	assert_int_equal(with - without, (1 + 5 + 1 + 4 + 4 + 4 + 2) + (1 + 5 + 1 + 4 + 4 + 4 + 1));
}

static void test_subsection_absent(void **state)
{
	struct vmstate_error e;
	struct t_dev src = t_dev_src, dst;
	size_t len, v1len;

	/* Not needed, so not sent: the loader gives the fields their defaults. */
	src.c = 0;
	src.d = 0;
	assert_int_equal(t_dev_move(&t_dev_v2, &src, &t_dev_v2, &dst, &e, &len), 0);
	assert_int_equal(dst.a, src.a);
	assert_int_equal(dst.b, src.b);
	assert_int_equal(dst.c, 0);
	assert_int_equal(dst.d, 3);		/* its declared default */
	/* Fields only: the record is as long as a v1 record plus b. */
	assert_int_equal(t_dev_move(&t_dev_v1, &src, &t_dev_v1, &dst, &e, &v1len), 0);
	assert_int_equal(len, v1len + 4 + 4);
	/* One of two. */
	src.d = 1;
	assert_int_equal(t_dev_move(&t_dev_v2, &src, &t_dev_v2, &dst, &e, NULL), 0);
	assert_int_equal(dst.c, 0);
	assert_int_equal(dst.d, 1);
}

static void test_subsection_unknown_optional(void **state)
{
	struct vmstate_error e;
	struct t_dev dst;

	/* dev-e sits between two known subsections; it is skipped whole. */
	assert_int_equal(t_dev_move(&t_dev_v2_e_opt, &t_dev_src, &t_dev_v2, &dst, &e, NULL), 0);
	assert_int_equal(dst.a, t_dev_src.a);
	assert_int_equal(dst.b, t_dev_src.b);
	assert_int_equal(dst.c, t_dev_src.c);
	assert_int_equal(dst.d, t_dev_src.d);
	assert_int_equal(dst.e, t_dev_junk.e);
	/* And an older ferry (v1, no subsections at all) skips them too. */
	struct t_dev src = t_dev_src;
	src.d = 0;
	struct vmstate_buf b;
	vmstate_buf_init(&b);
	assert_int_equal(vmstate_save(&t_dev_v2_e_opt, &src, &b), 0);
	b.data[4] = 1;		/* claim version 1: only a, then subsections */
	/* Drop b's 8 bytes (its length and value) and fix the body length. */
	size_t at_b = 1 + 3 + 4 + 4 + 4 + 4;
	memmove(b.data + at_b, b.data + at_b + 8, b.len - at_b - 8);
	b.len -= 8;
	uint32_t blen = (uint32_t)(b.len - (1 + 3 + 4 + 4));
	memcpy(b.data + 8, &blen, 4);
	dst = t_dev_junk;
	assert_int_equal(vmstate_load(&t_dev_v2, &dst, b.data, b.len, &e), 0);
	assert_int_equal(dst.b, 7);
	assert_int_equal(dst.c, src.c);
	vmstate_buf_free(&b);
}

static void test_subsection_unknown_mandatory(void **state)
{
	t_dev_expect_fail(&t_dev_v2_e_must, &t_dev_src, &t_dev_v2, -EINVAL,
			  "dev: unknown subsection 'dev-e' (not optional)");
	/* A known subsection of a version the loader does not know. */
	t_dev_expect_fail(&t_dev_v2_c2, &t_dev_src, &t_dev_v2, -EPROTONOSUPPORT,
			  "dev: subsection 'dev-c': version 2 is newer than this ferry supports (1)");
	/* A subsection's field is checked like any other. */
	struct vmstate_desc lax = t_dev_sub_c;
	static const struct vmstate_field lax_fields[] = {
		VMSTATE_U16(struct t_dev, c), VMSTATE_END
	};
	lax.fields = lax_fields;
	const struct vmstate_desc *const subs[] = { &lax, NULL };
	struct vmstate_desc from = t_dev_v2;
	from.subsections = subs;
	struct t_dev src = t_dev_src;
	src.c = 2000;
	t_dev_expect_fail(&from, &src, &t_dev_v2, -ERANGE,
			  "dev: field 'dev-c.c': value 2000 out of range 0..1000");
}

static void test_subsection_malformed(void **state)
{
	struct vmstate_buf b;
	struct vmstate_error e;
	struct t_dev dst;
	struct t_dev src = t_dev_src;

	src.d = 0;
	vmstate_buf_init(&b);
	assert_int_equal(vmstate_save(&t_dev_v2, &src, &b), 0);
	size_t sub = b.len - (1 + 5 + 1 + 4 + 4 + 4 + 2);
	assert_int_equal(b.data[sub], 5);
	assert_memory_equal(b.data + sub + 1, "dev-c", 5);
	assert_int_equal(b.data[sub + 6], VMSTATE_SUB_OPTIONAL);

	/* Unknown flag bits. */
	b.data[sub + 6] = 0x81;
	dst = t_dev_junk;
	assert_int_equal(vmstate_load(&t_dev_v2, &dst, b.data, b.len, &e), -EINVAL);
	assert_non_null(strstr(e.msg, "unknown flags"));
	b.data[sub + 6] = VMSTATE_SUB_OPTIONAL;
	/* A subsection length past the record. */
	b.data[sub + 11]++;
	assert_int_equal(vmstate_load(&t_dev_v2, &dst, b.data, b.len, &e), -EINVAL);
	b.data[sub + 11]--;
	/* The same subsection twice. */
	size_t sublen = b.len - sub;
	uint8_t *p = malloc(b.len + sublen);
	assert_non_null(p);
	memcpy(p, b.data, b.len);
	memcpy(p + b.len, b.data + sub, sublen);
	uint32_t blen = (uint32_t)(b.len + sublen - (1 + 3 + 4 + 4));
	memcpy(p + 8, &blen, 4);	/* "dev": the body length follows the version */
	assert_int_equal(vmstate_load(&t_dev_v2, &dst, p, b.len + sublen, &e), -EINVAL);
	free(p);
	assert_memory_equal(&dst, &t_dev_junk, sizeof(dst));
	vmstate_buf_free(&b);
}

static void test_older_version_defaults(void **state)
{
	struct vmstate_error e;
	struct t_dev dst;

	assert_int_equal(t_dev_move(&t_dev_v1, &t_dev_src, &t_dev_v2, &dst, &e, NULL), 0);
	assert_int_equal(dst.a, t_dev_src.a);
	assert_int_equal(dst.b, 7);		/* added in v2: its default */
	assert_int_equal(dst.c, 0);		/* subsections absent: defaults */
	assert_int_equal(dst.d, 3);
	/* v2 into v3: only x is new. */
	assert_int_equal(t_dev_move(&t_dev_v2, &t_dev_src, &t_dev_v3, &dst, &e, NULL), 0);
	assert_int_equal(dst.b, t_dev_src.b);
	assert_int_equal(dst.c, t_dev_src.c);
	assert_int_equal(dst.x, 9);
}

static void test_newer_version_refused(void **state)
{
	t_dev_expect_fail(&t_dev_v3, &t_dev_src, &t_dev_v2, -EPROTONOSUPPORT,
			  "dev: version 3 is newer than this ferry supports (2)");
}

static void test_below_minimum_refused(void **state)
{
	t_dev_expect_fail(&t_dev_v1, &t_dev_src, &t_dev_v3, -EPROTONOSUPPORT,
			  "dev: version 1 is older than this ferry accepts (2..3)");
}

/* Random damage to a record with subsections never reads out of bounds. */
static void test_subsection_mutations(void **state)
{
	struct vmstate_buf b;
	struct vmstate_error e;
	uint64_t seed = 0x243f6a8885a308d3ULL;
	int rejected = 0;

	vmstate_buf_init(&b);
	assert_int_equal(vmstate_save(&t_dev_v2_e_opt, &t_dev_src, &b), 0);
	for (int iter = 0; iter < 5000; iter++) {
		size_t cap = b.len + 8, len = b.len;
		uint8_t *p = malloc(cap);
		assert_non_null(p);
		memcpy(p, b.data, b.len);
		t_mutate(p, &len, cap, &seed);
		uint8_t *q = malloc(len ? len : 1);
		assert_non_null(q);
		memcpy(q, p, len);
		struct t_dev dst = t_dev_junk;
		int ret = vmstate_load(&t_dev_v2, &dst, q, len, &e);
		if (ret) {
			assert_true(e.msg[0] != '\0');
			assert_memory_equal(&dst, &t_dev_junk, sizeof(dst));
			rejected++;
		}
		free(q);
		free(p);
	}
	assert_true(rejected > 0);
	vmstate_buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_wire_layout),
		cmocka_unit_test(test_out_of_range),
		cmocka_unit_test(test_save_refuses_bad_state),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_trailing),
		cmocka_unit_test(test_wrong_name_and_version),
		cmocka_unit_test(test_varray_over_max),
		cmocka_unit_test(test_check_and_post_load),
		cmocka_unit_test(test_random_mutations),
		cmocka_unit_test(test_subsection_present),
		cmocka_unit_test(test_subsection_absent),
		cmocka_unit_test(test_subsection_unknown_optional),
		cmocka_unit_test(test_subsection_unknown_mandatory),
		cmocka_unit_test(test_subsection_malformed),
		cmocka_unit_test(test_older_version_defaults),
		cmocka_unit_test(test_newer_version_refused),
		cmocka_unit_test(test_below_minimum_refused),
		cmocka_unit_test(test_subsection_mutations),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
