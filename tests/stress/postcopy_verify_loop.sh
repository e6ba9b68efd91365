#!/usr/bin/env bash
# Stress: the post-copy `verify` case of tests/system/migrate_postcopy.sh,
# again and again.  Each round migrates a 2-vCPU guest running
# workload=verify with --mode postcopy (no pre-copy pass) right after it
# boots, while its vCPUs are still writing their working set for the first
# time, and checks that the guest at the destination never reports CORRUPT.
# Not part of tests/run.sh (it is a loop); run it by hand:
#   BUILD=build [FERRY=build/ferry] [ROUNDS=20] [MAX_SECONDS=600] \
#     [DEST_ARGS=...] tests/stress/postcopy_verify_loop.sh
# Exit 0 when every round passed, 1 when any round saw corruption (or failed).
. "$(dirname "$0")/../system/lib.sh"
require_kvm

ROUNDS=${ROUNDS:-20}
MAX_SECONDS=${MAX_SECONDS:-600}
CMDLINE=${CMDLINE:-workload=verify wss=64M period=20ms}
start=$SECONDS bad=0 done_=0

for ((i = 1; i <= ROUNDS && SECONDS - start < MAX_SECONDS; i++)); do
	n=r$i
	# shellcheck disable=SC2086
	start_dest "$n-d" "unix:$T/$n.mig" ${DEST_ARGS:-}; d=$FERRY_PID
	start_source "$n-s" 2 256M "$CMDLINE"; s=$FERRY_PID
	ok=1
	"$FERRY" migrate "$T/$n-s.ctl" "unix:$T/$n.mig" --verify --json --mode postcopy \
		>"$T/$n.json" 2>&1 || ok=0
	wait_exit "$s" 20
	# Long enough for the guest to check every page of its working set again.
	if ((ok)); then
		first=$(sed -nE 's/^hb ([0-9]+)$/\1/p' "$T/$n-d.serial" | head -n1)
		for ((k = 0; k < 100; k++)); do
			grep -q CORRUPT "$T/$n-d.serial" && break
			[ "$(last_beat "$T/$n-d.serial")" -ge "$((${first:-0} + 25))" ] 2>/dev/null && break
			kill -0 "$d" 2>/dev/null || break
			sleep 0.1
		done
	fi
	"$FERRY" quit "$T/$n-d.ctl" >/dev/null 2>&1 || true
	kill -0 "$d" 2>/dev/null && { sleep 1; kill -KILL "$d" 2>/dev/null || true; }
	wait "$d" 2>/dev/null || true
	done_=$i
	if ((!ok)) || grep -q CORRUPT "$T/$n-d.serial" "$T/$n-s.serial"; then
		bad=$((bad + 1))
		echo "round $i: FAIL $(grep -h CORRUPT "$T/$n-d.serial" | head -n1)" \
			"$( ((ok)) || echo "(migration failed: $(head -c 300 "$T/$n.json"))")"
	else
		echo "round $i: ok (faults $(json_field "$T/$n.json" faults)," \
			"requests $(json_field "$T/$n.json" requests))"
	fi
	rm -f "$T/$n"-*.serial "$T/$n"-*.log
done
echo "$bad of $done_ rounds saw corruption ($((SECONDS - start)) s)"
((bad == 0))
