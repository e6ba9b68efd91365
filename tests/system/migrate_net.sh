#!/usr/bin/env bash
# A VM with a virtio-net NIC answers ICMP and UDP echo from a network
# namespace, migrates with --verify to a destination on another tap of the
# same bridge (two "hosts" on one link, as source and destination hosts
# share an L2 segment), and answers again from there at the same MAC and
# IP.  A destination without the NIC, or with another mac=, is refused and
# the source runs on.  Bad --net values are usage errors.
#
# The guest is idle: only the destination ferry's gratuitous RARP
# (announce-self) and the guest's own gratuitous ARP (GUEST_ANNOUNCE: the
# device sets ANNOUNCE and raises a config interrupt, the probe's driver
# answers with an ARP for its IP and acks) can teach the bridge the new
# port before the client speaks.  The guest's ARP must be seen on the
# destination's tap; the bridge's FDB entry for the MAC must point at the
# destination's tap within one announce round of the migration's end,
# with no flush.  'ferry announce' on the running
# destination must send such a frame again (seen with an AF_PACKET socket
# on its tap).
#
# The watchers print "ready" once listening; each is awaited for up to
# 30 s (python starts slowly under nested KVM's emulation), and the frame
# they watch for is sent only after.
#
# Then frames after GO: the VM migrates on, back to the first tap, while a
# client streams numbered UDP datagrams at it.  The bridge's entry for the
# MAC is made static at the old host's tap, learning is off on the new
# one and the new destination announces nothing (--announce rounds=0), so
# the bridge keeps sending the guest's frames to the old host after the
# switchover: only the source's epilogue (forwarding what reaches its tap
# after GO, --net-epilogue) brings them to the guest.  Every datagram sent
# after the destination runs the guest must be echoed, and the source
# must count them (at least) as forwarded after GO, and the destination
# as many as arrived.  Then the same in post-copy, back to the second tap.
. "$(dirname "$0")/lib.sh"
require_kvm
command -v python3 >/dev/null || skip "python3 is not available"
[ -c /dev/net/tun ] || skip "/dev/net/tun is missing"

NS=ferry-mnet-$$
BR=fmb$$
TAP1=fms$$
TAP2=fmd$$
GUEST_IP=10.99.$(($$ % 250)).2
HOST_IP=${GUEST_IP%.2}.1
MAC=52:54:00:$(printf '%02x:%02x:%02x' $(($$ >> 16 & 255)) $(($$ >> 8 & 255)) $(($$ & 255)))
ip netns add "$NS" 2>/dev/null || skip "cannot create a network namespace (needs root)"
# Kill the ferries (lib.sh's cleanup) before the namespace and its taps go.
trap 'cleanup; ip netns del "$NS" 2>/dev/null || true' EXIT
nsx() { ip netns exec "$NS" "$@"; }
wait_ready() {
	local i
	for ((i = 0; i < 600; i++)); do
		grep -q ready "$1" && return 0
		sleep 0.05
	done
	cat "$1"
	fail "$1: the watcher never got ready"
}
nsx ip link set lo up
nsx ip link add "$BR" type bridge 2>/dev/null || skip "no Linux bridge support"
nsx ip addr add "$HOST_IP/24" dev "$BR"
nsx ip link set "$BR" up
for tap in "$TAP1" "$TAP2"; do
	nsx ip tuntap add dev "$tap" mode tap
	nsx ip link set "$tap" master "$BR"
	nsx ip link set "$tap" up
done
# ferry opens its tap in the namespace; ip netns exec execs, so pids stay ours.
REAL_FERRY=$(realpath "$FERRY")
FERRY=$T/ferry-ns
printf '#!/bin/sh\nexec ip netns exec %s %s "$@"\n' "$NS" "$REAL_FERRY" >"$FERRY"
chmod +x "$FERRY"

# Usage errors, before any VM exists.
for bad in "mac=$MAC" "tap=$TAP1,mac=01:00:5e:00:00:01" "tap=$TAP1,mac=52:54:00" \
	   "tap=$TAP1,queues=4" "tap=an-interface-name-too-long"; do
	RC=0
	"$FERRY" run --kernel "$PROBE" --net "$bad" >"$T/bad.log" 2>&1 || RC=$?
	[ "$RC" -eq 64 ] || { cat "$T/bad.log"; fail "--net '$bad': exit $RC, not 64"; }
	grep -q "bad --net" "$T/bad.log" || fail "--net '$bad': no reason given"
