/* The table of live-iterable sources (live.h) and the loops over it. */
#include "migration/live.h"

#include <errno.h>

#include "migration/migration.h"
#include "migration/section.h"

static const struct mig_source_ops *const mig_sources[MIG_SOURCE_NR] = {
	[MIG_SOURCE_RAM] = &mig_ram_source,
	[MIG_SOURCE_SCRATCH] = &mig_scratch_source,
	[MIG_SOURCE_NET] = &mig_net_source,
	[MIG_SOURCE_BLOCK] = &mig_block_source,
};

const struct mig_source_ops *mig_source_get(unsigned id)
{
	return id < MIG_SOURCE_NR ? mig_sources[id] : NULL;
}

int mig_sources_setup(struct migration *mig)
{
	for (unsigned id = 0; id < MIG_SOURCE_NR; id++) {
		const struct mig_source_ops *o = mig_sources[id];
		mig->src_active[id] = !o->active || o->active(mig);
		if (!mig->src_active[id] || !o->setup)
			continue;
		int err = o->setup(mig);
		if (err)
			return err;
	}
	return 0;
}

int mig_sources_handshake(struct migration *mig)
{
	for (unsigned id = 0; id < MIG_SOURCE_NR; id++) {
		const struct mig_source_ops *o = mig_sources[id];
		int err = mig->src_active[id] && o->handshake ? o->handshake(mig) : 0;
		if (err)
			return err;
	}
	return 0;
}

void mig_sources_cleanup(struct migration *mig)
{
	/* Every source, active or not: a setup that failed half-way left things. */
	for (unsigned id = 0; id < MIG_SOURCE_NR; id++) {
		if (mig_sources[id]->cleanup)
			mig_sources[id]->cleanup(mig);
		mig->src_active[id] = false;
	}
}

int mig_sources_sync(struct migration *mig, uint64_t pending[MIG_SOURCE_NR])
{
	for (unsigned id = 0; id < MIG_SOURCE_NR; id++) {
		pending[id] = 0;
		if (!mig->src_active[id])
			continue;
		int64_t n = mig_sources[id]->sync(mig);
		if (n < 0)
			return (int)n;
		pending[id] = (uint64_t)n;
	}
	return 0;
}

void mig_sources_peek(struct migration *mig, uint64_t pending[MIG_SOURCE_NR])
{
	for (unsigned id = 0; id < MIG_SOURCE_NR; id++) {
		int64_t n = mig->src_active[id] && mig_sources[id]->peek ?
			    mig_sources[id]->peek(mig) : 0;
		pending[id] = n > 0 ? (uint64_t)n : 0;
	}
}

uint64_t mig_sources_left_over(struct migration *mig)
{
	uint64_t sum = 0;

	for (unsigned id = 0; id < MIG_SOURCE_NR; id++)
		if (mig->src_active[id] && mig_sources[id]->left_over)
			sum += mig_sources[id]->left_over(mig);
	return sum;
}

int mig_sources_iterate(struct migration *mig, bool resend)
{
	for (unsigned id = 0; id < MIG_SOURCE_NR; id++) {
		if (!mig->src_active[id])
			continue;
		int err = mig_sources[id]->iterate(mig, resend);
		if (err)
			return err;
	}
	return 0;
}

int mig_sources_complete(struct migration *mig, bool resend, bool postcopy)
{
	for (unsigned id = 0; id < MIG_SOURCE_NR; id++) {
		const struct mig_source_ops *o = mig_sources[id];
		if (!mig->src_active[id] || (postcopy && o->postcopy))
			continue;
		/* At the post-copy switch RAM was synced alone: the others sync here. */
		int64_t n = postcopy ? o->sync(mig) : 0;
		int err = n < 0 ? (int)n : o->complete(mig, resend);
		if (err)
			return err;
	}
	return 0;
}

int mig_sources_service(struct migration *mig)
{
	for (unsigned id = 0; id < MIG_SOURCE_NR; id++) {
		if (!mig->src_active[id] || !mig_sources[id]->service)
			continue;
		int err = mig_sources[id]->service(mig);
		if (err)
			return err;
	}
	return 0;
}

void mig_sources_release(struct migration *mig)
{
	for (unsigned id = 0; id < MIG_SOURCE_NR; id++)
		if (mig->src_active[id] && mig_sources[id]->release)
			mig_sources[id]->release(mig);
}

