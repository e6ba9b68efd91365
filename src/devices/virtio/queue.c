#include "devices/virtio/queue.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "util/le.h"

/* Ring sizes in bytes (§2.6): the event fields are always included. */
static uint64_t virtq_desc_bytes(uint16_t size)
{
	return 16ULL * size;
}

static uint64_t virtq_avail_bytes(uint16_t size)
{
	return 6ULL + 2ULL * size;
}

static uint64_t virtq_used_bytes(uint16_t size)
{
	return 6ULL + 8ULL * size;
}

void virtq_reset(struct virtq *q)
{
	memset(q, 0, sizeof(*q));
}

static bool virtq_size_ok(uint16_t size)
{
	return size && size <= VIRTQ_MAX_SIZE && !(size & (size - 1));
}

/* The three rings of a queue of `size` at these addresses, or why not. */
static int virtq_map(uint16_t size, uint64_t desc, uint64_t avail, uint64_t used,
		     const struct guest_memory *ram, uint8_t **d, uint8_t **a, uint8_t **u,
		     char *why, size_t whylen)
{
	if (!virtq_size_ok(size)) {
		snprintf(why, whylen, "queue size %u is not a power of two from 1 to %u",
			 size, VIRTQ_MAX_SIZE);
		return -EINVAL;
	}
	/* Alignment (§2.6): atomics on the indexes need it, and drivers honour it. */
	if (desc % 16 || avail % 2 || used % 4) {
		snprintf(why, whylen, "ring address misaligned (desc 0x%llx avail 0x%llx used 0x%llx)",
			 (unsigned long long)desc, (unsigned long long)avail,
			 (unsigned long long)used);
		return -EINVAL;
	}
	*d = guest_memory_ptr(ram, desc, virtq_desc_bytes(size));
	*a = guest_memory_ptr(ram, avail, virtq_avail_bytes(size));
	*u = guest_memory_ptr(ram, used, virtq_used_bytes(size));
	if (!*d || !*a || !*u) {
		snprintf(why, whylen, "ring outside guest RAM (desc 0x%llx avail 0x%llx used 0x%llx, "
			 "size %u)", (unsigned long long)desc, (unsigned long long)avail,
			 (unsigned long long)used, size);
		return -EINVAL;
	}
	return 0;
}

int virtq_setup(struct virtq *q, const struct guest_memory *ram)
{
	char why[160];
	uint8_t *d, *a, *u;
	int err = virtq_map(q->size, q->desc_gpa, q->avail_gpa, q->used_gpa, ram, &d, &a, &u,
			    why, sizeof(why));

	q->desc = q->avail = q->used = NULL;
	if (err)
		return err;
	q->desc = d;
	q->avail = a;
	q->used = u;
	return 0;
}

/* Index fields the guest writes concurrently: one aligned atomic access each. */
static uint16_t virtq_load16(const uint8_t *p)
{
	return __atomic_load_n((const uint16_t *)(const void *)p, __ATOMIC_ACQUIRE);
}

static void virtq_store16(uint8_t *p, uint16_t v)
{
	__atomic_store_n((uint16_t *)(void *)p, v, __ATOMIC_RELEASE);
}

static void virtq_dirty(const struct virtq_mem *m, uint64_t gpa, uint64_t len)
{
	if (m->dirty)
		m->dirty(m->opaque, gpa, len);
}

/* Copy descriptor i of a table once: the guest may rewrite it under us. */
static struct virtq_desc virtq_read_desc(const uint8_t *table, unsigned i)
{
	const uint8_t *p = table + 16ULL * i;

	return (struct virtq_desc){
		.addr = le_get(p, 8), .len = (uint32_t)le_get(p + 8, 4),
		.flags = (uint16_t)le_get(p + 12, 2), .next = (uint16_t)le_get(p + 14, 2),
	};
}

static int virtq_add_buf(struct virtq_chain *c, const struct virtq_mem *m,
			 const struct virtq_desc *d)
{
	bool write = d->flags & VIRTQ_DESC_F_WRITE;
	uint8_t *host;

	if (!d->len || c->nr == VIRTQ_MAX_CHAIN)
		return -EINVAL;		/* empty buffer, or chain too long */
	if (!write && c->nr > c->nr_read)
		return -EINVAL;		/* readable after writable (§2.6.4.2) */
	host = guest_memory_ptr(m->ram, d->addr, d->len);
	if (!host)
		return -EINVAL;		/* outside RAM, or across a hole */
	c->bufs[c->nr++] = (struct virtq_buf){ .gpa = d->addr, .host = host, .len = d->len };
	if (write) {
		c->write_len += d->len;
	} else {
		c->nr_read++;
		c->read_len += d->len;
	}
	return 0;
}

/*
 * Walk the chain at `head`.  A chain without a loop visits each descriptor
 * of its table at most once, so more steps than the table has entries is
 * a loop; an indirect table counts on its own.
 */
