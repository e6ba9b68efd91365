/*
 * libFuzzer target: arbitrary bytes as a hostile destination's return
 * path, read by the source's section reader (mig_section_read over a real
 * mig_stream on a socket) and decoded by the source's own decoders: RESULT
 * (mig_result_parse), PAGE_REQ (mig_reply_page_req), PC_KNOWN
 * (mig_reply_known, against a 16 MiB guest memory and its owed bitmaps),
 * BLOCK_SUMS (mig_block_sums_apply, copy-storage=incremental's chunk
 * digests, against disk 0 of 16 chunks, or of 8200 with mode bit 2) and
 * BASE_SUMS (mig_base_sums_decode, then mig_base_diff into the owed
 * bitmap, as the source's --base handshake does).
 * No VM and no migration thread: only the code that reads and decodes
 * what the destination sends.  See tests/fuzz/README.md.
 *
 * Input: one mode byte, then the return path's bytes (sections, no
 * header).  Mode bit 0 set: rewrite each section's XXH3 checksum to match
 * first, so mutations reach the decoders; bit 1 set: read with a buffer of
 * MIG_SECTION_MAX (as for PC_KNOWN and BLOCK_SUMS) instead of 512 bytes (the
 * other reads); bit 2 set: the disk has 8200 chunks (more than one
 * BLOCK_SUMS section's worth) instead of 16.
 *
 * Invariants besides the sanitizers: a decoded page index is a page of
 * RAM; a RESULT's message lies inside the section; the BLOCK_SUMS applied
 * never go past the disk, and only chunks whose digest differs are owed.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <xxhash.h>

#include "migration/base.h"
#include "migration/block.h"
#include "migration/channel/channel.h"
#include "migration/format.h"
#include "migration/section.h"
#include "migration/source/reply.h"
#include "migration/stream.h"
#include "util/le.h"
#include "util/log.h"
#include "vmm/memory.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_FIX_SUMS	0x01
#define FZ_BIG_BUF	0x02
#define FZ_BIG_DISK	0x04
#define FZ_CHUNKS_MAX	8200u
#define FZ_MEMORY	(16ULL << 20)
#define FZ_MAX_SECTIONS	4096

static struct guest_memory fz_mem;
static unsigned long *fz_owed[GUEST_MAX_REGIONS];
static uint8_t *fz_buf;

/* BLOCK_SUMS: our digests of disk 0's chunks, what is owed, how far the destination got. */
static uint64_t fz_ours[FZ_CHUNKS_MAX];
static uint64_t fz_block_owed[FZ_CHUNKS_MAX / 64 + 1];
static uint64_t fz_chunks, fz_next, fz_differ;

static void fz_seeds(const char *dir);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *seeds = getenv("FUZZ_RETURN_PATH_SEEDS");

	log_set_level(LOG_ERROR);
	if (guest_memory_create(&fz_mem, FZ_MEMORY))
		abort();
	for (unsigned r = 0; r < guest_memory_nr_regions(&fz_mem); r++) {
		size_t longs = guest_memory_region_pages(&fz_mem, r) / 64 + 1;
		fz_owed[r] = malloc(longs * sizeof(unsigned long));
		if (!fz_owed[r])
			abort();
		memset(fz_owed[r], 0xff, longs * sizeof(unsigned long));
	}
	for (unsigned c = 0; c < FZ_CHUNKS_MAX; c++)
		fz_ours[c] = 0x9e3779b97f4a7c15ULL * (c + 1);
	fz_buf = malloc(MIG_SECTION_MAX);
	if (!fz_buf)
		abort();
	if (seeds && *seeds)
		fz_seeds(seeds);
	return 0;
}

/* Rewrite every whole section's checksum so it matches its bytes. */
static void fz_fix_sums(uint8_t *p, size_t len)
{
	size_t off = 0;

	while (off + MIG_SECTION_HDR <= len) {
		uint32_t n = (uint32_t)(p[off + 4] | p[off + 5] << 8 | p[off + 6] << 16 |
					(uint32_t)p[off + 7] << 24);
		if (n > MIG_SECTION_MAX || len - off - MIG_SECTION_HDR < (size_t)n + 8)
			return;
		uint64_t sum = XXH3_64bits(p + off, MIG_SECTION_HDR + (size_t)n);
		for (int i = 0; i < 8; i++)
			p[off + MIG_SECTION_HDR + n + i] = (uint8_t)(sum >> (8 * i));
		off += MIG_SECTION_HDR + (size_t)n + 8;
	}
}

