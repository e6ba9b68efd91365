#!/usr/bin/env bash
# A forced second pass: with a tiny bandwidth and a tiny downtime limit the
# migration cannot converge, so pages must be re-sent pass after pass.
# Prove that happened, then raise the limits and let it finish, verified.
# Also: --max-iterations forces the switchover, and --auto-converge
# throttles the vCPUs of a guest that dirties faster than the link.
. "$(dirname "$0")/lib.sh"
require_kvm

uri=unix:$T/a.mig
start_dest dst "$uri"
dst=$FERRY_PID
start_source src 2 256M "workload=verify wss=16M period=20ms"
src=$FERRY_PID
"$FERRY" migrate "$T/src.ctl" "$uri" --bandwidth 16M --downtime 1ms --verify --json \
	>"$T/final.json" 2>"$T/migrate.err" &
mig=$!
PIDS+=("$mig")

# Wait for pass 3 with pages already re-sent.
wait_iteration "$T/src.ctl" 3 30
wait_migration_ge "$T/src.ctl" pages-resent 1 30
it=$(json_field "$T/query.json" iteration); resent=$(json_field "$T/query.json" pages-resent)
[ "$(json_field "$T/query.json" status)" = active ] || { cat "$T/query.json"; fail "not in the live phase"; }
log "stuck as intended: pass $it, $resent pages re-sent, source still running"
"$FERRY" status "$T/src.ctl" | grep -q '^status: *running' || fail "source guest is not running during pre-copy"

# Raise the limits: unlimited bandwidth, 2 s of downtime allowed.
"$FERRY" call "$T/src.ctl" migrate-set-parameters '{"bandwidth": 0, "downtime-ms": 2000}' >/dev/null
wait "$mig" || { cat "$T/final.json" "$T/migrate.err"; fail "migration did not complete after raising the limits"; }
[ "$(json_field "$T/final.json" status)" = completed ] || fail "not completed"
json_field "$T/final.json" ram-digest | grep -qE '^[0-9a-f]{16}$' || fail "no verified digest"
log "completed after $(json_field "$T/final.json" iteration) passes"
wait_exit "$src" 10
[ "$RC" -eq 0 ] || fail "source exit status $RC"
first=$(sed -nE 's/^hb ([0-9]+)$/\1/p' "$T/dst.serial" | head -n1)
wait_beats "$T/dst.serial" "$((first + 10))"
"$FERRY" quit "$T/dst.ctl"; wait_exit "$dst" 10
! grep -q CORRUPT "$T/src.serial" "$T/dst.serial" || fail "corruption"

# --max-iterations: switch over after 3 passes whatever the downtime.
uri=unix:$T/b.mig
start_dest dst2 "$uri"; dst=$FERRY_PID
start_source src2 1 256M "workload=verify wss=16M period=20ms"; src=$FERRY_PID
"$FERRY" migrate "$T/src2.ctl" "$uri" --downtime 1ms --max-iterations 3 --verify --json >"$T/m3.json" ||
	{ cat "$T/m3.json"; fail "--max-iterations migration failed"; }
[ "$(json_field "$T/m3.json" iteration)" -eq 3 ] || fail "switched over after $(json_field "$T/m3.json" iteration) passes, not 3"
wait_exit "$src" 10
wait_line "$T/dst2.serial" '^hb ' 10
"$FERRY" quit "$T/dst2.ctl"; wait_exit "$dst" 10
! grep -q CORRUPT "$T/dst2.serial" || fail "corruption after --max-iterations"
log "--max-iterations 3 switched over at pass 3"

# --auto-converge: a guest dirtying far faster than 8 MB/s gets throttled.
uri=unix:$T/c.mig
start_dest dst3 "$uri"; dst=$FERRY_PID
start_source src3 1 256M "workload=memtouch wss=16M period=20ms"; src=$FERRY_PID
"$FERRY" migrate "$T/src3.ctl" "$uri" --bandwidth 8M --downtime 1ms --auto-converge \
	--timeout 10s --on-timeout force --verify --json >"$T/ac.json" &
mig=$!; PIDS+=("$mig")
wait_migration_ge "$T/src3.ctl" throttle-percentage 1 10
thr=$(json_field "$T/query.json" throttle-percentage)
log "auto-converge throttled the vCPUs by ${thr}%"
wait "$mig" || { cat "$T/ac.json"; fail "forced migration after the timeout failed"; }
[ "$(json_field "$T/ac.json" status)" = completed ] || fail "--on-timeout force did not complete"
wait_exit "$src" 10
wait_line "$T/dst3.serial" '^hb ' 10
"$FERRY" quit "$T/dst3.ctl"; wait_exit "$dst" 10
echo "pre-copy re-sends, converges when allowed, and obeys its limits"
