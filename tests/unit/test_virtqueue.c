/*
 * Split virtqueues over hostile rings: every malformed chain is refused
 * with an error (never a crash, a hang or an access outside RAM), a ring
 * whose indexes are garbage breaks the queue for good, and good chains,
 * used-ring updates and EVENT_IDX suppression behave as the spec says.
 * Runs over plain RAM from guest_memory_create(), no KVM.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "devices/virtio/queue.h"
#include "util/le.h"

#define T_RAM	(16ULL << 20)
#define T_DESC	0x1000ULL
#define T_AVAIL	0x2000ULL
#define T_USED	0x3000ULL
#define T_IND	0x4000ULL	/* indirect tables */
#define T_DATA	0x100000ULL
#define T_QSIZE	16

static struct guest_memory ram;
static struct virtq q;
static struct virtq_chain chain;
static uint64_t dirty_bytes;

static void t_dirty(void *opaque, uint64_t gpa, uint64_t len)
{
	assert_non_null(guest_memory_ptr(&ram, gpa, len));
	dirty_bytes += len;
}

static const struct virtq_mem mem = { .ram = &ram, .dirty = t_dirty };

static uint8_t *t_ptr(uint64_t gpa)
{
	return guest_memory_ptr(&ram, gpa, 1);
}

static void t_desc_at(uint64_t table, unsigned i, uint64_t addr, uint32_t len, uint16_t flags,
		      uint16_t next)
{
	uint8_t *p = t_ptr(table + 16ULL * i);

	le_put(p, addr, 8);
	le_put(p + 8, len, 4);
	le_put(p + 12, flags, 2);
	le_put(p + 14, next, 2);
}

static void t_desc(unsigned i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	t_desc_at(T_DESC, i, addr, len, flags, next);
}

/* Make `head` available in the next slot and bump the avail index. */
static void t_offer(uint16_t head)
{
	uint16_t idx = (uint16_t)le_get(t_ptr(T_AVAIL + 2), 2);

	le_put(t_ptr(T_AVAIL + 4 + 2 * (idx % T_QSIZE)), head, 2);
	le_put(t_ptr(T_AVAIL + 2), (uint16_t)(idx + 1), 2);
}

static int setup(void **state)
{
	if (guest_memory_create(&ram, T_RAM))
		return -1;
	virtq_reset(&q);
	q.size = T_QSIZE;
	q.desc_gpa = T_DESC;
	q.avail_gpa = T_AVAIL;
	q.used_gpa = T_USED;
	q.indirect = true;
	q.ready = true;
	dirty_bytes = 0;
	return virtq_setup(&q, &ram);
}

static int teardown(void **state)
{
	guest_memory_destroy(&ram);
	return 0;
}

