/* Little-endian encoding of integers into and out of byte buffers. */
#ifndef FERRY_UTIL_LE_H
#define FERRY_UTIL_LE_H

#include <stdint.h>

/* Store the low n bytes of v at p, least significant first. */
static inline void le_put(uint8_t *p, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* Read an n-byte little-endian integer at p. */
static inline uint64_t le_get(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;

	for (unsigned i = n; i-- > 0;)
		v = v << 8 | p[i];
	return v;
}

#endif
