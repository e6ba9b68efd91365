#!/usr/bin/env bash
# Continuous checkpointing to a standby (ferry replicate, docs/replication.md):
# the verify workload replicated in 50 ms epochs; kill -9 of the primary at
# a random moment: the standby resumes the guest from its last checkpoint
# and the workload goes on without corruption.  Also: a standby that takes
# over only by hand, and the primary standing the standby down (cancel,
# quit), after which the standby never runs the guest.
. "$(dirname "$0")/lib.sh"
require_kvm

CMD="workload=verify wss=8M period=20ms"
# A slow host (nested KVM under TCG pauses the guest for hundreds of ms per
# epoch) may stretch the failover timeouts: REPL_SCALE=N multiplies them.
SCALE=${REPL_SCALE:-1}
F=$((SCALE * 1000))ms FM=$((SCALE * 500))ms

# start_pair NAME [standby args...]: a primary NAME-p replicating to a standby NAME-s.
start_pair() {
	local n=$1; shift
	start_dest "$n-s" "unix:$T/$n.mig" --standby "$@"
	SPID=$FERRY_PID
	start_source "$n-p" 2 128M "$CMD"
	PPID_=$FERRY_PID
	"$FERRY" replicate "$T/$n-p.ctl" "unix:$T/$n.mig" --interval 50ms --verify \
		>"$T/$n.out" 2>"$T/$n.err" ||
		{ cat "$T/$n.out" "$T/$n.err" "$T/$n-s.log"; fail "$n: replicate failed"; }
	grep -q "the standby holds the initial checkpoint" "$T/$n.out" || fail "$n: no initial checkpoint"
	wait_migration_ge "$T/$n-p.ctl" epochs-acked 20 30
	[ "$(json_field "$T/query.json" status)" = replicating ] || fail "$n: not replicating"
	"$FERRY" status "$T/$n-s.ctl" | grep -q '^switchover: *standby' ||
		fail "$n: the standby does not say it stands by"
	# The standby's guest has not run.
	assert_no_guest "$T/$n-s.serial"
}

# The first heartbeat the standby's guest printed.
first_beat() { sed -nE 's/^hb ([0-9]+)$/\1/p' "$1" | head -n1; }

kill_case() {
	local n=$1
	start_pair "$n" --failover-timeout $F
	# Stats: epochs, the guest's pause per epoch, bytes per epoch.
	query_migrate "$T/$n-p.ctl"
	local pause bytes; pause=$(json_field "$T/query.json" epoch-pause-ms)
	bytes=$(json_field "$T/query.json" epoch-bytes-total)
	awk -v p="$pause" 'BEGIN { exit !(p > 0 && p < 1000) }' || { cat "$T/query.json"; fail "$n: epoch pause '$pause' ms"; }
	[ "${bytes:-0}" -gt 0 ] || fail "$n: no epoch bytes"
	[ "$(json_field "$T/query.json" standby-failover)" = auto ] || fail "$n: standby mode"
	# A random moment: 0 to 2 s more of replication.
	sleep "$((RANDOM % 2)).$((RANDOM % 10))"
	local before; before=$(last_beat "$T/$n-p.serial")
	kill -9 "$PPID_"
	wait "$PPID_" 2>/dev/null || true
	# Where the primary's guest got to (the shell is slow on a slow host:
	# it may have run on for a while after $before was read).
	local died; died=$(last_beat "$T/$n-p.serial")
	# Failover timeout (1 s) and the start: the standby's guest runs on.
	wait_line "$T/$n-s.serial" '^hb [0-9]+$' $((10 * SCALE))
	local first; first=$(first_beat "$T/$n-s.serial")
	# It resumed from a checkpoint: never past where the primary died (one
	# more: a heartbeat line cut short by the kill), at most a few epochs
	# behind the moment of the kill.
	[ "$first" -le "$((died + 1))" ] && [ "$first" -ge "$((before - 25))" ] ||
		fail "$n: the standby began at hb $first; the primary was killed after hb $before and died after hb $died"
	wait_beats "$T/$n-s.serial" "$((first + 50))" 20
	"$FERRY" status "$T/$n-s.ctl" | grep -q '^status: *running' || fail "$n: standby not running"
	# The verify workload finishes passes there, unharmed.
	local passes; passes=$(grep -c 'verify pass' "$T/$n-s.serial" || true)
	wait_line "$T/$n-s.serial" "verify pass" 30
	! grep -q CORRUPT "$T/$n-p.serial" "$T/$n-s.serial" || fail "$n: the guest saw corruption"
	grep -q "taking over from the checkpoint of epoch" "$T/$n-s.log" || fail "$n: no takeover logged"
	"$FERRY" quit "$T/$n-s.ctl"
	wait_exit "$SPID" 10
	[ "$RC" -eq 0 ] || fail "$n: standby exit status $RC"
	assert_no_sanitizer "$T/$n-s.log"
	log "$n: primary killed after hb $before (died after $died), standby resumed at hb $first ($passes passes seen before)"
}

for i in 1 2 3; do kill_case "kill$i"; done

# Manual failover: the primary dies, the standby waits for the operator.
start_pair man --failover manual --failover-timeout $FM
query_migrate "$T/man-p.ctl"
[ "$(json_field "$T/query.json" standby-failover)" = manual ] || fail "man: standby mode"
kill -9 "$PPID_"; wait "$PPID_" 2>/dev/null || true
sleep 2
assert_no_guest "$T/man-s.serial"
"$FERRY" failover "$T/man-s.ctl" || fail "man: ferry failover refused"
wait_line "$T/man-s.serial" '^hb [0-9]+$' 10
wait_beats "$T/man-s.serial" "$(( $(first_beat "$T/man-s.serial") + 20 ))" 20
! grep -q CORRUPT "$T/man-s.serial" || fail "man: the guest saw corruption"
"$FERRY" quit "$T/man-s.ctl"; wait_exit "$SPID" 10

# Standing down: migrate-cancel on the primary, then quit on another pair.
start_pair cancel --failover-timeout $F
"$FERRY" call "$T/cancel-p.ctl" migrate-cancel >/dev/null || fail "cancel: migrate-cancel refused"
wait_exit "$SPID" 10
[ "$RC" -eq 0 ] || fail "cancel: standby exit status $RC"
grep -q "stands down" "$T/cancel-s.log" || fail "cancel: the standby did not stand down"
wait_migration "$T/cancel-p.ctl" cancelled 5
assert_source_runs cancel-p
sleep 1.5
assert_no_guest "$T/cancel-s.serial"
"$FERRY" quit "$T/cancel-p.ctl"

start_pair quit --failover-timeout $F
"$FERRY" quit "$T/quit-p.ctl"
wait_exit "$SPID" 10
[ "$RC" -eq 0 ] || fail "quit: standby exit status $RC"
assert_no_guest "$T/quit-s.serial"
assert_no_sanitizer "$T/man-s.log" "$T/cancel-s.log" "$T/cancel-p.log" "$T/quit-s.log" "$T/quit-p.log"
echo "replication: failover after kill -9, manual failover and standing down all passed"
