/*
 * --channels N: one migration over N connections (docs/migration-stream.md,
 * "Channels").  The main connection carries the stream as ever; N - 1
 * extra connections, opened once READY has agreed on N, carry RAM and
 * RAM_RUN sections only, each written by a thread of its own on the source
 * and read by a thread of its own on the destination.
 *
 * Ordering by pass barriers: at the end of every pass the source writes a
 * BARRIER (sequence, final) on every extra connection and then on the main
 * one.  A destination thread that reads BARRIER k has applied every page
 * before it, and waits until the main thread, at its own BARRIER k, has
 * seen every connection reach k: only then does any thread apply a page
 * of the next pass.  So a page re-sent in pass k + 1 can never be
 * overtaken by its copy of pass k on another connection.  The final
 * BARRIER (before STATE, and before post-copy's DISCARD) ends the extra
 * connections: everything after it travels on the main one.
 *
 *   chan_hello.c       the hello and BARRIER payloads (pure: parsing)
 *   source/channels.c  the source: connect, senders, barriers
 *   dest/channels.c    the destination: accept, receivers, barriers
 */
#ifndef FERRY_MIGRATION_MULTI_H
#define FERRY_MIGRATION_MULTI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "migration/format.h"

/* What an extra connection says first (MIG_CHAN_HELLO_LEN bytes). */
struct mig_chan_hello {
	uint64_t id;		/* the migration's, from CONFIG */
	uint32_t index;		/* 1..count-1: the main connection is 0 */
	uint32_t count;		/* connections agreed in READY */
};

void mig_chan_hello_encode(uint8_t out[MIG_CHAN_HELLO_LEN], const struct mig_chan_hello *h);

/* `taken`'s bit for the preempt connection (index MIG_CHAN_PREEMPT). */
#define MIG_CHAN_TAKEN_PREEMPT (1u << 31)

/*
 * Check a hello that arrived (len bytes, hostile) against this migration:
 * its id, its count, and `taken`, the indexes already connected (bit =
 * index; MIG_CHAN_TAKEN_PREEMPT for the preempt connection).  Index
 * MIG_CHAN_PREEMPT is accepted only when `preempt` (READY agreed on a
 * preempt connection).  Returns 0 with *h filled, or -EPROTO with the
 * reason in why.
 */
int mig_chan_hello_check(const uint8_t *p, size_t len, uint64_t id, uint32_t count,
			 uint32_t taken, bool preempt, struct mig_chan_hello *h, char *why,
			 size_t whylen) __attribute__((warn_unused_result));

/* BARRIER's payload: sequence (u32), final (u8). */
#define MIG_CHAN_BARRIER_LEN 5u
void mig_chan_barrier_encode(uint8_t out[MIG_CHAN_BARRIER_LEN], uint32_t seq, bool final);
/* 0, or -EPROTO for a length other than 5 or a final flag other than 0/1. */
int mig_chan_barrier_parse(const uint8_t *p, uint32_t len, uint32_t *seq, bool *final)
	__attribute__((warn_unused_result));

/* A random migration id (never 0). */
uint64_t mig_chan_new_id(void);

/* READY's payload with channels: codecs (u32), then connections agreed (u32). */
#define MIG_READY_LEN 4u
#define MIG_READY_CHANNELS_LEN 8u

/* The source's side (source/channels.c). ------------------------------- */

struct migration;
struct mig_stream;
struct mig_chan_out;

/* Migration thread only. */
struct mig_chans_src {
	uint64_t id;		/* the migration's, in CONFIG and every hello */
	unsigned n;		/* connections in use, the main one included (0, 1: one) */
	unsigned next;		/* round robin: the connection for the next RAM section */
	bool open;		/* extra connections up, their final BARRIER not sent */
	/* A RAM section being built for extra connection `stage_to` (-1: none). */
	int stage_to;
	struct mig_stream *stage;
	uint64_t staged;	/* bytes handed to the extra connections, all of them */
	uint64_t bytes[MIG_CHANNELS_MAX];	/* ... to each (index 0: unused) */
	struct mig_chan_out *out[MIG_CHANNELS_MAX];	/* index 1..n-1 */
};

/*
 * After READY agreed on n connections: open the extra ones to the same
 * URI (with the migration's TLS settings), say hello, hear each accepted
 * and start their senders.  0 or -errno with the reason in the stats.
 */
int mig_chans_src_open(struct migration *mig, unsigned n) __attribute__((warn_unused_result));
/*
 * Connect one more connection to the migration's URI (its TLS settings),
 * into s, say hello as `index` (of mig->chans.n connections) and hear it
 * accepted.  0 or -errno with the reason in why; s is then the caller's
 * to destroy either way (if it was made).
 */
int mig_chan_dial(struct migration *mig, struct mig_stream *s, uint32_t index, char *why,
		  size_t len) __attribute__((warn_unused_result));
/*
 * The stream a RAM section of `len` bytes (header and checksum included)
 * goes to: the main stream, or a buffer bound for the next extra
 * connection.  Call mig_chans_ram_end() with it once the section is whole.
 */
struct mig_stream *mig_chans_ram_begin(struct migration *mig, uint32_t len);
void mig_chans_ram_end(struct migration *mig, struct mig_stream *out);
/*
 * The pass barrier: BARRIER(seq, final) on every extra connection, then on
 * the main one, flushed.  Final: the extra connections drain, end and
 * close.  Nothing without extra connections.  0 or the stream's error.
 */
int mig_chans_barrier(struct migration *mig, uint32_t seq, bool final)
	__attribute__((warn_unused_result));
/* Each connection's bytes into st (caller holds mig->lock). */
struct mig_stats;
void mig_chans_stats(const struct migration *mig, struct mig_stats *st);
/* Bytes sent so far, every connection. */
uint64_t mig_bytes_out(const struct migration *mig);
/*
 * Of those, the bytes the destination has not taken yet (the migration
 * thread): in the main stream and its socket, and on each extra
 * connection, queued for its sender (the buffer it is writing counted
 * whole) or in its socket.  What a switchover would still wait for.
 */
uint64_t mig_bytes_unsent(struct migration *mig);
/* Cut and close every extra connection (any state: failure, cancel). */
void mig_chans_src_close(struct migration *mig);

/* The destination's side (dest/channels.c). ---------------------------- */

struct mig_incoming;
struct mig_incoming_opts;
struct mig_listener;
struct mig_chans_in;

/*
 * After READY agreed on inc->nchan connections: accept the extra ones on
 * l (refusing, without harm to the migration, any with a wrong id, a
 * taken or bad index, or no hello in time) and start their receivers.
 * 0 or -errno with the reason in inc->why.
 */
int mig_chans_in_accept(struct mig_incoming *inc, const struct mig_incoming_opts *opts,
			struct mig_listener *l) __attribute__((warn_unused_result));
/*
 * BARRIER on the main stream: wait until every extra connection applied
 * every page before its own BARRIER seq, then let them go on (final: they
 * end).  0 or -errno with the reason in inc->why.
 */
int mig_chans_in_barrier(struct mig_incoming *inc, uint32_t seq, bool final)
	__attribute__((warn_unused_result));
/* Have the extra connections ended (or were there none)? */
bool mig_chans_in_done(const struct mig_incoming *inc);
/*
 * The main stream failed with err: if a receiver failed first (and cut the
 * main stream's reading side to say so), its reason and error instead.
 */
int mig_chans_in_reason(struct mig_incoming *inc, int err);
/* Stop and free every receiver (any state). */
void mig_chans_in_stop(struct mig_incoming *inc);

#endif
