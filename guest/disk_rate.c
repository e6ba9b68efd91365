/*
 * disk_rate.c - the disk workload's throughput modes (BSP, ring 3):
 *
 *   disk_mode=randwrite  4 KiB writes at pseudo-random blocks of the
 *                        working set (disk_blocks=)
 *   disk_mode=seqwrite   disk_req= bytes per request (default 1 MiB, one
 *                        descriptor), in order, wrapping round the working set
 *   disk_mode=seqread    the same, reading
 *
 * with disk_depth= requests in flight (default 32 for 4 KiB, 8 for the
 * sequential modes).  With disk_flush=N (writes only), every N writes the
 * workload stops submitting, waits for the writes in flight to complete and
 * sends a FLUSH, and goes on once that completed: N writes are durable
 * before the next one starts, as a database commit makes them.  At
 * seconds= the rate is printed (see disk_rate_report), measured with the
 * TSC from the first request to the report.  Nothing is checked here: the
 * verify mode (disk.c) does that.
 */
#include "user.h"
#include "blk.h"

#define RATE_DEPTH_MAX          32
#define RATE_DEPTH_4K           32
#define RATE_DEPTH_SEQ          8
#define RATE_STALL_S            5

enum flush_state { FL_NONE, FL_DRAIN, FL_BUSY };

/* Owned by the BSP. */
static struct {
	struct blk_dev b;
	u32 depth;              /* request slots; slot i owns descriptors 3i..3i+2 */
	u32 req;                /* bytes per data request */
	u64 units;              /* randwrite: blocks; seq: requests in the working set */
	u64 flush_every;        /* 0 = never */
	u64 since_flush;        /* writes submitted since the last flush */
	enum flush_state flush;
	u64 next;               /* seq: the next request's index */
	u64 rng;
	u32 inflight;
	bool busy[RATE_DEPTH_MAX];
	struct blk_hdr *hdr;    /* DMA: one header per slot */
	u8 *status;             /* DMA: one status byte per slot */
	u8 *data;               /* DMA: req bytes per slot */
	u64 t_start, last_progress;
	bool stall_reported;
	u64 ops, flushes;       /* completed data requests, completed flushes */
} rate;

static void rate_shape(u32 *depth, u32 *req)
{
	bool seq = sh.cfg.disk_mode != DISK_RANDWRITE;

	*req = seq ? (u32)sh.cfg.disk_req : BLOCK_SIZE;
	*depth = sh.cfg.disk_depth ? (u32)sh.cfg.disk_depth : seq ? RATE_DEPTH_SEQ : RATE_DEPTH_4K;
}

/* DMA memory the mode needs beyond the pool main.c always sets aside. */
u64 disk_rate_dma_size(void)
{
	u32 depth, req;

	rate_shape(&depth, &req);
	return ALIGN_UP((u64)depth * req, PAGE_SIZE) + 2 * PAGE_SIZE;
}

static u32 free_slot(void)
{
	for (u32 i = 0; i < rate.depth; i++)
		if (!rate.busy[i])
			return i;
	return rate.depth;
}

static void submit(u32 slot, u32 type, u64 sector)
{
	u8 *buf = rate.data + (u64)slot * rate.req;

	rate.hdr[slot] = (struct blk_hdr){ .type = type, .sector = sector };
	rate.busy[slot] = true;
	if (!rate.inflight++)
		rate.last_progress = rdtsc();
	blk_chain(&rate.b, (u16)(3 * slot), &rate.hdr[slot], buf, rate.req, &rate.status[slot]);
}

static void submit_data(u32 slot)
{
	u64 sector;

	if (sh.cfg.disk_mode == DISK_RANDWRITE) {
		u64 block = xorshift64(&rate.rng) % rate.units;
		u64 *w = (u64 *)(rate.data + (u64)slot * rate.req);

		w[0] = block;           /* every write differs from the last */
		w[1] = rate.ops;
		sector = block * SECTORS_PER_BLOCK;
	} else {
		sector = rate.next * (rate.req / 512);
		if (++rate.next == rate.units)
			rate.next = 0;
	}
	submit(slot, sh.cfg.disk_mode == DISK_SEQREAD ? VIRTIO_BLK_T_IN : VIRTIO_BLK_T_OUT, sector);
	if (rate.flush_every && ++rate.since_flush == rate.flush_every) {
		rate.since_flush = 0;
		rate.flush = FL_DRAIN;
	}
}

static void complete(u16 head)
{
	u32 slot = head / 3;

	if (head % 3 || slot >= rate.depth || !rate.busy[slot]) {
		pr("probe: disk: the device completed descriptor %u, which is not a pending request\n",
		   head);
		probe_exit(EXIT_CORRUPT);
	}
	if (rate.status[slot] != VIRTIO_BLK_S_OK) {
		pr("probe: disk: I/O error, status %u on %s of sector %lu\n", rate.status[slot],
		   rate.hdr[slot].type == VIRTIO_BLK_T_FLUSH ? "flush" : disk_mode_name(sh.cfg.disk_mode),
		   rate.hdr[slot].sector);
		probe_exit(EXIT_CORRUPT);
	}
	if (rate.hdr[slot].type == VIRTIO_BLK_T_FLUSH) {
		rate.flushes++;
		rate.flush = FL_NONE;
	} else {
		rate.ops++;
	}
	rate.busy[slot] = false;
	rate.inflight--;
}

