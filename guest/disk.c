/*
 * disk.c - the "disk" workload's default mode, verify (BSP, ring 3); the
 * driver basics are in blk.c, the throughput modes in disk_rate.c.
 *
 * Generation g (from 1) writes every block of the working set
 * (disk_blocks= blocks of 4 KiB from sector 0) with a pattern made of
 * (block, g, nonce), flushes, then reads every block back and checks every
 * word.  A mismatch prints CORRUPT-DISK and exits with failure.  The nonce
 * is drawn at boot so that a stale image from an earlier run cannot pass
 * for this run's writes.  The workload is a state machine that bsp_poll()
 * advances between units of the vCPU workload, so it runs on across a
 * migration like everything else; up to DISK_DEPTH requests are in flight.
 *
 * disk_rate=R paces it at R bytes/s of writes, steadily: a generation is
 * then one read-modify-write sweep, each block read back and checked for
 * the previous generation (nothing to check in generation 1) and at once
 * rewritten with this one in the same slot, then a FLUSH.  Sweep k starts
 * on block number n (counted over the whole run) at t0 + n * 4096 / R
 * (TSC); a sweep behind by more than 50 ms (a migration's downtime) drops
 * the backlog instead of catching up.  A write acknowledged and lost is
 * caught when the next generation reads the block.
 */
#include "user.h"
#include "blk.h"

#define WORDS_PER_BLOCK         (BLOCK_SIZE / 8)
#define DISK_DEPTH              32
#define DISK_STALL_S            5
#define GOLDEN                  0x9e3779b97f4a7c15UL

/* PH_RMW: disk_rate= (paced), read back and rewrite block by block. */
enum disk_phase { PH_WRITE, PH_FLUSH, PH_READ, PH_RMW };
static const char *const phase_names[] = { "write", "flush", "read", "read-rewrite" };

/* Owned by the BSP. */
static struct {
	struct blk_dev b;
	u32 depth;              /* request slots; slot i owns descriptors 3i..3i+2 */
	u64 blocks;             /* the working set, from block 0 */
	u64 nonce;
	u64 gen;                /* the generation being written or read */
	enum disk_phase phase;
	u64 next;               /* next block to submit in this phase */
	u64 done;               /* requests of this phase completed */
	u32 inflight;
	bool busy[DISK_DEPTH];
	u32 slot_type[DISK_DEPTH];      /* VIRTIO_BLK_T_IN, _OUT or _FLUSH */
	u64 slot_block[DISK_DEPTH];
	struct blk_hdr *hdr;    /* DMA: one header per slot */
	u8 *status;             /* DMA: one status byte per slot */
	u8 *data;               /* DMA: one block per slot */
	u64 last_print, last_progress;
	bool stall_reported;
	u64 written, read, flushes, generations;
	/* disk_rate=: TSC ticks per block, when the next sweep step is due */
	u64 per_block, due, t_first;
} disk;

/* ---- the pattern ------------------------------------------------------- */

static inline u64 block_seed(u64 block, u64 gen)
{
	return mix64((block << 24) ^ gen ^ (disk.nonce * GOLDEN));
}

static void pattern_fill(u64 *p, u64 block, u64 gen)
{
	u64 v = block_seed(block, gen);

	p[0] = block;
	p[1] = gen;
	p[2] = disk.nonce;
	for (u32 j = 3; j < WORDS_PER_BLOCK; j++, v += GOLDEN)
		p[j] = v;
}

static void pattern_check(const u64 *p, u64 block, u64 gen)
{
	u64 v = block_seed(block, gen), bad = (p[0] ^ block) | (p[1] ^ gen) | (p[2] ^ disk.nonce);

	for (u32 j = 3; j < WORDS_PER_BLOCK; j++, v += GOLDEN)
		bad |= p[j] ^ v;
	if (!bad)
		return;
	v = block_seed(block, gen);
	for (u32 j = 0; j < WORDS_PER_BLOCK; j++) {
		u64 want = j == 0 ? block : j == 1 ? gen : j == 2 ? disk.nonce : v + (j - 3) * GOLDEN;

		if (p[j] != want) {
			pr("CORRUPT-DISK %lu off 0x%x want 0x%lx got 0x%lx generation %lu\n",
			   block, j * 8, want, p[j], gen);
			break;
		}
	}
	probe_exit(EXIT_CORRUPT);
}

/* ---- requests ------------------------------------------------------------ */

static u32 free_slot(void)
{
	for (u32 i = 0; i < disk.depth; i++)
		if (!disk.busy[i])
			return i;
	return disk.depth;
}

