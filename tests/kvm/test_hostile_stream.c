/*
 * The destination side of a migration against hostile streams
 * (docs/migration-stream.md): for each case, start a real sanitized
 * `ferry-san run --incoming unix:...`, connect, send a crafted stream, read
 * the return path, and check that the destination says no - exit status
 * 65 (bad stream) or 74 (lost connection), a message naming the problem,
 * a RESULT error to the source, no sanitizer report, no guest output, no
 * socket file left - and, for one well-formed stream, that the guest it
 * carries really runs there; for a post-copy stream that delivers a page
 * twice, that --verify checks the copy the guest got.
 *
 * Streams are built byte by byte here (t_sec() mirrors section.c; a
 * sanity test checks it against mig_section_write()), so framing can be
 * broken anywhere.  The STATE is captured from a real, never-run KVM VM in
 * this process, so it is exactly what this host's KVM accepts.
 *
 * Environment: BUILD (default "build") locates $BUILD/ferry-san.  Skips
 * (77) without /dev/kvm.
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
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <lz4.h>
#include <xxhash.h>
#include <zstd.h>
#include <cmocka.h>

#include "migration/block.h"
#include "migration/codec/codec.h"
#include "migration/config.h"
#include "migration/digest.h"
#include "migration/format.h"
#include "migration/section.h"
#include "migration/stream.h"
#include "util/log.h"
#include "board/machine.h"
#include "board/machine_state.h"

/* RAM entries as the tests write them: address | encoding (codec id). */
#define MIG_PAGE_ZERO	MIG_CODEC_ZERO
#define MIG_PAGE_RAW	MIG_CODEC_RAW
#define T_CODECS	((1u << MIG_CODEC_ZERO) | (1u << MIG_CODEC_RAW))

#define T_MEM		(16ULL << 20)
#define T_CODE_GPA	0x1000ULL
#define T_DATA_GPA	0x3000ULL
#define T_GUEST_EXIT	42
#define T_WAIT_MS	10000	/* for the destination to exit */

/*
 * Real mode at 0x1000: print "OK\n" on COM1, write 42 to the debug-exit
 * port, halt.
 */
static const uint8_t t_code[] = {
	0xba, 0xf8, 0x03,	/* mov dx,0x3f8 */
	0xb0, 'O', 0xee,	/* mov al,'O'; out dx,al */
	0xb0, 'K', 0xee,
	0xb0, '\n', 0xee,
	0xb0, T_GUEST_EXIT,	/* mov al,42 */
	0xe6, 0xf4,		/* out 0xf4,al */
	0xf4,			/* 1: hlt */
	0xeb, 0xfd,		/* jmp 1b */
};

static char t_ferry[512];
static char t_dir[64];
static char t_sock[128];
static char t_serial[128];
static char t_disk[128];		/* a 1 MiB image, for the block cases */
static char t_disk_arg[160];		/* "path=" it: what T_DISK in a case's extra becomes */
#define T_DISK "@disk"

/* A real never-run VM's state, decoded (1 vCPU), and a bootable variant. */
static struct machine_state t_real;
/* Its COM1 registers (the serial-8250 record). */
#define T_COM1(st) ((struct serial_regs *)machine_state_dev((st), DEVICE_SERIAL, 0))
static struct vmstate_buf t_state_boot;	/* vCPU 0 at 0:0x1000, real mode */
static uint64_t t_state_digest;		/* its --verify digest, as a source computes it */
static uint8_t *t_img;			/* what the standard stream's RAM holds */

/* Offsets into the standard stream where truncation cases cut it. */
struct t_marks {
	size_t in_header, after_header, after_config, mid_ram, after_final_pass;
	size_t before_end, end;
};
static struct t_marks t_mk;

/* ---- byte buffers ------------------------------------------------------ */

static void t_put(struct vmstate_buf *b, const void *p, size_t n)
{
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n)
			cap *= 2;
		b->data = realloc(b->data, cap);
		assert_non_null(b->data);
		b->cap = cap;
	}
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
}

static void t_le(struct vmstate_buf *b, uint64_t v, unsigned w)
{
	uint8_t x[8];

	for (unsigned i = 0; i < w; i++)
		x[i] = (uint8_t)(v >> (8 * i));
	t_put(b, x, w);
}

static void t_u8(struct vmstate_buf *b, uint8_t v) { t_le(b, v, 1); }
static void t_u16(struct vmstate_buf *b, uint16_t v) { t_le(b, v, 2); }
static void t_u32(struct vmstate_buf *b, uint32_t v) { t_le(b, v, 4); }
static void t_u64(struct vmstate_buf *b, uint64_t v) { t_le(b, v, 8); }

static void t_header(struct vmstate_buf *b, const char *magic, uint32_t version)
{
	t_put(b, magic, MIG_MAGIC_LEN);
	t_u32(b, version);
}

/*
 * A section with every framing field under control: reserved bytes r,
 * declared length len_field, payload (plen bytes), checksum xor sum_xor.
 */
static void t_sec_raw(struct vmstate_buf *b, uint8_t type, uint8_t r, uint32_t len_field,
		      const void *payload, size_t plen, uint64_t sum_xor)
{
	uint8_t hdr[MIG_SECTION_HDR] = { type, r, 0, 0 };
	XXH3_state_t *h = XXH3_createState();

	for (int i = 0; i < 4; i++)
		hdr[4 + i] = (uint8_t)(len_field >> (8 * i));
	XXH3_64bits_reset(h);
	XXH3_64bits_update(h, hdr, sizeof(hdr));
	XXH3_64bits_update(h, payload, plen);
	t_put(b, hdr, sizeof(hdr));
	t_put(b, payload, plen);
	t_u64(b, XXH3_64bits_digest(h) ^ sum_xor);
	XXH3_freeState(h);
}

static void t_sec(struct vmstate_buf *b, uint8_t type, const void *payload, size_t plen)
{
	t_sec_raw(b, type, 0, (uint32_t)plen, payload, plen, 0);
}

static void t_sec_buf(struct vmstate_buf *b, uint8_t type, const struct vmstate_buf *p)
{
	t_sec(b, type, p->data, p->len);
}

/* ---- payloads ---------------------------------------------------------- */

/* A mig-config record, by hand, so any value can be sent (docs/vmstate.md). */
static void t_config_codecs(struct vmstate_buf *p, uint64_t memory, uint32_t vcpus,
			    uint32_t page_size, uint32_t flags, uint32_t codecs,
			    const void *cmdline, uint16_t cmdline_len)
{
	struct vmstate_buf body = { 0 };

	t_u32(&body, 8); t_u64(&body, memory);
	t_u32(&body, 4); t_u32(&body, vcpus);
	t_u32(&body, 4); t_u32(&body, page_size);
	t_u32(&body, 4); t_u32(&body, flags);
	t_u32(&body, 4); t_u32(&body, codecs);
	t_u32(&body, 2); t_u16(&body, cmdline_len);
	t_u32(&body, cmdline_len); t_put(&body, cmdline, cmdline_len);
	t_u32(&body, 2); t_u16(&body, 0);	/* version 3: no CPUID entries */
	t_u32(&body, 0);
	t_u32(&body, 2); t_u16(&body, 0);	/* and no MSRs */
	t_u32(&body, 0);
	t_u32(&body, 4); t_u32(&body, 0);	/* version 4: one connection */
	t_u32(&body, 8); t_u64(&body, 0);	/* and no migration id */
	t_u8(p, 10);
	t_put(p, "mig-config", 10);
	t_u32(p, 4);
	t_u32(p, (uint32_t)body.len);
	t_put(p, body.data, body.len);
	free(body.data);
}

static void t_config_payload(struct vmstate_buf *p, uint64_t memory, uint32_t vcpus,
			     uint32_t page_size, uint32_t flags, const void *cmdline,
			     uint16_t cmdline_len)
{
	t_config_codecs(p, memory, vcpus, page_size, flags, T_CODECS, cmdline, cmdline_len);
}

static void t_config(struct vmstate_buf *b, uint64_t memory, uint32_t vcpus, uint32_t flags)
{
	struct vmstate_buf p = { 0 };

	t_config_payload(&p, memory, vcpus, GUEST_PAGE_SIZE, flags, "console=ttyS0", 13);
	t_sec_buf(b, MIG_SEC_CONFIG, &p);
	free(p.data);
}

static void t_pass(struct vmstate_buf *b, uint32_t pass, bool final)
{
	struct vmstate_buf p = { 0 };

	t_u32(&p, pass);
	t_u64(&p, 4);
	t_u8(&p, final);
	t_sec_buf(b, MIG_SEC_PASS, &p);
	free(p.data);
}

/*
 * A RAM batch: n entries (address | encoding, length: 4096 for raw, 0 for
 * any other); data for the raw ones from t_img.
 */
static void t_ram_payload(struct vmstate_buf *p, const uint64_t *e, uint32_t n)
{
	t_u32(p, n);
	for (uint32_t i = 0; i < n; i++) {
		t_u64(p, e[i]);
		t_u32(p, (e[i] & MIG_PAGE_ENC_MASK) == MIG_PAGE_RAW ? GUEST_PAGE_SIZE : 0);
	}
	for (uint32_t i = 0; i < n; i++) {
		if ((e[i] & MIG_PAGE_ENC_MASK) != MIG_PAGE_RAW)
			continue;
		uint64_t gpa = e[i] & ~MIG_PAGE_ENC_MASK;
		if (gpa + GUEST_PAGE_SIZE <= T_MEM) {
			t_put(p, t_img + gpa, GUEST_PAGE_SIZE);
		} else {
			uint8_t junk[GUEST_PAGE_SIZE];
			memset(junk, 0xa5, sizeof(junk));
			t_put(p, junk, sizeof(junk));
		}
	}
}

static void t_ram(struct vmstate_buf *b, const uint64_t *e, uint32_t n)
{
	struct vmstate_buf p = { 0 };

	t_ram_payload(&p, e, n);
	t_sec_buf(b, MIG_SEC_RAM, &p);
	free(p.data);
}

static void t_ram1(struct vmstate_buf *b, uint64_t entry)
{
	t_ram(b, &entry, 1);
}

/* A RAM_RUN section: gpa, count, then `pages` pages of data (the image's where it has them). */
static void t_ram_run(struct vmstate_buf *b, uint64_t gpa, uint32_t count, uint32_t pages)
{
	struct vmstate_buf p = { 0 };
	uint8_t junk[GUEST_PAGE_SIZE];

	memset(junk, 0xa5, sizeof(junk));
	t_u64(&p, gpa);
	t_u32(&p, count);
	for (uint32_t i = 0; i < pages; i++) {
		uint64_t at = gpa + (uint64_t)i * GUEST_PAGE_SIZE;
		t_put(&p, at < T_MEM && at + GUEST_PAGE_SIZE <= T_MEM ? t_img + at : junk, GUEST_PAGE_SIZE);
	}
	t_sec_buf(b, MIG_SEC_RAM_RUN, &p);
	free(p.data);
}

static void t_state_encode(const struct machine_state *st, struct vmstate_buf *out)
{
	assert_int_equal(vmstate_save(&x86_vm_state_vmsd, &st->vm, out), 0);
	for (unsigned i = 0; i < st->nr_vcpus; i++)
		assert_int_equal(vmstate_save(&x86_vcpu_state_vmsd, &st->vcpus[i], out), 0);
	assert_int_equal(vmstate_save(&serial_vmsd, T_COM1(st), out), 0);
}

/* t_real, copied, for a case to change (the device states stay shared: read only). */
static void t_state_copy(struct machine_state *st)
{
	*st = t_real;
	st->vcpus = calloc(t_real.nr_vcpus, sizeof(*st->vcpus));
	assert_non_null(st->vcpus);
	memcpy(st->vcpus, t_real.vcpus, t_real.nr_vcpus * sizeof(*st->vcpus));
}

static void t_state_sec(struct vmstate_buf *b, const struct machine_state *st)
{
	struct vmstate_buf p = { 0 };

	t_state_encode(st, &p);
	t_sec_buf(b, MIG_SEC_STATE, &p);
	free(p.data);
}

static uint64_t t_ram_digest(void)
{
	struct guest_memory mem = {
		.fd = -1, .host = t_img, .size = T_MEM, .nr_regions = 1,
		.regions = { { .gpa = 0, .size = T_MEM, .offset = 0 } },
	};

	return mig_digest_of_memory(&mem);
}

/* DIGEST: pages, RAM digest, device state digest. */
static void t_digest_state(struct vmstate_buf *b, uint64_t pages, uint64_t digest, uint64_t state)
{
	struct vmstate_buf p = { 0 };

	t_u64(&p, pages);
	t_u64(&p, digest);
	t_u64(&p, state);
	t_sec_buf(b, MIG_SEC_DIGEST, &p);
	free(p.data);
}

/* ... with the right state digest for t_state_boot. */
static void t_digest(struct vmstate_buf *b, uint64_t pages, uint64_t digest)
{
	t_digest_state(b, pages, digest, t_state_digest);
}

static void t_end(struct vmstate_buf *b)
{
	t_sec(b, MIG_SEC_END, NULL, 0);
}

/*
 * The standard stream: CONFIG (16 MiB, 1 vCPU, flags), PASS 1, RAM (code,
 * a zero page, data), PASS 2 final, RAM (code again), STATE (bootable),
 * DIGEST with verify, END.  Records the truncation marks.
 */
static void t_std(struct vmstate_buf *b, uint32_t flags)
{
	const uint64_t batch1[] = {
		T_CODE_GPA | MIG_PAGE_RAW, 0x2000 | MIG_PAGE_ZERO, T_DATA_GPA | MIG_PAGE_RAW,
		(T_MEM - GUEST_PAGE_SIZE) | MIG_PAGE_ZERO,
	};

	t_header(b, MIG_MAGIC, MIG_VERSION);
	t_mk.in_header = 5;
	t_mk.after_header = b->len;
	t_config(b, T_MEM, 1, flags);
	t_mk.after_config = b->len;
	t_pass(b, 1, false);
	size_t ram_start = b->len;
	t_ram(b, batch1, 4);
	t_mk.mid_ram = ram_start + (b->len - ram_start) / 2;
	t_pass(b, 2, true);
	t_mk.after_final_pass = b->len;
	t_ram_run(b, T_CODE_GPA, 1, 1);		/* the same page again, as a run */
	t_sec_buf(b, MIG_SEC_STATE, &t_state_boot);
	if (flags & MIG_FLAG_VERIFY)
		t_digest(b, T_MEM / GUEST_PAGE_SIZE, t_ram_digest());
	t_mk.before_end = b->len;
	t_end(b);
	t_mk.end = b->len;
	t_sec(b, MIG_SEC_GO, NULL, 0);	/* the source's word, sent without waiting for LOADED */
}

