/*
 * The save file (src/migration/savefile/, docs/save-format.md) without
 * KVM: guest RAM is a memfd of its own here.  A file written from RAM
 * with data pages, zero pages and holes reads back page for page, stays
 * sparse, and fills RAM on first touch through userfaultfd (lazy); every
 * kind of damage (truncated, appended to, a bit flipped in the header,
 * the metadata, the table or a RAM page, another version, offsets that
 * do not fit, metadata that runs past itself) is refused with its reason.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include <xxhash.h>

#include <linux/kvm.h>

#include "migration/savefile/savefile.h"
#include "util/le.h"
#include "vmm/memory.h"

#define T_MEM (16ULL << 20)
#define T_PAGES (T_MEM / GUEST_PAGE_SIZE)
#define T_BAD_BLOCK 5

/* Page i: data for i % 3 == 0, written zeros for i % 3 == 1, a hole otherwise; block 7 all holes. */
static bool t_has_data(uint64_t i)
{
	return i % 3 == 0 && i / SAVEFILE_BLOCK_PAGES != 7;
}

static void t_fill(struct guest_memory *mem)
{
	for (uint64_t i = 0; i < T_PAGES; i++) {
		if (i / SAVEFILE_BLOCK_PAGES == 7 || i % 3 == 2)
			continue;
		uint64_t *p = guest_memory_page_alias(mem, i);
		memset(p, 0, GUEST_PAGE_SIZE);
		if (t_has_data(i)) {
			p[0] = i + 1;
			p[GUEST_PAGE_SIZE / 8 - 1] = ~i;
		}
	}
}

static void t_check_page(const uint8_t *page, uint64_t i)
{
	const uint64_t *p = (const uint64_t *)(const void *)page;

	if (t_has_data(i)) {
		assert_int_equal(p[0], i + 1);
		assert_int_equal(p[GUEST_PAGE_SIZE / 8 - 1], ~i);
	} else {
		for (unsigned w = 0; w < GUEST_PAGE_SIZE / 8; w++)
			assert_int_equal(p[w], 0);
	}
}

struct t_env {
	char dir[64], path[96], bad[96];
	struct guest_memory mem;
	struct savefile_stats st;
};

static void t_meta(uint8_t **meta, size_t *len)
{
	struct mig_config cfg = { .memory = T_MEM, .vcpus = 2, .page_size = 4096, .cmdline_len = 3 };
	const char *disks[] = { "path=/nonexistent/disk.img,readonly=on" };
	const char *nics[] = { "tap=tap0" };
	static const uint8_t state[] = "not a real state";

	memcpy(cfg.cmdline, "a=b", 3);
	assert_int_equal(savefile_meta_encode(&cfg, "probe.elf", disks, NULL, 1, nics, 1, state,
					      sizeof(state), meta, len), 0);
}

static int t_setup(void **state)
{
	struct t_env *e = calloc(1, sizeof(*e));
	uint8_t *meta;
	size_t len;
	int fd;

	snprintf(e->dir, sizeof(e->dir), "/tmp/ferry-savefile-XXXXXX");
	assert_non_null(mkdtemp(e->dir));
	snprintf(e->path, sizeof(e->path), "%s/vm.sav", e->dir);
	snprintf(e->bad, sizeof(e->bad), "%s/bad.sav", e->dir);
	assert_int_equal(guest_memory_create(&e->mem, T_MEM), 0);
	t_fill(&e->mem);
	t_meta(&meta, &len);
	fd = open(e->path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(savefile_write(&e->mem, fd, meta, len, &e->st), 0);
	close(fd);
	free(meta);
	*state = e;
	return 0;
}

static int t_teardown(void **state)
{
	struct t_env *e = *state;

	unlink(e->path);
	unlink(e->bad);
	rmdir(e->dir);
	guest_memory_destroy(&e->mem);
	free(e);
	return 0;
}

static void test_roundtrip(void **state)
{
	struct t_env *e = *state;
	struct guest_memory mem;
	struct savefile_stats st;
	struct savefile sf;
	struct stat sb;
	char why[256] = "";
	uint64_t data = 0;

	for (uint64_t i = 0; i < T_PAGES; i++)
		data += t_has_data(i);
	assert_int_equal(e->st.data_pages, data);
	assert_int_equal(e->st.zero_pages, T_PAGES - data);
	/* Holes stay holes: the file holds little more than its data pages. */
	assert_int_equal(stat(e->path, &sb), 0);
	assert_int_equal((uint64_t)sb.st_size, e->st.file_bytes);
	assert_true((uint64_t)sb.st_blocks * 512 <= data * GUEST_PAGE_SIZE + (1ULL << 20));

	assert_int_equal(savefile_open(&sf, e->path, why, sizeof(why)), 0);
	assert_int_equal(sf.meta.cfg.vcpus, 2);
	assert_string_equal(sf.meta.kernel, "probe.elf");
	assert_int_equal(sf.meta.nr_disks, 1);
	assert_string_equal(sf.meta.disks[0], "path=/nonexistent/disk.img,readonly=on");
	assert_string_equal(sf.meta.nics[0], "tap=tap0");
	assert_int_equal(sf.meta.state_len, sizeof("not a real state"));
	assert_int_equal(guest_memory_create(&mem, T_MEM), 0);
	assert_int_equal(savefile_load_ram(&sf, &mem, &st, why, sizeof(why)), 0);
	assert_int_equal(st.data_pages, data);
	/* The all-hole block was never allocated on the restore side either. */
	assert_true(guest_memory_is_hole(&mem, 7 * SAVEFILE_BLOCK_PAGES, SAVEFILE_BLOCK_PAGES));
	/* And so did a zero page next to data (page 1: zeros written at the save). */
	assert_true(guest_memory_is_hole(&mem, 1, 1));
	assert_false(guest_memory_is_hole(&mem, 3, 1));
	for (uint64_t i = 0; i < T_PAGES; i++)
		t_check_page(guest_memory_page_alias(&mem, i), i);
	guest_memory_destroy(&mem);
	savefile_close(&sf);
}

/*
 * Leave the stack below this frame holding v every fourth word (from
 * `phase`), zeros between: what a caller's locals may leave behind.
 */
static __attribute__((noinline)) void t_dirty_stack(uint64_t v, unsigned phase)
{
	volatile uint64_t junk[4096];

	for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++)
		junk[i] = (i + phase) % 4 ? 0 : v;
}

/*
 * A block's checksum does not depend on what the stack held before: an
 * XXH3 state on the stack whose stale seed matched the block's number
 * kept a stale secret, and a good block read as damaged (found by
 * fuzz_savefile's lazy mode: a lazy restore lost a VM whose file was good).
 */
