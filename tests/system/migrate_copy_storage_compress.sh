#!/usr/bin/env bash
# --copy-storage with --compress: block data goes through the migration's
# codec (DATA_Z) where it pays.  The source's 32 MiB image has, per 64 KiB
# range, a fixed mix like the bench's storage-copy-mixed-1g: holes,
# allocated zeros, English-like text and random bytes.  The guest does not
# write the disk (RAM only), so the counts are exact.
#
#  - A -> B with --compress lz4 --verify: completes, sources.block says
#    codec lz4, the text ranges went as lz4 in under 70 % of their bytes,
#    the random ones as raw, and the block source's bytes on the wire are
#    under 85 % of the raw size of the ranges that hold data (what DATA
#    would carry; half of them are random).
#  - B -> C with --compress zstd --verify: the same with zstd.
#  - C -> D with --compress delta: no codec for blocks (delta's fallback,
#    raw): every data range goes as DATA, the wire carries all of it.
#  After the guest stopped, every image equals A.
. "$(dirname "$0")/lib.sh"
require_kvm
command -v python3 >/dev/null || skip "python3 is not available"

SIZE=$((32 << 20))
A=$T/a.img
# Per range k (512 of them), by k % 10: 0-1 a hole, 2-3 allocated zeros,
# 4-6 text, 7-9 random.  Prints the bytes of the ranges that hold data.
DATA=$(python3 - "$A" "$SIZE" <<'PY'
import os, random, sys
path, size = sys.argv[1], int(sys.argv[2])
R = 65536
rng = random.Random(11)
words = ("the of and to in is that for it as was with be by on not this are or from at which "
         "but have an had they you were their one all we can disk block guest migration copy "
         "data file system page memory network time between through").split()
def text(n):
    out, col, have = [], 0, 0
    while have < n:
        w = rng.choice(words) + ("\n" if col > 72 else " ")
        out.append(w)
        have += len(w)
        col = 0 if col > 72 else col + len(w)
    return "".join(out).encode()[:n]
data = 0
with open(path, "wb") as f:
    f.truncate(size)
    for k in range(size // R):
        kind = k % 10
        if kind < 2:
            continue
        f.seek(k * R)
        if kind < 4:
            f.write(bytes(R))
        elif kind < 7:
            f.write(text(R)); data += R
        else:
            f.write(os.urandom(R)); data += R
print(data)
PY
)
[ -n "$DATA" ] || fail "cannot write the image"

# FIELD of sources.block in a --json reply: block FILE PATH.TO.FIELD
block() {
	python3 -c '
import json, sys
v = json.load(open(sys.argv[1]))["sources"]["block"]
for k in sys.argv[2].split("."):
    v = v.get(k, 0) if isinstance(v, dict) else 0
print(v)' "$1" "$2"
}

start_source a 1 64M "workload=verify wss=4M period=20ms" --disk "path=$A"
cur=a
pid=$FERRY_PID
# hop NEXT CODEC: migrate the VM from $cur to NEXT with --compress CODEC.
hop() {
	local next=$1 codec=$2 uri="unix:$T/$1.mig" npid
	truncate -s $SIZE "$T/$next.img"
	start_dest "$next" "$uri" --copy-storage --disk "path=$T/$next.img"
	npid=$FERRY_PID
	"$FERRY" migrate "$T/$cur.ctl" "$uri" --copy-storage --compress "$codec" --verify --json \
		>"$T/$next.json" 2>"$T/$next.err" ||
		{ cat "$T/$next.json" "$T/$next.err" "$T/$next.log"; fail "$cur -> $next failed"; }
	[ "$(json_field "$T/$next.json" status)" = completed ] || fail "$cur -> $next: not completed"
	wait_exit "$pid" 10
	[ "$RC" -eq 0 ] || { cat "$T/$cur.log"; fail "source $cur exit status $RC"; }
	wait_line "$T/$next.serial" '^hb ' 10
	sent=$(block "$T/$next.json" sent-bytes)
	log "$cur -> $next --compress $codec: block codec $(block "$T/$next.json" codec)," \
		"$sent block bytes on the wire for $DATA bytes of data ranges"
	cur=$next
	pid=$npid
}

for z in lz4 zstd; do
	hop "$z" "$z"
	j=$T/$z.json
	[ "$(block "$j" codec)" = "$z" ] || { cat "$j"; fail "$z: sources.block.codec is not $z"; }
	zin=$(block "$j" "codecs.$z.bytes-in")
	zout=$(block "$j" "codecs.$z.bytes-out")
	raw=$(block "$j" codecs.raw.records)
	# The 153 text ranges (10 MiB) went encoded, in under 70 % of their bytes
	# (lz4 makes about 55 % of this text, zstd about 35 %).
	((zin == 153 * 65536)) || { cat "$j"; fail "$z: $zin bytes encoded, want the text's $((153 * 65536))"; }
	((zout * 10 < zin * 7)) || fail "$z: $zin bytes encoded into $zout"
	# The 153 random ranges did not shrink: DATA.
	((raw == 153)) || fail "$z: $raw ranges went raw, want the 153 random ones"
	((sent < DATA * 85 / 100)) || fail "$z: $sent block bytes on the wire for $DATA bytes of data"
done

# delta: blocks get its fallback, raw.
hop delta delta
j=$T/delta.json
[ "$(block "$j" codec)" = none ] || { cat "$j"; fail "delta: sources.block.codec is not none"; }
((sent >= DATA)) || fail "delta: $sent block bytes on the wire for $DATA bytes of data"
((sent < DATA + DATA / 50)) || fail "delta: $sent block bytes on the wire for $DATA bytes of data"

"$FERRY" quit "$T/$cur.ctl"
wait_exit "$pid" 10
[ "$RC" -eq 0 ] || fail "the last VM exit status $RC"
for img in lz4 zstd delta; do
	cmp -s "$A" "$T/$img.img" || fail "the image copied to $img differs from the source's"
done
assert_no_sanitizer "$T"/*.log
echo "copy-storage --compress: lz4 and zstd carry fewer bytes than the data, delta sends it raw, images equal"
