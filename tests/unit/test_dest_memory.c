/*
 * A destination's memory against a source that lies about the VM's size:
 * the --verify page digests take memory only as pages arrive (not 8 bytes
 * per announced page up front), and `ferry run --incoming` without
 * --memory refuses a VM larger than the host has room for, before it
 * allocates anything.  No KVM needed: the refusal comes before the VM is
 * created.
 *
 * Environment: BUILD (default "build") locates $BUILD/ferry-san.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>
#include <cmocka.h>

#include "migration/config.h"
#include "migration/digest.h"
#include "migration/format.h"
#include "util/vmstate.h"
#include "vmm/memory.h"

static uint64_t t_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* This process's resident memory, in bytes. */
static uint64_t t_rss(void)
{
	unsigned long long size, resident;
	FILE *f = fopen("/proc/self/statm", "r");

	assert_non_null(f);
	assert_int_equal(fscanf(f, "%llu %llu", &size, &resident), 2);
	fclose(f);
	return resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* The digest as the stream defines it: XXH3 over the array of page XXH3s. */
static uint64_t t_naive_digest(const struct guest_memory *mem)
{
	uint64_t pages = guest_memory_pages(mem);
	uint64_t *h = malloc(pages * sizeof(*h));

	assert_non_null(h);
	for (uint64_t i = 0; i < pages; i++)
		h[i] = XXH3_64bits(guest_memory_page_ptr(mem, i), GUEST_PAGE_SIZE);
	uint64_t total = XXH3_64bits(h, pages * sizeof(*h));
	free(h);
	return total;
}

/* The sparse table still computes the stream's digest, bit for bit. */
static void test_digest_value(void **state)
{
	struct guest_memory mem;
	struct mig_digest d;

	assert_int_equal(guest_memory_create(&mem, 16ULL << 20), 0);
	for (uint64_t i = 0; i < guest_memory_pages(&mem); i += 7)
		memset(guest_memory_page_ptr(&mem, i), (int)(i % 251) + 1, GUEST_PAGE_SIZE / 2);
	uint64_t want = t_naive_digest(&mem);
	assert_true(mig_digest_of_memory(&mem) == want);

	/* Set page by page, zero pages as NULL, some pages set twice. */
	assert_int_equal(mig_digest_init(&d, &mem), 0);
	for (uint64_t i = 0; i < guest_memory_pages(&mem); i += 3)
		mig_digest_set(&d, i, guest_memory_page_ptr(&mem, 0));	/* stale content */
	for (uint64_t i = 0; i < guest_memory_pages(&mem); i++) {
		const uint8_t *p = guest_memory_page_ptr(&mem, i);
		mig_digest_set(&d, i, i % 7 ? NULL : p);
	}
	assert_true(mig_digest_total(&d) == want);
	mig_digest_set(&d, 1, guest_memory_page_ptr(&mem, 0));
	assert_true(mig_digest_total(&d) != want);
	mig_digest_free(&d);
	guest_memory_destroy(&mem);
}

/*
 * A 1 TiB announcement with --verify: the table for 2^28 pages (2 GiB)
 * must cost nothing until pages arrive, and a few thousand pages only
 * their share.
 */
static void test_digest_in_proportion(void **state)
{
	struct guest_memory mem;
	struct mig_digest d;
	static uint8_t page[GUEST_PAGE_SIZE] = { 1 };

	assert_int_equal(guest_memory_create(&mem, 1ULL << 40), 0);
	uint64_t before = t_rss();
	assert_int_equal(mig_digest_init(&d, &mem), 0);
	uint64_t grew = t_rss() - before;
	if (grew > (16u << 20))
		fail_msg("the digest table of a 1 TiB VM took %llu MiB before any page arrived",
			 (unsigned long long)(grew >> 20));
	/* 1024 pages (4 MiB of guest data) spread one per 2 MiB: at most 1024 table pages. */
	for (uint64_t i = 0; i < 1024; i++)
		mig_digest_set(&d, i * 512 * 1024, page);
	grew = t_rss() - before;
	if (grew > (16u << 20))
		fail_msg("1024 pages set took %llu MiB of digest table",
			 (unsigned long long)(grew >> 20));
	mig_digest_free(&d);
	guest_memory_destroy(&mem);
}

/* ---- a destination that is told of 1 TiB -------------------------------- */

static void t_put(struct vmstate_buf *b, const void *p, size_t n)
{
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2;
		b->data = realloc(b->data, b->cap);
		assert_non_null(b->data);
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
}

static void t_le(struct vmstate_buf *b, uint64_t v, int n)
{
	uint8_t x[8];

	for (int i = 0; i < n; i++)
		x[i] = (uint8_t)(v >> (8 * i));
	t_put(b, x, (size_t)n);
}

/* A framed section (docs/migration-stream.md): type, 3 zero bytes... */
static void t_sec(struct vmstate_buf *b, uint8_t type, const void *payload, size_t plen)
{
	uint8_t hdr[MIG_SECTION_HDR] = { type, 0, 0, 0 };

	for (int i = 0; i < 4; i++)
		hdr[4 + i] = (uint8_t)(plen >> (8 * i));
	XXH3_state_t *h = XXH3_createState();
	XXH3_64bits_reset(h);
	XXH3_64bits_update(h, hdr, sizeof(hdr));
	XXH3_64bits_update(h, payload, plen);
	t_put(b, hdr, sizeof(hdr));
	t_put(b, payload, plen);
	t_le(b, XXH3_64bits_digest(h), 8);
	XXH3_freeState(h);
}

/* What the host can give a VM, as ferry reckons it (MemAvailable + SwapFree). */
static uint64_t t_host_room(void)
{
	unsigned long long kb, total = 0;
	char line[128];
	FILE *f = fopen("/proc/meminfo", "r");

	assert_non_null(f);
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1 ||
		    sscanf(line, "SwapFree: %llu kB", &kb) == 1)
			total += kb;
	fclose(f);
	return (uint64_t)total * 1024;
}

