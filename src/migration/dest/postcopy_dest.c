#include "migration/dest/postcopy_dest.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "migration/digest.h"
#include "migration/format.h"
#include "migration/section.h"
#include "util/le.h"
#include "util/log.h"

static bool pc_test(const unsigned long *bm, uint64_t i)
{
	return bm[i / 64] & (1UL << (i % 64));
}

static void pc_set(unsigned long *bm, uint64_t i)
{
	bm[i / 64] |= 1UL << (i % 64);
}

int pc_dest_reply(struct pc_dest *pc, uint8_t type, const void *payload, uint32_t len)
{
	pthread_mutex_lock(&pc->lock);
	mig_section_write(pc->s, type, payload, len);
	int err = mig_stream_flush(pc->s);
	pthread_mutex_unlock(&pc->lock);
	return err;
}

void pc_dest_set_req(struct pc_dest *pc, struct mig_stream *req)
{
	pthread_mutex_lock(&pc->lock);
	pc->req = req;
	pthread_mutex_unlock(&pc->lock);
}

/*
 * A page request, on the preempt connection if there is one.  A failed
 * write there is the preempt receiver's to notice (its connection is
 * gone); the page comes by the push anyway.
 */
static int pc_dest_request(struct pc_dest *pc, const uint8_t p[8])
{
	pthread_mutex_lock(&pc->lock);
	struct mig_stream *s = pc->req ? pc->req : pc->s;
	mig_section_write(s, MIG_SEC_PAGE_REQ, p, 8);
	int err = mig_stream_flush(s);
	pthread_mutex_unlock(&pc->lock);
	return err;
}

/* Call fn(pc, first, count) for each run of pages whose content we do not hold. */
static int pc_for_unknown(struct pc_dest *pc, int (*fn)(struct pc_dest *, uint64_t, uint64_t))
{
	for (uint64_t i = 0; i < pc->pages;) {
		if (pc_test(pc->known, i)) {
			i++;
			continue;
		}
		uint64_t j = i;
		while (j < pc->pages && !pc_test(pc->known, j))
			j++;
		int err = fn(pc, i, j - i);
		if (err)
			return err;
		pc->missing += j - i;
		i = j;
	}
	return 0;
}

/*
 * Minor mode: unmap the pages from the guest's view (their stale content,
 * if any, stays in the page cache), so touching one faults.  Pages filled
 * through the alias were never mapped there: this is cheap.
 */
static int pc_unmap(struct pc_dest *pc, uint64_t first, uint64_t n)
{
	return guest_memory_unmap_guest(&pc->m->vm.mem, first, n);
}

/* Missing mode: free the pages, so touching one faults. */
static int pc_punch(struct pc_dest *pc, uint64_t first, uint64_t n)
{
	int err = guest_memory_punch(&pc->m->vm.mem, first, n);

	if (err)
		return err;
	for (uint64_t i = first; i < first + n; i++)
		pc->written[i / 64] &= ~(1UL << (i % 64));
	return 0;
}

/*
 * Minor faults (a page in the memfd, not mapped in the guest's view) let a
 * page be filled in place through the alias and then mapped: no page is
 * freed when post-copy starts, none allocated while it runs.  Missing
 * faults cover holes (never allocated).  Without minor-fault support,
 * stale pages are freed instead and everything goes through missing faults.
 */