static void test_block_sum_stale_stack(void **state)
{
	struct t_env *e = *state;
	struct savefile_block blk;
	struct savefile sf;
	char why[256] = "";
	uint8_t *buf = aligned_alloc(GUEST_PAGE_SIZE, SAVEFILE_BLOCK_PAGES * GUEST_PAGE_SIZE);
	unsigned read = 0;

	assert_non_null(buf);
	assert_int_equal(savefile_open(&sf, e->path, why, sizeof(why)), 0);
	for (uint64_t b = 0; b < sf.h.blocks; b++) {
		assert_int_equal(savefile_block_decode(&sf.h, sf.table, b, &blk), 0);
		if (!blk.data)
			continue;
		for (unsigned phase = 0; phase < 4; phase++) {
			t_dirty_stack(b, phase);
			if (savefile_read_block(&sf, b, &blk, buf, why, sizeof(why)))
				fail_msg("block %llu, stack phase %u: %s", (unsigned long long)b, phase,
					 why);
			read++;
		}
	}
	assert_true(read > 0);
	savefile_close(&sf);
	free(buf);
}

/* ---- damaged files ----------------------------------------------------- */

static void t_copy(struct t_env *e, uint64_t size)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd), "cp --sparse=always %s %s && truncate -s %llu %s", e->path,
		 e->bad, (unsigned long long)size, e->bad);
	assert_int_equal(system(cmd), 0);
}

static uint64_t t_size(const char *path)
{
	struct stat sb;

	assert_int_equal(stat(path, &sb), 0);
	return (uint64_t)sb.st_size;
}

static void t_poke(const char *path, uint64_t off, const void *p, size_t n)
{
	int fd = open(path, O_WRONLY);

	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, p, n, (off_t)off), (ssize_t)n);
	close(fd);
}

static void t_flip(const char *path, uint64_t off)
{
	int fd = open(path, O_RDWR);
	uint8_t b;

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &b, 1, (off_t)off), 1);
	b ^= 0x10;
	assert_int_equal(pwrite(fd, &b, 1, (off_t)off), 1);
	close(fd);
}

/* Open (and load) the damaged copy: it must fail with err and a reason naming `want`. */
static void t_refused(struct t_env *e, int want_err, const char *want)
{
	struct guest_memory mem;
	struct savefile_stats st;
	struct savefile sf;
	char why[256] = "";
	int err = savefile_open(&sf, e->bad, why, sizeof(why));

	if (!err) {
		assert_int_equal(guest_memory_create(&mem, T_MEM), 0);
		err = savefile_load_ram(&sf, &mem, &st, why, sizeof(why));
		guest_memory_destroy(&mem);
		savefile_close(&sf);
	}
	print_message("refused (%d): %s\n", err, why);
	assert_int_equal(err, want_err);
	assert_non_null(strstr(why, want));
}

static void t_header(struct t_env *e, struct savefile_header *h)
{
	uint8_t page[SAVEFILE_HEADER_SIZE];
	char why[256];
	int fd = open(e->path, O_RDONLY);

	assert_int_equal(pread(fd, page, sizeof(page), 0), (ssize_t)sizeof(page));
	close(fd);
	assert_int_equal(savefile_header_decode(page, t_size(e->path), h, why, sizeof(why)), 0);
}

/* Where page k of block b (a data page) lies in the file: packed, it moved up in its segment. */
static uint64_t t_data_off(const char *path, uint64_t b, unsigned k)
{
	struct savefile sf;
	char why[256];
	uint64_t off;

	assert_int_equal(savefile_open(&sf, path, why, sizeof(why)), 0);
	assert_true(sf.h.flags & SAVEFILE_F_PACKED);
	assert_true(le_get(sf.table + b * SAVEFILE_ENTRY_SIZE, 8) >> k & 1);
	off = savefile_page_off(&sf.h, sf.table, b, k);
	savefile_close(&sf);
	return off;
}

static void t_rewrite_header(struct t_env *e, const struct savefile_header *h)
{
	uint8_t page[SAVEFILE_HEADER_SIZE];

	savefile_header_encode(h, page);
	t_poke(e->bad, 0, page, sizeof(page));
}

static void test_damaged(void **state)
{
	struct t_env *e = *state;
	uint64_t size = t_size(e->path);
	struct savefile_header h, h2;
	uint32_t vnext = SAVEFILE_VERSION + 1;

	t_header(e, &h);
	t_copy(e, size - GUEST_PAGE_SIZE);
	t_refused(e, -EPROTO, "truncated");
	t_copy(e, 100);
	t_refused(e, -EPROTO, "truncated");
	t_copy(e, size + 1);
	t_refused(e, -EPROTO, "appended");
	t_copy(e, size);
	t_poke(e->bad, 0, "FERRYMIG", 8);
	t_refused(e, -EPROTO, "not a ferry save file");
	t_copy(e, size);
	t_poke(e->bad, 8, &vnext, 4);
	t_refused(e, -EPROTONOSUPPORT, "version 4");
	t_copy(e, size);
	t_flip(e->bad, 41);		/* inside the metadata offset */
	t_refused(e, -EPROTO, "header fails its checksum");
	t_copy(e, size);
	t_flip(e->bad, h.meta_off + 3);
	t_refused(e, -EPROTO, "metadata fails its checksum");
	t_copy(e, size);
	t_flip(e->bad, h.table_off + 20);
	t_refused(e, -EPROTO, "block table fails its checksum");
	/* A data page of block 5: the file opens, the load finds it. */
	t_copy(e, size);
	t_flip(e->bad, t_data_off(e->path, T_BAD_BLOCK, 1) + 9);
	t_refused(e, -EPROTO, "RAM block 5");
	/* A header with a valid checksum whose offsets point elsewhere. */
	h2 = h;
	h2.ram_off += GUEST_PAGE_SIZE;
	t_copy(e, size);
	t_rewrite_header(e, &h2);
	t_refused(e, -EPROTO, "do not fit together");
	h2 = h;
	h2.memory = 1ULL << 50;
	t_copy(e, size);
	t_rewrite_header(e, &h2);
	t_refused(e, -EPROTO, "bytes of RAM");
	h2 = h;
	h2.flags = 4;
	t_copy(e, size);
	t_rewrite_header(e, &h2);
	t_refused(e, -EPROTO, "flags");
	/* Packing is version 3's: a version 2 header that claims it is refused. */
	h2 = h;
	h2.version = 2;
	assert_true(h2.flags & SAVEFILE_F_PACKED);
	t_copy(e, size);
	t_rewrite_header(e, &h2);
	t_refused(e, -EPROTO, "unknown header flags 0x1");
	/* Unpacked, the same file reads its data pages from the wrong places: damaged. */
	h2 = h;
	h2.flags = 0;
	t_copy(e, size);
	t_rewrite_header(e, &h2);
	t_refused(e, -EPROTO, "fails its checksum");
}

/*
 * More hostile files, each refused with its reason: empty, a directory,
 * versions 0 and 2^32-1, every offset and length of a header (checksum
 * fixed) pointing past RAM or past the file, metadata over its limit, a
 * block table (checksum fixed) that claims data where the file holds
 * none, a file cut at every 3 MiB, and a bit flipped in each 8-byte word of
 * the header.
 */
