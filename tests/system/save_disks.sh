#!/usr/bin/env bash
# 'ferry save --disks copy|path' and the restore of the disks it records
# (docs/save-format.md, "Disks"), with the verify and disk workloads:
#  - --disks copy: the guest's disk goes into the save file (holes stay
#    holes); the original image is then changed under it, which must not
#    matter: the restore writes the copy into a new image (--disk
#    path=NEW, without which it is refused, exit 64), and the guest goes
#    on with its verify passes and disk generations, no CORRUPT (the disk
#    workload checks every block it reads back against the generation it
#    wrote);
#  - a copy with a flipped byte in the disk's region is refused (exit 65)
#    and leaves no image behind;
#  - a live snapshot with --disks copy is refused (the disk goes on
#    changing); save --keep-running --disks copy is not (the guest stays
#    paused while the disk is copied);
#  - --disks path: an image of another size, or with its first blocks
#    changed, is refused (exit 65); the saved image restores and the guest
#    goes on as above.
. "$(dirname "$0")/lib.sh"
require_kvm

vpass() { sed -nE 's/^probe: verify pass ([0-9]+)$/\1/p' "$1" | tail -n1 | grep . || echo 0; }

# The restored guest NAME goes on past disk generation GEN and verify pass PASS.
goes_on() {
	local name=$1 gen=$2 pass=$3 end=$((SECONDS + 90))
	wait_line "$T/$name.serial" '^hb ' 60
	until (($(disk_gen "$T/$name.serial") > gen + 1)) && (($(vpass "$T/$name.serial") > pass)); do
		((SECONDS < end)) || { cat "$T/$name.log"; fail "$name: no disk generation past $gen" \
			"or verify pass past $pass"; }
		grep -q CORRUPT "$T/$name.serial" && fail "$name: $(grep CORRUPT "$T/$name.serial" | head -n1)"
		sleep 0.2
	done
	! grep -q CORRUPT "$T/$name.serial" || fail "$name: the guest saw corruption"
}

# refuse NAME RC PATTERN ARGS...: the restore exits RC, says PATTERN, runs no guest.
refuse() {
	local name=$1 rc=$2 want=$3; shift 3
	start_ferry "$name" "$@" --serial "file:$T/$name.serial"
	wait_exit "$FERRY_PID" 60
	[ "$RC" -eq "$rc" ] || { cat "$T/$name.log"; fail "$name: exit status $RC, want $rc"; }
	grep -qE "$want" "$T/$name.log" || { cat "$T/$name.log"; fail "$name: no '$want'"; }
	assert_no_guest "$T/$name.serial"
	log "$name: $(grep -o 'cannot restore.*' "$T/$name.log")"
}

WL="workload=verify,disk wss=16M period=20ms disk_blocks=256"

# ---- --disks copy ---------------------------------------------------------
truncate -s 16M "$T/c.img"
start_source c 1 128M "$WL" --disk "path=$T/c.img"
c=$FERRY_PID
wait_line "$T/c.serial" '^probe: disk generation [2-9]' 90
"$FERRY" save "$T/c.ctl" "$T/c.sav" --disks copy --json >"$T/c.json" ||
	{ cat "$T/c.json" "$T/c.log"; fail "save --disks copy failed"; }
wait_exit "$c" 20
[ "$RC" -eq 0 ] || fail "c: exit status $RC after the save"
[ "$(json_field "$T/c.json" disk-bytes)" = 16777216 ] || { cat "$T/c.json"; fail "c: not 16 MiB of disk copied"; }
cgen=$(disk_gen "$T/c.serial")
cpass=$(vpass "$T/c.serial")
# Holes stay holes: the guest wrote 1 MiB of the disk and touched 16M of RAM.
used=$(($(stat -c %b "$T/c.sav") * $(stat -c %B "$T/c.sav")))
[ "$used" -lt $((48 << 20)) ] || fail "the save file uses $used bytes"
log "saved with its disk at generation $cgen: $(stat -c %s "$T/c.sav") bytes, $used on disk"
# The original image changes after the save: the copy must not care.
dd if=/dev/urandom of="$T/c.img" bs=4096 count=256 conv=notrunc status=none

