/*
 * Statistics of a migration, as `virsh domjobinfo` reports them, plus the
 * downtime split into phases.  docs/api.md (query-migrate) names each key.
 */
#ifndef FERRY_MIGRATION_STATS_H
#define FERRY_MIGRATION_STATS_H

#include <json-c/json.h>
#include <stdint.h>

#include "migration/format.h"
#include "migration/codec/codec.h"
#include "migration/ram_order.h"

enum mig_status {
	MIG_STATUS_NONE,
	MIG_STATUS_SETUP,	/* connecting, handshake */
	MIG_STATUS_ACTIVE,	/* live pre-copy passes */
	MIG_STATUS_DEVICE,	/* vCPUs paused: final pages and state */
	MIG_STATUS_POSTCOPY,	/* the guest runs at the destination; pages follow */
	MIG_STATUS_POSTCOPY_PAUSED,	/* post-copy lost its connection; waiting to resume */
	MIG_STATUS_COMPLETED,
	MIG_STATUS_FAILED,
	MIG_STATUS_CANCELLED,
	MIG_STATUS_IN_DOUBT,	/* GO sent, no answer: paused until it comes or migrate-resolve */
	MIG_STATUS_ABANDONED,	/* in doubt, the operator discarded this copy */
	MIG_STATUS_REPLICATING,	/* replicate: epochs go to the standby */
	MIG_STATUS_FENCED,	/* replicate: the standby went silent; the guest stays paused */
};

enum mig_phase {
	MIG_PHASE_PAUSE,	/* stopping the vCPUs */
	MIG_PHASE_FINAL_SYNC,	/* last dirty-log sync */
	MIG_PHASE_FINAL_PAGES,	/* sending what was still dirty */
	MIG_PHASE_DEVICE_STATE,	/* saving and sending CPU/device state */
	MIG_PHASE_COMMIT,	/* END sent until LOADED: the destination loads and checks */
	MIG_PHASE_RESUME,	/* GO sent until the destination says its guest runs */
	MIG_PHASE_COUNT,
};

struct mig_stats {
	enum mig_status status;
	char error[256];
	uint64_t start_ns, end_ns;
	uint64_t setup_ns;
	uint64_t wire_bytes;		/* everything sent, headers included */
	uint64_t mem_total;		/* guest RAM bytes */
	uint64_t mem_processed;		/* RAM bytes handled (zero pages count) */
	uint64_t mem_remaining;		/* RAM bytes dirty and not yet sent */
	uint64_t zero_pages;
	uint64_t normal_pages;		/* pages sent with their data */
	uint64_t normal_bytes;
	uint64_t pages_resent;		/* pages sent again (sent before, in any pass or phase) */
	uint64_t pages_deferred;	/* --order rewrite: pages left by passes ended early */
	uint64_t base_pages;		/* pages the destination's base held already: not sent */
	uint64_t state_bytes;		/* device state record size */
	uint64_t pages_per_sec;
	uint64_t throughput;		/* bytes/s on the wire, recent */
	uint64_t dirty_rate;		/* pages/s dirtied, last pass */
	uint32_t iteration;		/* current pass, 1-based */
	uint64_t expected_downtime_ns;
	uint64_t downtime_ns;
	uint64_t phase_ns[MIG_PHASE_COUNT];
	uint32_t throttle_pct;
	uint64_t bandwidth_limit;	/* live-phase cap now (p.bandwidth), bytes/s; 0 = none */
	uint64_t digest;		/* with verify: RAM digest both sides agreed on */
	uint64_t state_digest;		/* with verify: the device state's (DIGEST) */
	/*
	 * Per live source (live.h), by id: the bytes it reported to the last
	 * convergence decision, the most it ever reported to one, and the
	 * bytes of its sections on the wire.  pending_total: what the policy
	 * summed at the last decision.
	 */
	uint64_t source_pending[MIG_SOURCE_NR];
	uint64_t source_peak[MIG_SOURCE_NR];
	uint64_t source_sent[MIG_SOURCE_NR];
	uint64_t pending_total;
	/* copy-storage: the disks' bytes, and of them sent as data or zeros (re-sent count again). */
	uint64_t disk_total, disk_processed;
	/*
	 * copy-storage: the ranges read and sent, by how they went (zero:
	 * ZERO, raw: DATA, lz4 or zstd: DATA_Z; `pages` counts records), the
	 * codec blocks go through (0: none) and the ranges it did not shrink
	 * enough (sent as DATA; their encoding time is the codec's).
	 */
	struct mig_codec_stats block_codec[MIG_CODEC_NR];
	uint8_t block_z_codec;
	uint64_t block_z_gave_up;
	/* Frames taken from the taps at the switchover and forwarded, or over the cap. */
	uint64_t net_frames_forwarded, net_bytes_forwarded, net_frames_dropped;
	/* Of those forwarded, the ones sent after GO (the epilogue, source/epilogue.c). */
	uint64_t net_frames_after_go, net_bytes_after_go;

