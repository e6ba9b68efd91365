/*
 * The Intel MultiProcessor Specification 1.4 table, as Firecracker writes
 * it: how a kernel without firmware (no ACPI here) finds every vCPU's
 * local APIC, the IOAPIC and how the ISA IRQs reach it.
 */
#ifndef FERRY_ARCH_X86_MPTABLE_H
#define FERRY_ARCH_X86_MPTABLE_H

#include "arch/x86/pvh.h"

/* In the BIOS area (reserved in the memory map), where Linux scans. */
#define MPTABLE_GPA		0xf0000ULL
#define MPTABLE_MAX_CPUS	253	/* APIC ids 0..252; the IOAPIC takes 254 at most */
#define MPTABLE_IOAPIC_GPA	0xfec00000u
#define MPTABLE_LAPIC_GPA	0xfee00000u
#define MPTABLE_IRQS		24	/* IOAPIC pins; ISA IRQ n on pin n */

/*
 * Write the floating pointer and the configuration table for nr_cpus
 * vCPUs (APIC ids 0..nr_cpus-1, vCPU 0 the boot processor).  Returns the
 * bytes written, or -EINVAL (nr_cpus out of range) / -ERANGE (no RAM
 * there).
 */
int x86_mptable_write(const struct pvh_ram *ram, unsigned nr_cpus)
	__attribute__((warn_unused_result));

#endif
