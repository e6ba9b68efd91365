/*
 * Where a NIC's frames go and come from: a tap device on this host (`--net
 * tap=IFNAME`), or, for tests, a file descriptor the caller made (one end
 * of a SOCK_SEQPACKET socketpair, which keeps frame boundaries as a tap
 * does).  Either way the data path is one non-blocking fd on which every
 * read() is one frame and every writev() sends one, each preceded by the
 * virtio-net header (IFF_VNET_HDR on a tap, TUNSETVNETHDRSZ to its
 * length); only opening differs, so the ops table has open and close.
 */
#ifndef FERRY_DEVICES_NET_BACKEND_H
#define FERRY_DEVICES_NET_BACKEND_H

#include <net/if.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "devices/net/announce.h"

enum net_backend_kind {
	NET_BACKEND_TAP,	/* /dev/net/tun, IFF_TAP | IFF_NO_PI | IFF_VNET_HDR */
	NET_BACKEND_FD,		/* an fd handed over by the caller (tests) */
	NET_BACKEND_NR
};

/* `--net tap=IFNAME[,mac=MAC]` */
struct net_config {
	enum net_backend_kind kind;
	char ifname[IFNAMSIZ];	/* NET_BACKEND_TAP */
	int fd;			/* NET_BACKEND_FD: dup'ed at open, the caller keeps its own */
	uint8_t mac[6];
	bool mac_set;		/* false: a random locally administered MAC */
	/* `ferry run --announce`, the same for every NIC; all zero: never announce */
	struct net_announce_params announce;
};

/*
 * Parse a --net value.  Returns 0, or -EINVAL with the reason in why
 * (unknown key, no tap=, a name too long for an interface, a MAC that is
 * not six hex bytes or is multicast).
 */
int net_config_parse(const char *spec, struct net_config *c, char *why, size_t whylen)
	__attribute__((warn_unused_result));
/* "aa:bb:cc:dd:ee:ff" into buf (at least 18 bytes). */
void net_mac_format(const uint8_t mac[6], char *buf);

/* An open backend: fd is fixed after open and used by the NIC's I/O thread. */
struct net_backend {
	enum net_backend_kind kind;
	int fd;			/* non-blocking, close-on-exec; -1: closed */
};

struct net_backend_ops {
	const char *name;
	/*
	 * Open the backend of c for frames preceded by a hdr_len-byte
	 * virtio-net header.  Returns the fd (non-blocking) or -errno with
	 * the reason in why.
	 */
	int (*open)(const struct net_config *c, unsigned hdr_len, char *why, size_t whylen);
};

extern const struct net_backend_ops net_backend_tap_ops;

/* Open c's backend into be.  Returns 0 or -errno with the reason in why. */
int net_backend_open(struct net_backend *be, const struct net_config *c, unsigned hdr_len,
		     char *why, size_t whylen) __attribute__((warn_unused_result));
void net_backend_close(struct net_backend *be);

#endif