static int virtq_walk(struct virtq *q, const struct virtq_mem *m, uint16_t head,
		      struct virtq_chain *c)
{
	const uint8_t *table = q->desc;
	uint32_t n = q->size, i = head, steps = 0;
	bool in_indirect = false;

	c->nr = c->nr_read = 0;
	c->read_len = c->write_len = 0;
	for (;;) {
		struct virtq_desc d = virtq_read_desc(table, i);

		if (++steps > n)
			return -EINVAL;
		if (d.flags & VIRTQ_DESC_F_INDIRECT) {
			/* One level, the chain's only descriptor, a whole table in RAM. */
			if (!q->indirect || in_indirect || steps != 1 ||
			    (d.flags & VIRTQ_DESC_F_NEXT) || !d.len || d.len % 16 ||
			    d.len / 16 > 65536)
				return -EINVAL;
			table = guest_memory_ptr(m->ram, d.addr, d.len);
			if (!table)
				return -EINVAL;
			n = d.len / 16;
			i = 0;
			steps = 0;
			in_indirect = true;
			continue;
		}
		int err = virtq_add_buf(c, m, &d);
		if (err)
			return err;
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			return 0;
		if (d.next >= n)
			return -EINVAL;
		i = d.next;
	}
}

int virtq_pop(struct virtq *q, const struct virtq_mem *m, struct virtq_chain *c)
{
	if (q->broken)
		return -EPROTO;
	if (!q->ready || !q->desc)
		return 0;
	uint16_t avail_idx = virtq_load16(q->avail + 2);
	uint16_t pending = (uint16_t)(avail_idx - q->last_avail);

	if (!pending)
		return 0;
	/* More than a ring's worth: the index is garbage, and so is the ring. */
	if (pending > q->size) {
		q->broken = true;
		return -EPROTO;
	}
	uint16_t head = virtq_load16(q->avail + 4 + 2 * (q->last_avail % q->size));
	if (head >= q->size) {
		q->broken = true;
		return -EPROTO;
	}
	q->last_avail++;
	c->head = head;
	return virtq_walk(q, m, head, c) ? -EINVAL : 1;
}

/* Add the pages of [gpa, gpa + len) to out[0..*n), while room lasts. */
static void virtq_add_pages(uint64_t gpa, uint64_t len, uint64_t *out, unsigned *n, unsigned max)
{
	for (uint64_t pg = gpa & ~0xfffULL; len && pg < gpa + len && *n < max; pg += 0x1000)
		out[(*n)++] = pg;
}

unsigned virtq_first_pages(const struct virtq *q, uint64_t *out, unsigned max)
{
	unsigned n = 0;

	if (q->broken || !q->ready || !q->desc)
		return 0;
	virtq_add_pages(q->desc_gpa, virtq_desc_bytes(q->size), out, &n, max);
	virtq_add_pages(q->avail_gpa, virtq_avail_bytes(q->size), out, &n, max);
	virtq_add_pages(q->used_gpa, virtq_used_bytes(q->size), out, &n, max);
	/* The next chain on offer: its first buffer (a frame lands there, a request starts). */
	uint16_t avail_idx = virtq_load16(q->avail + 2);
	uint16_t pending = (uint16_t)(avail_idx - q->last_avail);
	if (!pending || pending > q->size)
		return n;
	uint16_t head = virtq_load16(q->avail + 4 + 2 * (q->last_avail % q->size));
	if (head >= q->size)
		return n;
	struct virtq_desc d = virtq_read_desc(q->desc, head);
	if (!(d.flags & VIRTQ_DESC_F_INDIRECT))
		virtq_add_pages(d.addr, d.len < 0x1000 ? d.len : 0x1000, out, &n, max);
	return n;
}

int virtq_push(struct virtq *q, const struct virtq_mem *m, uint16_t head, uint32_t len)
{
	/* Views exist only for a checked size; never trust that blindly here. */
	if (!q->used || !virtq_size_ok(q->size))
		return -EPROTO;
	unsigned slot = q->used_idx % q->size;
	uint8_t *e = q->used + 4 + 8 * slot;

	le_put(e, head, 4);
	le_put(e + 4, len, 4);
	q->used_idx++;
	/* The element must be visible before the index that publishes it. */
	virtq_store16(q->used + 2, q->used_idx);
	virtq_dirty(m, q->used_gpa + 4 + 8ULL * slot, 8);
	virtq_dirty(m, q->used_gpa + 2, 2);
	return 0;
}

bool virtq_should_notify(struct virtq *q)
{
	uint16_t old = q->signalled_used, now = q->used_idx;
	bool valid = q->signalled_valid;

	if (!q->avail || !virtq_size_ok(q->size))
		return false;
	/* Our used index store must be ordered before reading the driver's flags. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	q->signalled_used = now;
	q->signalled_valid = true;
	if (!q->event_idx)
		return !(virtq_load16(q->avail) & VIRTQ_AVAIL_F_NO_INTERRUPT);
	if (!valid)
		return true;
	uint16_t event = virtq_load16(q->avail + 4 + 2 * q->size);
	/* vring_need_event(): did used_idx cross used_event since the last signal? */
	return (uint16_t)(now - event - 1) < (uint16_t)(now - old);
}

