#include "devices/debug_exit.h"

#include <string.h>

static void debug_exit_write(void *opaque, uint64_t offset, const void *data, unsigned len)
{
	uint32_t value = 0;

	if (offset != 0 || len > sizeof(value))
		return;
	memcpy(&value, data, len);
	/* Exit statuses are 8 bits; a larger failure value must not read as 0. */
	vm_request_stop(opaque, VM_STOP_GUEST_EXIT, value > 255 ? 255 : (int)value);
}

static const struct iobus_ops debug_exit_ops = {
	.write = debug_exit_write,
};

int debug_exit_register(struct vm *vm)
{
	return iobus_register(&vm->pio, DEBUG_EXIT_PORT, DEBUG_EXIT_SIZE, &debug_exit_ops, vm,
			      "debug-exit");
}

const struct device_ops debug_exit_device_ops = {
	.name = "debug-exit",
};
