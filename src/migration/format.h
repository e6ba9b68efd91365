/* Constants of the migration stream, version 2 (docs/migration-stream.md). */
#ifndef FERRY_MIGRATION_FORMAT_H
#define FERRY_MIGRATION_FORMAT_H

#include <stdint.h>

#define MIG_MAGIC		"FERRYMIG"
#define MIG_MAGIC_LEN		8
#define MIG_VERSION		2u

#define MIG_SECTION_HDR		8
#define MIG_SECTION_MAX		(4u << 20)
#define MIG_RAM_BATCH_MAX	256u
/* RAM entries: the page address, with the encoding (codec id) in its low bits. */
#define MIG_PAGE_ENC_MASK	0xfffULL
#define MIG_RAM_ENTRY		12u	/* address | encoding (u64), encoded length (u32) */

enum mig_section {
	MIG_SEC_CONFIG = 1,
	MIG_SEC_RAM = 2,
	MIG_SEC_PASS = 3,
	MIG_SEC_STATE = 4,
	MIG_SEC_DIGEST = 5,
	MIG_SEC_END = 6,
	MIG_SEC_SYNC = 7,
	MIG_SEC_DISCARD = 8,		/* post-copy: pages the destination must fetch */
	MIG_SEC_POSTCOPY_RUN = 9,	/* post-copy: start the guest now */
	MIG_SEC_POSTCOPY_DONE = 10,	/* post-copy: every page has been sent */
	MIG_SEC_RESUME = 11,		/* post-copy: a source reconnecting after a break */
	MIG_SEC_RAM_RUN = 12,		/* RAM: consecutive pages with data, one address */
	MIG_SEC_GO = 13,		/* switchover: LOADED heard, start the guest there */
	MIG_SEC_ABORT = 14,		/* switchover: the source runs on; never start it */
	MIG_SEC_SOURCE = 15,		/* a live source other than RAM: source id, its data */
	MIG_SEC_BARRIER = 26,		/* --channels: every page before it is applied (multi.h) */
	/* return path */
	MIG_SEC_READY = 16,
	MIG_SEC_RESULT = 17,
	MIG_SEC_SYNC_ACK = 18,
	MIG_SEC_RUNNING = 19,		/* post-copy: the guest runs at the destination */
	MIG_SEC_PAGE_REQ = 20,		/* post-copy: the guest faulted on this page */
	MIG_SEC_PC_STATS = 21,		/* post-copy: the destination's counters, at the end */
	MIG_SEC_PC_KNOWN = 22,		/* resume: pages the destination holds (bitmap) */
	MIG_SEC_PC_RESUMED = 23,	/* resume: bitmap complete, carry on */
	MIG_SEC_LOADED = 24,		/* switchover: all checked and loaded; waiting for GO */
	MIG_SEC_BLOCK_SUMS = 25,	/* copy-storage=incremental: digests of a disk's chunks */
	MIG_SEC_BLOCK_REQ = 27,		/* post-copy: the guest waits on this disk chunk */
	MIG_SEC_BLOCK_ABSENT = 28,	/* resume: disk chunks the destination still lacks */
	/* Replication (docs/replication.md), after the initial copy's END. */
	MIG_SEC_EPOCH = 29,		/* an epoch begins: its sequence number */
	MIG_SEC_EPOCH_END = 30,		/* it is complete: number, pages, section chain, disk records */
	MIG_SEC_EPOCH_ACK = 31,		/* return path: the standby committed this epoch */
	MIG_SEC_HEARTBEAT = 32,		/* either way: still here */
	MIG_SEC_STANDBY = 33,		/* return path: the standby's failover mode and timeout */
	MIG_SEC_BASE_SUMS = 34,		/* --base: digests of the pages the destination holds */
	MIG_SEC_ANNOUNCED = 35,		/* after GO: the NICs announced here; late frames may end */
	MIG_SEC_EPOCH_DISK = 38,	/* replication: a disk block the guest wrote in the epoch */
};

/*
 * Page encodings: a codec's id on the wire (codec/codec.h has the table).
 * CONFIG and READY carry sets of them as a bitmask (bit = id).
 */
enum mig_codec_id {
	MIG_CODEC_ZERO = 0,	/* an all-zero page: no data */
	MIG_CODEC_RAW = 1,	/* the page's 4096 bytes as they are */
	MIG_CODEC_LZ4 = 2,	/* an LZ4 block that decodes to the page */
	MIG_CODEC_ZSTD = 3,	/* a zstd frame that decodes to the page */
	MIG_CODEC_DELTA = 4,	/* XBZRLE-style runs against the copy last sent */
	MIG_CODEC_NR,
};

/*
 * Live-iterable sources (live.h has the table).  RAM travels in RAM and
 * RAM_RUN sections; every other source in SOURCE sections under its id.
 */
enum mig_source_id {
	MIG_SOURCE_RAM = 0,
	MIG_SOURCE_SCRATCH = 1,	/* tests only: a synthetic 1 MiB region */
	MIG_SOURCE_NET = 2,	/* frames that reached the taps during the switchover */
	MIG_SOURCE_BLOCK = 3,	/* --copy-storage: the disks (block.h) */
	MIG_SOURCE_NR,
};

/*
 * --channels: connections carrying one migration, the main one included.
 * An extra connection opens with a hello (MIG_CHAN_HELLO_LEN bytes: magic,
 * version, the migration's id from CONFIG, its index, the count) and is
 * answered with a RESULT; docs/migration-stream.md, "Channels".
 */
#define MIG_CHANNELS_MAX	16u
#define MIG_CHAN_MAGIC		"FERRYCHN"
#define MIG_CHAN_HELLO_LEN	28u
/*
 * --postcopy-preempt: the index in the hello of the preempt connection,
 * which carries post-copy's requested pages (docs/migration-stream.md,
 * "Post-copy preempt"); not a channel: it never carries a pass's pages.
 */
#define MIG_CHAN_PREEMPT	0xffffffffu

#define MIG_FLAG_VERIFY   0x1u
#define MIG_FLAG_POSTCOPY 0x2u	/* the source may switch to post-copy */
#define MIG_FLAG_REPLICATE 0x4u	/* after END come epochs, to a standby (docs/replication.md) */
#define MIG_DISCARD_MAX_PAGES (1u << 20)	/* bits in one DISCARD section */

#endif
