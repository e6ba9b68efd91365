#!/usr/bin/env bash
# --copy-storage with post-copy: the destination's guest runs before its
# disk has arrived.  What it reads or writes of a chunk not there yet waits
# until the source sent it (asked for on the return path, as a page fault
# asks for a page), the rest is pushed, and no late copy undoes a write of
# the guest's.  The probe's disk workload verifies every block it wrote.
#
#  - --mode postcopy --compress lz4, a 64 MiB disk holding 48 MiB of data
#    (24 MiB random, then 24 MiB of text, which goes through lz4: DATA_Z,
#    pushed and asked for), the workload on its first 8 MiB, the push
#    capped: completes with --verify (the digest
#    of the chunks the destination held at the switch), some chunks were
#    asked for, the guest goes on verifying (a chunk read before its copy
#    came would read wrong: CORRUPT-DISK), and the 40 MiB it never touched
#    equal the source's.
#  - Hybrid with write-blocking: passes with the mirror, then post-copy.
#  - The connection cut during post-copy: both wait; --resume finishes it
#    (the destination says which chunks it still lacks).
#  - The destination killed after the switch: the source reports the VM
#    lost, never success, and does not run it; the source killed after the
#    switch: the destination reports it lost (its disk's missing chunks
#    never come).
. "$(dirname "$0")/lib.sh"
require_kvm

BLOCKS=2048			# 8 MiB of the disk, rewritten generation after generation
HOT="workload=verify,disk wss=16M period=10ms disk_blocks=$BLOCKS"
MIRRORED="guest writes are mirrored before they complete"

# A 64 MiB image with 48 MiB of random data: image NAME.
data_img() { head -c 48M /dev/urandom >"$T/$1.img"; truncate -s 64M "$T/$1.img"; }
# Bytes past the workload's 8 MiB are the same in both images (the guest never wrote there).
same_tail() {
	cmp -s <(tail -c +$((8 * 1048576 + 1)) "$1") <(tail -c +$((8 * 1048576 + 1)) "$2") ||
		fail "$1 and $2 differ past the guest's working set: a chunk was lost or overwritten"
}
# The same, its second 24 MiB text (lz4 shrinks it): text_img NAME.
text_img() {
	head -c 24M /dev/urandom >"$T/$1.img"
	python3 -c '
import random, sys
rng = random.Random(3)
w = "the disk block guest copy of and data page migration to in is".split()
out, n = [], 0
while n < 24 << 20:
    s = rng.choice(w) + " "
    out.append(s)
    n += len(s)
sys.stdout.write("".join(out)[:24 << 20])' >>"$T/$1.img"
	truncate -s 64M "$T/$1.img"
}
# NAME's source on image IMG; pid in SRC_PID.
src() {
	start_source "$1" 1 64M "$HOT" --test-hooks --disk "path=$2"
	SRC_PID=$FERRY_PID
	wait_gen "$T/$1.serial" 1 30
}

# --- pure post-copy: chunks on demand -----------------------------------------
text_img a
truncate -s 64M "$T/b.img"
src a "$T/a.img"
apid=$SRC_PID
start_dest b "unix:$T/b.mig" --copy-storage --disk "path=$T/b.img"
bpid=$FERRY_PID
gen=$(disk_gen "$T/a.serial")
"$FERRY" migrate "$T/a.ctl" "unix:$T/b.mig" --copy-storage --mode postcopy --compress lz4 \
	--postcopy-bandwidth 4M --verify --json >"$T/b.json" 2>"$T/b.err" ||
	{ cat "$T/b.json" "$T/b.err" "$T/b.log"; fail "post-copy with disks failed"; }
