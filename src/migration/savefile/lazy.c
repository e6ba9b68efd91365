/*
 * Lazy restore, as Firecracker restores: the guest starts with all of its
 * RAM missing, registered with userfaultfd (missing faults on the memfd);
 * a fault thread fills the faulting page's whole block from the file
 * (UFFDIO_COPY, checked against the block's checksum first) or maps a
 * zero page where the file has none, and a prefetch thread loads the
 * blocks in order behind it.  Once every block with data is in, the range
 * is unregistered: pages never touched are holes, and holes read as zero.
 *
 * Each block is loaded exactly once, by whichever thread moves it from
 * WAITING to LOADING; a fault on a block the prefetcher is loading waits
 * for it (`loaded`), then wakes the vCPU in case the copy came first.
 */
#include "migration/savefile/savefile.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "util/log.h"
#include "vmm/memory.h"

static struct guest_memory *lz_mem(struct savefile_lazy *lz)
{
	return &lz->m->vm.mem;
}

/* Register (or, with reg false, unregister: that wakes every waiter) all of RAM. */
static int lz_register(struct savefile_lazy *lz, bool reg)
{
	struct guest_memory *mem = lz_mem(lz);
	int err = 0;

	for (unsigned r = 0; r < guest_memory_nr_regions(mem); r++) {
		struct uffdio_register rg = {
			.range = { .start = (uintptr_t)guest_memory_page_ptr(mem,
							guest_memory_region_first(mem, r)),
				   .len = guest_memory_region_pages(mem, r) * GUEST_PAGE_SIZE },
			.mode = UFFDIO_REGISTER_MODE_MISSING,
		};
		if (ioctl(lz->uffd, reg ? UFFDIO_REGISTER : UFFDIO_UNREGISTER,
			  reg ? (void *)&rg : (void *)&rg.range) < 0 && !err)
			err = -errno;
	}
	return err;
}

static void lz_wake(struct savefile_lazy *lz, uint64_t index)
{
	struct uffdio_range r = {
		.start = (uintptr_t)guest_memory_page_ptr(lz_mem(lz), index),
		.len = GUEST_PAGE_SIZE,
	};

	ioctl(lz->uffd, UFFDIO_WAKE, &r);
}

/* The first failure stops the VM: its memory can no longer be trusted. */
static void lz_fail(struct savefile_lazy *lz, int err, const char *why)
{
	int zero = 0;

	if (!__atomic_compare_exchange_n(&lz->err, &zero, err, false, __ATOMIC_ACQ_REL,
					 __ATOMIC_RELAXED))
		return;
	snprintf(lz->why, sizeof(lz->why), "%s", why);
	pr_err("lazy restore from %s failed after the guest started: %s; the VM is lost",
	       lz->sf->path, why);
	vm_request_stop(&lz->m->vm, VM_STOP_LOST, 0);
	pthread_mutex_lock(&lz->lock);
	pthread_cond_broadcast(&lz->loaded);
	pthread_mutex_unlock(&lz->lock);
	lz_register(lz, false);	/* no vCPU may stay blocked on a page that will never come */
	if (lz->done)
		lz->done(lz->opaque, err);
}

/* Copy n pages from src into holes at index; pages mapped meanwhile are kept. */
static int lz_copy(struct savefile_lazy *lz, uint64_t index, uint64_t n, const uint8_t *src)
{
	uint64_t done = 0;

	while (done < n) {
		struct uffdio_copy c = {
			.dst = (uintptr_t)guest_memory_page_ptr(lz_mem(lz), index + done),
			.src = (uintptr_t)(src + done * GUEST_PAGE_SIZE),
			.len = (n - done) * GUEST_PAGE_SIZE,
		};
		int r = ioctl(lz->uffd, UFFDIO_COPY, &c);
		if (c.copy > 0)
			done += (uint64_t)c.copy / GUEST_PAGE_SIZE;
		if (r == 0)
			break;
		if (errno == EEXIST) {
			lz_wake(lz, index + done);
			done++;
		} else if (errno != EAGAIN) {
			return -errno;
		}
	}
	return 0;
}

/* Read, check and place block b (claimed by the caller); buf holds one block. */
static int lz_load(struct savefile_lazy *lz, uint64_t b, uint8_t *buf)
{
	const struct savefile_header *h = &lz->sf->h;
	uint64_t first = savefile_block_first(h, b);
	unsigned n = savefile_block_npages(h, b);
	struct savefile_block blk;
	char why[256];
	int err;

	if (savefile_block_decode(h, lz->sf->table, b, &blk))
		return -EPROTO;		/* checked at open */
	err = savefile_read_block(lz->sf, b, &blk, buf, why, sizeof(why));
	for (unsigned k = 0; !err && k < n;) {
		if (!(blk.data >> k & 1)) {
			k++;
			continue;
		}
		unsigned e = k;
		while (e < n && (blk.data >> e & 1))
			e++;
		err = lz_copy(lz, first + k, e - k, buf + (uint64_t)k * GUEST_PAGE_SIZE);
		if (err)
			snprintf(why, sizeof(why), "cannot place pages: %s", strerror(-err));
		k = e;
	}
	__atomic_store_n(&lz->state[b], SF_BLOCK_LOADED, __ATOMIC_RELEASE);
	pthread_mutex_lock(&lz->lock);
	pthread_cond_broadcast(&lz->loaded);
	pthread_mutex_unlock(&lz->lock);
	if (err)
		lz_fail(lz, err, why);
	return err;
}

