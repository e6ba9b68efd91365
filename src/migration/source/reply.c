#include "migration/source/reply.h"

#include <endian.h>
#include <errno.h>
#include <string.h>

#include "migration/section.h"
#include "util/le.h"

int mig_reply_page_req(const uint8_t *p, uint32_t len, const struct guest_memory *mem,
		       uint64_t *index)
{
	if (len != 8)
		return -EPROTO;
	uint64_t gpa = le_get(p, 8);
	if (gpa % GUEST_PAGE_SIZE || !guest_memory_ptr(mem, gpa, GUEST_PAGE_SIZE))
		return -EPROTO;
	*index = guest_memory_page_index(mem, gpa);
	return 0;
}

int mig_reply_known(const uint8_t *p, uint32_t len, const struct guest_memory *mem,
		    unsigned long *const *owed)
{
	struct mig_cursor c;

	mig_cursor_init(&c, p, len);
	uint64_t first = mig_cursor_u64(&c);
	uint32_t nbits = mig_cursor_u32(&c);
	/* In 64 bits: nbits + 63 must not wrap and let a short payload pass. */
	if (c.bad || first % 64 || !nbits || len != 12 + ((uint64_t)nbits + 63) / 64 * 8)
		return -EPROTO;
	for (uint32_t i = 0; i < nbits; i++) {
		uint64_t word;
		unsigned r;
		uint64_t page;
		memcpy(&word, p + 12 + 8 * (i / 64), 8);
		if (!(le64toh(word) & (1ULL << (i % 64))))
			continue;
		if (!guest_memory_locate(mem, first + i, &r, &page))
			return -EPROTO;
		owed[r][page / 64] &= ~(1UL << (page % 64));
	}
	return 0;
}
