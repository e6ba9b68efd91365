/* The PVH ELF loader on good and malformed images (no KVM needed). */
#include <elf.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "arch/x86/pvh.h"

#define RAM_SIZE (4ULL << 20)
#define LOAD_ADDR 0x100000u
#define ENTRY (LOAD_ADDR + 0x10)

/* An ELF64 image: header, 2 phdrs (LOAD, NOTE), 64 bytes of code, a note. */
struct img64 {
	Elf64_Ehdr eh;
	Elf64_Phdr ph[2];
	uint8_t code[64];
	uint32_t note_hdr[3];
	char note_name[4];
	uint32_t note_desc;
} __attribute__((packed));

struct img32 {
	Elf32_Ehdr eh;
	Elf32_Phdr ph[2];
	uint8_t code[64];
	uint32_t note_hdr[3];
	char note_name[4];
	uint32_t note_desc;
} __attribute__((packed));

static struct pvh_ram ram;
static uint8_t *host;

static int setup(void **state)
{
	memset(&ram, 0, sizeof(ram));
	host = calloc(1, RAM_SIZE);
	ram.nr = 1;
	ram.block[0] = (struct pvh_ram_block){ .gpa = 0, .size = RAM_SIZE, .host = host };
	return host ? 0 : -1;
}

static int teardown(void **state)
{
	free(host);
	return 0;
}

static void make64(struct img64 *im)
{
	memset(im, 0, sizeof(*im));
	memcpy(im->eh.e_ident, ELFMAG, SELFMAG);
	im->eh.e_ident[EI_CLASS] = ELFCLASS64;
	im->eh.e_ident[EI_DATA] = ELFDATA2LSB;
	im->eh.e_ident[EI_VERSION] = EV_CURRENT;
	im->eh.e_type = ET_EXEC;
	im->eh.e_machine = EM_X86_64;
	im->eh.e_phoff = offsetof(struct img64, ph);
	im->eh.e_phentsize = sizeof(Elf64_Phdr);
	im->eh.e_phnum = 2;
	im->ph[0] = (Elf64_Phdr){ .p_type = PT_LOAD, .p_offset = offsetof(struct img64, code),
				  .p_paddr = LOAD_ADDR, .p_filesz = 64, .p_memsz = 4096 };
	im->ph[1] = (Elf64_Phdr){ .p_type = PT_NOTE, .p_offset = offsetof(struct img64, note_hdr),
				  .p_filesz = 20 };
	memset(im->code, 0xcc, sizeof(im->code));
	im->note_hdr[0] = 4;
	im->note_hdr[1] = 4;
	im->note_hdr[2] = XEN_ELFNOTE_PHYS32_ENTRY;
	memcpy(im->note_name, "Xen", 4);
	im->note_desc = ENTRY;
}

static void make32(struct img32 *im)
{
	memset(im, 0, sizeof(*im));
	memcpy(im->eh.e_ident, ELFMAG, SELFMAG);
	im->eh.e_ident[EI_CLASS] = ELFCLASS32;
	im->eh.e_ident[EI_DATA] = ELFDATA2LSB;
	im->eh.e_ident[EI_VERSION] = EV_CURRENT;
	im->eh.e_type = ET_EXEC;
	im->eh.e_machine = EM_386;
	im->eh.e_phoff = offsetof(struct img32, ph);
	im->eh.e_phentsize = sizeof(Elf32_Phdr);
	im->eh.e_phnum = 2;
	im->ph[0] = (Elf32_Phdr){ .p_type = PT_LOAD, .p_offset = offsetof(struct img32, code),
				  .p_paddr = LOAD_ADDR, .p_filesz = 64, .p_memsz = 128 };
	im->ph[1] = (Elf32_Phdr){ .p_type = PT_NOTE, .p_offset = offsetof(struct img32, note_hdr),
				  .p_filesz = 20 };
	memset(im->code, 0x90, sizeof(im->code));
	im->note_hdr[0] = 4;
	im->note_hdr[1] = 4;
	im->note_hdr[2] = XEN_ELFNOTE_PHYS32_ENTRY;
	memcpy(im->note_name, "Xen", 4);
	im->note_desc = ENTRY;
}

static int load(const void *img, size_t len, struct pvh_kernel *k)
{
	char why[160] = "";
	int err = pvh_load_elf(&ram, img, len, k, why, sizeof(why));

	/* Every failure explains itself. */
	if (err)
		assert_true(why[0] != '\0');
	return err;
}

static void test_good_elf64(void **state)
{
	struct img64 im;
	struct pvh_kernel k;

	make64(&im);
	memset(host + LOAD_ADDR + 64, 0x55, 64);	/* bss must be cleared */
	assert_int_equal(load(&im, sizeof(im), &k), 0);
	assert_int_equal(k.entry, ENTRY);
	assert_int_equal(k.load_low, LOAD_ADDR);
	assert_int_equal(k.load_high, LOAD_ADDR + 4095);
	assert_memory_equal(host + LOAD_ADDR, im.code, 64);
	assert_int_equal(host[LOAD_ADDR + 64], 0);
	assert_int_equal(host[LOAD_ADDR + 127], 0);
}

