/*
 * The vCPU state at a PVH entry, field by field, against QEMU's: its x86
 * reset state (target/i386/cpu.c) as its PVH option ROM leaves it, with the
 * flat segments the PVH protocol asks for.  No KVM needed.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "arch/x86/boot.h"
#include "arch/x86/pvh.h"

static void assert_flat(const struct kvm_segment *s, uint8_t type)
{
	assert_int_equal(s->base, 0);
	assert_int_equal(s->limit, 0xffffffff);
	assert_int_equal(s->type, type);
	assert_int_equal(s->present, 1);
	assert_int_equal(s->dpl, 0);
	assert_int_equal(s->db, 1);
	assert_int_equal(s->s, 1);
	assert_int_equal(s->l, 0);
	assert_int_equal(s->g, 1);
	assert_int_equal(s->unusable, 0);
}

/* Start from garbage: every field the entry depends on must be written. */
static void entry_state(struct kvm_sregs *sregs, struct kvm_regs *regs)
{
	memset(sregs, 0xa5, sizeof(*sregs));
	memset(regs, 0xa5, sizeof(*regs));
	sregs->apic_base = 0xfee00900;
	x86_boot_pvh_state(sregs, regs, 0x100010, 0x6000);
}

static void test_registers(void **state)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs;

	(void)state;
	entry_state(&sregs, &regs);
	assert_int_equal(regs.rip, 0x100010);
	assert_int_equal(regs.rbx, 0x6000);
	assert_int_equal(regs.rflags, 0x2);	/* IF off, IOPL 0 */
	assert_int_equal(regs.rax, 0);
	assert_int_equal(regs.rsp, 0);
}

static void test_segments(void **state)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs;

	(void)state;
	entry_state(&sregs, &regs);
	assert_flat(&sregs.cs, 0xb);
	assert_flat(&sregs.ds, 0x3);
	assert_flat(&sregs.es, 0x3);
	assert_flat(&sregs.fs, 0x3);
	assert_flat(&sregs.gs, 0x3);
	assert_flat(&sregs.ss, 0x3);
	assert_int_equal(sregs.cs.selector, 0x10);
	assert_int_equal(sregs.ss.selector, 0x18);
}

/* The fields that decide ring-3 port I/O on kvm-pvm: QEMU's values. */
static void test_tr_ldtr(void **state)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs;

	(void)state;
	entry_state(&sregs, &regs);
	assert_int_equal(sregs.tr.base, 0);
	assert_int_equal(sregs.tr.limit, 0xffff);
	assert_int_equal(sregs.tr.selector, 0);
	assert_int_equal(sregs.tr.type, 0xb);	/* busy 32-bit TSS */
	assert_int_equal(sregs.tr.present, 1);
	assert_int_equal(sregs.tr.s, 0);
	assert_int_equal(sregs.tr.g, 0);
	assert_int_equal(sregs.tr.unusable, 0);
	assert_int_equal(sregs.ldt.base, 0);
	assert_int_equal(sregs.ldt.limit, 0xffff);
	assert_int_equal(sregs.ldt.type, 0x2);	/* LDT */
	assert_int_equal(sregs.ldt.present, 1);
	assert_int_equal(sregs.ldt.s, 0);
	assert_int_equal(sregs.ldt.unusable, 0);
}

static void test_control(void **state)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs;

	(void)state;
	entry_state(&sregs, &regs);
	assert_int_equal(sregs.cr0, 0x11);	/* PE | ET, paging off */
	assert_int_equal(sregs.cr3, 0);
	assert_int_equal(sregs.cr4, 0);
	assert_int_equal(sregs.efer, 0);
	assert_int_equal(sregs.gdt.base, 0);
	assert_int_equal(sregs.gdt.limit, 0xffff);
	assert_int_equal(sregs.idt.base, 0);
	assert_int_equal(sregs.idt.limit, 0xffff);
	assert_int_equal(sregs.apic_base, 0xfee00900);	/* KVM's, untouched */
	for (size_t i = 0; i < sizeof(sregs.interrupt_bitmap) / sizeof(sregs.interrupt_bitmap[0]); i++)
		assert_int_equal(sregs.interrupt_bitmap[i], 0);
}