refuse nonew 64 'copied into the save file.*--disk path=NEW' --restore "$T/c.sav"
# A damaged copy: the disk's first page (the guest writes from sector 0) flipped.
disk_off=$(od -An -tu8 -j 112 -N8 "$T/c.sav" | tr -d ' ')
cp --sparse=always "$T/c.sav" "$T/cbad.sav"
byte=$(od -An -tu1 -j $((disk_off + 100)) -N1 "$T/cbad.sav" | tr -d ' ')
printf "\\$(printf %03o $(((byte ^ 16) % 256)))" |
	dd of="$T/cbad.sav" bs=1 seek=$((disk_off + 100)) conv=notrunc status=none
refuse cbad 65 "disk 0's copy fails its checksum" --restore "$T/cbad.sav" --disk "path=$T/bad.img"
[ ! -e "$T/bad.img" ] && [ ! -e "$T/bad.img.tmp" ] || fail "a damaged copy left an image behind"

start_ferry rc --restore "$T/c.sav" --disk "path=$T/new.img" --serial "file:$T/rc.serial" \
	--control "$T/rc.ctl"
rc=$FERRY_PID
goes_on rc "$cgen" "$cpass"
log "rc: restored onto a new image, now at disk generation $(disk_gen "$T/rc.serial")"

# A live snapshot cannot copy a disk the guest goes on writing; save --keep-running can.
if "$FERRY" snapshot "$T/rc.ctl" "$T/snap.sav" --disks copy 2>"$T/snap.err"; then
	fail "snapshot --disks copy was not refused"
fi
grep -q "cannot copy the disks" "$T/snap.err" || { cat "$T/snap.err"; fail "no clear snapshot refusal"; }
[ ! -e "$T/snap.sav" ] || fail "a refused snapshot left a file"
"$FERRY" save "$T/rc.ctl" "$T/k.sav" --keep-running --disks copy --json >"$T/k.json" ||
	{ cat "$T/k.json" "$T/rc.log"; fail "save --keep-running --disks copy failed"; }
[ "$(json_field "$T/k.json" running)" = true ] || { cat "$T/k.json"; fail "rc: not running after the save"; }
"$FERRY" quit "$T/rc.ctl"
wait_exit "$rc" 20
[ "$RC" -eq 0 ] || fail "rc: exit status $RC"

# ---- --disks path ---------------------------------------------------------
truncate -s 16M "$T/p.img"
start_source p 1 128M "$WL" --disk "path=$T/p.img"
p=$FERRY_PID
wait_line "$T/p.serial" '^probe: disk generation [2-9]' 90
"$FERRY" save "$T/p.ctl" "$T/p.sav" --disks path >"$T/p.out" ||
	{ cat "$T/p.out" "$T/p.log"; fail "save --disks path failed"; }
wait_exit "$p" 20
[ "$RC" -eq 0 ] || fail "p: exit status $RC after the save"
pgen=$(disk_gen "$T/p.serial")
ppass=$(vpass "$T/p.serial")
cp --sparse=always "$T/p.img" "$T/big.img"
truncate -s 32M "$T/big.img"
refuse psize 65 "is 33554432 bytes; it was 16777216 at the save" --restore "$T/p.sav" \
	--disk "path=$T/big.img"
cp --sparse=always "$T/p.img" "$T/changed.img"
printf 'changed' | dd of="$T/changed.img" bs=1 seek=512 conv=notrunc status=none
refuse pchanged 65 "changed since the save" --restore "$T/p.sav" --disk "path=$T/changed.img"

start_ferry rp --restore "$T/p.sav" --serial "file:$T/rp.serial" --control "$T/rp.ctl"
rp=$FERRY_PID
goes_on rp "$pgen" "$ppass"
"$FERRY" quit "$T/rp.ctl"
wait_exit "$rp" 20
[ "$RC" -eq 0 ] || fail "rp: exit status $RC"

assert_no_sanitizer "$T"/*.log
echo "disks copied into the save and restored onto a new image, and kept by path and checked; damaged and changed ones refused"