/* Header, CONFIG (16 MiB, 1 vCPU, no verify), PASS 1 final: RAM may follow. */
static void t_to_final(struct vmstate_buf *b)
{
	t_header(b, MIG_MAGIC, MIG_VERSION);
	t_config(b, T_MEM, 1, 0);
	t_pass(b, 1, true);
}

/* ---- running a destination --------------------------------------------- */

struct t_result {
	int status;		/* from waitpid */
	char out[65536];	/* its stdout + stderr */
	size_t outlen;
	bool ready;		/* READY came back */
	bool result;		/* RESULT came back */
	int32_t result_status;
	char result_msg[300];
};

static uint64_t t_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void t_drain(int fd, struct t_result *r)
{
	for (;;) {
		char tmp[4096];
		ssize_t n = read(fd, tmp, sizeof(tmp));
		if (n <= 0)
			return;
		size_t room = sizeof(r->out) - 1 - r->outlen;
		size_t k = (size_t)n < room ? (size_t)n : room;
		memcpy(r->out + r->outlen, tmp, k);
		r->outlen += k;
		r->out[r->outlen] = '\0';
	}
}

static pid_t t_spawn(const char *const *extra, int *outfd)
{
	char uri[160], serial[160];
	const char *argv[16];
	int n = 0, p[2];
	pid_t pid;

	snprintf(uri, sizeof(uri), "unix:%s", t_sock);
	snprintf(serial, sizeof(serial), "file:%s", t_serial);
	argv[n++] = t_ferry;
	argv[n++] = "run";
	argv[n++] = "--incoming";
	argv[n++] = uri;
	argv[n++] = "--serial";
	argv[n++] = serial;
	for (int i = 0; extra && extra[i] && n < 14; i++)
		argv[n++] = strcmp(extra[i], T_DISK) ? extra[i] : t_disk_arg;
	argv[n] = NULL;
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int devnull = open("/dev/null", O_RDONLY);
		dup2(devnull, 0);
		dup2(p[1], 1);
		dup2(p[1], 2);
		execv(t_ferry, (char *const *)argv);
		fprintf(stderr, "cannot run %s: %s\n", t_ferry, strerror(errno));
		_exit(127);
	}
	close(p[1]);
	fcntl(p[0], F_SETFL, O_NONBLOCK);
	*outfd = p[0];
	return pid;
}

/* Connect once the destination listens; -1 if it exited first or never did. */
static int t_connect(pid_t pid, int outfd, struct t_result *r)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	uint64_t deadline = t_now_ms() + 5000;

	strcpy(sa.sun_path, t_sock);
	while (t_now_ms() < deadline) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		assert_true(fd >= 0);
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			return fd;
		close(fd);
		t_drain(outfd, r);
		if (waitpid(pid, &r->status, WNOHANG) == pid)
			return -2;
		usleep(2000);
	}
	return -1;
}

static void t_send(int fd, const uint8_t *p, size_t len)
{
	struct timeval tv = { .tv_sec = 3 };

	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;	/* the destination gave up early: fine */
		p += n;
		len -= (size_t)n;
	}
}

/* Read the return path with ferry's own section reader until EOF. */
static void t_read_replies(int fd, struct t_result *r)
{
	struct mig_stream s;
	struct mig_channel *ch;
	uint8_t buf[1024];

	assert_int_equal(mig_channel_socket(fd, &ch), 0);
	assert_int_equal(mig_stream_init(&s, ch, 1 << 16), 0);
	s.timeout_ms = 5000;
	for (;;) {
		uint8_t type;
		uint32_t len;
		if (mig_section_read(&s, buf, sizeof(buf), &type, &len))
			break;
		/*
		 * READY: the codecs accepted, raw among them, none this ferry lacks
		 * (cases offer zero and raw, or every codec for the encodings' cases).
		 */
		if (type == MIG_SEC_READY && len == 4 && (buf[0] & ~MIG_CODECS_KNOWN) == 0 &&
		    (buf[0] & (1u << MIG_CODEC_RAW)) && !buf[1] && !buf[2] && !buf[3]) {
			r->ready = true;
		} else if (type == MIG_SEC_RESULT && len >= 6) {
			uint16_t n = (uint16_t)(buf[4] | buf[5] << 8);
			r->result = true;
			r->result_status = (int32_t)(buf[0] | buf[1] << 8 | buf[2] << 16 |
						     (uint32_t)buf[3] << 24);
			if (n > len - 6)
				n = (uint16_t)(len - 6);
			if (n >= sizeof(r->result_msg))
				n = sizeof(r->result_msg) - 1;
			memcpy(r->result_msg, buf + 6, n);
			r->result_msg[n] = '\0';
		}
	}
	mig_stream_destroy(&s);
}

/* Wait for pid at most T_WAIT_MS, collecting its output; false: killed. */
static bool t_reap(pid_t pid, int outfd, struct t_result *r)
{
	uint64_t deadline = t_now_ms() + T_WAIT_MS;
	bool exited = false;

	while (!exited && t_now_ms() < deadline) {
		struct pollfd p = { .fd = outfd, .events = POLLIN };
		poll(&p, 1, 20);
		t_drain(outfd, r);
		exited = waitpid(pid, &r->status, WNOHANG) == pid;
	}
	if (!exited) {
		kill(pid, SIGKILL);
		waitpid(pid, &r->status, 0);
	}
	/* Everything it wrote is in the pipe now: read up to EOF. */
	for (;;) {
		struct pollfd p = { .fd = outfd, .events = POLLIN };
		char tmp[4096];
		if (poll(&p, 1, 1000) <= 0)
			break;
		ssize_t n = read(outfd, tmp, sizeof(tmp));
		if (n <= 0)
			break;
		size_t room = sizeof(r->out) - 1 - r->outlen;
		size_t k = (size_t)n < room ? (size_t)n : room;
		memcpy(r->out + r->outlen, tmp, k);
		r->outlen += k;
		r->out[r->outlen] = '\0';
	}
	close(outfd);
	return exited;
}

/*
 * Run a destination (extra: more arguments), send `stream` (its first
 * `len` bytes), close our sending side, read its answers and wait for it.
 */
static void t_run(const struct vmstate_buf *stream, size_t len, const char *const *extra,
		  struct t_result *r)
{
	int outfd, fd;
	pid_t pid;

	memset(r, 0, sizeof(*r));
	unlink(t_serial);
	unlink(t_sock);
	pid = t_spawn(extra, &outfd);
	fd = t_connect(pid, outfd, r);
	if (fd < 0) {
		if (fd == -1) {
			kill(pid, SIGKILL);
			waitpid(pid, &r->status, 0);
		}
		t_drain(outfd, r);
		close(outfd);
		fail_msg("the destination never accepted a connection on %s; its output:\n%s",
			 t_sock, r->out);
	}
	t_send(fd, stream->data, len);
	shutdown(fd, SHUT_WR);
	t_read_replies(fd, r);	/* closes fd */
	if (!t_reap(pid, outfd, r))
		fail_msg("the destination did not exit within %d ms (killed); its output:\n%s",
			 T_WAIT_MS, r->out);
}

static bool t_serial_empty(void)
{
	struct stat st;

	return stat(t_serial, &st) < 0 || st.st_size == 0;
}

/* The checks every refused stream must pass. */
static void t_check_refused(const struct t_result *r, int want_exit, const char *want_msg,
			    bool want_ready)
{
	bool ok = true;

#define T_CHECK(cond, ...) do {						\
		if (!(cond)) {						\
			print_error(__VA_ARGS__);			\
			print_error("\n");				\
			ok = false;					\
		}							\
	} while (0)
	T_CHECK(WIFEXITED(r->status), "destination died of signal %d",
		WIFSIGNALED(r->status) ? WTERMSIG(r->status) : 0);
	T_CHECK(WIFEXITED(r->status) && WEXITSTATUS(r->status) == want_exit,
		"exit status %d, expected %d", WIFEXITED(r->status) ? WEXITSTATUS(r->status) : -1,
		want_exit);
	T_CHECK(strstr(r->out, want_msg), "output does not mention \"%s\"", want_msg);
	T_CHECK(strstr(r->out, "the guest was not started"),
		"output does not say the guest was not started");
	T_CHECK(!strstr(r->out, "Sanitizer") && !strstr(r->out, "runtime error"),
		"sanitizer report in the output");
	T_CHECK(t_serial_empty(), "the serial file has guest output");
	T_CHECK(access(t_sock, F_OK) < 0, "socket file %s left behind", t_sock);
	T_CHECK(r->ready == want_ready, "READY %s", r->ready ? "came back" : "did not come back");
	if (want_exit == 65) {
		T_CHECK(r->result, "no RESULT came back");
		T_CHECK(r->result_status < 0, "RESULT status %d, expected an error",
			r->result_status);
		T_CHECK(strstr(r->result_msg, want_msg), "RESULT message \"%s\" lacks \"%s\"",
			r->result_msg, want_msg);
	}
#undef T_CHECK
	if (!ok)
		fail_msg("destination output:\n%s\nRESULT: %s %d \"%s\"", r->out,
			 r->result ? "yes" : "no", r->result_status, r->result_msg);
}

/* ---- cases ------------------------------------------------------------- */

struct t_case {
	const char *name;
	void (*build)(struct vmstate_buf *b, size_t *len);	/* *len preset to b->len */
	int want_exit;
	const char *want_msg;
	bool want_ready;
	const char *extra[4];
};

/* Truncations of the standard stream (verify on). */
static void b_trunc_in_header(struct vmstate_buf *b, size_t *len)
{ t_std(b, MIG_FLAG_VERIFY); *len = t_mk.in_header; }
static void b_trunc_after_header(struct vmstate_buf *b, size_t *len)
{ t_std(b, MIG_FLAG_VERIFY); *len = t_mk.after_header; }
static void b_trunc_in_section_header(struct vmstate_buf *b, size_t *len)
{ t_std(b, MIG_FLAG_VERIFY); *len = t_mk.after_header + 3; }
static void b_trunc_after_config(struct vmstate_buf *b, size_t *len)
{ t_std(b, MIG_FLAG_VERIFY); *len = t_mk.after_config; }
static void b_trunc_mid_ram(struct vmstate_buf *b, size_t *len)
{ t_std(b, MIG_FLAG_VERIFY); *len = t_mk.mid_ram; }
static void b_trunc_after_final_pass(struct vmstate_buf *b, size_t *len)
{ t_std(b, MIG_FLAG_VERIFY); *len = t_mk.after_final_pass; }
static void b_trunc_before_end(struct vmstate_buf *b, size_t *len)
{ t_std(b, MIG_FLAG_VERIFY); *len = t_mk.before_end; }
static void b_trunc_in_checksum(struct vmstate_buf *b, size_t *len)
{ t_std(b, MIG_FLAG_VERIFY); *len = t_mk.end - 3; }

/* Header. */
static void b_bad_magic(struct vmstate_buf *b, size_t *len)
{ t_header(b, "FERRYMAG", 1); t_config(b, T_MEM, 1, 0); *len = b->len; }
static void b_version3(struct vmstate_buf *b, size_t *len)
{ t_header(b, MIG_MAGIC, 3); t_config(b, T_MEM, 1, 0); *len = b->len; }
static void b_version1(struct vmstate_buf *b, size_t *len)
{ t_header(b, MIG_MAGIC, 1); t_config(b, T_MEM, 1, 0); *len = b->len; }
static void b_version0(struct vmstate_buf *b, size_t *len)
{ t_header(b, MIG_MAGIC, 0); t_config(b, T_MEM, 1, 0); *len = b->len; }

/* RAM addresses and kinds. */
static void b_ram_past_end(struct vmstate_buf *b, size_t *len)
{ t_to_final(b); t_ram1(b, T_MEM | MIG_PAGE_RAW); *len = b->len; }
static void b_ram_huge(struct vmstate_buf *b, size_t *len)
{ t_to_final(b); t_ram1(b, 0xfffffffffffff000ULL | MIG_PAGE_ZERO); *len = b->len; }
static void b_ram_hole(struct vmstate_buf *b, size_t *len)
{
	/* 3 GiB + 64 MiB: RAM at 0..3G and 4G..4G+64M; 0xfffff000 is in the hole. */
	t_header(b, MIG_MAGIC, MIG_VERSION);
	t_config(b, (3ULL << 30) + (64ULL << 20), 1, 0);
	t_pass(b, 1, true);
	const uint64_t e[] = { 0x100000000ULL | MIG_PAGE_ZERO, 0xfffff000ULL | MIG_PAGE_ZERO };
	t_ram(b, e, 2);
	*len = b->len;
}
static void b_ram_later_entry_bad(struct vmstate_buf *b, size_t *len)
{
	/* Nothing of a batch is written unless all of it is valid. */
	const uint64_t e[] = { T_CODE_GPA | MIG_PAGE_RAW, (T_MEM + 0x1000) | MIG_PAGE_RAW };
	t_to_final(b); t_ram(b, e, 2); *len = b->len;
}
static void b_ram_kind7(struct vmstate_buf *b, size_t *len)
{ t_to_final(b); t_ram1(b, T_CODE_GPA | 7); *len = b->len; }
static void b_ram_kindfff(struct vmstate_buf *b, size_t *len)
{ t_to_final(b); t_ram1(b, T_CODE_GPA | 0xfff); *len = b->len; }
static void b_ram_count0(struct vmstate_buf *b, size_t *len)
{
	uint8_t p[4] = { 0 };
	t_to_final(b); t_sec(b, MIG_SEC_RAM, p, sizeof(p)); *len = b->len;
}
static void b_ram_count257(struct vmstate_buf *b, size_t *len)
{
	struct vmstate_buf p = { 0 };
	t_u32(&p, 257);
	for (int i = 0; i < 257; i++)
		t_u64(&p, (uint64_t)i << 12 | MIG_PAGE_ZERO), t_u32(&p, 0);
	t_to_final(b); t_sec_buf(b, MIG_SEC_RAM, &p); free(p.data); *len = b->len;
}
static void b_ram_empty_payload(struct vmstate_buf *b, size_t *len)
{ t_to_final(b); t_sec(b, MIG_SEC_RAM, NULL, 0); *len = b->len; }
static void b_ram_short_list(struct vmstate_buf *b, size_t *len)
{
	struct vmstate_buf p = { 0 };
	t_u32(&p, 8); t_u64(&p, 0); t_u32(&p, 0);	/* says 8 entries, has 1 */
	t_to_final(b); t_sec_buf(b, MIG_SEC_RAM, &p); free(p.data); *len = b->len;
}
static void b_ram_missing_data(struct vmstate_buf *b, size_t *len)
{
	struct vmstate_buf p = { 0 };
	t_u32(&p, 1); t_u64(&p, T_CODE_GPA | MIG_PAGE_RAW); t_u32(&p, 4096);	/* no page data */
	t_to_final(b); t_sec_buf(b, MIG_SEC_RAM, &p); free(p.data); *len = b->len;
}
static void b_ram_extra_data(struct vmstate_buf *b, size_t *len)
{
	struct vmstate_buf p = { 0 };
	uint8_t page[GUEST_PAGE_SIZE] = { 1 };
	t_u32(&p, 1); t_u64(&p, T_CODE_GPA | MIG_PAGE_ZERO); t_u32(&p, 0);
	t_put(&p, page, sizeof(page));
	t_to_final(b); t_sec_buf(b, MIG_SEC_RAM, &p); free(p.data); *len = b->len;
}

