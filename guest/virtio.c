/*
 * virtio.c - the virtio-mmio transport: find devices, negotiate features,
 * set up split virtqueues.  Ring 3, BSP only.
 *
 * Each register access is one 32-bit (config space: 8-bit) load or store,
 * which the VMM emulates; nothing here sits on a data path except
 * virtq_kick.  Every wait on the device is bounded.
 */
#include "user.h"
#include "virtio.h"

#define VIRTIO_MAGIC            0x74726976      /* "virt" */

/* register offsets */
#define VM_MAGIC                0x000
#define VM_VERSION              0x004
#define VM_DEVICE_ID            0x008
#define VM_DEVICE_FEATURES      0x010
#define VM_DEVICE_FEATURES_SEL  0x014
#define VM_DRIVER_FEATURES      0x020
#define VM_DRIVER_FEATURES_SEL  0x024
#define VM_GUEST_PAGE_SIZE      0x028   /* legacy */
#define VM_QUEUE_SEL            0x030
#define VM_QUEUE_NUM_MAX        0x034
#define VM_QUEUE_NUM            0x038
#define VM_QUEUE_ALIGN          0x03c   /* legacy */
#define VM_QUEUE_PFN            0x040   /* legacy */
#define VM_QUEUE_READY          0x044
#define VM_QUEUE_NOTIFY         0x050
#define VM_INTERRUPT_STATUS     0x060
#define VM_INTERRUPT_ACK        0x064
#define VM_STATUS               0x070
#define VM_QUEUE_DESC_LOW       0x080
#define VM_QUEUE_DESC_HIGH      0x084
#define VM_QUEUE_AVAIL_LOW      0x090
#define VM_QUEUE_AVAIL_HIGH     0x094
#define VM_QUEUE_USED_LOW       0x0a0
#define VM_QUEUE_USED_HIGH      0x0a4
#define VM_CONFIG_GENERATION    0x0fc
#define VM_CONFIG               0x100

/* device status bits */
#define ST_ACKNOWLEDGE          1
#define ST_DRIVER               2
#define ST_DRIVER_OK            4
#define ST_FEATURES_OK          8
#define ST_NEEDS_RESET          0x40
#define ST_FAILED               0x80

#define LEGACY_ALIGN            4096

struct virtio_dev virtio_devs[VIRTIO_MAX_DEVS];
u32 virtio_ndevs;

static u64 dma_next, dma_end;

/* ---- register access -------------------------------------------------- */

static inline u32 rd32(const struct virtio_dev *d, u32 off)
{
	u32 v;

	__asm__ volatile("movl (%1), %0" : "=r"(v) : "r"(d->loc.base + off) : "memory");
	return v;
}

static inline void wr32(const struct virtio_dev *d, u32 off, u32 v)
{
	__asm__ volatile("movl %0, (%1)" :: "r"(v), "r"(d->loc.base + off) : "memory");
}

static inline u8 rd8(const struct virtio_dev *d, u32 off)
{
	u8 v;

	__asm__ volatile("movb (%1), %0" : "=q"(v) : "r"(d->loc.base + off) : "memory");
	return v;
}

static const char *device_name(u32 id)
{
	switch (id) {
	case 0: return "none";
	case VIRTIO_ID_NET: return "net";
	case VIRTIO_ID_BLOCK: return "blk";
	default: return "other";
	}
}

/* ---- discovery --------------------------------------------------------- */

/*
 * Look at each window the command line gave: the magic, the version and
 * the device ID.  A window outside the identity map, or with a bad magic
 * or version, is reported and left alone.
 */
void virtio_scan(const struct virtio_loc *locs, u32 n)
{
	for (u32 i = 0; i < n && virtio_ndevs < VIRTIO_MAX_DEVS; i++) {
		struct virtio_dev d = { .loc = locs[i] };
		u32 magic;

		if (d.loc.base >= (4UL << 30) || d.loc.size > (4UL << 30) - d.loc.base ||
		    d.loc.size < VM_CONFIG || (d.loc.base & 3)) {
			pr("probe: virtio-mmio 0x%lx size 0x%lx: not a window in the first 4 GiB, ignored\n",
			   d.loc.base, d.loc.size);
			continue;
		}
		magic = rd32(&d, VM_MAGIC);
		d.version = rd32(&d, VM_VERSION);
		d.device_id = rd32(&d, VM_DEVICE_ID);
		if (magic != VIRTIO_MAGIC || d.version < 1 || d.version > 2) {
			pr("probe: virtio-mmio 0x%lx: magic 0x%x version %u, ignored\n",
			   d.loc.base, magic, d.version);
			continue;
		}
		pr("probe: virtio-mmio 0x%lx size 0x%lx irq %u: version %u device %u (%s)\n",
		   d.loc.base, d.loc.size, d.loc.irq, d.version, d.device_id,
		   device_name(d.device_id));
		virtio_devs[virtio_ndevs++] = d;
	}
}