static void test_hostile_more(void **state)
{
	struct t_env *e = *state;
	uint64_t size = t_size(e->path);
	struct savefile_header h, h2;
	struct savefile sf;
	char why[256];
	uint32_t v;

	t_header(e, &h);
	t_copy(e, 0);
	t_refused(e, -EPROTO, "shorter than its header");
	assert_int_equal(savefile_open(&sf, e->dir, why, sizeof(why)), -EISDIR);
	assert_non_null(strstr(why, "not a regular file"));
	for (unsigned i = 0; i < 2; i++) {
		v = i ? 0xffffffffu : 0;
		t_copy(e, size);
		t_poke(e->bad, 8, &v, 4);
		t_refused(e, -EPROTONOSUPPORT, i ? "version 4294967295" : "version 0");
	}
	/* Offsets past RAM and past the file, each with a header checksum that matches. */
	uint64_t *fields[] = { &h2.meta_off, &h2.table_off, &h2.table_len, &h2.ram_off,
			       &h2.file_size };
	for (unsigned f = 0; f < sizeof(fields) / sizeof(fields[0]); f++) {
		for (unsigned k = 0; k < 3; k++) {
			h2 = h;
			*fields[f] = k == 0 ? *fields[f] + GUEST_PAGE_SIZE :
				     k == 1 ? h.ram_off + T_MEM + GUEST_PAGE_SIZE :
				     UINT64_MAX - 4095;
			t_copy(e, size);
			t_rewrite_header(e, &h2);
			t_refused(e, -EPROTO, "do not fit together");
		}
	}
	h2 = h;
	h2.meta_len = SAVEFILE_META_MAX + 1;
	t_copy(e, size);
	t_rewrite_header(e, &h2);
	t_refused(e, -EPROTO, "metadata is");
	h2 = h;
	h2.meta_len = 0;
	t_copy(e, size);
	t_rewrite_header(e, &h2);
	t_refused(e, -EPROTO, "metadata is");
	/* Memory that the file's size would match, but a layout of another size. */
	h2 = h;
	h2.memory = T_MEM * 2;
	t_copy(e, size);
	t_rewrite_header(e, &h2);
	t_refused(e, -EPROTO, "do not fit together");
	/* The table claims data in block 7, all holes: its checksum is of the empty input. */
	uint8_t *table = malloc(h.table_len);
	int fd = open(e->path, O_RDONLY);
	assert_int_equal(pread(fd, table, h.table_len, (off_t)h.table_off), (ssize_t)h.table_len);
	close(fd);
	struct savefile_block blk;
	assert_int_equal(savefile_block_decode(&h, table, 7, &blk), 0);
	assert_int_equal(blk.data, 0);
	blk.data = 1;
	savefile_block_encode(table, 7, &blk);
	h2 = h;
	h2.table_hash = savefile_table_hash(table, h.table_len);
	t_copy(e, size);
	t_poke(e->bad, h.table_off, table, h.table_len);
	t_rewrite_header(e, &h2);
	t_refused(e, -EPROTO, "RAM block 7");
	free(table);
	/* Cut anywhere: never opened. */
	for (uint64_t cut = 1ULL << 20; cut < size; cut += 3ULL << 20) {
		t_copy(e, cut);
		t_refused(e, -EPROTO, "truncated");
	}
	/* A bit flipped in any word of the header: its checksum catches it. */
	for (uint64_t off = 16; off < 112; off += 8) {
		t_copy(e, size);
		t_flip(e->bad, off);
		t_refused(e, -EPROTO, "header fails its checksum");
	}
	t_copy(e, size);
	t_flip(e->bad, SAVEFILE_HEADER_SIZE - 3);	/* the checksum itself */
	t_refused(e, -EPROTO, "header fails its checksum");
}

/* Metadata that passes its checksum but lies about its own lengths. */
static void test_bad_meta(void **state)
{
	struct t_env *e = *state;
	uint64_t size = t_size(e->path);
	struct savefile_header h;
	uint8_t *meta = malloc(SAVEFILE_META_MAX);
	uint8_t four[4];
	int fd;

	t_header(e, &h);
	fd = open(e->path, O_RDONLY);
	assert_int_equal(pread(fd, meta, h.meta_len, (off_t)h.meta_off), (ssize_t)h.meta_len);
	close(fd);
	/* The state's length, the last field before the state itself, made huge. */
	uint64_t at = h.meta_len - sizeof("not a real state") - 4;
	le_put(four, 0xfffffff0, 4);
	memcpy(meta + at, four, 4);
	h.meta_hash = XXH3_64bits(meta, h.meta_len);
	t_copy(e, size);
	t_poke(e->bad, h.meta_off, meta, h.meta_len);
	t_rewrite_header(e, &h);
	t_refused(e, -EPROTO, "does not end where the metadata does");
	/* The configuration record's length past the end. */
	le_put(four, (uint32_t)h.meta_len, 4);
	memcpy(meta, four, 4);
	h.meta_hash = XXH3_64bits(meta, h.meta_len);
	t_copy(e, size);
	t_poke(e->bad, h.meta_off, meta, h.meta_len);
	t_rewrite_header(e, &h);
	t_refused(e, -EPROTO, "inside the configuration");
	free(meta);
}

/* ---- lazy restore ------------------------------------------------------ */

static void t_lazy_done(void *opaque, int err)
{
	int *p = opaque;

	__atomic_store_n(p, err ? err : 1, __ATOMIC_RELEASE);
}

/* A machine with RAM and a stop eventfd only: all a lazy restore uses of it. */
static struct machine *t_machine(void)
{
	struct machine *m = calloc(1, sizeof(*m));

	assert_non_null(m);
	assert_int_equal(guest_memory_create(&m->vm.mem, T_MEM), 0);
	m->vm.stop_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	assert_true(m->vm.stop_efd >= 0);
	return m;
}

static void t_free_machine(struct machine *m)
{
	guest_memory_destroy(&m->vm.mem);
	close(m->vm.stop_efd);
	free(m);
}

static bool t_uffd_allowed(void)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);

	if (fd < 0)
		return false;
	close(fd);
	return true;
}

static void t_wait_done(int *done)
{
	for (int i = 0; i < 1000 && !__atomic_load_n(done, __ATOMIC_ACQUIRE); i++)
		usleep(10000);
}

static void test_lazy(void **state)
{
	struct t_env *e = *state;
	struct savefile_lazy lz = { .done = t_lazy_done };
	struct machine *m;
	struct savefile sf;
	char why[256] = "";
	int done = 0;

	if (!t_uffd_allowed()) {
		print_message("userfaultfd not allowed here\n");
		skip();
	}
	m = t_machine();
	lz.opaque = &done;
	assert_int_equal(savefile_open(&sf, e->path, why, sizeof(why)), 0);
	assert_int_equal(savefile_lazy_start(&lz, &sf, m, why, sizeof(why)), 0);
	/* The guest's view, from the last page down: faults ahead of the prefetcher. */
	for (uint64_t i = T_PAGES; i-- > 0;)
		t_check_page(guest_memory_page_ptr(&m->vm.mem, i), i);
	t_wait_done(&done);
	assert_int_equal(done, 1);
	assert_int_equal(lz.err, 0);
	assert_true(lz.faults > 0);
	assert_true(lz.fault_loads > 0);
	/* Unregistered now: a page never touched reads as zero by itself. */
	savefile_lazy_stop(&lz);
	savefile_close(&sf);
	t_free_machine(m);
}

