#include "vmm/memory.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "util/log.h"

int guest_memory_create(struct guest_memory *mem, uint64_t size)
{
	uint64_t low, high;

	memset(mem, 0, sizeof(*mem));
	mem->fd = -1;
	if (size < GUEST_MIN_MEMORY || size > GUEST_MAX_MEMORY || size % (2ULL << 20))
		return -EINVAL;

	mem->fd = memfd_create("ferry-ram", MFD_CLOEXEC);
	if (mem->fd < 0)
		return -errno;
	if (ftruncate(mem->fd, (off_t)size) < 0)
		goto fail;
	mem->host = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE,
			 mem->fd, 0);
	if (mem->host == MAP_FAILED) {
		mem->host = NULL;
		goto fail;
	}
	mem->alias = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE,
			  mem->fd, 0);
	if (mem->alias == MAP_FAILED) {
		mem->alias = NULL;
		goto fail;
	}
	/* Transparent huge pages make the guest and the dirty log cheaper. */
	madvise(mem->host, size, MADV_HUGEPAGE);
	mem->size = size;

	low = size < GUEST_LOW_LIMIT ? size : GUEST_LOW_LIMIT;
	high = size - low;
	mem->regions[0] = (struct guest_region){ .gpa = 0, .size = low, .offset = 0, .slot = 0 };
	mem->nr_regions = 1;
	if (high) {
		mem->regions[1] = (struct guest_region){
			.gpa = GUEST_HIGH_START, .size = high, .offset = low, .slot = 1,
		};
		mem->nr_regions = 2;
	}
	return 0;
fail:;
	int err = -errno;
	guest_memory_destroy(mem);
	return err;
}

void guest_memory_destroy(struct guest_memory *mem)
{
	if (mem->host)
		munmap(mem->host, mem->size);
	if (mem->alias)
		munmap(mem->alias, mem->size);
	if (mem->fd >= 0)
		close(mem->fd);
	memset(mem, 0, sizeof(*mem));
	mem->fd = -1;
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

int guest_memory_prealloc(struct guest_memory *mem, bool map_guest)
{
	/* fallocate allocates the pages cheaply; populate maps them too. */
	if (fallocate(mem->fd, 0, 0, (off_t)mem->size) < 0)
		return -errno;
	if (madvise(map_guest ? mem->host : mem->alias, mem->size, MADV_POPULATE_WRITE) < 0)
		return -errno;
	mem->allocated = true;
	return 0;
}

int guest_memory_register(const struct guest_memory *mem, int vm_fd, bool dirty_log)
{
	for (unsigned i = 0; i < mem->nr_regions; i++) {
		const struct guest_region *r = &mem->regions[i];
		struct kvm_userspace_memory_region kr = {
			.slot = r->slot,
			.flags = dirty_log ? KVM_MEM_LOG_DIRTY_PAGES : 0,
			.guest_phys_addr = r->gpa,
			.memory_size = r->size,
			.userspace_addr = (uintptr_t)(mem->host + r->offset),
		};
		if (ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, &kr) < 0) {
			int err = -errno;
			pr_err("KVM_SET_USER_MEMORY_REGION slot %u: %s", r->slot, strerror(-err));
			return err;
		}
	}
	return 0;
}

void *guest_memory_ptr(const struct guest_memory *mem, uint64_t gpa, uint64_t len)
{
	for (unsigned i = 0; i < mem->nr_regions; i++) {
		const struct guest_region *r = &mem->regions[i];
		if (gpa >= r->gpa && gpa - r->gpa <= r->size && len <= r->size - (gpa - r->gpa))
			return mem->host + r->offset + (gpa - r->gpa);
	}
	return NULL;
}

void *guest_memory_alias_ptr(const struct guest_memory *mem, uint64_t gpa, uint64_t len)
{
	uint8_t *p = guest_memory_ptr(mem, gpa, len);

	return p ? mem->alias + (p - mem->host) : NULL;
}

uint64_t guest_memory_page_index(const struct guest_memory *mem, uint64_t gpa)
{
	for (unsigned i = 0; i < mem->nr_regions; i++) {
		const struct guest_region *r = &mem->regions[i];
		if (gpa >= r->gpa && gpa - r->gpa < r->size)
			return (r->offset + gpa - r->gpa) / GUEST_PAGE_SIZE;
	}
	return GUEST_PAGE_NONE;
}

uint64_t guest_memory_page_gpa(const struct guest_memory *mem, uint64_t index)
{
	unsigned r;
	uint64_t page;

	if (!guest_memory_locate(mem, index, &r, &page))
		return GUEST_PAGE_NONE;
	return mem->regions[r].gpa + page * GUEST_PAGE_SIZE;
}

uint64_t guest_memory_host_index(const struct guest_memory *mem, uintptr_t hva)
{
	uintptr_t base = (uintptr_t)mem->host;

	if (!mem->host || hva < base || hva - base >= mem->size)
		return GUEST_PAGE_NONE;
	return (hva - base) / GUEST_PAGE_SIZE;
}

