#!/usr/bin/env bash
# The probe's disk workload across migrations, with --verify (RAM and
# device state): pre-copy, post-copy, hybrid (switched to post-copy), then
# a ping-pong of pre-copies over unix and tcp.  Every destination gets the
# same --disk path= (shared storage).  After each hop the source exited 0
# without running on (its last heartbeat is before the destination's
# first), the destination's serial shows disk generations past the ones
# before the hop, and nobody printed CORRUPT or CORRUPT-DISK.  At the end
# the guest is stopped and every block of the image is checked on the host:
# (block, generation, nonce) and the rest of the pattern (guest/README.md).
. "$(dirname "$0")/lib.sh"
require_kvm
command -v python3 >/dev/null || skip "python3 is not available"

BLOCKS=256			# 1 MiB of the disk: a generation every few hundred ms
PINGPONG=${PINGPONG_HOPS:-6}
BUDGET=${DISK_WORKLOAD_BUDGET:-240}	# seconds for all the hops together
DISK=$T/disk.img
truncate -s 16M "$DISK"
CMDLINE="workload=verify,disk wss=16M period=20ms disk_blocks=$BLOCKS"

# The last disk generation FILE reports (0: none yet).

# Wait until FILE reports a disk generation above N: wait_gen FILE N SECS.

start_source vm0 2 128M "$CMDLINE" --disk "path=$DISK"
cur=vm0
pid=$FERRY_PID
wait_gen "$T/vm0.serial" 1 30
nonce=$(sed -nE 's/^probe: disk .* nonce (0x[0-9a-f]+)$/\1/p' "$T/vm0.serial")
[ -n "$nonce" ] || fail "the guest printed no disk nonce"
grep -q "blocks $BLOCKS of 4 KiB" "$T/vm0.serial" || fail "the guest did not take disk_blocks=$BLOCKS"
gen=$(disk_gen "$T/vm0.serial")

# hop NAME URI MIGRATE-ARGS...: move the guest from $cur to a new ferry NAME.
hop=0
hop() {
	local next=$1 uri=$2 npid src_last dst_first; shift 2
	hop=$((hop + 1))
	start_dest "$next" "$uri" --disk "path=$DISK"
	npid=$FERRY_PID
	uri=$DEST_URI
	"$FERRY" migrate "$T/$cur.ctl" "$uri" --verify --json "$@" >"$T/$next.json" 2>"$T/$next.err" ||
		{ cat "$T/$next.json" "$T/$next.err" "$T/$next.log"; fail "hop $hop ($cur -> $next $*) failed"; }
	[ "$(json_field "$T/$next.json" status)" = completed ] || fail "hop $hop: not completed"
	json_field "$T/$next.json" state-digest | grep -qE '^[0-9a-f]{16}$' ||
		{ cat "$T/$next.json"; fail "hop $hop: no verified device state digest"; }
	wait_exit "$pid" 10
	[ "$RC" -eq 0 ] || { cat "$T/$cur.log"; fail "hop $hop: source $cur exit status $RC"; }
	# The guest ran here after the last beat there: never on both sides.
	wait_line "$T/$next.serial" '^hb ' 10
	src_last=$(last_beat "$T/$cur.serial")
	dst_first=$(sed -nE 's/^hb ([0-9]+)$/\1/p' "$T/$next.serial" | head -n1)
	((src_last < dst_first)) || fail "hop $hop: $cur beat $src_last after $next began at $dst_first"
	wait_gen "$T/$next.serial" "$gen" 30
	! grep -qE '^CORRUPT' "$T/$cur.serial" "$T/$next.serial" ||
		{ grep -hE '^CORRUPT' "$T/$cur.serial" "$T/$next.serial"; fail "hop $hop: corruption"; }
	log "hop $hop: $cur -> $next ${uri%%:*} $*: downtime $(json_field "$T/$next.json" downtime-ms) ms," \
		"disk generation $gen -> $(disk_gen "$T/$next.serial")," \
		"state digest $(json_field "$T/$next.json" state-digest)"
	gen=$(disk_gen "$T/$next.serial")
	cur=$next
	pid=$npid
	((SECONDS < BUDGET)) || fail "hop $hop: past the ${BUDGET}s budget"
}

hop pre "unix:$T/pre.mig"
hop post "unix:$T/post.mig" --mode postcopy
grep -q '"postcopy"' "$T/post.json" || fail "post-copy hop reported no post-copy"
hop hybrid "unix:$T/hybrid.mig" --mode hybrid --postcopy-after 1
grep -q '"postcopy"' "$T/hybrid.json" || fail "hybrid hop never switched to post-copy"
for ((i = 1; i <= PINGPONG; i++)); do
	if ((i % 2)); then uri=unix:$T/pp$i.mig; else uri=tcp:127.0.0.1:$(random_port); fi
	hop "pp$i" "$uri"
done

# Stop the guest and read the image behind it.
"$FERRY" quit "$T/$cur.ctl"
wait_exit "$pid" 10
[ "$RC" -eq 0 ] || fail "the last VM exit status $RC"
! grep -qE '^CORRUPT' "$T"/*.serial || fail "corruption"
python3 - "$DISK" "$BLOCKS" "$nonce" "$gen" <<'PY' || fail "the image does not hold the guest's pattern"
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
# A generation writes every block before the next begins: at most two seen,
# consecutive, the newer at least the last one the guest reported done.
if len(gens) > 2 or max(gens) - min(gens) > 1 or max(gens) < last:
    sys.exit("generations on disk %s, last reported done %d" % (sorted(gens), last))
print("# image: %d blocks, generations %s" % (blocks, sorted(gens)))
PY
assert_no_sanitizer "$T"/*.log
echo "disk workload: $hop hops with --verify (pre-copy, post-copy, hybrid, ping-pong), image intact"
