/*
 * Booting the machine: a PVH ELF (hvm_start_info, 32-bit entry) or a
 * bzImage (the Linux boot protocol's zero page, 64-bit entry), each with
 * an optional initrd, and for both an MP table (arch/x86/mptable.c).  The loaders in arch/x86/ check every byte of the
 * files; this file maps them and picks the protocol.
 */
#include "board/machine.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arch/x86/boot.h"
#include "arch/x86/bzimage.h"
#include "arch/x86/mptable.h"
#include "arch/x86/pvh.h"
#include "util/log.h"

#define MACHINE_MAX_KERNEL (256ULL << 20)
#define MACHINE_MAX_INITRD (1ULL << 30)

/* Map a file read-only; the loaders check everything in it. */
static int machine_map_file(const char *what, const char *path, uint64_t max,
			    void **img, size_t *len)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int err = 0;

	if (fd < 0) {
		err = -errno;
		pr_err("cannot open %s %s: %s", what, path, strerror(-err));
		return err;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size == 0 ||
	    (uint64_t)st.st_size > max) {
		pr_err("%s %s: not a regular file of 1 byte to %llu MiB", what, path,
		       (unsigned long long)(max >> 20));
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

/* The board's RAM as the loaders see it: blocks in address order. */
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

static int machine_boot_pvh(struct machine *m, const struct pvh_ram *ram, const char *path,
			    const void *img, size_t len, const void *initrd, size_t initrd_len,
			    const char *cmdline)
{
	uint64_t start_info, initrd_addr = 0;
	struct pvh_kernel k;
	char why[200];
	int err;

	err = pvh_load_elf(ram, img, len, &k, why, sizeof(why));
	if (!err && initrd_len)
		err = pvh_place_initrd(ram, k.load_high, initrd_len, &initrd_addr, why, sizeof(why));
	if (err) {
		pr_err("cannot boot %s: %s", path, why);
		return err;
	}
	if (initrd_len)
		memcpy(pvh_ram_ptr(ram, initrd_addr, initrd_len), initrd, initrd_len);
	err = pvh_write_start_info(ram, cmdline, initrd_addr, initrd_len, &start_info);
	if (err) {
		pr_err("kernel command line too long (at most %d bytes)", PVH_CMDLINE_MAX - 1);
		return err;
	}
	err = x86_boot_pvh(m->vm.vcpus[0].fd, k.entry, (uint32_t)start_info);
	if (err)
		pr_err("cannot set the boot vCPU's registers: %s", strerror(-err));
	return err;
}

static int machine_boot_bzimage(struct machine *m, const struct pvh_ram *ram, const char *path,
				const void *img, size_t len, const void *initrd,
				size_t initrd_len, const char *cmdline)
{
	struct bz_kernel k;
	char why[200];
	int err;

	err = bz_load(ram, img, len, initrd, initrd_len, cmdline, &k, why, sizeof(why));
	if (err) {
		pr_err("cannot boot %s: %s", path, why);
		return err;
	}
	err = x86_boot_linux64_tables(ram);
	if (err) {
		pr_err("cannot boot %s: guest RAM too small for the page tables", path);
		return err;
	}
	err = x86_boot_linux64(m->vm.vcpus[0].fd, k.entry, k.boot_params);
	if (err)
		pr_err("cannot set the boot vCPU's registers: %s", strerror(-err));
	return err;
}

int machine_boot(struct machine *m, const char *kernel, const char *initrd_path,
		 const char *user_cmdline)
{
	char cmdline[PVH_CMDLINE_MAX];
	void *img = NULL, *initrd = NULL;
	size_t len = 0, initrd_len = 0;
	struct pvh_ram ram;
	int err;

	/* The guest finds its virtio devices on its command line, as on microvm. */
	if (strlen(user_cmdline) >= sizeof(cmdline) ||
	    machine_virtio_cmdline(m, strcpy(cmdline, user_cmdline), sizeof(cmdline))) {
		pr_err("kernel command line too long with the devices' (at most %d bytes)",
		       PVH_CMDLINE_MAX - 1);
		return -E2BIG;
	}
	err = machine_map_file("kernel", kernel, MACHINE_MAX_KERNEL, &img, &len);
	if (err)
		return err;
	if (initrd_path) {
		err = machine_map_file("initrd", initrd_path, MACHINE_MAX_INITRD, &initrd, &initrd_len);
		if (err)
			goto out;
	}
	machine_pvh_ram(&m->vm.mem, &ram);
	/* Without firmware, the MP table is how a kernel finds its CPUs and IOAPIC. */
	int mp = x86_mptable_write(&ram, m->vm.nr_vcpus);
	if (mp < 0) {
		pr_err("cannot write the MP table: %s", strerror(-mp));
		err = mp;
		goto out;
	}
	for (unsigned i = 0; i < m->vm.nr_vcpus; i++)
		x86_boot_set_msrs(m->vm.vcpus[i].fd);
	if (bz_is_bzimage(img, len))
		err = machine_boot_bzimage(m, &ram, kernel, img, len, initrd, initrd_len, cmdline);
	else
		err = machine_boot_pvh(m, &ram, kernel, img, len, initrd, initrd_len, cmdline);
out:
	if (initrd)
		munmap(initrd, initrd_len);
	munmap(img, len);
	return err;
}
