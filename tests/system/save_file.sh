#!/usr/bin/env bash
# 'ferry save' and 'ferry run --restore FILE [--lazy]' (docs/save-format.md)
# with the verify workload, and with the disk workload on a disk:
#  - save --keep-running: the guest runs on, the file restores (eagerly,
#    then lazily) to a guest whose heartbeats and verify passes go on from
#    the instant of the save, without CORRUPT;
#  - a live snapshot: the guest runs on, and the file restores to the guest
#    of the instant the snapshot began (heartbeats and passes from there);
#  - save (and stop) of a guest with a disk, cold-migrated: the file and the
#    disk image are copied to another directory and restored by a ferry
#    started inside a network namespace of its own (a save file carries no
#    network state: ferry reaches neither the source nor any network to
#    restore, so the namespace proves only that the restore needs nothing
#    of the saving side but the two files; the copy is the transfer).  Its
#    disk generations go on past the saved ones and no CORRUPT-DISK appears;
#  - damaged files (truncated, a bit flipped in the header and in RAM,
#    another version) exit 65, a missing file and a missing disk exit 66,
#    and the guest never starts.
. "$(dirname "$0")/lib.sh"
require_kvm

# The last verify pass a serial log reports (0: none yet).
vpass() { sed -nE 's/^probe: verify pass ([0-9]+)$/\1/p' "$1" | tail -n1 | grep . || echo 0; }
first_beat() { sed -nE 's/^hb ([0-9]+)$/\1/p' "$1" | head -n1; }
first_pass() { sed -nE 's/^probe: verify pass ([0-9]+)$/\1/p' "$1" | head -n1; }

# A restored guest goes on from the save, whose instant lies between
# heartbeats LO and HI: restored NAME LO HI SAVED_PASS
restored() {
	local name=$1 lo=$2 hi=$3 pass=$4 first
	wait_line "$T/$name.serial" '^hb ' 30
	first=$(first_beat "$T/$name.serial")
	[ "$first" -gt "$lo" ] && [ "$first" -le $((hi + 2)) ] ||
		fail "$name: restored guest started at hb $first, saved between hb $lo and $hi"
	wait_beats "$T/$name.serial" "$((first + 60))" 60
	wait_line "$T/$name.serial" '^probe: verify pass ' 30
	[ "$(first_pass "$T/$name.serial")" -ge "$pass" ] ||
		fail "$name: verify pass $(first_pass "$T/$name.serial") after a save at pass $pass"
	! grep -q CORRUPT "$T/$name.serial" || fail "$name: the guest saw corruption"
}

# ---- save --keep-running; restore eagerly and lazily -------------------
start_source a 2 256M "workload=verify wss=64M period=20ms"
a=$FERRY_PID
wait_line "$T/a.serial" '^probe: verify pass [1-9]' 60
hb0=$(last_beat "$T/a.serial")
pass=$(vpass "$T/a.serial")
"$FERRY" save "$T/a.ctl" "$T/a.sav" --keep-running --json >"$T/a.json" ||
	{ cat "$T/a.json" "$T/a.log"; fail "save --keep-running failed"; }
hb=$(last_beat "$T/a.serial")
[ "$(json_field "$T/a.json" running)" = true ] || fail "the guest does not run on"
wait_beats "$T/a.serial" $((hb + 10)) 30
"$FERRY" status "$T/a.ctl" | grep -q '^status: *running' || fail "a: not running after the save"
[ -f "$T/a.sav" ] && [ ! -e "$T/a.sav.tmp" ] || fail "no file, or the temporary one left"
[ "$(stat -c %a "$T/a.sav")" = 600 ] || fail "the save file is readable by others"
# Holes stay holes: far less on disk than 256M of RAM (the guest touched 64M).
used=$(($(stat -c %b "$T/a.sav") * $(stat -c %B "$T/a.sav")))
[ "$used" -lt $((160 << 20)) ] || fail "the save file uses $used bytes for a 64M working set"
log "saved between hb $hb0 and $hb, pass $pass: $(stat -c %s "$T/a.sav") bytes, $used on disk, " \
    "downtime $(json_field "$T/a.json" downtime-ms) ms"
