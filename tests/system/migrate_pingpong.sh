#!/usr/bin/env bash
# Ping-pong: migrate one guest back and forth 20 times, each time with
# --verify, alternating unix and tcp.  The verify workload checks every
# page of its working set on every pass throughout; zero mismatches.
. "$(dirname "$0")/lib.sh"
require_kvm

ROUNDS=${PINGPONG_ROUNDS:-20}
start_source vm0 2 128M "workload=verify wss=16M period=20ms"
cur=vm0
pid=$FERRY_PID
for ((i = 1; i <= ROUNDS; i++)); do
	next=vm$i
	if ((i % 2)); then uri=unix:$T/$next.mig; else uri=tcp:127.0.0.1:$(random_port); fi
	start_dest "$next" "$uri"
	npid=$FERRY_PID
	uri=$DEST_URI
	"$FERRY" migrate "$T/$cur.ctl" "$uri" --verify --json >"$T/r$i.json" 2>&1 ||
		{ cat "$T/r$i.json" "$T/$next.log"; fail "round $i ($cur -> $next over ${uri%%:*}) failed"; }
	wait_exit "$pid" 10
	[ "$RC" -eq 0 ] || fail "round $i: source exit status $RC"
	wait_line "$T/$next.serial" '^hb ' 10
	! grep -q CORRUPT "$T/$cur.serial" || fail "round $i: corruption on $cur"
	log "round $i: ${uri%%:*}, downtime $(json_field "$T/r$i.json" downtime-ms) ms, digest $(json_field "$T/r$i.json" ram-digest)"
	cur=$next
	pid=$npid
done
first=$(sed -nE 's/^hb ([0-9]+)$/\1/p' "$T/$cur.serial" | head -n1)
wait_beats "$T/$cur.serial" "$((first + 20))"
"$FERRY" quit "$T/$cur.ctl"
wait_exit "$pid" 10
[ "$RC" -eq 0 ] || fail "final VM exit status $RC"
! grep -q CORRUPT "$T"/*.serial || fail "corruption"
assert_no_sanitizer "$T"/*.log
echo "$ROUNDS migrations, zero mismatches"
