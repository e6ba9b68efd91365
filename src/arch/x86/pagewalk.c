#include "arch/x86/pagewalk.h"

#include <errno.h>
#include <stddef.h>
#include <sys/ioctl.h>

#define CR0_PG		(1ULL << 31)
#define CR4_PSE		(1ULL << 4)
#define CR4_PAE		(1ULL << 5)
#define CR4_LA57	(1ULL << 12)
#define EFER_LMA	(1ULL << 10)

#define PTE_P		1ULL
#define PTE_PS		(1ULL << 7)
#define PTE_ADDR	0x000ffffffffff000ULL	/* bits 12..51 of a 64-bit entry */
#define PAGE_MASK	(~0xfffULL)

/* The page of a large mapping of 2^shift bytes that holds va. */
static uint64_t large_page(uint64_t entry, uint64_t va, unsigned shift)
{
	uint64_t size = 1ULL << shift;

	return ((entry & PTE_ADDR) & ~(size - 1)) + (va & (size - 1) & PAGE_MASK);
}

/*
 * 64-bit entries from `table` down `levels` levels (the last one maps 4 KiB
 * pages); levels 2 and 3 may map large pages.
 */
static unsigned walk64(uint64_t table, unsigned levels, uint64_t va, x86_read_fn *read, void *opaque,
		       uint64_t *out, unsigned n, bool *mapped)
{
	for (unsigned lvl = levels; lvl >= 1; lvl--) {
		unsigned shift = 12 + 9 * (lvl - 1);
		uint64_t e;

		out[n++] = table;
		if (!read(opaque, table + ((va >> shift) & 511) * 8, 8, &e) || !(e & PTE_P))
			return n;
		if (lvl == 1 || ((lvl == 2 || lvl == 3) && (e & PTE_PS))) {
			out[n++] = large_page(e, va, shift);
			*mapped = true;
			return n;
		}
		table = e & PTE_ADDR;
	}
	return n;
}

/* Legacy 32-bit paging: a page directory, 4 MiB pages with CR4.PSE. */
static unsigned walk32(const struct kvm_sregs2 *s, uint32_t va, x86_read_fn *read, void *opaque,
		       uint64_t *out, bool *mapped)
{
	uint64_t pd = s->cr3 & 0xfffff000ULL, pde, pte;
	unsigned n = 0;

	out[n++] = pd;
	if (!read(opaque, pd + ((va >> 22) & 1023) * 4, 4, &pde) || !(pde & PTE_P))
		return n;
	if ((s->cr4 & CR4_PSE) && (pde & PTE_PS)) {
		out[n++] = (pde & 0xffc00000ULL) + (va & 0x3ff000U);
		*mapped = true;
		return n;
	}
	out[n++] = pde & 0xfffff000ULL;
	if (!read(opaque, (pde & 0xfffff000ULL) + ((va >> 12) & 1023) * 4, 4, &pte) || !(pte & PTE_P))
		return n;
	out[n++] = pte & 0xfffff000ULL;
	*mapped = true;
	return n;
}

/* PAE: four PDPTEs (as the CPU loaded them, where KVM says so), then two levels. */
static unsigned walk_pae(const struct kvm_sregs2 *s, uint32_t va, x86_read_fn *read, void *opaque,
			 uint64_t *out, bool *mapped)
{
	unsigned i = (va >> 30) & 3, n = 0;
	uint64_t pdpte;

	if (s->flags & KVM_SREGS2_FLAGS_PDPTRS_VALID) {
		pdpte = s->pdptrs[i];
	} else {
		uint64_t pdpt = s->cr3 & 0xffffffe0ULL;
		out[n++] = pdpt & PAGE_MASK;
		if (!read(opaque, pdpt + i * 8, 8, &pdpte))
			return n;
	}
	if (!(pdpte & PTE_P))
		return n;
	return walk64(pdpte & PTE_ADDR, 2, va, read, opaque, out, n, mapped);
}

unsigned x86_walk_pages(const struct kvm_sregs2 *s, uint64_t va, x86_read_fn *read, void *opaque,
			uint64_t out[X86_WALK_MAX], bool *mapped)
{
	bool m = false;
	unsigned n;

	if (!(s->cr0 & CR0_PG)) {
		out[0] = (s->efer & EFER_LMA ? va : (uint32_t)va) & PAGE_MASK;
		m = true;
		n = 1;
	} else if (s->efer & EFER_LMA) {
		n = walk64(s->cr3 & PTE_ADDR, s->cr4 & CR4_LA57 ? 5 : 4, va, read, opaque, out, 0, &m);
	} else if (s->cr4 & CR4_PAE) {
		n = walk_pae(s, (uint32_t)va, read, opaque, out, &m);
	} else {
		n = walk32(s, (uint32_t)va, read, opaque, out, &m);
	}
	if (mapped)
		*mapped = m;
	return n;
}

/* Add the pages of one walk to out[0..*n), without repeats, while room lasts. */
static void add_walk(const uint64_t *walk, unsigned k, uint64_t *out, unsigned *n, unsigned max)
{
	for (unsigned i = 0; i < k; i++) {
		unsigned j = 0;
		while (j < *n && out[j] != walk[i])
			j++;
		if (j == *n && *n < max)
			out[(*n)++] = walk[i];
	}
}

/* Walk va and add its pages to out[0..*n). */
static void add_va(const struct kvm_sregs2 *s, uint64_t va, x86_read_fn *read, void *opaque,
		   uint64_t *out, unsigned *n, unsigned max)
{
	uint64_t walk[X86_WALK_MAX];

	add_walk(walk, x86_walk_pages(s, va, read, opaque, walk, NULL), out, n, max);
}

int x86_vcpu_first_pages(int vcpu_fd, x86_read_fn *read, void *opaque, uint64_t *out, unsigned max)
{
	struct kvm_regs regs;
	struct kvm_sregs2 s;
	uint64_t walk[X86_WALK_MAX];
	unsigned n = 0;
	bool mapped;

	if (ioctl(vcpu_fd, KVM_GET_REGS, &regs) < 0 || ioctl(vcpu_fd, KVM_GET_SREGS2, &s) < 0)
		return -errno;
	/* Linear addresses: in long mode CS and SS have no base. */
	bool lm = (s.efer & EFER_LMA) && s.cs.l;
	uint64_t pc = lm ? regs.rip : s.cs.base + (uint32_t)regs.rip;
	uint64_t sp = lm ? regs.rsp : s.ss.base + (uint32_t)regs.rsp;

	add_va(&s, pc, read, opaque, out, &n, max);
	add_va(&s, sp, read, opaque, out, &n, max);
	/* The first interrupt: the IDT, the GDT, the TSS and (64-bit) the stack it names. */
	add_va(&s, s.idt.base, read, opaque, out, &n, max);
	add_va(&s, s.gdt.base, read, opaque, out, &n, max);
	unsigned k = x86_walk_pages(&s, s.tr.base, read, opaque, walk, &mapped);
	add_walk(walk, k, out, &n, max);
	uint64_t rsp0;
	if (lm && mapped && (s.tr.base & 0xfff) <= 0x1000 - 12 &&
	    read(opaque, walk[k - 1] + (s.tr.base & 0xfff) + 4, 8, &rsp0))
		add_va(&s, rsp0 - 8, read, opaque, out, &n, max);
	return (int)n;
}
