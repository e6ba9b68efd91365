#!/usr/bin/env bash
# Post-copy, continued: prepaging lowers the fault count (asserted on
# counts), ten post-copy migrations back and forth lose nothing, and losing
# either side once the guest runs at the destination is reported as the
# loss of the VM, never as success.
# serial: it compares fault counts of runs, which other load would skew.
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
	start_dest "$next" "$uri"; npid=$FERRY_PID; uri=$DEST_URI
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

# A post-copy that stays busy long enough to strike: a slow background push
# and no prepaging.  Starts it and waits for postcopy-active; sets D, S, M.
start_long_postcopy() {
	local name=$1; shift
	start_dest "$name-d" "unix:$T/$name.mig" --resume-timeout 3s; D=$FERRY_PID
	start_source "$name-s" 1 256M "workload=verify wss=64M fill=random period=20ms" --test-hooks
	S=$FERRY_PID
	"$FERRY" migrate "$T/$name-s.ctl" "unix:$T/$name.mig" --mode postcopy --prepage 0 \
		--postcopy-bandwidth 16M --verify --json "$@" >"$T/$name.json" & M=$!; PIDS+=("$M")
	wait_migration "$T/$name-s.ctl" postcopy-active 15
}

# The connection breaks during post-copy: both sides pause, --resume
# reconnects and finishes, and the guest never sees a wrong byte.
start_long_postcopy cut --resume-timeout 60s
# Break it once pages flow, not at the very start.
wait_migration_ge "$T/cut-s.ctl" pages-pushed 64 10
"$FERRY" call "$T/cut-s.ctl" x-test-migration-break >/dev/null
rc=0; wait "$M" || rc=$?
[ "$rc" -eq 4 ] || { cat "$T/cut.json"; fail "broken post-copy: ferry migrate exit $rc, want 4 (paused)"; }
grep -q '"status": *"postcopy-paused"' "$T/cut.json" || fail "source not in postcopy-paused"
for ((i = 0; i < 100; i++)); do [ -S "$T/cut.mig" ] && break; sleep 0.05; done
[ -S "$T/cut.mig" ] || { cat "$T/cut-d.log"; fail "destination does not listen again"; }
"$FERRY" migrate "$T/cut-s.ctl" "unix:$T/cut.mig" --resume --json >"$T/cut2.json" ||
	{ cat "$T/cut2.json" "$T/cut-d.log"; fail "--resume did not finish the migration"; }
[ "$(json_field "$T/cut2.json" status)" = completed ] || fail "resumed migration not completed"
[ "$(json_field "$T/cut2.json" resumes)" -ge 1 ] || fail "no resume counted"
json_field "$T/cut2.json" ram-digest | grep -qE '^[0-9a-f]{16}$' || fail "resumed: no verified digest"
wait_exit "$S" 10
[ "$RC" -eq 0 ] || fail "resumed: source exit $RC"
first=$(last_beat "$T/cut-d.serial")
wait_beats "$T/cut-d.serial" "$((first + 20))"
"$FERRY" quit "$T/cut-d.ctl"; wait_exit "$D" 10
! grep -q CORRUPT "$T/cut-d.serial" || fail "resumed: corruption"
log "connection cut in post-copy, --resume finished it, zero mismatches"

# Losing a process during post-copy: after the resume window the VM is
# reported lost by the side that survives, never as success.
start_long_postcopy kill-src
kill -KILL "$S"
wait_exit "$D" 60
[ "$RC" -eq 75 ] || { cat "$T/kill-src-d.log"; fail "source killed: destination exit $RC, want 75"; }
grep -q "the VM is lost" "$T/kill-src-d.log" || fail "source killed: destination did not report the loss"
wait "$M" || true
log "source killed during post-copy: the destination reports the VM lost"

start_long_postcopy kill-dst --resume-timeout 2s
kill -KILL "$D"
rc=0; wait "$M" || rc=$?
[ "$rc" -eq 4 ] || { cat "$T/kill-dst.json"; fail "destination killed: ferry migrate exit $rc, want 4"; }
wait_exit "$S" 30
[ "$RC" -eq 75 ] || { cat "$T/kill-dst-s.log"; fail "destination killed: source exit $RC, want 75"; }
grep -q "the VM is lost" "$T/kill-dst-s.log" || fail "destination killed: source did not report the loss"
log "destination killed during post-copy: paused, then the source reports the VM lost"
echo "prepaging helps, ping-pong holds, and a lost side is a lost VM"