static void test_good_elf32(void **state)
{
	struct img32 im;
	struct pvh_kernel k;

	make32(&im);
	assert_int_equal(load(&im, sizeof(im), &k), 0);
	assert_int_equal(k.entry, ENTRY);
	assert_memory_equal(host + LOAD_ADDR, im.code, 64);
}

static void test_eight_byte_note(void **state)
{
	struct {
		struct img64 im;
		uint32_t extra;
	} __attribute__((packed)) big;
	struct pvh_kernel k;
	uint64_t e = ENTRY;

	make64(&big.im);
	big.im.note_hdr[1] = 8;
	big.im.ph[1].p_filesz = 24;
	memcpy(&big.im.note_desc, &e, 8);
	assert_int_equal(load(&big, sizeof(big), &k), 0);
	assert_int_equal(k.entry, ENTRY);
	e |= 1ULL << 32;	/* a 64-bit entry is not a PHYS32 entry */
	memcpy(&big.im.note_desc, &e, 8);
	assert_int_equal(load(&big, sizeof(big), &k), -ENOEXEC);
}

static void test_truncated_everywhere(void **state)
{
	struct img64 im;
	struct pvh_kernel k;

	make64(&im);
	/* Every prefix shorter than the whole file is refused, none crashes. */
	for (size_t len = 0; len < sizeof(im); len++)
		assert_int_not_equal(load(&im, len, &k), 0);
}

static void test_bad_headers(void **state)
{
	struct img64 im;
	struct pvh_kernel k;

	make64(&im);
	im.eh.e_ident[0] = 0x7e;
	assert_int_equal(load(&im, sizeof(im), &k), -ENOEXEC);
	make64(&im);
	im.eh.e_ident[EI_CLASS] = 7;
	assert_int_equal(load(&im, sizeof(im), &k), -ENOEXEC);
	make64(&im);
	im.eh.e_ident[EI_DATA] = ELFDATA2MSB;
	assert_int_equal(load(&im, sizeof(im), &k), -ENOEXEC);
	make64(&im);
	im.eh.e_machine = EM_AARCH64;
	assert_int_equal(load(&im, sizeof(im), &k), -ENOEXEC);
	make64(&im);
	im.eh.e_phentsize = 40;
	assert_int_equal(load(&im, sizeof(im), &k), -ENOEXEC);
	make64(&im);
	im.eh.e_phoff = UINT64_MAX - 8;
	assert_int_equal(load(&im, sizeof(im), &k), -ENOEXEC);
	make64(&im);
	im.eh.e_phnum = 0xffff;
	assert_int_equal(load(&im, sizeof(im), &k), -ENOEXEC);
}

static void test_bad_segments(void **state)
{
	struct img64 im;
	struct pvh_kernel k;

	make64(&im);
	im.ph[0].p_offset = sizeof(im) - 10;	/* data runs past the end of file */
	assert_int_equal(load(&im, sizeof(im), &k), -ENOEXEC);
	make64(&im);
	im.ph[0].p_offset = UINT64_MAX;
	assert_int_equal(load(&im, sizeof(im), &k), -ENOEXEC);
	make64(&im);
	im.ph[0].p_memsz = 10;			/* filesz > memsz */
	assert_int_equal(load(&im, sizeof(im), &k), -ENOEXEC);
	make64(&im);
	im.ph[0].p_paddr = RAM_SIZE - 100;	/* past the end of RAM */
	assert_int_equal(load(&im, sizeof(im), &k), -ERANGE);
	make64(&im);
	im.ph[0].p_paddr = UINT64_MAX - 10;	/* wraps around */
	assert_int_equal(load(&im, sizeof(im), &k), -ERANGE);
	make64(&im);
	im.ph[0].p_memsz = UINT64_MAX;
	assert_int_equal(load(&im, sizeof(im), &k), -ERANGE);
	make64(&im);
	im.ph[0].p_paddr = PVH_CMDLINE_GPA;	/* would overwrite the boot data */
	assert_int_equal(load(&im, sizeof(im), &k), -ERANGE);
	make64(&im);
	im.ph[0].p_type = PT_NULL;		/* nothing to load */
	assert_int_equal(load(&im, sizeof(im), &k), -ENOEXEC);
}

static void test_bad_notes(void **state)
{
	struct img64 im;
	struct pvh_kernel k;

	make64(&im);
	im.ph[1].p_type = PT_NULL;		/* no note at all */
	assert_int_equal(load(&im, sizeof(im), &k), -ENOEXEC);
	make64(&im);
	im.note_hdr[0] = 0xfffffff0;		/* name runs out of the segment */
	assert_int_equal(load(&im, sizeof(im), &k), -ENOEXEC);
	make64(&im);
	im.note_hdr[1] = 0xffffffff;		/* so does the descriptor */
	assert_int_equal(load(&im, sizeof(im), &k), -ENOEXEC);
	make64(&im);
	im.note_hdr[1] = 2;			/* descriptor of a bad size */
	assert_int_equal(load(&im, sizeof(im), &k), -ENOEXEC);
	make64(&im);
	memcpy(im.note_name, "Xyz", 4);		/* someone else's note */
	assert_int_equal(load(&im, sizeof(im), &k), -ENOEXEC);
	make64(&im);
	im.ph[1].p_filesz = 1000;		/* note segment beyond the file */
	assert_int_equal(load(&im, sizeof(im), &k), -ENOEXEC);
	make64(&im);
	im.note_desc = 0x5000;			/* entry outside the loaded image */
	assert_int_equal(load(&im, sizeof(im), &k), -ENOEXEC);
}

