#!/usr/bin/env bash
# Replication of a VM with a disk (docs/replication.md, "Disks"): the
# probe's disk workload (write a generation of blocks, flush, read every
# block back and check it against the generation its RAM holds) and the
# memory verify workload run while the VM is replicated with
# --copy-storage to a standby with its own image.
#
#  - Refusals: a standby with a disk but no --copy-storage, and a primary
#    replicating a disk without copy-storage (shared storage), each with
#    the reason.
#  - kill -9 of the primary, automatic failover: the standby's guest goes
#    on with RAM and disk from the same checkpoint: a disk behind its RAM
#    (epochs' blocks not applied) or ahead of it (blocks of a later epoch)
#    reads back a wrong generation: CORRUPT-DISK.
#  - kill -9 of the primary, manual failover: before the operator's
#    failover the standby's image is a checkpoint's disk, checked block by
#    block on the host (every block a whole pattern of this guest, at most
#    two adjacent generations, nothing past the working set although the
#    image started as garbage); then the guest goes on verifying there.
#  - Epoch disk ranges (READY bit 29): both ferries say the epochs carry
#    the 4 KiB ranges written, in 4 KiB multiples, never more than the
#    whole 64 KiB chunks around the same writes.  With random 4 KiB writes
#    (disk_mode=randwrite) they are a fraction of those chunks, and once
#    the primary's guest is paused and the next epochs are acknowledged,
#    the standby's image is the primary's, byte for byte.  A standby that
#    answers as an older one (--x-standby-chunks) gets whole chunks, and
#    its guest goes on from them after a kill -9 of the primary.
. "$(dirname "$0")/lib.sh"
require_kvm
command -v python3 >/dev/null || skip "python3 is not available"

# A slow host (nested KVM under TCG) stretches every epoch: REPL_SCALE=N
# multiplies the failover timeouts and the interval, as in replicate.sh.
SCALE=${REPL_SCALE:-1}
F=$((SCALE * 1000))ms FM=$((SCALE * 500))ms IV=$((SCALE * 50))ms
BLOCKS=512			# 2 MiB of the disk, rewritten generation after generation
SIZE=32M
CMD="workload=verify,disk wss=4M period=20ms disk_blocks=$BLOCKS"

nonce_of() { sed -nE 's/^probe: disk .* nonce (0x[0-9a-f]+)$/\1/p' "$1"; }

# check_image IMG NONCE: every block of the working set holds a whole
# pattern of this guest, all of at most two adjacent generations, and the
# rest of the image is zeros.  Prints the generations.
check_image() {
	python3 - "$1" "$BLOCKS" "$2" <<'PY'
import struct, sys
path, blocks, nonce = sys.argv[1], int(sys.argv[2]), int(sys.argv[3], 16)
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
    if f.read().strip(b"\0"):
        sys.exit("the image holds data past the working set")
if max(gens) - min(gens) > 1:
    sys.exit("generations on disk %s: not one checkpoint's" % sorted(gens))
print(" ".join(str(g) for g in sorted(gens)))
PY
}

# --- refusals ---------------------------------------------------------------
truncate -s $SIZE "$T/x.img"
rc=0
"$FERRY" run --kernel "$PROBE" --incoming "unix:$T/x.mig" --standby --disk "path=$T/x.img" \
	>"$T/x.log" 2>&1 || rc=$?
[ "$rc" -eq 64 ] && grep -q "shared storage is refused" "$T/x.log" ||
	{ cat "$T/x.log"; fail "a standby with a disk and no --copy-storage: exit $rc"; }

# start_pair NAME [standby args...]: a primary NAME-p on its image replicating
# (--copy-storage) to a standby NAME-s on another, which starts as garbage.
start_pair() {
	local n=$1; shift
	truncate -s $SIZE "$T/$n-p.img"
	head -c $SIZE /dev/urandom >"$T/$n-s.img"
	start_dest "$n-s" "unix:$T/$n.mig" --standby --copy-storage --disk "path=$T/$n-s.img" "$@"
	SPID=$FERRY_PID
	start_source "$n-p" 1 64M "$CMD" --disk "path=$T/$n-p.img"
	PPID_=$FERRY_PID
	# Every block written once before the initial copy.
	wait_gen "$T/$n-p.serial" 1 $((60 * SCALE))
	NONCE=$(nonce_of "$T/$n-p.serial")
	[ -n "$NONCE" ] || fail "$n: the guest printed no disk nonce"
	"$FERRY" replicate "$T/$n-p.ctl" "unix:$T/$n.mig" --copy-storage --interval $IV --verify \
		>"$T/$n.out" 2>"$T/$n.err" ||
		{ cat "$T/$n.out" "$T/$n.err" "$T/$n-s.log"; fail "$n: replicate failed"; }
	grep -q "the standby holds the initial checkpoint" "$T/$n.out" || fail "$n: no initial checkpoint"
	wait_migration_ge "$T/$n-p.ctl" epochs-acked 20 $((60 * SCALE))
	[ "$(json_field "$T/query.json" status)" = replicating ] || fail "$n: not replicating"
	# The workload writes all the time: epochs carry disk blocks.
	local dt; dt=$(json_field "$T/query.json" epoch-disk-bytes-total)
	[ "${dt:-0}" -gt 0 ] || {
		cat "$T/query.json"; "$FERRY" status "$T/$n-p.ctl"
		log "$n: the primary's guest at hb $(last_beat "$T/$n-p.serial"), disk generation" \
			"$(disk_gen "$T/$n-p.serial"); its last lines but heartbeats:"
		grep -v '^hb ' "$T/$n-p.serial" | tail -n 15
		fail "$n: no disk bytes in the epochs"
	}
	assert_no_guest "$T/$n-s.serial"
	log "$n: $(json_field "$T/query.json" epochs-acked) epochs acknowledged, $dt disk bytes in them"
	local want=ranges
	[[ " $* " == *" --x-standby-chunks "* ]] && want=chunks
	check_disk_mode "$n" "$want" "$dt"
}

