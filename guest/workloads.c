/*
 * workloads.c - idle, memtouch and verify (cpu is in cpu.c; the device
 * workloads, disk.c and net.c, run on the BSP through bsp_poll).
 *
 * Every vCPU works on its own slice of the working set; only the BSP
 * (cpu 0) prints heartbeats, so it polls the TSC between units of work.
 */
#include "user.h"

#define WORDS_PER_PAGE  (PAGE_SIZE / 8)
#define GOLDEN          0x9e3779b97f4a7c15UL

struct slice {
	u64 first;              /* first page index within the wss */
	u64 pages;
};

static struct slice my_slice(u32 cpu)
{
	u64 per = sh.wss_pages / sh.ncpus;
	struct slice s = { cpu * per, per };

	if (cpu == sh.ncpus - 1)
		s.pages = sh.wss_pages - s.first;
	return s;
}

static inline u64 *page_ptr(u64 index)
{
	return (u64 *)(sh.wss_start + index * PAGE_SIZE);
}

/* ---- idle ------------------------------------------------------------ */

/* Halt until the next heartbeat (BSP) or for a second (APs).  A BSP with
 * device workloads polls instead: interrupts are off, so only polling sees
 * a completion or a packet. */
static noreturn void run_idle(u32 cpu)
{
	if (cpu == 0 && bsp_has_devices())
		for (;;)
			bsp_poll();
	for (;;) {
		if (cpu == 0) {
			u64 now = rdtsc();

			/* never sleep past one period, even if the TSC jumped */
			syscall1(SYS_IDLE, hb.next < now + sh.period_ticks ?
					   hb.next : now + sh.period_ticks);
			bsp_poll();
		} else {
			syscall1(SYS_IDLE, rdtsc() + sh.tsc_hz);
		}
	}
}

/* ---- memtouch ---------------------------------------------------------- */

static u64 pick_page(const struct slice *s, u64 *rng, u64 *seq)
{
	u64 hot, r;

	switch (sh.cfg.pattern) {
	case PAT_RANDOM:
	case PAT_SPARSE:
		return xorshift64(rng) % s->pages;
	case PAT_HOTCOLD:
		/* 90% of the writes go to the first 10% of the pages */
		hot = s->pages / 10 ? s->pages / 10 : 1;
		r = xorshift64(rng);
		if (r % 10 < 9 || hot == s->pages)
			return (r >> 8) % hot;
		return hot + (r >> 8) % (s->pages - hot);
	case PAT_SEQ:
	default:
		if (*seq >= s->pages)
			*seq = 0;
		return (*seq)++;
	}
}

/*
 * pattern=sparse: pages full of random words (nothing compresses them),
 * of which each touch rewrites one word: a delta against the copy last
 * sent pays, a compressor does not.  The slice is filled once, first.
 */
static void memtouch_sparse_fill(const struct slice *s, u64 *rng)
{
	for (u64 i = 0; i < s->pages; i++) {
		u64 *p = page_ptr(s->first + i);
		for (u64 w = 0; w < PAGE_SIZE / 8; w++)
			p[w] = xorshift64(rng);
	}
}

/*
 * Each touch writes a per-vCPU counter into word 0 of a page (sparse: into
 * a random word of it).  The counter only grows and pages are never shared
 * between vCPUs, so every touch changes the page.  With rate=, touch k is
 * due at t0 + k * ticks_per_page.
 */
