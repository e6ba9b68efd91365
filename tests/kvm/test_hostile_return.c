/*
 * The source side of a migration against a hostile destination: this test
 * plays the destination (docs/migration-stream.md) for a real sanitized
 * `ferry-san run` source running the probe guest, driven by `ferry-san
 * migrate`, and answers on the return path with malformed sections at each
 * point where the source reads one: READY, SYNC_ACK, LOADED (before GO),
 * PAGE_REQ before and during post-copy, and PC_KNOWN / PC_RESUMED when a
 * post-copy resumes.
 *
 * Before GO (pre-copy) every case must end with `ferry migrate` exit 1,
 * status "failed", an error naming the problem, and the source guest
 * running on.  Once POSTCOPY_RUN has left, the source must not resume:
 * the VM is lost (source exit 75), said so, and nothing crashes.  The
 * source's log must never show a sanitizer report.
 *
 * Environment: BUILD (default "build") locates $BUILD/ferry-san and
 * $BUILD/probe.elf.  Skips (77) without /dev/kvm.
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
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>
#include <cmocka.h>

#include "migration/channel/channel.h"
#include "migration/codec/codec.h"
#include "migration/format.h"
#include "migration/section.h"
#include "migration/stream.h"
#include "util/log.h"

#define H_MEM_PAGES	(32u << 20) / 4096	/* the source's 32 MiB */
#define H_WAIT_MS	30000

static char h_ferry[512], h_probe[512];
static char h_dir[64], h_ctl[128], h_sock[128], h_log[128], h_serial[128];
static char h_json[128];
static pid_t h_src = -1;	/* the source ferry */
static uint8_t *h_buf;		/* one section's payload */

static uint64_t h_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/*
 * The whole of a small file as a string ("" if absent), in one of two
 * static buffers (`which`), so that a failing check leaks nothing.
 */
static char *h_slurp(const char *path, int which)
{
	static char text[2][1 << 20];
	FILE *f = fopen(path, "r");
	char *s = text[which];
	size_t n = 0;

	if (f) {
		n = fread(s, 1, (1 << 20) - 1, f);
		fclose(f);
	}
	s[n] = '\0';
	return s;
}

/* Fork and exec ferry-san ARGS with stdout to `out` (NULL: /dev/null). */
static pid_t h_spawn(const char *out, const char *const *args)
{
	const char *argv[24];
	int n = 0;
	pid_t pid;

	argv[n++] = h_ferry;
	for (int i = 0; args[i] && n < 23; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int in = open("/dev/null", O_RDONLY);
		int o = open(out ? out : "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0644);
		dup2(in, 0);
		dup2(o, 1);
		dup2(o, 2);
		execv(h_ferry, (char *const *)argv);
		_exit(127);
	}
	return pid;
}

/* Wait for pid at most ms; its exit status, or -1 (then it still runs). */
static int h_wait(pid_t pid, int ms)
{
	uint64_t end = h_now_ms() + (uint64_t)ms;
	int st;

	do {
		if (waitpid(pid, &st, WNOHANG) == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		usleep(10000);
	} while (h_now_ms() < end);
	return -1;
}

/* `ferry-san status CTL` says running. */
static bool h_source_running(void)
{
	char out[160];

	snprintf(out, sizeof(out), "%s/status.out", h_dir);
	unlink(out);
	const char *args[] = { "status", h_ctl, NULL };
	if (h_wait(h_spawn(out, args), 10000) != 0)
		return false;
	char *s = h_slurp(out, 0);

	return strstr(s, "status:") && strstr(s, "running");
}

/* Start the source VM and wait for its control socket. */
static void h_source_start(void)
{
	char serial[160];

	snprintf(serial, sizeof(serial), "file:%s", h_serial);
	unlink(h_log);
	const char *args[] = { "run", "--kernel", h_probe, "--memory", "32M", "--cmdline",
			       "workload=verify wss=4M period=20ms", "--serial", serial,
			       "--control", h_ctl, NULL };
	h_src = h_spawn(h_log, args);
	for (int i = 0; i < 300; i++) {
		if (h_source_running())
			return;
		assert_int_equal(waitpid(h_src, NULL, WNOHANG), 0);
		usleep(50000);
	}
	fail_msg("the source never answered on %s", h_ctl);
}

static void h_source_kill(void)
{
	if (h_src > 0) {
		kill(h_src, SIGKILL);
		waitpid(h_src, NULL, 0);
	}
	h_src = -1;
}

static void h_assert_no_sanitizer(void)
{
	char *s = h_slurp(h_log, 0);

	if (strstr(s, "Sanitizer") || strstr(s, "runtime error"))
		fail_msg("sanitizer report in the source's log:\n%s", s);
}

/* ---- the fake destination ---------------------------------------------- */

static int h_listen(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	unlink(h_sock);
	strcpy(sa.sun_path, h_sock);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, 1), 0);
	return fd;
}

