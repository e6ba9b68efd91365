#!/usr/bin/env bash
# Replication with the link cut and both sides alive (docs/replication.md,
# "Who runs the guest"): the link runs through mig_relay, which is stopped
# (SIGSTOP: nothing moves either way, both connections stay open).  The
# primary fences itself (pauses its guest for good) before the standby's
# failover timeout ends, then the standby resumes the guest: at no moment
# do both guests run, as the serial output of each shows.  With a manual
# standby the primary runs on and the standby never starts by itself.
. "$(dirname "$0")/lib.sh"
require_kvm

CMD="workload=verify wss=8M period=20ms"
# A slow host (nested KVM under TCG pauses the guest for hundreds of ms per
# epoch) may stretch the failover timeouts: REPL_SCALE=N multiplies them.
SCALE=${REPL_SCALE:-1}
F=$((SCALE * 1000))ms FM=$((SCALE * 500))ms

# pair NAME [standby args...]: primary NAME-p replicating through a relay to standby NAME-s.
pair() {
	local n=$1; shift
	start_dest "$n-s" "unix:$T/$n.mig" --standby "$@"
	SPID=$FERRY_PID
	start_source "$n-p" 1 64M "$CMD"
	PPID_=$FERRY_PID
	"$RELAY" "$T/$n.relay" "unix:$T/$n.mig" >"$T/$n.relay.out" 2>&1 &
	RPID=$!
	PIDS+=("$RPID")
	local i; for ((i = 0; i < 100; i++)); do [ -S "$T/$n.relay" ] && break; sleep 0.05; done
	"$FERRY" replicate "$T/$n-p.ctl" "unix:$T/$n.relay" --interval 50ms \
		>"$T/$n.out" 2>"$T/$n.err" ||
		{ cat "$T/$n.out" "$T/$n.err" "$T/$n-s.log"; fail "$n: replicate failed"; }
	wait_migration_ge "$T/$n-p.ctl" epochs-acked 10 30
}

# Sample both serial files' sizes every 10 ms into $T/NAME.samples until killed.
sample() {
	local n=$1 i=0
	while :; do
		echo "$i $(stat -c %s "$T/$n-p.serial" 2>/dev/null || echo 0)" \
			"$(stat -c %s "$T/$n-s.serial" 2>/dev/null || echo 0)"
		i=$((i + 1))
		sleep 0.01
	done >"$T/$n.samples"
}

# At no sample did both guests write: the primary's output stopped growing
# before the standby's began.
never_both_ran() {
	awk '
		NR > 1 && $2 != prev { lastp = NR }
		{ prev = $2 }
		$3 > 0 && !firsts { firsts = NR }
		END {
			if (!firsts) { print "the standby never ran"; exit 1 }
			if (lastp >= firsts) { printf "both ran: primary grew at sample %d, standby began at %d\n", lastp, firsts; exit 1 }
			printf "primary stopped at sample %d, standby began at %d\n", lastp, firsts
		}' "$1"
}

# Auto failover: the primary fences, then the standby takes over.
pair cut --failover-timeout $F
query_migrate "$T/cut-p.ctl"
[ "$(json_field "$T/query.json" fence-timeout-ms)" = $((SCALE * 500)) ] ||
	[ "$(json_field "$T/query.json" fence-timeout-ms)" = $((SCALE * 500)).0 ] ||
	{ cat "$T/query.json"; fail "cut: fence timeout is not half the standby's $F"; }
sample cut & SAMPLER=$!; PIDS+=("$SAMPLER")
sleep 0.3
kill -STOP "$RPID"
log "link cut (relay stopped)"
wait_migration "$T/cut-p.ctl" fenced 5
"$FERRY" status "$T/cut-p.ctl" | grep -q '^status: *paused' || fail "cut: the fenced primary is not paused"
wait_line "$T/cut-s.serial" '^hb [0-9]+$' 10
wait_beats "$T/cut-s.serial" "$(( $(sed -nE 's/^hb ([0-9]+)$/\1/p' "$T/cut-s.serial" | head -n1) + 25 ))" 20
kill "$SAMPLER"; wait "$SAMPLER" 2>/dev/null || true
never_both_ran "$T/cut.samples" || { tail -n 120 "$T/cut.samples"; fail "cut: split brain"; }
# Both alive all along, and the primary stays paused once the link is back.
kill -0 "$PPID_" && kill -0 "$SPID" || fail "cut: a side died"
kill -CONT "$RPID"
n0=$(stat -c %s "$T/cut-p.serial"); sleep 1.5
[ "$(stat -c %s "$T/cut-p.serial")" = "$n0" ] || fail "cut: the fenced primary ran again"
! grep -q CORRUPT "$T/cut-p.serial" "$T/cut-s.serial" || fail "cut: the guest saw corruption"
grep -q "fenced" "$T/cut-p.log" || fail "cut: the primary did not say it fenced"
"$FERRY" quit "$T/cut-s.ctl"; wait_exit "$SPID" 10
"$FERRY" quit "$T/cut-p.ctl"; wait_exit "$PPID_" 10

# Manual failover: the link is cut, the primary runs on, the standby stays paused.
pair man --failover manual --failover-timeout $FM
kill -STOP "$RPID"
n=$(last_beat "$T/man-p.serial")
wait_beats "$T/man-p.serial" "$((n + 100))" 20
assert_no_guest "$T/man-s.serial"
"$FERRY" status "$T/man-p.ctl" | grep -q '^status: *running' || fail "man: the primary stopped"
# It gave the silent standby up (after half its failover timeout) and runs on unprotected.
wait_migration "$T/man-p.ctl" failed 5
grep -q "unprotected" "$T/query.json" || { cat "$T/query.json"; fail "man: no reason given"; }
kill -CONT "$RPID"
"$FERRY" quit "$T/man-p.ctl"; wait_exit "$PPID_" 10
"$FERRY" quit "$T/man-s.ctl"; wait_exit "$SPID" 10
assert_no_guest "$T/man-s.serial"
assert_no_sanitizer "$T/cut-p.log" "$T/cut-s.log" "$T/man-p.log" "$T/man-s.log"
echo "cut link: no split brain"
