/*
 * cmdline.c - parse "key=value key=value ..." from the PVH command line.
 *
 * Unknown keys only warn (so a VMM may add its own); a malformed value is a
 * hard error, reported as "probe: bad value for <key>".
 */
#include "user.h"

static const char *const workloads[] = {
	[WL_IDLE] = "idle", [WL_CPU] = "cpu", [WL_MEMTOUCH] = "memtouch", [WL_VERIFY] = "verify",
};
static const char *const patterns[] = {
	[PAT_SEQ] = "seq", [PAT_RANDOM] = "random", [PAT_HOTCOLD] = "hotcold",
	[PAT_SPARSE] = "sparse",
};
static const char *const fills[] = {
	[FILL_NONE] = "none", [FILL_ZERO] = "zero", [FILL_TEXT] = "text",
	[FILL_RANDOM] = "random", [FILL_MIXED] = "mixed",
};
static const char *const disk_modes[] = {
	[DISK_VERIFY] = "verify", [DISK_RANDWRITE] = "randwrite",
	[DISK_SEQWRITE] = "seqwrite", [DISK_SEQREAD] = "seqread",
};

const char *workload_name(enum workload w) { return workloads[w]; }
const char *pattern_name(enum pattern p) { return patterns[p]; }
const char *fill_name(enum fill f) { return fills[f]; }
const char *disk_mode_name(enum disk_mode m) { return disk_modes[m]; }

/* Copy a token into a NUL-terminated buffer for printing. */
static const char *tok_str(char *buf, size_t cap, const char *s, size_t n)
{
	if (n > cap - 1)
		n = cap - 1;
	memcpy(buf, s, n);
	buf[n] = 0;
	return buf;
}

static bool eq(const char *s, size_t n, const char *lit)
{
	return strlen(lit) == n && !strncmp(s, lit, n);
}