static void test_lazy_damaged(void **state)
{
	struct t_env *e = *state;
	struct savefile_lazy lz = { .done = t_lazy_done };
	struct savefile_header h;
	struct machine *m;
	struct savefile sf;
	char why[256] = "";
	int done = 0;

	if (!t_uffd_allowed())
		skip();
	t_header(e, &h);
	t_copy(e, t_size(e->path));
	t_flip(e->bad, t_data_off(e->path, T_BAD_BLOCK, 1));
	m = t_machine();
	lz.opaque = &done;
	assert_int_equal(savefile_open(&sf, e->bad, why, sizeof(why)), 0);
	assert_int_equal(savefile_lazy_start(&lz, &sf, m, why, sizeof(why)), 0);
	/* The touch returns (the range is let go), the VM is stopped as lost. */
	(void)*(volatile uint8_t *)guest_memory_page_ptr(&m->vm.mem,
							 T_BAD_BLOCK * SAVEFILE_BLOCK_PAGES + 1);
	t_wait_done(&done);
	assert_int_equal(done, -EPROTO);
	assert_int_equal(lz.err, -EPROTO);
	assert_non_null(strstr(lz.why, "RAM block 5"));
	assert_int_equal(m->vm.stop_reason, VM_STOP_LOST);
	savefile_lazy_stop(&lz);
	savefile_close(&sf);
	t_free_machine(m);
}

/* ---- live snapshot: copy-on-write ---------------------------------------- */

struct t_mutator {
	struct guest_memory *mem;
	pthread_t thread;
	volatile int stop;
	uint64_t writes;
	int first_done;		/* the first write went through (atomic) */
};

/* The "guest": writes into every page, holes too, from the top (ahead of the writer). */
static void *t_mutate(void *opaque)
{
	struct t_mutator *mu = opaque;

	/* First a block that is all holes: a write there must wait for its copy too. */
	((volatile uint64_t *)guest_memory_page_ptr(mu->mem, 7 * SAVEFILE_BLOCK_PAGES + 5))[1] = 1;
	__atomic_store_n(&mu->first_done, 1, __ATOMIC_RELEASE);
	for (int pass = 0; pass < 1000 && !mu->stop; pass++)
		for (uint64_t i = T_PAGES; i-- > 0 && !mu->stop;) {
			((volatile uint64_t *)guest_memory_page_ptr(mu->mem, i))[1] = 0xdead0000 + i;
			__atomic_add_fetch(&mu->writes, 1, __ATOMIC_RELAXED);
		}
	return NULL;
}

static int t_resume(void *opaque)
{
	struct t_mutator *mu = opaque;

	if (pthread_create(&mu->thread, NULL, t_mutate, mu))
		return -EAGAIN;
	/*
	 * The writer has not started: block 7 is still protected, so the
	 * first write faults and the fault thread copies that block.  Wait
	 * for it (at most 10 s), so a busy host cannot let the writer run
	 * ahead of a mutator not yet scheduled, and a fault is certain.
	 */
	for (int i = 0; i < 10000 && !__atomic_load_n(&mu->first_done, __ATOMIC_ACQUIRE); i++)
		nanosleep(&(struct timespec){ .tv_nsec = 1000000 }, NULL);
	return 0;
}

static void test_snapshot_cow(void **state)
{
	struct t_env *e = *state;
	struct t_mutator mu = { .mem = &e->mem };
	struct guest_memory mem;
	struct savefile_stats st = { 0 }, lst;
	struct savefile sf;
	char why[256] = "";
	uint8_t *meta;
	size_t len;
	int fd, err;

	if (!t_uffd_allowed())
		skip();
	t_meta(&meta, &len);
	fd = open(e->bad, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	err = savefile_cow_write(&e->mem, fd, meta, len, t_resume, &mu, &st, why, sizeof(why));
	close(fd);
	free(meta);
	if (err == -ENOTSUP) {
		print_message("%s\n", why);
		skip();
	}
	assert_int_equal(err, 0);
	uint64_t during = __atomic_load_n(&mu.writes, __ATOMIC_RELAXED);
	mu.stop = 1;
	pthread_join(mu.thread, NULL);
	print_message("snapshot: %llu guest writes while it ran, %llu write faults, %llu blocks "
		      "copied ahead of the writer\n", (unsigned long long)during,
		      (unsigned long long)st.wp_faults, (unsigned long long)st.fault_copies);
	/* The guest ran during the snapshot, hit protected blocks, and got through. */
	assert_true(during > 0);
	assert_true(st.wp_faults > 0);
	assert_int_equal(((uint64_t *)guest_memory_page_ptr(&e->mem, T_PAGES - 1))[1],
			 0xdead0000 + T_PAGES - 1);
	/* Its first write, or a later pass's if the mutator got that far: not lost. */
	uint64_t hole_word = ((uint64_t *)guest_memory_page_ptr(&e->mem, 7 * SAVEFILE_BLOCK_PAGES + 5))[1];
	assert_true(hole_word == 1 || hole_word == 0xdead0000 + 7 * SAVEFILE_BLOCK_PAGES + 5);
	/* The file holds RAM as it was before the first of those writes. */
	assert_int_equal(savefile_open(&sf, e->bad, why, sizeof(why)), 0);
	assert_int_equal(guest_memory_create(&mem, T_MEM), 0);
	assert_int_equal(savefile_load_ram(&sf, &mem, &lst, why, sizeof(why)), 0);
	for (uint64_t i = 0; i < T_PAGES; i++)
		t_check_page(guest_memory_page_alias(&mem, i), i);
	guest_memory_destroy(&mem);
	savefile_close(&sf);
}

/* A disk or NIC recorded as an option comes back as the same option. */
static void test_specs(void **state)
{
	struct block_config c, back;
	struct net_config n;
	char buf[SAVEFILE_SPEC_MAX], why[256];

	assert_int_equal(block_config_parse("path=/img/a.raw,readonly=on,cache=none,serial=S1",
					    &c, why, sizeof(why)), 0);
	assert_int_equal(savefile_disk_spec(&c, buf, sizeof(buf), why, sizeof(why)), 0);
	assert_int_equal(block_config_parse(buf, &back, why, sizeof(why)), 0);
	assert_string_equal(back.path, "/img/a.raw");
	assert_true(back.readonly);
	assert_int_equal(back.cache, BLOCK_CACHE_NONE);
	assert_string_equal(back.serial, "S1");
	memset(&n, 0, sizeof(n));
	n.kind = NET_BACKEND_FD;
	assert_int_equal(savefile_nic_spec(&n, buf, sizeof(buf), why, sizeof(why)), -EINVAL);
	n.kind = NET_BACKEND_TAP;
	snprintf(n.ifname, sizeof(n.ifname), "tap7");
	assert_int_equal(savefile_nic_spec(&n, buf, sizeof(buf), why, sizeof(why)), 0);
	assert_string_equal(buf, "tap=tap7");
}

/* ---- the saved CPU ------------------------------------------------------ */

static struct kvm_cpuid2 *t_cpuid(uint32_t leaf7_ebx)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + 2 * sizeof(c->entries[0]));

	assert_non_null(c);
	c->nent = 2;
	c->entries[0] = (struct kvm_cpuid_entry2){ .function = 1, .ecx = 1u << 0 };
	c->entries[1] = (struct kvm_cpuid_entry2){ .function = 7, .flags = 1, .ebx = leaf7_ebx };
	return c;
}

