#!/usr/bin/env bash
# The network follows the VM, seen from a client on a switched network.
#
# Four network namespaces: host A and host B, each with a bridge joining
# the guest's tap to its uplink; a client; and the switch, a Linux bridge
# (it learns MACs per port, as a real switch does) with a port to each of
# the other three.  The migration itself runs over a separate veth link
# between A and B (tcp), never through the switch.
#
#   client --- switch --- A: bridge --- tap (the guest, before)
#                 \
#                  ------ B: bridge --- tap (the guest, after)
#                 A ======== B   the migration link
#
# The client streams numbered UDP datagrams (50 a second) at the guest's
# echo across a verified pre-copy A -> B and then a post-copy B -> A; every
# datagram sent from just before the first migration to after the second
# must come back, and the switch must have learned the guest's MAC on the
# new host's port by the end of each.  Nothing but ferry (its announce,
# the frames it forwards after the switch) moves the switch's entry: the
# guest is idle but for the echo.
. "$(dirname "$0")/lib.sh"
require_kvm
command -v python3 >/dev/null || skip "python3 is not available"
[ -c /dev/net/tun ] || skip "/dev/net/tun is missing"

P=fh$$
NA=ferry-$P-a NB=ferry-$P-b NC=ferry-$P-c NS=ferry-$P-s
SUB=10.$((($$ >> 8) % 250)).$(($$ % 250))
GUEST_IP=$SUB.2
CLIENT_IP=$SUB.1
MIGA=10.251.$(($$ % 250)).1
MIGB=10.251.$(($$ % 250)).2
MAC=52:54:00:$(printf '%02x:%02x:%02x' $(($$ >> 16 & 255)) $(($$ >> 8 & 255)) $(($$ & 255)))
del_ns() { local n; for n in "$NA" "$NB" "$NC" "$NS"; do ip netns del "$n" 2>/dev/null || true; done; }
ip netns add "$NS" 2>/dev/null || skip "cannot create a network namespace (needs root)"
# Kill the ferries (lib.sh's cleanup) before the namespaces and their taps go.
trap 'cleanup; del_ns' EXIT
for n in "$NA" "$NB" "$NC"; do ip netns add "$n"; done
inns() { local n=$1; shift; ip netns exec "$n" "$@"; }
for n in "$NA" "$NB" "$NC" "$NS"; do inns "$n" ip link set lo up; done

# The switch, and a link from it to each of A, B and the client.
inns "$NS" ip link add sw type bridge 2>/dev/null || skip "no Linux bridge support"
inns "$NS" ip link set sw up
for side in a b c; do
	ns_var=N${side^^}
	ip link add "$P$side" netns "$NS" type veth peer name upl netns "${!ns_var}"
	inns "$NS" ip link set "$P$side" master sw
	inns "$NS" ip link set "$P$side" up
	inns "${!ns_var}" ip link set upl up
done
inns "$NC" ip addr add "$CLIENT_IP/24" dev upl
# Each host: a bridge with its uplink and the guest's tap.
for h in A B; do
	ns_var=N$h
	inns "${!ns_var}" ip link add hbr type bridge
	inns "${!ns_var}" ip link set upl master hbr
	inns "${!ns_var}" ip tuntap add dev tap mode tap
	inns "${!ns_var}" ip link set tap master hbr
	inns "${!ns_var}" ip link set tap up
	inns "${!ns_var}" ip link set hbr up
done
# The migration link.
ip link add mig netns "$NA" type veth peer name mig netns "$NB"
inns "$NA" ip addr add "$MIGA/24" dev mig
inns "$NB" ip addr add "$MIGB/24" dev mig
inns "$NA" ip link set mig up
inns "$NB" ip link set mig up

# ferry on each host; ip netns exec execs, so the pids stay ours.
REAL_FERRY=$(realpath "$FERRY")
for h in a b; do
	ns_var=N${h^^}
	printf '#!/bin/sh\nexec ip netns exec %s %s "$@"\n' "${!ns_var}" "$REAL_FERRY" >"$T/ferry-$h"
	chmod +x "$T/ferry-$h"
done
FA=$T/ferry-a FB=$T/ferry-b

