/*
 * Declarative save/load of state structs (a small cousin of QEMU's
 * VMStateDescription).  A struct is described once, by a table of fields;
 * the same table drives the encoder and a decoder that treats its input as
 * hostile: every length, integer range, variable count and check callback
 * is verified before the target object is touched.  A description can
 * grow: each field says in which version it was added (a record of an
 * older version gives it its declared default), and optional state goes
 * into subsections that are sent only when needed.  docs/vmstate.md
 * describes the byte layout.
 */
#ifndef FERRY_UTIL_VMSTATE_H
#define FERRY_UTIL_VMSTATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum vmstate_kind {
	VMSTATE_KIND_END = 0,	/* terminates a field table */
	VMSTATE_KIND_U8,
	VMSTATE_KIND_U16,
	VMSTATE_KIND_U32,
	VMSTATE_KIND_U64,
	VMSTATE_KIND_BUFFER,	/* opaque bytes, no range check */
	VMSTATE_KIND_STRUCT,	/* nested description */
};

struct vmstate_desc;

/*
 * One field.  Scalars and nested structs may be arrays (count > 1); with
 * varray set, count is the capacity and the element count is read from an
 * earlier scalar field of the same struct (count_offset, count_size), which
 * the loader has already range-checked by the time it gets here.
 */
struct vmstate_field {
	const char *name;
	enum vmstate_kind kind;
	size_t offset;
	size_t size;		/* of one element in memory */
	uint32_t count;		/* elements, or the maximum for a varray */
	uint64_t min, max;	/* inclusive range of each scalar element */
	const struct vmstate_desc *sub;
	bool varray;
	size_t count_offset;
	size_t count_size;
	/*
	 * Optional extra validation of a loaded field (pointer to its first
	 * element).  Return 0, or a negative errno with a reason in why.
	 */
	int (*check)(const void *field, char *why, size_t whylen);
	/*
	 * The version of the enclosing record in which this field first
	 * appeared (0 or 1: from the start).  A record of an older version
	 * does not carry it; the load then sets it to its default.
	 */
	uint32_t since;
	/*
	 * Default of every scalar element when the field is not on the wire
	 * (an older record, or an absent subsection); must lie in [min, max].
	 * Buffers, variable arrays and nested structs' bytes are zeroed, a
	 * nested struct's scalars take their own defaults.
	 */
	uint64_t def;
	uint32_t flags;		/* VMS_* */
};

/*
 * Field flag: state that legitimately differs once loaded and read back
 * (host time, counters KVM advances by itself), left out of
 * vmstate_digest_as() and vmstate_diff() so that --verify compares what
 * must survive a migration exactly.  Saved and loaded as usual.
 */
#define VMS_NO_VERIFY	0x1

/* On the wire: a loader that does not know the subsection may skip it. */
#define VMSTATE_SUB_OPTIONAL 0x01

struct vmstate_desc {
	const char *name;	/* on the wire; 1..255 printable characters */
	uint32_t version;	/* bump on any change to the encoding */
	/*
	 * Oldest version a load accepts (fields added later take their
	 * defaults).  0: only `version`, the strict rule for descriptions
	 * that have never grown.
	 */
	uint32_t min_version;
	size_t size;		/* sizeof the described struct */
	const struct vmstate_field *fields;
	/*
	 * Named subsections: descriptions of more fields of the same struct
	 * (their size is this one's), each saved after the fields, with its
	 * own header and version, when its `needed` says so.  NULL-terminated;
	 * at most VMSTATE_MAX_SUBSECTIONS; top-level descriptions (and
	 * subsections) only, since a nested body has no end of its own.
	 */
	const struct vmstate_desc *const *subsections;
	/*
	 * Subsections only.  needed: save it for this object (NULL: always).
	 * When a record lacks a subsection its fields take their defaults,
	 * so `needed` should say false exactly when they hold them.
	 * optional: a ferry that does not know this subsection may ignore
	 * it (the state is a refinement an older ferry's guest can live
	 * without); else such a ferry refuses the record.
	 */
	bool (*needed)(const void *obj);
	bool optional;
	/* Optional cross-field validation of the whole loaded struct. */
	int (*post_load)(void *obj, char *why, size_t whylen);
	/*
	 * Optional, for state that no whole field can exclude (one entry of
	 * a list): blank in obj (a scratch copy) what the digest and the
	 * diff must not see, as VMS_NO_VERIFY does for fields.
	 */
	void (*verify_mask)(void *obj);
};

