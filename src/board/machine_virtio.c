/*
 * The board's virtio-mmio slots: where each transport sits, its IRQ, and
 * the KVM plumbing that keeps the data path off the vCPU threads: the
 * QueueNotify register as ioeventfds (one per queue, matched on the
 * queue index) and the interrupt as an irqfd.  Without them the same
 * eventfds are signalled by ferry on an MMIO exit and the IRQ is pulsed
 * with KVM_IRQ_LINE: slower, same behaviour.
 */
#include "board/machine.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "util/log.h"
#include "vmm/dirty.h"

/* Device threads report the guest RAM they wrote: migration resends it. */
static void machine_virtio_dirty(void *opaque, uint64_t gpa, uint64_t len)
{
	struct machine_virtio *s = opaque;

	vm_mark_dirty(s->vm, gpa, len);
}

/* One edge on the slot's line (virtio-mmio interrupts are edges, as on microvm). */
static void machine_virtio_raise(void *opaque)
{
	struct machine_virtio *s = opaque;
	uint64_t one = 1;

	if (__atomic_load_n(&s->irqfd, __ATOMIC_ACQUIRE) && write(s->irq_fd, &one, sizeof(one)) == 8)
		return;
	vm_set_irq(s->vm, s->irq, 1);
	vm_set_irq(s->vm, s->irq, 0);
}

void machine_virtio_wire(struct machine *m)
{
	for (unsigned i = 0; i < m->nr_virtio; i++) {
		struct machine_virtio *s = &m->virtio[i];
		bool ok = s->irq_fd >= 0 && !vm_add_irqfd(&m->vm, s->irq, s->irq_fd);

		__atomic_store_n(&s->irqfd, ok, __ATOMIC_RELEASE);
		s->ioeventfd = true;
		for (unsigned q = 0; q < s->t->nr_queues; q++)
			if (vm_add_ioeventfd(&m->vm, s->base + VIRTIO_MMIO_QUEUE_NOTIFY, 4, q,
					     s->t->kick_fd[q]))
				s->ioeventfd = false;
		if (!s->irqfd || !s->ioeventfd)
			pr_debug("virtio slot %u: %s%s", i, s->irqfd ? "" : "no irqfd ",
				 s->ioeventfd ? "" : "no ioeventfd");
	}
}

/* Claim the next slot for a device about to be created. */
static struct machine_virtio *machine_virtio_slot(struct machine *m)
{
	struct machine_virtio *s = &m->virtio[m->nr_virtio];

	*s = (struct machine_virtio){
		.vm = &m->vm, .base = MACHINE_VIRTIO_BASE + 0x200ULL * m->nr_virtio,
		.irq = MACHINE_VIRTIO_IRQ + m->nr_virtio, .irq_fd = -1,
	};
	return s;
}

/* The device exists: put it on the bus.  Returns 0 or -errno. */
static int machine_virtio_plug(struct machine *m, struct machine_virtio *s,
			       struct virtio_mmio *t, const char *name)
{
	s->t = t;
	s->irq_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	m->nr_virtio++;
	return iobus_register(&m->vm.mmio, s->base, VIRTIO_MMIO_SIZE, &virtio_mmio_iobus_ops, t,
			      name);
}

int machine_virtio_add_disks(struct machine *m, const struct machine_config *cfg)
{
	if (cfg->nr_disks > MACHINE_MAX_DISKS) {
		pr_err("%u disks: ferry has room for %u", cfg->nr_disks, MACHINE_MAX_DISKS);
		return -EINVAL;
	}
	for (unsigned i = 0; i < cfg->nr_disks; i++) {
		struct machine_virtio *s = machine_virtio_slot(m);
		struct virtio_blk_config c = {
			.disk = &cfg->disks[i], .index = i, .ram = &m->vm.mem,
			.dirty = machine_virtio_dirty, .raise = machine_virtio_raise, .opaque = s,
			.inactive = cfg->incoming && !cfg->own_disks,
		};
		int err = virtio_blk_create(&m->disks[i], &c);
		if (err)
			return err;
		m->nr_disks++;
		err = machine_virtio_plug(m, s, &m->disks[i].t, "virtio-blk");
		if (err)
			return err;
		m->devs[m->nr_devs++] = (struct machine_dev){
			.id = DEVICE_VIRTIO_BLK, .index = i, .dev = &m->disks[i],
		};
	}
	return 0;
}