static noreturn void run_memtouch(u32 cpu)
{
	struct slice s = my_slice(cpu);
	bool bsp = cpu == 0;
	u64 rng = mix64(sh.cfg.seed + cpu + 1) | 1, seq = 0, counter = 0;
	double per_page = 0, due = rdtsc();
	double slack = sh.tsc_hz / 20.0;        /* 50 ms: behind by more resets */

	if (sh.cfg.rate)
		per_page = (double)sh.tsc_hz * PAGE_SIZE * sh.ncpus / sh.cfg.rate;
	if (!s.pages)
		run_idle(cpu);
	if (sh.cfg.pattern == PAT_SPARSE)
		memtouch_sparse_fill(&s, &rng);
	for (;;) {
		u64 *p = page_ptr(s.first + pick_page(&s, &rng, &seq));

		if (sh.cfg.pattern == PAT_SPARSE)
			p += (counter * 0x9e3779b9ULL >> 7) % (PAGE_SIZE / 8);
		*(volatile u64 *)p = ((u64)cpu << 56) | ++counter;
		sh.work[cpu].units = counter;
		if (per_page) {
			u64 now = rdtsc();

			due += per_page;
			if (now > due + slack)
				due = now;
			else if (now < (u64)due)
				wait_until((u64)due, bsp);
		} else if (bsp && !(counter & 63)) {
			bsp_poll();
		}
	}
}

/* ---- verify ------------------------------------------------------------ */

/*
 * Page content is a pure function of (pfn, pass): word 0 = pfn,
 * word 1 = pass, words 2..511 = an arithmetic sequence seeded by a hash of
 * (pfn, pass, seed).  Every word is checked, so any flipped byte is caught.
 */
static inline u64 verify_seed(u64 pfn, u64 pass)
{
	return mix64((pfn << 24) ^ pass ^ (sh.cfg.seed * GOLDEN));
}

static void verify_write(u64 *p, u64 pfn, u64 pass)
{
	u64 v = verify_seed(pfn, pass);

	p[0] = pfn;
	p[1] = pass;
	for (u32 j = 2; j < WORDS_PER_PAGE; j++, v += GOLDEN)
		p[j] = v;
}

static noreturn void report_corrupt(const u64 *p, u64 pfn, u64 pass, u32 cpu)
{
	u64 v = verify_seed(pfn, pass);
	u64 want = pfn;

	for (u32 j = 0; j < WORDS_PER_PAGE; j++) {
		want = j == 0 ? pfn : j == 1 ? pass : v + (j - 2) * GOLDEN;
		if (p[j] != want) {
			pr("CORRUPT 0x%lx off 0x%x want 0x%lx got 0x%lx pass %lu cpu %u\n",
			   pfn, j * 8, want, p[j], pass, cpu);
			break;
		}
	}
	probe_exit(EXIT_CORRUPT);
}

/* Check the page holds pass `pass`; a branch-free OR so it vectorises. */
static inline bool verify_check(const u64 *p, u64 pfn, u64 pass)
{
	u64 v = verify_seed(pfn, pass), bad = (p[0] ^ pfn) | (p[1] ^ pass);

	for (u32 j = 2; j < WORDS_PER_PAGE; j++, v += GOLDEN)
		bad |= p[j] ^ v;
	return bad == 0;
}

static noreturn void run_verify(u32 cpu)
{
	struct slice s = my_slice(cpu);
	bool bsp = cpu == 0;
	u64 pfn0 = sh.wss_start / PAGE_SIZE + s.first, last_print = rdtsc();

	if (!s.pages)
		run_idle(cpu);
	for (u64 i = 0; i < s.pages; i++) {
		verify_write(page_ptr(s.first + i), pfn0 + i, 0);
		if (bsp)
			bsp_poll();
	}
	for (u64 pass = 1;; pass++) {
		for (u64 i = 0; i < s.pages; i++) {
			u64 *p = page_ptr(s.first + i);

			if (!verify_check(p, pfn0 + i, pass - 1))
				report_corrupt(p, pfn0 + i, pass - 1, cpu);
			verify_write(p, pfn0 + i, pass);
			if (bsp)
				bsp_poll();
		}
		sh.work[cpu].units += s.pages;
		if (bsp && rdtsc() - last_print >= sh.tsc_hz) {
			pr("probe: verify pass %lu\n", pass);
			last_print = rdtsc();
		}
	}
}

noreturn void run_workload(u32 cpu)
{
	switch (sh.cfg.workload) {
	case WL_CPU:
		run_cpu(cpu);
	case WL_MEMTOUCH:
		run_memtouch(cpu);
	case WL_VERIFY:
		run_verify(cpu);
	case WL_IDLE:
	default:
		run_idle(cpu);
	}
}