/* The file carries the guest's CPUID; a host without one of its features is refused. */
static void test_cpu(void **state)
{
	struct t_env *e = *state;
	struct kvm_cpuid2 *guest = t_cpuid(1u << 5 | 1u << 16), *host = t_cpuid(1u << 5);
	struct mig_config *cfg = calloc(1, sizeof(*cfg));
	struct savefile sf;
	char why[512];
	uint8_t *meta;
	size_t len;

	/* A file without CPUID (an older ferry's): nothing to check. */
	assert_int_equal(savefile_open(&sf, e->path, why, sizeof(why)), 0);
	assert_int_equal(sf.meta.cfg.cpuid_nent, 0);
	assert_int_equal(savefile_check_cpu(&sf, host, why, sizeof(why)), 0);
	savefile_close(&sf);

	*cfg = (struct mig_config){ .memory = T_MEM, .vcpus = 1, .page_size = 4096 };
	mig_config_set_cpuid(cfg, guest);
	assert_int_equal(savefile_meta_encode(cfg, "k", NULL, NULL, 0, NULL, 0, (const uint8_t *)"s", 1,
					      &meta, &len), 0);
	int fd = open(e->bad, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(savefile_write(&e->mem, fd, meta, len, &e->st), 0);
	close(fd);
	free(meta);
	assert_int_equal(savefile_open(&sf, e->bad, why, sizeof(why)), 0);
	assert_int_equal(sf.meta.cfg.cpuid_nent, 2);
	assert_int_equal(sf.meta.cfg.cpuid[1].ebx, 1u << 5 | 1u << 16);
	assert_int_equal(savefile_check_cpu(&sf, guest, why, sizeof(why)), 0);
	assert_int_equal(savefile_check_cpu(&sf, host, why, sizeof(why)), -EOPNOTSUPP);
	print_message("refused: %s\n", why);
	assert_non_null(strstr(why, "the saved guest cannot run on this host"));
	assert_non_null(strstr(why, "avx512f"));
	savefile_close(&sf);
	free(cfg);
	free(guest);
	free(host);
}

/* ---- disks ------------------------------------------------------------ */

#define T_DISK_SIZE ((3ULL << 20) + 512)	/* not a whole number of pages */
#define T_DISK_PAGES ((T_DISK_SIZE + 4095) / 4096)

/* Disk page i: data when i % 5 == 0 and the last (partial) page, zeros written when i % 5 == 1, else holes. */
static bool t_disk_data(uint64_t i)
{
	return i % 5 == 0 || i == T_DISK_PAGES - 1;
}

static void t_disk_make(const char *path)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	uint8_t page[4096];

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)T_DISK_SIZE), 0);
	for (uint64_t i = 0; i < T_DISK_PAGES; i++) {
		uint64_t len = T_DISK_SIZE - i * 4096 < 4096 ? T_DISK_SIZE - i * 4096 : 4096;
		if (!t_disk_data(i) && i % 5 != 1)
			continue;
		memset(page, t_disk_data(i) ? (int)(i % 251) + 1 : 0, sizeof(page));
		assert_int_equal(pwrite(fd, page, len, (off_t)(i * 4096)), (ssize_t)len);
	}
	close(fd);
}

/* Are the images at a and b the same bytes? */
static bool t_same(const char *a, const char *b)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd), "cmp -s %s %s", a, b);
	return system(cmd) == 0;
}

struct t_disk_ctx {
	const char *spec;
	struct savefile_disk_rec *force;	/* written instead of the records given */
};

static int t_disk_meta(void *opaque, const struct savefile_disk_rec *recs, uint8_t **meta,
		       size_t *len, char *why, size_t whylen)
{
	struct t_disk_ctx *c = opaque;
	const char *disks[] = { c->spec };
	struct mig_config cfg = { .memory = T_MEM, .vcpus = 1, .page_size = 4096 };

	(void)why;
	(void)whylen;
	return savefile_meta_encode(&cfg, "k", disks, c->force ? c->force : recs, 1, NULL, 0,
				    (const uint8_t *)"s", 1, meta, len);
}

/* Save e->mem with the image at disk, kept by mode, to path. */
static void t_disk_save(struct t_env *e, const char *path, const char *disk,
			enum savefile_disk_mode mode, struct savefile_disk_rec *rec,
			struct savefile_stats *st)
{
	char spec[256], why[256] = "";
	struct t_disk_ctx c = { .spec = spec };
	const char *paths[] = { disk };
	int fd;

	snprintf(spec, sizeof(spec), "path=%s", disk);
	memset(rec, 0, sizeof(*rec));
	memset(st, 0, sizeof(*st));
	rec->mode = (uint8_t)mode;
	assert_int_equal(savefile_disk_probe(disk, rec, why, sizeof(why)), 0);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(savefile_write_disks(&e->mem, fd, paths, rec, 1, t_disk_meta, &c, st, why,
					      sizeof(why)), 0);
	close(fd);
}

/* The metadata of the file at path replaced by one with record r (checksums fixed). */
static void t_disk_rewrite(const char *path, const char *disk, struct savefile_disk_rec *r)
{
	uint8_t page[SAVEFILE_HEADER_SIZE], *meta;
	struct t_disk_ctx c = { .force = r };
	struct savefile_header h;
	char spec[256], why[256];
	size_t len;
	int fd = open(path, O_RDWR);

	snprintf(spec, sizeof(spec), "path=%s", disk);
	c.spec = spec;
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, page, sizeof(page), 0), (ssize_t)sizeof(page));
	assert_int_equal(savefile_header_decode(page, t_size(path), &h, why, sizeof(why)), 0);
	assert_int_equal(t_disk_meta(&c, NULL, &meta, &len, why, sizeof(why)), 0);
	assert_int_equal(len, h.meta_len);
	h.meta_hash = XXH3_64bits(meta, len);
	savefile_header_encode(&h, page);
	assert_int_equal(pwrite(fd, meta, len, (off_t)h.meta_off), (ssize_t)len);
	assert_int_equal(pwrite(fd, page, sizeof(page), 0), (ssize_t)sizeof(page));
	close(fd);
	free(meta);
}

