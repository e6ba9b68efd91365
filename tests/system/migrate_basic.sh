#!/usr/bin/env bash
# Live migration end to end: the verify workload over unix and tcp, idle and
# memtouch, 1 and 2 vCPUs.  The guest keeps verifying on the destination,
# heartbeats go on, --verify passes, the source exits 0.
. "$(dirname "$0")/lib.sh"
require_kvm

migrate_case() {
	local name=$1 vcpus=$2 transport=$3 cmdline=$4
	local uri
	case $transport in
	unix) uri=unix:$T/$name.mig ;;
	tcp) uri=tcp:127.0.0.1:$(random_port) ;;
	esac
	start_dest "$name-dst" "$uri"
	local dst=$FERRY_PID
	uri=$DEST_URI
	start_source "$name-src" "$vcpus" 256M "$cmdline"
	local src=$FERRY_PID
	local before; before=$(last_beat "$T/$name-src.serial")

	"$FERRY" migrate "$T/$name-src.ctl" "$uri" --verify --json --stats-file "$T/$name.csv" \
		>"$T/$name.json" 2>"$T/$name.err" ||
		{ cat "$T/$name.json" "$T/$name.err" "$T/$name-dst.log"; fail "$name: migrate failed"; }
	[ "$(json_field "$T/$name.json" status)" = completed ] || fail "$name: not completed"
	json_field "$T/$name.json" ram-digest | grep -qE '^[0-9a-f]{16}$' || fail "$name: no verified digest"
	wait_exit "$src" 10
	[ "$RC" -eq 0 ] || fail "$name: source exit status $RC"
	# The stats file ends with the final statistics: ferry report reads them back.
	"$FERRY" report "$T/$name.csv" >"$T/$name.report" ||
		{ cat "$T/$name.csv" "$T/$name.report"; fail "$name: ferry report failed on the stats file"; }
	grep -qE '^Migration: .*, completed, ' "$T/$name.report" || { cat "$T/$name.report"; fail "$name: report: not completed"; }
	local dt; dt=$(sed -nE 's/^Downtime: +([0-9.]+) ms$/\1/p' "$T/$name.report")
	awk -v a="$dt" -v b="$(json_field "$T/$name.json" downtime-ms)" \
		'BEGIN { exit !(a != "" && a > 0 && a - b < 0.01 && b - a < 0.01) }' ||
		{ cat "$T/$name.report"; fail "$name: report: downtime '$dt' is not the final report's"; }

	# The destination carries on where the source stopped.
	local first; first=$(sed -nE 's/^hb ([0-9]+)$/\1/p' "$T/$name-dst.serial" | head -n1)
	[ -n "$first" ] || wait_line "$T/$name-dst.serial" '^hb ' 10
	first=$(sed -nE 's/^hb ([0-9]+)$/\1/p' "$T/$name-dst.serial" | head -n1)
	[ "$first" -gt "$before" ] || fail "$name: destination started at hb $first, source was at $before"
	wait_beats "$T/$name-dst.serial" "$((first + 20))"
	"$FERRY" status "$T/$name-dst.ctl" | grep -q '^status: *running' || fail "$name: destination not running"
	"$FERRY" quit "$T/$name-dst.ctl"
	wait_exit "$dst" 10
	[ "$RC" -eq 0 ] || fail "$name: destination exit status $RC"
	! grep -q CORRUPT "$T/$name-src.serial" "$T/$name-dst.serial" || fail "$name: guest saw corruption"
	assert_no_sanitizer "$T/$name-src.log" "$T/$name-dst.log"
	log "$name: downtime $(json_field "$T/$name.json" downtime-ms) ms," \
		"$(json_field "$T/$name.json" iteration) passes, hb $before -> $first"
}

migrate_case verify-unix-2 2 unix "workload=verify wss=32M period=20ms"
migrate_case verify-tcp-1 1 tcp "workload=verify wss=32M period=20ms"
migrate_case idle-unix-2 2 unix "workload=idle period=20ms"
migrate_case memtouch-tcp-1 1 tcp "workload=memtouch wss=32M pattern=random rate=32M period=20ms"
echo "all migrations completed and verified"