#define VMSTATE_MAX_SUBSECTIONS 32

/* A growable output buffer; records are appended. */
struct vmstate_buf {
	uint8_t *data;
	size_t len;
	size_t cap;
};

#define VMSTATE_ERR_MAX 256

/* Why a load failed, for humans: "desc: field 'a.b[2]': reason". */
struct vmstate_error {
	char msg[VMSTATE_ERR_MAX];
};

void vmstate_buf_init(struct vmstate_buf *b);
void vmstate_buf_free(struct vmstate_buf *b);

/*
 * Append one record (header + fields) for obj to out.  Refuses state that
 * vmstate_load() would refuse to load back (out-of-range scalar, variable
 * count over its maximum) so a broken source fails before it sends.
 * Returns 0, -ENOMEM, -ERANGE or -EOVERFLOW; logs why.  On failure out is
 * as it was.
 */
int vmstate_save(const struct vmstate_desc *d, const void *obj,
		 struct vmstate_buf *out) __attribute__((warn_unused_result));

/*
 * Decode exactly one record of len bytes into obj.  Decodes into a scratch
 * copy of obj (fields not in the description keep obj's values) and only
 * copies it back when everything, including post_load, passed: on failure
 * obj is unchanged and err (may be NULL) says why.  Accepts the versions
 * min_version..version (of the record and of each subsection); fields
 * and subsections the record lacks get their defaults; unknown
 * subsections are skipped if marked optional on the wire, else refused.
 * Returns 0, -EINVAL (malformed, truncated, trailing bytes, wrong name,
 * failed check, unknown mandatory or repeated subsection), -ERANGE (value
 * or count out of range), -EPROTONOSUPPORT (version outside the accepted
 * range) or -ENOMEM.
 */
int vmstate_load(const struct vmstate_desc *d, void *obj, const void *data,
		 size_t len, struct vmstate_error *err)
	__attribute__((warn_unused_result));

/*
 * The same, for a record named `name` (1..255 characters) instead of
 * d->name: one of several instances of a description, e.g.
 * "virtio-blk.1".  Messages name the record by `name`.
 */
int vmstate_save_as(const struct vmstate_desc *d, const char *name, const void *obj,
		    struct vmstate_buf *out) __attribute__((warn_unused_result));
int vmstate_load_as(const struct vmstate_desc *d, const char *name, void *obj,
		    const void *data, size_t len, struct vmstate_error *err)
	__attribute__((warn_unused_result));

/*
 * Read a record's header without decoding it, to route a record from a
 * stream: copies the (NUL-terminated) name into name and returns the
 * record's total length in *record_len.  Returns 0 or -EINVAL if the
 * header is malformed or the record is longer than len.
 */
int vmstate_peek(const void *data, size_t len, char *name, size_t namelen,
		 uint32_t *version, size_t *record_len)
	__attribute__((warn_unused_result));

/*
 * A digest (XXH3-64) of obj as record `name`: its encoding by
 * vmstate_save_as() with every VMS_NO_VERIFY field carried empty and
 * verify_mask applied, so two objects that differ only there digest the
 * same.  Returns 0, or -errno as vmstate_save_as() (nothing logged).
 */
int vmstate_digest_as(const struct vmstate_desc *d, const char *name, const void *obj,
		      uint64_t *digest) __attribute__((warn_unused_result));

/*
 * Where a and b differ in what vmstate_digest_as() covers: the first such
 * field's path, with both values for a scalar ("msrs[3].data (0x1, 0x2)",
 * a's first) into path, and true; false if they digest the same.  For
 * messages.
 */
bool vmstate_diff(const struct vmstate_desc *d, const void *a, const void *b, char *path,
		  size_t pathlen);

