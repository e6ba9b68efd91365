/*
 * x86_walk_pages (arch/x86/pagewalk.c): the pages a vCPU reads to reach a
 * linear address, in every paging mode, over a made-up guest memory whose
 * tables the tests write; and hostile tables (outside RAM, not present).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "arch/x86/pagewalk.h"

#define RAM_SIZE (64 * 4096)
static uint8_t ram[RAM_SIZE];

static bool read_ram(void *opaque, uint64_t gpa, unsigned len, uint64_t *val)
{
	(void)opaque;
	if (gpa > RAM_SIZE - len)
		return false;
	uint64_t v = 0;
	for (unsigned i = 0; i < len; i++)
		v |= (uint64_t)ram[gpa + i] << (8 * i);
	*val = v;
	return true;
}

static void put64(uint64_t gpa, uint64_t v)
{
	for (unsigned i = 0; i < 8; i++)
		ram[gpa + i] = (uint8_t)(v >> (8 * i));
}

static void put32(uint64_t gpa, uint32_t v)
{
	for (unsigned i = 0; i < 4; i++)
		ram[gpa + i] = (uint8_t)(v >> (8 * i));
}

static int setup(void **state)
{
	(void)state;
	memset(ram, 0, sizeof(ram));
	return 0;
}

#define PG 4096ULL
#define P 1ULL
#define PS (1ULL << 7)

static struct kvm_sregs2 long_mode(uint64_t cr3, bool la57)
{
	struct kvm_sregs2 s;

	memset(&s, 0, sizeof(s));
	s.cr0 = (1ULL << 31) | 1;
	s.cr4 = (1ULL << 5) | (la57 ? 1ULL << 12 : 0);
	s.efer = (1ULL << 10) | (1ULL << 8);
	s.cr3 = cr3;
	return s;
}

/* 4-level, 4 KiB pages: PML4 at page 1, PDPT 2, PD 3, PT 4, data at page 9. */
static void test_long_4k(void **state)
{
	uint64_t va = (1ULL << 39) * 1 + (1ULL << 30) * 2 + (1ULL << 21) * 3 + PG * 5 + 0x123;
	uint64_t out[X86_WALK_MAX];
	bool mapped = false;

	(void)state;
	put64(1 * PG + 1 * 8, 2 * PG | P);
	put64(2 * PG + 2 * 8, 3 * PG | P);
	put64(3 * PG + 3 * 8, 4 * PG | P);
	put64(4 * PG + 5 * 8, 9 * PG | P | (1ULL << 63));	/* NX: not an address bit */
	struct kvm_sregs2 s = long_mode(1 * PG | 0x18, false);	/* PCD/PWT bits in CR3 */
	assert_int_equal(x86_walk_pages(&s, va, read_ram, NULL, out, &mapped), 5);
	assert_true(mapped);
	assert_int_equal(out[0], 1 * PG);
	assert_int_equal(out[1], 2 * PG);
	assert_int_equal(out[2], 3 * PG);
	assert_int_equal(out[3], 4 * PG);
	assert_int_equal(out[4], 9 * PG);
}

/* A 2 MiB page in the PD and a 1 GiB one in the PDPT: the 4 KiB page inside it. */
static void test_long_large(void **state)
{
	uint64_t out[X86_WALK_MAX];
	bool mapped = false;

	(void)state;
	put64(1 * PG, 2 * PG | P);
	put64(2 * PG, 3 * PG | P);
	put64(3 * PG, 0x200000 | P | PS | (1ULL << 12));	/* 2 MiB at 2 MiB, PAT bit set */
	struct kvm_sregs2 s = long_mode(1 * PG, false);
	assert_int_equal(x86_walk_pages(&s, 0x7000, read_ram, NULL, out, &mapped), 4);
	assert_true(mapped);
	assert_int_equal(out[3], 0x207000);
	put64(2 * PG + 8, 0x40000000 | P | PS);			/* 1 GiB at 1 GiB */
	assert_int_equal(x86_walk_pages(&s, (1ULL << 30) + 0x12345, read_ram, NULL, out, &mapped), 3);
	assert_true(mapped);
	assert_int_equal(out[2], 0x40012000);
}

static void test_la57(void **state)
{
	uint64_t out[X86_WALK_MAX];
	bool mapped = false;

	(void)state;
	put64(1 * PG, 2 * PG | P);
	put64(2 * PG, 3 * PG | P);
	put64(3 * PG, 4 * PG | P);
	put64(4 * PG, 5 * PG | P);
	put64(5 * PG + 8, 10 * PG | P);
	struct kvm_sregs2 s = long_mode(1 * PG, true);
	assert_int_equal(x86_walk_pages(&s, PG, read_ram, NULL, out, &mapped), X86_WALK_MAX);
	assert_true(mapped);
	assert_int_equal(out[4], 5 * PG);
	assert_int_equal(out[5], 10 * PG);
}

