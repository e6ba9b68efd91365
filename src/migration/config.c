#include "migration/config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/kvm.h>

#include "arch/x86/cpu_model.h"
#include "migration/format.h"
#include "vmm/memory.h"
#include "vmm/vm.h"

static int mig_config_check_memory(const void *field, char *why, size_t whylen)
{
	uint64_t v;

	memcpy(&v, field, sizeof(v));
	if (v % (2ULL << 20)) {
		snprintf(why, whylen, "memory %llu is not a multiple of 2 MiB", (unsigned long long)v);
		return -EINVAL;
	}
	return 0;
}

static int mig_config_post_load(void *obj, char *why, size_t whylen)
{
	const struct mig_config *c = obj;

	if (memchr(c->cmdline, '\0', c->cmdline_len)) {
		snprintf(why, whylen, "command line contains a NUL byte");
		return -EINVAL;
	}
	/* One entry per leaf and sub-leaf: a second would make the check ambiguous. */
	for (unsigned i = 0; i < c->cpuid_nent; i++)
		for (unsigned j = 0; j < i; j++)
			if (c->cpuid[i].function == c->cpuid[j].function &&
			    c->cpuid[i].index == c->cpuid[j].index) {
				snprintf(why, whylen, "CPUID leaf 0x%x.%u appears twice",
					 c->cpuid[i].function, c->cpuid[i].index);
				return -EINVAL;
			}
	return 0;
}

static const struct vmstate_field mig_cpuid_entry_fields[] = {
	VMSTATE_U32(struct mig_cpuid_entry, function),
	VMSTATE_U32(struct mig_cpuid_entry, index),
	VMSTATE_U32_RANGE(struct mig_cpuid_entry, flags, 0, KVM_CPUID_FLAG_SIGNIFCANT_INDEX),
	VMSTATE_U32(struct mig_cpuid_entry, eax),
	VMSTATE_U32(struct mig_cpuid_entry, ebx),
	VMSTATE_U32(struct mig_cpuid_entry, ecx),
	VMSTATE_U32(struct mig_cpuid_entry, edx),
	VMSTATE_END,
};

static const struct vmstate_desc mig_cpuid_entry_vmsd = {
	.name = "cpuid-entry",
	.version = 1,
	.size = sizeof(struct mig_cpuid_entry),
	.fields = mig_cpuid_entry_fields,
};

static const struct vmstate_field mig_config_fields[] = {
	VMSTATE_U64_RANGE(struct mig_config, memory, GUEST_MIN_MEMORY, GUEST_MAX_MEMORY,
			  .check = mig_config_check_memory),
	VMSTATE_U32_RANGE(struct mig_config, vcpus, 1, VM_MAX_VCPUS),
	VMSTATE_U32_RANGE(struct mig_config, page_size, GUEST_PAGE_SIZE, GUEST_PAGE_SIZE),
	VMSTATE_U32_RANGE(struct mig_config, flags, 0,
			  MIG_FLAG_VERIFY | MIG_FLAG_POSTCOPY | MIG_FLAG_REPLICATE),
	VMSTATE_U32(struct mig_config, codecs),
	VMSTATE_U16_RANGE(struct mig_config, cmdline_len, 0, PVH_CMDLINE_MAX - 1),
	VMSTATE_VARRAY_U8(struct mig_config, cmdline, cmdline_len),
	VMSTATE_U16_RANGE(struct mig_config, cpuid_nent, 0, MIG_CPUID_MAX, .since = 3),
	VMSTATE_VARRAY_STRUCT(struct mig_config, cpuid, cpuid_nent, mig_cpuid_entry_vmsd,
			      .since = 3),
	VMSTATE_U16_RANGE(struct mig_config, msr_nent, 0, X86_MSR_MAX, .since = 3),
	VMSTATE_VARRAY_U32(struct mig_config, msrs, msr_nent, .since = 3),
	VMSTATE_U32_RANGE(struct mig_config, channels, 0, MIG_CHANNELS_MAX, .since = 4),
	VMSTATE_U64(struct mig_config, mig_id, .since = 4),
	VMSTATE_END,
};