[ "$(json_field "$T/b.json" status)" = completed ] || fail "post-copy with disks: not completed"
json_field "$T/b.json" ram-digest | grep -qE '^[0-9a-f]{16}$' || fail "post-copy with disks: no verified digest"
owed=$(json_field "$T/b.json" disk-chunks-owed)
asked=$(json_field "$T/b.json" disk-chunk-requests)
((owed >= 768)) || { cat "$T/b.json"; fail "only ${owed:-0} disk chunks left for post-copy (want the 48 MiB)"; }
((asked > 0)) || { cat "$T/b.json"; fail "the destination's guest never asked for a disk chunk"; }
lz4=$(python3 -c 'import json, sys
print(json.load(open(sys.argv[1]))["sources"]["block"]["codecs"].get("lz4", {}).get("records", 0))' "$T/b.json")
# The 384 chunks of text, at least, went through lz4 (in post-copy: pushed or asked for).
((lz4 >= 384)) || { cat "$T/b.json"; fail "only $lz4 disk ranges went through lz4"; }
wait_exit "$apid" 10
[ "$RC" -eq 0 ] || { cat "$T/a.log"; fail "post-copy with disks: source exit status $RC"; }
wait_gen "$T/b.serial" "$gen" 30
no_corrupt "$T/a.serial" "$T/b.serial"
"$FERRY" quit "$T/b.ctl"
wait_exit "$bpid" 10
[ "$RC" -eq 0 ] || fail "post-copy with disks: the destination's VM exit status $RC"
same_tail "$T/a.img" "$T/b.img"
log "post-copy: $owed chunks left at the switch, $asked asked for by the guest, $lz4 through lz4," \
	"downtime $(json_field "$T/b.json" downtime-ms) ms"

# --- hybrid with write-blocking -----------------------------------------------
truncate -s 32M "$T/c.img" "$T/d.img"
src c "$T/c.img"
cpid=$SRC_PID
start_dest d "unix:$T/d.mig" --copy-storage --disk "path=$T/d.img"
dpid=$FERRY_PID
gen=$(disk_gen "$T/c.serial")
"$FERRY" migrate "$T/c.ctl" "unix:$T/d.mig" --copy-storage --copy-storage-mode write-blocking \
	--mode hybrid --postcopy-after 2 --bandwidth 16M --verify --json >"$T/d.json" 2>"$T/d.err" ||
	{ cat "$T/d.json" "$T/d.err" "$T/d.log"; fail "hybrid with disks failed"; }
[ "$(json_field "$T/d.json" status)" = completed ] || fail "hybrid with disks: not completed"
grep -q '"postcopy"' "$T/d.json" || { cat "$T/d.json"; fail "hybrid with disks: never went to post-copy"; }
grep -q "$MIRRORED" "$T/c.log" || { cat "$T/c.log"; fail "hybrid: the disk was never mirrored"; }
wait_exit "$cpid" 10
[ "$RC" -eq 0 ] || fail "hybrid: source exit status $RC"
wait_gen "$T/d.serial" "$gen" 30
no_corrupt "$T/c.serial" "$T/d.serial"
"$FERRY" quit "$T/d.ctl"
wait_exit "$dpid" 10
log "hybrid with write-blocking: downtime $(json_field "$T/d.json" downtime-ms) ms"

# --- the connection cut during post-copy, then --resume -------------------------
data_img e
truncate -s 64M "$T/f.img"
src e "$T/e.img"
epid=$SRC_PID
start_dest f "unix:$T/f.mig" --copy-storage --resume-timeout 60s --disk "path=$T/f.img"
fpid=$FERRY_PID
gen=$(disk_gen "$T/e.serial")
"$FERRY" migrate "$T/e.ctl" "unix:$T/f.mig" --copy-storage --mode postcopy --prepage 0 \
	--postcopy-bandwidth 2M --resume-timeout 60s --verify --json >"$T/f.json" 2>"$T/f.err" &
mpid=$!
PIDS+=("$mpid")
wait_migration "$T/e.ctl" postcopy-active 30
sleep 2
"$FERRY" call "$T/e.ctl" x-test-migration-break >/dev/null
rc=0; wait "$mpid" || rc=$?
[ "$rc" -eq 4 ] || { cat "$T/f.json"; fail "broken post-copy: ferry migrate exit $rc, want 4 (paused)"; }
for ((i = 0; i < 100; i++)); do [ -S "$T/f.mig" ] && break; sleep 0.05; done
[ -S "$T/f.mig" ] || { cat "$T/f.log"; fail "destination does not listen again"; }
"$FERRY" migrate "$T/e.ctl" "unix:$T/f.mig" --resume --json >"$T/f2.json" 2>"$T/f2.err" ||
	{ cat "$T/f2.json" "$T/f2.err" "$T/f.log"; fail "--resume did not finish the migration"; }
[ "$(json_field "$T/f2.json" status)" = completed ] || fail "resumed: not completed"
wait_exit "$epid" 10
[ "$RC" -eq 0 ] || fail "resumed: source exit $RC"
wait_gen "$T/f.serial" "$gen" 30
no_corrupt "$T/e.serial" "$T/f.serial"
"$FERRY" quit "$T/f.ctl"
wait_exit "$fpid" 10
same_tail "$T/e.img" "$T/f.img"
log "post-copy with disks cut and resumed: the disk arrived whole"

# --- the destination killed after the switch: the VM is lost ------------------
data_img g
truncate -s 64M "$T/h.img"
src g "$T/g.img"
gpid=$SRC_PID
start_dest h "unix:$T/h.mig" --copy-storage --disk "path=$T/h.img"
hpid=$FERRY_PID
"$FERRY" migrate "$T/g.ctl" "unix:$T/h.mig" --copy-storage --mode postcopy \
	--postcopy-bandwidth 2M --resume-timeout 2s --json >"$T/h.json" 2>"$T/h.err" &
mpid=$!
PIDS+=("$mpid")
wait_migration "$T/g.ctl" postcopy-active 30
kill -KILL "$hpid"
rc=0; wait "$mpid" || rc=$?
[ "$rc" -eq 4 ] || { cat "$T/h.json"; fail "destination killed: ferry migrate exit $rc, want 4"; }
wait_exit "$gpid" 30
[ "$RC" -eq 75 ] || { cat "$T/g.log"; fail "destination killed: source exit $RC, want 75"; }
grep -q "the VM is lost" "$T/g.log" || fail "destination killed: the source did not report the loss"
log "destination killed in post-copy with disks: the source reports the VM lost"

data_img k
truncate -s 64M "$T/l.img"
src k "$T/k.img"
kpid=$SRC_PID
start_dest l "unix:$T/l.mig" --copy-storage --resume-timeout 3s --disk "path=$T/l.img"
lpid=$FERRY_PID
"$FERRY" migrate "$T/k.ctl" "unix:$T/l.mig" --copy-storage --mode postcopy \
	--postcopy-bandwidth 2M --json >"$T/l.json" 2>"$T/l.err" &
mpid=$!
PIDS+=("$mpid")
wait_migration "$T/k.ctl" postcopy-active 30
kill -KILL "$kpid"
wait_exit "$lpid" 60
[ "$RC" -eq 75 ] || { cat "$T/l.log"; fail "source killed: destination exit $RC, want 75"; }
grep -q "the VM is lost" "$T/l.log" || { cat "$T/l.log"; fail "source killed: the destination did not report the loss"; }
wait "$mpid" 2>/dev/null || true
log "source killed in post-copy with disks: the destination reports the VM lost"

assert_no_sanitizer "$T"/*.log
echo "post-copy with disks: chunks on demand, hybrid with the mirror, resume, a lost side is a lost VM"