/* Open path: refused with err and a reason naming want. */
static void t_disk_refused(const char *path, int want_err, const char *want)
{
	struct savefile sf;
	char why[256] = "";
	int err = savefile_open(&sf, path, why, sizeof(why));

	if (!err)
		savefile_close(&sf);
	print_message("refused (%d): %s\n", err, why);
	assert_int_equal(err, want_err);
	assert_non_null(strstr(why, want));
}

/*
 * --disks copy: the image goes into the file after RAM, holes left holes,
 * and comes back byte for byte into a new image; a damaged copy is
 * refused and leaves the target as it was; hostile records (offsets past
 * the file, lengths that do not match the size, unknown modes and flags,
 * a disk string without end or with a NUL) are refused at open.
 */
static void test_disk_copy(void **state)
{
	struct t_env *e = *state;
	char disk[128], sav[128], bad[128], out[128], why[256] = "";
	struct savefile_disk_rec rec, r2;
	struct savefile_stats st;
	struct block_config bc;
	struct savefile sf;
	uint64_t data = 0;

	snprintf(disk, sizeof(disk), "%s/disk.img", e->dir);
	snprintf(sav, sizeof(sav), "%s/d.sav", e->dir);
	snprintf(bad, sizeof(bad), "%s/dbad.sav", e->dir);
	snprintf(out, sizeof(out), "%s/new.img", e->dir);
	t_disk_make(disk);
	for (uint64_t i = 0; i < T_DISK_PAGES; i++)
		data += t_disk_data(i);
	t_disk_save(e, sav, disk, SAVEFILE_DISK_COPY, &rec, &st);
	assert_int_equal(st.disk_data_pages, data);
	assert_int_equal(st.disk_bytes, T_DISK_PAGES * 4096);
	assert_int_equal(rec.size, T_DISK_SIZE);
	assert_int_equal(rec.off % 4096, 0);
	assert_int_equal(t_size(sav), rec.off + rec.len);
	/* Holes stay holes: page 1 (zeros written) and 2..4 (holes) of the disk are none in the file. */
	int fd = open(sav, O_RDONLY);
	off_t d = lseek(fd, (off_t)(rec.off + 4096), SEEK_DATA);
	close(fd);
	assert_true(d < 0 || (uint64_t)d >= rec.off + 5 * 4096);

	assert_int_equal(savefile_open(&sf, sav, why, sizeof(why)), 0);
	assert_true(sf.meta.has_recs);
	assert_int_equal(sf.meta.drec[0].mode, SAVEFILE_DISK_COPY);
	assert_int_equal(sf.meta.drec[0].digest, rec.digest);
	assert_int_equal(savefile_disk_verify(&sf, 0, why, sizeof(why)), 0);
	/* Into a new image, and over one that exists. */
	assert_int_equal(block_config_parse("path=/x", &bc, why, sizeof(why)), 0);
	snprintf(bc.path, sizeof(bc.path), "%s", out);
	for (unsigned k = 0; k < 2; k++) {
		assert_int_equal(savefile_disk_restore(&sf, 0, &bc, why, sizeof(why)), 0);
		assert_true(t_same(disk, out));
		t_poke(out, 7, "old", 3);
	}
	bc.readonly = true;
	assert_int_equal(savefile_disk_restore(&sf, 0, &bc, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "--disk path=NEW"));
	bc.readonly = false;
	savefile_close(&sf);

	/* A data page of the copy flipped: it opens, fails its checksum, the target stays. */
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "cp --sparse=always %s %s", sav, bad);
	assert_int_equal(system(cmd), 0);
	t_flip(bad, rec.off + 5 * 4096 + 100);
	assert_int_equal(savefile_open(&sf, bad, why, sizeof(why)), 0);
	assert_int_equal(savefile_disk_verify(&sf, 0, why, sizeof(why)), -EPROTO);
	assert_int_equal(savefile_disk_restore(&sf, 0, &bc, why, sizeof(why)), -EPROTO);
	print_message("refused: %s\n", why);
	assert_non_null(strstr(why, "fails its checksum"));
	savefile_close(&sf);
	assert_false(t_same(disk, out));	/* still the "old" poke of the last round */
	/* A byte past the disk's end in the region's last page. */
	assert_int_equal(system(cmd), 0);
	t_poke(bad, rec.off + T_DISK_SIZE + 10, "x", 1);
	assert_int_equal(savefile_open(&sf, bad, why, sizeof(why)), 0);
	assert_int_equal(savefile_disk_verify(&sf, 0, why, sizeof(why)), -EPROTO);
	assert_non_null(strstr(why, "past the end of the disk"));
	savefile_close(&sf);

	/* Hostile records, each with its checksums fixed. */
	struct savefile_disk_rec bads[9];
	const char *wants[9];
	for (unsigned k = 0; k < 9; k++)
		bads[k] = rec;
	bads[0].off += 4096;			wants[0] = "not where the file has room";
	bads[1].off = UINT64_MAX - 4095;	wants[1] = "not where the file has room";
	bads[2].len += 4096;			wants[2] = "a copy at";
	bads[3].size += 4096;			wants[3] = "a copy at";
	bads[4].data_pages = UINT64_MAX;	wants[4] = "pages of data";
	bads[5].mode = 7;			wants[5] = "unknown mode";
	bads[6].flags |= 0x80;			wants[6] = "unknown flags";
	bads[7].size = 1ULL << 60;		wants[7] = "a size of";
	bads[8].mode = SAVEFILE_DISK_PATH;	wants[8] = "kept by path with a copy";
	for (unsigned k = 0; k < 9; k++) {
		assert_int_equal(system(cmd), 0);
		r2 = bads[k];
		t_disk_rewrite(bad, disk, &r2);
		t_disk_refused(bad, -EPROTO, wants[k]);
	}
	/* A path record in a file that holds a copied disk's bytes: the lengths disagree. */
	memset(&r2, 0, sizeof(r2));
	r2.flags = SAVEFILE_DISK_F_IDENT;
	r2.size = T_DISK_SIZE;
	assert_int_equal(system(cmd), 0);
	t_disk_rewrite(bad, disk, &r2);
	t_disk_refused(bad, -EPROTO, "bytes of copied disks");
	/* The file cut inside the copy, or longer than it. */
	snprintf(cmd, sizeof(cmd), "cp --sparse=always %s %s && truncate -s %llu %s", sav, bad,
		 (unsigned long long)(rec.off + 4096), bad);
	assert_int_equal(system(cmd), 0);
	t_disk_refused(bad, -EPROTO, "truncated");
	snprintf(cmd, sizeof(cmd), "cp --sparse=always %s %s && truncate -s %llu %s", sav, bad,
		 (unsigned long long)(rec.off + rec.len + 4096), bad);
	assert_int_equal(system(cmd), 0);
	t_disk_refused(bad, -EPROTO, "appended");
	/* The disk's string: its length past the metadata, then a NUL inside it. */
	struct savefile_header h;
	uint8_t page[SAVEFILE_HEADER_SIZE], *meta;
	snprintf(cmd, sizeof(cmd), "cp --sparse=always %s %s", sav, bad);
	for (unsigned k = 0; k < 2; k++) {
		assert_int_equal(system(cmd), 0);
		fd = open(bad, O_RDWR);
		assert_int_equal(pread(fd, page, sizeof(page), 0), (ssize_t)sizeof(page));
		assert_int_equal(savefile_header_decode(page, t_size(bad), &h, why, sizeof(why)), 0);
		meta = malloc(h.meta_len);
		assert_int_equal(pread(fd, meta, h.meta_len, (off_t)h.meta_off), (ssize_t)h.meta_len);
		/* config length, config, kernel ("k": u16 + 1), disk count, then the disk's u16 length */
		uint64_t at = 4 + le_get(meta, 4) + 2 + 1 + 1;
		if (k == 0)
			le_put(meta + at, 0xffff, 2);
		else
			meta[at + 2 + 3] = '\0';
		h.meta_hash = XXH3_64bits(meta, h.meta_len);
		savefile_header_encode(&h, page);
		assert_int_equal(pwrite(fd, meta, h.meta_len, (off_t)h.meta_off), (ssize_t)h.meta_len);
		assert_int_equal(pwrite(fd, page, sizeof(page), 0), (ssize_t)sizeof(page));
		close(fd);
		free(meta);
		t_disk_refused(bad, -EPROTO, "bad disk 0");
	}
	/* The header's disk area past its limit, or not ending where the file does. */
	struct savefile_header h2;
	fd = open(sav, O_RDONLY);
	assert_int_equal(pread(fd, page, sizeof(page), 0), (ssize_t)sizeof(page));
	close(fd);
	assert_int_equal(savefile_header_decode(page, t_size(sav), &h, why, sizeof(why)), 0);
	for (unsigned k = 0; k < 3; k++) {
		h2 = h;
		if (k == 0)
			h2.disk_len = 8 * SAVEFILE_DISK_MAX + 4096;
		else if (k == 1)
			h2.disk_len += 100;
		else
			h2.disk_off += 4096;
		savefile_header_encode(&h2, page);
		assert_int_equal(system(cmd), 0);
		t_poke(bad, 0, page, sizeof(page));
		t_disk_refused(bad, -EPROTO, "copied disks");
	}
	unlink(bad);
	unlink(out);
	unlink(sav);
	unlink(disk);
}

