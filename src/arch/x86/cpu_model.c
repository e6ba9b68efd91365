#include "arch/x86/cpu_model.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum x86_reg { EAX, EBX, ECX, EDX };

/* The feature words: one CPUID register of one leaf (and sub-leaf). */
static const struct x86_cpu_word {
	uint32_t function, index;
	enum x86_reg reg;
} x86_cpu_words[X86_CPU_WORDS] = {
	{ 0x1, 0, ECX }, { 0x1, 0, EDX },
	{ 0x7, 0, EBX }, { 0x7, 0, ECX }, { 0x7, 0, EDX }, { 0x7, 1, EAX },
	{ 0xd, 1, EAX },
	{ 0x80000001, 0, ECX }, { 0x80000001, 0, EDX },
};

struct x86_feature {
	const char *name;	/* as /proc/cpuinfo spells it */
	uint8_t word, bit;
	bool baseline;		/* in x86-64-v2 */
};

/*
 * Bits that the guest's OS or ferry sets (osxsave, ospke, hypervisor) or
 * that ferry never passes on (arch_capabilities, see cpuid.c) are not
 * named: they are nothing a destination must offer.
 */
static const struct x86_feature x86_features[] = {
	{ "sse3", 0, 0, true }, { "pclmulqdq", 0, 1 }, { "dtes64", 0, 2 },
	{ "monitor", 0, 3 }, { "ds_cpl", 0, 4 }, { "vmx", 0, 5 }, { "smx", 0, 6 },
	{ "est", 0, 7 }, { "tm2", 0, 8 }, { "ssse3", 0, 9, true }, { "cnxt_id", 0, 10 },
	{ "sdbg", 0, 11 }, { "fma", 0, 12 }, { "cx16", 0, 13, true }, { "xtpr", 0, 14 },
	{ "pdcm", 0, 15 }, { "pcid", 0, 17 }, { "dca", 0, 18 }, { "sse4_1", 0, 19, true },
	{ "sse4_2", 0, 20, true }, { "x2apic", 0, 21, true }, { "movbe", 0, 22 },
	{ "popcnt", 0, 23, true }, { "tsc_deadline_timer", 0, 24, true }, { "aes", 0, 25 },
	{ "xsave", 0, 26 }, { "avx", 0, 28 }, { "f16c", 0, 29 }, { "rdrand", 0, 30 },

	{ "fpu", 1, 0, true }, { "vme", 1, 1, true }, { "de", 1, 2, true }, { "pse", 1, 3, true },
	{ "tsc", 1, 4, true }, { "msr", 1, 5, true }, { "pae", 1, 6, true }, { "mce", 1, 7, true },
	{ "cx8", 1, 8, true }, { "apic", 1, 9, true }, { "sep", 1, 11, true },
	{ "mtrr", 1, 12, true }, { "pge", 1, 13, true }, { "mca", 1, 14, true },
	{ "cmov", 1, 15, true }, { "pat", 1, 16, true }, { "pse36", 1, 17, true },
	{ "clflush", 1, 19, true }, { "mmx", 1, 23, true }, { "fxsr", 1, 24, true },
	{ "sse", 1, 25, true }, { "sse2", 1, 26, true }, { "ss", 1, 27 }, { "ht", 1, 28 },

	{ "fsgsbase", 2, 0 }, { "tsc_adjust", 2, 1 }, { "sgx", 2, 2 }, { "bmi1", 2, 3 },
	{ "hle", 2, 4 }, { "avx2", 2, 5 }, { "smep", 2, 7 }, { "bmi2", 2, 8 }, { "erms", 2, 9 },
	{ "invpcid", 2, 10 }, { "rtm", 2, 11 }, { "mpx", 2, 14 }, { "avx512f", 2, 16 },
	{ "avx512dq", 2, 17 }, { "rdseed", 2, 18 }, { "adx", 2, 19 }, { "smap", 2, 20 },
	{ "avx512ifma", 2, 21 }, { "clflushopt", 2, 23 }, { "clwb", 2, 24 },
	{ "avx512pf", 2, 26 }, { "avx512er", 2, 27 }, { "avx512cd", 2, 28 },
	{ "sha_ni", 2, 29 }, { "avx512bw", 2, 30 }, { "avx512vl", 2, 31 },

	{ "avx512vbmi", 3, 1 }, { "umip", 3, 2 }, { "pku", 3, 3 }, { "waitpkg", 3, 5 },
	{ "avx512_vbmi2", 3, 6 }, { "gfni", 3, 8 }, { "vaes", 3, 9 }, { "vpclmulqdq", 3, 10 },
	{ "avx512_vnni", 3, 11 }, { "avx512_bitalg", 3, 12 }, { "avx512_vpopcntdq", 3, 14 },
	{ "la57", 3, 16 }, { "rdpid", 3, 22 }, { "cldemote", 3, 25 }, { "movdiri", 3, 27 },
	{ "movdir64b", 3, 28 },

	{ "avx512_4vnniw", 4, 2 }, { "avx512_4fmaps", 4, 3 }, { "fsrm", 4, 4 },
	{ "avx512_vp2intersect", 4, 8 }, { "md_clear", 4, 10 }, { "serialize", 4, 14 },
	{ "tsxldtrk", 4, 16 }, { "amx_bf16", 4, 22 }, { "avx512_fp16", 4, 23 },
	{ "amx_tile", 4, 24 }, { "amx_int8", 4, 25 }, { "spec_ctrl", 4, 26 },
	{ "intel_stibp", 4, 27 }, { "flush_l1d", 4, 28 }, { "ssbd", 4, 31 },

	{ "avx_vnni", 5, 4 }, { "avx512_bf16", 5, 5 },

	{ "xsaveopt", 6, 0 }, { "xsavec", 6, 1 }, { "xgetbv1", 6, 2 }, { "xsaves", 6, 3 },

	{ "lahf_lm", 7, 0, true }, { "cmp_legacy", 7, 1 }, { "svm", 7, 2 },
	{ "extapic", 7, 3 }, { "cr8_legacy", 7, 4 }, { "abm", 7, 5 }, { "sse4a", 7, 6 },
	{ "misalignsse", 7, 7 }, { "3dnowprefetch", 7, 8 }, { "xop", 7, 11 },
	{ "fma4", 7, 16 }, { "tbm", 7, 21 }, { "topoext", 7, 22 },

	{ "syscall", 8, 11, true }, { "nx", 8, 20, true }, { "mmxext", 8, 22 },
	{ "fxsr_opt", 8, 25 }, { "pdpe1gb", 8, 26 }, { "rdtscp", 8, 27 }, { "lm", 8, 29, true },
};