/* Encodings (codec ids and lengths) and their negotiation. */
static void t_ram_entry(struct vmstate_buf *b, uint64_t word, uint32_t len, uint32_t data)
{
	struct vmstate_buf p = { 0 };
	uint8_t page[GUEST_PAGE_SIZE] = { 7 };
	t_u32(&p, 1); t_u64(&p, word); t_u32(&p, len); t_put(&p, page, data);
	t_sec_buf(b, MIG_SEC_RAM, &p); free(p.data);
}
static void b_ram_raw_len_short(struct vmstate_buf *b, size_t *len)
{ t_to_final(b); t_ram_entry(b, T_CODE_GPA | MIG_PAGE_RAW, 100, 100); *len = b->len; }
static void b_ram_raw_len_huge(struct vmstate_buf *b, size_t *len)
{ t_to_final(b); t_ram_entry(b, T_CODE_GPA | MIG_PAGE_RAW, 0xffffffffu, 4096); *len = b->len; }
static void b_ram_zero_with_len(struct vmstate_buf *b, size_t *len)
{ t_to_final(b); t_ram_entry(b, T_CODE_GPA | MIG_PAGE_ZERO, 8, 8); *len = b->len; }
/* CONFIG offers raw only: a zero page is an encoding nobody agreed on. */
static void t_to_final_codecs(struct vmstate_buf *b, uint32_t codecs)
{
	struct vmstate_buf p = { 0 };
	t_header(b, MIG_MAGIC, MIG_VERSION);
	t_config_codecs(&p, T_MEM, 1, GUEST_PAGE_SIZE, 0, codecs, "", 0);
	t_sec_buf(b, MIG_SEC_CONFIG, &p); free(p.data);
	t_pass(b, 1, true);
}
static void b_ram_unnegotiated(struct vmstate_buf *b, size_t *len)
{ t_to_final_codecs(b, 1u << MIG_CODEC_RAW); t_ram1(b, 0x2000 | MIG_PAGE_ZERO); *len = b->len; }
static void b_config_no_raw(struct vmstate_buf *b, size_t *len)
{ t_to_final_codecs(b, 1u << MIG_CODEC_ZERO); *len = b->len; }
/* lz4 is known but the stream offered zero and raw only. */
static void b_ram_lz4_unnegotiated(struct vmstate_buf *b, size_t *len)
{ t_to_final(b); t_ram_entry(b, T_CODE_GPA | MIG_CODEC_LZ4, 16, 16); *len = b->len; }

/*
 * Compressed encodings (docs/migration-stream.md, "Codecs"), offered all:
 * data that decodes past 4 KiB, frames cut short, a delta against a page
 * the destination never had.  Each entry's length is within its codec's
 * bounds, so the decoder itself must refuse it.
 */
static void t_ram_coded(struct vmstate_buf *b, uint64_t gpa, unsigned id, const void *data,
			uint32_t n)
{
	struct vmstate_buf p = { 0 };
	t_u32(&p, 1); t_u64(&p, gpa | id); t_u32(&p, n); t_put(&p, data, n);
	t_sec_buf(b, MIG_SEC_RAM, &p); free(p.data);
}
static void b_ram_lz4_past_page(struct vmstate_buf *b, size_t *len)
{
	static uint8_t two[2 * GUEST_PAGE_SIZE], enc[2 * GUEST_PAGE_SIZE];
	int n = LZ4_compress_default((char *)two, (char *)enc, sizeof(two), sizeof(enc));
	t_to_final_codecs(b, MIG_CODECS_KNOWN);
	t_ram_coded(b, T_CODE_GPA, MIG_CODEC_LZ4, enc, (uint32_t)n); *len = b->len;
}
static void b_ram_lz4_cut(struct vmstate_buf *b, size_t *len)
{
	static uint8_t page[GUEST_PAGE_SIZE], enc[2 * GUEST_PAGE_SIZE];
	memset(page, 'x', sizeof(page));
	int n = LZ4_compress_default((char *)page, (char *)enc, sizeof(page), sizeof(enc));
	t_to_final_codecs(b, MIG_CODECS_KNOWN);
	t_ram_coded(b, T_CODE_GPA, MIG_CODEC_LZ4, enc, (uint32_t)n - 2); *len = b->len;
}
static void b_ram_zstd_past_page(struct vmstate_buf *b, size_t *len)
{
	static uint8_t two[2 * GUEST_PAGE_SIZE], enc[2 * GUEST_PAGE_SIZE];
	size_t n = ZSTD_compress(enc, sizeof(enc), two, sizeof(two), 1);
	t_to_final_codecs(b, MIG_CODECS_KNOWN);
	t_ram_coded(b, T_CODE_GPA, MIG_CODEC_ZSTD, enc, (uint32_t)n); *len = b->len;
}
static void b_ram_zstd_cut(struct vmstate_buf *b, size_t *len)
{
	static uint8_t page[GUEST_PAGE_SIZE], enc[2 * GUEST_PAGE_SIZE];
	memset(page, 'x', sizeof(page));
	size_t n = ZSTD_compress(enc, sizeof(enc), page, sizeof(page), 1);
	t_to_final_codecs(b, MIG_CODECS_KNOWN);
	t_ram_coded(b, T_CODE_GPA, MIG_CODEC_ZSTD, enc, (uint32_t)n - 2); *len = b->len;
}
static void b_ram_delta_never_had(struct vmstate_buf *b, size_t *len)
{
	static const uint8_t d[] = { 0x10, 0x02, 'h', 'i' };
	t_to_final_codecs(b, MIG_CODECS_KNOWN);
	t_ram_coded(b, T_CODE_GPA, MIG_CODEC_DELTA, d, sizeof(d)); *len = b->len;
}
static void b_ram_delta_past_page(struct vmstate_buf *b, size_t *len)
{
	static const uint8_t d[] = { 0xff, 0x1f, 0x02, 'h', 'i' };	/* 4095 kept, then 2 */
	t_to_final_codecs(b, MIG_CODECS_KNOWN);
	t_ram1(b, T_CODE_GPA | MIG_PAGE_RAW);
	t_ram_coded(b, T_CODE_GPA, MIG_CODEC_DELTA, d, sizeof(d)); *len = b->len;
}
static void b_ram_delta_too_long(struct vmstate_buf *b, size_t *len)
{
	static uint8_t d[GUEST_PAGE_SIZE];
	t_to_final_codecs(b, MIG_CODECS_KNOWN);
	t_ram1(b, T_CODE_GPA | MIG_PAGE_RAW);
	t_ram_coded(b, T_CODE_GPA, MIG_CODEC_DELTA, d, 3585); *len = b->len;
}

/* SOURCE sections: the source id, then that source's payload. */
static void t_source(struct vmstate_buf *b, uint32_t id, uint32_t off, uint32_t data)
{
	struct vmstate_buf p = { 0 };
	uint8_t chunk[4096] = { 9 };
	t_u32(&p, id); t_u32(&p, off); t_put(&p, chunk, data);
	t_sec_buf(b, MIG_SEC_SOURCE, &p); free(p.data);
}
static void b_source_unknown(struct vmstate_buf *b, size_t *len)
{ t_to_final(b); t_source(b, 7, 0, 4096); *len = b->len; }
static void b_source_ram(struct vmstate_buf *b, size_t *len)
{ t_to_final(b); t_source(b, MIG_SOURCE_RAM, 0, 4096); *len = b->len; }
static void b_source_scratch(struct vmstate_buf *b, size_t *len)
{ t_to_final(b); t_source(b, MIG_SOURCE_SCRATCH, 0, 4096); *len = b->len; }
static void b_source_scratch_bad_off(struct vmstate_buf *b, size_t *len)
{ t_to_final(b); t_source(b, MIG_SOURCE_SCRATCH, 0x100000, 4096); *len = b->len; }
static void b_source_scratch_short(struct vmstate_buf *b, size_t *len)
{ t_to_final(b); t_source(b, MIG_SOURCE_SCRATCH, 0, 100); *len = b->len; }
static void b_source_no_id(struct vmstate_buf *b, size_t *len)
{ uint8_t p[2] = { 1, 0 }; t_to_final(b); t_sec(b, MIG_SEC_SOURCE, p, sizeof(p)); *len = b->len; }
static void b_source_after_state(struct vmstate_buf *b, size_t *len)
{
	t_to_final(b); t_ram1(b, T_CODE_GPA | MIG_PAGE_RAW);
	t_sec_buf(b, MIG_SEC_STATE, &t_state_boot);
	t_source(b, MIG_SOURCE_SCRATCH, 0, 4096); *len = b->len;
}
/* The net source's forwarded frames: NIC index, frame length, the frame. */
static void t_net_frame(struct vmstate_buf *b, uint32_t nic, uint32_t len, uint32_t data)
{
	struct vmstate_buf p = { 0 };
	uint8_t *frame = calloc(1, data + 1);
	t_u32(&p, MIG_SOURCE_NET); t_u32(&p, nic); t_u32(&p, len); t_put(&p, frame, data);
	t_sec_buf(b, MIG_SEC_SOURCE, &p); free(p.data); free(frame);
}
static void b_net_frame_oversize(struct vmstate_buf *b, size_t *len)
{ t_to_final(b); t_net_frame(b, 0, 65551, 65551); *len = b->len; }
static void b_net_frame_runt(struct vmstate_buf *b, size_t *len)
{ t_to_final(b); t_net_frame(b, 0, 13, 13); *len = b->len; }
static void b_net_frame_len_mismatch(struct vmstate_buf *b, size_t *len)
{ t_to_final(b); t_net_frame(b, 0, 100, 60); *len = b->len; }
static void b_net_frame_no_nic(struct vmstate_buf *b, size_t *len)
{ t_to_final(b); t_net_frame(b, 3, 60, 60); *len = b->len; }
static void b_net_frame_short(struct vmstate_buf *b, size_t *len)
{
	struct vmstate_buf p = { 0 };
	t_to_final(b); t_u32(&p, MIG_SOURCE_NET); t_u32(&p, 0);
	t_sec_buf(b, MIG_SEC_SOURCE, &p); free(p.data); *len = b->len;
}
/* After END, before GO: only the net source may send (late). */
static void b_late_scratch(struct vmstate_buf *b, size_t *len)
{
	t_std(b, MIG_FLAG_VERIFY); b->len = t_mk.end;
	t_source(b, MIG_SOURCE_SCRATCH, 0, 4096); t_sec(b, MIG_SEC_GO, NULL, 0); *len = b->len;
}
static void b_late_net_no_nic(struct vmstate_buf *b, size_t *len)
{
	t_std(b, MIG_FLAG_VERIFY); b->len = t_mk.end;
	t_net_frame(b, 3, 60, 60); t_sec(b, MIG_SEC_GO, NULL, 0); *len = b->len;
}
static void b_late_net_too_long(struct vmstate_buf *b, size_t *len)
{
	t_std(b, MIG_FLAG_VERIFY); b->len = t_mk.end;
	t_net_frame(b, 0, 200000, 200000); t_sec(b, MIG_SEC_GO, NULL, 0); *len = b->len;
}

/*
 * Block sections (--copy-storage): kind, disk, then the record
 * (migration/block.c); the destination has one disk of 1 MiB.
 */
