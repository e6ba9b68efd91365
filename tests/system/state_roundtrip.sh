#!/usr/bin/env bash
# State round trip, in the spirit of Linux's kvm selftest state_test: run
# the verify workload, pause, save every piece of vCPU/irqchip/PIT/clock/
# serial state, destroy the KVM VM, build a new one from the saved state and
# the same RAM, resume.  Heartbeats go on, verify keeps passing — and the
# round trip repeats several times, on 1 and 2 vCPUs and with idle (timer
# interrupts in flight) as well as verify.
. "$(dirname "$0")/lib.sh"
require_kvm

roundtrip() {
	local name=$1 vcpus=$2 cmdline=$3
	local sock=$T/$name.sock serial=$T/$name.serial
	start_ferry "$name" --kernel "$PROBE" --vcpus "$vcpus" --test-hooks \
		--cmdline "$cmdline" --serial "file:$serial" --control "$sock"
	wait_control "$sock"
	wait_line "$serial" '^hb 5$' 30
	for round in 1 2 3; do
		"$FERRY" pause "$sock"
		"$FERRY" call "$sock" x-test-rebuild >"$T/rebuild.out" ||
			{ cat "$T/rebuild.out" "$T/$name.log"; fail "$name: rebuild $round failed"; }
		"$FERRY" status "$sock" | grep -q '^status: *paused' || fail "$name: not paused after rebuild"
		local n; n=$(heartbeats "$serial")
		"$FERRY" resume "$sock"
		wait_line "$serial" "^hb $((n + 10))\$" 30
		log "$name: round $round: rebuilt at heartbeat $n, guest went on"
	done
	! grep -q CORRUPT "$serial" || fail "$name: guest reported corruption"
	grep -q "^probe: exception" "$serial" && fail "$name: guest took an exception"
	"$FERRY" quit "$sock"
	wait_exit "$FERRY_PID" 10
	[ "$RC" -eq 0 ] || fail "$name: exit status $RC"
}

roundtrip verify-1 1 "workload=verify wss=16M period=20ms"
roundtrip verify-2 2 "workload=verify wss=16M period=20ms"
roundtrip idle-2 2 "workload=idle period=20ms"
echo "state survived three rebuilds of the VM"
