#!/usr/bin/env bash
# Replication of a VM with a NIC (docs/replication.md, "Output commit"):
# the guest answers ICMP and UDP echo while it is replicated (its frames
# leave once the standby acknowledged the epoch they were sent in); with
# the link to the standby cut, nothing the guest sends afterwards ever
# leaves the primary (its epochs are never acknowledged; the fence drops
# them); the standby, on another tap of the same bridge with the same MAC,
# takes over and answers.
. "$(dirname "$0")/lib.sh"
require_kvm
command -v python3 >/dev/null || skip "python3 is not available"
[ -c /dev/net/tun ] || skip "/dev/net/tun is missing"

NS=ferry-rnet-$$
BR=frb$$
TAP1=frs$$
TAP2=frd$$
GUEST_IP=10.98.$(($$ % 250)).2
HOST_IP=${GUEST_IP%.2}.1
MAC=52:54:00:$(printf '%02x:%02x:%02x' $(($$ >> 16 & 255)) $(($$ >> 8 & 255)) $(($$ & 255)))
ip netns add "$NS" 2>/dev/null || skip "cannot create a network namespace (needs root)"
trap 'cleanup; ip netns del "$NS" 2>/dev/null || true' EXIT
nsx() { ip netns exec "$NS" "$@"; }
nsx ip link set lo up
nsx ip link add "$BR" type bridge 2>/dev/null || skip "no Linux bridge support"
nsx ip addr add "$HOST_IP/24" dev "$BR"
nsx ip link set "$BR" up
for tap in "$TAP1" "$TAP2"; do
	nsx ip tuntap add dev "$tap" mode tap
	nsx ip link set "$tap" master "$BR"
	nsx ip link set "$tap" up
done
REAL_FERRY=$(realpath "$FERRY")
FERRY=$T/ferry-ns
printf '#!/bin/sh\nexec ip netns exec %s %s "$@"\n' "$NS" "$REAL_FERRY" >"$FERRY"
chmod +x "$FERRY"

echo_check() {
	local what=$1
	nsx timeout 60 python3 tests/tools/net_echo.py "$GUEST_IP" 7 >"$T/echo-$what.log" 2>&1 ||
		{ cat "$T/echo-$what.log"; fail "$what: the guest did not answer"; }
	log "$what: $(grep -c 'reply in\|answer matches' "$T/echo-$what.log") answers"
}

# One UDP datagram; succeeds if an echo comes back within $1 s.
udp_answered() {
	nsx python3 - "$GUEST_IP" "$1" <<'PY'
import socket, sys
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(float(sys.argv[2]))
u.sendto(b"output-commit", (sys.argv[1], 7))
try:
    u.recvfrom(2048)
except socket.timeout:
    sys.exit(1)
PY
}

start_dest stby "unix:$T/r.mig" --standby --failover-timeout 1s --net "tap=$TAP2,mac=$MAC"
SPID=$FERRY_PID
start_source prim 1 128M "workload=idle,net ip=$GUEST_IP udp_port=7 period=100ms" \
	--net "tap=$TAP1,mac=$MAC"
PPID_=$FERRY_PID
"$RELAY" "$T/r.relay" "unix:$T/r.mig" >"$T/relay.out" 2>&1 &
RPID=$!
PIDS+=("$RPID")
for ((i = 0; i < 100; i++)); do [ -S "$T/r.relay" ] && break; sleep 0.05; done
"$FERRY" replicate "$T/prim.ctl" "unix:$T/r.relay" --interval 50ms >"$T/r.out" 2>"$T/r.err" ||
	{ cat "$T/r.out" "$T/r.err" "$T/stby.log"; fail "replicate with a NIC failed"; }
wait_migration_ge "$T/prim.ctl" epochs-acked 10 30
# Released frames leave: the guest answers through the primary's tap.
echo_check replicating
udp_answered 2 || fail "no UDP echo while replicating"
assert_no_guest "$T/stby.serial"

# Cut the link: nothing the guest sends from now on may leave the primary.
kill -STOP "$RPID"
if udp_answered 0.4; then
	fail "the primary's guest answered after the link was cut: output left before its epoch was acknowledged"
fi
wait_migration "$T/prim.ctl" fenced 5
wait_line "$T/stby.serial" '^hb [0-9]+$' 10
# The standby answers now, at the same MAC and IP, on its own tap.
echo_check "after failover"
kill -CONT "$RPID"
"$FERRY" status "$T/prim.ctl" | grep -q '^status: *paused' || fail "the fenced primary is not paused"
"$FERRY" quit "$T/stby.ctl"; wait_exit "$SPID" 10
[ "$RC" -eq 0 ] || fail "standby exit status $RC"
"$FERRY" quit "$T/prim.ctl"; wait_exit "$PPID_" 10
assert_no_sanitizer "$T/prim.log" "$T/stby.log"
echo "output commit: frames leave only acknowledged; the standby answers after failover"