/*
 * --disks path: the record holds the image's size and identity; the same
 * image (or a copy of it) passes, another size or changed first bytes do
 * not.  A version 1 file (no records) still opens.
 */
static void test_disk_path(void **state)
{
	struct t_env *e = *state;
	char disk[128], sav[128], cp[128], cmd[512], why[256] = "";
	uint8_t page[SAVEFILE_HEADER_SIZE];
	struct savefile_disk_rec rec;
	struct savefile_header h;
	struct savefile_stats st;
	struct savefile sf;

	snprintf(disk, sizeof(disk), "%s/disk.img", e->dir);
	snprintf(sav, sizeof(sav), "%s/p.sav", e->dir);
	snprintf(cp, sizeof(cp), "%s/copy.img", e->dir);
	t_disk_make(disk);
	t_disk_save(e, sav, disk, SAVEFILE_DISK_PATH, &rec, &st);
	assert_int_equal(st.disk_bytes, 0);
	assert_int_equal(savefile_open(&sf, sav, why, sizeof(why)), 0);
	const struct savefile_disk_rec *r = &sf.meta.drec[0];
	assert_int_equal(r->mode, SAVEFILE_DISK_PATH);
	assert_int_equal(r->size, T_DISK_SIZE);
	assert_int_equal(sf.h.disk_len, 0);
	assert_int_equal(savefile_disk_check(r, 0, disk, why, sizeof(why)), 0);
	snprintf(cmd, sizeof(cmd), "cp --sparse=always %s %s", disk, cp);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(savefile_disk_check(r, 0, cp, why, sizeof(why)), 0);
	/* Another size. */
	assert_int_equal(truncate(cp, (off_t)(T_DISK_SIZE - 512)), 0);
	assert_int_equal(savefile_disk_check(r, 0, cp, why, sizeof(why)), -EPROTO);
	print_message("refused: %s\n", why);
	assert_non_null(strstr(why, "it was 3146240 at the save"));
	/* Same size, first bytes changed. */
	assert_int_equal(system(cmd), 0);
	t_poke(cp, 1024, "mounted", 7);
	assert_int_equal(savefile_disk_check(r, 0, cp, why, sizeof(why)), -ESTALE);
	assert_non_null(strstr(why, "changed since the save"));
	/* Not there at all. */
	unlink(cp);
	assert_int_equal(savefile_disk_check(r, 0, cp, why, sizeof(why)), -ENOENT);
	/* Copying a disk kept by path is no restore. */
	struct block_config bc;
	assert_int_equal(block_config_parse("path=/x", &bc, why, sizeof(why)), 0);
	snprintf(bc.path, sizeof(bc.path), "%s", cp);
	assert_int_equal(savefile_disk_restore(&sf, 0, &bc, why, sizeof(why)), -EINVAL);
	savefile_close(&sf);
	unlink(sav);
	unlink(disk);

	/* Version 1: a file without disks reads the same; its header's disk words are zero. */
	int fd = open(e->bad, O_RDWR | O_CREAT | O_TRUNC, 0600);
	uint8_t *meta;
	size_t len;
	struct mig_config cfg = { .memory = T_MEM, .vcpus = 1, .page_size = 4096 };
	assert_int_equal(savefile_meta_encode(&cfg, "k", NULL, NULL, 0, NULL, 0,
					      (const uint8_t *)"s", 1, &meta, &len), 0);
	assert_int_equal(savefile_write(&e->mem, fd, meta, len, &st), 0);
	free(meta);
	assert_int_equal(pread(fd, page, sizeof(page), 0), (ssize_t)sizeof(page));
	assert_int_equal(savefile_header_decode(page, t_size(e->bad), &h, why, sizeof(why)), 0);
	h.version = 1;
	h.flags = 0;	/* version 1 knows no packing: only the header and metadata are read here */
	savefile_header_encode(&h, page);
	assert_int_equal(le_get(page + 112, 8), 0);
	assert_int_equal(pwrite(fd, page, sizeof(page), 0), (ssize_t)sizeof(page));
	close(fd);
	assert_int_equal(savefile_open(&sf, e->bad, why, sizeof(why)), 0);
	assert_false(sf.meta.has_recs);
	savefile_close(&sf);
}

/*
 * guest_memory_data_run_at() with a cursor kept across calls answers as
 * guest_memory_data_run() does afresh: block after block going forward
 * (a save's writer threads) and at blocks in any order (a snapshot's
 * fault thread), over long data extents (where SEEK_HOLE used to scan to
 * the end of RAM for every block), single pages, holes and RAM's end.
 */