static int pc_register(struct pc_dest *pc)
{
	struct guest_memory *mem = &pc->m->vm.mem;
	struct uffdio_api api = {
		.api = UFFD_API, .features = UFFD_FEATURE_MISSING_SHMEM | UFFD_FEATURE_MINOR_SHMEM,
	};
	int err;

	pc->uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (pc->uffd < 0)
		return -errno;
	if (ioctl(pc->uffd, UFFDIO_API, &api) < 0) {
		/* An older kernel: try again without minor faults (a new fd: API is once). */
		close(pc->uffd);
		pc->uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
		api = (struct uffdio_api){ .api = UFFD_API, .features = UFFD_FEATURE_MISSING_SHMEM };
		if (pc->uffd < 0 || ioctl(pc->uffd, UFFDIO_API, &api) < 0)
			return -errno;
	}
	pc->minor = (api.features & UFFD_FEATURE_MINOR_SHMEM) && !getenv("FERRY_UFFD_NO_MINOR");
	err = pc_for_unknown(pc, pc->minor ? pc_unmap : pc_punch);
	if (err)
		return err;
	for (unsigned r = 0; r < guest_memory_nr_regions(mem); r++) {
		struct uffdio_register reg = {
			.range = { .start = (uintptr_t)guest_memory_page_ptr(mem,
							guest_memory_region_first(mem, r)),
				   .len = guest_memory_region_pages(mem, r) * GUEST_PAGE_SIZE },
			.mode = UFFDIO_REGISTER_MODE_MISSING |
				(pc->minor ? UFFDIO_REGISTER_MODE_MINOR : 0),
		};
		if (ioctl(pc->uffd, UFFDIO_REGISTER, &reg) < 0)
			return -errno;
	}
	return 0;
}

static unsigned pc_bucket(uint64_t ns)
{
	uint64_t us = ns / 1000;
	unsigned b = 0;

	while (us > 1 && b < PC_LATENCY_BUCKETS - 1) {
		us >>= 1;
		b++;
	}
	return b;
}

double pc_dest_latency_us(const struct pc_dest *pc, double pct)
{
	uint64_t total = 0, seen = 0;

	for (unsigned b = 0; b < PC_LATENCY_BUCKETS; b++)
		total += pc->latency_hist[b];
	if (!total)
		return 0;
	for (unsigned b = 0; b < PC_LATENCY_BUCKETS; b++) {
		seen += pc->latency_hist[b];
		if ((double)seen >= (double)total * pct / 100.0)
			return (double)(1ULL << b);	/* upper bound of the bucket */
	}
	return (double)(1ULL << (PC_LATENCY_BUCKETS - 1));
}

/*
 * Page `index` now holds `data` (NULL: zeros) in guest memory: the only
 * place where its digest entry changes after the switch, so --verify
 * checks what the guest got, not what arrived.  Caller holds the lock.
 */
static void pc_note_placed(struct pc_dest *pc, uint64_t index, const uint8_t *data)
{
	uint64_t now = vm_now_ns();

	if (data)
		pc_set(pc->written, index);
	if (pc->digest)
		mig_digest_set(pc->digest, index, data);
	pc_set(pc->known, index);
	pc->missing--;
	pc->placed++;
	pc->last_page_ns = now;
	if (pc->fault_ns[index]) {
		uint64_t lat = now - pc->fault_ns[index];
		pc->latency_hist[pc_bucket(lat)]++;
		pc->blocked_ns += lat;
		pc->fault_ns[index] = 0;
	}
}

static void pc_wake(struct pc_dest *pc, uint64_t index)
{
	struct uffdio_range r = {
		.start = (uintptr_t)guest_memory_page_ptr(&pc->m->vm.mem, index),
		.len = GUEST_PAGE_SIZE,
	};

	ioctl(pc->uffd, UFFDIO_WAKE, &r);
}

/* Is the page in the memfd (allocated), so a minor fault maps it? */
static bool pc_present(const struct pc_dest *pc, uint64_t index)
{
	return guest_memory_allocated(&pc->m->vm.mem) || pc_test(pc->written, index);
}

