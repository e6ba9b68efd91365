/*
 * Announcing a NIC's new place on the network after a migration, as
 * QEMU's announce-self does (net/announce.c): gratuitous RARP frames from
 * the NIC's MAC, sent on its backend in rounds, so that switches (a Linux
 * bridge too) learn the port the guest now sits behind before the guest
 * itself says anything.  The first round goes out at once, the next after
 * `initial`, each later gap `step` longer, none longer than `max`.  The
 * schedule is plain data; the NIC's I/O thread keeps the clock (net_dev.c).
 */
#ifndef FERRY_DEVICES_NET_ANNOUNCE_H
#define FERRY_DEVICES_NET_ANNOUNCE_H

#include <stddef.h>
#include <stdint.h>

/* QEMU's defaults (qapi AnnounceParameters). */
#define NET_ANNOUNCE_ROUNDS	5
#define NET_ANNOUNCE_INITIAL_MS	50
#define NET_ANNOUNCE_STEP_MS	100
#define NET_ANNOUNCE_MAX_MS	550
#define NET_ANNOUNCE_MAX_ROUNDS	1000
#define NET_ANNOUNCE_FRAME_LEN	60	/* the 42-byte RARP padded to Ethernet's minimum */

/* `--announce rounds=N,initial=T,step=T,max=T` */
struct net_announce_params {
	unsigned rounds;	/* 0: never announce */
	uint64_t initial_ns, step_ns, max_ns;
};

/* QEMU's defaults into p. */
void net_announce_defaults(struct net_announce_params *p);
/*
 * Parse an --announce value over p (keys not given keep their value).
 * Returns 0, or -EINVAL with the reason in why (unknown key, a count
 * above NET_ANNOUNCE_MAX_ROUNDS, a time that is not a duration or is over
 * a minute, max below initial).
 */
int net_announce_parse(const char *spec, struct net_announce_params *p, char *why,
		       size_t whylen) __attribute__((warn_unused_result));
/*
 * The wait after round `sent` (1 = after the first) of p:
 * initial + (sent - 1) * step, at most max.
 */
uint64_t net_announce_gap_ns(const struct net_announce_params *p, unsigned sent);
/* The gratuitous RARP from mac into frame (NET_ANNOUNCE_FRAME_LEN bytes). */
void net_announce_build(const uint8_t mac[6], uint8_t *frame);

#endif
