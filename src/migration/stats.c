#include "migration/stats.h"

#include "migration/live.h"

#include <stdbool.h>
#include <stdio.h>

static const char *const mig_status_names[] = {
	[MIG_STATUS_NONE] = "none",
	[MIG_STATUS_SETUP] = "setup",
	[MIG_STATUS_ACTIVE] = "active",
	[MIG_STATUS_DEVICE] = "device",
	[MIG_STATUS_POSTCOPY] = "postcopy-active",
	[MIG_STATUS_POSTCOPY_PAUSED] = "postcopy-paused",
	[MIG_STATUS_COMPLETED] = "completed",
	[MIG_STATUS_FAILED] = "failed",
	[MIG_STATUS_CANCELLED] = "cancelled",
	[MIG_STATUS_IN_DOUBT] = "in-doubt",
	[MIG_STATUS_ABANDONED] = "abandoned",
	[MIG_STATUS_REPLICATING] = "replicating",
	[MIG_STATUS_FENCED] = "fenced",
};

static const char *const mig_phase_names[] = {
	[MIG_PHASE_PAUSE] = "pause",
	[MIG_PHASE_FINAL_SYNC] = "final-sync",
	[MIG_PHASE_FINAL_PAGES] = "final-pages",
	[MIG_PHASE_DEVICE_STATE] = "device-state",
	[MIG_PHASE_COMMIT] = "commit",
	[MIG_PHASE_RESUME] = "resume",
};

const char *mig_status_name(enum mig_status s)
{
	return mig_status_names[s];
}

static void mig_json_u64(json_object *o, const char *key, uint64_t v)
{
	json_object_object_add(o, key, json_object_new_int64((int64_t)v));
}

static double mig_ms(uint64_t ns)
{
	return (double)ns / 1e6;
}

static json_object *mig_postcopy_json(const struct mig_stats *st, uint64_t end)
{
	json_object *o = json_object_new_object();

	mig_json_u64(o, "pages-owed", st->pc_pages_owed);
	mig_json_u64(o, "resumes", st->pc_resumes);
	mig_json_u64(o, "requests", st->pc_requests);
	mig_json_u64(o, "pages-requested", st->pc_pages_requested);
	mig_json_u64(o, "pages-pushed", st->pc_pages_pushed);
	mig_json_u64(o, "pages-first", st->pc_pages_first);
	mig_json_u64(o, "disk-chunks-owed", st->pc_block_chunks_owed);
	mig_json_u64(o, "disk-chunk-requests", st->pc_block_requests);
	mig_json_u64(o, "faults", st->pc_faults);
	mig_json_u64(o, "faults-resolved-locally", st->pc_zero_local);
	mig_json_u64(o, "fault-latency-p50-us", st->pc_latency_p50_us);
	mig_json_u64(o, "fault-latency-p99-us", st->pc_latency_p99_us);
	json_object_object_add(o, "vcpu-blocked-ms",
			       json_object_new_double((double)st->pc_blocked_us / 1000.0));
	json_object_object_add(o, "last-page-ms",
			       json_object_new_double((double)st->pc_last_page_us / 1000.0));
	if (st->pc_start_ns)
		json_object_object_add(o, "postcopy-time-ms",
				       json_object_new_double(mig_ms(end - st->pc_start_ns)));
	return o;
}

void mig_stats_note_pending(struct mig_stats *st, const uint64_t pending[MIG_SOURCE_NR],
			    uint64_t total)
{
	for (unsigned id = 0; id < MIG_SOURCE_NR; id++) {
		st->source_pending[id] = pending[id];
		if (pending[id] > st->source_peak[id])
			st->source_peak[id] = pending[id];
	}
	st->pending_total = total;
}

/*
 * sources.block: the codec block data goes through ("none" without
 * DATA_Z) and, per way a range went (zero, raw, lz4, zstd), its records,
 * bytes read and bytes of data sent, and the encoding's time.
 */
static void mig_block_stats_json(json_object *e, const struct mig_stats *st)
{
	json_object *c = json_object_new_object();
	const struct mig_codec *z = st->block_z_codec ? mig_codec_get(st->block_z_codec) : NULL;

	json_object_object_add(e, "codec", json_object_new_string(z ? z->name : "none"));
	for (unsigned id = 0; id < MIG_CODEC_NR; id++) {
		const struct mig_codec_stats *b = &st->block_codec[id];
		if (!b->pages && !b->cpu_ns)
			continue;
		json_object *r = json_object_new_object();
		mig_json_u64(r, "records", b->pages);
		mig_json_u64(r, "bytes-in", b->bytes_in);
		mig_json_u64(r, "bytes-out", b->bytes_out);
		json_object_object_add(r, "cpu-ms", json_object_new_double(mig_ms(b->cpu_ns)));
		json_object_object_add(c, mig_codec_get(id)->name, r);
	}
	json_object_object_add(e, "codecs", c);
	mig_json_u64(e, "codec-gave-up", st->block_z_gave_up);
}

