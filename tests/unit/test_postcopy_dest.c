/*
 * The post-copy destination's fault thread (src/migration/postcopy_dest.c)
 * against a page the guest already holds.
 *
 * A fault can reach the fault thread for a page that is `known` already:
 * the uffd message of a vCPU that faulted on a page is read only after the
 * receiving thread placed that page and woke the vCPU (which then wrote
 * it), or the guest's view of the page was unmapped and the guest touches
 * it again.  The fault thread must then map what the memfd holds; it must
 * never fill the page again.  A zero page (placed by UFFDIO_ZEROPAGE, or
 * known to be zero since pre-copy) has no `written` bit, and the fault
 * thread used to "place" it once more as zeros, through the alias, wiping
 * what the guest had written since: the verify workload saw
 * "CORRUPT ... want <pfn> got 0x0" at the destination.
 *
 * Here the late fault is made deterministic: the page is unmapped from the
 * guest's view (MADV_DONTNEED keeps it in the memfd), so the next touch is
 * a real minor fault for a known page, handled by the real fault thread.
 * No KVM needed; skips where userfaultfd is not allowed.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "migration/channel/channel.h"
#include "migration/dest/postcopy_dest.h"
#include "vmm/memory.h"

#define T_MEM (16ULL << 20)
#define T_PAGES (T_MEM / GUEST_PAGE_SIZE)
#define T_PLACED 100	/* a zero page the source sends in post-copy */
#define T_HOLE 200	/* a page known to be zero since pre-copy (a hole) */
#define T_MAGIC 0x5eedf00dULL

struct t_env {
	struct machine m;
	struct mig_stream s;
	int peer;
	unsigned long *known, *written;
	struct pc_dest pc;
};

struct t_touch {
	volatile uint64_t *p;
	uint64_t write;		/* 0: read */
	uint64_t got;
	volatile int done;
};

static void *t_touch_thread(void *arg)
{
	struct t_touch *t = arg;

	if (t->write)
		*t->p = t->write;
	t->got = *t->p;
	t->done = 1;
	return NULL;
}

/*
 * Touch a word of guest RAM as a vCPU would, from another thread (a fault
 * blocks it until the fault thread resolves it); at most 5 s.
 */
static uint64_t t_touch(uint8_t *addr, uint64_t write)
{
	struct t_touch t = { .p = (volatile uint64_t *)addr, .write = write };
	pthread_t th;

	assert_int_equal(pthread_create(&th, NULL, t_touch_thread, &t), 0);
	for (int i = 0; i < 5000 && !t.done; i++)
		usleep(1000);
	if (!t.done)
		fail_msg("a touch of guest RAM still blocks after 5 s");
	pthread_join(th, NULL);
	return t.got;
}

static int t_setup(void **state)
{
	struct t_env *e = calloc(1, sizeof(*e));
	int sv[2];

	assert_non_null(e);
	assert_int_equal(guest_memory_create(&e->m.vm.mem, T_MEM), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	struct mig_channel *ch;
	assert_int_equal(mig_channel_socket(sv[0], &ch), 0);
	assert_int_equal(mig_stream_init(&e->s, ch, 1 << 16), 0);
	e->peer = sv[1];
	e->known = calloc(T_PAGES / 64 + 1, sizeof(unsigned long));
	e->written = calloc(T_PAGES / 64 + 1, sizeof(unsigned long));
	assert_non_null(e->known);
	assert_non_null(e->written);
	/* Pre-copy said T_HOLE is zero: known, never written (a hole). */
	e->known[T_HOLE / 64] |= 1UL << (T_HOLE % 64);
	*state = e;
	return 0;
}

static int t_teardown(void **state)
{
	struct t_env *e = *state;

	pc_dest_stop(&e->pc);
	mig_stream_destroy(&e->s);
	close(e->peer);
	guest_memory_destroy(&e->m.vm.mem);
	free(e->known);
	free(e->written);
	free(e);
	return 0;
}

/* Start post-copy; skip where this process may not use userfaultfd. */
static void t_start(struct t_env *e)
{
	int err = pc_dest_start(&e->pc, &e->m, &e->s, e->known, e->written, NULL);

	if (err == -EPERM || err == -ENOSYS) {
		print_message("userfaultfd not allowed here (%s)\n", strerror(-err));
		skip();
	}
	assert_int_equal(err, 0);
}

/* The guest writes page `index`, loses its mapping, reads it again. */
static void t_write_unmap_read(struct t_env *e, uint64_t index)
{
	uint8_t *page = e->m.vm.mem.host + index * GUEST_PAGE_SIZE;

	assert_int_equal(t_touch(page, T_MAGIC + index), T_MAGIC + index);
	/* Shared memory: the page stays in the memfd, only the mapping goes. */
	assert_int_equal(madvise(page, GUEST_PAGE_SIZE, MADV_DONTNEED), 0);
	assert_int_equal(t_touch(page, 0), T_MAGIC + index);
	/* ... and once more, now that it is mapped again. */
	assert_int_equal(madvise(page, GUEST_PAGE_SIZE, MADV_DONTNEED), 0);
	assert_int_equal(t_touch(page, 0), T_MAGIC + index);
}

/* A zero page placed in post-copy (UFFDIO_ZEROPAGE), then written by the guest. */
static void test_placed_zero_page_keeps_guest_writes(void **state)
{
	struct t_env *e = *state;

	t_start(e);
	print_message("userfaultfd %s faults\n", e->pc.minor ? "minor and missing" : "missing");
	assert_int_equal(pc_dest_place_run(&e->pc, T_PLACED, 1, NULL), 0);
	t_write_unmap_read(e, T_PLACED);
	assert_int_equal(e->pc.requests, 0);	/* known: never asked for */
}

/* A page known to be zero since pre-copy, mapped on the guest's first touch. */
static void test_known_zero_page_keeps_guest_writes(void **state)
{
	struct t_env *e = *state;

	t_start(e);
	t_write_unmap_read(e, T_HOLE);
	assert_int_equal(e->pc.requests, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_placed_zero_page_keeps_guest_writes, t_setup,
						t_teardown),
		cmocka_unit_test_setup_teardown(test_known_zero_page_keeps_guest_writes, t_setup,
						t_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