static int h_accept(int lfd)
{
	struct pollfd p = { .fd = lfd, .events = POLLIN };

	if (poll(&p, 1, 10000) != 1)
		fail_msg("the source never connected");
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	assert_true(fd >= 0);
	close(lfd);
	unlink(h_sock);
	return fd;
}

/* Raw bytes to the source. */
static void h_send(int fd, const void *p, size_t n)
{
	const uint8_t *b = p;

	while (n) {
		ssize_t k = send(fd, b, n, MSG_NOSIGNAL);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return;		/* the source hung up: fine */
		b += k;
		n -= (size_t)k;
	}
}

/* A section: type, reserved bytes `rsv`, length field `lenf`, payload, checksum ^ `flip`. */
static void h_sec_raw(int fd, uint8_t type, uint8_t rsv, uint32_t lenf, const void *payload,
		      uint32_t plen, uint64_t flip)
{
	uint8_t *b = malloc(MIG_SECTION_HDR + plen + 8);

	assert_non_null(b);
	b[0] = type;
	b[1] = rsv;
	b[2] = b[3] = 0;
	for (int i = 0; i < 4; i++)
		b[4 + i] = (uint8_t)(lenf >> (8 * i));
	if (plen)
		memcpy(b + MIG_SECTION_HDR, payload, plen);
	uint64_t sum = XXH3_64bits(b, MIG_SECTION_HDR + plen) ^ flip;
	for (int i = 0; i < 8; i++)
		b[MIG_SECTION_HDR + plen + i] = (uint8_t)(sum >> (8 * i));
	h_send(fd, b, MIG_SECTION_HDR + plen + 8);
	free(b);
}

static void h_sec(int fd, uint8_t type, const void *payload, uint32_t plen)
{
	h_sec_raw(fd, type, 0, plen, payload, plen, 0);
}

static void h_result(int fd, int32_t status, uint16_t msglen, const char *msg)
{
	uint8_t p[300];
	size_t n = strlen(msg);

	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)((uint32_t)status >> (8 * i));
	p[4] = (uint8_t)msglen;
	p[5] = (uint8_t)(msglen >> 8);
	memcpy(p + 6, msg, n);
	h_sec(fd, MIG_SEC_RESULT, p, (uint32_t)(6 + n));
}

/* Read the source's sections until one of type `until` (or the stream ends: false). */
static bool h_read_until(struct mig_stream *s, uint8_t until, uint32_t *len)
{
	uint64_t end = h_now_ms() + H_WAIT_MS;

	while (h_now_ms() < end) {
		uint8_t type;
		if (mig_section_read(s, h_buf, MIG_SECTION_MAX, &type, len))
			return false;
		if (type == until)
			return true;
	}
	return false;
}

/* Read what the source still sends until it closes (bounded). */
static void h_drain(struct mig_stream *s)
{
	uint64_t end = h_now_ms() + H_WAIT_MS;
	uint32_t len;
	uint8_t type;

	s->timeout_ms = 3000;
	while (h_now_ms() < end && !mig_section_read(s, h_buf, MIG_SECTION_MAX, &type, &len))
		;
}

/* ---- cases ------------------------------------------------------------- */

enum h_stage {
	H_AT_READY,	/* instead of READY */
	H_AT_SYNC,	/* instead of SYNC_ACK */
	H_AT_LOADED,	/* instead of LOADED, after END */
	H_AT_RUNNING,	/* post-copy: after POSTCOPY_RUN, instead of RUNNING */
	H_IN_POSTCOPY,	/* post-copy: after RUNNING */
	H_AT_RESUME,	/* post-copy broken, then resumed: instead of PC_KNOWN */
};

struct h_case {
	const char *name;
	enum h_stage stage;
	void (*reply)(int fd);
	const char *want;	/* in the source's error / log */
};