/* "sources": each live source that did anything, by name. */
static json_object *mig_sources_json(const struct mig_stats *st)
{
	json_object *o = json_object_new_object();

	for (unsigned id = 0; id < MIG_SOURCE_NR; id++) {
		if (id != MIG_SOURCE_RAM && !st->source_sent[id] && !st->source_peak[id])
			continue;
		json_object *e = json_object_new_object();
		mig_json_u64(e, "pending-bytes", st->source_pending[id]);
		mig_json_u64(e, "peak-pending-bytes", st->source_peak[id]);
		mig_json_u64(e, "sent-bytes", st->source_sent[id]);
		if (id == MIG_SOURCE_BLOCK)
			mig_block_stats_json(e, st);
		json_object_object_add(o, mig_source_get(id)->name, e);
	}
	return o;
}

/* ferry replicate: the epochs (docs/api.md, query-migrate). */
static json_object *mig_replication_json(const struct mig_stats *st)
{
	json_object *o = json_object_new_object();

	mig_json_u64(o, "epochs", st->epochs);
	mig_json_u64(o, "epochs-acked", st->epochs_acked);
	json_object_object_add(o, "epoch-pause-ms", json_object_new_double(mig_ms(st->epoch_pause_last_ns)));
	json_object_object_add(o, "epoch-pause-max-ms", json_object_new_double(mig_ms(st->epoch_pause_max_ns)));
	json_object_object_add(o, "epoch-pause-avg-ms", json_object_new_double(
		st->epochs ? mig_ms(st->epoch_pause_total_ns / st->epochs) : 0));
	mig_json_u64(o, "epoch-bytes", st->epoch_bytes_last);
	mig_json_u64(o, "epoch-bytes-avg", st->epochs ? st->epoch_bytes_total / st->epochs : 0);
	mig_json_u64(o, "epoch-bytes-total", st->epoch_bytes_total);
	mig_json_u64(o, "epoch-disk-bytes", st->epoch_disk_bytes_last);
	mig_json_u64(o, "epoch-disk-bytes-total", st->epoch_disk_bytes_total);
	mig_json_u64(o, "epoch-disk-chunk-bytes-total", st->epoch_disk_chunk_bytes_total);
	json_object_object_add(o, "epoch-disk-ranges",
			       json_object_new_boolean(st->epoch_disk_ranges));
	json_object_object_add(o, "standby-failover", json_object_new_string(
		st->standby_manual ? "manual" : "auto"));
	json_object_object_add(o, "standby-failover-timeout-ms",
			       json_object_new_double(mig_ms(st->standby_failover_ns)));
	json_object_object_add(o, "fence-timeout-ms", json_object_new_double(mig_ms(st->fence_ns)));
	return o;
}

