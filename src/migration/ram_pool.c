/*
 * The RAM source's encoder pool (ram_pool.h): workers take queued jobs in
 * order and encode them with their own codec context; the migration
 * thread writes finished jobs in the order it filled them.
 */
#include "migration/ram_pool.h"

#include <errno.h>
#include <sys/uio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "migration/section.h"
#include "util/le.h"

void ram_job_encode(struct ram_job *j, struct mig_codec_ctx *c, struct mig_digest *d)
{
	uint32_t packed = 0;	/* bytes in j->data */

	j->err = 0;
	j->bytes = j->with_data = j->nref = 0;
	c->link_bps = j->link_bps;
	c->delta_off = j->delta_off;
	for (uint32_t i = 0; i < j->count; i++) {
		const uint8_t *held;
		uint32_t len;
		int id;
		j->ref[i] = NULL;
		if (j->by_ref) {
			id = mig_codec_encode_ref(c, j->index[i], j->src[i], j->hole[i], &len, &held);
			if (id == MIG_CODEC_RAW) {
				j->ref[i] = held;
				j->nref++;
			}
		} else {
			id = mig_codec_encode(c, j->index[i], j->src[i], j->hole[i], j->data + packed,
					      &len, &held);
			packed += id < 0 ? 0 : len;
		}
		if (id < 0) {
			j->err = id;
			j->word[i] = j->gpa[i];
			return;
		}
		j->word[i] = j->gpa[i] | (uint64_t)id;
		j->len[i] = len;
		j->bytes += len;
		j->with_data += held != NULL;
		/*
		 * The digest is of what the destination will hold: the encoder's
		 * snapshot, or the page itself when it cannot change.
		 */
		if (d)
			mig_digest_set(d, j->index[i], held);
	}
}

/* The pages of j as iovecs: refs into guest RAM, the rest from j->data; adjacent ones merged. */
static int ram_job_iov(const struct ram_job *j, struct iovec *iov)
{
	uint32_t packed = 0;
	int n = 0;

	for (uint32_t i = 0; i < j->count; i++) {
		const uint8_t *p = j->ref[i] ? j->ref[i] : j->data + packed;
		if (!j->len[i])
			continue;
		if (!j->ref[i])
			packed += j->len[i];
		if (n && (const uint8_t *)iov[n - 1].iov_base + iov[n - 1].iov_len == p) {
			iov[n - 1].iov_len += j->len[i];
			continue;
		}
		iov[n++] = (struct iovec){ .iov_base = (void *)p, .iov_len = j->len[i] };
	}
	return n;
}

/* RAM_RUN is raw by definition: every entry id raw, consecutive. */
static bool ram_job_is_run(const struct ram_job *j)
{
	for (uint32_t i = 0; i < j->count; i++)
		if (j->word[i] != ((j->gpa[0] + i * GUEST_PAGE_SIZE) | MIG_CODEC_RAW))
			return false;
	return true;
}

static uint32_t ram_job_payload_len(const struct ram_job *j, bool run)
{
	return (run ? 12 : 4 + MIG_RAM_ENTRY * j->count) + j->bytes;
}

uint64_t ram_job_wire_len(const struct ram_job *j)
{
	return (uint64_t)ram_job_payload_len(j, ram_job_is_run(j)) + MIG_SECTION_HDR + 8;
}

uint64_t ram_job_write(struct mig_stream *s, const struct ram_job *j)
{
	struct mig_section_writer w;
	uint32_t n = j->count;
	bool run = ram_job_is_run(j);
	uint32_t len = ram_job_payload_len(j, run);
	if (mig_section_begin(&w, s, run ? MIG_SEC_RAM_RUN : MIG_SEC_RAM, len)) {
		mig_stream_fail(s, -ENOMEM, "out of memory");
		return 0;
	}
	if (run) {
		mig_section_put_u64(&w, j->gpa[0]);
		mig_section_put_u32(&w, n);
	} else {
		uint8_t ents[MIG_RAM_BATCH_MAX * MIG_RAM_ENTRY];
		mig_section_put_u32(&w, n);
		for (uint32_t i = 0; i < n; i++) {
			le_put(ents + MIG_RAM_ENTRY * i, j->word[i], 8);
			le_put(ents + MIG_RAM_ENTRY * i + 8, j->len[i], 4);
		}
		mig_section_put(&w, ents, (size_t)MIG_RAM_ENTRY * n);
	}
	/* The encoded pages, with what is queued before them: one write. */
	struct iovec iov[MIG_RAM_BATCH_MAX];
	mig_section_putv(&w, iov, ram_job_iov(j, iov));
	mig_section_end(&w);
	return (uint64_t)len + MIG_SECTION_HDR + 8;
}

