#include "board/machine.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arch/x86/boot.h"
#include "arch/x86/pvh.h"
#include "devices/debug_exit.h"
#include "util/log.h"

#define MACHINE_MAX_KERNEL (256ULL << 20)

static void machine_com1_irq(void *opaque, int level)
{
	vm_set_irq(opaque, SERIAL_COM1_IRQ, level);
}

static void machine_com1_input(void *opaque, const uint8_t *buf, size_t len)
{
	serial_receive(opaque, buf, len);
}

/* Map the kernel file read-only; the loader checks everything in it. */
static int machine_map_kernel(const char *path, void **img, size_t *len)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int err = 0;

	if (fd < 0) {
		err = -errno;
		pr_err("cannot open kernel %s: %s", path, strerror(-err));
		return err;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size == 0 ||
	    (uint64_t)st.st_size > MACHINE_MAX_KERNEL) {
		pr_err("kernel %s: not a regular file of 1 byte to 256 MiB", path);
		err = -ENOEXEC;
		goto out;
	}
	*img = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (*img == MAP_FAILED) {
		err = -errno;
		goto out;
	}
	*len = (size_t)st.st_size;
out:
	close(fd);
	return err;
}

/* The board's RAM as the PVH loader sees it: blocks in address order. */
static void machine_pvh_ram(const struct guest_memory *mem, struct pvh_ram *ram)
{
	ram->nr = 0;
	for (unsigned r = 0; r < guest_memory_nr_regions(mem) && r < PVH_MAX_RAM; r++) {
		ram->block[ram->nr++] = (struct pvh_ram_block){
			.gpa = guest_memory_region_gpa(mem, r),
			.size = guest_memory_region_pages(mem, r) * GUEST_PAGE_SIZE,
			.host = guest_memory_page_ptr(mem, guest_memory_region_first(mem, r)),
		};
	}
}

static int machine_load_kernel(struct machine *m, const char *path, const char *user_cmdline)
{
	char cmdline[PVH_CMDLINE_MAX];
	struct pvh_ram ram;
	struct pvh_kernel k;
	uint64_t start_info;
	char why[160];
	void *img = NULL;
	size_t len = 0;
	int err;

	/* The guest finds its virtio devices on its command line, as on microvm. */
	if (strlen(user_cmdline) >= sizeof(cmdline) ||
	    machine_virtio_cmdline(m, strcpy(cmdline, user_cmdline), sizeof(cmdline))) {
		pr_err("kernel command line too long with the devices' (at most %d bytes)",
		       PVH_CMDLINE_MAX - 1);
		return -E2BIG;
	}
	err = machine_map_kernel(path, &img, &len);
	if (err)
		return err;
	machine_pvh_ram(&m->vm.mem, &ram);
	err = pvh_load_elf(&ram, img, len, &k, why, sizeof(why));
	munmap(img, len);
	if (err) {
		pr_err("cannot boot %s: %s", path, why);
		return err;
	}
	err = pvh_write_start_info(&ram, cmdline, &start_info);
	if (err) {
		pr_err("kernel command line too long (at most %d bytes)", PVH_CMDLINE_MAX - 1);
		return err;
	}
	err = x86_boot_pvh(m->vm.vcpus[0].fd, k.entry, (uint32_t)start_info);
	if (err)
		pr_err("cannot set the boot vCPU's registers: %s", strerror(-err));
	return err;
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
	return machine_load_kernel(m, cfg->kernel, m->cmdline);
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