/* Minor mode: map n pages of the memfd into the guest's view; wakes waiters. */
static int pc_continue(struct pc_dest *pc, uint64_t index, uint64_t n)
{
	uint64_t done = 0;

	while (done < n) {
		struct uffdio_continue c = {
			.range = { .start = (uintptr_t)guest_memory_page_ptr(&pc->m->vm.mem,
									     index + done),
				   .len = (n - done) * GUEST_PAGE_SIZE },
		};
		int r = ioctl(pc->uffd, UFFDIO_CONTINUE, &c);
		if (c.mapped > 0)
			done += (uint64_t)c.mapped / GUEST_PAGE_SIZE;
		if (r == 0)
			break;
		if (errno == EEXIST) {
			pc_wake(pc, index + done);	/* mapped already */
			done++;
		} else if (errno != EAGAIN) {
			return -errno;
		}
	}
	return 0;
}

/* Data (NULL: zeros) into pages in the memfd, then into the guest's view. */
static int pc_fill_in_place(struct pc_dest *pc, uint64_t index, uint64_t n,
			    const uint8_t *data, bool always_clear)
{
	uint8_t *alias = guest_memory_page_alias(&pc->m->vm.mem, index);

	if (data) {
		memcpy(alias, data, n * GUEST_PAGE_SIZE);
	} else {
		for (uint64_t k = 0; k < n; k++)
			if (always_clear || pc_test(pc->written, index + k))
				memset(alias + k * GUEST_PAGE_SIZE, 0, GUEST_PAGE_SIZE);
	}
	return pc_continue(pc, index, n);
}

/*
 * A zero page into a hole.  In minor mode a page may be in the memfd
 * after all (a chunk allocated around received pages): then, for a page
 * not `known` yet, zeros in place.  A `known` page that is in the memfd
 * is never cleared: the guest may have it mapped and written it since it
 * was placed (a zero page placed by UFFDIO_ZEROPAGE has no `written` bit);
 * it is only mapped.  Returns 0 when zeros were placed, 1 when a page was
 * there already and keeps its content, else -errno.
 */
static int pc_zero(struct pc_dest *pc, uint64_t index, bool known)
{
	struct uffdio_zeropage z = {
		.range = { .start = (uintptr_t)guest_memory_page_ptr(&pc->m->vm.mem, index),
			   .len = GUEST_PAGE_SIZE },
	};

	if (ioctl(pc->uffd, UFFDIO_ZEROPAGE, &z) == 0)
		return 0;
	if (errno != EEXIST)
		return -errno;
	if (pc->minor && !known)
		return pc_fill_in_place(pc, index, 1, NULL, true);
	if (pc->minor) {
		int err = pc_continue(pc, index, 1);	/* maps it, or wakes if mapped */
		return err ? err : 1;
	}
	pc_wake(pc, index);	/* mapped already: a waiter can go on */
	return 1;
}

/*
 * Missing mode: a page arrived for a place that holds one already (EEXIST),
 * so the arrival is dropped.  Not expected (nothing else fills holes), but
 * then the digest must cover what is in memory, not what came.
 */
static void pc_note_existing(struct pc_dest *pc, uint64_t index)
{
	pc_note_placed(pc, index, guest_memory_page_alias(&pc->m->vm.mem, index));
}

/*
 * A fault on a page whose content is here: resolve it without the source.
 * Only ever map, never fill: the fault may be old news.  A vCPU's fault
 * message can be read only after the receiving thread placed that page
 * and woke the vCPU, which then wrote it; and a page known to be zero was
 * mapped by an earlier fault.  Zeroing such a page again (as this once
 * did through the alias, for zero pages, which have no `written` bit)
 * wipes what the guest wrote: "CORRUPT ... got 0x0" in the verify workload.
 */
static void pc_resolve_local(struct pc_dest *pc, uint64_t index)
{
	if (pc->minor && pc_present(pc, index)) {
		if (!pc_continue(pc, index, 1))
			pc->zero_local += !pc_test(pc->written, index);
	} else if (!pc_test(pc->written, index)) {
		/* A hole known to be zero (or mapped already): no need to ask. */
		if (pc_zero(pc, index, true) == 0)
			pc->zero_local++;
	} else {
		pc_wake(pc, index);	/* placed while the fault message waited */
	}
}

