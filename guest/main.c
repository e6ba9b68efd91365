/*
 * main.c - ring-3 start-up: command line, AP start-up,
 * memory layout, heartbeat.  Runs with IOPL=3 and IF=0.
 */
#include "user.h"

#define AP_WAIT_MS      100     /* minimum wait for APs after the SIPIs */
#define AP_QUIET_MS     20      /* ...and until none arrived for this long */
#define AP_WAIT_MAX_MS  1000
#define DMA_POOL_SIZE   (512UL << 10)   /* virtqueues and buffers of the device workloads */

struct shared sh;
struct heartbeat hb;
static char cmdline[1024];

/* ---- time ---------------------------------------------------------------- */

void delay_us(u64 us)
{
	u64 end = rdtsc() + us * sh.tsc_khz / 1000;

	while (rdtsc() < end)
		cpu_relax();
}

/* ---- SMP ---------------------------------------------------------------- */

#define ICR_ALL_BUT_SELF  (3U << 18)
#define ICR_LEVEL_ASSERT  (1U << 14)
#define ICR_INIT          (5U << 8)
#define ICR_STARTUP       (6U << 8)

static u32 door_count(void)
{
	return sh.door & ~DOOR_CLOSED;
}

/* INIT-SIPI-SIPI to all other CPUs, then count who turns up. */
static void start_aps(void)
{
	u64 sipi = ICR_ALL_BUT_SELF | ICR_LEVEL_ASSERT | ICR_STARTUP | (TRAMP_BASE >> 12);
	u64 t_start, t_change, ms = sh.tsc_khz;
	u32 seen = 0, old;

	memcpy((void *)TRAMP_BASE, tramp_start, tramp_end - tramp_start);
	syscall1(SYS_IPI, ICR_ALL_BUT_SELF | ICR_LEVEL_ASSERT | ICR_INIT);
	delay_us(10000);
	syscall1(SYS_IPI, sipi);
	delay_us(200);
	syscall1(SYS_IPI, sipi);

	t_start = t_change = rdtsc();
	for (;;) {
		u64 now = rdtsc();

		if (door_count() != seen) {
			seen = door_count();
			t_change = now;
		}
		if (now - t_start >= AP_WAIT_MAX_MS * ms ||
		    (now - t_start >= AP_WAIT_MS * ms && now - t_change >= AP_QUIET_MS * ms))
			break;
		cpu_relax();
	}
	/* Latecomers see DOOR_CLOSED and park themselves. */
	old = __atomic_fetch_or(&sh.door, DOOR_CLOSED, __ATOMIC_SEQ_CST);
	sh.ncpus = 1 + (old & ~DOOR_CLOSED);
}

static void barrier(volatile u32 *counter)
{
	__atomic_fetch_add(counter, 1, __ATOMIC_SEQ_CST);
	while (*counter < sh.ncpus)
		cpu_relax();
}

/* ---- memory layout ------------------------------------------------------- */

/* Free RAM: the memmap's RAM above everything the image and ring 0 use. */
static void find_free_ranges(void)
{
	const struct hvm_start_info *si = kinfo.start_info;
	const struct hvm_memmap_entry *m = (void *)si->memmap_paddr;

	for (u32 i = 0; i < si->memmap_entries && sh.nfree < MAX_RANGES; i++) {
		u64 start = ALIGN_UP(m[i].addr, PAGE_SIZE);
		u64 end = (m[i].addr + m[i].size) & ~(PAGE_SIZE - 1);

		if (m[i].type != MEMMAP_RAM)
			continue;
		if (start < kinfo.free_start)
			start = kinfo.free_start;
		if (start >= end)
			continue;
		sh.free[sh.nfree++] = (struct range){ start, end };
		sh.free_pages += (end - start) / PAGE_SIZE;
	}
}

/*
 * Memory the devices may DMA to: taken from the start of the lowest free
 * range that holds it (just past the image, below the 2 MiB-aligned working
 * set), so that neither fill= nor the working set touch it.
 */
static void reserve_dma(void)
{
	u64 size = DMA_POOL_SIZE;
	struct range *best = NULL;

	if (sh.cfg.disk && sh.cfg.disk_mode != DISK_VERIFY)
		size += disk_rate_dma_size();
	for (u32 i = 0; i < sh.nfree; i++)
		if (sh.free[i].end - sh.free[i].start >= size &&
		    (!best || sh.free[i].start < best->start))
			best = &sh.free[i];
	if (!best) {
		pr("probe: no free RAM for device buffers\n");
		probe_exit(EXIT_BADARG);
	}
	dma_pool_init(best->start, size);
	best->start += size;
	sh.free_pages -= size / PAGE_SIZE;
}

