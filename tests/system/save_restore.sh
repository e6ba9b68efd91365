#!/usr/bin/env bash
# Save and restore through file:PATH, a channel without a return path:
# 'ferry migrate CONTROL file:PATH --verify' pauses the running verify
# guest, writes it to PATH.tmp, syncs and renames it, and the source exits;
# 'ferry run --incoming file:PATH' restores it and the heartbeats go on from
# where they stopped, twice from the same file.  A truncated file, one with a
# flipped byte and one without its closing GO are refused (exit 65) and the
# guest never starts; post-copy to a file is refused up front.
. "$(dirname "$0")/lib.sh"
require_kvm

IMG=$T/vm.img

start_source src 1 128M "workload=verify wss=16M period=20ms"
src=$FERRY_PID

# Post-copy needs page requests to travel back: a file cannot carry them.
if "$FERRY" migrate "$T/src.ctl" "file:$IMG" --mode postcopy >"$T/pc.out" 2>&1; then
	fail "post-copy to a file was accepted"
fi
grep -q "post-copy needs a return path" "$T/pc.out" || { cat "$T/pc.out"; fail "no clear post-copy refusal"; }
[ ! -e "$IMG" ] && [ ! -e "$IMG.tmp" ] || fail "a refused save left a file"

"$FERRY" migrate "$T/src.ctl" "file:$IMG" --verify --json >"$T/save.json" 2>"$T/save.err" ||
	{ cat "$T/save.json" "$T/save.err" "$T/src.log"; fail "save failed"; }
[ "$(json_field "$T/save.json" status)" = completed ] || fail "save not completed"
json_field "$T/save.json" ram-digest | grep -qE '^[0-9a-f]{16}$' || fail "no digest in the save"
wait_exit "$src" 10
[ "$RC" -eq 0 ] || fail "source exit status $RC after the save"
[ -f "$IMG" ] || fail "no image at $IMG"
[ ! -e "$IMG.tmp" ] || fail "the temporary file was left behind"
[ "$(stat -c %a "$IMG")" = 600 ] || fail "the image is readable by others"
saved=$(last_beat "$T/src.serial")
log "saved at hb $saved, $(stat -c %s "$IMG") bytes, downtime $(json_field "$T/save.json" downtime-ms) ms"

# Restore: the guest goes on where it stopped.  Twice: the file is an image.
firsts=()
for r in r1 r2; do
	start_ferry "$r" --incoming "file:$IMG" --serial "file:$T/$r.serial" --control "$T/$r.ctl"
	pid=$FERRY_PID
	wait_line "$T/$r.serial" '^hb ' 15
	first=$(sed -nE 's/^hb ([0-9]+)$/\1/p' "$T/$r.serial" | head -n1)
	[ "$first" -gt "$saved" ] && [ "$first" -le $((saved + 2)) ] ||
		fail "$r: restored guest started at hb $first, saved at hb $saved"
	wait_beats "$T/$r.serial" "$((first + 20))"
	"$FERRY" status "$T/$r.ctl" | grep -q '^status: *running' || fail "$r: not running"
	"$FERRY" quit "$T/$r.ctl"
	wait_exit "$pid" 10
	[ "$RC" -eq 0 ] || fail "$r: exit status $RC"
	firsts+=("$first")
done
[ "${firsts[0]}" = "${firsts[1]}" ] || fail "two restores of one image differ: hb ${firsts[*]}"
! grep -q CORRUPT "$T/src.serial" "$T/r1.serial" "$T/r2.serial" || fail "the guest saw corruption"

# Damaged images: refused with a reason, exit 65, the guest never runs.
size=$(stat -c %s "$IMG")
head -c $((size / 2)) "$IMG" >"$T/trunc.img"
cp "$IMG" "$T/flip.img"
byte=$(od -An -tu1 -j $((size / 3)) -N1 "$IMG" | tr -d ' ')
printf "\\$(printf %03o $(((byte + 1) % 256)))" |
	dd of="$T/flip.img" bs=1 seek=$((size / 3)) conv=notrunc status=none
cmp -s "$IMG" "$T/flip.img" && fail "the byte did not flip"
head -c $((size - 16)) "$IMG" >"$T/nogo.img"	# GO: an 8-byte header and its checksum
refuse() {
	local name=$1 want=$2
	start_ferry "$name" --incoming "file:$T/$name.img" --serial "file:$T/$name.serial"
	wait_exit "$FERRY_PID" 30
	[ "$RC" -eq 65 ] || { cat "$T/$name.log"; fail "$name: exit status $RC, want 65"; }
	grep -qE "$want" "$T/$name.log" || { cat "$T/$name.log"; fail "$name: no '$want'"; }
	grep -q "the guest was not started here" "$T/$name.log" || fail "$name: no refusal"
	assert_no_guest "$T/$name.serial"
	log "$name: $(grep -o 'failed: .*' "$T/$name.log")"
}
refuse trunc "truncated"
refuse flip "checksum mismatch|malformed|out of order|unknown|outside guest RAM"
refuse nogo "without GO: the save did not complete"

# A missing image is a missing file (66).
start_ferry missing --incoming "file:$T/none.img" --serial "file:$T/missing.serial"
wait_exit "$FERRY_PID" 10
[ "$RC" -eq 66 ] || { cat "$T/missing.log"; fail "missing image: exit status $RC, want 66"; }
assert_no_guest "$T/missing.serial"

assert_no_sanitizer "$T"/*.log
echo "saved, restored twice, damaged images refused"
