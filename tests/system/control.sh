#!/usr/bin/env bash
# The control socket: status, pause (heartbeats stop), resume (they go on),
# quit, and SIGTERM — each leaving a clean exit and no socket file behind.
. "$(dirname "$0")/lib.sh"
require_kvm

sock=$T/vm.sock
serial=$T/serial
start_ferry vm --kernel "$PROBE" --vcpus 2 --cmdline "workload=verify wss=8M period=20ms" \
	--serial "file:$serial" --control "$sock"
wait_control "$sock"
wait_line "$serial" '^hb 5$' 20

"$FERRY" status "$sock" >"$T/status"
grep -q '^status: *running' "$T/status" || { cat "$T/status"; fail "status is not running"; }
grep -q '^vcpus: *2' "$T/status" || fail "status does not show 2 vCPUs"
"$FERRY" status --json "$sock" | grep -q '"memory": *268435456' || fail "status --json lacks memory"

"$FERRY" pause "$sock"
"$FERRY" status "$sock" | grep -q '^status: *paused' || fail "status is not paused after pause"
before=$(heartbeats "$serial")
sleep 1
after=$(heartbeats "$serial")
[ "$after" -le "$((before + 1))" ] || fail "heartbeats went on while paused ($before -> $after)"
log "paused: heartbeats $before -> $after"

"$FERRY" resume "$sock"
wait_line "$serial" "^hb $((after + 10))\$" 20
"$FERRY" status "$sock" | grep -q '^status: *running' || fail "status is not running after resume"
log "resumed: heartbeats continue"

# Errors come back as errors, the VM keeps running.
rc=0; "$FERRY" call "$sock" no-such-command >"$T/err" 2>&1 || rc=$?
[ "$rc" -eq 70 ] && grep -q "unknown command" "$T/err" || fail "unknown command: rc $rc"
rc=0; "$FERRY" call "$sock" x-test-corrupt '{"gpa": 4096}' >"$T/err" 2>&1 || rc=$?
[ "$rc" -eq 70 ] && grep -q "test-hooks" "$T/err" || fail "test hook allowed without --test-hooks"
"$FERRY" quit "$sock"
wait_exit "$FERRY_PID" 10
[ "$RC" -eq 0 ] || fail "quit: exit status $RC"
[ ! -e "$sock" ] || fail "control socket file left behind"
! grep -q CORRUPT "$serial" || fail "guest reported corruption"

# SIGTERM shuts down cleanly too.
start_ferry vm2 --kernel "$PROBE" --cmdline "workload=idle period=20ms" \
	--serial "file:$T/serial2" --control "$sock"
wait_line "$T/serial2" '^hb 2$' 20
kill -TERM "$FERRY_PID"
wait_exit "$FERRY_PID" 10
[ "$RC" -eq 0 ] || { cat "$T/vm2.log"; fail "SIGTERM: exit status $RC"; }
grep -q "shutting down" "$T/vm2.log" || fail "SIGTERM was not reported"
[ ! -e "$sock" ] || fail "control socket file left behind after SIGTERM"
echo "control API behaves"