# check_disk_mode NAME ranges|chunks DISK_BYTES: what the epochs of pair
# NAME carried, from the logs and the last query-migrate.
check_disk_mode() {
	local n=$1 want=$2 dt=$3 ct r
	ct=$(json_field "$T/query.json" epoch-disk-chunk-bytes-total)
	r=$(json_field "$T/query.json" epoch-disk-ranges)
	if [ "$want" = ranges ]; then
		grep -q "epochs carry the disks' blocks as the 4 KiB ranges the guest wrote" \
			"$T/$n-p.log" || { cat "$T/$n-p.log"; fail "$n: the primary logs no ranges"; }
		grep -q "standby: epochs carry the disks' blocks as the 4 KiB ranges written" \
			"$T/$n-s.log" || { cat "$T/$n-s.log"; fail "$n: the standby logs no ranges"; }
		[ "$r" = true ] || { cat "$T/query.json"; fail "$n: epoch-disk-ranges is '$r'"; }
		[ "$((dt % 4096))" -eq 0 ] && [ "$dt" -le "${ct:-0}" ] ||
			{ cat "$T/query.json"; fail "$n: $dt disk bytes with ranges, $ct as chunks"; }
	else
		grep -q "whole 64 KiB chunks: the standby takes no ranges" "$T/$n-p.log" ||
			{ cat "$T/$n-p.log"; fail "$n: the primary logs no whole chunks"; }
		[ "$r" = false ] || { cat "$T/query.json"; fail "$n: epoch-disk-ranges is '$r'"; }
		[ "$dt" -eq "${ct:-0}" ] && [ "$((dt % 65536))" -eq 0 ] ||
			{ cat "$T/query.json"; fail "$n: $dt disk bytes as chunks, $ct counted"; }
	fi
	log "$n: the epochs carried $dt disk bytes as $want; whole chunks around the same writes: $ct"
}

# A primary with a disk, replicated without copy-storage: refused, it runs on.
start_pair_refused() {
	truncate -s $SIZE "$T/r-p.img"
	start_source r-p 1 64M "$CMD" --disk "path=$T/r-p.img"
	! "$FERRY" replicate "$T/r-p.ctl" "unix:$T/r.mig" --interval $IV >"$T/r.out" 2>&1 ||
		fail "a disk was replicated as shared storage"
	grep -q "shared storage is refused" "$T/r.out" || { cat "$T/r.out"; fail "no clear refusal"; }
	assert_source_runs r-p
	"$FERRY" quit "$T/r-p.ctl"
	wait_exit "$FERRY_PID" 10
}
start_pair_refused

# After the takeover: the guest runs at NAME-s past generation GEN, its
# memory verify passes, nothing corrupt, and the standby quits cleanly.
after_takeover() {
	local n=$1 gen=$2
	wait_line "$T/$n-s.serial" '^hb [0-9]+$' $((20 * SCALE))
	# A guest that read a wrong block exits (CORRUPT-DISK), and its ferry with it.
	"$FERRY" status "$T/$n-s.ctl" 2>/dev/null | grep -q '^status: *running' ||
		{ no_corrupt "$T/$n-s.serial"; fail "$n: standby not running"; }
	# Two full generations there: each read back every block it wrote.
	wait_gen "$T/$n-s.serial" "$((gen + 1))" $((60 * SCALE))
	wait_line "$T/$n-s.serial" "verify pass" $((30 * SCALE))
	no_corrupt "$T/$n-p.serial" "$T/$n-s.serial"
	"$FERRY" quit "$T/$n-s.ctl"
	wait_exit "$SPID" 10
	[ "$RC" -eq 0 ] || fail "$n: standby exit status $RC"
	assert_no_sanitizer "$T/$n-s.log" "$T/$n-p.log"
}

