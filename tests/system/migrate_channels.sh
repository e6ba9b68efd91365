#!/usr/bin/env bash
# --channels N (docs/migration-stream.md, "Channels"): the verify workload
# migrated with --verify over 2 and 4 connections, unix and tcp, each
# connection having carried pages (query-migrate's "channels"); with
# --compress lz4; over TLS; a hybrid that switches to post-copy with 3
# connections; a ping-pong alternating unix and tcp; and an extra
# connection cut mid-stream by the relay: the migration fails, the source's
# guest runs on and the destination exits 74 without starting its copy.
. "$(dirname "$0")/lib.sh"
require_kvm

# The number of connections and the least bytes one carried, from a final report.
chan_summary() {
	python3 -c 'import json,sys; c=json.load(open(sys.argv[1]))["channels"]
print(len(c), min(x["bytes"] for x in c))' "$1"
}

# chan_case NAME URI N [migrate args...]: a verified migration over N connections.
chan_case() {
	local name=$1 uri=$2 n=$3; shift 3
	verified_migration "$name" "$uri" "workload=verify wss=32M fill=mixed period=20ms" \
		--channels "$n" "$@"
	local count least
	read -r count least < <(chan_summary "$T/$name.json")
	[ "$count" -eq "$n" ] || { cat "$T/$name.json"; fail "$name: $count channels reported, want $n"; }
	[ "$least" -gt 100000 ] || { cat "$T/$name.json"; fail "$name: a channel carried only $least bytes"; }
	grep -q "receiving on $n channels" "$T/$name-dst.log" || fail "$name: the destination did not use $n channels"
	verified_migration_end "$name"
	log "$name: $n channels, $(json_field "$T/$name.json" iteration) passes, least $least bytes on one"
}

chan_case unix2 "unix:$T/u2.mig" 2
chan_case unix4 "unix:$T/u4.mig" 4
chan_case tcp2 "tcp:127.0.0.1:$(random_port)" 2
chan_case tcp4 "tcp:127.0.0.1:$(random_port)" 4
chan_case lz4 "unix:$T/lz4.mig" 4 --compress lz4
# Live passes under a cap: pages re-sent pass after pass, across connections.
chan_case capped "unix:$T/cap.mig" 3 --bandwidth 64M --max-iterations 6

# Over TLS: every extra connection shakes hands like the main one.
if command -v certtool >/dev/null; then
	C=$T/tls
	scripts/tls-certs.sh "$C" >/dev/null || fail "cannot make test credentials"
	start_dest tls-d "tcp:127.0.0.1:$(random_port)" --tls-creds "$C/server"; D=$FERRY_PID
	start_source tls-s 1 128M "workload=verify wss=32M period=20ms"; S=$FERRY_PID
	"$FERRY" migrate "$T/tls-s.ctl" "$DEST_URI" --channels 3 --verify --json --tls-creds "$C/client" \
		>"$T/tls.json" 2>"$T/tls.err" || { cat "$T/tls.json" "$T/tls.err" "$T/tls-d.log"; fail "TLS: migrate failed"; }
	[ "$(json_field "$T/tls.json" status)" = completed ] || fail "TLS: not completed"
	sessions=$(grep -c "TLS session with the source" "$T/tls-d.log")
	[ "$sessions" -ge 3 ] || { cat "$T/tls-d.log"; fail "TLS: $sessions TLS sessions, want 3"; }
	wait_exit "$S" 10
	wait_line "$T/tls-d.serial" '^hb ' 10
	"$FERRY" quit "$T/tls-d.ctl"; wait_exit "$D" 10
	[ "$RC" -eq 0 ] || fail "TLS: destination exit status $RC"
	log "TLS: 3 channels, $sessions sessions"
else
	log "certtool missing: the TLS case is left out"
fi

# Hybrid: pre-copy passes on 3 connections, then post-copy on the main one.
start_dest hy-d "unix:$T/hy.mig"; D=$FERRY_PID
start_source hy-s 1 128M "workload=verify wss=32M period=20ms"; S=$FERRY_PID
"$FERRY" migrate "$T/hy-s.ctl" "unix:$T/hy.mig" --channels 3 --mode hybrid --postcopy-after 2 \
	--bandwidth 64M --verify --json >"$T/hy.json" 2>"$T/hy.err" ||
	{ cat "$T/hy.json" "$T/hy.err" "$T/hy-d.log"; fail "hybrid: migrate failed"; }
[ "$(json_field "$T/hy.json" status)" = completed ] || fail "hybrid: not completed"
wait_exit "$S" 10
wait_line "$T/hy-d.serial" '^hb ' 10
first=$(last_beat "$T/hy-d.serial")
wait_beats "$T/hy-d.serial" "$((first + 10))"
"$FERRY" quit "$T/hy-d.ctl"; wait_exit "$D" 10
[ "$RC" -eq 0 ] || fail "hybrid: destination exit status $RC"
! grep -q CORRUPT "$T/hy-s.serial" "$T/hy-d.serial" || fail "hybrid: guest saw corruption"
log "hybrid with 3 channels: verified"