const struct vmstate_desc mig_config_vmsd = {
	.name = "mig-config",
	.version = 4,	/* 2: codecs; 3: CPUID; 4: channels */
	.min_version = 2,	/* an older source's stream or image: no CPUID to check */
	.size = sizeof(struct mig_config),
	.fields = mig_config_fields,
	.post_load = mig_config_post_load,
};

void mig_config_set_cpuid(struct mig_config *c, const struct kvm_cpuid2 *cpuid)
{
	unsigned n = cpuid->nent < MIG_CPUID_MAX ? cpuid->nent : MIG_CPUID_MAX;

	for (unsigned i = 0; i < n; i++) {
		const struct kvm_cpuid_entry2 *e = &cpuid->entries[i];
		c->cpuid[i] = (struct mig_cpuid_entry){
			.function = e->function, .index = e->index,
			.flags = e->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
			.eax = e->eax, .ebx = e->ebx, .ecx = e->ecx, .edx = e->edx,
		};
	}
	c->cpuid_nent = (uint16_t)n;

	size_t nmsrs;
	const uint32_t *msrs = x86_msr_list(&nmsrs);
	if (nmsrs > X86_MSR_MAX)
		nmsrs = X86_MSR_MAX;
	memcpy(c->msrs, msrs, nmsrs * sizeof(c->msrs[0]));
	c->msr_nent = (uint16_t)nmsrs;
}

/* Append the MSRs of c this host cannot restore to list; how many. */
static unsigned mig_config_missing_msrs(const struct mig_config *c, char *list, size_t listlen)
{
	unsigned missing = 0;

	for (unsigned i = 0; i < c->msr_nent; i++) {
		if (x86_msr_restorable(c->msrs[i]))
			continue;
		char name[24];
		snprintf(name, sizeof(name), "msr-%#x", c->msrs[i]);
		x86_cpu_list_add(list, listlen, name);
		missing++;
	}
	return missing;
}

struct kvm_cpuid2 *mig_config_cpuid(const struct mig_config *c)
{
	struct kvm_cpuid2 *t;

	if (!c->cpuid_nent)
		return NULL;
	t = calloc(1, sizeof(*t) + c->cpuid_nent * sizeof(t->entries[0]));
	if (!t)
		return NULL;
	t->nent = c->cpuid_nent;
	for (unsigned i = 0; i < c->cpuid_nent; i++)
		t->entries[i] = (struct kvm_cpuid_entry2){
			.function = c->cpuid[i].function, .index = c->cpuid[i].index,
			.flags = c->cpuid[i].flags, .eax = c->cpuid[i].eax,
			.ebx = c->cpuid[i].ebx, .ecx = c->cpuid[i].ecx, .edx = c->cpuid[i].edx,
		};
	return t;
}

int mig_config_check_cpu(const struct mig_config *c, const struct kvm_cpuid2 *host,
			 char *why, size_t whylen)
{
	struct kvm_cpuid_entry2 guest[MIG_CPUID_MAX];
	char list[384];
	unsigned missing;

	for (unsigned i = 0; i < c->cpuid_nent; i++)
		guest[i] = (struct kvm_cpuid_entry2){
			.function = c->cpuid[i].function, .index = c->cpuid[i].index,
			.flags = c->cpuid[i].flags, .eax = c->cpuid[i].eax,
			.ebx = c->cpuid[i].ebx, .ecx = c->cpuid[i].ecx, .edx = c->cpuid[i].edx,
		};
	/* The list ends in "..." where it would not fit in why with its prefix. */
	size_t listlen = whylen > 64 ? whylen - 64 : 1;
	if (listlen > sizeof(list))
		listlen = sizeof(list);
	missing = x86_cpu_missing(guest, c->cpuid_nent, host->entries, host->nent,
				  list, listlen);
	missing += mig_config_missing_msrs(c, list, listlen);
	if (!missing)
		return 0;
	snprintf(why, whylen, "this host's CPU lacks %u feature%s the guest uses: %s",
		 missing, missing == 1 ? "" : "s", list);
	return -EOPNOTSUPP;
}
