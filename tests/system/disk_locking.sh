#!/usr/bin/env bash
# Shared storage: the image lock keeps two VMs off one disk and moves with
# the guest.  A second `ferry run` on an image is refused (and QEMU refuses
# it too: the same lock bytes); a migration on a shared image hands the
# lock over (the destination holds it, the source has exited); a migration
# that fails leaves the source running with the lock; a destination that
# finds the lock taken at GO does not run, and a source that cannot take
# its lock back stays paused and says why.  Then a disk on an NBD export
# (qemu-nbd on a unix socket) boots, runs the disk workload and migrates.
# Every migration runs the probe's self-checking disk workload and --verify.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/switchover_lib.sh"
require_kvm
[ -x "$SRELAY" ] || skip "$SRELAY is not built (make $SRELAY)"

CMD="workload=verify,disk wss=8M disk_blocks=256 period=20ms"
IMG=$T/shared.img
truncate -s 8M "$IMG"
DISK=(--disk "path=$IMG,serial=shared")

# The last disk generation SERIAL printed (0 if none).
last_gen() { sed -nE 's/^probe: disk generation ([0-9]+)$/\1/p' "$1" | tail -n1 | grep . || echo 0; }
# Wait until the guest's disk workload is past generation N: wait_gen SERIAL N [SECS].
wait_gen() {
	local f=$1 n=$2 limit=${3:-30} i
	for ((i = 0; i < limit * 10; i++)); do
		[ "$(last_gen "$f")" -gt "$n" ] && return 0
		sleep 0.1
	done
	tail -n 20 "$f"
	fail "$f: the disk workload did not get past generation $n in ${limit}s"
}
no_corrupt() { ! grep -q CORRUPT "$@" || { grep CORRUPT "$@"; fail "the guest saw corruption"; }; }

# `ferry run` on IMG is refused because process WANT_PID holds it: refused NAME WANT_PID
refused() {
	local name=$1 pid=$2 rc=0
	timeout 30 "$FERRY" run --kernel "$PROBE" --cmdline "workload=disk" --serial "file:$T/$name.serial" \
		"${DISK[@]}" >"$T/$name.log" 2>&1 || rc=$?
	[ "$rc" -eq 69 ] || { cat "$T/$name.log"; fail "$name: a second ferry on the image exited $rc, not 69"; }
	grep -q "disk $IMG is in use by another process (pid $pid)" "$T/$name.log" ||
		{ cat "$T/$name.log"; fail "$name: no clear 'in use by pid $pid' message"; }
	assert_no_guest "$T/$name.serial"
}

# --- two VMs, one image ---------------------------------------------------
start_source src 1 64M "$CMD" "${DISK[@]}"
src=$FERRY_PID
wait_gen "$T/src.serial" 1
refused second "$src"
# QEMU honours the same lock bytes (block/file-posix.c), so it refuses too.
if command -v qemu-io >/dev/null; then
	! qemu-io -f raw -c "write 0 512" "$IMG" >"$T/qemu-io.log" 2>&1 ||
		fail "qemu-io wrote an image a running ferry holds"
	grep -q 'Failed to get "write" lock' "$T/qemu-io.log" ||
		{ cat "$T/qemu-io.log"; fail "qemu-io failed, but not on the lock"; }
else
	log "no qemu-io: QEMU's side of the lock not checked"
fi

# --- a failed migration: the source keeps the lock and runs on ------------
# LOADED is lost: the source times out, aborts, takes its lock back, resumes.
start_dest d1 "unix:$T/d1.mig" "${DISK[@]}"
d1=$FERRY_PID
"$SRELAY" "$T/r1.sock" "unix:$T/d1.mig" --fault "down:$LOADED:drop" >"$T/r1.out" 2>&1 &
PIDS+=("$!")
for ((i = 0; i < 100; i++)); do [ -S "$T/r1.sock" ] && break; sleep 0.05; done
RC=0
"$FERRY" migrate "$T/src.ctl" "unix:$T/r1.sock" $SO_ARGS >"$T/m1.out" 2>&1 || RC=$?
[ "$RC" -ne 0 ] || { cat "$T/m1.out"; fail "the migration without LOADED succeeded"; }
grep -q '^fault' "$T/r1.out" || fail "the relay never dropped LOADED"
wait_exit "$d1" 15
assert_no_guest "$T/d1.serial"
source_runs "$T/src"
g=$(last_gen "$T/src.serial")
wait_gen "$T/src.serial" "$g"
refused after-fail "$src"

# The destination is killed in the live phase (a slow link keeps it there).
start_dest d2 "unix:$T/d2.mig" "${DISK[@]}"
d2=$FERRY_PID
RC=0
"$FERRY" migrate "$T/src.ctl" "$DEST_URI" --bandwidth 2M >"$T/m2.out" 2>&1 &
m2=$!
PIDS+=("$m2")
wait_migration "$T/src.ctl" active 15
kill -KILL "$d2"
wait_exit "$m2" 30
[ "$RC" -ne 0 ] || fail "a migration to a killed destination succeeded"
source_runs "$T/src"
refused after-kill "$src"

# --- a migration on the shared image: the lock moves with the guest -------
start_dest dst "unix:$T/dst.mig" "${DISK[@]}"
dst=$FERRY_PID
g=$(last_gen "$T/src.serial")
"$FERRY" migrate "$T/src.ctl" "$DEST_URI" --verify --json >"$T/mig.json" 2>"$T/mig.err" ||
	{ cat "$T/mig.json" "$T/mig.err" "$T/dst.log"; fail "migration on a shared image failed"; }