static void test_good_chain(void **state)
{
	t_desc(0, T_DATA, 16, VIRTQ_DESC_F_NEXT, 5);
	t_desc(5, T_DATA + 4096, 512, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
	t_desc(2, T_DATA + 8192, 1, VIRTQ_DESC_F_WRITE, 0);
	t_offer(0);
	assert_int_equal(virtq_pop(&q, &mem, &chain), 1);
	assert_int_equal(chain.head, 0);
	assert_int_equal(chain.nr, 3);
	assert_int_equal(chain.nr_read, 1);
	assert_int_equal(chain.read_len, 16);
	assert_int_equal(chain.write_len, 513);
	assert_ptr_equal(chain.bufs[1].host, t_ptr(T_DATA + 4096));
	assert_int_equal(virtq_pop(&q, &mem, &chain), 0);	/* nothing more */
	assert_int_equal(virtq_in_flight(&q), 1);

	assert_int_equal(virtq_push(&q, &mem, 0, 513), 0);
	assert_int_equal(le_get(t_ptr(T_USED + 2), 2), 1);
	assert_int_equal(le_get(t_ptr(T_USED + 4), 4), 0);
	assert_int_equal(le_get(t_ptr(T_USED + 8), 4), 513);
	assert_true(dirty_bytes >= 10);		/* the element and the index */
	assert_int_equal(virtq_in_flight(&q), 0);
}

static void test_loop(void **state)
{
	t_desc(0, T_DATA, 16, VIRTQ_DESC_F_NEXT, 1);
	t_desc(1, T_DATA, 16, VIRTQ_DESC_F_NEXT, 0);
	t_offer(0);
	t_desc(7, T_DATA, 16, VIRTQ_DESC_F_NEXT, 7);	/* a loop onto itself */
	t_offer(7);
	assert_int_equal(virtq_pop(&q, &mem, &chain), -EINVAL);
	assert_int_equal(chain.head, 0);
	assert_int_equal(virtq_pop(&q, &mem, &chain), -EINVAL);
	assert_int_equal(chain.head, 7);
	/* Consumed: the device returns them and the queue goes on. */
	assert_int_equal(virtq_push(&q, &mem, 0, 0), 0);
	assert_int_equal(virtq_push(&q, &mem, 7, 0), 0);
	assert_int_equal(virtq_pop(&q, &mem, &chain), 0);
	assert_false(q.broken);
}

static void test_past_ram(void **state)
{
	t_desc(0, T_RAM - 8, 16, 0, 0);			/* straddles the end */
	t_offer(0);
	t_desc(1, UINT64_MAX - 8, 512, 0, 0);		/* wraps around */
	t_offer(1);
	t_desc(2, 0xC0000000ULL, 512, 0, 0);		/* beyond RAM */
	t_offer(2);
	t_desc(3, T_DATA, UINT32_MAX, 0, 0);		/* 4 GiB past the data */
	t_offer(3);
	for (int i = 0; i < 4; i++)
		assert_int_equal(virtq_pop(&q, &mem, &chain), -EINVAL);
	assert_int_equal(virtq_pop(&q, &mem, &chain), 0);
}

static void test_next_out_of_range(void **state)
{
	t_desc(0, T_DATA, 16, VIRTQ_DESC_F_NEXT, T_QSIZE);
	t_offer(0);
	t_desc(1, T_DATA, 16, VIRTQ_DESC_F_NEXT, 0xffff);
	t_offer(1);
	assert_int_equal(virtq_pop(&q, &mem, &chain), -EINVAL);
	assert_int_equal(virtq_pop(&q, &mem, &chain), -EINVAL);
}

static void test_head_out_of_range(void **state)
{
	t_offer(T_QSIZE);
	assert_int_equal(virtq_pop(&q, &mem, &chain), -EPROTO);
	assert_true(q.broken);
	/* Broken for good: even a good chain is not taken any more. */
	t_desc(0, T_DATA, 16, 0, 0);
	t_offer(0);
	assert_int_equal(virtq_pop(&q, &mem, &chain), -EPROTO);
	assert_false(virtq_arm(&q, &mem));
}

static void test_avail_jump(void **state)
{
	t_desc(0, T_DATA, 16, 0, 0);
	le_put(t_ptr(T_AVAIL + 2), T_QSIZE + 1, 2);	/* 17 chains in a ring of 16 */
	assert_int_equal(virtq_pop(&q, &mem, &chain), -EPROTO);
	assert_true(q.broken);

	assert_int_equal(teardown(state), 0);
	assert_int_equal(setup(state), 0);
	le_put(t_ptr(T_AVAIL + 2), 0x8000, 2);
	assert_int_equal(virtq_pop(&q, &mem, &chain), -EPROTO);
	/* Exactly a ring's worth is fine. */
	assert_int_equal(teardown(state), 0);
	assert_int_equal(setup(state), 0);
	for (unsigned i = 0; i < T_QSIZE; i++) {
		t_desc(i, T_DATA, 16, 0, 0);
		t_offer((uint16_t)i);
	}
	for (unsigned i = 0; i < T_QSIZE; i++)
		assert_int_equal(virtq_pop(&q, &mem, &chain), 1);
	assert_int_equal(virtq_pop(&q, &mem, &chain), 0);
}

static void test_zero_length(void **state)
{
	t_desc(0, T_DATA, 0, 0, 0);
	t_offer(0);
	t_desc(1, T_DATA, 16, VIRTQ_DESC_F_NEXT, 2);
	t_desc(2, T_DATA, 0, VIRTQ_DESC_F_WRITE, 0);
	t_offer(1);
	assert_int_equal(virtq_pop(&q, &mem, &chain), -EINVAL);
	assert_int_equal(virtq_pop(&q, &mem, &chain), -EINVAL);
}

static void test_read_after_write(void **state)
{
	t_desc(0, T_DATA, 16, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 1);
	t_desc(1, T_DATA, 16, 0, 0);
	t_offer(0);
	assert_int_equal(virtq_pop(&q, &mem, &chain), -EINVAL);
}

static void test_indirect(void **state)
{
	/* A good one: header, data, status in a table of 3. */
	t_desc_at(T_IND, 0, T_DATA, 16, VIRTQ_DESC_F_NEXT, 1);
	t_desc_at(T_IND, 1, T_DATA + 512, 4096, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
	t_desc_at(T_IND, 2, T_DATA + 8192, 1, VIRTQ_DESC_F_WRITE, 0);
	t_desc(0, T_IND, 48, VIRTQ_DESC_F_INDIRECT, 0);
	t_offer(0);
	assert_int_equal(virtq_pop(&q, &mem, &chain), 1);
	assert_int_equal(chain.nr, 3);
	assert_int_equal(chain.write_len, 4097);

	/* Indirect inside indirect. */
	t_desc_at(T_IND + 0x100, 0, T_IND, 48, VIRTQ_DESC_F_INDIRECT, 0);
	t_desc(1, T_IND + 0x100, 16, VIRTQ_DESC_F_INDIRECT, 0);
	t_offer(1);
	assert_int_equal(virtq_pop(&q, &mem, &chain), -EINVAL);
	/* INDIRECT with NEXT; a table not a multiple of 16; an empty table. */
	t_desc(2, T_IND, 48, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 0);
	t_offer(2);
	t_desc(3, T_IND, 40, VIRTQ_DESC_F_INDIRECT, 0);
	t_offer(3);
	t_desc(4, T_IND, 0, VIRTQ_DESC_F_INDIRECT, 0);
	t_offer(4);
	/* A table past RAM; an indirect descriptor after a direct one. */
	t_desc(5, T_RAM - 32, 64, VIRTQ_DESC_F_INDIRECT, 0);
	t_offer(5);
	t_desc(6, T_DATA, 16, VIRTQ_DESC_F_NEXT, 7);
	t_desc(7, T_IND, 48, VIRTQ_DESC_F_INDIRECT, 0);
	t_offer(6);
	for (int i = 0; i < 5; i++)
		assert_int_equal(virtq_pop(&q, &mem, &chain), -EINVAL);

	/* A loop inside the table. */
	t_desc_at(T_IND + 0x200, 0, T_DATA, 16, VIRTQ_DESC_F_NEXT, 1);
	t_desc_at(T_IND + 0x200, 1, T_DATA, 16, VIRTQ_DESC_F_NEXT, 0);
	t_desc(8, T_IND + 0x200, 32, VIRTQ_DESC_F_INDIRECT, 0);
	t_offer(8);
	assert_int_equal(virtq_pop(&q, &mem, &chain), -EINVAL);
	/* next past the table's end. */
	t_desc_at(T_IND + 0x300, 0, T_DATA, 16, VIRTQ_DESC_F_NEXT, 2);
	t_desc(9, T_IND + 0x300, 32, VIRTQ_DESC_F_INDIRECT, 0);
	t_offer(9);
	assert_int_equal(virtq_pop(&q, &mem, &chain), -EINVAL);

	/* Not negotiated: refused even when well formed. */
	q.indirect = false;
	t_offer(0);
	assert_int_equal(virtq_pop(&q, &mem, &chain), -EINVAL);
	assert_false(q.broken);
}

/* 300 chained buffers in one indirect table: longer than any chain may be. */
static void test_chain_too_long(void **state)
{
	const unsigned n = 300;

	for (unsigned i = 0; i < n; i++)
		t_desc_at(T_IND, i, T_DATA, 16, i + 1 < n ? VIRTQ_DESC_F_NEXT : 0,
			  (uint16_t)(i + 1));
	t_desc(0, T_IND, 16 * n, VIRTQ_DESC_F_INDIRECT, 0);
	t_offer(0);
	assert_int_equal(virtq_pop(&q, &mem, &chain), -EINVAL);
}

static void test_setup_refuses(void **state)
{
	struct virtq b = q;

	b.size = 12;					/* not a power of two */
	assert_int_equal(virtq_setup(&b, &ram), -EINVAL);
	assert_null(b.desc);
	b = q;
	b.size = 512;					/* over the maximum */
	assert_int_equal(virtq_setup(&b, &ram), -EINVAL);
	b = q;
	b.desc_gpa = T_DESC + 8;			/* misaligned */
	assert_int_equal(virtq_setup(&b, &ram), -EINVAL);
	b = q;
	b.used_gpa = T_RAM - 16;			/* runs past RAM */
	assert_int_equal(virtq_setup(&b, &ram), -EINVAL);
	b = q;
	b.avail_gpa = UINT64_MAX - 1;
	assert_int_equal(virtq_setup(&b, &ram), -EINVAL);
}

static void test_event_idx(void **state)
{
	q.event_idx = true;
	for (unsigned i = 0; i < 4; i++) {
		t_desc(i, T_DATA, 16, 0, 0);
		t_offer((uint16_t)i);
	}
	for (unsigned i = 0; i < 4; i++)
		assert_int_equal(virtq_pop(&q, &mem, &chain), 1);
	/* The device asks for a kick at the next entry. */
	assert_false(virtq_arm(&q, &mem));
	assert_int_equal(le_get(t_ptr(T_USED + 4 + 8 * T_QSIZE), 2), 4);
	/* The driver wants an interrupt once used_idx passes 2 (used_event = 2). */
	le_put(t_ptr(T_AVAIL + 4 + 2 * T_QSIZE), 2, 2);
	assert_int_equal(virtq_push(&q, &mem, 0, 0), 0);
	assert_true(virtq_should_notify(&q));		/* the first one always */
	assert_int_equal(virtq_push(&q, &mem, 1, 0), 0);
	assert_false(virtq_should_notify(&q));		/* used 2: not past 2 yet */
	assert_int_equal(virtq_push(&q, &mem, 2, 0), 0);
	assert_true(virtq_should_notify(&q));		/* used 3 crossed it */
	assert_int_equal(virtq_push(&q, &mem, 3, 0), 0);
	assert_false(virtq_should_notify(&q));
	/* Without EVENT_IDX, NO_INTERRUPT suppresses. */
	q.event_idx = false;
	le_put(t_ptr(T_AVAIL), VIRTQ_AVAIL_F_NO_INTERRUPT, 2);
	assert_false(virtq_should_notify(&q));
	le_put(t_ptr(T_AVAIL), 0, 2);
	assert_true(virtq_should_notify(&q));
	/* An entry that arrived before the arm is reported. */
	t_offer(0);
	assert_true(virtq_arm(&q, &mem));
}

/* NO_NOTIFY: off while the device looks by itself, on again at the arm. */
static void test_notify_off(void **state)
{
	virtq_notify_off(&q, &mem);
	assert_int_equal(le_get(t_ptr(T_USED), 2), VIRTQ_USED_F_NO_NOTIFY);
	uint64_t d = dirty_bytes;
	virtq_notify_off(&q, &mem);			/* already so: no store, no dirt */
	assert_int_equal(dirty_bytes, d);
	assert_false(virtq_arm(&q, &mem));
	assert_int_equal(le_get(t_ptr(T_USED), 2), 0);
	/* An entry that came while kicks were off is seen at the arm. */
	virtq_notify_off(&q, &mem);
	t_desc(0, T_DATA, 16, 0, 0);
	t_offer(0);
	assert_true(virtq_arm(&q, &mem));
	assert_int_equal(le_get(t_ptr(T_USED), 2), 0);
	/* With EVENT_IDX the flag is not the driver's business: left alone. */
	q.event_idx = true;
	virtq_notify_off(&q, &mem);
	assert_int_equal(le_get(t_ptr(T_USED), 2), 0);
	/* Nor is a queue that is not ready touched. */
	q.event_idx = false;
	q.ready = false;
	virtq_notify_off(&q, &mem);
	assert_int_equal(le_get(t_ptr(T_USED), 2), 0);
}

static void test_state(void **state)
{
	struct virtq_state s, back;
	struct vmstate_buf buf;
	struct vmstate_error err;
	struct virtq r;
	char why[160];

	memset(&back, 0, sizeof(back));
	virtq_save(&q, &s);
	assert_int_equal(virtq_state_check(&s, &ram, why, sizeof(why)), 0);
	vmstate_buf_init(&buf);
	static const struct vmstate_field f[] = {
		VMSTATE_STRUCT(struct { struct virtq_state s; }, s, virtq_state_vmsd),
		VMSTATE_END,
	};
	const struct vmstate_desc d = { .name = "t", .version = 1, .size = sizeof(s), .fields = f };
	assert_int_equal(vmstate_save(&d, &s, &buf), 0);
	assert_int_equal(vmstate_load(&d, &back, buf.data, buf.len, &err), 0);
	assert_memory_equal(&s, &back, sizeof(s));
	memset(&r, 0, sizeof(r));
	assert_int_equal(virtq_load(&r, &back, &ram), 0);
	assert_ptr_equal(r.desc, q.desc);

	/* Rings outside this RAM are refused by the check and the load. */
	back.used = T_RAM + 4096;
	assert_int_equal(virtq_state_check(&back, &ram, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "outside"));
	assert_int_equal(virtq_load(&r, &back, &ram), -EINVAL);
	/* More chains out than the ring holds: refused by the description. */
	s.last_avail = 100;
	s.used_idx = 50;
	vmstate_buf_free(&buf);
	vmstate_buf_init(&buf);
	assert_int_equal(vmstate_save(&d, &s, &buf), 0);
	assert_int_equal(vmstate_load(&d, &back, buf.data, buf.len, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "apart"));
	vmstate_buf_free(&buf);
}

/* Random rings: whatever the guest writes, pop ends and stays inside RAM. */
static void test_random_rings(void **state)
{
	srand(1234);
	for (int round = 0; round < 2000; round++) {
		uint8_t *d = t_ptr(T_DESC), *a = t_ptr(T_AVAIL), *ind = t_ptr(T_IND);
		for (unsigned i = 0; i < 16 * T_QSIZE; i++)
			d[i] = (uint8_t)rand();
		/* Mostly plausible addresses, so the walks get somewhere. */
		for (unsigned i = 0; i < T_QSIZE; i++) {
			if (rand() % 4)
				le_put(d + 16 * i, (rand() % 2 ? T_IND : T_DATA) + (uint64_t)(rand() % 4096), 8);
			if (rand() % 2)
				le_put(d + 16 * i + 8, (uint32_t)(rand() % 256), 4);
			le_put(d + 16 * i + 14, (uint16_t)(rand() % (T_QSIZE + 2)), 2);
		}
		for (unsigned i = 0; i < 4096; i++)
			ind[i] = (uint8_t)rand();
		for (unsigned i = 0; i < 4 + 2 * T_QSIZE + 2; i++)
			a[i] = (uint8_t)rand();
		q.last_avail = (uint16_t)rand();
		q.used_idx = q.last_avail;
		q.broken = false;
		q.event_idx = rand() % 2;
		int pops = 0, r;
		while ((r = virtq_pop(&q, &mem, &chain)) != 0 && r != -EPROTO) {
			assert_true(r == 1 || r == -EINVAL);
			assert_true(++pops <= T_QSIZE);
			if (r == 1) {
				assert_true(chain.nr >= 1 && chain.nr <= VIRTQ_MAX_CHAIN);
				for (unsigned i = 0; i < chain.nr; i++)
					assert_non_null(guest_memory_ptr(&ram, chain.bufs[i].gpa,
									 chain.bufs[i].len));
			}
			assert_int_equal(virtq_push(&q, &mem, chain.head, 0), 0);
		}
		virtq_should_notify(&q);
		virtq_arm(&q, &mem);
	}
}

/*
 * A queue whose size no longer matches its mapped rings (the transport
 * clears the views when the driver turns a queue off, so this is the
 * last line): nothing is pushed, read or written through them.
 */
static void test_size_changed_under_views(void **state)
{
	q.event_idx = true;
	q.size = 0;
	assert_int_equal(virtq_push(&q, &mem, 0, 1), -EPROTO);
	assert_false(virtq_should_notify(&q));
	assert_false(virtq_arm(&q, &mem));
	q.size = 3;	/* not a power of two */
	assert_int_equal(virtq_push(&q, &mem, 0, 1), -EPROTO);
	assert_false(virtq_arm(&q, &mem));
	q.size = T_QSIZE;
	assert_int_equal(virtq_push(&q, &mem, 0, 1), 0);
	assert_int_equal(le_get(t_ptr(T_USED + 2), 2), 1);
}

/* What a post-copy sends first: the three rings, then the next offered chain's buffer. */
static void test_first_pages(void **state)
{
	uint64_t out[8];

	assert_int_equal(virtq_first_pages(&q, out, 8), 3);		/* nothing offered */
	assert_int_equal(out[0], T_DESC);
	assert_int_equal(out[1], T_AVAIL);
	assert_int_equal(out[2], T_USED);
	t_desc(2, T_DATA + 0x3010, 1500, VIRTQ_DESC_F_WRITE, 0);
	t_offer(2);
	assert_int_equal(virtq_first_pages(&q, out, 8), 4);
	assert_int_equal(out[3], T_DATA + 0x3000);
	assert_int_equal(virtq_first_pages(&q, out, 2), 2);		/* room bounds it */
	/* A hostile head index lists only the rings; nothing breaks. */
	le_put(t_ptr(T_AVAIL + 4), 999, 2);
	assert_int_equal(virtq_first_pages(&q, out, 8), 3);
	assert_false(q.broken);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_good_chain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_first_pages, setup, teardown),
		cmocka_unit_test_setup_teardown(test_loop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_past_ram, setup, teardown),
		cmocka_unit_test_setup_teardown(test_next_out_of_range, setup, teardown),
		cmocka_unit_test_setup_teardown(test_head_out_of_range, setup, teardown),
		cmocka_unit_test_setup_teardown(test_avail_jump, setup, teardown),
		cmocka_unit_test_setup_teardown(test_zero_length, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_after_write, setup, teardown),
		cmocka_unit_test_setup_teardown(test_indirect, setup, teardown),
		cmocka_unit_test_setup_teardown(test_chain_too_long, setup, teardown),
		cmocka_unit_test_setup_teardown(test_setup_refuses, setup, teardown),
		cmocka_unit_test_setup_teardown(test_event_idx, setup, teardown),
		cmocka_unit_test_setup_teardown(test_notify_off, setup, teardown),
		cmocka_unit_test_setup_teardown(test_state, setup, teardown),
		cmocka_unit_test_setup_teardown(test_random_rings, setup, teardown),
		cmocka_unit_test_setup_teardown(test_size_changed_under_views, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