/* The first unclaimed device of this type, now claimed; NULL if none. */
struct virtio_dev *virtio_claim(u32 device_id)
{
	for (u32 i = 0; i < virtio_ndevs; i++) {
		struct virtio_dev *d = &virtio_devs[i];

		if (d->device_id == device_id && !d->claimed) {
			d->claimed = true;
			return d;
		}
	}
	return NULL;
}

/* ---- initialisation ------------------------------------------------------ */

static void set_status(struct virtio_dev *d, u32 bits)
{
	wr32(d, VM_STATUS, rd32(d, VM_STATUS) | bits);
}

static u64 device_features(struct virtio_dev *d)
{
	u64 f;

	wr32(d, VM_DEVICE_FEATURES_SEL, 0);
	f = rd32(d, VM_DEVICE_FEATURES);
	if (d->version >= 2) {
		wr32(d, VM_DEVICE_FEATURES_SEL, 1);
		f |= (u64)rd32(d, VM_DEVICE_FEATURES) << 32;
	}
	return f;
}

/*
 * Reset the device and agree on features: those in `want` that it offers,
 * failing if it lacks one of `need`.  A version-2 device must offer
 * VERSION_1 (added to both here).  Returns false after printing why, with
 * the device marked FAILED.
 */
bool virtio_negotiate(struct virtio_dev *d, u64 want, u64 need)
{
	u64 offered;
	u32 i;

	wr32(d, VM_STATUS, 0);
	for (i = 0; i < 100000 && rd32(d, VM_STATUS); i++)
		cpu_relax();
	if (i == 100000) {
		pr("probe: virtio-mmio 0x%lx: reset did not complete\n", d->loc.base);
		return false;
	}
	set_status(d, ST_ACKNOWLEDGE);
	set_status(d, ST_DRIVER);
	if (d->version >= 2) {
		want |= 1UL << VIRTIO_F_VERSION_1;
		need |= 1UL << VIRTIO_F_VERSION_1;
	} else {
		wr32(d, VM_GUEST_PAGE_SIZE, PAGE_SIZE);
		want &= 0xffffffffUL;
	}
	offered = device_features(d);
	if ((offered & need) != need) {
		pr("probe: virtio-mmio 0x%lx: features 0x%lx lack 0x%lx\n",
		   d->loc.base, offered, need & ~offered);
		set_status(d, ST_FAILED);
		return false;
	}
	d->features = offered & want;
	wr32(d, VM_DRIVER_FEATURES_SEL, 0);
	wr32(d, VM_DRIVER_FEATURES, (u32)d->features);
	if (d->version >= 2) {
		wr32(d, VM_DRIVER_FEATURES_SEL, 1);
		wr32(d, VM_DRIVER_FEATURES, (u32)(d->features >> 32));
		set_status(d, ST_FEATURES_OK);
		if (!(rd32(d, VM_STATUS) & ST_FEATURES_OK)) {
			pr("probe: virtio-mmio 0x%lx: features 0x%lx refused\n",
			   d->loc.base, d->features);
			set_status(d, ST_FAILED);
			return false;
		}
	}
	return true;
}

/*
 * Queue `index` with up to `max_size` entries (the largest power of two the
 * device allows).  The rings sit in one DMA block laid out as legacy
 * devices require: descriptors, then the available ring, then the used
 * ring on the next page.  Returns false after printing why.
 */
