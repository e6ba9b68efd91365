#!/usr/bin/env bash
# ferry vs QEMU migration benchmark: bench/run.sh [quick|full] [options]
#   bench/run.sh quick            scenario 1 only (1 GiB idle guest, loopback), ~2 min
#   bench/run.sh full             every scenario and mode but scale (loopback, veth 1G/10G,
#                                 WAN; pre-copy, post-copy, hybrid; storage; codecs), ~70 min, then the
#                                 device scenarios (disk-*, net-udp-echo), ~4 min, and the
#                                 save preset, ~10 min
#   bench/run.sh codecs           QEMU default, multifd+zstd (2 channels) and xbzrle beside
#                                 ferry on the loopback scenarios, idle-mixed-1g and
#                                 sparse-fast-1g (ferry --compress adaptive), ~20 min
#   bench/run.sh scale            idle and verify guests of 1, 4 and 8 GiB and a 4-vCPU
#                                 8 GiB verify guest, loopback (not in quick or full)
#   bench/run.sh net              net-client: a client on a switched network through
#                                 a migration of a guest with a NIC, both VMMs, ~2 min
#   bench/run.sh storage          storage-nbd-1g, storage-copy-1g, storage-copy-mixed-1g,
#                                 storage-incremental-1g: shared NBD disk, live disk copy (random,
#                                 then mixed content, ferry --compress lz4), incremental copy,
#                                 ~25 min (--disk-size 2G, --disk-rate 10M)
#   bench/run.sh save             save/restore, lazy restore, live snapshot, replication,
#                                 A->B->A with a base (bench/savebench.py), ~10 min
#   bench/run.sh --list           the scenarios
#   bench/run.sh full --scenario idle-random-1g --repeat 1 --vmm qemu
#   bench/run.sh full --scenario memtouch-fast-1g/hybrid --repeat 1   (NAME/MODE)
#   bench/run.sh full --scenario disk-randwrite                        (a device scenario)
# FERRYBENCH_OUT=DIR puts results and logs in DIR instead.
# Results: build/bench/{results.csv,summary.csv,summary.txt,*.png,logs/}.
# See bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
export BUILD

# The harness names its namespaces fb<tag>-*; the tag is this script's pid,
# so the trap below can remove what a killed harness left behind.
export FERRYBENCH_TAG=$$
harness_pid=
cleanup() {
	local ns pid
	trap - EXIT INT TERM
	if [ -n "$harness_pid" ] && kill -0 "$harness_pid" 2>/dev/null; then
		kill -TERM "$harness_pid" 2>/dev/null || true
		for _ in $(seq 1 100); do kill -0 "$harness_pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$harness_pid" 2>/dev/null || true
	fi
	for ns in $(ip netns list 2>/dev/null | awk -v p="fb$FERRYBENCH_TAG-" 'index($1, p) == 1 { print $1 }'); do
		for pid in $(ip netns pids "$ns" 2>/dev/null); do   # only what we started lives there
			kill -KILL "$pid" 2>/dev/null || true
		done
		ip netns del "$ns" 2>/dev/null || true
	done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "$(id -u)" -ne 0 ]; then
	echo "bench: needs root (network namespaces, tc)" >&2
	exit 1
fi
PY=$(command -v /usr/bin/python3 || command -v python3 || true)
[ -n "$PY" ] || { echo "bench: python3 is missing (scripts/deps.sh installs it)" >&2; exit 1; }

# The guest, ferry and the network helper.  `make` may be mid-edit by
# others: the harness runs QEMU-only if ferry does not build.
[ -f "$BUILD/probe.elf" ] || make --no-print-directory "$BUILD/probe.elf"
[ -x "$BUILD/ferry" ] || make --no-print-directory "$BUILD/ferry" || echo "bench: ferry did not build" >&2
mkdir -p "$BUILD/bench"
if [ ! -x "$BUILD/bench/netbench" ] || [ bench/netbench.c -nt "$BUILD/bench/netbench" ]; then
	gcc -std=gnu11 -O2 -Wall -Wextra -Werror -pthread bench/netbench.c -o "$BUILD/bench/netbench"
fi

"$PY" bench/ferrybench.py "$@" &
harness_pid=$!
rc=0
wait "$harness_pid" || rc=$?
harness_pid=
exit "$rc"
