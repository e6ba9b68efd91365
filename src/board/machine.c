#include "board/machine.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "devices/debug_exit.h"
#include "util/log.h"

static void machine_com1_irq(void *opaque, int level)
{
	vm_set_irq(opaque, SERIAL_COM1_IRQ, level);
}

static void machine_com1_input(void *opaque, const uint8_t *buf, size_t len)
{
	serial_receive(opaque, buf, len);
}

static int machine_add_devices(struct machine *m, const char *serial_spec,
			       const struct machine_config *cfg)
{
	int err = chardev_open(&m->serial_chr, serial_spec);

	if (err) {
		if (err == -EINVAL)
			pr_err("bad --serial '%s': use stdio, file:PATH or unix:PATH", serial_spec);
		else
			pr_err("cannot open serial backend '%s': %s", serial_spec, strerror(-err));
		return err;
	}
	serial_init(&m->com1, &m->serial_chr, machine_com1_irq, &m->vm);
	m->devs[m->nr_devs++] = (struct machine_dev){ .id = DEVICE_SERIAL, .dev = &m->com1 };
	m->devs[m->nr_devs++] = (struct machine_dev){ .id = DEVICE_DEBUG_EXIT, .dev = &m->vm };
	err = iobus_register(&m->vm.pio, SERIAL_COM1_BASE, 8, &serial_iobus_ops, &m->com1, "com1");
	if (!err)
		err = debug_exit_register(&m->vm);
	if (!err)
		err = chardev_start_input(&m->serial_chr, machine_com1_input, &m->com1);
	if (!err)
		err = machine_virtio_add_disks(m, cfg);
	if (!err)
		err = machine_virtio_add_nics(m, cfg);
	if (!err)
		machine_virtio_wire(m);
	return err;
}

int machine_create(struct machine *m, const struct machine_config *cfg)
{
	struct vm_config vc = {
		.memory = cfg->memory, .vcpus = cfg->vcpus,
		.prealloc = cfg->prealloc, .premade = cfg->premade,
		.cpu_model = cfg->cpu_model,
	};
	int err;

	memset(m, 0, sizeof(*m));
	m->serial_chr.out_fd = m->serial_chr.in_fd = m->serial_chr.listen_fd = -1;
	err = vm_create(&m->vm, &vc);
	if (err)
		return err;
	m->kernel = strdup(cfg->kernel ? cfg->kernel : "(incoming migration)");
	m->cmdline = strdup(cfg->cmdline ? cfg->cmdline : "");
	if (!m->kernel || !m->cmdline)
		return -ENOMEM;
	err = machine_add_devices(m, cfg->serial ? cfg->serial : "stdio", cfg);
	if (err || !cfg->kernel)
		return err;
	return machine_boot(m, cfg->kernel, cfg->initrd, m->cmdline);
}

void *machine_dev(const struct machine *m, enum device_id id, unsigned index)
{
	for (unsigned i = 0; i < m->nr_devs; i++)
		if (m->devs[i].id == id && m->devs[i].index == index)
			return m->devs[i].dev;
	return NULL;
}

void machine_destroy(struct machine *m)
{
	/* vCPUs first (they reach devices), then the device threads, then RAM. */
	enum vm_state st = vm_get_state(&m->vm);
	if (st == VM_STATE_RUNNING || st == VM_STATE_PAUSED) {
		vm_request_stop(&m->vm, VM_STOP_REQUESTED, 0);
		vm_wait_stopped(&m->vm);
	}
	machine_virtio_destroy(m);
	vm_destroy(&m->vm);
	if (m->serial_chr.ops)
		chardev_close(&m->serial_chr);
	serial_destroy(&m->com1);
	free(m->kernel);
	free(m->cmdline);
	m->kernel = m->cmdline = NULL;
}
