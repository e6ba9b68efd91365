/*
 * Guest RAM: one memfd (MAP_SHARED), handed to KVM as up to two slots:
 * below the 32-bit PCI/APIC hole and above 4 GiB.  It is mapped twice in
 * ferry: `host` is the guest's view (the one KVM uses), `alias` a private
 * view of the same pages, through which ferry can fill a page while the
 * guest's view does not map it yet (userfaultfd minor faults).
 */
#ifndef FERRY_VMM_MEMORY_H
#define FERRY_VMM_MEMORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GUEST_PAGE_SIZE   4096ULL
#define GUEST_LOW_LIMIT   0xC0000000ULL	/* RAM below 4G stops here (3 GiB) */
#define GUEST_HIGH_START  0x100000000ULL
#define GUEST_MIN_MEMORY  (16ULL << 20)
#define GUEST_MAX_MEMORY  (1ULL << 40)
#define GUEST_MAX_REGIONS 2

struct guest_region {
	uint64_t gpa;		/* guest-physical start */
	uint64_t size;
	uint64_t offset;	/* offset in the memfd and in host mapping */
	uint32_t slot;		/* KVM memory slot */
};

/* Owned by the VM; immutable after guest_memory_create() except the fd. */
struct guest_memory {
	int fd;			/* memfd backing all RAM */
	uint8_t *host;		/* whole memfd mapped MAP_SHARED: the guest's view */
	uint8_t *alias;		/* the same, mapped again: ferry's own view */
	bool allocated;		/* every page allocated (guest_memory_prealloc) */
	uint64_t size;		/* total RAM bytes */
	unsigned nr_regions;
	struct guest_region regions[GUEST_MAX_REGIONS];
};

/*
 * Allocate `size` bytes of RAM (a multiple of 2 MiB between GUEST_MIN_MEMORY
 * and GUEST_MAX_MEMORY) and lay out its regions.  Returns 0 or -errno.
 */
int guest_memory_create(struct guest_memory *mem, uint64_t size)
	__attribute__((warn_unused_result));
void guest_memory_destroy(struct guest_memory *mem);

/*
 * Allocate every page now (like QEMU's -mem-prealloc), so neither the
 * guest nor an incoming migration pays for first touches later.  Maps the
 * pages in the guest's view too if `map_guest`; else only in the alias,
 * and the guest's view maps them as the guest first touches them (cheap:
 * minor faults).  Returns 0 or -errno (-ENOMEM: not enough memory).
 */
int guest_memory_prealloc(struct guest_memory *mem, bool map_guest)
	__attribute__((warn_unused_result));

/* Register every region with KVM on vm_fd.  Returns 0 or -errno. */
int guest_memory_register(const struct guest_memory *mem, int vm_fd, bool dirty_log)
	__attribute__((warn_unused_result));

/*
 * Host pointer for [gpa, gpa + len) if the whole range lies inside one RAM
 * region, else NULL.  Safe on any gpa/len (no overflow).
 */
void *guest_memory_ptr(const struct guest_memory *mem, uint64_t gpa, uint64_t len);

/* The same range in the alias view, or NULL. */
void *guest_memory_alias_ptr(const struct guest_memory *mem, uint64_t gpa, uint64_t len);

/*
 * Page indexes: every page of RAM has one, 0 .. guest_memory_pages() - 1,
 * in address order over the regions (it is the page's place in the memfd
 * and in both views).  Migration counts, tracks and names pages by index;
 * only these functions know how indexes, regions and addresses relate.
 */
#define GUEST_PAGE_NONE UINT64_MAX

static inline uint64_t guest_memory_pages(const struct guest_memory *mem)
{
	return mem->size / GUEST_PAGE_SIZE;
}

/* Index of the page holding gpa, or GUEST_PAGE_NONE outside RAM. */
uint64_t guest_memory_page_index(const struct guest_memory *mem, uint64_t gpa);
/* Guest-physical address of page `index`, or GUEST_PAGE_NONE past the end. */
uint64_t guest_memory_page_gpa(const struct guest_memory *mem, uint64_t index);
/* Index of the page at host address hva in the guest's view, or GUEST_PAGE_NONE. */
uint64_t guest_memory_host_index(const struct guest_memory *mem, uintptr_t hva);