"$FERRY" quit "$T/a.ctl"
wait_exit "$a" 10

start_ferry r1 --restore "$T/a.sav" --serial "file:$T/r1.serial" --control "$T/r1.ctl"
r1=$FERRY_PID
restored r1 "$hb0" "$hb" "$pass"
"$FERRY" quit "$T/r1.ctl"
wait_exit "$r1" 10
[ "$RC" -eq 0 ] || fail "r1: exit status $RC"

start_ferry r2 --restore "$T/a.sav" --lazy --serial "file:$T/r2.serial" --control "$T/r2.ctl"
r2=$FERRY_PID
restored r2 "$hb0" "$hb" "$pass"
wait_line "$T/r2.log" 'every page is in' 60
# Saving again is refused while pages are missing, allowed once all are in.
"$FERRY" save "$T/r2.ctl" "$T/r2.sav" --keep-running >/dev/null ||
	{ cat "$T/r2.log"; fail "r2: save after the lazy restore completed failed"; }
"$FERRY" quit "$T/r2.ctl"
wait_exit "$r2" 10
[ "$RC" -eq 0 ] || fail "r2: exit status $RC"

# ---- live snapshot: the guest runs on; the file is the guest of that instant ----
start_source s 2 256M "workload=verify wss=64M period=20ms"
s=$FERRY_PID
wait_line "$T/s.serial" '^probe: verify pass [1-9]' 60
shb0=$(last_beat "$T/s.serial")
spass=$(vpass "$T/s.serial")
"$FERRY" snapshot "$T/s.ctl" "$T/s.sav" --json >"$T/s.json" ||
	{ cat "$T/s.json" "$T/s.log"; fail "snapshot failed"; }
shb=$(last_beat "$T/s.serial")
wait_beats "$T/s.serial" $((shb + 10)) 30
"$FERRY" status "$T/s.ctl" | grep -q '^status: *running' || fail "s: not running after the snapshot"
log "snapshot between hb $shb0 and $shb: paused $(json_field "$T/s.json" downtime-ms) ms of" \
    "$(json_field "$T/s.json" total-time-ms) ms, $(json_field "$T/s.json" write-faults) writes waited"
"$FERRY" quit "$T/s.ctl"
wait_exit "$s" 10
start_ferry r3 --restore "$T/s.sav" --serial "file:$T/r3.serial" --control "$T/r3.ctl"
r3=$FERRY_PID
restored r3 "$shb0" "$shb" "$spass"
"$FERRY" quit "$T/r3.ctl"
wait_exit "$r3" 10
[ "$RC" -eq 0 ] || fail "r3: exit status $RC"

# ---- save and stop a guest with a disk; restore it in another namespace -----
BLOCKS=256
truncate -s 16M "$T/disk.img"
start_source b 1 128M "workload=verify,disk wss=16M period=20ms disk_blocks=$BLOCKS" \
	--disk "path=$T/disk.img"
b=$FERRY_PID
wait_line "$T/b.serial" '^probe: disk generation [2-9]' 60
"$FERRY" save "$T/b.ctl" "$T/b.sav" >"$T/b.out" || { cat "$T/b.out" "$T/b.log"; fail "save failed"; }
wait_exit "$b" 10
[ "$RC" -eq 0 ] || fail "b: exit status $RC after the save"
bhb=$(last_beat "$T/b.serial")
bpass=$(vpass "$T/b.serial")
bgen=$(disk_gen "$T/b.serial")

mkdir "$T/hostB"
cp --sparse=always "$T/b.sav" "$T/disk.img" "$T/hostB/"
mv "$T/disk.img" "$T/disk.gone"		# not there: the recorded path must not be used
NS=ferry-save-$$
if ip netns add "$NS" 2>/dev/null; then
	trap 'cleanup; ip netns del "$NS" 2>/dev/null || true' EXIT
	REAL_FERRY=$(realpath "$FERRY")
	printf '#!/bin/sh\nexec ip netns exec %s %s "$@"\n' "$NS" "$REAL_FERRY" >"$T/ferry-ns"
	chmod +x "$T/ferry-ns"
	NSFERRY=$T/ferry-ns