static void t_block(struct vmstate_buf *b, uint8_t kind, uint8_t disk, const uint64_t *nums,
		    unsigned n, uint32_t data)
{
	struct vmstate_buf p = { 0 };
	uint8_t chunk[4096] = { 7 };
	t_u32(&p, MIG_SOURCE_BLOCK); t_u8(&p, kind); t_u8(&p, disk);
	for (unsigned i = 0; i < n; i++)
		t_u64(&p, nums[i]);
	t_put(&p, chunk, data);
	t_sec_buf(b, MIG_SEC_SOURCE, &p); free(p.data);
}
static const uint64_t t_mib = 1 << 20, t_2mib = 2 << 20;
static void b_block_hello(struct vmstate_buf *b, size_t *len)
{ t_to_final(b); t_block(b, MIG_BLOCK_HELLO, 0, &t_mib, 1, 0); *len = b->len; }
static void b_block_other_disk(struct vmstate_buf *b, size_t *len)
{ t_to_final(b); t_block(b, MIG_BLOCK_HELLO, 1, &t_mib, 1, 0); *len = b->len; }
static void b_block_size(struct vmstate_buf *b, size_t *len)
{ t_to_final(b); t_block(b, MIG_BLOCK_HELLO, 0, &t_2mib, 1, 0); *len = b->len; }
static void b_block_before_hello(struct vmstate_buf *b, size_t *len)
{ uint64_t off = 0; t_to_final(b); t_block(b, MIG_BLOCK_DATA, 0, &off, 1, 4096); *len = b->len; }
static void b_block_past_disk(struct vmstate_buf *b, size_t *len)
{
	uint64_t off = t_mib - 512;
	t_to_final(b); t_block(b, MIG_BLOCK_HELLO, 0, &t_mib, 1, 0);
	t_block(b, MIG_BLOCK_DATA, 0, &off, 1, 4096); *len = b->len;
}
static void b_block_zero_past_disk(struct vmstate_buf *b, size_t *len)
{
	uint64_t z[2] = { 4096, UINT64_MAX - 100 };
	t_to_final(b); t_block(b, MIG_BLOCK_HELLO, 0, &t_mib, 1, 0);
	t_block(b, MIG_BLOCK_ZERO, 0, z, 2, 0); *len = b->len;
}
/* A section that says more than it holds: the framing refuses it. */
static void b_block_past_section(struct vmstate_buf *b, size_t *len)
{
	uint8_t p[14] = { MIG_SOURCE_BLOCK, 0, 0, 0, MIG_BLOCK_DATA, 0 };
	t_to_final(b); t_block(b, MIG_BLOCK_HELLO, 0, &t_mib, 1, 0);
	t_sec_raw(b, MIG_SEC_SOURCE, 0, sizeof(p) + 4096, p, sizeof(p), 0);
	*len = b->len;
}
/* Before the first PASS (where a source sends HELLO): still checked. */
static void b_block_early_size(struct vmstate_buf *b, size_t *len)
{
	t_header(b, MIG_MAGIC, MIG_VERSION);
	t_config(b, T_MEM, 1, 0);
	t_block(b, MIG_BLOCK_HELLO, 0, &t_2mib, 1, 0); *len = b->len;
}

/* Framing. */
static void b_oversized(struct vmstate_buf *b, size_t *len)
{
	uint8_t junk[64] = { 0 };
	t_to_final(b);
	t_sec_raw(b, MIG_SEC_RAM, 0, MIG_SECTION_MAX + 1, junk, sizeof(junk), 0);
	*len = b->len;
}
static void b_huge_len(struct vmstate_buf *b, size_t *len)
{
	uint8_t junk[64] = { 0 };
	t_to_final(b);
	t_sec_raw(b, MIG_SEC_RAM, 0, 0xffffffffu, junk, sizeof(junk), 0);
	*len = b->len;
}
static void b_reserved(struct vmstate_buf *b, size_t *len)
{
	t_header(b, MIG_MAGIC, MIG_VERSION);
	struct vmstate_buf p = { 0 };
	t_config_payload(&p, T_MEM, 1, GUEST_PAGE_SIZE, 0, "", 0);
	t_sec_raw(b, MIG_SEC_CONFIG, 1, (uint32_t)p.len, p.data, p.len, 0);
	free(p.data);
	*len = b->len;
}
static void b_flipped_page_byte(struct vmstate_buf *b, size_t *len)
{
	t_to_final(b);
	size_t at = b->len;
	t_ram1(b, T_CODE_GPA | MIG_PAGE_RAW);
	b->data[at + MIG_SECTION_HDR + 4 + 8 + 100] ^= 0x01;	/* a byte of the page */
	*len = b->len;
}
static void b_flipped_len(struct vmstate_buf *b, size_t *len)
{
	/* A length one less than sent: the checksum is read from page bytes. */
	t_to_final(b);
	size_t at = b->len;
	t_ram1(b, T_CODE_GPA | MIG_PAGE_RAW);
	b->data[at + 4] -= 1;
	*len = b->len;
}
static void b_bad_checksum_config(struct vmstate_buf *b, size_t *len)
{
	struct vmstate_buf p = { 0 };
	t_header(b, MIG_MAGIC, MIG_VERSION);
	t_config_payload(&p, T_MEM, 1, GUEST_PAGE_SIZE, 0, "", 0);
	t_sec_raw(b, MIG_SEC_CONFIG, 0, (uint32_t)p.len, p.data, p.len, 1);
	free(p.data);
	*len = b->len;
}
static void b_unknown_type(struct vmstate_buf *b, size_t *len)
{ t_to_final(b); t_sec(b, 25, "x", 1); *len = b->len; }
static void b_type0(struct vmstate_buf *b, size_t *len)
{ t_header(b, MIG_MAGIC, MIG_VERSION); t_sec(b, 0, NULL, 0); *len = b->len; }
static void b_ready_to_dest(struct vmstate_buf *b, size_t *len)
{ t_to_final(b); t_sec(b, MIG_SEC_READY, NULL, 0); *len = b->len; }
/* --channels: a BARRIER where no extra connection was agreed, and a malformed one. */
static void b_barrier_no_channels(struct vmstate_buf *b, size_t *len)
{ t_to_final(b); t_sec(b, MIG_SEC_BARRIER, "\x01\0\0\0\x01", 5); *len = b->len; }
static void b_barrier_short(struct vmstate_buf *b, size_t *len)
{ t_to_final(b); t_sec(b, MIG_SEC_BARRIER, "\x01\0\0", 3); *len = b->len; }

/* Order. */
static void b_pass_first(struct vmstate_buf *b, size_t *len)
{ t_header(b, MIG_MAGIC, MIG_VERSION); t_pass(b, 1, false); *len = b->len; }
static void b_ram_before_pass(struct vmstate_buf *b, size_t *len)
{
	t_header(b, MIG_MAGIC, MIG_VERSION); t_config(b, T_MEM, 1, 0);
	t_ram1(b, T_CODE_GPA | MIG_PAGE_RAW); *len = b->len;
}
static void b_run_past_end(struct vmstate_buf *b, size_t *len)
{ t_to_final(b); t_ram_run(b, T_MEM - GUEST_PAGE_SIZE, 2, 2); *len = b->len; }
static void b_run_misaligned(struct vmstate_buf *b, size_t *len)
{ t_to_final(b); t_ram_run(b, T_CODE_GPA | MIG_PAGE_RAW, 1, 1); *len = b->len; }
static void b_run_huge_address(struct vmstate_buf *b, size_t *len)
{ t_to_final(b); t_ram_run(b, 0xfffffffffffff000ULL, 2, 2); *len = b->len; }
static void b_run_count0(struct vmstate_buf *b, size_t *len)
{ t_to_final(b); t_ram_run(b, T_CODE_GPA, 0, 0); *len = b->len; }
static void b_run_count257(struct vmstate_buf *b, size_t *len)
{ t_to_final(b); t_ram_run(b, 0, 257, 257); *len = b->len; }
static void b_run_missing_data(struct vmstate_buf *b, size_t *len)
{ t_to_final(b); t_ram_run(b, T_CODE_GPA, 2, 1); *len = b->len; }
static void b_run_short(struct vmstate_buf *b, size_t *len)
{
	uint8_t p[8] = { 0 };
	t_to_final(b); t_sec(b, MIG_SEC_RAM_RUN, p, sizeof(p)); *len = b->len;
}
static void b_run_before_pass(struct vmstate_buf *b, size_t *len)
{
	t_header(b, MIG_MAGIC, MIG_VERSION); t_config(b, T_MEM, 1, 0);
	t_ram_run(b, T_CODE_GPA, 1, 1); *len = b->len;
}
static void b_state_before_final(struct vmstate_buf *b, size_t *len)
{
	t_header(b, MIG_MAGIC, MIG_VERSION); t_config(b, T_MEM, 1, 0); t_pass(b, 1, false);
	t_sec_buf(b, MIG_SEC_STATE, &t_state_boot); *len = b->len;
}
static void b_end_without_state(struct vmstate_buf *b, size_t *len)
{ t_to_final(b); t_end(b); *len = b->len; }
static void b_two_configs(struct vmstate_buf *b, size_t *len)
{
	t_header(b, MIG_MAGIC, MIG_VERSION); t_config(b, T_MEM, 1, 0); t_config(b, T_MEM, 1, 0);
	*len = b->len;
}
static void b_pass_backwards(struct vmstate_buf *b, size_t *len)
{
	t_header(b, MIG_MAGIC, MIG_VERSION); t_config(b, T_MEM, 1, 0);
	t_pass(b, 1, false); t_pass(b, 2, false); t_pass(b, 1, false); *len = b->len;
}
static void b_pass_starts_at_2(struct vmstate_buf *b, size_t *len)
{
	t_header(b, MIG_MAGIC, MIG_VERSION); t_config(b, T_MEM, 1, 0); t_pass(b, 2, false);
	*len = b->len;
}
static void b_pass_after_final(struct vmstate_buf *b, size_t *len)
{ t_to_final(b); t_pass(b, 2, true); *len = b->len; }
static void b_pass_malformed(struct vmstate_buf *b, size_t *len)
{
	uint8_t p[12] = { 1 };
	t_header(b, MIG_MAGIC, MIG_VERSION); t_config(b, T_MEM, 1, 0);
	t_sec(b, MIG_SEC_PASS, p, sizeof(p)); *len = b->len;
}
static void b_pass_final_flag2(struct vmstate_buf *b, size_t *len)
{
	uint8_t p[13] = { 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2 };
	t_header(b, MIG_MAGIC, MIG_VERSION); t_config(b, T_MEM, 1, 0);
	t_sec(b, MIG_SEC_PASS, p, sizeof(p)); *len = b->len;
}
static void b_two_states(struct vmstate_buf *b, size_t *len)
{
	t_to_final(b); t_sec_buf(b, MIG_SEC_STATE, &t_state_boot);
	t_sec_buf(b, MIG_SEC_STATE, &t_state_boot); *len = b->len;
}
static void b_ram_after_state(struct vmstate_buf *b, size_t *len)
{
	t_to_final(b); t_sec_buf(b, MIG_SEC_STATE, &t_state_boot);
	t_ram1(b, T_CODE_GPA | MIG_PAGE_RAW); *len = b->len;
}
static void b_digest_without_verify(struct vmstate_buf *b, size_t *len)
{
	t_to_final(b); t_sec_buf(b, MIG_SEC_STATE, &t_state_boot);
	t_digest(b, T_MEM / GUEST_PAGE_SIZE, 0); *len = b->len;
}
static void b_verify_end_without_digest(struct vmstate_buf *b, size_t *len)
{
	t_header(b, MIG_MAGIC, MIG_VERSION); t_config(b, T_MEM, 1, MIG_FLAG_VERIFY);
	t_pass(b, 1, true); t_sec_buf(b, MIG_SEC_STATE, &t_state_boot); t_end(b); *len = b->len;
}
static void b_end_with_payload(struct vmstate_buf *b, size_t *len)
{
	uint8_t junk[16] = { 0 };
	t_to_final(b); t_sec_buf(b, MIG_SEC_STATE, &t_state_boot);
	t_sec(b, MIG_SEC_END, junk, sizeof(junk)); *len = b->len;
}
static void b_end_garbage_len(struct vmstate_buf *b, size_t *len)
{
	/* END whose length field is garbage (and no payload follows). */
	t_to_final(b); t_sec_buf(b, MIG_SEC_STATE, &t_state_boot);
	t_sec_raw(b, MIG_SEC_END, 0, 0x00ffffffu, NULL, 0, 0); *len = b->len;
}

/* After END: only GO starts the guest. */
static void b_no_go(struct vmstate_buf *b, size_t *len)
{ t_std(b, MIG_FLAG_VERIFY); *len = t_mk.end; }
static void b_abort(struct vmstate_buf *b, size_t *len)
{ t_std(b, MIG_FLAG_VERIFY); b->len = t_mk.end; t_sec(b, MIG_SEC_ABORT, NULL, 0); *len = b->len; }
static void b_go_with_payload(struct vmstate_buf *b, size_t *len)
{
	uint8_t junk[4] = { 1, 2, 3, 4 };
	t_std(b, MIG_FLAG_VERIFY); b->len = t_mk.end; t_sec(b, MIG_SEC_GO, junk, sizeof(junk));
	*len = b->len;
}
static void b_end_twice(struct vmstate_buf *b, size_t *len)
{ t_std(b, MIG_FLAG_VERIFY); b->len = t_mk.end; t_end(b); t_sec(b, MIG_SEC_GO, NULL, 0); *len = b->len; }
static void b_go_early(struct vmstate_buf *b, size_t *len)
{ t_to_final(b); t_sec(b, MIG_SEC_GO, NULL, 0); *len = b->len; }
static void b_cut_in_go(struct vmstate_buf *b, size_t *len)
{ t_std(b, MIG_FLAG_VERIFY); *len = b->len - 3; }

/* CONFIG. */
static void t_cfg_case(struct vmstate_buf *b, uint64_t memory, uint32_t vcpus, uint32_t page,
		       uint32_t flags, const void *cmd, uint16_t cmdlen)
{
	struct vmstate_buf p = { 0 };

	t_header(b, MIG_MAGIC, MIG_VERSION);
	t_config_payload(&p, memory, vcpus, page, flags, cmd, cmdlen);
	t_sec_buf(b, MIG_SEC_CONFIG, &p);
	free(p.data);
	t_pass(b, 1, true);
}
static void b_cfg_mem_odd(struct vmstate_buf *b, size_t *len)
{ t_cfg_case(b, T_MEM + 4096, 1, 4096, 0, "", 0); *len = b->len; }
static void b_cfg_mem_small(struct vmstate_buf *b, size_t *len)
{ t_cfg_case(b, 2ULL << 20, 1, 4096, 0, "", 0); *len = b->len; }
static void b_cfg_mem_2t(struct vmstate_buf *b, size_t *len)
{ t_cfg_case(b, 2ULL << 40, 1, 4096, 0, "", 0); *len = b->len; }
static void b_cfg_vcpus0(struct vmstate_buf *b, size_t *len)
{ t_cfg_case(b, T_MEM, 0, 4096, 0, "", 0); *len = b->len; }
static void b_cfg_vcpus1000(struct vmstate_buf *b, size_t *len)
{ t_cfg_case(b, T_MEM, 1000, 4096, 0, "", 0); *len = b->len; }
static void b_cfg_page8k(struct vmstate_buf *b, size_t *len)
{ t_cfg_case(b, T_MEM, 1, 8192, 0, "", 0); *len = b->len; }
static void b_cfg_flags(struct vmstate_buf *b, size_t *len)
{ t_cfg_case(b, T_MEM, 1, 4096, 0x80000001u, "", 0); *len = b->len; }
static void b_cfg_cmdline_nul(struct vmstate_buf *b, size_t *len)
{ t_cfg_case(b, T_MEM, 1, 4096, 0, "quiet\0root=/dev/sda", 19); *len = b->len; }
static void b_cfg_cmdline_long(struct vmstate_buf *b, size_t *len)
{
	static char cmd[4096];
	memset(cmd, 'a', sizeof(cmd));
	t_cfg_case(b, T_MEM, 1, 4096, 0, cmd, 4096); *len = b->len;
}
/*
 * A version-3 CONFIG: the version-2 fields, then cpuid_nent (claimed), the
 * CPUID entries given (7 u32 each), and an empty MSR list.
 */