static void r_result_short(int fd) { h_sec(fd, MIG_SEC_RESULT, "\xea\xff\xff\xff\x03", 5); }
static void r_result_msg_beyond(int fd) { h_result(fd, -71, 60000, "short reason"); }
static void r_result_ok_early(int fd) { h_result(fd, 0, 2, "ok"); }
static void r_result_positive(int fd) { h_result(fd, 7, 4, "odd!"); }
static void r_unknown_type(int fd) { h_sec(fd, 99, NULL, 0); }
static void r_type0(int fd) { h_sec(fd, 0, "x", 1); }
/* READY with the codec set the destination accepts. */
static void h_ready(int fd, uint32_t codecs)
{
	uint8_t p[4] = { (uint8_t)codecs, (uint8_t)(codecs >> 8), (uint8_t)(codecs >> 16),
			 (uint8_t)(codecs >> 24) };

	h_sec(fd, MIG_SEC_READY, p, sizeof(p));
}

static void r_ready_empty(int fd) { h_sec(fd, MIG_SEC_READY, NULL, 0); }
/* Bit 28: neither a codec nor a capability (bits 29 to 31 are): never offered. */
static void r_ready_unknown_codec(int fd) { h_ready(fd, MIG_CODECS_BASE | 1u << 28); }
static void r_ready_no_raw(int fd) { h_ready(fd, 1u << MIG_CODEC_ZERO); }
static void r_bad_checksum(int fd) { h_sec_raw(fd, MIG_SEC_READY, 0, 0, NULL, 0, 1); }
static void r_reserved(int fd) { h_sec_raw(fd, MIG_SEC_READY, 1, 0, NULL, 0, 0); }
static void r_oversize(int fd) { h_sec_raw(fd, MIG_SEC_READY, 0, 0x7fffffffu, NULL, 0, 0); }
static void r_result_long(int fd)
{
	char msg[201];

	memset(msg, 'r', 200);
	msg[200] = '\0';
	h_result(fd, -71, 200, msg);
}
static void r_result_error(int fd) { h_result(fd, -5, 11, "disk broke!"); }
static void r_result_4k(int fd)
{
	static uint8_t big[4096];

	memset(big, 'x', sizeof(big));
	big[0] = 0xfb, big[1] = big[2] = big[3] = 0xff;	/* -5 */
	big[4] = 0xfa, big[5] = 0x0f;
	h_sec(fd, MIG_SEC_RESULT, big, sizeof(big));
}
static void r_cut_in_header(int fd) { h_send(fd, "\x10\x00\x00", 3); }
static void r_loaded_early(int fd) { h_sec(fd, MIG_SEC_LOADED, NULL, 0); }
static void r_ack_wrong_seq(int fd) { h_sec(fd, MIG_SEC_SYNC_ACK, "\x02\x00\x00\x00", 4); }
static void r_ack_short(int fd) { h_sec(fd, MIG_SEC_SYNC_ACK, "\x01\x00", 2); }
static void r_page_req_precopy(int fd) { h_sec(fd, MIG_SEC_PAGE_REQ, "\0\x10\0\0\0\0\0\0", 8); }
static void r_loaded_payload(int fd) { h_sec(fd, MIG_SEC_LOADED, "\0\0\0\0", 4); }

static void h_page_req(int fd, uint64_t gpa, uint32_t len)
{
	uint8_t p[16] = { 0 };

	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(gpa >> (8 * i));
	h_sec(fd, MIG_SEC_PAGE_REQ, p, len);
}
static void r_req_beyond(int fd) { h_page_req(fd, 1ULL << 40, 8); }
static void r_req_end(int fd) { h_page_req(fd, 32ULL << 20, 8); }
static void r_req_unaligned(int fd) { h_page_req(fd, 0x1001, 8); }
static void r_req_short(int fd) { h_page_req(fd, 0x1000, 4); }
static void r_req_long(int fd) { h_page_req(fd, 0x1000, 16); }
static void r_req_hole(int fd) { h_page_req(fd, 0xfffff000ULL, 8); }

static void h_known(int fd, uint64_t first, uint32_t nbits, uint32_t words, uint64_t fill)
{
	uint32_t len = 12 + 8 * words;
	uint8_t *p = malloc(len);

	assert_non_null(p);
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(first >> (8 * i));
	for (int i = 0; i < 4; i++)
		p[8 + i] = (uint8_t)(nbits >> (8 * i));
	for (uint32_t w = 0; w < words; w++)
		memcpy(p + 12 + 8 * w, &fill, 8);
	h_sec(fd, MIG_SEC_PC_KNOWN, p, len);
	free(p);
}
static void r_known_beyond(int fd) { h_known(fd, H_MEM_PAGES, 64, 1, ~0ULL); }
static void r_known_straddles(int fd) { h_known(fd, H_MEM_PAGES - 64, 128, 2, ~0ULL); }
static void r_known_unaligned(int fd) { h_known(fd, 3, 64, 1, ~0ULL); }
static void r_known_huge_first(int fd) { h_known(fd, ~0ULL << 6, 64, 1, ~0ULL); }
/*
 * nbits near 2^32: (nbits + 63) wraps in 32 bits, so a 12-byte payload
 * "fits" and the bitmap would be read far past it.  A first, valid and
 * all-zero PC_KNOWN as long as a section can be clears the source's
 * buffer, so the over-read finds no set bit to stop it before the end.
 */
