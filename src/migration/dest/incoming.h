/*
 * The destination side of a migration: accept a connection, check the
 * stream (docs/migration-stream.md) as hostile input, build the machine it
 * describes and fill its RAM and state.  The guest is not started here:
 * the caller starts it and then reports back with mig_incoming_reply().
 */
#ifndef FERRY_MIGRATION_INCOMING_H
#define FERRY_MIGRATION_INCOMING_H

#include <stdint.h>

#include "migration/channel/tls.h"
#include "migration/codec/codec.h"
#include "migration/commit.h"
#include "migration/config.h"
#include "migration/digest.h"
#include "migration/format.h"
#include "migration/dest/postcopy_dest.h"
#include "migration/replicate/epoch.h"
#include "migration/stream.h"
#include "board/machine.h"

struct savefile;

struct mig_incoming_opts {
	const char *uri;		/* tcp:HOST:PORT, unix:PATH or file:PATH */
	const struct mig_tls *tls;	/* --tls-creds: sources must pass TLS (NULL: plain) */
	const char *serial;		/* serial backend for the new machine */
	const struct block_config *disks;	/* --disk: the source's disks, here */
	unsigned nr_disks;
	bool own_disks;			/* --copy-storage: ours, locked now, filled by the stream */
	const struct net_config *nics;	/* --net: the source's NICs, here (new taps) */
	unsigned nr_nics;
	uint64_t max_memory;		/* largest VM accepted (0: what the host has room for) */
	unsigned max_vcpus;		/* (0: ferry's limit) */
	/* What this host offers a guest (--cpu-model; NULL: all KVM has). */
	const struct x86_cpu_model *cpu_model;
	int accept_timeout_ms;		/* -1: wait for a source forever */
	int io_timeout_ms;		/* silence after which the source is dead */
	struct guest_memory *premade;	/* RAM preallocated for exactly this size */
	/*
	 * Post-copy starts the guest before the last page is in: this starts
	 * it, called with userfaultfd armed: activate the devices
	 * (machine_activate), then resume them (machine_devices_resume), then
	 * the control socket and the vCPUs.  The receiving thread calls it;
	 * nothing it takes after the resume may be a lock an I/O thread holds
	 * while touching guest memory (that thread may be waiting on a page
	 * only the receiving thread can bring).  Returns 0 or -errno.
	 */
	int (*start_guest)(void *opaque);
	void *start_opaque;
	int resume_timeout_ms;		/* post-copy: wait this long for a reconnect */
	/*
	 * -1, or an fd that becomes readable when the migration must be
	 * abandoned (ferry run: its signalfd): every wait for the source ends
	 * at once and mig_incoming_receive() fails with -EINTR.
	 */
	int intr_fd;
	/*
	 * ferry run --standby (standby.c): only a replication is accepted,
	 * and after its END the caller runs mig_standby_run() instead of the
	 * commit.  failover_* are the standby's terms.
	 */
	bool standby;
	int failover_mode;		/* enum mig_failover_mode */
	uint64_t failover_ns;
	/*
	 * Tests (ferry run --test-hooks --x-standby-chunks): answer as a
	 * standby that predates MIG_CAP_EPOCH_RANGES, taking whole chunks only.
	 */
	bool standby_chunks;
	/*
	 * --base FILE: an earlier save of this VM, opened and checked (NULL:
	 * none).  Used when the source can and its RAM fits (base.h); read only.
	 */
	struct savefile *base;
};