static void t_config_cpuid(struct vmstate_buf *b, uint16_t nent, const uint32_t (*ent)[7],
			   unsigned given)
{
	struct vmstate_buf body = { 0 }, p = { 0 };
	t_u32(&body, 8); t_u64(&body, T_MEM);
	t_u32(&body, 4); t_u32(&body, 1);
	t_u32(&body, 4); t_u32(&body, 4096);
	t_u32(&body, 4); t_u32(&body, 0);
	t_u32(&body, 4); t_u32(&body, T_CODECS);
	t_u32(&body, 2); t_u16(&body, 0);
	t_u32(&body, 0);
	t_u32(&body, 2); t_u16(&body, nent);
	t_u32(&body, given * 7 * 4 * 2);	/* each u32 field as len + value */
	for (unsigned i = 0; i < given; i++)
		for (unsigned j = 0; j < 7; j++) {
			t_u32(&body, 4); t_u32(&body, ent[i][j]);
		}
	t_u32(&body, 2); t_u16(&body, 0);	/* no MSRs */
	t_u32(&body, 0);
	t_u8(&p, 10); t_put(&p, "mig-config", 10);
	t_u32(&p, 3); t_u32(&p, (uint32_t)body.len); t_put(&p, body.data, body.len);
	t_header(b, MIG_MAGIC, MIG_VERSION);
	t_sec_buf(b, MIG_SEC_CONFIG, &p);
	free(body.data); free(p.data);
}
static const uint32_t t_leaf1_xsave[7] = { 1, 0, 0, 0, 0, 1u << 26, 0 };
static void b_cfg_cpuid_too_many(struct vmstate_buf *b, size_t *len)
{ t_config_cpuid(b, MIG_CPUID_MAX + 1, &t_leaf1_xsave, 1); *len = b->len; }
static void b_cfg_cpuid_nent_lies(struct vmstate_buf *b, size_t *len)
{ t_config_cpuid(b, 3, &t_leaf1_xsave, 1); *len = b->len; }
static void b_cfg_cpuid_twice(struct vmstate_buf *b, size_t *len)
{
	const uint32_t e[2][7] = { { 7, 0, 1, 0, 0, 0, 0 }, { 7, 0, 1, 0, 1, 0, 0 } };
	t_config_cpuid(b, 2, e, 2); *len = b->len;
}
static void b_cfg_cpuid_bad_flags(struct vmstate_buf *b, size_t *len)
{
	const uint32_t e[1][7] = { { 1, 0, 0x80, 0, 0, 0, 0 } };
	t_config_cpuid(b, 1, e, 1); *len = b->len;
}
/* Well formed, but no host has a 4 GiB XSAVE area: refused by name, before any page. */
static void b_cfg_cpuid_unsupported(struct vmstate_buf *b, size_t *len)
{
	const uint32_t e[2][7] = { { 1, 0, 0, 0, 0, 1u << 26, 0 },
				   { 0xd, 0, 1, 3, 576, 0xffffffffu, 0 } };
	t_config_cpuid(b, 2, e, 2); *len = b->len;
}

static void b_cfg_cmdline_len_lies(struct vmstate_buf *b, size_t *len)
{
	/* cmdline_len says 100, the array field carries 5 bytes. */
	struct vmstate_buf body = { 0 }, p = { 0 };
	t_u32(&body, 8); t_u64(&body, T_MEM);
	t_u32(&body, 4); t_u32(&body, 1);
	t_u32(&body, 4); t_u32(&body, 4096);
	t_u32(&body, 4); t_u32(&body, 0);
	t_u32(&body, 4); t_u32(&body, T_CODECS);
	t_u32(&body, 2); t_u16(&body, 100);
	t_u32(&body, 5); t_put(&body, "hello", 5);
	t_u8(&p, 10); t_put(&p, "mig-config", 10); t_u32(&p, 2); t_u32(&p, (uint32_t)body.len);
	t_put(&p, body.data, body.len);
	t_header(b, MIG_MAGIC, MIG_VERSION); t_sec_buf(b, MIG_SEC_CONFIG, &p);
	free(body.data); free(p.data); *len = b->len;
}
static void b_cfg_trailing(struct vmstate_buf *b, size_t *len)
{
	struct vmstate_buf p = { 0 };
	t_config_payload(&p, T_MEM, 1, 4096, 0, "", 0);
	t_u32(&p, 0xdeadbeef);
	t_header(b, MIG_MAGIC, MIG_VERSION); t_sec_buf(b, MIG_SEC_CONFIG, &p);
	free(p.data); *len = b->len;
}
static void b_cfg_empty(struct vmstate_buf *b, size_t *len)
{ t_header(b, MIG_MAGIC, MIG_VERSION); t_sec(b, MIG_SEC_CONFIG, NULL, 0); *len = b->len; }
static void b_cfg_over_limit(struct vmstate_buf *b, size_t *len)
{ t_cfg_case(b, 64ULL << 20, 1, 4096, 0, "", 0); *len = b->len; }
static void b_cfg_vcpus_over_limit(struct vmstate_buf *b, size_t *len)
{ t_cfg_case(b, T_MEM, 2, 4096, 0, "", 0); *len = b->len; }

/* STATE. */
static void b_state_truncated(struct vmstate_buf *b, size_t *len)
{
	t_to_final(b); t_sec(b, MIG_SEC_STATE, t_state_boot.data, t_state_boot.len - 10);
	*len = b->len;
}
static void b_state_trailing(struct vmstate_buf *b, size_t *len)
{
	struct vmstate_buf p = { 0 };
	t_put(&p, t_state_boot.data, t_state_boot.len); t_u32(&p, 0);
	t_to_final(b); t_sec_buf(b, MIG_SEC_STATE, &p); free(p.data); *len = b->len;
}
static void b_state_empty(struct vmstate_buf *b, size_t *len)
{ t_to_final(b); t_sec(b, MIG_SEC_STATE, NULL, 0); *len = b->len; }
static void b_state_vcpu_count(struct vmstate_buf *b, size_t *len)
{
	/* CONFIG says 2 vCPUs, STATE has one. */
	t_header(b, MIG_MAGIC, MIG_VERSION); t_config(b, T_MEM, 2, 0); t_pass(b, 1, true);
	t_sec_buf(b, MIG_SEC_STATE, &t_state_boot); t_end(b); *len = b->len;
}
static void b_state_extra_vcpu(struct vmstate_buf *b, size_t *len)
{
	/* CONFIG says 1 vCPU, STATE has two. */
	struct machine_state st;
	t_state_copy(&st);
	st.vcpus = realloc(st.vcpus, 2 * sizeof(*st.vcpus));
	memcpy(&st.vcpus[1], &st.vcpus[0], sizeof(st.vcpus[0]));
	st.nr_vcpus = 2;
	t_to_final(b); t_state_sec(b, &st); t_end(b);
	free(st.vcpus); *len = b->len;
}
static void b_state_out_of_range(struct vmstate_buf *b, size_t *len)
{
	/* serial-8250's ier (3rd field, 0..0x0f) patched to 0xff. */
	struct vmstate_buf vm = { 0 }, cpu = { 0 }, com = { 0 }, p = { 0 };
	assert_int_equal(vmstate_save(&x86_vm_state_vmsd, &t_real.vm, &vm), 0);
	assert_int_equal(vmstate_save(&x86_vcpu_state_vmsd, &t_real.vcpus[0], &cpu), 0);
	assert_int_equal(vmstate_save(&serial_vmsd, T_COM1(&t_real), &com), 0);
	size_t at = 1 + 11 + 4 + 4 + 2 * 5 + 4;
	assert_int_equal(com.data[at - 4], 1);	/* its length field */
	assert_int_equal(com.data[at], T_COM1(&t_real)->ier);
	com.data[at] = 0xff;
	t_put(&p, vm.data, vm.len); t_put(&p, cpu.data, cpu.len); t_put(&p, com.data, com.len);
	t_to_final(b); t_sec_buf(b, MIG_SEC_STATE, &p); t_end(b);
	free(vm.data); free(cpu.data); free(com.data); free(p.data); *len = b->len;
}
static void b_state_bad_efer(struct vmstate_buf *b, size_t *len)
{
	/* In range for the decoder (any u64), refused by KVM. */
	struct machine_state st;
	t_state_copy(&st);
	st.vcpus[0].sregs.efer = 0xffffffffffffffffULL;
	t_to_final(b); t_state_sec(b, &st); t_end(b);
	free(st.vcpus); *len = b->len;
}
static void b_state_unknown_msr(struct vmstate_buf *b, size_t *len)
{
	struct machine_state st;
	t_state_copy(&st);
	assert_true(st.vcpus[0].nmsrs > 0);
	st.vcpus[0].msrs[0].index = 0x4b564dffu;	/* no such MSR */
	t_to_final(b); t_state_sec(b, &st); t_end(b);
	free(st.vcpus); *len = b->len;
}
static void b_state_dup_msr(struct vmstate_buf *b, size_t *len)
{
	struct machine_state st;
	t_state_copy(&st);
	assert_true(st.vcpus[0].nmsrs > 1);
	st.vcpus[0].msrs[1].index = st.vcpus[0].msrs[0].index;
	t_to_final(b); t_state_sec(b, &st); t_end(b);
	free(st.vcpus); *len = b->len;
}
static void b_state_wrong_first(struct vmstate_buf *b, size_t *len)
{
	/* Records in the wrong order: serial first. */
	struct vmstate_buf p = { 0 };
	assert_int_equal(vmstate_save(&serial_vmsd, T_COM1(&t_real), &p), 0);
	t_put(&p, t_state_boot.data, t_state_boot.len);
	t_to_final(b); t_sec_buf(b, MIG_SEC_STATE, &p); free(p.data); *len = b->len;
}

/* DIGEST. */
static void b_digest_mismatch(struct vmstate_buf *b, size_t *len)
{
	t_header(b, MIG_MAGIC, MIG_VERSION); t_config(b, T_MEM, 1, MIG_FLAG_VERIFY);
	t_pass(b, 1, true); t_ram1(b, T_CODE_GPA | MIG_PAGE_RAW);
	t_sec_buf(b, MIG_SEC_STATE, &t_state_boot);
	t_digest(b, T_MEM / GUEST_PAGE_SIZE, t_ram_digest() ^ 1); t_end(b); *len = b->len;
}
static void b_digest_missing_page(struct vmstate_buf *b, size_t *len)
{
	/* Right digest for the full RAM, but the data page was never sent. */
	t_header(b, MIG_MAGIC, MIG_VERSION); t_config(b, T_MEM, 1, MIG_FLAG_VERIFY);
	t_pass(b, 1, true); t_ram1(b, T_CODE_GPA | MIG_PAGE_RAW);
	t_sec_buf(b, MIG_SEC_STATE, &t_state_boot);
	t_digest(b, T_MEM / GUEST_PAGE_SIZE, t_ram_digest()); t_end(b); *len = b->len;
}
static void b_digest_pages(struct vmstate_buf *b, size_t *len)
{
	t_header(b, MIG_MAGIC, MIG_VERSION); t_config(b, T_MEM, 1, MIG_FLAG_VERIFY);
	t_pass(b, 1, true); t_sec_buf(b, MIG_SEC_STATE, &t_state_boot);
	t_digest(b, T_MEM / GUEST_PAGE_SIZE + 1, 0); t_end(b); *len = b->len;
}
/* All of RAM right, but the device state digest is not the state's. */
static void b_state_digest_mismatch(struct vmstate_buf *b, size_t *len)
{
	t_header(b, MIG_MAGIC, MIG_VERSION); t_config(b, T_MEM, 1, MIG_FLAG_VERIFY);
	t_pass(b, 1, true); t_ram1(b, T_CODE_GPA | MIG_PAGE_RAW); t_ram1(b, T_DATA_GPA | MIG_PAGE_RAW);
	t_sec_buf(b, MIG_SEC_STATE, &t_state_boot);
	t_digest_state(b, T_MEM / GUEST_PAGE_SIZE, t_ram_digest(), t_state_digest ^ 1);
	t_end(b); *len = b->len;
}
/* The version 1 DIGEST (no state digest): malformed now. */
static void b_digest_v1(struct vmstate_buf *b, size_t *len)
{
	struct vmstate_buf p = { 0 };
	t_header(b, MIG_MAGIC, MIG_VERSION); t_config(b, T_MEM, 1, MIG_FLAG_VERIFY);
	t_pass(b, 1, true); t_sec_buf(b, MIG_SEC_STATE, &t_state_boot);
	t_u64(&p, T_MEM / GUEST_PAGE_SIZE); t_u64(&p, t_ram_digest());
	t_sec_buf(b, MIG_SEC_DIGEST, &p); free(p.data); *len = b->len;
}
static void b_digest_malformed(struct vmstate_buf *b, size_t *len)
{
	uint8_t p[23] = { 0 };
	t_header(b, MIG_MAGIC, MIG_VERSION); t_config(b, T_MEM, 1, MIG_FLAG_VERIFY);
	t_pass(b, 1, true); t_sec_buf(b, MIG_SEC_STATE, &t_state_boot);
	t_sec(b, MIG_SEC_DIGEST, p, sizeof(p)); *len = b->len;
}


