#!/usr/bin/env bash
# Pages ferry itself writes (as device emulation will) are tracked like
# the guest's own writes: a byte written through the VMM's mapping while
# pre-copy runs reaches the destination.
. "$(dirname "$0")/lib.sh"
require_kvm

uri=unix:$T/a.mig
start_dest dst "$uri" --test-hooks; dst=$FERRY_PID
start_source src 1 128M "workload=verify wss=8M period=20ms" --test-hooks; src=$FERRY_PID
gpa=$((100 << 20))	# far above the probe's image, stacks and working set
"$FERRY" migrate "$T/src.ctl" "$uri" --bandwidth 8M --downtime 1ms --verify --json >"$T/m.json" & m=$!; PIDS+=("$m")
wait_iteration "$T/src.ctl" 2 10
# Pass 1 has sent that (zero) page already; now ferry writes it.
"$FERRY" call "$T/src.ctl" x-test-corrupt "{\"gpa\": $gpa, \"xor\": 90, \"tracked\": true}" >/dev/null
"$FERRY" call "$T/src.ctl" migrate-set-parameters '{"bandwidth": 0, "downtime-ms": 1000}' >/dev/null
wait "$m" || { cat "$T/m.json"; fail "migration failed"; }
wait_exit "$src" 10
"$FERRY" call "$T/dst.ctl" x-test-peek "{\"gpa\": $gpa}" >"$T/peek.json"
[ "$(json_field "$T/peek.json" value)" = 90 ] || { cat "$T/peek.json"; fail "the VMM's write did not reach the destination"; }
"$FERRY" quit "$T/dst.ctl"; wait_exit "$dst" 10
echo "a VMM write during pre-copy was re-sent"