int mig_sources_pc_switch(struct migration *mig)
{
	for (unsigned id = 0; id < MIG_SOURCE_NR; id++) {
		const struct mig_source_ops *o = mig_sources[id];
		int err = mig->src_active[id] && o->postcopy && o->pc_switch ? o->pc_switch(mig) : 0;
		if (err)
			return err;
	}
	return 0;
}

int mig_sources_pc_push(struct migration *mig, uint64_t budget, bool *done)
{
	*done = true;
	for (unsigned id = 0; id < MIG_SOURCE_NR; id++) {
		const struct mig_source_ops *o = mig_sources[id];
		bool d = true;
		int err = mig->src_active[id] && o->pc_push ? o->pc_push(mig, budget, &d) : 0;
		if (err)
			return err;
		*done &= d;
	}
	return 0;
}

int mig_sources_pc_request(struct migration *mig, uint8_t type, const uint8_t *p, uint32_t len)
{
	for (unsigned id = 0; id < MIG_SOURCE_NR; id++) {
		const struct mig_source_ops *o = mig_sources[id];
		if (!mig->src_active[id] || !o->pc_request)
			continue;
		int err = o->pc_request(mig, type, p, len);
		if (err != -ENOENT)
			return err;
	}
	return -ENOENT;
}

void mig_sources_pc_resume_begin(struct migration *mig)
{
	for (unsigned id = 0; id < MIG_SOURCE_NR; id++)
		if (mig->src_active[id] && mig_sources[id]->pc_resume_begin)
			mig_sources[id]->pc_resume_begin(mig);
}

int mig_sources_pc_report(struct mig_incoming *inc, struct mig_stream *s)
{
	for (unsigned id = 0; id < MIG_SOURCE_NR; id++) {
		int err = mig_sources[id]->pc_report ? mig_sources[id]->pc_report(inc, s) : 0;
		if (err)
			return err;
	}
	return 0;
}

void mig_sources_pc_resumed(struct mig_incoming *inc)
{
	for (unsigned id = 0; id < MIG_SOURCE_NR; id++)
		if (mig_sources[id]->pc_resumed)
			mig_sources[id]->pc_resumed(inc);
}

int mig_sources_late(struct migration *mig)
{
	for (unsigned id = 0; id < MIG_SOURCE_NR; id++) {
		if (!mig->src_active[id] || !mig_sources[id]->late)
			continue;
		int err = mig_sources[id]->late(mig);
		if (err)
			return err;
	}
	/* Sent before GO is written, so that a failure here is known not to have sent GO. */
	return mig_stream_flush(&mig->s);
}

bool mig_sources_have_after_go(const struct migration *mig)
{
	for (unsigned id = 0; id < MIG_SOURCE_NR; id++)
		if (mig->src_active[id] && mig_sources[id]->after_go)
			return true;
	return false;
}

int mig_sources_after_go(struct migration *mig)
{
	for (unsigned id = 0; id < MIG_SOURCE_NR; id++) {
		if (!mig->src_active[id] || !mig_sources[id]->after_go)
			continue;
		int err = mig_sources[id]->after_go(mig);
		if (err)
			return err;
	}
	return mig_stream_flush(&mig->s);
}

void mig_sources_unload(struct mig_incoming *inc)
{
	for (unsigned id = 0; id < MIG_SOURCE_NR; id++)
		if (mig_sources[id]->unload)
			mig_sources[id]->unload(inc);
}

int mig_sources_loaded(struct mig_in_ctx *c)
{
	for (unsigned id = 0; id < MIG_SOURCE_NR; id++) {
		int err = mig_sources[id]->loaded ? mig_sources[id]->loaded(c) : 0;
		if (err)
			return err;
	}
	return 0;
}

int mig_source_section_begin(struct mig_section_writer *w, struct mig_stream *s,
			     enum mig_source_id id, uint32_t len)
{
	if (mig_section_begin(w, s, MIG_SEC_SOURCE, 4 + len)) {
		mig_stream_fail(s, -ENOMEM, "out of memory");
		return -ENOMEM;
	}
	mig_section_put_u32(w, id);
	return 0;
}

void mig_source_account(struct migration *mig, enum mig_source_id id, uint64_t bytes)
{
	pthread_mutex_lock(&mig->lock);
	mig->stats.source_sent[id] += bytes;
	mig->stats.wire_bytes = mig_bytes_out(mig);	/* live, while a source other than RAM sends */
	mig_chans_stats(mig, &mig->stats);
	pthread_mutex_unlock(&mig->lock);
}