/* ---- field table macros ------------------------------------------------ */

#define VMSTATE__MEMBER(st, f)	(((st *)0)->f)
/* 0, or a compile error if cond is false: keeps tables honest about sizes. */
#define VMSTATE__ASSERT0(cond) \
	(0 * sizeof(struct { _Static_assert(cond, "vmstate: " #cond); int x; }))
#define VMSTATE__NELEM(st, f) \
	(sizeof(VMSTATE__MEMBER(st, f)) / sizeof(VMSTATE__MEMBER(st, f)[0]))

#define VMSTATE__SCALAR(st, f, k, w, lo, hi, ...) {			\
	.name = #f, .kind = (k), .offset = offsetof(st, f),		\
	.size = (w) + VMSTATE__ASSERT0(sizeof(VMSTATE__MEMBER(st, f)) == (w)), \
	.count = 1, .min = (lo), .max = (hi), __VA_ARGS__ }

#define VMSTATE__ARRAY(st, f, k, w, lo, hi, ...) {			\
	.name = #f, .kind = (k), .offset = offsetof(st, f),		\
	.size = (w) + VMSTATE__ASSERT0(sizeof(VMSTATE__MEMBER(st, f)[0]) == (w)), \
	.count = VMSTATE__NELEM(st, f), .min = (lo), .max = (hi), __VA_ARGS__ }

#define VMSTATE__VARRAY(st, f, n, k, w, lo, hi, s, ...) {		\
	.name = #f, .kind = (k), .offset = offsetof(st, f),		\
	.size = (w) + VMSTATE__ASSERT0(sizeof(VMSTATE__MEMBER(st, f)[0]) == (w)), \
	.count = VMSTATE__NELEM(st, f), .min = (lo), .max = (hi), .sub = (s), \
	.varray = true, .count_offset = offsetof(st, n),		\
	.count_size = sizeof(VMSTATE__MEMBER(st, n)), __VA_ARGS__ }

/* Scalars: trailing arguments are extra initializers, e.g. .check = fn. */
#define VMSTATE_U8_RANGE(st, f, lo, hi, ...) \
	VMSTATE__SCALAR(st, f, VMSTATE_KIND_U8, 1, lo, hi, __VA_ARGS__)
#define VMSTATE_U16_RANGE(st, f, lo, hi, ...) \
	VMSTATE__SCALAR(st, f, VMSTATE_KIND_U16, 2, lo, hi, __VA_ARGS__)
#define VMSTATE_U32_RANGE(st, f, lo, hi, ...) \
	VMSTATE__SCALAR(st, f, VMSTATE_KIND_U32, 4, lo, hi, __VA_ARGS__)
#define VMSTATE_U64_RANGE(st, f, lo, hi, ...) \
	VMSTATE__SCALAR(st, f, VMSTATE_KIND_U64, 8, lo, hi, __VA_ARGS__)
#define VMSTATE_U8(st, f, ...)  VMSTATE_U8_RANGE(st, f, 0, UINT8_MAX, __VA_ARGS__)
#define VMSTATE_U16(st, f, ...) VMSTATE_U16_RANGE(st, f, 0, UINT16_MAX, __VA_ARGS__)
#define VMSTATE_U32(st, f, ...) VMSTATE_U32_RANGE(st, f, 0, UINT32_MAX, __VA_ARGS__)
#define VMSTATE_U64(st, f, ...) VMSTATE_U64_RANGE(st, f, 0, UINT64_MAX, __VA_ARGS__)

/* Fixed arrays of scalars; every element is range-checked. */
#define VMSTATE_U8_ARRAY_RANGE(st, f, lo, hi, ...) \
	VMSTATE__ARRAY(st, f, VMSTATE_KIND_U8, 1, lo, hi, __VA_ARGS__)
#define VMSTATE_U16_ARRAY_RANGE(st, f, lo, hi, ...) \
	VMSTATE__ARRAY(st, f, VMSTATE_KIND_U16, 2, lo, hi, __VA_ARGS__)
#define VMSTATE_U32_ARRAY_RANGE(st, f, lo, hi, ...) \
	VMSTATE__ARRAY(st, f, VMSTATE_KIND_U32, 4, lo, hi, __VA_ARGS__)
#define VMSTATE_U64_ARRAY_RANGE(st, f, lo, hi, ...) \
	VMSTATE__ARRAY(st, f, VMSTATE_KIND_U64, 8, lo, hi, __VA_ARGS__)
#define VMSTATE_U8_ARRAY(st, f, ...) \
	VMSTATE_U8_ARRAY_RANGE(st, f, 0, UINT8_MAX, __VA_ARGS__)
#define VMSTATE_U16_ARRAY(st, f, ...) \
	VMSTATE_U16_ARRAY_RANGE(st, f, 0, UINT16_MAX, __VA_ARGS__)
#define VMSTATE_U32_ARRAY(st, f, ...) \
	VMSTATE_U32_ARRAY_RANGE(st, f, 0, UINT32_MAX, __VA_ARGS__)
#define VMSTATE_U64_ARRAY(st, f, ...) \
	VMSTATE_U64_ARRAY_RANGE(st, f, 0, UINT64_MAX, __VA_ARGS__)
/* Reserved/padding arrays that must be zero. */
#define VMSTATE_U8_ZERO(st, f)  VMSTATE_U8_ARRAY_RANGE(st, f, 0, 0)
#define VMSTATE_U16_ZERO(st, f) VMSTATE_U16_ARRAY_RANGE(st, f, 0, 0)
#define VMSTATE_U32_ZERO(st, f) VMSTATE_U32_ARRAY_RANGE(st, f, 0, 0)
#define VMSTATE_U64_ZERO(st, f) VMSTATE_U64_ARRAY_RANGE(st, f, 0, 0)

/* Opaque fixed-size byte buffer (any object: sizeof is taken). */
#define VMSTATE_BUFFER(st, f, ...) {					\
	.name = #f, .kind = VMSTATE_KIND_BUFFER, .offset = offsetof(st, f), \
	.size = sizeof(VMSTATE__MEMBER(st, f)), .count = 1, __VA_ARGS__ }