done

echo_check() {
	local what=$1
	nsx timeout 60 python3 tests/tools/net_echo.py "$GUEST_IP" 7 >"$T/echo-$what.log" 2>&1 ||
		{ cat "$T/echo-$what.log"; fail "$what: the guest did not answer"; }
	log "$what: $(grep -c 'reply in\|answer matches' "$T/echo-$what.log") answers"
}

start_source src 1 128M "workload=idle,net ip=$GUEST_IP udp_port=7 period=100ms" \
	--net "tap=$TAP1,mac=$MAC"
src=$FERRY_PID
grep -q "^probe: net 0xfeb00000 mac $MAC ip $GUEST_IP .*, guest announce$" "$T/src.serial" ||
	{ grep -v '^hb ' "$T/src.serial"; fail "the guest does not see its NIC at slot 0 with $MAC, GUEST_ANNOUNCE"; }
echo_check source
nsx ip neigh show "$GUEST_IP" dev "$BR" | grep -q "lladdr $MAC" ||
	{ nsx ip neigh; fail "no ARP entry for $GUEST_IP at $MAC"; }

# Destinations that do not match: refused, the source runs on.
refused() {
	local name=$1 want=$2; shift 2
	start_dest "$name" "unix:$T/$name.mig" "$@"
	local dst=$FERRY_PID
	RC=0
	"$FERRY" migrate "$T/src.ctl" "$DEST_URI" >"$T/$name.out" 2>&1 || RC=$?
	[ "$RC" -eq 1 ] || { cat "$T/$name.out" "$T/$name.log"; fail "$name: migrate exit $RC, not 1"; }
	grep -q "$want" "$T/$name.log" || { cat "$T/$name.log"; fail "$name: destination did not say '$want'"; }
	wait_exit "$dst" 10
	[ "$RC" -eq 65 ] || fail "$name: destination exit $RC, not 65"
	"$FERRY" status "$T/src.ctl" | grep -q '^status: *running' || fail "$name: source not running"
	assert_no_sanitizer "$T/$name.log"
}
refused lacks "virtio-net.0, which this destination lacks"
refused othermac "the source's NIC has MAC $MAC" --net "tap=$TAP2,mac=52:54:00:00:00:01"
echo_check "source after refusals"

# The matching destination: another tap on the same bridge, the same MAC.
start_dest dst "unix:$T/dst.mig" --net "tap=$TAP2,mac=$MAC"
dst=$FERRY_PID
# The guest's own gratuitous ARP, once it runs at the destination.
nsx timeout 60 python3 tests/tools/rarp_watch.py "$TAP2" "$MAC" 50 "$GUEST_IP" >"$T/garp.log" 2>&1 &
garp=$!
wait_ready "$T/garp.log"
"$FERRY" migrate "$T/src.ctl" "$DEST_URI" --verify --json >"$T/mig.json" 2>"$T/mig.err" ||
	{ cat "$T/mig.json" "$T/mig.err" "$T/dst.log"; fail "migrate with a NIC failed"; }
[ "$(json_field "$T/mig.json" status)" = completed ] || fail "not completed"
wait_exit "$src" 10
[ "$RC" -eq 0 ] || fail "source exit status $RC"
# Announced: the bridge learns the destination's port within a round
# (the first goes out as the guest starts; allow the second, 50 ms on).
fdb_at() { nsx bridge fdb show br "$BR" | grep -qi "^$MAC dev $1 "; }
for ((i = 0; i < 20; i++)); do
	fdb_at "$TAP2" && break
	sleep 0.05