uint64_t guest_memory_region_pages(const struct guest_memory *mem, unsigned r)
{
	return r < mem->nr_regions ? mem->regions[r].size / GUEST_PAGE_SIZE : 0;
}

uint64_t guest_memory_region_first(const struct guest_memory *mem, unsigned r)
{
	return r < mem->nr_regions ? mem->regions[r].offset / GUEST_PAGE_SIZE : 0;
}

uint64_t guest_memory_region_gpa(const struct guest_memory *mem, unsigned r)
{
	return r < mem->nr_regions ? mem->regions[r].gpa : 0;
}

bool guest_memory_locate(const struct guest_memory *mem, uint64_t index, unsigned *r,
			 uint64_t *page)
{
	for (unsigned i = 0; i < mem->nr_regions; i++) {
		uint64_t first = mem->regions[i].offset / GUEST_PAGE_SIZE;
		uint64_t n = mem->regions[i].size / GUEST_PAGE_SIZE;
		if (index >= first && index - first < n) {
			*r = i;
			*page = index - first;
			return true;
		}
	}
	return false;
}

static bool guest_memory_range_ok(const struct guest_memory *mem, uint64_t first, uint64_t n)
{
	uint64_t pages = guest_memory_pages(mem);

	return first <= pages && n <= pages - first;
}

int guest_memory_punch(struct guest_memory *mem, uint64_t first, uint64_t n)
{
	if (!guest_memory_range_ok(mem, first, n))
		return -ERANGE;
	if (fallocate(mem->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      (off_t)(first * GUEST_PAGE_SIZE), (off_t)(n * GUEST_PAGE_SIZE)) < 0)
		return -errno;
	return 0;
}

int guest_memory_populate(struct guest_memory *mem, uint64_t first, uint64_t n)
{
	if (!guest_memory_range_ok(mem, first, n))
		return -ERANGE;
	if (madvise(guest_memory_page_alias(mem, first), n * GUEST_PAGE_SIZE,
		    MADV_POPULATE_WRITE) < 0)
		return -errno;
	return 0;
}

int guest_memory_unmap_guest(struct guest_memory *mem, uint64_t first, uint64_t n)
{
	if (!guest_memory_range_ok(mem, first, n))
		return -ERANGE;
	if (madvise(guest_memory_page_ptr(mem, first), n * GUEST_PAGE_SIZE, MADV_DONTNEED) < 0)
		return -errno;
	return 0;
}

bool guest_memory_is_hole(const struct guest_memory *mem, uint64_t first, uint64_t n)
{
	off_t off = (off_t)(first * GUEST_PAGE_SIZE);
	off_t data = lseek(mem->fd, off, SEEK_DATA);

	if (data < 0)
		return errno == ENXIO;	/* no data from off to the end */
	return (uint64_t)data >= (first + n) * GUEST_PAGE_SIZE;
}

bool guest_memory_data_run(const struct guest_memory *mem, uint64_t first, uint64_t n,
			   uint64_t *run_first, uint64_t *run_n)
{
	struct guest_data_cursor cur = { 0 };

	return guest_memory_data_run_at(mem, &cur, first, n, run_first, run_n);
}

/* Clip the known extent [data, hole) to [first, end). */
static bool data_run_clip(const struct guest_data_cursor *cur, uint64_t first, uint64_t end,
			  uint64_t *run_first, uint64_t *run_n)
{
	uint64_t rf = cur->data > first ? cur->data : first;

	if (rf >= end)
		return false;
	*run_first = rf;
	*run_n = (cur->hole < end ? cur->hole : end) - rf;
	return true;
}

bool guest_memory_data_run_at(const struct guest_memory *mem, struct guest_data_cursor *cur,
			      uint64_t first, uint64_t n, uint64_t *run_first, uint64_t *run_n)
{
	uint64_t end = first + n;
	off_t data, hole;

	if (!guest_memory_range_ok(mem, first, n) || !n)
		return false;
	if (cur->hole && cur->from <= first && first < cur->hole)
		return data_run_clip(cur, first, end, run_first, run_n);
	data = lseek(mem->fd, (off_t)(first * GUEST_PAGE_SIZE), SEEK_DATA);
	if (data < 0 && errno == ENXIO) {
		/* nothing allocated from here to the end */
		*cur = (struct guest_data_cursor){ first, UINT64_MAX, UINT64_MAX };
		return false;
	}
	if (data < 0) {
		*cur = (struct guest_data_cursor){ 0 };
		*run_first = first;
		*run_n = n;
		return true;
	}
	hole = lseek(mem->fd, data, SEEK_HOLE);
	*cur = (struct guest_data_cursor){ first, (uint64_t)data / GUEST_PAGE_SIZE, 0 };
	if (hole < 0) {
		/* the rest of the range counts as data; remember nothing past it */
		cur->hole = end > cur->data ? end : cur->data + 1;
	} else {
		/* A hole inside a page cannot be: round up so no byte of data is lost. */
		cur->hole = ((uint64_t)hole + GUEST_PAGE_SIZE - 1) / GUEST_PAGE_SIZE;
	}
	return data_run_clip(cur, first, end, run_first, run_n);
}