/* Page `index` (which must be < guest_memory_pages()) in the guest's view / the alias. */
static inline void *guest_memory_page_ptr(const struct guest_memory *mem, uint64_t index)
{
	return mem->host + index * GUEST_PAGE_SIZE;
}

static inline void *guest_memory_page_alias(const struct guest_memory *mem, uint64_t index)
{
	return mem->alias + index * GUEST_PAGE_SIZE;
}

/* Regions as page ranges: the dirty log (dirty.h) works region by region. */
static inline unsigned guest_memory_nr_regions(const struct guest_memory *mem)
{
	return mem->nr_regions;
}

/* Pages in region r, the index of its first page, its guest-physical start. */
uint64_t guest_memory_region_pages(const struct guest_memory *mem, unsigned r);
uint64_t guest_memory_region_first(const struct guest_memory *mem, unsigned r);
uint64_t guest_memory_region_gpa(const struct guest_memory *mem, unsigned r);

/* Page index -> region and page within it; false if outside RAM. */
bool guest_memory_locate(const struct guest_memory *mem, uint64_t index, unsigned *r,
			 uint64_t *page);

/* Every page allocated up front (guest_memory_prealloc): no holes. */
static inline bool guest_memory_allocated(const struct guest_memory *mem)
{
	return mem->allocated;
}

/*
 * Backing of pages [first, first + n): calls outside RAM return -ERANGE.
 * punch: free them (holes, which read as zero; the next touch faults in a
 * fresh page).  populate: allocate them and map them in the alias view,
 * before data lands there (far cheaper than a fault per page); the
 * guest's view maps them as the guest first touches them.  unmap_guest:
 * drop them from the guest's view only; their content stays in the memfd.
 * Return 0 or -errno.
 */
int guest_memory_punch(struct guest_memory *mem, uint64_t first, uint64_t n)
	__attribute__((warn_unused_result));
/* populate is best effort: on failure the pages are left to page faults. */
int guest_memory_populate(struct guest_memory *mem, uint64_t first, uint64_t n);
int guest_memory_unmap_guest(struct guest_memory *mem, uint64_t first, uint64_t n)
	__attribute__((warn_unused_result));

/* True if no page of [first, first + n) is allocated (all holes, all zero). */
bool guest_memory_is_hole(const struct guest_memory *mem, uint64_t first, uint64_t n);

/*
 * The first run of allocated pages inside [first, first + n): its first
 * page in *run_first and its length in *run_n, clipped to the range.
 * False when the range holds no allocated page.  Where the kernel cannot
 * say, the whole rest of the range counts as allocated (never a page of
 * data taken for a hole).
 */
bool guest_memory_data_run(const struct guest_memory *mem, uint64_t first, uint64_t n,
			   uint64_t *run_first, uint64_t *run_n);

/*
 * What the last lseek()s found, for a walk that asks guest_memory_data_run_at()
 * about range after range going forward: pages [from, data) are holes and
 * [data, hole) allocated.  SEEK_HOLE scans every allocated page up to the
 * next hole, so in RAM full of data one call per block would read the
 * whole rest of RAM each time (quadratic); with a cursor it runs once per
 * extent.  Only for memory whose allocation does not change during the
 * walk, as far as the walk looks at it (a paused guest; blocks the guest
 * cannot write until they are copied).  Start zeroed.
 */
struct guest_data_cursor {
	uint64_t from, data, hole;	/* pages; hole == 0: nothing known */
};

/* guest_memory_data_run(), answered from *cur when it covers `first`. */
bool guest_memory_data_run_at(const struct guest_memory *mem, struct guest_data_cursor *cur,
			      uint64_t first, uint64_t n, uint64_t *run_first, uint64_t *run_n);

#endif
