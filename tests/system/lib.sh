# Shared helpers for tests/system/*.sh.  Source it; it sets -eu, makes a
# scratch directory and kills, on any exit, every process the test started.
set -eu
BUILD=${BUILD:-build}
FERRY=${FERRY:-$BUILD/ferry-san}
PROBE=${PROBE:-$BUILD/probe.elf}
# ASan: stop on the first error; leaks fail the run too.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

T=$(mktemp -d "${TMPDIR:-/tmp}/ferry-test.XXXXXX")
PIDS=()

cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$T"
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
skip() { echo "skipped: $*"; exit 77; }
log() { echo "# $*"; }

require_kvm() {
	[ -r /dev/kvm ] && [ -w /dev/kvm ] || skip "/dev/kvm is not available"
}

# Start ferry in the background; its pid is left in FERRY_PID.
# Usage: start_ferry NAME ARGS...  (stdout+stderr go to $T/NAME.log)
start_ferry() {
	local name=$1; shift
	"$FERRY" run "$@" >"$T/$name.log" 2>&1 &
	FERRY_PID=$!
	PIDS+=("$FERRY_PID")
}

# Wait for a process to end, at most $2 seconds; sets RC to its exit status.
wait_exit() {
	local pid=$1 limit=$2 i
	for ((i = 0; i < limit * 10; i++)); do
		if ! kill -0 "$pid" 2>/dev/null; then
			RC=0
			wait "$pid" || RC=$?
			return 0
		fi
		sleep 0.1
	done
	fail "process $pid still running after ${limit}s"
}

# Wait until FILE has a line matching REGEX, at most SECS seconds.
wait_line() {
	local file=$1 re=$2 limit=$3 i
	for ((i = 0; i < limit * 10; i++)); do
		grep -qE "$re" "$file" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "--- $file:"; tail -n 20 "$file" 2>/dev/null || true
	fail "no line matching '$re' in $file after ${limit}s"
}

# Number of heartbeat lines in FILE.
heartbeats() { grep -cE '^hb [0-9]+' "$1" 2>/dev/null || true; }

# Wait for the control socket to answer.
wait_control() {
	local sock=$1 i
	for ((i = 0; i < 100; i++)); do
		"$FERRY" status "$sock" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	fail "control socket $sock never answered"
}