static void test_refuses_more_than_host_room(void **state)
{
	char dir[] = "/tmp/ferry-destmem.XXXXXX", sock[128], serial[128], uri[160], ser[160];
	char ferry[512], out[8192] = "";
	const char *build = getenv("BUILD") ? getenv("BUILD") : "build";
	size_t outlen = 0;
	int p[2], status = -1;

	if (t_host_room() >= GUEST_MAX_MEMORY)
		skip();		/* this host could hold it: nothing to refuse */
	assert_non_null(mkdtemp(dir));
	snprintf(sock, sizeof(sock), "%s/in.sock", dir);
	snprintf(serial, sizeof(serial), "%s/serial", dir);
	snprintf(uri, sizeof(uri), "unix:%s", sock);
	snprintf(ser, sizeof(ser), "file:%s", serial);
	snprintf(ferry, sizeof(ferry), "%s/ferry-san", build);
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(p[1], 1);
		dup2(p[1], 2);
		execl(ferry, ferry, "run", "--incoming", uri, "--serial", ser, (char *)NULL);
		_exit(127);
	}
	close(p[1]);

	/* Connect once it listens (bounded), send the header and a 1 TiB CONFIG. */
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = -1;
	strcpy(sa.sun_path, sock);
	for (uint64_t end = t_now_ms() + 20000; fd < 0 && t_now_ms() < end;) {
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
			close(fd);
			fd = -1;
			usleep(10000);
		}
	}
	if (fd < 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		fail_msg("%s never listened on %s", ferry, sock);
	}
	struct mig_config cfg = {
		.memory = GUEST_MAX_MEMORY, .vcpus = 1, .page_size = GUEST_PAGE_SIZE,
		.flags = MIG_FLAG_VERIFY,
		.codecs = (1u << MIG_CODEC_ZERO) | (1u << MIG_CODEC_RAW),
		.cmdline_len = 5, .cmdline = "quiet",
	};
	struct vmstate_buf rec = { 0 }, stream = { 0 };
	assert_int_equal(vmstate_save(&mig_config_vmsd, &cfg, &rec), 0);
	t_put(&stream, MIG_MAGIC, MIG_MAGIC_LEN);
	t_le(&stream, MIG_VERSION, 4);
	t_sec(&stream, MIG_SEC_CONFIG, rec.data, rec.len);
	assert_int_equal(send(fd, stream.data, stream.len, MSG_NOSIGNAL), (ssize_t)stream.len);
	free(rec.data);
	free(stream.data);

	/* Its output, until it exits (bounded); the return path is drained, unread. */
	for (uint64_t end = t_now_ms() + 20000; t_now_ms() < end;) {
		struct pollfd pfd[2] = { { .fd = p[0], .events = POLLIN }, { .fd = fd, .events = POLLIN } };
		char junk[4096];
		if (poll(pfd, 2, 100) > 0) {
			if (pfd[1].revents && recv(fd, junk, sizeof(junk), MSG_DONTWAIT) <= 0) {
				close(fd);
				fd = -1;
			}
			if (pfd[0].revents) {
				ssize_t n = read(p[0], out + outlen, sizeof(out) - 1 - outlen);
				if (n > 0)
					outlen += (size_t)n;
			}
		}
		if (waitpid(pid, &status, WNOHANG) == pid)
			break;
		if (fd < 0)
			usleep(10000);
	}
	if (waitpid(pid, NULL, WNOHANG) == 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		fail_msg("the destination did not exit after a 1 TiB announcement: %s", out);
	}
	ssize_t n;
	while (outlen < sizeof(out) - 1 && (n = read(p[0], out + outlen, sizeof(out) - 1 - outlen)) > 0)
		outlen += (size_t)n;
	out[outlen] = '\0';
	close(p[0]);
	if (fd >= 0)
		close(fd);
	unlink(serial);
	unlink(sock);
	rmdir(dir);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 65)
		fail_msg("want exit status 65, got 0x%x: %s", status, out);
	if (!strstr(out, "more than this host has room for") || !strstr(out, "--memory"))
		fail_msg("the refusal does not say why and what to do: %s", out);
	if (strstr(out, "Sanitizer"))
		fail_msg("sanitizer report: %s", out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_digest_value),
		cmocka_unit_test(test_digest_in_proportion),
		cmocka_unit_test(test_refuses_more_than_host_room),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