done
((i < 20)) || { nsx bridge fdb show br "$BR"; fail "the bridge did not learn $MAC at $TAP2"; }
log "bridge FDB: $MAC at $TAP2 after ~$((i * 50)) ms"
wait "$garp" || { cat "$T/garp.log"; grep -v '^hb ' "$T/dst.serial"; fail "no gratuitous ARP from the guest on $TAP2"; }
wait_line "$T/dst.serial" '^probe: net announce: gratuitous ARP sent \(1\)$' 10
log "GUEST_ANNOUNCE: the guest's gratuitous ARP seen on $TAP2"
echo_check destination
# announce-self on demand: a RARP from the MAC on the destination's tap.
nsx timeout 10 python3 tests/tools/rarp_watch.py "$TAP2" "$MAC" 5 >"$T/rarp.log" 2>&1 &
watch=$!
wait_ready "$T/rarp.log"
"$FERRY" announce "$T/dst.ctl" || fail "ferry announce failed"
wait "$watch" || { cat "$T/rarp.log"; "$FERRY" status "$T/dst.ctl"; tail -n 20 "$T/dst.log";
	fail "no RARP after 'ferry announce'"; }
"$FERRY" announce "$T/src.ctl" 2>/dev/null && fail "ferry announce on a gone source succeeded"
log "ferry announce: $(grep -c '^rarp' "$T/rarp.log") RARP seen on $TAP2"
# The answers came from the guest now at the destination: its counters,
# which migrated with its memory, print there with all three rounds (5
# pings and 4 datagrams each), at most a second after the traffic.
report=
for ((i = 0; i < 50; i++)); do
	report=$(grep '^probe: net rx' "$T/dst.serial" | tail -n1 || true)
	[[ $report =~ icmp\ ([0-9]+)\ udp\ ([0-9]+)\  ]] &&
		((BASH_REMATCH[1] >= 15 && BASH_REMATCH[2] >= 12)) && break
	sleep 0.2
done
((i < 50)) || fail "the destination's guest did not count the answers: '$report'"
log "destination: $report"

# Frames after the switch.  late_hop FROM TO NEW OLD WHAT [migrate args]:
# the bridge's entry for the MAC is held at OLD, the old host's tap,
# whatever comes in on NEW, and stays when OLD loses its carrier as the old
# host exits (a learned entry would go, and the bridge would flood the
# frames to NEW): a static entry, as a switch that has not learned the new
# port yet.  The VM migrates from FROM (a control name) to a new
# destination TO on NEW, which announces nothing, while a client streams
# numbered datagrams at it: every one sent once the guest runs at TO must
# be echoed, so forwarded by the old host after the switch, and TO must
# count as many as the old host forwarded.  Leaves the old host's reply in
# $T/TO.json, TO's query-migrate in $T/TO.query, TO's pid in HOP_PID and
# the frames forwarded after the switch in AFTER.
late_hop() {
	local from=$1 to=$2 new=$3 old=$4 what=$5 i mig stream counted got; shift 5
	nsx bridge link set dev "$new" learning off || skip "cannot turn learning off on a bridge port"
	nsx bridge fdb replace "$MAC" dev "$old" master static ||
		skip "cannot add a static entry to the bridge's FDB"
	start_dest "$to" "unix:$T/$to.mig" --net "tap=$new,mac=$MAC" --announce rounds=0
	HOP_PID=$FERRY_PID
	rm -f "$T/mark" "$T/stop"
	nsx timeout 120 python3 tests/tools/udp_stream.py "$GUEST_IP" 7 20 "$T/mark" "$T/stop" \
		>"$T/$to.stream" 2>&1 &
	stream=$!
	wait_ready "$T/$to.stream"
	"$FERRY" migrate "$T/$from.ctl" "$DEST_URI" "$@" --json >"$T/$to.json" 2>"$T/$to.err" &
	mig=$!
	# From the moment the guest runs there (its first heartbeat: cheaper to
	# see than a status call on a slow host), for 1.5 s, inside the 10 s
	# bound.  20 datagrams a second keep the source's hold, which counts
	# every frame since the pause, far below its 512.
	for ((i = 0; i < 1200; i++)); do
		grep -q '^hb ' "$T/$to.serial" 2>/dev/null && break
		sleep 0.05
	done
	((i < 1200)) || { cat "$T/$to.log"; fail "the guest did not start at $to"; }
	touch "$T/mark"
	sleep 1.5
	touch "$T/stop"
	wait "$mig" || { cat "$T/$to.json" "$T/$to.err" "$T/$from.log"; fail "$what: the migration failed"; }
	[ "$(json_field "$T/$to.json" status)" = completed ] || fail "$what: the migration did not complete"
	wait "$stream" || { cat "$T/$to.stream" "$T/$from.log" "$T/$to.log"; nsx bridge fdb show br "$BR";
		fail "$what: datagrams sent after the switch were lost"; }
	log "$what: $(tail -n1 "$T/$to.stream")"
	# Every datagram after the mark reached the old host (the bridge never
	# learned otherwise) and so was forwarded after the switch.
	counted=$(sed -nE 's/.*after the mark: ([0-9]+) sent.*/\1/p' "$T/$to.stream")
	AFTER=$(json_field "$T/$to.json" net-frames-after-go)
	((counted >= 20 && AFTER >= counted)) || { cat "$T/$to.json" "$T/$to.stream";
		fail "$what: ${AFTER:-no} frames counted as forwarded after the switch for $counted datagrams"; }
	# The destination counts them too: every one the source forwarded arrived.
	"$FERRY" call "$T/$to.ctl" query-migrate >"$T/$to.query" || fail "query-migrate on $to failed"
	got=$(json_field "$T/$to.query" incoming-net-frames-after-go)
	[ "$got" = "$AFTER" ] ||
		{ cat "$T/$to.query"; fail "$to counted ${got:-no} frames after the switch, the source $AFTER"; }
}

