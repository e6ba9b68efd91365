/*
 * Debug-exit port, compatible with QEMU's isa-debug-exit (iobase 0xf4,
 * iosize 4): the value the guest writes becomes ferry's exit status.
 * (QEMU exits with (value << 1) | 1 for the same write.)
 */
#ifndef FERRY_DEVICES_DEBUG_EXIT_H
#define FERRY_DEVICES_DEBUG_EXIT_H

#include "devices/device.h"
#include "vmm/vm.h"

#define DEBUG_EXIT_PORT 0xf4
#define DEBUG_EXIT_SIZE 4

/* Claim the port on vm's port bus.  Returns 0 or -errno. */
int debug_exit_register(struct vm *vm) __attribute__((warn_unused_result));

/*
 * Its registry entry: no state (a write ends the guest at once, so
 * nothing is ever pending), no record, nothing to quiesce.
 */
extern const struct device_ops debug_exit_device_ops;

#endif
