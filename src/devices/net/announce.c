/* The announce schedule and its RARP frame (announce.h). */
#include "devices/net/announce.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "util/parse.h"

#define NET_ANNOUNCE_LIMIT_NS	(60 * NSEC_PER_SEC)

#define ETH_P_RARP_BE		0x80, 0x35
#define ARP_HTYPE_ETH_BE	0x00, 0x01
#define ARP_PTYPE_IP_BE		0x08, 0x00
#define ARP_OP_RREQUEST_BE	0x00, 0x03	/* RARP "reverse request" */

void net_announce_defaults(struct net_announce_params *p)
{
	*p = (struct net_announce_params){
		.rounds = NET_ANNOUNCE_ROUNDS,
		.initial_ns = NET_ANNOUNCE_INITIAL_MS * NSEC_PER_MSEC,
		.step_ns = NET_ANNOUNCE_STEP_MS * NSEC_PER_MSEC,
		.max_ns = NET_ANNOUNCE_MAX_MS * NSEC_PER_MSEC,
	};
}

static int net_announce_kv(const char *key, const char *val, void *opaque, char *why,
			   size_t whylen)
{
	struct net_announce_params *p = opaque;
	uint64_t *t = NULL, v;

	if (!strcmp(key, "rounds")) {
		if (parse_uint(val, NET_ANNOUNCE_MAX_ROUNDS, &v)) {
			snprintf(why, whylen, "rounds=%s: use 0 to %d", val, NET_ANNOUNCE_MAX_ROUNDS);
			return -EINVAL;
		}
		p->rounds = (unsigned)v;
		return 0;
	}
	if (!strcmp(key, "initial"))
		t = &p->initial_ns;
	else if (!strcmp(key, "step"))
		t = &p->step_ns;
	else if (!strcmp(key, "max"))
		t = &p->max_ns;
	if (!t) {
		snprintf(why, whylen, "unknown key '%s' (rounds, initial, step, max)", key);
		return -EINVAL;
	}
	if (parse_duration(val, NSEC_PER_MSEC, &v) || v > NET_ANNOUNCE_LIMIT_NS) {
		snprintf(why, whylen, "%s=%s: use a time like 50ms, at most 60s", key, val);
		return -EINVAL;
	}
	*t = v;
	return 0;
}

int net_announce_parse(const char *spec, struct net_announce_params *p, char *why,
		       size_t whylen)
{
	int err = parse_kv_list(spec, net_announce_kv, p, why, whylen);

	if (err)
		return err;
	if (p->max_ns < p->initial_ns) {
		snprintf(why, whylen, "max is shorter than initial");
		return -EINVAL;
	}
	return 0;
}

uint64_t net_announce_gap_ns(const struct net_announce_params *p, unsigned sent)
{
	uint64_t extra = sent > 1 ? sent - 1 : 0;

	if (p->initial_ns >= p->max_ns)
		return p->max_ns;
	if (p->step_ns && extra > (p->max_ns - p->initial_ns) / p->step_ns)
		return p->max_ns;
	return p->initial_ns + extra * p->step_ns;
}

void net_announce_build(const uint8_t mac[6], uint8_t *frame)
{
	static const uint8_t eth_tail[] = { ETH_P_RARP_BE, ARP_HTYPE_ETH_BE, ARP_PTYPE_IP_BE,
					    6, 4, ARP_OP_RREQUEST_BE };

	memset(frame, 0, NET_ANNOUNCE_FRAME_LEN);
	memset(frame, 0xff, 6);			/* broadcast */
	memcpy(frame + 6, mac, 6);
	memcpy(frame + 12, eth_tail, sizeof(eth_tail));
	memcpy(frame + 22, mac, 6);		/* sender hardware address; IP 0 */
	memcpy(frame + 32, mac, 6);		/* target hardware address; IP 0 */
}
