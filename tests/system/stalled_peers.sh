#!/usr/bin/env bash
# Peers that stop reading must not wedge the VMM.  A serial client that
# connects and never reads while the guest prints a heartbeat every 200 us: pause
# and status still answer at once, and a migration away completes.  On a
# destination still receiving a post-copy, migrate is refused with a reason
# and pause answers (done or a clear error) instead of hanging.
. "$(dirname "$0")/lib.sh"
require_kvm
command -v python3 >/dev/null || skip "python3 is not available"

# A client of a unix socket that connects and then never reads.
stall_client() {
	python3 -c '
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
print("connected", flush=True)
time.sleep(600)
' "$1" >"$T/stall.out" 2>&1 &
	PIDS+=("$!")
	wait_line "$T/stall.out" '^connected' 10
}

# --- A serial reader that stalls ------------------------------------------
start_ferry src --kernel "$PROBE" --vcpus 2 --memory 128M \
	--cmdline "workload=verify wss=8M period=200us" \
	--serial "unix:$T/src.serial" --control "$T/src.ctl"
src=$FERRY_PID
wait_control "$T/src.ctl"
stall_client "$T/src.serial"
# Byte-sized writes fill the socket within a second; give it three.
sleep 3
timeout 5 "$FERRY" status "$T/src.ctl" | grep -q '^status: *running' ||
	{ cat "$T/src.log"; fail "status did not answer 'running' with a stalled serial reader"; }
timeout 5 "$FERRY" pause "$T/src.ctl" ||
	{ cat "$T/src.log"; fail "pause did not complete within 5 s with a stalled serial reader"; }
timeout 5 "$FERRY" status "$T/src.ctl" | grep -q '^status: *paused' || fail "status is not paused"
timeout 5 "$FERRY" resume "$T/src.ctl" || fail "resume failed"
# Once the bounded queue behind the socket is full too, output is dropped, and said so.
wait_line "$T/src.log" "dropping guest output" 30
timeout 5 "$FERRY" pause "$T/src.ctl" || fail "pause did not complete with output being dropped"
timeout 5 "$FERRY" resume "$T/src.ctl" || fail "resume failed"
log "pause and status answered with a stalled serial reader"

start_dest dst "unix:$T/mig.sock"; dst=$FERRY_PID
timeout 60 "$FERRY" migrate "$T/src.ctl" "unix:$T/mig.sock" --verify --json >"$T/mig.json" ||
	{ cat "$T/mig.json" "$T/src.log" "$T/dst.log"; fail "migration with a stalled serial reader failed"; }
[ "$(json_field "$T/mig.json" status)" = completed ] || fail "migration not completed"
wait_exit "$src" 10
[ "$RC" -eq 0 ] || fail "source exit status $RC"
wait_line "$T/dst.serial" '^hb ' 10
first=$(sed -nE 's/^hb ([0-9]+)$/\1/p' "$T/dst.serial" | head -n1)
wait_beats "$T/dst.serial" "$((first + 100))"
"$FERRY" quit "$T/dst.ctl"; wait_exit "$dst" 10
[ "$RC" -eq 0 ] || fail "destination exit status $RC"
! grep -q CORRUPT "$T/dst.serial" || fail "the guest saw corruption"
assert_no_sanitizer "$T/src.log" "$T/dst.log"
log "migration with a stalled serial reader: downtime $(json_field "$T/mig.json" downtime-ms) ms"

# --- A destination still receiving a post-copy ------------------------------
start_dest pcd "unix:$T/pc.mig"; pcd=$FERRY_PID
start_source pcs 2 256M "workload=memtouch wss=64M pattern=random period=20ms"; pcs=$FERRY_PID
"$FERRY" migrate "$T/pcs.ctl" "unix:$T/pc.mig" --mode postcopy --postcopy-bandwidth 4M \
	--verify --json >"$T/pc.json" & m=$!; PIDS+=("$m")
# The destination's control socket comes up when its guest starts there.
wait_control "$T/pcd.ctl"
timeout 10 "$FERRY" call "$T/pcs.ctl" query-migrate 2>/dev/null | grep -q '"postcopy-active"' ||
	fail "the post-copy ended before the destination could be asked (the test is moot)"
# The guest runs at the destination now: the source must refuse to run it too.
! timeout 10 "$FERRY" resume "$T/pcs.ctl" >"$T/src-resume.err" 2>&1 ||
	fail "resume at a post-copy source was obeyed: the guest would run on both hosts"
grep -q "never runs on both hosts" "$T/src-resume.err" || { cat "$T/src-resume.err"; fail "no reason given"; }
[ "$(timeout 5 "$FERRY" status "$T/pcs.ctl" | sed -n 's/^status: *//p')" = paused ] ||
	fail "the post-copy source is not paused after a refused resume"
rc=0; timeout 10 "$FERRY" call "$T/pcd.ctl" migrate "{\"uri\": \"unix:$T/away.mig\"}" \
	>"$T/away.err" 2>&1 || rc=$?
[ "$rc" -eq 70 ] && grep -q "post-copy" "$T/away.err" ||
	{ cat "$T/away.err"; fail "migrate on a post-copy destination: rc $rc, not refused"; }
log "refused: $(cat "$T/away.err")"
rc=0; timeout 10 "$FERRY" pause "$T/pcd.ctl" >"$T/pause.err" 2>&1 || rc=$?
case $rc in
0) timeout 10 "$FERRY" resume "$T/pcd.ctl" || fail "resume after pause failed"
   log "pause on a post-copy destination: done" ;;
70) grep -q "did not stop" "$T/pause.err" || { cat "$T/pause.err"; fail "pause error lacks a reason"; }
    log "pause on a post-copy destination: $(cat "$T/pause.err")" ;;
*) cat "$T/pause.err"; fail "pause on a post-copy destination: rc $rc (hung?)" ;;
esac
wait "$m" || { cat "$T/pc.json" "$T/pcd.log"; fail "post-copy failed"; }
[ "$(json_field "$T/pc.json" status)" = completed ] || fail "post-copy not completed"
wait_exit "$pcs" 10
wait_line "$T/pcd.serial" '^hb ' 10
"$FERRY" quit "$T/pcd.ctl"; wait_exit "$pcd" 10
[ "$RC" -eq 0 ] || fail "post-copy destination exit status $RC"
! grep -q CORRUPT "$T/pcd.serial" || fail "post-copy: corruption"
assert_no_sanitizer "$T/pcs.log" "$T/pcd.log"
echo "stalled peers cost nothing but their own output"
