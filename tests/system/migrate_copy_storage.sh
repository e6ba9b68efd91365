#!/usr/bin/env bash
# Live disk migration (--copy-storage): the probe's disk workload writes and
# verifies during every hop, and each destination has its own image.
#
#  - A -> B -> A with --copy-storage --verify (B -> A with --compress lz4:
#    block data through the codec where it pays): each completes, the source
#    exits 0, the destination's guest goes on verifying (a block the copy
#    missed would read back wrong: CORRUPT-DISK), and the final image holds
#    the guest's pattern, checked block by block on the host.
#  - The image B starts with garbage in it: blocks the source has as holes
#    must be zeroed there, or --verify's disk digest differs.
#  - Refusals, each with the source running on and holding its lock: a
#    target of another size, a destination not told to expect disks, a
#    destination expecting disks from a source that does not copy them.
#  - Failures: the destination killed in the first pass and in a later
#    pass, and the connection cut: the source runs on, no write is lost
#    (the guest goes on verifying), and a second ferry on the source's
#    image is still refused (the lock stayed).
. "$(dirname "$0")/lib.sh"
require_kvm
command -v python3 >/dev/null || skip "python3 is not available"

BLOCKS=512			# 2 MiB of the disk, rewritten generation after generation
SIZE=32M
CMD="workload=verify,disk wss=4M period=20ms disk_blocks=$BLOCKS"
A=$T/a.img
B=$T/b.img
truncate -s $SIZE "$A"
# B holds stale data everywhere: the copy must make it equal A, holes too.
head -c 32M /dev/urandom >"$B"


# The source's image is still locked by it: `ferry run` on IMG exits 69.
assert_locked() {
	local img=$1 rc=0
	timeout 30 "$FERRY" run --kernel "$PROBE" --cmdline "workload=disk" \
		--serial "file:$T/probe-lock.serial" --disk "path=$img" >"$T/probe-lock.log" 2>&1 || rc=$?
	[ "$rc" -eq 69 ] || { cat "$T/probe-lock.log"; fail "a second ferry on $img exited $rc, not 69"; }
}

start_source a 1 64M "$CMD" --test-hooks --disk "path=$A"
cur=a
pid=$FERRY_PID
wait_gen "$T/a.serial" 1 30
nonce=$(sed -nE 's/^probe: disk .* nonce (0x[0-9a-f]+)$/\1/p' "$T/a.serial")
[ -n "$nonce" ] || fail "the guest printed no disk nonce"

# --- refusals: nothing moves, the source runs on --------------------------
truncate -s 16M "$T/small.img"
start_dest small "unix:$T/small.mig" --copy-storage --disk "path=$T/small.img"
dpid=$FERRY_PID
! "$FERRY" migrate "$T/a.ctl" "unix:$T/small.mig" --copy-storage >"$T/small.out" 2>&1 ||
	fail "a migration to an image of another size completed"
wait_exit "$dpid" 30
grep -q "disk 0 is 33554432 bytes at the source but 16777216 here" "$T/small.log" ||
	{ cat "$T/small.log"; fail "the destination did not say the sizes differ"; }
assert_no_guest "$T/small.serial"

start_dest noexp "unix:$T/noexp.mig" --disk "path=$B"
dpid=$FERRY_PID
! "$FERRY" migrate "$T/a.ctl" "unix:$T/noexp.mig" --copy-storage >"$T/noexp.out" 2>&1 ||
	fail "a destination that does not expect disks took them"
wait_exit "$dpid" 30
grep -q "does not accept" "$T/noexp.log" || { cat "$T/noexp.log"; fail "no clear refusal of the disks"; }

start_dest nocopy "unix:$T/nocopy.mig" --copy-storage --disk "path=$B"
dpid=$FERRY_PID
! "$FERRY" migrate "$T/a.ctl" "unix:$T/nocopy.mig" >"$T/nocopy.out" 2>&1 ||
	fail "a destination expecting its disks ran without them"
wait_exit "$dpid" 30
grep -q "disk 0 was not copied" "$T/nocopy.log" || { cat "$T/nocopy.log"; fail "no clear 'not copied'"; }
assert_no_guest "$T/nocopy.serial"
assert_source_runs a
assert_locked "$A"

# The block source's bytes on the wire so far (query-migrate's sources.block).
block_sent() {
	"$FERRY" call "$1" query-migrate 2>/dev/null | python3 -c '
import json, sys
try:
    print(json.load(sys.stdin).get("sources", {}).get("block", {}).get("sent-bytes", 0))
except ValueError:
    print(0)'
}
# Wait until the block source sent more than N bytes: wait_block CTL N SECS.
wait_block() {
	local end=$((SECONDS + $3))
	while ((SECONDS <= end)); do
		(($(block_sent "$1") > $2)) && return 0
		sleep 0.05
	done
	fail "$1: the block source sent no more than $2 bytes in ${3}s"
}

