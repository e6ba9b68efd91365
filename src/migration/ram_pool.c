/*
 * The RAM source's encoder pool (ram_pool.h): workers take queued jobs in
 * order and encode them with their own codec context; the migration
 * thread writes finished jobs in the order it filled them.
 */
#include "migration/ram_pool.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void ram_job_encode(struct ram_job *j, struct mig_codec_ctx *c, struct mig_digest *d)
{
	j->err = 0;
	j->bytes = j->with_data = 0;
	c->link_bps = j->link_bps;
	c->delta_off = j->delta_off;
	for (uint32_t i = 0; i < j->count; i++) {
		const uint8_t *held;
		uint32_t len;
		int id = mig_codec_encode(c, j->index[i], j->src[i], j->hole[i], j->data + j->bytes,
					  &len, &held);
		if (id < 0) {
			j->err = id;
			j->word[i] = j->gpa[i];
			return;
		}
		j->word[i] = j->gpa[i] | (uint64_t)id;
		j->len[i] = len;
		j->bytes += len;
		j->with_data += held != NULL;
		/* The digest is of what the destination will hold: the encoder's snapshot. */
		if (d)
			mig_digest_set(d, j->index[i], held);
	}
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
