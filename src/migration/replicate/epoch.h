/*
 * Continuous checkpointing (Remus; docs/replication.md): the parts that
 * are pure logic, so that tests can feed them bytes and timestamps.
 *
 *   - the standby's epoch buffer: an epoch's pages, disk blocks and
 *     device state are kept aside as they arrive and reach guest RAM and
 *     the disk images only when its EPOCH_END came with the right
 *     sequence number, page and disk record counts and section chain
 *     (mig_epoch_end); a broken epoch is dropped whole, so the standby
 *     always holds the last committed checkpoint, RAM and disks alike;
 *   - the standby's failover decision and the primary's fence decision,
 *     and the timeouts that make them exclusive: the primary stops its
 *     guest before the standby may start its own.
 *
 * A struct mig_epoch belongs to the thread receiving the replication
 * (ferry run's main thread); nothing here takes a lock.
 */
#ifndef FERRY_MIGRATION_REPLICATE_EPOCH_H
#define FERRY_MIGRATION_REPLICATE_EPOCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MIG_EPOCH_PAGE		4096u
#define MIG_EPOCH_DISKS_MAX	16u		/* disks an epoch may carry blocks for */
#define MIG_EPOCH_DISK_CHUNK	(64u << 10)	/* a disk record: at most this, never across one */
#define MIG_EPOCH_DISK_RANGE	4096u		/* with ranges agreed: a record's alignment */

/*
 * Bit 29 of CONFIG's codec set and of READY's (not a codec, like
 * MIG_CAP_BASE and MIG_CAP_PREEMPT): the primary can send an epoch's disk
 * blocks as the 4 KiB ranges the guest wrote (CONFIG); the standby takes
 * records aligned to MIG_EPOCH_DISK_RANGE instead of whole chunks only
 * (READY).  An older standby masks it off like an unknown codec: it gets
 * whole chunks.
 */
#define MIG_CAP_EPOCH_RANGES	(1u << 29)

/* Writes one disk record into image `disk` (data NULL: zeros).  0 or -errno. */
typedef int mig_epoch_disk_fn(void *opaque, unsigned disk, uint64_t off, uint32_t len,
			      const uint8_t *data);

/* One disk record of the open epoch; its bytes at data_at in ddata (none for zeros). */
struct mig_epoch_disk_rec {
	uint64_t off;
	uint64_t data_at;
	uint32_t len;
	uint8_t disk;
	bool zero;
};

struct mig_epoch {
	uint64_t max_pages;	/* most pages one epoch may carry (the guest's page count) */
	uint64_t committed;	/* sequence number of the last committed epoch (0: the initial copy) */
	bool open;		/* an EPOCH came and its EPOCH_END not yet */
	uint64_t seq;		/* of the open epoch */
	/* The open epoch's pages, in arrival order: address (bit 0 set: a zero page), data. */
	uint64_t *gpa;
	uint8_t *data;		/* MIG_EPOCH_PAGE bytes per entry (unused for zero pages) */
	uint64_t n, cap;
	uint8_t *state;		/* its STATE payload (a copy), NULL until it came */
	uint32_t state_len;
	/* The last committed epoch's STATE (NULL: the initial copy's, already loaded). */
	uint8_t *committed_state;
	uint32_t committed_state_len;
	uint64_t bytes;		/* payload bytes buffered in the open epoch */
	/*
	 * Disks (replication with copy-storage; mig_epoch_set_disks): their
	 * sizes, the alignment of a record (disk_align: a whole chunk, or a
	 * 4 KiB range with MIG_CAP_EPOCH_RANGES agreed) and the writer, fixed
	 * for the buffer's life; without them a disk record is refused.  The
	 * open epoch's records, in arrival order; no two overlap (`seen`,
	 * a bit per 4 KiB of each disk, set for the open epoch's records),
	 * so the buffer never holds more than the disks' size.
	 */
	unsigned nr_disks;
	uint64_t disk_size[MIG_EPOCH_DISKS_MAX];
	uint64_t *seen[MIG_EPOCH_DISKS_MAX];
	uint32_t disk_align;
	uint64_t max_disk_recs;
	mig_epoch_disk_fn *disk_apply;
	void *disk_opaque;
	struct mig_epoch_disk_rec *drec;
	uint64_t nd, dcap;
	uint8_t *ddata;
	uint64_t ddata_len, ddata_cap;
	uint64_t disk_bytes;	/* bytes (written or zeroed) the open epoch's records cover */
	/* An apply failed halfway: RAM holds no checkpoint any more; nothing more is taken. */
	bool torn;
};

