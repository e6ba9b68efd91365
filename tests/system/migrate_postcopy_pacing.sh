#!/usr/bin/env bash
# --postcopy-bandwidth caps the bytes that go on the wire: an idle 256 MiB
# guest (almost all zero pages, an 8-byte entry each) is pushed at 32 MB/s
# in a fraction of the time that charging 4 KiB per page would take
# (256 MiB at 32 MiB/s: 8 s), and the cap still holds for real data.
# serial: it measures post-copy time against a bandwidth cap.
. "$(dirname "$0")/lib.sh"
require_kvm

RATE=$((32 << 20))	# --postcopy-bandwidth 32M

start_dest idle-d "unix:$T/idle.mig"; d=$FERRY_PID
start_source idle-s 1 256M "workload=idle period=20ms"; s=$FERRY_PID
"$FERRY" migrate "$T/idle-s.ctl" "unix:$T/idle.mig" --mode postcopy --postcopy-bandwidth 32M \
	--verify --json >"$T/idle.json" || { cat "$T/idle.json" "$T/idle-d.log"; fail "migration failed"; }
[ "$(json_field "$T/idle.json" status)" = completed ] || fail "not completed"
wait_exit "$s" 10
first=$(last_beat "$T/idle-d.serial")
wait_beats "$T/idle-d.serial" "$((first + 5))"
"$FERRY" quit "$T/idle-d.ctl"; wait_exit "$d" 10
! grep -q CORRUPT "$T/idle-d.serial" || fail "corruption"
assert_no_sanitizer "$T/idle-s.log" "$T/idle-d.log"

pushed=$(json_field "$T/idle.json" pages-pushed)
wire=$(json_field "$T/idle.json" data-processed)
pc_ms=$(json_field "$T/idle.json" postcopy-time-ms)
# What 4 KiB per pushed page would cost at RATE, less the bucket's
# first burst (1/20 s): the time the old accounting slept at least.
per_page_ms=$(awk -v p="$pushed" -v r="$RATE" 'BEGIN { printf "%d", (p * 4096 - r / 20) * 1000 / r }')
log "pushed $pushed pages in $wire wire bytes; post-copy took $pc_ms ms" \
	"(4 KiB a page at 32 MiB/s: at least $per_page_ms ms)"
# The test is moot unless the guest is idle (mostly zero pages) and big.
[ "$pushed" -ge 60000 ] || fail "only $pushed pages pushed; expected nearly all of 65536"
[ "$wire" -lt $((pushed * 4096 / 8)) ] || fail "$wire wire bytes: the guest is not idle, the test is moot"
# Generous for a shared 2-core machine; the wire bytes alone need ~20 ms.
awk -v p="$pc_ms" -v b="$per_page_ms" 'BEGIN { exit !(b > 6000 && p < b / 3) }' ||
	fail "post-copy took $pc_ms ms; charging 4 KiB per page would take $per_page_ms ms"

# The cap still holds where pages carry data: a guest with random data in
# its memory is pushed no faster than the cap allows (requested pages are
# never capped, hence the margin: a quarter of wire bytes / rate).
start_dest data-d "unix:$T/data.mig"; d=$FERRY_PID
start_source data-s 1 64M "workload=verify wss=16M fill=random seed=3 period=20ms"; s=$FERRY_PID
"$FERRY" migrate "$T/data-s.ctl" "unix:$T/data.mig" --mode postcopy --postcopy-bandwidth 32M \
	--verify --json >"$T/data.json" || { cat "$T/data.json" "$T/data-d.log"; fail "data: migration failed"; }
wait_exit "$s" 10
wait_line "$T/data-d.serial" '^hb ' 10
"$FERRY" quit "$T/data-d.ctl"; wait_exit "$d" 10
! grep -q CORRUPT "$T/data-d.serial" || fail "data: corruption"
assert_no_sanitizer "$T/data-s.log" "$T/data-d.log"
pc_ms=$(json_field "$T/data.json" postcopy-time-ms)
wire=$(json_field "$T/data.json" data-processed)
floor_ms=$(awk -v w="$wire" -v r="$RATE" 'BEGIN { printf "%d", (w - r / 20) * 1000 / r / 4 }')
log "data: $wire wire bytes, post-copy took $pc_ms ms (floor $floor_ms ms)"
[ "$wire" -gt $((16 << 20)) ] || fail "data: only $wire wire bytes; the test is moot"
awk -v p="$pc_ms" -v f="$floor_ms" 'BEGIN { exit !(p > f) }' ||
	fail "data: $wire bytes in $pc_ms ms: faster than 32 MiB/s allows, not capped"
echo "post-copy pacing charges wire bytes"
