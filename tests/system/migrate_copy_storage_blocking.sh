#!/usr/bin/env bash
# --copy-storage-mode write-blocking: a guest that rewrites its disk faster
# than the link carries it, and the probe's disk workload verifying every
# block it wrote, across every migration and every failure.
#
#  - Background mode cannot converge here: at 4 MiB/s the guest rewrites
#    its 8 MiB working set every generation; --timeout ends it and the
#    source runs on with its lock (the test would be moot otherwise).
#  - Write-blocking, same link: once the first pass is done every guest
#    write waits for its mirror, so the disk converges; the migration
#    completes with --verify (a digest of the disk on both sides), the
#    destination's guest goes on verifying, and the source exits 0.
#  - Failures while mirroring: the destination killed, and the connection
#    cut (the source's held writes complete, it runs on, keeps its lock,
#    sees no corruption); the source killed in the first pass and while
#    mirroring (the destination exits 74, never runs the guest, says its
#    image holds a partial copy, and lets go of it).
#  (Post-copy with disks: migrate_copy_storage_postcopy.sh.)
# serial: it compares a guest's disk write rate with a bandwidth cap.
. "$(dirname "$0")/lib.sh"
require_kvm

BLOCKS=2048			# 8 MiB of the disk, rewritten generation after generation
CMD="workload=disk disk_blocks=$BLOCKS"			# RAM stays calm
HOT="workload=verify,disk wss=16M period=10ms disk_blocks=$BLOCKS"	# RAM never converges at 4 MiB/s
truncate -s 32M "$T/a.img" "$T/b.img" "$T/c.img" "$T/d.img" "$T/g.img" "$T/h.img"

# The source's image is still locked by it: `ferry run` on IMG exits 69.
assert_locked() {
	local img=$1 rc=0
	timeout 30 "$FERRY" run --kernel "$PROBE" --cmdline "workload=disk" \
		--serial "file:$T/probe-lock.serial" --disk "path=$img" >"$T/probe-lock.log" 2>&1 || rc=$?
	[ "$rc" -eq 69 ] || { cat "$T/probe-lock.log"; fail "a second ferry on $img exited $rc, not 69"; }
}
# NAME's source VM on image IMG running CMDLINE, its disk workload going; pid in SRC_PID.
src() {
	start_source "$1" 1 64M "$3" --test-hooks --disk "path=$2"
	SRC_PID=$FERRY_PID
	wait_gen "$T/$1.serial" 1 30
}
# Wait until FILE has more than N lines matching RE: wait_more FILE RE N SECS.
wait_more() {
	local end=$((SECONDS + $4))
	while ((SECONDS <= end)); do
		(($(grep -cE "$2" "$1" 2>/dev/null || true) > $3)) && return 0
		sleep 0.1
	done
	tail -n 20 "$1"
	fail "$1: no new line matching '$2' after ${4}s"
}
MIRRORED="guest writes are mirrored before they complete"

# --- background cannot converge ------------------------------------------
src a "$T/a.img" "$CMD"
apid=$SRC_PID
start_dest bg "unix:$T/bg.mig" --copy-storage --disk "path=$T/b.img"
dpid=$FERRY_PID
rc=0
"$FERRY" migrate "$T/a.ctl" "unix:$T/bg.mig" --copy-storage --bandwidth 4M --downtime 1000 --timeout 20s \
	--json >"$T/bg.json" 2>"$T/bg.err" || rc=$?
[ "$rc" -ne 0 ] && grep -q "timed out" "$T/bg.json" ||
	{ cat "$T/bg.json" "$T/bg.err"; fail "background mode converged: the test is moot"; }
wait_exit "$dpid" 30
assert_no_guest "$T/bg.serial"
assert_source_runs a
no_corrupt "$T/a.serial"
assert_locked "$T/a.img"
log "background: did not converge in 20 s at 4 MiB/s ($(json_field "$T/bg.json" error))"

# --- write-blocking converges on the same link ----------------------------
gen=$(disk_gen "$T/a.serial")
start_dest wb "unix:$T/wb.mig" --copy-storage --disk "path=$T/b.img"
dpid=$FERRY_PID
"$FERRY" migrate "$T/a.ctl" "unix:$T/wb.mig" --copy-storage --copy-storage-mode write-blocking \
	--bandwidth 4M --downtime 1000 --timeout 120s --verify --json >"$T/wb.json" 2>"$T/wb.err" ||
	{ cat "$T/wb.json" "$T/wb.err" "$T/wb.log"; fail "write-blocking: the migration failed"; }
[ "$(json_field "$T/wb.json" status)" = completed ] || fail "write-blocking: not completed"
grep -q "$MIRRORED" "$T/a.log" || { cat "$T/a.log"; fail "write-blocking: the source never mirrored"; }
json_field "$T/wb.json" ram-digest | grep -qE '^[0-9a-f]{16}$' || fail "write-blocking: no verified digest"
wait_exit "$apid" 10
[ "$RC" -eq 0 ] || { cat "$T/a.log"; fail "write-blocking: source exit status $RC"; }
wait_gen "$T/wb.serial" "$gen" 30
no_corrupt "$T/a.serial" "$T/wb.serial"
log "write-blocking: completed at 4 MiB/s, downtime $(json_field "$T/wb.json" downtime-ms) ms"
"$FERRY" quit "$T/wb.ctl"
wait_exit "$dpid" 10
[ "$RC" -eq 0 ] || fail "write-blocking: the destination's VM exit status $RC"