static bool t_cursor_data(uint64_t i)
{
	return i < 1000 || (i >= 1500 && i % 97 != 0 && i < T_PAGES - 300) || i == T_PAGES - 1;
}

static void t_cursor_walk(const struct guest_memory *mem, struct guest_data_cursor *cur,
			  uint64_t first, uint64_t n)
{
	uint64_t p = first, end = first + n, rf, rn, wf, wn;

	for (;;) {
		bool got = guest_memory_data_run_at(mem, cur, p, end - p, &rf, &rn);
		bool want = guest_memory_data_run(mem, p, end - p, &wf, &wn);

		assert_int_equal(got, want);
		if (!got)
			break;
		assert_int_equal(rf, wf);
		assert_int_equal(rn, wn);
		for (uint64_t q = p; q < rf; q++)
			assert_false(t_cursor_data(q));
		for (uint64_t q = rf; q < rf + rn; q++)
			assert_true(t_cursor_data(q));
		p = rf + rn;
		if (p >= end)
			break;
	}
}

static void test_data_cursor(void **state)
{
	struct guest_memory mem;
	struct guest_data_cursor cur = { 0 };
	uint64_t rng = 12345, bp = SAVEFILE_BLOCK_PAGES;

	(void)state;
	assert_int_equal(guest_memory_create(&mem, T_MEM), 0);
	for (uint64_t i = 0; i < T_PAGES; i++)
		if (t_cursor_data(i))
			((uint64_t *)guest_memory_page_alias(&mem, i))[0] = i + 1;
	for (uint64_t b = 0; b < T_PAGES / bp; b++)
		t_cursor_walk(&mem, &cur, b * bp, bp);
	for (int k = 0; k < 2000; k++) {
		rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
		uint64_t first = (rng >> 20) % T_PAGES, n = 1 + (rng >> 44) % bp;

		if (first + n > T_PAGES)
			n = T_PAGES - first;
		t_cursor_walk(&mem, &cur, first, n);
	}
	/* A range past RAM's end holds nothing. */
	assert_false(guest_memory_data_run_at(&mem, &cur, T_PAGES - 1, 2, &rng, &bp));
	guest_memory_destroy(&mem);
}

/* Which pages of the 80 MiB guest below hold data (2), zeros written (1), nothing (0). */
static unsigned t_seg_kind(uint64_t i)
{
	uint64_t x = i * 0x9E3779B97F4A7C15ULL;

	if (i < 4096)
		return 2;		/* 16 MiB of data in a row: the 8 MiB write bound */
	if (i / 8192 == 1)
		return i % 2 ? 2 : 1;	/* every other page: more than 256 pieces a write */
	x ^= x >> 29;
	return (unsigned)(x % 3);
}

/*
 * Packed RAM beyond the first segment: an 80 MiB guest is two whole
 * segments of 32 MiB and a last one of 16; each comes back page for
 * page, eagerly and by ranges that cross from one segment to the next.
 */
static void test_segments(void **state)
{
	const uint64_t size = 80ULL << 20, pages = size / GUEST_PAGE_SIZE;
	struct mig_config cfg = { .memory = size, .vcpus = 1, .page_size = 4096, .cmdline_len = 1 };
	static const uint8_t st8[] = "s";
	struct guest_memory mem, back;
	struct savefile_stats st = { 0 }, st2 = { 0 };
	struct savefile sf;
	char dir[] = "/tmp/ferry-savefile-seg-XXXXXX", path[64], why[256] = "";
	uint8_t *meta;
	size_t len;
	uint64_t data = 0;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/vm.sav", dir);
	assert_int_equal(guest_memory_create(&mem, size), 0);
	for (uint64_t i = 0; i < pages; i++) {
		unsigned k = t_seg_kind(i);
		uint64_t *p = guest_memory_page_alias(&mem, i);
		if (!k)
			continue;
		memset(p, 0, GUEST_PAGE_SIZE);
		if (k == 2) {
			p[0] = i + 1;
			p[GUEST_PAGE_SIZE / 8 - 1] = ~i;
			data++;
		}
	}
	cfg.cmdline[0] = 'x';
	assert_int_equal(savefile_meta_encode(&cfg, "k", NULL, NULL, 0, NULL, 0, st8, sizeof(st8),
					      &meta, &len), 0);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(savefile_write(&mem, fd, meta, len, &st), 0);
	close(fd);
	free(meta);
	assert_int_equal(st.data_pages, data);
	assert_int_equal(savefile_open(&sf, path, why, sizeof(why)), 0);

	assert_int_equal(guest_memory_create(&back, size), 0);
	assert_int_equal(savefile_load_ram(&sf, &back, &st2, why, sizeof(why)), 0);
	assert_int_equal(st2.data_pages, data);
	for (uint64_t i = 0; i < pages; i++) {
		const uint64_t *p = guest_memory_page_alias(&back, i);
		bool has = t_seg_kind(i) == 2;
		if (p[0] != (has ? i + 1 : 0) || p[GUEST_PAGE_SIZE / 8 - 1] != (has ? ~i : 0))
			fail_msg("page %llu came back wrong", (unsigned long long)i);
	}
	guest_memory_destroy(&back);

	/* From one block before the second segment's end into the third. */
	uint64_t first = 2 * 8192 - SAVEFILE_BLOCK_PAGES, want = 0, bad = 0;
	uint32_t count = 4 * SAVEFILE_BLOCK_PAGES + 100;
	uint64_t *sums = calloc(count, sizeof(*sums));
	unsigned long *written = calloc(pages / 64 + 1, sizeof(long));
	uint8_t *buf = aligned_alloc(64, SAVEFILE_BLOCK_PAGES * GUEST_PAGE_SIZE);
	unsigned damaged = 0;
	assert_int_equal(guest_memory_create(&back, size), 0);
	uint64_t got = savefile_load_range(&sf, &back, first, count, sums, written, buf, &damaged,
					   why, sizeof(why));
	for (uint64_t i = first; i < first + count; i++) {
		const uint64_t *p = guest_memory_page_alias(&back, i);
		if (t_seg_kind(i) != 2)
			continue;
		want++;
		bad += p[0] != i + 1 || p[GUEST_PAGE_SIZE / 8 - 1] != ~i;
	}
	assert_int_equal(damaged, 0);
	assert_int_equal(got, want);
	assert_int_equal(bad, 0);
	free(sums);
	free(written);
	free(buf);
	guest_memory_destroy(&back);
	savefile_close(&sf);
	guest_memory_destroy(&mem);
	unlink(path);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_roundtrip, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_block_sum_stale_stack, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_damaged, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_bad_meta, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_hostile_more, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_lazy, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_lazy_damaged, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_cow, t_setup, t_teardown),
		cmocka_unit_test(test_specs),
		cmocka_unit_test(test_data_cursor),
		cmocka_unit_test(test_segments),
		cmocka_unit_test_setup_teardown(test_cpu, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_disk_copy, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_disk_path, t_setup, t_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