#define CUT(n, f, msg, ready) { n, f, 74, msg, ready, { NULL } }
#define BAD(n, f, msg, ready) { n, f, 65, msg, ready, { NULL } }
static const struct t_case t_cases[] = {
	CUT("cut_in_header", b_trunc_in_header, "no stream header", false),
	CUT("cut_after_header", b_trunc_after_header, "closed the connection", false),
	CUT("cut_in_section_header", b_trunc_in_section_header, "closed the connection", false),
	CUT("cut_after_config", b_trunc_after_config, "closed the connection", true),
	CUT("cut_mid_ram", b_trunc_mid_ram, "closed the connection", true),
	CUT("cut_after_final_pass", b_trunc_after_final_pass, "closed the connection", true),
	CUT("cut_before_end", b_trunc_before_end, "closed the connection", true),
	CUT("cut_in_end_checksum", b_trunc_in_checksum, "closed the connection", true),
	BAD("bad_magic", b_bad_magic, "bad magic", false),
	BAD("version_3", b_version3, "stream version 3 is not supported: this ferry speaks version 2", false),
	BAD("version_1", b_version1, "stream version 1 is not supported: this ferry speaks version 2", false),
	BAD("version_0", b_version0, "stream version 0 is not supported", false),
	BAD("ram_past_end", b_ram_past_end, "page 0x1000000 is outside guest RAM", true),
	BAD("ram_huge_address", b_ram_huge, "page 0xfffffffffffff000 is outside guest RAM", true),
	BAD("ram_in_pci_hole", b_ram_hole, "page 0xfffff000 is outside guest RAM", true),
	BAD("ram_later_entry_bad", b_ram_later_entry_bad, "page 0x1001000 is outside guest RAM", true),
	BAD("ram_kind_7", b_ram_kind7, "page 0x1000: unknown encoding 7", true),
	BAD("ram_kind_fff", b_ram_kindfff, "page 0x1000: unknown encoding 4095", true),
	BAD("ram_raw_len_short", b_ram_raw_len_short, "page 0x1000: raw page of 100 bytes (allowed 4096..4096)", true),
	BAD("ram_raw_len_huge", b_ram_raw_len_huge, "page 0x1000: raw page of 4294967295 bytes", true),
	BAD("ram_zero_with_len", b_ram_zero_with_len, "page 0x1000: zero page of 8 bytes (allowed 0..0)", true),
	BAD("ram_codec_unnegotiated", b_ram_unnegotiated, "page 0x2000: encoding 0 (zero) was not negotiated", true),
	BAD("config_no_raw", b_config_no_raw, "the stream does not offer the raw codec", false),
	BAD("ram_lz4_unnegotiated", b_ram_lz4_unnegotiated, "page 0x1000: encoding 2 (lz4) was not negotiated", true),
	BAD("ram_lz4_past_page", b_ram_lz4_past_page, "page 0x1000: bad lz4 data", true),
	BAD("ram_lz4_cut", b_ram_lz4_cut, "page 0x1000: bad lz4 data", true),
	BAD("ram_zstd_past_page", b_ram_zstd_past_page, "page 0x1000: bad zstd data", true),
	BAD("ram_zstd_cut", b_ram_zstd_cut, "page 0x1000: bad zstd data", true),
	BAD("ram_delta_never_had", b_ram_delta_never_had, "page 0x1000: a delta against a page this side does not hold", true),
	BAD("ram_delta_past_page", b_ram_delta_past_page, "page 0x1000: bad delta data", true),
	BAD("ram_delta_too_long", b_ram_delta_too_long, "page 0x1000: delta page of 3585 bytes (allowed 0..3584)", true),
	BAD("source_unknown_id", b_source_unknown, "SOURCE section for unknown source 7", true),
	BAD("source_ram_id", b_source_ram, "SOURCE section for unknown source 0", true),
	BAD("source_not_accepted", b_source_scratch, "SOURCE section for source 1 (scratch), which this destination does not accept", true),
	{ "source_bad_offset", b_source_scratch_bad_off, 65, "scratch offset 0x100000 is not a chunk", true, { "--test-hooks" } },
	{ "source_short", b_source_scratch_short, 65, "scratch section of 104 bytes (want 4100)", true, { "--test-hooks" } },
	BAD("source_no_id", b_source_no_id, "SOURCE section of 2 bytes has no source id", true),
	{ "block_not_expected", b_block_hello, 65, "SOURCE section for source 3 (block), which this "
	  "destination does not accept", true, { "--disk", T_DISK } },
	{ "block_other_disk", b_block_other_disk, 65, "blocks for disk 1; this destination has 1 disk(s)",
	  true, { "--copy-storage", "--disk", T_DISK } },
	{ "block_size_mismatch", b_block_size, 64, "disk 0 is 2097152 bytes at the source but 1048576 here",
	  true, { "--copy-storage", "--disk", T_DISK } },
	{ "block_size_before_pass", b_block_early_size, 64, "disk 0 is 2097152 bytes at the source",
	  true, { "--copy-storage", "--disk", T_DISK } },
	{ "block_before_hello", b_block_before_hello, 65, "disk 0: record 1 before its HELLO",
	  true, { "--copy-storage", "--disk", T_DISK } },
	{ "block_past_disk", b_block_past_disk, 65, "disk 0: 4096 bytes at 1048064 are past its end",
	  true, { "--copy-storage", "--disk", T_DISK } },
	{ "block_zero_past_disk", b_block_zero_past_disk, 65, "are past its end",
	  true, { "--copy-storage", "--disk", T_DISK } },
	{ "block_past_section", b_block_past_section, 74, "closed the connection",
	  true, { "--copy-storage", "--disk", T_DISK } },
	BAD("net_frame_oversize", b_net_frame_oversize, "forwarded frame of 65551 bytes (a frame is 14 to 65550)", true),
	BAD("net_frame_runt", b_net_frame_runt, "forwarded frame of 13 bytes (a frame is 14 to 65550)", true),
	BAD("net_frame_len_mismatch", b_net_frame_len_mismatch, "forwarded frame of 100 bytes in a section holding 60", true),
	BAD("net_frame_no_nic", b_net_frame_no_nic, "forwarded frame for NIC 3, which this destination lacks (it has 0)", true),
	BAD("net_frame_short", b_net_frame_short, "forwarded frame section cut short", true),
	BAD("late_scratch", b_late_scratch, "SOURCE section for source 1 after END (only a source that sends late may)", true),
	BAD("late_net_no_nic", b_late_net_no_nic, "forwarded frame for NIC 3, which this destination lacks (it has 0)", true),
	BAD("late_net_too_long", b_late_net_too_long, "section type 15 of 200012 bytes is too long here (expected GO or ABORT)", true),
	{ "source_after_state", b_source_after_state, 65, "section type 15 out of order (expected END)", true, { "--test-hooks" } },
	BAD("ram_count_0", b_ram_count0, "RAM batch of 0 pages", true),
	BAD("ram_count_257", b_ram_count257, "RAM batch of 257 pages", true),
	BAD("ram_empty", b_ram_empty_payload, "RAM section too short", true),
	BAD("ram_short_list", b_ram_short_list, "shorter than its page list", true),
	BAD("ram_missing_data", b_ram_missing_data, "RAM batch is 16 bytes; its 1 pages need 4112", true),
	BAD("ram_extra_data", b_ram_extra_data, "RAM batch is 4112 bytes; its 1 pages need 16", true),
	BAD("section_over_4mib", b_oversized, "exceeds the limit", true),
	BAD("section_len_4gib", b_huge_len, "exceeds the limit", true),
	BAD("reserved_nonzero", b_reserved, "reserved bytes are not zero", false),
	BAD("page_byte_flipped", b_flipped_page_byte, "checksum mismatch", true),
	BAD("section_len_off_by_one", b_flipped_len, "RAM batch is 4111 bytes", true),
	BAD("config_checksum", b_bad_checksum_config, "checksum mismatch", false),
	BAD("unknown_type_25", b_unknown_type, "unknown section type 25", true),
	BAD("unknown_type_0", b_type0, "unknown section type 0", false),
	BAD("ready_sent_to_dest", b_ready_to_dest, "unknown section type 16", true),
	BAD("barrier_no_channels", b_barrier_no_channels, "with no extra channel open", true),
	BAD("barrier_short", b_barrier_short, "malformed BARRIER section", true),
	BAD("pass_before_config", b_pass_first, "section type 3 out of order (expected CONFIG)", false),
	BAD("ram_before_pass", b_ram_before_pass, "section type 2 out of order (expected PASS)", true),
	BAD("run_past_end", b_run_past_end, "pages 0xfff000 + 2 are not all in one RAM region", true),
	BAD("run_misaligned", b_run_misaligned, "pages 0x1001 + 1 are not all in one RAM region", true),
	BAD("run_huge_address", b_run_huge_address, "pages 0xfffffffffffff000 + 2 are not all", true),
	BAD("run_count_0", b_run_count0, "RAM run of 0 pages", true),
	BAD("run_count_257", b_run_count257, "RAM run of 257 pages", true),
	BAD("run_missing_data", b_run_missing_data, "RAM run is 4108 bytes; its 2 pages need 8204", true),
	BAD("run_short", b_run_short, "RAM run section too short", true),
	BAD("run_before_pass", b_run_before_pass, "section type 12 out of order (expected PASS)", true),
	BAD("state_before_final", b_state_before_final, "section type 4 out of order (expected RAM or PASS)", true),
	BAD("end_without_state", b_end_without_state, "section type 6 out of order (expected RAM or STATE)", true),
	BAD("two_configs", b_two_configs, "section type 1 out of order", true),
	BAD("pass_backwards", b_pass_backwards, "pass 1 follows pass 2", true),
	BAD("pass_starts_at_2", b_pass_starts_at_2, "pass 2 follows pass 0", true),
	BAD("pass_after_final", b_pass_after_final, "section type 3 out of order (expected RAM or STATE)", true),
	BAD("pass_malformed", b_pass_malformed, "malformed PASS section", true),
	BAD("pass_final_flag_2", b_pass_final_flag2, "malformed PASS section", true),
	BAD("two_states", b_two_states, "section type 4 out of order (expected END)", true),
	BAD("ram_after_state", b_ram_after_state, "section type 2 out of order (expected END)", true),
	BAD("digest_without_verify", b_digest_without_verify, "section type 5 out of order (expected END)", true),
	BAD("verify_end_without_digest", b_verify_end_without_digest, "section type 6 out of order (expected DIGEST)", true),
	BAD("end_with_payload", b_end_with_payload, "END section carries 16 bytes", true),
	BAD("end_garbage_length", b_end_garbage_len, "exceeds the limit", true),
	BAD("go_before_end", b_go_early, "section type 13 out of order", true),
	BAD("go_with_payload", b_go_with_payload, "GO carries 4 bytes (must be empty)", true),
	BAD("end_twice", b_end_twice, "section type 6 out of order (expected GO or ABORT)", true),
	{ "no_go_after_end", b_no_go, 74, "closed the connection without GO", true, { NULL } },
	{ "abort_after_end", b_abort, 74, "the source cancelled the switchover", true, { NULL } },
	{ "cut_in_go", b_cut_in_go, 74, "closed the connection without GO", true, { NULL } },
	BAD("config_memory_odd", b_cfg_mem_odd, "is not a multiple of 2 MiB", false),
	BAD("config_memory_2mib", b_cfg_mem_small, "field 'memory': value 2097152 out of range", false),
	BAD("config_memory_2tib", b_cfg_mem_2t, "field 'memory': value 2199023255552 out of range", false),
	BAD("config_vcpus_0", b_cfg_vcpus0, "field 'vcpus': value 0 out of range", false),
	BAD("config_vcpus_1000", b_cfg_vcpus1000, "field 'vcpus': value 1000 out of range", false),
	BAD("config_page_8k", b_cfg_page8k, "field 'page_size': value 8192 out of range", false),
	BAD("config_flags", b_cfg_flags, "field 'flags'", false),
	BAD("config_cmdline_nul", b_cfg_cmdline_nul, "command line contains a NUL byte", false),
	BAD("config_cmdline_4096", b_cfg_cmdline_long, "field 'cmdline_len': value 4096 out of range", false),
	BAD("config_cmdline_len_lies", b_cfg_cmdline_len_lies, "field 'cmdline': length 5, expected 100", false),
	BAD("config_trailing", b_cfg_trailing, "bad configuration", false),
	BAD("config_cpuid_too_many", b_cfg_cpuid_too_many, "bad configuration", false),
	BAD("config_cpuid_nent_lies", b_cfg_cpuid_nent_lies, "bad configuration", false),
	BAD("config_cpuid_twice", b_cfg_cpuid_twice, "CPUID leaf 0x7.0 appears twice", false),
	BAD("config_cpuid_bad_flags", b_cfg_cpuid_bad_flags, "bad configuration", false),
	BAD("config_cpuid_unsupported", b_cfg_cpuid_unsupported,
	    "guest CPU not supported here: this host's CPU lacks", false),
	BAD("config_empty", b_cfg_empty, "bad configuration", false),
	{ "config_over_memory_limit", b_cfg_over_limit, 65,
	  "the VM has 64 MiB of RAM; this destination allows 32 MiB", false, { "--memory", "32M" } },
	{ "config_over_vcpu_limit", b_cfg_vcpus_over_limit, 65,
	  "the VM has 2 vCPUs; this destination allows 1", false, { "--vcpus", "1" } },
	BAD("state_truncated", b_state_truncated, "bad device state", true),
	BAD("state_trailing", b_state_trailing, "4 unexpected bytes after the last record", true),
	BAD("state_empty", b_state_empty, "bad device state: state: malformed or missing record where 'x86_vm' was due", true),
	BAD("state_missing_vcpu", b_state_vcpu_count, "record is for 'serial-8250', not 'x86_vcpu'", true),
	BAD("state_extra_vcpu", b_state_extra_vcpu, "record is for 'x86_vcpu', not 'serial-8250'", true),
	BAD("state_out_of_range", b_state_out_of_range, "field 'ier': value 255 out of range", true),
	BAD("state_wrong_order", b_state_wrong_first, "record is for 'serial-8250', not 'x86_vm'", true),
	BAD("state_dup_msr", b_state_dup_msr, "appears twice", true),
	BAD("state_refused_by_kvm", b_state_bad_efer, "device state", true),
	BAD("state_unknown_msr", b_state_unknown_msr, "device state", true),
	BAD("digest_mismatch", b_digest_mismatch, "verify: RAM digest mismatch", true),
	BAD("digest_missing_page", b_digest_missing_page, "verify: RAM digest mismatch", true),
	BAD("digest_page_count", b_digest_pages, "DIGEST covers 4097 pages, the VM has 4096", true),
	BAD("digest_malformed", b_digest_malformed, "malformed DIGEST section", true),
	BAD("digest_v1", b_digest_v1, "malformed DIGEST section", true),
	BAD("state_digest_mismatch", b_state_digest_mismatch, "verify: device state digest mismatch", true),
};
#undef CUT
#undef BAD
#define T_NCASES (sizeof(t_cases) / sizeof(t_cases[0]))

