/*
 * The board: the PC ferry builds on top of vmm/, devices/ and arch/.  A
 * KVM VM with RAM and vCPUs, COM1 (8250 UART at 0x3f8, IRQ 4) on a
 * character backend, the debug-exit port at 0xf4, and PVH boot of an ELF
 * kernel.  vmm/ knows nothing of devices or of this file; the board wires
 * them together and is the only layer that knows them all.
 */
#ifndef FERRY_BOARD_MACHINE_H
#define FERRY_BOARD_MACHINE_H

#include "devices/chardev.h"
#include "devices/device.h"
#include "devices/serial.h"
#include "vmm/vm.h"

struct machine_config {
	uint64_t memory;
	unsigned vcpus;
	const char *kernel;	/* PVH ELF path; NULL: state arrives by migration */
	const char *cmdline;
	const char *serial;	/* chardev spec: stdio, file:PATH, unix:PATH */
	bool prealloc;		/* allocate all RAM up front */
	struct guest_memory *premade;	/* RAM allocated earlier, taken over */
};

/*
 * Filled by machine_create() on the main thread before any vCPU or
 * chardev thread starts; read-only afterwards (the pointers and the
 * layout: vm, serial_chr and com1 guard their own state, see vm.h,
 * chardev.h and serial.h).
 */
struct machine {
	struct vm vm;
	struct chardev serial_chr;
	struct serial com1;
	/* Each device's instance by registry id: the `dev` its ops get. */
	void *devs[DEVICE_NR];
	char *kernel;
	char *cmdline;
};

/*
 * Build the machine and, if cfg->kernel is set, boot-load the kernel;
 * vCPUs are not started.  On
 * failure prints why and returns -errno: -ENOENT/-EACCES (no /dev/kvm or
 * kernel file), -ENOEXEC (not a PVH ELF), -ERANGE (does not fit in RAM),
 * -EADDRINUSE (serial socket busy), -EINVAL (bad configuration).
 */
int machine_create(struct machine *m, const struct machine_config *cfg)
	__attribute__((warn_unused_result));
void machine_destroy(struct machine *m);

#endif