/* Queue one request in `slot`: header, data (not for FLUSH), status.  A
 * slot still busy is reused (PH_RMW's write after its read). */
static void submit(u32 slot, u32 type, u64 block)
{
	u64 *buf = (u64 *)(disk.data + slot * BLOCK_SIZE);

	disk.hdr[slot] = (struct blk_hdr){ .type = type, .sector = block * SECTORS_PER_BLOCK };
	if (type == VIRTIO_BLK_T_OUT)
		pattern_fill(buf, block, disk.gen);
	disk.slot_type[slot] = type;
	disk.slot_block[slot] = block;
	if (!disk.busy[slot]) {
		disk.busy[slot] = true;
		if (!disk.inflight++)
			disk.last_progress = rdtsc();
	}
	blk_chain(&disk.b, (u16)(3 * slot), &disk.hdr[slot], buf, BLOCK_SIZE, &disk.status[slot]);
}

/* True when it queued a request (PH_RMW: the write after the read). */
static bool complete(u16 head)
{
	u32 slot = head / 3;
	u64 block;

	if (head % 3 || slot >= disk.depth || !disk.busy[slot]) {
		pr("probe: disk: the device completed descriptor %u, which is not a pending request\n",
		   head);
		probe_exit(EXIT_CORRUPT);
	}
	block = disk.slot_block[slot];
	if (disk.status[slot] != VIRTIO_BLK_S_OK) {
		pr("probe: disk: I/O error, status %u on %s of block %lu, generation %lu\n",
		   disk.status[slot], phase_names[disk.phase], block, disk.gen);
		probe_exit(EXIT_CORRUPT);
	}
	if (disk.phase == PH_RMW && disk.slot_type[slot] == VIRTIO_BLK_T_IN) {
		/* the last generation's write, acknowledged and flushed: still there? */
		pattern_check((const u64 *)(disk.data + slot * BLOCK_SIZE), block, disk.gen - 1);
		disk.read++;
		submit(slot, VIRTIO_BLK_T_OUT, block);
		return true;
	}
	if (disk.phase == PH_READ) {
		pattern_check((const u64 *)(disk.data + slot * BLOCK_SIZE), block, disk.gen);
		disk.read++;
	} else if (disk.phase == PH_FLUSH) {
		disk.flushes++;
	} else {
		disk.written++;
	}
	disk.busy[slot] = false;
	disk.inflight--;
	disk.done++;
	return false;
}

/* Generation g is done (written, flushed, and with PH_RMW, g - 1 checked). */
static void generation_done(u64 now)
{
	disk.generations = disk.gen;
	if (now - disk.last_print >= sh.tsc_hz) {
		pr("probe: disk generation %lu\n", disk.gen);
		disk.last_print = now;
	}
	disk.gen++;
}

/* Move to the next phase once the current one has completed; true when
 * that queued a request (the flush). */
static bool advance(u64 now)
{
	enum disk_phase next;

	if (disk.phase == PH_FLUSH ? disk.done < 1 : disk.done < disk.blocks)
		return false;
	if (disk.per_block) {
		/* PH_RMW -> (PH_FLUSH ->) PH_RMW of the next generation */
		if (disk.phase == PH_RMW && disk.b.flush) {
			next = PH_FLUSH;
		} else {
			generation_done(now);
			next = PH_RMW;
		}
	} else if (disk.phase == PH_WRITE) {
		next = disk.b.flush ? PH_FLUSH : PH_READ;
	} else if (disk.phase == PH_FLUSH) {
		next = PH_READ;
	} else {
		generation_done(now);
		next = PH_WRITE;
	}
	disk.phase = next;
	disk.next = disk.done = 0;
	if (next != PH_FLUSH)
		return false;
	submit(0, VIRTIO_BLK_T_FLUSH, 0);
	return true;
}

/* disk_rate=: may the next block of the sweep start now? */
static bool paced_due(u64 now)
{
	if (now < disk.due)
		return false;
	if (!disk.t_first)
		disk.t_first = now;
	disk.due += disk.per_block;
	if (now > disk.due + sh.tsc_hz / 20)    /* behind by over 50 ms: drop the backlog */
		disk.due = now;
	return true;
}