static void r_known_nbits_wrap(int fd)
{
	uint32_t words = (MIG_SECTION_MAX - 12) / 8;

	h_known(fd, 0, words * 64, words, 0);
	h_known(fd, 0, 0xffffffffu, 0, 0);
}
static void r_known_zero_bits(int fd) { h_known(fd, 0, 0, 0, 0); }
static void r_known_short(int fd) { h_known(fd, 0, 128, 1, ~0ULL); }
static void r_resume_result(int fd) { h_result(fd, -71, 5, "nope!"); }
static void r_resume_unknown(int fd) { h_sec(fd, 77, NULL, 0); }

static const struct h_case h_cases[] = {
	{ "ready_result_short", H_AT_READY, r_result_short, "answered with section 17" },
	{ "ready_result_msg_beyond_payload", H_AT_READY, r_result_msg_beyond, "destination: short reason" },
	{ "ready_result_ok_instead", H_AT_READY, r_result_ok_early, "destination: ok" },
	{ "ready_result_positive_status", H_AT_READY, r_result_positive, "destination: odd!" },
	{ "ready_result_4k", H_AT_READY, r_result_4k, "exceeds the limit" },
	{ "ready_unknown_type", H_AT_READY, r_unknown_type, "99" },
	{ "ready_type_0", H_AT_READY, r_type0, "section 0" },
	{ "ready_bad_checksum", H_AT_READY, r_bad_checksum, "checksum" },
	{ "ready_reserved_nonzero", H_AT_READY, r_reserved, "reserved" },
	{ "ready_oversize_length", H_AT_READY, r_oversize, "exceeds the limit" },
	{ "ready_cut_in_header", H_AT_READY, r_cut_in_header, "closed the connection" },
	{ "ready_loaded_instead", H_AT_READY, r_loaded_early, "answered with section 24" },
	{ "ready_without_codecs", H_AT_READY, r_ready_empty, "READY is 0 bytes, not 4" },
	{ "ready_unknown_codec", H_AT_READY, r_ready_unknown_codec, "accepted codecs 0x10000003" },
	{ "ready_without_raw", H_AT_READY, r_ready_no_raw, "does not accept raw pages" },
	{ "sync_ack_wrong_sequence", H_AT_SYNC, r_ack_wrong_seq, "answered SYNC" },
	{ "sync_ack_short", H_AT_SYNC, r_ack_short, "answered SYNC" },
	{ "sync_page_req_in_precopy", H_AT_SYNC, r_page_req_precopy, "answered SYNC with section 20" },
	{ "sync_bad_checksum", H_AT_SYNC, r_bad_checksum, "checksum" },
	{ "sync_result_error", H_AT_SYNC, r_result_error, "destination: disk broke!" },
	{ "loaded_with_payload", H_AT_LOADED, r_loaded_payload, "answered with section 24" },
	{ "loaded_result_short", H_AT_LOADED, r_result_short, "answered with section 17" },
	{ "loaded_result_msg_beyond_payload", H_AT_LOADED, r_result_msg_beyond, "destination: short reason" },
	{ "loaded_unknown_type", H_AT_LOADED, r_unknown_type, "99" },
	{ "loaded_bad_checksum", H_AT_LOADED, r_bad_checksum, "checksum" },
	{ "loaded_oversize_length", H_AT_LOADED, r_oversize, "exceeds the limit" },
	{ "pc_req_beyond_ram", H_AT_RUNNING, r_req_beyond, "not RAM" },
	{ "pc_req_at_ram_end", H_AT_RUNNING, r_req_end, "not RAM" },
	{ "pc_req_unaligned", H_AT_RUNNING, r_req_unaligned, "not RAM" },
	{ "pc_req_short", H_AT_RUNNING, r_req_short, "malformed page request" },
	{ "pc_req_long", H_IN_POSTCOPY, r_req_long, "malformed page request" },
	{ "pc_req_in_hole", H_IN_POSTCOPY, r_req_hole, "not RAM" },
	{ "pc_unknown_type", H_IN_POSTCOPY, r_unknown_type, "section 99" },
	{ "pc_result_long_reason", H_IN_POSTCOPY, r_result_long, "gave up during post-copy" },
	{ "resume_known_beyond_ram", H_AT_RESUME, r_known_beyond, "answered the resume badly" },
	{ "resume_known_straddles_end", H_AT_RESUME, r_known_straddles, "answered the resume badly" },
	{ "resume_known_unaligned", H_AT_RESUME, r_known_unaligned, "answered the resume badly" },
	{ "resume_known_huge_first", H_AT_RESUME, r_known_huge_first, "answered the resume badly" },
	{ "resume_known_nbits_wrap", H_AT_RESUME, r_known_nbits_wrap, "answered the resume badly" },
	{ "resume_known_zero_bits", H_AT_RESUME, r_known_zero_bits, "answered the resume badly" },
	{ "resume_known_short", H_AT_RESUME, r_known_short, "answered the resume badly" },
	{ "resume_result_instead", H_AT_RESUME, r_resume_result, "answered the resume badly" },
	{ "resume_unknown_type", H_AT_RESUME, r_resume_unknown, "answered the resume badly" },
};
#define H_NCASES (sizeof(h_cases) / sizeof(h_cases[0]))

