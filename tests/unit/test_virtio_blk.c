/*
 * virtio-blk driven as a guest driver would, through its MMIO registers
 * and rings in plain RAM (no KVM): feature negotiation, READ, WRITE,
 * FLUSH, GET_ID, DISCARD, WRITE_ZEROES against a real image file, every
 * error status a guest can provoke, malformed chains and rings, reset,
 * and a save -> load round trip to a second device in the middle of a
 * stream (quiesce completes what was taken, the second device goes on
 * exactly where the first stopped), and the image lock that moves with
 * it (a second writer is refused; the destination runs only once the
 * source let go), and write-blocking: while the disk's dirty tracker
 * blocks, a completed write (or write-zeroes) reaches the image but not
 * the guest until the tracker acknowledges it, reads pass it by, and
 * turning blocking off or stopping lets everything held complete; and the
 * post-copy gate: a request on a range not here yet waits (the consumer
 * is asked for it once) until the range is filled, then reads what was
 * filled; a failed gate fails it.  Skips (77) without io_uring.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include <liburing.h>

#include "devices/virtio/blk.h"
#include "devices/virtio/blk_internal.h"
#include "util/le.h"

#define T_RAM		(64ULL << 20)
#define T_DESC		0x1000ULL
#define T_AVAIL		0x2000ULL
#define T_USED		0x3000ULL
#define T_HDR		0x10000ULL	/* request headers, 256 bytes apart */
#define T_STATUS	0x20000ULL	/* status bytes, one per slot */
#define T_DATA		0x100000ULL	/* 4 MiB of data buffers */
#define T_QSIZE		16
#define T_SECTORS	2048		/* a 1 MiB image */

static struct guest_memory ram;
static struct virtio_blk blk;
static struct block_config disk;
static char img[64];
static int raises;
static uint64_t dirtied;
static uint16_t next_desc, avail_idx, used_seen;

static void t_dirty(void *opaque, uint64_t gpa, uint64_t len)
{
	assert_non_null(guest_memory_ptr(&ram, gpa, len));
	__atomic_add_fetch(&dirtied, len, __ATOMIC_RELAXED);
}

static void t_raise(void *opaque)
{
	__atomic_add_fetch(&raises, 1, __ATOMIC_RELAXED);
}

static uint8_t *t_ptr(uint64_t gpa)
{
	return guest_memory_ptr(&ram, gpa, 1);
}

static uint32_t t_rd(struct virtio_blk *b, uint64_t off)
{
	uint8_t v[4];

	virtio_mmio_read(&b->t, off, v, 4);
	return (uint32_t)le_get(v, 4);
}

static void t_wr(struct virtio_blk *b, uint64_t off, uint32_t val)
{
	uint8_t v[4];

	le_put(v, val, 4);
	virtio_mmio_write(&b->t, off, v, 4);
}

