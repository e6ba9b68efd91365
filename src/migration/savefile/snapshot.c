/*
 * A live snapshot (QEMU's background-snapshot): the save file of the VM
 * as it was at one instant, written while the guest runs on.  The guest
 * is paused only to take its CPU and device state and to write-protect
 * its RAM (userfaultfd write-protect on the guest's view of the memfd);
 * then it resumes, and the writer saves RAM block by block, lifting the
 * protection of each block once it holds a copy.  A guest (or a device,
 * or KVM) writing a block not saved yet faults; the fault thread copies
 * that block first, then lets the write through.  So every block in the
 * file is the block as it was at the instant, and the guest waits at
 * most one block copy per block it writes, once.
 *
 * A block is copied once, by whichever thread moves it from WAITING to
 * COPYING (writer or fault thread); the other waits until it is RELEASED
 * (`lock`, `released`).  Each writes its own block's table entry.
 */
#include "migration/savefile/savefile.h"
#include "migration/savefile/internal.h"

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
#include <xxhash.h>

#include "board/machine_state.h"
#include "util/log.h"
#include "vmm/memory.h"

#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif

enum { COW_WAITING, COW_COPYING, COW_RELEASED };

struct cow {
	struct guest_memory *mem;
	int fd, uffd, stop_fd[2];
	struct savefile_header h;
	uint8_t *table;
	uint8_t *state;			/* per block, atomics */
	pthread_mutex_t lock;
	pthread_cond_t released;
	int err;			/* first failure (atomic) */
	uint64_t data_pages, wp_faults, fault_copies;	/* atomics */
};