[ "$(json_field "$T/mig.json" status)" = completed ] || fail "not completed"
wait_exit "$src" 10
[ "$RC" -eq 0 ] || fail "source exit status $RC"
wait_gen "$T/dst.serial" 1
refused third "$dst"
no_corrupt "$T/src.serial" "$T/dst.serial"

# --- the lock taken by someone else in the gap: nobody runs on it twice ----
# GO is held back 3 s; in that gap (the source released the lock at END,
# the destination takes it on GO) a third VM starts on the image (read-only,
# so that the guest's data survives for the end of the story).  The
# destination must then refuse to run, and the source, which cannot take
# its lock back either, must stay paused and say why.
start_dest d3 "unix:$T/d3.mig" "${DISK[@]}"
d3=$FERRY_PID
"$SRELAY" "$T/r3.sock" "unix:$T/d3.mig" --fault "up:$GO:delay=3000" >"$T/r3.out" 2>&1 &
PIDS+=("$!")
for ((i = 0; i < 100; i++)); do [ -S "$T/r3.sock" ] && break; sleep 0.05; done
"$FERRY" migrate "$T/dst.ctl" "unix:$T/r3.sock" --switchover-timeout 20s >"$T/m3.out" 2>&1 &
m3=$!
PIDS+=("$m3")
thief=
for ((i = 0; i < 100; i++)); do
	[ -z "$thief" ] || break
	# A reader: its lock keeps writers out too, and it leaves the data alone.
	start_ferry thief --kernel "$PROBE" --cmdline "workload=idle period=50ms" \
		--serial "file:$T/thief.serial" --disk "path=$IMG,readonly=on"
	sleep 0.3
	if kill -0 "$FERRY_PID" 2>/dev/null && ! grep -q "in use" "$T/thief.log"; then
		thief=$FERRY_PID
	else
		wait "$FERRY_PID" 2>/dev/null || true
	fi
done
[ -n "$thief" ] || fail "the lock was never free between END and GO"
RC=0
wait_exit "$m3" 30
wait_exit "$d3" 15
[ "$RC" -eq 69 ] || { cat "$T/d3.log"; fail "a destination that could not lock the disk exited $RC, not 69"; }
grep -q "is in use by another process (pid $thief)" "$T/d3.log" || { cat "$T/d3.log"; fail "destination: no reason"; }
assert_no_guest "$T/d3.serial"
grep -q "stays paused here: disk $IMG is in use by another process (pid $thief)" "$T/dst.log" ||
	{ cat "$T/dst.log" "$T/m3.out"; fail "the source did not say why it stays paused"; }
[ "$(vm_status "$T/dst.ctl")" = paused ] || fail "the source resumed without its lock"
# Once the thief is gone, 'resume' takes the lock back and the guest goes on.
kill -TERM "$thief"
wait_exit "$thief" 10
"$FERRY" call "$T/dst.ctl" resume >/dev/null || fail "resume after the thief left failed"
g=$(last_gen "$T/dst.serial")
wait_gen "$T/dst.serial" "$g"
no_corrupt "$T/dst.serial"
"$FERRY" quit "$T/dst.ctl"
wait_exit "$dst" 10
assert_no_sanitizer "$T/src.log" "$T/dst.log" "$T/d1.log" "$T/d3.log" "$T/third.log"

# --- NBD: a disk on qemu-nbd, migrated between two clients of one export ---
if ! command -v qemu-nbd >/dev/null; then
	echo "locking passed; NBD not tested: qemu-nbd is not installed"
	exit 0
fi
NIMG=$T/nbd.img
truncate -s 8M "$NIMG"
# -e 2: source and destination are both connected during the migration.
qemu-nbd -f raw -k "$T/nbd.sock" -e 2 "$NIMG" >"$T/qemu-nbd.log" 2>&1 &
nbd=$!
PIDS+=("$nbd")
for ((i = 0; i < 100; i++)); do [ -S "$T/nbd.sock" ] && break; sleep 0.05; done
[ -S "$T/nbd.sock" ] || { cat "$T/qemu-nbd.log"; fail "qemu-nbd never listened"; }
NDISK=(--disk "nbd=nbd+unix:///?socket=$T/nbd.sock,serial=nbd")
start_source nsrc 1 64M "$CMD" "${NDISK[@]}"
nsrc=$FERRY_PID
wait_gen "$T/nsrc.serial" 2
start_dest ndst "unix:$T/ndst.mig" "${NDISK[@]}"
ndst=$FERRY_PID
"$FERRY" migrate "$T/nsrc.ctl" "$DEST_URI" --verify --json >"$T/nmig.json" 2>"$T/nmig.err" ||
	{ cat "$T/nmig.json" "$T/nmig.err" "$T/ndst.log"; fail "migration on an NBD export failed"; }
wait_exit "$nsrc" 10
[ "$RC" -eq 0 ] || fail "NBD source exit status $RC"
g=$(last_gen "$T/ndst.serial")
wait_gen "$T/ndst.serial" "$((g > 0 ? g : 1))"
no_corrupt "$T/nsrc.serial" "$T/ndst.serial"
# The pattern reached the export: block 0 is not zero any more.
"$FERRY" quit "$T/ndst.ctl"
wait_exit "$ndst" 10
# qemu-nbd (without --persistent) ends with its last client; make sure.
kill -TERM "$nbd" 2>/dev/null || true
wait "$nbd" 2>/dev/null || true
[ -n "$(od -An -N 4096 -v "$NIMG" | tr -d ' 0\n')" ] || fail "nothing reached the NBD export"
assert_no_sanitizer "$T/nsrc.log" "$T/ndst.log"
echo "the lock keeps a second VM off a disk and moves with the guest; NBD disks migrate"