static void fz_decode(uint8_t type, const uint8_t *p, uint32_t len)
{
	int32_t status;
	const char *msg;
	int n;
	uint64_t index;

	switch (type) {
	case MIG_SEC_RESULT:
		if (!mig_result_parse(p, len, &status, &msg, &n) &&
		    (n < 0 || msg < (const char *)p || msg + n > (const char *)p + len))
			abort();
		break;
	case MIG_SEC_PAGE_REQ:
		if (!mig_reply_page_req(p, len, &fz_mem, &index) &&
		    index >= guest_memory_pages(&fz_mem))
			abort();
		break;
	case MIG_SEC_PC_KNOWN:
		(void)mig_reply_known(p, len, &fz_mem, fz_owed);
		break;
	case MIG_SEC_BLOCK_SUMS: {
		uint64_t before = fz_next, differ = fz_differ;
		char why[200];
		if (mig_block_sums_apply(p, len, 0, fz_chunks, fz_ours, fz_block_owed, &fz_next,
					 &fz_differ, why, sizeof(why))) {
			if (!why[0] || fz_next != before || fz_differ != differ)
				abort();	/* refused: a reason, nothing changed */
			break;
		}
		if (fz_next <= before || fz_next > fz_chunks || fz_differ - differ > fz_next - before)
			abort();
		/* Owed exactly where the digest differs, in what this section covered. */
		for (uint64_t c = before; c < fz_next; c++)
			if (!!(fz_block_owed[c / 64] & (1ULL << (c % 64))) !=
			    (le_get(p + 13 + 8 * (c - before), 8) != fz_ours[c]))
				abort();
		break;
	}
	case MIG_SEC_BASE_SUMS: {
		/* The source expects the sections in order; try the first one's place. */
		static uint64_t mine[MIG_BASE_SUMS_MAX];
		uint64_t pages = guest_memory_pages(&fz_mem);
		uint32_t count;
		char why[200];
		if (mig_base_sums_decode(p, len, 0, pages, &count, why, sizeof(why)))
			break;
		if (count > MIG_BASE_SUMS_MAX || count > pages ||
		    len != MIG_BASE_SUMS_HDR + 8 * count)
			abort();
		/* RAM of 16 MiB is one region of 4096 pages: the owed bitmap holds them all. */
		(void)mig_base_diff(p, 0, mine, count, fz_owed[0], 0);
		break;
	}
	default:
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mig_channel *ch;
	struct mig_stream s;
	int sv[2];

	if (!size || size > 256 * 1024)
		return 0;
	uint8_t mode = data[0];
	fz_chunks = mode & FZ_BIG_DISK ? FZ_CHUNKS_MAX : 16;
	fz_next = fz_differ = 0;
	memset(fz_block_owed, 0, sizeof(fz_block_owed));
	size_t len = size - 1;
	uint8_t *bytes = malloc(len + 1);
	if (!bytes)
		return 0;
	memcpy(bytes, data + 1, len);
	if (mode & FZ_FIX_SUMS)
		fz_fix_sums(bytes, len);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		abort();
	/* The whole input fits the socket's buffer: write it, then EOF. */
	int sndbuf = 512 * 1024;
	setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
	for (size_t off = 0; off < len;) {
		ssize_t w = send(sv[1], bytes + off, len - off, MSG_NOSIGNAL);
		if (w <= 0)
			break;
		off += (size_t)w;
	}
	close(sv[1]);
	free(bytes);
	if (mig_channel_socket(sv[0], &ch)) {
		close(sv[0]);
		return 0;
	}
	if (mig_stream_init(&s, ch, 64 * 1024))
		return 0;
	s.timeout_ms = 1000;
	uint32_t cap = mode & FZ_BIG_BUF ? MIG_SECTION_MAX : 512;
	for (int i = 0; i < FZ_MAX_SECTIONS; i++) {
		uint8_t type;
		uint32_t n;
		if (mig_section_read(&s, fz_buf, cap, &type, &n))
			break;
		if (n > cap)
			abort();
		fz_decode(type, fz_buf, n);
	}
	mig_stream_destroy(&s);
	return 0;
}

/* ---- seeds (FUZZ_RETURN_PATH_SEEDS=DIR: the BLOCK_SUMS ones) ----------- */

/* One section of the return path (checksum left 0: the seeds set mode bit 0). */
static size_t fz_sec(uint8_t *out, uint8_t type, const uint8_t *p, uint32_t n)
{
	out[0] = type;
	out[1] = out[2] = out[3] = 0;
	le_put(out + 4, n, 4);
	if (n)
		memcpy(out + MIG_SECTION_HDR, p, n);
	memset(out + MIG_SECTION_HDR + n, 0, 8);
	return MIG_SECTION_HDR + n + 8;
}

/* BLOCK_SUMS for disk 0: count digests from chunk first, every third one ours. */
static size_t fz_sums(uint8_t *out, uint64_t first, uint32_t count)
{
	uint8_t *p = malloc(13 + 8 * (size_t)count);
	size_t n;

	if (!p)
		abort();
	p[0] = 0;
	le_put(p + 1, first, 8);
	le_put(p + 9, count, 4);
	for (uint32_t k = 0; k < count; k++)
		le_put(p + 13 + 8 * k, k % 3 ? 0x5eed0000 + k : fz_ours[first + k], 8);
	n = fz_sec(out, MIG_SEC_BLOCK_SUMS, p, 13 + 8 * count);
	free(p);
	return n;
}

static void fz_write(const char *dir, const char *name, uint8_t mode, const uint8_t *p,
		     size_t n)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	if (!f || fputc(mode, f) == EOF || fwrite(p, 1, n, f) != n || fclose(f)) {
		perror(path);
		exit(1);
	}
	printf("%s: %zu bytes\n", path, n + 1);
}

/*
 * block-sums: disk 0's 16 chunks in two sections (10 + 6), some digests
 * matching ours; block-sums-big: 8000 of 8200 chunks in one section (a
 * MIG_SECTION_MAX buffer), then a RESULT refusing the rest.
 */
static void fz_seeds(const char *dir)
{
	uint8_t *b = malloc(MIG_SECTION_MAX);
	size_t n = 0;

	if (!b)
		abort();
	n += fz_sums(b + n, 0, 10);
	n += fz_sums(b + n, 10, 6);
	fz_write(dir, "block-sums", FZ_FIX_SUMS | FZ_BIG_BUF, b, n);
	n = fz_sums(b, 0, 8000);
	uint8_t res[6 + 11];
	le_put(res, (uint32_t)-EIO, 4);
	le_put(res + 4, 11, 2);
	memcpy(res + 6, "disk 0 gone", 11);
	n += fz_sec(b + n, MIG_SEC_RESULT, res, sizeof(res));
	fz_write(dir, "block-sums-big", FZ_FIX_SUMS | FZ_BIG_BUF | FZ_BIG_DISK, b, n);
	free(b);
	exit(0);
}
