/* What block.c (the source) and block_load.c (the destination) share. */
#ifndef FERRY_MIGRATION_BLOCK_INTERNAL_H
#define FERRY_MIGRATION_BLOCK_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "board/machine.h"

#define BLOCK_REC_HDR	2u	/* a record's kind and disk index */
/* The source sends what the guest wrote in ranges of this many bytes. */
#define MIG_BLOCK_FINE		BLOCK_DIRTY_FINE
#define MIG_BLOCK_FINES		(MIG_BLOCK_CHUNK / MIG_BLOCK_FINE)	/* per chunk: 16 */

struct migration;
struct mig_in_ctx;
struct mig_incoming;
struct mig_payload;
struct mig_stream;

/*
 * block_codec.c: block data through a codec (DATA_Z).  After kind and
 * disk: offset (u64), codec (u8), decoded length (u32), encoded bytes.
 */
#define BLOCK_Z_HDR		13u
/* Encoded only when it saves this much of a range of len bytes (1/32). */
#define BLOCK_Z_MIN_SAVING(len)	((len) / 32)

/* One side's codec state.  Migration thread (source) or receiving thread. */
struct mig_block_z {
	uint8_t codec;			/* source: MIG_CODEC_LZ4, _ZSTD, or _RAW: none */
	uint8_t *buf;			/* source: the record; destination: the decoded range */
	void *cctx, *dctx;		/* zstd's contexts (made when first needed) */
};

/* A DATA_Z record, parsed; payload points into the section. */
struct mig_block_z_rec {
	uint64_t off;
	uint8_t codec;
	uint32_t len;			/* decoded: 1..MIG_BLOCK_CHUNK */
	const uint8_t *payload;
	uint32_t plen;			/* encoded: 1..len - 1 */
};

/* codec: what the source encodes with (any, the destination's: RAW).  0 or -ENOMEM. */
int mig_block_z_init(struct mig_block_z *z, uint8_t codec, int level)
	__attribute__((warn_unused_result));
void mig_block_z_fini(struct mig_block_z *z);
/*
 * The DATA_Z record (after kind and disk) of len bytes at off into z->buf:
 * its length, or -1 where the codec would not save BLOCK_Z_MIN_SAVING
 * (send DATA).
 */
int mig_block_z_encode(struct mig_block_z *z, uint64_t off, const uint8_t *src, uint32_t len);
/* A DATA_Z record of n bytes: 0, or -EPROTO with the reason in why. */
int mig_block_z_parse(const uint8_t *p, uint32_t n, struct mig_block_z_rec *r, char *why,
		      size_t whylen) __attribute__((warn_unused_result));
/* Decode r into out (room for r->len): 0, -EPROTO (not exactly r->len bytes) or -ENOMEM. */
int mig_block_z_decode(struct mig_block_z *z, const struct mig_block_z_rec *r, uint8_t *out)
	__attribute__((warn_unused_result));

/* One disk being sent.  Migration thread only. */
struct mig_block_disk {
	int fd;				/* the image, read-only, ours */
	uint64_t size;
	uint64_t chunks;
	uint64_t *owed;			/* chunks to send whole (bit per chunk) */
	uint64_t *part;			/* ranges of MIG_BLOCK_FINE bytes to send, a bit
					   each: what the guest wrote since the first
					   sync (redundant in a chunk owed whole) */
	uint64_t fines;			/* bits in part */
	uint64_t cursor;		/* where the next live slice starts */
	struct block_dirty *dirty;	/* the device's bitmap */
	uint64_t *first;		/* the first pass's chunks not yet sent; NULL before
					   the first sync */
	uint64_t first_left;		/* how many */
	bool mirroring;			/* write-blocking on: writes wait for our ack */
	uint64_t ticket;		/* the tracker's ticket at our last take */
	uint64_t acked;			/* the last ticket we acknowledged */
	bool done_sent;			/* post-copy: DONE went out */
};

/* The source's state (mig->block).  Migration thread only. */
struct mig_block {
	unsigned nr;
	struct mig_block_disk d[MACHINE_MAX_DISKS];
	uint8_t *buf;			/* one chunk */
	bool released;			/* the switchover is near: never mirror again */
	bool lazy;			/* post-copy: the destination fetches what it lacks */
	uint64_t left_over;		/* owed after the last live pass, before its sync */
	struct mig_block_z z;		/* DATA_Z: z.codec RAW until READY agreed to it */
};

/* block.c: the source's helpers. */
uint64_t mig_block_popcount(const uint64_t *bits, uint64_t nbits);
/* One record: kind, disk, then nr_nums u64s, then len bytes of data. */
void mig_block_send(struct migration *mig, uint8_t kind, unsigned disk, const uint64_t *nums,
		    unsigned nr_nums, const void *data, uint32_t len);
/* Take what the guest wrote into owed, remembering the ticket to acknowledge. */
void mig_block_take(struct mig_block_disk *d);
/* The bits of chunk c in part (16, one per MIG_BLOCK_FINE; a word holds four chunks). */
static inline uint64_t mig_block_part_bits(const struct mig_block_disk *d, uint64_t c)
{
	return (d->part[c / 4] >> (16 * (c % 4))) & 0xffff;
}