# --- kill -9, automatic failover ----------------------------------------------
start_pair auto --failover-timeout $F
sleep "$((RANDOM % 2)).$((RANDOM % 10))"
before=$(disk_gen "$T/auto-p.serial")
kill -9 "$PPID_"
wait "$PPID_" 2>/dev/null || true
after_takeover auto "$before"
grep -q "taking over from the checkpoint of epoch" "$T/auto-s.log" || fail "auto: no takeover logged"
log "auto: primary killed at disk generation $before; the standby's guest reached $(disk_gen "$T/auto-s.serial")"

# --- kill -9, manual failover: the image is a checkpoint's ----------------------
start_pair man --failover manual --failover-timeout $FM
kill -9 "$PPID_"
wait "$PPID_" 2>/dev/null || true
sleep $((2 * SCALE))
assert_no_guest "$T/man-s.serial"
cp "$T/man-s.img" "$T/man-snap.img"
gens=$(check_image "$T/man-snap.img" "$NONCE") ||
	fail "man: the standby's image is not a checkpoint's disk: $gens"
"$FERRY" failover "$T/man-s.ctl" || fail "man: ferry failover refused"
after_takeover man "${gens##* }"
log "man: the standby's image held generations $gens; its guest went on to $(disk_gen "$T/man-s.serial")"
# --- random 4 KiB writes: ranges carry a fraction of the chunks; images agree -----
rand_ranges() {
	local n=rand acked dt ct
	truncate -s $SIZE "$T/$n-p.img"
	head -c $SIZE /dev/urandom >"$T/$n-s.img"
	start_dest "$n-s" "unix:$T/$n.mig" --standby --copy-storage --disk "path=$T/$n-s.img" \
		--failover manual --failover-timeout $FM
	SPID=$FERRY_PID
	# A flush after every write: a few hundred writes an epoch, over all 512 chunks.
	start_source "$n-p" 1 64M "workload=verify,disk wss=4M period=20ms disk_mode=randwrite disk_blocks=8192 disk_flush=1" \
		--disk "path=$T/$n-p.img"
	PPID_=$FERRY_PID
	"$FERRY" replicate "$T/$n-p.ctl" "unix:$T/$n.mig" --copy-storage --interval $IV \
		>"$T/$n.out" 2>"$T/$n.err" ||
		{ cat "$T/$n.out" "$T/$n.err" "$T/$n-s.log"; fail "$n: replicate failed"; }
	wait_migration_ge "$T/$n-p.ctl" epochs-acked 20 $((60 * SCALE))
	dt=$(json_field "$T/query.json" epoch-disk-bytes-total)
	ct=$(json_field "$T/query.json" epoch-disk-chunk-bytes-total)
	[ "${dt:-0}" -gt 0 ] || { cat "$T/query.json"; fail "$n: no disk bytes in the epochs"; }
	check_disk_mode "$n" ranges "$dt"
	[ "$ct" -ge $((2 * dt)) ] ||
		{ cat "$T/query.json"; fail "$n: ranges carried $dt bytes, whole chunks $ct"; }
	# Paused, the guest writes no more: two epochs later the standby's image is the primary's.
	"$FERRY" pause "$T/$n-p.ctl" || fail "$n: pause refused"
	query_migrate "$T/$n-p.ctl"
	acked=$(json_field "$T/query.json" epochs-acked)
	wait_migration_ge "$T/$n-p.ctl" epochs-acked $((acked + 3)) $((30 * SCALE))
	cmp "$T/$n-p.img" "$T/$n-s.img" ||
		fail "$n: the standby's image is not the paused primary's"
	assert_no_guest "$T/$n-s.serial"
	"$FERRY" quit "$T/$n-p.ctl"
	wait_exit "$PPID_" 10
	wait_exit "$SPID" 10
	[ "$RC" -eq 0 ] || { cat "$T/$n-s.log"; fail "$n: standby exit status $RC after ABORT"; }
	assert_no_sanitizer "$T/$n-s.log" "$T/$n-p.log"
	log "$n: random 4 KiB writes: $dt disk bytes as ranges, $ct as whole chunks ($((ct / dt))x); images equal"
}
rand_ranges

# --- a standby that takes whole chunks only (as one older than bit 29) -----------
start_pair old --failover-timeout $F --test-hooks --x-standby-chunks
grep -q "standby: epochs carry the disks' blocks as whole 64 KiB chunks" "$T/old-s.log" ||
	{ cat "$T/old-s.log"; fail "old: the standby logs no whole chunks"; }
before=$(disk_gen "$T/old-p.serial")
kill -9 "$PPID_"
wait "$PPID_" 2>/dev/null || true
after_takeover old "$before"
log "old: whole chunks; primary killed at disk generation $before, the standby's guest reached $(disk_gen "$T/old-s.serial")"
echo "replication with a disk: refusals, failover after kill -9 (auto and manual), image a checkpoint's, epoch disk ranges and whole chunks"