void disk_rate_poll(u64 now)
{
	bool pushed = false;
	u16 head;
	u32 len;

	if (!rate.t_start)
		rate.t_start = rate.last_progress = now;
	while (virtq_pop(&rate.b.q, &head, &len)) {
		complete(head);
		rate.last_progress = now;
		rate.stall_reported = false;
	}
	if (rate.flush == FL_DRAIN && !rate.inflight) {
		rate.flush = FL_BUSY;
		submit(0, VIRTIO_BLK_T_FLUSH, 0);
		pushed = true;
	}
	while (rate.flush == FL_NONE && rate.inflight < rate.depth) {
		submit_data(free_slot());
		pushed = true;
	}
	if (pushed)
		virtq_kick(&rate.b.q);
	/* last_progress may be a little later than `now` (set by submit) */
	if (rate.inflight && !rate.stall_reported && now > rate.last_progress &&
	    now - rate.last_progress > RATE_STALL_S * sh.tsc_hz) {
		pr("probe: disk: no completion for %u s (%u requests in flight)\n",
		   RATE_STALL_S, rate.inflight);
		rate.stall_reported = true;
	}
}

/* Claim the disk and set up the slots; exits with EXIT_BADARG when the
 * device or the working set cannot do what the command line asks. */
void disk_rate_init(void)
{
	u64 blocks, *w;

	if (sh.cfg.disk_rate) {
		pr("probe: disk_rate= paces disk_mode=verify only\n");
		probe_exit(EXIT_BADARG);
	}
	blk_open(&rate.b);
	rate_shape(&rate.depth, &rate.req);
	blocks = sh.cfg.disk_blocks;
	if (blocks > rate.b.capacity / SECTORS_PER_BLOCK) {
		blocks = rate.b.capacity / SECTORS_PER_BLOCK;
		pr("probe: disk_blocks clamped to the disk (%lu blocks)\n", blocks);
	}
	rate.units = sh.cfg.disk_mode == DISK_RANDWRITE ? blocks : blocks * BLOCK_SIZE / rate.req;
	if (!rate.units) {
		pr("probe: disk: the working set (%lu blocks) holds no request of %u bytes\n",
		   blocks, rate.req);
		probe_exit(EXIT_BADARG);
	}
	if (rate.depth > rate.b.q.size / 3) {
		rate.depth = rate.b.q.size / 3;
		pr("probe: disk_depth clamped to the queue (%u)\n", rate.depth);
	}
	rate.flush_every = sh.cfg.disk_mode == DISK_SEQREAD ? 0 : sh.cfg.disk_flush;
	if (rate.flush_every && !rate.b.flush) {
		pr("probe: disk_flush ignored: the device offers no FLUSH\n");
		rate.flush_every = 0;
	}
	rate.hdr = dma_alloc(RATE_DEPTH_MAX * sizeof(struct blk_hdr));
	rate.status = dma_alloc(RATE_DEPTH_MAX);
	rate.data = dma_alloc((u64)rate.depth * rate.req);
	if (!rate.depth || !rate.hdr || !rate.status || !rate.data) {
		pr("probe: disk: queue too small or out of DMA memory\n");
		probe_exit(EXIT_BADARG);
	}
	/* Incompressible data, so that nothing on the way can shortcut it. */
	rate.rng = mix64(sh.cfg.seed + 0x5eed) | 1;
	w = (u64 *)rate.data;
	for (u64 i = 0; i < (u64)rate.depth * rate.req / 8; i++)
		w[i] = xorshift64(&rate.rng);
	virtio_driver_ok(rate.b.dev);
	pr("probe: disk 0x%lx capacity %lu sectors, %s, %lu %s of %u bytes, depth %u, flush every %lu, queue %u\n",
	   rate.b.dev->loc.base, rate.b.capacity, disk_mode_name(sh.cfg.disk_mode), rate.units,
	   sh.cfg.disk_mode == DISK_RANDWRITE ? "blocks" : "requests", rate.req, rate.depth,
	   rate.flush_every, rate.b.q.size);
}

/*
 * probe: disk <mode> <ops> ops of <bytes> bytes in <ms> ms: <iops> IOPS, <x.y> MiB/s, <f> flushes
 * ops: data requests completed since the first was sent; MiB = 2^20 bytes.
 */
void disk_rate_report(void)
{
	u64 ms = rate.t_start ? (rdtsc() - rate.t_start) / sh.tsc_khz : 0;
	u64 bytes = rate.ops * rate.req;
	u64 tenths = ms ? bytes * 10 * 1000 / ms / (1UL << 20) : 0;

	pr("probe: disk %s %lu ops of %u bytes in %lu ms: %lu IOPS, %lu.%lu MiB/s, %lu flushes\n",
	   disk_mode_name(sh.cfg.disk_mode), rate.ops, rate.req, ms,
	   ms ? rate.ops * 1000 / ms : 0, tenths / 10, tenths % 10, rate.flushes);
}
