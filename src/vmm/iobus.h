/*
 * Port I/O and MMIO dispatch for exits that KVM hands to user space.
 * Devices register a range with an ops table; the bus is filled before the
 * vCPUs start and only read afterwards, so lookups take no lock.  Each
 * device serialises its own state.
 */
#ifndef FERRY_VMM_IOBUS_H
#define FERRY_VMM_IOBUS_H

#include <stdbool.h>
#include <stdint.h>

struct iobus_ops {
	/* Fill `data` (len bytes) for a read at `offset` within the range. */
	void (*read)(void *opaque, uint64_t offset, void *data, unsigned len);
	void (*write)(void *opaque, uint64_t offset, const void *data, unsigned len);
};

#define IOBUS_MAX_RANGES 32

struct iobus_range {
	uint64_t base, len;
	const struct iobus_ops *ops;
	void *opaque;
	const char *name;
};

struct iobus {
	const char *name;	/* "pio" or "mmio", for messages */
	unsigned nr;
	struct iobus_range ranges[IOBUS_MAX_RANGES];
	/* Addresses already reported as unclaimed, so each is logged once. */
	uint64_t unclaimed_logged[64];
	unsigned nr_logged;
};

void iobus_init(struct iobus *bus, const char *name);

/* Claim [base, base+len).  Returns 0, -EBUSY on overlap, -ENOSPC when full. */
int iobus_register(struct iobus *bus, uint64_t base, uint64_t len,
		   const struct iobus_ops *ops, void *opaque, const char *name)
	__attribute__((warn_unused_result));

/*
 * Dispatch an access.  Unclaimed reads return all ones, unclaimed writes are
 * dropped; both are logged once per address.  Returns true if claimed.
 */
bool iobus_access(struct iobus *bus, uint64_t addr, void *data, unsigned len, bool is_write);

#endif
