#!/usr/bin/env bash
# make demo: boot the probe guest under ferry and show its heartbeats.
# (The live-migration demo replaces this once migration lands.)
set -euo pipefail
BUILD=${1:-build}
if [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
	echo "demo: /dev/kvm is not available to this user; ferry needs KVM." >&2
	exit 69
fi
sock=$(mktemp -u /tmp/ferry-demo.XXXXXX.sock)
echo "== booting build/probe.elf: 2 vCPUs, 256 MiB, verify workload, heartbeat every 250 ms"
echo "== (the guest checks every page of its 64 MiB working set on each pass; it exits after 5 s)"
"$BUILD/ferry" run --kernel "$BUILD/probe.elf" --vcpus 2 --memory 256M \
	--cmdline "workload=verify wss=64M period=250ms seconds=5" --control "$sock" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true' EXIT
sleep 2
echo "== ferry status $sock"
"$BUILD/ferry" status "$sock" | sed 's/^/   /' || true
rc=0
wait "$pid" || rc=$?
trap - EXIT
echo "== guest exited with status $rc ($([ "$rc" -eq 0 ] && echo success || echo failure))"
exit "$rc"
