/*
 * Page encodings behind one table (the model: QEMU's multifd-zstd.c and
 * friends): each codec is one file, registered in mig_codecs[] by its wire
 * id (enum mig_codec_id, format.h).  The RAM source encodes each page
 * through mig_codec_encode(), which picks the codec by the migration's
 * compression mode (--compress); the destination's one RAM decoder
 * (ram_load.c) checks every entry against the codec's length bounds
 * before it reads a byte.  Which codecs a migration may use is negotiated
 * at CONFIG / READY (docs/migration-stream.md, "Codecs").
 *
 * Codecs with state (delta's cache of pages last sent, zstd's contexts)
 * keep it in a struct mig_codec_ctx: one per migration and direction.
 */
#ifndef FERRY_MIGRATION_CODEC_CODEC_H
#define FERRY_MIGRATION_CODEC_CODEC_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

#include "migration/format.h"
#include "vmm/memory.h"

/* How the source chooses a page's codec (--compress). */
enum mig_compress {
	MIG_COMPRESS_NONE,	/* zero or raw */
	MIG_COMPRESS_LZ4,	/* zero, else lz4 where it shrinks the page, else raw */
	MIG_COMPRESS_ZSTD,	/* the same with zstd */
	MIG_COMPRESS_DELTA,	/* zero, else delta where the cache holds the page, else raw */
	MIG_COMPRESS_ADAPTIVE,	/* per page, by its features and the link (adaptive.c) */
	MIG_COMPRESS_NR,
};

#define MIG_COMPRESS_LEVEL_DEFAULT	1	/* zstd: fastest, most of the gain */
#define MIG_XBZRLE_CACHE_DEFAULT	(64ULL << 20)	/* as QEMU's xbzrle-cache-size */

/* What one codec did, for query-migrate and the stats file. */
struct mig_codec_stats {
	uint64_t pages;
	uint64_t bytes_in;		/* page bytes encoded (4096 a page) */
	uint64_t bytes_out;		/* encoded bytes (entries not counted) */
	uint64_t cpu_ns;		/* time spent encoding, this codec's pages */
};

/* The delta codec's cache counters (QEMU's xbzrle-cache). */
struct mig_delta_stats {
	uint64_t hits;			/* the cache held the page's last copy */
	uint64_t misses;		/* it did not: sent otherwise, then cached */
	uint64_t overflows;		/* held, but too changed for a delta to pay */
};

struct mig_adaptive;

/*
 * One migration's codec state, for one direction.  Owned by the thread
 * that encodes (the migration thread) or decodes (the receiving thread);
 * the counters are copied out under migration.lock by the owner
 * (ram.c's ram_publish), never read across threads here.
 */
struct mig_codec_ctx {
	bool source;			/* encoding side: delta keeps its cache */
	enum mig_compress mode;
	uint32_t allowed;		/* negotiated codecs (bit = id) */
	int level;			/* zstd's level */
	uint64_t cache_bytes;		/* delta's cache, source side */
	/*
	 * Delta only against pages the destination holds as the cache says:
	 * off once post-copy discards pages there.
	 */
	bool delta_off;
	uint64_t link_bps;		/* adaptive: the link's measured rate (0: unknown) */
	unsigned encoders;		/* adaptive: threads encoding side by side (0: 1) */
	void *priv[MIG_CODEC_NR];	/* each codec's own state (init/fini) */
	/*
	 * A worker's context (ram_pool.c): the migration's main context,
	 * whose per-migration state it shares (delta's cache, which locks
	 * its slots); NULL in the main context.
	 */
	const struct mig_codec_ctx *share;
	struct mig_adaptive *adaptive;
	struct mig_codec_stats stats[MIG_CODEC_NR];
	struct mig_delta_stats delta;
	uint64_t gave_up;		/* adaptive: pages sent raw after the probe */
	/*
	 * The one snapshot of a page the guest may be writing: every codec but
	 * zero and raw encodes from it, and it is what the destination will
	 * hold (the digest and delta's cache take it).
	 */
	uint8_t *snap;
};

struct mig_codec {
	uint8_t id;			/* enum mig_codec_id: what the wire says */
	const char *name;
	/* Allocate this codec's state in ctx->priv[id].  NULL: none.  0 or -errno. */
	int (*init)(struct mig_codec_ctx *c);
	void (*fini)(struct mig_codec_ctx *c);
	/*
	 * Encode page number `index` into dst (room for max_len bytes).
	 * Returns the encoded length, or -1 when this codec does not take the
	 * page (zero: not all zero; lz4: it would not shrink), so another is
	 * used.
	 */
	int (*encode)(struct mig_codec_ctx *c, uint64_t index, const uint8_t *page, uint8_t *dst);
	/*
	 * The page `index` was sent (by any codec) and the destination now
	 * holds `page`; NULL: a copy not worth keeping (a zero page, or one
	 * sent where deltas do not pay).  Delta caches it.  NULL: not needed.
	 */
	void (*sent)(struct mig_codec_ctx *c, uint64_t index, const uint8_t *page);
	/*
	 * Decode len bytes (already checked: min_len <= len <= max_len) into
	 * a 4 KiB page.  0, or -EPROTO for input that does not decode to
	 * exactly one page (hostile input).  For a codec `against_held`, page
	 * holds the destination's copy on entry.  NULL for the two codecs the
	 * decoder handles by their flags below.
	 */
	int (*decode)(struct mig_codec_ctx *c, const uint8_t *in, uint32_t len, uint8_t *page);
	uint32_t min_len, max_len;	/* bounds on an encoded page */
	/*
	 * Whether the data on the wire *is* the page (raw: sinks read it
	 * straight into guest RAM, no decode), decodes to a zero page (sinks
	 * may skip the write), or changes the page the destination already
	 * holds (delta: refused for a page it never had).
	 */
	bool verbatim;
	bool zero;
	bool against_held;
};