/* Decimal or 0x-hex; *end points past the digits.  Fails on overflow. */
static bool parse_u64(const char *s, size_t n, u64 *out, size_t *used)
{
	u64 v = 0, base = 10;
	size_t i = 0, digits = 0;

	if (n > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
		base = 16, i = 2;
	for (; i < n; i++, digits++) {
		char c = s[i];
		u64 d;

		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (base == 16 && c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else if (base == 16 && c >= 'A' && c <= 'F')
			d = c - 'A' + 10;
		else
			break;
		if (v > (~0UL - d) / base)
			return false;
		v = v * base + d;
	}
	*out = v;
	*used = i;
	return digits > 0;
}

static bool scale(u64 *v, u64 mul)
{
	if (*v > ~0UL / mul)
		return false;
	*v *= mul;
	return true;
}

/* 4096, 64K, 64M, 1G, 1T (binary multiples; a trailing B or iB is allowed) */
static bool parse_size(const char *s, size_t n, u64 *out)
{
	size_t used;
	u64 mul = 1;

	if (!parse_u64(s, n, out, &used))
		return false;
	s += used, n -= used;
	if (n) {
		switch (*s | 0x20) {
		case 'k': mul = 1UL << 10; break;
		case 'm': mul = 1UL << 20; break;
		case 'g': mul = 1UL << 30; break;
		case 't': mul = 1UL << 40; break;
		case 'b': mul = 1; s--, n++; break;   /* plain "B" */
		default: return false;
		}
		s++, n--;
		if (eq(s, n, "iB") || eq(s, n, "B") || eq(s, n, "ib") || eq(s, n, "b"))
			n = 0;
	}
	return n == 0 && scale(out, mul);
}

/* 10ms, 1s, 500us, 100000ns: a unit is required. */
static bool parse_time_ns(const char *s, size_t n, u64 *out)
{
	size_t used;
	u64 mul;

	if (!parse_u64(s, n, out, &used))
		return false;
	s += used, n -= used;
	if (eq(s, n, "ns"))
		mul = 1;
	else if (eq(s, n, "us"))
		mul = 1000;
	else if (eq(s, n, "ms"))
		mul = 1000000;
	else if (eq(s, n, "s"))
		mul = 1000000000;
	else
		return false;
	return scale(out, mul);
}

static bool parse_plain(const char *s, size_t n, u64 *out)
{
	size_t used;

	return parse_u64(s, n, out, &used) && used == n;
}

static bool parse_enum(const char *s, size_t n, const char *const *names, u32 count, u32 *out)
{
	for (u32 i = 0; i < count; i++)
		if (names[i] && eq(s, n, names[i])) {
			*out = i;
			return true;
		}
	return false;
}

/* "verify,disk,net": at most one vCPU workload, plus the device workloads. */
static bool parse_workloads(const char *v, size_t n, struct config *cfg)
{
	bool base = false;

	cfg->workload = WL_IDLE;
	cfg->disk = cfg->net = false;
	for (;;) {
		size_t k = 0;
		u32 e;

		while (k < n && v[k] != ',')
			k++;
		if (eq(v, k, "disk"))
			cfg->disk = true;
		else if (eq(v, k, "net"))
			cfg->net = true;
		else if (!base && parse_enum(v, k, workloads, ARRAY_SIZE(workloads), &e))
			cfg->workload = e, base = true;
		else
			return false;
		if (k == n)
			return true;
		v += k + 1, n -= k + 1;
	}
}

/* A.B.C.D, not 0.0.0.0 */
static bool parse_ipv4(const char *s, size_t n, u32 *out)
{
	u64 part;
	size_t used;

	*out = 0;
	for (u32 i = 0; i < 4; i++) {
		if (!n || *s == 'x' || !parse_u64(s, n, &part, &used) || part > 255 ||
		    (s[0] == '0' && used > 1))
			return false;
		*out = *out << 8 | (u32)part;
		s += used, n -= used;
		if (i < 3) {
			if (!n || *s != '.')
				return false;
			s++, n--;
		}
	}
	return n == 0 && *out != 0;
}

/* SIZE@ADDR:IRQ[:ID], as Linux takes virtio_mmio.device= (ID is ignored). */
static bool parse_virtio(const char *s, size_t n, struct config *cfg)
{
	struct virtio_loc loc;
	size_t k = 0, used;
	u64 irq, id;

	while (k < n && s[k] != '@')
		k++;
	if (k == n || !parse_size(s, k, &loc.size))
		return false;
	s += k + 1, n -= k + 1;
	if (!parse_u64(s, n, &loc.base, &used) || used == n || s[used] != ':')
		return false;
	s += used + 1, n -= used + 1;
	if (!parse_u64(s, n, &irq, &used) || irq > 255)
		return false;
	s += used, n -= used;
	if (n && (*s != ':' || !parse_plain(s + 1, n - 1, &id)))
		return false;
	loc.irq = (u32)irq;
	if (cfg->nvirtio == ARRAY_SIZE(cfg->virtio)) {
		pr("probe: warning: more than %lu virtio_mmio.device=, the rest ignored\n",
		   ARRAY_SIZE(cfg->virtio));
		return true;
	}
	cfg->virtio[cfg->nvirtio++] = loc;
	return true;
}

/* Returns false (after printing why) on a malformed value. */
static bool parse_pair(const char *k, size_t kn, const char *v, size_t vn, struct config *cfg)
{
	char buf[64];
	u32 e = 0;
	bool ok;

	if (eq(k, kn, "workload")) {
		ok = parse_workloads(v, vn, cfg);
	} else if (eq(k, kn, "virtio_mmio.device")) {
		ok = parse_virtio(v, vn, cfg);
	} else if (eq(k, kn, "disk_blocks")) {
		ok = parse_plain(v, vn, &cfg->disk_blocks) && cfg->disk_blocks &&
		     cfg->disk_blocks < (1UL << 40);
	} else if (eq(k, kn, "disk_mode")) {
		ok = parse_enum(v, vn, disk_modes, ARRAY_SIZE(disk_modes), &e);
		cfg->disk_mode = e;
	} else if (eq(k, kn, "disk_flush")) {
		ok = parse_plain(v, vn, &cfg->disk_flush) && cfg->disk_flush < (1UL << 32);
	} else if (eq(k, kn, "disk_req")) {
		/* whole blocks, up to 4 MiB (ferry takes 32 MiB, QEMU more) */
		ok = parse_size(v, vn, &cfg->disk_req) && cfg->disk_req &&
		     cfg->disk_req % 4096 == 0 && cfg->disk_req <= (4UL << 20);
	} else if (eq(k, kn, "disk_depth")) {
		ok = parse_plain(v, vn, &cfg->disk_depth) && cfg->disk_depth >= 1 &&
		     cfg->disk_depth <= 32;
	} else if (eq(k, kn, "disk_rate")) {
		/* at least one block a second, at most 4 GiB/s */
		ok = parse_size(v, vn, &cfg->disk_rate) && cfg->disk_rate >= 4096 &&
		     cfg->disk_rate <= (4UL << 30);
	} else if (eq(k, kn, "ip")) {
		ok = parse_ipv4(v, vn, &cfg->ip);
	} else if (eq(k, kn, "udp_port")) {
		ok = parse_plain(v, vn, &cfg->udp_port) && cfg->udp_port && cfg->udp_port < 65536;
	} else if (eq(k, kn, "pattern")) {
		ok = parse_enum(v, vn, patterns, ARRAY_SIZE(patterns), &e);
		cfg->pattern = e;
	} else if (eq(k, kn, "fill")) {
		ok = parse_enum(v, vn, fills, ARRAY_SIZE(fills), &e);
		cfg->fill = e;
	} else if (eq(k, kn, "wss")) {
		ok = parse_size(v, vn, &cfg->wss) && cfg->wss >= PAGE_SIZE;
	} else if (eq(k, kn, "rate")) {
		ok = parse_size(v, vn, &cfg->rate);
	} else if (eq(k, kn, "period")) {
		ok = parse_time_ns(v, vn, &cfg->period_ns) && cfg->period_ns >= 10000;
	} else if (eq(k, kn, "seconds")) {
		ok = parse_plain(v, vn, &cfg->seconds) && cfg->seconds < (1UL << 32);
	} else if (eq(k, kn, "report")) {
		ok = parse_plain(v, vn, &cfg->report) && cfg->report < (1UL << 32);
	} else if (eq(k, kn, "crash")) {
		ok = parse_plain(v, vn, &cfg->crash) && cfg->crash < (1UL << 32);
	} else if (eq(k, kn, "seed")) {
		ok = parse_plain(v, vn, &cfg->seed);
	} else {
		pr("probe: warning: unknown key '%s', ignored\n", tok_str(buf, sizeof(buf), k, kn));
		return true;
	}
	if (!ok)
		pr("probe: bad value for %s\n", tok_str(buf, sizeof(buf), k, kn));
	return ok;
}

bool parse_cmdline(const char *line, struct config *cfg)
{
	*cfg = (struct config){
		.workload = WL_IDLE, .pattern = PAT_SEQ, .fill = FILL_NONE,
		.wss = 64UL << 20, .period_ns = 100000000, .seconds = 0,
		.seed = 1, .rate = 0, .disk_blocks = 256, .udp_port = 7,
		.disk_mode = DISK_VERIFY, .disk_req = 1UL << 20,
	};
	while (*line) {
		const char *tok, *eqs;
		char buf[64];
		size_t n;

		while (*line == ' ' || *line == '\t' || *line == '\n')
			line++;
		tok = line;
		while (*line && *line != ' ' && *line != '\t' && *line != '\n')
			line++;
		n = line - tok;
		if (!n)
			break;
		for (eqs = tok; eqs < line && *eqs != '='; eqs++)
			;
		if (eqs == line) {
			pr("probe: warning: ignoring '%s'\n", tok_str(buf, sizeof(buf), tok, n));
			continue;
		}
		if (!parse_pair(tok, eqs - tok, eqs + 1, line - eqs - 1, cfg))
			return false;
	}
	return true;
}
