#include "vmm/iobus.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "util/log.h"

static pthread_mutex_t iobus_log_lock = PTHREAD_MUTEX_INITIALIZER;

void iobus_init(struct iobus *bus, const char *name)
{
	memset(bus, 0, sizeof(*bus));
	bus->name = name;
}

int iobus_register(struct iobus *bus, uint64_t base, uint64_t len,
		   const struct iobus_ops *ops, void *opaque, const char *name)
{
	if (!len || base + len < base)
		return -EINVAL;
	for (unsigned i = 0; i < bus->nr; i++) {
		const struct iobus_range *r = &bus->ranges[i];
		if (base < r->base + r->len && r->base < base + len)
			return -EBUSY;
	}
	if (bus->nr == IOBUS_MAX_RANGES)
		return -ENOSPC;
	bus->ranges[bus->nr++] = (struct iobus_range){
		.base = base, .len = len, .ops = ops, .opaque = opaque, .name = name,
	};
	return 0;
}

static void iobus_log_unclaimed(struct iobus *bus, uint64_t addr, unsigned len, bool is_write)
{
	bool seen = false;

	pthread_mutex_lock(&iobus_log_lock);
	for (unsigned i = 0; i < bus->nr_logged; i++)
		seen |= bus->unclaimed_logged[i] == addr;
	if (!seen && bus->nr_logged < sizeof(bus->unclaimed_logged) / sizeof(uint64_t))
		bus->unclaimed_logged[bus->nr_logged++] = addr;
	pthread_mutex_unlock(&iobus_log_lock);
	if (!seen)
		pr_warn("ignoring %s %s at 0x%llx (%u bytes): no device there", bus->name,
			 is_write ? "write" : "read", (unsigned long long)addr, len);
}

bool iobus_access(struct iobus *bus, uint64_t addr, void *data, unsigned len, bool is_write)
{
	for (unsigned i = 0; i < bus->nr; i++) {
		const struct iobus_range *r = &bus->ranges[i];
		if (addr < r->base || addr - r->base >= r->len)
			continue;
		if (is_write) {
			if (r->ops->write)
				r->ops->write(r->opaque, addr - r->base, data, len);
		} else if (r->ops->read) {
			r->ops->read(r->opaque, addr - r->base, data, len);
		} else {
			memset(data, 0xff, len);
		}
		return true;
	}
	if (!is_write)
		memset(data, 0xff, len);
	iobus_log_unclaimed(bus, addr, len, is_write);
	return false;
}