/* Empty, nothing open, committed = 0.  max_pages bounds every epoch. */
void mig_epoch_init(struct mig_epoch *e, uint64_t max_pages);
void mig_epoch_free(struct mig_epoch *e);

/*
 * The standby's disks: nr images of sizes[i] bytes, each record of a
 * committed epoch written through apply(opaque, ...).  `ranges`: the
 * standby agreed to MIG_CAP_EPOCH_RANGES, records may be 4 KiB ranges of
 * a chunk; otherwise each must be a whole chunk.  0, -EINVAL (more than
 * MIG_EPOCH_DISKS_MAX, or a disk of 0 bytes) or -ENOMEM.
 */
int mig_epoch_set_disks(struct mig_epoch *e, unsigned nr, const uint64_t *sizes, bool ranges,
			mig_epoch_disk_fn *apply, void *opaque) __attribute__((warn_unused_result));

/*
 * EPOCH seq: opens an epoch.  0, or -EPROTO (one is open, or seq is not
 * committed + 1) with the reason in why.
 */
int mig_epoch_begin(struct mig_epoch *e, uint64_t seq, char *why, size_t whylen)
	__attribute__((warn_unused_result));

/*
 * One page of the open epoch at gpa (page-aligned), data NULL for a zero
 * page.  0, -EPROTO (no epoch open, unaligned, more than max_pages) or
 * -ENOMEM.
 */
int mig_epoch_add(struct mig_epoch *e, uint64_t gpa, const uint8_t *data, char *why,
		  size_t whylen) __attribute__((warn_unused_result));

/* The open epoch's STATE (copied).  0, -EPROTO (none open, a second one) or -ENOMEM. */
int mig_epoch_set_state(struct mig_epoch *e, const uint8_t *p, uint32_t len, char *why,
			size_t whylen) __attribute__((warn_unused_result));

/*
 * One disk record of the open epoch: len bytes at off of disk `disk`,
 * data NULL for zeros (copied).  Every field is the primary's, hostile.
 * A record is one range inside one chunk: off a multiple of disk_align
 * (a chunk, or 4 KiB with ranges), len a multiple of it too unless the
 * record ends at the disk's end, 1..MIG_EPOCH_DISK_CHUNK bytes, not
 * across a chunk boundary, not past the disk's end, overlapping no
 * earlier record of the epoch.  0, or -EPROTO (no epoch open, a disk this
 * standby does not have, any of those broken) or -ENOMEM; a refused
 * record leaves the epoch as it was.
 */
int mig_epoch_add_disk(struct mig_epoch *e, unsigned disk, uint64_t off, uint32_t len,
		       const uint8_t *data, char *why, size_t whylen)
	__attribute__((warn_unused_result));

/*
 * EPOCH_DISK's payload (docs/migration-stream.md, "Replication"): disk
 * (u8), flags (u8, bit 0: zeros, no bytes follow), offset (u64), length
 * (u32), then the bytes unless zeros.
 */
#define MIG_EPOCH_DISK_HDR	14u
#define MIG_EPOCH_DISK_ZERO	1u

/*
 * Split an EPOCH_DISK payload; *data NULL for zeros.  Checks its shape
 * only (the ranges are mig_epoch_add_disk's): 0, or -EPROTO (shorter
 * than the header, unknown flags, a length that does not match the
 * payload) with the reason in why.
 */
int mig_epoch_disk_decode(const uint8_t *p, uint32_t plen, unsigned *disk, uint64_t *off,
			  uint32_t *len, const uint8_t **data, char *why, size_t whylen)
	__attribute__((warn_unused_result));

/* Writes one page into guest RAM (data NULL: zeros).  0 or -errno. */
typedef int mig_epoch_apply_fn(void *opaque, uint64_t gpa, const uint8_t *data);

/* What EPOCH_END says (docs/migration-stream.md, "Replication"). */
struct mig_epoch_end_rec {
	uint64_t seq;
	uint64_t pages;		/* RAM and RAM_RUN pages */
	uint64_t disk_recs;	/* EPOCH_DISK records (0 when EPOCH_END has no such field) */
	uint64_t chain;		/* the primary's section chain up to EPOCH_END */
};

