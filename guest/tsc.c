/*
 * tsc.c - how fast the TSC ticks, found once at boot by the BSP in ring 3.
 *
 * Sources, best first: the hypervisor's TSC-frequency leaf 0x40000010
 * (QEMU with a known TSC rate), kvmclock's scale factor (every KVM), the
 * PIT (channel 2 gated through port 0x61, absent on QEMU's microvm), and
 * CPUID leaf 0x15.  The hypervisor leaves are read through a syscall
 * because ring-3 CPUID on kvm-pvm returns the raw host's values.
 */
#include "user.h"

#define PIT_HZ          1193182UL
#define CALIB_MS        20
#define KHZ_MIN         100000          /* anything slower is a broken source */

#define KVM_FEATURE_CLOCKSOURCE2 (1U << 3)

/* KVM's pvclock_vcpu_time_info (Documentation/virt/kvm/x86/msr.rst). */
struct pvclock {
	u32 version;
	u32 pad0;
	u64 tsc_timestamp;
	u64 system_time;
	u32 tsc_to_system_mul;
	signed char tsc_shift;
	u8 flags;
	u8 pad[2];
};
static struct pvclock pvclock __attribute__((aligned(64)));

static void hv_cpuid(u32 leaf, u32 r[4])
{
	syscall2(SYS_CPUID, (u64)r, leaf);
}

/* The base of KVM's CPUID leaves (0x40000000, or 0x40000100 next to
 * Hyper-V's), and in *max its highest leaf; 0 when this is not KVM. */
static u32 kvm_leaf_base(u32 *max)
{
	for (u32 base = 0x40000000; base <= 0x40000100; base += 0x100) {
		u32 r[4];

		hv_cpuid(base, r);
		if (r[1] == 0x4b4d564b && r[2] == 0x564b4d56 && r[3] == 0x4d) {
			*max = r[0] ? r[0] : base + 1;
			return base;
		}
	}
	return 0;
}

/* Leaf 0x40000010 EAX: the TSC rate in kHz, where the hypervisor gives it. */
static u64 tsc_khz_hv_leaf(void)
{
	u32 r[4];

	hv_cpuid(0x40000000, r);
	if (r[0] < 0x40000010 || r[0] > 0x400000ff)
		return 0;
	hv_cpuid(0x40000010, r);
	return r[0];
}

/*
 * kvmclock converts TSC ticks to ns as (ticks << shift) * mul >> 32, so the
 * TSC rate is 10^6 << 32 / mul kHz, shifted back.  The clock is switched off
 * again at once: the probe does not keep it, and a host that keeps writing
 * a page of guest RAM would only muddy migration tests.
 */
static u64 tsc_khz_kvmclock(void)
{
	u32 max, base = kvm_leaf_base(&max), r[4];
	u64 khz = 0;

	if (!base || max < base + 1)
		return 0;
	hv_cpuid(base + 1, r);
	if (!(r[0] & KVM_FEATURE_CLOCKSOURCE2))
		return 0;
	memset(&pvclock, 0, sizeof(pvclock));
	syscall1(SYS_KVMCLOCK, (u64)&pvclock | 1);
	/* KVM fills the page before the vCPU runs again; bounded anyway. */
	for (u32 i = 0; i < 1000000; i++) {
		u32 v = __atomic_load_n(&pvclock.version, __ATOMIC_ACQUIRE);

		if (v && !(v & 1) && pvclock.tsc_to_system_mul) {
			khz = (1000000UL << 32) / pvclock.tsc_to_system_mul;
			if (pvclock.tsc_shift < 0)
				khz <<= -pvclock.tsc_shift;
			else
				khz >>= pvclock.tsc_shift;
			if (__atomic_load_n(&pvclock.version, __ATOMIC_ACQUIRE) == v)
				break;
			khz = 0;
		}
		cpu_relax();
	}
	syscall1(SYS_KVMCLOCK, 0);
	return khz;
}

/* TSC ticks per ms, measured against CALIB_MS of the PIT; 0 if no PIT. */
static u64 tsc_khz_pit(void)
{
	return syscall1(SYS_PIT_CAL, PIT_HZ * CALIB_MS / 1000) / CALIB_MS;
}

/* CPUID leaf 0x15 (crystal clock ratio), as ring 3 sees it. */
static u64 tsc_khz_leaf15(void)
{
	u32 r[4];

	cpuid(0, 0, r);
	if (r[0] < 0x15)
		return 0;
	cpuid(0x15, 0, r);
	if (!r[0] || !r[1] || !r[2])
		return 0;
	return (u64)r[2] * r[1] / r[0] / 1000;
}

static const struct {
	const char *name;
	u64 (*khz)(void);
} tsc_sources[] = {
	{ "cpuid 0x40000010", tsc_khz_hv_leaf },
	{ "kvmclock", tsc_khz_kvmclock },
	{ "pit", tsc_khz_pit },
	{ "cpuid 0x15", tsc_khz_leaf15 },
};

void tsc_calibrate(void)
{
	u64 khz = 0;
	u32 i;

	for (i = 0; i < ARRAY_SIZE(tsc_sources); i++) {
		khz = tsc_sources[i].khz();
		if (khz >= KHZ_MIN)
			break;
		if (khz)
			pr("probe: %s gave %lu kHz, ignored\n", tsc_sources[i].name, khz);
	}
	if (i == ARRAY_SIZE(tsc_sources)) {
		pr("probe: cannot determine the TSC frequency\n");
		probe_exit(EXIT_BADARG);
	}
	pr("probe: tsc %lu kHz from %s\n", khz, tsc_sources[i].name);
	sh.tsc_khz = kinfo.tsc_khz = khz;
	sh.tsc_hz = khz * 1000;

	if (!kinfo.tsc_deadline) {
		/* one-shot LAPIC timer for idle: measure its rate too */
		u64 cur;

		syscall1(SYS_TIMER_START, 0);
		delay_us(10000);
		cur = syscall1(SYS_TIMER_READ, 0);
		kinfo.apic_khz = (0xffffffffUL - cur) / 10;
	}
}
