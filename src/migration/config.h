/* The VM configuration that travels in the CONFIG section. */
#ifndef FERRY_MIGRATION_CONFIG_H
#define FERRY_MIGRATION_CONFIG_H

#include <stdint.h>

#include "arch/x86/pvh.h"
#include "util/vmstate.h"

struct mig_config {
	uint64_t memory;		/* bytes of guest RAM */
	uint32_t vcpus;
	uint32_t page_size;		/* 4096 */
	uint32_t flags;			/* MIG_FLAG_* */
	/*
	 * Codecs the source may use (bit = enum mig_codec_id); READY answers
	 * with the subset the destination accepts.  Never range-checked by
	 * the loader: a bit this ferry does not know is the destination's to
	 * judge (incoming.c).
	 */
	uint32_t codecs;
	uint16_t cmdline_len;
	uint8_t cmdline[PVH_CMDLINE_MAX - 1];
};

extern const struct vmstate_desc mig_config_vmsd;

#endif