/* A nested struct, and a fixed array of them. */
#define VMSTATE_STRUCT(st, f, subdesc, ...) {				\
	.name = #f, .kind = VMSTATE_KIND_STRUCT, .offset = offsetof(st, f), \
	.size = sizeof(VMSTATE__MEMBER(st, f)), .count = 1,		\
	.sub = &(subdesc), __VA_ARGS__ }
#define VMSTATE_STRUCT_ARRAY(st, f, subdesc, ...) {			\
	.name = #f, .kind = VMSTATE_KIND_STRUCT, .offset = offsetof(st, f), \
	.size = sizeof(VMSTATE__MEMBER(st, f)[0]),			\
	.count = VMSTATE__NELEM(st, f), .sub = &(subdesc), __VA_ARGS__ }

/*
 * Variable-length arrays: f is an array whose capacity is the maximum; the
 * number of elements on the wire is the earlier scalar field n.
 */
#define VMSTATE_VARRAY_U8(st, f, n, ...) \
	VMSTATE__VARRAY(st, f, n, VMSTATE_KIND_U8, 1, 0, UINT8_MAX, NULL, __VA_ARGS__)
#define VMSTATE_VARRAY_U32(st, f, n, ...) \
	VMSTATE__VARRAY(st, f, n, VMSTATE_KIND_U32, 4, 0, UINT32_MAX, NULL, __VA_ARGS__)
#define VMSTATE_VARRAY_U64(st, f, n, ...) \
	VMSTATE__VARRAY(st, f, n, VMSTATE_KIND_U64, 8, 0, UINT64_MAX, NULL, __VA_ARGS__)
#define VMSTATE_VARRAY_STRUCT(st, f, n, subdesc, ...)			\
	VMSTATE__VARRAY(st, f, n, VMSTATE_KIND_STRUCT,			\
			sizeof(VMSTATE__MEMBER(st, f)[0]), 0, 0, &(subdesc), __VA_ARGS__)

#define VMSTATE_END { .name = NULL, .kind = VMSTATE_KIND_END }

#endif