#define X86_NR_FEATURES (sizeof(x86_features) / sizeof(x86_features[0]))

/* XSAVE state components (CPUID 0xd.0 EDX:EAX), by the kernel's names. */
static const char *const x86_xsave_names[64] = {
	[0] = "x87", [1] = "sse", [2] = "avx", [3] = "bndregs", [4] = "bndcsr",
	[5] = "opmask", [6] = "zmm_hi256", [7] = "hi16_zmm", [9] = "pkru",
	[17] = "xtilecfg", [18] = "xtiledata",
};

static uint32_t *x86_reg_ptr(struct kvm_cpuid_entry2 *e, enum x86_reg r)
{
	switch (r) {
	case EAX: return &e->eax;
	case EBX: return &e->ebx;
	case ECX: return &e->ecx;
	default:  return &e->edx;
	}
}

static uint32_t x86_reg(const struct kvm_cpuid_entry2 *e, enum x86_reg r)
{
	return *x86_reg_ptr((struct kvm_cpuid_entry2 *)e, r);
}

const struct kvm_cpuid_entry2 *x86_cpuid_find(const struct kvm_cpuid_entry2 *e, unsigned n,
					      uint32_t function, uint32_t index)
{
	for (unsigned i = 0; i < n; i++)
		if (e[i].function == function && e[i].index == index)
			return &e[i];
	return NULL;
}