else
	log "no network namespaces here: restoring in this one"
	NSFERRY=$FERRY
fi
# The recorded disk is gone: a clear error, exit 66, no guest.
FERRY=$NSFERRY start_ferry nodisk --restore "$T/hostB/b.sav" --serial "file:$T/nodisk.serial"
wait_exit "$FERRY_PID" 20
[ "$RC" -eq 66 ] || { cat "$T/nodisk.log"; fail "missing disk: exit status $RC, want 66"; }
grep -q "disk 0, $T/disk.img" "$T/nodisk.log" || { cat "$T/nodisk.log"; fail "no clear missing-disk error"; }
assert_no_guest "$T/nodisk.serial"

FERRY=$NSFERRY start_ferry rb --restore "$T/hostB/b.sav" --disk "path=$T/hostB/disk.img" \
	--serial "file:$T/rb.serial" --control "$T/rb.ctl"
rb=$FERRY_PID
restored rb "$bhb" "$bhb" "$bpass"
end=$((SECONDS + 60))
until (($(disk_gen "$T/rb.serial") > bgen + 1)); do
	((SECONDS < end)) || fail "rb: no disk generation past $bgen"
	grep -q CORRUPT "$T/rb.serial" && fail "rb: $(grep CORRUPT "$T/rb.serial" | head -n1)"
	sleep 0.1
done
"$FERRY" quit "$T/rb.ctl"
wait_exit "$rb" 10
[ "$RC" -eq 0 ] || fail "rb: exit status $RC"
log "disk guest: saved at generation $bgen, restored elsewhere, now $(disk_gen "$T/rb.serial")"

# ---- damaged files --------------------------------------------------------
size=$(stat -c %s "$T/a.sav")
# Header fields (docs/save-format.md): ram_off is the u64 at byte 88.
ram_off=$(od -An -tu8 -j 88 -N8 "$T/a.sav" | tr -d ' ')
flip() {	# flip FILE OFFSET
	local byte
	byte=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
	printf "\\$(printf %03o $(((byte ^ 16) % 256)))" |
		dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
head -c $((size - 4096)) "$T/a.sav" >"$T/trunc.sav"
cp --sparse=always "$T/a.sav" "$T/hdr.sav"; flip "$T/hdr.sav" 44
cp --sparse=always "$T/a.sav" "$T/ram.sav"
# A page of data: the guest's code and tables sit in the first MiB of RAM.
for ((p = 0; p < 256; p++)); do
	[ "$(od -v -An -tx1 -j $((ram_off + p * 4096)) -N4096 "$T/a.sav" | tr -d ' 0\n')" ] && break
done
flip "$T/ram.sav" $((ram_off + p * 4096 + 7))
cp --sparse=always "$T/a.sav" "$T/ver.sav"
printf '\x04' | dd of="$T/ver.sav" bs=1 seek=8 conv=notrunc status=none
refuse() {
	local name=$1 want=$2 rc=${3:-65}
	start_ferry "$name" --restore "$T/$name.sav" --serial "file:$T/$name.serial"
	wait_exit "$FERRY_PID" 30
	[ "$RC" -eq "$rc" ] || { cat "$T/$name.log"; fail "$name: exit status $RC, want $rc"; }
	grep -qE "$want" "$T/$name.log" || { cat "$T/$name.log"; fail "$name: no '$want'"; }
	grep -q "the guest was not started" "$T/$name.log" || fail "$name: no refusal"
	assert_no_guest "$T/$name.serial"
	log "$name: $(grep -o 'cannot restore.*' "$T/$name.log")"
}
refuse trunc "truncated"
refuse hdr "header fails its checksum"
refuse ram "RAM block [0-9]+ .*fails its checksum"
refuse ver "version 4; this ferry reads versions 1 to 3"
refuse none "No such file" 66

assert_no_sanitizer "$T"/*.log
echo "saved (kept running, and stopped with a disk), restored eagerly, lazily and elsewhere; damaged files refused"
