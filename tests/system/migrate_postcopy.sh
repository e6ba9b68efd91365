#!/usr/bin/env bash
# Post-copy and hybrid: a memtouch guest that pre-copy cannot move at a low
# bandwidth finishes under post-copy, under hybrid and after a manual
# switch; the verify workload keeps passing on the destination and
# --verify passes every time.
. "$(dirname "$0")/lib.sh"
require_kvm

FAST="workload=memtouch wss=64M pattern=random period=20ms"

# run_pc NAME CMDLINE MIGRATE-ARGS...: migrate, expect completion, check the guest goes on.
# DEST_ARGS: more options for the destination.
run_pc() {
	local name=$1 cmdline=$2; shift 2
	# shellcheck disable=SC2086
	start_dest "$name-d" "unix:$T/$name.mig" ${DEST_ARGS:-}; local d=$FERRY_PID
	start_source "$name-s" 2 256M "$cmdline"; local s=$FERRY_PID
	"$FERRY" migrate "$T/$name-s.ctl" "unix:$T/$name.mig" --verify --json "$@" >"$T/$name.json" ||
		{ cat "$T/$name.json" "$T/$name-d.log"; fail "$name: migration failed"; }
	[ "$(json_field "$T/$name.json" status)" = completed ] || fail "$name: not completed"
	json_field "$T/$name.json" ram-digest | grep -qE '^[0-9a-f]{16}$' || fail "$name: no verified digest"
	wait_exit "$s" 10
	[ "$RC" -eq 0 ] || fail "$name: source exit $RC"
	local first; first=$(sed -nE 's/^hb ([0-9]+)$/\1/p' "$T/$name-d.serial" | head -n1)
	wait_beats "$T/$name-d.serial" "$((first + 25))"
	"$FERRY" quit "$T/$name-d.ctl"; wait_exit "$d" 10
	[ "$RC" -eq 0 ] || fail "$name: destination exit $RC"
	! grep -q CORRUPT "$T/$name-s.serial" "$T/$name-d.serial" || fail "$name: corruption"
	assert_no_sanitizer "$T/$name-s.log" "$T/$name-d.log"
	log "$name: downtime $(json_field "$T/$name.json" downtime-ms) ms," \
		"requests $(json_field "$T/$name.json" requests), faults $(json_field "$T/$name.json" faults)," \
		"p99 $(json_field "$T/$name.json" fault-latency-p99-us) us"
}

# Pre-copy alone cannot converge here: it times out and the source runs on.
start_dest pre-d "unix:$T/pre.mig"; d=$FERRY_PID
start_source pre-s 2 256M "$FAST"
rc=0; "$FERRY" migrate "$T/pre-s.ctl" "unix:$T/pre.mig" --bandwidth 16M --downtime 5ms \
	--timeout 3s --json >"$T/pre.json" || rc=$?
[ "$rc" -eq 1 ] && grep -q "timed out" "$T/pre.json" || { cat "$T/pre.json"; fail "pre-copy converged; the test is moot"; }
"$FERRY" quit "$T/pre-s.ctl"; wait_exit "$d" 40
log "pre-copy at 16 MB/s: no convergence in 3 s, as intended"

run_pc postcopy "$FAST" --mode postcopy
run_pc hybrid "$FAST" --mode hybrid --postcopy-after 1 --bandwidth 16M --downtime 5ms
# Hybrid picking its own moment: the dirty rate outruns 16 MB/s at once,
# so it must switch long before pass 1 (16 s at that rate) could end.
run_pc hybrid-auto "$FAST" --mode hybrid --bandwidth 16M --downtime 5ms
pc_ms=$(json_field "$T/hybrid-auto.json" postcopy-time-ms)
total_ms=$(json_field "$T/hybrid-auto.json" total-time-ms)
awk -v p="$pc_ms" -v t="$total_ms" 'BEGIN { exit !(p > 0 && t - p < 4000) }' ||
	fail "hybrid-auto: pre-copy ran $total_ms - $pc_ms ms; it should have switched early"
grep -q "switching to post-copy" "$T/hybrid-auto-s.log" || fail "hybrid-auto: no switch logged"
# ... and an idle guest never needs post-copy: hybrid ends as a plain pre-copy.
run_pc hybrid-idle "workload=idle period=20ms" --mode hybrid --bandwidth 16M
! grep -q '"postcopy"' "$T/hybrid-idle.json" || fail "hybrid-idle: switched to post-copy for an idle guest"
run_pc timeout-pc "$FAST" --bandwidth 16M --downtime 5ms --timeout 2s --on-timeout postcopy
run_pc verify "workload=verify wss=64M period=20ms" --mode postcopy
# A preallocated destination: pages are filled in place (minor faults),
# stale ones included.
PRE="--memory 256M --prealloc"
DEST_ARGS=$PRE run_pc hybrid-prealloc "$FAST" --mode hybrid --postcopy-after 1 --bandwidth 16M --downtime 5ms
DEST_ARGS=$PRE run_pc verify-prealloc "workload=verify wss=64M period=20ms" --mode postcopy
# Without minor faults (older kernels): stale pages are freed instead.
FERRY_UFFD_NO_MINOR=1 run_pc hybrid-nominor "$FAST" --mode hybrid --postcopy-after 1 --bandwidth 16M --downtime 5ms

# A manual switch mid-pre-copy (ferry migrate-postcopy).
start_dest man-d "unix:$T/man.mig"; d=$FERRY_PID
start_source man-s 2 256M "$FAST"; s=$FERRY_PID
"$FERRY" migrate "$T/man-s.ctl" "unix:$T/man.mig" --bandwidth 16M --downtime 5ms --verify --json \
	>"$T/man.json" & m=$!; PIDS+=("$m")
# Well into the live phase: pass 1 under way, pages sent.
wait_migration_ge "$T/man-s.ctl" memory-processed $((8 << 20)) 20
"$FERRY" migrate-postcopy "$T/man-s.ctl" || fail "migrate-postcopy refused"
wait "$m" || { cat "$T/man.json"; fail "manual switch: migration failed"; }
grep -q '"postcopy"' "$T/man.json" || fail "manual switch: no post-copy happened"
wait_exit "$s" 10
wait_line "$T/man-d.serial" '^hb ' 10
"$FERRY" quit "$T/man-d.ctl"; wait_exit "$d" 10
! grep -q CORRUPT "$T/man-d.serial" || fail "manual switch: corruption"
log "migrate-postcopy switched a running pre-copy"
echo "post-copy and hybrid finish what pre-copy cannot"
