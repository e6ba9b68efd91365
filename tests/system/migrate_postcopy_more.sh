#!/usr/bin/env bash
# Post-copy, continued: prepaging lowers the fault count (asserted on
# counts), ten post-copy migrations back and forth lose nothing, and losing
# either side once the guest runs at the destination is reported as the
# loss of the VM, never as success.
. "$(dirname "$0")/lib.sh"
require_kvm

# The verify workload walks its working set in order: every page it reaches
# before the push does is a fault.  A slow background push (the guest's
# requests are never capped) makes the walker, not the push, find pages.
WALK="workload=verify wss=64M fill=random seed=7 period=20ms"

faults_with() {
	local name=$1 prepage=$2
	start_dest "$name-d" "unix:$T/$name.mig"; local d=$FERRY_PID
	start_source "$name-s" 1 256M "$WALK"; local s=$FERRY_PID
	"$FERRY" migrate "$T/$name-s.ctl" "unix:$T/$name.mig" --mode postcopy --prepage "$prepage" \
		--postcopy-bandwidth 32M --verify --json >"$T/$name.json" ||
		{ cat "$T/$name.json"; fail "$name failed"; }
	wait_exit "$s" 10
	wait_line "$T/$name-d.serial" '^hb ' 10
	"$FERRY" quit "$T/$name-d.ctl"; wait_exit "$d" 10
	! grep -q CORRUPT "$T/$name-d.serial" || fail "$name: corruption"
	json_field "$T/$name.json" faults
}
# Two runs of each, interleaved, so one noisy run cannot decide.
with=$(( $(faults_with pre64a 64) + $(faults_with pre64b 64) ))
without=$(( $(faults_with pre0a 0) + $(faults_with pre0b 0) ))
log "faults with prepaging: $with; with address-order push only: $without"
[ "$with" -lt "$without" ] || fail "prepaging did not lower the fault count ($with vs $without)"

# Ping-pong: ten post-copy migrations, alternating unix and tcp.
start_source pp0 2 128M "workload=verify wss=32M period=20ms"
cur=pp0; pid=$FERRY_PID
for ((i = 1; i <= 10; i++)); do
	next=pp$i
	if ((i % 2)); then uri=unix:$T/$next.mig; else uri=tcp:127.0.0.1:$(random_port); fi
	start_dest "$next" "$uri"; npid=$FERRY_PID
	"$FERRY" migrate "$T/$cur.ctl" "$uri" --mode postcopy --verify --json >"$T/pp$i.json" ||
		{ cat "$T/pp$i.json"; fail "post-copy round $i failed"; }
	wait_exit "$pid" 10
	[ "$RC" -eq 0 ] || fail "round $i: source exit $RC"
	wait_line "$T/$next.serial" '^hb ' 10
	cur=$next; pid=$npid
done
first=$(sed -nE 's/^hb ([0-9]+)$/\1/p' "$T/$cur.serial" | head -n1)
wait_beats "$T/$cur.serial" "$((first + 20))"
"$FERRY" quit "$T/$cur.ctl"; wait_exit "$pid" 10
! grep -q CORRUPT "$T"/pp*.serial || fail "post-copy ping-pong: corruption"
log "10 post-copy migrations, zero mismatches"

# Losing a side during post-copy.  A big, random guest keeps post-copy
# going long enough to strike: wait for postcopy-active, then kill.
lose() {
	local name=$1 victim=$2
	start_dest "$name-d" "unix:$T/$name.mig"; local d=$FERRY_PID
	start_source "$name-s" 1 1G "workload=verify wss=512M fill=random period=20ms"; local s=$FERRY_PID
	"$FERRY" migrate "$T/$name-s.ctl" "unix:$T/$name.mig" --mode postcopy --prepage 0 --json \
		>"$T/$name.json" & local m=$!; PIDS+=("$m")
	local i st=
	for ((i = 0; i < 200; i++)); do
		st=$("$FERRY" call "$T/$name-s.ctl" query-migrate 2>/dev/null | json_field /dev/stdin status || true)
		[ "$st" = postcopy-active ] && break
		sleep 0.02
	done
	[ "$st" = postcopy-active ] || { cat "$T/$name.json"; fail "$name: never saw post-copy running"; }
	if [ "$victim" = source ]; then kill -KILL "$s"; else kill -KILL "$d"; fi
	local rc=0; wait "$m" || rc=$?
	if [ "$victim" = source ]; then
		wait_exit "$d" 60
		[ "$RC" -eq 75 ] || { cat "$T/$name-d.log"; fail "$name: destination exit $RC, want 75"; }
		grep -q "the VM is lost" "$T/$name-d.log" || fail "$name: destination did not report the loss"
	else
		[ "$rc" -eq 3 ] || { cat "$T/$name.json"; fail "$name: ferry migrate exit $rc, want 3"; }
		grep -q '"vm-lost": *true' "$T/$name.json" || fail "$name: not reported as lost"
		wait_exit "$s" 30
		[ "$RC" -eq 75 ] || { cat "$T/$name-s.log"; fail "$name: source exit $RC, want 75"; }
		grep -q "the VM is lost" "$T/$name-s.log" || fail "$name: source did not report the loss"
	fi
	log "$victim killed during post-copy: reported as the loss of the VM"
}
lose kill-src source
lose kill-dst destination
echo "prepaging helps, ping-pong holds, and a lost side is a lost VM"