/* Every codec this ferry knows, as a bitmask of ids. */
#define MIG_CODECS_KNOWN ((1u << MIG_CODEC_NR) - 1)
#define MIG_CODEC_BIT(id) (1u << (id))
/* What every migration offers: each page can go as zero or raw. */
#define MIG_CODECS_BASE (MIG_CODEC_BIT(MIG_CODEC_ZERO) | MIG_CODEC_BIT(MIG_CODEC_RAW))

/* The codec with wire id `id`, or NULL when this ferry has none. */
const struct mig_codec *mig_codec_get(unsigned id);

/* The codecs a source in `mode` offers in CONFIG (raw and zero among them). */
uint32_t mig_compress_codecs(enum mig_compress mode);
/* "lz4" -> MIG_COMPRESS_LZ4; -1 for a name that is none. */
int mig_compress_parse(const char *name);
const char *mig_compress_name(enum mig_compress mode);

/*
 * Set up a context: `allowed` (negotiated codecs), and for the source its
 * mode, zstd level and delta cache size.  Calls each allowed codec's init.
 * 0 or -ENOMEM (c is then cleaned up).
 */
int mig_codec_ctx_init(struct mig_codec_ctx *c, bool source, enum mig_compress mode,
		       uint32_t allowed, int level, uint64_t cache_bytes)
	__attribute__((warn_unused_result));
void mig_codec_ctx_fini(struct mig_codec_ctx *c);
/*
 * A context for an encoder thread: like `main` (mode, codecs, level) but
 * with state of its own, except delta's cache, which is main's.  0 or
 * -ENOMEM.  Finish it with mig_codec_ctx_fini() before main's.
 */
int mig_codec_ctx_init_worker(struct mig_codec_ctx *c, const struct mig_codec_ctx *main)
	__attribute__((warn_unused_result));

/*
 * Encode page `index` (src; a hole reads as zero without touching RAM)
 * into dst, room for a page, with the codec the mode picks among those
 * allowed.  Returns the codec's id with *len set and *held pointing at
 * what the destination will hold (NULL: zeros; else a snapshot valid
 * until the next call), or -EINVAL when none took it (raw not allowed).
 */
int mig_codec_encode(struct mig_codec_ctx *c, uint64_t index, const uint8_t *src, bool hole,
		     uint8_t *dst, uint32_t *len, const uint8_t **held)
	__attribute__((warn_unused_result));

/*
 * --compress none with memory that cannot change (the guest paused): page
 * `index` as zero or as raw by reference, not copied: *held is src itself
 * (or NULL: zeros), and the caller sends src's bytes.  Counted as
 * mig_codec_encode() counts.  Returns the codec's id, or -EINVAL when
 * raw is not allowed.
 */
int mig_codec_encode_ref(struct mig_codec_ctx *c, uint64_t index, const uint8_t *src, bool hole,
			 uint32_t *len, const uint8_t **held) __attribute__((warn_unused_result));

/* adaptive.c: the adaptive mode's choice for one page (snapshot in c->snap). */
int mig_adaptive_init(struct mig_codec_ctx *c) __attribute__((warn_unused_result));
void mig_adaptive_fini(struct mig_codec_ctx *c);
int mig_adaptive_encode(struct mig_codec_ctx *c, uint64_t index, uint8_t *dst, uint32_t *len);
/* Whether this page goes raw without the choice: the link outruns it. */
bool mig_adaptive_raw_only(struct mig_codec_ctx *c);
/* What the choice cost for one page that was not zero, in ns, and the bytes it made. */
void mig_adaptive_note(struct mig_codec_ctx *c, uint64_t ns, uint32_t len);

/* The codec counters as JSON: {"lz4": {pages, bytes-in, ...}, ...}. */
json_object *mig_codec_stats_json(const struct mig_codec_stats st[MIG_CODEC_NR],
				  const struct mig_delta_stats *d, uint64_t gave_up);

/* "zero,raw" for messages: the names of the codecs in mask. */
void mig_codec_names(uint32_t mask, char *buf, unsigned len);

/* zero.c: whether a page is all zero (vectorised); for tests and adaptive. */
bool mig_page_is_zero(const uint8_t *page);

/*
 * delta.c: the delta of page against old into dst: its length, or -1 when
 * it would be longer than max.  For adaptive and the unit tests.
 */
int mig_delta_encode(const uint8_t *old, const uint8_t *page, uint8_t *dst, uint32_t max);

extern const struct mig_codec mig_codec_zero;
extern const struct mig_codec mig_codec_raw;
extern const struct mig_codec mig_codec_lz4;
extern const struct mig_codec mig_codec_zstd;
extern const struct mig_codec mig_codec_delta;

#endif
