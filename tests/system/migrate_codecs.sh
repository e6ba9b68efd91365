#!/usr/bin/env bash
# Every --compress mode end to end, with --verify: the verify workload over
# mixed pages (zero, text, random: each codec finds pages it takes), and a
# guest rewriting a few bytes of many pages (memtouch pattern=sparse, what
# delta is for).  Each migration must complete with the digests agreed, the
# guest must run on at the destination without seeing corruption, and the
# codec the mode names must have carried pages (query-migrate's "codecs").
# Then a short ping-pong with --compress adaptive.
. "$(dirname "$0")/lib.sh"
require_kvm

# The pages codecs carried (lz4+zstd: both together), from a final report (--json).
codec_pages() {
	python3 -c 'import json,sys; c=json.load(open(sys.argv[1]))["codecs"]
print(sum(c[k]["pages"] for k in sys.argv[2].split("+")))' "$1" "$2"
}

# codec_case NAME MODE CMDLINE CODEC [migrate args...]: CODEC must carry pages.
codec_case() {
	local name=$1 mode=$2 cmdline=$3 codec=$4; shift 4
	verified_migration "$name" "unix:$T/$name.mig" "$cmdline" --compress "$mode" "$@"
	[ "$(json_field "$T/$name.json" compress)" = "$mode" ] || fail "$name: compress is not $mode"
	local pages; pages=$(codec_pages "$T/$name.json" "$codec")
	[ "$pages" -gt 0 ] || { cat "$T/$name.json"; fail "$name: codec $codec carried no page"; }
	verified_migration_end "$name"
	log "$name: $pages pages by $codec, $(json_field "$T/$name.json" iteration) passes," \
		"$(json_field "$T/$name.json" data-processed) bytes on the wire"
}

mixed="workload=verify wss=16M fill=mixed period=20ms"
codec_case none none "$mixed" raw
codec_case lz4 lz4 "$mixed" lz4
codec_case zstd zstd "$mixed" zstd --compress-level 3
# On a fast link adaptive sends most pages raw; the first ones are compressed.
codec_case adaptive adaptive "$mixed" lz4+zstd
# Sparse rewrites above what the capped link carries: re-sent pages go as deltas.
sparse="workload=memtouch wss=16M pattern=sparse rate=8M period=20ms"
codec_case delta delta "$sparse" delta --bandwidth 32M --xbzrle-cache 32M
codec_case adaptive-sparse adaptive "$sparse" delta --bandwidth 32M

# Ping-pong with adaptive: each hop verifies every page of the working set.
ROUNDS=${CODECS_PINGPONG_ROUNDS:-4}
start_source pp0 1 128M "workload=verify wss=16M fill=mixed period=20ms"
cur=pp0
pid=$FERRY_PID
for ((i = 1; i <= ROUNDS; i++)); do
	next=pp$i
	if ((i % 2)); then uri=unix:$T/$next.mig; else uri=tcp:127.0.0.1:$(random_port); fi
	start_dest "$next" "$uri"
	npid=$FERRY_PID
	"$FERRY" migrate "$T/$cur.ctl" "$DEST_URI" --compress adaptive --verify --json \
		>"$T/pp$i.json" 2>&1 ||
		{ cat "$T/pp$i.json" "$T/$next.log"; fail "ping-pong $i ($cur -> $next) failed"; }
	json_field "$T/pp$i.json" ram-digest | grep -qE '^[0-9a-f]{16}$' || fail "ping-pong $i: no digest"
	wait_exit "$pid" 10
	[ "$RC" -eq 0 ] || fail "ping-pong $i: source exit status $RC"
	wait_line "$T/$next.serial" '^hb ' 10
	! grep -q CORRUPT "$T/$cur.serial" || fail "ping-pong $i: corruption on $cur"
	cur=$next
	pid=$npid
done
first=$(sed -nE 's/^hb ([0-9]+)$/\1/p' "$T/$cur.serial" | head -n1)
wait_beats "$T/$cur.serial" "$((first + 10))"
"$FERRY" quit "$T/$cur.ctl"
wait_exit "$pid" 10
[ "$RC" -eq 0 ] || fail "final VM exit status $RC"
! grep -q CORRUPT "$T"/*.serial || fail "corruption"
assert_no_sanitizer "$T"/*.log
echo "every codec migrated and verified; $ROUNDS adaptive ping-pong hops"