/* The working set: the largest free range, 2 MiB aligned, clamped. */
static void place_wss(void)
{
	struct range best = { 0, 0 };
	u64 start, size;

	for (u32 i = 0; i < sh.nfree; i++)
		if (sh.free[i].end - sh.free[i].start > best.end - best.start)
			best = sh.free[i];
	start = ALIGN_UP(best.start, 2UL << 20);
	if (start >= best.end || best.end - start < sh.cfg.wss)
		start = best.start;
	size = ALIGN_UP(sh.cfg.wss, PAGE_SIZE);
	if (size > best.end - start) {
		size = best.end - start;
		pr("probe: wss clamped to free RAM (0x%lx bytes)\n", size);
	}
	if (!size) {
		pr("probe: no free RAM for the working set\n");
		probe_exit(EXIT_BADARG);
	}
	sh.wss_start = start;
	sh.wss_pages = size / PAGE_SIZE;
}

/* ---- heartbeat ------------------------------------------------------------ */

/* Work done so far, summed over the vCPUs (each counter only grows). */
static u64 work_units(void)
{
	u64 units = 0;

	for (u32 i = 0; i < sh.ncpus; i++)
		units += sh.work[i].units;
	return units;
}

void hb_fire(void)
{
	u64 now = rdtsc();

	if (now >= hb.crash) {
		/* Only when asked for: a guest that dies as a real one can (tests). */
		pr("probe: crash=%lu: triple fault now\n", sh.cfg.crash);
		syscall1(SYS_CRASH, 0);
	}
	if (now >= hb.end) {
		u64 units = work_units();

		if (sh.cfg.disk && sh.cfg.disk_mode == DISK_VERIFY)
			disk_report();
		else if (sh.cfg.disk)
			disk_rate_report();
		if (sh.cfg.net)
			net_report();
		pr("probe: done after %lu s, %lu heartbeats, work %lu\n",
		   sh.cfg.seconds, hb.seq, units);
		probe_exit(EXIT_OK);
	}
	if (now < hb.next && hb.next - now > sh.period_ticks) {
		/* the TSC went backwards: shift the schedule and the end */
		u64 back = hb.next - now;

		hb.next = now;
		if (hb.end != ~0UL)
			hb.end = hb.end - now > back ? hb.end - back : now;
	}
	if (now < hb.next)
		return;
	pr("hb %lu\n", hb.seq++);
	if (sh.cfg.report && hb.seq % sh.cfg.report == 0)
		pr("probe: work %lu at %lu us\n", work_units(),
		   (now - hb.start) * 1000 / sh.tsc_khz);
	/* Keep a fixed schedule; after a long stall (e.g. migration downtime)
	 * restart it rather than printing a burst of late heartbeats. */
	hb.next += sh.period_ticks;
	if (hb.next <= now)
		hb.next = now + sh.period_ticks;
	if (hb.end < hb.next)
		hb.next = hb.end;
	if (hb.crash < hb.next)
		hb.next = hb.crash;
}

/*
 * Wait until the TSC reaches `tsc`, keeping the heartbeat going on the BSP.
 * Long waits halt the vCPU (a ring-0 round trip costs ~100 us on kvm-pvm,
 * so short ones spin), except on a BSP that polls devices.
 */
void wait_until(u64 tsc, bool bsp)
{
	u64 min_idle = sh.tsc_khz / 5;          /* 200 us */

	for (;;) {
		u64 now = rdtsc(), wake = tsc;

		if (now >= tsc)
			return;
		if (bsp) {
			bsp_poll();
			if (hb.next < wake)
				wake = hb.next;
		}
		if (wake > now + min_idle && !(bsp && bsp_has_devices()))
			syscall1(SYS_IDLE, wake);
		else
			cpu_relax();
	}
}

/* ---- entry points --------------------------------------------------------- */

/*
 * Can ring 3 use in/out?  With IOPL=3 it can on hardware, and on kvm-pvm
 * when the entry state's task register is QEMU's (arch/x86/boot.c); where
 * it faults, every line goes through a syscall into emulated ring 0.
 */