json_object *mig_stats_to_json(const struct mig_stats *st, uint64_t now_ns)
{
	json_object *o = json_object_new_object(), *ph = json_object_new_object();
	uint64_t end = st->end_ns ? st->end_ns : now_ns;
	bool done = st->status >= MIG_STATUS_COMPLETED && st->status != MIG_STATUS_REPLICATING;

	json_object_object_add(o, "status", json_object_new_string(mig_status_name(st->status)));
	if (st->error[0])
		json_object_object_add(o, "error", json_object_new_string(st->error));
	if (st->status == MIG_STATUS_NONE)
		return json_object_put(ph), o;
	json_object_object_add(o, "total-time-ms", json_object_new_double(mig_ms(end - st->start_ns)));
	json_object_object_add(o, "setup-time-ms", json_object_new_double(mig_ms(st->setup_ns)));
	mig_json_u64(o, "data-total", st->mem_total + st->state_bytes);
	mig_json_u64(o, "data-processed", st->wire_bytes);
	mig_json_u64(o, "data-remaining", done ? 0 : st->mem_remaining);
	mig_json_u64(o, "memory-total", st->mem_total);
	mig_json_u64(o, "memory-processed", st->mem_processed);
	mig_json_u64(o, "memory-remaining", done ? 0 : st->mem_remaining);
	mig_json_u64(o, "zero-pages", st->zero_pages);
	mig_json_u64(o, "normal-pages", st->normal_pages);
	mig_json_u64(o, "normal-bytes", st->normal_bytes);
	mig_json_u64(o, "pages-resent", st->pages_resent);
	mig_json_u64(o, "pages-deferred", st->pages_deferred);
	mig_json_u64(o, "base-pages", st->base_pages);
	mig_json_u64(o, "device-state-bytes", st->state_bytes);
	mig_json_u64(o, "pages-per-second", st->pages_per_sec);
	mig_json_u64(o, "throughput-bytes-per-second", st->throughput);
	mig_json_u64(o, "dirty-pages-rate", st->dirty_rate);
	mig_json_u64(o, "iteration", st->iteration);
	json_object_object_add(o, "expected-downtime-ms",
			       json_object_new_double(mig_ms(st->expected_downtime_ns)));
	json_object_object_add(o, "downtime-ms", json_object_new_double(mig_ms(st->downtime_ns)));
	for (int i = 0; i < MIG_PHASE_COUNT; i++)
		json_object_object_add(ph, mig_phase_names[i],
				       json_object_new_double(mig_ms(st->phase_ns[i])));
	json_object_object_add(o, "downtime-phases-ms", ph);
	mig_json_u64(o, "throttle-percentage", st->throttle_pct);
	mig_json_u64(o, "bandwidth-limit", st->bandwidth_limit);
	mig_json_u64(o, "pending-bytes", st->pending_total);
	json_object_object_add(o, "sources", mig_sources_json(st));
	if (st->disk_total) {
		mig_json_u64(o, "disk-total", st->disk_total);
		mig_json_u64(o, "disk-processed", st->disk_processed);
		mig_json_u64(o, "disk-remaining", done ? 0 : st->source_pending[MIG_SOURCE_BLOCK]);
	}
	mig_json_u64(o, "net-frames-forwarded", st->net_frames_forwarded);
	mig_json_u64(o, "net-bytes-forwarded", st->net_bytes_forwarded);
	mig_json_u64(o, "net-frames-dropped", st->net_frames_dropped);
	mig_json_u64(o, "net-frames-after-go", st->net_frames_after_go);
	mig_json_u64(o, "net-bytes-after-go", st->net_bytes_after_go);
	json_object_object_add(o, "verify", json_object_new_boolean(st->verify));
	json_object_object_add(o, "compress", json_object_new_string(mig_compress_name(st->compress)));
	json_object_object_add(o, "order", json_object_new_string(mig_order_name(st->order)));
	char names[128];
	mig_codec_names(st->codecs, names, sizeof(names));
	json_object_object_add(o, "codecs-negotiated", json_object_new_string(names));
	json_object_object_add(o, "codecs", mig_codec_stats_json(st->codec, &st->delta,
								 st->codec_gave_up));
	json_object *chans = json_object_new_array();
	for (unsigned i = 0; i < (st->nr_channels ? st->nr_channels : 1) && i < MIG_CHANNELS_MAX; i++) {
		json_object *c = json_object_new_object();
		mig_json_u64(c, "bytes", i || st->nr_channels > 1 ? st->channel_bytes[i] : st->wire_bytes);
		json_object_array_add(chans, c);
	}
	json_object_object_add(o, "channels", chans);
	if (st->preempt_asked) {
		/* Top-level scalars, so that the stats file has them as columns. */
		json_object_object_add(o, "postcopy-preempt", json_object_new_boolean(st->preempt_on));
		mig_json_u64(o, "preempt-requests", st->preempt_requests);
		mig_json_u64(o, "preempt-pages", st->preempt_pages);
		mig_json_u64(o, "preempt-bytes", st->preempt_bytes);
		json_object_object_add(o, "preempt-latency-avg-us", json_object_new_double(
			st->preempt_pages ? (double)st->preempt_lat_sum_ns / 1e3 / (double)st->preempt_pages
					  : 0));
		json_object_object_add(o, "preempt-latency-max-us",
				       json_object_new_double((double)st->preempt_lat_max_ns / 1e3));
	}
	if (st->postcopy)
		json_object_object_add(o, "postcopy", mig_postcopy_json(st, end));
	if (st->lost)
		json_object_object_add(o, "vm-lost", json_object_new_boolean(1));
	if (st->replicating)
		json_object_object_add(o, "replication", mig_replication_json(st));
	if (st->verify && st->status == MIG_STATUS_COMPLETED) {
		char hex[24];
		snprintf(hex, sizeof(hex), "%016llx", (unsigned long long)st->digest);
		json_object_object_add(o, "ram-digest", json_object_new_string(hex));
		snprintf(hex, sizeof(hex), "%016llx", (unsigned long long)st->state_digest);
		json_object_object_add(o, "state-digest", json_object_new_string(hex));
	}
	return o;
}