static void test_random_mutations(void **state)
{
	struct img64 im, good;
	struct pvh_kernel k;
	char why[160];
	int loaded = 0;

	make64(&good);
	srand(1234);
	/* Random byte flips either load or fail cleanly; ASan watches. */
	for (int i = 0; i < 20000; i++) {
		im = good;
		for (int j = 0; j < 1 + rand() % 4; j++)
			((uint8_t *)&im)[rand() % sizeof(im)] = (uint8_t)rand();
		if (pvh_load_elf(&ram, &im, sizeof(im), &k, why, sizeof(why)) == 0)
			loaded++;
	}
	/* Flips in padding and code leave some images valid. */
	assert_true(loaded > 0 && loaded < 20000);
}

/* The initrd travels as the one module of hvm_start_info, above the kernel. */
static void test_start_info_initrd(void **state)
{
	struct hvm_start_info si;
	struct hvm_modlist_entry mod;
	uint64_t si_addr, addr;
	char why[160];

	(void)state;
	assert_int_equal(pvh_place_initrd(&ram, LOAD_ADDR + 0xfff, 5000, &addr, why, sizeof(why)), 0);
	assert_int_equal(addr, (RAM_SIZE - 5000) & ~0xfffULL);
	assert_int_equal(pvh_write_start_info(&ram, "", addr, 5000, &si_addr), 0);
	memcpy(&si, host + si_addr, sizeof(si));
	assert_int_equal(si.nr_modules, 1);
	assert_int_equal(si.modlist_paddr, PVH_MODLIST_GPA);
	assert_true(si.memmap_paddr + si.memmap_entries * sizeof(struct hvm_memmap_table_entry)
		    <= PVH_MODLIST_GPA);
	memcpy(&mod, host + si.modlist_paddr, sizeof(mod));
	assert_int_equal(mod.paddr, addr);
	assert_int_equal(mod.size, 5000);
	assert_int_equal(mod.cmdline_paddr, 0);
	/* Too large to fit above the kernel: refused, not overlapped. */
	assert_int_equal(pvh_place_initrd(&ram, LOAD_ADDR + 0xfff, RAM_SIZE - LOAD_ADDR, &addr,
					  why, sizeof(why)), -ERANGE);
	assert_non_null(strstr(why, "does not fit in guest RAM above the kernel"));
}

static void test_start_info(void **state)
{
	uint64_t si_addr;
	struct hvm_start_info si;
	struct hvm_memmap_table_entry map[4];

	assert_int_equal(pvh_write_start_info(&ram, "workload=idle seconds=1", 0, 0, &si_addr), 0);
	assert_int_equal(si_addr, PVH_BOOT_DATA_GPA);
	memcpy(&si, host + si_addr, sizeof(si));
	assert_int_equal(si.magic, PVH_START_INFO_MAGIC);
	assert_int_equal(si.version, 1);
	assert_string_equal((char *)host + si.cmdline_paddr, "workload=idle seconds=1");
	assert_int_equal(si.memmap_entries, 3);
	memcpy(map, host + si.memmap_paddr, sizeof(map[0]) * 3);
	assert_int_equal(map[0].addr, 0);
	assert_int_equal(map[0].type, 1);
	assert_int_equal(map[1].type, 2);
	assert_int_equal(map[2].addr, 0x100000);
	assert_int_equal(map[2].addr + map[2].size, RAM_SIZE);
	assert_true(si.memmap_paddr + 3 * sizeof(map[0]) <= PVH_CMDLINE_GPA);

	char *long_cmdline = malloc(PVH_CMDLINE_MAX + 1);
	memset(long_cmdline, 'a', PVH_CMDLINE_MAX);
	long_cmdline[PVH_CMDLINE_MAX] = '\0';
	assert_int_equal(pvh_write_start_info(&ram, long_cmdline, 0, 0, &si_addr), -E2BIG);
	free(long_cmdline);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good_elf64),
		cmocka_unit_test(test_good_elf32),
		cmocka_unit_test(test_eight_byte_note),
		cmocka_unit_test(test_truncated_everywhere),
		cmocka_unit_test(test_bad_headers),
		cmocka_unit_test(test_bad_segments),
		cmocka_unit_test(test_bad_notes),
		cmocka_unit_test(test_random_mutations),
		cmocka_unit_test(test_start_info),
		cmocka_unit_test(test_start_info_initrd),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
