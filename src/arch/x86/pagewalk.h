/*
 * The guest-physical pages an x86 vCPU reads to reach a linear address:
 * each paging-structure page of the walk, then the page that holds the
 * address.  A guest that has just arrived by post-copy needs exactly these
 * first (its TLB is empty: the first instruction walks CR3 for RIP, the
 * first push for RSP), so the source sends them before anything else
 * (docs/postcopy.md, "First pages").
 *
 * Pure: guest memory is read through a callback, and every entry read is
 * hostile (a table outside RAM ends the walk there).  Modes: paging off,
 * 32-bit (4 MiB pages with CR4.PSE), PAE (its PDPTEs from KVM_GET_SREGS2),
 * 4-level and 5-level long mode, with 2 MiB and 1 GiB pages.
 */
#ifndef FERRY_ARCH_X86_PAGEWALK_H
#define FERRY_ARCH_X86_PAGEWALK_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stdint.h>

/* Read `len` (4 or 8) bytes of guest RAM at gpa into *val; false outside RAM. */
typedef bool x86_read_fn(void *opaque, uint64_t gpa, unsigned len, uint64_t *val);

/* At most this many pages per walk: five tables and the page itself. */
#define X86_WALK_MAX 6

/*
 * Walk linear address va under the control registers of s; write the gpa
 * (4 KiB aligned) of each page read, tables first, into out (room for
 * X86_WALK_MAX).  Returns how many were written: fewer where an entry is
 * not present or a table lies outside RAM (the walk stops there).
 * *mapped (may be NULL) says whether the walk reached va's page, which is
 * then the last one written.
 */
unsigned x86_walk_pages(const struct kvm_sregs2 *s, uint64_t va, x86_read_fn *read, void *opaque,
			uint64_t out[X86_WALK_MAX], bool *mapped);

/*
 * What a stopped vCPU touches first when it runs again: the walks for its
 * RIP and its RSP (and the pages there), then what its first interrupt
 * reads (the IDT, the GDT, the TSS and, in 64-bit mode, the stack its
 * RSP0 names), read with KVM_GET_REGS and KVM_GET_SREGS2 from vcpu_fd.
 * Written into out (room for max), without repeats; returns how many, or
 * -errno if the registers cannot be read.
 */
int x86_vcpu_first_pages(int vcpu_fd, x86_read_fn *read, void *opaque, uint64_t *out, unsigned max);

#endif
