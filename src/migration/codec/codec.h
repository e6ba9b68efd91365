/*
 * Page encodings behind one table (the model: QEMU's multifd-zstd.c and
 * friends): each codec is one file, registered in mig_codecs[] by its wire
 * id (enum mig_codec_id, format.h).  The RAM source encodes a page with the
 * cheapest negotiated codec that takes it; the destination's one RAM
 * decoder (ram_load.c) checks every entry against the codec's length
 * bounds before it reads a byte.  Which codecs a migration may use is
 * negotiated at CONFIG / READY (docs/migration-stream.md, "Codecs").
 */
#ifndef FERRY_MIGRATION_CODEC_CODEC_H
#define FERRY_MIGRATION_CODEC_CODEC_H

#include <stdbool.h>
#include <stdint.h>

#include "migration/format.h"

struct mig_codec {
	uint8_t id;			/* enum mig_codec_id: what the wire says */
	const char *name;
	/*
	 * Encode one 4 KiB page into dst (room for max_len bytes).  Returns
	 * the encoded length, or -1 when this codec does not take the page
	 * (zero: the page is not all zero), so the next one is tried.
	 */
	int (*encode)(const uint8_t *page, uint8_t *dst);
	/*
	 * Decode len bytes (already checked: min_len <= len <= max_len) into
	 * a 4 KiB page.  0, or -EPROTO for input that does not decode to
	 * exactly one page (hostile input).  NULL for the two codecs the
	 * decoder handles by their flags below.
	 */
	int (*decode)(const uint8_t *in, uint32_t len, uint8_t *page);
	uint32_t min_len, max_len;	/* bounds on an encoded page */
	/*
	 * Cost hints: CPU per page relative to a memcpy (the encoder tries
	 * cheap codecs first), and whether the data on the wire *is* the page
	 * (raw: sinks read it straight into guest RAM, no decode) or it
	 * decodes to a zero page (sinks may skip the write).
	 */
	unsigned cpu_cost;
	bool verbatim;
	bool zero;
};

/* Every codec this ferry knows, as a bitmask of ids. */
#define MIG_CODECS_KNOWN ((1u << MIG_CODEC_NR) - 1)
/* The codecs a source offers in CONFIG. */
#define MIG_CODECS_DEFAULT MIG_CODECS_KNOWN

/* The codec with wire id `id`, or NULL when this ferry has none. */
const struct mig_codec *mig_codec_get(unsigned id);

/*
 * Encode a page with the first codec of `allowed` (a bitmask of ids) that
 * takes it, in table order (cheapest first; raw takes every page).
 * Returns the codec's id with *len set, or -EINVAL when none took it
 * (allowed lacks raw).
 */
int mig_codec_encode(uint32_t allowed, const uint8_t *page, uint8_t *dst, uint32_t *len);

/* "zero,raw" for messages: the names of the codecs in mask. */
void mig_codec_names(uint32_t mask, char *buf, unsigned len);

extern const struct mig_codec mig_codec_zero;
extern const struct mig_codec mig_codec_raw;

#endif