# The switch's port for the guest's MAC: a, b, or nothing.
switch_port() { inns "$NS" bridge fdb show br sw | sed -nE "s/^$MAC dev $P([ab]) .*/\1/p" | head -n1; }
wait_port() {
	local want=$1 i
	for ((i = 0; i < 100; i++)); do
		[ "$(switch_port)" = "$want" ] && return 0
		sleep 0.05
	done
	inns "$NS" bridge fdb show br sw
	fail "the switch did not learn $MAC on host ${want^^}'s port"
}

FERRY=$FA start_source src 1 128M "workload=idle,net ip=$GUEST_IP udp_port=7 period=100ms" \
	--net "tap=tap,mac=$MAC"
src=$FERRY_PID
inns "$NC" timeout 60 python3 tests/tools/net_echo.py "$GUEST_IP" 7 >"$T/echo.log" 2>&1 ||
	{ cat "$T/echo.log"; fail "the guest on host A did not answer the client"; }
wait_port a

# The stream runs across both migrations; it counts from the mark on.
inns "$NC" timeout 280 python3 tests/tools/udp_stream.py "$GUEST_IP" 7 50 "$T/mark" "$T/stop" \
	>"$T/stream.log" 2>&1 &
stream=$!
for ((i = 0; i < 600; i++)); do grep -q ready "$T/stream.log" && break; sleep 0.05; done
((i < 600)) || { cat "$T/stream.log"; fail "the client's stream never got ready"; }
sleep 0.5
touch "$T/mark"
sleep 0.5

# Pre-copy, A -> B, verified.
FERRY=$FB start_dest dstb "tcp:$MIGB:$(random_port)" --net "tap=tap,mac=$MAC"
dstb=$FERRY_PID
timeout 300 "$FERRY" migrate "$T/src.ctl" "$DEST_URI" --verify --json >"$T/ab.json" 2>"$T/ab.err" ||
	{ cat "$T/ab.json" "$T/ab.err" "$T/src.log" "$T/dstb.log"; fail "pre-copy A -> B failed"; }
[ "$(json_field "$T/ab.json" status)" = completed ] || fail "pre-copy A -> B did not complete"
wait_port b
wait_exit "$src" 10
[ "$RC" -eq 0 ] || fail "host A's ferry exit status $RC after the pre-copy"
log "A -> B: downtime $(json_field "$T/ab.json" downtime-ms) ms," \
	"$(json_field "$T/ab.json" net-frames-forwarded) frames forwarded," \
	"$(json_field "$T/ab.json" net-frames-after-go) after GO"
sleep 1

# Post-copy, B -> A: the guest runs on A while its pages still travel.
FERRY=$FA start_dest dsta "tcp:$MIGA:$(random_port)" --net "tap=tap,mac=$MAC"
dsta=$FERRY_PID
timeout 300 "$FERRY" migrate "$T/dstb.ctl" "$DEST_URI" --mode postcopy --json >"$T/ba.json" \
	2>"$T/ba.err" || { cat "$T/ba.json" "$T/ba.err" "$T/dstb.log" "$T/dsta.log"; fail "post-copy B -> A failed"; }
[ "$(json_field "$T/ba.json" status)" = completed ] || fail "post-copy B -> A did not complete"
wait_port a
wait_exit "$dstb" 10
[ "$RC" -eq 0 ] || fail "host B's ferry exit status $RC after the post-copy"
log "B -> A: downtime $(json_field "$T/ba.json" downtime-ms) ms," \
	"$(json_field "$T/ba.json" net-frames-forwarded) frames forwarded," \
	"$(json_field "$T/ba.json" net-frames-after-go) after the switch"
sleep 1
touch "$T/stop"
wait "$stream" || { cat "$T/stream.log"; inns "$NS" bridge fdb show br sw;
	fail "the client lost datagrams across the migrations"; }
log "client: $(tail -n1 "$T/stream.log")"
"$FERRY" quit "$T/dsta.ctl"
wait_exit "$dsta" 10
[ "$RC" -eq 0 ] || fail "host A's ferry exit status $RC"
assert_no_sanitizer "$T/src.log" "$T/dstb.log" "$T/dsta.log"
echo "a client on the switch lost no datagram while the VM moved A -> B (pre-copy) and back" \
	"(post-copy), and the switch followed it each time"
