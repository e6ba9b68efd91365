/* The codec table (codec.h): one line per codec, indexed by wire id. */
#include "migration/codec/codec.h"

#include <errno.h>
#include <stdio.h>

static const struct mig_codec *const mig_codecs[MIG_CODEC_NR] = {
	[MIG_CODEC_ZERO] = &mig_codec_zero,
	[MIG_CODEC_RAW] = &mig_codec_raw,
};

const struct mig_codec *mig_codec_get(unsigned id)
{
	return id < MIG_CODEC_NR ? mig_codecs[id] : NULL;
}

int mig_codec_encode(uint32_t allowed, const uint8_t *page, uint8_t *dst, uint32_t *len)
{
	/* Ids are assigned cheapest first, so table order is the order to try. */
	for (unsigned id = 0; id < MIG_CODEC_NR; id++) {
		if (!(allowed & (1u << id)))
			continue;
		int n = mig_codecs[id]->encode(page, dst);
		if (n >= 0) {
			*len = (uint32_t)n;
			return (int)id;
		}
	}
	return -EINVAL;
}

void mig_codec_names(uint32_t mask, char *buf, unsigned len)
{
	unsigned off = 0;

	buf[0] = '\0';
	for (unsigned id = 0; id < 32 && off < len; id++) {
		if (!(mask & (1u << id)))
			continue;
		const struct mig_codec *k = mig_codec_get(id);
		int n = k ? snprintf(buf + off, len - off, "%s%s", off ? "," : "", k->name)
			  : snprintf(buf + off, len - off, "%s#%u", off ? "," : "", id);
		off += n > 0 ? (unsigned)n : 0;
	}
}