/* The driver's side of §3.1.1, with a 16-entry queue at the fixed rings. */
static void t_driver_init(struct virtio_blk *b, bool event_idx)
{
	t_wr(b, VIRTIO_MMIO_STATUS, 0);
	t_wr(b, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	t_wr(b, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	uint32_t lo = t_rd(b, VIRTIO_MMIO_DEVICE_FEATURES);
	if (!event_idx)
		lo &= ~(1u << VIRTIO_RING_F_EVENT_IDX);
	t_wr(b, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	t_wr(b, VIRTIO_MMIO_DRIVER_FEATURES, lo);
	t_wr(b, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	t_wr(b, VIRTIO_MMIO_DRIVER_FEATURES, 1);	/* VERSION_1 */
	t_wr(b, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
	     VIRTIO_STATUS_FEATURES_OK);
	assert_true(t_rd(b, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_FEATURES_OK);
	t_wr(b, VIRTIO_MMIO_QUEUE_SEL, 0);
	assert_int_equal(t_rd(b, VIRTIO_MMIO_QUEUE_NUM_MAX), VIRTQ_MAX_SIZE);
	t_wr(b, VIRTIO_MMIO_QUEUE_NUM, T_QSIZE);
	t_wr(b, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)T_DESC);
	t_wr(b, VIRTIO_MMIO_QUEUE_DESC_HIGH, 0);
	t_wr(b, VIRTIO_MMIO_QUEUE_AVAIL_LOW, (uint32_t)T_AVAIL);
	t_wr(b, VIRTIO_MMIO_QUEUE_USED_LOW, (uint32_t)T_USED);
	t_wr(b, VIRTIO_MMIO_QUEUE_READY, 1);
	assert_int_equal(t_rd(b, VIRTIO_MMIO_QUEUE_READY), 1);
	/* Empty rings before DRIVER_OK: the device looks at them at once. */
	memset(t_ptr(T_AVAIL), 0, 4 + 2 * T_QSIZE + 2);
	memset(t_ptr(T_USED), 0, 4 + 8 * T_QSIZE + 2);
	next_desc = avail_idx = used_seen = 0;
	t_wr(b, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
	     VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
}

static uint16_t t_desc(uint64_t addr, uint32_t len, uint16_t flags)
{
	uint16_t i = next_desc++ % T_QSIZE;
	uint8_t *p = t_ptr(T_DESC + 16ULL * i);

	le_put(p, addr, 8);
	le_put(p + 8, len, 4);
	le_put(p + 12, flags, 2);
	le_put(p + 14, (i + 1) % T_QSIZE, 2);	/* the next one we will write */
	return i;
}

struct t_buf { uint64_t gpa; uint32_t len; bool write; };

/*
 * Offer a request: header (type, sector), the data buffers, a status byte.
 * Returns the head; the status byte is T_STATUS + head.
 */
static uint16_t t_offer(uint32_t type, uint64_t sector, const struct t_buf *data, unsigned n,
			bool kick, struct virtio_blk *b)
{
	uint16_t head = (uint16_t)(next_desc % T_QSIZE);
	uint64_t hdr = T_HDR + 256ULL * head;

	le_put(t_ptr(hdr), type, 4);
	le_put(t_ptr(hdr + 4), 0, 4);
	le_put(t_ptr(hdr + 8), sector, 8);
	t_desc(hdr, 16, VIRTQ_DESC_F_NEXT);
	for (unsigned i = 0; i < n; i++)
		t_desc(data[i].gpa, data[i].len,
		       VIRTQ_DESC_F_NEXT | (data[i].write ? VIRTQ_DESC_F_WRITE : 0));
	*t_ptr(T_STATUS + head) = 0xee;
	t_desc(T_STATUS + head, 1, VIRTQ_DESC_F_WRITE);
	le_put(t_ptr(T_AVAIL + 4 + 2 * (avail_idx % T_QSIZE)), head, 2);
	avail_idx++;
	__atomic_store_n((uint16_t *)(void *)t_ptr(T_AVAIL + 2), avail_idx, __ATOMIC_RELEASE);
	if (kick)
		t_wr(b, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	return head;
}

/* Wait until the used index reaches `want`; the id and len of the last entry. */
static void t_wait_used(uint16_t want, uint32_t *id, uint32_t *len)
{
	for (int i = 0; i < 5000; i++) {
		uint16_t u = __atomic_load_n((uint16_t *)(void *)t_ptr(T_USED + 2), __ATOMIC_ACQUIRE);
		if (u == want) {
			const uint8_t *e = t_ptr(T_USED + 4 + 8 * ((want - 1) % T_QSIZE));
			if (id)
				*id = (uint32_t)le_get(e, 4);
			if (len)
				*len = (uint32_t)le_get(e + 4, 4);
			used_seen = want;
			return;
		}
		usleep(1000);
	}
	fail_msg("used index stuck at %u, wanted %u",
		 (unsigned)le_get(t_ptr(T_USED + 2), 2), want);
}

/* One request, start to end: returns its status; *len the used length. */
static uint8_t t_request(uint32_t type, uint64_t sector, const struct t_buf *data, unsigned n,
			 uint32_t *len)
{
	uint16_t head = t_offer(type, sector, data, n, true, &blk);
	uint32_t id;

	t_wait_used((uint16_t)(used_seen + 1), &id, len);
	assert_int_equal(id, head);
	return *t_ptr(T_STATUS + head);
}

static int t_make_image(const char *path, unsigned sectors)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	uint8_t sec[512];

	if (fd < 0)
		return -1;
	for (unsigned s = 0; s < sectors; s++) {
		memset(sec, (int)(s & 0xff), sizeof(sec));
		if (pwrite(fd, sec, sizeof(sec), (off_t)s * 512) != 512)
			return -1;
	}
	close(fd);
	return 0;
}

/* inactive: as a migration's destination opens it (no lock, no I/O until activated). */
static int t_blk_open(struct virtio_blk *b, const struct block_config *c, unsigned index,
		      bool inactive)
{
	struct virtio_blk_config bc = {
		.disk = c, .index = index, .ram = &ram, .dirty = t_dirty, .raise = t_raise,
		.inactive = inactive,
	};

	return virtio_blk_create(b, &bc);
}

static int t_blk_create(struct virtio_blk *b, const struct block_config *c, unsigned index)
{
	struct virtio_blk_config bc = {
		.disk = c, .index = index, .ram = &ram, .dirty = t_dirty, .raise = t_raise,
	};

	return virtio_blk_create(b, &bc);
}

static int setup(void **state)
{
	char why[160];

	strcpy(img, "/tmp/ferry-blk-XXXXXX");
	int fd = mkstemp(img);
	if (fd < 0)
		return -1;
	close(fd);
	if (t_make_image(img, T_SECTORS) || guest_memory_create(&ram, T_RAM))
		return -1;
	char spec[128];
	snprintf(spec, sizeof(spec), "path=%s,serial=ferry-disk-0", img);
	if (block_config_parse(spec, &disk, why, sizeof(why)))
		return -1;
	raises = 0;
	dirtied = 0;
	if (t_blk_create(&blk, &disk, 0))
		return -1;
	t_driver_init(&blk, true);
	return 0;
}

static int teardown(void **state)
{
	virtio_blk_destroy(&blk);
	guest_memory_destroy(&ram);
	unlink(img);
	return 0;
}

static void t_file_read(uint64_t off, void *buf, size_t len)
{
	int fd = open(img, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, buf, len, (off_t)off), (ssize_t)len);
	close(fd);
}

static void test_identify(void **state)
{
	assert_int_equal(t_rd(&blk, VIRTIO_MMIO_MAGIC_VALUE), VIRTIO_MMIO_MAGIC);
	assert_int_equal(t_rd(&blk, VIRTIO_MMIO_VERSION), 2);
	assert_int_equal(t_rd(&blk, VIRTIO_MMIO_DEVICE_ID), VIRTIO_ID_BLOCK);
	t_wr(&blk, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	uint32_t lo = t_rd(&blk, VIRTIO_MMIO_DEVICE_FEATURES);
	t_wr(&blk, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	assert_int_equal(t_rd(&blk, VIRTIO_MMIO_DEVICE_FEATURES), 1);	/* VERSION_1 */
	assert_true(lo & (1u << VIRTIO_BLK_F_FLUSH));
	assert_true(lo & (1u << VIRTIO_BLK_F_DISCARD));
	assert_true(lo & (1u << VIRTIO_BLK_F_WRITE_ZEROES));
	assert_true(lo & (1u << VIRTIO_RING_F_INDIRECT_DESC));
	assert_true(lo & (1u << VIRTIO_RING_F_EVENT_IDX));
	assert_false(lo & (1u << VIRTIO_BLK_F_RO));
	uint8_t cap[8];
	virtio_mmio_read(&blk.t, VIRTIO_MMIO_CONFIG, cap, 8);
	assert_int_equal(le_get(cap, 8), T_SECTORS);
	uint8_t seg[4];
	virtio_mmio_read(&blk.t, VIRTIO_MMIO_CONFIG + 12, seg, 4);
	assert_int_equal(le_get(seg, 4), VIRTQ_MAX_CHAIN - 2);
	/* Past the configuration, or a write into it: nothing. */
	virtio_mmio_read(&blk.t, VIRTIO_MMIO_CONFIG + 58, seg, 4);
	assert_int_equal(le_get(seg, 4), 0);
	/* A driver that does not take VERSION_1 cannot set FEATURES_OK. */
	t_wr(&blk, VIRTIO_MMIO_STATUS, 0);
	t_wr(&blk, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	t_wr(&blk, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
	     VIRTIO_STATUS_FEATURES_OK);
	assert_false(t_rd(&blk, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_FEATURES_OK);
}

static void test_write_read(void **state)
{
	uint8_t file[4096], *w = t_ptr(T_DATA), *r = t_ptr(T_DATA + 0x10000);
	uint32_t len;

	for (unsigned i = 0; i < 4096; i++)
		w[i] = (uint8_t)(i * 7 + 3);
	/* Written from two buffers, as a scatter list. */
	struct t_buf wd[2] = { { T_DATA, 1024, false }, { T_DATA + 1024, 3072, false } };
	assert_int_equal(t_request(VIRTIO_BLK_T_OUT, 8, wd, 2, &len), VIRTIO_BLK_S_OK);
	assert_int_equal(len, 1);
	t_file_read(8 * 512, file, sizeof(file));
	assert_memory_equal(file, w, 4096);

	uint64_t before = dirtied;
	struct t_buf rd[1] = { { T_DATA + 0x10000, 4096, true } };
	assert_int_equal(t_request(VIRTIO_BLK_T_IN, 8, rd, 1, &len), VIRTIO_BLK_S_OK);
	assert_int_equal(len, 4097);
	assert_memory_equal(r, w, 4096);
	assert_true(dirtied - before >= 4096 + 1 + 8);	/* data, status, used entry */
	/* The rest of the disk still holds its original pattern. */
	assert_int_equal(t_request(VIRTIO_BLK_T_IN, 100, rd, 1, &len), VIRTIO_BLK_S_OK);
	assert_int_equal(r[0], 100);
	assert_true(raises > 0);
}

static void test_flush_get_id(void **state)
{
	uint32_t len;
	struct t_buf id[1] = { { T_DATA, 20, true } };

	assert_int_equal(t_request(VIRTIO_BLK_T_FLUSH, 0, NULL, 0, &len), VIRTIO_BLK_S_OK);
	memset(t_ptr(T_DATA), 0xff, 20);
	assert_int_equal(t_request(VIRTIO_BLK_T_GET_ID, 0, id, 1, &len), VIRTIO_BLK_S_OK);
	assert_int_equal(len, 21);
	assert_memory_equal(t_ptr(T_DATA), "ferry-disk-0\0\0\0\0\0\0\0\0", 20);
}

static void t_seg(uint64_t gpa, uint64_t sector, uint32_t sectors, uint32_t flags)
{
	le_put(t_ptr(gpa), sector, 8);
	le_put(t_ptr(gpa + 8), sectors, 4);
	le_put(t_ptr(gpa + 12), flags, 4);
}

static void test_discard_write_zeroes(void **state)
{
	uint8_t file[1024], zero[1024] = { 0 };
	uint32_t len;
	struct t_buf seg[1] = { { T_DATA, 32, false } };

	t_seg(T_DATA, 16, 2, 0);
	t_seg(T_DATA + 16, 40, 2, 1);		/* with unmap */
	assert_int_equal(t_request(VIRTIO_BLK_T_WRITE_ZEROES, 0, seg, 1, &len), VIRTIO_BLK_S_OK);
	t_file_read(16 * 512, file, sizeof(file));
	assert_memory_equal(file, zero, sizeof(file));
	t_file_read(40 * 512, file, sizeof(file));
	assert_memory_equal(file, zero, sizeof(file));
	t_file_read(18 * 512, file, 512);
	assert_int_equal(file[0], 18);		/* only what was asked */

	seg[0].len = 16;
	t_seg(T_DATA, 64, 8, 0);
	assert_int_equal(t_request(VIRTIO_BLK_T_DISCARD, 0, seg, 1, &len), VIRTIO_BLK_S_OK);
	/* Discard knows no flags; a range past the end is an error. */
	t_seg(T_DATA, 64, 8, 1);
	assert_int_equal(t_request(VIRTIO_BLK_T_DISCARD, 0, seg, 1, &len), VIRTIO_BLK_S_UNSUPP);
	t_seg(T_DATA, T_SECTORS - 1, 2, 0);
	assert_int_equal(t_request(VIRTIO_BLK_T_DISCARD, 0, seg, 1, &len), VIRTIO_BLK_S_IOERR);
	t_seg(T_DATA, UINT64_MAX, 2, 0);
	assert_int_equal(t_request(VIRTIO_BLK_T_WRITE_ZEROES, 0, seg, 1, &len), VIRTIO_BLK_S_IOERR);
	seg[0].len = 15;			/* not whole ranges */
	assert_int_equal(t_request(VIRTIO_BLK_T_WRITE_ZEROES, 0, seg, 1, &len), VIRTIO_BLK_S_IOERR);
}

/* The used index now, without waiting. */
static uint16_t t_used_now(void)
{
	return __atomic_load_n((uint16_t *)(void *)t_ptr(T_USED + 2), __ATOMIC_ACQUIRE);
}

/* The used index stays at `at` for a while: nothing completes. */
static void t_used_stays(uint16_t at)
{
	for (int i = 0; i < 50; i++) {
		assert_int_equal(t_used_now(), at);
		usleep(1000);
	}
}

static void test_write_blocking(void **state)
{
	uint8_t file[4096], *w = t_ptr(T_DATA);
	uint64_t out[1] = { 0 }, ticket;
	uint32_t len, id;

	assert_int_equal(block_dirty_set_blocking(&blk.dirty, true), -EINVAL);	/* not tracking */
	assert_int_equal(block_dirty_start(&blk.dirty, T_SECTORS * 512ULL, 64 << 10), 0);
	assert_int_equal(block_dirty_set_blocking(&blk.dirty, true), 0);

	/* A write: on the image at once, held from the guest. */
	memset(w, 0x5a, 4096);
	struct t_buf wd[1] = { { T_DATA, 4096, false } };
	uint16_t h1 = t_offer(VIRTIO_BLK_T_OUT, 8, wd, 1, true, &blk);
	for (int i = 0; i < 2000; i++) {
		t_file_read(8 * 512, file, sizeof(file));
		if (file[0] == 0x5a && file[4095] == 0x5a)
			break;
		usleep(1000);
	}
	assert_memory_equal(file, w, 4096);
	t_used_stays(0);
	assert_int_equal(*t_ptr(T_STATUS + h1), 0xee);

	/* A read passes the held write by. */
	struct t_buf rd[1] = { { T_DATA + 0x10000, 4096, true } };
	uint16_t h2 = t_offer(VIRTIO_BLK_T_IN, 8, rd, 1, true, &blk);
	t_wait_used(1, &id, &len);
	assert_int_equal(id, h2);
	assert_memory_equal(t_ptr(T_DATA + 0x10000), w, 4096);

	/* Taken with its ticket; an ack for less than it holds it still. */
	assert_int_equal(block_dirty_take_ticket(&blk.dirty, out, 16, &ticket), 1);
	assert_int_equal(out[0], 1);		/* chunk 0 */
	assert_true(ticket >= 1);
	block_dirty_ack(&blk.dirty, ticket - 1);
	t_used_stays(1);
	block_dirty_ack(&blk.dirty, ticket);
	t_wait_used(2, &id, &len);
	assert_int_equal(id, h1);
	assert_int_equal(*t_ptr(T_STATUS + h1), VIRTIO_BLK_S_OK);

	/* Write-zeroes is held the same; turning blocking off lets it go. */
	struct t_buf seg[1] = { { T_DATA + 0x20000, 16, false } };
	t_seg(T_DATA + 0x20000, 300, 2, 0);
	uint16_t h3 = t_offer(VIRTIO_BLK_T_WRITE_ZEROES, 0, seg, 1, true, &blk);
	t_used_stays(2);
	assert_int_equal(block_dirty_count(&blk.dirty), 1);	/* still marked */
	assert_int_equal(block_dirty_set_blocking(&blk.dirty, false), 0);
	t_wait_used(3, &id, &len);
	assert_int_equal(id, h3);
	assert_int_equal(*t_ptr(T_STATUS + h3), VIRTIO_BLK_S_OK);

	/* Held again, then the consumer stops tracking: it completes, and the disk drains. */
	assert_int_equal(block_dirty_set_blocking(&blk.dirty, true), 0);
	uint16_t h4 = t_offer(VIRTIO_BLK_T_OUT, 16, wd, 1, true, &blk);
	t_used_stays(3);
	block_dirty_stop(&blk.dirty);
	t_wait_used(4, &id, &len);
	assert_int_equal(id, h4);
	assert_int_equal(virtio_blk_drain(&blk, true), 0);
	/* Not tracking: a write completes at once. */
	assert_int_equal(t_request(VIRTIO_BLK_T_OUT, 24, wd, 1, &len), VIRTIO_BLK_S_OK);
}

static uint64_t gate_wanted[8];
static unsigned gate_nr_wanted;

static void t_gate_want(void *opaque, uint64_t range)
{
	if (gate_nr_wanted < 8)
		gate_wanted[gate_nr_wanted] = range;
	__atomic_add_fetch(&gate_nr_wanted, 1, __ATOMIC_RELEASE);
}

static void test_gate(void **state)
{
	const uint64_t gran = 64 << 10;
	uint64_t absent[1] = { (1ULL << 0) | (1ULL << 2) };	/* 1 MiB: ranges 0..15 */
	uint8_t file[4096], *r0 = t_ptr(T_DATA + 0x10000), *r1 = t_ptr(T_DATA + 0x20000);
	uint32_t len, id;

	gate_nr_wanted = 0;
	assert_int_equal(block_gate_close(&blk.gate, T_SECTORS * 512ULL, 3, absent, t_gate_want,
					  NULL), -EINVAL);
	assert_int_equal(block_gate_close(&blk.gate, T_SECTORS * 512ULL, gran, absent, t_gate_want,
					  NULL), 0);
	assert_int_equal(block_gate_count(&blk.gate), 2);
	assert_int_equal(block_gate_close(&blk.gate, T_SECTORS * 512ULL, gran, absent, t_gate_want,
					  NULL), -EINVAL);	/* closed already */

	/* A read of range 0 waits, and range 0 is asked for once. */
	struct t_buf rd0[1] = { { T_DATA + 0x10000, 4096, true } };
	uint16_t h0 = t_offer(VIRTIO_BLK_T_IN, 8, rd0, 1, true, &blk);
	for (int i = 0; i < 2000 && !__atomic_load_n(&gate_nr_wanted, __ATOMIC_ACQUIRE); i++)
		usleep(1000);
	assert_int_equal(gate_nr_wanted, 1);
	assert_int_equal(gate_wanted[0], 0);
	t_used_stays(0);
	/* A second request on range 0 waits too, without asking again. */
	struct t_buf wd[1] = { { T_DATA, 4096, false } };
	memset(t_ptr(T_DATA), 0x3c, 4096);
	uint16_t h1 = t_offer(VIRTIO_BLK_T_OUT, 16, wd, 1, true, &blk);
	/* Range 1 is here: a read of it passes the parked ones. */
	struct t_buf rd1[1] = { { T_DATA + 0x20000, 4096, true } };
	uint16_t h2 = t_offer(VIRTIO_BLK_T_IN, 200, rd1, 1, true, &blk);
	t_wait_used(1, &id, &len);
	assert_int_equal(id, h2);
	assert_int_equal(r1[0], 200);
	assert_int_equal(gate_nr_wanted, 1);

	/* The consumer writes range 0 into the image, then fills it: both go, in order. */
	int fd = open(img, O_WRONLY);
	uint8_t *chunk = malloc(gran);
	assert_true(fd >= 0);
	assert_non_null(chunk);
	memset(chunk, 0xa7, gran);
	assert_int_equal(pwrite(fd, chunk, gran, 0), (ssize_t)gran);
	close(fd);
	free(chunk);
	assert_true(block_gate_absent(&blk.gate, 0));
	assert_true(block_gate_fill(&blk.gate, 0));
	assert_false(block_gate_fill(&blk.gate, 0));	/* here already: a late copy is dropped */
	assert_false(block_gate_fill(&blk.gate, 1));
	t_wait_used(3, NULL, NULL);
	assert_int_equal(*t_ptr(T_STATUS + h0), VIRTIO_BLK_S_OK);
	assert_int_equal(*t_ptr(T_STATUS + h1), VIRTIO_BLK_S_OK);
	assert_int_equal(r0[0], 0xa7);			/* what the consumer filled */
	t_file_read(16 * 512, file, sizeof(file));
	assert_int_equal(file[0], 0x3c);		/* the guest's write, after the fill */

	/* Range 2: a write-zeroes waits; the gate fails: it fails, and so do later ones. */
	struct t_buf seg[1] = { { T_DATA + 0x30000, 16, false } };
	t_seg(T_DATA + 0x30000, 2 * 128 + 4, 2, 0);
	uint16_t h3 = t_offer(VIRTIO_BLK_T_WRITE_ZEROES, 0, seg, 1, true, &blk);
	t_used_stays(3);
	assert_int_equal(gate_nr_wanted, 2);
	assert_int_equal(gate_wanted[1], 2);
	block_gate_finish(&blk.gate, true);
	t_wait_used(4, &id, NULL);
	assert_int_equal(id, h3);
	assert_int_equal(*t_ptr(T_STATUS + h3), VIRTIO_BLK_S_IOERR);
	assert_int_equal(t_request(VIRTIO_BLK_T_IN, 2 * 128, rd0, 1, &len), VIRTIO_BLK_S_IOERR);
	assert_int_equal(t_request(VIRTIO_BLK_T_IN, 0, rd0, 1, &len), VIRTIO_BLK_S_OK);
	assert_int_equal(virtio_blk_drain(&blk, false), 0);
}

/* Every error a guest can provoke gets a status, and the disk serves on. */
static void test_guest_errors(void **state)
{
	uint32_t len;
	struct t_buf one[1] = { { T_DATA, 512, true } };
	struct t_buf odd[1] = { { T_DATA, 500, true } };

	assert_int_equal(t_request(VIRTIO_BLK_T_IN, T_SECTORS, one, 1, &len), VIRTIO_BLK_S_IOERR);
	assert_int_equal(len, 1);
	assert_int_equal(t_request(VIRTIO_BLK_T_IN, T_SECTORS - 1, one, 1, &len), VIRTIO_BLK_S_OK);
	assert_int_equal(t_request(VIRTIO_BLK_T_IN, UINT64_MAX, one, 1, &len), VIRTIO_BLK_S_IOERR);
	assert_int_equal(t_request(VIRTIO_BLK_T_IN, 1ULL << 60, one, 1, &len), VIRTIO_BLK_S_IOERR);
	assert_int_equal(t_request(VIRTIO_BLK_T_IN, 0, odd, 1, &len), VIRTIO_BLK_S_IOERR);
	assert_int_equal(t_request(99, 0, one, 1, &len), VIRTIO_BLK_S_UNSUPP);
	/* 9 x 4 MiB of the same RAM: over the 32 MiB a request may move. */
	struct t_buf big[9];
	for (int i = 0; i < 9; i++)
		big[i] = (struct t_buf){ T_DATA, 4 << 20, false };
	assert_int_equal(t_request(VIRTIO_BLK_T_OUT, 0, big, 9, &len), VIRTIO_BLK_S_IOERR);

	/* A header shorter than 16 bytes. */
	uint16_t head = (uint16_t)(next_desc % T_QSIZE);
	t_desc(T_HDR, 8, VIRTQ_DESC_F_NEXT);
	t_desc(T_STATUS + head, 1, VIRTQ_DESC_F_WRITE);
	le_put(t_ptr(T_AVAIL + 4 + 2 * (avail_idx % T_QSIZE)), head, 2);
	le_put(t_ptr(T_AVAIL + 2), ++avail_idx, 2);
	t_wr(&blk, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	t_wait_used((uint16_t)(used_seen + 1), NULL, &len);
	assert_int_equal(*t_ptr(T_STATUS + head), VIRTIO_BLK_S_IOERR);

	/* No writable byte for a status: handed back unused. */
	head = (uint16_t)(next_desc % T_QSIZE);
	t_desc(T_HDR, 16, 0);
	le_put(t_ptr(T_AVAIL + 4 + 2 * (avail_idx % T_QSIZE)), head, 2);
	le_put(t_ptr(T_AVAIL + 2), ++avail_idx, 2);
	t_wr(&blk, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	t_wait_used((uint16_t)(used_seen + 1), NULL, &len);
	assert_int_equal(len, 0);

	/* A chain that loops: handed back unused; the next request works. */
	head = (uint16_t)(next_desc % T_QSIZE);
	uint8_t *p = t_ptr(T_DESC + 16ULL * head);
	le_put(p, T_HDR, 8);
	le_put(p + 8, 16, 4);
	le_put(p + 12, VIRTQ_DESC_F_NEXT, 2);
	le_put(p + 14, head, 2);
	next_desc++;
	le_put(t_ptr(T_AVAIL + 4 + 2 * (avail_idx % T_QSIZE)), head, 2);
	le_put(t_ptr(T_AVAIL + 2), ++avail_idx, 2);
	t_wr(&blk, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	t_wait_used((uint16_t)(used_seen + 1), NULL, &len);
	assert_int_equal(len, 0);
	assert_int_equal(t_request(VIRTIO_BLK_T_IN, 0, one, 1, &len), VIRTIO_BLK_S_OK);
	assert_false(t_rd(&blk, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
}

/* A ring past repair: NEEDS_RESET and a config interrupt; a reset heals it. */
static void test_broken_ring_and_reset(void **state)
{
	uint32_t len;
	struct t_buf one[1] = { { T_DATA, 512, true } };

	le_put(t_ptr(T_AVAIL + 2), (uint16_t)(avail_idx + T_QSIZE + 1), 2);
	t_wr(&blk, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	for (int i = 0; i < 5000 && !(t_rd(&blk, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET); i++)
		usleep(1000);
	assert_true(t_rd(&blk, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
	assert_true(t_rd(&blk, VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_CONFIG);
	t_wr(&blk, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_CONFIG);
	assert_int_equal(t_rd(&blk, VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_CONFIG, 0);

	t_driver_init(&blk, false);
	assert_int_equal(t_rd(&blk, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET, 0);
	assert_int_equal(t_request(VIRTIO_BLK_T_IN, 3, one, 1, &len), VIRTIO_BLK_S_OK);
	assert_int_equal(*t_ptr(T_DATA), 3);
	/* A queue whose rings lie outside RAM never becomes ready. */
	t_wr(&blk, VIRTIO_MMIO_STATUS, 0);
	t_wr(&blk, VIRTIO_MMIO_QUEUE_NUM, T_QSIZE);
	t_wr(&blk, VIRTIO_MMIO_QUEUE_USED_LOW, 0xfffff000);
	t_wr(&blk, VIRTIO_MMIO_QUEUE_READY, 1);
	assert_int_equal(t_rd(&blk, VIRTIO_MMIO_QUEUE_READY), 0);
}

static void test_readonly(void **state)
{
	struct block_config ro = disk;
	uint32_t len;
	struct t_buf one[1] = { { T_DATA, 512, false } };

	ro.readonly = true;
	virtio_blk_destroy(&blk);
	assert_int_equal(t_blk_create(&blk, &ro, 1), 0);
	t_driver_init(&blk, true);
	t_wr(&blk, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	assert_true(t_rd(&blk, VIRTIO_MMIO_DEVICE_FEATURES) & (1u << VIRTIO_BLK_F_RO));
	assert_int_equal(t_request(VIRTIO_BLK_T_OUT, 0, one, 1, &len), VIRTIO_BLK_S_IOERR);
	struct t_buf seg[1] = { { T_DATA, 16, false } };
	t_seg(T_DATA, 0, 1, 0);
	assert_int_equal(t_request(VIRTIO_BLK_T_WRITE_ZEROES, 0, seg, 1, &len), VIRTIO_BLK_S_IOERR);
	one[0].write = true;
	assert_int_equal(t_request(VIRTIO_BLK_T_IN, 0, one, 1, &len), VIRTIO_BLK_S_OK);
}

/* Save and load through the registry's hooks, as a migration does. */
static int t_migrate(struct virtio_blk *from, struct virtio_blk *to, struct vmstate_error *err)
{
	const struct device_ops *d = &virtio_blk_device_ops;
	struct virtio_blk_state s, back;
	struct vmstate_buf buf;
	int r;

	assert_int_equal(d->quiesce(from), 0);
	assert_int_equal(d->inactivate(from), 0);	/* flushed, unlocked: the switchover */
	assert_int_equal(d->save(from, &s), 0);
	vmstate_buf_init(&buf);
	assert_int_equal(vmstate_save_as(d->vmsd, "virtio-blk.0", &s, &buf), 0);
	memset(&back, 0, sizeof(back));
	r = vmstate_load_as(d->vmsd, "virtio-blk.0", &back, buf.data, buf.len, err);
	vmstate_buf_free(&buf);
	if (!r)
		r = d->check(to, &back, err->msg, sizeof(err->msg));
	if (!r)
		r = d->load(to, &back);
	return r;
}

static void test_migrate_mid_stream(void **state)
{
	struct virtio_blk *dst = calloc(1, sizeof(*dst));
	struct vmstate_error err;
	uint8_t sec[512];
	uint32_t len;

	uint16_t heads[5];

	assert_non_null(dst);
	/* Writes offered (5 x 3 descriptors of 16), some kicked, some not: quiesce completes them all. */
	for (unsigned i = 0; i < 5; i++) {
		memset(t_ptr(T_DATA + 512ULL * i), 0xa0 + (int)i, 512);
		struct t_buf wd[1] = { { T_DATA + 512ULL * i, 512, false } };
		heads[i] = t_offer(VIRTIO_BLK_T_OUT, 200 + i, wd, 1, i < 3, &blk);
	}
	assert_int_equal(virtio_blk_device_ops.quiesce(&blk), 0);
	assert_int_equal(le_get(t_ptr(T_USED + 2), 2), 5);
	for (unsigned i = 0; i < 5; i++) {
		assert_int_equal(*t_ptr(T_STATUS + heads[i]), VIRTIO_BLK_S_OK);
		t_file_read((200 + i) * 512ULL, sec, 512);
		assert_int_equal(sec[0], 0xa0 + i);
	}
	used_seen = 5;

	/* A second writer of the image is refused while the source holds it. */
	char why[512];
	assert_int_equal(t_blk_create(dst, &disk, 0), -EBUSY);
	/* The destination: same image, same RAM (as the final pass leaves it), unlocked. */
	assert_int_equal(t_blk_open(dst, &disk, 0, true), 0);
	assert_int_equal(virtio_blk_device_ops.activate(dst, why, sizeof(why)), -EBUSY);
	assert_non_null(strstr(why, "is in use by another process"));
	assert_int_equal(t_migrate(&blk, dst, &err), 0);
	/* GO: the source let go at the switchover, the destination takes the lock. */
	assert_int_equal(virtio_blk_device_ops.activate(dst, why, sizeof(why)), 0);
	assert_int_equal(virtio_blk_device_ops.activate(&blk, why, sizeof(why)), -EBUSY);
	/* Overwrite sector 200 behind the source's back: nobody redoes its write. */
	int fd = open(img, O_WRONLY);
	memset(sec, 0x55, sizeof(sec));
	assert_int_equal(pwrite(fd, sec, 512, 200 * 512), 512);
	close(fd);
	virtio_blk_destroy(&blk);
	blk = (struct virtio_blk){ 0 };

	/* The guest goes on on the destination: same rings, next index. */
	struct t_buf rd[1] = { { T_DATA + 0x10000, 512, true } };
	uint16_t head = t_offer(VIRTIO_BLK_T_IN, 201, rd, 1, true, dst);
	t_wait_used(6, NULL, &len);
	assert_int_equal(*t_ptr(T_STATUS + head), VIRTIO_BLK_S_OK);
	assert_int_equal(*t_ptr(T_DATA + 0x10000), 0xa1);
	t_file_read(200 * 512, sec, 512);
	assert_int_equal(sec[0], 0x55);
	assert_true(t_rd(dst, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_DRIVER_OK);

	/* An entry offered but never kicked at the source is taken at the destination. */
	struct virtio_blk *dst2 = calloc(1, sizeof(*dst2));
	assert_int_equal(t_blk_open(dst2, &disk, 0, true), 0);
	assert_int_equal(virtio_blk_device_ops.quiesce(dst), 0);
	assert_int_equal(virtio_blk_device_ops.inactivate(dst), 0);
	struct virtio_blk_state s;
	assert_int_equal(virtio_blk_device_ops.save(dst, &s), 0);
	virtio_blk_destroy(dst);
	head = t_offer(VIRTIO_BLK_T_IN, 202, rd, 1, false, dst2);
	assert_int_equal(virtio_blk_device_ops.check(dst2, &s, err.msg, sizeof(err.msg)), 0);
	assert_int_equal(virtio_blk_device_ops.load(dst2, &s), 0);
	/* Inactive: the request waits in the ring until the lock is taken. */
	struct timespec pause = { 0, 50 * 1000000L };
	nanosleep(&pause, NULL);
	assert_int_equal(le_get(t_ptr(T_USED + 2), 2), 6);
	assert_int_equal(virtio_blk_device_ops.activate(dst2, why, sizeof(why)), 0);
	t_wait_used(7, NULL, &len);
	assert_int_equal(*t_ptr(T_DATA + 0x10000), 0xa2);

	/* A destination whose disk differs, or state with rings outside RAM: refused. */
	char small[80];
	struct block_config sd = disk;
	struct virtio_blk *other = calloc(1, sizeof(*other));
	snprintf(small, sizeof(small), "%s-small", img);
	assert_int_equal(t_make_image(small, 100), 0);
	strcpy(sd.path, small);
	assert_int_equal(t_blk_create(other, &sd, 0), 0);
	assert_int_equal(virtio_blk_device_ops.check(other, &s, err.msg, sizeof(err.msg)), -EINVAL);
	assert_non_null(strstr(err.msg, "2048 sectors"));
	s.t.queues[0].used = T_RAM + 0x1000;
	assert_int_equal(virtio_blk_device_ops.check(dst2, &s, err.msg, sizeof(err.msg)), -EINVAL);
	assert_non_null(strstr(err.msg, "outside guest RAM"));
	virtio_blk_destroy(other);
	unlink(small);
	free(other);
	blk = (struct virtio_blk){ 0 };
	virtio_blk_destroy(dst2);
	free(dst2);
	free(dst);
}

/* cache=none: O_DIRECT, with a bounce for buffers it cannot take. */
static void test_cache_none(void **state)
{
	struct block_config dc = disk;
	uint8_t file[1024];
	uint32_t len;

	dc.cache = BLOCK_CACHE_NONE;
	virtio_blk_destroy(&blk);
	if (t_blk_create(&blk, &dc, 0)) {
		blk = (struct virtio_blk){ 0 };
		skip();		/* this file system has no O_DIRECT */
	}
	t_driver_init(&blk, true);
	memset(t_ptr(T_DATA), 0x11, 1024);
	memset(t_ptr(T_DATA + 4097), 0x22, 1024);
	struct t_buf al[1] = { { T_DATA, 1024, false } };
	struct t_buf mis[1] = { { T_DATA + 4097, 1024, false } };	/* misaligned */
	assert_int_equal(t_request(VIRTIO_BLK_T_OUT, 4, al, 1, &len), VIRTIO_BLK_S_OK);
	assert_int_equal(t_request(VIRTIO_BLK_T_OUT, 6, mis, 1, &len), VIRTIO_BLK_S_OK);
	t_file_read(4 * 512, file, sizeof(file));
	assert_int_equal(file[0], 0x11);
	t_file_read(6 * 512, file, sizeof(file));
	assert_int_equal(file[1023], 0x22);
	mis[0].write = true;
	memset(t_ptr(T_DATA + 4097), 0, 1024);
	assert_int_equal(t_request(VIRTIO_BLK_T_IN, 6, mis, 1, &len), VIRTIO_BLK_S_OK);
	assert_int_equal(*t_ptr(T_DATA + 4097 + 1000), 0x22);
	assert_int_equal(t_request(VIRTIO_BLK_T_FLUSH, 0, NULL, 0, &len), VIRTIO_BLK_S_OK);
}

static void test_disk_option(void **state)
{
	struct block_config c;
	char why[160];

	assert_int_equal(block_config_parse("path=/x,readonly=on,cache=none,serial=abc", &c, why,
					    sizeof(why)), 0);
	assert_string_equal(c.path, "/x");
	assert_true(c.readonly);
	assert_int_equal(c.cache, BLOCK_CACHE_NONE);
	assert_string_equal(c.serial, "abc");
	assert_int_equal(block_config_parse("readonly=on", &c, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "path"));
	assert_int_equal(block_config_parse("path=/x,cache=fast", &c, why, sizeof(why)), -EINVAL);
	assert_int_equal(block_config_parse("path=/x,bogus=1", &c, why, sizeof(why)), -EINVAL);
	assert_int_equal(block_config_parse("path=/x,serial=123456789012345678901", &c, why,
					    sizeof(why)), -EINVAL);
	assert_int_equal(block_config_parse("path=/x,noequals", &c, why, sizeof(why)), -EINVAL);
	assert_int_equal(block_config_parse("path=/x,locking=off", &c, why, sizeof(why)), 0);
	assert_true(c.nolock);
	assert_int_equal(c.kind, BLOCK_KIND_FILE);
	assert_int_equal(block_config_parse("nbd=nbd+unix:///e?socket=/s,serial=n", &c, why,
					    sizeof(why)), 0);
	assert_int_equal(c.kind, BLOCK_KIND_NBD);
	assert_string_equal(c.path, "nbd+unix:///e?socket=/s");
	assert_int_equal(block_config_parse("nbd=nbd://h/e,path=/x", &c, why, sizeof(why)), -EINVAL);
	assert_int_equal(block_config_parse("nbd=nbd://h/e,cache=none", &c, why, sizeof(why)),
			 -EINVAL);
	assert_int_equal(block_config_parse("nbd=nbds://h/e", &c, why, sizeof(why)), -EINVAL);
	assert_int_equal(block_config_parse("nbd=/x", &c, why, sizeof(why)), -EINVAL);
}

/* ---- a backend that moves less than asked, or holds requests -------- */

/*
 * The file backend behind a shim, put in place of the disk's ops: with
 * t_cap, a READ or WRITE moves at most t_cap bytes (the iovecs cut, as
 * preadv/pwritev/io_uring may legally do); with t_hold, operations are
 * kept back until t_hold is cleared (a backend that hangs).  Called on
 * the disk's I/O thread only.
 */
static size_t t_cap;
static bool t_hold;
static unsigned t_cut;			/* operations that were cut short */
static struct iovec t_cap_iov[VIRTQ_MAX_SIZE][VIRTQ_MAX_CHAIN];
static struct { enum block_op op; const struct iovec *iov; unsigned n; uint64_t off;
		void *user; } t_held[VIRTQ_MAX_SIZE];
static unsigned t_nr_held;

static int t_shim_queue(struct block_backend *bb, enum block_op op, const struct iovec *iov,
			unsigned n, uint64_t off, void *user)
{
	struct virtio_blk_req *r = user;
	size_t left = t_cap, total = 0;
	unsigned k;

	if (__atomic_load_n(&t_hold, __ATOMIC_ACQUIRE)) {
		t_held[t_nr_held].op = op;
		t_held[t_nr_held].iov = iov;
		t_held[t_nr_held].n = n;
		t_held[t_nr_held].off = off;
		t_held[t_nr_held++].user = user;
		return 0;
	}
	if (!t_cap || op == BLOCK_OP_FLUSH)
		return block_file_ops.queue(bb, op, iov, n, off, user);
	for (k = 0; k < n && left; k++) {
		size_t l = iov[k].iov_len < left ? iov[k].iov_len : left;
		t_cap_iov[r->slot][k] = (struct iovec){ .iov_base = iov[k].iov_base, .iov_len = l };
		left -= l;
	}
	for (unsigned i = 0; i < n; i++)
		total += iov[i].iov_len;
	if (total > t_cap)
		__atomic_add_fetch(&t_cut, 1, __ATOMIC_RELAXED);
	return block_file_ops.queue(bb, op, t_cap_iov[r->slot], k, off, user);
}

static unsigned t_shim_reap(struct block_backend *bb, short revents, block_done_fn *done,
			    void *opaque)
{
	/* Released: what was held goes to the file now. */
	if (t_nr_held && !__atomic_load_n(&t_hold, __ATOMIC_ACQUIRE)) {
		for (unsigned i = 0; i < t_nr_held; i++)
			assert_int_equal(block_file_ops.queue(bb, t_held[i].op, t_held[i].iov,
							      t_held[i].n, t_held[i].off,
							      t_held[i].user), 0);
		t_nr_held = 0;
		assert_int_equal(block_file_ops.submit(bb), 0);
	}
	return block_file_ops.reap(bb, revents, done, opaque);
}

static struct block_backend_ops t_shim_ops;

/* Put the shim in (the I/O thread idle: drained, waiting for a kick). */
static void t_shim_install(void)
{
	t_shim_ops = block_file_ops;
	t_shim_ops.name = "shim";
	t_shim_ops.queue = t_shim_queue;
	t_shim_ops.reap = t_shim_reap;
	t_cap = 0;
	t_hold = false;
	t_cut = 0;
	t_nr_held = 0;
	assert_int_equal(virtio_blk_drain(&blk, false), 0);
	blk.bk.ops = &t_shim_ops;
}

static unsigned t_in_flight(void)
{
	pthread_mutex_lock(&blk.t.lock);
	unsigned n = blk.in_flight;
	pthread_mutex_unlock(&blk.t.lock);
	return n;
}

/* A short read or write is asked again for the rest: never an error, never short. */
static void test_short_io(void **state)
{
	uint8_t file[6144], *w = t_ptr(T_DATA), *r = t_ptr(T_DATA + 0x10000);
	uint32_t len;

	t_shim_install();
	t_cap = 700;	/* not a sector: the rest starts inside an iovec */
	for (unsigned i = 0; i < sizeof(file); i++)
		w[i] = (uint8_t)(i * 13 + 1);
	/* Three buffers out (written synchronously into the page cache)... */
	struct t_buf wd[3] = { { T_DATA, 1536, false }, { T_DATA + 1536, 4096, false },
			       { T_DATA + 5632, 512, false } };
	assert_int_equal(t_request(VIRTIO_BLK_T_OUT, 40, wd, 3, &len), VIRTIO_BLK_S_OK);
	assert_int_equal(len, 1);
	t_file_read(40 * 512, file, sizeof(file));
	assert_memory_equal(file, w, sizeof(file));
	/* ... two back in (through io_uring), split elsewhere. */
	memset(r, 0x55, sizeof(file));
	struct t_buf rd[2] = { { T_DATA + 0x10000, 2560, true },
			       { T_DATA + 0x10000 + 2560, 3584, true } };
	assert_int_equal(t_request(VIRTIO_BLK_T_IN, 40, rd, 2, &len), VIRTIO_BLK_S_OK);
	assert_int_equal(len, sizeof(file) + 1);
	assert_memory_equal(r, w, sizeof(file));
	assert_true(__atomic_load_n(&t_cut, __ATOMIC_RELAXED) >= 2);
	assert_int_equal(t_in_flight(), 0);

	/*
	 * The image file shrinks under the disk: a read that reaches its end
	 * moves a part, then nothing: an I/O error, not a loop.
	 */
	t_cap = 0;
	assert_int_equal(truncate(img, 1024 * 512), 0);
	struct t_buf tail[1] = { { T_DATA + 0x20000, 4096, true } };
	assert_int_equal(t_request(VIRTIO_BLK_T_IN, 1020, tail, 1, &len), VIRTIO_BLK_S_IOERR);
	assert_int_equal(len, 1);
	assert_int_equal(t_request(VIRTIO_BLK_T_IN, 1016, tail, 1, &len), VIRTIO_BLK_S_OK);
	assert_int_equal(t_in_flight(), 0);
}

/*
 * A driver reset while the backend hangs on a request: the reset (a vCPU
 * thread's MMIO write) returns in bounded time; the request left behind
 * finishes later without touching the reset ring, and its head may be
 * offered again meanwhile.
 */
static void test_reset_while_backend_hangs(void **state)
{
	struct timespec t0, t1;
	uint32_t id, len;

	t_shim_install();
	blk.reset_wait_ms = 100;
	__atomic_store_n(&t_hold, true, __ATOMIC_RELEASE);
	struct t_buf rd[1] = { { T_DATA, 512, true } };
	uint16_t head = t_offer(VIRTIO_BLK_T_IN, 5, rd, 1, true, &blk);
	assert_int_equal(head, 0);
	for (int i = 0; i < 5000 && t_in_flight() != 1; i++)
		usleep(1000);
	assert_int_equal(t_in_flight(), 1);

	clock_gettime(CLOCK_MONOTONIC, &t0);
	t_wr(&blk, VIRTIO_MMIO_STATUS, 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double took = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	assert_true(took >= 0.09 && took < 2.0);
	assert_int_equal(t_rd(&blk, VIRTIO_MMIO_STATUS), 0);
	assert_int_equal(t_in_flight(), 1);

	/* The driver starts again and offers head 0 once more: taken, answered. */
	t_driver_init(&blk, true);
	uint8_t id_buf[20];
	struct t_buf idb[1] = { { T_DATA + 0x1000, 20, true } };
	assert_int_equal(t_request(VIRTIO_BLK_T_GET_ID, 0, idb, 1, &len), VIRTIO_BLK_S_OK);
	memcpy(id_buf, t_ptr(T_DATA + 0x1000), sizeof(id_buf));
	assert_memory_equal(id_buf, "ferry-disk-0", 12);
	assert_int_equal(t_rd(&blk, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET, 0);

	/* The backend comes back: the orphan finishes, unreported; new requests work. */
	__atomic_store_n(&t_hold, false, __ATOMIC_RELEASE);
	struct t_buf rd2[1] = { { T_DATA + 0x2000, 512, true } };
	head = t_offer(VIRTIO_BLK_T_IN, 7, rd2, 1, true, &blk);
	t_wait_used(2, &id, &len);
	assert_int_equal(id, head);
	assert_int_equal(len, 513);
	assert_int_equal(*t_ptr(T_STATUS + head), VIRTIO_BLK_S_OK);
	assert_int_equal(*t_ptr(T_DATA + 0x2000), 7);
	for (int i = 0; i < 5000 && t_in_flight(); i++)
		usleep(1000);
	assert_int_equal(t_in_flight(), 0);
	usleep(20000);
	assert_int_equal(le_get(t_ptr(T_USED + 2), 2), 2);	/* nothing pushed for it */
	assert_int_equal(*t_ptr(T_DATA), 5);			/* its data did land */
	assert_int_equal(t_rd(&blk, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET, 0);
}

/* Ending ferry while the backend hangs on a request: destroy returns, bounded. */
static void test_destroy_while_backend_hangs(void **state)
{
	struct timespec t0, t1;

	t_shim_install();
	blk.stop_wait_ms = 200;
	__atomic_store_n(&t_hold, true, __ATOMIC_RELEASE);
	struct t_buf rd[1] = { { T_DATA, 512, true } };
	t_offer(VIRTIO_BLK_T_IN, 5, rd, 1, true, &blk);
	for (int i = 0; i < 5000 && t_in_flight() != 1; i++)
		usleep(1000);
	assert_int_equal(t_in_flight(), 1);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	virtio_blk_destroy(&blk);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double took = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	assert_true(took >= 0.15 && took < 3.0);
	assert_null(blk.reqs);
}

/*
 * The driver turns the queue off while requests are in flight and changes
 * its size (to 0, then to more than the ring that was checked): the
 * requests finish without pushing through the old ring (which used to
 * divide by the new size of 0, or write past the ring), and the device
 * works again once set up anew.
 */
static void test_queue_off_in_flight(void **state)
{
	uint32_t len;

	t_shim_install();
	__atomic_store_n(&t_hold, true, __ATOMIC_RELEASE);
	struct t_buf rd[2][1] = { { { T_DATA, 512, true } }, { { T_DATA + 0x1000, 512, true } } };
	t_offer(VIRTIO_BLK_T_IN, 9, rd[0], 1, false, &blk);
	t_offer(VIRTIO_BLK_T_IN, 10, rd[1], 1, true, &blk);
	for (int i = 0; i < 5000 && t_in_flight() != 2; i++)
		usleep(1000);
	assert_int_equal(t_in_flight(), 2);

	t_wr(&blk, VIRTIO_MMIO_QUEUE_SEL, 0);
	t_wr(&blk, VIRTIO_MMIO_QUEUE_READY, 0);
	assert_int_equal(t_rd(&blk, VIRTIO_MMIO_QUEUE_READY), 0);
	t_wr(&blk, VIRTIO_MMIO_QUEUE_NUM, 0);
	__atomic_store_n(&t_hold, false, __ATOMIC_RELEASE);
	t_wr(&blk, VIRTIO_MMIO_QUEUE_NOTIFY, 0);	/* wakes the thread: it releases them */
	for (int i = 0; i < 5000 && t_in_flight(); i++)
		usleep(1000);
	assert_int_equal(t_in_flight(), 0);
	assert_int_equal(le_get(t_ptr(T_USED + 2), 2), 0);

	/* Larger than what was mapped, with one more in flight: nothing past the ring. */
	t_driver_init(&blk, true);
	__atomic_store_n(&t_hold, true, __ATOMIC_RELEASE);
	t_offer(VIRTIO_BLK_T_IN, 11, rd[0], 1, true, &blk);
	for (int i = 0; i < 5000 && t_in_flight() != 1; i++)
		usleep(1000);
	assert_int_equal(t_in_flight(), 1);
	memset(t_ptr(T_USED + 4 + 8 * T_QSIZE + 2), 0x77, 8 * 256);
	t_wr(&blk, VIRTIO_MMIO_QUEUE_READY, 0);
	t_wr(&blk, VIRTIO_MMIO_QUEUE_NUM, 256);
	__atomic_store_n(&t_hold, false, __ATOMIC_RELEASE);
	t_wr(&blk, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	for (int i = 0; i < 5000 && t_in_flight(); i++)
		usleep(1000);
	assert_int_equal(t_in_flight(), 0);
	assert_int_equal(le_get(t_ptr(T_USED + 2), 2), 0);
	for (unsigned k = 0; k < 8 * 256; k++)
		assert_int_equal(*t_ptr(T_USED + 4 + 8 * T_QSIZE + 2 + k), 0x77);

	t_driver_init(&blk, true);
	assert_int_equal(t_request(VIRTIO_BLK_T_IN, 12, rd[0], 1, &len), VIRTIO_BLK_S_OK);
	assert_int_equal(*t_ptr(T_DATA), 12);
}

int main(void)
{
	struct io_uring probe;

	if (io_uring_queue_init(4, &probe, 0)) {
		printf("io_uring is not available here\n");
		return 77;
	}
	io_uring_queue_exit(&probe);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_identify, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_read, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flush_get_id, setup, teardown),
		cmocka_unit_test_setup_teardown(test_discard_write_zeroes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_guest_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_broken_ring_and_reset, setup, teardown),
		cmocka_unit_test_setup_teardown(test_readonly, setup, teardown),
		cmocka_unit_test_setup_teardown(test_migrate_mid_stream, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cache_none, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_blocking, setup, teardown),
		cmocka_unit_test_setup_teardown(test_gate, setup, teardown),
		cmocka_unit_test(test_disk_option),
		cmocka_unit_test_setup_teardown(test_short_io, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset_while_backend_hangs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_queue_off_in_flight, setup, teardown),
		cmocka_unit_test_setup_teardown(test_destroy_while_backend_hangs, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