static void *ram_pool_worker(void *arg)
{
	struct ram_pool_worker *w = arg;
	struct ram_pool *p = w->pool;
	struct mig_codec_ctx *c = &p->ctx[w->id];

	pthread_setname_np(pthread_self(), "mig-encode");
	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (!p->stop && p->state[p->next % RAM_POOL_JOBS] != RAM_JOB_QUEUED)
			pthread_cond_wait(&p->work, &p->lock);
		if (p->stop)
			break;
		struct ram_job *j = &p->jobs[p->next % RAM_POOL_JOBS];
		unsigned slot = p->next % RAM_POOL_JOBS;
		p->next++;
		p->state[slot] = RAM_JOB_BUSY;	/* other workers wait for the next one */
		pthread_mutex_unlock(&p->lock);

		memset(c->stats, 0, sizeof(c->stats));
		memset(&c->delta, 0, sizeof(c->delta));
		c->gave_up = 0;
		ram_job_encode(j, c, p->digest);
		memcpy(j->stats, c->stats, sizeof(j->stats));
		j->delta = c->delta;
		j->gave_up = c->gave_up;

		pthread_mutex_lock(&p->lock);
		p->state[slot] = RAM_JOB_DONE;
		pthread_cond_broadcast(&p->done);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

unsigned ram_pool_default_workers(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN) / 2;

	return n < 1 ? 1 : n > RAM_POOL_WORKERS_MAX ? RAM_POOL_WORKERS_MAX : (unsigned)n;
}

int ram_pool_start(struct ram_pool *p, unsigned workers, const struct mig_codec_ctx *main,
		   struct mig_digest *digest)
{
	int err = 0;

	memset(p, 0, sizeof(*p));
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->work, NULL);
	pthread_cond_init(&p->done, NULL);
	p->digest = digest;
	p->jobs = calloc(RAM_POOL_JOBS, sizeof(*p->jobs));
	if (!p->jobs)
		goto fail;
	for (unsigned i = 0; i < RAM_POOL_JOBS; i++) {
		p->jobs[i].data = malloc(MIG_RAM_BATCH_MAX * GUEST_PAGE_SIZE);
		if (!p->jobs[i].data)
			goto fail;
	}
	if (workers > RAM_POOL_WORKERS_MAX)
		workers = RAM_POOL_WORKERS_MAX;
	for (; p->workers < workers; p->workers++) {
		struct mig_codec_ctx *c = &p->ctx[p->workers];
		err = mig_codec_ctx_init_worker(c, main);
		if (err)
			goto fail;
		c->encoders = workers;
		p->arg[p->workers] = (struct ram_pool_worker){ .pool = p, .id = p->workers };
		err = -pthread_create(&p->thread[p->workers], NULL, ram_pool_worker,
				      &p->arg[p->workers]);
		if (err) {
			mig_codec_ctx_fini(c);
			goto fail;
		}
	}
	return 0;
fail:
	ram_pool_stop(p);
	return err ? err : -ENOMEM;
}

void ram_pool_stop(struct ram_pool *p)
{
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_broadcast(&p->work);
	pthread_mutex_unlock(&p->lock);
	for (unsigned i = 0; i < p->workers; i++) {
		pthread_join(p->thread[i], NULL);
		mig_codec_ctx_fini(&p->ctx[i]);
	}
	p->workers = 0;
	if (p->jobs)
		for (unsigned i = 0; i < RAM_POOL_JOBS; i++)
			free(p->jobs[i].data);
	free(p->jobs);
	p->jobs = NULL;
	pthread_cond_destroy(&p->done);
	pthread_cond_destroy(&p->work);
	pthread_mutex_destroy(&p->lock);
}

struct ram_job *ram_pool_current(struct ram_pool *p)
{
	return &p->jobs[p->tail % RAM_POOL_JOBS];
}

bool ram_pool_full(const struct ram_pool *p)
{
	return p->tail - p->head >= RAM_POOL_JOBS;
}

void ram_pool_submit(struct ram_pool *p)
{
	if (!ram_pool_current(p)->count)
		return;
	pthread_mutex_lock(&p->lock);
	p->state[p->tail % RAM_POOL_JOBS] = RAM_JOB_QUEUED;
	p->tail++;
	pthread_cond_broadcast(&p->work);
	pthread_mutex_unlock(&p->lock);
}

struct ram_job *ram_pool_oldest(struct ram_pool *p)
{
	if (p->head == p->tail)
		return NULL;
	unsigned slot = p->head % RAM_POOL_JOBS;
	pthread_mutex_lock(&p->lock);
	while (p->state[slot] != RAM_JOB_DONE)
		pthread_cond_wait(&p->done, &p->lock);
	pthread_mutex_unlock(&p->lock);
	return &p->jobs[slot];
}

void ram_pool_release(struct ram_pool *p)
{
	struct ram_job *j = &p->jobs[p->head % RAM_POOL_JOBS];

	pthread_mutex_lock(&p->lock);
	p->state[p->head % RAM_POOL_JOBS] = RAM_JOB_FREE;
	pthread_mutex_unlock(&p->lock);
	j->count = j->resent = 0;
	p->head++;
}