static inline void mig_block_part_clear(struct mig_block_disk *d, uint64_t c)
{
	d->part[c / 4] &= ~(0xffffULL << (16 * (c % 4)));
}

/* Every chunk with a range in `part` is owed whole instead (post-copy's unit). */
void mig_block_fold(struct mig_block_disk *d);
/* Send chunk c of disk i (read now).  0 or the stream's error. */
int mig_block_send_chunk(struct migration *mig, unsigned i, uint64_t c);
/*
 * Send up to `budget` bytes of what disk i owes, from its cursor on;
 * `live`: look for a cancel between chunks.  0, -ECANCELED or the
 * stream's error.
 */
int mig_block_send_owed(struct migration *mig, unsigned i, uint64_t budget, bool live);

/* block_postcopy.c: the source's post-copy ops (live.h). */
int mig_block_pc_switch(struct migration *mig);
int mig_block_pc_push(struct migration *mig, uint64_t budget, bool *done);
int mig_block_pc_request(struct migration *mig, uint8_t type, const uint8_t *p, uint32_t len);
void mig_block_pc_resume_begin(struct migration *mig);

/* Whether len bytes (a chunk or less) are all zero. */
bool mig_block_is_zero(const uint8_t *p, size_t len);
/* Read len bytes at off (what is past the end reads as zeros).  0 or -errno. */
int mig_block_read(int fd, uint8_t *buf, uint64_t len, uint64_t off);
/* XXH3-64 of a whole image of `size` bytes, read from fd through buf (a chunk).  0 or -errno. */
int mig_block_digest(int fd, uint64_t size, uint8_t *buf, uint64_t *out);

/* block_load.c: the source's destination ops (live.h). */
bool mig_block_accepted(void);
int mig_block_load(struct mig_in_ctx *c, uint8_t type, struct mig_payload *in);
int mig_block_loaded(struct mig_in_ctx *c);
void mig_block_unload(struct mig_incoming *inc);
/* What a disk's gate asks with: BLOCK_REQ for chunk r of disk `disk`. */
struct mig_block_want {
	struct mig_incoming *inc;
	unsigned disk;
};

/*
 * Destination: one receive's disks (inc->src_state[MIG_SOURCE_BLOCK],
 * made at the first block section, freed by mig_block_unload).  The
 * receiving thread only, but for `want`, which the disks' I/O threads
 * read through their gates (fixed while a gate is closed).
 */
struct mig_block_in {
	int fd[MACHINE_MAX_DISKS];	/* -1: no HELLO yet */
	bool hello[MACHINE_MAX_DISKS];
	bool done[MACHINE_MAX_DISKS];
	bool summed[MACHINE_MAX_DISKS];	/* BLOCK_SUMS sent */
	uint64_t size[MACHINE_MAX_DISKS];
	/* Post-copy: OWED gathered (bit per chunk), then LAZY closed the disk's gate. */
	uint64_t *owed[MACHINE_MAX_DISKS];
	uint64_t owed_next[MACHINE_MAX_DISKS];	/* the next OWED's first chunk */
	bool lazy[MACHINE_MAX_DISKS];
	struct mig_block_want want[MACHINE_MAX_DISKS];
	/*
	 * The syncer: a thread that makes the images durable (fdatasync) while
	 * the copy goes on, woken every MIG_BLOCK_WRITEBACK bytes written, so
	 * that DONE's own fdatasync, in the downtime, finds little left.  The
	 * receiving thread writes `unsynced`; the rest is under sync_lock.
	 * The fds stay open until the syncer is joined (mig_block_unload).
	 */
	uint64_t unsynced;
	int sync_fd[MACHINE_MAX_DISKS];	/* the disks it syncs: HELLO to DONE */
	pthread_t syncer;
	bool syncer_on;
	pthread_mutex_t sync_lock;
	pthread_cond_t sync_cond;
	bool sync_want, sync_stop;
	struct mig_block_z z;		/* DATA_Z's decoder (buf made at the first) */
};

/* block_load.c, for block_lazy.c */
int mig_block_write(int fd, const uint8_t *p, uint64_t len, uint64_t off);
int mig_block_zero(int fd, uint64_t off, uint64_t len);

/* block_lazy.c: the destination in post-copy. */
int mig_block_load_owed(struct mig_in_ctx *c, struct mig_block_in *bi, unsigned i,
			struct mig_payload *in);
int mig_block_load_lazy(struct mig_in_ctx *c, struct mig_block_in *bi, unsigned i,
			struct mig_payload *in);
/* DATA (data) or ZERO (data NULL) of a lazy disk: one whole chunk, dropped if it is here. */
int mig_block_load_lazy_chunk(struct mig_in_ctx *c, struct mig_block_in *bi, unsigned i,
			      uint64_t off, uint64_t len, const uint8_t *data);
/* DONE of a lazy disk: every chunk arrived; the gate opens. */
int mig_block_lazy_done(struct mig_in_ctx *c, struct mig_block_in *bi, unsigned i);
/* The receive ended: gates still closed fail (the rest never comes). */
void mig_block_lazy_unload(struct mig_incoming *inc, struct mig_block_in *bi);
/* block_lazy.c: the destination's post-copy ops (live.h). */
int mig_block_pc_report(struct mig_incoming *inc, struct mig_stream *s);
void mig_block_pc_resumed(struct mig_incoming *inc);

#endif