# --- the destination killed while writes are mirrored ----------------------
# RAM that never converges at 4 MiB/s: the mirror goes on until the kill.
src c "$T/c.img" "$HOT"
cpid=$SRC_PID
start_dest kd "unix:$T/kd.mig" --copy-storage --disk "path=$T/d.img"
dpid=$FERRY_PID
"$FERRY" migrate "$T/c.ctl" "unix:$T/kd.mig" --copy-storage --copy-storage-mode write-blocking \
	--bandwidth 4M --json >"$T/kd.json" 2>"$T/kd.err" &
mpid=$!
wait_more "$T/c.log" "$MIRRORED" 0 90
sleep 1
g0=$(disk_gen "$T/c.serial")
kill -KILL "$dpid"
rc=0; wait "$mpid" || rc=$?
[ "$rc" -ne 0 ] || fail "killed destination: the migration completed"
assert_source_runs c
wait_gen "$T/c.serial" "$g0" 30		# held writes completed; new ones flow
no_corrupt "$T/c.serial"
assert_locked "$T/c.img"
log "destination killed while mirroring: the source runs on with its lock"

# --- the connection cut while writes are mirrored -------------------------
start_dest cut "unix:$T/cut.mig" --copy-storage --disk "path=$T/d.img"
dpid=$FERRY_PID
"$FERRY" migrate "$T/c.ctl" "unix:$T/cut.mig" --copy-storage --copy-storage-mode write-blocking \
	--bandwidth 4M >"$T/cut.out" 2>&1 &
mpid=$!
wait_more "$T/c.log" "$MIRRORED" 1 90
sleep 1
g0=$(disk_gen "$T/c.serial")
"$FERRY" call "$T/c.ctl" x-test-migration-break >/dev/null 2>&1 ||
	{ kill -KILL "$dpid"; log "no x-test-migration-break hook: killed the destination instead"; }
rc=0; wait "$mpid" || rc=$?
[ "$rc" -ne 0 ] || fail "cut: the migration completed over a cut connection"
assert_source_runs c
wait_gen "$T/c.serial" "$g0" 30
no_corrupt "$T/c.serial"
assert_locked "$T/c.img"
kill -KILL "$dpid" 2>/dev/null || true
wait "$dpid" 2>/dev/null || true
assert_no_guest "$T/cut.serial"
log "connection cut while mirroring: the source runs on with its lock"

# --- the source killed in the first pass -----------------------------------
src g "$T/g.img" "$HOT"
gpid=$SRC_PID
start_dest ks1 "unix:$T/ks1.mig" --copy-storage --disk "path=$T/h.img"
dpid=$FERRY_PID
# 1 MiB/s: RAM's pass and then the disk's take many seconds; kill inside them.
"$FERRY" migrate "$T/g.ctl" "unix:$T/ks1.mig" --copy-storage --copy-storage-mode write-blocking \
	--bandwidth 1M >/dev/null 2>&1 &
mpid=$!
PIDS+=("$mpid")
wait_migration_ge "$T/g.ctl" iteration 1 30
sleep 3
! grep -q "$MIRRORED" "$T/g.log" || fail "ks1: the first pass ended before the kill; the case is moot"
kill -KILL "$gpid"
wait_exit "$dpid" 40
[ "$RC" -eq 74 ] || { cat "$T/ks1.log"; fail "source killed in the first pass: destination exit $RC, want 74"; }
grep -q "guest was not started" "$T/ks1.log" || { cat "$T/ks1.log"; fail "ks1: no clear message"; }
assert_no_guest "$T/ks1.serial"
wait "$mpid" 2>/dev/null || true
log "source killed in the first pass: destination exit 74, guest never started there"

# --- the source killed while writes are mirrored ---------------------------
start_dest ks "unix:$T/ks.mig" --copy-storage --disk "path=$T/d.img"
dpid=$FERRY_PID
"$FERRY" migrate "$T/c.ctl" "unix:$T/ks.mig" --copy-storage --copy-storage-mode write-blocking \
	--bandwidth 4M >/dev/null 2>&1 &
mpid=$!
PIDS+=("$mpid")
wait_more "$T/c.log" "$MIRRORED" 2 90
sleep 1
kill -KILL "$cpid"
wait_exit "$dpid" 40
[ "$RC" -eq 74 ] || { cat "$T/ks.log"; fail "killed source: destination exit $RC, want 74"; }
grep -q "guest was not started" "$T/ks.log" || { cat "$T/ks.log"; fail "killed source: no clear message"; }
grep -q "holds a partial copy" "$T/ks.log" || { cat "$T/ks.log"; fail "killed source: the partial image was not called so"; }
assert_no_guest "$T/ks.serial"
wait "$mpid" 2>/dev/null || true
# The half-copied image is nobody's now: its lock went with the destination.
rc=0
timeout 30 "$FERRY" run --kernel "$PROBE" --cmdline "workload=idle seconds=1" \
	--serial "file:$T/free.serial" --disk "path=$T/d.img" >"$T/free.log" 2>&1 || rc=$?
[ "$rc" -ne 69 ] || { cat "$T/free.log"; fail "killed source: the destination's image stayed locked"; }
log "source killed while mirroring: destination exit 74, guest never started there"

assert_no_sanitizer "$T"/*.log
echo "write-blocking: converges where background cannot; killed destination, cut link, killed source"
