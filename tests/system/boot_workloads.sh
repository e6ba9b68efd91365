#!/usr/bin/env bash
# Boot the probe guest with every workload on 1 and 2 vCPUs (and idle on
# 16): heartbeats arrive, ring 3 writes the UART directly, and seconds=
# ends the run with exit status 0.
. "$(dirname "$0")/lib.sh"
require_kvm

run_case() {
	local name=$1 vcpus=$2 cmdline=$3 min_hb=$4
	local out=$T/$name.serial rc=0
	timeout 60 "$FERRY" run --kernel "$PROBE" --vcpus "$vcpus" --memory 256M \
		--cmdline "$cmdline" --serial "file:$out" >"$T/$name.log" 2>&1 || rc=$?
	[ "$rc" -eq 0 ] || { cat "$T/$name.log" "$out"; fail "$name: exit status $rc"; }
	local hb; hb=$(heartbeats "$out")
	[ "$hb" -ge "$min_hb" ] || { cat "$out"; fail "$name: $hb heartbeats, want >= $min_hb"; }
	grep -q "^probe: cpus $vcpus " "$out" || { cat "$out"; fail "$name: guest did not see $vcpus vCPUs"; }
	! grep -q CORRUPT "$out" || fail "$name: guest reported corruption"
	# The entry state lets ring 3 reach the UART itself (arch/x86/boot.c).
	grep -q "^probe: port-io ring3$" "$out" ||
		{ grep "^probe: port-io" "$out"; fail "$name: ring-3 port I/O faulted"; }
	log "$name: exit 0, $hb heartbeats"
}

for vcpus in 1 2; do
	for w in idle cpu memtouch verify; do
		# 2 s at 50 ms is 40 beats; allow for boot and a loaded host.
		run_case "$w-$vcpus" "$vcpus" "workload=$w wss=16M period=50ms seconds=2" 15
	done
done
run_case "memtouch-random" 2 "workload=memtouch wss=16M pattern=random rate=64M period=50ms seconds=2" 15
run_case "memtouch-hotcold" 1 "workload=memtouch wss=16M pattern=hotcold period=50ms seconds=2 fill=mixed" 15
# report=: a "probe: work" line every 4 heartbeats, the count only growing.
run_case "memtouch-report" 2 "workload=memtouch wss=16M pattern=random period=50ms seconds=2 report=4" 15
awk '/^probe: work / { n++; if ($3 + 0 < last || $5 + 0 <= t) bad = 1; last = $3 + 0; t = $5 + 0 }
     END { exit !(n >= 5 && !bad && last > 0) }' "$T/memtouch-report.serial" ||
	{ grep "^probe: work" "$T/memtouch-report.serial"; fail "memtouch-report: no growing work lines"; }
run_case "idle-16" 16 "workload=idle period=50ms seconds=3" 15
echo "all workloads booted and exited cleanly"