# Pre-copy: the frames after GO, until the epilogue's bound (no ANNOUNCED).
late_hop dst dst2 "$TAP1" "$TAP2" "after GO" --net-epilogue 10s
dst2=$HOP_PID
after=$AFTER
[ "$(json_field "$T/dst2.json" net-frames-dropped)" = 0 ] || fail "frames dropped over the hold's cap"
grep -q "frames forwarded after GO in .* ms, until --net-epilogue's bound" "$T/dst.log" ||
	{ cat "$T/dst.log"; fail "the source did not say how its epilogue ended"; }
grep -q "incoming migration: [0-9]* frames came after GO (the source ended them)" "$T/dst2.log" ||
	{ cat "$T/dst2.log"; fail "dst2 did not take the late frames to their END"; }
# Its NIC put at least as many frames into the guest.
(($(json_field "$T/dst2.query" net-frames-injected) >= after)) ||
	{ cat "$T/dst2.query"; fail "dst2's NIC put fewer frames into the guest than came after GO"; }
log "after GO: $after frames forwarded ($(json_field "$T/dst2.json" net-bytes-after-go) bytes)"
wait_exit "$dst" 10
[ "$RC" -eq 0 ] || fail "dst exit status $RC after migrating on"
# Learning back on and an announce: the bridge finds the guest at $TAP1 again.
nsx bridge fdb del "$MAC" dev "$TAP2" master
nsx bridge link set dev "$TAP1" learning on
"$FERRY" announce "$T/dst2.ctl" || fail "ferry announce on dst2 failed"
for ((i = 0; i < 40; i++)); do
	fdb_at "$TAP1" && break
	sleep 0.05
done
((i < 40)) || { nsx bridge fdb show br "$BR"; fail "the bridge did not learn $MAC at $TAP1"; }
echo_check dst2

# Post-copy: the guest runs at the destination from the switch on, while
# its pages still travel; frames that reach the old host meanwhile, and
# after POSTCOPY_DONE, follow it the same way.  Back to $TAP2, the entry
# held at $TAP1.
late_hop dst2 dst3 "$TAP2" "$TAP1" "post-copy" --mode postcopy --postcopy-bandwidth 16M \
	--net-epilogue 10s
dst3=$HOP_PID
after=$AFTER
log "post-copy: $after frames forwarded after the switch"
wait_exit "$dst2" 10
[ "$RC" -eq 0 ] || fail "dst2 exit status $RC after migrating on"
"$FERRY" quit "$T/dst3.ctl"
wait_exit "$dst3" 10
[ "$RC" -eq 0 ] || fail "dst3 exit status $RC"
assert_no_sanitizer "$T/src.log" "$T/dst.log" "$T/dst2.log" "$T/dst3.log"
echo "a NIC migrates to another tap and the guest answers there at the same MAC and IP," \
	"and frames that reach the old host after GO (pre-copy) or the switch (post-copy) follow it"