bool virtq_setup(struct virtio_dev *d, struct virtq *q, u32 index, u32 max_size)
{
	u32 dev_max, size = 1;
	u64 used_off, base;

	wr32(d, VM_QUEUE_SEL, index);
	if (d->version >= 2 && rd32(d, VM_QUEUE_READY)) {
		pr("probe: virtio-mmio 0x%lx: queue %u already live\n", d->loc.base, index);
		return false;
	}
	dev_max = rd32(d, VM_QUEUE_NUM_MAX);
	while (size * 2 <= dev_max && size * 2 <= max_size && size < 32768)
		size *= 2;
	if (!dev_max) {
		pr("probe: virtio-mmio 0x%lx: no queue %u\n", d->loc.base, index);
		return false;
	}
	used_off = ALIGN_UP(16UL * size + 6 + 2UL * size, LEGACY_ALIGN);
	base = (u64)dma_alloc(used_off + ALIGN_UP(6 + 8UL * size, PAGE_SIZE));
	if (!base) {
		pr("probe: virtio: out of DMA memory\n");
		return false;
	}
	*q = (struct virtq){
		.dev = d, .index = index, .size = (u16)size,
		.desc = (void *)base,
		.avail = (void *)(base + 16UL * size),
		.used = (void *)(base + used_off),
	};
	q->avail->flags = VRING_AVAIL_F_NO_INTERRUPT;
	wr32(d, VM_QUEUE_NUM, size);
	if (d->version >= 2) {
		wr32(d, VM_QUEUE_DESC_LOW, (u32)base);
		wr32(d, VM_QUEUE_DESC_HIGH, (u32)(base >> 32));
		wr32(d, VM_QUEUE_AVAIL_LOW, (u32)(u64)q->avail);
		wr32(d, VM_QUEUE_AVAIL_HIGH, (u32)((u64)q->avail >> 32));
		wr32(d, VM_QUEUE_USED_LOW, (u32)(u64)q->used);
		wr32(d, VM_QUEUE_USED_HIGH, (u32)((u64)q->used >> 32));
		wr32(d, VM_QUEUE_READY, 1);
	} else {
		wr32(d, VM_QUEUE_ALIGN, LEGACY_ALIGN);
		wr32(d, VM_QUEUE_PFN, (u32)(base / PAGE_SIZE));
	}
	return true;
}

void virtio_driver_ok(struct virtio_dev *d)
{
	set_status(d, ST_DRIVER_OK);
}

/* The interrupt causes the device has pending (VIRTIO_ISR_*), polled:
 * the probe runs with interrupts off. */
u32 virtio_isr(struct virtio_dev *d)
{
	return rd32(d, VM_INTERRUPT_STATUS);
}

void virtio_isr_ack(struct virtio_dev *d, u32 bits)
{
	wr32(d, VM_INTERRUPT_ACK, bits);
}

/* ---- config space -------------------------------------------------------- */

u8 virtio_config8(struct virtio_dev *d, u32 off)
{
	return rd8(d, VM_CONFIG + off);
}

u32 virtio_config32(struct virtio_dev *d, u32 off)
{
	return rd32(d, VM_CONFIG + off);
}

/* Two 32-bit halves, retried while the config generation moves. */
u64 virtio_config64(struct virtio_dev *d, u32 off)
{
	u64 v = 0;

	for (u32 i = 0; i < 100; i++) {
		u32 gen = d->version >= 2 ? rd32(d, VM_CONFIG_GENERATION) : 0;

		v = rd32(d, VM_CONFIG + off) | (u64)rd32(d, VM_CONFIG + off + 4) << 32;
		if (d->version < 2 || rd32(d, VM_CONFIG_GENERATION) == gen)
			break;
	}
	return v;
}

/* ---- data path ----------------------------------------------------------- */

/* Tell the device about new available entries, unless it said it polls. */
void virtq_kick(struct virtq *q)
{
	/* The avail->idx store must be visible before used->flags is read. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (*(volatile u16 *)&q->used->flags & VRING_USED_F_NO_NOTIFY)
		return;
	wr32(q->dev, VM_QUEUE_NOTIFY, q->index);
}

/* ---- DMA memory ---------------------------------------------------------- */

void dma_pool_init(u64 start, u64 size)
{
	dma_next = start;
	dma_end = start + size;
}

void *dma_alloc(u64 size)
{
	u64 p = dma_next;

	size = ALIGN_UP(size, PAGE_SIZE);
	if (!p || size > dma_end - p)
		return NULL;
	dma_next += size;
	memset((void *)p, 0, size);
	return (void *)p;
}