	/* Page encoding: the mode, the codecs agreed, what each did (codec.h). */
	enum mig_compress compress;
	enum mig_order order;
	uint32_t codecs;
	struct mig_codec_stats codec[MIG_CODEC_NR];
	struct mig_delta_stats delta;
	uint64_t codec_gave_up;

	/*
	 * --channels: connections in use (0 before the handshake: one), and
	 * the bytes each carried (0: the main stream, everything on it).
	 */
	uint32_t nr_channels;
	uint64_t channel_bytes[MIG_CHANNELS_MAX];

	/* Post-copy (pc_*): the source's counts and the destination's view. */
	int postcopy;
	int lost;			/* failed after post-copy began: the VM is gone */
	uint64_t pc_start_ns;		/* the guest started at the destination */
	uint64_t pc_pages_owed;		/* pages still to send at the switch */
	uint64_t pc_requests;		/* page requests served */
	uint64_t pc_pages_requested;	/* pages sent for requests (with prepaging) */
	uint64_t pc_pages_pushed;	/* pages sent by the background push */
	uint64_t pc_pages_first;	/* the vCPUs' first pages, sent before DISCARD */
	uint64_t pc_block_chunks_owed;	/* --copy-storage: disk chunks left at the switch */
	uint64_t pc_block_requests;	/* disk chunks the destination's guest waited on */
	uint64_t pc_faults;		/* faults the destination saw */
	uint64_t pc_zero_local;		/* faults it resolved itself (known zero) */
	uint64_t pc_latency_p50_us, pc_latency_p99_us;	/* fault to page placed */
	uint64_t pc_blocked_us;		/* vCPU time spent waiting for pages */
	uint64_t pc_last_page_us;	/* from guest start to the last page */
	uint32_t pc_resumes;		/* reconnections after a broken connection */
	/*
	 * --postcopy-preempt (preempt.h): asked for; the connection agreed
	 * and opened; requests read on it, pages sent on it for them, and the
	 * time from a request read to its page handed to the kernel.
	 */
	int preempt_asked, preempt_on;
	uint64_t preempt_requests, preempt_pages, preempt_bytes;
	uint64_t preempt_lat_sum_ns, preempt_lat_max_ns;
	int verify;

	/*
	 * Replication (replicate.c): epochs sent and acknowledged, the guest's
	 * pause per epoch (last, longest, sum), the bytes per epoch (last,
	 * sum), the disk bytes per epoch (last, sum: what the guest wrote,
	 * zeroed ranges included; and what whole chunks around the same
	 * writes would have been), the standby's terms and the fence timeout
	 * chosen from them.
	 */
	int replicating;
	uint64_t epochs, epochs_acked;
	uint64_t epoch_pause_last_ns, epoch_pause_max_ns, epoch_pause_total_ns;
	uint64_t epoch_bytes_last, epoch_bytes_total;
	uint64_t epoch_disk_bytes_last, epoch_disk_bytes_total;
	uint64_t epoch_disk_chunk_bytes_total;	/* the same writes as whole chunks */
	uint64_t standby_failover_ns, fence_ns;
	int standby_manual;
	int epoch_disk_ranges;			/* the standby takes 4 KiB ranges */
};

const char *mig_status_name(enum mig_status s);

/* Record what every source reported to a decision, and the policy's sum. */
void mig_stats_note_pending(struct mig_stats *st, const uint64_t pending[MIG_SOURCE_NR],
			    uint64_t total);

/* The stats as a JSON object (the reply of query-migrate). */
json_object *mig_stats_to_json(const struct mig_stats *st, uint64_t now_ns);

#endif