/* Start `ferry migrate` (its JSON into h_json); the fake destination's connection. */
static int h_migrate(const char *const *extra, pid_t *mig, struct mig_stream *s)
{
	char uri[160];
	const char *args[16] = { "migrate", h_ctl, uri, "--json" };
	int n = 4, lfd = h_listen(), fd;

	snprintf(uri, sizeof(uri), "unix:%s", h_sock);
	for (int i = 0; extra && extra[i]; i++)
		args[n++] = extra[i];
	args[n] = NULL;
	unlink(h_json);
	*mig = h_spawn(h_json, args);
	fd = h_accept(lfd);
	struct mig_channel *ch;
	/* The stream reads through a channel; the test still writes raw sections to fd. */
	assert_int_equal(mig_channel_socket(fd, &ch), 0);
	assert_int_equal(mig_stream_init(s, ch, 1 << 20), 0);
	s->timeout_ms = 10000;
	uint8_t hdr[MIG_MAGIC_LEN + 4];
	mig_stream_get(s, hdr, sizeof(hdr));
	assert_int_equal(mig_stream_error(s), 0);
	assert_memory_equal(hdr, MIG_MAGIC, MIG_MAGIC_LEN);
	return fd;
}

/* Pre-copy cases: the source must fail the migration and run on. */
static void h_precopy_case(const struct h_case *c)
{
	struct mig_stream s;
	uint32_t len;
	pid_t mig;
	int fd = h_migrate(NULL, &mig, &s);

	assert_true(h_read_until(&s, MIG_SEC_CONFIG, &len));
	if (c->stage >= H_AT_SYNC) {
		h_ready(fd, MIG_CODECS_BASE);
		assert_true(h_read_until(&s, MIG_SEC_SYNC, &len));
	}
	if (c->stage >= H_AT_LOADED) {
		h_sec(fd, MIG_SEC_SYNC_ACK, h_buf, len);
		assert_true(h_read_until(&s, MIG_SEC_END, &len));
	}
	c->reply(fd);
	h_drain(&s);
	mig_stream_destroy(&s);
	int rc = h_wait(mig, H_WAIT_MS);
	char *json = h_slurp(h_json, 1);
	if (rc != 1 || !strstr(json, "\"failed\"") || !strstr(json, c->want))
		fail_msg("%s: ferry migrate exit %d (want 1), want status failed and \"%s\":\n%s",
			 c->name, rc, c->want, json);
	if (!h_source_running())
		fail_msg("%s: the source guest does not run on", c->name);
	h_assert_no_sanitizer();
	char *p = strstr(json, "\"error\"");
	print_message("  %s: %.*s\n", c->name, p ? (int)strcspn(p, "\n") : 0, p ? p : "");
}

/* After RUNNING and a cut, a resume: the source reconnects to us again. */
static int h_resume(pid_t *mig, struct mig_stream *s)
{
	const char *extra[] = { "--resume", NULL };
	int fd = h_migrate(extra, mig, s);
	uint32_t len;

	assert_true(h_read_until(s, MIG_SEC_RESUME, &len));
	return fd;
}

