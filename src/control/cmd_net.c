/*
 * The NICs' counters for `status` and `query-migrate`.  The counters
 * belong to each NIC's I/O thread; virtio_net_read_stats() reads them
 * from this (the control) thread.  A destination's announce rounds go out
 * after its guest starts, so its count grows for a while after the
 * migration completed (1.25 s with the default --announce).
 */
#include "control/cmd_net.h"

#include "devices/virtio/net.h"

static void net_json_u64(json_object *o, const char *key, uint64_t v)
{
	json_object_object_add(o, key, json_object_new_int64((int64_t)v));
}

json_object *control_nics_json(struct machine *m)
{
	json_object *a = json_object_new_array();

	for (unsigned i = 0; i < m->nr_nics; i++) {
		struct virtio_net *n = &m->nics[i];
		struct virtio_net_stats s;
		json_object *o = json_object_new_object();
		char mac[18];

		virtio_net_read_stats(n, &s);
		/* The MAC changes only in a load, before the guest ran here. */
		pthread_mutex_lock(&n->t.lock);
		net_mac_format(n->mac, mac);
		pthread_mutex_unlock(&n->t.lock);
		json_object_object_add(o, "tap", json_object_new_string(n->cfg.ifname));
		json_object_object_add(o, "mac", json_object_new_string(mac));
		net_json_u64(o, "rx-frames", s.rx_frames);
		net_json_u64(o, "rx-dropped", s.rx_dropped);
		net_json_u64(o, "tx-frames", s.tx_frames);
		net_json_u64(o, "tx-errors", s.tx_errors);
		net_json_u64(o, "bad-chains", s.rx_bad_chains + s.tx_bad_chains);
		net_json_u64(o, "announce-rounds", s.announce_rounds);
		net_json_u64(o, "announce-errors", s.announce_errors);
		net_json_u64(o, "held", s.held);
		net_json_u64(o, "hold-dropped", s.hold_dropped);
		net_json_u64(o, "injected", s.injected);
		json_object_array_add(a, o);
	}
	return a;
}

void control_net_totals(struct machine *m, json_object *o)
{
	uint64_t rounds = 0, errors = 0, held = 0, dropped = 0, injected = 0;

	for (unsigned i = 0; i < m->nr_nics; i++) {
		struct virtio_net_stats s;

		virtio_net_read_stats(&m->nics[i], &s);
		rounds += s.announce_rounds;
		errors += s.announce_errors;
		held += s.held;
		dropped += s.hold_dropped;
		injected += s.injected;
	}
	net_json_u64(o, "net-announce-rounds", rounds);
	net_json_u64(o, "net-announce-errors", errors);
	net_json_u64(o, "net-frames-held", held);
	net_json_u64(o, "net-frames-hold-dropped", dropped);
	net_json_u64(o, "net-frames-injected", injected);
}