/* A NIC touches guest memory only while this is true (see virtio/net.h). */
static bool machine_virtio_running(void *opaque)
{
	struct machine_virtio *s = opaque;

	return vm_get_state(s->vm) == VM_STATE_RUNNING;
}

int machine_virtio_add_nics(struct machine *m, const struct machine_config *cfg)
{
	if (cfg->nr_nics > MACHINE_VIRTIO_SLOTS - m->nr_virtio) {
		pr_err("%u disks and %u NICs: ferry has room for %u virtio devices", m->nr_disks,
		       cfg->nr_nics, MACHINE_VIRTIO_SLOTS);
		return -EINVAL;
	}
	for (unsigned i = 0; i < cfg->nr_nics; i++) {
		struct machine_virtio *s = machine_virtio_slot(m);
		struct virtio_net_config c = {
			.net = &cfg->nics[i], .index = i, .ram = &m->vm.mem,
			.dirty = machine_virtio_dirty, .raise = machine_virtio_raise,
			.running = machine_virtio_running, .opaque = s,
		};
		int err = virtio_net_create(&m->nics[i], &c);
		if (err)
			return err;
		m->nr_nics++;
		err = machine_virtio_plug(m, s, &m->nics[i].t, "virtio-net");
		if (err)
			return err;
		m->devs[m->nr_devs++] = (struct machine_dev){
			.id = DEVICE_VIRTIO_NET, .index = i, .dev = &m->nics[i],
		};
	}
	return 0;
}

int machine_virtio_cmdline(const struct machine *m, char *buf, size_t len)
{
	size_t at = strlen(buf);

	for (unsigned i = 0; i < m->nr_virtio; i++) {
		int n = snprintf(buf + at, len - at, "%svirtio_mmio.device=%u@0x%llx:%u",
				 at ? " " : "", VIRTIO_MMIO_SIZE,
				 (unsigned long long)m->virtio[i].base, m->virtio[i].irq);
		if (n < 0 || (size_t)n >= len - at)
			return -E2BIG;
		at += (size_t)n;
	}
	return 0;
}

void machine_virtio_destroy(struct machine *m)
{
	for (unsigned i = 0; i < m->nr_disks; i++)
		virtio_blk_destroy(&m->disks[i]);
	m->nr_disks = 0;
	for (unsigned i = 0; i < m->nr_nics; i++)
		virtio_net_destroy(&m->nics[i]);
	m->nr_nics = 0;
	for (unsigned i = 0; i < m->nr_virtio; i++)
		if (m->virtio[i].irq_fd >= 0)
			close(m->virtio[i].irq_fd);
	m->nr_virtio = 0;
}

void machine_output_hold(struct machine *m, uint64_t epoch)
{
	for (unsigned i = 0; i < m->nr_nics; i++)
		virtio_net_output_hold(&m->nics[i], epoch);
}

void machine_output_mark(struct machine *m)
{
	for (unsigned i = 0; i < m->nr_nics; i++)
		virtio_net_output_mark(&m->nics[i]);
}

void machine_output_release(struct machine *m, uint64_t upto)
{
	for (unsigned i = 0; i < m->nr_nics; i++)
		virtio_net_output_release(&m->nics[i], upto);
}

void machine_output_stop(struct machine *m, bool send)
{
	for (unsigned i = 0; i < m->nr_nics; i++)
		virtio_net_output_stop(&m->nics[i], send);
}