/* Post-copy cases: the VM is lost (the source never resumes), nothing crashes. */
static void h_postcopy_case(const struct h_case *c)
{
	const char *extra[] = { "--mode", "postcopy", "--resume-timeout", "30s", NULL };
	struct mig_stream s;
	uint32_t len;
	pid_t mig;
	int fd;

	h_source_start();
	fd = h_migrate(extra, &mig, &s);
	assert_true(h_read_until(&s, MIG_SEC_CONFIG, &len));
	h_ready(fd, MIG_CODECS_BASE);
	assert_true(h_read_until(&s, MIG_SEC_POSTCOPY_RUN, &len));
	if (c->stage >= H_IN_POSTCOPY)
		h_sec(fd, MIG_SEC_RUNNING, NULL, 0);
	if (c->stage == H_AT_RESUME) {
		mig_stream_destroy(&s);		/* the connection breaks */
		int rc = h_wait(mig, H_WAIT_MS);
		if (rc != 4)
			fail_msg("%s: a broken post-copy: ferry migrate exit %d, want 4 (paused)",
				 c->name, rc);
		fd = h_resume(&mig, &s);
	}
	c->reply(fd);
	h_drain(&s);
	mig_stream_destroy(&s);
	int rc = h_wait(mig, H_WAIT_MS);
	int src = h_wait(h_src, H_WAIT_MS);
	h_src = src < 0 ? h_src : -1;
	char *json = h_slurp(h_json, 1), *log = h_slurp(h_log, 0);
	if (src != 75 || !strstr(log, "the VM is lost") ||
	    (!strstr(json, c->want) && !strstr(log, c->want)))
		fail_msg("%s: source exit %d (want 75, the VM lost), ferry migrate exit %d, want "
			 "\"%s\"; migrate said:\n%s\nsource log:\n%s", c->name, src, rc, c->want,
			 json, log);
	h_assert_no_sanitizer();
	print_message("  %s: ferry migrate exit %d, source exit %d\n", c->name, rc, src);
	h_source_kill();
}

static void h_case_run(void **state)
{
	const struct h_case *c = *state;

	if (c->stage <= H_AT_LOADED) {
		if (h_src < 0)
			h_source_start();
		h_precopy_case(c);
	} else {
		h_source_kill();
		h_postcopy_case(c);
	}
}

/* ---- setup ------------------------------------------------------------- */

static int h_setup(void **state)
{
	const char *build = getenv("BUILD");

	(void)state;
	build = build && *build ? build : "build";
	snprintf(h_ferry, sizeof(h_ferry), "%s/ferry-san", build);
	snprintf(h_probe, sizeof(h_probe), "%s/probe.elf", build);
	if (access(h_ferry, X_OK) < 0 || access(h_probe, R_OK) < 0) {
		fprintf(stderr, "%s or %s: not built\n", h_ferry, h_probe);
		return -1;
	}
	strcpy(h_dir, "/tmp/ferry-hret-XXXXXX");
	if (!mkdtemp(h_dir))
		return -1;
	snprintf(h_ctl, sizeof(h_ctl), "%s/src.ctl", h_dir);
	snprintf(h_sock, sizeof(h_sock), "%s/dst.sock", h_dir);
	snprintf(h_log, sizeof(h_log), "%s/src.log", h_dir);
	snprintf(h_serial, sizeof(h_serial), "%s/src.serial", h_dir);
	snprintf(h_json, sizeof(h_json), "%s/mig.json", h_dir);
	h_buf = malloc(MIG_SECTION_MAX);
	return h_buf ? 0 : -1;
}

static int h_teardown(void **state)
{
	char cmd[128];

	(void)state;
	h_source_kill();
	free(h_buf);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", h_dir);
	if (system(cmd))
		fprintf(stderr, "cannot remove %s\n", h_dir);
	return 0;
}

int main(void)
{
	struct CMUnitTest tests[H_NCASES];
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);

	if (fd < 0) {
		printf("SKIP: /dev/kvm not available (%s)\n", strerror(errno));
		return 77;
	}
	close(fd);
	log_set_level(LOG_ERROR);
	signal(SIGPIPE, SIG_IGN);
	for (size_t i = 0; i < H_NCASES; i++)
		tests[i] = (struct CMUnitTest){
			.name = h_cases[i].name, .test_func = h_case_run,
			.initial_state = (void *)&h_cases[i],
		};
	return _cmocka_run_group_tests("hostile_return", tests, H_NCASES, h_setup, h_teardown);
}