# --- failures: kill the destination in pass 1 and later, cut the link ------
# kill_dest NAME WHEN: WHEN is "first" (blocks moving, pass 1) or "later" (pass >= 3).
kill_dest() {
	local name=$1 when=$2 rc=0 mpid
	start_dest "$name" "unix:$T/$name.mig" --copy-storage --disk "path=$B"
	dpid=$FERRY_PID
	# 1 MiB/s: the disk's first pass takes seconds, and the guest dirties
	# RAM and blocks faster than that: it never converges by itself.
	"$FERRY" migrate "$T/a.ctl" "unix:$T/$name.mig" --copy-storage --bandwidth 1M \
		--json >"$T/$name.json" 2>"$T/$name.err" &
	mpid=$!
	if [ "$when" = first ]; then
		# Past HELLO and the holes: DATA of the first pass is moving.
		wait_block "$T/a.ctl" 262144 60
	else
		wait_migration_ge "$T/a.ctl" iteration 3 60
	fi
	kill -KILL "$dpid"
	wait "$mpid" || rc=$?
	[ "$rc" -ne 0 ] || fail "$name: the migration completed after its destination was killed"
	assert_source_runs a
	no_corrupt "$T/a.serial"
	assert_locked "$A"
	log "$name: destination killed ($when pass), the source runs on with its lock"
}
kill_dest kfirst first
kill_dest klater later

start_dest cut "unix:$T/cut.mig" --copy-storage --disk "path=$B"
dpid=$FERRY_PID
"$FERRY" migrate "$T/a.ctl" "unix:$T/cut.mig" --copy-storage --bandwidth 1M \
	>"$T/cut.out" 2>&1 &
mpid=$!
wait_block "$T/a.ctl" 262144 60
"$FERRY" call "$T/a.ctl" x-test-migration-break >/dev/null 2>&1 ||
	{ kill -KILL "$dpid"; log "no x-test-migration-break hook: killed the destination instead"; }
rc=0; wait "$mpid" || rc=$?
[ "$rc" -ne 0 ] || fail "cut: the migration completed over a cut connection"
assert_source_runs a
assert_locked "$A"
kill -KILL "$dpid" 2>/dev/null || true
wait "$dpid" 2>/dev/null || true
assert_no_guest "$T/cut.serial"

# --- A -> B -> A, copying the disk with --verify --------------------------
gen=$(disk_gen "$T/a.serial")
# hop NEXT IMAGE [MIGRATE OPTIONS...]
hop() {
	local next=$1 img=$2 uri="unix:$T/$1.mig" npid
	shift 2
	start_dest "$next" "$uri" --copy-storage --disk "path=$img"
	npid=$FERRY_PID
	"$FERRY" migrate "$T/$cur.ctl" "$uri" --copy-storage --verify --json "$@" \
		>"$T/$next.json" 2>"$T/$next.err" ||
		{ cat "$T/$next.json" "$T/$next.err" "$T/$next.log"; fail "$cur -> $next failed"; }
	[ "$(json_field "$T/$next.json" status)" = completed ] || fail "$cur -> $next: not completed"
	wait_exit "$pid" 10
	[ "$RC" -eq 0 ] || { cat "$T/$cur.log"; fail "source $cur exit status $RC"; }
	wait_gen "$T/$next.serial" "$gen" 30
	no_corrupt "$T/$cur.serial" "$T/$next.serial"
	block=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["sources"]["block"]["sent-bytes"])' \
		"$T/$next.json" 2>/dev/null || echo 0)
	((block > 0)) || { cat "$T/$next.json"; fail "$cur -> $next: no block bytes reported"; }
	log "$cur -> $next: downtime $(json_field "$T/$next.json" downtime-ms) ms, block bytes $block," \
		"disk generation $gen -> $(disk_gen "$T/$next.serial")"
	gen=$(disk_gen "$T/$next.serial")
	cur=$next
	pid=$npid
}
hop b "$B"
# Back through lz4 (DATA_Z where a range shrinks; the guest's blocks do not).
hop a2 "$A" --compress lz4
codec=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["sources"]["block"]["codec"])' "$T/a2.json")
[ "$codec" = lz4 ] || { cat "$T/a2.json"; fail "b -> a2: sources.block.codec is $codec, not lz4"; }

"$FERRY" quit "$T/$cur.ctl"
wait_exit "$pid" 10
[ "$RC" -eq 0 ] || fail "the last VM exit status $RC"
no_corrupt "$T"/*.serial
python3 - "$A" "$BLOCKS" "$nonce" "$gen" <<'PY' || fail "the image does not hold the guest's pattern"
import struct, sys
path, blocks, nonce, last = sys.argv[1], int(sys.argv[2]), int(sys.argv[3], 16), int(sys.argv[4])
M = (1 << 64) - 1
G = 0x9e3779b97f4a7c15
def mix64(z):
    z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & M
    z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & M
    return z ^ (z >> 31)
gens = set()
with open(path, "rb") as f:
    for b in range(blocks):
        w = struct.unpack("<512Q", f.read(4096))
        blk, gen, n = w[:3]
        if (blk, n) != (b, nonce) or gen < 1:
            sys.exit("block %d holds (%d, %d, 0x%x)" % (b, blk, gen, n))
        v = mix64(((b << 24) ^ gen ^ (nonce * G)) & M)
        for j in range(3, 512):
            if w[j] != v:
                sys.exit("block %d generation %d: word %d is 0x%x, want 0x%x" % (b, gen, j, w[j], v))
            v = (v + G) & M
        gens.add(gen)
    rest = f.read()
    if rest.strip(b"\0"):
        sys.exit("the image holds data past the working set")
if len(gens) > 2 or max(gens) - min(gens) > 1 or max(gens) < last:
    sys.exit("generations on disk %s, last reported done %d" % (sorted(gens), last))
print("# image: %d blocks, generations %s" % (blocks, sorted(gens)))
PY
cmp -s "$A" "$B" && log "(B equals A: the guest wrote nothing after the last hop)"
assert_no_sanitizer "$T"/*.log
echo "copy-storage: refusals, killed and cut destinations, A -> B -> A with --verify, image intact"