static int x86_model_fail(char *why, size_t whylen, int err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int x86_model_fail(char *why, size_t whylen, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
	return err;
}

static const struct x86_feature *x86_feature_by_name(const char *name, size_t len)
{
	for (size_t i = 0; i < X86_NR_FEATURES; i++)
		if (strlen(x86_features[i].name) == len && !memcmp(x86_features[i].name, name, len))
			return &x86_features[i];
	return NULL;
}

/* Read the feature list of a model file; the file is the user's, but checked. */
#define X86_MODEL_FILE_MAX (64 * 1024)

static int x86_model_read_file(const char *path, struct x86_cpu_model *m,
			       char *why, size_t whylen)
{
	char *text = malloc(X86_MODEL_FILE_MAX + 1);
	ssize_t n = 0, r;
	int fd, err = 0;

	if (!text)
		return -ENOMEM;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		err = -errno;
		x86_model_fail(why, whylen, err, "cannot open CPU model %s: %s", path, strerror(-err));
		goto out;
	}
	while (n <= X86_MODEL_FILE_MAX && (r = read(fd, text + n, X86_MODEL_FILE_MAX + 1 - n)) > 0)
		n += r;
	close(fd);
	if (n > X86_MODEL_FILE_MAX) {
		err = x86_model_fail(why, whylen, -EFBIG, "CPU model %s is larger than %d bytes",
				     path, X86_MODEL_FILE_MAX);
		goto out;
	}
	text[n] = '\0';
	memset(m->keep, 0, sizeof(m->keep));
	for (char *p = text; *p;) {
		if (*p == '#') {
			p += strcspn(p, "\n");
			continue;
		}
		size_t len = strcspn(p, " \t\r\n#");
		if (!len) {
			p++;
			continue;
		}
		const struct x86_feature *f = x86_feature_by_name(p, len);
		if (!f) {
			err = x86_model_fail(why, whylen, -EINVAL,
					     "CPU model %s: unknown feature '%.*s'", path,
					     (int)(len > 64 ? 64 : len), p);
			goto out;
		}
		m->keep[f->word] |= 1u << f->bit;
		p += len;
	}
out:
	free(text);
	return err;
}

int x86_cpu_model_parse(const char *spec, struct x86_cpu_model *m, char *why, size_t whylen)
{
	memset(m, 0, sizeof(*m));
	if (!strcmp(spec, "host")) {
		snprintf(m->name, sizeof(m->name), "host");
		memset(m->keep, 0xff, sizeof(m->keep));
		return 0;
	}
	if (!strcmp(spec, "baseline")) {
		snprintf(m->name, sizeof(m->name), "baseline");
		for (size_t i = 0; i < X86_NR_FEATURES; i++)
			if (x86_features[i].baseline)
				m->keep[x86_features[i].word] |= 1u << x86_features[i].bit;
		return 0;
	}
	snprintf(m->name, sizeof(m->name), "file");
	return x86_model_read_file(spec, m, why, whylen);
}

/* The mask of named bits of a word: bits no feature names are kept. */
static uint32_t x86_named_bits(unsigned word)
{
	uint32_t named = 0;

	for (size_t i = 0; i < X86_NR_FEATURES; i++)
		if (x86_features[i].word == word)
			named |= 1u << x86_features[i].bit;
	return named;
}

/* The XSAVE components that only a feature's presence lets a guest enable. */
static const struct {
	uint8_t word, bit;
	uint64_t components;
} x86_xsave_deps[] = {
	{ 0, 28, 1ULL << 2 },			/* avx */
	{ 2, 14, 3ULL << 3 },			/* mpx */
	{ 2, 16, 7ULL << 5 },			/* avx512f */
	{ 3, 3, 1ULL << 9 },			/* pku */
	{ 4, 24, 3ULL << 17 },			/* amx_tile */
};

/*
 * Drop from leaf 0xd the components of the features the model dropped,
 * and shrink the largest XSAVE area (ECX) to the components left, so that
 * a destination without them is not asked for them.
 */
static void x86_cpu_model_xsave(const struct x86_cpu_model *m, struct kvm_cpuid2 *c)
{
	struct kvm_cpuid_entry2 *x = (struct kvm_cpuid_entry2 *)
		x86_cpuid_find(c->entries, c->nent, 0xd, 0);
	uint64_t drop = 0;

	if (!x)
		return;
	if (!(m->keep[0] >> 26 & 1))
		drop = ~3ULL;			/* no xsave: x87 and SSE only */
	for (size_t i = 0; i < sizeof(x86_xsave_deps) / sizeof(x86_xsave_deps[0]); i++)
		if (!(m->keep[x86_xsave_deps[i].word] >> x86_xsave_deps[i].bit & 1))
			drop |= x86_xsave_deps[i].components;
	uint64_t comps = (x->eax | (uint64_t)x->edx << 32) & ~drop;
	x->eax = (uint32_t)comps;
	x->edx = (uint32_t)(comps >> 32);
	uint32_t size = 512 + 64;		/* legacy area and header */
	for (unsigned b = 2; b < 64; b++) {
		const struct kvm_cpuid_entry2 *sub = x86_cpuid_find(c->entries, c->nent, 0xd, b);
		if ((comps >> b & 1) && sub && sub->eax + sub->ebx > size)
			size = sub->eax + sub->ebx;
	}
	if (size < x->ecx)
		x->ecx = size;
}

