#!/usr/bin/env bash
# Failures lose nothing: whatever breaks — a timeout, a cancel, a dead
# destination, a dead source, a cut or corrupted stream — the source guest
# runs on (or, if the source died, the destination never starts the guest),
# and both sides say why.
. "$(dirname "$0")/lib.sh"
require_kvm

SLOW="--bandwidth 4M --downtime 1ms"
CMD="workload=verify wss=16M period=20ms"


# 1. --timeout with cancel: the source runs on, the destination fails.
start_dest d1 "unix:$T/1.mig"; d1=$FERRY_PID
start_source s1 1 128M "$CMD"
rc=0; "$FERRY" migrate "$T/s1.ctl" "unix:$T/1.mig" $SLOW --timeout 2s --json >"$T/1.json" || rc=$?
[ "$rc" -eq 1 ] || fail "timeout: migrate exit $rc, want 1"
[ "$(json_field "$T/1.json" status)" = failed ] || fail "timeout: status not failed"
grep -q "timed out" "$T/1.json" || fail "timeout: no reason given"
assert_source_runs s1
wait_exit "$d1" 40
[ "$RC" -ne 0 ] || fail "timeout: destination exited 0"
grep -q "guest was not started" "$T/d1.log" || fail "timeout: destination did not say the guest was not started"
assert_no_guest "$T/d1.serial"
log "timeout+cancel: source runs on, destination exit $RC"

# 2. migrate-cancel mid-flight.
start_dest d2 "unix:$T/2.mig"; d2=$FERRY_PID
"$FERRY" migrate "$T/s1.ctl" "unix:$T/2.mig" $SLOW --json >"$T/2.json" & m=$!; PIDS+=("$m")
wait_iteration "$T/s1.ctl" 1 10
"$FERRY" call "$T/s1.ctl" migrate-cancel >/dev/null
rc=0; wait "$m" || rc=$?
[ "$rc" -eq 1 ] && [ "$(json_field "$T/2.json" status)" = cancelled ] || { cat "$T/2.json"; fail "cancel: rc $rc"; }
assert_source_runs s1
wait_exit "$d2" 40; [ "$RC" -ne 0 ] || fail "cancel: destination exited 0"
assert_no_guest "$T/d2.serial"
log "cancel: source runs on, destination exit $RC"

# 3. Destination killed mid-migration: the source resumes.
start_dest d3 "unix:$T/3.mig"; d3=$FERRY_PID
"$FERRY" migrate "$T/s1.ctl" "unix:$T/3.mig" $SLOW --json >"$T/3.json" & m=$!; PIDS+=("$m")
wait_iteration "$T/s1.ctl" 1 10
kill -KILL "$d3"
rc=0; wait "$m" || rc=$?
[ "$rc" -eq 1 ] && [ "$(json_field "$T/3.json" status)" = failed ] || { cat "$T/3.json"; fail "dead destination: rc $rc"; }
assert_source_runs s1
log "destination killed: source runs on ($(json_field "$T/3.json" error))"

# 4. Stream cut by the network at several points: both sides notice.
for cut in 10 2000 3000000; do
	start_dest d4 "unix:$T/4.mig"; d4=$FERRY_PID
	"$RELAY" "$T/relay.sock" "unix:$T/4.mig" --cut-after "$cut" >"$T/relay.out" 2>&1 & r=$!; PIDS+=("$r")
	for ((i = 0; i < 50; i++)); do [ -S "$T/relay.sock" ] && break; sleep 0.05; done
	rc=0; "$FERRY" migrate "$T/s1.ctl" "unix:$T/relay.sock" --downtime 1ms --max-iterations 5 --json >"$T/4.json" || rc=$?
	[ "$rc" -eq 1 ] || { cat "$T/4.json"; fail "cut at $cut: migrate exit $rc"; }
	assert_source_runs s1
	wait_exit "$d4" 40
	[ "$RC" -eq 74 ] || { cat "$T/d4.log"; fail "cut at $cut: destination exit $RC, want 74"; }
	assert_no_guest "$T/d4.serial"
	wait "$r" || true
	log "cut after $cut bytes: source runs on, destination exit 74: $(grep -m1 'failed' "$T/d4.log" | cut -c1-100)"
done

# 5. One flipped byte in the stream (inside page data): refused by checksum.
start_dest d5 "unix:$T/5.mig"; d5=$FERRY_PID
"$RELAY" "$T/relay.sock" "unix:$T/5.mig" --flip-at 1500000 >"$T/relay.out" 2>&1 & r=$!; PIDS+=("$r")
for ((i = 0; i < 50; i++)); do [ -S "$T/relay.sock" ] && break; sleep 0.05; done
rc=0; "$FERRY" migrate "$T/s1.ctl" "unix:$T/relay.sock" --json >"$T/5.json" || rc=$?
[ "$rc" -eq 1 ] || fail "flipped byte: migrate exit $rc"
grep -q "checksum mismatch" "$T/5.json" || { cat "$T/5.json"; fail "flipped byte: source was not told why"; }
assert_source_runs s1
wait_exit "$d5" 40
[ "$RC" -eq 65 ] || fail "flipped byte: destination exit $RC, want 65"
assert_no_guest "$T/d5.serial"
log "flipped byte: refused ($(json_field "$T/5.json" error))"

# 6. Source killed mid-migration: the destination never starts the guest.
start_dest d6 "unix:$T/6.mig"; d6=$FERRY_PID
s1pid=$(sed -nE 's/.*"pid": *([0-9]+).*/\1/p' < <("$FERRY" status --json "$T/s1.ctl"))
"$FERRY" migrate "$T/s1.ctl" "unix:$T/6.mig" $SLOW >/dev/null 2>&1 & m=$!; PIDS+=("$m")
wait_iteration "$T/s1.ctl" 1 10
kill -KILL "$s1pid"
wait_exit "$d6" 40
[ "$RC" -eq 74 ] || { cat "$T/d6.log"; fail "dead source: destination exit $RC, want 74"; }
grep -q "guest was not started" "$T/d6.log" || fail "dead source: no clear message"
assert_no_guest "$T/d6.serial"
wait "$m" || true
log "source killed: destination exit 74, guest never started"
assert_no_sanitizer "$T"/*.log
echo "every failure left exactly one running guest, or none started"