/*
 * EPOCH_END: the epoch is whole when end->seq is the open one's, it holds
 * end->pages pages, end->disk_recs disk records and its STATE, and
 * end->chain (the source's section chain) equals `chain_here` (ours over
 * the same sections).  Then every page goes to apply, in order, every
 * disk record to the disks' writer, in order, the STATE becomes the
 * committed one and committed = seq: returns 0.  Otherwise the epoch is
 * dropped, nothing applied: -EPROTO with the reason.  A failure of
 * either writer (-errno) leaves RAM or a disk half-written: `torn` is
 * set, no epoch is taken any more, and the caller must not fail over
 * from it.
 */
int mig_epoch_end(struct mig_epoch *e, const struct mig_epoch_end_rec *end, uint64_t chain_here,
		  mig_epoch_apply_fn *apply, void *opaque, char *why, size_t whylen)
	__attribute__((warn_unused_result));

/* Drop the open epoch, if any (the link broke in the middle of it). */
void mig_epoch_discard(struct mig_epoch *e);

/* Failover and fencing ---------------------------------------------------- */

enum mig_failover_mode {
	MIG_FAILOVER_AUTO,	/* the standby takes over by itself after the timeout */
	MIG_FAILOVER_MANUAL,	/* only on 'ferry failover' */
};

#define MIG_FAILOVER_DEFAULT_NS	1000000000ULL	/* ferry run --standby --failover-timeout */
#define MIG_FAILOVER_MIN_NS	100000000ULL	/* 100 ms */

struct mig_failover_in {
	uint64_t now_ns;
	uint64_t last_heard_ns;		/* the last whole section from the primary */
	uint64_t timeout_ns;		/* --failover-timeout */
	enum mig_failover_mode mode;
	bool link_lost;			/* the connection failed (EOF, reset, bad section) */
	bool operator_asked;		/* 'ferry failover' */
};

enum mig_failover_action {
	MIG_FAILOVER_WAIT,		/* keep the replica paused, keep listening */
	MIG_FAILOVER_TAKEOVER,		/* resume the guest from the last checkpoint */
};

/*
 * The standby: take over when the operator says so, or (auto) when the
 * primary has been silent for the whole failover timeout, whether or not
 * the connection still looks open (a stalled link is silence too).  A
 * lost connection alone is not enough: the primary may be alive behind
 * a broken link, and it fences itself only after its own, shorter,
 * timeout.  *reason says why (a static string).
 */
enum mig_failover_action mig_failover_decide(const struct mig_failover_in *in,
					     const char **reason);

/*
 * The primary: fence (pause the guest for good) when a standby in auto
 * mode has not been heard from for fence_ns.  A manual standby never
 * takes over by itself: the primary then runs on unprotected instead.
 */
bool mig_fence_decide(uint64_t now_ns, uint64_t last_heard_ns, uint64_t fence_ns,
		      enum mig_failover_mode standby_mode);

/*
 * The primary's fence timeout from what it was given (0: none) and the
 * standby's failover timeout: by default half of the standby's; a given
 * one must not exceed that half, nor be shorter than three heartbeats.
 * 0 with *fence_ns set, or -EINVAL with the reason.  The margin (the
 * other half) covers one heartbeat interval of silence before the link
 * broke and the primary's time to pause its vCPUs.
 */
int mig_fence_pick(uint64_t given_ns, uint64_t standby_ns, uint64_t heartbeat_ns,
		   uint64_t *fence_ns, char *why, size_t whylen) __attribute__((warn_unused_result));

/*
 * What a standby's HEARTBEAT proves (docs/replication.md, "Who runs the
 * guest"): it echoes the counter of the last HEARTBEAT it had from the
 * primary, so it had heard the primary at or after the moment that one
 * was sent.  sent[c % MIG_HB_RING] holds when the primary sent counter c
 * (1..last); returns that moment for echo, or 0 when echo proves nothing
 * (0, not sent yet, or too old to be remembered).
 */
#define MIG_HB_RING 64u
uint64_t mig_hb_credit(const uint64_t sent[MIG_HB_RING], uint64_t last, uint64_t echo);

/* How often each side says it is alive: a tenth of the standby's failover timeout, 10 ms at least. */
uint64_t mig_heartbeat_ns(uint64_t standby_failover_ns);

#endif
