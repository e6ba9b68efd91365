/* The output-commit frame gate of a NIC (net_txgate.h). */
#include "devices/virtio/net_txgate.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void net_txgate_init(struct net_txgate *g)
{
	memset(g, 0, sizeof(*g));
	g->tail = &g->head;
}

void net_txgate_start(struct net_txgate *g, uint64_t epoch)
{
	g->on = true;
	g->epoch = epoch;
}

int net_txgate_hold(struct net_txgate *g, const struct iovec *iov, int iovcnt, size_t len)
{
	if (g->frames >= NET_TXGATE_MAX_FRAMES || len > NET_TXGATE_MAX_BYTES - g->bytes) {
		g->dropped++;
		return -ENOBUFS;
	}
	struct net_txgate_frame *f = malloc(sizeof(*f) + len);
	if (!f) {
		g->dropped++;
		return -ENOBUFS;
	}
	size_t at = 0;
	for (int i = 0; i < iovcnt && at < len; i++) {
		size_t n = iov[i].iov_len < len - at ? iov[i].iov_len : len - at;
		memcpy(f->data + at, iov[i].iov_base, n);
		at += n;
	}
	f->next = NULL;
	f->epoch = g->epoch;
	f->len = (uint32_t)at;
	*g->tail = f;
	g->tail = &f->next;
	g->frames++;
	g->bytes += f->len;
	g->held++;
	return 0;
}

uint64_t net_txgate_mark(struct net_txgate *g)
{
	return g->epoch++;
}

void net_txgate_release(struct net_txgate *g, uint64_t upto, net_txgate_send_fn *send,
			void *opaque)
{
	while (g->head && g->head->epoch <= upto) {
		struct net_txgate_frame *f = g->head;
		g->head = f->next;
		if (!g->head)
			g->tail = &g->head;
		g->frames--;
		g->bytes -= f->len;
		if (send) {
			send(opaque, f->data, f->len);
			g->released++;
		} else {
			g->dropped++;
		}
		free(f);
	}
}

void net_txgate_stop(struct net_txgate *g, net_txgate_send_fn *send, void *opaque)
{
	net_txgate_release(g, UINT64_MAX, send, opaque);
	g->on = false;
}
