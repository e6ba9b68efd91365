#!/usr/bin/env bash
# make demo: boot the probe guest in one ferry process and live-migrate it
# to another with --progress and --verify, then show the final statistics
# and the guest carrying on at the destination.
set -euo pipefail
BUILD=${1:-build}
FERRY=$BUILD/ferry
if [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
	echo "demo: /dev/kvm is not available to this user; ferry needs KVM." >&2
	exit 69
fi
dir=$(mktemp -d /tmp/ferry-demo.XXXXXX)
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT INT TERM

cmdline="workload=verify wss=128M fill=mixed period=100ms"
echo "== destination: ferry run --incoming tcp:127.0.0.1:4455"
"$FERRY" run --incoming tcp:127.0.0.1:4455 --serial "file:$dir/dst.serial" \
	--control "$dir/dst.sock" 2>"$dir/dst.log" &
pids+=($!)
echo "== source: 1 GiB, 2 vCPUs, probe guest: $cmdline"
echo "   (the guest checks every page of its 128 MiB working set on every pass)"
"$FERRY" run --kernel "$BUILD/probe.elf" --vcpus 2 --memory 1G --cmdline "$cmdline" \
	--serial "file:$dir/src.serial" --control "$dir/src.sock" 2>"$dir/src.log" &
pids+=($!)
for _ in $(seq 100); do grep -q '^hb 10$' "$dir/src.serial" 2>/dev/null && break; sleep 0.1; done
echo "== guest on the source:"
grep -E '^probe: (cpus|wss)' "$dir/src.serial" | sed 's/^/   /'
tail -n 2 "$dir/src.serial" | sed 's/^/   /'
echo
echo "== ferry migrate $dir/src.sock tcp:127.0.0.1:4455 --verify --progress"
"$FERRY" migrate "$dir/src.sock" tcp:127.0.0.1:4455 --verify --progress
echo
sleep 1
echo "== guest on the destination, still verifying:"
grep -m1 '^hb ' "$dir/dst.serial" | sed 's/^/   first heartbeat there: /'
tail -n 2 "$dir/dst.serial" | sed 's/^/   /'
if grep -q CORRUPT "$dir/src.serial" "$dir/dst.serial"; then
	echo "== the guest found corrupted memory!"
	exit 1
fi
echo "== ferry status $dir/dst.sock"
"$FERRY" status "$dir/dst.sock" | sed 's/^/   /'
"$FERRY" quit "$dir/dst.sock"
echo "== done: the guest moved, no page lost."
