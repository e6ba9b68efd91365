#include "migration/config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

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
	return 0;
}

static const struct vmstate_field mig_config_fields[] = {
	VMSTATE_U64_RANGE(struct mig_config, memory, GUEST_MIN_MEMORY, GUEST_MAX_MEMORY,
			  .check = mig_config_check_memory),
	VMSTATE_U32_RANGE(struct mig_config, vcpus, 1, VM_MAX_VCPUS),
	VMSTATE_U32_RANGE(struct mig_config, page_size, GUEST_PAGE_SIZE, GUEST_PAGE_SIZE),
	VMSTATE_U32_RANGE(struct mig_config, flags, 0, MIG_FLAG_VERIFY | MIG_FLAG_POSTCOPY),
	VMSTATE_U32(struct mig_config, codecs),
	VMSTATE_U16_RANGE(struct mig_config, cmdline_len, 0, PVH_CMDLINE_MAX - 1),
	VMSTATE_VARRAY_U8(struct mig_config, cmdline, cmdline_len),
	VMSTATE_END,
};

const struct vmstate_desc mig_config_vmsd = {
	.name = "mig-config",
	.version = 2,	/* 2: codecs */
	.size = sizeof(struct mig_config),
	.fields = mig_config_fields,
	.post_load = mig_config_post_load,
};