void disk_poll(u64 now)
{
	bool pushed = false;
	u16 head;
	u32 len;

	while (virtq_pop(&disk.b.q, &head, &len)) {
		pushed |= complete(head);
		disk.last_progress = now;
		disk.stall_reported = false;
		pushed |= advance(now);
	}
	while (disk.phase != PH_FLUSH && disk.next < disk.blocks && disk.inflight < disk.depth) {
		u32 slot = free_slot(), type;

		if (slot == disk.depth || (disk.per_block && !paced_due(now)))
			break;
		if (disk.phase == PH_RMW)       /* generation 1 has nothing to check */
			type = disk.gen > 1 ? VIRTIO_BLK_T_IN : VIRTIO_BLK_T_OUT;
		else
			type = disk.phase == PH_WRITE ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN;
		submit(slot, type, disk.next++);
		pushed = true;
	}
	if (pushed)
		virtq_kick(&disk.b.q);
	/* last_progress may be a little later than `now` (set by submit) */
	if (disk.inflight && !disk.stall_reported && now > disk.last_progress &&
	    now - disk.last_progress > DISK_STALL_S * sh.tsc_hz) {
		pr("probe: disk: no completion for %u s (%u requests in flight, %s phase)\n",
		   DISK_STALL_S, disk.inflight, phase_names[disk.phase]);
		disk.stall_reported = true;
	}
}

/* ---- set-up and report ----------------------------------------------------- */

/* Claim the first virtio-blk device and start generation 1; exits with
 * EXIT_BADARG when there is none or it cannot be driven. */
void disk_init(void)
{
	u64 capacity;

	blk_open(&disk.b);
	capacity = disk.b.capacity;
	disk.blocks = sh.cfg.disk_blocks;
	if (disk.blocks > capacity / SECTORS_PER_BLOCK) {
		disk.blocks = capacity / SECTORS_PER_BLOCK;
		pr("probe: disk_blocks clamped to the disk (%lu blocks)\n", disk.blocks);
	}
	if (!disk.blocks) {
		pr("probe: the disk is smaller than one block\n");
		probe_exit(EXIT_BADARG);
	}
	disk.depth = disk.b.q.size / 3 < DISK_DEPTH ? disk.b.q.size / 3 : DISK_DEPTH;
	disk.hdr = dma_alloc(DISK_DEPTH * sizeof(struct blk_hdr));
	disk.status = dma_alloc(DISK_DEPTH);
	disk.data = dma_alloc(DISK_DEPTH * BLOCK_SIZE);
	if (!disk.depth || !disk.hdr || !disk.status || !disk.data) {
		pr("probe: disk: queue too small or out of DMA memory\n");
		probe_exit(EXIT_BADARG);
	}
	virtio_driver_ok(disk.b.dev);
	disk.nonce = mix64(rdtsc() ^ sh.cfg.seed);
	disk.gen = 1;
	disk.phase = PH_WRITE;
	disk.last_print = rdtsc();
	if (sh.cfg.disk_rate) {
		disk.per_block = sh.tsc_hz * BLOCK_SIZE / sh.cfg.disk_rate;
		if (!disk.per_block)
			disk.per_block = 1;
		disk.phase = PH_RMW;
	}
	pr("probe: disk 0x%lx capacity %lu sectors, blocks %lu of 4 KiB, queue %u, depth %u, flush %s, nonce 0x%lx\n",
	   disk.b.dev->loc.base, capacity, disk.blocks, disk.b.q.size, disk.depth,
	   disk.b.flush ? "on" : "off", disk.nonce);
	if (disk.per_block)
		pr("probe: disk paced at %lu bytes/s: each block read back and checked, then rewritten\n",
		   sh.cfg.disk_rate);
}

/*
 * probe: disk <g> generations, <w> blocks written, <r> read, <f> flushes
 * and with disk_rate=:
 * probe: disk paced <w> blocks written in <ms> ms: <x.y> MiB/s (target <R> bytes/s)
 * (from the first request to now; MiB = 2^20 bytes).
 */
void disk_report(void)
{
	pr("probe: disk %lu generations, %lu blocks written, %lu read, %lu flushes\n",
	   disk.generations, disk.written, disk.read, disk.flushes);
	if (disk.per_block) {
		u64 ms = disk.t_first ? (rdtsc() - disk.t_first) / sh.tsc_khz : 0;
		u64 den = ms << 20, tenths = ms ? (disk.written * BLOCK_SIZE * 10000 + den / 2) / den : 0;

		pr("probe: disk paced %lu blocks written in %lu ms: %lu.%lu MiB/s (target %lu bytes/s)\n",
		   disk.written, ms, tenths / 10, tenths % 10, sh.cfg.disk_rate);
	}
}
