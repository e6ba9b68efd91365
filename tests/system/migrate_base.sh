#!/usr/bin/env bash
# Only what changed (ISR): A -> B with --keep-base leaves a save file of
# the VM on A; B -> A with --base that file sends only the pages the guest
# changed in between (its verify working set, ~5% of RAM), where the way
# there sent all of RAM (filled with random data).  --verify both ways.
# Then a base of another RAM size: ignored with a warning, all pages travel.
. "$(dirname "$0")/lib.sh"
require_kvm

start_source a0 1 128M "workload=verify wss=6M fill=random period=20ms"
pid=$FERRY_PID
start_dest b0 "unix:$T/b0.mig"
bpid=$FERRY_PID
"$FERRY" migrate "$T/a0.ctl" "$DEST_URI" --verify --keep-base "$T/base.sav" --json \
	>"$T/r1.json" 2>&1 || { cat "$T/r1.json" "$T/b0.log"; fail "A -> B failed"; }
wait_exit "$pid" 30
[ "$RC" -eq 0 ] || fail "A: exit status $RC"
[ -f "$T/base.sav" ] || fail "no base file was kept"
grep -q "kept the VM as it left" "$T/a0.log" || fail "A did not say it kept the base"
wait_line "$T/b0.serial" '^hb ' 10
# The guest runs on at B for a while, rewriting its working set.
first=$(last_beat "$T/b0.serial")
wait_beats "$T/b0.serial" "$((first + 10))"

start_dest a1 "unix:$T/a1.mig" --base "$T/base.sav"
apid=$FERRY_PID
"$FERRY" migrate "$T/b0.ctl" "$DEST_URI" --verify --json >"$T/r2.json" 2>&1 ||
	{ cat "$T/r2.json" "$T/a1.log"; fail "B -> A with the base failed"; }
wait_exit "$bpid" 30
[ "$RC" -eq 0 ] || fail "B: exit status $RC"
wait_line "$T/a1.serial" '^hb ' 10
there=$(json_field "$T/r1.json" data-processed)
back=$(json_field "$T/r2.json" data-processed)
base_pages=$(json_field "$T/r2.json" base-pages)
log "A -> B: $there bytes; B -> A with the base: $back bytes, $base_pages pages from the base"
[ "$there" -gt $((100 << 20)) ] || fail "the way there sent only $there bytes: RAM was not filled"
[ "$back" -lt $((there / 4)) ] || fail "the way back sent $back bytes, not well below $there"
[ "$base_pages" -gt $((3 * 32768 / 4)) ] || fail "only $base_pages pages came from the base"
grep -q "digest sent" "$T/a1.log" || fail "A did not load its base"
first=$(last_beat "$T/a1.serial")
wait_beats "$T/a1.serial" "$((first + 10))"

# A base of another VM (64 MiB): ignored with a warning; the migration sends everything.
start_source small 1 64M "workload=idle"
spid=$FERRY_PID
"$FERRY" save "$T/small.ctl" "$T/small.sav" || fail "cannot save the small VM"
wait_exit "$spid" 30
start_dest b1 "unix:$T/b1.mig" --base "$T/small.sav"
b1pid=$FERRY_PID
"$FERRY" migrate "$T/a1.ctl" "$DEST_URI" --verify --json >"$T/r3.json" 2>&1 ||
	{ cat "$T/r3.json" "$T/b1.log"; fail "A -> B with a base of another VM failed"; }
wait_exit "$apid" 30
grep -q "is not of this VM" "$T/b1.log" || fail "the misfit base was not named"
all=$(json_field "$T/r3.json" data-processed)
[ "$all" -gt $((100 << 20)) ] || fail "with a misfit base only $all bytes were sent"
wait_line "$T/b1.serial" '^hb ' 10
"$FERRY" quit "$T/b1.ctl"
wait_exit "$b1pid" 10
! grep -q CORRUPT "$T"/*.serial || fail "corruption"
assert_no_sanitizer "$T"/*.log
echo "A -> B -> A: $there bytes there, $back back"
