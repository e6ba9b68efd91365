#!/usr/bin/env bash
# --order rewrite end to end, with --verify: the verify workload (every
# word of its working set checked by the guest) and a hot/cold memtouch
# guest (9 writes in 10 to a tenth of its pages), each over a capped link
# so that there are passes after the first (pass 1, whose order changes
# too, leaves the working set for its end, and later passes).  Each
# migration must complete with the digests agreed and the guest running
# on at the destination without seeing corruption.  The hot/cold guest
# then goes again in address order, and both re-send counts are logged
# (the bench compares them properly: bench/run.sh order).  A bad --order
# is refused before anything starts.
. "$(dirname "$0")/lib.sh"
require_kvm

# order_case NAME ORDER CMDLINE [migrate args...]; the report in $T/NAME.json;
# at least $min_passes passes (iteration counts the stop-and-copy too).
order_case() {
	local name=$1 order=$2 cmdline=$3; shift 3
	# The workload's hot set is found while it beats its first ten times.
	verified_migration "$name" "unix:$T/$name.mig" "$cmdline" --order "$order" "$@"
	[ "$(json_field "$T/$name.json" order)" = "$order" ] || fail "$name: order is not $order"
	local passes resent sent
	passes=$(json_field "$T/$name.json" iteration)
	resent=$(json_field "$T/$name.json" pages-resent)
	sent=$(( $(json_field "$T/$name.json" normal-pages) + $(json_field "$T/$name.json" zero-pages) ))
	[ "$passes" -ge "$min_passes" ] || { cat "$T/$name.json"; fail "$name: $passes passes, not $min_passes"; }
	# Re-sends are pages sent before: every page sent but the first copy of each of
	# the 32768 pages of 128 MiB (every page goes at least once).
	[ "$resent" -eq $((sent - 32768)) ] || fail "$name: $resent re-sent of $sent sent, not $((sent - 32768))"
	verified_migration_end "$name"
	log "$name: $passes passes, $resent pages re-sent," \
		"$(json_field "$T/$name.json" pages-deferred) deferred," \
		"$(json_field "$T/$name.json" data-processed) bytes on the wire"
}

# The verify guest rewrites its 16 MiB working set faster than a 24 MiB/s
# link drains it: --max-iterations 4 forces the switch after 3 live passes.
min_passes=2
order_case verify rewrite "workload=verify wss=16M fill=mixed period=20ms" --bandwidth 24M \
	--max-iterations 4
# Hot/cold: 16 MiB/s of writes over 32 MiB, 9 in 10 to its first 3.2 MiB,
# on a 32 MiB/s link: the hot set is rewritten within every pass.
hotcold="workload=memtouch wss=32M pattern=hotcold rate=16M fill=random period=20ms"
# A 1 ms limit never fits: passes go on until --max-iterations forces the
# switch, so passes 2 to 4 go in the order asked for.
min_passes=5
order_case hotcold-rewrite rewrite "$hotcold" --bandwidth 32M --downtime 1ms --max-iterations 5
order_case hotcold-address address "$hotcold" --bandwidth 32M --downtime 1ms --max-iterations 5
log "pages re-sent, hot/cold guest: rewrite $(json_field "$T/hotcold-rewrite.json" pages-resent)," \
	"address $(json_field "$T/hotcold-address.json" pages-resent)"

# A bad --order is refused by the CLI, and by the control API.
start_source bad-src 1 64M "workload=idle period=20ms"
src=$FERRY_PID
! "$FERRY" migrate "$T/bad-src.ctl" "unix:$T/none.mig" --order hottest >"$T/bad.out" 2>&1 ||
	fail "--order hottest was accepted"
grep -q -- "--order takes address or rewrite" "$T/bad.out" || { cat "$T/bad.out"; fail "no reason for --order"; }
python3 - "$T/bad-src.ctl" <<'PY' || fail "control API: order 'hottest' not refused"
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
f = s.makefile("rw")
f.write(json.dumps({"execute": "migrate", "arguments": {"uri": "unix:/nonexistent", "order": "hottest"}}) + "\n")
f.flush()
for line in f:
    r = json.loads(line)
    if "error" in r:
        sys.exit(0 if "'order' must be address or rewrite" in r["error"].get("desc", json.dumps(r)) else 1)
    if "return" in r:
        sys.exit(1)
sys.exit(1)
PY
"$FERRY" quit "$T/bad-src.ctl"
wait_exit "$src" 10
log "bad --order refused"