/* A case's buffers, freed by the next case or teardown if it fails midway. */
static struct vmstate_buf t_cur;
static struct t_result *t_cur_r;

static void t_case_free(void)
{
	vmstate_buf_free(&t_cur);
	free(t_cur_r);
	t_cur_r = NULL;
}

static void t_case_run(void **state)
{
	const struct t_case *c = *state;
	struct vmstate_buf b = { 0 };
	struct t_result *r;
	size_t len = 0;
	uint64_t t0 = t_now_ms();

	t_case_free();
	r = t_cur_r = calloc(1, sizeof(*r));
	assert_non_null(r);
	c->build(&t_cur, &len);
	b = t_cur;
	assert_true(len <= b.len);
	t_run(&b, len, c->extra[0] ? c->extra : NULL, r);
	t_check_refused(r, c->want_exit, c->want_msg, c->want_ready);
	print_message("  %s: exit %d in %llu ms: %s\n", c->name, WEXITSTATUS(r->status),
		      (unsigned long long)(t_now_ms() - t0),
		      r->result ? r->result_msg : "(no RESULT)");
	t_case_free();
}

/* The standard stream, whole: the guest runs at the destination. */
static void t_good(void **state)
{
	struct vmstate_buf b = { 0 };
	struct t_result *r = calloc(1, sizeof(*r));
	char serial[64] = "";
	FILE *f;

	(void)state;
	assert_non_null(r);
	t_std(&b, MIG_FLAG_VERIFY);
	t_run(&b, b.len, NULL, r);
	if (!WIFEXITED(r->status) || WEXITSTATUS(r->status) != T_GUEST_EXIT || !r->ready ||
	    !r->result || r->result_status != 0 || strstr(r->out, "Sanitizer") ||
	    strstr(r->out, "runtime error"))
		fail_msg("good stream: status %#x (want exit %d), READY %d, RESULT %d %d \"%s\"; output:\n%s",
			 r->status, T_GUEST_EXIT, r->ready, r->result, r->result_status,
			 r->result_msg, r->out);
	f = fopen(t_serial, "r");
	assert_non_null(f);
	size_t n = fread(serial, 1, sizeof(serial) - 1, f);
	fclose(f);
	serial[n] = '\0';
	assert_string_equal(serial, "OK\n");
	assert_int_equal(access(t_sock, F_OK), -1);
	free(b.data);
	free(r);
}

/* The same stream without verify (no DIGEST) also boots. */
static void t_good_no_verify(void **state)
{
	struct vmstate_buf b = { 0 };
	struct t_result *r = calloc(1, sizeof(*r));

	(void)state;
	assert_non_null(r);
	t_std(&b, 0);
	t_run(&b, b.len, NULL, r);
	if (!WIFEXITED(r->status) || WEXITSTATUS(r->status) != T_GUEST_EXIT)
		fail_msg("good stream without verify: status %#x; output:\n%s", r->status, r->out);
	free(b.data);
	free(r);
}

/* ---- post-copy: a page delivered twice --------------------------------- */

/*
 * Real mode at 0x1000: print the first byte of the page at T_DATA_GPA and a
 * newline on COM1, write 42 to the debug-exit port, halt.
 */
static const uint8_t t_pc_code[] = {
	0xba, 0xf8, 0x03,	/* mov dx,0x3f8 */
	0xa0, T_DATA_GPA & 0xff, T_DATA_GPA >> 8,	/* mov al,[T_DATA_GPA] */
	0xee,			/* out dx,al */
	0xb0, '\n', 0xee,
	0xb0, T_GUEST_EXIT,	/* mov al,42 */
	0xe6, 0xf4,		/* out 0xf4,al */
	0xf4,			/* 1: hlt */
	0xeb, 0xfd,		/* jmp 1b */
};

/* The RAM digest of a 16 MiB guest holding t_pc_code and T_DATA_GPA filled with `fill`. */
static uint64_t t_pc_digest(uint8_t fill)
{
	uint8_t *img = calloc(1, T_MEM);
	struct guest_memory mem = {
		.fd = -1, .host = img, .size = T_MEM, .nr_regions = 1,
		.regions = { { .gpa = 0, .size = T_MEM, .offset = 0 } },
	};
	uint64_t d;

	assert_non_null(img);
	memcpy(img + T_CODE_GPA, t_pc_code, sizeof(t_pc_code));
	memset(img + T_DATA_GPA, fill, GUEST_PAGE_SIZE);
	d = mig_digest_of_memory(&mem);
	free(img);
	return d;
}

/* A RAM batch of one raw page, or a RAM_RUN of one page, holding `data`. */
static void t_pc_page(struct vmstate_buf *b, uint64_t gpa, const uint8_t *data, bool as_run)
{
	struct vmstate_buf p = { 0 };

	if (as_run) {
		t_u64(&p, gpa);
		t_u32(&p, 1);
	} else {
		t_u32(&p, 1);
		t_u64(&p, gpa | MIG_PAGE_RAW);
		t_u32(&p, GUEST_PAGE_SIZE);
	}
	t_put(&p, data, GUEST_PAGE_SIZE);
	t_sec_buf(b, as_run ? MIG_SEC_RAM_RUN : MIG_SEC_RAM, &p);
	free(p.data);
}

/*
 * A post-copy stream as a (misbehaving) source would send it: pass 1 with
 * the code and every other page zero, DISCARD of the data page, STATE,
 * POSTCOPY_RUN, then the data page twice with different content ('A',
 * then 'B'), a DIGEST claiming RAM holds `digest_fill` there, and DONE.
 */
static void t_pc_head(struct vmstate_buf *b)
{
	uint8_t code[GUEST_PAGE_SIZE] = { 0 };
	uint64_t e[MIG_RAM_BATCH_MAX];
	struct vmstate_buf p = { 0 };

	memcpy(code, t_pc_code, sizeof(t_pc_code));
	t_header(b, MIG_MAGIC, MIG_VERSION);
	t_config(b, T_MEM, 1, MIG_FLAG_VERIFY | MIG_FLAG_POSTCOPY);
	t_pass(b, 1, false);
	t_pc_page(b, T_CODE_GPA, code, false);
	for (uint64_t gpa = 0; gpa < T_MEM;) {
		uint32_t n = 0;
		for (; gpa < T_MEM && n < MIG_RAM_BATCH_MAX; gpa += GUEST_PAGE_SIZE)
			if (gpa != T_CODE_GPA)
				e[n++] = gpa | MIG_PAGE_ZERO;
		t_ram(b, e, n);
	}
	t_u64(&p, 0);			/* DISCARD: first page, 64 bits, the data page */
	t_u32(&p, 64);
	t_u64(&p, 1ULL << (T_DATA_GPA / GUEST_PAGE_SIZE));
	t_sec_buf(b, MIG_SEC_DISCARD, &p);
	free(p.data);
	t_sec_buf(b, MIG_SEC_STATE, &t_state_boot);
	t_sec(b, MIG_SEC_POSTCOPY_RUN, NULL, 0);
}

static void t_pc_twice(struct vmstate_buf *b, uint8_t digest_fill)
{
	uint8_t page[GUEST_PAGE_SIZE];

	t_pc_head(b);
	memset(page, 'A', sizeof(page));
	t_pc_page(b, T_DATA_GPA, page, false);
	memset(page, 'B', sizeof(page));
	t_pc_page(b, T_DATA_GPA, page, true);
	t_digest(b, T_MEM / GUEST_PAGE_SIZE, t_pc_digest(digest_fill));
	t_sec(b, MIG_SEC_POSTCOPY_DONE, NULL, 0);
}

static void t_serial_read(char *buf, size_t size)
{
	FILE *f = fopen(t_serial, "r");
	size_t n = 0;

	if (f) {
		n = fread(buf, 1, size - 1, f);
		fclose(f);
	}
	buf[n] = '\0';
}

/* Run t_pc_twice() against a destination; minor false: missing faults only. */
static void t_pc_run_twice(uint8_t digest_fill, bool minor, struct t_result *r, char *serial,
			   size_t size)
{
	struct vmstate_buf b = { 0 };

	t_pc_twice(&b, digest_fill);
	if (!minor)
		setenv("FERRY_UFFD_NO_MINOR", "1", 1);
	t_run(&b, b.len, NULL, r);
	unsetenv("FERRY_UFFD_NO_MINOR");
	t_serial_read(serial, size);
	free(b.data);
}

/*
 * The first copy of a page sent twice after the switch is the one placed
 * (the guest may already use it when the second comes); --verify must
 * compare what was placed: a DIGEST of the first copy passes and the guest
 * sees that copy, in minor-fault mode (the page sits in an allocated
 * chunk) and with missing faults only (a hole filled by UFFDIO_COPY).
 */
static void t_pc_twice_placed_copy_verified(void **state)
{
	(void)state;
	for (int minor = 1; minor >= 0; minor--) {
		struct t_result *r;
		char serial[64];

		t_case_free();		/* a failure leaves r to teardown */
		r = t_cur_r = calloc(1, sizeof(*r));
		assert_non_null(r);
		t_pc_run_twice('A', minor, r, serial, sizeof(serial));
		if (!WIFEXITED(r->status) || WEXITSTATUS(r->status) != T_GUEST_EXIT || !r->result ||
		    r->result_status != 0 || strcmp(serial, "A\n") || strstr(r->out, "Sanitizer") ||
		    strstr(r->out, "runtime error"))
			fail_msg("%s faults, DIGEST of the placed copy: status %#x (want exit %d), "
				 "RESULT %d %d \"%s\", guest printed \"%s\" (want \"A\\n\"); output:\n%s",
				 minor ? "minor" : "missing", r->status, T_GUEST_EXIT, r->result,
				 r->result_status, r->result_msg, serial, r->out);
		print_message("  %s faults: first copy placed and verified\n",
			      minor ? "minor" : "missing");
	}
	t_case_free();
}

/* ... and a DIGEST of the dropped second copy is a mismatch: the VM is lost. */
static void t_pc_twice_dropped_copy_refused(void **state)
{
	struct t_result *r;
	char serial[64];

	(void)state;
	t_case_free();
	r = t_cur_r = calloc(1, sizeof(*r));
	assert_non_null(r);
	t_pc_run_twice('B', true, r, serial, sizeof(serial));
	if (!WIFEXITED(r->status) || WEXITSTATUS(r->status) != 75 || !r->result ||
	    r->result_status >= 0 || !strstr(r->result_msg, "verify: RAM digest mismatch") ||
	    strstr(r->out, "Sanitizer") || strstr(r->out, "runtime error"))
		fail_msg("DIGEST of the dropped copy: status %#x (want exit 75), RESULT %d %d \"%s\" "
			 "(want a digest mismatch), guest printed \"%s\"; output:\n%s",
			 r->status, r->result, r->result_status, r->result_msg, serial, r->out);
	t_case_free();
}

/* ---- post-copy: hostile sections after POSTCOPY_RUN --------------------- */

/*
 * After POSTCOPY_RUN the guest runs at the destination (and blocks on the
 * data page it reads): a bad section then loses the VM.  The destination
 * must say so, send a RESULT error naming the problem, exit 75 and never
 * crash; nothing may report success.
 */
struct t_pc_case {
	const char *name;
	void (*tail)(struct vmstate_buf *b);	/* after t_pc_head() */
	const char *want_msg;
};

static void p_ram_past_end(struct vmstate_buf *b) { t_ram1(b, T_MEM | MIG_PAGE_RAW); }
static void p_ram_kind(struct vmstate_buf *b) { t_ram1(b, T_DATA_GPA | 7); }
static void p_ram_count0(struct vmstate_buf *b) { t_sec(b, MIG_SEC_RAM, "\0\0\0\0", 4); }
static void p_run_misaligned(struct vmstate_buf *b) { t_ram_run(b, T_DATA_GPA + 1, 1, 1); }
static void p_run_past_end(struct vmstate_buf *b) { t_ram_run(b, T_MEM - GUEST_PAGE_SIZE, 2, 2); }
static void p_run_short(struct vmstate_buf *b) { t_sec(b, MIG_SEC_RAM_RUN, "\0\0\0\0", 4); }
static void p_done_missing(struct vmstate_buf *b)
{
	t_digest(b, T_MEM / GUEST_PAGE_SIZE, t_pc_digest('A'));
	t_sec(b, MIG_SEC_POSTCOPY_DONE, NULL, 0);
}
static void p_done_payload(struct vmstate_buf *b)
{
	uint8_t page[GUEST_PAGE_SIZE];

	memset(page, 'A', sizeof(page));
	t_pc_page(b, T_DATA_GPA, page, false);
	t_digest(b, T_MEM / GUEST_PAGE_SIZE, t_pc_digest('A'));
	t_sec(b, MIG_SEC_POSTCOPY_DONE, "x", 1);
}
static void p_done_without_digest(struct vmstate_buf *b) { t_sec(b, MIG_SEC_POSTCOPY_DONE, NULL, 0); }
static void p_digest_malformed(struct vmstate_buf *b) { t_sec(b, MIG_SEC_DIGEST, "\1\2\3", 3); }
/* Every page right, the device state digest not what was loaded at POSTCOPY_RUN. */
static void p_state_digest(struct vmstate_buf *b)
{
	uint8_t page[GUEST_PAGE_SIZE];

	memset(page, 'A', sizeof(page));
	t_pc_page(b, T_DATA_GPA, page, false);
	t_digest_state(b, T_MEM / GUEST_PAGE_SIZE, t_pc_digest('A'), t_state_digest ^ 1);
	t_sec(b, MIG_SEC_POSTCOPY_DONE, NULL, 0);
}
static void p_pass(struct vmstate_buf *b) { t_pass(b, 2, false); }
static void p_end(struct vmstate_buf *b) { t_end(b); }
static void p_run_twice(struct vmstate_buf *b) { t_sec(b, MIG_SEC_POSTCOPY_RUN, NULL, 0); }
static void p_resume_inline(struct vmstate_buf *b) { t_sec(b, MIG_SEC_RESUME, NULL, 0); }
static void p_go(struct vmstate_buf *b) { t_sec(b, MIG_SEC_GO, NULL, 0); }
static void p_bad_checksum(struct vmstate_buf *b)
{
	t_sec(b, MIG_SEC_POSTCOPY_DONE, NULL, 0);
	b->data[b->len - 1] ^= 1;
}

