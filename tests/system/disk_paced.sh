#!/usr/bin/env bash
# The probe's paced disk workload (disk_rate=): the verify mode writes at
# the asked rate, steadily, and still catches a lost write.
#
#  - disk_rate=8M and 2M for 3 s each: the guest's own count of blocks
#    written gives a rate within 10 % of the target, several generations
#    went by (every block read back and checked before it was rewritten),
#    and the writes reached the image with the guest's pattern.
#  - A lost write: the host puts back an older copy of the working set
#    while the guest runs (as a migration that dropped acknowledged writes
#    would leave the disk); the guest's next sweep reads an old generation
#    and stops with CORRUPT-DISK (exit 1).
#  - Refusals: a rate under one block a second, and disk_rate= with a
#    throughput mode, each with exit 2 and a reason.
# serial: the rate is timed by the guest; a loaded host makes it wander
. "$(dirname "$0")/lib.sh"
require_kvm
command -v python3 >/dev/null || skip "python3 is not available"

IMG=$T/disk.img
truncate -s 32M "$IMG"
BLOCKS=512			# 2 MiB: a generation every 0.25 s at 8M, 1 s at 2M

# paced NAME RATE: 3 s at RATE; MIBS (x10) and GENS from its report.
paced() {
	local name=$1 rate=$2 rc=0 line
	timeout 60 "$FERRY" run --kernel "$PROBE" --memory 256M --disk "path=$IMG" \
		--cmdline "workload=idle,disk disk_rate=$rate disk_blocks=$BLOCKS period=100ms seconds=3" \
		--serial "file:$T/$name.serial" >"$T/$name.log" 2>&1 || rc=$?
	[ "$rc" -eq 0 ] || { cat "$T/$name.log" "$T/$name.serial"; fail "$name: exit status $rc"; }
	no_corrupt "$T/$name.serial"
	grep -q "^probe: disk paced at $(numfmt --from=iec "$rate") bytes/s" "$T/$name.serial" ||
		{ cat "$T/$name.serial"; fail "$name: the guest does not say it is paced"; }
	line=$(grep '^probe: disk paced [0-9]* blocks written' "$T/$name.serial") ||
		{ cat "$T/$name.serial"; fail "$name: no paced report"; }
	[[ $line =~ ^probe:\ disk\ paced\ ([0-9]+)\ blocks\ written\ in\ ([0-9]+)\ ms:\ ([0-9]+)\.([0-9])\ MiB/s ]] ||
		fail "$name: malformed: $line"
	WRITTEN=${BASH_REMATCH[1]} MS=${BASH_REMATCH[2]} MIBS=$((BASH_REMATCH[3] * 10 + BASH_REMATCH[4]))
	GENS=$(sed -nE 's/^probe: disk ([0-9]+) generations, .*/\1/p' "$T/$name.serial")
	log "$name: $line; $GENS generations"
	[ "$MS" -ge 2500 ] && [ "$MS" -le 3500 ] || fail "$name: timed over $MS ms, want about 3000"
}

# within MIBS_X10 TARGET_MIB: fail unless within 10 % of the target.
within() {
	local got=$1 want=$(($2 * 10))
	((got * 10 >= want * 9 && got * 10 <= want * 11)) ||
		fail "measured $((got / 10)).$((got % 10)) MiB/s, want $2 MiB/s +-10 %"
}

paced fast 8M
within "$MIBS" 8
# The report's rate is the guest's count over its time: check the sum too.
((WRITTEN * 4096 * 1000 / MS >= 8 * 1048576 * 9 / 10)) || fail "fast: $WRITTEN blocks in $MS ms"
((GENS >= 8)) || fail "fast: only $GENS generations at 8 MiB/s over 2 MiB"
paced slow 2M
within "$MIBS" 2
((GENS >= 2)) || fail "slow: only $GENS generations at 2 MiB/s over 2 MiB"

# The image holds the pattern of one run (word 0 = block, word 1 = its
# generation, word 2 = the run's nonce) in every block of the working set.
nonce=$(sed -nE 's/^probe: disk .* nonce 0x([0-9a-f]+)$/\1/p' "$T/slow.serial")
python3 - "$IMG" "$BLOCKS" "$nonce" <<'PY' || fail "the image does not hold the guest's writes"
import struct, sys
img, blocks, nonce = sys.argv[1], int(sys.argv[2]), int(sys.argv[3], 16)
with open(img, "rb") as f:
    for b in range(blocks):
        w0, gen, n = struct.unpack("<3Q", f.read(4096)[:24])
        if w0 != b or n != nonce or gen < 1:
            sys.exit(f"block {b}: words {w0:#x} {gen:#x} {n:#x}")
PY

# --- a lost write is caught ---------------------------------------------------
# The guest writes at 4 MiB/s (2 MiB: a generation every 0.5 s); after its
# first generations the host saves the working set, waits two generations
# and puts the old copy back: the next sweep must find an old generation.
rc=0
"$FERRY" run --kernel "$PROBE" --memory 256M --disk "path=$IMG" \
	--cmdline "workload=idle,disk disk_rate=4M disk_blocks=$BLOCKS period=100ms seconds=30" \
	--serial "file:$T/lost.serial" >"$T/lost.log" 2>&1 &
pid=$!
PIDS+=("$pid")
wait_line "$T/lost.serial" '^probe: running' 30
wait_gen "$T/lost.serial" 1 30
head -c $((BLOCKS * 4096)) "$IMG" >"$T/old.bin"
g=$(disk_gen "$T/lost.serial")
wait_gen "$T/lost.serial" $((g + 2)) 30
dd if="$T/old.bin" of="$IMG" conv=notrunc status=none
wait_exit "$pid" 20
[ "$RC" -eq 1 ] || { tail -n 5 "$T/lost.serial"; fail "the guest exited $RC after losing writes, want 1"; }
grep -qE '^CORRUPT-DISK [0-9]+ off 0x8 want 0x[0-9a-f]+ got 0x[0-9a-f]+ generation [0-9]+$' "$T/lost.serial" ||
	{ grep -v '^hb' "$T/lost.serial" | tail -n 5; fail "no CORRUPT-DISK naming the generation word"; }
log "$(grep '^CORRUPT-DISK' "$T/lost.serial")"

# --- refusals ---------------------------------------------------------------------
for bad in "disk_rate=1000" "disk_rate=fast" "disk_rate=1M disk_mode=randwrite"; do
	rc=0
	timeout 60 "$FERRY" run --kernel "$PROBE" --memory 256M --disk "path=$IMG" \
		--cmdline "workload=disk $bad seconds=1" --serial "file:$T/bad.serial" >/dev/null 2>&1 || rc=$?
	[ "$rc" -eq 2 ] && grep -qE '^probe: (bad value for disk_rate|disk_rate= paces disk_mode=verify only)$' "$T/bad.serial" ||
		{ cat "$T/bad.serial"; fail "$bad: exit $rc, want 2 with a reason"; }
done
assert_no_sanitizer "$T"/*.log
echo "disk_rate= paces the verify workload within 10 % and a lost write is still caught"