static void pc_handle_fault(struct pc_dest *pc, uint64_t addr)
{
	struct guest_memory *mem = &pc->m->vm.mem;
	uint64_t index = guest_memory_host_index(mem, (uintptr_t)addr);
	bool ask = false;

	if (index == GUEST_PAGE_NONE)
		return;
	pthread_mutex_lock(&pc->lock);
	pc->faults++;
	if (pc_test(pc->known, index)) {
		pc_resolve_local(pc, index);
	} else if (!pc_test(pc->requested, index)) {
		pc_set(pc->requested, index);
		pc->fault_ns[index] = vm_now_ns();
		pc->requests++;
		ask = true;
	}
	pthread_mutex_unlock(&pc->lock);
	if (ask) {
		uint8_t p[8];
		uint64_t gpa = guest_memory_page_gpa(mem, index);
		le_put(p, gpa, 8);
		pr_debug("post-copy: fault on page 0x%llx, asked", (unsigned long long)gpa);
		if (pc_dest_request(pc, p))
			pr_debug("post-copy: cannot request page 0x%llx", (unsigned long long)gpa);
	}
}

static void *pc_fault_thread(void *arg)
{
	struct pc_dest *pc = arg;

	pthread_setname_np(pthread_self(), "pc-faults");
	for (;;) {
		struct pollfd p[2] = {
			{ .fd = pc->uffd, .events = POLLIN },
			{ .fd = pc->stop_fd[0], .events = POLLIN },
		};
		if (poll(p, 2, -1) < 0 && errno != EINTR)
			break;
		if (p[1].revents)
			break;
		struct uffd_msg msg[16];
		ssize_t n = read(pc->uffd, msg, sizeof(msg));
		if (n <= 0)
			continue;
		for (ssize_t i = 0; i < n / (ssize_t)sizeof(msg[0]); i++)
			if (msg[i].event == UFFD_EVENT_PAGEFAULT)
				pc_handle_fault(pc, msg[i].arg.pagefault.address);
	}
	return NULL;
}

int pc_dest_start(struct pc_dest *pc, struct machine *m, struct mig_stream *s,
		  unsigned long *known, unsigned long *written, struct mig_digest *digest)
{
	uint64_t pages = guest_memory_pages(&m->vm.mem);
	int err;

	memset(pc, 0, sizeof(*pc));
	pc->uffd = pc->stop_fd[0] = pc->stop_fd[1] = -1;
	pc->m = m;
	pc->s = s;
	pc->known = known;
	pc->written = written;
	pc->digest = digest;
	pc->pages = pages;
	pc->start_ns = vm_now_ns();
	pthread_mutex_init(&pc->lock, NULL);
	pc->requested = calloc(pages / 64 + 1, sizeof(unsigned long));
	pc->fault_ns = calloc(pages, sizeof(uint64_t));
	if (!pc->requested || !pc->fault_ns)
		return -ENOMEM;
	err = pc_register(pc);
	if (!err && pipe2(pc->stop_fd, O_CLOEXEC) < 0)
		err = -errno;
	if (!err)
		err = -pthread_create(&pc->thread, NULL, pc_fault_thread, pc);
	pc->thread_started = !err;
	return err;
}

/*
 * Copy n pages into holes, as few calls as the kernel allows; each page
 * is noted as it lands, so partial progress is kept and a page that is
 * there already is not taken for the data dropped on it.
 */
