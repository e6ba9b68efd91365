#include "arch/x86/mptable.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

/* Entry types and flags (MP spec 1.4, Linux's asm/mpspec_def.h). */
#define MP_PROCESSOR	0
#define MP_BUS		1
#define MP_IOAPIC	2
#define MP_INTSRC	3
#define MP_LINTSRC	4
#define CPU_ENABLED	1
#define CPU_BSP		2
#define MP_INT		0
#define MP_NMI		1
#define MP_EXTINT	3
#define APIC_VERSION	0x14

struct mpf_intel {
	char signature[4];		/* "_MP_" */
	uint32_t physptr;		/* the configuration table */
	uint8_t length;			/* in 16-byte units: 1 */
	uint8_t specification;		/* 4: version 1.4 */
	uint8_t checksum;
	uint8_t feature[5];
} __attribute__((packed));

struct mpc_table {
	char signature[4];		/* "PCMP" */
	uint16_t length;		/* header and entries */
	uint8_t spec;
	uint8_t checksum;
	char oem[8];
	char productid[12];
	uint32_t oemptr;
	uint16_t oemsize;
	uint16_t oemcount;		/* entries */
	uint32_t lapic;
	uint32_t reserved;
} __attribute__((packed));

struct mpc_cpu {
	uint8_t type, apicid, apicver, cpuflag;
	uint32_t cpufeature, featureflag;
	uint32_t reserved[2];
} __attribute__((packed));

struct mpc_bus {
	uint8_t type, busid;
	char bustype[6];
} __attribute__((packed));

struct mpc_ioapic {
	uint8_t type, apicid, apicver, flags;
	uint32_t apicaddr;
} __attribute__((packed));

struct mpc_intsrc {			/* also the local interrupt entries */
	uint8_t type, irqtype;
	uint16_t irqflag;
	uint8_t srcbus, srcbusirq, dstapic, dstirq;
} __attribute__((packed));

_Static_assert(sizeof(struct mpf_intel) == 16, "MP floating pointer");
_Static_assert(sizeof(struct mpc_table) == 44, "MP configuration table header");
_Static_assert(sizeof(struct mpc_cpu) == 20, "MP processor entry");

static uint8_t mp_checksum(const uint8_t *p, size_t len)
{
	uint8_t sum = 0;

	while (len--)
		sum += *p++;
	return (uint8_t)-sum;
}

int x86_mptable_write(const struct pvh_ram *ram, unsigned nr_cpus)
{
	size_t len = sizeof(struct mpf_intel) + sizeof(struct mpc_table) +
		     nr_cpus * sizeof(struct mpc_cpu) + sizeof(struct mpc_bus) +
		     sizeof(struct mpc_ioapic) + (MPTABLE_IRQS + 2) * sizeof(struct mpc_intsrc);
	uint8_t ioapic_id = (uint8_t)(nr_cpus + 1);	/* as Firecracker: clear of every CPU */
	uint8_t *base, *p;

	if (!nr_cpus || nr_cpus > MPTABLE_MAX_CPUS)
		return -EINVAL;
	base = pvh_ram_ptr(ram, MPTABLE_GPA, len);
	if (!base)
		return -ERANGE;
	memset(base, 0, len);
	struct mpf_intel mpf = {
		.signature = "_MP_", .physptr = (uint32_t)MPTABLE_GPA + sizeof(mpf),
		.length = 1, .specification = 4,
	};
	mpf.checksum = mp_checksum((const uint8_t *)&mpf, sizeof(mpf));
	memcpy(base, &mpf, sizeof(mpf));

	uint8_t *table = base + sizeof(mpf);
	p = table + sizeof(struct mpc_table);
	for (unsigned i = 0; i < nr_cpus; i++) {
		struct mpc_cpu c = {
			.type = MP_PROCESSOR, .apicid = (uint8_t)i, .apicver = APIC_VERSION,
			.cpuflag = CPU_ENABLED | (i == 0 ? CPU_BSP : 0),
			.cpufeature = 0x600,		/* family 6 */
			.featureflag = 1u << 9 | 1u << 0,	/* APIC, FPU */
		};
		memcpy(p, &c, sizeof(c));
		p += sizeof(c);
	}
	struct mpc_bus bus = { .type = MP_BUS, .busid = 0, .bustype = "ISA   " };
	memcpy(p, &bus, sizeof(bus));
	p += sizeof(bus);
	struct mpc_ioapic io = {
		.type = MP_IOAPIC, .apicid = ioapic_id, .apicver = APIC_VERSION, .flags = 1,
		.apicaddr = MPTABLE_IOAPIC_GPA,
	};
	memcpy(p, &io, sizeof(io));
	p += sizeof(io);
	for (unsigned irq = 0; irq < MPTABLE_IRQS; irq++) {
		struct mpc_intsrc s = {
			.type = MP_INTSRC, .irqtype = MP_INT, .srcbus = 0,
			.srcbusirq = (uint8_t)irq, .dstapic = ioapic_id, .dstirq = (uint8_t)irq,
		};
		memcpy(p, &s, sizeof(s));
		p += sizeof(s);
	}
	/* LINT0 of the boot CPU: ExtINT (the PIC); LINT1 of every CPU: NMI. */
	struct mpc_intsrc lint0 = { .type = MP_LINTSRC, .irqtype = MP_EXTINT, .dstapic = 0 };
	struct mpc_intsrc lint1 = { .type = MP_LINTSRC, .irqtype = MP_NMI, .dstapic = 0xff,
				    .dstirq = 1 };
	memcpy(p, &lint0, sizeof(lint0));
	p += sizeof(lint0);
	memcpy(p, &lint1, sizeof(lint1));
	p += sizeof(lint1);

	struct mpc_table h = {
		.signature = "PCMP", .length = (uint16_t)(p - table), .spec = 4,
		.oem = "FERRY   ", .productid = "000000000000",
		.oemcount = (uint16_t)(nr_cpus + 1 + 1 + MPTABLE_IRQS + 2),
		.lapic = MPTABLE_LAPIC_GPA,
	};
	memcpy(table, &h, sizeof(h));
	table[offsetof(struct mpc_table, checksum)] = mp_checksum(table, h.length);
	return (int)len;
}
