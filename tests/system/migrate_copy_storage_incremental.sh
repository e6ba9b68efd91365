#!/usr/bin/env bash
# --copy-storage=incremental: the destination already holds an older copy
# of the disk that differs in 5 % of its 64 KiB ranges.  The migration
# compares a digest per range and sends only those: the block source's
# bytes on the wire (query-migrate's sources.block.sent-bytes) are about
# 5 % of the disk, against about 100 % for a full copy of the same disk in
# the same run; --verify's disk digest agrees, and after the guest stopped
# the destination's image equals the source's.  The guest does not write
# the disk here (the workload is RAM only), so the count is exact.
. "$(dirname "$0")/lib.sh"
require_kvm
command -v python3 >/dev/null || skip "python3 is not available"

SIZE=$((32 << 20))
RANGES=$((SIZE / 65536))	# 512
CHANGED=26			# 5 % of them
A=$T/a.img
B=$T/b.img
head -c $SIZE /dev/urandom >"$A"
# B: A's older copy, 26 ranges apart (one byte in each is enough).
python3 - "$A" "$B" "$RANGES" "$CHANGED" <<'PY'
import sys
src, dst, ranges, changed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
data = bytearray(open(src, "rb").read())
for k in range(changed):
    off = (k * ranges // changed) * 65536 + 4096
    data[off] ^= 0xff
open(dst, "wb").write(data)
PY
truncate -s $SIZE "$T/mid.img"

block_sent() {
	python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["sources"]["block"]["sent-bytes"])' "$1"
}

# A full copy first, A into an empty image: the yardstick, and the guest
# then runs on mid.img, which equals A.
start_source src 1 64M "workload=verify wss=4M period=20ms" --disk "path=$A"
pid=$FERRY_PID
start_dest mid "unix:$T/mid.mig" --copy-storage --disk "path=$T/mid.img"
mpid=$FERRY_PID
"$FERRY" migrate "$T/src.ctl" "unix:$T/mid.mig" --copy-storage --verify --json \
	>"$T/mid.json" 2>"$T/mid.err" || { cat "$T/mid.json" "$T/mid.err" "$T/mid.log"; fail "the full copy failed"; }
full=$(block_sent "$T/mid.json")
wait_exit "$pid" 10
[ "$RC" -eq 0 ] || fail "the first source's exit status $RC"
cmp -s "$A" "$T/mid.img" || fail "the full copy differs from the source's image"

# Then from mid.img to B, A's older copy: only the ranges that differ.
start_dest incr "unix:$T/incr.mig" --copy-storage --disk "path=$B"
ipid=$FERRY_PID
"$FERRY" migrate "$T/mid.ctl" "unix:$T/incr.mig" --copy-storage=incremental --verify --json \
	>"$T/incr.json" 2>"$T/incr.err" || { cat "$T/incr.json" "$T/incr.err" "$T/incr.log"; fail "the incremental copy failed"; }
[ "$(json_field "$T/incr.json" status)" = completed ] || fail "the incremental copy did not complete"
incr=$(block_sent "$T/incr.json")
wait_exit "$mpid" 10
[ "$RC" -eq 0 ] || fail "the second source's exit status $RC"
grep -q "disk 0: $CHANGED of $RANGES ranges of 64 KiB differ" "$T/mid.log" ||
	{ grep -i disk "$T/mid.log"; fail "the source did not find exactly $CHANGED differing ranges"; }
log "block bytes on the wire: incremental $incr, full $full, disk $SIZE"
# 5 % of the disk is 1.6 MiB: allow the records' headers, nothing more.
((incr >= CHANGED * 65536 && incr < CHANGED * 65536 + 65536)) ||
	fail "incremental sent $incr block bytes for $CHANGED ranges of 64 KiB"
((full >= SIZE)) || fail "the full copy sent $full bytes for a $SIZE-byte disk"
((incr * 10 < full)) || fail "incremental ($incr) is not under a tenth of the full copy ($full)"
wait_line "$T/incr.serial" '^hb ' 10
"$FERRY" quit "$T/incr.ctl"
wait_exit "$ipid" 10
cmp -s "$A" "$B" || fail "the destination's image differs from the source's"
assert_no_sanitizer "$T"/*.log
echo "copy-storage=incremental: $incr bytes ($((incr * 100 / SIZE)) % of the disk) vs $full for a full copy"
