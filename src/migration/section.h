/*
 * Sections of the migration stream (docs/migration-stream.md): an 8-byte
 * header (type, two reserved fields, payload length), the payload, and an
 * XXH3-64 checksum of header and payload.
 */
#ifndef FERRY_MIGRATION_SECTION_H
#define FERRY_MIGRATION_SECTION_H

#include <stddef.h>
#include <stdint.h>
#include "util/hash.h"

#include "migration/stream.h"

/* A section being written: its length is declared up front. */
struct mig_section_writer {
	struct mig_stream *s;
	uint32_t len;		/* declared payload length */
	uint32_t done;		/* payload bytes put so far */
	XXH3_state_t *hash;
};

/*
 * Start a section of `type` with a `len`-byte payload.  Errors stick to
 * the stream.  Returns 0 or -ENOMEM.
 */
int mig_section_begin(struct mig_section_writer *w, struct mig_stream *s, uint8_t type,
		      uint32_t len) __attribute__((warn_unused_result));
void mig_section_put(struct mig_section_writer *w, const void *data, size_t len);
/*
 * Put n iovecs of payload, checksummed as they are and sent without a copy
 * when large (mig_stream_putv): their memory must not change until this
 * returns, or the checksum would not be of the bytes sent.
 */
void mig_section_putv(struct mig_section_writer *w, const struct iovec *iov, int n);
void mig_section_put_u32(struct mig_section_writer *w, uint32_t v);
void mig_section_put_u64(struct mig_section_writer *w, uint64_t v);
/* Write the checksum.  Exactly `len` payload bytes must have been put. */
void mig_section_end(struct mig_section_writer *w);

/* One step of the section chain (stream.h): chain, then a section's checksum. */
uint64_t mig_section_chain(uint64_t chain, uint64_t sum);

/* A whole section in one call. */
void mig_section_write(struct mig_stream *s, uint8_t type, const void *payload, uint32_t len);

/*
 * Read one section into buf (capacity cap >= MIG_SECTION_MAX is enough for
 * anything valid).  Checks the reserved fields, the length against cap and
 * the checksum.  Returns 0 with *type and *len set, or the stream's sticky
 * error, set with a reason (-EPROTO for a bad section, -EPIPE/-ETIMEDOUT
 * etc. for the connection).
 */
int mig_section_read(struct mig_stream *s, uint8_t *buf, uint32_t cap, uint8_t *type,
		     uint32_t *len) __attribute__((warn_unused_result));

/*
 * A section being read piece by piece, straight into where its bytes
 * belong (guest RAM): the checksum is checked at the end, so nothing read
 * may be trusted to have arrived intact before mig_section_reader_end().
 */
struct mig_section_reader {
	struct mig_stream *s;
	uint8_t type;
	uint32_t len;		/* payload length from the header */
	uint32_t done;
	XXH3_state_t *hash;
};

/*
 * Read a section header (reserved fields and the length limit checked).
 * Returns 0 or the stream's sticky error.
 */
int mig_section_reader_begin(struct mig_section_reader *r, struct mig_stream *s)
	__attribute__((warn_unused_result));
/* Read n payload bytes into buf; more than the header announced is an error. */
int mig_section_reader_get(struct mig_section_reader *r, void *buf, uint32_t n)
	__attribute__((warn_unused_result));
/* All payload read: check the checksum.  0 or the stream's error. */
int mig_section_reader_end(struct mig_section_reader *r) __attribute__((warn_unused_result));
/* Give up on a section (frees the hash state). */
void mig_section_reader_abort(struct mig_section_reader *r);

/*
 * A payload as a loader sees it, whichever way its rule reads the section:
 * streamed (bytes come off the section reader, straight where they
 * belong; the checksum is checked only after the loader returns) or whole
 * (the checked payload in a buffer, so the loader may point into it).
 */
struct mig_payload {
	struct mig_section_reader *r;	/* streamed; NULL: whole */
	const uint8_t *p;		/* whole */
	uint32_t len, off;
};

void mig_payload_streamed(struct mig_payload *in, struct mig_section_reader *r);
void mig_payload_whole(struct mig_payload *in, const uint8_t *p, uint32_t len);
/* Bytes not read yet. */
uint32_t mig_payload_left(const struct mig_payload *in);
/*
 * Copy the next n bytes into dst.  0, -EPROTO when fewer are left, or the
 * stream's error (reason in in->r->s->why).
 */
int mig_payload_get(struct mig_payload *in, void *dst, uint32_t n)
	__attribute__((warn_unused_result));
/* Whole only: a pointer to the next n bytes, or NULL (streamed, or fewer left). */
const uint8_t *mig_payload_ptr(struct mig_payload *in, uint32_t n);

/*
 * A RESULT payload: status (i32) and message (pointing into p, msglen
 * bytes, not NUL-terminated; cut to the payload).  0 or -EPROTO.
 */
int mig_result_parse(const uint8_t *p, uint32_t len, int32_t *status, const char **msg,
		     int *msglen) __attribute__((warn_unused_result));

/* Little-endian readers over an untrusted payload, with bounds. */
struct mig_cursor {
	const uint8_t *p;
	uint32_t len, off;
	int bad;		/* set once a read ran past the end */
};

void mig_cursor_init(struct mig_cursor *c, const uint8_t *p, uint32_t len);
uint8_t mig_cursor_u8(struct mig_cursor *c);
uint16_t mig_cursor_u16(struct mig_cursor *c);
uint32_t mig_cursor_u32(struct mig_cursor *c);
uint64_t mig_cursor_u64(struct mig_cursor *c);
/* Pointer to the next n bytes, or NULL (and bad set) if fewer remain. */
const uint8_t *mig_cursor_bytes(struct mig_cursor *c, uint32_t n);

#endif
