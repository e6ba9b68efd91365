/*
 * The board: the PC ferry builds on top of vmm/, devices/ and arch/.  A
 * KVM VM with RAM and vCPUs, COM1 (8250 UART at 0x3f8, IRQ 4) on a
 * character backend, the debug-exit port at 0xf4, virtio-mmio disks, and
 * PVH boot of an ELF kernel.  vmm/ knows nothing of devices or of this
 * file; the board wires them together and is the only layer that knows
 * them all.
 */
#ifndef FERRY_BOARD_MACHINE_H
#define FERRY_BOARD_MACHINE_H

#include "devices/block/backend.h"
#include "devices/chardev.h"
#include "devices/device.h"
#include "devices/serial.h"
#include "devices/virtio/blk.h"
#include "devices/virtio/net.h"
#include "vmm/vm.h"

/*
 * virtio-mmio transports, as QEMU's microvm lays them out: transport n is
 * 512 bytes at 0xfeb00000 + 0x200 n (below the IOAPIC at 0xfec00000) on
 * IRQ 5 + n (COM1 keeps 4).  Disks take the first slots, in --disk order,
 * then the NICs in --net order; the kernel learns of each from "virtio_mmio.device=512@ADDR:IRQ" on its
 * command line (docs/devices.md).
 */
#define MACHINE_VIRTIO_BASE	0xfeb00000ULL
#define MACHINE_VIRTIO_IRQ	5
#define MACHINE_VIRTIO_SLOTS	8
#define MACHINE_MAX_DISKS	MACHINE_VIRTIO_SLOTS
#define MACHINE_MAX_NICS	MACHINE_VIRTIO_SLOTS	/* disks and NICs share the slots */
/* COM1, debug-exit, then the virtio devices. */
#define MACHINE_MAX_DEVS	(2 + MACHINE_VIRTIO_SLOTS)

struct machine_config {
	uint64_t memory;
	unsigned vcpus;
	const char *kernel;	/* PVH ELF or bzImage; NULL: state arrives by migration */
	const char *initrd;	/* initial RAM disk (or NULL) */
	const char *cmdline;
	const char *serial;	/* chardev spec: stdio, file:PATH, unix:PATH */
	bool prealloc;		/* allocate all RAM up front */
	struct guest_memory *premade;	/* RAM allocated earlier, taken over */
	const struct x86_cpu_model *cpu_model;	/* --cpu-model (NULL: host) */
	const struct block_config *disks;	/* --disk, in order */
	unsigned nr_disks;			/* 0..MACHINE_MAX_DISKS */
	const struct net_config *nics;		/* --net, in order */
	unsigned nr_nics;			/* nr_disks + nr_nics <= MACHINE_VIRTIO_SLOTS */
	/* A migration's destination: disks open inactive, machine_activate() before running. */
	bool incoming;
	/*
	 * With incoming: the disks are this side's own images, which the
	 * migration fills (--copy-storage): open and locked from the start.
	 */
	bool own_disks;
};

/* One device instance: the `dev` its registry ops get. */
struct machine_dev {
	enum device_id id;
	unsigned index;		/* instance of its model: disk 0, 1, ..., NIC 0, 1, ... */
	void *dev;
};

struct machine;

/* One virtio-mmio slot and how it reaches KVM (machine_virtio.c). */
struct machine_virtio {
	struct vm *vm;
	struct virtio_mmio *t;
	uint64_t base;
	unsigned irq;
	int irq_fd;		/* eventfd registered as an irqfd, or -1 */
	bool irqfd;		/* registered with the current KVM VM */
	bool ioeventfd;		/* QueueNotify registered as ioeventfds */
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
	/* Every device instance, in registry order then instance order (wire order). */
	struct machine_dev devs[MACHINE_MAX_DEVS];
	unsigned nr_devs;
	struct virtio_blk disks[MACHINE_MAX_DISKS];
	unsigned nr_disks;
	struct virtio_net nics[MACHINE_MAX_NICS];
	unsigned nr_nics;
	struct machine_virtio virtio[MACHINE_VIRTIO_SLOTS];
	unsigned nr_virtio;
	char *kernel;
	char *cmdline;		/* the user's; the guest also gets the devices' */
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

/* The instance of model id numbered index, or NULL. */
void *machine_dev(const struct machine *m, enum device_id id, unsigned index);

/* ---- machine_boot.c ----------------------------------------------------- */

/*
 * Load `kernel` (a PVH ELF or a bzImage, told apart by their magic) and
 * `initrd` (or NULL) into guest RAM with the boot data each protocol wants,
 * and put vCPU 0 at the entry point.  Prints why and returns -errno on
 * failure: -ENOEXEC (neither format, or a malformed one), -ERANGE (does
 * not fit in RAM), -E2BIG (command line).
 */
int machine_boot(struct machine *m, const char *kernel, const char *initrd,
		 const char *cmdline) __attribute__((warn_unused_result));

/* ---- machine_virtio.c -------------------------------------------------- */

/* Create the disks of cfg in the first virtio slots.  Returns 0 or -errno (logged). */
int machine_virtio_add_disks(struct machine *m, const struct machine_config *cfg)
	__attribute__((warn_unused_result));
/* Create the NICs of cfg in the slots after the disks.  Returns 0 or -errno (logged). */
int machine_virtio_add_nics(struct machine *m, const struct machine_config *cfg)
	__attribute__((warn_unused_result));
/*
 * Output commit of every NIC (replication): keep the frames the guest
 * sends from now on, tagged `epoch`; close the current epoch (vCPUs
 * paused); send those of epochs <= upto; stop keeping (sending what is
 * kept, or dropping it).  Any thread; no NICs, nothing to do.
 */
void machine_output_hold(struct machine *m, uint64_t epoch);
void machine_output_mark(struct machine *m);
void machine_output_release(struct machine *m, uint64_t upto);
void machine_output_stop(struct machine *m, bool send);
/*
 * Register every slot's irqfd and ioeventfds with the current KVM VM
 * (again after vm_recreate_kvm(), which drops them); a KVM without them
 * gets KVM_IRQ_LINE and MMIO exits instead.
 */
void machine_virtio_wire(struct machine *m);
/*
 * Append " virtio_mmio.device=512@0x...:IRQ" for every slot to the
 * command line in buf (size len).  Returns 0 or -E2BIG.
 */
int machine_virtio_cmdline(const struct machine *m, char *buf, size_t len)
	__attribute__((warn_unused_result));
/* Stop and free the virtio devices (their threads first). */
void machine_virtio_destroy(struct machine *m);

#endif
