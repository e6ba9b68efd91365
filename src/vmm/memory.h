/*
 * Guest RAM: one memfd (MAP_SHARED), mapped once in ferry and handed to KVM
 * as up to two slots: below the 32-bit PCI/APIC hole and above 4 GiB.
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
	uint8_t *host;		/* whole memfd mapped MAP_SHARED */
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
 * Allocate and map every page now (like QEMU's -mem-prealloc), so neither
 * the guest nor an incoming migration pays for first touches later.
 * Returns 0 or -errno (-ENOMEM: not enough memory for the whole guest).
 */
int guest_memory_prealloc(struct guest_memory *mem) __attribute__((warn_unused_result));

/* Register every region with KVM on vm_fd.  Returns 0 or -errno. */
int guest_memory_register(const struct guest_memory *mem, int vm_fd, bool dirty_log)
	__attribute__((warn_unused_result));

/*
 * Host pointer for [gpa, gpa + len) if the whole range lies inside one RAM
 * region, else NULL.  Safe on any gpa/len (no overflow).
 */
void *guest_memory_ptr(const struct guest_memory *mem, uint64_t gpa, uint64_t len);

#endif
