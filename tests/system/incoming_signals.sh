#!/usr/bin/env bash
# A destination told to stop (SIGTERM, SIGINT) while it waits for a source,
# in the middle of a stalled stream, or in a post-copy, stops at once: it
# never starts the guest, tells the source (which runs on), and exits
# 128 + the signal's number — or, once a post-copy guest runs there, 75:
# the VM is lost.  A destination killed with SIGKILL leaves a socket file
# that the next one on the same path takes over; a live listener or a file
# that is not a socket is never taken.
. "$(dirname "$0")/lib.sh"
require_kvm

# Like start_dest, but SIGINT reaches it: bash starts background commands
# with SIGINT ignored, and ferry keeps an ignored signal ignored.
start_dest_sig() {
	local name=$1 uri=$2; shift 2
	(trap - INT; exec "$FERRY" run --incoming "$uri" --serial "file:$T/$name.serial" \
		--control "$T/$name.ctl" "$@") >"$T/$name.log" 2>&1 &
	FERRY_PID=$!
	PIDS+=("$FERRY_PID")
	wait_line "$T/$name.log" "waiting for a migration on $uri" 10
}


# (a) Waiting for a source: each signal ends the wait at once.
for sig in TERM INT; do
	start_dest_sig "wait-$sig" "unix:$T/wait-$sig.mig"; d=$FERRY_PID
	kill -s "$sig" "$d"
	wait_exit "$d" 2
	want=$((128 + $(kill -l "$sig")))
	[ "$RC" -eq "$want" ] || { cat "$T/wait-$sig.log"; fail "SIG$sig while waiting: exit $RC, want $want"; }
	grep -q "interrupted by SIG$sig; the guest was not started here" "$T/wait-$sig.log" ||
		{ cat "$T/wait-$sig.log"; fail "SIG$sig while waiting: no clear message"; }
	[ ! -e "$T/wait-$sig.mig" ] || fail "SIG$sig while waiting: the socket file was left behind"
	assert_no_guest "$T/wait-$sig.serial"
	log "SIG$sig while waiting for a source: exit $RC at once"
done

# (b) A stalled stream: the relay forwards 2 MB, then nothing, connection open.
start_source src 1 64M "workload=verify wss=16M period=20ms"; s=$FERRY_PID
start_dest_sig stall "unix:$T/stall.mig"; d=$FERRY_PID
"$RELAY" "$T/relay.sock" "unix:$T/stall.mig" --stall-after 2000000 >"$T/relay.out" 2>&1 & r=$!
PIDS+=("$r")
for ((i = 0; i < 100; i++)); do [ -S "$T/relay.sock" ] && break; sleep 0.05; done
"$FERRY" migrate "$T/src.ctl" "unix:$T/relay.sock" --json >"$T/stall.json" & m=$!
PIDS+=("$m")
wait_line "$T/relay.out" "^stalled" 30
kill -0 "$d" 2>/dev/null || { cat "$T/stall.log"; fail "stall: the destination ended by itself"; }
kill -TERM "$d"
wait_exit "$d" 2
[ "$RC" -eq 143 ] || { cat "$T/stall.log"; fail "SIGTERM mid-stream: exit $RC, want 143"; }
grep -q "interrupted by SIGTERM; the guest was not started here" "$T/stall.log" ||
	{ cat "$T/stall.log"; fail "SIGTERM mid-stream: no clear message"; }
wait_exit "$m" 10
[ "$RC" -eq 1 ] || { cat "$T/stall.json"; fail "SIGTERM mid-stream: ferry migrate exit $RC, want 1"; }
[ "$(json_field "$T/stall.json" status)" = failed ] || { cat "$T/stall.json"; fail "stall: status not failed"; }
grep -q "interrupted by SIGTERM" "$T/stall.json" ||
	{ cat "$T/stall.json"; fail "SIGTERM mid-stream: the source was not told why"; }
assert_source_runs src
assert_no_guest "$T/stall.serial"
wait "$r" || true
log "SIGTERM on a stalled stream: destination exit 143 at once, the source runs on"