struct mig_incoming {
	/* --standby: the counter of the primary's last HEARTBEAT, echoed in ours (standby.c). */
	uint64_t standby_echo;
	struct mig_stream s;
	bool connected;
	bool reply_broken;		/* a write to the source failed: no RESULT */
	bool created;			/* the machine exists (CONFIG accepted) */
	struct mig_config cfg;
	struct mig_digest digest;	/* with verify */
	uint8_t *buf;			/* one section's payload */
	unsigned long *written;		/* pages that received data (bit per page) */
	unsigned long *known;		/* pages whose content is here (zero or data) */
	struct pc_dest pc;		/* post-copy, once POSTCOPY_RUN arrived */
	struct machine *m;		/* what it receives into (late SOURCE sections) */
	bool guest_started;		/* post-copy: the guest already runs here */
	bool go_heard;			/* pre-copy: the source's GO came (not the operator's word) */
	uint64_t pc_after_go;		/* post-copy: forwarded frames taken while the guest ran */
	bool state_applied;
	/*
	 * --verify of the device state (incoming_verify.c): the source's
	 * digest (DIGEST), ours of the state read back after the load, and
	 * what differed between what came and what loaded, if anything.
	 */
	bool state_want_set, state_hashed;
	uint64_t state_want, state_here;
	char state_diff[160];
	uint32_t codecs;		/* accepted at CONFIG (bit = codec id) */
	uint8_t *page;			/* one decoded page (codecs that are not verbatim) */
	struct mig_codec_ctx codec;	/* the decoders' state (zstd's context) */
	bool codec_ready;
	uint64_t pages, zero_pages, raw_pages;
	uint32_t pass;
	uint64_t start_ns, end_ns;	/* connection accepted .. END checked */
	/*
	 * --channels (dest/channels.c): connections agreed in READY (the main
	 * one included), the listener kept open until the extra ones are in,
	 * and their receivers.  Main thread only; the receivers' shared state
	 * has its own lock.
	 */
	unsigned nchan;
	struct mig_listener *listener;
	struct mig_chans_in *chans;
	/*
	 * --postcopy-preempt (dest/preempt.c): agreed in READY; the connection
	 * and, from POSTCOPY_RUN, its receiver (main thread only; the receiver's
	 * shared state has its own lock).  `pc_place`: where post-copy places
	 * pages; NULL: `pc` (the receiver's view points at the main one's).
	 */
	bool preempt;
	struct mig_preempt_in *preempt_in;
	/* Standby: READY agreed to epoch disk ranges (MIG_CAP_EPOCH_RANGES). */
	bool epoch_ranges;
	/* --copy-storage: READY agreed to block data through a codec (MIG_CAP_BLOCK_Z). */
	bool block_z;
	struct pc_dest *pc_place;
	/* Each live source's own state while receiving (its load makes it, its unload frees it). */
	void *src_state[MIG_SOURCE_NR];
	/* Standby: the epoch being buffered (RAM sections go there, not into RAM); else NULL. */
	struct mig_epoch *epoch;
	char why[256];			/* reason for a failure */
};

/*
 * Receive a whole migration into *m (created here from the stream's
 * configuration; vCPUs not started).  Returns 0, or -errno with the reason
 * in inc->why (-EINTR: opts->intr_fd became readable); then m holds nothing
 * to free and the guest never ran.
 */
int mig_incoming_receive(struct mig_incoming *inc, const struct mig_incoming_opts *opts,
			 struct machine *m) __attribute__((warn_unused_result));

/*
 * Receive a whole migration into *m.  With post-copy the guest is started
 * (opts->start_guest) in the middle; inc->guest_started says so, and a
 * failure after that point has lost the VM: the caller must stop it.
 */

/*
 * After a pre-copy's END: send LOADED and wait for the source's GO (or
 * ABORT), for the operator's word (migrate-resolve, through c) while in
 * doubt, or for intr_fd (-1: none) to become readable.  Returns 0 when the
 * guest must start here, else -errno with the reason in inc->why: the
 * guest must never start, and the caller says so with mig_incoming_reply().
 * Without a return path (a file) nothing is sent: the GO written after END
 * and then the end of the file are the commit (-ENODATA: no GO, the save
 * did not complete; -EPROTO: anything else).
 */
int mig_incoming_commit(struct mig_incoming *inc, struct mig_commit *c, int intr_fd)
	__attribute__((warn_unused_result));

/*
 * ferry run --standby, after the initial copy's END (state loaded): tell
 * the primary our terms, then buffer, commit and acknowledge epochs,
 * answer heartbeats, and decide when to take over (docs/replication.md).
 * c carries 'ferry failover' (MIG_RESOLVE_RUN while in MIG_COMMIT_STANDBY);
 * intr_fd ends it (-EINTR).  Returns 0 when the guest must resume here,
 * from the last committed checkpoint (loaded into m by then); else
 * -errno with the reason in inc->why (-ECONNABORTED: the primary stood
 * us down; it runs the guest or shut it down), and the guest never ran.
 */
int mig_standby_run(struct mig_incoming *inc, const struct mig_incoming_opts *opts,
		    struct mig_commit *c) __attribute__((warn_unused_result));

/* Let go of the source without a word (a standby taking over from a primary gone). */
void mig_incoming_drop(struct mig_incoming *inc);

/* Tell the source how it ended (status 0: the guest runs here) and close. */
void mig_incoming_reply(struct mig_incoming *inc, int status, const char *msg);
/*
 * Send RESULT status/msg and keep the connection (for the epilogue).
 * Returns 0 or -errno (the source is gone).
 */
int mig_incoming_result(struct mig_incoming *inc, int status, const char *msg)
	__attribute__((warn_unused_result));

/*
 * After GO, RESULT ok sent and the guest running here (incoming_epilogue.c,
 * docs/migration-stream.md "After GO"): take the frames that still reached
 * the source's taps into m's NICs, say ANNOUNCED once every NIC that
 * announces has sent its first round, until the source's END, the
 * connection's end, a section that may not come (refused: logged, the
 * late frames stop) or a bound.  intr_fd readable (a signal) or the
 * guest stopping ends it at once.  Never affects the guest.  Returns the
 * frames taken.
 */
uint64_t mig_incoming_epilogue(struct mig_incoming *inc, struct machine *m, int intr_fd);

#endif
