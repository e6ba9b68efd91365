/*
 * Scatter-gather helpers for loops around readv/writev-like calls that
 * may move fewer bytes than asked.
 */
#ifndef FERRY_UTIL_IOV_H
#define FERRY_UTIL_IOV_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/*
 * Drop the first n bytes of the *cnt entries at *iov (n at most what they
 * hold): whole entries are stepped over, a partly moved one is trimmed in
 * place.  *cnt reaches 0 once everything was moved.
 */
static inline void iov_advance(struct iovec **iov, int *cnt, size_t n)
{
	struct iovec *v = *iov;

	while (*cnt && n >= v->iov_len) {
		n -= v->iov_len;
		v++;
		(*cnt)--;
	}
	if (*cnt) {
		v->iov_base = (uint8_t *)v->iov_base + n;
		v->iov_len -= n;
	}
	*iov = v;
}

#endif
