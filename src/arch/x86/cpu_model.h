/*
 * CPU models and CPU compatibility: which CPUID features a guest is given
 * (--cpu-model host|baseline|FILE), and which of them a destination's KVM
 * cannot give it, by name, before a migration moves anything.  Pure
 * functions on CPUID tables; no KVM needed (tests/unit/test_cpu_model.c).
 */
#ifndef FERRY_ARCH_X86_CPU_MODEL_H
#define FERRY_ARCH_X86_CPU_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <linux/kvm.h>

/* The CPUID registers that carry named feature bits (cpu_model.c). */
#define X86_CPU_WORDS 9

/*
 * A model keeps, of each feature word, the bits in keep[]; CPUID leaves
 * and bits that name no feature pass through untouched.  `host` keeps all.
 */
struct x86_cpu_model {
	char name[16];			/* "host", "baseline" or "file" */
	uint32_t keep[X86_CPU_WORDS];
};

/*
 * Parse a --cpu-model argument: "host", "baseline" (x86-64-v2: what every
 * 64-bit server of the last decade runs), or the path of a file that lists
 * the features to offer by name (as /proc/cpuinfo spells them), separated
 * by white space, '#' starting a comment.  Returns 0, or -errno with a
 * reason in why (an unreadable file, an unknown feature name).
 */
int x86_cpu_model_parse(const char *spec, struct x86_cpu_model *m, char *why, size_t whylen)
	__attribute__((warn_unused_result));

/* Clear from `c` every named feature the model does not keep. */
void x86_cpu_model_apply(const struct x86_cpu_model *m, struct kvm_cpuid2 *c);

/*
 * Compare the CPUID a guest was given (`guest`, gn entries, untrusted)
 * with what this host's KVM offers (`host`, hn entries): every named
 * feature the guest has and the host lacks, then XSAVE state components
 * and an XSAVE area larger than the host's.  Writes the names, comma
 * separated, into list (truncated with "..." when long) and returns how
 * many are missing; 0 when the host can run the guest.
 */
unsigned x86_cpu_missing(const struct kvm_cpuid_entry2 *guest, unsigned gn,
			 const struct kvm_cpuid_entry2 *host, unsigned hn,
			 char *list, size_t listlen);

/* Append a name to a comma-separated list; "..." once it is full. */
void x86_cpu_list_add(char *list, size_t listlen, const char *name);

/* The entry for (function, index) of a table, or NULL. */
const struct kvm_cpuid_entry2 *x86_cpuid_find(const struct kvm_cpuid_entry2 *e, unsigned n,
					      uint32_t function, uint32_t index);

#endif
