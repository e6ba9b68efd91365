#!/usr/bin/env bash
# A VM with two virtio-blk disks migrates to a destination started with
# the same --disk options, and is refused (clearly, with the source running
# on) by one that lacks a disk or has one of another size; a saved image
# with disks restores with them.  Bad --disk values are usage errors.
. "$(dirname "$0")/lib.sh"
require_kvm

truncate -s 4M "$T/a.img"
truncate -s 8M "$T/b.img"
truncate -s 6M "$T/c.img"
DISKS=(--disk "path=$T/a.img,serial=disk-a" --disk "path=$T/b.img,cache=writeback")

# Usage errors, before any VM exists.
for bad in "readonly=on" "path=$T/a.img,cache=fast" "path=$T/a.img,serial=123456789012345678901" \
	   "path=$T/a.img,speed=9"; do
	RC=0
	"$FERRY" run --kernel "$PROBE" --disk "$bad" >"$T/bad.log" 2>&1 || RC=$?
	[ "$RC" -eq 64 ] || { cat "$T/bad.log"; fail "--disk '$bad': exit $RC, not 64"; }
	grep -q "bad --disk" "$T/bad.log" || fail "--disk '$bad': no reason given"
done
RC=0
"$FERRY" run --kernel "$PROBE" --disk "path=$T/none.img" >"$T/bad.log" 2>&1 || RC=$?
[ "$RC" -eq 66 ] && grep -q "cannot open disk image $T/none.img" "$T/bad.log" ||
	{ cat "$T/bad.log"; fail "a missing image was not refused clearly (exit $RC)"; }

start_source src 1 128M "workload=verify wss=16M period=20ms" "${DISKS[@]}"
src=$FERRY_PID

# A destination that lacks the second disk: refused, the source runs on.
refused() {
	local name=$1 want=$2; shift 2
	start_dest "$name" "unix:$T/$name.mig" "$@"
	local dst=$FERRY_PID
	RC=0
	"$FERRY" migrate "$T/src.ctl" "$DEST_URI" >"$T/$name.out" 2>&1 || RC=$?
	[ "$RC" -eq 1 ] || { cat "$T/$name.out" "$T/$name.log"; fail "$name: migrate exit $RC, not 1"; }
	grep -q "$want" "$T/$name.log" || { cat "$T/$name.log"; fail "$name: destination did not say '$want'"; }
	grep -q "$want" "$T/$name.out" || { cat "$T/$name.out"; fail "$name: source did not hear '$want'"; }
	wait_exit "$dst" 10
	[ "$RC" -eq 65 ] || fail "$name: destination exit $RC, not 65"
	"$FERRY" status "$T/src.ctl" | grep -q '^status: *running' || fail "$name: source not running"
	assert_no_sanitizer "$T/$name.log"
}
refused lacks "virtio-blk.1, which this destination lacks" --disk "path=$T/a.img"
refused smaller "the source's disk has 16384 sectors" --disk "path=$T/a.img" --disk "path=$T/c.img"
refused extra "virtio-blk.2, which the source lacks" "${DISKS[@]}" --disk "path=$T/c.img"

# The same disks: the migration completes and the guest runs on.
start_dest dst "unix:$T/dst.mig" "${DISKS[@]}"
dst=$FERRY_PID
"$FERRY" migrate "$T/src.ctl" "$DEST_URI" --verify --json >"$T/mig.json" 2>"$T/mig.err" ||
	{ cat "$T/mig.json" "$T/mig.err" "$T/dst.log"; fail "migrate with disks failed"; }
[ "$(json_field "$T/mig.json" status)" = completed ] || fail "not completed"
wait_exit "$src" 10
[ "$RC" -eq 0 ] || fail "source exit status $RC"
# Past the source's last beat (read once it exited: a slow switchover beats on there).
before=$(last_beat "$T/src.serial")
wait_beats "$T/dst.serial" "$((before + 10))"

# Saved with its disks, restored with them.
"$FERRY" migrate "$T/dst.ctl" "file:$T/vm.img" >"$T/save.out" 2>&1 || { cat "$T/save.out"; fail "save failed"; }
wait_exit "$dst" 10
RC=0
"$FERRY" run --incoming "file:$T/vm.img" --serial "file:$T/r1.serial" >"$T/r1.log" 2>&1 || RC=$?
[ "$RC" -eq 65 ] && grep -q "virtio-blk.0, which this destination lacks" "$T/r1.log" ||
	{ cat "$T/r1.log"; fail "a restore without the disks was not refused clearly (exit $RC)"; }
start_ferry r2 --incoming "file:$T/vm.img" --serial "file:$T/r2.serial" --control "$T/r2.ctl" \
	"${DISKS[@]}"
r2=$FERRY_PID
wait_control "$T/r2.ctl"
wait_line "$T/r2.serial" '^hb ' 30
"$FERRY" quit "$T/r2.ctl"
wait_exit "$r2" 10
[ "$RC" -eq 0 ] || fail "restored VM exit status $RC"
! grep -q CORRUPT "$T/src.serial" "$T/dst.serial" "$T/r2.serial" || fail "guest saw corruption"
assert_no_sanitizer "$T/src.log" "$T/dst.log" "$T/r2.log"
echo "disks migrate, are checked at the destination, and restore"