# (c) SIGKILL leaves the socket file; the next destination on that path works.
start_dest k1 "unix:$T/k.mig"; k1=$FERRY_PID
kill -KILL "$k1"; wait "$k1" 2>/dev/null || true
[ -S "$T/k.mig" ] || fail "the killed destination left no socket file: test is moot"
start_dest_sig k2 "unix:$T/k.mig"; k2=$FERRY_PID
# A live listener is never taken over (and not disturbed by the check).
rc=0; "$FERRY" run --incoming "unix:$T/k.mig" --serial "file:$T/k3.serial" >"$T/k3.log" 2>&1 || rc=$?
[ "$rc" -eq 64 ] || { cat "$T/k3.log"; fail "second destination on a live path: exit $rc, want 64"; }
grep -q "another process listens there" "$T/k3.log" || { cat "$T/k3.log"; fail "live path: no clear message"; }
"$FERRY" migrate "$T/src.ctl" "unix:$T/k.mig" --verify --json >"$T/k.json" ||
	{ cat "$T/k.json" "$T/k2.log"; fail "migration to the reused path failed"; }
[ "$(json_field "$T/k.json" status)" = completed ] || fail "reused path: not completed"
wait_exit "$s" 10
[ "$RC" -eq 0 ] || fail "reused path: source exit $RC"
n=$(last_beat "$T/k2.serial" || true)
wait_beats "$T/k2.serial" "$((${n:-0} + 5))" 10
"$FERRY" quit "$T/k2.ctl"; wait_exit "$k2" 10
[ "$RC" -eq 0 ] || fail "reused path: destination exit $RC after quit"
! grep -q CORRUPT "$T/k2.serial" || fail "reused path: corruption"
log "a stale socket file from a killed destination is replaced; a live one is refused"

# A path that is not a socket is never removed, for migration or control.
echo keep >"$T/file.mig"
rc=0; "$FERRY" run --incoming "unix:$T/file.mig" --serial "file:$T/f.serial" >"$T/f.log" 2>&1 || rc=$?
[ "$rc" -eq 64 ] || { cat "$T/f.log"; fail "a regular file as the incoming path: exit $rc, want 64"; }
grep -q "not a socket" "$T/f.log" || { cat "$T/f.log"; fail "regular file: no clear message"; }
[ "$(cat "$T/file.mig")" = keep ] || fail "the regular file at the incoming path was touched"
echo keep >"$T/file.ctl"
rc=0; timeout 10 "$FERRY" run --kernel "$PROBE" --serial "file:$T/g.serial" --control "$T/file.ctl" \
	>"$T/g.log" 2>&1 || rc=$?
[ "$rc" -eq 71 ] || { cat "$T/g.log"; fail "a regular file as the control path: exit $rc, want 71"; }
[ "$(cat "$T/file.ctl" 2>/dev/null)" = keep ] || fail "the regular file at the control path was removed"
log "files that are not sockets are left alone"

# (d) Post-copy: once the guest runs at the destination, a stop request
# loses the VM, and says so — while it runs and while it waits for a resume.
for when in active paused; do
	start_dest_sig "pc-$when-d" "unix:$T/pc-$when.mig" --resume-timeout 60s; d=$FERRY_PID
	start_source "pc-$when-s" 1 256M "workload=verify wss=64M fill=random period=20ms" --test-hooks
	"$FERRY" migrate "$T/pc-$when-s.ctl" "unix:$T/pc-$when.mig" --mode postcopy --prepage 0 \
		--postcopy-bandwidth 8M --json >"$T/pc-$when.json" & m=$!; PIDS+=("$m")
	wait_migration "$T/pc-$when-s.ctl" postcopy-active 15
	if [ "$when" = paused ]; then
		"$FERRY" call "$T/pc-$when-s.ctl" x-test-migration-break >/dev/null
		wait_line "$T/pc-$when-d.log" "Waiting .* for" 10
	fi
	kill -TERM "$d"
	wait_exit "$d" 2
	[ "$RC" -eq 75 ] || { cat "$T/pc-$when-d.log"; fail "SIGTERM in post-copy ($when): exit $RC, want 75"; }
	grep -q "interrupted by SIGTERM.*the VM is lost" "$T/pc-$when-d.log" ||
		{ cat "$T/pc-$when-d.log"; fail "SIGTERM in post-copy ($when): the loss was not reported"; }
	log "SIGTERM in post-copy ($when): destination exit 75, the VM is reported lost"
	# Let the source give up too (quick after a refusal; bounded after a break).
	"$FERRY" call "$T/pc-$when-s.ctl" migrate-cancel >/dev/null 2>&1 || true
	wait_exit "$m" 30
done
assert_no_sanitizer "$T"/*.log
echo "signals stop an incoming migration at once; stale sockets are reused, live ones refused"