void x86_cpu_model_apply(const struct x86_cpu_model *m, struct kvm_cpuid2 *c)
{
	x86_cpu_model_xsave(m, c);
	for (unsigned w = 0; w < X86_CPU_WORDS; w++) {
		const struct x86_cpu_word *cw = &x86_cpu_words[w];
		uint32_t drop = x86_named_bits(w) & ~m->keep[w];

		for (unsigned i = 0; i < c->nent; i++)
			if (c->entries[i].function == cw->function && c->entries[i].index == cw->index)
				*x86_reg_ptr(&c->entries[i], cw->reg) &= ~drop;
	}
}

/*
 * Every name appended leaves room for a later ", ..." and its NUL, so the
 * list always says when it was cut short.
 */
void x86_cpu_list_add(char *list, size_t listlen, const char *name)
{
	size_t used = strnlen(list, listlen), sep;

	if (listlen < 6 || (used >= 3 && !strcmp(list + used - 3, "...")))
		return;
	sep = used ? 2 : 0;
	if (used + sep + strlen(name) + 5 + 1 <= listlen)
		snprintf(list + used, listlen - used, "%s%s", used ? ", " : "", name);
	else
		snprintf(list + used, listlen - used, "%s...", used ? ", " : "");
}

static bool x86_has(const struct kvm_cpuid_entry2 *t, unsigned n, unsigned word, unsigned bit)
{
	const struct x86_cpu_word *cw = &x86_cpu_words[word];
	const struct kvm_cpuid_entry2 *e = x86_cpuid_find(t, n, cw->function, cw->index);

	return e && (x86_reg(e, cw->reg) >> bit & 1);
}

/* XSAVE: the components and the area size the guest may use must fit here. */
static unsigned x86_xsave_missing(const struct kvm_cpuid_entry2 *guest, unsigned gn,
				  const struct kvm_cpuid_entry2 *host, unsigned hn,
				  char *list, size_t listlen)
{
	const struct kvm_cpuid_entry2 *g = x86_cpuid_find(guest, gn, 0xd, 0);
	const struct kvm_cpuid_entry2 *h = x86_cpuid_find(host, hn, 0xd, 0);
	unsigned missing = 0;
	char name[48];

	/* Without XSAVE the guest cannot enable any component. */
	if (!g || !x86_has(guest, gn, 0, 26))
		return 0;
	uint64_t gx = g->eax | (uint64_t)g->edx << 32;
	uint64_t hx = h ? h->eax | (uint64_t)h->edx << 32 : 0;
	for (unsigned b = 0; b < 64; b++) {
		if (!(gx >> b & 1) || (hx >> b & 1))
			continue;
		if (x86_xsave_names[b])
			snprintf(name, sizeof(name), "xsave-%s", x86_xsave_names[b]);
		else
			snprintf(name, sizeof(name), "xsave-component-%u", b);
		x86_cpu_list_add(list, listlen, name);
		missing++;
	}
	uint32_t hsize = h ? h->ecx : 0;
	if (g->ecx > hsize) {
		snprintf(name, sizeof(name), "xsave-size(%u>%u)", g->ecx, hsize);
		x86_cpu_list_add(list, listlen, name);
		missing++;
	}
	return missing;
}

unsigned x86_cpu_missing(const struct kvm_cpuid_entry2 *guest, unsigned gn,
			 const struct kvm_cpuid_entry2 *host, unsigned hn,
			 char *list, size_t listlen)
{
	unsigned missing = 0;

	if (listlen)
		list[0] = '\0';
	for (size_t i = 0; i < X86_NR_FEATURES; i++) {
		const struct x86_feature *f = &x86_features[i];

		if (x86_has(guest, gn, f->word, f->bit) && !x86_has(host, hn, f->word, f->bit)) {
			x86_cpu_list_add(list, listlen, f->name);
			missing++;
		}
	}
	return missing + x86_xsave_missing(guest, gn, host, hn, list, listlen);
}
