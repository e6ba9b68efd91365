/*
 * user.h - ring-3 side of the probe: configuration and shared state.
 */
#ifndef USER_H
#define USER_H

#include "probe.h"
#include "virtio.h"

enum workload { WL_IDLE, WL_CPU, WL_MEMTOUCH, WL_VERIFY };
enum pattern { PAT_SEQ, PAT_RANDOM, PAT_HOTCOLD, PAT_SPARSE };
enum fill { FILL_NONE, FILL_ZERO, FILL_TEXT, FILL_RANDOM, FILL_MIXED };
enum disk_mode { DISK_VERIFY, DISK_RANDWRITE, DISK_SEQWRITE, DISK_SEQREAD };

struct config {
	enum workload workload;
	enum pattern pattern;
	enum fill fill;
	u64 wss;                /* bytes */
	u64 period_ns;
	u64 seconds;            /* 0 = forever */
	u64 crash;              /* triple-fault after this many seconds, 0 = never */
	u64 report;             /* a "probe: work" line every this many heartbeats, 0 = none */
	u64 seed;
	u64 rate;               /* bytes/s over all vCPUs, 0 = unpaced */
	bool disk, net;         /* device workloads, run by the BSP beside `workload` */
	u64 disk_blocks;        /* disk working set, 4 KiB blocks */
	enum disk_mode disk_mode;
	u64 disk_flush;         /* rate modes: FLUSH after every N writes, 0 = never */
	u64 disk_req;           /* seq modes: bytes per request */
	u64 disk_depth;         /* rate modes: requests in flight, 0 = the mode's default */
	u64 disk_rate;          /* verify: bytes/s of writes, 0 = unpaced */
	u32 ip;                 /* net: our IPv4 address, a.b.c.d = a << 24 | ... */
	u64 udp_port;           /* net: UDP echo port */
	struct virtio_loc virtio[VIRTIO_MAX_DEVS];      /* virtio_mmio.device= */
	u32 nvirtio;
};

/* A free RAM range [start, end), page aligned. */
struct range {
	u64 start, end;
};
#define MAX_RANGES 64

/* State the BSP sets up and every vCPU reads (ring 3 shares all memory). */
struct shared {
	struct config cfg;
	u32 ncpus;
	u64 tsc_khz;
	u64 tsc_hz;
	u64 period_ticks;
	u64 wss_start, wss_pages;
	struct range free[MAX_RANGES];
	u32 nfree;
	u64 free_pages;
	volatile u32 door;      /* AP admission counter, DOOR_CLOSED when counted */
	volatile u32 go;        /* BSP: layout known, start filling */
	volatile u32 filled;    /* vCPUs done filling */
	volatile u32 running;   /* BSP: start the workload */
	struct {                /* per-vCPU work counter, one cache line each */
		volatile u64 units;     /* pages written (memtouch, verify) or loop iterations (cpu) */
		u64 pad[7];
	} work[MAX_CPUS] __attribute__((aligned(64)));
};
#define DOOR_CLOSED 0x80000000U
extern struct shared sh;

/* cmdline.c */
bool parse_cmdline(const char *line, struct config *cfg);
const char *workload_name(enum workload w);
const char *pattern_name(enum pattern p);
const char *fill_name(enum fill f);
const char *disk_mode_name(enum disk_mode m);

/* main.c: heartbeat, owned by the BSP */
struct heartbeat {
	u64 next;               /* TSC of the next "hb" line */
	u64 seq;
	u64 end;                /* TSC at which seconds= expires, or ~0 */
	u64 crash;              /* TSC at which crash= fires, or ~0 */
	u64 start;              /* TSC at "probe: running" */
};
extern struct heartbeat hb;
void hb_fire(void);

/* disk.c, net.c: the device workloads, advanced by the BSP in bsp_poll();
 * *_init claim a device and exit when they cannot. */
void disk_init(void);
void disk_poll(u64 now);
void disk_report(void);
u64 disk_rate_dma_size(void);
void disk_rate_init(void);
void disk_rate_poll(u64 now);
void disk_rate_report(void);
void net_init(void);
void net_poll(u64 now);
void net_report(void);

static inline bool bsp_has_devices(void)
{
	return sh.cfg.disk || sh.cfg.net;
}

/*
 * The BSP's duties between units of work: advance the device workloads and
 * print the heartbeat when due.  The heartbeat also fires if the TSC went
 * backwards by more than a period (a VMM that does not carry the TSC
 * across a migration), to restart the schedule.
 */
static inline void bsp_poll(void)
{
	u64 now = rdtsc();

	if (sh.cfg.disk) {
		if (sh.cfg.disk_mode == DISK_VERIFY)
			disk_poll(now);
		else
			disk_rate_poll(now);
	}
	if (sh.cfg.net)
		net_poll(now);
	if (now >= hb.next || hb.next - now > sh.period_ticks)
		hb_fire();
}
void wait_until(u64 tsc, bool bsp);
void delay_us(u64 us);

/* tsc.c: sets sh.tsc_khz, sh.tsc_hz (exits when it cannot) */
void tsc_calibrate(void);

/* fill.c */
void fill_memory(u32 cpu);

/* workloads.c, cpu.c: never return */
noreturn void run_workload(u32 cpu);
noreturn void run_cpu(u32 cpu);

#endif /* USER_H */