/* Not present, or a table past the end of RAM: the walk stops there, unmapped. */
static void test_hostile(void **state)
{
	uint64_t out[X86_WALK_MAX];
	bool mapped = true;

	(void)state;
	struct kvm_sregs2 s = long_mode(1 * PG, false);
	assert_int_equal(x86_walk_pages(&s, 0, read_ram, NULL, out, &mapped), 1);	/* PML4E 0 absent */
	assert_false(mapped);
	put64(1 * PG, 0x000ffffffffff000ULL | P);		/* a PDPT far outside RAM */
	assert_int_equal(x86_walk_pages(&s, 0, read_ram, NULL, out, &mapped), 2);
	assert_false(mapped);
	assert_int_equal(out[1], 0x000ffffffffff000ULL);
	s.cr3 = 0x000ffffffffff000ULL;				/* CR3 itself outside RAM */
	assert_int_equal(x86_walk_pages(&s, 0, read_ram, NULL, out, &mapped), 1);
	assert_false(mapped);
	/* PS in a PT entry's level 4 is reserved, not a 512 GiB page: a table. */
	s.cr3 = 1 * PG;
	put64(1 * PG, 2 * PG | P | PS);
	assert_int_equal(x86_walk_pages(&s, 0, read_ram, NULL, out, &mapped), 2);
	assert_int_equal(out[1], 2 * PG);
}

static void test_paging_off(void **state)
{
	uint64_t out[X86_WALK_MAX];
	bool mapped = false;
	struct kvm_sregs2 s;

	(void)state;
	memset(&s, 0, sizeof(s));
	assert_int_equal(x86_walk_pages(&s, 0x1234567, read_ram, NULL, out, &mapped), 1);
	assert_true(mapped);
	assert_int_equal(out[0], 0x1234000);
}

/* 32-bit paging: a PDE to a page table, and a 4 MiB page with CR4.PSE. */
static void test_legacy32(void **state)
{
	uint64_t out[X86_WALK_MAX];
	bool mapped = false;
	struct kvm_sregs2 s;

	(void)state;
	memset(&s, 0, sizeof(s));
	s.cr0 = (1ULL << 31) | 1;
	s.cr3 = 1 * PG;
	put32(1 * PG + 1 * 4, (uint32_t)(2 * PG | P));		/* va 4 MiB .. 8 MiB */
	put32(2 * PG + 3 * 4, (uint32_t)(7 * PG | P));
	assert_int_equal(x86_walk_pages(&s, 0x400000 + 3 * PG + 5, read_ram, NULL, out, &mapped), 3);
	assert_true(mapped);
	assert_int_equal(out[2], 7 * PG);
	s.cr4 = 1ULL << 4;
	put32(1 * PG + 2 * 4, (uint32_t)(0xc00000 | P | PS));	/* va 8 MiB: 4 MiB page at 12 MiB */
	assert_int_equal(x86_walk_pages(&s, 0x800000 + 0x5000, read_ram, NULL, out, &mapped), 2);
	assert_int_equal(out[1], 0xc05000);
}

/* PAE: PDPTEs as KVM reports them (no memory read), or from CR3 when not valid. */
static void test_pae(void **state)
{
	uint64_t out[X86_WALK_MAX];
	bool mapped = false;
	struct kvm_sregs2 s;

	(void)state;
	memset(&s, 0, sizeof(s));
	s.cr0 = (1ULL << 31) | 1;
	s.cr4 = 1ULL << 5;
	s.flags = KVM_SREGS2_FLAGS_PDPTRS_VALID;
	s.pdptrs[1] = 3 * PG | P;
	put64(3 * PG + 2 * 8, 4 * PG | P);
	put64(4 * PG + 1 * 8, 11 * PG | P);
	uint32_t va = (1U << 30) + (2U << 21) + 1 * 4096;
	assert_int_equal(x86_walk_pages(&s, va, read_ram, NULL, out, &mapped), 3);
	assert_true(mapped);
	assert_int_equal(out[0], 3 * PG);
	assert_int_equal(out[2], 11 * PG);
	s.flags = 0;
	s.cr3 = 1 * PG + 0x20;
	put64(1 * PG + 0x20 + 8, 3 * PG | P);
	assert_int_equal(x86_walk_pages(&s, va, read_ram, NULL, out, &mapped), 4);
	assert_int_equal(out[0], 1 * PG);
	assert_int_equal(out[3], 11 * PG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_long_4k, setup),
		cmocka_unit_test_setup(test_long_large, setup),
		cmocka_unit_test_setup(test_la57, setup),
		cmocka_unit_test_setup(test_hostile, setup),
		cmocka_unit_test_setup(test_paging_off, setup),
		cmocka_unit_test_setup(test_legacy32, setup),
		cmocka_unit_test_setup(test_pae, setup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
