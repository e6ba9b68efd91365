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

#endif
