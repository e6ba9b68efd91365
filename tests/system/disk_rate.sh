#!/usr/bin/env bash
# The probe's disk throughput modes under ferry: randwrite (with flushes),
# seqwrite (1 MiB requests) and seqread each run for seconds=, print a rate
# line with work done, and leave their writes in the image; bad values are
# refused.
. "$(dirname "$0")/lib.sh"
require_kvm

truncate -s 32M "$T/disk.img"
# rate MODE EXTRA: run 2 s, check the report; the line in LINE.
rate() {
	local mode=$1 extra=$2 out=$T/$1.serial rc=0
	timeout 60 "$FERRY" run --kernel "$PROBE" --memory 256M --disk "path=$T/disk.img" \
		--cmdline "workload=idle,disk disk_mode=$mode disk_blocks=8192 $extra period=1s seconds=2" \
		--serial "file:$out" >"$T/$mode.log" 2>&1 || rc=$?
	[ "$rc" -eq 0 ] || { cat "$T/$mode.log" "$out"; fail "$mode: exit status $rc"; }
	LINE=$(grep "^probe: disk $mode [0-9]* ops" "$out") || { cat "$out"; fail "$mode: no rate line"; }
	[[ $LINE =~ ^probe:\ disk\ $mode\ ([1-9][0-9]*)\ ops\ of\ ([0-9]+)\ bytes\ in\ ([0-9]+)\ ms:\ ([0-9]+)\ IOPS,\ [0-9]+\.[0-9]\ MiB/s,\ ([0-9]+)\ flushes$ ]] ||
		fail "$mode: malformed or empty: $LINE"
	OPS=${BASH_REMATCH[1]} REQ=${BASH_REMATCH[2]} MS=${BASH_REMATCH[3]} FLUSHES=${BASH_REMATCH[5]}
	[ "$MS" -ge 1900 ] && [ "$MS" -le 2500 ] || fail "$mode: measured over $MS ms, want about 2000"
	log "$LINE"
}

rate randwrite "disk_flush=16"
[ "$REQ" -eq 4096 ] || fail "randwrite: $REQ-byte requests"
# A flush after every 16 writes: ops / 16 of them, give or take the last.
[ "$FLUSHES" -ge $((OPS / 16 - 1)) ] && [ "$FLUSHES" -le $((OPS / 16)) ] ||
	fail "randwrite: $FLUSHES flushes for $OPS writes, flush every 16"
rate seqwrite ""
[ "$REQ" -eq 1048576 ] && [ "$FLUSHES" -eq 0 ] || fail "seqwrite: $REQ-byte requests, $FLUSHES flushes"
# The writes reached the file: the buffers hold random data, never zeroes.
python3 - "$T/disk.img" <<'PY' || fail "seqwrite: the image holds zero blocks"
import sys
with open(sys.argv[1], "rb") as f:
    for i in range(32):
        if f.read(1 << 20).count(0) > 65536:
            sys.exit(f"MiB {i} is mostly zero")
PY
rate seqread "disk_req=256K disk_depth=4"
[ "$REQ" -eq 262144 ] || fail "seqread: $REQ-byte requests"

for bad in disk_mode=fast disk_req=5000 disk_req=8M disk_depth=0 disk_depth=33; do
	rc=0
	timeout 60 "$FERRY" run --kernel "$PROBE" --memory 256M --disk "path=$T/disk.img" \
		--cmdline "workload=disk $bad seconds=1" --serial "file:$T/bad.serial" >/dev/null 2>&1 || rc=$?
	[ "$rc" -eq 2 ] && grep -q "^probe: bad value for ${bad%%=*}$" "$T/bad.serial" ||
		{ cat "$T/bad.serial"; fail "$bad: exit $rc, want 2 with a reason"; }
done
echo "disk throughput modes run, report and write through"