static void cow_fail(struct cow *c, int err)
{
	int zero = 0;

	__atomic_compare_exchange_n(&c->err, &zero, err, false, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
}

/* Write-protect (wp) or release pages [first, first + n) of the guest's view; release wakes. */
static int cow_protect(struct cow *c, uint64_t first, uint64_t n, bool wp)
{
	struct uffdio_writeprotect w = {
		.range = { .start = (uintptr_t)guest_memory_page_ptr(c->mem, first),
			   .len = n * GUEST_PAGE_SIZE },
		.mode = wp ? UFFDIO_WRITEPROTECT_MODE_WP : 0,
	};

	return ioctl(c->uffd, UFFDIO_WRITEPROTECT, &w) < 0 ? -errno : 0;
}

/* Register the guest's view of every region for write-protect faults (reg) or let it go. */
static int cow_register(struct cow *c, bool reg)
{
	int err = 0;

	for (unsigned r = 0; r < guest_memory_nr_regions(c->mem); r++) {
		uint64_t first = guest_memory_region_first(c->mem, r);
		uint64_t n = guest_memory_region_pages(c->mem, r);
		struct uffdio_register rg = {
			.range = { .start = (uintptr_t)guest_memory_page_ptr(c->mem, first),
				   .len = n * GUEST_PAGE_SIZE },
			.mode = UFFDIO_REGISTER_MODE_WP,
		};
		if (!reg) {
			if (ioctl(c->uffd, UFFDIO_UNREGISTER, &rg.range) < 0 && !err)
				err = -errno;
			continue;
		}
		if (ioctl(c->uffd, UFFDIO_REGISTER, &rg) < 0 || cow_protect(c, first, n, true))
			return -errno;
	}
	return err;
}

/*
 * Block b, claimed: copy what the memfd holds of it (holes skipped, so
 * never allocated), release it to the guest, then hash and write its
 * non-zero pages from the copy.  cur: the calling thread's cursor; what it
 * learnt earlier still holds for b, which nothing could write (or fill)
 * before this copy.
 */
static void cow_block(struct cow *c, uint64_t b, uint8_t *buf, XXH3_state_t *xs,
		      struct guest_data_cursor *cur)
{
	uint64_t first = savefile_block_first(&c->h, b);
	unsigned n = savefile_block_npages(&c->h, b);
	uint64_t p = first, end = first + n, rf, rn, held = 0;
	struct savefile_block blk = { 0 };
	int err;

	while (p < end && guest_memory_data_run_at(c->mem, cur, p, end - p, &rf, &rn)) {
		memcpy(buf + (rf - first) * GUEST_PAGE_SIZE, guest_memory_page_alias(c->mem, rf),
		       rn * GUEST_PAGE_SIZE);
		for (uint64_t q = rf; q < rf + rn; q++)
			held |= 1ULL << (q - first);
		p = rf + rn;
	}
	err = cow_protect(c, first, n, false);
	__atomic_store_n(&c->state[b], COW_RELEASED, __ATOMIC_RELEASE);
	pthread_mutex_lock(&c->lock);
	pthread_cond_broadcast(&c->released);
	pthread_mutex_unlock(&c->lock);
	XXH3_64bits_reset_withSeed(xs, b);
	for (unsigned k = 0, run = 0; !err && k <= n; k++) {
		const uint8_t *page = buf + (uint64_t)k * GUEST_PAGE_SIZE;
		if (k < n && (held >> k & 1) && !savefile_page_zero(page)) {
			blk.data |= 1ULL << k;
			XXH3_64bits_update(xs, page, GUEST_PAGE_SIZE);
			continue;
		}
		/* Pages [run, k) hold data: one write. */
		if (k > run)
			err = savefile_pwrite(c->fd, buf + (uint64_t)run * GUEST_PAGE_SIZE,
					      (uint64_t)(k - run) * GUEST_PAGE_SIZE,
					      c->h.ram_off + (first + run) * GUEST_PAGE_SIZE);
		run = k + 1;
	}
	blk.hash = XXH3_64bits_digest(xs);
	savefile_block_encode(c->table, b, &blk);
	__atomic_add_fetch(&c->data_pages, (uint64_t)__builtin_popcountll(blk.data), __ATOMIC_RELAXED);
	if (err)
		cow_fail(c, err);
}

static bool cow_claim(struct cow *c, uint64_t b)
{
	uint8_t want = COW_WAITING;

	return __atomic_compare_exchange_n(&c->state[b], &want, COW_COPYING, false,
					   __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

static void cow_fault(struct cow *c, uint64_t addr, uint8_t *buf, XXH3_state_t *xs,
		      struct guest_data_cursor *cur)
{
	uint64_t index = guest_memory_host_index(c->mem, addr), b;
	struct uffdio_range r;

	if (index == GUEST_PAGE_NONE)
		return;
	__atomic_add_fetch(&c->wp_faults, 1, __ATOMIC_RELAXED);
	b = index / c->h.block_pages;
	if (cow_claim(c, b)) {
		__atomic_add_fetch(&c->fault_copies, 1, __ATOMIC_RELAXED);
		cow_block(c, b, buf, xs, cur);
		return;
	}
	pthread_mutex_lock(&c->lock);
	while (__atomic_load_n(&c->state[b], __ATOMIC_ACQUIRE) != COW_RELEASED)
		pthread_cond_wait(&c->released, &c->lock);
	pthread_mutex_unlock(&c->lock);
	/* Released already, and woken then; this fault may have come after. */
	r = (struct uffdio_range){ .start = (uintptr_t)guest_memory_page_ptr(c->mem, index),
				   .len = GUEST_PAGE_SIZE };
	ioctl(c->uffd, UFFDIO_WAKE, &r);
}

static void *cow_fault_thread(void *opaque)
{
	struct cow *c = opaque;
	uint8_t *buf = aligned_alloc(GUEST_PAGE_SIZE, (size_t)c->h.block_pages * GUEST_PAGE_SIZE);
	XXH3_state_t *xs = XXH3_createState();
	struct guest_data_cursor cur = { 0 };

	pthread_setname_np(pthread_self(), "snapshot-cow");
	if (!buf || !xs) {
		/* Nobody copies on a fault: the writer must, and a guest waits for it. */
		cow_fail(c, -ENOMEM);
		goto out;
	}
	for (;;) {
		struct pollfd p[2] = {
			{ .fd = c->uffd, .events = POLLIN },
			{ .fd = c->stop_fd[0], .events = POLLIN },
		};
		if (poll(p, 2, -1) < 0 && errno != EINTR)
			break;
		if (p[1].revents)
			break;
		struct uffd_msg msg[16];
		ssize_t n = read(c->uffd, msg, sizeof(msg));
		for (ssize_t i = 0; i < n / (ssize_t)sizeof(msg[0]); i++)
			if (msg[i].event == UFFD_EVENT_PAGEFAULT)
				cow_fault(c, msg[i].arg.pagefault.address, buf, xs, &cur);
	}
out:
	free(buf);
	XXH3_freeState(xs);
	return NULL;
}

/* Arm userfaultfd: everything write-protected.  0 or -errno (why). */
static int cow_arm(struct cow *c, char *why, size_t whylen)
{
	struct uffdio_api api = { .api = UFFD_API };
	int err;

	c->uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (c->uffd < 0 || ioctl(c->uffd, UFFDIO_API, &api) < 0) {
		err = -errno;
		snprintf(why, whylen, "userfaultfd: %s", strerror(-err));
		return err;
	}
	if (!(api.features & UFFD_FEATURE_WP_HUGETLBFS_SHMEM)) {
		snprintf(why, whylen, "this kernel cannot write-protect shared memory with "
			 "userfaultfd (no WP_HUGETLBFS_SHMEM): no live snapshot; use 'ferry save "
			 "--keep-running'");
		return -ENOTSUP;
	}
	/* A fresh fd: the API is set once.  WP_UNPOPULATED: holes are protected too. */
	close(c->uffd);
	c->uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	api = (struct uffdio_api){ .api = UFFD_API, .features = UFFD_FEATURE_WP_HUGETLBFS_SHMEM |
				   (api.features & UFFD_FEATURE_WP_UNPOPULATED) };
	if (c->uffd < 0 || ioctl(c->uffd, UFFDIO_API, &api) < 0 || pipe2(c->stop_fd, O_CLOEXEC) < 0) {
		err = -errno;
		snprintf(why, whylen, "userfaultfd: %s", strerror(-err));
		return err;
	}
	err = cow_register(c, true);
	if (err)
		snprintf(why, whylen, "cannot write-protect guest memory: %s", strerror(-err));
	return err;
}

int savefile_cow_write(struct guest_memory *mem, int fd, const uint8_t *meta, size_t meta_len,
		       int (*resume)(void *opaque), void *opaque, struct savefile_stats *st,
		       char *why, size_t whylen)
{
	struct cow c = { .mem = mem, .fd = fd, .uffd = -1, .stop_fd = { -1, -1 } };
	uint8_t *buf = aligned_alloc(GUEST_PAGE_SIZE, SAVEFILE_BLOCK_PAGES * GUEST_PAGE_SIZE);
	XXH3_state_t *xs = XXH3_createState();
	struct guest_data_cursor cur = { 0 };
	pthread_t thread;
	bool started = false;
	int err;

	pthread_mutex_init(&c.lock, NULL);
	pthread_cond_init(&c.released, NULL);
	savefile_layout(&c.h, mem->size, meta_len);
	c.table = calloc(1, c.h.table_len);
	c.state = calloc(c.h.blocks, 1);
	if (!buf || !xs || !c.table || !c.state) {
		err = -ENOMEM;
		snprintf(why, whylen, "out of memory");
		goto out;
	}
	if (ftruncate(fd, (off_t)c.h.file_size) < 0) {
		err = -errno;
		snprintf(why, whylen, "cannot size the file: %s", strerror(-err));
		goto out;
	}
	err = cow_arm(&c, why, whylen);
	if (!err && pthread_create(&thread, NULL, cow_fault_thread, &c)) {
		err = -EAGAIN;
		snprintf(why, whylen, "cannot start the copy-on-write thread");
	}
	if (err)
		goto out;
	started = true;
	/* From here the guest runs: RAM as it was is in the blocks not yet released. */
	err = resume ? resume(opaque) : 0;
	if (err) {
		snprintf(why, whylen, "cannot resume the guest: %s", strerror(-err));
		goto out;
	}
	for (uint64_t b = 0; b < c.h.blocks && !__atomic_load_n(&c.err, __ATOMIC_ACQUIRE); b++)
		if (cow_claim(&c, b))
			cow_block(&c, b, buf, xs, &cur);
	for (uint64_t b = 0; b < c.h.blocks; b++) {
		/* A block the fault thread is copying: its entry is not written yet. */
		pthread_mutex_lock(&c.lock);
		while (__atomic_load_n(&c.state[b], __ATOMIC_ACQUIRE) == COW_COPYING)
			pthread_cond_wait(&c.released, &c.lock);
		pthread_mutex_unlock(&c.lock);
	}
	err = __atomic_load_n(&c.err, __ATOMIC_ACQUIRE);
	if (err)
		snprintf(why, whylen, "cannot write the snapshot: %s", strerror(-err));
out:
	if (c.uffd >= 0)
		cow_register(&c, false);	/* wakes whatever still waits */
	if (started) {
		if (write(c.stop_fd[1], "x", 1) < 0)
			pr_debug("snapshot: wake: %s", strerror(errno));
		pthread_join(thread, NULL);
	}
	if (!err) {
		/* The fault thread is gone: its last entries are ours to read. */
		err = savefile_finish(fd, &c.h, c.table, meta, meta_len);
		if (err)
			snprintf(why, whylen, "cannot write the snapshot: %s", strerror(-err));
	}
	st->data_pages = c.data_pages;
	st->zero_pages = c.h.pages - c.data_pages;
	st->file_bytes = c.h.file_size;
	st->wp_faults = c.wp_faults;
	st->fault_copies = c.fault_copies;
	if (c.uffd >= 0)
		close(c.uffd);
	for (int i = 0; i < 2; i++)
		if (c.stop_fd[i] >= 0)
			close(c.stop_fd[i]);
	free(c.table);
	free(c.state);
	free(buf);
	XXH3_freeState(xs);
	return err;
}

struct snap_resume {
	struct vm *vm;
	bool was_running;
	uint64_t t0, resumed_ns;
};

static int snap_resume(void *opaque)
{
	struct snap_resume *r = opaque;

	r->resumed_ns = vm_now_ns();
	return r->was_running ? vm_resume(r->vm) : 0;
}

int savefile_snapshot(struct machine *m, const char *path, struct savefile_stats *st,
		      char *why, size_t whylen)
{
	struct snap_resume r = { .vm = &m->vm, .t0 = vm_now_ns() };
	enum vm_state vs = vm_get_state(&m->vm);
	struct vmstate_buf state;
	uint8_t *meta = NULL;
	size_t meta_len;
	char *tmp = NULL;
	int fd = -1, err;

	memset(st, 0, sizeof(*st));
	if (vs != VM_STATE_RUNNING && vs != VM_STATE_PAUSED) {
		snprintf(why, whylen, "the VM is %s", vm_state_name(vs));
		return -EBUSY;
	}
	r.was_running = vs == VM_STATE_RUNNING;
	vmstate_buf_init(&state);
	err = r.was_running ? vm_pause(&m->vm, VM_PAUSE_TIMEOUT_NS) : 0;
	if (err) {
		snprintf(why, whylen, "the vCPUs did not stop: %s", vm_pause_strerror(err));
		return err;
	}
	/* The instant: the state now, the RAM as it is until each block is copied. */
	err = machine_quiesce(m);
	if (!err)
		err = machine_state_encode(m, &state);
	if (err) {
		snprintf(why, whylen, "cannot save the device state: %s", strerror(-err));
		goto out;
	}
	/* By path only: the guest goes on writing the disks while RAM is written. */
	struct savefile_disk_rec recs[MACHINE_MAX_DISKS];
	err = savefile_machine_disks(m, SAVEFILE_DISK_PATH, true, recs, why, whylen);
	if (err)
		goto out;
	err = savefile_machine_meta(m, &state, recs, &meta, &meta_len, why, whylen);
	if (err)
		goto out;
	fd = savefile_create_tmp(path, &tmp, why, whylen);
	if (fd < 0) {
		err = fd;
		goto out;
	}
	err = savefile_cow_write(&m->vm.mem, fd, meta, meta_len, snap_resume, &r, st, why, whylen);
	if (!err && rename(tmp, path) < 0) {
		err = -errno;
		snprintf(why, whylen, "cannot rename %s to %s: %s", tmp, path, strerror(-err));
	}
	if (!err)
		savefile_sync_dir(path);
out:
	if (fd >= 0)
		close(fd);
	if (err && tmp)
		unlink(tmp);
	if (!r.resumed_ns)
		snap_resume(&r);	/* failed before the guest was let go */
	st->paused_ns = r.resumed_ns - r.t0;
	st->total_ns = vm_now_ns() - r.t0;
	st->state_bytes = state.len;
	free(tmp);
	free(meta);
	vmstate_buf_free(&state);
	return err;
}