static const struct t_pc_case t_pc_cases[] = {
	{ "pc_ram_past_end", p_ram_past_end, "page 0x1000000 is outside guest RAM" },
	{ "pc_ram_kind_7", p_ram_kind, "unknown encoding 7" },
	{ "pc_ram_count_0", p_ram_count0, "RAM batch of 0 pages" },
	{ "pc_run_misaligned", p_run_misaligned, "are not all in one RAM region" },
	{ "pc_run_past_end", p_run_past_end, "are not all in one RAM region" },
	{ "pc_run_short", p_run_short, "RAM run section too short" },
	{ "pc_digest_page_never_sent", p_done_missing, "verify: RAM digest mismatch" },
	{ "pc_done_with_payload", p_done_payload, "POSTCOPY_DONE carries 1 bytes" },
	{ "pc_done_without_digest", p_done_without_digest, "section type 10 out of order" },
	{ "pc_digest_malformed", p_digest_malformed, "malformed DIGEST section" },
	{ "pc_state_digest_mismatch", p_state_digest, "verify: device state digest mismatch" },
	{ "pc_pass_after_run", p_pass, "section type 3 out of order" },
	{ "pc_end_after_run", p_end, "section type 6 out of order" },
	{ "pc_run_twice", p_run_twice, "section type 9 out of order" },
	{ "pc_resume_inline", p_resume_inline, "section type 11" },
	{ "pc_go_after_run", p_go, "section type 13 out of order" },
	{ "pc_bad_checksum", p_bad_checksum, "checksum mismatch" },
};
#define T_NPCCASES (sizeof(t_pc_cases) / sizeof(t_pc_cases[0]))

static void t_pc_case_run(void **state)
{
	const struct t_pc_case *c = *state;
	struct t_result *r;

	t_case_free();
	r = t_cur_r = calloc(1, sizeof(*r));
	assert_non_null(r);
	t_pc_head(&t_cur);
	c->tail(&t_cur);
	t_run(&t_cur, t_cur.len, NULL, r);
	if (!WIFEXITED(r->status) || WEXITSTATUS(r->status) != 75 || !r->ready || !r->result ||
	    r->result_status >= 0 || !strstr(r->result_msg, c->want_msg) ||
	    !strstr(r->out, c->want_msg) || !strstr(r->out, "the VM is lost") ||
	    strstr(r->out, "Sanitizer") || strstr(r->out, "runtime error") ||
	    access(t_sock, F_OK) == 0)
		fail_msg("%s: status %#x (want exit 75), READY %d, RESULT %d %d \"%s\" (want an error "
			 "with \"%s\"); output:\n%s", c->name, r->status, r->ready, r->result,
			 r->result_status, r->result_msg, c->want_msg, r->out);
	print_message("  %s: exit 75: %s\n", c->name, r->result_msg);
	t_case_free();
}

/* t_sec() and t_config_payload() write exactly what ferry's writers do. */
static void t_encoders_match_ferry(void **state)
{
	struct vmstate_buf mine = { 0 }, cfgp = { 0 }, ferry = { 0 };
	struct mig_config cfg = { .memory = T_MEM, .vcpus = 1, .page_size = GUEST_PAGE_SIZE,
				  .flags = MIG_FLAG_VERIFY, .codecs = T_CODECS, .cmdline_len = 13 };
	struct mig_stream s;
	int sv[2];

	(void)state;
	memcpy(cfg.cmdline, "console=ttyS0", 13);
	assert_int_equal(vmstate_save(&mig_config_vmsd, &cfg, &ferry), 0);
	t_config_payload(&cfgp, T_MEM, 1, GUEST_PAGE_SIZE, MIG_FLAG_VERIFY, "console=ttyS0", 13);
	assert_int_equal(cfgp.len, ferry.len);
	assert_memory_equal(cfgp.data, ferry.data, ferry.len);

	t_sec_buf(&mine, MIG_SEC_CONFIG, &cfgp);
	t_pass(&mine, 1, true);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	struct mig_channel *ch;
	assert_int_equal(mig_channel_socket(sv[0], &ch), 0);
	assert_int_equal(mig_stream_init(&s, ch, 1 << 16), 0);
	mig_section_write(&s, MIG_SEC_CONFIG, ferry.data, (uint32_t)ferry.len);
	uint8_t pass[13] = { 1, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 1 };
	mig_section_write(&s, MIG_SEC_PASS, pass, sizeof(pass));
	assert_int_equal(mig_stream_flush(&s), 0);
	uint8_t *got = malloc(mine.len);
	assert_int_equal(read(sv[1], got, mine.len), (ssize_t)mine.len);
	assert_memory_equal(got, mine.data, mine.len);
	mig_stream_destroy(&s);
	close(sv[1]);
	free(got);
	free(mine.data);
	free(cfgp.data);
	free(ferry.data);
}

/* ---- setup ------------------------------------------------------------- */

/* Capture the state of a never-run 1-vCPU VM, as machine_state_save() does. */
static int t_capture_state(void)
{
	struct machine *m = calloc(1, sizeof(*m));
	struct machine_config mc = { .memory = T_MEM, .vcpus = 1, .serial = "file:/dev/null" };
	struct vmstate_error verr;
	struct vmstate_buf buf = { 0 };
	int err;

	if (!m)
		return -ENOMEM;
	err = machine_create(m, &mc);
	if (!err) {
		/* Never started: nothing to pause, but save insists on PAUSED. */
		m->vm.state = VM_STATE_PAUSED;
		err = machine_state_save(m, &buf);
		m->vm.state = VM_STATE_CREATED;
	}
	machine_destroy(m);
	free(m);
	if (!err)
		err = machine_state_decode(buf.data, buf.len, 1, &t_real, &verr);
	vmstate_buf_free(&buf);
	return err;
}

static int t_setup(void **state)
{
	struct machine_state st;
	const char *build = getenv("BUILD");

	(void)state;
	snprintf(t_ferry, sizeof(t_ferry), "%s/ferry-san", build && *build ? build : "build");
	if (access(t_ferry, X_OK) < 0) {
		fprintf(stderr, "%s: not built (make %s)\n", t_ferry, t_ferry);
		return -1;
	}
	strcpy(t_dir, "/tmp/ferry-hostile-XXXXXX");
	if (!mkdtemp(t_dir))
		return -1;
	snprintf(t_sock, sizeof(t_sock), "%s/x.sock", t_dir);
	snprintf(t_serial, sizeof(t_serial), "%s/serial", t_dir);
	snprintf(t_disk, sizeof(t_disk), "%s/disk.img", t_dir);
	snprintf(t_disk_arg, sizeof(t_disk_arg), "path=%s", t_disk);
	int dfd = open(t_disk, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (dfd < 0 || ftruncate(dfd, 1 << 20))
		return -1;
	close(dfd);
	if (t_capture_state()) {
		fprintf(stderr, "cannot capture a real VM's state\n");
		return -1;
	}
	t_state_copy(&st);
	st.vcpus[0].sregs.cs.selector = 0;
	st.vcpus[0].sregs.cs.base = 0;
	st.vcpus[0].regs.rip = T_CODE_GPA;
	t_state_encode(&st, &t_state_boot);
	free(st.vcpus);
	struct vmstate_error verr;
	if (machine_state_decode(t_state_boot.data, t_state_boot.len, 1, &st, &verr) ||
	    machine_state_digest(&st, &t_state_digest)) {
		fprintf(stderr, "cannot digest the boot state: %s\n", verr.msg);
		return -1;
	}
	machine_state_free(&st);
	t_img = calloc(1, T_MEM);
	if (!t_img)
		return -1;
	memcpy(t_img + T_CODE_GPA, t_code, sizeof(t_code));
	memset(t_img + T_DATA_GPA, 0x5a, GUEST_PAGE_SIZE);
	return 0;
}

static int t_teardown(void **state)
{
	(void)state;
	t_case_free();
	unlink(t_sock);
	unlink(t_serial);
	unlink(t_disk);
	rmdir(t_dir);
	machine_state_free(&t_real);
	vmstate_buf_free(&t_state_boot);
	free(t_img);
	return 0;
}

/*
 * The peak RSS of a destination (--memory 1G) sent CONFIG, PASS 1 and, if
 * `pages`, 64 pages each alone in its own 2 MiB chunk, then a section with
 * a bad checksum (it exits 65 after loading the pages).
 */
static uint64_t t_peak_rss(bool pages, struct t_result *r)
{
	static const char *const extra[] = { "--memory", "1G", NULL };
	struct vmstate_buf b = { 0 };
	struct rusage ru;
	int outfd, fd;
	pid_t pid, w = 0;

	t_header(&b, MIG_MAGIC, MIG_VERSION);
	t_config(&b, 1ULL << 30, 1, 0);
	t_pass(&b, 1, false);
	for (uint64_t i = 0; pages && i < 64; i++)
		t_ram1(&b, (i * (2ULL << 20) + 0x1000) | MIG_PAGE_RAW);
	t_sec_raw(&b, MIG_SEC_END, 0, 0, NULL, 0, 1);
	memset(r, 0, sizeof(*r));
	unlink(t_serial);
	unlink(t_sock);
	pid = t_spawn(extra, &outfd);
	fd = t_connect(pid, outfd, r);
	if (fd < 0) {
		if (fd == -1) {		/* -2: it exited, and was reaped */
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
		}
		fail_msg("the destination never accepted a connection; its output:\n%s", r->out);
	}
	t_send(fd, b.data, b.len);
	free(b.data);
	shutdown(fd, SHUT_WR);
	t_read_replies(fd, r);	/* closes fd */
	for (uint64_t end = t_now_ms() + T_WAIT_MS; w != pid && t_now_ms() < end;) {
		t_drain(outfd, r);
		w = wait4(pid, &r->status, WNOHANG, &ru);
		if (w != pid)
			usleep(10000);
	}
	if (w != pid) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		fail_msg("the destination did not exit; its output:\n%s", r->out);
	}
	t_drain(outfd, r);
	close(outfd);
	/* 65: the bad section refused (74 if it saw the connection end first). */
	if (!WIFEXITED(r->status) || (WEXITSTATUS(r->status) != 65 && WEXITSTATUS(r->status) != 74) ||
	    strstr(r->out, "Sanitizer"))
		fail_msg("want exit 65 for the bad section, got %#x; output:\n%s", r->status, r->out);
	return (uint64_t)ru.ru_maxrss * 1024;
}

/*
 * Memory in proportion to what arrives: 64 scattered pages may raise the
 * destination's peak RSS by about 64 pages, not by the 64 chunks of 2 MiB
 * (128 MiB) it took when each page populated its whole chunk.
 */
static void t_rss_in_proportion(void **state)
{
	struct t_result *r = calloc(1, sizeof(*r));

	(void)state;
	assert_non_null(r);
	uint64_t base = t_peak_rss(false, r);
	uint64_t with = t_peak_rss(true, r);
	free(r);
	if (with > base + (32ULL << 20))
		fail_msg("64 pages of 4 KiB raised peak RSS from %llu to %llu MiB",
			 (unsigned long long)(base >> 20), (unsigned long long)(with >> 20));
}

int main(void)
{
	struct CMUnitTest tests[T_NCASES + T_NPCCASES + 6];
	size_t n = 0;
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);

	if (fd < 0) {
		printf("SKIP: /dev/kvm not available (%s)\n", strerror(errno));
		return 77;
	}
	close(fd);
	log_set_level(LOG_ERROR);
	signal(SIGPIPE, SIG_IGN);
	tests[n++] = (struct CMUnitTest)cmocka_unit_test(t_encoders_match_ferry);
	tests[n++] = (struct CMUnitTest)cmocka_unit_test(t_good);
	tests[n++] = (struct CMUnitTest)cmocka_unit_test(t_good_no_verify);
	tests[n++] = (struct CMUnitTest)cmocka_unit_test(t_pc_twice_placed_copy_verified);
	tests[n++] = (struct CMUnitTest)cmocka_unit_test(t_pc_twice_dropped_copy_refused);
	tests[n++] = (struct CMUnitTest)cmocka_unit_test(t_rss_in_proportion);
	for (size_t i = 0; i < T_NCASES; i++)
		tests[n++] = (struct CMUnitTest){
			.name = t_cases[i].name, .test_func = t_case_run,
			.initial_state = (void *)&t_cases[i],
		};
	for (size_t i = 0; i < T_NPCCASES; i++)
		tests[n++] = (struct CMUnitTest){
			.name = t_pc_cases[i].name, .test_func = t_pc_case_run,
			.initial_state = (void *)&t_pc_cases[i],
		};
	/* T_FILTER=PATTERN ("ram_lz4*"): run only the cases it names (slow hosts). */
	if (getenv("T_FILTER"))
		cmocka_set_test_filter(getenv("T_FILTER"));
	return _cmocka_run_group_tests("hostile_stream", tests, n, t_setup, t_teardown);
}