# Ping-pong: every hop verifies every page, alternating unix and tcp, 2 and 4 connections.
ROUNDS=${CHANNELS_PINGPONG_ROUNDS:-4}
start_source pp0 1 128M "workload=verify wss=32M fill=mixed period=20ms"
cur=pp0
pid=$FERRY_PID
for ((i = 1; i <= ROUNDS; i++)); do
	next=pp$i
	if ((i % 2)); then uri=unix:$T/$next.mig; n=2; else uri=tcp:127.0.0.1:$(random_port); n=4; fi
	start_dest "$next" "$uri"
	npid=$FERRY_PID
	"$FERRY" migrate "$T/$cur.ctl" "$DEST_URI" --channels "$n" --verify --json >"$T/pp$i.json" 2>&1 ||
		{ cat "$T/pp$i.json" "$T/$next.log"; fail "ping-pong $i ($cur -> $next) failed"; }
	json_field "$T/pp$i.json" ram-digest | grep -qE '^[0-9a-f]{16}$' || fail "ping-pong $i: no digest"
	wait_exit "$pid" 10
	[ "$RC" -eq 0 ] || fail "ping-pong $i: source exit status $RC"
	wait_line "$T/$next.serial" '^hb ' 10
	! grep -q CORRUPT "$T/$cur.serial" || fail "ping-pong $i: corruption on $cur"
	cur=$next
	pid=$npid
done
first=$(last_beat "$T/$cur.serial")
wait_beats "$T/$cur.serial" "$((first + 10))"
! grep -q CORRUPT "$T/$cur.serial" || fail "ping-pong: corruption at the end"
"$FERRY" quit "$T/$cur.ctl"; wait_exit "$pid" 10
log "ping-pong: $ROUNDS hops verified"

# An extra connection cut mid-stream (connection 1 of the relay: the main
# one is 0): the migration fails, the source runs on, the destination
# refuses (exit 74) and never starts the guest.
start_dest cut-d "unix:$T/cut.mig"; D=$FERRY_PID
start_source cut-s 1 128M "workload=verify wss=32M fill=random period=20ms"; S=$FERRY_PID
"$RELAY" "$T/relay.sock" "unix:$T/cut.mig" --conns 3 --cut-conn 1 --cut-after 500000 \
	>"$T/relay.out" 2>&1 & r=$!; PIDS+=("$r")
for ((i = 0; i < 50; i++)); do [ -S "$T/relay.sock" ] && break; sleep 0.05; done
rc=0; "$FERRY" migrate "$T/cut-s.ctl" "unix:$T/relay.sock" --channels 3 --bandwidth 64M --json \
	>"$T/cut.json" 2>"$T/cut.err" || rc=$?
[ "$rc" -eq 1 ] && [ "$(json_field "$T/cut.json" status)" = failed ] ||
	{ cat "$T/cut.json" "$T/cut.err"; fail "cut channel: migrate exit $rc"; }
assert_source_runs cut-s
wait_exit "$D" 40
[ "$RC" -eq 74 ] || { cat "$T/cut-d.log"; fail "cut channel: destination exit $RC, want 74"; }
assert_no_guest "$T/cut-d.serial"
wait "$r" || true
# The source is still whole: a migration with channels goes through afterwards.
start_dest cut-d2 "unix:$T/cut2.mig"; D=$FERRY_PID
"$FERRY" migrate "$T/cut-s.ctl" "unix:$T/cut2.mig" --channels 3 --verify --json >"$T/cut2.json" 2>&1 ||
	{ cat "$T/cut2.json" "$T/cut-d2.log"; fail "after the cut: migrate failed"; }
wait_exit "$S" 10
wait_line "$T/cut-d2.serial" '^hb ' 10
"$FERRY" quit "$T/cut-d2.ctl"; wait_exit "$D" 10
! grep -q CORRUPT "$T/cut-s.serial" "$T/cut-d2.serial" || fail "after the cut: corruption"
log "cut channel: source ran on ($(json_field "$T/cut.json" error)); migrated again afterwards"

# Usage errors: a count out of range.
rc=0; "$FERRY" migrate "$T/cut-d2.ctl" "unix:$T/none" --channels 17 2>/dev/null || rc=$?
[ "$rc" -eq 64 ] || fail "--channels 17: exit $rc, want 64"
rc=0; "$FERRY" migrate "$T/cut-d2.ctl" "unix:$T/none" --channels 0 2>/dev/null || rc=$?
[ "$rc" -eq 64 ] || fail "--channels 0: exit $rc, want 64"
log "usage errors refused"
