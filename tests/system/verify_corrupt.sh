#!/usr/bin/env bash
# The verify workload catches corruption: flip one byte of guest memory
# inside its working set through the test hook; the guest must print
# CORRUPT and exit with failure (status 1).
. "$(dirname "$0")/lib.sh"
require_kvm

sock=$T/vm.sock
serial=$T/serial
start_ferry vm --kernel "$PROBE" --vcpus 2 --test-hooks \
	--cmdline "workload=verify wss=32M period=20ms" --serial "file:$serial" --control "$sock"
wait_control "$sock"
wait_line "$serial" '^probe: wss 0x[0-9a-f]+ 0x[0-9a-f]+' 20
wait_line "$serial" '^hb 10$' 20
read -r base size < <(sed -nE 's/^probe: wss 0x([0-9a-f]+) 0x([0-9a-f]+).*/\1 \2/p' "$serial" | head -n1)
# A byte in the middle of a page in the middle of the working set.
gpa=$(( 0x$base + (0x$size / 2 / 4096) * 4096 + 1234 ))
log "corrupting gpa $gpa (working set 0x$base + 0x$size)"
"$FERRY" call "$sock" x-test-corrupt "{\"gpa\": $gpa, \"xor\": 16}" >/dev/null

wait_exit "$FERRY_PID" 30
grep -q '^CORRUPT ' "$serial" || { cat "$serial"; fail "guest did not report CORRUPT"; }
[ "$RC" -eq 1 ] || { cat "$T/vm.log"; fail "exit status $RC, want 1"; }
log "guest said: $(grep -m1 '^CORRUPT' "$serial")"

# Out-of-RAM addresses are refused, and the guest stays healthy.
start_ferry vm2 --kernel "$PROBE" --test-hooks --cmdline "workload=verify wss=8M period=20ms" \
	--serial "file:$T/serial2" --control "$sock"
wait_control "$sock"
rc=0; "$FERRY" call "$sock" x-test-corrupt '{"gpa": 1099511627776}' >"$T/err" 2>&1 || rc=$?
[ "$rc" -eq 70 ] && grep -q "not guest RAM" "$T/err" || { cat "$T/err"; fail "bad gpa accepted"; }
rc=0; "$FERRY" call "$sock" x-test-corrupt '{"gpa": -5}' >"$T/err" 2>&1 || rc=$?
[ "$rc" -eq 70 ] || fail "negative gpa accepted"
wait_line "$T/serial2" '^hb 20$' 20
"$FERRY" quit "$sock"
wait_exit "$FERRY_PID" 10
! grep -q CORRUPT "$T/serial2" || fail "refused pokes still corrupted the guest"
echo "corruption detected"