/* used->flags = flags, unless it already is (the store dirties a page). */
static void virtq_used_flags(struct virtq *q, const struct virtq_mem *m, uint16_t flags)
{
	if (virtq_load16(q->used) == flags)
		return;
	virtq_store16(q->used, flags);
	virtq_dirty(m, q->used_gpa, 2);
}

void virtq_notify_off(struct virtq *q, const struct virtq_mem *m)
{
	if (q->event_idx || !q->ready || !q->used || q->broken || !virtq_size_ok(q->size))
		return;
	virtq_used_flags(q, m, VIRTQ_USED_F_NO_NOTIFY);
}

bool virtq_arm(struct virtq *q, const struct virtq_mem *m)
{
	if (!q->ready || !q->avail || !q->used || q->broken || !virtq_size_ok(q->size))
		return false;
	if (q->event_idx) {
		virtq_store16(q->used + 4 + 8 * q->size, q->last_avail);
		virtq_dirty(m, q->used_gpa + 4 + 8ULL * q->size, 2);
	} else {
		virtq_used_flags(q, m, 0);
	}
	/* Publish the request for a kick before looking at the index again. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return virtq_load16(q->avail + 2) != q->last_avail;
}

/* ---- migration --------------------------------------------------------- */

static int virtq_state_post_load(void *obj, char *why, size_t whylen)
{
	const struct virtq_state *s = obj;

	if (s->ready && !virtq_size_ok(s->size)) {
		snprintf(why, whylen, "ready queue of size %u (not a power of two up to %u)",
			 s->size, VIRTQ_MAX_SIZE);
		return -EINVAL;
	}
	/* At most a ring's worth of chains can be out: more is a lie. */
	if (s->ready && (uint16_t)(s->last_avail - s->used_idx) > s->size) {
		snprintf(why, whylen, "last_avail %u and used_idx %u are more than %u apart",
			 s->last_avail, s->used_idx, s->size);
		return -EINVAL;
	}
	return 0;
}

static const struct vmstate_field virtq_state_fields[] = {
	VMSTATE_U16_RANGE(struct virtq_state, size, 0, VIRTQ_MAX_SIZE),
	VMSTATE_U8_RANGE(struct virtq_state, ready, 0, 1),
	VMSTATE_U8_RANGE(struct virtq_state, broken, 0, 1),
	VMSTATE_U64(struct virtq_state, desc),
	VMSTATE_U64(struct virtq_state, avail),
	VMSTATE_U64(struct virtq_state, used),
	VMSTATE_U16(struct virtq_state, last_avail),
	VMSTATE_U16(struct virtq_state, used_idx),
	VMSTATE_U16(struct virtq_state, signalled_used),
	VMSTATE_U8_RANGE(struct virtq_state, signalled_valid, 0, 1),
	VMSTATE_END,
};

const struct vmstate_desc virtq_state_vmsd = {
	.name = "virtq",
	.version = 1,
	.size = sizeof(struct virtq_state),
	.fields = virtq_state_fields,
	.post_load = virtq_state_post_load,
};

void virtq_save(const struct virtq *q, struct virtq_state *s)
{
	memset(s, 0, sizeof(*s));	/* padding too: states are compared whole */
	s->size = q->size;
	s->ready = q->ready;
	s->broken = q->broken;
	s->desc = q->desc_gpa;
	s->avail = q->avail_gpa;
	s->used = q->used_gpa;
	s->last_avail = q->last_avail;
	s->used_idx = q->used_idx;
	s->signalled_used = q->signalled_used;
	s->signalled_valid = q->signalled_valid;
}

int virtq_state_check(const struct virtq_state *s, const struct guest_memory *ram,
		      char *why, size_t whylen)
{
	uint8_t *d, *a, *u;

	if (!s->ready)
		return 0;	/* addresses are only used once the driver says ready */
	return virtq_map(s->size, s->desc, s->avail, s->used, ram, &d, &a, &u, why, whylen);
}

int virtq_load(struct virtq *q, const struct virtq_state *s, const struct guest_memory *ram)
{
	bool event_idx = q->event_idx, indirect = q->indirect;

	virtq_reset(q);
	q->event_idx = event_idx;
	q->indirect = indirect;
	q->size = s->size;
	q->ready = s->ready;
	q->broken = s->broken;
	q->desc_gpa = s->desc;
	q->avail_gpa = s->avail;
	q->used_gpa = s->used;
	q->last_avail = s->last_avail;
	q->used_idx = s->used_idx;
	q->signalled_used = s->signalled_used;
	q->signalled_valid = s->signalled_valid;
	if (!q->ready)
		return 0;
	return virtq_setup(q, ram);
}