/* The Linux 64-bit entry: long mode, paging on, __BOOT_CS/__BOOT_DS, RSI. */
static void test_linux64_state(void **state)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs;

	(void)state;
	memset(&sregs, 0xa5, sizeof(sregs));
	memset(&regs, 0xa5, sizeof(regs));
	x86_boot_linux64_state(&sregs, &regs, 0x1000200, 0x7000);
	assert_int_equal(regs.rip, 0x1000200);
	assert_int_equal(regs.rsi, 0x7000);
	assert_int_equal(regs.rflags, 0x2);
	assert_int_equal(regs.rbx, 0);
	assert_int_equal(sregs.cs.selector, 0x10);
	assert_int_equal(sregs.cs.l, 1);
	assert_int_equal(sregs.cs.db, 0);
	assert_int_equal(sregs.cs.type, 0xb);
	assert_int_equal(sregs.cs.present, 1);
	assert_int_equal(sregs.cs.s, 1);
	assert_int_equal(sregs.ds.selector, 0x18);
	assert_int_equal(sregs.ss.selector, 0x18);
	assert_int_equal(sregs.ds.type, 0x3);
	assert_int_equal(sregs.ds.l, 0);
	assert_int_equal(sregs.tr.limit, 0xffff);	/* QEMU's, as for PVH */
	assert_int_equal(sregs.tr.type, 0xb);
	assert_int_equal(sregs.ldt.limit, 0xffff);
	assert_int_equal(sregs.gdt.base, X86_BOOT_GDT_GPA);
	assert_int_equal(sregs.gdt.limit, 31);
	assert_int_equal(sregs.cr0, 0x80000011);	/* PG | ET | PE */
	assert_int_equal(sregs.cr3, X86_BOOT_PML4_GPA);
	assert_int_equal(sregs.cr4, 0x20);		/* PAE */
	assert_int_equal(sregs.efer, 0x500);		/* LMA | LME */
}

/* The GDT has the selectors the state uses; 4 GiB is identity-mapped. */
static void test_linux64_tables(void **state)
{
	uint8_t *host = calloc(1, 1 << 20);
	struct pvh_ram ram = { .nr = 1, .block = { { 0, 1 << 20, host } } };
	uint64_t e;

	(void)state;
	assert_non_null(host);
	assert_int_equal(x86_boot_linux64_tables(&ram), 0);
	memcpy(&e, host + X86_BOOT_GDT_GPA + 0x10, 8);
	assert_int_equal(e, 0x00af9b000000ffffULL);	/* L=1, present, code */
	memcpy(&e, host + X86_BOOT_GDT_GPA + 0x18, 8);
	assert_int_equal(e, 0x00cf93000000ffffULL);
	memcpy(&e, host + X86_BOOT_PML4_GPA, 8);
	assert_int_equal(e, X86_BOOT_PDPT_GPA | 3);
	for (unsigned i = 0; i < 4; i++) {
		memcpy(&e, host + X86_BOOT_PDPT_GPA + 8 * i, 8);
		assert_int_equal(e, (X86_BOOT_PD_GPA + 0x1000 * i) | 3);
	}
	memcpy(&e, host + X86_BOOT_PDPT_GPA + 8 * 4, 8);
	assert_int_equal(e, 0);
	/* The 2 MiB page that holds 3 GiB + 6 MiB maps to itself. */
	uint64_t va = (3ULL << 30) + (6ULL << 20);
	memcpy(&e, host + X86_BOOT_PD_GPA + 8 * (va >> 21), 8);
	assert_int_equal(e, va | 0x83);
	/* RAM that cannot hold the tables: refused. */
	struct pvh_ram tiny = { .nr = 1, .block = { { 0, 0x8000, host } } };
	assert_int_equal(x86_boot_linux64_tables(&tiny), -ERANGE);
	free(host);
}

/* MTRRs on with write-back default, as SeaBIOS leaves them under QEMU. */
static void test_msrs(void **state)
{
	struct kvm_msr_entry m[X86_BOOT_NR_MSRS];

	(void)state;
	assert_int_equal(x86_boot_msrs(m), 2);
	assert_int_equal(m[0].index, 0x2ff);
	assert_int_equal(m[0].data, 0x806);
	/* IA32_MISC_ENABLE: fast strings, as QEMU's reset and Firecracker leave it. */
	assert_int_equal(m[1].index, 0x1a0);
	assert_int_equal(m[1].data, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_registers),
		cmocka_unit_test(test_segments),
		cmocka_unit_test(test_tr_ldtr),
		cmocka_unit_test(test_control),
		cmocka_unit_test(test_linux64_state),
		cmocka_unit_test(test_linux64_tables),
		cmocka_unit_test(test_msrs),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