static int pc_copy(struct pc_dest *pc, uint64_t index, uint64_t n, const uint8_t *data)
{
	uint64_t done = 0;

	while (done < n) {
		struct uffdio_copy c = {
			.dst = (uintptr_t)guest_memory_page_ptr(&pc->m->vm.mem, index + done),
			.src = (uintptr_t)(data + done * GUEST_PAGE_SIZE),
			.len = (n - done) * GUEST_PAGE_SIZE,
		};
		int r = ioctl(pc->uffd, UFFDIO_COPY, &c);
		for (uint64_t k = 0; c.copy > 0 && k < (uint64_t)c.copy / GUEST_PAGE_SIZE; k++, done++)
			pc_note_placed(pc, index + done, data + done * GUEST_PAGE_SIZE);
		if (r == 0)
			break;
		if (errno == EEXIST) {
			/* Not a hole after all (minor mode), or mapped already. */
			const uint8_t *page = data + done * GUEST_PAGE_SIZE;
			if (pc->minor) {
				int err = pc_fill_in_place(pc, index + done, 1, page, false);
				if (err)
					return err;
				pc_note_placed(pc, index + done, page);
			} else {
				pc_wake(pc, index + done);
				pc_note_existing(pc, index + done);
			}
			done++;
		} else if (errno != EAGAIN) {
			return -errno;
		}
	}
	return 0;
}

/* Place n unknown pages, all in the memfd or all holes. */
static int pc_fill(struct pc_dest *pc, uint64_t index, uint64_t n, const uint8_t *data)
{
	int err;

	if (pc->minor && pc_present(pc, index)) {
		/* Written through the alias while unmapped: the guest sees only this. */
		err = pc_fill_in_place(pc, index, n, data, false);
		for (uint64_t k = 0; k < n && !err; k++)
			pc_note_placed(pc, index + k, data ? data + k * GUEST_PAGE_SIZE : NULL);
		return err;
	}
	if (data)
		return pc_copy(pc, index, n, data);
	for (uint64_t k = 0; k < n; k++) {
		err = pc_zero(pc, index + k, false);
		if (err < 0)
			return err;
		if (err)
			pc_note_existing(pc, index + k);
		else
			pc_note_placed(pc, index + k, NULL);
	}
	return 0;
}

int pc_dest_place_run(struct pc_dest *pc, uint64_t index, uint64_t n, const uint8_t *data)
{
	int err = 0;

	pthread_mutex_lock(&pc->lock);
	for (uint64_t i = 0; i < n && !err;) {
		if (pc_test(pc->known, index + i)) {
			i++;	/* each page once; a repeat is the source's bug, harmless */
			continue;
		}
		bool present = pc_present(pc, index + i);
		uint64_t j = i + 1;
		while (j < n && !pc_test(pc->known, index + j) && pc_present(pc, index + j) == present)
			j++;
		err = pc_fill(pc, index + i, j - i, data ? data + i * GUEST_PAGE_SIZE : NULL);
		i = j;
	}
	pthread_mutex_unlock(&pc->lock);
	return err;
}

void pc_dest_stop(struct pc_dest *pc)
{
	struct guest_memory *mem = &pc->m->vm.mem;

	if (pc->thread_started) {
		if (write(pc->stop_fd[1], "x", 1) < 0)
			pr_debug("post-copy: wake: %s", strerror(errno));
		pthread_join(pc->thread, NULL);
		pc->thread_started = false;
	}
	if (pc->uffd >= 0) {
		for (unsigned r = 0; r < guest_memory_nr_regions(mem); r++) {
			struct uffdio_range range = {
				.start = (uintptr_t)guest_memory_page_ptr(mem,
						guest_memory_region_first(mem, r)),
				.len = guest_memory_region_pages(mem, r) * GUEST_PAGE_SIZE,
			};
			ioctl(pc->uffd, UFFDIO_UNREGISTER, &range);
		}
		close(pc->uffd);
		pc->uffd = -1;
	}
	for (int i = 0; i < 2; i++)
		if (pc->stop_fd[i] >= 0)
			close(pc->stop_fd[i]);
	pc->stop_fd[0] = pc->stop_fd[1] = -1;
	free(pc->requested);
	free(pc->fault_ns);
	pc->requested = NULL;
	pc->fault_ns = NULL;
}