static void probe_user_io(void)
{
	u8 v;

	kinfo.user_io = true;
	kinfo.io_probe = true;
	__asm__ volatile("inb %%dx, %%al" : "=a"(v) : "d"(0x3fd) : "memory");
	kinfo.io_probe = false;
	(void)v;
}

static void read_cmdline(void)
{
	const char *src = (const char *)kinfo.start_info->cmdline_paddr;
	size_t i = 0;

	if (src)
		for (; src[i] && i < sizeof(cmdline) - 1; i++)
			cmdline[i] = src[i];
	cmdline[i] = 0;
}

static void print_config(void)
{
	const struct config *c = &sh.cfg;

	pr("probe: ram 0x%lx free %lu pages from 0x%lx, %s, %s timer\n",
	   kinfo.ram_top, sh.free_pages, kinfo.free_start,
	   kinfo.x2apic ? "x2apic" : "xapic", kinfo.tsc_deadline ? "tsc-deadline" : "one-shot");
	pr("probe: cpus %u tsc_khz %lu workload %s%s%s\n", sh.ncpus, sh.tsc_khz,
	   workload_name(c->workload), c->disk ? ",disk" : "", c->net ? ",net" : "");
	if (kinfo.ap_booted + 1 > sh.ncpus)
		pr("probe: warning: %u APs came up late and were parked\n",
		   kinfo.ap_booted + 1 - sh.ncpus);
	pr("probe: wss 0x%lx 0x%lx\n", sh.wss_start, sh.wss_pages * PAGE_SIZE);
	pr("probe: period_us %lu seconds %lu fill %s pattern %s rate %lu seed %lu\n",
	   c->period_ns / 1000, c->seconds, fill_name(c->fill), pattern_name(c->pattern),
	   c->rate, c->seed);
}

noreturn void user_main(u32 cpu)
{
	u64 ring3_tsc = rdtsc();

	(void)cpu;
	__asm__ volatile("fninit");
	probe_user_io();
	read_cmdline();
	pr("probe: ferry probe guest, cmdline \"%s\"\n", cmdline);
	/* Tests check which path the UART output takes (direct is fast). */
	pr("probe: port-io %s\n", kinfo.user_io ? "ring3" : "syscall");
	if (!parse_cmdline(cmdline, &sh.cfg))
		probe_exit(EXIT_BADARG);
	tsc_calibrate();
	pr("probe: PVH entry to ring 3 took %lu us\n", (ring3_tsc - boot_tsc) * 1000 / sh.tsc_khz);
	sh.period_ticks = sh.cfg.period_ns * sh.tsc_khz / 1000000;
	start_aps();
	find_free_ranges();
	if (bsp_has_devices())
		reserve_dma();
	place_wss();
	print_config();
	virtio_scan(sh.cfg.virtio, sh.cfg.nvirtio);
	if (sh.cfg.disk && sh.cfg.disk_mode == DISK_VERIFY)
		disk_init();
	else if (sh.cfg.disk)
		disk_rate_init();
	if (sh.cfg.net)
		net_init();

	__atomic_store_n(&sh.go, 1, __ATOMIC_SEQ_CST);
	if (sh.cfg.fill != FILL_NONE) {
		u64 t0 = rdtsc();

		fill_memory(0);
		barrier(&sh.filled);
		pr("probe: fill %s done in %lu ms\n", fill_name(sh.cfg.fill),
		   (rdtsc() - t0) / sh.tsc_khz);
	}

	hb.next = hb.start = rdtsc();
	hb.end = sh.cfg.seconds ? hb.next + sh.cfg.seconds * sh.tsc_hz : ~0UL;
	hb.crash = sh.cfg.crash ? hb.next + sh.cfg.crash * sh.tsc_hz : ~0UL;
	pr("probe: running\n");
	__atomic_store_n(&sh.running, 1, __ATOMIC_SEQ_CST);
	run_workload(0);
}

noreturn void ap_user_main(u32 kernel_index)
{
	u32 old = __atomic_fetch_add(&sh.door, 1, __ATOMIC_SEQ_CST);
	u32 cpu = (old & ~DOOR_CLOSED) + 1;

	(void)kernel_index;
	if (old & DOOR_CLOSED)
		syscall1(SYS_HALT, 0);          /* arrived after the count */
	__asm__ volatile("fninit");
	while (!sh.go)
		cpu_relax();
	if (sh.cfg.fill != FILL_NONE) {
		fill_memory(cpu);
		barrier(&sh.filled);
	}
	while (!sh.running)
		cpu_relax();
	run_workload(cpu);
}