static bool lz_claim(struct savefile_lazy *lz, uint64_t b)
{
	uint8_t want = SF_BLOCK_WAITING;

	return __atomic_compare_exchange_n(&lz->state[b], &want, SF_BLOCK_LOADING, false,
					   __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

static void lz_fault(struct savefile_lazy *lz, uint64_t addr, uint8_t *buf)
{
	struct guest_memory *mem = lz_mem(lz);
	uint64_t index = guest_memory_host_index(mem, addr);
	struct savefile_block blk;

	if (index == GUEST_PAGE_NONE)
		return;
	__atomic_add_fetch(&lz->faults, 1, __ATOMIC_RELAXED);
	uint64_t b = index / lz->sf->h.block_pages;
	if (savefile_block_decode(&lz->sf->h, lz->sf->table, b, &blk))
		return;
	if (!(blk.data >> (index % lz->sf->h.block_pages) & 1)) {
		/* No data in the file: a zero page, without reading anything. */
		struct uffdio_zeropage z = {
			.range = { .start = (uintptr_t)guest_memory_page_ptr(mem, index),
				   .len = GUEST_PAGE_SIZE },
		};
		__atomic_add_fetch(&lz->zero_faults, 1, __ATOMIC_RELAXED);
		if (ioctl(lz->uffd, UFFDIO_ZEROPAGE, &z) < 0)
			lz_wake(lz, index);	/* mapped already (EEXIST) */
		return;
	}
	if (lz_claim(lz, b)) {
		__atomic_add_fetch(&lz->fault_loads, 1, __ATOMIC_RELAXED);
		lz_load(lz, b, buf);
		return;
	}
	pthread_mutex_lock(&lz->lock);
	while (__atomic_load_n(&lz->state[b], __ATOMIC_ACQUIRE) != SF_BLOCK_LOADED &&
	       !__atomic_load_n(&lz->err, __ATOMIC_ACQUIRE))
		pthread_cond_wait(&lz->loaded, &lz->lock);
	pthread_mutex_unlock(&lz->lock);
	lz_wake(lz, index);
}

static void *lz_fault_thread(void *opaque)
{
	struct savefile_lazy *lz = opaque;
	uint8_t *buf = aligned_alloc(GUEST_PAGE_SIZE, (size_t)lz->sf->h.block_pages * GUEST_PAGE_SIZE);

	pthread_setname_np(pthread_self(), "lazy-faults");
	if (!buf) {
		lz_fail(lz, -ENOMEM, "out of memory");
		return NULL;
	}
	for (;;) {
		struct pollfd p[2] = {
			{ .fd = lz->uffd, .events = POLLIN },
			{ .fd = lz->stop_fd[0], .events = POLLIN },
		};
		if (poll(p, 2, -1) < 0 && errno != EINTR)
			break;
		if (p[1].revents)
			break;
		struct uffd_msg msg[16];
		ssize_t n = read(lz->uffd, msg, sizeof(msg));
		if (n <= 0)
			continue;
		for (ssize_t i = 0; i < n / (ssize_t)sizeof(msg[0]); i++)
			if (msg[i].event == UFFD_EVENT_PAGEFAULT)
				lz_fault(lz, msg[i].arg.pagefault.address, buf);
	}
	free(buf);
	return NULL;
}

static void *lz_prefetch_thread(void *opaque)
{
	struct savefile_lazy *lz = opaque;
	const struct savefile_header *h = &lz->sf->h;
	uint8_t *buf = aligned_alloc(GUEST_PAGE_SIZE, (size_t)h->block_pages * GUEST_PAGE_SIZE);
	struct savefile_block blk;

	pthread_setname_np(pthread_self(), "lazy-prefetch");
	if (!buf) {
		lz_fail(lz, -ENOMEM, "out of memory");
		return NULL;
	}
	for (uint64_t b = 0; b < h->blocks; b++) {
		if (__atomic_load_n(&lz->err, __ATOMIC_ACQUIRE))
			break;
		struct pollfd p = { .fd = lz->stop_fd[0], .events = POLLIN };
		if (poll(&p, 1, 0) > 0)
			break;		/* stopping */
		if (savefile_block_decode(h, lz->sf->table, b, &blk) || !blk.data)
			continue;	/* nothing in the file: faults map zero pages */
		if (lz_claim(lz, b)) {
			lz->prefetched++;
			lz_load(lz, b, buf);
		}
	}
	free(buf);
	if (__atomic_load_n(&lz->err, __ATOMIC_ACQUIRE))
		return NULL;
	for (uint64_t b = 0; b < h->blocks; b++) {
		/* A block a fault is still loading: wait for it before letting go. */
		pthread_mutex_lock(&lz->lock);
		while (__atomic_load_n(&lz->state[b], __ATOMIC_ACQUIRE) == SF_BLOCK_LOADING &&
		       !__atomic_load_n(&lz->err, __ATOMIC_ACQUIRE))
			pthread_cond_wait(&lz->loaded, &lz->lock);
		pthread_mutex_unlock(&lz->lock);
	}
	struct pollfd p = { .fd = lz->stop_fd[0], .events = POLLIN };
	if (__atomic_load_n(&lz->err, __ATOMIC_ACQUIRE) || poll(&p, 1, 0) > 0)
		return NULL;
	/* Every page with data is in: the rest are holes, and holes read as zero. */
	lz_register(lz, false);
	lz->done_ns = vm_now_ns();
	pr_info("lazy restore: every page is in after %.1f ms (%llu faults, %llu of them zero "
		"pages, %llu blocks loaded on a fault, %llu prefetched)",
		(double)(lz->done_ns - lz->start_ns) / 1e6,
		(unsigned long long)__atomic_load_n(&lz->faults, __ATOMIC_RELAXED),
		(unsigned long long)__atomic_load_n(&lz->zero_faults, __ATOMIC_RELAXED),
		(unsigned long long)__atomic_load_n(&lz->fault_loads, __ATOMIC_RELAXED),
		(unsigned long long)lz->prefetched);
	if (lz->done)
		lz->done(lz->opaque, 0);
	return NULL;
}

int savefile_lazy_start(struct savefile_lazy *lz, struct savefile *sf, struct machine *m,
			char *why, size_t whylen)
{
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_MISSING_SHMEM };
	void (*done)(void *, int) = lz->done;
	void *opaque = lz->opaque;
	int err;

	memset(lz, 0, sizeof(*lz));
	lz->done = done;
	lz->opaque = opaque;
	lz->sf = sf;
	lz->m = m;
	lz->stop_fd[0] = lz->stop_fd[1] = -1;
	pthread_mutex_init(&lz->lock, NULL);
	pthread_cond_init(&lz->loaded, NULL);
	lz->start_ns = vm_now_ns();
	lz->state = calloc(sf->h.blocks, 1);
	lz->uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (!lz->state || lz->uffd < 0 || pipe2(lz->stop_fd, O_CLOEXEC) < 0) {
		err = lz->state ? -errno : -ENOMEM;
		snprintf(why, whylen, "cannot set up userfaultfd: %s", strerror(-err));
		goto fail;
	}
	if (ioctl(lz->uffd, UFFDIO_API, &api) < 0 || lz_register(lz, true)) {
		err = -errno;
		snprintf(why, whylen, "this kernel cannot serve guest memory on first touch "
			 "(userfaultfd on shared memory: %s); restore without --lazy", strerror(-err));
		goto fail;
	}
	if (pthread_create(&lz->fault_thread, NULL, lz_fault_thread, lz)) {
		err = -EAGAIN;
		snprintf(why, whylen, "cannot start the fault thread");
		goto fail;
	}
	lz->fault_started = true;
	if (pthread_create(&lz->prefetch_thread, NULL, lz_prefetch_thread, lz)) {
		err = -EAGAIN;
		snprintf(why, whylen, "cannot start the prefetch thread");
		goto fail;
	}
	lz->prefetch_started = true;
	return 0;
fail:
	savefile_lazy_stop(lz);
	return err;
}

void savefile_lazy_stop(struct savefile_lazy *lz)
{
	if (lz->stop_fd[1] >= 0 && write(lz->stop_fd[1], "x", 1) < 0)
		pr_debug("lazy restore: wake: %s", strerror(errno));
	if (lz->prefetch_started)
		pthread_join(lz->prefetch_thread, NULL);
	if (lz->fault_started)
		pthread_join(lz->fault_thread, NULL);
	lz->prefetch_started = lz->fault_started = false;
	if (lz->uffd >= 0) {
		lz_register(lz, false);
		close(lz->uffd);
	}
	lz->uffd = -1;
	for (int i = 0; i < 2; i++)
		if (lz->stop_fd[i] >= 0)
			close(lz->stop_fd[i]);
	lz->stop_fd[0] = lz->stop_fd[1] = -1;
	free(lz->state);
	lz->state = NULL;
}
