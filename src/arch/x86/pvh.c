#include "arch/x86/pvh.h"

#include <elf.h>
#include <errno.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* A program header in a class-neutral form. */
struct pvh_phdr {
	uint32_t type;
	uint64_t offset, paddr, filesz, memsz;
};

static int pvh_fail(int err, char *why, size_t whylen, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int pvh_fail(int err, char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
	return err;
}

/* Read program header i; the caller has checked the table lies in the file. */
static void pvh_read_phdr(const uint8_t *img, bool is64, uint64_t phoff, unsigned i,
			  struct pvh_phdr *p)
{
	if (is64) {
		Elf64_Phdr ph;
		memcpy(&ph, img + phoff + (uint64_t)i * sizeof(ph), sizeof(ph));
		*p = (struct pvh_phdr){ ph.p_type, ph.p_offset, ph.p_paddr, ph.p_filesz, ph.p_memsz };
	} else {
		Elf32_Phdr ph;
		memcpy(&ph, img + phoff + (uint64_t)i * sizeof(ph), sizeof(ph));
		*p = (struct pvh_phdr){ ph.p_type, ph.p_offset, ph.p_paddr, ph.p_filesz, ph.p_memsz };
	}
}

/* Scan one PT_NOTE segment for the PVH entry note.  1 found, 0 not, <0 bad. */
static int pvh_scan_notes(const uint8_t *p, uint64_t len, uint32_t *entry)
{
	uint64_t off = 0;

	while (len - off >= 12) {
		uint32_t namesz, descsz, type;
		memcpy(&namesz, p + off, 4);
		memcpy(&descsz, p + off + 4, 4);
		memcpy(&type, p + off + 8, 4);
		off += 12;
		uint64_t name_al = ((uint64_t)namesz + 3) & ~3ULL;
		uint64_t desc_al = ((uint64_t)descsz + 3) & ~3ULL;
		if (name_al > len - off || desc_al > len - off - name_al)
			return -1;
		const uint8_t *name = p + off, *desc = p + off + name_al;
		off += name_al + desc_al;
		if (type != XEN_ELFNOTE_PHYS32_ENTRY || namesz != 4 || memcmp(name, "Xen", 4))
			continue;
		if (descsz == 4) {
			memcpy(entry, desc, 4);
		} else if (descsz == 8) {
			uint64_t e64;
			memcpy(&e64, desc, 8);
			if (e64 >> 32)
				return -1;
			*entry = (uint32_t)e64;
		} else {
			return -1;
		}
		return 1;
	}
	return 0;
}

static int pvh_check_header(const uint8_t *img, size_t len, bool *is64, uint64_t *phoff,
			    unsigned *phnum, char *why, size_t whylen)
{
	if (len < EI_NIDENT || memcmp(img, ELFMAG, SELFMAG))
		return pvh_fail(-ENOEXEC, why, whylen, "not an ELF file (nor a bzImage)");
	if (img[EI_DATA] != ELFDATA2LSB || img[EI_VERSION] != EV_CURRENT)
		return pvh_fail(-ENOEXEC, why, whylen, "not a little-endian ELF version 1 file");
	if (img[EI_CLASS] == ELFCLASS64) {
		Elf64_Ehdr eh;
		if (len < sizeof(eh))
			return pvh_fail(-ENOEXEC, why, whylen, "truncated ELF header");
		memcpy(&eh, img, sizeof(eh));
		if (eh.e_machine != EM_X86_64 && eh.e_machine != EM_386)
			return pvh_fail(-ENOEXEC, why, whylen, "not an x86 ELF (machine %u)", eh.e_machine);
		if (eh.e_phentsize != sizeof(Elf64_Phdr))
			return pvh_fail(-ENOEXEC, why, whylen, "bad program header size %u", eh.e_phentsize);
		*is64 = true, *phoff = eh.e_phoff, *phnum = eh.e_phnum;
	} else if (img[EI_CLASS] == ELFCLASS32) {
		Elf32_Ehdr eh;
		if (len < sizeof(eh))
			return pvh_fail(-ENOEXEC, why, whylen, "truncated ELF header");
		memcpy(&eh, img, sizeof(eh));
		if (eh.e_machine != EM_386 && eh.e_machine != EM_X86_64)
			return pvh_fail(-ENOEXEC, why, whylen, "not an x86 ELF (machine %u)", eh.e_machine);
		if (eh.e_phentsize != sizeof(Elf32_Phdr))
			return pvh_fail(-ENOEXEC, why, whylen, "bad program header size %u", eh.e_phentsize);
		*is64 = false, *phoff = eh.e_phoff, *phnum = eh.e_phnum;
	} else {
		return pvh_fail(-ENOEXEC, why, whylen, "unknown ELF class %u", img[EI_CLASS]);
	}
	uint64_t entsz = *is64 ? sizeof(Elf64_Phdr) : sizeof(Elf32_Phdr);
	if (*phnum == 0 || *phoff > len || (uint64_t)*phnum * entsz > len - *phoff)
		return pvh_fail(-ENOEXEC, why, whylen, "program header table outside the file");
	return 0;
}

uint8_t *pvh_ram_ptr(const struct pvh_ram *ram, uint64_t gpa, uint64_t len)
{
	for (unsigned i = 0; i < ram->nr; i++) {
		const struct pvh_ram_block *b = &ram->block[i];
		if (gpa >= b->gpa && gpa - b->gpa <= b->size && len <= b->size - (gpa - b->gpa))
			return b->host + (gpa - b->gpa);
	}
	return NULL;
}

uint64_t pvh_ram_size(const struct pvh_ram *ram)
{
	uint64_t size = 0;

	for (unsigned i = 0; i < ram->nr; i++)
		size += ram->block[i].size;
	return size;
}

static int pvh_load_segment(const struct pvh_ram *ram, const uint8_t *img, size_t len,
			    const struct pvh_phdr *ph, char *why, size_t whylen)
{
	if (ph->offset > len || ph->filesz > len - ph->offset)
		return pvh_fail(-ENOEXEC, why, whylen, "segment data outside the file");
	if (ph->filesz > ph->memsz)
		return pvh_fail(-ENOEXEC, why, whylen, "segment file size exceeds memory size");
	if (ph->paddr < PVH_BOOT_DATA_END && ph->paddr + ph->memsz > PVH_BOOT_DATA_GPA)
		return pvh_fail(-ERANGE, why, whylen,
				"segment at 0x%llx overlaps the boot data at 0x%llx-0x%llx",
				(unsigned long long)ph->paddr, PVH_BOOT_DATA_GPA, PVH_BOOT_DATA_END);
	uint8_t *dst = pvh_ram_ptr(ram, ph->paddr, ph->memsz);
	if (!dst)
		return pvh_fail(-ERANGE, why, whylen,
				"segment 0x%llx+0x%llx does not fit in guest RAM (%llu MiB)",
				(unsigned long long)ph->paddr, (unsigned long long)ph->memsz,
				(unsigned long long)(pvh_ram_size(ram) >> 20));
	memcpy(dst, img + ph->offset, ph->filesz);
	memset(dst + ph->filesz, 0, ph->memsz - ph->filesz);
	return 0;
}

int pvh_load_elf(const struct pvh_ram *ram, const void *image, size_t len,
		 struct pvh_kernel *out, char *why, size_t whylen)
{
	const uint8_t *img = image;
	uint64_t phoff = 0, low = UINT64_MAX, high = 0;
	unsigned phnum = 0, loaded = 0;
	uint32_t entry = 0;
	bool is64 = false, have_entry = false;
	int err;

	err = pvh_check_header(img, len, &is64, &phoff, &phnum, why, whylen);
	if (err)
		return err;
	/* The note first: a file that is no PVH kernel should be told so. */
	for (unsigned i = 0; i < phnum && !have_entry; i++) {
		struct pvh_phdr ph;
		pvh_read_phdr(img, is64, phoff, i, &ph);
		if (ph.type != PT_NOTE)
			continue;
		if (ph.offset > len || ph.filesz > len - ph.offset)
			return pvh_fail(-ENOEXEC, why, whylen, "note segment outside the file");
		int r = pvh_scan_notes(img + ph.offset, ph.filesz, &entry);
		if (r < 0)
			return pvh_fail(-ENOEXEC, why, whylen, "malformed ELF note");
		have_entry = r == 1;
	}
	if (!have_entry)
		return pvh_fail(-ENOEXEC, why, whylen,
				"not a PVH kernel: no XEN_ELFNOTE_PHYS32_ENTRY note");
	for (unsigned i = 0; i < phnum; i++) {
		struct pvh_phdr ph;
		pvh_read_phdr(img, is64, phoff, i, &ph);
		if (ph.type != PT_LOAD || !ph.memsz)
			continue;
		err = pvh_load_segment(ram, img, len, &ph, why, whylen);
		if (err)
			return err;
		low = ph.paddr < low ? ph.paddr : low;
		high = ph.paddr + ph.memsz - 1 > high ? ph.paddr + ph.memsz - 1 : high;
		loaded++;
	}
	if (!loaded)
		return pvh_fail(-ENOEXEC, why, whylen, "no loadable segments");
	if (entry < low || entry > high)
		return pvh_fail(-ENOEXEC, why, whylen, "entry point 0x%x outside the loaded image",
				entry);
	*out = (struct pvh_kernel){ .entry = entry, .load_low = low, .load_high = high };
	return 0;
}

unsigned pvh_memmap(const struct pvh_ram *ram, struct hvm_memmap_table_entry *map,
		    unsigned max)
{
	unsigned n = 0;

	/*
	 * Low RAM is split by the legacy VGA/BIOS hole (0xa0000-0x100000), as
	 * on a PC; the memfd backs the hole but the guest is told to keep out.
	 */
	for (unsigned i = 0; i < ram->nr && n + 3 <= max; i++) {
		const struct pvh_ram_block *r = &ram->block[i];
		if (r->gpa == 0) {
			map[n++] = (struct hvm_memmap_table_entry){ 0, 0xa0000, 1, 0 };
			map[n++] = (struct hvm_memmap_table_entry){ 0xa0000, 0x60000, 2, 0 };
			map[n++] = (struct hvm_memmap_table_entry){ 0x100000, r->size - 0x100000, 1, 0 };
		} else {
			map[n++] = (struct hvm_memmap_table_entry){ r->gpa, r->size, 1, 0 };
		}
	}
	return n;
}

int pvh_place_initrd(const struct pvh_ram *ram, uint64_t load_high, uint64_t size,
		     uint64_t *addr, char *why, size_t whylen)
{
	uint64_t low = ram->nr && ram->block[0].gpa == 0 ? ram->block[0].size : 0;
	uint64_t floor = (load_high + 1 + 0xfff) & ~0xfffULL;

	if (size > low || ((low - size) & ~0xfffULL) < floor)
		return pvh_fail(-ERANGE, why, whylen, "initrd of %llu bytes does not fit in guest "
				"RAM above the kernel (which ends at 0x%llx; RAM below 4 GiB ends "
				"at 0x%llx)", (unsigned long long)size,
				(unsigned long long)load_high, (unsigned long long)low);
	*addr = (low - size) & ~0xfffULL;
	return 0;
}

int pvh_write_start_info(const struct pvh_ram *ram, const char *cmdline,
			 uint64_t initrd_addr, uint64_t initrd_size,
			 uint64_t *start_info)
{
	struct hvm_memmap_table_entry map[PVH_MAX_MEMMAP];
	struct hvm_start_info si = {
		.magic = PVH_START_INFO_MAGIC,
		.version = 1,
		.cmdline_paddr = PVH_CMDLINE_GPA,
		.memmap_paddr = PVH_BOOT_DATA_GPA + sizeof(si),
	};
	size_t clen = strlen(cmdline ? cmdline : "");

	if (clen >= PVH_CMDLINE_MAX)
		return -E2BIG;
	unsigned n = pvh_memmap(ram, map, PVH_MAX_MEMMAP);
	si.memmap_entries = n;

	uint8_t *si_dst = pvh_ram_ptr(ram, PVH_BOOT_DATA_GPA, sizeof(si) + sizeof(map[0]) * n);
	char *cl_dst = (char *)pvh_ram_ptr(ram, PVH_CMDLINE_GPA, PVH_CMDLINE_MAX);
	if (!si_dst || !cl_dst)
		return -ERANGE;
	if (initrd_size) {
		struct hvm_modlist_entry mod = { .paddr = initrd_addr, .size = initrd_size };
		uint8_t *mod_dst = pvh_ram_ptr(ram, PVH_MODLIST_GPA, sizeof(mod));
		if (!mod_dst)
			return -ERANGE;
		memcpy(mod_dst, &mod, sizeof(mod));
		si.nr_modules = 1;
		si.modlist_paddr = PVH_MODLIST_GPA;
	}
	memcpy(si_dst, &si, sizeof(si));
	memcpy(si_dst + sizeof(si), map, sizeof(map[0]) * n);
	memset(cl_dst, 0, PVH_CMDLINE_MAX);
	memcpy(cl_dst, cmdline ? cmdline : "", clen);
	*start_info = PVH_BOOT_DATA_GPA;
	return 0;
}
